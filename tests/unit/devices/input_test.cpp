// SPDX-License-Identifier: Apache-2.0
// vhost-user-input: the config space (every selector, through
// write_config/read_config), the backlog's frame-preserving overflow, the
// event and status queues on rings built by hand (no socket, no worker
// thread), the synthetic line protocol and FIFO source, the evdev
// capabilities, and the command line.
#include <fcntl.h>
#include <libevdev/libevdev-uinput.h>
#include <linux/input.h>
#include <linux/virtio_input.h>
#include <poll.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <map>

#include "backend/harness.hpp"
#include "backend/program.hpp"
#include "input/evdev_source.hpp"
#include "input/input_config.hpp"
#include "input/input_device.hpp"
#include "input/synthetic_source.hpp"
#include "virtqueue/ring.hpp"

namespace vl::input
{
namespace
{

using namespace std::chrono_literals;
using backend::test::DriverQueue;
using backend::test::GuestRam;
namespace fs = std::filesystem;

constexpr InputEvent syn{EV_SYN, SYN_REPORT, 0};
InputEvent key(std::uint16_t code, std::int32_t value)
{
    return {EV_KEY, code, value};
}
InputEvent rel(std::uint16_t code, std::int32_t value)
{
    return {EV_REL, code, value};
}

// Everything written to stderr (where Logger writes) while it lives.
class StderrCapture
{
  public:
    StderrCapture()
    {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
        read_.reset(fds[0]);
        UniqueFd write_end(fds[1]);
        saved_.reset(::dup(2));
        ::dup2(write_end.get(), 2);
    }
    ~StderrCapture() { restore(); }
    std::string text()
    {
        restore();
        std::string out;
        char buf[4096];
        for (ssize_t n; (n = ::read(read_.get(), buf, sizeof(buf))) > 0;)
            out.append(buf, static_cast<std::size_t>(n));
        return out;
    }

  private:
    void restore()
    {
        if (saved_)
            ::dup2(saved_.get(), 2);
        saved_.reset();
    }
    UniqueFd read_;
    UniqueFd saved_;
};

using backend::test::TempDir;

bool readable_within(int fd, std::chrono::milliseconds timeout)
{
    return backend::test::readable_within(fd, timeout);
}

// ---------------------------------------------------------------------------
// A source the test feeds by hand

class FakeSource final : public EventSource
{
  public:
    explicit FakeSource(InputCapabilities caps) : caps_(std::move(caps))
    {
        ready_ = *EventFd::create();
    }
    [[nodiscard]] const InputCapabilities& capabilities() const override { return caps_; }
    [[nodiscard]] int fd() const override { return ready_.get(); }
    Status read_events(std::vector<InputEvent>& out) override
    {
        (void)ready_.drain();
        out.insert(out.end(), pending_.begin(), pending_.end());
        pending_.clear();
        if (end_)
            return Error("fake source ended", ENODEV);
        return ok_status();
    }
    Status handle_status(const InputEvent& event) override
    {
        status.push_back(event);
        if (refuse_status)
            return Error("refused by the fake source");
        return ok_status();
    }

    void emit(std::vector<InputEvent> events, bool then_end = false)
    {
        pending_.insert(pending_.end(), events.begin(), events.end());
        end_ = then_end;
        (void)ready_.signal();
    }

    std::vector<InputEvent> status;
    bool refuse_status = false;

  private:
    InputCapabilities caps_;
    EventFd ready_;
    std::vector<InputEvent> pending_;
    bool end_ = false;
};

InputCapabilities test_capabilities()
{
    InputCapabilities caps;
    caps.name = "test keyboard";
    caps.serial = "SN-1234";
    caps.ids = DeviceIds{BUS_USB, 0x046d, 0xc31c, 0x0111};
    caps.properties.set(INPUT_PROP_POINTER);
    caps.properties.set(INPUT_PROP_DIRECT);
    caps.add(EV_KEY, KEY_A).add(EV_KEY, KEY_B).add(EV_KEY, BTN_LEFT);
    caps.add(EV_REL, REL_X).add(EV_REL, REL_WHEEL);
    caps.add(EV_LED, LED_CAPSL);
    caps.add_abs(ABS_X, AbsInfo{-100, 4095, 4, 8, 12});
    caps.add_abs(ABS_PRESSURE, AbsInfo{0, 255, 0, 0, 0});
    return caps;
}

// ---------------------------------------------------------------------------
// Config space

class InputConfigSpace : public ::testing::Test
{
  protected:
    InputConfigSpace() : device_(make_source(test_capabilities()), {}, Logger("t", LogLevel::error))
    {
    }
    static std::unique_ptr<FakeSource> make_source(InputCapabilities caps)
    {
        return std::make_unique<FakeSource>(std::move(caps));
    }

    // Selects (select, subsel) as the Linux driver does (two one-byte
    // writes) and reads the whole config back.
    std::vector<std::byte> query(InputDevice& device, std::uint8_t select, std::uint8_t subsel)
    {
        const std::byte s[1] = {std::byte{select}};
        const std::byte ss[1] = {std::byte{subsel}};
        EXPECT_TRUE(device.write_config(0, s).ok());
        EXPECT_TRUE(device.write_config(1, ss).ok());
        auto config = device.read_config(0, kConfigSize);
        EXPECT_TRUE(config.ok());
        EXPECT_EQ(config->size(), kConfigSize);
        EXPECT_EQ(std::to_integer<int>((*config)[0]), select);
        EXPECT_EQ(std::to_integer<int>((*config)[1]), subsel);
        for (int i = 3; i < 8; ++i)
            EXPECT_EQ(std::to_integer<int>((*config)[static_cast<std::size_t>(i)]), 0)
                << "reserved byte " << i;
        const auto size = std::to_integer<std::size_t>((*config)[2]);
        EXPECT_LE(size, 128U);
        for (std::size_t i = 8 + size; i < kConfigSize; ++i)
            EXPECT_EQ(std::to_integer<int>((*config)[i]), 0)
                << "union byte " << i - 8 << " after the answer";
        return std::vector<std::byte>(config->begin() + 8,
                                      config->begin() + 8 + static_cast<std::ptrdiff_t>(size));
    }
    std::vector<std::byte> query(std::uint8_t select, std::uint8_t subsel)
    {
        return query(device_, select, subsel);
    }
    static std::string as_string(const std::vector<std::byte>& bytes)
    {
        return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    static std::vector<unsigned> set_bits(const std::vector<std::byte>& bitmap)
    {
        std::vector<unsigned> bits;
        for (unsigned i = 0; i < bitmap.size() * 8; ++i)
            if ((std::to_integer<unsigned>(bitmap[i / 8]) >> (i % 8) & 1U) != 0)
                bits.push_back(i);
        return bits;
    }

    InputDevice device_;
};

TEST_F(InputConfigSpace, UnsetAnswersNothing)
{
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_UNSET, 0).empty());
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_UNSET, 7).empty());
}

TEST_F(InputConfigSpace, NameAndSerialAreStringsWithoutTerminator)
{
    EXPECT_EQ(as_string(query(VIRTIO_INPUT_CFG_ID_NAME, 0)), "test keyboard");
    EXPECT_EQ(as_string(query(VIRTIO_INPUT_CFG_ID_SERIAL, 0)), "SN-1234");
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_ID_NAME, 1).empty()) << "subsel must be 0";
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_ID_SERIAL, 1).empty());
}

TEST_F(InputConfigSpace, LongNameIsCutAt128AndNoSerialIsEmpty)
{
    InputCapabilities caps;
    caps.name = std::string(100, 'a') + std::string(100, 'b');
    InputDevice device(make_source(caps), {}, Logger("t", LogLevel::error));
    EXPECT_EQ(as_string(query(device, VIRTIO_INPUT_CFG_ID_NAME, 0)), caps.name.substr(0, 128));
    EXPECT_TRUE(query(device, VIRTIO_INPUT_CFG_ID_SERIAL, 0).empty());
    EXPECT_TRUE(query(device, VIRTIO_INPUT_CFG_PROP_BITS, 0).empty()) << "no properties";
    EXPECT_TRUE(query(device, VIRTIO_INPUT_CFG_EV_BITS, EV_KEY).empty());
}

TEST_F(InputConfigSpace, DeviceIdsAreLittleEndian)
{
    const auto ids = query(VIRTIO_INPUT_CFG_ID_DEVIDS, 0);
    ASSERT_EQ(ids.size(), sizeof(virtio_input_devids));
    EXPECT_EQ(virtq::load_le16(ids.data() + 0), BUS_USB);
    EXPECT_EQ(virtq::load_le16(ids.data() + 2), 0x046d);
    EXPECT_EQ(virtq::load_le16(ids.data() + 4), 0xc31c);
    EXPECT_EQ(virtq::load_le16(ids.data() + 6), 0x0111);
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_ID_DEVIDS, 1).empty());
}

TEST_F(InputConfigSpace, PropertyBits)
{
    const auto props = query(VIRTIO_INPUT_CFG_PROP_BITS, 0);
    EXPECT_EQ(props.size(), 1U) << "INPUT_PROP_DIRECT (1) is the highest bit";
    EXPECT_EQ(set_bits(props), (std::vector<unsigned>{INPUT_PROP_POINTER, INPUT_PROP_DIRECT}));
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_PROP_BITS, 1).empty());
}

TEST_F(InputConfigSpace, EventBitsPerTypeSizedToTheHighestBit)
{
    const auto keys = query(VIRTIO_INPUT_CFG_EV_BITS, EV_KEY);
    EXPECT_EQ(keys.size(), BTN_LEFT / 8 + 1U) << "BTN_LEFT (0x110) is the highest key";
    EXPECT_EQ(set_bits(keys), (std::vector<unsigned>{KEY_A, KEY_B, BTN_LEFT}));
    const auto rels = query(VIRTIO_INPUT_CFG_EV_BITS, EV_REL);
    EXPECT_EQ(rels.size(), REL_WHEEL / 8 + 1U);
    EXPECT_EQ(set_bits(rels), (std::vector<unsigned>{REL_X, REL_WHEEL}));
    EXPECT_EQ(set_bits(query(VIRTIO_INPUT_CFG_EV_BITS, EV_LED)),
              (std::vector<unsigned>{LED_CAPSL}));
    EXPECT_EQ(set_bits(query(VIRTIO_INPUT_CFG_EV_BITS, EV_ABS)),
              (std::vector<unsigned>{ABS_X, ABS_PRESSURE}));
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_EV_BITS, EV_SYN).empty()) << "implied, never listed";
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_EV_BITS, EV_MSC).empty());
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_EV_BITS, EV_SND).empty());
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_EV_BITS, 0xff).empty());
}

TEST_F(InputConfigSpace, AbsInfoPerAxis)
{
    const auto x = query(VIRTIO_INPUT_CFG_ABS_INFO, ABS_X);
    ASSERT_EQ(x.size(), sizeof(virtio_input_absinfo));
    EXPECT_EQ(static_cast<std::int32_t>(virtq::load_le32(x.data() + 0)), -100);
    EXPECT_EQ(virtq::load_le32(x.data() + 4), 4095U);
    EXPECT_EQ(virtq::load_le32(x.data() + 8), 4U);
    EXPECT_EQ(virtq::load_le32(x.data() + 12), 8U);
    EXPECT_EQ(virtq::load_le32(x.data() + 16), 12U);
    EXPECT_EQ(query(VIRTIO_INPUT_CFG_ABS_INFO, ABS_PRESSURE).size(), 20U);
    EXPECT_TRUE(query(VIRTIO_INPUT_CFG_ABS_INFO, ABS_Y).empty());
}

TEST_F(InputConfigSpace, UnknownSelectorsAnswerNothing)
{
    for (std::uint8_t select :
         std::initializer_list<std::uint8_t>{0x04, 0x0f, 0x13, 0x20, 0x80, 0xff})
        for (std::uint8_t subsel : std::initializer_list<std::uint8_t>{0, 1, EV_KEY})
            EXPECT_TRUE(query(select, subsel).empty()) << "select " << int(select);
}

TEST_F(InputConfigSpace, BothSelectorBytesInOneWriteAndPartialReads)
{
    const std::byte both[2] = {std::byte{VIRTIO_INPUT_CFG_EV_BITS}, std::byte{EV_REL}};
    ASSERT_TRUE(device_.write_config(0, both).ok());
    auto size = device_.read_config(2, 1);
    ASSERT_TRUE(size.ok());
    EXPECT_EQ(std::to_integer<int>((*size)[0]), REL_WHEEL / 8 + 1);
    auto bits = device_.read_config(8, 2);
    ASSERT_TRUE(bits.ok());
    EXPECT_EQ(std::to_integer<int>((*bits)[0]), 1 << REL_X);
    EXPECT_EQ(std::to_integer<int>((*bits)[1]), 1 << (REL_WHEEL - 8));
    auto last = device_.read_config(kConfigSize - 1, 1);
    ASSERT_TRUE(last.ok());
    EXPECT_EQ(last->size(), 1U);
    EXPECT_TRUE(device_.read_config(0, 0).ok());
}

TEST_F(InputConfigSpace, OnlySelectAndSubselAreWritable)
{
    const std::byte one[1] = {std::byte{1}};
    const std::byte three[3] = {};
    EXPECT_EQ(device_.write_config(2, one).error().code(), EPERM) << "size";
    EXPECT_EQ(device_.write_config(8, one).error().code(), EPERM) << "union";
    EXPECT_EQ(device_.write_config(0, three).error().code(), EPERM) << "into size";
    EXPECT_EQ(device_.write_config(1000, one).error().code(), EPERM);
    EXPECT_FALSE(device_.read_config(0, kConfigSize + 1).ok());
    EXPECT_FALSE(device_.read_config(kConfigSize, 1).ok());
    EXPECT_FALSE(device_.read_config(0xffffffff, 2).ok()) << "no overflow in the bound check";
}

TEST_F(InputConfigSpace, ResetUnselects)
{
    EXPECT_FALSE(query(VIRTIO_INPUT_CFG_ID_NAME, 0).empty());
    device_.reset();
    auto config = device_.read_config(0, 3);
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(*config, std::vector<std::byte>(3, std::byte{0}));
}

// ---------------------------------------------------------------------------
// EventBacklog

std::vector<InputEvent> drain(EventBacklog& backlog, std::size_t max = SIZE_MAX)
{
    std::vector<InputEvent> out;
    while (!backlog.empty() && out.size() < max) {
        out.push_back(backlog.front());
        backlog.pop_front();
    }
    return out;
}

// Frames of three: KEY_<n> 1, REL_X n, SYN.
std::vector<InputEvent> frame(std::uint16_t n)
{
    return {key(n, 1), rel(REL_X, n), syn};
}

void push_all(EventBacklog& backlog, const std::vector<InputEvent>& events,
              EventBacklog::Dropped* total = nullptr)
{
    for (const InputEvent& e : events) {
        auto d = backlog.push(e);
        if (total != nullptr) {
            total->events += d.events;
            total->frames += d.frames;
            total->cut = total->cut || d.cut;
        }
    }
}

std::vector<InputEvent> concat(std::initializer_list<std::vector<InputEvent>> parts)
{
    std::vector<InputEvent> out;
    for (const auto& p : parts)
        out.insert(out.end(), p.begin(), p.end());
    return out;
}

TEST(EventBacklog, KeepsOrderWithinCapacity)
{
    EventBacklog backlog(8);
    push_all(backlog, concat({frame(1), frame(2)}));
    EXPECT_EQ(backlog.size(), 6U);
    EXPECT_EQ(drain(backlog), concat({frame(1), frame(2)}));
}

TEST(EventBacklog, OverflowDropsTheOldestWholeFrames)
{
    EventBacklog backlog(8);
    EventBacklog::Dropped dropped;
    push_all(backlog, concat({frame(1), frame(2), frame(3), frame(4)}), &dropped);
    EXPECT_EQ(dropped.events, 6U);
    EXPECT_EQ(dropped.frames, 2U);
    EXPECT_FALSE(dropped.cut);
    EXPECT_EQ(drain(backlog), concat({frame(3), frame(4)}));
}

TEST(EventBacklog, AFrameWhoseDeliveryBeganIsNeverDropped)
{
    EventBacklog backlog(8);
    push_all(backlog, frame(1));
    EXPECT_EQ(drain(backlog, 2), (std::vector<InputEvent>{key(1, 1), rel(REL_X, 1)}));
    // Its SYN_REPORT waits; frame 2 is the oldest that may go.
    push_all(backlog, concat({frame(2), frame(3), frame(4)}));
    EXPECT_EQ(drain(backlog), concat({{syn}, frame(3), frame(4)}));
}

TEST(EventBacklog, AStartedFrameStillArrivingKeepsItsRest)
{
    EventBacklog backlog(5);
    backlog.push(key(1, 1));
    EXPECT_EQ(drain(backlog), (std::vector<InputEvent>{key(1, 1)}));
    // The rest of frame 1 arrives after its start was delivered.
    push_all(backlog, {rel(REL_X, 1), syn});
    push_all(backlog, concat({frame(2), frame(3)}));
    EXPECT_EQ(drain(backlog), concat({{rel(REL_X, 1), syn}, frame(3)}));
}

TEST(EventBacklog, AnOversizedNewFrameIsDroppedWhole)
{
    EventBacklog backlog(8);
    EventBacklog::Dropped dropped;
    push_all(backlog, frame(1));
    std::vector<InputEvent> huge;
    for (std::uint16_t i = 0; i < 12; ++i)
        huge.push_back(rel(REL_X, i));
    huge.push_back(syn);
    // The complete frame 1 goes first; then the incomplete one is still too
    // big, so it goes whole, its SYN_REPORT included.
    push_all(backlog, concat({huge, frame(2)}), &dropped);
    EXPECT_EQ(dropped.events, 3U + 13U);
    EXPECT_EQ(dropped.frames, 2U);
    EXPECT_FALSE(dropped.cut);
    EXPECT_EQ(drain(backlog), frame(2));
}

TEST(EventBacklog, AnOversizedFrameInDeliveryIsCutButEnded)
{
    EventBacklog backlog(4);
    EventBacklog::Dropped dropped;
    backlog.push(rel(REL_X, 0));
    EXPECT_EQ(drain(backlog).size(), 1U);
    for (std::uint16_t i = 1; i < 10; ++i)
        push_all(backlog, {rel(REL_X, i)}, &dropped);
    EXPECT_TRUE(dropped.cut);
    push_all(backlog, concat({{syn}, frame(5)}), &dropped);
    EXPECT_EQ(drain(backlog), concat({{syn}, frame(5)})) << "the cut frame still ends";
}

TEST(EventBacklog, ClearForgetsEverything)
{
    EventBacklog backlog(4);
    backlog.push(key(1, 1));
    (void)drain(backlog);
    for (std::uint16_t i = 0; i < 6; ++i)
        backlog.push(rel(REL_X, i)); // now discarding, with a cut pending
    backlog.clear();
    EXPECT_TRUE(backlog.empty());
    push_all(backlog, concat({frame(1), frame(2)}));
    EXPECT_EQ(drain(backlog), frame(2)) << "no cut or discarding left over";
}

// ---------------------------------------------------------------------------
// The queues, on rings built by hand

class RecordingEvents final : public backend::EventSources
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

class InputQueues : public ::testing::Test
{
  protected:
    static constexpr std::uint32_t kSize = 16;
    static constexpr std::uint64_t kStatusRing = 0x10000;
    static constexpr std::uint64_t kData = 0x40000;

    InputQueues()
        : ram_(1 << 20), eventq_(ram_, 0, kSize, true), statusq_(ram_, kStatusRing, kSize, true)
    {
        EXPECT_TRUE(
            memory_.add_region({ram_.guest(0), ram_.size(), ram_.host(0), ram_.user(0)}).ok());
        event_ctx_.emplace(kEventQueue, make_queue(eventq_), memory_, backend::kFeatureEventIdx,
                           call_, events_, Logger("t", LogLevel::error));
        status_ctx_.emplace(kStatusQueue, make_queue(statusq_), memory_, backend::kFeatureEventIdx,
                            call_, status_events_, Logger("t", LogLevel::error));
    }

    virtq::SplitQueue make_queue(DriverQueue& q)
    {
        virtq::QueueConfig config;
        config.size = kSize;
        config.desc_addr = q.ring().desc_addr();
        config.avail_addr = q.ring().avail_addr();
        config.used_addr = q.ring().used_addr();
        config.event_idx = true;
        return std::move(virtq::SplitQueue::create(memory_, config)).value();
    }

    void make_device(std::size_t backlog = 64, LogLevel level = LogLevel::error,
                     bool refuse_status = false)
    {
        auto source = std::make_unique<FakeSource>(test_capabilities());
        source_ = source.get();
        source_->refuse_status = refuse_status;
        device_ = std::make_unique<InputDevice>(std::move(source), InputDeviceOptions{backlog},
                                                Logger("t", level));
        ASSERT_TRUE(device_->queue_started(*event_ctx_).ok());
        ASSERT_TRUE(device_->queue_started(*status_ctx_).ok());
    }

    // Posts `n` event buffers of `len` bytes (zeroed) on the event queue.
    void post(std::size_t n, std::uint32_t len = kEventSize)
    {
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint64_t offset = kData + next_slot_ * 64;
            std::memset(ram_.host(offset), 0, 64);
            auto head =
                eventq_.ring().add({}, std::vector<virtq::GuestBuffer>{{ram_.guest(offset), len}});
            ASSERT_TRUE(head.ok() && head->has_value());
            slot_of_head_[**head] = offset;
            ++next_slot_;
        }
    }
    // The events the device returned so far, in order.
    std::vector<InputEvent> received()
    {
        std::vector<InputEvent> out;
        for (;;) {
            auto used = eventq_.ring().get_used();
            EXPECT_TRUE(used.ok());
            if (!used.ok() || !used->has_value())
                return out;
            last_used_len_ = (*used)->len;
            if ((*used)->len == 0) {
                ++empty_returns_;
                continue;
            }
            EXPECT_EQ((*used)->len, kEventSize);
            const std::byte* p = ram_.host(slot_of_head_.at((*used)->head));
            out.push_back(InputEvent{virtq::load_le16(p), virtq::load_le16(p + 2),
                                     static_cast<std::int32_t>(virtq::load_le32(p + 4))});
        }
    }
    // What the worker does when the source's fd becomes readable.
    void source_readable()
    {
        ASSERT_EQ(events_.watched.size(), 1U);
        ASSERT_TRUE(readable_within(events_.watched[0].first, 0ms));
        ASSERT_TRUE(device_->handle_event(*event_ctx_, events_.watched[0].second).ok());
    }
    // What the worker does on a kick (it does not call it while paused).
    void kick()
    {
        if (!event_ctx_->paused()) {
            ASSERT_TRUE(device_->process_queue(*event_ctx_).ok());
        }
    }

    // Submits a status chain of readable `bytes`.
    std::uint16_t send_status(const std::vector<std::byte>& bytes)
    {
        const std::uint64_t offset = kData + 0x8000 + status_slot_++ * 64;
        std::memcpy(ram_.host(offset), bytes.data(), bytes.size());
        auto head = statusq_.ring().add(
            std::vector<virtq::GuestBuffer>{
                {ram_.guest(offset), static_cast<std::uint32_t>(bytes.size())}},
            {});
        EXPECT_TRUE(head.ok() && head->has_value());
        return **head;
    }
    static std::vector<std::byte> encode(const InputEvent& e)
    {
        std::vector<std::byte> out(kEventSize);
        virtq::store_le16(out.data(), e.type);
        virtq::store_le16(out.data() + 2, e.code);
        virtq::store_le32(out.data() + 4, static_cast<std::uint32_t>(e.value));
        return out;
    }

    GuestRam ram_;
    DriverQueue eventq_;
    DriverQueue statusq_;
    virtq::GuestMemory memory_;
    backend::RingSignal call_;
    RecordingEvents events_;
    RecordingEvents status_events_;
    std::optional<backend::QueueContext> event_ctx_;
    std::optional<backend::QueueContext> status_ctx_;
    FakeSource* source_ = nullptr;
    std::unique_ptr<InputDevice> device_;
    std::map<std::uint16_t, std::uint64_t> slot_of_head_;
    std::uint64_t next_slot_ = 0;
    std::uint64_t status_slot_ = 0;
    std::uint32_t last_used_len_ = 0;
    int empty_returns_ = 0;
};

TEST_F(InputQueues, WatchesTheSourceOnTheEventQueueOnly)
{
    make_device();
    ASSERT_EQ(events_.watched.size(), 1U);
    EXPECT_EQ(events_.watched[0].first, source_->fd());
    EXPECT_TRUE(status_events_.watched.empty());
}

TEST_F(InputQueues, BuffersWaitForEventsWithTheQueuePaused)
{
    make_device();
    post(4);
    kick();
    EXPECT_TRUE(received().empty());
    EXPECT_TRUE(event_ctx_->paused()) << "nothing to send: kicks need not call the device";
    EXPECT_EQ(event_ctx_->queue().available().value(), 4) << "the buffers stay in the ring";

    source_->emit(concat({frame(KEY_A), {key(KEY_B, 1)}}));
    source_readable();
    EXPECT_EQ(received(), concat({frame(KEY_A), {key(KEY_B, 1)}}))
        << "taken from the ring as they come, though the queue is paused";
    EXPECT_TRUE(event_ctx_->paused());
    EXPECT_EQ(event_ctx_->queue().available().value(), 0);
}

TEST_F(InputQueues, EventsWaitForBuffersAndArriveInOrder)
{
    make_device();
    kick(); // the worker's first call: no events yet
    source_->emit(concat({frame(KEY_A), frame(KEY_B)}));
    source_readable();
    EXPECT_TRUE(received().empty());
    EXPECT_EQ(device_->backlog_size(), 6U);
    EXPECT_FALSE(event_ctx_->paused()) << "waiting for buffers: kicks must reach the device";

    post(4);
    kick();
    EXPECT_EQ(received(),
              (std::vector<InputEvent>{key(KEY_A, 1), rel(REL_X, KEY_A), syn, key(KEY_B, 1)}));
    EXPECT_FALSE(event_ctx_->paused());
    post(8);
    kick();
    EXPECT_EQ(received(), (std::vector<InputEvent>{rel(REL_X, KEY_B), syn}));
    EXPECT_EQ(device_->backlog_size(), 0U);
    EXPECT_TRUE(event_ctx_->paused());
    EXPECT_EQ(event_ctx_->queue().available().value(), 6);
}

TEST_F(InputQueues, OverflowWithoutBuffersDropsWholeFrames)
{
    StderrCapture log;
    make_device(8, LogLevel::warn);

    // Delivery of frame 1 begins (two buffers), then frames 2..5 come
    // while the driver gives no more buffers.
    post(2);
    source_->emit(frame(1));
    source_readable();
    source_->emit(concat({frame(2), frame(3), frame(4), frame(5)}));
    source_readable();
    post(12);
    kick();
    const auto got = received();
    EXPECT_EQ(got, concat({frame(1), frame(4), frame(5)}))
        << "frame 1 was in delivery; 2 and 3 were the oldest complete frames";
    const std::string text = log.text();
    EXPECT_NE(text.find("dropping the oldest whole frames"), std::string::npos) << text;
    EXPECT_NE(text.find("6 events in 2 frames were dropped"), std::string::npos) << text;
}

TEST_F(InputQueues, TooSmallBufferIsReturnedUnusedAndTheEventWaits)
{
    make_device();
    post(1, 4);
    source_->emit({key(KEY_A, 1)});
    source_readable();
    EXPECT_TRUE(received().empty());
    EXPECT_EQ(empty_returns_, 1);
    EXPECT_EQ(device_->backlog_size(), 1U);
    post(1);
    kick();
    EXPECT_EQ(received(), (std::vector<InputEvent>{key(KEY_A, 1)}));
}

TEST_F(InputQueues, AnEndedSourceIsUnwatchedAfterItsLastEvents)
{
    StderrCapture log;
    make_device(64, LogLevel::error);
    post(4);
    source_->emit({key(KEY_A, 0), syn}, true);
    source_readable();
    EXPECT_EQ(received(), (std::vector<InputEvent>{key(KEY_A, 0), syn}));
    EXPECT_TRUE(events_.watched.empty()) << "a dead fd would wake the worker forever";
    const std::string text = log.text();
    EXPECT_NE(text.find("fake source ended; no more input events will be delivered"),
              std::string::npos)
        << text;
    // A new front-end's queue does not watch it again.
    device_->queue_stopped(*event_ctx_);
    ASSERT_TRUE(device_->queue_started(*event_ctx_).ok());
    EXPECT_TRUE(events_.watched.empty());
}

TEST_F(InputQueues, ResetDropsEventsMeantForThePreviousDriver)
{
    make_device();
    source_->emit(frame(1));
    source_readable();
    EXPECT_EQ(device_->backlog_size(), 3U);
    device_->queue_stopped(*event_ctx_);
    device_->queue_stopped(*status_ctx_);
    device_->reset();
    EXPECT_EQ(device_->backlog_size(), 0U);
}

TEST_F(InputQueues, StatusEventsGoToTheSourceAndBuffersComeBackEmpty)
{
    make_device();
    const InputEvent capslock{EV_LED, LED_CAPSL, 1};
    const InputEvent beep{EV_SND, SND_BELL, 1};
    const std::uint16_t a = send_status(encode(capslock));
    auto two = encode(beep);
    auto second = encode(InputEvent{EV_LED, LED_CAPSL, 0});
    two.insert(two.end(), second.begin(), second.end());
    const std::uint16_t b = send_status(two);
    const std::uint16_t c = send_status(std::vector<std::byte>(5)); // not an event
    ASSERT_TRUE(device_->process_queue(*status_ctx_).ok());
    EXPECT_EQ(source_->status,
              (std::vector<InputEvent>{capslock, beep, InputEvent{EV_LED, LED_CAPSL, 0}}));
    for (std::uint16_t head : {a, b, c}) {
        auto used = statusq_.ring().get_used();
        ASSERT_TRUE(used.ok() && used->has_value());
        EXPECT_EQ((*used)->head, head);
        EXPECT_EQ((*used)->len, 0U) << "the device writes nothing into status buffers";
    }
    EXPECT_FALSE(status_ctx_->paused());
}

TEST_F(InputQueues, ARefusedStatusEventIsLoggedAndTheQueueGoesOn)
{
    StderrCapture log;
    make_device(64, LogLevel::warn, true);
    send_status(encode(InputEvent{EV_LED, LED_NUML, 1}));
    ASSERT_TRUE(device_->process_queue(*status_ctx_).ok());
    auto used = statusq_.ring().get_used();
    ASSERT_TRUE(used.ok() && used->has_value());
    const std::string text = log.text();
    EXPECT_NE(text.find("status event EV_LED LED_NUML 1 from the driver: refused by the fake "
                        "source"),
              std::string::npos)
        << text;
}

// ---------------------------------------------------------------------------
// Synthetic line protocol

class SyntheticLines : public ::testing::Test
{
  protected:
    InputCapabilities caps_ = synthetic_capabilities("s", SyntheticSet{});

    InputEvent good(std::string_view line)
    {
        auto e = parse_synthetic_line(line, caps_);
        EXPECT_TRUE(e.ok()) << line << ": " << (e.ok() ? "" : e.error().message());
        EXPECT_TRUE(e.ok() && e->has_value()) << line;
        return e.ok() && e->has_value() ? **e : InputEvent{0xffff, 0xffff, 0};
    }
    std::string bad(std::string_view line, const InputCapabilities* caps = nullptr)
    {
        auto e = parse_synthetic_line(line, caps != nullptr ? *caps : caps_);
        EXPECT_FALSE(e.ok()) << line << " was accepted";
        return e.ok() ? "" : e.error().message();
    }
};

TEST_F(SyntheticLines, GoodLines)
{
    EXPECT_EQ(good("key KEY_A 1"), key(KEY_A, 1));
    EXPECT_EQ(good("key 30 0"), key(30, 0));
    EXPECT_EQ(good("key KEY_A 2"), key(KEY_A, 2));
    EXPECT_EQ(good("btn BTN_LEFT 1"), key(BTN_LEFT, 1));
    EXPECT_EQ(good("key BTN_TOUCH 1"), key(BTN_TOUCH, 1));
    EXPECT_EQ(good("rel REL_X -5"), rel(REL_X, -5));
    EXPECT_EQ(good("rel REL_WHEEL 2147483647"), rel(REL_WHEEL, 2147483647));
    EXPECT_EQ(good("rel REL_Y -2147483648"), rel(REL_Y, INT32_MIN));
    EXPECT_EQ(good("abs ABS_X 1000"), (InputEvent{EV_ABS, ABS_X, 1000}));
    EXPECT_EQ(good("abs ABS_Y 32767"), (InputEvent{EV_ABS, ABS_Y, 32767}));
    EXPECT_EQ(good("syn"), syn);
    EXPECT_EQ(good("EV_KEY KEY_B 1"), key(KEY_B, 1));
    EXPECT_EQ(good("1 30 1"), key(KEY_A, 1));
    EXPECT_EQ(good("2 0 7"), rel(REL_X, 7));
    EXPECT_EQ(good("EV_REL 8 -1"), rel(REL_WHEEL, -1));
    EXPECT_EQ(good("0 0 0"), syn);
    EXPECT_EQ(good("EV_LED LED_CAPSL 1"), (InputEvent{EV_LED, LED_CAPSL, 1}))
        << "an advertised event of any type";
    EXPECT_EQ(good("  key\tKEY_ESC   1 \r"), key(KEY_ESC, 1)) << "blanks and CRLF";
}

TEST_F(SyntheticLines, BlankAndCommentLinesAreNoEvents)
{
    for (std::string_view line : {"", "   ", "\t\r", "# key KEY_A 1", "#", "  # indented"}) {
        auto e = parse_synthetic_line(line, caps_);
        ASSERT_TRUE(e.ok()) << line;
        EXPECT_FALSE(e->has_value()) << line;
    }
}

TEST_F(SyntheticLines, BadLinesSayWhatIsWrong)
{
    EXPECT_EQ(bad("press KEY_A 1"), "unknown event type 'press' (use key, btn, rel, abs, syn, "
                                    "an EV_* name or a number)");
    EXPECT_EQ(bad("key KEY_A"), "expected 'key CODE VALUE', got 2 fields");
    EXPECT_EQ(bad("key"), "expected 'key CODE VALUE', got 1 field");
    EXPECT_EQ(bad("key KEY_A 1 extra"), "expected 'key CODE VALUE', got 4 fields");
    EXPECT_EQ(bad("key key_a 1"), "'key_a' is not a code of event type EV_KEY (names are upper "
                                  "case: KEY_A, BTN_LEFT, REL_X, ABS_X)");
    EXPECT_EQ(bad("rel KEY_A 1"), "'KEY_A' is not a code of event type EV_REL (names are upper "
                                  "case: KEY_A, BTN_LEFT, REL_X, ABS_X)");
    EXPECT_EQ(bad("key KEY_A x"), "value 'x' is not a whole number from -2147483648 to "
                                  "2147483647");
    EXPECT_NE(bad("rel REL_X 2147483648").find("is not a whole number"), std::string::npos);
    EXPECT_NE(bad("key KEY_A 1.5").find("is not a whole number"), std::string::npos);
    EXPECT_EQ(bad("key KEY_A 3"), "key value 3 is not 0 (release), 1 (press) or 2 (repeat)");
    EXPECT_EQ(bad("key KEY_A -1"), "key value -1 is not 0 (release), 1 (press) or 2 (repeat)");
    EXPECT_EQ(bad("rel REL_HWHEEL 1"), "EV_REL REL_HWHEEL 1 is not an event this device "
                                       "advertises (see vhost-user-input --help)");
    EXPECT_NE(bad("key 84 1").find("not an event this device advertises"), std::string::npos)
        << "84 has no name: not part of the keyboard";
    EXPECT_NE(bad("key 700 1").find("not an event this device advertises"), std::string::npos);
    EXPECT_NE(bad("key 65536 1").find("not a number from 0 to 65535"), std::string::npos);
    EXPECT_EQ(bad("abs ABS_X 40000"), "EV_ABS ABS_X 40000 is outside the axis range 0..32767");
    EXPECT_EQ(bad("abs ABS_X -1"), "EV_ABS ABS_X -1 is outside the axis range 0..32767");
    EXPECT_EQ(bad("syn 1"), "'syn' takes no arguments");
    EXPECT_EQ(bad("0 0 1"), "the only EV_SYN event a writer may send is SYN_REPORT 0 ('syn')");
    EXPECT_EQ(bad("EV_SYN SYN_DROPPED 0"),
              "the only EV_SYN event a writer may send is SYN_REPORT 0 ('syn')");
    EXPECT_EQ(bad("32 0 0"), "event type '32' is not a number from 0 to 31");
    EXPECT_EQ(bad("-1 0 0"), "event type '-1' is not a number from 0 to 31");
    EXPECT_EQ(bad("7 0 0"),
              "7 0 0 is not an event this device advertises (see vhost-user-input --help)")
        << "a type without a name";
}

TEST_F(SyntheticLines, EmulatedSubsetLimitsWhatIsAccepted)
{
    const InputCapabilities keyboard =
        synthetic_capabilities("k", *SyntheticSet::parse("keyboard"));
    EXPECT_NE(bad("rel REL_X 1", &keyboard).find("not an event this device advertises"),
              std::string::npos);
    EXPECT_NE(bad("btn BTN_LEFT 1", &keyboard).find("not an event this device advertises"),
              std::string::npos);
    EXPECT_NE(bad("abs ABS_X 1", &keyboard).find("not an event this device advertises"),
              std::string::npos);
    auto e = parse_synthetic_line("key KEY_Z 1", keyboard);
    ASSERT_TRUE(e.ok() && e->has_value());
}

TEST(SyntheticCapabilities, KeyboardMouseTouch)
{
    const InputCapabilities all = synthetic_capabilities("name", SyntheticSet{});
    EXPECT_EQ(all.name, "name");
    EXPECT_EQ(all.ids, (DeviceIds{BUS_VIRTUAL, 0, 0, 1}));
    EXPECT_TRUE(all.serial.empty());
    const CodeBits& keys = all.codes.at(EV_KEY);
    for (std::uint16_t k : std::initializer_list<std::uint16_t>{
             KEY_ESC, KEY_A, KEY_Z, KEY_ENTER, KEY_LEFTSHIFT, KEY_F12, KEY_KP0, KEY_VOLUMEUP,
             KEY_MICMUTE, BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_TOUCH})
        EXPECT_TRUE(keys.test(k)) << k;
    EXPECT_FALSE(keys.test(KEY_RESERVED));
    EXPECT_FALSE(keys.test(84)) << "no key has code 84";
    EXPECT_FALSE(keys.test(BTN_SIDE));
    EXPECT_EQ(all.codes.at(EV_REL).count(), 3U);
    EXPECT_EQ(all.codes.at(EV_LED).count(), 3U);
    EXPECT_EQ(all.codes.count(EV_REP), 0U) << "autorepeat stays the writer's";
    EXPECT_EQ(all.abs.at(ABS_X), (AbsInfo{0, kTouchMax, 0, 0, 0}));
    EXPECT_EQ(all.abs.at(ABS_Y), (AbsInfo{0, kTouchMax, 0, 0, 0}));
    EXPECT_TRUE(all.properties.test(INPUT_PROP_DIRECT));

    const InputCapabilities mouse = synthetic_capabilities("m", *SyntheticSet::parse("mouse"));
    EXPECT_EQ(mouse.codes.at(EV_KEY).count(), 3U);
    EXPECT_EQ(mouse.codes.count(EV_ABS), 0U);
    EXPECT_EQ(mouse.codes.count(EV_LED), 0U);
    EXPECT_TRUE(mouse.properties.none());
}

TEST(SyntheticSet, Parse)
{
    EXPECT_EQ(*SyntheticSet::parse("keyboard,mouse,touch"), (SyntheticSet{true, true, true}));
    EXPECT_EQ(*SyntheticSet::parse("touch"), (SyntheticSet{false, false, true}));
    EXPECT_EQ(*SyntheticSet::parse("mouse,keyboard"), (SyntheticSet{true, true, false}));
    EXPECT_EQ(SyntheticSet::parse("").error().message(),
              "unknown device '' (use keyboard, mouse and/or touch, separated by commas)");
    EXPECT_FALSE(SyntheticSet::parse("keyboard,").ok());
    EXPECT_FALSE(SyntheticSet::parse("joystick").ok());
}

// ---------------------------------------------------------------------------
// The FIFO

class SyntheticFifo : public ::testing::Test
{
  protected:
    std::unique_ptr<SyntheticSource> create(LogLevel level = LogLevel::error)
    {
        SyntheticOptions options;
        options.fifo_path = fifo_;
        auto source = SyntheticSource::create(options, Logger("fifo", level));
        EXPECT_TRUE(source.ok()) << source.error().message();
        return source.ok() ? std::move(source).value() : nullptr;
    }
    UniqueFd writer() const
    {
        UniqueFd fd(::open(fifo_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
        EXPECT_TRUE(fd.valid()) << std::strerror(errno);
        return fd;
    }
    static void write_text(const UniqueFd& fd, std::string_view text)
    {
        ASSERT_EQ(::write(fd.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
    }
    // Reads until `n` events came or the source stays quiet for a while.
    static std::vector<InputEvent> read(SyntheticSource& source, std::size_t n = SIZE_MAX)
    {
        std::vector<InputEvent> out;
        while (out.size() < n && readable_within(source.fd(), 200ms))
            EXPECT_TRUE(source.read_events(out).ok());
        return out;
    }

    TempDir dir_;
    std::string fifo_ = dir_.file("events");
};

TEST_F(SyntheticFifo, CreatesTheFifoAndRemovesItAtTheEnd)
{
    {
        auto source = create();
        ASSERT_NE(source, nullptr);
        struct stat st {
        };
        ASSERT_EQ(::stat(fifo_.c_str(), &st), 0);
        EXPECT_TRUE(S_ISFIFO(st.st_mode));
        EXPECT_EQ(st.st_mode & 0777, 0600U);
        EXPECT_FALSE(readable_within(source->fd(), 0ms)) << "no writer yet: nothing to read";
    }
    EXPECT_FALSE(fs::exists(fifo_));
}

TEST_F(SyntheticFifo, UsesAnExistingFifoAndLeavesIt)
{
    ASSERT_EQ(::mkfifo(fifo_.c_str(), 0620), 0);
    {
        auto source = create();
        ASSERT_NE(source, nullptr);
        auto w = writer();
        write_text(w, "key KEY_A 1\n");
        EXPECT_EQ(read(*source, 1), (std::vector<InputEvent>{key(KEY_A, 1)}));
    }
    EXPECT_TRUE(fs::exists(fifo_));
}

TEST_F(SyntheticFifo, RefusesAPathThatIsNotAFifo)
{
    {
        std::ofstream(fifo_) << "x";
    }
    SyntheticOptions options;
    options.fifo_path = fifo_;
    auto source = SyntheticSource::create(options, Logger("fifo", LogLevel::error));
    ASSERT_FALSE(source.ok());
    EXPECT_EQ(source.error().message(),
              fifo_ + " exists and is not a FIFO: remove it or choose another --synthetic path");
    EXPECT_TRUE(fs::exists(fifo_)) << "not removed";
    options.fifo_path = dir_.file("no/such/dir/fifo");
    source = SyntheticSource::create(options, Logger("fifo", LogLevel::error));
    ASSERT_FALSE(source.ok());
    EXPECT_NE(source.error().message().find("create its directory first"), std::string::npos)
        << source.error().message();
}

TEST_F(SyntheticFifo, BadLinesAreLoggedWithTheirNumberAndSkipped)
{
    StderrCapture log;
    auto source = create(LogLevel::warn);
    auto w = writer();
    // Split across writes: lines are reassembled.
    write_text(w, "key KEY_A 1\nsyn\nkey KEY_");
    write_text(w, "A 0\nnonsense\n\n# comment\nrel REL_X 5 6\nrel REL_X 5\nsyn\n");
    EXPECT_EQ(read(*source, 5),
              (std::vector<InputEvent>{key(KEY_A, 1), syn, key(KEY_A, 0), rel(REL_X, 5), syn}));
    const std::string text = log.text();
    EXPECT_NE(text.find(fifo_ + " line 4: unknown event type 'nonsense'"), std::string::npos)
        << text;
    EXPECT_NE(text.find(fifo_ + " line 7: expected 'rel CODE VALUE', got 4 fields; skipped"),
              std::string::npos)
        << text;
}

TEST_F(SyntheticFifo, WritersComeAndGo)
{
    StderrCapture log;
    auto source = create(LogLevel::warn);
    {
        auto w = writer();
        write_text(w, "key KEY_A 1\nsyn\nbogus"); // the last line has no newline
    }
    EXPECT_EQ(read(*source), (std::vector<InputEvent>{key(KEY_A, 1), syn}))
        << "the unfinished last line counts when the writer leaves";
    EXPECT_FALSE(readable_within(source->fd(), 50ms)) << "reopened: no endless hang-up";
    for (int i = 0; i < 3; ++i) {
        {
            auto w = writer();
            write_text(w, "oops\nkey KEY_B 1\n");
        } // gone before we read: its end of file is seen
        EXPECT_EQ(read(*source), (std::vector<InputEvent>{key(KEY_B, 1)}));
    }
    // Two writers at once.
    auto a = writer();
    auto b = writer();
    write_text(a, "key KEY_C 1\n");
    write_text(b, "key KEY_D 1\n");
    a.reset();
    write_text(b, "syn\n");
    b.reset();
    EXPECT_EQ(read(*source), (std::vector<InputEvent>{key(KEY_C, 1), key(KEY_D, 1), syn}));
    const std::string text = log.text();
    EXPECT_NE(text.find("line 3: unknown event type 'bogus'"), std::string::npos) << text;
    std::size_t restarts = 0;
    for (std::size_t at = 0;
         (at = text.find("line 1: unknown event type 'oops'", at)) != std::string::npos; ++at)
        ++restarts;
    EXPECT_EQ(restarts, 3U) << "line numbers start again for each writer:\n" << text;
}

TEST_F(SyntheticFifo, AnOverlongLineIsSkipped)
{
    StderrCapture log;
    auto source = create(LogLevel::warn);
    auto w = writer();
    write_text(w, "key KEY_A 1\n" + std::string(3000, 'x') + "\nkey KEY_A 0\n");
    EXPECT_EQ(read(*source, 2), (std::vector<InputEvent>{key(KEY_A, 1), key(KEY_A, 0)}));
    const std::string text = log.text();
    EXPECT_NE(text.find("line 2: longer than 1024 bytes; skipped"), std::string::npos) << text;
}

TEST_F(SyntheticFifo, StatusEventsAreLogged)
{
    StderrCapture log;
    auto source = create(LogLevel::info);
    EXPECT_TRUE(source->handle_status(InputEvent{EV_LED, LED_CAPSL, 1}).ok());
    const std::string text = log.text();
    EXPECT_NE(text.find("status event from the driver: EV_LED LED_CAPSL 1"), std::string::npos)
        << text;
}

// ---------------------------------------------------------------------------
// evdev

TEST(EvdevCapabilities, FromALibevdevDescription)
{
    LibevdevPtr dev(libevdev_new());
    libevdev_set_name(dev.get(), "host keyboard");
    libevdev_set_uniq(dev.get(), "ABC");
    libevdev_set_id_bustype(dev.get(), BUS_USB);
    libevdev_set_id_vendor(dev.get(), 0x1234);
    libevdev_set_id_product(dev.get(), 0x5678);
    libevdev_set_id_version(dev.get(), 0x9abc);
    libevdev_enable_property(dev.get(), INPUT_PROP_BUTTONPAD);
    libevdev_enable_event_code(dev.get(), EV_KEY, KEY_Q, nullptr);
    libevdev_enable_event_code(dev.get(), EV_KEY, BTN_TOOL_FINGER, nullptr);
    libevdev_enable_event_code(dev.get(), EV_LED, LED_NUML, nullptr);
    libevdev_enable_event_code(dev.get(), EV_MSC, MSC_SCAN, nullptr);
    libevdev_enable_event_type(dev.get(), EV_REP);
    libevdev_enable_event_code(dev.get(), EV_FF, FF_RUMBLE, nullptr);
    const input_absinfo x{0, -50, 50, 1, 2, 10};
    libevdev_enable_event_code(dev.get(), EV_ABS, ABS_MT_POSITION_X, &x);

    const InputCapabilities caps = evdev_capabilities(dev.get());
    EXPECT_EQ(caps.name, "host keyboard");
    EXPECT_EQ(caps.serial, "ABC");
    EXPECT_EQ(caps.ids, (DeviceIds{BUS_USB, 0x1234, 0x5678, 0x9abc}));
    EXPECT_TRUE(caps.properties.test(INPUT_PROP_BUTTONPAD));
    EXPECT_EQ(caps.properties.count(), 1U);
    EXPECT_TRUE(caps.supports(EV_KEY, KEY_Q));
    EXPECT_TRUE(caps.supports(EV_KEY, BTN_TOOL_FINGER));
    EXPECT_EQ(caps.codes.at(EV_KEY).count(), 2U);
    EXPECT_TRUE(caps.supports(EV_LED, LED_NUML));
    EXPECT_TRUE(caps.supports(EV_MSC, MSC_SCAN));
    EXPECT_TRUE(caps.supports(EV_REP, REP_DELAY) && caps.supports(EV_REP, REP_PERIOD))
        << "the driver turns autorepeat on when EV_REP has bits";
    EXPECT_EQ(caps.codes.count(EV_FF), 0U) << "force feedback cannot go through virtio-input";
    EXPECT_EQ(caps.abs.at(ABS_MT_POSITION_X), (AbsInfo{-50, 50, 1, 2, 10}));
}

TEST(EvdevSource, OpenErrorsSayWhatToDo)
{
    TempDir dir;
    auto missing = EvdevSource::open({dir.file("event99"), false}, Logger("t", LogLevel::error));
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code(), ENOENT);
    EXPECT_NE(missing.error().message().find("cannot open " + dir.file("event99") +
                                             ": No such file or directory — see"),
              std::string::npos)
        << missing.error().message();
    {
        std::ofstream(dir.file("file")) << "not a device";
    }
    auto file = EvdevSource::open({dir.file("file"), false}, Logger("t", LogLevel::error));
    ASSERT_FALSE(file.ok());
    EXPECT_NE(file.error().message().find(dir.file("file") + " is not an evdev device"),
              std::string::npos)
        << file.error().message();
    auto directory = EvdevSource::open({dir.file(""), false}, Logger("t", LogLevel::error));
    ASSERT_FALSE(directory.ok());
    EXPECT_NE(directory.error().message().find("/dev/input/eventN"), std::string::npos)
        << directory.error().message();
}

struct UinputDeleter {
    void operator()(libevdev_uinput* u) const noexcept { libevdev_uinput_destroy(u); }
};

// A real evdev node from /dev/uinput (the host may not have it: skipped).
TEST(EvdevSource, PassesThroughAUinputDevice)
{
    if (::access("/dev/uinput", R_OK | W_OK) != 0) {
        // The guest test (devices/input/tests) runs this where it must work.
        if (const char* require = std::getenv("VL_REQUIRE_UINPUT");
            require != nullptr && std::string(require) == "1")
            FAIL() << "/dev/uinput is required here but not available";
        GTEST_SKIP() << "/dev/uinput is not available (modprobe uinput, as root)";
    }
    LibevdevPtr model(libevdev_new());
    libevdev_set_name(model.get(), "vl-input-unit-uinput");
    libevdev_enable_event_code(model.get(), EV_KEY, KEY_A, nullptr);
    libevdev_enable_event_code(model.get(), EV_LED, LED_CAPSL, nullptr);
    libevdev_enable_event_code(model.get(), EV_REL, REL_X, nullptr);
    libevdev_uinput* raw = nullptr;
    ASSERT_EQ(libevdev_uinput_create_from_device(model.get(), LIBEVDEV_UINPUT_OPEN_MANAGED, &raw),
              0);
    std::unique_ptr<libevdev_uinput, UinputDeleter> uinput(raw);
    const char* node = libevdev_uinput_get_devnode(raw);
    ASSERT_NE(node, nullptr);

    auto source = EvdevSource::open({node, true}, Logger("t", LogLevel::error));
    ASSERT_TRUE(source.ok()) << source.error().message();
    EXPECT_EQ((*source)->capabilities().name, "vl-input-unit-uinput");
    EXPECT_TRUE((*source)->capabilities().supports(EV_LED, LED_CAPSL));

    libevdev_uinput_write_event(raw, EV_KEY, KEY_A, 1);
    libevdev_uinput_write_event(raw, EV_SYN, SYN_REPORT, 0);
    libevdev_uinput_write_event(raw, EV_REL, REL_X, -3);
    libevdev_uinput_write_event(raw, EV_SYN, SYN_REPORT, 0);
    std::vector<InputEvent> got;
    while (got.size() < 4 && readable_within((*source)->fd(), 2s))
        ASSERT_TRUE((*source)->read_events(got).ok());
    EXPECT_EQ(got, (std::vector<InputEvent>{key(KEY_A, 1), syn, rel(REL_X, -3), syn}));

    EXPECT_TRUE((*source)->handle_status(InputEvent{EV_LED, LED_CAPSL, 1}).ok());
    LibevdevPtr check;
    {
        UniqueFd fd(::open(node, O_RDONLY | O_NONBLOCK | O_CLOEXEC));
        libevdev* c = nullptr;
        ASSERT_EQ(libevdev_new_from_fd(fd.get(), &c), 0);
        check.reset(c);
        EXPECT_EQ(libevdev_get_event_value(c, EV_LED, LED_CAPSL), 1) << "the LED is on";
    }
    EXPECT_FALSE((*source)->handle_status(InputEvent{EV_LED, LED_NUML, 1}).ok())
        << "the device has no such LED";
}

// ---------------------------------------------------------------------------
// Command line

Result<InputConfig> from_args(std::vector<std::string> args)
{
    backend::ProgramInfo info;
    info.options = input_options();
    auto cl = backend::CommandLine::parse(args, backend::all_options(info));
    if (!cl)
        return cl.error();
    return InputConfig::from_command_line(*cl);
}

std::string error_of(std::vector<std::string> args)
{
    auto config = from_args(std::move(args));
    return config.ok() ? std::string("(no error)") : config.error().message();
}

TEST(InputCommandLine, EvdevAndSynthetic)
{
    auto evdev = from_args({"-s", "x", "--evdev-path", "/dev/input/event3", "--grab"});
    ASSERT_TRUE(evdev.ok()) << evdev.error().message();
    const auto& e = std::get<EvdevOptions>(evdev->source);
    EXPECT_EQ(e.path, "/dev/input/event3");
    EXPECT_TRUE(e.grab);
    EXPECT_EQ(evdev->device.backlog_events, kDefaultBacklogEvents);

    auto synthetic = from_args({"--synthetic", "/run/kbd", "--name", "Test Pad", "--emulate",
                                "touch,keyboard", "--backlog", "256"});
    ASSERT_TRUE(synthetic.ok()) << synthetic.error().message();
    const auto& s = std::get<SyntheticOptions>(synthetic->source);
    EXPECT_EQ(s.fifo_path, "/run/kbd");
    EXPECT_EQ(s.name, "Test Pad");
    EXPECT_EQ(s.set, (SyntheticSet{true, false, true}));
    EXPECT_EQ(synthetic->device.backlog_events, 256U);

    auto defaults = from_args({"--synthetic", "/run/kbd"});
    ASSERT_TRUE(defaults.ok());
    EXPECT_EQ(std::get<SyntheticOptions>(defaults->source).name, kDefaultSyntheticName);
    EXPECT_EQ(std::get<SyntheticOptions>(defaults->source).set, SyntheticSet{});
}

TEST(InputCommandLine, ErrorsSayWhatToChange)
{
    EXPECT_EQ(error_of({"-s", "x"}), "missing the event source: --evdev-path /dev/input/eventN "
                                     "or --synthetic FIFO");
    EXPECT_EQ(error_of({"--evdev-path", "a", "--synthetic", "b"}),
              "give either --evdev-path or --synthetic, not both");
    EXPECT_EQ(error_of({"--synthetic", "b", "--grab"}),
              "--grab is for --evdev-path: a synthetic source has no host device to grab");
    EXPECT_EQ(error_of({"--evdev-path", "a", "--name", "n"}),
              "--name is for --synthetic; with --evdev-path the name and events are the host "
              "device's");
    EXPECT_EQ(error_of({"--evdev-path", "a", "--emulate", "mouse"}),
              "--emulate is for --synthetic; with --evdev-path the name and events are the host "
              "device's");
    EXPECT_EQ(error_of({"--synthetic", "b", "--name", std::string(129, 'n')}),
              "--name must be 1 to 128 bytes (virtio-input's limit), got 129");
    EXPECT_EQ(error_of({"--synthetic", "b", "--name", ""}),
              "--name must be 1 to 128 bytes (virtio-input's limit), got 0");
    EXPECT_EQ(error_of({"--synthetic", "b", "--emulate", "keyboard,pen"}),
              "--emulate: unknown device 'pen' (use keyboard, mouse and/or touch, separated by "
              "commas)");
    EXPECT_EQ(error_of({"--synthetic", ""}), "--synthetic needs the path of the FIFO to create");
    EXPECT_EQ(error_of({"--evdev-path", ""}),
              "--evdev-path needs the device node, /dev/input/eventN");
    EXPECT_EQ(error_of({"--synthetic", "b", "--backlog", "10"}),
              "--backlog must be 64 to 1048576 events, got 10");
    EXPECT_EQ(error_of({"--synthetic", "b", "--backlog", "many"}),
              "--backlog wants a whole number of events, got 'many'");
    EXPECT_EQ(error_of({"--synthetic", "b", "--grab=yes"}), "--grab takes no value");
}

} // namespace
} // namespace vl::input
