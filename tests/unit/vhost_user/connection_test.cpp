// SPDX-License-Identifier: Apache-2.0
// Framing over a real AF_UNIX socket: fds, partial reads, EOF, limits,
// timeouts, and the connect/listen helpers.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "test_util.hpp"
#include "vhost_user/connection.hpp"

namespace vl::vhost_user
{
namespace
{

using namespace std::chrono_literals;
using test::bytes_of;
using test::make_eventfd;

class ConnectionTest : public test::FdLeakTest
{
  protected:
    void SetUp() override
    {
        FdLeakTest::SetUp();
        auto pair = Connection::pair();
        ASSERT_TRUE(pair.ok());
        a_ = std::move(pair->first);
        b_ = std::move(pair->second);
    }
    void TearDown() override
    {
        a_.close();
        b_.close();
        FdLeakTest::TearDown();
    }

    // Writes raw bytes (and optionally fds) on a_'s socket, bypassing framing.
    void write_raw(std::span<const std::byte> bytes, std::span<const int> fds = {})
    {
        iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        alignas(cmsghdr) std::array<std::byte, CMSG_SPACE(sizeof(int) * 16)> control{};
        if (!fds.empty()) {
            msg.msg_control = control.data();
            msg.msg_controllen = CMSG_SPACE(fds.size_bytes());
            cmsghdr* c = CMSG_FIRSTHDR(&msg);
            ASSERT_NE(c, nullptr);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(fds.size_bytes());
            std::memcpy(CMSG_DATA(c), fds.data(), fds.size_bytes());
        }
        ASSERT_EQ(::sendmsg(a_.fd(), &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
    }

    Connection a_{UniqueFd()};
    Connection b_{UniqueFd()};
};

TEST_F(ConnectionTest, PassesFdsThatReferToTheSameObject)
{
    UniqueFd kick = make_eventfd();
    std::array<int, 1> fds{kick.get()};
    ASSERT_TRUE(a_.send(make_request(Request::set_vring_kick, std::uint64_t{0}), fds).ok());
    EXPECT_TRUE(test::fd_is_open(kick.get())) << "borrowed fds stay open";
    auto got = b_.receive();
    ASSERT_TRUE(got.ok()) << got.error().message();
    ASSERT_EQ(got->fd_count(), 1U);
    int received = got->fds()[0].get();
    EXPECT_NE(received, kick.get());
    EXPECT_NE(::fcntl(received, F_GETFD) & FD_CLOEXEC, 0);
    std::uint64_t one = 1, value = 0;
    ASSERT_EQ(::write(kick.get(), &one, sizeof(one)), 8);
    ASSERT_EQ(::read(received, &value, sizeof(value)), 8);
    EXPECT_EQ(value, 1U);
}

TEST_F(ConnectionTest, SendsMessagesThatOwnTheirFds)
{
    std::vector<UniqueFd> fds;
    fds.push_back(make_eventfd());
    fds.push_back(make_eventfd());
    Message m(to_code(Request::set_vring_call), kVersion, bytes_of(std::uint64_t{1}),
              std::move(fds));
    ASSERT_TRUE(a_.send(m).ok());
    auto got = b_.receive();
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->fd_count(), 2U);
}

TEST_F(ConnectionTest, ReassemblesAMessageArrivingByteByByte)
{
    Message m = make_request(Request::set_vring_addr, VringAddr{1, 0, 2, 3, 4, 5});
    std::vector<std::byte> wire = bytes_of(m.header());
    wire.insert(wire.end(), m.payload().begin(), m.payload().end());
    UniqueFd fd = make_eventfd();
    std::thread writer([&] {
        for (std::size_t i = 0; i < wire.size(); ++i) {
            std::array<int, 1> fds{fd.get()};
            // The fd rides on the first byte, as a sender's single sendmsg would.
            write_raw(std::span(&wire[i], 1),
                      i == 0 ? std::span<const int>(fds) : std::span<const int>());
            std::this_thread::sleep_for(1ms);
        }
    });
    auto got = b_.receive();
    writer.join();
    ASSERT_TRUE(got.ok()) << got.error().message();
    EXPECT_EQ(got->request(), to_code(Request::set_vring_addr));
    EXPECT_EQ(got->fd_count(), 1U);
    auto addr = got->payload_as<VringAddr>();
    ASSERT_TRUE(addr.ok());
    EXPECT_EQ(addr->log_guest_addr, 5U);
}

TEST_F(ConnectionTest, ReceivesConsecutiveMessagesSeparately)
{
    ASSERT_TRUE(a_.send(make_request(Request::get_features)).ok());
    ASSERT_TRUE(a_.send(make_request(Request::set_features, std::uint64_t{3})).ok());
    auto first = b_.receive();
    auto second = b_.receive();
    ASSERT_TRUE(first.ok() && second.ok());
    EXPECT_EQ(first->request(), to_code(Request::get_features));
    EXPECT_TRUE(first->payload().empty());
    EXPECT_EQ(*read_u64(*second), 3U);
}

TEST_F(ConnectionTest, ReportsAPeerThatClosedBetweenMessages)
{
    a_.close();
    auto got = b_.receive();
    ASSERT_FALSE(got.ok());
    EXPECT_TRUE(peer_closed(got.error()));
    EXPECT_EQ(got.error().message(), "peer closed the connection");
}

TEST_F(ConnectionTest, ReportsAPeerThatClosedInsideTheHeader)
{
    std::array<std::byte, 5> partial{};
    write_raw(partial);
    a_.close();
    auto got = b_.receive();
    ASSERT_FALSE(got.ok());
    EXPECT_FALSE(peer_closed(got.error())) << "a torn message is an error, not a goodbye";
    EXPECT_EQ(got.error().message(), "peer closed the connection in the middle of a message (5 "
                                     "of 12 bytes of the header received)");
}

TEST_F(ConnectionTest, ReportsATruncatedPayload)
{
    Header header{to_code(Request::set_vring_num), kVersion, 8};
    write_raw(bytes_of(header));
    std::array<std::byte, 4> half{};
    write_raw(half);
    a_.close();
    auto got = b_.receive();
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().code(), EBADMSG);
    EXPECT_NE(got.error().message().find("4 of 8 bytes of the payload"), std::string::npos);
}

TEST_F(ConnectionTest, ClosesFdsOfATruncatedMessage)
{
    Header header{to_code(Request::set_vring_call), kVersion, 8};
    UniqueFd fd = make_eventfd();
    std::array<int, 1> fds{fd.get()};
    write_raw(bytes_of(header), fds);
    fd.reset(); // our copy; the one in flight must be closed by receive()
    a_.close();
    EXPECT_FALSE(b_.receive().ok());
    // FdLeakTest checks that the received copy did not stay open.
}

TEST_F(ConnectionTest, RefusesAnOversizedPayloadWithoutReadingIt)
{
    Header header{to_code(Request::set_config), kVersion, kMaxPayloadSize + 1};
    write_raw(bytes_of(header));
    auto got = b_.receive();
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().message(), "SET_CONFIG: payload size 4097 exceeds the 4096-byte limit; "
                                     "the peer is broken or not speaking vhost-user");
}

TEST_F(ConnectionTest, RefusesMoreThanEightFdsAndClosesThemAll)
{
    std::vector<UniqueFd> owned;
    std::vector<int> fds;
    for (int i = 0; i < 9; ++i) {
        owned.push_back(make_eventfd());
        fds.push_back(owned.back().get());
    }
    Message m(to_code(Request::get_features), kVersion);
    write_raw(bytes_of(m.header()), fds);
    owned.clear();
    auto got = b_.receive();
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().code(), EBADMSG);
    EXPECT_NE(got.error().message().find("more than 8 fds"), std::string::npos);
}

TEST_F(ConnectionTest, AcceptsExactlyEightFds)
{
    std::vector<UniqueFd> fds;
    for (int i = 0; i < 8; ++i)
        fds.push_back(test::make_memfd());
    Message m(to_code(Request::set_mem_table), kVersion, test::sample_memory_table(8),
              std::move(fds));
    ASSERT_TRUE(a_.send(m).ok());
    auto got = b_.receive();
    ASSERT_TRUE(got.ok()) << got.error().message();
    EXPECT_EQ(got->fd_count(), 8U);
    EXPECT_TRUE(validate_request(*got).ok());
}

TEST_F(ConnectionTest, RefusesToSendMoreThanEightFds)
{
    std::vector<int> fds(9, 0);
    auto sent = a_.send(make_request(Request::get_features), fds);
    ASSERT_FALSE(sent.ok());
    EXPECT_EQ(sent.error().code(), EINVAL);
}

TEST_F(ConnectionTest, TimesOutOnASilentPeer)
{
    b_.set_timeout(50ms);
    auto start = std::chrono::steady_clock::now();
    auto got = b_.receive();
    auto waited = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().code(), ETIMEDOUT);
    EXPECT_NE(got.error().message().find("timed out after 50 ms"), std::string::npos);
    EXPECT_GE(waited, 50ms);
    EXPECT_LT(waited, 2s);
}

TEST_F(ConnectionTest, TimeoutCoversTheWholeMessage)
{
    // The header arrives, the payload never does: still a timeout, not a hang.
    b_.set_timeout(50ms);
    Header header{to_code(Request::set_vring_num), kVersion, 8};
    write_raw(bytes_of(header));
    auto got = b_.receive();
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.error().code(), ETIMEDOUT);
}

TEST_F(ConnectionTest, ReceivesWithinTheTimeout)
{
    b_.set_timeout(5s);
    ASSERT_TRUE(a_.send(make_request(Request::get_status)).ok());
    auto got = b_.receive();
    ASSERT_TRUE(got.ok()) << got.error().message();
    EXPECT_EQ(got->request(), to_code(Request::get_status));
}

TEST_F(ConnectionTest, SendsInPiecesWhenTheSocketIsFull)
{
    // A tiny send buffer and a reader that drains slowly in odd-sized
    // pieces: with a timeout set, send() is non-blocking and has to finish
    // messages across partial sends, sending each message's fd once.
    int small = 1;
    ASSERT_EQ(::setsockopt(a_.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    a_.set_timeout(5s);
    constexpr int kMessages = 6;
    std::vector<std::byte> expected_wire;
    std::vector<Message> messages;
    for (int m = 0; m < kMessages; ++m) {
        // A small message still unread makes the next big one go out in
        // two pieces (the socket takes the first, then is full).
        messages.push_back(make_request(Request::get_features));
        auto small_header = bytes_of(messages.back().header());
        expected_wire.insert(expected_wire.end(), small_header.begin(), small_header.end());
        std::vector<std::byte> payload(kMaxPayloadSize);
        for (std::size_t i = 0; i < payload.size(); ++i)
            payload[i] = static_cast<std::byte>(i * 7 + static_cast<std::size_t>(m));
        messages.emplace_back(to_code(Request::create_crypto_session), kVersion, payload,
                              test::fds_of(make_eventfd()));
        auto header = bytes_of(messages.back().header());
        expected_wire.insert(expected_wire.end(), header.begin(), header.end());
        expected_wire.insert(expected_wire.end(), payload.begin(), payload.end());
    }
    std::vector<std::byte> wire;
    std::size_t fds_received = 0;
    std::thread reader([&] {
        while (wire.size() < expected_wire.size()) {
            std::this_thread::sleep_for(2ms);
            std::array<std::byte, 1500> chunk{};
            iovec iov{chunk.data(), chunk.size()};
            alignas(cmsghdr) std::array<std::byte, CMSG_SPACE(sizeof(int) * 8)> control{};
            msghdr msg{};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.data();
            msg.msg_controllen = control.size();
            ssize_t n = ::recvmsg(b_.fd(), &msg, MSG_CMSG_CLOEXEC);
            if (n <= 0)
                break;
            for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
                std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (std::size_t i = 0; i < count; ++i) {
                    int fd = -1;
                    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                    ::close(fd);
                    ++fds_received;
                }
            }
            wire.insert(wire.end(), chunk.begin(), chunk.begin() + n);
        }
    });
    for (const Message& m : messages) {
        Status sent = a_.send(m);
        EXPECT_TRUE(sent.ok()) << sent.error().message();
    }
    reader.join();
    EXPECT_EQ(fds_received, static_cast<std::size_t>(kMessages));
    ASSERT_EQ(wire.size(), expected_wire.size());
    EXPECT_TRUE(wire == expected_wire);
}

TEST_F(ConnectionTest, SendTimesOutWhenThePeerNeverReads)
{
    int small = 1;
    ASSERT_EQ(::setsockopt(a_.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    a_.set_timeout(50ms);
    Message big(to_code(Request::create_crypto_session), kVersion,
                std::vector<std::byte>(kMaxPayloadSize));
    Status sent = ok_status();
    for (int i = 0; i < 1000 && sent.ok(); ++i)
        sent = a_.send(big);
    ASSERT_FALSE(sent.ok());
    EXPECT_EQ(sent.error().code(), ETIMEDOUT);
}

TEST_F(ConnectionTest, SendingToAClosedPeerIsAnErrorNotASignal)
{
    b_.close();
    auto sent = a_.send(make_request(Request::get_features));
    ASSERT_FALSE(sent.ok());
    EXPECT_TRUE(peer_closed(sent.error())) << sent.error().message();
}

// --- socket paths -----------------------------------------------------------

class SocketPath : public test::FdLeakTest
{
  protected:
    void SetUp() override
    {
        FdLeakTest::SetUp();
        char pattern[] = "/tmp/vhost-user-test-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        dir_ = pattern;
        path_ = dir_ + "/sock";
    }
    void TearDown() override
    {
        std::filesystem::remove_all(dir_);
        FdLeakTest::TearDown();
    }
    std::string dir_;
    std::string path_;
};

TEST_F(SocketPath, ConnectErrorNamesThePathAndTheLikelyCause)
{
    auto c = connect_to(path_);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error().code(), ENOENT);
    EXPECT_EQ(c.error().message(), "cannot connect to " + path_ +
                                       ": No such file or directory (is the back-end running "
                                       "and listening there?)");
}

TEST_F(SocketPath, ListensConnectsAndAccepts)
{
    auto listener = listen_on(path_, 0600);
    ASSERT_TRUE(listener.ok()) << listener.error().message();
    struct stat st {
    };
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600U);

    auto client = connect_to(path_);
    ASSERT_TRUE(client.ok()) << client.error().message();
    auto server = accept_from(listener->get());
    ASSERT_TRUE(server.ok()) << server.error().message();
    ASSERT_TRUE(client->send(make_request(Request::set_owner)).ok());
    auto got = server->receive();
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->request(), to_code(Request::set_owner));
}

TEST_F(SocketPath, ReplacesAStaleSocket)
{
    {
        auto first = listen_on(path_);
        ASSERT_TRUE(first.ok());
    } // closed without unlinking: a crashed back-end's leftover
    ASSERT_TRUE(std::filesystem::exists(path_));
    auto second = listen_on(path_);
    ASSERT_TRUE(second.ok()) << second.error().message();
    EXPECT_TRUE(connect_to(path_).ok());
}

TEST_F(SocketPath, RefusesASocketInUse)
{
    auto first = listen_on(path_);
    ASSERT_TRUE(first.ok());
    auto second = listen_on(path_);
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.error().code(), EADDRINUSE);
    EXPECT_NE(second.error().message().find("in use"), std::string::npos);
}

TEST_F(SocketPath, NeverRemovesSomethingThatIsNotASocket)
{
    std::ofstream(path_) << "precious";
    auto listener = listen_on(path_);
    ASSERT_FALSE(listener.ok());
    EXPECT_NE(listener.error().message().find("is not a socket"), std::string::npos);
    std::ifstream in(path_);
    std::string content;
    in >> content;
    EXPECT_EQ(content, "precious");
}

TEST_F(SocketPath, RefusesAPathTooLongForSockaddr)
{
    std::string long_path = dir_ + "/" + std::string(200, 'x');
    auto listener = listen_on(long_path);
    ASSERT_FALSE(listener.ok());
    EXPECT_EQ(listener.error().code(), ENAMETOOLONG);
    EXPECT_FALSE(connect_to(long_path).ok());
}

} // namespace
} // namespace vl::vhost_user
