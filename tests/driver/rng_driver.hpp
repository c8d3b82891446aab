// SPDX-License-Identifier: Apache-2.0
// virtio-rng on top of VhostUserDriver (virtio 1.2, 5.4): one request
// queue; the driver posts writable buffers, the device fills them with
// entropy and reports how many bytes it wrote.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/result.hpp"
#include "vhost_user_driver.hpp"

namespace vl::test_driver
{

struct RngOptions {
    ConnectOptions connect;
    std::uint32_t queue_size = 64;
    bool event_idx = true;
    // The largest single request; read() asks in pieces of this size.
    std::uint32_t chunk_bytes = 4096;
    // Longest wait for one request.
    std::chrono::milliseconds request_timeout{5000};
    // read() gives up after this many completions in a row that carried no
    // bytes (a device may legitimately return short, but not nothing
    // forever).
    std::uint32_t max_empty_completions = 64;
};

class RngDriver
{
  public:
    static Result<RngDriver> open(const std::string& socket_path, const RngOptions& options,
                                  Logger logger);
    // On a connected driver that has not been started yet.
    static Result<RngDriver> start(VhostUserDriver driver, const RngOptions& options);

    [[nodiscard]] VhostUserDriver& driver() noexcept { return driver_; }

    // Exactly `bytes` bytes of entropy, requested in chunks.
    Result<std::vector<std::byte>> read(std::size_t bytes);

    // One request for `bytes` (1 .. 2^32 - 1) bytes: what the device
    // returned, which may be fewer.
    Result<std::vector<std::byte>> request(std::uint32_t bytes);

  private:
    RngDriver(VhostUserDriver driver, const RngOptions& options);

    VhostUserDriver driver_;
    RngOptions options_;
};

} // namespace vl::test_driver
