// SPDX-License-Identifier: Apache-2.0
#include "input/synthetic_source.hpp"

#include <fcntl.h>
#include <libevdev/libevdev.h>
#include <linux/input.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <initializer_list>
#include <limits>

namespace vl::input
{

namespace
{

constexpr std::uint16_t kLastKeyboardKey = 255; // the classic keyboard range

std::vector<std::string_view> split_fields(std::string_view line)
{
    constexpr std::string_view kBlanks = " \t\r\v\f";
    std::vector<std::string_view> fields;
    std::size_t pos = line.find_first_not_of(kBlanks);
    while (pos != std::string_view::npos) {
        const std::size_t end = line.find_first_of(kBlanks, pos);
        fields.push_back(line.substr(pos, end == std::string_view::npos ? end : end - pos));
        pos = line.find_first_not_of(kBlanks, end);
    }
    return fields;
}

template <class Int> std::optional<Int> parse_int(std::string_view text)
{
    Int value{};
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value, 10);
    if (text.empty() || ec != std::errc() || ptr != end)
        return std::nullopt;
    return value;
}

bool is_number(std::string_view text)
{
    return !text.empty() && (text[0] == '-' || (text[0] >= '0' && text[0] <= '9'));
}

std::string type_name(std::uint16_t type)
{
    const char* name = libevdev_event_type_get_name(type);
    return name != nullptr ? name : std::to_string(type);
}

// The event type of a line's first field.
Result<std::uint16_t> parse_type(std::string_view word)
{
    if (word == "key" || word == "btn")
        return std::uint16_t{EV_KEY};
    if (word == "rel")
        return std::uint16_t{EV_REL};
    if (word == "abs")
        return std::uint16_t{EV_ABS};
    if (is_number(word)) {
        auto n = parse_int<std::uint16_t>(word);
        if (!n || *n > EV_MAX)
            return Error(fmt::format("event type '{}' is not a number from 0 to {}", word, EV_MAX));
        return *n;
    }
    const int type = libevdev_event_type_from_name_n(word.data(), word.size());
    if (type < 0)
        return Error(fmt::format("unknown event type '{}' (use key, btn, rel, abs, syn, an EV_* "
                                 "name or a number)",
                                 word));
    return static_cast<std::uint16_t>(type);
}

Result<std::uint16_t> parse_code(std::uint16_t type, std::string_view word)
{
    if (is_number(word)) {
        auto n = parse_int<std::uint16_t>(word);
        if (!n)
            return Error(fmt::format("event code '{}' is not a number from 0 to 65535", word));
        return *n;
    }
    const int code = libevdev_event_code_from_name_n(type, word.data(), word.size());
    if (code < 0)
        return Error(fmt::format("'{}' is not a code of event type {} (names are upper case: "
                                 "KEY_A, BTN_LEFT, REL_X, ABS_X)",
                                 word, type_name(type)));
    return static_cast<std::uint16_t>(code);
}

// Refuses what the device would not generate: the driver would drop it,
// or worse, take a value outside the range it was told.
Status check_event(const InputEvent& e, const InputCapabilities& caps)
{
    if (e.type == EV_SYN) {
        if (e.code != SYN_REPORT || e.value != 0)
            return Error("the only EV_SYN event a writer may send is SYN_REPORT 0 ('syn')");
        return ok_status();
    }
    if (!caps.supports(e.type, e.code))
        return Error(fmt::format("{} is not an event this device advertises (see "
                                 "vhost-user-input --help)",
                                 describe(e)));
    if (e.type == EV_KEY && (e.value < 0 || e.value > 2))
        return Error(
            fmt::format("key value {} is not 0 (release), 1 (press) or 2 (repeat)", e.value));
    if (e.type == EV_ABS) {
        const AbsInfo& range = caps.abs.at(static_cast<std::uint8_t>(e.code));
        if (e.value < range.min || e.value > range.max)
            return Error(fmt::format("{} is outside the axis range {}..{}", describe(e), range.min,
                                     range.max));
    }
    return ok_status();
}

} // namespace

// ---------------------------------------------------------------------------
// Capabilities and the line protocol

Result<SyntheticSet> SyntheticSet::parse(std::string_view list)
{
    SyntheticSet set{false, false, false};
    std::size_t pos = 0;
    while (pos <= list.size()) {
        const std::size_t comma = std::min(list.find(',', pos), list.size());
        const std::string_view name = list.substr(pos, comma - pos);
        if (name == "keyboard")
            set.keyboard = true;
        else if (name == "mouse")
            set.mouse = true;
        else if (name == "touch")
            set.touch = true;
        else
            return Error(fmt::format("unknown device '{}' (use keyboard, mouse and/or touch, "
                                     "separated by commas)",
                                     name),
                         EINVAL);
        pos = comma + 1;
    }
    return set;
}

InputCapabilities synthetic_capabilities(std::string name, const SyntheticSet& set)
{
    InputCapabilities caps;
    caps.name = std::move(name);
    caps.ids = DeviceIds{BUS_VIRTUAL, 0, 0, 1};
    if (set.keyboard) {
        for (std::uint16_t code = KEY_ESC; code <= kLastKeyboardKey; ++code)
            if (libevdev_event_code_get_name(EV_KEY, code) != nullptr)
                caps.add(EV_KEY, code);
        for (std::uint16_t led :
             std::initializer_list<std::uint16_t>{LED_NUML, LED_CAPSL, LED_SCROLLL})
            caps.add(EV_LED, led);
    }
    if (set.mouse) {
        for (std::uint16_t rel : std::initializer_list<std::uint16_t>{REL_X, REL_Y, REL_WHEEL})
            caps.add(EV_REL, rel);
        for (std::uint16_t button :
             std::initializer_list<std::uint16_t>{BTN_LEFT, BTN_RIGHT, BTN_MIDDLE})
            caps.add(EV_KEY, button);
    }
    if (set.touch) {
        caps.add_abs(ABS_X, AbsInfo{0, kTouchMax, 0, 0, 0});
        caps.add_abs(ABS_Y, AbsInfo{0, kTouchMax, 0, 0, 0});
        caps.add(EV_KEY, BTN_TOUCH);
        caps.properties.set(INPUT_PROP_DIRECT);
    }
    return caps;
}

Result<std::optional<InputEvent>> parse_synthetic_line(std::string_view line,
                                                       const InputCapabilities& caps)
{
    const std::vector<std::string_view> fields = split_fields(line);
    if (fields.empty() || fields[0].starts_with('#'))
        return std::optional<InputEvent>();
    if (fields[0] == "syn") {
        if (fields.size() != 1)
            return Error("'syn' takes no arguments");
        return std::optional<InputEvent>(InputEvent{EV_SYN, SYN_REPORT, 0});
    }
    VL_TRY_ASSIGN(const std::uint16_t type, parse_type(fields[0]));
    if (fields.size() != 3)
        return Error(fmt::format("expected '{} CODE VALUE', got {} field{}", fields[0],
                                 fields.size(), fields.size() == 1 ? "" : "s"));
    VL_TRY_ASSIGN(const std::uint16_t code, parse_code(type, fields[1]));
    auto value = parse_int<std::int32_t>(fields[2]);
    if (!value)
        return Error(fmt::format("value '{}' is not a whole number from {} to {}", fields[2],
                                 std::numeric_limits<std::int32_t>::min(),
                                 std::numeric_limits<std::int32_t>::max()));
    const InputEvent event{type, code, *value};
    VL_TRY(check_event(event, caps));
    return std::optional<InputEvent>(event);
}

// ---------------------------------------------------------------------------
// SyntheticSource

SyntheticSource::SyntheticSource(const SyntheticOptions& options, Logger logger)
    : caps_(synthetic_capabilities(options.name, options.set)), path_(options.fifo_path),
      logger_(std::move(logger))
{
}

SyntheticSource::~SyntheticSource()
{
    if (created_fifo_)
        ::unlink(path_.c_str());
}

Result<std::unique_ptr<SyntheticSource>> SyntheticSource::create(const SyntheticOptions& options,
                                                                 Logger logger)
{
    std::unique_ptr<SyntheticSource> source(new SyntheticSource(options, std::move(logger)));
    const std::string& path = source->path_;
    struct stat st {
    };
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISFIFO(st.st_mode))
            return Error(fmt::format("{} exists and is not a FIFO: remove it or choose another "
                                     "--synthetic path",
                                     path),
                         EEXIST);
    } else if (errno != ENOENT) {
        return Error::from_errno("cannot look at " + path);
    } else if (::mkfifo(path.c_str(), 0600) < 0) {
        const int err = errno;
        const char* hint = err == ENOENT   ? " (create its directory first)"
                           : err == EACCES ? " (choose a directory you may write to)"
                                           : "";
        return Error(fmt::format("cannot create the FIFO {}: {}{}", path, std::strerror(err), hint),
                     err);
    } else {
        source->created_fifo_ = true;
    }
    source->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!source->epoll_)
        return Error::from_errno("epoll_create1 for the synthetic source");
    VL_TRY(source->open_fifo());
    source->logger_.info("reading events from the FIFO {}", path);
    return source;
}

Status SyntheticSource::open_fifo()
{
    // Non-blocking: it opens without a writer, and reads never wait.
    UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    if (!fd)
        return Error::from_errno("cannot open the FIFO " + path_);
    epoll_event event{};
    event.events = EPOLLIN;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &event) < 0)
        return Error::from_errno("epoll_ctl ADD of the FIFO " + path_);
    if (fifo_)
        (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fifo_.get(), nullptr);
    // The old end closes only now: the FIFO always has a reader, so a
    // writer arriving meanwhile neither blocks nor loses what it writes.
    fifo_ = std::move(fd);
    return ok_status();
}

Status SyntheticSource::read_events(std::vector<InputEvent>& out)
{
    std::array<char, 4096> buffer{};
    // At most 64 KiB per call (the epoll fd is level-triggered: the worker
    // comes back for the rest), so one busy writer cannot hold the worker.
    for (int round = 0; round < 16; ++round) {
        const ssize_t n = ::read(fifo_.get(), buffer.data(), buffer.size());
        if (n > 0) {
            take_bytes(std::string_view(buffer.data(), static_cast<std::size_t>(n)), out);
            continue;
        }
        if (n == 0) {
            // Every writer closed it. The FIFO now reads as end of file
            // (and polls as hung up) until reopened.
            if (!partial_.empty() && !skipping_line_)
                take_line(partial_, out);
            partial_.clear();
            skipping_line_ = false;
            line_number_ = 0;
            return open_fifo();
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return ok_status();
        return Error::from_errno("reading the FIFO " + path_);
    }
    return ok_status();
}

void SyntheticSource::take_bytes(std::string_view bytes, std::vector<InputEvent>& out)
{
    while (!bytes.empty()) {
        const std::size_t newline = bytes.find('\n');
        const std::string_view piece = bytes.substr(0, newline);
        if (!skipping_line_) {
            partial_.append(piece);
            if (partial_.size() > kMaxLineBytes) {
                logger_.warn("{} line {}: longer than {} bytes; skipped", path_, line_number_ + 1,
                             kMaxLineBytes);
                skipping_line_ = true;
                partial_.clear();
            }
        }
        if (newline == std::string_view::npos)
            return;
        if (skipping_line_)
            ++line_number_;
        else
            take_line(partial_, out);
        partial_.clear();
        skipping_line_ = false;
        bytes.remove_prefix(newline + 1);
    }
}

void SyntheticSource::take_line(std::string_view line, std::vector<InputEvent>& out)
{
    ++line_number_;
    auto event = parse_synthetic_line(line, caps_);
    if (!event) {
        logger_.warn("{} line {}: {}; skipped", path_, line_number_, event.error().message());
        return;
    }
    if (*event) {
        logger_.trace("{} line {}: {}", path_, line_number_, describe(**event));
        out.push_back(**event);
    }
}

Status SyntheticSource::handle_status(const InputEvent& event)
{
    logger_.info("status event from the driver: {} (the synthetic source has no device to pass "
                 "it to)",
                 describe(event));
    return ok_status();
}

} // namespace vl::input
