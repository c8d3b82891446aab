// SPDX-License-Identifier: Apache-2.0
// The vhost-user protocol's numbers and wire structs, written from QEMU's
// docs/interop/vhost-user.rst. All numbers are in host byte order (the spec
// says "machine native"). Every payload struct has a fixed layout with no
// implicit padding (checked below), so a payload is read and written with
// memcpy and never through a pointer into a possibly unaligned buffer.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace vl::vhost_user
{

// ---------------------------------------------------------------------------
// Requests

// Front-end -> back-end requests ("Front-end message types").
enum class Request : std::uint32_t {
    get_features = 1,
    set_features = 2,
    set_owner = 3,
    reset_owner = 4,
    set_mem_table = 5,
    set_log_base = 6,
    set_log_fd = 7,
    set_vring_num = 8,
    set_vring_addr = 9,
    set_vring_base = 10,
    get_vring_base = 11,
    set_vring_kick = 12,
    set_vring_call = 13,
    set_vring_err = 14,
    get_protocol_features = 15,
    set_protocol_features = 16,
    get_queue_num = 17,
    set_vring_enable = 18,
    send_rarp = 19,
    net_set_mtu = 20,
    set_backend_req_fd = 21, // formerly SET_SLAVE_REQ_FD
    iotlb_msg = 22,
    set_vring_endian = 23,
    get_config = 24,
    set_config = 25,
    create_crypto_session = 26,
    close_crypto_session = 27,
    postcopy_advise = 28,
    postcopy_listen = 29,
    postcopy_end = 30,
    get_inflight_fd = 31,
    set_inflight_fd = 32,
    gpu_set_socket = 33,
    reset_device = 34,
    vring_kick = 35,
    get_max_mem_slots = 36,
    add_mem_reg = 37,
    rem_mem_reg = 38,
    set_status = 39,
    get_status = 40,
    get_shared_object = 41,
    set_device_state_fd = 42,
    check_device_state = 43,
};
inline constexpr std::uint32_t kFirstRequest = 1;
inline constexpr std::uint32_t kLastRequest = 43;

// Back-end -> front-end requests on the channel set up by
// SET_BACKEND_REQ_FD ("Back-end message types"). Their numbers overlap the
// front-end's: which enum applies depends on the socket, not the message.
enum class BackendRequest : std::uint32_t {
    iotlb_msg = 1,
    config_change_msg = 2,
    vring_host_notifier_msg = 3,
    vring_call = 4,
    vring_err = 5,
    shared_object_add = 6,
    shared_object_remove = 7,
    shared_object_lookup = 8,
};
inline constexpr std::uint32_t kFirstBackendRequest = 1;
inline constexpr std::uint32_t kLastBackendRequest = 8;

// "SET_VRING_NUM", or "unknown request 99".
std::string request_name(std::uint32_t code);
std::string request_name(Request request);
// "CONFIG_CHANGE_MSG", or "unknown back-end request 99".
std::string backend_request_name(std::uint32_t code);
std::string backend_request_name(BackendRequest request);

[[nodiscard]] constexpr std::uint32_t to_code(Request r) noexcept
{
    return static_cast<std::uint32_t>(r);
}
[[nodiscard]] constexpr std::uint32_t to_code(BackendRequest r) noexcept
{
    return static_cast<std::uint32_t>(r);
}

// ---------------------------------------------------------------------------
// Header

struct Header {
    std::uint32_t request = 0;
    std::uint32_t flags = 0;
    std::uint32_t size = 0; // payload bytes that follow the header
};

// Header flags: bits 0-1 are the version, bit 2 marks a reply, bit 3 asks
// for a REPLY_ACK acknowledgement. Other bits are undefined.
inline constexpr std::uint32_t kVersionMask = 0x3;
inline constexpr std::uint32_t kVersion = 0x1;
inline constexpr std::uint32_t kReplyFlag = 0x4;
inline constexpr std::uint32_t kNeedReplyFlag = 0x8;
inline constexpr std::uint32_t kKnownFlags = kVersionMask | kReplyFlag | kNeedReplyFlag;

inline constexpr std::size_t kHeaderSize = 12;

// VHOST_MEMORY_BASELINE_NREGIONS: regions in one SET_MEM_TABLE, and also
// the most file descriptors any one message carries.
inline constexpr std::uint32_t kMaxMemoryRegions = 8;
inline constexpr std::size_t kMaxFdsPerMessage = 8;
// VHOST_USER_MAX_CONFIG_SIZE: the virtio config space a message can carry.
inline constexpr std::uint32_t kMaxConfigSize = 256;
// No defined message comes near this; a larger size means a broken or
// hostile peer, and refusing it bounds what one message can make us buffer.
inline constexpr std::uint32_t kMaxPayloadSize = 4096;

// ---------------------------------------------------------------------------
// Feature bits

// Virtio feature bit 30 (unused by virtio), reused to announce
// GET/SET_PROTOCOL_FEATURES.
inline constexpr unsigned kProtocolFeaturesBit = 30;
inline constexpr std::uint64_t kFeatureProtocolFeatures = std::uint64_t{1} << kProtocolFeaturesBit;
// VHOST_F_LOG_ALL: dirty logging for migration.
inline constexpr std::uint64_t kFeatureLogAll = std::uint64_t{1} << 26;

// VHOST_USER_PROTOCOL_F_* bit numbers.
enum class ProtocolFeature : unsigned {
    mq = 0,
    log_shmfd = 1,
    rarp = 2,
    reply_ack = 3,
    mtu = 4,
    backend_req = 5, // formerly SLAVE_REQ
    cross_endian = 6,
    crypto_session = 7,
    pagefault = 8,
    config = 9,
    backend_send_fd = 10, // formerly SLAVE_SEND_FD
    host_notifier = 11,
    inflight_shmfd = 12,
    reset_device = 13,
    inband_notifications = 14,
    configure_mem_slots = 15,
    status = 16,
    xen_mmap = 17,
    shared_object = 18,
    device_state = 19,
};

// The mask of one protocol feature: bit(ProtocolFeature::reply_ack) == 1 << 3.
[[nodiscard]] constexpr std::uint64_t bit(ProtocolFeature f) noexcept
{
    return std::uint64_t{1} << static_cast<unsigned>(f);
}
[[nodiscard]] constexpr bool has(std::uint64_t features, ProtocolFeature f) noexcept
{
    return (features & bit(f)) != 0;
}

// ---------------------------------------------------------------------------
// Payloads

// SET_VRING_KICK/CALL/ERR u64: bits 0-7 are the ring, bit 8 says that no fd
// is attached (the other side polls). Other bits are undefined.
inline constexpr std::uint64_t kVringIndexMask = 0xff;
inline constexpr std::uint64_t kVringNoFdMask = 0x100;
inline constexpr std::uint32_t kMaxVringFdIndex = 0xff;

// REPLY_ACK and other status replies: zero is success.
inline constexpr std::uint64_t kAckSuccess = 0;
inline constexpr std::uint64_t kAckFailure = 1;

// SET_VRING_ENABLE/GET_VRING_BASE/SET_VRING_BASE/...: struct vhost_vring_state.
struct VringState {
    std::uint32_t index = 0;
    std::uint32_t num = 0;
};

// SET_VRING_ADDR: struct vhost_vring_addr. Addresses are front-end user
// addresses (or IOVAs when VIRTIO_F_IOMMU_PLATFORM is negotiated).
struct VringAddr {
    std::uint32_t index = 0;
    std::uint32_t flags = 0; // kVringAddrFlagLog
    std::uint64_t desc_user_addr = 0;
    std::uint64_t used_user_addr = 0;
    std::uint64_t avail_user_addr = 0;
    std::uint64_t log_guest_addr = 0;
};
inline constexpr std::uint32_t kVringAddrFlagLog = 0x1; // VHOST_VRING_F_LOG

// One region of the front-end's memory, mapped from the fd sent with it.
struct MemoryRegion {
    std::uint64_t guest_phys_addr = 0;
    std::uint64_t memory_size = 0;
    std::uint64_t userspace_addr = 0;
    std::uint64_t mmap_offset = 0;
};

// SET_MEM_TABLE: this header, then `nregions` MemoryRegions.
struct MemoryTableHeader {
    std::uint32_t nregions = 0;
    std::uint32_t padding = 0;
};

// ADD_MEM_REG / REM_MEM_REG.
struct SingleMemoryRegion {
    std::uint64_t padding = 0;
    MemoryRegion region;
};

// SET_LOG_BASE (with LOG_SHMFD).
struct LogDescription {
    std::uint64_t mmap_size = 0;
    std::uint64_t mmap_offset = 0;
};

// IOTLB_MSG: struct vhost_iotlb_msg, whose natural alignment pads it to 32.
struct IotlbMessage {
    std::uint64_t iova = 0;
    std::uint64_t size = 0;
    std::uint64_t user_addr = 0;
    std::uint8_t permissions = 0;
    std::uint8_t type = 0;
    std::array<std::uint8_t, 6> padding{};
};

// GET_CONFIG / SET_CONFIG: this header, then `size` bytes of config space.
struct ConfigHeader {
    std::uint32_t offset = 0;
    std::uint32_t size = 0;
    std::uint32_t flags = 0; // ConfigFlags
};
enum class ConfigFlags : std::uint32_t {
    writable = 0,       // the driver writes writable fields
    live_migration = 1, // restoring config on a migration destination
};

// BACKEND_VRING_HOST_NOTIFIER_MSG.
struct VringArea {
    std::uint64_t index_and_flags = 0;
    std::uint64_t size = 0;
    std::uint64_t offset = 0;
};

// GET_INFLIGHT_FD / SET_INFLIGHT_FD. QEMU's struct is not packed, so it
// carries 4 bytes of tail padding on the wire: 24 bytes.
struct InflightDescription {
    std::uint64_t mmap_size = 0;
    std::uint64_t mmap_offset = 0;
    std::uint16_t num_queues = 0;
    std::uint16_t queue_size = 0;
    std::uint32_t padding = 0;
};

// SET_DEVICE_STATE_FD.
enum class TransferDirection : std::uint32_t { save = 0, load = 1 };
enum class MigrationPhase : std::uint32_t { stopped = 0 };
struct DeviceStateTransfer {
    std::uint32_t direction = 0; // TransferDirection
    std::uint32_t phase = 0;     // MigrationPhase
};
// SET_DEVICE_STATE_FD reply u64: bits 0-7 are an error code, bit 8 says that
// the back-end returns no fd of its own.
inline constexpr std::uint64_t kDeviceStateErrorMask = 0xff;
inline constexpr std::uint64_t kDeviceStateNoFdMask = 0x100;

// GET_SHARED_OBJECT and BACKEND_SHARED_OBJECT_*: a UUID.
struct SharedObject {
    std::array<std::uint8_t, 16> uuid{};
};

// ---------------------------------------------------------------------------
// Layout checks: the sizes and offsets the spec (and QEMU's structs) use,
// and no implicit padding anywhere (unique object representations), so
// memcpy of a struct is exactly its wire form.

template <class T>
inline constexpr bool kIsWireStruct = std::is_trivially_copyable_v<T>&&
    std::has_unique_object_representations_v<T>&& std::is_standard_layout_v<T>;

static_assert(kIsWireStruct<Header> && sizeof(Header) == kHeaderSize);
static_assert(offsetof(Header, flags) == 4 && offsetof(Header, size) == 8);
static_assert(kIsWireStruct<VringState> && sizeof(VringState) == 8);
static_assert(kIsWireStruct<VringAddr> && sizeof(VringAddr) == 40);
static_assert(offsetof(VringAddr, desc_user_addr) == 8 &&
              offsetof(VringAddr, log_guest_addr) == 32);
static_assert(kIsWireStruct<MemoryRegion> && sizeof(MemoryRegion) == 32);
static_assert(kIsWireStruct<MemoryTableHeader> && sizeof(MemoryTableHeader) == 8);
static_assert(kIsWireStruct<SingleMemoryRegion> && sizeof(SingleMemoryRegion) == 40);
static_assert(offsetof(SingleMemoryRegion, region) == 8);
static_assert(kIsWireStruct<LogDescription> && sizeof(LogDescription) == 16);
static_assert(kIsWireStruct<IotlbMessage> && sizeof(IotlbMessage) == 32);
static_assert(offsetof(IotlbMessage, permissions) == 24 && offsetof(IotlbMessage, type) == 25);
static_assert(kIsWireStruct<ConfigHeader> && sizeof(ConfigHeader) == 12);
static_assert(kIsWireStruct<VringArea> && sizeof(VringArea) == 24);
static_assert(kIsWireStruct<InflightDescription> && sizeof(InflightDescription) == 24);
static_assert(offsetof(InflightDescription, num_queues) == 16);
static_assert(offsetof(InflightDescription, queue_size) == 18);
static_assert(kIsWireStruct<DeviceStateTransfer> && sizeof(DeviceStateTransfer) == 8);
static_assert(kIsWireStruct<SharedObject> && sizeof(SharedObject) == 16);

// The biggest defined payload (a full memory table or config access) must
// fit under the size limit.
static_assert(sizeof(MemoryTableHeader) + kMaxMemoryRegions * sizeof(MemoryRegion) <=
              kMaxPayloadSize);
static_assert(sizeof(ConfigHeader) + kMaxConfigSize <= kMaxPayloadSize);

} // namespace vl::vhost_user
