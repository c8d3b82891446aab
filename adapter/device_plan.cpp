// SPDX-License-Identifier: Apache-2.0
#include "device_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cerrno>

#include "loopback/control_file.hpp"
#include "virtqueue/ring.hpp"

namespace vl::adapter
{

namespace
{

constexpr std::uint64_t bit(unsigned n)
{
    return std::uint64_t{1} << n;
}

constexpr unsigned kFeatureVersion1 = 32;
// Transport feature bits (24..49); device bits (0..23, 50..63) are the
// type's business.
constexpr std::uint64_t kTransportBits = ((bit(50) - 1) & ~(bit(24) - 1));
constexpr std::uint64_t kTransportBitsKept =
    bit(virtq::kFeatureIndirectDesc) | bit(virtq::kFeatureEventIdx) | bit(kFeatureVersion1);

Result<std::uint32_t> choose_queues(const DeviceSpec& spec, const BackendOffer& offer)
{
    const DeviceType& type = *spec.type;
    const std::uint32_t limit = type.max_queues ? type.max_queues : VIRTIO_LOOPBACK_MAX_QUEUES;
    if (spec.num_queues && *spec.num_queues > limit)
        return Error(fmt::format("--num-queues {} is more than a {} device can have here ({}{}): "
                                 "give -qn {} or less",
                                 *spec.num_queues, type.name, limit,
                                 type.max_queues ? "" : ", the transport's limit", limit),
                     EINVAL);
    if (!offer.num_queues)
        return spec.num_queues.value_or(type.num_queues);
    if (*offer.num_queues == 0)
        return Error(fmt::format("the back-end at {} reports 0 queues", spec.socket), EINVAL);
    const std::uint64_t offered = *offer.num_queues;
    if (spec.num_queues)
        return static_cast<std::uint32_t>(std::min<std::uint64_t>(*spec.num_queues, offered));
    if (type.max_queues)
        return static_cast<std::uint32_t>(std::min<std::uint64_t>(type.max_queues, offered));
    if (offered > limit)
        return Error(fmt::format("the back-end at {} offers {} queues, more than the transport's "
                                 "limit of {}: give -qn N (--num-queues, at most {}), or start "
                                 "the back-end with fewer queues",
                                 spec.socket, offered, limit, limit),
                     EINVAL);
    return static_cast<std::uint32_t>(offered);
}

struct QueuePlan {
    std::uint32_t num_queues = 0;
    std::uint32_t queue_pairs = 0;
    std::optional<std::uint32_t> control_queue;
};

// Types with receive/transmit pairs (net): -qn counts pairs, one by
// default (a back-end's count is its most, not a wish: DPDK's vhost library
// reports 128 whatever its port has). More than one pair needs the
// back-end's multiqueue feature and as many pairs, and the control queue
// the adapter serves, after the data queues.
Result<QueuePlan> plan_pairs(const DeviceSpec& spec, const BackendOffer& offer)
{
    const DeviceType& type = *spec.type;
    constexpr std::uint32_t kMostPairs = (VIRTIO_LOOPBACK_MAX_QUEUES - 1) / 2;
    const std::uint32_t pairs = spec.num_queues.value_or(1);
    if (pairs > kMostPairs)
        return Error(fmt::format("-qn {}: a {} device has at most {} receive/transmit pairs here "
                                 "(two queues each and a control queue, of the transport's {}): "
                                 "give -qn {} or less",
                                 pairs, type.name, kMostPairs, VIRTIO_LOOPBACK_MAX_QUEUES,
                                 kMostPairs),
                     EINVAL);
    if (pairs == 1)
        return QueuePlan{2, 1, std::nullopt};
    if (!(offer.features & bit(type.multiqueue_feature)))
        return Error(
            fmt::format("-qn {} asks for {} receive/transmit pairs, but the back-end at {} "
                        "does not offer multiqueue (VIRTIO_NET_F_MQ): give -qn 1, or "
                        "start the back-end with several queue pairs (dpdk-testpmd: "
                        "--vdev net_vhost0,iface={},queues={})",
                        pairs, pairs, spec.socket, spec.socket, pairs),
            EINVAL);
    if (!offer.num_queues)
        return Error(fmt::format("-qn {}: the back-end at {} offers multiqueue but not the MQ "
                                 "protocol feature that says how many pairs it has: give -qn 1",
                                 pairs, spec.socket),
                     EINVAL);
    if (pairs > *offer.num_queues)
        return Error(fmt::format("-qn {} is more than the back-end at {} has ({} receive/transmit "
                                 "pair(s)): give -qn {} or less, or start the back-end with more",
                                 pairs, spec.socket, *offer.num_queues, *offer.num_queues),
                     EINVAL);
    return QueuePlan{2 * pairs + 1, pairs, 2 * pairs};
}

Result<QueuePlan> plan_queues(const DeviceSpec& spec, const BackendOffer& offer)
{
    if (spec.type->counts_queue_pairs)
        return plan_pairs(spec, offer);
    VL_TRY_ASSIGN(std::uint32_t queues, choose_queues(spec, offer));
    if (queues < spec.type->min_queues)
        return Error(fmt::format("a {} device needs at least {} queues, not {}: give -qn {} or "
                                 "more (and a back-end that offers as many)",
                                 spec.type->name, spec.type->min_queues, queues,
                                 spec.type->min_queues),
                     EINVAL);
    return QueuePlan{queues, 0, std::nullopt};
}

Result<std::vector<std::byte>> plan_config(const DeviceSpec& spec, const BackendOffer& offer,
                                           const QueuePlan& queues)
{
    const DeviceType& type = *spec.type;
    if (type.adapter_config)
        return type.adapter_config(ConfigInputs{spec.tag, queues.num_queues, queues.queue_pairs});
    if (spec.config_size == 0)
        return std::vector<std::byte>{};
    if (!offer.config)
        return Error(fmt::format("the back-end at {} does not offer the CONFIG protocol feature, "
                                 "which a {} device needs to report its config space{}",
                                 spec.socket, type.name,
                                 type.virtio_id ? "" : " (or give --config-size 0)"),
                     EINVAL);
    if (offer.config->size() < spec.config_size)
        return Error(fmt::format("the back-end at {} has a config space of {} bytes; a {} device "
                                 "needs {}: {}",
                                 spec.socket, offer.config->size(), type.name, spec.config_size,
                                 type.virtio_id ? "is it a " + std::string(type.name) +
                                                      " back-end (check -d TYPE)?"
                                                : std::string("lower --config-size")),
                     EINVAL);
    return *offer.config;
}

} // namespace

std::uint64_t transport_features_kept()
{
    return kTransportBitsKept;
}

bool config_from_backend(const DeviceSpec& spec)
{
    return spec.config_size != 0 && spec.type->adapter_config == nullptr;
}

Result<DevicePlan> plan_device(const DeviceSpec& spec, const BackendOffer& offer)
{
    const DeviceType& type = *spec.type;
    const std::uint64_t device_bits = offer.features & ~kTransportBits;
    if (std::uint64_t unknown = device_bits & ~type.device_features; unknown)
        return Error(fmt::format("the back-end at {} offers device feature bit(s) {:#x} that a {} "
                                 "device does not define: is it a {} back-end? Check -d TYPE, or "
                                 "use -d generic --virtio-id N to pass any features through",
                                 spec.socket, unknown, type.name, type.name),
                     EINVAL);
    DevicePlan plan;
    plan.features =
        (offer.features & (~kTransportBits | kTransportBitsKept)) & ~type.withheld_features;
    VL_TRY_ASSIGN(QueuePlan queues, plan_queues(spec, offer));
    plan.num_queues = queues.num_queues;
    plan.queue_pairs = queues.queue_pairs;
    plan.control_queue = queues.control_queue;
    if (plan.control_queue) {
        // The back-end's multiqueue, and the control queue the adapter serves.
        plan.features |= bit(type.multiqueue_feature) | bit(type.control_queue_feature);
        plan.adapter_features = bit(type.control_queue_feature);
    }
    VL_TRY_ASSIGN(plan.config, plan_config(spec, offer, queues));
    return plan;
}

} // namespace vl::adapter
