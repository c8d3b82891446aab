// SPDX-License-Identifier: Apache-2.0
// The guest-memory allocator and the memfd pool.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

#include "guest_pool.hpp"

namespace vl::test_driver
{
namespace
{

TEST(RangeAllocator, AllocatesAlignedNonOverlappingRanges)
{
    RangeAllocator a(1 << 20);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> got;
    const std::uint64_t aligns[] = {1, 8, 64, 4096};
    for (int i = 0; i < 40; ++i) {
        const std::uint64_t align = aligns[i % 4];
        const std::uint64_t size = 1 + static_cast<std::uint64_t>(i) * 37;
        auto off = a.allocate(size, align);
        ASSERT_TRUE(off) << off.error().message();
        EXPECT_EQ(*off % align, 0U);
        EXPECT_LE(*off + size, a.capacity());
        for (auto [o, s] : got)
            EXPECT_TRUE(*off + size <= o || o + s <= *off) << "overlap at " << *off;
        got.emplace_back(*off, size);
    }
    EXPECT_EQ(a.allocations(), 40U);
}

TEST(RangeAllocator, FreeMergesNeighboursBackToOneRange)
{
    RangeAllocator a(4096);
    auto x = a.allocate(1000, 8);
    auto y = a.allocate(1000, 8);
    auto z = a.allocate(1000, 8);
    ASSERT_TRUE(x && y && z);
    EXPECT_EQ(a.bytes_free(), 4096U - 3000U);
    // Free the middle first: it cannot merge with anything used.
    ASSERT_TRUE(a.free(*y));
    EXPECT_EQ(a.free_ranges(), 2U);
    ASSERT_TRUE(a.free(*x));
    ASSERT_TRUE(a.free(*z));
    EXPECT_EQ(a.free_ranges(), 1U);
    EXPECT_EQ(a.bytes_free(), 4096U);
    EXPECT_EQ(a.largest_free_range(), 4096U);
    EXPECT_EQ(a.allocations(), 0U);
}

TEST(RangeAllocator, RandomChurnKeepsAccountsExact)
{
    RangeAllocator a(1 << 16);
    std::mt19937 rng(7);
    std::map<std::uint64_t, std::uint64_t> live;
    for (int i = 0; i < 5000; ++i) {
        if (!live.empty() && rng() % 2 == 0) {
            auto it = live.begin();
            std::advance(it, static_cast<long>(rng() % live.size()));
            ASSERT_TRUE(a.free(it->first));
            live.erase(it);
        } else {
            const std::uint64_t size = 1 + rng() % 700;
            auto off = a.allocate(size, std::uint64_t{1} << (rng() % 7));
            if (!off) {
                EXPECT_EQ(off.error().code(), ENOMEM);
                continue;
            }
            live.emplace(*off, size);
        }
        std::uint64_t used = 0;
        for (auto [o, s] : live)
            used += s;
        ASSERT_EQ(a.bytes_free(), a.capacity() - used);
    }
    for (auto [o, s] : live)
        ASSERT_TRUE(a.free(o));
    EXPECT_EQ(a.free_ranges(), 1U);
}

TEST(RangeAllocator, RefusesBadRequestsAndDoubleFree)
{
    RangeAllocator a(4096);
    EXPECT_EQ(a.allocate(0, 8).error().code(), EINVAL);
    EXPECT_EQ(a.allocate(8, 3).error().code(), EINVAL);
    EXPECT_EQ(a.allocate(8, 0).error().code(), EINVAL);
    auto big = a.allocate(4097, 1);
    ASSERT_FALSE(big);
    EXPECT_EQ(big.error().code(), ENOMEM);
    EXPECT_NE(big.error().message().find("largest free range 4096"), std::string::npos);

    auto x = a.allocate(100, 64);
    ASSERT_TRUE(x);
    ASSERT_TRUE(a.free(*x));
    auto again = a.free(*x);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code(), EINVAL);
    EXPECT_FALSE(a.free(12345));
    EXPECT_EQ(a.bytes_free(), 4096U);
}

TEST(RangeAllocator, AlignmentPaddingIsReusable)
{
    RangeAllocator a(8192);
    auto small = a.allocate(10, 1);     // [0, 10)
    auto page = a.allocate(4096, 4096); // [4096, 8192): leaves [10, 4096) free
    ASSERT_TRUE(small && page);
    EXPECT_EQ(*page, 4096U);
    auto fill = a.allocate(4086, 1);
    ASSERT_TRUE(fill);
    EXPECT_EQ(*fill, 10U);
    EXPECT_EQ(a.bytes_free(), 0U);
}

TEST(GuestPool, BuffersAreZeroedAlignedAndShareTheMemfd)
{
    auto pool = GuestPool::create(1 << 20, 0x40000000);
    ASSERT_TRUE(pool) << pool.error().message();
    auto& p = **pool;
    EXPECT_EQ(p.size(), 1U << 20);
    EXPECT_EQ(p.guest_base(), 0x40000000U);
    EXPECT_EQ(p.user_addr(), reinterpret_cast<std::uintptr_t>(p.bytes().data()));

    auto b = p.allocate(100, 4096);
    ASSERT_TRUE(b) << b.error().message();
    EXPECT_EQ(b->guest_addr() % 4096, 0U);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b->bytes().data()) % 4096, 0U);
    EXPECT_EQ(b->bytes().data() - p.bytes().data(),
              static_cast<std::ptrdiff_t>(b->guest_addr() - p.guest_base()));
    for (std::byte x : b->bytes())
        EXPECT_EQ(x, std::byte{0});

    // What we write through the buffer is in the memfd the back-end maps.
    b->bytes()[5] = std::byte{0x5a};
    std::byte read_back{};
    ASSERT_EQ(
        ::pread(p.fd(), &read_back, 1, static_cast<off_t>(b->guest_addr() - p.guest_base() + 5)),
        1);
    EXPECT_EQ(read_back, std::byte{0x5a});

    // A freed and reallocated range comes back zeroed.
    const std::uint64_t addr = b->guest_addr();
    b->reset();
    auto c = p.allocate(100, 4096);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->guest_addr(), addr);
    EXPECT_EQ(c->bytes()[5], std::byte{0});
}

TEST(GuestPool, SlicesAreChecked)
{
    auto pool = GuestPool::create(4096, 0);
    ASSERT_TRUE(pool);
    auto b = (*pool)->allocate(64);
    ASSERT_TRUE(b);
    auto s = b->slice(16, 48);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->addr, b->guest_addr() + 16);
    EXPECT_EQ(s->len, 48U);
    EXPECT_FALSE(b->slice(16, 49));
    EXPECT_FALSE(b->slice(65, 0));
    EXPECT_EQ(b->whole().len, 64U);
}

TEST(GuestPool, BuffersKeepThePoolAliveAndReturnTheirMemory)
{
    auto pool = GuestPool::create(8192, 0x1000);
    ASSERT_TRUE(pool);
    std::weak_ptr<GuestPool> weak = *pool;
    auto b = (*pool)->allocate(4096);
    ASSERT_TRUE(b);
    EXPECT_EQ((*pool)->bytes_free(), 4096U);
    Buffer moved = std::move(*b);
    EXPECT_FALSE(b->valid());
    pool->reset(); // the driver is gone; the buffer still works
    ASSERT_FALSE(weak.expired());
    moved.bytes()[0] = std::byte{1};
    moved.reset();
    EXPECT_TRUE(weak.expired());
}

TEST(GuestPool, RefusesBadSizes)
{
    EXPECT_FALSE(GuestPool::create(0, 0));
    EXPECT_FALSE(GuestPool::create(4096, 123));                      // base not page-aligned
    EXPECT_FALSE(GuestPool::create(8192, ~std::uint64_t{0} - 4095)); // wraps
    auto pool = GuestPool::create(4096, 0);
    ASSERT_TRUE(pool);
    auto too_big = (*pool)->allocate(std::uint64_t{1} << 32);
    ASSERT_FALSE(too_big);
    EXPECT_EQ(too_big.error().code(), EINVAL);
    EXPECT_EQ((*pool)->allocate(8192).error().code(), ENOMEM);
}

} // namespace
} // namespace vl::test_driver
