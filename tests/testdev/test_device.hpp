// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/event_fd.hpp"
#include "base/log.hpp"
#include "base/mapping.hpp"
#include "base/result.hpp"
#include "loopback/control_file.hpp"
#include "request_handler.hpp"
#include "virtqueue/guest_memory.hpp"
#include "virtqueue/split_queue.hpp"

namespace vl::testdev {

// How the device breaks the rules, once, after `after` requests were served
// well, to test the transport's defences against a hostile back-end. The
// call is signalled right after, so the kernel sees it at once. Modes that
// forge the used ring behind the queue's back (bad-used-id, double-use,
// garbage-used-idx) then stop serving: later completions would overwrite
// the forged entries, and the device is broken anyway.
enum class Sabotage {
    none,
    bad_used_id,      // a used entry whose id is beyond the ring
    oversize_len,     // a used length far beyond the buffer
    double_use,       // a head returned twice
    rewrite_desc,     // a chain's descriptors rewritten (the kernel maps them read-only: SIGBUS)
    garbage_used_idx, // the used index jumps ahead by more than the ring
    call_storm,       // the call eventfd signalled 100000 times in a tight loop
    forge_driver_used, // writes the driver's own used ring, which the kernel mediates (SIGBUS)
    // Zero-copy (--zero-copy): these wait, after the `after` requests, for
    // a chain with a data buffer of whole pages (page-aligned IOVA, a
    // multiple of 4096 bytes), which the kernel maps instead of bouncing.
    // Access after the request: the process must die of SIGBUS.
    touch_after_complete, // reads the buffer once its completion is published
    write_readonly,       // writes a write request's data buffer (the kernel maps it read-only)
    // Keep-access attempts on a device-writable buffer, each of which the
    // kernel must refuse, its pages cannot be pinned (EFAULT, or EEXIST:
    // a page table entry without a page); the request is then completed
    // normally and serving goes on.
    odirect,           // pread with O_DIRECT into the buffer (--direct-file)
    io_uring_register, // io_uring buffer registration of the buffer
    vmsplice,          // vmsplice of the buffer into a pipe
    process_vm_readv,  // a forked child reads the buffer with process_vm_readv
};

// What a zero-copy sabotage found; main() turns it into the exit status.
enum class Finding {
    none,             // no such sabotage, or it was refused as expected
    isolation_broken, // an access the kernel must stop went through (exit 3)
    unexpected,       // refused with another error than EFAULT/EEXIST, or not tried (exit 4)
};

// Parses "bad-used-id", ...; nullopt if unknown.
std::optional<Sabotage> parse_sabotage(std::string_view name);
std::string_view sabotage_name(Sabotage sabotage);
// The list for --help.
extern const char* const kSabotageNames;

// Ways the test device can misbehave, to test the transport's defences.
struct Misbehaviour {
    bool no_reply = false;                    // never answer control messages
    std::optional<std::uint64_t> stall_after; // stop completing after N requests
    Sabotage sabotage = Sabotage::none;
    std::uint64_t sabotage_after = 0;
    std::string direct_file; // what --sabotage=odirect reads with O_DIRECT
};

// One device in the transport, served directly through the uapi: no
// adapter, no vhost-user. Owns its control file, window mapping and
// eventfds; the caller's event loop calls on_control()/on_kick().
class TestDevice {
public:
    // zero_copy: create the device with VIRTIO_LOOPBACK_CREATE_ZERO_COPY.
    static Result<std::unique_ptr<TestDevice>> create(std::unique_ptr<RequestHandler> handler,
                                                      bool zero_copy, Misbehaviour misbehaviour,
                                                      Logger log);

    [[nodiscard]] int control_fd() const { return control_.fd(); }
    [[nodiscard]] std::uint32_t num_queues() const { return static_cast<std::uint32_t>(kicks_.size()); }
    [[nodiscard]] int kick_fd(std::uint32_t queue) const { return kicks_.at(queue).get(); }
    [[nodiscard]] bool driver_ok() const { return driver_ok_; }
    [[nodiscard]] std::uint64_t completed() const { return completed_; }
    [[nodiscard]] Finding finding() const { return finding_; }

    // Registers the device with the virtio core.
    Status start() { return control_.start(); }
    // Answers the transport's messages. An error means the device broke.
    Status on_control();
    // Serves what the driver made available on `queue`.
    Status on_kick(std::uint32_t queue);

private:
    TestDevice(loopback::ControlFile control, std::unique_ptr<RequestHandler> handler,
               Misbehaviour misbehaviour, Logger log)
        : control_(std::move(control)), handler_(std::move(handler)),
          misbehaviour_(misbehaviour), log_(std::move(log))
    {
    }
    Status setup(const loopback::DeviceParams& params);
    Status handle_message(const virtio_loopback_msg& msg);
    Status activate_queues();
    Status serve(std::uint32_t queue);
    Status complete(std::uint32_t queue, const virtq::DescriptorChain& chain, std::uint32_t len);
    Status sabotage(std::uint32_t queue, const virtq::DescriptorChain& chain, std::uint32_t len);
    void raw_push(std::uint32_t queue, std::uint32_t id, std::uint32_t len);
    std::byte* ring_at(std::uint64_t iova) const { return window_.data() + iova; }
    std::uint64_t iova_of(const std::byte* p) const
    {
        return static_cast<std::uint64_t>(p - window_.data());
    }
    // Zero-copy sabotage (test_device.cpp, the second half).
    [[nodiscard]] bool sabotage_due(const virtq::DescriptorChain& chain) const;
    Status touch_after_complete(std::uint32_t queue, const virtq::DescriptorChain& chain,
                                std::uint32_t len);
    void write_readonly(std::span<std::byte> buffer);
    void keep_access(std::span<std::byte> buffer);
    Result<int> try_keep_access(std::span<std::byte> page) const;
    [[nodiscard]] std::vector<std::uint16_t> forwarded() const;
    [[nodiscard]] bool forwarded_since(const std::vector<std::uint16_t>& before, std::uint64_t iova,
                                       std::uint64_t len) const;
    [[nodiscard]] bool chain_covers(std::uint32_t queue, std::uint16_t head, std::uint64_t iova,
                                    std::uint64_t len) const;
    void found(Finding finding);

    loopback::ControlFile control_;
    std::unique_ptr<RequestHandler> handler_;
    Misbehaviour misbehaviour_;
    Logger log_;
    loopback::WindowFd window_fd_;
    Mapping window_;
    virtq::GuestMemory memory_;
    std::vector<EventFd> kicks_;
    std::vector<EventFd> calls_;
    std::vector<std::optional<virtq::SplitQueue>> queues_;
    std::vector<loopback::QueueInfo> queue_info_;
    std::uint64_t driver_features_ = 0;
    std::uint64_t offered_features_ = 0; // at CREATE
    bool driver_ok_ = false;
    std::uint64_t completed_ = 0;
    bool sabotaged_ = false; // the sabotage happened (it happens once)
    bool halted_ = false;    // serves nothing more (after a forged used ring)
    Finding finding_ = Finding::none;
};

} // namespace vl::testdev
