// SPDX-License-Identifier: Apache-2.0
#include "backend/wait.hpp"

#include <poll.h>

#include <cerrno>
#include <vector>

namespace vl::backend
{

Result<std::size_t> wait_readable(std::span<const int> fds)
{
    std::vector<pollfd> polled;
    polled.reserve(fds.size());
    for (int fd : fds)
        polled.push_back({fd, POLLIN, 0});
    for (;;) {
        if (::poll(polled.data(), polled.size(), -1) < 0) {
            if (errno == EINTR)
                continue;
            return Error::from_errno("poll");
        }
        for (std::size_t i = 0; i < polled.size(); ++i)
            if (polled[i].revents != 0)
                return i;
    }
}

} // namespace vl::backend
