// SPDX-License-Identifier: Apache-2.0
// The back-end side of one vhost-user connection: turns each received
// message into a call of the BackendHandler and builds the reply.
//
// Rules it applies (and no others: the order of requests is the handler's
// business, because QEMU, cloud-hypervisor and others send different but
// legal orders):
//  - every message is validated first (message.hpp); a malformed one is a
//    protocol error;
//  - requests with a defined reply (GET_*, ...) always get it; NEED_REPLY
//    changes nothing for them;
//  - other requests get a u64 ack (0 success, 1 failure) when NEED_REPLY is
//    set and REPLY_ACK has been negotiated; without REPLY_ACK the flag is
//    ignored, as the spec defines it only as part of that extension;
//  - a handler failure that the reply cannot express (no ack requested, or a
//    GET_* that has no failure form) is returned as an error: the front-end
//    has no other way to learn of it, so the connection must close;
//  - an unknown request is acknowledged with a failure when an ack was
//    requested (the front-end gets a definite answer and the stream stays in
//    step), and is a protocol error otherwise;
//  - SET_PROTOCOL_FEATURES with INBAND_NOTIFICATIONS but without
//    BACKEND_REQ and REPLY_ACK is a protocol error, as the spec says.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>

#include "base/log.hpp"
#include "base/result.hpp"
#include "vhost_user/backend_handler.hpp"
#include "vhost_user/connection.hpp"
#include "vhost_user/message.hpp"

namespace vl::vhost_user
{

class BackendDispatcher
{
  public:
    // One dispatcher per connection: it remembers the protocol features
    // negotiated on it. `handler` must outlive the dispatcher.
    BackendDispatcher(BackendHandler& handler, Logger logger)
        : handler_(handler), logger_(std::move(logger))
    {
    }

    // Handles one received request; returns the reply to send, if any. An
    // error means the session cannot go on: log it and close the connection.
    Result<std::optional<Message>> dispatch(Message request);

    // receive(), dispatch(), send the reply. Errors as for dispatch(), plus
    // the connection's (peer_closed() tells a normal disconnect apart).
    Status serve_one(Connection& connection);

    // The protocol features the front-end set (after the handler accepted
    // them), and whether REPLY_ACK is among them.
    [[nodiscard]] std::uint64_t acked_protocol_features() const noexcept
    {
        return protocol_features_;
    }
    [[nodiscard]] bool reply_ack_enabled() const noexcept
    {
        return has(protocol_features_, ProtocolFeature::reply_ack);
    }

  private:
    using Reply = Result<std::optional<Message>>;

    Reply handle(Request request, Message& m);
    Reply handle_unknown(const Message& m);
    Reply handle_set_protocol_features(const Message& m);
    Reply handle_get_config(const Message& m);
    Reply handle_get_inflight_fd(const Message& m);
    Reply handle_set_device_state_fd(Message& m);
    Reply handle_set_mem_table(Message& m);
    Reply handle_mem_region(Request request, Message& m);
    Reply handle_vring_fd(Request request, Message& m);
    Reply handle_vring_state(Request request, const Message& m);
    Reply handle_u64_argument(Request request, const Message& m);

    // Replies for requests without a reply body: the ack, or nothing; an
    // unacknowledged failure becomes the returned error.
    Reply finish(const Message& m, Status outcome);
    // u64 replies to GET_* requests: their failure has no wire form.
    Reply reply_u64(const Message& m, Result<std::uint64_t> value);
    // Requests whose reply is a u64 status (SET_LOG_BASE, IOTLB_MSG, ...).
    Reply reply_status(const Message& m, const Status& outcome);

    BackendHandler& handler_;
    Logger logger_;
    std::uint64_t protocol_features_ = 0;
};

} // namespace vl::vhost_user
