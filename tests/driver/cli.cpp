// SPDX-License-Identifier: Apache-2.0
#include "cli.hpp"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

namespace vl::test_driver::cli
{

namespace
{

// One option: how it is spelled, whether it takes a value, and what it does
// with it (writing into the options struct it was bound to).
struct Option {
    std::string_view long_name;  // "--size"
    char short_name = 0;         // 's', or 0
    std::string_view value_name; // "MIB"; empty for a flag
    std::string_view help;
    std::function<Status(std::string_view)> apply;
};

struct CommandSpec {
    std::string_view name;
    std::string_view summary;
    std::string_view details;
    CommandOptions (*make)();
    std::vector<Option> (*bind)(CommandOptions&);
};

Error usage(std::string message)
{
    return Error(std::move(message), EINVAL);
}

Result<std::uint64_t> parse_u64(std::string_view text, std::string_view option, std::uint64_t min,
                                std::uint64_t max)
{
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty())
        return usage(fmt::format("{}: '{}' is not a number", option, text));
    if (value < min || value > max)
        return usage(fmt::format("{}: {} is out of range ({} to {})", option, value, min, max));
    return value;
}

template <class T>
std::function<Status(std::string_view)> number(T& target, std::string_view option,
                                               std::uint64_t min,
                                               std::uint64_t max = std::numeric_limits<T>::max())
{
    return [&target, option, min, max](std::string_view text) -> Status {
        VL_TRY_ASSIGN(std::uint64_t value, parse_u64(text, option, min, max));
        target = static_cast<T>(value);
        return ok_status();
    };
}

template <class T>
std::function<Status(std::string_view)>
optional_number(std::optional<T>& target, std::string_view option, std::uint64_t min,
                std::uint64_t max = std::numeric_limits<T>::max())
{
    return [&target, option, min, max](std::string_view text) -> Status {
        VL_TRY_ASSIGN(std::uint64_t value, parse_u64(text, option, min, max));
        target = static_cast<T>(value);
        return ok_status();
    };
}

std::function<Status(std::string_view)> flag(bool& target, bool value)
{
    return [&target, value](std::string_view) -> Status {
        target = value;
        return ok_status();
    };
}

// Seconds, possibly fractional ("0.5"), to milliseconds.
Result<std::chrono::milliseconds> parse_seconds(std::string_view text, std::string_view option)
{
    double seconds = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty() ||
        !std::isfinite(seconds) || seconds < 0 || seconds > 86400)
        return usage(fmt::format("{}: '{}' is not a number of seconds (0 to 86400)", option, text));
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000)));
}

std::vector<Option> global_options(GlobalOptions& g)
{
    return {
        {"--socket", 's', "PATH", "the back-end's vhost-user socket (required)",
         [&g](std::string_view v) -> Status {
             g.socket = std::string(v);
             return ok_status();
         }},
        {"--log-level", 0, "LEVEL", "error, warn (default), info, debug or trace",
         [&g](std::string_view v) -> Status {
             auto level = parse_log_level(v);
             if (!level)
                 return usage(fmt::format("--log-level: '{}' is not one of error, warn, info, "
                                          "debug, trace",
                                          v));
             g.log_level = *level;
             return ok_status();
         }},
        {"--timeout-ms", 0, "MS", "longest wait for one reply or request (default 5000)",
         [&g](std::string_view v) -> Status {
             VL_TRY_ASSIGN(std::uint64_t ms, parse_u64(v, "--timeout-ms", 1, 3600000));
             g.timeout = std::chrono::milliseconds(ms);
             return ok_status();
         }},
        {"--memory", 0, "MIB", "guest memory shared with the back-end (default 64)",
         number(g.memory_mib, "--memory", 1, 65536)},
        {"--queue-size", 0, "N", "entries per virtqueue, a power of two (default 128)",
         [&g](std::string_view v) -> Status {
             VL_TRY_ASSIGN(std::uint64_t n, parse_u64(v, "--queue-size", 1, 32768));
             if ((n & (n - 1)) != 0)
                 return usage(fmt::format("--queue-size: {} is not a power of two", n));
             g.queue_size = static_cast<std::uint32_t>(n);
             return ok_status();
         }},
        {"--no-event-idx", 0, "", "do not negotiate VIRTIO_RING_F_EVENT_IDX",
         flag(g.event_idx, false)},
        {"--no-indirect", 0, "", "do not negotiate VIRTIO_RING_F_INDIRECT_DESC",
         flag(g.indirect, false)},
    };
}

std::vector<Option> no_options(CommandOptions&)
{
    return {};
}

std::vector<Option> blk_verify_options(CommandOptions& c)
{
    auto& o = std::get<BlkVerifyOptions>(c);
    return {
        {"--size", 0, "MIB",
         "region at the start of the disk to test (default 16, or the disk if smaller)",
         optional_number(o.size_mib, "--size", 1, std::uint64_t{1} << 30)},
        {"--queue", 0, "N", "queue to use (default 0)", number(o.queue, "--queue", 0, 255)},
        {"--requests", 0, "N",
         "write requests (default: one per block); each written block is read back",
         optional_number(o.requests, "--requests", 1)},
        {"--qd", 0, "N", "requests in flight at once (default 16)", number(o.qd, "--qd", 1, 32768)},
        {"--request-size", 0, "KIB", "bytes per request in KiB (default 64)",
         number(o.request_kib, "--request-size", 1, 1 << 20)},
        {"--seed", 0, "N", "seed of the data pattern (default: from the clock; printed)",
         optional_number(o.seed, "--seed", 0)},
        {"--no-zeroes", 0, "", "skip the WRITE_ZEROES and DISCARD checks", flag(o.zeroes, false)},
    };
}

std::vector<Option> rng_read_options(CommandOptions& c)
{
    auto& o = std::get<RngReadOptions>(c);
    return {
        {"--bytes", 0, "N", "bytes to read (default 64)",
         number(o.bytes, "--bytes", 1, std::uint64_t{1} << 30)},
        {"--output", 0, "FILE", "write the raw bytes to FILE instead of hex to stdout",
         [&o](std::string_view v) -> Status {
             o.output = std::string(v);
             return ok_status();
         }},
    };
}

std::vector<Option> input_read_options(CommandOptions& c)
{
    auto& o = std::get<InputReadOptions>(c);
    return {
        {"--events", 0, "N", "events to wait for (default 1)",
         number(o.events, "--events", 1, 1000000)},
        {"--timeout", 0, "S", "give up after S seconds in total (default 10)",
         [&o](std::string_view v) -> Status {
             VL_TRY_ASSIGN(o.timeout, parse_seconds(v, "--timeout"));
             return ok_status();
         }},
    };
}

std::vector<Option> console_info_options(CommandOptions& c)
{
    auto& o = std::get<ConsoleInfoOptions>(c);
    return {
        {"--no-multiport", 0, "", "do not accept VIRTIO_CONSOLE_F_MULTIPORT (port 0 only)",
         flag(o.multiport, false)},
    };
}

template <class T> CommandOptions make()
{
    return T{};
}

// The commands. A new one (bench, for instance) is one entry here, its
// options struct in cli.hpp and its run function in main.cpp.
const std::vector<CommandSpec>& commands()
{
    static const std::vector<CommandSpec> table = {
        {"blk-info", "print a virtio-blk back-end's config, features and serial",
         "Reads the config space (GET_CONFIG), negotiates, sends GET_ID.", make<BlkInfoOptions>,
         no_options},
        {"blk-verify", "write a checksummed pattern to a virtio-blk back-end, read it back, verify",
         "Writes self-describing sectors (random order, many in flight), flushes, reads every\n"
         "written block back and checks it; then checks WRITE_ZEROES and DISCARD if offered.\n"
         "DESTROYS the data in the tested region.",
         make<BlkVerifyOptions>, blk_verify_options},
        {"rng-read", "read entropy from a virtio-rng back-end", "", make<RngReadOptions>,
         rng_read_options},
        {"input-info", "print a virtio-input back-end's name, ids and event bits", "",
         make<InputInfoOptions>, no_options},
        {"input-read", "print events from a virtio-input back-end as 'type code value'",
         "Exits 1 if fewer than --events arrived within --timeout.", make<InputReadOptions>,
         input_read_options},
        {"console-info", "print a virtio-console back-end's config and ports",
         "With MULTIPORT: sends DEVICE_READY, answers each PORT_ADD with PORT_READY as\n"
         "Linux does, and prints what the device said of each port (name, console,\n"
         "host side open) and the console size.",
         make<ConsoleInfoOptions>, console_info_options},
    };
    return table;
}

const CommandSpec* find_command(std::string_view name)
{
    for (const CommandSpec& c : commands())
        if (c.name == name)
            return &c;
    return nullptr;
}

std::string option_lines(const std::vector<Option>& options)
{
    std::string out;
    for (const Option& o : options) {
        std::string spelling = o.short_name != 0 ? fmt::format("-{}, {}", o.short_name, o.long_name)
                                                 : fmt::format("    {}", o.long_name);
        if (!o.value_name.empty())
            spelling += " " + std::string(o.value_name);
        out += fmt::format("  {:<26} {}\n", spelling, o.help);
    }
    return out;
}

std::string command_help(const CommandSpec& spec)
{
    CommandOptions scratch = spec.make();
    GlobalOptions global;
    std::string summary(spec.summary);
    summary[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(summary[0])));
    std::string out =
        fmt::format("usage: vl-test-driver -s SOCKET {} [OPTIONS]\n\n{}.\n", spec.name, summary);
    if (!spec.details.empty())
        out += fmt::format("{}\n", spec.details);
    auto options = spec.bind(scratch);
    if (!options.empty())
        out += "\noptions:\n" + option_lines(options);
    out += "\ncommon options:\n" + option_lines(global_options(global));
    out += "  -h, --help                 this help\n";
    return out;
}

const Option* find_option(const std::vector<Option>& options, std::string_view name)
{
    for (const Option& o : options) {
        if (o.long_name == name)
            return &o;
        if (o.short_name != 0 && name.size() == 2 && name[0] == '-' && name[1] == o.short_name)
            return &o;
    }
    return nullptr;
}

Status validate(const Invocation& inv)
{
    if (inv.global.socket.empty())
        return usage("-s SOCKET is required (the back-end's vhost-user socket)");
    if (const auto* v = std::get_if<BlkVerifyOptions>(&inv.command)) {
        const std::uint64_t request = std::uint64_t{v->request_kib} << 10;
        if (v->size_mib) {
            const std::uint64_t region = *v->size_mib << 20;
            if (request > region)
                return usage(fmt::format("--request-size {} KiB is larger than the --size {} "
                                         "MiB region",
                                         v->request_kib, *v->size_mib));
            if (region % request != 0)
                return usage(fmt::format("--size {} MiB is not a whole number of "
                                         "--request-size {} KiB blocks",
                                         *v->size_mib, v->request_kib));
        }
        if (std::uint64_t{v->qd} * request > (inv.global.memory_mib << 20) / 2)
            return usage(fmt::format("--qd {} requests of {} KiB do not fit in half of the "
                                     "--memory {} MiB (rings need room too); raise --memory",
                                     v->qd, v->request_kib, inv.global.memory_mib));
    }
    return ok_status();
}

} // namespace

std::string general_help()
{
    std::string out =
        "usage: vl-test-driver -s SOCKET COMMAND [OPTIONS]\n\n"
        "A user-space virtio driver for vhost-user back-ends: connects to SOCKET, negotiates,\n"
        "shares guest memory and sends virtio requests, with no VM and no kernel involved.\n\n"
        "commands:\n";
    for (const CommandSpec& c : commands())
        out += fmt::format("  {:<12} {}\n", c.name, c.summary);
    GlobalOptions global;
    out += "\ncommon options:\n" + option_lines(global_options(global));
    out += "  -h, --help                 this help (after a command: the command's help)\n";
    out += "\nexit status: 0 success, 1 test failure or back-end error, 2 usage error\n";
    return out;
}

Result<Invocation> parse(std::span<const std::string_view> args)
{
    Invocation inv;
    const std::vector<Option> globals = global_options(inv.global);
    const CommandSpec* spec = nullptr;
    std::vector<Option> command_options;
    bool help = false;

    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i];
        if (arg == "-h" || arg == "--help") {
            help = true;
            continue;
        }
        if (arg.size() < 2 || arg[0] != '-') {
            if (spec != nullptr)
                return usage(fmt::format("unexpected argument '{}'", arg));
            spec = find_command(arg);
            if (spec == nullptr)
                return usage(fmt::format("unknown command '{}'", arg));
            inv.command_name = std::string(spec->name);
            inv.command = spec->make();
            command_options = spec->bind(inv.command);
            continue;
        }
        std::string_view name = arg;
        std::optional<std::string_view> inline_value;
        if (auto eq = arg.find('='); eq != std::string_view::npos && arg.starts_with("--")) {
            name = arg.substr(0, eq);
            inline_value = arg.substr(eq + 1);
        }
        const Option* option = find_option(globals, name);
        if (option == nullptr)
            option = find_option(command_options, name);
        if (option == nullptr)
            return usage(spec != nullptr
                             ? fmt::format("unknown option '{}' for {}", name, spec->name)
                             : fmt::format("unknown option '{}'", name));
        std::string_view value;
        if (!option->value_name.empty()) {
            if (inline_value) {
                value = *inline_value;
            } else if (i + 1 < args.size()) {
                value = args[++i];
            } else {
                return usage(fmt::format("{} needs a value ({})", name, option->value_name));
            }
        } else if (inline_value) {
            return usage(fmt::format("{} takes no value", name));
        }
        VL_TRY(option->apply(value));
    }

    if (help) {
        inv.help = spec != nullptr ? command_help(*spec) : general_help();
        return inv;
    }
    if (spec == nullptr)
        return usage("no command given");
    VL_TRY(validate(inv));
    return inv;
}

} // namespace vl::test_driver::cli
