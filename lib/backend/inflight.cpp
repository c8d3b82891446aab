// SPDX-License-Identifier: Apache-2.0
#include "backend/inflight.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>

namespace vl::backend
{

namespace
{

// QueueRegionSplit
constexpr std::size_t kHeaderSize = 16;
constexpr std::size_t kVersionOffset = 8;
constexpr std::size_t kDescNumOffset = 10;
constexpr std::size_t kLastBatchHeadOffset = 12;
constexpr std::size_t kUsedIdxOffset = 14;
constexpr std::uint16_t kVersion = 1;
// DescStateSplit
constexpr std::size_t kEntrySize = 16;
constexpr std::size_t kInflightOffset = 0;
constexpr std::size_t kNextOffset = 6;
constexpr std::size_t kCounterOffset = 8;

constexpr std::uint64_t kRegionAlign = 64;

template <class T> T load(const std::byte* p)
{
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}
template <class T> void store(std::byte* p, T v)
{
    std::memcpy(p, &v, sizeof(T));
}

// The stores into the buffer must reach memory in program order relative
// to the used ring's (ordered) index store; only the compiler could
// reorder them, since a crash of this process loses no CPU store.
void keep_order()
{
    std::atomic_signal_fence(std::memory_order_seq_cst);
}

void init_region(std::span<std::byte> region, std::uint16_t desc_num)
{
    std::memset(region.data(), 0, region.size());
    store<std::uint16_t>(region.data() + kVersionOffset, kVersion);
    store<std::uint16_t>(region.data() + kDescNumOffset, desc_num);
}

} // namespace

std::uint64_t inflight_queue_region_size(std::uint16_t queue_size)
{
    const std::uint64_t bytes = kHeaderSize + std::uint64_t{kEntrySize} * queue_size;
    return (bytes + kRegionAlign - 1) / kRegionAlign * kRegionAlign;
}

// ---------------------------------------------------------------------------
// InflightQueue

InflightQueue::InflightQueue(std::span<std::byte> region, std::uint16_t desc_num)
    : region_(region), desc_num_(desc_num)
{
}

std::byte* InflightQueue::entry(std::uint16_t head) const
{
    return region_.data() + kHeaderSize + std::size_t{head} * kEntrySize;
}

bool InflightQueue::in_flight(std::uint16_t head) const
{
    return head < desc_num_ && load<std::uint8_t>(entry(head) + kInflightOffset) != 0;
}

std::uint16_t InflightQueue::recorded_used_idx() const
{
    return load<std::uint16_t>(region_.data() + kUsedIdxOffset);
}

Result<std::vector<std::uint16_t>> InflightQueue::recover(std::uint16_t used_idx,
                                                          std::uint32_t ring_size)
{
    std::byte* header = region_.data();
    const std::uint16_t recorded = recorded_used_idx();
    bool any_in_flight = false;
    for (std::uint32_t head = 0; head < desc_num_ && !any_in_flight; ++head)
        any_in_flight = in_flight(static_cast<std::uint16_t>(head));
    // With nothing in flight there is nothing to correct (a buffer that was
    // never used, or one attached to a ring that has run meanwhile): adopt
    // the ring's index.
    if (recorded != used_idx && any_in_flight) {
        // A batch was published to the used ring but the crash came before
        // it was recorded here: those chains are done.
        const auto batch = static_cast<std::uint16_t>(used_idx - recorded);
        if (batch > desc_num_)
            return Error(fmt::format("inflight buffer: the used ring is {} entries past the "
                                     "recorded used index {}, more than the {} entries tracked",
                                     batch, recorded, desc_num_),
                         EINVAL);
        std::uint16_t head = load<std::uint16_t>(header + kLastBatchHeadOffset);
        for (std::uint16_t i = 0; i < batch; ++i) {
            if (head >= desc_num_)
                return Error(fmt::format("inflight buffer: the last batch names head {}, "
                                         "outside the {} entries",
                                         head, desc_num_),
                             EINVAL);
            store<std::uint8_t>(entry(head) + kInflightOffset, 0);
            head = load<std::uint16_t>(entry(head) + kNextOffset);
        }
    }
    store<std::uint16_t>(header + kUsedIdxOffset, used_idx);

    std::vector<std::pair<std::uint64_t, std::uint16_t>> found; // (counter, head)
    std::uint64_t max_counter = 0;
    for (std::uint32_t head = 0; head < desc_num_; ++head) {
        const auto h = static_cast<std::uint16_t>(head);
        if (load<std::uint8_t>(entry(h) + kInflightOffset) == 0)
            continue;
        if (head >= ring_size)
            return Error(fmt::format("inflight buffer: head {} is in flight but the ring has "
                                     "only {} entries",
                                     head, ring_size),
                         EINVAL);
        const auto counter = load<std::uint64_t>(entry(h) + kCounterOffset);
        found.emplace_back(counter, h);
        max_counter = std::max(max_counter, counter);
    }
    std::sort(found.begin(), found.end());
    next_counter_ = max_counter + 1;
    std::vector<std::uint16_t> heads;
    heads.reserve(found.size());
    for (const auto& [counter, head] : found)
        heads.push_back(head);
    return heads;
}

void InflightQueue::on_popped(std::uint16_t head)
{
    if (head >= desc_num_)
        return;
    keep_order();
    store<std::uint64_t>(entry(head) + kCounterOffset, next_counter_++);
    store<std::uint8_t>(entry(head) + kInflightOffset, 1);
    keep_order();
}

void InflightQueue::on_pushing(std::uint16_t head)
{
    if (head >= desc_num_)
        return;
    keep_order();
    std::byte* header = region_.data();
    store<std::uint16_t>(entry(head) + kNextOffset,
                         load<std::uint16_t>(header + kLastBatchHeadOffset));
    store<std::uint16_t>(header + kLastBatchHeadOffset, head);
    keep_order();
}

void InflightQueue::on_pushed(std::uint16_t head, std::uint16_t used_idx)
{
    if (head >= desc_num_)
        return;
    keep_order();
    store<std::uint8_t>(entry(head) + kInflightOffset, 0);
    store<std::uint16_t>(region_.data() + kUsedIdxOffset, used_idx);
    keep_order();
}

// ---------------------------------------------------------------------------
// InflightBuffer

Status InflightBuffer::check_geometry(std::uint16_t num_queues, std::uint16_t queue_size)
{
    if (num_queues == 0)
        return Error("inflight buffer for 0 queues", EINVAL);
    if (queue_size == 0 || !std::has_single_bit(queue_size))
        return Error(fmt::format("inflight buffer queue size {} is not a power of two", queue_size),
                     EINVAL);
    return ok_status();
}

std::span<std::byte> InflightBuffer::region(std::uint16_t index) const
{
    const auto size = static_cast<std::size_t>(inflight_queue_region_size(queue_size_));
    return {mapping_.data() + lead_ + std::size_t{index} * size, size};
}

InflightQueue InflightBuffer::queue(std::uint16_t index) const
{
    return InflightQueue(region(index), queue_size_);
}

Status InflightBuffer::prepare_regions()
{
    for (std::uint16_t q = 0; q < num_queues_; ++q) {
        std::span<std::byte> r = region(q);
        const auto version = load<std::uint16_t>(r.data() + kVersionOffset);
        const auto desc_num = load<std::uint16_t>(r.data() + kDescNumOffset);
        if (version == 0) {
            init_region(r, queue_size_);
            continue;
        }
        if (version != kVersion)
            return Error(fmt::format("inflight buffer: queue {} has region version {}, this "
                                     "back-end knows version {}",
                                     q, version, kVersion),
                         EINVAL);
        if (desc_num != queue_size_)
            return Error(fmt::format("inflight buffer: queue {} tracks {} entries, but the "
                                     "buffer is described with queue size {}",
                                     q, desc_num, queue_size_),
                         EINVAL);
    }
    return ok_status();
}

Result<std::pair<InflightBuffer, UniqueFd>> InflightBuffer::create(std::uint16_t num_queues,
                                                                   std::uint16_t queue_size)
{
    VL_TRY(check_geometry(num_queues, queue_size));
    const std::uint64_t size = inflight_queue_region_size(queue_size) * num_queues;
    UniqueFd fd(::memfd_create("vhost-user-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd)
        return Error::from_errno("memfd_create for the inflight buffer");
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0)
        return Error::from_errno("ftruncate of the inflight buffer");
    // The size must stay: the front-end and later back-ends map it.
    (void)::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
    VL_TRY_ASSIGN(Mapping mapping, Mapping::map(fd.get(), static_cast<std::size_t>(size), 0));
    InflightBuffer buffer;
    buffer.mapping_ = std::move(mapping);
    buffer.num_queues_ = num_queues;
    buffer.queue_size_ = queue_size;
    buffer.description_ = {size, 0, num_queues, queue_size, 0};
    VL_TRY(buffer.prepare_regions()); // the memfd is zero: initializes every region
    return std::pair<InflightBuffer, UniqueFd>(std::move(buffer), std::move(fd));
}

Result<InflightBuffer> InflightBuffer::map(const vhost_user::InflightDescription& d, int fd)
{
    VL_TRY(check_geometry(d.num_queues, d.queue_size));
    const std::uint64_t needed = inflight_queue_region_size(d.queue_size) * d.num_queues;
    if (d.mmap_size < needed)
        return Error(fmt::format("inflight buffer of {} bytes is too small for {} queues of {} "
                                 "entries ({} bytes)",
                                 d.mmap_size, d.num_queues, d.queue_size, needed),
                     EINVAL);
    struct stat st {
    };
    if (::fstat(fd, &st) < 0)
        return Error::from_errno("fstat of the inflight buffer fd");
    if (S_ISREG(st.st_mode) && (d.mmap_offset > static_cast<std::uint64_t>(st.st_size) ||
                                needed > static_cast<std::uint64_t>(st.st_size) - d.mmap_offset))
        return Error(fmt::format("inflight buffer at offset {:#x} needs {:#x} bytes, but its "
                                 "file has only {:#x}",
                                 d.mmap_offset, needed, st.st_size),
                     EINVAL);
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t aligned = d.mmap_offset / page * page;
    const std::uint64_t lead = d.mmap_offset - aligned;
    VL_TRY_ASSIGN(Mapping mapping,
                  Mapping::map(fd, static_cast<std::size_t>(lead + needed), aligned));
    InflightBuffer buffer;
    buffer.mapping_ = std::move(mapping);
    buffer.lead_ = static_cast<std::size_t>(lead);
    buffer.num_queues_ = d.num_queues;
    buffer.queue_size_ = d.queue_size;
    buffer.description_ = d;
    VL_TRY(buffer.prepare_regions());
    return buffer;
}

} // namespace vl::backend
