// SPDX-License-Identifier: Apache-2.0
// vl-evdev-read: prints the events an evdev node delivers, one
// "TYPE CODE VALUE" line each (decimal), so shell tests can compare what
// reached the kernel's input layer with what the back-end was told to send.
// It can also find the node of a device by name.
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace {

constexpr const char* kUsage = R"(Usage: vl-evdev-read [OPTIONS] DEVICE
       vl-evdev-read --find NAME

Prints events from the evdev node DEVICE as "TYPE CODE VALUE" lines (all
decimal, EV_SYN included) until COUNT events were read or TIMEOUT seconds
passed without one. With --find, prints the /dev/input/eventN whose device
name is NAME and exits (1 if there is none).

Options:
  -n, --count COUNT      stop after COUNT events (default: no limit)
  -t, --timeout SECONDS  stop after SECONDS without an event (default 10)
      --no-syn           do not print EV_SYN events (they are still counted)
      --find NAME        print the node of the device called NAME
  -h, --help             this help
Exit status: 0 if COUNT events were read (or no COUNT and the timeout
ended it), 1 if the timeout came first or on errors, 2 on bad usage.
)";

int find(const std::string& name)
{
    for (const auto& entry : std::filesystem::directory_iterator("/dev/input")) {
        if (entry.path().filename().string().rfind("event", 0) != 0)
            continue;
        int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        char buf[256] = {};
        bool match = ::ioctl(fd, EVIOCGNAME(sizeof(buf) - 1), buf) >= 0 && name == buf;
        ::close(fd);
        if (match) {
            std::printf("%s\n", entry.path().c_str());
            return 0;
        }
    }
    std::fprintf(stderr, "vl-evdev-read: no input device named '%s'\n", name.c_str());
    return 1;
}

} // namespace

int main(int argc, char** argv)
{
    long count = -1;
    int timeout_s = 10;
    bool syn = true;
    const char* device = nullptr;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "vl-evdev-read: %s wants a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (a == "-n" || a == "--count") {
            count = std::strtol(value(), nullptr, 10);
        } else if (a == "-t" || a == "--timeout") {
            timeout_s = static_cast<int>(std::strtol(value(), nullptr, 10));
        } else if (a == "--no-syn") {
            syn = false;
        } else if (a == "--find") {
            return find(value());
        } else if (!a.empty() && a[0] != '-' && !device) {
            device = argv[i];
        } else {
            std::fprintf(stderr, "vl-evdev-read: unexpected '%s' (see --help)\n", a.c_str());
            return 2;
        }
    }
    if (!device) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    int fd = ::open(device, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        std::fprintf(stderr, "vl-evdev-read: cannot open %s: %s\n", device, std::strerror(errno));
        return 1;
    }
    long seen = 0;
    while (count < 0 || seen < count) {
        pollfd pfd{fd, POLLIN, 0};
        int ready = ::poll(&pfd, 1, timeout_s * 1000);
        if (ready == 0)
            return count < 0 ? 0 : 1;
        if (ready < 0 && errno != EINTR)
            return 1;
        input_event ev{};
        while (::read(fd, &ev, sizeof(ev)) == static_cast<ssize_t>(sizeof(ev))) {
            ++seen;
            if (syn || ev.type != EV_SYN)
                std::printf("%u %u %d\n", ev.type, ev.code, ev.value);
            std::fflush(stdout);
            if (count >= 0 && seen >= count)
                break;
        }
    }
    return 0;
}
