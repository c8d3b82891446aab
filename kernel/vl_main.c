// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-loopback transport: virtio devices implemented in user space.
 *
 * /dev/virtio-loopback is a misc device. Each open file is one device: the
 * ioctls below create and start it, read()/write()/poll() carry its control
 * messages (vl_virtio.c), and closing the file removes it. The uapi is
 * include/uapi/linux/virtio_loopback.h; docs/uapi.md documents each call
 * and its errors. Every ioctl argument is validated in the one function
 * that handles that ioctl.
 */
#include <linux/dma-map-ops.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/virtio_config.h>
#include <linux/wait_bit.h>

#include "vl_compat.h"
#include "vl_core.h"

static unsigned int max_window_mb = 1024;
module_param(max_window_mb, uint, 0644);
MODULE_PARM_DESC(max_window_mb, "Largest DMA window one device may have, MiB (default 1024)");

static unsigned int timeout_ms = 5000;
module_param(timeout_ms, uint, 0644);
MODULE_PARM_DESC(timeout_ms, "Default wait for user space to answer a message, ms (default 5000)");

struct workqueue_struct *vl_wq;
static DEFINE_IDA(vl_ida);
/* Devices not yet freed; module exit waits for them (their release is here). */
static atomic_t vl_live_devices = ATOMIC_INIT(0);

static struct miscdevice vl_misc;

/* Frees the device when the last reference to vl->dev goes. */
static void vl_device_release(struct device *dev)
{
	struct vl_device *vl = container_of(dev, struct vl_device, dev);
	unsigned int i;

	if (vl->queues)
		for (i = 0; i < vl->num_queues; i++)
			vl_queue_release_fds(&vl->queues[i]);
	kfree(vl->queues);
	if (vl->window) {
		fput(vl->window->file);
		vl_window_put(vl->window);
	}
	if (vl->index >= 0)
		ida_free(&vl_ida, vl->index);
	kfree(vl);
	if (atomic_dec_and_test(&vl_live_devices))
		wake_up_var(&vl_live_devices);
}

/* --- ioctls ------------------------------------------------------------- */

static int vl_check_create(const struct virtio_loopback_create *c)
{
	const u64 transport_bits = GENMASK_ULL(49, 24);
	u64 max_window = (u64)max_window_mb << 20;

	if (c->flags & ~VIRTIO_LOOPBACK_CREATE_FLAGS ||
	    memchr_inv(c->reserved, 0, sizeof(c->reserved)))
		return -EINVAL;
	if (!c->device_id || c->device_id > 0xffff)
		return -EINVAL;
	if (!c->num_queues || c->num_queues > VIRTIO_LOOPBACK_MAX_QUEUES)
		return -EINVAL;
	if (c->max_queue_size < 2 ||
	    c->max_queue_size > VIRTIO_LOOPBACK_MAX_QUEUE_SIZE ||
	    !is_power_of_2(c->max_queue_size))
		return -EINVAL;
	if (c->config_size > VIRTIO_LOOPBACK_CONFIG_MAX)
		return -EINVAL;
	if (c->timeout_ms > VIRTIO_LOOPBACK_MAX_TIMEOUT_MS)
		return -EINVAL;
	if (c->features & transport_bits &
	    ~VIRTIO_LOOPBACK_TRANSPORT_FEATURES_ALLOWED)
		return -EINVAL;
	if (c->window_size &&
	    (c->window_size < VIRTIO_LOOPBACK_MIN_WINDOW ||
	     c->window_size > max_window))
		return -E2BIG;
	return 0;
}

static void vl_take_create_args(struct vl_device *vl,
				const struct virtio_loopback_create *c)
{
	vl->device_id = c->device_id;
	vl->vendor_id = c->vendor_id;
	vl->device_features = c->features &
		~(BIT_ULL(VIRTIO_F_VERSION_1) | BIT_ULL(VIRTIO_F_ACCESS_PLATFORM));
	vl->num_queues = c->num_queues;
	vl->max_queue_size = c->max_queue_size;
	vl->config_size = c->config_size;
	memcpy(vl->config, c->config, c->config_size);
	vl->timeout = msecs_to_jiffies(c->timeout_ms ?: timeout_ms);
	vl->zero_copy = c->flags & VIRTIO_LOOPBACK_CREATE_ZERO_COPY;
	vl->vdev.id.device = c->device_id;
	vl->vdev.id.vendor = c->vendor_id;
}

static int vl_ioctl_create(struct vl_device *vl, void __user *argp)
{
	struct virtio_loopback_create *c;
	struct vl_window *win;
	size_t window_size;
	unsigned int i;
	int err;

	if (vl->state != VIRTIO_LOOPBACK_STATE_NONE)
		return -EEXIST;
	c = memdup_user(argp, sizeof(*c));
	if (IS_ERR(c))
		return PTR_ERR(c);
	err = vl_check_create(c);
	if (err)
		goto free_args;
	window_size = c->window_size ?:
		vl_window_default_size(c->num_queues, c->max_queue_size);
	if (window_size > (u64)max_window_mb << 20) {
		err = -E2BIG;
		goto free_args;
	}

	vl->queues = kcalloc(c->num_queues, sizeof(*vl->queues), GFP_KERNEL);
	if (!vl->queues) {
		err = -ENOMEM;
		goto free_args;
	}
	win = vl_window_create(window_size, c->num_queues, c->max_queue_size,
			       c->flags & VIRTIO_LOOPBACK_CREATE_ZERO_COPY);
	if (IS_ERR(win)) {
		err = PTR_ERR(win);
		goto free_queues;
	}
	err = ida_alloc(&vl_ida, GFP_KERNEL);
	if (err < 0)
		goto put_window;
	vl->index = err;
	err = dev_set_name(&vl->dev, "virtio-loopback.%d", vl->index);
	if (err)
		goto free_index;

	vl_take_create_args(vl, c);
	for (i = 0; i < vl->num_queues; i++)
		vl_queue_init(vl, &vl->queues[i], i);
	vl->window = win;
	set_dma_ops(&vl->dev, &vl_dma_ops);
	vl->dev.dma_mask = &vl->dev.coherent_dma_mask;
	err = dma_set_mask_and_coherent(&vl->dev, DMA_BIT_MASK(64));
	if (err)
		goto clear_window;
	err = device_add(&vl->dev);
	if (err)
		goto clear_window;
	vl->added = true;
	vl->state = VIRTIO_LOOPBACK_STATE_CREATED;
	vl_debugfs_add(vl);
	kfree(c);
	return 0;

clear_window:
	vl->window = NULL;
free_index:
	ida_free(&vl_ida, vl->index);
	vl->index = -1;
put_window:
	fput(win->file);
	vl_window_put(win);
free_queues:
	kfree(vl->queues);
	vl->queues = NULL;
free_args:
	kfree(c);
	return err;
}

/* Common state checks: a device exists and has not been given up. */
static int vl_check_usable(struct vl_device *vl)
{
	if (vl->state == VIRTIO_LOOPBACK_STATE_NONE)
		return -ENODEV;
	if (vl_is_dead(vl))
		return -EIO;
	return 0;
}

static int vl_ioctl_get_info(struct vl_device *vl, void __user *argp)
{
	struct virtio_loopback_info info = {
		.api_version = VIRTIO_LOOPBACK_API_VERSION,
		.state = vl->state,
		.index = vl->index < 0 ? 0 : vl->index,
		.virtio_index = -1,
		.window_size = vl->window ? vl->window->size : 0,
		.driver_features = vl->driver_features,
		.status = READ_ONCE(vl->status),
	};

	if (vl->state != VIRTIO_LOOPBACK_STATE_NONE && vl_is_dead(vl))
		info.state = VIRTIO_LOOPBACK_STATE_BROKEN;
	if (READ_ONCE(vl->registered))
		info.virtio_index = vl->vdev.index;
	return copy_to_user(argp, &info, sizeof(info)) ? -EFAULT : 0;
}

static int vl_ioctl_get_window(struct vl_device *vl, void __user *argp)
{
	struct virtio_loopback_window w = {};
	int err = vl_check_usable(vl);

	if (err)
		return err;
	/* Install only once the number reached user space. */
	w.fd = get_unused_fd_flags(O_CLOEXEC);
	if (w.fd < 0)
		return w.fd;
	w.size = vl->window->size;
	if (copy_to_user(argp, &w, sizeof(w))) {
		put_unused_fd(w.fd);
		return -EFAULT;
	}
	fd_install(w.fd, get_file(vl->window->file));
	return 0;
}

static int vl_ioctl_set_queue_fds(struct vl_device *vl, void __user *argp)
{
	struct virtio_loopback_queue_fds q;
	int err;

	if (copy_from_user(&q, argp, sizeof(q)))
		return -EFAULT;
	if (q.flags || q.reserved[0] || q.reserved[1])
		return -EINVAL;
	err = vl_check_usable(vl);
	if (err)
		return err;
	if (q.index >= vl->num_queues)
		return -EINVAL;
	if (q.kick_fd < -1 || q.call_fd < -1)
		return -EBADF;
	return vl_queue_set_fds(&vl->queues[q.index], q.kick_fd, q.call_fd);
}

static int vl_ioctl_start(struct vl_device *vl)
{
	int err = vl_check_usable(vl);

	if (err)
		return err;
	if (vl->state != VIRTIO_LOOPBACK_STATE_CREATED)
		return -EBUSY;
	err = vl_register(vl);
	if (!err)
		vl->state = VIRTIO_LOOPBACK_STATE_STARTED;
	return err;
}

static int vl_ioctl_get_queue(struct vl_device *vl, void __user *argp)
{
	struct virtio_loopback_queue_info info;
	struct vl_queue *q;
	int err;

	if (copy_from_user(&info, argp, sizeof(info)))
		return -EFAULT;
	err = vl_check_usable(vl);
	if (err)
		return err;
	if (info.index >= vl->num_queues)
		return -EINVAL;
	q = &vl->queues[info.index];
	memset(&info, 0, sizeof(info));
	info.index = q->index;
	mutex_lock(&vl->vqs_lock);
	if (q->vq) {
		info.flags = VIRTIO_LOOPBACK_QUEUE_READY;
		info.size = q->num;
		info.desc = virtqueue_get_desc_addr(q->vq);
		/* The device's view of the rings (vl_queue.c). */
		info.avail = vl_queue_dev_avail_iova(q);
		info.used = vl_queue_dev_used_iova(q);
		vl_queue_progress(q, &info.outstanding, &info.avail_idx,
				  &info.used_idx);
	}
	mutex_unlock(&vl->vqs_lock);
	return copy_to_user(argp, &info, sizeof(info)) ? -EFAULT : 0;
}

static int vl_ioctl_interrupt(struct vl_device *vl, void __user *argp)
{
	struct virtio_loopback_interrupt irq;
	struct vl_queue *q;
	int err;

	if (copy_from_user(&irq, argp, sizeof(irq)))
		return -EFAULT;
	if (irq.flags)
		return -EINVAL;
	err = vl_check_usable(vl);
	if (err)
		return err;
	if (irq.index != VIRTIO_LOOPBACK_CONFIG_INTERRUPT &&
	    irq.index >= vl->num_queues)
		return -EINVAL;
	if (!READ_ONCE(vl->registered))
		return -EAGAIN;
	if (irq.index == VIRTIO_LOOPBACK_CONFIG_INTERRUPT) {
		virtio_config_changed(&vl->vdev);
		return 0;
	}
	q = &vl->queues[irq.index];
	mutex_lock(&vl->vqs_lock);
	err = q->vq ? 0 : -EAGAIN;
	if (!err)
		vl_queue_complete(q);
	mutex_unlock(&vl->vqs_lock);
	return err;
}

static int vl_ioctl_set_config(struct vl_device *vl, void __user *argp)
{
	struct virtio_loopback_config *cfg;
	int err;

	cfg = memdup_user(argp, sizeof(*cfg));
	if (IS_ERR(cfg))
		return PTR_ERR(cfg);
	err = -EINVAL;
	if (cfg->flags & ~VIRTIO_LOOPBACK_CONFIG_NOTIFY || cfg->reserved)
		goto out;
	err = vl_check_usable(vl);
	if (err)
		goto out;
	err = -EINVAL;
	if ((u64)cfg->offset + cfg->len > vl->config_size)
		goto out;
	vl_config_update(vl, cfg->offset, cfg->data, cfg->len,
			 cfg->flags & VIRTIO_LOOPBACK_CONFIG_NOTIFY);
	err = 0;
out:
	kfree(cfg);
	return err;
}

static int vl_ioctl_requeue(struct vl_device *vl, void __user *argp)
{
	struct virtio_loopback_requeue rq;
	int err;

	if (copy_from_user(&rq, argp, sizeof(rq)))
		return -EFAULT;
	if (rq.flags)
		return -EINVAL;
	err = vl_check_usable(vl);
	if (err)
		return err;
	if (rq.index >= vl->num_queues)
		return -EINVAL;
	mutex_lock(&vl->vqs_lock);
	err = vl_queue_requeue(&vl->queues[rq.index], &rq.base, &rq.count);
	mutex_unlock(&vl->vqs_lock);
	if (err)
		return err;
	return copy_to_user(argp, &rq, sizeof(rq)) ? -EFAULT : 0;
}

static long vl_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct vl_device *vl = file->private_data;
	void __user *argp = (void __user *)arg;
	long ret;

	if (cmd == VIRTIO_LOOPBACK_IOC_GET_VERSION)
		return VIRTIO_LOOPBACK_API_VERSION;

	mutex_lock(&vl->lock);
	switch (cmd) {
	case VIRTIO_LOOPBACK_IOC_CREATE:
		ret = vl_ioctl_create(vl, argp);
		break;
	case VIRTIO_LOOPBACK_IOC_GET_INFO:
		ret = vl_ioctl_get_info(vl, argp);
		break;
	case VIRTIO_LOOPBACK_IOC_GET_WINDOW:
		ret = vl_ioctl_get_window(vl, argp);
		break;
	case VIRTIO_LOOPBACK_IOC_SET_QUEUE_FDS:
		ret = vl_ioctl_set_queue_fds(vl, argp);
		break;
	case VIRTIO_LOOPBACK_IOC_START:
		ret = vl_ioctl_start(vl);
		break;
	case VIRTIO_LOOPBACK_IOC_GET_QUEUE:
		ret = vl_ioctl_get_queue(vl, argp);
		break;
	case VIRTIO_LOOPBACK_IOC_INTERRUPT:
		ret = vl_ioctl_interrupt(vl, argp);
		break;
	case VIRTIO_LOOPBACK_IOC_SET_CONFIG:
		ret = vl_ioctl_set_config(vl, argp);
		break;
	case VIRTIO_LOOPBACK_IOC_REQUEUE:
		ret = vl_ioctl_requeue(vl, argp);
		break;
	default:
		ret = -ENOTTY;
		break;
	}
	mutex_unlock(&vl->lock);
	return ret;
}

/* --- file operations ---------------------------------------------------- */

static int vl_open(struct inode *inode, struct file *file)
{
	struct vl_device *vl = kzalloc(sizeof(*vl), GFP_KERNEL);

	if (!vl)
		return -ENOMEM;
	vl->index = -1;
	mutex_init(&vl->lock);
	mutex_init(&vl->msg_mutex);
	mutex_init(&vl->vqs_lock);
	spin_lock_init(&vl->config_lock);
	spin_lock_init(&vl->msg_lock);
	init_waitqueue_head(&vl->msg_wq);
	device_initialize(&vl->dev);
	vl->dev.parent = vl_misc.this_device;
	vl->dev.release = vl_device_release;
	atomic_inc(&vl_live_devices);
	vl_virtio_setup(vl);
	file->private_data = vl;
	return stream_open(inode, file);
}

/* Closing the file removes its device, whatever state it is in. */
static int vl_release(struct inode *inode, struct file *file)
{
	struct vl_device *vl = file->private_data;

	vl_fail(vl, NULL);
	put_device(&vl->dev);
	return 0;
}

static ssize_t vl_read(struct file *file, char __user *buf, size_t count,
		       loff_t *ppos)
{
	struct vl_device *vl = file->private_data;

	if (READ_ONCE(vl->state) == VIRTIO_LOOPBACK_STATE_NONE)
		return -ENODEV;
	return vl_msg_read(vl, buf, count, file->f_flags & O_NONBLOCK);
}

static ssize_t vl_write(struct file *file, const char __user *buf,
			size_t count, loff_t *ppos)
{
	struct vl_device *vl = file->private_data;

	if (READ_ONCE(vl->state) == VIRTIO_LOOPBACK_STATE_NONE)
		return -ENODEV;
	return vl_msg_write(vl, buf, count);
}

static __poll_t vl_poll(struct file *file, poll_table *wait)
{
	return vl_msg_poll(file->private_data, file, wait);
}

static const struct file_operations vl_fops = {
	.owner = THIS_MODULE,
	.open = vl_open,
	.release = vl_release,
	.read = vl_read,
	.write = vl_write,
	.poll = vl_poll,
	.unlocked_ioctl = vl_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice vl_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = VIRTIO_LOOPBACK_DEVICE_NAME,
	.fops = &vl_fops,
	.mode = 0600,
};

static int __init vl_init(void)
{
	int err;

	vl_wq = alloc_workqueue("virtio_loopback", WQ_UNBOUND | WQ_MEM_RECLAIM,
				0);
	if (!vl_wq)
		return -ENOMEM;
	err = vl_window_init();
	if (err)
		goto destroy_wq;
	err = misc_register(&vl_misc);
	if (err)
		goto window_exit;
	vl_debugfs_init();
	return 0;

window_exit:
	vl_window_exit();
destroy_wq:
	destroy_workqueue(vl_wq);
	return err;
}

static void __exit vl_exit(void)
{
	/* No file is open; wait for the removal of the last devices. */
	flush_workqueue(vl_wq);
	wait_var_event(&vl_live_devices, !atomic_read(&vl_live_devices));
	misc_deregister(&vl_misc);
	vl_debugfs_exit();
	destroy_workqueue(vl_wq);
	vl_window_exit();
	ida_destroy(&vl_ida);
}

module_init(vl_init);
module_exit(vl_exit);

MODULE_AUTHOR("The virtio-loopback developers");
MODULE_DESCRIPTION("virtio transport for devices implemented in user space");
MODULE_LICENSE("GPL");
