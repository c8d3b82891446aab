// SPDX-License-Identifier: Apache-2.0
#include "console/console_config.hpp"

#include <sys/un.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <set>

namespace vl::console
{

namespace
{

Error usage(std::string message)
{
    return Error(std::move(message), EINVAL);
}

constexpr std::size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;

} // namespace

Result<PortSpec> PortSpec::parse(std::string_view text)
{
    PortSpec spec;
    std::string_view where = text;
    if (const auto eq = text.find('='); eq != std::string_view::npos) {
        spec.name = std::string(text.substr(0, eq));
        where = text.substr(eq + 1);
        if (spec.name.empty())
            return usage(fmt::format("--port '{}': the name before '=' is empty; leave out "
                                     "'NAME=' for a port without a name",
                                     text));
        if (spec.name.size() > kMaxNameLength)
            return usage(fmt::format("--port: the name '{}...' is {} bytes, at most {} are allowed",
                                     spec.name.substr(0, 16), spec.name.size(), kMaxNameLength));
        const bool printable = std::all_of(spec.name.begin(), spec.name.end(),
                                           [](char c) { return c > ' ' && c < 0x7f && c != '/'; });
        if (!printable)
            return usage(fmt::format("--port '{}': a port name is printable ASCII without spaces "
                                     "or '/' (it becomes a sysfs attribute and a udev link)",
                                     text));
    }
    if (where == "pty") {
        spec.kind = HostKind::pty;
    } else if (where.starts_with("pty:")) {
        spec.kind = HostKind::pty;
        spec.path = std::string(where.substr(4));
        if (spec.path.empty())
            return usage(fmt::format("--port '{}': 'pty:' needs the path of the symlink to "
                                     "create, or use 'pty' alone",
                                     text));
    } else if (where.starts_with("unix:")) {
        spec.kind = HostKind::unix;
        spec.path = std::string(where.substr(5));
        if (spec.path.empty() || spec.path.size() > kMaxSocketPath)
            return usage(fmt::format("--port '{}': a socket path must be 1 to {} bytes", text,
                                     kMaxSocketPath));
    } else {
        return usage(fmt::format("--port '{}': the host side must be 'pty', 'pty:LINK' or "
                                 "'unix:PATH'",
                                 text));
    }
    return spec;
}

std::vector<backend::OptionSpec> console_options()
{
    return {
        {"port", 'p', "[NAME=]pty[:LINK]|[NAME=]unix:PATH",
         fmt::format("add a port (repeatable, up to {}); the first is the console (/dev/hvcN), "
                     "the others /dev/vportNpM. 'pty' creates a pseudo-terminal (its path is "
                     "logged; LINK becomes a symlink to it), 'unix:PATH' listens on a Unix "
                     "socket and bridges one client at a time. NAME shows in "
                     "/sys/class/virtio-ports/*/name (default: one console on a pty)",
                     kMaxPorts),
         true},
        {"resize-order", 0, "cols-rows|rows-cols",
         "layout of the RESIZE control message: cols-rows (default) is the virtio spec's; "
         "rows-cols is what Linux drivers before the 2025 fix read (their `stty size` shows "
         "rows and columns swapped)"},
    };
}

Result<ConsoleConfig> ConsoleConfig::from_command_line(const backend::CommandLine& command_line)
{
    ConsoleConfig config;
    std::set<std::string> names;
    std::set<std::string> paths;
    for (const std::string& text : command_line.values("port")) {
        VL_TRY_ASSIGN(PortSpec spec, PortSpec::parse(text));
        if (!spec.name.empty() && !names.insert(spec.name).second)
            return usage(fmt::format("--port '{}': two ports are named '{}'; names must be "
                                     "unique",
                                     text, spec.name));
        if (!spec.path.empty() && !paths.insert(spec.path).second)
            return usage(
                fmt::format("--port '{}': the path {} is used by another port", text, spec.path));
        config.ports.push_back(std::move(spec));
    }
    if (config.ports.size() > kMaxPorts)
        return usage(fmt::format("{} --port options; at most {} ports fit in the transport's "
                                 "64 queues",
                                 config.ports.size(), kMaxPorts));
    if (config.ports.empty())
        config.ports.push_back(PortSpec{});
    if (auto order = command_line.value("resize-order")) {
        if (*order == "rows-cols")
            config.resize_order = ResizeOrder::rows_cols;
        else if (*order == "cols-rows")
            config.resize_order = ResizeOrder::cols_rows;
        else
            return usage(fmt::format("--resize-order '{}': use cols-rows or rows-cols", *order));
    }
    return config;
}

} // namespace vl::console
