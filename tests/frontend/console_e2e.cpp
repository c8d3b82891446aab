// SPDX-License-Identifier: Apache-2.0
// vhost-user-console end to end on the host: the program itself, with a
// pty port, a Unix socket port and a second pty, driven by the user-space
// test driver's ConsoleDriver (tests/driver) as its front-end, with no
// kernel. The multiport bring-up as Linux's virtio_console does it, lines
// both ways through a pty port and a socket port, the host side's
// PORT_OPEN, bytes held until the guest opens a port, resize in the control
// message and the config space, a driver without MULTIPORT, malformed
// control messages and chains (the back-end logs them and goes on), a
// second front-end, SIGTERM.
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cstring>

#include "base/unique_fd.hpp"
#include "console_driver.hpp"
#include "program_runner.hpp"

#ifndef VL_CONSOLE_PROGRAM
#error "VL_CONSOLE_PROGRAM must name the vhost-user-console program"
#endif
#ifndef VL_TEST_DRIVER_PROGRAM
#error "VL_TEST_DRIVER_PROGRAM must name the vl-test-driver program"
#endif

namespace vl::test_driver
{
namespace
{

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using e2e::Program;
using e2e::TempDir;

constexpr auto kWait = 10s;

// vhost-user-console on dir/con.sock with port 0 a pty (link dir/hvc),
// port 1 a named Unix socket port (dir/port1.sock), port 2 another pty.
struct ConsoleBackend : e2e::Backend {
    explicit ConsoleBackend(const TempDir& dir)
        : e2e::Backend(dir, VL_CONSOLE_PROGRAM, "con.sock",
                       {"-p", "pty:" + dir.file("hvc"), "-p",
                        "org.test.port1=unix:" + dir.file("port1.sock"), "-p", "pty", "-l",
                        "info"}),
          pty_link(dir.file("hvc")), port1(dir.file("port1.sock"))
    {
    }
    std::string pty_link;
    std::string port1;
};

ConsoleOptions options()
{
    ConsoleOptions o;
    o.request_timeout = kWait;
    return o;
}

Result<ConsoleDriver> open(const std::string& socket, ConsoleOptions o = options())
{
    return ConsoleDriver::open(socket, o, Logger("front-end", LogLevel::error));
}

std::string text_of(std::span<const std::byte> b)
{
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// The host's end of port 0: the pty the back-end made, opened by its link.
UniqueFd open_pty(const std::string& link)
{
    UniqueFd fd(::open(link.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << link << ": " << std::strerror(errno);
    return fd;
}

UniqueFd connect_client(const std::string& path)
{
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << path << ": " << std::strerror(errno);
    return fd;
}

void write_all(int fd, std::string_view text)
{
    while (!text.empty()) {
        const ssize_t n = ::write(fd, text.data(), text.size());
        if (n < 0 && errno == EAGAIN) {
            pollfd p{fd, POLLOUT, 0};
            (void)::poll(&p, 1, 100);
            continue;
        }
        ASSERT_GT(n, 0) << std::strerror(errno);
        text.remove_prefix(static_cast<std::size_t>(n));
    }
}

// Reads `fd` until `text` ends what came, or the wait is over.
std::string read_until(int fd, std::string_view end, std::chrono::milliseconds wait = kWait)
{
    std::string got;
    const auto deadline = std::chrono::steady_clock::now() + wait;
    while (!got.ends_with(end) && std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0)
            continue;
        char buf[256];
        const ssize_t n = ::read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
}

// Brings the driver up and checks what the device said of its ports.
void expect_ports_as_configured(ConsoleDriver& console)
{
    ASSERT_TRUE(console.multiport());
    EXPECT_EQ(console.config().max_nr_ports, 3U);
    ASSERT_EQ(console.port_count(), 3U);
    for (std::uint32_t p = 0; p < 3; ++p)
        EXPECT_TRUE(console.port(p).added) << p;
    EXPECT_TRUE(console.port(0).console);
    EXPECT_FALSE(console.port(1).console);
    EXPECT_FALSE(console.port(2).console);
    EXPECT_EQ(console.port(1).name, "org.test.port1");
    EXPECT_TRUE(console.port(0).name.empty());
    EXPECT_TRUE(console.port(0).host_open);  // a pty is always there
    EXPECT_FALSE(console.port(1).host_open); // no client yet
    EXPECT_TRUE(console.port(2).host_open);
}

TEST(ConsoleProgram, BadUsageExitsWith2AndSaysWhy)
{
    TempDir dir;
    Program p(dir, VL_CONSOLE_PROGRAM, {"-s", dir.file("con.sock"), "-p", "n=pty", "-p", "n=pty"});
    EXPECT_EQ(p.wait(), 2);
    EXPECT_NE(p.err().find("two ports are named 'n'"), std::string::npos) << p.err();
}

TEST(ConsoleProgram, MultiportBringUpAnnouncesNamesAndOpensThePorts)
{
    TempDir dir;
    ConsoleBackend backend(dir);
    {
        auto console = open(backend.socket);
        ASSERT_TRUE(console) << console.error().message();
        ASSERT_TRUE(console->bring_up(kWait)) << backend.program.err();
        expect_ports_as_configured(*console);
        EXPECT_EQ(console->port(0).adds, 1U);
    }
    // The tool prints the same.
    Program tool(dir, VL_TEST_DRIVER_PROGRAM, {"-s", backend.socket, "console-info"}, "tool");
    EXPECT_EQ(tool.wait(), 0) << tool.err();
    const std::string out = tool.out();
    EXPECT_NE(out.find("max_nr_ports 3"), std::string::npos) << out;
    EXPECT_NE(out.find("port 0:              added, console, host side open"), std::string::npos)
        << out;
    EXPECT_NE(out.find("port 1:              added, name \"org.test.port1\", host side closed"),
              std::string::npos)
        << out;
}

TEST(ConsoleProgram, ALineThroughThePtyPortBothWays)
{
    TempDir dir;
    ConsoleBackend backend(dir);
    auto console = open(backend.socket);
    ASSERT_TRUE(console) << console.error().message();
    ASSERT_TRUE(console->bring_up(kWait));
    UniqueFd host = open_pty(backend.pty_link);
    ASSERT_TRUE(host.valid());

    write_all(host.get(), "from the host\n");
    auto line = console->read_line(0, kWait);
    ASSERT_TRUE(line) << line.error().message();
    EXPECT_EQ(*line, "from the host\n");

    ASSERT_TRUE(console->write(0, "from the driver\n"));
    EXPECT_EQ(read_until(host.get(), "\n"), "from the driver\n");
}

TEST(ConsoleProgram, ALineThroughTheSocketPortBothWaysAndTheHostSideOpenAndClosed)
{
    TempDir dir;
    ConsoleBackend backend(dir);
    auto console = open(backend.socket);
    ASSERT_TRUE(console) << console.error().message();
    ASSERT_TRUE(console->bring_up(kWait));
    ASSERT_TRUE(console->open_port(1));

    UniqueFd client = connect_client(backend.port1);
    auto opened = console->pump_control(kWait, [&] { return console->port(1).host_open; });
    ASSERT_TRUE(opened) << opened.error().message();

    write_all(client.get(), "ping\n");
    auto line = console->read_line(1, kWait);
    ASSERT_TRUE(line) << line.error().message();
    EXPECT_EQ(*line, "ping\n");
    ASSERT_TRUE(console->write(1, "pong\n"));
    EXPECT_EQ(read_until(client.get(), "\n"), "pong\n");

    client.reset();
    auto closed = console->pump_control(kWait, [&] { return !console->port(1).host_open; });
    ASSERT_TRUE(closed) << closed.error().message();
    // Output with nobody connected is dropped, and the buffer comes back.
    ASSERT_TRUE(console->write(1, "lost\n"));
}

// The Linux driver drops what arrives for a port no guest process has
// open: the device holds the host's bytes until the driver's PORT_OPEN.
TEST(ConsoleProgram, BytesWaitUntilTheGuestOpensThePort)
{
    TempDir dir;
    ConsoleBackend backend(dir);
    auto console = open(backend.socket);
    ASSERT_TRUE(console) << console.error().message();
    ASSERT_TRUE(console->bring_up(kWait));

    UniqueFd client = connect_client(backend.port1);
    ASSERT_TRUE(console->pump_control(kWait, [&] { return console->port(1).host_open; }));
    write_all(client.get(), "early\n");
    auto nothing = console->read(1, 1, 500ms);
    ASSERT_TRUE(nothing) << nothing.error().message();
    EXPECT_TRUE(nothing->empty()) << text_of(*nothing);

    ASSERT_TRUE(console->open_port(1));
    auto line = console->read_line(1, kWait);
    ASSERT_TRUE(line) << line.error().message();
    EXPECT_EQ(*line, "early\n");
}

TEST(ConsoleProgram, ResizeReachesTheControlMessageAndTheConfig)
{
    TempDir dir;
    ConsoleBackend backend(dir);
    auto console = open(backend.socket);
    ASSERT_TRUE(console) << console.error().message();
    ASSERT_TRUE(console->bring_up(kWait));
    UniqueFd host = open_pty(backend.pty_link);
    ASSERT_TRUE(host.valid());

    winsize ws{};
    ws.ws_row = 33;
    ws.ws_col = 111;
    ASSERT_EQ(::ioctl(host.get(), TIOCSWINSZ, &ws), 0);
    const ConsoleSize want{111, 33};
    auto resized = console->pump_control(kWait, [&] { return console->size() == want; });
    ASSERT_TRUE(resized) << resized.error().message();
    auto config = console->read_config();
    ASSERT_TRUE(config) << config.error().message();
    EXPECT_EQ(config->cols, 111);
    EXPECT_EQ(config->rows, 33);

    ws.ws_row = 40;
    ws.ws_col = 100;
    ASSERT_EQ(::ioctl(host.get(), TIOCSWINSZ, &ws), 0);
    const ConsoleSize again{100, 40};
    ASSERT_TRUE(console->pump_control(kWait, [&] { return console->size() == again; }));
}

TEST(ConsoleProgram, WithoutMultiportPortZeroAndTheSizeInTheConfig)
{
    TempDir dir;
    ConsoleBackend backend(dir);
    ConsoleOptions o = options();
    o.multiport = false;
    auto console = open(backend.socket, o);
    ASSERT_TRUE(console) << console.error().message();
    EXPECT_FALSE(console->multiport());
    EXPECT_EQ(console->driver().queue_count(), 2U);
    EXPECT_FALSE(console->bring_up(1s)); // no control queue
    UniqueFd host = open_pty(backend.pty_link);
    ASSERT_TRUE(host.valid());

    // Bytes flow at once: the one port is always open.
    write_all(host.get(), "single\n");
    auto line = console->read_line(0, kWait);
    ASSERT_TRUE(line) << line.error().message();
    EXPECT_EQ(*line, "single\n");
    ASSERT_TRUE(console->write(0, "back\n"));
    EXPECT_EQ(read_until(host.get(), "\n"), "back\n");

    winsize ws{};
    ws.ws_row = 25;
    ws.ws_col = 81;
    ASSERT_EQ(::ioctl(host.get(), TIOCSWINSZ, &ws), 0);
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    Result<ConsoleConfig> config = console->read_config();
    while (config && (config->cols != 81 || config->rows != 25) &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(50ms);
        config = console->read_config();
    }
    ASSERT_TRUE(config) << config.error().message();
    EXPECT_EQ(config->cols, 81);
    EXPECT_EQ(config->rows, 25);
}

// Control messages no Linux driver sends, and chains that break the
// device's expectations: logged and ignored, every buffer comes back, and
// the device goes on working afterwards.
TEST(ConsoleProgram, MalformedControlMessagesAreIgnoredAndTheDeviceGoesOn)
{
    TempDir dir;
    ConsoleBackend backend(dir);
    auto console = open(backend.socket);
    ASSERT_TRUE(console) << console.error().message();

    auto send = [&](std::uint32_t id, std::uint16_t event, std::uint16_t value) {
        Status s = console->send_control({id, event, value, {}});
        EXPECT_TRUE(s) << "id " << id << " event " << event << ": " << s.error().message();
    };
    // Before DEVICE_READY.
    send(0, VIRTIO_CONSOLE_PORT_READY, 1);
    send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    // Too short for a header, and far too long.
    const std::array<std::byte, 4> short_message{};
    EXPECT_TRUE(console->send_control_bytes(short_message));
    EXPECT_TRUE(console->send_control_bytes(std::array<std::byte, 1>{}));
    std::vector<std::byte> junk(8192, std::byte{0xa5});
    EXPECT_TRUE(console->send_control_bytes(junk));
    // Events a driver does not send, and one nobody knows.
    for (std::uint16_t event :
         {std::uint16_t{VIRTIO_CONSOLE_PORT_ADD}, std::uint16_t{VIRTIO_CONSOLE_PORT_REMOVE},
          std::uint16_t{VIRTIO_CONSOLE_CONSOLE_PORT}, std::uint16_t{VIRTIO_CONSOLE_RESIZE},
          std::uint16_t{VIRTIO_CONSOLE_PORT_NAME}, std::uint16_t{42}, std::uint16_t{0xffff}})
        send(0, event, 1);
    // A driver that failed to set the device up.
    send(kConsoleNoPort, VIRTIO_CONSOLE_DEVICE_READY, 0);
    // A device-writable chain on the control transmitq, and one with both.
    {
        VhostUserDriver& d = console->driver();
        auto out = d.allocate(64);
        auto in = d.allocate(64);
        ASSERT_TRUE(out && in);
        const virtq::GuestBuffer writable = in->whole();
        const virtq::GuestBuffer readable = out->whole();
        ASSERT_TRUE(d.submit(kConsoleControlTransmitQueue, {}, std::span(&writable, 1)));
        ASSERT_TRUE(d.wait_used(kConsoleControlTransmitQueue, kWait));
        ASSERT_TRUE(d.submit(kConsoleControlTransmitQueue, std::span(&readable, 1),
                             std::span(&writable, 1)));
        ASSERT_TRUE(d.wait_used(kConsoleControlTransmitQueue, kWait));
    }
    // Nothing of that made the device talk.
    auto quiet = console->poll_control();
    ASSERT_TRUE(quiet) << quiet.error().message();
    EXPECT_TRUE(quiet->empty()) << describe(quiet->front());

    ASSERT_TRUE(console->bring_up(kWait)) << backend.program.err();
    expect_ports_as_configured(*console);
    // The PORT_OPEN before DEVICE_READY counted for nothing: port 1's
    // bytes wait for one that comes after.
    UniqueFd client = connect_client(backend.port1);
    ASSERT_TRUE(console->pump_control(kWait, [&] { return console->port(1).host_open; }));
    write_all(client.get(), "still here\n");
    auto held = console->read(1, 1, 300ms);
    ASSERT_TRUE(held) << held.error().message();
    EXPECT_TRUE(held->empty()) << text_of(*held);

    // After the bring-up: ports out of range, a failed port, a port opened
    // twice, PORT_READY again.
    send(3, VIRTIO_CONSOLE_PORT_READY, 1);
    send(kConsoleNoPort, VIRTIO_CONSOLE_PORT_READY, 1);
    send(kConsoleNoPort, VIRTIO_CONSOLE_PORT_OPEN, 1);
    send(1000, VIRTIO_CONSOLE_PORT_OPEN, 0);
    send(2, VIRTIO_CONSOLE_PORT_READY, 0);
    send(2, VIRTIO_CONSOLE_PORT_READY, 1);
    send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    send(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    // A device-writable chain on a transmitq comes back with nothing taken.
    {
        VhostUserDriver& d = console->driver();
        auto in = d.allocate(64);
        ASSERT_TRUE(in);
        const virtq::GuestBuffer writable = in->whole();
        ASSERT_TRUE(d.submit(console_transmit_queue(2), {}, std::span(&writable, 1)));
        auto used = d.wait_used(console_transmit_queue(2), kWait);
        ASSERT_TRUE(used) << used.error().message();
        EXPECT_EQ(used->len, 0U);
    }
    auto after = console->pump_control(300ms);
    EXPECT_TRUE(!after && after.error().code() == ETIMEDOUT)
        << "the device answered a malformed message: "
        << (after ? describe(after->front()) : after.error().message());

    // Still works: a line each way on the socket port.
    auto line = console->read_line(1, kWait);
    ASSERT_TRUE(line) << line.error().message();
    EXPECT_EQ(*line, "still here\n");
    ASSERT_TRUE(console->write(1, "indeed\n"));
    EXPECT_EQ(read_until(client.get(), "\n"), "indeed\n");

    EXPECT_TRUE(backend.program.running());
    EXPECT_EQ(backend.program.stop(), 0);
    const std::string log = backend.program.err();
    EXPECT_NE(log.find("shorter than the 8-byte header; ignored"), std::string::npos) << log;
    EXPECT_NE(log.find("not one a driver sends"), std::string::npos) << log;
    EXPECT_NE(log.find("could not set the device up (DEVICE_READY 0)"), std::string::npos) << log;
}

// A second DEVICE_READY is a new driver: the ports are announced again,
// and the Linux way of answering (PORT_READY for a port it has) gets the
// same replies as at first.
TEST(ConsoleProgram, DeviceReadyAgainAnnouncesThePortsAgain)
{
    TempDir dir;
    ConsoleBackend backend(dir);
    auto console = open(backend.socket);
    ASSERT_TRUE(console) << console.error().message();
    ASSERT_TRUE(console->bring_up(kWait));
    ASSERT_TRUE(console->bring_up(kWait));
    expect_ports_as_configured(*console);
    EXPECT_EQ(console->port(0).adds, 2U);
    EXPECT_EQ(console->port(2).adds, 2U);
}

// The back-end serves one front-end after another: the second one's
// driver starts from scratch and gets everything announced again.
TEST(ConsoleProgram, ASecondFrontEndAfterTheFirstLeftAndSigterm)
{
    TempDir dir;
    ConsoleBackend backend(dir);
    UniqueFd host = open_pty(backend.pty_link);
    ASSERT_TRUE(host.valid());
    for (int round = 0; round < 2; ++round) {
        auto console = open(backend.socket);
        ASSERT_TRUE(console) << round << ": " << console.error().message();
        ASSERT_TRUE(console->bring_up(kWait)) << round << ": " << backend.program.err();
        expect_ports_as_configured(*console);
        const std::string text = "round " + std::to_string(round) + "\n";
        ASSERT_TRUE(console->write(0, text));
        EXPECT_EQ(read_until(host.get(), "\n"), text);
        auto stopped = console->driver().stop();
        ASSERT_TRUE(stopped) << stopped.error().message();
    }
    EXPECT_EQ(backend.program.stop(), 0) << backend.program.err();
    EXPECT_FALSE(fs::exists(backend.socket));
    EXPECT_FALSE(fs::exists(backend.port1));
    EXPECT_FALSE(fs::exists(backend.pty_link));
}

} // namespace
} // namespace vl::test_driver
