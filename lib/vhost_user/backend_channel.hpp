// SPDX-License-Identifier: Apache-2.0
// The back-end -> front-end channel (protocol feature BACKEND_REQ): a socket
// pair whose one end the front-end hands over with SET_BACKEND_REQ_FD. The
// back-end sends BackendRequests on it (config changed, in-band call, ...);
// with REPLY_ACK negotiated it asks for and waits on an ack each time.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "base/result.hpp"
#include "vhost_user/connection.hpp"
#include "vhost_user/message.hpp"
#include "vhost_user/protocol.hpp"

namespace vl::vhost_user
{

// Back-end side. Not thread-safe: a back-end that sends from several
// threads serializes the calls.
class BackendChannel
{
  public:
    // `connection` wraps the fd from SET_BACKEND_REQ_FD; `reply_ack` says
    // whether REPLY_ACK was negotiated on the main connection.
    BackendChannel(Connection connection, bool reply_ack,
                   std::optional<std::chrono::milliseconds> ack_timeout = std::chrono::seconds(5));

    // BACKEND_CONFIG_CHANGE_MSG (protocol feature CONFIG): the front-end
    // should re-read the config space with GET_CONFIG.
    Status config_changed();
    // BACKEND_VRING_CALL / BACKEND_VRING_ERR (INBAND_NOTIFICATIONS).
    Status vring_call(std::uint32_t index);
    Status vring_err(std::uint32_t index);

    [[nodiscard]] Connection& connection() noexcept { return connection_; }

  private:
    Status send(BackendRequest request, Message message);

    Connection connection_;
    bool reply_ack_;
};

// Front-end side: one validated request from the back-end.
struct ReceivedBackendRequest {
    BackendRequest request;
    Message message;
};
Result<ReceivedBackendRequest> receive_backend_request(Connection& connection);
// Answers `request` with an ack (0 success, 1 failure) if it asked for one.
// The front-end only acks when REPLY_ACK was negotiated.
Status answer_backend_request(Connection& connection, const Message& request, bool success,
                              bool reply_ack_enabled);

} // namespace vl::vhost_user
