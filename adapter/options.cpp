// SPDX-License-Identifier: Apache-2.0
#include "options.hpp"

#include <fmt/format.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <string_view>

namespace vl::adapter
{

const char* const kUsage =
    R"(Usage: virtio-loopback-adapter [OPTIONS] -s SOCKET -d TYPE [DEVICE OPTIONS]
                               [-s SOCKET -d TYPE [DEVICE OPTIONS]]...
       virtio-loopback-adapter [OPTIONS] -c FILE

Connects to vhost-user device back-ends and turns each into a virtio device
of this machine's kernel, through the virtio-loopback transport
(/dev/virtio-loopback). The kernel's own drivers then use the devices; data
flows between the kernel and the back-ends without passing through the
adapter, which only handles set-up, reset and back-end loss.

Each -s/-d pair starts a device; the device options after it apply to it.

Device options:
  -s, --socket PATH        the back-end's vhost-user socket
  -d, --device TYPE        blk|input|rng|console|gpio|sound|can|vsock|i2c|fs|net|generic
                           (the original adapter's names vhublk, vhuinput,
                           vhurng, vrng, vhusnd, vhugpio, vhucan, vhuconsole,
                           vhuvsock are accepted too)
      --virtio-id N        virtio device id (required for generic)
      --config-size N      bytes of config space to fetch (generic; max 256)
      --tag TAG            fs: the name the file system is mounted by
                           (mount -t virtiofs TAG DIR), at most 36 bytes.
                           virtiofsd has no config space: the adapter
                           fills it (the tag, one request queue per queue
                           after the first)
  -qn, --num-queues N      queues to use, at most 64 (default: the back-end's
                           count, or the type's default when it has no MQ).
                           net: receive/transmit pairs, as in dpdk-testpmd's
                           queues=N (default 1, at most 31); more than one
                           needs a back-end that offers multiqueue, and the
                           adapter then serves the control queue itself
  -qs, --queue-size N      ring size, a power of two (default per type)
      --window-mb N        DMA window in MiB (default per type)
      --zero-copy on|off   on (default): buffers of whole pages reach the
                           back-end as the driver's own pages, mapped in
                           its window only while it owns the request, not
                           as copies. Such pages cannot be pinned: O_DIRECT
                           I/O, io_uring registered buffers and vmsplice on
                           them fail with EFAULT. Back-ends that do O_DIRECT
                           I/O straight into guest memory, such as
                           qemu-storage-daemon with cache.direct=on, need
                           --zero-copy=off (our vhost-user-blk --direct
                           falls back to a copy by itself)

Options:
  -c, --config FILE        read devices and options from FILE (see below)
      --control PATH       the transport's node (default /dev/virtio-loopback)
      --connect-timeout S  give up if a back-end's socket does not accept a
                           connection within S seconds at start (default 30)
      --reconnect-grace S  after losing a back-end, keep the kernel device and
                           wait S seconds for it to come back before failing
                           its pending requests and removing it (default 30)
      --stall-timeout S    treat a back-end that completes nothing for S seconds
                           while requests are pending (stopped, wedged) as
                           lost: reconnect, then the grace period (default
                           15; 0 turns the watchdog off). For devices whose
                           requests are answered promptly (blk, i2c).
      --reply-timeout-ms N how long the kernel waits for the adapter's answers
                           (default: the module's, 5000)
  -l, --log-level LEVEL    error|warn|info|debug|trace (default info)
      --list-devices       list the device types and exit
  -h, --help               show this help
  -V, --version            show the version

Config file: one option per line as "key = value" with the long option
names; "[device]" starts a device; '#' starts a comment. Example:

  reconnect-grace = 10
  [device]
  socket = /run/vhost-user-blk.sock
  device = blk
  num-queues = 2
  [device]
  socket = /run/vhost-user-rng.sock
  device = rng

Back-ends are checked before anything reaches the kernel: device feature
bits the type does not define, a config space shorter than the type's, more
queues than the transport takes or fewer than the driver needs are refused
with the option to fix.

Examples (third-party back-ends):
  /usr/lib/qemu/virtiofsd --socket-path=/run/vfs.sock -o source=/srv/share &
  virtio-loopback-adapter -s /run/vfs.sock -d fs --tag share &
  mount -t virtiofs share /mnt

  dpdk-testpmd -l 0,1 --no-huge -m 64 --no-pci --vdev net_vhost0,iface=/run/vhost-net0.sock \
      --vdev net_vhost1,iface=/run/vhost-net1.sock \
      -- --forward-mode=io --total-num-mbufs=4096 --disable-link-check &
  virtio-loopback-adapter -s /run/vhost-net0.sock -d net -s /run/vhost-net1.sock -d net
  (two pairs each: queues=2 in both --vdev, --rxq=2 --txq=2 for testpmd, and -qn 2
  after each -d net)

Signals: SIGTERM and SIGINT remove the devices and exit with status 0.
Exit status: 0 on SIGTERM/SIGINT, 1 on a runtime error (a back-end that never
came up, the transport missing), 2 on bad usage.
)";

namespace
{

Result<std::uint64_t> parse_unsigned(std::string_view option, std::string_view text)
{
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size())
        return Error(fmt::format("{} wants a non-negative number, got '{}'", option, text), EINVAL);
    return value;
}

Result<std::uint32_t> parse_in_range(std::string_view option, std::string_view text,
                                     std::uint64_t min, std::uint64_t max)
{
    VL_TRY_ASSIGN(std::uint64_t value, parse_unsigned(option, text));
    if (value < min || value > max)
        return Error(fmt::format("{} must be between {} and {}, got {}", option, min, max, value),
                     EINVAL);
    return static_cast<std::uint32_t>(value);
}

Result<bool> parse_on_off(std::string_view option, std::string_view text)
{
    if (text == "on")
        return true;
    if (text == "off")
        return false;
    return Error(fmt::format("{} wants on or off, got '{}'", option, text), EINVAL);
}

// Builds the device list and options one (key, value) at a time, from the
// command line and config files alike.
class Builder
{
  public:
    explicit Builder(AdapterOptions& options) : options_(options) {}

    Status set(std::string_view key, std::string_view value)
    {
        if (key == "socket")
            return set_socket(value);
        if (key == "device")
            return set_type(value);
        if (key == "virtio-id") {
            VL_TRY_ASSIGN(current().virtio_id, parse_in_range("--virtio-id", value, 1, 0xffff));
            return ok_status();
        }
        if (key == "config-size") {
            VL_TRY_ASSIGN(current().config_size, parse_in_range("--config-size", value, 0, 256));
            return ok_status();
        }
        if (key == "num-queues") {
            VL_TRY_ASSIGN(current().num_queues, parse_in_range("--num-queues", value, 1, 64));
            return ok_status();
        }
        if (key == "queue-size") {
            VL_TRY_ASSIGN(auto size, parse_in_range("--queue-size", value, 2, 32768));
            if (!std::has_single_bit(size))
                return Error(fmt::format("--queue-size must be a power of two, got {}", size),
                             EINVAL);
            current().queue_size = size;
            return ok_status();
        }
        if (key == "tag") {
            if (value.empty())
                return Error("--tag wants a name (what 'mount -t virtiofs TAG DIR' mounts)",
                             EINVAL);
            current().tag = std::string(value);
            return ok_status();
        }
        if (key == "window-mb") {
            VL_TRY_ASSIGN(auto mib, parse_in_range("--window-mb", value, 1, 1024));
            current().window_bytes = std::uint64_t{mib} << 20;
            return ok_status();
        }
        if (key == "zero-copy") {
            VL_TRY_ASSIGN(current().zero_copy, parse_on_off("--zero-copy", value));
            return ok_status();
        }
        if (key == "control") {
            options_.control_path = std::string(value);
            return ok_status();
        }
        if (key == "connect-timeout") {
            VL_TRY_ASSIGN(auto s, parse_in_range("--connect-timeout", value, 0, 86400));
            options_.connect_timeout = std::chrono::seconds(s);
            return ok_status();
        }
        if (key == "reconnect-grace") {
            VL_TRY_ASSIGN(auto s, parse_in_range("--reconnect-grace", value, 0, 86400));
            options_.reconnect_grace = std::chrono::seconds(s);
            return ok_status();
        }
        if (key == "stall-timeout") {
            VL_TRY_ASSIGN(auto s, parse_in_range("--stall-timeout", value, 0, 86400));
            options_.stall_timeout = std::chrono::seconds(s);
            return ok_status();
        }
        if (key == "reply-timeout-ms") {
            VL_TRY_ASSIGN(options_.reply_timeout_ms,
                          parse_in_range("--reply-timeout-ms", value, 1, 60000));
            return ok_status();
        }
        if (key == "log-level") {
            auto level = parse_log_level(value);
            if (!level)
                return Error(
                    fmt::format("unknown log level '{}' (error|warn|info|debug|trace)", value),
                    EINVAL);
            options_.log_level = *level;
            return ok_status();
        }
        return Error(fmt::format("unknown option '{}'", key), EINVAL);
    }

    // Starts a new device (a "[device]" line).
    void next_device() { open_ = false; }

    // Fills in the defaults and checks each device.
    Status finish()
    {
        unsigned index = 0;
        for (auto& d : options_.devices) {
            if (d.socket.empty())
                return Error(fmt::format("device {} has no --socket", index + 1), EINVAL);
            if (!d.type)
                return Error(
                    fmt::format("device {} ({}) has no --device TYPE", index + 1, d.socket),
                    EINVAL);
            if (d.type->virtio_id == 0 && d.virtio_id == 0)
                return Error(fmt::format("device {} is generic: give --virtio-id N", index + 1),
                             EINVAL);
            VL_TRY(check_tag(d, index + 1));
            if (d.virtio_id == 0)
                d.virtio_id = d.type->virtio_id;
            if (d.config_size == 0)
                d.config_size = d.type->config_size;
            if (d.queue_size == 0)
                d.queue_size = d.type->queue_size;
            if (d.window_bytes == 0)
                d.window_bytes = std::uint64_t{d.type->window_mib} << 20;
            d.name = fmt::format("{}{}", d.type->name, index++);
        }
        return ok_status();
    }

  private:
    static Status check_tag(const DeviceSpec& d, unsigned number)
    {
        const std::uint32_t field = d.type->tag_size;
        if (field == 0 && !d.tag.empty())
            return Error(fmt::format("device {} ({}): --tag applies to devices with a tag (fs), "
                                     "not to {}",
                                     number, d.socket, d.type->name),
                         EINVAL);
        if (field != 0 && d.tag.empty())
            return Error(fmt::format("device {} ({}): a {} device needs --tag TAG, the name it is "
                                     "mounted by (mount -t virtiofs TAG DIR)",
                                     number, d.socket, d.type->name),
                         EINVAL);
        if (d.tag.size() > field)
            return Error(fmt::format("device {} ({}): --tag '{}' is {} bytes; the {} config space "
                                     "holds at most {}: give a shorter --tag",
                                     number, d.socket, d.tag, d.tag.size(), d.type->name, field),
                         EINVAL);
        return ok_status();
    }

    DeviceSpec& current()
    {
        if (!open_ || options_.devices.empty()) {
            options_.devices.emplace_back();
            open_ = true;
        }
        return options_.devices.back();
    }

    Status set_socket(std::string_view value)
    {
        if (value.empty())
            return Error("--socket wants a path", EINVAL);
        if (open_ && !current().socket.empty())
            next_device();
        current().socket = std::string(value);
        return ok_status();
    }

    Status set_type(std::string_view value)
    {
        const DeviceType* type = find_device_type(value);
        if (!type)
            return Error(
                fmt::format("unknown device type '{}' (one of {})", value, device_type_names()),
                EINVAL);
        if (open_ && current().type)
            next_device();
        current().type = type;
        return ok_status();
    }

    AdapterOptions& options_;
    bool open_ = false;
};

// Long option names, and which take a value; short forms map onto them.
struct OptionName {
    std::string_view long_name;
    std::string_view short_name;
    bool takes_value;
};
constexpr OptionName kOptions[] = {
    {"socket", "-s", true},        {"device", "-d", true},         {"virtio-id", "", true},
    {"config-size", "", true},     {"num-queues", "-qn", true},    {"queue-size", "-qs", true},
    {"window-mb", "", true},       {"zero-copy", "", true},        {"tag", "", true},
    {"config", "-c", true},        {"control", "", true},          {"connect-timeout", "", true},
    {"reconnect-grace", "", true}, {"reply-timeout-ms", "", true}, {"stall-timeout", "", true},
    {"log-level", "-l", true},     {"list-devices", "", false},    {"help", "-h", false},
    {"version", "-V", false},
};

const OptionName* find_option(std::string_view arg, std::string_view& inline_value,
                              bool& has_inline)
{
    has_inline = false;
    if (arg.starts_with("--")) {
        std::string_view name = arg.substr(2);
        if (auto eq = name.find('='); eq != std::string_view::npos) {
            inline_value = name.substr(eq + 1);
            name = name.substr(0, eq);
            has_inline = true;
        }
        for (const auto& o : kOptions)
            if (o.long_name == name)
                return &o;
        return nullptr;
    }
    for (const auto& o : kOptions)
        if (!o.short_name.empty() && o.short_name == arg)
            return &o;
    return nullptr;
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

Status read_config_into(const std::string& path, Builder& builder)
{
    std::ifstream in(path);
    if (!in)
        return Error::from_errno("cannot read config file " + path);
    std::string line;
    unsigned number = 0;
    while (std::getline(in, line)) {
        ++number;
        std::string_view text = line;
        if (auto hash = text.find('#'); hash != std::string_view::npos)
            text = text.substr(0, hash);
        text = trim(text);
        if (text.empty())
            continue;
        if (text == "[device]") {
            builder.next_device();
            continue;
        }
        auto eq = text.find('=');
        if (eq == std::string_view::npos)
            return Error(fmt::format("{}:{}: expected 'key = value' or '[device]'", path, number),
                         EINVAL);
        Status s = builder.set(trim(text.substr(0, eq)), trim(text.substr(eq + 1)));
        if (!s.ok())
            return s.error().wrap(fmt::format("{}:{}", path, number));
    }
    return ok_status();
}

} // namespace

Status read_config_file(const std::string& path, AdapterOptions& options)
{
    Builder builder(options);
    VL_TRY(read_config_into(path, builder));
    return builder.finish();
}

Result<ParsedCommandLine> parse_command_line(int argc, char** argv)
{
    ParsedCommandLine parsed;
    Builder builder(parsed.options);
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        std::string_view value;
        bool has_inline = false;
        const OptionName* option = find_option(arg, value, has_inline);
        if (!option)
            return Error(fmt::format("unknown option '{}' (see --help)", arg), EINVAL);
        if (option->takes_value && !has_inline) {
            if (i + 1 >= argc)
                return Error(fmt::format("{} wants a value", arg), EINVAL);
            value = argv[++i];
        } else if (!option->takes_value && has_inline) {
            return Error(fmt::format("{} takes no value", arg), EINVAL);
        }
        if (option->long_name == "help")
            parsed.action = Action::help;
        else if (option->long_name == "version")
            parsed.action = Action::version;
        else if (option->long_name == "list-devices")
            parsed.action = Action::list_devices;
        else if (option->long_name == "config")
            VL_TRY(read_config_into(std::string(value), builder));
        else
            VL_TRY(builder.set(option->long_name, value));
    }
    if (parsed.action != Action::run)
        return parsed;
    VL_TRY(builder.finish());
    if (parsed.options.devices.empty())
        return Error("no device given: use -s SOCKET -d TYPE or -c FILE (see --help)", EINVAL);
    return parsed;
}

} // namespace vl::adapter
