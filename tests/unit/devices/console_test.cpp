// SPDX-License-Identifier: Apache-2.0
// vhost-user-console: its options, and the device on queues built by hand
// (no socket, no worker threads): the multiport control protocol, data
// both ways through a pty and a Unix socket, resize, back-pressure, and a
// driver that sends malformed or out-of-place control messages.
#include <fcntl.h>
#include <linux/virtio_console.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "backend/harness.hpp"
#include "backend/program.hpp"
#include "console/console_device.hpp"

namespace vl::console
{
namespace
{

using backend::test::GuestRam;
using backend::test::HandQueue;
using backend::test::TempDir;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// Options

Result<ConsoleConfig> from_args(std::vector<std::string> args)
{
    backend::ProgramInfo info;
    info.options = console_options();
    auto cl = backend::CommandLine::parse(args, backend::all_options(info));
    if (!cl)
        return cl.error();
    return ConsoleConfig::from_command_line(*cl);
}

std::string error_of(std::vector<std::string> args)
{
    auto config = from_args(std::move(args));
    return config.ok() ? std::string("(no error)") : config.error().message();
}

TEST(ConsoleConfig, OneConsoleOnAPtyByDefault)
{
    auto config = from_args({"-s", "/run/c.sock"});
    ASSERT_TRUE(config.ok()) << config.error().message();
    ASSERT_EQ(config->ports.size(), 1U);
    EXPECT_EQ(config->ports[0], (PortSpec{"", HostKind::pty, ""}));
    EXPECT_EQ(config->resize_order, ResizeOrder::cols_rows);
}

TEST(ConsoleConfig, PortsInOrderWithNamesAndPaths)
{
    auto config = from_args({"-s", "x", "--port", "pty:/run/hvc0", "-p", "org.log=unix:/run/l.sock",
                             "--port=a=pty", "--resize-order", "rows-cols"});
    ASSERT_TRUE(config.ok()) << config.error().message();
    ASSERT_EQ(config->ports.size(), 3U);
    EXPECT_EQ(config->ports[0], (PortSpec{"", HostKind::pty, "/run/hvc0"}));
    EXPECT_EQ(config->ports[1], (PortSpec{"org.log", HostKind::unix, "/run/l.sock"}));
    EXPECT_EQ(config->ports[2], (PortSpec{"a", HostKind::pty, ""}));
    EXPECT_EQ(config->resize_order, ResizeOrder::rows_cols);
}

TEST(ConsoleConfig, ErrorsSayWhatToChange)
{
    EXPECT_EQ(error_of({"-s", "x", "-p", "tcp:1"}),
              "--port 'tcp:1': the host side must be 'pty', 'pty:LINK' or 'unix:PATH'");
    EXPECT_EQ(error_of({"-s", "x", "-p", "=pty"}),
              "--port '=pty': the name before '=' is empty; leave out 'NAME=' for a port "
              "without a name");
    EXPECT_NE(error_of({"-s", "x", "-p", "a b=pty"}).find("printable ASCII"), std::string::npos);
    EXPECT_NE(error_of({"-s", "x", "-p", "unix:"}).find("socket path must be 1 to"),
              std::string::npos);
    EXPECT_NE(error_of({"-s", "x", "-p", "unix:/" + std::string(200, 'a')}).find("1 to 107"),
              std::string::npos);
    EXPECT_NE(error_of({"-s", "x", "-p", "n=pty", "-p", "n=pty"}).find("two ports are named 'n'"),
              std::string::npos);
    EXPECT_NE(error_of({"-s", "x", "-p", "unix:/a", "-p", "unix:/a"}).find("used by another"),
              std::string::npos);
    EXPECT_EQ(error_of({"-s", "x", "--resize-order", "up"}),
              "--resize-order 'up': use cols-rows or rows-cols");
    std::vector<std::string> many{"-s", "x"};
    for (std::size_t i = 0; i <= kMaxPorts; ++i) {
        many.push_back("-p");
        many.push_back("pty");
    }
    EXPECT_NE(error_of(many).find("at most 31 ports"), std::string::npos);
}

// ---------------------------------------------------------------------------
// The device on hand-built queues

constexpr std::uint64_t kMultiport = std::uint64_t{1} << VIRTIO_CONSOLE_F_MULTIPORT;
constexpr std::uint64_t kBufferBase = 2 << 20; // data buffers above the rings

class ConsoleQueues : public ::testing::Test
{
  protected:
    ConsoleQueues()
    {
        ConsoleConfig config;
        config.ports = {PortSpec{"", HostKind::pty, ""},
                        PortSpec{"org.test.log", HostKind::unix, dir_.file("log.sock")},
                        PortSpec{"", HostKind::pty, ""}};
        auto device = ConsoleDevice::create(config, Logger("console", LogLevel::error));
        EXPECT_TRUE(device.ok()) << device.error().message();
        device_ = std::move(*device);
        EXPECT_TRUE(device_->set_features(kMultiport | backend::kFeatureEventIdx).ok());
        slave_.reset(::open(device_->host(0).pty_path().c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK));
        EXPECT_TRUE(slave_.valid());
    }

    // Queue `index`, started on first use.
    HandQueue& q(std::uint32_t index)
    {
        auto& slot = queues_[index];
        if (!slot) {
            slot = std::make_unique<HandQueue>(ram_, memory_, index, index * 0x4000);
            EXPECT_TRUE(device_->queue_started(slot->ctx()).ok());
        }
        return *slot;
    }

    // A fresh buffer of `size` bytes holding `bytes` (or zeros).
    virtq::GuestBuffer buffer(std::uint32_t size, std::span<const std::byte> bytes = {})
    {
        const std::uint64_t offset = next_;
        next_ += (size + 63) & ~63U;
        std::memset(ram_.host(offset), 0, size);
        // Not memcpy: an empty span's data() may be null, which memcpy
        // must not be given even for zero bytes (UBSan).
        std::ranges::copy(bytes.first(std::min<std::size_t>(bytes.size(), size)),
                          ram_.host(offset));
        return {ram_.guest(offset), size};
    }
    std::span<const std::byte> at(std::uint64_t guest_addr, std::size_t len)
    {
        return {ram_.host(guest_addr - ram_.guest(0)), len};
    }

    // The driver sends a control message (or raw bytes) on the control
    // transmitq; the device must return the buffer.
    void send_raw(std::span<const std::byte> bytes)
    {
        HandQueue& cq = q(kControlTransmitQueue);
        cq.driver().submit({buffer(static_cast<std::uint32_t>(bytes.size()), bytes)}, {});
        ASSERT_TRUE(device_->process_queue(cq.ctx()).ok());
        auto used = cq.used();
        ASSERT_TRUE(used.has_value()) << "the control buffer was not returned";
        EXPECT_EQ(used->len, 0U);
    }
    void send(std::uint32_t id, std::uint16_t event, std::uint16_t value)
    {
        send_raw(ControlMessage{id, event, value, {}}.encode());
    }

    // Offers `count` control receive buffers of `size` bytes.
    void offer_control(int count, std::uint32_t size = 64)
    {
        for (int i = 0; i < count; ++i) {
            auto b = buffer(size);
            const auto head = q(kControlReceiveQueue).driver().submit({}, {b});
            control_buffers_[head] = b.addr;
        }
    }
    // What the device sent on the control receiveq since the last call.
    std::vector<ControlMessage> received()
    {
        HandQueue& rq = q(kControlReceiveQueue);
        EXPECT_TRUE(device_->handle_event(rq.ctx(), ConsoleDevice::kOutboxToken).ok());
        std::vector<ControlMessage> out;
        while (auto used = rq.used()) {
            if (used->len == 0)
                continue;
            auto bytes = at(control_buffers_.at(used->head), used->len);
            auto m = ControlMessage::decode(bytes);
            EXPECT_TRUE(m.has_value());
            m->payload.assign(bytes.begin() + kControlHeaderSize, bytes.end());
            out.push_back(*m);
        }
        return out;
    }
    // Brings the driver to "every port added".
    void device_ready()
    {
        offer_control(12);
        send(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 1);
        auto adds = received();
        ASSERT_EQ(adds.size(), 3U);
    }

    // Offers one receive buffer of `size` on port `port`'s receiveq.
    std::uint64_t offer_receive(std::uint32_t port, std::uint32_t size = 64)
    {
        auto b = buffer(size);
        q(receive_queue(port)).driver().submit({}, {b});
        return b.addr;
    }
    bool watched(std::uint32_t queue, int fd, std::uint64_t token)
    {
        for (auto [f, t] : q(queue).events().watched)
            if (f == fd && t == token)
                return true;
        return false;
    }
    UniqueFd connect_client(const std::string& path)
    {
        UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
        EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
        return fd;
    }
    std::string read_slave(std::size_t want)
    {
        std::string out;
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
            char buf[256];
            const ssize_t n = ::read(slave_.get(), buf, sizeof(buf));
            if (n > 0)
                out.append(buf, static_cast<std::size_t>(n));
            else
                std::this_thread::sleep_for(1ms);
        }
        return out;
    }

    TempDir dir_;
    GuestRam ram_{4 << 20};
    virtq::GuestMemory memory_ = backend::test::memory_of(ram_);
    std::unique_ptr<ConsoleDevice> device_;
    UniqueFd slave_; // the host's end of port 0's pty
    std::map<std::uint32_t, std::unique_ptr<HandQueue>> queues_;
    std::map<std::uint16_t, std::uint64_t> control_buffers_;
    std::uint64_t next_ = kBufferBase;
};

std::span<const std::byte> bytes_of(std::string_view s)
{
    return std::as_bytes(std::span(s));
}

std::string text_of(std::span<const std::byte> b)
{
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

ControlMessage message(std::uint32_t id, std::uint16_t event, std::uint16_t value,
                       std::string_view payload = {})
{
    auto p = bytes_of(payload);
    return {id, event, value, std::vector<std::byte>(p.begin(), p.end())};
}

ControlMessage resize(std::uint16_t first, std::uint16_t second)
{
    std::vector<std::byte> p(4);
    virtq::store_le16(p.data(), first);
    virtq::store_le16(p.data() + 2, second);
    return {0, VIRTIO_CONSOLE_RESIZE, 0, p};
}

TEST_F(ConsoleQueues, QueuesFeaturesAndConfig)
{
    EXPECT_EQ(device_->num_queues(), 8U); // 2 control + 2 per port
    EXPECT_EQ(device_->features(), kMultiport | (std::uint64_t{1} << VIRTIO_CONSOLE_F_SIZE));
    auto config = device_->read_config(0, kConfigSize);
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(virtq::load_le32(config->data() + 4), 3U); // max_nr_ports
    EXPECT_FALSE(device_->read_config(8, 8).ok());
    std::array<std::byte, 4> zero{};
    EXPECT_FALSE(device_->write_config(8, zero).ok());
    EXPECT_EQ(receive_queue(0), 0U);
    EXPECT_EQ(transmit_queue(0), 1U);
    EXPECT_EQ(receive_queue(1), 4U);
    EXPECT_EQ(transmit_queue(2), 7U);
}

TEST_F(ConsoleQueues, MultiportBringUpInTheSpecOrder)
{
    offer_control(12);
    send(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(0, VIRTIO_CONSOLE_PORT_ADD, 1),
                                                       message(1, VIRTIO_CONSOLE_PORT_ADD, 1),
                                                       message(2, VIRTIO_CONSOLE_PORT_ADD, 1)}));
    // Port 0: the console, its pty always connected (size 0x0: no RESIZE).
    send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(0, VIRTIO_CONSOLE_CONSOLE_PORT, 1),
                                                       message(0, VIRTIO_CONSOLE_PORT_OPEN, 1)}));
    // Port 1: named, a socket nobody is connected to yet.
    send(1, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(received(), (std::vector<ControlMessage>{
                              message(1, VIRTIO_CONSOLE_PORT_NAME, 1, "org.test.log")}));
    send(2, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(2, VIRTIO_CONSOLE_PORT_OPEN, 1)}));
    // A repeated PORT_READY tells nothing new; the driver's PORT_OPEN is noted.
    send(2, VIRTIO_CONSOLE_PORT_READY, 1);
    send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    EXPECT_TRUE(received().empty());
}

TEST_F(ConsoleQueues, MessagesWaitForControlBuffers)
{
    send(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_TRUE(received().empty());
    EXPECT_EQ(device_->outbox_size(), 3U);
    EXPECT_FALSE(q(kControlReceiveQueue).ctx().paused()); // kicks bring the next buffers
    offer_control(2);
    ASSERT_TRUE(device_->process_queue(q(kControlReceiveQueue).ctx()).ok());
    EXPECT_EQ(device_->outbox_size(), 1U);
    offer_control(1);
    EXPECT_EQ(received().size(), 3U);
    EXPECT_EQ(device_->outbox_size(), 0U);
    EXPECT_TRUE(q(kControlReceiveQueue).ctx().paused());
}

TEST_F(ConsoleQueues, HostileControlMessagesAreIgnoredAndTheDeviceGoesOn)
{
    offer_control(12);
    send(0, VIRTIO_CONSOLE_PORT_READY, 1); // before DEVICE_READY
    std::array<std::byte, 4> short_message{};
    send_raw(short_message);
    send(0, 42, 1);                      // an unknown event
    send(0, VIRTIO_CONSOLE_PORT_ADD, 1); // device -> driver events
    send(0, VIRTIO_CONSOLE_RESIZE, 1);
    send(0, VIRTIO_CONSOLE_PORT_NAME, 1);
    EXPECT_TRUE(received().empty());
    // A write-only chain on the control transmitq comes back unused.
    HandQueue& cq = q(kControlTransmitQueue);
    cq.driver().submit({}, {buffer(8)});
    ASSERT_TRUE(device_->process_queue(cq.ctx()).ok());
    ASSERT_TRUE(cq.used().has_value());

    send(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_EQ(received().size(), 3U);
    send(3, VIRTIO_CONSOLE_PORT_READY, 1); // ports are 0..2
    send(0xffffffff, VIRTIO_CONSOLE_PORT_READY, 1);
    send(7, VIRTIO_CONSOLE_PORT_OPEN, 1);
    send(1, VIRTIO_CONSOLE_PORT_READY, 0); // the driver failed the port
    EXPECT_TRUE(received().empty());
    EXPECT_FALSE(cq.ctx().queue().broken());
    // Still works.
    send(2, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(2, VIRTIO_CONSOLE_PORT_OPEN, 1)}));
}

// A second DEVICE_READY is a new driver (the Linux driver sends it once per
// probe): the ports are announced again and what the last driver said is
// forgotten.
TEST_F(ConsoleQueues, DeviceReadyAgainStartsOver)
{
    device_ready();
    send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    send(2, VIRTIO_CONSOLE_PORT_READY, 1);
    send(2, VIRTIO_CONSOLE_PORT_OPEN, 1);
    EXPECT_EQ(received().size(), 3U); // CONSOLE_PORT, PORT_OPEN 0, PORT_OPEN 2
    send(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(0, VIRTIO_CONSOLE_PORT_ADD, 1),
                                                       message(1, VIRTIO_CONSOLE_PORT_ADD, 1),
                                                       message(2, VIRTIO_CONSOLE_PORT_ADD, 1)}));
    // Port 2 is told its host side again, as at first.
    send(2, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(2, VIRTIO_CONSOLE_PORT_OPEN, 1)}));
}

// The front-end hands a new back-end (a restarted process) the rings of a
// driver an earlier one set up: the control transmitq does not start at 0.
// The new back-end announces the ports, the driver's PORT_READY answers get
// the usual replies, the host side's state is told whatever it was before
// (the driver may have heard another), and named ports are taken to be open
// in the guest.
TEST_F(ConsoleQueues, ARestartedBackEndAnnouncesThePortsAgain)
{
    device_ready();
    for (std::uint32_t p = 0; p < 3; ++p)
        send(p, VIRTIO_CONSOLE_PORT_READY, 1);
    send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    (void)received();

    // The old back-end is gone; a new one starts where the rings are.
    const auto rx_base = q(kControlReceiveQueue).ctx().queue().last_avail_idx();
    const auto tx_base = q(kControlTransmitQueue).ctx().queue().last_avail_idx();
    ASSERT_GT(tx_base, 0U);
    for (auto& [index, queue] : queues_)
        device_->queue_stopped(queue->ctx());
    device_.reset();
    ConsoleConfig config;
    config.ports = {PortSpec{"", HostKind::pty, ""},
                    PortSpec{"org.test.log", HostKind::unix, dir_.file("log.sock")},
                    PortSpec{"", HostKind::pty, ""}};
    auto device = ConsoleDevice::create(config, Logger("console", LogLevel::error));
    ASSERT_TRUE(device.ok()) << device.error().message();
    device_ = std::move(*device);
    ASSERT_TRUE(device_->set_features(kMultiport | backend::kFeatureEventIdx).ok());
    q(kControlReceiveQueue).restart(rx_base);
    ASSERT_TRUE(device_->queue_started(q(kControlReceiveQueue).ctx()).ok());
    q(kControlTransmitQueue).restart(tx_base);
    ASSERT_TRUE(device_->queue_started(q(kControlTransmitQueue).ctx()).ok());
    offer_control(8);

    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(0, VIRTIO_CONSOLE_PORT_ADD, 1),
                                                       message(1, VIRTIO_CONSOLE_PORT_ADD, 1),
                                                       message(2, VIRTIO_CONSOLE_PORT_ADD, 1)}));
    // The Linux driver answers PORT_ADD of a port it has with PORT_READY.
    send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(0, VIRTIO_CONSOLE_CONSOLE_PORT, 1),
                                                       message(0, VIRTIO_CONSOLE_PORT_OPEN, 1)}));
    // Port 1's client went with the old back-end: the driver hears so.
    send(1, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(received(),
              (std::vector<ControlMessage>{message(1, VIRTIO_CONSOLE_PORT_NAME, 1, "org.test.log"),
                                           message(1, VIRTIO_CONSOLE_PORT_OPEN, 0)}));
    send(2, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(2, VIRTIO_CONSOLE_PORT_OPEN, 1)}));

    // Port 1 counts as open in the guest: a new client's bytes go through
    // without waiting for a PORT_OPEN the driver will not send again.
    const std::uint64_t addr = offer_receive(1);
    ASSERT_TRUE(device_->process_queue(q(4).ctx()).ok());
    UniqueFd client = connect_client(dir_.file("log.sock"));
    ASSERT_TRUE(device_->handle_event(q(4).ctx(), ConsoleDevice::kAcceptToken).ok());
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(1, VIRTIO_CONSOLE_PORT_OPEN, 1)}));
    ASSERT_EQ(::write(client.get(), "again", 5), 5);
    ASSERT_TRUE(backend::test::readable_within(device_->host(1).wait_fd(), 5s));
    ASSERT_TRUE(device_->handle_event(q(4).ctx(), ConsoleDevice::kHostInputToken).ok());
    auto used = q(4).used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(text_of(at(addr, used->len)), "again");
}

// After a reset the front-end starts the rings at 0 again: a new driver,
// whose DEVICE_READY is what counts (nothing is announced before it).
TEST_F(ConsoleQueues, ControlQueueFromZeroIsANewDriver)
{
    device_ready();
    send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(device_->outbox_size(), 2U); // CONSOLE_PORT, PORT_OPEN: for the old driver
    auto fresh = std::make_unique<HandQueue>(ram_, memory_, kControlTransmitQueue, 0x40000);
    ASSERT_TRUE(device_->queue_started(fresh->ctx()).ok());
    EXPECT_EQ(device_->outbox_size(), 0U);
    send(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_EQ(received().size(), 3U);
}

TEST_F(ConsoleQueues, TooSmallControlBufferDropsTheMessageNotTheQueue)
{
    device_ready();
    offer_control(1, 10); // PORT_NAME of port 1 needs 8 + 12 bytes
    send(1, VIRTIO_CONSOLE_PORT_READY, 1);
    ASSERT_TRUE(
        device_->handle_event(q(kControlReceiveQueue).ctx(), ConsoleDevice::kOutboxToken).ok());
    EXPECT_EQ(device_->outbox_size(), 0U);
    EXPECT_FALSE(q(kControlReceiveQueue).ctx().queue().broken());
}

TEST_F(ConsoleQueues, PtyBytesBothWays)
{
    // Before the driver made port 0 a console, it would drop its bytes.
    offer_receive(0);
    ASSERT_TRUE(device_->process_queue(q(0).ctx()).ok());
    EXPECT_TRUE(q(0).events().watched.size() == 2); // wake, resize: not the pty
    device_ready();
    send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    (void)received();
    ASSERT_TRUE(device_->handle_event(q(0).ctx(), ConsoleDevice::kWakeToken).ok());
    EXPECT_FALSE(q(0).used().has_value()); // nothing from the host yet
    ASSERT_EQ(::write(slave_.get(), "early", 5), 5);
    ASSERT_TRUE(backend::test::readable_within(device_->host(0).wait_fd(), 5s));
    ASSERT_TRUE(device_->handle_event(q(0).ctx(), ConsoleDevice::kHostInputToken).ok());
    auto early = q(0).used();
    ASSERT_TRUE(early.has_value());
    EXPECT_EQ(early->len, 5U);
    // No buffers: the pty is not watched, its bytes wait there.
    ASSERT_TRUE(device_->process_queue(q(0).ctx()).ok());
    const int master = device_->host(0).wait_fd();
    EXPECT_FALSE(watched(0, master, ConsoleDevice::kHostInputToken));
    ASSERT_EQ(::write(slave_.get(), "hello\n", 6), 6);
    const std::uint64_t addr = offer_receive(0);
    ASSERT_TRUE(device_->process_queue(q(0).ctx()).ok());
    EXPECT_TRUE(watched(0, master, ConsoleDevice::kHostInputToken));
    EXPECT_TRUE(q(0).ctx().paused());
    ASSERT_TRUE(backend::test::readable_within(master, 5s));
    ASSERT_TRUE(device_->handle_event(q(0).ctx(), ConsoleDevice::kHostInputToken).ok());
    auto used = q(0).used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(text_of(at(addr, used->len)), "hello\n");
    EXPECT_FALSE(watched(0, master, ConsoleDevice::kHostInputToken)); // out of buffers

    q(1).driver().submit({buffer(7, bytes_of("world\r\n"))}, {});
    ASSERT_TRUE(device_->process_queue(q(1).ctx()).ok());
    ASSERT_TRUE(q(1).used().has_value());
    EXPECT_EQ(read_slave(7), "world\r\n"); // raw: unchanged, nothing echoed
}

TEST_F(ConsoleQueues, HostileDataChainsComeBackEmpty)
{
    // A receive chain with nothing writable, a transmit chain with nothing
    // readable: returned with 0 bytes, the queues go on.
    device_ready();
    send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    (void)received();
    ASSERT_EQ(::write(slave_.get(), "x", 1), 1);
    q(0).driver().submit({buffer(8)}, {});
    ASSERT_TRUE(device_->process_queue(q(0).ctx()).ok());
    ASSERT_TRUE(backend::test::readable_within(device_->host(0).wait_fd(), 5s));
    ASSERT_TRUE(device_->handle_event(q(0).ctx(), ConsoleDevice::kHostInputToken).ok());
    auto used = q(0).used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->len, 0U);
    const std::uint64_t addr = offer_receive(0);
    ASSERT_TRUE(device_->process_queue(q(0).ctx()).ok());
    ASSERT_TRUE(device_->handle_event(q(0).ctx(), ConsoleDevice::kHostInputToken).ok());
    used = q(0).used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(text_of(at(addr, used->len)), "x"); // the byte waited for a real buffer

    q(1).driver().submit({}, {buffer(8)});
    ASSERT_TRUE(device_->process_queue(q(1).ctx()).ok());
    used = q(1).used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(used->len, 0U);
    EXPECT_FALSE(q(0).ctx().queue().broken());
    EXPECT_FALSE(q(1).ctx().queue().broken());
}

TEST_F(ConsoleQueues, UnknownQueueTokensAreIgnored)
{
    EXPECT_TRUE(device_->handle_event(q(0).ctx(), 99).ok());
    EXPECT_TRUE(device_->handle_event(q(kControlTransmitQueue).ctx(), 99).ok());
}

TEST_F(ConsoleQueues, UnixClientComesAndGoes)
{
    device_ready();
    send(1, VIRTIO_CONSOLE_PORT_READY, 1);
    (void)received();
    const std::uint64_t addr = offer_receive(1);
    ASSERT_TRUE(device_->process_queue(q(4).ctx()).ok());
    const int listener = device_->host(1).wait_fd();
    EXPECT_TRUE(watched(4, listener, ConsoleDevice::kAcceptToken));

    // Output with no client is dropped, the buffer returned.
    q(5).driver().submit({buffer(4, bytes_of("lost"))}, {});
    ASSERT_TRUE(device_->process_queue(q(5).ctx()).ok());
    ASSERT_TRUE(q(5).used().has_value());

    UniqueFd client = connect_client(dir_.file("log.sock"));
    ASSERT_TRUE(device_->handle_event(q(4).ctx(), ConsoleDevice::kAcceptToken).ok());
    EXPECT_TRUE(device_->host(1).connected());
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(1, VIRTIO_CONSOLE_PORT_OPEN, 1)}));

    // The bytes wait until a guest process opens the port (the driver
    // drops data for a closed port).
    ASSERT_EQ(::write(client.get(), "from host", 9), 9);
    EXPECT_FALSE(watched(4, device_->host(1).wait_fd(), ConsoleDevice::kHostInputToken));
    EXPECT_TRUE(q(4).ctx().paused());
    send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    ASSERT_TRUE(device_->handle_event(q(4).ctx(), ConsoleDevice::kWakeToken).ok());
    EXPECT_TRUE(watched(4, device_->host(1).wait_fd(), ConsoleDevice::kHostInputToken));
    ASSERT_TRUE(backend::test::readable_within(device_->host(1).wait_fd(), 5s));
    ASSERT_TRUE(device_->handle_event(q(4).ctx(), ConsoleDevice::kHostInputToken).ok());
    auto used = q(4).used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(text_of(at(addr, used->len)), "from host");

    q(5).driver().submit({buffer(9, bytes_of("to host\n"))}, {});
    ASSERT_TRUE(device_->process_queue(q(5).ctx()).ok());
    char buf[16] = {};
    ASSERT_TRUE(backend::test::readable_within(client.get(), 5s));
    EXPECT_EQ(::read(client.get(), buf, sizeof(buf)), 9);
    EXPECT_STREQ(buf, "to host\n");

    // The client leaves: PORT_OPEN 0, and the next client is accepted.
    offer_receive(1);
    ASSERT_TRUE(device_->process_queue(q(4).ctx()).ok());
    client.reset();
    ASSERT_TRUE(backend::test::readable_within(device_->host(1).wait_fd(), 5s));
    ASSERT_TRUE(device_->handle_event(q(4).ctx(), ConsoleDevice::kHostInputToken).ok());
    EXPECT_FALSE(device_->host(1).connected());
    EXPECT_EQ(received(), (std::vector<ControlMessage>{message(1, VIRTIO_CONSOLE_PORT_OPEN, 0)}));
    EXPECT_TRUE(watched(4, listener, ConsoleDevice::kAcceptToken));
    EXPECT_FALSE(q(4).used().has_value()); // the buffer waits for the next client
}

TEST_F(ConsoleQueues, PtyResizeReachesTheDriver)
{
    device_ready();
    send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    (void)received();
    winsize ws{};
    ws.ws_row = 33;
    ws.ws_col = 111;
    ASSERT_EQ(::ioctl(slave_.get(), TIOCSWINSZ, &ws), 0);
    ASSERT_TRUE(device_->check_resize().ok());
    // Columns first, as the spec's struct virtio_console_resize.
    EXPECT_EQ(received(), (std::vector<ControlMessage>{resize(111, 33)}));
    auto config = device_->read_config(0, 4);
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(virtq::load_le16(config->data()), 111U);    // cols
    EXPECT_EQ(virtq::load_le16(config->data() + 2), 33U); // rows
    ASSERT_TRUE(device_->check_resize().ok());            // unchanged: nothing sent
    EXPECT_TRUE(received().empty());
}

TEST(ConsoleResize, RowsFirstForOlderDrivers)
{
    ConsoleConfig config;
    config.ports = {PortSpec{}};
    config.resize_order = ResizeOrder::rows_cols;
    auto device = ConsoleDevice::create(config, Logger("console", LogLevel::error));
    ASSERT_TRUE(device.ok());
    GuestRam ram;
    auto memory = backend::test::memory_of(ram);
    ASSERT_TRUE((*device)->set_features(kMultiport).ok());
    HandQueue control_in(ram, memory, kControlReceiveQueue, 0);
    HandQueue control_out(ram, memory, kControlTransmitQueue, 0x4000);
    ASSERT_TRUE((*device)->queue_started(control_in.ctx()).ok());
    for (auto [id, event] : {std::pair{0xffffffffU, VIRTIO_CONSOLE_DEVICE_READY},
                             std::pair{0U, VIRTIO_CONSOLE_PORT_READY}}) {
        const auto bytes = ControlMessage{id, static_cast<std::uint16_t>(event), 1, {}}.encode();
        std::memcpy(ram.host(0x10000), bytes.data(), bytes.size());
        control_out.driver().submit({{ram.guest(0x10000), 8}}, {});
        ASSERT_TRUE((*device)->process_queue(control_out.ctx()).ok());
    }
    UniqueFd slave(::open((*device)->host(0).pty_path().c_str(), O_RDWR | O_NOCTTY));
    winsize ws{};
    ws.ws_row = 25;
    ws.ws_col = 80;
    ASSERT_EQ(::ioctl(slave.get(), TIOCSWINSZ, &ws), 0);
    ASSERT_TRUE((*device)->check_resize().ok());
    // PORT_ADD, CONSOLE_PORT, PORT_OPEN, then RESIZE.
    for (int i = 0; i < 4; ++i)
        control_in.driver().submit({}, {{ram.guest(0x20000 + i * 64), 64}});
    ASSERT_TRUE((*device)->process_queue(control_in.ctx()).ok());
    std::optional<virtq::UsedBuffer> last;
    while (auto u = control_in.used())
        last = u;
    ASSERT_TRUE(last.has_value());
    auto m = ControlMessage::decode(std::span<const std::byte>(ram.host(0x20000 + 3 * 64), 12));
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->event, VIRTIO_CONSOLE_RESIZE);
    EXPECT_EQ(virtq::load_le16(ram.host(0x20000 + 3 * 64 + 8)), 25U);  // rows
    EXPECT_EQ(virtq::load_le16(ram.host(0x20000 + 3 * 64 + 10)), 80U); // cols
}

TEST_F(ConsoleQueues, WithoutMultiportTheSizeIsInTheConfigAndBytesFlowAtOnce)
{
    ASSERT_TRUE(device_->set_features(backend::kFeatureEventIdx).ok());
    winsize ws{};
    ws.ws_row = 50;
    ws.ws_col = 132;
    ASSERT_EQ(::ioctl(slave_.get(), TIOCSWINSZ, &ws), 0);
    ASSERT_TRUE(device_->check_resize().ok());
    EXPECT_EQ(device_->outbox_size(), 0U); // no control queue without MULTIPORT
    auto config = device_->read_config(0, 4);
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(virtq::load_le16(config->data()), 132U);
    EXPECT_EQ(virtq::load_le16(config->data() + 2), 50U);
    // Port 0 takes bytes with no control protocol at all.
    const std::uint64_t addr = offer_receive(0);
    ASSERT_EQ(::write(slave_.get(), "single", 6), 6);
    ASSERT_TRUE(device_->process_queue(q(0).ctx()).ok());
    ASSERT_TRUE(backend::test::readable_within(device_->host(0).wait_fd(), 5s));
    ASSERT_TRUE(device_->handle_event(q(0).ctx(), ConsoleDevice::kHostInputToken).ok());
    auto used = q(0).used();
    ASSERT_TRUE(used.has_value());
    EXPECT_EQ(text_of(at(addr, used->len)), "single");
}

TEST_F(ConsoleQueues, ASlowHostReaderPausesTheTransmitQueue)
{
    // Fill the pty until it takes no more; then one chain waits and the
    // queue pauses until the host reads.
    std::vector<std::byte> block(4096, std::byte{'x'});
    const std::uint64_t block_addr = buffer(4096, block).addr;
    bool paused = false;
    std::size_t sent = 0;
    for (int i = 0; i < 1024 && !paused; ++i) {
        q(1).driver().submit({{block_addr, 4096}}, {});
        ASSERT_TRUE(device_->process_queue(q(1).ctx()).ok());
        while (q(1).used())
            sent += 4096;
        paused = q(1).ctx().paused();
    }
    ASSERT_TRUE(paused) << "the pty never filled up";
    bool retry_watched = false;
    for (auto [fd, token] : q(1).events().watched)
        retry_watched = retry_watched || token == ConsoleDevice::kRetryToken;
    EXPECT_TRUE(retry_watched);
    // The host reads; the retries flush what waited; nothing is lost.
    std::size_t got = 0;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (got < sent && std::chrono::steady_clock::now() < deadline) {
        char buf[4096];
        const ssize_t n = ::read(slave_.get(), buf, sizeof(buf));
        if (n > 0)
            got += static_cast<std::size_t>(n);
        ASSERT_TRUE(device_->handle_event(q(1).ctx(), ConsoleDevice::kRetryToken).ok());
    }
    EXPECT_EQ(got, sent);
    EXPECT_FALSE(q(1).ctx().paused());
}

// ---------------------------------------------------------------------------
// The device served by the framework: real worker threads, so that control
// messages made on one queue's worker reach the driver through another's.

TEST(ConsoleSession, BringUpAndBytesThroughWorkerThreads)
{
    ConsoleConfig config;
    config.ports = {PortSpec{}, PortSpec{"second", HostKind::pty, ""}};
    auto created = ConsoleDevice::create(config, Logger("console", LogLevel::error));
    ASSERT_TRUE(created.ok()) << created.error().message();
    ConsoleDevice& device = **created;
    backend::test::ServedSession session(device);
    auto& f = session.frontend();
    GuestRam ram(4 << 20);
    backend::test::negotiate(f);
    ASSERT_TRUE(f.set_mem_table(std::vector{ram.whole()}).ok());
    constexpr std::uint32_t kSize = 16;
    std::vector<std::unique_ptr<backend::test::DriverQueue>> queues;
    for (std::uint32_t i = 0; i < device.num_queues(); ++i) {
        queues.push_back(
            std::make_unique<backend::test::DriverQueue>(ram, i * 0x4000, kSize, true));
        backend::test::start_queue(f, *queues.back(), i, kSize);
    }
    std::uint64_t next = kBufferBase;
    auto take = [&](std::uint32_t size) {
        const std::uint64_t offset = next;
        next += size;
        return offset;
    };
    // The driver's control buffers, then DEVICE_READY.
    std::map<std::uint16_t, std::uint64_t> control;
    for (int i = 0; i < 8; ++i) {
        const std::uint64_t at = take(64);
        control[queues[kControlReceiveQueue]->submit({}, {{ram.guest(at), 64}})] = at;
    }
    auto next_message = [&]() -> std::optional<ControlMessage> {
        auto used = queues[kControlReceiveQueue]->wait_used();
        if (!used)
            return std::nullopt;
        return ControlMessage::decode(
            std::span<const std::byte>(ram.host(control.at(used->head)), used->len));
    };
    auto send = [&](std::uint32_t id, std::uint16_t event, std::uint16_t value) {
        const auto bytes = ControlMessage{id, event, value, {}}.encode();
        const std::uint64_t at = take(8);
        std::memcpy(ram.host(at), bytes.data(), bytes.size());
        queues[kControlTransmitQueue]->submit({{ram.guest(at), 8}}, {});
    };
    send(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 1);
    for (std::uint32_t p = 0; p < 2; ++p) {
        auto m = next_message();
        ASSERT_TRUE(m.has_value()) << "no PORT_ADD for port " << p;
        EXPECT_EQ(m->event, VIRTIO_CONSOLE_PORT_ADD);
        EXPECT_EQ(m->id, p);
    }
    send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    auto console = next_message();
    ASSERT_TRUE(console.has_value());
    EXPECT_EQ(console->event, VIRTIO_CONSOLE_CONSOLE_PORT);

    // Host -> driver on port 1 (queue 4) once a guest process opened it,
    // driver -> host on port 0 (queue 1).
    send(1, VIRTIO_CONSOLE_PORT_READY, 1);
    send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    UniqueFd second(::open(device.host(1).pty_path().c_str(), O_RDWR | O_NOCTTY));
    ASSERT_TRUE(second.valid());
    const std::uint64_t in = take(64);
    queues[receive_queue(1)]->submit({}, {{ram.guest(in), 64}});
    ASSERT_EQ(::write(second.get(), "abc", 3), 3);
    auto used = queues[receive_queue(1)]->wait_used();
    ASSERT_TRUE(used.has_value()) << "the pty's bytes did not reach the driver";
    EXPECT_EQ(backend::test::read_back(ram, in, used->len), "abc");

    UniqueFd first(::open(device.host(0).pty_path().c_str(), O_RDWR | O_NOCTTY));
    ASSERT_TRUE(first.valid());
    queues[transmit_queue(0)]->submit({backend::test::put(ram, take(8), "xyz\n")}, {});
    ASSERT_TRUE(backend::test::readable_within(first.get(), 5000ms));
    char buf[8] = {};
    EXPECT_EQ(::read(first.get(), buf, sizeof(buf)), 4);
    EXPECT_STREQ(buf, "xyz\n");
    EXPECT_TRUE(session.finish().ok());
}

} // namespace
} // namespace vl::console
