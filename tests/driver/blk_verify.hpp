// SPDX-License-Identifier: Apache-2.0
// blk-verify as a library function: writes the self-describing pattern of
// verify_pattern.hpp over a region of a virtio-blk device in random block
// order with many requests in flight, flushes, reads every written block
// back and checks each sector; then checks WRITE_ZEROES (reads back zeros)
// and DISCARD (completes OK) when the device offers them. Used by the
// vl-test-driver tool and by in-process tests of back-ends.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/result.hpp"
#include "blk_driver.hpp"

namespace vl::test_driver
{

struct VerifyParams {
    std::uint32_t queue = 0;
    std::uint64_t region_bytes = std::uint64_t{16} << 20; // from sector 0
    std::uint32_t request_bytes = 64 << 10;               // one block per request
    std::uint64_t writes = 0;                             // 0: each block once
    std::uint32_t queue_depth = 16;
    std::uint64_t seed = 1;
    bool check_zeroes = true; // WRITE_ZEROES and DISCARD checks
};

struct Mismatch {
    std::uint64_t sector = 0;
    std::string what;
};

struct VerifyReport {
    std::uint64_t blocks = 0; // blocks in the region
    std::uint64_t writes = 0;
    std::uint64_t reads = 0;
    std::uint64_t sectors_checked = 0;
    std::uint64_t mismatched_sectors = 0;
    std::vector<Mismatch> first_mismatches; // at most kMaxReported
    std::string flush = "not offered";      // "ok" or "not offered"
    std::string write_zeroes = "skipped";   // "ok", "not offered", "skipped"
    std::string discard = "skipped";        // "ok", "not offered", "skipped"
    std::chrono::duration<double> write_seconds{};
    std::chrono::duration<double> read_seconds{};

    static constexpr std::size_t kMaxReported = 16;
    [[nodiscard]] bool passed() const noexcept { return mismatched_sectors == 0; }
};

// Runs the verification. Data mismatches are reported (passed() false);
// an Error means a request failed, timed out or the back-end broke the
// protocol, or the parameters do not fit the device.
Result<VerifyReport> run_blk_verify(BlkDriver& blk, const VerifyParams& params,
                                    const Logger& logger);

} // namespace vl::test_driver
