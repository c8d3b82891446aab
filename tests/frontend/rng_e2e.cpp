// SPDX-License-Identifier: Apache-2.0
// vhost-user-rng end to end on the host: the program itself, started on a
// temporary socket and driven by the user-space test driver (tests/driver)
// as its front-end. Command line behaviour and exit codes, entropy through
// the socket, the rate limit (as a ratio, with generous bounds), a
// front-end killed in the middle of a request, SIGTERM.
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <set>

#include "program_runner.hpp"
#include "rng_driver.hpp"

#ifndef VL_RNG_PROGRAM
#error "VL_RNG_PROGRAM must name the vhost-user-rng program"
#endif

namespace vl::test_driver
{
namespace
{

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using e2e::TempDir;

// vhost-user-rng as a child process.
class Program : public e2e::Program
{
  public:
    Program(const TempDir& dir, std::vector<std::string> args)
        : e2e::Program(dir, VL_RNG_PROGRAM, std::move(args))
    {
    }
};

// vhost-user-rng listening on dir/rng.sock.
struct Backend : e2e::Backend {
    explicit Backend(const TempDir& dir, std::vector<std::string> extra = {})
        : e2e::Backend(dir, VL_RNG_PROGRAM, "rng.sock", std::move(extra))
    {
    }
};

RngOptions options()
{
    RngOptions o;
    o.request_timeout = 10s;
    return o;
}

Result<RngDriver> open(const std::string& socket)
{
    return RngDriver::open(socket, options(), Logger("front-end", LogLevel::error));
}

std::size_t distinct_bytes(const std::vector<std::byte>& bytes)
{
    return std::set<std::byte>(bytes.begin(), bytes.end()).size();
}

TEST(RngProgram, PrintsCapabilitiesHelpAndVersion)
{
    TempDir dir;
    {
        Program p(dir, {"--print-capabilities", "--ignored-option"});
        EXPECT_EQ(p.wait(), 0);
        EXPECT_EQ(p.out(), "{\n  \"type\": \"rng\"\n}\n");
    }
    {
        Program p(dir, {"--help"});
        EXPECT_EQ(p.wait(), 0);
        EXPECT_NE(p.out().find("--rate=BYTES_PER_SEC"), std::string::npos) << p.out();
        EXPECT_NE(p.out().find("--period-ms=N"), std::string::npos);
    }
    {
        Program p(dir, {"-V"});
        EXPECT_EQ(p.wait(), 0);
        EXPECT_NE(p.out().find("vhost-user-rng (virtio-loopback)"), std::string::npos);
    }
}

TEST(RngProgram, BadUsageExitsWith2AndSaysWhy)
{
    TempDir dir;
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
        {{}, "missing --socket-path"},
        {{"-s", dir.file("x"), "--rate", "0"}, "--rate 0 would deliver nothing"},
        {{"-s", dir.file("x"), "--period-ms", "5"}, "--period-ms needs --rate"},
        {{"-s", dir.file("x"), "--frobnicate"}, "unknown option --frobnicate"},
    };
    for (const auto& [args, message] : cases) {
        Program p(dir, args);
        EXPECT_EQ(p.wait(), 2) << message;
        EXPECT_NE(p.err().find(message), std::string::npos) << p.err();
        EXPECT_NE(p.err().find("Try 'vhost-user-rng --help'"), std::string::npos);
    }
}

TEST(RngProgram, RuntimeErrorsExitWith1)
{
    TempDir dir;
    {
        Program p(dir, {"-s", dir.file("no/such/dir/rng.sock")});
        EXPECT_EQ(p.wait(), 1);
        EXPECT_NE(p.err().find("no/such/dir/rng.sock"), std::string::npos) << p.err();
    }
    Backend first(dir);
    TempDir other;
    Program second(other, {"-s", first.socket});
    EXPECT_EQ(second.wait(), 1);
    EXPECT_NE(second.err().find("in use"), std::string::npos) << second.err();
    EXPECT_TRUE(first.program.running());
}

TEST(RngProgram, DeliversEntropyAndExitsCleanlyOnSigterm)
{
    TempDir dir;
    Backend backend(dir);
    {
        auto rng = open(backend.socket);
        ASSERT_TRUE(rng.ok()) << rng.error().message();
        auto bytes = rng->read(64 << 10);
        ASSERT_TRUE(bytes.ok()) << bytes.error().message();
        EXPECT_EQ(bytes->size(), 64U << 10);
        EXPECT_EQ(distinct_bytes(*bytes), 256U) << "64 KiB of entropy holds every byte value";
        auto stopped = rng->driver().stop();
        ASSERT_TRUE(stopped.ok()) << stopped.error().message();
        EXPECT_EQ((*stopped)[0], 16U) << "16 requests of 4 KiB were taken";
    }
    // A second front-end after the first left.
    {
        auto rng = open(backend.socket);
        ASSERT_TRUE(rng.ok()) << rng.error().message();
        auto bytes = rng->read(1000);
        ASSERT_TRUE(bytes.ok()) << bytes.error().message();
    }
    EXPECT_EQ(backend.program.stop(), 0) << backend.program.err();
    EXPECT_FALSE(fs::exists(backend.socket)) << "the socket file is removed at exit";
}

// The limit is checked as a ratio of the configured rate, with generous
// bounds: the machine may be slow (fewer bytes per second than the limit)
// but the back-end must never be much faster than the limit.
TEST(RngProgram, RateLimitHoldsRoughly)
{
    constexpr std::uint64_t kRate = 16384; // bytes per second
    constexpr std::size_t kBytes = 24 << 10;
    TempDir dir;
    Backend backend(dir, {"--rate", std::to_string(kRate), "--period-ms", "100"});
    auto rng = open(backend.socket);
    ASSERT_TRUE(rng.ok()) << rng.error().message();
    const auto start = std::chrono::steady_clock::now();
    auto bytes = rng->read(kBytes);
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(bytes.ok()) << bytes.error().message();
    // The first period's budget is there at once; the rest takes time.
    const double allowed_now = kRate / 10.0;
    const double rate = (kBytes - allowed_now) / elapsed.count();
    EXPECT_LT(rate, 1.5 * kRate) << "read " << kBytes << " bytes in " << elapsed.count() << " s";
    EXPECT_GT(rate, 0.2 * kRate) << "read " << kBytes << " bytes in " << elapsed.count() << " s";
    EXPECT_GT(distinct_bytes(*bytes), 250U);
}

// A front-end killed while its request waits for the rate limit: the
// back-end ends that session and serves the next front-end.
TEST(RngProgram, FrontEndKilledMidRequestThenTheNextIsServed)
{
    TempDir dir;
    Backend backend(dir, {"--rate", "2000", "--period-ms", "1000"});
    int ready[2];
    ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        // The front-end: takes this period's budget, then waits in a second
        // request until it is killed.
        auto rng = open(backend.socket);
        if (!rng || !rng->request(4096))
            ::_exit(3);
        (void)!::write(ready[1], "r", 1);
        (void)rng->request(4096);
        ::_exit(4);
    }
    ::close(ready[1]);
    char byte = 0;
    ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the front-end did not get its first request";
    ::close(ready[0]);
    std::this_thread::sleep_for(100ms); // its second request is in the ring now
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFSIGNALED(status)) << "the front-end ended before it was killed";

    // A front-end that sends half a message and leaves.
    {
        int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, backend.socket.c_str(), sizeof(addr.sun_path) - 1);
        ASSERT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
        const char half[6] = {1, 0, 0, 0, 1, 0};
        ASSERT_EQ(::send(s, half, sizeof(half), MSG_NOSIGNAL), 6);
        ::close(s);
    }

    auto rng = open(backend.socket);
    ASSERT_TRUE(rng.ok()) << rng.error().message() << "\n" << backend.program.err();
    auto bytes = rng->read(100);
    ASSERT_TRUE(bytes.ok()) << bytes.error().message();
    EXPECT_TRUE(backend.program.running());
    EXPECT_EQ(backend.program.stop(), 0);
    const std::string log = backend.program.err();
    EXPECT_NE(log.find("the front-end disconnected"), std::string::npos) << log;
    EXPECT_NE(log.find("closed the connection"), std::string::npos)
        << "the half message is reported:\n"
        << log;
}

} // namespace
} // namespace vl::test_driver
