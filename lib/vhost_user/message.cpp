// SPDX-License-Identifier: Apache-2.0
#include "vhost_user/message.hpp"

#include <fmt/format.h>

#include <array>
#include <limits>

namespace vl::vhost_user
{

Message::Message(std::uint32_t request, std::uint32_t flags, std::vector<std::byte> payload,
                 std::vector<UniqueFd> fds)
    : header_{request, flags, static_cast<std::uint32_t>(payload.size())},
      payload_(std::move(payload)), fds_(std::move(fds))
{
}

UniqueFd Message::take_fd(std::size_t index)
{
    if (index >= fds_.size())
        return UniqueFd();
    return std::move(fds_[index]);
}

std::string Message::name() const
{
    std::string n = request_name(header_.request);
    return is_reply() ? n + " reply" : n;
}

namespace
{

// ---------------------------------------------------------------------------
// What the protocol fixes for each request number.

enum class Shape : std::uint8_t {
    empty,        // no payload
    fixed,        // exactly Rule::size bytes
    memory_table, // MemoryTableHeader + nregions (1..8) regions
    config,       // ConfigHeader + size (1..256) bytes
    bounded,      // anything up to kMaxPayloadSize (layouts we do not decode)
};

enum class FdRule : std::uint8_t {
    none,
    one,
    vring,       // one, or none if the u64 has the no-fd bit
    per_region,  // one per memory region
    at_most_one, // REM_MEM_REG: the spec tolerates a stray fd
};

struct Rule {
    Shape shape = Shape::empty;
    std::uint32_t size = 0;
    FdRule fds = FdRule::none;
    bool has_reply = false; // a reply is defined whatever REPLY_ACK says
};

constexpr Rule empty(FdRule fds = FdRule::none, bool reply = false)
{
    return {Shape::empty, 0, fds, reply};
}
constexpr Rule fixed(std::size_t size, FdRule fds = FdRule::none, bool reply = false)
{
    return {Shape::fixed, static_cast<std::uint32_t>(size), fds, reply};
}
constexpr bool kReply = true;
constexpr std::size_t kU64 = sizeof(std::uint64_t);

// Indexed by request number (entry 0 is unused).
constexpr std::array<Rule, kLastRequest + 1> kRules = {{
    {},                                                       // 0
    empty(FdRule::none, kReply),                              // GET_FEATURES
    fixed(kU64),                                              // SET_FEATURES
    empty(),                                                  // SET_OWNER
    empty(),                                                  // RESET_OWNER
    {Shape::memory_table, 0, FdRule::per_region, false},      // SET_MEM_TABLE
    fixed(sizeof(LogDescription), FdRule::one, kReply),       // SET_LOG_BASE
    empty(FdRule::one),                                       // SET_LOG_FD
    fixed(sizeof(VringState)),                                // SET_VRING_NUM
    fixed(sizeof(VringAddr)),                                 // SET_VRING_ADDR
    fixed(sizeof(VringState)),                                // SET_VRING_BASE
    fixed(sizeof(VringState), FdRule::none, kReply),          // GET_VRING_BASE
    fixed(kU64, FdRule::vring),                               // SET_VRING_KICK
    fixed(kU64, FdRule::vring),                               // SET_VRING_CALL
    fixed(kU64, FdRule::vring),                               // SET_VRING_ERR
    empty(FdRule::none, kReply),                              // GET_PROTOCOL_FEATURES
    fixed(kU64),                                              // SET_PROTOCOL_FEATURES
    empty(FdRule::none, kReply),                              // GET_QUEUE_NUM
    fixed(sizeof(VringState)),                                // SET_VRING_ENABLE
    fixed(kU64),                                              // SEND_RARP
    fixed(kU64),                                              // NET_SET_MTU
    empty(FdRule::one),                                       // SET_BACKEND_REQ_FD
    fixed(sizeof(IotlbMessage), FdRule::none, kReply),        // IOTLB_MSG
    fixed(sizeof(VringState)),                                // SET_VRING_ENDIAN
    {Shape::config, 0, FdRule::none, kReply},                 // GET_CONFIG
    {Shape::config, 0, FdRule::none, false},                  // SET_CONFIG
    {Shape::bounded, 0, FdRule::none, kReply},                // CREATE_CRYPTO_SESSION
    fixed(kU64),                                              // CLOSE_CRYPTO_SESSION
    empty(FdRule::none, kReply),                              // POSTCOPY_ADVISE
    empty(),                                                  // POSTCOPY_LISTEN
    empty(FdRule::none, kReply),                              // POSTCOPY_END
    fixed(sizeof(InflightDescription), FdRule::none, kReply), // GET_INFLIGHT_FD
    fixed(sizeof(InflightDescription), FdRule::one),          // SET_INFLIGHT_FD
    empty(FdRule::one),                                       // GPU_SET_SOCKET
    empty(),                                                  // RESET_DEVICE
    fixed(sizeof(VringState)),                                // VRING_KICK
    empty(FdRule::none, kReply),                              // GET_MAX_MEM_SLOTS
    fixed(sizeof(SingleMemoryRegion), FdRule::one),           // ADD_MEM_REG
    fixed(sizeof(SingleMemoryRegion), FdRule::at_most_one),   // REM_MEM_REG
    fixed(kU64),                                              // SET_STATUS
    empty(FdRule::none, kReply),                              // GET_STATUS
    fixed(sizeof(SharedObject), FdRule::none, kReply),        // GET_SHARED_OBJECT
    fixed(sizeof(DeviceStateTransfer), FdRule::one, kReply),  // SET_DEVICE_STATE_FD
    empty(FdRule::none, kReply),                              // CHECK_DEVICE_STATE
}};

// Back-end channel requests: payload and fds.
constexpr std::array<Rule, kLastBackendRequest + 1> kBackendRules = {{
    {},                                      // 0
    fixed(sizeof(IotlbMessage)),             // BACKEND_IOTLB_MSG
    empty(),                                 // BACKEND_CONFIG_CHANGE_MSG
    fixed(sizeof(VringArea), FdRule::vring), // BACKEND_VRING_HOST_NOTIFIER_MSG
    fixed(sizeof(VringState)),               // BACKEND_VRING_CALL
    fixed(sizeof(VringState)),               // BACKEND_VRING_ERR
    fixed(sizeof(SharedObject)),             // BACKEND_SHARED_OBJECT_ADD
    fixed(sizeof(SharedObject)),             // BACKEND_SHARED_OBJECT_REMOVE
    fixed(sizeof(SharedObject)),             // BACKEND_SHARED_OBJECT_LOOKUP
}};

Error bad_message(const std::string& what, const std::string& problem)
{
    return Error(what + ": " + problem, EBADMSG);
}

std::string fds_text(std::size_t n)
{
    return n == 1 ? "1 file descriptor" : std::to_string(n) + " file descriptors";
}

// Version 1, no undefined bits, and the REPLY bit as the direction demands.
Status check_flags(std::uint32_t flags, bool want_reply, const std::string& what)
{
    if ((flags & kVersionMask) != kVersion)
        return bad_message(what, fmt::format("protocol version {} in flags {:#x}, expected {}",
                                             flags & kVersionMask, flags, kVersion));
    if ((flags & ~kKnownFlags) != 0)
        return bad_message(what, fmt::format("undefined flag bits {:#x} in flags {:#x}",
                                             flags & ~kKnownFlags, flags));
    bool is_reply = (flags & kReplyFlag) != 0;
    if (is_reply && !want_reply)
        return bad_message(what, "has the REPLY flag set, but it is a request");
    if (!is_reply && want_reply)
        return bad_message(what, "lacks the REPLY flag, but it should be a reply");
    if (want_reply && (flags & kNeedReplyFlag) != 0)
        return bad_message(what, "is a reply with the NEED_REPLY flag set");
    return ok_status();
}

std::uint64_t u64_at(std::span<const std::byte> bytes, std::size_t offset)
{
    std::uint64_t v = 0;
    std::memcpy(&v, bytes.data() + offset, sizeof(v));
    return v;
}

template <class T> T struct_at(std::span<const std::byte> bytes, std::size_t offset)
{
    T v;
    std::memcpy(&v, bytes.data() + offset, sizeof(T));
    return v;
}

bool add_overflows(std::uint64_t a, std::uint64_t b)
{
    return a > std::numeric_limits<std::uint64_t>::max() - b;
}

// A region the back-end could map: non-empty, and no address range that
// wraps around (which would defeat every later bounds check).
Status check_region(const MemoryRegion& r, const std::string& what)
{
    if (r.memory_size == 0)
        return bad_message(what, "size is 0");
    if (add_overflows(r.guest_phys_addr, r.memory_size))
        return bad_message(what, fmt::format("guest address {:#x} + size {:#x} overflows",
                                             r.guest_phys_addr, r.memory_size));
    if (add_overflows(r.userspace_addr, r.memory_size))
        return bad_message(what, fmt::format("user address {:#x} + size {:#x} overflows",
                                             r.userspace_addr, r.memory_size));
    if (add_overflows(r.mmap_offset, r.memory_size))
        return bad_message(what, fmt::format("mmap offset {:#x} + size {:#x} overflows",
                                             r.mmap_offset, r.memory_size));
    return ok_status();
}

Status check_memory_table(const Message& m, const std::string& what)
{
    auto bytes = m.payload();
    if (bytes.size() < sizeof(MemoryTableHeader))
        return bad_message(what, fmt::format("payload is {} bytes, shorter than the {}-byte "
                                             "region count",
                                             bytes.size(), sizeof(MemoryTableHeader)));
    auto table = struct_at<MemoryTableHeader>(bytes, 0);
    if (table.nregions < 1 || table.nregions > kMaxMemoryRegions)
        return bad_message(
            what, fmt::format("{} regions, expected 1 to {}", table.nregions, kMaxMemoryRegions));
    std::size_t expected = sizeof(MemoryTableHeader) + table.nregions * sizeof(MemoryRegion);
    if (bytes.size() != expected)
        return bad_message(what,
                           fmt::format("payload is {} bytes, expected {} + {} * {} = {} "
                                       "for {} regions",
                                       bytes.size(), sizeof(MemoryTableHeader), table.nregions,
                                       sizeof(MemoryRegion), expected, table.nregions));
    if (m.fd_count() != table.nregions)
        return bad_message(what, fmt::format("{} for {} regions; each region needs its own",
                                             fds_text(m.fd_count()), table.nregions));
    for (std::uint32_t i = 0; i < table.nregions; ++i) {
        auto region =
            struct_at<MemoryRegion>(bytes, sizeof(MemoryTableHeader) + i * sizeof(MemoryRegion));
        VL_TRY(check_region(region, what + " region " + std::to_string(i)));
    }
    return ok_status();
}

Status check_config(const Message& m, const std::string& what)
{
    auto bytes = m.payload();
    if (bytes.size() < sizeof(ConfigHeader))
        return bad_message(what, fmt::format("payload is {} bytes, shorter than the {}-byte "
                                             "config header",
                                             bytes.size(), sizeof(ConfigHeader)));
    auto config = struct_at<ConfigHeader>(bytes, 0);
    if (config.size == 0 || config.size > kMaxConfigSize)
        return bad_message(
            what, fmt::format("config size {} is outside 1..{}", config.size, kMaxConfigSize));
    if (bytes.size() != sizeof(ConfigHeader) + config.size)
        return bad_message(what, fmt::format("payload is {} bytes, expected {} + {} = {}",
                                             bytes.size(), sizeof(ConfigHeader), config.size,
                                             sizeof(ConfigHeader) + config.size));
    if (config.offset > kMaxConfigSize - config.size)
        return bad_message(what, fmt::format("config offset {} + size {} is beyond the {}-byte "
                                             "config space",
                                             config.offset, config.size, kMaxConfigSize));
    if (config.flags > static_cast<std::uint32_t>(ConfigFlags::live_migration))
        return bad_message(what, fmt::format("undefined config flags {:#x}", config.flags));
    return ok_status();
}

Status check_shape(const Message& m, const Rule& rule, const std::string& what)
{
    std::size_t size = m.payload().size();
    switch (rule.shape) {
    case Shape::empty:
        if (size != 0)
            return bad_message(what, fmt::format("payload is {} bytes, expected none", size));
        return ok_status();
    case Shape::fixed:
        if (size != rule.size)
            return bad_message(what,
                               fmt::format("payload is {} bytes, expected {}", size, rule.size));
        return ok_status();
    case Shape::memory_table:
        return check_memory_table(m, what);
    case Shape::config:
        return check_config(m, what);
    case Shape::bounded:
        if (size > kMaxPayloadSize)
            return bad_message(
                what, fmt::format("payload is {} bytes, more than {}", size, kMaxPayloadSize));
        return ok_status();
    }
    return bad_message(what, "internal error: unhandled payload shape");
}

// How many fds the message must carry under `rule` (per_region is counted
// by check_memory_table, which knows nregions).
Status check_fds(const Message& m, const Rule& rule, const std::string& what)
{
    std::size_t n = m.fd_count();
    switch (rule.fds) {
    case FdRule::none:
        if (n != 0)
            return bad_message(what, fmt::format("{} attached, expected none", fds_text(n)));
        return ok_status();
    case FdRule::one:
        if (n != 1)
            return bad_message(what, fmt::format("{} attached, expected 1", fds_text(n)));
        return ok_status();
    case FdRule::vring: {
        // The u64 (or VringArea's first field) is at offset 0 either way.
        std::uint64_t value = u64_at(m.payload(), 0);
        if ((value & ~(kVringIndexMask | kVringNoFdMask)) != 0)
            return bad_message(what,
                               fmt::format("undefined bits {:#x} in {:#x} (only the "
                                           "ring index 0-7 and the no-fd bit 8 exist)",
                                           value & ~(kVringIndexMask | kVringNoFdMask), value));
        std::size_t expected = (value & kVringNoFdMask) != 0 ? 0 : 1;
        if (n != expected)
            return bad_message(what,
                               fmt::format("{} attached, expected {} (no-fd bit is {})",
                                           fds_text(n), expected, expected == 0 ? "set" : "clear"));
        return ok_status();
    }
    case FdRule::per_region:
        return ok_status();
    case FdRule::at_most_one:
        if (n > 1)
            return bad_message(what, fmt::format("{} attached, expected at most 1", fds_text(n)));
        return ok_status();
    }
    return bad_message(what, "internal error: unhandled fd rule");
}

// Value checks that the spec states for individual requests.
Status check_values(const Message& m, Request request, const std::string& what)
{
    auto bytes = m.payload();
    switch (request) {
    case Request::set_vring_enable: {
        auto state = struct_at<VringState>(bytes, 0);
        if (state.num > 1)
            return bad_message(
                what, fmt::format("ring {} state {}, expected 0 or 1", state.index, state.num));
        return ok_status();
    }
    case Request::set_vring_endian: {
        auto state = struct_at<VringState>(bytes, 0);
        if (state.num > 1)
            return bad_message(what, fmt::format("ring {} endianness {}, expected 0 (little) "
                                                 "or 1 (big)",
                                                 state.index, state.num));
        return ok_status();
    }
    case Request::set_status: {
        std::uint64_t status = u64_at(bytes, 0);
        if (status > 0xff)
            return bad_message(what, fmt::format("device status {:#x} does not fit the 8-bit "
                                                 "virtio status",
                                                 status));
        return ok_status();
    }
    case Request::add_mem_reg:
    case Request::rem_mem_reg:
        return check_region(struct_at<SingleMemoryRegion>(bytes, 0).region, what);
    case Request::set_device_state_fd: {
        auto transfer = struct_at<DeviceStateTransfer>(bytes, 0);
        if (transfer.direction > static_cast<std::uint32_t>(TransferDirection::load))
            return bad_message(what,
                               fmt::format("undefined transfer direction {}", transfer.direction));
        if (transfer.phase != static_cast<std::uint32_t>(MigrationPhase::stopped))
            return bad_message(what, fmt::format("undefined migration phase {}", transfer.phase));
        return ok_status();
    }
    default:
        return ok_status();
    }
}

} // namespace

Result<Request> validate_request(const Message& m)
{
    std::string what = request_name(m.request());
    VL_TRY(check_flags(m.flags(), false, what));
    if (m.request() < kFirstRequest || m.request() > kLastRequest)
        return Error(what, EBADMSG); // "unknown request N"
    const Rule& rule = kRules[m.request()];
    auto request = static_cast<Request>(m.request());
    VL_TRY(check_shape(m, rule, what));
    VL_TRY(check_fds(m, rule, what));
    VL_TRY(check_values(m, request, what));
    return request;
}

Status validate_reply_header(const Message& reply, Request sent)
{
    std::string what = request_name(sent) + " reply";
    if (reply.request() != to_code(sent))
        return bad_message(what, fmt::format("got a reply to {} instead; the connection is out "
                                             "of step and must be reopened",
                                             request_name(reply.request())));
    return check_flags(reply.flags(), true, what);
}

Result<BackendRequest> validate_backend_request(const Message& m)
{
    std::string what = backend_request_name(m.request());
    VL_TRY(check_flags(m.flags(), false, what));
    if (m.request() < kFirstBackendRequest || m.request() > kLastBackendRequest)
        return Error(what, EBADMSG);
    const Rule& rule = kBackendRules[m.request()];
    VL_TRY(check_shape(m, rule, what));
    VL_TRY(check_fds(m, rule, what));
    return static_cast<BackendRequest>(m.request());
}

Status validate_backend_reply_header(const Message& reply, BackendRequest sent)
{
    std::string what = backend_request_name(sent) + " reply";
    if (reply.request() != to_code(sent))
        return bad_message(
            what, fmt::format("got a reply to {} instead", backend_request_name(reply.request())));
    return check_flags(reply.flags(), true, what);
}

Status expect_fd_count(const Message& m, std::size_t expected, std::string_view what)
{
    if (m.fd_count() != expected)
        return bad_message(std::string(what), fmt::format("{} attached, expected {}",
                                                          fds_text(m.fd_count()), expected));
    return ok_status();
}

bool request_has_reply(Request request)
{
    auto code = to_code(request);
    return code >= kFirstRequest && code <= kLastRequest && kRules[code].has_reply;
}

// ---------------------------------------------------------------------------
// Decoding

Result<std::uint64_t> read_u64(const Message& m)
{
    return m.payload_as<std::uint64_t>();
}

Result<std::vector<RegionFd>> take_memory_table(Message& m)
{
    std::string what = m.name();
    VL_TRY(check_memory_table(m, what));
    auto bytes = m.payload();
    auto table = struct_at<MemoryTableHeader>(bytes, 0);
    std::vector<RegionFd> regions;
    regions.reserve(table.nregions);
    for (std::uint32_t i = 0; i < table.nregions; ++i)
        regions.push_back(
            {struct_at<MemoryRegion>(bytes, sizeof(MemoryTableHeader) + i * sizeof(MemoryRegion)),
             m.take_fd(i)});
    return regions;
}

Result<RegionFd> take_single_region(Message& m)
{
    VL_TRY_ASSIGN(auto single, m.payload_as<SingleMemoryRegion>());
    VL_TRY(check_region(single.region, m.name()));
    bool wants_fd = m.request() == to_code(Request::add_mem_reg);
    if (wants_fd && m.fd_count() != 1)
        return bad_message(m.name(),
                           fmt::format("{} attached, expected 1", fds_text(m.fd_count())));
    RegionFd result{single.region, wants_fd ? m.take_fd(0) : UniqueFd()};
    m.close_fds(); // REM_MEM_REG: "the back-end MUST close it without using it"
    return result;
}

Result<VringFd> take_vring_fd(Message& m)
{
    VL_TRY_ASSIGN(std::uint64_t value, m.payload_as<std::uint64_t>());
    VL_TRY(check_fds(m, Rule{Shape::fixed, 8, FdRule::vring, false}, m.name()));
    return VringFd{static_cast<std::uint32_t>(value & kVringIndexMask), m.take_fd(0)};
}

Result<ConfigAccess> read_config(const Message& m)
{
    VL_TRY(check_config(m, m.name()));
    auto bytes = m.payload();
    auto header = struct_at<ConfigHeader>(bytes, 0);
    auto data = bytes.subspan(sizeof(ConfigHeader));
    return ConfigAccess{header.offset, static_cast<ConfigFlags>(header.flags),
                        std::vector<std::byte>(data.begin(), data.end())};
}

// ---------------------------------------------------------------------------
// Encoding

Message make_request(Request request, bool need_reply)
{
    return Message(to_code(request), request_flags(need_reply));
}

Result<Message> make_memory_table_request(std::span<const MemoryRegion> regions, bool need_reply)
{
    if (regions.empty() || regions.size() > kMaxMemoryRegions)
        return Error(fmt::format("SET_MEM_TABLE: {} regions, but a table holds 1 to {}",
                                 regions.size(), kMaxMemoryRegions),
                     EINVAL);
    MemoryTableHeader table{static_cast<std::uint32_t>(regions.size()), 0};
    std::vector<std::byte> bytes(sizeof(table) + regions.size_bytes());
    std::memcpy(bytes.data(), &table, sizeof(table));
    std::memcpy(bytes.data() + sizeof(table), regions.data(), regions.size_bytes());
    return Message(to_code(Request::set_mem_table), request_flags(need_reply), std::move(bytes));
}

std::vector<std::byte> encode_config(std::uint32_t offset, std::span<const std::byte> data,
                                     ConfigFlags flags)
{
    ConfigHeader header{offset, static_cast<std::uint32_t>(data.size()),
                        static_cast<std::uint32_t>(flags)};
    std::vector<std::byte> bytes(sizeof(header) + data.size());
    std::memcpy(bytes.data(), &header, sizeof(header));
    if (!data.empty())
        std::memcpy(bytes.data() + sizeof(header), data.data(), data.size());
    return bytes;
}

Result<Message> make_config_request(Request request, std::uint32_t offset,
                                    std::span<const std::byte> data, ConfigFlags flags,
                                    bool need_reply)
{
    std::string what = request_name(request);
    if (data.empty() || data.size() > kMaxConfigSize)
        return Error(
            fmt::format("{}: config size {} is outside 1..{}", what, data.size(), kMaxConfigSize),
            EINVAL);
    if (offset > kMaxConfigSize - data.size())
        return Error(fmt::format("{}: offset {} + size {} is beyond the {}-byte config space", what,
                                 offset, data.size(), kMaxConfigSize),
                     EINVAL);
    return Message(to_code(request), request_flags(need_reply), encode_config(offset, data, flags));
}

Message make_reply(const Header& request, std::vector<std::byte> payload, std::vector<UniqueFd> fds)
{
    return Message(request.request, kReplyFlags, std::move(payload), std::move(fds));
}

Message make_u64_reply(const Header& request, std::uint64_t value)
{
    return make_reply(request, value);
}

Message make_backend_request(BackendRequest request, bool need_reply)
{
    return Message(to_code(request), request_flags(need_reply));
}

} // namespace vl::vhost_user
