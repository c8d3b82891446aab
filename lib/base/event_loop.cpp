// SPDX-License-Identifier: Apache-2.0
#include "base/event_loop.hpp"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace vl {

Result<EventLoop> EventLoop::create()
{
    EventLoop loop;
    loop.epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!loop.epoll_)
        return Error::from_errno("epoll_create1");
    return loop;
}

Status EventLoop::watch(int fd, Callback callback, std::uint32_t events)
{
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    int op = watches_.count(fd) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (::epoll_ctl(epoll_.get(), op, fd, &ev) < 0)
        return Error::from_errno("epoll_ctl on fd " + std::to_string(fd));
    watches_[fd] = std::make_shared<Watch>(Watch{std::move(callback)});
    return ok_status();
}

void EventLoop::unwatch(int fd)
{
    if (watches_.erase(fd))
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

Result<EventLoop::TimerId> EventLoop::after(std::chrono::milliseconds delay,
                                            std::function<void()> callback)
{
    UniqueFd fd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!fd)
        return Error::from_errno("timerfd_create");
    itimerspec spec{};
    auto ms = std::max<long long>(delay.count(), 1);
    spec.it_value.tv_sec = static_cast<time_t>(ms / 1000);
    spec.it_value.tv_nsec = static_cast<long>((ms % 1000) * 1000000);
    if (::timerfd_settime(fd.get(), 0, &spec, nullptr) < 0)
        return Error::from_errno("timerfd_settime");
    TimerId id = next_timer_++;
    int raw = fd.get();
    timers_[id] = std::make_unique<Timer>(Timer{std::move(fd), std::move(callback)});
    VL_TRY(watch(raw, [this, id](std::uint32_t) {
        auto it = timers_.find(id);
        if (it == timers_.end())
            return;
        auto fire = std::move(it->second->callback);
        cancel(id);
        fire();
    }));
    return id;
}

void EventLoop::cancel(TimerId id)
{
    auto it = timers_.find(id);
    if (it == timers_.end())
        return;
    unwatch(it->second->fd.get());
    timers_.erase(it);
}

Status EventLoop::handle_termination(std::function<void(int)> callback)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &mask, nullptr) < 0)
        return Error::from_errno("sigprocmask");
    signals_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals_)
        return Error::from_errno("signalfd");
    return watch(signals_.get(), [this, on_signal = std::move(callback)](std::uint32_t) {
        signalfd_siginfo info{};
        while (::read(signals_.get(), &info, sizeof(info)) == sizeof(info))
            on_signal(static_cast<int>(info.ssi_signo));
    });
}

Status EventLoop::run()
{
    running_ = true;
    std::array<epoll_event, 32> events{};
    while (running_) {
        int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return Error::from_errno("epoll_wait");
        }
        for (int i = 0; i < n && running_; ++i) {
            auto it = watches_.find(events[static_cast<std::size_t>(i)].data.fd);
            if (it == watches_.end())
                continue; // removed by an earlier callback of this round
            std::shared_ptr<Watch> keep = it->second;
            keep->callback(events[static_cast<std::size_t>(i)].events);
        }
    }
    return ok_status();
}

} // namespace vl
