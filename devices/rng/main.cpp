// SPDX-License-Identifier: Apache-2.0
// vhost-user-rng: serves a virtio-rng device (rng_device.hpp) on a
// vhost-user socket. Everything but the device is lib/backend's.
#include "backend/program.hpp"
#include "rng/rng_device.hpp"

int main(int argc, char** argv)
{
    const vl::backend::DeviceProgram<vl::rng::RngConfig, vl::rng::RngDevice> program{
        .info = {.name = "vhost-user-rng",
                 .summary = "Serves a virtio-rng device on a vhost-user socket, one front-end at "
                            "a time.\nIt fills the driver's buffers from the kernel's entropy "
                            "pool (getrandom),\noptionally at a limited rate.",
                 .backend_type = "rng",
                 .capability_features = {},
                 .options = vl::rng::rng_options()},
        .configure = vl::rng::RngConfig::from_command_line,
        .create = vl::rng::RngDevice::create,
    };
    return vl::backend::run_device_program(program, argc, argv);
}
