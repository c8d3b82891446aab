// SPDX-License-Identifier: Apache-2.0
// The one interface a vhost-user device implements (after rust-vmm's
// VhostUserBackend). The framework (session.hpp, daemon.hpp) speaks the
// vhost-user protocol, maps memory, runs one worker thread per queue and
// hands the device only typed, validated things: a device never sees a raw
// vhost-user message.
//
// A minimal device implements num_queues(), max_queue_size(), features()
// and process_queue(); everything else has a default.
//
// ---------------------------------------------------------------------------
// Threading contract
//
// There are two kinds of thread:
//
//  - the control thread, which serves the vhost-user connection. It calls
//    the "control" methods below. Only one control call runs at a time.
//
//  - one worker thread per running queue. A queue runs while the front-end
//    has given it memory, size, addresses and a kick eventfd, and has it
//    enabled (vhost-user "started and enabled"). Worker N calls the "queue"
//    methods for queue N only, one at a time, always with the same
//    QueueContext, from queue_started() to queue_stopped(). Workers of
//    different queues run in parallel.
//
// Control methods may run while workers run, except where a method says
// "every queue is stopped": then no worker exists and none starts until the
// call returns. State that a control method and a worker both touch (a
// config field a request reads, say) is the device's to synchronize.
//
// A QueueContext and the SplitQueue and descriptor chains inside it belong
// to their worker thread: use them only inside the queue callbacks. A
// device may keep a pointer to the context from queue_started() until
// queue_stopped() returns, and use it in later callbacks on that thread.
//
// Asynchronous completion (io_uring, a thread pool, a timer): the device
// registers an fd with QueueContext::watch(fd, token) - an io_uring's
// eventfd, an eventfd its own threads write, a timerfd. When the fd becomes
// readable the worker calls handle_event(ctx, token) on the worker thread,
// and there the device reaps its completions and calls ctx.push(). Other
// threads never touch the queue; they only make a watched fd readable.
// Watched fds are level-triggered: drain them in handle_event().
//
// After every queue callback the worker signals the front-end's call
// eventfd if the driver wants an interrupt for what was pushed (EVENT_IDX
// or the NO_INTERRUPT flag, via SplitQueue::needs_notification()); a
// device may call ctx.notify() earlier, e.g. in the middle of a long batch.
//
// Flow control: process_queue() must take every available chain, unless it
// pauses the queue (ctx.pause(): the worker stops calling process_queue()
// on kicks) and later resumes it (ctx.resume() from handle_event(), after
// which the worker calls process_queue() again). A device that returns with
// chains left available and without pausing is paused by the worker (with
// a warning), so a device bug cannot spin a CPU. A device that fills
// buffers only when something happens (input events, a rate limit) leaves
// them in the ring and pauses, rather than popping and holding them: held
// chains delay every stop by the grace period below.
//
// Stopping (GET_VRING_BASE, disabling the ring, a new memory table, reset,
// disconnect): the worker stops calling process_queue(), keeps delivering
// handle_event() until no chain is in flight or a grace period
// (SessionOptions::drain_timeout, 10 s by default) ends, then
// calls queue_stopped(). When queue_stopped() returns the device must have
// finished or cancelled all work on that queue's chains: their buffers
// point into memory that may be unmapped right after. Chains still in
// flight then are not returned to the driver; with inflight tracking
// (INFLIGHT_SHMFD) they are resubmitted when a front-end restarts the ring.
//
// Callbacks must not block for long (no unbounded waits): the control
// thread waits for workers when it stops queues.
//
// A queue whose driver breaks the ring rules (a loop, a buffer outside
// memory, ...) is marked broken by SplitQueue: the worker logs it, signals
// the ring's error eventfd, and stops serving that queue; other queues and
// the connection go on. An error returned by process_queue() or
// handle_event() does the same for that queue (use it for failures the
// device cannot report through the device protocol itself).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "backend/queue_context.hpp"
#include "base/result.hpp"
#include "virtqueue/guest_memory.hpp"

namespace vl::backend
{

// Virtio feature bits the framework offers for every device.
inline constexpr std::uint64_t kFeatureIndirectDesc = std::uint64_t{1} << 28;
inline constexpr std::uint64_t kFeatureEventIdx = std::uint64_t{1} << 29;
inline constexpr std::uint64_t kFeatureVersion1 = std::uint64_t{1} << 32;

class FrontendNotifier;

class Device
{
  public:
    virtual ~Device() = default;

    // ---- what the device is (control thread; constant) ----------------

    // Number of virtqueues (GET_QUEUE_NUM); at most 256.
    [[nodiscard]] virtual std::uint32_t num_queues() const = 0;
    // Largest ring size a front-end may set (a power of two, <= 32768).
    [[nodiscard]] virtual std::uint32_t max_queue_size() const = 0;
    // Device-specific virtio feature bits (VIRTIO_BLK_F_*, ...). The
    // framework adds VERSION_1, EVENT_IDX, INDIRECT_DESC and vhost-user's
    // PROTOCOL_FEATURES bit.
    [[nodiscard]] virtual std::uint64_t features() const = 0;
    // vhost-user protocol features the device needs beyond the framework's
    // own: set bit(ProtocolFeature::config) (vhost_user/protocol.hpp) if the
    // device has a config space (read_config/write_config).
    [[nodiscard]] virtual std::uint64_t protocol_features() const { return 0; }
    // Most buffer descriptors one chain may have (direct plus indirect); 0
    // means the ring size. Raise it if the device advertises a segment
    // limit larger than the ring (virtio-blk seg_max).
    [[nodiscard]] virtual std::uint32_t max_chain_length() const { return 0; }

    // ---- control methods ----------------------------------------------

    // The virtio config space: return exactly `size` bytes at `offset`
    // (offset + size <= 256). Only called if protocol_features() has CONFIG.
    // A device that builds its whole config space returns slice_config().
    virtual Result<std::vector<std::byte>> read_config(std::uint32_t offset, std::uint32_t size);
    // A driver's write to the config space; may change what later reads
    // return (virtio-input's select/subsel). Refuse read-only fields.
    virtual Status write_config(std::uint32_t offset, std::span<const std::byte> data);

    // The features the front-end acknowledged (all bits, including the
    // framework's), a subset of what was offered. Called when the value
    // changes, with every queue stopped.
    virtual Status set_features(std::uint64_t acked)
    {
        (void)acked;
        return ok_status();
    }

    // The guest memory table changed (mapped, validated). Every queue is
    // stopped; they restart on the new memory afterwards.
    virtual void memory_changed(const virtq::GuestMemory& memory) { (void)memory; }

    // Back to the initial state: the front-end reset the device or
    // disconnected. Every queue is stopped.
    virtual void reset() {}

    // Where the device sends notifications to the front-end (config space
    // changed). Called once with the daemon's notifier before it serves,
    // and with nullptr before the notifier goes away.
    virtual void bind_notifier(FrontendNotifier* notifier) { (void)notifier; }

    // ---- queue methods (worker thread of ctx.index()) ------------------

    // The queue runs from now on. Watch the device's event fds here. An
    // error stops the queue from being served (logged).
    virtual Status queue_started(QueueContext& ctx)
    {
        (void)ctx;
        return ok_status();
    }

    // The driver made buffers available (or the queue started or resumed):
    // take chains with ctx.pop(), complete them with ctx.push().
    virtual Status process_queue(QueueContext& ctx) = 0;

    // A watched fd became readable; `token` is what watch() was given.
    virtual Status handle_event(QueueContext& ctx, std::uint64_t token)
    {
        (void)ctx;
        (void)token;
        return ok_status();
    }

    // The queue stops: finish or cancel all work on its chains before
    // returning (see "Stopping" above). Its watched fds are unwatched.
    virtual void queue_stopped(QueueContext& ctx) { (void)ctx; }

  protected:
    Device() = default;
    Device(const Device&) = default;
    Device& operator=(const Device&) = default;
};

// The `size` bytes at `offset` of a device's whole config space, or an
// error naming the device (`what`: "virtio-blk", ...) when the read falls
// outside it.
Result<std::vector<std::byte>> slice_config(std::span<const std::byte> config, std::uint32_t offset,
                                            std::uint32_t size, std::string_view what);

} // namespace vl::backend
