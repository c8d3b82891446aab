// SPDX-License-Identifier: Apache-2.0
#include "backend/session.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <limits>

#include "backend/wait.hpp"
#include "vhost_user/backend_dispatch.hpp"
#include "virtqueue/ring.hpp"

namespace vl::backend
{

namespace vu = vhost_user;
using vu::ProtocolFeature;

std::uint64_t framework_protocol_features()
{
    return vu::bit(ProtocolFeature::mq) | vu::bit(ProtocolFeature::reply_ack) |
           vu::bit(ProtocolFeature::backend_req) | vu::bit(ProtocolFeature::inflight_shmfd) |
           vu::bit(ProtocolFeature::reset_device) | vu::bit(ProtocolFeature::configure_mem_slots) |
           vu::bit(ProtocolFeature::status);
}

std::uint64_t offered_features(const Device& device)
{
    return device.features() | kFeatureVersion1 | kFeatureEventIdx | kFeatureIndirectDesc |
           vu::kFeatureProtocolFeatures;
}

Status check_device(const Device& device)
{
    if (device.num_queues() == 0 || device.num_queues() > vu::kMaxVringFdIndex + 1)
        return Error(fmt::format("the device has {} queues; vhost-user serves 1 to {}",
                                 device.num_queues(), vu::kMaxVringFdIndex + 1),
                     EINVAL);
    if (!virtq::valid_queue_size(device.max_queue_size()))
        return Error(fmt::format("the device's largest queue size {} is not a power of two "
                                 "from 1 to {}",
                                 device.max_queue_size(), virtq::kMaxQueueSize),
                     EINVAL);
    return ok_status();
}

namespace
{

Error refusal(std::string message)
{
    return Error(std::move(message), ENOTSUP);
}

} // namespace

Session::Session(Device& device, FrontendNotifier& notifier, SessionOptions options, Logger logger)
    : device_(device), notifier_(notifier), options_(options), logger_(std::move(logger))
{
    rings_.reserve(device_.num_queues());
    for (std::uint32_t i = 0; i < device_.num_queues(); ++i)
        rings_.push_back(std::make_unique<Ring>());
}

Session::~Session()
{
    stop_all_rings();
    if (channel_attached_)
        notifier_.detach();
    device_.reset();
}

// ---------------------------------------------------------------------------
// Helpers

Error Session::violation(Error error)
{
    if (!violation_)
        violation_ = error;
    return error;
}

Result<Session::Ring*> Session::ring_at(std::uint32_t index)
{
    if (index >= rings_.size())
        return violation(Error(fmt::format("ring index {} is out of range: the device has {} "
                                           "queues",
                                           index, rings_.size()),
                               EINVAL));
    return rings_[index].get();
}

bool Session::negotiated(ProtocolFeature feature) const
{
    return vu::has(protocol_features_, feature);
}

bool Session::should_run(const Ring& ring) const
{
    return ring.kick.valid() && ring.enabled && ring.num != 0 && ring.addr.has_value() &&
           !memory_.empty();
}

Result<std::uint64_t> Session::ring_part(std::uint32_t index, const char* part,
                                         std::uint64_t user_addr, std::uint64_t bytes) const
{
    auto guest = memory_.guest().user_to_guest(user_addr, bytes);
    if (!guest)
        return guest.error().wrap(fmt::format("ring {} {}", index, part));
    return guest;
}

// The guest addresses of the ring's three parts, each of which must lie
// inside one memory region.
Result<Session::RingAddresses> Session::translate_ring(std::uint32_t index, std::uint32_t num,
                                                       const vu::VringAddr& addr) const
{
    const bool event_idx = (acked_features_ & kFeatureEventIdx) != 0;
    RingAddresses guest;
    VL_TRY_ASSIGN(guest.desc, ring_part(index, "descriptor table", addr.desc_user_addr,
                                        virtq::desc_table_bytes(num)));
    VL_TRY_ASSIGN(guest.avail, ring_part(index, "available ring", addr.avail_user_addr,
                                         virtq::avail_ring_bytes(num, event_idx)));
    VL_TRY_ASSIGN(guest.used, ring_part(index, "used ring", addr.used_user_addr,
                                        virtq::used_ring_bytes(num, event_idx)));
    return guest;
}

Result<std::deque<virtq::DescriptorChain>>
Session::recover_inflight(std::uint32_t index, Ring& ring, virtq::SplitQueue& queue)
{
    std::deque<virtq::DescriptorChain> chains;
    ring.inflight.reset();
    if (!inflight_ || index >= inflight_->num_queues())
        return chains;
    if (ring.num > inflight_->queue_size())
        return violation(Error(fmt::format("ring {} has {} entries but the inflight buffer "
                                           "tracks only {}",
                                           index, ring.num, inflight_->queue_size()),
                               EINVAL));
    ring.inflight.emplace(inflight_->queue(static_cast<std::uint16_t>(index)));
    auto heads = ring.inflight->recover(queue.used_idx(), ring.num);
    if (!heads)
        return violation(heads.error().wrap(fmt::format("ring {}", index)));
    queue.set_inflight_tracker(&*ring.inflight);
    if (heads->empty())
        return chains;
    // Every chain taken from the available ring is either used or in
    // flight, so the next one to take follows both.
    const auto next = static_cast<std::uint16_t>(queue.used_idx() + heads->size());
    logger_.info("ring {}: resubmitting {} chains left in flight by a previous back-end; next "
                 "available index {} (the front-end said {})",
                 index, heads->size(), next, ring.base);
    queue.set_last_avail_idx(next);
    for (std::uint16_t head : *heads) {
        auto chain = queue.resubmit(head);
        if (!chain) {
            // A broken queue is reported by its worker; a duplicate head is
            // skipped.
            logger_.error("ring {}: cannot resubmit head {}: {}", index, head,
                          chain.error().message());
            if (queue.broken())
                break;
            continue;
        }
        chains.push_back(std::move(chain).value());
    }
    return chains;
}

Status Session::start_ring(std::uint32_t index)
{
    Ring& ring = *rings_[index];
    auto guest = translate_ring(index, ring.num, *ring.addr);
    if (!guest)
        return violation(guest.error());
    virtq::QueueConfig config;
    config.size = ring.num;
    config.desc_addr = guest->desc;
    config.avail_addr = guest->avail;
    config.used_addr = guest->used;
    config.event_idx = (acked_features_ & kFeatureEventIdx) != 0;
    config.indirect_desc = (acked_features_ & kFeatureIndirectDesc) != 0;
    config.avail_base = ring.base;
    config.max_chain_len = device_.max_chain_length();
    auto queue = virtq::SplitQueue::create(memory_.guest(), config);
    if (!queue)
        return violation(queue.error().wrap(fmt::format("ring {}", index)));
    VL_TRY_ASSIGN(auto resubmitted, recover_inflight(index, ring, *queue));

    WorkerSetup setup;
    setup.index = index;
    setup.features = acked_features_;
    setup.kick_fd = ring.kick.get();
    setup.call = &ring.call;
    setup.err = &ring.err;
    setup.drain_timeout = options_.drain_timeout;
    setup.poll_time = options_.poll_time;
    auto worker =
        QueueWorker::start(device_, setup, std::move(queue).value(), memory_.guest(),
                           std::move(resubmitted), logger_.child("queue" + std::to_string(index)));
    if (!worker)
        return worker.error().wrap(fmt::format("cannot start ring {}", index));
    ring.worker = std::move(worker).value();
    logger_.debug("ring {} started: {} entries, next available index {}", index, ring.num,
                  ring.base);
    return ok_status();
}

void Session::stop_ring(std::uint32_t index)
{
    Ring& ring = *rings_[index];
    if (!ring.worker)
        return;
    ring.base = ring.worker->stop();
    ring.worker.reset();
    logger_.debug("ring {} stopped at available index {}", index, ring.base);
}

void Session::stop_all_rings()
{
    for (std::uint32_t i = 0; i < rings_.size(); ++i)
        stop_ring(i);
}

Status Session::reconcile(std::uint32_t index)
{
    Ring& ring = *rings_[index];
    const bool run = should_run(ring);
    if (run && !ring.worker)
        return start_ring(index);
    if (!run && ring.worker)
        stop_ring(index);
    return ok_status();
}

Status Session::reconcile_all()
{
    Status first;
    for (std::uint32_t i = 0; i < rings_.size(); ++i) {
        Status s = reconcile(i);
        if (!s && first.ok())
            first = s;
    }
    return first;
}

template <class Change> Status Session::change_ring(std::uint32_t index, Change&& change)
{
    stop_ring(index);
    Status changed = change(*rings_[index]);
    Status restarted = reconcile(index);
    return changed.ok() ? restarted : changed;
}

template <class Change> Status Session::with_rings_stopped(Change&& change)
{
    stop_all_rings();
    Status changed = change();
    Status restarted = reconcile_all();
    return changed.ok() ? restarted : changed;
}

// ---------------------------------------------------------------------------
// Session and features

Status Session::set_owner()
{
    if (owner_set_)
        logger_.debug("SET_OWNER again on the same connection; ignored");
    owner_set_ = true;
    return ok_status();
}

// Deprecated; the spec recommends ignoring it or disabling every ring.
Status Session::reset_owner()
{
    stop_all_rings();
    for (auto& ring : rings_)
        ring->enabled = false;
    return ok_status();
}

Status Session::reset_device()
{
    stop_all_rings();
    for (auto& ring : rings_) {
        ring->call.replace(UniqueFd());
        ring->err.replace(UniqueFd());
        ring->inflight.reset();
        ring->kick.reset();
        ring->addr.reset();
        ring->num = 0;
        ring->base = 0;
        ring->enabled = false;
    }
    acked_features_ = 0;
    features_set_ = false;
    status_ = 0;
    inflight_.reset();
    device_.reset();
    logger_.info("device reset by the front-end");
    return ok_status();
}

Result<std::uint64_t> Session::get_features()
{
    return offered_features(device_);
}

Status Session::set_features(std::uint64_t features)
{
    const std::uint64_t offered = offered_features(device_);
    if ((features & ~offered) != 0)
        return violation(Error(fmt::format("SET_FEATURES {:#x} acknowledges bits {:#x} that "
                                           "were not offered ({:#x})",
                                           features, features & ~offered, offered),
                               EINVAL));
    // Without VHOST_USER_F_PROTOCOL_FEATURES there is no SET_VRING_ENABLE:
    // every ring is enabled.
    if ((features & vu::kFeatureProtocolFeatures) == 0)
        for (auto& ring : rings_)
            ring->enabled = true;
    if (features_set_ && features == acked_features_)
        return reconcile_all();
    return with_rings_stopped([&]() -> Status {
        VL_TRY(device_.set_features(features));
        acked_features_ = features;
        features_set_ = true;
        logger_.debug("features {:#x}", features);
        return ok_status();
    });
}

Result<std::uint64_t> Session::get_protocol_features()
{
    return framework_protocol_features() | device_.protocol_features();
}

Status Session::set_protocol_features(std::uint64_t features)
{
    const std::uint64_t offered = framework_protocol_features() | device_.protocol_features();
    if ((features & ~offered) != 0)
        return violation(Error(fmt::format("SET_PROTOCOL_FEATURES {:#x} sets bits {:#x} that "
                                           "were not offered ({:#x})",
                                           features, features & ~offered, offered),
                               EINVAL));
    protocol_features_ = features;
    return ok_status();
}

Result<std::uint64_t> Session::get_queue_num()
{
    return std::uint64_t{device_.num_queues()};
}

// ---------------------------------------------------------------------------
// Memory

Status Session::set_mem_table(std::vector<vu::RegionFd> regions)
{
    auto table = MemoryTable::map(std::move(regions));
    if (!table)
        return violation(table.error());
    return with_rings_stopped([&]() -> Status {
        memory_ = std::move(table).value();
        logger_.debug("memory table: {} regions", memory_.region_count());
        device_.memory_changed(memory_.guest());
        return ok_status();
    });
}

Result<std::uint64_t> Session::get_max_mem_slots()
{
    return std::uint64_t{options_.max_mem_slots};
}

Status Session::add_mem_region(vu::RegionFd region)
{
    if (!negotiated(ProtocolFeature::configure_mem_slots))
        return refusal("ADD_MEM_REG without the CONFIGURE_MEM_SLOTS protocol feature");
    return with_rings_stopped([&]() -> Status {
        if (Status s = memory_.add(std::move(region), options_.max_mem_slots); !s)
            return violation(s.error());
        device_.memory_changed(memory_.guest());
        return ok_status();
    });
}

Status Session::remove_mem_region(const vu::MemoryRegion& region)
{
    if (!negotiated(ProtocolFeature::configure_mem_slots))
        return refusal("REM_MEM_REG without the CONFIGURE_MEM_SLOTS protocol feature");
    return with_rings_stopped([&]() -> Status {
        if (Status s = memory_.remove(region); !s)
            return violation(s.error());
        device_.memory_changed(memory_.guest());
        return ok_status();
    });
}

// ---------------------------------------------------------------------------
// Rings

Status Session::set_vring_num(std::uint32_t index, std::uint32_t num)
{
    VL_TRY_ASSIGN(Ring * ring, ring_at(index));
    (void)ring;
    if (!virtq::valid_queue_size(num) || num > device_.max_queue_size())
        return violation(Error(fmt::format("ring {} size {} is invalid: it must be a power of "
                                           "two from 1 to {}",
                                           index, num, device_.max_queue_size()),
                               EINVAL));
    return change_ring(index, [&](Ring& r) -> Status {
        r.num = num;
        return ok_status();
    });
}

Status Session::set_vring_addr(const vu::VringAddr& addr)
{
    VL_TRY_ASSIGN(Ring * ring, ring_at(addr.index));
    if ((addr.flags & vu::kVringAddrFlagLog) != 0)
        return refusal(fmt::format("ring {}: used-ring dirty logging (VHOST_VRING_F_LOG) is "
                                   "not supported",
                                   addr.index));
    if (addr.desc_user_addr % virtq::kDescTableAlign != 0 ||
        addr.avail_user_addr % virtq::kAvailRingAlign != 0 ||
        addr.used_user_addr % virtq::kUsedRingAlign != 0)
        return violation(Error(fmt::format("ring {} addresses are misaligned: descriptor table "
                                           "{:#x} (needs 16), available ring {:#x} (needs 2), "
                                           "used ring {:#x} (needs 4)",
                                           addr.index, addr.desc_user_addr, addr.avail_user_addr,
                                           addr.used_user_addr),
                               EINVAL));
    // Checked now when possible, so the front-end learns which request was
    // wrong; otherwise when the ring starts.
    if (ring->num != 0 && !memory_.empty())
        if (auto guest = translate_ring(addr.index, ring->num, addr); !guest)
            return violation(guest.error());
    return change_ring(addr.index, [&](Ring& r) -> Status {
        r.addr = addr;
        return ok_status();
    });
}

Status Session::set_vring_base(std::uint32_t index, std::uint32_t base)
{
    VL_TRY_ASSIGN(Ring * ring, ring_at(index));
    (void)ring;
    if (base > std::numeric_limits<std::uint16_t>::max())
        return violation(Error(fmt::format("ring {} base {:#x} does not fit the 16-bit index "
                                           "of a split ring",
                                           index, base),
                               EINVAL));
    return change_ring(index, [&](Ring& r) -> Status {
        r.base = static_cast<std::uint16_t>(base);
        return ok_status();
    });
}

Result<std::uint32_t> Session::get_vring_base(std::uint32_t index)
{
    VL_TRY_ASSIGN(Ring * ring, ring_at(index));
    stop_ring(index);
    ring->kick.reset(); // stopped until the next SET_VRING_KICK
    return std::uint32_t{ring->base};
}

Status Session::set_vring_kick(std::uint32_t index, UniqueFd fd)
{
    VL_TRY_ASSIGN(Ring * ring, ring_at(index));
    (void)ring;
    if (!fd.valid())
        return refusal(fmt::format("ring {}: SET_VRING_KICK without an fd asks the back-end "
                                   "to poll the ring, which it does not support; send an "
                                   "eventfd",
                                   index));
    return change_ring(index, [&](Ring& r) -> Status {
        r.kick = std::move(fd);
        return ok_status();
    });
}

Status Session::set_vring_call(std::uint32_t index, UniqueFd fd)
{
    VL_TRY_ASSIGN(Ring * ring, ring_at(index));
    ring->call.replace(std::move(fd)); // no fd: the front-end polls the used ring
    return ok_status();
}

Status Session::set_vring_err(std::uint32_t index, UniqueFd fd)
{
    VL_TRY_ASSIGN(Ring * ring, ring_at(index));
    ring->err.replace(std::move(fd));
    return ok_status();
}

Status Session::set_vring_enable(std::uint32_t index, bool enable)
{
    VL_TRY_ASSIGN(Ring * ring, ring_at(index));
    ring->enabled = enable;
    return reconcile(index);
}

// ---------------------------------------------------------------------------
// Config space, back-end channel, inflight, status

Result<std::vector<std::byte>> Session::get_config(std::uint32_t offset, std::uint32_t size,
                                                   vu::ConfigFlags flags)
{
    (void)flags;
    if (!vu::has(device_.protocol_features(), ProtocolFeature::config))
        return vu::unsupported_request(vu::Request::get_config);
    return device_.read_config(offset, size);
}

Status Session::set_config(std::uint32_t offset, std::span<const std::byte> data,
                           vu::ConfigFlags flags)
{
    if (!vu::has(device_.protocol_features(), ProtocolFeature::config))
        return vu::unsupported_request(vu::Request::set_config);
    if (flags == vu::ConfigFlags::live_migration)
        return refusal("SET_CONFIG for live migration: this back-end cannot be migrated");
    return device_.write_config(offset, data);
}

Status Session::set_backend_req_fd(UniqueFd socket)
{
    if (!negotiated(ProtocolFeature::backend_req))
        return refusal("SET_BACKEND_REQ_FD without the BACKEND_REQ protocol feature");
    notifier_.attach(vu::BackendChannel(vu::Connection(std::move(socket)),
                                        negotiated(ProtocolFeature::reply_ack)));
    channel_attached_ = true;
    return ok_status();
}

Result<vu::InflightFd> Session::get_inflight_fd(std::uint16_t num_queues, std::uint16_t queue_size)
{
    if (!negotiated(ProtocolFeature::inflight_shmfd))
        return refusal("GET_INFLIGHT_FD without the INFLIGHT_SHMFD protocol feature");
    auto created = InflightBuffer::create(num_queues, queue_size);
    if (!created)
        return violation(created.error().wrap("GET_INFLIGHT_FD"));
    auto& [buffer, fd] = *created;
    vu::InflightFd answer{buffer.description(), std::move(fd)};
    // Tracking starts now (rings that run pick it up as they restart); a
    // later SET_INFLIGHT_FD replaces it.
    VL_TRY(with_rings_stopped([&]() -> Status {
        inflight_.emplace(std::move(buffer));
        return ok_status();
    }));
    return answer;
}

Status Session::set_inflight_fd(const vu::InflightDescription& description, UniqueFd fd)
{
    if (!negotiated(ProtocolFeature::inflight_shmfd))
        return refusal("SET_INFLIGHT_FD without the INFLIGHT_SHMFD protocol feature");
    auto buffer = InflightBuffer::map(description, fd.get());
    if (!buffer)
        return violation(buffer.error().wrap("SET_INFLIGHT_FD"));
    return with_rings_stopped([&]() -> Status {
        inflight_.emplace(std::move(buffer).value());
        return ok_status();
    });
}

Status Session::set_status(std::uint8_t status)
{
    if (!negotiated(ProtocolFeature::status))
        return refusal("SET_STATUS without the STATUS protocol feature");
    status_ = status;
    return ok_status();
}

Result<std::uint8_t> Session::get_status()
{
    if (!negotiated(ProtocolFeature::status))
        return refusal("GET_STATUS without the STATUS protocol feature");
    return status_;
}

// ---------------------------------------------------------------------------
// Serving a connection

Status serve_connection(Device& device, vu::Connection connection, FrontendNotifier& notifier,
                        std::span<const int> stop_fds, const SessionOptions& options,
                        const Logger& logger)
{
    VL_TRY(check_device(device));
    connection.set_timeout(options.message_timeout);
    Session session(device, notifier, options, logger);
    vu::BackendDispatcher dispatcher(session, logger.child("protocol"));

    // The stop fds first: a stop request wins over a busy front-end.
    std::vector<int> fds(stop_fds.begin(), stop_fds.end());
    fds.push_back(connection.fd());
    for (;;) {
        VL_TRY_ASSIGN(std::size_t ready, wait_readable(fds));
        if (ready < stop_fds.size())
            return ok_status(); // asked to stop
        Status served = dispatcher.serve_one(connection);
        if (!served) {
            if (vu::peer_closed(served.error())) {
                logger.info("the front-end disconnected");
                return ok_status();
            }
            return served;
        }
        if (session.violation())
            return *session.violation();
    }
}

} // namespace vl::backend
