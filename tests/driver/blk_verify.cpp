// SPDX-License-Identifier: Apache-2.0
#include "blk_verify.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <numeric>
#include <optional>
#include <random>

#include "verify_pattern.hpp"

namespace vl::test_driver
{

namespace
{

using Clock = std::chrono::steady_clock;

struct Op {
    std::uint64_t block = 0;
    bool write = false;
};

// One verification run: the expected generation of each block, and the
// requests in flight by ring head.
class VerifyRun
{
  public:
    VerifyRun(BlkDriver& blk, const VerifyParams& params, const Logger& logger)
        : blk_(blk), params_(params), logger_(logger),
          blocks_(params.region_bytes / params.request_bytes),
          sectors_per_block_(params.request_bytes / kSectorSize), generation_(blocks_, 0),
          busy_(blocks_, false), slots_(blk.driver().queue_size())
    {
        report_.blocks = blocks_;
    }

    Result<VerifyReport> run();

  private:
    struct Slot {
        BlkRequest request;
        Op op;
    };

    [[nodiscard]] std::vector<Op> write_ops();
    [[nodiscard]] std::vector<Op> read_ops();
    Status run_ops(const std::vector<Op>& ops);
    Status submit(const Op& op);
    Status complete_one();
    void check_block(std::uint64_t block, std::span<const std::byte> data);
    void record(std::uint64_t sector, std::string what);
    Status check_write_zeroes();
    Status check_discard();

    BlkDriver& blk_;
    const VerifyParams& params_;
    const Logger& logger_;
    std::uint64_t blocks_;
    std::uint64_t sectors_per_block_;
    std::vector<std::uint64_t> generation_;  // last generation written; 0 = never
    std::vector<bool> busy_;                 // a request for the block is in flight
    std::vector<std::optional<Slot>> slots_; // by head
    std::uint32_t in_flight_ = 0;
    std::mt19937_64 rng_{params_.seed};
    VerifyReport report_;
};

std::vector<Op> VerifyRun::write_ops()
{
    const std::uint64_t writes = params_.writes == 0 ? blocks_ : params_.writes;
    std::vector<std::uint64_t> order(blocks_);
    std::vector<Op> ops;
    ops.reserve(writes);
    // Each pass over the region in a fresh random order; later passes
    // rewrite blocks, which read-back must see as the newest generation.
    while (ops.size() < writes) {
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng_);
        for (std::uint64_t b : order) {
            if (ops.size() == writes)
                break;
            ops.push_back({b, true});
        }
    }
    return ops;
}

std::vector<Op> VerifyRun::read_ops()
{
    std::vector<Op> ops;
    for (std::uint64_t b = 0; b < blocks_; ++b)
        if (generation_[b] != 0)
            ops.push_back({b, false});
    std::shuffle(ops.begin(), ops.end(), rng_);
    return ops;
}

Status VerifyRun::submit(const Op& op)
{
    const std::uint64_t sector = op.block * sectors_per_block_;
    std::optional<BlkRequest> request;
    if (op.write) {
        // The pattern is built in place in a temporary, then copied into the
        // request's guest buffer by make_write().
        std::vector<std::byte> data(params_.request_bytes);
        VL_TRY(fill_pattern(data, {params_.seed, sector, generation_[op.block] + 1}));
        VL_TRY_ASSIGN(request, blk_.make_write(sector, data));
    } else {
        VL_TRY_ASSIGN(request, blk_.make_read(sector, params_.request_bytes));
    }
    VL_TRY_ASSIGN(std::uint16_t head, blk_.submit(params_.queue, *request));
    slots_[head].emplace(Slot{std::move(*request), op});
    busy_[op.block] = true;
    ++in_flight_;
    return ok_status();
}

Status VerifyRun::complete_one()
{
    VL_TRY_ASSIGN(virtq::UsedBuffer used, blk_.wait(params_.queue));
    if (!slots_[used.head]) // the ring checked the head is in flight: our bug if this trips
        return Error(fmt::format("completed head {} has no request", used.head), EPROTO);
    Slot slot = std::move(*slots_[used.head]);
    slots_[used.head].reset();
    --in_flight_;
    busy_[slot.op.block] = false;
    VL_TRY(slot.request.result());
    if (slot.op.write) {
        ++generation_[slot.op.block];
        ++report_.writes;
    } else {
        check_block(slot.op.block, slot.request.data());
        ++report_.reads;
    }
    return ok_status();
}

Status VerifyRun::run_ops(const std::vector<Op>& ops)
{
    std::size_t next = 0;
    while (next < ops.size() || in_flight_ > 0) {
        // Fill the queue up to the depth; never two requests for one block
        // at once (their order would be undefined).
        while (next < ops.size() && in_flight_ < params_.queue_depth && !busy_[ops[next].block]) {
            Status submitted = submit(ops[next]);
            if (!submitted) {
                // A full ring or memory pool is back-pressure while requests
                // are in flight: complete one and try again.
                const int code = submitted.error().code();
                if ((code == EAGAIN || code == ENOMEM) && in_flight_ > 0)
                    break;
                return submitted;
            }
            ++next;
        }
        if (in_flight_ > 0)
            VL_TRY(complete_one());
    }
    return ok_status();
}

void VerifyRun::record(std::uint64_t sector, std::string what)
{
    ++report_.mismatched_sectors;
    if (report_.first_mismatches.size() < VerifyReport::kMaxReported) {
        logger_.debug("sector {}: {}", sector, what);
        report_.first_mismatches.push_back({sector, std::move(what)});
    }
}

void VerifyRun::check_block(std::uint64_t block, std::span<const std::byte> data)
{
    const std::uint64_t first = block * sectors_per_block_;
    for (std::uint64_t i = 0; i < sectors_per_block_; ++i) {
        const SectorStamp expected{params_.seed, first + i, generation_[block]};
        auto sector = std::span<const std::byte, kPatternSectorSize>(
            data.data() + i * kPatternSectorSize, kPatternSectorSize);
        const SectorCheck check = check_sector(sector, expected);
        ++report_.sectors_checked;
        if (check.verdict != SectorVerdict::ok)
            record(first + i, describe(check, expected));
    }
}

Status VerifyRun::check_write_zeroes()
{
    const auto& limits = blk_.config().write_zeroes;
    if (!limits) {
        report_.write_zeroes = "not offered";
        return ok_status();
    }
    // Zero block 0 (as much of it as one request may cover), read it back.
    const auto sectors = static_cast<std::uint32_t>(std::min<std::uint64_t>(
        sectors_per_block_, std::max<std::uint32_t>(limits->max_sectors, 1)));
    VL_TRY(blk_.write_zeroes(params_.queue, 0, sectors, false));
    std::vector<std::byte> data(std::size_t{sectors} * kSectorSize);
    VL_TRY(blk_.read(params_.queue, 0, data));
    for (std::uint32_t i = 0; i < sectors; ++i) {
        auto sector = std::span(data).subspan(std::size_t{i} * kSectorSize, kSectorSize);
        if (std::any_of(sector.begin(), sector.end(),
                        [](std::byte b) { return b != std::byte{0}; }))
            record(i, "not zero after WRITE_ZEROES");
    }
    report_.write_zeroes = "ok";
    return ok_status();
}

Status VerifyRun::check_discard()
{
    const auto& limits = blk_.config().discard;
    if (!limits) {
        report_.discard = "not offered";
        return ok_status();
    }
    // Discarded data reads back as anything (the spec promises nothing), so
    // only the completion status is checked. The range respects the
    // device's size limit and alignment.
    std::uint64_t sectors = std::min<std::uint64_t>(
        sectors_per_block_, std::max<std::uint32_t>(limits->max_sectors, 1));
    if (limits->sector_alignment > 1)
        sectors -= sectors % limits->sector_alignment;
    if (sectors == 0) {
        report_.discard = "skipped (alignment larger than a block)";
        return ok_status();
    }
    VL_TRY(blk_.discard(params_.queue, 0, static_cast<std::uint32_t>(sectors)));
    report_.discard = "ok";
    return ok_status();
}

Result<VerifyReport> VerifyRun::run()
{
    auto t0 = Clock::now();
    VL_TRY(run_ops(write_ops()));
    if (blk_.config().flush) {
        VL_TRY(blk_.flush(params_.queue));
        report_.flush = "ok";
    }
    auto t1 = Clock::now();
    VL_TRY(run_ops(read_ops()));
    auto t2 = Clock::now();
    report_.write_seconds = t1 - t0;
    report_.read_seconds = t2 - t1;
    if (params_.check_zeroes) {
        VL_TRY(check_write_zeroes());
        VL_TRY(check_discard());
    }
    return report_;
}

Status check_params(BlkDriver& blk, const VerifyParams& p)
{
    if (p.request_bytes == 0 || p.request_bytes % kSectorSize != 0)
        return Error(fmt::format("request size {} is not a non-zero multiple of {}",
                                 p.request_bytes, kSectorSize),
                     EINVAL);
    if (p.region_bytes < p.request_bytes || p.region_bytes % p.request_bytes != 0)
        return Error(fmt::format("region of {} bytes is not a whole number of {}-byte requests",
                                 p.region_bytes, p.request_bytes),
                     EINVAL);
    if (p.region_bytes > blk.config().capacity_bytes())
        return Error(fmt::format("region of {} bytes is larger than the device ({} bytes)",
                                 p.region_bytes, blk.config().capacity_bytes()),
                     EINVAL);
    if (blk.config().read_only)
        return Error("the device is read-only; blk-verify needs to write", EROFS);
    if (p.queue >= blk.queue_count())
        return Error(fmt::format("queue {} does not exist; the device has {} queues", p.queue,
                                 blk.queue_count()),
                     EINVAL);
    if (p.queue_depth == 0)
        return Error("queue depth 0: at least one request must be in flight", EINVAL);
    return ok_status();
}

} // namespace

Result<VerifyReport> run_blk_verify(BlkDriver& blk, const VerifyParams& params,
                                    const Logger& logger)
{
    VL_TRY(check_params(blk, params));
    VerifyRun run(blk, params, logger);
    return run.run();
}

} // namespace vl::test_driver
