// SPDX-License-Identifier: Apache-2.0
// RngDriver and InputDriver against fake back-ends, and the tool's rng and
// input commands end to end.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "fake_backend.hpp"
#include "input_driver.hpp"
#include "rng_driver.hpp"

namespace vl::test_driver
{
namespace
{

using namespace std::chrono_literals;
using test::FakeBackend;
using test::FakeDevice;
using Clock = std::chrono::steady_clock;

Logger quiet_logger()
{
    return Logger("rng-input-test", LogLevel::error);
}

// An rng that hands out a running byte counter, at most `max_per_request`
// bytes at a time.
FakeDevice rng_device(std::uint32_t max_per_request)
{
    FakeDevice d = test::default_device();
    auto counter = std::make_shared<std::uint8_t>(0);
    d.handle = [counter, max_per_request](
                   std::uint32_t, virtq::DescriptorChain& c) -> std::optional<std::uint32_t> {
        std::vector<std::byte> bytes(std::min(c.writable_len(), max_per_request));
        for (std::byte& b : bytes)
            b = std::byte{(*counter)++};
        return static_cast<std::uint32_t>(c.write_from(bytes));
    };
    return d;
}

TEST(RngDriver, ReadsExactlyTheBytesAskedForThroughShortAnswers)
{
    FakeBackend backend(rng_device(100));
    RngOptions o;
    o.chunk_bytes = 256;
    auto rng = RngDriver::open(backend.socket_path(), o, quiet_logger());
    ASSERT_TRUE(rng) << rng.error().message();
    auto bytes = rng->read(1000);
    ASSERT_TRUE(bytes) << bytes.error().message();
    ASSERT_EQ(bytes->size(), 1000U);
    for (std::size_t i = 0; i < bytes->size(); ++i)
        ASSERT_EQ((*bytes)[i], std::byte(static_cast<std::uint8_t>(i))) << i;
    EXPECT_EQ(backend.chains_handled(0), 10U);
    auto one = rng->request(5);
    ASSERT_TRUE(one);
    EXPECT_EQ(one->size(), 5U);
}

TEST(RngDriver, GivesUpOnADeviceThatNeverDelivers)
{
    FakeBackend backend(rng_device(0));
    RngOptions o;
    o.max_empty_completions = 5;
    auto rng = RngDriver::open(backend.socket_path(), o, quiet_logger());
    ASSERT_TRUE(rng);
    auto bytes = rng->read(16);
    ASSERT_FALSE(bytes);
    EXPECT_EQ(bytes.error().code(), EIO);
    EXPECT_NE(bytes.error().message().find("5 requests in a row came back empty"),
              std::string::npos);
}

// A virtio-input keyboard-and-axis device: answers config selections as
// the spec's select/subsel protocol says, holds event buffers until the
// test injects events, records what arrives on the status queue.
struct InputModel {
    std::mutex mutex;
    std::vector<InputEvent> status_events;
};

void answer_selection(std::vector<std::byte>& config)
{
    const auto select = std::to_integer<std::uint8_t>(config[0]);
    const auto subsel = std::to_integer<std::uint8_t>(config[1]);
    std::fill(config.begin() + 2, config.end(), std::byte{0});
    std::vector<std::uint8_t> u;
    auto text = [&](const char* s) { u.assign(s, s + std::strlen(s)); };
    switch (select) {
    case VIRTIO_INPUT_CFG_ID_NAME:
        text("fake keyboard");
        break;
    case VIRTIO_INPUT_CFG_ID_SERIAL:
        text("fk-1");
        break;
    case VIRTIO_INPUT_CFG_ID_DEVIDS:
        u = {0x06, 0, 0x34, 0x12, 0x78, 0x56, 1, 0};
        break;
    case VIRTIO_INPUT_CFG_EV_BITS:
        if (subsel == 1) { // EV_KEY: KEY_A (30), KEY_B (48)
            u.assign(7, 0);
            u[30 / 8] |= 1U << (30 % 8);
            u[48 / 8] |= 1U << (48 % 8);
        } else if (subsel == 3) { // EV_ABS: ABS_X
            u = {1};
        }
        break;
    case VIRTIO_INPUT_CFG_ABS_INFO:
        if (subsel == 0)
            u = {0, 0, 0, 0, 0xff, 0x7f, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0};
        break;
    default:
        break;
    }
    config[2] = std::byte(static_cast<std::uint8_t>(u.size()));
    for (std::size_t i = 0; i < u.size(); ++i)
        config[kInputConfigDataOffset + i] = std::byte{u[i]};
}

FakeDevice input_device(const std::shared_ptr<InputModel>& model)
{
    FakeDevice d = test::default_device();
    d.queues = 2;
    d.config = std::vector<std::byte>(kInputConfigSize);
    d.on_set_config = answer_selection;
    d.handle = [model](std::uint32_t queue,
                       virtq::DescriptorChain& c) -> std::optional<std::uint32_t> {
        if (queue == kInputEventQueue)
            return std::nullopt; // held until an event is injected
        std::array<std::byte, kInputEventSize> raw{};
        if (c.read_exact(raw)) {
            std::lock_guard lock(model->mutex);
            model->status_events.push_back(decode_input_event(raw));
        }
        return 0;
    };
    return d;
}

std::vector<std::byte> event_bytes(InputEvent e)
{
    const auto raw = encode_input_event(e);
    return {raw.begin(), raw.end()};
}

TEST(InputDriver, ReadsTheConfigSpaceBySelection)
{
    auto model = std::make_shared<InputModel>();
    FakeBackend backend(input_device(model));
    auto input = InputDriver::open(backend.socket_path(), {}, quiet_logger());
    ASSERT_TRUE(input) << input.error().message();
    EXPECT_EQ(*input->name(), "fake keyboard");
    EXPECT_EQ(*input->serial(), "fk-1");
    auto ids = input->device_ids();
    ASSERT_TRUE(ids);
    EXPECT_EQ(ids->bustype, 6U);
    EXPECT_EQ(ids->vendor, 0x1234U);
    EXPECT_EQ(ids->product, 0x5678U);
    auto keys = input->event_bits(1);
    ASSERT_TRUE(keys);
    ASSERT_EQ(keys->size(), 7U);
    EXPECT_EQ(std::to_integer<unsigned>((*keys)[30 / 8]) >> (30 % 8) & 1U, 1U);
    auto rel = input->event_bits(2);
    ASSERT_TRUE(rel);
    EXPECT_TRUE(rel->empty());
    auto abs_x = input->abs_info(0);
    ASSERT_TRUE(abs_x);
    ASSERT_TRUE(*abs_x);
    EXPECT_EQ((*abs_x)->max, 32767U);
    EXPECT_EQ((*abs_x)->res, 3U);
    auto abs_y = input->abs_info(1);
    ASSERT_TRUE(abs_y);
    EXPECT_FALSE(*abs_y);
}

TEST(InputDriver, CollectsEventsAndRepostsBuffers)
{
    auto model = std::make_shared<InputModel>();
    FakeBackend backend(input_device(model));
    InputOptions o;
    o.queue_size = 8;
    o.event_buffers = 4; // fewer buffers than events: each must be reposted
    auto input = InputDriver::open(backend.socket_path(), o, quiet_logger());
    ASSERT_TRUE(input) << input.error().message();
    std::vector<InputEvent> sent;
    for (std::uint16_t i = 0; i < 20; ++i) {
        sent.push_back({1, static_cast<std::uint16_t>(30 + i), i % 2U});
        backend.inject(kInputEventQueue, event_bytes(sent.back()));
    }
    std::vector<InputEvent> got;
    while (got.size() < sent.size()) {
        auto events = input->read_events(sent.size() - got.size(), 2s);
        ASSERT_TRUE(events) << events.error().message();
        ASSERT_FALSE(events->empty()) << "events stopped after " << got.size();
        got.insert(got.end(), events->begin(), events->end());
    }
    EXPECT_EQ(got, sent);

    // Quiet device: an empty answer after the timeout, not an error.
    const auto t0 = Clock::now();
    auto none = input->read_events(1, 200ms);
    ASSERT_TRUE(none);
    EXPECT_TRUE(none->empty());
    EXPECT_GE(Clock::now() - t0, 190ms);
}

TEST(InputDriver, SendsStatusEvents)
{
    auto model = std::make_shared<InputModel>();
    FakeBackend backend(input_device(model));
    auto input = InputDriver::open(backend.socket_path(), {}, quiet_logger());
    ASSERT_TRUE(input);
    const InputEvent led{0x11, 0x01, 1}; // EV_LED LED_CAPSL on
    ASSERT_TRUE(input->send_status(led));
    std::lock_guard lock(model->mutex);
    ASSERT_EQ(model->status_events.size(), 1U);
    EXPECT_EQ(model->status_events[0], led);
}

TEST(InputDriver, RefusesMoreBuffersThanTheQueueHolds)
{
    auto model = std::make_shared<InputModel>();
    FakeBackend backend(input_device(model));
    InputOptions o;
    o.queue_size = 8;
    o.event_buffers = 9;
    EXPECT_EQ(InputDriver::open(backend.socket_path(), o, quiet_logger()).error().code(), EINVAL);
}

// ---------------------------------------------------------------------------
// The tool against the same fakes.

std::pair<int, std::string> run_tool(const std::string& args)
{
    char dir[] = "/tmp/vl-driver-tool-XXXXXX";
    if (::mkdtemp(dir) == nullptr)
        return {-1, ""};
    const std::string out = std::string(dir) + "/out";
    const int status = std::system(
        ("timeout 30 " + std::string(VL_TEST_DRIVER_BIN) + " " + args + " >" + out + " 2>&1")
            .c_str());
    std::ifstream f(out);
    std::stringstream s;
    s << f.rdbuf();
    ::unlink(out.c_str());
    ::rmdir(dir);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, s.str()};
}

TEST(Tool, RngReadPrintsHex)
{
    FakeBackend backend(rng_device(4096));
    auto [code, out] = run_tool("-s " + backend.socket_path() + " rng-read --bytes 40");
    EXPECT_EQ(code, 0) << out;
    EXPECT_EQ(out, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"
                   "2021222324252627\n");
}

TEST(Tool, InputReadPrintsEventsAndFailsOnTooFew)
{
    auto model = std::make_shared<InputModel>();
    FakeBackend backend(input_device(model));
    // Queued until the tool has posted its buffers.
    backend.inject(kInputEventQueue, event_bytes({1, 30, 1}));
    backend.inject(kInputEventQueue, event_bytes({0, 0, 0}));
    auto [code, out] =
        run_tool("-s " + backend.socket_path() + " input-read --events 2 --timeout 5");
    EXPECT_EQ(code, 0) << out;
    EXPECT_EQ(out, "1 30 1\n0 0 0\n");

    auto model2 = std::make_shared<InputModel>();
    FakeBackend quiet(input_device(model2));
    auto [code2, out2] =
        run_tool("-s " + quiet.socket_path() + " input-read --events 1 --timeout 0.3");
    EXPECT_EQ(code2, 1);
    EXPECT_NE(out2.find("0 of 1 events within 300 ms"), std::string::npos) << out2;
}

TEST(Tool, InputInfo)
{
    auto model = std::make_shared<InputModel>();
    FakeBackend backend(input_device(model));
    auto [code, out] = run_tool("-s " + backend.socket_path() + " input-info");
    EXPECT_EQ(code, 0) << out;
    EXPECT_NE(out.find("name:                \"fake keyboard\""), std::string::npos) << out;
    EXPECT_NE(out.find("event type 0x01:     30 48"), std::string::npos) << out;
    EXPECT_NE(out.find("min 0 max 32767 fuzz 1 flat 2 res 3"), std::string::npos) << out;
}

} // namespace
} // namespace vl::test_driver
