// SPDX-License-Identifier: Apache-2.0
// The command line of vhost-user-input, validated into a config object,
// and the device built from it.
#pragma once

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "backend/device.hpp"
#include "backend/program.hpp"
#include "base/log.hpp"
#include "base/result.hpp"
#include "input/evdev_source.hpp"
#include "input/input_device.hpp"
#include "input/synthetic_source.hpp"

namespace vl::input
{

struct InputConfig {
    std::variant<EvdevOptions, SyntheticOptions> source;
    InputDeviceOptions device;

    // Exactly one of --evdev-path and --synthetic; --grab only with the
    // first, --name and --emulate only with the second. The errors say
    // what to change.
    static Result<InputConfig> from_command_line(const backend::CommandLine& command_line);
};

// The device's own command line options.
[[nodiscard]] std::vector<backend::OptionSpec> input_options();
// What --help says about the program, the synthetic protocol included.
[[nodiscard]] std::string input_summary();

// Opens the source (the evdev node, or creates the FIFO) and builds the
// device on it.
Result<std::unique_ptr<backend::Device>> create_input_device(const InputConfig& config,
                                                             const Logger& logger);

} // namespace vl::input
