// SPDX-License-Identifier: Apache-2.0
#include "console_driver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>

#include "virtqueue/ring.hpp"

namespace vl::test_driver
{

namespace
{

using Clock = std::chrono::steady_clock;

std::chrono::milliseconds left_until(Clock::time_point deadline)
{
    return std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()),
                    std::chrono::milliseconds(0));
}

std::string describe_all(const std::vector<ConsoleControl>& messages)
{
    if (messages.empty())
        return "nothing";
    std::string out;
    for (const ConsoleControl& m : messages)
        out += (out.empty() ? "" : ", ") + describe(m);
    return out;
}

} // namespace

// ---------------------------------------------------------------------------
// Encoding

Result<ConsoleConfig> parse_console_config(std::span<const std::byte> config)
{
    constexpr std::size_t kNeeded = offsetof(virtio_console_config, emerg_wr);
    if (config.size() < kNeeded)
        return Error(fmt::format("virtio-console config of {} bytes: cols, rows and "
                                 "max_nr_ports need {}",
                                 config.size(), kNeeded),
                     EPROTO);
    return ConsoleConfig{
        virtq::load_le16(config.data() + offsetof(virtio_console_config, cols)),
        virtq::load_le16(config.data() + offsetof(virtio_console_config, rows)),
        virtq::load_le32(config.data() + offsetof(virtio_console_config, max_nr_ports))};
}

std::vector<std::byte> encode_console_control(const ConsoleControl& message)
{
    std::vector<std::byte> out(kConsoleControlSize + message.payload.size());
    virtq::store_le32(out.data() + offsetof(virtio_console_control, id), message.id);
    virtq::store_le16(out.data() + offsetof(virtio_console_control, event), message.event);
    virtq::store_le16(out.data() + offsetof(virtio_console_control, value), message.value);
    std::copy(message.payload.begin(), message.payload.end(), out.begin() + kConsoleControlSize);
    return out;
}

Result<ConsoleControl> decode_console_control(std::span<const std::byte> bytes)
{
    if (bytes.size() < kConsoleControlSize)
        return Error(fmt::format("a control message of {} bytes, shorter than the {}-byte header",
                                 bytes.size(), kConsoleControlSize),
                     EPROTO);
    ConsoleControl m;
    m.id = virtq::load_le32(bytes.data() + offsetof(virtio_console_control, id));
    m.event = virtq::load_le16(bytes.data() + offsetof(virtio_console_control, event));
    m.value = virtq::load_le16(bytes.data() + offsetof(virtio_console_control, value));
    m.payload.assign(bytes.begin() + kConsoleControlSize, bytes.end());
    return m;
}

std::string console_event_name(std::uint16_t event)
{
    switch (event) {
    case VIRTIO_CONSOLE_DEVICE_READY:
        return "DEVICE_READY";
    case VIRTIO_CONSOLE_PORT_ADD:
        return "PORT_ADD";
    case VIRTIO_CONSOLE_PORT_REMOVE:
        return "PORT_REMOVE";
    case VIRTIO_CONSOLE_PORT_READY:
        return "PORT_READY";
    case VIRTIO_CONSOLE_CONSOLE_PORT:
        return "CONSOLE_PORT";
    case VIRTIO_CONSOLE_RESIZE:
        return "RESIZE";
    case VIRTIO_CONSOLE_PORT_OPEN:
        return "PORT_OPEN";
    case VIRTIO_CONSOLE_PORT_NAME:
        return "PORT_NAME";
    default:
        return fmt::format("event {}", event);
    }
}

std::string describe(const ConsoleControl& m)
{
    std::string out =
        fmt::format("{} port {} value {}", console_event_name(m.event), m.id, m.value);
    if (m.event == VIRTIO_CONSOLE_PORT_NAME)
        out +=
            fmt::format(" '{}'", std::string_view(reinterpret_cast<const char*>(m.payload.data()),
                                                  m.payload.size()));
    else if (!m.payload.empty())
        out += fmt::format(" (+{} bytes)", m.payload.size());
    return out;
}

// ---------------------------------------------------------------------------
// Set-up

ConsoleDriver::ConsoleDriver(VhostUserDriver driver, const ConsoleOptions& options,
                             ConsoleConfig config, bool multiport, std::uint32_t ports)
    : driver_(std::move(driver)), options_(options), config_(config), multiport_(multiport),
      ports_(ports), pending_(ports)
{
    receive_.reserve(ports);
    for (std::uint32_t p = 0; p < ports; ++p)
        receive_.emplace_back(console_receive_queue(p));
}

Result<ConsoleDriver> ConsoleDriver::open(const std::string& socket_path,
                                          const ConsoleOptions& options, Logger logger)
{
    VL_TRY_ASSIGN(VhostUserDriver driver,
                  VhostUserDriver::connect(socket_path, options.connect, std::move(logger)));
    auto console = start(std::move(driver), options);
    if (!console)
        return console.error().wrap("virtio-console back-end " + socket_path);
    return console;
}

Result<ConsoleDriver> ConsoleDriver::start(VhostUserDriver driver, const ConsoleOptions& options)
{
    if (options.receive_buffers == 0 || options.receive_buffers > options.queue_size ||
        options.buffer_size == 0)
        return Error(fmt::format("virtio-console: {} receive buffers of {} bytes do not fit a "
                                 "queue of {} (1 to the queue size, at least 1 byte)",
                                 options.receive_buffers, options.buffer_size, options.queue_size),
                     EINVAL);
    const std::uint64_t size_bit = feature_bit(VIRTIO_CONSOLE_F_SIZE);
    const std::uint64_t multiport_bit = feature_bit(VIRTIO_CONSOLE_F_MULTIPORT);
    const bool multiport = options.multiport && (driver.offered_features() & multiport_bit);

    ConsoleConfig config;
    if (driver.has_protocol_feature(vhost_user::ProtocolFeature::config)) {
        VL_TRY_ASSIGN(auto raw, driver.get_config(0, kConsoleConfigSize));
        VL_TRY_ASSIGN(config, parse_console_config(raw));
    } else if (multiport) {
        return Error("virtio-console: MULTIPORT needs max_nr_ports from the config space, and "
                     "the back-end does not offer the CONFIG protocol feature",
                     ENOTSUP);
    }

    std::uint32_t ports = 1;
    if (multiport) {
        ports = options.ports.value_or(config.max_nr_ports);
        if (ports == 0 || ports > config.max_nr_ports)
            return Error(fmt::format("virtio-console: {} ports asked for; the device has 1 to {}",
                                     ports, config.max_nr_ports),
                         EINVAL);
    }
    StartOptions start;
    start.device_features =
        driver.offered_features() & (size_bit | (multiport ? multiport_bit : 0));
    start.queue_count = multiport ? 2 * (ports + 1) : 2;
    start.queue_size = options.queue_size;
    start.event_idx = options.event_idx;
    start.indirect_desc = false; // one buffer per chain
    if (driver.max_queues() && start.queue_count > *driver.max_queues())
        return Error(fmt::format("virtio-console: {} ports need {} queues; the back-end has {}",
                                 ports, start.queue_count, *driver.max_queues()),
                     EPROTO);
    VL_TRY(driver.start(start));

    ConsoleDriver console(std::move(driver), options, config, multiport, ports);
    PostedBuffers& first = multiport ? console.control_ : console.receive_[0];
    VL_TRY(first.post(console.driver_, options.receive_buffers, options.buffer_size));
    if (!multiport)
        console.ports_[0].added = true; // the one port there is
    return console;
}

Result<ConsoleConfig> ConsoleDriver::read_config()
{
    VL_TRY_ASSIGN(auto raw, driver_.get_config(0, kConsoleConfigSize));
    VL_TRY_ASSIGN(config_, parse_console_config(raw));
    return config_;
}

// ---------------------------------------------------------------------------
// Control queues

Status ConsoleDriver::send_control(const ConsoleControl& message)
{
    return send_control_bytes(encode_console_control(message));
}

Status ConsoleDriver::send_control_bytes(std::span<const std::byte> bytes)
{
    if (!multiport_)
        return Error("virtio-console: no control queue without MULTIPORT", EINVAL);
    if (Status sent =
            driver_.send_and_wait(kConsoleControlTransmitQueue, bytes, options_.request_timeout);
        !sent)
        return sent.error().wrap("virtio-console control transmitq");
    return ok_status();
}

Status ConsoleDriver::open_port(std::uint32_t port)
{
    VL_TRY(check_port(port));
    VL_TRY(send_control({port, VIRTIO_CONSOLE_PORT_OPEN, 1, {}}));
    ports_[port].guest_open = true;
    return ok_status();
}

Status ConsoleDriver::close_port(std::uint32_t port)
{
    VL_TRY(check_port(port));
    VL_TRY(send_control({port, VIRTIO_CONSOLE_PORT_OPEN, 0, {}}));
    ports_[port].guest_open = false;
    // Linux drops what it holds for a port when it is closed.
    pending_[port].clear();
    return ok_status();
}

Result<ConsolePort*> ConsoleDriver::port_at(std::uint32_t index, const ConsoleControl& message)
{
    if (index >= ports_.size())
        return Error(fmt::format("virtio-console: the device sent {}, but port {} has no queues "
                                 "here (ports 0 to {})",
                                 describe(message), index, ports_.size() - 1),
                     EPROTO);
    return &ports_[index];
}

Status ConsoleDriver::check_port(std::uint32_t port) const
{
    if (port >= ports_.size())
        return Error(
            fmt::format("virtio-console: no port {} (ports 0 to {})", port, ports_.size() - 1),
            EINVAL);
    if (!ports_[port].added)
        return Error(fmt::format("virtio-console: port {} was not added (no PORT_ADD yet)", port),
                     EINVAL);
    return ok_status();
}

Status ConsoleDriver::handle(const ConsoleControl& m)
{
    driver_.logger().debug("control from the device: {}", describe(m));
    VL_TRY_ASSIGN(ConsolePort * port, port_at(m.id, m));
    if (m.event != VIRTIO_CONSOLE_PORT_ADD && !port->added)
        return Error(fmt::format("virtio-console: the device sent {} before PORT_ADD of the port",
                                 describe(m)),
                     EPROTO);
    switch (m.event) {
    case VIRTIO_CONSOLE_PORT_ADD:
        // As Linux: a port added before only gets its PORT_READY again.
        if (!port->added) {
            VL_TRY(receive_[m.id].post(driver_, options_.receive_buffers, options_.buffer_size));
            port->added = true;
        }
        ++port->adds;
        return send_control({m.id, VIRTIO_CONSOLE_PORT_READY, 1, {}});
    case VIRTIO_CONSOLE_PORT_REMOVE:
        *port = ConsolePort{};
        return ok_status();
    case VIRTIO_CONSOLE_CONSOLE_PORT:
        port->console = m.value != 0;
        return ok_status();
    case VIRTIO_CONSOLE_PORT_OPEN:
        port->host_open = m.value != 0;
        return ok_status();
    case VIRTIO_CONSOLE_PORT_NAME: {
        const auto end = std::find(m.payload.begin(), m.payload.end(), std::byte{0});
        port->name.assign(reinterpret_cast<const char*>(m.payload.data()),
                          static_cast<std::size_t>(end - m.payload.begin()));
        return ok_status();
    }
    case VIRTIO_CONSOLE_RESIZE:
        if (m.payload.size() < 4)
            return Error(fmt::format("virtio-console: RESIZE with {} bytes of size, not 4",
                                     m.payload.size()),
                         EPROTO);
        // struct virtio_console_resize: cols, then rows.
        size_ =
            ConsoleSize{virtq::load_le16(m.payload.data()), virtq::load_le16(m.payload.data() + 2)};
        return ok_status();
    default:
        return Error(fmt::format("virtio-console: the device sent {}, which is not a device's "
                                 "event",
                                 describe(m)),
                     EPROTO);
    }
}

Status ConsoleDriver::take_control(const virtq::UsedBuffer& used, std::vector<ConsoleControl>& got)
{
    VL_TRY_ASSIGN(auto bytes, control_.take(driver_, used));
    VL_TRY_ASSIGN(ConsoleControl message, decode_console_control(std::span(bytes).first(
                                              std::min<std::size_t>(used.len, bytes.size()))));
    got.push_back(message);
    return handle(message);
}

Result<std::vector<ConsoleControl>> ConsoleDriver::poll_control()
{
    if (!multiport_)
        return Error("virtio-console: no control queue without MULTIPORT", EINVAL);
    std::vector<ConsoleControl> got;
    for (;;) {
        VL_TRY_ASSIGN(auto used, driver_.poll_used(kConsoleControlReceiveQueue));
        if (!used)
            break;
        VL_TRY(take_control(*used, got));
    }
    VL_TRY(driver_.kick(kConsoleControlReceiveQueue));
    return got;
}

Result<std::vector<ConsoleControl>> ConsoleDriver::pump_control(std::chrono::milliseconds timeout,
                                                                const std::function<bool()>& done)
{
    const auto deadline = Clock::now() + timeout;
    std::vector<ConsoleControl> got;
    for (;;) {
        VL_TRY_ASSIGN(auto batch, poll_control());
        got.insert(got.end(), batch.begin(), batch.end());
        if (done ? done() : !got.empty())
            return got;
        auto used = driver_.wait_used(kConsoleControlReceiveQueue, left_until(deadline));
        if (!used) {
            if (used.error().code() == ETIMEDOUT)
                return Error(fmt::format("virtio-console: waited {} ms on the control receiveq "
                                         "and got {}",
                                         timeout.count(), describe_all(got)),
                             ETIMEDOUT);
            return used.error().wrap("virtio-console control receiveq");
        }
        VL_TRY(take_control(*used, got));
        VL_TRY(driver_.kick(kConsoleControlReceiveQueue));
    }
}

Status ConsoleDriver::bring_up(std::chrono::milliseconds timeout, std::chrono::milliseconds settle)
{
    const auto deadline = Clock::now() + timeout;
    VL_TRY(send_control({kConsoleNoPort, VIRTIO_CONSOLE_DEVICE_READY, 1, {}}));
    auto all_added = [this] {
        return std::all_of(ports_.begin(), ports_.end(),
                           [](const ConsolePort& p) { return p.added; });
    };
    if (auto got = pump_control(left_until(deadline), all_added); !got)
        return got.error().wrap("virtio-console bring-up");
    // The answers to our PORT_READYs (CONSOLE_PORT, PORT_NAME, PORT_OPEN,
    // RESIZE) come after the PORT_READYs themselves were used.
    for (;;) {
        auto more = pump_control(std::min(settle, left_until(deadline)));
        if (!more && more.error().code() == ETIMEDOUT)
            return ok_status();
        if (!more)
            return more.error().wrap("virtio-console bring-up");
        if (Clock::now() >= deadline)
            return Error(fmt::format("virtio-console bring-up: the device still sends control "
                                     "messages after {} ms",
                                     timeout.count()),
                         ETIMEDOUT);
    }
}

// ---------------------------------------------------------------------------
// Data

Status ConsoleDriver::write(std::uint32_t port, std::span<const std::byte> bytes)
{
    VL_TRY(check_port(port));
    if (Status sent =
            driver_.send_and_wait(console_transmit_queue(port), bytes, options_.request_timeout);
        !sent)
        return sent.error().wrap(fmt::format("virtio-console port {} transmitq", port));
    return ok_status();
}

Status ConsoleDriver::write(std::uint32_t port, std::string_view text)
{
    return write(port, std::as_bytes(std::span(text.data(), text.size())));
}

Result<std::vector<std::byte>> ConsoleDriver::read(std::uint32_t port, std::size_t min_bytes,
                                                   std::chrono::milliseconds timeout)
{
    VL_TRY(check_port(port));
    const auto deadline = Clock::now() + timeout;
    const std::uint32_t queue = console_receive_queue(port);
    std::vector<std::byte> out = std::move(pending_[port]);
    pending_[port].clear();
    while (out.size() < min_bytes) {
        auto used = driver_.wait_used(queue, left_until(deadline));
        if (!used) {
            if (used.error().code() == ETIMEDOUT)
                break; // nothing more in time: normal for a console
            return used.error().wrap(fmt::format("virtio-console port {} receiveq", port));
        }
        VL_TRY_ASSIGN(auto bytes, receive_[port].take(driver_, *used));
        out.insert(out.end(), bytes.begin(),
                   bytes.begin() + std::min<std::ptrdiff_t>(
                                       used->len, static_cast<std::ptrdiff_t>(bytes.size())));
        VL_TRY(driver_.kick(queue));
    }
    return out;
}

Result<std::string> ConsoleDriver::read_line(std::uint32_t port, std::chrono::milliseconds timeout)
{
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        VL_TRY_ASSIGN(auto got, read(port, pending_[port].size() + 1, left_until(deadline)));
        const auto newline = std::find(got.begin(), got.end(), std::byte{'\n'});
        if (newline != got.end()) {
            pending_[port].assign(newline + 1, got.end());
            return std::string(reinterpret_cast<const char*>(got.data()),
                               static_cast<std::size_t>(newline + 1 - got.begin()));
        }
        pending_[port] = std::move(got);
        if (Clock::now() >= deadline)
            return Error(
                fmt::format("virtio-console port {}: no whole line within {} ms (got "
                            "'{}')",
                            port, timeout.count(),
                            std::string_view(reinterpret_cast<const char*>(pending_[port].data()),
                                             pending_[port].size())),
                ETIMEDOUT);
    }
}

} // namespace vl::test_driver
