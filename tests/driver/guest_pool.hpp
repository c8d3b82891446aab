// SPDX-License-Identifier: Apache-2.0
// The test driver's "guest memory": one memfd shared with the back-end
// (VHOST_USER_SET_MEM_TABLE, one region) and a small allocator that hands
// out buffers inside it. The rings live in it too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>

#include "base/mapping.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "virtqueue/split_driver.hpp"

namespace vl::test_driver
{

// First-fit allocator of byte ranges [0, capacity): bookkeeping only, no
// memory. Adjacent free ranges are merged on free, so a pool that was
// filled and emptied again is one free range. Not thread-safe.
class RangeAllocator
{
  public:
    explicit RangeAllocator(std::uint64_t capacity);

    // The offset of `size` bytes aligned to `align` (a power of two).
    // Errors: size 0 or a bad alignment (EINVAL), no free range large
    // enough (ENOMEM, with the largest free range in the message).
    Result<std::uint64_t> allocate(std::uint64_t size, std::uint64_t align);

    // Returns a range that allocate() gave. An offset that is not the start
    // of a live allocation (a double free) is an error and changes nothing.
    Status free(std::uint64_t offset);

    [[nodiscard]] std::uint64_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::uint64_t bytes_free() const noexcept { return bytes_free_; }
    [[nodiscard]] std::size_t allocations() const noexcept { return used_.size(); }
    // Number of separate free ranges (1 for an empty pool: no fragments).
    [[nodiscard]] std::size_t free_ranges() const noexcept { return free_.size(); }
    [[nodiscard]] std::uint64_t largest_free_range() const noexcept;

  private:
    std::uint64_t capacity_;
    std::uint64_t bytes_free_;
    std::map<std::uint64_t, std::uint64_t> free_; // offset -> size, never adjacent
    std::map<std::uint64_t, std::uint64_t> used_; // offset -> size
};

class Buffer;

// The guest memory: a memfd of `size` bytes mapped MAP_SHARED in this
// process. The back-end sees it as one vhost-user memory region:
//   guest_phys_addr = guest_base()  (what descriptors and the device use)
//   userspace_addr  = user_addr()   (our mapping's address, as QEMU does:
//                                    ring addresses in SET_VRING_ADDR are
//                                    given in this space)
//   mmap_offset     = 0
// The guest base defaults to a value that differs from the user address
// (see ConnectOptions), so a back-end that confuses the two fails loudly.
//
// Shared ownership: every Buffer keeps the pool (and so the mapping)
// alive, so no Buffer can ever point into unmapped memory. allocate() and
// Buffer destruction may happen on different threads.
class GuestPool : public std::enable_shared_from_this<GuestPool>
{
  public:
    // What backs the memory.
    enum class Backing {
        memfd,
        // memfd_secret(2): pages that get_user_pages refuses to pin, as the
        // transport's zero-copy pages are, so that O_DIRECT I/O, io_uring
        // buffer registration or vmsplice on them fail with EFAULT while
        // plain reads and writes (copies) work. Counted against
        // RLIMIT_MEMLOCK (each mapping); ENOSYS where the kernel has no
        // secretmem (built without it, or secretmem.enable=0).
        unpinnable,
    };

    // `size` is rounded up to whole pages. guest_base must be page-aligned.
    static Result<std::shared_ptr<GuestPool>> create(std::uint64_t size, std::uint64_t guest_base,
                                                     Backing backing = Backing::memfd);

    GuestPool(const GuestPool&) = delete;
    GuestPool& operator=(const GuestPool&) = delete;
    ~GuestPool() = default;

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }
    [[nodiscard]] std::uint64_t size() const noexcept { return mapping_.size(); }
    [[nodiscard]] std::uint64_t guest_base() const noexcept { return guest_base_; }
    [[nodiscard]] std::uint64_t user_addr() const noexcept;
    [[nodiscard]] std::span<std::byte> bytes() const noexcept { return mapping_.bytes(); }

    // A zero-filled buffer of `size` bytes (1 .. 2^32 - 1: one descriptor's
    // length), aligned to `align` in guest and host address space.
    Result<Buffer> allocate(std::uint64_t size, std::uint64_t align = 64);

    [[nodiscard]] std::uint64_t bytes_free() const;

  private:
    friend class Buffer;
    GuestPool(UniqueFd fd, Mapping mapping, std::uint64_t guest_base);
    void release(std::uint64_t offset) noexcept;

    UniqueFd fd_;
    Mapping mapping_;
    std::uint64_t guest_base_;
    mutable std::mutex mutex_; // protects allocator_
    RangeAllocator allocator_;
};

// One allocation in guest memory; returned to the pool on destruction.
// Move-only. The device may write into it while a request is in flight:
// keep the Buffer alive until the request completed.
class Buffer
{
  public:
    Buffer() = default;
    Buffer(Buffer&& other) noexcept;
    Buffer& operator=(Buffer&& other) noexcept;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { reset(); }

    [[nodiscard]] bool valid() const noexcept { return pool_ != nullptr; }
    [[nodiscard]] std::uint64_t guest_addr() const noexcept;
    [[nodiscard]] std::uint32_t size() const noexcept { return size_; }
    // Our view of the bytes (what the device sees at guest_addr()).
    [[nodiscard]] std::span<std::byte> bytes() const noexcept;

    // The whole buffer as one descriptor.
    [[nodiscard]] virtq::GuestBuffer whole() const noexcept { return {guest_addr(), size_}; }
    // [offset, offset + len) of the buffer as one descriptor; EINVAL if it
    // does not lie inside.
    [[nodiscard]] Result<virtq::GuestBuffer> slice(std::uint64_t offset, std::uint64_t len) const;

    // Frees now (a no-op for an empty Buffer).
    void reset() noexcept;

  private:
    friend class GuestPool;
    Buffer(std::shared_ptr<GuestPool> pool, std::uint64_t offset, std::uint32_t size)
        : pool_(std::move(pool)), offset_(offset), size_(size)
    {
    }

    std::shared_ptr<GuestPool> pool_;
    std::uint64_t offset_ = 0; // from the start of the pool
    std::uint32_t size_ = 0;
};

} // namespace vl::test_driver
