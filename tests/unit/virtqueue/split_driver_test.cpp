// SPDX-License-Identifier: Apache-2.0
// The driver side, and round trips between driver and device sides.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "test_memory.hpp"
#include "virtqueue/split_driver.hpp"
#include "virtqueue/split_queue.hpp"

namespace vl::virtq
{
namespace
{

using test::GuardedBuffer;

// One region of guest memory at kBase: rings at the start, data after
// kDataOffset. Driver and device share it, as through a DMA window.
class Bench
{
  public:
    static constexpr std::uint64_t kBase = 0x100000;
    static constexpr std::uint64_t kSize = 4 << 20;
    static constexpr std::uint64_t kDataOffset = 2 << 20;

    explicit Bench(DriverConfig config, std::uint32_t max_chain_len = 0) : buffer_(kSize)
    {
        EXPECT_TRUE(memory_.add_region({kBase, kSize, buffer_.data(), {}}).ok());
        auto d = SplitDriver::create(buffer_.bytes().first(kDataOffset), kBase, config);
        if (!d)
            throw std::runtime_error(d.error().message());
        driver_.emplace(std::move(d).value());
        QueueConfig qc;
        qc.size = config.size;
        qc.desc_addr = driver_->desc_addr();
        qc.avail_addr = driver_->avail_addr();
        qc.used_addr = driver_->used_addr();
        qc.event_idx = config.event_idx;
        qc.indirect_desc = config.indirect_entries != 0;
        qc.max_chain_len = max_chain_len;
        auto q = SplitQueue::create(memory_, qc);
        if (!q)
            throw std::runtime_error(q.error().message());
        queue_.emplace(std::move(q).value());
    }

    SplitDriver& driver() { return *driver_; }
    SplitQueue& queue() { return *queue_; }
    static std::uint64_t addr(std::uint64_t offset) { return kBase + kDataOffset + offset; }
    std::byte* data(std::uint64_t offset) { return buffer_.data() + kDataOffset + offset; }
    std::byte* used_ring() { return buffer_.data() + driver_->layout().used_offset; }

  private:
    GuardedBuffer buffer_;
    GuestMemory memory_;
    std::optional<SplitDriver> driver_;
    std::optional<SplitQueue> queue_;
};

std::uint16_t add_ok(SplitDriver& d, std::vector<GuestBuffer> readable,
                     std::vector<GuestBuffer> writable, bool indirect = false)
{
    auto r = d.add(readable, writable, indirect);
    if (!r.ok()) {
        ADD_FAILURE() << r.error().message();
        return 0xffff;
    }
    if (!r->has_value()) {
        ADD_FAILURE() << "queue full";
        return 0xffff;
    }
    return **r;
}

// ---------------------------------------------------------------- layout and add()

TEST(RingLayout, PlacesPartsAlignedAndWithoutOverlap)
{
    auto l = RingLayout::compute({256, true, 8});
    ASSERT_TRUE(l.ok());
    EXPECT_EQ(l->desc_offset, 0U);
    EXPECT_EQ(l->avail_offset, 4096U);
    EXPECT_GE(l->used_offset, l->avail_offset + avail_ring_bytes(256, true));
    EXPECT_EQ(l->used_offset % 64, 0U);
    EXPECT_GE(l->indirect_offset, l->used_offset + used_ring_bytes(256, true));
    EXPECT_EQ(l->total_bytes, l->indirect_offset + 256U * 8U * 16U);
    EXPECT_FALSE(RingLayout::compute({100, false, 0}).ok());
    EXPECT_FALSE(RingLayout::compute({8, false, kMaxIndirectEntries + 1}).ok());
}

TEST(SplitDriverCreate, ChecksTheMemory)
{
    GuardedBuffer buf(0x10000);
    EXPECT_FALSE(SplitDriver::create(buf.bytes().first(100), 0, {8, false, 0}).ok()) << "too small";
    EXPECT_FALSE(SplitDriver::create(buf.bytes().subspan(8), 0, {8, false, 0}).ok())
        << "misaligned host";
    EXPECT_FALSE(SplitDriver::create(buf.bytes(), 0x20, {8, false, 0}).ok()) << "misaligned guest";
    EXPECT_FALSE(SplitDriver::create(buf.bytes(), 0xffffffffffffff00, {8, false, 0}).ok())
        << "wraps";
    auto d = SplitDriver::create(buf.bytes(), 0x40, {8, false, 0});
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->desc_addr(), 0x40U);
    EXPECT_EQ(d->free_descriptors(), 8U);
}

TEST(SplitDriverAdd, ReportsFullAndRejectsImpossibleChains)
{
    Bench b({4, false, 4});
    SplitDriver& d = b.driver();
    const GuestBuffer buf{Bench::addr(0), 8};
    EXPECT_FALSE(d.add({}, {}).ok()) << "empty";
    EXPECT_FALSE(d.add(std::vector<GuestBuffer>(5, buf), {}).ok()) << "more than the queue";
    EXPECT_FALSE(d.add(std::vector<GuestBuffer>(5, buf), {}, true).ok()) << "more than a table";
    EXPECT_FALSE(d.add(std::vector<GuestBuffer>{{0, 0x80000000}, {0, 0x80000000}}, {}).ok())
        << "2^32 bytes";
    add_ok(d, {buf, buf, buf}, {});
    EXPECT_EQ(d.free_descriptors(), 1U);
    auto full = d.add(std::vector<GuestBuffer>{buf, buf}, {});
    ASSERT_TRUE(full.ok());
    EXPECT_FALSE(full->has_value()) << "two descriptors do not fit now";
    add_ok(d, {buf, buf, buf, buf}, {}, true); // one descriptor
    EXPECT_EQ(d.free_descriptors(), 0U);
    EXPECT_EQ(d.in_flight(), 2U);

    Bench plain({4, false, 0});
    EXPECT_FALSE(plain.driver().add(std::vector<GuestBuffer>{buf}, {}, true).ok())
        << "indirect not configured";
}

// ---------------------------------------------------------------- get_used() validation

class UsedValidation : public ::testing::Test
{
  protected:
    UsedValidation() : bench({8, false, 0})
    {
        head = add_ok(bench.driver(), {{Bench::addr(0), 4}}, {{Bench::addr(0x100), 16}});
    }
    // Plays a device writing a used element and publishing `new_idx`.
    void device_writes(std::uint16_t slot, std::uint32_t id, std::uint32_t len,
                       std::uint16_t new_idx)
    {
        std::byte* e = bench.used_ring() + ring_offset::used_entry(slot);
        store_le32(e, id);
        store_le32(e + 4, len);
        store_le16(bench.used_ring() + ring_offset::kIdx, new_idx);
    }
    void expect_broken(const std::string& what)
    {
        auto r = bench.driver().get_used();
        ASSERT_FALSE(r.ok());
        EXPECT_NE(r.error().message().find(what), std::string::npos) << r.error().message();
        EXPECT_TRUE(bench.driver().broken());
        EXPECT_FALSE(bench.driver().add(std::vector<GuestBuffer>{{Bench::addr(0), 1}}, {}).ok());
    }
    Bench bench;
    std::uint16_t head = 0;
};

TEST_F(UsedValidation, AcceptsAValidElement)
{
    device_writes(0, head, 16, 1);
    auto r = bench.driver().get_used();
    ASSERT_TRUE(r.ok()) << r.error().message();
    ASSERT_TRUE(r->has_value());
    EXPECT_EQ((*r)->head, head);
    EXPECT_EQ((*r)->len, 16U);
    EXPECT_EQ(bench.driver().free_descriptors(), 8U);
    auto none = bench.driver().get_used();
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
}

TEST_F(UsedValidation, IdOutOfRange)
{
    device_writes(0, 8, 0, 1);
    expect_broken("id 8 is out of range");
}

TEST_F(UsedValidation, IdNotInFlight)
{
    device_writes(0, head + 1U, 0, 1);
    expect_broken("is not a chain in flight");
}

TEST_F(UsedValidation, SameHeadReturnedTwice)
{
    add_ok(bench.driver(), {{Bench::addr(0), 4}}, {});
    device_writes(0, head, 0, 1);
    device_writes(1, head, 0, 2);
    ASSERT_TRUE(bench.driver().get_used().ok());
    expect_broken("is not a chain in flight");
}

TEST_F(UsedValidation, LengthLargerThanWritableSpace)
{
    device_writes(0, head, 17, 1);
    expect_broken("reports 17 bytes written but has only 16 writable bytes");
}

TEST_F(UsedValidation, UsedIndexAheadOfWhatIsInFlight)
{
    device_writes(0, head, 0, 2);
    expect_broken("only 1 buffers are in flight");
}

// ---------------------------------------------------------------- kicks and interrupts

TEST(SplitDriverNotify, KickFollowsAvailEventWithEventIdx)
{
    Bench b({8, true, 0});
    SplitDriver& d = b.driver();
    SplitQueue& q = b.queue();
    EXPECT_FALSE(d.kick_needed()) << "nothing added";
    add_ok(d, {{Bench::addr(0), 1}}, {});
    EXPECT_TRUE(d.kick_needed()) << "avail_event 0: the first buffer kicks";
    add_ok(d, {{Bench::addr(0), 1}}, {});
    EXPECT_FALSE(d.kick_needed()) << "device has not asked again";
    // The device drains and re-enables: avail_event = 2.
    while (true) {
        auto c = q.pop();
        ASSERT_TRUE(c.ok());
        if (!c->has_value())
            break;
    }
    EXPECT_FALSE(q.enable_notification());
    add_ok(d, {{Bench::addr(0), 1}}, {});
    EXPECT_TRUE(d.kick_needed());
}

TEST(SplitDriverNotify, KickFollowsNoNotifyFlag)
{
    Bench b({8, false, 0});
    SplitDriver& d = b.driver();
    add_ok(d, {{Bench::addr(0), 1}}, {});
    EXPECT_TRUE(d.kick_needed());
    b.queue().disable_notification();
    add_ok(d, {{Bench::addr(0), 1}}, {});
    EXPECT_FALSE(d.kick_needed());
    EXPECT_TRUE(b.queue().enable_notification()) << "two buffers wait";
    add_ok(d, {{Bench::addr(0), 1}}, {});
    EXPECT_TRUE(d.kick_needed());
}

TEST(SplitDriverNotify, InterruptsFollowUsedEventAndFlags)
{
    for (bool event_idx : {false, true}) {
        Bench b({8, event_idx, 0});
        SplitDriver& d = b.driver();
        SplitQueue& q = b.queue();
        d.disable_interrupts();
        for (int i = 0; i < 3; ++i)
            add_ok(d, {}, {{Bench::addr(0), 1}});
        for (int i = 0; i < 2; ++i) {
            auto c = q.pop();
            ASSERT_TRUE(c.ok() && c->has_value());
            ASSERT_TRUE(q.push((*c)->head(), 1).ok());
        }
        if (!event_idx) // with EVENT_IDX, used_event 0 was passed already
            EXPECT_FALSE(q.needs_notification()) << "interrupts disabled";
        else
            EXPECT_TRUE(q.needs_notification());
        ASSERT_TRUE(d.get_used()->has_value());
        ASSERT_TRUE(d.get_used()->has_value());
        EXPECT_FALSE(d.enable_interrupts()) << "nothing pending";
        auto c = q.pop();
        ASSERT_TRUE(c.ok() && c->has_value());
        ASSERT_TRUE(q.push((*c)->head(), 1).ok());
        EXPECT_TRUE(q.needs_notification()) << "event_idx=" << event_idx;
        EXPECT_TRUE(d.enable_interrupts()) << "one pending";
    }
}

// ---------------------------------------------------------------- round trips

// The device side of a round trip: every request carries its id in the
// readable part; the device answers by filling the writable part with a
// pattern derived from it.
std::uint32_t serve_one(const DescriptorChain& c)
{
    std::array<std::byte, 4> id_bytes{};
    if (c.read_into(id_bytes) != 4)
        return 0;
    std::uint32_t id = 0;
    std::memcpy(&id, id_bytes.data(), 4);
    const std::uint32_t n = std::min<std::uint32_t>(c.writable_len(), id % 97 + 1);
    std::vector<std::byte> reply(n);
    for (std::uint32_t i = 0; i < n; ++i)
        reply[i] = static_cast<std::byte>(id + i);
    c.write_from(reply);
    return n;
}

TEST(RoundTrip, DirectAndIndirectChainsCarryData)
{
    for (bool indirect : {false, true}) {
        Bench b({16, true, 8});
        std::uint32_t id = 1234;
        std::memcpy(b.data(0), &id, 4);
        const std::uint16_t head =
            add_ok(b.driver(), {{Bench::addr(0), 2}, {Bench::addr(2), 2}},
                   {{Bench::addr(0x100), 7}, {Bench::addr(0x200), 100}}, indirect);
        EXPECT_TRUE(b.driver().kick_needed());
        auto c = b.queue().pop();
        ASSERT_TRUE(c.ok()) << c.error().message();
        ASSERT_TRUE(c->has_value());
        EXPECT_EQ((*c)->head(), head);
        EXPECT_EQ((*c)->used_indirect(), indirect);
        EXPECT_EQ((*c)->readable_len(), 4U);
        EXPECT_EQ((*c)->writable_len(), 107U);
        const std::uint32_t written = serve_one(**c);
        ASSERT_TRUE(b.queue().push(head, written).ok());
        EXPECT_TRUE(b.queue().needs_notification());
        auto used = b.driver().get_used();
        ASSERT_TRUE(used.ok()) << used.error().message();
        ASSERT_TRUE(used->has_value());
        EXPECT_EQ((*used)->head, head);
        EXPECT_EQ((*used)->len, 1234U % 97 + 1);
        EXPECT_EQ(std::to_integer<std::uint8_t>(*b.data(0x100 + 6)),
                  static_cast<std::uint8_t>(1234 + 6));
        EXPECT_EQ(std::to_integer<std::uint8_t>(*b.data(0x200)),
                  static_cast<std::uint8_t>(1234 + 7));
        EXPECT_EQ(b.driver().free_descriptors(), 16U);
    }
}

// The 4 id bytes at `base` as `count` readable buffers (some may be empty).
std::vector<GuestBuffer> split_id_bytes(std::uint32_t base, std::uint32_t count)
{
    std::vector<GuestBuffer> out;
    std::uint32_t off = 0;
    for (std::uint32_t k = 0; k < count; ++k) {
        const std::uint32_t len = k + 1 == count ? 4 - off : (off < 3 ? 1 : 0);
        out.push_back({Bench::addr(base + off), len});
        off += len;
    }
    return out;
}

// A single-threaded simulation of a driver and a device that act only when
// the other side notifies them, so a notification decision that is wrong
// in the unsafe direction shows up as a stall:
//  - the driver submits a burst of requests over several rounds (kicking
//    when kick_needed() says so), then waits for all of them, collecting
//    used buffers only when interrupted;
//  - the device takes new buffers only when kicked, and completes the
//    buffers it holds in random subsets and order on its own time.
// Random chain shapes (direct and indirect, empty buffers), bursts larger
// than the ring; the free-running indices wrap at 65535 several times.
class Simulation
{
  public:
    static constexpr std::uint32_t kSize = 8;

    Simulation(bool event_idx, std::uint32_t seed)
        : bench_({kSize, event_idx, 6}), d_(bench_.driver()), q_(bench_.queue()), rng_(seed)
    {
        for (std::uint32_t i = 0; i < 2 * kSize; ++i)
            free_slots_.push_back(i);
    }

    void run(int requests)
    {
        int idle_rounds = 0;
        while (completed_ < requests) {
            progress_ = false;
            if (burst_left_ == 0 && outstanding_.empty())
                burst_left_ = std::min(uniform(1, 2 * kSize + 2), requests - sent_);
            driver_submit();
            if (kick_pending_)
                device_on_kick();
            device_complete();
            if (interrupt_pending_)
                driver_on_interrupt();
            if (::testing::Test::HasFatalFailure())
                return;
            // Random choices make some rounds idle; many in a row mean a
            // notification was lost and nobody will ever act again.
            idle_rounds = progress_ ? 0 : idle_rounds + 1;
            ASSERT_LT(idle_rounds, 100)
                << "stalled: a notification was lost (sent " << sent_ << ", completed "
                << completed_ << ", device holds " << device_held_.size() << ")";
        }
        EXPECT_EQ(d_.in_flight(), 0U);
        EXPECT_EQ(q_.in_flight_count(), 0U);
        EXPECT_EQ(d_.free_descriptors(), kSize);
        EXPECT_FALSE(q_.broken());
        EXPECT_FALSE(d_.broken());
    }

    int kicks() const { return kicks_; }
    int interrupts() const { return interrupts_; }

  private:
    struct Request {
        std::uint32_t id;
        std::uint32_t slot; // 512-byte data slot owned until completion
        std::uint32_t writable_len;
    };

    int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
    bool coin(int percent) { return uniform(0, 99) < percent; }
    static std::uint32_t reply_len(const Request& r)
    {
        return std::min(r.writable_len, r.id % 97 + 1);
    }

    void driver_submit()
    {
        const int now = std::min(uniform(0, 3), burst_left_);
        for (int i = 0; i < now; ++i) {
            if (!add_one())
                break; // ring full: wait for completions
            if (coin(30) && d_.kick_needed())
                kick();
        }
        if (d_.kick_needed())
            kick();
    }

    // Adds one random request; false if the ring is full.
    bool add_one()
    {
        const bool indirect = coin(40);
        const auto max_buffers = static_cast<std::uint32_t>(indirect ? 6 : 3);
        const auto nr = static_cast<std::uint32_t>(uniform(1, static_cast<int>(max_buffers) - 1));
        const auto nw = static_cast<std::uint32_t>(uniform(0, static_cast<int>(max_buffers - nr)));
        const std::uint32_t slot = free_slots_.front();
        const std::uint32_t base = slot * 512;
        const auto id = static_cast<std::uint32_t>(sent_);
        std::memcpy(bench_.data(base), &id, 4);
        std::vector<GuestBuffer> writable;
        std::uint32_t wlen = 0;
        for (std::uint32_t k = 0; k < nw; ++k) {
            const auto len = static_cast<std::uint32_t>(uniform(0, 60));
            writable.push_back({Bench::addr(base + 16 + wlen), len});
            wlen += len;
        }
        auto r = d_.add(split_id_bytes(base, nr), writable, indirect);
        EXPECT_TRUE(r.ok()) << r.error().message();
        if (!r.ok() || !r->has_value())
            return false;
        EXPECT_FALSE(outstanding_.contains(**r)) << "head reused while in flight";
        free_slots_.pop_front();
        outstanding_[**r] = Request{id, slot, wlen};
        ++sent_;
        --burst_left_;
        progress_ = true;
        return true;
    }

    void kick()
    {
        kick_pending_ = true;
        ++kicks_;
    }

    void device_on_kick()
    {
        kick_pending_ = false;
        if (coin(50))
            q_.disable_notification();
        do {
            while (true) {
                auto c = q_.pop();
                ASSERT_TRUE(c.ok()) << c.error().message();
                if (!c->has_value())
                    break;
                // Served now, returned later.
                ASSERT_EQ(serve_one(**c), reply_len(outstanding_.at((*c)->head())));
                device_held_.push_back((*c)->head());
                progress_ = true;
            }
        } while (q_.enable_notification());
    }

    void device_complete()
    {
        if (device_held_.empty())
            return;
        std::shuffle(device_held_.begin(), device_held_.end(), rng_);
        const int n = uniform(0, static_cast<int>(device_held_.size()));
        for (int k = 0; k < n; ++k) {
            const std::uint16_t head = device_held_.front();
            device_held_.pop_front();
            ASSERT_TRUE(q_.push(head, reply_len(outstanding_.at(head))).ok());
            progress_ = true;
        }
        if (n > 0 && q_.needs_notification()) {
            interrupt_pending_ = true;
            ++interrupts_;
        }
    }

    void driver_on_interrupt()
    {
        interrupt_pending_ = false;
        d_.disable_interrupts();
        do {
            while (true) {
                auto u = d_.get_used();
                ASSERT_TRUE(u.ok()) << u.error().message();
                if (!u->has_value())
                    break;
                auto it = outstanding_.find((*u)->head);
                ASSERT_NE(it, outstanding_.end());
                const Request req = it->second;
                ASSERT_EQ((*u)->len, reply_len(req));
                for (std::uint32_t k = 0; k < (*u)->len; ++k)
                    ASSERT_EQ(std::to_integer<std::uint8_t>(*bench_.data(req.slot * 512 + 16 + k)),
                              static_cast<std::uint8_t>(req.id + k));
                free_slots_.push_back(req.slot);
                outstanding_.erase(it);
                ++completed_;
                progress_ = true;
            }
        } while (d_.enable_interrupts());
    }

    Bench bench_;
    SplitDriver& d_;
    SplitQueue& q_;
    std::mt19937 rng_;
    std::map<std::uint16_t, Request> outstanding_; // by head, the driver's view
    std::deque<std::uint16_t> device_held_;        // popped, not yet pushed
    std::deque<std::uint32_t> free_slots_;
    int burst_left_ = 0;
    int sent_ = 0;
    int completed_ = 0;
    bool kick_pending_ = false;
    bool interrupt_pending_ = false;
    bool progress_ = false;
    int kicks_ = 0;
    int interrupts_ = 0;
};

TEST(RoundTrip, RandomizedWithEventIdx)
{
    Simulation sim(true, 1);
    sim.run(70000); // > 65536 requests: indices wrap
    // EVENT_IDX must actually suppress notifications, not just be safe.
    EXPECT_LT(sim.kicks(), 60000);
    EXPECT_LT(sim.interrupts(), 60000);
}

TEST(RoundTrip, RandomizedWithFlags)
{
    Simulation sim(false, 2);
    sim.run(70000);
}

// Driver and device on two threads, polling: exercises the ring ordering
// (a missing acquire/release shows up as wrong data or a bad element).
TEST(RoundTrip, TwoThreads)
{
    constexpr int kRequests = 10000;
    Bench b({64, true, 4});
    std::atomic<bool> device_failed{false};
    std::atomic<bool> stop{false};
    std::thread device([&] {
        SplitQueue& q = b.queue();
        int served = 0;
        while (served < kRequests && !stop.load()) {
            auto c = q.pop();
            if (!c.ok()) {
                device_failed = true;
                return;
            }
            if (!c->has_value()) {
                std::this_thread::yield();
                continue;
            }
            const std::uint32_t written = serve_one(**c);
            if (!q.push((*c)->head(), written).ok()) {
                device_failed = true;
                return;
            }
            ++served;
        }
    });
    SplitDriver& d = b.driver();
    std::map<std::uint16_t, std::uint32_t> ids;
    int sent = 0;
    int completed = 0;
    while (completed < kRequests && !device_failed) {
        if (sent < kRequests) {
            const auto id = static_cast<std::uint32_t>(sent);
            const std::uint32_t base = (id % 128) * 256; // 128 slots > 64 in flight
            std::memcpy(b.data(base), &id, 4);
            auto r = d.add(std::vector<GuestBuffer>{{Bench::addr(base), 4}},
                           std::vector<GuestBuffer>{{Bench::addr(base + 8), 100}}, id % 3 == 0);
            ASSERT_TRUE(r.ok()) << r.error().message();
            if (r->has_value()) {
                ids[**r] = id;
                ++sent;
            }
        }
        auto u = d.get_used();
        ASSERT_TRUE(u.ok()) << u.error().message();
        if (!u->has_value()) {
            if (sent == kRequests)
                std::this_thread::yield();
            continue;
        }
        const std::uint32_t id = ids.at((*u)->head);
        ids.erase((*u)->head);
        const std::uint32_t base = (id % 128) * 256;
        ASSERT_EQ((*u)->len, id % 97 + 1);
        ASSERT_EQ(std::to_integer<std::uint8_t>(*b.data(base + 8)), static_cast<std::uint8_t>(id));
        ++completed;
    }
    stop = true;
    device.join();
    EXPECT_FALSE(device_failed.load());
    EXPECT_EQ(completed, kRequests);
}

} // namespace
} // namespace vl::virtq
