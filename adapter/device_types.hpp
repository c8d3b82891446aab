// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vl::adapter
{

// What an adapter-built config space is made from (see DeviceType::adapter_config).
struct ConfigInputs {
    std::string_view tag;      // --tag (types with a tag field)
    std::uint32_t num_queues;  // queues the kernel device gets
    std::uint32_t queue_pairs; // receive/transmit pairs (types that count pairs), else 0
};

// What the adapter knows about a kind of device: its virtio id, its config
// space (fetched from the back-end, or built by the adapter for back-ends
// that leave it to the front-end), the device feature bits the type
// defines, and defaults for its queues and DMA window. Anything else comes
// from the back-end itself.
struct DeviceType {
    std::string_view name;
    std::uint32_t virtio_id;   // 0 for "generic": --virtio-id is required
    std::uint32_t config_size; // bytes of virtio config space the driver may read
    std::uint32_t num_queues;  // used when the back-end has no MQ
    std::uint32_t queue_size;  // default ring size
    std::uint32_t window_mib;  // default DMA window
    // Every request is answered promptly (a disk), as opposed to buffers
    // posted for the device to fill when something happens (input events,
    // console input): only then does a request pending for long mean the
    // back-end is stuck, and the stall watchdog apply.
    bool prompt_requests;
    std::string_view description;
    // Device feature bits (0..23 and 50..63) the virtio spec defines for
    // this type; a back-end offering others is not this type of device.
    std::uint64_t device_features = ~std::uint64_t{0};
    // Defined bits that need a front-end's help the adapter does not give
    // (a control queue it would have to serve, config fields it does not
    // fill): never offered to the driver.
    std::uint64_t withheld_features = 0;
    // Most queues the adapter can wire for this type (0: the transport's
    // limit).
    std::uint32_t max_queues = 0;
    // Fewest queues the driver works with (fs: the high-priority queue and
    // a request queue; net: receive and transmit).
    std::uint32_t min_queues = 1;
    // The type's queues come in receive/transmit pairs (net): -qn and the
    // back-end's queue count (GET_QUEUE_NUM, as vhost-user front-ends read
    // it for net) count pairs, one by default. More than one pair needs the
    // back-end's `multiqueue_feature` and a control queue after the data
    // queues, which the adapter serves itself and offers with
    // `control_queue_feature` (a vhost-user back-end never sees it).
    bool counts_queue_pairs = false;
    // Size of the config space's tag field (--tag); 0: the type has none.
    std::uint32_t tag_size = 0;
    // Set for types whose back-ends do not provide the config space (as for
    // QEMU's vhost-user-fs and vhost-user-net, the front-end fills it):
    // builds the config_size bytes. nullptr: the back-end's (GET_CONFIG).
    std::vector<std::byte> (*adapter_config)(const ConfigInputs&) = nullptr;
    // See counts_queue_pairs (device feature bit numbers; 0: none).
    unsigned multiqueue_feature = 0;
    unsigned control_queue_feature = 0;
};

// Looks up a name or an alias (the original adapter's vhublk, vhuinput,
// vhurng, vrng, ...); nullptr if unknown.
const DeviceType* find_device_type(std::string_view name);

std::span<const DeviceType> device_types();

// "blk|input|rng|..." for messages.
std::string device_type_names();

// Whether the Linux driver of virtio device `virtio_id`, having accepted
// `driver_features`, busy-waits for the device right after DRIVER_OK: it
// puts a buffer in a queue and spins (with a spinlock held or interrupts
// off) until the device has used it, instead of sleeping until the
// interrupt. Its rings must be in the back-end's hands before the driver
// leaves its DRIVER_OK status write, or its CPU spins, lock held, through
// the whole of stage 3 (seconds for many queues on a busy machine), and
// any other CPU that sends on that queue meanwhile spins for the lock.
bool driver_polls_device(std::uint32_t virtio_id, std::uint64_t driver_features);

} // namespace vl::adapter
