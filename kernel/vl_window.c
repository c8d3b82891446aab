// SPDX-License-Identifier: GPL-2.0-only
/*
 * virtio-loopback: the per-device DMA window.
 *
 * The transport offers VIRTIO_F_ACCESS_PLATFORM, so the virtio core maps
 * every vring and buffer through the DMA API of the device's parent, whose
 * dma_map_ops are below. The DMA address of anything is its offset in the
 * window (an IOVA), and the window is what user space maps, through a
 * separate mmap-only file. Nothing outside the window is ever visible to
 * user space.
 *
 * The window has two zones:
 *   - the coherent zone [0, coherent_size): page 0 (never handed out, so
 *     that IOVA 0 stays invalid) and the vrings, carved from one zeroed
 *     vmalloc area by a gen_pool. Allocated at set-up, a few pages.
 *   - the bounce zone [coherent_size, size): streaming mappings (the
 *     drivers' buffers) are bounced through it. IOVAs come from the
 *     kernel's IOVA allocator (per-CPU caches: O(1) for the sizes block I/O
 *     uses), in whole pages, and a mapping keeps its buffer's offset in the
 *     page: a page-aligned buffer gets a page-aligned IOVA, so back-ends
 *     can do O_DIRECT I/O on it without a copy of their own. The pages
 *     behind the zone are allocated (zeroed) the first time an IOVA is
 *     used and kept until the window goes, so set-up allocates nothing and
 *     the hot path never zeroes; a page only ever holds data of this
 *     device's own requests.
 *
 * A device created with VIRTIO_LOOPBACK_CREATE_ZERO_COPY has a third zone
 * after those, the zero-copy zone: IOVA space without memory of its own. A
 * streaming mapping that covers whole pages gets its IOVA there, and the
 * driver's own pages are what user space sees at it, for as long as the
 * device owns the request and no longer (see "zero-copy" below).
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
#include <linux/iova.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/pagemap.h>
#include <linux/pseudo_fs.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include <linux/virtio_ring.h>

#include "vl_compat.h"
#include "vl_core.h"

/*
 * Largest single streaming mapping; larger requests are split by the
 * block layer (virtio_blk sizes its segments with dma_max_mapping_size()).
 */
#define VL_MAX_MAPPING		(256 * 1024)
/*
 * Bounce space a default window provides beyond its rings. Only IOVA space
 * and 24 bytes of bookkeeping per page until used: pages are allocated as
 * mappings first reach them.
 */
#define VL_DEFAULT_BOUNCE	(32 * 1024 * 1024)

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
	int err = iova_cache_get();

	if (err)
		return err;
	vl_mnt = kern_mount(&vl_fs_type);
	if (IS_ERR(vl_mnt)) {
		iova_cache_put();
		return PTR_ERR(vl_mnt);
	}
	return 0;
}

void vl_window_exit(void)
{
	kern_unmount(vl_mnt);
	iova_cache_put();
}

/* --- window memory ------------------------------------------------------ */

/*
 * Per queue of max_queue_size: the driver's vring and the device's view of
 * its two rings (vl_queue.c); and page 0 and a spare page.
 */
static size_t vl_coherent_size(u32 num_queues, u32 max_queue_size)
{
	return PAGE_SIZE + num_queues *
	       (PAGE_ALIGN(vring_size(max_queue_size, PAGE_SIZE)) +
		vl_device_rings_size(max_queue_size)) + PAGE_SIZE;
}

size_t vl_window_default_size(u32 num_queues, u32 max_queue_size)
{
	return vl_coherent_size(num_queues, max_queue_size) + VL_DEFAULT_BOUNCE;
}

static bool vl_zone_has(struct vl_zone *zone, unsigned long pfn)
{
	return pfn >= zone->first_pfn && pfn - zone->first_pfn < zone->pages;
}

/* The zone of streaming mappings page pfn lies in, or NULL. */
static struct vl_zone *vl_zone_of(struct vl_window *win, unsigned long pfn)
{
	if (vl_zone_has(&win->bounce, pfn))
		return &win->bounce;
	if (vl_zone_has(&win->zc, pfn))
		return &win->zc;
	return NULL;
}

static struct vl_slot *vl_zone_slot(struct vl_zone *zone, unsigned long pfn)
{
	return &zone->slots[pfn - zone->first_pfn];
}

/* The slot of a page known to be in one of the two zones. */
static struct vl_slot *vl_slot(struct vl_window *win, unsigned long pfn)
{
	return vl_zone_slot(vl_zone_of(win, pfn), pfn);
}

/*
 * The page behind a bounce slot, allocated (zeroed) on first use and
 * charged to the memory cgroup of the window's creator. gfp is GFP_ATOMIC
 * from the DMA ops, GFP_KERNEL from a fault. Racing allocators agree on
 * one page.
 */
static struct page *vl_slot_page(struct vl_window *win, struct vl_slot *slot,
				 gfp_t gfp)
{
	struct page *page = READ_ONCE(slot->page), *old;
	struct mem_cgroup *memcg;

	if (likely(page))
		return page;
	memcg = set_active_memcg(win->memcg);
	page = alloc_page(gfp | __GFP_ZERO | __GFP_NOWARN | __GFP_ACCOUNT);
	set_active_memcg(memcg);
	if (!page) {
		atomic_long_inc(&win->stats.page_failures);
		return NULL;
	}
	old = cmpxchg(&slot->page, NULL, page);
	if (old) {
		__free_page(page);
		return old;
	}
	atomic_long_inc(&win->stats.pages);
	return page;
}

/*
 * Returns what is still allocated to the coherent pool. Drivers may leave
 * buffers mapped when they delete their queues (virtio-rng does), as they
 * would leak an IOMMU mapping; here the window goes away with them.
 */
static void vl_window_free_coherent_zone(struct vl_window *win)
{
	size_t page, pages = win->coherent_size >> PAGE_SHIFT;

	for (page = 0; page < pages; page++)
		if (win->coherent_alloc[page])
			gen_pool_free(win->pool, (unsigned long)win->coherent +
				      (page << PAGE_SHIFT),
				      win->coherent_alloc[page]);
	gen_pool_destroy(win->pool);
}

static void vl_zone_free(struct vl_zone *zone)
{
	if (zone->iovad_ready)
		put_iova_domain(&zone->iovad);
	kvfree(zone->slots);
}

static void vl_window_free(struct kref *ref)
{
	struct vl_window *win = container_of(ref, struct vl_window, ref);
	unsigned long i;

	if (win->pool)
		vl_window_free_coherent_zone(win);
	/* Zero-copy slots point at the drivers' pages: not ours to free. */
	if (win->bounce.slots)
		for (i = 0; i < win->bounce.pages; i++)
			if (win->bounce.slots[i].page)
				__free_page(win->bounce.slots[i].page);
	vl_zone_free(&win->bounce);
	vl_zone_free(&win->zc);
	if (win->sink)
		__free_page(win->sink);
	if (win->memcg)
		mem_cgroup_put(win->memcg);
	kvfree(win->coherent_alloc);
	vfree(win->coherent);
	kfree(win);
}

void vl_window_put(struct vl_window *win)
{
	if (win)
		kref_put(&win->ref, vl_window_free);
}

/*
 * Kernel address of [iova, iova + len) in the coherent zone (the rings),
 * or NULL if any part of it lies outside.
 */
void *vl_window_coherent_ptr(struct vl_window *win, u64 iova, size_t len)
{
	if (iova < PAGE_SIZE || iova > win->coherent_size ||
	    len > win->coherent_size - iova)
		return NULL;
	return win->coherent + iova;
}

/*
 * Calls fn on each piece of [iova, iova + len) that lies in one page of
 * the window, with the piece's kernel address. False, without calling fn
 * for any of it, if part of the range is outside the window or has no
 * page behind it.
 */
static bool vl_window_for_each(struct vl_window *win, u64 iova, size_t len,
			       void (*fn)(void *addr, size_t len, void *arg),
			       void *arg)
{
	u64 end = iova + len, pos;
	struct vl_zone *zone;

	if (iova < PAGE_SIZE || end < iova || end > win->size)
		return false;
	if (end <= win->coherent_size) {
		fn(win->coherent + iova, len, arg);
		return true;
	}
	zone = vl_zone_of(win, iova >> PAGE_SHIFT);
	/* No buffer straddles two zones. */
	if (!zone || !vl_zone_has(zone, (end - 1) >> PAGE_SHIFT))
		return false;
	for (pos = iova & PAGE_MASK; pos < end; pos += PAGE_SIZE)
		if (!READ_ONCE(vl_zone_slot(zone, pos >> PAGE_SHIFT)->page))
			return false;
	while (iova < end) {
		size_t chunk = min_t(u64, end - iova,
				     PAGE_SIZE - offset_in_page(iova));
		struct page *page = vl_zone_slot(zone, iova >> PAGE_SHIFT)->page;
		void *mapped = kmap_local_page(page);

		fn(mapped + offset_in_page(iova), chunk, arg);
		kunmap_local(mapped);
		iova += chunk;
	}
	return true;
}

struct vl_copy_arg {
	u8 *buf;
	bool to_window;
};

static void vl_copy_piece(void *addr, size_t len, void *arg)
{
	struct vl_copy_arg *copy = arg;

	if (copy->to_window)
		memcpy(addr, copy->buf, len);
	else
		memcpy(copy->buf, addr, len);
	copy->buf += len;
}

/* Copies len bytes at iova out of the window; false if not all are there. */
bool vl_window_read(struct vl_window *win, u64 iova, void *buf, size_t len)
{
	struct vl_copy_arg copy = { .buf = buf, .to_window = false };

	return vl_window_for_each(win, iova, len, vl_copy_piece, &copy);
}

/* Copies len bytes into the window at iova; false if not all are there. */
bool vl_window_write(struct vl_window *win, u64 iova, const void *buf,
		     size_t len)
{
	struct vl_copy_arg copy = { .buf = (u8 *)buf, .to_window = true };

	return vl_window_for_each(win, iova, len, vl_copy_piece, &copy);
}

static void vl_zero_piece(void *addr, size_t len, void *arg)
{
	memset(addr, 0, len);
}

/* Zeroes [iova, iova + len); false if not all of it is there. */
bool vl_window_zero(struct vl_window *win, u64 iova, size_t len)
{
	return vl_window_for_each(win, iova, len, vl_zero_piece, NULL);
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
 * Makes [start, start + len) read-only for user space, in slot `slot` (two
 * per queue, VL_PROTECT_*): mappings already writable are zapped, and later
 * write faults are refused.
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

/*
 * The head slot of the live streaming mapping that contains iova, or NULL.
 * Readers outside the mapping's own map/unmap/sync (the abort path) may
 * race with a concurrent unmap; they only use this as a filter.
 */
static struct vl_slot *vl_zone_mapping_at(struct vl_zone *zone, u64 iova)
{
	unsigned long pfn = iova >> PAGE_SHIFT;
	u32 head;

	if (!vl_zone_has(zone, pfn))
		return NULL;
	head = READ_ONCE(vl_zone_slot(zone, pfn)->head);
	if (!head)
		return NULL;
	return &zone->slots[head - 1];
}

static struct vl_slot *vl_mapping_at(struct vl_window *win, u64 iova)
{
	struct vl_zone *zone = vl_zone_of(win, iova >> PAGE_SHIFT);

	return zone ? vl_zone_mapping_at(zone, iova) : NULL;
}

/* The zone whose slots hold slot. */
static struct vl_zone *vl_slot_zone(struct vl_window *win,
				    struct vl_slot *slot)
{
	if (slot >= win->bounce.slots &&
	    slot < win->bounce.slots + win->bounce.pages)
		return &win->bounce;
	return &win->zc;
}

/* The IOVA of the first byte of the mapping whose head slot is head. */
static dma_addr_t vl_mapping_iova(struct vl_window *win, struct vl_slot *head)
{
	struct vl_zone *zone = vl_slot_zone(win, head);
	unsigned long pfn = zone->first_pfn + (head - zone->slots);

	return ((dma_addr_t)pfn << PAGE_SHIFT) + offset_in_page(head->orig);
}

/* Whether iova is the first byte of a live streaming mapping. */
bool vl_window_is_mapped(struct vl_window *win, u64 iova)
{
	struct vl_slot *head = vl_mapping_at(win, iova);

	/* size is published last on map (smp_store_release). */
	return head && smp_load_acquire(&head->size) &&
	       vl_mapping_iova(win, head) == iova;
}

/*
 * The mapping that contains [iova, iova + size): the driver's address
 * matching iova. False if there is none.
 */
static bool vl_dma_lookup(struct vl_window *win, dma_addr_t iova, size_t size,
			  phys_addr_t *orig)
{
	struct vl_slot *head = vl_mapping_at(win, iova);
	dma_addr_t start;

	if (!head || !size)
		return false;
	start = vl_mapping_iova(win, head);
	if (iova < start || size > head->size ||
	    iova - start > head->size - size)
		return false;
	*orig = head->orig + (iova - start);
	return true;
}

/*
 * Copies len bytes of the driver's own buffer behind the streaming mapping
 * at iova (not the window's copy, which user space may have rewritten):
 * how the kernel reads an indirect descriptor table. False if [iova,
 * iova + len) is not inside one live mapping.
 */
bool vl_window_read_driver(struct vl_window *win, u64 iova, void *buf,
			   size_t len)
{
	phys_addr_t orig;

	if (!vl_dma_lookup(win, iova, len, &orig))
		return false;
	while (len) {
		size_t chunk = min_t(size_t, len,
				     PAGE_SIZE - offset_in_page(orig));
		void *mapped = kmap_local_page(pfn_to_page(PHYS_PFN(orig)));

		memcpy(buf, mapped + offset_in_page(orig), chunk);
		kunmap_local(mapped);
		buf += chunk;
		orig += chunk;
		len -= chunk;
	}
	return true;
}

/* --- zero-copy ---------------------------------------------------------- */

/*
 * A streaming mapping of whole pages (offset 0, a multiple of PAGE_SIZE)
 * on a zero-copy device is not bounced: its IOVA comes from the zero-copy
 * zone, whose slots point at the driver's pages. User space may map those
 * pages only while the device owns the request, which the kernel knows
 * from the mediated rings (vl_queue.c):
 *
 *   MAPPED     dma_map_page(): nothing is mapped; faults get SIGBUS.
 *   PUBLISHED  the request's head was forwarded to the device's available
 *              ring (vl_queue.c walks its chain): faults map the pages,
 *              read-only unless the device writes them.
 *   RETIRED    the device used the request: before the kernel publishes
 *              the completion to the driver, it marks the chain's mappings
 *              RETIRED, waits out faults in progress (revoke_lock) and
 *              unmaps them from every process (vl_window_zap()); only then
 *              can the driver see the completion, and unmap.
 *   FREE       dma_unmap_page().
 *
 * The pages are mapped as special PTEs (vl_zc_insert()), which, in our
 * VM_MIXEDMAP window, vm_normal_page() does not resolve, so
 * get_user_pages() and pin_user_pages() fail on them. Nothing
 * can take a reference that outlives the unmap: O_DIRECT I/O, io_uring
 * buffer registration, vmsplice and process_vm_readv are refused; only
 * the CPU, through the page tables we zap, touches them. docs/uapi.md,
 * "Zero-copy", has the reasoning.
 *
 * Slot fields of the zero-copy zone are written by map/unmap (one owner,
 * as for bounce slots), by the forward and retire walks (under the
 * queue's track_lock, while the chain is the device's), and read by the
 * fault handlers, which check the state and hold revoke_lock for read.
 */
static bool vl_window_zero_copy(struct vl_window *win)
{
	return win->zc.pages;
}

static bool vl_zc_eligible(struct vl_window *win, phys_addr_t orig,
			   size_t size)
{
	return vl_window_zero_copy(win) && !offset_in_page(orig) &&
	       !offset_in_page(size);
}

/* 1 + index of the head slot in the zero-copy zone, as links store it. */
static u32 vl_zc_link_of(struct vl_window *win, struct vl_slot *head)
{
	return head - win->zc.slots + 1;
}

static struct vl_slot *vl_zc_head(struct vl_window *win, u64 iova)
{
	struct vl_slot *head = vl_zone_mapping_at(&win->zc, iova);

	/* size is published last on map. */
	return head && smp_load_acquire(&head->size) ? head : NULL;
}

/*
 * Gives the zero-copy mapping containing iova to the device, linking it
 * after *prev in its chain (*first: the chain's first mapping; both are
 * links, 0 for none). False if iova is not in a zero-copy mapping.
 * Called from the forward walk.
 */
bool vl_window_zc_publish(struct vl_window *win, u64 iova, u32 *first,
			  u32 *prev)
{
	struct vl_slot *head = vl_zc_head(win, iova);
	u32 link;

	if (!head)
		return false;
	if (READ_ONCE(head->state) != VL_ZC_MAPPED)
		return true;	/* twice in one chain: linked already */
	link = vl_zc_link_of(win, head);
	WRITE_ONCE(head->next, 0);
	if (*prev)
		WRITE_ONCE(win->zc.slots[*prev - 1].next, link);
	else
		*first = link;
	*prev = link;
	/* Faults that see the state see the links. */
	smp_store_release(&head->state, VL_ZC_PUBLISHED);
	return true;
}

/* Closes a chain's ring of links, so a fault anywhere maps all of it. */
void vl_window_zc_link(struct vl_window *win, u32 first, u32 last)
{
	if (first && last && first != last)
		WRITE_ONCE(win->zc.slots[last - 1].next, first);
}

static void vl_zap_add(struct vl_zap *zap, u64 start, u64 end)
{
	unsigned int i;

	for (i = 0; i < zap->count; i++) {
		if (end == zap->start[i]) {
			zap->start[i] = start;
			return;
		}
		if (start == zap->end[i]) {
			zap->end[i] = end;
			return;
		}
	}
	if (zap->count < VL_ZAP_RANGES) {
		zap->start[zap->count] = start;
		zap->end[zap->count++] = end;
		return;
	}
	/* Too many pieces: one range over all of them. */
	zap->overflow = true;
	for (i = 0; i < zap->count; i++) {
		start = min(start, zap->start[i]);
		end = max(end, zap->end[i]);
	}
	zap->count = 1;
	zap->start[0] = start;
	zap->end[0] = end;
}

/*
 * Takes the zero-copy mapping containing iova back from the device: no
 * new fault maps it, and its range is added to zap for vl_window_zap().
 * Called from the retire walk.
 */
void vl_window_zc_retire(struct vl_window *win, u64 iova, struct vl_zap *zap)
{
	struct vl_slot *head = vl_zc_head(win, iova);
	u64 start;

	if (!head || READ_ONCE(head->state) != VL_ZC_PUBLISHED)
		return;
	WRITE_ONCE(head->state, VL_ZC_RETIRED);
	start = vl_mapping_iova(win, head);
	vl_zap_add(zap, start, start + head->size);
}

/*
 * Unmaps the ranges in zap from every process, after the faults that may
 * have seen them published are done. Sleeps.
 */
void vl_window_zap(struct vl_window *win, struct vl_zap *zap)
{
	unsigned int i;

	u64 start;

	if (!zap->count)
		return;
	start = ktime_get_ns();
	/* Pairs with the fault handlers' read lock; see above. */
	down_write(&win->revoke_lock);
	up_write(&win->revoke_lock);
	for (i = 0; i < zap->count; i++)
		unmap_mapping_range(win->file->f_mapping, zap->start[i],
				    zap->end[i] - zap->start[i], 1);
	atomic_long_add(zap->count, &win->stats.zc_zaps);
	atomic_long_add(ktime_get_ns() - start, &win->stats.zc_zap_ns);
	zap->count = 0;
	zap->overflow = false;
}

/*
 * The device was reset: it owns no request any more, and the driver is
 * about to unmap what it had given it. Retires every mapping and unmaps
 * the whole zone. Sleeps.
 */
void vl_window_zc_retire_all(struct vl_window *win)
{
	struct vl_zap zap = {};
	unsigned long i;

	if (!vl_window_zero_copy(win))
		return;
	for (i = 0; i < win->zc.pages; i++)
		if (READ_ONCE(win->zc.slots[i].state) == VL_ZC_PUBLISHED)
			WRITE_ONCE(win->zc.slots[i].state, VL_ZC_RETIRED);
	vl_zap_add(&zap, (u64)win->zc.first_pfn << PAGE_SHIFT,
		   (u64)(win->zc.first_pfn + win->zc.pages) << PAGE_SHIFT);
	vl_window_zap(win, &zap);
}

/* Whether the window was revoked and nothing of it is mapped any more. */
bool vl_window_is_zapped(struct vl_window *win)
{
	/* Pairs with the release in vl_window_revoke(). */
	return smp_load_acquire(&win->zapped);
}

struct vl_zc_fill {
	struct vl_window *win;
	struct vm_area_struct *vma;
	pgprot_t writable;	/* for buffers the device writes */
};

/*
 * apply_to_page_range() callback, page-table lock held: maps the page of
 * the window at addr if it belongs to a published mapping. Writable at
 * once where the device writes the buffer (the VMA's own protection is
 * write-notified, and a fault per page to upgrade it would cost more than
 * the copy zero-copy saves), read-only otherwise.
 */
static int vl_zc_set_pte(pte_t *pte, unsigned long addr, void *data)
{
	struct vl_zc_fill *fill = data;
	struct vm_area_struct *vma = fill->vma;
	unsigned long pfn = vma->vm_pgoff + ((addr - vma->vm_start) >> PAGE_SHIFT);
	struct vl_slot *slot = vl_zone_slot(&fill->win->zc, pfn);
	u32 link = READ_ONCE(slot->head);
	struct vl_slot *head = link ? &fill->win->zc.slots[link - 1] : NULL;
	pgprot_t prot;

	/* Acquire: the page was recorded before the mapping was published. */
	if (!head || smp_load_acquire(&head->state) != VL_ZC_PUBLISHED ||
	    !pte_none(ptep_get(pte)))
		return 0;
	prot = head->device_writes ? fill->writable : vma->vm_page_prot;
	set_pte_at(vma->vm_mm, addr, pte,
		   pte_mkspecial(pfn_pte(page_to_pfn(READ_ONCE(slot->page)),
					 prot)));
	return 0;
}

/*
 * Maps the published pages among window pages [first, end) into vma, as
 * special PTEs. vmf_insert_mixed() cannot choose the protection, and its
 * variants that can are not exported on every kernel we support;
 * apply_to_page_range() takes the page-table lock and allocates tables as
 * a fault would, and one call covers many mappings.
 */
static vm_fault_t vl_zc_map_range(struct vl_window *win,
				  struct vm_area_struct *vma,
				  unsigned long first, unsigned long end)
{
	struct vl_zc_fill fill = {
		.win = win,
		.vma = vma,
		.writable = vm_get_page_prot(vma->vm_flags),
	};
	int err;

	first = max(first, vma->vm_pgoff);
	end = min(end, vma->vm_pgoff + vma_pages(vma));
	if (first >= end)
		return VM_FAULT_NOPAGE;
	err = apply_to_page_range(vma->vm_mm, vma->vm_start +
				  ((first - vma->vm_pgoff) << PAGE_SHIFT),
				  (end - first) << PAGE_SHIFT, vl_zc_set_pte,
				  &fill);
	if (err == -ENOMEM)
		return VM_FAULT_OOM;
	return err ? VM_FAULT_SIGBUS : VM_FAULT_NOPAGE;
}

/* Window pages [*first, *end) of the mapping whose head is head. */
static void vl_zc_pages(struct vl_window *win, struct vl_slot *head,
			unsigned long *first, unsigned long *end)
{
	*first = win->zc.first_pfn + (head - win->zc.slots);
	*end = *first + (READ_ONCE(head->size) >> PAGE_SHIFT);
}

/* The next published mapping of head's chain, or NULL. */
static struct vl_slot *vl_zc_next(struct vl_window *win, struct vl_slot *pos)
{
	u32 link = READ_ONCE(pos->next);

	if (!link)
		return NULL;
	pos = &win->zc.slots[link - 1];
	/* Acquire, as for the chain's first mapping. */
	return smp_load_acquire(&pos->state) == VL_ZC_PUBLISHED ? pos : NULL;
}

/* Most mappings a fault follows through a chain's links. */
#define VL_ZC_CHAIN_MAX		1024

/*
 * Fault in the zero-copy zone; revoke_lock is held for read. Maps the
 * whole chain the page belongs to: a back-end touches all of a request's
 * buffers, and one fault is cheaper than one per page. The chain's
 * buffers usually have neighbouring IOVAs (the allocator hands them out
 * in a row), so one pass over their span does it; a scattered chain is
 * mapped buffer by buffer.
 */
static vm_fault_t vl_zc_fault(struct vl_window *win, struct vm_fault *vmf)
{
	struct vl_slot *head = vl_zc_head(win, (u64)vmf->pgoff << PAGE_SHIFT);
	unsigned long first, end, lo, hi, pages = 0;
	vm_fault_t ret = VM_FAULT_NOPAGE;
	unsigned int n = 0;
	struct vl_slot *pos;
	u64 start;

	/* Acquire: the links were written before the state was published. */
	if (!head || smp_load_acquire(&head->state) != VL_ZC_PUBLISHED)
		return VM_FAULT_SIGBUS;
	if ((vmf->flags & FAULT_FLAG_WRITE) && !head->device_writes)
		return VM_FAULT_SIGBUS;
	atomic_long_inc(&win->stats.zc_faults);
	start = ktime_get_ns();
	vl_zc_pages(win, head, &lo, &hi);
	for (pos = head; pos && n < VL_ZC_CHAIN_MAX;
	     pos = vl_zc_next(win, pos), n++) {
		if (n && pos == head)
			break;
		vl_zc_pages(win, pos, &first, &end);
		lo = min(lo, first);
		hi = max(hi, end);
		pages += end - first;
	}
	if (hi - lo <= 2 * pages) {
		ret = vl_zc_map_range(win, vmf->vma, lo, hi);
	} else {
		for (pos = head, n = 0; pos && n < VL_ZC_CHAIN_MAX &&
		     ret == VM_FAULT_NOPAGE; pos = vl_zc_next(win, pos), n++) {
			if (n && pos == head)
				break;
			vl_zc_pages(win, pos, &first, &end);
			ret = vl_zc_map_range(win, vmf->vma, first, end);
		}
	}
	atomic_long_add(ktime_get_ns() - start, &win->stats.zc_fault_ns);
	return ret;
}

/* --- the window file ---------------------------------------------------- */

/* The page user space sees at page offset pgoff, or NULL (out of memory). */
static struct page *vl_window_user_page(struct vl_window *win, pgoff_t pgoff)
{
	if (win->revoked)
		return win->sink;
	if (pgoff < win->coherent_size >> PAGE_SHIFT)
		return vmalloc_to_page(win->coherent + (pgoff << PAGE_SHIFT));
	return vl_slot_page(win, vl_zone_slot(&win->bounce, pgoff), GFP_KERNEL);
}

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
	if (!win->revoked && vl_zone_has(&win->zc, vmf->pgoff)) {
		vm_fault_t ret = vl_zc_fault(win, vmf);

		up_read(&win->revoke_lock);
		return ret;
	}
	page = vl_window_user_page(win, vmf->pgoff);
	err = page ? vm_insert_page(vma, vmf->address, page) : -ENOMEM;
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

/*
 * The first write to a read-only zero-copy PTE (or to the sink, which is
 * a normal page and goes to page_mkwrite) comes here: allowed where the
 * device writes the buffer and owns it, SIGBUS otherwise. Without this
 * hook the core would make the PTE writable.
 */
static vm_fault_t vl_window_pfn_mkwrite(struct vm_fault *vmf)
{
	struct vl_window *win = vmf->vma->vm_private_data;
	struct vl_slot *head;
	vm_fault_t ret = VM_FAULT_SIGBUS;

	down_read(&win->revoke_lock);
	head = vl_zc_head(win, (u64)vmf->pgoff << PAGE_SHIFT);
	if (!win->revoked && head && head->device_writes &&
	    /* Acquire: pairs with the release in vl_window_zc_publish(). */
	    smp_load_acquire(&head->state) == VL_ZC_PUBLISHED)
		ret = 0;
	up_read(&win->revoke_lock);
	return ret;
}

static const struct vm_operations_struct vl_window_vm_ops = {
	.fault = vl_window_fault,
	.page_mkwrite = vl_window_page_mkwrite,
	.pfn_mkwrite = vl_window_pfn_mkwrite,
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
	 * held for read only. Coherent and bounce pages are inserted as
	 * ordinary, refcounted pages, so back-ends can do O_DIRECT I/O
	 * (get_user_pages) on them; zero-copy pages as special PTEs, which
	 * nothing can pin (see "zero-copy").
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

/* The coherent zone: page 0 and the rings, allocated and zeroed now. */
static int vl_window_init_coherent(struct vl_window *win, size_t size)
{
	win->coherent_size = size;
	/* Charged to the creator's memory cgroup, as the bounce pages are. */
	win->coherent = __vmalloc(size, GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	win->coherent_alloc = kvcalloc(size >> PAGE_SHIFT,
				       sizeof(*win->coherent_alloc),
				       GFP_KERNEL_ACCOUNT);
	win->pool = gen_pool_create(PAGE_SHIFT, NUMA_NO_NODE);
	if (!win->coherent || !win->coherent_alloc || !win->pool)
		return -ENOMEM;
	/* The pool's "physical" addresses are the IOVAs. */
	return gen_pool_add_virt(win->pool,
				 (unsigned long)win->coherent + PAGE_SIZE,
				 PAGE_SIZE, size - PAGE_SIZE, NUMA_NO_NODE);
}

/*
 * A zone of streaming mappings: IOVA space and bookkeeping only; bounce
 * pages come later, zero-copy pages are the drivers'.
 */
static int vl_zone_init(struct vl_zone *zone, unsigned long first_pfn,
			unsigned long pages)
{
	int err;

	zone->first_pfn = first_pfn;
	zone->pages = pages;
	if (!pages)
		return 0;
	zone->slots = kvcalloc(pages, sizeof(*zone->slots), GFP_KERNEL_ACCOUNT);
	if (!zone->slots)
		return -ENOMEM;
	init_iova_domain(&zone->iovad, PAGE_SIZE, first_pfn);
	err = iova_domain_init_rcaches(&zone->iovad);
	if (err)
		return err;
	zone->iovad_ready = true;
	return 0;
}

/*
 * A window of size bytes for num_queues queues of up to max_queue_size
 * entries: rings first, everything else bounce space; with zero_copy, as
 * much IOVA space again for zero-copy mappings after it.
 */
struct vl_window *vl_window_create(size_t size, u32 num_queues,
				   u32 max_queue_size, bool zero_copy)
{
	size_t coherent, bounce;
	struct vl_window *win;

	size = PAGE_ALIGN(size);
	/* A small window given at create still keeps half for buffers. */
	coherent = min(PAGE_ALIGN(vl_coherent_size(num_queues, max_queue_size)),
		       (size / 2) & PAGE_MASK);
	win = kzalloc(sizeof(*win), GFP_KERNEL);
	if (!win)
		return ERR_PTR(-ENOMEM);
	kref_init(&win->ref);
	init_rwsem(&win->revoke_lock);
	spin_lock_init(&win->protect_lock);
	bounce = size - coherent;
	win->size = size + (zero_copy ? bounce : 0);
	win->memcg = get_mem_cgroup_from_mm(current->mm);

	win->sink = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	if (!win->sink || vl_window_init_coherent(win, coherent) ||
	    vl_zone_init(&win->bounce, coherent >> PAGE_SHIFT,
			 bounce >> PAGE_SHIFT) ||
	    vl_zone_init(&win->zc, size >> PAGE_SHIFT,
			 zero_copy ? bounce >> PAGE_SHIFT : 0) ||
	    vl_window_create_file(win))
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
	/* Zero-copy completions need no retirement from now on. */
	smp_store_release(&win->zapped, true);
	up_write(&win->revoke_lock);
}

/* --- DMA operations: coherent ------------------------------------------- */

static struct vl_window *dev_to_window(struct device *dev)
{
	return container_of(dev, struct vl_device, dev)->window;
}

/*
 * Zeroed, page-aligned memory in the coherent zone: the driver's vrings
 * (through vl_dma_alloc()) and the device's view of them (vl_queue.c).
 */
void *vl_window_alloc_coherent(struct vl_window *win, size_t size, u64 *iova)
{
	struct genpool_data_align align = { .align = PAGE_SIZE };
	unsigned long vaddr;

	size = PAGE_ALIGN(size);
	vaddr = gen_pool_alloc_algo(win->pool, size, gen_pool_first_fit_align,
				    &align);
	if (!vaddr)
		return NULL;
	memset((void *)vaddr, 0, size);
	*iova = gen_pool_virt_to_phys(win->pool, vaddr);
	win->coherent_alloc[*iova >> PAGE_SHIFT] = size;
	return (void *)vaddr;
}

void vl_window_free_coherent(struct vl_window *win, void *vaddr, u64 iova,
			     size_t size)
{
	win->coherent_alloc[iova >> PAGE_SHIFT] = 0;
	gen_pool_free(win->pool, (unsigned long)vaddr, PAGE_ALIGN(size));
}

static void *vl_dma_alloc(struct device *dev, size_t size,
			  dma_addr_t *dma_handle, gfp_t gfp,
			  unsigned long attrs)
{
	u64 iova;
	void *vaddr = vl_window_alloc_coherent(dev_to_window(dev), size, &iova);

	if (vaddr)
		*dma_handle = iova;
	return vaddr;
}

static void vl_dma_free(struct device *dev, size_t size, void *vaddr,
			dma_addr_t dma_handle, unsigned long attrs)
{
	vl_window_free_coherent(dev_to_window(dev), vaddr, dma_handle, size);
}

/* --- DMA operations: streaming (bounced) -------------------------------- */

/*
 * Copies between the window at iova and the driver's buffer at orig. Both
 * have the same offset in their pages, so every piece lies in one page of
 * each; the driver's buffer is physically contiguous (one mapping).
 */
static void vl_bounce(struct vl_window *win, dma_addr_t iova, phys_addr_t orig,
		      size_t size, bool to_window)
{
	u64 start = ktime_get_ns();

	while (size) {
		size_t chunk = min_t(size_t, size,
				     PAGE_SIZE - offset_in_page(iova));
		struct page *page = vl_slot(win, iova >> PAGE_SHIFT)->page;
		void *window = kmap_local_page(page);
		void *buffer = kmap_local_page(pfn_to_page(PHYS_PFN(orig)));

		if (to_window)
			memcpy(window + offset_in_page(iova),
			       buffer + offset_in_page(orig), chunk);
		else
			memcpy(buffer + offset_in_page(orig),
			       window + offset_in_page(iova), chunk);
		kunmap_local(buffer);
		kunmap_local(window);
		iova += chunk;
		orig += chunk;
		size -= chunk;
	}
	atomic_long_add(ktime_get_ns() - start, &win->stats.bounce_ns);
}

static bool vl_dma_copies_to_device(enum dma_data_direction dir)
{
	return dir == DMA_TO_DEVICE || dir == DMA_BIDIRECTIONAL;
}

static bool vl_dma_copies_from_device(enum dma_data_direction dir)
{
	return dir == DMA_FROM_DEVICE || dir == DMA_BIDIRECTIONAL;
}

/* Pages a mapping of size bytes at page offset offset spans. */
static unsigned long vl_span_pages(size_t offset, size_t size)
{
	return PFN_UP(offset + size);
}

/*
 * Marks the slots [pfn, pfn + npages) as belonging to the mapping whose
 * head is pfn, making sure each has a page. False if a page could not be
 * allocated; the slots are then free again.
 */
static bool vl_claim_slots(struct vl_window *win, unsigned long pfn,
			   unsigned long npages)
{
	u32 head = pfn - win->bounce.first_pfn + 1;	/* 0 means free */
	unsigned long i;

	for (i = 0; i < npages; i++) {
		struct vl_slot *slot = vl_zone_slot(&win->bounce, pfn + i);

		if (!vl_slot_page(win, slot, GFP_ATOMIC)) {
			while (i--)
				WRITE_ONCE(vl_zone_slot(&win->bounce,
							pfn + i)->head, 0);
			return false;
		}
		WRITE_ONCE(slot->head, head);
	}
	return true;
}

/* Npages of IOVA space in zone, or 0. Never sleeps. */
static unsigned long vl_zone_alloc(struct vl_zone *zone, unsigned long npages)
{
	return alloc_iova_fast(&zone->iovad, npages,
			       zone->first_pfn + zone->pages - 1, true);
}

/* A bounced mapping: the window's pages hold a copy of the buffer. */
static dma_addr_t vl_map_bounce(struct vl_window *win, phys_addr_t orig,
				size_t size, enum dma_data_direction dir)
{
	unsigned long npages = vl_span_pages(offset_in_page(orig), size);
	unsigned long pfn = vl_zone_alloc(&win->bounce, npages);
	struct vl_slot *head;
	dma_addr_t iova;

	if (!pfn)
		return DMA_MAPPING_ERROR;
	if (!vl_claim_slots(win, pfn, npages)) {
		free_iova_fast(&win->bounce.iovad, pfn, npages);
		return DMA_MAPPING_ERROR;
	}
	head = vl_zone_slot(&win->bounce, pfn);
	head->orig = orig;
	/* Last: vl_window_is_mapped() trusts a mapping with a size. */
	smp_store_release(&head->size, size);
	iova = ((dma_addr_t)pfn << PAGE_SHIFT) + offset_in_page(orig);
	if (vl_dma_copies_to_device(dir)) {
		vl_bounce(win, iova, orig, size, true);
		atomic_long_add(size, &win->stats.bytes_to_device);
	}
	return iova;
}

/*
 * A zero-copy mapping: its slots point at the driver's pages, which user
 * space can reach only once the request is forwarded (MAPPED for now).
 */
static dma_addr_t vl_map_zero_copy(struct vl_window *win, phys_addr_t orig,
				   size_t size, enum dma_data_direction dir)
{
	unsigned long npages = size >> PAGE_SHIFT, i;
	unsigned long pfn = vl_zone_alloc(&win->zc, npages);
	u32 link;
	struct vl_slot *head;

	if (!pfn)
		return DMA_MAPPING_ERROR;
	head = vl_zone_slot(&win->zc, pfn);
	link = vl_zc_link_of(win, head);
	for (i = 0; i < npages; i++) {
		struct vl_slot *slot = head + i;

		WRITE_ONCE(slot->page, pfn_to_page(PHYS_PFN(orig) + i));
		WRITE_ONCE(slot->head, link);
	}
	head->orig = orig;
	head->device_writes = vl_dma_copies_from_device(dir);
	head->next = 0;
	WRITE_ONCE(head->state, VL_ZC_MAPPED);
	/* Last: vl_zc_head() trusts a mapping with a size. */
	smp_store_release(&head->size, size);
	atomic_long_inc(&win->stats.zc_maps);
	atomic_long_add(npages, &win->stats.zc_pages);
	return (dma_addr_t)pfn << PAGE_SHIFT;
}

static dma_addr_t __vl_dma_map_page(struct vl_window *win, struct page *page,
				    unsigned long offset, size_t size,
				    enum dma_data_direction dir)
{
	phys_addr_t orig = page_to_phys(page) + offset;
	dma_addr_t iova;

	if (!size || size > VL_MAX_MAPPING)
		return DMA_MAPPING_ERROR;
	/* Atomic context is allowed here: nothing below sleeps. */
	if (vl_zc_eligible(win, orig, size))
		iova = vl_map_zero_copy(win, orig, size, dir);
	else
		iova = vl_map_bounce(win, orig, size, dir);
	if (iova == DMA_MAPPING_ERROR)
		atomic_long_inc(&win->stats.map_failures);
	else
		atomic_long_inc(&win->stats.maps);
	return iova;
}

static dma_addr_t vl_dma_map_page(struct device *dev, struct page *page,
				  unsigned long offset, size_t size,
				  enum dma_data_direction dir,
				  unsigned long attrs)
{
	struct vl_window *win = dev_to_window(dev);
	u64 start = ktime_get_ns();
	dma_addr_t iova = __vl_dma_map_page(win, page, offset, size, dir);

	atomic_long_add(ktime_get_ns() - start, &win->stats.dma_ns);
	return iova;
}

/*
 * Frees a zero-copy mapping. Its pages must be unreachable: never
 * published, or retired (and so unmapped) before the driver saw the
 * completion, or the whole window revoked. A published mapping here means
 * the driver unmapped a buffer the device still owns, which virtio drivers
 * do not do; user space could keep reaching it, so the device is failed
 * (revocation unmaps everything).
 */
static void vl_unmap_zero_copy(struct device *dev, struct vl_window *win,
			       struct vl_slot *head, unsigned long pfn)
{
	unsigned long npages = head->size >> PAGE_SHIFT, i;

	if (READ_ONCE(head->state) == VL_ZC_PUBLISHED &&
	    !vl_window_is_zapped(win)) {
		dev_WARN_ONCE(dev, true, "zero-copy buffer unmapped while the device owns it\n");
		vl_fail(container_of(dev, struct vl_device, dev),
			"a zero-copy buffer was unmapped while in use");
	}
	WRITE_ONCE(head->state, VL_ZC_FREE);
	WRITE_ONCE(head->size, 0);
	for (i = 0; i < npages; i++) {
		WRITE_ONCE(head[i].head, 0);
		WRITE_ONCE(head[i].page, NULL);
	}
	free_iova_fast(&win->zc.iovad, pfn, npages);
}

static void __vl_dma_unmap_page(struct device *dev, dma_addr_t iova,
				size_t size, enum dma_data_direction dir)
{
	struct vl_window *win = dev_to_window(dev);
	struct vl_slot *head = vl_mapping_at(win, iova);
	unsigned long pfn = iova >> PAGE_SHIFT, npages, i;

	/*
	 * Unmap must name exactly one live mapping; anything else would free
	 * the wrong slots. Reachable through a device that rewrote its
	 * descriptors (6.1's detach follows descriptor flags in the ring):
	 * not a kernel bug.
	 */
	if (!head || head != vl_slot(win, pfn) || head->size != size ||
	    vl_mapping_iova(win, head) != iova) {
		dev_warn_ratelimited(dev, "unmap of %zu bytes at %pad: no such mapping\n",
				     size, &iova);
		return;
	}
	if (vl_slot_zone(win, head) == &win->zc) {
		vl_unmap_zero_copy(dev, win, head, pfn);
		return;
	}
	if (vl_dma_copies_from_device(dir)) {
		vl_bounce(win, iova, head->orig, size, false);
		atomic_long_add(size, &win->stats.bytes_from_device);
	}
	npages = vl_span_pages(offset_in_page(iova), size);
	WRITE_ONCE(head->size, 0);
	for (i = 0; i < npages; i++)
		WRITE_ONCE(vl_zone_slot(&win->bounce, pfn + i)->head, 0);
	free_iova_fast(&win->bounce.iovad, pfn, npages);
}

static void vl_dma_unmap_page(struct device *dev, dma_addr_t iova,
			      size_t size, enum dma_data_direction dir,
			      unsigned long attrs)
{
	struct vl_window *win = dev_to_window(dev);
	u64 start = ktime_get_ns();

	__vl_dma_unmap_page(dev, iova, size, dir);
	atomic_long_add(ktime_get_ns() - start, &win->stats.dma_ns);
}

static void vl_dma_sync_for_cpu(struct device *dev, dma_addr_t iova,
				size_t size, enum dma_data_direction dir)
{
	struct vl_window *win = dev_to_window(dev);
	phys_addr_t orig;

	/* Zero-copy mappings are the driver's pages: nothing to copy. */
	if (vl_dma_copies_from_device(dir) && vl_zone_has(&win->bounce, iova >> PAGE_SHIFT) &&
	    vl_dma_lookup(win, iova, size, &orig))
		vl_bounce(win, iova, orig, size, false);
}

static void vl_dma_sync_for_device(struct device *dev, dma_addr_t iova,
				   size_t size, enum dma_data_direction dir)
{
	struct vl_window *win = dev_to_window(dev);
	phys_addr_t orig;

	if (vl_dma_copies_to_device(dir) && vl_zone_has(&win->bounce, iova >> PAGE_SHIFT) &&
	    vl_dma_lookup(win, iova, size, &orig))
		vl_bounce(win, iova, orig, size, true);
}

static void vl_dma_unmap_sg(struct device *dev, struct scatterlist *sgl,
			    int nents, enum dma_data_direction dir,
			    unsigned long attrs)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgl, sg, nents, i)
		vl_dma_unmap_page(dev, sg_dma_address(sg), sg_dma_len(sg), dir,
				  attrs);
}

/*
 * The virtio core maps buffer by buffer (map_page); this is for any other
 * user of the DMA API on our device, one mapping per entry.
 */
static int vl_dma_map_sg(struct device *dev, struct scatterlist *sgl,
			 int nents, enum dma_data_direction dir,
			 unsigned long attrs)
{
	struct scatterlist *sg;
	int i;

	for_each_sg(sgl, sg, nents, i) {
		sg_dma_address(sg) = vl_dma_map_page(dev, sg_page(sg), sg->offset,
						     sg->length, dir, attrs);
		if (sg_dma_address(sg) == DMA_MAPPING_ERROR) {
			vl_dma_unmap_sg(dev, sgl, i, dir, attrs);
			return -ENOMEM;
		}
		sg_dma_len(sg) = sg->length;
	}
	return nents;
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
	.map_sg = vl_dma_map_sg,
	.unmap_sg = vl_dma_unmap_sg,
	.sync_single_for_cpu = vl_dma_sync_for_cpu,
	.sync_single_for_device = vl_dma_sync_for_device,
	.max_mapping_size = vl_dma_max_mapping_size,
	.dma_supported = vl_dma_supported,
};
