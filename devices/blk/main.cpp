// SPDX-License-Identifier: Apache-2.0
// vhost-user-blk: serves a virtio-blk device (blk_device.hpp) on a
// vhost-user socket. Everything but the device is lib/backend's.
#include "backend/program.hpp"
#include "blk/blk_device.hpp"

int main(int argc, char** argv)
{
    const vl::backend::DeviceProgram<vl::blk::BlkConfig> program{
        .info = {.name = "vhost-user-blk",
                 .summary = "Serves a virtio-blk device on a vhost-user socket, one front-end at "
                            "a time.\nThe disk is a raw image file or a block device (or, with "
                            "--null, no storage at all);\nI/O goes straight to and from the "
                            "driver's buffers, through one io_uring per queue,\nor in the "
                            "queue's thread for an image on tmpfs or ramfs (or with --io=sync).",
                 .backend_type = "block",
                 .capability_features = {"read-only", "blk-file"},
                 .options = vl::blk::blk_options()},
        .configure = vl::blk::BlkConfig::from_command_line,
        .create = [](const vl::blk::BlkConfig& config,
                     const vl::Logger& logger) -> vl::Result<std::unique_ptr<vl::backend::Device>> {
            auto device = vl::blk::BlkDevice::create(config, logger);
            if (!device)
                return device.error();
            return std::unique_ptr<vl::backend::Device>(std::move(device).value());
        },
    };
    return vl::backend::run_device_program(program, argc, argv);
}
