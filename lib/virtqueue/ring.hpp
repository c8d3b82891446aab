// SPDX-License-Identifier: Apache-2.0
//
// The split virtqueue's memory layout (virtio 1.2, section 2.7) and the
// little helpers that read and write it: little-endian fields and the ring
// indices, which the other side reads and writes concurrently and so are
// accessed atomically with the ordering the specification requires.
//
// Layout, for a queue of N entries (N a power of two, N <= 32768):
//
//   descriptor table  16 * N bytes, 16-byte aligned
//     le64 addr; le32 len; le16 flags; le16 next;
//   available ring    6 + 2 * N bytes, 2-byte aligned (written by the driver)
//     le16 flags; le16 idx; le16 ring[N]; le16 used_event (EVENT_IDX only)
//   used ring         6 + 8 * N bytes, 4-byte aligned (written by the device)
//     le16 flags; le16 idx; {le32 id; le32 len} ring[N]; le16 avail_event
//
// The trailing event fields exist only when VIRTIO_RING_F_EVENT_IDX was
// negotiated; the byte counts below include them only then.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace vl::virtq
{

// The largest queue size of a split virtqueue (virtio 1.2, 2.7).
inline constexpr std::uint32_t kMaxQueueSize = 32768;

// Descriptor flags (struct virtq_desc.flags).
inline constexpr std::uint16_t kDescFlagNext = 1;     // chain continues at .next
inline constexpr std::uint16_t kDescFlagWrite = 2;    // device-writable buffer
inline constexpr std::uint16_t kDescFlagIndirect = 4; // buffer is a descriptor table

// virtq_avail.flags: the driver does not want used-buffer notifications
// (only meaningful without EVENT_IDX).
inline constexpr std::uint16_t kAvailFlagNoInterrupt = 1;
// virtq_used.flags: the device does not want available-buffer notifications
// (kicks; only meaningful without EVENT_IDX).
inline constexpr std::uint16_t kUsedFlagNoNotify = 1;

// Feature bits that change how rings are used.
inline constexpr unsigned kFeatureIndirectDesc = 28; // VIRTIO_RING_F_INDIRECT_DESC
inline constexpr unsigned kFeatureEventIdx = 29;     // VIRTIO_RING_F_EVENT_IDX

inline constexpr std::size_t kDescriptorSize = 16;
inline constexpr std::size_t kUsedElemSize = 8;
// An indirect table is addressed by 16-bit .next fields, so a table with
// more entries than this cannot be walked completely; we reject it.
inline constexpr std::uint32_t kMaxIndirectEntries = 65536;

// Minimum alignments of the three parts (virtio 1.2, 2.7, "Virtqueues").
inline constexpr std::uint64_t kDescTableAlign = 16;
inline constexpr std::uint64_t kAvailRingAlign = 2;
inline constexpr std::uint64_t kUsedRingAlign = 4;

// One descriptor, decoded to host byte order. Devices work on copies like
// this (read once from shared memory), never on the shared bytes, so a
// driver that rewrites a descriptor while we validate it cannot make us use
// values we did not check.
struct Descriptor {
    std::uint64_t addr = 0;
    std::uint32_t len = 0;
    std::uint16_t flags = 0;
    std::uint16_t next = 0;

    [[nodiscard]] bool has_next() const noexcept { return (flags & kDescFlagNext) != 0; }
    [[nodiscard]] bool is_write() const noexcept { return (flags & kDescFlagWrite) != 0; }
    [[nodiscard]] bool is_indirect() const noexcept { return (flags & kDescFlagIndirect) != 0; }
};

// Byte offsets inside each part.
namespace ring_offset
{
inline constexpr std::size_t kFlags = 0; // avail and used
inline constexpr std::size_t kIdx = 2;   // avail and used
inline constexpr std::size_t kRing = 4;  // avail and used
inline constexpr std::size_t avail_entry(std::uint32_t i)
{
    return kRing + 2 * std::size_t{i};
}
inline constexpr std::size_t used_entry(std::uint32_t i)
{
    return kRing + 8 * std::size_t{i};
}
// used_event lives after the available ring, avail_event after the used ring.
inline constexpr std::size_t used_event(std::uint32_t size)
{
    return avail_entry(size);
}
inline constexpr std::size_t avail_event(std::uint32_t size)
{
    return used_entry(size);
}
} // namespace ring_offset

[[nodiscard]] constexpr std::uint64_t desc_table_bytes(std::uint32_t size)
{
    return std::uint64_t{kDescriptorSize} * size;
}
[[nodiscard]] constexpr std::uint64_t avail_ring_bytes(std::uint32_t size, bool event_idx)
{
    return ring_offset::avail_entry(size) + (event_idx ? 2U : 0U);
}
[[nodiscard]] constexpr std::uint64_t used_ring_bytes(std::uint32_t size, bool event_idx)
{
    return ring_offset::used_entry(size) + (event_idx ? 2U : 0U);
}

// True if a queue of `size` entries is valid for a split ring.
[[nodiscard]] constexpr bool valid_queue_size(std::uint32_t size)
{
    return size != 0 && size <= kMaxQueueSize && std::has_single_bit(size);
}

// The EVENT_IDX test from the virtio specification (2.7.7.2 / 2.7.10):
// after moving an index from `old_idx` to `new_idx`, the other side asked to
// be notified once the entry `event_idx` was passed. Everything is modulo
// 2^16, so this stays right when the free-running indices wrap at 65535.
[[nodiscard]] constexpr bool need_event(std::uint16_t event_idx, std::uint16_t new_idx,
                                        std::uint16_t old_idx)
{
    return static_cast<std::uint16_t>(new_idx - event_idx - 1) <
           static_cast<std::uint16_t>(new_idx - old_idx);
}

// ---- little-endian field access (rings are little-endian in virtio 1.x) ----

namespace detail
{
template <class T> constexpr T from_le(T v)
{
    if constexpr (std::endian::native == std::endian::little) {
        return v;
    } else if constexpr (sizeof(T) == 2) {
        return static_cast<T>(__builtin_bswap16(v));
    } else if constexpr (sizeof(T) == 4) {
        return static_cast<T>(__builtin_bswap32(v));
    } else {
        return static_cast<T>(__builtin_bswap64(v));
    }
}
template <class T> constexpr T to_le(T v)
{
    return from_le(v); // a byte swap is its own inverse
}

template <class T> T load_le(const std::byte* p)
{
    T v;
    std::memcpy(&v, p, sizeof(T));
    return from_le(v);
}
template <class T> void store_le(std::byte* p, T v)
{
    v = to_le(v);
    std::memcpy(p, &v, sizeof(T));
}

// The caller guarantees `p` is aligned for T (checked when a queue is set up).
template <class T> std::atomic_ref<T> atomic_at(std::byte* p)
{
    return std::atomic_ref<T>(*static_cast<T*>(static_cast<void*>(p)));
}
} // namespace detail

inline std::uint16_t load_le16(const std::byte* p)
{
    return detail::load_le<std::uint16_t>(p);
}
inline std::uint32_t load_le32(const std::byte* p)
{
    return detail::load_le<std::uint32_t>(p);
}
inline std::uint64_t load_le64(const std::byte* p)
{
    return detail::load_le<std::uint64_t>(p);
}
inline void store_le16(std::byte* p, std::uint16_t v)
{
    detail::store_le(p, v);
}
inline void store_le32(std::byte* p, std::uint32_t v)
{
    detail::store_le(p, v);
}
inline void store_le64(std::byte* p, std::uint64_t v)
{
    detail::store_le(p, v);
}

// A ring index or event field that the other side changes concurrently.
// `order` is the C++ memory order of this access; the ring code picks it
// from the virtio rules (acquire when reading the other side's idx, release
// when publishing ours, seq_cst fences around event indices).
inline std::uint16_t load_shared_le16(std::byte* p, std::memory_order order)
{
    return detail::from_le(detail::atomic_at<std::uint16_t>(p).load(order));
}
inline void store_shared_le16(std::byte* p, std::uint16_t v, std::memory_order order)
{
    detail::atomic_at<std::uint16_t>(p).store(detail::to_le(v), order);
}

// Decodes / encodes one 16-byte descriptor.
inline Descriptor load_descriptor(const std::byte* p)
{
    return Descriptor{load_le64(p), load_le32(p + 8), load_le16(p + 12), load_le16(p + 14)};
}
inline void store_descriptor(std::byte* p, const Descriptor& d)
{
    store_le64(p, d.addr);
    store_le32(p + 8, d.len);
    store_le16(p + 12, d.flags);
    store_le16(p + 14, d.next);
}

} // namespace vl::virtq
