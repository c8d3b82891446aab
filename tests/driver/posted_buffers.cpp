// SPDX-License-Identifier: Apache-2.0
#include "posted_buffers.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

namespace vl::test_driver
{

namespace
{

Result<std::uint16_t> add_writable(VhostUserDriver& driver, std::uint32_t queue,
                                   const Buffer& buffer)
{
    const virtq::GuestBuffer writable = buffer.whole();
    return driver.add(queue, {}, std::span(&writable, 1));
}

} // namespace

Status PostedBuffers::post(VhostUserDriver& driver, std::uint32_t count, std::uint32_t size,
                           std::uint64_t align)
{
    if (buffer_of_head_.size() < driver.queue_size())
        buffer_of_head_.resize(driver.queue_size());
    for (std::uint32_t i = 0; i < count; ++i) {
        VL_TRY_ASSIGN(Buffer buffer, driver.allocate(size, align));
        VL_TRY_ASSIGN(std::uint16_t head, add_writable(driver, queue_, buffer));
        buffer_of_head_[head] = buffers_.size();
        buffers_.push_back(std::move(buffer));
        ++posted_;
    }
    return driver.kick(queue_);
}

Result<std::vector<std::byte>> PostedBuffers::take(VhostUserDriver& driver,
                                                   const virtq::UsedBuffer& used)
{
    if (used.head >= buffer_of_head_.size() || !buffer_of_head_[used.head])
        return Error(fmt::format("queue {}: head {} is not a posted buffer", queue_, used.head),
                     EPROTO);
    const std::size_t index = *buffer_of_head_[used.head];
    buffer_of_head_[used.head].reset();
    --posted_;
    Buffer& buffer = buffers_[index];
    std::vector<std::byte> bytes(buffer.bytes().begin(), buffer.bytes().end());
    std::fill(buffer.bytes().begin(), buffer.bytes().end(), std::byte{0});
    VL_TRY_ASSIGN(std::uint16_t head, add_writable(driver, queue_, buffer));
    buffer_of_head_[head] = index;
    ++posted_;
    return bytes;
}

} // namespace vl::test_driver
