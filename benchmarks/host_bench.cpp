// SPDX-License-Identifier: Apache-2.0
// vl-host-bench: drives a vhost-user-blk back-end with the user-space test
// driver (tests/driver, no VM, no kernel) and measures IOPS, MB/s and
// completion latency for the benchmark workloads. Used by benchmarks/run.sh
// to compare our vhost-user-blk with qemu-storage-daemon's on the host.
//
// One request is a header, the data and a status byte in the driver's guest
// memory; each slot of the queue depth owns its buffers for the whole run,
// so the loop allocates nothing. A workload keeps QD requests in flight for
// SECONDS, then stops submitting and drains.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "blk_driver.hpp"

namespace
{

using vl::Error;
using vl::Result;
using vl::Status;
using namespace vl::test_driver;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage = R"(Usage: vl-host-bench -s SOCKET [OPTIONS]

Drives the vhost-user-blk back-end on SOCKET with the user-space test
driver (no kernel involved) and prints one JSON object per workload:
IOPS, MB/s (10^6 bytes/s), p50/p99 completion latency (us) and, with
--backend-pid, the back-end's CPU time per I/O.

Options:
  -s, --socket PATH      the back-end's vhost-user socket (required)
  -w, --workload NAME    run NAME (repeatable; default: all, in this order):
                         randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32
                         seqread-128k-qd8 seqwrite-128k-qd8
                         seqread-1m-qd4 seqwrite-1m-qd4
  -t, --seconds S        time per workload (default 2)
      --size MIB         use the first MIB MiB of the disk (default 256, at
                         most its capacity)
      --queue-size N     virtqueue size (default 128)
      --backend-pid PID  also report the CPU time PID used per I/O
      --label TEXT       "label" field of every JSON object
  -l, --log-level L      error, warn, info (default warn), debug, trace
  -h, --help             this help
Exit status: 0 every workload ran, 1 a request or the back-end failed,
2 bad usage.
)";

struct Workload {
    std::string_view name;
    bool write;
    bool random;
    std::uint32_t block_size;
    std::uint32_t depth;
};

constexpr Workload kWorkloads[] = {
    {"randread-4k-qd1", false, true, 4096, 1},
    {"randread-4k-qd32", false, true, 4096, 32},
    {"randwrite-4k-qd32", true, true, 4096, 32},
    {"seqread-128k-qd8", false, false, 128 * 1024, 8},
    {"seqwrite-128k-qd8", true, false, 128 * 1024, 8},
    {"seqread-1m-qd4", false, false, 1024 * 1024, 4},
    {"seqwrite-1m-qd4", true, false, 1024 * 1024, 4},
};

struct Options {
    std::string socket;
    std::vector<const Workload*> workloads;
    double seconds = 2.0;
    std::uint64_t size_mib = 256;
    std::uint32_t queue_size = 128;
    std::optional<long> backend_pid;
    std::string label;
    vl::LogLevel log_level = vl::LogLevel::warn;
};

struct Slot {
    Buffer header;
    Buffer data;
    Buffer status;
    Clock::time_point submitted;
};

// CPU time (user + system) of a process from /proc/PID/stat, in seconds.
std::optional<double> process_cpu_seconds(long pid)
{
    std::ifstream in(fmt::format("/proc/{}/stat", pid));
    std::string line;
    if (!std::getline(in, line))
        return std::nullopt;
    // Fields after the command name (which may hold blanks) in parentheses.
    auto close = line.rfind(')');
    if (close == std::string::npos)
        return std::nullopt;
    std::istringstream fields(line.substr(close + 2));
    std::string field;
    unsigned long utime = 0;
    unsigned long stime = 0;
    for (int i = 3; fields >> field; ++i) { // field 3 is the state
        if (i == 14)
            utime = std::stoul(field);
        if (i == 15) {
            stime = std::stoul(field);
            return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
        }
    }
    return std::nullopt;
}

double own_cpu_seconds()
{
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval& tv) {
        return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
    };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// Nearest-rank percentile of sorted samples.
double percentile(const std::vector<double>& sorted, double p)
{
    if (sorted.empty())
        return 0;
    auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

class Runner
{
  public:
    Runner(BlkDriver& blk, const Options& options) : blk_(blk), options_(options)
    {
        std::uint64_t capacity = blk_.config().capacity_bytes();
        span_bytes_ = std::min(capacity, options_.size_mib << 20);
    }

    Result<std::string> run(const Workload& w)
    {
        if (span_bytes_ < w.block_size)
            return Error(fmt::format("the disk ({} bytes) is smaller than one request",
                                     span_bytes_));
        std::vector<Slot> slots(w.depth);
        for (Slot& slot : slots) {
            VL_TRY_ASSIGN(slot.header, blk_.driver().allocate(kBlkHeaderSize, 16));
            VL_TRY_ASSIGN(slot.data, blk_.driver().allocate(w.block_size, 4096));
            VL_TRY_ASSIGN(slot.status, blk_.driver().allocate(1, 1));
            if (w.write) // something that is not all zeroes
                for (std::size_t i = 0; i < slot.data.bytes().size(); ++i)
                    slot.data.bytes()[i] = static_cast<std::byte>(i * 131 + 7);
        }
        head_to_slot_.assign(65536, -1);
        next_offset_ = 0;
        std::vector<double> latencies;
        latencies.reserve(1 << 20);

        const auto cpu_backend_start =
            options_.backend_pid ? process_cpu_seconds(*options_.backend_pid) : std::nullopt;
        const double cpu_self_start = own_cpu_seconds();
        const auto start = Clock::now();
        const auto deadline =
            start + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(options_.seconds));
        std::uint32_t in_flight = 0;
        for (std::uint32_t i = 0; i < w.depth; ++i) {
            VL_TRY(submit(w, slots, static_cast<int>(i)));
            ++in_flight;
        }
        std::uint64_t ios = 0;
        auto last = start;
        while (in_flight > 0) {
            auto used = blk_.driver().wait_used(0, std::chrono::milliseconds(10000));
            if (!used)
                return used.error().wrap(std::string(w.name));
            const auto now = Clock::now();
            int index = head_to_slot_[used->head];
            if (index < 0)
                return Error(fmt::format("{}: the device returned head {}, which is not in flight",
                                         w.name, used->head));
            head_to_slot_[used->head] = -1;
            Slot& slot = slots[static_cast<std::size_t>(index)];
            auto status = std::to_integer<std::uint8_t>(slot.status.bytes()[0]);
            if (status != VIRTIO_BLK_S_OK)
                return Error(fmt::format("{}: request failed with status {}", w.name,
                                         blk_status_name(status)));
            latencies.push_back(std::chrono::duration<double, std::micro>(now - slot.submitted).count());
            ++ios;
            last = now;
            if (now < deadline) {
                VL_TRY(submit(w, slots, index));
            } else {
                --in_flight;
            }
        }
        const double elapsed = std::chrono::duration<double>(last - start).count();
        const double cpu_self = own_cpu_seconds() - cpu_self_start;
        std::optional<double> cpu_backend;
        if (cpu_backend_start) {
            if (auto end = process_cpu_seconds(*options_.backend_pid))
                cpu_backend = *end - *cpu_backend_start;
        }
        std::sort(latencies.begin(), latencies.end());
        const double iops = static_cast<double>(ios) / elapsed;
        std::string json = fmt::format(
            R"({{"label":"{}","workload":"{}","rw":"{}","bs":{},"qd":{},"seconds":{:.3f},)"
            R"("ios":{},"iops":{:.1f},"mbps":{:.2f},"lat_p50_us":{:.2f},"lat_p99_us":{:.2f},)"
            R"("driver_cpu_us_per_io":{:.3f})",
            options_.label, w.name, w.write ? (w.random ? "randwrite" : "write")
                                            : (w.random ? "randread" : "read"),
            w.block_size, w.depth, elapsed, ios, iops,
            iops * static_cast<double>(w.block_size) / 1e6, percentile(latencies, 50),
            percentile(latencies, 99), cpu_self * 1e6 / static_cast<double>(ios));
        if (cpu_backend)
            json += fmt::format(R"(,"backend_cpu_us_per_io":{:.3f})",
                                *cpu_backend * 1e6 / static_cast<double>(ios));
        json += "}";
        return json;
    }

  private:
    Status submit(const Workload& w, std::vector<Slot>& slots, int index)
    {
        Slot& slot = slots[static_cast<std::size_t>(index)];
        std::uint64_t offset;
        if (w.random) {
            rng_ ^= rng_ << 13;
            rng_ ^= rng_ >> 7;
            rng_ ^= rng_ << 17;
            offset = (rng_ % (span_bytes_ / w.block_size)) * w.block_size;
        } else {
            if (next_offset_ + w.block_size > span_bytes_)
                next_offset_ = 0;
            offset = next_offset_;
            next_offset_ += w.block_size;
        }
        auto header = encode_blk_header(w.write ? BlkRequestType::out : BlkRequestType::in,
                                        offset / kSectorSize);
        std::memcpy(slot.header.bytes().data(), header.data(), header.size());
        slot.status.bytes()[0] = std::byte{0xff};

        auto data = split_segments(slot.data.guest_addr(), w.block_size,
                                   blk_.config().size_max.value_or(0));
        std::vector<vl::virtq::GuestBuffer> readable{slot.header.whole()};
        std::vector<vl::virtq::GuestBuffer> writable;
        if (w.write)
            readable.insert(readable.end(), data.begin(), data.end());
        else
            writable = data;
        writable.push_back(slot.status.whole());

        slot.submitted = Clock::now();
        auto head = blk_.driver().submit(0, readable, writable);
        if (!head)
            return head.error().wrap(std::string(w.name));
        head_to_slot_[*head] = index;
        return vl::ok_status();
    }

    BlkDriver& blk_;
    const Options& options_;
    std::uint64_t span_bytes_ = 0;
    std::uint64_t next_offset_ = 0;
    std::uint64_t rng_ = 0x9e3779b97f4a7c15ULL;
    std::vector<int> head_to_slot_;
};

std::optional<std::string> parse_options(int argc, char** argv, Options& o)
{
    std::vector<std::string_view> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view a = args[i];
        auto value = [&]() -> std::optional<std::string> {
            if (i + 1 >= args.size())
                return std::nullopt;
            return std::string(args[++i]);
        };
        auto number = [&](double& out) {
            auto v = value();
            if (!v)
                return false;
            char* end = nullptr;
            out = std::strtod(v->c_str(), &end);
            return end != v->c_str() && *end == '\0' && out > 0;
        };
        double n = 0;
        if (a == "-h" || a == "--help") {
            return std::string("help");
        } else if (a == "-s" || a == "--socket") {
            auto v = value();
            if (!v)
                return std::string("--socket needs a path");
            o.socket = *v;
        } else if (a == "-w" || a == "--workload") {
            auto v = value();
            auto it = std::find_if(std::begin(kWorkloads), std::end(kWorkloads),
                                   [&](const Workload& w) { return v && w.name == *v; });
            if (it == std::end(kWorkloads))
                return fmt::format("unknown workload '{}'", v.value_or(""));
            o.workloads.push_back(&*it);
        } else if (a == "-t" || a == "--seconds") {
            if (!number(o.seconds))
                return std::string("--seconds needs a positive number");
        } else if (a == "--size") {
            if (!number(n))
                return std::string("--size needs a positive number of MiB");
            o.size_mib = static_cast<std::uint64_t>(n);
        } else if (a == "--queue-size") {
            if (!number(n) || n > 32768)
                return std::string("--queue-size needs a power of two up to 32768");
            o.queue_size = static_cast<std::uint32_t>(n);
        } else if (a == "--backend-pid") {
            if (!number(n))
                return std::string("--backend-pid needs a process id");
            o.backend_pid = static_cast<long>(n);
        } else if (a == "--label") {
            auto v = value();
            if (!v)
                return std::string("--label needs a text");
            o.label = *v;
        } else if (a == "-l" || a == "--log-level") {
            auto v = value();
            auto level = v ? vl::parse_log_level(*v) : std::nullopt;
            if (!level)
                return std::string("--log-level needs error, warn, info, debug or trace");
            o.log_level = *level;
        } else {
            return fmt::format("unknown argument '{}'", a);
        }
    }
    if (o.socket.empty())
        return std::string("-s SOCKET is required");
    if (o.workloads.empty())
        for (const Workload& w : kWorkloads)
            o.workloads.push_back(&w);
    return std::nullopt;
}

} // namespace

int main(int argc, char** argv)
{
    Options options;
    if (auto problem = parse_options(argc, argv, options)) {
        if (*problem == "help") {
            std::fputs(kUsage, stdout);
            return 0;
        }
        fmt::print(stderr, "vl-host-bench: {}\nTry 'vl-host-bench --help'.\n", *problem);
        return 2;
    }
    BlkOptions blk_options;
    blk_options.queue_count = 1;
    blk_options.queue_size = options.queue_size;
    blk_options.connect.memory_bytes = std::uint64_t{128} << 20;
    blk_options.request_timeout = std::chrono::milliseconds(10000);
    auto blk = BlkDriver::open(options.socket, blk_options,
                               vl::Logger("vl-host-bench", options.log_level));
    if (!blk) {
        fmt::print(stderr, "vl-host-bench: {}\n", blk.error().message());
        return 1;
    }
    Runner runner(*blk, options);
    int status = 0;
    for (const Workload* w : options.workloads) {
        auto line = runner.run(*w);
        if (!line) {
            fmt::print(stderr, "vl-host-bench: {}\n", line.error().message());
            status = 1;
            break;
        }
        fmt::print("{}\n", *line);
        std::fflush(stdout);
    }
    if (auto stopped = blk->driver().stop(); !stopped && status == 0) {
        fmt::print(stderr, "vl-host-bench: stopping the queues: {}\n", stopped.error().message());
        status = 1;
    }
    return status;
}
