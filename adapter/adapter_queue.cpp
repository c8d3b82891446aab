// SPDX-License-Identifier: Apache-2.0
#include "adapter_queue.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <utility>

namespace vl::adapter
{

Result<AdapterQueue> AdapterQueue::create(const virtq::GuestMemory& memory,
                                          const virtq::QueueConfig& config, Handler handler,
                                          Notify notify)
{
    VL_TRY_ASSIGN(auto queue, virtq::SplitQueue::create(memory, config));
    (void)queue.enable_notification(); // serve() follows and looks anyway
    return AdapterQueue(std::move(queue), std::move(handler), std::move(notify));
}

Status AdapterQueue::serve()
{
    for (;;) {
        for (;;) {
            VL_TRY_ASSIGN(bool popped, queue_.pop_into(chain_));
            if (!popped)
                break;
            const std::uint32_t written = std::min(handler_(chain_), chain_.writable_len());
            VL_TRY(queue_.push(chain_.head(), written));
            ++served_;
        }
        if (queue_.needs_notification())
            VL_TRY(notify_());
        // True if requests raced with re-arming the kick: serve them too.
        if (!queue_.enable_notification())
            return queue_.broken() ? Status(Error(queue_.broken_reason())) : ok_status();
    }
}

Result<std::unique_ptr<AdapterQueueThread>> AdapterQueueThread::start(AdapterQueue queue,
                                                                      int kick_fd)
{
    VL_TRY_ASSIGN(auto stop, EventFd::create());
    VL_TRY_ASSIGN(auto failed, EventFd::create());
    std::unique_ptr<AdapterQueueThread> t(
        new AdapterQueueThread(std::move(queue), kick_fd, std::move(stop), std::move(failed)));
    t->thread_ = std::thread([raw = t.get()] { raw->run(); });
    return t;
}

AdapterQueueThread::~AdapterQueueThread()
{
    if (thread_.joinable()) {
        (void)stop_.signal();
        thread_.join();
    }
}

std::optional<Error> AdapterQueueThread::failure() const
{
    std::lock_guard lock(mutex_);
    return failure_;
}

std::uint64_t AdapterQueueThread::served() const
{
    std::lock_guard lock(mutex_);
    return served_;
}

void AdapterQueueThread::fail(Error error)
{
    {
        std::lock_guard lock(mutex_);
        failure_ = std::move(error);
    }
    (void)failed_.signal();
}

void AdapterQueueThread::run()
{
    std::array<pollfd, 2> fds{{{kick_fd_, POLLIN, 0}, {stop_.get(), POLLIN, 0}}};
    for (;;) {
        // Clear the doorbell first: a kick that comes while serving is seen.
        std::uint64_t count = 0;
        while (::read(kick_fd_, &count, sizeof(count)) < 0 && errno == EINTR) {
        }
        if (Status s = queue_.serve(); !s.ok()) {
            fail(s.error());
            return;
        }
        {
            std::lock_guard lock(mutex_);
            served_ = queue_.served();
        }
        int n = ::poll(fds.data(), fds.size(), -1);
        if (n < 0 && errno != EINTR) {
            fail(Error::from_errno("poll on the kick eventfd"));
            return;
        }
        if (n > 0 && fds[1].revents)
            return;
    }
}

} // namespace vl::adapter
