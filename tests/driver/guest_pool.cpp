// SPDX-License-Identifier: Apache-2.0
#include "guest_pool.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>

namespace vl::test_driver
{

namespace
{

constexpr std::uint64_t align_up(std::uint64_t value, std::uint64_t align)
{
    return (value + align - 1) & ~(align - 1);
}

} // namespace

// ---------------------------------------------------------------------------
// RangeAllocator

RangeAllocator::RangeAllocator(std::uint64_t capacity) : capacity_(capacity), bytes_free_(capacity)
{
    if (capacity != 0)
        free_.emplace(0, capacity);
}

std::uint64_t RangeAllocator::largest_free_range() const noexcept
{
    std::uint64_t largest = 0;
    for (const auto& [offset, size] : free_)
        largest = std::max(largest, size);
    return largest;
}

Result<std::uint64_t> RangeAllocator::allocate(std::uint64_t size, std::uint64_t align)
{
    if (size == 0)
        return Error("cannot allocate 0 bytes of guest memory", EINVAL);
    if (!std::has_single_bit(align))
        return Error(fmt::format("alignment {} is not a power of two", align), EINVAL);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
        const std::uint64_t start = it->first;
        const std::uint64_t end = start + it->second;
        if (align - 1 > std::numeric_limits<std::uint64_t>::max() - start)
            break; // aligning would wrap; no later range can do better
        const std::uint64_t aligned = align_up(start, align);
        if (aligned > end || end - aligned < size)
            continue;
        // Carve [aligned, aligned + size) out; keep what is left on each side.
        free_.erase(it);
        if (aligned > start)
            free_.emplace(start, aligned - start);
        if (aligned + size < end)
            free_.emplace(aligned + size, end - (aligned + size));
        used_.emplace(aligned, size);
        bytes_free_ -= size;
        return aligned;
    }
    return Error(fmt::format("out of guest memory: no free range of {} bytes aligned to {} "
                             "({} of {} bytes free, largest free range {} bytes); use a larger "
                             "memory size or fewer requests in flight",
                             size, align, bytes_free_, capacity_, largest_free_range()),
                 ENOMEM);
}

Status RangeAllocator::free(std::uint64_t offset)
{
    auto used = used_.find(offset);
    if (used == used_.end())
        return Error(
            fmt::format("guest memory at offset {:#x} is not allocated (double free?)", offset),
            EINVAL);
    std::uint64_t start = offset;
    std::uint64_t size = used->second;
    used_.erase(used);
    bytes_free_ += size;

    // Merge with the free neighbours so fragments do not accumulate.
    auto next = free_.lower_bound(start);
    if (next != free_.end() && start + size == next->first) {
        size += next->second;
        next = free_.erase(next);
    }
    if (next != free_.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second == start) {
            start = prev->first;
            size += prev->second;
            free_.erase(prev);
        }
    }
    free_.emplace(start, size);
    return ok_status();
}

// ---------------------------------------------------------------------------
// GuestPool

GuestPool::GuestPool(UniqueFd fd, Mapping mapping, std::uint64_t guest_base)
    : fd_(std::move(fd)), mapping_(std::move(mapping)), guest_base_(guest_base),
      allocator_(mapping_.size())
{
}

Result<std::shared_ptr<GuestPool>> GuestPool::create(std::uint64_t size, std::uint64_t guest_base,
                                                     Backing backing)
{
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    if (size == 0 || size > (std::uint64_t{1} << 40))
        return Error(fmt::format("guest memory size {} is out of range (1 byte to 1 TiB)", size),
                     EINVAL);
    if (guest_base % page != 0)
        return Error(fmt::format("guest base {:#x} is not page-aligned", guest_base), EINVAL);
    const std::uint64_t bytes = align_up(size, page);
    if (bytes - 1 > std::numeric_limits<std::uint64_t>::max() - guest_base)
        return Error(
            fmt::format("guest memory of {} bytes at {:#x} wraps around", bytes, guest_base),
            EINVAL);

    // A memfd because the back-end must map the same pages: vhost-user
    // shares memory by fd, so anonymous memory would not do.
    UniqueFd fd;
    if (backing == Backing::unpinnable) {
#ifdef SYS_memfd_secret
        fd.reset(static_cast<int>(::syscall(SYS_memfd_secret, O_CLOEXEC)));
#else
        errno = ENOSYS;
#endif
        if (!fd)
            return Error::from_errno("memfd_secret for unpinnable guest memory");
    } else {
        fd.reset(::memfd_create("vl-test-driver-guest", MFD_CLOEXEC));
        if (!fd)
            return Error::from_errno("memfd_create for guest memory");
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) < 0)
        return Error::from_errno(fmt::format("ftruncate of guest memory to {} bytes", bytes));
    VL_TRY_ASSIGN(Mapping mapping, Mapping::map(fd.get(), static_cast<std::size_t>(bytes), 0));
    return std::shared_ptr<GuestPool>(new GuestPool(std::move(fd), std::move(mapping), guest_base));
}

std::uint64_t GuestPool::user_addr() const noexcept
{
    return reinterpret_cast<std::uintptr_t>(mapping_.data());
}

Result<Buffer> GuestPool::allocate(std::uint64_t size, std::uint64_t align)
{
    if (size > std::numeric_limits<std::uint32_t>::max())
        return Error(fmt::format("a buffer of {} bytes is larger than one descriptor can "
                                 "address (2^32 - 1)",
                                 size),
                     EINVAL);
    std::uint64_t offset = 0;
    {
        std::lock_guard lock(mutex_);
        VL_TRY_ASSIGN(offset, allocator_.allocate(size, align));
    }
    // Guest and host addresses are aligned alike: the base is page-aligned
    // and the mapping starts on a page.
    std::memset(mapping_.data() + offset, 0, static_cast<std::size_t>(size));
    return Buffer(shared_from_this(), offset, static_cast<std::uint32_t>(size));
}

std::uint64_t GuestPool::bytes_free() const
{
    std::lock_guard lock(mutex_);
    return allocator_.bytes_free();
}

void GuestPool::release(std::uint64_t offset) noexcept
{
    std::lock_guard lock(mutex_);
    // Cannot fail for an offset a Buffer holds: each Buffer owns its range.
    (void)allocator_.free(offset);
}

// ---------------------------------------------------------------------------
// Buffer

Buffer::Buffer(Buffer&& other) noexcept
    : pool_(std::move(other.pool_)), offset_(std::exchange(other.offset_, 0)),
      size_(std::exchange(other.size_, 0))
{
}

Buffer& Buffer::operator=(Buffer&& other) noexcept
{
    if (this != &other) {
        reset();
        pool_ = std::move(other.pool_);
        offset_ = std::exchange(other.offset_, 0);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

void Buffer::reset() noexcept
{
    if (pool_)
        pool_->release(offset_);
    pool_.reset();
    offset_ = 0;
    size_ = 0;
}

std::uint64_t Buffer::guest_addr() const noexcept
{
    return pool_ ? pool_->guest_base() + offset_ : 0;
}

std::span<std::byte> Buffer::bytes() const noexcept
{
    if (!pool_)
        return {};
    return pool_->bytes().subspan(static_cast<std::size_t>(offset_), size_);
}

Result<virtq::GuestBuffer> Buffer::slice(std::uint64_t offset, std::uint64_t len) const
{
    if (offset > size_ || len > size_ - offset)
        return Error(
            fmt::format("slice [{}, +{}) is outside a buffer of {} bytes", offset, len, size_),
            EINVAL);
    return virtq::GuestBuffer{guest_addr() + offset, static_cast<std::uint32_t>(len)};
}

} // namespace vl::test_driver
