// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "base/log.hpp"
#include "base/result.hpp"
#include "virtqueue/descriptor_chain.hpp"

namespace vl::adapter
{

// virtio-net's control queue (virtio 1.2, 5.1.6.5). A request is
//   u8 class; u8 command; command data...   (device-readable)
//   u8 ack                                   (device-writable)
// and the device answers with VIRTIO_NET_OK or VIRTIO_NET_ERR in the ack.
namespace net
{
inline constexpr std::uint8_t kAckOk = 0;  // VIRTIO_NET_OK
inline constexpr std::uint8_t kAckErr = 1; // VIRTIO_NET_ERR

inline constexpr std::uint8_t kClassMq = 4;        // VIRTIO_NET_CTRL_MQ
inline constexpr std::uint8_t kCmdVqPairsSet = 0;  // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET
inline constexpr std::uint16_t kMinPairs = 1;      // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN
inline constexpr std::uint16_t kMaxPairs = 0x8000; // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX

// Longest request (header and data) read; the only command served has 4 bytes.
inline constexpr std::uint32_t kMaxRequest = 64;
} // namespace net

// The commands of virtio-net's control queue that the adapter serves when
// it offers the queue (a vhost-user back-end never sees it: the front-end
// serves it, as QEMU does for vhost-user-net). The adapter offers the
// control queue only with VIRTIO_NET_F_MQ, so the one command a driver may
// send is VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET (le16 pairs, 1..max_virtqueue_pairs):
// the driver uses that many receive/transmit pairs from then on. Everything
// else (a short header, another class or command, data of the wrong size,
// a pair count out of range, a back-end that refuses) is answered with
// VIRTIO_NET_ERR; a request without a writable byte gets no answer (the
// used length says 0). Nothing a driver writes can make it fail otherwise.
class NetControl
{
  public:
    // Takes the driver's choice of `pairs` receive/transmit pairs (to be
    // enabled in the back-end, the others disabled); an error is answered
    // with VIRTIO_NET_ERR. Called where serve() is: it must not block.
    using SetPairs = std::function<Status(std::uint16_t pairs)>;

    NetControl(std::uint16_t max_pairs, SetPairs set_pairs, Logger log);

    // Serves one request; returns the bytes written to its writable part
    // (1, or 0 when it has none), for the used element.
    std::uint32_t serve(const virtq::DescriptorChain& request);

    [[nodiscard]] std::uint16_t max_pairs() const noexcept { return max_pairs_; }

  private:
    // The ack for class/command with `data`, and a description for the log.
    std::uint8_t execute(std::uint8_t klass, std::uint8_t command, std::span<const std::byte> data,
                         std::string& what);

    std::uint16_t max_pairs_;
    SetPairs set_pairs_;
    Logger log_;
};

} // namespace vl::adapter
