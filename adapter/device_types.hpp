// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace vl::adapter {

// What the adapter knows about a kind of device: its virtio id, how many
// config bytes to fetch from the back-end, and defaults for its queues and
// DMA window. Anything else comes from the back-end itself.
struct DeviceType {
    std::string_view name;
    std::uint32_t virtio_id;       // 0 for "generic": --virtio-id is required
    std::uint32_t config_size;     // bytes of virtio config space
    std::uint32_t num_queues;      // used when the back-end has no MQ
    std::uint32_t queue_size;      // default ring size
    std::uint32_t window_mib;      // default DMA window
    // Every request is answered promptly (a disk), as opposed to buffers
    // posted for the device to fill when something happens (input events,
    // console input): only then does a request pending for long mean the
    // back-end is stuck, and the stall watchdog apply.
    bool prompt_requests;
    std::string_view description;
};

// Looks up a name or an alias (the original adapter's vhublk, vhuinput,
// vhurng, vrng, ...); nullptr if unknown.
const DeviceType* find_device_type(std::string_view name);

std::span<const DeviceType> device_types();

// "blk|input|rng|..." for messages.
std::string device_type_names();

} // namespace vl::adapter
