// SPDX-License-Identifier: Apache-2.0
#include "blk/blk_device.hpp"

#include <endian.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/virtio_blk.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "blk/io_ring.hpp"
#include "vhost_user/protocol.hpp"

namespace vl::blk
{

namespace
{

constexpr std::uint64_t kRingToken = 1;
constexpr std::uint32_t kHeaderSize = sizeof(virtio_blk_outhdr);                // 16
constexpr std::uint32_t kSegmentSize = sizeof(virtio_blk_discard_write_zeroes); // 16
// The config space up to write_zeroes_may_unmap and its padding: what QEMU
// 7.2 reads. Its qemu-storage-daemon refuses larger GET_CONFIGs, and
// front-ends built for it (our adapter, QEMU) ask for exactly this much.
constexpr std::uint32_t kConfigSize = offsetof(virtio_blk_config, max_secure_erase_sectors);
static_assert(kHeaderSize == 16 && kSegmentSize == 16 && kConfigSize == 60);

// readv/writev take at most this many iovecs; longer chains go in parts.
constexpr std::size_t kMaxIovPerOp = IOV_MAX;
// EINTR/EAGAIN retries of one operation before it counts as failed.
constexpr unsigned kMaxRetries = 16;
// Zeros written per operation where fallocate cannot zero a range.
constexpr std::size_t kZeroChunk = std::size_t{1} << 20;
// Segment limits in 512-byte sectors: 2 GiB for fallocate (cheap at any
// size); 32 MiB for a block device's BLKDISCARD, which runs synchronously
// on the worker (there is no asynchronous discard before Linux 6.12) and
// must not hold the queue for long.
constexpr std::uint32_t kMaxSegmentSectors = 1U << 22;
constexpr std::uint32_t kMaxBlockDiscardSectors = 1U << 16;
// Alignment of bounce buffers (O_DIRECT with a misaligned guest buffer).
constexpr std::size_t kBounceAlign = 4096;

constexpr std::uint64_t bit(unsigned n)
{
    return std::uint64_t{1} << n;
}

std::uint32_t load_le32(const std::byte* p)
{
    std::uint32_t v = 0;
    std::memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

std::uint64_t load_le64(const std::byte* p)
{
    std::uint64_t v = 0;
    std::memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

Error usage(std::string message)
{
    return Error(std::move(message), EINVAL);
}

const char* status_name(std::uint8_t status)
{
    switch (status) {
    case VIRTIO_BLK_S_OK:
        return "OK";
    case VIRTIO_BLK_S_IOERR:
        return "IOERR";
    default:
        return "UNSUPP";
    }
}

// The serial used when --serial is not given: the image's file name, cut
// to 20 bytes, with anything but printable ASCII replaced.
std::string default_serial(const BlkConfig& config)
{
    if (config.null_size)
        return "null";
    std::string name = std::filesystem::path(config.path).filename().string();
    if (name.size() > kIdBytes)
        name.resize(kIdBytes);
    for (char& c : name)
        if (c < 0x20 || c > 0x7e)
            c = '_';
    return name;
}

Status check_serial(const std::string& serial)
{
    if (serial.size() > kIdBytes)
        return usage(fmt::format("--serial '{}' is {} bytes; a virtio-blk serial has at most {}",
                                 serial, serial.size(), kIdBytes));
    for (char c : serial)
        if (c < 0x20 || c > 0x7e)
            return usage(
                fmt::format("--serial '{}' has a character that is not printable ASCII", serial));
    return ok_status();
}

struct FreeDeleter {
    void operator()(std::byte* p) const noexcept { std::free(p); }
};

Result<IoEngine> parse_io_engine(std::string_view text)
{
    for (const IoEngine engine : {IoEngine::automatic, IoEngine::uring, IoEngine::sync})
        if (text == io_engine_name(engine))
            return engine;
    return usage(fmt::format("--io wants auto, uring or sync, got '{}'", text));
}

// The memory file systems, where no read or write ever waits for a device,
// by name; nullptr for any other.
const char* memory_fs_name(std::uint64_t fs_type)
{
    switch (fs_type) {
    case TMPFS_MAGIC:
        return "tmpfs";
    case RAMFS_MAGIC:
        return "ramfs";
    default:
        return nullptr;
    }
}

// Keeps the first error of a series of steps that all run regardless.
void keep_first(Status& first, Status next)
{
    if (!next && first.ok())
        first = std::move(next);
}

} // namespace

const char* io_engine_name(IoEngine engine) noexcept
{
    switch (engine) {
    case IoEngine::automatic:
        return "auto";
    case IoEngine::uring:
        return "uring";
    case IoEngine::sync:
        return "sync";
    }
    return "?";
}

IoEngineChoice choose_io_engine(IoEngine requested, Disk::Kind kind, std::uint64_t fs_type)
{
    if (kind == Disk::Kind::null)
        return {IoEngine::sync, "null disk: no I/O at all"};
    switch (requested) {
    case IoEngine::uring:
        return {IoEngine::uring, "--io=uring: one io_uring per queue"};
    case IoEngine::sync:
        return {IoEngine::sync, "--io=sync: I/O runs in the queue threads"};
    case IoEngine::automatic:
        break;
    }
    // These file systems cannot do non-blocking I/O (preadv2 with RWF_NOWAIT
    // fails with EOPNOTSUPP), so io_uring runs every operation in one of its
    // worker threads and signals its completion back: two thread wake-ups
    // per operation, for data that is in memory anyway.
    if (const char* fs = memory_fs_name(fs_type); fs != nullptr && kind == Disk::Kind::file)
        return {IoEngine::sync, fmt::format("{}: I/O runs in the queue threads (io_uring would "
                                            "hand every request to a worker thread)",
                                            fs)};
    return {IoEngine::uring, kind == Disk::Kind::block_device
                                 ? "block device: one io_uring per queue"
                                 : "image file not on tmpfs or ramfs: one io_uring per queue"};
}

// ---------------------------------------------------------------------------
// Configuration

std::vector<backend::OptionSpec> blk_options()
{
    return {
        {"blk-file", 'b', "FILE",
         "the raw disk image or block device to serve (required unless --null)"},
        {"read-only", 'r', "", "serve the disk read-only: the driver sees VIRTIO_BLK_F_RO"},
        {"num-queues", 0, "N",
         fmt::format("request queues, 1 to {} (default 1); each has its own thread (and "
                     "io_uring, see --io)",
                     kMaxQueues)},
        {"queue-size", 0, "N",
         fmt::format("the largest ring a front-end may use, a power of two from {} to {} "
                     "(default {}); a request may have N - 2 data segments",
                     kMinQueueSize, kMaxQueueSize, kDefaultQueueSize)},
        {"serial", 0, "S",
         fmt::format("the serial GET_ID returns, up to {} ASCII characters (default: the "
                     "file's name)",
                     kIdBytes)},
        {"direct", 0, "", "open FILE with O_DIRECT, bypassing the host's page cache"},
        {"io", 0, "ENGINE",
         "how the queues do their I/O: 'uring' (an io_uring per queue, many operations at "
         "once: best for block devices and images on disk file systems), 'sync' (each request "
         "in its queue's thread, one after the other: lowest latency when the data is in "
         "memory, and works where io_uring is not allowed) or 'auto' (default: sync for an "
         "image on tmpfs or ramfs, else uring)"},
        {"null", 0, "SIZE",
         "serve a disk of SIZE bytes (suffixes K, M, G, T) with no storage instead of FILE: "
         "reads return zeros, writes are dropped, no I/O at all (to measure the transport)"},
    };
}

Result<std::uint64_t> parse_size(std::string_view text, std::string_view option)
{
    std::uint64_t n = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, n, 10);
    if (ec == std::errc::result_out_of_range)
        return usage(fmt::format("{} {} is too large", option, text));
    if (ec != std::errc() || ptr == text.data())
        return usage(
            fmt::format("{} wants a size such as 1048576, 64M or 2G, got '{}'", option, text));
    const std::string_view suffix(ptr, static_cast<std::size_t>(end - ptr));
    unsigned shift = 0;
    if (suffix.size() == 1) {
        switch (suffix[0]) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        case 't':
        case 'T':
            shift = 40;
            break;
        default:
            break;
        }
    }
    if (!suffix.empty() && shift == 0)
        return usage(
            fmt::format("{} '{}': unknown unit '{}' (use K, M, G or T)", option, text, suffix));
    if (n > (~std::uint64_t{0} >> shift))
        return usage(fmt::format("{} {} is too large", option, text));
    return n << shift;
}

Result<BlkConfig> BlkConfig::from_command_line(const backend::CommandLine& command_line)
{
    BlkConfig config;
    const auto file = command_line.value("blk-file");
    if (const auto size = command_line.value("null")) {
        if (file)
            return usage("give either --blk-file or --null, not both");
        if (command_line.has("direct"))
            return usage("--direct needs --blk-file: the null disk does no I/O");
        VL_TRY_ASSIGN(const std::uint64_t bytes, parse_size(*size, "--null"));
        if (bytes == 0 || bytes % kSectorSize != 0)
            return usage(fmt::format("--null {} is not a whole number of 512-byte sectors", *size));
        config.null_size = bytes;
    } else if (!file || file->empty()) {
        return usage("missing --blk-file FILE: the disk image or block device to serve (or "
                     "--null SIZE for a disk without storage)");
    } else {
        config.path = *file;
    }
    config.read_only = command_line.has("read-only");
    config.direct = command_line.has("direct");
    if (const auto engine = command_line.value("io")) {
        VL_TRY_ASSIGN(config.io_engine, parse_io_engine(*engine));
    }

    VL_TRY_ASSIGN(const auto queues, command_line.number("num-queues", "queues"));
    if (queues) {
        if (*queues == 0 || *queues > kMaxQueues)
            return usage(fmt::format("--num-queues must be 1 to {}, got {}", kMaxQueues, *queues));
        config.num_queues = static_cast<std::uint32_t>(*queues);
    }
    VL_TRY_ASSIGN(const auto size, command_line.number("queue-size", "ring entries"));
    if (size) {
        if (*size < kMinQueueSize || *size > kMaxQueueSize || !std::has_single_bit(*size))
            return usage(fmt::format("--queue-size must be a power of two from {} to {}, got {}",
                                     kMinQueueSize, kMaxQueueSize, *size));
        config.queue_size = static_cast<std::uint32_t>(*size);
    }
    if (const auto serial = command_line.value("serial")) {
        VL_TRY(check_serial(*serial));
        config.serial = *serial;
    } else {
        config.serial = default_serial(config);
    }
    return config;
}

// ---------------------------------------------------------------------------
// One queue: its request slots and its I/O engine

class BlkDevice::Queue
{
  public:
    Queue(BlkDevice& device, backend::QueueContext& ctx)
        : dev_(device), disk_(device.disk_), ctx_(ctx)
    {
    }

    Status start();
    Status process();
    Status on_ring_event();
    // Waits for (cancelling) what is still in flight; nothing is returned
    // to the driver any more.
    void stop();

  private:
    // The kernel operation a request is waiting for.
    enum class Op : std::uint8_t { read, write, zero_write, flush, fallocate };

    struct Segment {
        std::uint64_t offset = 0; // bytes
        std::uint64_t length = 0; // bytes
        bool unmap = false;
    };

    // One request from pop to push; reused, so that the hot path does not
    // allocate (the chain and iovec vectors keep their capacity).
    struct Slot {
        virtq::DescriptorChain chain;
        std::byte* status = nullptr; // the chain's last writable byte
        std::uint32_t used_len = 1;
        Op op = Op::read;
        // The transfer (read, write, zero_write) or range (fallocate) the
        // current operation covers, from `offset`; `remaining` bytes left.
        std::uint64_t offset = 0;
        std::uint64_t remaining = 0;
        std::uint64_t length = 0; // of the whole read or write
        std::vector<iovec> iov;
        std::size_t iov_done = 0; // iovecs fully transferred
        std::unique_ptr<std::byte, FreeDeleter> bounce;
        int fallocate_mode = 0;
        // After EAGAIN: run the operation in a kernel worker that may block
        // (IOSQE_ASYNC) instead of trying it without blocking again.
        bool blocking = false;
        // DISCARD / WRITE_ZEROES: the ranges, done one after the other.
        bool discard = false;
        bool unmap = false; // of the current segment
        std::uint32_t segment_count = 0;
        std::uint32_t next_segment = 0;
        std::array<Segment, kMaxSegments> segments{};
        unsigned retries = 0;
    };

    Result<bool> pop_into(virtq::DescriptorChain& chain);
    Status take_requests(bool& out_of_slots);
    Status reap();

    // Requests: each either completes the slot (finish/reject/drop) or
    // starts one operation (submit_current).
    Status start_request(std::uint16_t i);
    Status start_read(std::uint16_t i, std::uint64_t sector);
    Status start_write(std::uint16_t i, std::uint64_t sector);
    Status start_flush(std::uint16_t i);
    Status get_id(std::uint16_t i);
    Status start_segments(std::uint16_t i, std::uint32_t type);
    Status next_segment(std::uint16_t i);
    Status zero_segment(std::uint16_t i);
    int discard_block_device(const Slot& s) const;

    // The range check every data and segment range passes: whole blocks
    // inside the disk. nullptr if fine, else why not.
    [[nodiscard]] const char* range_problem(std::uint64_t sector, std::uint64_t bytes) const;
    // Fills slot.iov with `len` bytes of `spans` from `skip` bytes in.
    static void collect_iovecs(Slot& slot, std::span<const std::span<std::byte>> spans,
                               std::size_t skip, std::size_t len);
    [[nodiscard]] bool direct_ok(std::span<const iovec> iov) const;
    Status begin_transfer(std::uint16_t i, Op op, std::uint64_t offset, std::uint64_t len);
    // (Re)starts the slot's read or write from its first byte through an
    // aligned copy of the guest's buffers, for O_DIRECT.
    Status bounce(std::uint16_t i);
    // Starts the slot's current operation: prepares it in the ring (uring),
    // or does it right away and queues its result for complete_done()
    // (sync).
    Status submit_current(std::uint16_t i);
    // The iovecs the current read, write or zero_write covers.
    std::span<iovec> current_iovecs(Slot& s) const;
    // The sync engine: does the current operation and returns what an
    // io_uring completion would carry (bytes, or -errno).
    int run_now(Slot& s) const;

    // Completions.
    // complete() for every operation the sync engine did, and for those
    // these lead to, until none is left.
    Status complete_done();
    Status complete(std::uint64_t user_data, int res);
    Status transferred(std::uint16_t i, int res);
    Status fallocated(std::uint16_t i, int res);
    Status io_failed(std::uint16_t i, int error);

    // Answers the request and frees its slot.
    Status finish(std::uint16_t i, std::uint8_t status);
    // finish() with a log line saying why the request was refused.
    template <class... Args>
    Status reject(std::uint16_t i, std::uint8_t status, fmt::format_string<Args...> why,
                  Args&&... args);
    // Returns a chain that has no byte for a status with nothing written.
    Status drop(std::uint16_t i);

    // An operation the sync engine did, waiting for complete().
    struct Done {
        std::uint16_t slot = 0;
        int res = 0; // as io_uring's cqe->res
    };

    BlkDevice& dev_;
    const Disk& disk_;
    backend::QueueContext& ctx_;
    std::unique_ptr<IoRing> ring_; // the uring engine's; none for sync
    std::vector<Done> done_;       // the sync engine's
    std::vector<Slot> slots_;
    std::vector<std::uint16_t> free_; // indices of idle slots
    bool paused_ = false;             // by us, for want of a free slot
    bool warned_ = false;             // a malformed request was logged at warn level
    std::uint64_t answered_ = 0;      // requests returned to the driver
};

Status BlkDevice::Queue::start()
{
    // uring: at most one operation per request is in flight, so as many
    // slots as ring entries caps the operations in flight by the ring's
    // size. sync: each request is answered before the next is taken, so
    // one slot is all it uses (a queue starts sooner without 255 more:
    // this runs before the ring serves its first request).
    const bool sync = dev_.io_engine_ == IoEngine::sync;
    const auto count = sync ? 1U : std::min(ctx_.queue().size(), kMaxInFlight);
    // A slot's vectors grow on its first requests and keep their capacity.
    slots_.resize(count);
    free_.reserve(count);
    for (std::uint32_t i = count; i-- > 0;)
        free_.push_back(static_cast<std::uint16_t>(i));
    if (sync) {
        // One operation per slot: never more results than this.
        done_.reserve(count);
        return ok_status();
    }
    VL_TRY_ASSIGN(ring_, IoRing::create(count));
    return ctx_.watch(ring_->event_fd(), kRingToken);
}

Result<bool> BlkDevice::Queue::pop_into(virtq::DescriptorChain& chain)
{
    // Chains recovered from inflight tracking come first, through pop().
    // Otherwise take straight from the ring into the slot's chain, whose
    // vectors are reused: no allocation per request.
    if (ctx_.pending_resubmissions() > 0) {
        VL_TRY_ASSIGN(auto popped, ctx_.pop());
        if (!popped)
            return false;
        chain = std::move(*popped);
        return true;
    }
    return ctx_.queue().pop_into(chain);
}

Status BlkDevice::Queue::process()
{
    for (;;) {
        bool out_of_slots = false;
        Status taken = take_requests(out_of_slots);
        // What was prepared goes to the kernel even if the driver broke the
        // ring meanwhile: stop() then waits for it like for any other.
        if (ring_)
            VL_TRY(ring_->submit());
        VL_TRY(taken);
        // (With the sync engine, take_requests() has answered every request
        // it took: there is nothing in flight.)
        // Reads from the page cache complete inside io_uring_enter: answer
        // them now, and clear the eventfd they signalled, which saves the
        // worker a wake-up for completions already handled.
        if (ring_ && ring_->completions_ready()) {
            ring_->clear_event();
            VL_TRY(reap());
        }
        if (!out_of_slots)
            return ok_status();
        if (free_.empty()) {
            paused_ = true;
            ctx_.pause(); // on_ring_event() resumes when a slot frees up
            return ok_status();
        }
    }
}

Status BlkDevice::Queue::take_requests(bool& out_of_slots)
{
    for (;;) {
        if (free_.empty()) {
            out_of_slots = true;
            return ok_status();
        }
        const std::uint16_t i = free_.back();
        VL_TRY_ASSIGN(const bool got, pop_into(slots_[i].chain));
        if (!got)
            return ok_status();
        free_.pop_back();
        VL_TRY(start_request(i));
        // The sync engine did the request's first operation already: answer
        // it before taking the next, so that its slot is free again (a sync
        // queue uses one slot) and its answer is in the used ring early.
        VL_TRY(complete_done());
    }
}

Status BlkDevice::Queue::on_ring_event()
{
    ring_->clear_event();
    VL_TRY(reap());
    if (paused_ && !free_.empty()) {
        paused_ = false;
        ctx_.resume();
    }
    return ok_status();
}

Status BlkDevice::Queue::reap()
{
    Status first;
    ring_->reap(
        [&](std::uint64_t user_data, int res) { keep_first(first, complete(user_data, res)); });
    // Continuations prepared by the completions (the rest of a short
    // transfer, the next segment) go in one more submission.
    keep_first(first, ring_->submit());
    return first;
}

Status BlkDevice::Queue::complete_done()
{
    // complete() may start the request's next operation (the rest of a
    // short transfer, the next segment or chunk of zeros, a retry), which
    // the sync engine does at once and queues here: a loop, not recursion,
    // so that a 2 GiB WRITE_ZEROES written 1 MiB at a time is 2048 turns
    // of it rather than 2048 nested calls. Each entry is the only operation
    // of its slot, so their order does not matter.
    Status first;
    while (!done_.empty()) {
        const Done done = done_.back();
        done_.pop_back();
        keep_first(first, complete(done.slot, done.res));
    }
    return first;
}

void BlkDevice::Queue::stop()
{
    const Logger& log = ctx_.logger();
    log.debug("queue {} stops after {} requests", ctx_.index(), answered_);
    const std::size_t busy = slots_.size() - free_.size();
    // The sync engine has nothing in the kernel: a busy slot there is one
    // whose answer failed, and its operation is over.
    if (!ring_ || busy == 0)
        return;
    log.warn("{} requests still in flight as the queue stops; cancelling them (they are not "
             "answered)",
             busy);
    if (Status s = ring_->submit(); !s)
        log.warn("{}", s.error().message());
    if (Status s = ring_->cancel_all(); !s)
        log.warn("cannot cancel the I/O in flight: {}", s.error().message());
    // Their buffers are guest memory that may be unmapped once we return:
    // wait for the kernel to be done with them.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (free_.size() < slots_.size()) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !ring_->wait(left))
            break;
        ring_->reap([&](std::uint64_t user_data, int) {
            if (user_data < slots_.size())
                free_.push_back(static_cast<std::uint16_t>(user_data));
        });
    }
    if (free_.size() < slots_.size())
        log.error("{} I/O operations did not finish within 10 s of being cancelled; the disk "
                  "may be hung",
                  slots_.size() - free_.size());
}

// ---- requests ---------------------------------------------------------

Status BlkDevice::Queue::start_request(std::uint16_t i)
{
    Slot& s = slots_[i];
    const virtq::DescriptorChain& chain = s.chain;
    s.used_len = 1;
    s.retries = 0;
    s.blocking = false;
    s.bounce.reset();
    s.segment_count = 0;
    s.next_segment = 0;
    if (chain.writable_len() == 0)
        return drop(i);
    const std::span<std::byte> last = chain.writable().back();
    s.status = &last[last.size() - 1];
    if (chain.readable_len() < kHeaderSize)
        return reject(i, VIRTIO_BLK_S_IOERR,
                      "the device-readable part is {} bytes, shorter than the 16-byte header",
                      chain.readable_len());
    // A copy: the driver may change shared memory while we look at it.
    std::array<std::byte, kHeaderSize> header{};
    chain.read_into(header);
    const std::uint32_t type = load_le32(header.data());
    const std::uint64_t sector = load_le64(header.data() + 8);
    switch (type) {
    case VIRTIO_BLK_T_IN:
        return start_read(i, sector);
    case VIRTIO_BLK_T_OUT:
        return start_write(i, sector);
    case VIRTIO_BLK_T_FLUSH:
        return start_flush(i);
    case VIRTIO_BLK_T_GET_ID:
        return get_id(i);
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        return start_segments(i, type);
    default:
        return reject(i, VIRTIO_BLK_S_UNSUPP, "request type {} is not supported", type);
    }
}

Status BlkDevice::Queue::start_read(std::uint16_t i, std::uint64_t sector)
{
    Slot& s = slots_[i];
    const virtq::DescriptorChain& chain = s.chain;
    if (chain.readable_len() != kHeaderSize)
        return reject(i, VIRTIO_BLK_S_IOERR,
                      "a read has {} device-readable bytes; it must have the header only",
                      chain.readable_len());
    const std::uint32_t len = chain.writable_len() - 1;
    if (const char* problem = range_problem(sector, len))
        return reject(i, VIRTIO_BLK_S_IOERR, "read of {} bytes at sector {}: {}", len, sector,
                      problem);
    // Data may land in the buffer from here on.
    s.used_len = len + 1;
    if (len == 0)
        return finish(i, VIRTIO_BLK_S_OK);
    collect_iovecs(s, chain.writable(), 0, len);
    if (disk_.kind() == Disk::Kind::null) {
        for (const iovec& v : s.iov)
            std::memset(v.iov_base, 0, v.iov_len);
        return finish(i, VIRTIO_BLK_S_OK);
    }
    return begin_transfer(i, Op::read, sector * kSectorSize, len);
}

Status BlkDevice::Queue::start_write(std::uint16_t i, std::uint64_t sector)
{
    Slot& s = slots_[i];
    const virtq::DescriptorChain& chain = s.chain;
    // VIRTIO_BLK_F_RO was offered: the driver must not write (5.2.6.2).
    if (dev_.read_only_)
        return reject(i, VIRTIO_BLK_S_IOERR, "a write to a read-only disk");
    if (chain.writable_len() != 1)
        return reject(i, VIRTIO_BLK_S_IOERR,
                      "a write has {} device-writable bytes; it must have the status byte only",
                      chain.writable_len());
    const std::uint32_t len = chain.readable_len() - kHeaderSize;
    if (const char* problem = range_problem(sector, len))
        return reject(i, VIRTIO_BLK_S_IOERR, "write of {} bytes at sector {}: {}", len, sector,
                      problem);
    if (len == 0 || disk_.kind() == Disk::Kind::null)
        return finish(i, VIRTIO_BLK_S_OK);
    collect_iovecs(s, chain.readable(), kHeaderSize, len);
    return begin_transfer(i, Op::write, sector * kSectorSize, len);
}

Status BlkDevice::Queue::start_flush(std::uint16_t i)
{
    Slot& s = slots_[i];
    const virtq::DescriptorChain& chain = s.chain;
    if (chain.readable_len() != kHeaderSize || chain.writable_len() != 1)
        return reject(i, VIRTIO_BLK_S_IOERR,
                      "a flush has {} device-readable and {} device-writable bytes; it must "
                      "have the header and the status byte only",
                      chain.readable_len(), chain.writable_len());
    if (disk_.kind() == Disk::Kind::null)
        return finish(i, VIRTIO_BLK_S_OK);
    s.op = Op::flush;
    s.offset = 0;
    s.remaining = 0;
    return submit_current(i);
}

Status BlkDevice::Queue::get_id(std::uint16_t i)
{
    Slot& s = slots_[i];
    if (s.chain.readable_len() != kHeaderSize)
        return reject(i, VIRTIO_BLK_S_IOERR,
                      "a GET_ID has {} device-readable bytes; it must have the header only",
                      s.chain.readable_len());
    // NUL-padded to 20 bytes; no terminator when the serial fills them.
    std::array<std::byte, kIdBytes> id{};
    std::memcpy(id.data(), dev_.serial_.data(), dev_.serial_.size());
    const std::size_t n = std::min<std::size_t>(s.chain.writable_len() - 1, kIdBytes);
    s.chain.write_from(std::span(id).first(n));
    s.used_len = static_cast<std::uint32_t>(n) + 1;
    return finish(i, VIRTIO_BLK_S_OK);
}

Status BlkDevice::Queue::start_segments(std::uint16_t i, std::uint32_t type)
{
    Slot& s = slots_[i];
    const virtq::DescriptorChain& chain = s.chain;
    const bool discard = type == VIRTIO_BLK_T_DISCARD;
    const char* name = discard ? "DISCARD" : "WRITE_ZEROES";
    if (!ctx_.has_feature(discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES))
        return reject(i, VIRTIO_BLK_S_UNSUPP, "{} without its feature negotiated", name);
    if (dev_.read_only_)
        return reject(i, VIRTIO_BLK_S_IOERR, "{} on a read-only disk", name);
    if (chain.writable_len() != 1)
        return reject(i, VIRTIO_BLK_S_IOERR,
                      "{} has {} device-writable bytes; it must have the status byte only", name,
                      chain.writable_len());
    const std::uint32_t payload = chain.readable_len() - kHeaderSize;
    if (payload == 0 || payload % kSegmentSize != 0 || payload / kSegmentSize > kMaxSegments)
        return reject(i, VIRTIO_BLK_S_IOERR,
                      "{} has {} bytes of segments; it must have 1 to {} segments of 16 bytes",
                      name, payload, kMaxSegments);
    const std::uint32_t count = payload / kSegmentSize;
    const std::uint32_t max_sectors =
        discard ? dev_.max_discard_sectors_ : dev_.max_write_zeroes_sectors_;

    // Unknown flags, or UNMAP on a discard, make the request unsupported
    // (5.2.6.2) whatever its ranges are: look at every flag first.
    std::array<std::byte, kSegmentSize> raw{};
    bool unsupported = false;
    for (std::uint32_t k = 0; k < count; ++k) {
        chain.read_into(raw, kHeaderSize + std::size_t{k} * kSegmentSize);
        const std::uint32_t flags = load_le32(raw.data() + 12);
        const std::uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        unsupported = unsupported || (flags & ~allowed) != 0;
        s.segments[k] = {load_le64(raw.data()), load_le32(raw.data() + 8),
                         (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0};
    }
    if (unsupported)
        return reject(i, VIRTIO_BLK_S_UNSUPP, "{} with flags it does not define", name);
    for (std::uint32_t k = 0; k < count; ++k) {
        Segment& seg = s.segments[k];
        // Still sectors here; made bytes once checked.
        const std::uint64_t sector = seg.offset;
        const std::uint64_t sectors = seg.length;
        if (sectors > max_sectors)
            return reject(i, VIRTIO_BLK_S_IOERR, "{} segment of {} sectors; the limit is {}", name,
                          sectors, max_sectors);
        if (const char* problem = range_problem(sector, sectors * kSectorSize))
            return reject(i, VIRTIO_BLK_S_IOERR, "{} of {} sectors at sector {}: {}", name, sectors,
                          sector, problem);
        seg.offset = sector * kSectorSize;
        seg.length = sectors * kSectorSize;
    }
    if (disk_.kind() == Disk::Kind::null)
        return finish(i, VIRTIO_BLK_S_OK);
    s.discard = discard;
    s.segment_count = count;
    s.next_segment = 0;
    return next_segment(i);
}

Status BlkDevice::Queue::next_segment(std::uint16_t i)
{
    Slot& s = slots_[i];
    while (s.next_segment < s.segment_count) {
        const Segment& seg = s.segments[s.next_segment++];
        if (seg.length == 0)
            continue;
        s.offset = seg.offset;
        s.remaining = seg.length;
        s.unmap = seg.unmap;
        s.retries = 0;
        if (!s.discard)
            return zero_segment(i);
        s.op = Op::fallocate; // what a failure is reported as
        if (disk_.kind() == Disk::Kind::block_device) {
            if (const int error = discard_block_device(s); error != 0)
                return io_failed(i, error);
            continue;
        }
        // A discard is a hint (5.2.6.2: the device MAY deallocate); where
        // the file system cannot punch holes, there is nothing to do.
        if (dev_.no_punch_hole_.load(std::memory_order_relaxed))
            continue;
        s.fallocate_mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        return submit_current(i);
    }
    return finish(i, VIRTIO_BLK_S_OK);
}

// WRITE_ZEROES of the current segment: deallocate when the driver allows
// it (unmap) and the disk can, else zero in place (ZERO_RANGE; for a block
// device that is BLKZEROOUT's operation, here asynchronous), else write
// zeros.
Status BlkDevice::Queue::zero_segment(std::uint16_t i)
{
    Slot& s = slots_[i];
    if (s.unmap && !dev_.no_punch_hole_.load(std::memory_order_relaxed)) {
        s.op = Op::fallocate;
        s.fallocate_mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    } else if (!dev_.no_zero_range_.load(std::memory_order_relaxed)) {
        s.op = Op::fallocate;
        s.fallocate_mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    } else {
        s.op = Op::zero_write;
        s.iov.assign(1, iovec{});
        s.iov_done = 0;
    }
    return submit_current(i);
}

// BLKDISCARD has no io_uring operation before Linux 6.12: it runs here,
// synchronously, on segments of at most kMaxBlockDiscardSectors. Returns 0
// or the errno.
int BlkDevice::Queue::discard_block_device(const Slot& s) const
{
    std::array<std::uint64_t, 2> range{s.offset, s.remaining};
    if (::ioctl(disk_.fd(), BLKDISCARD, range.data()) == 0 || errno == EOPNOTSUPP)
        return 0; // done, or a device without discard: a hint ignored
    return errno;
}

const char* BlkDevice::Queue::range_problem(std::uint64_t sector, std::uint64_t bytes) const
{
    const std::uint32_t block = disk_.logical_block_size();
    if (bytes % block != 0)
        return block == kSectorSize ? "the length is not a multiple of 512 bytes"
                                    : "the length is not a whole number of the disk's blocks";
    if (sector % (block / kSectorSize) != 0)
        return "the sector is not at a boundary of the disk's blocks";
    const std::uint64_t capacity = disk_.capacity_sectors();
    if (sector > capacity || bytes / kSectorSize > capacity - sector)
        return "the range reaches beyond the end of the disk";
    return nullptr;
}

void BlkDevice::Queue::collect_iovecs(Slot& slot, std::span<const std::span<std::byte>> spans,
                                      std::size_t skip, std::size_t len)
{
    slot.iov.clear();
    slot.iov_done = 0;
    for (std::span<std::byte> span : spans) {
        if (len == 0)
            break;
        if (skip >= span.size()) {
            skip -= span.size();
            continue;
        }
        const std::size_t n = std::min(span.size() - skip, len);
        slot.iov.push_back(iovec{span.data() + skip, n});
        len -= n;
        skip = 0;
    }
}

bool BlkDevice::Queue::direct_ok(std::span<const iovec> iov) const
{
    const std::uint32_t memory = disk_.memory_alignment();
    const std::uint32_t block = disk_.logical_block_size();
    return std::all_of(iov.begin(), iov.end(), [&](const iovec& v) {
        return reinterpret_cast<std::uintptr_t>(v.iov_base) % memory == 0 && v.iov_len % block == 0;
    });
}

Status BlkDevice::Queue::begin_transfer(std::uint16_t i, Op op, std::uint64_t offset,
                                        std::uint64_t len)
{
    Slot& s = slots_[i];
    s.op = op;
    s.offset = offset;
    s.remaining = len;
    s.length = len;
    // O_DIRECT refuses this buffer layout (EINVAL; rare: drivers normally
    // hand out whole pages), or the guest's pages cannot be pinned, as
    // O_DIRECT needs (learnt from an EFAULT, see transferred()): go
    // through an aligned copy.
    if (disk_.direct() &&
        (dev_.unpinnable_memory_.load(std::memory_order_relaxed) || !direct_ok(s.iov)))
        return bounce(i);
    return submit_current(i);
}

Status BlkDevice::Queue::bounce(std::uint16_t i)
{
    Slot& s = slots_[i];
    s.offset -= s.length - s.remaining;
    s.remaining = s.length;
    const std::size_t len = s.length;
    const std::size_t size = (len + kBounceAlign - 1) / kBounceAlign * kBounceAlign;
    s.bounce.reset(static_cast<std::byte*>(std::aligned_alloc(kBounceAlign, size)));
    if (!s.bounce)
        return io_failed(i, ENOMEM);
    if (s.op == Op::write)
        virtq::copy_from_buffers(s.chain.readable(), kHeaderSize, std::span(s.bounce.get(), len));
    s.iov.assign(1, iovec{s.bounce.get(), len});
    s.iov_done = 0;
    return submit_current(i);
}

Status BlkDevice::Queue::submit_current(std::uint16_t i)
{
    Slot& s = slots_[i];
    if (!ring_) {
        // complete() runs later, from complete_done(): calling it from here
        // would recurse once per operation of a long request.
        done_.push_back({i, run_now(s)});
        return ok_status();
    }
    io_uring_sqe* sqe = ring_->next_sqe();
    if (sqe == nullptr) {
        // Cannot happen while each slot has at most one operation in the
        // ring and there are no more slots than entries; be safe anyway.
        VL_TRY(ring_->submit());
        sqe = ring_->next_sqe();
        if (sqe == nullptr)
            return Error("the io_uring has no free submission entry", EBUSY);
    }
    const int fd = disk_.fd();
    switch (s.op) {
    case Op::read:
    case Op::write:
    case Op::zero_write: {
        const std::span<iovec> iov = current_iovecs(s);
        const auto count = static_cast<unsigned>(iov.size());
        if (s.op == Op::read)
            io_uring_prep_readv(sqe, fd, iov.data(), count, s.offset);
        else
            io_uring_prep_writev(sqe, fd, iov.data(), count, s.offset);
        break;
    }
    case Op::flush:
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
    case Op::fallocate:
        io_uring_prep_fallocate(sqe, fd, s.fallocate_mode, static_cast<off_t>(s.offset),
                                static_cast<off_t>(s.remaining));
        break;
    }
    if (s.blocking)
        sqe->flags |= IOSQE_ASYNC;
    io_uring_sqe_set_data64(sqe, i);
    return ok_status();
}

std::span<iovec> BlkDevice::Queue::current_iovecs(Slot& s) const
{
    if (s.op == Op::zero_write) {
        s.iov[0] =
            iovec{dev_.zeros_.data(),
                  static_cast<std::size_t>(std::min<std::uint64_t>(s.remaining, kZeroChunk))};
        return std::span(s.iov).first(1);
    }
    return std::span(s.iov).subspan(s.iov_done, std::min(s.iov.size() - s.iov_done, kMaxIovPerOp));
}

int BlkDevice::Queue::run_now(Slot& s) const
{
    const int fd = disk_.fd();
    const auto offset = static_cast<off_t>(s.offset);
    ssize_t rc = 0;
    switch (s.op) {
    case Op::read:
    case Op::write:
    case Op::zero_write: {
        const std::span<iovec> iov = current_iovecs(s);
        const auto count = static_cast<int>(iov.size());
        rc = s.op == Op::read ? ::preadv(fd, iov.data(), count, offset)
                              : ::pwritev(fd, iov.data(), count, offset);
        break;
    }
    case Op::flush:
        rc = ::fdatasync(fd); // what IORING_FSYNC_DATASYNC does
        break;
    case Op::fallocate:
        rc = ::fallocate(fd, s.fallocate_mode, offset, static_cast<off_t>(s.remaining));
        break;
    }
    // The kernel moves at most MAX_RW_COUNT (just under 2 GiB) per call:
    // the count fits an int, as it does in a completion's res.
    return rc < 0 ? -errno : static_cast<int>(rc);
}

// ---- completions ------------------------------------------------------

Status BlkDevice::Queue::complete(std::uint64_t user_data, int res)
{
    if (user_data == IoRing::kCancelTag)
        return ok_status();
    if (user_data >= slots_.size())
        return Error(fmt::format("io_uring completion for an unknown request {}", user_data),
                     EPROTO);
    const auto i = static_cast<std::uint16_t>(user_data);
    Slot& s = slots_[i];
    // Interrupted, or the kernel could not do it without blocking right
    // now: nothing was transferred; try again (EAGAIN in a worker that may
    // block, so it does not come back the same way). The sync engine's
    // blocking calls do not return EAGAIN; the retry is bounded anyway.
    if ((res == -EINTR || res == -EAGAIN) && s.retries < kMaxRetries) {
        ++s.retries;
        s.blocking = s.blocking || res == -EAGAIN;
        return submit_current(i);
    }
    switch (s.op) {
    case Op::read:
    case Op::write:
    case Op::zero_write:
        return transferred(i, res);
    case Op::flush:
        return res < 0 ? io_failed(i, -res) : finish(i, VIRTIO_BLK_S_OK);
    case Op::fallocate:
        return fallocated(i, res);
    }
    return ok_status();
}

Status BlkDevice::Queue::transferred(std::uint16_t i, int res)
{
    Slot& s = slots_[i];
    if (res < 0 && direct_io_cannot_pin(-res) && disk_.direct() && !s.bounce &&
        s.op != Op::zero_write) {
        // O_DIRECT could not pin the guest's pages: virtio-loopback's
        // zero-copy pages refuse to be pinned (a pin would outlive the
        // request), while copies to and from them work. Copy, for this
        // transfer (again from its start: a short transfer may have moved
        // part of it) and from now on.
        if (!dev_.unpinnable_memory_.exchange(true))
            ctx_.logger().info("O_DIRECT on {} cannot use the guest's buffers ({}: their pages "
                               "cannot be pinned, as with virtio-loopback's zero-copy); reads "
                               "and writes go through aligned copies from now on",
                               disk_.path(), strerrorname_np(-res));
        return bounce(i);
    }
    if (res < 0)
        return io_failed(i, -res);
    const auto n = std::min<std::uint64_t>(static_cast<std::uint64_t>(res), s.remaining);
    if (n == 0) // end of file inside the disk: the image shrank under us
        return io_failed(i, EIO);
    s.retries = 0;
    s.offset += n;
    s.remaining -= n;
    if (s.remaining > 0) {
        // A short transfer, or the first IOV_MAX iovecs of a long chain:
        // go on from where it stopped.
        if (s.op != Op::zero_write)
            s.iov_done +=
                consume_iovecs(std::span(s.iov).subspan(s.iov_done), static_cast<std::size_t>(n));
        return submit_current(i);
    }
    if (s.op == Op::zero_write)
        return next_segment(i);
    if (s.op == Op::read && s.bounce)
        virtq::copy_to_buffers(s.chain.writable(), 0, std::span(s.bounce.get(), s.length));
    return finish(i, VIRTIO_BLK_S_OK);
}

Status BlkDevice::Queue::fallocated(std::uint16_t i, int res)
{
    Slot& s = slots_[i];
    if (res == -EOPNOTSUPP) {
        // Remember it for every queue, then go on without that mode.
        const bool punch = (s.fallocate_mode & FALLOC_FL_PUNCH_HOLE) != 0;
        std::atomic<bool>& unsupported = punch ? dev_.no_punch_hole_ : dev_.no_zero_range_;
        if (!unsupported.exchange(true))
            ctx_.logger().info("{} does not support fallocate {}; {}", disk_.path(),
                               punch ? "PUNCH_HOLE" : "ZERO_RANGE",
                               punch ? "discards are ignored, write-zeroes zero in place"
                                     : "write-zeroes write zeros instead");
        return s.discard ? next_segment(i) : zero_segment(i);
    }
    if (res < 0)
        return io_failed(i, -res);
    return next_segment(i);
}

Status BlkDevice::Queue::io_failed(std::uint16_t i, int error)
{
    const Slot& s = slots_[i];
    const char* what = "read";
    switch (s.op) {
    case Op::read:
        break;
    case Op::write:
        what = "write";
        break;
    case Op::zero_write:
        what = "write of zeros";
        break;
    case Op::flush:
        ctx_.logger().warn("flush (fdatasync) of {} failed: {}; answering IOERR", disk_.path(),
                           std::strerror(error));
        return finish(i, VIRTIO_BLK_S_IOERR);
    case Op::fallocate:
        what = s.discard ? "discard" : "write-zeroes";
        break;
    }
    ctx_.logger().warn("{} of {} bytes at offset {} of {} failed: {}; answering IOERR", what,
                       s.remaining, s.offset, disk_.path(), std::strerror(error));
    return finish(i, VIRTIO_BLK_S_IOERR);
}

Status BlkDevice::Queue::finish(std::uint16_t i, std::uint8_t status)
{
    Slot& s = slots_[i];
    *s.status = std::byte{status};
    s.bounce.reset();
    free_.push_back(i);
    ++answered_;
    return ctx_.push(s.chain.head(), s.used_len);
}

template <class... Args>
Status BlkDevice::Queue::reject(std::uint16_t i, std::uint8_t status,
                                fmt::format_string<Args...> why, Args&&... args)
{
    // A driver that sends one malformed request may send many: warn once
    // per queue run, then log at debug level only.
    const bool first = !warned_ && status == VIRTIO_BLK_S_IOERR;
    const LogLevel level = first ? LogLevel::warn : LogLevel::debug;
    if (ctx_.logger().enabled(level))
        ctx_.logger().log(level, "request {} answered {}: {}{}", slots_[i].chain.head(),
                          status_name(status), fmt::format(why, std::forward<Args>(args)...),
                          first ? " (more such requests are logged at debug level)" : "");
    warned_ = warned_ || first;
    return finish(i, status);
}

Status BlkDevice::Queue::drop(std::uint16_t i)
{
    const Logger& log = ctx_.logger();
    const LogLevel level = warned_ ? LogLevel::debug : LogLevel::warn;
    log.log(level,
            "request {} has no device-writable byte for its status; returned with nothing "
            "written",
            slots_[i].chain.head());
    warned_ = true;
    free_.push_back(i);
    ++answered_;
    return ctx_.push(slots_[i].chain.head(), 0);
}

// ---------------------------------------------------------------------------
// BlkDevice

BlkDevice::BlkDevice(const BlkConfig& config, Disk disk, IoEngine io_engine, Logger logger)
    : disk_(std::move(disk)), logger_(std::move(logger)), io_engine_(io_engine),
      read_only_(config.read_only), num_queues_(config.num_queues), queue_size_(config.queue_size),
      serial_(config.serial), queues_(config.num_queues)
{
    features_ = bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH) |
                bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
    if (num_queues_ > 1)
        features_ |= bit(VIRTIO_BLK_F_MQ);
    if (read_only_)
        features_ |= bit(VIRTIO_BLK_F_RO);
    max_write_zeroes_sectors_ = kMaxSegmentSectors;
    max_discard_sectors_ =
        disk_.kind() == Disk::Kind::block_device ? kMaxBlockDiscardSectors : kMaxSegmentSectors;
    build_config_space();
}

BlkDevice::~BlkDevice() = default;

Result<std::unique_ptr<BlkDevice>> BlkDevice::create(const BlkConfig& config, Logger logger)
{
    if (config.null_size)
        return create(config, Disk::null(*config.null_size), std::move(logger));
    VL_TRY_ASSIGN(Disk disk, Disk::open(config.path, config.read_only, config.direct, logger));
    return create(config, std::move(disk), std::move(logger));
}

Result<std::unique_ptr<BlkDevice>> BlkDevice::create(const BlkConfig& config, Disk disk,
                                                     Logger logger)
{
    VL_TRY(check_serial(config.serial));
    const IoEngineChoice engine = choose_io_engine(config.io_engine, disk.kind(), disk.fs_type());
    std::unique_ptr<BlkDevice> device(
        new BlkDevice(config, std::move(disk), engine.engine, std::move(logger)));
    const Disk& d = device->disk_;
    // Fail at start, with the reason, rather than at the first queue.
    if (engine.engine == IoEngine::uring)
        VL_TRY(IoRing::create(1));
    if (d.kind() != Disk::Kind::null && !config.read_only) {
        VL_TRY_ASSIGN(device->zeros_,
                      Mapping::map(-1, kZeroChunk, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS));
    }
    const char* kind = d.kind() == Disk::Kind::null           ? "null disk"
                       : d.kind() == Disk::Kind::block_device ? "block device"
                                                              : "image file";
    device->logger_.info("{} {}: {} sectors ({} MiB), {}-byte blocks, {}{}{} queue(s) of up to {} "
                         "entries, serial '{}'",
                         kind, d.path(), d.capacity_sectors(), d.capacity() >> 20,
                         d.logical_block_size(), config.read_only ? "read-only, " : "",
                         d.direct() ? "O_DIRECT, " : "", config.num_queues, config.queue_size,
                         config.serial);
    device->logger_.info("I/O engine {} — {}",
                         d.kind() == Disk::Kind::null ? "none" : io_engine_name(engine.engine),
                         engine.reason);
    return device;
}

void BlkDevice::build_config_space()
{
    virtio_blk_config c{};
    c.capacity = htole64(disk_.capacity_sectors());
    c.seg_max = htole32(queue_size_ - 2);
    c.blk_size = htole32(disk_.logical_block_size());
    c.num_queues = htole16(static_cast<std::uint16_t>(num_queues_));
    c.max_discard_sectors = htole32(max_discard_sectors_);
    c.max_discard_seg = htole32(kMaxSegments);
    c.discard_sector_alignment = htole32(disk_.logical_block_size() / kSectorSize);
    c.max_write_zeroes_sectors = htole32(max_write_zeroes_sectors_);
    c.max_write_zeroes_seg = htole32(kMaxSegments);
    c.write_zeroes_may_unmap = 1;
    config_space_.resize(kConfigSize);
    std::memcpy(config_space_.data(), &c, kConfigSize);
}

std::uint64_t BlkDevice::protocol_features() const
{
    return vhost_user::bit(vhost_user::ProtocolFeature::config);
}

Result<std::vector<std::byte>> BlkDevice::read_config(std::uint32_t offset, std::uint32_t size)
{
    return backend::slice_config(config_space_, offset, size, "virtio-blk");
}

Status BlkDevice::write_config(std::uint32_t offset, std::span<const std::byte> data)
{
    return Error(fmt::format("config write of {} bytes at offset {}: the virtio-blk config space "
                             "is read-only (VIRTIO_BLK_F_CONFIG_WCE is not offered)",
                             data.size(), offset),
                 EPERM);
}

Status BlkDevice::queue_started(backend::QueueContext& ctx)
{
    auto queue = std::make_unique<Queue>(*this, ctx);
    VL_TRY(queue->start());
    queues_[ctx.index()] = std::move(queue);
    return ok_status();
}

Status BlkDevice::process_queue(backend::QueueContext& ctx)
{
    Queue* queue = queues_[ctx.index()].get();
    if (queue == nullptr)
        return Error(fmt::format("queue {} was not started", ctx.index()), EINVAL);
    return queue->process();
}

Status BlkDevice::handle_event(backend::QueueContext& ctx, std::uint64_t token)
{
    Queue* queue = queues_[ctx.index()].get();
    if (queue == nullptr || token != kRingToken)
        return ok_status();
    return queue->on_ring_event();
}

void BlkDevice::queue_stopped(backend::QueueContext& ctx)
{
    std::unique_ptr<Queue>& queue = queues_[ctx.index()];
    if (!queue)
        return;
    queue->stop();
    queue.reset(); // closes the io_uring
}

} // namespace vl::blk
