// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-loopback: virtqueue doorbells and in-flight tracking.
 *
 * Kick: the driver's notify signals the queue's kick eventfd directly; the
 * back-end waits on it. Call: the back-end signals the call eventfd; the
 * kernel has a wait-queue entry on it (as KVM's irqfd does) whose callback
 * runs the vring interrupt at once, in the signaller's context, with the
 * eventfd's lock held and interrupts off -- the same context a hardware
 * interrupt handler has. Neither path involves the adapter.
 *
 * Mediated rings: the back-end never sees the driver's available and used
 * rings. It gets a view of its own (struct vl_queue's dev_avail and
 * dev_used): the kernel forwards each available entry into dev_avail at
 * notify, and publishes each used entry the back-end wrote to dev_used
 * into the driver's ring at call, after checking it. So the driver only
 * ever reads entries the kernel vetted (a wrong head never reaches it,
 * however the driver polls), completions become visible to the driver at a
 * point the kernel controls, and the driver's ring memory is read-only to
 * user space. The driver always notifies (its used ring keeps flags 0 and
 * VIRTIO_RING_F_EVENT_IDX is not offered to it), and the kernel decides
 * whether the back-end wants the kick: from avail_event in dev_used when
 * the device offered EVENT_IDX at creation (the device's view then uses
 * it, whatever the driver took), from VRING_USED_F_NO_NOTIFY otherwise.
 * The back-end must call after every batch it completes: dev_avail keeps
 * flags 0, and its used_event follows what the kernel published.
 *
 * Zero-copy (vl_window.c): on a device created with it, the kernel walks
 * each chain it forwards, publishing its zero-copy buffers to user space,
 * and each chain the device used, retiring them, before the completion
 * reaches the driver. Retiring unmaps pages, which sleeps, and the call
 * wakeup cannot: on such devices the wakeup hands the completion to the
 * signalling task, as task work that runs before its write() returns (or
 * to the workqueue, for a signaller that is not a user task), and
 * publication never goes past what was retired (retired_upto).
 *
 * One case is deferred to a work item: a doorbell rung from inside another
 * eventfd wakeup (for example, a driver that kicks from its interrupt
 * callback while the call eventfd's lock is held). Signalling an eventfd
 * there could recurse into a lock that is already held, which
 * eventfd_signal_allowed() tells us.
 *
 * In-flight tracking: to fail the requests user space will never complete,
 * the transport must know which heads are outstanding. Every notify
 * forwards the new avail entries and every interrupt the new used entries, counting
 * per head how often it was made available minus how often it was used
 * (counts, not bits: a head used and made available again between two
 * snapshots is seen as add, add, use). This is exact as long as the driver does not make more than
 * queue-size buffers available between two doorbells, which a driver that
 * relies on notifications or interrupts cannot do; if it happens anyway
 * the tracking is marked lost and the abort path falls back to failing
 * what the rings show.
 */
#include <linux/file.h>
#include <linux/fuse.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/task_work.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>

#include "vl_compat.h"
#include "vl_core.h"

/*
 * Set while this CPU signals a kick eventfd, so that a call-eventfd wakeup
 * it triggers (the same eventfd used for both) runs the interrupt later
 * instead of re-entering the driver from inside its own notify.
 */
static DEFINE_PER_CPU(bool, vl_kicking);

/* --- in-flight tracking ------------------------------------------------- */

static u16 vl_avail_idx(struct vl_queue *q)
{
	return virtio16_to_cpu(&q->vl->vdev, READ_ONCE(q->avail->idx));
}

/* The back-end's used index, in its view of the rings. */
static u16 vl_dev_used_idx(struct vl_queue *q)
{
	return virtio16_to_cpu(&q->vl->vdev, READ_ONCE(q->dev_used->idx));
}

/* Whether the device's view of the rings uses EVENT_IDX. */
static bool vl_dev_event_idx(struct vl_queue *q)
{
	return q->vl->device_features & BIT_ULL(VIRTIO_RING_F_EVENT_IDX);
}

/*
 * Reads descriptor i of a chain's table: the ring's own (table_iova 0) or
 * an indirect one, read from the driver's memory behind its mapping, never
 * from the window, which user space may have rewritten. False if there is
 * no such mapping.
 */
static bool vl_read_desc(struct vl_queue *q, u64 table_iova, unsigned int i,
			 struct vring_desc *d)
{
	if (!table_iova) {
		*d = q->desc[i];
		return true;
	}
	return vl_window_read_driver(q->vl->window,
				     table_iova + i * sizeof(*d), d, sizeof(*d));
}

/* One buffer of a chain, as vl_walk_chain() hands it out. */
struct vl_buffer {
	u64 addr;
	u32 len;
	bool device_writes;
};

/* What vl_walk_chain() calls; false stops the walk. */
typedef bool vl_buffer_fn_t(struct vl_queue *q, const struct vl_buffer *buf,
			    void *arg);

/*
 * Calls fn on each buffer of the chain at head, in order, indirect tables
 * included, until fn returns false. Every index and address is checked and the walk is bounded: the
 * abort path walks rings user space may have scribbled on before they were
 * revoked.
 */
static void vl_walk_chain(struct vl_queue *q, u16 head, vl_buffer_fn_t *fn,
			  void *arg)
{
	struct virtio_device *vdev = &q->vl->vdev;
	unsigned int table_len = q->num, budget = q->num, i = head;
	u64 table = 0;		/* 0: the ring's table */
	struct vring_desc d;

	while (budget-- && vl_read_desc(q, table, i, &d)) {
		u16 flags = virtio16_to_cpu(vdev, d.flags);
		struct vl_buffer buf = {
			.addr = virtio64_to_cpu(vdev, d.addr),
			.len = virtio32_to_cpu(vdev, d.len),
			.device_writes = flags & VRING_DESC_F_WRITE,
		};

		if (flags & VRING_DESC_F_INDIRECT) {
			/* Only from the main table, and only as a whole. */
			if (table || !buf.addr || !buf.len ||
			    buf.len % sizeof(d))
				return;
			/*
			 * The table is a buffer the device reads too (a whole
			 * page of descriptors is a zero-copy mapping).
			 */
			buf.device_writes = false;
			if (!fn(q, &buf, arg))
				return;
			table = buf.addr;
			table_len = buf.len / sizeof(d);
			budget = table_len;
			i = 0;
			continue;
		}
		if (!fn(q, &buf, arg))
			return;
		if (!(flags & VRING_DESC_F_NEXT))
			return;
		i = virtio16_to_cpu(vdev, d.next);
		if (i >= table_len)
			return;
	}
}

/* --- zero-copy: giving buffers to the device and taking them back ------ */

static bool vl_zero_copy(struct vl_queue *q)
{
	return q->vl->zero_copy;
}

struct vl_chain_links {
	u32 first;
	u32 last;
};

static bool vl_publish_buffer(struct vl_queue *q, const struct vl_buffer *buf,
			      void *arg)
{
	struct vl_chain_links *links = arg;

	vl_window_zc_publish(q->vl->window, buf->addr, &links->first,
			     &links->last);
	return true;
}

/* Lets user space map the zero-copy buffers of the chain at head. */
static void vl_publish_chain(struct vl_queue *q, u16 head)
{
	struct vl_chain_links links = {};

	vl_walk_chain(q, head, vl_publish_buffer, &links);
	vl_window_zc_link(q->vl->window, links.first, links.last);
}

static bool vl_retire_buffer(struct vl_queue *q, const struct vl_buffer *buf,
			     void *arg)
{
	vl_window_zc_retire(q->vl->window, buf->addr, arg);
	return true;
}

/*
 * Retires the zero-copy buffers of the entries the device added to its
 * used ring beyond retired_upto, unmaps them from user space, then lets
 * publication go that far. Entries publication will reject (a head out of
 * range or not outstanding) stop the walk: they are never published. Sleeps.
 */
static void vl_queue_retire(struct vl_queue *q)
{
	struct virtio_device *vdev = &q->vl->vdev;
	struct vl_zap zap = {};
	u16 idx, pos;
	u32 head;

	mutex_lock(&q->retire_lock);
	spin_lock_irq(&q->track_lock);
	if (!q->outstanding || q->bad_used) {
		spin_unlock_irq(&q->track_lock);
		goto out;
	}
	idx = vl_dev_used_idx(q);
	/* A jump beyond the ring: publication flags it. */
	if ((u16)(idx - q->used_seen) > q->num)
		idx = q->retired_upto;
	virtio_rmb(true);
	for (pos = q->retired_upto; pos != idx; pos++) {
		struct vring_used_elem *elem = &q->dev_used->ring[pos % q->num];

		head = virtio32_to_cpu(vdev, READ_ONCE(elem->id));
		if (head >= q->num || (!q->track_lost && !q->outstanding[head]))
			break;
		vl_walk_chain(q, head, vl_retire_buffer, &zap);
	}
	spin_unlock_irq(&q->track_lock);

	vl_window_zap(q->vl->window, &zap);

	spin_lock_irq(&q->track_lock);
	if (q->outstanding)
		q->retired_upto = pos;
	spin_unlock_irq(&q->track_lock);
out:
	mutex_unlock(&q->retire_lock);
}

/*
 * Forwards the heads the driver made available since the last call to the
 * device's available ring, counting them as outstanding.
 */
static void __vl_forward_avail(struct vl_queue *q)
{
	struct virtio_device *vdev = &q->vl->vdev;
	u16 idx = vl_avail_idx(q), head;

	if (q->avail_seen == idx)
		return;
	if ((u16)(idx - q->avail_seen) > q->num)
		q->track_lost = true;
	virtio_rmb(true);
	for (; q->avail_seen != idx; q->avail_seen++) {
		unsigned int slot = q->avail_seen % q->num;
		__virtio16 entry = READ_ONCE(q->avail->ring[slot]);

		WRITE_ONCE(q->dev_avail->ring[slot], entry);
		head = virtio16_to_cpu(vdev, entry);
		if (head >= q->num)
			continue;
		q->outstanding[head]++;
		if (vl_zero_copy(q))
			vl_publish_chain(q, head);
	}
	virtio_wmb(true);
	WRITE_ONCE(q->dev_avail->idx, cpu_to_virtio16(vdev, idx));
}

/*
 * Publishes the entries the device added to its used ring since the last
 * call into the driver's, checking each: a head beyond the ring, or one
 * that is not outstanding (used twice, never made available), would make
 * the driver mark its queue broken and strand its requests. The walk stops
 * at the first such entry, which the driver never sees, and flags it; the
 * caller then fails the device, whose abort path completes what is left.
 * The avail side needs no update first: the device can only use heads
 * vl_notify() forwarded (forwarding here would also hide new entries from
 * the next notify's kick decision).
 */
static bool vl_retirement_needed(struct vl_queue *q)
{
	return vl_zero_copy(q) && !vl_window_is_zapped(q->vl->window);
}

static void __vl_publish_batch(struct vl_queue *q)
{
	struct virtio_device *vdev = &q->vl->vdev;
	u16 idx, start = q->used_seen;
	u32 head;

	idx = vl_dev_used_idx(q);
	/*
	 * A device cannot complete more than a ring's worth between two
	 * interrupts: the driver adds buffers only as it consumes them, and
	 * it consumes them in our interrupts. A bigger jump is a broken ring.
	 */
	if ((u16)(idx - q->used_seen) > q->num) {
		q->bad_used = true;
		q->bad_head = U32_MAX;
		return;
	}
	/* Zero-copy: only what was retired (unmapped from user space). */
	if (vl_retirement_needed(q) &&
	    (u16)(idx - q->used_seen) > (u16)(q->retired_upto - q->used_seen))
		idx = q->retired_upto;
	virtio_rmb(true);
	for (; q->used_seen != idx; q->used_seen++) {
		unsigned int slot = q->used_seen % q->num;
		struct vring_used_elem elem = {
			.id = READ_ONCE(q->dev_used->ring[slot].id),
			.len = READ_ONCE(q->dev_used->ring[slot].len),
		};

		head = virtio32_to_cpu(vdev, elem.id);
		/* Without tracking, only the range can be checked. */
		if (head >= q->num ||
		    (!q->track_lost && !q->outstanding[head])) {
			q->bad_used = true;
			q->bad_head = head;
			break;
		}
		if (!q->track_lost)
			q->outstanding[head]--;
		q->used->ring[slot] = elem;
	}
	if (q->used_seen != start) {
		virtio_wmb(true);
		WRITE_ONCE(q->used->idx, cpu_to_virtio16(vdev, q->used_seen));
	}
}

/*
 * Publishes what the device used; returns whether entries are left that
 * need retiring first (zero-copy), which only a caller that may sleep can
 * do: vl_queue_complete().
 */
static bool __vl_publish_used(struct vl_queue *q)
{
	struct virtio_device *vdev = &q->vl->vdev;
	__virtio16 *used_event = &q->dev_avail->ring[q->num];
	unsigned int round;

	/*
	 * Bounded: a device that keeps adding as fast as we publish calls
	 * again for what it adds after the last round.
	 */
	for (round = 0; round < 4; round++) {
		__vl_publish_batch(q);
		if (q->bad_used)
			return false;
		if (!vl_dev_event_idx(q))
			break;
		/*
		 * Ask for a call at the device's next completion, then look
		 * again: an entry added before the device could see the new
		 * used_event came without a call (pairs with the device's
		 * barrier between adding an entry and reading used_event).
		 */
		WRITE_ONCE(*used_event, cpu_to_virtio16(vdev, q->used_seen));
		smp_mb();
		if (vl_dev_used_idx(q) == q->used_seen)
			return false;
		if (q->used_seen == q->retired_upto && vl_retirement_needed(q))
			break;
	}
	return vl_retirement_needed(q) && vl_dev_used_idx(q) != q->used_seen;
}

/*
 * Whether the device wants a kick for the entries [old, new) just
 * forwarded. Pairs with the back-end's barrier between re-enabling
 * notifications (clearing VRING_USED_F_NO_NOTIFY, or moving avail_event)
 * and checking the avail index again: either it sees our index, or we see
 * what it wrote.
 */
static bool __vl_device_wants_kick(struct vl_queue *q, u16 old, u16 new)
{
	struct virtio_device *vdev = &q->vl->vdev;

	smp_mb();
	if (vl_dev_event_idx(q)) {
		u16 event = virtio16_to_cpu(vdev,
				READ_ONCE(*(__virtio16 *)&q->dev_used->ring[q->num]));

		return vring_need_event(event, new, old);
	}
	return !(READ_ONCE(q->dev_used->flags) &
		 cpu_to_virtio16(vdev, VRING_USED_F_NO_NOTIFY));
}

/* Forwards new avail entries; returns whether the device wants a kick. */
static bool vl_forward_avail(struct vl_queue *q)
{
	unsigned long flags;
	bool kick = true;
	u16 old;

	spin_lock_irqsave(&q->track_lock, flags);
	if (q->outstanding) {
		old = q->avail_seen;
		__vl_forward_avail(q);
		kick = __vl_device_wants_kick(q, old, q->avail_seen);
	}
	spin_unlock_irqrestore(&q->track_lock, flags);
	return kick;
}

/* --- kick --------------------------------------------------------------- */

static void vl_signal_kick(struct eventfd_ctx *ctx)
{
	bool *kicking = &get_cpu_var(vl_kicking);

	*kicking = true;
	vl_eventfd_signal(ctx);
	*kicking = false;
	put_cpu_var(vl_kicking);
}

static void vl_kick(struct vl_queue *q)
{
	struct eventfd_ctx *ctx;

	rcu_read_lock();
	ctx = rcu_dereference(q->kick);
	if (unlikely(!ctx)) {
		/* Remember the kick for the eventfd to come. */
		set_bit(VL_QUEUE_KICK_PENDING, &q->flags);
		/*
		 * Pairs with smp_mb() in vl_queue_replace_kick(): either it
		 * sees the pending bit, or we see its eventfd and deliver.
		 */
		smp_mb__after_atomic();
		ctx = rcu_dereference(q->kick);
		if (!ctx ||
		    !test_and_clear_bit(VL_QUEUE_KICK_PENDING, &q->flags))
			goto out;
	}
	if (likely(eventfd_signal_allowed())) {
		vl_signal_kick(ctx);
		atomic_long_inc(&q->stats.kicks);
	} else if (!test_and_set_bit(VL_QUEUE_KICK_DEFERRED, &q->flags)) {
		queue_work(vl_wq, &q->kick_work);
		atomic_long_inc(&q->stats.kicks_deferred);
	}
out:
	rcu_read_unlock();
}

static void vl_kick_work(struct work_struct *work)
{
	struct vl_queue *q = container_of(work, struct vl_queue, kick_work);

	clear_bit(VL_QUEUE_KICK_DEFERRED, &q->flags);
	vl_kick(q);
}

/* virtqueue notify callback; may run in atomic context. */
bool vl_notify(struct virtqueue *vq)
{
	struct vl_queue *q = vq->priv;
	bool wanted = vl_forward_avail(q);

	if (unlikely(vl_is_dead(q->vl))) {
		/* No device any more: fail the new requests from the worker. */
		vl_queue_device_work(q->vl, &q->vl->abort_work);
		return true;
	}
	if (wanted)
		vl_kick(q);
	else
		atomic_long_inc(&q->stats.kicks_suppressed);
	return true;
}

/* --- call --------------------------------------------------------------- */

/*
 * Publishes the device's new used entries; whether it wrote one the driver
 * must not see.
 */
static bool vl_queue_publish_used(struct vl_queue *q, bool *more)
{
	unsigned long flags;
	bool bad;

	spin_lock_irqsave(&q->track_lock, flags);
	if (q->outstanding && !q->bad_used)
		*more = __vl_publish_used(q);
	bad = q->bad_used;
	spin_unlock_irqrestore(&q->track_lock, flags);
	return bad;
}

static void vl_queue_reject_used(struct vl_queue *q)
{
	if (q->bad_head == U32_MAX)
		dev_warn_ratelimited(&q->vl->dev,
				     "queue %u: the device moved the used index by more than the ring\n",
				     q->index);
	else
		dev_warn_ratelimited(&q->vl->dev,
				     "queue %u: the device returned head %u, which is not outstanding\n",
				     q->index, q->bad_head);
	vl_fail(q->vl, "the device broke the used ring");
}

/*
 * Publishes the device's completions and runs the queue's vring interrupt,
 * as a device interrupt would. A bad entry is withheld, with everything
 * after it, and fails the device.
 */
static bool __vl_queue_interrupt(struct vl_queue *q)
{
	unsigned long flags;
	bool bad = false, more = false;

	spin_lock_irqsave(&q->irq_lock, flags);
	if (q->vq) {
		bad = vl_queue_publish_used(q, &more);
		atomic_long_inc(&q->stats.interrupts);
		vring_interrupt(0, q->vq);
	}
	spin_unlock_irqrestore(&q->irq_lock, flags);
	if (bad) {
		atomic_long_inc(&q->stats.irqs_withheld);
		vl_queue_reject_used(q);
	}
	return more;
}

void vl_queue_interrupt(struct vl_queue *q)
{
	__vl_queue_interrupt(q);
}

/*
 * Publishes everything the device used and runs the interrupt, retiring
 * zero-copy buffers first; from a context that may sleep. Bounded like
 * __vl_publish_used(): a device that keeps adding calls again.
 */
void vl_queue_complete(struct vl_queue *q)
{
	unsigned int round;

	if (!vl_zero_copy(q)) {
		vl_queue_interrupt(q);
		return;
	}
	for (round = 0; round < 4; round++) {
		vl_queue_retire(q);
		if (!__vl_queue_interrupt(q))
			break;
	}
}

static void vl_irq_work(struct work_struct *work)
{
	struct vl_queue *q = container_of(work, struct vl_queue, irq_work);

	clear_bit(VL_QUEUE_IRQ_DEFERRED, &q->flags);
	vl_queue_complete(q);
}

/* Deferred zero-copy completion: task work or work item. */
static void vl_queue_run_retire(struct vl_queue *q)
{
	clear_bit(VL_QUEUE_RETIRE_QUEUED, &q->flags);
	vl_queue_complete(q);
	put_device(&q->vl->dev);
}

static void vl_retire_twork(struct callback_head *cb)
{
	vl_queue_run_retire(container_of(cb, struct vl_queue, retire_twork));
}

static void vl_retire_work(struct work_struct *work)
{
	vl_queue_run_retire(container_of(work, struct vl_queue, retire_work));
}

/*
 * From the call wakeup of a zero-copy device: the completion needs a
 * context that sleeps. The signalling task's own, before it returns to
 * user space, costs no wake-up and keeps the back-end's call synchronous;
 * interrupt context and tasks that never return to user space use the
 * workqueue. (A user task that signals and then sleeps in the kernel for
 * long delays its completions as long; the adapter's GET_QUEUE every
 * second completes them anyway.) The queued item holds a reference to
 * the device.
 */
static void vl_queue_defer_complete(struct vl_queue *q)
{
	if (test_and_set_bit(VL_QUEUE_RETIRE_QUEUED, &q->flags))
		return;
	get_device(&q->vl->dev);
	if (in_task() && !(current->flags & VL_PF_NO_RESUME)) {
		init_task_work(&q->retire_twork, vl_retire_twork);
		if (!task_work_add(current, &q->retire_twork, TWA_RESUME))
			return;
	}
	queue_work(vl_wq, &q->retire_work);
}

/* Wait-queue callback of the call eventfd: eventfd lock held, irqs off. */
static int vl_call_wakeup(wait_queue_entry_t *wait, unsigned int mode,
			  int sync, void *key)
{
	struct vl_queue *q = container_of(wait, struct vl_queue, call_wait);
	__poll_t events = key_to_poll(key);
	u64 count;

	if (!(events & EPOLLIN))
		return 0;
	eventfd_ctx_do_read(q->call, &count);
	if (vl_zero_copy(q)) {
		vl_queue_defer_complete(q);
		return 0;
	}
	if (unlikely(this_cpu_read(vl_kicking))) {
		if (!test_and_set_bit(VL_QUEUE_IRQ_DEFERRED, &q->flags)) {
			queue_work(vl_wq, &q->irq_work);
			atomic_long_inc(&q->stats.irqs_deferred);
		}
		return 0;
	}
	vl_queue_interrupt(q);
	return 0;
}

static void vl_call_ptable_queue(struct file *file, wait_queue_head_t *wqh,
				 poll_table *pt)
{
	struct vl_queue *q = container_of(pt, struct vl_queue, call_pt);

	q->call_wqh = wqh;
	add_wait_queue(wqh, &q->call_wait);
}

/* Caller holds vl->lock. */
static void vl_queue_detach_call(struct vl_queue *q)
{
	u64 count;

	if (!q->call)
		return;
	eventfd_ctx_remove_wait_queue(q->call, &q->call_wait, &count);
	flush_work(&q->irq_work);
	flush_work(&q->retire_work);
	eventfd_ctx_put(q->call);
	q->call = NULL;
}

/* Caller holds vl->lock. Takes over the reference to ctx. */
static int vl_queue_attach_call(struct vl_queue *q, struct file *file,
				struct eventfd_ctx *ctx)
{
	__poll_t events;

	q->call = ctx;
	init_waitqueue_func_entry(&q->call_wait, vl_call_wakeup);
	init_poll_funcptr(&q->call_pt, vl_call_ptable_queue);
	events = vfs_poll(file, &q->call_pt);
	/* Signals that came before we listened: deliver them now. */
	if (events & EPOLLIN) {
		u64 count;

		eventfd_ctx_remove_wait_queue(ctx, &q->call_wait, &count);
		add_wait_queue(q->call_wqh, &q->call_wait);
		vl_queue_complete(q);
	}
	return 0;
}

/* Caller holds vl->lock. */
static void vl_queue_replace_kick(struct vl_queue *q, struct eventfd_ctx *ctx)
{
	struct eventfd_ctx *old = rcu_replace_pointer(q->kick, ctx, true);

	if (old) {
		/*
		 * No notify uses old after this. (Only replacing waits: set-up
		 * time matters, and a first eventfd replaces nothing.)
		 */
		synchronize_rcu();
		flush_work(&q->kick_work);
		eventfd_ctx_put(old);
	}
	/* Pairs with the barrier in vl_kick(). */
	smp_mb();
	if (ctx && test_and_clear_bit(VL_QUEUE_KICK_PENDING, &q->flags))
		vl_eventfd_signal(ctx);
}

/* Resolves an eventfd argument: -1 is "none". */
static int vl_get_eventfd(int fd, struct file **filep,
			  struct eventfd_ctx **ctxp)
{
	struct file *file;
	struct eventfd_ctx *ctx;

	*filep = NULL;
	*ctxp = NULL;
	if (fd == -1)
		return 0;
	file = fget(fd);
	if (!file)
		return -EBADF;
	ctx = eventfd_ctx_fileget(file);
	if (IS_ERR(ctx)) {
		fput(file);
		return PTR_ERR(ctx);	/* -EINVAL: not an eventfd */
	}
	*filep = file;
	*ctxp = ctx;
	return 0;
}

/* VIRTIO_LOOPBACK_IOC_SET_QUEUE_FDS; caller holds vl->lock. */
int vl_queue_set_fds(struct vl_queue *q, int kick_fd, int call_fd)
{
	struct file *kick_file, *call_file;
	struct eventfd_ctx *kick, *call;
	int err;

	err = vl_get_eventfd(kick_fd, &kick_file, &kick);
	if (err)
		return err;
	err = vl_get_eventfd(call_fd, &call_file, &call);
	if (err)
		goto put_kick;
	/* One eventfd for both would make every kick an interrupt. */
	if (kick && kick == call) {
		err = -EINVAL;
		goto put_call;
	}

	vl_queue_detach_call(q);
	vl_queue_replace_kick(q, kick);
	if (call)
		vl_queue_attach_call(q, call_file, call);
	if (kick_file)
		fput(kick_file);
	if (call_file)
		fput(call_file);
	return 0;

put_call:
	if (call) {
		eventfd_ctx_put(call);
		fput(call_file);
	}
put_kick:
	if (kick) {
		eventfd_ctx_put(kick);
		fput(kick_file);
	}
	return err;
}

/* Caller holds vl->lock, or is the last user of the device. */
void vl_queue_release_fds(struct vl_queue *q)
{
	vl_queue_detach_call(q);
	vl_queue_replace_kick(q, NULL);
}

void vl_queue_init(struct vl_device *vl, struct vl_queue *q,
		   unsigned int index)
{
	q->vl = vl;
	q->index = index;
	spin_lock_init(&q->irq_lock);
	spin_lock_init(&q->track_lock);
	INIT_WORK(&q->kick_work, vl_kick_work);
	INIT_WORK(&q->irq_work, vl_irq_work);
	INIT_WORK(&q->retire_work, vl_retire_work);
	mutex_init(&q->retire_lock);
}

/* --- ring set-up -------------------------------------------------------- */

/* The device's view of the rings: its avail ring, then its used ring. */
u64 vl_queue_dev_avail_iova(struct vl_queue *q)
{
	return q->dev_rings_iova;
}

u64 vl_queue_dev_used_iova(struct vl_queue *q)
{
	return q->dev_rings_iova + vl_device_rings_avail_size(q->num);
}

static int vl_queue_alloc_dev_rings(struct vl_queue *q, unsigned int num)
{
	struct vl_window *win = q->vl->window;
	void *rings = vl_window_alloc_coherent(win, vl_device_rings_size(num),
					       &q->dev_rings_iova);

	if (!rings)
		return -ENOMEM;
	q->dev_avail = rings;
	q->dev_used = rings + vl_device_rings_avail_size(num);
	/* Written by the kernel only. */
	vl_window_protect(win, VL_PROTECT_DEV_AVAIL(q->index),
			  q->dev_rings_iova, vl_device_rings_avail_size(num));
	return 0;
}

static void vl_queue_free_dev_rings(struct vl_queue *q, unsigned int num)
{
	struct vl_window *win = q->vl->window;

	vl_window_unprotect(win, VL_PROTECT_DEV_AVAIL(q->index));
	vl_window_free_coherent(win, q->dev_avail, q->dev_rings_iova,
				vl_device_rings_size(num));
	q->dev_avail = NULL;
	q->dev_used = NULL;
	q->dev_rings_iova = 0;
}

/*
 * Binds a freshly created virtqueue to the queue; caller holds vqs_lock.
 * The rings were allocated by our DMA ops, so they lie in the window.
 */
int vl_queue_attach(struct vl_queue *q, struct virtqueue *vq)
{
	struct vl_window *win = q->vl->window;
	unsigned int num = virtqueue_get_vring_size(vq);
	size_t used_size = struct_size(q->used, ring, num) + sizeof(u16);
	u16 *outstanding;
	int err;

	q->desc = vl_window_coherent_ptr(win, virtqueue_get_desc_addr(vq),
					 sizeof(struct vring_desc) * num);
	q->avail = vl_window_coherent_ptr(win, virtqueue_get_avail_addr(vq),
					  struct_size(q->avail, ring, num));
	/* The used ring is followed by avail_event (EVENT_IDX). */
	q->used = vl_window_coherent_ptr(win, virtqueue_get_used_addr(vq),
					 used_size);
	if (WARN_ON(!q->desc || !q->avail || !q->used))
		return -EINVAL;
	outstanding = kcalloc(num, sizeof(*outstanding), GFP_KERNEL);
	if (!outstanding)
		return -ENOMEM;
	err = vl_queue_alloc_dev_rings(q, num);
	if (err) {
		kfree(outstanding);
		return err;
	}
	/*
	 * The back-end reads descriptors from the driver's table, and must
	 * not write any of the driver's vring: the driver reads descriptor
	 * flags back when it frees a chain, and its rings are mediated.
	 */
	vl_window_protect(win, VL_PROTECT_VRING(q->index),
			  virtqueue_get_desc_addr(vq),
			  virtqueue_get_used_addr(vq) + used_size -
			  virtqueue_get_desc_addr(vq));

	spin_lock_irq(&q->track_lock);
	q->outstanding = outstanding;
	q->avail_seen = 0;
	q->used_seen = 0;
	q->retired_upto = 0;
	q->track_lost = false;
	q->bad_used = false;
	q->num = num;
	spin_unlock_irq(&q->track_lock);

	vq->priv = q;
	spin_lock_irq(&q->irq_lock);
	q->vq = vq;
	spin_unlock_irq(&q->irq_lock);
	return 0;
}

/* Unbinds the virtqueue before it is deleted; caller holds vqs_lock. */
void vl_queue_detach(struct vl_queue *q)
{
	unsigned int num;
	u16 *outstanding;

	spin_lock_irq(&q->irq_lock);
	q->vq = NULL;
	spin_unlock_irq(&q->irq_lock);
	flush_work(&q->irq_work);
	flush_work(&q->retire_work);
	vl_window_unprotect(q->vl->window, VL_PROTECT_VRING(q->index));

	spin_lock_irq(&q->track_lock);
	outstanding = q->outstanding;
	q->outstanding = NULL;
	num = q->num;
	q->num = 0;
	spin_unlock_irq(&q->track_lock);
	kfree(outstanding);
	vl_queue_free_dev_rings(q, num);
	q->desc = NULL;
	q->avail = NULL;
	q->used = NULL;
}

/*
 * How far the queue got, for VIRTIO_LOOPBACK_IOC_GET_QUEUE: an interrupt
 * runs first, so the counts include what the device completed. Caller
 * holds vqs_lock.
 */
void vl_queue_progress(struct vl_queue *q, u32 *outstanding, u16 *avail_idx,
		       u16 *used_idx)
{
	unsigned int head;

	/*
	 * Whatever is published must be followed by an interrupt: the device
	 * decided whether to call from the used_event publishing moves, so
	 * entries published here without one could be announced by nobody.
	 */
	vl_queue_complete(q);
	*outstanding = 0;
	spin_lock_irq(&q->track_lock);
	for (head = 0; head < q->num; head++)
		*outstanding += q->outstanding[head];
	*avail_idx = q->avail_seen;
	*used_idx = q->used_seen;
	spin_unlock_irq(&q->track_lock);
}

/* --- handing a queue to a new back-end --------------------------------- */

/*
 * VIRTIO_LOOPBACK_IOC_REQUEUE: after a back-end died with requests taken
 * but not completed, rewrite the device's available ring so that all
 * outstanding heads follow the used index. The driver's own ring is not
 * touched: the device's view is ours to arrange. Caller holds vqs_lock;
 * no back-end may be serving the queue.
 */
int vl_queue_requeue(struct vl_queue *q, u32 *base, u32 *count)
{
	struct virtio_device *vdev = &q->vl->vdev;
	unsigned int outstanding = 0;
	u16 used_idx, pos, head;
	int err = 0;

	if (!q->vq)
		return -EAGAIN;
	/* What the lost back-end completed reaches the driver first. */
	vl_queue_complete(q);
	spin_lock_irq(&q->track_lock);
	used_idx = vl_dev_used_idx(q);
	for (head = 0; head < q->num; head++) {
		if (q->outstanding[head] > 1)
			err = -EIO;
		outstanding += q->outstanding[head];
	}
	if (err || q->track_lost || q->bad_used ||
	    outstanding != (u16)(q->avail_seen - used_idx)) {
		/* The rings disagree with what we saw: do not guess. */
		err = -EIO;
		goto out;
	}
	pos = used_idx;
	for (head = 0; head < q->num; head++)
		if (q->outstanding[head])
			q->dev_avail->ring[pos++ % q->num] =
				cpu_to_virtio16(vdev, head);
	virtio_wmb(true);
	*base = used_idx;
	*count = outstanding;
out:
	spin_unlock_irq(&q->track_lock);
	return err;
}

/* --- failing in-flight requests ----------------------------------------- */

/*
 * How a buffer that user space will never complete is completed instead.
 * The completion must be a failure the driver understands: virtio-blk
 * reads a status byte (the last device-writable byte), so a zero there
 * would pass stale data as good; so does virtio-net's control queue (a
 * zero acks a command that was never applied), and a receive buffer with
 * a used length of 1 is dropped as too short; virtio-fs reads a FUSE reply header from
 * the first device-writable buffer (zeroes there would be a successful,
 * empty reply), so it gets a header with -EIO; the others get zero-filled,
 * zero-length buffers (virtio-input ignores the length, and zeroes decode
 * as an EV_SYN/SYN_REPORT, which is harmless).
 */
enum vl_fail_fill {
	VL_FAIL_ZERO,
	VL_FAIL_STATUS_BYTE,	/* last device-writable byte: 1, an error */
	VL_FAIL_FUSE_HEADER,
};

static const struct {
	u32 device_id;
	enum vl_fail_fill fill;
} vl_fail_table[] = {
	{ VIRTIO_ID_BLOCK, VL_FAIL_STATUS_BYTE },
	{ VIRTIO_ID_NET, VL_FAIL_STATUS_BYTE },
	{ VIRTIO_ID_FS, VL_FAIL_FUSE_HEADER },
};

static enum vl_fail_fill vl_fail_fill_for(u32 device_id)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(vl_fail_table); i++)
		if (vl_fail_table[i].device_id == device_id)
			return vl_fail_table[i].fill;
	return VL_FAIL_ZERO;
}

struct vl_fail_walk {
	enum vl_fail_fill fill;
	u64 first, last;	/* device-writable buffers; 0: none */
	u32 first_len, last_len;
};

static bool vl_fail_buffer(struct vl_queue *q, const struct vl_buffer *buf,
			   void *arg)
{
	struct vl_fail_walk *walk = arg;

	if (!buf->device_writes || !buf->len)
		return true;
	if (walk->fill == VL_FAIL_ZERO &&
	    !vl_window_zero(q->vl->window, buf->addr, buf->len))
		return true;
	if (!walk->first) {
		walk->first = buf->addr;
		walk->first_len = buf->len;
	}
	walk->last = buf->addr;
	walk->last_len = buf->len;
	return true;
}

/*
 * Fills the device-writable buffers of the chain at head as the failure
 * requires; returns the used length to report.
 */
static u32 vl_fail_chain(struct vl_queue *q, u16 head, enum vl_fail_fill fill)
{
	struct vl_window *win = q->vl->window;
	struct vl_fail_walk walk = { .fill = fill };

	vl_walk_chain(q, head, vl_fail_buffer, &walk);
	BUILD_BUG_ON(VIRTIO_BLK_S_IOERR != VIRTIO_NET_ERR);
	if (fill == VL_FAIL_STATUS_BYTE && walk.last) {
		u8 status = VIRTIO_BLK_S_IOERR;

		if (vl_window_write(win, walk.last + walk.last_len - 1,
				    &status, 1))
			return 1;
	}
	if (fill == VL_FAIL_FUSE_HEADER && walk.first &&
	    walk.first_len >= sizeof(struct fuse_out_header)) {
		struct fuse_out_header out = {
			.len = sizeof(out),
			.error = -EIO,
		};

		if (vl_window_write(win, walk.first, &out, sizeof(out)))
			return sizeof(out);
	}
	return 0;
}

/* Appends one used element; the index is published by the caller. */
static void vl_push_used(struct vl_queue *q, u16 used_idx, u16 head, u32 len)
{
	struct virtio_device *vdev = &q->vl->vdev;
	struct vring_used_elem *elem = &q->used->ring[used_idx % q->num];

	elem->id = cpu_to_virtio32(vdev, head);
	elem->len = cpu_to_virtio32(vdev, len);
}

/*
 * Whether head's chain still looks submitted: its first buffer (or its
 * indirect table) is a live streaming mapping. A filter against spurious
 * heads, not a proof: a stale descriptor may name a reused address.
 */
static bool vl_head_is_live(struct vl_queue *q, u16 head)
{
	u64 addr = virtio64_to_cpu(&q->vl->vdev, q->desc[head].addr);

	return vl_window_is_mapped(q->vl->window, addr);
}

/*
 * Tracking was lost (more buffers moved between two doorbells than the
 * ring holds): every head with a live chain is the best guess left.
 */
static void vl_track_from_mappings(struct vl_queue *q)
{
	u16 head;

	for (head = 0; head < q->num; head++)
		q->outstanding[head] = vl_head_is_live(q, head);
	q->track_lost = false;
	dev_warn(&q->vl->dev,
		 "queue %u: in-flight tracking was lost; failing every head with live buffers\n",
		 q->index);
}

/*
 * Completes every outstanding buffer of the queue with a failure and runs
 * its interrupt. Called from the abort worker after the window was
 * revoked, with vqs_lock held; the driver may keep adding buffers, each
 * add notifies (we reset the notification suppression), and each notify
 * queues the worker again.
 */
void vl_queue_fail_inflight(struct vl_queue *q)
{
	struct virtio_device *vdev = &q->vl->vdev;
	enum vl_fail_fill fill = vl_fail_fill_for(q->vl->device_id);
	u16 used_idx, head;
	unsigned int failed = 0;

	if (!q->vq)
		return;

	spin_lock_irq(&q->track_lock);
	/* Count what the driver added since its last notify, too. */
	__vl_forward_avail(q);
	if (!q->bad_used)
		__vl_publish_used(q);
	if (q->track_lost)
		vl_track_from_mappings(q);
	/*
	 * Append after the last entry published: anything the device wrote
	 * beyond it (bad heads, an index that jumped) the driver never saw.
	 */
	used_idx = q->used_seen;
	for (head = 0; head < q->num; head++) {
		if (!q->outstanding[head])
			continue;
		q->outstanding[head] = 0;
		if (!vl_head_is_live(q, head))
			continue;
		vl_push_used(q, used_idx++, head,
			     vl_fail_chain(q, head, fill));
		failed++;
	}
	q->used_seen = used_idx;
	q->bad_used = false;
	virtio_wmb(true);
	WRITE_ONCE(q->used->idx, cpu_to_virtio16(vdev, used_idx));
	/*
	 * The device's view follows, so that the interrupt below finds
	 * nothing new there (user space can no longer write it: revoked).
	 */
	WRITE_ONCE(q->dev_used->idx, cpu_to_virtio16(vdev, used_idx));
	spin_unlock_irq(&q->track_lock);

	/*
	 * Should the driver have marked the queue broken anyway (no bad
	 * entry reaches it, but it has checks of its own), let it complete
	 * the failed requests rather than leave them (and its removal)
	 * waiting forever.
	 */
	if (virtqueue_is_broken(q->vq))
		__virtio_unbreak_device(vdev);
	if (failed)
		dev_dbg(&q->vl->dev, "queue %u: failed %u in-flight buffers\n",
			q->index, failed);
	vl_queue_interrupt(q);
}
