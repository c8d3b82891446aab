// SPDX-License-Identifier: Apache-2.0
// The test bench of the back-end framework: a scriptable test device, guest
// memory in a memfd, driver-side queues (SplitDriver) in it, and a session
// served on one end of a socket pair while the test plays the front-end
// (vhost_user::Frontend) on the other.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "backend/device.hpp"
#include "backend/frontend_notifier.hpp"
#include "backend/session.hpp"
#include "base/event_fd.hpp"
#include "base/mapping.hpp"
#include "vhost_user/connection.hpp"
#include "vhost_user/frontend.hpp"
#include "vhost_user/test_util.hpp"
#include "virtqueue/ring.hpp"
#include "virtqueue/split_driver.hpp"

namespace vl::backend::test
{

using namespace std::chrono_literals;
using vhost_user::test::count_open_fds;
using vhost_user::test::FdLeakTest;

inline constexpr const char* kMemfdName = "vl-backend-test-ram";

// Lines of /proc/self/maps that mention `needle` (mappings of a memfd).
inline int count_mappings(const std::string& needle)
{
    std::ifstream maps("/proc/self/maps");
    int n = 0;
    for (std::string line; std::getline(maps, line);)
        if (line.find(needle) != std::string::npos)
            ++n;
    return n;
}

// Polls `condition` until it holds or `timeout` passes.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = 5s)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

// True once `fd` is readable (an eventfd was signalled), within `timeout`.
inline bool readable_within(int fd, std::chrono::milliseconds timeout)
{
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

// A fresh folder, removed with its contents at the end.
class TempDir
{
  public:
    // Under /var/tmp by default, a disk file system on most machines (/tmp
    // may be tmpfs, which refuses O_DIRECT before Linux 6.6).
    explicit TempDir(const std::string& parent = "/var/tmp")
    {
        std::string pattern = parent + "/vl-test-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr)
            throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }
    [[nodiscard]] const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// ---------------------------------------------------------------------------
// The test device

// A device whose queues echo: each chain's readable bytes are copied into
// its writable part and it is returned with that many bytes written. It
// records what it sees, and can be switched to hold chains (asynchronous
// completion, released from the test thread through a watched eventfd) or
// to leave them alone (a buggy device). Its config space is 16 bytes: byte
// 0 is a writable "select", bytes 1..15 read as select + offset (so a
// write changes later reads, like virtio-input).
class TestDevice final : public Device
{
  public:
    enum class Mode { echo, hold, ignore };
    static constexpr std::uint64_t kDeviceFeature = std::uint64_t{1} << 3;
    static constexpr std::uint64_t kCompleteToken = 7;

    explicit TestDevice(std::uint32_t queues = 2, std::uint32_t max_size = 256)
        : queues_(queues), max_size_(max_size), per_queue_(queues)
    {
        for (auto& q : per_queue_)
            q.complete = *EventFd::create();
    }

    [[nodiscard]] std::uint32_t num_queues() const override { return queues_; }
    [[nodiscard]] std::uint32_t max_queue_size() const override { return max_size_; }
    [[nodiscard]] std::uint64_t features() const override { return kDeviceFeature; }
    [[nodiscard]] std::uint64_t protocol_features() const override
    {
        return vhost_user::bit(vhost_user::ProtocolFeature::config);
    }

    Result<std::vector<std::byte>> read_config(std::uint32_t offset, std::uint32_t size) override
    {
        std::lock_guard lock(mutex_);
        if (offset + size > 16)
            return Error("beyond the 16-byte config space", EINVAL);
        std::vector<std::byte> out(size);
        for (std::uint32_t i = 0; i < size; ++i) {
            std::uint32_t at = offset + i;
            out[i] = at == 0 ? std::byte{select_} : static_cast<std::byte>(select_ + at);
        }
        return out;
    }
    Status write_config(std::uint32_t offset, std::span<const std::byte> data) override
    {
        std::lock_guard lock(mutex_);
        if (offset != 0 || data.size() != 1)
            return Error("only byte 0 (select) is writable", EPERM);
        select_ = static_cast<std::uint8_t>(data[0]);
        return ok_status();
    }
    Status set_features(std::uint64_t acked) override
    {
        acked_features = acked;
        ++set_features_calls;
        return ok_status();
    }
    void memory_changed(const virtq::GuestMemory&) override { ++memory_changes; }
    void reset() override { ++resets; }
    void bind_notifier(FrontendNotifier* n) override { notifier = n; }

    Status queue_started(QueueContext& ctx) override
    {
        ++per_queue_[ctx.index()].starts;
        return ctx.watch(per_queue_[ctx.index()].complete.get(), kCompleteToken);
    }
    Status process_queue(QueueContext& ctx) override
    {
        Queue& q = per_queue_[ctx.index()];
        ++q.process_calls;
        if (mode(ctx.index()) == Mode::ignore)
            return ok_status();
        for (;;) {
            VL_TRY_ASSIGN(auto chain, ctx.pop());
            if (!chain) {
                if (auto hook = take_when_empty())
                    hook();
                return ok_status();
            }
            {
                std::lock_guard lock(mutex_);
                q.seen.push_back(chain->head());
            }
            ++q.popped;
            if (mode(ctx.index()) == Mode::hold) {
                std::lock_guard lock(mutex_);
                q.held.push_back(std::move(*chain));
                continue;
            }
            VL_TRY(echo(ctx, *chain));
        }
    }
    Status handle_event(QueueContext& ctx, std::uint64_t token) override
    {
        if (token != kCompleteToken)
            return Error("unexpected token", EINVAL);
        Queue& q = per_queue_[ctx.index()];
        (void)q.complete.drain();
        std::deque<std::uint16_t> wanted;
        {
            std::lock_guard lock(mutex_);
            wanted.swap(q.release);
        }
        for (std::uint16_t head : wanted) {
            std::optional<virtq::DescriptorChain> chain;
            {
                std::lock_guard lock(mutex_);
                for (auto it = q.held.begin(); it != q.held.end(); ++it)
                    if (it->head() == head) {
                        chain = std::move(*it);
                        q.held.erase(it);
                        break;
                    }
            }
            if (chain)
                VL_TRY(echo(ctx, *chain));
        }
        return ok_status();
    }
    void queue_stopped(QueueContext& ctx) override
    {
        Queue& q = per_queue_[ctx.index()];
        ++q.stops;
        std::lock_guard lock(mutex_);
        q.held.clear(); // given up: the buffers may be unmapped after this
    }

    // ---- for the test thread ----
    // Runs `hook` once on the worker, the next time process_queue() finds
    // the queue empty (to play a driver racing with the device).
    void when_empty(std::function<void()> hook)
    {
        std::lock_guard lock(mutex_);
        when_empty_ = std::move(hook);
    }
    void set_mode(std::uint32_t queue, Mode m)
    {
        std::lock_guard lock(mutex_);
        per_queue_[queue].mode = m;
    }
    // Completes the held chain `head` (from the queue's worker).
    void release(std::uint32_t queue, std::uint16_t head)
    {
        {
            std::lock_guard lock(mutex_);
            per_queue_[queue].release.push_back(head);
        }
        (void)per_queue_[queue].complete.signal();
    }
    std::vector<std::uint16_t> seen(std::uint32_t queue)
    {
        std::lock_guard lock(mutex_);
        return per_queue_[queue].seen;
    }
    std::size_t held(std::uint32_t queue)
    {
        std::lock_guard lock(mutex_);
        return per_queue_[queue].held.size();
    }
    int popped(std::uint32_t queue) const { return per_queue_[queue].popped; }
    int process_calls(std::uint32_t queue) const { return per_queue_[queue].process_calls; }
    int starts(std::uint32_t queue) const { return per_queue_[queue].starts; }
    int stops(std::uint32_t queue) const { return per_queue_[queue].stops; }

    std::atomic<std::uint64_t> acked_features{0};
    std::atomic<int> set_features_calls{0};
    std::atomic<int> memory_changes{0};
    std::atomic<int> resets{0};
    std::atomic<FrontendNotifier*> notifier{nullptr};

  private:
    struct Queue {
        Mode mode = Mode::echo;
        EventFd complete;
        std::vector<std::uint16_t> seen;
        std::vector<virtq::DescriptorChain> held;
        std::deque<std::uint16_t> release;
        std::atomic<int> popped{0};
        std::atomic<int> process_calls{0};
        std::atomic<int> starts{0};
        std::atomic<int> stops{0};
    };

    Mode mode(std::uint32_t queue)
    {
        std::lock_guard lock(mutex_);
        return per_queue_[queue].mode;
    }
    std::function<void()> take_when_empty()
    {
        std::lock_guard lock(mutex_);
        return std::exchange(when_empty_, nullptr);
    }
    static Status echo(QueueContext& ctx, const virtq::DescriptorChain& chain)
    {
        std::vector<std::byte> data(chain.readable_len());
        chain.read_into(data);
        const std::size_t n = chain.write_from(data);
        return ctx.push(chain.head(), static_cast<std::uint32_t>(n));
    }

    std::uint32_t queues_;
    std::uint32_t max_size_;
    std::mutex mutex_; // protects the vectors in per_queue_, modes and select_
    std::vector<Queue> per_queue_;
    std::uint8_t select_ = 0;
    std::function<void()> when_empty_;
};

// ---------------------------------------------------------------------------
// Guest memory and driver-side queues

// Guest RAM: a memfd mapped here, seen by the back-end at guest address
// `guest_base` (deliberately different from our mapping's address, which is
// the "user address" of vhost-user).
class GuestRam
{
  public:
    static constexpr std::uint64_t kDefaultBase = 0x4000'0000;

    explicit GuestRam(std::uint64_t size = 2 << 20, std::uint64_t guest_base = kDefaultBase)
        : size_(size), guest_base_(guest_base)
    {
        fd_.reset(::memfd_create(kMemfdName, MFD_CLOEXEC));
        EXPECT_TRUE(fd_.valid());
        EXPECT_EQ(::ftruncate(fd_.get(), static_cast<off_t>(size)), 0);
        mapping_ = std::move(Mapping::map(fd_.get(), size, 0)).value();
    }

    [[nodiscard]] int fd() const { return fd_.get(); }
    [[nodiscard]] std::uint64_t size() const { return size_; }
    [[nodiscard]] std::uint64_t guest_base() const { return guest_base_; }
    [[nodiscard]] std::uint64_t user_base() const
    {
        return reinterpret_cast<std::uint64_t>(mapping_.data());
    }
    [[nodiscard]] std::byte* host(std::uint64_t offset) const { return mapping_.data() + offset; }
    [[nodiscard]] std::uint64_t guest(std::uint64_t offset) const { return guest_base_ + offset; }
    [[nodiscard]] std::uint64_t user(std::uint64_t offset) const { return user_base() + offset; }

    // The region [offset, offset + size) of this RAM, as vhost-user shares it.
    [[nodiscard]] vhost_user::SharedRegion region(std::uint64_t offset, std::uint64_t size) const
    {
        return {vhost_user::MemoryRegion{guest(offset), size, user(offset), offset}, fd()};
    }
    [[nodiscard]] vhost_user::SharedRegion whole() const { return region(0, size_); }

  private:
    std::uint64_t size_;
    std::uint64_t guest_base_;
    UniqueFd fd_;
    Mapping mapping_;
};

// One queue as the driver sees it: rings laid out in the RAM, a kick and a
// call eventfd.
class DriverQueue
{
  public:
    DriverQueue(GuestRam& ram, std::uint64_t ring_offset, std::uint32_t size, bool event_idx)
        : ram_(ram), ring_offset_(ring_offset)
    {
        virtq::DriverConfig config{size, event_idx, 0};
        auto layout = virtq::RingLayout::compute(config);
        std::span<std::byte> memory(ram.host(ring_offset), layout->total_bytes);
        ring_.emplace(
            std::move(virtq::SplitDriver::create(memory, ram.guest(ring_offset), config)).value());
        kick_ = *EventFd::create();
        call_ = *EventFd::create();
        err_ = *EventFd::create();
    }

    [[nodiscard]] virtq::SplitDriver& ring() { return *ring_; }
    [[nodiscard]] int kick_fd() const { return kick_.get(); }
    [[nodiscard]] int call_fd() const { return call_.get(); }
    [[nodiscard]] int err_fd() const { return err_.get(); }
    [[nodiscard]] const EventFd& call() const { return call_; }

    // The front-end's (user) addresses of the three parts.
    [[nodiscard]] vhost_user::VringAddr addr(std::uint32_t index) const
    {
        const auto& l = ring_->layout();
        return {index,
                0,
                ram_.user(ring_offset_ + l.desc_offset),
                ram_.user(ring_offset_ + l.used_offset),
                ram_.user(ring_offset_ + l.avail_offset),
                0};
    }

    // Adds a chain (readable then writable guest buffers) and kicks if the
    // device asked for it. Returns the head.
    std::uint16_t submit(std::vector<virtq::GuestBuffer> readable,
                         std::vector<virtq::GuestBuffer> writable)
    {
        auto head = ring_->add(readable, writable);
        EXPECT_TRUE(head.ok() && head->has_value());
        if (ring_->kick_needed()) {
            EXPECT_TRUE(kick_.signal().ok());
            ++kicks_;
        }
        return head.ok() && head->has_value() ? **head : 0xffff;
    }
    void kick() { EXPECT_TRUE(kick_.signal().ok()); }
    // Kicks submit() sent (the device asked for them).
    [[nodiscard]] int kicks() const { return kicks_; }

    // The next used buffer, waiting on the call eventfd up to `timeout`.
    std::optional<virtq::UsedBuffer> wait_used(std::chrono::milliseconds timeout = 5s)
    {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto used = ring_->get_used();
            EXPECT_TRUE(used.ok()) << (used.ok() ? "" : used.error().message());
            if (!used.ok())
                return std::nullopt;
            if (used->has_value())
                return **used;
            if (ring_->enable_interrupts())
                continue;
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0 || !readable_within(call_.get(), left))
                return std::nullopt;
            (void)call_.drain();
        }
    }

  private:
    GuestRam& ram_;
    std::uint64_t ring_offset_;
    std::optional<virtq::SplitDriver> ring_;
    EventFd kick_;
    EventFd call_;
    EventFd err_;
    int kicks_ = 0;
};

// ---------------------------------------------------------------------------
// A device's queue without a session or worker thread

// The device's view of a GuestRam: one region, with its user address.
inline virtq::GuestMemory memory_of(const GuestRam& ram)
{
    virtq::GuestMemory memory;
    EXPECT_TRUE(memory.add_region({ram.guest(0), ram.size(), ram.host(0), ram.user(0)}).ok());
    return memory;
}

// The worker's event loop as a device sees it, recording what is watched.
class RecordingEvents final : public EventSources
{
  public:
    Status watch(int fd, std::uint64_t token) override
    {
        watched.emplace_back(fd, token);
        return ok_status();
    }
    Status unwatch(int fd) override
    {
        std::erase_if(watched, [fd](const auto& w) { return w.first == fd; });
        return ok_status();
    }
    std::vector<std::pair<int, std::uint64_t>> watched;
};

// Both sides of one ring built by hand: the driver's (a DriverQueue in the
// RAM) and the device's (a QueueContext over `memory`), so a test calls a
// device's queue callbacks directly, on its own thread.
class HandQueue
{
  public:
    HandQueue(GuestRam& ram, const virtq::GuestMemory& memory, std::uint32_t index,
              std::uint64_t ring_offset, std::uint32_t size = 16,
              std::uint64_t features = kFeatureEventIdx)
        : driver_(ram, ring_offset, size, (features & kFeatureEventIdx) != 0), memory_(memory),
          index_(index), size_(size), features_(features)
    {
        restart(0);
    }

    // The device side starts (again) at available index `avail_base`, as a
    // back-end does after SET_VRING_BASE; the driver's ring stays as it is.
    void restart(std::uint16_t avail_base)
    {
        virtq::QueueConfig config;
        config.size = size_;
        config.desc_addr = driver_.ring().desc_addr();
        config.avail_addr = driver_.ring().avail_addr();
        config.used_addr = driver_.ring().used_addr();
        config.event_idx = (features_ & kFeatureEventIdx) != 0;
        config.indirect_desc = (features_ & kFeatureIndirectDesc) != 0;
        config.avail_base = avail_base;
        auto queue = virtq::SplitQueue::create(memory_, config);
        EXPECT_TRUE(queue.ok()) << queue.error().message();
        ctx_.reset();
        ctx_.emplace(index_, std::move(queue).value(), memory_, features_, call_, events_,
                     Logger("queue", LogLevel::error));
    }

    [[nodiscard]] DriverQueue& driver() { return driver_; }
    [[nodiscard]] QueueContext& ctx() { return *ctx_; }
    [[nodiscard]] RecordingEvents& events() { return events_; }
    // The next used buffer, if the device returned one.
    std::optional<virtq::UsedBuffer> used()
    {
        auto u = driver_.ring().get_used();
        EXPECT_TRUE(u.ok());
        return u.ok() ? *u : std::nullopt;
    }

  private:
    DriverQueue driver_;
    const virtq::GuestMemory& memory_;
    std::uint32_t index_;
    std::uint32_t size_;
    std::uint64_t features_;
    RingSignal call_;
    RecordingEvents events_;
    std::optional<QueueContext> ctx_;
};

// ---------------------------------------------------------------------------
// A session on a socket pair

// Serves `device` on one end of a socket pair in a thread; the test drives
// the other end with `frontend`. Ends when the front-end closes (or the
// test calls stop()).
class ServedSession
{
  public:
    explicit ServedSession(Device& device, SessionOptions options = {},
                           LogLevel level = LogLevel::error)
        : device_(device)
    {
        auto pair = vhost_user::Connection::pair();
        EXPECT_TRUE(pair.ok());
        auto& [front, back] = *pair;
        stop_ = *EventFd::create();
        const int stop_fd = stop_.get();
        result_ = std::async(std::launch::async,
                             [this, stop_fd, options, level, conn = std::move(back)]() mutable {
                                 const int fds[] = {stop_fd};
                                 return serve_connection(device_, std::move(conn), notifier_, fds,
                                                         options, Logger("session", level));
                             });
        vhost_user::FrontendOptions fo;
        fo.reply_timeout = 10s;
        frontend_.emplace(std::move(front), fo);
    }
    ServedSession(const ServedSession&) = delete;
    ServedSession& operator=(const ServedSession&) = delete;
    ~ServedSession() { (void)finish(); }

    [[nodiscard]] vhost_user::Frontend& frontend() { return *frontend_; }
    [[nodiscard]] FrontendNotifier& notifier() { return notifier_; }

    // Closes the front-end's end and returns how the session ended.
    Status finish()
    {
        if (frontend_)
            frontend_->connection().close();
        if (!result_.valid())
            return final_;
        final_ = result_.get();
        return final_;
    }
    // Whether the back-end ended the session (closed its end) by itself,
    // within `timeout`; then its result is in final_result().
    bool ended_within(std::chrono::milliseconds timeout)
    {
        if (!result_.valid())
            return true;
        if (result_.wait_for(timeout) != std::future_status::ready)
            return false;
        final_ = result_.get();
        return true;
    }
    [[nodiscard]] const Status& final_result() const { return final_; }
    void stop() { (void)stop_.signal(); }

  private:
    Device& device_;
    FrontendNotifier notifier_;
    EventFd stop_;
    std::future<Status> result_;
    Status final_;
    std::optional<vhost_user::Frontend> frontend_;
};

// The usual bring-up, in QEMU's order, of `queues` (indices 0..n-1) over the
// whole RAM, with REPLY_ACK so every step's error shows on its call.
inline void negotiate(vhost_user::Frontend& f, bool event_idx = true)
{
    auto features = f.get_features();
    ASSERT_TRUE(features.ok()) << features.error().message();
    auto protocol = f.get_protocol_features();
    ASSERT_TRUE(protocol.ok());
    ASSERT_TRUE(f.set_protocol_features(*protocol).ok());
    ASSERT_TRUE(f.set_owner().ok());
    std::uint64_t ack = *features;
    if (!event_idx)
        ack &= ~kFeatureEventIdx;
    ASSERT_TRUE(f.set_features(ack).ok());
}

inline void start_queue(vhost_user::Frontend& f, DriverQueue& q, std::uint32_t index,
                        std::uint32_t size, std::uint32_t base = 0)
{
    ASSERT_TRUE(f.set_vring_num(index, size).ok());
    ASSERT_TRUE(f.set_vring_base(index, base).ok());
    auto s = f.set_vring_addr(q.addr(index));
    ASSERT_TRUE(s.ok()) << s.error().message();
    ASSERT_TRUE(f.set_vring_call(index, q.call_fd()).ok());
    ASSERT_TRUE(f.set_vring_err(index, q.err_fd()).ok());
    ASSERT_TRUE(f.set_vring_kick(index, q.kick_fd()).ok());
    ASSERT_TRUE(f.set_vring_enable(index, true).ok());
}

// Writes `text` at RAM offset `offset` and returns it as a guest buffer.
inline virtq::GuestBuffer put(GuestRam& ram, std::uint64_t offset, std::string_view text)
{
    std::memcpy(ram.host(offset), text.data(), text.size());
    return {ram.guest(offset), static_cast<std::uint32_t>(text.size())};
}

inline std::string read_back(GuestRam& ram, std::uint64_t offset, std::size_t len)
{
    return std::string(reinterpret_cast<const char*>(ram.host(offset)), len);
}

} // namespace vl::backend::test
