// SPDX-License-Identifier: Apache-2.0
// Inflight I/O tracking: the buffer format and its recovery rules, and a
// round trip through two sessions with a back-end "crash" in between.
#include <sys/mman.h>

#include "backend/inflight.hpp"
#include "harness.hpp"

namespace vl::backend::test
{
namespace
{

InflightBuffer new_buffer(std::uint16_t queues, std::uint16_t size, UniqueFd* fd_out = nullptr)
{
    auto created = InflightBuffer::create(queues, size);
    EXPECT_TRUE(created.ok()) << created.error().message();
    if (fd_out != nullptr)
        *fd_out = std::move(created->second);
    return std::move(created->first);
}

TEST(Inflight, RegionSizeCoversHeaderAndEntriesRoundedTo64)
{
    EXPECT_EQ(inflight_queue_region_size(1), 64U);
    EXPECT_EQ(inflight_queue_region_size(16), 320U);   // 16 + 256 -> 320
    EXPECT_EQ(inflight_queue_region_size(256), 4160U); // 16 + 4096 -> 4160
}

TEST(Inflight, RecoversChainsStillInFlightInTheOrderTheyWereTaken)
{
    InflightBuffer buffer = new_buffer(1, 16);
    InflightQueue q = buffer.queue(0);
    for (std::uint16_t head : std::initializer_list<std::uint16_t>{9, 3, 7, 1})
        q.on_popped(head);
    q.on_pushing(7);
    q.on_pushed(7, 1);
    q.on_pushing(9);
    q.on_pushed(9, 2);
    // A new back-end maps the same buffer.
    InflightQueue again = buffer.queue(0);
    auto heads = again.recover(2, 16);
    ASSERT_TRUE(heads.ok()) << heads.error().message();
    EXPECT_EQ(*heads, (std::vector<std::uint16_t>{3, 1}));
}

TEST(Inflight, ChainPublishedButNotRecordedCountsAsDone)
{
    InflightBuffer buffer = new_buffer(1, 16);
    InflightQueue q = buffer.queue(0);
    q.on_popped(4);
    q.on_popped(5);
    q.on_pushing(5);
    // Crash here: the used ring's index already says 1, the buffer still 0.
    EXPECT_TRUE(q.in_flight(5));
    auto heads = buffer.queue(0).recover(1, 16);
    ASSERT_TRUE(heads.ok());
    EXPECT_EQ(*heads, (std::vector<std::uint16_t>{4}));
    EXPECT_EQ(buffer.queue(0).recorded_used_idx(), 1);
    EXPECT_FALSE(buffer.queue(0).in_flight(5));
}

TEST(Inflight, ChainRecordedButNotPublishedIsResubmitted)
{
    InflightBuffer buffer = new_buffer(1, 16);
    InflightQueue q = buffer.queue(0);
    q.on_popped(5);
    q.on_pushing(5); // crash before the used ring's index moved
    auto heads = buffer.queue(0).recover(0, 16);
    ASSERT_TRUE(heads.ok());
    EXPECT_EQ(*heads, (std::vector<std::uint16_t>{5}));
}

TEST(Inflight, RecoveryContinuesTheCounterSoLaterChainsSortAfter)
{
    InflightBuffer buffer = new_buffer(1, 16);
    InflightQueue first = buffer.queue(0);
    first.on_popped(2);
    InflightQueue second = buffer.queue(0);
    ASSERT_TRUE(second.recover(0, 16).ok());
    second.on_popped(1); // taken after 2
    auto heads = buffer.queue(0).recover(0, 16);
    ASSERT_TRUE(heads.ok());
    EXPECT_EQ(*heads, (std::vector<std::uint16_t>{2, 1}));
}

// A buffer with nothing in flight (new, or attached to a ring that has run
// meanwhile) just takes the used ring's index.
TEST(Inflight, IdleBufferAdoptsTheUsedIndex)
{
    InflightBuffer buffer = new_buffer(1, 16);
    auto heads = buffer.queue(0).recover(1000, 16);
    ASSERT_TRUE(heads.ok()) << heads.error().message();
    EXPECT_TRUE(heads->empty());
    EXPECT_EQ(buffer.queue(0).recorded_used_idx(), 1000);
}

TEST(Inflight, CorruptBuffersAreRefused)
{
    InflightBuffer buffer = new_buffer(1, 16);
    InflightQueue q = buffer.queue(0);
    q.on_popped(12);
    auto too_small_ring = buffer.queue(0).recover(0, 8);
    ASSERT_FALSE(too_small_ring.ok());
    EXPECT_NE(too_small_ring.error().message().find("head 12"), std::string::npos);
    auto impossible_batch = buffer.queue(0).recover(100, 16);
    ASSERT_FALSE(impossible_batch.ok());
    EXPECT_NE(impossible_batch.error().message().find("more than the 16"), std::string::npos);
}

TEST(Inflight, MappingChecksTheDescription)
{
    UniqueFd fd;
    InflightBuffer buffer = new_buffer(2, 16, &fd);
    const auto good = buffer.description();
    EXPECT_EQ(good.num_queues, 2);
    EXPECT_EQ(good.queue_size, 16);
    EXPECT_TRUE(InflightBuffer::map(good, fd.get()).ok());
    auto other_size = good;
    other_size.queue_size = 8;
    auto refused = InflightBuffer::map(other_size, fd.get());
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().message().find("tracks 16 entries"), std::string::npos);
    auto not_power = good;
    not_power.queue_size = 12;
    EXPECT_FALSE(InflightBuffer::map(not_power, fd.get()).ok());
    auto beyond = good;
    beyond.mmap_offset = 4096;
    EXPECT_FALSE(InflightBuffer::map(beyond, fd.get()).ok()) << "beyond the end of the memfd";
}

TEST(Inflight, UninitializedBufferFromTheFrontEndIsInitialized)
{
    UniqueFd fd(::memfd_create("inflight-test", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(fd.get(), 4096), 0);
    vhost_user::InflightDescription d{4096, 0, 1, 16, 0};
    auto buffer = InflightBuffer::map(d, fd.get());
    ASSERT_TRUE(buffer.ok()) << buffer.error().message();
    auto heads = buffer->queue(0).recover(0, 16);
    ASSERT_TRUE(heads.ok());
    EXPECT_TRUE(heads->empty());
    // Initialized: mapping it again finds version 1 and 16 entries.
    EXPECT_TRUE(InflightBuffer::map(d, fd.get()).ok());
}

// The front-end keeps the buffer across a back-end crash and hands it to
// the next back-end, which resubmits the chains that never completed, in
// the order they were taken, before anything new.
TEST(Inflight, RoundTripResubmitsAfterASimulatedCrash)
{
    GuestRam ram;
    constexpr std::uint64_t kData = 1 << 20;
    constexpr std::uint32_t kSize = 16;
    DriverQueue q(ram, 0, kSize, true);
    const int fds_before = count_open_fds();
    UniqueFd inflight_fd;
    vhost_user::InflightDescription description;
    std::vector<std::uint16_t> heads;
    {
        TestDevice device(1);
        SessionOptions options;
        options.drain_timeout = 50ms; // the "crash": chains are never completed
        ServedSession s(device, options, LogLevel::error);
        auto& f = s.frontend();
        negotiate(f);
        auto inflight = f.get_inflight_fd(1, kSize);
        ASSERT_TRUE(inflight.ok()) << inflight.error().message();
        description = inflight->description;
        inflight_fd = std::move(inflight->fd);
        ASSERT_TRUE(f.set_inflight_fd(description, inflight_fd.get()).ok());
        ASSERT_TRUE(f.set_mem_table(std::vector{ram.whole()}).ok());
        start_queue(f, q, 0, kSize);
        device.set_mode(0, TestDevice::Mode::hold);
        for (int i = 0; i < 4; ++i)
            heads.push_back(q.submit({put(ram, kData + i * 256, "req" + std::to_string(i))},
                                     {{ram.guest(kData + i * 256 + 128), 4}}));
        ASSERT_TRUE(eventually([&] { return device.held(0) == 4; }));
        device.release(0, heads[1]); // only the second completes
        auto used = q.wait_used();
        ASSERT_TRUE(used.has_value());
        EXPECT_EQ(used->head, heads[1]);
        EXPECT_TRUE(s.finish().ok()); // the front-end sees the back-end go away
    }

    {
        // The buffer shows what was in flight.
        auto kept = InflightBuffer::map(description, inflight_fd.get());
        ASSERT_TRUE(kept.ok());
        for (std::uint16_t head : {heads[0], heads[2], heads[3]})
            EXPECT_TRUE(kept->queue(0).in_flight(head)) << head;
        EXPECT_FALSE(kept->queue(0).in_flight(heads[1]));
    }

    {
        TestDevice device(1);
        ServedSession s(device);
        auto& f = s.frontend();
        negotiate(f);
        ASSERT_TRUE(f.set_inflight_fd(description, inflight_fd.get()).ok());
        ASSERT_TRUE(f.set_mem_table(std::vector{ram.whole()}).ok());
        // The driver adds one more request while the back-end is away.
        const std::uint16_t fresh =
            q.submit({put(ram, kData + 0x1000, "new!")}, {{ram.guest(kData + 0x1100), 4}});
        // As QEMU does after a back-end crash: the base is the used index.
        start_queue(f, q, 0, kSize, /*base=*/1);
        for (int i = 0; i < 4; ++i)
            ASSERT_TRUE(q.wait_used().has_value()) << "completion " << i;
        EXPECT_EQ(device.seen(0),
                  (std::vector<std::uint16_t>{heads[0], heads[2], heads[3], fresh}));
        EXPECT_EQ(read_back(ram, kData + 128, 4), "req0");
        EXPECT_EQ(read_back(ram, kData + 3 * 256 + 128, 4), "req3");
        EXPECT_EQ(read_back(ram, kData + 0x1100, 4), "new!");
        auto base = f.get_vring_base(0);
        ASSERT_TRUE(base.ok());
        EXPECT_EQ(*base, 5U);
    }
    {
        auto kept = InflightBuffer::map(description, inflight_fd.get());
        ASSERT_TRUE(kept.ok());
        auto none = kept->queue(0).recover(5, kSize);
        ASSERT_TRUE(none.ok());
        EXPECT_TRUE(none->empty()) << "everything completed";
    }
    inflight_fd.reset();
    EXPECT_EQ(count_open_fds(), fds_before);
}

} // namespace
} // namespace vl::backend::test
