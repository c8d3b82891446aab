// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/result.hpp"
#include "device_types.hpp"

namespace vl::adapter {

// One device: a vhost-user back-end's socket and what to make of it.
struct DeviceSpec {
    std::string socket;
    const DeviceType* type = nullptr;
    std::uint32_t virtio_id = 0;   // from the type, or --virtio-id
    std::uint32_t config_size = 0; // from the type, or --config-size
    std::optional<std::uint32_t> num_queues; // default: the back-end's (MQ) or the type's
    std::uint32_t queue_size = 0;
    std::uint64_t window_bytes = 0;
    std::string tag; // --tag: the name a virtio-fs device is mounted by
    // --zero-copy: whole-page buffers reach the back-end as the driver's
    // own pages rather than bounced copies (VIRTIO_LOOPBACK_CREATE_ZERO_COPY)
    bool zero_copy = true;
    std::string name; // for logs: "blk0", "rng1", ...
};

struct AdapterOptions {
    std::vector<DeviceSpec> devices;
    std::string control_path = "/dev/virtio-loopback";
    std::chrono::milliseconds connect_timeout{30000};
    std::chrono::milliseconds reconnect_grace{30000};
    std::chrono::milliseconds stall_timeout{15000};
    std::uint32_t reply_timeout_ms = 0; // 0: the module's default
    LogLevel log_level = LogLevel::info;
};

// What main() should do after parsing.
enum class Action { run, help, version, list_devices };

struct ParsedCommandLine {
    Action action = Action::run;
    AdapterOptions options;
};

// Parses the command line (and any --config file it names) into validated
// options. Errors are usage errors: the message says which option is wrong.
Result<ParsedCommandLine> parse_command_line(int argc, char** argv);

// Reads a config file (see --help) into `options`.
Status read_config_file(const std::string& path, AdapterOptions& options);

extern const char* const kUsage;

} // namespace vl::adapter
