// SPDX-License-Identifier: Apache-2.0
#include "virtqueue/split_queue.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>

namespace vl::virtq
{

namespace
{

bool host_aligned(const std::byte* p, std::uint64_t align)
{
    return reinterpret_cast<std::uintptr_t>(p) % align == 0;
}

Status validate_config(const QueueConfig& c)
{
    if (!valid_queue_size(c.size))
        return Error(fmt::format("queue size {} is not a power of two between 1 and {}", c.size,
                                 kMaxQueueSize),
                     EINVAL);
    if (c.desc_addr % kDescTableAlign != 0)
        return Error(
            fmt::format("descriptor table address {:#x} is not 16-byte aligned", c.desc_addr),
            EINVAL);
    if (c.avail_addr % kAvailRingAlign != 0)
        return Error(
            fmt::format("available ring address {:#x} is not 2-byte aligned", c.avail_addr),
            EINVAL);
    if (c.used_addr % kUsedRingAlign != 0)
        return Error(fmt::format("used ring address {:#x} is not 4-byte aligned", c.used_addr),
                     EINVAL);
    return ok_status();
}

// Binds one ring part: inside one region, and aligned in our mapping too
// (the ring indices are accessed atomically).
Result<std::span<std::byte>> bind_part(const GuestMemory& memory, std::string_view name,
                                       std::uint64_t addr, std::uint64_t len,
                                       std::uint64_t host_align)
{
    auto part = memory.translate_contiguous(addr, len);
    if (!part)
        return part.error().wrap(std::string(name));
    if (!host_aligned(part->data(), host_align))
        return Error(fmt::format("{} at guest {:#x} is mapped at a host address that is not "
                                 "{}-byte aligned",
                                 name, addr, host_align),
                     EINVAL);
    return part;
}

} // namespace

Result<SplitQueue> SplitQueue::create(const GuestMemory& memory, const QueueConfig& config)
{
    VL_TRY(validate_config(config));
    SplitQueue q;
    q.config_ = config;
    const std::uint32_t hard_limit = config.size + kMaxIndirectEntries;
    q.max_chain_len_ =
        config.max_chain_len == 0 ? config.size : std::min(config.max_chain_len, hard_limit);
    VL_TRY(q.bind_rings(memory));
    q.last_avail_idx_ = config.avail_base;
    q.used_idx_ = load_shared_le16(q.used_field(ring_offset::kIdx), std::memory_order_acquire);
    q.used_idx_at_last_check_ = q.used_idx_;
    q.in_flight_.assign(config.size, InFlight{});
    return q;
}

Status SplitQueue::bind_rings(const GuestMemory& memory)
{
    const std::uint32_t n = config_.size;
    VL_TRY_ASSIGN(auto desc,
                  bind_part(memory, "descriptor table", config_.desc_addr, desc_table_bytes(n), 1));
    VL_TRY_ASSIGN(auto avail, bind_part(memory, "available ring", config_.avail_addr,
                                        avail_ring_bytes(n, config_.event_idx), kAvailRingAlign));
    VL_TRY_ASSIGN(auto used, bind_part(memory, "used ring", config_.used_addr,
                                       used_ring_bytes(n, config_.event_idx), kUsedRingAlign));
    memory_ = &memory;
    desc_table_ = desc;
    avail_ = avail;
    used_ = used;
    return ok_status();
}

Status SplitQueue::update_memory(const GuestMemory& memory)
{
    if (Status s = bind_rings(memory); !s) {
        // The old mappings may be gone: nothing safe is left to use.
        memory_ = nullptr;
        return mark_broken(s.error().wrap("rings not in the new memory table"));
    }
    return ok_status();
}

Error SplitQueue::mark_broken(Error error)
{
    if (!broken_reason_)
        broken_reason_ = std::move(error);
    return *broken_reason_;
}

Result<std::uint16_t> SplitQueue::read_available_count()
{
    if (broken_reason_)
        return *broken_reason_;
    // Acquire: the ring entries (and the descriptors they name) we read
    // next were written before the driver published this index.
    const std::uint16_t avail_idx =
        load_shared_le16(avail_field(ring_offset::kIdx), std::memory_order_acquire);
    const auto pending = static_cast<std::uint16_t>(avail_idx - last_avail_idx_);
    if (pending > config_.size)
        return mark_broken(Error(fmt::format("driver's available index {} is {} entries ahead "
                                             "of the device's {}, more than the queue size {}",
                                             avail_idx, pending, last_avail_idx_, config_.size),
                                 EPROTO));
    return pending;
}

Result<std::uint16_t> SplitQueue::available()
{
    return read_available_count();
}

Result<std::optional<DescriptorChain>> SplitQueue::pop()
{
    DescriptorChain chain;
    VL_TRY_ASSIGN(bool got, pop_into(chain));
    if (!got)
        return std::optional<DescriptorChain>();
    return std::optional<DescriptorChain>(std::move(chain));
}

Result<bool> SplitQueue::pop_into(DescriptorChain& chain)
{
    VL_TRY_ASSIGN(std::uint16_t pending, read_available_count());
    if (pending == 0)
        return false;
    const std::uint32_t slot = last_avail_idx_ & (config_.size - 1);
    const std::uint16_t head = load_le16(avail_field(ring_offset::avail_entry(slot)));
    // Formatted only on the error paths.
    auto where = [&] { return fmt::format("available entry {} (head {})", last_avail_idx_, head); };
    if (head < config_.size && in_flight_[head].active)
        return mark_broken(Error(where() + ": the device still holds this chain (made available "
                                           "twice without being used)",
                                 EPROTO));
    if (Status s = walk_chain(head, chain); !s)
        return mark_broken(s.error().wrap(where()));
    ++last_avail_idx_;
    take_in_flight(chain);
    return true;
}

Result<DescriptorChain> SplitQueue::resubmit(std::uint16_t head)
{
    if (broken_reason_)
        return *broken_reason_;
    if (head >= config_.size)
        return Error(
            fmt::format("resubmitted head {} is out of range (queue size {})", head, config_.size),
            EINVAL);
    if (in_flight_[head].active)
        return Error(fmt::format("resubmitted head {} is already in flight", head), EINVAL);
    DescriptorChain chain;
    if (Status s = walk_chain(head, chain); !s)
        return mark_broken(s.error().wrap(fmt::format("resubmitted head {}", head)));
    take_in_flight(chain);
    return chain;
}

Status SplitQueue::walk_chain(std::uint16_t head, DescriptorChain& chain)
{
    chain.reset(head);
    if (memory_ == nullptr)
        return Error("queue has no guest memory", EFAULT);
    std::uint32_t index = head;
    // A valid chain visits each table entry at most once, so more steps
    // than entries means a loop.
    for (std::uint32_t steps = 1;; ++steps) {
        if (index >= config_.size)
            return Error(fmt::format("descriptor index {} is out of range (queue size {})", index,
                                     config_.size),
                         EPROTO);
        if (steps > config_.size)
            return Error(fmt::format("chain visits more than {} descriptors of the table "
                                     "(a loop)",
                                     config_.size),
                         EPROTO);
        // One copy of the descriptor: the driver may rewrite it meanwhile.
        const Descriptor desc = load_descriptor(desc_table_.data() + index * kDescriptorSize);
        if (desc.is_indirect()) {
            if (Status s = walk_indirect(desc, chain); !s)
                return s.error().wrap(fmt::format("indirect descriptor {}", index));
            return ok_status();
        }
        if (Status s = add_buffer(desc, chain); !s)
            return s.error().wrap(fmt::format("descriptor {}", index));
        if (!desc.has_next())
            return ok_status();
        index = desc.next;
    }
}

Status SplitQueue::walk_indirect(const Descriptor& table_desc, DescriptorChain& chain)
{
    if (!config_.indirect_desc)
        return Error("INDIRECT flag set but VIRTIO_RING_F_INDIRECT_DESC was not negotiated",
                     EPROTO);
    if (table_desc.has_next())
        return Error("INDIRECT and NEXT flags both set (an indirect table must end the chain)",
                     EPROTO);
    if (table_desc.len == 0 || table_desc.len % kDescriptorSize != 0)
        return Error(fmt::format("indirect table length {} is not a non-zero multiple of {}",
                                 table_desc.len, kDescriptorSize),
                     EPROTO);
    const std::uint32_t entries = table_desc.len / kDescriptorSize;
    if (entries > kMaxIndirectEntries)
        return Error(fmt::format("indirect table has {} entries, more than 16-bit next fields "
                                 "can address ({})",
                                 entries, kMaxIndirectEntries),
                     EPROTO);
    indirect_scratch_.clear();
    if (Status s = memory_->translate(table_desc.addr, table_desc.len, indirect_scratch_); !s)
        return s.error().wrap("indirect table");
    chain.mark_indirect();

    std::uint32_t index = 0;
    for (std::uint32_t steps = 1;; ++steps) {
        if (index >= entries)
            return Error(fmt::format("indirect table entry {} is out of range (table has {} "
                                     "entries)",
                                     index, entries),
                         EPROTO);
        if (steps > entries)
            return Error(fmt::format("chain in the indirect table visits more than its {} "
                                     "entries (a loop)",
                                     entries),
                         EPROTO);
        // The table may straddle regions: copy the entry out (this is also
        // the single read of it we validate).
        std::array<std::byte, kDescriptorSize> raw{};
        copy_from_buffers(indirect_scratch_, std::size_t{index} * kDescriptorSize, raw);
        const Descriptor desc = load_descriptor(raw.data());
        if (desc.is_indirect())
            return Error(fmt::format("indirect table entry {} has the INDIRECT flag (nested "
                                     "tables are not allowed)",
                                     index),
                         EPROTO);
        if (Status s = add_buffer(desc, chain); !s)
            return s.error().wrap(fmt::format("indirect table entry {}", index));
        if (!desc.has_next())
            return ok_status();
        index = desc.next;
    }
}

Status SplitQueue::add_buffer(const Descriptor& desc, DescriptorChain& chain)
{
    if (chain.descriptor_count() >= max_chain_len_)
        return Error(fmt::format("chain has more than {} buffer descriptors", max_chain_len_),
                     EPROTO);
    scratch_.clear();
    if (Status s = memory_->translate(desc.addr, desc.len, scratch_); !s)
        return s.error().wrap("buffer");
    return chain.append(scratch_, desc.len, desc.is_write());
}

void SplitQueue::take_in_flight(const DescriptorChain& chain)
{
    in_flight_[chain.head()] = InFlight{true, chain.writable_len()};
    ++in_flight_count_;
    if (tracker_ != nullptr)
        tracker_->on_popped(chain.head());
}

bool SplitQueue::is_in_flight(std::uint16_t head) const noexcept
{
    return head < in_flight_.size() && in_flight_[head].active;
}

std::vector<std::uint16_t> SplitQueue::in_flight_heads() const
{
    std::vector<std::uint16_t> heads;
    heads.reserve(in_flight_count_);
    for (std::size_t i = 0; i < in_flight_.size(); ++i)
        if (in_flight_[i].active)
            heads.push_back(static_cast<std::uint16_t>(i));
    return heads;
}

Status SplitQueue::push(std::uint16_t head, std::uint32_t written_len)
{
    if (broken_reason_)
        return *broken_reason_;
    if (!is_in_flight(head))
        return Error(fmt::format("cannot return head {}: it is not a chain the device holds", head),
                     EINVAL);
    if (written_len > in_flight_[head].writable_len)
        return Error(fmt::format("cannot return head {} with {} bytes written: its writable "
                                 "part has only {} bytes",
                                 head, written_len, in_flight_[head].writable_len),
                     EINVAL);
    if (tracker_ != nullptr)
        tracker_->on_pushing(head);
    const std::uint32_t slot = used_idx_ & (config_.size - 1);
    std::byte* elem = used_field(ring_offset::used_entry(slot));
    store_le32(elem, head);
    store_le32(elem + 4, written_len);
    ++used_idx_;
    // Release: the buffer contents and the element are visible before the
    // driver can see the new index.
    store_shared_le16(used_field(ring_offset::kIdx), used_idx_, std::memory_order_release);
    in_flight_[head] = InFlight{};
    --in_flight_count_;
    if (tracker_ != nullptr)
        tracker_->on_pushed(head, used_idx_);
    return ok_status();
}

bool SplitQueue::needs_notification()
{
    if (broken_reason_)
        return false;
    // Full fence: our used index store must be visible before we read the
    // driver's used_event / flags, or we could miss a driver that just
    // re-enabled interrupts (virtio 1.2, 2.7.10).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const std::uint16_t old_idx = used_idx_at_last_check_;
    used_idx_at_last_check_ = used_idx_;
    if (old_idx == used_idx_)
        return false;
    if (config_.event_idx) {
        const std::uint16_t used_event = load_shared_le16(
            avail_field(ring_offset::used_event(config_.size)), std::memory_order_relaxed);
        return need_event(used_event, used_idx_, old_idx);
    }
    const std::uint16_t flags =
        load_shared_le16(avail_field(ring_offset::kFlags), std::memory_order_relaxed);
    return (flags & kAvailFlagNoInterrupt) == 0;
}

bool SplitQueue::enable_notification()
{
    if (broken_reason_)
        return false;
    if (config_.event_idx)
        store_shared_le16(used_field(ring_offset::avail_event(config_.size)), last_avail_idx_,
                          std::memory_order_relaxed);
    else
        store_shared_le16(used_field(ring_offset::kFlags), 0, std::memory_order_relaxed);
    // Full fence: the driver must see the re-enable before we look at its
    // index again; otherwise a buffer added in between would get no kick
    // and we would not see it either.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const std::uint16_t avail_idx =
        load_shared_le16(avail_field(ring_offset::kIdx), std::memory_order_acquire);
    return avail_idx != last_avail_idx_;
}

void SplitQueue::disable_notification()
{
    if (broken_reason_)
        return;
    if (config_.event_idx)
        store_shared_le16(used_field(ring_offset::avail_event(config_.size)),
                          static_cast<std::uint16_t>(last_avail_idx_ - 1),
                          std::memory_order_relaxed);
    else
        store_shared_le16(used_field(ring_offset::kFlags), kUsedFlagNoNotify,
                          std::memory_order_relaxed);
}

} // namespace vl::virtq
