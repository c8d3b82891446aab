// SPDX-License-Identifier: Apache-2.0
#include <fcntl.h>
#include <gtest/gtest.h>

#include "base/event_fd.hpp"
#include "base/log.hpp"
#include "base/mapping.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vl {
namespace {

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(UniqueFd, ClosesOnceOnDestructionAndMove)
{
    int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(raw, 0);
    {
        UniqueFd a(raw);
        UniqueFd b(std::move(a));
        EXPECT_FALSE(a.valid());
        EXPECT_EQ(b.get(), raw);
        EXPECT_TRUE(fd_is_open(raw));
    }
    EXPECT_FALSE(fd_is_open(raw));
}

TEST(UniqueFd, ReleaseGivesUpOwnership)
{
    int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(raw, 0);
    {
        UniqueFd a(raw);
        EXPECT_EQ(a.release(), raw);
    }
    EXPECT_TRUE(fd_is_open(raw));
    ::close(raw);
}

Result<int> parse_positive(int v)
{
    if (v <= 0)
        return Error("value must be positive", EINVAL);
    return v;
}

Status chain(int v, int* out)
{
    VL_TRY_ASSIGN(int x, parse_positive(v));
    *out = x * 2;
    return ok_status();
}

TEST(Result, CarriesValueOrError)
{
    auto good = parse_positive(3);
    ASSERT_TRUE(good.ok());
    EXPECT_EQ(*good, 3);
    auto bad = parse_positive(0);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code(), EINVAL);
    EXPECT_EQ(bad.error().wrap("--num-queues").message(), "--num-queues: value must be positive");
}

TEST(Result, TryMacrosPropagate)
{
    int out = 0;
    EXPECT_TRUE(chain(4, &out).ok());
    EXPECT_EQ(out, 8);
    Status s = chain(-1, &out);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().message(), "value must be positive");
}

TEST(Error, FromErrnoNamesTheCall)
{
    Error e = Error::from_errno("open /nonexistent", ENOENT);
    EXPECT_EQ(e.code(), ENOENT);
    EXPECT_NE(e.message().find("open /nonexistent: "), std::string::npos);
    EXPECT_NE(e.message().find("No such file"), std::string::npos);
}

TEST(EventFd, SignalThenDrain)
{
    auto efd = EventFd::create();
    ASSERT_TRUE(efd.ok()) << efd.error().message();
    auto empty = efd->drain();
    ASSERT_TRUE(empty.ok());
    EXPECT_EQ(*empty, 0u);
    ASSERT_TRUE(efd->signal().ok());
    ASSERT_TRUE(efd->signal().ok());
    auto two = efd->drain();
    ASSERT_TRUE(two.ok());
    EXPECT_EQ(*two, 2u);
}

TEST(Mapping, MapsAndUnmaps)
{
    UniqueFd fd(::memfd_create("vl-test", MFD_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::ftruncate(fd.get(), 8192), 0);
    auto m = Mapping::map(fd.get(), 8192, 0);
    ASSERT_TRUE(m.ok()) << m.error().message();
    m->bytes()[8191] = std::byte{0x5a};
    Mapping moved = std::move(*m);
    EXPECT_FALSE(m->valid());
    EXPECT_EQ(moved.bytes()[8191], std::byte{0x5a});
}

TEST(Mapping, ReportsFailure)
{
    auto m = Mapping::map(-1, 4096, 0);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.error().code(), EBADF);
}

TEST(Log, LevelsParseAndFilter)
{
    EXPECT_EQ(parse_log_level("debug"), LogLevel::debug);
    EXPECT_EQ(parse_log_level("loud"), std::nullopt);
    Logger log("test", LogLevel::warn);
    EXPECT_TRUE(log.enabled(LogLevel::error));
    EXPECT_FALSE(log.enabled(LogLevel::info));
    EXPECT_EQ(log.child("q0").component(), "test/q0");
}

} // namespace
} // namespace vl
