// SPDX-License-Identifier: Apache-2.0
#include "virtqueue/descriptor_chain.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <limits>

namespace vl::virtq
{

namespace
{

// Bytes available in a part of `total` bytes from `offset` on.
std::size_t bytes_after(std::uint32_t total, std::size_t offset)
{
    return offset >= total ? 0 : total - offset;
}

} // namespace

std::size_t DescriptorChain::read_into(std::span<std::byte> out, std::size_t offset) const noexcept
{
    return copy_from_buffers(readable_, offset, out);
}

std::size_t DescriptorChain::write_from(std::span<const std::byte> in,
                                        std::size_t offset) const noexcept
{
    return copy_to_buffers(writable_, offset, in);
}

Status DescriptorChain::read_exact(std::span<std::byte> out, std::size_t offset,
                                   std::string_view what) const
{
    if (out.size() > bytes_after(readable_len_, offset))
        return Error(fmt::format("{} needs {} bytes at offset {} of the device-readable part, "
                                 "which has {} bytes",
                                 what, out.size(), offset, readable_len_),
                     EINVAL);
    read_into(out, offset);
    return ok_status();
}

Status DescriptorChain::write_exact(std::span<const std::byte> in, std::size_t offset,
                                    std::string_view what) const
{
    if (in.size() > bytes_after(writable_len_, offset))
        return Error(fmt::format("{} needs {} bytes at offset {} of the device-writable part, "
                                 "which has {} bytes",
                                 what, in.size(), offset, writable_len_),
                     EINVAL);
    write_from(in, offset);
    return ok_status();
}

void DescriptorChain::reset(std::uint16_t head) noexcept
{
    head_ = head;
    readable_.clear();
    writable_.clear();
    readable_len_ = 0;
    writable_len_ = 0;
    descriptor_count_ = 0;
    used_indirect_ = false;
    seen_writable_ = false;
}

Status DescriptorChain::append(std::span<const std::span<std::byte>> spans, std::uint32_t len,
                               bool device_writable)
{
    if (!device_writable && seen_writable_)
        return Error(fmt::format("device-readable descriptor after a device-writable one "
                                 "(descriptor {} of the chain)",
                                 descriptor_count_ + 1),
                     EINVAL);
    // The spec (2.7.5.2) bounds a whole chain by 2^32 bytes; we keep both
    // parts' sum in 32 bits so lengths can be reported in a used element.
    const std::uint64_t total = std::uint64_t{readable_len_} + writable_len_ + len;
    if (total > std::numeric_limits<std::uint32_t>::max())
        return Error(fmt::format("chain is longer than 2^32 - 1 bytes (descriptor {} brings it "
                                 "to {} bytes)",
                                 descriptor_count_ + 1, total),
                     EINVAL);
    HostBuffers& part = device_writable ? writable_ : readable_;
    part.insert(part.end(), spans.begin(), spans.end());
    if (device_writable) {
        writable_len_ += len;
        seen_writable_ = true;
    } else {
        readable_len_ += len;
    }
    ++descriptor_count_;
    return ok_status();
}

} // namespace vl::virtq
