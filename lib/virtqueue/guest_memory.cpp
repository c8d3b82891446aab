// SPDX-License-Identifier: Apache-2.0
#include "virtqueue/guest_memory.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

namespace vl::virtq
{

namespace
{

constexpr std::uint64_t kMaxU64 = std::numeric_limits<std::uint64_t>::max();

// True if [start, start + len) with len > 0 wraps past 2^64.
bool range_wraps(std::uint64_t start, std::uint64_t len)
{
    return len - 1 > kMaxU64 - start;
}

// True if [a, a + a_len) and [b, b + b_len) share a byte (both lengths > 0,
// neither wraps).
bool ranges_overlap(std::uint64_t a, std::uint64_t a_len, std::uint64_t b, std::uint64_t b_len)
{
    return a <= b + (b_len - 1) && b <= a + (a_len - 1);
}

// True if [inner, inner + inner_len) lies inside [outer, outer + outer_len).
bool range_inside(std::uint64_t inner, std::uint64_t inner_len, std::uint64_t outer,
                  std::uint64_t outer_len)
{
    return inner >= outer && inner - outer <= outer_len - 1 &&
           inner_len - 1 <= (outer_len - 1) - (inner - outer);
}

std::string describe_range(std::uint64_t addr, std::uint64_t len)
{
    return fmt::format("[{:#x}, +{:#x})", addr, len);
}

Status validate_region(const MemoryRegion& r)
{
    if (r.size == 0)
        return Error(fmt::format("memory region at guest {:#x} has size 0", r.guest_addr), EINVAL);
    if (r.host == nullptr)
        return Error(fmt::format("memory region at guest {:#x} has no host mapping", r.guest_addr),
                     EINVAL);
    if (range_wraps(r.guest_addr, r.size))
        return Error("memory region guest range " + describe_range(r.guest_addr, r.size) +
                         " wraps around the 64-bit address space",
                     EINVAL);
    if (r.user_addr && range_wraps(*r.user_addr, r.size))
        return Error("memory region user range " + describe_range(*r.user_addr, r.size) +
                         " wraps around the 64-bit address space",
                     EINVAL);
    auto host = reinterpret_cast<std::uintptr_t>(r.host);
    if (r.size - 1 > std::numeric_limits<std::uintptr_t>::max() - host)
        return Error("memory region host mapping wraps around the address space", EINVAL);
    return ok_status();
}

} // namespace

Status GuestMemory::add_region(const MemoryRegion& region)
{
    VL_TRY(validate_region(region));
    for (const MemoryRegion& r : regions_) {
        if (ranges_overlap(region.guest_addr, region.size, r.guest_addr, r.size))
            return Error("memory region " + describe_range(region.guest_addr, region.size) +
                             " overlaps region " + describe_range(r.guest_addr, r.size),
                         EINVAL);
        if (region.user_addr && r.user_addr &&
            ranges_overlap(*region.user_addr, region.size, *r.user_addr, r.size))
            return Error("memory region user range " +
                             describe_range(*region.user_addr, region.size) +
                             " overlaps user range " + describe_range(*r.user_addr, r.size),
                         EINVAL);
    }
    auto pos = std::upper_bound(
        regions_.begin(), regions_.end(), region.guest_addr,
        [](std::uint64_t addr, const MemoryRegion& r) { return addr < r.guest_addr; });
    regions_.insert(pos, region);
    return ok_status();
}

Status GuestMemory::remove_region(std::uint64_t guest_addr, std::uint64_t size)
{
    auto it = std::find_if(regions_.begin(), regions_.end(), [&](const MemoryRegion& r) {
        return r.guest_addr == guest_addr && r.size == size;
    });
    if (it == regions_.end())
        return Error("no memory region " + describe_range(guest_addr, size) + " to remove", ENOENT);
    regions_.erase(it);
    return ok_status();
}

const MemoryRegion* GuestMemory::find(std::uint64_t guest_addr) const noexcept
{
    auto it = std::upper_bound(
        regions_.begin(), regions_.end(), guest_addr,
        [](std::uint64_t addr, const MemoryRegion& r) { return addr < r.guest_addr; });
    if (it == regions_.begin())
        return nullptr;
    --it;
    return guest_addr <= it->guest_last() ? &*it : nullptr;
}

Status GuestMemory::translate(std::uint64_t guest_addr, std::uint64_t len, HostBuffers& out) const
{
    if (len == 0)
        return ok_status();
    if (range_wraps(guest_addr, len))
        return Error("guest range " + describe_range(guest_addr, len) +
                         " wraps around the 64-bit address space",
                     EFAULT);
    const std::size_t original_size = out.size();
    std::uint64_t cur = guest_addr;
    std::uint64_t remaining = len;
    // Each step consumes the rest of one region, so this runs at most once
    // per region.
    while (remaining > 0) {
        const MemoryRegion* r = find(cur);
        if (r == nullptr) {
            out.resize(original_size);
            return Error(
                fmt::format("guest range {} is outside guest memory (no region holds {:#x})",
                            describe_range(guest_addr, len), cur),
                EFAULT);
        }
        const std::uint64_t offset = cur - r->guest_addr;
        const std::uint64_t n = std::min(remaining, r->size - offset);
        out.emplace_back(r->host + offset, static_cast<std::size_t>(n));
        remaining -= n;
        cur += n; // no overflow: the whole range was checked not to wrap
    }
    return ok_status();
}

Result<HostBuffers> GuestMemory::translate(std::uint64_t guest_addr, std::uint64_t len) const
{
    HostBuffers out;
    VL_TRY(translate(guest_addr, len, out));
    return out;
}

Result<std::span<std::byte>> GuestMemory::translate_contiguous(std::uint64_t guest_addr,
                                                               std::uint64_t len) const
{
    if (len == 0)
        return Error("empty guest range at " + fmt::format("{:#x}", guest_addr), EINVAL);
    const MemoryRegion* r = find(guest_addr);
    if (r == nullptr || range_wraps(guest_addr, len) ||
        !range_inside(guest_addr, len, r->guest_addr, r->size))
        return Error("guest range " + describe_range(guest_addr, len) +
                         " is not inside one guest memory region",
                     EFAULT);
    return std::span<std::byte>(r->host + (guest_addr - r->guest_addr),
                                static_cast<std::size_t>(len));
}

Result<std::uint64_t> GuestMemory::user_to_guest(std::uint64_t user_addr, std::uint64_t len) const
{
    if (len == 0)
        return Error("empty user range at " + fmt::format("{:#x}", user_addr), EINVAL);
    if (!range_wraps(user_addr, len)) {
        for (const MemoryRegion& r : regions_) {
            if (r.user_addr && range_inside(user_addr, len, *r.user_addr, r.size))
                return r.guest_addr + (user_addr - *r.user_addr);
        }
    }
    return Error("front-end address range " + describe_range(user_addr, len) +
                     " is not inside one memory region",
                 EFAULT);
}

Result<std::span<std::byte>> GuestMemory::translate_user_addr(std::uint64_t user_addr,
                                                              std::uint64_t len) const
{
    VL_TRY_ASSIGN(std::uint64_t guest_addr, user_to_guest(user_addr, len));
    return translate_contiguous(guest_addr, len);
}

Status GuestMemory::read(std::uint64_t guest_addr, std::span<std::byte> out) const
{
    VL_TRY_ASSIGN(HostBuffers spans, translate(guest_addr, out.size()));
    copy_from_buffers(spans, 0, out);
    return ok_status();
}

Status GuestMemory::write(std::uint64_t guest_addr, std::span<const std::byte> in) const
{
    VL_TRY_ASSIGN(HostBuffers spans, translate(guest_addr, in.size()));
    copy_to_buffers(spans, 0, in);
    return ok_status();
}

std::size_t copy_from_buffers(std::span<const std::span<std::byte>> buffers, std::size_t offset,
                              std::span<std::byte> out) noexcept
{
    std::size_t copied = 0;
    for (std::span<std::byte> b : buffers) {
        if (copied == out.size())
            break;
        if (offset >= b.size()) {
            offset -= b.size();
            continue;
        }
        const std::size_t n = std::min(b.size() - offset, out.size() - copied);
        std::memcpy(out.data() + copied, b.data() + offset, n);
        copied += n;
        offset = 0;
    }
    return copied;
}

std::size_t copy_to_buffers(std::span<const std::span<std::byte>> buffers, std::size_t offset,
                            std::span<const std::byte> in) noexcept
{
    std::size_t copied = 0;
    for (std::span<std::byte> b : buffers) {
        if (copied == in.size())
            break;
        if (offset >= b.size()) {
            offset -= b.size();
            continue;
        }
        const std::size_t n = std::min(b.size() - offset, in.size() - copied);
        std::memcpy(b.data() + offset, in.data() + copied, n);
        copied += n;
        offset = 0;
    }
    return copied;
}

} // namespace vl::virtq
