/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * virtio-loopback: the one place for kernel API differences between the
 * kernels we build for (Debian 12: 6.1 and 6.12).
 */
#ifndef VL_COMPAT_H
#define VL_COMPAT_H

#include <linux/eventfd.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/version.h>

/* 6.8 dropped the count argument of eventfd_signal(). */
static inline void vl_eventfd_signal(struct eventfd_ctx *ctx)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	eventfd_signal(ctx);
#else
	eventfd_signal(ctx, 1);
#endif
}

/* 6.3 made vm_flags read-only behind vm_flags_set(). */
static inline void vl_vm_flags_set(struct vm_area_struct *vma,
				   unsigned long flags)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

/*
 * Tasks that never return to user space, so task work queued on them
 * would not run soon: kernel threads, io_uring workers and, since 6.4,
 * user workers (vhost tasks).
 */
#ifdef PF_USER_WORKER
#define VL_PF_NO_RESUME (PF_KTHREAD | PF_IO_WORKER | PF_USER_WORKER)
#else
#define VL_PF_NO_RESUME (PF_KTHREAD | PF_IO_WORKER)
#endif

/* 6.11 passes find_vqs() one array of struct virtqueue_info. */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
#define VL_HAVE_VIRTQUEUE_INFO 1
#endif

#endif /* VL_COMPAT_H */
