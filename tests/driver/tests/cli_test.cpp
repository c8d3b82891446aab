// SPDX-License-Identifier: Apache-2.0
// vl-test-driver's command line: what is accepted, what is a usage error.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli.hpp"

namespace vl::test_driver::cli
{
namespace
{

Result<Invocation> parse_words(std::vector<std::string_view> words)
{
    return parse(words);
}

TEST(Cli, BlkVerifyWithAllOptions)
{
    auto inv = parse_words({"-s", "/run/blk.sock", "blk-verify", "--size", "32", "--queue=1",
                            "--requests", "100", "--qd", "8", "--request-size", "4", "--seed", "42",
                            "--no-zeroes", "--log-level", "debug", "--timeout-ms", "250"});
    ASSERT_TRUE(inv) << inv.error().message();
    EXPECT_FALSE(inv->help);
    EXPECT_EQ(inv->command_name, "blk-verify");
    EXPECT_EQ(inv->global.socket, "/run/blk.sock");
    EXPECT_EQ(inv->global.log_level, LogLevel::debug);
    EXPECT_EQ(inv->global.timeout, std::chrono::milliseconds(250));
    const auto& o = std::get<BlkVerifyOptions>(inv->command);
    EXPECT_EQ(o.size_mib, 32U);
    EXPECT_FALSE(
        std::get<BlkVerifyOptions>(parse_words({"-s", "/s", "blk-verify"})->command).size_mib);
    EXPECT_EQ(o.queue, 1U);
    EXPECT_EQ(o.requests, 100U);
    EXPECT_EQ(o.qd, 8U);
    EXPECT_EQ(o.request_kib, 4U);
    EXPECT_EQ(o.seed, 42U);
    EXPECT_FALSE(o.zeroes);
}

TEST(Cli, DefaultsAndGlobalOptionsAfterTheCommand)
{
    auto inv = parse_words({"rng-read", "--socket=/s", "--bytes", "10", "--no-event-idx"});
    ASSERT_TRUE(inv) << inv.error().message();
    EXPECT_EQ(std::get<RngReadOptions>(inv->command).bytes, 10U);
    EXPECT_FALSE(std::get<RngReadOptions>(inv->command).output);
    EXPECT_FALSE(inv->global.event_idx);
    EXPECT_TRUE(inv->global.indirect);
    EXPECT_EQ(inv->global.log_level, LogLevel::warn);

    auto input = parse_words({"-s", "/s", "input-read", "--events", "3", "--timeout", "0.5"});
    ASSERT_TRUE(input) << input.error().message();
    EXPECT_EQ(std::get<InputReadOptions>(input->command).events, 3U);
    EXPECT_EQ(std::get<InputReadOptions>(input->command).timeout, std::chrono::milliseconds(500));
}

TEST(Cli, ConsoleInfo)
{
    auto inv = parse_words({"-s", "/s", "console-info"});
    ASSERT_TRUE(inv) << inv.error().message();
    EXPECT_EQ(inv->command_name, "console-info");
    EXPECT_TRUE(std::get<ConsoleInfoOptions>(inv->command).multiport);
    auto single = parse_words({"-s", "/s", "console-info", "--no-multiport"});
    ASSERT_TRUE(single) << single.error().message();
    EXPECT_FALSE(std::get<ConsoleInfoOptions>(single->command).multiport);
    auto help = parse_words({"console-info", "--help"});
    ASSERT_TRUE(help && help->help);
    EXPECT_NE(help->help->find("PORT_READY"), std::string::npos);
    EXPECT_FALSE(parse_words({"-s", "/s", "console-info", "--no-multiport=1"}));
}

TEST(Cli, HelpNeedsNoSocket)
{
    auto general = parse_words({"--help"});
    ASSERT_TRUE(general);
    ASSERT_TRUE(general->help);
    EXPECT_NE(general->help->find("blk-verify"), std::string::npos);
    EXPECT_NE(general->help->find("exit status"), std::string::npos);

    auto command = parse_words({"blk-verify", "-h"});
    ASSERT_TRUE(command);
    ASSERT_TRUE(command->help);
    EXPECT_NE(command->help->find("--qd"), std::string::npos);
    EXPECT_NE(command->help->find("--log-level"), std::string::npos);
    EXPECT_EQ(command->help->find("--bytes"), std::string::npos); // rng-read's, not ours
}

TEST(Cli, UsageErrorsSayWhatIsWrong)
{
    struct Case {
        std::vector<std::string_view> words;
        std::string expect;
    };
    const std::vector<Case> cases = {
        {{}, "no command"},
        {{"-s", "/s"}, "no command"},
        {{"blk-info"}, "-s SOCKET is required"},
        {{"-s", "/s", "frobnicate"}, "unknown command 'frobnicate'"},
        {{"-s", "/s", "blk-info", "extra"}, "unexpected argument 'extra'"},
        {{"-s", "/s", "blk-info", "--qd", "4"}, "unknown option '--qd' for blk-info"},
        {{"-s", "/s", "--qd", "4", "blk-verify"}, "unknown option '--qd'"},
        {{"-s"}, "-s needs a value"},
        {{"-s", "/s", "blk-verify", "--qd", "0"}, "--qd: 0 is out of range"},
        {{"-s", "/s", "blk-verify", "--qd", "x1"}, "--qd: 'x1' is not a number"},
        {{"-s", "/s", "blk-verify", "--qd", "-1"}, "is not a number"},
        {{"-s", "/s", "blk-verify", "--size", "1", "--request-size", "2048"}, "larger than"},
        {{"-s", "/s", "blk-verify", "--size", "1", "--request-size", "3"}, "whole number"},
        {{"-s", "/s", "blk-verify", "--qd", "64", "--request-size", "1024"}, "raise --memory"},
        {{"-s", "/s", "blk-verify", "--no-zeroes=1"}, "takes no value"},
        {{"-s", "/s", "--log-level", "loud", "blk-info"}, "not one of"},
        {{"-s", "/s", "--queue-size", "100", "blk-info"}, "not a power of two"},
        {{"-s", "/s", "input-read", "--timeout", "soon"}, "not a number of seconds"},
        {{"-s", "/s", "input-read", "--timeout", "-1"}, "not a number of seconds"},
    };
    for (const Case& c : cases) {
        auto inv = parse(c.words);
        ASSERT_FALSE(inv) << "accepted: " << testing::PrintToString(c.words);
        EXPECT_NE(inv.error().message().find(c.expect), std::string::npos)
            << inv.error().message() << " (expected '" << c.expect << "')";
    }
}

} // namespace
} // namespace vl::test_driver::cli
