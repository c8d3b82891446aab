// SPDX-License-Identifier: Apache-2.0
// The synthetic event source: events written as text lines into a FIFO,
// for tests and automation (`echo 'key KEY_A 1' > /run/kbd`).
//
// Protocol (one event per line, fields separated by blanks):
//
//   key CODE VALUE     EV_KEY: CODE a KEY_* or BTN_* name or a number,
//   btn CODE VALUE     VALUE 0 (release), 1 (press) or 2 (autorepeat)
//   rel CODE VALUE     EV_REL: REL_X -5
//   abs CODE VALUE     EV_ABS: ABS_X 1000
//   syn                EV_SYN SYN_REPORT: ends a frame
//   TYPE CODE VALUE    any event: TYPE an EV_* name or a number, CODE a name
//                      of that type or a number ("EV_KEY KEY_A 1", "1 30 1")
//
// Blank lines and lines starting with '#' are ignored. Events the device
// does not advertise, unknown names, values out of range and anything else
// are logged with their line number and skipped. Nothing adds SYN_REPORTs:
// a frame ends where the writer says `syn`.
//
// The FIFO: created with mode 0600 if PATH does not exist (and removed
// again at exit); an existing FIFO is used as it is (and left). Any number
// of writers may open it one after another or at once (lines of up to
// PIPE_BUF bytes written with one write(2) never interleave); when the last
// writer closes it, an unfinished last line counts as a line and line
// numbers start again at 1 for the next writer(s). Lines written while no
// driver runs the event queue wait in the FIFO (writers block once it holds
// 64 KiB).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "input/event_source.hpp"

namespace vl::input
{

inline constexpr std::string_view kDefaultSyntheticName = "vhost-user-input synthetic";
// Longer lines are skipped (with a warning) instead of buffered without end.
inline constexpr std::size_t kMaxLineBytes = 1024;

// Which devices the synthetic source plays (its capabilities):
// - keyboard: EV_KEY with every named key code from KEY_ESC (1) to 255,
//   EV_LED LED_NUML, LED_CAPSL, LED_SCROLLL (so that drivers send LED
//   states on the status queue); no EV_REP (autorepeat stays the writer's).
// - mouse: EV_REL REL_X, REL_Y, REL_WHEEL; EV_KEY BTN_LEFT, BTN_RIGHT,
//   BTN_MIDDLE.
// - touch: EV_ABS ABS_X, ABS_Y over 0..kTouchMax; EV_KEY BTN_TOUCH;
//   INPUT_PROP_DIRECT (a touch screen).
struct SyntheticSet {
    bool keyboard = true;
    bool mouse = true;
    bool touch = true;

    // "keyboard,mouse,touch" (any non-empty subset, any order).
    static Result<SyntheticSet> parse(std::string_view list);
    friend bool operator==(const SyntheticSet&, const SyntheticSet&) = default;
};

inline constexpr std::int32_t kTouchMax = 32767;

// Identity: bustype BUS_VIRTUAL, vendor 0, product 0, version 1; no serial.
[[nodiscard]] InputCapabilities synthetic_capabilities(std::string name, const SyntheticSet& set);

// One line of the protocol: an event, nullopt for a blank line or a
// comment, or an error saying what is wrong with it.
Result<std::optional<InputEvent>> parse_synthetic_line(std::string_view line,
                                                       const InputCapabilities& caps);

struct SyntheticOptions {
    std::string fifo_path;
    std::string name{kDefaultSyntheticName};
    SyntheticSet set;
};

class SyntheticSource final : public EventSource
{
  public:
    static Result<std::unique_ptr<SyntheticSource>> create(const SyntheticOptions& options,
                                                           Logger logger);
    ~SyntheticSource() override;

    [[nodiscard]] const InputCapabilities& capabilities() const override { return caps_; }
    // An epoll fd over the FIFO: it stays the same when the FIFO is reopened.
    [[nodiscard]] int fd() const override { return epoll_.get(); }
    Status read_events(std::vector<InputEvent>& out) override;
    // There is no device behind a FIFO: status events are only logged.
    Status handle_status(const InputEvent& event) override;

  private:
    SyntheticSource(const SyntheticOptions& options, Logger logger);
    Status open_fifo();
    void take_bytes(std::string_view bytes, std::vector<InputEvent>& out);
    void take_line(std::string_view line, std::vector<InputEvent>& out);

    InputCapabilities caps_;
    std::string path_;
    bool created_fifo_ = false; // we made the node: remove it at exit
    Logger logger_;
    UniqueFd epoll_;
    UniqueFd fifo_;              // read end, O_NONBLOCK
    std::string partial_;        // an unfinished line
    bool skipping_line_ = false; // in a line longer than kMaxLineBytes
    std::uint64_t line_number_ = 0;
};

} // namespace vl::input
