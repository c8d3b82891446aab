// SPDX-License-Identifier: Apache-2.0
// Device-writable buffers a driver keeps posted on one queue, for devices
// that fill buffers when something happens rather than answer requests:
// virtio-input's event queue, virtio-console's receive queues. Posted once;
// each buffer the device returns is read and posted again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/result.hpp"
#include "guest_pool.hpp"
#include "vhost_user_driver.hpp"

namespace vl::test_driver
{

class PostedBuffers
{
  public:
    explicit PostedBuffers(std::uint32_t queue) : queue_(queue) {}

    [[nodiscard]] std::uint32_t queue() const noexcept { return queue_; }
    // Buffers posted and not yet returned by the device.
    [[nodiscard]] std::size_t posted() const noexcept { return posted_; }

    // Makes `count` more zero-filled buffers of `size` bytes available on
    // the queue (each one descriptor), then kicks once. Errors: the ring
    // has too few free descriptors (EAGAIN), guest memory is full (ENOMEM).
    Status post(VhostUserDriver& driver, std::uint32_t count, std::uint32_t size,
                std::uint64_t align = 64);

    // The whole buffer the device returned as `used` (its size, not just
    // the `used.len` bytes the device says it wrote: some drivers ignore
    // that length), copied out. The buffer is zeroed and made available
    // again, without a kick: kick the queue after a batch. EPROTO if
    // `used` is not one of these buffers.
    Result<std::vector<std::byte>> take(VhostUserDriver& driver, const virtq::UsedBuffer& used);

  private:
    std::uint32_t queue_;
    std::size_t posted_ = 0;
    std::vector<Buffer> buffers_;
    // buffers_ index by ring head (a head is only ever one buffer's).
    std::vector<std::optional<std::size_t>> buffer_of_head_;
};

} // namespace vl::test_driver
