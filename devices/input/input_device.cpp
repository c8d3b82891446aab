// SPDX-License-Identifier: Apache-2.0
#include "input/input_device.hpp"

#include <linux/input.h>
#include <linux/virtio_input.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>

#include "vhost_user/protocol.hpp"
#include "virtqueue/ring.hpp"

namespace vl::input
{

static_assert(sizeof(virtio_input_config) == kConfigSize);
static_assert(sizeof(virtio_input_event) == kEventSize);

namespace
{

constexpr std::uint64_t kSourceToken = 1;
constexpr std::size_t kUnionOffset = offsetof(virtio_input_config, u);
constexpr std::size_t kUnionSize = sizeof(virtio_input_config::u);

std::array<std::byte, kEventSize> encode(const InputEvent& event)
{
    std::array<std::byte, kEventSize> out{};
    virtq::store_le16(out.data() + offsetof(virtio_input_event, type), event.type);
    virtq::store_le16(out.data() + offsetof(virtio_input_event, code), event.code);
    virtq::store_le32(out.data() + offsetof(virtio_input_event, value),
                      static_cast<std::uint32_t>(event.value));
    return out;
}

InputEvent decode(std::span<const std::byte, kEventSize> bytes)
{
    return InputEvent{virtq::load_le16(bytes.data() + offsetof(virtio_input_event, type)),
                      virtq::load_le16(bytes.data() + offsetof(virtio_input_event, code)),
                      static_cast<std::int32_t>(
                          virtq::load_le32(bytes.data() + offsetof(virtio_input_event, value)))};
}

// The bytes of a bitmap up to its highest set bit (none if it is empty),
// bit n in byte n / 8 at bit n % 8, as evdev's EVIOCGBIT.
std::vector<std::byte> bitmap_bytes(const CodeBits& bits)
{
    std::size_t highest = bits.size();
    for (std::size_t i = bits.size(); i-- > 0;)
        if (bits.test(i)) {
            highest = i;
            break;
        }
    if (highest == bits.size())
        return {};
    std::vector<std::byte> out(highest / 8 + 1);
    for (std::size_t i = 0; i <= highest; ++i)
        if (bits.test(i))
            out[i / 8] |= std::byte{static_cast<unsigned char>(1U << (i % 8))};
    return out;
}

std::vector<std::byte> string_bytes(const std::string& s)
{
    // The spec's string is not NUL-terminated: `size` is its length.
    const std::size_t n = std::min(s.size(), kUnionSize);
    std::vector<std::byte> out(n);
    std::transform(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(n), out.begin(),
                   [](char c) { return static_cast<std::byte>(c); });
    return out;
}

std::vector<std::byte> devids_bytes(const DeviceIds& ids)
{
    std::vector<std::byte> out(sizeof(virtio_input_devids));
    virtq::store_le16(out.data() + offsetof(virtio_input_devids, bustype), ids.bustype);
    virtq::store_le16(out.data() + offsetof(virtio_input_devids, vendor), ids.vendor);
    virtq::store_le16(out.data() + offsetof(virtio_input_devids, product), ids.product);
    virtq::store_le16(out.data() + offsetof(virtio_input_devids, version), ids.version);
    return out;
}

std::vector<std::byte> absinfo_bytes(const AbsInfo& info)
{
    std::vector<std::byte> out(sizeof(virtio_input_absinfo));
    auto put = [&](std::size_t offset, std::int32_t v) {
        virtq::store_le32(out.data() + offset, static_cast<std::uint32_t>(v));
    };
    put(offsetof(virtio_input_absinfo, min), info.min);
    put(offsetof(virtio_input_absinfo, max), info.max);
    put(offsetof(virtio_input_absinfo, fuzz), info.fuzz);
    put(offsetof(virtio_input_absinfo, flat), info.flat);
    put(offsetof(virtio_input_absinfo, res), info.res);
    return out;
}

} // namespace

// ---------------------------------------------------------------------------
// EventBacklog

EventBacklog::EventBacklog(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {}

std::size_t EventBacklog::end_of_frame_from(std::size_t index) const
{
    for (std::size_t i = index; i < events_.size(); ++i)
        if (is_frame_end(events_[i]))
            return i;
    return events_.size();
}

EventBacklog::Dropped EventBacklog::push(const InputEvent& event)
{
    Dropped dropped;
    if (discarding_) {
        if (!is_frame_end(event)) {
            ++dropped.events;
            return dropped;
        }
        discarding_ = false;
        if (!std::exchange(cut_, false)) {
            ++dropped.events;
            return dropped;
        }
        // The cut frame's end: the driver has its beginning, so it gets its
        // end too. It is alone in the backlog (the cut emptied it).
    }
    events_.push_back(event);
    while (events_.size() > capacity_)
        drop_oldest(dropped);
    return dropped;
}

void EventBacklog::drop_oldest(Dropped& dropped)
{
    // The oldest frame that may go: not the front one if its delivery began.
    const std::size_t first = head_started_ ? end_of_frame_from(0) + 1 : 0;
    if (first < events_.size()) {
        const std::size_t end = end_of_frame_from(first);
        if (end < events_.size()) {
            events_.erase(events_.begin() + static_cast<std::ptrdiff_t>(first),
                          events_.begin() + static_cast<std::ptrdiff_t>(end) + 1);
            dropped.events += end - first + 1;
            ++dropped.frames;
            return;
        }
    }
    // No complete frame can go: the newest, incomplete frame alone is too
    // big. It goes whole: what is here now, and the rest as it arrives.
    std::size_t tail = events_.size();
    while (tail > 0 && !is_frame_end(events_[tail - 1]))
        --tail;
    if (tail == 0 && head_started_)
        cut_ = true; // ... except what the driver already has of it
    dropped.events += events_.size() - tail;
    ++dropped.frames;
    dropped.cut = dropped.cut || cut_;
    events_.erase(events_.begin() + static_cast<std::ptrdiff_t>(tail), events_.end());
    discarding_ = true;
}

void EventBacklog::pop_front()
{
    head_started_ = !is_frame_end(events_.front());
    events_.pop_front();
}

void EventBacklog::clear()
{
    events_.clear();
    head_started_ = false;
    discarding_ = false;
    cut_ = false;
}

// ---------------------------------------------------------------------------
// InputDevice: what it is, config space

InputDevice::InputDevice(std::unique_ptr<EventSource> source, const InputDeviceOptions& options,
                         Logger logger)
    : source_(std::move(source)), logger_(std::move(logger)), backlog_(options.backlog_events)
{
}

std::uint64_t InputDevice::protocol_features() const
{
    return vhost_user::bit(vhost_user::ProtocolFeature::config);
}

std::vector<std::byte> InputDevice::answer() const
{
    const InputCapabilities& caps = source_->capabilities();
    switch (select_) {
    case VIRTIO_INPUT_CFG_ID_NAME:
        return subsel_ == 0 ? string_bytes(caps.name) : std::vector<std::byte>{};
    case VIRTIO_INPUT_CFG_ID_SERIAL:
        return subsel_ == 0 ? string_bytes(caps.serial) : std::vector<std::byte>{};
    case VIRTIO_INPUT_CFG_ID_DEVIDS:
        return subsel_ == 0 ? devids_bytes(caps.ids) : std::vector<std::byte>{};
    case VIRTIO_INPUT_CFG_PROP_BITS:
        return subsel_ == 0 ? bitmap_bytes(caps.properties) : std::vector<std::byte>{};
    case VIRTIO_INPUT_CFG_EV_BITS: {
        // EV_SYN is never listed: every device has it, and evdev's meaning
        // of "bits of type 0" (the event types) is not the spec's.
        auto it = caps.codes.find(subsel_);
        return it == caps.codes.end() ? std::vector<std::byte>{} : bitmap_bytes(it->second);
    }
    case VIRTIO_INPUT_CFG_ABS_INFO: {
        auto it = caps.abs.find(subsel_);
        return it == caps.abs.end() ? std::vector<std::byte>{} : absinfo_bytes(it->second);
    }
    default: // VIRTIO_INPUT_CFG_UNSET and selectors the spec does not define
        return {};
    }
}

std::array<std::byte, kConfigSize> InputDevice::config_space() const
{
    std::array<std::byte, kConfigSize> config{};
    const std::vector<std::byte> data = answer();
    config[offsetof(virtio_input_config, select)] = std::byte{select_};
    config[offsetof(virtio_input_config, subsel)] = std::byte{subsel_};
    config[offsetof(virtio_input_config, size)] = static_cast<std::byte>(data.size()); // <= 128
    std::copy(data.begin(), data.end(), config.begin() + kUnionOffset);
    return config;
}

Result<std::vector<std::byte>> InputDevice::read_config(std::uint32_t offset, std::uint32_t size)
{
    return backend::slice_config(config_space(), offset, size, "virtio-input");
}

Status InputDevice::write_config(std::uint32_t offset, std::span<const std::byte> data)
{
    // Only select (byte 0) and subsel (byte 1) are the driver's to write.
    constexpr std::size_t kWritable = offsetof(virtio_input_config, size);
    if (offset > kWritable || data.size() > kWritable - offset)
        return Error(fmt::format("config write of {} bytes at offset {}: only select (byte 0) "
                                 "and subsel (byte 1) of the virtio-input config are writable",
                                 data.size(), offset),
                     EPERM);
    for (std::size_t i = 0; i < data.size(); ++i) {
        const auto value = std::to_integer<std::uint8_t>(data[i]);
        (offset + i == offsetof(virtio_input_config, select) ? select_ : subsel_) = value;
    }
    return ok_status();
}

void InputDevice::reset()
{
    select_ = 0;
    subsel_ = 0;
    // Events meant for the previous driver: a new one starts from now.
    backlog_.clear();
    dropped_events_ = 0;
    dropped_frames_ = 0;
    warned_small_buffer_ = false;
}

// ---------------------------------------------------------------------------
// Queues

Status InputDevice::queue_started(backend::QueueContext& ctx)
{
    if (ctx.index() != kEventQueue || source_ended_)
        return ok_status();
    VL_TRY(ctx.watch(source_->fd(), kSourceToken));
    source_watched_ = true;
    return ok_status();
}

void InputDevice::queue_stopped(backend::QueueContext& ctx)
{
    if (ctx.index() == kEventQueue)
        source_watched_ = false; // the worker unwatches it
}

Status InputDevice::process_queue(backend::QueueContext& ctx)
{
    return ctx.index() == kEventQueue ? deliver(ctx) : serve_status(ctx);
}

Status InputDevice::handle_event(backend::QueueContext& ctx, std::uint64_t token)
{
    if (ctx.index() != kEventQueue || token != kSourceToken)
        return ok_status();
    VL_TRY(read_source(ctx));
    return deliver(ctx);
}

Status InputDevice::read_source(backend::QueueContext& ctx)
{
    incoming_.clear();
    Status read = source_->read_events(incoming_);
    for (const InputEvent& event : incoming_)
        enqueue(event);
    if (!read) {
        // Level-triggered: a dead fd would wake the worker forever.
        logger_.error("{}; no more input events will be delivered", read.error().message());
        source_ended_ = true;
        if (source_watched_) {
            source_watched_ = false;
            VL_TRY(ctx.unwatch(source_->fd()));
        }
    }
    return ok_status();
}

void InputDevice::enqueue(const InputEvent& event)
{
    const EventBacklog::Dropped dropped = backlog_.push(event);
    if (dropped.events == 0)
        return;
    if (dropped_events_ == 0)
        logger_.warn("the driver takes no events: {} are waiting; dropping the oldest whole "
                     "frames until it does",
                     backlog_.capacity());
    if (dropped.cut)
        logger_.error("a single frame of more than {} events did not fit while the driver was "
                      "taking it; the rest of it is dropped",
                      backlog_.capacity());
    dropped_events_ += dropped.events;
    dropped_frames_ += dropped.frames;
}

Status InputDevice::deliver(backend::QueueContext& ctx)
{
    while (!backlog_.empty()) {
        VL_TRY_ASSIGN(auto chain, ctx.pop());
        if (!chain) {
            // Out of buffers: the driver's next kick calls process_queue().
            ctx.resume();
            return ok_status();
        }
        const auto bytes = encode(backlog_.front());
        if (Status written = chain->write_exact(bytes, 0, "virtio-input event"); !written) {
            // The driver gets the buffer back empty; the event waits.
            if (!std::exchange(warned_small_buffer_, true))
                logger_.warn("event queue: {}; returning such buffers unused",
                             written.error().message());
            VL_TRY(ctx.push(chain->head(), 0));
            continue;
        }
        VL_TRY(ctx.push(chain->head(), kEventSize));
        backlog_.pop_front();
    }
    if (dropped_events_ != 0) {
        logger_.warn("the driver caught up; {} events in {} frames were dropped meanwhile",
                     dropped_events_, dropped_frames_);
        dropped_events_ = 0;
        dropped_frames_ = 0;
    }
    // Nothing to send: the driver's buffers stay in the ring until the
    // source has events (handle_event() takes them then), so kicks can be
    // ignored meanwhile.
    ctx.pause();
    return ok_status();
}

Status InputDevice::serve_status(backend::QueueContext& ctx)
{
    for (;;) {
        VL_TRY_ASSIGN(auto chain, ctx.pop());
        if (!chain)
            return ok_status();
        handle_status_chain(*chain);
        VL_TRY(ctx.push(chain->head(), 0));
    }
}

void InputDevice::handle_status_chain(const virtq::DescriptorChain& chain)
{
    // One event per buffer is what the spec has the driver send; take every
    // whole event in the chain, so a driver that batches is served too.
    const std::uint32_t len = chain.readable_len();
    if (len == 0 || len % kEventSize != 0)
        logger_.warn("status queue: a buffer of {} bytes, not a multiple of the {}-byte "
                     "virtio_input_event; its whole events are used, the rest ignored",
                     len, kEventSize);
    for (std::size_t offset = 0; offset + kEventSize <= len; offset += kEventSize) {
        std::array<std::byte, kEventSize> raw{};
        chain.read_into(raw, offset);
        const InputEvent event = decode(raw);
        logger_.debug("status event from the driver: {}", describe(event));
        if (Status handled = source_->handle_status(event); !handled)
            logger_.warn("status event {} from the driver: {}", describe(event),
                         handled.error().message());
    }
}

} // namespace vl::input
