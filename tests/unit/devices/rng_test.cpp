// SPDX-License-Identifier: Apache-2.0
// vhost-user-rng: validation of its options, the token bucket of the rate
// limit, and the device itself on a queue built by hand (no socket, no
// worker thread).
#include <set>

#include "backend/harness.hpp"
#include "backend/program.hpp"
#include "rng/rng_device.hpp"

namespace vl::rng
{
namespace
{

using namespace std::chrono_literals;
using backend::test::GuestRam;

// ---------------------------------------------------------------------------
// Options

Result<RngConfig> from_args(std::vector<std::string> args)
{
    backend::ProgramInfo info;
    info.options = rng_options();
    auto cl = backend::CommandLine::parse(args, backend::all_options(info));
    if (!cl)
        return cl.error();
    return RngConfig::from_command_line(*cl);
}

std::string error_of(std::vector<std::string> args)
{
    auto config = from_args(std::move(args));
    return config.ok() ? std::string("(no error)") : config.error().message();
}

TEST(RngConfig, NoLimitByDefault)
{
    auto config = from_args({"-s", "/run/rng.sock"});
    ASSERT_TRUE(config.ok());
    EXPECT_FALSE(config->rate_limit.has_value());
}

TEST(RngConfig, RateWithDefaultAndExplicitPeriod)
{
    auto config = from_args({"--rate", "4096"});
    ASSERT_TRUE(config.ok()) << config.error().message();
    EXPECT_EQ(config->rate_limit, (RateLimit{4096, 1000ms}));
    EXPECT_EQ(config->rate_limit->bytes_per_period(), 4096U);
    config = from_args({"--rate=4096", "--period-ms=250"});
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(config->rate_limit, (RateLimit{4096, 250ms}));
    EXPECT_EQ(config->rate_limit->bytes_per_period(), 1024U);
    config = from_args({"--rate", "1", "--period-ms", "65536"});
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(config->rate_limit->bytes_per_period(), 65U);
}

TEST(RngConfig, ErrorsSayWhatToChange)
{
    EXPECT_EQ(error_of({"--period-ms", "10"}),
              "--period-ms needs --rate: it sets the periods over which the rate is measured");
    EXPECT_EQ(error_of({"--rate", "0"}),
              "--rate 0 would deliver nothing; leave --rate out for no limit");
    EXPECT_EQ(error_of({"--rate", "10", "--period-ms", "0"}),
              "--period-ms must be 1 to 65536, got 0");
    EXPECT_EQ(error_of({"--rate", "10", "--period-ms", "65537"}),
              "--period-ms must be 1 to 65536, got 65537");
    EXPECT_EQ(error_of({"--rate", "10", "--period-ms", "50"}),
              "--rate 10 with --period-ms 50 allows less than one byte per period; raise --rate "
              "or --period-ms");
    EXPECT_NE(error_of({"--rate", "2000000000000"}).find("more than any entropy source"),
              std::string::npos);
    EXPECT_EQ(error_of({"--rate", "fast"}),
              "--rate wants a whole number of bytes per second, got 'fast'");
    EXPECT_EQ(error_of({"--period-ms", "-5", "--rate", "1"}),
              "--period-ms wants a whole number of milliseconds, got '-5'");
}

// ---------------------------------------------------------------------------
// TokenBucket

TEST(TokenBucket, GrantsAtMostOnePeriodsBudgetPerPeriod)
{
    const TokenBucket::Clock::time_point t0{};
    TokenBucket bucket(RateLimit{1000, 100ms}, t0); // 100 bytes per 100 ms
    EXPECT_EQ(bucket.take(60, t0), 60U);
    EXPECT_EQ(bucket.take(60, t0 + 10ms), 40U) << "the rest of the period's budget";
    EXPECT_EQ(bucket.available(t0 + 99ms), 0U);
    EXPECT_EQ(bucket.next_refill(), t0 + 100ms);
    EXPECT_EQ(bucket.available(t0 + 100ms), 100U);
    EXPECT_EQ(bucket.next_refill(), t0 + 200ms);
    // Idle periods do not add up: after 2.5 periods idle, still one budget.
    EXPECT_EQ(bucket.take(1000, t0 + 350ms), 100U);
    EXPECT_EQ(bucket.next_refill(), t0 + 400ms);
}

TEST(TokenBucket, LongRunRateIsTheConfiguredRate)
{
    const TokenBucket::Clock::time_point t0{};
    TokenBucket bucket(RateLimit{3000, 7ms}, t0); // 21 bytes per 7 ms
    std::uint64_t total = 0;
    for (auto t = t0; t < t0 + 10s; t += 1ms)
        total += bucket.take(1 << 20, t);
    // 10 s at 3000 B/s, counted in whole periods: 1429 periods of 21 bytes.
    EXPECT_EQ(total, 1429U * 21U);
}

// ---------------------------------------------------------------------------
// The device on a queue built by hand

class RngDeviceTest : public ::testing::Test
{
  protected:
    static constexpr std::uint64_t kData = 512 << 10;

    std::unique_ptr<RngDevice> make(RngConfig config)
    {
        auto device = RngDevice::create(config, Logger("rng-test", LogLevel::error));
        EXPECT_TRUE(device.ok()) << device.error().message();
        return std::move(device).value();
    }

    // A request for `len` bytes at data slot `slot` (zero-filled first).
    std::uint16_t request(std::uint32_t len, std::uint64_t slot)
    {
        std::memset(ram_.host(kData + slot * 0x2000), 0, len);
        auto head = queue_.driver().ring().add(
            {}, std::vector<virtq::GuestBuffer>{{ram_.guest(kData + slot * 0x2000), len}});
        EXPECT_TRUE(head.ok() && head->has_value());
        return **head;
    }
    std::span<const std::byte> slot_bytes(std::uint64_t slot, std::size_t len)
    {
        return {ram_.host(kData + slot * 0x2000), len};
    }
    std::optional<virtq::UsedBuffer> used() { return queue_.used(); }
    backend::QueueContext& ctx() { return queue_.ctx(); }
    std::vector<std::pair<int, std::uint64_t>>& watched() { return queue_.events().watched; }

    GuestRam ram_{1 << 20};
    virtq::GuestMemory memory_ = backend::test::memory_of(ram_);
    backend::test::HandQueue queue_{ram_, memory_, 0, 0};
};

std::size_t distinct_bytes(std::span<const std::byte> bytes)
{
    return std::set<std::byte>(bytes.begin(), bytes.end()).size();
}

TEST_F(RngDeviceTest, FillsEveryWritableBufferCompletely)
{
    auto device = make({});
    ASSERT_TRUE(device->queue_started(ctx()).ok());
    EXPECT_TRUE(watched().empty()) << "no timer without a rate limit";
    const std::uint16_t a = request(4096, 0);
    const std::uint16_t b = request(1, 1);
    const std::uint16_t c = request(8000, 2);
    ASSERT_TRUE(device->process_queue(ctx()).ok());
    for (auto [head, len] : {std::pair{a, 4096U}, std::pair{b, 1U}, std::pair{c, 8000U}}) {
        auto u = used();
        ASSERT_TRUE(u.has_value());
        EXPECT_EQ(u->head, head);
        EXPECT_EQ(u->len, len);
    }
    EXPECT_GT(distinct_bytes(slot_bytes(0, 4096)), 200U) << "4 KiB of entropy, not a pattern";
    EXPECT_GT(distinct_bytes(slot_bytes(2, 8000)), 200U);
    EXPECT_FALSE(
        std::equal(slot_bytes(0, 64).begin(), slot_bytes(0, 64).end(), slot_bytes(2, 64).begin()));
}

TEST_F(RngDeviceTest, ChainWithoutWritableBytesIsReturnedEmpty)
{
    auto device = make({});
    auto head =
        queue_.driver().ring().add(std::vector<virtq::GuestBuffer>{{ram_.guest(kData), 16}}, {});
    ASSERT_TRUE(head.ok() && head->has_value());
    ASSERT_TRUE(device->process_queue(ctx()).ok());
    auto u = used();
    ASSERT_TRUE(u.has_value());
    EXPECT_EQ(u->len, 0U);
}

// Out of budget, the device pauses its queue and arms a timer for the next
// period; when the timer fires it resumes and the next period's budget
// serves the waiting request.
TEST_F(RngDeviceTest, RateLimitPausesTheQueueUntilTheNextPeriod)
{
    auto device = make(*RngConfig::from(2000, 50)); // 100 bytes per 50 ms
    ASSERT_TRUE(device->queue_started(ctx()).ok());
    ASSERT_EQ(watched().size(), 1U) << "the device watches its timer";
    const int timer_fd = watched()[0].first;

    request(60, 0);
    request(60, 1);
    request(60, 2);
    ASSERT_TRUE(device->process_queue(ctx()).ok());
    auto first = used();
    auto second = used();
    ASSERT_TRUE(first && second);
    EXPECT_EQ(first->len + second->len, 100U) << "one period's budget, the second one partial";
    EXPECT_FALSE(used().has_value()) << "the third request waits";
    EXPECT_TRUE(ctx().paused());
    EXPECT_EQ(ctx().queue().available().value(), 1) << "it was left in the ring";

    ASSERT_TRUE(backend::test::readable_within(timer_fd, 2s)) << "the refill timer never fired";
    ASSERT_TRUE(device->handle_event(ctx(), watched()[0].second).ok());
    EXPECT_FALSE(ctx().paused());
    ASSERT_TRUE(device->process_queue(ctx()).ok());
    auto third = used();
    ASSERT_TRUE(third.has_value());
    EXPECT_EQ(third->len, 60U);
    device->queue_stopped(ctx());
}

} // namespace
} // namespace vl::rng
