// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "test_memory.hpp"
#include "virtqueue/descriptor_chain.hpp"
#include "virtqueue/guest_memory.hpp"

namespace vl::virtq
{
namespace
{

using test::GuardedBuffer;

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

class GuestMemoryTest : public ::testing::Test
{
  protected:
    // Two regions adjacent in guest space (0x1000..0x2fff, 0x3000..0x3fff)
    // but not in host space, and one far away (0x10000..0x10fff).
    void SetUp() override
    {
        ASSERT_TRUE(memory.add_region({0x1000, 0x2000, a.data(), 0x7f0000001000}).ok());
        ASSERT_TRUE(memory.add_region({0x3000, 0x1000, b.data(), 0x7f0000100000}).ok());
        ASSERT_TRUE(memory.add_region({0x10000, 0x1000, c.data(), {}}).ok());
    }

    GuardedBuffer a{0x2000};
    GuardedBuffer b{0x1000};
    GuardedBuffer c{0x1000};
    GuestMemory memory;
};

TEST_F(GuestMemoryTest, RegionsAreSortedByGuestAddress)
{
    GuestMemory m;
    ASSERT_TRUE(m.add_region({0x3000, 0x1000, b.data(), {}}).ok());
    ASSERT_TRUE(m.add_region({0x1000, 0x2000, a.data(), {}}).ok());
    ASSERT_EQ(m.regions().size(), 2U);
    EXPECT_EQ(m.regions()[0].guest_addr, 0x1000U);
    EXPECT_EQ(m.regions()[1].guest_addr, 0x3000U);
}

TEST_F(GuestMemoryTest, RejectsBadRegions)
{
    GuardedBuffer d{0x1000};
    auto add = [&](MemoryRegion r) { return memory.add_region(r); };
    EXPECT_FALSE(add({0x20000, 0, d.data(), {}}).ok()) << "empty";
    EXPECT_FALSE(add({0x20000, 0x1000, nullptr, {}}).ok()) << "no host mapping";
    EXPECT_FALSE(add({kMax - 0xfff + 1, 0x1000, d.data(), {}}).ok()) << "guest wrap";
    EXPECT_FALSE(add({0x20000, 0x1000, d.data(), kMax - 10}).ok()) << "user wrap";
    auto overlap = add({0x2fff, 0x10, d.data(), {}});
    ASSERT_FALSE(overlap.ok()) << "overlaps the end of the first region";
    EXPECT_NE(overlap.error().message().find("overlaps"), std::string::npos);
    EXPECT_FALSE(add({0x0, 0x1001, d.data(), {}}).ok()) << "overlaps the start";
    EXPECT_FALSE(add({0x0, 0x100000, d.data(), {}}).ok()) << "covers everything";
    EXPECT_FALSE(add({0x20000, 0x1000, d.data(), 0x7f0000001800}).ok()) << "user overlap";
    EXPECT_EQ(memory.regions().size(), 3U);
    // The last byte of the address space is fine.
    EXPECT_TRUE(add({kMax - 0xfff, 0x1000, d.data(), {}}).ok());
}

TEST_F(GuestMemoryTest, TranslatesInsideOneRegion)
{
    auto spans = memory.translate(0x1010, 0x20);
    ASSERT_TRUE(spans.ok()) << spans.error().message();
    ASSERT_EQ(spans->size(), 1U);
    EXPECT_EQ((*spans)[0].data(), a.data() + 0x10);
    EXPECT_EQ((*spans)[0].size(), 0x20U);
}

TEST_F(GuestMemoryTest, TranslatesAcrossAdjacentRegions)
{
    auto spans = memory.translate(0x2ff0, 0x20);
    ASSERT_TRUE(spans.ok()) << spans.error().message();
    ASSERT_EQ(spans->size(), 2U);
    EXPECT_EQ((*spans)[0].data(), a.data() + 0x1ff0);
    EXPECT_EQ((*spans)[0].size(), 0x10U);
    EXPECT_EQ((*spans)[1].data(), b.data());
    EXPECT_EQ((*spans)[1].size(), 0x10U);
}

TEST_F(GuestMemoryTest, RejectsRangesOutsideMemory)
{
    EXPECT_FALSE(memory.translate(0x0, 1).ok()) << "below all regions";
    EXPECT_FALSE(memory.translate(0xfff, 2).ok()) << "starts before a region";
    EXPECT_FALSE(memory.translate(0x3ff0, 0x20).ok()) << "runs into a gap";
    EXPECT_FALSE(memory.translate(0x10fff, 2).ok()) << "runs off the last region";
    EXPECT_FALSE(memory.translate(0x1000, 0x4000).ok()) << "covers the gap";
    auto wrap = memory.translate(0x1000, kMax);
    ASSERT_FALSE(wrap.ok());
    EXPECT_NE(wrap.error().message().find("wraps"), std::string::npos);
    EXPECT_FALSE(memory.translate(kMax, 2).ok());
    // The region ends exactly at the last allowed byte.
    EXPECT_TRUE(memory.translate(0x10fff, 1).ok());
}

TEST_F(GuestMemoryTest, FailedTranslateLeavesOutputUnchanged)
{
    HostBuffers out;
    ASSERT_TRUE(memory.translate(0x1000, 8, out).ok());
    EXPECT_FALSE(memory.translate(0x2ff0, 0x1020, out).ok()); // crosses two regions then a gap
    EXPECT_EQ(out.size(), 1U);
}

TEST_F(GuestMemoryTest, EmptyRangeTranslatesToNothing)
{
    HostBuffers out;
    EXPECT_TRUE(memory.translate(0xdead0000, 0, out).ok());
    EXPECT_TRUE(out.empty());
}

TEST_F(GuestMemoryTest, ContiguousTranslationRefusesStraddling)
{
    EXPECT_TRUE(memory.translate_contiguous(0x1000, 0x2000).ok());
    EXPECT_FALSE(memory.translate_contiguous(0x2ff0, 0x20).ok());
    EXPECT_FALSE(memory.translate_contiguous(0x1000, 0).ok());
    EXPECT_FALSE(memory.translate_contiguous(0x10000, kMax).ok());
}

TEST_F(GuestMemoryTest, TranslatesFrontEndUserAddresses)
{
    auto guest = memory.user_to_guest(0x7f0000001010, 0x10);
    ASSERT_TRUE(guest.ok()) << guest.error().message();
    EXPECT_EQ(*guest, 0x1010U);
    auto host = memory.translate_user_addr(0x7f0000100008, 8);
    ASSERT_TRUE(host.ok());
    EXPECT_EQ(host->data(), b.data() + 8);

    EXPECT_FALSE(memory.user_to_guest(0x7f0000002ff8, 0x10).ok()) << "runs off the region";
    EXPECT_FALSE(memory.user_to_guest(0x10000, 1).ok()) << "region without user address";
    EXPECT_FALSE(memory.user_to_guest(0x7f0000001000, 0).ok());
    EXPECT_FALSE(memory.user_to_guest(kMax, 2).ok());
}

TEST_F(GuestMemoryTest, ReadsAndWritesAcrossRegions)
{
    std::array<std::byte, 32> in{};
    std::iota(reinterpret_cast<unsigned char*>(in.data()),
              reinterpret_cast<unsigned char*>(in.data() + in.size()), 1);
    ASSERT_TRUE(memory.write(0x2ff0, in).ok());
    EXPECT_EQ(std::to_integer<int>(a.data()[0x1fff]), 16);
    EXPECT_EQ(std::to_integer<int>(b.data()[0]), 17);
    std::array<std::byte, 32> out{};
    ASSERT_TRUE(memory.read(0x2ff0, out).ok());
    EXPECT_EQ(in, out);
    EXPECT_FALSE(memory.read(0x3ff0, out).ok());
}

TEST_F(GuestMemoryTest, RemovesRegionsByAddressAndSize)
{
    EXPECT_FALSE(memory.remove_region(0x3000, 0x2000).ok()) << "size must match";
    ASSERT_TRUE(memory.remove_region(0x3000, 0x1000).ok());
    EXPECT_EQ(memory.regions().size(), 2U);
    EXPECT_FALSE(memory.translate(0x3000, 1).ok());
    EXPECT_FALSE(memory.remove_region(0x3000, 0x1000).ok());
}

TEST(CopyBuffers, CopiesAcrossSpanBoundariesWithOffsets)
{
    std::array<std::byte, 3> x{};
    std::array<std::byte, 0> empty{};
    std::array<std::byte, 4> y{};
    const std::vector<std::span<std::byte>> spans{x, empty, y};
    const std::array<std::byte, 5> in{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4},
                                      std::byte{5}};
    EXPECT_EQ(copy_to_buffers(spans, 1, in), 5U);
    EXPECT_EQ(std::to_integer<int>(x[1]), 1);
    EXPECT_EQ(std::to_integer<int>(x[2]), 2);
    EXPECT_EQ(std::to_integer<int>(y[0]), 3);
    EXPECT_EQ(std::to_integer<int>(y[2]), 5);
    std::array<std::byte, 10> out{};
    EXPECT_EQ(copy_from_buffers(spans, 2, out), 5U) << "short copy at the end";
    EXPECT_EQ(std::to_integer<int>(out[0]), 2);
    EXPECT_EQ(std::to_integer<int>(out[3]), 5);
    EXPECT_EQ(copy_from_buffers(spans, 7, out), 0U) << "offset at the end";
    EXPECT_EQ(copy_from_buffers(spans, 100, out), 0U) << "offset past the end";
}

TEST(DescriptorChain, RejectsReadableAfterWritableAndHugeTotals)
{
    std::array<std::byte, 8> buf{};
    const std::vector<std::span<std::byte>> spans{buf};
    DescriptorChain chain;
    chain.reset(3);
    ASSERT_TRUE(chain.append(spans, 8, false).ok());
    ASSERT_TRUE(chain.append({}, 0, true).ok()) << "zero-length writable";
    auto bad = chain.append(spans, 8, false);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.error().message().find("readable descriptor after a device-writable"),
              std::string::npos);
    EXPECT_EQ(chain.descriptor_count(), 2U);
    EXPECT_EQ(chain.readable_len(), 8U);

    DescriptorChain big;
    big.reset(0);
    ASSERT_TRUE(big.append(spans, 0xffffffffU - 8, false).ok());
    ASSERT_TRUE(big.append(spans, 8, true).ok());
    EXPECT_FALSE(big.append({}, 1, true).ok()) << "2^32 bytes in total";
    EXPECT_EQ(big.writable_len(), 8U);
}

TEST(DescriptorChain, ExactCopiesReportWhatDoesNotFit)
{
    std::array<std::byte, 4> r1{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
    std::array<std::byte, 4> r2{std::byte{5}, std::byte{6}, std::byte{7}, std::byte{8}};
    std::array<std::byte, 2> w1{};
    std::array<std::byte, 3> w2{};
    DescriptorChain chain;
    chain.reset(0);
    ASSERT_TRUE(chain.append(std::vector<std::span<std::byte>>{r1}, 4, false).ok());
    ASSERT_TRUE(chain.append(std::vector<std::span<std::byte>>{r2}, 4, false).ok());
    ASSERT_TRUE(chain.append(std::vector<std::span<std::byte>>{w1, w2}, 5, true).ok());

    std::array<std::byte, 4> out{};
    ASSERT_TRUE(chain.read_exact(out, 2).ok());
    EXPECT_EQ(std::to_integer<int>(out[0]), 3);
    EXPECT_EQ(std::to_integer<int>(out[3]), 6);
    auto too_far = chain.read_exact(out, 5, "request header");
    ASSERT_FALSE(too_far.ok());
    EXPECT_EQ(too_far.error().message(), "request header needs 4 bytes at offset 5 of the "
                                         "device-readable part, which has 8 bytes");
    EXPECT_EQ(chain.read_into(out, 5), 3U);

    const std::array<std::byte, 3> status{std::byte{9}, std::byte{10}, std::byte{11}};
    ASSERT_TRUE(chain.write_exact(status, 1).ok());
    EXPECT_EQ(std::to_integer<int>(w1[1]), 9);
    EXPECT_EQ(std::to_integer<int>(w2[1]), 11);
    EXPECT_FALSE(chain.write_exact(status, 3).ok());
    EXPECT_EQ(std::to_integer<int>(w2[2]), 0) << "a failed exact write copies nothing";
    EXPECT_EQ(chain.write_from(status, 3), 2U);
}

} // namespace
} // namespace vl::virtq
