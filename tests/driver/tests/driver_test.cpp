// SPDX-License-Identifier: Apache-2.0
// VhostUserDriver against an in-process back-end: negotiation, memory
// sharing, data round trips with every ring-feature combination, and the
// failure paths (full ring, stalled device, dead or silent back-end): each
// must end in a clear error within its timeout, never a hang.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "fake_backend.hpp"
#include "vhost_user_driver.hpp"

namespace vl::test_driver
{
namespace
{

using namespace std::chrono_literals;
using test::FakeBackend;
using test::FakeDevice;
using vhost_user::ProtocolFeature;
using vhost_user::Request;
using Clock = std::chrono::steady_clock;

Logger quiet_logger()
{
    return Logger("driver-test", LogLevel::error);
}

// Copies everything readable into the writable part: a device whose every
// answer can be predicted.
std::optional<std::uint32_t> echo(std::uint32_t, virtq::DescriptorChain& chain)
{
    std::vector<std::byte> in(chain.readable_len());
    chain.read_into(in);
    return static_cast<std::uint32_t>(chain.write_from(in));
}

std::optional<std::uint32_t> hold(std::uint32_t, virtq::DescriptorChain&)
{
    return std::nullopt;
}

FakeDevice echo_device(std::uint32_t queues = 1)
{
    FakeDevice d = test::default_device();
    d.queues = queues;
    d.features = feature_bit(3) | feature_bit(5);
    d.config = std::vector<std::byte>(16, std::byte{0x11});
    d.handle = echo;
    return d;
}

ConnectOptions fast_options()
{
    ConnectOptions o;
    o.reply_timeout = 2s;
    o.memory_bytes = 4 << 20;
    return o;
}

Result<VhostUserDriver> connect(const FakeBackend& backend, ConnectOptions o = fast_options())
{
    return VhostUserDriver::connect(backend.socket_path(), o, quiet_logger());
}

TEST(VhostUserDriver, NegotiatesAndSetsUpQueuesInQemuOrder)
{
    FakeBackend backend(echo_device(2));
    auto d = connect(backend);
    ASSERT_TRUE(d) << d.error().message();
    EXPECT_EQ(d->max_queues(), 2U);
    EXPECT_TRUE(d->has_protocol_feature(ProtocolFeature::reply_ack));
    StartOptions s;
    s.queue_count = 2;
    s.device_features = feature_bit(3) | feature_bit(4); // 4 is not offered
    ASSERT_TRUE(d->start(s));

    using R = Request;
    std::vector<std::uint32_t> expected;
    for (R r : {R::get_features, R::get_protocol_features, R::set_protocol_features,
                R::get_queue_num, R::set_owner, R::set_features, R::set_mem_table})
        expected.push_back(vhost_user::to_code(r));
    for (int q = 0; q < 2; ++q)
        for (R r : {R::set_vring_num, R::set_vring_base, R::set_vring_addr, R::set_vring_call,
                    R::set_vring_kick, R::set_vring_enable})
            expected.push_back(vhost_user::to_code(r));
    EXPECT_EQ(backend.requests(), expected);

    EXPECT_EQ(backend.acked_protocol_features(), kSupportedProtocolFeatures);
    const std::uint64_t acked = backend.acked_features();
    EXPECT_EQ(acked, d->acked_features());
    EXPECT_TRUE(has_feature(acked, 3));
    EXPECT_FALSE(has_feature(acked, 4)); // not offered
    EXPECT_FALSE(has_feature(acked, 5)); // offered but not asked for
    EXPECT_TRUE(has_feature(acked, kFeatureVersion1));
    EXPECT_TRUE(has_feature(acked, virtq::kFeatureEventIdx));
    EXPECT_TRUE(has_feature(acked, virtq::kFeatureIndirectDesc));
    EXPECT_TRUE((acked & vhost_user::kFeatureProtocolFeatures) != 0);
    EXPECT_TRUE(backend.enabled(0) && backend.enabled(1));

    // One region: guest base as configured, user address = our mapping.
    auto regions = backend.regions();
    ASSERT_EQ(regions.size(), 1U);
    EXPECT_EQ(regions[0].guest_phys_addr, ConnectOptions{}.guest_base);
    EXPECT_EQ(regions[0].userspace_addr, d->pool()->user_addr());
    EXPECT_EQ(regions[0].memory_size, 4U << 20);
    EXPECT_EQ(regions[0].mmap_offset, 0U);
}

struct RingCase {
    bool event_idx;
    bool indirect;
};

class RoundTrip : public testing::TestWithParam<RingCase>
{
};

TEST_P(RoundTrip, ManyChainsInFlightComeBackIntact)
{
    FakeBackend backend(echo_device());
    auto d = connect(backend);
    ASSERT_TRUE(d) << d.error().message();
    StartOptions s;
    s.queue_size = 16;
    s.event_idx = GetParam().event_idx;
    s.indirect_desc = GetParam().indirect;
    ASSERT_TRUE(d->start(s));
    EXPECT_EQ(d->event_idx(), GetParam().event_idx);
    EXPECT_EQ(d->indirect_desc(), GetParam().indirect);

    struct Pending {
        Buffer in1, in2, out;
        std::uint8_t tag;
    };
    std::map<std::uint16_t, Pending> pending;
    std::uint32_t completed = 0;
    std::uint8_t tag = 0;
    // 200 chains of 3 buffers through a 16-entry ring: wraps the indices
    // many times and exercises back-pressure.
    while (completed < 200) {
        while (tag < 200 && d->free_descriptors(0) >= (d->indirect_desc() ? 1U : 3U)) {
            Pending p{*d->allocate(100), *d->allocate(28), *d->allocate(128), tag};
            std::memset(p.in1.bytes().data(), tag, 100);
            std::memset(p.in2.bytes().data(), tag ^ 0xff, 28);
            const virtq::GuestBuffer r[] = {p.in1.whole(), p.in2.whole()};
            const virtq::GuestBuffer w[] = {p.out.whole()};
            auto head = d->submit(0, r, w);
            ASSERT_TRUE(head) << head.error().message();
            pending.emplace(*head, std::move(p));
            ++tag;
        }
        auto used = d->wait_used(0, 2s);
        ASSERT_TRUE(used) << used.error().message();
        auto it = pending.find(used->head);
        ASSERT_NE(it, pending.end());
        EXPECT_EQ(used->len, 128U);
        const auto out = it->second.out.bytes();
        EXPECT_EQ(out[0], std::byte{it->second.tag});
        EXPECT_EQ(out[99], std::byte{it->second.tag});
        EXPECT_EQ(out[100], std::byte(it->second.tag ^ 0xff));
        pending.erase(it);
        ++completed;
    }
    EXPECT_EQ(backend.chains_handled(0), 200U);
    EXPECT_EQ(backend.indirect_chains(0), GetParam().indirect ? 200U : 0U);
    auto bases = d->stop();
    ASSERT_TRUE(bases) << bases.error().message();
    EXPECT_EQ(*bases, std::vector<std::uint32_t>{200});
}

INSTANTIATE_TEST_SUITE_P(RingFeatures, RoundTrip,
                         testing::Values(RingCase{true, true}, RingCase{true, false},
                                         RingCase{false, true}, RingCase{false, false}),
                         [](const testing::TestParamInfo<RingCase>& p) {
                             return std::string(p.param.event_idx ? "EventIdx" : "NoEventIdx") +
                                    (p.param.indirect ? "Indirect" : "Direct");
                         });

TEST(VhostUserDriver, WorksWithoutProtocolFeatures)
{
    FakeDevice dev = echo_device();
    dev.protocol_features_bit = false;
    FakeBackend backend(std::move(dev));
    auto d = connect(backend);
    ASSERT_TRUE(d) << d.error().message();
    EXPECT_FALSE(d->max_queues());
    auto config = d->get_config(0, 4);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error().code(), ENOTSUP);
    ASSERT_TRUE(d->start({}));
    auto b = d->allocate(64);
    ASSERT_TRUE(b);
    const virtq::GuestBuffer w[] = {b->whole()};
    ASSERT_TRUE(d->submit(0, {}, w));
    auto used = d->wait_used(0, 2s);
    ASSERT_TRUE(used) << used.error().message();
    for (std::uint32_t code : backend.requests()) {
        EXPECT_NE(code, vhost_user::to_code(Request::get_protocol_features));
        EXPECT_NE(code, vhost_user::to_code(Request::set_vring_enable));
    }
}

TEST(VhostUserDriver, WorksWithoutReplyAckAndReadsConfig)
{
    FakeBackend backend(echo_device());
    ConnectOptions o = fast_options();
    o.protocol_features = vhost_user::bit(ProtocolFeature::config);
    auto d = connect(backend, o);
    ASSERT_TRUE(d) << d.error().message();
    EXPECT_FALSE(d->has_protocol_feature(ProtocolFeature::reply_ack));
    EXPECT_FALSE(d->max_queues()); // MQ not negotiated: no GET_QUEUE_NUM
    auto config = d->get_config(4, 8);
    ASSERT_TRUE(config) << config.error().message();
    EXPECT_EQ(*config, std::vector<std::byte>(8, std::byte{0x11}));
    const std::byte two[] = {std::byte{2}, std::byte{3}};
    ASSERT_TRUE(d->set_config(0, two));
    config = d->get_config(0, 2);
    ASSERT_TRUE(config);
    EXPECT_EQ((*config)[1], std::byte{3});
    // A refused read (beyond the device's config) is an error, not a hang,
    // and leaves the connection usable.
    EXPECT_FALSE(d->get_config(0, 64));
    ASSERT_TRUE(d->start({}));
}

TEST(VhostUserDriver, RefusesWhatCannotWork)
{
    FakeDevice dev = echo_device(2);
    dev.version_1 = false;
    FakeBackend backend(std::move(dev));
    auto d = connect(backend);
    ASSERT_TRUE(d);
    StartOptions s;
    s.queue_count = 3;
    auto too_many = d->start(s);
    ASSERT_FALSE(too_many);
    EXPECT_NE(too_many.error().message().find("back-end has only 2"), std::string::npos);
    s.queue_count = 1;
    s.queue_size = 100;
    EXPECT_FALSE(d->start(s));
    s.queue_size = 64;
    auto legacy = d->start(s);
    ASSERT_FALSE(legacy);
    EXPECT_EQ(legacy.error().code(), ENOTSUP);
    EXPECT_NE(legacy.error().message().find("VERSION_1"), std::string::npos);
    auto b = d->allocate(8);
    ASSERT_TRUE(b);
    const virtq::GuestBuffer w[] = {b->whole()};
    EXPECT_EQ(d->submit(0, {}, w).error().code(), EINVAL); // not started
}

TEST(VhostUserDriver, RefusesBuffersOutsideGuestMemory)
{
    FakeBackend backend(echo_device());
    auto d = connect(backend);
    ASSERT_TRUE(d);
    ASSERT_TRUE(d->start({}));
    const std::uint64_t base = d->pool()->guest_base();
    const std::uint64_t size = d->pool()->size();
    for (virtq::GuestBuffer bad :
         {virtq::GuestBuffer{base - 1, 2}, virtq::GuestBuffer{base + size, 1},
          virtq::GuestBuffer{base + size - 8, 9}, virtq::GuestBuffer{0, 16}}) {
        auto head = d->submit(0, std::span(&bad, 1), {});
        ASSERT_FALSE(head);
        EXPECT_EQ(head.error().code(), EINVAL);
        EXPECT_NE(head.error().message().find("outside guest memory"), std::string::npos);
    }
    EXPECT_EQ(d->in_flight(0), 0U);
    EXPECT_EQ(d->submit(1, {}, {}).error().code(), EINVAL); // no queue 1
}

TEST(VhostUserDriver, FullRingIsEagain)
{
    FakeDevice dev = echo_device();
    dev.handle = hold;
    FakeBackend backend(std::move(dev));
    auto d = connect(backend);
    ASSERT_TRUE(d);
    StartOptions s;
    s.queue_size = 4;
    ASSERT_TRUE(d->start(s));
    auto b = d->allocate(8);
    ASSERT_TRUE(b);
    const virtq::GuestBuffer w[] = {b->whole()};
    for (int i = 0; i < 4; ++i)
        ASSERT_TRUE(d->submit(0, {}, w));
    auto full = d->submit(0, {}, w);
    ASSERT_FALSE(full);
    EXPECT_EQ(full.error().code(), EAGAIN);
    EXPECT_NE(full.error().message().find("queue 0 is full"), std::string::npos);
}

TEST(VhostUserDriver, StalledDeviceTimesOutThenRecovers)
{
    FakeDevice dev = echo_device();
    dev.handle = hold;
    FakeBackend backend(std::move(dev));
    auto d = connect(backend);
    ASSERT_TRUE(d);
    ASSERT_TRUE(d->start({}));
    auto b = d->allocate(8);
    ASSERT_TRUE(b);
    const virtq::GuestBuffer w[] = {b->whole()};
    auto head = d->submit(0, {}, w);
    ASSERT_TRUE(head);

    const auto t0 = Clock::now();
    auto used = d->wait_used(0, 300ms);
    const auto waited = Clock::now() - t0;
    ASSERT_FALSE(used);
    EXPECT_EQ(used.error().code(), ETIMEDOUT);
    EXPECT_NE(used.error().message().find("queue 0: no used buffer within 300 ms (requests in "
                                          "flight: 1)"),
              std::string::npos)
        << used.error().message();
    EXPECT_GE(waited, 290ms);
    EXPECT_LT(waited, 2s);

    // A late completion is still collected.
    backend.inject(0, std::vector<std::byte>(8, std::byte{0x42}));
    used = d->wait_used(0, 2s);
    ASSERT_TRUE(used) << used.error().message();
    EXPECT_EQ(used->head, *head);
    EXPECT_EQ(used->len, 8U);
    EXPECT_EQ(b->bytes()[7], std::byte{0x42});
    // Nothing in flight: waiting would be a bug of the caller.
    EXPECT_EQ(d->wait_used(0, 10ms).error().code(), EINVAL);
}

TEST(VhostUserDriver, BackendDeathFailsTheWaitAtOnce)
{
    FakeDevice dev = echo_device();
    dev.handle = hold;
    FakeBackend backend(std::move(dev));
    auto d = connect(backend);
    ASSERT_TRUE(d);
    ASSERT_TRUE(d->start({}));
    auto b = d->allocate(8);
    ASSERT_TRUE(b);
    const virtq::GuestBuffer w[] = {b->whole()};
    ASSERT_TRUE(d->submit(0, {}, w));
    backend.close_connection();
    const auto t0 = Clock::now();
    auto used = d->wait_used(0, 20s);
    ASSERT_FALSE(used);
    EXPECT_EQ(used.error().code(), ECONNRESET);
    EXPECT_NE(used.error().message().find("closed the connection"), std::string::npos);
    EXPECT_LT(Clock::now() - t0, 5s);
}

// A socket nobody ever accept()s: connect() still succeeds (the kernel
// queues the connection), the request is sent, no reply ever comes.
TEST(VhostUserDriver, SilentSocketTimesOut)
{
    char dir[] = "/tmp/vl-driver-silent-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/silent.sock";
    auto listener = vhost_user::listen_on(path);
    ASSERT_TRUE(listener);
    ConnectOptions o = fast_options();
    o.reply_timeout = 300ms;
    const auto t0 = Clock::now();
    auto d = VhostUserDriver::connect(path, o, quiet_logger());
    const auto waited = Clock::now() - t0;
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().code(), ETIMEDOUT);
    EXPECT_NE(d.error().message().find("GET_FEATURES"), std::string::npos) << d.error().message();
    EXPECT_NE(d.error().message().find(path), std::string::npos);
    EXPECT_LT(waited, 3s);
    ::unlink(path.c_str());
    ::rmdir(dir);
}

// A back-end that accepts and reads but never answers.
TEST(VhostUserDriver, MuteBackendTimesOut)
{
    char dir[] = "/tmp/vl-driver-mute-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/mute.sock";
    auto listener = vhost_user::listen_on(path);
    ASSERT_TRUE(listener);
    std::thread mute([fd = listener->get()] {
        auto c = vhost_user::accept_from(fd);
        if (!c)
            return;
        while (c->receive()) {
        } // swallow until the peer gives up and closes
    });
    ConnectOptions o = fast_options();
    o.reply_timeout = 300ms;
    auto d = VhostUserDriver::connect(path, o, quiet_logger());
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().code(), ETIMEDOUT);
    mute.join(); // returns because the driver closed the connection
    ::unlink(path.c_str());
    ::rmdir(dir);
}

TEST(VhostUserDriver, BackendHangingOnStopTimesOut)
{
    FakeDevice dev = echo_device();
    dev.hang_on = Request::get_vring_base;
    FakeBackend backend(std::move(dev));
    ConnectOptions o = fast_options();
    o.reply_timeout = 300ms;
    auto d = connect(backend, o);
    ASSERT_TRUE(d);
    ASSERT_TRUE(d->start({}));
    const auto t0 = Clock::now();
    auto stopped = d->stop();
    ASSERT_FALSE(stopped);
    EXPECT_EQ(stopped.error().code(), ETIMEDOUT);
    EXPECT_NE(stopped.error().message().find("GET_VRING_BASE"), std::string::npos)
        << stopped.error().message();
    EXPECT_LT(Clock::now() - t0, 3s);
}

TEST(VhostUserDriver, StopThenDisconnect)
{
    FakeBackend backend(echo_device());
    auto d = connect(backend);
    ASSERT_TRUE(d);
    ASSERT_TRUE(d->start({}));
    auto b = d->allocate(8);
    ASSERT_TRUE(b);
    const virtq::GuestBuffer r[] = {b->whole()};
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(d->submit(0, r, {}));
        ASSERT_TRUE(d->wait_used(0, 2s));
    }
    auto bases = d->stop();
    ASSERT_TRUE(bases) << bases.error().message();
    EXPECT_EQ(*bases, std::vector<std::uint32_t>{3});
    EXPECT_FALSE(backend.enabled(0));
    EXPECT_EQ(d->submit(0, r, {}).error().code(), EINVAL);
    EXPECT_FALSE(d->start({})); // once per connection
    auto again = d->stop();
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->empty());
    d->disconnect();
    EXPECT_TRUE(backend.wait_peer_closed());
}

// ---------------------------------------------------------------------------
// The tool, as a user runs it.

struct ToolRun {
    int exit_code = -1;
    std::string out;
    std::string err;
};

ToolRun run_tool(const std::string& args)
{
    char dir[] = "/tmp/vl-driver-tool-XXXXXX";
    if (::mkdtemp(dir) == nullptr)
        return {};
    const std::string out = std::string(dir) + "/out";
    const std::string err = std::string(dir) + "/err";
    // `timeout` guards the test itself: a hang shows as exit 124.
    const std::string command =
        "timeout 30 " + std::string(VL_TEST_DRIVER_BIN) + " " + args + " >" + out + " 2>" + err;
    const int status = std::system(command.c_str());
    auto slurp = [](const std::string& path) {
        std::ifstream f(path);
        std::stringstream s;
        s << f.rdbuf();
        return s.str();
    };
    ToolRun run{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
    ::unlink(out.c_str());
    ::unlink(err.c_str());
    ::rmdir(dir);
    return run;
}

TEST(Tool, ExitCodes)
{
    auto help = run_tool("--help");
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_NE(help.out.find("blk-verify"), std::string::npos);
    auto usage = run_tool("blk-verify --qd 0 -s /nonexistent");
    EXPECT_EQ(usage.exit_code, 2);
    EXPECT_NE(usage.err.find("--qd"), std::string::npos);
    auto missing = run_tool("-s /nonexistent/sock blk-info");
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.err.find("cannot connect to /nonexistent/sock"), std::string::npos)
        << missing.err;
}

TEST(Tool, SilentBackendFailsWithinTheTimeout)
{
    char dir[] = "/tmp/vl-driver-silent-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    const std::string path = std::string(dir) + "/silent.sock";
    auto listener = vhost_user::listen_on(path);
    ASSERT_TRUE(listener);
    const auto t0 = Clock::now();
    auto run = run_tool("-s " + path + " --timeout-ms 300 blk-verify");
    EXPECT_EQ(run.exit_code, 1) << run.err;
    EXPECT_NE(run.err.find("timed out"), std::string::npos) << run.err;
    EXPECT_LT(Clock::now() - t0, 10s);
    ::unlink(path.c_str());
    ::rmdir(dir);
}

} // namespace
} // namespace vl::test_driver
