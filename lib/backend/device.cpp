// SPDX-License-Identifier: Apache-2.0
#include "backend/device.hpp"

#include <cerrno>

#include <fmt/format.h>

namespace vl::backend
{

Result<std::vector<std::byte>> Device::read_config(std::uint32_t offset, std::uint32_t size)
{
    (void)offset;
    (void)size;
    return Error("this device has no config space", ENOTSUP);
}

Status Device::write_config(std::uint32_t offset, std::span<const std::byte> data)
{
    (void)offset;
    (void)data;
    return Error("this device has no writable config space", ENOTSUP);
}

Result<std::vector<std::byte>> slice_config(std::span<const std::byte> config, std::uint32_t offset,
                                            std::uint32_t size, std::string_view what)
{
    if (offset > config.size() || size > config.size() - offset)
        return Error(fmt::format("config read of {} bytes at offset {} is outside the {} "
                                 "config space, which has {} bytes",
                                 size, offset, what, config.size()),
                     EINVAL);
    const auto part = config.subspan(offset, size);
    return std::vector<std::byte>(part.begin(), part.end());
}

} // namespace vl::backend
