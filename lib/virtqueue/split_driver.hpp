// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "virtqueue/ring.hpp"

namespace vl::virtq
{

// A buffer given to the device, by guest address (the address the device
// side's GuestMemory understands: a guest physical address, an IOVA, an
// offset in a DMA window, ...).
struct GuestBuffer {
    std::uint64_t addr = 0;
    std::uint32_t len = 0;
};

// What the device returned: the head that add() gave and the number of
// bytes the device says it wrote.
struct UsedBuffer {
    std::uint16_t head = 0;
    std::uint32_t len = 0;
};

struct DriverConfig {
    std::uint32_t size = 0; // power of two, 1..32768
    bool event_idx = false; // VIRTIO_RING_F_EVENT_IDX negotiated
    // Entries per indirect table; 0 disables indirect descriptors. When
    // non-zero, VIRTIO_RING_F_INDIRECT_DESC must have been negotiated and
    // one table per queue entry is reserved in the ring memory.
    std::uint32_t indirect_entries = 0;
};

// Where each part lies, as offsets from the start of the ring memory.
struct RingLayout {
    std::uint64_t desc_offset = 0;
    std::uint64_t avail_offset = 0;
    std::uint64_t used_offset = 0;
    std::uint64_t indirect_offset = 0; // first indirect table (if any)
    std::uint64_t total_bytes = 0;     // ring memory needed

    // Descriptor table at 0, available ring after it, used ring and then
    // the indirect tables each on a 64-byte boundary (a cache line, so the
    // driver-written and device-written parts do not share one).
    static Result<RingLayout> compute(const DriverConfig& config);
};

// The driver side of one split virtqueue, for tests and benchmarks: a
// user-space stand-in for a kernel virtio driver. It lays the rings out in
// memory the caller provides (shared with the device side), adds buffers,
// decides when to kick, and collects used buffers.
//
// The device is not trusted: get_used() validates every used element
// (index, that the head is in flight, the length) and an invalid one marks
// the driver broken. The driver keeps its own copy of which descriptors
// belong to which chain and never reads descriptors back from shared
// memory.
//
// One thread uses a driver at a time; movable, not copyable.
class SplitDriver
{
  public:
    // Lays the rings out in `memory` (at least RingLayout::compute(config)
    // .total_bytes, 64-byte aligned) whose first byte the device sees at
    // guest address `guest_addr` (also 64-byte aligned). Zeroes the rings.
    static Result<SplitDriver> create(std::span<std::byte> memory, std::uint64_t guest_addr,
                                      const DriverConfig& config);

    SplitDriver(SplitDriver&&) noexcept = default;
    SplitDriver& operator=(SplitDriver&&) noexcept = default;
    SplitDriver(const SplitDriver&) = delete;
    SplitDriver& operator=(const SplitDriver&) = delete;
    ~SplitDriver() = default;

    [[nodiscard]] const DriverConfig& config() const noexcept { return config_; }
    [[nodiscard]] const RingLayout& layout() const noexcept { return layout_; }
    // Guest addresses of the parts, for the device's QueueConfig.
    [[nodiscard]] std::uint64_t desc_addr() const noexcept;
    [[nodiscard]] std::uint64_t avail_addr() const noexcept;
    [[nodiscard]] std::uint64_t used_addr() const noexcept;

    // Makes one chain of `readable` then `writable` buffers available and
    // publishes it (release ordering: the descriptors and ring entry are
    // visible before the new available index). With `indirect`, the chain
    // goes into this head's indirect table and takes one ring descriptor.
    // Returns the head, or nullopt if there are not enough free
    // descriptors right now (retry after get_used()). Errors: an empty
    // chain, more buffers than could ever fit, indirect not configured,
    // total length over 2^32 - 1, or a broken driver.
    Result<std::optional<std::uint16_t>> add(std::span<const GuestBuffer> readable,
                                             std::span<const GuestBuffer> writable,
                                             bool indirect = false);

    // Whether the device wants a kick for what add() published since the
    // last call (EVENT_IDX avail_event rule, or the NO_NOTIFY flag). Issues
    // the full fence required before reading the device's event index.
    bool kick_needed();

    // The next used buffer, validated; nullopt if the device returned
    // nothing new. An error means the device broke the rules (the driver
    // is broken from then on).
    Result<std::optional<UsedBuffer>> get_used();

    // Asks for used-buffer notifications again (clears NO_INTERRUPT, or
    // with EVENT_IDX sets used_event to the next used index we expect).
    // Returns true if used buffers are already pending (they raced with
    // the re-enable).
    bool enable_interrupts();
    // Tells the device interrupts are not needed now (without EVENT_IDX;
    // with it this is implicit).
    void disable_interrupts();

    [[nodiscard]] std::uint32_t free_descriptors() const noexcept { return free_count_; }
    [[nodiscard]] std::uint32_t in_flight() const noexcept { return in_flight_count_; }
    [[nodiscard]] std::uint16_t avail_idx() const noexcept { return avail_idx_; }
    [[nodiscard]] std::uint16_t last_used_idx() const noexcept { return last_used_idx_; }

    [[nodiscard]] bool broken() const noexcept { return broken_reason_.has_value(); }
    [[nodiscard]] std::string broken_reason() const
    {
        return broken_reason_ ? broken_reason_->message() : std::string();
    }

  private:
    static constexpr std::uint16_t kNoDescriptor = 0xffff;

    // What the driver remembers about a chain it handed out, by head.
    struct Outstanding {
        bool active = false;
        std::uint16_t ring_descriptors = 0; // descriptors taken from the table
        std::uint32_t writable_len = 0;
    };

    SplitDriver() = default;

    Error mark_broken(Error error);
    std::uint16_t take_descriptors(std::uint32_t count);
    void free_chain(std::uint16_t head, std::uint32_t count);
    void write_direct_chain(std::uint16_t head, std::span<const GuestBuffer> readable,
                            std::span<const GuestBuffer> writable);
    void write_indirect_chain(std::uint16_t head, std::span<const GuestBuffer> readable,
                              std::span<const GuestBuffer> writable);
    void publish(std::uint16_t head);

    [[nodiscard]] std::byte* desc_at(std::uint16_t index) const noexcept;
    [[nodiscard]] std::uint64_t indirect_table_offset(std::uint16_t head) const noexcept;
    [[nodiscard]] std::byte* avail_field(std::size_t offset) const noexcept;
    [[nodiscard]] std::byte* used_field(std::size_t offset) const noexcept;

    std::span<std::byte> memory_;
    std::uint64_t guest_addr_ = 0;
    DriverConfig config_;
    RingLayout layout_;

    // Free descriptors, linked through next_ (our private copy: the device
    // could scribble on the shared table, and we never trust it).
    std::vector<std::uint16_t> next_;
    std::uint16_t free_head_ = kNoDescriptor;
    std::uint32_t free_count_ = 0;

    std::vector<Outstanding> outstanding_; // by head
    std::uint32_t in_flight_count_ = 0;

    std::uint16_t avail_idx_ = 0;
    std::uint16_t avail_idx_at_last_kick_check_ = 0;
    std::uint16_t last_used_idx_ = 0;
    std::optional<Error> broken_reason_;
};

} // namespace vl::virtq
