// SPDX-License-Identifier: Apache-2.0
// The shared command line of the device programs: parsing, validation of
// the common options, and the texts (--help, --print-capabilities).
#include <gtest/gtest.h>

#include "backend/program.hpp"

namespace vl::backend
{
namespace
{

const ProgramInfo kInfo{
    .name = "vhost-user-test",
    .summary = "A test program.",
    .backend_type = "block",
    .capability_features = {"read-only", "blk-file"},
    .options = {{"blk-file", 'b', "PATH", "the image"}, {"read-only", 0, "", "refuse writes"}},
};

Result<CommandLine> parse(std::vector<std::string> args)
{
    return CommandLine::parse(args, all_options(kInfo));
}

std::string error_of(std::vector<std::string> args)
{
    auto cl = parse(std::move(args));
    return cl.ok() ? std::string("(no error)") : cl.error().message();
}

TEST(CommandLine, AcceptsEveryValueSpelling)
{
    for (auto args : std::vector<std::vector<std::string>>{
             {"-s", "/run/a.sock", "--blk-file", "img"},
             {"--socket-path=/run/a.sock", "--blk-file=img"},
             {"-s/run/a.sock", "-bimg"},
             {"--socket-path", "/run/a.sock", "-b", "img", "--"}}) {
        auto cl = parse(args);
        ASSERT_TRUE(cl.ok()) << cl.error().message();
        EXPECT_EQ(cl->value("socket-path"), "/run/a.sock");
        EXPECT_EQ(cl->value("blk-file"), "img");
        EXPECT_FALSE(cl->has("read-only"));
    }
}

TEST(CommandLine, FlagsAndAbsentOptions)
{
    auto cl = parse({"--read-only", "-s", "x"});
    ASSERT_TRUE(cl.ok());
    EXPECT_TRUE(cl->has("read-only"));
    EXPECT_EQ(cl->value("read-only"), "");
    EXPECT_FALSE(cl->value("blk-file").has_value());
}

TEST(CommandLine, ErrorsNameTheOption)
{
    EXPECT_EQ(error_of({"--bogus"}), "unknown option --bogus");
    EXPECT_EQ(error_of({"-x"}), "unknown option -x");
    EXPECT_EQ(error_of({"-s"}), "--socket-path needs a value (PATH)");
    EXPECT_EQ(error_of({"-s", "a", "-s", "b"}), "--socket-path is given more than once");
    EXPECT_EQ(error_of({"--read-only=yes"}), "--read-only takes no value");
    EXPECT_EQ(error_of({"stray"}), "unexpected argument 'stray' (options start with -)");
    EXPECT_EQ(error_of({"--", "stray"}), "unexpected argument 'stray'");
}

TEST(CommandLine, RepeatableOptionsKeepEveryValueInOrder)
{
    const std::vector<OptionSpec> options{{"port", 'p', "SPEC", "", true}, {"one", 0, "N", ""}};
    auto cl =
        CommandLine::parse(std::vector<std::string>{"--port", "a", "-pb", "--port=c"}, options);
    ASSERT_TRUE(cl.ok()) << cl.error().message();
    EXPECT_EQ(cl->values("port"), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(cl->value("port"), "c");
    EXPECT_TRUE(cl->values("one").empty());
    auto twice = CommandLine::parse(std::vector<std::string>{"--one", "1", "--one", "2"}, options);
    ASSERT_FALSE(twice.ok());
    EXPECT_EQ(twice.error().message(), "--one is given more than once");
}

TEST(CommandLine, NumbersAreWholeDecimalNumbers)
{
    const std::vector<OptionSpec> options{{"rate", 0, "N", ""}};
    auto number = [&](const std::string& text) {
        auto cl = CommandLine::parse(std::vector<std::string>{"--rate=" + text}, options);
        EXPECT_TRUE(cl.ok());
        return cl->number("rate", "bytes per second");
    };
    auto ok = number("1000");
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(*ok, std::optional<std::uint64_t>(1000));
    for (const char* bad : {"", "-1", "10k", "0x10", " 5", "1.5"}) {
        auto r = number(bad);
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_EQ(r.error().message(),
                  std::string("--rate wants a whole number of bytes per second, got '") + bad +
                      "'");
    }
    auto huge = number("99999999999999999999999");
    ASSERT_FALSE(huge.ok());
    EXPECT_EQ(huge.error().message(), "--rate 99999999999999999999999 is too large");
    auto absent = CommandLine::parse(std::vector<std::string>{}, options);
    ASSERT_TRUE(absent.ok());
    auto none = absent->number("rate", "bytes");
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
}

TEST(CommonConfig, NeedsASocketPathThatFitsASocketAddress)
{
    auto missing = CommonConfig::from(*parse({}));
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.error().message().find("missing --socket-path"), std::string::npos);
    auto too_long = CommonConfig::from(*parse({"-s", std::string(108, 'x')}));
    ASSERT_FALSE(too_long.ok());
    EXPECT_NE(too_long.error().message().find("1 to 107 bytes"), std::string::npos);
    auto fits = CommonConfig::from(*parse({"-s", std::string(107, 'x')}));
    EXPECT_TRUE(fits.ok());
}

TEST(CommonConfig, LogLevel)
{
    auto config = CommonConfig::from(*parse({"-s", "a", "-l", "debug"}));
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(config->log_level, LogLevel::debug);
    EXPECT_EQ(CommonConfig::from(*parse({"-s", "a"}))->log_level, LogLevel::info);
    auto bad = CommonConfig::from(*parse({"-s", "a", "--log-level", "loud"}));
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().message(),
              "unknown --log-level 'loud' (use error, warn, info, debug or trace)");
}

TEST(CommonConfig, PollTime)
{
    EXPECT_EQ(CommonConfig::from(*parse({"-s", "a"}))->poll_time.count(), 0);
    auto config = CommonConfig::from(*parse({"-s", "a", "--poll-us", "50"}));
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(config->poll_time, std::chrono::microseconds(50));
    EXPECT_TRUE(CommonConfig::from(*parse({"-s", "a", "--poll-us=1000000"})).ok());
    auto too_long = CommonConfig::from(*parse({"-s", "a", "--poll-us=1000001"}));
    ASSERT_FALSE(too_long.ok());
    EXPECT_EQ(too_long.error().message(), "--poll-us 1000001 is more than 1000000 (one second)");
    auto not_a_number = CommonConfig::from(*parse({"-s", "a", "--poll-us=5ms"}));
    ASSERT_FALSE(not_a_number.ok());
    EXPECT_NE(not_a_number.error().message().find("whole number of microseconds"),
              std::string::npos)
        << not_a_number.error().message();
}

TEST(ProgramTexts, CapabilitiesFollowTheVhostUserJsonSchema)
{
    EXPECT_EQ(capabilities_json(kInfo), "{\n  \"type\": \"block\",\n  \"features\": [\n    "
                                        "\"read-only\",\n    \"blk-file\"\n  ]\n}\n");
    ProgramInfo rng;
    rng.backend_type = "rng";
    EXPECT_EQ(capabilities_json(rng), "{\n  \"type\": \"rng\"\n}\n");
}

TEST(ProgramTexts, HelpListsEveryOptionAndTheExitStatus)
{
    const std::string help = usage_text(kInfo);
    for (const char* piece :
         {"Usage: vhost-user-test --socket-path=PATH", "A test program.", "-s, --socket-path=PATH",
          "-b, --blk-file=PATH", "--read-only", "-l, --log-level=LEVEL", "--poll-us=N", "--print-capabilities",
          "-V, --version", "-h, --help", "2 on bad usage"})
        EXPECT_NE(help.find(piece), std::string::npos) << piece << " missing from:\n" << help;
    EXPECT_NE(version_text(kInfo).find("vhost-user-test (virtio-loopback) "), std::string::npos);
}

} // namespace
} // namespace vl::backend
