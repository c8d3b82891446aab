// SPDX-License-Identifier: Apache-2.0
// One io_uring, owned by one thread (a queue's worker), whose completions
// signal an eventfd: the worker watches that eventfd with the rest of its
// event loop (QueueContext::watch) instead of blocking in io_uring_enter, so
// kicks, stop requests and completions are all served by one epoll_wait.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "base/event_fd.hpp"
#include "base/result.hpp"

namespace vl::blk
{

class IoRing
{
  public:
    // A ring with `entries` submission slots (a power of two, 1 to 32768)
    // and twice as many completion slots, so that a user who keeps at most
    // `entries` operations in flight never overflows the completion queue.
    static Result<std::unique_ptr<IoRing>> create(unsigned entries);

    IoRing(const IoRing&) = delete;
    IoRing& operator=(const IoRing&) = delete;
    ~IoRing();

    [[nodiscard]] unsigned entries() const noexcept { return entries_; }
    // Readable when completions were posted, by whatever context the kernel
    // posted them from; clear it with clear_event().
    [[nodiscard]] int event_fd() const noexcept { return event_.get(); }

    // A free submission entry to prepare, or nullptr if all are prepared
    // and not yet submitted.
    [[nodiscard]] io_uring_sqe* next_sqe() noexcept { return io_uring_get_sqe(&ring_); }

    // Hands every prepared entry to the kernel with as few io_uring_enter
    // calls as possible (normally one). An error leaves entries unsubmitted
    // only when the kernel refuses the ring itself (out of memory).
    Status submit();

    // Whether completions are waiting to be reaped (no system call).
    [[nodiscard]] bool completions_ready() const noexcept { return io_uring_cq_ready(&ring_) > 0; }

    // Resets the eventfd's counter. Call before reap(): a completion posted
    // after this signals it again, so none is left unseen.
    void clear_event() noexcept { (void)event_.drain(); }

    // Calls on_completion(user_data, res) for every posted completion and
    // releases them; returns how many there were. on_completion may prepare
    // new entries (submit them afterwards).
    template <class OnCompletion> unsigned reap(OnCompletion&& on_completion)
    {
        unsigned head = 0;
        unsigned count = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&ring_, head, cqe)
        {
            on_completion(cqe->user_data, cqe->res);
            ++count;
        }
        io_uring_cq_advance(&ring_, count);
        return count;
    }

    // Blocks up to `timeout` until a completion is posted; false on timeout.
    // Only for stopping a queue with operations still in flight.
    bool wait(std::chrono::milliseconds timeout);

    // Asks the kernel to cancel every operation in flight (their
    // completions come with -ECANCELED, or their real result if they were
    // past cancelling). The cancel request's own completion carries
    // kCancelTag.
    Status cancel_all();
    static constexpr std::uint64_t kCancelTag = ~std::uint64_t{0};

  private:
    IoRing() = default;

    io_uring ring_{};
    bool initialized_ = false;
    unsigned entries_ = 0;
    EventFd event_;
};

// After a short readv/writev: drops the first `bytes` transferred from
// `iov` so that the rest can be resubmitted. Whole iovecs consumed are
// counted (the caller starts the next submission after them); the one the
// transfer ended in is shortened in place. Returns the number of whole
// iovecs consumed.
std::size_t consume_iovecs(std::span<iovec> iov, std::size_t bytes) noexcept;

} // namespace vl::blk
