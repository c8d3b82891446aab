// SPDX-License-Identifier: Apache-2.0
// What the virtio-input device (input_device.hpp) needs from whatever
// produces its events: the capabilities that become the config space, and
// a readable fd with a non-blocking read of evdev events. Two sources
// implement it: a host evdev node (evdev_source.hpp) and a FIFO of text
// lines (synthetic_source.hpp).
#pragma once

#include <bitset>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/result.hpp"

namespace vl::input
{

// One evdev event (struct virtio_input_event in host byte order). The value
// is signed as in evdev (relative motion, absolute positions).
struct InputEvent {
    std::uint16_t type = 0;
    std::uint16_t code = 0;
    std::int32_t value = 0;

    friend bool operator==(const InputEvent&, const InputEvent&) = default;
};

// EV_SYN / SYN_REPORT: the end of a frame of events that belong together.
[[nodiscard]] bool is_frame_end(const InputEvent& event) noexcept;
// "EV_KEY KEY_A 1" (libevdev's names; numbers where there is none).
[[nodiscard]] std::string describe(const InputEvent& event);

// The bitmaps of the config space hold at most this many bits (the 128-byte
// union), enough for every evdev code space (KEY_MAX is 0x2ff).
inline constexpr std::size_t kMaxBitmapBits = 128 * 8;
using CodeBits = std::bitset<kMaxBitmapBits>;

struct DeviceIds {
    std::uint16_t bustype = 0;
    std::uint16_t vendor = 0;
    std::uint16_t product = 0;
    std::uint16_t version = 0;

    friend bool operator==(const DeviceIds&, const DeviceIds&) = default;
};

// struct input_absinfo without the current value.
struct AbsInfo {
    std::int32_t min = 0;
    std::int32_t max = 0;
    std::int32_t fuzz = 0;
    std::int32_t flat = 0;
    std::int32_t res = 0;

    friend bool operator==(const AbsInfo&, const AbsInfo&) = default;
};

// What an input device is and generates: the contents of its virtio-input
// config space (virtio 1.2, 5.8.4).
struct InputCapabilities {
    std::string name;   // ID_NAME; at most 128 bytes are reported
    std::string serial; // ID_SERIAL; empty: none
    DeviceIds ids;
    CodeBits properties; // INPUT_PROP_*
    // Event type (EV_KEY, ...) -> the codes it generates. EV_SYN is implied
    // for every device and never listed.
    std::map<std::uint8_t, CodeBits> codes;
    std::map<std::uint8_t, AbsInfo> abs; // ABS_* axis -> its range

    // Adds `code` of `type` (both within the bitmaps); returns *this.
    InputCapabilities& add(std::uint8_t type, std::uint16_t code);
    InputCapabilities& add_abs(std::uint8_t axis, const AbsInfo& info);
    // Whether the device generates (type, code); EV_SYN's SYN_REPORT always.
    [[nodiscard]] bool supports(std::uint16_t type, std::uint16_t code) const;
};

// The producer of a device's events.
//
// Threading: read_events() runs on the event queue's worker thread,
// handle_status() on the status queue's, possibly at the same time; a
// source synchronizes what the two share. capabilities() and fd() are
// constant and may be called from any thread.
class EventSource
{
  public:
    virtual ~EventSource() = default;
    EventSource(const EventSource&) = delete;
    EventSource& operator=(const EventSource&) = delete;

    [[nodiscard]] virtual const InputCapabilities& capabilities() const = 0;

    // Readable (level-triggered) when read_events() may have events. The
    // same fd for the source's whole life.
    [[nodiscard]] virtual int fd() const = 0;

    // Appends the events that can be read without blocking. An error means
    // the source ended (its device went away) and will produce no more; the
    // events appended before it are valid.
    virtual Status read_events(std::vector<InputEvent>& out) = 0;

    // An event from the driver's status queue (EV_LED, EV_SND, ...): pass
    // it on, or log it if there is nothing to pass it to. An error says why
    // it could not be passed on (the device logs it).
    virtual Status handle_status(const InputEvent& event) = 0;

  protected:
    EventSource() = default;
};

} // namespace vl::input
