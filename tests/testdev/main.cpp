// SPDX-License-Identifier: Apache-2.0
// vl-testdev: a test device that speaks the transport's uapi directly (no
// adapter, no vhost-user), to test the kernel module on its own and to
// simulate misbehaving devices.
#include <getopt.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>

#include <chrono>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "test_device.hpp"

namespace vl::testdev {
namespace {

constexpr const char* kUsage = R"(Usage: vl-testdev [OPTIONS]

Creates virtio devices in the virtio-loopback transport and serves them
itself through /dev/virtio-loopback (no adapter, no vhost-user), until
SIGTERM or SIGINT. For testing the kernel module.

Device (one of):
      --rng[=BYTE]        an rng whose bytes are all BYTE (default 0x5a)
      --blk=MIB           a RAM disk of MIB MiB
Options:
  -q, --queues=N          queues of the disk (default 1)
  -s, --queue-size=N      ring size (default 128)
      --size-max=BYTES    offer VIRTIO_BLK_F_SIZE_MAX: the driver's data segments
                          are at most BYTES (with 4096 and --queue-size=256,
                          I/O of 1016 KiB is 254 segments: an indirect table
                          of exactly one page)
  -n, --count=N           create N devices (default 1)
      --cycles=N          create a device, wait until its driver is ready,
                          remove it; N times; then exit
      --zero-copy         create the devices with VIRTIO_LOOPBACK_CREATE_ZERO_COPY:
                          buffers of whole pages are the driver's own pages,
                          mapped only while the device owns the request
      --ready-file=PATH   write PATH once every driver is ready
      --no-reply          never answer the kernel's messages
      --stall-after=N     stop completing requests after N of them
      --sabotage=MODE     misbehave once --sabotage-after requests were served.
                          Ring rules: bad-used-id, oversize-len, double-use,
                          rewrite-desc, garbage-used-idx, call-storm,
                          forge-driver-used.
                          Zero-copy (each waits for a chain with a data buffer
                          of whole pages, e.g. fio --direct=1 --bs=4k):
                          touch-after-complete  read the buffer once its
                                      completion is published (SIGBUS expected)
                          write-readonly  write a write request's data buffer
                                      (SIGBUS expected)
                          keep-access attempts on a read request's buffer,
                          each must fail with EFAULT (or EEXIST: a page table
                          entry without a page); the request is then
                          completed and serving goes on:
                          odirect     pread with O_DIRECT from --direct-file
                                      into it
                          io-uring-register  io_uring buffer registration
                          vmsplice    vmsplice it into a pipe
                          process-vm-readv  a forked child reads it with
                                      process_vm_readv
      --sabotage-after=N  (default 0)
      --direct-file=PATH  what --sabotage=odirect reads with O_DIRECT (a block
                          device such as a loop device: 6.1's tmpfs refuses
                          O_DIRECT)
  -l, --log-level=LEVEL   error|warn|info|debug|trace (default info)
  -h, --help              this help

Exit status: 0 after SIGTERM/SIGINT or finished cycles, 1 on an error,
2 on bad usage; after SIGTERM/SIGINT, 3 if a zero-copy sabotage got through
(isolation broken: logged "SUCCEEDED"), 4 if a keep-access attempt failed
otherwise than with EFAULT or EEXIST, or could not be made.
)";

struct Options {
    enum class Kind { none, rng, blk } kind = Kind::none;
    std::uint8_t pattern = 0x5a;
    std::uint64_t blk_mib = 0;
    std::uint32_t queues = 1;
    std::uint32_t queue_size = 128;
    std::uint32_t size_max = 0;
    std::uint32_t count = 1;
    std::uint32_t cycles = 0;
    bool zero_copy = false;
    std::string ready_file;
    Misbehaviour misbehaviour;
    LogLevel log_level = LogLevel::info;
};

std::uint64_t parse_number(const char* option, const char* text)
{
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 0);
    if (errno || end == text || *end) {
        std::fprintf(stderr, "vl-testdev: %s wants a number, got '%s'\n", option, text);
        std::exit(2);
    }
    return v;
}

Options parse(int argc, char** argv)
{
    enum {
        kRng = 1000,
        kBlk,
        kCycles,
        kZeroCopy,
        kReady,
        kNoReply,
        kStall,
        kSabotage,
        kSabotageAfter,
        kDirectFile,
        kSizeMax,
    };
    static const option longopts[] = {
        {"rng", optional_argument, nullptr, kRng},
        {"blk", required_argument, nullptr, kBlk},
        {"queues", required_argument, nullptr, 'q'},
        {"queue-size", required_argument, nullptr, 's'},
        {"size-max", required_argument, nullptr, kSizeMax},
        {"count", required_argument, nullptr, 'n'},
        {"cycles", required_argument, nullptr, kCycles},
        {"zero-copy", no_argument, nullptr, kZeroCopy},
        {"ready-file", required_argument, nullptr, kReady},
        {"no-reply", no_argument, nullptr, kNoReply},
        {"stall-after", required_argument, nullptr, kStall},
        {"sabotage", required_argument, nullptr, kSabotage},
        {"sabotage-after", required_argument, nullptr, kSabotageAfter},
        {"direct-file", required_argument, nullptr, kDirectFile},
        {"log-level", required_argument, nullptr, 'l'},
        {"help", no_argument, nullptr, 'h'},
        {nullptr, 0, nullptr, 0},
    };
    Options o;
    int c;
    while ((c = getopt_long(argc, argv, "q:s:n:l:h", longopts, nullptr)) != -1) {
        switch (c) {
        case kRng:
            o.kind = Options::Kind::rng;
            if (optarg)
                o.pattern = static_cast<std::uint8_t>(parse_number("--rng", optarg));
            break;
        case kBlk:
            o.kind = Options::Kind::blk;
            o.blk_mib = parse_number("--blk", optarg);
            break;
        case 'q': o.queues = static_cast<std::uint32_t>(parse_number("--queues", optarg)); break;
        case 's': o.queue_size = static_cast<std::uint32_t>(parse_number("--queue-size", optarg)); break;
        case kSizeMax:
            o.size_max = static_cast<std::uint32_t>(parse_number("--size-max", optarg));
            break;
        case 'n': o.count = static_cast<std::uint32_t>(parse_number("--count", optarg)); break;
        case kCycles: o.cycles = static_cast<std::uint32_t>(parse_number("--cycles", optarg)); break;
        case kZeroCopy: o.zero_copy = true; break;
        case kReady: o.ready_file = optarg; break;
        case kNoReply: o.misbehaviour.no_reply = true; break;
        case kStall: o.misbehaviour.stall_after = parse_number("--stall-after", optarg); break;
        case kSabotage: {
            auto mode = parse_sabotage(optarg);
            if (!mode) {
                std::fprintf(stderr, "vl-testdev: unknown --sabotage '%s' (%s)\n", optarg,
                             kSabotageNames);
                std::exit(2);
            }
            o.misbehaviour.sabotage = *mode;
            break;
        }
        case kSabotageAfter:
            o.misbehaviour.sabotage_after = parse_number("--sabotage-after", optarg);
            break;
        case kDirectFile: o.misbehaviour.direct_file = optarg; break;
        case 'l': {
            auto level = parse_log_level(optarg);
            if (!level) {
                std::fprintf(stderr, "vl-testdev: unknown log level '%s'\n", optarg);
                std::exit(2);
            }
            o.log_level = *level;
            break;
        }
        case 'h': std::fputs(kUsage, stdout); std::exit(0);
        default: std::fputs(kUsage, stderr); std::exit(2);
        }
    }
    if (optind != argc || o.kind == Options::Kind::none) {
        std::fputs("vl-testdev: choose --rng or --blk (see --help)\n", stderr);
        std::exit(2);
    }
    if (o.misbehaviour.sabotage == Sabotage::odirect && o.misbehaviour.direct_file.empty()) {
        std::fputs("vl-testdev: --sabotage=odirect needs --direct-file=PATH, a file or block "
                   "device to read with O_DIRECT\n",
                   stderr);
        std::exit(2);
    }
    return o;
}

std::unique_ptr<RequestHandler> make_handler(const Options& o)
{
    if (o.kind == Options::Kind::rng)
        return make_rng(o.pattern);
    return make_ram_blk(o.blk_mib << 20, o.queues, o.queue_size, o.size_max);
}

// What an epoll event refers to.
struct Source {
    TestDevice* device;
    std::int64_t queue; // -1: the control file
};

class Loop {
public:
    Loop(const Options& options, Logger log) : options_(options), log_(std::move(log)) {}

    Status init()
    {
        epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
        if (!epoll_)
            return Error::from_errno("epoll_create1");
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        ::sigprocmask(SIG_BLOCK, &mask, nullptr);
        signals_.reset(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!signals_)
            return Error::from_errno("signalfd");
        return watch(signals_.get(), nullptr);
    }

    Status add_device()
    {
        VL_TRY_ASSIGN(auto dev,
                      TestDevice::create(make_handler(options_), options_.zero_copy,
                                         options_.misbehaviour,
                                         log_.child("dev" + std::to_string(devices_.size()))));
        auto* raw = dev.get();
        sources_.push_back(std::make_unique<Source>(Source{raw, -1}));
        VL_TRY(watch(raw->control_fd(), sources_.back().get()));
        for (std::uint32_t q = 0; q < raw->num_queues(); ++q) {
            sources_.push_back(std::make_unique<Source>(Source{raw, q}));
            VL_TRY(watch(raw->kick_fd(q), sources_.back().get()));
        }
        VL_TRY(raw->start());
        devices_.push_back(std::move(dev));
        return ok_status();
    }

    void remove_devices()
    {
        devices_.clear(); // closes the control files: the kernel removes them
        sources_.clear();
    }

    // What the zero-copy sabotages found, worst first.
    [[nodiscard]] Finding finding() const
    {
        Finding worst = Finding::none;
        for (const auto& d : devices_)
            if (d->finding() == Finding::isolation_broken ||
                (d->finding() == Finding::unexpected && worst == Finding::none))
                worst = d->finding();
        return worst;
    }

    [[nodiscard]] bool all_ready() const
    {
        for (const auto& d : devices_)
            if (!d->driver_ok())
                return false;
        return !devices_.empty();
    }

    // Runs until a signal (false), `until` holds (true) or the timeout.
    Result<bool> run(const std::function<bool()>& until, int timeout_ms = -1)
    {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (!until()) {
            int wait = timeout_ms < 0 ? -1 : static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
            if (timeout_ms >= 0 && wait <= 0)
                return Error("timed out waiting for the driver", ETIMEDOUT);
            epoll_event events[16];
            int n = ::epoll_wait(epoll_.get(), events, 16, wait);
            if (n < 0 && errno != EINTR)
                return Error::from_errno("epoll_wait");
            for (int i = 0; i < n; ++i) {
                auto* src = static_cast<Source*>(events[i].data.ptr);
                if (!src)
                    return false; // SIGTERM or SIGINT
                Status s = src->queue < 0 ? src->device->on_control()
                                          : src->device->on_kick(static_cast<std::uint32_t>(src->queue));
                if (!s.ok())
                    return s.error();
            }
            maybe_write_ready_file();
        }
        return true;
    }

private:
    Status watch(int fd, Source* src)
    {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = src;
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
            return Error::from_errno("epoll_ctl");
        return ok_status();
    }

    void maybe_write_ready_file()
    {
        if (ready_written_ || options_.ready_file.empty() || !all_ready())
            return;
        std::ofstream(options_.ready_file) << devices_.size() << " ready\n";
        ready_written_ = true;
        log_.info("{} device(s) ready", devices_.size());
    }

    const Options& options_;
    Logger log_;
    UniqueFd epoll_;
    UniqueFd signals_;
    std::vector<std::unique_ptr<TestDevice>> devices_;
    std::vector<std::unique_ptr<Source>> sources_;
    bool ready_written_ = false;
};

int run(const Options& options)
{
    Logger log("vl-testdev", options.log_level);
    Loop loop(options, log);
    if (Status s = loop.init(); !s.ok()) {
        log.error("{}", s.error().message());
        return 1;
    }
    if (options.cycles) {
        for (std::uint32_t i = 0; i < options.cycles; ++i) {
            if (Status s = loop.add_device(); !s.ok()) {
                log.error("cycle {}: {}", i, s.error().message());
                return 1;
            }
            auto r = loop.run([&] { return loop.all_ready(); }, 20000);
            if (!r.ok()) {
                log.error("cycle {}: {}", i, r.error().message());
                return 1;
            }
            loop.remove_devices();
            if (!*r)
                return 0;
        }
        log.info("{} create/remove cycles done", options.cycles);
        return 0;
    }
    for (std::uint32_t i = 0; i < options.count; ++i) {
        if (Status s = loop.add_device(); !s.ok()) {
            log.error("device {}: {}", i, s.error().message());
            return 1;
        }
    }
    auto r = loop.run([] { return false; });
    if (!r.ok()) {
        log.error("{}", r.error().message());
        return 1;
    }
    log.info("stopping: removing {} device(s)", options.count);
    switch (loop.finding()) {
    case Finding::isolation_broken:
        log.error("a zero-copy sabotage got through: isolation broken");
        return 3;
    case Finding::unexpected:
        log.error("a keep-access attempt failed with another error than EFAULT or EEXIST, or "
                  "could not be made");
        return 4;
    case Finding::none:
        break;
    }
    return 0;
}

} // namespace
} // namespace vl::testdev

int main(int argc, char** argv)
{
    return vl::testdev::run(vl::testdev::parse(argc, argv));
}
