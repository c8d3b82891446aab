// SPDX-License-Identifier: Apache-2.0
// The daemon: a socket path served one front-end at a time, in a loop, with
// everything of a session released when it ends.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstdlib>
#include <filesystem>

#include "backend/daemon.hpp"
#include "harness.hpp"

namespace vl::backend::test
{
namespace
{

constexpr std::uint64_t kData = 1 << 20;
constexpr std::uint32_t kSize = 16;

class TempDir
{
  public:
    TempDir()
    {
        std::string pattern = std::filesystem::temp_directory_path() / "vl-daemon-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr)
            throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

// A daemon serving in a thread.
class RunningDaemon
{
  public:
    RunningDaemon(Device& device, const std::string& path, SessionOptions session = {})
    {
        DaemonOptions options;
        options.socket_path = path;
        options.session = session;
        auto d = Daemon::listen(device, options, Logger("daemon", LogLevel::error));
        EXPECT_TRUE(d.ok()) << d.error().message();
        daemon_ = std::move(d).value();
        served_ = std::async(std::launch::async, [this] { return daemon_->serve(); });
    }
    ~RunningDaemon()
    {
        daemon_->request_stop();
        EXPECT_TRUE(served_.get().ok());
    }
    [[nodiscard]] Daemon& daemon() { return *daemon_; }

  private:
    std::unique_ptr<Daemon> daemon_;
    std::future<Status> served_;
};

// A front-end's whole life: connect, set up a ring, one request, leave.
void one_front_end(const std::string& path, bool polite)
{
    GuestRam ram;
    DriverQueue q(ram, 0, kSize, true);
    auto f = vhost_user::Frontend::connect(path);
    ASSERT_TRUE(f.ok()) << f.error().message();
    negotiate(*f);
    ASSERT_TRUE(f->set_mem_table(std::vector{ram.whole()}).ok());
    start_queue(*f, q, 0, kSize);
    q.submit({put(ram, kData, "ping")}, {{ram.guest(kData + 128), 4}});
    ASSERT_TRUE(q.wait_used().has_value());
    EXPECT_EQ(read_back(ram, kData + 128, 4), "ping");
    if (polite) {
        ASSERT_TRUE(f->set_vring_enable(0, false).ok());
        ASSERT_TRUE(f->get_vring_base(0).ok());
    }
}

TEST(Daemon, ServesFrontEndsOneAfterAnotherWithoutLeakingFdsOrMappings)
{
    TempDir dir;
    TestDevice device(1);
    RunningDaemon running(device, dir.file("blk.sock"));
    const int fds_before = count_open_fds();
    const int maps_before = count_mappings(kMemfdName);
    for (int i = 0; i < 6; ++i) {
        SCOPED_TRACE("front-end " + std::to_string(i));
        one_front_end(dir.file("blk.sock"), /*polite=*/i % 2 == 0);
        ASSERT_TRUE(eventually([&] {
            return running.daemon().sessions_served() == static_cast<std::uint64_t>(i + 1);
        }));
        EXPECT_EQ(count_open_fds(), fds_before) << "after front-end " << i;
        EXPECT_EQ(count_mappings(kMemfdName), maps_before) << "after front-end " << i;
    }
    EXPECT_EQ(device.resets.load(), 6);
    EXPECT_EQ(device.starts(0), 6);
    EXPECT_EQ(device.stops(0), 6);
}

// A front-end that dies with a request in flight: the daemon gives up on
// it after the drain timeout and serves the next front-end.
TEST(Daemon, FrontEndThatDiesMidRequestDoesNotBlockTheNext)
{
    TempDir dir;
    TestDevice device(1);
    SessionOptions session;
    session.drain_timeout = 100ms;
    RunningDaemon running(device, dir.file("rng.sock"), session);
    {
        GuestRam ram;
        DriverQueue q(ram, 0, kSize, true);
        auto f = vhost_user::Frontend::connect(dir.file("rng.sock"));
        ASSERT_TRUE(f.ok());
        negotiate(*f);
        ASSERT_TRUE(f->set_mem_table(std::vector{ram.whole()}).ok());
        start_queue(*f, q, 0, kSize);
        device.set_mode(0, TestDevice::Mode::hold);
        q.submit({put(ram, kData, "lost")}, {{ram.guest(kData + 128), 4}});
        ASSERT_TRUE(eventually([&] { return device.held(0) == 1; }));
    } // the front-end is gone, its memory too
    device.set_mode(0, TestDevice::Mode::echo);
    one_front_end(dir.file("rng.sock"), true);
    EXPECT_TRUE(eventually([&] { return running.daemon().sessions_served() == 2; }));
    EXPECT_EQ(device.stops(0), 2);
}

TEST(Daemon, StaleSocketFileIsReplaced)
{
    TempDir dir;
    const std::string path = dir.file("stale.sock");
    {
        // A socket bound and never closed properly: the file stays.
        UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
        ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    }
    ASSERT_TRUE(std::filesystem::exists(path));
    TestDevice device(1);
    RunningDaemon running(device, path);
    one_front_end(path, true);
}

TEST(Daemon, PathServedByAnotherDaemonIsAClearError)
{
    TempDir dir;
    TestDevice device(1);
    RunningDaemon first(device, dir.file("busy.sock"));
    TestDevice other(1);
    DaemonOptions options;
    options.socket_path = dir.file("busy.sock");
    auto second = Daemon::listen(other, options, Logger("second", LogLevel::error));
    ASSERT_FALSE(second.ok());
    EXPECT_NE(second.error().message().find("in use"), std::string::npos)
        << second.error().message();
    one_front_end(dir.file("busy.sock"), true); // the first is unaffected
}

TEST(Daemon, RequestStopEndsTheCurrentSessionAndServe)
{
    TempDir dir;
    const std::string path = dir.file("stop.sock");
    TestDevice device(1);
    GuestRam ram;
    DriverQueue q(ram, 0, kSize, true);
    std::optional<vhost_user::Frontend> f;
    {
        RunningDaemon running(device, path);
        auto connected = vhost_user::Frontend::connect(path);
        ASSERT_TRUE(connected.ok());
        f.emplace(std::move(connected).value());
        negotiate(*f);
        ASSERT_TRUE(f->set_mem_table(std::vector{ram.whole()}).ok());
        start_queue(*f, q, 0, kSize);
        ASSERT_TRUE(eventually([&] { return device.starts(0) == 1; }));
    } // request_stop() with the ring running; serve() returns ok
    EXPECT_EQ(device.stops(0), 1);
    EXPECT_EQ(device.resets.load(), 1);
    EXPECT_FALSE(std::filesystem::exists(path)) << "the socket file is removed";
    auto eof = f->connection().receive();
    ASSERT_FALSE(eof.ok());
    EXPECT_TRUE(vhost_user::peer_closed(eof.error()));
}

TEST(Daemon, RefusesDevicesVhostUserCannotExpress)
{
    TempDir dir;
    DaemonOptions options;
    options.socket_path = dir.file("bad.sock");
    for (auto [queues, size] : {std::pair{0U, 256U}, std::pair{257U, 256U}, std::pair{1U, 0U},
                                std::pair{1U, 100U}, std::pair{1U, 65536U}}) {
        TestDevice device(queues, size);
        auto d = Daemon::listen(device, options, Logger("bad", LogLevel::error));
        EXPECT_FALSE(d.ok()) << queues << " queues of " << size;
    }
    TestDevice most(256, 32768);
    EXPECT_TRUE(Daemon::listen(most, options, Logger("most", LogLevel::error)).ok());
}

TEST(Daemon, BindsTheDeviceToItsNotifierWhileItLives)
{
    TempDir dir;
    TestDevice device(1);
    {
        RunningDaemon running(device, dir.file("n.sock"));
        EXPECT_EQ(device.notifier.load(), &running.daemon().notifier());
    }
    EXPECT_EQ(device.notifier.load(), nullptr);
}

} // namespace
} // namespace vl::backend::test
