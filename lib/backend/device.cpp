// SPDX-License-Identifier: Apache-2.0
#include "backend/device.hpp"

#include <cerrno>

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

} // namespace vl::backend
