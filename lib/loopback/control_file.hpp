// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <linux/virtio_loopback.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/unique_fd.hpp"

namespace vl::loopback {

inline constexpr const char* kDefaultControlPath = "/dev/virtio-loopback";

// What VIRTIO_LOOPBACK_IOC_CREATE takes, as C++ values.
struct DeviceParams {
    std::uint32_t device_id = 0;
    std::uint32_t vendor_id = 0;
    std::uint64_t features = 0;
    std::uint32_t num_queues = 1;
    std::uint32_t max_queue_size = 256;
    std::vector<std::byte> config;
    std::uint64_t window_size = 0; // 0: the module picks
    std::uint32_t timeout_ms = 0;  // 0: the module default
    // VIRTIO_LOOPBACK_CREATE_ZERO_COPY: whole-page buffers appear in the
    // window as the driver's own pages instead of bounced copies, and
    // cannot be pinned (O_DIRECT into them fails with EFAULT).
    bool zero_copy = false;
};

struct QueueInfo {
    std::uint32_t index = 0;
    bool ready = false;
    std::uint32_t size = 0;
    std::uint64_t desc = 0;
    std::uint64_t avail = 0;
    std::uint64_t used = 0;
    std::uint32_t outstanding = 0; // made available, not used yet
    std::uint16_t avail_idx = 0;
    std::uint16_t used_idx = 0;
};

struct Requeued {
    std::uint32_t base = 0;  // vring base for the next back-end
    std::uint32_t count = 0; // requests put back in the available ring
};

struct WindowFd {
    UniqueFd fd;
    std::uint64_t size = 0;
};

// One open file of /dev/virtio-loopback, which is one device in the
// transport (see include/uapi/linux/virtio_loopback.h). Closing it (the
// destructor) removes the device. Every call maps the ioctl's errno to a
// message that says what went wrong.
class ControlFile {
public:
    static Result<ControlFile> open(const std::string& path = kDefaultControlPath);

    [[nodiscard]] int fd() const noexcept { return fd_.get(); }

    Result<std::uint32_t> api_version() const;
    Status create(const DeviceParams& params);
    Result<virtio_loopback_info> info() const;
    Result<WindowFd> window() const;
    // kick_fd/call_fd: an eventfd or -1 to detach.
    Status set_queue_fds(std::uint32_t index, int kick_fd, int call_fd);
    Status start();
    Result<QueueInfo> queue(std::uint32_t index) const;
    Status interrupt(std::uint32_t index);
    Status config_changed();
    Status set_config(std::uint32_t offset, std::span<const std::byte> bytes, bool notify);
    // After a back-end was lost mid-flight: see VIRTIO_LOOPBACK_IOC_REQUEUE.
    Result<Requeued> requeue(std::uint32_t index);

    // The next message if one is waiting (the file is non-blocking), or
    // nullopt. An error means the device broke (EIO) or the call failed.
    Result<std::optional<virtio_loopback_msg>> read_message();
    Status reply(std::uint32_t id, int result);

private:
    explicit ControlFile(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
    Status ioctl_status(unsigned long request, void* arg, const char* what) const;

    UniqueFd fd_;
    std::string path_;
};

// "SET_STATUS(DRIVER_OK)", "RESET", ... for logs.
std::string describe_message(const virtio_loopback_msg& msg);

} // namespace vl::loopback
