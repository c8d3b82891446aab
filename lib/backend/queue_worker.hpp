// SPDX-License-Identifier: Apache-2.0
// One queue's worker thread: waits (epoll) on the kick eventfd, a stop
// eventfd and the device's own fds, and runs the device's queue callbacks
// (device.hpp has the threading contract).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "backend/device.hpp"
#include "backend/queue_context.hpp"
#include "base/event_fd.hpp"
#include "base/log.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "virtqueue/split_queue.hpp"

namespace vl::backend
{

struct WorkerSetup {
    std::uint32_t index = 0;
    std::uint64_t features = 0;
    int kick_fd = -1;           // borrowed; stays open while the worker runs
    RingSignal* call = nullptr; // outlive the worker
    RingSignal* err = nullptr;
    // How long stopping waits for chains in flight to complete.
    std::chrono::milliseconds drain_timeout{10000};
    // After the last work, how long to keep checking the ring and the
    // device's fds before sleeping in epoll_wait (vhost's busyloop). While
    // polling, the driver is asked not to kick. 0: sleep at once.
    std::chrono::microseconds poll_time{0};
};

class QueueWorker final : private EventSources
{
  public:
    // Starts the thread on a validated queue. `memory` outlives the worker.
    static Result<std::unique_ptr<QueueWorker>>
    start(Device& device, const WorkerSetup& setup, virtq::SplitQueue queue,
          const virtq::GuestMemory& memory, std::deque<virtq::DescriptorChain> resubmitted,
          Logger logger);

    QueueWorker(const QueueWorker&) = delete;
    QueueWorker& operator=(const QueueWorker&) = delete;
    // Stops the thread if stop() was not called.
    ~QueueWorker() override;

    // Stops the ring: the device finishes (or gives up on) what is in flight,
    // queue_stopped() runs, the thread ends. Returns the next available index
    // the device would have taken. Idempotent.
    std::uint16_t stop();

  private:
    QueueWorker(Device& device, const WorkerSetup& setup, Logger logger);

    Status watch(int fd, std::uint64_t token) override;
    Status unwatch(int fd) override;
    Status epoll_add(int fd, std::uint32_t flags = 0);

    void run();
    // Busy-polls for up to setup_.poll_time; true if it found work (and
    // did it), false if the worker should sleep.
    bool poll_for_work();
    void dispatch_ready(int timeout_ms);
    // How long to wait for events (-1: until one comes); nullopt when the
    // worker is done (stopped, and nothing in flight or out of time).
    [[nodiscard]] std::optional<int> next_wait_ms() const;
    void dispatch(int fd);
    // Lets the device take what is available, until it is all taken or the
    // queue is paused or no longer served.
    void serve_available();
    void handle_device_event(std::uint64_t token);
    void after_callback(const Status& outcome, const char* what);
    void stop_serving(const std::string& reason);
    void begin_stopping();
    [[nodiscard]] bool drained() const;
    void notify();

    Device& device_;
    WorkerSetup setup_;
    Logger logger_;
    UniqueFd epoll_;
    EventFd stop_;
    std::map<int, std::uint64_t> device_fds_; // watched fd -> device token
    // The kick fd is an eventfd watched edge-triggered: its counter need
    // not be read (a system call per kick saved); a pipe is read instead.
    bool kick_edge_triggered_ = false;
    std::unique_ptr<QueueContext> ctx_;
    bool started_ = false; // queue_started() succeeded
    bool serving_ = false; // kicks are processed
    bool failed_ = false;  // no longer served (broken ring, device error)
    bool stopping_ = false;
    std::chrono::steady_clock::time_point drain_deadline_;
    std::uint16_t final_avail_idx_ = 0;
    std::thread thread_;
};

} // namespace vl::backend
