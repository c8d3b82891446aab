// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-loopback: the per-device DMA window.
 *
 * The transport offers VIRTIO_F_ACCESS_PLATFORM, so the virtio core maps
 * every vring and buffer through the DMA API of the device's parent, whose
 * dma_map_ops are below. Coherent allocations (the vrings) are carved out
 * of the window; streaming mappings (the drivers' buffers) are bounced
 * through it. The DMA address of anything is its offset in the window, and
 * the window is what user space maps, through a separate mmap-only file.
 * Nothing outside the window is ever visible to user space.
 *
 * When the device is given up, the window is revoked: existing user
 * mappings are zapped and later faults map a private zero "sink" page, so a
 * back-end that keeps running touches nothing the kernel still uses, and
 * does not crash either.
 */
#include <linux/dma-map-ops.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/genalloc.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/pagemap.h>
#include <linux/pseudo_fs.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/virtio_ring.h>

#include "vl_compat.h"
#include "vl_core.h"

/* Bounce allocations are made in granules of 1 << VL_GRANULE_SHIFT bytes. */
#define VL_GRANULE_SHIFT	8
/*
 * Largest single streaming mapping; larger requests are split by the
 * block layer (virtio_blk sizes its segments with dma_max_mapping_size()).
 */
#define VL_MAX_MAPPING		(256 * 1024)
/* Bounce space a default window provides beyond its rings. */
#define VL_DEFAULT_BOUNCE	(8 * 1024 * 1024)

#define VL_FS_MAGIC		0x766c6f6f	/* "vloo" */

static struct vfsmount *vl_mnt;

static int vl_fs_init_fs_context(struct fs_context *fc)
{
	return init_pseudo(fc, VL_FS_MAGIC) ? 0 : -ENOMEM;
}

static struct file_system_type vl_fs_type = {
	.name = "virtio_loopback_window",
	.init_fs_context = vl_fs_init_fs_context,
	.kill_sb = kill_anon_super,
};

int vl_window_init(void)
{
	vl_mnt = kern_mount(&vl_fs_type);
	return PTR_ERR_OR_ZERO(vl_mnt);
}

void vl_window_exit(void)
{
	kern_unmount(vl_mnt);
}

/* --- window memory ------------------------------------------------------ */

size_t vl_window_default_size(u32 num_queues, u32 max_queue_size)
{
	size_t rings = num_queues *
		PAGE_ALIGN(vring_size(max_queue_size, PAGE_SIZE));

	return PAGE_SIZE + rings + VL_DEFAULT_BOUNCE;
}

/*
 * Returns what is still allocated to the pool. Drivers may leave buffers
 * mapped when they delete their queues (virtio-rng does), as they would
 * leak an IOMMU mapping; here the window goes away with them.
 */
static void vl_window_free_leftovers(struct vl_window *win)
{
	size_t granule, granules = win->size >> VL_GRANULE_SHIFT;
	unsigned int leftovers = 0;

	for (granule = 0; granule < granules; granule++) {
		if (!win->alloc_size || !win->alloc_size[granule])
			continue;
		gen_pool_free(win->pool, (unsigned long)win->vaddr +
			      (granule << VL_GRANULE_SHIFT),
			      win->alloc_size[granule]);
		leftovers++;
	}
	if (leftovers)
		pr_debug("virtio_loopback: freed a window with %u buffers still mapped\n",
			 leftovers);
}

static void vl_window_free(struct kref *ref)
{
	struct vl_window *win = container_of(ref, struct vl_window, ref);

	if (win->pool) {
		vl_window_free_leftovers(win);
		gen_pool_destroy(win->pool);
	}
	if (win->sink)
		__free_page(win->sink);
	bitmap_free(win->starts);
	kvfree(win->alloc_size);
	kvfree(win->orig);
	vfree(win->vaddr);
	kfree(win);
}

void vl_window_put(struct vl_window *win)
{
	if (win)
		kref_put(&win->ref, vl_window_free);
}

/*
 * Kernel address of [iova, iova + len) in the window, or NULL if any part
 * of it lies outside.
 */
void *vl_window_ptr(struct vl_window *win, u64 iova, size_t len)
{
	if (iova < PAGE_SIZE || iova > win->size || len > win->size - iova)
		return NULL;
	return win->vaddr + iova;
}

/* --- pages only the driver writes --------------------------------------- */

static bool vl_window_is_protected(struct vl_window *win, u64 offset)
{
	bool hit = false;
	unsigned int i;

	spin_lock(&win->protect_lock);
	for (i = 0; i < ARRAY_SIZE(win->protected) && !hit; i++)
		hit = offset >= win->protected[i].start &&
		      offset < win->protected[i].end;
	spin_unlock(&win->protect_lock);
	return hit;
}

/*
 * Makes [start, start + len) read-only for user space, in slot `slot` (one
 * per queue): mappings already writable are zapped, and later write faults
 * are refused.
 */
void vl_window_protect(struct vl_window *win, unsigned int slot, u64 start,
		       u64 len)
{
	spin_lock(&win->protect_lock);
	win->protected[slot].start = start;
	win->protected[slot].end = start + len;
	spin_unlock(&win->protect_lock);
	unmap_mapping_range(win->file->f_mapping, start, len, 1);
}

void vl_window_unprotect(struct vl_window *win, unsigned int slot)
{
	spin_lock(&win->protect_lock);
	win->protected[slot].start = 0;
	win->protected[slot].end = 0;
	spin_unlock(&win->protect_lock);
}

/* Whether iova is the first byte of a live streaming mapping. */
bool vl_window_is_mapped(struct vl_window *win, u64 iova)
{
	if (!vl_window_ptr(win, iova, 1) || iova & ((1 << VL_GRANULE_SHIFT) - 1))
		return false;
	return test_bit(iova >> VL_GRANULE_SHIFT, win->starts);
}

/* --- the window file ---------------------------------------------------- */

static vm_fault_t vl_window_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct vl_window *win = vma->vm_private_data;
	struct page *page;
	int err;

	/*
	 * The page is inserted while revoke_lock is held, so a revocation
	 * either sees this PTE and zaps it or happens before and we insert
	 * the sink. mmap_lock is held for read; revoke never takes it.
	 */
	down_read(&win->revoke_lock);
	if (win->revoked)
		page = win->sink;
	else
		page = vmalloc_to_page(win->vaddr +
				       (vmf->pgoff << PAGE_SHIFT));
	err = vm_insert_page(vma, vmf->address, page);
	up_read(&win->revoke_lock);

	switch (err) {
	case 0:
	case -EBUSY:	/* another thread mapped it first */
		return VM_FAULT_NOPAGE;
	case -ENOMEM:
		return VM_FAULT_OOM;
	default:
		return VM_FAULT_SIGBUS;
	}
}

/*
 * Pages are mapped read-only first (the VMA is write-notified because this
 * exists); the first write to each comes here. Writes to the rings' driver
 * parts (descriptor tables, available rings) are refused: the driver reads
 * descriptor flags back when it frees a chain, so a back-end that rewrote
 * them could walk it off its free list.
 */
static vm_fault_t vl_window_page_mkwrite(struct vm_fault *vmf)
{
	struct vl_window *win = vmf->vma->vm_private_data;

	if (vl_window_is_protected(win, (u64)vmf->pgoff << PAGE_SHIFT))
		return VM_FAULT_SIGBUS;
	/*
	 * Our pages have no page-cache mapping: lock here, or the core
	 * would take the page for truncated and retry the fault forever.
	 */
	lock_page(vmf->page);
	return VM_FAULT_LOCKED;
}

static const struct vm_operations_struct vl_window_vm_ops = {
	.fault = vl_window_fault,
	.page_mkwrite = vl_window_page_mkwrite,
};

static int vl_window_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct vl_window *win = file->private_data;
	unsigned long npages = win->size >> PAGE_SHIFT;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (vma->vm_pgoff >= npages || vma_pages(vma) > npages - vma->vm_pgoff)
		return -EINVAL;

	/*
	 * VM_MIXEDMAP lets the fault handler insert pages with the mmap lock
	 * held for read only; the pages stay ordinary, refcounted pages, so
	 * back-ends can do O_DIRECT I/O (get_user_pages) on the window.
	 */
	vl_vm_flags_set(vma, VM_MIXEDMAP | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &vl_window_vm_ops;
	vma->vm_private_data = win;
	return 0;
}

static int vl_window_release(struct inode *inode, struct file *file)
{
	vl_window_put(file->private_data);
	return 0;
}

static const struct file_operations vl_window_fops = {
	.owner = THIS_MODULE,
	.mmap = vl_window_mmap,
	.release = vl_window_release,
	.llseek = noop_llseek,
};

/* The window's file: its own inode, so that revocation zaps only it. */
static int vl_window_create_file(struct vl_window *win)
{
	struct inode *inode;
	struct file *file;

	inode = alloc_anon_inode(vl_mnt->mnt_sb);
	if (IS_ERR(inode))
		return PTR_ERR(inode);
	i_size_write(inode, win->size);

	/*
	 * The file pins the module (its last fput drops the reference): its
	 * mappings use our vm_ops, and back-ends may keep them after the
	 * device is gone.
	 */
	__module_get(THIS_MODULE);
	file = alloc_file_pseudo(inode, vl_mnt, "[virtio-loopback-window]",
				 O_RDWR, &vl_window_fops);
	if (IS_ERR(file)) {
		module_put(THIS_MODULE);
		iput(inode);
		return PTR_ERR(file);
	}
	kref_get(&win->ref);		/* dropped in vl_window_release() */
	file->private_data = win;
	win->file = file;
	return 0;
}

struct vl_window *vl_window_create(size_t size)
{
	size_t granules;
	struct vl_window *win;

	size = PAGE_ALIGN(size);
	win = kzalloc(sizeof(*win), GFP_KERNEL);
	if (!win)
		return ERR_PTR(-ENOMEM);
	kref_init(&win->ref);
	init_rwsem(&win->revoke_lock);
	spin_lock_init(&win->protect_lock);
	win->size = size;

	/* Charged to the creator's memory cgroup: windows can be large. */
	win->vaddr = __vmalloc(size, GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	granules = size >> VL_GRANULE_SHIFT;
	win->orig = kvcalloc(granules, sizeof(*win->orig), GFP_KERNEL_ACCOUNT);
	win->alloc_size = kvcalloc(granules, sizeof(*win->alloc_size),
				   GFP_KERNEL_ACCOUNT);
	win->starts = bitmap_zalloc(granules, GFP_KERNEL_ACCOUNT);
	win->sink = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	win->pool = gen_pool_create(VL_GRANULE_SHIFT, NUMA_NO_NODE);
	if (!win->vaddr || !win->orig || !win->alloc_size || !win->starts ||
	    !win->sink || !win->pool)
		goto err;
	/* The pool's "physical" addresses are the IOVAs. */
	if (gen_pool_add_virt(win->pool, (unsigned long)win->vaddr + PAGE_SIZE,
			      PAGE_SIZE, size - PAGE_SIZE, NUMA_NO_NODE))
		goto err;
	if (vl_window_create_file(win))
		goto err;
	return win;

err:
	vl_window_put(win);
	return ERR_PTR(-ENOMEM);
}

/*
 * Takes the window away from user space for good. Afterwards only the
 * kernel writes the rings, and user space sees the sink page.
 */
void vl_window_revoke(struct vl_window *win)
{
	down_write(&win->revoke_lock);
	win->revoked = true;
	unmap_mapping_range(win->file->f_mapping, 0, 0, 1);
	up_write(&win->revoke_lock);
}

/* --- DMA operations ----------------------------------------------------- */

static struct vl_window *dev_to_window(struct device *dev)
{
	return container_of(dev, struct vl_device, dev)->window;
}

static void *vl_dma_alloc(struct device *dev, size_t size,
			  dma_addr_t *dma_handle, gfp_t gfp,
			  unsigned long attrs)
{
	struct vl_window *win = dev_to_window(dev);
	struct genpool_data_align align = { .align = PAGE_SIZE };
	unsigned long vaddr;

	size = PAGE_ALIGN(size);
	vaddr = gen_pool_alloc_algo(win->pool, size, gen_pool_first_fit_align,
				    &align);
	if (!vaddr)
		return NULL;
	memset((void *)vaddr, 0, size);
	*dma_handle = gen_pool_virt_to_phys(win->pool, vaddr);
	win->alloc_size[*dma_handle >> VL_GRANULE_SHIFT] = size;
	return (void *)vaddr;
}

static void vl_dma_free(struct device *dev, size_t size, void *vaddr,
			dma_addr_t dma_handle, unsigned long attrs)
{
	struct vl_window *win = dev_to_window(dev);

	win->alloc_size[dma_handle >> VL_GRANULE_SHIFT] = 0;
	gen_pool_free(win->pool, (unsigned long)vaddr, PAGE_ALIGN(size));
}

/* Copies between a bounce slot and the driver's buffer, page by page. */
static void vl_bounce_pages(void *slot, phys_addr_t orig, size_t size,
			    bool to_window)
{
	while (size) {
		struct page *page = pfn_to_page(PHYS_PFN(orig));
		size_t offset = offset_in_page(orig);
		size_t chunk = min_t(size_t, size, PAGE_SIZE - offset);
		void *mapped = kmap_local_page(page);

		if (to_window)
			memcpy(slot, mapped + offset, chunk);
		else
			memcpy(mapped + offset, slot, chunk);
		kunmap_local(mapped);
		slot += chunk;
		orig += chunk;
		size -= chunk;
	}
}

/* vl_bounce_pages(), timed for the debugfs counters. */
static void vl_bounce(struct vl_window *win, void *slot, phys_addr_t orig,
		      size_t size, bool to_window)
{
	u64 start = ktime_get_ns();

	vl_bounce_pages(slot, orig, size, to_window);
	atomic_long_add(ktime_get_ns() - start, &win->bounce_ns);
}

static bool vl_dma_copies_to_device(enum dma_data_direction dir)
{
	return dir == DMA_TO_DEVICE || dir == DMA_BIDIRECTIONAL;
}

static bool vl_dma_copies_from_device(enum dma_data_direction dir)
{
	return dir == DMA_FROM_DEVICE || dir == DMA_BIDIRECTIONAL;
}

static dma_addr_t __vl_dma_map_page(struct device *dev, struct page *page,
				    unsigned long offset, size_t size,
				    enum dma_data_direction dir)
{
	struct vl_window *win = dev_to_window(dev);
	phys_addr_t orig = page_to_phys(page) + offset;
	unsigned long slot;
	dma_addr_t iova;
	size_t granule;

	if (!size || size > VL_MAX_MAPPING)
		return DMA_MAPPING_ERROR;
	/* Atomic context is allowed here: gen_pool_alloc() never sleeps. */
	slot = gen_pool_alloc(win->pool, size);
	if (!slot) {
		atomic_long_inc(&win->map_failures);
		return DMA_MAPPING_ERROR;
	}
	iova = gen_pool_virt_to_phys(win->pool, slot);
	granule = iova >> VL_GRANULE_SHIFT;
	win->orig[granule] = orig;
	win->alloc_size[granule] = size;
	set_bit(granule, win->starts);
	atomic_long_inc(&win->maps);
	if (vl_dma_copies_to_device(dir)) {
		vl_bounce(win, (void *)slot, orig, size, true);
		atomic_long_add(size, &win->bytes_to_device);
	}
	return iova;
}

static dma_addr_t vl_dma_map_page(struct device *dev, struct page *page,
				  unsigned long offset, size_t size,
				  enum dma_data_direction dir,
				  unsigned long attrs)
{
	struct vl_window *win = dev_to_window(dev);
	u64 start = ktime_get_ns();
	dma_addr_t iova = __vl_dma_map_page(dev, page, offset, size, dir);

	atomic_long_add(ktime_get_ns() - start, &win->dma_ns);
	return iova;
}

/*
 * The mapping that contains [iova, iova + size): its first granule and the
 * driver's address matching iova. False if there is none.
 */
static bool vl_dma_lookup(struct vl_window *win, dma_addr_t iova, size_t size,
			  phys_addr_t *orig)
{
	unsigned long granule, start;

	if (!vl_window_ptr(win, iova, size))
		return false;
	granule = iova >> VL_GRANULE_SHIFT;
	/* find_last_bit() over [0, granule]: the nearest start at or below. */
	start = find_last_bit(win->starts, granule + 1);
	if (start > granule ||
	    iova - (start << VL_GRANULE_SHIFT) >= VL_MAX_MAPPING)
		return false;
	*orig = win->orig[start] + (iova - (start << VL_GRANULE_SHIFT));
	return true;
}

/*
 * Whether [iova, iova + size) is exactly one live streaming mapping, as an
 * unmap must name it. Anything else would free the wrong bounce slot.
 */
static bool vl_dma_is_mapping(struct vl_window *win, dma_addr_t iova,
			      size_t size)
{
	unsigned long granule = iova >> VL_GRANULE_SHIFT;

	return vl_window_is_mapped(win, iova) &&
	       win->alloc_size[granule] == size;
}

static void __vl_dma_unmap_page(struct device *dev, dma_addr_t iova,
				size_t size, enum dma_data_direction dir)
{
	struct vl_window *win = dev_to_window(dev);
	phys_addr_t orig;

	/*
	 * Reachable through a device that rewrote its descriptors (6.1's
	 * detach follows descriptor flags in the ring): not a kernel bug.
	 */
	if (!vl_dma_is_mapping(win, iova, size) ||
	    !vl_dma_lookup(win, iova, size, &orig)) {
		dev_warn_ratelimited(dev, "unmap of %zu bytes at %pad: no such mapping\n",
				     size, &iova);
		return;
	}
	if (vl_dma_copies_from_device(dir)) {
		vl_bounce(win, win->vaddr + iova, orig, size, false);
		atomic_long_add(size, &win->bytes_from_device);
	}
	clear_bit(iova >> VL_GRANULE_SHIFT, win->starts);
	win->alloc_size[iova >> VL_GRANULE_SHIFT] = 0;
	gen_pool_free(win->pool, (unsigned long)win->vaddr + iova, size);
}

static void vl_dma_unmap_page(struct device *dev, dma_addr_t iova,
			      size_t size, enum dma_data_direction dir,
			      unsigned long attrs)
{
	struct vl_window *win = dev_to_window(dev);
	u64 start = ktime_get_ns();

	__vl_dma_unmap_page(dev, iova, size, dir);
	atomic_long_add(ktime_get_ns() - start, &win->dma_ns);
}

static void vl_dma_sync_for_cpu(struct device *dev, dma_addr_t iova,
				size_t size, enum dma_data_direction dir)
{
	struct vl_window *win = dev_to_window(dev);
	phys_addr_t orig;

	if (vl_dma_copies_from_device(dir) &&
	    vl_dma_lookup(win, iova, size, &orig))
		vl_bounce(win, win->vaddr + iova, orig, size, false);
}

static void vl_dma_sync_for_device(struct device *dev, dma_addr_t iova,
				   size_t size, enum dma_data_direction dir)
{
	struct vl_window *win = dev_to_window(dev);
	phys_addr_t orig;

	if (vl_dma_copies_to_device(dir) &&
	    vl_dma_lookup(win, iova, size, &orig))
		vl_bounce(win, win->vaddr + iova, orig, size, true);
}

static size_t vl_dma_max_mapping_size(struct device *dev)
{
	return VL_MAX_MAPPING;
}

static int vl_dma_supported(struct device *dev, u64 mask)
{
	return 1;
}

const struct dma_map_ops vl_dma_ops = {
	.alloc = vl_dma_alloc,
	.free = vl_dma_free,
	.map_page = vl_dma_map_page,
	.unmap_page = vl_dma_unmap_page,
	.sync_single_for_cpu = vl_dma_sync_for_cpu,
	.sync_single_for_device = vl_dma_sync_for_device,
	.max_mapping_size = vl_dma_max_mapping_size,
	.dma_supported = vl_dma_supported,
};
