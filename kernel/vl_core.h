/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio-loopback transport: shared definitions.
 *
 * One open file of /dev/virtio-loopback owns one struct vl_device. The
 * device has three faces:
 *   - to the virtio core, a virtio transport (vl_virtio.c): config ops,
 *     virtqueues, and control messages answered by user space;
 *   - to the DMA API, a device whose mappings live in a per-device window
 *     of memory that user space can mmap (vl_window.c);
 *   - to the back-end, doorbells: kick and call eventfds (vl_queue.c).
 * vl_main.c is the character device: file operations and the uapi.
 *
 * Lifetime: struct vl_device is freed when the reference count of its
 * embedded struct device (vl->dev) drops to zero. References are held by
 * the open file, by the registered virtio device (vl->vdev, dropped in its
 * release), and by each queued work item.
 */
#ifndef VL_CORE_H
#define VL_CORE_H

#include <linux/device.h>
#include <linux/eventfd.h>
#include <linux/iova.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/virtio.h>
#include <linux/virtio_loopback.h>
#include <linux/virtio_ring.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

struct gen_pool;
struct mem_cgroup;

/* Zero-copy states of a mapping (vl_window.c, "zero-copy"). */
enum vl_zc_state {
	VL_ZC_FREE,		/* no mapping */
	VL_ZC_MAPPED,		/* mapped by the driver, not given to the device */
	VL_ZC_PUBLISHED,	/* in a chain the device owns: user space may map it */
	VL_ZC_RETIRED,		/* its completion is being published: no access */
};

/*
 * One page of a window's bounce or zero-copy zone. The head slot of a
 * mapping (its first page) describes the whole mapping.
 */
struct vl_slot {
	/*
	 * Bounce zone: allocated on first use and kept (cmpxchg).
	 * Zero-copy zone: the driver's page while mapped.
	 */
	struct page *page;
	phys_addr_t orig;	/* head: the driver's address of byte 0 */
	u32 size;		/* head: bytes mapped, 0 when free */
	u32 head;		/* 1 + index of the mapping's head, 0 if free */
	/* Zero-copy zone, head only. */
	u32 next;		/* 1 + head index of the chain's next mapping */
	u8 state;		/* enum vl_zc_state */
	bool device_writes;	/* DMA_FROM_DEVICE or BIDIRECTIONAL */
};

/* A zone of streaming mappings: IOVA allocator and per-page slots. */
struct vl_zone {
	struct iova_domain iovad;	/* has its own locks */
	bool iovad_ready;
	unsigned long first_pfn;
	unsigned long pages;
	struct vl_slot *slots;		/* one per page */
};

/* IOVA ranges to unmap from user space, merged where they touch. */
#define VL_ZAP_RANGES 8
struct vl_zap {
	unsigned int count;
	bool overflow;			/* too many: zap [start[0], end[0]) */
	u64 start[VL_ZAP_RANGES];
	u64 end[VL_ZAP_RANGES];
};

/**
 * struct vl_window - the DMA window of one device
 *
 * All memory a device's back-end can reach: vrings (coherent allocations,
 * in the coherent zone) and bounce buffers (streaming mappings, in the
 * bounce zone). IOVA = byte offset in the window; the first page is never
 * allocated so that IOVA 0 stays invalid. vl_window.c explains the zones.
 *
 * A slot's mapping fields are written by the map and unmap of the mapping
 * that owns it (the IOVA allocator hands each range to one owner) and read
 * by its syncs, which the DMA API orders; other readers (the abort path)
 * only filter with them.
 */
struct vl_window {
	struct kref ref;		/* device + window file */
	size_t size;
	struct mem_cgroup *memcg;	/* the creator's: pays for the pages */

	/* Coherent zone: [0, coherent_size), vmalloc'ed and zeroed. */
	void *coherent;
	size_t coherent_size;
	struct gen_pool *pool;		/* allocator of [PAGE_SIZE, coherent_size) */
	u32 *coherent_alloc;		/* bytes allocated at each page, or 0 */

	/* Bounce zone: after the coherent zone. */
	struct vl_zone bounce;
	/*
	 * Zero-copy zone: after the bounce zone, IOVA space only (pages == 0
	 * when the device was created without zero-copy).
	 */
	struct vl_zone zc;

	/* Counters for debugfs (vl_debugfs.c); updated without locks. */
	struct {
		atomic_long_t maps;
		atomic_long_t map_failures;	/* no room: the request is retried */
		atomic_long_t pages;		/* bounce pages allocated */
		atomic_long_t page_failures;	/* ... that could not be */
		atomic_long_t bytes_to_device;
		atomic_long_t bytes_from_device;
		atomic_long_t bounce_ns;	/* time spent copying */
		atomic_long_t dma_ns;		/* time in map/unmap, copies included */
		atomic_long_t zc_maps;		/* mappings not bounced */
		atomic_long_t zc_pages;		/* ... their pages */
		atomic_long_t zc_faults;	/* user faults that mapped them */
		atomic_long_t zc_zaps;		/* unmap_mapping_range() calls */
		atomic_long_t zc_fault_ns;	/* time mapping them in faults */
		atomic_long_t zc_zap_ns;	/* time unmapping them */
	} stats;

	struct file *file;		/* the mmap-only window file */
	struct page *sink;		/* mapped in place of revoked pages */
	/*
	 * Faults hold revoke_lock for read while they map a page; revocation
	 * and zero-copy retirement take it for write to wait them out.
	 */
	struct rw_semaphore revoke_lock;
	bool revoked;
	bool zapped;			/* revoked, and nothing is mapped any more */
	/*
	 * Ranges user space may read but not write: per queue, the driver's
	 * vring and the device's available ring (VL_PROTECT_*).
	 */
	spinlock_t protect_lock;	/* protects protected[] */
	struct {
		u64 start;
		u64 end;
	} protected[2 * VIRTIO_LOOPBACK_MAX_QUEUES];
};

/* One virtqueue of a device: its ring and its doorbells. */
struct vl_queue {
	struct vl_device *vl;
	unsigned int index;

	/*
	 * The driver's virtqueue, NULL when not set up. Written under
	 * vl->vqs_lock and irq_lock; read under either.
	 */
	struct virtqueue *vq;
	unsigned int num;
	/* The driver's vring, in the window, read-only to user space. */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	/*
	 * The device's view of the rings (vl_queue.c, "mediated rings"): an
	 * available ring only the kernel writes and a used ring only the
	 * back-end writes, one allocation in the window at dev_rings_iova.
	 */
	struct vring_avail *dev_avail;
	struct vring_used *dev_used;
	u64 dev_rings_iova;

	/* Kick: signalled by vl_notify(); RCU so notify never sleeps. */
	struct eventfd_ctx __rcu *kick;
	unsigned long flags;		/* VL_QUEUE_* bits */
	struct work_struct kick_work;	/* kick from a nested eventfd wakeup */

	/* Call: a wait-queue entry on the eventfd, like KVM's irqfd. */
	struct eventfd_ctx *call;	/* protected by vl->lock */
	wait_queue_entry_t call_wait;
	wait_queue_head_t *call_wqh;
	poll_table call_pt;
	struct work_struct irq_work;	/* interrupt from a nested wakeup */

	spinlock_t irq_lock;		/* serializes vring_interrupt() */

	/*
	 * Zero-copy completion (vl_queue.c): the call wakeup cannot unmap
	 * pages, so it hands the work to the signalling task (task work) or
	 * to the workqueue. retire_lock serializes retirement; retired_upto
	 * (under track_lock) is how far the device's used ring has been
	 * retired, and publication never passes it.
	 */
	struct callback_head retire_twork;
	struct work_struct retire_work;
	struct mutex retire_lock;	/* one retirement at a time */
	u16 retired_upto;

	/* Counters for debugfs (vl_debugfs.c); updated without locks. */
	struct {
		atomic_long_t kicks;		/* kick eventfd signalled */
		atomic_long_t kicks_deferred;	/* ... from the workqueue */
		atomic_long_t kicks_suppressed;	/* device asked for none */
		atomic_long_t interrupts;	/* vring interrupts run */
		atomic_long_t irqs_deferred;	/* ... from the workqueue */
		atomic_long_t irqs_withheld;	/* bad used entries seen */
	} stats;

	/*
	 * Heads made available by the driver and not yet used by the device,
	 * so that they can be failed when user space goes away. Updated on
	 * every notify (avail side) and interrupt (used side).
	 */
	spinlock_t track_lock;		/* protects the fields below */
	u16 *outstanding;		/* per head: times available - used */
	u16 avail_seen;
	u16 used_seen;
	bool track_lost;
	bool bad_used;			/* used_seen points at a bad entry */
	u32 bad_head;
};

/* Slots of vl_window_protect(), two per queue. */
#define VL_PROTECT_VRING(index)		(2 * (index))
#define VL_PROTECT_DEV_AVAIL(index)	(2 * (index) + 1)

/*
 * Bytes of the device's view of one queue's rings (vl_queue.c): its
 * available ring with used_event, and its used ring with avail_event, each
 * on pages of its own so that they can be protected apart.
 */
static inline size_t vl_device_rings_avail_size(unsigned int num)
{
	return PAGE_ALIGN(sizeof(__virtio16) * (3 + num));
}

static inline size_t vl_device_rings_size(unsigned int num)
{
	return vl_device_rings_avail_size(num) +
	       PAGE_ALIGN(sizeof(__virtio16) * 3 +
			  sizeof(struct vring_used_elem) * num);
}

#define VL_QUEUE_KICK_PENDING	0	/* notified while no kick eventfd */
#define VL_QUEUE_KICK_DEFERRED	1	/* kick_work queued */
#define VL_QUEUE_IRQ_DEFERRED	2	/* irq_work queued */
#define VL_QUEUE_RETIRE_QUEUED	3	/* retire_twork or retire_work queued */

/* Where a control message is in its round trip. */
enum vl_msg_state {
	VL_MSG_IDLE,		/* none outstanding */
	VL_MSG_QUEUED,		/* waiting for user space to read it */
	VL_MSG_READ,		/* read, waiting for the reply */
	VL_MSG_ANSWERED,	/* reply in msg_result */
};

struct vl_device {
	struct device dev;		/* DMA parent of vdev; owns this struct */
	struct virtio_device vdev;
	int index;			/* virtio-loopback.<index>, -1 before create */

	/*
	 * lock serializes the ioctls and protects state, the queues' call
	 * eventfds, and the started/registered flags.
	 */
	struct mutex lock;
	u32 state;			/* VIRTIO_LOOPBACK_STATE_* */
	bool added;			/* dev is in sysfs */
	bool registered;		/* vdev is registered */
	unsigned long dead;		/* bit 0: gave up on user space */

	/* Immutable after create. */
	u32 device_id;
	u32 vendor_id;
	u64 device_features;
	u32 num_queues;
	u32 max_queue_size;
	u32 config_size;
	unsigned long timeout;		/* jiffies */
	bool zero_copy;			/* VIRTIO_LOOPBACK_CREATE_ZERO_COPY */

	/* The kernel's copy of config space; see vl_virtio.c. */
	spinlock_t config_lock;		/* protects config and generation */
	u8 config[VIRTIO_LOOPBACK_CONFIG_MAX];
	u32 generation;

	u8 status;			/* virtio status byte */
	u64 driver_features;

	/* Control messages; see vl_send_msg(). */
	struct mutex msg_mutex;		/* one message outstanding */
	spinlock_t msg_lock;		/* protects the fields below */
	enum vl_msg_state msg_state;
	struct virtio_loopback_msg msg;
	int msg_result;
	u32 msg_seq;
	wait_queue_head_t msg_wq;	/* readers, pollers and the sender */

	struct vl_window *window;
	struct vl_queue *queues;	/* num_queues */
	struct mutex vqs_lock;		/* queue vq pointers vs. abort */

	struct work_struct register_work;
	struct work_struct abort_work;
	struct work_struct remove_work;

	struct dentry *debugfs;		/* its stats file, or NULL */
};

#define VL_DEAD 0

static inline struct vl_device *to_vl_device(struct virtio_device *vdev)
{
	return container_of(vdev, struct vl_device, vdev);
}

static inline bool vl_is_dead(struct vl_device *vl)
{
	return test_bit(VL_DEAD, &vl->dead);
}

extern struct workqueue_struct *vl_wq;

/* vl_window.c */
int vl_window_init(void);
void vl_window_exit(void);
struct vl_window *vl_window_create(size_t size, u32 num_queues,
				   u32 max_queue_size, bool zero_copy);
void vl_window_put(struct vl_window *win);
void vl_window_revoke(struct vl_window *win);
void *vl_window_coherent_ptr(struct vl_window *win, u64 iova, size_t len);
void *vl_window_alloc_coherent(struct vl_window *win, size_t size, u64 *iova);
void vl_window_free_coherent(struct vl_window *win, void *vaddr, u64 iova,
			     size_t size);
bool vl_window_read(struct vl_window *win, u64 iova, void *buf, size_t len);
bool vl_window_write(struct vl_window *win, u64 iova, const void *buf,
		     size_t len);
bool vl_window_zero(struct vl_window *win, u64 iova, size_t len);
bool vl_window_is_mapped(struct vl_window *win, u64 iova);
bool vl_window_read_driver(struct vl_window *win, u64 iova, void *buf,
			   size_t len);
bool vl_window_zc_publish(struct vl_window *win, u64 iova, u32 *first,
			  u32 *prev);
void vl_window_zc_link(struct vl_window *win, u32 first, u32 last);
void vl_window_zc_retire(struct vl_window *win, u64 iova, struct vl_zap *zap);
void vl_window_zap(struct vl_window *win, struct vl_zap *zap);
void vl_window_zc_retire_all(struct vl_window *win);
bool vl_window_is_zapped(struct vl_window *win);
void vl_window_protect(struct vl_window *win, unsigned int slot, u64 start,
		       u64 len);
void vl_window_unprotect(struct vl_window *win, unsigned int slot);
size_t vl_window_default_size(u32 num_queues, u32 max_queue_size);
extern const struct dma_map_ops vl_dma_ops;

/* vl_queue.c */
bool vl_notify(struct virtqueue *vq);
int vl_queue_set_fds(struct vl_queue *q, int kick_fd, int call_fd);
void vl_queue_init(struct vl_device *vl, struct vl_queue *q, unsigned int index);
u64 vl_queue_dev_avail_iova(struct vl_queue *q);
u64 vl_queue_dev_used_iova(struct vl_queue *q);
int vl_queue_attach(struct vl_queue *q, struct virtqueue *vq);
void vl_queue_detach(struct vl_queue *q);
void vl_queue_release_fds(struct vl_queue *q);
void vl_queue_interrupt(struct vl_queue *q);
void vl_queue_complete(struct vl_queue *q);
void vl_queue_fail_inflight(struct vl_queue *q);
int vl_queue_requeue(struct vl_queue *q, u32 *base, u32 *count);
void vl_queue_progress(struct vl_queue *q, u32 *outstanding, u16 *avail_idx,
		       u16 *used_idx);

/* vl_debugfs.c */
void vl_debugfs_init(void);
void vl_debugfs_exit(void);
void vl_debugfs_add(struct vl_device *vl);
void vl_debugfs_remove(struct vl_device *vl);

/* vl_virtio.c */
void vl_virtio_setup(struct vl_device *vl);
void vl_queue_device_work(struct vl_device *vl, struct work_struct *work);
int vl_register(struct vl_device *vl);
void vl_fail(struct vl_device *vl, const char *why);
void vl_abort_work(struct work_struct *work);
ssize_t vl_msg_read(struct vl_device *vl, char __user *buf, size_t count,
		    bool nonblock);
ssize_t vl_msg_write(struct vl_device *vl, const char __user *buf,
		     size_t count);
__poll_t vl_msg_poll(struct vl_device *vl, struct file *file,
		     poll_table *wait);
void vl_config_update(struct vl_device *vl, u32 offset, const u8 *data,
		      u32 len, bool notify);

#endif /* VL_CORE_H */
