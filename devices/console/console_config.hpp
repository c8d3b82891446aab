// SPDX-License-Identifier: Apache-2.0
// The validated configuration of vhost-user-console: its ports and where
// each one's host side is (a pty or a Unix socket).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/program.hpp"
#include "base/result.hpp"

namespace vl::console
{

// The transport allows 64 queues: 2 per port plus the 2 control queues.
inline constexpr std::size_t kMaxPorts = 31;
// sysfs shows the name; keep it one short line.
inline constexpr std::size_t kMaxNameLength = 255;

// Where a port's host side is.
enum class HostKind {
    pty,  // a new pseudo-terminal; `path` (optional) becomes a symlink to it
    unix, // a Unix stream socket the back-end listens on at `path`
};

// One --port [NAME=]pty[:LINK] | [NAME=]unix:PATH.
struct PortSpec {
    std::string name; // empty: the port has no name (PORT_NAME is not sent)
    HostKind kind = HostKind::pty;
    std::string path;

    static Result<PortSpec> parse(std::string_view text);
    friend bool operator==(const PortSpec&, const PortSpec&) = default;
};

// How the 4 bytes after a RESIZE control message are laid out. The virtio
// spec's struct virtio_console_resize is { le16 cols; le16 rows; }, which is
// the default. Older Linux drivers read { rows; cols; } (fixed upstream in
// 2025; the Debian 6.1 and 6.12 kernels tested here follow the spec, as
// tests/guest/console.sh checks): rows_cols is for those.
enum class ResizeOrder { cols_rows, rows_cols };

struct ConsoleConfig {
    // Port 0 is the console port (/dev/hvcN); ports 1.. are /dev/vportNpM.
    std::vector<PortSpec> ports;
    ResizeOrder resize_order = ResizeOrder::cols_rows;

    static Result<ConsoleConfig> from_command_line(const backend::CommandLine& command_line);
};

[[nodiscard]] std::vector<backend::OptionSpec> console_options();

} // namespace vl::console
