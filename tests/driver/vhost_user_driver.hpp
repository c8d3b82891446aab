// SPDX-License-Identifier: Apache-2.0
// A user-space virtio driver for any vhost-user back-end: the front-end
// half of a VM, without the VM. It connects to a back-end's socket,
// negotiates, shares guest memory (a memfd), sets up split virtqueues in it
// and then submits buffers and collects used ones, with every wait bounded.
// Used for request-level tests of our back-ends, interoperability tests
// against third-party ones (qemu-storage-daemon) and host-side benchmarks.
//
// Life cycle (each step can fail with an Error saying what failed):
//   auto d = VhostUserDriver::connect(socket, connect_options, logger);
//       GET_FEATURES, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES,
//       GET_QUEUE_NUM (with MQ), SET_OWNER; creates the guest memory.
//   d->get_config(offset, size);            any time after connect
//   d->start(start_options);                SET_FEATURES, SET_MEM_TABLE,
//       per queue SET_VRING_NUM/BASE/ADDR/CALL/KICK, SET_VRING_ENABLE
//   Buffer b = d->allocate(4096);           guest memory for requests
//   d->submit(queue, readable, writable);   add a chain, kick if needed
//   d->wait_used(queue, timeout);           block on the call eventfd
//   d->stop();                              disable rings, GET_VRING_BASE
// Destroying the driver closes the connection (a back-end treats that as
// the front-end going away).
//
// Not thread-safe: one thread drives one driver (use several drivers, or
// external locking, for several threads).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/event_fd.hpp"
#include "base/log.hpp"
#include "base/result.hpp"
#include "guest_pool.hpp"
#include "vhost_user/frontend.hpp"
#include "virtqueue/split_driver.hpp"

namespace vl::test_driver
{

// Virtio feature bits the driver handles itself (transport features).
inline constexpr unsigned kFeatureVersion1 = 32;       // VIRTIO_F_VERSION_1
inline constexpr unsigned kFeatureAccessPlatform = 33; // VIRTIO_F_ACCESS_PLATFORM
inline constexpr unsigned kFeatureRingPacked = 34;     // VIRTIO_F_RING_PACKED

[[nodiscard]] constexpr std::uint64_t feature_bit(unsigned bit) noexcept
{
    return std::uint64_t{1} << bit;
}
[[nodiscard]] constexpr bool has_feature(std::uint64_t features, unsigned bit) noexcept
{
    return (features & feature_bit(bit)) != 0;
}

// Device-specific feature bits (virtio 1.2, 6: bits 0-23 and 50-63); the
// rest are transport and ring features that the driver decides on itself.
inline constexpr std::uint64_t kDeviceFeatureMask =
    ((std::uint64_t{1} << 24) - 1) | ~((std::uint64_t{1} << 50) - 1);

// The vhost-user protocol features the driver knows how to use; the
// negotiated set is this intersected with what the back-end offers.
inline constexpr std::uint64_t kSupportedProtocolFeatures =
    vhost_user::bit(vhost_user::ProtocolFeature::mq) |
    vhost_user::bit(vhost_user::ProtocolFeature::reply_ack) |
    vhost_user::bit(vhost_user::ProtocolFeature::config);

struct ConnectOptions {
    // How long one vhost-user reply may take (GET_VRING_BASE may wait for
    // in-flight I/O, so not too short).
    std::chrono::milliseconds reply_timeout{5000};
    // Guest memory: size (rounded up to pages) and guest physical base.
    // The base is deliberately not 0 and not the mapping's address, so a
    // back-end that uses guest addresses where user addresses belong (or
    // the reverse) touches nothing valid and fails.
    std::uint64_t memory_bytes = std::uint64_t{64} << 20;
    std::uint64_t guest_base = std::uint64_t{1} << 30;
    // Guest memory whose pages cannot be pinned (GuestPool::Backing::
    // unpinnable), like the transport's zero-copy pages.
    bool unpinnable_memory = false;
    // Protocol features to request (intersected with what the back-end
    // offers and kSupportedProtocolFeatures). Tests clear bits to exercise
    // the paths without REPLY_ACK, MQ or CONFIG.
    std::uint64_t protocol_features = kSupportedProtocolFeatures;
};

struct StartOptions {
    // Device-specific feature bits the caller accepts (kDeviceFeatureMask
    // applies); the driver acks those the back-end offers.
    std::uint64_t device_features = 0;
    // Queues to set up, indices 0 .. queue_count - 1. With MQ this must not
    // exceed max_queues().
    std::uint32_t queue_count = 1;
    // Entries per queue: a power of two, 1 .. 32768.
    std::uint32_t queue_size = 128;
    // Ring features: accepted only if offered.
    bool event_idx = true;
    bool indirect_desc = true;
    // Entries per indirect table. A chain of 2 .. this many buffers goes
    // into one indirect descriptor when INDIRECT_DESC was negotiated;
    // longer ones (and single buffers) use direct descriptors.
    std::uint32_t indirect_entries = 32;
};

// What was negotiated, for logs and assertions.
struct Negotiated {
    std::uint64_t offered_features = 0;          // GET_FEATURES
    std::uint64_t acked_features = 0;            // SET_FEATURES (after start)
    std::uint64_t offered_protocol_features = 0; // GET_PROTOCOL_FEATURES (0 if none)
    std::uint64_t protocol_features = 0;         // SET_PROTOCOL_FEATURES
    std::optional<std::uint32_t> max_queues;     // GET_QUEUE_NUM (MQ only)
};

class VhostUserDriver
{
  public:
    // Connects to the back-end listening on `socket_path` and negotiates
    // the session (see the file comment).
    static Result<VhostUserDriver> connect(const std::string& socket_path,
                                           const ConnectOptions& options, Logger logger);
    // The same on an already connected socket (tests use socket pairs).
    static Result<VhostUserDriver> connect(vhost_user::Connection connection,
                                           const ConnectOptions& options, Logger logger);

    VhostUserDriver(VhostUserDriver&&) noexcept;
    VhostUserDriver& operator=(VhostUserDriver&&) noexcept;
    VhostUserDriver(const VhostUserDriver&) = delete;
    VhostUserDriver& operator=(const VhostUserDriver&) = delete;
    ~VhostUserDriver();

    // ---- session ---------------------------------------------------------
    [[nodiscard]] const Negotiated& negotiated() const noexcept { return negotiated_; }
    [[nodiscard]] std::uint64_t offered_features() const noexcept
    {
        return negotiated_.offered_features;
    }
    [[nodiscard]] std::uint64_t acked_features() const noexcept
    {
        return negotiated_.acked_features;
    }
    [[nodiscard]] std::optional<std::uint32_t> max_queues() const noexcept
    {
        return negotiated_.max_queues;
    }
    [[nodiscard]] bool has_protocol_feature(vhost_user::ProtocolFeature f) const noexcept
    {
        return vhost_user::has(negotiated_.protocol_features, f);
    }

    // Device config space (protocol feature CONFIG): `size` bytes at
    // `offset` (offset + size <= 256). ENOTSUP without CONFIG.
    Result<std::vector<std::byte>> get_config(std::uint32_t offset, std::uint32_t size);
    Status set_config(std::uint32_t offset, std::span<const std::byte> data);

    // ---- queues ----------------------------------------------------------
    // Acks features and sets up the queues (see the file comment). Once.
    Status start(const StartOptions& options);
    [[nodiscard]] bool started() const noexcept { return !queues_.empty(); }
    [[nodiscard]] std::uint32_t queue_count() const noexcept
    {
        return static_cast<std::uint32_t>(queues_.size());
    }
    [[nodiscard]] std::uint32_t queue_size() const noexcept { return start_options_.queue_size; }
    [[nodiscard]] bool event_idx() const noexcept;
    [[nodiscard]] bool indirect_desc() const noexcept;

    // A buffer in guest memory (zero-filled). Buffers may outlive the
    // driver; they keep the memory mapped.
    Result<Buffer> allocate(std::uint64_t size, std::uint64_t align = 64);
    [[nodiscard]] const std::shared_ptr<GuestPool>& pool() const noexcept { return pool_; }

    // Makes one chain (device-readable buffers, then device-writable ones)
    // available on `queue` and kicks the back-end if it asked for kicks.
    // Returns the chain's head, which wait_used() reports back. Errors:
    // not started, bad queue, empty chain, buffers outside guest memory
    // (EINVAL), EAGAIN when the ring has too few free descriptors right now
    // (collect used buffers first).
    Result<std::uint16_t> submit(std::uint32_t queue, std::span<const virtq::GuestBuffer> readable,
                                 std::span<const virtq::GuestBuffer> writable);
    // As submit(), without the kick: for batches, then kick(queue) once.
    Result<std::uint16_t> add(std::uint32_t queue, std::span<const virtq::GuestBuffer> readable,
                              std::span<const virtq::GuestBuffer> writable);
    // Signals the queue's kick eventfd if the back-end wants a kick for
    // what was added since the last check.
    Status kick(std::uint32_t queue);
    // Copies `bytes` (at least one) into a fresh buffer, makes it available
    // on `queue` as one device-readable descriptor and waits up to
    // `timeout` until the device returned it: a message on a transmit or
    // control queue, sent and waited for one at a time. EPROTO if the
    // device returns another chain first (keep nothing else in flight on
    // that queue).
    Status send_and_wait(std::uint32_t queue, std::span<const std::byte> bytes,
                         std::chrono::milliseconds timeout);

    // The next used buffer of `queue`, waiting up to `timeout` on the
    // queue's call eventfd. Errors: ETIMEDOUT (names the queue and how many
    // requests are in flight), ECONNRESET if the back-end closed the
    // connection meanwhile, EPROTO if the back-end broke the ring rules (the
    // queue stays broken), EINVAL if nothing is in flight.
    Result<virtq::UsedBuffer> wait_used(std::uint32_t queue, std::chrono::milliseconds timeout);
    // The next used buffer if there is one now (no waiting).
    Result<std::optional<virtq::UsedBuffer>> poll_used(std::uint32_t queue);

    [[nodiscard]] std::uint32_t in_flight(std::uint32_t queue) const;
    [[nodiscard]] std::uint32_t free_descriptors(std::uint32_t queue) const;

    // The raw ring of a started queue (std::out_of_range for a bad index),
    // for tests that misbehave on purpose: buffers outside guest memory,
    // chains the checks of add() would refuse.
    [[nodiscard]] virtq::SplitDriver& ring(std::uint32_t queue);

    // ---- teardown --------------------------------------------------------
    // Disables every ring (with protocol features) and stops it with
    // GET_VRING_BASE; returns the back-end's next available index per
    // queue, which equals the number of chains submitted (mod 2^16) when it
    // consumed everything. Requests still in flight are abandoned (their
    // buffers stay allocated until the caller drops them). After stop()
    // the queues are gone; start() is not allowed again.
    Result<std::vector<std::uint32_t>> stop();
    // Closes the connection (stopping first is the polite order).
    void disconnect() noexcept;

    // The raw client, for tests that want to send requests of their own.
    [[nodiscard]] vhost_user::Frontend& frontend() noexcept { return frontend_; }
    [[nodiscard]] const Logger& logger() const noexcept { return logger_; }

  private:
    struct Queue {
        std::uint32_t index = 0;
        Buffer ring_memory;
        std::optional<virtq::SplitDriver> ring; // always set once made
        EventFd kick;
        EventFd call;
    };

    VhostUserDriver(vhost_user::Frontend frontend, std::shared_ptr<GuestPool> pool, Logger logger);

    Status negotiate(const ConnectOptions& options);
    Result<std::uint64_t> features_to_ack(const StartOptions& options) const;
    Status share_memory();
    Result<Queue> make_queue(std::uint32_t index);
    Status program_queue(Queue& queue);
    Result<Queue*> queue_at(std::uint32_t index);
    [[nodiscard]] const Queue* queue_at(std::uint32_t index) const noexcept;
    Status check_in_memory(std::span<const virtq::GuestBuffer> buffers) const;
    Status wait_for_call(Queue& queue, std::chrono::steady_clock::time_point deadline,
                         std::chrono::milliseconds timeout);
    [[nodiscard]] int socket_fd() noexcept;

    vhost_user::Frontend frontend_;
    std::shared_ptr<GuestPool> pool_;
    Logger logger_;
    Negotiated negotiated_;
    StartOptions start_options_;
    std::vector<Queue> queues_;
    bool stopped_ = false;
};

// A device feature bit's name, for feature_names().
struct FeatureName {
    unsigned bit;
    const char* name;
};

// "SEG_MAX FLUSH VERSION_1 EVENT_IDX bit40": the names of the bits set in
// `features`, transport bits named by the driver, device bits from
// `device_names`, anything else as bit<n>. For logs and info commands.
std::string feature_names(std::uint64_t features, std::span<const FeatureName> device_names = {});
// "MQ REPLY_ACK CONFIG ..." for vhost-user protocol features.
std::string protocol_feature_names(std::uint64_t features);

} // namespace vl::test_driver
