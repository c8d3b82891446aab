// SPDX-License-Identifier: Apache-2.0
// The shared scaffolding of every device program (vhost-user-rng, -blk,
// -input): the command line with the common options of QEMU's "Back-end
// program conventions" (docs/interop/vhost-user.rst), validated config
// objects, errors mapped to exit codes, signals, and the daemon. A
// device's main() is then a ProgramInfo, a configure() that validates its
// own options and a create() that builds the device:
//
//   int main(int argc, char** argv)
//   {
//       const DeviceProgram<RngConfig, RngDevice> program{
//           .info = {...}, .configure = RngConfig::from_command_line,
//           .create = RngDevice::create};
//       return vl::backend::run_device_program(program, argc, argv);
//   }
//
// Common options: -s/--socket-path PATH, -l/--log-level LEVEL, --poll-us N,
// --print-capabilities, -h/--help, -V/--version.
// Exit status: 0 after SIGTERM/SIGINT (and after --help, --version,
// --print-capabilities); 1 on a runtime error; 2 on bad usage.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "backend/device.hpp"
#include "base/log.hpp"
#include "base/result.hpp"

namespace vl::backend
{

// One command line option.
struct OptionSpec {
    std::string long_name;  // "rate" for --rate
    char short_name = 0;    // 'r' for -r; 0 for none
    std::string value_name; // "BYTES_PER_SEC"; empty for a flag without a value
    std::string help;
    // May be given several times (--port A --port B); values() has them all.
    bool repeatable = false;
};

// What a device program is, for --help, --version and --print-capabilities.
struct ProgramInfo {
    std::string name;    // "vhost-user-rng"
    std::string summary; // what it does, for --help (may span lines)
    // The vhost-user.json VHostUserBackendType: "rng", "block", "input", ...
    std::string backend_type;
    // The "features" of --print-capabilities (e.g. "read-only", "blk-file"
    // for "block"); empty: the key is left out.
    std::vector<std::string> capability_features;
    // The device's own options (the common ones are added).
    std::vector<OptionSpec> options;
};

// A command line parsed against the common and a device's options: the
// values as given, to be validated into config objects. Accepts --name=VALUE,
// --name VALUE, -n VALUE and -nVALUE; "--" ends the options. Positional
// arguments, unknown options, a missing value and an option given twice
// (unless it is repeatable) are errors whose messages name the option.
class CommandLine
{
  public:
    // `args` without the program name.
    static Result<CommandLine> parse(std::span<const std::string> args,
                                     std::span<const OptionSpec> options);

    [[nodiscard]] bool has(std::string_view long_name) const;
    [[nodiscard]] std::optional<std::string> value(std::string_view long_name) const;
    // Every value of a repeatable option, in command line order (value()
    // gives the last one).
    [[nodiscard]] std::vector<std::string> values(std::string_view long_name) const;
    // A decimal whole number (nullopt when the option is absent); `what`
    // says what the number is ("bytes per second") in the error message.
    [[nodiscard]] Result<std::optional<std::uint64_t>> number(std::string_view long_name,
                                                              std::string_view what) const;

  private:
    std::map<std::string, std::string, std::less<>> values_; // flags map to ""
    std::map<std::string, std::vector<std::string>, std::less<>> repeated_;
};

// The common options, validated.
struct CommonConfig {
    std::string socket_path;
    LogLevel log_level = LogLevel::info;
    // --poll-us: SessionOptions::poll_time.
    std::chrono::microseconds poll_time{0};

    static Result<CommonConfig> from(const CommandLine& command_line);
};

// The common options' specs, and every option of a program.
[[nodiscard]] std::vector<OptionSpec> common_options();
[[nodiscard]] std::vector<OptionSpec> all_options(const ProgramInfo& info);

[[nodiscard]] std::string usage_text(const ProgramInfo& info);
[[nodiscard]] std::string version_text(const ProgramInfo& info);
// {"type": "rng"} or {"type": "block", "features": ["read-only"]}.
[[nodiscard]] std::string capabilities_json(const ProgramInfo& info);

// What kind of failure ends a program, and the exit status of each.
enum class ExitCode : int { ok = 0, runtime_error = 1, usage = 2 };
struct ProgramError {
    ExitCode code = ExitCode::runtime_error;
    Error error;
};

// A device program: `configure` validates the device's options into its
// config (an error is bad usage: exit 2); `create` builds the device from
// it (an error is a runtime error: exit 1).
template <class Config, class DeviceType = Device> struct DeviceProgram {
    ProgramInfo info;
    std::function<Result<Config>(const CommandLine&)> configure;
    std::function<Result<std::unique_ptr<DeviceType>>(const Config&, const Logger&)> create;
};

namespace detail
{
struct Prepared {
    CommandLine command_line;
    CommonConfig common;
};
// Parses the command line and handles what ends the program before a
// device exists (--help, --version, --print-capabilities, bad usage):
// returns the exit status then. Otherwise blocks SIGTERM/SIGINT (before any
// thread exists, so that they reach only the daemon's signalfd).
std::variant<int, Prepared> prepare(const ProgramInfo& info, int argc, char** argv);
// Prints the error and returns its exit status.
int report(const ProgramInfo& info, const ProgramError& error);
// Serves the device until SIGTERM/SIGINT.
int serve(const ProgramInfo& info, Device& device, const CommonConfig& common,
          const Logger& logger);
} // namespace detail

template <class Config, class DeviceType>
int run_device_program(const DeviceProgram<Config, DeviceType>& program, int argc, char** argv)
{
    auto prepared = detail::prepare(program.info, argc, argv);
    if (const int* exit_status = std::get_if<int>(&prepared))
        return *exit_status;
    const auto& [command_line, common] = std::get<detail::Prepared>(prepared);
    auto config = program.configure(command_line);
    if (!config)
        return detail::report(program.info, {ExitCode::usage, config.error()});
    Logger logger(program.info.name, common.log_level);
    auto device = program.create(*config, logger);
    if (!device)
        return detail::report(program.info, {ExitCode::runtime_error, device.error()});
    return detail::serve(program.info, **device, common, logger);
}

} // namespace vl::backend
