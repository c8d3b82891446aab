// SPDX-License-Identifier: Apache-2.0
#include "backend/queue_worker.hpp"

#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>

namespace vl::backend
{

namespace
{

// An eventfd (an anonymous inode: no file type bits), as front-ends give
// for kicks; not a pipe, which must be read or it fills up.
bool is_eventfd_like(int fd)
{
    struct stat st {
    };
    return ::fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == 0;
}

} // namespace

QueueWorker::QueueWorker(Device& device, const WorkerSetup& setup, Logger logger)
    : device_(device), setup_(setup), logger_(std::move(logger))
{
}

Result<std::unique_ptr<QueueWorker>>
QueueWorker::start(Device& device, const WorkerSetup& setup, virtq::SplitQueue queue,
                   const virtq::GuestMemory& memory, std::deque<virtq::DescriptorChain> resubmitted,
                   Logger logger)
{
    std::unique_ptr<QueueWorker> w(new QueueWorker(device, setup, logger));
    w->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!w->epoll_)
        return Error::from_errno("epoll_create1 for a queue worker");
    VL_TRY_ASSIGN(w->stop_, EventFd::create());
    VL_TRY(w->epoll_add(w->stop_.get()));
    w->kick_edge_triggered_ = is_eventfd_like(setup.kick_fd);
    VL_TRY(w->epoll_add(setup.kick_fd, w->kick_edge_triggered_ ? EPOLLET : 0U));
    EventSources& events = *w; // a private base: convert here, where it is accessible
    w->ctx_ = std::make_unique<QueueContext>(setup.index, std::move(queue), memory, setup.features,
                                             *setup.call, events, std::move(logger),
                                             std::move(resubmitted));
    w->thread_ = std::thread([raw = w.get()] { raw->run(); });
    return w;
}

QueueWorker::~QueueWorker()
{
    stop();
}

std::uint16_t QueueWorker::stop()
{
    if (thread_.joinable()) {
        if (Status s = stop_.signal(); !s)
            logger_.error("cannot wake the worker to stop it: {}", s.error().message());
        thread_.join();
    }
    return final_avail_idx_;
}

Status QueueWorker::epoll_add(int fd, std::uint32_t flags)
{
    epoll_event event{};
    event.events = EPOLLIN | flags;
    event.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) < 0)
        return Error::from_errno("epoll_ctl ADD of fd " + std::to_string(fd));
    return ok_status();
}

Status QueueWorker::watch(int fd, std::uint64_t token)
{
    if (fd == stop_.get() || fd == setup_.kick_fd || device_fds_.contains(fd))
        return Error("fd " + std::to_string(fd) + " is already watched by this queue", EEXIST);
    VL_TRY(epoll_add(fd));
    device_fds_[fd] = token;
    return ok_status();
}

Status QueueWorker::unwatch(int fd)
{
    if (device_fds_.erase(fd) == 0)
        return Error("fd " + std::to_string(fd) + " is not watched by this queue", ENOENT);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr) < 0)
        return Error::from_errno("epoll_ctl DEL of fd " + std::to_string(fd));
    return ok_status();
}

void QueueWorker::run()
{
    if (Status s = device_.queue_started(*ctx_); !s) {
        stop_serving("the device could not start it: " + s.error().message());
    } else {
        started_ = true;
        serving_ = true;
        // A started ring is processed at once: the driver may have made
        // buffers available before the kick fd was set (or while a previous
        // back-end was stopped), and that kick is not repeated.
        serve_available();
    }
    while (auto timeout_ms = next_wait_ms()) {
        if (setup_.poll_time.count() > 0 && serving_ && !stopping_ && poll_for_work())
            continue;
        dispatch_ready(*timeout_ms);
    }
    if (started_)
        device_.queue_stopped(*ctx_);
    final_avail_idx_ = ctx_->queue().last_avail_idx();
}

void QueueWorker::dispatch_ready(int timeout_ms)
{
    std::array<epoll_event, 16> events{};
    const int n =
        ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0 && errno != EINTR)
        stop_serving(Error::from_errno("epoll_wait").message());
    for (int i = 0; i < n; ++i)
        dispatch(events[static_cast<std::size_t>(i)].data.fd);
}

bool QueueWorker::poll_for_work()
{
    virtq::SplitQueue& queue = ctx_->queue();
    const auto deadline = std::chrono::steady_clock::now() + setup_.poll_time;
    // The driver need not kick while we look at its ring anyway.
    queue.disable_notification();
    for (;;) {
        if (!ctx_->paused()) {
            auto available = queue.available();
            if (!available.ok() || *available > 0 || ctx_->pending_resubmissions() > 0) {
                serve_available(); // enables notifications again when done
                return true;
            }
        }
        // The device's fds (an io_uring's completions, an input source)
        // and the kick and stop fds, without sleeping.
        epoll_event event{};
        const int n = ::epoll_wait(epoll_.get(), &event, 1, 0);
        if (n > 0) {
            dispatch(event.data.fd);
            return true;
        }
        if (std::chrono::steady_clock::now() >= deadline)
            break;
    }
    // Going to sleep: the next buffer must kick us. One may have come in
    // while notifications were off.
    if (queue.enable_notification() && !ctx_->paused()) {
        serve_available();
        return true;
    }
    return false;
}

std::optional<int> QueueWorker::next_wait_ms() const
{
    if (!stopping_)
        return -1;
    if (drained())
        return std::nullopt;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        drain_deadline_ - std::chrono::steady_clock::now());
    if (left.count() > 0)
        return static_cast<int>(left.count()) + 1;
    logger_.error("{} chains still in flight {} ms after the stop request; giving up on them "
                  "(with inflight tracking a front-end resubmits them)",
                  ctx_->queue().in_flight_count() - ctx_->pending_resubmissions(),
                  setup_.drain_timeout.count());
    return std::nullopt;
}

void QueueWorker::dispatch(int fd)
{
    if (fd == stop_.get()) {
        begin_stopping();
    } else if (fd == setup_.kick_fd) {
        // A pipe must be read (it would fill up); an eventfd watched
        // edge-triggered need not be. The count is meaningless.
        std::uint64_t count = 0;
        if (!kick_edge_triggered_)
            (void)!::read(fd, &count, sizeof(count));
        if (serving_ && !stopping_ && !ctx_->paused())
            serve_available();
    } else if (auto it = device_fds_.find(fd); it != device_fds_.end()) {
        handle_device_event(it->second);
    }
}

void QueueWorker::serve_available()
{
    virtq::SplitQueue& queue = ctx_->queue();
    while (serving_ && !ctx_->paused()) {
        // No kicks while we are taking buffers anyway.
        queue.disable_notification();
        auto available = queue.available();
        const bool had_work =
            (available.ok() && *available > 0) || ctx_->pending_resubmissions() > 0;
        const auto before = std::pair(queue.last_avail_idx(), ctx_->pending_resubmissions());
        Status s = available.ok() ? device_.process_queue(*ctx_) : ok_status();
        after_callback(s, "process_queue");
        if (!serving_ || ctx_->paused())
            return;
        // Re-enabling races with a driver adding buffers: if some came in
        // between, take them now, since their kick may have been suppressed.
        const bool more = queue.enable_notification() || ctx_->pending_resubmissions() > 0;
        if (!more)
            return;
        if (had_work &&
            before == std::pair(queue.last_avail_idx(), ctx_->pending_resubmissions())) {
            logger_.warn("the device left chains available without pausing the queue; paused "
                         "it until the device resumes it");
            ctx_->pause();
            return;
        }
    }
}

void QueueWorker::handle_device_event(std::uint64_t token)
{
    const bool was_paused = ctx_->paused();
    Status s = device_.handle_event(*ctx_, token);
    after_callback(s, "handle_event");
    if (serving_ && !stopping_ && was_paused && !ctx_->paused())
        serve_available();
}

void QueueWorker::after_callback(const Status& outcome, const char* what)
{
    if (ctx_->queue().broken())
        stop_serving("the driver broke the ring rules: " + ctx_->queue().broken_reason());
    else if (!outcome)
        stop_serving(std::string(what) + " failed: " + outcome.error().message());
    notify();
}

void QueueWorker::stop_serving(const std::string& reason)
{
    if (failed_)
        return; // reported once
    failed_ = true;
    serving_ = false;
    logger_.error("queue {} is no longer served: {}", setup_.index, reason);
    if (Status s = setup_.err->signal(); !s)
        logger_.warn("{}", s.error().message());
}

void QueueWorker::begin_stopping()
{
    stopping_ = true;
    (void)stop_.drain(); // level-triggered: clear it, or epoll would keep waking us
    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, stop_.get(), nullptr);
    drain_deadline_ = std::chrono::steady_clock::now() + setup_.drain_timeout;
    if (!drained())
        logger_.debug("stopping: waiting for {} chains in flight",
                      ctx_->queue().in_flight_count() - ctx_->pending_resubmissions());
}

bool QueueWorker::drained() const
{
    // A queue no longer served cannot complete anything (push fails on a
    // broken queue); its device cleans up in queue_stopped().
    if (!serving_)
        return true;
    return ctx_->queue().in_flight_count() == ctx_->pending_resubmissions();
}

void QueueWorker::notify()
{
    if (Status s = ctx_->notify(); !s)
        logger_.warn("{}", s.error().message());
}

} // namespace vl::backend
