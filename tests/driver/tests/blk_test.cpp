// SPDX-License-Identifier: Apache-2.0
// BlkDriver and blk-verify against a RAM disk served by the fake back-end,
// including disks that lose, misplace or keep stale writes: blk-verify
// must notice every one of them.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

#include "blk_driver.hpp"
#include "blk_verify.hpp"
#include "fake_backend.hpp"

namespace vl::test_driver
{
namespace
{

using namespace std::chrono_literals;
using test::FakeBackend;
using test::FakeDevice;

// A virtio-blk device model on a vector of bytes, with hooks to misbehave.
// Runs on the back-end's thread; tests configure it before connecting.
class RamDisk
{
  public:
    explicit RamDisk(std::uint64_t sectors) : data_(sectors * kSectorSize) {}

    // Returns true to let a write land, false to drop it silently.
    std::function<bool(std::uint64_t sector)> accept_write = [](std::uint64_t) { return true; };
    // Where a write to `sector` actually lands.
    std::function<std::uint64_t(std::uint64_t sector)> place_write = [](std::uint64_t s) {
        return s;
    };
    // A status to report instead of doing the request (nullopt: do it).
    std::function<std::optional<std::uint8_t>(std::uint32_t type, std::uint64_t sector)> fail =
        [](std::uint32_t, std::uint64_t) { return std::nullopt; };
    bool write_status = true;
    std::string serial = "fake-ramdisk";

    std::optional<std::uint32_t> handle(std::uint32_t, virtq::DescriptorChain& chain)
    {
        std::array<std::byte, kBlkHeaderSize> header{};
        if (!chain.read_exact(header) || chain.writable_len() < 1)
            return 0;
        const std::uint32_t type = virtq::load_le32(header.data());
        const std::uint64_t sector = virtq::load_le64(header.data() + 8);
        const std::uint32_t status_at = chain.writable_len() - 1;
        std::uint8_t status = VIRTIO_BLK_S_OK;
        if (auto forced = fail(type, sector))
            status = *forced;
        else
            status = execute(type, sector, chain, status_at);
        if (write_status) {
            const std::byte byte{status};
            chain.write_from(std::span(&byte, 1), status_at);
        }
        return chain.writable_len();
    }

    std::span<std::byte> bytes() { return data_; }

  private:
    bool in_range(std::uint64_t sector, std::uint64_t bytes) const
    {
        return sector <= data_.size() / kSectorSize && bytes <= data_.size() - sector * kSectorSize;
    }

    std::uint8_t execute(std::uint32_t type, std::uint64_t sector, virtq::DescriptorChain& chain,
                         std::uint32_t status_at)
    {
        switch (type) {
        case VIRTIO_BLK_T_IN: {
            if (!in_range(sector, status_at))
                return VIRTIO_BLK_S_IOERR;
            chain.write_from(std::span(data_).subspan(sector * kSectorSize, status_at));
            return VIRTIO_BLK_S_OK;
        }
        case VIRTIO_BLK_T_OUT: {
            const auto len = static_cast<std::uint32_t>(chain.readable_len() - kBlkHeaderSize);
            const std::uint64_t target = place_write(sector);
            if (!in_range(target, len))
                return VIRTIO_BLK_S_IOERR;
            if (accept_write(sector))
                chain.read_into(std::span(data_).subspan(target * kSectorSize, len),
                                kBlkHeaderSize);
            return VIRTIO_BLK_S_OK;
        }
        case VIRTIO_BLK_T_FLUSH:
            return VIRTIO_BLK_S_OK;
        case VIRTIO_BLK_T_GET_ID: {
            std::vector<std::byte> id(kBlkIdBytes);
            std::memcpy(id.data(), serial.data(), std::min(serial.size(), id.size()));
            chain.write_from(std::span(id).first(std::min<std::size_t>(id.size(), status_at)));
            return VIRTIO_BLK_S_OK;
        }
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES: {
            std::array<std::byte, kBlkRangeSize> range{};
            if (!chain.read_exact(range, kBlkHeaderSize))
                return VIRTIO_BLK_S_IOERR;
            const std::uint64_t first = virtq::load_le64(range.data());
            const std::uint64_t bytes =
                std::uint64_t{virtq::load_le32(range.data() + 8)} * kSectorSize;
            if (!in_range(first, bytes))
                return VIRTIO_BLK_S_IOERR;
            std::fill_n(data_.begin() + static_cast<std::ptrdiff_t>(first * kSectorSize), bytes,
                        std::byte{0});
            return VIRTIO_BLK_S_OK;
        }
        default:
            return VIRTIO_BLK_S_UNSUPP;
        }
    }

    std::vector<std::byte> data_;
};

constexpr std::uint64_t kDiskSectors = 8192; // 4 MiB

std::vector<std::byte> blk_config(std::uint32_t size_max)
{
    std::vector<std::byte> c(sizeof(virtio_blk_config));
    virtq::store_le64(c.data() + offsetof(virtio_blk_config, capacity), kDiskSectors);
    virtq::store_le32(c.data() + offsetof(virtio_blk_config, size_max), size_max);
    virtq::store_le32(c.data() + offsetof(virtio_blk_config, seg_max), 64);
    virtq::store_le32(c.data() + offsetof(virtio_blk_config, blk_size), 512);
    virtq::store_le16(c.data() + offsetof(virtio_blk_config, num_queues), 2);
    virtq::store_le32(c.data() + offsetof(virtio_blk_config, max_discard_sectors), 64);
    virtq::store_le32(c.data() + offsetof(virtio_blk_config, max_discard_seg), 1);
    virtq::store_le32(c.data() + offsetof(virtio_blk_config, discard_sector_alignment), 8);
    virtq::store_le32(c.data() + offsetof(virtio_blk_config, max_write_zeroes_sectors), 16);
    virtq::store_le32(c.data() + offsetof(virtio_blk_config, max_write_zeroes_seg), 1);
    return c;
}

FakeDevice blk_device(const std::shared_ptr<RamDisk>& disk, std::uint64_t extra_features = 0)
{
    FakeDevice d = test::default_device();
    d.queues = 2;
    d.features = feature_bit(VIRTIO_BLK_F_SIZE_MAX) | feature_bit(VIRTIO_BLK_F_SEG_MAX) |
                 feature_bit(VIRTIO_BLK_F_BLK_SIZE) | feature_bit(VIRTIO_BLK_F_FLUSH) |
                 feature_bit(VIRTIO_BLK_F_MQ) | feature_bit(VIRTIO_BLK_F_DISCARD) |
                 feature_bit(VIRTIO_BLK_F_WRITE_ZEROES) | extra_features;
    d.config = blk_config(4096); // 4 KiB segments: multi-descriptor data
    d.handle = [disk](std::uint32_t q, virtq::DescriptorChain& c) { return disk->handle(q, c); };
    return d;
}

BlkOptions blk_options()
{
    BlkOptions o;
    o.connect.memory_bytes = 8 << 20;
    o.connect.reply_timeout = 2s;
    o.request_timeout = 2s;
    return o;
}

Logger quiet_logger()
{
    return Logger("blk-test", LogLevel::error);
}

VerifyParams small_verify()
{
    VerifyParams p;
    p.region_bytes = 2 << 20;
    p.request_bytes = 16 << 10;
    p.queue_depth = 8;
    p.seed = 99;
    return p;
}

TEST(BlkDriver, ReadsConfigAndStartsAllQueues)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    FakeBackend backend(blk_device(disk));
    auto blk = BlkDriver::open(backend.socket_path(), blk_options(), quiet_logger());
    ASSERT_TRUE(blk) << blk.error().message();
    EXPECT_EQ(blk->config().capacity_sectors, kDiskSectors);
    EXPECT_EQ(blk->config().size_max, 4096U);
    EXPECT_EQ(blk->config().num_queues, 2U);
    EXPECT_EQ(blk->queue_count(), 2U);
    EXPECT_TRUE(blk->config().flush);
    ASSERT_TRUE(blk->config().discard);
    EXPECT_EQ(blk->config().discard->sector_alignment, 8U);
    auto id = blk->get_id(1);
    ASSERT_TRUE(id) << id.error().message();
    EXPECT_EQ(*id, "fake-ramdisk");
}

TEST(BlkDriver, SynchronousRequestsReachTheDisk)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    FakeBackend backend(blk_device(disk));
    auto blk = BlkDriver::open(backend.socket_path(), blk_options(), quiet_logger());
    ASSERT_TRUE(blk) << blk.error().message();

    std::vector<std::byte> data(10000 / 512 * 512 + 512, std::byte{0x77}); // 3 segments
    ASSERT_TRUE(blk->write(0, 10, data));
    EXPECT_EQ(disk->bytes()[10 * 512], std::byte{0x77});
    EXPECT_EQ(disk->bytes()[10 * 512 - 1], std::byte{0});
    std::vector<std::byte> back(data.size());
    ASSERT_TRUE(blk->read(1, 10, back));
    EXPECT_EQ(back, data);
    ASSERT_TRUE(blk->flush(0));
    ASSERT_TRUE(blk->write_zeroes(0, 12, 2, false));
    EXPECT_EQ(disk->bytes()[12 * 512], std::byte{0});
    EXPECT_EQ(disk->bytes()[14 * 512], std::byte{0x77});
    ASSERT_TRUE(blk->discard(0, 8, 8));

    // Driver-side rules: whole sectors only.
    EXPECT_EQ(blk->make_read(0, 100).error().code(), EINVAL);
    EXPECT_EQ(blk->make_write(0, std::vector<std::byte>(513)).error().code(), EINVAL);
    EXPECT_EQ(blk->make_read(0, 0).error().code(), EINVAL);
    // Beyond the end: the device's error comes back as one.
    auto past = blk->read(0, kDiskSectors, back);
    ASSERT_FALSE(past);
    EXPECT_EQ(past.error().code(), EIO);
    EXPECT_NE(past.error().message().find("IOERR"), std::string::npos);
}

TEST(BlkDriver, RefusesCommandsTheDeviceDoesNotOffer)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    FakeDevice dev = blk_device(disk);
    dev.features = feature_bit(VIRTIO_BLK_F_RO);
    FakeBackend backend(std::move(dev));
    auto blk = BlkDriver::open(backend.socket_path(), blk_options(), quiet_logger());
    ASSERT_TRUE(blk) << blk.error().message();
    EXPECT_EQ(blk->queue_count(), 1U); // no MQ
    EXPECT_TRUE(blk->config().read_only);
    EXPECT_EQ(blk->make_write(0, std::vector<std::byte>(512)).error().code(), EROFS);
    EXPECT_EQ(blk->make_flush().error().code(), ENOTSUP);
    EXPECT_EQ(blk->make_discard(0, 8).error().code(), ENOTSUP);
    EXPECT_EQ(blk->make_write_zeroes(0, 8, false).error().code(), ENOTSUP);
    auto verify = run_blk_verify(*blk, small_verify(), quiet_logger());
    ASSERT_FALSE(verify);
    EXPECT_EQ(verify.error().code(), EROFS);
    // A raw request the back-end must refuse gets UNSUPP back.
    auto raw =
        BlkRequest::build(*blk->driver().pool(), static_cast<BlkRequestType>(0x55), 0, {}, 0);
    ASSERT_TRUE(raw);
    auto refused = blk->execute(0, *raw);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code(), ENOTSUP);
}

TEST(BlkVerify, PassesOnAGoodDisk)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    FakeBackend backend(blk_device(disk));
    auto blk = BlkDriver::open(backend.socket_path(), blk_options(), quiet_logger());
    ASSERT_TRUE(blk) << blk.error().message();
    VerifyParams p = small_verify();
    p.writes = 300; // 128 blocks: most are rewritten, some three times
    p.queue = 1;
    auto report = run_blk_verify(*blk, p, quiet_logger());
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_TRUE(report->passed());
    EXPECT_EQ(report->blocks, 128U);
    EXPECT_EQ(report->writes, 300U);
    EXPECT_EQ(report->reads, 128U);
    EXPECT_EQ(report->sectors_checked, 128U * 32U);
    EXPECT_EQ(report->flush, "ok");
    EXPECT_EQ(report->write_zeroes, "ok");
    EXPECT_EQ(report->discard, "ok");
    EXPECT_GT(backend.indirect_chains(1), 0U);
    // WRITE_ZEROES (16 sectors, its limit) and DISCARD (one 32-sector
    // block, which this disk zeroes) touched block 0 only.
    EXPECT_EQ(disk->bytes()[0], std::byte{0});
    EXPECT_EQ(disk->bytes()[31 * 512], std::byte{0});
    EXPECT_NE(disk->bytes()[32 * 512], std::byte{0});
}

TEST(BlkVerify, DirectDescriptorsAndNoEventIdx)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    FakeBackend backend(blk_device(disk));
    BlkOptions o = blk_options();
    o.event_idx = false;
    o.indirect_desc = false;
    o.queue_size = 16; // 6 descriptors per request: back-pressure below the depth of 8
    auto blk = BlkDriver::open(backend.socket_path(), o, quiet_logger());
    ASSERT_TRUE(blk) << blk.error().message();
    auto report = run_blk_verify(*blk, small_verify(), quiet_logger());
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_TRUE(report->passed());
    EXPECT_EQ(backend.indirect_chains(0), 0U);
}

TEST(BlkVerify, CatchesLostWrites)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    disk->accept_write = [](std::uint64_t sector) { return sector != 32 * 5; }; // block 5
    FakeBackend backend(blk_device(disk));
    auto blk = BlkDriver::open(backend.socket_path(), blk_options(), quiet_logger());
    ASSERT_TRUE(blk);
    VerifyParams p = small_verify();
    p.check_zeroes = false;
    auto report = run_blk_verify(*blk, p, quiet_logger());
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_FALSE(report->passed());
    EXPECT_EQ(report->mismatched_sectors, 32U);
    ASSERT_FALSE(report->first_mismatches.empty());
    EXPECT_EQ(report->first_mismatches[0].what, "zeros (the write did not land)");
}

TEST(BlkVerify, CatchesMisplacedWrites)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    // Block 3's data lands one block further, over block 4 (whichever
    // write comes last wins there); block 3 keeps whatever it had.
    disk->place_write = [](std::uint64_t sector) { return sector == 96 ? 128 : sector; };
    FakeBackend backend(blk_device(disk));
    auto blk = BlkDriver::open(backend.socket_path(), blk_options(), quiet_logger());
    ASSERT_TRUE(blk);
    VerifyParams p = small_verify();
    p.check_zeroes = false;
    auto report = run_blk_verify(*blk, p, quiet_logger());
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_FALSE(report->passed());
    EXPECT_GE(report->mismatched_sectors, 32U);
    bool misplaced_seen = false;
    for (const auto& m : report->first_mismatches)
        misplaced_seen |= m.what.find("data written for sector") != std::string::npos ||
                          m.what.find("zeros") != std::string::npos;
    EXPECT_TRUE(misplaced_seen);
}

TEST(BlkVerify, CatchesStaleData)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    // The device ignores every rewrite of block 7: the first write sticks.
    auto seen = std::make_shared<std::atomic<int>>(0);
    disk->accept_write = [seen](std::uint64_t sector) {
        return sector != 7 * 32 || seen->fetch_add(1) == 0;
    };
    FakeBackend backend(blk_device(disk));
    auto blk = BlkDriver::open(backend.socket_path(), blk_options(), quiet_logger());
    ASSERT_TRUE(blk);
    VerifyParams p = small_verify();
    p.writes = 128 * 2;
    p.check_zeroes = false;
    auto report = run_blk_verify(*blk, p, quiet_logger());
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_EQ(report->mismatched_sectors, 32U);
    ASSERT_FALSE(report->first_mismatches.empty());
    EXPECT_EQ(report->first_mismatches[0].what, "stale data (generation 1, expected 2)");
}

TEST(BlkVerify, RequestErrorsAreErrors)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    disk->fail = [](std::uint32_t type, std::uint64_t sector) -> std::optional<std::uint8_t> {
        if (type == VIRTIO_BLK_T_IN && sector == 32 * 9)
            return VIRTIO_BLK_S_IOERR;
        return std::nullopt;
    };
    FakeBackend backend(blk_device(disk));
    auto blk = BlkDriver::open(backend.socket_path(), blk_options(), quiet_logger());
    ASSERT_TRUE(blk);
    auto report = run_blk_verify(*blk, small_verify(), quiet_logger());
    ASSERT_FALSE(report);
    EXPECT_EQ(report.error().code(), EIO);
    EXPECT_NE(report.error().message().find("READ of 16384 bytes at sector 288 failed: status "
                                            "IOERR"),
              std::string::npos)
        << report.error().message();
}

TEST(BlkVerify, UnwrittenStatusIsAProtocolError)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    disk->write_status = false;
    FakeBackend backend(blk_device(disk));
    auto blk = BlkDriver::open(backend.socket_path(), blk_options(), quiet_logger());
    ASSERT_TRUE(blk);
    auto flushed = blk->flush(0);
    ASSERT_FALSE(flushed);
    EXPECT_EQ(flushed.error().code(), EPROTO);
    EXPECT_NE(flushed.error().message().find("without writing its status byte"), std::string::npos);
}

TEST(BlkVerify, ParametersMustFitTheDevice)
{
    auto disk = std::make_shared<RamDisk>(kDiskSectors);
    FakeBackend backend(blk_device(disk));
    auto blk = BlkDriver::open(backend.socket_path(), blk_options(), quiet_logger());
    ASSERT_TRUE(blk);
    VerifyParams p = small_verify();
    p.region_bytes = (kDiskSectors + 32) * kSectorSize;
    EXPECT_EQ(run_blk_verify(*blk, p, quiet_logger()).error().code(), EINVAL);
    p = small_verify();
    p.queue = 2;
    EXPECT_EQ(run_blk_verify(*blk, p, quiet_logger()).error().code(), EINVAL);
    p = small_verify();
    p.request_bytes = 1000;
    EXPECT_EQ(run_blk_verify(*blk, p, quiet_logger()).error().code(), EINVAL);
}

} // namespace
} // namespace vl::test_driver
