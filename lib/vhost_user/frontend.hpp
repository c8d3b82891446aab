// SPDX-License-Identifier: Apache-2.0
// The vhost-user front-end client: typed calls for the requests a front-end
// sends (used by virtio-loopback-adapter and the user-space test driver).
//
// Each call sends one request and checks the reply strictly (request number,
// flags, size, fds). When REPLY_ACK has been negotiated (set_protocol_features
// with it), every request without a reply of its own carries NEED_REPLY and
// the call waits for the ack, so an error surfaces on the call that caused
// it. Replies are awaited with a timeout (FrontendOptions) so a dead back-end
// cannot block the caller forever.
//
// Once the stream is out of step (timeout, malformed reply, closed socket)
// every later call fails with the first error: reconnect with a new
// Frontend. A back-end that merely refuses a request (failure ack, empty
// GET_CONFIG) leaves the connection usable.
//
// Not thread-safe: one caller at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "vhost_user/backend_handler.hpp"
#include "vhost_user/connection.hpp"
#include "vhost_user/message.hpp"
#include "vhost_user/protocol.hpp"

namespace vl::vhost_user
{

struct FrontendOptions {
    // Longest wait for one reply (GET_VRING_BASE may wait for in-flight I/O
    // in the back-end, so keep this generous). nullopt waits forever.
    std::optional<std::chrono::milliseconds> reply_timeout = std::chrono::seconds(10);
};

// A region to share and the fd it is mapped from (borrowed: the caller keeps
// owning it; the back-end receives its own copy).
struct SharedRegion {
    MemoryRegion region;
    int fd = -1;
};

// For set_vring_kick/call/err: no fd, the back-end polls (or the front-end
// does, for call/err).
inline constexpr int kNoFd = -1;

class Frontend
{
  public:
    explicit Frontend(Connection connection, FrontendOptions options = {});
    // connect_to(path), then a Frontend on the connection.
    static Result<Frontend> connect(const std::string& path, FrontendOptions options = {});

    // --- session and features ------------------------------------------
    Result<std::uint64_t> get_features();
    Status set_features(std::uint64_t features);
    // Only if get_features() has kFeatureProtocolFeatures.
    Result<std::uint64_t> get_protocol_features();
    // Also turns on REPLY_ACK handling for later calls if `features` has it.
    Status set_protocol_features(std::uint64_t features);
    Status set_owner();
    Status reset_owner();                  // deprecated by the spec; prefer reset_device()
    Status reset_device();                 // protocol feature RESET_DEVICE
    Result<std::uint64_t> get_queue_num(); // protocol feature MQ

    // --- config space (protocol feature CONFIG) ---------------------------
    // Reads `size` bytes (1..256, offset + size <= 256); a back-end whose
    // config space is shorter may answer with fewer. A back-end refusal
    // is an error (EIO) that leaves the connection usable.
    Result<std::vector<std::byte>> get_config(std::uint32_t offset, std::uint32_t size,
                                              ConfigFlags flags = ConfigFlags::writable);
    Status set_config(std::uint32_t offset, std::span<const std::byte> data,
                      ConfigFlags flags = ConfigFlags::writable);

    // --- memory ----------------------------------------------------------
    Status set_mem_table(std::span<const SharedRegion> regions); // 1..8 regions
    Result<std::uint64_t> get_max_mem_slots();                   // CONFIGURE_MEM_SLOTS
    Status add_mem_reg(const SharedRegion& region);
    Status rem_mem_reg(const MemoryRegion& region);

    // --- rings -------------------------------------------------------------
    Status set_vring_num(std::uint32_t index, std::uint32_t num);
    Status set_vring_addr(const VringAddr& addr);
    Status set_vring_base(std::uint32_t index, std::uint32_t base);
    // Stops the ring; returns the next available index the back-end would
    // have processed (to hand to set_vring_base on restart).
    Result<std::uint32_t> get_vring_base(std::uint32_t index);
    // `fd` is borrowed; kNoFd asks for polling. index must be <= 255.
    Status set_vring_kick(std::uint32_t index, int fd);
    Status set_vring_call(std::uint32_t index, int fd);
    Status set_vring_err(std::uint32_t index, int fd);
    Status set_vring_enable(std::uint32_t index, bool enable);

    // --- optional features -------------------------------------------------
    // BACKEND_REQ: `fd` (borrowed) is the back-end's end of a socket pair on
    // which it sends BackendRequests (backend_channel.hpp).
    Status set_backend_req_fd(int fd);
    // INFLIGHT_SHMFD: the back-end allocates the buffer; mmap_size 0 and no
    // fd mean it has none.
    Result<InflightFd> get_inflight_fd(std::uint16_t num_queues, std::uint16_t queue_size);
    Status set_inflight_fd(const InflightDescription& description, int fd);
    // STATUS.
    Status set_status(std::uint8_t status);
    Result<std::uint8_t> get_status();

    [[nodiscard]] std::uint64_t protocol_features() const noexcept { return protocol_features_; }
    [[nodiscard]] bool reply_ack_enabled() const noexcept
    {
        return has(protocol_features_, ProtocolFeature::reply_ack);
    }
    // The first error that put the stream out of step, if any.
    [[nodiscard]] std::optional<Error> broken() const
    {
        if (!broken_)
            return std::nullopt;
        return Error(broken_message_, broken_code_);
    }
    [[nodiscard]] Connection& connection() noexcept { return connection_; }

  private:
    // Sends a request without a reply body; with REPLY_ACK on, sets
    // NEED_REPLY and checks the ack.
    Status call(Request request, Message message, std::span<const int> fds = {});
    // Sends a request with a reply body and returns the reply, header checked.
    Result<Message> call_with_reply(Request request, Message message,
                                    std::span<const int> fds = {});
    Result<std::uint64_t> call_u64(Request request);
    Status set_vring_fd(Request request, std::uint32_t index, int fd);
    Status send(Request request, const Message& message, std::span<const int> fds);
    Result<Message> receive_reply(Request request);
    Status check_usable() const;
    // Remembers a stream-level error so later calls fail fast.
    Error break_with(Error error);

    Connection connection_;
    std::uint64_t protocol_features_ = 0;
    // The first stream-level error. (Not an optional<Error>: GCC 12 reports a
    // false maybe-uninitialized on moving one in sanitizer builds.)
    bool broken_ = false;
    std::string broken_message_;
    int broken_code_ = 0;
};

} // namespace vl::vhost_user
