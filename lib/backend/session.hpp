// SPDX-License-Identifier: Apache-2.0
// The back-end side of the vhost-user protocol for one front-end
// connection: the state machine of features, memory and rings, built on
// the protocol library's BackendHandler (one method per request) and
// driving a Device (device.hpp) and its queue workers.
//
// Rings follow the spec's "Ring states": a ring is started by
// SET_VRING_KICK and stopped by GET_VRING_BASE; it is enabled by
// SET_VRING_ENABLE (or at once when VHOST_USER_F_PROTOCOL_FEATURES is not
// negotiated). Its worker runs while it is started and enabled and has a
// size, addresses and memory, whatever order these arrived in. A started
// ring processes what is available at once, without waiting for a kick.
//
// Errors come in two kinds. A refusal (an optional feature the front-end
// uses without negotiating it, polling mode) is reported to the front-end
// (failure ack) and the session goes on; without REPLY_ACK the dispatcher
// has to close the connection for it. A protocol violation (a malformed
// memory table, a ring outside memory, an impossible ring size or index)
// is logged and closes the connection after the reply, whatever the
// front-end asked for.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "backend/device.hpp"
#include "backend/frontend_notifier.hpp"
#include "backend/inflight.hpp"
#include "backend/memory_table.hpp"
#include "backend/queue_context.hpp"
#include "backend/queue_worker.hpp"
#include "base/log.hpp"
#include "base/result.hpp"
#include "vhost_user/backend_handler.hpp"
#include "vhost_user/connection.hpp"

namespace vl::backend
{

struct SessionOptions {
    // How long stopping a ring waits for chains in flight (GET_VRING_BASE,
    // disconnect); see device.hpp "Stopping".
    std::chrono::milliseconds drain_timeout{10000};
    // A message whose first bytes arrived must be complete within this (a
    // front-end stuck in the middle of a message cannot hold us forever).
    std::chrono::milliseconds message_timeout{10000};
    // GET_MAX_MEM_SLOTS: how many regions ADD_MEM_REG may build up.
    std::uint32_t max_mem_slots = 64;
    // How long a queue's worker busy-polls for work before it sleeps
    // (WorkerSetup::poll_time); 0 sleeps at once.
    std::chrono::microseconds poll_time{0};
};

// What vhost-user can express of a device: 1 to 256 queues (ring indices
// are 8 bits in SET_VRING_KICK/CALL/ERR) of at most 32768 entries.
Status check_device(const Device& device);

// The protocol features the framework implements for every device.
[[nodiscard]] std::uint64_t framework_protocol_features();
// The virtio features offered for `device`: its own plus the framework's.
[[nodiscard]] std::uint64_t offered_features(const Device& device);

class Session final : public vhost_user::BackendHandler
{
  public:
    // `device` and `notifier` outlive the session.
    Session(Device& device, FrontendNotifier& notifier, SessionOptions options, Logger logger);
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    // Stops every ring, detaches the back-end channel, resets the device;
    // then the memory is unmapped and every fd closed.
    ~Session() override;

    // The first protocol violation, if any: close the connection.
    [[nodiscard]] const std::optional<Error>& violation() const noexcept { return violation_; }

    // ---- vhost_user::BackendHandler ----
    Status set_owner() override;
    Status reset_owner() override;
    Status reset_device() override;
    Result<std::uint64_t> get_features() override;
    Status set_features(std::uint64_t features) override;
    Result<std::uint64_t> get_protocol_features() override;
    Status set_protocol_features(std::uint64_t features) override;
    Result<std::uint64_t> get_queue_num() override;
    Status set_mem_table(std::vector<vhost_user::RegionFd> regions) override;
    Result<std::uint64_t> get_max_mem_slots() override;
    Status add_mem_region(vhost_user::RegionFd region) override;
    Status remove_mem_region(const vhost_user::MemoryRegion& region) override;
    Status set_vring_num(std::uint32_t index, std::uint32_t num) override;
    Status set_vring_addr(const vhost_user::VringAddr& addr) override;
    Status set_vring_base(std::uint32_t index, std::uint32_t base) override;
    Result<std::uint32_t> get_vring_base(std::uint32_t index) override;
    Status set_vring_kick(std::uint32_t index, UniqueFd fd) override;
    Status set_vring_call(std::uint32_t index, UniqueFd fd) override;
    Status set_vring_err(std::uint32_t index, UniqueFd fd) override;
    Status set_vring_enable(std::uint32_t index, bool enable) override;
    Result<std::vector<std::byte>> get_config(std::uint32_t offset, std::uint32_t size,
                                              vhost_user::ConfigFlags flags) override;
    Status set_config(std::uint32_t offset, std::span<const std::byte> data,
                      vhost_user::ConfigFlags flags) override;
    Status set_backend_req_fd(UniqueFd socket) override;
    Result<vhost_user::InflightFd> get_inflight_fd(std::uint16_t num_queues,
                                                   std::uint16_t queue_size) override;
    Status set_inflight_fd(const vhost_user::InflightDescription& description,
                           UniqueFd fd) override;
    Status set_status(std::uint8_t status) override;
    Result<std::uint8_t> get_status() override;

  private:
    struct Ring {
        std::uint32_t num = 0; // 0: not set yet
        std::optional<vhost_user::VringAddr> addr;
        std::uint16_t base = 0; // next available index (SET/GET_VRING_BASE)
        UniqueFd kick;          // valid while the ring is started
        bool enabled = false;
        RingSignal call;
        RingSignal err;
        std::optional<InflightQueue> inflight;
        std::unique_ptr<QueueWorker> worker; // while it runs
    };

    // Records the first violation and returns it (see the file comment).
    Error violation(Error error);
    Result<Ring*> ring_at(std::uint32_t index);
    [[nodiscard]] bool negotiated(vhost_user::ProtocolFeature feature) const;
    [[nodiscard]] bool should_run(const Ring& ring) const;

    Status start_ring(std::uint32_t index);
    void stop_ring(std::uint32_t index);
    void stop_all_rings();
    // Starts or stops the ring's worker to match its state.
    Status reconcile(std::uint32_t index);
    Status reconcile_all();
    // Applies a change to a ring with its worker stopped, then restarts it
    // if it should run.
    template <class Change> Status change_ring(std::uint32_t index, Change&& change);
    // Applies a change with every worker stopped (memory, features, ...).
    template <class Change> Status with_rings_stopped(Change&& change);

    struct RingAddresses {
        std::uint64_t desc = 0;
        std::uint64_t avail = 0;
        std::uint64_t used = 0;
    };
    Result<RingAddresses> translate_ring(std::uint32_t index, std::uint32_t num,
                                         const vhost_user::VringAddr& addr) const;
    Result<std::uint64_t> ring_part(std::uint32_t index, const char* part, std::uint64_t user_addr,
                                    std::uint64_t bytes) const;
    Result<std::deque<virtq::DescriptorChain>> recover_inflight(std::uint32_t index, Ring& ring,
                                                                virtq::SplitQueue& queue);

    Device& device_;
    FrontendNotifier& notifier_;
    SessionOptions options_;
    Logger logger_;
    std::uint64_t acked_features_ = 0;
    bool features_set_ = false;
    std::uint64_t protocol_features_ = 0;
    bool owner_set_ = false;
    bool channel_attached_ = false;
    std::uint8_t status_ = 0;
    MemoryTable memory_;
    std::optional<InflightBuffer> inflight_;
    std::vector<std::unique_ptr<Ring>> rings_;
    std::optional<Error> violation_;
};

// Serves one front-end on `connection` until it disconnects or a fd in
// `stop_fds` becomes readable (both: ok), or until a protocol error or
// violation (returned; the connection is closed either way). The device
// must pass check_device(). Every ring is
// stopped and the device reset before it returns.
Status serve_connection(Device& device, vhost_user::Connection connection,
                        FrontendNotifier& notifier, std::span<const int> stop_fds,
                        const SessionOptions& options, const Logger& logger);

} // namespace vl::backend
