// SPDX-License-Identifier: Apache-2.0
#include "verify_pattern.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

#include "virtqueue/ring.hpp"

namespace vl::test_driver
{

namespace
{

constexpr std::size_t kSeedOffset = 8;
constexpr std::size_t kSectorOffset = 16;
constexpr std::size_t kGenerationOffset = 24;
constexpr std::size_t kPayloadOffset = 32;
constexpr std::size_t kChecksumOffset = kPatternSectorSize - 8;

std::uint64_t fnv1a64(std::span<const std::byte> bytes)
{
    std::uint64_t hash = 0xcbf29ce484222325;
    for (std::byte b : bytes) {
        hash ^= std::to_integer<std::uint64_t>(b);
        hash *= 0x100000001b3;
    }
    return hash;
}

// splitmix64: a tiny, well-mixed generator; the payload only has to differ
// between (seed, sector, generation) triples, not be cryptographic.
std::uint64_t splitmix64(std::uint64_t& state)
{
    std::uint64_t z = (state += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    return z ^ (z >> 31);
}

void fill_sector(std::byte* out, const SectorStamp& stamp)
{
    virtq::store_le64(out, kPatternMagic);
    virtq::store_le64(out + kSeedOffset, stamp.seed);
    virtq::store_le64(out + kSectorOffset, stamp.sector);
    virtq::store_le64(out + kGenerationOffset, stamp.generation);
    std::uint64_t state = stamp.seed ^ (stamp.sector * 0x9e3779b97f4a7c15) ^
                          (stamp.generation << 48) ^ (stamp.generation >> 16);
    for (std::size_t off = kPayloadOffset; off < kChecksumOffset; off += 8)
        virtq::store_le64(out + off, splitmix64(state));
    virtq::store_le64(out + kChecksumOffset,
                      fnv1a64(std::span<const std::byte>(out, kChecksumOffset)));
}

} // namespace

Status fill_pattern(std::span<std::byte> out, const SectorStamp& stamp)
{
    if (out.size() % kPatternSectorSize != 0)
        return Error(
            fmt::format("pattern buffer of {} bytes is not a whole number of sectors", out.size()),
            EINVAL);
    SectorStamp s = stamp;
    for (std::size_t off = 0; off < out.size(); off += kPatternSectorSize, ++s.sector)
        fill_sector(out.data() + off, s);
    return ok_status();
}

SectorCheck check_sector(std::span<const std::byte, kPatternSectorSize> sector,
                         const SectorStamp& expected)
{
    std::array<std::byte, kPatternSectorSize> want{};
    fill_sector(want.data(), expected);
    if (std::equal(sector.begin(), sector.end(), want.begin()))
        return {SectorVerdict::ok, expected};
    if (std::all_of(sector.begin(), sector.end(), [](std::byte b) { return b == std::byte{0}; }))
        return {SectorVerdict::zeros, {}};

    const std::byte* p = sector.data();
    const bool intact =
        virtq::load_le64(p) == kPatternMagic &&
        virtq::load_le64(p + kChecksumOffset) == fnv1a64(sector.first(kChecksumOffset));
    if (!intact)
        return {SectorVerdict::corrupt, {}};
    SectorStamp found{virtq::load_le64(p + kSeedOffset), virtq::load_le64(p + kSectorOffset),
                      virtq::load_le64(p + kGenerationOffset)};
    // A checksum-valid sector whose stamp equals ours but whose bytes differ
    // cannot come from fill_sector: treat it as corrupt.
    if (found == expected)
        return {SectorVerdict::corrupt, found};
    if (found.seed != expected.seed)
        return {SectorVerdict::other_run, found};
    if (found.sector != expected.sector)
        return {SectorVerdict::misplaced, found};
    return {SectorVerdict::stale, found};
}

std::string describe(const SectorCheck& check, const SectorStamp& expected)
{
    switch (check.verdict) {
    case SectorVerdict::ok:
        return "ok";
    case SectorVerdict::zeros:
        return "zeros (the write did not land)";
    case SectorVerdict::stale:
        return fmt::format("stale data (generation {}, expected {})", check.found.generation,
                           expected.generation);
    case SectorVerdict::misplaced:
        return fmt::format("data written for sector {} (generation {})", check.found.sector,
                           check.found.generation);
    case SectorVerdict::other_run:
        return fmt::format("data of another run (seed {:#x}, sector {})", check.found.seed,
                           check.found.sector);
    case SectorVerdict::corrupt:
        return "corrupt data (bad magic or checksum)";
    }
    return "unknown";
}

} // namespace vl::test_driver
