// SPDX-License-Identifier: Apache-2.0
// vhost-user-input: serves a virtio-input device (input_device.hpp) fed by a
// host evdev device or a FIFO of text lines, on a vhost-user socket.
// Everything but the device and its sources is lib/backend's.
#include "backend/program.hpp"
#include "input/input_config.hpp"

int main(int argc, char** argv)
{
    const vl::backend::DeviceProgram<vl::input::InputConfig> program{
        .info = {.name = "vhost-user-input",
                 .summary = vl::input::input_summary(),
                 .backend_type = "input",
                 .capability_features = {},
                 .options = vl::input::input_options()},
        .configure = vl::input::InputConfig::from_command_line,
        .create = vl::input::create_input_device,
    };
    return vl::backend::run_device_program(program, argc, argv);
}
