// SPDX-License-Identifier: Apache-2.0
#include "input_driver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "virtqueue/ring.hpp"

namespace vl::test_driver
{

namespace
{

using Clock = std::chrono::steady_clock;

std::string to_string(std::span<const std::byte> bytes)
{
    // The spec does not promise a NUL terminator; stop at one if present.
    auto end = std::find(bytes.begin(), bytes.end(), std::byte{0});
    std::string out;
    for (auto it = bytes.begin(); it != end; ++it)
        out += static_cast<char>(std::to_integer<unsigned char>(*it));
    return out;
}

} // namespace

std::array<std::byte, kInputEventSize> encode_input_event(const InputEvent& event)
{
    std::array<std::byte, kInputEventSize> out{};
    virtq::store_le16(out.data() + offsetof(virtio_input_event, type), event.type);
    virtq::store_le16(out.data() + offsetof(virtio_input_event, code), event.code);
    virtq::store_le32(out.data() + offsetof(virtio_input_event, value), event.value);
    return out;
}

InputEvent decode_input_event(std::span<const std::byte, kInputEventSize> bytes)
{
    return InputEvent{virtq::load_le16(bytes.data() + offsetof(virtio_input_event, type)),
                      virtq::load_le16(bytes.data() + offsetof(virtio_input_event, code)),
                      virtq::load_le32(bytes.data() + offsetof(virtio_input_event, value))};
}

Result<std::vector<std::byte>> parse_input_config(std::span<const std::byte> config,
                                                  std::uint8_t select, std::uint8_t subsel)
{
    if (config.size() < kInputConfigSize)
        return Error(fmt::format("virtio-input config of {} bytes is shorter than {}",
                                 config.size(), kInputConfigSize),
                     EINVAL);
    const auto got_select =
        std::to_integer<std::uint8_t>(config[offsetof(virtio_input_config, select)]);
    const auto got_subsel =
        std::to_integer<std::uint8_t>(config[offsetof(virtio_input_config, subsel)]);
    const auto size = std::to_integer<std::uint8_t>(config[offsetof(virtio_input_config, size)]);
    if (got_select != select || got_subsel != subsel)
        return Error(fmt::format("virtio-input config answers select {:#x}/{:#x} after we "
                                 "selected {:#x}/{:#x}",
                                 got_select, got_subsel, select, subsel),
                     EPROTO);
    if (size > kInputConfigDataMax)
        return Error(fmt::format("virtio-input config size {} exceeds the {}-byte union", size,
                                 kInputConfigDataMax),
                     EPROTO);
    auto data = config.subspan(kInputConfigDataOffset, size);
    return std::vector<std::byte>(data.begin(), data.end());
}

Result<InputDevIds> parse_input_devids(std::span<const std::byte> data)
{
    if (data.size() < sizeof(virtio_input_devids))
        return Error(fmt::format("ID_DEVIDS answer of {} bytes is shorter than {}", data.size(),
                                 sizeof(virtio_input_devids)),
                     EPROTO);
    auto at = [&](std::size_t offset) { return virtq::load_le16(data.data() + offset); };
    return InputDevIds{
        at(offsetof(virtio_input_devids, bustype)), at(offsetof(virtio_input_devids, vendor)),
        at(offsetof(virtio_input_devids, product)), at(offsetof(virtio_input_devids, version))};
}

Result<InputAbsInfo> parse_input_absinfo(std::span<const std::byte> data)
{
    if (data.size() < sizeof(virtio_input_absinfo))
        return Error(fmt::format("ABS_INFO answer of {} bytes is shorter than {}", data.size(),
                                 sizeof(virtio_input_absinfo)),
                     EPROTO);
    auto at = [&](std::size_t offset) { return virtq::load_le32(data.data() + offset); };
    return InputAbsInfo{
        at(offsetof(virtio_input_absinfo, min)), at(offsetof(virtio_input_absinfo, max)),
        at(offsetof(virtio_input_absinfo, fuzz)), at(offsetof(virtio_input_absinfo, flat)),
        at(offsetof(virtio_input_absinfo, res))};
}

// ---------------------------------------------------------------------------
// InputDriver

InputDriver::InputDriver(VhostUserDriver driver, const InputOptions& options)
    : driver_(std::move(driver)), options_(options)
{
}

Result<InputDriver> InputDriver::open(const std::string& socket_path, const InputOptions& options,
                                      Logger logger)
{
    VL_TRY_ASSIGN(VhostUserDriver driver,
                  VhostUserDriver::connect(socket_path, options.connect, std::move(logger)));
    auto input = start(std::move(driver), options);
    if (!input)
        return input.error().wrap("virtio-input back-end " + socket_path);
    return input;
}

Result<InputDriver> InputDriver::start(VhostUserDriver driver, const InputOptions& options)
{
    if (options.event_buffers == 0 || options.event_buffers > options.queue_size)
        return Error(fmt::format("virtio-input: {} event buffers do not fit a queue of {} "
                                 "(1 to the queue size)",
                                 options.event_buffers, options.queue_size),
                     EINVAL);
    StartOptions start;
    start.device_features = 0; // virtio-input defines no feature bits
    start.queue_count = 2;     // eventq and statusq
    start.queue_size = options.queue_size;
    start.event_idx = options.event_idx;
    start.indirect_desc = false; // single-buffer chains only
    VL_TRY(driver.start(start));
    InputDriver input(std::move(driver), options);
    VL_TRY(input.events_.post(input.driver_, options.event_buffers, kInputEventSize, 8));
    return input;
}

Result<std::vector<InputEvent>> InputDriver::read_events(std::size_t max_events,
                                                         std::chrono::milliseconds timeout)
{
    std::vector<InputEvent> events;
    const auto deadline = Clock::now() + timeout;
    while (events.size() < max_events) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            break;
        auto used = driver_.wait_used(kInputEventQueue, left);
        if (!used) {
            if (used.error().code() == ETIMEDOUT)
                break; // no more events in time: normal for an input device
            return used.error().wrap("virtio-input event queue");
        }
        // The spec has the device fill the 8 bytes; Linux ignores the used
        // length, and so do we (an abort path may report 0 for a filler).
        auto bytes = events_.take(driver_, *used);
        if (!bytes)
            return bytes.error().wrap("virtio-input event queue");
        events.push_back(decode_input_event(
            std::span<const std::byte, kInputEventSize>(bytes->data(), kInputEventSize)));
        VL_TRY(driver_.kick(kInputEventQueue));
    }
    return events;
}

Status InputDriver::send_status(const InputEvent& event)
{
    const auto bytes = encode_input_event(event);
    if (Status sent = driver_.send_and_wait(kInputStatusQueue, bytes, options_.request_timeout);
        !sent)
        return sent.error().wrap("virtio-input status queue");
    return ok_status();
}

// ---------------------------------------------------------------------------
// Config space

Result<std::vector<std::byte>> InputDriver::query_config(std::uint8_t select, std::uint8_t subsel)
{
    const std::array<std::byte, 2> selector{std::byte{select}, std::byte{subsel}};
    static_assert(offsetof(virtio_input_config, subsel) == 1);
    auto selected = driver_.set_config(offsetof(virtio_input_config, select), selector);
    if (!selected)
        return selected.error().wrap(
            fmt::format("virtio-input: selecting config {:#x}/{:#x}", select, subsel));
    auto config = driver_.get_config(0, kInputConfigSize);
    if (!config)
        return config.error().wrap(
            fmt::format("virtio-input: reading config {:#x}/{:#x}", select, subsel));
    return parse_input_config(*config, select, subsel);
}

Result<std::string> InputDriver::name()
{
    VL_TRY_ASSIGN(auto data, query_config(VIRTIO_INPUT_CFG_ID_NAME, 0));
    return to_string(data);
}

Result<std::string> InputDriver::serial()
{
    VL_TRY_ASSIGN(auto data, query_config(VIRTIO_INPUT_CFG_ID_SERIAL, 0));
    return to_string(data);
}

Result<InputDevIds> InputDriver::device_ids()
{
    VL_TRY_ASSIGN(auto data, query_config(VIRTIO_INPUT_CFG_ID_DEVIDS, 0));
    return parse_input_devids(data);
}

Result<std::vector<std::byte>> InputDriver::property_bits()
{
    return query_config(VIRTIO_INPUT_CFG_PROP_BITS, 0);
}

Result<std::vector<std::byte>> InputDriver::event_bits(std::uint8_t type)
{
    return query_config(VIRTIO_INPUT_CFG_EV_BITS, type);
}

Result<std::optional<InputAbsInfo>> InputDriver::abs_info(std::uint8_t axis)
{
    VL_TRY_ASSIGN(auto data, query_config(VIRTIO_INPUT_CFG_ABS_INFO, axis));
    if (data.empty())
        return std::optional<InputAbsInfo>();
    VL_TRY_ASSIGN(InputAbsInfo info, parse_input_absinfo(data));
    return std::optional<InputAbsInfo>(info);
}

} // namespace vl::test_driver
