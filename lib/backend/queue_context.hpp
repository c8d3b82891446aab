// SPDX-License-Identifier: Apache-2.0
// What a device sees of one running queue (see device.hpp for the threading
// contract): the split queue, the guest memory, the negotiated features,
// the front-end's call eventfd and the worker's event loop.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>

#include "base/log.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "virtqueue/descriptor_chain.hpp"
#include "virtqueue/guest_memory.hpp"
#include "virtqueue/split_queue.hpp"

namespace vl::backend
{

// An eventfd of the front-end that the control thread may replace at any
// time (SET_VRING_CALL / SET_VRING_ERR) while a worker signals it: a call
// or error notifier. Without an fd (none yet, or the front-end polls),
// signal() does nothing. Thread-safe.
class RingSignal
{
  public:
    RingSignal() = default;
    RingSignal(const RingSignal&) = delete;
    RingSignal& operator=(const RingSignal&) = delete;

    void replace(UniqueFd fd);
    Status signal();
    [[nodiscard]] bool has_fd() const;

  private:
    mutable std::mutex mutex_; // protects fd_
    UniqueFd fd_;
};

// The worker's event loop, as a device may use it: extra fds to wait on.
class EventSources
{
  public:
    virtual ~EventSources() = default;
    // Wait for `fd` to become readable (level-triggered) and then call the
    // device's handle_event() with `token`. The fd stays owned by the caller.
    virtual Status watch(int fd, std::uint64_t token) = 0;
    virtual Status unwatch(int fd) = 0;

  protected:
    EventSources() = default;
    EventSources(const EventSources&) = default;
    EventSources& operator=(const EventSources&) = default;
};

// One running queue, handed to the device's queue callbacks. Owned by the
// queue's worker; used on that thread only. Devices can be unit-tested by
// building one over a SplitQueue of their own.
class QueueContext
{
  public:
    // `resubmitted`: chains recovered from inflight tracking, already in
    // flight in `queue`; pop() returns them first, in this order.
    QueueContext(std::uint32_t index, virtq::SplitQueue queue, const virtq::GuestMemory& memory,
                 std::uint64_t features, RingSignal& call, EventSources& events, Logger logger,
                 std::deque<virtq::DescriptorChain> resubmitted = {});

    QueueContext(const QueueContext&) = delete;
    QueueContext& operator=(const QueueContext&) = delete;

    [[nodiscard]] std::uint32_t index() const noexcept { return index_; }
    // The acknowledged virtio features (all bits).
    [[nodiscard]] std::uint64_t features() const noexcept { return features_; }
    [[nodiscard]] bool has_feature(unsigned bit) const noexcept
    {
        return (features_ >> bit & 1U) != 0;
    }
    [[nodiscard]] const virtq::GuestMemory& memory() const noexcept { return memory_; }
    [[nodiscard]] const Logger& logger() const noexcept { return logger_; }

    // The queue itself, for what pop()/push() do not cover (available(),
    // in_flight_count(), ...). Take chains with pop(), not queue().pop(),
    // so that resubmitted chains come first.
    [[nodiscard]] virtq::SplitQueue& queue() noexcept { return queue_; }

    // The next chain to handle: a resubmitted one, else the next available
    // one; nullopt when there is none. An error means the driver broke the
    // ring rules and the queue is broken: return from the callback.
    Result<std::optional<virtq::DescriptorChain>> pop();

    // Returns chain `head` to the driver with `written_len` bytes written.
    Status push(std::uint16_t head, std::uint32_t written_len);

    // Signals the call eventfd now if the driver wants an interrupt for
    // what was pushed since the last check. (The worker also does this
    // after every callback.)
    Status notify();

    // Extra fds for the worker to wait on (see device.hpp).
    Status watch(int fd, std::uint64_t token) { return events_.watch(fd, token); }
    Status unwatch(int fd) { return events_.unwatch(fd); }

    // Flow control: while paused, kicks do not call process_queue() (and
    // without EVENT_IDX the driver is told not to kick). A queue paused when
    // handle_event() began and resumed when it returns gets process_queue()
    // right after. A new QueueContext (each start) begins unpaused.
    void pause() noexcept { paused_ = true; }
    void resume() noexcept { paused_ = false; }
    [[nodiscard]] bool paused() const noexcept { return paused_; }

    // Resubmitted chains not handed to the device yet (they are in flight
    // in the queue, but the device does not hold them).
    [[nodiscard]] std::size_t pending_resubmissions() const noexcept { return resubmitted_.size(); }

  private:
    std::uint32_t index_;
    virtq::SplitQueue queue_;
    const virtq::GuestMemory& memory_;
    std::uint64_t features_;
    RingSignal& call_;
    EventSources& events_;
    Logger logger_;
    std::deque<virtq::DescriptorChain> resubmitted_;
    bool paused_ = false;
};

} // namespace vl::backend
