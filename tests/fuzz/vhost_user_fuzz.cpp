// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the vhost-user codec, connection framing, back-end
// dispatch, front-end reply checking and back-end channel parsing, fed
// hostile bytes and real fds.
//
// Input: one control byte, then a byte stream of messages.
//
//   byte 0   bits 0-3  fd perturbation: each message gets the fds a valid
//                      message of its kind carries (real fds: /dev/null
//                      and eventfds), except message number (bits 0-1),
//                      which gets bits 2-3 = 0: as many, 1: one more,
//                      2: one fewer, 3: nine more (over the limit)
//            bits 4-5  mode:
//                      0  stream -> socket -> Connection::receive ->
//                         BackendDispatcher (the back-end's path)
//                      1  stream cut into Messages directly -> codec
//                         (validate, and every typed decoder, validated or
//                         not) -> BackendDispatcher
//                      2  stream as the back-end's replies to a Frontend
//                         making a full set-up sequence of calls
//                      3  stream -> socket -> back-end channel requests, as
//                         the front-end receives and answers them
//            bit 6     negotiate REPLY_ACK with the dispatcher first
//   rest     the stream
//
// Checks, besides "no crash, no sanitizer report, no hang": every reply the
// dispatcher builds passes the front-end's reply validation, and no fd is
// left open after the input (counted in /proc/self/fd).
#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <vector>

#include "base/log.hpp"
#include "vhost_user/backend_channel.hpp"
#include "vhost_user/backend_dispatch.hpp"
#include "vhost_user/connection.hpp"
#include "vhost_user/frontend.hpp"
#include "vhost_user/message.hpp"

namespace
{

using namespace vl;
using namespace vl::vhost_user;

// Fails loudly: libFuzzer reports the input.
void check(bool condition, const char* what)
{
    if (!condition) {
        std::fprintf(stderr, "vhost_user_fuzz: check failed: %s\n", what);
        __builtin_trap();
    }
}

int count_open_fds()
{
    DIR* dir = ::opendir("/proc/self/fd");
    check(dir != nullptr, "opendir /proc/self/fd");
    int n = 0;
    while (dirent* entry = ::readdir(dir))
        if (entry->d_name[0] != '.')
            ++n;
    ::closedir(dir);
    return n;
}

// Alternating /dev/null and eventfds: what the messages carry does not
// matter to the protocol layer, only that they are real and get closed.
std::vector<UniqueFd> fake_fds(std::size_t count)
{
    std::vector<UniqueFd> fds;
    for (std::size_t i = 0; i < count; ++i) {
        int fd = (i % 2 == 0) ? ::open("/dev/null", O_RDWR | O_CLOEXEC)
                              : ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        check(fd >= 0, "cannot create a fake fd");
        fds.emplace_back(fd);
    }
    return fds;
}

UniqueFd fresh_eventfd()
{
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    check(fd.valid(), "eventfd");
    return fd;
}

// Accepts every request; hands out fds where a reply carries one.
class AcceptAll final : public BackendHandler
{
  public:
    Status set_owner() override { return ok_status(); }
    Status reset_device() override { return ok_status(); }
    Result<std::uint64_t> get_features() override { return ~std::uint64_t{0}; }
    Status set_features(std::uint64_t) override { return ok_status(); }
    Result<std::uint64_t> get_protocol_features() override { return ~std::uint64_t{0}; }
    Status set_protocol_features(std::uint64_t) override { return ok_status(); }
    Result<std::uint64_t> get_queue_num() override { return std::uint64_t{8}; }
    Status set_mem_table(std::vector<RegionFd> regions) override
    {
        check(!regions.empty() && regions.size() <= kMaxMemoryRegions, "region count");
        for (const RegionFd& r : regions)
            check(r.fd.valid() && r.region.memory_size != 0, "region validated");
        return ok_status();
    }
    Result<std::uint64_t> get_max_mem_slots() override { return std::uint64_t{509}; }
    Status add_mem_region(RegionFd region) override
    {
        check(region.fd.valid(), "ADD_MEM_REG has its fd");
        return ok_status();
    }
    Status remove_mem_region(const MemoryRegion&) override { return ok_status(); }
    Status set_vring_num(std::uint32_t, std::uint32_t) override { return ok_status(); }
    Status set_vring_addr(const VringAddr&) override { return ok_status(); }
    Status set_vring_base(std::uint32_t, std::uint32_t) override { return ok_status(); }
    Result<std::uint32_t> get_vring_base(std::uint32_t index) override { return index; }
    Status set_vring_kick(std::uint32_t index, UniqueFd) override { return ring(index); }
    Status set_vring_call(std::uint32_t index, UniqueFd) override { return ring(index); }
    Status set_vring_err(std::uint32_t index, UniqueFd) override { return ring(index); }
    Status set_vring_enable(std::uint32_t, bool) override { return ok_status(); }
    Status vring_kick(std::uint32_t) override { return ok_status(); }
    Result<std::vector<std::byte>> get_config(std::uint32_t offset, std::uint32_t size,
                                              ConfigFlags) override
    {
        check(size >= 1 && offset + std::uint64_t{size} <= kMaxConfigSize, "config bounds");
        return std::vector<std::byte>(size, std::byte{0x5a});
    }
    Status set_config(std::uint32_t offset, std::span<const std::byte> data, ConfigFlags) override
    {
        check(!data.empty() && offset + data.size() <= kMaxConfigSize, "config bounds");
        return ok_status();
    }
    Status set_backend_req_fd(UniqueFd fd) override
    {
        check(fd.valid(), "backend req fd");
        return ok_status();
    }
    Result<InflightFd> get_inflight_fd(std::uint16_t num_queues, std::uint16_t queue_size) override
    {
        if (num_queues == 0)
            return InflightFd{InflightDescription{0, 0, 0, queue_size, 0}, UniqueFd()};
        return InflightFd{InflightDescription{4096, 0, num_queues, queue_size, 0}, fresh_eventfd()};
    }
    Status set_inflight_fd(const InflightDescription&, UniqueFd) override { return ok_status(); }
    Status set_status(std::uint8_t) override { return ok_status(); }
    Result<std::uint8_t> get_status() override { return std::uint8_t{0x0f}; }
    Status set_log_base(const LogDescription&, UniqueFd) override { return ok_status(); }
    Status set_log_fd(UniqueFd) override { return ok_status(); }
    Status send_rarp(std::array<std::uint8_t, 6>) override { return ok_status(); }
    Status net_set_mtu(std::uint64_t) override { return ok_status(); }
    Status iotlb_msg(const IotlbMessage&) override { return ok_status(); }
    Status set_vring_endian(std::uint32_t, bool) override { return ok_status(); }
    Result<std::optional<UniqueFd>> set_device_state_fd(TransferDirection, MigrationPhase,
                                                        UniqueFd fd) override
    {
        // Hand the fd straight back: exercises a reply that carries one.
        return std::optional<UniqueFd>(std::move(fd));
    }
    Status check_device_state() override { return ok_status(); }

  private:
    static Status ring(std::uint32_t index)
    {
        check(index <= kMaxVringFdIndex, "vring fd index");
        return ok_status();
    }
};

Logger silent_logger()
{
    return Logger("fuzz", LogLevel::error);
}

// Every reply the dispatcher builds must be one our front-end accepts.
void check_reply(const Message& request, const std::optional<Message>& reply)
{
    if (!reply)
        return;
    check(reply->request() == request.request(), "reply echoes the request number");
    check(reply->flags() == (kVersion | kReplyFlag), "reply flags");
    check(reply->fd_count() <= kMaxFdsPerMessage, "reply fd count");
    if (request.request() >= kFirstRequest && request.request() <= kLastRequest)
        check(validate_reply_header(*reply, static_cast<Request>(request.request())).ok(),
              "reply header passes the front-end's check");
}

void dispatch_one(BackendDispatcher& dispatcher, Message m)
{
    Header header = m.header();
    Message copy_of_header(header.request, header.flags);
    auto reply = dispatcher.dispatch(std::move(m));
    if (reply.ok())
        check_reply(copy_of_header, *reply);
    else
        check(!reply.error().message().empty(), "errors carry a message");
}

void negotiate_reply_ack(BackendDispatcher& dispatcher)
{
    auto r = dispatcher.dispatch(
        make_request(Request::set_protocol_features, bit(ProtocolFeature::reply_ack) |
                                                         bit(ProtocolFeature::backend_req) |
                                                         bit(ProtocolFeature::config)));
    check(r.ok() && dispatcher.reply_ack_enabled(), "REPLY_ACK negotiation");
}

// What a stream carries (request numbers mean different things on each).
enum class Stream { requests, replies, backend_requests };

// How many fds a message of this header and payload carries when valid:
// the smallest count (0..8) that the codec accepts, else 0. (Placeholder
// fds: validation only counts them.)
std::size_t fds_a_valid_message_has(const Header& header, std::span<const std::uint8_t> payload,
                                    Stream stream)
{
    if (stream == Stream::replies) // only a GET_INFLIGHT_FD reply carries one
        return header.request == to_code(Request::get_inflight_fd) ? 1 : 0;
    std::vector<std::byte> bytes(payload.size());
    if (!payload.empty())
        std::memcpy(bytes.data(), payload.data(), payload.size());
    for (std::size_t n = 0; n <= kMaxFdsPerMessage; ++n) {
        std::vector<UniqueFd> placeholders(n);
        Message m(header.request, header.flags, bytes, std::move(placeholders));
        bool valid = stream == Stream::requests ? validate_request(m).ok()
                                                : validate_backend_request(m).ok();
        if (valid)
            return n;
    }
    return 0;
}

// The fd count for message `index` after the control byte's perturbation.
std::size_t perturb(std::size_t valid, std::size_t index, std::uint8_t perturbation)
{
    if (index != (perturbation & 0x3))
        return valid;
    switch ((perturbation >> 2) & 0x3) {
    case 1:
        return valid + 1;
    case 2:
        return valid == 0 ? 0 : valid - 1;
    case 3:
        return valid + 9;
    default:
        return valid;
    }
}

bool send_chunk(int to, std::span<const std::uint8_t> chunk, std::size_t nfds)
{
    std::vector<UniqueFd> fds = fake_fds(nfds); // closed here; the copies travel
    std::vector<int> raw;
    for (const UniqueFd& fd : fds)
        raw.push_back(fd.get());
    iovec iov{const_cast<std::uint8_t*>(chunk.data()), chunk.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) std::array<std::byte, CMSG_SPACE(sizeof(int) * 32)> control{};
    if (!raw.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = CMSG_SPACE(raw.size() * sizeof(int));
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        check(c != nullptr, "cmsg room");
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(raw.size() * sizeof(int));
        std::memcpy(CMSG_DATA(c), raw.data(), raw.size() * sizeof(int));
    }
    // Non-blocking: what does not fit is dropped (the stream just ends).
    ssize_t n = ::sendmsg(to, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n == static_cast<ssize_t>(chunk.size());
}

// Writes `stream` into socket `to` one framed message per sendmsg, each with
// its fds (see the control byte), then ends the stream. Framing follows the
// headers' sizes; a header claiming more than is left just gets the rest, so
// the reader sees a torn message.
void feed(int to, std::span<const std::uint8_t> stream, std::uint8_t perturbation, Stream kind)
{
    for (std::size_t index = 0; !stream.empty(); ++index) {
        if (stream.size() < kHeaderSize) {
            send_chunk(to, stream, 0);
            break;
        }
        Header header;
        std::memcpy(&header, stream.data(), kHeaderSize);
        std::size_t size = std::min<std::size_t>(header.size, stream.size() - kHeaderSize);
        std::size_t nfds =
            perturb(fds_a_valid_message_has(header, stream.subspan(kHeaderSize, size), kind), index,
                    perturbation);
        if (!send_chunk(to, stream.first(kHeaderSize + size), nfds))
            break;
        stream = stream.subspan(kHeaderSize + size);
    }
    ::shutdown(to, SHUT_WR);
}

void backend_over_socket(std::span<const std::uint8_t> stream, std::uint8_t perturbation,
                         bool reply_ack)
{
    auto pair = Connection::pair();
    check(pair.ok(), "socketpair");
    feed(pair->first.fd(), stream, perturbation, Stream::requests);
    AcceptAll handler;
    BackendDispatcher dispatcher(handler, silent_logger());
    if (reply_ack)
        negotiate_reply_ack(dispatcher);
    // Every receive either yields a message or ends the loop: the stream was
    // shut down, so nothing can block.
    for (;;) {
        auto m = pair->second.receive();
        if (!m.ok())
            break;
        check(m->fd_count() <= kMaxFdsPerMessage, "fd limit");
        check(m->payload().size() <= kMaxPayloadSize, "size limit");
        dispatch_one(dispatcher, std::move(m).value());
    }
}

// Every decoder must cope with unvalidated input (it re-checks).
void decode_everything(const Message& original)
{
    auto copy = [&] {
        return Message(original.request(), original.flags(),
                       std::vector<std::byte>(original.payload().begin(), original.payload().end()),
                       fake_fds(original.fd_count()));
    };
    Message a = copy();
    (void)take_memory_table(a);
    Message b = copy();
    (void)take_single_region(b);
    Message c = copy();
    (void)take_vring_fd(c);
    (void)read_config(original);
    (void)read_u64(original);
    (void)original.payload_as<VringAddr>();
    (void)validate_backend_request(original);
    for (std::uint32_t code = kFirstRequest; code <= kLastRequest; code += 7)
        (void)validate_reply_header(original, static_cast<Request>(code));
}

void backend_direct(std::span<const std::uint8_t> stream, std::uint8_t perturbation, bool reply_ack)
{
    AcceptAll handler;
    BackendDispatcher dispatcher(handler, silent_logger());
    if (reply_ack)
        negotiate_reply_ack(dispatcher);
    for (std::size_t index = 0; stream.size() >= kHeaderSize; ++index) {
        Header header;
        std::memcpy(&header, stream.data(), kHeaderSize);
        stream = stream.subspan(kHeaderSize);
        // The payload the header claims, or what is left: sizes may disagree.
        std::size_t take = std::min<std::size_t>(header.size, stream.size());
        std::vector<std::byte> payload(take);
        if (take != 0)
            std::memcpy(payload.data(), stream.data(), take);
        std::size_t nfds =
            perturb(fds_a_valid_message_has(header, stream.first(take), Stream::requests), index,
                    perturbation);
        stream = stream.subspan(take);
        Message m(header.request, header.flags, std::move(payload), fake_fds(nfds));
        decode_everything(m);
        dispatch_one(dispatcher, std::move(m));
    }
}

void frontend_against_replies(std::span<const std::uint8_t> stream, std::uint8_t perturbation)
{
    auto pair = Connection::pair();
    check(pair.ok(), "socketpair");
    feed(pair->second.fd(), stream, perturbation, Stream::replies);
    // A short timeout: the stream is shut down, so this only guards against
    // a bug that would wait for more.
    Frontend fe(std::move(pair->first), FrontendOptions{std::chrono::milliseconds(1000)});
    UniqueFd memory = fresh_eventfd(), kick = fresh_eventfd();
    std::array<SharedRegion, 1> table{{{MemoryRegion{0, 0x1000, 0x1000, 0}, memory.get()}}};
    (void)fe.get_features();
    (void)fe.get_protocol_features();
    (void)fe.set_protocol_features(bit(ProtocolFeature::reply_ack));
    (void)fe.set_owner();
    (void)fe.get_queue_num();
    (void)fe.get_config(0, 16);
    (void)fe.set_mem_table(table);
    (void)fe.set_vring_num(0, 256);
    (void)fe.set_vring_kick(0, kick.get());
    (void)fe.get_vring_base(0);
    auto inflight = fe.get_inflight_fd(1, 128);
    if (inflight.ok())
        check(inflight->description.mmap_size == 0 || inflight->fd.valid(), "inflight fd");
    (void)fe.get_status();
    (void)fe.get_max_mem_slots();
    // The front-end's own requests pile up unread in the other end: a few
    // hundred bytes, far below a socket buffer, so no send ever blocks.
}

void frontend_channel(std::span<const std::uint8_t> stream, std::uint8_t perturbation,
                      bool reply_ack)
{
    auto pair = Connection::pair();
    check(pair.ok(), "socketpair");
    feed(pair->first.fd(), stream, perturbation, Stream::backend_requests);
    for (int i = 0; i < 64; ++i) {
        auto request = receive_backend_request(pair->second);
        if (!request.ok()) {
            if (peer_closed(request.error()))
                break;
            continue; // a bad message; the stream may still hold more
        }
        (void)answer_backend_request(pair->second, request->message, true, reply_ack);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 1)
        return 0;
    const int fds_before = count_open_fds();
    {
        std::uint8_t control = data[0];
        std::uint8_t perturbation = control & 0xf;
        unsigned mode = (control >> 4) & 0x3;
        bool reply_ack = (control & 0x40) != 0;
        std::span<const std::uint8_t> stream(data + 1, size - 1);
        // The socket modes write the whole stream before reading; keep it
        // well within a socket buffer (the rest would be dropped anyway).
        if (stream.size() > 65536)
            stream = stream.first(65536);
        switch (mode) {
        case 0:
            backend_over_socket(stream, perturbation, reply_ack);
            break;
        case 1:
            backend_direct(stream, perturbation, reply_ack);
            break;
        case 2:
            frontend_against_replies(stream, perturbation);
            break;
        default:
            frontend_channel(stream, perturbation, reply_ack);
            break;
        }
    }
    check(count_open_fds() == fds_before, "an fd leaked");
    return 0;
}
