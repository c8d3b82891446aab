// SPDX-License-Identifier: Apache-2.0
#include "test_device.hpp"

#include <linux/virtio_config.h>
#include "virtqueue/ring.hpp"

namespace vl::testdev {

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
        cfg.event_idx = (driver_features_ >> virtq::kFeatureEventIdx) & 1;
        cfg.indirect_desc = (driver_features_ >> virtq::kFeatureIndirectDesc) & 1;
        cfg.max_chain_len = handler_->max_chain_len();
        VL_TRY_ASSIGN(auto queue, virtq::SplitQueue::create(memory_, cfg));
        queues_[i].emplace(std::move(queue));
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
            if (misbehaviour_.stall_after && completed_ >= *misbehaviour_.stall_after)
                return ok_status(); // leave everything in flight
            VL_TRY_ASSIGN(auto chain, queue->pop());
            if (!chain)
                break;
            std::uint32_t len = handler_->handle(index, *chain);
            VL_TRY(queue->push(chain->head(), len));
            ++completed_;
            pushed = true;
        }
    } while (queue->enable_notification());
    if (pushed && queue->needs_notification())
        VL_TRY(calls_.at(index).signal());
    return ok_status();
}

} // namespace vl::testdev
