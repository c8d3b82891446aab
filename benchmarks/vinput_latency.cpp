// SPDX-License-Identifier: Apache-2.0
// vinput-latency: input event latency, injection to arrival on an evdev
// node. Each sample injects one key event (KEY_A, press and release in
// turn) followed by SYN_REPORT, then reads the evdev node until that
// SYN_REPORT arrives. Two ways to inject:
//   uinput   through /dev/uinput (the kernel-only baseline: write(2) on
//            uinput delivers the events synchronously)
//   fifo     as a text line written into vhost-user-input's --synthetic
//            FIFO: the line travels through the back-end, the virtqueue,
//            the transport's doorbell and virtio_input to evdev.
// Reported: p50/p99/mean/max of the end-to-end time (clock_gettime before
// the write to the read(2) that returned the SYN_REPORT) and of the time
// to the kernel's timestamp of the event (the evdev clock is switched to
// CLOCK_MONOTONIC, so this is when the input core got the event).
#include <fcntl.h>
#include <linux/input.h>
#include <linux/uinput.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace
{

constexpr const char* kUsage = R"(Usage: vinput-latency uinput [OPTIONS]
       vinput-latency fifo --fifo PATH --device /dev/input/eventN [OPTIONS]

Measures the latency of key events from injection to their arrival on an
evdev node: through a uinput device it creates (uinput), or through the
--synthetic FIFO of vhost-user-input and the virtio-input device that
/dev/input/eventN is (fifo). Prints p50, p99, mean and max in us.

Options:
  -n, --events N       samples (default 1000), after the warm-up
      --warmup N       samples to discard first (default 20)
      --timeout-ms MS  wait at most MS for each event (default 2000)
      --fifo PATH      the FIFO vhost-user-input reads (fifo mode)
      --device PATH    the evdev node of that device (fifo mode)
      --json           print one JSON object instead of text
  -h, --help           this help
Exit status: 0 measured (a lost event is reported in "lost"), 1 error or
every event lost, 2 bad usage.
)";

struct Options {
    std::string mode;
    std::string fifo;
    std::string device;
    int events = 1000;
    int warmup = 20;
    int timeout_ms = 2000;
    bool json = false;
};

double now_us()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

int die(const std::string& message)
{
    std::fprintf(stderr, "vinput-latency: %s\n", message.c_str());
    return 1;
}

std::string errno_text(const std::string& what)
{
    return what + ": " + std::strerror(errno);
}

// Waits up to timeout_ms for the SYN_REPORT after an EV_KEY KEY_A event;
// returns the kernel timestamp of the key event (us, CLOCK_MONOTONIC), or
// nullopt on timeout. Other events are skipped.
std::optional<double> read_until_syn(int fd, int timeout_ms, std::string& error)
{
    std::optional<double> key_time;
    const double deadline = now_us() + timeout_ms * 1000.0;
    for (;;) {
        input_event ev[16];
        ssize_t n = read(fd, ev, sizeof(ev));
        if (n < 0 && errno == EAGAIN) {
            int left = static_cast<int>((deadline - now_us()) / 1000.0);
            if (left <= 0)
                return std::nullopt;
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, left) < 0 && errno != EINTR) {
                error = errno_text("poll on the evdev node");
                return std::nullopt;
            }
            continue;
        }
        if (n < 0) {
            error = errno_text("reading the evdev node");
            return std::nullopt;
        }
        for (std::size_t i = 0; i < static_cast<std::size_t>(n) / sizeof(input_event); ++i) {
            const input_event& e = ev[i];
            if (e.type == EV_KEY && e.code == KEY_A)
                key_time = static_cast<double>(e.input_event_sec) * 1e6 +
                           static_cast<double>(e.input_event_usec);
            else if (e.type == EV_SYN && e.code == SYN_REPORT && key_time)
                return key_time;
        }
    }
}

// Discards whatever the node already holds.
void drain(int fd)
{
    input_event ev[16];
    while (read(fd, ev, sizeof(ev)) > 0) {
    }
}

int open_evdev(const std::string& path, std::string& error)
{
    int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        error = errno_text("open " + path);
        return -1;
    }
    int clock = CLOCK_MONOTONIC;
    if (ioctl(fd, EVIOCSCLOCKID, &clock) < 0) {
        error = errno_text("EVIOCSCLOCKID on " + path);
        close(fd);
        return -1;
    }
    return fd;
}

// The evdev node of the uinput device whose sysfs name is `sysname`.
std::optional<std::string> uinput_node(const std::string& sysname)
{
    std::filesystem::path dir = "/sys/devices/virtual/input/" + sysname;
    for (int attempt = 0; attempt < 200; ++attempt) {
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
            std::string name = entry.path().filename().string();
            if (name.rfind("event", 0) == 0) {
                std::string node = "/dev/input/" + name;
                if (std::filesystem::exists(node))
                    return node;
            }
        }
        usleep(10000);
    }
    return std::nullopt;
}

struct Injector {
    virtual ~Injector() = default;
    virtual bool inject(int value, std::string& error) = 0;
};

struct UinputInjector final : Injector {
    int fd = -1;
    ~UinputInjector() override
    {
        if (fd >= 0) {
            ioctl(fd, UI_DEV_DESTROY);
            close(fd);
        }
    }
    bool inject(int value, std::string& error) override
    {
        input_event ev[2]{};
        ev[0].type = EV_KEY;
        ev[0].code = KEY_A;
        ev[0].value = value;
        ev[1].type = EV_SYN;
        ev[1].code = SYN_REPORT;
        if (write(fd, ev, sizeof(ev)) != static_cast<ssize_t>(sizeof(ev))) {
            error = errno_text("write to /dev/uinput");
            return false;
        }
        return true;
    }
};

struct FifoInjector final : Injector {
    int fd = -1;
    ~FifoInjector() override
    {
        if (fd >= 0)
            close(fd);
    }
    bool inject(int value, std::string& error) override
    {
        const std::string line = "key KEY_A " + std::to_string(value) + "\nsyn\n";
        if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
            error = errno_text("write to the FIFO");
            return false;
        }
        return true;
    }
};

double percentile(const std::vector<double>& sorted, double p)
{
    if (sorted.empty())
        return 0;
    auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

double mean(const std::vector<double>& v)
{
    double sum = 0;
    for (double x : v)
        sum += x;
    return v.empty() ? 0 : sum / static_cast<double>(v.size());
}

std::optional<std::string> parse(int argc, char** argv, Options& o)
{
    std::vector<std::string_view> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
        std::string_view a = args[i];
        auto value = [&]() -> std::optional<std::string> {
            if (i + 1 >= args.size())
                return std::nullopt;
            return std::string(args[++i]);
        };
        auto count = [&](int& out, int min) {
            auto v = value();
            if (!v)
                return false;
            char* end = nullptr;
            long n = std::strtol(v->c_str(), &end, 10);
            if (end == v->c_str() || *end != '\0' || n < min || n > 10000000)
                return false;
            out = static_cast<int>(n);
            return true;
        };
        if (a == "-h" || a == "--help")
            return std::string("help");
        if (a == "uinput" || a == "fifo") {
            o.mode = a;
        } else if (a == "-n" || a == "--events") {
            if (!count(o.events, 1))
                return std::string("--events needs a positive number");
        } else if (a == "--warmup") {
            if (!count(o.warmup, 0))
                return std::string("--warmup needs a number");
        } else if (a == "--timeout-ms") {
            if (!count(o.timeout_ms, 1))
                return std::string("--timeout-ms needs a positive number");
        } else if (a == "--fifo") {
            auto v = value();
            if (!v)
                return std::string("--fifo needs a path");
            o.fifo = *v;
        } else if (a == "--device") {
            auto v = value();
            if (!v)
                return std::string("--device needs a path");
            o.device = *v;
        } else if (a == "--json") {
            o.json = true;
        } else {
            return "unknown argument '" + std::string(a) + "'";
        }
    }
    if (o.mode.empty())
        return std::string("say uinput or fifo");
    if (o.mode == "fifo" && (o.fifo.empty() || o.device.empty()))
        return std::string("fifo needs --fifo PATH and --device /dev/input/eventN");
    return std::nullopt;
}

} // namespace

int main(int argc, char** argv)
{
    Options o;
    if (auto problem = parse(argc, argv, o)) {
        if (*problem == "help") {
            std::fputs(kUsage, stdout);
            return 0;
        }
        std::fprintf(stderr, "vinput-latency: %s\nTry 'vinput-latency --help'.\n",
                     problem->c_str());
        return 2;
    }

    std::string error;
    std::unique_ptr<Injector> injector;
    std::string device = o.device;
    if (o.mode == "uinput") {
        auto u = std::make_unique<UinputInjector>();
        u->fd = open("/dev/uinput", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (u->fd < 0)
            return die(errno_text("open /dev/uinput (modprobe uinput?)"));
        uinput_setup setup{};
        setup.id.bustype = BUS_VIRTUAL;
        std::snprintf(setup.name, sizeof(setup.name), "vinput-latency");
        if (ioctl(u->fd, UI_SET_EVBIT, EV_KEY) < 0 || ioctl(u->fd, UI_SET_KEYBIT, KEY_A) < 0 ||
            ioctl(u->fd, UI_DEV_SETUP, &setup) < 0 || ioctl(u->fd, UI_DEV_CREATE) < 0)
            return die(errno_text("creating the uinput device"));
        char sysname[64] = {};
        if (ioctl(u->fd, UI_GET_SYSNAME(sizeof(sysname) - 1), sysname) < 0)
            return die(errno_text("UI_GET_SYSNAME"));
        auto node = uinput_node(sysname);
        if (!node)
            return die(std::string("no evdev node appeared for uinput device ") + sysname);
        device = *node;
        injector = std::move(u);
    } else {
        auto f = std::make_unique<FifoInjector>();
        // Non-blocking open: fails (ENXIO) instead of waiting for ever when
        // no back-end reads the FIFO; the writes themselves block.
        f->fd = open(o.fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (f->fd < 0)
            return die(errno_text("open " + o.fifo));
        if (fcntl(f->fd, F_SETFL, 0) < 0)
            return die(errno_text("fcntl on " + o.fifo));
        injector = std::move(f);
    }
    int evdev = open_evdev(device, error);
    if (evdev < 0)
        return die(error);
    drain(evdev);

    std::vector<double> total;
    std::vector<double> to_kernel;
    int lost = 0;
    int value = 1;
    for (int i = 0; i < o.warmup + o.events; ++i, value ^= 1) {
        const double start = now_us();
        if (!injector->inject(value, error))
            return die(error);
        auto stamp = read_until_syn(evdev, o.timeout_ms, error);
        const double end = now_us();
        if (!error.empty())
            return die(error);
        if (!stamp) {
            // The device may have missed the event (and kept its key state):
            // start the next sample with the other value anyway.
            if (i >= o.warmup)
                ++lost;
            continue;
        }
        if (i < o.warmup)
            continue;
        total.push_back(end - start);
        to_kernel.push_back(*stamp - start);
    }
    close(evdev);
    std::sort(total.begin(), total.end());
    std::sort(to_kernel.begin(), to_kernel.end());
    if (total.empty())
        return die("every event was lost (waited " + std::to_string(o.timeout_ms) +
                   " ms for each)");
    if (o.json) {
        std::printf("{\"mode\":\"%s\",\"device\":\"%s\",\"events\":%zu,\"lost\":%d,"
                    "\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"max_us\":%.1f,"
                    "\"kernel_p50_us\":%.1f,\"kernel_p99_us\":%.1f}\n",
                    o.mode.c_str(), device.c_str(), total.size(), lost, percentile(total, 50),
                    percentile(total, 99), mean(total), total.back(), percentile(to_kernel, 50),
                    percentile(to_kernel, 99));
    } else {
        std::printf("%s via %s: %zu events, %d lost\n"
                    "  injection to read(2):    p50 %.1f us  p99 %.1f us  mean %.1f us  max "
                    "%.1f us\n"
                    "  injection to kernel stamp: p50 %.1f us  p99 %.1f us\n",
                    device.c_str(), o.mode.c_str(), total.size(), lost, percentile(total, 50),
                    percentile(total, 99), mean(total), total.back(), percentile(to_kernel, 50),
                    percentile(to_kernel, 99));
    }
    return 0;
}
