// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "virtqueue/descriptor_chain.hpp"
#include "virtqueue/guest_memory.hpp"
#include "virtqueue/ring.hpp"

namespace vl::virtq
{

// Where a queue lives and what was negotiated for it.
struct QueueConfig {
    // Number of entries: a power of two, 1..32768.
    std::uint32_t size = 0;
    // Guest addresses of the three parts (vhost-user: translate the
    // front-end's user addresses with GuestMemory::user_to_guest first).
    std::uint64_t desc_addr = 0;
    std::uint64_t avail_addr = 0;
    std::uint64_t used_addr = 0;
    // VIRTIO_RING_F_EVENT_IDX negotiated.
    bool event_idx = false;
    // VIRTIO_RING_F_INDIRECT_DESC negotiated (otherwise an INDIRECT flag
    // breaks the queue).
    bool indirect_desc = false;
    // The first available-ring index to consume (vhost-user
    // VHOST_USER_SET_VRING_BASE; 0 for a fresh queue).
    std::uint16_t avail_base = 0;
    // Most buffer descriptors (direct plus indirect) one chain may have.
    // 0 means the queue size, which is what the specification allows a
    // driver (2.7.5.3.1: "A driver MUST NOT create a descriptor chain longer
    // than the Queue Size"). Linux may build indirect tables with more
    // entries than the queue size if the device advertises segment limits
    // larger than that; a device that does so must raise this. Values above
    // size + 65536 (the most any chain can have) are clamped.
    std::uint32_t max_chain_len = 0;
};

// Hooks for vhost-user inflight tracking (VHOST_USER_GET_INFLIGHT_FD): the
// queue calls them as it changes state so the tracker can mirror that in
// its shared region. Called on the thread using the queue; must not call
// back into the queue.
class InflightTracker
{
  public:
    virtual ~InflightTracker() = default;
    // `head` was taken from the available ring (or resubmitted).
    virtual void on_popped(std::uint16_t head) = 0;
    // `head` is about to be written to the used ring.
    virtual void on_pushing(std::uint16_t head) = 0;
    // `head` was published; the used index is now `used_idx`.
    virtual void on_pushed(std::uint16_t head, std::uint16_t used_idx) = 0;
};

// The device side of one split virtqueue: takes descriptor chains the
// driver made available and returns them as used.
//
// All input from the driver is untrusted. A violation of the ring rules
// (bad index, loop, buffer outside memory, ...) marks the queue broken: it
// then refuses all further work and broken_reason() says what happened, so
// the caller can log it, stop serving this queue and keep serving others.
// A broken queue stays broken until it is recreated (device reset).
//
// The queue keeps a pointer to the GuestMemory; after the memory table
// changes call update_memory() (or recreate the queue).
//
// One thread uses a queue at a time; it is movable, not copyable.
class SplitQueue
{
  public:
    // Validates the configuration (size, alignment of each part, each part
    // inside one guest memory region) and binds to the rings. Reads the
    // current used index from the used ring (so a queue picked up after a
    // back-end restart continues where the ring is). Writes nothing: call
    // enable_notification() before waiting for the first kick.
    static Result<SplitQueue> create(const GuestMemory& memory, const QueueConfig& config);

    SplitQueue(SplitQueue&&) noexcept = default;
    SplitQueue& operator=(SplitQueue&&) noexcept = default;
    SplitQueue(const SplitQueue&) = delete;
    SplitQueue& operator=(const SplitQueue&) = delete;
    ~SplitQueue() = default;

    // Re-binds the rings after the memory table changed. Chains popped
    // before hold spans into the old mappings; finish them first.
    Status update_memory(const GuestMemory& memory);

    [[nodiscard]] const QueueConfig& config() const noexcept { return config_; }
    [[nodiscard]] std::uint32_t size() const noexcept { return config_.size; }

    // ---- taking work ----

    // The next available chain, fully validated; nullopt when the driver
    // has made nothing new available. An error means the driver broke the
    // rules: the queue is now broken (or already was).
    Result<std::optional<DescriptorChain>> pop();

    // As pop(), but fills `chain` (reusing its vectors' capacity); returns
    // false when nothing is available.
    Result<bool> pop_into(DescriptorChain& chain);

    // Number of chains the driver made available that pop() has not taken
    // yet. An error if the queue is broken; breaks the queue if the
    // driver's index is impossible (more than the queue size ahead).
    Result<std::uint16_t> available();

    // ---- returning work ----

    // Writes a used element {head, written_len} and publishes it to the
    // driver (release ordering: buffer contents and the element are visible
    // before the new used index). Fails, without touching the ring, if the
    // queue is broken, `head` is not a chain popped and not yet pushed, or
    // `written_len` is more than the chain's writable length (a device bug:
    // the queue is not marked broken for that).
    Status push(std::uint16_t head, std::uint32_t written_len);

    // ---- notifications ----

    // Whether the driver wants a used-buffer notification (interrupt) for
    // what was pushed since the last call: EVENT_IDX used_event rule, or
    // the NO_INTERRUPT flag without it. False if nothing was pushed since.
    // Issues the full fence the spec requires between publishing the used
    // index and reading the driver's event index or flags.
    bool needs_notification();

    // Asks the driver to notify (kick) when it adds buffers: clears
    // NO_NOTIFY, or with EVENT_IDX sets avail_event to the next index we
    // will take. Returns true if buffers were already available (they raced
    // with the re-enable): process them instead of sleeping. A broken queue
    // reports false.
    bool enable_notification();

    // Tells the driver kicks are not needed for now (we are processing or
    // polling): sets NO_NOTIFY, or with EVENT_IDX moves avail_event behind
    // the next index we will take, so that no index the driver publishes
    // crosses it (until 65535 more buffers). Without this, with EVENT_IDX
    // the first buffer after each enable_notification() would kick.
    void disable_notification();

    // ---- ring state (vhost-user GET/SET_VRING_BASE) ----

    [[nodiscard]] std::uint16_t last_avail_idx() const noexcept { return last_avail_idx_; }
    // Resets the next index to take (clears nothing else).
    void set_last_avail_idx(std::uint16_t idx) noexcept { last_avail_idx_ = idx; }
    [[nodiscard]] std::uint16_t used_idx() const noexcept { return used_idx_; }

    [[nodiscard]] bool broken() const noexcept { return broken_reason_.has_value(); }
    // Empty unless broken.
    [[nodiscard]] std::string broken_reason() const
    {
        return broken_reason_ ? broken_reason_->message() : std::string();
    }

    // ---- in-flight bookkeeping ----

    [[nodiscard]] bool is_in_flight(std::uint16_t head) const noexcept;
    [[nodiscard]] std::uint32_t in_flight_count() const noexcept { return in_flight_count_; }
    // Heads popped and not yet pushed, in index order.
    [[nodiscard]] std::vector<std::uint16_t> in_flight_heads() const;

    // Sets (or clears, with nullptr) the inflight tracker. Not owned.
    void set_inflight_tracker(InflightTracker* tracker) noexcept { tracker_ = tracker; }

    // Walks the chain at `head` without consulting the available ring and
    // marks it in flight: used to resume requests recorded by inflight
    // tracking after a back-end restart. Validation failures break the queue
    // like pop(); a head already in flight is an error (queue not broken).
    Result<DescriptorChain> resubmit(std::uint16_t head);

  private:
    struct InFlight {
        bool active = false;
        std::uint32_t writable_len = 0;
    };

    SplitQueue() = default;

    Status bind_rings(const GuestMemory& memory);
    // Records the first error that broke the queue and returns it.
    Error mark_broken(Error error);
    Result<std::uint16_t> read_available_count();
    Status walk_chain(std::uint16_t head, DescriptorChain& chain);
    Status walk_indirect(const Descriptor& table_desc, DescriptorChain& chain);
    Status add_buffer(const Descriptor& desc, DescriptorChain& chain);
    void take_in_flight(const DescriptorChain& chain);

    [[nodiscard]] std::byte* avail_field(std::size_t offset) const noexcept
    {
        return avail_.data() + offset;
    }
    [[nodiscard]] std::byte* used_field(std::size_t offset) const noexcept
    {
        return used_.data() + offset;
    }

    const GuestMemory* memory_ = nullptr;
    QueueConfig config_;
    std::uint32_t max_chain_len_ = 0;
    std::span<std::byte> desc_table_;
    std::span<std::byte> avail_;
    std::span<std::byte> used_;

    std::uint16_t last_avail_idx_ = 0;
    std::uint16_t used_idx_ = 0;
    // used_idx_ when needs_notification() last looked (EVENT_IDX "old").
    std::uint16_t used_idx_at_last_check_ = 0;

    std::vector<InFlight> in_flight_; // indexed by head
    std::uint32_t in_flight_count_ = 0;
    InflightTracker* tracker_ = nullptr;

    HostBuffers scratch_;          // translation of one descriptor's buffer
    HostBuffers indirect_scratch_; // translation of an indirect table
    std::optional<Error> broken_reason_;
};

} // namespace vl::virtq
