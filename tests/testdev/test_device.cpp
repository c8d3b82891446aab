// SPDX-License-Identifier: Apache-2.0
#include "test_device.hpp"

#include <linux/virtio_config.h>

#include <atomic>
#include <cstring>
#include <utility>
#include "virtqueue/ring.hpp"

namespace vl::testdev {

const char* const kSabotageNames =
    "bad-used-id|oversize-len|double-use|rewrite-desc|garbage-used-idx|call-storm|forge-driver-used";

namespace {

constexpr std::pair<std::string_view, Sabotage> kSabotages[] = {
    {"bad-used-id", Sabotage::bad_used_id},           {"oversize-len", Sabotage::oversize_len},
    {"double-use", Sabotage::double_use},             {"rewrite-desc", Sabotage::rewrite_desc},
    {"garbage-used-idx", Sabotage::garbage_used_idx}, {"call-storm", Sabotage::call_storm},
    {"forge-driver-used", Sabotage::forge_driver_used},
};

} // namespace

std::optional<Sabotage> parse_sabotage(std::string_view name)
{
    for (auto [n, s] : kSabotages)
        if (n == name)
            return s;
    return std::nullopt;
}

std::string_view sabotage_name(Sabotage sabotage)
{
    for (auto [n, s] : kSabotages)
        if (s == sabotage)
            return n;
    return "none";
}

Result<std::unique_ptr<TestDevice>> TestDevice::create(std::unique_ptr<RequestHandler> handler,
                                                       Misbehaviour misbehaviour, Logger log)
{
    VL_TRY_ASSIGN(auto control, loopback::ControlFile::open());
    auto params = handler->params();
    std::unique_ptr<TestDevice> dev(
        new TestDevice(std::move(control), std::move(handler), misbehaviour, std::move(log)));
    VL_TRY(dev->setup(params));
    return dev;
}

Status TestDevice::setup(const loopback::DeviceParams& params)
{
    VL_TRY(control_.create(params));
    offered_features_ = params.features;
    VL_TRY_ASSIGN(window_fd_, control_.window());
    VL_TRY_ASSIGN(window_, Mapping::map(window_fd_.fd.get(), window_fd_.size, 0));
    VL_TRY(memory_.add_region({0, window_fd_.size, window_.data(), std::nullopt}));
    for (std::uint32_t i = 0; i < params.num_queues; ++i) {
        VL_TRY_ASSIGN(auto kick, EventFd::create());
        VL_TRY_ASSIGN(auto call, EventFd::create());
        VL_TRY(control_.set_queue_fds(i, kick.get(), call.get()));
        kicks_.push_back(std::move(kick));
        calls_.push_back(std::move(call));
    }
    queues_.resize(params.num_queues);
    queue_info_.resize(params.num_queues);
    VL_TRY_ASSIGN(auto info, control_.info());
    log_.info("created virtio-loopback.{} (virtio id {}, {} queues, window {} KiB)", info.index,
              params.device_id, params.num_queues, window_fd_.size >> 10);
    return ok_status();
}

Status TestDevice::on_control()
{
    for (;;) {
        VL_TRY_ASSIGN(auto msg, control_.read_message());
        if (!msg)
            return ok_status();
        log_.debug("message {}: {}", msg->id, loopback::describe_message(*msg));
        if (misbehaviour_.no_reply) {
            log_.info("not answering {} (--no-reply)", loopback::describe_message(*msg));
            continue;
        }
        Status handled = handle_message(*msg);
        if (!handled.ok())
            log_.error("{}: {}", loopback::describe_message(*msg), handled.error().message());
        VL_TRY(control_.reply(msg->id, handled.ok() ? 0 : -EIO));
    }
}

Status TestDevice::handle_message(const virtio_loopback_msg& msg)
{
    switch (msg.type) {
    case VIRTIO_LOOPBACK_MSG_SET_STATUS:
        if (msg.status.status & VIRTIO_CONFIG_S_FEATURES_OK)
            driver_features_ = msg.status.driver_features;
        if ((msg.status.status & VIRTIO_CONFIG_S_DRIVER_OK) && !driver_ok_)
            return activate_queues();
        return ok_status();
    case VIRTIO_LOOPBACK_MSG_RESET:
        for (auto& q : queues_)
            q.reset();
        driver_ok_ = false;
        return ok_status();
    case VIRTIO_LOOPBACK_MSG_SET_CONFIG:
        return ok_status();
    default:
        return Error("unknown message type " + std::to_string(msg.type));
    }
}

Status TestDevice::activate_queues()
{
    for (std::uint32_t i = 0; i < queues_.size(); ++i) {
        VL_TRY_ASSIGN(auto info, control_.queue(i));
        if (!info.ready)
            continue;
        virtq::QueueConfig cfg;
        cfg.size = info.size;
        cfg.desc_addr = info.desc;
        cfg.avail_addr = info.avail;
        cfg.used_addr = info.used;
        // The kernel's view of the rings uses EVENT_IDX when we offered it.
        cfg.event_idx = (offered_features_ >> virtq::kFeatureEventIdx) & 1;
        cfg.indirect_desc = (driver_features_ >> virtq::kFeatureIndirectDesc) & 1;
        cfg.max_chain_len = handler_->max_chain_len();
        VL_TRY_ASSIGN(auto queue, virtq::SplitQueue::create(memory_, cfg));
        queues_[i].emplace(std::move(queue));
        queue_info_[i] = info;
        log_.debug("queue {}: {} descriptors", i, info.size);
    }
    driver_ok_ = true;
    for (std::uint32_t i = 0; i < queues_.size(); ++i)
        VL_TRY(serve(i));
    return ok_status();
}

Status TestDevice::on_kick(std::uint32_t queue)
{
    VL_TRY(kicks_.at(queue).drain());
    return serve(queue);
}

Status TestDevice::serve(std::uint32_t index)
{
    auto& queue = queues_.at(index);
    if (!queue || queue->broken())
        return ok_status();
    bool pushed = false;
    do {
        queue->disable_notification();
        for (;;) {
            if (halted_ ||
                (misbehaviour_.stall_after && completed_ >= *misbehaviour_.stall_after))
                return ok_status(); // leave everything in flight
            VL_TRY_ASSIGN(auto chain, queue->pop());
            if (!chain)
                break;
            std::uint32_t len = handler_->handle(index, *chain);
            VL_TRY(complete(index, *chain, len));
            ++completed_;
            pushed = true;
        }
    } while (queue->enable_notification());
    if (pushed && queue->needs_notification())
        VL_TRY(calls_.at(index).signal());
    return ok_status();
}

} // namespace vl::testdev

namespace vl::testdev {

Status TestDevice::complete(std::uint32_t queue, const virtq::DescriptorChain& chain,
                            std::uint32_t len)
{
    if (misbehaviour_.sabotage == Sabotage::none || sabotaged_ ||
        completed_ < misbehaviour_.sabotage_after)
        return queues_.at(queue)->push(chain.head(), len);
    sabotaged_ = true;
    VL_TRY(sabotage(queue, chain, len));
    log_.warn("sabotage {} done on queue {} after {} requests{}", sabotage_name(misbehaviour_.sabotage),
              queue, completed_, halted_ ? "; serving nothing more" : "");
    // Now, not whenever the next completion comes (if ever).
    return calls_.at(queue).signal();
}

// Writes a used element and publishes it behind the SplitQueue's back.
void TestDevice::raw_push(std::uint32_t queue, std::uint32_t id, std::uint32_t len)
{
    const auto& info = queue_info_.at(queue);
    std::byte* used = ring_at(info.used);
    auto* idx = reinterpret_cast<std::uint16_t*>(used + virtq::ring_offset::kIdx);
    std::uint16_t next = *idx;
    std::byte* elem = used + virtq::ring_offset::used_entry(next % info.size);
    std::memcpy(elem, &id, 4);
    std::memcpy(elem + 4, &len, 4);
    std::atomic_thread_fence(std::memory_order_release);
    *idx = static_cast<std::uint16_t>(next + 1);
}

Status TestDevice::sabotage(std::uint32_t queue, const virtq::DescriptorChain& chain,
                            std::uint32_t len)
{
    auto& q = queues_.at(queue);
    const auto& info = queue_info_.at(queue);
    switch (misbehaviour_.sabotage) {
    case Sabotage::bad_used_id:
        raw_push(queue, info.size + 7, len);
        halted_ = true;
        return ok_status();
    case Sabotage::oversize_len: {
        // A proper push, then its length overwritten before the call: the
        // queue's own used index stays right, so serving goes on.
        VL_TRY(q->push(chain.head(), len));
        const auto* idx =
            reinterpret_cast<const std::uint16_t*>(ring_at(info.used) + virtq::ring_offset::kIdx);
        const std::uint32_t slot = static_cast<std::uint16_t>(*idx - 1) % info.size;
        const std::uint32_t huge = 1u << 30;
        std::memcpy(ring_at(info.used) + virtq::ring_offset::used_entry(slot) + 4, &huge, 4);
        return ok_status();
    }
    case Sabotage::double_use:
        VL_TRY(q->push(chain.head(), len));
        raw_push(queue, chain.head(), len);
        halted_ = true;
        return ok_status();
    case Sabotage::rewrite_desc: {
        // Point the chain's descriptors outside the window, with absurd
        // lengths and a NEXT flag on the last one, then complete it.
        for (std::uint32_t i = 0, d = chain.head(); i < 4 && d < info.size; ++i) {
            std::byte* desc = ring_at(info.desc) + d * virtq::kDescriptorSize;
            std::uint16_t next = 0;
            std::memcpy(&next, desc + 14, 2);
            std::uint64_t addr = 0x7ffffffff000;
            std::uint32_t huge = 0xfffffff0;
            std::uint16_t flags = virtq::kDescFlagNext | virtq::kDescFlagWrite;
            std::memcpy(desc, &addr, 8);
            std::memcpy(desc + 8, &huge, 4);
            std::memcpy(desc + 12, &flags, 2);
            d = next;
        }
        return q->push(chain.head(), len);
    }
    case Sabotage::garbage_used_idx: {
        auto* idx = reinterpret_cast<std::uint16_t*>(ring_at(info.used) + virtq::ring_offset::kIdx);
        *idx = static_cast<std::uint16_t>(*idx + 1000);
        halted_ = true;
        return ok_status();
    }
    case Sabotage::forge_driver_used: {
        // The rings the kernel gave us are a view of its own; the driver's
        // used ring lies where vring_create_virtqueue() puts it: after the
        // descriptor table and the driver's available ring (flags, idx,
        // ring, used_event), page-aligned. Completing the chain there, past
        // the kernel's checks, must fault.
        constexpr std::uint64_t kPage = 4096;
        const std::uint64_t driver_avail = info.desc + std::uint64_t{virtq::kDescriptorSize} * info.size;
        const std::uint64_t driver_used = (driver_avail + 6 + 2ull * info.size + kPage - 1) & ~(kPage - 1);
        std::byte* used = ring_at(driver_used);
        const std::uint32_t id = chain.head();
        std::memcpy(used + virtq::ring_offset::used_entry(0), &id, 4);
        halted_ = true;
        return ok_status();
    }
    case Sabotage::call_storm:
        VL_TRY(q->push(chain.head(), len));
        for (int i = 0; i < 100000; ++i)
            VL_TRY(calls_.at(queue).signal());
        return ok_status();
    case Sabotage::none:
        break;
    }
    return q->push(chain.head(), len);
}

} // namespace vl::testdev
