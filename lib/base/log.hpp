// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <fmt/format.h>

#include <optional>
#include <string>
#include <string_view>

namespace vl {

enum class LogLevel { error = 0, warn, info, debug, trace };

// Parses "error|warn|info|debug|trace"; nullopt for anything else.
std::optional<LogLevel> parse_log_level(std::string_view name);
std::string_view log_level_name(LogLevel level);

// A logger for one component ("vhost-user-blk", "adapter/dev0/queue1").
// Loggers are plain values created from the program's options in main() and
// handed down; there is no process-wide logger state. Each line is written
// to stderr with one write(2), so lines from threads never interleave.
class Logger {
public:
    explicit Logger(std::string component, LogLevel level = LogLevel::info)
        : component_(std::move(component)), level_(level)
    {
    }

    // A logger for a part of this component: "<component>/<part>".
    [[nodiscard]] Logger child(std::string_view part) const
    {
        return Logger(component_ + "/" + std::string(part), level_);
    }

    [[nodiscard]] LogLevel level() const noexcept { return level_; }
    [[nodiscard]] bool enabled(LogLevel level) const noexcept { return level <= level_; }
    [[nodiscard]] const std::string& component() const noexcept { return component_; }

    template <class... Args>
    void error(fmt::format_string<Args...> f, Args&&... args) const
    {
        log(LogLevel::error, f, std::forward<Args>(args)...);
    }
    template <class... Args>
    void warn(fmt::format_string<Args...> f, Args&&... args) const
    {
        log(LogLevel::warn, f, std::forward<Args>(args)...);
    }
    template <class... Args>
    void info(fmt::format_string<Args...> f, Args&&... args) const
    {
        log(LogLevel::info, f, std::forward<Args>(args)...);
    }
    template <class... Args>
    void debug(fmt::format_string<Args...> f, Args&&... args) const
    {
        log(LogLevel::debug, f, std::forward<Args>(args)...);
    }
    template <class... Args>
    void trace(fmt::format_string<Args...> f, Args&&... args) const
    {
        log(LogLevel::trace, f, std::forward<Args>(args)...);
    }

    template <class... Args>
    void log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) const
    {
        if (enabled(level))
            write_line(level, fmt::format(f, std::forward<Args>(args)...));
    }

private:
    void write_line(LogLevel level, std::string_view message) const;

    std::string component_;
    LogLevel level_;
};

} // namespace vl
