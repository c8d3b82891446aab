// SPDX-License-Identifier: Apache-2.0
// The front-end's memory as the back-end maps it: every region of
// SET_MEM_TABLE / ADD_MEM_REG mmap()ed from its fd at its mmap_offset, and
// the GuestMemory that translates guest and front-end user addresses into
// those mappings.
#pragma once

#include <cstddef>
#include <vector>

#include "base/mapping.hpp"
#include "base/result.hpp"
#include "vhost_user/message.hpp"
#include "vhost_user/protocol.hpp"
#include "virtqueue/guest_memory.hpp"

namespace vl::backend
{

// Owns the mappings. Regions must not overlap (in guest or in user address
// space) and must lie inside their file when the fd is a regular file
// (memfd, tmpfs, hugetlbfs); for other fds (a DMA window) only mmap()
// itself can check. Any layout is accepted otherwise: any number of
// regions up to the limit, gaps, any order, unaligned offsets.
//
// Not thread-safe; the session changes it only while no queue runs.
class MemoryTable
{
  public:
    MemoryTable() = default;
    MemoryTable(MemoryTable&&) noexcept = default;
    MemoryTable& operator=(MemoryTable&&) noexcept = default;
    MemoryTable(const MemoryTable&) = delete;
    MemoryTable& operator=(const MemoryTable&) = delete;
    ~MemoryTable() = default;

    // Maps a whole table (SET_MEM_TABLE). The fds are closed afterwards
    // (the mappings keep the memory). Nothing is kept on error.
    static Result<MemoryTable> map(std::vector<vhost_user::RegionFd> regions);

    // ADD_MEM_REG: maps one more region; at most `max_regions` in all.
    Status add(vhost_user::RegionFd region, std::size_t max_regions);
    // REM_MEM_REG: unmaps the region with this guest address, user address
    // and size (the mmap offset is ignored, as the spec says).
    Status remove(const vhost_user::MemoryRegion& region);

    [[nodiscard]] const virtq::GuestMemory& guest() const noexcept { return guest_; }
    [[nodiscard]] std::size_t region_count() const noexcept { return mapped_.size(); }
    [[nodiscard]] bool empty() const noexcept { return mapped_.empty(); }

  private:
    struct Mapped {
        vhost_user::MemoryRegion region;
        Mapping mapping;
        std::size_t lead = 0; // bytes mapped before the region (page alignment)
    };

    static Result<Mapped> map_region(const vhost_user::RegionFd& region);
    Status add_mapped(Mapped mapped);

    std::vector<Mapped> mapped_;
    virtq::GuestMemory guest_;
};

} // namespace vl::backend
