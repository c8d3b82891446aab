// SPDX-License-Identifier: Apache-2.0
// Request and config encoding (virtio-blk, virtio-input) and the
// blk-verify data pattern, checked byte by byte against the spec layout.
#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "blk_driver.hpp"
#include "console_driver.hpp"
#include "input_driver.hpp"
#include "verify_pattern.hpp"

namespace vl::test_driver
{
namespace
{

template <std::size_t N> std::array<std::byte, N> bytes(std::initializer_list<int> values)
{
    std::array<std::byte, N> out{};
    std::size_t i = 0;
    for (int v : values)
        out[i++] = std::byte(static_cast<unsigned char>(v));
    return out;
}

TEST(BlkEncoding, HeaderIsTypeReservedSectorLittleEndian)
{
    const auto h = encode_blk_header(BlkRequestType::out, 0x0102030405060708);
    EXPECT_EQ(h, (bytes<16>({1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1})));
    const auto id = encode_blk_header(BlkRequestType::get_id, 0);
    EXPECT_EQ(id, (bytes<16>({8})));
    EXPECT_EQ(encode_blk_header(BlkRequestType::write_zeroes, 1)[0], std::byte{13});
    EXPECT_EQ(encode_blk_header(BlkRequestType::discard, 1)[0], std::byte{11});
    EXPECT_EQ(encode_blk_header(BlkRequestType::flush, 1)[0], std::byte{4});
}

TEST(BlkEncoding, RangeIsSectorCountFlags)
{
    const auto r = encode_blk_range(0x1122334455667788, 0x01020304, true);
    EXPECT_EQ(
        r, (bytes<16>({0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 4, 3, 2, 1, 1, 0, 0, 0})));
    EXPECT_EQ(encode_blk_range(8, 16, false)[12], std::byte{0});
}

TEST(BlkEncoding, GetIdStopsAtNulOrTwentyBytes)
{
    std::array<std::byte, 24> id{};
    const char* serial = "vhost_user_blk";
    for (std::size_t i = 0; serial[i] != 0; ++i)
        id[i] = std::byte(static_cast<unsigned char>(serial[i]));
    EXPECT_EQ(decode_blk_id(id), "vhost_user_blk");
    id.fill(std::byte{'x'});
    EXPECT_EQ(decode_blk_id(id), std::string(20, 'x')); // no NUL: exactly 20 bytes
    EXPECT_EQ(decode_blk_id({}), "");
}

TEST(BlkEncoding, StatusAndRequestNames)
{
    EXPECT_EQ(blk_status_name(0), "OK");
    EXPECT_EQ(blk_status_name(1), "IOERR");
    EXPECT_EQ(blk_status_name(2), "UNSUPP");
    EXPECT_EQ(blk_status_name(0x7f), "0x7f");
    EXPECT_EQ(blk_request_name(BlkRequestType::in), "READ");
    EXPECT_EQ(blk_request_name(static_cast<BlkRequestType>(99)), "type 99");
}

TEST(BlkEncoding, SegmentsRespectSizeMax)
{
    auto one = split_segments(0x1000, 8192, 0);
    ASSERT_EQ(one.size(), 1U);
    EXPECT_EQ(one[0].addr, 0x1000U);
    EXPECT_EQ(one[0].len, 8192U);
    auto three = split_segments(0x1000, 10000, 4096);
    ASSERT_EQ(three.size(), 3U);
    EXPECT_EQ(three[1].addr, 0x2000U);
    EXPECT_EQ(three[2].len, 10000U - 8192U);
    EXPECT_TRUE(split_segments(0x1000, 0, 512).empty());
}

// A config space as QEMU 7.2's qemu-storage-daemon sends it for a 64 MiB
// image with num-queues=2 (values from blk-info against the real thing).
std::vector<std::byte> qsd_config()
{
    std::vector<std::byte> c(kBlkConfigReadSize);
    auto put32 = [&](std::size_t off, std::uint32_t v) { virtq::store_le32(c.data() + off, v); };
    virtq::store_le64(c.data() + offsetof(virtio_blk_config, capacity), 131072);
    put32(offsetof(virtio_blk_config, seg_max), 126);
    put32(offsetof(virtio_blk_config, blk_size), 512);
    virtq::store_le16(c.data() + offsetof(virtio_blk_config, min_io_size), 1);
    put32(offsetof(virtio_blk_config, opt_io_size), 1);
    virtq::store_le16(c.data() + offsetof(virtio_blk_config, num_queues), 2);
    put32(offsetof(virtio_blk_config, max_discard_sectors), 32768);
    put32(offsetof(virtio_blk_config, max_discard_seg), 1);
    put32(offsetof(virtio_blk_config, discard_sector_alignment), 1);
    put32(offsetof(virtio_blk_config, max_write_zeroes_sectors), 32768);
    put32(offsetof(virtio_blk_config, max_write_zeroes_seg), 1);
    c[offsetof(virtio_blk_config, write_zeroes_may_unmap)] = std::byte{1};
    return c;
}

TEST(BlkConfigParse, FieldsFollowTheirFeatureBits)
{
    const auto raw = qsd_config();
    const std::uint64_t all =
        feature_bit(VIRTIO_BLK_F_SEG_MAX) | feature_bit(VIRTIO_BLK_F_BLK_SIZE) |
        feature_bit(VIRTIO_BLK_F_TOPOLOGY) | feature_bit(VIRTIO_BLK_F_MQ) |
        feature_bit(VIRTIO_BLK_F_DISCARD) | feature_bit(VIRTIO_BLK_F_WRITE_ZEROES) |
        feature_bit(VIRTIO_BLK_F_FLUSH) | feature_bit(VIRTIO_BLK_F_SIZE_MAX);
    auto c = parse_blk_config(raw, all);
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->capacity_sectors, 131072U);
    EXPECT_EQ(c->capacity_bytes(), 64U << 20);
    EXPECT_EQ(c->seg_max, 126U);
    EXPECT_EQ(c->size_max, 0U);
    EXPECT_EQ(c->blk_size, 512U);
    ASSERT_TRUE(c->topology);
    EXPECT_EQ(c->topology->min_io_size, 1U);
    EXPECT_EQ(c->num_queues, 2U);
    ASSERT_TRUE(c->discard && c->write_zeroes);
    EXPECT_EQ(c->discard->max_sectors, 32768U);
    EXPECT_TRUE(c->write_zeroes->may_unmap);
    EXPECT_TRUE(c->flush);
    EXPECT_FALSE(c->read_only);

    auto bare = parse_blk_config(raw, feature_bit(VIRTIO_BLK_F_RO));
    ASSERT_TRUE(bare);
    EXPECT_EQ(bare->capacity_sectors, 131072U); // capacity is always there
    EXPECT_FALSE(bare->seg_max || bare->blk_size || bare->topology || bare->discard ||
                 bare->write_zeroes);
    EXPECT_EQ(bare->num_queues, 1U); // without MQ, one queue whatever the field says
    EXPECT_TRUE(bare->read_only);
}

TEST(BlkConfigParse, RejectsShortConfigAndZeroQueues)
{
    auto raw = qsd_config();
    EXPECT_FALSE(parse_blk_config(std::span(raw).first(kBlkConfigReadSize - 1), 0));
    virtq::store_le16(raw.data() + offsetof(virtio_blk_config, num_queues), 0);
    EXPECT_FALSE(parse_blk_config(raw, feature_bit(VIRTIO_BLK_F_MQ)));
    EXPECT_TRUE(parse_blk_config(raw, 0));
}

TEST(BlkConfigParse, ReadSizeStopsBeforeSecureErase)
{
    // QEMU 7.2 refuses GET_CONFIG beyond its 60-byte struct.
    EXPECT_EQ(kBlkConfigReadSize, 60U);
}

TEST(BlkRequestBuild, ChainLayoutAndStatusSentinel)
{
    auto pool = GuestPool::create(1 << 20, 0x100000);
    ASSERT_TRUE(pool);
    std::vector<std::byte> data(1536, std::byte{0xab});
    auto w = BlkRequest::build(**pool, BlkRequestType::out, 42, data, 0, 1024);
    ASSERT_TRUE(w) << w.error().message();
    // header, data in two segments (size_max 1024), then the status byte.
    ASSERT_EQ(w->readable().size(), 3U);
    ASSERT_EQ(w->writable().size(), 1U);
    EXPECT_EQ(w->readable()[0].len, 16U);
    EXPECT_EQ(w->readable()[1].len, 1024U);
    EXPECT_EQ(w->readable()[2].len, 512U);
    EXPECT_EQ(w->readable()[2].addr, w->readable()[1].addr + 1024);
    EXPECT_EQ(w->writable()[0].len, 1U);
    EXPECT_EQ(w->data()[0], std::byte{0xab});
    EXPECT_EQ(w->status(), 0xff);
    auto unwritten = w->result();
    ASSERT_FALSE(unwritten);
    EXPECT_EQ(unwritten.error().code(), EPROTO);
    EXPECT_NE(unwritten.error().message().find("WRITE of 1536 bytes at sector 42"),
              std::string::npos);

    auto r = BlkRequest::build(**pool, BlkRequestType::in, 7, {}, 4096);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->readable().size(), 1U);
    ASSERT_EQ(r->writable().size(), 2U);
    EXPECT_EQ(r->writable()[0].len, 4096U);
    EXPECT_EQ(r->writable()[0].addr % 4096, 0U); // data page-aligned

    auto f = BlkRequest::build(**pool, BlkRequestType::flush, 0, {}, 0);
    ASSERT_TRUE(f);
    EXPECT_EQ(f->readable().size(), 1U);
    EXPECT_EQ(f->writable().size(), 1U);
    EXPECT_TRUE(f->data().empty());
}

TEST(BlkRequestBuild, ResultMapsStatusToErrors)
{
    auto pool = GuestPool::create(1 << 16, 0);
    ASSERT_TRUE(pool);
    const auto range = encode_blk_range(100, 8, false);
    auto d = BlkRequest::build(**pool, BlkRequestType::discard, 0, range, 0);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->describe(), "DISCARD of 8 sectors at sector 100");
    // Write the status byte as a device would (the last writable buffer).
    auto* pool_bytes = (*pool)->bytes().data();
    auto set_status = [&](std::uint8_t s) {
        pool_bytes[d->writable().back().addr - (*pool)->guest_base()] = std::byte{s};
    };
    set_status(VIRTIO_BLK_S_OK);
    EXPECT_TRUE(d->result());
    set_status(VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(d->result().error().code(), EIO);
    set_status(VIRTIO_BLK_S_UNSUPP);
    EXPECT_EQ(d->result().error().code(), ENOTSUP);
    EXPECT_NE(d->result().error().message().find("UNSUPP"), std::string::npos);
}

TEST(InputEncoding, EventRoundTripsLittleEndian)
{
    const InputEvent e{0x0003, 0x0035, 0xfffffffe};
    const auto raw = encode_input_event(e);
    EXPECT_EQ(raw, (bytes<8>({3, 0, 0x35, 0, 0xfe, 0xff, 0xff, 0xff})));
    EXPECT_EQ(decode_input_event(raw), e);
}

std::vector<std::byte> input_config(std::uint8_t select, std::uint8_t subsel,
                                    std::vector<std::uint8_t> data)
{
    std::vector<std::byte> c(kInputConfigSize);
    c[0] = std::byte{select};
    c[1] = std::byte{subsel};
    c[2] = std::byte(static_cast<unsigned char>(data.size()));
    for (std::size_t i = 0; i < data.size(); ++i)
        c[kInputConfigDataOffset + i] = std::byte{data[i]};
    return c;
}

TEST(InputEncoding, ConfigAnswerIsCheckedAgainstTheSelection)
{
    auto name = parse_input_config(input_config(1, 0, {'k', 'b', 'd'}), 1, 0);
    ASSERT_TRUE(name);
    EXPECT_EQ(name->size(), 3U);
    auto empty = parse_input_config(input_config(0x11, 5, {}), 0x11, 5);
    ASSERT_TRUE(empty);
    EXPECT_TRUE(empty->empty());
    EXPECT_FALSE(parse_input_config(input_config(1, 0, {'x'}), 2, 0)); // answers another select
    auto oversize = input_config(1, 0, {});
    oversize[2] = std::byte{129};
    EXPECT_FALSE(parse_input_config(oversize, 1, 0));
    EXPECT_FALSE(parse_input_config(std::span(oversize).first(100), 1, 0));
}

TEST(InputEncoding, DevidsAndAbsinfo)
{
    auto ids = parse_input_devids(
        std::vector<std::byte>{std::byte{6}, std::byte{0}, std::byte{0x34}, std::byte{0x12},
                               std::byte{1}, std::byte{0}, std::byte{2}, std::byte{0}});
    ASSERT_TRUE(ids);
    EXPECT_EQ(ids->bustype, 6U);
    EXPECT_EQ(ids->vendor, 0x1234U);
    EXPECT_EQ(ids->version, 2U);
    EXPECT_FALSE(parse_input_devids(std::vector<std::byte>(7)));
    std::vector<std::byte> abs(20);
    virtq::store_le32(abs.data() + 4, 32767);
    auto info = parse_input_absinfo(abs);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->max, 32767U);
    EXPECT_FALSE(parse_input_absinfo(std::vector<std::byte>(19)));
}

TEST(ConsoleEncoding, ControlMessagesRoundTripLittleEndian)
{
    const ConsoleControl name{1, VIRTIO_CONSOLE_PORT_NAME, 1, {std::byte{'a'}, std::byte{'b'}}};
    const auto raw = encode_console_control(name);
    EXPECT_EQ(raw, (std::vector<std::byte>{std::byte{1}, std::byte{0}, std::byte{0}, std::byte{0},
                                           std::byte{7}, std::byte{0}, std::byte{1}, std::byte{0},
                                           std::byte{'a'}, std::byte{'b'}}));
    auto back = decode_console_control(raw);
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(*back, name);
    EXPECT_EQ(describe(*back), "PORT_NAME port 1 value 1 'ab'");
    const ConsoleControl ready{kConsoleNoPort, VIRTIO_CONSOLE_DEVICE_READY, 1, {}};
    EXPECT_EQ(encode_console_control(ready).size(), kConsoleControlSize);
    EXPECT_EQ(decode_console_control(encode_console_control(ready))->id, 0xffffffffU);
    auto short_one = decode_console_control(std::vector<std::byte>(7));
    ASSERT_FALSE(short_one);
    EXPECT_EQ(short_one.error().code(), EPROTO);
    EXPECT_EQ(console_event_name(42), "event 42");
    EXPECT_EQ(console_event_name(VIRTIO_CONSOLE_RESIZE), "RESIZE");
}

TEST(ConsoleEncoding, ConfigAndQueueNumbers)
{
    std::vector<std::byte> config(kConsoleConfigSize);
    virtq::store_le16(config.data(), 132);    // cols
    virtq::store_le16(config.data() + 2, 43); // rows
    virtq::store_le32(config.data() + 4, 5);  // max_nr_ports
    auto c = parse_console_config(config);
    ASSERT_TRUE(c) << c.error().message();
    EXPECT_EQ(c->cols, 132);
    EXPECT_EQ(c->rows, 43);
    EXPECT_EQ(c->max_nr_ports, 5U);
    EXPECT_TRUE(parse_console_config(std::span(config).first(8))); // emerg_wr is optional
    EXPECT_FALSE(parse_console_config(std::span(config).first(7)));
    EXPECT_EQ(console_receive_queue(0), 0U);
    EXPECT_EQ(console_transmit_queue(0), 1U);
    EXPECT_EQ(console_receive_queue(1), 4U);
    EXPECT_EQ(console_transmit_queue(3), 9U);
}

TEST(VerifyPattern, SectorsDescribeThemselves)
{
    std::vector<std::byte> data(4 * kPatternSectorSize);
    ASSERT_TRUE(fill_pattern(data, {77, 1000, 3}));
    EXPECT_FALSE(fill_pattern(std::span(data).first(100), {77, 0, 1}));
    auto sector = [&](std::size_t i) {
        return std::span<const std::byte, kPatternSectorSize>(data.data() + i * kPatternSectorSize,
                                                              kPatternSectorSize);
    };
    EXPECT_EQ(check_sector(sector(2), {77, 1002, 3}).verdict, SectorVerdict::ok);

    auto stale = check_sector(sector(2), {77, 1002, 4});
    EXPECT_EQ(stale.verdict, SectorVerdict::stale);
    EXPECT_EQ(stale.found.generation, 3U);
    EXPECT_EQ(describe(stale, {77, 1002, 4}), "stale data (generation 3, expected 4)");

    auto misplaced = check_sector(sector(1), {77, 1002, 3});
    EXPECT_EQ(misplaced.verdict, SectorVerdict::misplaced);
    EXPECT_EQ(misplaced.found.sector, 1001U);
    EXPECT_EQ(check_sector(sector(1), {78, 1001, 3}).verdict, SectorVerdict::other_run);

    std::array<std::byte, kPatternSectorSize> zeros{};
    EXPECT_EQ(check_sector(zeros, {77, 1, 1}).verdict, SectorVerdict::zeros);

    // One flipped payload bit: checksum catches it.
    std::vector<std::byte> torn(data.begin(), data.begin() + kPatternSectorSize);
    torn[300] ^= std::byte{0x10};
    EXPECT_EQ(check_sector(
                  std::span<const std::byte, kPatternSectorSize>(torn.data(), kPatternSectorSize),
                  {77, 1000, 3})
                  .verdict,
              SectorVerdict::corrupt);
}

TEST(VerifyPattern, DifferentGenerationsAndSectorsDiffer)
{
    std::vector<std::byte> a(kPatternSectorSize);
    std::vector<std::byte> b(kPatternSectorSize);
    ASSERT_TRUE(fill_pattern(a, {1, 5, 1}));
    ASSERT_TRUE(fill_pattern(b, {1, 5, 2}));
    // Beyond the stamp, the payloads differ too (not just the header).
    EXPECT_FALSE(std::equal(a.begin() + 32, a.end() - 8, b.begin() + 32));
    ASSERT_TRUE(fill_pattern(b, {1, 6, 1}));
    EXPECT_FALSE(std::equal(a.begin() + 32, a.end() - 8, b.begin() + 32));
}

} // namespace
} // namespace vl::test_driver
