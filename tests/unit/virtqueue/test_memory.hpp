// SPDX-License-Identifier: Apache-2.0
// Helpers for virtqueue tests: guest memory with guard pages (any access
// outside a region faults instead of silently passing) and a raw ring
// writer that lets a test play a misbehaving driver or device.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>

#include "virtqueue/guest_memory.hpp"
#include "virtqueue/ring.hpp"
#include "virtqueue/split_queue.hpp"

namespace vl::virtq::test
{

// An anonymous mapping with an inaccessible page on each side.
class GuardedBuffer
{
  public:
    explicit GuardedBuffer(std::size_t size, int extra_flags = 0) : size_(size)
    {
        page_ = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        total_ = round_up(size) + 2 * page_;
        void* p =
            ::mmap(nullptr, total_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags, -1, 0);
        if (p == MAP_FAILED)
            throw std::runtime_error("mmap failed");
        base_ = static_cast<std::byte*>(p);
        if (::mprotect(base_ + page_, round_up(size), PROT_READ | PROT_WRITE) != 0)
            throw std::runtime_error("mprotect failed");
    }
    ~GuardedBuffer() { ::munmap(base_, total_); }
    GuardedBuffer(const GuardedBuffer&) = delete;
    GuardedBuffer& operator=(const GuardedBuffer&) = delete;

    [[nodiscard]] std::byte* data() const { return base_ + page_; }
    [[nodiscard]] std::size_t size() const { return size_; }
    [[nodiscard]] std::span<std::byte> bytes() const { return {data(), size_}; }

  private:
    std::size_t round_up(std::size_t n) const { return (n + page_ - 1) / page_ * page_; }

    std::byte* base_ = nullptr;
    std::size_t size_ = 0;
    std::size_t total_ = 0;
    std::size_t page_ = 0;
};

// A queue laid out by hand in one region of guest memory. The test writes
// descriptors and ring entries directly, as a (possibly hostile) driver.
//
//   guest kBase:            descriptor table
//   after it:               available ring
//   next 64-byte boundary:  used ring
//   kBase + kDataOffset:    data buffers (data(offset) / addr(offset))
class RawRing
{
  public:
    static constexpr std::uint64_t kBase = 0x10000;
    static constexpr std::uint64_t kRegionSize = 1 << 20;
    static constexpr std::uint64_t kDataOffset = 0x80000;

    explicit RawRing(std::uint32_t size, bool event_idx = false, bool indirect = false)
        : buffer_(kRegionSize), size_(size), event_idx_(event_idx), indirect_(indirect)
    {
        std::memset(buffer_.data(), 0, buffer_.size());
        auto s = memory_.add_region(MemoryRegion{kBase, kRegionSize, buffer_.data(), {}});
        if (!s)
            throw std::runtime_error(s.error().message());
        desc_ = kBase;
        avail_ = desc_ + desc_table_bytes(size);
        used_ = (avail_ + avail_ring_bytes(size, event_idx) + 63) / 64 * 64;
        if (used_ + used_ring_bytes(size, event_idx) > kBase + kDataOffset)
            throw std::runtime_error("queue too large for RawRing");
    }

    [[nodiscard]] GuestMemory& memory() { return memory_; }
    [[nodiscard]] QueueConfig config(std::uint16_t avail_base = 0) const
    {
        QueueConfig c;
        c.size = size_;
        c.desc_addr = desc_;
        c.avail_addr = avail_;
        c.used_addr = used_;
        c.event_idx = event_idx_;
        c.indirect_desc = indirect_;
        c.avail_base = avail_base;
        return c;
    }
    [[nodiscard]] SplitQueue queue(std::uint16_t avail_base = 0)
    {
        auto q = SplitQueue::create(memory_, config(avail_base));
        if (!q)
            throw std::runtime_error(q.error().message());
        return std::move(q).value();
    }

    // Guest address / host pointer of the data area.
    [[nodiscard]] static std::uint64_t addr(std::uint64_t offset)
    {
        return kBase + kDataOffset + offset;
    }
    [[nodiscard]] std::byte* data(std::uint64_t offset) const
    {
        return buffer_.data() + kDataOffset + offset;
    }
    [[nodiscard]] std::byte* host(std::uint64_t guest_addr) const
    {
        return buffer_.data() + (guest_addr - kBase);
    }

    void set_desc(std::uint32_t index, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                  std::uint16_t next = 0) const
    {
        store_descriptor(host(desc_) + index * kDescriptorSize, Descriptor{addr, len, flags, next});
    }
    // Writes a descriptor into a table at guest address `table`.
    void set_table_desc(std::uint64_t table, std::uint32_t index, std::uint64_t addr,
                        std::uint32_t len, std::uint16_t flags, std::uint16_t next = 0) const
    {
        store_descriptor(host(table) + index * kDescriptorSize, Descriptor{addr, len, flags, next});
    }

    // Puts `head` in the available ring and publishes it.
    void make_available(std::uint16_t head)
    {
        store_le16(host(avail_) + ring_offset::avail_entry(avail_idx_ & (size_ - 1)), head);
        ++avail_idx_;
        set_avail_idx(avail_idx_);
    }
    void set_avail_idx(std::uint16_t idx)
    {
        avail_idx_ = idx;
        store_le16(host(avail_) + ring_offset::kIdx, idx);
    }
    void set_avail_flags(std::uint16_t flags) const
    {
        store_le16(host(avail_) + ring_offset::kFlags, flags);
    }
    void set_used_event(std::uint16_t v) const
    {
        store_le16(host(avail_) + ring_offset::used_event(size_), v);
    }
    [[nodiscard]] std::uint16_t avail_event() const
    {
        return load_le16(host(used_) + ring_offset::avail_event(size_));
    }
    [[nodiscard]] std::uint16_t used_flags() const
    {
        return load_le16(host(used_) + ring_offset::kFlags);
    }
    [[nodiscard]] std::uint16_t used_idx() const
    {
        return load_le16(host(used_) + ring_offset::kIdx);
    }
    void set_used_idx(std::uint16_t v) const { store_le16(host(used_) + ring_offset::kIdx, v); }
    // The used element at ring position `i` (modulo size): {id, len}.
    [[nodiscard]] std::pair<std::uint32_t, std::uint32_t> used_elem(std::uint16_t i) const
    {
        const std::byte* e = host(used_) + ring_offset::used_entry(i & (size_ - 1));
        return {load_le32(e), load_le32(e + 4)};
    }

  private:
    GuardedBuffer buffer_;
    GuestMemory memory_;
    std::uint32_t size_;
    bool event_idx_;
    bool indirect_;
    std::uint64_t desc_ = 0;
    std::uint64_t avail_ = 0;
    std::uint64_t used_ = 0;
    std::uint16_t avail_idx_ = 0;
};

inline std::span<const std::byte> as_bytes(const char* s)
{
    return {reinterpret_cast<const std::byte*>(s), std::strlen(s)};
}

} // namespace vl::virtq::test
