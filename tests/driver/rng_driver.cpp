// SPDX-License-Identifier: Apache-2.0
#include "rng_driver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <limits>

namespace vl::test_driver
{

RngDriver::RngDriver(VhostUserDriver driver, const RngOptions& options)
    : driver_(std::move(driver)), options_(options)
{
}

Result<RngDriver> RngDriver::open(const std::string& socket_path, const RngOptions& options,
                                  Logger logger)
{
    VL_TRY_ASSIGN(VhostUserDriver driver,
                  VhostUserDriver::connect(socket_path, options.connect, std::move(logger)));
    auto rng = start(std::move(driver), options);
    if (!rng)
        return rng.error().wrap("virtio-rng back-end " + socket_path);
    return rng;
}

Result<RngDriver> RngDriver::start(VhostUserDriver driver, const RngOptions& options)
{
    if (options.chunk_bytes == 0)
        return Error("virtio-rng: the chunk size must be at least 1 byte", EINVAL);
    StartOptions start;
    start.device_features = 0; // virtio-rng defines no feature bits
    start.queue_count = 1;
    start.queue_size = options.queue_size;
    start.event_idx = options.event_idx;
    start.indirect_desc = false; // one buffer per request: nothing to gain
    VL_TRY(driver.start(start));
    return RngDriver(std::move(driver), options);
}

Result<std::vector<std::byte>> RngDriver::request(std::uint32_t bytes)
{
    if (bytes == 0)
        return Error("virtio-rng: a request needs at least 1 byte", EINVAL);
    VL_TRY_ASSIGN(Buffer buffer, driver_.allocate(bytes));
    const virtq::GuestBuffer writable = buffer.whole();
    VL_TRY_ASSIGN(std::uint16_t head, driver_.submit(0, {}, std::span(&writable, 1)));
    auto used = driver_.wait_used(0, options_.request_timeout);
    if (!used)
        return used.error().wrap(fmt::format("virtio-rng request for {} bytes", bytes));
    if (used->head != head) // one request in flight and a validated ring: cannot happen
        return Error(fmt::format("virtio-rng: completed head {}, submitted {}", used->head, head),
                     EPROTO);
    auto filled = buffer.bytes().first(used->len); // get_used() checked len <= bytes
    return std::vector<std::byte>(filled.begin(), filled.end());
}

Result<std::vector<std::byte>> RngDriver::read(std::size_t bytes)
{
    std::vector<std::byte> out;
    out.reserve(bytes);
    std::uint32_t empty_in_a_row = 0;
    while (out.size() < bytes) {
        const auto ask = static_cast<std::uint32_t>(
            std::min<std::size_t>(bytes - out.size(), options_.chunk_bytes));
        VL_TRY_ASSIGN(std::vector<std::byte> got, request(ask));
        if (got.empty()) {
            if (++empty_in_a_row >= options_.max_empty_completions)
                return Error(fmt::format("virtio-rng: {} requests in a row came back empty "
                                         "after {} of {} bytes",
                                         empty_in_a_row, out.size(), bytes),
                             EIO);
            continue;
        }
        empty_in_a_row = 0;
        out.insert(out.end(), got.begin(), got.end());
    }
    return out;
}

} // namespace vl::test_driver
