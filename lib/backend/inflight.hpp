// SPDX-License-Identifier: Apache-2.0
// Inflight I/O tracking (vhost-user protocol feature INFLIGHT_SHMFD), split
// rings. The back-end records in a shared buffer which chains it took and
// in what order; the front-end keeps the buffer (GET_INFLIGHT_FD) and hands
// it to the next back-end after a crash or restart (SET_INFLIGHT_FD), which
// resubmits the chains that were never completed.
//
// Buffer layout (the spec's "Inflight I/O tracking" format for split rings;
// the spec leaves the layout of the whole buffer to the back-end): one
// region per queue, each padded to 64 bytes, in queue order.
//
//   QueueRegionSplit (16 bytes, host byte order):
//     u64 features (0); u16 version (1; 0 = not initialized);
//     u16 desc_num; u16 last_batch_head; u16 used_idx;
//   DescStateSplit desc[desc_num] (16 bytes each):
//     u8 inflight; u8 padding[5]; u16 next; u64 counter;
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "base/mapping.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "vhost_user/protocol.hpp"
#include "virtqueue/split_queue.hpp"

namespace vl::backend
{

// Bytes of one queue's region for rings of up to `queue_size` entries.
[[nodiscard]] std::uint64_t inflight_queue_region_size(std::uint16_t queue_size);

// The tracking state of one queue inside the shared buffer. Implements the
// SplitQueue hooks, so attaching it to a queue records every pop and push.
// The buffer survives a crash of this process, so the hooks order their
// stores (a compiler barrier around the queue's own ordered stores) such
// that recovery can always tell what happened.
class InflightQueue final : public virtq::InflightTracker
{
  public:
    // `region` holds a header and `desc_num` entries (checked by the buffer).
    InflightQueue(std::span<std::byte> region, std::uint16_t desc_num);

    // Reconnect recovery against the used ring's current index: completes a
    // batch that was published but not recorded, then returns the heads
    // still in flight, oldest first. Heads must be below `ring_size`; a
    // buffer that names others, or a batch list that leaves the table, is
    // corrupt (an error, and nothing is resubmitted).
    Result<std::vector<std::uint16_t>> recover(std::uint16_t used_idx, std::uint32_t ring_size);

    void on_popped(std::uint16_t head) override;
    void on_pushing(std::uint16_t head) override;
    void on_pushed(std::uint16_t head, std::uint16_t used_idx) override;

    // For tests and diagnostics.
    [[nodiscard]] bool in_flight(std::uint16_t head) const;
    [[nodiscard]] std::uint16_t recorded_used_idx() const;

  private:
    [[nodiscard]] std::byte* entry(std::uint16_t head) const;

    std::span<std::byte> region_;
    std::uint16_t desc_num_;
    std::uint64_t next_counter_ = 1;
};

// The whole shared buffer, mapped.
class InflightBuffer
{
  public:
    InflightBuffer(InflightBuffer&&) noexcept = default;
    InflightBuffer& operator=(InflightBuffer&&) noexcept = default;

    // GET_INFLIGHT_FD: a new buffer in a memfd, every queue region
    // initialized (version 1, no chain in flight). Returns the fd to send.
    static Result<std::pair<InflightBuffer, UniqueFd>> create(std::uint16_t num_queues,
                                                              std::uint16_t queue_size);

    // SET_INFLIGHT_FD: maps a buffer the front-end kept. Regions that were
    // never initialized (version 0) are initialized now; any other version,
    // or a desc_num other than queue_size, is refused.
    static Result<InflightBuffer> map(const vhost_user::InflightDescription& description, int fd);

    [[nodiscard]] std::uint16_t num_queues() const noexcept { return num_queues_; }
    [[nodiscard]] std::uint16_t queue_size() const noexcept { return queue_size_; }
    [[nodiscard]] const vhost_user::InflightDescription& description() const noexcept
    {
        return description_;
    }

    // The tracker of queue `index` (< num_queues()).
    [[nodiscard]] InflightQueue queue(std::uint16_t index) const;

  private:
    InflightBuffer() = default;
    static Status check_geometry(std::uint16_t num_queues, std::uint16_t queue_size);
    [[nodiscard]] std::span<std::byte> region(std::uint16_t index) const;
    Status prepare_regions();

    Mapping mapping_;
    std::size_t lead_ = 0; // bytes mapped before mmap_offset (page alignment)
    std::uint16_t num_queues_ = 0;
    std::uint16_t queue_size_ = 0;
    vhost_user::InflightDescription description_;
};

} // namespace vl::backend
