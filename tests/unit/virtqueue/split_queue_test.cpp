// SPDX-License-Identifier: Apache-2.0
// The device side against a hand-written (often hostile) driver.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "test_memory.hpp"
#include "virtqueue/split_queue.hpp"

namespace vl::virtq
{
namespace
{

using test::GuardedBuffer;
using test::RawRing;

constexpr std::uint16_t N = kDescFlagNext;
constexpr std::uint16_t W = kDescFlagWrite;
constexpr std::uint16_t I = kDescFlagIndirect;

// Pops once and expects the queue to break with a reason containing `what`.
void expect_broken(SplitQueue& q, const std::string& what)
{
    auto r = q.pop();
    ASSERT_FALSE(r.ok()) << "expected an error containing: " << what;
    EXPECT_NE(r.error().message().find(what), std::string::npos) << r.error().message();
    EXPECT_TRUE(q.broken());
    EXPECT_EQ(q.broken_reason(), r.error().message());
    // It stays broken, with the same reason, and refuses everything.
    auto again = q.pop();
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().message(), r.error().message());
    EXPECT_FALSE(q.push(0, 0).ok());
    EXPECT_FALSE(q.needs_notification());
    EXPECT_FALSE(q.enable_notification());
}

DescriptorChain pop_one(SplitQueue& q)
{
    auto r = q.pop();
    if (!r.ok()) {
        ADD_FAILURE() << r.error().message();
        return {};
    }
    if (!r->has_value()) {
        ADD_FAILURE() << "queue unexpectedly empty";
        return {};
    }
    return std::move(**r);
}

// ---------------------------------------------------------------- set-up

TEST(SplitQueueCreate, RejectsBadSizes)
{
    RawRing ring(8);
    for (std::uint32_t size : {0U, 3U, 6U, 65536U, 32769U}) {
        QueueConfig c = ring.config();
        c.size = size;
        auto q = SplitQueue::create(ring.memory(), c);
        ASSERT_FALSE(q.ok()) << size;
        EXPECT_NE(q.error().message().find("power of two"), std::string::npos);
    }
}

TEST(SplitQueueCreate, AcceptsLargestQueue)
{
    GuardedBuffer buf(1 << 20);
    GuestMemory mem;
    ASSERT_TRUE(mem.add_region({0, buf.size(), buf.data(), {}}).ok());
    QueueConfig c;
    c.size = kMaxQueueSize;
    c.desc_addr = 0;
    c.avail_addr = 0x80000;
    c.used_addr = 0x90000;
    c.event_idx = true;
    EXPECT_TRUE(SplitQueue::create(mem, c).ok());
}

TEST(SplitQueueCreate, RejectsMisalignedParts)
{
    RawRing ring(8);
    QueueConfig c = ring.config();
    c.desc_addr += 8;
    EXPECT_FALSE(SplitQueue::create(ring.memory(), c).ok());
    c = ring.config();
    c.avail_addr += 1;
    EXPECT_FALSE(SplitQueue::create(ring.memory(), c).ok());
    c = ring.config();
    c.used_addr += 2;
    EXPECT_FALSE(SplitQueue::create(ring.memory(), c).ok());
}

TEST(SplitQueueCreate, RejectsPartsOutsideOneRegion)
{
    RawRing ring(8, true);
    QueueConfig c = ring.config();
    c.used_addr = RawRing::kBase + RawRing::kRegionSize - used_ring_bytes(8, true) + 4;
    auto q = SplitQueue::create(ring.memory(), c);
    ASSERT_FALSE(q.ok());
    EXPECT_NE(q.error().message().find("used ring"), std::string::npos) << q.error().message();
    c = ring.config();
    c.desc_addr = 0;
    EXPECT_FALSE(SplitQueue::create(ring.memory(), c).ok());
    c = ring.config();
    c.avail_addr = 0xfffffffffffffffe;
    EXPECT_FALSE(SplitQueue::create(ring.memory(), c).ok());
}

TEST(SplitQueueCreate, RejectsRingStraddlingTwoRegions)
{
    GuardedBuffer a(0x1000);
    GuardedBuffer b(0x1000);
    GuestMemory mem;
    ASSERT_TRUE(mem.add_region({0x0, 0x1000, a.data(), {}}).ok());
    ASSERT_TRUE(mem.add_region({0x1000, 0x1000, b.data(), {}}).ok());
    QueueConfig c;
    c.size = 64;         // 1 KiB table
    c.desc_addr = 0xe00; // 0xe00..0x11ff crosses into the second region
    c.avail_addr = 0x1400;
    c.used_addr = 0x1600;
    auto q = SplitQueue::create(mem, c);
    ASSERT_FALSE(q.ok());
    EXPECT_NE(q.error().message().find("descriptor table"), std::string::npos);
    c.desc_addr = 0x800;
    EXPECT_TRUE(SplitQueue::create(mem, c).ok());
}

TEST(SplitQueueCreate, StartsFromBaseAndUsedIndexInMemory)
{
    RawRing ring(8);
    ring.set_used_idx(700);
    ring.set_avail_idx(701);
    ring.set_desc(5, RawRing::addr(0), 16, 0);
    // The available slot for index 700 is 700 % 8 = 4.
    store_le16(ring.host(ring.config().avail_addr) + ring_offset::avail_entry(4), 5);
    SplitQueue q = ring.queue(700);
    EXPECT_EQ(q.last_avail_idx(), 700);
    EXPECT_EQ(q.used_idx(), 700);
    DescriptorChain c = pop_one(q);
    EXPECT_EQ(c.head(), 5);
    ASSERT_TRUE(q.push(5, 0).ok());
    EXPECT_EQ(ring.used_idx(), 701);
    EXPECT_EQ(ring.used_elem(700).first, 5U);
}

// ---------------------------------------------------------------- good chains

TEST(SplitQueuePop, EmptyQueueGivesNothing)
{
    RawRing ring(8);
    SplitQueue q = ring.queue();
    auto r = q.pop();
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->has_value());
    EXPECT_EQ(*q.available(), 0);
}

TEST(SplitQueuePop, SplitsReadableAndWritableParts)
{
    RawRing ring(8);
    std::memcpy(ring.data(0), "hello ", 6);
    std::memcpy(ring.data(0x100), "world", 5);
    ring.set_desc(2, RawRing::addr(0), 6, N, 7);
    ring.set_desc(7, RawRing::addr(0x100), 5, N, 0);
    ring.set_desc(0, RawRing::addr(0x200), 3, W | N, 1);
    ring.set_desc(1, RawRing::addr(0x300), 100, W);
    ring.make_available(2);
    SplitQueue q = ring.queue();
    EXPECT_EQ(*q.available(), 1);

    DescriptorChain c = pop_one(q);
    EXPECT_EQ(c.head(), 2);
    EXPECT_EQ(c.descriptor_count(), 4U);
    EXPECT_FALSE(c.used_indirect());
    ASSERT_EQ(c.readable().size(), 2U);
    ASSERT_EQ(c.writable().size(), 2U);
    EXPECT_EQ(c.readable_len(), 11U);
    EXPECT_EQ(c.writable_len(), 103U);
    EXPECT_EQ(c.readable()[0].data(), ring.data(0));
    EXPECT_EQ(c.writable()[1].data(), ring.data(0x300));

    std::array<char, 11> text{};
    EXPECT_EQ(c.read_into(std::as_writable_bytes(std::span(text))), 11U);
    EXPECT_EQ(std::string(text.data(), text.size()), "hello world");
    EXPECT_EQ(c.write_from(test::as_bytes("abcde"), 1), 5U);
    EXPECT_EQ(std::memcmp(ring.data(0x201), "ab", 2), 0);
    EXPECT_EQ(std::memcmp(ring.data(0x300), "cde", 3), 0);

    EXPECT_TRUE(q.is_in_flight(2));
    EXPECT_EQ(q.in_flight_count(), 1U);
    EXPECT_EQ(q.last_avail_idx(), 1);
    ASSERT_TRUE(q.push(2, 6).ok());
    EXPECT_EQ(ring.used_idx(), 1);
    EXPECT_EQ(ring.used_elem(0), std::make_pair(2U, 6U));
    EXPECT_FALSE(q.is_in_flight(2));
}

TEST(SplitQueuePop, ZeroLengthDescriptorsAreCountedButNotTranslated)
{
    RawRing ring(4);
    ring.set_desc(0, 0xdeadbeef000, 0, N, 1); // address never used
    ring.set_desc(1, RawRing::addr(0), 4, W);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    DescriptorChain c = pop_one(q);
    EXPECT_EQ(c.descriptor_count(), 2U);
    EXPECT_TRUE(c.readable().empty());
    EXPECT_EQ(c.writable_len(), 4U);
}

TEST(SplitQueuePop, ChainAsLongAsTheQueueIsFine)
{
    RawRing ring(8);
    for (std::uint16_t i = 0; i < 8; ++i)
        ring.set_desc(i, RawRing::addr(i * 16U), 16, i < 7 ? N : 0,
                      static_cast<std::uint16_t>(i + 1));
    ring.make_available(0);
    SplitQueue q = ring.queue();
    EXPECT_EQ(pop_one(q).readable_len(), 128U);
}

TEST(SplitQueuePop, BufferStraddlingAdjacentRegionsGivesTwoSpans)
{
    RawRing ring(4);
    GuardedBuffer extra(0x1000);
    const std::uint64_t next_region = RawRing::kBase + RawRing::kRegionSize;
    ASSERT_TRUE(ring.memory().add_region({next_region, 0x1000, extra.data(), {}}).ok());
    ring.set_desc(0, next_region - 8, 16, W);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    DescriptorChain c = pop_one(q);
    ASSERT_EQ(c.writable().size(), 2U);
    EXPECT_EQ(c.writable()[1].data(), extra.data());
    const std::array<std::byte, 16> ones = [] {
        std::array<std::byte, 16> a{};
        a.fill(std::byte{1});
        return a;
    }();
    EXPECT_EQ(c.write_from(ones), 16U);
    EXPECT_EQ(std::to_integer<int>(extra.data()[7]), 1);
    EXPECT_EQ(std::to_integer<int>(extra.data()[8]), 0);
}

TEST(SplitQueuePop, IndicesWrapAt65535)
{
    RawRing ring(4);
    ring.set_desc(0, RawRing::addr(0), 1, 0);
    ring.set_avail_idx(65534);
    ring.set_used_idx(65534);
    SplitQueue q = ring.queue(65534);
    for (int i = 0; i < 6; ++i) {
        ring.make_available(0);
        DescriptorChain c = pop_one(q);
        ASSERT_TRUE(q.push(c.head(), 0).ok());
    }
    EXPECT_EQ(q.last_avail_idx(), 4);
    EXPECT_EQ(ring.used_idx(), 4);
}

// ---------------------------------------------------------------- malformed chains

TEST(SplitQueueMalformed, HeadOutOfRange)
{
    RawRing ring(8);
    ring.make_available(8);
    SplitQueue q = ring.queue();
    expect_broken(q, "descriptor index 8 is out of range (queue size 8)");
}

TEST(SplitQueueMalformed, NextOutOfRange)
{
    RawRing ring(8);
    ring.set_desc(0, RawRing::addr(0), 4, N, 9);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "descriptor index 9 is out of range");
}

TEST(SplitQueueMalformed, LoopIsDetected)
{
    RawRing ring(8);
    ring.set_desc(0, RawRing::addr(0), 4, N, 1);
    ring.set_desc(1, RawRing::addr(0), 4, N, 0);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "more than 8");
}

TEST(SplitQueueMalformed, SelfLoopWithZeroLengthIsDetected)
{
    RawRing ring(4);
    ring.set_desc(3, 0, 0, N, 3);
    ring.make_available(3);
    SplitQueue q = ring.queue();
    expect_broken(q, "more than 4");
}

TEST(SplitQueueMalformed, LoopIsDetectedEvenWithRaisedChainLimit)
{
    RawRing ring(8);
    ring.set_desc(0, RawRing::addr(0), 4, N, 0);
    ring.make_available(0);
    QueueConfig c = ring.config();
    c.max_chain_len = 1000;
    auto q = SplitQueue::create(ring.memory(), c);
    ASSERT_TRUE(q.ok());
    expect_broken(*q, "(a loop)");
}

TEST(SplitQueueMalformed, ChainLongerThanTheConfiguredLimit)
{
    RawRing ring(8);
    ring.set_desc(0, RawRing::addr(0), 4, N, 1);
    ring.set_desc(1, RawRing::addr(0), 4, N, 2);
    ring.set_desc(2, RawRing::addr(0), 4, 0);
    ring.make_available(0);
    QueueConfig c = ring.config();
    c.max_chain_len = 2;
    auto q = SplitQueue::create(ring.memory(), c);
    ASSERT_TRUE(q.ok());
    expect_broken(*q, "more than 2 buffer descriptors");
}

TEST(SplitQueueMalformed, ReadableAfterWritable)
{
    RawRing ring(8);
    ring.set_desc(0, RawRing::addr(0), 4, N, 1);
    ring.set_desc(1, RawRing::addr(0x10), 4, W | N, 2);
    ring.set_desc(2, RawRing::addr(0x20), 4, 0);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "device-readable descriptor after a device-writable one");
}

TEST(SplitQueueMalformed, BufferOutsideGuestMemory)
{
    RawRing ring(8);
    ring.set_desc(0, 0x100, 4, 0); // below the region
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "outside guest memory");
}

TEST(SplitQueueMalformed, BufferRunningOffTheRegion)
{
    RawRing ring(8);
    ring.set_desc(0, RawRing::kBase + RawRing::kRegionSize - 4, 8, W);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "outside guest memory");
}

TEST(SplitQueueMalformed, BufferWrappingTheAddressSpace)
{
    RawRing ring(8);
    ring.set_desc(0, 0xfffffffffffffff0, 0x20, 0);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "wraps around");
}

TEST(SplitQueueMalformed, TotalLengthOver32Bits)
{
    // Descriptors may repeat a buffer, so 4 x 1 GiB from a sparse region.
    RawRing ring(8);
    const std::uint64_t gib = 1ULL << 30;
    GuardedBuffer big(gib, MAP_NORESERVE);
    ASSERT_TRUE(ring.memory().add_region({1ULL << 40, gib, big.data(), {}}).ok());
    for (std::uint16_t i = 0; i < 4; ++i)
        ring.set_desc(i, 1ULL << 40, static_cast<std::uint32_t>(gib), N,
                      static_cast<std::uint16_t>(i + 1));
    ring.set_desc(3, 1ULL << 40, static_cast<std::uint32_t>(gib) - 1, N, 4);
    ring.set_desc(4, 1ULL << 40, 1, W);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "longer than 2^32 - 1 bytes");
}

TEST(SplitQueueMalformed, TotalLengthExactly32BitsMinusOneIsFine)
{
    RawRing ring(8);
    const std::uint64_t gib = 1ULL << 30;
    GuardedBuffer big(gib, MAP_NORESERVE);
    ASSERT_TRUE(ring.memory().add_region({1ULL << 40, gib, big.data(), {}}).ok());
    for (std::uint16_t i = 0; i < 3; ++i)
        ring.set_desc(i, 1ULL << 40, static_cast<std::uint32_t>(gib), N,
                      static_cast<std::uint16_t>(i + 1));
    ring.set_desc(3, 1ULL << 40, static_cast<std::uint32_t>(gib) - 1, 0);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    EXPECT_EQ(pop_one(q).readable_len(), 0xffffffffU);
}

TEST(SplitQueueMalformed, AvailableIndexTooFarAhead)
{
    RawRing ring(8);
    ring.set_avail_idx(9);
    SplitQueue q = ring.queue();
    expect_broken(q, "9 entries ahead");
}

TEST(SplitQueueMalformed, AvailableIndexGoingBackwardsIsTooFarAhead)
{
    RawRing ring(8);
    ring.set_avail_idx(65535); // "-1" from 0
    SplitQueue q = ring.queue();
    auto n = q.available();
    ASSERT_FALSE(n.ok());
    EXPECT_TRUE(q.broken());
}

TEST(SplitQueueMalformed, HeadMadeAvailableTwiceWhileInFlight)
{
    RawRing ring(8);
    ring.set_desc(1, RawRing::addr(0), 4, 0);
    ring.make_available(1);
    ring.make_available(1);
    SplitQueue q = ring.queue();
    pop_one(q);
    expect_broken(q, "made available twice");
}

TEST(SplitQueueMalformed, ErrorNamesTheAvailableEntry)
{
    RawRing ring(8);
    ring.set_desc(3, RawRing::addr(0), 4, N, 5);
    ring.set_desc(5, 0x10, 4, 0);
    ring.make_available(3);
    SplitQueue q = ring.queue();
    auto r = q.pop();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().message().rfind("available entry 0 (head 3): descriptor 5: buffer: ", 0),
              0U)
        << r.error().message();
}

// ---------------------------------------------------------------- indirect tables

class IndirectTest : public ::testing::Test
{
  protected:
    static constexpr std::uint64_t kTable = RawRing::kBase + 0x40000;
    RawRing ring{8, false, true};
};

TEST_F(IndirectTest, WalksATable)
{
    ring.set_table_desc(kTable, 0, RawRing::addr(0), 4, N, 2);
    ring.set_table_desc(kTable, 2, RawRing::addr(0x10), 4, W | N, 1);
    ring.set_table_desc(kTable, 1, RawRing::addr(0x20), 8, W);
    // The WRITE flag on the pointer must be ignored.
    ring.set_desc(4, kTable, 3 * 16, I | W);
    ring.make_available(4);
    SplitQueue q = ring.queue();
    DescriptorChain c = pop_one(q);
    EXPECT_EQ(c.head(), 4);
    EXPECT_TRUE(c.used_indirect());
    EXPECT_EQ(c.descriptor_count(), 3U);
    EXPECT_EQ(c.readable_len(), 4U);
    EXPECT_EQ(c.writable_len(), 12U);
    ASSERT_TRUE(q.push(4, 12).ok());
}

TEST_F(IndirectTest, DirectDescriptorsThenATable)
{
    ring.set_desc(0, RawRing::addr(0), 4, N, 1);
    ring.set_desc(1, kTable, 16, I);
    ring.set_table_desc(kTable, 0, RawRing::addr(0x10), 4, W);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    DescriptorChain c = pop_one(q);
    EXPECT_EQ(c.readable_len(), 4U);
    EXPECT_EQ(c.writable_len(), 4U);
}

TEST_F(IndirectTest, ReadableInTableAfterWritableDirect)
{
    ring.set_desc(0, RawRing::addr(0), 4, W | N, 1);
    ring.set_desc(1, kTable, 16, I);
    ring.set_table_desc(kTable, 0, RawRing::addr(0x10), 4, 0);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "device-readable descriptor after a device-writable one");
}

TEST_F(IndirectTest, TableMayHaveMoreEntriesThanTheChainUses)
{
    ring.set_table_desc(kTable, 0, RawRing::addr(0), 4, 0);
    ring.set_desc(0, kTable, 100 * 16, I);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    EXPECT_EQ(pop_one(q).descriptor_count(), 1U);
}

TEST_F(IndirectTest, NotNegotiated)
{
    RawRing plain(8);
    plain.set_desc(0, kTable, 16, I);
    plain.make_available(0);
    SplitQueue q = plain.queue();
    expect_broken(q, "VIRTIO_RING_F_INDIRECT_DESC was not negotiated");
}

TEST_F(IndirectTest, IndirectWithNext)
{
    ring.set_table_desc(kTable, 0, RawRing::addr(0), 4, 0);
    ring.set_desc(0, kTable, 16, I | N, 1);
    ring.set_desc(1, RawRing::addr(0), 4, 0);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "INDIRECT and NEXT flags both set");
}

TEST_F(IndirectTest, BadTableLengths)
{
    for (std::uint32_t len : {0U, 8U, 17U, 33U}) {
        RawRing r(8, false, true);
        r.set_desc(0, kTable, len, I);
        r.make_available(0);
        SplitQueue q = r.queue();
        expect_broken(q, "is not a non-zero multiple of 16");
    }
}

TEST_F(IndirectTest, TableLargerThanAddressable)
{
    ring.set_desc(0, kTable, (kMaxIndirectEntries + 1) * 16, I);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "more than 16-bit next fields can address");
}

TEST_F(IndirectTest, TableOutsideMemory)
{
    ring.set_desc(0, RawRing::kBase + RawRing::kRegionSize - 16, 32, I);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "indirect table: guest range");
}

TEST_F(IndirectTest, NestedTable)
{
    ring.set_table_desc(kTable, 0, RawRing::addr(0), 4, N, 1);
    ring.set_table_desc(kTable, 1, kTable + 0x100, 16, I);
    ring.set_desc(0, kTable, 32, I);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "nested tables are not allowed");
}

TEST_F(IndirectTest, NextOutOfTable)
{
    ring.set_table_desc(kTable, 0, RawRing::addr(0), 4, N, 2);
    ring.set_desc(0, kTable, 32, I);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "indirect table entry 2 is out of range (table has 2 entries)");
}

TEST_F(IndirectTest, LoopInTable)
{
    ring.set_table_desc(kTable, 0, RawRing::addr(0), 4, N, 1);
    ring.set_table_desc(kTable, 1, RawRing::addr(0), 4, N, 0);
    ring.set_desc(0, kTable, 32, I);
    QueueConfig c = ring.config();
    c.max_chain_len = 100;
    ring.make_available(0);
    auto q = SplitQueue::create(ring.memory(), c);
    ASSERT_TRUE(q.ok());
    expect_broken(*q, "visits more than its 2 entries (a loop)");
}

TEST_F(IndirectTest, ChainInTableLongerThanQueueSize)
{
    // Spec 2.7.5.3.1: no chain longer than the queue size, tables included.
    for (std::uint16_t i = 0; i < 9; ++i)
        ring.set_table_desc(kTable, i, RawRing::addr(0), 4, i < 8 ? N : 0,
                            static_cast<std::uint16_t>(i + 1));
    ring.set_desc(0, kTable, 9 * 16, I);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    expect_broken(q, "more than 8 buffer descriptors");

    QueueConfig c = ring.config();
    c.max_chain_len = 9; // a device that allows longer chains
    auto relaxed = SplitQueue::create(ring.memory(), c);
    ASSERT_TRUE(relaxed.ok());
    auto r = relaxed->pop();
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ((*r)->descriptor_count(), 9U);
}

TEST_F(IndirectTest, TableStraddlingAdjacentRegions)
{
    GuardedBuffer extra(0x1000);
    const std::uint64_t next_region = RawRing::kBase + RawRing::kRegionSize;
    ASSERT_TRUE(ring.memory().add_region({next_region, 0x1000, extra.data(), {}}).ok());
    // Entry 0 straddles the boundary (8 bytes in each region).
    const std::uint64_t table = next_region - 8;
    std::array<std::byte, 32> raw{};
    store_descriptor(raw.data(), Descriptor{RawRing::addr(0), 4, N, 1});
    store_descriptor(raw.data() + 16, Descriptor{RawRing::addr(0x10), 6, W, 0});
    ASSERT_TRUE(ring.memory().write(table, raw).ok());
    ring.set_desc(0, table, 32, I);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    DescriptorChain c = pop_one(q);
    EXPECT_EQ(c.readable_len(), 4U);
    EXPECT_EQ(c.writable_len(), 6U);
}

// ---------------------------------------------------------------- returning buffers

TEST(SplitQueuePush, RefusesHeadsNotInFlightAndOverlongLengths)
{
    RawRing ring(8);
    ring.set_desc(0, RawRing::addr(0), 4, N, 1);
    ring.set_desc(1, RawRing::addr(0x10), 10, W);
    ring.make_available(0);
    SplitQueue q = ring.queue();
    EXPECT_FALSE(q.push(0, 0).ok()) << "not popped yet";
    pop_one(q);
    EXPECT_FALSE(q.push(1, 0).ok()) << "not a head";
    EXPECT_FALSE(q.push(9, 0).ok()) << "out of range";
    auto too_long = q.push(0, 11);
    ASSERT_FALSE(too_long.ok());
    EXPECT_NE(too_long.error().message().find("only 10 bytes"), std::string::npos);
    EXPECT_EQ(ring.used_idx(), 0) << "failed pushes do not touch the ring";
    EXPECT_FALSE(q.broken()) << "device bugs do not break the queue";
    ASSERT_TRUE(q.push(0, 10).ok());
    EXPECT_FALSE(q.push(0, 0).ok()) << "pushed twice";
    EXPECT_EQ(ring.used_idx(), 1);
}

TEST(SplitQueuePush, ElementsFollowTheUsedIndexAroundTheRing)
{
    RawRing ring(4);
    for (std::uint16_t i = 0; i < 4; ++i)
        ring.set_desc(i, RawRing::addr(i * 16U), 8, W);
    SplitQueue q = ring.queue();
    for (std::uint16_t round = 0; round < 3; ++round) {
        for (std::uint16_t i = 0; i < 4; ++i)
            ring.make_available(i);
        for (std::uint16_t i = 0; i < 4; ++i)
            pop_one(q);
        // Return out of order.
        for (std::uint16_t head :
             {std::uint16_t{2}, std::uint16_t{0}, std::uint16_t{3}, std::uint16_t{1}})
            ASSERT_TRUE(q.push(head, head).ok());
    }
    EXPECT_EQ(ring.used_idx(), 12);
    EXPECT_EQ(ring.used_elem(8), std::make_pair(2U, 2U));
    EXPECT_EQ(ring.used_elem(11), std::make_pair(1U, 1U));
}

class RecordingTracker : public InflightTracker
{
  public:
    void on_popped(std::uint16_t head) override { events.push_back("pop " + std::to_string(head)); }
    void on_pushing(std::uint16_t head) override
    {
        events.push_back("pushing " + std::to_string(head));
    }
    void on_pushed(std::uint16_t head, std::uint16_t used_idx) override
    {
        events.push_back("pushed " + std::to_string(head) + " " + std::to_string(used_idx));
    }
    std::vector<std::string> events;
};

TEST(SplitQueueInflight, TrackerSeesEveryStepAndResubmitWorks)
{
    RawRing ring(8);
    ring.set_desc(3, RawRing::addr(0), 4, W);
    ring.set_desc(6, RawRing::addr(0x10), 4, W);
    ring.make_available(3);
    SplitQueue q = ring.queue();
    RecordingTracker tracker;
    q.set_inflight_tracker(&tracker);
    pop_one(q);
    auto again = q.resubmit(6);
    ASSERT_TRUE(again.ok()) << again.error().message();
    EXPECT_EQ(again->head(), 6);
    EXPECT_FALSE(q.resubmit(6).ok()) << "already in flight";
    EXPECT_FALSE(q.resubmit(8).ok()) << "out of range";
    EXPECT_FALSE(q.broken());
    EXPECT_EQ(q.in_flight_heads(), (std::vector<std::uint16_t>{3, 6}));
    ASSERT_TRUE(q.push(6, 4).ok());
    EXPECT_EQ(tracker.events,
              (std::vector<std::string>{"pop 3", "pop 6", "pushing 6", "pushed 6 1"}));
}

TEST(SplitQueueInflight, ResubmittingAMalformedChainBreaksTheQueue)
{
    RawRing ring(8);
    ring.set_desc(2, RawRing::addr(0), 4, N, 2);
    SplitQueue q = ring.queue();
    EXPECT_FALSE(q.resubmit(2).ok());
    EXPECT_TRUE(q.broken());
}

TEST(SplitQueueMemory, UpdateMemoryRebindsOrBreaks)
{
    RawRing ring(8);
    SplitQueue q = ring.queue();
    GuestMemory other; // rings are not in it
    EXPECT_FALSE(q.update_memory(other).ok());
    EXPECT_TRUE(q.broken());

    SplitQueue q2 = ring.queue();
    GuestMemory copy = ring.memory();
    EXPECT_TRUE(q2.update_memory(copy).ok());
    ring.set_desc(0, RawRing::addr(0), 4, 0);
    ring.make_available(0);
    EXPECT_EQ(pop_one(q2).readable_len(), 4U);
}

// ---------------------------------------------------------------- notifications

TEST(EventIdx, NeedEventFollowsTheSpecFormula)
{
    // Notify iff used_event lies in [old, new).
    EXPECT_TRUE(need_event(0, 1, 0));
    EXPECT_FALSE(need_event(1, 1, 0));
    EXPECT_TRUE(need_event(5, 10, 0));
    EXPECT_TRUE(need_event(9, 10, 9));
    EXPECT_FALSE(need_event(10, 10, 0));
    EXPECT_FALSE(need_event(4, 10, 5));
    EXPECT_FALSE(need_event(7, 7, 7)) << "nothing moved";
    // Across the wrap at 65535.
    EXPECT_TRUE(need_event(65535, 2, 65534));
    EXPECT_TRUE(need_event(0, 2, 65534));
    EXPECT_TRUE(need_event(1, 2, 65534));
    EXPECT_FALSE(need_event(2, 2, 65534));
    EXPECT_FALSE(need_event(65533, 2, 65534));
    EXPECT_TRUE(need_event(65535, 0, 65535));
    EXPECT_FALSE(need_event(0, 0, 65535));
    // Exhaustive check against the plain definition for a window.
    for (unsigned old_idx : {0U, 100U, 65500U, 65535U}) {
        for (unsigned moved = 0; moved < 40; ++moved) {
            const auto new_idx = static_cast<std::uint16_t>(old_idx + moved);
            for (unsigned back = 0; back < 60; ++back) {
                const auto event = static_cast<std::uint16_t>(old_idx + back);
                const bool expected = back < moved;
                ASSERT_EQ(need_event(event, new_idx, static_cast<std::uint16_t>(old_idx)), expected)
                    << old_idx << " " << moved << " " << back;
            }
        }
    }
}

class NotifyTest : public ::testing::TestWithParam<bool>
{
  protected:
    NotifyTest() : ring(8, GetParam())
    {
        for (std::uint16_t i = 0; i < 8; ++i)
            ring.set_desc(i, RawRing::addr(i * 16U), 8, W);
    }
    void complete(SplitQueue& q, int n)
    {
        for (int i = 0; i < n; ++i) {
            const std::uint16_t head = next_head_++ % 8;
            ring.make_available(head);
            DescriptorChain c = pop_one(q);
            ASSERT_TRUE(q.push(c.head(), 0).ok());
        }
    }
    RawRing ring;
    std::uint16_t next_head_ = 0;
};

TEST_P(NotifyTest, NothingPushedNothingToNotify)
{
    SplitQueue q = ring.queue();
    EXPECT_FALSE(q.needs_notification());
    complete(q, 1);
    EXPECT_TRUE(q.needs_notification());
    EXPECT_FALSE(q.needs_notification()) << "already notified for that";
}

TEST_P(NotifyTest, DriverSuppressesInterrupts)
{
    SplitQueue q = ring.queue();
    if (GetParam()) {
        // Driver wants an interrupt only once used idx passes 3.
        ring.set_used_event(3);
        complete(q, 2); // used idx 0 -> 2: entry 3 not yet written
        EXPECT_FALSE(q.needs_notification());
        complete(q, 1); // 2 -> 3: entry index 2 written, still not 3
        EXPECT_FALSE(q.needs_notification());
        complete(q, 2); // 3 -> 5: passed entry 3
        EXPECT_TRUE(q.needs_notification());
        complete(q, 1);
        EXPECT_FALSE(q.needs_notification()) << "used_event is behind us now";
    } else {
        ring.set_avail_flags(kAvailFlagNoInterrupt);
        complete(q, 3);
        EXPECT_FALSE(q.needs_notification());
        ring.set_avail_flags(0);
        complete(q, 1);
        EXPECT_TRUE(q.needs_notification());
    }
}

TEST(EventIdx, UsedEventAcrossTheWrap)
{
    RawRing ring(8, true);
    ring.set_desc(0, RawRing::addr(0), 8, W);
    ring.set_used_idx(65533);
    ring.set_avail_idx(65533);
    SplitQueue q = ring.queue(65533);
    auto complete = [&](int n) {
        for (int i = 0; i < n; ++i) {
            ring.make_available(0);
            ASSERT_EQ(pop_one(q).head(), 0);
            ASSERT_TRUE(q.push(0, 0).ok());
        }
    };
    ring.set_used_event(65535);
    complete(2); // 65533 -> 65535
    EXPECT_FALSE(q.needs_notification());
    complete(2); // 65535 -> 1: entry 65535 written
    EXPECT_TRUE(q.needs_notification());
    ring.set_used_event(0);
    complete(1); // 1 -> 2: entry 0 is behind
    EXPECT_FALSE(q.needs_notification());
}

TEST_P(NotifyTest, EnableAndDisableKicks)
{
    SplitQueue q = ring.queue();
    q.disable_notification();
    EXPECT_EQ(ring.used_flags(), GetParam() ? 0 : kUsedFlagNoNotify);
    complete(q, 3);
    EXPECT_FALSE(q.enable_notification()) << "nothing pending";
    if (GetParam()) {
        EXPECT_EQ(ring.avail_event(), 3) << "kick me when entry 3 arrives";
    } else {
        EXPECT_EQ(ring.used_flags(), 0);
    }
    ring.make_available(0);
    q.disable_notification();
    EXPECT_TRUE(q.enable_notification()) << "a buffer raced in";
}

INSTANTIATE_TEST_SUITE_P(WithAndWithoutEventIdx, NotifyTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                             return param_info.param ? "EventIdx" : "Flags";
                         });

} // namespace
} // namespace vl::virtq
