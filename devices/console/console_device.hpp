// SPDX-License-Identifier: Apache-2.0
// vhost-user-console: a virtio-console device (virtio 1.2, 5.3) with
// VIRTIO_CONSOLE_F_SIZE and VIRTIO_CONSOLE_F_MULTIPORT, whose ports are
// bridged to host ptys or Unix sockets (host_port.hpp).
//
// Queues: 0/1 receive/transmit of port 0, 2/3 control receive/transmit,
// then 2 per further port (4/5 port 1, ...). A driver without MULTIPORT
// uses queues 0 and 1 only.
//
// - receiveq of port p (device -> driver): the host side's fd is watched on
//   this queue's worker while the driver has buffers there; bytes are read
//   straight into them. Without buffers the fd is left alone (the host's
//   writes wait in the pty or socket: back-pressure, nothing is lost).
//   A unix port's listening socket is watched there too (one client at a
//   time), and port 0's pty size is polled there (resize). With MULTIPORT,
//   bytes go to a port only while the driver can take them: the Linux
//   driver discards data for a port no guest process has open, so a named
//   port's bytes wait until the driver's PORT_OPEN 1, and the console
//   port's until its PORT_READY (then it is a console, open for good).
// - transmitq of port p (driver -> device): written to the host side. What
//   the host does not take at once waits (one chain's worth; the queue
//   pauses and a timer retries), so a slow reader slows the driver down.
//   With no host connected (a unix port without client) the data is
//   dropped, as on a serial line nobody listens to.
// - control queues: the multiport protocol. DEVICE_READY from the driver
//   gets a PORT_ADD per port; PORT_READY of a port gets CONSOLE_PORT (port
//   0), its size (RESIZE), PORT_NAME and PORT_OPEN when the host side is
//   connected. Host connects and disconnects send PORT_OPEN; the driver's
//   PORT_OPEN (a guest process opened the port) is noted. Messages to the
//   driver wait in an outbox, filled by any worker, delivered by the
//   control receiveq's worker. A message from the driver is used (and its
//   interrupt raised) before it has any effect: the Linux driver spins
//   until then, and must not meet the answers first (see serve_control).
// - restart: a back-end that finds the control transmitq already used when
//   it starts (the front-end reconnected it to a driver an earlier back-end
//   set up) announces every port again with PORT_ADD, which the Linux
//   driver answers with PORT_READY as at first; ports are taken to be open
//   in the guest until the driver says otherwise. A transmitq at index 0
//   (or a second DEVICE_READY) is a new driver: everything starts over.
// - config space: cols, rows (port 0's pty size), max_nr_ports; read-only.
//   Without MULTIPORT a resize changes it and notifies the front-end.
//
// Malformed control messages (short, unknown events, port ids out of
// range, events only a device sends) are logged and ignored: they never
// break the queue or the device.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "backend/device.hpp"
#include "base/event_fd.hpp"
#include "base/log.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "console/console_config.hpp"
#include "console/host_port.hpp"

namespace vl::console
{

inline constexpr std::uint32_t kControlReceiveQueue = 2;
inline constexpr std::uint32_t kControlTransmitQueue = 3;
inline constexpr std::uint32_t kConfigSize = 12;       // struct virtio_console_config
inline constexpr std::uint32_t kControlHeaderSize = 8; // struct virtio_console_control

[[nodiscard]] constexpr std::uint32_t receive_queue(std::uint32_t port)
{
    return port == 0 ? 0 : 2 * (port + 1);
}
[[nodiscard]] constexpr std::uint32_t transmit_queue(std::uint32_t port)
{
    return receive_queue(port) + 1;
}

// One control message, either way.
struct ControlMessage {
    std::uint32_t id = 0;
    std::uint16_t event = 0;
    std::uint16_t value = 0;
    std::vector<std::byte> payload; // the name of PORT_NAME, the size of RESIZE

    [[nodiscard]] std::vector<std::byte> encode() const;
    // The header of `bytes` (payload left empty); nullopt if too short.
    static std::optional<ControlMessage> decode(std::span<const std::byte> bytes);
    friend bool operator==(const ControlMessage&, const ControlMessage&) = default;
};

class ConsoleDevice final : public backend::Device
{
  public:
    static constexpr std::uint32_t kQueueSize = 256;
    // Tokens of the fds the device watches on its workers.
    static constexpr std::uint64_t kHostInputToken = 1; // receiveq: the stream is readable
    static constexpr std::uint64_t kAcceptToken = 2;    // receiveq: a client waits
    static constexpr std::uint64_t kResizeToken = 3;    // receiveq 0: poll the pty size
    static constexpr std::uint64_t kRetryToken = 4;     // transmitq: retry a pending write
    static constexpr std::uint64_t kOutboxToken = 5;    // control receiveq: messages wait
    static constexpr std::uint64_t kWakeToken = 6;      // receiveq: the driver opened the port
    // At most this many messages wait for the driver's control buffers.
    static constexpr std::size_t kMaxOutbox = 256;

    static Result<std::unique_ptr<ConsoleDevice>> create(const ConsoleConfig& config,
                                                         Logger logger);

    [[nodiscard]] std::uint32_t num_queues() const override;
    [[nodiscard]] std::uint32_t max_queue_size() const override { return kQueueSize; }
    [[nodiscard]] std::uint64_t features() const override;
    [[nodiscard]] std::uint64_t protocol_features() const override;

    Result<std::vector<std::byte>> read_config(std::uint32_t offset, std::uint32_t size) override;
    Status write_config(std::uint32_t offset, std::span<const std::byte> data) override;
    Status set_features(std::uint64_t acked) override;
    void reset() override;
    void bind_notifier(backend::FrontendNotifier* notifier) override { notifier_ = notifier; }

    Status queue_started(backend::QueueContext& ctx) override;
    Status process_queue(backend::QueueContext& ctx) override;
    Status handle_event(backend::QueueContext& ctx, std::uint64_t token) override;
    void queue_stopped(backend::QueueContext& ctx) override;

    [[nodiscard]] std::uint32_t port_count() const noexcept
    {
        return static_cast<std::uint32_t>(ports_.size());
    }
    [[nodiscard]] const HostPort& host(std::uint32_t port) const { return *ports_[port].host; }
    // Messages waiting for control buffers (tests).
    [[nodiscard]] std::size_t outbox_size() const;
    // Checks port 0's pty size now (the receiveq 0 worker does every
    // kResizePeriod); sends what changed.
    Status check_resize();

  private:
    struct Port {
        std::unique_ptr<HostPort> host;
        UniqueFd retry_timer; // transmitq worker
        EventFd wake;         // receiveq worker: may_receive() became true
        // receiveq worker only: the fd watched there for the host side.
        int watched_fd = -1;
        // transmitq worker only.
        std::vector<std::byte> pending;
        bool warned_dropping = false;
        // Under mutex_.
        bool ready = false;      // the driver sent PORT_READY
        bool guest_open = false; // the driver's PORT_OPEN
        // What our last PORT_OPEN said; nullopt: unknown (a driver that an
        // earlier back-end announced the port to).
        std::optional<bool> told_open = false;
    };

    ConsoleDevice(const ConsoleConfig& config, Logger logger);
    [[nodiscard]] std::optional<std::uint32_t> port_of_queue(std::uint32_t queue) const;
    // Whether the driver takes bytes for port `index` now (see above).
    [[nodiscard]] bool may_receive(std::uint32_t index) const;

    // receiveq
    Status watch_host(backend::QueueContext& ctx, Port& port, int fd, std::uint64_t token);
    Status pump_receive(backend::QueueContext& ctx, std::uint32_t index);
    Status read_host(backend::QueueContext& ctx, std::uint32_t index);
    Status accept_host(backend::QueueContext& ctx, std::uint32_t index);
    // transmitq
    Status serve_transmit(backend::QueueContext& ctx, Port& port);
    void put(Port& port, std::span<const std::byte> data);
    bool flush(Port& port); // true when nothing waits
    Status retry_later(backend::QueueContext& ctx, Port& port);
    // control
    Status serve_control(backend::QueueContext& ctx);
    void handle_control(const ControlMessage& message);
    Status deliver_control(backend::QueueContext& ctx);
    void send_locked(ControlMessage message); // mutex_ held
    void announce_host_locked(std::uint32_t index, bool connected);
    void clear_outbox_locked();
    void forget_driver_locked();
    void rejoin_driver_locked();
    [[nodiscard]] ControlMessage resize_message_locked() const;
    template <class... Args> void bad_message(fmt::format_string<Args...> f, Args&&... args);

    ConsoleConfig config_;
    Logger logger_;
    std::vector<Port> ports_; // fixed at creation
    EventFd outbox_signal_;
    UniqueFd resize_timer_; // port 0 is a pty
    std::atomic<backend::FrontendNotifier*> notifier_{nullptr};
    std::size_t bad_messages_ = 0; // control transmitq worker

    mutable std::mutex mutex_; // protects the Port fields marked so, and:
    std::deque<std::vector<std::byte>> outbox_;
    std::uint64_t outbox_generation_ = 0; // bumped when the outbox is emptied
    std::optional<WindowSize> size_;
    bool multiport_ = false;
    bool device_ready_ = false;
};

} // namespace vl::console
