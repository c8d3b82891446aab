// SPDX-License-Identifier: Apache-2.0
#include "input/evdev_source.hpp"

#include <fcntl.h>
#include <linux/input.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace vl::input
{

namespace
{

// What to do about a failed open(2) of an evdev node.
std::string open_hint(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return " — run as root or add the user to the 'input' group";
    case ENOENT:
    case ENODEV:
    case ENXIO:
        return " — see 'ls -l /dev/input/by-id /dev/input/by-path' or /proc/bus/input/devices "
               "for the devices there are";
    case EISDIR:
        return " — give the device node, /dev/input/eventN";
    default:
        return "";
    }
}

// libevdev's messages (a device's own, e.g. about SYN_DROPPED handling) go
// to the source's logger instead of stderr.
void log_from_libevdev(const libevdev* /*dev*/, libevdev_log_priority priority, void* data,
                       const char* /*file*/, int /*line*/, const char* /*func*/, const char* format,
                       va_list args)
{
    std::array<char, 512> text{};
    std::vsnprintf(text.data(), text.size(), format, args);
    std::string_view message(text.data());
    while (message.ends_with('\n'))
        message.remove_suffix(1);
    const LogLevel level = priority == LIBEVDEV_LOG_ERROR  ? LogLevel::error
                           : priority == LIBEVDEV_LOG_INFO ? LogLevel::info
                                                           : LogLevel::debug;
    static_cast<const Logger*>(data)->log(level, "libevdev: {}", message);
}

InputEvent from_kernel(const input_event& e)
{
    return InputEvent{e.type, e.code, e.value};
}

} // namespace

InputCapabilities evdev_capabilities(const libevdev* dev)
{
    InputCapabilities caps;
    const char* name = libevdev_get_name(dev);
    const char* uniq = libevdev_get_uniq(dev);
    caps.name = name != nullptr ? name : "";
    caps.serial = uniq != nullptr ? uniq : "";
    caps.ids = DeviceIds{static_cast<std::uint16_t>(libevdev_get_id_bustype(dev)),
                         static_cast<std::uint16_t>(libevdev_get_id_vendor(dev)),
                         static_cast<std::uint16_t>(libevdev_get_id_product(dev)),
                         static_cast<std::uint16_t>(libevdev_get_id_version(dev))};
    for (unsigned prop = 0; prop <= INPUT_PROP_MAX; ++prop)
        if (libevdev_has_property(dev, prop) != 0)
            caps.properties.set(prop);
    for (unsigned type = EV_SYN + 1; type <= EV_MAX; ++type) {
        // virtio-input cannot upload force-feedback effects: advertising
        // them would promise what the driver cannot use.
        if (type == EV_FF || type == EV_FF_STATUS || libevdev_has_event_type(dev, type) == 0)
            continue;
        const int max = libevdev_event_type_get_max(type);
        for (int code = 0; code <= std::min<int>(max, kMaxBitmapBits - 1); ++code) {
            if (libevdev_has_event_code(dev, type, static_cast<unsigned>(code)) == 0)
                continue;
            const auto c = static_cast<std::uint16_t>(code);
            caps.add(static_cast<std::uint8_t>(type), c);
            if (type != EV_ABS)
                continue;
            const input_absinfo* info = libevdev_get_abs_info(dev, static_cast<unsigned>(code));
            if (info != nullptr)
                caps.abs[static_cast<std::uint8_t>(code)] =
                    AbsInfo{info->minimum, info->maximum, info->fuzz, info->flat, info->resolution};
        }
    }
    return caps;
}

// ---------------------------------------------------------------------------
// EvdevSource

EvdevSource::EvdevSource(std::string path, Logger logger)
    : path_(std::move(path)), logger_(std::move(logger))
{
}

Result<std::unique_ptr<EvdevSource>> EvdevSource::open(const EvdevOptions& options, Logger logger)
{
    std::unique_ptr<EvdevSource> source(new EvdevSource(options.path, std::move(logger)));
    // Read-write: LED and sound events from the driver are written to it.
    UniqueFd fd(::open(options.path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
        const int err = errno;
        return Error(
            fmt::format("cannot open {}: {}{}", options.path, std::strerror(err), open_hint(err)),
            err);
    }
    VL_TRY(source->attach(std::move(fd)));
    if (options.grab)
        VL_TRY(source->grab());
    source->caps_ = evdev_capabilities(source->dev_.get());
    source->drop_repeats_ = source->caps_.codes.contains(EV_REP);
    const InputCapabilities& caps = source->caps_;
    source->logger_.info("passing through {} \"{}\" (bus {:#06x} vendor {:#06x} product {:#06x} "
                         "version {:#06x}){}",
                         options.path, caps.name, caps.ids.bustype, caps.ids.vendor,
                         caps.ids.product, caps.ids.version,
                         options.grab ? ", grabbed: the host no longer sees its events" : "");
    return source;
}

Status EvdevSource::attach(UniqueFd fd)
{
    dev_.reset(libevdev_new());
    if (!dev_)
        return Error("libevdev_new: out of memory", ENOMEM);
    libevdev_set_device_log_function(dev_.get(), log_from_libevdev, LIBEVDEV_LOG_INFO, &logger_);
    fd_ = std::move(fd);
    const int rc = libevdev_set_fd(dev_.get(), fd_.get());
    if (rc < 0)
        return Error(fmt::format("{} is not an evdev device ({}) — give an event node, "
                                 "/dev/input/eventN",
                                 path_, std::strerror(-rc)),
                     -rc);
    return ok_status();
}

Status EvdevSource::grab()
{
    const int rc = libevdev_grab(dev_.get(), LIBEVDEV_GRAB);
    if (rc == -EBUSY)
        return Error(fmt::format("cannot grab {}: another program (a compositor, another "
                                 "vhost-user-input) has grabbed it — stop it or leave out "
                                 "--grab",
                                 path_),
                     EBUSY);
    if (rc < 0)
        return Error(fmt::format("cannot grab {}: {}", path_, std::strerror(-rc)), -rc);
    return ok_status();
}

Status EvdevSource::read_events(std::vector<InputEvent>& out)
{
    std::lock_guard lock(mutex_);
    // Until libevdev says -EAGAIN: events it has buffered would otherwise
    // wait, unseen by epoll, for the next kernel event.
    for (;;) {
        input_event event{};
        const unsigned flags = syncing_ ? LIBEVDEV_READ_FLAG_SYNC : LIBEVDEV_READ_FLAG_NORMAL;
        const int rc = libevdev_next_event(dev_.get(), flags, &event);
        if (rc == LIBEVDEV_READ_STATUS_SUCCESS) {
            forward(event, out);
        } else if (rc == LIBEVDEV_READ_STATUS_SYNC) {
            // The first is SYN_DROPPED itself (not for the driver); then
            // come the events that turn the old state into the current one.
            if (syncing_)
                forward(event, out);
            else
                logger_.warn("the kernel dropped events of {} (read too slowly); bringing the "
                             "driver's state up to date",
                             path_);
            syncing_ = true;
        } else if (rc == -EAGAIN) {
            if (!std::exchange(syncing_, false))
                return ok_status();
        } else if (rc != -EINTR) {
            if (rc == -ENODEV)
                return Error(path_ + " went away (unplugged or removed)", ENODEV);
            return Error(fmt::format("reading {}: {}", path_, std::strerror(-rc)), -rc);
        }
    }
}

void EvdevSource::forward(const input_event& event, std::vector<InputEvent>& out)
{
    if (drop_repeats_ && event.type == EV_KEY && event.value == 2) {
        frame_dropped_ = true;
        return;
    }
    if (event.type == EV_SYN && event.code == SYN_REPORT) {
        const bool empty = frame_dropped_ && !frame_forwarded_;
        frame_dropped_ = false;
        frame_forwarded_ = false;
        if (empty)
            return;
    } else {
        frame_forwarded_ = true;
    }
    out.push_back(from_kernel(event));
}

Status EvdevSource::handle_status(const InputEvent& event)
{
    if (!caps_.supports(event.type, event.code))
        return Error(fmt::format("{} has no such output, not passed on", path_));
    switch (event.type) {
    case EV_LED:
        return set_led(event);
    case EV_SND:
        return write_event(event);
    case EV_REP:
        logger_.debug("the driver's autorepeat setting {} stays the driver's", describe(event));
        return ok_status();
    default:
        return Error("not a status event (LED, sound or autorepeat), not passed on");
    }
}

Status EvdevSource::set_led(const InputEvent& event)
{
    std::lock_guard lock(mutex_);
    const int rc = libevdev_kernel_set_led_value(
        dev_.get(), event.code, event.value != 0 ? LIBEVDEV_LED_ON : LIBEVDEV_LED_OFF);
    if (rc < 0)
        return Error(fmt::format("cannot set the LED on {}: {}", path_, std::strerror(-rc)), -rc);
    return ok_status();
}

Status EvdevSource::write_event(const InputEvent& event)
{
    // As the kernel's own consumers do: the event, then SYN_REPORT. evdev
    // takes whole input_events only, so a write is all or nothing.
    std::array<input_event, 2> events{};
    events[0].type = event.type;
    events[0].code = event.code;
    events[0].value = event.value;
    events[1].type = EV_SYN;
    events[1].code = SYN_REPORT;
    ssize_t n = 0;
    do {
        n = ::write(fd_.get(), events.data(), sizeof(events));
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return Error::from_errno("cannot write to " + path_);
    if (static_cast<std::size_t>(n) != sizeof(events))
        return Error(fmt::format("short write to {}: {} of {} bytes", path_, n, sizeof(events)),
                     EIO);
    return ok_status();
}

} // namespace vl::input
