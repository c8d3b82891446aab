// SPDX-License-Identifier: Apache-2.0
#include "backend/memory_table.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <limits>

namespace vl::backend
{

namespace
{

std::string describe(const vhost_user::MemoryRegion& r)
{
    return fmt::format("memory region at guest {:#x} (size {:#x}, user address {:#x}, mmap "
                       "offset {:#x})",
                       r.guest_phys_addr, r.memory_size, r.userspace_addr, r.mmap_offset);
}

// A region that names bytes past the end of its file would map, and then
// fault (SIGBUS) on first access: refuse it up front.
Status check_inside_file(const vhost_user::RegionFd& r)
{
    struct stat st {
    };
    if (::fstat(r.fd.get(), &st) < 0)
        return Error::from_errno("fstat of the fd of " + describe(r.region));
    if (!S_ISREG(st.st_mode))
        return ok_status();
    const auto file_size = static_cast<std::uint64_t>(st.st_size);
    // mmap_offset + memory_size does not overflow: the codec checked it.
    const std::uint64_t end = r.region.mmap_offset + r.region.memory_size;
    if (end > file_size)
        return Error(fmt::format("{} ends at byte {:#x} of its file, but the file has only "
                                 "{:#x} bytes",
                                 describe(r.region), end, file_size),
                     EINVAL);
    return ok_status();
}

} // namespace

Result<MemoryTable::Mapped> MemoryTable::map_region(const vhost_user::RegionFd& r)
{
    if (!r.fd.valid())
        return Error(describe(r.region) + " has no fd", EBADF);
    VL_TRY(check_inside_file(r));
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t aligned_offset = r.region.mmap_offset / page * page;
    const std::uint64_t lead = r.region.mmap_offset - aligned_offset;
    if (r.region.memory_size > std::numeric_limits<std::size_t>::max() - lead)
        return Error(describe(r.region) + " is too large to map", EINVAL);
    const auto length = static_cast<std::size_t>(lead + r.region.memory_size);
    auto mapping = Mapping::map(r.fd.get(), length, aligned_offset);
    if (!mapping)
        return mapping.error().wrap("cannot map " + describe(r.region));
    return Mapped{r.region, std::move(mapping).value(), static_cast<std::size_t>(lead)};
}

Status MemoryTable::add_mapped(Mapped mapped)
{
    virtq::MemoryRegion region{mapped.region.guest_phys_addr, mapped.region.memory_size,
                               mapped.mapping.data() + mapped.lead, mapped.region.userspace_addr};
    VL_TRY(guest_.add_region(region));
    mapped_.push_back(std::move(mapped));
    return ok_status();
}

Result<MemoryTable> MemoryTable::map(std::vector<vhost_user::RegionFd> regions)
{
    MemoryTable table;
    for (const vhost_user::RegionFd& r : regions) {
        VL_TRY_ASSIGN(Mapped mapped, map_region(r));
        VL_TRY(table.add_mapped(std::move(mapped)));
    }
    return table;
}

Status MemoryTable::add(vhost_user::RegionFd region, std::size_t max_regions)
{
    if (mapped_.size() >= max_regions)
        return Error(fmt::format("cannot add {}: all {} memory slots are in use",
                                 describe(region.region), max_regions),
                     ENOSPC);
    VL_TRY_ASSIGN(Mapped mapped, map_region(region));
    return add_mapped(std::move(mapped));
}

Status MemoryTable::remove(const vhost_user::MemoryRegion& region)
{
    auto it = std::find_if(mapped_.begin(), mapped_.end(), [&](const Mapped& m) {
        return m.region.guest_phys_addr == region.guest_phys_addr &&
               m.region.userspace_addr == region.userspace_addr &&
               m.region.memory_size == region.memory_size;
    });
    if (it == mapped_.end())
        return Error("cannot remove " + describe(region) + ": no such region is mapped", ENOENT);
    VL_TRY(guest_.remove_region(region.guest_phys_addr, region.memory_size));
    mapped_.erase(it);
    return ok_status();
}

} // namespace vl::backend
