// SPDX-License-Identifier: Apache-2.0
// The codec: every request survives a trip through a socket and validates;
// every malformed shape is refused with a message that names the problem.
#include <gtest/gtest.h>

#include "test_util.hpp"
#include "vhost_user/connection.hpp"
#include "vhost_user/message.hpp"

namespace vl::vhost_user
{
namespace
{

using test::bytes_of;
using test::fds_of;
using test::make_eventfd;
using test::make_memfd;
using test::sample_request;

class Codec : public test::FdLeakTest
{
};

// Sends `m` through a socket pair and returns what arrives.
Message round_trip(const Message& m)
{
    auto pair = Connection::pair();
    EXPECT_TRUE(pair.ok());
    auto& [a, b] = *pair;
    Status sent = a.send(m);
    EXPECT_TRUE(sent.ok()) << sent.error().message();
    auto received = b.receive();
    EXPECT_TRUE(received.ok()) << received.error().message();
    return std::move(received).value();
}

// The error message of validate_request(m), or "" if it passed.
std::string rejection(const Message& m)
{
    auto r = validate_request(m);
    return r.ok() ? "" : r.error().message();
}

TEST_F(Codec, NamesRequests)
{
    EXPECT_EQ(request_name(Request::set_vring_num), "SET_VRING_NUM");
    EXPECT_EQ(request_name(Request::set_backend_req_fd), "SET_BACKEND_REQ_FD");
    EXPECT_EQ(request_name(Request::check_device_state), "CHECK_DEVICE_STATE");
    EXPECT_EQ(request_name(99), "unknown request 99");
    EXPECT_EQ(request_name(0), "unknown request 0");
    EXPECT_EQ(backend_request_name(BackendRequest::config_change_msg), "BACKEND_CONFIG_CHANGE_MSG");
    EXPECT_EQ(backend_request_name(9), "unknown back-end request 9");
}

TEST_F(Codec, UsesTheSpecNumbers)
{
    EXPECT_EQ(to_code(Request::get_features), 1U);
    EXPECT_EQ(to_code(Request::set_vring_call), 13U);
    EXPECT_EQ(to_code(Request::set_backend_req_fd), 21U);
    EXPECT_EQ(to_code(Request::get_config), 24U);
    EXPECT_EQ(to_code(Request::get_inflight_fd), 31U);
    EXPECT_EQ(to_code(Request::get_max_mem_slots), 36U);
    EXPECT_EQ(to_code(Request::add_mem_reg), 37U);
    EXPECT_EQ(to_code(Request::get_status), 40U);
    EXPECT_EQ(kFeatureProtocolFeatures, 0x40000000U);
    EXPECT_EQ(bit(ProtocolFeature::reply_ack), 0x8U);
    EXPECT_EQ(bit(ProtocolFeature::backend_req), 0x20U);
    EXPECT_EQ(bit(ProtocolFeature::config), 0x200U);
    EXPECT_EQ(bit(ProtocolFeature::inflight_shmfd), 0x1000U);
    EXPECT_EQ(bit(ProtocolFeature::configure_mem_slots), 0x8000U);
    EXPECT_EQ(bit(ProtocolFeature::status), 0x10000U);
}

TEST_F(Codec, EveryRequestRoundTripsAndValidates)
{
    for (Request request : test::all_requests()) {
        SCOPED_TRACE(request_name(request));
        Message sent = sample_request(request);
        ASSERT_EQ(rejection(sent), "");
        Message got = round_trip(sent);
        EXPECT_EQ(got.request(), sent.request());
        EXPECT_EQ(got.flags(), sent.flags());
        EXPECT_EQ(got.header().size, sent.payload().size());
        ASSERT_EQ(got.payload().size(), sent.payload().size());
        EXPECT_TRUE(std::equal(got.payload().begin(), got.payload().end(), sent.payload().begin()));
        ASSERT_EQ(got.fd_count(), sent.fd_count());
        for (const UniqueFd& fd : got.fds()) {
            EXPECT_TRUE(test::fd_is_open(fd.get()));
            EXPECT_NE(::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC, 0) << "received fds are CLOEXEC";
        }
        auto validated = validate_request(got);
        ASSERT_TRUE(validated.ok()) << validated.error().message();
        EXPECT_EQ(*validated, request);
    }
}

TEST_F(Codec, NeedReplyFlagRoundTrips)
{
    Message m = make_request(Request::set_vring_num, VringState{1, 64}, true);
    EXPECT_TRUE(m.needs_reply());
    Message got = round_trip(m);
    EXPECT_EQ(got.flags(), kVersion | kNeedReplyFlag);
    EXPECT_EQ(rejection(got), "");
    got.set_need_reply(false);
    EXPECT_EQ(got.flags(), kVersion);
}

TEST_F(Codec, DecodesTypedPayloads)
{
    Message num = round_trip(make_request(Request::set_vring_num, VringState{3, 512}));
    auto state = num.payload_as<VringState>();
    ASSERT_TRUE(state.ok());
    EXPECT_EQ(state->index, 3U);
    EXPECT_EQ(state->num, 512U);

    VringAddr addr{1, kVringAddrFlagLog, 0x1000, 0x2000, 0x3000, 0x4000};
    auto got_addr = round_trip(make_request(Request::set_vring_addr, addr)).payload_as<VringAddr>();
    ASSERT_TRUE(got_addr.ok());
    EXPECT_EQ(got_addr->index, 1U);
    EXPECT_EQ(got_addr->flags, kVringAddrFlagLog);
    EXPECT_EQ(got_addr->desc_user_addr, 0x1000U);
    EXPECT_EQ(got_addr->used_user_addr, 0x2000U);
    EXPECT_EQ(got_addr->avail_user_addr, 0x3000U);
    EXPECT_EQ(got_addr->log_guest_addr, 0x4000U);

    auto features =
        read_u64(round_trip(make_request(Request::set_features, std::uint64_t{0x1234})));
    ASSERT_TRUE(features.ok());
    EXPECT_EQ(*features, 0x1234U);
}

TEST_F(Codec, DecodesAMemoryTableWithItsFds)
{
    std::array<MemoryRegion, 3> regions{{{0x0, 0x1000, 0x7000, 0},
                                         {0x10000, 0x2000, 0x9000, 0x1000},
                                         {0x40000, 0x3000, 0xb000, 0x3000}}};
    auto request = make_memory_table_request(regions);
    ASSERT_TRUE(request.ok());
    UniqueFd a = make_memfd(), b = make_memfd(), c = make_memfd();
    std::array<int, 3> fds{a.get(), b.get(), c.get()};
    auto pair = Connection::pair();
    ASSERT_TRUE(pair.ok());
    ASSERT_TRUE(pair->first.send(*request, fds).ok());
    auto got = pair->second.receive();
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->payload().size(), 8U + 3 * 32);
    ASSERT_EQ(rejection(*got), "");
    auto table = take_memory_table(*got);
    ASSERT_TRUE(table.ok()) << table.error().message();
    ASSERT_EQ(table->size(), 3U);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ((*table)[i].region.guest_phys_addr, regions[i].guest_phys_addr);
        EXPECT_EQ((*table)[i].region.memory_size, regions[i].memory_size);
        EXPECT_EQ((*table)[i].region.userspace_addr, regions[i].userspace_addr);
        EXPECT_EQ((*table)[i].region.mmap_offset, regions[i].mmap_offset);
        EXPECT_TRUE((*table)[i].fd.valid());
    }
    EXPECT_EQ(got->fd_count(), 3U) << "slots stay, emptied";
    for (const UniqueFd& fd : got->fds())
        EXPECT_FALSE(fd.valid()) << "fds moved out to the regions";
}

TEST_F(Codec, DecodesVringFdsWithAndWithoutFd)
{
    Message with = Message(to_code(Request::set_vring_call), kVersion, bytes_of(std::uint64_t{5}),
                           fds_of(make_eventfd()));
    auto fd = take_vring_fd(with);
    ASSERT_TRUE(fd.ok());
    EXPECT_EQ(fd->index, 5U);
    EXPECT_TRUE(fd->fd.valid());

    Message without(to_code(Request::set_vring_kick), kVersion,
                    bytes_of(std::uint64_t{7} | kVringNoFdMask));
    EXPECT_EQ(rejection(without), "");
    auto polled = take_vring_fd(without);
    ASSERT_TRUE(polled.ok());
    EXPECT_EQ(polled->index, 7U);
    EXPECT_FALSE(polled->fd.valid());
}

TEST_F(Codec, DecodesConfigAccess)
{
    std::array<std::byte, 4> data{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}};
    auto request = make_config_request(Request::set_config, 20, data, ConfigFlags::live_migration);
    ASSERT_TRUE(request.ok());
    Message got = round_trip(*request);
    ASSERT_EQ(rejection(got), "");
    auto config = read_config(got);
    ASSERT_TRUE(config.ok());
    EXPECT_EQ(config->offset, 20U);
    EXPECT_EQ(config->flags, ConfigFlags::live_migration);
    EXPECT_EQ(config->data, std::vector<std::byte>(data.begin(), data.end()));
}

TEST_F(Codec, RemMemRegClosesAStrayFd)
{
    UniqueFd stray = make_memfd();
    int raw = ::fcntl(stray.get(), F_DUPFD_CLOEXEC, 0);
    Message m(to_code(Request::rem_mem_reg), kVersion,
              bytes_of(SingleMemoryRegion{0, test::kSampleRegion}), fds_of(UniqueFd(raw)));
    EXPECT_EQ(rejection(m), "") << "the spec lets a back-end accept one stray fd";
    auto region = take_single_region(m);
    ASSERT_TRUE(region.ok());
    EXPECT_FALSE(region->fd.valid());
    EXPECT_FALSE(test::fd_is_open(raw)) << "the stray fd is closed at once";
}

// --- malformed requests -------------------------------------------------

TEST_F(Codec, RejectsWrongPayloadSizeWithAClearMessage)
{
    Message m(to_code(Request::set_vring_num), kVersion, std::vector<std::byte>(4));
    EXPECT_EQ(rejection(m), "SET_VRING_NUM: payload is 4 bytes, expected 8");
    EXPECT_EQ(validate_request(m).error().code(), EBADMSG);
    EXPECT_EQ(m.payload_as<VringState>().error().message(),
              "SET_VRING_NUM: payload is 4 bytes, expected 8");
}

TEST_F(Codec, RejectsEveryFixedSizeRequestOneByteOffEitherWay)
{
    for (Request request : test::all_requests()) {
        Message good = sample_request(request);
        std::size_t size = good.payload().size();
        if (request == Request::set_mem_table || request == Request::get_config ||
            request == Request::set_config || request == Request::create_crypto_session)
            continue; // variable sizes, tested below
        SCOPED_TRACE(request_name(request));
        std::vector<std::byte> longer(good.payload().begin(), good.payload().end());
        longer.push_back(std::byte{0});
        Message too_long(good.request(), good.flags(), longer, good.take_fds());
        EXPECT_NE(rejection(too_long).find("payload is " + std::to_string(size + 1) + " bytes"),
                  std::string::npos)
            << rejection(too_long);
        if (size == 0)
            continue;
        Message shorter(good.request(), good.flags(),
                        std::vector<std::byte>(good.payload().begin(), good.payload().end() - 1),
                        too_long.take_fds());
        EXPECT_NE(rejection(shorter).find("payload is " + std::to_string(size - 1) + " bytes"),
                  std::string::npos)
            << rejection(shorter);
    }
}

TEST_F(Codec, RejectsUnknownRequests)
{
    EXPECT_EQ(rejection(Message(99, kVersion)), "unknown request 99");
    EXPECT_EQ(rejection(Message(0, kVersion)), "unknown request 0");
    EXPECT_EQ(rejection(Message(kLastRequest + 1, kVersion)),
              "unknown request " + std::to_string(kLastRequest + 1));
}

TEST_F(Codec, RejectsBadHeaderFlags)
{
    auto with_flags = [](std::uint32_t flags) {
        return rejection(Message(to_code(Request::get_features), flags));
    };
    EXPECT_NE(with_flags(0x0).find("protocol version 0"), std::string::npos);
    EXPECT_NE(with_flags(0x2).find("protocol version 2"), std::string::npos);
    EXPECT_NE(with_flags(0x3).find("protocol version 3"), std::string::npos);
    EXPECT_NE(with_flags(kVersion | 0x10).find("undefined flag bits 0x10"), std::string::npos);
    EXPECT_NE(with_flags(kVersion | 0x80000000).find("undefined flag bits"), std::string::npos);
    EXPECT_NE(with_flags(kVersion | kReplyFlag).find("REPLY flag set"), std::string::npos);
    EXPECT_EQ(with_flags(kVersion | kNeedReplyFlag), "");
}

TEST_F(Codec, RejectsMissingFds)
{
    auto no_fd = [](Request r, std::vector<std::byte> payload) {
        return rejection(Message(to_code(r), kVersion, std::move(payload)));
    };
    EXPECT_EQ(no_fd(Request::set_vring_call, bytes_of(std::uint64_t{0})),
              "SET_VRING_CALL: 0 file descriptors attached, expected 1 (no-fd bit is clear)");
    EXPECT_NE(no_fd(Request::add_mem_reg, bytes_of(SingleMemoryRegion{0, test::kSampleRegion}))
                  .find("0 file descriptors attached, expected 1"),
              std::string::npos);
    EXPECT_NE(no_fd(Request::set_backend_req_fd, {}).find("expected 1"), std::string::npos);
    EXPECT_NE(no_fd(Request::set_inflight_fd, bytes_of(InflightDescription{4096, 0, 1, 128, 0}))
                  .find("expected 1"),
              std::string::npos);
    EXPECT_NE(no_fd(Request::set_log_base, bytes_of(LogDescription{4096, 0})).find("expected 1"),
              std::string::npos);
    EXPECT_EQ(no_fd(Request::set_mem_table, test::sample_memory_table(2)),
              "SET_MEM_TABLE: 0 file descriptors for 2 regions; each region needs its own");
    Message one_for_two(to_code(Request::set_mem_table), kVersion, test::sample_memory_table(2),
                        fds_of(make_memfd()));
    EXPECT_EQ(rejection(one_for_two),
              "SET_MEM_TABLE: 1 file descriptor for 2 regions; each region needs its own");
}

TEST_F(Codec, RejectsTooManyFds)
{
    Message get(to_code(Request::get_features), kVersion, {}, fds_of(make_eventfd()));
    EXPECT_EQ(rejection(get), "GET_FEATURES: 1 file descriptor attached, expected none");

    Message nofd_but_fd(to_code(Request::set_vring_kick), kVersion,
                        bytes_of(std::uint64_t{kVringNoFdMask}), fds_of(make_eventfd()));
    EXPECT_EQ(rejection(nofd_but_fd),
              "SET_VRING_KICK: 1 file descriptor attached, expected 0 (no-fd bit is set)");

    std::vector<UniqueFd> two;
    two.push_back(make_eventfd());
    two.push_back(make_eventfd());
    Message call_two(to_code(Request::set_vring_call), kVersion, bytes_of(std::uint64_t{0}),
                     std::move(two));
    EXPECT_NE(rejection(call_two).find("2 file descriptors attached, expected 1"),
              std::string::npos);

    std::vector<UniqueFd> three;
    for (int i = 0; i < 3; ++i)
        three.push_back(make_memfd());
    Message table(to_code(Request::set_mem_table), kVersion, test::sample_memory_table(2),
                  std::move(three));
    EXPECT_NE(rejection(table).find("3 file descriptors for 2 regions"), std::string::npos);

    std::vector<UniqueFd> stray_two;
    stray_two.push_back(make_memfd());
    stray_two.push_back(make_memfd());
    Message rem(to_code(Request::rem_mem_reg), kVersion,
                bytes_of(SingleMemoryRegion{0, test::kSampleRegion}), std::move(stray_two));
    EXPECT_NE(rejection(rem).find("expected at most 1"), std::string::npos);
}

TEST_F(Codec, RejectsUndefinedBitsInVringFdValue)
{
    Message m(to_code(Request::set_vring_kick), kVersion, bytes_of(std::uint64_t{0x200}),
              fds_of(make_eventfd()));
    EXPECT_NE(rejection(m).find("undefined bits 0x200"), std::string::npos);
}

TEST_F(Codec, RejectsMemoryTablesOutOfRange)
{
    auto table_of = [](std::uint32_t nregions, std::size_t fds) {
        std::vector<UniqueFd> v;
        for (std::size_t i = 0; i < fds; ++i)
            v.push_back(make_memfd());
        return Message(to_code(Request::set_mem_table), kVersion,
                       test::sample_memory_table(nregions), std::move(v));
    };
    EXPECT_EQ(rejection(table_of(0, 0)), "SET_MEM_TABLE: 0 regions, expected 1 to 8");
    EXPECT_EQ(rejection(table_of(9, 8)), "SET_MEM_TABLE: 9 regions, expected 1 to 8");
    EXPECT_EQ(rejection(table_of(8, 8)), "");
    EXPECT_EQ(rejection(table_of(1, 1)), "");

    // Region count 2, but three regions' worth of bytes.
    auto bytes = test::sample_memory_table(3);
    MemoryTableHeader header{2, 0};
    std::memcpy(bytes.data(), &header, sizeof(header));
    std::vector<UniqueFd> two;
    two.push_back(make_memfd());
    two.push_back(make_memfd());
    Message mismatch(to_code(Request::set_mem_table), kVersion, bytes, std::move(two));
    EXPECT_EQ(rejection(mismatch),
              "SET_MEM_TABLE: payload is 104 bytes, expected 8 + 2 * 32 = 72 for 2 regions");

    Message stub(to_code(Request::set_mem_table), kVersion, std::vector<std::byte>(4));
    EXPECT_NE(rejection(stub).find("shorter than the 8-byte region count"), std::string::npos);
}

TEST_F(Codec, RejectsRegionsThatAreEmptyOrWrapAround)
{
    auto add = [](MemoryRegion region) {
        return rejection(Message(to_code(Request::add_mem_reg), kVersion,
                                 bytes_of(SingleMemoryRegion{0, region}), fds_of(make_memfd())));
    };
    EXPECT_EQ(add({0, 0, 0x1000, 0}), "ADD_MEM_REG: size is 0");
    EXPECT_NE(add({~std::uint64_t{0} - 10, 0x1000, 0, 0}).find("guest address"), std::string::npos);
    EXPECT_NE(add({0, 0x1000, ~std::uint64_t{0}, 0}).find("user address"), std::string::npos);
    EXPECT_NE(add({0, 0x1000, 0, ~std::uint64_t{0}}).find("mmap offset"), std::string::npos);

    auto bytes = test::sample_memory_table(2);
    MemoryRegion empty{0x5000, 0, 0, 0};
    std::memcpy(bytes.data() + 8 + 32, &empty, sizeof(empty));
    std::vector<UniqueFd> two;
    two.push_back(make_memfd());
    two.push_back(make_memfd());
    EXPECT_EQ(rejection(Message(to_code(Request::set_mem_table), kVersion, bytes, std::move(two))),
              "SET_MEM_TABLE region 1: size is 0");
}

TEST_F(Codec, RejectsBadConfigAccess)
{
    auto config = [](ConfigHeader header, std::size_t data_bytes) {
        auto bytes = bytes_of(header);
        bytes.resize(bytes.size() + data_bytes);
        return rejection(Message(to_code(Request::get_config), kVersion, bytes));
    };
    EXPECT_EQ(config({0, 256, 0}, 256), "");
    EXPECT_EQ(config({0, 257, 0}, 257), "GET_CONFIG: config size 257 is outside 1..256");
    EXPECT_EQ(config({0, 0, 0}, 0), "GET_CONFIG: config size 0 is outside 1..256");
    EXPECT_EQ(config({0, 4, 0}, 8), "GET_CONFIG: payload is 20 bytes, expected 12 + 4 = 16");
    EXPECT_EQ(config({0, 8, 0}, 4), "GET_CONFIG: payload is 16 bytes, expected 12 + 8 = 20");
    EXPECT_EQ(config({250, 8, 0}, 8),
              "GET_CONFIG: config offset 250 + size 8 is beyond the 256-byte config space");
    // An offset near 2^32 must not wrap around the bounds check.
    EXPECT_NE(config({0xfffffffc, 8, 0}, 8).find("beyond the 256-byte config space"),
              std::string::npos);
    EXPECT_EQ(config({0, 4, 2}, 4), "GET_CONFIG: undefined config flags 0x2");
    EXPECT_EQ(config({0, 4, 1}, 4), "");
    EXPECT_NE(rejection(Message(to_code(Request::set_config), kVersion, std::vector<std::byte>(8)))
                  .find("shorter than the 12-byte config header"),
              std::string::npos);

    std::vector<std::byte> big(257);
    EXPECT_FALSE(make_config_request(Request::set_config, 0, big, ConfigFlags::writable).ok());
    EXPECT_FALSE(make_config_request(Request::get_config, 0, {}, ConfigFlags::writable).ok());
}

TEST_F(Codec, RejectsValuesTheSpecForbids)
{
    auto state = [](Request r, VringState s) {
        return rejection(Message(to_code(r), kVersion, bytes_of(s)));
    };
    EXPECT_EQ(state(Request::set_vring_enable, {0, 2}),
              "SET_VRING_ENABLE: ring 0 state 2, expected 0 or 1");
    EXPECT_NE(state(Request::set_vring_endian, {0, 5}).find("endianness 5"), std::string::npos);
    EXPECT_NE(
        rejection(Message(to_code(Request::set_status), kVersion, bytes_of(std::uint64_t{0x100})))
            .find("does not fit"),
        std::string::npos);
    EXPECT_NE(rejection(Message(to_code(Request::set_device_state_fd), kVersion,
                                bytes_of(DeviceStateTransfer{2, 0}), fds_of(make_eventfd())))
                  .find("transfer direction 2"),
              std::string::npos);
    EXPECT_NE(rejection(Message(to_code(Request::set_device_state_fd), kVersion,
                                bytes_of(DeviceStateTransfer{1, 1}), fds_of(make_eventfd())))
                  .find("migration phase 1"),
              std::string::npos);
}

TEST_F(Codec, FdsOfARejectedMessageAreClosed)
{
    int raw = -1;
    {
        UniqueFd fd = make_eventfd();
        raw = fd.get();
        Message m(to_code(Request::get_features), kVersion, {}, fds_of(std::move(fd)));
        EXPECT_FALSE(validate_request(m).ok());
        EXPECT_TRUE(test::fd_is_open(raw));
    }
    EXPECT_FALSE(test::fd_is_open(raw)) << "the message owned the fd and closed it";
}

// --- replies --------------------------------------------------------------

TEST_F(Codec, ChecksReplyHeaders)
{
    Header request{to_code(Request::get_features), kVersion, 0};
    Message good = make_u64_reply(request, 5);
    EXPECT_EQ(good.flags(), kVersion | kReplyFlag);
    EXPECT_TRUE(validate_reply_header(good, Request::get_features).ok());

    auto wrong = validate_reply_header(good, Request::get_protocol_features);
    ASSERT_FALSE(wrong.ok());
    EXPECT_NE(wrong.error().message().find("got a reply to GET_FEATURES instead"),
              std::string::npos);

    Message not_reply(to_code(Request::get_features), kVersion, bytes_of(std::uint64_t{5}));
    EXPECT_NE(validate_reply_header(not_reply, Request::get_features)
                  .error()
                  .message()
                  .find("lacks the REPLY flag"),
              std::string::npos);
    Message need_reply(to_code(Request::get_features), kVersion | kReplyFlag | kNeedReplyFlag,
                       bytes_of(std::uint64_t{5}));
    EXPECT_NE(validate_reply_header(need_reply, Request::get_features)
                  .error()
                  .message()
                  .find("NEED_REPLY"),
              std::string::npos);
    EXPECT_EQ(good.payload_as<LogDescription>().error().message(),
              "GET_FEATURES reply: payload is 8 bytes, expected 16");
}

TEST_F(Codec, KnowsWhichRequestsAlwaysHaveAReply)
{
    EXPECT_TRUE(request_has_reply(Request::get_features));
    EXPECT_TRUE(request_has_reply(Request::get_vring_base));
    EXPECT_TRUE(request_has_reply(Request::get_config));
    EXPECT_TRUE(request_has_reply(Request::get_inflight_fd));
    EXPECT_TRUE(request_has_reply(Request::set_log_base));
    EXPECT_FALSE(request_has_reply(Request::set_vring_num));
    EXPECT_FALSE(request_has_reply(Request::set_mem_table));
    EXPECT_FALSE(request_has_reply(Request::add_mem_reg));
    EXPECT_FALSE(request_has_reply(static_cast<Request>(99)));
}

// --- back-end channel -------------------------------------------------------

TEST_F(Codec, ValidatesBackendChannelRequests)
{
    Message change = round_trip(make_backend_request(BackendRequest::config_change_msg, true));
    auto request = validate_backend_request(change);
    ASSERT_TRUE(request.ok()) << request.error().message();
    EXPECT_EQ(*request, BackendRequest::config_change_msg);
    EXPECT_TRUE(change.needs_reply());

    Message call = make_backend_request(BackendRequest::vring_call, VringState{2, 0});
    EXPECT_TRUE(validate_backend_request(call).ok());

    Message notifier_nofd = make_backend_request(BackendRequest::vring_host_notifier_msg,
                                                 VringArea{1 | kVringNoFdMask, 4096, 0});
    EXPECT_TRUE(validate_backend_request(notifier_nofd).ok());
    Message notifier_missing_fd =
        make_backend_request(BackendRequest::vring_host_notifier_msg, VringArea{1, 4096, 0});
    EXPECT_FALSE(validate_backend_request(notifier_missing_fd).ok());

    Message change_with_payload(to_code(BackendRequest::config_change_msg), kVersion,
                                bytes_of(std::uint64_t{0}));
    EXPECT_EQ(validate_backend_request(change_with_payload).error().message(),
              "BACKEND_CONFIG_CHANGE_MSG: payload is 8 bytes, expected none");
    EXPECT_EQ(validate_backend_request(Message(9, kVersion)).error().message(),
              "unknown back-end request 9");

    Message ack = make_u64_reply(change.header(), kAckSuccess);
    EXPECT_TRUE(validate_backend_reply_header(ack, BackendRequest::config_change_msg).ok());
    EXPECT_FALSE(validate_backend_reply_header(ack, BackendRequest::vring_call).ok());
}

} // namespace
} // namespace vl::vhost_user
