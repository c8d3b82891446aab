// SPDX-License-Identifier: Apache-2.0
// The front-end client against the back-end dispatcher over a socket pair,
// the dispatcher on its own, and the front-end against a scripted (and
// misbehaving) back-end.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>

#include "test_util.hpp"
#include "vhost_user/backend_channel.hpp"
#include "vhost_user/backend_dispatch.hpp"
#include "vhost_user/frontend.hpp"

namespace vl::vhost_user
{
namespace
{

using namespace std::chrono_literals;
using test::bytes_of;
using test::FakeHandler;
using test::make_eventfd;
using test::make_memfd;
using test::sample_request;

Logger quiet_logger()
{
    return Logger("vhost-user-test", LogLevel::error);
}

// --- front-end <-> dispatcher ------------------------------------------------

class FrontendAndDispatcher : public test::FdLeakTest
{
  protected:
    void SetUp() override
    {
        FdLeakTest::SetUp();
        auto pair = Connection::pair();
        ASSERT_TRUE(pair.ok());
        frontend_.emplace(std::move(pair->first), FrontendOptions{5s});
        backend_thread_ = std::thread([this, conn = std::move(pair->second)]() mutable {
            BackendDispatcher dispatcher(handler_, quiet_logger());
            for (;;) {
                Status served = dispatcher.serve_one(conn);
                if (!served.ok()) {
                    backend_error_ = served.error();
                    break; // a real back-end logs this and closes the connection
                }
            }
        });
    }
    void TearDown() override
    {
        stop_backend();
        handler_.drop_fds();
        FdLeakTest::TearDown();
    }
    // Ends the session from the front-end side and waits for the back-end.
    void stop_backend()
    {
        if (frontend_)
            frontend_->connection().close();
        if (backend_thread_.joinable())
            backend_thread_.join();
        frontend_.reset();
    }
    void enable_reply_ack()
    {
        auto offered = frontend_->get_protocol_features();
        ASSERT_TRUE(offered.ok());
        ASSERT_TRUE(has(*offered, ProtocolFeature::reply_ack));
        ASSERT_TRUE(frontend_->set_protocol_features(*offered).ok());
        ASSERT_TRUE(frontend_->reply_ack_enabled());
    }

    FakeHandler handler_; // touched by the back-end thread until stop_backend()
    std::optional<Frontend> frontend_;
    std::thread backend_thread_;
    std::optional<Error> backend_error_;
};

#define ASSERT_OK(expr)                                                                            \
    do {                                                                                           \
        const auto& vl_result_ = (expr);                                                           \
        ASSERT_TRUE(vl_result_.ok()) << #expr << ": " << vl_result_.error().message();             \
    } while (0)

TEST_F(FrontendAndDispatcher, NegotiatesAndSetsUpARing)
{
    Frontend& fe = *frontend_;
    auto features = fe.get_features();
    ASSERT_OK(features);
    EXPECT_EQ(*features, handler_.features);
    ASSERT_OK(fe.set_features(*features));
    auto protocol = fe.get_protocol_features();
    ASSERT_OK(protocol);
    EXPECT_EQ(*protocol, handler_.protocol_features);
    std::uint64_t without_ack = *protocol & ~bit(ProtocolFeature::reply_ack);
    ASSERT_OK(fe.set_protocol_features(without_ack));
    EXPECT_FALSE(fe.reply_ack_enabled());
    ASSERT_OK(fe.set_owner());
    auto queues = fe.get_queue_num();
    ASSERT_OK(queues);
    EXPECT_EQ(*queues, 2U);

    auto config = fe.get_config(8, 16);
    ASSERT_OK(config);
    ASSERT_EQ(config->size(), 16U);
    EXPECT_EQ((*config)[0], std::byte{8});
    EXPECT_EQ((*config)[15], std::byte{23});
    std::array<std::byte, 2> written{std::byte{0xaa}, std::byte{0xbb}};
    ASSERT_OK(fe.set_config(4, written));

    UniqueFd memory = make_memfd(0x10000);
    MemoryRegion region{0, 0x10000, 0x7f0000000000, 0};
    std::array<SharedRegion, 1> table{{{region, memory.get()}}};
    ASSERT_OK(fe.set_mem_table(table));
    auto slots = fe.get_max_mem_slots();
    ASSERT_OK(slots);
    EXPECT_EQ(*slots, 8U);
    UniqueFd more = make_memfd(0x1000);
    MemoryRegion extra{0x100000, 0x1000, 0x7f0000100000, 0};
    ASSERT_OK(fe.add_mem_reg({extra, more.get()}));
    ASSERT_OK(fe.rem_mem_reg(extra));

    UniqueFd kick = make_eventfd(), call = make_eventfd();
    ASSERT_OK(fe.set_vring_num(0, 256));
    ASSERT_OK(fe.set_vring_addr(VringAddr{0, 0, 0x1000, 0x3000, 0x2000, 0}));
    ASSERT_OK(fe.set_vring_base(0, 3));
    ASSERT_OK(fe.set_vring_kick(0, kick.get()));
    ASSERT_OK(fe.set_vring_call(0, call.get()));
    ASSERT_OK(fe.set_vring_err(0, kNoFd));
    ASSERT_OK(fe.set_vring_enable(0, true));
    ASSERT_OK(fe.set_status(0x0f));
    auto status = fe.get_status();
    ASSERT_OK(status);
    EXPECT_EQ(*status, 0x0f);
    auto base = fe.get_vring_base(0);
    ASSERT_OK(base);
    EXPECT_EQ(*base, 8U) << "the fake handler reports 5 more than it was given";

    auto inflight = fe.get_inflight_fd(1, 128);
    ASSERT_OK(inflight);
    EXPECT_EQ(inflight->description.mmap_size, 4096U);
    EXPECT_EQ(inflight->description.num_queues, 1U);
    EXPECT_EQ(inflight->description.queue_size, 128U);
    ASSERT_TRUE(inflight->fd.valid());
    ASSERT_OK(fe.set_inflight_fd(inflight->description, inflight->fd.get()));
    ASSERT_OK(fe.reset_device());
    EXPECT_FALSE(fe.broken().has_value());

    stop_backend();
    ASSERT_TRUE(backend_error_.has_value());
    EXPECT_TRUE(peer_closed(*backend_error_)) << backend_error_->message();

    EXPECT_EQ(handler_.acked_features, handler_.features);
    EXPECT_EQ(handler_.acked_protocol_features, without_ack);
    EXPECT_EQ(handler_.config[4], std::byte{0xaa});
    EXPECT_EQ(handler_.config[5], std::byte{0xbb});
    ASSERT_EQ(handler_.regions.size(), 1U) << "added then removed the extra region";
    EXPECT_EQ(handler_.regions[0].region.memory_size, 0x10000U);
    EXPECT_EQ(handler_.regions[0].region.userspace_addr, 0x7f0000000000U);
    EXPECT_EQ(handler_.vring_num[0], 256U);
    EXPECT_EQ(handler_.vring_addr[0].used_user_addr, 0x3000U);
    EXPECT_TRUE(handler_.vring_enabled[0]);
    EXPECT_FALSE(handler_.err[0].valid()) << "kNoFd arrives as an invalid fd";
    EXPECT_EQ(handler_.resets, 1);
    EXPECT_TRUE(handler_.inflight.valid());

    // The fds the handler got are the front-end's objects.
    std::uint64_t one = 1, value = 0;
    ASSERT_EQ(::write(kick.get(), &one, sizeof(one)), 8);
    ASSERT_EQ(::read(handler_.kick[0].get(), &value, sizeof(value)), 8);
    EXPECT_EQ(value, 1U);
    ASSERT_EQ(::write(handler_.call[0].get(), &one, sizeof(one)), 8);
    ASSERT_EQ(::read(call.get(), &value, sizeof(value)), 8);

    std::vector<Request> expected = {
        Request::get_features,
        Request::set_features,
        Request::get_protocol_features,
        Request::set_protocol_features,
        Request::set_owner,
        Request::get_queue_num,
        Request::get_config,
        Request::set_config,
        Request::set_mem_table,
        Request::get_max_mem_slots,
        Request::add_mem_reg,
        Request::rem_mem_reg,
        Request::set_vring_num,
        Request::set_vring_addr,
        Request::set_vring_base,
        Request::set_vring_kick,
        Request::set_vring_call,
        Request::set_vring_err,
        Request::set_vring_enable,
        Request::set_status,
        Request::get_status,
        Request::get_vring_base,
        Request::get_inflight_fd,
        Request::set_inflight_fd,
        Request::reset_device,
    };
    EXPECT_EQ(handler_.calls, expected);
}

TEST_F(FrontendAndDispatcher, ReplyAckReportsAFailureAndKeepsTheSession)
{
    enable_reply_ack();
    handler_.fail.insert(Request::set_vring_num);
    auto refused = frontend_->set_vring_num(0, 100000);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code(), EIO);
    EXPECT_EQ(refused.error().message(), "SET_VRING_NUM: the back-end refused the request (ack "
                                         "status 1); its log says why");
    EXPECT_FALSE(frontend_->broken().has_value());
    ASSERT_OK(frontend_->set_vring_base(0, 0)); // acked with success
    ASSERT_OK(frontend_->get_features());
    stop_backend();
    EXPECT_TRUE(peer_closed(*backend_error_));
}

TEST_F(FrontendAndDispatcher, WithoutReplyAckAFailureEndsTheSession)
{
    handler_.fail.insert(Request::set_vring_num);
    // No ack was asked for, so the call itself cannot know...
    ASSERT_OK(frontend_->set_vring_num(0, 100000));
    // ...but the back-end closed the connection, and the next call sees it.
    auto next = frontend_->get_features();
    ASSERT_FALSE(next.ok());
    EXPECT_TRUE(peer_closed(next.error())) << next.error().message();
    EXPECT_TRUE(frontend_->broken().has_value());
    stop_backend();
    ASSERT_TRUE(backend_error_.has_value());
    EXPECT_EQ(backend_error_->message(), "SET_VRING_NUM failed: fake failure of SET_VRING_NUM");
}

TEST_F(FrontendAndDispatcher, ConfigRefusalKeepsTheSession)
{
    handler_.fail.insert(Request::get_config);
    auto config = frontend_->get_config(0, 8);
    ASSERT_FALSE(config.ok());
    EXPECT_EQ(config.error().code(), EIO);
    EXPECT_NE(config.error().message().find("the back-end refused"), std::string::npos);
    EXPECT_FALSE(frontend_->broken().has_value());
    ASSERT_OK(frontend_->get_features());
}

TEST_F(FrontendAndDispatcher, AFailedGetEndsTheSession)
{
    handler_.fail.insert(Request::get_features);
    auto features = frontend_->get_features();
    ASSERT_FALSE(features.ok());
    EXPECT_TRUE(peer_closed(features.error())) << features.error().message();
    stop_backend();
    EXPECT_EQ(backend_error_->message(), "GET_FEATURES failed: fake failure of GET_FEATURES");
}

TEST_F(FrontendAndDispatcher, FrontendChecksItsArguments)
{
    EXPECT_EQ(frontend_->set_vring_kick(256, kNoFd).error().code(), EINVAL);
    EXPECT_EQ(frontend_->set_backend_req_fd(-1).error().code(), EBADF);
    EXPECT_EQ(frontend_->get_config(250, 16).error().code(), EINVAL);
    EXPECT_EQ(frontend_->set_mem_table({}).error().code(), EINVAL);
    std::array<SharedRegion, 1> bad{{{test::kSampleRegion, -1}}};
    EXPECT_EQ(frontend_->set_mem_table(bad).error().code(), EBADF);
    EXPECT_FALSE(frontend_->broken().has_value()) << "nothing was sent";
    ASSERT_OK(frontend_->get_features());
}

// --- the dispatcher on its own -----------------------------------------------

class Dispatcher : public test::FdLeakTest
{
  protected:
    void TearDown() override
    {
        handler_.drop_fds();
        FdLeakTest::TearDown();
    }
    Result<std::optional<Message>> dispatch(Message m)
    {
        return dispatcher_.dispatch(std::move(m));
    }
    // The u64 of an ack/status reply to `request`, checked.
    std::uint64_t ack_of(const std::optional<Message>& reply, Request request)
    {
        EXPECT_TRUE(reply.has_value());
        if (!reply)
            return ~std::uint64_t{0};
        EXPECT_TRUE(validate_reply_header(*reply, request).ok());
        auto value = read_u64(*reply);
        EXPECT_TRUE(value.ok());
        return value.ok() ? *value : ~std::uint64_t{0};
    }
    void negotiate(std::uint64_t protocol_features)
    {
        auto reply = dispatch(make_request(Request::set_protocol_features, protocol_features));
        ASSERT_TRUE(reply.ok()) << reply.error().message();
        EXPECT_FALSE(reply->has_value());
        EXPECT_EQ(dispatcher_.acked_protocol_features(), protocol_features);
    }

    FakeHandler handler_;
    BackendDispatcher dispatcher_{handler_, quiet_logger()};
};

TEST_F(Dispatcher, AnswersEveryRequestAsTheSpecSays)
{
    negotiate(handler_.protocol_features);
    for (Request request : test::all_requests()) {
        SCOPED_TRACE(request_name(request));
        for (bool need_reply : {false, true}) {
            handler_.calls.clear();
            auto reply = dispatch(sample_request(request, request_flags(need_reply)));
            bool unsupported = request == Request::create_crypto_session ||
                               request == Request::postcopy_advise ||
                               request == Request::get_shared_object;
            if (unsupported) {
                ASSERT_FALSE(reply.ok());
                EXPECT_NE(reply.error().message().find("is not supported"), std::string::npos);
                continue;
            }
            // Refused by design (their features are never offered): acked as
            // failed when asked, otherwise a protocol error.
            bool refused = request == Request::close_crypto_session ||
                           request == Request::postcopy_listen ||
                           request == Request::gpu_set_socket;
            if (refused && !need_reply) {
                EXPECT_FALSE(reply.ok());
                continue;
            }
            ASSERT_TRUE(reply.ok()) << reply.error().message();
            if (refused || request == Request::postcopy_end) {
                EXPECT_EQ(ack_of(*reply, request), kAckFailure);
                continue;
            }
            ASSERT_EQ(handler_.calls.size(), 1U);
            EXPECT_EQ(handler_.calls[0], request);
            bool expect_reply = request_has_reply(request) || need_reply;
            ASSERT_EQ(reply->has_value(), expect_reply);
            if (!expect_reply)
                continue;
            EXPECT_TRUE(validate_reply_header(**reply, request).ok());
            EXPECT_EQ((*reply)->flags(), kVersion | kReplyFlag);
            if (!request_has_reply(request)) {
                EXPECT_EQ(ack_of(*reply, request), kAckSuccess);
            }
        }
    }
}

TEST_F(Dispatcher, AcksOnlyWhenReplyAckIsNegotiated)
{
    Message asked = make_request(Request::set_vring_num, VringState{0, 64}, true);
    auto before = dispatch(std::move(asked));
    ASSERT_TRUE(before.ok());
    EXPECT_FALSE(before->has_value()) << "NEED_REPLY means nothing without REPLY_ACK";

    negotiate(bit(ProtocolFeature::reply_ack));
    EXPECT_TRUE(dispatcher_.reply_ack_enabled());
    auto after = dispatch(make_request(Request::set_vring_num, VringState{0, 64}, true));
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(ack_of(*after, Request::set_vring_num), kAckSuccess);
    auto unasked = dispatch(make_request(Request::set_vring_num, VringState{0, 64}, false));
    ASSERT_TRUE(unasked.ok());
    EXPECT_FALSE(unasked->has_value());

    handler_.fail.insert(Request::set_vring_num);
    auto failed = dispatch(make_request(Request::set_vring_num, VringState{0, 64}, true));
    ASSERT_TRUE(failed.ok()) << "an acked failure is not a protocol error";
    EXPECT_EQ(ack_of(*failed, Request::set_vring_num), kAckFailure);
    auto unacked = dispatch(make_request(Request::set_vring_num, VringState{0, 64}, false));
    ASSERT_FALSE(unacked.ok()) << "an unacked failure ends the session";
}

TEST_F(Dispatcher, RepliesToUnknownRequestsOnlyWhenItCan)
{
    auto plain = dispatch(Message(99, kVersion));
    ASSERT_FALSE(plain.ok());
    EXPECT_EQ(plain.error().message(), "unknown request 99 (flags 0x1, 0 bytes)");
    negotiate(bit(ProtocolFeature::reply_ack));
    auto asked = dispatch(Message(99, kVersion | kNeedReplyFlag, std::vector<std::byte>(3)));
    ASSERT_TRUE(asked.ok());
    ASSERT_TRUE(asked->has_value());
    EXPECT_EQ((*asked)->request(), 99U);
    EXPECT_EQ(*read_u64(**asked), kAckFailure);
    EXPECT_FALSE(dispatch(Message(99, kVersion)).ok());
}

TEST_F(Dispatcher, PassesMalformedRequestsBackAsErrors)
{
    auto bad =
        dispatch(Message(to_code(Request::set_vring_num), kVersion, std::vector<std::byte>(4)));
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().message(), "SET_VRING_NUM: payload is 4 bytes, expected 8");
    EXPECT_TRUE(handler_.calls.empty()) << "the handler never sees a malformed message";
}

TEST_F(Dispatcher, RefusesInbandNotificationsWithoutTheirCompanions)
{
    auto reply = dispatch(
        make_request(Request::set_protocol_features,
                     bit(ProtocolFeature::inband_notifications) | bit(ProtocolFeature::reply_ack)));
    ASSERT_FALSE(reply.ok());
    EXPECT_NE(reply.error().message().find("INBAND_NOTIFICATIONS"), std::string::npos);
    EXPECT_EQ(dispatcher_.acked_protocol_features(), 0U);
    negotiate(bit(ProtocolFeature::inband_notifications) | bit(ProtocolFeature::reply_ack) |
              bit(ProtocolFeature::backend_req));
}

TEST_F(Dispatcher, SendsAnEmptyConfigWhenTheDeviceAnswersWrongly)
{
    class ShortConfig : public FakeHandler
    {
      public:
        Result<std::vector<std::byte>> get_config(std::uint32_t, std::uint32_t,
                                                  ConfigFlags) override
        {
            return std::vector<std::byte>(3);
        }
    } handler;
    BackendDispatcher dispatcher(handler, quiet_logger());
    auto reply = dispatcher.dispatch(sample_request(Request::get_config));
    ASSERT_TRUE(reply.ok());
    ASSERT_TRUE(reply->has_value());
    ASSERT_EQ((*reply)->payload().size(), sizeof(ConfigHeader));
    auto header = read_payload<ConfigHeader>(**reply, "GET_CONFIG reply");
    ASSERT_TRUE(header.ok());
    EXPECT_EQ(header->size, 0U);
}

TEST_F(Dispatcher, StatusRepliesCarryTheOutcome)
{
    auto log = dispatch(sample_request(Request::set_log_base));
    ASSERT_TRUE(log.ok());
    EXPECT_EQ(ack_of(*log, Request::set_log_base), kAckSuccess);
    handler_.fail.insert(Request::iotlb_msg);
    auto iotlb = dispatch(sample_request(Request::iotlb_msg));
    ASSERT_TRUE(iotlb.ok()) << "the status reply reports the failure";
    EXPECT_EQ(ack_of(*iotlb, Request::iotlb_msg), kAckFailure);
    auto state = dispatch(sample_request(Request::set_device_state_fd));
    ASSERT_TRUE(state.ok());
    EXPECT_EQ(ack_of(*state, Request::set_device_state_fd), kDeviceStateNoFdMask);
}

TEST_F(Dispatcher, DefaultHandlerMethodsRefuseOptionalRequests)
{
    class Minimal : public BackendHandler
    {
      public:
        Status set_owner() override { return ok_status(); }
        Result<std::uint64_t> get_features() override { return std::uint64_t{0}; }
        Status set_features(std::uint64_t) override { return ok_status(); }
        Result<std::uint64_t> get_protocol_features() override
        {
            return bit(ProtocolFeature::reply_ack);
        }
        Status set_protocol_features(std::uint64_t) override { return ok_status(); }
        Result<std::uint64_t> get_queue_num() override { return std::uint64_t{1}; }
        Status set_mem_table(std::vector<RegionFd>) override { return ok_status(); }
        Status set_vring_num(std::uint32_t, std::uint32_t) override { return ok_status(); }
        Status set_vring_addr(const VringAddr&) override { return ok_status(); }
        Status set_vring_base(std::uint32_t, std::uint32_t) override { return ok_status(); }
        Result<std::uint32_t> get_vring_base(std::uint32_t) override { return 0U; }
        Status set_vring_kick(std::uint32_t, UniqueFd) override { return ok_status(); }
        Status set_vring_call(std::uint32_t, UniqueFd) override { return ok_status(); }
        Status set_vring_err(std::uint32_t, UniqueFd) override { return ok_status(); }
        Status set_vring_enable(std::uint32_t, bool) override { return ok_status(); }
        Result<std::vector<std::byte>> get_config(std::uint32_t, std::uint32_t,
                                                  ConfigFlags) override
        {
            return Error("no config", ENOTSUP);
        }
        Status set_config(std::uint32_t, std::span<const std::byte>, ConfigFlags) override
        {
            return Error("no config", ENOTSUP);
        }
    } minimal;
    BackendDispatcher dispatcher(minimal, quiet_logger());
    ASSERT_TRUE(
        dispatcher
            .dispatch(make_request(Request::set_protocol_features, bit(ProtocolFeature::reply_ack)))
            .ok());
    auto add = dispatcher.dispatch(sample_request(Request::add_mem_reg, request_flags(true)));
    ASSERT_TRUE(add.ok());
    EXPECT_EQ(ack_of(*add, Request::add_mem_reg), kAckFailure);
    auto slots = dispatcher.dispatch(sample_request(Request::get_max_mem_slots));
    ASSERT_FALSE(slots.ok());
    EXPECT_EQ(slots.error().message(),
              "GET_MAX_MEM_SLOTS failed: GET_MAX_MEM_SLOTS is not supported by this back-end");
    auto owner = dispatcher.dispatch(sample_request(Request::reset_owner, request_flags(true)));
    ASSERT_TRUE(owner.ok());
    EXPECT_EQ(ack_of(*owner, Request::reset_owner), kAckSuccess) << "deprecated: ignored";
}

// --- the front-end against a scripted back-end ------------------------------

// A back-end played by a script: each step gets the received request and
// returns the reply to send (or nothing).
class ScriptedBackend : public test::FdLeakTest
{
  protected:
    using Step = std::function<std::optional<Message>(Message&)>;

    void start(std::vector<Step> steps, FrontendOptions options = FrontendOptions{5s})
    {
        auto pair = Connection::pair();
        ASSERT_TRUE(pair.ok());
        frontend_.emplace(std::move(pair->first), options);
        thread_ =
            std::thread([steps = std::move(steps), conn = std::move(pair->second), this]() mutable {
                for (Step& step : steps) {
                    auto m = conn.receive();
                    if (!m.ok())
                        return;
                    flags_seen_.push_back(m->flags());
                    if (auto reply = step(*m))
                        (void)conn.send(*reply);
                }
                // Hold the connection open until the front-end goes away.
                (void)conn.receive();
            });
    }
    void TearDown() override
    {
        finish();
        FdLeakTest::TearDown();
    }
    // Closes the front-end and waits for the script to end.
    void finish()
    {
        if (frontend_)
            frontend_->connection().close();
        if (thread_.joinable())
            thread_.join();
        frontend_.reset();
    }
    static Step reply_u64(std::uint64_t value)
    {
        return [value](Message& m) { return std::optional(make_u64_reply(m.header(), value)); };
    }
    static Step no_reply()
    {
        return [](Message&) { return std::optional<Message>(); };
    }

    std::optional<Frontend> frontend_;
    std::thread thread_;
    std::vector<std::uint32_t> flags_seen_;
};

TEST_F(ScriptedBackend, FrontendSetsNeedReplyOnlyWithReplyAck)
{
    start({no_reply(), no_reply(), reply_u64(kAckSuccess), reply_u64(0x1234)});
    ASSERT_OK(frontend_->set_vring_num(0, 64));
    ASSERT_OK(frontend_->set_protocol_features(bit(ProtocolFeature::reply_ack)));
    ASSERT_OK(frontend_->set_vring_num(0, 64));
    auto features = frontend_->get_features();
    ASSERT_OK(features);
    EXPECT_EQ(*features, 0x1234U);
    finish();
    std::vector<std::uint32_t> expected = {kVersion, kVersion, kVersion | kNeedReplyFlag, kVersion};
    EXPECT_EQ(flags_seen_, expected) << "GET_* never carry NEED_REPLY";
}

TEST_F(ScriptedBackend, FrontendReportsAFailureAck)
{
    start({no_reply(), reply_u64(3), reply_u64(0)});
    ASSERT_OK(frontend_->set_protocol_features(bit(ProtocolFeature::reply_ack)));
    auto refused = frontend_->set_vring_enable(0, true);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().message().find("ack status 3"), std::string::npos);
    ASSERT_OK(frontend_->set_vring_enable(0, true));
}

TEST_F(ScriptedBackend, FrontendRejectsAReplyToAnotherRequestAndStaysBroken)
{
    start({[](Message&) {
        Header other{to_code(Request::get_protocol_features), kVersion, 0};
        return std::optional(make_u64_reply(other, 1));
    }});
    auto features = frontend_->get_features();
    ASSERT_FALSE(features.ok());
    EXPECT_EQ(features.error().message(),
              "GET_FEATURES reply: got a reply to GET_PROTOCOL_FEATURES instead; the connection "
              "is out of step and must be reopened");
    ASSERT_TRUE(frontend_->broken().has_value());
    EXPECT_FALSE(frontend_->connection().valid()) << "a wrong reply closes the connection";
    auto later = frontend_->set_owner();
    ASSERT_FALSE(later.ok());
    EXPECT_NE(later.error().message().find("unusable after an earlier error"), std::string::npos);
}

TEST_F(ScriptedBackend, FrontendRejectsMalformedReplies)
{
    start({[](Message& m) {
        return std::optional(make_reply(m.header(), std::vector<std::byte>(4)));
    }});
    auto features = frontend_->get_features();
    ASSERT_FALSE(features.ok());
    EXPECT_EQ(features.error().message(), "GET_FEATURES reply: payload is 4 bytes, expected 8");
}

TEST_F(ScriptedBackend, FrontendRejectsAReplyWithoutTheReplyFlag)
{
    start({[](Message& m) {
        return std::optional(Message(m.request(), kVersion, bytes_of(std::uint64_t{1})));
    }});
    auto features = frontend_->get_features();
    ASSERT_FALSE(features.ok());
    EXPECT_NE(features.error().message().find("lacks the REPLY flag"), std::string::npos);
}

TEST_F(ScriptedBackend, FrontendRejectsAVringBaseForAnotherRing)
{
    start({[](Message& m) { return std::optional(make_reply(m.header(), VringState{1, 9})); }});
    auto base = frontend_->get_vring_base(0);
    ASSERT_FALSE(base.ok());
    EXPECT_EQ(base.error().message(), "GET_VRING_BASE reply: for ring 1, but ring 0 was asked for");
}

TEST_F(ScriptedBackend, FrontendRejectsAnInflightBufferWithoutFd)
{
    start({[](Message& m) {
        return std::optional(make_reply(m.header(), InflightDescription{4096, 0, 1, 128, 0}));
    }});
    auto inflight = frontend_->get_inflight_fd(1, 128);
    ASSERT_FALSE(inflight.ok());
    EXPECT_NE(inflight.error().message().find("0 file descriptors attached, expected 1"),
              std::string::npos);
}

TEST_F(ScriptedBackend, FrontendGivesUpOnASilentBackend)
{
    start({no_reply()}, FrontendOptions{100ms});
    auto start_time = std::chrono::steady_clock::now();
    auto features = frontend_->get_features();
    auto waited = std::chrono::steady_clock::now() - start_time;
    ASSERT_FALSE(features.ok());
    EXPECT_EQ(features.error().code(), ETIMEDOUT);
    EXPECT_NE(features.error().message().find("GET_FEATURES: no valid reply: timed out"),
              std::string::npos)
        << features.error().message();
    EXPECT_LT(waited, 3s);
}

TEST_F(ScriptedBackend, FrontendAcceptsAnEmptyInflightAnswer)
{
    start({[](Message& m) {
        return std::optional(make_reply(m.header(), InflightDescription{0, 0, 1, 128, 0}));
    }});
    auto inflight = frontend_->get_inflight_fd(1, 128);
    ASSERT_OK(inflight);
    EXPECT_EQ(inflight->description.mmap_size, 0U);
    EXPECT_FALSE(inflight->fd.valid());
}

// --- back-end -> front-end channel ------------------------------------------

class BackendChannelTest : public test::FdLeakTest
{
};

TEST_F(BackendChannelTest, ConfigChangeIsAcknowledgedWithReplyAck)
{
    auto pair = Connection::pair();
    ASSERT_TRUE(pair.ok());
    Connection frontend_end = std::move(pair->first);
    std::optional<Message> seen;
    std::thread frontend([&] {
        auto request = receive_backend_request(frontend_end);
        ASSERT_TRUE(request.ok()) << request.error().message();
        EXPECT_EQ(request->request, BackendRequest::config_change_msg);
        ASSERT_TRUE(answer_backend_request(frontend_end, request->message, true, true).ok());
        auto refused = receive_backend_request(frontend_end);
        ASSERT_TRUE(refused.ok());
        ASSERT_TRUE(answer_backend_request(frontend_end, refused->message, false, true).ok());
    });
    BackendChannel channel(std::move(pair->second), true);
    ASSERT_OK(channel.config_changed());
    auto refused = channel.vring_call(1);
    frontend.join();
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().message(),
              "BACKEND_VRING_CALL: the front-end refused it (ack status 1)");
}

TEST_F(BackendChannelTest, WithoutReplyAckNothingIsAwaited)
{
    auto pair = Connection::pair();
    ASSERT_TRUE(pair.ok());
    BackendChannel channel(std::move(pair->second), false, 50ms);
    ASSERT_OK(channel.config_changed());
    auto got = receive_backend_request(pair->first);
    ASSERT_TRUE(got.ok());
    EXPECT_FALSE(got->message.needs_reply());
    EXPECT_TRUE(answer_backend_request(pair->first, got->message, true, false).ok());
}

} // namespace
} // namespace vl::vhost_user
