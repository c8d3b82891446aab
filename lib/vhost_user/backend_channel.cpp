// SPDX-License-Identifier: Apache-2.0
#include "vhost_user/backend_channel.hpp"

#include <fmt/format.h>

namespace vl::vhost_user
{

BackendChannel::BackendChannel(Connection connection, bool reply_ack,
                               std::optional<std::chrono::milliseconds> ack_timeout)
    : connection_(std::move(connection)), reply_ack_(reply_ack)
{
    connection_.set_timeout(ack_timeout);
}

Status BackendChannel::send(BackendRequest request, Message message)
{
    std::string what = backend_request_name(request);
    message.set_need_reply(reply_ack_);
    if (Status sent = connection_.send(message); !sent.ok())
        return sent.error().wrap(what + ": cannot send to the front-end");
    if (!reply_ack_)
        return ok_status();
    VL_TRY_ASSIGN(Message reply, connection_.receive());
    VL_TRY(validate_backend_reply_header(reply, request));
    VL_TRY_ASSIGN(std::uint64_t status, read_payload<std::uint64_t>(reply, what + " reply"));
    VL_TRY(expect_fd_count(reply, 0, what + " reply"));
    if (status != kAckSuccess)
        return Error(fmt::format("{}: the front-end refused it (ack status {})", what, status),
                     EIO);
    return ok_status();
}

Status BackendChannel::config_changed()
{
    return send(BackendRequest::config_change_msg,
                make_backend_request(BackendRequest::config_change_msg));
}

Status BackendChannel::vring_call(std::uint32_t index)
{
    return send(BackendRequest::vring_call,
                make_backend_request(BackendRequest::vring_call, VringState{index, 0}));
}

Status BackendChannel::vring_err(std::uint32_t index)
{
    return send(BackendRequest::vring_err,
                make_backend_request(BackendRequest::vring_err, VringState{index, 0}));
}

Result<ReceivedBackendRequest> receive_backend_request(Connection& connection)
{
    VL_TRY_ASSIGN(Message message, connection.receive());
    VL_TRY_ASSIGN(BackendRequest request, validate_backend_request(message));
    return ReceivedBackendRequest{request, std::move(message)};
}

Status answer_backend_request(Connection& connection, const Message& request, bool success,
                              bool reply_ack_enabled)
{
    if (!request.needs_reply() || !reply_ack_enabled)
        return ok_status();
    return connection.send(make_u64_reply(request.header(), success ? kAckSuccess : kAckFailure));
}

} // namespace vl::vhost_user
