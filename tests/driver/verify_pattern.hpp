// SPDX-License-Identifier: Apache-2.0
// The data blk-verify writes: every 512-byte sector describes itself (which
// run, which sector, which write generation) and carries a checksum, so a
// mismatch on read-back says *what* came back instead: zeros, an older
// write, another sector's data, another run's data, or garbage.
//
// Sector layout (little-endian):
//   0   le64 magic     kPatternMagic
//   8   le64 seed      the run's seed
//   16  le64 sector    the sector number it was written to
//   24  le64 generation 1 for the first write of a block, +1 per rewrite
//   32  472 bytes      pseudo-random, from (seed, sector, generation)
//   504 le64 checksum  FNV-1a 64 of bytes 0..503
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "base/result.hpp"

namespace vl::test_driver
{

inline constexpr std::size_t kPatternSectorSize = 512;
inline constexpr std::uint64_t kPatternMagic = 0x3159524556444c56; // "VLDVERY1"

struct SectorStamp {
    std::uint64_t seed = 0;
    std::uint64_t sector = 0;
    std::uint64_t generation = 0;

    friend bool operator==(const SectorStamp&, const SectorStamp&) = default;
};

// Fills `out` (a whole number of sectors) with the pattern of consecutive
// sectors from `stamp.sector` on, all with the stamp's seed and generation.
Status fill_pattern(std::span<std::byte> out, const SectorStamp& stamp);

enum class SectorVerdict {
    ok,        // exactly what was written
    zeros,     // all zero: the write never reached the disk (or was discarded)
    stale,     // a valid sector of this run, but an older generation
    misplaced, // a valid sector of this run, written to another sector
    other_run, // a valid sector with another seed (a previous run's data)
    corrupt,   // none of the above: torn or garbage data
};

struct SectorCheck {
    SectorVerdict verdict = SectorVerdict::corrupt;
    SectorStamp found; // meaningful for stale, misplaced, other_run
};

// Checks one sector against what `expected` says was written there.
SectorCheck check_sector(std::span<const std::byte, kPatternSectorSize> sector,
                         const SectorStamp& expected);

// "stale data (generation 1, expected 2)", for mismatch reports.
std::string describe(const SectorCheck& check, const SectorStamp& expected);

} // namespace vl::test_driver
