// SPDX-License-Identifier: Apache-2.0
// Replays the order of requests QEMU 7.2 sends to a vhost-user-blk back-end
// (../shared/data/qemu-7.2-vhost-user-blk-sequence.log, captured with
// -trace vhost_user_*) against a real session: every request carries
// plausible content (memory in two regions, a ring, eventfds), every reply
// comes exactly where QEMU read one with the flags QEMU saw, and while the
// device is started between vhost_dev_start and vhost_dev_stop requests
// flow through the ring as a guest would send them.
#include <fstream>
#include <sstream>

#include "harness.hpp"

#ifndef VL_QEMU_BLK_SEQUENCE_LOG
#error "VL_QEMU_BLK_SEQUENCE_LOG must name the QEMU trace file"
#endif

namespace vl::backend::test
{
namespace
{

using vhost_user::Message;
using vhost_user::Request;
using vhost_user::test::bytes_of;

struct Event {
    enum Kind { write, read, dev_start, dev_stop } kind;
    std::uint32_t request = 0;
    std::uint32_t flags = 0;
};

// "vhost_user_write req:21 flags:0x9", "vhost_user_read req:21 flags:0x5",
// "vhost_dev_start ...", "vhost_dev_stop ...".
std::vector<Event> parse(std::istream& in)
{
    std::vector<Event> events;
    for (std::string line; std::getline(in, line);) {
        std::istringstream words(line);
        std::string kind, req, flags;
        words >> kind >> req >> flags;
        if (kind == "vhost_dev_start" || kind == "vhost_dev_stop") {
            events.push_back({kind == "vhost_dev_start" ? Event::dev_start : Event::dev_stop});
            continue;
        }
        if ((kind != "vhost_user_write" && kind != "vhost_user_read") || !req.starts_with("req:") ||
            !flags.starts_with("flags:0x")) {
            ADD_FAILURE() << "unparsable trace line: " << line;
            continue;
        }
        events.push_back({kind == "vhost_user_write" ? Event::write : Event::read,
                          static_cast<std::uint32_t>(std::stoul(req.substr(4))),
                          static_cast<std::uint32_t>(std::stoul(flags.substr(8), nullptr, 16))});
    }
    return events;
}

UniqueFd dup_fd(int fd)
{
    return UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

std::vector<UniqueFd> one_fd(int fd)
{
    std::vector<UniqueFd> v;
    v.push_back(dup_fd(fd));
    return v;
}

// What QEMU would send for each request of the trace, given the state so far.
class QemuModel
{
  public:
    QemuModel(Device& device, GuestRam& ram, DriverQueue& queue)
        : device_(device), ram_(ram), queue_(queue)
    {
        auto pair = vhost_user::Connection::pair();
        channel_ = std::move(pair->first);
        channel_peer_ = std::move(pair->second);
    }

    Message make(Request request, std::uint32_t flags)
    {
        const auto code = vhost_user::to_code(request);
        auto state = [&](std::uint32_t num) {
            return Message(code, flags, bytes_of(vhost_user::VringState{0, num}));
        };
        auto vring_fd = [&](int fd) {
            return Message(code, flags, bytes_of(std::uint64_t{0}), one_fd(fd));
        };
        switch (request) {
        case Request::set_protocol_features:
            return Message(code, flags,
                           bytes_of(framework_protocol_features() | device_.protocol_features()));
        case Request::set_features:
            return Message(code, flags, bytes_of(offered_features(device_)));
        case Request::set_backend_req_fd:
            return Message(code, flags, {}, one_fd(channel_peer_.fd()));
        case Request::set_vring_call:
            return vring_fd(queue_.call_fd());
        case Request::set_vring_err:
            return vring_fd(queue_.err_fd());
        case Request::set_vring_kick:
            return vring_fd(queue_.kick_fd());
        case Request::get_config:
            return Message(code, flags,
                           vhost_user::encode_config(0, std::vector<std::byte>(16),
                                                     vhost_user::ConfigFlags::writable));
        case Request::add_mem_reg: {
            // Guest RAM in two regions, as QEMU sends a PC's RAM below and
            // above a hole.
            const std::uint64_t half = ram_.size() / 2;
            const auto region =
                regions_added_++ == 0 ? ram_.region(0, half) : ram_.region(half, half);
            return Message(code, flags, bytes_of(vhost_user::SingleMemoryRegion{0, region.region}),
                           one_fd(ram_.fd()));
        }
        case Request::set_vring_num:
            return state(16);
        case Request::set_vring_base:
            return state(base);
        case Request::set_vring_addr:
            return Message::with_payload(code, flags, queue_.addr(0));
        case Request::set_vring_enable:
            return state(started ? 1 : 0);
        case Request::get_vring_base:
            return state(0);
        default:
            return Message(code, flags);
        }
    }

    bool started = false;
    std::uint32_t base = 0;

  private:
    Device& device_;
    GuestRam& ram_;
    DriverQueue& queue_;
    vhost_user::Connection channel_{UniqueFd()};
    vhost_user::Connection channel_peer_{UniqueFd()};
    int regions_added_ = 0;
};

TEST(QemuReplay, ParsesTraceLines)
{
    std::istringstream in("vhost_user_write req:21 flags:0x9\n"
                          "vhost_dev_start 0x55ae671cdcc0:virtio-blk vrings:1\n"
                          "vhost_user_read req:21 flags:0x5\n");
    auto events = parse(in);
    ASSERT_EQ(events.size(), 3U);
    EXPECT_EQ(events[0].kind, Event::write);
    EXPECT_EQ(events[0].request, 21U);
    EXPECT_EQ(events[0].flags, 0x9U);
    EXPECT_EQ(events[1].kind, Event::dev_start);
    EXPECT_EQ(events[2].kind, Event::read);
    EXPECT_EQ(events[2].flags, 0x5U);
}

TEST(QemuReplay, Qemu72BlkSessionRunsAgainstTheBackend)
{
    std::ifstream in(VL_QEMU_BLK_SEQUENCE_LOG);
    if (!in)
        GTEST_SKIP() << "reference trace not found: " << VL_QEMU_BLK_SEQUENCE_LOG;
    const auto events = parse(in);
    ASSERT_GT(events.size(), 10U) << "the trace should hold a whole session";

    TestDevice device(1);
    GuestRam ram;
    DriverQueue queue(ram, 0, 16, true);
    QemuModel qemu(device, ram, queue);
    ServedSession s(device);
    auto& c = s.frontend().connection();
    int requests_served = 0;
    int starts = 0;

    for (std::size_t i = 0; i < events.size(); ++i) {
        const Event& e = events[i];
        if (e.kind == Event::dev_start) {
            qemu.started = true;
            ++starts;
            continue;
        }
        if (e.kind == Event::dev_stop) {
            // The guest used the device while it was started.
            for (int n = 0; n < 3; ++n) {
                const std::string text =
                    "start " + std::to_string(starts) + " request " + std::to_string(n);
                const std::uint64_t out = (1 << 20) + 0x800;
                queue.submit({put(ram, 1 << 20, text)},
                             {{ram.guest(out), static_cast<std::uint32_t>(text.size())}});
                ASSERT_TRUE(queue.wait_used().has_value()) << text;
                EXPECT_EQ(read_back(ram, out, text.size()), text);
                ++requests_served;
            }
            qemu.started = false;
            continue;
        }
        ASSERT_EQ(e.kind, Event::write) << "event " << i << ": a read QEMU did not ask for";
        const auto request = static_cast<Request>(e.request);
        SCOPED_TRACE("event " + std::to_string(i) + ": " + vhost_user::request_name(e.request));
        ASSERT_TRUE(c.send(qemu.make(request, e.flags)).ok());
        if (i + 1 >= events.size() || events[i + 1].kind != Event::read)
            continue;
        const Event& read = events[++i];
        auto reply = c.receive();
        ASSERT_TRUE(reply.ok()) << reply.error().message();
        EXPECT_EQ(reply->request(), read.request);
        EXPECT_EQ(reply->flags(), read.flags);
        if (request == Request::get_vring_base) {
            auto state = reply->payload_as<vhost_user::VringState>();
            ASSERT_TRUE(state.ok());
            EXPECT_EQ(state->num, static_cast<std::uint32_t>(requests_served))
                << "the ring stopped after everything the guest sent";
            qemu.base = state->num;
        } else if (reply->payload().size() == sizeof(std::uint64_t) &&
                   (e.flags & vhost_user::kNeedReplyFlag) != 0) {
            EXPECT_EQ(*vhost_user::read_u64(*reply), vhost_user::kAckSuccess);
        }
    }
    EXPECT_GE(starts, 2) << "the trace starts the device twice";
    EXPECT_FALSE(readable_within(c.fd(), 50ms)) << "a reply QEMU would not have read";
    EXPECT_TRUE(s.finish().ok()) << s.final_result().error().message();
    EXPECT_EQ(device.starts(0), starts);
}

} // namespace
} // namespace vl::backend::test
