// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-loopback transport: virtio devices implemented in user space.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/virtio_loopback.h>

static long vl_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case VIRTIO_LOOPBACK_IOC_GET_VERSION:
		return VIRTIO_LOOPBACK_API_VERSION;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations vl_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = vl_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice vl_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = VIRTIO_LOOPBACK_DEVICE_NAME,
	.fops = &vl_fops,
	.mode = 0600,
};

module_misc_device(vl_misc);

MODULE_AUTHOR("The virtio-loopback developers");
MODULE_DESCRIPTION("virtio transport for devices implemented in user space");
MODULE_LICENSE("GPL");
