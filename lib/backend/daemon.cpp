// SPDX-License-Identifier: Apache-2.0
#include "backend/daemon.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "backend/wait.hpp"
#include "vhost_user/connection.hpp"

namespace vl::backend
{

Daemon::Daemon(Device& device, DaemonOptions options, Logger logger)
    : device_(device), options_(std::move(options)), logger_(std::move(logger))
{
}

Result<std::unique_ptr<Daemon>> Daemon::listen(Device& device, DaemonOptions options, Logger logger)
{
    VL_TRY(check_device(device));
    std::unique_ptr<Daemon> d(new Daemon(device, std::move(options), std::move(logger)));
    VL_TRY_ASSIGN(d->stop_, EventFd::create());
    VL_TRY_ASSIGN(d->listen_fd_, vhost_user::listen_on(d->options_.socket_path));
    struct stat st {
    };
    if (::stat(d->options_.socket_path.c_str(), &st) == 0) {
        d->socket_dev_ = st.st_dev;
        d->socket_ino_ = st.st_ino;
    }
    device.bind_notifier(&d->notifier_);
    d->logger_.info("listening on {}", d->options_.socket_path);
    return d;
}

Daemon::~Daemon()
{
    device_.bind_notifier(nullptr);
    // Only our own socket: someone may have replaced the path meanwhile.
    struct stat st {
    };
    if (::stat(options_.socket_path.c_str(), &st) == 0 && st.st_dev == socket_dev_ &&
        st.st_ino == socket_ino_)
        ::unlink(options_.socket_path.c_str());
}

void Daemon::request_stop()
{
    std::uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
}

Result<bool> Daemon::wait_for_connection(std::span<const int> stop_fds)
{
    std::vector<int> fds{stop_.get()};
    fds.insert(fds.end(), stop_fds.begin(), stop_fds.end());
    fds.push_back(listen_fd_.get());
    VL_TRY_ASSIGN(std::size_t ready, wait_readable(fds));
    return ready == fds.size() - 1;
}

Status Daemon::serve(std::span<const int> stop_fds)
{
    std::vector<int> session_stop_fds(stop_fds.begin(), stop_fds.end());
    session_stop_fds.push_back(stop_.get());
    for (;;) {
        VL_TRY_ASSIGN(bool connected, wait_for_connection(stop_fds));
        if (!connected)
            return ok_status();
        auto connection = vhost_user::accept_from(listen_fd_.get());
        if (!connection) {
            // The peer may have gone between poll and accept; anything else
            // is the listening socket failing.
            if (connection.error().code() == ECONNABORTED || connection.error().code() == EINTR)
                continue;
            return connection.error();
        }
        logger_.info("front-end connected");
        Status served = serve_connection(device_, std::move(connection).value(), notifier_,
                                         session_stop_fds, options_.session, logger_);
        ++sessions_;
        if (!served)
            logger_.error("closed the connection: {}", served.error().message());
        else
            logger_.info("session ended; waiting for the next front-end");
    }
}

} // namespace vl::backend
