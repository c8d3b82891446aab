// SPDX-License-Identifier: Apache-2.0
// vl-test-driver: drive a vhost-user back-end from user space (see
// cli.cpp for the command line, README-like help with --help).
#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "blk_driver.hpp"
#include "blk_verify.hpp"
#include "cli.hpp"
#include "console_driver.hpp"
#include "input_driver.hpp"
#include "rng_driver.hpp"

namespace vl::test_driver
{
namespace
{

using cli::kExitFailure;
using cli::kExitOk;

int fail(const Error& error)
{
    fmt::print(stderr, "vl-test-driver: error: {}\n", error.message());
    return kExitFailure;
}

ConnectOptions connect_options(const cli::GlobalOptions& g)
{
    ConnectOptions c;
    c.reply_timeout = g.timeout;
    c.memory_bytes = g.memory_mib << 20;
    return c;
}

BlkOptions blk_options(const cli::GlobalOptions& g)
{
    BlkOptions o;
    o.connect = connect_options(g);
    o.queue_size = g.queue_size;
    o.event_idx = g.event_idx;
    o.indirect_desc = g.indirect;
    o.request_timeout = g.timeout;
    return o;
}

// Stops the queues politely (GET_VRING_BASE): part of what a run checks.
int finish(VhostUserDriver& driver, int status)
{
    auto stopped = driver.stop();
    driver.disconnect();
    if (!stopped)
        return fail(stopped.error().wrap("stopping the queues"));
    return status;
}

template <class T> std::string or_absent(const std::optional<T>& value)
{
    return value ? fmt::format("{}", *value) : std::string("(not offered)");
}

void print_session(VhostUserDriver& d, std::span<const FeatureName> device_names)
{
    const Negotiated& n = d.negotiated();
    fmt::print("features offered:    {:#018x} {}\n", n.offered_features,
               feature_names(n.offered_features, device_names));
    fmt::print("features acked:      {:#018x} {}\n", n.acked_features,
               feature_names(n.acked_features, device_names));
    fmt::print("protocol offered:    {:#018x} {}\n", n.offered_protocol_features,
               protocol_feature_names(n.offered_protocol_features));
    fmt::print("protocol used:       {:#018x} {}\n", n.protocol_features,
               protocol_feature_names(n.protocol_features));
    fmt::print("queues:              {} started (back-end maximum {})\n", d.queue_count(),
               or_absent(n.max_queues));
}

// ---------------------------------------------------------------------------
// blk

int run_blk_info(const cli::GlobalOptions& g, const cli::BlkInfoOptions&, const Logger& logger)
{
    auto blk = BlkDriver::open(g.socket, blk_options(g), logger);
    if (!blk)
        return fail(blk.error());
    const BlkConfig& c = blk->config();
    print_session(blk->driver(), blk_feature_names());
    fmt::print("capacity:            {} sectors ({} bytes, {:.1f} MiB)\n", c.capacity_sectors,
               c.capacity_bytes(), static_cast<double>(c.capacity_bytes()) / (1 << 20));
    fmt::print("block size:          {}\n", or_absent(c.blk_size));
    fmt::print("size_max:            {}\n", or_absent(c.size_max));
    fmt::print("seg_max:             {}\n", or_absent(c.seg_max));
    if (c.topology)
        fmt::print("topology:            physical_block_exp {} alignment_offset {} "
                   "min_io_size {} opt_io_size {}\n",
                   c.topology->physical_block_exp, c.topology->alignment_offset,
                   c.topology->min_io_size, c.topology->opt_io_size);
    fmt::print("writeback:           {}\n", or_absent(c.writeback));
    fmt::print("num_queues:          {}\n", c.num_queues);
    if (c.discard)
        fmt::print("discard:             max_sectors {} max_seg {} alignment {}\n",
                   c.discard->max_sectors, c.discard->max_segments, c.discard->sector_alignment);
    if (c.write_zeroes)
        fmt::print("write_zeroes:        max_sectors {} max_seg {} may_unmap {}\n",
                   c.write_zeroes->max_sectors, c.write_zeroes->max_segments,
                   c.write_zeroes->may_unmap ? 1 : 0);
    fmt::print("read_only:           {}\n", c.read_only ? "yes" : "no");
    fmt::print("flush:               {}\n", c.flush ? "yes" : "no");
    auto serial = blk->get_id(0);
    if (!serial)
        return fail(serial.error());
    fmt::print("serial:              \"{}\"\n", *serial);
    return finish(blk->driver(), kExitOk);
}

std::uint64_t clock_seed()
{
    return static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
}

// 16 MiB, or the whole disk in whole requests if it is smaller.
std::uint64_t default_region(const BlkConfig& config, std::uint64_t request_bytes)
{
    const std::uint64_t region = std::min<std::uint64_t>(16 << 20, config.capacity_bytes());
    return region - region % request_bytes;
}

int run_blk_verify_command(const cli::GlobalOptions& g, const cli::BlkVerifyOptions& o,
                           const Logger& logger)
{
    auto blk = BlkDriver::open(g.socket, blk_options(g), logger);
    if (!blk)
        return fail(blk.error());
    VerifyParams p;
    p.queue = o.queue;
    p.region_bytes =
        o.size_mib ? *o.size_mib << 20 : default_region(blk->config(), p.request_bytes);
    p.request_bytes = o.request_kib << 10;
    p.writes = o.requests.value_or(0);
    p.queue_depth = o.qd;
    p.seed = o.seed.value_or(clock_seed());
    p.check_zeroes = o.zeroes;

    auto report = run_blk_verify(*blk, p, logger);
    if (!report)
        return fail(report.error().wrap(fmt::format("blk-verify (seed {})", p.seed)));
    const VerifyReport& r = *report;
    fmt::print("blk-verify: queue {}, {} KiB region in {} blocks of {} KiB, qd {}, seed {}\n",
               p.queue, p.region_bytes >> 10, r.blocks, o.request_kib, p.queue_depth, p.seed);
    fmt::print("  writes: {} in {:.3f} s; flush: {}\n", r.writes, r.write_seconds.count(), r.flush);
    fmt::print("  reads:  {} in {:.3f} s; {} sectors checked, {} mismatched\n", r.reads,
               r.read_seconds.count(), r.sectors_checked, r.mismatched_sectors);
    fmt::print("  write-zeroes: {}; discard: {}\n", r.write_zeroes, r.discard);
    for (const Mismatch& m : r.first_mismatches)
        fmt::print("  MISMATCH sector {}: {}\n", m.sector, m.what);
    fmt::print("blk-verify: {}\n", r.passed() ? "PASS" : "FAIL");
    return finish(blk->driver(), r.passed() ? kExitOk : kExitFailure);
}

// ---------------------------------------------------------------------------
// rng

int run_rng_read(const cli::GlobalOptions& g, const cli::RngReadOptions& o, const Logger& logger)
{
    RngOptions options;
    options.connect = connect_options(g);
    options.queue_size = g.queue_size;
    options.event_idx = g.event_idx;
    options.request_timeout = g.timeout;
    auto rng = RngDriver::open(g.socket, options, logger);
    if (!rng)
        return fail(rng.error());
    auto bytes = rng->read(o.bytes);
    if (!bytes)
        return fail(bytes.error());
    if (o.output) {
        std::ofstream out(*o.output, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(bytes->data()),
                  static_cast<std::streamsize>(bytes->size()));
        if (!out)
            return fail(Error("cannot write " + *o.output));
    } else {
        for (std::size_t i = 0; i < bytes->size(); ++i)
            fmt::print("{:02x}{}", std::to_integer<unsigned>((*bytes)[i]),
                       (i % 32 == 31 || i + 1 == bytes->size()) ? "\n" : "");
    }
    return finish(rng->driver(), kExitOk);
}

// ---------------------------------------------------------------------------
// input

InputOptions input_options(const cli::GlobalOptions& g)
{
    InputOptions o;
    o.connect = connect_options(g);
    o.queue_size = g.queue_size;
    o.event_idx = g.event_idx;
    o.event_buffers = std::min<std::uint32_t>(64, g.queue_size);
    o.request_timeout = g.timeout;
    return o;
}

// The set bits of a bitmap as "1 2 30".
std::string bit_list(std::span<const std::byte> bitmap)
{
    std::string out;
    for (std::size_t i = 0; i < bitmap.size() * 8; ++i)
        if ((std::to_integer<unsigned>(bitmap[i / 8]) >> (i % 8) & 1U) != 0)
            out += (out.empty() ? "" : " ") + std::to_string(i);
    return out;
}

int run_input_info(const cli::GlobalOptions& g, const cli::InputInfoOptions&, const Logger& logger)
{
    auto input = InputDriver::open(g.socket, input_options(g), logger);
    if (!input)
        return fail(input.error());
    print_session(input->driver(), {});
    auto name = input->name();
    auto serial = input->serial();
    auto ids = input->device_ids();
    auto props = input->property_bits();
    if (!name || !serial || !ids || !props)
        return fail(!name     ? name.error()
                    : !serial ? serial.error()
                    : !ids    ? ids.error()
                              : props.error());
    fmt::print("name:                \"{}\"\n", *name);
    fmt::print("serial:              \"{}\"\n", *serial);
    fmt::print("ids:                 bustype {:#06x} vendor {:#06x} product {:#06x} version "
               "{:#06x}\n",
               ids->bustype, ids->vendor, ids->product, ids->version);
    fmt::print("properties:          {}\n", bit_list(*props));
    constexpr std::uint8_t kEvAbs = 0x03;
    constexpr std::uint8_t kEvMax = 0x1f;
    for (std::uint8_t type = 0; type <= kEvMax; ++type) {
        auto bits = input->event_bits(type);
        if (!bits)
            return fail(bits.error());
        if (bits->empty())
            continue;
        fmt::print("event type {:#04x}:     {}\n", type, bit_list(*bits));
        if (type != kEvAbs)
            continue;
        for (std::size_t axis = 0; axis < bits->size() * 8 && axis <= 0xff; ++axis) {
            if ((std::to_integer<unsigned>((*bits)[axis / 8]) >> (axis % 8) & 1U) == 0)
                continue;
            auto abs = input->abs_info(static_cast<std::uint8_t>(axis));
            if (!abs)
                return fail(abs.error());
            if (*abs)
                fmt::print("  abs {:#04x}:          min {} max {} fuzz {} flat {} res {}\n", axis,
                           (*abs)->min, (*abs)->max, (*abs)->fuzz, (*abs)->flat, (*abs)->res);
        }
    }
    return finish(input->driver(), kExitOk);
}

int run_input_read(const cli::GlobalOptions& g, const cli::InputReadOptions& o,
                   const Logger& logger)
{
    auto input = InputDriver::open(g.socket, input_options(g), logger);
    if (!input)
        return fail(input.error());
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + o.timeout;
    std::uint64_t got = 0;
    // One event at a time so that each is printed as it arrives.
    while (got < o.events) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            break;
        auto events = input->read_events(1, left);
        if (!events)
            return fail(events.error());
        for (const InputEvent& e : *events) {
            fmt::print("{} {} {}\n", e.type, e.code, static_cast<std::int32_t>(e.value));
            std::fflush(stdout);
            ++got;
        }
    }
    if (got < o.events) {
        fmt::print(stderr, "vl-test-driver: error: {} of {} events within {} ms\n", got, o.events,
                   o.timeout.count());
        return finish(input->driver(), kExitFailure);
    }
    return finish(input->driver(), kExitOk);
}

// ---------------------------------------------------------------------------
// console

int run_console_info(const cli::GlobalOptions& g, const cli::ConsoleInfoOptions& o,
                     const Logger& logger)
{
    ConsoleOptions options;
    options.connect = connect_options(g);
    options.queue_size = g.queue_size;
    options.event_idx = g.event_idx;
    options.multiport = o.multiport;
    options.request_timeout = g.timeout;
    auto console = ConsoleDriver::open(g.socket, options, logger);
    if (!console)
        return fail(console.error());
    static constexpr std::array<FeatureName, 3> kNames{{
        {VIRTIO_CONSOLE_F_SIZE, "SIZE"},
        {VIRTIO_CONSOLE_F_MULTIPORT, "MULTIPORT"},
        {VIRTIO_CONSOLE_F_EMERG_WRITE, "EMERG_WRITE"},
    }};
    print_session(console->driver(), kNames);
    const ConsoleConfig& c = console->config();
    fmt::print("config:              cols {} rows {} max_nr_ports {}\n", c.cols, c.rows,
               c.max_nr_ports);
    if (console->multiport()) {
        if (Status up = console->bring_up(g.timeout); !up)
            return finish(console->driver(), fail(up.error()));
    }
    for (std::uint32_t p = 0; p < console->port_count(); ++p) {
        const ConsolePort& port = console->port(p);
        std::string what = port.added ? "added" : "not added";
        if (port.console)
            what += ", console";
        if (!port.name.empty())
            what += fmt::format(", name \"{}\"", port.name);
        if (console->multiport())
            what += port.host_open ? ", host side open" : ", host side closed";
        fmt::print("port {:<3}             {}\n", fmt::format("{}:", p), what);
    }
    if (const auto& size = console->size())
        fmt::print("console size:        {} cols {} rows (RESIZE)\n", size->cols, size->rows);
    return finish(console->driver(), kExitOk);
}

template <class... Ts> struct Overloaded : Ts... {
    using Ts::operator()...;
};
template <class... Ts> Overloaded(Ts...) -> Overloaded<Ts...>;

int run(const cli::Invocation& inv)
{
    const Logger logger("vl-test-driver", inv.global.log_level);
    const cli::GlobalOptions& g = inv.global;
    return std::visit(
        Overloaded{
            [&](const cli::BlkInfoOptions& o) { return run_blk_info(g, o, logger); },
            [&](const cli::BlkVerifyOptions& o) { return run_blk_verify_command(g, o, logger); },
            [&](const cli::RngReadOptions& o) { return run_rng_read(g, o, logger); },
            [&](const cli::InputInfoOptions& o) { return run_input_info(g, o, logger); },
            [&](const cli::InputReadOptions& o) { return run_input_read(g, o, logger); },
            [&](const cli::ConsoleInfoOptions& o) { return run_console_info(g, o, logger); },
        },
        inv.command);
}

} // namespace
} // namespace vl::test_driver

int main(int argc, char** argv)
{
    namespace cli = vl::test_driver::cli;
    std::vector<std::string_view> args(argv + 1, argv + argc);
    auto inv = cli::parse(args);
    if (!inv) {
        fmt::print(stderr, "vl-test-driver: {}\nTry 'vl-test-driver --help'.\n",
                   inv.error().message());
        return cli::kExitUsage;
    }
    if (inv->help) {
        fmt::print("{}", *inv->help);
        return cli::kExitOk;
    }
    return vl::test_driver::run(*inv);
}
