// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vl {

// A single-threaded epoll loop: callbacks on readable fds, one-shot timers
// (timerfd) and SIGTERM/SIGINT (signalfd). Callbacks may add and remove
// watches, including their own. Used by control-plane programs (the
// adapter); data-plane threads have their own, simpler loops.
class EventLoop {
public:
    // Called with the epoll events that fired (EPOLLIN, EPOLLHUP, ...).
    using Callback = std::function<void(std::uint32_t events)>;
    using TimerId = std::uint64_t;

    static Result<EventLoop> create();

    EventLoop(EventLoop&&) noexcept = default;
    EventLoop& operator=(EventLoop&&) noexcept = default;

    // Watches fd (not owned) for `events` (default: readable).
    Status watch(int fd, Callback callback, std::uint32_t events = 0x001 /* EPOLLIN */);
    void unwatch(int fd);

    // Runs `callback` once after `delay`; returns an id for cancel().
    Result<TimerId> after(std::chrono::milliseconds delay, std::function<void()> callback);
    void cancel(TimerId id);

    // Blocks SIGTERM and SIGINT and delivers them to `callback` instead.
    Status handle_termination(std::function<void(int signal)> callback);

    // Runs until stop() is called from a callback. Errors only for epoll
    // itself failing.
    Status run();
    void stop() { running_ = false; }

private:
    EventLoop() = default;
    struct Watch {
        Callback callback;
    };
    struct Timer {
        UniqueFd fd;
        std::function<void()> callback;
    };

    UniqueFd epoll_;
    // shared_ptr: a callback that unwatches itself keeps running safely.
    std::map<int, std::shared_ptr<Watch>> watches_;
    std::map<TimerId, std::unique_ptr<Timer>> timers_;
    TimerId next_timer_ = 1;
    UniqueFd signals_;
    bool running_ = false;
};

} // namespace vl
