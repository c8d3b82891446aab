// SPDX-License-Identifier: Apache-2.0
// Serves a Device on a Unix socket path, one front-end at a time, in a
// loop: when a front-end leaves (or breaks the protocol), its session is
// torn down (rings stopped, memory unmapped, fds closed, device reset) and
// the next connection is accepted.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <span>
#include <string>

#include "backend/device.hpp"
#include "backend/frontend_notifier.hpp"
#include "backend/session.hpp"
#include "base/event_fd.hpp"
#include "base/log.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vl::backend
{

struct DaemonOptions {
    std::string socket_path;
    SessionOptions session;
};

class Daemon
{
  public:
    // Listens on options.socket_path: a stale socket file left by a dead
    // process is replaced; a path another process serves is an error. The
    // device outlives the daemon.
    static Result<std::unique_ptr<Daemon>> listen(Device& device, DaemonOptions options,
                                                  Logger logger);

    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;
    // Removes the socket file (if it is still ours).
    ~Daemon();

    // Accepts and serves front-ends until request_stop() or until one of
    // `stop_fds` (a signalfd, say) becomes readable: then ok. An error only
    // if the listening socket fails; a front-end's errors are logged and the
    // next one is accepted.
    Status serve(std::span<const int> stop_fds = {});

    // Makes serve() return (after tearing down the current session).
    // Thread-safe and async-signal-safe.
    void request_stop();

    [[nodiscard]] const std::string& socket_path() const noexcept { return options_.socket_path; }
    [[nodiscard]] FrontendNotifier& notifier() noexcept { return notifier_; }
    // Front-ends served so far (finished sessions).
    [[nodiscard]] std::uint64_t sessions_served() const noexcept { return sessions_.load(); }

  private:
    Daemon(Device& device, DaemonOptions options, Logger logger);
    // Waits for a connection or a stop; false on stop.
    Result<bool> wait_for_connection(std::span<const int> stop_fds);

    Device& device_;
    DaemonOptions options_;
    Logger logger_;
    FrontendNotifier notifier_;
    EventFd stop_;
    UniqueFd listen_fd_;
    dev_t socket_dev_ = 0; // identify our socket file for removal
    ino_t socket_ino_ = 0;
    std::atomic<std::uint64_t> sessions_{0};
};

} // namespace vl::backend
