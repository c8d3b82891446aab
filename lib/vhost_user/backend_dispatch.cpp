// SPDX-License-Identifier: Apache-2.0
#include "vhost_user/backend_dispatch.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace vl::vhost_user
{

namespace
{

std::optional<Message> some(Message m)
{
    return std::optional<Message>(std::move(m));
}

Error failed(Request request, const Error& cause)
{
    return cause.wrap(request_name(request) + " failed");
}

} // namespace

Result<std::optional<Message>> BackendDispatcher::dispatch(Message m)
{
    logger_.debug("received {} (flags {:#x}, {} bytes, {} fds)", m.name(), m.flags(),
                  m.payload().size(), m.fd_count());
    if (m.request() < kFirstRequest || m.request() > kLastRequest)
        return handle_unknown(m);
    VL_TRY_ASSIGN(Request request, validate_request(m));
    return handle(request, m);
}

Status BackendDispatcher::serve_one(Connection& connection)
{
    VL_TRY_ASSIGN(Message request, connection.receive());
    VL_TRY_ASSIGN(std::optional<Message> reply, dispatch(std::move(request)));
    if (reply) {
        logger_.debug("replying to {} ({} bytes, {} fds)", request_name(reply->request()),
                      reply->payload().size(), reply->fd_count());
        VL_TRY(connection.send(*reply));
    }
    return ok_status();
}

BackendDispatcher::Reply BackendDispatcher::handle_unknown(const Message& m)
{
    Error error(fmt::format("{} (flags {:#x}, {} bytes)", request_name(m.request()), m.flags(),
                            m.payload().size()),
                EBADMSG);
    // Only a well-formed request that asks for an ack gets one; anything else
    // may be waiting for a reply we cannot form, so the session ends.
    if (m.flags() != request_flags(true) || !reply_ack_enabled())
        return error;
    logger_.warn("{}: refused with a failure ack", error.message());
    return some(make_u64_reply(m.header(), kAckFailure));
}

BackendDispatcher::Reply BackendDispatcher::finish(const Message& m, Status outcome)
{
    bool ack = m.needs_reply() && reply_ack_enabled();
    if (!outcome.ok()) {
        Error error = failed(static_cast<Request>(m.request()), outcome.error());
        if (!ack)
            return error; // the front-end cannot learn of it otherwise
        logger_.warn("{} (reported to the front-end)", error.message());
        return some(make_u64_reply(m.header(), kAckFailure));
    }
    if (!ack)
        return std::optional<Message>();
    return some(make_u64_reply(m.header(), kAckSuccess));
}

BackendDispatcher::Reply BackendDispatcher::reply_u64(const Message& m, Result<std::uint64_t> value)
{
    if (!value.ok())
        return failed(static_cast<Request>(m.request()), value.error()); // no failure form
    return some(make_u64_reply(m.header(), *value));
}

BackendDispatcher::Reply BackendDispatcher::reply_status(const Message& m, const Status& outcome)
{
    if (outcome.ok())
        return some(make_u64_reply(m.header(), kAckSuccess));
    logger_.warn("{} (reported to the front-end)",
                 failed(static_cast<Request>(m.request()), outcome.error()).message());
    return some(make_u64_reply(m.header(), kAckFailure));
}

BackendDispatcher::Reply BackendDispatcher::handle(Request request, Message& m)
{
    switch (request) {
    case Request::get_features:
        return reply_u64(m, handler_.get_features());
    case Request::get_protocol_features:
        return reply_u64(m, handler_.get_protocol_features());
    case Request::get_queue_num:
        return reply_u64(m, handler_.get_queue_num());
    case Request::get_max_mem_slots:
        return reply_u64(m, handler_.get_max_mem_slots());
    case Request::get_status: {
        auto status = handler_.get_status();
        if (!status.ok())
            return reply_u64(m, std::move(status).error());
        return reply_u64(m, std::uint64_t{*status});
    }
    case Request::set_protocol_features:
        return handle_set_protocol_features(m);
    case Request::set_owner:
        return finish(m, handler_.set_owner());
    case Request::reset_owner:
        return finish(m, handler_.reset_owner());
    case Request::reset_device:
        return finish(m, handler_.reset_device());
    case Request::set_mem_table:
        return handle_set_mem_table(m);
    case Request::add_mem_reg:
    case Request::rem_mem_reg:
        return handle_mem_region(request, m);
    case Request::set_vring_addr: {
        VL_TRY_ASSIGN(VringAddr addr, m.payload_as<VringAddr>());
        return finish(m, handler_.set_vring_addr(addr));
    }
    case Request::set_vring_num:
    case Request::set_vring_base:
    case Request::get_vring_base:
    case Request::set_vring_enable:
    case Request::set_vring_endian:
    case Request::vring_kick:
        return handle_vring_state(request, m);
    case Request::set_vring_kick:
    case Request::set_vring_call:
    case Request::set_vring_err:
        return handle_vring_fd(request, m);
    case Request::get_config:
        return handle_get_config(m);
    case Request::set_config: {
        VL_TRY_ASSIGN(ConfigAccess config, read_config(m));
        return finish(m, handler_.set_config(config.offset, config.data, config.flags));
    }
    case Request::set_backend_req_fd:
        return finish(m, handler_.set_backend_req_fd(m.take_fd(0)));
    case Request::get_inflight_fd:
        return handle_get_inflight_fd(m);
    case Request::set_inflight_fd: {
        VL_TRY_ASSIGN(auto inflight, m.payload_as<InflightDescription>());
        return finish(m, handler_.set_inflight_fd(inflight, m.take_fd(0)));
    }
    case Request::set_features:
    case Request::set_status:
    case Request::send_rarp:
    case Request::net_set_mtu:
        return handle_u64_argument(request, m);
    case Request::set_log_base: {
        VL_TRY_ASSIGN(auto log, m.payload_as<LogDescription>());
        return reply_status(m, handler_.set_log_base(log, m.take_fd(0)));
    }
    case Request::set_log_fd:
        return finish(m, handler_.set_log_fd(m.take_fd(0)));
    case Request::iotlb_msg: {
        VL_TRY_ASSIGN(auto iotlb, m.payload_as<IotlbMessage>());
        return reply_status(m, handler_.iotlb_msg(iotlb));
    }
    case Request::set_device_state_fd:
        return handle_set_device_state_fd(m);
    case Request::check_device_state:
        return reply_status(m, handler_.check_device_state());
    case Request::postcopy_end:
        return reply_status(m, unsupported_request(request));
    case Request::close_crypto_session:
    case Request::postcopy_listen:
    case Request::gpu_set_socket:
        return finish(m, unsupported_request(request));
    case Request::create_crypto_session:
    case Request::postcopy_advise:
    case Request::get_shared_object:
        // Their replies carry sessions or fds we do not have: no failure form.
        return failed(request, unsupported_request(request));
    }
    return Error(request_name(request) + ": internal error: request not dispatched", EBADMSG);
}

BackendDispatcher::Reply BackendDispatcher::handle_set_protocol_features(const Message& m)
{
    VL_TRY_ASSIGN(std::uint64_t features, read_u64(m));
    if (has(features, ProtocolFeature::inband_notifications) &&
        (!has(features, ProtocolFeature::backend_req) ||
         !has(features, ProtocolFeature::reply_ack)))
        return Error(fmt::format("SET_PROTOCOL_FEATURES {:#x}: INBAND_NOTIFICATIONS without "
                                 "BACKEND_REQ and REPLY_ACK is an error; the spec tells the "
                                 "back-end to close the connection",
                                 features),
                     EPROTO);
    Status outcome = handler_.set_protocol_features(features);
    // The ack (if any) follows the features in force when the request came.
    Reply reply = finish(m, outcome);
    if (outcome.ok())
        protocol_features_ = features;
    return reply;
}

BackendDispatcher::Reply BackendDispatcher::handle_u64_argument(Request request, const Message& m)
{
    VL_TRY_ASSIGN(std::uint64_t value, read_u64(m));
    switch (request) {
    case Request::set_features:
        return finish(m, handler_.set_features(value));
    case Request::set_status: // validated to fit 8 bits
        return finish(m, handler_.set_status(static_cast<std::uint8_t>(value)));
    case Request::send_rarp: {
        // "The first 6 bytes of the payload contain the mac address".
        std::array<std::uint8_t, 6> mac{};
        std::memcpy(mac.data(), m.payload().data(), mac.size());
        return finish(m, handler_.send_rarp(mac));
    }
    case Request::net_set_mtu:
        return finish(m, handler_.net_set_mtu(value));
    default:
        return Error(request_name(request) + ": internal error: not a u64 request", EBADMSG);
    }
}

BackendDispatcher::Reply BackendDispatcher::handle_vring_state(Request request, const Message& m)
{
    VL_TRY_ASSIGN(VringState state, m.payload_as<VringState>());
    switch (request) {
    case Request::set_vring_num:
        return finish(m, handler_.set_vring_num(state.index, state.num));
    case Request::set_vring_base:
        return finish(m, handler_.set_vring_base(state.index, state.num));
    case Request::set_vring_enable: // num validated to be 0 or 1
        return finish(m, handler_.set_vring_enable(state.index, state.num == 1));
    case Request::set_vring_endian:
        return finish(m, handler_.set_vring_endian(state.index, state.num == 1));
    case Request::vring_kick: // num is reserved (senders set 0); ignored
        return finish(m, handler_.vring_kick(state.index));
    case Request::get_vring_base: {
        auto base = handler_.get_vring_base(state.index);
        if (!base.ok())
            return failed(request, base.error()); // no failure form
        return some(make_reply(m.header(), VringState{state.index, *base}));
    }
    default:
        return Error(request_name(request) + ": internal error: not a vring state request",
                     EBADMSG);
    }
}

BackendDispatcher::Reply BackendDispatcher::handle_vring_fd(Request request, Message& m)
{
    VL_TRY_ASSIGN(VringFd vring, take_vring_fd(m));
    switch (request) {
    case Request::set_vring_kick:
        return finish(m, handler_.set_vring_kick(vring.index, std::move(vring.fd)));
    case Request::set_vring_call:
        return finish(m, handler_.set_vring_call(vring.index, std::move(vring.fd)));
    case Request::set_vring_err:
        return finish(m, handler_.set_vring_err(vring.index, std::move(vring.fd)));
    default:
        return Error(request_name(request) + ": internal error: not a vring fd request", EBADMSG);
    }
}

BackendDispatcher::Reply BackendDispatcher::handle_set_mem_table(Message& m)
{
    VL_TRY_ASSIGN(std::vector<RegionFd> regions, take_memory_table(m));
    return finish(m, handler_.set_mem_table(std::move(regions)));
}

BackendDispatcher::Reply BackendDispatcher::handle_mem_region(Request request, Message& m)
{
    VL_TRY_ASSIGN(RegionFd region, take_single_region(m));
    if (request == Request::add_mem_reg)
        return finish(m, handler_.add_mem_region(std::move(region)));
    return finish(m, handler_.remove_mem_region(region.region));
}

BackendDispatcher::Reply BackendDispatcher::handle_get_config(const Message& m)
{
    VL_TRY_ASSIGN(ConfigAccess request, read_config(m));
    auto size = static_cast<std::uint32_t>(request.data.size());
    auto data = handler_.get_config(request.offset, size, request.flags);
    if (data.ok() && data->size() == size)
        return some(make_reply(m.header(), encode_config(request.offset, *data, request.flags)));
    // The spec's failure form: a config reply with no config bytes.
    if (data.ok())
        logger_.error("GET_CONFIG: the device returned {} bytes for a {}-byte read at offset {}; "
                      "sent a refusal",
                      data->size(), size, request.offset);
    else
        logger_.warn("{} (reported to the front-end)",
                     failed(Request::get_config, data.error()).message());
    return some(make_reply(m.header(), encode_config(request.offset, {}, request.flags)));
}

BackendDispatcher::Reply BackendDispatcher::handle_get_inflight_fd(const Message& m)
{
    VL_TRY_ASSIGN(auto request, m.payload_as<InflightDescription>());
    auto inflight = handler_.get_inflight_fd(request.num_queues, request.queue_size);
    if (!inflight.ok())
        return failed(Request::get_inflight_fd, inflight.error()); // no failure form
    std::vector<UniqueFd> fds;
    // mmap_size 0 tells the front-end there is no buffer; it then has no fd.
    if (inflight->description.mmap_size != 0) {
        if (!inflight->fd.valid())
            return Error("GET_INFLIGHT_FD: the device returned a buffer without an fd", EINVAL);
        fds.push_back(std::move(inflight->fd));
    }
    return some(make_reply(m.header(), inflight->description, std::move(fds)));
}

BackendDispatcher::Reply BackendDispatcher::handle_set_device_state_fd(Message& m)
{
    VL_TRY_ASSIGN(auto transfer, m.payload_as<DeviceStateTransfer>());
    auto answer =
        handler_.set_device_state_fd(static_cast<TransferDirection>(transfer.direction),
                                     static_cast<MigrationPhase>(transfer.phase), m.take_fd(0));
    if (!answer.ok()) {
        logger_.warn("{} (reported to the front-end)",
                     failed(Request::set_device_state_fd, answer.error()).message());
        return some(make_u64_reply(m.header(), kAckFailure | kDeviceStateNoFdMask));
    }
    if (answer->has_value() && (*answer)->valid()) {
        std::vector<UniqueFd> fds;
        fds.push_back(std::move(**answer));
        return some(make_reply(m.header(), kAckSuccess, std::move(fds)));
    }
    return some(make_u64_reply(m.header(), kAckSuccess | kDeviceStateNoFdMask));
}

} // namespace vl::vhost_user
