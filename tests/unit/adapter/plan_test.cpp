// SPDX-License-Identifier: Apache-2.0
// What the adapter makes of a back-end's offer before anything reaches the
// kernel: features checked against the type, queue counts against the
// transport's limit, config spaces from the back-end or built here (fs, net).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "device_plan.hpp"
#include "options.hpp"

namespace vl::adapter
{
namespace
{

constexpr std::uint64_t bit(unsigned n)
{
    return std::uint64_t{1} << n;
}
constexpr std::uint64_t kVersion1 = bit(32);
constexpr std::uint64_t kProtocolFeatures = bit(30); // vhost-user, a transport bit

DeviceSpec spec_for(std::vector<std::string> args)
{
    static char program[] = "virtio-loopback-adapter";
    std::vector<char*> argv{program};
    for (auto& a : args)
        argv.push_back(a.data());
    auto parsed = parse_command_line(static_cast<int>(argv.size()), argv.data());
    EXPECT_TRUE(parsed.ok()) << parsed.error().message();
    return parsed.ok() ? parsed->options.devices.at(0) : DeviceSpec{};
}

std::string plan_error(const DeviceSpec& spec, const BackendOffer& offer)
{
    auto plan = plan_device(spec, offer);
    EXPECT_FALSE(plan.ok());
    return plan.ok() ? "" : plan.error().message();
}

TEST(Plan, FsConfigIsBuiltFromTheTagAndQueues)
{
    auto spec = spec_for({"-s", "/run/vfs.sock", "-d", "fs", "--tag", "share", "-qn", "3"});
    EXPECT_FALSE(config_from_backend(spec));
    auto plan = plan_device(spec, {kVersion1 | kProtocolFeatures, std::nullopt, std::nullopt});
    ASSERT_TRUE(plan.ok()) << plan.error().message();
    EXPECT_EQ(plan->num_queues, 3u);
    ASSERT_EQ(plan->config.size(), 40u); // tag[36], le32 num_request_queues
    EXPECT_EQ(std::memcmp(plan->config.data(), "share\0", 6), 0);
    EXPECT_EQ(plan->config[36], std::byte{2}); // hiprio + 2 request queues
    EXPECT_EQ(plan->config[39], std::byte{0});
    EXPECT_EQ(plan->features, kVersion1); // vhost-user's own bit is not the driver's
}

TEST(Plan, FsTagFillsTheWholeField)
{
    const std::string tag(36, 't');
    auto spec = spec_for({"-s", "/s", "-d", "fs", "--tag", tag});
    auto plan = plan_device(spec, {kVersion1, std::nullopt, std::nullopt});
    ASSERT_TRUE(plan.ok()) << plan.error().message();
    EXPECT_EQ(std::memcmp(plan->config.data(), tag.data(), 36), 0);
    EXPECT_EQ(plan->config[36], std::byte{1}); // default: hiprio + 1 request queue
}

TEST(Plan, FsWithholdsNotification)
{
    auto spec = spec_for({"-s", "/s", "-d", "fs", "--tag", "t"});
    auto plan = plan_device(spec, {kVersion1 | bit(0), std::nullopt, std::nullopt});
    ASSERT_TRUE(plan.ok()) << plan.error().message();
    EXPECT_EQ(plan->features & bit(0), 0u);
}

TEST(Plan, NetIsOnePairWithoutTheControlQueueByDefault)
{
    auto spec = spec_for({"-s", "/s", "-d", "net"});
    // What DPDK's vhost PMD offers, roughly: checksums, MRG_RXBUF, STATUS,
    // CTRL_VQ, CTRL_RX, GUEST_ANNOUNCE, MQ.
    const std::uint64_t offered =
        kVersion1 | bit(0) | bit(1) | bit(15) | bit(16) | bit(17) | bit(18) | bit(21) | bit(22);
    auto plan = plan_device(spec, {offered, 8, std::nullopt});
    ASSERT_TRUE(plan.ok()) << plan.error().message();
    EXPECT_EQ(plan->num_queues, 2u);
    EXPECT_FALSE(plan->control_queue);
    EXPECT_EQ(plan->features, kVersion1 | bit(0) | bit(1) | bit(15) | bit(16));
    ASSERT_EQ(plan->config.size(), 12u);
    EXPECT_EQ(plan->config[6], std::byte{1}); // link up
    EXPECT_EQ(plan->config[8], std::byte{1}); // one pair
}

TEST(Plan, BackendConfigIsUsed)
{
    auto spec = spec_for({"-s", "/s", "-d", "blk"});
    EXPECT_TRUE(config_from_backend(spec));
    std::vector<std::byte> config(60, std::byte{7});
    auto plan = plan_device(spec, {kVersion1 | bit(9) | bit(12), 4, config});
    ASSERT_TRUE(plan.ok()) << plan.error().message();
    EXPECT_EQ(plan->config, config);
    EXPECT_EQ(plan->num_queues, 4u);
}

TEST(Plan, RefusesFeaturesTheTypeDoesNotDefine)
{
    auto spec = spec_for({"-s", "/run/x.sock", "-d", "rng"});
    auto message = plan_error(spec, {kVersion1 | bit(3), std::nullopt, std::nullopt});
    EXPECT_NE(message.find("0x8"), std::string::npos) << message;
    EXPECT_NE(message.find("-d TYPE"), std::string::npos) << message;
    EXPECT_NE(message.find("/run/x.sock"), std::string::npos) << message;
    // blk bit 3 is reserved; bit 58 is reserved for every type.
    plan_error(spec_for({"-s", "/s", "-d", "blk"}), {kVersion1 | bit(3), 1, {}});
    plan_error(spec_for({"-s", "/s", "-d", "net"}), {kVersion1 | bit(58), 1, {}});
    // generic passes anything through.
    auto generic = spec_for({"-s", "/s", "-d", "generic", "--virtio-id", "40"});
    EXPECT_TRUE(
        plan_device(generic, {kVersion1 | bit(3) | bit(58), std::nullopt, std::nullopt}).ok());
}

TEST(Plan, RefusesAShortConfigSpace)
{
    auto spec = spec_for({"-s", "/s", "-d", "input"});
    auto message = plan_error(spec, {kVersion1, std::nullopt, std::vector<std::byte>(40)});
    EXPECT_NE(message.find("40 bytes"), std::string::npos) << message;
    EXPECT_NE(message.find("needs 136"), std::string::npos) << message;
    EXPECT_NE(message.find("-d TYPE"), std::string::npos) << message;
    auto generic =
        spec_for({"-s", "/s", "-d", "generic", "--virtio-id", "40", "--config-size", "16"});
    message = plan_error(generic, {kVersion1, std::nullopt, std::vector<std::byte>(8)});
    EXPECT_NE(message.find("--config-size"), std::string::npos) << message;
    // No CONFIG protocol feature at all.
    message = plan_error(spec, {kVersion1, std::nullopt, std::nullopt});
    EXPECT_NE(message.find("CONFIG protocol feature"), std::string::npos) << message;
}

TEST(Plan, RefusesMoreQueuesThanTheTransportTakes)
{
    auto spec = spec_for({"-s", "/s", "-d", "blk"});
    std::vector<std::byte> config(60);
    auto message = plan_error(spec, {kVersion1, 128, config});
    EXPECT_NE(message.find("128 queues"), std::string::npos) << message;
    EXPECT_NE(message.find("-qn"), std::string::npos) << message;
    // -qn within the limit picks that many of the back-end's.
    auto limited = spec_for({"-s", "/s", "-d", "blk", "-qn", "64"});
    auto plan = plan_device(limited, {kVersion1, 128, config});
    ASSERT_TRUE(plan.ok()) << plan.error().message();
    EXPECT_EQ(plan->num_queues, 64u);
}

TEST(Plan, RefusesFewerQueuesThanTheDriverNeeds)
{
    // virtio-fs needs the high-priority queue and a request queue.
    auto message = plan_error(spec_for({"-s", "/s", "-d", "fs", "--tag", "t", "-qn", "1"}),
                              {kVersion1, std::nullopt, std::nullopt});
    EXPECT_NE(message.find("at least 2 queues, not 1"), std::string::npos) << message;
    EXPECT_NE(message.find("-qn 2"), std::string::npos) << message;
    // net counts pairs: one pair is two queues.
    auto plan = plan_device(spec_for({"-s", "/s", "-d", "net", "-qn", "1"}), {kVersion1, 1, {}});
    ASSERT_TRUE(plan.ok()) << plan.error().message();
    EXPECT_EQ(plan->num_queues, 2u);
    EXPECT_EQ(plan->queue_pairs, 1u);
    EXPECT_FALSE(plan->control_queue);
}

// Multiqueue: -qn counts receive/transmit pairs; the control queue the
// adapter serves comes after them, and CTRL_VQ and MQ are offered.
constexpr std::uint64_t kNetMq = bit(22);
constexpr std::uint64_t kNetCtrlVq = bit(17);

TEST(Plan, NetPairsComeWithTheControlQueue)
{
    // DPDK's vhost PMD: MQ and CTRL_VQ among others, 128 pairs (its library's most).
    const std::uint64_t offered =
        kVersion1 | kProtocolFeatures | bit(0) | bit(15) | kNetCtrlVq | bit(18) | bit(21) | kNetMq;
    auto plan = plan_device(spec_for({"-s", "/s", "-d", "net", "-qn", "2"}), {offered, 128, {}});
    ASSERT_TRUE(plan.ok()) << plan.error().message();
    EXPECT_EQ(plan->num_queues, 5u); // rx0 tx0 rx1 tx1 control
    EXPECT_EQ(plan->queue_pairs, 2u);
    ASSERT_TRUE(plan->control_queue);
    EXPECT_EQ(*plan->control_queue, 4u);
    // CTRL_RX and GUEST_ANNOUNCE stay withheld: the adapter does not serve them.
    EXPECT_EQ(plan->features, kVersion1 | bit(0) | bit(15) | kNetCtrlVq | kNetMq);
    EXPECT_EQ(plan->adapter_features, kNetCtrlVq);
    ASSERT_EQ(plan->config.size(), 12u);
    EXPECT_EQ(plan->config[8], std::byte{2}); // max_virtqueue_pairs
    EXPECT_EQ(plan->config[9], std::byte{0});

    // The most the transport holds: 31 pairs and the control queue.
    plan = plan_device(spec_for({"-s", "/s", "-d", "net", "-qn", "31"}), {offered, 128, {}});
    ASSERT_TRUE(plan.ok()) << plan.error().message();
    EXPECT_EQ(plan->num_queues, 63u);
    EXPECT_EQ(*plan->control_queue, 62u);

    // A back-end without CTRL_VQ is fine: the adapter serves the queue.
    plan =
        plan_device(spec_for({"-s", "/s", "-d", "net", "-qn", "2"}), {kVersion1 | kNetMq, 2, {}});
    ASSERT_TRUE(plan.ok()) << plan.error().message();
    EXPECT_EQ(plan->features, kVersion1 | kNetCtrlVq | kNetMq);
}

TEST(Plan, NetPairsAreRefusedWithoutMultiqueue)
{
    // No VIRTIO_NET_F_MQ.
    auto message = plan_error(spec_for({"-s", "/run/n.sock", "-d", "net", "-qn", "2"}),
                              {kVersion1 | kNetCtrlVq, 128, {}});
    EXPECT_NE(message.find("does not offer multiqueue"), std::string::npos) << message;
    EXPECT_NE(message.find("-qn 1"), std::string::npos) << message;
    EXPECT_NE(message.find("queues=2"), std::string::npos) << message;
    EXPECT_NE(message.find("/run/n.sock"), std::string::npos) << message;
    // MQ, but no MQ protocol feature: its pair count is unknown.
    message = plan_error(spec_for({"-s", "/s", "-d", "net", "-qn", "2"}),
                         {kVersion1 | kNetMq, std::nullopt, {}});
    EXPECT_NE(message.find("MQ protocol feature"), std::string::npos) << message;
    EXPECT_NE(message.find("-qn 1"), std::string::npos) << message;
}

TEST(Plan, NetPairsAreRefusedAboveTheBackendsOrTheTransports)
{
    auto message =
        plan_error(spec_for({"-s", "/s", "-d", "net", "-qn", "4"}), {kVersion1 | kNetMq, 2, {}});
    EXPECT_NE(message.find("2 receive/transmit pair(s)"), std::string::npos) << message;
    EXPECT_NE(message.find("-qn 2 or less"), std::string::npos) << message;
    message =
        plan_error(spec_for({"-s", "/s", "-d", "net", "-qn", "32"}), {kVersion1 | kNetMq, 128, {}});
    EXPECT_NE(message.find("at most 31"), std::string::npos) << message;
    EXPECT_NE(message.find("-qn 31"), std::string::npos) << message;
}

} // namespace
} // namespace vl::adapter

namespace vl::adapter
{
namespace
{

// The drivers that busy-wait for the device after DRIVER_OK get their rings
// served before the adapter answers it (DeviceLink::on_status()).
TEST(Plan, DriversThatPollTheDevice)
{
    EXPECT_TRUE(driver_polls_device(find_device_type("console")->virtio_id, 0));
    EXPECT_TRUE(driver_polls_device(23, 0)); // virtio-iommu, through "generic"
    EXPECT_FALSE(driver_polls_device(find_device_type("net")->virtio_id, 0));
    EXPECT_TRUE(driver_polls_device(find_device_type("net")->virtio_id, kNetCtrlVq));
    for (const char* name : {"blk", "input", "rng", "fs", "gpio", "sound", "vsock"})
        EXPECT_FALSE(driver_polls_device(find_device_type(name)->virtio_id, ~std::uint64_t{0}))
            << name;
}

} // namespace
} // namespace vl::adapter
