// SPDX-License-Identifier: Apache-2.0
#include "device_types.hpp"

#include <linux/virtio_ids.h>

#include <array>
#include <cstddef>
#include <utility>

namespace vl::adapter
{

namespace
{

constexpr std::uint64_t bit(unsigned n)
{
    return std::uint64_t{1} << n;
}
// Bits first..last.
constexpr std::uint64_t bits(unsigned first, unsigned last)
{
    return (bit(last) - bit(first)) | bit(last);
}

void put_le(std::span<std::byte> out, std::size_t offset, std::uint64_t value, std::size_t size)
{
    for (std::size_t i = 0; i < size; ++i)
        out[offset + i] = static_cast<std::byte>(value >> (8 * i));
}

// virtio-fs (spec 5.11.4): tag[36], le32 num_request_queues, le32
// notify_buf_size (only with VIRTIO_FS_F_NOTIFICATION, which is withheld).
// Queue 0 is the high-priority queue, the rest are request queues. A tag of
// exactly 36 bytes has no terminating NUL, as the spec allows.
constexpr std::size_t kFsTagSize = 36;
std::vector<std::byte> fs_config(const ConfigInputs& in)
{
    std::vector<std::byte> config(40);
    std::span out(config);
    for (std::size_t i = 0; i < in.tag.size() && i < kFsTagSize; ++i)
        out[i] = static_cast<std::byte>(in.tag[i]);
    put_le(out, kFsTagSize, in.num_queues > 1 ? in.num_queues - 1 : 0, 4);
    return config;
}

// virtio-net (spec 5.1.4): mac[6], le16 status, le16 max_virtqueue_pairs,
// le16 mtu. MAC and MTU are withheld (the driver picks a random MAC), so
// only the status (link up) and the pair count (read with MQ) mean anything.
constexpr std::uint16_t kNetLinkUp = 1;
std::vector<std::byte> net_config(const ConfigInputs& in)
{
    std::vector<std::byte> config(12);
    put_le(config, 6, kNetLinkUp, 2);
    put_le(config, 8, in.queue_pairs, 2);
    return config;
}

// Device feature bits defined by the virtio spec (1.3 draft) per type.
constexpr std::uint64_t kBlkFeatures = bits(0, 2) | bits(4, 7) | bits(9, 17);
// 0-3, 5-23 and 51-63 (58 is reserved); see the spec's 5.1.3.
constexpr std::uint64_t kNetFeatures = bits(0, 3) | bits(5, 23) | bits(51, 57) | bits(59, 63);
// The control queue and what needs it (CTRL_GUEST_OFFLOADS 2, CTRL_VQ 17,
// CTRL_RX 18, CTRL_VLAN 19, CTRL_RX_EXTRA 20, GUEST_ANNOUNCE 21, MQ 22,
// CTRL_MAC_ADDR 23, DEVICE_STATS 51, (VQ_)NOTF_COAL 52-53, HASH_REPORT 57,
// RSS 60, RSC_EXT 61), and config fields the adapter leaves empty (MTU 3,
// MAC 5, STANDBY 62, SPEED_DUPLEX 63). A vhost-user front-end serves the
// control queue itself (the back-end never sees it): the adapter does, for
// multiqueue only, and then offers CTRL_VQ and MQ (device_plan.cpp); the
// other commands stay withheld.
constexpr std::uint64_t kNetWithheld =
    bit(2) | bit(3) | bit(5) | bits(17, 23) | bits(51, 53) | bit(57) | bits(60, 63);
constexpr unsigned kNetFeatureCtrlVq = 17;
constexpr unsigned kNetFeatureMq = 22;

// Config sizes are those of the virtio spec's device configuration layouts
// (the parts a driver may read). Windows hold the rings and the bounce
// buffers of all requests in flight.
constexpr std::array kTypes = {
    DeviceType{"blk", VIRTIO_ID_BLOCK, 60, 1, 256, 16, true, "block device (virtio-blk)",
               kBlkFeatures},
    DeviceType{"input", VIRTIO_ID_INPUT, 136, 2, 64, 1, false, "input device (virtio-input)", 0},
    DeviceType{"rng", VIRTIO_ID_RNG, 0, 1, 64, 1, false, "entropy source (virtio-rng)", 0},
    DeviceType{"console", VIRTIO_ID_CONSOLE, 12, 2, 128, 4, false, "console (virtio-console)",
               bits(0, 2)},
    DeviceType{"gpio", VIRTIO_ID_GPIO, 8, 2, 64, 1, false, "GPIO controller (virtio-gpio)", bit(0)},
    DeviceType{"sound", VIRTIO_ID_SOUND, 16, 4, 64, 8, false, "sound card (virtio-snd)", bit(0)},
    DeviceType{"can", VIRTIO_ID_CAN, 8, 3, 64, 1, false, "CAN controller (virtio-can)", bits(0, 3)},
    DeviceType{"vsock", VIRTIO_ID_VSOCK, 8, 3, 128, 4, false, "socket device (virtio-vsock)",
               bits(0, 2)},
    DeviceType{"i2c", VIRTIO_ID_I2C_ADAPTER, 0, 1, 64, 1, true, "I2C adapter (virtio-i2c)", bit(0)},
    DeviceType{"fs", VIRTIO_ID_FS, 40, 2, 128, 16, false, "file system (virtio-fs, --tag)", bit(0),
               /*withheld: NOTIFICATION*/ bit(0), 0, 2, false, kFsTagSize, fs_config},
    DeviceType{"net", VIRTIO_ID_NET, 12, 2, 256, 16, false, "network interface (virtio-net)",
               kNetFeatures, kNetWithheld, 0, 2, true, 0, net_config, kNetFeatureMq,
               kNetFeatureCtrlVq},
    DeviceType{"generic", 0, 0, 1, 64, 4, false, "any virtio device (--virtio-id N)"},
};

// Names used by the original virtio-loopback-adapter, so its users can
// switch without rewriting their scripts.
constexpr std::array<std::pair<std::string_view, std::string_view>, 9> kAliases = {{
    {"vhublk", "blk"},
    {"vhuinput", "input"},
    {"vhurng", "rng"},
    {"vrng", "rng"},
    {"vhusnd", "sound"},
    {"vhugpio", "gpio"},
    {"vhucan", "can"},
    {"vhuconsole", "console"},
    {"vhuvsock", "vsock"},
}};

} // namespace

std::span<const DeviceType> device_types()
{
    return kTypes;
}

const DeviceType* find_device_type(std::string_view name)
{
    for (const auto& [alias, canonical] : kAliases)
        if (alias == name)
            name = canonical;
    for (const auto& type : kTypes)
        if (type.name == name)
            return &type;
    return nullptr;
}

std::string device_type_names()
{
    std::string out;
    for (const auto& type : kTypes)
        out += (out.empty() ? "" : "|") + std::string(type.name);
    return out;
}

bool driver_polls_device(std::uint32_t virtio_id, std::uint64_t driver_features)
{
    // From Linux 6.1's drivers: virtio_console's __send_control_msg
    // (spinlock held; DEVICE_READY at probe) and __send_to_port
    // (interrupts off: hvc output); virtio_net's virtnet_send_command on
    // the control queue (VIRTIO_NET_F_CTRL_VQ, bit 17: net multiqueue,
    // whose control queue the adapter serves on its own thread, or a
    // generic device); virtio_iommu's __viommu_sync_req (interrupts off).
    // virtio_crypto's control queue sleeps on a completion there.
    constexpr std::uint64_t kNetCtrlVq = bit(17);
    switch (virtio_id) {
    case VIRTIO_ID_CONSOLE:
    case VIRTIO_ID_IOMMU:
        return true;
    case VIRTIO_ID_NET:
        return (driver_features & kNetCtrlVq) != 0;
    default:
        return false;
    }
}

} // namespace vl::adapter
