// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "adapter_queue.hpp"
#include "base/event_fd.hpp"
#include "base/event_loop.hpp"
#include "base/log.hpp"
#include "base/mapping.hpp"
#include "base/result.hpp"
#include "loopback/control_file.hpp"
#include "net_control.hpp"
#include "options.hpp"
#include "vhost_user/connection.hpp"
#include "vhost_user/frontend.hpp"
#include "virtqueue/guest_memory.hpp"

namespace vl::adapter
{

struct LinkSettings {
    std::string control_path;
    std::chrono::milliseconds connect_timeout;
    std::chrono::milliseconds reconnect_grace;
    std::chrono::milliseconds stall_timeout; // 0: no watchdog
    std::uint32_t reply_timeout_ms;
    // When the adapter started (main()): the origin of the set-up timeline.
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

// When each step of setting up a kernel device ended, for the info line
// that says where set-up time goes (make bench reads it). Times are from
// `start`: the adapter's start for the first device, the reconnection
// attempt for a device created again.
struct SetupTimeline {
    using Clock = std::chrono::steady_clock;
    Clock::time_point start;
    Clock::time_point connected;  // the back-end's socket
    Clock::time_point negotiated; // stage 1: features, protocol features, owner
    Clock::time_point created;    // stage 2: queue count, config, CREATE, START
    Clock::time_point probed;     // the driver wrote DRIVER_OK
    // "connected 1.2 ms, negotiated 3.4 ms, ..., rings handed over 9.9 ms"
    [[nodiscard]] std::string describe(Clock::time_point ready) const;
};

// One vhost-user back-end wired to one device of the transport.
//
// Stage 1 (connect): read the back-end's features, protocol features, queue
// count and config. Stage 2 (create): create the transport device with them
// and answer its messages. Stage 3 (on DRIVER_OK): hand the back-end the
// negotiated features, the DMA window as its memory table, and per queue
// the ring addresses and the kick/call eventfds the kernel already holds.
// Right after answering DRIVER_OK, so that the driver's probe goes on
// meanwhile; before answering for drivers that busy-wait for the device
// once they are ready (driver_polls_device(): virtio-console). From then
// on the doorbells go straight between kernel and back-end; the link only
// wakes up for control messages, config changes and loss.
//
// One queue may be the adapter's own: virtio-net's control queue, which a
// vhost-user front-end serves (the back-end never sees it). With more than
// one receive/transmit pair the link offers it and maps the device's window
// to serve it. A thread of its own answers the driver's MQ_VQ_PAIRS_SET at
// once (the driver may spin on its CPU meanwhile); the event loop then
// enables that many pairs in the back-end (VHOST_USER_SET_VRING_ENABLE).
//
// Back-end loss: a closed socket, or a back-end that completes nothing for
// the stall timeout while requests are pending (a stopped or wedged
// process: the watchdog reads the kernel's view of each queue every
// second). The kernel device stays while the link reconnects; the
// kernel puts the requests the lost back-end had not completed back in
// the available rings and the new back-end resumes from there. After the
// grace period the device is removed (its pending requests fail) and the
// link waits for the back-end to create a fresh one.
class DeviceLink
{
  public:
    DeviceLink(DeviceSpec spec, LinkSettings settings, EventLoop& loop, Logger log);
    ~DeviceLink();
    DeviceLink(const DeviceLink&) = delete;
    DeviceLink& operator=(const DeviceLink&) = delete;

    // Starts connecting; `on_fatal` is called if the link gives up for good,
    // `on_created` when the kernel device is first created.
    void start(std::function<void(const Error&)> on_fatal, std::function<void()> on_created = {});
    // Removes the device and disconnects (SIGTERM).
    void shutdown();

    [[nodiscard]] const DeviceSpec& spec() const { return spec_; }

  private:
    enum class State {
        connecting,   // no back-end, no kernel device
        running,      // both; rings may or may not be started
        disconnected, // kernel device kept, back-end lost, reconnecting
        stopped,
    };

    // stage 1
    void try_connect();
    Status connect_backend();
    Status negotiate();
    Status setup_backend_channel();
    // stage 2
    Status create_device();
    // transport messages
    void on_control_event(std::uint32_t events);
    Status answer_messages();
    Status handle_message(const virtio_loopback_msg& msg);
    Status on_status(std::uint32_t status, std::uint64_t driver_features);
    Status on_reset();
    Status on_config_write(std::uint32_t offset, std::span<const std::byte> data);
    Status refresh_config(bool notify);
    // stage 3
    Status start_rings(bool resume);
    Status stop_rings();
    // the queue the adapter serves (net's control queue)
    void plan_queue_layout();
    Status start_control_queue();
    void stop_control_queue();
    void on_control_failed();
    void on_pairs_changed();
    Status apply_queue_pairs();
    [[nodiscard]] bool ring_enabled(std::uint32_t index, std::uint16_t pairs) const;
    void restart_device(const Error& why);
    // back-end events and loss
    void on_backend_event(std::uint32_t events);
    void on_backend_channel_event(std::uint32_t events);
    void backend_lost(const Error& why);
    void retry_later(std::chrono::milliseconds delay);
    void on_grace_expired();
    void arm_watchdog();
    void disarm_watchdog();
    void on_watchdog_tick();
    void drop_backend();
    void remove_device();
    void fail(const Error& why);

    DeviceSpec spec_;
    LinkSettings settings_;
    EventLoop& loop_;
    Logger log_;
    std::function<void(const Error&)> on_fatal_;
    std::function<void()> on_created_;
    State state_ = State::connecting;
    bool ever_connected_ = false; // the connect timeout applies before that
    std::chrono::steady_clock::time_point connect_deadline_;
    std::optional<EventLoop::TimerId> retry_timer_;
    std::optional<EventLoop::TimerId> grace_timer_;
    std::optional<EventLoop::TimerId> watchdog_timer_;
    std::vector<std::uint16_t> watched_used_;        // per queue, at the last tick
    std::vector<std::chrono::milliseconds> stalled_; // per queue

    // Back-end side.
    std::optional<vhost_user::Frontend> backend_;
    std::optional<vhost_user::Connection> backend_channel_;
    std::uint64_t backend_features_ = 0;
    std::uint64_t protocol_features_ = 0;

    // Transport side.
    std::optional<loopback::ControlFile> control_;
    loopback::WindowFd window_;
    std::vector<EventFd> kicks_;
    std::vector<EventFd> calls_;
    std::uint32_t num_queues_ = 0;
    std::uint64_t offered_features_ = 0; // what the kernel device offers
    std::uint64_t driver_features_ = 0;  // what its driver accepted
    bool driver_ok_ = false;
    bool rings_due_ = false; // DRIVER_OK answered: start the rings next
    bool rings_started_ = false;

    // Queues the back-end serves: 0..backend_queues_-1 (set at FEATURES_OK
    // from what the driver took; all of them but the adapter's own).
    std::uint32_t backend_queues_ = 0;
    // The adapter's own queue, when the device has one (net's control queue
    // with more than one pair): its index as planned, and as the driver
    // uses it (after the pairs it took).
    std::optional<std::uint32_t> planned_control_;
    std::optional<std::uint32_t> control_index_;
    std::uint64_t adapter_features_ = 0; // offered bits the adapter implements
    std::uint16_t max_pairs_ = 1;
    // Pairs the driver asked for (MQ_VQ_PAIRS_SET, written by the control
    // queue's thread; 1 after a reset) and pairs enabled in the back-end.
    std::atomic<std::uint16_t> wanted_pairs_{1};
    std::uint16_t backend_pairs_ = 1;
    EventFd pairs_changed_;    // the control queue's thread: wanted_pairs_ moved
    bool control_due_ = false; // DRIVER_OK answered: serve the queue next
    Mapping window_map_;       // the window, to reach the control queue
    virtq::GuestMemory window_memory_;
    // Declared before the thread that uses it, so destroyed after it.
    std::optional<NetControl> net_control_;
    std::unique_ptr<AdapterQueueThread> control_thread_;
    SetupTimeline timeline_;
    bool timeline_reported_ = false; // for this kernel device
};

} // namespace vl::adapter
