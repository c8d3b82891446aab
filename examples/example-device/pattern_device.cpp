// SPDX-License-Identifier: Apache-2.0
// vhost-user-pattern: an example of a third-party vhost-user device built
// on virtio-loopback's back-end framework, outside its source tree, with
// nothing but the installed headers, libraries and pkg-config file.
//
// It is a virtio-rng device (virtio id 4) whose "entropy" is one repeated
// byte (--byte N): deterministic, so a test can check what arrives. The
// framework does the rest: the vhost-user protocol, memory, a worker
// thread per queue, the command line (-s, -l, --help, ...), signals, and
// sd_notify readiness. Serve it to the kernel with
//   vhost-user-pattern -s /run/pattern.sock --byte 90 &
//   virtio-loopback-adapter -s /run/pattern.sock -d rng
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "backend/device.hpp"
#include "backend/program.hpp"

namespace
{

struct PatternConfig {
    std::byte value{0x5a};

    static vl::Result<PatternConfig> from_command_line(const vl::backend::CommandLine& cl)
    {
        PatternConfig config;
        VL_TRY_ASSIGN(auto byte, cl.number("byte", "byte value"));
        if (byte) {
            if (*byte > 255)
                return vl::Error("--byte must be 0 to 255", EINVAL);
            config.value = static_cast<std::byte>(*byte);
        }
        return config;
    }
};

class PatternDevice final : public vl::backend::Device
{
  public:
    static vl::Result<std::unique_ptr<PatternDevice>> create(const PatternConfig& config,
                                                             const vl::Logger& logger)
    {
        logger.info("serving the byte {:#04x}", std::to_integer<unsigned>(config.value));
        return std::make_unique<PatternDevice>(config.value);
    }

    explicit PatternDevice(std::byte value) : value_(value) {}

    [[nodiscard]] std::uint32_t num_queues() const override { return 1; }
    [[nodiscard]] std::uint32_t max_queue_size() const override { return 1024; }
    [[nodiscard]] std::uint64_t features() const override { return 0; }

    // Fill every buffer the driver offers, and give it back.
    vl::Status process_queue(vl::backend::QueueContext& ctx) override
    {
        for (;;) {
            VL_TRY_ASSIGN(auto chain, ctx.pop());
            if (!chain)
                return vl::ok_status();
            for (std::span<std::byte> buffer : chain->writable())
                std::fill(buffer.begin(), buffer.end(), value_);
            VL_TRY(ctx.push(chain->head(), chain->writable_len()));
        }
    }

  private:
    std::byte value_;
};

} // namespace

int main(int argc, char** argv)
{
    const vl::backend::DeviceProgram<PatternConfig, PatternDevice> program{
        .info = {.name = "vhost-user-pattern",
                 .summary = "An example virtio-rng device that serves one repeated byte.",
                 .backend_type = "rng",
                 .capability_features = {},
                 .options = {{"byte", 0, "N", "the byte to serve, 0 to 255 (default 90)"}}},
        .configure = PatternConfig::from_command_line,
        .create = PatternDevice::create,
    };
    return vl::backend::run_device_program(program, argc, argv);
}
