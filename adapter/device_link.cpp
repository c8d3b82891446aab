// SPDX-License-Identifier: Apache-2.0
#include "device_link.hpp"

#include <linux/virtio_config.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include <fmt/format.h>

#include "device_plan.hpp"
#include "vhost_user/backend_channel.hpp"
#include "virtqueue/ring.hpp"

namespace vl::adapter
{

namespace vu = vl::vhost_user;

namespace
{

constexpr std::uint64_t bit(unsigned n)
{
    return std::uint64_t{1} << n;
}

constexpr unsigned kFeatureVersion1 = 32;
constexpr unsigned kFeatureAccessPlatform = 33;

// The protocol features the adapter uses when the back-end offers them.
constexpr std::uint64_t kWantedProtocolFeatures =
    vu::bit(vu::ProtocolFeature::mq) | vu::bit(vu::ProtocolFeature::reply_ack) |
    vu::bit(vu::ProtocolFeature::config) | vu::bit(vu::ProtocolFeature::backend_req);

constexpr auto kRetryInterval = std::chrono::milliseconds(200);
constexpr auto kWatchdogTick = std::chrono::milliseconds(1000);
// How long the back-end may take to answer: briefly while connecting, and
// longer once running (GET_VRING_BASE waits for its in-flight requests).
constexpr auto kNegotiateTimeout = std::chrono::milliseconds(2000);
constexpr auto kReplyTimeout = std::chrono::milliseconds(10000);
// The kernel's wait for our answers, for drivers that poll the device
// (unless --reply-timeout-ms says otherwise; the module's default is 5 s).
constexpr std::uint32_t kPollingDriverReplyTimeoutMs = 30000;

} // namespace

std::string SetupTimeline::describe(Clock::time_point ready) const
{
    auto ms = [this](Clock::time_point t) {
        return std::chrono::duration<double, std::milli>(t - start).count();
    };
    return fmt::format("back-end connected {:.1f} ms, negotiated {:.1f} ms, device created "
                       "{:.1f} ms, driver probed {:.1f} ms, rings handed over {:.1f} ms",
                       ms(connected), ms(negotiated), ms(created), ms(probed), ms(ready));
}

DeviceLink::DeviceLink(DeviceSpec spec, LinkSettings settings, EventLoop& loop, Logger log)
    : spec_(std::move(spec)), settings_(std::move(settings)), loop_(loop), log_(std::move(log))
{
}

DeviceLink::~DeviceLink()
{
    shutdown();
}

void DeviceLink::start(std::function<void(const Error&)> on_fatal, std::function<void()> on_created)
{
    on_fatal_ = std::move(on_fatal);
    on_created_ = std::move(on_created);
    connect_deadline_ = std::chrono::steady_clock::now() + settings_.connect_timeout;
    timeline_.start = settings_.started;
    try_connect();
}

void DeviceLink::shutdown()
{
    if (state_ == State::stopped)
        return;
    if (retry_timer_)
        loop_.cancel(*retry_timer_);
    if (grace_timer_)
        loop_.cancel(*grace_timer_);
    retry_timer_.reset();
    grace_timer_.reset();
    disarm_watchdog();
    remove_device();
    drop_backend();
    state_ = State::stopped;
}

void DeviceLink::fail(const Error& why)
{
    log_.error("{}", why.message());
    shutdown();
    if (on_fatal_)
        on_fatal_(why);
}

// --- stage 1: the back-end --------------------------------------------------

void DeviceLink::try_connect()
{
    retry_timer_.reset();
    if (state_ == State::connecting && ever_connected_)
        timeline_.start = SetupTimeline::Clock::now(); // a device created again
    Status connected = connect_backend();
    if (!connected.ok()) {
        drop_backend();
        if (!ever_connected_ && std::chrono::steady_clock::now() >= connect_deadline_ &&
            settings_.connect_timeout.count() > 0) {
            fail(Error(fmt::format("no vhost-user back-end at {} after {} s: {} (start the "
                                   "device first, e.g. vhost-user-{} -s {})",
                                   spec_.socket, settings_.connect_timeout.count() / 1000,
                                   connected.error().message(), spec_.type->name, spec_.socket)));
            return;
        }
        log_.debug("back-end not available yet: {}", connected.error().message());
        retry_later(kRetryInterval);
        return;
    }

    if (state_ == State::disconnected) {
        Status resumed = driver_ok_ ? start_rings(true) : ok_status();
        if (!resumed.ok()) {
            log_.error("resuming with the new back-end failed: {}", resumed.error().message());
            drop_backend();
            retry_later(kRetryInterval);
            return;
        }
        if (grace_timer_)
            loop_.cancel(*grace_timer_);
        grace_timer_.reset();
        state_ = State::running;
        log_.info("back-end reconnected; {}",
                  driver_ok_ ? "I/O resumed" : "waiting for the driver");
        return;
    }

    Status created = create_device();
    if (!created.ok()) {
        fail(created.error().wrap("cannot create the device in the transport"));
        return;
    }
    const bool first = !ever_connected_;
    ever_connected_ = true;
    state_ = State::running;
    if (first && on_created_)
        on_created_();
}

void DeviceLink::retry_later(std::chrono::milliseconds delay)
{
    auto timer = loop_.after(delay, [this] { try_connect(); });
    if (!timer.ok()) {
        fail(timer.error());
        return;
    }
    retry_timer_ = *timer;
}

Status DeviceLink::connect_backend()
{
    VL_TRY_ASSIGN(auto frontend, vu::Frontend::connect(spec_.socket));
    backend_.emplace(std::move(frontend));
    timeline_.connected = SetupTimeline::Clock::now();
    // A back-end that is stopped still accepts connections (the kernel
    // queues them): do not let one stall the event loop for long.
    backend_->connection().set_timeout(kNegotiateTimeout);
    VL_TRY(negotiate());
    timeline_.negotiated = SetupTimeline::Clock::now();
    backend_->connection().set_timeout(kReplyTimeout);
    VL_TRY(loop_.watch(
        backend_->connection().fd(), [this](std::uint32_t events) { on_backend_event(events); },
        EPOLLIN | EPOLLRDHUP));
    return ok_status();
}

Status DeviceLink::negotiate()
{
    VL_TRY_ASSIGN(std::uint64_t features, backend_->get_features());
    if (!(features & bit(kFeatureVersion1)))
        return Error(fmt::format("the back-end at {} does not offer VIRTIO_F_VERSION_1; "
                                 "legacy devices are not supported",
                                 spec_.socket));
    protocol_features_ = 0;
    if (features & vu::kFeatureProtocolFeatures) {
        VL_TRY_ASSIGN(std::uint64_t offered, backend_->get_protocol_features());
        protocol_features_ = offered & kWantedProtocolFeatures;
        VL_TRY(backend_->set_protocol_features(protocol_features_));
    }
    VL_TRY(backend_->set_owner());

    // A back-end that comes back must still offer what the driver uses
    // (but for what the adapter implements itself).
    if (control_ &&
        (driver_features_ & ~bit(kFeatureAccessPlatform) & ~adapter_features_ & ~features))
        return Error(fmt::format("the new back-end lacks features the driver uses "
                                 "(offers {:#x}, driver uses {:#x})",
                                 features, driver_features_));
    backend_features_ = features;
    if (vu::has(protocol_features_, vu::ProtocolFeature::backend_req))
        VL_TRY(setup_backend_channel());
    log_.debug("back-end features {:#x}, protocol features {:#x}", features, protocol_features_);
    return ok_status();
}

// The back-end's own channel to us, for config-change notifications.
Status DeviceLink::setup_backend_channel()
{
    VL_TRY_ASSIGN(auto pair, vu::Connection::pair());
    VL_TRY(backend_->set_backend_req_fd(pair.second.fd()));
    backend_channel_.emplace(std::move(pair.first));
    return loop_.watch(backend_channel_->fd(),
                       [this](std::uint32_t events) { on_backend_channel_event(events); });
}

void DeviceLink::drop_backend()
{
    disarm_watchdog();
    if (backend_channel_) {
        loop_.unwatch(backend_channel_->fd());
        backend_channel_.reset();
    }
    if (backend_) {
        loop_.unwatch(backend_->connection().fd());
        backend_.reset();
    }
    rings_started_ = false;
}

// --- stage 2: the transport device ----------------------------------------

Status DeviceLink::create_device()
{
    BackendOffer offer;
    offer.features = backend_features_;
    if (vu::has(protocol_features_, vu::ProtocolFeature::mq)) {
        VL_TRY_ASSIGN(offer.num_queues, backend_->get_queue_num());
    }
    if (config_from_backend(spec_) && vu::has(protocol_features_, vu::ProtocolFeature::config)) {
        VL_TRY_ASSIGN(offer.config, backend_->get_config(0, spec_.config_size));
    }
    // Everything is checked before the kernel hears of the device.
    VL_TRY_ASSIGN(DevicePlan plan, plan_device(spec_, offer));
    const std::uint32_t queues = plan.num_queues;
    num_queues_ = queues;
    backend_queues_ = queues;
    planned_control_ = plan.control_queue;
    control_index_.reset();
    adapter_features_ = plan.adapter_features;
    max_pairs_ = static_cast<std::uint16_t>(std::max<std::uint32_t>(plan.queue_pairs, 1));
    wanted_pairs_ = 1;

    loopback::DeviceParams params;
    params.device_id = spec_.virtio_id;
    params.features = plan.features;
    params.num_queues = queues;
    params.max_queue_size = spec_.queue_size;
    params.window_size = spec_.window_bytes;
    params.timeout_ms = settings_.reply_timeout_ms;
    // The answer to DRIVER_OK of a driver that polls the device includes
    // stage 3 (on_status()): 7 round trips per queue, 26 queues for a
    // console of 12 ports, on a machine that may be busy. The driver
    // sleeps meanwhile, so a longer bound costs nothing when all is well.
    if (params.timeout_ms == 0 && driver_polls_device(spec_.virtio_id, plan.features))
        params.timeout_ms = kPollingDriverReplyTimeoutMs;
    params.config = std::move(plan.config);
    params.zero_copy = spec_.zero_copy;
    offered_features_ = params.features;

    VL_TRY_ASSIGN(auto control, loopback::ControlFile::open(settings_.control_path));
    VL_TRY(control.create(params));
    VL_TRY_ASSIGN(window_, control.window());
    kicks_.clear();
    calls_.clear();
    for (std::uint32_t q = 0; q < queues; ++q) {
        VL_TRY_ASSIGN(auto kick, EventFd::create());
        VL_TRY_ASSIGN(auto call, EventFd::create());
        VL_TRY(control.set_queue_fds(q, kick.get(), call.get()));
        kicks_.push_back(std::move(kick));
        calls_.push_back(std::move(call));
    }
    control_.emplace(std::move(control));
    VL_TRY(loop_.watch(control_->fd(), [this](std::uint32_t events) { on_control_event(events); }));
    VL_TRY(control_->start());
    timeline_.created = SetupTimeline::Clock::now();
    driver_ok_ = false;
    VL_TRY_ASSIGN(auto info, control_->info());
    log_.info("virtio-loopback.{}: {} device (virtio id {}) on {}, {} queue(s) of up to {}, "
              "window {} MiB, zero-copy {}{}",
              info.index, spec_.type->name, spec_.virtio_id, spec_.socket, queues, spec_.queue_size,
              window_.size >> 20, spec_.zero_copy ? "on" : "off",
              planned_control_ ? fmt::format(" ({} receive/transmit pairs and the control queue, "
                                             "which the adapter serves)",
                                             max_pairs_)
                               : std::string());
    return ok_status();
}

void DeviceLink::remove_device()
{
    if (!control_)
        return;
    loop_.unwatch(control_->fd());
    stop_control_queue();
    window_memory_.clear();
    window_map_.reset();
    control_.reset(); // the kernel fails what is pending and removes it
    timeline_reported_ = false;
    rings_due_ = false;
    control_due_ = false;
    control_index_.reset();
    window_ = {};
    kicks_.clear();
    calls_.clear();
    driver_ok_ = false;
    rings_started_ = false;
}

// --- transport messages ---------------------------------------------------

void DeviceLink::on_control_event(std::uint32_t events)
{
    Status s = (events & (EPOLLERR | EPOLLHUP))
                   ? Status(Error("the kernel gave up on the device (a reply came too late)", EIO))
                   : answer_messages();
    if (!s.ok())
        restart_device(s.error());
}

void DeviceLink::restart_device(const Error& why)
{
    log_.error("{}; recreating the device", why.message());
    remove_device();
    drop_backend();
    state_ = State::connecting;
    retry_later(kRetryInterval);
}

Status DeviceLink::answer_messages()
{
    for (;;) {
        VL_TRY_ASSIGN(auto msg, control_->read_message());
        if (!msg)
            return ok_status();
        log_.debug("kernel: {}", loopback::describe_message(*msg));
        Status handled = handle_message(*msg);
        if (!handled.ok())
            log_.error("{}: {}", loopback::describe_message(*msg), handled.error().message());
        int result = handled.ok() ? 0 : -(handled.error().code() ? handled.error().code() : EIO);
        VL_TRY(control_->reply(msg->id, result));
        // After the reply to DRIVER_OK: the driver goes on probing (adding
        // the disk, ...) while the back-end is programmed; its first
        // requests wait in the ring until then. A failure now removes the
        // device (its requests fail) and it is created again.
        if (std::exchange(control_due_, false)) {
            if (Status served = start_control_queue(); !served.ok())
                return served.error().wrap("serving the control queue");
        }
        if (std::exchange(rings_due_, false)) {
            if (Status started = start_rings(false); !started.ok())
                return started.error().wrap("handing the rings to the back-end");
        }
    }
}

Status DeviceLink::handle_message(const virtio_loopback_msg& msg)
{
    switch (msg.type) {
    case VIRTIO_LOOPBACK_MSG_SET_STATUS:
        return on_status(msg.status.status, msg.status.driver_features);
    case VIRTIO_LOOPBACK_MSG_RESET:
        return on_reset();
    case VIRTIO_LOOPBACK_MSG_SET_CONFIG:
        return on_config_write(
            msg.config.offset,
            std::as_bytes(std::span(msg.config.data))
                .first(std::min<std::size_t>(msg.config.len, sizeof(msg.config.data))));
    default:
        return Error(fmt::format("unknown message type {}", msg.type), EINVAL);
    }
}

Status DeviceLink::on_status(std::uint32_t status, std::uint64_t driver_features)
{
    if ((status & VIRTIO_CONFIG_S_FEATURES_OK) && !driver_ok_) {
        std::uint64_t unexpected = driver_features & ~offered_features_ &
                                   ~(bit(kFeatureVersion1) | bit(kFeatureAccessPlatform));
        if (unexpected)
            return Error(
                fmt::format("the driver accepted features never offered: {:#x}", unexpected),
                EINVAL);
        driver_features_ = driver_features;
        plan_queue_layout();
    }
    if ((status & VIRTIO_CONFIG_S_DRIVER_OK) && !driver_ok_) {
        driver_ok_ = true;
        timeline_.probed = SetupTimeline::Clock::now();
        // The adapter's own queue does not need the back-end.
        control_due_ = control_index_.has_value();
        if (state_ == State::disconnected) {
            log_.info("driver ready while the back-end is away: rings start when it returns");
            return ok_status();
        }
        // A driver that busy-waits for the device right after DRIVER_OK
        // (virtio-console's control queue) gets its rings served before
        // it leaves this status write; its CPU sleeps meanwhile. Others go
        // on probing (adding the disk, ...) while the back-end is
        // programmed; their first requests wait in the ring until then.
        if (driver_polls_device(spec_.virtio_id, driver_features_))
            return start_rings(false);
        rings_due_ = true; // once the kernel has its answer
        return ok_status();
    }
    return ok_status();
}

Status DeviceLink::on_reset()
{
    // The kernel frees the rings once we answer: stop reading them first.
    stop_control_queue();
    wanted_pairs_ = 1; // a reset device is back to one pair
    control_due_ = false;
    driver_ok_ = false;
    driver_features_ = 0;
    if (state_ != State::running)
        return ok_status();
    return stop_rings();
}

Status DeviceLink::on_config_write(std::uint32_t offset, std::span<const std::byte> data)
{
    if (state_ != State::running)
        return Error("the back-end is away; the config write is lost", EIO);
    // A config space the adapter built is read-only (virtio-fs, -net).
    if (!config_from_backend(spec_) || !vu::has(protocol_features_, vu::ProtocolFeature::config))
        return ok_status();
    VL_TRY(backend_->set_config(offset, data));
    // The write may change what the driver reads next (virtio-input's
    // select/subsel): refresh the kernel's copy before answering.
    return refresh_config(false);
}

Status DeviceLink::refresh_config(bool notify)
{
    if (!config_from_backend(spec_) || !control_)
        return ok_status();
    VL_TRY_ASSIGN(auto config, backend_->get_config(0, spec_.config_size));
    return control_->set_config(0, config, notify);
}

// --- stage 3: the rings -----------------------------------------------------

Status DeviceLink::start_rings(bool resume)
{
    // The kernel mediates the rings: the back-end's view uses EVENT_IDX
    // whenever the device offered it, whatever the driver took (the driver
    // never gets it; docs/uapi.md, "Mediated rings").
    // What the adapter implements itself (net's control queue) is not the
    // back-end's to know.
    std::uint64_t features =
        ((driver_features_ & ~bit(kFeatureAccessPlatform) & ~adapter_features_) |
         (offered_features_ & bit(virtq::kFeatureEventIdx)) |
         (backend_features_ & vu::kFeatureProtocolFeatures));
    VL_TRY(backend_->set_features(features));

    // The window is the back-end's whole memory: one region whose guest
    // addresses are IOVAs. The user address is the same number, so ring
    // addresses need no translation on our side.
    vu::SharedRegion region;
    region.region.guest_phys_addr = 0;
    region.region.memory_size = window_.size;
    region.region.userspace_addr = 0;
    region.region.mmap_offset = 0;
    region.fd = window_.fd.get();
    VL_TRY(backend_->set_mem_table(std::span(&region, 1)));

    bool enable_messages = backend_features_ & vu::kFeatureProtocolFeatures;
    const std::uint16_t pairs = wanted_pairs_;
    for (std::uint32_t q = 0; q < backend_queues_; ++q) {
        VL_TRY_ASSIGN(auto info, control_->queue(q));
        if (!info.ready)
            continue;
        std::uint32_t base = 0;
        if (resume) {
            VL_TRY_ASSIGN(auto requeued, control_->requeue(q));
            base = requeued.base;
            log_.info("queue {}: resuming at {} with {} request(s) handed to the new back-end", q,
                      requeued.base, requeued.count);
        }
        VL_TRY(backend_->set_vring_num(q, info.size));
        VL_TRY(backend_->set_vring_base(q, base));
        vu::VringAddr addr;
        addr.index = q;
        addr.desc_user_addr = info.desc;
        addr.avail_user_addr = info.avail;
        addr.used_user_addr = info.used;
        VL_TRY(backend_->set_vring_addr(addr));
        // Call before kick: a back-end may start the ring, and complete
        // the requests put back after a loss, as soon as it has the kick;
        // it must have somewhere to signal them (qemu-storage-daemon
        // panics on a completion with no call fd).
        VL_TRY(backend_->set_vring_call(q, calls_[q].get()));
        VL_TRY(backend_->set_vring_kick(q, kicks_[q].get()));
        // Rings start disabled with protocol features; pairs the driver has
        // not asked for yet (multiqueue) stay so.
        if (enable_messages && ring_enabled(q, pairs))
            VL_TRY(backend_->set_vring_enable(q, true));
        // Requests may already wait in the ring (put back after a loss, or
        // added before the back-end listened) with no kick left to come:
        // ring the doorbell once so the back-end looks.
        VL_TRY(kicks_[q].signal());
    }
    rings_started_ = true;
    backend_pairs_ = pairs;
    arm_watchdog();
    log_.info("driver ready: rings handed to the back-end (features {:#x})", driver_features_);
    if (control_index_)
        log_.info("receive/transmit pairs enabled in the back-end: {} of {}", pairs, max_pairs_);
    if (!resume && !std::exchange(timeline_reported_, true))
        log_.info("set-up: {}", timeline_.describe(SetupTimeline::Clock::now()));
    return ok_status();
}

Status DeviceLink::stop_rings()
{
    if (!rings_started_)
        return ok_status();
    rings_started_ = false;
    disarm_watchdog();
    bool enable_messages = backend_features_ & vu::kFeatureProtocolFeatures;
    for (std::uint32_t q = 0; q < backend_queues_; ++q) {
        if (enable_messages)
            VL_TRY(backend_->set_vring_enable(q, false));
        // GET_VRING_BASE stops the ring: after the reply the back-end no
        // longer touches it, so the kernel may free it.
        auto base = backend_->get_vring_base(q);
        if (!base.ok() && base.error().code() != EINVAL)
            return base.error();
    }
    log_.info("device reset: rings stopped");
    return ok_status();
}

// --- the adapter's own queue: virtio-net's control queue ------------------

// Which queues the driver uses, from the features it took: with the
// multiqueue feature all pairs and the control queue after them; without
// it one pair, and the control queue (if taken) as queue 2.
void DeviceLink::plan_queue_layout()
{
    backend_queues_ = num_queues_;
    control_index_.reset();
    if (!planned_control_)
        return;
    const DeviceType& type = *spec_.type;
    const bool multiqueue = driver_features_ & bit(type.multiqueue_feature);
    backend_queues_ = multiqueue ? *planned_control_ : 2;
    if (driver_features_ & bit(type.control_queue_feature))
        control_index_ = backend_queues_;
}

bool DeviceLink::ring_enabled(std::uint32_t index, std::uint16_t pairs) const
{
    return !control_index_ || index < 2U * pairs;
}

Status DeviceLink::start_control_queue()
{
    stop_control_queue();
    if (!control_index_ || !control_)
        return ok_status();
    const std::uint32_t index = *control_index_;
    VL_TRY_ASSIGN(auto info, control_->queue(index));
    if (!info.ready) {
        log_.warn("the driver took the control queue but did not set up queue {}", index);
        return ok_status();
    }
    if (!window_map_.valid()) {
        VL_TRY_ASSIGN(window_map_, Mapping::map(window_.fd.get(), window_.size, 0));
        window_memory_.clear();
        VL_TRY(window_memory_.add_region(
            virtq::MemoryRegion{0, window_.size, window_map_.data(), std::nullopt}));
    }
    if (!pairs_changed_.valid()) {
        VL_TRY_ASSIGN(pairs_changed_, EventFd::create());
    }
    virtq::QueueConfig config;
    config.size = info.size;
    config.desc_addr = info.desc;
    config.avail_addr = info.avail;
    config.used_addr = info.used;
    // The device's view of a mediated ring (docs/uapi.md).
    config.event_idx = offered_features_ & bit(virtq::kFeatureEventIdx);
    config.indirect_desc = driver_features_ & bit(virtq::kFeatureIndirectDesc);
    const bool multiqueue = driver_features_ & bit(spec_.type->multiqueue_feature);
    const std::uint16_t most = multiqueue ? max_pairs_ : 1;
    // On the control queue's thread: the answer never waits for the
    // back-end; the event loop enables the pairs next (on_pairs_changed).
    net_control_.emplace(
        most,
        [this](std::uint16_t pairs) {
            wanted_pairs_ = pairs;
            return pairs_changed_.signal();
        },
        log_.child("control"));
    VL_TRY_ASSIGN(auto queue, AdapterQueue::create(
                                  window_memory_, config,
                                  [this](const virtq::DescriptorChain& request) {
                                      return net_control_->serve(request);
                                  },
                                  [this, index] { return calls_[index].signal(); }));
    VL_TRY(loop_.watch(pairs_changed_.get(), [this](std::uint32_t) { on_pairs_changed(); }));
    VL_TRY_ASSIGN(control_thread_,
                  AdapterQueueThread::start(std::move(queue), kicks_[index].get()));
    VL_TRY(
        loop_.watch(control_thread_->failed_fd(), [this](std::uint32_t) { on_control_failed(); }));
    log_.info("the adapter serves the control queue (queue {}): up to {} receive/transmit "
              "pair(s)",
              index, most);
    return ok_status();
}

void DeviceLink::stop_control_queue()
{
    if (control_thread_)
        loop_.unwatch(control_thread_->failed_fd());
    control_thread_.reset(); // joins: the rings are not read any more
    net_control_.reset();
    if (pairs_changed_.valid())
        loop_.unwatch(pairs_changed_.get());
}

void DeviceLink::on_control_failed()
{
    auto why = control_thread_ ? control_thread_->failure() : std::nullopt;
    restart_device(why ? why->wrap("the control queue") : Error("the control queue stopped"));
}

void DeviceLink::on_pairs_changed()
{
    (void)pairs_changed_.drain();
    if (Status s = apply_queue_pairs(); !s.ok())
        log_.warn("enabling {} receive/transmit pair(s) in the back-end: {} (applied again when "
                  "it reconnects)",
                  wanted_pairs_.load(), s.error().message());
}

// The driver's MQ_VQ_PAIRS_SET, answered already: enable the first pairs
// in the back-end and disable the rest (their rings stay set up). With the
// back-end away, start_rings() applies it when it returns.
Status DeviceLink::apply_queue_pairs()
{
    const std::uint16_t pairs = wanted_pairs_;
    if (state_ != State::running || !rings_started_ || !backend_ || pairs == backend_pairs_)
        return ok_status();
    if (!(backend_features_ & vu::kFeatureProtocolFeatures))
        return Error("the back-end cannot enable single rings (no protocol features)");
    const std::uint32_t low = 2U * std::min(backend_pairs_, pairs);
    const std::uint32_t high = std::min(2U * std::max(backend_pairs_, pairs), backend_queues_);
    for (std::uint32_t q = low; q < high; ++q) {
        const bool enable = q < 2U * pairs;
        VL_TRY(backend_->set_vring_enable(q, enable));
        // The driver may have used the ring already: have the back-end look.
        if (enable)
            VL_TRY(kicks_[q].signal());
    }
    backend_pairs_ = pairs;
    log_.info("receive/transmit pairs enabled in the back-end: {} of {}", pairs, max_pairs_);
    return ok_status();
}

// --- back-end events and loss ---------------------------------------------

void DeviceLink::on_backend_event(std::uint32_t events)
{
    // A front-end expects nothing unsolicited on the main socket: anything
    // readable is the end of the connection (or a protocol violation).
    (void)events;
    backend_lost(Error("the back-end closed its socket"));
}

void DeviceLink::on_backend_channel_event(std::uint32_t events)
{
    if (events & (EPOLLHUP | EPOLLERR)) {
        loop_.unwatch(backend_channel_->fd());
        return; // the main socket reports the loss
    }
    auto received = vu::receive_backend_request(*backend_channel_);
    if (!received.ok()) {
        loop_.unwatch(backend_channel_->fd());
        return;
    }
    bool handled = false;
    if (received->request == vu::BackendRequest::config_change_msg) {
        Status s = refresh_config(true);
        if (!s.ok())
            log_.warn("config change: {}", s.error().message());
        else
            log_.info("the back-end changed its config space; driver notified");
        handled = s.ok();
    }
    (void)vu::answer_backend_request(*backend_channel_, received->message, handled,
                                     vu::has(protocol_features_, vu::ProtocolFeature::reply_ack));
}

void DeviceLink::backend_lost(const Error& why)
{
    drop_backend();
    if (!control_) {
        state_ = State::connecting;
        retry_later(kRetryInterval);
        return;
    }
    state_ = State::disconnected;
    log_.warn("{}: keeping the device for {} s while waiting for the back-end to return",
              why.message(), settings_.reconnect_grace.count() / 1000);
    auto timer = loop_.after(settings_.reconnect_grace, [this] { on_grace_expired(); });
    if (timer.ok())
        grace_timer_ = *timer;
    retry_later(kRetryInterval);
}

void DeviceLink::on_grace_expired()
{
    grace_timer_.reset();
    if (state_ != State::disconnected)
        return;
    log_.warn("the back-end did not return within {} s: removing the device (pending requests "
              "fail with I/O errors); it is recreated when the back-end returns",
              settings_.reconnect_grace.count() / 1000);
    remove_device();
    state_ = State::connecting;
}

} // namespace vl::adapter

namespace vl::adapter
{

// --- the watchdog -----------------------------------------------------------

void DeviceLink::arm_watchdog()
{
    disarm_watchdog();
    if (settings_.stall_timeout.count() == 0 || !spec_.type->prompt_requests)
        return;
    watched_used_.assign(backend_queues_, 0);
    stalled_.assign(backend_queues_, std::chrono::milliseconds(0));
    auto timer = loop_.after(kWatchdogTick, [this] { on_watchdog_tick(); });
    if (timer.ok())
        watchdog_timer_ = *timer;
}

void DeviceLink::disarm_watchdog()
{
    if (watchdog_timer_)
        loop_.cancel(*watchdog_timer_);
    watchdog_timer_.reset();
}

// A queue with requests pending whose used index did not move for the
// stall timeout has a back-end that is stopped or wedged: treat it as lost.
void DeviceLink::on_watchdog_tick()
{
    watchdog_timer_.reset();
    if (state_ != State::running || !rings_started_ || !control_)
        return;
    for (std::uint32_t q = 0; q < backend_queues_; ++q) {
        auto info = control_->queue(q);
        if (!info.ok() || !info->ready)
            continue;
        bool moved = info->used_idx != watched_used_[q];
        watched_used_[q] = info->used_idx;
        stalled_[q] = (moved || info->outstanding == 0) ? std::chrono::milliseconds(0)
                                                        : stalled_[q] + kWatchdogTick;
        if (stalled_[q] >= settings_.stall_timeout) {
            backend_lost(Error(fmt::format(
                "the back-end completed nothing on queue {} for {} s with {} request(s) "
                "pending (stopped or wedged)",
                q, stalled_[q].count() / 1000, info->outstanding)));
            return;
        }
    }
    auto timer = loop_.after(kWatchdogTick, [this] { on_watchdog_tick(); });
    if (timer.ok())
        watchdog_timer_ = *timer;
}

} // namespace vl::adapter
