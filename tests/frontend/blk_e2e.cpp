// SPDX-License-Identifier: Apache-2.0
// vhost-user-blk end to end on the host: the program itself on a temporary
// image, driven by vl-test-driver (tests/driver) as its front-end. Command
// line behaviour and exit codes, blk-verify on one and two queues and with
// O_DIRECT (the pattern must then be in the image file), read-only, the
// null target, and a front-end killed in the middle of its I/O.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "blk_driver.hpp"
#include "program_runner.hpp"

#ifndef VL_BLK_PROGRAM
#error "VL_BLK_PROGRAM must name the vhost-user-blk program"
#endif
#ifndef VL_TEST_DRIVER_PROGRAM
#error "VL_TEST_DRIVER_PROGRAM must name the vl-test-driver program"
#endif

namespace vl::e2e
{
namespace
{

constexpr std::uint64_t kImageMiB = 64;

// Images live in /var/tmp: a disk file system on most machines, where
// O_DIRECT works (tmpfs refuses it before Linux 6.6).
const fs::path kImageParent = "/var/tmp";

std::string make_image(const TempDir& dir, std::uint64_t mib = kImageMiB)
{
    const std::string path = dir.file("disk.img");
    std::ofstream(path).close();
    fs::resize_file(path, mib << 20);
    return path;
}

// Sectors of the image that start with blk-verify's pattern magic.
std::size_t pattern_sectors(const std::string& image)
{
    std::ifstream in(image, std::ios::binary);
    std::vector<char> sector(512);
    std::size_t n = 0;
    while (in.read(sector.data(), 512))
        n += std::string_view(sector.data(), 8) == "VLDVERY1" ? 1 : 0;
    return n;
}

// vl-test-driver with `args`; its exit status, its output in `out`.
int test_driver(const TempDir& dir, std::vector<std::string> args, std::string& out)
{
    Program p(dir, VL_TEST_DRIVER_PROGRAM, std::move(args), "driver");
    const int status = p.wait();
    out = p.out() + p.err();
    return status;
}

struct BlkBackend : Backend {
    BlkBackend(const TempDir& dir, std::vector<std::string> extra)
        : Backend(dir, VL_BLK_PROGRAM, "blk.sock", std::move(extra))
    {
    }
};

TEST(BlkProgram, CapabilitiesAndHelp)
{
    TempDir dir;
    {
        Program p(dir, VL_BLK_PROGRAM, {"--print-capabilities"});
        EXPECT_EQ(p.wait(), 0);
        EXPECT_EQ(p.out(), "{\n  \"type\": \"block\",\n  \"features\": [\n    \"read-only\",\n"
                           "    \"blk-file\"\n  ]\n}\n");
    }
    Program p(dir, VL_BLK_PROGRAM, {"--help"});
    EXPECT_EQ(p.wait(), 0);
    for (const char* option : {"--blk-file=FILE", "--read-only", "--num-queues=N", "--queue-size=N",
                               "--serial=S", "--direct", "--null=SIZE"})
        EXPECT_NE(p.out().find(option), std::string::npos) << option << "\n" << p.out();
}

TEST(BlkProgram, BadUsageExitsWith2AndRuntimeErrorsWith1)
{
    TempDir dir(kImageParent);
    const std::string image = make_image(dir, 1);
    const std::vector<std::pair<std::vector<std::string>, std::string>> usage{
        {{"-s", dir.file("s")}, "missing --blk-file FILE"},
        {{"-s", dir.file("s"), "-b", image, "--queue-size", "3"}, "--queue-size must be"},
        {{"-s", dir.file("s"), "--null", "1x"}, "unknown unit"},
    };
    for (const auto& [args, message] : usage) {
        Program p(dir, VL_BLK_PROGRAM, args);
        EXPECT_EQ(p.wait(), 2) << message;
        EXPECT_NE(p.err().find(message), std::string::npos) << p.err();
        EXPECT_NE(p.err().find("Try 'vhost-user-blk --help'"), std::string::npos);
    }
    {
        Program p(dir, VL_BLK_PROGRAM, {"-s", dir.file("s"), "-b", dir.file("none.img")});
        EXPECT_EQ(p.wait(), 1);
        EXPECT_NE(p.err().find("none.img: No such file or directory — create the image first"),
                  std::string::npos)
            << p.err();
    }
    // A second back-end on the same image is refused: it is locked.
    BlkBackend first(dir, {"-b", image});
    Program second(dir, VL_BLK_PROGRAM, {"-s", dir.file("other.sock"), "-b", image});
    EXPECT_EQ(second.wait(), 1);
    EXPECT_NE(second.err().find("is in use"), std::string::npos) << second.err();
    EXPECT_TRUE(first.program.running());
}

TEST(BlkProgram, BlkVerifyOnTwoQueuesPutsThePatternInTheImage)
{
    TempDir dir(kImageParent);
    const std::string image = make_image(dir);
    BlkBackend backend(dir, {"-b", image, "--num-queues", "2", "--serial", "e2e-disk"});
    std::string out;
    ASSERT_EQ(test_driver(dir, {"-s", backend.socket, "blk-info"}, out), 0) << out;
    EXPECT_NE(out.find("capacity:            131072 sectors"), std::string::npos) << out;
    EXPECT_NE(out.find("num_queues:          2"), std::string::npos) << out;
    EXPECT_NE(out.find("serial:              \"e2e-disk\""), std::string::npos) << out;

    ASSERT_EQ(test_driver(dir,
                          {"-s", backend.socket, "blk-verify", "--size", "32", "--queue", "0",
                           "--qd", "32", "--seed", "1"},
                          out),
              0)
        << out;
    EXPECT_NE(out.find("blk-verify: PASS"), std::string::npos) << out;
    ASSERT_EQ(
        test_driver(dir,
                    {"-s", backend.socket, "blk-verify", "--size", "8", "--queue", "1",
                     "--request-size", "4", "--requests", "3000", "--qd", "64", "--seed", "2"},
                    out),
        0)
        << out;
    ASSERT_EQ(test_driver(dir,
                          {"-s", backend.socket, "--no-indirect", "--no-event-idx", "--queue-size",
                           "32", "blk-verify", "--size", "8", "--request-size", "16", "--qd", "32",
                           "--seed", "3"},
                          out),
              0)
        << out;
    // 32 MiB of pattern sectors, less the blocks each run zeroed with its
    // WRITE_ZEROES and DISCARD checks.
    EXPECT_GE(pattern_sectors(image), 65000U);
    EXPECT_EQ(backend.program.stop(), 0) << backend.program.err();
    EXPECT_FALSE(fs::exists(backend.socket));
}

TEST(BlkProgram, DirectIo)
{
    TempDir dir(kImageParent);
    const std::string image = make_image(dir);
    BlkBackend backend(dir, {"-b", image, "--direct"});
    if (!backend.program.running() && backend.program.err().find("O_DIRECT") != std::string::npos)
        GTEST_SKIP() << backend.program.err();
    std::string out;
    ASSERT_EQ(
        test_driver(dir, {"-s", backend.socket, "blk-verify", "--size", "16", "--qd", "16"}, out),
        0)
        << out;
    EXPECT_GE(pattern_sectors(image), 32000U);
    EXPECT_NE(backend.program.err().find("O_DIRECT"), std::string::npos) << "announced at start";
    EXPECT_EQ(backend.program.stop(), 0);
}

TEST(BlkProgram, ReadOnlyAndNull)
{
    TempDir dir(kImageParent);
    const std::string image = make_image(dir, 4);
    std::string out;
    {
        BlkBackend backend(dir, {"-b", image, "--read-only"});
        ASSERT_EQ(test_driver(dir, {"-s", backend.socket, "blk-info"}, out), 0) << out;
        EXPECT_NE(out.find("read_only:           yes"), std::string::npos) << out;
        EXPECT_NE(test_driver(dir, {"-s", backend.socket, "blk-verify", "--size", "1"}, out), 0);
        EXPECT_NE(out.find("read-only"), std::string::npos) << out;
        EXPECT_EQ(backend.program.stop(), 0);
    }
    EXPECT_EQ(pattern_sectors(image), 0U);

    BlkBackend null(dir, {"--null", "2G"});
    ASSERT_EQ(test_driver(dir, {"-s", null.socket, "blk-info"}, out), 0) << out;
    EXPECT_NE(out.find("capacity:            4194304 sectors"), std::string::npos) << out;
    EXPECT_NE(out.find("serial:              \"null\""), std::string::npos) << out;
    // Writes are dropped, so every sector read back is a mismatch.
    EXPECT_EQ(
        test_driver(dir, {"-s", null.socket, "blk-verify", "--size", "1", "--no-zeroes"}, out), 1);
    EXPECT_NE(out.find("2048 mismatched"), std::string::npos) << out;
    EXPECT_EQ(null.program.stop(), 0);
}

// A front-end that keeps 64 writes of 64 KiB (from 32 MiB on) in flight
// on `queue` until it is killed; writes a byte to `ready` once the first
// ones completed.
[[noreturn]] void busy_front_end(const std::string& socket, std::uint32_t queue, int ready)
{
    test_driver::BlkOptions options;
    options.request_timeout = 10s;
    auto blk = test_driver::BlkDriver::open(socket, options, Logger("victim", LogLevel::error));
    if (!blk)
        ::_exit(3);
    std::vector<test_driver::BlkRequest> requests;
    std::map<std::uint16_t, std::size_t> by_head;
    const std::vector<std::byte> data(64 << 10, std::byte{0x5a});
    for (std::size_t k = 0; k < 64; ++k) {
        auto r = blk->make_write(65536 + k * 128, data); // from 32 MiB on
        if (!r)
            ::_exit(4);
        requests.push_back(std::move(*r));
        auto head = blk->submit(queue, requests.back());
        if (!head)
            ::_exit(5);
        by_head[*head] = k;
    }
    for (int completed = 0;; ++completed) {
        auto used = blk->wait(queue);
        if (!used)
            ::_exit(6);
        if (completed == 64)
            (void)!::write(ready, "r", 1);
        const std::size_t k = by_head.at(used->head);
        auto head = blk->submit(queue, requests[k]);
        if (!head)
            ::_exit(7);
        by_head[*head] = k;
    }
}

// A front-end killed while its requests are in flight: the back-end ends
// that session, finishes (or cancels) the I/O, and serves the next
// front-end, whose data is intact.
TEST(BlkProgram, FrontEndKilledMidIoThenTheNextIsServed)
{
    TempDir dir(kImageParent);
    const std::string image = make_image(dir);
    BlkBackend backend(dir, {"-b", image, "--num-queues", "2", "--log-level", "debug"});
    for (std::uint32_t queue = 0; queue < 2; ++queue) {
        int ready[2];
        ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0)
            busy_front_end(backend.socket, queue, ready[1]);
        ::close(ready[1]);
        char byte = 0;
        ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the front-end did not get going";
        ::close(ready[0]);
        ::kill(child, SIGKILL);
        int status = 0;
        ASSERT_EQ(::waitpid(child, &status, 0), child);
        EXPECT_TRUE(WIFSIGNALED(status)) << "the front-end ended before it was killed";
    }
    std::string out;
    ASSERT_EQ(test_driver(dir,
                          {"-s", backend.socket, "blk-verify", "--size", "16", "--queue", "1",
                           "--qd", "32"},
                          out),
              0)
        << out << backend.program.err();
    EXPECT_TRUE(backend.program.running());
    EXPECT_EQ(backend.program.stop(), 0);
    const std::string log = backend.program.err();
    EXPECT_NE(log.find("the front-end disconnected"), std::string::npos) << log;
    EXPECT_NE(log.find("ring 0 stopped at available index"), std::string::npos) << log;
    EXPECT_EQ(log.find(" error "), std::string::npos) << log;
    // The killed front-ends' writes (0x5a) are in the image too, next to
    // the pattern.
    std::ifstream in(image, std::ios::binary);
    std::vector<char> first(512);
    in.seekg(static_cast<std::streamoff>(32 << 20));
    in.read(first.data(), 512);
    EXPECT_TRUE(std::all_of(first.begin(), first.end(), [](char c) { return c == 0x5a; }));
}

} // namespace
} // namespace vl::e2e
