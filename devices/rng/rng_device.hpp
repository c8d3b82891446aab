// SPDX-License-Identifier: Apache-2.0
// vhost-user-rng: a virtio entropy device (virtio 1.2, 5.4). One request
// queue; every device-writable buffer the driver offers is filled from the
// kernel's entropy pool (getrandom(2)). An optional rate limit gives at
// most N bytes per second, measured in periods: at most
// rate * period bytes in each period. Out of budget, the queue pauses until
// the next period (a timerfd on the queue's worker: no busy waiting, other
// queues and the control thread never wait for it). The budget belongs to
// the device, not to a connection: a front-end cannot refill it by
// reconnecting.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "backend/device.hpp"
#include "backend/program.hpp"
#include "base/log.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vl::rng
{

inline constexpr std::chrono::milliseconds kDefaultPeriod{1000};
// As QEMU's virtio-rng and rust-vmm's vhost-device-rng.
inline constexpr std::chrono::milliseconds kMaxPeriod{65536};
// Far more than getrandom(2) delivers: a larger "limit" limits nothing.
inline constexpr std::uint64_t kMaxRate = std::uint64_t{1} << 40;

struct RateLimit {
    std::uint64_t bytes_per_second = 0;
    std::chrono::milliseconds period = kDefaultPeriod;

    [[nodiscard]] std::uint64_t bytes_per_period() const
    {
        return bytes_per_second * static_cast<std::uint64_t>(period.count()) / 1000;
    }
    friend bool operator==(const RateLimit&, const RateLimit&) = default;
};

// The validated configuration of the device.
struct RngConfig {
    std::optional<RateLimit> rate_limit; // none: no limit

    // --rate BYTES_PER_SEC and --period-ms N as given (nullopt: absent).
    // The errors say what to change.
    static Result<RngConfig> from(std::optional<std::uint64_t> rate,
                                  std::optional<std::uint64_t> period_ms);
    static Result<RngConfig> from_command_line(const backend::CommandLine& command_line);

    friend bool operator==(const RngConfig&, const RngConfig&) = default;
};

// The device's own command line options.
[[nodiscard]] std::vector<backend::OptionSpec> rng_options();

// The budget of a rate limit: refilled to bytes_per_period() at every
// period boundary (unused budget does not carry over), so no period ever
// delivers more than that.
class TokenBucket
{
  public:
    using Clock = std::chrono::steady_clock;

    TokenBucket(const RateLimit& limit, Clock::time_point now);

    // Budget left in the period that contains `now`.
    std::uint64_t available(Clock::time_point now);
    // Takes up to `wanted` bytes of budget; returns how many it got.
    std::uint64_t take(std::uint64_t wanted, Clock::time_point now);
    // When the budget is next refilled.
    [[nodiscard]] Clock::time_point next_refill() const { return period_start_ + period_; }

  private:
    void refill(Clock::time_point now);

    std::uint64_t per_period_;
    Clock::duration period_;
    Clock::time_point period_start_;
    std::uint64_t left_;
};

class RngDevice final : public backend::Device
{
  public:
    static constexpr std::uint32_t kQueueSize = 1024;

    static Result<std::unique_ptr<RngDevice>> create(const RngConfig& config, Logger logger);

    [[nodiscard]] std::uint32_t num_queues() const override { return 1; }
    [[nodiscard]] std::uint32_t max_queue_size() const override { return kQueueSize; }
    [[nodiscard]] std::uint64_t features() const override { return 0; }

    Status queue_started(backend::QueueContext& ctx) override;
    Status process_queue(backend::QueueContext& ctx) override;
    Status handle_event(backend::QueueContext& ctx, std::uint64_t token) override;
    void queue_stopped(backend::QueueContext& ctx) override;

  private:
    RngDevice(const RngConfig& config, Logger logger);
    // Pauses the queue until the budget refills.
    Status wait_for_budget(backend::QueueContext& ctx);

    std::optional<TokenBucket> bucket_; // worker thread of queue 0 only
    UniqueFd timer_;                    // timerfd, with a rate limit
    Logger logger_;
};

} // namespace vl::rng
