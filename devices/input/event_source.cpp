// SPDX-License-Identifier: Apache-2.0
#include "input/event_source.hpp"

#include <libevdev/libevdev.h>
#include <linux/input.h>

#include <fmt/format.h>

namespace vl::input
{

bool is_frame_end(const InputEvent& event) noexcept
{
    return event.type == EV_SYN && event.code == SYN_REPORT;
}

std::string describe(const InputEvent& event)
{
    const char* type = libevdev_event_type_get_name(event.type);
    const char* code = libevdev_event_code_get_name(event.type, event.code);
    return fmt::format("{} {} {}", type != nullptr ? type : std::to_string(event.type),
                       code != nullptr ? code : std::to_string(event.code), event.value);
}

InputCapabilities& InputCapabilities::add(std::uint8_t type, std::uint16_t code)
{
    codes[type].set(code);
    return *this;
}

InputCapabilities& InputCapabilities::add_abs(std::uint8_t axis, const AbsInfo& info)
{
    add(EV_ABS, axis);
    abs[axis] = info;
    return *this;
}

bool InputCapabilities::supports(std::uint16_t type, std::uint16_t code) const
{
    if (type == EV_SYN)
        return code == SYN_REPORT;
    if (type > 0xff || code >= kMaxBitmapBits)
        return false;
    auto it = codes.find(static_cast<std::uint8_t>(type));
    return it != codes.end() && it->second.test(code);
}

} // namespace vl::input
