// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.hpp"
#include "loopback/control_file.hpp"
#include "virtqueue/descriptor_chain.hpp"

namespace vl::testdev {

// The device-specific half of the test device: what it offers at creation
// and how it answers one request.
class RequestHandler {
public:
    virtual ~RequestHandler() = default;
    [[nodiscard]] virtual loopback::DeviceParams params() const = 0;
    // Longest chain a driver may send (indirect tables included).
    [[nodiscard]] virtual std::uint32_t max_chain_len() const { return 0; }
    // Serves one request on queue `queue`; returns the bytes written into
    // the chain's device-writable part (the used length).
    virtual std::uint32_t handle(std::uint32_t queue, const virtq::DescriptorChain& chain) = 0;
};

// An rng that fills every buffer with `pattern`: the test reads /dev/hwrng
// and checks that every byte is the pattern.
std::unique_ptr<RequestHandler> make_rng(std::uint8_t pattern);

// A RAM-backed disk of `bytes` (a multiple of 512) with `queues` queues;
// size_max, if not 0, is offered as VIRTIO_BLK_F_SIZE_MAX (the largest
// data segment the driver may send).
std::unique_ptr<RequestHandler> make_ram_blk(std::uint64_t bytes, std::uint32_t queues,
                                             std::uint32_t queue_size, std::uint32_t size_max = 0);

} // namespace vl::testdev
