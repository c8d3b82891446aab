// SPDX-License-Identifier: Apache-2.0
#include "net_control.hpp"

#include <fmt/format.h>

#include <array>
#include <utility>

namespace vl::adapter
{

NetControl::NetControl(std::uint16_t max_pairs, SetPairs set_pairs, Logger log)
    : max_pairs_(max_pairs), set_pairs_(std::move(set_pairs)), log_(std::move(log))
{
}

std::uint32_t NetControl::serve(const virtq::DescriptorChain& request)
{
    std::string what;
    std::uint8_t ack = net::kAckErr;
    const std::uint32_t length = request.readable_len();
    if (length < 2) {
        what = fmt::format("a request of {} byte(s), shorter than its class and command", length);
    } else if (length > net::kMaxRequest) {
        what = fmt::format("a request of {} bytes (at most {} are expected)", length,
                           net::kMaxRequest);
    } else {
        // Copied once: the driver's buffers may change under us.
        std::array<std::byte, net::kMaxRequest> bytes{};
        const std::size_t got = request.read_into(std::span(bytes).first(length));
        const auto klass = std::to_integer<std::uint8_t>(bytes[0]);
        const auto command = std::to_integer<std::uint8_t>(bytes[1]);
        ack = execute(klass, command, std::span<const std::byte>(bytes).subspan(2, got - 2), what);
    }
    if (request.writable_len() == 0) {
        log_.warn("control queue: {}; the request has no byte for the answer", what);
        return 0;
    }
    const std::byte answer{ack};
    request.write_from(std::span(&answer, 1));
    if (ack == net::kAckOk)
        log_.info("control queue: {}", what);
    else
        log_.warn("control queue: {}: answered VIRTIO_NET_ERR", what);
    return 1;
}

std::uint8_t NetControl::execute(std::uint8_t klass, std::uint8_t command,
                                 std::span<const std::byte> data, std::string& what)
{
    if (klass != net::kClassMq || command != net::kCmdVqPairsSet) {
        what = fmt::format("class {} command {} is not served (only MQ_VQ_PAIRS_SET, class {} "
                           "command {}, is offered)",
                           klass, command, net::kClassMq, net::kCmdVqPairsSet);
        return net::kAckErr;
    }
    if (data.size() != 2) {
        what = fmt::format("MQ_VQ_PAIRS_SET with {} byte(s) of data instead of 2", data.size());
        return net::kAckErr;
    }
    const auto pairs = static_cast<std::uint16_t>(std::to_integer<unsigned>(data[0]) |
                                                  std::to_integer<unsigned>(data[1]) << 8);
    if (pairs < net::kMinPairs || pairs > max_pairs_) {
        what = fmt::format("MQ_VQ_PAIRS_SET {}: out of range (1..{})", pairs, max_pairs_);
        return net::kAckErr;
    }
    if (Status s = set_pairs_(pairs); !s.ok()) {
        what = fmt::format("MQ_VQ_PAIRS_SET {}: {}", pairs, s.error().message());
        return net::kAckErr;
    }
    what = fmt::format("MQ_VQ_PAIRS_SET {}: the driver uses {} receive/transmit pair(s) of {}",
                       pairs, pairs, max_pairs_);
    return net::kAckOk;
}

} // namespace vl::adapter
