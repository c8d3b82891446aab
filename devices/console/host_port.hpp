// SPDX-License-Identifier: Apache-2.0
// The host side of one console port: a pseudo-terminal, or a Unix socket
// with at most one client. Created when the program starts (so the pty's
// path is known before any front-end connects) and kept across front-ends.
//
// Threads: the port's receive-queue worker accepts, reads and disconnects;
// its transmit-queue worker writes. The connected stream is shared between
// them (a shared_ptr taken under the mutex), so a disconnect on one never
// closes an fd the other is writing to.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "base/log.hpp"
#include "base/result.hpp"
#include "base/unique_fd.hpp"
#include "console/console_config.hpp"

namespace vl::console
{

struct WindowSize {
    std::uint16_t cols = 0;
    std::uint16_t rows = 0;
    friend bool operator==(const WindowSize&, const WindowSize&) = default;
};

class HostPort
{
  public:
    static Result<std::unique_ptr<HostPort>> open(const PortSpec& spec);
    ~HostPort();
    HostPort(const HostPort&) = delete;
    HostPort& operator=(const HostPort&) = delete;

    [[nodiscard]] const PortSpec& spec() const noexcept { return spec_; }
    // "pty /dev/pts/3 (link /run/console)" or "unix socket /run/c.sock".
    [[nodiscard]] std::string describe() const;
    // The pty's slave path (pty ports), for tests and messages.
    [[nodiscard]] const std::string& pty_path() const noexcept { return pty_path_; }

    // A stream to the host is there (always for a pty). Thread-safe.
    [[nodiscard]] bool connected() const;
    // The fd to wait on for the next thing to do: the stream when connected,
    // else the listening socket (whose readability means a client waits).
    [[nodiscard]] int wait_fd() const;

    // ---- receive-queue worker ----
    // Takes a waiting client; false if none was waiting after all.
    Result<bool> accept();
    // Bytes waiting to be read from the stream (0: none now); nullopt when
    // the client closed its end (readable with nothing to read) or there is
    // no stream.
    [[nodiscard]] std::optional<std::size_t> pending_input() const;
    // Reads into `buffers` (scatter); returns the count, 0 if nothing was
    // waiting.
    Result<std::size_t> read(std::span<const std::span<std::byte>> buffers);
    // Drops the client (unix ports; a pty stays).
    void disconnect();

    // ---- transmit-queue worker ----
    // Writes what the stream takes without blocking; returns the count.
    // Not connected or the client went away: nullopt (the data has nowhere
    // to go).
    Result<std::optional<std::size_t>> write(std::span<const std::byte> data);

    // The pty's window size (its slave side's, set by the host's terminal
    // program); nullopt for a socket or a size of 0x0.
    [[nodiscard]] std::optional<WindowSize> window_size() const;

  private:
    explicit HostPort(PortSpec spec);
    [[nodiscard]] std::shared_ptr<const UniqueFd> stream() const;

    PortSpec spec_;
    std::string pty_path_;
    UniqueFd pty_slave_; // held so that the master never sees a hang-up
    UniqueFd listener_;
    bool created_link_ = false;
    mutable std::mutex mutex_; // protects stream_
    std::shared_ptr<const UniqueFd> stream_;
};

} // namespace vl::console
