// SPDX-License-Identifier: Apache-2.0
#include "fake_backend.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "vhost_user_driver.hpp"
#include "virtqueue/ring.hpp"

namespace vl::test_driver::test
{

namespace
{

using vhost_user::ProtocolFeature;

// Set-up failures throw: the test cannot mean anything without a back-end.
void check(const Status& s, const char* what)
{
    if (!s)
        throw std::runtime_error(std::string(what) + ": " + s.error().message());
}

} // namespace

FakeDevice default_device()
{
    FakeDevice d;
    d.protocol_features = vhost_user::bit(ProtocolFeature::mq) |
                          vhost_user::bit(ProtocolFeature::reply_ack) |
                          vhost_user::bit(ProtocolFeature::config);
    return d;
}

FakeBackend::FakeBackend(FakeDevice device)
    : device_(std::move(device)), logger_("fake-backend", LogLevel::warn)
{
    char dir_template[] = "/tmp/vl-driver-test-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr)
        throw std::runtime_error("mkdtemp failed");
    dir_ = dir_template;
    socket_path_ = dir_ + "/backend.sock";
    auto fd = vhost_user::listen_on(socket_path_);
    check(fd ? ok_status() : Status(fd.error()), "listen");
    listen_fd_ = std::move(fd).value();
    auto wake = EventFd::create();
    check(wake ? ok_status() : Status(wake.error()), "eventfd");
    wake_ = std::move(wake).value();
    queues_.resize(device_.queues);
    thread_ = std::thread([this] { serve(); });
}

FakeBackend::~FakeBackend()
{
    stop_ = true;
    (void)wake_.signal();
    thread_.join();
    ::unlink(socket_path_.c_str());
    ::rmdir(dir_.c_str());
}

void FakeBackend::inject(std::uint32_t queue, std::vector<std::byte> data)
{
    std::lock_guard lock(mutex_);
    commands_.push_back([this, queue, data = std::move(data)]() mutable {
        if (Queue* q = this->queue(queue)) {
            q->injections.push_back(std::move(data));
            (void)process(queue);
        }
    });
    (void)wake_.signal();
}

void FakeBackend::close_connection()
{
    std::lock_guard lock(mutex_);
    commands_.push_back([this] {
        connection_.reset();
        dispatcher_.reset();
    });
    (void)wake_.signal();
}

// ---------------------------------------------------------------------------
// Observations

std::vector<std::uint32_t> FakeBackend::requests() const
{
    std::lock_guard lock(mutex_);
    return requests_;
}
std::uint64_t FakeBackend::acked_features() const
{
    std::lock_guard lock(mutex_);
    return acked_features_;
}
std::uint64_t FakeBackend::acked_protocol_features() const
{
    std::lock_guard lock(mutex_);
    return acked_protocol_features_;
}
std::vector<vhost_user::MemoryRegion> FakeBackend::regions() const
{
    std::lock_guard lock(mutex_);
    return regions_;
}
std::size_t FakeBackend::chains_handled(std::uint32_t queue) const
{
    std::lock_guard lock(mutex_);
    return queue < queues_.size() ? queues_[queue].handled : 0;
}
std::size_t FakeBackend::indirect_chains(std::uint32_t queue) const
{
    std::lock_guard lock(mutex_);
    return queue < queues_.size() ? queues_[queue].indirect : 0;
}
bool FakeBackend::enabled(std::uint32_t queue) const
{
    std::lock_guard lock(mutex_);
    return queue < queues_.size() && queues_[queue].enabled;
}
bool FakeBackend::peer_closed() const
{
    std::lock_guard lock(mutex_);
    return peer_closed_;
}
bool FakeBackend::wait_peer_closed() const
{
    for (int i = 0; i < 500; ++i) {
        if (peer_closed())
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

// ---------------------------------------------------------------------------
// Serving thread

void FakeBackend::serve()
{
    while (!stop_) {
        std::vector<pollfd> fds;
        std::vector<std::uint32_t> kick_queue; // queue index of fds[3 + i]
        fds.push_back({wake_.get(), POLLIN, 0});
        fds.push_back({connection_ ? -1 : listen_fd_.get(), POLLIN, 0});
        fds.push_back({connection_ && !hung_ ? connection_->fd() : -1, POLLIN, 0});
        {
            std::lock_guard lock(mutex_);
            for (std::uint32_t i = 0; i < queues_.size(); ++i)
                if (!hung_ && queues_[i].ring && queues_[i].kick.valid()) {
                    fds.push_back({queues_[i].kick.get(), POLLIN, 0});
                    kick_queue.push_back(i);
                }
        }
        if (::poll(fds.data(), fds.size(), -1) < 0)
            continue; // EINTR
        std::lock_guard lock(mutex_);
        if ((fds[0].revents & POLLIN) != 0) {
            (void)wake_.drain();
            run_commands();
        }
        if ((fds[1].revents & POLLIN) != 0) {
            auto accepted = vhost_user::accept_from(listen_fd_.get());
            if (accepted) {
                connection_.emplace(std::move(accepted).value());
                dispatcher_.emplace(*this, logger_);
            }
        }
        if (connection_ && (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) != 0)
            serve_connection();
        for (std::size_t i = 0; i < kick_queue.size(); ++i) {
            const std::uint32_t index = kick_queue[i];
            // A request dispatched above may have stopped the queue and
            // closed this fd (GET_VRING_BASE): only read a kick fd we still own.
            if ((fds[3 + i].revents & POLLIN) == 0 || !queues_[index].ring ||
                queues_[index].kick.get() != fds[3 + i].fd)
                continue;
            std::uint64_t count = 0;
            (void)!::read(fds[3 + i].fd, &count, sizeof(count));
            if (Status s = process(index); !s)
                logger_.error("queue {}: {}", index, s.error().message());
        }
    }
}

void FakeBackend::run_commands()
{
    while (!commands_.empty()) {
        auto command = std::move(commands_.front());
        commands_.pop_front();
        command();
    }
}

void FakeBackend::serve_connection()
{
    auto message = connection_->receive();
    if (!message) {
        peer_closed_ = true;
        connection_.reset();
        dispatcher_.reset();
        return;
    }
    requests_.push_back(message->request());
    if (device_.hang_on && message->request() == vhost_user::to_code(*device_.hang_on)) {
        hung_ = true; // keep the socket open, never answer again
        return;
    }
    auto reply = dispatcher_->dispatch(std::move(message).value());
    if (!reply) {
        logger_.error("{}", reply.error().message());
        connection_.reset();
        dispatcher_.reset();
        peer_closed_ = true;
        return;
    }
    if (*reply)
        (void)connection_->send(**reply);
}

FakeBackend::Queue* FakeBackend::queue(std::uint32_t index)
{
    return index < queues_.size() ? &queues_[index] : nullptr;
}

void FakeBackend::notify(Queue& q)
{
    if (q.ring->needs_notification() && q.call.valid())
        (void)q.call.signal();
}

void FakeBackend::complete_injections(Queue& q)
{
    while (!q.injections.empty()) {
        if (q.held.empty()) {
            auto chain = q.ring->pop();
            if (!chain || !*chain)
                return; // nothing available yet: retried on the next kick
            q.held.push_back(std::move(**chain));
        }
        virtq::DescriptorChain chain = std::move(q.held.front());
        q.held.pop_front();
        const std::vector<std::byte> data = std::move(q.injections.front());
        q.injections.pop_front();
        const std::size_t written = chain.write_from(data);
        (void)q.ring->push(chain.head(), static_cast<std::uint32_t>(written));
    }
}

Status FakeBackend::process(std::uint32_t index)
{
    Queue* q = queue(index);
    if (q == nullptr || !q->ring || !q->enabled)
        return ok_status();
    for (;;) {
        complete_injections(*q);
        for (;;) {
            if (!q->injections.empty())
                break; // injections take the next chains
            VL_TRY_ASSIGN(std::optional<virtq::DescriptorChain> chain, q->ring->pop());
            if (!chain)
                break;
            ++q->handled;
            if (chain->used_indirect())
                ++q->indirect;
            std::optional<std::uint32_t> written =
                device_.handle ? device_.handle(index, *chain) : std::optional<std::uint32_t>(0);
            if (written)
                VL_TRY(q->ring->push(chain->head(), *written));
            else
                q->held.push_back(std::move(*chain));
        }
        notify(*q);
        if (!q->ring->enable_notification())
            return ok_status();
    }
}

std::uint64_t FakeBackend::offered_features() const
{
    std::uint64_t f = device_.features;
    if (device_.version_1)
        f |= feature_bit(kFeatureVersion1);
    if (device_.event_idx)
        f |= feature_bit(virtq::kFeatureEventIdx);
    if (device_.indirect_desc)
        f |= feature_bit(virtq::kFeatureIndirectDesc);
    if (device_.protocol_features_bit)
        f |= vhost_user::kFeatureProtocolFeatures;
    return f;
}

// ---------------------------------------------------------------------------
// BackendHandler (called on the serving thread, mutex held)

Status FakeBackend::set_owner()
{
    return ok_status();
}

Result<std::uint64_t> FakeBackend::get_features()
{
    return offered_features();
}

Status FakeBackend::set_features(std::uint64_t features)
{
    if ((features & ~offered_features()) != 0)
        return Error(fmt::format("features {:#x} were not offered", features), EINVAL);
    acked_features_ = features;
    return ok_status();
}

Result<std::uint64_t> FakeBackend::get_protocol_features()
{
    return device_.protocol_features;
}

Status FakeBackend::set_protocol_features(std::uint64_t features)
{
    if ((features & ~device_.protocol_features) != 0)
        return Error(fmt::format("protocol features {:#x} were not offered", features), EINVAL);
    acked_protocol_features_ = features;
    return ok_status();
}

Result<std::uint64_t> FakeBackend::get_queue_num()
{
    return std::uint64_t{device_.queues};
}

Status FakeBackend::set_mem_table(std::vector<vhost_user::RegionFd> regions)
{
    memory_.clear();
    mappings_.clear();
    regions_.clear();
    for (auto& r : regions) {
        VL_TRY_ASSIGN(Mapping m,
                      Mapping::map(r.fd.get(), r.region.memory_size + r.region.mmap_offset, 0));
        virtq::MemoryRegion region{r.region.guest_phys_addr, r.region.memory_size,
                                   m.data() + r.region.mmap_offset, r.region.userspace_addr};
        VL_TRY(memory_.add_region(region));
        mappings_.push_back(std::move(m));
        regions_.push_back(r.region);
    }
    return ok_status();
}

Status FakeBackend::set_vring_num(std::uint32_t index, std::uint32_t num)
{
    Queue* q = queue(index);
    if (q == nullptr)
        return Error(fmt::format("no queue {}", index), EINVAL);
    q->num = num;
    return ok_status();
}

Status FakeBackend::set_vring_addr(const vhost_user::VringAddr& addr)
{
    Queue* q = queue(addr.index);
    if (q == nullptr)
        return Error(fmt::format("no queue {}", addr.index), EINVAL);
    q->addr = addr;
    return ok_status();
}

Status FakeBackend::set_vring_base(std::uint32_t index, std::uint32_t base)
{
    Queue* q = queue(index);
    if (q == nullptr)
        return Error(fmt::format("no queue {}", index), EINVAL);
    q->base = static_cast<std::uint16_t>(base);
    return ok_status();
}

Result<std::uint32_t> FakeBackend::get_vring_base(std::uint32_t index)
{
    Queue* q = queue(index);
    if (q == nullptr || !q->ring)
        return Error(fmt::format("queue {} is not running", index), EINVAL);
    const std::uint32_t base = q->ring->last_avail_idx();
    q->ring.reset();
    q->held.clear();
    q->kick.reset();
    return base;
}

Status FakeBackend::set_vring_kick(std::uint32_t index, UniqueFd fd)
{
    Queue* q = queue(index);
    if (q == nullptr || !q->addr)
        return Error(fmt::format("queue {} has no addresses", index), EINVAL);
    const bool event_idx = has_feature(acked_features_, virtq::kFeatureEventIdx);
    // Rings arrive as front-end user addresses: translate through the
    // regions' userspace_addr, as QEMU's back-ends do.
    auto guest = [&](std::uint64_t user, std::uint64_t len) {
        return memory_.user_to_guest(user, len);
    };
    virtq::QueueConfig c;
    c.size = q->num;
    VL_TRY_ASSIGN(c.desc_addr, guest(q->addr->desc_user_addr, virtq::desc_table_bytes(q->num)));
    VL_TRY_ASSIGN(c.avail_addr,
                  guest(q->addr->avail_user_addr, virtq::avail_ring_bytes(q->num, event_idx)));
    VL_TRY_ASSIGN(c.used_addr,
                  guest(q->addr->used_user_addr, virtq::used_ring_bytes(q->num, event_idx)));
    c.event_idx = event_idx;
    c.indirect_desc = has_feature(acked_features_, virtq::kFeatureIndirectDesc);
    c.avail_base = q->base;
    VL_TRY_ASSIGN(virtq::SplitQueue ring, virtq::SplitQueue::create(memory_, c));
    q->ring.emplace(std::move(ring));
    q->ring->enable_notification();
    q->kick = std::move(fd);
    // Without PROTOCOL_FEATURES acked a ring starts enabled (vhost-user spec).
    if ((acked_features_ & vhost_user::kFeatureProtocolFeatures) == 0)
        q->enabled = true;
    return ok_status();
}

Status FakeBackend::set_vring_call(std::uint32_t index, UniqueFd fd)
{
    Queue* q = queue(index);
    if (q == nullptr)
        return Error(fmt::format("no queue {}", index), EINVAL);
    q->call = EventFd(std::move(fd));
    return ok_status();
}

Status FakeBackend::set_vring_err(std::uint32_t, UniqueFd)
{
    return ok_status();
}

Status FakeBackend::set_vring_enable(std::uint32_t index, bool enable)
{
    Queue* q = queue(index);
    if (q == nullptr)
        return Error(fmt::format("no queue {}", index), EINVAL);
    q->enabled = enable;
    return enable ? process(index) : ok_status();
}

Result<std::vector<std::byte>> FakeBackend::get_config(std::uint32_t offset, std::uint32_t size,
                                                       vhost_user::ConfigFlags)
{
    if (std::uint64_t{offset} + size > device_.config.size())
        return Error(fmt::format("config [{}, +{}) is beyond the {}-byte config", offset, size,
                                 device_.config.size()),
                     EINVAL);
    auto begin = device_.config.begin() + offset;
    return std::vector<std::byte>(begin, begin + size);
}

Status FakeBackend::set_config(std::uint32_t offset, std::span<const std::byte> data,
                               vhost_user::ConfigFlags)
{
    if (std::uint64_t{offset} + data.size() > device_.config.size())
        return Error("config write beyond the config", EINVAL);
    std::memcpy(device_.config.data() + offset, data.data(), data.size());
    if (device_.on_set_config)
        device_.on_set_config(device_.config);
    return ok_status();
}

} // namespace vl::test_driver::test
