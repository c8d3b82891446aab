// SPDX-License-Identifier: Apache-2.0
#include "backend/queue_context.hpp"

#include <unistd.h>

#include <cerrno>

namespace vl::backend
{

void RingSignal::replace(UniqueFd fd)
{
    std::lock_guard lock(mutex_);
    fd_ = std::move(fd);
}

Status RingSignal::signal()
{
    std::lock_guard lock(mutex_);
    if (!fd_.valid())
        return ok_status();
    std::uint64_t one = 1;
    // The front-end's fd may be an eventfd or (on platforms without one) a
    // pipe; either takes an 8-byte write. EAGAIN: the counter is saturated
    // or the pipe full, so the front-end has a wake-up pending anyway.
    while (::write(fd_.get(), &one, sizeof(one)) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return ok_status();
        return Error::from_errno("cannot signal the front-end's eventfd");
    }
    return ok_status();
}

bool RingSignal::has_fd() const
{
    std::lock_guard lock(mutex_);
    return fd_.valid();
}

QueueContext::QueueContext(std::uint32_t index, virtq::SplitQueue queue,
                           const virtq::GuestMemory& memory, std::uint64_t features,
                           RingSignal& call, EventSources& events, Logger logger,
                           std::deque<virtq::DescriptorChain> resubmitted)
    : index_(index), queue_(std::move(queue)), memory_(memory), features_(features), call_(call),
      events_(events), logger_(std::move(logger)), resubmitted_(std::move(resubmitted))
{
}

Result<std::optional<virtq::DescriptorChain>> QueueContext::pop()
{
    if (!resubmitted_.empty()) {
        virtq::DescriptorChain chain = std::move(resubmitted_.front());
        resubmitted_.pop_front();
        return std::optional<virtq::DescriptorChain>(std::move(chain));
    }
    return queue_.pop();
}

Status QueueContext::push(std::uint16_t head, std::uint32_t written_len)
{
    return queue_.push(head, written_len);
}

Status QueueContext::notify()
{
    if (!queue_.needs_notification())
        return ok_status();
    return call_.signal();
}

} // namespace vl::backend
