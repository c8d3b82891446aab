// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.hpp"

namespace vl::virtq
{

// A list of host byte ranges that together make up one guest buffer.
using HostBuffers = std::vector<std::span<std::byte>>;

// One range of guest memory and where it is mapped in this process.
struct MemoryRegion {
    std::uint64_t guest_addr = 0; // guest physical address (or IOVA / window offset)
    std::uint64_t size = 0;       // bytes, > 0
    std::byte* host = nullptr;    // our mapping of the first byte; not owned
    // The front-end's virtual address of the first byte (vhost-user
    // userspace_addr), used only to translate ring addresses from
    // VHOST_USER_SET_VRING_ADDR. Empty when not applicable.
    std::optional<std::uint64_t> user_addr;

    [[nodiscard]] std::uint64_t guest_last() const noexcept { return guest_addr + (size - 1); }
};

// The guest memory a virtqueue's descriptors point into: a set of
// non-overlapping regions. It does not own the mappings; whoever maps them
// (the vhost-user memory table, the test device's window) keeps them alive
// for as long as this object and every queue and chain made from it are used.
//
// All translations check bounds and 64-bit overflow, and never return bytes
// outside a region. Translations that cross regions:
//  - translate() accepts a guest range that straddles regions which are
//    adjacent in guest address space, and returns one host span per region
//    touched (descriptor buffers may do that);
//  - translate_contiguous() and the ring/user-address functions require the
//    range to lie within one region, because rings are accessed as one
//    contiguous host array.
//
// Not thread-safe for modification; const methods may be called from many
// threads at once while no one modifies it.
class GuestMemory
{
  public:
    GuestMemory() = default;

    // Adds a region. Fails if it is empty, wraps around the 64-bit guest or
    // user address space or the host address space, has a null host pointer,
    // or overlaps an existing region in guest (or, when both have one, user)
    // address space.
    Status add_region(const MemoryRegion& region);

    // Removes the region that starts at `guest_addr` and has `size` bytes
    // (vhost-user VHOST_USER_REM_MEM_REG identifies regions this way).
    Status remove_region(std::uint64_t guest_addr, std::uint64_t size);

    void clear() noexcept { regions_.clear(); }

    // The regions, sorted by guest address.
    [[nodiscard]] std::span<const MemoryRegion> regions() const noexcept { return regions_; }

    // Appends to `out` the host spans backing guest [addr, addr + len); one
    // span per region touched. len == 0 succeeds and appends nothing. On
    // error `out` is left as it was.
    Status translate(std::uint64_t guest_addr, std::uint64_t len, HostBuffers& out) const;

    // As above, returning a new list.
    Result<HostBuffers> translate(std::uint64_t guest_addr, std::uint64_t len) const;

    // The host span for guest [addr, addr + len), which must lie inside one
    // region. len must be > 0.
    Result<std::span<std::byte>> translate_contiguous(std::uint64_t guest_addr,
                                                      std::uint64_t len) const;

    // vhost-user: the guest address of front-end virtual address
    // `user_addr`, whose `len` bytes must lie inside one region that has a
    // user address.
    Result<std::uint64_t> user_to_guest(std::uint64_t user_addr, std::uint64_t len) const;

    // vhost-user: the host span of front-end virtual range
    // [user_addr, user_addr + len), inside one region.
    Result<std::span<std::byte>> translate_user_addr(std::uint64_t user_addr,
                                                     std::uint64_t len) const;

    // Copies guest [addr, addr + out.size()) into `out` / `in` into guest
    // memory, across adjacent regions. Nothing is copied on error.
    Status read(std::uint64_t guest_addr, std::span<std::byte> out) const;
    Status write(std::uint64_t guest_addr, std::span<const std::byte> in) const;

  private:
    // The region containing `guest_addr`, or nullptr.
    [[nodiscard]] const MemoryRegion* find(std::uint64_t guest_addr) const noexcept;

    std::vector<MemoryRegion> regions_; // sorted by guest_addr, non-overlapping
};

// Copies bytes from the concatenation of `buffers`, starting `offset` bytes
// in, into `out`; returns how many were copied (less than out.size() if
// the buffers end first).
std::size_t copy_from_buffers(std::span<const std::span<std::byte>> buffers, std::size_t offset,
                              std::span<std::byte> out) noexcept;

// Copies `in` into the concatenation of `buffers` starting `offset` bytes in;
// returns how many were copied.
std::size_t copy_to_buffers(std::span<const std::span<std::byte>> buffers, std::size_t offset,
                            std::span<const std::byte> in) noexcept;

} // namespace vl::virtq
