// SPDX-License-Identifier: Apache-2.0
#include "blk_driver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "virtqueue/ring.hpp"

namespace vl::test_driver
{

namespace
{

using virtq::load_le16;
using virtq::load_le32;
using virtq::load_le64;

// The status byte before the device writes it: no valid status is 0xff.
constexpr std::uint8_t kStatusUnwritten = 0xff;

constexpr std::array<FeatureName, 12> kBlkFeatureNames{{
    {VIRTIO_BLK_F_SIZE_MAX, "SIZE_MAX"},
    {VIRTIO_BLK_F_SEG_MAX, "SEG_MAX"},
    {VIRTIO_BLK_F_GEOMETRY, "GEOMETRY"},
    {VIRTIO_BLK_F_RO, "RO"},
    {VIRTIO_BLK_F_BLK_SIZE, "BLK_SIZE"},
    {VIRTIO_BLK_F_FLUSH, "FLUSH"},
    {VIRTIO_BLK_F_TOPOLOGY, "TOPOLOGY"},
    {VIRTIO_BLK_F_CONFIG_WCE, "CONFIG_WCE"},
    {VIRTIO_BLK_F_MQ, "MQ"},
    {VIRTIO_BLK_F_DISCARD, "DISCARD"},
    {VIRTIO_BLK_F_WRITE_ZEROES, "WRITE_ZEROES"},
    {VIRTIO_BLK_F_SECURE_ERASE, "SECURE_ERASE"},
}};

// The device features BlkDriver understands and acks when offered.
constexpr std::uint64_t kBlkAckedFeatures =
    feature_bit(VIRTIO_BLK_F_SIZE_MAX) | feature_bit(VIRTIO_BLK_F_SEG_MAX) |
    feature_bit(VIRTIO_BLK_F_RO) | feature_bit(VIRTIO_BLK_F_BLK_SIZE) |
    feature_bit(VIRTIO_BLK_F_FLUSH) | feature_bit(VIRTIO_BLK_F_TOPOLOGY) |
    feature_bit(VIRTIO_BLK_F_CONFIG_WCE) | feature_bit(VIRTIO_BLK_F_MQ) |
    feature_bit(VIRTIO_BLK_F_DISCARD) | feature_bit(VIRTIO_BLK_F_WRITE_ZEROES);

std::uint8_t load_u8(const std::byte* p)
{
    return std::to_integer<std::uint8_t>(*p);
}

} // namespace

std::span<const FeatureName> blk_feature_names()
{
    return kBlkFeatureNames;
}

std::string blk_request_name(BlkRequestType type)
{
    switch (type) {
    case BlkRequestType::in:
        return "READ";
    case BlkRequestType::out:
        return "WRITE";
    case BlkRequestType::flush:
        return "FLUSH";
    case BlkRequestType::get_id:
        return "GET_ID";
    case BlkRequestType::discard:
        return "DISCARD";
    case BlkRequestType::write_zeroes:
        return "WRITE_ZEROES";
    }
    return fmt::format("type {}", static_cast<std::uint32_t>(type));
}

std::string blk_status_name(std::uint8_t status)
{
    switch (status) {
    case VIRTIO_BLK_S_OK:
        return "OK";
    case VIRTIO_BLK_S_IOERR:
        return "IOERR";
    case VIRTIO_BLK_S_UNSUPP:
        return "UNSUPP";
    default:
        return fmt::format("{:#04x}", status);
    }
}

Result<BlkConfig> parse_blk_config(std::span<const std::byte> config, std::uint64_t features)
{
    if (config.size() < kBlkConfigReadSize)
        return Error(fmt::format("virtio-blk config of {} bytes is shorter than the {} bytes "
                                 "this driver reads",
                                 config.size(), kBlkConfigReadSize),
                     EINVAL);
    auto has = [&](unsigned bit) { return has_feature(features, bit); };
    auto at = [&](std::size_t offset) { return config.data() + offset; };
    BlkConfig c;
    c.capacity_sectors = load_le64(at(offsetof(virtio_blk_config, capacity)));
    if (has(VIRTIO_BLK_F_SIZE_MAX))
        c.size_max = load_le32(at(offsetof(virtio_blk_config, size_max)));
    if (has(VIRTIO_BLK_F_SEG_MAX))
        c.seg_max = load_le32(at(offsetof(virtio_blk_config, seg_max)));
    if (has(VIRTIO_BLK_F_BLK_SIZE))
        c.blk_size = load_le32(at(offsetof(virtio_blk_config, blk_size)));
    if (has(VIRTIO_BLK_F_TOPOLOGY))
        c.topology = BlkTopology{load_u8(at(offsetof(virtio_blk_config, physical_block_exp))),
                                 load_u8(at(offsetof(virtio_blk_config, alignment_offset))),
                                 load_le16(at(offsetof(virtio_blk_config, min_io_size))),
                                 load_le32(at(offsetof(virtio_blk_config, opt_io_size)))};
    if (has(VIRTIO_BLK_F_CONFIG_WCE))
        c.writeback = load_u8(at(offsetof(virtio_blk_config, wce)));
    if (has(VIRTIO_BLK_F_MQ)) {
        c.num_queues = load_le16(at(offsetof(virtio_blk_config, num_queues)));
        if (c.num_queues == 0)
            return Error("virtio-blk config: MQ is offered but num_queues is 0", EPROTO);
    }
    if (has(VIRTIO_BLK_F_DISCARD))
        c.discard =
            BlkDiscardLimits{load_le32(at(offsetof(virtio_blk_config, max_discard_sectors))),
                             load_le32(at(offsetof(virtio_blk_config, max_discard_seg))),
                             load_le32(at(offsetof(virtio_blk_config, discard_sector_alignment)))};
    if (has(VIRTIO_BLK_F_WRITE_ZEROES))
        c.write_zeroes = BlkWriteZeroesLimits{
            load_le32(at(offsetof(virtio_blk_config, max_write_zeroes_sectors))),
            load_le32(at(offsetof(virtio_blk_config, max_write_zeroes_seg))),
            load_u8(at(offsetof(virtio_blk_config, write_zeroes_may_unmap))) != 0};
    c.read_only = has(VIRTIO_BLK_F_RO);
    c.flush = has(VIRTIO_BLK_F_FLUSH);
    return c;
}

std::array<std::byte, kBlkHeaderSize> encode_blk_header(BlkRequestType type, std::uint64_t sector)
{
    std::array<std::byte, kBlkHeaderSize> out{};
    virtq::store_le32(out.data() + offsetof(virtio_blk_outhdr, type),
                      static_cast<std::uint32_t>(type));
    virtq::store_le32(out.data() + offsetof(virtio_blk_outhdr, ioprio), 0);
    virtq::store_le64(out.data() + offsetof(virtio_blk_outhdr, sector), sector);
    return out;
}

std::array<std::byte, kBlkRangeSize> encode_blk_range(std::uint64_t sector,
                                                      std::uint32_t num_sectors, bool unmap)
{
    std::array<std::byte, kBlkRangeSize> out{};
    virtq::store_le64(out.data() + offsetof(virtio_blk_discard_write_zeroes, sector), sector);
    virtq::store_le32(out.data() + offsetof(virtio_blk_discard_write_zeroes, num_sectors),
                      num_sectors);
    virtq::store_le32(out.data() + offsetof(virtio_blk_discard_write_zeroes, flags),
                      unmap ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0U);
    return out;
}

std::string decode_blk_id(std::span<const std::byte> id)
{
    auto bytes = id.first(std::min<std::size_t>(id.size(), kBlkIdBytes));
    auto end = std::find(bytes.begin(), bytes.end(), std::byte{0});
    std::string out;
    for (auto it = bytes.begin(); it != end; ++it)
        out += static_cast<char>(std::to_integer<unsigned char>(*it));
    return out;
}

std::vector<virtq::GuestBuffer> split_segments(std::uint64_t addr, std::uint32_t len,
                                               std::uint32_t segment_max)
{
    std::vector<virtq::GuestBuffer> out;
    const std::uint32_t step = segment_max == 0 ? len : segment_max;
    for (std::uint32_t done = 0; done < len;) {
        const std::uint32_t piece = std::min(step, len - done);
        out.push_back({addr + done, piece});
        done += piece;
    }
    return out;
}

// ---------------------------------------------------------------------------
// BlkRequest

Result<BlkRequest> BlkRequest::build(GuestPool& pool, BlkRequestType type, std::uint64_t sector,
                                     std::span<const std::byte> out_data, std::uint32_t in_len,
                                     std::uint32_t segment_max)
{
    if (out_data.size() > std::numeric_limits<std::uint32_t>::max() - in_len)
        return Error(fmt::format("{} request data of {} bytes is too large", blk_request_name(type),
                                 out_data.size() + in_len),
                     EINVAL);
    BlkRequest r;
    r.type_ = type;
    r.sector_ = sector;
    VL_TRY_ASSIGN(r.header_, pool.allocate(kBlkHeaderSize, 16));
    const auto header = encode_blk_header(type, sector);
    std::memcpy(r.header_.bytes().data(), header.data(), header.size());
    r.readable_.push_back(r.header_.whole());

    const auto out_len = static_cast<std::uint32_t>(out_data.size());
    if (out_len + in_len > 0) {
        // Page-aligned so that a back-end doing direct I/O on guest memory
        // never needs to bounce.
        VL_TRY_ASSIGN(r.data_, pool.allocate(out_len + in_len, 4096));
        if (out_len > 0) // memcpy from an empty span's null pointer is undefined
            std::memcpy(r.data_.bytes().data(), out_data.data(), out_len);
        for (const auto& seg : split_segments(r.data_.guest_addr(), out_len, segment_max))
            r.readable_.push_back(seg);
        for (const auto& seg : split_segments(r.data_.guest_addr() + out_len, in_len, segment_max))
            r.writable_.push_back(seg);
    }

    VL_TRY_ASSIGN(r.status_, pool.allocate(1, 1));
    r.status_.bytes()[0] = std::byte{kStatusUnwritten};
    r.writable_.push_back(r.status_.whole());
    return r;
}

std::uint8_t BlkRequest::status() const noexcept
{
    return std::to_integer<std::uint8_t>(status_.bytes()[0]);
}

std::string BlkRequest::describe() const
{
    const std::string name = blk_request_name(type_);
    switch (type_) {
    case BlkRequestType::in:
    case BlkRequestType::out:
        return fmt::format("{} of {} bytes at sector {}", name, data_.size(), sector_);
    case BlkRequestType::discard:
    case BlkRequestType::write_zeroes: {
        // The range is in the data buffer (the header's sector is unused).
        const std::byte* range = data_.bytes().data();
        if (data_.size() < kBlkRangeSize)
            return name;
        return fmt::format(
            "{} of {} sectors at sector {}", name,
            load_le32(range + offsetof(virtio_blk_discard_write_zeroes, num_sectors)),
            load_le64(range + offsetof(virtio_blk_discard_write_zeroes, sector)));
    }
    default:
        return name;
    }
}

Status BlkRequest::result() const
{
    const std::uint8_t s = status();
    if (s == VIRTIO_BLK_S_OK)
        return ok_status();
    if (s == kStatusUnwritten)
        return Error(describe() + ": the back-end returned the request without writing its "
                                  "status byte",
                     EPROTO);
    return Error(fmt::format("{} failed: status {}", describe(), blk_status_name(s)),
                 s == VIRTIO_BLK_S_UNSUPP ? ENOTSUP : EIO);
}

// ---------------------------------------------------------------------------
// BlkDriver

BlkDriver::BlkDriver(VhostUserDriver driver, BlkConfig config, std::chrono::milliseconds timeout)
    : driver_(std::move(driver)), config_(config), timeout_(timeout)
{
}

Result<BlkDriver> BlkDriver::open(const std::string& socket_path, const BlkOptions& options,
                                  Logger logger)
{
    VL_TRY_ASSIGN(VhostUserDriver driver,
                  VhostUserDriver::connect(socket_path, options.connect, std::move(logger)));
    auto blk = start(std::move(driver), options);
    if (!blk)
        return blk.error().wrap("virtio-blk back-end " + socket_path);
    return blk;
}

Result<BlkDriver> BlkDriver::start(VhostUserDriver driver, const BlkOptions& options)
{
    auto raw = driver.get_config(0, kBlkConfigReadSize);
    if (!raw)
        return raw.error().wrap("reading the virtio-blk config");
    // Parsed with the offered features to learn num_queues; parsed again
    // with the acked ones below so the config matches what was negotiated.
    VL_TRY_ASSIGN(BlkConfig offered, parse_blk_config(*raw, driver.offered_features()));

    std::uint32_t queues = options.queue_count;
    if (queues == 0) // all the device has, as far as the vhost-user side allows
        queues = std::min<std::uint32_t>(offered.num_queues,
                                         driver.max_queues().value_or(offered.num_queues));
    else if (queues > offered.num_queues)
        return Error(
            fmt::format("{} queues requested but the device has {}", queues, offered.num_queues),
            EINVAL);

    StartOptions start;
    start.device_features = kBlkAckedFeatures;
    start.queue_count = queues;
    start.queue_size = options.queue_size;
    start.event_idx = options.event_idx;
    start.indirect_desc = options.indirect_desc;
    VL_TRY(driver.start(start));
    VL_TRY_ASSIGN(BlkConfig acked, parse_blk_config(*raw, driver.acked_features()));
    return BlkDriver(std::move(driver), acked, options.request_timeout);
}

std::uint32_t BlkDriver::segment_max() const noexcept
{
    return config_.size_max.value_or(0);
}

Status BlkDriver::require_feature(unsigned bit, std::string_view command) const
{
    if (has_feature(driver_.acked_features(), bit))
        return ok_status();
    return Error(fmt::format("{}: the device does not offer the feature for it", command), ENOTSUP);
}

namespace
{

Status check_data_length(std::uint64_t bytes, std::string_view command)
{
    if (bytes == 0 || bytes % kSectorSize != 0)
        return Error(fmt::format("{} of {} bytes: the length must be a non-zero multiple of {}",
                                 command, bytes, kSectorSize),
                     EINVAL);
    return ok_status();
}

} // namespace

Result<BlkRequest> BlkDriver::make_read(std::uint64_t sector, std::uint32_t bytes)
{
    VL_TRY(check_data_length(bytes, "READ"));
    return BlkRequest::build(*driver_.pool(), BlkRequestType::in, sector, {}, bytes, segment_max());
}

Result<BlkRequest> BlkDriver::make_write(std::uint64_t sector, std::span<const std::byte> data)
{
    VL_TRY(check_data_length(data.size(), "WRITE"));
    if (config_.read_only)
        return Error("WRITE: the device is read-only", EROFS);
    return BlkRequest::build(*driver_.pool(), BlkRequestType::out, sector, data, 0, segment_max());
}

Result<BlkRequest> BlkDriver::make_flush()
{
    VL_TRY(require_feature(VIRTIO_BLK_F_FLUSH, "FLUSH"));
    return BlkRequest::build(*driver_.pool(), BlkRequestType::flush, 0, {}, 0);
}

Result<BlkRequest> BlkDriver::make_get_id()
{
    return BlkRequest::build(*driver_.pool(), BlkRequestType::get_id, 0, {}, kBlkIdBytes);
}

Result<BlkRequest> BlkDriver::make_discard(std::uint64_t sector, std::uint32_t sectors)
{
    VL_TRY(require_feature(VIRTIO_BLK_F_DISCARD, "DISCARD"));
    const auto range = encode_blk_range(sector, sectors, false);
    return BlkRequest::build(*driver_.pool(), BlkRequestType::discard, 0, range, 0);
}

Result<BlkRequest> BlkDriver::make_write_zeroes(std::uint64_t sector, std::uint32_t sectors,
                                                bool unmap)
{
    VL_TRY(require_feature(VIRTIO_BLK_F_WRITE_ZEROES, "WRITE_ZEROES"));
    const auto range = encode_blk_range(sector, sectors, unmap);
    return BlkRequest::build(*driver_.pool(), BlkRequestType::write_zeroes, 0, range, 0);
}

Result<std::uint16_t> BlkDriver::submit(std::uint32_t queue, const BlkRequest& request)
{
    auto head = driver_.submit(queue, request.readable(), request.writable());
    if (!head)
        return head.error().wrap(request.describe());
    return head;
}

Result<virtq::UsedBuffer> BlkDriver::wait(std::uint32_t queue)
{
    return driver_.wait_used(queue, timeout_);
}

Status BlkDriver::execute(std::uint32_t queue, const BlkRequest& request)
{
    if (driver_.in_flight(queue) != 0)
        return Error(fmt::format("{}: queue {} has {} other requests in flight; use submit() "
                                 "and wait() to mix them",
                                 request.describe(), queue, driver_.in_flight(queue)),
                     EBUSY);
    VL_TRY_ASSIGN(std::uint16_t head, submit(queue, request));
    auto used = wait(queue);
    if (!used)
        return used.error().wrap(request.describe());
    if (used->head != head) // cannot happen with one chain in flight and a validated ring
        return Error(fmt::format("{}: completed head {}, submitted {}", request.describe(),
                                 used->head, head),
                     EPROTO);
    return request.result();
}

Status BlkDriver::read(std::uint32_t queue, std::uint64_t sector, std::span<std::byte> out)
{
    if (out.size() > std::numeric_limits<std::uint32_t>::max())
        return Error("READ: more than 4 GiB in one request", EINVAL);
    VL_TRY_ASSIGN(BlkRequest request, make_read(sector, static_cast<std::uint32_t>(out.size())));
    VL_TRY(execute(queue, request));
    std::memcpy(out.data(), request.data().data(), out.size());
    return ok_status();
}

Status BlkDriver::write(std::uint32_t queue, std::uint64_t sector, std::span<const std::byte> data)
{
    VL_TRY_ASSIGN(BlkRequest request, make_write(sector, data));
    return execute(queue, request);
}

Status BlkDriver::flush(std::uint32_t queue)
{
    VL_TRY_ASSIGN(BlkRequest request, make_flush());
    return execute(queue, request);
}

Result<std::string> BlkDriver::get_id(std::uint32_t queue)
{
    VL_TRY_ASSIGN(BlkRequest request, make_get_id());
    VL_TRY(execute(queue, request));
    return decode_blk_id(request.data());
}

Status BlkDriver::discard(std::uint32_t queue, std::uint64_t sector, std::uint32_t sectors)
{
    VL_TRY_ASSIGN(BlkRequest request, make_discard(sector, sectors));
    return execute(queue, request);
}

Status BlkDriver::write_zeroes(std::uint32_t queue, std::uint64_t sector, std::uint32_t sectors,
                               bool unmap)
{
    VL_TRY_ASSIGN(BlkRequest request, make_write_zeroes(sector, sectors, unmap));
    return execute(queue, request);
}

} // namespace vl::test_driver
