// SPDX-License-Identifier: Apache-2.0
// virtio-input on top of VhostUserDriver (virtio 1.2, 5.8): the event
// queue (device -> driver, 8-byte events into buffers we keep posted), the
// status queue (driver -> device, e.g. LEDs) and the config space, which
// is read by writing select/subsel and then reading the answer.
#pragma once

#include <linux/virtio_input.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/result.hpp"
#include "posted_buffers.hpp"
#include "vhost_user_driver.hpp"

namespace vl::test_driver
{

inline constexpr std::uint32_t kInputEventQueue = 0;
inline constexpr std::uint32_t kInputStatusQueue = 1;
inline constexpr std::size_t kInputEventSize = sizeof(virtio_input_event);                // 8
inline constexpr std::uint32_t kInputConfigSize = sizeof(virtio_input_config);            // 136
inline constexpr std::uint32_t kInputConfigDataOffset = offsetof(virtio_input_config, u); // 8
inline constexpr std::uint32_t kInputConfigDataMax = sizeof(virtio_input_config::u);      // 128

static_assert(kInputEventSize == 8 && kInputConfigSize == 136 && kInputConfigDataOffset == 8);

// struct virtio_input_event in host byte order (the evdev triple).
struct InputEvent {
    std::uint16_t type = 0;
    std::uint16_t code = 0;
    std::uint32_t value = 0;

    friend bool operator==(const InputEvent&, const InputEvent&) = default;
};

struct InputDevIds {
    std::uint16_t bustype = 0;
    std::uint16_t vendor = 0;
    std::uint16_t product = 0;
    std::uint16_t version = 0;
};

struct InputAbsInfo {
    std::uint32_t min = 0;
    std::uint32_t max = 0;
    std::uint32_t fuzz = 0;
    std::uint32_t flat = 0;
    std::uint32_t res = 0;
};

std::array<std::byte, kInputEventSize> encode_input_event(const InputEvent& event);
InputEvent decode_input_event(std::span<const std::byte, kInputEventSize> bytes);

// The answer part of a virtio_input_config read back after selecting
// (select, subsel): its `size` bytes of u. Errors if the bytes are not a
// full config, if they answer another selection, or if size exceeds 128.
Result<std::vector<std::byte>> parse_input_config(std::span<const std::byte> config,
                                                  std::uint8_t select, std::uint8_t subsel);
Result<InputDevIds> parse_input_devids(std::span<const std::byte> data);
Result<InputAbsInfo> parse_input_absinfo(std::span<const std::byte> data);

struct InputOptions {
    ConnectOptions connect;
    std::uint32_t queue_size = 64;
    bool event_idx = true;
    // Event buffers kept posted on the event queue (1 .. queue_size).
    std::uint32_t event_buffers = 64;
    // Longest wait for a status-queue buffer to come back.
    std::chrono::milliseconds request_timeout{5000};
};

class InputDriver
{
  public:
    // Connects, starts both queues and posts the event buffers.
    static Result<InputDriver> open(const std::string& socket_path, const InputOptions& options,
                                    Logger logger);
    // On a connected driver that has not been started yet.
    static Result<InputDriver> start(VhostUserDriver driver, const InputOptions& options);

    [[nodiscard]] VhostUserDriver& driver() noexcept { return driver_; }

    // The `size` data bytes the device answers for (select, subsel):
    // SET_CONFIG of the two selector bytes, then GET_CONFIG of the whole
    // structure. An empty answer means "nothing there" (for example an
    // event type the device does not generate).
    Result<std::vector<std::byte>> query_config(std::uint8_t select, std::uint8_t subsel);
    Result<std::string> name();
    Result<std::string> serial();
    Result<InputDevIds> device_ids();
    Result<std::vector<std::byte>> property_bits();
    // The event codes the device generates for event `type` (EV_KEY, ...).
    Result<std::vector<std::byte>> event_bits(std::uint8_t type);
    // nullopt if the device reports no info for `axis`.
    Result<std::optional<InputAbsInfo>> abs_info(std::uint8_t axis);

    // Collects events until `max_events` arrived or `timeout` passed in
    // total; returns those that came (possibly none: that is not an error
    // for an input device). Each consumed buffer is posted again.
    Result<std::vector<InputEvent>> read_events(std::size_t max_events,
                                                std::chrono::milliseconds timeout);

    // Sends one event on the status queue and waits until the device took
    // it.
    Status send_status(const InputEvent& event);

  private:
    InputDriver(VhostUserDriver driver, const InputOptions& options);

    VhostUserDriver driver_;
    InputOptions options_;
    PostedBuffers events_{kInputEventQueue};
};

} // namespace vl::test_driver
