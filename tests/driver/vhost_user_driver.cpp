// SPDX-License-Identifier: Apache-2.0
#include "vhost_user_driver.hpp"

#include <fmt/format.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace vl::test_driver
{

namespace
{

using vhost_user::ProtocolFeature;
using Clock = std::chrono::steady_clock;

// Rings go on their own pages: any alignment the spec asks for is met, and
// a back-end that maps rings page-wise never shares a page with data.
constexpr std::uint64_t kRingAlign = 4096;

constexpr std::array<FeatureName, 15> kTransportFeatureNames{{
    {24, "NOTIFY_ON_EMPTY"},
    {26, "LOG_ALL"},
    {27, "ANY_LAYOUT"},
    {28, "INDIRECT_DESC"},
    {29, "EVENT_IDX"},
    {30, "PROTOCOL_FEATURES"},
    {32, "VERSION_1"},
    {33, "ACCESS_PLATFORM"},
    {34, "RING_PACKED"},
    {35, "IN_ORDER"},
    {36, "ORDER_PLATFORM"},
    {37, "SR_IOV"},
    {38, "NOTIFICATION_DATA"},
    {39, "NOTIF_CONFIG_DATA"},
    {40, "RING_RESET"},
}};

constexpr std::array<const char*, 20> kProtocolFeatureNames{
    "MQ",
    "LOG_SHMFD",
    "RARP",
    "REPLY_ACK",
    "MTU",
    "BACKEND_REQ",
    "CROSS_ENDIAN",
    "CRYPTO_SESSION",
    "PAGEFAULT",
    "CONFIG",
    "BACKEND_SEND_FD",
    "HOST_NOTIFIER",
    "INFLIGHT_SHMFD",
    "RESET_DEVICE",
    "INBAND_NOTIFICATIONS",
    "CONFIGURE_MEM_SLOTS",
    "STATUS",
    "XEN_MMAP",
    "SHARED_OBJECT",
    "DEVICE_STATE",
};

// The most rings SET_VRING_KICK/CALL can address (8-bit index).
constexpr std::uint32_t kMaxQueues = vhost_user::kMaxVringFdIndex + 1;

} // namespace

std::string feature_names(std::uint64_t features, std::span<const FeatureName> device_names)
{
    std::string out;
    for (unsigned bit = 0; bit < 64; ++bit) {
        if (!has_feature(features, bit))
            continue;
        const char* name = nullptr;
        for (const FeatureName& f : device_names)
            if (f.bit == bit)
                name = f.name;
        for (const FeatureName& f : kTransportFeatureNames)
            if (f.bit == bit)
                name = f.name;
        if (!out.empty())
            out += ' ';
        out += name != nullptr ? std::string(name) : fmt::format("bit{}", bit);
    }
    return out.empty() ? "(none)" : out;
}

std::string protocol_feature_names(std::uint64_t features)
{
    std::string out;
    for (unsigned bit = 0; bit < 64; ++bit) {
        if (!has_feature(features, bit))
            continue;
        if (!out.empty())
            out += ' ';
        out += bit < kProtocolFeatureNames.size() ? std::string(kProtocolFeatureNames[bit])
                                                  : fmt::format("bit{}", bit);
    }
    return out.empty() ? "(none)" : out;
}

// ---------------------------------------------------------------------------
// Session

VhostUserDriver::VhostUserDriver(vhost_user::Frontend frontend, std::shared_ptr<GuestPool> pool,
                                 Logger logger)
    : frontend_(std::move(frontend)), pool_(std::move(pool)), logger_(std::move(logger))
{
}

VhostUserDriver::VhostUserDriver(VhostUserDriver&&) noexcept = default;
VhostUserDriver& VhostUserDriver::operator=(VhostUserDriver&&) noexcept = default;
VhostUserDriver::~VhostUserDriver() = default;

Result<VhostUserDriver> VhostUserDriver::connect(const std::string& socket_path,
                                                 const ConnectOptions& options, Logger logger)
{
    auto connection = vhost_user::connect_to(socket_path);
    if (!connection)
        return connection.error();
    auto driver = connect(std::move(connection).value(), options, std::move(logger));
    if (!driver)
        return driver.error().wrap("back-end " + socket_path);
    return driver;
}

Result<VhostUserDriver> VhostUserDriver::connect(vhost_user::Connection connection,
                                                 const ConnectOptions& options, Logger logger)
{
    VL_TRY_ASSIGN(auto pool,
                  GuestPool::create(options.memory_bytes, options.guest_base,
                                    options.unpinnable_memory ? GuestPool::Backing::unpinnable
                                                              : GuestPool::Backing::memfd));
    vhost_user::Frontend frontend(std::move(connection),
                                  vhost_user::FrontendOptions{options.reply_timeout});
    VhostUserDriver driver(std::move(frontend), std::move(pool), std::move(logger));
    VL_TRY(driver.negotiate(options));
    return driver;
}

Status VhostUserDriver::negotiate(const ConnectOptions& options)
{
    VL_TRY_ASSIGN(negotiated_.offered_features, frontend_.get_features());
    logger_.debug("back-end offers features {:#x}: {}", negotiated_.offered_features,
                  feature_names(negotiated_.offered_features));

    if ((negotiated_.offered_features & vhost_user::kFeatureProtocolFeatures) != 0) {
        VL_TRY_ASSIGN(negotiated_.offered_protocol_features, frontend_.get_protocol_features());
        negotiated_.protocol_features = negotiated_.offered_protocol_features &
                                        options.protocol_features & kSupportedProtocolFeatures;
        logger_.debug("back-end offers protocol features {:#x} ({}); using {}",
                      negotiated_.offered_protocol_features,
                      protocol_feature_names(negotiated_.offered_protocol_features),
                      protocol_feature_names(negotiated_.protocol_features));
        VL_TRY(frontend_.set_protocol_features(negotiated_.protocol_features));
    }

    if (has_protocol_feature(ProtocolFeature::mq)) {
        VL_TRY_ASSIGN(std::uint64_t queues, frontend_.get_queue_num());
        if (queues == 0)
            return Error("GET_QUEUE_NUM: the back-end reports 0 queues", EPROTO);
        negotiated_.max_queues =
            static_cast<std::uint32_t>(std::min<std::uint64_t>(queues, kMaxQueues));
        logger_.debug("back-end has {} queues", queues);
    }
    return frontend_.set_owner();
}

Result<std::vector<std::byte>> VhostUserDriver::get_config(std::uint32_t offset, std::uint32_t size)
{
    if (!has_protocol_feature(ProtocolFeature::config))
        return Error("cannot read the device config: the back-end does not offer (or we did not "
                     "negotiate) protocol feature CONFIG",
                     ENOTSUP);
    return frontend_.get_config(offset, size);
}

Status VhostUserDriver::set_config(std::uint32_t offset, std::span<const std::byte> data)
{
    if (!has_protocol_feature(ProtocolFeature::config))
        return Error("cannot write the device config: the back-end does not offer (or we did not "
                     "negotiate) protocol feature CONFIG",
                     ENOTSUP);
    return frontend_.set_config(offset, data);
}

// ---------------------------------------------------------------------------
// Start

bool VhostUserDriver::event_idx() const noexcept
{
    return has_feature(negotiated_.acked_features, virtq::kFeatureEventIdx);
}

bool VhostUserDriver::indirect_desc() const noexcept
{
    return has_feature(negotiated_.acked_features, virtq::kFeatureIndirectDesc);
}

Result<std::uint64_t> VhostUserDriver::features_to_ack(const StartOptions& options) const
{
    const std::uint64_t offered = negotiated_.offered_features;
    // Rings are little-endian and laid out per virtio 1.x only.
    if (!has_feature(offered, kFeatureVersion1))
        return Error("the back-end does not offer VIRTIO_F_VERSION_1; this driver speaks "
                     "virtio 1.x only",
                     ENOTSUP);
    std::uint64_t ack = offered & options.device_features & kDeviceFeatureMask;
    ack |= feature_bit(kFeatureVersion1);
    if (options.event_idx)
        ack |= offered & feature_bit(virtq::kFeatureEventIdx);
    if (options.indirect_desc && options.indirect_entries > 0)
        ack |= offered & feature_bit(virtq::kFeatureIndirectDesc);
    // Acked as QEMU does: it tells the back-end that rings start disabled
    // until SET_VRING_ENABLE (otherwise it enables them on its own).
    ack |= offered & vhost_user::kFeatureProtocolFeatures;
    return ack;
}

Status VhostUserDriver::start(const StartOptions& options)
{
    if (started() || stopped_)
        return Error("start: the queues were already started on this connection", EINVAL);
    if (options.queue_count == 0 || options.queue_count > kMaxQueues)
        return Error(fmt::format("start: {} queues requested; 1 to {} are possible",
                                 options.queue_count, kMaxQueues),
                     EINVAL);
    if (negotiated_.max_queues && options.queue_count > *negotiated_.max_queues)
        return Error(fmt::format("start: {} queues requested but the back-end has only {}",
                                 options.queue_count, *negotiated_.max_queues),
                     EINVAL);
    if (!virtq::valid_queue_size(options.queue_size))
        return Error(fmt::format("start: queue size {} is not a power of two between 1 and {}",
                                 options.queue_size, virtq::kMaxQueueSize),
                     EINVAL);

    VL_TRY_ASSIGN(std::uint64_t ack, features_to_ack(options));
    VL_TRY(frontend_.set_features(ack));
    negotiated_.acked_features = ack;
    start_options_ = options;
    logger_.debug("acked features {:#x}: {}", ack, feature_names(ack));

    VL_TRY(share_memory());
    std::vector<Queue> queues;
    for (std::uint32_t i = 0; i < options.queue_count; ++i) {
        VL_TRY_ASSIGN(Queue queue, make_queue(i));
        VL_TRY(program_queue(queue));
        queues.push_back(std::move(queue));
    }
    queues_ = std::move(queues);
    logger_.debug("{} queues of {} entries started (event_idx {}, indirect {})", queues_.size(),
                  options.queue_size, event_idx(), indirect_desc());
    return ok_status();
}

Status VhostUserDriver::share_memory()
{
    vhost_user::SharedRegion region;
    region.region.guest_phys_addr = pool_->guest_base();
    region.region.memory_size = pool_->size();
    region.region.userspace_addr = pool_->user_addr();
    region.region.mmap_offset = 0;
    region.fd = pool_->fd();
    logger_.debug("memory: {} bytes at guest {:#x}, user {:#x}", pool_->size(), pool_->guest_base(),
                  pool_->user_addr());
    return frontend_.set_mem_table(std::span(&region, 1));
}

Result<VhostUserDriver::Queue> VhostUserDriver::make_queue(std::uint32_t index)
{
    virtq::DriverConfig config;
    config.size = start_options_.queue_size;
    config.event_idx = event_idx();
    config.indirect_entries = indirect_desc() ? start_options_.indirect_entries : 0;
    VL_TRY_ASSIGN(virtq::RingLayout layout, virtq::RingLayout::compute(config));

    Queue q;
    q.index = index;
    VL_TRY_ASSIGN(q.ring_memory, pool_->allocate(layout.total_bytes, kRingAlign));
    auto ring =
        virtq::SplitDriver::create(q.ring_memory.bytes(), q.ring_memory.guest_addr(), config);
    if (!ring)
        return ring.error().wrap(fmt::format("queue {}", index));
    q.ring.emplace(std::move(ring).value());
    VL_TRY_ASSIGN(q.kick, EventFd::create());
    VL_TRY_ASSIGN(q.call, EventFd::create());
    return q;
}

Status VhostUserDriver::program_queue(Queue& q)
{
    const std::uint32_t i = q.index;
    // Ring addresses travel as our user addresses (the region's
    // userspace_addr space), which is what QEMU sends and back-ends expect.
    auto user = [&](std::uint64_t guest) {
        return pool_->user_addr() + (guest - pool_->guest_base());
    };
    vhost_user::VringAddr addr;
    addr.index = i;
    addr.desc_user_addr = user(q.ring->desc_addr());
    addr.avail_user_addr = user(q.ring->avail_addr());
    addr.used_user_addr = user(q.ring->used_addr());

    VL_TRY(frontend_.set_vring_num(i, start_options_.queue_size));
    VL_TRY(frontend_.set_vring_base(i, 0));
    VL_TRY(frontend_.set_vring_addr(addr));
    // The call fd before the kick fd: a back-end may start working as soon
    // as it has the kick fd, and must be able to signal completions then.
    VL_TRY(frontend_.set_vring_call(i, q.call.get()));
    VL_TRY(frontend_.set_vring_kick(i, q.kick.get()));
    if ((negotiated_.acked_features & vhost_user::kFeatureProtocolFeatures) != 0)
        VL_TRY(frontend_.set_vring_enable(i, true));
    return ok_status();
}

Result<Buffer> VhostUserDriver::allocate(std::uint64_t size, std::uint64_t align)
{
    return pool_->allocate(size, align);
}

// ---------------------------------------------------------------------------
// Requests

Result<VhostUserDriver::Queue*> VhostUserDriver::queue_at(std::uint32_t index)
{
    if (!started())
        return Error(stopped_ ? "the queues were stopped"
                              : "the queues were not started (call "
                                "start() first)",
                     EINVAL);
    if (index >= queues_.size())
        return Error(
            fmt::format("queue {} does not exist ({} queues were started)", index, queues_.size()),
            EINVAL);
    return &queues_[index];
}

const VhostUserDriver::Queue* VhostUserDriver::queue_at(std::uint32_t index) const noexcept
{
    return index < queues_.size() ? &queues_[index] : nullptr;
}

std::uint32_t VhostUserDriver::in_flight(std::uint32_t queue) const
{
    const Queue* q = queue_at(queue);
    return q != nullptr ? q->ring->in_flight() : 0;
}

std::uint32_t VhostUserDriver::free_descriptors(std::uint32_t queue) const
{
    const Queue* q = queue_at(queue);
    return q != nullptr ? q->ring->free_descriptors() : 0;
}

virtq::SplitDriver& VhostUserDriver::ring(std::uint32_t queue)
{
    return *queues_.at(queue).ring;
}

Status VhostUserDriver::check_in_memory(std::span<const virtq::GuestBuffer> buffers) const
{
    const std::uint64_t base = pool_->guest_base();
    const std::uint64_t size = pool_->size();
    for (const virtq::GuestBuffer& b : buffers)
        if (b.addr < base || b.addr - base > size || b.len > size - (b.addr - base))
            return Error(fmt::format("buffer [{:#x}, +{}) is outside guest memory [{:#x}, +{})",
                                     b.addr, b.len, base, size),
                         EINVAL);
    return ok_status();
}

Result<std::uint16_t> VhostUserDriver::add(std::uint32_t queue,
                                           std::span<const virtq::GuestBuffer> readable,
                                           std::span<const virtq::GuestBuffer> writable)
{
    VL_TRY_ASSIGN(Queue * q, queue_at(queue));
    VL_TRY(check_in_memory(readable));
    VL_TRY(check_in_memory(writable));
    const std::size_t buffers = readable.size() + writable.size();
    const bool indirect =
        indirect_desc() && buffers >= 2 && buffers <= start_options_.indirect_entries;
    auto head = q->ring->add(readable, writable, indirect);
    if (!head)
        return head.error().wrap(fmt::format("queue {}", queue));
    if (!*head)
        return Error(fmt::format("queue {} is full: {} descriptors free, requests in flight: {}; "
                                 "wait for used buffers first",
                                 queue, q->ring->free_descriptors(), q->ring->in_flight()),
                     EAGAIN);
    logger_.trace("queue {}: added head {} ({} readable, {} writable{})", queue, **head,
                  readable.size(), writable.size(), indirect ? ", indirect" : "");
    return **head;
}

Status VhostUserDriver::kick(std::uint32_t queue)
{
    VL_TRY_ASSIGN(Queue * q, queue_at(queue));
    if (!q->ring->kick_needed())
        return ok_status();
    Status signalled = q->kick.signal();
    if (!signalled)
        return signalled.error().wrap(fmt::format("queue {}: kick", queue));
    return ok_status();
}

Result<std::uint16_t> VhostUserDriver::submit(std::uint32_t queue,
                                              std::span<const virtq::GuestBuffer> readable,
                                              std::span<const virtq::GuestBuffer> writable)
{
    VL_TRY_ASSIGN(std::uint16_t head, add(queue, readable, writable));
    VL_TRY(kick(queue));
    return head;
}

Status VhostUserDriver::send_and_wait(std::uint32_t queue, std::span<const std::byte> bytes,
                                      std::chrono::milliseconds timeout)
{
    VL_TRY_ASSIGN(Buffer buffer, allocate(std::max<std::size_t>(bytes.size(), 1)));
    std::copy(bytes.begin(), bytes.end(), buffer.bytes().begin());
    const virtq::GuestBuffer readable{buffer.guest_addr(),
                                      static_cast<std::uint32_t>(bytes.size())};
    VL_TRY_ASSIGN(std::uint16_t head, submit(queue, std::span(&readable, 1), {}));
    VL_TRY_ASSIGN(virtq::UsedBuffer used, wait_used(queue, timeout));
    if (used.head != head)
        return Error(
            fmt::format("queue {}: completed head {}, submitted {}", queue, used.head, head),
            EPROTO);
    return ok_status();
}

Result<std::optional<virtq::UsedBuffer>> VhostUserDriver::poll_used(std::uint32_t queue)
{
    VL_TRY_ASSIGN(Queue * q, queue_at(queue));
    auto used = q->ring->get_used();
    if (!used)
        return used.error().wrap(fmt::format("queue {}: the back-end broke the ring rules", queue));
    return used;
}

int VhostUserDriver::socket_fd() noexcept
{
    return frontend_.connection().fd();
}

Result<virtq::UsedBuffer> VhostUserDriver::wait_used(std::uint32_t queue,
                                                     std::chrono::milliseconds timeout)
{
    VL_TRY_ASSIGN(Queue * q, queue_at(queue));
    if (q->ring->in_flight() == 0)
        return Error(
            fmt::format("queue {}: waiting for a used buffer with nothing in flight", queue),
            EINVAL);
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        VL_TRY_ASSIGN(std::optional<virtq::UsedBuffer> used, poll_used(queue));
        if (used)
            return *used;
        // Re-arm notifications, then look again: a completion that landed
        // before the re-arm would otherwise never signal.
        if (q->ring->enable_interrupts())
            continue;
        VL_TRY(wait_for_call(*q, deadline, timeout));
    }
}

Status VhostUserDriver::wait_for_call(Queue& q, Clock::time_point deadline,
                                      std::chrono::milliseconds timeout)
{
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
        return Error(fmt::format("queue {}: no used buffer within {} ms (requests in flight: {}); "
                                 "the back-end is stuck, missed the kick or lost the request",
                                 q.index, timeout.count(), q.ring->in_flight()),
                     ETIMEDOUT);
    // Watch the socket too: a back-end that dies closes it, and that should
    // fail the wait now rather than after the whole timeout.
    std::array<pollfd, 2> fds{{{q.call.get(), POLLIN, 0}, {socket_fd(), POLLRDHUP, 0}}};
    const int n = ::poll(fds.data(), fds.size(),
                         static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
    if (n < 0) {
        if (errno == EINTR)
            return ok_status();
        return Error::from_errno(fmt::format("queue {}: poll on the call eventfd", q.index));
    }
    if ((fds[0].revents & POLLIN) != 0) {
        VL_TRY(q.call.drain());
        return ok_status();
    }
    if ((fds[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0)
        return Error(fmt::format("queue {}: the back-end closed the connection (requests in "
                                 "flight: {})",
                                 q.index, q.ring->in_flight()),
                     ECONNRESET);
    return ok_status(); // timed out: the next round reports it with the used ring checked once more
}

// ---------------------------------------------------------------------------
// Teardown

Result<std::vector<std::uint32_t>> VhostUserDriver::stop()
{
    std::vector<Queue> queues = std::move(queues_);
    queues_.clear();
    if (queues.empty())
        return std::vector<std::uint32_t>();
    stopped_ = true;
    const bool enabled = (negotiated_.acked_features & vhost_user::kFeatureProtocolFeatures) != 0;
    if (enabled)
        for (const Queue& q : queues)
            VL_TRY(frontend_.set_vring_enable(q.index, false));
    std::vector<std::uint32_t> bases;
    for (const Queue& q : queues) {
        VL_TRY_ASSIGN(std::uint32_t base, frontend_.get_vring_base(q.index));
        if (base != q.ring->avail_idx())
            logger_.debug("queue {}: back-end stopped at available index {}, we published {}",
                          q.index, base, q.ring->avail_idx());
        bases.push_back(base);
    }
    return bases;
}

void VhostUserDriver::disconnect() noexcept
{
    frontend_.connection().close();
}

} // namespace vl::test_driver
