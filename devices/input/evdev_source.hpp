// SPDX-License-Identifier: Apache-2.0
// The evdev passthrough source: a host input device (/dev/input/eventN)
// read through libevdev. Its name, ids, properties, event codes and axis
// ranges become the virtio-input config; its events go to the driver as
// they come (after a kernel buffer overrun, libevdev's resync events bring
// the driver's state up to date); LED and sound events from the driver's
// status queue are written back to it. With grab, the host's other
// readers (console, compositor) stop seeing its events while we run.
//
// Autorepeat: for a device with EV_REP the driver repeats held keys
// itself (Linux's virtio_input turns on software autorepeat), so the
// host's repeats (EV_KEY value 2) are not passed on - the driver would
// repeat twice - and the driver's EV_REP settings are not written to the
// host device.
#pragma once

#include <libevdev/libevdev.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "input/event_source.hpp"

namespace vl::input
{

struct LibevdevDeleter {
    void operator()(libevdev* dev) const noexcept { libevdev_free(dev); }
};
// Owns a libevdev handle (not its fd).
using LibevdevPtr = std::unique_ptr<libevdev, LibevdevDeleter>;

// The capabilities of a libevdev device, as virtio-input reports them.
[[nodiscard]] InputCapabilities evdev_capabilities(const libevdev* dev);

struct EvdevOptions {
    std::string path; // /dev/input/eventN
    bool grab = false;
};

class EvdevSource final : public EventSource
{
  public:
    // Errors name the node and say what to do (permissions, wrong node,
    // grabbed by someone else).
    static Result<std::unique_ptr<EvdevSource>> open(const EvdevOptions& options, Logger logger);

    [[nodiscard]] const InputCapabilities& capabilities() const override { return caps_; }
    [[nodiscard]] int fd() const override { return fd_.get(); }
    Status read_events(std::vector<InputEvent>& out) override;
    // EV_LED: sets the LED (libevdev_kernel_set_led_value); EV_SND: writes
    // the event (a beep); EV_REP: accepted, not passed on (see above).
    // Codes the device does not have, and other types, are refused.
    Status handle_status(const InputEvent& event) override;

  private:
    EvdevSource(std::string path, Logger logger);
    Status attach(UniqueFd fd);
    Status grab();
    Status set_led(const InputEvent& event);
    Status write_event(const InputEvent& event);
    // Appends `event` unless it is a host autorepeat (or the SYN_REPORT of
    // a frame that held nothing else).
    void forward(const input_event& event, std::vector<InputEvent>& out);

    std::string path_;
    Logger logger_; // libevdev's own messages go here too: keep its address
    // Declared before dev_: libevdev is freed before its fd closes. Closing
    // it also ends a grab.
    UniqueFd fd_;
    // libevdev is not thread-safe: the event queue's worker reads through
    // it while the status queue's worker sets LEDs (which updates its
    // state). mutex_ protects dev_ and syncing_.
    std::mutex mutex_;
    LibevdevPtr dev_;
    bool syncing_ = false;         // reading libevdev's resync events after SYN_DROPPED
    bool frame_dropped_ = false;   // this frame had a host repeat, not passed on
    bool frame_forwarded_ = false; // this frame had an event passed on
    bool drop_repeats_ = false;    // the device has EV_REP (constant)
    InputCapabilities caps_;
};

} // namespace vl::input
