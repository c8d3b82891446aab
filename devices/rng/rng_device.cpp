// SPDX-License-Identifier: Apache-2.0
#include "rng/rng_device.hpp"

#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <limits>

namespace vl::rng
{

namespace
{

constexpr std::uint64_t kTimerToken = 1;

Error usage(std::string message)
{
    return Error(std::move(message), EINVAL);
}

// Fills `out` from the kernel's entropy pool.
Status fill_random(std::span<std::byte> out)
{
    while (!out.empty()) {
        ssize_t n = ::getrandom(out.data(), out.size(), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return Error::from_errno("getrandom");
        }
        out = out.subspan(static_cast<std::size_t>(n));
    }
    return ok_status();
}

// Fills the first `limit` writable bytes of `chain`; returns how many.
Result<std::uint32_t> fill_chain(const virtq::DescriptorChain& chain, std::uint64_t limit)
{
    std::uint64_t written = 0;
    for (std::span<std::byte> buffer : chain.writable()) {
        if (written == limit)
            break;
        const auto n =
            static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), limit - written));
        VL_TRY(fill_random(buffer.first(n)));
        written += n;
    }
    return static_cast<std::uint32_t>(written); // <= writable_len, a u32
}

} // namespace

// ---------------------------------------------------------------------------
// Configuration

std::vector<backend::OptionSpec> rng_options()
{
    return {
        {"rate", 0, "BYTES_PER_SEC",
         "deliver at most this many bytes per second (default: no limit)"},
        {"period-ms", 0, "N",
         fmt::format("measure the rate over periods of N ms, 1 to {} (default {})",
                     kMaxPeriod.count(), kDefaultPeriod.count())},
    };
}

Result<RngConfig> RngConfig::from(std::optional<std::uint64_t> rate,
                                  std::optional<std::uint64_t> period_ms)
{
    RngConfig config;
    if (!rate) {
        if (period_ms)
            return usage("--period-ms needs --rate: it sets the periods over which the rate is "
                         "measured");
        return config;
    }
    if (*rate == 0)
        return usage("--rate 0 would deliver nothing; leave --rate out for no limit");
    if (*rate > kMaxRate)
        return usage(fmt::format("--rate {} is more than any entropy source delivers (the "
                                 "largest limit is {}); leave --rate out for no limit",
                                 *rate, kMaxRate));
    RateLimit limit{*rate, kDefaultPeriod};
    if (period_ms) {
        if (*period_ms == 0 || *period_ms > static_cast<std::uint64_t>(kMaxPeriod.count()))
            return usage(
                fmt::format("--period-ms must be 1 to {}, got {}", kMaxPeriod.count(), *period_ms));
        limit.period = std::chrono::milliseconds(*period_ms);
    }
    if (limit.bytes_per_period() == 0)
        return usage(fmt::format("--rate {} with --period-ms {} allows less than one byte per "
                                 "period; raise --rate or --period-ms",
                                 *rate, limit.period.count()));
    config.rate_limit = limit;
    return config;
}

Result<RngConfig> RngConfig::from_command_line(const backend::CommandLine& command_line)
{
    VL_TRY_ASSIGN(auto rate, command_line.number("rate", "bytes per second"));
    VL_TRY_ASSIGN(auto period, command_line.number("period-ms", "milliseconds"));
    return from(rate, period);
}

// ---------------------------------------------------------------------------
// TokenBucket

TokenBucket::TokenBucket(const RateLimit& limit, Clock::time_point now)
    : per_period_(limit.bytes_per_period()),
      period_(std::chrono::duration_cast<Clock::duration>(limit.period)), period_start_(now),
      left_(per_period_)
{
}

void TokenBucket::refill(Clock::time_point now)
{
    if (now < next_refill())
        return;
    // Skip whole idle periods at once: budget never accumulates.
    const auto periods = (now - period_start_) / period_;
    period_start_ += periods * period_;
    left_ = per_period_;
}

std::uint64_t TokenBucket::available(Clock::time_point now)
{
    refill(now);
    return left_;
}

std::uint64_t TokenBucket::take(std::uint64_t wanted, Clock::time_point now)
{
    refill(now);
    const std::uint64_t granted = std::min(wanted, left_);
    left_ -= granted;
    return granted;
}

// ---------------------------------------------------------------------------
// RngDevice

RngDevice::RngDevice(const RngConfig& config, Logger logger) : logger_(std::move(logger))
{
    if (config.rate_limit)
        bucket_.emplace(*config.rate_limit, TokenBucket::Clock::now());
}

Result<std::unique_ptr<RngDevice>> RngDevice::create(const RngConfig& config, Logger logger)
{
    std::unique_ptr<RngDevice> device(new RngDevice(config, std::move(logger)));
    if (config.rate_limit) {
        // steady_clock is CLOCK_MONOTONIC on Linux, so the bucket's times
        // can arm the timer directly.
        device->timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        if (!device->timer_)
            return Error::from_errno("timerfd_create for the rate limit");
        device->logger_.info("rate limit: {} bytes per {} ms",
                             config.rate_limit->bytes_per_period(),
                             config.rate_limit->period.count());
    }
    std::array<std::byte, 16> probe{};
    if (Status s = fill_random(probe); !s)
        return s.error().wrap("the kernel's entropy source does not work");
    return device;
}

Status RngDevice::queue_started(backend::QueueContext& ctx)
{
    if (!timer_)
        return ok_status();
    return ctx.watch(timer_.get(), kTimerToken);
}

Status RngDevice::process_queue(backend::QueueContext& ctx)
{
    for (;;) {
        if (bucket_ && bucket_->available(TokenBucket::Clock::now()) == 0)
            return wait_for_budget(ctx);
        VL_TRY_ASSIGN(auto chain, ctx.pop());
        if (!chain)
            return ok_status();
        std::uint64_t allowed = chain->writable_len();
        if (bucket_)
            allowed = bucket_->take(allowed, TokenBucket::Clock::now());
        VL_TRY_ASSIGN(std::uint32_t written, fill_chain(*chain, allowed));
        VL_TRY(ctx.push(chain->head(), written));
    }
}

Status RngDevice::wait_for_budget(backend::QueueContext& ctx)
{
    const auto since_epoch = bucket_->next_refill().time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    itimerspec when{};
    when.it_value.tv_sec = static_cast<time_t>(secs.count());
    when.it_value.tv_nsec = static_cast<long>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
    if (::timerfd_settime(timer_.get(), TFD_TIMER_ABSTIME, &when, nullptr) < 0)
        return Error::from_errno("timerfd_settime for the rate limit");
    ctx.pause();
    return ok_status();
}

Status RngDevice::handle_event(backend::QueueContext& ctx, std::uint64_t token)
{
    if (token != kTimerToken)
        return ok_status();
    std::uint64_t expirations = 0;
    // Non-blocking: EAGAIN if the timer was re-armed before we read it.
    (void)!::read(timer_.get(), &expirations, sizeof(expirations));
    ctx.resume();
    return ok_status();
}

void RngDevice::queue_stopped(backend::QueueContext& ctx)
{
    (void)ctx;
    if (timer_) {
        itimerspec disarm{};
        ::timerfd_settime(timer_.get(), 0, &disarm, nullptr);
    }
}

} // namespace vl::rng
