// SPDX-License-Identifier: Apache-2.0
#include "blk/io_ring.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace vl::blk
{

namespace
{

Error ring_error(unsigned entries, int code)
{
    std::string hint;
    switch (code) {
    case ENOSYS:
    case EPERM:
        hint = " — io_uring is not available to this process (a kernel without io_uring, the "
               "kernel.io_uring_disabled sysctl, or a seccomp filter); allow it, or use "
               "--io=sync";
        break;
    case ENOMEM:
        hint = " — raise the locked-memory limit (ulimit -l), use a smaller --queue-size, or "
               "use --io=sync";
        break;
    default:
        break;
    }
    return Error(fmt::format("cannot create an io_uring with {} entries: {}{}", entries,
                             std::strerror(code), hint),
                 code);
}

} // namespace

Result<std::unique_ptr<IoRing>> IoRing::create(unsigned entries)
{
    std::unique_ptr<IoRing> ring(new IoRing());
    io_uring_params params{};
    // Without SUBMIT_ALL the kernel stops consuming a batch at the first
    // entry it cannot even start; with it every entry gets its completion.
    params.flags = IORING_SETUP_SUBMIT_ALL;
    int rc = io_uring_queue_init_params(entries, &ring->ring_, &params);
    if (rc == -EINVAL) { // kernels before 5.18 do not know the flag
        params = io_uring_params{};
        rc = io_uring_queue_init_params(entries, &ring->ring_, &params);
    }
    if (rc < 0)
        return ring_error(entries, -rc);
    ring->initialized_ = true;
    ring->entries_ = params.sq_entries;
    VL_TRY_ASSIGN(ring->event_, EventFd::create());
    // Not io_uring_register_eventfd_async, although it would spare the
    // eventfd signal (and its clearing) for completions posted inline in
    // io_uring_enter: it signals only completions posted by io_uring's
    // worker threads. Those the kernel posts from task work in the
    // submitting thread (a disk's interrupt for O_DIRECT and block devices,
    // a page-cache miss that became ready) would then signal nothing: the
    // task work only interrupts the worker's epoll_wait with EINTR, which
    // the event loop retries, and the request would wait for an unrelated
    // kick. (So in io_eventfd_signal() of 6.1 and 6.12; measured on 6.18:
    // an O_DIRECT read on ext4 never made the async eventfd readable.)
    // blk_test's IoRing test checks that every completion signals.
    rc = io_uring_register_eventfd(&ring->ring_, ring->event_.get());
    if (rc < 0)
        return Error::from_errno("io_uring_register_eventfd", -rc);
    return ring;
}

IoRing::~IoRing()
{
    // Closing the ring makes the kernel cancel and reap what is left; the
    // device waits for its operations before it gets here (queue_stopped).
    if (initialized_)
        io_uring_queue_exit(&ring_);
}

Status IoRing::submit()
{
    while (io_uring_sq_ready(&ring_) > 0) {
        const int rc = io_uring_submit(&ring_);
        if (rc > 0)
            continue;
        if (rc == -EINTR)
            continue;
        if (rc == 0)
            return Error("io_uring_enter consumed none of the prepared entries", EAGAIN);
        return Error::from_errno("io_uring_enter (submit)", -rc);
    }
    return ok_status();
}

bool IoRing::wait(std::chrono::milliseconds timeout)
{
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(timeout);
    __kernel_timespec ts{};
    ts.tv_sec = seconds.count();
    ts.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout - seconds).count();
    io_uring_cqe* cqe = nullptr;
    return io_uring_wait_cqe_timeout(&ring_, &cqe, &ts) == 0;
}

Status IoRing::cancel_all()
{
    io_uring_sqe* sqe = next_sqe();
    if (sqe == nullptr) {
        VL_TRY(submit());
        sqe = next_sqe();
        if (sqe == nullptr)
            return Error("no free io_uring submission entry for the cancel request", EBUSY);
    }
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, kCancelTag);
    return submit();
}

std::size_t consume_iovecs(std::span<iovec> iov, std::size_t bytes) noexcept
{
    std::size_t whole = 0;
    for (iovec& v : iov) {
        if (bytes < v.iov_len) {
            v.iov_base = static_cast<std::byte*>(v.iov_base) + bytes;
            v.iov_len -= bytes;
            break;
        }
        bytes -= v.iov_len;
        ++whole;
    }
    return whole;
}

} // namespace vl::blk
