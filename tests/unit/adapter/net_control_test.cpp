// SPDX-License-Identifier: Apache-2.0
// virtio-net's control queue as the adapter serves it: MQ_VQ_PAIRS_SET turns
// into enabling pairs; every malformed or unknown request is answered with
// VIRTIO_NET_ERR (or not at all when it has no byte for the answer), never a
// crash. First the commands on hand-built requests, then the queue on a ring
// written by hand, as a driver would (or a hostile one).
#include <gtest/gtest.h>

#include <poll.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "adapter_queue.hpp"
#include "base/event_fd.hpp"
#include "net_control.hpp"
#include "virtqueue/test_memory.hpp"

namespace vl::adapter
{
namespace
{

using virtq::DescriptorChain;
using virtq::test::RawRing;

constexpr std::uint16_t kNext = virtq::kDescFlagNext;
constexpr std::uint16_t kWrite = virtq::kDescFlagWrite;

// A control queue handler with max_pairs, recording what it was asked.
struct Control {
    explicit Control(std::uint16_t max_pairs, bool refuse = false)
        : net(
              max_pairs,
              [this, refuse](std::uint16_t pairs) -> Status {
                  calls.push_back(pairs);
                  if (refuse)
                      return Error("the back-end refused SET_VRING_ENABLE");
                  return ok_status();
              },
              Logger("test", LogLevel::error))
    {
    }
    std::vector<std::uint16_t> calls;
    NetControl net;
};

// A request: readable bytes (one buffer) and a writable part of `ack_size`.
struct Request {
    Request(std::vector<std::uint8_t> readable, std::size_t ack_size)
        : in(readable.size()), ack(ack_size, std::byte{0xaa})
    {
        // No memcpy from an empty vector's null data() (UBSan).
        std::ranges::transform(readable, in.begin(), [](std::uint8_t b) { return std::byte{b}; });
        chain.reset(3);
        std::array<std::span<std::byte>, 1> r{std::span(in)};
        std::array<std::span<std::byte>, 1> w{std::span(ack)};
        EXPECT_TRUE(chain
                        .append(in.empty() ? std::span<const std::span<std::byte>>{}
                                           : std::span<const std::span<std::byte>>(r),
                                static_cast<std::uint32_t>(in.size()), false)
                        .ok());
        EXPECT_TRUE(chain
                        .append(ack.empty() ? std::span<const std::span<std::byte>>{}
                                            : std::span<const std::span<std::byte>>(w),
                                static_cast<std::uint32_t>(ack.size()), true)
                        .ok());
    }
    std::vector<std::byte> in;
    std::vector<std::byte> ack;
    DescriptorChain chain;
};

std::vector<std::uint8_t> pairs_set(std::uint16_t pairs)
{
    return {net::kClassMq, net::kCmdVqPairsSet, static_cast<std::uint8_t>(pairs & 0xff),
            static_cast<std::uint8_t>(pairs >> 8)};
}

std::uint8_t answer(const Request& r)
{
    return std::to_integer<std::uint8_t>(r.ack.at(0));
}

TEST(NetControl, PairsSetEnablesThatManyPairs)
{
    Control c(4);
    Request r(pairs_set(2), 1);
    EXPECT_EQ(c.net.serve(r.chain), 1u);
    EXPECT_EQ(answer(r), net::kAckOk);
    EXPECT_EQ(c.calls, std::vector<std::uint16_t>{2});
    // All of them, and back to one.
    Request all(pairs_set(4), 1), one(pairs_set(1), 1);
    c.net.serve(all.chain);
    c.net.serve(one.chain);
    EXPECT_EQ(answer(all), net::kAckOk);
    EXPECT_EQ(answer(one), net::kAckOk);
    EXPECT_EQ(c.calls, (std::vector<std::uint16_t>{2, 4, 1}));
}

TEST(NetControl, PairCountsOutOfRangeAreErrors)
{
    Control c(4);
    for (std::uint16_t pairs : std::initializer_list<std::uint16_t>{0, 5, 0x8000, 0x8001, 0xffff}) {
        Request r(pairs_set(pairs), 1);
        EXPECT_EQ(c.net.serve(r.chain), 1u) << pairs;
        EXPECT_EQ(answer(r), net::kAckErr) << pairs;
    }
    EXPECT_TRUE(c.calls.empty());
}

TEST(NetControl, ShortHeaderIsAnError)
{
    Control c(2);
    Request empty({}, 1), one_byte({net::kClassMq}, 1);
    EXPECT_EQ(c.net.serve(empty.chain), 1u);
    EXPECT_EQ(answer(empty), net::kAckErr);
    EXPECT_EQ(c.net.serve(one_byte.chain), 1u);
    EXPECT_EQ(answer(one_byte), net::kAckErr);
    EXPECT_TRUE(c.calls.empty());
}

TEST(NetControl, UnknownClassesAndCommandsAreErrors)
{
    Control c(2);
    // RX promiscuous (class 0), MAC table (1), VLAN (2), ANNOUNCE (3),
    // MQ's RSS_CONFIG (4, 1) and HASH_CONFIG (4, 2), guest offloads (5),
    // notification coalescing (6), a class that does not exist (200).
    const std::vector<std::vector<std::uint8_t>> requests = {{0, 0, 1},
                                                             {1, 1, 0, 0, 0, 0},
                                                             {2, 0, 1, 0},
                                                             {3, 0},
                                                             {4, 1, 0, 0},
                                                             {4, 2, 0, 0},
                                                             {5, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                                                             {6, 0, 0, 0},
                                                             {200, 7, 2, 0}};
    for (const auto& bytes : requests) {
        Request r(bytes, 1);
        EXPECT_EQ(c.net.serve(r.chain), 1u);
        EXPECT_EQ(answer(r), net::kAckErr) << int(bytes[0]) << "/" << int(bytes[1]);
    }
    EXPECT_TRUE(c.calls.empty());
}

TEST(NetControl, PairsSetWithTheWrongDataSizeIsAnError)
{
    Control c(2);
    Request none({net::kClassMq, net::kCmdVqPairsSet}, 1);
    Request one({net::kClassMq, net::kCmdVqPairsSet, 2}, 1);
    Request three({net::kClassMq, net::kCmdVqPairsSet, 2, 0, 0}, 1);
    for (Request* r : {&none, &one, &three}) {
        EXPECT_EQ(c.net.serve(r->chain), 1u);
        EXPECT_EQ(answer(*r), net::kAckErr);
    }
    EXPECT_TRUE(c.calls.empty());
}

TEST(NetControl, OversizedRequestIsAnError)
{
    Control c(2);
    std::vector<std::uint8_t> big = pairs_set(2);
    big.resize(net::kMaxRequest + 1);
    Request r(big, 1);
    EXPECT_EQ(c.net.serve(r.chain), 1u);
    EXPECT_EQ(answer(r), net::kAckErr);
    EXPECT_TRUE(c.calls.empty());
}

TEST(NetControl, BackendRefusalIsAnError)
{
    Control c(2, /*refuse=*/true);
    Request r(pairs_set(2), 1);
    EXPECT_EQ(c.net.serve(r.chain), 1u);
    EXPECT_EQ(answer(r), net::kAckErr);
    EXPECT_EQ(c.calls, std::vector<std::uint16_t>{2});
}

TEST(NetControl, NoWritableByteGetsNoAnswer)
{
    Control c(2);
    Request r(pairs_set(2), 0);
    EXPECT_EQ(c.net.serve(r.chain), 0u);
    // It was served all the same (the driver just cannot read the ack).
    EXPECT_EQ(c.calls, std::vector<std::uint16_t>{2});
    Request bad({4}, 0);
    EXPECT_EQ(c.net.serve(bad.chain), 0u);
}

TEST(NetControl, AnswerGoesToTheFirstWritableByte)
{
    Control c(2);
    Request r(pairs_set(2), 4);
    EXPECT_EQ(c.net.serve(r.chain), 1u);
    EXPECT_EQ(answer(r), net::kAckOk);
    EXPECT_EQ(r.ack[1], std::byte{0xaa}); // the rest untouched
}

// ---- the queue: requests in a ring, answers in the used ring --------------

// A control queue on a hand-written ring: the driver's side is RawRing.
struct Queue {
    explicit Queue(std::uint16_t max_pairs, bool event_idx = false)
        : ring(8, event_idx), control(max_pairs)
    {
        auto q = AdapterQueue::create(
            ring.memory(), ring.config(),
            [this](const DescriptorChain& r) { return control.net.serve(r); },
            [this] {
                ++notified;
                return ok_status();
            });
        EXPECT_TRUE(q.ok()) << q.error().message();
        if (q.ok())
            queue.emplace(std::move(q).value());
    }

    // Lays out a request at descriptors first..first+2: header+data in one
    // readable buffer at data offset `slot * 64`, the ack after it.
    std::uint16_t put(std::uint16_t first, std::uint32_t slot, std::vector<std::uint8_t> bytes)
    {
        const std::uint64_t off = slot * 64;
        std::memcpy(ring.data(off), bytes.data(), bytes.size());
        *ring.data(off + 32) = std::byte{0xaa};
        ring.set_desc(first, RawRing::addr(off), static_cast<std::uint32_t>(bytes.size()), kNext,
                      first + 1);
        ring.set_desc(first + 1, RawRing::addr(off + 32), 1, kWrite);
        ring.make_available(first);
        return first;
    }
    std::uint8_t ack(std::uint32_t slot) const
    {
        return std::to_integer<std::uint8_t>(*ring.data(slot * 64 + 32));
    }

    RawRing ring;
    Control control;
    int notified = 0;
    std::optional<AdapterQueue> queue;
};

TEST(AdapterQueue, ServesEveryAvailableRequestAndSignalsOnce)
{
    Queue q(4);
    ASSERT_TRUE(q.queue);
    q.put(0, 0, pairs_set(2));
    q.put(2, 1, {net::kClassMq}); // short header
    q.put(4, 2, pairs_set(9));    // above the maximum
    ASSERT_TRUE(q.queue->serve().ok());
    EXPECT_EQ(q.queue->served(), 3u);
    EXPECT_EQ(q.ring.used_idx(), 3);
    EXPECT_EQ(q.ring.used_elem(0), (std::pair<std::uint32_t, std::uint32_t>{0, 1}));
    EXPECT_EQ(q.ring.used_elem(1), (std::pair<std::uint32_t, std::uint32_t>{2, 1}));
    EXPECT_EQ(q.ring.used_elem(2), (std::pair<std::uint32_t, std::uint32_t>{4, 1}));
    EXPECT_EQ(q.ack(0), net::kAckOk);
    EXPECT_EQ(q.ack(1), net::kAckErr);
    EXPECT_EQ(q.ack(2), net::kAckErr);
    EXPECT_EQ(q.notified, 1);
    EXPECT_EQ(q.control.calls, std::vector<std::uint16_t>{2});
    // Nothing new: nothing served, no signal.
    ASSERT_TRUE(q.queue->serve().ok());
    EXPECT_EQ(q.notified, 1);
}

TEST(AdapterQueue, RearmsKicksWithEventIdx)
{
    Queue q(2, /*event_idx=*/true);
    ASSERT_TRUE(q.queue);
    q.ring.set_used_event(0);
    q.put(0, 0, pairs_set(2));
    ASSERT_TRUE(q.queue->serve().ok());
    EXPECT_EQ(q.ring.avail_event(), 1); // kick me for the next one
    EXPECT_EQ(q.notified, 1);
    EXPECT_EQ(q.ack(0), net::kAckOk);
}

TEST(AdapterQueue, ChainWithoutWritableByteIsUsedWithLengthZero)
{
    Queue q(2);
    ASSERT_TRUE(q.queue);
    const auto bytes = pairs_set(2);
    std::memcpy(q.ring.data(0), bytes.data(), bytes.size());
    q.ring.set_desc(0, RawRing::addr(0), 4, 0);
    q.ring.make_available(0);
    ASSERT_TRUE(q.queue->serve().ok());
    EXPECT_EQ(q.ring.used_elem(0), (std::pair<std::uint32_t, std::uint32_t>{0, 0}));
}

TEST(AdapterQueue, BrokenRingIsAnErrorNotACrash)
{
    Queue q(2);
    ASSERT_TRUE(q.queue);
    // A buffer outside guest memory, then a head beyond the queue size.
    q.ring.set_desc(0, RawRing::addr(0) + RawRing::kRegionSize, 4, 0);
    q.ring.make_available(0);
    auto first = q.queue->serve();
    ASSERT_FALSE(first.ok());
    EXPECT_FALSE(q.queue->serve().ok()); // stays broken
    EXPECT_TRUE(q.control.calls.empty());

    Queue r(2);
    ASSERT_TRUE(r.queue);
    r.ring.make_available(200);
    EXPECT_FALSE(r.queue->serve().ok());
}

TEST(AdapterQueue, ChainsSplitAcrossDescriptorsAreRead)
{
    // Linux sends the header, the data and the ack as three buffers.
    Queue q(4);
    ASSERT_TRUE(q.queue);
    const std::uint8_t header[2] = {net::kClassMq, net::kCmdVqPairsSet};
    const std::uint8_t data[2] = {3, 0};
    std::memcpy(q.ring.data(0), header, 2);
    std::memcpy(q.ring.data(16), data, 2);
    q.ring.set_desc(0, RawRing::addr(0), 2, kNext, 1);
    q.ring.set_desc(1, RawRing::addr(16), 2, kNext, 2);
    q.ring.set_desc(2, RawRing::addr(32), 1, kWrite);
    q.ring.make_available(0);
    ASSERT_TRUE(q.queue->serve().ok());
    EXPECT_EQ(q.ack(0), net::kAckOk);
    EXPECT_EQ(q.control.calls, std::vector<std::uint16_t>{3});
}

// ---- the queue's thread ------------------------------------------------

bool wait_for(const std::function<bool()>& done)
{
    for (int i = 0; i < 2000 && !done(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return done();
}

TEST(AdapterQueueThread, AnswersOnEveryKickUntilStopped)
{
    RawRing ring(8);
    Control control(2);
    std::atomic<int> notified{0};
    auto kick = EventFd::create();
    ASSERT_TRUE(kick.ok());
    auto queue = AdapterQueue::create(
        ring.memory(), ring.config(),
        [&control](const DescriptorChain& r) { return control.net.serve(r); },
        [&notified] {
            ++notified;
            return ok_status();
        });
    ASSERT_TRUE(queue.ok()) << queue.error().message();
    // A request waiting before the thread starts is served without a kick.
    const auto request = pairs_set(2);
    std::memcpy(ring.data(0), request.data(), request.size());
    ring.set_desc(0, RawRing::addr(0), 4, kNext, 1);
    ring.set_desc(1, RawRing::addr(32), 1, kWrite);
    ring.make_available(0);
    auto thread = AdapterQueueThread::start(std::move(queue).value(), kick->get());
    ASSERT_TRUE(thread.ok()) << thread.error().message();
    EXPECT_TRUE(wait_for([&] { return ring.used_idx() == 1; }));
    EXPECT_EQ(std::to_integer<int>(*ring.data(32)), net::kAckOk);

    // The next one after a kick.
    const auto one = pairs_set(1);
    std::memcpy(ring.data(64), one.data(), one.size());
    ring.set_desc(2, RawRing::addr(64), 4, kNext, 3);
    ring.set_desc(3, RawRing::addr(96), 1, kWrite);
    ring.make_available(2);
    ASSERT_TRUE(kick->signal().ok());
    EXPECT_TRUE(wait_for([&] { return ring.used_idx() == 2; }));
    EXPECT_TRUE(wait_for([&] { return notified == 2; }));
    EXPECT_EQ((*thread)->served(), 2u);
    EXPECT_FALSE((*thread)->failure());
    thread->reset(); // joins
    EXPECT_EQ(control.calls, (std::vector<std::uint16_t>{2, 1}));
}

TEST(AdapterQueueThread, BrokenRingStopsTheThreadAndSaysWhy)
{
    RawRing ring(8);
    Control control(2);
    auto kick = EventFd::create();
    ASSERT_TRUE(kick.ok());
    auto queue = AdapterQueue::create(
        ring.memory(), ring.config(),
        [&control](const DescriptorChain& r) { return control.net.serve(r); },
        [] { return ok_status(); });
    ASSERT_TRUE(queue.ok());
    auto thread = AdapterQueueThread::start(std::move(queue).value(), kick->get());
    ASSERT_TRUE(thread.ok());
    ring.make_available(100); // a head beyond the queue
    ASSERT_TRUE(kick->signal().ok());
    pollfd failed{(*thread)->failed_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&failed, 1, 2000), 1);
    auto why = (*thread)->failure();
    ASSERT_TRUE(why);
    EXPECT_FALSE(why->message().empty());
    thread->reset();
}

} // namespace
} // namespace vl::adapter
