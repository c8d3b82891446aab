// SPDX-License-Identifier: Apache-2.0
#include "loopback/control_file.hpp"

#include <fcntl.h>
#include <linux/virtio_config.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace vl::loopback {

namespace {

Error open_error(const std::string& path, int err)
{
    std::string hint;
    if (err == ENOENT)
        hint = "; the transport module is not loaded: run 'sudo modprobe virtio_loopback' "
               "(or 'sudo insmod build/modules/$(uname -r)/virtio_loopback.ko')";
    else if (err == EACCES || err == EPERM)
        hint = "; run as root or as a member of the node's group (see README: udev rule)";
    return Error(fmt::format("cannot open {}: {}{}", path, std::strerror(err), hint), err);
}

std::string status_bits(std::uint32_t status)
{
    if (status == 0)
        return "0";
    static constexpr std::pair<std::uint32_t, const char*> kNames[] = {
        {VIRTIO_CONFIG_S_ACKNOWLEDGE, "ACKNOWLEDGE"}, {VIRTIO_CONFIG_S_DRIVER, "DRIVER"},
        {VIRTIO_CONFIG_S_FEATURES_OK, "FEATURES_OK"}, {VIRTIO_CONFIG_S_DRIVER_OK, "DRIVER_OK"},
        {VIRTIO_CONFIG_S_NEEDS_RESET, "NEEDS_RESET"}, {VIRTIO_CONFIG_S_FAILED, "FAILED"},
    };
    std::string out;
    for (auto [bit, name] : kNames)
        if (status & bit)
            out += (out.empty() ? "" : "|") + std::string(name);
    return out;
}

} // namespace

Result<ControlFile> ControlFile::open(const std::string& path)
{
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return open_error(path, errno);
    ControlFile file(UniqueFd(fd), path);
    auto version = file.api_version();
    if (!version)
        return version.error();
    if (*version != VIRTIO_LOOPBACK_API_VERSION)
        return Error(fmt::format("{} speaks uapi version {}, this program version {}; "
                                 "load the module built with this program",
                                 path, *version, VIRTIO_LOOPBACK_API_VERSION));
    return file;
}

Status ControlFile::ioctl_status(unsigned long request, void* arg, const char* what) const
{
    if (::ioctl(fd_.get(), request, arg) < 0) {
        int err = errno;
        std::string hint;
        if (err == EIO)
            hint = " (the device is broken: the kernel gave up on it; close and recreate)";
        else if (err == ENODEV)
            hint = " (no device yet: CREATE first)";
        return Error(fmt::format("{} on {}: {}{}", what, path_, std::strerror(err), hint), err);
    }
    return ok_status();
}

Result<std::uint32_t> ControlFile::api_version() const
{
    int v = ::ioctl(fd_.get(), VIRTIO_LOOPBACK_IOC_GET_VERSION);
    if (v < 0)
        return Error::from_errno("VIRTIO_LOOPBACK_IOC_GET_VERSION on " + path_ +
                                 " (is it the virtio-loopback node?)");
    return static_cast<std::uint32_t>(v);
}

Status ControlFile::create(const DeviceParams& params)
{
    virtio_loopback_create c{};
    if (params.config.size() > sizeof(c.config))
        return Error(fmt::format("config space of {} bytes exceeds the transport's {}",
                                 params.config.size(), sizeof(c.config)),
                     EINVAL);
    c.device_id = params.device_id;
    c.vendor_id = params.vendor_id;
    c.features = params.features;
    c.num_queues = params.num_queues;
    c.max_queue_size = params.max_queue_size;
    c.config_size = static_cast<std::uint32_t>(params.config.size());
    c.timeout_ms = params.timeout_ms;
    c.window_size = params.window_size;
    c.flags = params.zero_copy ? VIRTIO_LOOPBACK_CREATE_ZERO_COPY : 0;
    std::memcpy(c.config, params.config.data(), params.config.size());
    Status created = ioctl_status(VIRTIO_LOOPBACK_IOC_CREATE, &c, "VIRTIO_LOOPBACK_IOC_CREATE");
    if (!created.ok() && created.error().code() == EINVAL && params.zero_copy)
        return Error(created.error().message() +
                         " (a module older than zero-copy refuses the flag: load the module "
                         "built with this program, or turn zero-copy off)",
                     EINVAL);
    return created;
}

Result<virtio_loopback_info> ControlFile::info() const
{
    virtio_loopback_info info{};
    VL_TRY(ioctl_status(VIRTIO_LOOPBACK_IOC_GET_INFO, &info, "VIRTIO_LOOPBACK_IOC_GET_INFO"));
    return info;
}

Result<WindowFd> ControlFile::window() const
{
    virtio_loopback_window w{};
    VL_TRY(ioctl_status(VIRTIO_LOOPBACK_IOC_GET_WINDOW, &w, "VIRTIO_LOOPBACK_IOC_GET_WINDOW"));
    return WindowFd{UniqueFd(w.fd), w.size};
}

Status ControlFile::set_queue_fds(std::uint32_t index, int kick_fd, int call_fd)
{
    virtio_loopback_queue_fds q{};
    q.index = index;
    q.kick_fd = kick_fd;
    q.call_fd = call_fd;
    return ioctl_status(VIRTIO_LOOPBACK_IOC_SET_QUEUE_FDS, &q,
                        "VIRTIO_LOOPBACK_IOC_SET_QUEUE_FDS");
}

Status ControlFile::start()
{
    return ioctl_status(VIRTIO_LOOPBACK_IOC_START, nullptr, "VIRTIO_LOOPBACK_IOC_START");
}

Result<QueueInfo> ControlFile::queue(std::uint32_t index) const
{
    virtio_loopback_queue_info q{};
    q.index = index;
    VL_TRY(ioctl_status(VIRTIO_LOOPBACK_IOC_GET_QUEUE, &q, "VIRTIO_LOOPBACK_IOC_GET_QUEUE"));
    QueueInfo info;
    info.index = q.index;
    info.ready = (q.flags & VIRTIO_LOOPBACK_QUEUE_READY) != 0;
    info.size = q.size;
    info.desc = q.desc;
    info.avail = q.avail;
    info.used = q.used;
    info.outstanding = q.outstanding;
    info.avail_idx = q.avail_idx;
    info.used_idx = q.used_idx;
    return info;
}

Status ControlFile::interrupt(std::uint32_t index)
{
    virtio_loopback_interrupt irq{};
    irq.index = index;
    return ioctl_status(VIRTIO_LOOPBACK_IOC_INTERRUPT, &irq, "VIRTIO_LOOPBACK_IOC_INTERRUPT");
}

Status ControlFile::config_changed() { return interrupt(VIRTIO_LOOPBACK_CONFIG_INTERRUPT); }

Status ControlFile::set_config(std::uint32_t offset, std::span<const std::byte> bytes,
                               bool notify)
{
    virtio_loopback_config cfg{};
    if (bytes.size() > sizeof(cfg.data))
        return Error("config update larger than the config space", EINVAL);
    cfg.offset = offset;
    cfg.len = static_cast<std::uint32_t>(bytes.size());
    cfg.flags = notify ? VIRTIO_LOOPBACK_CONFIG_NOTIFY : 0;
    std::memcpy(cfg.data, bytes.data(), bytes.size());
    return ioctl_status(VIRTIO_LOOPBACK_IOC_SET_CONFIG, &cfg, "VIRTIO_LOOPBACK_IOC_SET_CONFIG");
}

Result<Requeued> ControlFile::requeue(std::uint32_t index)
{
    virtio_loopback_requeue rq{};
    rq.index = index;
    VL_TRY(ioctl_status(VIRTIO_LOOPBACK_IOC_REQUEUE, &rq, "VIRTIO_LOOPBACK_IOC_REQUEUE"));
    return Requeued{rq.base, rq.count};
}

Result<std::optional<virtio_loopback_msg>> ControlFile::read_message()
{
    virtio_loopback_msg msg{};
    for (;;) {
        ssize_t n = ::read(fd_.get(), &msg, sizeof(msg));
        if (n == static_cast<ssize_t>(sizeof(msg)))
            return std::optional<virtio_loopback_msg>(msg);
        if (n >= 0)
            return Error(fmt::format("short message read from {}: {} bytes", path_, n), EIO);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return std::optional<virtio_loopback_msg>();
        if (errno == EIO)
            return Error("the kernel gave up on the device (a reply came too late, or it "
                         "was failed); it is being removed",
                         EIO);
        return Error::from_errno("read from " + path_);
    }
}

Status ControlFile::reply(std::uint32_t id, int result)
{
    virtio_loopback_reply r{};
    r.id = id;
    r.result = result;
    for (;;) {
        ssize_t n = ::write(fd_.get(), &r, sizeof(r));
        if (n == static_cast<ssize_t>(sizeof(r)))
            return ok_status();
        if (n < 0 && errno == EINTR)
            continue;
        return Error::from_errno(fmt::format("reply to message {} on {}", id, path_));
    }
}

std::string describe_message(const virtio_loopback_msg& msg)
{
    switch (msg.type) {
    case VIRTIO_LOOPBACK_MSG_SET_STATUS:
        return fmt::format("SET_STATUS({})", status_bits(msg.status.status));
    case VIRTIO_LOOPBACK_MSG_RESET:
        return "RESET";
    case VIRTIO_LOOPBACK_MSG_SET_CONFIG:
        return fmt::format("SET_CONFIG(offset {}, {} bytes)", msg.config.offset, msg.config.len);
    default:
        return fmt::format("unknown message type {}", msg.type);
    }
}

} // namespace vl::loopback
