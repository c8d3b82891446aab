// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: descriptor walking and used-ring validation with
// hostile ring contents.
//
// Input: a 16-byte header, then the contents of guest memory region 0.
//
//   byte 0     queue size = 1 << (b % 10)
//   byte 1     flags: 1 EVENT_IDX, 2 INDIRECT_DESC, 4 add an adjacent
//              region, 8 allow long chains, 16 driver mode
//   bytes 2-3  avail_base (little-endian)
//   bytes 4-5  descriptor table offset in region 0, in 16-byte units
//   bytes 6-7  available ring offset, in 2-byte units
//   bytes 8-9  used ring offset, in 4-byte units
//   byte 10    how much the device claims to write per chain
//   rest       ignored
//
// Guest memory: region 0 at 0x10000 (64 KiB, filled from the input),
// optionally region 1 right after it (4 KiB, adjacent: buffers and tables
// may straddle), and region 2 in the last page of the 64-bit address space
// (to exercise wrap-around checks). Every region is an mmap with
// inaccessible guard pages on both sides, so an access outside guest
// memory faults even where ASan does not instrument.
//
// Device mode pops until the queue is empty or broken, checks every chain
// against the guarantees DescriptorChain documents, copies through it and
// pushes it back. Driver mode lays out a SplitDriver in region 0, fills the
// ring, lets the input overwrite the used ring, and collects used buffers.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "virtqueue/guest_memory.hpp"
#include "virtqueue/split_driver.hpp"
#include "virtqueue/split_queue.hpp"

namespace
{

using namespace vl::virtq;

// Fails loudly: libFuzzer reports the input.
void check(bool condition)
{
    if (!condition)
        __builtin_trap();
}

class GuardedRegion
{
  public:
    explicit GuardedRegion(std::size_t size) : size_(size)
    {
        page_ = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        total_ = size + 2 * page_;
        void* p = ::mmap(nullptr, total_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        check(p != MAP_FAILED);
        base_ = static_cast<std::byte*>(p);
        check(::mprotect(base_ + page_, size, PROT_READ | PROT_WRITE) == 0);
    }
    ~GuardedRegion() { ::munmap(base_, total_); }
    GuardedRegion(const GuardedRegion&) = delete;
    GuardedRegion& operator=(const GuardedRegion&) = delete;

    [[nodiscard]] std::byte* data() const { return base_ + page_; }
    [[nodiscard]] std::size_t size() const { return size_; }
    [[nodiscard]] bool holds(std::span<const std::byte> s) const
    {
        return s.data() >= data() && s.size() <= size_ &&
               static_cast<std::size_t>(s.data() - data()) <= size_ - s.size();
    }

  private:
    std::byte* base_ = nullptr;
    std::size_t size_ = 0;
    std::size_t total_ = 0;
    std::size_t page_ = 0;
};

constexpr std::uint64_t kRegion0 = 0x10000;
constexpr std::size_t kRegion0Size = 0x10000;
constexpr std::uint64_t kRegion1 = kRegion0 + kRegion0Size;
constexpr std::size_t kSmallRegion = 0x1000;
constexpr std::uint64_t kRegion2 = 0xfffffffffffff000;
constexpr std::size_t kHeaderSize = 16;

struct Header {
    std::uint32_t size;
    bool event_idx;
    bool indirect;
    bool adjacent_region;
    bool long_chains;
    bool driver_mode;
    std::uint16_t avail_base;
    std::uint64_t desc_off;
    std::uint64_t avail_off;
    std::uint64_t used_off;
    std::uint8_t write_policy;
};

Header parse_header(const std::uint8_t* in)
{
    auto u16 = [&](std::size_t at) {
        return static_cast<std::uint16_t>(in[at] | (in[at + 1] << 8));
    };
    Header h{};
    h.size = 1U << (in[0] % 10);
    h.event_idx = (in[1] & 1) != 0;
    h.indirect = (in[1] & 2) != 0;
    h.adjacent_region = (in[1] & 4) != 0;
    h.long_chains = (in[1] & 8) != 0;
    h.driver_mode = (in[1] & 16) != 0;
    h.avail_base = u16(2);
    h.desc_off = (std::uint64_t{u16(4)} * 16) % kRegion0Size;
    h.avail_off = (std::uint64_t{u16(6)} * 2) % kRegion0Size;
    h.used_off = (std::uint64_t{u16(8)} * 4) % kRegion0Size;
    h.write_policy = in[10];
    return h;
}

class Harness
{
  public:
    explicit Harness(const Header& h)
        : region0_(kRegion0Size), region1_(kSmallRegion), region2_(kSmallRegion)
    {
        check(memory_.add_region({kRegion0, kRegion0Size, region0_.data(), {}}).ok());
        if (h.adjacent_region)
            check(memory_.add_region({kRegion1, kSmallRegion, region1_.data(), {}}).ok());
        check(memory_.add_region({kRegion2, kSmallRegion, region2_.data(), {}}).ok());
    }

    void load(const std::uint8_t* data, std::size_t size)
    {
        std::memcpy(region0_.data(), data, std::min(size, kRegion0Size));
    }

    [[nodiscard]] bool in_guest_memory(std::span<const std::byte> s) const
    {
        return region0_.holds(s) || region1_.holds(s) || region2_.holds(s);
    }

    GuestMemory& memory() { return memory_; }
    std::byte* region0() { return region0_.data(); }

  private:
    GuardedRegion region0_;
    GuardedRegion region1_;
    GuardedRegion region2_;
    GuestMemory memory_;
};

// Checks what DescriptorChain promises and returns the total span bytes.
std::uint64_t check_part(const Harness& harness, std::span<const std::span<std::byte>> part)
{
    std::uint64_t total = 0;
    for (std::span<std::byte> s : part) {
        check(!s.empty());
        check(harness.in_guest_memory(s));
        total += s.size();
    }
    return total;
}

void exercise_chain(const Harness& harness, const DescriptorChain& chain,
                    std::uint32_t max_chain_len)
{
    check(check_part(harness, chain.readable()) == chain.readable_len());
    check(check_part(harness, chain.writable()) == chain.writable_len());
    check(std::uint64_t{chain.readable_len()} + chain.writable_len() <= 0xffffffffULL);
    check(chain.descriptor_count() <= max_chain_len);

    // Copy through the chain at a few offsets; never more than it holds.
    std::array<std::byte, 300> scratch{};
    for (std::size_t offset : {std::size_t{0}, std::size_t{5}, std::size_t{1000}}) {
        const std::size_t got = chain.read_into(scratch, offset);
        check(got <= scratch.size());
        check(got == std::min<std::uint64_t>(scratch.size(), chain.readable_len() > offset
                                                                 ? chain.readable_len() - offset
                                                                 : 0));
        const std::size_t put = chain.write_from(scratch, offset);
        check(put == std::min<std::uint64_t>(scratch.size(), chain.writable_len() > offset
                                                                 ? chain.writable_len() - offset
                                                                 : 0));
    }
}

void run_device(Harness& harness, const Header& h)
{
    QueueConfig c;
    c.size = h.size;
    c.desc_addr = kRegion0 + h.desc_off;
    c.avail_addr = kRegion0 + h.avail_off;
    c.used_addr = kRegion0 + h.used_off;
    c.event_idx = h.event_idx;
    c.indirect_desc = h.indirect;
    c.avail_base = h.avail_base;
    c.max_chain_len = h.long_chains ? h.size + kMaxIndirectEntries : 0;
    auto created = SplitQueue::create(harness.memory(), c);
    if (!created)
        return; // rings do not fit where the input put them
    SplitQueue& q = *created;
    const std::uint32_t max_chain_len = h.long_chains ? h.size + kMaxIndirectEntries : h.size;

    // Our own used-ring writes may land on the available ring (a hostile
    // layout can overlap them) and keep "adding" work: bound the rounds.
    const std::uint32_t max_pops = 4 * h.size + 16;
    DescriptorChain chain;
    for (std::uint32_t i = 0; i < max_pops; ++i) {
        auto got = q.pop_into(chain);
        if (!got) {
            check(q.broken());
            check(!q.broken_reason().empty());
            check(!q.push(0, 0).ok());
            return;
        }
        if (!*got)
            break;
        check(q.is_in_flight(chain.head()));
        exercise_chain(harness, chain, max_chain_len);
        // A device that claims too much is refused without breaking the queue.
        if (chain.writable_len() < 0xffffffffU)
            check(!q.push(chain.head(), chain.writable_len() + 1).ok());
        check(!q.broken());
        const std::uint32_t written =
            (h.write_policy & 1) != 0
                ? chain.writable_len()
                : std::min<std::uint32_t>(chain.writable_len(), h.write_policy);
        check(q.push(chain.head(), written).ok());
        check(!q.is_in_flight(chain.head()));
        static_cast<void>(q.needs_notification());
        if ((h.write_policy & 2) != 0)
            q.disable_notification();
        else
            static_cast<void>(q.enable_notification());
    }
    check(q.in_flight_count() == 0);
}

void run_driver(Harness& harness, const Header& h, const std::uint8_t* data, std::size_t size)
{
    // Two descriptors per direct chain: a queue of one could hold none.
    DriverConfig dc{std::max(h.size, 2U), h.event_idx, h.indirect ? 4U : 0U};
    auto layout = RingLayout::compute(dc);
    check(layout.ok());
    if (layout->total_bytes > kRegion0Size / 2)
        return;
    auto created = SplitDriver::create(
        std::span<std::byte>(harness.region0(), static_cast<std::size_t>(layout->total_bytes)),
        kRegion0, dc);
    check(created.ok());
    SplitDriver& d = *created;

    // Fill the ring with chains of one readable and one writable buffer of
    // 64 bytes each (in the upper half of region 0).
    const GuestBuffer r{kRegion0 + kRegion0Size / 2, 64};
    const GuestBuffer w{kRegion0 + kRegion0Size / 2 + 64, 64};
    std::vector<bool> in_flight(dc.size, false);
    for (std::uint32_t i = 0; i < dc.size; ++i) {
        auto added = d.add(std::span(&r, 1), std::span(&w, 1), h.indirect && (i % 2 == 0));
        check(added.ok());
        if (!added->has_value())
            break;
        check(!in_flight[**added]);
        in_flight[**added] = true;
    }
    static_cast<void>(d.kick_needed());

    // The device (the input) rewrites the whole used ring.
    const std::size_t used_bytes = used_ring_bytes(dc.size, dc.event_idx);
    std::byte* used = harness.region0() + layout->used_offset;
    std::memset(used, 0, used_bytes);
    std::memcpy(used, data, std::min(size, used_bytes));

    for (std::uint32_t i = 0; i < 2 * dc.size + 2; ++i) {
        auto u = d.get_used();
        if (!u) {
            check(d.broken());
            return;
        }
        if (!u->has_value()) {
            static_cast<void>(d.enable_interrupts());
            break;
        }
        check((*u)->head < dc.size && in_flight[(*u)->head]);
        check((*u)->len <= 64);
        in_flight[(*u)->head] = false;
    }
    // Freed descriptors must be reusable and accounted for.
    const auto outstanding =
        static_cast<std::uint32_t>(std::count(in_flight.begin(), in_flight.end(), true));
    check(d.in_flight() == outstanding);
    while (true) {
        auto added = d.add(std::span(&r, 1), std::span(&w, 1));
        check(added.ok());
        if (!added->has_value())
            break;
        check(!in_flight[**added]);
        in_flight[**added] = true;
    }
    check(d.free_descriptors() <= 1);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < kHeaderSize)
        return 0;
    const Header h = parse_header(data);
    Harness harness(h);
    data += kHeaderSize;
    size -= kHeaderSize;
    if (h.driver_mode) {
        run_driver(harness, h, data, size);
    } else {
        harness.load(data, size);
        run_device(harness, h);
    }
    return 0;
}
