// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/result.hpp"
#include "virtqueue/guest_memory.hpp"

namespace vl::virtq
{

// One available buffer, as the device sees it after SplitQueue validated
// the descriptors: the head index (to hand back with SplitQueue::push), the
// device-readable bytes, then the device-writable bytes, each as a list of
// host spans in guest memory. Devices use this and never raw descriptors.
//
// Guarantees when SplitQueue hands one out: every span lies inside guest
// memory; all readable descriptors came before all writable ones; the total
// of all lengths fits in 32 bits; the chain had no loop and no more
// descriptors than allowed. Zero-length descriptors are counted but add no
// span. The spans point into memory the driver may still change (that is
// the nature of shared memory): copy before you validate a header.
//
// The spans stay valid while the guest memory stays mapped.
class DescriptorChain
{
  public:
    DescriptorChain() = default;

    [[nodiscard]] std::uint16_t head() const noexcept { return head_; }

    [[nodiscard]] std::span<const std::span<std::byte>> readable() const noexcept
    {
        return readable_;
    }
    [[nodiscard]] std::span<const std::span<std::byte>> writable() const noexcept
    {
        return writable_;
    }
    [[nodiscard]] std::uint32_t readable_len() const noexcept { return readable_len_; }
    [[nodiscard]] std::uint32_t writable_len() const noexcept { return writable_len_; }
    // Buffer descriptors walked (direct and indirect, not counting a
    // descriptor that only points to an indirect table).
    [[nodiscard]] std::uint32_t descriptor_count() const noexcept { return descriptor_count_; }
    // True if the chain used an indirect table.
    [[nodiscard]] bool used_indirect() const noexcept { return used_indirect_; }

    // Copies readable bytes [offset, offset + out.size()) into `out`, fewer
    // if the readable part ends first; returns the number copied.
    std::size_t read_into(std::span<std::byte> out, std::size_t offset = 0) const noexcept;

    // Copies `in` into the writable part at `offset`, fewer bytes if the
    // writable part ends first; returns the number copied.
    std::size_t write_from(std::span<const std::byte> in, std::size_t offset = 0) const noexcept;

    // As read_into / write_from, but fail (copying nothing) unless all of
    // `out` / `in` fits, with a message naming the sizes. `what` names the
    // data for that message ("virtio-blk request header").
    Status read_exact(std::span<std::byte> out, std::size_t offset = 0,
                      std::string_view what = "data") const;
    Status write_exact(std::span<const std::byte> in, std::size_t offset = 0,
                       std::string_view what = "data") const;

    // ---- building (used by SplitQueue; tests may build chains by hand) ----

    // Empties the chain for reuse (keeps the vectors' capacity).
    void reset(std::uint16_t head) noexcept;
    // Appends one descriptor's buffer (its host spans, whose sizes add up
    // to `len`; none for len 0) to the readable or writable part. Fails if a
    // readable buffer follows a writable one or if the chain's total length
    // would exceed 2^32 - 1 bytes; the chain is unchanged then.
    Status append(std::span<const std::span<std::byte>> spans, std::uint32_t len,
                  bool device_writable);
    void mark_indirect() noexcept { used_indirect_ = true; }

  private:
    std::uint16_t head_ = 0;
    HostBuffers readable_;
    HostBuffers writable_;
    std::uint32_t readable_len_ = 0;
    std::uint32_t writable_len_ = 0;
    std::uint32_t descriptor_count_ = 0;
    bool used_indirect_ = false;
    bool seen_writable_ = false; // a writable descriptor (maybe empty) was seen
};

} // namespace vl::virtq
