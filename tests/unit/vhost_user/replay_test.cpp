// SPDX-License-Identifier: Apache-2.0
// Replays the requests QEMU 7.2 sends to a vhost-user-blk back-end
// (../shared/data/qemu-7.2-vhost-user-blk-sequence.log, captured with
// -trace vhost_user_*) through a socket into the dispatcher, and checks that
// every request is accepted in that order and answered exactly when QEMU
// read a reply, with the flags QEMU saw.
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>

#include "test_util.hpp"
#include "vhost_user/backend_dispatch.hpp"
#include "vhost_user/connection.hpp"

#ifndef VL_QEMU_BLK_SEQUENCE_LOG
#error "VL_QEMU_BLK_SEQUENCE_LOG must name the QEMU trace file"
#endif

namespace vl::vhost_user
{
namespace
{

struct TraceEvent {
    bool is_write = false; // front-end wrote a request; else it read a reply
    std::uint32_t request = 0;
    std::uint32_t flags = 0;
};

// The value after `prefix` in `token` ("req:21" -> 21), in `base`.
std::optional<std::uint32_t> field(const std::string& token, std::string_view prefix, int base)
{
    if (token.rfind(prefix, 0) != 0)
        return std::nullopt;
    try {
        return static_cast<std::uint32_t>(std::stoul(token.substr(prefix.size()), nullptr, base));
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

// "vhost_user_write req:21 flags:0x9" and "vhost_user_read req:21 flags:0x5";
// other lines (vhost_dev_start, ...) carry no message.
std::vector<TraceEvent> parse_trace(std::istream& in)
{
    std::vector<TraceEvent> events;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream words(line);
        std::string kind, req, flags;
        words >> kind >> req >> flags;
        if (kind != "vhost_user_write" && kind != "vhost_user_read")
            continue;
        auto request = field(req, "req:", 10);
        auto flag_bits = field(flags, "flags:0x", 16);
        EXPECT_TRUE(request && flag_bits) << "unparsable trace line: " << line;
        if (request && flag_bits)
            events.push_back({kind == "vhost_user_write", *request, *flag_bits});
    }
    return events;
}

class QemuReplay : public test::FdLeakTest
{
};

TEST_F(QemuReplay, ParsesTraceLines)
{
    std::istringstream in("vhost_user_write req:21 flags:0x9\n"
                          "vhost_dev_start 0x55ae671cdcc0:virtio-blk vrings:1\n"
                          "vhost_user_read req:21 flags:0x5\n");
    auto events = parse_trace(in);
    ASSERT_EQ(events.size(), 2U);
    EXPECT_TRUE(events[0].is_write);
    EXPECT_EQ(events[0].request, 21U);
    EXPECT_EQ(events[0].flags, 0x9U);
    EXPECT_FALSE(events[1].is_write);
    EXPECT_EQ(events[1].flags, 0x5U);
}

TEST_F(QemuReplay, Qemu72BlkSequenceIsAcceptedAndAnsweredLikeQemuExpects)
{
    std::ifstream in(VL_QEMU_BLK_SEQUENCE_LOG);
    if (!in)
        GTEST_SKIP() << "reference trace not found: " << VL_QEMU_BLK_SEQUENCE_LOG;
    auto events = parse_trace(in);
    ASSERT_GT(events.size(), 10U) << "the trace should hold a whole session";

    test::FakeHandler handler;
    BackendDispatcher dispatcher(handler, Logger("replay", LogLevel::error));
    auto pair = Connection::pair();
    ASSERT_TRUE(pair.ok());
    auto& [frontend, backend] = *pair;

    std::vector<Request> written;
    for (std::size_t i = 0; i < events.size(); ++i) {
        const TraceEvent& event = events[i];
        ASSERT_TRUE(event.is_write) << "event " << i << ": a read QEMU did not ask for";
        auto request = static_cast<Request>(event.request);
        SCOPED_TRACE("event " + std::to_string(i) + ": " + request_name(event.request));
        written.push_back(request);

        // What QEMU would have sent: a valid payload, the negotiated features.
        Message sent = test::sample_request(request, event.flags);
        if (request == Request::set_features)
            sent = Message(event.request, event.flags, test::bytes_of(handler.features));
        if (request == Request::set_protocol_features)
            sent = Message(event.request, event.flags, test::bytes_of(handler.protocol_features));
        ASSERT_TRUE(frontend.send(sent).ok());

        auto received = backend.receive();
        ASSERT_TRUE(received.ok()) << received.error().message();
        auto reply = dispatcher.dispatch(std::move(received).value());
        ASSERT_TRUE(reply.ok()) << reply.error().message();

        bool qemu_read_reply = i + 1 < events.size() && !events[i + 1].is_write;
        ASSERT_EQ(reply->has_value(), qemu_read_reply);
        if (!qemu_read_reply)
            continue;
        const TraceEvent& read = events[++i];
        ASSERT_TRUE(backend.send(**reply).ok());
        auto got = frontend.receive();
        ASSERT_TRUE(got.ok()) << got.error().message();
        EXPECT_EQ(got->request(), read.request);
        EXPECT_EQ(got->flags(), read.flags);
        EXPECT_TRUE(validate_reply_header(*got, request).ok());
    }
    EXPECT_EQ(handler.calls, written) << "every request reached the handler, in order";
    EXPECT_TRUE(dispatcher.reply_ack_enabled()) << "QEMU negotiated REPLY_ACK in this trace";
}

} // namespace
} // namespace vl::vhost_user
