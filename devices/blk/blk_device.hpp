// SPDX-License-Identifier: Apache-2.0
// vhost-user-blk: a virtio block device (virtio 1.2, 5.2) over a raw image
// file, a block device, or nothing at all (the null target, for measuring
// the transport alone).
//
// Requests: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES; anything else is
// answered VIRTIO_BLK_S_UNSUPP. Every request is checked (header present,
// the readable/writable split its type needs, whole blocks, inside the
// disk, a status byte) before it touches the disk; a malformed one is
// answered VIRTIO_BLK_S_IOERR, or with nothing written if it has no byte
// to put a status in. Nothing a driver sends can crash the back-end.
//
// I/O: reads and writes go straight between the disk and the driver's
// buffers (readv/writev on the chain's guest memory: no copy in the
// back-end), and a request has at most one operation (read, write, flush,
// fallocate) under way at a time. Two engines run these operations (--io):
// - uring: one io_uring per queue, owned by the queue's worker thread; its
//   eventfd is watched by the worker and completions are reaped in
//   handle_event(). All requests taken in one process_queue() go to the
//   kernel with one io_uring_enter; a queue never has more in flight than
//   its ring has entries, and with every slot busy it pauses until
//   completions free one.
// - sync: preadv/pwritev/fdatasync/fallocate in the queue's worker thread,
//   one request after the other. Where data never waits for a device (an
//   image on tmpfs or ramfs), this is faster: io_uring would hand every
//   such operation to one of its worker threads (those file systems cannot
//   do non-blocking I/O), which costs two thread wake-ups per operation.
// Both drive the same request state machine with io_uring's results (bytes
// or -errno). Short transfers are resubmitted from where they stopped;
// EINTR and EAGAIN are retried.
//
// With --direct (O_DIRECT), a transfer whose buffers O_DIRECT cannot take
// goes through an aligned copy: buffers not aligned to the disk's blocks
// (EINVAL), and guest memory whose pages cannot be pinned (EFAULT or
// EEXIST: the zero-copy pages of virtio-loopback's window), which is then
// copied for every later transfer too.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/device.hpp"
#include "backend/program.hpp"
#include "base/log.hpp"
#include "base/mapping.hpp"
#include "base/result.hpp"
#include "blk/disk.hpp"

namespace vl::blk
{

inline constexpr std::uint32_t kIdBytes = 20; // VIRTIO_BLK_ID_BYTES
inline constexpr std::uint32_t kDefaultQueueSize = 256;
inline constexpr std::uint32_t kMinQueueSize = 4; // seg_max = size - 2 must leave room
inline constexpr std::uint32_t kMaxQueueSize = 32768;
inline constexpr std::uint32_t kMaxQueues = 256;
// Operations one queue keeps in flight at most (its io_uring's size, when
// the ring is larger than this).
inline constexpr std::uint32_t kMaxInFlight = 256;
// Segments per DISCARD or WRITE_ZEROES request (max_discard_seg,
// max_write_zeroes_seg). Linux merges up to this many ranges into one
// request; each is one fallocate.
inline constexpr std::uint32_t kMaxSegments = 32;

// How a queue runs its disk operations (--io); see the top of this file.
enum class IoEngine : std::uint8_t {
    automatic, // --io=auto: sync for an image on a memory file system, else uring
    uring,
    sync,
};

// "auto", "uring" or "sync", as --io spells it.
[[nodiscard]] const char* io_engine_name(IoEngine engine) noexcept;

// What --io comes to for a disk, and why (for the log).
struct IoEngineChoice {
    IoEngine engine = IoEngine::uring; // uring or sync, never automatic
    std::string reason;
};

// Resolves `requested` for a disk of `kind` on a file system of `fs_type`
// (Disk::fs_type()). auto is sync for an image file on tmpfs or ramfs and
// uring otherwise; the null disk does no I/O whatever was asked, and needs
// no io_uring: sync.
[[nodiscard]] IoEngineChoice choose_io_engine(IoEngine requested, Disk::Kind kind,
                                              std::uint64_t fs_type);

// Whether an O_DIRECT read or write that failed with `error` (an errno)
// failed because the kernel could not pin the buffer's pages: EFAULT, or
// EEXIST where get_user_pages found a page table entry without a page (the
// special entries of virtio-loopback's zero-copy pages). A copy works then.
[[nodiscard]] constexpr bool direct_io_cannot_pin(int error) noexcept
{
    return error == EFAULT || error == EEXIST;
}

// The validated configuration of the device.
struct BlkConfig {
    std::string path;                       // --blk-file; empty with --null
    std::optional<std::uint64_t> null_size; // --null SIZE, in bytes
    bool read_only = false;
    bool direct = false;
    std::uint32_t num_queues = 1;
    std::uint32_t queue_size = kDefaultQueueSize;
    std::string serial; // at most kIdBytes printable ASCII characters
    IoEngine io_engine = IoEngine::automatic;

    static Result<BlkConfig> from_command_line(const backend::CommandLine& command_line);

    friend bool operator==(const BlkConfig&, const BlkConfig&) = default;
};

// The device's own command line options.
[[nodiscard]] std::vector<backend::OptionSpec> blk_options();

// "4096", "64K", "512M", "2G", "1T" (powers of 1024) as bytes; `option`
// names the option in the error message.
Result<std::uint64_t> parse_size(std::string_view text, std::string_view option);

class BlkDevice final : public backend::Device
{
  public:
    // Opens the disk the config names, chooses the I/O engine and, for
    // uring, checks that io_uring works.
    static Result<std::unique_ptr<BlkDevice>> create(const BlkConfig& config, Logger logger);
    // A device over a disk already open (the config's path and null_size
    // are not used).
    static Result<std::unique_ptr<BlkDevice>> create(const BlkConfig& config, Disk disk,
                                                     Logger logger);
    ~BlkDevice() override;

    [[nodiscard]] std::uint32_t num_queues() const override { return num_queues_; }
    [[nodiscard]] std::uint32_t max_queue_size() const override { return queue_size_; }
    [[nodiscard]] std::uint64_t features() const override { return features_; }
    [[nodiscard]] std::uint64_t protocol_features() const override;
    // seg_max data segments plus the header and the status byte.
    [[nodiscard]] std::uint32_t max_chain_length() const override { return queue_size_; }

    Result<std::vector<std::byte>> read_config(std::uint32_t offset, std::uint32_t size) override;
    Status write_config(std::uint32_t offset, std::span<const std::byte> data) override;

    Status queue_started(backend::QueueContext& ctx) override;
    Status process_queue(backend::QueueContext& ctx) override;
    Status handle_event(backend::QueueContext& ctx, std::uint64_t token) override;
    void queue_stopped(backend::QueueContext& ctx) override;

    [[nodiscard]] const Disk& disk() const noexcept { return disk_; }
    // The engine the queues use: uring or sync (see choose_io_engine).
    [[nodiscard]] IoEngine io_engine() const noexcept { return io_engine_; }
    // The serial GET_ID returns.
    [[nodiscard]] const std::string& serial() const noexcept { return serial_; }

  private:
    class Queue; // one running queue's requests and I/O engine (blk_device.cpp)

    BlkDevice(const BlkConfig& config, Disk disk, IoEngine io_engine, Logger logger);
    void build_config_space();

    // Everything a request needs to know about the device; constant.
    Disk disk_;
    Logger logger_;
    IoEngine io_engine_; // uring or sync
    bool read_only_;
    std::uint32_t num_queues_;
    std::uint32_t queue_size_;
    std::string serial_;
    std::uint64_t features_ = 0;
    std::uint32_t max_discard_sectors_ = 0;
    std::uint32_t max_write_zeroes_sectors_ = 0;
    std::vector<std::byte> config_space_;
    // Read-only zeros that WRITE_ZEROES writes where fallocate cannot zero.
    Mapping zeros_;

    // What the file system turned out not to support (learnt on the first
    // EOPNOTSUPP, by any queue): later requests skip the attempt.
    std::atomic<bool> no_punch_hole_{false};
    std::atomic<bool> no_zero_range_{false};
    // The guest's buffers cannot be pinned for O_DIRECT (learnt on the first
    // EFAULT, by any queue): later direct reads and writes bounce at once.
    std::atomic<bool> unpinnable_memory_{false};

    // One per queue index, each used only by that queue's worker between
    // queue_started() and queue_stopped().
    std::vector<std::unique_ptr<Queue>> queues_;
};

} // namespace vl::blk
