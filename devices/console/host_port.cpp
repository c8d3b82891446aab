// SPDX-License-Identifier: Apache-2.0
#include "console/host_port.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

namespace vl::console
{

namespace
{

Result<UniqueFd> open_pty_master()
{
    UniqueFd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
    if (!master)
        return Error::from_errno("posix_openpt (is /dev/ptmx there and devpts mounted?)");
    if (::grantpt(master.get()) < 0 || ::unlockpt(master.get()) < 0)
        return Error::from_errno("grantpt/unlockpt of a new pty");
    return master;
}

Result<UniqueFd> listen_unix(const std::string& path)
{
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        return Error::from_errno("socket(AF_UNIX)");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size()); // length checked by PortSpec
    // A socket file left by an earlier run would make bind fail; only
    // sockets are removed, never other files.
    struct stat st {
    };
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
        ::unlink(path.c_str());
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0)
        return Error::from_errno(fmt::format("bind to {} (is the path free and its folder "
                                             "writable?)",
                                             path));
    if (::listen(fd.get(), 1) < 0)
        return Error::from_errno(fmt::format("listen on {}", path));
    return fd;
}

} // namespace

HostPort::HostPort(PortSpec spec) : spec_(std::move(spec)) {}

HostPort::~HostPort()
{
    if (listener_)
        ::unlink(spec_.path.c_str());
    if (created_link_) {
        // Only our own link: another process may have replaced it.
        std::vector<char> target(pty_path_.size() + 2);
        const ssize_t n = ::readlink(spec_.path.c_str(), target.data(), target.size());
        if (n >= 0 && std::string_view(target.data(), static_cast<std::size_t>(n)) == pty_path_)
            ::unlink(spec_.path.c_str());
    }
}

Result<std::unique_ptr<HostPort>> HostPort::open(const PortSpec& spec)
{
    std::unique_ptr<HostPort> port(new HostPort(spec));
    if (spec.kind == HostKind::unix) {
        VL_TRY_ASSIGN(port->listener_, listen_unix(spec.path));
        return port;
    }
    VL_TRY_ASSIGN(UniqueFd master, open_pty_master());
    std::array<char, 128> name{};
    if (::ptsname_r(master.get(), name.data(), name.size()) != 0)
        return Error::from_errno("ptsname_r");
    port->pty_path_ = name.data();
    port->pty_slave_.reset(::open(name.data(), O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!port->pty_slave_)
        return Error::from_errno(fmt::format("open {}", port->pty_path_));
    // Raw: the bytes pass unchanged both ways and nothing is echoed back to
    // the driver; a terminal program on the host sets its own mode.
    termios tio{};
    if (::tcgetattr(port->pty_slave_.get(), &tio) < 0)
        return Error::from_errno(fmt::format("tcgetattr {}", port->pty_path_));
    ::cfmakeraw(&tio);
    if (::tcsetattr(port->pty_slave_.get(), TCSANOW, &tio) < 0)
        return Error::from_errno(fmt::format("tcsetattr {}", port->pty_path_));
    if (!spec.path.empty()) {
        struct stat st {
        };
        if (::lstat(spec.path.c_str(), &st) == 0) {
            if (!S_ISLNK(st.st_mode))
                return Error(fmt::format("{} exists and is not a symlink; choose another path for "
                                         "the pty link",
                                         spec.path),
                             EEXIST);
            ::unlink(spec.path.c_str());
        }
        if (::symlink(port->pty_path_.c_str(), spec.path.c_str()) < 0)
            return Error::from_errno(fmt::format("symlink {} -> {}", spec.path, port->pty_path_));
        port->created_link_ = true;
    }
    port->stream_ = std::make_shared<const UniqueFd>(std::move(master));
    return port;
}

std::string HostPort::describe() const
{
    if (spec_.kind == HostKind::unix)
        return fmt::format("unix socket {}", spec_.path);
    if (spec_.path.empty())
        return fmt::format("pty {}", pty_path_);
    return fmt::format("pty {} (link {})", pty_path_, spec_.path);
}

std::shared_ptr<const UniqueFd> HostPort::stream() const
{
    std::lock_guard lock(mutex_);
    return stream_;
}

bool HostPort::connected() const
{
    return stream() != nullptr;
}

int HostPort::wait_fd() const
{
    auto s = stream();
    return s ? s->get() : listener_.get();
}

Result<bool> HostPort::accept()
{
    if (!listener_ || connected())
        return connected();
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!client) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
            return false;
        return Error::from_errno(fmt::format("accept on {}", spec_.path));
    }
    std::lock_guard lock(mutex_);
    stream_ = std::make_shared<const UniqueFd>(std::move(client));
    return true;
}

std::optional<std::size_t> HostPort::pending_input() const
{
    auto s = stream();
    if (!s)
        return std::nullopt;
    if (listener_) {
        // A socket tells end-of-stream (0) from no data yet (EAGAIN) exactly.
        char c = 0;
        const ssize_t n = ::recv(s->get(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return std::nullopt;
        if (n < 0)
            return std::size_t{0};
    }
    int n = 0;
    if (::ioctl(s->get(), FIONREAD, &n) < 0 || n < 0)
        return std::size_t{0};
    return std::max<std::size_t>(static_cast<std::size_t>(n), listener_ ? 1 : 0);
}

Result<std::size_t> HostPort::read(std::span<const std::span<std::byte>> buffers)
{
    auto s = stream();
    if (!s)
        return std::size_t{0};
    std::vector<iovec> iov;
    iov.reserve(buffers.size());
    for (std::span<std::byte> b : buffers)
        iov.push_back({b.data(), b.size()});
    for (;;) {
        const ssize_t n = ::readv(s->get(), iov.data(), static_cast<int>(iov.size()));
        if (n >= 0)
            return static_cast<std::size_t>(n);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return std::size_t{0};
        return Error::from_errno(fmt::format("read from {}", describe()));
    }
}

void HostPort::disconnect()
{
    if (!listener_)
        return;
    std::lock_guard lock(mutex_);
    stream_.reset();
}

Result<std::optional<std::size_t>> HostPort::write(std::span<const std::byte> data)
{
    auto s = stream();
    if (!s)
        return std::optional<std::size_t>();
    for (;;) {
        // send() on a socket: MSG_NOSIGNAL, no SIGPIPE when the client left.
        const ssize_t n = listener_ ? ::send(s->get(), data.data(), data.size(), MSG_NOSIGNAL)
                                    : ::write(s->get(), data.data(), data.size());
        if (n >= 0)
            return std::optional<std::size_t>(static_cast<std::size_t>(n));
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return std::optional<std::size_t>(0);
        if (errno == EPIPE || errno == ECONNRESET)
            return std::optional<std::size_t>();
        return Error::from_errno(fmt::format("write to {}", describe()));
    }
}

std::optional<WindowSize> HostPort::window_size() const
{
    if (spec_.kind != HostKind::pty)
        return std::nullopt;
    winsize ws{};
    if (::ioctl(pty_slave_.get(), TIOCGWINSZ, &ws) < 0 || (ws.ws_col == 0 && ws.ws_row == 0))
        return std::nullopt;
    return WindowSize{ws.ws_col, ws.ws_row};
}

} // namespace vl::console
