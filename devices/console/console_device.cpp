// SPDX-License-Identifier: Apache-2.0
#include "console/console_device.hpp"

#include <linux/virtio_console.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "backend/frontend_notifier.hpp"
#include "vhost_user/protocol.hpp"
#include "virtqueue/ring.hpp"

namespace vl::console
{

static_assert(sizeof(virtio_console_config) == kConfigSize);
static_assert(sizeof(virtio_console_control) == kControlHeaderSize);

namespace
{

// How often port 0's pty size is looked at: the pty tells nobody but its
// foreground process group (SIGWINCH) when it changes.
constexpr long kResizePeriodNs = 250'000'000;
// A write the host did not take is retried after this long.
constexpr long kRetryNs = 10'000'000;
// The first malformed control messages are warnings, later ones debug.
constexpr std::size_t kLoudBadMessages = 8;

Status arm(const UniqueFd& timer, long ns, bool periodic)
{
    itimerspec when{};
    when.it_value.tv_nsec = ns;
    if (periodic)
        when.it_interval.tv_nsec = ns;
    if (::timerfd_settime(timer.get(), 0, &when, nullptr) < 0)
        return Error::from_errno("timerfd_settime");
    return ok_status();
}

void drain(const UniqueFd& timer)
{
    std::uint64_t expirations = 0;
    (void)!::read(timer.get(), &expirations, sizeof(expirations)); // non-blocking
}

Result<UniqueFd> make_timer()
{
    UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!timer)
        return Error::from_errno("timerfd_create");
    return timer;
}

const char* event_name(std::uint16_t event)
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
        return "unknown";
    }
}

} // namespace

// ---------------------------------------------------------------------------
// ControlMessage

std::vector<std::byte> ControlMessage::encode() const
{
    std::vector<std::byte> out(kControlHeaderSize + payload.size());
    virtq::store_le32(out.data() + offsetof(virtio_console_control, id), id);
    virtq::store_le16(out.data() + offsetof(virtio_console_control, event), event);
    virtq::store_le16(out.data() + offsetof(virtio_console_control, value), value);
    std::copy(payload.begin(), payload.end(), out.begin() + kControlHeaderSize);
    return out;
}

std::optional<ControlMessage> ControlMessage::decode(std::span<const std::byte> bytes)
{
    if (bytes.size() < kControlHeaderSize)
        return std::nullopt;
    return ControlMessage{virtq::load_le32(bytes.data() + offsetof(virtio_console_control, id)),
                          virtq::load_le16(bytes.data() + offsetof(virtio_console_control, event)),
                          virtq::load_le16(bytes.data() + offsetof(virtio_console_control, value)),
                          {}};
}

// ---------------------------------------------------------------------------
// What the device is

ConsoleDevice::ConsoleDevice(const ConsoleConfig& config, Logger logger)
    : config_(config), logger_(std::move(logger)), ports_(config.ports.size())
{
}

Result<std::unique_ptr<ConsoleDevice>> ConsoleDevice::create(const ConsoleConfig& config,
                                                             Logger logger)
{
    if (config.ports.empty() || config.ports.size() > kMaxPorts)
        return Error(
            fmt::format("a console has 1 to {} ports, not {}", kMaxPorts, config.ports.size()),
            EINVAL);
    std::unique_ptr<ConsoleDevice> device(new ConsoleDevice(config, std::move(logger)));
    VL_TRY_ASSIGN(device->outbox_signal_, EventFd::create());
    for (std::uint32_t p = 0; p < device->ports_.size(); ++p) {
        Port& port = device->ports_[p];
        const PortSpec& spec = config.ports[p];
        auto host = HostPort::open(spec);
        if (!host)
            return host.error().wrap(fmt::format("port {}", p));
        port.host = std::move(*host);
        VL_TRY_ASSIGN(port.retry_timer, make_timer());
        VL_TRY_ASSIGN(port.wake, EventFd::create());
        device->logger_.info("port {}{}{}: {}", p, spec.name.empty() ? "" : " ",
                             spec.name.empty() ? std::string() : "'" + spec.name + "'",
                             port.host->describe());
    }
    if (config.ports[0].kind == HostKind::pty) {
        VL_TRY_ASSIGN(device->resize_timer_, make_timer());
        device->size_ = device->ports_[0].host->window_size();
    }
    return device;
}

std::uint32_t ConsoleDevice::num_queues() const
{
    return 2 * (port_count() + 1);
}

std::uint64_t ConsoleDevice::features() const
{
    return (std::uint64_t{1} << VIRTIO_CONSOLE_F_SIZE) |
           (std::uint64_t{1} << VIRTIO_CONSOLE_F_MULTIPORT);
}

std::uint64_t ConsoleDevice::protocol_features() const
{
    return vhost_user::bit(vhost_user::ProtocolFeature::config);
}

Result<std::vector<std::byte>> ConsoleDevice::read_config(std::uint32_t offset, std::uint32_t size)
{
    std::array<std::byte, kConfigSize> config{};
    {
        std::lock_guard lock(mutex_);
        const WindowSize ws = size_.value_or(WindowSize{});
        virtq::store_le16(config.data() + offsetof(virtio_console_config, cols), ws.cols);
        virtq::store_le16(config.data() + offsetof(virtio_console_config, rows), ws.rows);
    }
    virtq::store_le32(config.data() + offsetof(virtio_console_config, max_nr_ports), port_count());
    return backend::slice_config(config, offset, size, "virtio-console");
}

Status ConsoleDevice::write_config(std::uint32_t offset, std::span<const std::byte> data)
{
    return Error(fmt::format("config write of {} bytes at offset {}: the virtio-console config "
                             "is read-only here (emerg_wr needs VIRTIO_CONSOLE_F_EMERG_WRITE, "
                             "which this device does not offer)",
                             data.size(), offset),
                 EPERM);
}

Status ConsoleDevice::set_features(std::uint64_t acked)
{
    std::lock_guard lock(mutex_);
    multiport_ = (acked >> VIRTIO_CONSOLE_F_MULTIPORT & 1U) != 0;
    return ok_status();
}

void ConsoleDevice::reset()
{
    std::lock_guard lock(mutex_);
    forget_driver_locked();
    multiport_ = false;
    for (Port& port : ports_) {
        port.pending.clear();
        port.warned_dropping = false;
    }
}

void ConsoleDevice::forget_driver_locked()
{
    clear_outbox_locked();
    device_ready_ = false;
    for (Port& port : ports_) {
        port.ready = false;
        port.guest_open = false;
        port.told_open = false;
    }
}

// The control receiveq's worker may be delivering the first message right
// now: it removes it afterwards only if the outbox was not emptied meanwhile.
void ConsoleDevice::clear_outbox_locked()
{
    outbox_.clear();
    ++outbox_generation_;
}

// A driver that set the device up with an earlier back-end (this one was
// restarted, and the front-end handed it the rings as they were): it will
// not send DEVICE_READY, PORT_READY or PORT_OPEN again by itself, and what
// it was told (which ports are a console, open on the host side) may be
// stale. PORT_ADD for a port the Linux driver has makes it answer
// PORT_READY, which brings CONSOLE_PORT, RESIZE, PORT_NAME and the host
// side's PORT_OPEN as at first; a port it lacks is added. Which ports a
// guest process has open cannot be asked: they are taken to be open (the
// driver drops the bytes of a port that is not, as it does for any port
// closed in the guest), until its next PORT_OPEN says otherwise.
void ConsoleDevice::rejoin_driver_locked()
{
    clear_outbox_locked();
    device_ready_ = true;
    for (Port& port : ports_) {
        port.ready = false;
        port.guest_open = true;
        port.told_open.reset(); // unknown: tell it either way
        (void)port.wake.signal();
    }
    logger_.info("the driver was set up before this back-end started: announcing the {} "
                 "port(s) again",
                 ports_.size());
    for (std::uint32_t p = 0; p < ports_.size(); ++p)
        send_locked({p, VIRTIO_CONSOLE_PORT_ADD, 1, {}});
}

std::size_t ConsoleDevice::outbox_size() const
{
    std::lock_guard lock(mutex_);
    return outbox_.size();
}

std::optional<std::uint32_t> ConsoleDevice::port_of_queue(std::uint32_t queue) const
{
    if (queue < 2)
        return 0;
    if (queue == kControlReceiveQueue || queue == kControlTransmitQueue)
        return std::nullopt;
    return queue / 2 - 1;
}

// ---------------------------------------------------------------------------
// Queue callbacks

Status ConsoleDevice::queue_started(backend::QueueContext& ctx)
{
    const std::uint32_t q = ctx.index();
    if (q == kControlReceiveQueue)
        return ctx.watch(outbox_signal_.get(), kOutboxToken);
    if (q == kControlTransmitQueue) {
        // Where the driver's control messages start tells whose driver it
        // is: DEVICE_READY is its first, so a queue at index 0 has a new
        // driver (after a reset; forget the last one), and a queue
        // further on one that was set up before this back-end started.
        std::lock_guard lock(mutex_);
        const bool used_before = ctx.queue().last_avail_idx() != 0;
        if (multiport_ && used_before && !device_ready_)
            rejoin_driver_locked();
        else if (!used_before && device_ready_)
            forget_driver_locked();
        return ok_status();
    }
    const std::uint32_t p = *port_of_queue(q);
    Port& port = ports_[p];
    if (q == transmit_queue(p))
        return ctx.watch(port.retry_timer.get(), kRetryToken);
    port.watched_fd = -1;
    VL_TRY(ctx.watch(port.wake.get(), kWakeToken));
    if (p == 0 && resize_timer_) {
        VL_TRY(ctx.watch(resize_timer_.get(), kResizeToken));
        VL_TRY(arm(resize_timer_, kResizePeriodNs, true));
    }
    return ok_status();
}

void ConsoleDevice::queue_stopped(backend::QueueContext& ctx)
{
    const std::uint32_t q = ctx.index();
    const auto p = port_of_queue(q);
    if (!p)
        return;
    Port& port = ports_[*p];
    if (q == transmit_queue(*p)) {
        (void)arm(port.retry_timer, 0, false); // disarms
        return;
    }
    port.watched_fd = -1; // the worker unwatches everything
    if (*p == 0 && resize_timer_)
        (void)arm(resize_timer_, 0, false);
}

Status ConsoleDevice::process_queue(backend::QueueContext& ctx)
{
    const std::uint32_t q = ctx.index();
    if (q == kControlReceiveQueue)
        return deliver_control(ctx);
    if (q == kControlTransmitQueue)
        return serve_control(ctx);
    const std::uint32_t p = *port_of_queue(q);
    if (p >= ports_.size())
        return Error(fmt::format("queue {} belongs to port {}, but the device has {} ports", q, p,
                                 ports_.size()),
                     EINVAL);
    if (q == transmit_queue(p))
        return serve_transmit(ctx, ports_[p]);
    return pump_receive(ctx, p);
}

Status ConsoleDevice::handle_event(backend::QueueContext& ctx, std::uint64_t token)
{
    const std::uint32_t q = ctx.index();
    if (q == kControlReceiveQueue) {
        (void)outbox_signal_.drain();
        return deliver_control(ctx);
    }
    const auto p = port_of_queue(q);
    if (!p || *p >= ports_.size())
        return ok_status();
    Port& port = ports_[*p];
    switch (token) {
    case kRetryToken:
        drain(port.retry_timer);
        if (!flush(port))
            return retry_later(ctx, port);
        ctx.resume();
        return ok_status();
    case kResizeToken:
        drain(resize_timer_);
        return check_resize();
    case kAcceptToken:
        return accept_host(ctx, *p);
    case kWakeToken:
        (void)port.wake.drain();
        return pump_receive(ctx, *p);
    case kHostInputToken:
        return read_host(ctx, *p);
    default:
        return ok_status();
    }
}

// ---------------------------------------------------------------------------
// receiveq: host -> driver

bool ConsoleDevice::may_receive(std::uint32_t index) const
{
    std::lock_guard lock(mutex_);
    if (!multiport_)
        return true; // one console port, always open
    return index == 0 ? ports_[0].ready : ports_[index].guest_open;
}

Status ConsoleDevice::watch_host(backend::QueueContext& ctx, Port& port, int fd,
                                 std::uint64_t token)
{
    if (port.watched_fd == fd)
        return ok_status();
    if (port.watched_fd >= 0)
        VL_TRY(ctx.unwatch(port.watched_fd));
    port.watched_fd = -1;
    if (fd >= 0) {
        VL_TRY(ctx.watch(fd, token));
        port.watched_fd = fd;
    }
    return ok_status();
}

Status ConsoleDevice::pump_receive(backend::QueueContext& ctx, std::uint32_t index)
{
    Port& port = ports_[index];
    if (!port.host->connected()) {
        // Buffers wait for a client; its arrival is what wakes us.
        VL_TRY(watch_host(ctx, port, port.host->wait_fd(), kAcceptToken));
        ctx.pause();
        return ok_status();
    }
    if (!may_receive(index)) {
        // The driver would drop the bytes; port.wake tells when it opens.
        VL_TRY(watch_host(ctx, port, -1, 0));
        ctx.pause();
        return ok_status();
    }
    VL_TRY_ASSIGN(std::uint16_t available, ctx.queue().available());
    if (available == 0 && ctx.pending_resubmissions() == 0) {
        // No buffers: leave the host's bytes where they are until a kick.
        VL_TRY(watch_host(ctx, port, -1, 0));
        ctx.resume();
        return ok_status();
    }
    VL_TRY(watch_host(ctx, port, port.host->wait_fd(), kHostInputToken));
    ctx.pause(); // buffers are there; the host's input is what wakes us
    return ok_status();
}

Status ConsoleDevice::read_host(backend::QueueContext& ctx, std::uint32_t index)
{
    Port& port = ports_[index];
    // A bounded batch: the worker calls again while the fd stays readable.
    for (int batch = 0; batch < 64; ++batch) {
        const auto waiting = port.host->pending_input();
        if (!waiting) {
            // Readable with nothing to read: the client closed its end.
            if (port.host->spec().kind == HostKind::unix) {
                // Out of the worker's epoll set before the fd is closed:
                // unwatching a closed fd later would fail (EBADF).
                VL_TRY(watch_host(ctx, port, -1, 0));
                port.host->disconnect();
                logger_.info("port {}: the client of {} left", index, port.host->describe());
                std::lock_guard lock(mutex_);
                announce_host_locked(index, false);
            }
            break;
        }
        if (*waiting == 0)
            break;
        VL_TRY_ASSIGN(auto chain, ctx.pop());
        if (!chain)
            break;
        auto got = port.host->read(chain->writable());
        if (!got) {
            logger_.warn("port {}: {}; dropping the client", index, got.error().message());
            VL_TRY(ctx.push(chain->head(), 0));
            port.host->disconnect();
            std::lock_guard lock(mutex_);
            announce_host_locked(index, false);
            break;
        }
        VL_TRY(ctx.push(chain->head(), static_cast<std::uint32_t>(*got)));
    }
    return pump_receive(ctx, index);
}

Status ConsoleDevice::accept_host(backend::QueueContext& ctx, std::uint32_t index)
{
    Port& port = ports_[index];
    VL_TRY_ASSIGN(bool connected, port.host->accept());
    if (connected) {
        logger_.info("port {}: a client connected to {}", index, port.host->describe());
        std::lock_guard lock(mutex_);
        announce_host_locked(index, true);
    }
    return pump_receive(ctx, index);
}

// ---------------------------------------------------------------------------
// transmitq: driver -> host

void ConsoleDevice::put(Port& port, std::span<const std::byte> data)
{
    if (!port.pending.empty()) {
        port.pending.insert(port.pending.end(), data.begin(), data.end());
        return;
    }
    auto written = port.host->write(data);
    if (written && *written) {
        port.warned_dropping = false;
        port.pending.insert(port.pending.end(),
                            data.begin() + static_cast<std::ptrdiff_t>(**written), data.end());
        return;
    }
    if (!written)
        logger_.warn("{}; dropping the driver's output", written.error().message());
    else if (!std::exchange(port.warned_dropping, true))
        logger_.info("{} has no client: the driver's output is dropped until one connects",
                     port.host->describe());
}

bool ConsoleDevice::flush(Port& port)
{
    if (port.pending.empty())
        return true;
    auto written = port.host->write(port.pending);
    if (!written || !*written) {
        port.pending.clear(); // nobody to take it any more
        return true;
    }
    port.pending.erase(port.pending.begin(),
                       port.pending.begin() + static_cast<std::ptrdiff_t>(**written));
    return port.pending.empty();
}

Status ConsoleDevice::retry_later(backend::QueueContext& ctx, Port& port)
{
    ctx.pause();
    return arm(port.retry_timer, kRetryNs, false);
}

Status ConsoleDevice::serve_transmit(backend::QueueContext& ctx, Port& port)
{
    if (!flush(port))
        return retry_later(ctx, port);
    for (;;) {
        VL_TRY_ASSIGN(auto chain, ctx.pop());
        if (!chain)
            return ok_status();
        for (std::span<std::byte> buffer : chain->readable())
            put(port, buffer);
        VL_TRY(ctx.push(chain->head(), 0));
        if (!port.pending.empty())
            return retry_later(ctx, port);
    }
}

// ---------------------------------------------------------------------------
// Control queues

template <class... Args>
void ConsoleDevice::bad_message(fmt::format_string<Args...> f, Args&&... args)
{
    ++bad_messages_;
    const LogLevel level = bad_messages_ <= kLoudBadMessages ? LogLevel::warn : LogLevel::debug;
    if (!logger_.enabled(level))
        return;
    std::string text = fmt::format(f, std::forward<Args>(args)...);
    if (bad_messages_ == kLoudBadMessages)
        text += " (further malformed control messages are logged at debug level)";
    if (level == LogLevel::warn)
        logger_.warn("control queue: {}; ignored", text);
    else
        logger_.debug("control queue: {}; ignored", text);
}

Status ConsoleDevice::serve_control(backend::QueueContext& ctx)
{
    for (;;) {
        VL_TRY_ASSIGN(auto chain, ctx.pop());
        if (!chain)
            return ok_status();
        std::array<std::byte, kControlHeaderSize> header{};
        const std::size_t n = chain->read_into(header);
        const std::size_t length = chain->readable_len();
        // The buffer goes back to the driver, and its interrupt is raised,
        // before the message has any effect. The Linux driver spins until
        // it sees the buffer used, holding the control queue's lock; the
        // answers to the message (PORT_ADD after DEVICE_READY) make it
        // send more from another CPU, which then spins for that lock. If
        // those answers reached it first, every CPU of a two-CPU machine
        // could be spinning, and this process would never run again to
        // release them.
        VL_TRY(ctx.push(chain->head(), 0));
        VL_TRY(ctx.notify());
        if (auto message = ControlMessage::decode(std::span(header).first(n)))
            handle_control(*message);
        else
            bad_message("a message of {} bytes, shorter than the {}-byte header", length,
                        kControlHeaderSize);
    }
}

void ConsoleDevice::handle_control(const ControlMessage& m)
{
    logger_.debug("control from the driver: {} id {} value {}", event_name(m.event), m.id, m.value);
    std::unique_lock lock(mutex_);
    switch (m.event) {
    case VIRTIO_CONSOLE_DEVICE_READY:
        if (m.value == 0) {
            logger_.error("the driver could not set the device up (DEVICE_READY 0)");
            return;
        }
        if (device_ready_) {
            // Another driver on the same rings (or a confused one): start
            // over as for the first.
            logger_.info("DEVICE_READY again: announcing the ports to a new driver");
            forget_driver_locked();
        }
        device_ready_ = true;
        for (std::uint32_t p = 0; p < ports_.size(); ++p)
            send_locked({p, VIRTIO_CONSOLE_PORT_ADD, 1, {}});
        return;
    case VIRTIO_CONSOLE_PORT_READY:
    case VIRTIO_CONSOLE_PORT_OPEN:
        break;
    default:
        lock.unlock();
        bad_message("event {} ({}) from the driver, which is not one a driver sends", m.event,
                    event_name(m.event));
        return;
    }
    if (m.id >= ports_.size()) {
        lock.unlock();
        bad_message("{} for port {}, but the device has ports 0 to {}", event_name(m.event), m.id,
                    ports_.size() - 1);
        return;
    }
    Port& port = ports_[m.id];
    if (!device_ready_) {
        lock.unlock();
        bad_message("{} for port {} before DEVICE_READY", event_name(m.event), m.id);
        return;
    }
    if (m.event == VIRTIO_CONSOLE_PORT_OPEN) {
        port.guest_open = m.value != 0;
        logger_.info("port {}: {} by the driver", m.id, port.guest_open ? "opened" : "closed");
        (void)port.wake.signal();
        return;
    }
    if (m.value == 0) {
        logger_.error("port {}: the driver could not add it (PORT_READY 0)", m.id);
        return;
    }
    if (std::exchange(port.ready, true))
        return; // said before: nothing new to tell
    (void)port.wake.signal();
    if (m.id == 0) {
        send_locked({0, VIRTIO_CONSOLE_CONSOLE_PORT, 1, {}});
        if (size_)
            send_locked(resize_message_locked());
    }
    const std::string& name = config_.ports[m.id].name;
    if (!name.empty()) {
        std::vector<std::byte> bytes(name.size());
        std::transform(name.begin(), name.end(), bytes.begin(),
                       [](char c) { return static_cast<std::byte>(c); });
        send_locked({m.id, VIRTIO_CONSOLE_PORT_NAME, 1, std::move(bytes)});
    }
    announce_host_locked(m.id, port.host->connected());
}

void ConsoleDevice::announce_host_locked(std::uint32_t index, bool connected)
{
    Port& port = ports_[index];
    if (!multiport_ || !port.ready || (port.told_open && *port.told_open == connected))
        return;
    port.told_open = connected;
    send_locked({index, VIRTIO_CONSOLE_PORT_OPEN, static_cast<std::uint16_t>(connected), {}});
}

ControlMessage ConsoleDevice::resize_message_locked() const
{
    const WindowSize ws = size_.value_or(WindowSize{});
    std::vector<std::byte> payload(4);
    const bool rows_first = config_.resize_order == ResizeOrder::rows_cols; // see ResizeOrder
    virtq::store_le16(payload.data(), rows_first ? ws.rows : ws.cols);
    virtq::store_le16(payload.data() + 2, rows_first ? ws.cols : ws.rows);
    return {0, VIRTIO_CONSOLE_RESIZE, 0, std::move(payload)};
}

void ConsoleDevice::send_locked(ControlMessage message)
{
    if (outbox_.size() >= kMaxOutbox) {
        logger_.warn("{} control messages wait for the driver's buffers; dropping {} for port {}",
                     outbox_.size(), event_name(message.event), message.id);
        return;
    }
    logger_.debug("control to the driver: {} id {} value {}", event_name(message.event), message.id,
                  message.value);
    outbox_.push_back(message.encode());
    (void)outbox_signal_.signal();
}

Status ConsoleDevice::deliver_control(backend::QueueContext& ctx)
{
    for (;;) {
        std::vector<std::byte> message;
        std::uint64_t generation = 0;
        {
            std::lock_guard lock(mutex_);
            if (outbox_.empty()) {
                ctx.pause(); // the outbox's eventfd wakes us
                return ok_status();
            }
            // Only this worker removes single messages; others may empty
            // the outbox (clear_outbox_locked()).
            message = outbox_.front();
            generation = outbox_generation_;
        }
        VL_TRY_ASSIGN(auto chain, ctx.pop());
        if (!chain) {
            ctx.resume(); // the driver's next buffers
            return ok_status();
        }
        if (chain->writable_len() < message.size()) {
            bad_message("a receive buffer of {} bytes for a {}-byte message; the message is "
                        "dropped",
                        chain->writable_len(), message.size());
            VL_TRY(ctx.push(chain->head(), 0));
        } else {
            const std::size_t n = chain->write_from(message);
            VL_TRY(ctx.push(chain->head(), static_cast<std::uint32_t>(n)));
        }
        std::lock_guard lock(mutex_);
        if (outbox_generation_ == generation)
            outbox_.pop_front();
    }
}

Status ConsoleDevice::check_resize()
{
    if (ports_[0].host->spec().kind != HostKind::pty)
        return ok_status();
    const auto ws = ports_[0].host->window_size();
    bool notify = false;
    {
        std::lock_guard lock(mutex_);
        if (!ws || ws == size_)
            return ok_status();
        size_ = ws;
        logger_.info("console size {}x{} (cols x rows)", ws->cols, ws->rows);
        if (multiport_) {
            if (ports_[0].ready)
                send_locked(resize_message_locked());
        } else {
            notify = true;
        }
    }
    // Without MULTIPORT the driver re-reads cols/rows from the config.
    backend::FrontendNotifier* notifier = notifier_;
    if (notify && notifier != nullptr)
        if (Status s = notifier->config_changed(); !s)
            logger_.warn("could not tell the front-end the console size changed: {}",
                         s.error().message());
    return ok_status();
}

} // namespace vl::console
