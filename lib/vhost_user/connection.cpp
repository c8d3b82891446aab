// SPDX-License-Identifier: Apache-2.0
#include "vhost_user/connection.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace vl::vhost_user
{

namespace
{

// Room for the most fds a message may carry. One more than that would not
// fit, so the kernel sets MSG_CTRUNC and we refuse the message.
constexpr std::size_t kControlSize = CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage);

struct alignas(cmsghdr) ControlBuffer {
    std::array<std::byte, kControlSize> bytes{};
};

Error peer_closed_error(const std::string& detail)
{
    return Error("peer closed the connection" + detail, ECONNRESET);
}

// Moves every fd of the SCM_RIGHTS messages in `msg` into `fds` (so that they
// are owned, and closed on any later error), whatever their number.
void collect_fds(msghdr& msg, std::vector<UniqueFd>& fds)
{
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char* data = CMSG_DATA(c);
        for (std::size_t i = 0; i < count; ++i) {
            int fd = -1;
            std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
            fds.emplace_back(fd);
        }
    }
}

Result<sockaddr_un> unix_address(const std::string& path)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(addr.sun_path))
        return Error(fmt::format("socket path '{}' is {} bytes; it must be 1 to {} bytes", path,
                                 path.size(), sizeof(addr.sun_path) - 1),
                     ENAMETOOLONG);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

Result<UniqueFd> unix_socket()
{
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd)
        return Error::from_errno("socket(AF_UNIX)");
    return fd;
}

// connect() to `addr`, retried on EINTR; returns errno (0 on success).
int connect_unix(int fd, const sockaddr_un& addr)
{
    while (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0) {
        if (errno == EINTR)
            continue;
        return errno;
    }
    return 0;
}

// Removes a socket left behind by a process that died without unlinking
// it; refuses to touch anything else.
Status remove_stale_socket(const std::string& path, const sockaddr_un& addr)
{
    struct stat st {
    };
    if (::lstat(path.c_str(), &st) < 0) {
        if (errno == ENOENT)
            return ok_status();
        return Error::from_errno("cannot inspect " + path);
    }
    if (!S_ISSOCK(st.st_mode))
        return Error(path + " exists and is not a socket; refusing to replace it (choose "
                            "another socket path)",
                     EEXIST);
    VL_TRY_ASSIGN(UniqueFd probe, unix_socket());
    int err = connect_unix(probe.get(), addr);
    if (err == 0)
        return Error(path + " is in use: another process accepts connections on it (stop it, "
                            "or choose another socket path)",
                     EADDRINUSE);
    if (err != ECONNREFUSED)
        return Error::from_errno("cannot probe existing socket " + path, err);
    if (::unlink(path.c_str()) < 0 && errno != ENOENT)
        return Error::from_errno("cannot remove stale socket " + path);
    return ok_status();
}

} // namespace

bool peer_closed(const Error& error)
{
    return error.code() == ECONNRESET || error.code() == EPIPE;
}

Result<std::pair<Connection, Connection>> Connection::pair()
{
    std::array<int, 2> fds{};
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()) < 0)
        return Error::from_errno("socketpair(AF_UNIX)");
    return std::pair<Connection, Connection>(Connection(UniqueFd(fds[0])),
                                             Connection(UniqueFd(fds[1])));
}

std::optional<Connection::Clock::time_point> Connection::deadline_from_now() const
{
    if (!timeout_)
        return std::nullopt;
    return Clock::now() + *timeout_;
}

Status Connection::wait_ready(short events, std::optional<Clock::time_point> deadline,
                              const char* waiting_for)
{
    if (!deadline)
        return ok_status();
    for (;;) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now());
        if (left.count() <= 0)
            return Error(fmt::format("timed out after {} ms waiting {}; the peer is stuck or "
                                     "not speaking vhost-user",
                                     timeout_ ? timeout_->count() : 0, waiting_for),
                         ETIMEDOUT);
        pollfd p{socket_.get(), events, 0};
        int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
        if (n < 0 && errno != EINTR)
            return Error::from_errno("poll on vhost-user socket");
        if (n > 0)
            return ok_status(); // readable/writable, or an error/hang-up that I/O reports
    }
}

Status Connection::send(const Message& m)
{
    std::vector<int> raw;
    raw.reserve(m.fd_count());
    for (const UniqueFd& fd : m.fds())
        raw.push_back(fd.get());
    return send_bytes(std::as_bytes(std::span(&m.header(), 1)), m.payload(), raw,
                      deadline_from_now());
}

Status Connection::send(const Message& m, std::span<const int> fds)
{
    if (m.fd_count() != 0)
        return Error(m.name() + ": message owns fds and was given borrowed ones too", EINVAL);
    return send_bytes(std::as_bytes(std::span(&m.header(), 1)), m.payload(), fds,
                      deadline_from_now());
}

Status Connection::send_bytes(std::span<const std::byte> header, std::span<const std::byte> payload,
                              std::span<const int> fds, std::optional<Clock::time_point> deadline)
{
    if (fds.size() > kMaxFdsPerMessage)
        return Error(fmt::format("cannot send {} fds in one message; the limit is {}", fds.size(),
                                 kMaxFdsPerMessage),
                     EINVAL);
    if (payload.size() > kMaxPayloadSize)
        return Error(fmt::format("cannot send a {}-byte payload; the limit is {}", payload.size(),
                                 kMaxPayloadSize),
                     EINVAL);
    ControlBuffer control;
    std::array<iovec, 2> iov{{
        {const_cast<std::byte*>(header.data()), header.size()},
        {const_cast<std::byte*>(payload.data()), payload.size()},
    }};
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = payload.empty() ? 1 : 2;
    if (!fds.empty()) {
        // The fds travel with the first byte; a partial send never resends them.
        msg.msg_control = control.bytes.data();
        msg.msg_controllen = CMSG_SPACE(fds.size_bytes());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        if (c == nullptr) // cannot happen: the buffer has room for 8 fds
            return Error("internal error: no room for SCM_RIGHTS", EINVAL);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(fds.size_bytes());
        std::memcpy(CMSG_DATA(c), fds.data(), fds.size_bytes());
    }
    int flags = MSG_NOSIGNAL | (deadline ? MSG_DONTWAIT : 0);
    while (msg.msg_iovlen > 0) {
        ssize_t n = ::sendmsg(socket_.get(), &msg, flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if ((errno == EAGAIN || errno == EWOULDBLOCK) && deadline) {
                VL_TRY(wait_ready(POLLOUT, deadline, "to send a message"));
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET)
                return peer_closed_error(" (while sending)");
            return Error::from_errno("sendmsg on vhost-user socket");
        }
        msg.msg_control = nullptr;
        msg.msg_controllen = 0;
        auto sent = static_cast<std::size_t>(n);
        while (msg.msg_iovlen > 0 && sent >= msg.msg_iov->iov_len) {
            sent -= msg.msg_iov->iov_len;
            ++msg.msg_iov;
            --msg.msg_iovlen;
        }
        if (msg.msg_iovlen > 0) {
            msg.msg_iov->iov_base = static_cast<std::byte*>(msg.msg_iov->iov_base) + sent;
            msg.msg_iov->iov_len -= sent;
        }
    }
    return ok_status();
}

Status Connection::receive_exactly(std::span<std::byte> buffer, std::vector<UniqueFd>& fds,
                                   std::optional<Clock::time_point> deadline, bool at_message_start)
{
    std::size_t got = 0;
    while (got < buffer.size()) {
        VL_TRY(wait_ready(POLLIN, deadline, "for a message"));
        iovec iov{buffer.data() + got, buffer.size() - got};
        ControlBuffer control;
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.bytes.data();
        msg.msg_controllen = control.bytes.size();
        ssize_t n =
            ::recvmsg(socket_.get(), &msg, MSG_CMSG_CLOEXEC | (deadline ? MSG_DONTWAIT : 0));
        if (n < 0) {
            if (errno == EINTR || ((errno == EAGAIN || errno == EWOULDBLOCK) && deadline))
                continue;
            if (errno == ECONNRESET)
                return peer_closed_error("");
            return Error::from_errno("recvmsg on vhost-user socket");
        }
        collect_fds(msg, fds); // owned from here on, closed on any error below
        if ((msg.msg_flags & MSG_CTRUNC) != 0 || fds.size() > kMaxFdsPerMessage)
            return Error(fmt::format("peer sent more than {} fds with one message; the extra "
                                     "ones were dropped, so the message is refused",
                                     kMaxFdsPerMessage),
                         EBADMSG);
        if (n == 0) {
            if (at_message_start && got == 0)
                return peer_closed_error("");
            return Error(fmt::format("peer closed the connection in the middle of a message "
                                     "({} of {} bytes of the {} received)",
                                     got, buffer.size(), at_message_start ? "header" : "payload"),
                         EBADMSG);
        }
        got += static_cast<std::size_t>(n);
    }
    return ok_status();
}

Result<Message> Connection::receive()
{
    auto deadline = deadline_from_now();
    std::vector<UniqueFd> fds;
    Header header;
    VL_TRY(receive_exactly(std::as_writable_bytes(std::span(&header, 1)), fds, deadline, true));
    if (header.size > kMaxPayloadSize)
        return Error(fmt::format("{}: payload size {} exceeds the {}-byte limit; the peer is "
                                 "broken or not speaking vhost-user",
                                 request_name(header.request), header.size, kMaxPayloadSize),
                     EBADMSG);
    std::vector<std::byte> payload(header.size);
    VL_TRY(receive_exactly(payload, fds, deadline, false));
    return Message(header.request, header.flags, std::move(payload), std::move(fds));
}

Result<Connection> connect_to(const std::string& path)
{
    VL_TRY_ASSIGN(sockaddr_un addr, unix_address(path));
    VL_TRY_ASSIGN(UniqueFd fd, unix_socket());
    if (int err = connect_unix(fd.get(), addr); err != 0)
        return Error(fmt::format("cannot connect to {}: {} (is the back-end running and "
                                 "listening there?)",
                                 path, std::strerror(err)),
                     err);
    return Connection(std::move(fd));
}

Result<UniqueFd> listen_on(const std::string& path, mode_t mode, int backlog)
{
    VL_TRY_ASSIGN(sockaddr_un addr, unix_address(path));
    VL_TRY(remove_stale_socket(path, addr));
    VL_TRY_ASSIGN(UniqueFd fd, unix_socket());
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0)
        return Error::from_errno("cannot bind socket " + path);
    // bind() applied the umask; set the mode we were asked for. Nobody can
    // connect before listen() below, so the window in between is harmless.
    if (::chmod(path.c_str(), mode) < 0)
        return Error::from_errno(fmt::format("cannot set mode {:o} on socket {}", mode, path));
    if (::listen(fd.get(), backlog) < 0)
        return Error::from_errno("cannot listen on socket " + path);
    return fd;
}

Result<Connection> accept_from(int listen_fd)
{
    for (;;) {
        int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0)
            return Connection(UniqueFd(fd));
        if (errno != EINTR)
            return Error::from_errno("accept on vhost-user socket");
    }
}

} // namespace vl::vhost_user
