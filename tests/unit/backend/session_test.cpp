// SPDX-License-Identifier: Apache-2.0
// The back-end's protocol state machine, driven over a socket pair by the
// vhost-user front-end client, with memfd guest memory and driver-side
// split queues: message orders, data flow, ring stop semantics, memory
// table changes, config, status, the back-end channel, device reset.
#include <algorithm>
#include <random>

#include "harness.hpp"

namespace vl::backend::test
{
namespace
{

constexpr std::uint64_t kRing0 = 0;
constexpr std::uint64_t kRing1 = 64 << 10;
constexpr std::uint64_t kData = 1 << 20;
constexpr std::uint32_t kSize = 16;

// Sends "hello" through queue `index` and checks the echo comes back.
void expect_echo(GuestRam& ram, DriverQueue& q, const std::string& text = "hello",
                 std::uint64_t slot = 0)
{
    const std::uint64_t in = kData + slot * 0x1000;
    const std::uint64_t out = in + 0x800;
    std::memset(ram.host(out), 0, text.size());
    const std::uint16_t head =
        q.submit({put(ram, in, text)}, {{ram.guest(out), static_cast<std::uint32_t>(text.size())}});
    auto used = q.wait_used();
    ASSERT_TRUE(used.has_value()) << "no used buffer for '" << text << "'";
    EXPECT_EQ(used->head, head);
    EXPECT_EQ(used->len, text.size());
    EXPECT_EQ(read_back(ram, out, text.size()), text);
}

class SessionTest : public FdLeakTest
{
  protected:
    // A session served on a socket pair, negotiated (with REPLY_ACK);
    // returns the front-end.
    vhost_user::Frontend& negotiated(bool event_idx = true, SessionOptions options = {})
    {
        session_.emplace(device_, options);
        negotiate(session_->frontend(), event_idx);
        return session_->frontend();
    }
    // The same, with the RAM as the memory table.
    vhost_user::Frontend& ready(bool event_idx = true, SessionOptions options = {})
    {
        auto& f = negotiated(event_idx, options);
        EXPECT_TRUE(f.set_mem_table(std::vector{ram_.whole()}).ok());
        return f;
    }
    ServedSession& session() { return *session_; }

    void TearDown() override
    {
        session_.reset();
        FdLeakTest::TearDown();
    }

    TestDevice device_;
    GuestRam ram_;
    std::optional<ServedSession> session_;
};

TEST_F(SessionTest, OffersFrameworkAndDeviceFeatures)
{
    ServedSession s(device_);
    auto features = s.frontend().get_features();
    ASSERT_TRUE(features.ok());
    EXPECT_EQ(*features, TestDevice::kDeviceFeature | kFeatureVersion1 | kFeatureEventIdx |
                             kFeatureIndirectDesc | vhost_user::kFeatureProtocolFeatures);
    auto protocol = s.frontend().get_protocol_features();
    ASSERT_TRUE(protocol.ok());
    using vhost_user::ProtocolFeature;
    for (auto f :
         {ProtocolFeature::mq, ProtocolFeature::reply_ack, ProtocolFeature::config,
          ProtocolFeature::reset_device, ProtocolFeature::inflight_shmfd, ProtocolFeature::status,
          ProtocolFeature::configure_mem_slots, ProtocolFeature::backend_req})
        EXPECT_TRUE(vhost_user::has(*protocol, f)) << static_cast<unsigned>(f);
    EXPECT_FALSE(vhost_user::has(*protocol, ProtocolFeature::log_shmfd));
    ASSERT_TRUE(s.frontend().set_protocol_features(*protocol).ok());
    auto queues = s.frontend().get_queue_num();
    ASSERT_TRUE(queues.ok());
    EXPECT_EQ(*queues, 2U);
    auto slots = s.frontend().get_max_mem_slots();
    ASSERT_TRUE(slots.ok());
    EXPECT_EQ(*slots, 64U);
}

TEST_F(SessionTest, EchoesThroughTwoQueuesInQemuOrder)
{
    auto& f = negotiated();
    EXPECT_EQ(device_.acked_features.load() & TestDevice::kDeviceFeature,
              TestDevice::kDeviceFeature);
    ASSERT_TRUE(f.set_mem_table(std::vector{ram_.whole()}).ok());
    DriverQueue q0(ram_, kRing0, kSize, true);
    DriverQueue q1(ram_, kRing1, kSize, true);
    start_queue(f, q0, 0, kSize);
    start_queue(f, q1, 1, kSize);
    for (int i = 0; i < 40; ++i) { // more than the ring size: indices wrap
        expect_echo(ram_, q0, "queue zero " + std::to_string(i), 0);
        expect_echo(ram_, q1, "queue one " + std::to_string(i), 1);
    }
    auto base0 = f.get_vring_base(0);
    ASSERT_TRUE(base0.ok());
    EXPECT_EQ(*base0, 40U);
    EXPECT_TRUE(session().finish().ok());
    EXPECT_EQ(device_.starts(0), 1);
    EXPECT_EQ(device_.stops(0), 1);
    EXPECT_EQ(device_.stops(1), 1);
    EXPECT_GE(device_.resets.load(), 1) << "the device is reset when the front-end leaves";
}

// With --poll-us, a worker that just served keeps looking at the ring: the
// driver is told not to kick, and what it adds is served all the same.
TEST_F(SessionTest, BusyPollingServesWithoutKicks)
{
    SessionOptions options;
    options.poll_time = 10s; // far longer than the test: every echo falls in it
    auto& f = ready(true, options);
    DriverQueue q(ram_, kRing0, kSize, true);
    start_queue(f, q, 0, kSize);
    expect_echo(ram_, q, "wake up");
    const int kicks = q.kicks();
    for (int i = 0; i < 20; ++i)
        expect_echo(ram_, q, "polled " + std::to_string(i), i % 4);
    EXPECT_EQ(q.kicks(), kicks) << "the driver kicked a worker that polls";
    // Stopping does not wait for the polling to end.
    const auto before = std::chrono::steady_clock::now();
    EXPECT_TRUE(session().finish().ok());
    EXPECT_LT(std::chrono::steady_clock::now() - before, 5s);
}

// Without it, a buffer added once the worker went to sleep is kicked.
TEST_F(SessionTest, WithoutPollingTheDriverKicks)
{
    auto& f = ready(true);
    DriverQueue q(ram_, kRing0, kSize, true);
    start_queue(f, q, 0, kSize);
    for (int i = 0; i < 5; ++i) {
        // Time to re-enable notifications and sleep (a buffer added before
        // that is found without a kick).
        std::this_thread::sleep_for(20ms);
        expect_echo(ram_, q, "kicked " + std::to_string(i));
    }
    EXPECT_EQ(q.kicks(), 5);
}

// Every order of the set-up requests is legal (the ring runs once it has
// memory, size, addresses, a kick fd and is enabled), and so is sending
// NUM and BASE before the memory table, as cloud-hypervisor does.
TEST_F(SessionTest, AnyOrderOfSetUpRequestsWorks)
{
    enum Step { kFeatures, kMemory, kNum, kBase, kAddr, kKick, kCall, kEnable };
    std::vector<Step> steps{kFeatures, kMemory, kNum, kBase, kAddr, kKick, kCall, kEnable};
    std::mt19937 random(1234);
    for (int round = 0; round < 24; ++round) {
        std::shuffle(steps.begin(), steps.end(), random);
        std::string order;
        for (Step st : steps)
            order += std::to_string(static_cast<int>(st)) + " ";
        SCOPED_TRACE("order " + order);
        TestDevice device(1);
        GuestRam ram;
        DriverQueue q(ram, kRing0, kSize, true);
        ServedSession s(device);
        auto& f = s.frontend();
        auto protocol = f.get_protocol_features();
        ASSERT_TRUE(protocol.ok());
        ASSERT_TRUE(f.set_protocol_features(*protocol).ok());
        for (Step st : steps) {
            Status done;
            switch (st) {
            case kFeatures:
                done = f.set_features(offered_features(device));
                break;
            case kMemory:
                done = f.set_mem_table(std::vector{ram.whole()});
                break;
            case kNum:
                done = f.set_vring_num(0, kSize);
                break;
            case kBase:
                done = f.set_vring_base(0, 0);
                break;
            case kAddr:
                done = f.set_vring_addr(q.addr(0));
                break;
            case kKick:
                done = f.set_vring_kick(0, q.kick_fd());
                break;
            case kCall:
                done = f.set_vring_call(0, q.call_fd());
                break;
            case kEnable:
                done = f.set_vring_enable(0, true);
                break;
            }
            ASSERT_TRUE(done.ok()) << done.error().message();
        }
        expect_echo(ram, q, "order " + order);
        EXPECT_TRUE(s.finish().ok());
    }
}

TEST_F(SessionTest, RingProcessesWhatIsAvailableWhenItStartsWithoutAKick)
{
    auto& f = ready();
    DriverQueue q(ram_, kRing0, kSize, true);
    // The driver adds a buffer before the ring is set up; no kick follows.
    auto head = q.ring().add(std::vector{put(ram_, kData, "early")},
                             std::vector<virtq::GuestBuffer>{{ram_.guest(kData + 64), 5}});
    ASSERT_TRUE(head.ok() && head->has_value());
    start_queue(f, q, 0, kSize);
    auto used = q.wait_used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(read_back(ram_, kData + 64, 5), "early");
}

TEST_F(SessionTest, WithoutProtocolFeaturesRingsStartEnabled)
{
    ServedSession s(device_);
    auto& f = s.frontend();
    ASSERT_TRUE(f.set_owner().ok());
    ASSERT_TRUE(
        f.set_features(offered_features(device_) & ~vhost_user::kFeatureProtocolFeatures).ok());
    ASSERT_TRUE(f.set_mem_table(std::vector{ram_.whole()}).ok());
    DriverQueue q(ram_, kRing0, kSize, true);
    ASSERT_TRUE(f.set_vring_num(0, kSize).ok());
    ASSERT_TRUE(f.set_vring_base(0, 0).ok());
    ASSERT_TRUE(f.set_vring_addr(q.addr(0)).ok());
    ASSERT_TRUE(f.set_vring_call(0, q.call_fd()).ok());
    ASSERT_TRUE(f.set_vring_kick(0, q.kick_fd()).ok()); // no SET_VRING_ENABLE
    expect_echo(ram_, q);
}

TEST_F(SessionTest, DisabledRingIsNotProcessedUntilEnabled)
{
    auto& f = ready();
    DriverQueue q(ram_, kRing0, kSize, true);
    ASSERT_TRUE(f.set_vring_num(0, kSize).ok());
    ASSERT_TRUE(f.set_vring_addr(q.addr(0)).ok());
    ASSERT_TRUE(f.set_vring_call(0, q.call_fd()).ok());
    ASSERT_TRUE(f.set_vring_kick(0, q.kick_fd()).ok());
    q.submit({put(ram_, kData, "wait")}, {{ram_.guest(kData + 64), 4}});
    EXPECT_FALSE(readable_within(q.call_fd(), 100ms)) << "a disabled ring was processed";
    EXPECT_EQ(device_.popped(0), 0);
    ASSERT_TRUE(f.set_vring_enable(0, true).ok());
    ASSERT_TRUE(q.wait_used().has_value());
}

// GET_VRING_BASE stops the ring: it waits for what is in flight, answers
// the next available index, and the ring then ignores kicks until it is
// started again.
TEST_F(SessionTest, GetVringBaseWaitsForInFlightWorkAndStopsTheRing)
{
    auto& f = ready();
    DriverQueue q(ram_, kRing0, kSize, true);
    start_queue(f, q, 0, kSize);
    device_.set_mode(0, TestDevice::Mode::hold);
    std::vector<std::uint16_t> heads;
    for (int i = 0; i < 3; ++i)
        heads.push_back(q.submit({put(ram_, kData + i * 256, "held")},
                                 {{ram_.guest(kData + i * 256 + 128), 4}}));
    ASSERT_TRUE(eventually([&] { return device_.held(0) == 3; }));

    auto base = std::async(std::launch::async, [&] { return f.get_vring_base(0); });
    EXPECT_EQ(base.wait_for(200ms), std::future_status::timeout)
        << "GET_VRING_BASE answered with chains still in flight";
    for (std::uint16_t head : heads)
        device_.release(0, head);
    auto answered = base.get();
    ASSERT_TRUE(answered.ok()) << answered.error().message();
    EXPECT_EQ(*answered, 3U);
    for (int i = 0; i < 3; ++i)
        ASSERT_TRUE(q.wait_used().has_value());
    EXPECT_EQ(device_.stops(0), 1);

    // Stopped: a new buffer and kick are not processed.
    device_.set_mode(0, TestDevice::Mode::echo);
    (void)q.call().drain();
    q.submit({put(ram_, kData, "later")}, {{ram_.guest(kData + 128), 5}});
    q.kick();
    EXPECT_FALSE(readable_within(q.call_fd(), 100ms));
    EXPECT_EQ(device_.popped(0), 3);
    auto nothing = q.ring().get_used();
    ASSERT_TRUE(nothing.ok());
    EXPECT_FALSE(nothing->has_value());

    // Restarted where it stopped, it takes the waiting buffer at once.
    ASSERT_TRUE(f.set_vring_base(0, *answered).ok());
    ASSERT_TRUE(f.set_vring_kick(0, q.kick_fd()).ok());
    ASSERT_TRUE(q.wait_used().has_value());
    EXPECT_EQ(read_back(ram_, kData + 128, 5), "later");
    EXPECT_EQ(device_.starts(0), 2);
}

TEST_F(SessionTest, StoppingGivesUpOnChainsThatNeverCompleteAfterTheDrainTimeout)
{
    SessionOptions options;
    options.drain_timeout = 150ms;
    auto& f = ready(true, options);
    DriverQueue q(ram_, kRing0, kSize, true);
    start_queue(f, q, 0, kSize);
    device_.set_mode(0, TestDevice::Mode::hold);
    q.submit({put(ram_, kData, "stuck")}, {{ram_.guest(kData + 128), 5}});
    ASSERT_TRUE(eventually([&] { return device_.held(0) == 1; }));
    const auto start = std::chrono::steady_clock::now();
    auto base = f.get_vring_base(0);
    ASSERT_TRUE(base.ok());
    EXPECT_EQ(*base, 1U) << "the chain was taken, so it counts";
    EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
    EXPECT_EQ(device_.held(0), 0U) << "queue_stopped() let the device drop it";
}

TEST_F(SessionTest, NewMemoryTableWhileRunningRestartsRingsOnIt)
{
    auto& f = ready();
    DriverQueue q(ram_, kRing0, kSize, true);
    start_queue(f, q, 0, kSize);
    expect_echo(ram_, q, "before");
    // The same RAM as two regions (a table change while the ring runs, as
    // on memory hot-plug).
    ASSERT_TRUE(
        f.set_mem_table(std::vector{ram_.region(0, kData), ram_.region(kData, kData)}).ok());
    expect_echo(ram_, q, "after");
    EXPECT_EQ(device_.memory_changes.load(), 2);
    EXPECT_EQ(device_.starts(0), 2);
    auto base = f.get_vring_base(0);
    ASSERT_TRUE(base.ok());
    EXPECT_EQ(*base, 2U) << "the restart kept the ring's position";
}

TEST_F(SessionTest, AddAndRemoveMemoryRegions)
{
    auto& f = negotiated();
    ASSERT_TRUE(f.add_mem_reg(ram_.region(0, kData)).ok());
    ASSERT_TRUE(f.add_mem_reg(ram_.region(kData, kData)).ok());
    DriverQueue q(ram_, kRing0, kSize, true);
    start_queue(f, q, 0, kSize);
    expect_echo(ram_, q, "two regions");
    // The data region goes away: a buffer there now breaks the queue.
    ASSERT_TRUE(f.rem_mem_reg(ram_.region(kData, kData).region).ok());
    q.submit({put(ram_, kData, "gone")}, {{ram_.guest(kData + 128), 4}});
    EXPECT_TRUE(readable_within(q.err_fd(), 2s)) << "the error eventfd was not signalled";
}

TEST_F(SessionTest, ConfigSpaceReadsFollowWrites)
{
    auto& f = negotiated();
    auto before = f.get_config(0, 4);
    ASSERT_TRUE(before.ok());
    EXPECT_EQ((*before)[2], std::byte{2});
    ASSERT_TRUE(f.set_config(0, std::vector{std::byte{10}}).ok());
    auto after = f.get_config(0, 4);
    ASSERT_TRUE(after.ok());
    EXPECT_EQ((*after)[0], std::byte{10});
    EXPECT_EQ((*after)[2], std::byte{12});
    // A refused write (read-only field) and a refused read (beyond the
    // device's space) leave the connection usable.
    EXPECT_FALSE(f.set_config(4, std::vector{std::byte{1}}).ok());
    EXPECT_FALSE(f.get_config(8, 16).ok());
    EXPECT_TRUE(f.get_features().ok());
}

TEST_F(SessionTest, StatusIsStored)
{
    auto& f = negotiated();
    ASSERT_TRUE(f.set_status(0x0f).ok());
    auto status = f.get_status();
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(*status, 0x0f);
}

TEST_F(SessionTest, ConfigChangeReachesTheFrontEndOnTheBackendChannel)
{
    auto& f = negotiated();
    auto pair = vhost_user::Connection::pair();
    ASSERT_TRUE(pair.ok());
    auto& [ours, theirs] = *pair;
    ASSERT_TRUE(f.set_backend_req_fd(theirs.fd()).ok());
    theirs.close();
    auto sent =
        std::async(std::launch::async, [&] { return session().notifier().config_changed(); });
    auto request = vhost_user::receive_backend_request(ours);
    ASSERT_TRUE(request.ok()) << request.error().message();
    EXPECT_EQ(request->request, vhost_user::BackendRequest::config_change_msg);
    ASSERT_TRUE(vhost_user::answer_backend_request(ours, request->message, true, true).ok());
    auto outcome = sent.get();
    EXPECT_TRUE(outcome.ok()) << outcome.error().message();
    EXPECT_TRUE(session().finish().ok());
    auto after = session().notifier().config_changed();
    ASSERT_FALSE(after.ok()) << "no front-end is connected any more";
    EXPECT_EQ(after.error().code(), ENOTCONN);
}

TEST_F(SessionTest, ResetDeviceStopsRingsAndAllowsAFreshStart)
{
    auto& f = ready();
    {
        DriverQueue q(ram_, kRing0, kSize, true);
        start_queue(f, q, 0, kSize);
        expect_echo(ram_, q, "first life");
        ASSERT_TRUE(f.reset_device().ok());
        EXPECT_EQ(device_.resets.load(), 1);
        (void)q.call().drain();
        q.submit({put(ram_, kData, "after reset")}, {{ram_.guest(kData + 128), 11}});
        EXPECT_FALSE(readable_within(q.call_fd(), 100ms)) << "a reset ring was processed";
    }
    // The driver re-initializes (fresh rings) and sets everything up again.
    negotiate(f);
    DriverQueue q(ram_, kRing0, kSize, false);
    start_queue(f, q, 0, kSize);
    expect_echo(ram_, q, "second life");
}

TEST_F(SessionTest, FeatureChangeRestartsRunningRingsWithTheNewRingFormat)
{
    auto& f = ready();
    DriverQueue q(ram_, kRing0, kSize, false);
    start_queue(f, q, 0, kSize);
    ASSERT_TRUE(f.get_vring_base(0).ok());
    ASSERT_TRUE(
        f.set_features(offered_features(device_) & ~kFeatureEventIdx).ok()); // as on a restart
    ASSERT_TRUE(f.set_vring_kick(0, q.kick_fd()).ok());
    expect_echo(ram_, q, "no event idx");
    EXPECT_EQ(device_.set_features_calls.load(), 2);
}

// A driver that breaks the ring rules (here: a descriptor chain that loops
// onto itself) breaks only its own queue: the back-end signals that ring's
// error eventfd and keeps serving the other queue and the connection.
TEST_F(SessionTest, HostileChainBreaksOnlyItsQueue)
{
    auto& f = ready();
    DriverQueue q0(ram_, kRing0, kSize, true);
    DriverQueue q1(ram_, kRing1, kSize, true);
    start_queue(f, q0, 0, kSize);
    start_queue(f, q1, 1, kSize);
    expect_echo(ram_, q1, "before");

    // Written by hand, as a hostile driver would: descriptor 0 chains to
    // itself, and is made available.
    const auto& layout = q0.ring().layout();
    virtq::store_descriptor(ram_.host(kRing0 + layout.desc_offset),
                            {ram_.guest(kData), 16, virtq::kDescFlagNext, 0});
    std::byte* avail = ram_.host(kRing0 + layout.avail_offset);
    virtq::store_le16(avail + virtq::ring_offset::avail_entry(0), 0);
    virtq::store_le16(avail + virtq::ring_offset::kIdx, 1);
    q0.kick();
    EXPECT_TRUE(readable_within(q0.err_fd(), 5s)) << "ring 0's error eventfd was not signalled";

    expect_echo(ram_, q1, "after");
    auto base = f.get_vring_base(0);
    ASSERT_TRUE(base.ok()) << "a broken ring still answers GET_VRING_BASE";
    EXPECT_EQ(*base, 0U) << "the looping chain was never taken";
    EXPECT_TRUE(session().finish().ok()) << "the connection was not ended by a broken queue";
}

// The driver adds a buffer while the device has notifications off (so it
// does not kick) just after the device found the ring empty: the worker's
// re-enable sees it and has it processed, without a kick.
TEST_F(SessionTest, BufferAddedWhileNotificationsAreOffIsNotMissed)
{
    auto& f = ready(/*event_idx=*/false);
    DriverQueue q(ram_, kRing0, kSize, false);
    std::promise<void> added;
    device_.when_empty([&] {
        EXPECT_EQ(q.ring().avail_idx(), 0);
        auto head = q.ring().add(std::vector{put(ram_, kData, "race")},
                                 std::vector<virtq::GuestBuffer>{{ram_.guest(kData + 128), 4}});
        EXPECT_TRUE(head.ok() && head->has_value());
        EXPECT_FALSE(q.ring().kick_needed()) << "the device has notifications off";
        added.set_value();
    });
    start_queue(f, q, 0, kSize);
    ASSERT_EQ(added.get_future().wait_for(5s), std::future_status::ready);
    ASSERT_TRUE(q.wait_used().has_value()) << "the buffer added in the race was not processed";
    EXPECT_EQ(read_back(ram_, kData + 128, 4), "race");
}

// A device that returns with chains available and without pausing is
// paused by the worker instead of being called in a loop.
TEST_F(SessionTest, DeviceThatIgnoresItsQueueIsPausedNotSpun)
{
    auto& f = ready();
    DriverQueue q(ram_, kRing0, kSize, true);
    device_.set_mode(0, TestDevice::Mode::ignore);
    start_queue(f, q, 0, kSize);
    const int calls_at_start = device_.process_calls(0);
    q.submit({put(ram_, kData, "x")}, {{ram_.guest(kData + 128), 1}});
    for (int i = 0; i < 5; ++i)
        q.kick();
    std::this_thread::sleep_for(100ms);
    EXPECT_LE(device_.process_calls(0), calls_at_start + 2);
    EXPECT_TRUE(f.get_vring_base(0).ok()) << "a paused queue still stops";
}

TEST_F(SessionTest, PollingModeIsRefusedButTheConnectionStays)
{
    auto& f = negotiated();
    auto kick = f.set_vring_kick(0, vhost_user::kNoFd);
    ASSERT_FALSE(kick.ok());
    EXPECT_NE(kick.error().message().find("refused"), std::string::npos) << kick.error().message();
    EXPECT_TRUE(f.get_features().ok()) << "a refusal keeps the connection";
    // A call fd of "none" is fine: the front-end polls the used ring.
    EXPECT_TRUE(f.set_vring_call(0, vhost_user::kNoFd).ok());
}

} // namespace
} // namespace vl::backend::test
