// SPDX-License-Identifier: Apache-2.0
#include "backend/program.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>

#include "backend/daemon.hpp"
#include "base/service_notify.hpp"
#include "base/unique_fd.hpp"

#ifndef VL_VERSION
#error "VL_VERSION must be defined by the build"
#endif

namespace vl::backend
{

namespace
{

// --poll-us at most: a second of spinning is more than any latency gain.
constexpr std::uint64_t kMaxPollMicroseconds = 1'000'000;

Error usage(std::string message)
{
    return Error(std::move(message), EINVAL);
}

const OptionSpec* find_long(std::span<const OptionSpec> options, std::string_view name)
{
    auto it = std::find_if(options.begin(), options.end(),
                           [&](const OptionSpec& o) { return o.long_name == name; });
    return it == options.end() ? nullptr : &*it;
}

const OptionSpec* find_short(std::span<const OptionSpec> options, char name)
{
    auto it = std::find_if(options.begin(), options.end(),
                           [&](const OptionSpec& o) { return o.short_name == name; });
    return it == options.end() ? nullptr : &*it;
}

std::string json_string(std::string_view s)
{
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\')
            out += '\\';
        if (static_cast<unsigned char>(c) < 0x20)
            out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        else
            out += c;
    }
    return out + "\"";
}

// "  -s, --socket-path=PATH" (the left column of --help).
std::string option_synopsis(const OptionSpec& o)
{
    std::string s = o.short_name != 0 ? fmt::format("  -{}, ", o.short_name) : "      ";
    s += "--" + o.long_name;
    if (!o.value_name.empty())
        s += "=" + o.value_name;
    return s;
}

} // namespace

// ---------------------------------------------------------------------------
// CommandLine

Result<CommandLine> CommandLine::parse(std::span<const std::string> args,
                                       std::span<const OptionSpec> options)
{
    CommandLine cl;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg == "--") {
            if (i + 1 < args.size())
                return usage(fmt::format("unexpected argument '{}'", args[i + 1]));
            break;
        }
        const OptionSpec* spec = nullptr;
        std::optional<std::string> inline_value;
        std::string shown; // the option as the user wrote it
        if (arg.starts_with("--")) {
            const std::size_t eq = arg.find('=');
            const std::string name = arg.substr(2, eq == std::string::npos ? eq : eq - 2);
            if (eq != std::string::npos)
                inline_value = arg.substr(eq + 1);
            spec = find_long(options, name);
            shown = "--" + name;
        } else if (arg.size() >= 2 && arg[0] == '-') {
            spec = find_short(options, arg[1]);
            if (arg.size() > 2)
                inline_value = arg.substr(2);
            shown = arg.substr(0, 2);
        } else {
            return usage(fmt::format("unexpected argument '{}' (options start with -)", arg));
        }
        if (spec == nullptr)
            return usage(fmt::format("unknown option {}", shown));
        if (cl.values_.contains(spec->long_name) && !spec->repeatable)
            return usage(fmt::format("--{} is given more than once", spec->long_name));
        if (spec->value_name.empty()) {
            if (inline_value && arg.starts_with("--"))
                return usage(fmt::format("--{} takes no value", spec->long_name));
            if (inline_value) // -hV: bundled flags are not supported
                return usage(fmt::format("unknown option {} (give short options separately)", arg));
            cl.values_[spec->long_name] = "";
            continue;
        }
        if (!inline_value) {
            if (i + 1 >= args.size())
                return usage(
                    fmt::format("--{} needs a value ({})", spec->long_name, spec->value_name));
            inline_value = args[++i];
        }
        cl.values_[spec->long_name] = *inline_value;
        if (spec->repeatable)
            cl.repeated_[spec->long_name].push_back(*inline_value);
    }
    return cl;
}

bool CommandLine::has(std::string_view long_name) const
{
    return values_.find(long_name) != values_.end();
}

std::optional<std::string> CommandLine::value(std::string_view long_name) const
{
    auto it = values_.find(long_name);
    if (it == values_.end())
        return std::nullopt;
    return it->second;
}

std::vector<std::string> CommandLine::values(std::string_view long_name) const
{
    auto it = repeated_.find(long_name);
    return it == repeated_.end() ? std::vector<std::string>{} : it->second;
}

Result<std::optional<std::uint64_t>> CommandLine::number(std::string_view long_name,
                                                         std::string_view what) const
{
    auto text = value(long_name);
    if (!text)
        return std::optional<std::uint64_t>();
    std::uint64_t n = 0;
    const char* end = text->data() + text->size();
    auto [ptr, ec] = std::from_chars(text->data(), end, n, 10);
    if (text->empty() || ec == std::errc::invalid_argument || ptr != end)
        return usage(
            fmt::format("--{} wants a whole number of {}, got '{}'", long_name, what, *text));
    if (ec == std::errc::result_out_of_range)
        return usage(fmt::format("--{} {} is too large", long_name, *text));
    return std::optional<std::uint64_t>(n);
}

// ---------------------------------------------------------------------------
// Common options

std::vector<OptionSpec> common_options()
{
    return {
        {"socket-path", 's', "PATH", "listen for the front-end on the Unix socket PATH (required)"},
        {"log-level", 'l', "LEVEL", "error, warn, info (default), debug or trace"},
        {"poll-us", 0, "N",
         fmt::format("after the last request, keep looking for work for N microseconds before "
                     "sleeping (0 to {}; default 0): lower latency, but a queue's thread keeps "
                     "its CPU busy meanwhile",
                     kMaxPollMicroseconds)},
        {"print-capabilities", 0, "", "print the back-end's capabilities as JSON and exit"},
        {"version", 'V', "", "print the version and exit"},
        {"help", 'h', "", "print this help and exit"},
    };
}

std::vector<OptionSpec> all_options(const ProgramInfo& info)
{
    std::vector<OptionSpec> all = common_options();
    all.insert(all.begin() + 1, info.options.begin(), info.options.end());
    return all;
}

Result<CommonConfig> CommonConfig::from(const CommandLine& command_line)
{
    CommonConfig config;
    auto path = command_line.value("socket-path");
    if (!path)
        return usage("missing --socket-path PATH: the Unix socket on which to wait for the "
                     "front-end");
    // sockaddr_un holds the path and its terminating NUL.
    constexpr std::size_t kMaxPath = sizeof(sockaddr_un::sun_path) - 1;
    if (path->empty() || path->size() > kMaxPath)
        return usage(fmt::format("--socket-path '{}' is {} bytes; a socket path must be 1 to {} "
                                 "bytes (choose a shorter one)",
                                 *path, path->size(), kMaxPath));
    config.socket_path = *path;
    VL_TRY_ASSIGN(const auto poll, command_line.number("poll-us", "microseconds"));
    if (poll) {
        if (*poll > kMaxPollMicroseconds)
            return usage(fmt::format("--poll-us {} is more than {} (one second)", *poll,
                                     kMaxPollMicroseconds));
        config.poll_time = std::chrono::microseconds(*poll);
    }
    if (auto level = command_line.value("log-level")) {
        auto parsed = parse_log_level(*level);
        if (!parsed)
            return usage(fmt::format("unknown --log-level '{}' (use error, warn, info, debug or "
                                     "trace)",
                                     *level));
        config.log_level = *parsed;
    }
    return config;
}

// ---------------------------------------------------------------------------
// Texts

std::string usage_text(const ProgramInfo& info)
{
    std::string text = fmt::format("Usage: {} --socket-path=PATH [OPTIONS]\n\n{}\n\nOptions:\n",
                                   info.name, info.summary);
    const std::vector<OptionSpec> options = all_options(info);
    std::size_t width = 0;
    for (const OptionSpec& o : options)
        width = std::max(width, option_synopsis(o).size());
    for (const OptionSpec& o : options)
        text += fmt::format("{:<{}}  {}\n", option_synopsis(o), width, o.help);
    text += "\nExit status: 0 after SIGTERM or SIGINT (and after --help, --version,\n"
            "--print-capabilities); 1 on a runtime error; 2 on bad usage.\n";
    return text;
}

std::string version_text(const ProgramInfo& info)
{
    return fmt::format("{} (virtio-loopback) {}\n", info.name, VL_VERSION);
}

std::string capabilities_json(const ProgramInfo& info)
{
    std::string json = "{\n  \"type\": " + json_string(info.backend_type);
    if (!info.capability_features.empty()) {
        json += ",\n  \"features\": [";
        for (std::size_t i = 0; i < info.capability_features.size(); ++i)
            json += (i == 0 ? "\n    " : ",\n    ") + json_string(info.capability_features[i]);
        json += "\n  ]";
    }
    return json + "\n}\n";
}

// ---------------------------------------------------------------------------
// Running

namespace detail
{

namespace
{

sigset_t termination_signals()
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return set;
}

} // namespace

std::variant<int, Prepared> prepare(const ProgramInfo& info, int argc, char** argv)
{
    std::vector<std::string> args(argv + 1, argv + argc);
    // The conventions say other options and arguments are ignored then.
    if (std::find(args.begin(), args.end(), "--print-capabilities") != args.end()) {
        std::fputs(capabilities_json(info).c_str(), stdout);
        return 0;
    }
    const std::vector<OptionSpec> options = all_options(info);
    auto command_line = CommandLine::parse(args, options);
    if (!command_line)
        return report(info, {ExitCode::usage, command_line.error()});
    if (command_line->has("help")) {
        std::fputs(usage_text(info).c_str(), stdout);
        return 0;
    }
    if (command_line->has("version")) {
        std::fputs(version_text(info).c_str(), stdout);
        return 0;
    }
    auto common = CommonConfig::from(*command_line);
    if (!common)
        return report(info, {ExitCode::usage, common.error()});
    // Before any thread: threads inherit the mask, so the signals wait in
    // the daemon's signalfd instead of killing the process mid-teardown.
    sigset_t set = termination_signals();
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
    // A front-end that closes its end of a pipe-based eventfd must not kill us.
    ::signal(SIGPIPE, SIG_IGN);
    return Prepared{std::move(command_line).value(), std::move(common).value()};
}

int report(const ProgramInfo& info, const ProgramError& error)
{
    std::fprintf(stderr, "%s: %s\n", info.name.c_str(), error.error.message().c_str());
    if (error.code == ExitCode::usage)
        std::fprintf(stderr, "Try '%s --help' for more information.\n", info.name.c_str());
    return static_cast<int>(error.code);
}

int serve(const ProgramInfo& info, Device& device, const CommonConfig& common, const Logger& logger)
{
    sigset_t set = termination_signals();
    UniqueFd signals(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals)
        return report(info, {ExitCode::runtime_error, Error::from_errno("signalfd")});
    DaemonOptions options;
    options.socket_path = common.socket_path;
    options.session.poll_time = common.poll_time;
    auto daemon = Daemon::listen(device, options, logger);
    if (!daemon)
        return report(info, {ExitCode::runtime_error, daemon.error()});
    // The socket accepts front-ends from here on: a Type=notify unit is up.
    notify_service_ready(fmt::format("listening on {}", common.socket_path));
    const int stop_fds[] = {signals.get()};
    Status served = (*daemon)->serve(stop_fds);
    notify_service_stopping();
    if (!served)
        return report(info, {ExitCode::runtime_error, served.error()});
    signalfd_siginfo signal_info{};
    if (::read(signals.get(), &signal_info, sizeof(signal_info)) == sizeof(signal_info))
        logger.info("received SIG{}; exiting",
                    sigabbrev_np(static_cast<int>(signal_info.ssi_signo)));
    return static_cast<int>(ExitCode::ok);
}

} // namespace detail

} // namespace vl::backend
