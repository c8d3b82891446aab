// SPDX-License-Identifier: Apache-2.0
// Malformed and illegal requests: the back-end logs an error and closes the
// connection (after a failure ack when one was asked for), never crashes,
// and leaks nothing. Refusals of well-formed requests are in session_test.
#include <sys/socket.h>

#include <functional>

#include "harness.hpp"

namespace vl::backend::test
{
namespace
{

using vhost_user::Message;
using vhost_user::Request;
using vhost_user::to_code;
using vhost_user::test::bytes_of;
using vhost_user::test::make_eventfd;

constexpr std::uint32_t kV = vhost_user::kVersion;

// Sends bytes with `fds` attached in one sendmsg (bypassing the codec's and
// the connection's checks, as a hostile front-end would).
void send_raw(int socket, std::span<const std::byte> bytes, std::span<const int> fds)
{
    iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<std::byte> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        ASSERT_NE(c, nullptr);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_EQ(::sendmsg(socket, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
}

std::vector<std::byte> header_bytes(std::uint32_t request, std::uint32_t flags, std::uint32_t size)
{
    return bytes_of(vhost_user::Header{request, flags, size});
}

Message memory_table(std::vector<vhost_user::MemoryRegion> regions, std::vector<UniqueFd> fds)
{
    auto bytes =
        bytes_of(vhost_user::MemoryTableHeader{static_cast<std::uint32_t>(regions.size()), 0});
    for (const auto& r : regions) {
        auto more = bytes_of(r);
        bytes.insert(bytes.end(), more.begin(), more.end());
    }
    return Message(to_code(Request::set_mem_table), kV, std::move(bytes), std::move(fds));
}

UniqueFd dup_fd(int fd)
{
    return UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

std::vector<UniqueFd> fds(UniqueFd a, UniqueFd b = {})
{
    std::vector<UniqueFd> v;
    v.push_back(std::move(a));
    if (b)
        v.push_back(std::move(b));
    return v;
}

Message vring_state(Request r, std::uint32_t index, std::uint32_t num, std::uint32_t flags = kV)
{
    return Message(to_code(r), flags, bytes_of(vhost_user::VringState{index, num}));
}

struct Case {
    std::string name;
    // What the error that ends the session says.
    std::string reason;
    // Requests that come first (valid ones, to reach the state to break).
    std::function<void(vhost_user::Frontend&, GuestRam&)> prepare;
    // Sends the bad request.
    std::function<void(vhost_user::Connection&, GuestRam&)> send;
};

// GoogleTest names a case by this; its default prints the object's bytes,
// padding included (which valgrind rightly calls uninitialised).
void PrintTo(const Case& c, std::ostream* os)
{
    *os << c.name;
}

void memory_and_size(vhost_user::Frontend& f, GuestRam& ram)
{
    ASSERT_TRUE(f.set_mem_table(std::vector{ram.whole()}).ok());
    ASSERT_TRUE(f.set_vring_num(0, 16).ok());
}

void send(vhost_user::Connection& c, const Message& m)
{
    ASSERT_TRUE(c.send(m).ok());
}

std::vector<Case> cases()
{
    const auto nothing = [](vhost_user::Frontend&, GuestRam&) {};
    std::vector<Case> v;
    v.push_back({"WrongPayloadSize", "payload is 4 bytes", nothing, [](auto& c, auto&) {
                     send(c,
                          Message(to_code(Request::set_vring_num), kV, std::vector<std::byte>(4)));
                 }});
    v.push_back(
        {"KickWithoutFdOrNoFdBit", "0 file descriptors attached", nothing, [](auto& c, auto&) {
             send(c, Message(to_code(Request::set_vring_kick), kV, bytes_of(std::uint64_t{0})));
         }});
    v.push_back({"CallWithTwoFds", "2 file descriptors attached", nothing, [](auto& c, auto&) {
                     send(c,
                          Message(to_code(Request::set_vring_call), kV, bytes_of(std::uint64_t{0}),
                                  fds(make_eventfd(), make_eventfd())));
                 }});
    v.push_back({"NineFdsInOneMessage", "more than 8 fds", nothing, [](auto& c, auto&) {
                     std::vector<UniqueFd> owned;
                     std::vector<int> raw;
                     for (int i = 0; i < 9; ++i) {
                         owned.push_back(make_eventfd());
                         raw.push_back(owned.back().get());
                     }
                     auto bytes = header_bytes(to_code(Request::set_vring_call), kV, 8);
                     auto payload = bytes_of(std::uint64_t{0});
                     bytes.insert(bytes.end(), payload.begin(), payload.end());
                     send_raw(c.fd(), bytes, raw);
                 }});
    v.push_back(
        {"PayloadOverTheSizeLimit", "exceeds the 4096-byte limit", nothing, [](auto& c, auto&) {
             auto bytes = header_bytes(to_code(Request::set_mem_table), kV, 100000);
             bytes.resize(bytes.size() + 64);
             send_raw(c.fd(), bytes, {});
         }});
    v.push_back({"ReplyFlagOnARequest", "REPLY flag", nothing, [](auto& c, auto&) {
                     send(c, Message(to_code(Request::set_owner), kV | vhost_user::kReplyFlag));
                 }});
    v.push_back({"UnknownRequest", "unknown request 99", nothing,
                 [](auto& c, auto&) { send(c, Message(99, kV)); }});
    v.push_back({"MemoryTableWithoutFds", "0 file descriptors for 1 regions", nothing,
                 [](auto& c, auto& ram) { send(c, memory_table({ram.whole().region}, {})); }});
    v.push_back({"OverlappingRegions", "overlaps", nothing, [](auto& c, auto& ram) {
                     auto a = ram.region(0, 1 << 20).region;
                     auto b = ram.region(512 << 10, 1 << 20).region;
                     b.userspace_addr += 16 << 20; // only the guest ranges overlap
                     send(c, memory_table({a, b}, fds(dup_fd(ram.fd()), dup_fd(ram.fd()))));
                 }});
    v.push_back(
        {"RegionBeyondTheEndOfItsFile", "but the file has only", nothing, [](auto& c, auto& ram) {
             auto r = ram.whole().region;
             r.memory_size *= 2;
             send(c, memory_table({r}, fds(dup_fd(ram.fd()))));
         }});
    v.push_back(
        {"MmapOffsetBeyondTheFile", "but the file has only", nothing, [](auto& c, auto& ram) {
             auto r = ram.region(0, 4096).region;
             r.mmap_offset = ram.size();
             send(c, memory_table({r}, fds(dup_fd(ram.fd()))));
         }});
    v.push_back({"RingOutsideEveryRegion", "not inside one memory region", memory_and_size,
                 [](auto& c, auto& ram) {
                     send(c, Message::with_payload(
                                 to_code(Request::set_vring_addr), kV,
                                 vhost_user::VringAddr{0, 0, ram.user(0) + ram.size(),
                                                       ram.user(0x2000), ram.user(0x1000), 0}));
                 }});
    v.push_back({"RingStraddlingTheEndOfMemory", "not inside one memory region", memory_and_size,
                 [](auto& c, auto& ram) {
                     send(c, Message::with_payload(
                                 to_code(Request::set_vring_addr), kV,
                                 vhost_user::VringAddr{0, 0, ram.user(ram.size() - 64),
                                                       ram.user(0x2000), ram.user(0x1000), 0}));
                 }});
    v.push_back({"MisalignedRing", "misaligned", memory_and_size, [](auto& c, auto& ram) {
                     send(c, Message::with_payload(to_code(Request::set_vring_addr), kV,
                                                   vhost_user::VringAddr{0, 0, ram.user(8),
                                                                         ram.user(0x2000),
                                                                         ram.user(0x1000), 0}));
                 }});
    for (std::uint32_t size : {0U, 3U, 512U, 65536U, 0xffffffffU})
        v.push_back(
            {"AbsurdQueueSize" + std::to_string(size), "is invalid", nothing,
             [size](auto& c, auto&) { send(c, vring_state(Request::set_vring_num, 0, size)); }});
    v.push_back({"RingIndexOutOfRange", "out of range", nothing,
                 [](auto& c, auto&) { send(c, vring_state(Request::set_vring_num, 7, 16)); }});
    v.push_back({"RingBaseBeyond16Bits", "16-bit", nothing, [](auto& c, auto&) {
                     send(c, vring_state(Request::set_vring_base, 0, 0x10000));
                 }});
    v.push_back(
        {"FeaturesThatWereNotOffered", "not offered", nothing, [](auto& c, auto&) {
             send(c, Message(to_code(Request::set_features), kV, bytes_of(std::uint64_t{1} << 60)));
         }});
    v.push_back(
        {"ProtocolFeaturesThatWereNotOffered", "not offered", nothing, [](auto& c, auto&) {
             send(c, Message(to_code(Request::set_protocol_features), kV,
                             bytes_of(vhost_user::bit(vhost_user::ProtocolFeature::log_shmfd))));
         }});
    v.push_back({"InflightBufferTooSmall", "too small",
                 [](vhost_user::Frontend& f, GuestRam&) {
                     ASSERT_TRUE(f.set_protocol_features(
                                      vhost_user::bit(vhost_user::ProtocolFeature::inflight_shmfd))
                                     .ok());
                 },
                 [](auto& c, auto& ram) {
                     send(c, Message::with_payload(to_code(Request::set_inflight_fd), kV,
                                                   vhost_user::InflightDescription{16, 0, 1, 16, 0},
                                                   fds(dup_fd(ram.fd()))));
                 }});
    return v;
}

class Malformed : public FdLeakTest, public ::testing::WithParamInterface<Case>
{
};

TEST_P(Malformed, LogsAndClosesTheConnection)
{
    TestDevice device;
    GuestRam ram;
    {
        ServedSession s(device);
        GetParam().prepare(s.frontend(), ram);
        GetParam().send(s.frontend().connection(), ram);
        ASSERT_TRUE(s.ended_within(5s)) << "the back-end kept the connection open";
        EXPECT_FALSE(s.final_result().ok()) << "the session ended without an error";
        if (!s.final_result().ok()) {
            EXPECT_NE(s.final_result().error().message().find(GetParam().reason), std::string::npos)
                << s.final_result().error().message();
        }
        auto eof = s.frontend().connection().receive();
        ASSERT_FALSE(eof.ok());
        EXPECT_TRUE(vhost_user::peer_closed(eof.error())) << eof.error().message();
    }
    EXPECT_EQ(device.resets.load(), 1) << "the session's state was torn down";
}

INSTANTIATE_TEST_SUITE_P(Requests, Malformed, ::testing::ValuesIn(cases()),
                         [](const auto& param_info) { return param_info.param.name; });

class MalformedSession : public FdLeakTest
{
};

// With REPLY_ACK the front-end asked for an answer: it gets a failure ack,
// and then the connection closes all the same.
TEST_F(MalformedSession, ViolationWithNeedReplyIsAnsweredThenClosed)
{
    TestDevice device;
    ServedSession s(device);
    auto& f = s.frontend();
    ASSERT_TRUE(
        f.set_protocol_features(vhost_user::bit(vhost_user::ProtocolFeature::reply_ack)).ok());
    auto& c = f.connection();
    ASSERT_TRUE(
        c.send(vring_state(Request::set_vring_num, 0, 3, kV | vhost_user::kNeedReplyFlag)).ok());
    auto ack = c.receive();
    ASSERT_TRUE(ack.ok()) << ack.error().message();
    auto status = vhost_user::read_u64(*ack);
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(*status, vhost_user::kAckFailure);
    ASSERT_TRUE(s.ended_within(5s));
    EXPECT_FALSE(s.final_result().ok());
    EXPECT_NE(s.final_result().error().message().find("size 3"), std::string::npos)
        << s.final_result().error().message();
}

// A front-end that stops in the middle of a message cannot hold the
// back-end: the rest must arrive within the message timeout.
TEST_F(MalformedSession, FrontEndStuckInTheMiddleOfAMessageIsDropped)
{
    TestDevice device;
    SessionOptions options;
    options.message_timeout = 200ms;
    ServedSession s(device, options);
    auto bytes = header_bytes(to_code(Request::set_features), kV, 8);
    bytes.resize(bytes.size() + 3); // 3 of the 8 payload bytes
    send_raw(s.frontend().connection().fd(), bytes, {});
    ASSERT_TRUE(s.ended_within(5s));
    EXPECT_FALSE(s.final_result().ok());
}

} // namespace
} // namespace vl::backend::test
