// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "base/event_fd.hpp"
#include "base/result.hpp"
#include "virtqueue/descriptor_chain.hpp"
#include "virtqueue/guest_memory.hpp"
#include "virtqueue/split_queue.hpp"

namespace vl::adapter
{

// A queue of a kernel device that the adapter serves itself instead of
// handing it to the back-end: virtio-net's control queue, which a
// vhost-user front-end owns. The kernel side is the same as for any queue
// (its kick eventfd is signalled when the driver adds requests, its call
// eventfd runs the vring interrupt); the adapter maps the device's window
// to reach the rings and the requests. A control-plane queue: a few
// requests. AdapterQueueThread serves it.
class AdapterQueue
{
  public:
    // Serves one request; returns the bytes it wrote to the writable part
    // (at most writable_len()).
    using Handler = std::function<std::uint32_t(const virtq::DescriptorChain&)>;
    // Signals the queue's call eventfd (the driver's used-buffer interrupt).
    using Notify = std::function<Status()>;

    // Binds to the rings (in `memory`, which must outlive the queue) and
    // asks for kicks. Call serve() next: requests may already wait.
    static Result<AdapterQueue> create(const virtq::GuestMemory& memory,
                                       const virtq::QueueConfig& config, Handler handler,
                                       Notify notify);

    // Serves every request available, publishes the answers and signals
    // the driver if it wants it, then re-arms kicks. An error means the
    // ring broke the rules (or the notification failed): the queue serves
    // nothing more.
    Status serve();

    [[nodiscard]] std::uint64_t served() const noexcept { return served_; }

  private:
    AdapterQueue(virtq::SplitQueue queue, Handler handler, Notify notify)
        : queue_(std::move(queue)), handler_(std::move(handler)), notify_(std::move(notify))
    {
    }

    virtq::SplitQueue queue_;
    Handler handler_;
    Notify notify_;
    virtq::DescriptorChain chain_;
    std::uint64_t served_ = 0;
};

// Serves an AdapterQueue on a thread of its own, woken by the queue's kick
// eventfd. The driver may wait for an answer with its CPU spinning (Linux
// 6.1's virtio-net does for its control queue, holding the RTNL lock), so
// answers must never wait for what the adapter's event loop does (a
// back-end's slow reply, which may itself need the spinning CPU): the
// thread only reads the ring and calls the handler, which must not block.
class AdapterQueueThread
{
  public:
    // `kick_fd` (borrowed) must stay open until the thread is destroyed;
    // the queue's memory likewise.
    static Result<std::unique_ptr<AdapterQueueThread>> start(AdapterQueue queue, int kick_fd);

    AdapterQueueThread(const AdapterQueueThread&) = delete;
    AdapterQueueThread& operator=(const AdapterQueueThread&) = delete;
    // Stops and joins the thread: the rings are not touched afterwards.
    ~AdapterQueueThread();

    // Readable once the thread stopped on an error (the ring broke the
    // rules, the notification failed); failure() says what it was.
    [[nodiscard]] int failed_fd() const noexcept { return failed_.get(); }
    [[nodiscard]] std::optional<Error> failure() const;
    [[nodiscard]] std::uint64_t served() const;

  private:
    AdapterQueueThread(AdapterQueue queue, int kick_fd, EventFd stop, EventFd failed)
        : queue_(std::move(queue)), kick_fd_(kick_fd), stop_(std::move(stop)),
          failed_(std::move(failed))
    {
    }
    void run();
    void fail(Error error);

    AdapterQueue queue_; // used by the thread only, until it ends
    int kick_fd_;
    EventFd stop_;
    EventFd failed_;
    mutable std::mutex mutex_; // protects failure_ and served_
    std::optional<Error> failure_;
    std::uint64_t served_ = 0;
    std::thread thread_;
};

} // namespace vl::adapter
