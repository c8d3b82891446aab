// SPDX-License-Identifier: Apache-2.0
// vhost-user-blk: validation of its options, the choice of I/O engine, and
// the device served by the framework (a session with its worker threads on
// one end of a socket pair) to the user-space test driver (tests/driver) on
// the other: every request type against an image file, malformed requests,
// read-only, the null target, O_DIRECT with bounce buffers, long chains,
// more requests than the io_uring holds, writing zeros where fallocate
// cannot, and a front-end that leaves with I/O in flight. The request tests
// run with each I/O engine (uring, sync).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <linux/virtio_blk.h>
#include <poll.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <filesystem>
#include <future>
#include <numeric>

#include "backend/frontend_notifier.hpp"
#include "backend/harness.hpp"
#include "backend/program.hpp"
#include "backend/session.hpp"
#include "base/mapping.hpp"
#include "blk/blk_device.hpp"
#include "blk/io_ring.hpp"
#include "blk_driver.hpp"
#include "vhost_user/connection.hpp"

namespace vl::blk
{
namespace
{

using namespace std::chrono_literals;
using test_driver::BlkDriver;
using test_driver::BlkOptions;
using test_driver::BlkRequest;
using test_driver::BlkRequestType;
using test_driver::Buffer;
using test_driver::VhostUserDriver;
namespace fs = std::filesystem;

constexpr std::uint64_t kImageBytes = 8 << 20;
constexpr std::uint64_t kImageSectors = kImageBytes / kSectorSize;
constexpr std::uint8_t kOk = VIRTIO_BLK_S_OK;
constexpr std::uint8_t kIoErr = VIRTIO_BLK_S_IOERR;
constexpr std::uint8_t kUnsupp = VIRTIO_BLK_S_UNSUPP;
constexpr LogLevel kLogLevel = LogLevel::error;

// ---------------------------------------------------------------------------
// Options

Result<BlkConfig> from_args(std::vector<std::string> args)
{
    backend::ProgramInfo info;
    info.options = blk_options();
    auto cl = backend::CommandLine::parse(args, backend::all_options(info));
    if (!cl)
        return cl.error();
    return BlkConfig::from_command_line(*cl);
}

std::string error_of(std::vector<std::string> args)
{
    auto config = from_args(std::move(args));
    return config.ok() ? std::string("(no error)") : config.error().message();
}

TEST(BlkConfig, DefaultsAndEveryOption)
{
    auto config = from_args({"-s", "/run/b.sock", "-b", "/images/disk-01.img"});
    ASSERT_TRUE(config.ok()) << config.error().message();
    EXPECT_EQ(config->path, "/images/disk-01.img");
    EXPECT_FALSE(config->read_only);
    EXPECT_FALSE(config->direct);
    EXPECT_FALSE(config->null_size);
    EXPECT_EQ(config->num_queues, 1U);
    EXPECT_EQ(config->queue_size, kDefaultQueueSize);
    EXPECT_EQ(config->serial, "disk-01.img") << "the file name by default";
    EXPECT_EQ(config->io_engine, IoEngine::automatic);

    config = from_args({"--blk-file=/dev/sdz", "-r", "--num-queues", "4", "--queue-size=1024",
                        "--serial", "01234567890123456789", "--direct", "--io=uring"});
    ASSERT_TRUE(config.ok()) << config.error().message();
    EXPECT_TRUE(config->read_only);
    EXPECT_TRUE(config->direct);
    EXPECT_EQ(config->num_queues, 4U);
    EXPECT_EQ(config->queue_size, 1024U);
    EXPECT_EQ(config->serial, "01234567890123456789");
    EXPECT_EQ(config->io_engine, IoEngine::uring);

    config = from_args({"--null", "64M"});
    ASSERT_TRUE(config.ok()) << config.error().message();
    EXPECT_EQ(config->null_size, std::uint64_t{64} << 20);
    EXPECT_EQ(config->serial, "null");

    config = from_args({"-b", "/a/very-long-image-file-name.qcow-raw.img"});
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(config->serial, "very-long-image-file") << "cut to 20 bytes";
}

TEST(BlkConfig, ErrorsSayWhatToChange)
{
    EXPECT_NE(error_of({"-s", "x"}).find("missing --blk-file FILE"), std::string::npos);
    EXPECT_EQ(error_of({"-b", "d.img", "--null", "1M"}),
              "give either --blk-file or --null, not both");
    EXPECT_EQ(error_of({"--null", "1M", "--direct"}),
              "--direct needs --blk-file: the null disk does no I/O");
    EXPECT_EQ(error_of({"--null", "1000"}),
              "--null 1000 is not a whole number of 512-byte sectors");
    EXPECT_EQ(error_of({"--null", "0"}), "--null 0 is not a whole number of 512-byte sectors");
    EXPECT_EQ(error_of({"--null", "12Q"}), "--null '12Q': unknown unit 'Q' (use K, M, G or T)");
    EXPECT_EQ(error_of({"--null", "big"}),
              "--null wants a size such as 1048576, 64M or 2G, got 'big'");
    EXPECT_EQ(error_of({"--null", "99999999T"}), "--null 99999999T is too large");
    EXPECT_EQ(error_of({"-b", "d", "--num-queues", "0"}), "--num-queues must be 1 to 256, got 0");
    EXPECT_EQ(error_of({"-b", "d", "--num-queues", "257"}),
              "--num-queues must be 1 to 256, got 257");
    EXPECT_EQ(error_of({"-b", "d", "--queue-size", "100"}),
              "--queue-size must be a power of two from 4 to 32768, got 100");
    EXPECT_EQ(error_of({"-b", "d", "--queue-size", "2"}),
              "--queue-size must be a power of two from 4 to 32768, got 2");
    EXPECT_EQ(error_of({"-b", "d", "--serial", "012345678901234567890"}),
              "--serial '012345678901234567890' is 21 bytes; a virtio-blk serial has at most 20");
    EXPECT_EQ(error_of({"-b", "d", "--serial", "tab\there"}),
              "--serial 'tab\there' has a character that is not printable ASCII");
    EXPECT_EQ(error_of({"-b", "d", "--num-queues", "two"}),
              "--num-queues wants a whole number of queues, got 'two'");
}

TEST(BlkConfig, IoEngineIsAutoUringOrSync)
{
    const std::vector<std::pair<std::string, IoEngine>> valid{
        {"auto", IoEngine::automatic}, {"uring", IoEngine::uring}, {"sync", IoEngine::sync}};
    for (const auto& [text, engine] : valid) {
        auto config = from_args({"-b", "d.img", "--io", text});
        ASSERT_TRUE(config.ok()) << text << ": " << config.error().message();
        EXPECT_EQ(config->io_engine, engine) << text;
        EXPECT_EQ(io_engine_name(engine), text) << "the name --io takes";
    }
    // The null disk does no I/O with any engine: accepted, and ignored.
    auto null = from_args({"--null", "1M", "--io=sync"});
    ASSERT_TRUE(null.ok()) << null.error().message();
    EXPECT_EQ(null->io_engine, IoEngine::sync);

    for (const char* bad : {"fast", "", "Sync", "io_uring", "auto "})
        EXPECT_EQ(error_of({"-b", "d.img", "--io", bad}),
                  fmt::format("--io wants auto, uring or sync, got '{}'", bad));
    EXPECT_NE(error_of({"-b", "d.img", "--io"}).find("--io"), std::string::npos)
        << "a missing value names the option";
}

TEST(IoEngineChoice, AutoIsSyncOnlyForImagesOnMemoryFileSystems)
{
    using Kind = Disk::Kind;
    constexpr std::uint64_t kExt4 = EXT4_SUPER_MAGIC;
    // auto: a memory file system runs every io_uring operation in a kernel
    // worker thread; in the queue's thread is faster.
    for (const std::uint64_t memory : {std::uint64_t{TMPFS_MAGIC}, std::uint64_t{RAMFS_MAGIC}}) {
        const IoEngineChoice choice = choose_io_engine(IoEngine::automatic, Kind::file, memory);
        EXPECT_EQ(choice.engine, IoEngine::sync) << memory;
        EXPECT_NE(choice.reason.find("I/O runs in the queue threads (io_uring would hand every "
                                     "request to a worker thread)"),
                  std::string::npos)
            << choice.reason;
    }
    EXPECT_EQ(choose_io_engine(IoEngine::automatic, Kind::file, TMPFS_MAGIC).reason.substr(0, 6),
              "tmpfs:");
    EXPECT_EQ(choose_io_engine(IoEngine::automatic, Kind::file, RAMFS_MAGIC).reason.substr(0, 6),
              "ramfs:");
    EXPECT_EQ(choose_io_engine(IoEngine::automatic, Kind::file, kExt4).engine, IoEngine::uring);
    EXPECT_EQ(choose_io_engine(IoEngine::automatic, Kind::file, 0).engine, IoEngine::uring);
    EXPECT_EQ(choose_io_engine(IoEngine::automatic, Kind::block_device, 0).engine, IoEngine::uring);
    // Only an image file's file system counts (a block device has none).
    EXPECT_EQ(choose_io_engine(IoEngine::automatic, Kind::block_device, TMPFS_MAGIC).engine,
              IoEngine::uring);

    // What was asked for is what is used.
    EXPECT_EQ(choose_io_engine(IoEngine::uring, Kind::file, TMPFS_MAGIC).engine, IoEngine::uring);
    EXPECT_EQ(choose_io_engine(IoEngine::sync, Kind::file, kExt4).engine, IoEngine::sync);
    EXPECT_EQ(choose_io_engine(IoEngine::sync, Kind::block_device, 0).engine, IoEngine::sync);

    // The null disk does no I/O: it needs no io_uring, whatever was asked.
    for (const IoEngine asked : {IoEngine::automatic, IoEngine::uring, IoEngine::sync})
        EXPECT_EQ(choose_io_engine(asked, Kind::null, 0).engine, IoEngine::sync);
}

TEST(BlkConfig, ParseSize)
{
    EXPECT_EQ(parse_size("4096", "--x").value(), 4096U);
    EXPECT_EQ(parse_size("4k", "--x").value(), 4096U);
    EXPECT_EQ(parse_size("3M", "--x").value(), 3U << 20);
    EXPECT_EQ(parse_size("2G", "--x").value(), std::uint64_t{2} << 30);
    EXPECT_EQ(parse_size("1T", "--x").value(), std::uint64_t{1} << 40);
    EXPECT_FALSE(parse_size("16777216T", "--x").ok()) << "2^64 overflows";
    EXPECT_FALSE(parse_size("", "--x").ok());
    EXPECT_FALSE(parse_size("-1", "--x").ok());
    EXPECT_FALSE(parse_size("1MB", "--x").ok());
}

TEST(ConsumeIovecs, DropsWhatAShortTransferDid)
{
    std::array<std::byte, 64> mem{};
    std::array<iovec, 3> iov{iovec{&mem[0], 10}, iovec{&mem[10], 20}, iovec{&mem[30], 30}};
    EXPECT_EQ(consume_iovecs(iov, 0), 0U);
    EXPECT_EQ(iov[0].iov_len, 10U);
    EXPECT_EQ(consume_iovecs(iov, 4), 0U) << "inside the first";
    EXPECT_EQ(iov[0].iov_base, &mem[4]);
    EXPECT_EQ(iov[0].iov_len, 6U);
    EXPECT_EQ(consume_iovecs(iov, 6), 1U) << "exactly the rest of the first";
    EXPECT_EQ(consume_iovecs(std::span(iov).subspan(1), 25), 1U) << "the second and 5 more";
    EXPECT_EQ(iov[2].iov_base, &mem[35]);
    EXPECT_EQ(iov[2].iov_len, 25U);
    EXPECT_EQ(consume_iovecs(std::span(iov).subspan(2), 25), 1U);
}

// ---------------------------------------------------------------------------
// Test bench

using backend::test::TempDir;

// statfs's f_type of the file system `path` is on; 0 if it cannot be told.
std::uint64_t fs_type_of(const std::string& path)
{
    struct statfs sfs {
    };
    return ::statfs(path.c_str(), &sfs) == 0 ? static_cast<unsigned long>(sfs.f_type) : 0;
}

// Where the tests find a tmpfs: /dev/shm on most systems.
constexpr const char* kTmpfs = "/dev/shm";

// A sparse image of `bytes` at `path`.
void create_image(const std::string& path, std::uint64_t bytes)
{
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd.valid()) << path << ": " << std::strerror(errno);
    ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(bytes)), 0);
}

// How many io_urings this process has open.
std::size_t open_io_urings()
{
    std::size_t count = 0;
    for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        if (fs::read_symlink(entry.path(), ec).string() == "anon_inode:[io_uring]")
            ++count;
    }
    return count;
}

std::vector<std::byte> pattern(std::size_t len, unsigned seed)
{
    std::vector<std::byte> data(len);
    for (std::size_t i = 0; i < len; ++i)
        data[i] = static_cast<std::byte>((i * 131 + seed * 7 + i / 512) & 0xff);
    return data;
}

std::vector<std::byte> file_bytes(const std::string& path, std::uint64_t offset, std::size_t len)
{
    std::vector<std::byte> out(len);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(::pread(fd.get(), out.data(), len, static_cast<off_t>(offset)),
              static_cast<ssize_t>(len));
    return out;
}

void write_file(const std::string& path, std::uint64_t offset, std::span<const std::byte> data)
{
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::pwrite(fd.get(), data.data(), data.size(), static_cast<off_t>(offset)),
              static_cast<ssize_t>(data.size()));
}

// Whether the page of `path` at `offset` is in the host's page cache.
bool in_page_cache(const std::string& path, std::uint64_t offset)
{
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    auto map = Mapping::map(fd.get(), page, offset / page * page, PROT_READ, MAP_SHARED);
    EXPECT_TRUE(map.ok());
    unsigned char resident = 0;
    EXPECT_EQ(::mincore(map->data(), page, &resident), 0);
    return (resident & 1) != 0;
}

bool all_zero(std::span<const std::byte> bytes)
{
    return std::all_of(bytes.begin(), bytes.end(), [](std::byte b) { return b == std::byte{0}; });
}

// A device served by the framework on one end of a socket pair; the test
// connects the test driver to the other end.
class Served
{
  public:
    explicit Served(backend::Device& device) : device_(device)
    {
        auto pair = vhost_user::Connection::pair();
        EXPECT_TRUE(pair.ok());
        auto& [front, back] = *pair;
        front_.emplace(std::move(front));
        stop_ = *EventFd::create();
        session_ = std::async(std::launch::async, [this, conn = std::move(back)]() mutable {
            const int fds[] = {stop_.get()};
            return backend::serve_connection(device_, std::move(conn), notifier_, fds, {},
                                             Logger("blk-test", kLogLevel));
        });
    }
    Served(const Served&) = delete;
    Served& operator=(const Served&) = delete;
    ~Served()
    {
        front_.reset();
        (void)stop_.signal();
        (void)end();
    }

    Result<VhostUserDriver> connect(test_driver::ConnectOptions options = {})
    {
        options.reply_timeout = 10s;
        auto conn = std::move(*front_);
        front_.reset();
        return VhostUserDriver::connect(std::move(conn), options, Logger("driver", kLogLevel));
    }
    Result<BlkDriver> open(BlkOptions options = {})
    {
        options.request_timeout = 10s;
        VL_TRY_ASSIGN(auto driver, connect());
        return BlkDriver::start(std::move(driver), options);
    }
    // How the session ended (once the driver is gone).
    Status end()
    {
        if (session_.valid())
            result_ = session_.get();
        return result_;
    }

  private:
    backend::Device& device_;
    backend::FrontendNotifier notifier_;
    EventFd stop_;
    std::optional<vhost_user::Connection> front_;
    std::future<Status> session_;
    Status result_;
};

struct Answer {
    std::uint8_t status = 0xff;
    std::uint32_t used_len = 0;
};

// Sends one request and waits for it.
Answer run(BlkDriver& blk, const BlkRequest& request, std::uint32_t queue = 0)
{
    auto head = blk.submit(queue, request);
    EXPECT_TRUE(head.ok()) << head.error().message();
    if (!head)
        return {};
    auto used = blk.wait(queue);
    EXPECT_TRUE(used.ok()) << used.error().message();
    if (!used)
        return {};
    EXPECT_EQ(used->head, *head);
    return {request.status(), used->len};
}

BlkRequest build(BlkDriver& blk, BlkRequestType type, std::uint64_t sector,
                 std::span<const std::byte> out = {}, std::uint32_t in_len = 0,
                 std::uint32_t segment_max = 0)
{
    auto r = BlkRequest::build(*blk.driver().pool(), type, sector, out, in_len, segment_max);
    EXPECT_TRUE(r.ok()) << r.error().message();
    return std::move(r).value();
}

// DISCARD / WRITE_ZEROES segments, as the device reads them.
std::vector<std::byte> segments(std::initializer_list<std::array<std::uint64_t, 3>> ranges)
{
    std::vector<std::byte> out;
    for (const auto& [sector, sectors, flags] : ranges) {
        auto range =
            test_driver::encode_blk_range(sector, static_cast<std::uint32_t>(sectors), false);
        const std::uint32_t raw = htole32(static_cast<std::uint32_t>(flags)); // any bits
        std::memcpy(range.data() + 12, &raw, 4);
        out.insert(out.end(), range.begin(), range.end());
    }
    return out;
}

// A config with some fields set: cfg([](BlkConfig& c) { c.read_only = true; }).
template <class Change> BlkConfig cfg(Change&& change)
{
    BlkConfig config;
    change(config);
    return config;
}

class BlkDeviceTest : public ::testing::Test
{
  protected:
    BlkDeviceTest() : image_(dir_.file("disk.img")) { create_image(image_, kImageBytes); }

    std::unique_ptr<BlkDevice> make(BlkConfig config = {})
    {
        if (!config.null_size && config.path.empty())
            config.path = image_;
        if (config.serial.empty())
            config.serial = "disk.img";
        auto device = BlkDevice::create(config, Logger("blk", kLogLevel));
        EXPECT_TRUE(device.ok()) << device.error().message();
        return device.ok() ? std::move(device).value() : nullptr;
    }

    TempDir dir_;
    std::string image_;
};

// The tests of requests that reach the disk, once with each I/O engine.
class BlkRequestTest : public BlkDeviceTest, public ::testing::WithParamInterface<IoEngine>
{
  protected:
    std::unique_ptr<BlkDevice> make(BlkConfig config = {})
    {
        config.io_engine = GetParam();
        auto device = BlkDeviceTest::make(std::move(config));
        if (device) {
            EXPECT_EQ(device->io_engine(), GetParam()) << "the engine asked for";
        }
        return device;
    }
};

INSTANTIATE_TEST_SUITE_P(Engines, BlkRequestTest,
                         ::testing::Values(IoEngine::uring, IoEngine::sync),
                         [](const ::testing::TestParamInfo<IoEngine>& param_info) {
                             return std::string(io_engine_name(param_info.param));
                         });

// ---------------------------------------------------------------------------
// What the driver sees

TEST_F(BlkDeviceTest, FeaturesAndConfigSpace)
{
    auto device = make(cfg([&](BlkConfig& c) {
        c.num_queues = 2;
        c.queue_size = 128;
    }));
    EXPECT_EQ(device->num_queues(), 2U);
    EXPECT_EQ(device->max_queue_size(), 128U);
    EXPECT_EQ(device->max_chain_length(), 128U) << "seg_max + header + status";
    const std::uint64_t f = device->features();
    for (unsigned b : {VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH,
                       VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES})
        EXPECT_TRUE(test_driver::has_feature(f, b)) << "bit " << b;
    EXPECT_FALSE(test_driver::has_feature(f, VIRTIO_BLK_F_RO));
    EXPECT_FALSE(test_driver::has_feature(f, VIRTIO_BLK_F_SIZE_MAX));

    auto raw = device->read_config(0, 60);
    ASSERT_TRUE(raw.ok());
    auto config = test_driver::parse_blk_config(*raw, f);
    ASSERT_TRUE(config.ok()) << config.error().message();
    EXPECT_EQ(config->capacity_sectors, kImageSectors);
    EXPECT_EQ(config->seg_max, 126U);
    EXPECT_EQ(config->blk_size, 512U);
    EXPECT_EQ(config->num_queues, 2U);
    ASSERT_TRUE(config->discard && config->write_zeroes);
    EXPECT_EQ(config->discard->max_segments, kMaxSegments);
    EXPECT_EQ(config->discard->sector_alignment, 1U);
    EXPECT_GE(config->discard->max_sectors, 1U << 16);
    EXPECT_EQ(config->write_zeroes->max_segments, kMaxSegments);
    EXPECT_TRUE(config->write_zeroes->may_unmap);

    auto part = device->read_config(8, 4);
    ASSERT_TRUE(part.ok());
    EXPECT_TRUE(std::equal(part->begin(), part->end(), raw->begin() + 8));
    auto beyond = device->read_config(0, 64);
    ASSERT_FALSE(beyond.ok());
    EXPECT_NE(beyond.error().message().find("has 60 bytes"), std::string::npos);
    EXPECT_FALSE(device->read_config(61, 1).ok());
    const std::array<std::byte, 1> wce{std::byte{1}};
    EXPECT_FALSE(device->write_config(32, wce).ok()) << "no CONFIG_WCE: nothing is writable";

    device.reset(); // it locks the image
    auto one = make(cfg([&](BlkConfig& c) { c.read_only = true; }));
    EXPECT_TRUE(test_driver::has_feature(one->features(), VIRTIO_BLK_F_RO));
    EXPECT_FALSE(test_driver::has_feature(one->features(), VIRTIO_BLK_F_MQ));
}

TEST_F(BlkDeviceTest, OpenErrorsSayWhatToDo)
{
    auto missing = BlkDevice::create(cfg([&](BlkConfig& c) {
                                         c.path = dir_.file("nope.img");
                                         c.serial = "x";
                                     }),
                                     Logger("blk", kLogLevel));
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.error().message().find("nope.img: No such file or directory — create the "
                                             "image first"),
              std::string::npos)
        << missing.error().message();

    auto directory = BlkDevice::create(cfg([&](BlkConfig& c) {
                                           c.path = "/var/tmp";
                                           c.serial = "x";
                                       }),
                                       Logger("blk", kLogLevel));
    ASSERT_FALSE(directory.ok());
    EXPECT_NE(directory.error().message().find("neither a regular file nor a block device"),
              std::string::npos);

    const std::string tiny = dir_.file("tiny.img");
    UniqueFd(::open(tiny.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)).reset();
    auto empty = BlkDevice::create(cfg([&](BlkConfig& c) {
                                       c.path = tiny;
                                       c.serial = "x";
                                   }),
                                   Logger("blk", kLogLevel));
    ASSERT_FALSE(empty.ok());
    EXPECT_NE(empty.error().message().find("smaller than one 512-byte block"), std::string::npos);

    // The first device locks the image; a second one is refused.
    auto first = make();
    auto second = BlkDevice::create(cfg([&](BlkConfig& c) {
                                        c.path = image_;
                                        c.serial = "x";
                                    }),
                                    Logger("blk", kLogLevel));
    ASSERT_FALSE(second.ok());
    EXPECT_NE(second.error().message().find("is in use"), std::string::npos)
        << second.error().message();
    auto reader = BlkDevice::create(cfg([&](BlkConfig& c) {
                                        c.path = image_;
                                        c.read_only = true;
                                        c.serial = "x";
                                    }),
                                    Logger("blk", kLogLevel));
    EXPECT_FALSE(reader.ok()) << "a writer excludes readers too";
}

// --io=auto looks at the file system the image is really on.
TEST_F(BlkDeviceTest, AutoEngineFollowsTheImagesFileSystem)
{
    const std::uint64_t here = fs_type_of(image_);
    auto device = BlkDeviceTest::make();
    ASSERT_TRUE(device);
    EXPECT_EQ(device->disk().fs_type(), here);
    EXPECT_EQ(device->io_engine(),
              here == TMPFS_MAGIC || here == RAMFS_MAGIC ? IoEngine::sync : IoEngine::uring);

    auto null = BlkDeviceTest::make(cfg([](BlkConfig& c) {
        c.null_size = 1 << 20;
        c.io_engine = IoEngine::uring;
    }));
    ASSERT_TRUE(null);
    EXPECT_EQ(null->io_engine(), IoEngine::sync) << "the null disk needs no io_uring";

    if (fs_type_of(kTmpfs) != TMPFS_MAGIC)
        GTEST_SKIP() << kTmpfs << " is not a tmpfs here";
    TempDir memory(kTmpfs);
    const std::string image = memory.file("disk.img");
    create_image(image, kImageBytes);
    auto on_tmpfs = BlkDeviceTest::make(cfg([&](BlkConfig& c) { c.path = image; }));
    ASSERT_TRUE(on_tmpfs);
    EXPECT_EQ(on_tmpfs->disk().fs_type(), std::uint64_t{TMPFS_MAGIC});
    EXPECT_EQ(on_tmpfs->io_engine(), IoEngine::sync);
    on_tmpfs.reset(); // it locks the image
    auto forced = BlkDeviceTest::make(cfg([&](BlkConfig& c) {
        c.path = image;
        c.io_engine = IoEngine::uring;
    }));
    ASSERT_TRUE(forced);
    EXPECT_EQ(forced->io_engine(), IoEngine::uring) << "--io=uring is obeyed on tmpfs too";
}

// ---------------------------------------------------------------------------
// Requests on an image file

TEST_P(BlkRequestTest, ReadsAndWritesReachTheImage)
{
    write_file(image_, 4096, pattern(8192, 1));
    auto device = make();
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();

    std::vector<std::byte> got(8192);
    ASSERT_TRUE(blk->read(0, 8, got).ok());
    EXPECT_EQ(got, pattern(8192, 1)) << "what was in the file";

    const auto data = pattern(64 << 10, 2);
    ASSERT_TRUE(blk->write(0, 1000, data).ok());
    EXPECT_EQ(file_bytes(image_, 1000 * 512, data.size()), data) << "written to the file";
    auto read = build(*blk, BlkRequestType::in, 1000, {}, 64 << 10);
    const Answer a = run(*blk, read);
    EXPECT_EQ(a.status, kOk);
    EXPECT_EQ(a.used_len, (64U << 10) + 1) << "data and status";
    EXPECT_TRUE(std::equal(data.begin(), data.end(), read.data().begin()));

    // The last sector of the disk, and an empty read and write.
    ASSERT_TRUE(blk->write(0, kImageSectors - 1, pattern(512, 3)).ok());
    EXPECT_EQ(file_bytes(image_, kImageBytes - 512, 512), pattern(512, 3));
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::in, 5, {}, 0)).status, kOk);
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::out, 5)).status, kOk);

    auto flush = build(*blk, BlkRequestType::flush, 0);
    const Answer f = run(*blk, flush);
    EXPECT_EQ(f.status, kOk);
    EXPECT_EQ(f.used_len, 1U);
}

TEST_P(BlkRequestTest, EveryQueueServesTheSameDisk)
{
    auto device = make(cfg([&](BlkConfig& c) { c.num_queues = 3; }));
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    ASSERT_EQ(blk->queue_count(), 3U);
    for (std::uint32_t q = 0; q < 3; ++q)
        ASSERT_TRUE(blk->write(q, 64 * q, pattern(4096, q)).ok());
    for (std::uint32_t q = 0; q < 3; ++q) {
        std::vector<std::byte> got(4096);
        ASSERT_TRUE(blk->read((q + 1) % 3, 64 * q, got).ok());
        EXPECT_EQ(got, pattern(4096, q));
    }
}

TEST_F(BlkDeviceTest, GetIdIsTheSerialNulPaddedToTwentyBytes)
{
    auto device = make(cfg([&](BlkConfig& c) { c.serial = "disk.img"; }));
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    EXPECT_EQ(blk->get_id(0).value(), "disk.img");

    auto exact = build(*blk, BlkRequestType::get_id, 0, {}, 20);
    std::fill(exact.data().begin(), exact.data().end(), std::byte{0x55});
    Answer a = run(*blk, exact);
    EXPECT_EQ(a.status, kOk);
    EXPECT_EQ(a.used_len, 21U);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(exact.data().data()), 8), "disk.img");
    EXPECT_TRUE(all_zero(exact.data().subspan(8))) << "NUL padding up to 20 bytes";

    // A larger buffer gets 20 bytes; the rest stays untouched.
    auto large = build(*blk, BlkRequestType::get_id, 0, {}, 32);
    std::fill(large.data().begin(), large.data().end(), std::byte{0x55});
    a = run(*blk, large);
    EXPECT_EQ(a.used_len, 21U);
    EXPECT_EQ(large.data()[20], std::byte{0x55});
    // A smaller one gets what fits.
    auto small = build(*blk, BlkRequestType::get_id, 0, {}, 4);
    a = run(*blk, small);
    EXPECT_EQ(a.status, kOk);
    EXPECT_EQ(a.used_len, 5U);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(small.data().data()), 4), "disk");
}

TEST_F(BlkDeviceTest, GetIdOfAFullSerialHasNoTerminator)
{
    auto device = make(cfg([&](BlkConfig& c) { c.serial = "ABCDEFGHIJKLMNOPQRST"; }));
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    auto id = build(*blk, BlkRequestType::get_id, 0, {}, 21);
    std::fill(id.data().begin(), id.data().end(), std::byte{0x55});
    EXPECT_EQ(run(*blk, id).used_len, 21U);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(id.data().data()), 20),
              "ABCDEFGHIJKLMNOPQRST");
    EXPECT_EQ(id.data()[20], std::byte{0x55}) << "no NUL after 20 bytes";
    EXPECT_EQ(blk->get_id(0).value(), "ABCDEFGHIJKLMNOPQRST");
}

TEST_P(BlkRequestTest, WriteZeroesZeroesEverySegmentWithAndWithoutUnmap)
{
    write_file(image_, 0, pattern(1 << 20, 4));
    auto device = make();
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();

    ASSERT_TRUE(blk->write_zeroes(0, 8, 8, false).ok());
    ASSERT_TRUE(blk->write_zeroes(0, 64, 16, true).ok());
    const auto ranges = segments({{100, 3, 0}, {200, 1, 1}, {300, 0, 0}, {400, 10, 0}});
    Answer a = run(*blk, build(*blk, BlkRequestType::write_zeroes, 0, ranges));
    EXPECT_EQ(a.status, kOk);
    EXPECT_EQ(a.used_len, 1U);

    const auto file = file_bytes(image_, 0, 1 << 20);
    const auto before = pattern(1 << 20, 4);
    auto sectors = [&](std::uint64_t first, std::uint64_t count) {
        return std::span(file).subspan(first * 512, count * 512);
    };
    EXPECT_TRUE(all_zero(sectors(8, 8)));
    EXPECT_TRUE(all_zero(sectors(64, 16)));
    EXPECT_TRUE(all_zero(sectors(100, 3)));
    EXPECT_TRUE(all_zero(sectors(200, 1)));
    EXPECT_TRUE(all_zero(sectors(400, 10)));
    // Around them, nothing changed.
    for (std::uint64_t s : {7, 16, 63, 80, 99, 103, 199, 201, 300, 399, 410})
        EXPECT_TRUE(std::equal(sectors(s, 1).begin(), sectors(s, 1).end(),
                               before.begin() + static_cast<std::ptrdiff_t>(s * 512)))
            << "sector " << s;
    EXPECT_EQ(fs::file_size(image_), kImageBytes) << "the image keeps its size";
}

TEST_P(BlkRequestTest, DiscardCompletesAndKeepsTheImageSize)
{
    const auto before = pattern(1 << 20, 5);
    write_file(image_, 0, before);
    auto device = make();
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    ASSERT_TRUE(blk->discard(0, 0, 64).ok());
    const auto ranges = segments({{512, 256, 0}, {1024, 8, 0}});
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::discard, 0, ranges)).status, kOk);
    EXPECT_EQ(fs::file_size(image_), kImageBytes);
    // Outside the discarded ranges the data is intact.
    EXPECT_EQ(file_bytes(image_, 64 * 512, 512),
              std::vector(before.begin() + 64 * 512, before.begin() + 65 * 512));
    ASSERT_TRUE(blk->write(0, 0, pattern(4096, 6)).ok()) << "the disk works on";
    EXPECT_EQ(file_bytes(image_, 0, 4096), pattern(4096, 6));
}

// ---------------------------------------------------------------------------
// Malformed and refused requests: answered, never a crash, and the queue
// goes on serving.

TEST_P(BlkRequestTest, MalformedRequestsAreAnsweredIoErr)
{
    auto device = make();
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    const auto sector = pattern(512, 7);

    struct Case {
        const char* what;
        BlkRequest request;
    };
    std::vector<Case> cases;
    cases.push_back(
        {"read beyond the end", build(*blk, BlkRequestType::in, kImageSectors, {}, 512)});
    cases.push_back(
        {"read across the end", build(*blk, BlkRequestType::in, kImageSectors - 1, {}, 1024)});
    cases.push_back(
        {"write beyond the end", build(*blk, BlkRequestType::out, kImageSectors, sector)});
    cases.push_back({"sector * 512 overflows",
                     build(*blk, BlkRequestType::in, (~std::uint64_t{0} / 512) + 1, {}, 512)});
    cases.push_back({"last sector + length wraps",
                     build(*blk, BlkRequestType::out, ~std::uint64_t{0}, sector)});
    cases.push_back({"read of 1000 bytes", build(*blk, BlkRequestType::in, 0, {}, 1000)});
    cases.push_back({"write of 513 bytes", build(*blk, BlkRequestType::out, 0, pattern(513, 1))});
    cases.push_back({"read with readable data", build(*blk, BlkRequestType::in, 0, sector, 512)});
    cases.push_back({"write with writable data", build(*blk, BlkRequestType::out, 0, sector, 512)});
    cases.push_back({"flush with data", build(*blk, BlkRequestType::flush, 0, sector)});
    cases.push_back(
        {"get-id with readable data", build(*blk, BlkRequestType::get_id, 0, sector, 20)});
    cases.push_back(
        {"write-zeroes without segments", build(*blk, BlkRequestType::write_zeroes, 0)});
    cases.push_back({"discard with a partial segment",
                     build(*blk, BlkRequestType::discard, 0, pattern(24, 1))});
    std::vector<std::byte> many;
    for (std::uint32_t k = 0; k <= kMaxSegments; ++k) {
        auto r = test_driver::encode_blk_range(k, 1, false);
        many.insert(many.end(), r.begin(), r.end());
    }
    cases.push_back({"33 segments", build(*blk, BlkRequestType::discard, 0, many)});
    cases.push_back(
        {"segment beyond the end", build(*blk, BlkRequestType::write_zeroes, 0,
                                         segments({{0, 1, 0}, {kImageSectors, 1, 0}}))});
    cases.push_back(
        {"segment sector overflows",
         build(*blk, BlkRequestType::discard, 0, segments({{~std::uint64_t{0} / 256, 1, 0}}))});
    cases.push_back({"discard with data writable",
                     build(*blk, BlkRequestType::discard, 0, segments({{0, 1, 0}}), 512)});
    for (const Case& c : cases) {
        const Answer a = run(*blk, c.request);
        EXPECT_EQ(a.status, kIoErr) << c.what;
    }
    // Reads that fail report their data length (the device may have
    // written some); everything else only the status byte.
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::in, kImageSectors, {}, 512)).used_len, 1U);

    // Nothing was written, and the queue still works.
    EXPECT_TRUE(all_zero(file_bytes(image_, 0, 4096)));
    std::vector<std::byte> got(512);
    ASSERT_TRUE(blk->write(0, 3, sector).ok());
    ASSERT_TRUE(blk->read(0, 3, got).ok());
    EXPECT_EQ(got, sector);
}

TEST_P(BlkRequestTest, UnsupportedRequestsAreAnsweredUnsupp)
{
    auto device = make();
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    for (std::uint32_t type : {2U, 3U, 10U, 14U, 16U, 99U, 0x80000001U}) {
        const Answer a = run(*blk, build(*blk, static_cast<BlkRequestType>(type), 0, {}, 16));
        EXPECT_EQ(a.status, kUnsupp) << "type " << type;
        EXPECT_EQ(a.used_len, 1U);
    }
    // The spec's rules for flags: UNMAP on a discard, unknown bits anywhere.
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::discard, 0, segments({{0, 8, 1}}))).status,
              kUnsupp);
    EXPECT_EQ(
        run(*blk, build(*blk, BlkRequestType::write_zeroes, 0, segments({{0, 8, 0}, {16, 8, 2}})))
            .status,
        kUnsupp);
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::discard, 0,
                              segments({{kImageSectors, 8, 0x80000000}})))
                  .status,
              kUnsupp)
        << "flags are looked at before ranges";
}

TEST_P(BlkRequestTest, ChainsWithoutStatusOrHeader)
{
    write_file(image_, 0, pattern(4096, 8));
    auto device = make();
    Served served(*device);
    auto conn = served.connect();
    ASSERT_TRUE(conn.ok()) << conn.error().message();
    VhostUserDriver& d = *conn;
    test_driver::StartOptions start;
    start.device_features = (std::uint64_t{1} << VIRTIO_BLK_F_FLUSH) |
                            (std::uint64_t{1} << VIRTIO_BLK_F_SEG_MAX); // no DISCARD
    ASSERT_TRUE(d.start(start).ok());
    auto submit =
        [&](std::vector<virtq::GuestBuffer> readable,
            std::vector<virtq::GuestBuffer> writable) -> std::optional<virtq::UsedBuffer> {
        auto head = d.submit(0, readable, writable);
        EXPECT_TRUE(head.ok()) << head.error().message();
        auto used = d.wait_used(0, 5s);
        EXPECT_TRUE(used.ok()) << used.error().message();
        if (!head || !used)
            return std::nullopt;
        EXPECT_EQ(used->head, *head);
        return *used;
    };
    Buffer header = *d.allocate(16);
    const auto read_header = test_driver::encode_blk_header(BlkRequestType::in, 0);
    std::memcpy(header.bytes().data(), read_header.data(), 16);
    Buffer data = *d.allocate(512);
    Buffer status = *d.allocate(1);

    // No writable byte at all: returned with nothing written.
    status.bytes()[0] = std::byte{0xff};
    auto used = submit({header.whole()}, {});
    ASSERT_TRUE(used);
    EXPECT_EQ(used->len, 0U);
    // Only readable buffers, the "status" among them: still nothing written.
    used = submit({header.whole(), data.whole(), status.whole()}, {});
    ASSERT_TRUE(used);
    EXPECT_EQ(used->len, 0U);
    EXPECT_EQ(status.bytes()[0], std::byte{0xff});

    // A header of 8 bytes.
    used = submit({*header.slice(0, 8)}, {status.whole()});
    ASSERT_TRUE(used);
    EXPECT_EQ(status.bytes()[0], std::byte{kIoErr});
    EXPECT_EQ(used->len, 1U);
    // The header split over two descriptors is fine; the status byte is
    // the last writable byte, even in the data's descriptor.
    Buffer both = *d.allocate(513);
    both.bytes()[512] = std::byte{0xff};
    used = submit({*header.slice(0, 5), *header.slice(5, 11)}, {both.whole()});
    ASSERT_TRUE(used);
    EXPECT_EQ(both.bytes()[512], std::byte{kOk});
    EXPECT_EQ(used->len, 513U);
    EXPECT_TRUE(
        std::equal(both.bytes().begin(), both.bytes().begin() + 512, pattern(4096, 8).begin()));

    // DISCARD without the feature negotiated.
    auto discard =
        BlkRequest::build(*d.pool(), BlkRequestType::discard, 0, segments({{0, 8, 0}}), 0);
    ASSERT_TRUE(discard.ok());
    used = submit(std::vector(discard->readable().begin(), discard->readable().end()),
                  std::vector(discard->writable().begin(), discard->writable().end()));
    ASSERT_TRUE(used);
    EXPECT_EQ(discard->status(), kUnsupp);
    EXPECT_EQ(file_bytes(image_, 0, 4096), pattern(4096, 8)) << "nothing discarded";
}

TEST_P(BlkRequestTest, ReadOnlyRefusesEveryWrite)
{
    write_file(image_, 0, pattern(4096, 9));
    auto device = make(cfg([&](BlkConfig& c) { c.read_only = true; }));
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    EXPECT_TRUE(blk->config().read_only);
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::out, 0, pattern(4096, 1))).status, kIoErr);
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::discard, 0, segments({{0, 8, 0}}))).status,
              kIoErr);
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::write_zeroes, 0, segments({{0, 8, 1}}))).status,
              kIoErr);
    EXPECT_EQ(file_bytes(image_, 0, 4096), pattern(4096, 9)) << "the image is unchanged";
    std::vector<std::byte> got(4096);
    ASSERT_TRUE(blk->read(0, 0, got).ok());
    EXPECT_EQ(got, pattern(4096, 9));
    EXPECT_TRUE(blk->flush(0).ok());
}

// ---------------------------------------------------------------------------
// The null target

TEST_F(BlkDeviceTest, NullTargetReadsZerosAndKeepsNothing)
{
    auto device = make(cfg([](BlkConfig& c) {
        c.null_size = std::uint64_t{1} << 40;
        c.serial = "null";
    }));
    EXPECT_EQ(device->disk().capacity_sectors(), (std::uint64_t{1} << 40) / 512);
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    EXPECT_EQ(blk->config().capacity_bytes(), std::uint64_t{1} << 40);
    ASSERT_TRUE(blk->write(0, 12345, pattern(8192, 1)).ok());
    auto read = build(*blk, BlkRequestType::in, 12345, {}, 8192);
    std::fill(read.data().begin(), read.data().end(), std::byte{0xaa});
    const Answer a = run(*blk, read);
    EXPECT_EQ(a.status, kOk);
    EXPECT_EQ(a.used_len, 8193U);
    EXPECT_TRUE(all_zero(read.data())) << "reads return zeros";
    EXPECT_TRUE(blk->flush(0).ok());
    EXPECT_TRUE(blk->discard(0, 0, 1 << 20).ok());
    EXPECT_TRUE(blk->write_zeroes(0, 8, 8, true).ok());
    EXPECT_EQ(blk->get_id(0).value(), "null");
    // Still validated like any disk.
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::in, std::uint64_t{1} << 31, {}, 512)).status,
              kIoErr);
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::out, 0, pattern(100, 1))).status, kIoErr);
}

// ---------------------------------------------------------------------------
// The I/O engines

// The queue's worker sleeps in epoll_wait and learns of io_uring
// completions only from the ring's eventfd, so every completion must
// signal it, also those the kernel posts from task work in the submitting
// thread (after a disk's interrupt: O_DIRECT here). An eventfd registered
// with io_uring_register_eventfd_async stays silent for exactly these, and
// the request would wait for an unrelated kick.
TEST(IoRing, EveryCompletionSignalsTheEventfd)
{
    TempDir dir;
    const std::string path = dir.file("ring.img");
    constexpr std::size_t kBytes = 64 << 10;
    create_image(path, 1 << 20);
    write_file(path, 0, pattern(kBytes, 13));
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
    if (!fd.valid() && errno == EINVAL)
        GTEST_SKIP() << "no O_DIRECT on the file system of " << path;
    ASSERT_TRUE(fd.valid()) << std::strerror(errno);
    auto ring = IoRing::create(4);
    ASSERT_TRUE(ring.ok()) << ring.error().message();
    auto buffer = Mapping::map(-1, kBytes, 0, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    ASSERT_TRUE(buffer.ok());
    iovec iov{buffer->data(), kBytes};
    io_uring_sqe* sqe = (*ring)->next_sqe();
    ASSERT_NE(sqe, nullptr);
    io_uring_prep_readv(sqe, fd.get(), &iov, 1, 0);
    io_uring_sqe_set_data64(sqe, 7);
    ASSERT_TRUE((*ring)->submit().ok());

    // As the worker waits: task work interrupts the wait (EINTR), which is
    // simply retried; only the eventfd says that something completed.
    pollfd event{(*ring)->event_fd(), POLLIN, 0};
    int n = 0;
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    do {
        n = ::poll(&event, 1, 100);
    } while (n <= 0 && (n == 0 || errno == EINTR) && std::chrono::steady_clock::now() < deadline);
    EXPECT_EQ(n, 1) << "the completion did not signal the eventfd";
    ASSERT_TRUE((*ring)->completions_ready() || (*ring)->wait(5s));
    std::vector<std::pair<std::uint64_t, int>> completions;
    (*ring)->reap(
        [&](std::uint64_t user_data, int res) { completions.emplace_back(user_data, res); });
    ASSERT_EQ(completions.size(), 1U);
    EXPECT_EQ(completions[0], std::pair(std::uint64_t{7}, static_cast<int>(kBytes)));
    const auto want = pattern(kBytes, 13);
    EXPECT_TRUE(std::equal(want.begin(), want.end(), buffer->data()));
}

// The sync engine does its I/O in the queue's thread: no io_uring at all.
TEST_P(BlkRequestTest, OnlyTheUringEngineOpensAnIoUring)
{
    const std::size_t before = open_io_urings();
    auto device = make(cfg([](BlkConfig& c) { c.num_queues = 2; }));
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    // Both queues have served a request: they are started.
    ASSERT_TRUE(blk->write(0, 0, pattern(4096, 1)).ok());
    ASSERT_TRUE(blk->flush(1).ok());
    EXPECT_EQ(open_io_urings() - before, GetParam() == IoEngine::uring ? 2U : 0U);
}

// On tmpfs, which cannot ZERO_RANGE, WRITE_ZEROES without unmap writes
// zeros, a chunk of 1 MiB at a time, each chunk the next operation of the
// same request; with unmap it punches a hole.
TEST_P(BlkRequestTest, WriteZeroesWritesZerosWhereFallocateCannot)
{
    if (fs_type_of(kTmpfs) != TMPFS_MAGIC)
        GTEST_SKIP() << kTmpfs << " is not a tmpfs here";
    TempDir memory(kTmpfs);
    const std::string image = memory.file("disk.img");
    create_image(image, kImageBytes);
    const auto before = pattern(4 << 20, 14);
    write_file(image, 0, before);
    auto device = make(cfg([&](BlkConfig& c) { c.path = image; }));
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();

    // 2 MiB and 5 sectors from sector 3: three chunks, the last short.
    constexpr std::uint64_t kFirst = 3;
    constexpr std::uint64_t kCount = (2 << 20) / 512 + 5;
    ASSERT_TRUE(blk->write_zeroes(0, kFirst, static_cast<std::uint32_t>(kCount), false).ok());
    // Again, now that the device knows ZERO_RANGE fails, and with unmap.
    ASSERT_TRUE(blk->write_zeroes(0, 6000, 100, false).ok());
    ASSERT_TRUE(blk->write_zeroes(0, 7000, 64, true).ok());

    const auto file = file_bytes(image, 0, before.size());
    auto sectors = [&](std::uint64_t first, std::uint64_t count) {
        return std::span(file).subspan(first * 512, count * 512);
    };
    EXPECT_TRUE(all_zero(sectors(kFirst, kCount)));
    EXPECT_TRUE(all_zero(sectors(6000, 100)));
    EXPECT_TRUE(all_zero(sectors(7000, 64)));
    for (std::uint64_t s : {std::uint64_t{2}, kFirst + kCount, std::uint64_t{5999},
                            std::uint64_t{6100}, std::uint64_t{6999}, std::uint64_t{7064}})
        EXPECT_TRUE(std::equal(sectors(s, 1).begin(), sectors(s, 1).end(),
                               before.begin() + static_cast<std::ptrdiff_t>(s * 512)))
            << "sector " << s;
    std::vector<std::byte> got(4096);
    ASSERT_TRUE(blk->read(0, kFirst + kCount - 4, got).ok());
    EXPECT_TRUE(all_zero(std::span(got).first(2048)));
    EXPECT_TRUE(std::equal(got.begin() + 2048, got.end(),
                           before.begin() + static_cast<std::ptrdiff_t>((kFirst + kCount) * 512)));
}

// Short transfers: the image shrinks under the device, so a read inside
// the disk meets the end of the file. The device takes what readv gave,
// resubmits the rest, gets end-of-file and answers IOERR: no hang, no
// stale success.
TEST_P(BlkRequestTest, ReadThatMeetsTheEndOfTheFileFails)
{
    auto device = make();
    Served served(*device);
    auto blk = served.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    ASSERT_EQ(::truncate(image_.c_str(), (4 << 20) + 1024), 0);
    EXPECT_EQ(run(*blk, build(*blk, BlkRequestType::in, (4 << 20) / 512, {}, 8192)).status, kIoErr);
    std::vector<std::byte> got(4096);
    EXPECT_TRUE(blk->read(0, 0, got).ok()) << "the queue goes on";
}

// A chain of more buffers than readv/writev take at once (IOV_MAX): sent
// in parts, each resubmitted where the last stopped.
TEST_P(BlkRequestTest, ChainsLongerThanIovMax)
{
    auto device = make(cfg([&](BlkConfig& c) { c.queue_size = 2048; }));
    Served served(*device);
    BlkOptions options;
    options.queue_size = 2048;
    options.indirect_desc = false;
    auto blk = served.open(options);
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    const auto data = pattern(1100 * 512, 10);
    auto write = build(*blk, BlkRequestType::out, 77, data, 0, 512);
    ASSERT_EQ(write.readable().size(), 1101U);
    EXPECT_EQ(run(*blk, write).status, kOk);
    EXPECT_EQ(file_bytes(image_, 77 * 512, data.size()), data);
    auto read = build(*blk, BlkRequestType::in, 77, {}, 1100 * 512, 512);
    EXPECT_EQ(run(*blk, read).status, kOk);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), read.data().begin()));
}

// More requests in flight than the queue's io_uring has entries: the
// device takes what it has slots for, pauses, and takes the rest as
// completions free slots.
TEST_P(BlkRequestTest, MoreRequestsThanTheRingHolds)
{
    constexpr std::uint32_t kRequests = 700;
    auto device = make(cfg([&](BlkConfig& c) { c.queue_size = 1024; }));
    Served served(*device);
    BlkOptions options;
    options.queue_size = 1024;
    auto blk = served.open(options);
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    std::vector<BlkRequest> requests;
    for (std::uint32_t k = 0; k < kRequests; ++k) {
        requests.push_back(build(*blk, BlkRequestType::out, k * 8, pattern(4096, k)));
        ASSERT_TRUE(
            blk->driver().add(0, requests.back().readable(), requests.back().writable()).ok());
    }
    ASSERT_TRUE(blk->driver().kick(0).ok());
    for (std::uint32_t k = 0; k < kRequests; ++k)
        ASSERT_TRUE(blk->wait(0).ok()) << k;
    for (std::uint32_t k = 0; k < kRequests; ++k) {
        EXPECT_EQ(requests[k].status(), kOk) << k;
        if (k % 97 == 0) {
            EXPECT_EQ(file_bytes(image_, k * 4096, 4096), pattern(4096, k)) << k;
        }
    }
}

TEST_P(BlkRequestTest, DirectIoWithAlignedAndMisalignedBuffers)
{
    auto device = BlkDevice::create(cfg([&](BlkConfig& c) {
                                        c.path = image_;
                                        c.direct = true;
                                        c.serial = "d";
                                        c.io_engine = GetParam();
                                    }),
                                    Logger("blk", kLogLevel));
    if (!device.ok() && device.error().code() == EINVAL)
        GTEST_SKIP() << device.error().message();
    ASSERT_TRUE(device.ok()) << device.error().message();
    EXPECT_TRUE((*device)->disk().direct());
    Served served(**device);
    auto conn = served.connect();
    ASSERT_TRUE(conn.ok()) << conn.error().message();
    auto blk = BlkDriver::start(std::move(*conn), BlkOptions{});
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    const std::uint32_t block = blk->config().blk_size.value_or(512);

    // Aligned (page-aligned buffers): straight to the disk, past the page
    // cache.
    // Far from the file's head: valgrind reads the head of every file
    // mapped (is it ELF?), and readahead caches the pages around it.
    constexpr std::uint64_t kBase = (4 << 20) / 512;
    const auto data = pattern(16 * block, 11);
    ASSERT_TRUE(blk->write(0, kBase, data).ok());
    EXPECT_FALSE(in_page_cache(image_, kBase * 512)) << "O_DIRECT leaves no cached page";

    // Misaligned: the data starts at an odd address and is split into two
    // buffers, not whole blocks, with a gap between them, which O_DIRECT
    // refuses (EINVAL): it must go through an aligned bounce buffer, still
    // direct.
    VhostUserDriver& d = blk->driver();
    Buffer header = *d.allocate(16);
    Buffer page = *d.allocate(4 * block + 4096, 4096);
    Buffer status = *d.allocate(1);
    const std::uint64_t sector = kBase + 16 * block / 512; // on a page of its own
    const auto out = test_driver::encode_blk_header(BlkRequestType::out, sector);
    std::memcpy(header.bytes().data(), out.data(), 16);
    const auto odd = pattern(4 * block, 12);
    constexpr std::size_t kGap = 100;
    std::memcpy(page.bytes().data() + 1, odd.data(), 1000);
    std::memcpy(page.bytes().data() + 1001 + kGap, odd.data() + 1000, odd.size() - 1000);
    const auto first = *page.slice(1, 1000);
    const auto rest = *page.slice(1001 + kGap, 4 * block - 1000);
    ASSERT_TRUE(
        d.submit(0, std::vector{header.whole(), first, rest}, std::vector{status.whole()}).ok());
    ASSERT_TRUE(d.wait_used(0, 5s).ok());
    EXPECT_EQ(status.bytes()[0], std::byte{kOk});
    EXPECT_FALSE(in_page_cache(image_, sector * 512)) << "the misaligned write was not direct";

    const auto in = test_driver::encode_blk_header(BlkRequestType::in, sector);
    std::memcpy(header.bytes().data(), in.data(), 16);
    std::fill(page.bytes().begin(), page.bytes().end(), std::byte{0});
    ASSERT_TRUE(
        d.submit(0, std::vector{header.whole()}, std::vector{first, rest, status.whole()}).ok());
    auto used = d.wait_used(0, 5s);
    ASSERT_TRUE(used.ok());
    EXPECT_EQ(status.bytes()[0], std::byte{kOk});
    EXPECT_EQ(used->len, 4 * block + 1);
    EXPECT_TRUE(std::equal(odd.begin(), odd.begin() + 1000, page.bytes().begin() + 1));
    EXPECT_TRUE(std::equal(odd.begin() + 1000, odd.end(), page.bytes().begin() + 1001 + kGap));
    EXPECT_FALSE(in_page_cache(image_, sector * 512)) << "the misaligned read was not direct";

    // What the file holds (read last: this fills the page cache).
    EXPECT_EQ(file_bytes(image_, kBase * 512, data.size()), data);
    EXPECT_EQ(file_bytes(image_, sector * 512, odd.size()), odd);
}

// What O_DIRECT reports when it cannot pin a buffer: EFAULT (secretmem, a
// VM_PFNMAP mapping, an unmapped address), EEXIST (a page table entry
// without a page: the transport's zero-copy pages). Nothing else.
TEST(DirectIo, CannotPinIsEfaultOrEexist)
{
    EXPECT_TRUE(direct_io_cannot_pin(EFAULT));
    EXPECT_TRUE(direct_io_cannot_pin(EEXIST));
    for (const int other : {0, EINVAL, EIO, ENOSPC, EAGAIN, EINTR, ENOMEM})
        EXPECT_FALSE(direct_io_cannot_pin(other)) << other;
}

// Guest memory whose pages cannot be pinned, as the transport's zero-copy
// pages are (here memfd_secret's): O_DIRECT I/O into it fails with EFAULT.
// The device must fall back to its aligned copies, still direct, and never
// answer IOERR for it.
TEST_P(BlkRequestTest, DirectIoWithUnpinnableGuestMemoryCopies)
{
    constexpr std::uint64_t kMemory = 2 << 20;
    // Two mappings (ours and the device's), counted against RLIMIT_MEMLOCK.
    if (auto probe = test_driver::GuestPool::create(2 * kMemory, 0,
                                                    test_driver::GuestPool::Backing::unpinnable);
        !probe.ok())
        GTEST_SKIP() << probe.error().message();
    auto device = BlkDevice::create(cfg([&](BlkConfig& c) {
                                        c.path = image_;
                                        c.direct = true;
                                        c.serial = "d";
                                        c.io_engine = GetParam();
                                    }),
                                    Logger("blk", kLogLevel));
    if (!device.ok() && device.error().code() == EINVAL)
        GTEST_SKIP() << device.error().message();
    ASSERT_TRUE(device.ok()) << device.error().message();
    Served served(**device);
    test_driver::ConnectOptions options;
    options.unpinnable_memory = true;
    options.memory_bytes = kMemory;
    auto conn = served.connect(options);
    ASSERT_TRUE(conn.ok()) << conn.error().message();
    auto blk = BlkDriver::start(std::move(*conn), BlkOptions{});
    ASSERT_TRUE(blk.ok()) << blk.error().message();

    // The premise: O_DIRECT cannot use this memory. (A write: a direct read
    // of a hole zero-fills the buffer by copying, without pinning it.)
    {
        UniqueFd fd(::open(image_.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC));
        ASSERT_TRUE(fd.valid());
        Buffer page = *blk->driver().allocate(4096, 4096);
        EXPECT_EQ(::pwrite(fd.get(), page.bytes().data(), 4096, 0), -1);
        EXPECT_EQ(errno, EFAULT);
    }

    // Far from the file's head (see DirectIoWithAlignedAndMisalignedBuffers).
    constexpr std::uint64_t kBase = (6 << 20) / 512;
    std::uint64_t sector = kBase;
    for (const std::size_t len : {std::size_t{4096}, std::size_t{64} << 10, std::size_t{4096}}) {
        const auto data = pattern(len, static_cast<unsigned>(sector));
        const Status written = blk->write(0, sector, data);
        ASSERT_TRUE(written.ok()) << len << " bytes: " << written.error().message();
        EXPECT_FALSE(in_page_cache(image_, sector * 512)) << "the write was not direct";
        std::vector<std::byte> got(len);
        const Status read = blk->read(0, sector, got);
        ASSERT_TRUE(read.ok()) << len << " bytes: " << read.error().message();
        EXPECT_EQ(got, data) << len << " bytes";
        EXPECT_FALSE(in_page_cache(image_, sector * 512)) << "the read was not direct";
        sector += (len + 4096) / 512; // a page apart
    }
    // What the file holds (read last: this fills the page cache).
    EXPECT_EQ(file_bytes(image_, kBase * 512, 4096), pattern(4096, kBase));
}

// A front-end that disconnects with requests in flight: the device
// finishes or cancels them before the queue stops, and serves the next
// front-end.
TEST_P(BlkRequestTest, FrontEndLeavesWithRequestsInFlight)
{
    auto device = make(cfg([&](BlkConfig& c) { c.num_queues = 2; }));
    {
        Served served(*device);
        auto blk = served.open();
        ASSERT_TRUE(blk.ok()) << blk.error().message();
        std::vector<BlkRequest> requests;
        for (std::uint32_t k = 0; k < 64; ++k) {
            requests.push_back(build(*blk, BlkRequestType::out, k * 128, pattern(64 << 10, k)));
            ASSERT_TRUE(blk->submit(k % 2, requests.back()).ok());
        }
        blk = Error("gone"); // disconnects now, with most of them in flight
        EXPECT_TRUE(served.end().ok()) << served.end().error().message();
    }
    Served next(*device);
    auto blk = next.open();
    ASSERT_TRUE(blk.ok()) << blk.error().message();
    ASSERT_TRUE(blk->write(1, 5, pattern(4096, 99)).ok());
    std::vector<std::byte> got(4096);
    ASSERT_TRUE(blk->read(0, 5, got).ok());
    EXPECT_EQ(got, pattern(4096, 99));
}

} // namespace
} // namespace vl::blk
