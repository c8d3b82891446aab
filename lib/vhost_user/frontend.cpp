// SPDX-License-Identifier: Apache-2.0
#include "vhost_user/frontend.hpp"

#include <fmt/format.h>

#include <array>

namespace vl::vhost_user
{

Frontend::Frontend(Connection connection, FrontendOptions options)
    : connection_(std::move(connection))
{
    connection_.set_timeout(options.reply_timeout);
}

Result<Frontend> Frontend::connect(const std::string& path, FrontendOptions options)
{
    VL_TRY_ASSIGN(Connection connection, connect_to(path));
    return Frontend(std::move(connection), options);
}

// ---------------------------------------------------------------------------
// Plumbing

Status Frontend::check_usable() const
{
    if (broken_)
        return Error("the connection to the back-end is unusable after an earlier error (" +
                         broken_message_ + "); reconnect",
                     broken_code_);
    return ok_status();
}

Error Frontend::break_with(Error error)
{
    if (!broken_) {
        broken_ = true;
        broken_message_ = error.message();
        broken_code_ = error.code();
    }
    // The spec: a front-end that receives a wrong reply closes the connection.
    connection_.close();
    return error;
}

Status Frontend::send(Request request, const Message& message, std::span<const int> fds)
{
    VL_TRY(check_usable());
    Status sent = connection_.send(message, fds);
    if (!sent.ok())
        return break_with(sent.error().wrap(request_name(request) + ": cannot send"));
    return ok_status();
}

Result<Message> Frontend::receive_reply(Request request)
{
    auto reply = connection_.receive();
    if (!reply.ok())
        return break_with(reply.error().wrap(request_name(request) + ": no valid reply"));
    if (Status header = validate_reply_header(*reply, request); !header.ok())
        return break_with(header.error());
    return reply;
}

Status Frontend::call(Request request, Message message, std::span<const int> fds)
{
    bool ack = reply_ack_enabled();
    message.set_need_reply(ack);
    VL_TRY(send(request, message, fds));
    if (!ack)
        return ok_status();
    VL_TRY_ASSIGN(Message reply, receive_reply(request));
    auto status = read_u64(reply);
    if (!status.ok())
        return break_with(status.error());
    if (Status no_fds = expect_fd_count(reply, 0, reply.name()); !no_fds.ok())
        return break_with(no_fds.error());
    if (*status != kAckSuccess)
        return Error(fmt::format("{}: the back-end refused the request (ack status {}); its log "
                                 "says why",
                                 request_name(request), *status),
                     EIO);
    return ok_status();
}

Result<Message> Frontend::call_with_reply(Request request, Message message,
                                          std::span<const int> fds)
{
    message.set_need_reply(false); // the reply is defined anyway
    VL_TRY(send(request, message, fds));
    return receive_reply(request);
}

Result<std::uint64_t> Frontend::call_u64(Request request)
{
    VL_TRY_ASSIGN(Message reply, call_with_reply(request, make_request(request)));
    auto value = read_u64(reply);
    if (!value.ok())
        return break_with(value.error());
    if (Status no_fds = expect_fd_count(reply, 0, reply.name()); !no_fds.ok())
        return break_with(no_fds.error());
    return value;
}

namespace
{

Status check_fd(int fd, Request request)
{
    if (fd < 0)
        return Error(request_name(request) + ": needs a valid fd", EBADF);
    return ok_status();
}

} // namespace

// ---------------------------------------------------------------------------
// Session and features

Result<std::uint64_t> Frontend::get_features()
{
    return call_u64(Request::get_features);
}

Status Frontend::set_features(std::uint64_t features)
{
    return call(Request::set_features, make_request(Request::set_features, features));
}

Result<std::uint64_t> Frontend::get_protocol_features()
{
    return call_u64(Request::get_protocol_features);
}

Status Frontend::set_protocol_features(std::uint64_t features)
{
    // Sent under the features in force before it (no ack the first time).
    VL_TRY(call(Request::set_protocol_features,
                make_request(Request::set_protocol_features, features)));
    protocol_features_ = features;
    return ok_status();
}

Status Frontend::set_owner()
{
    return call(Request::set_owner, make_request(Request::set_owner));
}

Status Frontend::reset_owner()
{
    return call(Request::reset_owner, make_request(Request::reset_owner));
}

Status Frontend::reset_device()
{
    return call(Request::reset_device, make_request(Request::reset_device));
}

Result<std::uint64_t> Frontend::get_queue_num()
{
    return call_u64(Request::get_queue_num);
}

// ---------------------------------------------------------------------------
// Config space

Result<std::vector<std::byte>> Frontend::get_config(std::uint32_t offset, std::uint32_t size,
                                                    ConfigFlags flags)
{
    constexpr Request request = Request::get_config;
    std::vector<std::byte> zeros(size);
    VL_TRY_ASSIGN(Message message, make_config_request(request, offset, zeros, flags));
    VL_TRY_ASSIGN(Message reply, call_with_reply(request, std::move(message)));
    if (Status no_fds = expect_fd_count(reply, 0, reply.name()); !no_fds.ok())
        return break_with(no_fds.error());

    auto refused = [&] {
        return Error(fmt::format("GET_CONFIG of {} bytes at offset {}: the back-end refused "
                                 "(empty config reply); does it offer protocol feature CONFIG?",
                                 size, offset),
                     EIO);
    };
    auto bytes = reply.payload();
    if (bytes.empty())
        return refused();
    if (bytes.size() < sizeof(ConfigHeader))
        return break_with(Error(fmt::format("GET_CONFIG reply: payload is {} bytes, shorter "
                                            "than the {}-byte config header",
                                            bytes.size(), sizeof(ConfigHeader)),
                                EBADMSG));
    ConfigHeader header;
    std::memcpy(&header, bytes.data(), sizeof(header));
    if (header.size == 0 && bytes.size() == sizeof(ConfigHeader))
        return refused();
    // A back-end whose config space is shorter than asked for may answer
    // with the bytes it has: the caller decides whether that is enough.
    if (header.offset != offset || header.size > size ||
        bytes.size() != sizeof(ConfigHeader) + header.size)
        return break_with(Error(fmt::format("GET_CONFIG reply: offset {}, size {} and {} payload "
                                            "bytes for a request of offset {}, size {}",
                                            header.offset, header.size, bytes.size(), offset, size),
                                EBADMSG));
    auto data = bytes.subspan(sizeof(ConfigHeader));
    return std::vector<std::byte>(data.begin(), data.end());
}

Status Frontend::set_config(std::uint32_t offset, std::span<const std::byte> data,
                            ConfigFlags flags)
{
    VL_TRY_ASSIGN(Message message, make_config_request(Request::set_config, offset, data, flags));
    return call(Request::set_config, std::move(message));
}

// ---------------------------------------------------------------------------
// Memory

Status Frontend::set_mem_table(std::span<const SharedRegion> regions)
{
    std::vector<MemoryRegion> table;
    std::vector<int> fds;
    for (const SharedRegion& shared : regions) {
        VL_TRY(check_fd(shared.fd, Request::set_mem_table));
        table.push_back(shared.region);
        fds.push_back(shared.fd);
    }
    VL_TRY_ASSIGN(Message message, make_memory_table_request(table));
    return call(Request::set_mem_table, std::move(message), fds);
}

Result<std::uint64_t> Frontend::get_max_mem_slots()
{
    return call_u64(Request::get_max_mem_slots);
}

Status Frontend::add_mem_reg(const SharedRegion& region)
{
    VL_TRY(check_fd(region.fd, Request::add_mem_reg));
    std::array<int, 1> fds{region.fd};
    return call(Request::add_mem_reg,
                make_request(Request::add_mem_reg, SingleMemoryRegion{0, region.region}), fds);
}

Status Frontend::rem_mem_reg(const MemoryRegion& region)
{
    return call(Request::rem_mem_reg,
                make_request(Request::rem_mem_reg, SingleMemoryRegion{0, region}));
}

// ---------------------------------------------------------------------------
// Rings

Status Frontend::set_vring_num(std::uint32_t index, std::uint32_t num)
{
    return call(Request::set_vring_num,
                make_request(Request::set_vring_num, VringState{index, num}));
}

Status Frontend::set_vring_addr(const VringAddr& addr)
{
    return call(Request::set_vring_addr, make_request(Request::set_vring_addr, addr));
}

Status Frontend::set_vring_base(std::uint32_t index, std::uint32_t base)
{
    return call(Request::set_vring_base,
                make_request(Request::set_vring_base, VringState{index, base}));
}

Result<std::uint32_t> Frontend::get_vring_base(std::uint32_t index)
{
    constexpr Request request = Request::get_vring_base;
    VL_TRY_ASSIGN(Message reply,
                  call_with_reply(request, make_request(request, VringState{index, 0})));
    auto state = reply.payload_as<VringState>();
    if (!state.ok())
        return break_with(state.error());
    if (Status no_fds = expect_fd_count(reply, 0, reply.name()); !no_fds.ok())
        return break_with(no_fds.error());
    if (state->index != index)
        return break_with(Error(fmt::format("GET_VRING_BASE reply: for ring {}, but ring {} was "
                                            "asked for",
                                            state->index, index),
                                EBADMSG));
    return state->num;
}

namespace
{

// The u64 of SET_VRING_KICK/CALL/ERR.
Result<std::uint64_t> vring_fd_value(Request request, std::uint32_t index, int fd)
{
    if (index > kMaxVringFdIndex)
        return Error(fmt::format("{}: ring index {} exceeds {}, the most this message can "
                                 "address",
                                 request_name(request), index, kMaxVringFdIndex),
                     EINVAL);
    return std::uint64_t{index} | (fd < 0 ? kVringNoFdMask : 0);
}

} // namespace

Status Frontend::set_vring_fd(Request request, std::uint32_t index, int fd)
{
    VL_TRY_ASSIGN(std::uint64_t value, vring_fd_value(request, index, fd));
    std::array<int, 1> fds{fd};
    return call(request, make_request(request, value),
                fd < 0 ? std::span<const int>() : std::span<const int>(fds));
}

Status Frontend::set_vring_kick(std::uint32_t index, int fd)
{
    return set_vring_fd(Request::set_vring_kick, index, fd);
}

Status Frontend::set_vring_call(std::uint32_t index, int fd)
{
    return set_vring_fd(Request::set_vring_call, index, fd);
}

Status Frontend::set_vring_err(std::uint32_t index, int fd)
{
    return set_vring_fd(Request::set_vring_err, index, fd);
}

Status Frontend::set_vring_enable(std::uint32_t index, bool enable)
{
    return call(Request::set_vring_enable,
                make_request(Request::set_vring_enable, VringState{index, enable ? 1U : 0U}));
}

// ---------------------------------------------------------------------------
// Optional features

Status Frontend::set_backend_req_fd(int fd)
{
    VL_TRY(check_fd(fd, Request::set_backend_req_fd));
    std::array<int, 1> fds{fd};
    return call(Request::set_backend_req_fd, make_request(Request::set_backend_req_fd), fds);
}

Result<InflightFd> Frontend::get_inflight_fd(std::uint16_t num_queues, std::uint16_t queue_size)
{
    constexpr Request request = Request::get_inflight_fd;
    InflightDescription ask{0, 0, num_queues, queue_size, 0};
    VL_TRY_ASSIGN(Message reply, call_with_reply(request, make_request(request, ask)));
    auto answer = reply.payload_as<InflightDescription>();
    if (!answer.ok())
        return break_with(answer.error());
    std::size_t expected_fds = answer->mmap_size != 0 ? 1 : 0;
    if (Status fds = expect_fd_count(reply, expected_fds, reply.name()); !fds.ok())
        return break_with(fds.error());
    return InflightFd{*answer, reply.take_fd(0)};
}

Status Frontend::set_inflight_fd(const InflightDescription& description, int fd)
{
    VL_TRY(check_fd(fd, Request::set_inflight_fd));
    std::array<int, 1> fds{fd};
    return call(Request::set_inflight_fd, make_request(Request::set_inflight_fd, description), fds);
}

Status Frontend::set_status(std::uint8_t status)
{
    return call(Request::set_status, make_request(Request::set_status, std::uint64_t{status}));
}

Result<std::uint8_t> Frontend::get_status()
{
    VL_TRY_ASSIGN(std::uint64_t status, call_u64(Request::get_status));
    if (status > 0xff)
        return break_with(Error(fmt::format("GET_STATUS reply: status {:#x} does not fit the "
                                            "8-bit virtio status",
                                            status),
                                EBADMSG));
    return static_cast<std::uint8_t>(status);
}

} // namespace vl::vhost_user
