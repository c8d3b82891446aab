// SPDX-License-Identifier: Apache-2.0
// What a vhost-user back-end implements: one method per front-end request,
// in typed arguments. The dispatcher (backend_dispatch.hpp) validates each
// message, calls the method and builds the reply, so no raw message ever
// reaches a handler. The back-end framework implements this interface and
// owns all state rules (which request is legal when); the dispatcher imposes
// no order of its own.
//
// Every method returns Status/Result: an error becomes a failure
// acknowledgement when the front-end asked for one (REPLY_ACK), a failure
// reply where the request's reply can express one, and otherwise ends the
// session (the dispatcher returns the error, the caller closes). fds arrive
// as UniqueFd: a handler keeps the ones it needs and the rest close.
//
// The methods with a default implementation belong to optional protocol
// features; the default refuses the request, which is right for a back-end
// that never offers the feature.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "vhost_user/message.hpp"
#include "vhost_user/protocol.hpp"

namespace vl::vhost_user
{

// GET_INFLIGHT_FD's answer: the buffer's description and its fd (invalid
// when mmap_size is 0, which tells the front-end there is no buffer).
struct InflightFd {
    InflightDescription description;
    UniqueFd fd;
};

// The refusal of an optional request whose feature was never offered.
inline Error unsupported_request(Request request)
{
    return Error(request_name(request) + " is not supported by this back-end", ENOTSUP);
}

class BackendHandler
{
  public:
    virtual ~BackendHandler() = default;

    // --- session and features ------------------------------------------
    virtual Status set_owner() = 0;
    // Deprecated; the spec recommends ignoring it or disabling all rings.
    virtual Status reset_owner() { return ok_status(); }
    // RESET_DEVICE (protocol feature RESET_DEVICE): back to the initial state.
    virtual Status reset_device() { return unsupported_request(Request::reset_device); }
    virtual Result<std::uint64_t> get_features() = 0;
    virtual Status set_features(std::uint64_t features) = 0;
    virtual Result<std::uint64_t> get_protocol_features() = 0;
    virtual Status set_protocol_features(std::uint64_t features) = 0;
    // GET_QUEUE_NUM (protocol feature MQ): the most queues the back-end has.
    virtual Result<std::uint64_t> get_queue_num() = 0;

    // --- memory ----------------------------------------------------------
    // SET_MEM_TABLE: replaces the whole table (1 to 8 regions, each with its
    // fd). Regions are non-empty and their ranges do not wrap around.
    virtual Status set_mem_table(std::vector<RegionFd> regions) = 0;
    // CONFIGURE_MEM_SLOTS: the slot count, and one region added or removed.
    virtual Result<std::uint64_t> get_max_mem_slots()
    {
        return unsupported_request(Request::get_max_mem_slots);
    }
    virtual Status add_mem_region(RegionFd region)
    {
        (void)region;
        return unsupported_request(Request::add_mem_reg);
    }
    virtual Status remove_mem_region(const MemoryRegion& region)
    {
        (void)region;
        return unsupported_request(Request::rem_mem_reg);
    }

    // --- rings (index as the front-end sent it: check it against the queue
    // count) ----------------------------------------------------------------
    virtual Status set_vring_num(std::uint32_t index, std::uint32_t num) = 0;
    virtual Status set_vring_addr(const VringAddr& addr) = 0;
    virtual Status set_vring_base(std::uint32_t index, std::uint32_t base) = 0;
    // Stops the ring and returns where the back-end got to: for a split ring
    // the next available index to process.
    virtual Result<std::uint32_t> get_vring_base(std::uint32_t index) = 0;
    // An invalid fd means "no fd": the other side polls.
    virtual Status set_vring_kick(std::uint32_t index, UniqueFd fd) = 0;
    virtual Status set_vring_call(std::uint32_t index, UniqueFd fd) = 0;
    virtual Status set_vring_err(std::uint32_t index, UniqueFd fd) = 0;
    virtual Status set_vring_enable(std::uint32_t index, bool enable) = 0;
    // VRING_KICK (INBAND_NOTIFICATIONS).
    virtual Status vring_kick(std::uint32_t index)
    {
        (void)index;
        return unsupported_request(Request::vring_kick);
    }

    // --- config space (protocol feature CONFIG) ---------------------------
    // offset + size <= 256 and size >= 1 (checked). Must return exactly
    // `size` bytes; anything else is sent as a refusal.
    virtual Result<std::vector<std::byte>> get_config(std::uint32_t offset, std::uint32_t size,
                                                      ConfigFlags flags) = 0;
    virtual Status set_config(std::uint32_t offset, std::span<const std::byte> data,
                              ConfigFlags flags) = 0;

    // --- optional features -------------------------------------------------
    // BACKEND_REQ: the socket for back-end initiated requests
    // (backend_channel.hpp).
    virtual Status set_backend_req_fd(UniqueFd socket)
    {
        (void)socket;
        return unsupported_request(Request::set_backend_req_fd);
    }
    // INFLIGHT_SHMFD.
    virtual Result<InflightFd> get_inflight_fd(std::uint16_t num_queues, std::uint16_t queue_size)
    {
        (void)num_queues;
        (void)queue_size;
        return unsupported_request(Request::get_inflight_fd);
    }
    virtual Status set_inflight_fd(const InflightDescription& description, UniqueFd fd)
    {
        (void)description;
        (void)fd;
        return unsupported_request(Request::set_inflight_fd);
    }
    // STATUS: the virtio device status byte.
    virtual Status set_status(std::uint8_t status)
    {
        (void)status;
        return unsupported_request(Request::set_status);
    }
    virtual Result<std::uint8_t> get_status() { return unsupported_request(Request::get_status); }
    // LOG_SHMFD (migration dirty log).
    virtual Status set_log_base(const LogDescription& log, UniqueFd fd)
    {
        (void)log;
        (void)fd;
        return unsupported_request(Request::set_log_base);
    }
    virtual Status set_log_fd(UniqueFd fd)
    {
        (void)fd;
        return unsupported_request(Request::set_log_fd);
    }
    // RARP and MTU (net devices).
    virtual Status send_rarp(std::array<std::uint8_t, 6> mac)
    {
        (void)mac;
        return unsupported_request(Request::send_rarp);
    }
    virtual Status net_set_mtu(std::uint64_t mtu)
    {
        (void)mtu;
        return unsupported_request(Request::net_set_mtu);
    }
    // VIRTIO_F_IOMMU_PLATFORM device IOTLB.
    virtual Status iotlb_msg(const IotlbMessage& message)
    {
        (void)message;
        return unsupported_request(Request::iotlb_msg);
    }
    // CROSS_ENDIAN (legacy devices).
    virtual Status set_vring_endian(std::uint32_t index, bool big_endian)
    {
        (void)index;
        (void)big_endian;
        return unsupported_request(Request::set_vring_endian);
    }
    // DEVICE_STATE (migration of back-end state): the back-end may answer
    // with an fd of its own for the transfer.
    virtual Result<std::optional<UniqueFd>> set_device_state_fd(TransferDirection direction,
                                                                MigrationPhase phase, UniqueFd fd)
    {
        (void)direction;
        (void)phase;
        (void)fd;
        return unsupported_request(Request::set_device_state_fd);
    }
    virtual Status check_device_state() { return unsupported_request(Request::check_device_state); }

  protected:
    BackendHandler() = default;
    BackendHandler(const BackendHandler&) = default;
    BackendHandler& operator=(const BackendHandler&) = default;
};

} // namespace vl::vhost_user
