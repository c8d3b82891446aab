// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/result.hpp"
#include "options.hpp"

namespace vl::adapter
{

// What a back-end reported in stage 1.
struct BackendOffer {
    std::uint64_t features = 0;                   // GET_FEATURES
    std::optional<std::uint64_t> num_queues;      // GET_QUEUE_NUM (protocol feature MQ)
    std::optional<std::vector<std::byte>> config; // GET_CONFIG (protocol feature CONFIG)
};

// What the kernel device is created with.
struct DevicePlan {
    std::uint64_t features = 0; // offered to the driver (device and kept transport bits)
    std::uint32_t num_queues = 0;
    std::vector<std::byte> config;
    // Types whose queues come in pairs (net): receive/transmit pairs; 0 otherwise.
    std::uint32_t queue_pairs = 0;
    // The queue the adapter serves itself (net's control queue, with more
    // than one pair): its index, after the data queues, when the driver
    // takes the multiqueue feature.
    std::optional<std::uint32_t> control_queue;
    // Feature bits in `features` that the adapter implements itself, so the
    // back-end neither offers nor is told them (net: CTRL_VQ).
    std::uint64_t adapter_features = 0;
};

// The transport feature bits (24..49) the kernel device may offer.
std::uint64_t transport_features_kept();

// Checks a back-end's offer against the device type and options and
// decides what the kernel device gets. Pure: nothing has touched the
// kernel yet, and on an error nothing will. Errors name the option (or the
// back-end's setting) that fixes them.
Result<DevicePlan> plan_device(const DeviceSpec& spec, const BackendOffer& offer);

} // namespace vl::adapter

namespace vl::adapter
{

// Whether the device's config space is read from the back-end (GET_CONFIG)
// rather than built by the adapter or absent.
bool config_from_backend(const DeviceSpec& spec);

} // namespace vl::adapter
