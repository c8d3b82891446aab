// SPDX-License-Identifier: Apache-2.0
// One vhost-user connection: a connected AF_UNIX SOCK_STREAM socket that
// carries messages, with fds as SCM_RIGHTS ancillary data. It frames
// messages (12-byte header, then `size` payload bytes) and checks only what
// framing needs (size limit, fd count); the codec validates the content.
// One thread may send while another receives; two concurrent senders (or
// receivers) would interleave messages and must serialize themselves.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "vhost_user/message.hpp"

namespace vl::vhost_user
{

class Connection
{
  public:
    // Takes a connected AF_UNIX SOCK_STREAM socket.
    explicit Connection(UniqueFd socket) : socket_(std::move(socket)) {}

    // Two connected ends (socketpair), for tests and in-process channels.
    static Result<std::pair<Connection, Connection>> pair();

    // Sends one message with its own fds.
    Status send(const Message& m);
    // Sends a message that owns no fds, passing `fds` (borrowed, not
    // closed) alongside: how a front-end shares fds it keeps using.
    Status send(const Message& m, std::span<const int> fds);

    // Receives one whole message with its fds (close-on-exec). Errors:
    // ECONNRESET when the peer closed the connection (see peer_closed()),
    // ETIMEDOUT when a timeout is set and the message did not arrive in time,
    // EBADMSG for a payload over kMaxPayloadSize, more than 8 fds (they are
    // closed), or an EOF inside a message. After any error the stream is out
    // of step: close the connection.
    Result<Message> receive();

    // Bounds how long receive() waits for a whole message and send() for
    // socket space, so a front-end never blocks forever on a stuck back-end.
    // nullopt (the default) waits forever.
    void set_timeout(std::optional<std::chrono::milliseconds> timeout) { timeout_ = timeout; }
    [[nodiscard]] std::optional<std::chrono::milliseconds> timeout() const { return timeout_; }

    [[nodiscard]] int fd() const noexcept { return socket_.get(); }
    [[nodiscard]] bool valid() const noexcept { return socket_.valid(); }
    void close() noexcept { socket_.reset(); }

  private:
    using Clock = std::chrono::steady_clock;
    Status send_bytes(std::span<const std::byte> header, std::span<const std::byte> payload,
                      std::span<const int> fds, std::optional<Clock::time_point> deadline);
    Status wait_ready(short events, std::optional<Clock::time_point> deadline,
                      const char* waiting_for);
    Status receive_exactly(std::span<std::byte> buffer, std::vector<UniqueFd>& fds,
                           std::optional<Clock::time_point> deadline, bool at_message_start);
    [[nodiscard]] std::optional<Clock::time_point> deadline_from_now() const;

    UniqueFd socket_;
    std::optional<std::chrono::milliseconds> timeout_;
};

// Whether a receive() error means the peer closed the connection (the normal
// end of a session for a back-end) rather than a broken message.
[[nodiscard]] bool peer_closed(const Error& error);

// Connects to a vhost-user socket. Errors say which path and what to check:
// "cannot connect to /run/blk.sock: No such file or directory (is the
// back-end running and listening there?)".
Result<Connection> connect_to(const std::string& path);

// Listens on a socket path: a stale socket left by a dead process is
// removed, a live one (something accepts connections) is an error, and a
// path that is not a socket is never removed. The socket gets `mode`
// (default: owner and group may connect).
Result<UniqueFd> listen_on(const std::string& path, mode_t mode = 0660, int backlog = 8);

// Accepts one connection on a listening socket (blocking unless the
// listening socket is non-blocking).
Result<Connection> accept_from(int listen_fd);

} // namespace vl::vhost_user
