// SPDX-License-Identifier: Apache-2.0
// vl-uapi-tests: the transport's uapi against the loaded module, run inside
// the guest by tests/guest/transport-uapi.sh. Every ioctl with bad
// arguments and in wrong states, window isolation and revocation, reply
// timeouts, and a random-call storm. Needs /dev/virtio-loopback.
#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_loopback.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "base/mapping.hpp"
#include "base/unique_fd.hpp"

namespace {

using vl::UniqueFd;

UniqueFd open_node()
{
    UniqueFd fd(::open("/dev/virtio-loopback", O_RDWR | O_CLOEXEC | O_NONBLOCK));
    EXPECT_TRUE(fd.valid()) << "open /dev/virtio-loopback: " << std::strerror(errno);
    return fd;
}

virtio_loopback_create rng_params()
{
    virtio_loopback_create c{};
    c.device_id = VIRTIO_ID_RNG;
    c.num_queues = 1;
    c.max_queue_size = 64;
    c.window_size = 1 << 20;
    return c;
}

// errno of a failing ioctl, 0 if it succeeded.
int ioctl_errno(int fd, unsigned long request, void* arg)
{
    return ::ioctl(fd, request, arg) < 0 ? errno : 0;
}

UniqueFd created(const virtio_loopback_create& params = rng_params())
{
    UniqueFd fd = open_node();
    auto c = params;
    EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_CREATE, &c), 0);
    return fd;
}

virtio_loopback_window window_of(int fd)
{
    virtio_loopback_window w{};
    EXPECT_EQ(ioctl_errno(fd, VIRTIO_LOOPBACK_IOC_GET_WINDOW, &w), 0);
    return w;
}

TEST(Uapi, VersionIsOne)
{
    UniqueFd fd = open_node();
    EXPECT_EQ(::ioctl(fd.get(), VIRTIO_LOOPBACK_IOC_GET_VERSION), VIRTIO_LOOPBACK_API_VERSION);
}

TEST(Uapi, CreateRejectsBadArguments)
{
    struct Case {
        const char* what;
        void (*mutate)(virtio_loopback_create&);
        int expected;
    };
    const Case cases[] = {
        {"device id 0", [](auto& c) { c.device_id = 0; }, EINVAL},
        {"device id > 0xffff", [](auto& c) { c.device_id = 0x10000; }, EINVAL},
        {"0 queues", [](auto& c) { c.num_queues = 0; }, EINVAL},
        {"65 queues", [](auto& c) { c.num_queues = 65; }, EINVAL},
        {"queue size 0", [](auto& c) { c.max_queue_size = 0; }, EINVAL},
        {"queue size 1", [](auto& c) { c.max_queue_size = 1; }, EINVAL},
        {"queue size 100", [](auto& c) { c.max_queue_size = 100; }, EINVAL},
        {"queue size 65536", [](auto& c) { c.max_queue_size = 65536; }, EINVAL},
        {"config 257 bytes", [](auto& c) { c.config_size = 257; }, EINVAL},
        {"timeout 60001", [](auto& c) { c.timeout_ms = 60001; }, EINVAL},
        {"unknown flag", [](auto& c) { c.flags = ~VIRTIO_LOOPBACK_CREATE_FLAGS; }, EINVAL},
        {"reserved", [](auto& c) { c.reserved[6] = 1; }, EINVAL},
        {"packed ring bit", [](auto& c) { c.features = 1ULL << 34; }, EINVAL},
        {"vhost-user protocol bit", [](auto& c) { c.features = 1ULL << 30; }, EINVAL},
        {"window 4 KiB", [](auto& c) { c.window_size = 4096; }, E2BIG},
        {"window 1 TiB", [](auto& c) { c.window_size = 1ULL << 40; }, E2BIG},
    };
    for (const auto& tc : cases) {
        UniqueFd fd = open_node();
        auto c = rng_params();
        tc.mutate(c);
        EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_CREATE, &c), tc.expected) << tc.what;
        // The file stays usable after a rejected create.
        auto good = rng_params();
        EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_CREATE, &good), 0) << tc.what;
    }
}

TEST(Uapi, CreateTwiceIsEexist)
{
    UniqueFd fd = created();
    auto c = rng_params();
    EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_CREATE, &c), EEXIST);
}

TEST(Uapi, CallsBeforeCreateAreEnodev)
{
    UniqueFd fd = open_node();
    virtio_loopback_window w{};
    virtio_loopback_queue_fds q{0, 0, -1, -1, {}};
    virtio_loopback_queue_info qi{};
    virtio_loopback_interrupt irq{};
    virtio_loopback_config cfg{};
    EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_GET_WINDOW, &w), ENODEV);
    EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_SET_QUEUE_FDS, &q), ENODEV);
    EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_START, nullptr), ENODEV);
    EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_GET_QUEUE, &qi), ENODEV);
    EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_INTERRUPT, &irq), ENODEV);
    EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_SET_CONFIG, &cfg), ENODEV);
    virtio_loopback_info info{};
    EXPECT_EQ(ioctl_errno(fd.get(), VIRTIO_LOOPBACK_IOC_GET_INFO, &info), 0);
    EXPECT_EQ(info.state, VIRTIO_LOOPBACK_STATE_NONE);
    virtio_loopback_msg msg{};
    EXPECT_EQ(::read(fd.get(), &msg, sizeof(msg)), -1);
    EXPECT_EQ(errno, ENODEV);
    EXPECT_EQ(ioctl_errno(fd.get(), _IO(VIRTIO_LOOPBACK_IOC_MAGIC, 0x7f), nullptr), ENOTTY);
}

TEST(Uapi, SetQueueFdsValidates)
{
    UniqueFd dev = created();
    UniqueFd other = created();
    auto other_window = window_of(other.get());
    UniqueFd other_window_fd(other_window.fd);
    UniqueFd kick(::eventfd(0, EFD_CLOEXEC));
    UniqueFd call(::eventfd(0, EFD_CLOEXEC));
    UniqueFd regular(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
    auto set = [&](std::uint32_t index, int k, int c, std::uint32_t flags = 0) {
        virtio_loopback_queue_fds q{};
        q.index = index;
        q.kick_fd = k;
        q.call_fd = c;
        q.flags = flags;
        return ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_SET_QUEUE_FDS, &q);
    };
    EXPECT_EQ(set(1, kick.get(), call.get()), EINVAL) << "index beyond the queues";
    EXPECT_EQ(set(0, regular.get(), -1), EINVAL) << "not an eventfd";
    EXPECT_EQ(set(0, other_window_fd.get(), -1), EINVAL) << "another device's window fd";
    EXPECT_EQ(set(0, -1, other.get()), EINVAL) << "another device's control file";
    EXPECT_EQ(set(0, 9999, -1), EBADF);
    EXPECT_EQ(set(0, -2, -1), EBADF);
    EXPECT_EQ(set(0, kick.get(), kick.get()), EINVAL) << "same eventfd for kick and call";
    EXPECT_EQ(set(0, kick.get(), call.get(), 1), EINVAL) << "flags";
    EXPECT_EQ(set(0, kick.get(), call.get()), 0);
    EXPECT_EQ(set(0, kick.get(), call.get()), 0) << "replacing";
    EXPECT_EQ(set(0, -1, -1), 0) << "detaching";
}

TEST(Uapi, WindowMapsOnlyItsOwnRange)
{
    UniqueFd dev = created();
    auto w = window_of(dev.get());
    UniqueFd wfd(w.fd);
    ASSERT_EQ(w.size, 1u << 20);
    auto map = [&](std::size_t len, off_t off, int flags) {
        void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, flags, wfd.get(), off);
        int err = p == MAP_FAILED ? errno : 0;
        if (p != MAP_FAILED)
            ::munmap(p, len);
        return err;
    };
    EXPECT_EQ(map(w.size, 0, MAP_SHARED), 0);
    EXPECT_EQ(map(w.size + 4096, 0, MAP_SHARED), EINVAL) << "longer than the window";
    EXPECT_EQ(map(4096, static_cast<off_t>(w.size), MAP_SHARED), EINVAL) << "offset at the end";
    EXPECT_EQ(map(8192, static_cast<off_t>(w.size - 4096), MAP_SHARED), EINVAL) << "straddling the end";
    EXPECT_EQ(map(4096, 0, MAP_PRIVATE), EINVAL) << "private mapping";
    char byte;
    EXPECT_EQ(::read(wfd.get(), &byte, 1), -1) << "the window fd is mmap-only";
    EXPECT_EQ(::write(wfd.get(), &byte, 1), -1) << "the window fd is mmap-only";

    // A mapping cannot be grown past the window.
    void* p = ::mmap(nullptr, w.size, PROT_READ | PROT_WRITE, MAP_SHARED, wfd.get(), 0);
    ASSERT_NE(p, MAP_FAILED);
    void* q = ::mremap(p, w.size, w.size * 2, MREMAP_MAYMOVE);
    EXPECT_EQ(q, MAP_FAILED);
    ::munmap(p, w.size);
}

TEST(Uapi, WindowsAreIsolatedAndShared)
{
    UniqueFd a = created();
    UniqueFd b = created();
    auto wa = window_of(a.get());
    auto wb = window_of(b.get());
    UniqueFd fa(wa.fd), fb(wb.fd);
    auto ma1 = vl::Mapping::map(fa.get(), wa.size, 0);
    auto ma2 = vl::Mapping::map(fa.get(), wa.size, 0);
    auto mb = vl::Mapping::map(fb.get(), wb.size, 0);
    ASSERT_TRUE(ma1.ok() && ma2.ok() && mb.ok());
    for (std::size_t i = 4096; i < wa.size; i += 4096)
        ma1->data()[i] = std::byte{0xa5};
    for (std::size_t i = 4096; i < wa.size; i += 4096) {
        ASSERT_EQ(ma2->data()[i], std::byte{0xa5}) << "two mappings of one window share pages";
        ASSERT_EQ(mb->data()[i], std::byte{0}) << "another device's window is separate";
    }
}

TEST(Uapi, WindowIsRevokedWhenTheDeviceGoes)
{
    UniqueFd dev = created();
    auto w = window_of(dev.get());
    UniqueFd wfd(w.fd);
    auto m = vl::Mapping::map(wfd.get(), w.size, 0);
    ASSERT_TRUE(m.ok());
    m->data()[8192] = std::byte{0x77};
    ASSERT_EQ(m->data()[8192], std::byte{0x77});
    dev.reset(); // removes the device
    // Revocation runs on the transport's workqueue: give it a moment.
    bool revoked = false;
    for (int i = 0; i < 100 && !revoked; ++i) {
        revoked = m->data()[8192] == std::byte{0};
        if (!revoked)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(revoked) << "the old contents are still visible after removal";
    m->data()[12288] = std::byte{1}; // writes go to the sink, no SIGBUS
}

TEST(Uapi, StateChecks)
{
    UniqueFd dev = created();
    virtio_loopback_interrupt irq{};
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_INTERRUPT, &irq), EAGAIN) << "not started";
    irq.index = 1;
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_INTERRUPT, &irq), EINVAL);
    irq.index = 0;
    irq.flags = 1;
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_INTERRUPT, &irq), EINVAL);
    virtio_loopback_queue_info qi{};
    qi.index = 1;
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_GET_QUEUE, &qi), EINVAL);
    qi.index = 0;
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_GET_QUEUE, &qi), 0);
    EXPECT_EQ(qi.flags & VIRTIO_LOOPBACK_QUEUE_READY, 0u);
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_START, nullptr), 0);
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_START, nullptr), EBUSY);
}

TEST(Uapi, SetConfigValidates)
{
    auto params = rng_params();
    params.config_size = 16;
    UniqueFd dev = created(params);
    virtio_loopback_config cfg{};
    cfg.offset = 8;
    cfg.len = 8;
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_SET_CONFIG, &cfg), 0);
    cfg.len = 9;
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_SET_CONFIG, &cfg), EINVAL);
    cfg.offset = 0xffffffff;
    cfg.len = 2;
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_SET_CONFIG, &cfg), EINVAL) << "overflow";
    cfg.offset = 0;
    cfg.len = 1;
    cfg.flags = 2;
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_SET_CONFIG, &cfg), EINVAL);
}

TEST(Uapi, MessagesAndReplies)
{
    auto params = rng_params();
    params.timeout_ms = 3000;
    UniqueFd dev = created(params);
    virtio_loopback_reply bogus{12345, 0, 0};
    EXPECT_EQ(::write(dev.get(), &bogus, sizeof(bogus)), -1);
    EXPECT_EQ(errno, ENOENT) << "no message awaits a reply";
    EXPECT_EQ(ioctl_errno(dev.get(), VIRTIO_LOOPBACK_IOC_START, nullptr), 0);
    // Registration resets the device first: a RESET message arrives.
    pollfd pfd{dev.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 3000), 1);
    char small[16];
    EXPECT_EQ(::read(dev.get(), small, sizeof(small)), -1);
    EXPECT_EQ(errno, EINVAL) << "a buffer smaller than a message";
    virtio_loopback_msg msg{};
    ASSERT_EQ(::read(dev.get(), &msg, sizeof(msg)), static_cast<ssize_t>(sizeof(msg)));
    EXPECT_EQ(msg.type, VIRTIO_LOOPBACK_MSG_RESET);
    EXPECT_NE(msg.id, 0u);
    virtio_loopback_reply reply{msg.id, 0, 0};
    EXPECT_EQ(::write(dev.get(), &reply, 8), -1) << "short reply";
    reply.result = 1;
    EXPECT_EQ(::write(dev.get(), &reply, sizeof(reply)), -1);
    EXPECT_EQ(errno, EINVAL) << "positive result";
    reply.result = 0;
    reply.reserved = 1;
    EXPECT_EQ(::write(dev.get(), &reply, sizeof(reply)), -1);
    EXPECT_EQ(errno, EINVAL) << "reserved";
    reply.reserved = 0;
    reply.id = msg.id + 1;
    EXPECT_EQ(::write(dev.get(), &reply, sizeof(reply)), -1);
    EXPECT_EQ(errno, ENOENT) << "wrong id";
    reply.id = msg.id;
    EXPECT_EQ(::write(dev.get(), &reply, sizeof(reply)), static_cast<ssize_t>(sizeof(reply)));
    EXPECT_EQ(::write(dev.get(), &reply, sizeof(reply)), -1);
    EXPECT_EQ(errno, ENOENT) << "a second reply to the same message";
}

TEST(Uapi, AMissingReplyBreaksOnlyThatDevice)
{
    auto params = rng_params();
    params.timeout_ms = 300;
    UniqueFd silent = created(params);
    UniqueFd healthy = created();
    auto started = std::chrono::steady_clock::now();
    ASSERT_EQ(ioctl_errno(silent.get(), VIRTIO_LOOPBACK_IOC_START, nullptr), 0);
    // Never answer: the device must break within the timeout plus slack.
    pollfd pfd{silent.get(), POLLIN, 0};
    virtio_loopback_info info{};
    do {
        ASSERT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        ASSERT_EQ(ioctl_errno(silent.get(), VIRTIO_LOOPBACK_IOC_GET_INFO, &info), 0);
    } while (info.state != VIRTIO_LOOPBACK_STATE_BROKEN);
    ASSERT_EQ(::poll(&pfd, 1, 0), 1);
    EXPECT_TRUE(pfd.revents & POLLHUP);
    virtio_loopback_msg msg{};
    EXPECT_EQ(::read(silent.get(), &msg, sizeof(msg)), -1);
    EXPECT_EQ(errno, EIO);
    virtio_loopback_window w{};
    EXPECT_EQ(ioctl_errno(silent.get(), VIRTIO_LOOPBACK_IOC_GET_WINDOW, &w), EIO);
    EXPECT_EQ(ioctl_errno(silent.get(), VIRTIO_LOOPBACK_IOC_START, nullptr), EIO);
    // The other device is untouched.
    ASSERT_EQ(ioctl_errno(healthy.get(), VIRTIO_LOOPBACK_IOC_GET_INFO, &info), 0);
    EXPECT_EQ(info.state, VIRTIO_LOOPBACK_STATE_CREATED);
}

// A few thousand calls with random requests and arguments, in random states
// on a handful of files. Nothing may crash; the test script then checks the
// kernel log and that the module unloads (no leaked reference).
TEST(Uapi, RandomCallsDoNoHarm)
{
    std::mt19937_64 rng(20261125);
    std::vector<UniqueFd> files;
    std::vector<UniqueFd> spare_fds;
    for (int i = 0; i < 4; ++i)
        spare_fds.emplace_back(::eventfd(0, EFD_CLOEXEC));
    const unsigned long requests[] = {
        VIRTIO_LOOPBACK_IOC_GET_VERSION,   VIRTIO_LOOPBACK_IOC_CREATE,
        VIRTIO_LOOPBACK_IOC_GET_INFO,      VIRTIO_LOOPBACK_IOC_GET_WINDOW,
        VIRTIO_LOOPBACK_IOC_SET_QUEUE_FDS, VIRTIO_LOOPBACK_IOC_START,
        VIRTIO_LOOPBACK_IOC_GET_QUEUE,     VIRTIO_LOOPBACK_IOC_INTERRUPT,
        VIRTIO_LOOPBACK_IOC_SET_CONFIG,    _IOW(VIRTIO_LOOPBACK_IOC_MAGIC, 0x01, int),
        _IO(VIRTIO_LOOPBACK_IOC_MAGIC, 0x42),
    };
    alignas(8) unsigned char arg[512];
    // make stress raises the count (VL_UAPI_STORM_CALLS).
    const char* env_calls = std::getenv("VL_UAPI_STORM_CALLS");
    const long calls = env_calls ? std::strtol(env_calls, nullptr, 10) : 3000;
    for (long call = 0; call < calls; ++call) {
        if (files.size() < 4 || rng() % 50 == 0) {
            if (files.size() >= 4)
                files.erase(files.begin() + static_cast<long>(rng() % files.size()));
            files.push_back(open_node());
        }
        int fd = files[rng() % files.size()].get();
        for (auto& b : arg)
            b = static_cast<unsigned char>(rng());
        // Bias towards plausible arguments so that deeper paths run.
        if (rng() % 2) {
            auto c = rng_params();
            c.device_id = 1 + static_cast<std::uint32_t>(rng() % 40);
            c.num_queues = 1 + static_cast<std::uint32_t>(rng() % 4);
            c.config_size = static_cast<std::uint32_t>(rng() % 300);
            c.timeout_ms = 100;
            std::memcpy(arg, &c, sizeof(c));
        }
        auto* q = reinterpret_cast<std::int32_t*>(arg);
        if (rng() % 2) {
            q[1] = 0;
            q[2] = rng() % 2 ? spare_fds[rng() % spare_fds.size()].get() : -1;
            q[3] = -1;
        }
        unsigned long request = requests[rng() % std::size(requests)];
        void* ptr = rng() % 20 == 0 ? reinterpret_cast<void*>(8) : arg; // sometimes a bad pointer
        int ret = ::ioctl(fd, request, ptr);
        if (request == VIRTIO_LOOPBACK_IOC_GET_WINDOW && ret == 0 && ptr == arg)
            ::close(reinterpret_cast<virtio_loopback_window*>(arg)->fd);
        if (rng() % 10 == 0) {
            virtio_loopback_msg msg{};
            if (::read(fd, &msg, sizeof(msg)) == static_cast<ssize_t>(sizeof(msg)) && rng() % 2) {
                virtio_loopback_reply reply{msg.id, -static_cast<int>(rng() % 5), 0};
                (void)!::write(fd, &reply, sizeof(reply));
            }
        }
    }
}

} // namespace
