#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Turns one `make bench` run into results: raw numbers (JSON), Markdown
tables of medians and ratios with the project's goals checked against
them, and a plot (SVG, drawn by gnuplot).

    report.py RUN_DIR OUT_DIR

RUN_DIR is what benchmarks/run.sh left: run-info.tsv, guest/records.tsv
(+ raw fio JSON, logs) and host/records.tsv (+ vl-host-bench JSON lines).
OUT_DIR gets results.json, results.md and results.svg. Every number comes
from those files; nothing is assumed. Only the Python standard library is
used (Debian's /usr/bin/python3)."""

import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile

# ---------------------------------------------------------------------------
# What the contenders and workloads are called in the results
# ---------------------------------------------------------------------------
BLK = [
    ("vl-blk", "virtio-loopback + vhost-user-blk (ours, zero-copy)"),
    ("vl-blk-bounce", "virtio-loopback + vhost-user-blk, every buffer bounced (--zero-copy=off)"),
    ("vl-blk-poll", "virtio-loopback + vhost-user-blk --poll-us (ours, busy-polling)"),
    ("vl-qsd", "virtio-loopback + qemu-storage-daemon"),
    ("vduse", "VDUSE + qemu-storage-daemon"),
    ("loop", "loop, direct I/O"),
    ("nbd", "NBD: qemu-nbd, Unix socket"),
    ("null_blk", "null_blk (no storage)"),
    ("vl-null", "virtio-loopback + vhost-user-blk --null (no storage)"),
]
INPUT = [
    ("vl-input", "virtio-loopback + vhost-user-input (FIFO)"),
    ("vl-input-poll", "virtio-loopback + vhost-user-input --poll-us (FIFO, busy-polling)"),
    ("uinput", "uinput (kernel only)"),
]
RNG = [
    ("vl-rng", "virtio-loopback + vhost-user-rng: /dev/hwrng"),
    ("urandom", "/dev/urandom (kernel only)"),
]
NET = [
    ("vl-net", "virtio-loopback + dpdk-testpmd (vhost PMD, io forwarding)"),
    ("veth", "veth pair (kernel only)"),
]
HOST = [
    ("ours", "our vhost-user-blk"),
    ("qsd", "qemu-storage-daemon vhost-user-blk"),
]
FIO = [
    ("randread-4k-qd1", "4k rand read QD1"),
    ("randread-4k-qd32", "4k rand read QD32"),
    ("randwrite-4k-qd32", "4k rand write QD32"),
    ("seqread-128k-qd8", "128k seq read QD8"),
    ("seqwrite-128k-qd8", "128k seq write QD8"),
    ("seqread-1m-qd4", "1M seq read QD4"),
    ("seqwrite-1m-qd4", "1M seq write QD4"),
]
IOPS_WORKLOADS = ["randread-4k-qd1", "randread-4k-qd32", "randwrite-4k-qd32"]
MBPS_WORKLOADS = ["seqread-128k-qd8", "seqwrite-128k-qd8", "seqread-1m-qd4",
                  "seqwrite-1m-qd4", "dd-1m-read"]
LABEL = dict(BLK + INPUT + RNG + NET + HOST + FIO + [("dd-1m-read", "dd 1M read, direct")])
PART = {**{c: "blk" for c, _ in BLK}, **{c: "input" for c, _ in INPUT},
        **{c: "rng" for c, _ in RNG}, **{c: "net" for c, _ in NET}}
GUEST_CONTENDERS = BLK + INPUT + RNG + NET

# The adapter's info line "set-up: back-end connected 1.2 ms, negotiated
# 3.4 ms, device created 6.0 ms, driver probed 20.0 ms, rings handed over
# 35.2 ms" (ms since its main() began): (words, metric). Each step is
# looked for on its own; one missing or garbled is left out.
SETUP_STEPS = [
    ("back-end connected", "step_connected_ms"),
    ("negotiated", "step_negotiated_ms"),
    ("device created", "step_created_ms"),
    ("driver probed", "step_probed_ms"),
    ("rings handed over", "step_rings_ms"),
]
SETUP_STEP_RE = [(re.compile(r"(?<![\w-])" + re.escape(words) + r"\s+([0-9]+(?:\.[0-9]+)?)\s*ms\b"), metric)
                 for words, metric in SETUP_STEPS]
# The contenders that have an adapter (and so that line).
VL_SETUP = ["vl-blk", "vl-blk-bounce", "vl-blk-poll", "vl-qsd", "vl-null", "vl-input", "vl-input-poll",
            "vl-rng", "vl-net"]


def parse_setup_steps(text):
    """{metric: ms} of the steps found in an adapter's set-up line."""
    steps = {}
    for regex, metric in SETUP_STEP_RE:
        m = regex.search(text)
        if m:
            ms = float(m.group(1))
            if math.isfinite(ms):
                steps[metric] = ms
    return steps


def info_ms(info, key):
    """An info record in microseconds (exec_us_*) as milliseconds, or None."""
    try:
        v = float(info.get(key, ""))
    except ValueError:
        return None
    return v / 1000.0 if math.isfinite(v) and v >= 0 else None


# The project's goals, checked against each run's medians: ours (and its
# busy-polling variant, if it ran) against another contender. "ratio":
# ours / theirs must be OP X; "limit": ours itself must be OP X too.
GOALS = [
    {"goal": "4k rand read QD1, IOPS", "workload": "randread-4k-qd1", "metric": "iops",
     "against": "vduse", "ratio": (">=", 1.5)},
    {"goal": "4k rand read QD1, IOPS", "workload": "randread-4k-qd1", "metric": "iops",
     "against": "loop", "ratio": (">=", 0.6)},
    {"goal": "4k rand read QD32, IOPS", "workload": "randread-4k-qd32", "metric": "iops",
     "against": "vduse", "ratio": (">=", 1.5)},
    {"goal": "4k rand write QD32, IOPS", "workload": "randwrite-4k-qd32", "metric": "iops",
     "against": "vduse", "ratio": (">=", 1.5)},
    {"goal": "128k seq read QD8, MB/s", "workload": "seqread-128k-qd8", "metric": "mbps",
     "against": "vduse", "ratio": (">=", 2.0)},
    {"goal": "128k seq write QD8, MB/s", "workload": "seqwrite-128k-qd8", "metric": "mbps",
     "against": "vduse", "ratio": (">=", 2.0)},
    {"goal": "1M seq read QD4, MB/s", "workload": "seqread-1m-qd4", "metric": "mbps",
     "against": "vduse", "ratio": (">=", 2.0)},
    {"goal": "1M seq write QD4, MB/s", "workload": "seqwrite-1m-qd4", "metric": "mbps",
     "against": "vduse", "ratio": (">=", 2.0)},
    {"goal": "guest CPU per 1 MiB read (1M seq read QD4), us", "workload": "seqread-1m-qd4",
     "metric": "guest_cpu_us_per_io", "against": "vduse", "ratio": ("<=", 0.5)},
    {"goal": "input event latency p50, us", "part": "input", "workload": "input-latency",
     "metric": "p50_us", "against": "uinput", "ratio": ("<=", 1.5)},
    {"goal": "block device set-up, ms", "workload": "setup", "metric": "setup_ms",
     "against": "vduse", "ratio": ("<", 1.0), "limit": ("<", 50.0, "ms")},
]
GOAL_OURS = {"blk": [("vl-blk", False), ("vl-blk-poll", True)],        # (contender, busy-polling)
             "input": [("vl-input", False), ("vl-input-poll", True)]}
GOAL_OPS = {">=": (lambda a, b: a >= b, "≥"), "<=": (lambda a, b: a <= b, "≤"),
            "<": (lambda a, b: a < b, "<")}


def read_tsv(path):
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if line:
                    rows.append(line.split("\t"))
    return rows


def load_json(path):
    """A JSON document, or the first JSON object in a file with a prefix
    (fio may print notes before its JSON)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no JSON in {path}")
    return json.JSONDecoder().raw_decode(text[start:])[0]


# ---------------------------------------------------------------------------
# Collecting: every measured value becomes one row
#   {"part", "round", "contender", "workload", "metric", "value"}
# ---------------------------------------------------------------------------
class Results:
    def __init__(self):
        self.rows = []
        self.failures = []   # {"part","round","contender","what","reason"}
        self.skipped = {}    # (part, contender) -> reason
        self.ok = {}         # (part, contender) -> rounds set up fine
        self.info = {}

    def add(self, part, rnd, contender, workload, metric, value):
        if value is None:
            return
        self.rows.append({"part": part, "round": int(rnd), "contender": contender,
                          "workload": workload, "metric": metric, "value": float(value)})

    def values(self, part, contender, workload, metric):
        return [r["value"] for r in self.rows
                if r["part"] == part and r["contender"] == contender
                and r["workload"] == workload and r["metric"] == metric]

    def median(self, part, contender, workload, metric):
        v = self.values(part, contender, workload, metric)
        return (statistics.median(v), len(v)) if v else (None, 0)


def cpu_busy(path, user_hz):
    """Busy CPU seconds and the window length from a cpu_window file."""
    lines = [l.split() for l in open(path, encoding="utf-8").read().splitlines() if l.strip()]
    if len(lines) != 2:
        return None
    def parse(fields):
        t = float(fields[0])
        v = [int(x) for x in fields[2:]]
        v += [0] * (8 - len(v))
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
        return t, busy
    t0, b0 = parse(lines[0])
    t1, b1 = parse(lines[1])
    if t1 <= t0:
        return None
    return (b1 - b0) / user_hz, t1 - t0


def read_transport_counters(path):
    """Sums of the transport's debugfs counters ("queue N KEY VALUE..." and
    "window KEY VALUE..." lines): kicks, interrupts, maps, bytes bounced,
    bounce and DMA-op time, ..."""
    totals = {}
    with open(path) as f:
        for line in f:
            words = line.split()
            if not words or words[0] not in ("queue", "window"):
                continue
            for key, value in zip(words[2::2] if words[0] == "queue" else words[1::2],
                                  words[3::2] if words[0] == "queue" else words[2::2]):
                if value.lstrip("-").isdigit():
                    totals[key] = totals.get(key, 0) + int(value)
    return totals


def add_transport_counters(res, part, rnd, c, w, prefix, ios):
    """Per-I/O kicks, interrupts, window maps, bytes bounced and kernel copy
    time of a virtio-loopback run. Counters the kernel does not print are
    left out (but for the first four, which older kernels printed too).

    The counters span fio's ramp too, while its I/O count does not: per-I/O
    figures are slightly high (by the ramp's share of the run)."""
    try:
        before = read_transport_counters(prefix + ".before")
        after = read_transport_counters(prefix + ".after")
    except OSError:
        return
    if ios <= 0 or not after:
        return
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    res.add(part, rnd, c, w, "kicks_per_io", delta.get("kicks", 0) / ios)
    res.add(part, rnd, c, w, "interrupts_per_io", delta.get("interrupts", 0) / ios)
    res.add(part, rnd, c, w, "bounce_us_per_io", delta.get("bounce_ns", 0) / 1000.0 / ios)
    res.add(part, rnd, c, w, "dma_us_per_io", delta.get("dma_ns", 0) / 1000.0 / ios)
    for key, metric in (("maps", "maps_per_io"), ("map_failures", "map_failures_per_io"),
                        ("page_failures", "page_failures_per_io"), ("zc_pages", "zc_pages_per_io")):
        if key in delta:
            res.add(part, rnd, c, w, metric, delta[key] / ios)
    if "bytes_to_device" in delta or "bytes_from_device" in delta:
        bounced = delta.get("bytes_to_device", 0) + delta.get("bytes_from_device", 0)
        res.add(part, rnd, c, w, "bounce_kib_per_io", bounced / ios / 1024.0)
    if "pages" in after:  # a level (bounce pages allocated so far), not a count of events
        res.add(part, rnd, c, w, "bounce_pages", after["pages"])


def collect_guest(res, gdir):
    records = read_tsv(os.path.join(gdir, "records.tsv"))
    for rec in records:
        if rec[0] == "info" and len(rec) >= 3:
            res.info[rec[1]] = rec[2]
    try:
        user_hz = float(res.info.get("user_hz", "100"))
    except ValueError:
        user_hz = 100.0
    for rec in records:
        if rec[0] == "info":
            continue
        try:
            collect_guest_record(res, gdir, rec, user_hz)
        except (IndexError, ValueError, KeyError, TypeError, ZeroDivisionError, OSError) as e:
            # A record cut short (the guest stopped while writing it) or
            # malformed: said under "Failures and skips", never a crash.
            res.failures.append({"part": "guest", "round": int(rec[1]) if rec[1:2] and rec[1].isdigit() else 0,
                                 "contender": rec[2] if len(rec) > 2 else "?", "what": "records.tsv",
                                 "reason": f"unreadable record {chr(9).join(rec)[:200]!r}: {e!r}"})


def collect_guest_record(res, gdir, rec, user_hz):
    """One record of guest/records.tsv (the format is at the top of guest.sh)."""
    kind = rec[0]
    rnd, c = rec[1], rec[2]
    part = PART.get(c, "other")
    if kind == "ok":
        res.ok.setdefault((part, c), set()).add(int(rnd))
    elif kind == "skip":
        res.skipped[(part, c)] = rec[3]
    elif kind == "fail":
        res.failures.append({"part": part, "round": int(rnd), "contender": c,
                             "what": rec[3], "reason": rec[4] if len(rec) > 4 else ""})
    elif kind == "setup":
        res.add(part, rnd, c, "setup", "setup_ms", int(rec[3]) / 1000.0)
    elif kind == "setup_steps":
        for metric, ms in parse_setup_steps("\t".join(rec[3:])).items():
            res.add(part, rnd, c, "setup", metric, ms)
    elif kind == "bytes":
        nbytes, secs = int(rec[4]), float(rec[5])
        if secs > 0:
            res.add(part, rnd, c, rec[3], "mbps", nbytes / secs / 1e6)
    elif kind == "fio":
        w = rec[3]
        try:
            job = load_json(os.path.join(gdir, rec[4]))["jobs"][0]
        except (OSError, ValueError, KeyError, IndexError) as e:
            res.failures.append({"part": part, "round": int(rnd), "contender": c,
                                 "what": w, "reason": f"unreadable fio output: {e}"})
            return
        if job.get("error"):
            res.failures.append({"part": part, "round": int(rnd), "contender": c,
                                 "what": w, "reason": f"fio job error {job['error']}"})
            return
        d = job["write"] if "write" in w else job["read"]
        ios = job["read"]["total_ios"] + job["write"]["total_ios"]
        res.add(part, rnd, c, w, "iops", d["iops"])
        res.add(part, rnd, c, w, "mbps", d["bw_bytes"] / 1e6)
        pct = d.get("clat_ns", {}).get("percentile", {})
        if "50.000000" in pct:
            res.add(part, rnd, c, w, "clat_p50_us", pct["50.000000"] / 1000.0)
        if "99.000000" in pct:
            res.add(part, rnd, c, w, "clat_p99_us", pct["99.000000"] / 1000.0)
        if ios > 0:
            cpu_s = (job["usr_cpu"] + job["sys_cpu"]) / 100.0 * job["job_runtime"] / 1000.0
            res.add(part, rnd, c, w, "fio_cpu_us_per_io", cpu_s * 1e6 / ios)
        if len(rec) > 6:
            add_transport_counters(res, part, rnd, c, w, os.path.join(gdir, rec[6]), ios)
        cpu_file = os.path.join(gdir, rec[5])
        if os.path.exists(cpu_file) and d["iops"] > 0:
            busy = cpu_busy(cpu_file, user_hz)
            if busy:
                res.add(part, rnd, c, w, "guest_cpu_us_per_io",
                        busy[0] * 1e6 / (d["iops"] * busy[1]))
    elif kind == "input":
        try:
            j = load_json(os.path.join(gdir, rec[3]))
        except (OSError, ValueError) as e:
            res.failures.append({"part": part, "round": int(rnd), "contender": c,
                                 "what": "input-latency", "reason": str(e)})
            return
        for k in ("p50_us", "p99_us", "kernel_p50_us", "lost"):
            res.add(part, rnd, c, "input-latency", k, j.get(k))
    elif kind == "rng":
        try:
            j = load_json(os.path.join(gdir, rec[3]))
        except (OSError, ValueError) as e:
            res.failures.append({"part": part, "round": int(rnd), "contender": c,
                                 "what": "rng-read", "reason": str(e)})
            return
        res.add(part, rnd, c, "rng-read", "mbps", j["mbps"])
        res.add(part, rnd, c, "rng-read", "longest_read_ms", j["longest_read_ms"])
    elif kind == "net":
        collect_iperf3(res, part, rnd, c, rec[3], os.path.join(gdir, rec[4]))


def collect_iperf3(res, part, rnd, c, w, path):
    """One iperf3 -J run: the TCP stream's Gbit/s as the receiver counted
    them (and the sender's retransmits); for UDP the datagrams per second
    sent and received (sent minus lost, per the receiver), and the loss."""
    try:
        j = load_json(path)
    except (OSError, ValueError) as e:
        res.failures.append({"part": part, "round": int(rnd), "contender": c,
                             "what": w, "reason": f"unreadable iperf3 output: {e}"})
        return
    if j.get("error"):
        res.failures.append({"part": part, "round": int(rnd), "contender": c,
                             "what": w, "reason": f"iperf3: {j['error']}"})
        return
    end = j["end"]
    received, sent = end["sum_received"], end["sum_sent"]
    if w == "tcp":
        res.add(part, rnd, c, w, "gbps", received["bits_per_second"] / 1e9)
        res.add(part, rnd, c, w, "retransmits", sent.get("retransmits"))
    else:
        if sent["seconds"] > 0:
            res.add(part, rnd, c, w, "sent_pps", sent["packets"] / sent["seconds"])
        if received["seconds"] > 0:
            res.add(part, rnd, c, w, "pps",
                    (received["packets"] - received["lost_packets"]) / received["seconds"])
        res.add(part, rnd, c, w, "loss_pct", received.get("lost_percent"))


def collect_host(res, hdir):
    for rec in read_tsv(os.path.join(hdir, "records.tsv")):
        kind = rec[0]
        if kind == "info":
            res.info["host_" + rec[1]] = rec[2]
            continue
        rnd, c = rec[1], rec[2]
        if kind == "ok":
            res.ok.setdefault(("host", c), set()).add(int(rnd))
        elif kind == "skip":
            res.skipped[("host", c)] = rec[3]
        elif kind == "fail":
            res.failures.append({"part": "host", "round": int(rnd), "contender": c,
                                 "what": rec[3], "reason": rec[4] if len(rec) > 4 else ""})
        elif kind == "hostbench":
            path = os.path.join(hdir, rec[3])
            if not os.path.exists(path):
                continue
            for line in open(path, encoding="utf-8"):
                line = line.strip()
                if not line.startswith("{"):
                    continue
                j = json.loads(line)
                w = j["workload"]
                for k in ("iops", "mbps", "lat_p50_us", "lat_p99_us",
                          "backend_cpu_us_per_io", "driver_cpu_us_per_io"):
                    res.add("host", rnd, c, w, k, j.get(k))


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------
def fmt_num(v):
    if v is None:
        return "–"
    a = abs(v)
    if v == int(v) and a < 1000:
        return str(int(v))
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_ratio(r):
    if r >= 10:
        return f"{r:.0f}×"
    if r >= 0.1:
        return f"{r:.2f}×"
    return f"{r:.2g}×"


class Table:
    """Rows of contenders, cells of medians (with the ratio to the baseline).
    part None: each contender's own part (a table across block, input, rng)."""
    def __init__(self, res, part, contenders, baseline, rounds, not_run=None):
        self.res, self.part, self.contenders = res, part, contenders
        self.baseline, self.rounds = baseline, rounds
        self.not_run = not_run or {}  # contender -> why it was not run at all

    def part_of(self, c):
        return self.part or PART.get(c, "other")

    def status(self, c):
        """None if the contender ran at least once, else why not."""
        part = self.part_of(c)
        if c in self.not_run:
            return self.not_run[c]
        if (part, c) in self.res.skipped and not self.res.ok.get((part, c)):
            return self.res.skipped[(part, c)]
        if not self.res.ok.get((part, c)):
            reasons = [f["reason"] for f in self.res.failures
                       if f["part"] == part and f["contender"] == c and f["what"] == "setup"]
            return "FAILED to set up: " + (reasons[0] if reasons else "no record (did the run stop early?)")
        return None

    def cell(self, c, workload, metric, fmt=fmt_num, ratio=True):
        """The median (n=rounds it has, if fewer) and ratio (unless `ratio`
        is False); workload None: metric is a text, the same in every row."""
        if workload is None:
            return metric
        part = self.part_of(c)
        v, n = self.res.median(part, c, workload, metric)
        if v is None:
            failed = [f for f in self.res.failures if f["part"] == part
                      and f["contender"] == c and f["what"] == workload]
            return "FAILED" if failed else "–"
        text = fmt(v)
        if n < self.rounds:
            text += f" (n={n})"
        if ratio and self.baseline and c != self.baseline:
            b, _ = self.res.median(part, self.baseline, workload, metric)
            if b:
                text += f" ({fmt_ratio(v / b)})"
        return text

    def render(self, columns):
        """columns: list of (header, workload, metric[, options]); options
        are cell()'s keyword arguments (fmt, ratio)."""
        out = ["| contender | " + " | ".join(col[0] for col in columns) + " |",
               "| --- |" + " ---: |" * len(columns)]
        for c in self.contenders:
            name = LABEL.get(c, c)
            if c == self.baseline:
                name = f"**{name}** (baseline)"
            why = self.status(c)
            if why:
                out.append(f"| {name} | {why} |" + " |" * (len(columns) - 1))
                continue
            out.append(f"| {name} | " + " | ".join(self.cell(c, *col[1:3], **(col[3] if len(col) > 3 else {}))
                                                   for col in columns) + " |")
        return "\n".join(out)


def evaluate_goals(res):
    """GOALS against this run's medians: one dict per goal and contender of
    ours (the busy-polling variant only if it has data); "met" is True,
    False, or None when a value is missing."""
    out = []
    for g in GOALS:
        part, w, m, other = g.get("part", "blk"), g["workload"], g["metric"], g["against"]
        o, on = res.median(part, other, w, m)
        for c, polling in GOAL_OURS[part]:
            if polling and not any(r["contender"] == c for r in res.rows):
                continue
            v, n = res.median(part, c, w, m)
            ratio = v / o if v is not None and o else None
            op, x = g["ratio"]
            checks = [None if ratio is None else GOAL_OPS[op][0](ratio, x)]
            target = f"{GOAL_OPS[op][1]} {fmt_ratio(x)}"
            limit = None
            if "limit" in g:
                lop, lx, unit = g["limit"]
                limit = {"op": lop, "value": lx, "unit": unit}
                checks.insert(0, None if v is None else GOAL_OPS[lop][0](v, lx))
                target = f"{GOAL_OPS[lop][1]} {fmt_num(lx)} {unit} and {target}"
            met = False if False in checks else None if None in checks else True
            out.append({"goal": g["goal"], "part": part, "workload": w, "metric": m,
                        "contender": c, "busy_polling": polling, "value": v, "rounds": n,
                        "against": other, "against_value": o, "against_rounds": on,
                        "ratio": ratio, "target_ratio": {"op": op, "value": x}, "target_limit": limit,
                        "target": target, "met": met})
    return out


def render_goals(res, rounds, not_run):
    """The goals table, from evaluate_goals."""
    t = Table(res, None, [], None, rounds, not_run)

    def value(c, part, w, m):
        if res.median(part, c, w, m)[0] is None and t.status(c):
            return t.status(c).split(":")[0]  # the reason is under "Failures and skips"
        return t.cell(c, w, m)

    out = ["| goal | contender | value | compared with | its value | ratio | target | met? |",
           "| --- | --- | ---: | --- | ---: | ---: | --- | --- |"]
    for r in evaluate_goals(res):
        met = {True: "met", False: "not met", None: "– (no data)"}[r["met"]]
        out.append(f"| {r['goal']} | {LABEL.get(r['contender'], r['contender'])} | "
                   f"{value(r['contender'], r['part'], r['workload'], r['metric'])} | "
                   f"{LABEL.get(r['against'], r['against'])} | "
                   f"{value(r['against'], r['part'], r['workload'], r['metric'])} | "
                   f"{fmt_ratio(r['ratio']) if r['ratio'] is not None else '–'} | {r['target']} | {met} |")
    return "\n".join(out)


def render_setup_steps(res, rounds):
    """The section on where the adapter's set-up time goes, or "" if the
    run has nothing for it (no step of any contender, no program start)."""
    info = res.info
    start_ms = info_ms(info, "exec_us_adapter")
    ids = [c for c in VL_SETUP
           if any(r["contender"] == c and r["workload"] == "setup" for r in res.rows)]
    has_steps = any(res.values(PART[c], c, "setup", m) for c in ids for _, m in SETUP_STEPS)
    if not ids or not (has_steps or start_ms is not None):
        return ""
    L = ["## Set-up, step by step (ms)", ""]
    L.append("The virtio-loopback contenders' set-up, from the adapter's info line (`set-up: back-end "
             "connected … ms, …`): each step's end in ms since the adapter's main() began; "
             "*rings handed over* may come after the node is there, as the driver's probe does not "
             "wait for it. *process start* is not in that line: it is measured separately, once per "
             "run, as the median of 7 starts of `virtio-loopback-adapter --version` (fork, exec, "
             "dynamic linking, exit), so it is the same in every row. *node/driver ready (total)* is "
             "the set-up time of the tables above (from starting the adapter until the block device, "
             "the evdev node, virtio_rng as the current hwrng, or both network interfaces are there; "
             "vl-net's adapter sets up two devices, and its line is the second's).")
    L.append("")
    t = Table(res, None, ids, None, rounds)
    cols = [("process start", None, fmt_num(start_ms))]
    cols += [(words, "setup", metric) for words, metric in SETUP_STEPS]
    cols.append(("node/driver ready (total)", "setup", "setup_ms"))
    L.append(t.render(cols))
    L.append("")
    starts = []
    for key, what, c in [("exec_us_true", "`/bin/true`", None),
                         ("exec_us_losetup", "`losetup --version`", "loop"),
                         ("exec_us_vdpa", "`vdpa --version`", "vduse")]:
        ms = info_ms(info, key)
        if ms is None:
            continue
        text = f"{what} {fmt_num(ms)} ms"
        total, _ = res.median("blk", c, "setup", "setup_ms") if c else (None, 0)
        if total:
            text += f" ({100 * ms / total:.0f}% of `{c}`'s set-up, {fmt_num(total)} ms)"
        starts.append(text)
    if starts:
        L.append("Starting a program, measured the same way (median of 7 starts): " + "; ".join(starts) +
                 ". That much of every contender's set-up (loop's `losetup`, VDUSE's `vdpa dev add`, "
                 "our adapter) is only starting a program under emulation.")
        L.append("")
    return "\n".join(L)


def workload_columns(workloads, metrics):
    """Table columns, metrics (header, metric) for each workload in turn; a
    workload's first header is prefixed with its name."""
    return [((f"{LABEL[w]}: {h}" if i == 0 else h), w, m)
            for w in workloads for i, (h, m) in enumerate(metrics)]


def pick_baseline(res, part, preferred):
    for c in preferred:
        if res.ok.get((part, c)) and any(r["part"] == part and r["contender"] == c for r in res.rows):
            return c
    return None


def markdown(res, run, rounds, plot_name):
    info = res.info
    L = []
    L.append("# virtio-loopback benchmarks")
    L.append("")
    L.append("Generated by `make bench` (benchmarks/run.sh, benchmarks/report.py); "
             "see [benchmarks/README.md](../../benchmarks/README.md). "
             "**Medians of the rounds; ratios are each contender's median divided by "
             "the baseline's (marked).** For IOPS and MB/s higher is better; for latency, "
             "CPU time and set-up time lower is better.")
    L.append("")
    L.append("| | |")
    L.append("| --- | --- |")
    rows = [
        ("command", f"`{run.get('command', '?')}`"),
        ("date", run.get("date", "?")),
        ("source", f"{run.get('git_commit', '?')}{' (with uncommitted changes)' if run.get('git_dirty') == '1' else ''}"),
        ("host", f"{run.get('host_cpu', '?')}, {run.get('host_cpus', '?')} CPUs, kernel {run.get('host_kernel', '?')}; "
                 f"load average at start {run.get('loadavg_start', '?')}, at end {run.get('loadavg_end', '?')}"),
        ("guest", f"kernel {info.get('kernel', '?')}, {info.get('vcpus', '?')} vCPUs "
                  f"(`-cpu max`: {info.get('cpu_model', '?')}), {info.get('mem_mib', '?')} MiB; "
                  f"**QEMU TCG software emulation** ({run.get('qemu_version', '?')}): "
                  "absolute numbers are 10-50x below real hardware and noisy, compare within the run only"),
        ("rounds", f"{rounds}, interleaved: each round sets up every contender in turn (order rotated "
                   "every round), runs all its workloads, tears it down"),
        ("backing store", "one 256 MiB file in the guest's tmpfs (/tmp) for every block contender; "
                          f"one queue each; qemu-storage-daemon and qemu-nbd use `cache.direct=on`/`--cache=none`, "
                          f"`aio={info.get('qemu_aio', '?')}`; our vhost-user-blk `--direct` (`--io=auto`: on tmpfs its queue thread does the I/O itself)"),
        ("fio", f"{info.get('fio_version', '?')}, {info.get('runtime', '?')} s per workload after "
                f"{info.get('ramp_ms', '?')} ms ramp"),
        *([("busy-polling", f"the *busy-polling* contenders' back-ends run with `--poll-us={info['poll_us']}`: "
                            "after the last request a queue's thread keeps looking for work that long "
                            "before it sleeps (a CPU kept busy meanwhile)")] if "poll_us" in info else []),
        ("run time", f"{run.get('total_seconds', '?')} s in all (after the build): "
                     f"host-side {run.get('host_seconds', '?')} s, guest {run.get('vm_seconds', '?')} s "
                     f"(vm-run exit status {run.get('vm_status', '?')})"),
        ("guest kernel log", f"{info.get('kernel_log_problems', '?')} lines with BUG/WARNING/Oops/hung task/I/O error "
                             "during the run (guest/dmesg.txt of the run folder)"),
    ]
    for k, v in rows:
        L.append(f"| {k} | {v} |")
    L.append("")
    if run.get("vm_status") not in (None, "0"):
        L.append(f"**The guest run did not finish normally (vm-run exit status {run.get('vm_status')}); "
                 "the tables hold what was recorded before that.**")
        L.append("")
    L.append(f"![plot]({plot_name})")
    L.append("")

    # Contenders left out on purpose (BENCH_CONTENDERS, --no-host, --no-guest)
    if run.get("vm_status") == "skipped":
        guest_not_run = {c: "not run (--no-guest)" for c, _ in GUEST_CONTENDERS}
    elif "contenders" in info:
        chosen = info["contenders"].split()
        guest_not_run = {c: "not run (not in BENCH_CONTENDERS)" for c, _ in GUEST_CONTENDERS
                         if c not in chosen}
    else:
        guest_not_run = {}
    host_not_run = ({c: "not run (--no-host)" for c, _ in HOST}
                    if run.get("host_seconds") == "skipped" else {})

    # Goals
    L.append("## Goals")
    L.append("")
    L.append("The project's goals, checked against this run's medians: *ratio* is the contender's "
             "median divided by the one it is compared with. The busy-polling variants (if they ran) "
             "get rows of their own beside the default back-ends; they buy latency with a busy CPU.")
    L.append("")
    L.append(render_goals(res, rounds, guest_not_run))
    L.append("")

    # Block devices
    blk_ids = [c for c, _ in BLK]
    base = pick_baseline(res, "blk", ["vl-blk", "vl-qsd"])
    t = Table(res, "blk", blk_ids, base, rounds, guest_not_run)
    L.append("## Block devices in the guest")
    L.append("")
    if base != "vl-blk":
        why = (guest_not_run.get("vl-blk") or res.skipped.get(("blk", "vl-blk"))
               or "see the failures")
        L.append(f"Our vhost-user-blk did not run: {why}. Ratios "
                 f"are against {LABEL.get(base, base) if base else 'nothing (no virtio-loopback contender ran)'}.")
        L.append("")
    L.append("### 4k IOPS")
    L.append("")
    L.append(t.render([(LABEL[w], w, "iops") for w in IOPS_WORKLOADS]))
    L.append("")
    L.append("### 4k random read QD1: completion latency (us)")
    L.append("")
    L.append(t.render([("p50", "randread-4k-qd1", "clat_p50_us"), ("p99", "randread-4k-qd1", "clat_p99_us")]))
    L.append("")
    L.append("### Throughput (MB/s, 10^6 bytes/s)")
    L.append("")
    L.append(t.render([(LABEL[w], w, "mbps") for w in MBPS_WORKLOADS]))
    L.append("")
    L.append("### CPU time per I/O (us)")
    L.append("")
    L.append("*guest*: all CPU time of the guest (every process, kernel threads, interrupts: the "
             "back-ends too) in the steady state of the run, from /proc/stat, divided by the I/Os; "
             "*fio*: fio's own usr+sys from its JSON (misses the back-end and kernel threads).")
    L.append("")
    L.append(t.render(workload_columns(
        ["randread-4k-qd1", "randread-4k-qd32", "randwrite-4k-qd32", "seqread-1m-qd4"],
        [("guest", "guest_cpu_us_per_io"), ("fio", "fio_cpu_us_per_io")])))
    L.append("")
    vl_ids = [c for c in blk_ids if c.startswith("vl-")]
    if any(res.values("blk", c, "randread-4k-qd1", "kicks_per_io") for c in vl_ids):
        L.append("### virtio-loopback's transport, per I/O")
        L.append("")
        L.append("From the transport's debugfs counters around each fio run: kicks (the kick "
                 "eventfd signalled), interrupts (vring interrupts run from the call eventfd), "
                 "and the kernel's time in the DMA operations, copies included (*DMA*) and in "
                 "the bounce copies alone (*copy*). The counters include fio's ramp; the I/O "
                 "count does not, so per-I/O figures run a little high.")
        L.append("")
        vt = Table(res, "blk", vl_ids, base, rounds, guest_not_run)
        vl_workloads = ["randread-4k-qd1", "randread-4k-qd32", "seqread-1m-qd4"]
        L.append(vt.render(workload_columns(vl_workloads, [
            ("kicks", "kicks_per_io"), ("interrupts", "interrupts_per_io"),
            ("DMA us", "dma_us_per_io"), ("copy us", "bounce_us_per_io")])))
        L.append("")

        def seen(metric, nonzero=False):
            """Whether any run has the metric (a nonzero value of it)."""
            return any(v != 0 or not nonzero for c in vl_ids for w in vl_workloads
                       for v in res.values("blk", c, w, metric))
        if seen("maps_per_io") or seen("bounce_kib_per_io"):
            window = [("maps", "maps_per_io"), ("bounced KiB", "bounce_kib_per_io")]
            notes = ["*maps*: DMA mappings into the window (virtio-blk maps each segment of a "
                     "request), *bounced KiB*: bytes copied through the window both ways, in KiB"]
            if seen("map_failures_per_io", nonzero=True):
                window.append(("map failures", "map_failures_per_io"))
                notes.append("*map failures*: mappings the window refused (no free range in it, or one too large)")
            if seen("page_failures_per_io", nonzero=True):
                window.append(("page failures", "page_failures_per_io"))
                notes.append("*page failures*: bounce pages that could not be allocated")
            if seen("zc_pages_per_io"):
                window.append(("zero-copy pages", "zc_pages_per_io"))
                notes.append("*zero-copy pages*: pages the back-end reached without a bounce copy "
                             "(the transport's `zc_pages` counter)")
            L.append("The window, per I/O: " + "; ".join(notes) + ". The bounce pages allocated "
                     "so far (a level, not per I/O) are in results.json as `bounce_pages`.")
            L.append("")
            L.append(vt.render(workload_columns(vl_workloads, window)))
            L.append("")
    L.append("### Set-up time (ms)")
    L.append("")
    L.append("From starting the set-up command (virtio-loopback-adapter with the back-end already "
             "listening; `vdpa dev add` with qemu-storage-daemon already running; `losetup`; "
             "`qemu-nbd -c`; `modprobe null_blk`) to the block device node being there "
             "(polled every 2 ms).")
    L.append("")
    L.append(t.render([("set-up", "setup", "setup_ms")]))
    L.append("")

    # Input
    L.append("## Input events in the guest")
    L.append("")
    L.append("`vinput-latency`: one key event plus SYN_REPORT per sample, from the write (a line "
             "into vhost-user-input's `--synthetic` FIFO, or to /dev/uinput) until read(2) on the "
             "evdev node returns the SYN_REPORT; *kernel* is until the input core's timestamp.")
    L.append("")
    ti = Table(res, "input", [c for c, _ in INPUT], pick_baseline(res, "input", ["vl-input"]), rounds, guest_not_run)
    L.append(ti.render([("p50 (us)", "input-latency", "p50_us"), ("p99 (us)", "input-latency", "p99_us"),
                        ("kernel p50 (us)", "input-latency", "kernel_p50_us"),
                        ("lost events", "input-latency", "lost"), ("set-up (ms)", "setup", "setup_ms")]))
    L.append("")

    # rng
    L.append("## Entropy in the guest")
    L.append("")
    L.append("`vl-read-rate DEVICE SECONDS 65536`: bytes read in that time; *longest read* is the "
             "longest single read(2) (a stalling device shows here).")
    L.append("")
    tr = Table(res, "rng", [c for c, _ in RNG], pick_baseline(res, "rng", ["vl-rng"]), rounds, guest_not_run)
    L.append(tr.render([("MB/s", "rng-read", "mbps"), ("longest read (ms)", "rng-read", "longest_read_ms"),
                        ("set-up (ms)", "setup", "setup_ms")]))
    L.append("")

    # Network
    L.append("## Network in the guest")
    L.append("")
    L.append("Two interfaces, one of them moved into a network namespace; `iperf3` from the root "
             "namespace to its server in the other, "
             f"{info.get('net_seconds', '?')} s per workload. *vl-net*: two virtio-loopback "
             "virtio-net devices whose back-ends are the two vhost ports of one `dpdk-testpmd` "
             "forwarding between them (io mode, one queue pair each; its forwarding core busy-polls "
             "one of the guest's vCPUs all along); *veth*: a veth pair. **Ratios are against the "
             "veth pair of the same run.** *TCP*: one stream, Gbit/s (10^9 bit/s) as received. "
             "*UDP 64 B*: 64-byte datagrams sent as fast as iperf3 can (`-b 0`): packets per "
             "second received (sent minus lost, as the receiver counted), sent, and the share "
             "lost. *set-up*: from starting the adapter (testpmd already listening) or `ip link add` "
             "until both interfaces exist.")
    L.append("")
    tn = Table(res, "net", [c for c, _ in NET], pick_baseline(res, "net", ["veth"]), rounds, guest_not_run)
    three_digits = {"fmt": lambda v: f"{v:.3g}" if abs(v) < 1 else fmt_num(v)}
    no_ratio = {"ratio": False}
    L.append(tn.render([("TCP Gbit/s", "tcp", "gbps", three_digits),
                        ("TCP retransmits", "tcp", "retransmits", no_ratio),
                        ("UDP 64 B received packets/s", "udp-64", "pps"),
                        ("UDP 64 B sent packets/s", "udp-64", "sent_pps"),
                        ("UDP 64 B lost %", "udp-64", "loss_pct", no_ratio),
                        ("set-up (ms)", "setup", "setup_ms")]))
    L.append("")

    # Set-up, step by step
    steps_md = render_setup_steps(res, rounds)
    if steps_md:
        L.append(steps_md)

    # Host
    L.append("## Host side, no kernel: vhost-user-blk back-ends driven by the user-space test driver")
    L.append("")
    L.append("`vl-host-bench` (benchmarks/host_bench.cpp, on tests/driver's vl_test_driver) on the "
             "host itself (no emulation, shared with whatever else runs there), one queue, the "
             f"same workloads, {run.get('host_seconds_per_workload', '?')} s each, on a 256 MiB file "
             "in the host's /dev/shm with O_DIRECT. *back-end CPU* is the back-end process's "
             "user+system time per I/O.")
    L.append("")
    hb = pick_baseline(res, "host", ["ours", "qsd"])
    th = Table(res, "host", [c for c, _ in HOST], hb, rounds, host_not_run)
    L.append(th.render([(LABEL[w] + (" IOPS" if w in IOPS_WORKLOADS else " MB/s"), w,
                         "iops" if w in IOPS_WORKLOADS else "mbps") for w, _ in FIO]))
    L.append("")
    L.append(th.render([("QD1 p50 (us)", "randread-4k-qd1", "lat_p50_us"),
                        ("QD1 p99 (us)", "randread-4k-qd1", "lat_p99_us"),
                        ("back-end CPU/IO QD1 (us)", "randread-4k-qd1", "backend_cpu_us_per_io"),
                        ("back-end CPU/IO QD32 (us)", "randread-4k-qd32", "backend_cpu_us_per_io"),
                        ("back-end CPU/IO 1M read (us)", "seqread-1m-qd4", "backend_cpu_us_per_io")]))
    L.append("")

    # Failures
    L.append("## Failures and skips")
    L.append("")
    if not res.failures and not res.skipped:
        L.append("None.")
    for (part, c), why in sorted(res.skipped.items()):
        L.append(f"- {part} / {LABEL.get(c, c)}: {why}")
    for f in res.failures:
        L.append(f"- {f['part']} / {LABEL.get(f['contender'], f['contender'])}, round {f['round']}, "
                 f"{f['what']}: {f['reason']}")
    L.append("")

    # Commands
    L.append("## Commands")
    L.append("")
    L.append("```")
    L.append(info.get("fio_common", "?"))
    for w, _ in FIO:
        L.append(f"  {w}: {info.get('fio_job_' + w, '?')}")
    L.append(info.get("dd_command", "?"))
    L.append(info.get("input_command", "?"))
    L.append(info.get("rng_command", "?"))
    if "net_command" in info:
        L.append(info["net_command"])
    for c, _ in GUEST_CONTENDERS:
        if "setup_" + c in info:
            L.append(f"{c}: {info['setup_' + c]}")
    for c, _ in HOST:
        if "host_setup_" + c in info:
            L.append(f"host {c}: {info['host_setup_' + c]}")
    if "host_bench_command" in info:
        L.append("host: " + info["host_bench_command"])
    L.append("```")
    L.append("")

    # Raw values
    L.append("## Every round")
    L.append("")
    L.append("<details><summary>values per round (also in results.json)</summary>")
    L.append("")
    L.append("| part | contender | workload | metric | " +
             " | ".join(f"round {r}" for r in range(1, rounds + 1)) + " |")
    L.append("| --- | --- | --- | --- |" + " ---: |" * rounds)
    keys = []
    for r in res.rows:
        k = (r["part"], r["contender"], r["workload"], r["metric"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        per = {r["round"]: r["value"] for r in res.rows
               if (r["part"], r["contender"], r["workload"], r["metric"]) == k}
        L.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | " +
                 " | ".join(fmt_num(per.get(i)) for i in range(1, rounds + 1)) + " |")
    L.append("")
    L.append("</details>")
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------
# Plot (gnuplot, SVG)
# ---------------------------------------------------------------------------
def plot(res, run, rounds, path):
    tmp = tempfile.mkdtemp(prefix="vl-bench-plot.")
    panels = []

    def datafile(name, part, contenders, columns):
        """columns: (label, workload, metric[, scale]); one row per column,
        one data column per contender (median times scale, '?' if none)."""
        ran = [c for c in contenders if any(r["part"] == part and r["contender"] == c for r in res.rows)]
        if not ran:
            return None, []
        f = os.path.join(tmp, name + ".dat")
        with open(f, "w", encoding="utf-8") as out:
            out.write("x " + " ".join(f'"{LABEL.get(c, c)}"' for c in ran) + "\n")
            for label, w, m, *scale in columns:
                vals = []
                for c in ran:
                    v, _ = res.median(part, c, w, m)
                    v = v * scale[0] if v and scale else v
                    vals.append(f"{v:.6g}" if v and v > 0 else "?")
                out.write(f'"{label}" ' + " ".join(vals) + "\n")
        return f, ran

    blk = [c for c, _ in BLK]
    specs = [
        ("iops", "Guest: 4k IOPS (log)", "blk", blk, [(LABEL[w], w, "iops") for w in IOPS_WORKLOADS], True),
        ("mbps", "Guest: MB/s (log)", "blk", blk,
         [(LABEL[w].replace(" seq", "").replace(", direct", ""), w, "mbps") for w in MBPS_WORKLOADS], True),
        ("lat", "Guest: 4k read QD1 latency, us (log)", "blk", blk,
         [("p50", "randread-4k-qd1", "clat_p50_us"), ("p99", "randread-4k-qd1", "clat_p99_us")], True),
        ("setup", "Set-up time, ms (log)", "blk", blk, [("block device", "setup", "setup_ms")], True),
        ("input", "Guest: input event latency, us (log)", "input", [c for c, _ in INPUT],
         [("p50", "input-latency", "p50_us"), ("p99", "input-latency", "p99_us")], True),
        ("host", "Host, no kernel: MB/s (log)", "host", [c for c, _ in HOST],
         [(LABEL[w].replace(" seq", ""), w, "mbps") for w, _ in FIO], True),
        ("net", "Guest: network (log)", "net", [c for c, _ in NET],
         [("TCP Mbit/s", "tcp", "gbps", 1000), ("UDP 64 B, kpackets/s received", "udp-64", "pps", 0.001)],
         True),
    ]
    for name, title, part, contenders, columns, log in specs:
        f, ran = datafile(name, part, contenders, columns)
        if f:
            panels.append((f, title, len(ran), log))

    cmd = run.get("command", "make bench")
    header = (f"virtio-loopback benchmarks, {run.get('date', '?')}: {cmd}\\n"
              f"guest kernel {res.info.get('kernel', '?')} under QEMU TCG (software emulation), "
              f"{res.info.get('vcpus', '?')} vCPUs; host CPU {run.get('host_cpu', '?')}, "
              f"kernel {run.get('host_kernel', '?')}\\n"
              f"medians of {rounds} rounds; absolute numbers are emulated, compare within one run only")
    plot_rows = max(3, (len(panels) + 1) // 2)
    script = [
        os.environ.get("BENCH_PLOT_TERMINAL",  # e.g. "pngcairo size 1500,1500" for a preview
                       f"set terminal svg size 1500,{500 * plot_rows} dynamic enhanced font 'sans,11' "
                       "background '#ffffff'"),
        f"set output '{path}'",
        "set datafile missing '?'",
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set key top left font ',9' noenhanced opaque",
        "set offsets 0, 0, graph 0.3, 0",
        "set format y '%.0s%c'",
        "set xtics noenhanced font ',9'",
        "set grid ytics",
        "set yrange [*:*]",
        f"set multiplot layout {plot_rows},2 title \"{header}\" noenhanced font ',12'",
    ]
    for f, title, n, log in panels:
        script.append(f"set title \"{title}\" noenhanced")
        script.append("set xtics rotate by -20" if n and "host" in f else "set xtics norotate")
        script.append("set logscale y" if log else "unset logscale y")
        script.append(f"plot for [i=2:{n + 1}] '{f}' using i:xtic(1) title columnheader(i)")
    script.append("unset multiplot")
    gp = os.path.join(tmp, "plot.gp")
    with open(gp, "w", encoding="utf-8") as out:
        out.write("\n".join(script) + "\n")
    try:
        subprocess.run(["gnuplot", gp], check=True, capture_output=True, text=True)
    except FileNotFoundError:
        return "gnuplot is not installed (Debian package gnuplot-nox)"
    except subprocess.CalledProcessError as e:
        return f"gnuplot failed: {e.stderr.strip()[-500:]}"
    return None


def main():
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    if len(sys.argv) != 3:
        sys.exit("usage: report.py RUN_DIR OUT_DIR")
    run_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    run = {r[0]: r[1] for r in read_tsv(os.path.join(run_dir, "run-info.tsv")) if len(r) >= 2}
    res = Results()
    collect_guest(res, os.path.join(run_dir, "guest"))
    collect_host(res, os.path.join(run_dir, "host"))
    rounds = int(res.info.get("rounds", run.get("rounds", "3")))

    plot_path = os.path.join(out_dir, "results.svg")
    plot_error = plot(res, run, rounds, plot_path)
    md = markdown(res, run, rounds, "results.svg")
    if plot_error:
        md = md.replace("![plot](results.svg)", f"(no plot: {plot_error})")
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(md)

    medians = []
    keys = []
    for r in res.rows:
        k = (r["part"], r["contender"], r["workload"], r["metric"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        v, n = res.median(*k)
        medians.append({"part": k[0], "contender": k[1], "workload": k[2], "metric": k[3],
                        "median": v, "rounds": n})
    doc = {
        "run": run,
        "guest": res.info,
        "contenders": {c: name for c, name in GUEST_CONTENDERS + HOST},
        "skipped": [{"part": p, "contender": c, "reason": why} for (p, c), why in res.skipped.items()],
        "failures": res.failures,
        "medians": medians,
        "goals": evaluate_goals(res),
        "values": res.rows,
    }
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"report: {os.path.join(out_dir, 'results.md')}, results.json"
          + (f", results.svg" if not plot_error else f" (no plot: {plot_error})"))


if __name__ == "__main__":
    main()
