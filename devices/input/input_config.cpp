// SPDX-License-Identifier: Apache-2.0
#include "input/input_config.hpp"

#include <fmt/format.h>

#include <cerrno>

namespace vl::input
{

namespace
{

Error usage(std::string message)
{
    return Error(std::move(message), EINVAL);
}

constexpr std::size_t kMaxName = 128; // the config union holds the name

Result<EvdevOptions> evdev_options(const backend::CommandLine& cl)
{
    for (const char* option : {"name", "emulate"})
        if (cl.has(option))
            return usage(fmt::format("--{} is for --synthetic; with --evdev-path the name and "
                                     "events are the host device's",
                                     option));
    EvdevOptions options;
    options.path = *cl.value("evdev-path");
    options.grab = cl.has("grab");
    if (options.path.empty())
        return usage("--evdev-path needs the device node, /dev/input/eventN");
    return options;
}

Result<SyntheticOptions> synthetic_options(const backend::CommandLine& cl)
{
    if (cl.has("grab"))
        return usage("--grab is for --evdev-path: a synthetic source has no host device to grab");
    SyntheticOptions options;
    options.fifo_path = *cl.value("synthetic");
    if (options.fifo_path.empty())
        return usage("--synthetic needs the path of the FIFO to create");
    if (auto name = cl.value("name")) {
        if (name->empty() || name->size() > kMaxName)
            return usage(fmt::format("--name must be 1 to {} bytes (virtio-input's limit), got "
                                     "{}",
                                     kMaxName, name->size()));
        options.name = *name;
    }
    if (auto list = cl.value("emulate")) {
        auto set = SyntheticSet::parse(*list);
        if (!set)
            return usage("--emulate: " + set.error().message());
        options.set = *set;
    }
    return options;
}

} // namespace

std::vector<backend::OptionSpec> input_options()
{
    return {
        {"evdev-path", 0, "DEVICE",
         "pass through the host input device DEVICE (/dev/input/eventN)"},
        {"grab", 0, "", "with --evdev-path: take the device for ourselves (EVIOCGRAB)"},
        {"synthetic", 0, "FIFO",
         "read events as text lines from FIFO (created if missing; see above)"},
        {"name", 0, "NAME",
         fmt::format("with --synthetic: the device name (default \"{}\")", kDefaultSyntheticName)},
        {"emulate", 0, "LIST",
         "with --synthetic: what it plays, keyboard,mouse,touch or a subset (default: all)"},
        {"backlog", 0, "EVENTS",
         fmt::format("events kept while the driver has no buffers (default {})",
                     kDefaultBacklogEvents)},
    };
}

std::string input_summary()
{
    return fmt::format(
        R"(Serves a virtio-input device on a vhost-user socket, one front-end at a time.
Its events come from a host evdev device (--evdev-path: its name, ids and
events become the device's; LED and sound events from the driver go back to
it) or from text lines written into a FIFO (--synthetic). Give one of them.
Events the driver has no buffers for wait, up to --backlog; beyond that the
oldest whole frames (events up to a SYN_REPORT) are dropped.

Synthetic source: one event per line, written into the FIFO by any number
of writers (echo 'key KEY_A 1' > FIFO). When the last writer closes it, line
numbers start again at 1. Bad lines are logged with their number and skipped.
  key CODE VALUE    key or button; CODE KEY_*, BTN_* or a number; VALUE 0, 1, 2
  btn CODE VALUE    the same as key
  rel CODE VALUE    relative axis: rel REL_X -5
  abs CODE VALUE    absolute axis: abs ABS_X 1000
  syn               SYN_REPORT: ends a frame (nothing is added for you)
  TYPE CODE VALUE   any event: EV_KEY KEY_A 1, or numbers: 1 30 1
  # comment         ignored, as are blank lines
It advertises (--emulate picks from these):
  keyboard  every named key code from KEY_ESC (1) to KEY_MICMUTE (248);
            LED_NUML, LED_CAPSL, LED_SCROLLL (their changes are logged)
  mouse     REL_X, REL_Y, REL_WHEEL; BTN_LEFT, BTN_RIGHT, BTN_MIDDLE
  touch     ABS_X, ABS_Y from 0 to {}; BTN_TOUCH; INPUT_PROP_DIRECT
and the ids bustype BUS_VIRTUAL (6), vendor 0, product 0, version 1.)",
        kTouchMax);
}

Result<InputConfig> InputConfig::from_command_line(const backend::CommandLine& command_line)
{
    const bool evdev = command_line.has("evdev-path");
    const bool synthetic = command_line.has("synthetic");
    if (evdev == synthetic)
        return usage(evdev ? "give either --evdev-path or --synthetic, not both"
                           : "missing the event source: --evdev-path /dev/input/eventN or "
                             "--synthetic FIFO");
    InputConfig config;
    if (evdev) {
        VL_TRY_ASSIGN(config.source, evdev_options(command_line));
    } else {
        VL_TRY_ASSIGN(config.source, synthetic_options(command_line));
    }
    VL_TRY_ASSIGN(auto backlog, command_line.number("backlog", "events"));
    if (backlog) {
        // A frame of a multi-touch screen can take a few hundred events.
        if (*backlog < 64 || *backlog > (1U << 20))
            return usage(
                fmt::format("--backlog must be 64 to {} events, got {}", 1U << 20, *backlog));
        config.device.backlog_events = *backlog;
    }
    return config;
}

Result<std::unique_ptr<backend::Device>> create_input_device(const InputConfig& config,
                                                             const Logger& logger)
{
    std::unique_ptr<EventSource> source;
    if (const auto* evdev = std::get_if<EvdevOptions>(&config.source)) {
        VL_TRY_ASSIGN(source, EvdevSource::open(*evdev, logger.child("evdev")));
    } else {
        const auto& synthetic = std::get<SyntheticOptions>(config.source);
        VL_TRY_ASSIGN(source, SyntheticSource::create(synthetic, logger.child("synthetic")));
    }
    return std::unique_ptr<backend::Device>(
        std::make_unique<InputDevice>(std::move(source), config.device, logger));
}

} // namespace vl::input
