// SPDX-License-Identifier: Apache-2.0
// virtio-blk on top of VhostUserDriver (virtio 1.2, 5.2): the config
// space, request encoding, and read/write/flush/get-id/discard/write-zeroes
// requests, synchronous or with many in flight.
#pragma once

#include <linux/virtio_blk.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "base/result.hpp"
#include "guest_pool.hpp"
#include "vhost_user_driver.hpp"

namespace vl::test_driver
{

// virtio-blk addresses in 512-byte sectors whatever the block size.
inline constexpr std::uint32_t kSectorSize = 512;
inline constexpr std::size_t kBlkHeaderSize = sizeof(virtio_blk_outhdr);              // 16
inline constexpr std::size_t kBlkRangeSize = sizeof(virtio_blk_discard_write_zeroes); // 16
inline constexpr std::uint32_t kBlkIdBytes = VIRTIO_BLK_ID_BYTES;                     // 20
// The config bytes we read: everything up to the secure-erase fields. Newer
// kernel headers append fields that older back-ends (QEMU 7.2's
// qemu-storage-daemon) lack, and such back-ends refuse a GET_CONFIG larger
// than their own struct.
inline constexpr std::uint32_t kBlkConfigReadSize =
    offsetof(virtio_blk_config, max_secure_erase_sectors); // 60

static_assert(kBlkHeaderSize == 16 && kBlkRangeSize == 16);

struct BlkTopology {
    std::uint8_t physical_block_exp = 0;
    std::uint8_t alignment_offset = 0;
    std::uint16_t min_io_size = 0;
    std::uint32_t opt_io_size = 0;
};
struct BlkDiscardLimits {
    std::uint32_t max_sectors = 0;
    std::uint32_t max_segments = 0;
    std::uint32_t sector_alignment = 0;
};
struct BlkWriteZeroesLimits {
    std::uint32_t max_sectors = 0;
    std::uint32_t max_segments = 0;
    bool may_unmap = false;
};

// virtio_blk_config, decoded; optional fields are present only when their
// feature bit is in the feature set given to parse_blk_config().
struct BlkConfig {
    std::uint64_t capacity_sectors = 0;
    std::optional<std::uint32_t> size_max; // SIZE_MAX (0 = no limit, as QEMU sends)
    std::optional<std::uint32_t> seg_max;  // SEG_MAX
    std::optional<std::uint32_t> blk_size; // BLK_SIZE
    std::optional<BlkTopology> topology;   // TOPOLOGY
    std::optional<std::uint8_t> writeback; // CONFIG_WCE
    std::uint16_t num_queues = 1;          // MQ (1 without it)
    std::optional<BlkDiscardLimits> discard;
    std::optional<BlkWriteZeroesLimits> write_zeroes;
    bool read_only = false; // RO
    bool flush = false;     // FLUSH

    [[nodiscard]] std::uint64_t capacity_bytes() const noexcept
    {
        return capacity_sectors * kSectorSize;
    }
};

// Decodes at least kBlkConfigReadSize bytes of config space. `features` are
// the device's (offered or acked) feature bits. Errors: too few bytes, MQ
// with num_queues 0.
Result<BlkConfig> parse_blk_config(std::span<const std::byte> config, std::uint64_t features);

enum class BlkRequestType : std::uint32_t {
    in = VIRTIO_BLK_T_IN,
    out = VIRTIO_BLK_T_OUT,
    flush = VIRTIO_BLK_T_FLUSH,
    get_id = VIRTIO_BLK_T_GET_ID,
    discard = VIRTIO_BLK_T_DISCARD,
    write_zeroes = VIRTIO_BLK_T_WRITE_ZEROES,
};

// "READ", "WRITE", "FLUSH", "GET_ID", "DISCARD", "WRITE_ZEROES", "type 99".
std::string blk_request_name(BlkRequestType type);
// "OK", "IOERR", "UNSUPP", "0x7f".
std::string blk_status_name(std::uint8_t status);
// The names of the virtio-blk feature bits, for feature_names().
std::span<const FeatureName> blk_feature_names();

// struct virtio_blk_outhdr: le32 type, le32 reserved (0), le64 sector.
std::array<std::byte, kBlkHeaderSize> encode_blk_header(BlkRequestType type, std::uint64_t sector);
// struct virtio_blk_discard_write_zeroes: le64 sector, le32 num_sectors,
// le32 flags (bit 0: unmap, write-zeroes only).
std::array<std::byte, kBlkRangeSize> encode_blk_range(std::uint64_t sector,
                                                      std::uint32_t num_sectors, bool unmap);
// A GET_ID answer: up to 20 bytes, NUL-terminated only if shorter.
std::string decode_blk_id(std::span<const std::byte> id);

// Splits `len` bytes at guest `addr` into descriptors of at most
// `segment_max` bytes (0: no limit). Pure, for the data part of a request.
std::vector<virtq::GuestBuffer> split_segments(std::uint64_t addr, std::uint32_t len,
                                               std::uint32_t segment_max);

// One request in guest memory: header (device-readable), data (readable for
// writes, discard and write-zeroes; writable for reads and GET_ID), status
// byte (writable). The status byte starts as 0xff, not a valid status, so a
// device that completes the request without writing it is caught. Keep the
// request alive until the device returned it.
class BlkRequest
{
  public:
    // Any request, without checks on sizes or features (tests use it to
    // send requests a back-end must refuse). `out_data` is copied into the
    // device-readable data buffer; `in_len` writable data bytes follow it.
    static Result<BlkRequest> build(GuestPool& pool, BlkRequestType type, std::uint64_t sector,
                                    std::span<const std::byte> out_data, std::uint32_t in_len,
                                    std::uint32_t segment_max = 0);

    [[nodiscard]] BlkRequestType type() const noexcept { return type_; }
    [[nodiscard]] std::uint64_t sector() const noexcept { return sector_; }
    // The data buffer (for reads: what the device wrote). Empty if none.
    [[nodiscard]] std::span<std::byte> data() const noexcept { return data_.bytes(); }
    [[nodiscard]] std::span<const virtq::GuestBuffer> readable() const noexcept
    {
        return readable_;
    }
    [[nodiscard]] std::span<const virtq::GuestBuffer> writable() const noexcept
    {
        return writable_;
    }
    // The status byte as it is now (0xff until the device writes it).
    [[nodiscard]] std::uint8_t status() const noexcept;
    // "READ of 8 sectors at sector 16", for messages.
    [[nodiscard]] std::string describe() const;
    // After the device returned it: ok for status OK, else an error naming
    // the request and the status (EIO, or ENOTSUP for UNSUPP, EPROTO for a
    // status byte the device never wrote).
    [[nodiscard]] Status result() const;

  private:
    BlkRequest() = default;

    BlkRequestType type_ = BlkRequestType::in;
    std::uint64_t sector_ = 0;
    Buffer header_;
    Buffer data_;
    Buffer status_;
    std::vector<virtq::GuestBuffer> readable_;
    std::vector<virtq::GuestBuffer> writable_;
};

struct BlkOptions {
    ConnectOptions connect;
    // Queues to set up: 0 for as many as the device has (num_queues), else
    // this many (at most num_queues).
    std::uint32_t queue_count = 0;
    std::uint32_t queue_size = 128;
    bool event_idx = true;
    bool indirect_desc = true;
    // Longest wait for one request.
    std::chrono::milliseconds request_timeout{5000};
};

class BlkDriver
{
  public:
    // Connects, reads the config, acks the blk features we use and starts
    // the queues.
    static Result<BlkDriver> open(const std::string& socket_path, const BlkOptions& options,
                                  Logger logger);
    // The same on a connected driver that has not been started yet.
    static Result<BlkDriver> start(VhostUserDriver driver, const BlkOptions& options);

    [[nodiscard]] const BlkConfig& config() const noexcept { return config_; }
    [[nodiscard]] VhostUserDriver& driver() noexcept { return driver_; }
    [[nodiscard]] std::uint32_t queue_count() const noexcept { return driver_.queue_count(); }

    // Requests, checked against the spec's rules for drivers: data lengths
    // in whole sectors and non-zero, the command's feature negotiated.
    // Ranges beyond the capacity are not refused here (that is the
    // device's job, which tests check).
    Result<BlkRequest> make_read(std::uint64_t sector, std::uint32_t bytes);
    Result<BlkRequest> make_write(std::uint64_t sector, std::span<const std::byte> data);
    Result<BlkRequest> make_flush();
    Result<BlkRequest> make_get_id();
    Result<BlkRequest> make_discard(std::uint64_t sector, std::uint32_t sectors);
    Result<BlkRequest> make_write_zeroes(std::uint64_t sector, std::uint32_t sectors, bool unmap);

    // Asynchronous use: submit many, then wait() returns them (by head) in
    // the device's completion order; check each with request.result().
    Result<std::uint16_t> submit(std::uint32_t queue, const BlkRequest& request);
    Result<virtq::UsedBuffer> wait(std::uint32_t queue);

    // Submits one request, waits for it and checks its status. The queue
    // must have nothing else in flight (EBUSY).
    Status execute(std::uint32_t queue, const BlkRequest& request);

    // Synchronous helpers (each one request).
    Status read(std::uint32_t queue, std::uint64_t sector, std::span<std::byte> out);
    Status write(std::uint32_t queue, std::uint64_t sector, std::span<const std::byte> data);
    Status flush(std::uint32_t queue);
    Result<std::string> get_id(std::uint32_t queue);
    Status discard(std::uint32_t queue, std::uint64_t sector, std::uint32_t sectors);
    Status write_zeroes(std::uint32_t queue, std::uint64_t sector, std::uint32_t sectors,
                        bool unmap);

  private:
    BlkDriver(VhostUserDriver driver, BlkConfig config, std::chrono::milliseconds timeout);
    [[nodiscard]] std::uint32_t segment_max() const noexcept;
    Status require_feature(unsigned bit, std::string_view command) const;

    VhostUserDriver driver_;
    BlkConfig config_;
    std::chrono::milliseconds timeout_;
};

} // namespace vl::test_driver
