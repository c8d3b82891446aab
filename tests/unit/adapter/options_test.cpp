// SPDX-License-Identifier: Apache-2.0
// The adapter's command line and config file: every device option, the
// original adapter's spellings, and the errors a user sees.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "device_types.hpp"
#include "options.hpp"

namespace vl::adapter {
namespace {

Result<ParsedCommandLine> parse(std::vector<std::string> args)
{
    static char program[] = "virtio-loopback-adapter";
    std::vector<char*> argv{program};
    for (auto& a : args)
        argv.push_back(a.data());
    return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

std::string error_of(std::vector<std::string> args)
{
    auto r = parse(std::move(args));
    EXPECT_FALSE(r.ok());
    return r.ok() ? "" : r.error().message();
}

TEST(Options, OneDeviceWithDefaults)
{
    auto r = parse({"-s", "/run/blk.sock", "-d", "blk"});
    ASSERT_TRUE(r.ok()) << r.error().message();
    ASSERT_EQ(r->options.devices.size(), 1u);
    const auto& d = r->options.devices[0];
    EXPECT_EQ(d.socket, "/run/blk.sock");
    EXPECT_EQ(d.type->name, "blk");
    EXPECT_EQ(d.virtio_id, 2u);
    EXPECT_EQ(d.config_size, 60u);
    EXPECT_FALSE(d.num_queues.has_value());
    EXPECT_EQ(d.queue_size, 256u);
    EXPECT_EQ(d.window_bytes, 16u << 20);
    EXPECT_EQ(d.name, "blk0");
    EXPECT_TRUE(d.zero_copy);
}

TEST(Options, ZeroCopyIsPerDeviceAndOnByDefault)
{
    auto r = parse({"-s", "/a", "-d", "blk", "--zero-copy=off",   // off
                    "-s", "/b", "-d", "blk",                      // on, the default
                    "-s", "/c", "-d", "blk", "--zero-copy=on",    // on
                    "-s", "/d", "-d", "rng", "--zero-copy=off"}); // off
    ASSERT_TRUE(r.ok()) << r.error().message();
    const auto& devices = r->options.devices;
    ASSERT_EQ(devices.size(), 4u);
    EXPECT_FALSE(devices[0].zero_copy);
    EXPECT_TRUE(devices[1].zero_copy);
    EXPECT_TRUE(devices[2].zero_copy);
    EXPECT_FALSE(devices[3].zero_copy);
    auto spaced = parse({"-s", "/a", "-d", "blk", "--zero-copy", "off"});
    ASSERT_TRUE(spaced.ok()) << spaced.error().message();
    EXPECT_FALSE(spaced->options.devices[0].zero_copy);
    for (const char* bad : {"yes", "1", "OFF", ""}) {
        auto e = error_of({"-s", "/a", "-d", "blk", std::string("--zero-copy=") + bad});
        EXPECT_NE(e.find("--zero-copy wants on or off, got '" + std::string(bad) + "'"),
                  std::string::npos)
            << e;
    }
    EXPECT_NE(error_of({"-s", "/a", "-d", "blk", "--zero-copy"}).find("wants a value"),
              std::string::npos);
}

TEST(Options, HelpTellsWhenZeroCopyMustBeOff)
{
    const std::string usage = kUsage;
    EXPECT_NE(usage.find("--zero-copy on|off"), std::string::npos);
    EXPECT_NE(usage.find("cache.direct=on"), std::string::npos);
    EXPECT_NE(usage.find("--zero-copy=off"), std::string::npos);
}

TEST(Options, OriginalSpellingsWork)
{
    auto r = parse({"-d", "vhublk", "-s", "/a", "-qn", "2", "-qs", "128"});
    ASSERT_TRUE(r.ok()) << r.error().message();
    const auto& d = r->options.devices[0];
    EXPECT_EQ(d.type->name, "blk");
    EXPECT_EQ(d.num_queues, 2u);
    EXPECT_EQ(d.queue_size, 128u);
    for (const char* alias : {"vhuinput", "vhurng", "vrng", "vhusnd", "vhugpio", "vhucan"})
        EXPECT_NE(find_device_type(alias), nullptr) << alias;
}

TEST(Options, GroupsStartAtEachSocketOrDevice)
{
    auto r = parse({"-s", "/a", "-d", "blk", "-qn", "2", "-s", "/b", "-d", "rng", "-d", "input",
                    "-s", "/c", "--queue-size", "32"});
    ASSERT_TRUE(r.ok()) << r.error().message();
    const auto& devices = r->options.devices;
    ASSERT_EQ(devices.size(), 3u);
    EXPECT_EQ(devices[0].socket, "/a");
    EXPECT_EQ(devices[0].num_queues, 2u);
    EXPECT_EQ(devices[1].socket, "/b");
    EXPECT_EQ(devices[1].type->name, "rng");
    EXPECT_FALSE(devices[1].num_queues.has_value());
    EXPECT_EQ(devices[2].socket, "/c");
    EXPECT_EQ(devices[2].type->name, "input");
    EXPECT_EQ(devices[2].queue_size, 32u);
    EXPECT_EQ(devices[2].name, "input2");
}

TEST(Options, GenericNeedsAVirtioId)
{
    EXPECT_NE(error_of({"-s", "/a", "-d", "generic"}).find("--virtio-id"), std::string::npos);
    auto r = parse({"-s", "/a", "-d", "generic", "--virtio-id", "9", "--config-size=40"});
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->options.devices[0].virtio_id, 9u);
    EXPECT_EQ(r->options.devices[0].config_size, 40u);
}

TEST(Options, ErrorsNameTheOption)
{
    EXPECT_NE(error_of({"-s", "/a", "-d", "disk"}).find("unknown device type 'disk'"), std::string::npos);
    EXPECT_NE(error_of({"-s", "/a", "-d", "blk", "-qs", "100"}).find("power of two"), std::string::npos);
    EXPECT_NE(error_of({"-s", "/a", "-d", "blk", "-qn", "0"}).find("--num-queues must be between 1 and 64"),
              std::string::npos);
    EXPECT_NE(error_of({"-s", "/a", "-d", "blk", "-qn", "two"}).find("wants a non-negative number"),
              std::string::npos);
    EXPECT_NE(error_of({"-s", "/a", "-d", "blk", "--window-mb", "4096"}).find("--window-mb"),
              std::string::npos);
    EXPECT_NE(error_of({"-s", "/a"}).find("no --device"), std::string::npos);
    EXPECT_NE(error_of({"-d", "rng"}).find("no --socket"), std::string::npos);
    EXPECT_NE(error_of({}).find("no device given"), std::string::npos);
    EXPECT_NE(error_of({"--frobnicate"}).find("unknown option '--frobnicate'"), std::string::npos);
    EXPECT_NE(error_of({"-s"}).find("wants a value"), std::string::npos);
    EXPECT_NE(error_of({"--help=yes"}).find("takes no value"), std::string::npos);
    EXPECT_NE(error_of({"-s", "/a", "-d", "blk", "-l", "loud"}).find("unknown log level"),
              std::string::npos);
}

TEST(Options, FsTag)
{
    auto r = parse({"-s", "/run/vfs.sock", "-d", "fs", "--tag", "share"});
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->options.devices[0].tag, "share");
    EXPECT_EQ(r->options.devices[0].virtio_id, 26u);
    // The tag field is 36 bytes: 36 fit, 37 are refused with the option named.
    EXPECT_TRUE(parse({"-s", "/a", "-d", "fs", "--tag", std::string(36, 'x')}).ok());
    auto long_tag = error_of({"-s", "/a", "-d", "fs", "--tag", std::string(37, 'x')});
    EXPECT_NE(long_tag.find("is 37 bytes"), std::string::npos) << long_tag;
    EXPECT_NE(long_tag.find("at most 36"), std::string::npos) << long_tag;
    EXPECT_NE(long_tag.find("shorter --tag"), std::string::npos) << long_tag;
    EXPECT_NE(error_of({"-s", "/a", "-d", "fs"}).find("needs --tag TAG"), std::string::npos);
    EXPECT_NE(error_of({"-s", "/a", "-d", "blk", "--tag", "x"}).find("--tag applies to"),
              std::string::npos);
    EXPECT_NE(error_of({"-s", "/a", "-d", "fs", "--tag="}).find("--tag wants a name"),
              std::string::npos);
}

TEST(Options, HelpVersionAndListNeedNoDevice)
{
    EXPECT_EQ(parse({"--help"})->action, Action::help);
    EXPECT_EQ(parse({"-V"})->action, Action::version);
    EXPECT_EQ(parse({"--list-devices"})->action, Action::list_devices);
}

TEST(Options, GlobalOptions)
{
    auto r = parse({"-s", "/a", "-d", "rng", "--reconnect-grace", "5", "--connect-timeout", "0",
                    "--reply-timeout-ms", "2000", "--control", "/dev/x", "-l", "debug",
                    "--stall-timeout", "7"});
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->options.reconnect_grace, std::chrono::seconds(5));
    EXPECT_EQ(r->options.connect_timeout, std::chrono::seconds(0));
    EXPECT_EQ(r->options.reply_timeout_ms, 2000u);
    EXPECT_EQ(r->options.control_path, "/dev/x");
    EXPECT_EQ(r->options.log_level, LogLevel::debug);
    EXPECT_EQ(r->options.stall_timeout, std::chrono::seconds(7));
}

class ConfigFile : public ::testing::Test {
protected:
    void SetUp() override
    {
        char name[] = "/tmp/vl-adapter-config-XXXXXX";
        int fd = ::mkstemp(name);
        ASSERT_GE(fd, 0);
        ::close(fd);
        path_ = name;
    }
    void TearDown() override { ::unlink(path_.c_str()); }
    void write(const std::string& text) { std::ofstream(path_) << text; }
    std::string path_;
};

TEST_F(ConfigFile, DevicesAndGlobalOptions)
{
    write("# two devices\n"
          "reconnect-grace = 10\n"
          "[device]\n"
          "socket = /run/blk.sock   # the disk\n"
          "device = blk\n"
          "num-queues = 2\n"
          "\n"
          "[device]\n"
          "socket=/run/rng.sock\n"
          "device=vhurng\n"
          "zero-copy = off\n");
    auto r = parse({"-c", path_});
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->options.reconnect_grace, std::chrono::seconds(10));
    ASSERT_EQ(r->options.devices.size(), 2u);
    EXPECT_EQ(r->options.devices[0].socket, "/run/blk.sock");
    EXPECT_EQ(r->options.devices[0].num_queues, 2u);
    EXPECT_EQ(r->options.devices[1].type->name, "rng");
    EXPECT_TRUE(r->options.devices[0].zero_copy);
    EXPECT_FALSE(r->options.devices[1].zero_copy);
}

TEST_F(ConfigFile, ErrorsNameTheLine)
{
    write("[device]\nsocket = /a\ndevice = blk\nqueue-size = 3\n");
    auto r = parse({"--config", path_});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find(path_ + ":4"), std::string::npos) << r.error().message();
    write("[device]\nthis is not an option\n");
    r = parse({"--config", path_});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find(":2: expected 'key = value'"), std::string::npos);
}

TEST(Options, MissingConfigFile)
{
    auto r = parse({"-c", "/nonexistent/adapter.conf"});
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message().find("cannot read config file /nonexistent/adapter.conf"),
              std::string::npos);
}

} // namespace
} // namespace vl::adapter
