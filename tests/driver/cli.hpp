// SPDX-License-Identifier: Apache-2.0
// vl-test-driver's command line: parsed into validated option structs
// before anything connects, so usage errors (exit 2) are told apart from
// test failures and back-end errors (exit 1). No I/O here; main.cpp runs
// the commands.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "base/log.hpp"
#include "base/result.hpp"

namespace vl::test_driver::cli
{

// Exit statuses of the tool.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1; // a check failed, or the back-end misbehaved
inline constexpr int kExitUsage = 2;   // bad command line

// Options valid before or after the command.
struct GlobalOptions {
    std::string socket;                      // -s, --socket (required)
    LogLevel log_level = LogLevel::warn;     // --log-level
    std::chrono::milliseconds timeout{5000}; // --timeout-ms: per reply and per request
    std::uint64_t memory_mib = 64;           // --memory MiB of guest memory
    std::uint32_t queue_size = 128;          // --queue-size
    bool event_idx = true;                   // --no-event-idx
    bool indirect = true;                    // --no-indirect
};

struct BlkInfoOptions {
};

struct BlkVerifyOptions {
    // --size: region at the start of the disk; default: 16 MiB, or the
    // whole disk if smaller (rounded down to whole requests).
    std::optional<std::uint64_t> size_mib;
    std::uint32_t queue = 0;               // --queue
    std::optional<std::uint64_t> requests; // --requests: writes (default: each block once)
    std::uint32_t qd = 16;                 // --qd: requests in flight
    std::uint32_t request_kib = 64;        // --request-size KiB per request
    std::optional<std::uint64_t> seed;     // --seed (default: from the clock, printed)
    bool zeroes = true;                    // --no-zeroes: skip the write-zeroes/discard checks
};

struct RngReadOptions {
    std::uint64_t bytes = 64;          // --bytes
    std::optional<std::string> output; // --output FILE (raw); default: hex on stdout
};

struct InputInfoOptions {
};

struct InputReadOptions {
    std::uint64_t events = 1;                 // --events
    std::chrono::milliseconds timeout{10000}; // --timeout S (seconds, may be fractional)
};

struct ConsoleInfoOptions {
    bool multiport = true; // --no-multiport: do not accept VIRTIO_CONSOLE_F_MULTIPORT
};

using CommandOptions = std::variant<BlkInfoOptions, BlkVerifyOptions, RngReadOptions,
                                    InputInfoOptions, InputReadOptions, ConsoleInfoOptions>;

// What the command line asked for: a command to run, or help to print.
struct Invocation {
    GlobalOptions global;
    CommandOptions command;
    std::string command_name;
    // Set for --help (general, or of one command): print it, exit 0.
    std::optional<std::string> help;
};

// Parses argv[1..]. Errors are usage errors, worded for the user.
Result<Invocation> parse(std::span<const std::string_view> args);

// The general usage text (the command list).
std::string general_help();

} // namespace vl::test_driver::cli
