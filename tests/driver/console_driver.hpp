// SPDX-License-Identifier: Apache-2.0
// virtio-console on top of VhostUserDriver (virtio 1.2, 5.3): each port's
// receive queue (device -> driver bytes, into buffers we keep posted) and
// transmit queue, and with VIRTIO_CONSOLE_F_MULTIPORT the control queues
// on which the device announces, names, connects and resizes ports.
//
// The driver side of the control protocol is what Linux's virtio_console
// does: DEVICE_READY once the queues run; each PORT_ADD gets the port's
// receive buffers posted and PORT_READY 1 in answer (also for a port that
// was added before); CONSOLE_PORT, PORT_NAME, PORT_OPEN (the host side)
// and RESIZE are recorded; PORT_OPEN from us says a guest process opened
// or closed the port. Every control message we send waits until the device
// used it, as the Linux driver spins for it. So a back-end can be checked
// for the exchanges that driver depends on, without a kernel.
//
// Queues: 0/1 port 0, 2/3 control receive/transmit, then 2 per further
// port (4/5 port 1, ...); without MULTIPORT only 0/1.
#pragma once

#include <linux/virtio_console.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "base/result.hpp"
#include "posted_buffers.hpp"
#include "vhost_user_driver.hpp"

namespace vl::test_driver
{

inline constexpr std::uint32_t kConsoleControlReceiveQueue = 2;
inline constexpr std::uint32_t kConsoleControlTransmitQueue = 3;
inline constexpr std::uint32_t kConsoleConfigSize = sizeof(virtio_console_config);   // 12
inline constexpr std::uint32_t kConsoleControlSize = sizeof(virtio_console_control); // 8
// The id of DEVICE_READY, which is about no port (Linux: VIRTIO_CONSOLE_BAD_ID).
inline constexpr std::uint32_t kConsoleNoPort = 0xffffffff;

static_assert(kConsoleConfigSize == 12 && kConsoleControlSize == 8);

[[nodiscard]] constexpr std::uint32_t console_receive_queue(std::uint32_t port)
{
    return port == 0 ? 0 : 2 * (port + 1);
}
[[nodiscard]] constexpr std::uint32_t console_transmit_queue(std::uint32_t port)
{
    return console_receive_queue(port) + 1;
}

// struct virtio_console_config in host byte order.
struct ConsoleConfig {
    std::uint16_t cols = 0;
    std::uint16_t rows = 0;
    std::uint32_t max_nr_ports = 0;
};
// The first 8 bytes (cols, rows, max_nr_ports) of a config space; EPROTO if
// shorter.
Result<ConsoleConfig> parse_console_config(std::span<const std::byte> config);

// One control message (struct virtio_console_control and what follows it:
// the name of PORT_NAME, the size of RESIZE), in host byte order.
struct ConsoleControl {
    std::uint32_t id = 0;
    std::uint16_t event = 0;
    std::uint16_t value = 0;
    std::vector<std::byte> payload;

    friend bool operator==(const ConsoleControl&, const ConsoleControl&) = default;
};
std::vector<std::byte> encode_console_control(const ConsoleControl& message);
// EPROTO if shorter than the 8-byte header.
Result<ConsoleControl> decode_console_control(std::span<const std::byte> bytes);
// "PORT_ADD", ..., "event 42".
std::string console_event_name(std::uint16_t event);
// "PORT_NAME port 1 value 1 'org.example'", for logs and failures.
std::string describe(const ConsoleControl& message);

// What the device told about one port, and what we told it.
struct ConsolePort {
    bool added = false;      // PORT_ADD came (and we answered PORT_READY 1)
    bool console = false;    // CONSOLE_PORT 1
    bool host_open = false;  // the device's last PORT_OPEN
    bool guest_open = false; // our last PORT_OPEN
    std::string name;        // PORT_NAME
    std::uint32_t adds = 0;  // PORT_ADDs for this port (more than one: announced again)
};

// The console size: RESIZE of the console port, or the config space.
struct ConsoleSize {
    std::uint16_t cols = 0;
    std::uint16_t rows = 0;
    friend bool operator==(const ConsoleSize&, const ConsoleSize&) = default;
};

struct ConsoleOptions {
    ConnectOptions connect;
    std::uint32_t queue_size = 64;
    bool event_idx = true;
    // Accept VIRTIO_CONSOLE_F_MULTIPORT if the device offers it.
    bool multiport = true;
    // With MULTIPORT: set up the queues of this many ports (default: the
    // config's max_nr_ports, bounded by the back-end's queue count).
    std::optional<std::uint32_t> ports;
    // Receive buffers kept posted per port and on the control receiveq,
    // and their size (Linux: one page each, as many as the ring holds).
    std::uint32_t receive_buffers = 16;
    std::uint32_t buffer_size = 4096;
    // Longest wait for one control or transmit buffer to come back.
    std::chrono::milliseconds request_timeout{5000};
};

class ConsoleDriver
{
  public:
    // Connects and starts the queues (below).
    static Result<ConsoleDriver> open(const std::string& socket_path, const ConsoleOptions& options,
                                      Logger logger);
    // Reads the config space, acks SIZE (and MULTIPORT, as asked), starts
    // the queues and posts receive buffers: on the control receiveq with
    // MULTIPORT (a port's come with its PORT_ADD), on port 0's otherwise.
    // Sends nothing: device_ready() or bring_up() begins the protocol.
    static Result<ConsoleDriver> start(VhostUserDriver driver, const ConsoleOptions& options);

    [[nodiscard]] VhostUserDriver& driver() noexcept { return driver_; }
    [[nodiscard]] bool multiport() const noexcept { return multiport_; }
    // The config space as read at start; read_config() reads it again.
    [[nodiscard]] const ConsoleConfig& config() const noexcept { return config_; }
    Result<ConsoleConfig> read_config();
    // Ports whose queues run (1 without MULTIPORT).
    [[nodiscard]] std::uint32_t port_count() const noexcept
    {
        return static_cast<std::uint32_t>(ports_.size());
    }
    [[nodiscard]] const ConsolePort& port(std::uint32_t index) const { return ports_.at(index); }
    // The last RESIZE (of port 0); nullopt before any.
    [[nodiscard]] const std::optional<ConsoleSize>& size() const noexcept { return size_; }

    // ---- control queues (MULTIPORT) -------------------------------------
    // DEVICE_READY 1, then control messages until every port was added,
    // the console port is a console, and (so that the answers to our
    // PORT_READYs are in) nothing more came for `settle`.
    Status bring_up(std::chrono::milliseconds timeout,
                    std::chrono::milliseconds settle = std::chrono::milliseconds(100));
    // Handles the control messages the device sends (see the file comment)
    // until `done()` holds, at least one came and `done` is empty, or
    // `timeout` passes (ETIMEDOUT, naming what came). Returns every message
    // received, in order.
    Result<std::vector<ConsoleControl>> pump_control(std::chrono::milliseconds timeout,
                                                     const std::function<bool()>& done = {});
    // Handles what has come so far, without waiting.
    Result<std::vector<ConsoleControl>> poll_control();
    // A guest process opens (PORT_OPEN 1) or closes (0) the port.
    Status open_port(std::uint32_t port);
    Status close_port(std::uint32_t port);
    // Any message, including ones a driver must not send (tests of bad
    // input); waits until the device used it.
    Status send_control(const ConsoleControl& message);
    Status send_control_bytes(std::span<const std::byte> bytes);

    // ---- data --------------------------------------------------------------
    // `bytes` as one buffer on the port's transmitq; waits until used.
    Status write(std::uint32_t port, std::span<const std::byte> bytes);
    Status write(std::uint32_t port, std::string_view text);
    // What the device put in the port's receive buffers, until at least
    // `min_bytes` came or `timeout` passed (then what came, possibly
    // nothing: not an error for a console).
    Result<std::vector<std::byte>> read(std::uint32_t port, std::size_t min_bytes,
                                        std::chrono::milliseconds timeout);
    // read() until a '\n' (included) came; ETIMEDOUT with what came if not.
    Result<std::string> read_line(std::uint32_t port, std::chrono::milliseconds timeout);

  private:
    ConsoleDriver(VhostUserDriver driver, const ConsoleOptions& options, ConsoleConfig config,
                  bool multiport, std::uint32_t ports);
    Status take_control(const virtq::UsedBuffer& used, std::vector<ConsoleControl>& got);
    Status handle(const ConsoleControl& message);
    Result<ConsolePort*> port_at(std::uint32_t index, const ConsoleControl& message);
    Status check_port(std::uint32_t port) const;

    VhostUserDriver driver_;
    ConsoleOptions options_;
    ConsoleConfig config_;
    bool multiport_;
    std::vector<ConsolePort> ports_;
    std::optional<ConsoleSize> size_;
    PostedBuffers control_{kConsoleControlReceiveQueue};
    std::vector<PostedBuffers> receive_;          // per port
    std::vector<std::vector<std::byte>> pending_; // per port: read past a line
};

} // namespace vl::test_driver
