// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-loopback: per-device counters in debugfs, for measuring what each
 * I/O costs (doorbells and bounce copies). One read-only file per device:
 * /sys/kernel/debug/virtio_loopback/virtio-loopback.<index>
 */
#include <linux/debugfs.h>
#include <linux/seq_file.h>

#include "vl_core.h"

static struct dentry *vl_debugfs_root;

static int vl_stats_show(struct seq_file *s, void *unused)
{
	struct vl_device *vl = s->private;
	struct vl_window *win = vl->window;
	unsigned int i;

	seq_printf(s, "device_id %u queues %u\n", vl->device_id, vl->num_queues);
	for (i = 0; i < vl->num_queues; i++) {
		struct vl_queue *q = &vl->queues[i];

		seq_printf(s, "queue %u kicks %ld kicks_deferred %ld kicks_suppressed %ld interrupts %ld irqs_deferred %ld irqs_withheld %ld\n",
			   i, atomic_long_read(&q->stats.kicks),
			   atomic_long_read(&q->stats.kicks_deferred),
			   atomic_long_read(&q->stats.kicks_suppressed),
			   atomic_long_read(&q->stats.interrupts),
			   atomic_long_read(&q->stats.irqs_deferred),
			   atomic_long_read(&q->stats.irqs_withheld));
	}
	seq_printf(s, "window bytes %zu maps %ld map_failures %ld pages %ld page_failures %ld bytes_to_device %ld bytes_from_device %ld bounce_ns %ld dma_ns %ld zc_maps %ld zc_pages %ld zc_faults %ld zc_zaps %ld zc_fault_ns %ld zc_zap_ns %ld\n",
		   win->size, atomic_long_read(&win->stats.maps),
		   atomic_long_read(&win->stats.map_failures),
		   atomic_long_read(&win->stats.pages),
		   atomic_long_read(&win->stats.page_failures),
		   atomic_long_read(&win->stats.bytes_to_device),
		   atomic_long_read(&win->stats.bytes_from_device),
		   atomic_long_read(&win->stats.bounce_ns),
		   atomic_long_read(&win->stats.dma_ns),
		   atomic_long_read(&win->stats.zc_maps),
		   atomic_long_read(&win->stats.zc_pages),
		   atomic_long_read(&win->stats.zc_faults),
		   atomic_long_read(&win->stats.zc_zaps),
		   atomic_long_read(&win->stats.zc_fault_ns),
		   atomic_long_read(&win->stats.zc_zap_ns));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vl_stats);

void vl_debugfs_add(struct vl_device *vl)
{
	if (IS_ERR_OR_NULL(vl_debugfs_root))
		return;
	vl->debugfs = debugfs_create_file(dev_name(&vl->dev), 0400,
					  vl_debugfs_root, vl, &vl_stats_fops);
}

/* Before the device goes: a reader holds no reference to it. */
void vl_debugfs_remove(struct vl_device *vl)
{
	debugfs_remove(vl->debugfs);
	vl->debugfs = NULL;
}

void vl_debugfs_init(void)
{
	vl_debugfs_root = debugfs_create_dir("virtio_loopback", NULL);
}

void vl_debugfs_exit(void)
{
	debugfs_remove(vl_debugfs_root);
}
