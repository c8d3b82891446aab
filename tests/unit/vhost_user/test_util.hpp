// SPDX-License-Identifier: Apache-2.0
// Shared helpers of the vhost-user tests: fd counting, fd factories, a valid
// sample message for every request, and a recording fake handler.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "vhost_user/backend_handler.hpp"
#include "vhost_user/message.hpp"
#include "vhost_user/protocol.hpp"

namespace vl::vhost_user::test
{

// Open fds of this process (/proc/self/fd, minus the directory's own fd).
inline int count_open_fds()
{
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr)
        return -1;
    int n = 0;
    while (dirent* entry = ::readdir(dir))
        if (entry->d_name[0] != '.')
            ++n;
    ::closedir(dir);
    return n - 1;
}

inline bool fd_is_open(int fd)
{
    return ::fcntl(fd, F_GETFD) != -1;
}

// Every test checks that it leaves no fd open that it did not find open.
class FdLeakTest : public ::testing::Test
{
  protected:
    void SetUp() override { fds_before_ = count_open_fds(); }
    void TearDown() override
    {
        EXPECT_EQ(count_open_fds(), fds_before_) << "the test leaked (or closed) fds";
    }

  private:
    int fds_before_ = 0;
};

inline UniqueFd make_eventfd()
{
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    EXPECT_TRUE(fd.valid());
    return fd;
}

inline UniqueFd make_memfd(std::size_t size = 4096)
{
    UniqueFd fd(::memfd_create("vhost-user-test", MFD_CLOEXEC));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
    return fd;
}

inline std::vector<UniqueFd> fds_of(UniqueFd fd)
{
    std::vector<UniqueFd> v;
    v.push_back(std::move(fd));
    return v;
}

template <class T> std::vector<std::byte> bytes_of(const T& value)
{
    std::vector<std::byte> bytes(sizeof(T));
    std::memcpy(bytes.data(), &value, sizeof(T));
    return bytes;
}

inline constexpr MemoryRegion kSampleRegion{0x0, 0x1000, 0x7f0000000000, 0};

inline std::vector<std::byte> sample_memory_table(std::uint32_t nregions)
{
    std::vector<std::byte> bytes = bytes_of(MemoryTableHeader{nregions, 0});
    for (std::uint32_t i = 0; i < nregions; ++i) {
        MemoryRegion region = kSampleRegion;
        region.guest_phys_addr = i * 0x1000;
        auto more = bytes_of(region);
        bytes.insert(bytes.end(), more.begin(), more.end());
    }
    return bytes;
}

inline std::vector<std::byte> sample_config(std::uint32_t offset, std::uint32_t size)
{
    std::vector<std::byte> data(size);
    for (std::uint32_t i = 0; i < size; ++i)
        data[i] = static_cast<std::byte>(i + 1);
    return encode_config(offset, data, ConfigFlags::writable);
}

// A valid request of each kind, with real fds where the request needs them.
inline Message sample_request(Request request, std::uint32_t flags = kVersion)
{
    const std::uint32_t code = to_code(request);
    auto u64 = [&](std::uint64_t v, std::vector<UniqueFd> fds = {}) {
        return Message(code, flags, bytes_of(v), std::move(fds));
    };
    auto state = [&](std::uint32_t index, std::uint32_t num) {
        return Message(code, flags, bytes_of(VringState{index, num}));
    };
    switch (request) {
    case Request::get_features:
    case Request::set_owner:
    case Request::reset_owner:
    case Request::get_protocol_features:
    case Request::get_queue_num:
    case Request::postcopy_advise:
    case Request::postcopy_listen:
    case Request::postcopy_end:
    case Request::reset_device:
    case Request::get_max_mem_slots:
    case Request::get_status:
    case Request::check_device_state:
        return Message(code, flags);
    case Request::set_features:
        return u64(kFeatureProtocolFeatures | (std::uint64_t{1} << 32));
    case Request::set_protocol_features:
        return u64(bit(ProtocolFeature::mq) | bit(ProtocolFeature::reply_ack) |
                   bit(ProtocolFeature::config));
    case Request::send_rarp:
        return u64(0x0000'5452'0000'0001);
    case Request::net_set_mtu:
        return u64(1500);
    case Request::close_crypto_session:
        return u64(7);
    case Request::set_status:
        return u64(0x0f);
    case Request::set_mem_table:
        return Message(code, flags, sample_memory_table(1), fds_of(make_memfd()));
    case Request::set_log_base:
        return Message(code, flags, bytes_of(LogDescription{4096, 0}), fds_of(make_memfd()));
    case Request::set_log_fd:
    case Request::set_backend_req_fd:
    case Request::gpu_set_socket:
        return Message(code, flags, {}, fds_of(make_eventfd()));
    case Request::set_vring_num:
        return state(0, 256);
    case Request::set_vring_base:
        return state(0, 17);
    case Request::get_vring_base:
    case Request::vring_kick:
    case Request::set_vring_endian:
        return state(0, 0);
    case Request::set_vring_enable:
        return state(0, 1);
    case Request::set_vring_addr:
        return Message(code, flags, bytes_of(VringAddr{0, 0, 0x1000, 0x3000, 0x2000, 0}));
    case Request::set_vring_kick:
    case Request::set_vring_call:
    case Request::set_vring_err:
        return u64(0, fds_of(make_eventfd()));
    case Request::iotlb_msg:
        return Message(code, flags, bytes_of(IotlbMessage{0x1000, 0x1000, 0x7f00, 3, 2, {}}));
    case Request::get_config:
    case Request::set_config:
        return Message(code, flags, sample_config(0, 16));
    case Request::create_crypto_session:
        return Message(code, flags, std::vector<std::byte>(40));
    case Request::get_inflight_fd:
        return Message(code, flags, bytes_of(InflightDescription{0, 0, 1, 128, 0}));
    case Request::set_inflight_fd:
        return Message(code, flags, bytes_of(InflightDescription{4096, 0, 1, 128, 0}),
                       fds_of(make_memfd()));
    case Request::add_mem_reg:
        return Message(code, flags, bytes_of(SingleMemoryRegion{0, kSampleRegion}),
                       fds_of(make_memfd()));
    case Request::rem_mem_reg:
        return Message(code, flags, bytes_of(SingleMemoryRegion{0, kSampleRegion}));
    case Request::get_shared_object:
        return Message(code, flags, bytes_of(SharedObject{}));
    case Request::set_device_state_fd:
        return Message(code, flags, bytes_of(DeviceStateTransfer{0, 0}), fds_of(make_eventfd()));
    }
    ADD_FAILURE() << "no sample for request " << code;
    return Message(code, flags);
}

inline std::vector<Request> all_requests()
{
    std::vector<Request> all;
    for (std::uint32_t code = kFirstRequest; code <= kLastRequest; ++code)
        all.push_back(static_cast<Request>(code));
    return all;
}

// A handler that accepts everything (except what `fail` names), records the
// calls in order and keeps what it is given.
class FakeHandler : public BackendHandler
{
  public:
    std::uint64_t features = kFeatureProtocolFeatures | (std::uint64_t{1} << 32);
    std::uint64_t protocol_features =
        bit(ProtocolFeature::mq) | bit(ProtocolFeature::reply_ack) |
        bit(ProtocolFeature::backend_req) | bit(ProtocolFeature::config) |
        bit(ProtocolFeature::inflight_shmfd) | bit(ProtocolFeature::reset_device) |
        bit(ProtocolFeature::configure_mem_slots) | bit(ProtocolFeature::status);
    std::set<Request> fail; // these calls return an error
    std::vector<Request> calls;

    std::uint64_t acked_features = 0;
    std::uint64_t acked_protocol_features = 0;
    std::vector<RegionFd> regions;
    std::map<std::uint32_t, std::uint32_t> vring_num, vring_base;
    std::map<std::uint32_t, bool> vring_enabled;
    std::map<std::uint32_t, VringAddr> vring_addr;
    std::map<std::uint32_t, UniqueFd> kick, call, err;
    std::array<std::byte, kMaxConfigSize> config{};
    std::uint8_t status = 0;
    UniqueFd backend_req;
    UniqueFd inflight;
    int resets = 0;

    // Closes every fd the handler was given (before a leak check).
    void drop_fds()
    {
        regions.clear();
        kick.clear();
        call.clear();
        err.clear();
        backend_req.reset();
        inflight.reset();
    }

    FakeHandler()
    {
        for (std::size_t i = 0; i < config.size(); ++i)
            config[i] = static_cast<std::byte>(i);
    }

    Status set_owner() override { return record(Request::set_owner); }
    Status reset_owner() override { return record(Request::reset_owner); }
    Status reset_device() override
    {
        ++resets;
        return record(Request::reset_device);
    }
    Result<std::uint64_t> get_features() override
    {
        VL_TRY(record(Request::get_features));
        return features;
    }
    Status set_features(std::uint64_t f) override
    {
        acked_features = f;
        return record(Request::set_features);
    }
    Result<std::uint64_t> get_protocol_features() override
    {
        VL_TRY(record(Request::get_protocol_features));
        return protocol_features;
    }
    Status set_protocol_features(std::uint64_t f) override
    {
        VL_TRY(record(Request::set_protocol_features));
        acked_protocol_features = f;
        return ok_status();
    }
    Result<std::uint64_t> get_queue_num() override
    {
        VL_TRY(record(Request::get_queue_num));
        return std::uint64_t{2};
    }
    Status set_mem_table(std::vector<RegionFd> r) override
    {
        VL_TRY(record(Request::set_mem_table));
        regions = std::move(r);
        return ok_status();
    }
    Result<std::uint64_t> get_max_mem_slots() override
    {
        VL_TRY(record(Request::get_max_mem_slots));
        return std::uint64_t{8};
    }
    Status add_mem_region(RegionFd r) override
    {
        VL_TRY(record(Request::add_mem_reg));
        regions.push_back(std::move(r));
        return ok_status();
    }
    Status remove_mem_region(const MemoryRegion& r) override
    {
        VL_TRY(record(Request::rem_mem_reg));
        std::erase_if(regions, [&](const RegionFd& have) {
            return have.region.guest_phys_addr == r.guest_phys_addr &&
                   have.region.memory_size == r.memory_size;
        });
        return ok_status();
    }
    Status set_vring_num(std::uint32_t index, std::uint32_t num) override
    {
        vring_num[index] = num;
        return record(Request::set_vring_num);
    }
    Status set_vring_addr(const VringAddr& addr) override
    {
        vring_addr[addr.index] = addr;
        return record(Request::set_vring_addr);
    }
    Status set_vring_base(std::uint32_t index, std::uint32_t base) override
    {
        vring_base[index] = base;
        return record(Request::set_vring_base);
    }
    Result<std::uint32_t> get_vring_base(std::uint32_t index) override
    {
        VL_TRY(record(Request::get_vring_base));
        return vring_base[index] + 5; // "processed five more"
    }
    Status set_vring_kick(std::uint32_t index, UniqueFd fd) override
    {
        kick[index] = std::move(fd);
        return record(Request::set_vring_kick);
    }
    Status set_vring_call(std::uint32_t index, UniqueFd fd) override
    {
        call[index] = std::move(fd);
        return record(Request::set_vring_call);
    }
    Status set_vring_err(std::uint32_t index, UniqueFd fd) override
    {
        err[index] = std::move(fd);
        return record(Request::set_vring_err);
    }
    Status set_vring_enable(std::uint32_t index, bool enable) override
    {
        vring_enabled[index] = enable;
        return record(Request::set_vring_enable);
    }
    Status vring_kick(std::uint32_t) override { return record(Request::vring_kick); }
    Result<std::vector<std::byte>> get_config(std::uint32_t offset, std::uint32_t size,
                                              ConfigFlags) override
    {
        VL_TRY(record(Request::get_config));
        return std::vector<std::byte>(config.begin() + offset, config.begin() + offset + size);
    }
    Status set_config(std::uint32_t offset, std::span<const std::byte> data, ConfigFlags) override
    {
        VL_TRY(record(Request::set_config));
        std::copy(data.begin(), data.end(), config.begin() + offset);
        return ok_status();
    }
    Status set_backend_req_fd(UniqueFd fd) override
    {
        backend_req = std::move(fd);
        return record(Request::set_backend_req_fd);
    }
    Result<InflightFd> get_inflight_fd(std::uint16_t num_queues, std::uint16_t queue_size) override
    {
        VL_TRY(record(Request::get_inflight_fd));
        return InflightFd{InflightDescription{4096, 0, num_queues, queue_size, 0}, make_memfd()};
    }
    Status set_inflight_fd(const InflightDescription&, UniqueFd fd) override
    {
        inflight = std::move(fd);
        return record(Request::set_inflight_fd);
    }
    Status set_status(std::uint8_t s) override
    {
        status = s;
        return record(Request::set_status);
    }
    Result<std::uint8_t> get_status() override
    {
        VL_TRY(record(Request::get_status));
        return status;
    }
    Status set_log_base(const LogDescription&, UniqueFd) override
    {
        return record(Request::set_log_base);
    }
    Status set_log_fd(UniqueFd) override { return record(Request::set_log_fd); }
    Status send_rarp(std::array<std::uint8_t, 6>) override { return record(Request::send_rarp); }
    Status net_set_mtu(std::uint64_t) override { return record(Request::net_set_mtu); }
    Status iotlb_msg(const IotlbMessage&) override { return record(Request::iotlb_msg); }
    Status set_vring_endian(std::uint32_t, bool) override
    {
        return record(Request::set_vring_endian);
    }
    Result<std::optional<UniqueFd>> set_device_state_fd(TransferDirection, MigrationPhase,
                                                        UniqueFd) override
    {
        VL_TRY(record(Request::set_device_state_fd));
        return std::optional<UniqueFd>();
    }
    Status check_device_state() override { return record(Request::check_device_state); }

  private:
    Status record(Request request)
    {
        calls.push_back(request);
        if (fail.contains(request))
            return Error("fake failure of " + request_name(request), EIO);
        return ok_status();
    }
};

} // namespace vl::vhost_user::test
