// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-loopback: the virtio transport and its control messages.
 *
 * The config ops are implemented directly, not by emulating registers.
 * Features, config space and queue limits were given at creation and are
 * cached here, so the frequent calls (get_features, get, generation,
 * get_status) never leave the kernel. What the device must see -- status
 * changes, reset, config writes -- becomes one message on the device file,
 * answered by user space within the device's timeout. A missing answer
 * fails the device (vl_fail()): outstanding requests complete with errors
 * and the virtio device is removed; nothing waits for user space again.
 */
#include <linux/dma-map-ops.h>
#include <linux/slab.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "vl_compat.h"
#include "vl_core.h"

/* --- control messages --------------------------------------------------- */

static bool vl_msg_done(struct vl_device *vl)
{
	return READ_ONCE(vl->msg_state) == VL_MSG_ANSWERED || vl_is_dead(vl);
}

/*
 * Sends msg to user space and waits for the reply, at most vl->timeout.
 * Returns the reply's result, -ENODEV if the device is (or becomes) dead,
 * or -ETIMEDOUT after failing the device. Sleeps.
 */
static int vl_send_msg(struct vl_device *vl, struct virtio_loopback_msg *msg)
{
	int ret;

	mutex_lock(&vl->msg_mutex);
	spin_lock(&vl->msg_lock);
	if (vl_is_dead(vl)) {
		spin_unlock(&vl->msg_lock);
		mutex_unlock(&vl->msg_mutex);
		return -ENODEV;
	}
	vl->msg_seq = vl->msg_seq + 1 ?: 1;	/* ids are never 0 */
	msg->id = vl->msg_seq;
	vl->msg = *msg;
	vl->msg_state = VL_MSG_QUEUED;
	spin_unlock(&vl->msg_lock);
	wake_up_all(&vl->msg_wq);

	wait_event_timeout(vl->msg_wq, vl_msg_done(vl), vl->timeout);

	spin_lock(&vl->msg_lock);
	if (vl->msg_state == VL_MSG_ANSWERED)
		ret = vl->msg_result;
	else if (vl_is_dead(vl))
		ret = -ENODEV;
	else
		ret = -ETIMEDOUT;
	vl->msg_state = VL_MSG_IDLE;
	spin_unlock(&vl->msg_lock);
	mutex_unlock(&vl->msg_mutex);

	if (ret == -ETIMEDOUT)
		vl_fail(vl, "no reply to a control message within the timeout");
	return ret;
}

static bool vl_msg_readable(struct vl_device *vl)
{
	return READ_ONCE(vl->msg_state) == VL_MSG_QUEUED || vl_is_dead(vl);
}

ssize_t vl_msg_read(struct vl_device *vl, char __user *buf, size_t count,
		    bool nonblock)
{
	struct virtio_loopback_msg msg;
	int err;

	if (count < sizeof(msg))
		return -EINVAL;
	for (;;) {
		spin_lock(&vl->msg_lock);
		if (vl_is_dead(vl)) {
			spin_unlock(&vl->msg_lock);
			return -EIO;
		}
		if (vl->msg_state == VL_MSG_QUEUED) {
			msg = vl->msg;
			vl->msg_state = VL_MSG_READ;
			spin_unlock(&vl->msg_lock);
			break;
		}
		spin_unlock(&vl->msg_lock);
		if (nonblock)
			return -EAGAIN;
		err = wait_event_interruptible(vl->msg_wq, vl_msg_readable(vl));
		if (err)
			return err;
	}

	if (copy_to_user(buf, &msg, sizeof(msg))) {
		/* Not delivered: offer it again. */
		spin_lock(&vl->msg_lock);
		if (vl->msg_state == VL_MSG_READ && vl->msg.id == msg.id)
			vl->msg_state = VL_MSG_QUEUED;
		spin_unlock(&vl->msg_lock);
		return -EFAULT;
	}
	return sizeof(msg);
}

ssize_t vl_msg_write(struct vl_device *vl, const char __user *buf,
		     size_t count)
{
	struct virtio_loopback_reply reply;
	ssize_t ret;

	if (count != sizeof(reply))
		return -EINVAL;
	if (copy_from_user(&reply, buf, sizeof(reply)))
		return -EFAULT;
	if (reply.reserved || reply.result > 0 || reply.result < -MAX_ERRNO)
		return -EINVAL;

	spin_lock(&vl->msg_lock);
	if (vl_is_dead(vl)) {
		ret = -EIO;
	} else if (vl->msg_state != VL_MSG_READ || reply.id != vl->msg.id) {
		ret = -ENOENT;	/* no such message awaits a reply */
	} else {
		vl->msg_result = reply.result;
		vl->msg_state = VL_MSG_ANSWERED;
		ret = count;
	}
	spin_unlock(&vl->msg_lock);
	if (ret > 0)
		wake_up_all(&vl->msg_wq);
	return ret;
}

__poll_t vl_msg_poll(struct vl_device *vl, struct file *file,
		     poll_table *wait)
{
	__poll_t mask = EPOLLOUT | EPOLLWRNORM;

	poll_wait(file, &vl->msg_wq, wait);
	if (vl_is_dead(vl))
		return EPOLLERR | EPOLLHUP;
	if (READ_ONCE(vl->msg_state) == VL_MSG_QUEUED)
		mask |= EPOLLIN | EPOLLRDNORM;
	return mask;
}

/* --- config space ------------------------------------------------------- */

static void vl_get(struct virtio_device *vdev, unsigned int offset,
		   void *buf, unsigned int len)
{
	struct vl_device *vl = to_vl_device(vdev);

	spin_lock(&vl->config_lock);
	if (offset <= vl->config_size && len <= vl->config_size - offset)
		memcpy(buf, vl->config + offset, len);
	else
		memset(buf, 0, len);
	spin_unlock(&vl->config_lock);
}

static void vl_set(struct virtio_device *vdev, unsigned int offset,
		   const void *buf, unsigned int len)
{
	struct vl_device *vl = to_vl_device(vdev);
	struct virtio_loopback_msg msg = {
		.type = VIRTIO_LOOPBACK_MSG_SET_CONFIG,
	};

	if (offset > vl->config_size || len > vl->config_size - offset) {
		dev_warn_ratelimited(&vl->dev,
				     "driver wrote config bytes %u..%u, beyond the %u it has\n",
				     offset, offset + len, vl->config_size);
		return;
	}
	spin_lock(&vl->config_lock);
	memcpy(vl->config + offset, buf, len);
	spin_unlock(&vl->config_lock);

	msg.config.offset = offset;
	msg.config.len = len;
	memcpy(msg.config.data, buf, len);
	vl_send_msg(vl, &msg);
}

static u32 vl_generation(struct virtio_device *vdev)
{
	return READ_ONCE(to_vl_device(vdev)->generation);
}

/* VIRTIO_LOOPBACK_IOC_SET_CONFIG: a change made by the device. */
void vl_config_update(struct vl_device *vl, u32 offset, const u8 *data,
		      u32 len, bool notify)
{
	spin_lock(&vl->config_lock);
	memcpy(vl->config + offset, data, len);
	WRITE_ONCE(vl->generation, vl->generation + 1);
	spin_unlock(&vl->config_lock);
	if (notify && READ_ONCE(vl->registered))
		virtio_config_changed(&vl->vdev);
}

/* --- status and features ------------------------------------------------ */

static u8 vl_get_status(struct virtio_device *vdev)
{
	return READ_ONCE(to_vl_device(vdev)->status);
}

static void vl_set_status(struct virtio_device *vdev, u8 status)
{
	struct vl_device *vl = to_vl_device(vdev);
	struct virtio_loopback_msg msg = {
		.type = VIRTIO_LOOPBACK_MSG_SET_STATUS,
	};
	int err;

	WRITE_ONCE(vl->status, status);
	msg.status.status = status;
	if (status & VIRTIO_CONFIG_S_FEATURES_OK)
		msg.status.driver_features = vl->driver_features;
	err = vl_send_msg(vl, &msg);
	if (!err)
		return;

	if (status & VIRTIO_CONFIG_S_DRIVER_OK) {
		if (err != -ENODEV && err != -ETIMEDOUT)
			vl_fail(vl, "user space refused DRIVER_OK");
	} else if (status & VIRTIO_CONFIG_S_FEATURES_OK) {
		/* The virtio core reads this back as "features refused". */
		WRITE_ONCE(vl->status, status & ~VIRTIO_CONFIG_S_FEATURES_OK);
	}
}

static void vl_reset(struct virtio_device *vdev)
{
	struct vl_device *vl = to_vl_device(vdev);
	struct virtio_loopback_msg msg = {
		.type = VIRTIO_LOOPBACK_MSG_RESET,
	};

	/*
	 * User space must stop using the rings before it replies: they are
	 * freed next. If it does not reply the device is failed, which
	 * revokes the window, so the rings are safe to free either way.
	 */
	vl_send_msg(vl, &msg);
	/*
	 * The driver now takes back the buffers the device had: zero-copy
	 * pages must be out of user space's reach before it does.
	 */
	vl_window_zc_retire_all(vl->window);
	WRITE_ONCE(vl->status, 0);
}

static u64 vl_get_features(struct virtio_device *vdev)
{
	struct vl_device *vl = to_vl_device(vdev);

	/*
	 * No EVENT_IDX: the driver notifies on every add, as the mediated
	 * rings need (vl_queue.c); the back-end's own suppression is applied
	 * by vl_notify() instead.
	 */
	return (vl->device_features & ~BIT_ULL(VIRTIO_RING_F_EVENT_IDX)) |
	       BIT_ULL(VIRTIO_F_VERSION_1) | BIT_ULL(VIRTIO_F_ACCESS_PLATFORM);
}

static int vl_finalize_features(struct virtio_device *vdev)
{
	struct vl_device *vl = to_vl_device(vdev);

	vring_transport_features(vdev);
	/* Without ACCESS_PLATFORM the core would bypass the window. */
	if (!__virtio_test_bit(vdev, VIRTIO_F_VERSION_1) ||
	    !__virtio_test_bit(vdev, VIRTIO_F_ACCESS_PLATFORM)) {
		dev_err(&vl->dev,
			"driver did not accept VERSION_1 and ACCESS_PLATFORM\n");
		return -EINVAL;
	}
	vl->driver_features = vdev->features;
	return 0;
}

static const char *vl_bus_name(struct virtio_device *vdev)
{
	return dev_name(&to_vl_device(vdev)->dev);
}

/* --- virtqueues --------------------------------------------------------- */

static struct virtqueue *vl_setup_vq(struct vl_device *vl, unsigned int index,
				     vq_callback_t *callback, const char *name,
				     bool ctx)
{
	struct virtqueue *vq;
	int err;

	if (index >= vl->num_queues)
		return ERR_PTR(-ENOENT);
	/* Page-aligned used ring: see vl_queue_attach(). */
	vq = vring_create_virtqueue(index, vl->max_queue_size, PAGE_SIZE,
				    &vl->vdev, true, true, ctx, vl_notify,
				    callback, name);
	if (!vq)
		return ERR_PTR(-ENOMEM);
	err = vl_queue_attach(&vl->queues[index], vq);
	if (err) {
		vring_del_virtqueue(vq);
		return ERR_PTR(err);
	}
	return vq;
}

static void vl_del_vqs(struct virtio_device *vdev)
{
	struct vl_device *vl = to_vl_device(vdev);
	struct virtqueue *vq, *n;

	mutex_lock(&vl->vqs_lock);
	list_for_each_entry_safe(vq, n, &vdev->vqs, list) {
		vl_queue_detach(vq->priv);
		vring_del_virtqueue(vq);
	}
	mutex_unlock(&vl->vqs_lock);
}

/*
 * Creates the rings the driver asked for. Unnamed entries are queues the
 * driver does not use: they get no ring and no queue index.
 */
static int vl_find_vqs_common(struct virtio_device *vdev, unsigned int nvqs,
			      struct virtqueue *vqs[],
			      vq_callback_t *(*callback_of)(void *, unsigned int),
			      const char *(*name_of)(void *, unsigned int),
			      bool (*ctx_of)(void *, unsigned int), void *args)
{
	struct vl_device *vl = to_vl_device(vdev);
	unsigned int i, index = 0;
	int err = 0;

	mutex_lock(&vl->vqs_lock);
	for (i = 0; i < nvqs; i++) {
		if (!name_of(args, i)) {
			vqs[i] = NULL;
			continue;
		}
		vqs[i] = vl_setup_vq(vl, index++, callback_of(args, i),
				     name_of(args, i), ctx_of(args, i));
		if (IS_ERR(vqs[i])) {
			err = PTR_ERR(vqs[i]);
			break;
		}
	}
	mutex_unlock(&vl->vqs_lock);
	if (err)
		vl_del_vqs(vdev);
	return err;
}

#ifdef VL_HAVE_VIRTQUEUE_INFO
static vq_callback_t *vl_info_callback(void *args, unsigned int i)
{
	return ((struct virtqueue_info *)args)[i].callback;
}

static const char *vl_info_name(void *args, unsigned int i)
{
	return ((struct virtqueue_info *)args)[i].name;
}

static bool vl_info_ctx(void *args, unsigned int i)
{
	return ((struct virtqueue_info *)args)[i].ctx;
}

static int vl_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
		       struct virtqueue *vqs[],
		       struct virtqueue_info vqs_info[],
		       struct irq_affinity *desc)
{
	return vl_find_vqs_common(vdev, nvqs, vqs, vl_info_callback,
				  vl_info_name, vl_info_ctx, vqs_info);
}
#else
struct vl_find_vqs_args {
	vq_callback_t **callbacks;
	const char * const *names;
	const bool *ctx;
};

static vq_callback_t *vl_args_callback(void *args, unsigned int i)
{
	return ((struct vl_find_vqs_args *)args)->callbacks[i];
}

static const char *vl_args_name(void *args, unsigned int i)
{
	return ((struct vl_find_vqs_args *)args)->names[i];
}

static bool vl_args_ctx(void *args, unsigned int i)
{
	const bool *ctx = ((struct vl_find_vqs_args *)args)->ctx;

	return ctx ? ctx[i] : false;
}

static int vl_find_vqs(struct virtio_device *vdev, unsigned int nvqs,
		       struct virtqueue *vqs[], vq_callback_t *callbacks[],
		       const char * const names[], const bool *ctx,
		       struct irq_affinity *desc)
{
	struct vl_find_vqs_args args = {
		.callbacks = callbacks, .names = names, .ctx = ctx,
	};

	return vl_find_vqs_common(vdev, nvqs, vqs, vl_args_callback,
				  vl_args_name, vl_args_ctx, &args);
}
#endif

/* Waits until no vring interrupt of this device is running. */
static void vl_synchronize_cbs(struct virtio_device *vdev)
{
	struct vl_device *vl = to_vl_device(vdev);
	unsigned int i;

	for (i = 0; i < vl->num_queues; i++) {
		spin_lock_irq(&vl->queues[i].irq_lock);
		spin_unlock_irq(&vl->queues[i].irq_lock);
	}
}

static const struct virtio_config_ops vl_config_ops = {
	.get = vl_get,
	.set = vl_set,
	.generation = vl_generation,
	.get_status = vl_get_status,
	.set_status = vl_set_status,
	.reset = vl_reset,
	.find_vqs = vl_find_vqs,
	.del_vqs = vl_del_vqs,
	.synchronize_cbs = vl_synchronize_cbs,
	.get_features = vl_get_features,
	.finalize_features = vl_finalize_features,
	.bus_name = vl_bus_name,
};

/* --- life cycle --------------------------------------------------------- */

/*
 * Queues work on the device, holding a device reference until it ran (the
 * work drops it). Any context: the caller holds a reference already.
 */
void vl_queue_device_work(struct vl_device *vl, struct work_struct *w)
{
	get_device(&vl->dev);
	if (!queue_work(vl_wq, w))
		put_device(&vl->dev);
}

static void vl_vdev_release(struct device *dev)
{
	struct virtio_device *vdev = dev_to_virtio(dev);

	put_device(&to_vl_device(vdev)->dev);
}

static void vl_register_work(struct work_struct *work)
{
	struct vl_device *vl = container_of(work, struct vl_device,
					    register_work);
	int err;

	if (vl_is_dead(vl))
		goto out;
	get_device(&vl->dev);		/* dropped in vl_vdev_release() */
	err = register_virtio_device(&vl->vdev);
	if (err) {
		put_device(&vl->vdev.dev);
		vl_fail(vl, "registering the virtio device failed");
		goto out;
	}
	WRITE_ONCE(vl->registered, true);
out:
	put_device(&vl->dev);
}

/* Removes the device from the system; runs once, after vl_fail(). */
static void vl_remove_work(struct work_struct *work)
{
	struct vl_device *vl = container_of(work, struct vl_device,
					    remove_work);

	flush_work(&vl->register_work);
	if (vl->registered) {
		/*
		 * The driver's remove may wait for its requests; the abort
		 * worker completes them, including any submitted meanwhile.
		 */
		unregister_virtio_device(&vl->vdev);
		WRITE_ONCE(vl->registered, false);
	}
	if (vl->added) {
		vl_debugfs_remove(vl);
		device_del(&vl->dev);
		vl->added = false;
	}
	put_device(&vl->dev);
}

/*
 * The abort worker: takes the window from user space, detaches the
 * doorbells, and completes every outstanding buffer with a failure. It
 * runs again whenever the driver adds buffers to the dead device.
 */
void vl_abort_work(struct work_struct *work)
{
	struct vl_device *vl = container_of(work, struct vl_device,
					    abort_work);
	unsigned int i;

	if (!vl->window)
		goto out;
	if (!vl->window->revoked) {
		vl_window_revoke(vl->window);
		mutex_lock(&vl->lock);
		for (i = 0; i < vl->num_queues; i++)
			vl_queue_release_fds(&vl->queues[i]);
		mutex_unlock(&vl->lock);
	}
	mutex_lock(&vl->vqs_lock);
	for (i = 0; i < vl->num_queues; i++)
		vl_queue_fail_inflight(&vl->queues[i]);
	mutex_unlock(&vl->vqs_lock);
out:
	put_device(&vl->dev);
}

/*
 * Gives up on user space for this device: wakes every waiter, fails the
 * outstanding requests and removes the device. Any context that may sleep
 * or not; idempotent. why is logged unless NULL (an ordinary close).
 */
void vl_fail(struct vl_device *vl, const char *why)
{
	if (test_and_set_bit(VL_DEAD, &vl->dead))
		return;
	if (why)
		dev_warn(&vl->dev, "%s: failing its requests and removing it\n",
			 why);
	wake_up_all(&vl->msg_wq);
	vl_queue_device_work(vl, &vl->abort_work);
	vl_queue_device_work(vl, &vl->remove_work);
}

int vl_register(struct vl_device *vl)
{
	if (vl_is_dead(vl))
		return -EIO;
	vl_queue_device_work(vl, &vl->register_work);
	return 0;
}

void vl_virtio_setup(struct vl_device *vl)
{
	vl->vdev.dev.parent = &vl->dev;
	vl->vdev.dev.release = vl_vdev_release;
	vl->vdev.config = &vl_config_ops;
	INIT_WORK(&vl->register_work, vl_register_work);
	INIT_WORK(&vl->abort_work, vl_abort_work);
	INIT_WORK(&vl->remove_work, vl_remove_work);
}
