// SPDX-License-Identifier: Apache-2.0
// vl-read-rate: how fast a character device (/dev/hwrng, /dev/urandom)
// delivers bytes. A thread reads blocks in a loop; the main thread stops
// the count after SECONDS and prints bytes, MB/s and the longest time one
// read(2) took (a device that stalls shows here), then exits even if the
// reader is still blocked in the driver (dd cannot be stopped there: a
// read waiting in the kernel only ends on a fatal signal).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace
{

constexpr const char* kUsage = R"(Usage: vl-read-rate FILE SECONDS [BLOCK_BYTES]

Reads FILE in blocks of BLOCK_BYTES (default 65536) for SECONDS and prints
one JSON object: bytes, seconds, MB/s (10^6 bytes/s), reads, and the
longest single read in ms (a read still blocked at the end counts with its
time so far). Exit status: 0 measured, 1 error, 2 bad usage.
)";

using Clock = std::chrono::steady_clock;

std::atomic<unsigned long long> g_bytes{0};
std::atomic<unsigned long long> g_reads{0};
std::atomic<long long> g_longest_us{0};
std::atomic<long long> g_read_started_us{-1}; // of the read in progress
std::atomic<int> g_error{0};
Clock::time_point g_start;

long long since_start_us()
{
    return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - g_start).count();
}

void reader(int fd, std::size_t block)
{
    std::vector<char> buf(block);
    for (;;) {
        const long long begin = since_start_us();
        g_read_started_us.store(begin);
        ssize_t n = read(fd, buf.data(), buf.size());
        const long long took = since_start_us() - begin;
        g_read_started_us.store(-1);
        if (took > g_longest_us.load())
            g_longest_us.store(took);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            g_error.store(n == 0 ? -1 : errno);
            return;
        }
        g_bytes.fetch_add(static_cast<unsigned long long>(n));
        g_reads.fetch_add(1);
    }
}

} // namespace

int main(int argc, char** argv)
{
    if (argc >= 2 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0)) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    if (argc < 3 || argc > 4) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    char* end = nullptr;
    const double seconds = std::strtod(argv[2], &end);
    if (*end != '\0' || !(seconds > 0)) {
        std::fprintf(stderr, "vl-read-rate: bad SECONDS '%s'\n", argv[2]);
        return 2;
    }
    unsigned long block = 65536;
    if (argc == 4) {
        block = std::strtoul(argv[3], &end, 10);
        if (*end != '\0' || block == 0 || block > (64UL << 20)) {
            std::fprintf(stderr, "vl-read-rate: bad BLOCK_BYTES '%s'\n", argv[3]);
            return 2;
        }
    }
    int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        std::fprintf(stderr, "vl-read-rate: open %s: %s\n", argv[1], std::strerror(errno));
        return 1;
    }
    g_start = Clock::now();
    std::thread(reader, fd, static_cast<std::size_t>(block)).detach();
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    const unsigned long long bytes = g_bytes.load();
    const unsigned long long reads = g_reads.load();
    const double elapsed = static_cast<double>(since_start_us()) / 1e6;
    long long longest = g_longest_us.load();
    const long long started = g_read_started_us.load();
    if (started >= 0 && since_start_us() - started > longest)
        longest = since_start_us() - started;
    const int error = g_error.load();
    if (error > 0) {
        std::fprintf(stderr, "vl-read-rate: read %s: %s\n", argv[1], std::strerror(error));
        std::fflush(stderr);
        _exit(1);
    }
    std::printf("{\"file\":\"%s\",\"bytes\":%llu,\"seconds\":%.3f,\"mbps\":%.3f,\"reads\":%llu,"
                "\"block\":%lu,\"longest_read_ms\":%.1f}\n",
                argv[1], bytes, elapsed, static_cast<double>(bytes) / elapsed / 1e6, reads, block,
                static_cast<double>(longest) / 1e3);
    std::fflush(stdout);
    // The reader may be blocked in the driver: leave without joining it.
    _exit(0);
}
