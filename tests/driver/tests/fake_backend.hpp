// SPDX-License-Identifier: Apache-2.0
// A small in-process vhost-user back-end for the driver's tests, built
// from lib/vhost_user's dispatcher and lib/virtqueue's device-side queue.
// It serves one connection on a thread; a test supplies the device model
// (what to do with each chain) and can inject completions, stall, hang on
// a given request, or drop the connection. Not a product back-end: no
// reconnect, one front-end, everything on one thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/event_fd.hpp"
#include "base/log.hpp"
#include "base/mapping.hpp"
#include "vhost_user/backend_dispatch.hpp"
#include "vhost_user/backend_handler.hpp"
#include "vhost_user/connection.hpp"
#include "virtqueue/guest_memory.hpp"
#include "virtqueue/split_queue.hpp"

namespace vl::test_driver::test
{

// What a device does with one chain: the number of bytes it wrote, or
// nullopt to hold the chain (complete it later with inject(), or never).
using ChainHandler =
    std::function<std::optional<std::uint32_t>(std::uint32_t queue, virtq::DescriptorChain& chain)>;
// Called after SET_CONFIG changed the config bytes (virtio-input selects).
using ConfigHook = std::function<void(std::vector<std::byte>& config)>;

struct FakeDevice {
    std::uint64_t features = 0; // device bits; the transport bits below are added
    bool version_1 = true;
    bool event_idx = true;
    bool indirect_desc = true;
    bool protocol_features_bit = true;
    std::uint64_t protocol_features = 0; // default: MQ | REPLY_ACK | CONFIG (see constructor)
    std::uint32_t queues = 1;
    std::vector<std::byte> config;
    ConfigHook on_set_config;
    ChainHandler handle;
    // Stop answering (and stop everything else) once this request arrives.
    std::optional<vhost_user::Request> hang_on;
};

FakeDevice default_device();

class FakeBackend final : public vhost_user::BackendHandler
{
  public:
    // Listens on a fresh socket in a temporary directory and starts serving.
    explicit FakeBackend(FakeDevice device);
    ~FakeBackend() override;
    FakeBackend(const FakeBackend&) = delete;
    FakeBackend& operator=(const FakeBackend&) = delete;

    [[nodiscard]] const std::string& socket_path() const noexcept { return socket_path_; }

    // Completes the oldest held (or next available) chain of `queue` with
    // `data` written into its writable part. Asynchronous: runs on the
    // serving thread as soon as a chain is there.
    void inject(std::uint32_t queue, std::vector<std::byte> data);
    // Closes the connection (as a crashing back-end would).
    void close_connection();

    // ---- observations (thread-safe copies) ----
    [[nodiscard]] std::vector<std::uint32_t> requests() const;
    [[nodiscard]] std::uint64_t acked_features() const;
    [[nodiscard]] std::uint64_t acked_protocol_features() const;
    [[nodiscard]] std::vector<vhost_user::MemoryRegion> regions() const;
    [[nodiscard]] std::size_t chains_handled(std::uint32_t queue) const;
    [[nodiscard]] std::size_t indirect_chains(std::uint32_t queue) const;
    [[nodiscard]] bool enabled(std::uint32_t queue) const;
    [[nodiscard]] bool peer_closed() const;
    // Waits (up to 5 s) until the front-end closed the connection.
    bool wait_peer_closed() const;

    // ---- BackendHandler ----
    Status set_owner() override;
    Result<std::uint64_t> get_features() override;
    Status set_features(std::uint64_t features) override;
    Result<std::uint64_t> get_protocol_features() override;
    Status set_protocol_features(std::uint64_t features) override;
    Result<std::uint64_t> get_queue_num() override;
    Status set_mem_table(std::vector<vhost_user::RegionFd> regions) override;
    Status set_vring_num(std::uint32_t index, std::uint32_t num) override;
    Status set_vring_addr(const vhost_user::VringAddr& addr) override;
    Status set_vring_base(std::uint32_t index, std::uint32_t base) override;
    Result<std::uint32_t> get_vring_base(std::uint32_t index) override;
    Status set_vring_kick(std::uint32_t index, UniqueFd fd) override;
    Status set_vring_call(std::uint32_t index, UniqueFd fd) override;
    Status set_vring_err(std::uint32_t index, UniqueFd fd) override;
    Status set_vring_enable(std::uint32_t index, bool enable) override;
    Result<std::vector<std::byte>> get_config(std::uint32_t offset, std::uint32_t size,
                                              vhost_user::ConfigFlags flags) override;
    Status set_config(std::uint32_t offset, std::span<const std::byte> data,
                      vhost_user::ConfigFlags flags) override;

  private:
    struct Queue {
        std::uint32_t num = 0;
        std::uint16_t base = 0;
        std::optional<vhost_user::VringAddr> addr;
        UniqueFd kick;
        EventFd call;
        bool enabled = false;
        std::optional<virtq::SplitQueue> ring;
        std::deque<virtq::DescriptorChain> held;
        std::deque<std::vector<std::byte>> injections;
        std::size_t handled = 0;
        std::size_t indirect = 0;
    };

    void serve();
    void serve_connection();
    void run_commands();
    Status process(std::uint32_t index);
    void complete_injections(Queue& q);
    void notify(Queue& q);
    Queue* queue(std::uint32_t index);
    std::uint64_t offered_features() const;

    FakeDevice device_;
    Logger logger_;
    std::string dir_;
    std::string socket_path_;
    UniqueFd listen_fd_;
    EventFd wake_;
    std::atomic<bool> stop_{false};

    // Serving-thread state.
    std::optional<vhost_user::Connection> connection_;
    std::optional<vhost_user::BackendDispatcher> dispatcher_;
    bool hung_ = false;
    std::vector<Mapping> mappings_;
    virtq::GuestMemory memory_;

    mutable std::mutex mutex_; // protects everything below and queues_
    std::vector<Queue> queues_;
    std::vector<std::uint32_t> requests_;
    std::uint64_t acked_features_ = 0;
    std::uint64_t acked_protocol_features_ = 0;
    std::vector<vhost_user::MemoryRegion> regions_;
    bool peer_closed_ = false;
    std::deque<std::function<void()>> commands_;

    std::thread thread_; // last: started once everything above exists
};

} // namespace vl::test_driver::test
