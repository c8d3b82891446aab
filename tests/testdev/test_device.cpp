// SPDX-License-Identifier: Apache-2.0
#include "test_device.hpp"

#include <linux/virtio_config.h>

#include <fcntl.h>
#include <liburing.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/unique_fd.hpp"
#include "virtqueue/ring.hpp"

namespace vl::testdev {

const char* const kSabotageNames =
    "bad-used-id|oversize-len|double-use|rewrite-desc|garbage-used-idx|call-storm|"
    "forge-driver-used|touch-after-complete|write-readonly|odirect|io-uring-register|vmsplice|"
    "process-vm-readv";

namespace {

constexpr std::pair<std::string_view, Sabotage> kSabotages[] = {
    {"bad-used-id", Sabotage::bad_used_id},           {"oversize-len", Sabotage::oversize_len},
    {"double-use", Sabotage::double_use},             {"rewrite-desc", Sabotage::rewrite_desc},
    {"garbage-used-idx", Sabotage::garbage_used_idx}, {"call-storm", Sabotage::call_storm},
    {"forge-driver-used", Sabotage::forge_driver_used},
    {"touch-after-complete", Sabotage::touch_after_complete},
    {"write-readonly", Sabotage::write_readonly},
    {"odirect", Sabotage::odirect},
    {"io-uring-register", Sabotage::io_uring_register},
    {"vmsplice", Sabotage::vmsplice},
    {"process-vm-readv", Sabotage::process_vm_readv},
};

constexpr std::uint64_t kPage = 4096;

// The first of `buffers` that covers whole pages (a page-aligned IOVA and
// a multiple of 4096 bytes): a buffer the kernel maps instead of bouncing
// on a zero-copy device. The window's mapping starts on a page, so the
// host address is aligned where the IOVA is. Empty if there is none.
std::span<std::byte> whole_pages(std::span<const std::span<std::byte>> buffers)
{
    for (auto b : buffers)
        if (!b.empty() && reinterpret_cast<std::uintptr_t>(b.data()) % kPage == 0 &&
            b.size() % kPage == 0)
            return b;
    return {};
}

// The zero-copy sabotages wait for a chain with such a buffer, on the side
// they need: write-readonly a device-readable one (a write request), the
// keep-access attempts a device-writable one (a read request: the pages
// are writable, so a refusal cannot come from their protection),
// touch-after-complete either.
std::span<std::byte> sabotage_buffer(Sabotage sabotage, const virtq::DescriptorChain& chain)
{
    switch (sabotage) {
    case Sabotage::touch_after_complete: {
        auto b = whole_pages(chain.writable());
        return b.empty() ? whole_pages(chain.readable()) : b;
    }
    case Sabotage::write_readonly:
        return whole_pages(chain.readable());
    case Sabotage::odirect:
    case Sabotage::io_uring_register:
    case Sabotage::vmsplice:
    case Sabotage::process_vm_readv:
        return whole_pages(chain.writable());
    default:
        return {};
    }
}

bool needs_whole_pages(Sabotage sabotage)
{
    return sabotage >= Sabotage::touch_after_complete;
}

} // namespace

std::optional<Sabotage> parse_sabotage(std::string_view name)
{
    for (auto [n, s] : kSabotages)
        if (n == name)
            return s;
    return std::nullopt;
}

std::string_view sabotage_name(Sabotage sabotage)
{
    for (auto [n, s] : kSabotages)
        if (s == sabotage)
            return n;
    return "none";
}

Result<std::unique_ptr<TestDevice>> TestDevice::create(std::unique_ptr<RequestHandler> handler,
                                                       bool zero_copy, Misbehaviour misbehaviour,
                                                       Logger log)
{
    VL_TRY_ASSIGN(auto control, loopback::ControlFile::open());
    auto params = handler->params();
    params.zero_copy = zero_copy;
    std::unique_ptr<TestDevice> dev(
        new TestDevice(std::move(control), std::move(handler), misbehaviour, std::move(log)));
    VL_TRY(dev->setup(params));
    return dev;
}

Status TestDevice::setup(const loopback::DeviceParams& params)
{
    VL_TRY(control_.create(params));
    offered_features_ = params.features;
    VL_TRY_ASSIGN(window_fd_, control_.window());
    VL_TRY_ASSIGN(window_, Mapping::map(window_fd_.fd.get(), window_fd_.size, 0));
    VL_TRY(memory_.add_region({0, window_fd_.size, window_.data(), std::nullopt}));
    for (std::uint32_t i = 0; i < params.num_queues; ++i) {
        VL_TRY_ASSIGN(auto kick, EventFd::create());
        VL_TRY_ASSIGN(auto call, EventFd::create());
        VL_TRY(control_.set_queue_fds(i, kick.get(), call.get()));
        kicks_.push_back(std::move(kick));
        calls_.push_back(std::move(call));
    }
    queues_.resize(params.num_queues);
    queue_info_.resize(params.num_queues);
    VL_TRY_ASSIGN(auto info, control_.info());
    log_.info("created virtio-loopback.{} (virtio id {}, {} queues, window {} KiB{})", info.index,
              params.device_id, params.num_queues, window_fd_.size >> 10,
              params.zero_copy ? ", zero-copy" : "");
    return ok_status();
}

Status TestDevice::on_control()
{
    for (;;) {
        VL_TRY_ASSIGN(auto msg, control_.read_message());
        if (!msg)
            return ok_status();
        log_.debug("message {}: {}", msg->id, loopback::describe_message(*msg));
        if (misbehaviour_.no_reply) {
            log_.info("not answering {} (--no-reply)", loopback::describe_message(*msg));
            continue;
        }
        Status handled = handle_message(*msg);
        if (!handled.ok())
            log_.error("{}: {}", loopback::describe_message(*msg), handled.error().message());
        VL_TRY(control_.reply(msg->id, handled.ok() ? 0 : -EIO));
    }
}

Status TestDevice::handle_message(const virtio_loopback_msg& msg)
{
    switch (msg.type) {
    case VIRTIO_LOOPBACK_MSG_SET_STATUS:
        if (msg.status.status & VIRTIO_CONFIG_S_FEATURES_OK)
            driver_features_ = msg.status.driver_features;
        if ((msg.status.status & VIRTIO_CONFIG_S_DRIVER_OK) && !driver_ok_)
            return activate_queues();
        return ok_status();
    case VIRTIO_LOOPBACK_MSG_RESET:
        for (auto& q : queues_)
            q.reset();
        driver_ok_ = false;
        return ok_status();
    case VIRTIO_LOOPBACK_MSG_SET_CONFIG:
        return ok_status();
    default:
        return Error("unknown message type " + std::to_string(msg.type));
    }
}

Status TestDevice::activate_queues()
{
    for (std::uint32_t i = 0; i < queues_.size(); ++i) {
        VL_TRY_ASSIGN(auto info, control_.queue(i));
        if (!info.ready)
            continue;
        virtq::QueueConfig cfg;
        cfg.size = info.size;
        cfg.desc_addr = info.desc;
        cfg.avail_addr = info.avail;
        cfg.used_addr = info.used;
        // The kernel's view of the rings uses EVENT_IDX when we offered it.
        cfg.event_idx = (offered_features_ >> virtq::kFeatureEventIdx) & 1;
        cfg.indirect_desc = (driver_features_ >> virtq::kFeatureIndirectDesc) & 1;
        cfg.max_chain_len = handler_->max_chain_len();
        VL_TRY_ASSIGN(auto queue, virtq::SplitQueue::create(memory_, cfg));
        queues_[i].emplace(std::move(queue));
        queue_info_[i] = info;
        log_.debug("queue {}: {} descriptors", i, info.size);
    }
    driver_ok_ = true;
    for (std::uint32_t i = 0; i < queues_.size(); ++i)
        VL_TRY(serve(i));
    return ok_status();
}

Status TestDevice::on_kick(std::uint32_t queue)
{
    VL_TRY(kicks_.at(queue).drain());
    return serve(queue);
}

Status TestDevice::serve(std::uint32_t index)
{
    auto& queue = queues_.at(index);
    if (!queue || queue->broken())
        return ok_status();
    bool pushed = false;
    do {
        queue->disable_notification();
        for (;;) {
            if (halted_ ||
                (misbehaviour_.stall_after && completed_ >= *misbehaviour_.stall_after))
                return ok_status(); // leave everything in flight
            VL_TRY_ASSIGN(auto chain, queue->pop());
            if (!chain)
                break;
            std::uint32_t len = handler_->handle(index, *chain);
            VL_TRY(complete(index, *chain, len));
            ++completed_;
            pushed = true;
        }
    } while (queue->enable_notification());
    if (pushed && queue->needs_notification())
        VL_TRY(calls_.at(index).signal());
    return ok_status();
}

} // namespace vl::testdev

namespace vl::testdev {

Status TestDevice::complete(std::uint32_t queue, const virtq::DescriptorChain& chain,
                            std::uint32_t len)
{
    if (!sabotage_due(chain))
        return queues_.at(queue)->push(chain.head(), len);
    sabotaged_ = true;
    VL_TRY(sabotage(queue, chain, len)); // may clear sabotaged_ to try again later
    if (sabotaged_)
        log_.warn("sabotage {} done on queue {} after {} requests{}",
                  sabotage_name(misbehaviour_.sabotage), queue, completed_,
                  halted_ ? "; serving nothing more" : "");
    // Now, not whenever the next completion comes (if ever).
    return calls_.at(queue).signal();
}

// Writes a used element and publishes it behind the SplitQueue's back.
void TestDevice::raw_push(std::uint32_t queue, std::uint32_t id, std::uint32_t len)
{
    const auto& info = queue_info_.at(queue);
    std::byte* used = ring_at(info.used);
    auto* idx = reinterpret_cast<std::uint16_t*>(used + virtq::ring_offset::kIdx);
    std::uint16_t next = *idx;
    std::byte* elem = used + virtq::ring_offset::used_entry(next % info.size);
    std::memcpy(elem, &id, 4);
    std::memcpy(elem + 4, &len, 4);
    std::atomic_thread_fence(std::memory_order_release);
    *idx = static_cast<std::uint16_t>(next + 1);
}

Status TestDevice::sabotage(std::uint32_t queue, const virtq::DescriptorChain& chain,
                            std::uint32_t len)
{
    auto& q = queues_.at(queue);
    const auto& info = queue_info_.at(queue);
    switch (misbehaviour_.sabotage) {
    case Sabotage::bad_used_id:
        raw_push(queue, info.size + 7, len);
        halted_ = true;
        return ok_status();
    case Sabotage::oversize_len: {
        // A proper push, then its length overwritten before the call: the
        // queue's own used index stays right, so serving goes on.
        VL_TRY(q->push(chain.head(), len));
        const auto* idx =
            reinterpret_cast<const std::uint16_t*>(ring_at(info.used) + virtq::ring_offset::kIdx);
        const std::uint32_t slot = static_cast<std::uint16_t>(*idx - 1) % info.size;
        const std::uint32_t huge = 1u << 30;
        std::memcpy(ring_at(info.used) + virtq::ring_offset::used_entry(slot) + 4, &huge, 4);
        return ok_status();
    }
    case Sabotage::double_use:
        VL_TRY(q->push(chain.head(), len));
        raw_push(queue, chain.head(), len);
        halted_ = true;
        return ok_status();
    case Sabotage::rewrite_desc: {
        // Point the chain's descriptors outside the window, with absurd
        // lengths and a NEXT flag on the last one, then complete it.
        for (std::uint32_t i = 0, d = chain.head(); i < 4 && d < info.size; ++i) {
            std::byte* desc = ring_at(info.desc) + d * virtq::kDescriptorSize;
            std::uint16_t next = 0;
            std::memcpy(&next, desc + 14, 2);
            std::uint64_t addr = 0x7ffffffff000;
            std::uint32_t huge = 0xfffffff0;
            std::uint16_t flags = virtq::kDescFlagNext | virtq::kDescFlagWrite;
            std::memcpy(desc, &addr, 8);
            std::memcpy(desc + 8, &huge, 4);
            std::memcpy(desc + 12, &flags, 2);
            d = next;
        }
        return q->push(chain.head(), len);
    }
    case Sabotage::garbage_used_idx: {
        auto* idx = reinterpret_cast<std::uint16_t*>(ring_at(info.used) + virtq::ring_offset::kIdx);
        *idx = static_cast<std::uint16_t>(*idx + 1000);
        halted_ = true;
        return ok_status();
    }
    case Sabotage::forge_driver_used: {
        // The rings the kernel gave us are a view of its own; the driver's
        // used ring lies where vring_create_virtqueue() puts it: after the
        // descriptor table and the driver's available ring (flags, idx,
        // ring, used_event), page-aligned. Completing the chain there, past
        // the kernel's checks, must fault.
        constexpr std::uint64_t kPage = 4096;
        const std::uint64_t driver_avail = info.desc + std::uint64_t{virtq::kDescriptorSize} * info.size;
        const std::uint64_t driver_used = (driver_avail + 6 + 2ull * info.size + kPage - 1) & ~(kPage - 1);
        std::byte* used = ring_at(driver_used);
        const std::uint32_t id = chain.head();
        std::memcpy(used + virtq::ring_offset::used_entry(0), &id, 4);
        halted_ = true;
        return ok_status();
    }
    case Sabotage::call_storm:
        VL_TRY(q->push(chain.head(), len));
        for (int i = 0; i < 100000; ++i)
            VL_TRY(calls_.at(queue).signal());
        return ok_status();
    case Sabotage::touch_after_complete:
        return touch_after_complete(queue, chain, len);
    case Sabotage::write_readonly:
        write_readonly(sabotage_buffer(misbehaviour_.sabotage, chain));
        return q->push(chain.head(), len);
    case Sabotage::odirect:
    case Sabotage::io_uring_register:
    case Sabotage::vmsplice:
    case Sabotage::process_vm_readv:
        keep_access(sabotage_buffer(misbehaviour_.sabotage, chain));
        return q->push(chain.head(), len);
    case Sabotage::none:
        break;
    }
    return q->push(chain.head(), len);
}

// ---- Zero-copy sabotage ---------------------------------------------------
// On a --zero-copy device, a whole-page buffer is the driver's own pages,
// mapped in the window from the moment the kernel forwards the request
// until it publishes the completion, read-only when the device only reads
// them, and never pinnable. Each mode below checks one of those promises;
// what it finds is logged and kept for the exit status (finding()).

bool TestDevice::sabotage_due(const virtq::DescriptorChain& chain) const
{
    const Sabotage s = misbehaviour_.sabotage;
    if (s == Sabotage::none || sabotaged_ || completed_ < misbehaviour_.sabotage_after)
        return false;
    return !needs_whole_pages(s) || !sabotage_buffer(s, chain).empty();
}

void TestDevice::found(Finding finding)
{
    if (finding_ != Finding::isolation_broken)
        finding_ = finding;
}

// The device's available index of every queue: how far the kernel has
// forwarded the driver's requests.
std::vector<std::uint16_t> TestDevice::forwarded() const
{
    std::vector<std::uint16_t> idx(queues_.size(), 0);
    for (std::size_t q = 0; q < queues_.size(); ++q)
        if (queues_[q])
            idx[q] =
                virtq::load_shared_le16(ring_at(queue_info_[q].avail) + virtq::ring_offset::kIdx,
                                        std::memory_order_acquire);
    return idx;
}

// Whether a request the kernel forwarded after `before` has a buffer in
// [iova, iova + len): then the kernel maps those IOVAs again, rightly.
bool TestDevice::forwarded_since(const std::vector<std::uint16_t>& before, std::uint64_t iova,
                                 std::uint64_t len) const
{
    const auto now = forwarded();
    for (std::uint32_t q = 0; q < now.size(); ++q) {
        const auto& info = queue_info_[q];
        for (std::uint16_t i = before[q]; i != now[q]; ++i) {
            const std::uint16_t head = virtq::load_le16(
                ring_at(info.avail) + virtq::ring_offset::avail_entry(i % info.size));
            if (chain_covers(q, head, iova, len))
                return true;
        }
    }
    return false;
}

// Walks a chain (indirect tables too) in the descriptor table, bounded,
// and says whether a buffer of it overlaps [iova, iova + len). Anything
// malformed counts as overlapping: the caller then only tries again.
bool TestDevice::chain_covers(std::uint32_t queue, std::uint16_t head, std::uint64_t iova,
                              std::uint64_t len) const
{
    const auto& info = queue_info_.at(queue);
    auto overlaps = [&](const virtq::Descriptor& d) {
        return d.addr < iova + len && iova < d.addr + d.len;
    };
    auto load = [&](std::uint64_t table, std::uint32_t i) {
        const std::byte* p = ring_at(table) + std::uint64_t{i} * virtq::kDescriptorSize;
        return virtq::Descriptor{virtq::load_le64(p), virtq::load_le32(p + 8),
                                 virtq::load_le16(p + 12), virtq::load_le16(p + 14)};
    };
    std::uint32_t d = head;
    for (std::uint32_t steps = 0; steps < info.size; ++steps) {
        if (d >= info.size)
            return true;
        const virtq::Descriptor desc = load(info.desc, d);
        if (desc.is_indirect()) {
            const std::uint32_t n = desc.len / virtq::kDescriptorSize;
            if (desc.addr + desc.len > window_.size() || n > virtq::kMaxIndirectEntries)
                return true;
            for (std::uint32_t k = 0; k < n; ++k)
                if (overlaps(load(desc.addr, k)))
                    return true;
        } else if (overlaps(desc)) {
            return true;
        }
        if (!desc.has_next())
            return false;
        d = desc.next;
    }
    return true;
}

// Completes the chain, makes the kernel publish the completion at once
// (GET_QUEUE runs the queue's interrupt), then reads the buffer: its
// pages are gone from the window, so the read must raise SIGBUS. If the
// read succeeds while the driver already had the IOVAs mapped again for a
// later request (the allocator reuses freed IOVAs first), nothing is
// proven: try again on a later request.
Status TestDevice::touch_after_complete(std::uint32_t queue, const virtq::DescriptorChain& chain,
                                        std::uint32_t len)
{
    const auto buffer = sabotage_buffer(misbehaviour_.sabotage, chain);
    const std::uint64_t iova = iova_of(buffer.data());
    const auto before = forwarded();
    VL_TRY(queues_.at(queue)->push(chain.head(), len));
    VL_TRY(calls_.at(queue).signal());
    VL_TRY_ASSIGN(auto info, control_.queue(queue));
    if (info.used_idx != queues_.at(queue)->used_idx())
        return Error(fmt::format("touch-after-complete: GET_QUEUE says the kernel checked used "
                                 "entries up to {}, not {}: the completion is not published",
                                 info.used_idx, queues_.at(queue)->used_idx()));
    log_.warn("touch-after-complete: reading IOVA {:#x} ({} bytes), whose request is complete "
              "(SIGBUS expected)",
              iova, buffer.size());
    const auto value = *reinterpret_cast<volatile const std::byte*>(buffer.data());
    (void)value;
    if (forwarded_since(before, iova, buffer.size())) {
        log_.warn("touch-after-complete: inconclusive, the driver had the IOVA mapped again for a "
                  "later request; trying again on a later one");
        sabotaged_ = false;
        return ok_status();
    }
    log_.error("touch-after-complete: read IOVA {:#x} after its completion was published without a "
               "fault: SUCCEEDED: isolation broken",
               iova);
    found(Finding::isolation_broken);
    return ok_status();
}

// Writes a byte of a device-readable buffer (the same value: nothing
// changes if it goes through). The kernel maps it read-only: SIGBUS.
void TestDevice::write_readonly(std::span<std::byte> buffer)
{
    const std::uint64_t iova = iova_of(buffer.data());
    log_.warn("write-readonly: writing the device-readable buffer at IOVA {:#x} ({} bytes) "
              "(SIGBUS expected)",
              iova, buffer.size());
    auto* p = reinterpret_cast<volatile std::byte*>(buffer.data());
    *p = *p;
    log_.error("write-readonly: wrote the device-readable buffer at IOVA {:#x} without a fault: "
               "SUCCEEDED: isolation broken",
               iova);
    found(Finding::isolation_broken);
}

// Tries to take a reference to the buffer's first page that would outlive
// the request; the kernel must refuse it (EFAULT or EEXIST).
void TestDevice::keep_access(std::span<std::byte> buffer)
{
    const auto name = sabotage_name(misbehaviour_.sabotage);
    const std::uint64_t iova = iova_of(buffer.data());
    auto result = try_keep_access(buffer.first(kPage));
    if (!result) {
        log_.error("keep-access {}: could not be tried: {}", name, result.error().message());
        found(Finding::unexpected);
    } else if (*result == 0) {
        log_.error("keep-access {}: SUCCEEDED: isolation broken (buffer at IOVA {:#x})", name,
                   iova);
        found(Finding::isolation_broken);
    } else if (*result == EFAULT || *result == EEXIST) {
        // The two errors of a refused pin (docs/uapi.md, "Zero-copy"):
        // EEXIST where get_user_pages finds a page table entry without a
        // page it could take.
        log_.warn("keep-access {}: refused with {} (buffer at IOVA {:#x})", name,
                  strerrorname_np(*result), iova);
    } else {
        log_.error("keep-access {}: refused with {} ({}), not EFAULT or EEXIST (buffer at IOVA "
                   "{:#x})",
                   name, strerrorname_np(*result), std::strerror(*result), iova);
        found(Finding::unexpected);
    }
}

// One keep-access attempt on `page`: the errno it failed with, 0 if it
// succeeded, or an error if it could not be made at all.
Result<int> TestDevice::try_keep_access(std::span<std::byte> page) const
{
    iovec iov{page.data(), page.size()};
    switch (misbehaviour_.sabotage) {
    case Sabotage::odirect: {
        UniqueFd fd(::open(misbehaviour_.direct_file.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
        if (!fd)
            return Error::from_errno("open " + misbehaviour_.direct_file + " with O_DIRECT");
        return ::pread(fd.get(), page.data(), page.size(), 0) < 0 ? errno : 0;
    }
    case Sabotage::io_uring_register: {
        io_uring ring{};
        if (int rc = io_uring_queue_init(1, &ring, 0); rc < 0)
            return Error("io_uring_queue_init: " + std::string(std::strerror(-rc)), -rc);
        const int rc = io_uring_register_buffers(&ring, &iov, 1);
        io_uring_queue_exit(&ring);
        return rc < 0 ? -rc : 0;
    }
    case Sabotage::vmsplice: {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
            return Error::from_errno("pipe2");
        UniqueFd read_end(fds[0]), write_end(fds[1]);
        return ::vmsplice(write_end.get(), &iov, 1, SPLICE_F_NONBLOCK) < 0 ? errno : 0;
    }
    case Sabotage::process_vm_readv: {
        // Another process (a child) reads our memory: pins of a foreign
        // mm, as a debugger or a second back-end process would take them.
        const pid_t parent = ::getpid();
        const pid_t child = ::fork();
        if (child < 0)
            return Error::from_errno("fork");
        if (child == 0) {
            std::array<std::byte, kPage> copy;
            iovec local{copy.data(), copy.size()};
            const ssize_t n = ::process_vm_readv(parent, &local, 1, &iov, 1, 0);
            ::_exit(n < 0 ? (errno & 0x7f) : n == static_cast<ssize_t>(copy.size()) ? 0 : 0x7f);
        }
        int status = 0;
        if (::waitpid(child, &status, 0) < 0)
            return Error::from_errno("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) == 0x7f)
            return Error("the child reading with process_vm_readv ended abnormally", EIO);
        return WEXITSTATUS(status);
    }
    default:
        return Error("not a keep-access sabotage", EINVAL);
    }
}

} // namespace vl::testdev
