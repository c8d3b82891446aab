// SPDX-License-Identifier: Apache-2.0
// vhost-user-input: a virtio-input device (virtio 1.2, 5.8) fed by an
// EventSource (event_source.hpp).
//
// - Config space (136 bytes: select, subsel, size, reserved[5], u[128]):
//   the driver writes select/subsel and reads back the answer to that
//   query; the answers are built from the source's capabilities.
// - eventq (queue 0, device -> driver): one 8-byte virtio_input_event per
//   buffer. The source's fd is watched on this queue's worker; what it
//   yields waits in a bounded backlog until the driver has buffers.
// - statusq (queue 1, driver -> device): LED and sound events, handed to
//   the source (which passes them to a host device or logs them).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "backend/device.hpp"
#include "base/log.hpp"
#include "base/result.hpp"
#include "input/event_source.hpp"

namespace vl::input
{

inline constexpr std::uint32_t kEventQueue = 0;
inline constexpr std::uint32_t kStatusQueue = 1;
// sizeof(struct virtio_input_config) and sizeof(struct virtio_input_event).
inline constexpr std::uint32_t kConfigSize = 136;
inline constexpr std::uint32_t kEventSize = 8;
// How many events wait for driver buffers at most, by default: many frames
// of a busy pointer, a fraction of a second of a 1 kHz mouse.
inline constexpr std::size_t kDefaultBacklogEvents = 1024;

// Events waiting for the driver's buffers, in order, at most `capacity`.
// On overflow whole frames (up to and including a SYN_REPORT) are dropped,
// oldest first, so the driver never sees part of a frame: never one whose
// delivery has begun, and when no complete frame can go, the incomplete
// newest one goes whole (with the rest of it as it arrives). Only a single
// frame larger than the capacity whose delivery has begun is cut: its
// undelivered events are dropped but its SYN_REPORT is kept to end it.
class EventBacklog
{
  public:
    struct Dropped {
        std::size_t events = 0;
        std::size_t frames = 0; // frames whose dropping began
        bool cut = false;       // a frame in delivery was cut (see above)
    };

    explicit EventBacklog(std::size_t capacity);

    // Appends `event`; says what was dropped to make room.
    Dropped push(const InputEvent& event);

    [[nodiscard]] bool empty() const noexcept { return events_.empty(); }
    [[nodiscard]] std::size_t size() const noexcept { return events_.size(); }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] const InputEvent& front() const { return events_.front(); }
    // The front event was delivered.
    void pop_front();
    void clear();

  private:
    void drop_oldest(Dropped& dropped);
    [[nodiscard]] std::size_t end_of_frame_from(std::size_t index) const;

    std::size_t capacity_;
    std::deque<InputEvent> events_;
    bool head_started_ = false; // events of the front frame were delivered
    bool discarding_ = false;   // dropping the rest of a frame until SYN_REPORT
    bool cut_ = false;          // ... and keeping that SYN_REPORT
};

struct InputDeviceOptions {
    std::size_t backlog_events = kDefaultBacklogEvents; // >= 1
};

class InputDevice final : public backend::Device
{
  public:
    static constexpr std::uint32_t kQueueSize = 256;

    InputDevice(std::unique_ptr<EventSource> source, const InputDeviceOptions& options,
                Logger logger);

    [[nodiscard]] std::uint32_t num_queues() const override { return 2; }
    [[nodiscard]] std::uint32_t max_queue_size() const override { return kQueueSize; }
    // virtio-input defines no feature bits.
    [[nodiscard]] std::uint64_t features() const override { return 0; }
    [[nodiscard]] std::uint64_t protocol_features() const override;

    Result<std::vector<std::byte>> read_config(std::uint32_t offset, std::uint32_t size) override;
    Status write_config(std::uint32_t offset, std::span<const std::byte> data) override;
    void reset() override;

    Status queue_started(backend::QueueContext& ctx) override;
    Status process_queue(backend::QueueContext& ctx) override;
    Status handle_event(backend::QueueContext& ctx, std::uint64_t token) override;
    void queue_stopped(backend::QueueContext& ctx) override;

    // The whole config space as the current select/subsel answer it.
    [[nodiscard]] std::array<std::byte, kConfigSize> config_space() const;
    // Events waiting for driver buffers (eventq worker, or a stopped queue).
    [[nodiscard]] std::size_t backlog_size() const noexcept { return backlog_.size(); }

  private:
    // The `u` bytes answering (select_, subsel_); their count is `size`.
    [[nodiscard]] std::vector<std::byte> answer() const;
    Status read_source(backend::QueueContext& ctx);
    void enqueue(const InputEvent& event);
    Status deliver(backend::QueueContext& ctx);
    Status serve_status(backend::QueueContext& ctx);
    void handle_status_chain(const virtq::DescriptorChain& chain);

    std::unique_ptr<EventSource> source_;
    Logger logger_;

    // Control thread only.
    std::uint8_t select_ = 0;
    std::uint8_t subsel_ = 0;

    // eventq worker only (or with every queue stopped).
    EventBacklog backlog_;
    std::vector<InputEvent> incoming_; // reused read buffer
    bool source_watched_ = false;
    bool source_ended_ = false;
    bool warned_small_buffer_ = false;
    // Dropped since delivery last caught up: reported once when dropping
    // starts and once when it ends, not per frame.
    std::size_t dropped_events_ = 0;
    std::size_t dropped_frames_ = 0;
};

} // namespace vl::input
