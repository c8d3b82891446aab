// SPDX-License-Identifier: Apache-2.0
#include "base/log.hpp"

#include <unistd.h>

#include <array>
#include <ctime>

namespace vl {

namespace {
constexpr std::array<std::string_view, 5> kLevelNames = {"error", "warn", "info", "debug", "trace"};
}

std::optional<LogLevel> parse_log_level(std::string_view name)
{
    for (std::size_t i = 0; i < kLevelNames.size(); ++i)
        if (kLevelNames[i] == name)
            return static_cast<LogLevel>(i);
    return std::nullopt;
}

std::string_view log_level_name(LogLevel level)
{
    return kLevelNames.at(static_cast<std::size_t>(level));
}

void Logger::write_line(LogLevel level, std::string_view message) const
{
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    tm local{};
    localtime_r(&now.tv_sec, &local);
    std::string line = fmt::format("{:02}:{:02}:{:02}.{:03} {} {}: {}\n", local.tm_hour,
                                   local.tm_min, local.tm_sec, now.tv_nsec / 1000000,
                                   log_level_name(level), component_, message);
    // One write so that concurrent lines stay whole; a short write to a
    // terminal or pipe is retried for the rest.
    std::string_view rest = line;
    while (!rest.empty()) {
        ssize_t n = ::write(STDERR_FILENO, rest.data(), rest.size());
        if (n <= 0)
            break;
        rest.remove_prefix(static_cast<std::size_t>(n));
    }
}

} // namespace vl
