// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vl {

// An owned eventfd: the doorbell type of virtio-loopback and vhost-user.
class EventFd {
public:
    EventFd() = default;
    explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}

    static Result<EventFd> create(int flags = EFD_CLOEXEC | EFD_NONBLOCK)
    {
        int fd = ::eventfd(0, flags);
        if (fd < 0)
            return Error::from_errno("eventfd");
        return EventFd(UniqueFd(fd));
    }

    [[nodiscard]] int get() const noexcept { return fd_.get(); }
    [[nodiscard]] bool valid() const noexcept { return fd_.valid(); }
    UniqueFd& fd() noexcept { return fd_; }

    // Adds one to the counter (rings the doorbell).
    Status signal() const
    {
        std::uint64_t one = 1;
        while (::write(fd_.get(), &one, sizeof(one)) < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) // counter saturated: the peer is woken anyway
                return ok_status();
            return Error::from_errno("eventfd write");
        }
        return ok_status();
    }

    // Reads and clears the counter; 0 if it was zero (non-blocking fd).
    Result<std::uint64_t> drain() const
    {
        std::uint64_t value = 0;
        while (::read(fd_.get(), &value, sizeof(value)) < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return std::uint64_t{0};
            return Error::from_errno("eventfd read");
        }
        return value;
    }

    // A second owner of the same eventfd (to hand to another party).
    Result<UniqueFd> duplicate() const
    {
        int fd = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            return Error::from_errno("dup of eventfd");
        return UniqueFd(fd);
    }

private:
    UniqueFd fd_;
};

} // namespace vl
