// SPDX-License-Identifier: Apache-2.0
// A vhost-user message as a value (header, payload bytes, owned fds) and the
// codec: strict validation of what arrives, typed decoding, and encoding.
//
// Validation happens in two steps. validate_request() (or the reply and
// back-end channel variants) checks everything that the protocol fixes for
// a request number: header flags, payload size and shape, and the number of
// fds. The typed decoders then turn a validated message into values; they
// re-check what they rely on, so calling one on an unvalidated message
// returns an error instead of reading out of bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "vhost_user/protocol.hpp"

namespace vl::vhost_user
{

class Message
{
  public:
    Message() = default;
    // header.size is always payload.size(): the constructor sets it.
    Message(std::uint32_t request, std::uint32_t flags, std::vector<std::byte> payload = {},
            std::vector<UniqueFd> fds = {});

    // A message whose payload is one wire struct (or a u64).
    template <class T>
    requires kIsWireStruct<T>
    static Message with_payload(std::uint32_t request, std::uint32_t flags, const T& body,
                                std::vector<UniqueFd> fds = {})
    {
        std::vector<std::byte> bytes(sizeof(T));
        std::memcpy(bytes.data(), &body, sizeof(T));
        return Message(request, flags, std::move(bytes), std::move(fds));
    }

    [[nodiscard]] const Header& header() const noexcept { return header_; }
    [[nodiscard]] std::uint32_t request() const noexcept { return header_.request; }
    [[nodiscard]] std::uint32_t flags() const noexcept { return header_.flags; }
    [[nodiscard]] bool is_reply() const noexcept { return (header_.flags & kReplyFlag) != 0; }
    [[nodiscard]] bool needs_reply() const noexcept
    {
        return (header_.flags & kNeedReplyFlag) != 0;
    }
    [[nodiscard]] std::span<const std::byte> payload() const noexcept { return payload_; }
    // Sets or clears NEED_REPLY (a front-end decides it at send time).
    void set_need_reply(bool need_reply) noexcept
    {
        header_.flags =
            need_reply ? (header_.flags | kNeedReplyFlag) : (header_.flags & ~kNeedReplyFlag);
    }

    [[nodiscard]] std::size_t fd_count() const noexcept { return fds_.size(); }
    [[nodiscard]] std::span<const UniqueFd> fds() const noexcept { return fds_; }
    // Moves fd `index` out (an invalid UniqueFd if there is none).
    [[nodiscard]] UniqueFd take_fd(std::size_t index);
    [[nodiscard]] std::vector<UniqueFd> take_fds() { return std::move(fds_); }
    void close_fds() noexcept { fds_.clear(); }

    // "SET_VRING_NUM" or "GET_FEATURES reply", for error messages. Names
    // front-end requests; back-end channel code names its own messages.
    [[nodiscard]] std::string name() const;

    // The payload as T if it is exactly sizeof(T) bytes, else
    // "SET_VRING_NUM: payload is 4 bytes, expected 8".
    template <class T> Result<T> payload_as() const;

  private:
    Header header_;
    std::vector<std::byte> payload_;
    std::vector<UniqueFd> fds_;
};

// The payload of `m` as T if it is exactly sizeof(T) bytes; `what` names the
// message in the error ("SET_VRING_NUM: payload is 4 bytes, expected 8").
template <class T>
requires kIsWireStruct<T> Result<T> read_payload(const Message& m, std::string_view what)
{
    if (m.payload().size() != sizeof(T))
        return Error(std::string(what) + ": payload is " + std::to_string(m.payload().size()) +
                         " bytes, expected " + std::to_string(sizeof(T)),
                     EBADMSG);
    T value;
    std::memcpy(&value, m.payload().data(), sizeof(T));
    return value;
}

template <class T> Result<T> Message::payload_as() const
{
    return read_payload<T>(*this, name());
}

// ---------------------------------------------------------------------------
// Validation

// A front-end request as a back-end receives it: version 1, no REPLY flag,
// no undefined flag bits, a known request number ("unknown request 99"),
// the payload size (exact, or within bounds for SET_MEM_TABLE and the config
// requests) and the number of fds the request carries. Any extra fd fails
// validation (the message still owns and closes them).
Result<Request> validate_request(const Message& m);

// A reply to `sent` as the front-end receives it: same request number,
// version 1, REPLY set, NEED_REPLY clear. Payload and fds are checked by the
// caller, which knows what it asked for.
Status validate_reply_header(const Message& reply, Request sent);

// A back-end channel request as the front-end receives it.
Result<BackendRequest> validate_backend_request(const Message& m);
// The front-end's reply to a back-end channel request (a u64 ack).
Status validate_backend_reply_header(const Message& reply, BackendRequest sent);

// Errors unless `m` carries exactly `expected` fds.
Status expect_fd_count(const Message& m, std::size_t expected, std::string_view what);

// Whether the spec defines a reply for this request regardless of
// REPLY_ACK (GET_* and a few others). NEED_REPLY changes nothing for them.
bool request_has_reply(Request request);

// ---------------------------------------------------------------------------
// Typed decoding (taking fds moves them out of the message)

struct RegionFd {
    MemoryRegion region;
    UniqueFd fd;
};

// SET_VRING_KICK/CALL/ERR: fd is invalid when the no-fd bit was set.
struct VringFd {
    std::uint32_t index = 0;
    UniqueFd fd;
};

// GET_CONFIG/SET_CONFIG. For GET_CONFIG, data holds `size` bytes of
// whatever the front-end sent (usually zeros).
struct ConfigAccess {
    std::uint32_t offset = 0;
    ConfigFlags flags = ConfigFlags::writable;
    std::vector<std::byte> data;
};

Result<std::uint64_t> read_u64(const Message& m);
Result<std::vector<RegionFd>> take_memory_table(Message& m);
// ADD_MEM_REG (with its fd) and REM_MEM_REG (fd invalid; a stray fd that
// some front-ends send is closed, as the spec asks).
Result<RegionFd> take_single_region(Message& m);
Result<VringFd> take_vring_fd(Message& m);
Result<ConfigAccess> read_config(const Message& m);

// ---------------------------------------------------------------------------
// Encoding

// Flags of a request we send: version 1, plus NEED_REPLY if asked.
[[nodiscard]] constexpr std::uint32_t request_flags(bool need_reply) noexcept
{
    return kVersion | (need_reply ? kNeedReplyFlag : 0);
}
inline constexpr std::uint32_t kReplyFlags = kVersion | kReplyFlag;

Message make_request(Request request, bool need_reply = false);
template <class T>
requires kIsWireStruct<T> Message make_request(Request request, const T& body,
                                               bool need_reply = false)
{
    return Message::with_payload(to_code(request), request_flags(need_reply), body);
}
// SET_MEM_TABLE payload for 1..8 regions (the fds go alongside).
Result<Message> make_memory_table_request(std::span<const MemoryRegion> regions,
                                          bool need_reply = false);
// GET_CONFIG (data zero-filled, `size` bytes) and SET_CONFIG.
Result<Message> make_config_request(Request request, std::uint32_t offset,
                                    std::span<const std::byte> data, ConfigFlags flags,
                                    bool need_reply = false);
// A config payload: ConfigHeader then data (used by requests and replies).
std::vector<std::byte> encode_config(std::uint32_t offset, std::span<const std::byte> data,
                                     ConfigFlags flags);

// A reply to `request` (same request number, version 1, REPLY set).
Message make_reply(const Header& request, std::vector<std::byte> payload = {},
                   std::vector<UniqueFd> fds = {});
template <class T>
requires kIsWireStruct<T> Message make_reply(const Header& request, const T& body,
                                             std::vector<UniqueFd> fds = {})
{
    return Message::with_payload(request.request, kReplyFlags, body, std::move(fds));
}
// A u64 reply, as for REPLY_ACK: 0 success, non-zero failure.
Message make_u64_reply(const Header& request, std::uint64_t value);

// Back-end channel: BACKEND_CONFIG_CHANGE_MSG and friends.
Message make_backend_request(BackendRequest request, bool need_reply = false);
template <class T>
requires kIsWireStruct<T> Message make_backend_request(BackendRequest request, const T& body,
                                                       bool need_reply = false)
{
    return Message::with_payload(to_code(request), request_flags(need_reply), body);
}

} // namespace vl::vhost_user
