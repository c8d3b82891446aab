// SPDX-License-Identifier: Apache-2.0
// virtio-loopback-adapter: the control plane. See --help and README.md.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "base/event_loop.hpp"
#include "base/log.hpp"
#include "base/service_notify.hpp"
#include "device_link.hpp"
#include "loopback/control_file.hpp"
#include "options.hpp"

namespace vl::adapter
{

constexpr int kExitOk = 0;
constexpr int kExitRuntimeError = 1;
constexpr int kExitUsage = 2;

namespace
{

void list_devices()
{
    fmt::print("{:<8} {:>9} {:>7} {:>7} {:>10}  {}\n", "type", "virtio id", "queues", "size",
               "window MiB", "description");
    for (const auto& t : device_types())
        fmt::print("{:<8} {:>9} {:>7} {:>7} {:>10}  {}\n", t.name,
                   t.virtio_id ? std::to_string(t.virtio_id) : "(given)", t.num_queues,
                   t.queue_size, t.window_mib, t.description);
}

int run(const AdapterOptions& options, std::chrono::steady_clock::time_point started)
{
    Logger log("virtio-loopback-adapter", options.log_level);
    // Fail at once, with the fix, if the transport is not there.
    if (auto probe = loopback::ControlFile::open(options.control_path); !probe.ok()) {
        log.error("{}", probe.error().message());
        return kExitRuntimeError;
    }
    auto loop = EventLoop::create();
    if (!loop.ok()) {
        log.error("{}", loop.error().message());
        return kExitRuntimeError;
    }

    std::vector<std::unique_ptr<DeviceLink>> links;
    int exit_code = kExitOk;
    auto stop_all = [&] {
        for (auto& link : links)
            link->shutdown();
        loop->stop();
    };
    Status signals = loop->handle_termination([&](int signal) {
        log.info("{}: removing {} device(s)", signal == SIGINT ? "SIGINT" : "SIGTERM",
                 links.size());
        notify_service_stopping();
        stop_all();
    });
    if (!signals.ok()) {
        log.error("{}", signals.error().message());
        return kExitRuntimeError;
    }

    LinkSettings settings{options.control_path,  options.connect_timeout,  options.reconnect_grace,
                          options.stall_timeout, options.reply_timeout_ms, started};
    for (const auto& spec : options.devices)
        links.push_back(std::make_unique<DeviceLink>(spec, settings, *loop, log.child(spec.name)));
    // A Type=notify unit is up once every device exists in the kernel.
    std::size_t created = 0;
    for (auto& link : links)
        link->start(
            [&](const Error&) {
                exit_code = kExitRuntimeError;
                stop_all();
            },
            [&] {
                if (++created == links.size())
                    notify_service_ready(fmt::format("{} device(s) created", created));
            });

    // A link may give up while starting (a back-end refused before the
    // kernel heard of it): stop_all() ran before the loop, which would not
    // see it.
    if (exit_code != kExitOk)
        return exit_code;
    if (Status s = loop->run(); !s.ok()) {
        log.error("{}", s.error().message());
        return kExitRuntimeError;
    }
    return exit_code;
}

} // namespace
} // namespace vl::adapter

int main(int argc, char** argv)
{
    using namespace vl::adapter;
    const auto started = std::chrono::steady_clock::now();
    auto parsed = parse_command_line(argc, argv);
    if (!parsed.ok()) {
        std::fprintf(stderr, "virtio-loopback-adapter: %s\n", parsed.error().message().c_str());
        return kExitUsage;
    }
    switch (parsed->action) {
    case Action::help:
        std::fputs(kUsage, stdout);
        return kExitOk;
    case Action::version:
        std::printf("virtio-loopback-adapter %s (uapi %d)\n", VL_VERSION,
                    VIRTIO_LOOPBACK_API_VERSION);
        return kExitOk;
    case Action::list_devices:
        list_devices();
        return kExitOk;
    case Action::run:
        break;
    }
    return run(parsed->options, started);
}
