// SPDX-License-Identifier: Apache-2.0
// ConsoleDriver against a scripted fake device: the driver's side of the
// multiport protocol (what it answers, when it posts a port's buffers) and
// its refusal of a device that breaks the protocol. vhost-user-console
// itself is driven in tests/frontend/console_e2e.cpp.
#include <gtest/gtest.h>

#include <mutex>

#include "console_driver.hpp"
#include "fake_backend.hpp"
#include "virtqueue/ring.hpp"

namespace vl::test_driver
{
namespace
{

using namespace std::chrono_literals;
using test::FakeBackend;
using test::FakeDevice;

constexpr std::uint32_t kPorts = 2;

// Every control message the driver sent, in order.
struct Sent {
    std::mutex mutex;
    std::vector<ConsoleControl> messages;
    std::vector<ConsoleControl> copy()
    {
        std::lock_guard lock(mutex);
        return messages;
    }
};

// A multiport console of two ports: receive queues and the control
// receiveq hold their buffers until the test injects something, transmit
// queues and the control transmitq take everything (the latter recorded).
FakeDevice console_device(std::shared_ptr<Sent> sent)
{
    FakeDevice d = test::default_device();
    d.features = feature_bit(VIRTIO_CONSOLE_F_SIZE) | feature_bit(VIRTIO_CONSOLE_F_MULTIPORT);
    d.queues = 2 * (kPorts + 1);
    d.config.assign(kConsoleConfigSize, std::byte{0});
    virtq::store_le32(d.config.data() + 4, kPorts);
    d.handle = [sent](std::uint32_t queue,
                      virtq::DescriptorChain& chain) -> std::optional<std::uint32_t> {
        if (queue == kConsoleControlTransmitQueue) {
            std::vector<std::byte> bytes(chain.readable_len());
            chain.read_into(bytes);
            if (auto m = decode_console_control(bytes)) {
                std::lock_guard lock(sent->mutex);
                sent->messages.push_back(*m);
            }
            return 0;
        }
        if (queue % 2 == 1)
            return 0; // a transmitq
        return std::nullopt;
    };
    return d;
}

struct Fixture {
    std::shared_ptr<Sent> sent = std::make_shared<Sent>();
    FakeBackend backend{console_device(sent)};
    Result<ConsoleDriver> console = ConsoleDriver::open(
        backend.socket_path(), ConsoleOptions{}, Logger("console-driver-test", LogLevel::error));

    void inject(const ConsoleControl& m)
    {
        backend.inject(kConsoleControlReceiveQueue, encode_console_control(m));
    }
};

TEST(ConsoleDriver, AnswersPortAddAsLinuxDoes)
{
    Fixture f;
    ASSERT_TRUE(f.console) << f.console.error().message();
    ConsoleDriver& c = *f.console;
    EXPECT_TRUE(c.multiport());
    EXPECT_EQ(c.port_count(), kPorts);
    EXPECT_EQ(c.driver().queue_count(), 6U);
    // Control receive buffers are posted at start, a port's only with its
    // PORT_ADD.
    EXPECT_EQ(c.driver().in_flight(kConsoleControlReceiveQueue), ConsoleOptions{}.receive_buffers);
    EXPECT_EQ(c.driver().in_flight(console_receive_queue(1)), 0U);

    ASSERT_TRUE(c.send_control({kConsoleNoPort, VIRTIO_CONSOLE_DEVICE_READY, 1, {}}));
    f.inject({1, VIRTIO_CONSOLE_PORT_ADD, 1, {}});
    auto got = c.pump_control(5s, [&] { return c.port(1).added; });
    ASSERT_TRUE(got) << got.error().message();
    EXPECT_EQ(c.driver().in_flight(console_receive_queue(1)), ConsoleOptions{}.receive_buffers);
    f.inject({1, VIRTIO_CONSOLE_PORT_NAME, 1, {std::byte{'p'}, std::byte{'1'}, std::byte{0}}});
    f.inject({1, VIRTIO_CONSOLE_PORT_OPEN, 1, {}});
    ASSERT_TRUE(c.pump_control(5s, [&] { return c.port(1).host_open; }));
    EXPECT_EQ(c.port(1).name, "p1");
    // A PORT_ADD again (a restarted device) gets PORT_READY again, and no
    // second set of buffers.
    f.inject({1, VIRTIO_CONSOLE_PORT_ADD, 1, {}});
    ASSERT_TRUE(c.pump_control(5s, [&] { return c.port(1).adds == 2; }));
    EXPECT_EQ(c.driver().in_flight(console_receive_queue(1)), ConsoleOptions{}.receive_buffers);
    ASSERT_TRUE(c.open_port(1));
    EXPECT_EQ(f.sent->copy(),
              (std::vector<ConsoleControl>{{kConsoleNoPort, VIRTIO_CONSOLE_DEVICE_READY, 1, {}},
                                           {1, VIRTIO_CONSOLE_PORT_READY, 1, {}},
                                           {1, VIRTIO_CONSOLE_PORT_READY, 1, {}},
                                           {1, VIRTIO_CONSOLE_PORT_OPEN, 1, {}}}));
    // Resize of the console.
    std::vector<std::byte> size(4);
    virtq::store_le16(size.data(), 120);
    virtq::store_le16(size.data() + 2, 50);
    f.inject({0, VIRTIO_CONSOLE_PORT_ADD, 1, {}});
    f.inject({0, VIRTIO_CONSOLE_RESIZE, 0, size});
    ASSERT_TRUE(c.pump_control(5s, [&] { return c.size().has_value(); }));
    EXPECT_EQ(*c.size(), (ConsoleSize{120, 50}));
}

// Each of these makes the driver fail with EPROTO, naming the message.
TEST(ConsoleDriver, RefusesADeviceThatBreaksTheProtocol)
{
    const std::vector<std::pair<ConsoleControl, std::string>> cases{
        {{1, VIRTIO_CONSOLE_PORT_NAME, 1, {std::byte{'x'}}}, "before PORT_ADD"},
        {{kPorts, VIRTIO_CONSOLE_PORT_ADD, 1, {}}, "port 2 has no queues"},
        {{0, VIRTIO_CONSOLE_DEVICE_READY, 1, {}}, "not a device's event"},
        {{0, 77, 1, {}}, "event 77"},
    };
    for (const auto& [message, expect] : cases) {
        Fixture f;
        ASSERT_TRUE(f.console) << f.console.error().message();
        if (message.event != VIRTIO_CONSOLE_PORT_ADD && message.event != VIRTIO_CONSOLE_PORT_NAME)
            f.inject({0, VIRTIO_CONSOLE_PORT_ADD, 1, {}});
        f.inject(message);
        auto got = f.console->pump_control(5s, [] { return false; });
        ASSERT_FALSE(got) << describe(message);
        EXPECT_EQ(got.error().code(), EPROTO) << got.error().message();
        EXPECT_NE(got.error().message().find(expect), std::string::npos) << got.error().message();
    }
    // A RESIZE too short for its size, after the port was added.
    Fixture f;
    ASSERT_TRUE(f.console);
    f.inject({0, VIRTIO_CONSOLE_PORT_ADD, 1, {}});
    f.inject({0, VIRTIO_CONSOLE_RESIZE, 0, {std::byte{1}, std::byte{0}}});
    auto got = f.console->pump_control(5s, [] { return false; });
    ASSERT_FALSE(got);
    EXPECT_NE(got.error().message().find("RESIZE with 2 bytes"), std::string::npos)
        << got.error().message();
}

TEST(ConsoleDriver, OptionsAreChecked)
{
    auto sent = std::make_shared<Sent>();
    FakeBackend backend(console_device(sent));
    ConsoleOptions o;
    o.ports = 3; // the device has 2
    auto too_many = ConsoleDriver::open(backend.socket_path(), o, Logger("t", LogLevel::error));
    ASSERT_FALSE(too_many);
    EXPECT_NE(too_many.error().message().find("the device has 1 to 2"), std::string::npos)
        << too_many.error().message();
    ConsoleOptions bad;
    bad.receive_buffers = 0;
    FakeBackend other(console_device(sent));
    EXPECT_FALSE(ConsoleDriver::open(other.socket_path(), bad, Logger("t", LogLevel::error)));
}

} // namespace
} // namespace vl::test_driver
