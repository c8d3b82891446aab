// SPDX-License-Identifier: Apache-2.0
// vhost-user-console: serves a virtio-console device (console_device.hpp)
// on a vhost-user socket. Everything but the device is lib/backend's.
#include "backend/program.hpp"
#include "console/console_device.hpp"

int main(int argc, char** argv)
{
    const vl::backend::DeviceProgram<vl::console::ConsoleConfig, vl::console::ConsoleDevice>
        program{
            .info = {.name = "vhost-user-console",
                     .summary = "Serves a virtio-console device with several ports on a "
                                "vhost-user socket,\none front-end at a time. Each port is "
                                "bridged to a pty or a Unix socket; the\nfirst port is the "
                                "console (/dev/hvcN), the others named ports\n(/dev/vportNpM). "
                                "Port 0's pty size reaches the driver as the console size.\n"
                                "Example: vhost-user-console -s /run/con.sock -p pty:/run/hvc0 "
                                "-p org.example.log=unix:/run/log.sock",
                     .backend_type = "console",
                     .capability_features = {},
                     .options = vl::console::console_options()},
            .configure = vl::console::ConsoleConfig::from_command_line,
            .create = vl::console::ConsoleDevice::create,
        };
    return vl::backend::run_device_program(program, argc, argv);
}
