// SPDX-License-Identifier: Apache-2.0
#include "device_types.hpp"

#include <linux/virtio_ids.h>

#include <array>
#include <utility>

namespace vl::adapter {

namespace {

// Config sizes are those of the virtio spec's device configuration layouts
// (the parts a driver may read). Windows hold the rings and the bounce
// buffers of all requests in flight.
constexpr std::array kTypes = {
    DeviceType{"blk", VIRTIO_ID_BLOCK, 60, 1, 256, 16, true, "block device (virtio-blk)"},
    DeviceType{"input", VIRTIO_ID_INPUT, 136, 2, 64, 1, false, "input device (virtio-input)"},
    DeviceType{"rng", VIRTIO_ID_RNG, 0, 1, 64, 1, false, "entropy source (virtio-rng)"},
    DeviceType{"console", VIRTIO_ID_CONSOLE, 12, 2, 128, 4, false, "console (virtio-console)"},
    DeviceType{"gpio", VIRTIO_ID_GPIO, 8, 2, 64, 1, false, "GPIO controller (virtio-gpio)"},
    DeviceType{"sound", VIRTIO_ID_SOUND, 16, 4, 64, 8, false, "sound card (virtio-snd)"},
    DeviceType{"can", VIRTIO_ID_CAN, 8, 3, 64, 1, false, "CAN controller (virtio-can)"},
    DeviceType{"vsock", VIRTIO_ID_VSOCK, 8, 3, 128, 4, false, "socket device (virtio-vsock)"},
    DeviceType{"i2c", VIRTIO_ID_I2C_ADAPTER, 0, 1, 64, 1, true, "I2C adapter (virtio-i2c)"},
    DeviceType{"fs", VIRTIO_ID_FS, 40, 2, 128, 16, false, "file system (virtio-fs)"},
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

std::span<const DeviceType> device_types() { return kTypes; }

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

} // namespace vl::adapter
