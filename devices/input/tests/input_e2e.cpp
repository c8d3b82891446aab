// SPDX-License-Identifier: Apache-2.0
// vhost-user-input end to end: the program itself, started on a temporary
// socket, driven by the user-space test driver (tests/driver) as its
// front-end, both as a library and as the vl-test-driver tool.
//
// - command line: --help, --print-capabilities, exit codes;
// - synthetic source: the config the driver reads, lines written into the
//   FIFO arriving as exactly those events, events waiting for buffers and
//   for the front-end, status events, a front-end killed mid-stream;
// - evdev passthrough of a uinput device: config, events, grab, LED and
//   sound back to the device, the device unplugged. Skipped where
//   /dev/uinput is missing, unless VL_REQUIRE_UINPUT=1 (the guest test).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libevdev/libevdev-uinput.h>
#include <libevdev/libevdev.h>
#include <linux/input.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "input_driver.hpp"
#include "program_runner.hpp"

#ifndef VL_INPUT_PROGRAM
#error "VL_INPUT_PROGRAM must name the vhost-user-input program"
#endif
#ifndef VL_TEST_DRIVER_PROGRAM
#error "VL_TEST_DRIVER_PROGRAM must name the vl-test-driver program"
#endif

namespace vl::test_driver
{
namespace
{

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Generous: the guest variant runs under TCG emulation.
constexpr auto kTimeout = 10s;

using e2e::Program;
using e2e::TempDir;

bool eventually(const std::function<bool()>& condition,
                std::chrono::milliseconds timeout = kTimeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

// vhost-user-input on dir/input.sock, waited for until it listens.
struct Backend {
    Backend(const TempDir& dir, std::vector<std::string> source_args)
        : socket(dir.file("input.sock")),
          program(
              dir, VL_INPUT_PROGRAM,
              [&] {
                  std::vector<std::string> args{"--socket-path", dir.file("input.sock")};
                  args.insert(args.end(), source_args.begin(), source_args.end());
                  return args;
              }(),
              "backend")
    {
        // The socket file exists from bind(), a moment before listen().
        EXPECT_TRUE(eventually([&] {
            return program.err().find("listening on " + socket) != std::string::npos ||
                   !program.running();
        }));
        EXPECT_TRUE(program.running()) << program.err();
    }
    std::string socket;
    Program program;
};

InputOptions options(std::uint32_t event_buffers = 64)
{
    InputOptions o;
    o.connect.reply_timeout = kTimeout;
    o.request_timeout = kTimeout;
    o.event_buffers = event_buffers;
    return o;
}

Result<InputDriver> open(const std::string& socket, std::uint32_t event_buffers = 64)
{
    return InputDriver::open(socket, options(event_buffers), Logger("front-end", LogLevel::error));
}

std::vector<unsigned> set_bits(const std::vector<std::byte>& bitmap)
{
    std::vector<unsigned> bits;
    for (unsigned i = 0; i < bitmap.size() * 8; ++i)
        if ((std::to_integer<unsigned>(bitmap[i / 8]) >> (i % 8) & 1U) != 0)
            bits.push_back(i);
    return bits;
}

InputEvent ev(std::uint16_t type, std::uint16_t code, std::int32_t value)
{
    return {type, code, static_cast<std::uint32_t>(value)};
}
const InputEvent kSyn{EV_SYN, SYN_REPORT, 0};

// Reads until `n` events came (or the timeout).
std::vector<InputEvent> read_n(InputDriver& input, std::size_t n)
{
    auto events = input.read_events(n, kTimeout);
    EXPECT_TRUE(events.ok()) << events.error().message();
    return events.ok() ? *events : std::vector<InputEvent>{};
}

// Then nothing more comes for a while.
void expect_no_more(InputDriver& input)
{
    auto events = input.read_events(1, 300ms);
    ASSERT_TRUE(events.ok()) << events.error().message();
    EXPECT_TRUE(events->empty()) << "an extra event of type " << events->front().type;
}

// ---------------------------------------------------------------------------
// Command line

TEST(InputProgram, PrintsCapabilitiesAndHelp)
{
    TempDir dir;
    {
        Program p(dir, VL_INPUT_PROGRAM, {"--print-capabilities"});
        EXPECT_EQ(p.wait(), 0);
        EXPECT_EQ(p.out(), "{\n  \"type\": \"input\"\n}\n");
    }
    Program p(dir, VL_INPUT_PROGRAM, {"--help"});
    EXPECT_EQ(p.wait(), 0);
    const std::string help = p.out();
    for (const char* text : {"--evdev-path=DEVICE", "--grab", "--synthetic=FIFO", "--name=NAME",
                             "--emulate=LIST", "key CODE VALUE", "rel CODE VALUE", "abs CODE VALUE",
                             "syn ", "KEY_MICMUTE (248)", "BTN_TOUCH"})
        EXPECT_NE(help.find(text), std::string::npos) << text << " in:\n" << help;
}

TEST(InputProgram, BadUsageExitsWith2AndSaysWhy)
{
    TempDir dir;
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
        {{"-s", dir.file("s")}, "missing the event source"},
        {{"-s", dir.file("s"), "--synthetic", dir.file("f"), "--evdev-path", "/dev/null"},
         "not both"},
        {{"-s", dir.file("s"), "--synthetic", dir.file("f"), "--grab"}, "--grab is for"},
        {{"-s", dir.file("s"), "--synthetic", dir.file("f"), "--emulate", "pen"},
         "unknown device 'pen'"},
    };
    for (const auto& [args, message] : cases) {
        Program p(dir, VL_INPUT_PROGRAM, args);
        EXPECT_EQ(p.wait(), 2) << message;
        EXPECT_NE(p.err().find(message), std::string::npos) << p.err();
        EXPECT_NE(p.err().find("Try 'vhost-user-input --help'"), std::string::npos);
    }
    EXPECT_FALSE(fs::exists(dir.file("f"))) << "bad usage creates nothing";
}

TEST(InputProgram, RuntimeErrorsExitWith1)
{
    TempDir dir;
    {
        Program p(dir, VL_INPUT_PROGRAM,
                  {"-s", dir.file("s"), "--evdev-path", dir.file("event77")});
        EXPECT_EQ(p.wait(), 1);
        EXPECT_NE(
            p.err().find("cannot open " + dir.file("event77") + ": No such file or directory"),
            std::string::npos)
            << p.err();
    }
    {
        std::ofstream(dir.file("plain")) << "x";
        Program p(dir, VL_INPUT_PROGRAM, {"-s", dir.file("s"), "--synthetic", dir.file("plain")});
        EXPECT_EQ(p.wait(), 1);
        EXPECT_NE(p.err().find("exists and is not a FIFO"), std::string::npos) << p.err();
    }
}

// ---------------------------------------------------------------------------
// Synthetic source

class Synthetic : public ::testing::Test
{
  protected:
    Synthetic()
        : fifo_(dir_.file("events")),
          backend_(dir_, {"--synthetic", dir_.file("events"), "--name", "E2E Pad"})
    {
    }

    // Writes `text` into the FIFO (one open, one write, one close).
    void write(std::string_view text)
    {
        // Non-blocking: fails at once (ENXIO) if the back-end is not there.
        UniqueFd fd(::open(fifo_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
        ASSERT_TRUE(fd.valid()) << fifo_ << ": " << std::strerror(errno);
        ASSERT_EQ(::write(fd.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
    }

    TempDir dir_;
    std::string fifo_;
    Backend backend_;
};

TEST_F(Synthetic, TheDriverReadsNameIdsAndEventBits)
{
    auto input = open(backend_.socket);
    ASSERT_TRUE(input.ok()) << input.error().message();
    EXPECT_EQ(*input->name(), "E2E Pad");
    EXPECT_EQ(*input->serial(), "");
    auto ids = input->device_ids();
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(ids->bustype, BUS_VIRTUAL);
    EXPECT_EQ(ids->version, 1);
    EXPECT_EQ(set_bits(*input->property_bits()), std::vector<unsigned>{INPUT_PROP_DIRECT});
    const auto keys = set_bits(*input->event_bits(EV_KEY));
    for (unsigned k : {KEY_ESC, KEY_A, KEY_MICMUTE, BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_TOUCH})
        EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
    EXPECT_EQ(keys.back(), unsigned{BTN_TOUCH});
    EXPECT_EQ(input->event_bits(EV_KEY)->size(), BTN_TOUCH / 8 + 1U);
    EXPECT_EQ(set_bits(*input->event_bits(EV_REL)),
              (std::vector<unsigned>{REL_X, REL_Y, REL_WHEEL}));
    EXPECT_EQ(set_bits(*input->event_bits(EV_ABS)), (std::vector<unsigned>{ABS_X, ABS_Y}));
    EXPECT_EQ(set_bits(*input->event_bits(EV_LED)),
              (std::vector<unsigned>{LED_NUML, LED_CAPSL, LED_SCROLLL}));
    EXPECT_TRUE(input->event_bits(EV_SYN)->empty());
    EXPECT_TRUE(input->event_bits(EV_REP)->empty());
    auto x = input->abs_info(ABS_X);
    ASSERT_TRUE(x.ok() && x->has_value());
    EXPECT_EQ((*x)->min, 0U);
    EXPECT_EQ((*x)->max, 32767U);
    EXPECT_FALSE(input->abs_info(ABS_Z)->has_value());
    EXPECT_TRUE(input->query_config(0x42, 0)->empty()) << "an unknown selector";
}

TEST_F(Synthetic, TheToolShowsTheNameAndEventBits)
{
    Program tool(dir_, VL_TEST_DRIVER_PROGRAM, {"-s", backend_.socket, "input-info"}, "tool");
    ASSERT_EQ(tool.wait(), 0) << tool.err();
    const std::string out = tool.out();
    EXPECT_NE(out.find("name:                \"E2E Pad\"\n"), std::string::npos) << out;
    EXPECT_NE(out.find("event type 0x02:     0 1 8\n"), std::string::npos) << out;
    EXPECT_NE(out.find("event type 0x03:     0 1\n"), std::string::npos) << out;
    EXPECT_NE(out.find("  abs 0x00:          min 0 max 32767 fuzz 0 flat 0 res 0\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("event type 0x11:     0 1 2\n"), std::string::npos) << out;
    EXPECT_NE(out.find("event type 0x01:     1 2 3 "), std::string::npos) << out;
    EXPECT_EQ(out.find("event type 0x00"), std::string::npos) << out;
}

TEST_F(Synthetic, LinesBecomeExactlyThoseEvents)
{
    auto input = open(backend_.socket);
    ASSERT_TRUE(input.ok()) << input.error().message();
    write("key KEY_A 1\nsyn\nkey 30 0\nsyn\n"
          "not an event\n"
          "btn BTN_LEFT 1\nrel REL_X -5\nrel REL_Y 7\nrel REL_WHEEL -1\nsyn\n"
          "abs ABS_X 1000\nabs ABS_Y 32767\nkey BTN_TOUCH 1\nsyn\n"
          "EV_KEY KEY_B 2\n1 48 0\n0 0 0\n");
    const std::vector<InputEvent> want{ev(EV_KEY, KEY_A, 1),
                                       kSyn,
                                       ev(EV_KEY, KEY_A, 0),
                                       kSyn,
                                       ev(EV_KEY, BTN_LEFT, 1),
                                       ev(EV_REL, REL_X, -5),
                                       ev(EV_REL, REL_Y, 7),
                                       ev(EV_REL, REL_WHEEL, -1),
                                       kSyn,
                                       ev(EV_ABS, ABS_X, 1000),
                                       ev(EV_ABS, ABS_Y, 32767),
                                       ev(EV_KEY, BTN_TOUCH, 1),
                                       kSyn,
                                       ev(EV_KEY, KEY_B, 2),
                                       ev(EV_KEY, KEY_B, 0),
                                       kSyn};
    EXPECT_EQ(read_n(*input, want.size()), want);
    expect_no_more(*input);
    EXPECT_TRUE(eventually([&] {
        return backend_.program.err().find("events line 5: unknown event type 'not'") !=
               std::string::npos;
    })) << backend_.program.err();
}

TEST_F(Synthetic, TheToolPrintsTheEvents)
{
    Program tool(dir_, VL_TEST_DRIVER_PROGRAM,
                 {"-s", backend_.socket, "input-read", "--events", "4", "--timeout", "10"}, "tool");
    // The tool connects at its own pace; lines written before wait.
    write("rel REL_X -5\nsyn\nkey KEY_ENTER 1\nsyn\n");
    ASSERT_EQ(tool.wait(), 0) << tool.err();
    EXPECT_EQ(tool.out(), "2 0 -5\n0 0 0\n1 28 1\n0 0 0\n");
}

TEST_F(Synthetic, EventsWaitForBuffersAndForTheFrontEnd)
{
    // Before any front-end: the lines wait in the FIFO.
    write("key KEY_1 1\nsyn\n");
    auto input = open(backend_.socket, 2); // two buffers: the rest waits
    ASSERT_TRUE(input.ok()) << input.error().message();
    std::string text;
    std::vector<InputEvent> want{ev(EV_KEY, KEY_1, 1), kSyn};
    for (int i = 0; i < 30; ++i) {
        text += fmt::format("rel REL_X {}\nsyn\n", i);
        want.push_back(ev(EV_REL, REL_X, i));
        want.push_back(kSyn);
    }
    write(text);
    std::this_thread::sleep_for(200ms); // all of it in the back-end's backlog
    EXPECT_EQ(read_n(*input, want.size()), want);
}

TEST_F(Synthetic, StatusEventsAreLogged)
{
    auto input = open(backend_.socket);
    ASSERT_TRUE(input.ok()) << input.error().message();
    ASSERT_TRUE(input->send_status(ev(EV_LED, LED_CAPSL, 1)).ok());
    EXPECT_TRUE(eventually([&] {
        return backend_.program.err().find("status event from the driver: EV_LED LED_CAPSL 1") !=
               std::string::npos;
    })) << backend_.program.err();
}

// A front-end killed while events stream to it: the back-end ends that
// session and serves the next front-end.
TEST_F(Synthetic, FrontEndKilledMidStreamThenTheNextIsServed)
{
    int ready[2];
    ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        auto input = open(backend_.socket, 4);
        if (!input || !input->read_events(1, kTimeout))
            ::_exit(3);
        (void)!::write(ready[1], "r", 1);
        for (;;)
            (void)input->read_events(1000, kTimeout);
    }
    ::close(ready[1]);
    std::atomic<bool> writing{true};
    std::thread writer([&] {
        for (int i = 0; writing; ++i) {
            UniqueFd fd(::open(fifo_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
            const std::string line = fmt::format("rel REL_Y {}\nsyn\n", i % 100);
            if (fd)
                (void)!::write(fd.get(), line.data(), line.size());
            std::this_thread::sleep_for(1ms);
        }
    });
    char byte = 0;
    const bool started = ::read(ready[0], &byte, 1) == 1;
    ::close(ready[0]);
    std::this_thread::sleep_for(100ms); // events flowing
    ::kill(child, SIGKILL);
    writing = false;
    writer.join();
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(started) << "the first front-end got no event";
    EXPECT_TRUE(WIFSIGNALED(status)) << "the front-end ended before it was killed";

    auto input = open(backend_.socket);
    ASSERT_TRUE(input.ok()) << input.error().message() << "\n" << backend_.program.err();
    write("key KEY_Z 1\nsyn\n");
    // What the FIFO still held may come first; the marker must come.
    bool marker = false;
    for (int i = 0; i < 2000 && !marker; ++i) {
        auto events = input->read_events(1, kTimeout);
        ASSERT_TRUE(events.ok()) << events.error().message();
        ASSERT_FALSE(events->empty()) << "no marker within the timeout";
        marker = events->front() == ev(EV_KEY, KEY_Z, 1);
    }
    EXPECT_TRUE(marker);
    EXPECT_TRUE(backend_.program.running());
    EXPECT_EQ(backend_.program.stop(), 0);
    EXPECT_NE(backend_.program.err().find("the front-end disconnected"), std::string::npos)
        << backend_.program.err();
    EXPECT_FALSE(fs::exists(fifo_)) << "the FIFO it created is removed at exit";
}

// ---------------------------------------------------------------------------
// evdev passthrough of a uinput device

struct UinputDeleter {
    void operator()(libevdev_uinput* u) const noexcept { libevdev_uinput_destroy(u); }
};
using UinputPtr = std::unique_ptr<libevdev_uinput, UinputDeleter>;
struct LibevdevDeleter {
    void operator()(libevdev* d) const noexcept { libevdev_free(d); }
};
using LibevdevPtr = std::unique_ptr<libevdev, LibevdevDeleter>;

class Uinput : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        if (::access("/dev/uinput", R_OK | W_OK) != 0) {
            if (const char* require = std::getenv("VL_REQUIRE_UINPUT");
                require != nullptr && std::string(require) == "1")
                FAIL() << "/dev/uinput is required here but not available";
            GTEST_SKIP() << "/dev/uinput is not available (modprobe uinput, as root)";
        }
        LibevdevPtr model(libevdev_new());
        libevdev_set_name(model.get(), "vl-input-e2e uinput");
        libevdev_set_id_bustype(model.get(), BUS_USB);
        libevdev_set_id_vendor(model.get(), 0x1d6b);
        libevdev_set_id_product(model.get(), 0x0104);
        libevdev_set_id_version(model.get(), 0x0101);
        libevdev_enable_property(model.get(), INPUT_PROP_POINTER);
        for (unsigned code : {KEY_A, KEY_B, KEY_CAPSLOCK, BTN_LEFT})
            libevdev_enable_event_code(model.get(), EV_KEY, code, nullptr);
        libevdev_enable_event_code(model.get(), EV_REL, REL_X, nullptr);
        const input_absinfo abs{0, -512, 511, 2, 4, 16};
        libevdev_enable_event_code(model.get(), EV_ABS, ABS_RX, &abs);
        libevdev_enable_event_code(model.get(), EV_LED, LED_CAPSL, nullptr);
        libevdev_enable_event_code(model.get(), EV_LED, LED_NUML, nullptr);
        libevdev_enable_event_code(model.get(), EV_SND, SND_BELL, nullptr);
        libevdev_enable_event_type(model.get(), EV_REP);
        libevdev_uinput* raw = nullptr;
        const int rc =
            libevdev_uinput_create_from_device(model.get(), LIBEVDEV_UINPUT_OPEN_MANAGED, &raw);
        ASSERT_EQ(rc, 0) << "uinput: " << std::strerror(-rc);
        uinput_.reset(raw);
        const char* node = libevdev_uinput_get_devnode(raw);
        ASSERT_NE(node, nullptr) << "no event node for the uinput device (is evdev loaded?)";
        node_ = node;
        // Without udev the node appears when devtmpfs gets to it.
        ASSERT_TRUE(eventually([&] { return fs::exists(node_); })) << node_;
    }

    void emit(unsigned type, unsigned code, int value)
    {
        ASSERT_EQ(libevdev_uinput_write_event(uinput_.get(), type, code, value), 0);
    }
    // The output events (LED, sound) the device got, from the uinput fd.
    std::vector<InputEvent> output_events(std::size_t n)
    {
        std::vector<InputEvent> out;
        const int fd = libevdev_uinput_get_fd(uinput_.get());
        while (out.size() < n) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(kTimeout / 1ms)) != 1)
                break;
            input_event e{};
            if (::read(fd, &e, sizeof(e)) != sizeof(e))
                break;
            if (e.type != EV_SYN)
                out.push_back(ev(e.type, e.code, e.value));
        }
        return out;
    }

    TempDir dir_;
    UinputPtr uinput_;
    std::string node_;
};

TEST_F(Uinput, TheConfigIsTheHostDevices)
{
    Backend backend(dir_, {"--evdev-path", node_});
    auto input = open(backend.socket);
    ASSERT_TRUE(input.ok()) << input.error().message() << "\n" << backend.program.err();
    EXPECT_EQ(*input->name(), "vl-input-e2e uinput");
    auto ids = input->device_ids();
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(ids->bustype, BUS_USB);
    EXPECT_EQ(ids->vendor, 0x1d6b);
    EXPECT_EQ(ids->product, 0x0104);
    EXPECT_EQ(ids->version, 0x0101);
    EXPECT_EQ(set_bits(*input->property_bits()), std::vector<unsigned>{INPUT_PROP_POINTER});
    EXPECT_EQ(set_bits(*input->event_bits(EV_KEY)),
              (std::vector<unsigned>{KEY_A, KEY_B, KEY_CAPSLOCK, BTN_LEFT}));
    EXPECT_EQ(set_bits(*input->event_bits(EV_REL)), std::vector<unsigned>{REL_X});
    EXPECT_EQ(set_bits(*input->event_bits(EV_ABS)), std::vector<unsigned>{ABS_RX});
    EXPECT_EQ(set_bits(*input->event_bits(EV_LED)), (std::vector<unsigned>{LED_NUML, LED_CAPSL}));
    EXPECT_EQ(set_bits(*input->event_bits(EV_SND)), std::vector<unsigned>{SND_BELL});
    EXPECT_EQ(set_bits(*input->event_bits(EV_REP)), (std::vector<unsigned>{REP_DELAY, REP_PERIOD}))
        << "so that the driver repeats held keys itself";
    auto rx = input->abs_info(ABS_RX);
    ASSERT_TRUE(rx.ok() && rx->has_value());
    EXPECT_EQ(static_cast<std::int32_t>((*rx)->min), -512);
    EXPECT_EQ((*rx)->max, 511U);
    EXPECT_EQ((*rx)->fuzz, 2U);
    EXPECT_EQ((*rx)->flat, 4U);
    EXPECT_EQ((*rx)->res, 16U);
    input = Error("closed"); // the tool is the next front-end

    Program tool(dir_, VL_TEST_DRIVER_PROGRAM, {"-s", backend.socket, "input-info"}, "tool");
    ASSERT_EQ(tool.wait(), 0) << tool.err();
    EXPECT_NE(tool.out().find("name:                \"vl-input-e2e uinput\"\n"), std::string::npos)
        << tool.out();
    EXPECT_NE(tool.out().find("event type 0x02:     0\n"), std::string::npos) << tool.out();
}

TEST_F(Uinput, EventsPassThroughAndGrabHidesThemFromTheHost)
{
    Backend backend(dir_, {"--evdev-path", node_, "--grab"});
    auto input = open(backend.socket);
    ASSERT_TRUE(input.ok()) << input.error().message() << "\n" << backend.program.err();
    // Another reader on the host, as a console or compositor would be.
    UniqueFd host(::open(node_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    ASSERT_TRUE(host.valid());

    emit(EV_KEY, KEY_A, 1);
    emit(EV_SYN, SYN_REPORT, 0);
    // A host repeat (the device has EV_REP): the driver repeats by itself.
    emit(EV_KEY, KEY_A, 2);
    emit(EV_SYN, SYN_REPORT, 0);
    emit(EV_REL, REL_X, -7);
    emit(EV_ABS, ABS_RX, 300);
    emit(EV_SYN, SYN_REPORT, 0);
    emit(EV_KEY, KEY_A, 0);
    emit(EV_SYN, SYN_REPORT, 0);
    const std::vector<InputEvent> want{
        ev(EV_KEY, KEY_A, 1), kSyn, ev(EV_REL, REL_X, -7), ev(EV_ABS, ABS_RX, 300), kSyn,
        ev(EV_KEY, KEY_A, 0), kSyn};
    EXPECT_EQ(read_n(*input, want.size()), want);
    expect_no_more(*input);
    input_event e{};
    EXPECT_EQ(::read(host.get(), &e, sizeof(e)), -1) << "the grab keeps them from the host";
    EXPECT_EQ(errno, EAGAIN);
}

TEST_F(Uinput, LedAndSoundGoBackToTheDevice)
{
    Backend backend(dir_, {"--evdev-path", node_});
    auto input = open(backend.socket);
    ASSERT_TRUE(input.ok()) << input.error().message() << "\n" << backend.program.err();
    ASSERT_TRUE(input->send_status(ev(EV_LED, LED_CAPSL, 1)).ok());
    ASSERT_TRUE(input->send_status(ev(EV_REP, REP_DELAY, 500)).ok()) << "kept from the host";
    ASSERT_TRUE(input->send_status(ev(EV_SND, SND_BELL, 1)).ok());
    ASSERT_TRUE(input->send_status(ev(EV_LED, LED_SCROLLL, 1)).ok()) << "refused, not fatal";
    EXPECT_EQ(output_events(2),
              (std::vector<InputEvent>{ev(EV_LED, LED_CAPSL, 1), ev(EV_SND, SND_BELL, 1)}));
    UniqueFd fd(::open(node_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    libevdev* raw = nullptr;
    ASSERT_EQ(libevdev_new_from_fd(fd.get(), &raw), 0);
    LibevdevPtr check(raw);
    EXPECT_EQ(libevdev_get_event_value(raw, EV_LED, LED_CAPSL), 1);
    EXPECT_EQ(libevdev_get_event_value(raw, EV_LED, LED_NUML), 0);
    EXPECT_TRUE(eventually([&] {
        return backend.program.err().find("status event EV_LED LED_SCROLLL 1 from the driver") !=
               std::string::npos;
    })) << backend.program.err();
}

TEST_F(Uinput, AnUnpluggedDeviceEndsTheEventsNotTheDaemon)
{
    Backend backend(dir_, {"--evdev-path", node_});
    auto input = open(backend.socket);
    ASSERT_TRUE(input.ok()) << input.error().message() << "\n" << backend.program.err();
    emit(EV_KEY, KEY_B, 1);
    emit(EV_SYN, SYN_REPORT, 0);
    EXPECT_EQ(read_n(*input, 2), (std::vector<InputEvent>{ev(EV_KEY, KEY_B, 1), kSyn}));
    uinput_.reset();
    EXPECT_TRUE(eventually([&] {
        return backend.program.err().find(node_ + " went away") != std::string::npos;
    })) << backend.program.err();
    EXPECT_EQ(*input->name(), "vl-input-e2e uinput") << "the config still answers";
    input = Error("closed");
    auto next = open(backend.socket);
    ASSERT_TRUE(next.ok()) << next.error().message();
    EXPECT_TRUE(backend.program.running());
    EXPECT_EQ(backend.program.stop(), 0);
}

} // namespace
} // namespace vl::test_driver
