// SPDX-License-Identifier: Apache-2.0
#include "virtqueue/split_driver.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>

namespace vl::virtq
{

namespace
{

constexpr std::uint64_t kPartAlign = 64; // one cache line

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t align)
{
    return (v + align - 1) / align * align;
}

// Sum of the buffers' lengths, or an error above 2^32 - 1 (the used
// element's length field and the spec's chain limit).
Result<std::uint32_t> total_length(std::span<const GuestBuffer> buffers, std::uint64_t start)
{
    std::uint64_t total = start;
    for (const GuestBuffer& b : buffers)
        total += b.len;
    if (total > std::numeric_limits<std::uint32_t>::max())
        return Error(fmt::format("chain of {} bytes is longer than 2^32 - 1", total), EINVAL);
    return static_cast<std::uint32_t>(total);
}

} // namespace

Result<RingLayout> RingLayout::compute(const DriverConfig& config)
{
    if (!valid_queue_size(config.size))
        return Error(fmt::format("queue size {} is not a power of two between 1 and {}",
                                 config.size, kMaxQueueSize),
                     EINVAL);
    if (config.indirect_entries > kMaxIndirectEntries)
        return Error(fmt::format("indirect tables of {} entries are larger than the {} a chain "
                                 "can address",
                                 config.indirect_entries, kMaxIndirectEntries),
                     EINVAL);
    RingLayout l;
    l.desc_offset = 0;
    l.avail_offset = desc_table_bytes(config.size);
    l.used_offset =
        align_up(l.avail_offset + avail_ring_bytes(config.size, config.event_idx), kPartAlign);
    l.indirect_offset =
        align_up(l.used_offset + used_ring_bytes(config.size, config.event_idx), kPartAlign);
    l.total_bytes =
        l.indirect_offset + std::uint64_t{config.size} * config.indirect_entries * kDescriptorSize;
    return l;
}

Result<SplitDriver> SplitDriver::create(std::span<std::byte> memory, std::uint64_t guest_addr,
                                        const DriverConfig& config)
{
    VL_TRY_ASSIGN(RingLayout layout, RingLayout::compute(config));
    if (memory.size() < layout.total_bytes)
        return Error(fmt::format("ring memory of {} bytes is too small: the rings need {}",
                                 memory.size(), layout.total_bytes),
                     EINVAL);
    if (reinterpret_cast<std::uintptr_t>(memory.data()) % kPartAlign != 0 ||
        guest_addr % kPartAlign != 0)
        return Error("ring memory must be 64-byte aligned (host and guest address)", EINVAL);
    if (layout.total_bytes - 1 > std::numeric_limits<std::uint64_t>::max() - guest_addr)
        return Error(fmt::format("rings at guest {:#x} wrap around the address space", guest_addr),
                     EINVAL);

    SplitDriver d;
    d.memory_ = memory.first(static_cast<std::size_t>(layout.total_bytes));
    d.guest_addr_ = guest_addr;
    d.config_ = config;
    d.layout_ = layout;
    std::memset(d.memory_.data(), 0, d.memory_.size());

    d.next_.resize(config.size);
    for (std::uint32_t i = 0; i < config.size; ++i)
        d.next_[i] = static_cast<std::uint16_t>(i + 1 < config.size ? i + 1 : kNoDescriptor);
    d.free_head_ = 0;
    d.free_count_ = config.size;
    d.outstanding_.assign(config.size, Outstanding{});
    return d;
}

std::uint64_t SplitDriver::desc_addr() const noexcept
{
    return guest_addr_ + layout_.desc_offset;
}
std::uint64_t SplitDriver::avail_addr() const noexcept
{
    return guest_addr_ + layout_.avail_offset;
}
std::uint64_t SplitDriver::used_addr() const noexcept
{
    return guest_addr_ + layout_.used_offset;
}

std::byte* SplitDriver::desc_at(std::uint16_t index) const noexcept
{
    return memory_.data() + layout_.desc_offset + std::size_t{index} * kDescriptorSize;
}

std::uint64_t SplitDriver::indirect_table_offset(std::uint16_t head) const noexcept
{
    return layout_.indirect_offset +
           std::uint64_t{head} * config_.indirect_entries * kDescriptorSize;
}

std::byte* SplitDriver::avail_field(std::size_t offset) const noexcept
{
    return memory_.data() + layout_.avail_offset + offset;
}

std::byte* SplitDriver::used_field(std::size_t offset) const noexcept
{
    return memory_.data() + layout_.used_offset + offset;
}

Error SplitDriver::mark_broken(Error error)
{
    if (!broken_reason_)
        broken_reason_ = std::move(error);
    return *broken_reason_;
}

Result<std::optional<std::uint16_t>> SplitDriver::add(std::span<const GuestBuffer> readable,
                                                      std::span<const GuestBuffer> writable,
                                                      bool indirect)
{
    if (broken_reason_)
        return *broken_reason_;
    const std::size_t buffers = readable.size() + writable.size();
    if (buffers == 0)
        return Error("cannot add a chain without buffers", EINVAL);
    VL_TRY_ASSIGN(std::uint32_t readable_len, total_length(readable, 0));
    VL_TRY_ASSIGN(std::uint32_t all_len, total_length(writable, readable_len));
    const std::uint32_t writable_len = all_len - readable_len;

    std::uint32_t needed = 0;
    if (indirect) {
        if (config_.indirect_entries == 0)
            return Error("indirect descriptors were not configured for this queue", EINVAL);
        if (buffers > config_.indirect_entries)
            return Error(fmt::format("chain of {} buffers does not fit an indirect table of {} "
                                     "entries",
                                     buffers, config_.indirect_entries),
                         EINVAL);
        needed = 1;
    } else {
        if (buffers > config_.size)
            return Error(fmt::format("chain of {} buffers can never fit a queue of {} entries",
                                     buffers, config_.size),
                         EINVAL);
        needed = static_cast<std::uint32_t>(buffers);
    }
    if (free_count_ < needed)
        return std::optional<std::uint16_t>();

    const std::uint16_t head = take_descriptors(needed);
    if (indirect)
        write_indirect_chain(head, readable, writable);
    else
        write_direct_chain(head, readable, writable);
    outstanding_[head] = Outstanding{true, static_cast<std::uint16_t>(needed), writable_len};
    ++in_flight_count_;
    publish(head);
    return std::optional<std::uint16_t>(head);
}

std::uint16_t SplitDriver::take_descriptors(std::uint32_t count)
{
    // The first `count` free entries are already linked head to tail
    // through next_; the tail's next_ is ignored from now on.
    const std::uint16_t head = free_head_;
    std::uint16_t cur = head;
    for (std::uint32_t i = 1; i < count; ++i)
        cur = next_[cur];
    free_head_ = next_[cur];
    free_count_ -= count;
    return head;
}

void SplitDriver::free_chain(std::uint16_t head, std::uint32_t count)
{
    std::uint16_t tail = head;
    for (std::uint32_t i = 1; i < count; ++i)
        tail = next_[tail];
    next_[tail] = free_head_;
    free_head_ = head;
    free_count_ += count;
}

void SplitDriver::write_direct_chain(std::uint16_t head, std::span<const GuestBuffer> readable,
                                     std::span<const GuestBuffer> writable)
{
    const std::size_t total = readable.size() + writable.size();
    std::uint16_t index = head;
    for (std::size_t i = 0; i < total; ++i) {
        const bool is_writable = i >= readable.size();
        const GuestBuffer& b = is_writable ? writable[i - readable.size()] : readable[i];
        const bool last = i + 1 == total;
        Descriptor d{b.addr, b.len, 0, 0};
        d.flags = static_cast<std::uint16_t>((is_writable ? kDescFlagWrite : 0) |
                                             (last ? 0 : kDescFlagNext));
        d.next = last ? 0 : next_[index];
        store_descriptor(desc_at(index), d);
        index = next_[index];
    }
}

void SplitDriver::write_indirect_chain(std::uint16_t head, std::span<const GuestBuffer> readable,
                                       std::span<const GuestBuffer> writable)
{
    const std::uint64_t table_offset = indirect_table_offset(head);
    std::byte* table = memory_.data() + table_offset;
    const std::size_t total = readable.size() + writable.size();
    for (std::size_t i = 0; i < total; ++i) {
        const bool is_writable = i >= readable.size();
        const GuestBuffer& b = is_writable ? writable[i - readable.size()] : readable[i];
        const bool last = i + 1 == total;
        Descriptor d{b.addr, b.len, 0, 0};
        d.flags = static_cast<std::uint16_t>((is_writable ? kDescFlagWrite : 0) |
                                             (last ? 0 : kDescFlagNext));
        d.next = static_cast<std::uint16_t>(last ? 0 : i + 1);
        store_descriptor(table + i * kDescriptorSize, d);
    }
    const Descriptor pointer{guest_addr_ + table_offset,
                             static_cast<std::uint32_t>(total * kDescriptorSize), kDescFlagIndirect,
                             0};
    store_descriptor(desc_at(head), pointer);
}

void SplitDriver::publish(std::uint16_t head)
{
    const std::uint32_t slot = avail_idx_ & (config_.size - 1);
    store_le16(avail_field(ring_offset::avail_entry(slot)), head);
    ++avail_idx_;
    // Release: descriptors and the ring entry are visible before the index.
    store_shared_le16(avail_field(ring_offset::kIdx), avail_idx_, std::memory_order_release);
}

bool SplitDriver::kick_needed()
{
    if (broken_reason_)
        return false;
    // Full fence: the new available index must be visible before we read
    // the device's avail_event / flags (virtio 1.2, 2.7.13.4).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const std::uint16_t old_idx = avail_idx_at_last_kick_check_;
    avail_idx_at_last_kick_check_ = avail_idx_;
    if (old_idx == avail_idx_)
        return false;
    if (config_.event_idx) {
        const std::uint16_t avail_event = load_shared_le16(
            used_field(ring_offset::avail_event(config_.size)), std::memory_order_relaxed);
        return need_event(avail_event, avail_idx_, old_idx);
    }
    const std::uint16_t flags =
        load_shared_le16(used_field(ring_offset::kFlags), std::memory_order_relaxed);
    return (flags & kUsedFlagNoNotify) == 0;
}

Result<std::optional<UsedBuffer>> SplitDriver::get_used()
{
    if (broken_reason_)
        return *broken_reason_;
    // Acquire: the element (and the data the device wrote) are read after
    // the index that published them.
    const std::uint16_t used_idx =
        load_shared_le16(used_field(ring_offset::kIdx), std::memory_order_acquire);
    const auto pending = static_cast<std::uint16_t>(used_idx - last_used_idx_);
    if (pending == 0)
        return std::optional<UsedBuffer>();
    if (pending > in_flight_count_)
        return mark_broken(Error(fmt::format("device's used index {} is {} entries ahead of ours "
                                             "({}) but only {} buffers are in flight",
                                             used_idx, pending, last_used_idx_, in_flight_count_),
                                 EPROTO));
    const std::uint32_t slot = last_used_idx_ & (config_.size - 1);
    const std::byte* elem = used_field(ring_offset::used_entry(slot));
    const std::uint32_t id = load_le32(elem);
    const std::uint32_t len = load_le32(elem + 4);
    if (id >= config_.size)
        return mark_broken(Error(fmt::format("used entry {}: id {} is out of range (queue size {})",
                                             last_used_idx_, id, config_.size),
                                 EPROTO));
    Outstanding& chain = outstanding_[id];
    if (!chain.active)
        return mark_broken(Error(
            fmt::format("used entry {}: head {} is not a chain in flight", last_used_idx_, id),
            EPROTO));
    if (len > chain.writable_len)
        return mark_broken(Error(fmt::format("used entry {}: head {} reports {} bytes written "
                                             "but has only {} writable bytes",
                                             last_used_idx_, id, len, chain.writable_len),
                                 EPROTO));
    const auto head = static_cast<std::uint16_t>(id);
    free_chain(head, chain.ring_descriptors);
    chain = Outstanding{};
    --in_flight_count_;
    ++last_used_idx_;
    return std::optional<UsedBuffer>(UsedBuffer{head, len});
}

bool SplitDriver::enable_interrupts()
{
    if (config_.event_idx)
        store_shared_le16(avail_field(ring_offset::used_event(config_.size)), last_used_idx_,
                          std::memory_order_relaxed);
    else
        store_shared_le16(avail_field(ring_offset::kFlags), 0, std::memory_order_relaxed);
    // Full fence: the device must see the re-enable before we look at its
    // used index again, or a completion in between would be missed.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const std::uint16_t used_idx =
        load_shared_le16(used_field(ring_offset::kIdx), std::memory_order_acquire);
    return used_idx != last_used_idx_;
}

void SplitDriver::disable_interrupts()
{
    if (config_.event_idx)
        return;
    store_shared_le16(avail_field(ring_offset::kFlags), kAvailFlagNoInterrupt,
                      std::memory_order_relaxed);
}

} // namespace vl::virtq
