#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# The guest half of `make bench` (run by benchmarks/run.sh through
# scripts/vm-run on the 6.12 kernel): sets up every contender in turn on
# the same 256 MiB file in tmpfs, runs the workloads on it and tears it
# down, round after round (the order rotates each round, so drift hits
# every contender alike). It only records: raw fio JSON, dd and rng byte
# counts, set-up times and failures go to OUT (a writable share);
# benchmarks/report.py on the host turns them into tables.
#
#   guest.sh OUT
#
# Environment (run.sh sets them): VL_BUILD_DIR, BENCH_ROUNDS (3),
# BENCH_RUNTIME (fio seconds, whole, 3), BENCH_RAMP_MS (fio ramp, 500),
# BENCH_CONTENDERS (space-separated subset, default all), BENCH_QEMU_AIO
# (io_uring), BENCH_INPUT_EVENTS (500), BENCH_RNG_SECONDS (2),
# BENCH_POLL_US (1000), BENCH_NET_SECONDS (iperf3 seconds, 3).
#
# OUT/records.tsv, one record a line, tab-separated:
#   info   KEY VALUE
#   ok     ROUND CONTENDER                      (set up fine)
#   skip   ROUND CONTENDER REASON               (not built)
#   fail   ROUND CONTENDER WHAT REASON          (set-up or a workload failed)
#   setup  ROUND CONTENDER MICROSECONDS
#   setup_steps ROUND CONTENDER TEXT           (the adapter's "set-up:" line)
#   fio    ROUND CONTENDER WORKLOAD JSON-FILE CPU-FILE
#   bytes  ROUND CONTENDER WORKLOAD BYTES SECONDS    (dd)
#   rng    ROUND CONTENDER JSON-FILE                 (vl-read-rate)
#   input  ROUND CONTENDER JSON-FILE
#   net    ROUND CONTENDER WORKLOAD JSON-FILE        (iperf3 -J)
set -u
umask 022

OUT=${1:?usage: guest.sh OUT}
SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${VL_BUILD_DIR:-$SRC_DIR/build}
BIN=$BUILD_DIR/bin
MODULE=$BUILD_DIR/modules/$(uname -r)/virtio_loopback.ko
ROUNDS=${BENCH_ROUNDS:-3}
RUNTIME=${BENCH_RUNTIME:-3}
RAMP_MS=${BENCH_RAMP_MS:-500}
QEMU_AIO=${BENCH_QEMU_AIO:-io_uring}
INPUT_EVENTS=${BENCH_INPUT_EVENTS:-500}
RNG_SECONDS=${BENCH_RNG_SECONDS:-2}
POLL_US=${BENCH_POLL_US:-1000}
NET_SECONDS=${BENCH_NET_SECONDS:-3}
ALL_BLK="vl-blk vl-blk-bounce vl-blk-poll vl-qsd vduse loop nbd null_blk vl-null"
ALL_INPUT="vl-input vl-input-poll uinput"
ALL_RNG="vl-rng urandom"
ALL_NET="vl-net veth"
CONTENDERS=${BENCH_CONTENDERS:-"$ALL_BLK $ALL_INPUT $ALL_RNG $ALL_NET"}

IMG=/tmp/bench-disk.img
IMG_MIB=256
DD_MIB=64
RUN=/run/bench
RAW=$OUT/raw
LOGS=$OUT/logs
REC=$OUT/records.tsv
mkdir -p "$RUN" "$RAW" "$LOGS" /run/lock || exit 1
: >"$REC"

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
# Sleeping without a fork (for tight polls): read with a timeout on a pipe
# nobody writes to.
[[ -e /dev/fd ]] || ln -s /proc/self/fd /dev/fd # no udev, no /dev/fd here
exec {SLEEP_FD}<> <(:)
msleep() { read -r -t "$1" -u "$SLEEP_FD" _ || :; }
now_us() { echo $((${EPOCHREALTIME/./})); }
T_START=$(now_us)
elapsed() { echo $((($(now_us) - T_START) / 1000000)); }

record() { (IFS=$'\t'; echo "$*") >>"$REC"; }
say() { echo "bench [$(printf '%4d' "$(elapsed)")s] $*"; }

# poll_until SECONDS 'condition': polls every 2 ms; 1 if it never held.
poll_until() {
	local deadline=$(($(now_us) + $1 * 1000000))
	until eval "$2"; do
		(($(now_us) < deadline)) || return 1
		msleep 0.002
	done
}

# The block device of the one virtio_blk device there is (none else exist
# in this guest while a contender runs): sets VBLK.
virtio_disk_present() {
	local d
	for d in /sys/bus/virtio/drivers/virtio_blk/virtio*/block/*; do
		[[ -e $d ]] || continue
		VBLK=${d##*/}
		[[ -b /dev/$VBLK ]] && return 0
	done
	return 1
}
no_virtio_disk() { ! compgen -G '/sys/bus/virtio/drivers/virtio_blk/virtio*/block/*' >/dev/null; }

# The last lines of a log, on one line, for a failure reason.
log_tail() { [[ -s $1 ]] && tail -n 3 "$1" | tr '\n\t' '  ' | cut -c1-300; }

# Stops a process we started (TERM, then KILL after 10 s) and reaps it.
stop_pid() {
	local pid=$1
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	local i
	for ((i = 0; i < 1000; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		msleep 0.01
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

modprobe_once() { # modules...; remembers failures
	local m
	for m in "$@"; do
		[[ -d /sys/module/$m ]] && continue
		modprobe "$m" 2>>"$LOGS/modprobe.log" || return 1
	done
}

# ---------------------------------------------------------------------------
# Contenders. setup_X sets DEV (a block device, or an evdev node) and the
# set-up time SETUP_US, or prints a reason on stdout and returns 1 (2 for
# "skipped: not built"). teardown_X undoes it, whatever state setup left.
# ---------------------------------------------------------------------------
BACKEND_PID=
ADAPTER_PID=
LOG=

start_adapter() { # socket type; times until `condition` holds
	local t0
	t0=$(now_us)
	# Info level: its "set-up:" line says when each step ended.
	# ADAPTER_ARGS: the contender's own device options.
	"$BIN/virtio-loopback-adapter" -s "$1" -d "$2" ${ADAPTER_ARGS:-} -l info >>"$LOG" 2>&1 &
	ADAPTER_PID=$!
	poll_until 60 "$3" || { echo "no device appeared within 60 s: $(log_tail "$LOG")"; return 1; }
	SETUP_US=$(($(now_us) - t0))
	# The line may come a moment after the node: the adapter logs it once
	# it has handed the rings over, which the driver's probe does not wait for.
	poll_until 5 "grep -q 'set-up: ' '$LOG'"
	SETUP_STEPS=$(sed -n 's/.*set-up: //p' "$LOG" | tail -n 1)
}

vl_ready() {
	[[ -n ${VL_LOADED:-} ]] && return 0
	[[ -f $MODULE ]] || { echo "module not built for $(uname -r): $MODULE"; return 1; }
	insmod "$MODULE" 2>>"$LOGS/modprobe.log" || { echo "insmod $MODULE failed: $(log_tail "$LOGS/modprobe.log")"; return 1; }
	VL_LOADED=1
}

wait_socket() { # path pid
	poll_until 30 "[[ -S $1 ]] || ! kill -0 $2 2>/dev/null"
	[[ -S $1 ]] || { echo "the back-end did not create $1: $(log_tail "$LOG")"; return 1; }
}

vl_blk_setup() { # back-end command...
	vl_ready || return 1
	modprobe_once virtio_blk || { echo "modprobe virtio_blk failed"; return 1; }
	rm -f "$RUN/blk.sock"
	"$@" >>"$LOG" 2>&1 &
	BACKEND_PID=$!
	wait_socket "$RUN/blk.sock" "$BACKEND_PID" || return 1
	start_adapter "$RUN/blk.sock" blk virtio_disk_present || return 1
	DEV=/dev/$VBLK
}
vl_teardown() {
	stop_pid "$ADAPTER_PID"
	ADAPTER_PID=
	stop_pid "$BACKEND_PID"
	BACKEND_PID=
}

setup_vl-blk() {
	[[ -x $BIN/vhost-user-blk ]] || { echo "skipped: not built ($BIN/vhost-user-blk)"; return 2; }
	vl_blk_setup "$BIN/vhost-user-blk" -s "$RUN/blk.sock" -b "$IMG" --num-queues=1 --direct -l warn
}
teardown_vl-blk() { vl_teardown; poll_until 10 no_virtio_disk; }

# The same with every buffer bounced through the window (zero-copy off).
setup_vl-blk-bounce() {
	ADAPTER_ARGS=--zero-copy=off setup_vl-blk
}
teardown_vl-blk-bounce() { teardown_vl-blk; }

setup_vl-blk-poll() {
	[[ -x $BIN/vhost-user-blk ]] || { echo "skipped: not built ($BIN/vhost-user-blk)"; return 2; }
	vl_blk_setup "$BIN/vhost-user-blk" -s "$RUN/blk.sock" -b "$IMG" --num-queues=1 --direct \
		--poll-us="$POLL_US" -l warn
}
teardown_vl-blk-poll() { teardown_vl-blk; }

setup_vl-null() {
	[[ -x $BIN/vhost-user-blk ]] || { echo "skipped: not built ($BIN/vhost-user-blk)"; return 2; }
	vl_blk_setup "$BIN/vhost-user-blk" -s "$RUN/blk.sock" --null="${IMG_MIB}M" --num-queues=1 -l warn
}
teardown_vl-null() { teardown_vl-blk; }

QSD_FILE="driver=file,node-name=file,filename=$IMG,cache.direct=on,aio=$QEMU_AIO"
setup_vl-qsd() {
	vl_blk_setup qemu-storage-daemon --blockdev "$QSD_FILE" \
		--blockdev driver=raw,node-name=disk,file=file \
		--export "type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,addr.path=$RUN/blk.sock,writable=on,num-queues=1"
}
teardown_vl-qsd() { teardown_vl-blk; }

setup_vduse() {
	modprobe_once vdpa vduse virtio_vdpa virtio_blk ||
		{ echo "modprobe vdpa vduse virtio_vdpa virtio_blk failed: $(log_tail "$LOGS/modprobe.log")"; return 1; }
	command -v vdpa >/dev/null || { echo "the vdpa tool (Debian package iproute2) is missing"; return 1; }
	qemu-storage-daemon --blockdev "$QSD_FILE" \
		--blockdev driver=raw,node-name=disk,file=file \
		--export type=vduse-blk,id=exp,node-name=disk,name=benchvduse,num-queues=1,writable=on >>"$LOG" 2>&1 &
	BACKEND_PID=$!
	poll_until 30 "[[ -e /dev/vduse/benchvduse ]] || ! kill -0 $BACKEND_PID 2>/dev/null"
	[[ -e /dev/vduse/benchvduse ]] || { echo "qemu-storage-daemon created no VDUSE device: $(log_tail "$LOG")"; return 1; }
	local t0
	t0=$(now_us)
	vdpa dev add name benchvduse mgmtdev vduse >>"$LOG" 2>&1 || { echo "vdpa dev add failed: $(log_tail "$LOG")"; return 1; }
	VDPA_ADDED=1
	poll_until 60 virtio_disk_present || { echo "no disk appeared within 60 s"; return 1; }
	SETUP_US=$(($(now_us) - t0))
	DEV=/dev/$VBLK
}
teardown_vduse() {
	if [[ -n ${VDPA_ADDED:-} ]]; then
		vdpa dev del benchvduse >>"$LOG" 2>&1
		VDPA_ADDED=
	fi
	poll_until 10 no_virtio_disk
	stop_pid "$BACKEND_PID"
	BACKEND_PID=
}

setup_loop() {
	modprobe_once loop || { echo "modprobe loop failed"; return 1; }
	local t0
	t0=$(now_us)
	LOOP_DEV=$(losetup --direct-io=on --show -f "$IMG" 2>>"$LOG") || { echo "losetup failed: $(log_tail "$LOG")"; return 1; }
	poll_until 10 "[[ -b $LOOP_DEV ]]" || { echo "$LOOP_DEV did not appear"; return 1; }
	SETUP_US=$(($(now_us) - t0))
	DEV=$LOOP_DEV
	record info loop_dio "$(cat "/sys/block/${LOOP_DEV##*/}/loop/dio" 2>/dev/null || echo unknown)"
}
teardown_loop() {
	[[ -n ${LOOP_DEV:-} ]] && losetup -d "$LOOP_DEV" 2>>"$LOG"
	LOOP_DEV=
}

nbd_connected() { [[ -e /sys/block/nbd0/pid ]] && (($(cat /sys/block/nbd0/size) > 0)); }
setup_nbd() {
	modprobe_once nbd || { echo "modprobe nbd failed"; return 1; }
	command -v qemu-nbd >/dev/null || { echo "qemu-nbd (Debian package qemu-utils) is missing"; return 1; }
	local t0
	t0=$(now_us)
	# -c: qemu-nbd serves the image on a Unix socket (under /var/lock) and
	# connects the kernel's NBD client to it; it returns once connected.
	qemu-nbd -c /dev/nbd0 -f raw --cache=none --aio="$QEMU_AIO" "$IMG" >>"$LOG" 2>&1 ||
		{ echo "qemu-nbd -c failed: $(log_tail "$LOG")"; return 1; }
	NBD_UP=1
	poll_until 30 nbd_connected || { echo "/dev/nbd0 did not connect"; return 1; }
	SETUP_US=$(($(now_us) - t0))
	DEV=/dev/nbd0
}
teardown_nbd() {
	[[ -n ${NBD_UP:-} ]] && qemu-nbd -d /dev/nbd0 >>"$LOG" 2>&1
	NBD_UP=
	poll_until 10 "[[ ! -e /sys/block/nbd0/pid ]]"
}

setup_null_blk() {
	local t0
	t0=$(now_us)
	modprobe null_blk nr_devices=1 2>>"$LOG" || { echo "modprobe null_blk failed: $(log_tail "$LOG")"; return 1; }
	poll_until 10 "[[ -b /dev/nullb0 ]]" || { echo "/dev/nullb0 did not appear"; return 1; }
	SETUP_US=$(($(now_us) - t0))
	DEV=/dev/nullb0
}
teardown_null_blk() { rmmod null_blk 2>>"$LOG"; }

input_node() { # sets DEV to the evdev node of the virtio_input device
	local e
	for e in /sys/bus/virtio/drivers/virtio_input/virtio*/input/input*/event*; do
		[[ -e $e && -c /dev/input/${e##*/} ]] || continue
		DEV=/dev/input/${e##*/}
		return 0
	done
	return 1
}
setup_vl-input() { # [back-end option...]
	[[ -x $BIN/vhost-user-input ]] || { echo "skipped: not built ($BIN/vhost-user-input)"; return 2; }
	vl_ready || return 1
	modprobe_once evdev virtio_input || { echo "modprobe evdev virtio_input failed"; return 1; }
	rm -f "$RUN/input.sock" "$RUN/input.fifo"
	"$BIN/vhost-user-input" -s "$RUN/input.sock" --synthetic "$RUN/input.fifo" -l warn "$@" >>"$LOG" 2>&1 &
	BACKEND_PID=$!
	wait_socket "$RUN/input.sock" "$BACKEND_PID" || return 1
	poll_until 10 "[[ -p $RUN/input.fifo ]]" || { echo "vhost-user-input created no FIFO"; return 1; }
	start_adapter "$RUN/input.sock" input input_node || return 1
}
teardown_vl-input() {
	vl_teardown
	poll_until 10 "! input_node"
}
setup_vl-input-poll() { setup_vl-input --poll-us="$POLL_US"; }
teardown_vl-input-poll() { teardown_vl-input; }

setup_uinput() {
	modprobe_once evdev uinput || { echo "modprobe evdev uinput failed"; return 1; }
	[[ -c /dev/uinput ]] || { echo "/dev/uinput is missing"; return 1; }
	DEV=/dev/uinput
}
teardown_uinput() { :; }

rng_is_virtio() { [[ $(cat /sys/class/misc/hw_random/rng_current 2>/dev/null) == virtio_rng* ]]; }
setup_vl-rng() {
	[[ -x $BIN/vhost-user-rng ]] || { echo "skipped: not built ($BIN/vhost-user-rng)"; return 2; }
	vl_ready || return 1
	modprobe_once virtio_rng || { echo "modprobe virtio_rng failed"; return 1; }
	rm -f "$RUN/rng.sock"
	"$BIN/vhost-user-rng" -s "$RUN/rng.sock" -l warn >>"$LOG" 2>&1 &
	BACKEND_PID=$!
	wait_socket "$RUN/rng.sock" "$BACKEND_PID" || return 1
	start_adapter "$RUN/rng.sock" rng rng_is_virtio || return 1
	DEV=/dev/hwrng
}
teardown_vl-rng() {
	vl_teardown
	poll_until 10 "! rng_is_virtio"
}

setup_urandom() { DEV=/dev/urandom; }
teardown_urandom() { :; }

# Network: two interfaces, one moved into a network namespace, iperf3's
# server listening there; the client runs in the root namespace.
NET_NS=benchpeer
NET_HERE=10.99.0.1
NET_THERE=10.99.0.2
net_pair_up() { # here there
	NET_NS_UP=1
	# Two ip runs, not seven: starting a program costs 50-100 ms here.
	printf 'netns add %s\nlink set %s netns %s\naddr add %s/24 dev %s\nlink set %s up\n' \
		$NET_NS "$2" $NET_NS $NET_HERE "$1" "$1" | ip -batch - 2>>"$LOG" &&
		printf 'addr add %s/24 dev %s\nlink set %s up\nlink set lo up\n' $NET_THERE "$2" "$2" |
		ip -n $NET_NS -batch - 2>>"$LOG" || { echo "ip failed: $(log_tail "$LOG")"; return 1; }
	# Our child, not a daemon (-D): nothing reaps orphans in this guest, and
	# stop_pid would wait for a zombie.
	ip netns exec $NET_NS iperf3 -s -B $NET_THERE >>"$LOG" 2>&1 &
	IPERF_PID=$!
	# Both links up (the drivers bring them up asynchronously), the server listening.
	poll_until 20 "ping -c 1 -W 1 $NET_THERE >/dev/null 2>&1" || { echo "no ping reply from $NET_THERE"; return 1; }
	poll_until 20 "[[ -n \$(ip netns exec $NET_NS ss -Hltn 'sport = :5201') ]] || ! kill -0 $IPERF_PID" &&
		kill -0 $IPERF_PID 2>/dev/null || { echo "iperf3 -s is not listening: $(log_tail "$LOG")"; return 1; }
	DEV=$1
}
net_pair_down() {
	# Nothing to save: no need to wait for its SIGTERM handling.
	[[ -n ${IPERF_PID:-} ]] && { kill -KILL "$IPERF_PID" 2>/dev/null; wait "$IPERF_PID" 2>/dev/null; }
	IPERF_PID=
	[[ -n ${NET_NS_UP:-} ]] && ip netns del $NET_NS 2>>"$LOG"
	NET_NS_UP=
}

setup_veth() {
	local t0
	t0=$(now_us)
	ip link add benchv0 type veth peer name benchv1 2>>"$LOG" || { echo "ip link add veth failed: $(log_tail "$LOG")"; return 1; }
	VETH_UP=1
	poll_until 10 "[[ -e /sys/class/net/benchv1 ]]" || { echo "benchv1 did not appear"; return 1; }
	SETUP_US=$(($(now_us) - t0))
	net_pair_up benchv0 benchv1
}
teardown_veth() {
	net_pair_down
	[[ -n ${VETH_UP:-} ]] && ip link del benchv0 2>>"$LOG"
	VETH_UP=
}

virtio_net_ifaces() { # prints the interfaces bound by virtio_net
	local n
	for n in /sys/bus/virtio/drivers/virtio_net/virtio*/net/*; do
		[[ -e $n ]] && echo "${n##*/}"
	done
}
# testpmd's two vhost ports forwarding to each other (io mode), as in
# tests/guest/adapter-net.sh; one forwarding lcore that busy-polls. It is
# started once, when vl-net is first set up (its start takes 10-20 s here:
# it loads all of DPDK's drivers), and stopped with SIGSTOP while other
# contenders run, so that its busy core takes nothing from them.
TESTPMD_ARGS="-l 0,1 --no-huge -m 64 --no-pci --no-shconf"
TESTPMD_FWD="--forward-mode=io --total-num-mbufs=4096 --disable-link-check --stats-period=60"
TESTPMD_PID=
TESTPMD_LOG=$LOGS/testpmd.log
testpmd_resume() {
	if [[ -n $TESTPMD_PID ]] && kill -0 "$TESTPMD_PID" 2>/dev/null; then
		kill -CONT "$TESTPMD_PID"
		return 0
	fi
	rm -f "$RUN/net0.sock" "$RUN/net1.sock"
	# shellcheck disable=SC2086 # one word per option
	dpdk-testpmd $TESTPMD_ARGS --vdev "net_vhost0,iface=$RUN/net0.sock,queues=1" \
		--vdev "net_vhost1,iface=$RUN/net1.sock,queues=1" -- $TESTPMD_FWD >>"$TESTPMD_LOG" 2>&1 &
	TESTPMD_PID=$!
	# Forwarding, not only listening: it takes connections while it sets up.
	poll_until 120 "grep -q 'io packet forwarding' '$TESTPMD_LOG' || ! kill -0 $TESTPMD_PID" &&
		kill -0 "$TESTPMD_PID" 2>/dev/null || { echo "dpdk-testpmd did not start: $(log_tail "$TESTPMD_LOG")"; return 1; }
}
testpmd_pause() { [[ -n $TESTPMD_PID ]] && kill -STOP "$TESTPMD_PID" 2>/dev/null; }
testpmd_stop() {
	[[ -n $TESTPMD_PID ]] && kill -CONT "$TESTPMD_PID" 2>/dev/null
	stop_pid "$TESTPMD_PID"
	TESTPMD_PID=
}

setup_vl-net() {
	command -v dpdk-testpmd >/dev/null || { echo "dpdk-testpmd (Debian package dpdk-dev) is missing"; return 1; }
	vl_ready || return 1
	modprobe_once virtio_net || { echo "modprobe virtio_net failed"; return 1; }
	testpmd_resume || return 1
	local t0
	t0=$(now_us)
	"$BIN/virtio-loopback-adapter" -s "$RUN/net0.sock" -d net -s "$RUN/net1.sock" -d net -l info >>"$LOG" 2>&1 &
	ADAPTER_PID=$!
	poll_until 60 '[[ $(virtio_net_ifaces | wc -l) == 2 ]]' ||
		{ echo "no two interfaces within 60 s: $(log_tail "$LOG")"; return 1; }
	SETUP_US=$(($(now_us) - t0))
	poll_until 5 "[[ \$(grep -c 'set-up: ' '$LOG') == 2 ]]"
	SETUP_STEPS=$(sed -n 's/.*set-up: //p' "$LOG" | tail -n 1)
	local ifs
	mapfile -t ifs < <(virtio_net_ifaces)
	net_pair_up "${ifs[0]}" "${ifs[1]}"
}
teardown_vl-net() {
	net_pair_down
	stop_pid "$ADAPTER_PID"
	ADAPTER_PID=
	poll_until 10 '[[ -z $(virtio_net_ifaces) ]]'
	testpmd_pause
}

# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------
FIO_COMMON="--ioengine=libaio --direct=1 --size=${IMG_MIB}M --time_based --runtime=$RUNTIME --ramp_time=${RAMP_MS}ms --randrepeat=0 --norandommap --eta=never --output-format=json"
declare -A FIO_JOB=(
	[randread-4k-qd1]="--rw=randread --bs=4k --iodepth=1"
	[randread-4k-qd32]="--rw=randread --bs=4k --iodepth=32"
	[randwrite-4k-qd32]="--rw=randwrite --bs=4k --iodepth=32"
	[seqread-128k-qd8]="--rw=read --bs=128k --iodepth=8"
	[seqwrite-128k-qd8]="--rw=write --bs=128k --iodepth=8"
	[seqread-1m-qd4]="--rw=read --bs=1M --iodepth=4"
	[seqwrite-1m-qd4]="--rw=write --bs=1M --iodepth=4"
)
FIO_ORDER="randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 seqread-128k-qd8 seqwrite-128k-qd8 seqread-1m-qd4 seqwrite-1m-qd4"

# Whole-guest CPU use inside the steady state of a fio run: /proc/stat's
# first line with a timestamp, 0.5 s after the ramp and 0.5 s before the
# end (report.py turns it into CPU time per I/O). No programs are started
# meanwhile, so the sampling itself costs next to nothing.
ms_to_s() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
CPU_DELAY=$(ms_to_s $((RAMP_MS + 500)))
if ((RUNTIME >= 2)); then CPU_LEN=$(ms_to_s $((RUNTIME * 1000 - 1000))); else CPU_LEN=$(ms_to_s $((RUNTIME * 500))); fi
cpu_window() { # file
	local a b
	msleep "$CPU_DELAY"
	read -r a </proc/stat
	echo "$EPOCHREALTIME $a" >"$1"
	msleep "$CPU_LEN"
	read -r b </proc/stat
	echo "$EPOCHREALTIME $b" >>"$1"
}

# The headline number of a fio JSON file, for the progress line.
fio_headline() { # file read|write
	awk -v want="$2" '
		/"read" : \{/ { sec = "read" } /"write" : \{/ { sec = "write" }
		sec == want && /"bw_bytes" :/ && !bw { gsub(/[^0-9.]/, "", $3); bw = $3 }
		sec == want && /"iops" :/ && !io { gsub(/[^0-9.]/, "", $3); io = $3 }
		END { if (io != "") printf "%.0f IOPS, %.1f MB/s", io, bw / 1e6 }' "$1"
}

# The transport's counters (kicks, interrupts, bounce copies) of the one
# virtio-loopback device, from debugfs; nothing for other contenders.
transport_stats() { # file
	cat /sys/kernel/debug/virtio_loopback/virtio-loopback.* >"$1" 2>/dev/null || :
}

run_fio() { # round contender workload
	local round=$1 c=$2 w=$3 file=$RAW/r$1-$2-$3.json cpu=$RAW/r$1-$2-$3.cpu dir=read
	local stats=$RAW/r$1-$2-$3.stats
	[[ $w == *write* ]] && dir="write"
	[[ $c == vl-* ]] && transport_stats "$stats.before"
	cpu_window "$cpu" &
	local cpu_pid=$!
	# shellcheck disable=SC2086
	if timeout -k 10 $((RAMP_MS / 1000 + RUNTIME + 60)) fio --name="$w" --filename="$DEV" $FIO_COMMON ${FIO_JOB[$w]} \
		--output="$file" 2>"$file.err"; then
		wait "$cpu_pid"
		[[ $c == vl-* ]] && transport_stats "$stats.after"
		record fio "$round" "$c" "$w" "${file#"$OUT"/}" "${cpu#"$OUT"/}" "${stats#"$OUT"/}"
		say "  $c $w: $(fio_headline "$file" $dir)"
	else
		local rc=$?
		kill "$cpu_pid" 2>/dev/null
		wait "$cpu_pid" 2>/dev/null
		record fail "$round" "$c" "$w" "fio exited with status $rc: $(log_tail "$file.err")"
		say "  $c $w: FAILED (fio status $rc)"
	fi
}

# dd bs=1M iflag=direct over the first DD_MIB MiB, as the original project planned.
run_dd() { # round contender
	local out rc
	out=$(timeout -k 10 120 dd if="$DEV" of=/dev/null bs=1M count=$DD_MIB iflag=direct 2>&1)
	rc=$?
	if ((rc == 0)) && [[ $out =~ ([0-9]+)\ bytes.*copied,\ ([0-9.e+-]+)\ s ]]; then
		record bytes "$1" "$2" dd-1m-read "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
		say "  $2 dd-1m-read: $(awk -v b="${BASH_REMATCH[1]}" -v s="${BASH_REMATCH[2]}" 'BEGIN { printf "%.1f MB/s", b / s / 1e6 }')"
	else
		record fail "$1" "$2" dd-1m-read "dd exited with status $rc: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
		say "  $2 dd-1m-read: FAILED"
	fi
}

# Reads an entropy source for RNG_SECONDS with vl-read-rate (dd cannot be
# stopped while a read waits in the driver; vl-read-rate leaves anyway and
# reports the longest read, so a stalling device shows).
run_rng() { # round contender
	local file=$RAW/r$1-$2-rng.json
	if timeout -k 10 $((RNG_SECONDS + 30)) "$BIN/vl-read-rate" "$DEV" "$RNG_SECONDS" >"$file" 2>"$file.err"; then
		record rng "$1" "$2" "${file#"$OUT"/}"
		say "  $2 rng-read: $(sed -E 's/.*"mbps":([0-9.]+).*"longest_read_ms":([0-9.]+).*/\1 MB\/s, longest read \2 ms/' "$file")"
	else
		record fail "$1" "$2" rng-read "vl-read-rate exited with status $?: $(log_tail "$file.err")"
		say "  $2 rng-read: FAILED"
	fi
}

# iperf3 from the root namespace to the server in the other: a TCP stream
# (Gbit/s), then 64-byte UDP datagrams as fast as the sender can (packets/s
# sent and received, loss), NET_SECONDS each.
declare -A NET_JOB=(
	[tcp]="-t $NET_SECONDS"
	[udp-64]="-u -b 0 -l 64 -t $NET_SECONDS"
)
NET_ORDER="tcp udp-64"
# The progress line's numbers, from iperf3's JSON (its "sum_sent" and
# "sum_received" objects are flat); awk, as python3 takes seconds to start here.
net_headline() { # file workload
	awk -v w="$2" '
		/"sum_sent":/ { s = "sent" } /"sum_received":/ { s = "recv" }
		s && /"(bits_per_second|packets|lost_packets|seconds)":/ {
			k = $1; gsub(/[":]/, "", k); v = $2; gsub(/[^0-9.e+-]/, "", v); val[s, k] = v }
		s && /}/ { s = "" }
		END {
			if (w == "tcp") printf "%.3f Gbit/s", val["recv", "bits_per_second"] / 1e9
			else if (val["recv", "seconds"] > 0 && val["sent", "seconds"] > 0)
				printf "%.0f packets/s received of %.0f sent",
					(val["recv", "packets"] - val["recv", "lost_packets"]) / val["recv", "seconds"],
					val["sent", "packets"] / val["sent", "seconds"]
		}' "$1"
}
run_net() { # round contender
	local w file t0
	for w in $NET_ORDER; do
		file=$RAW/r$1-$2-$w.json
		t0=$(now_us)
		# shellcheck disable=SC2086 # one word per option
		if timeout -k 5 $((NET_SECONDS + 30)) iperf3 -c $NET_THERE ${NET_JOB[$w]} -J \
			--connect-timeout 5000 >"$file" 2>"$file.err" && ! grep -q '"error"' "$file"; then
			record net "$1" "$2" "$w" "${file#"$OUT"/}"
			say "  $2 $w: $(net_headline "$file" "$w") ($((($(now_us) - t0) / 1000)) ms in all)"
		else
			record fail "$1" "$2" "$w" "iperf3 failed: $(grep -o '"error":[^}]*' "$file" | head -c 200) $(log_tail "$file.err")"
			say "  $2 $w: FAILED"
		fi
	done
}

run_input() { # round contender
	local file=$RAW/r$1-$2-input.json args=(uinput)
	[[ $2 == vl-input* ]] && args=(fifo --fifo "$RUN/input.fifo" --device "$DEV")
	if timeout -k 10 120 "$BIN/vinput-latency" "${args[@]}" --events "$INPUT_EVENTS" --json >"$file" 2>"$file.err"; then
		record input "$1" "$2" "${file#"$OUT"/}"
		say "  $2 event latency: $(sed -E 's/.*"p50_us":([0-9.]+),"p99_us":([0-9.]+).*/p50 \1 us, p99 \2 us/' "$file")"
	else
		record fail "$1" "$2" input-latency "vinput-latency exited with status $?: $(log_tail "$file.err")"
		say "  $2 event latency: FAILED"
	fi
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
record info kernel "$(uname -r)"
record info cpu_model "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
record info vcpus "$(nproc)"
record info mem_mib "$(($(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo) / 1024))"
record info rounds "$ROUNDS"
record info runtime "$RUNTIME"
record info ramp_ms "$RAMP_MS"
record info qemu_aio "$QEMU_AIO"
record info user_hz "$(getconf CLK_TCK)"
record info fio_version "$(fio --version)"
record info fio_common "fio --name=WORKLOAD --filename=DEVICE $FIO_COMMON"
for w in $FIO_ORDER; do record info "fio_job_$w" "${FIO_JOB[$w]}"; done
record info dd_command "dd if=DEVICE of=/dev/null bs=1M count=$DD_MIB iflag=direct"
record info rng_command "vl-read-rate DEVICE $RNG_SECONDS 65536"
record info input_command "vinput-latency {uinput | fifo --fifo FIFO --device /dev/input/eventN} --events $INPUT_EVENTS --json"
record info contenders "$CONTENDERS"
record info setup_vl-blk "vhost-user-blk -s SOCK -b $IMG --num-queues=1 --direct; virtio-loopback-adapter -s SOCK -d blk"
record info setup_vl-blk-bounce "vhost-user-blk -s SOCK -b $IMG --num-queues=1 --direct; virtio-loopback-adapter -s SOCK -d blk --zero-copy=off"
record info setup_vl-blk-poll "vhost-user-blk -s SOCK -b $IMG --num-queues=1 --direct --poll-us=$POLL_US; virtio-loopback-adapter -s SOCK -d blk"
record info setup_vl-qsd "qemu-storage-daemon --blockdev $QSD_FILE --blockdev driver=raw,node-name=disk,file=file --export type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,addr.path=SOCK,writable=on,num-queues=1; virtio-loopback-adapter -s SOCK -d blk"
record info setup_vduse "modprobe vdpa vduse virtio_vdpa virtio_blk; qemu-storage-daemon --blockdev $QSD_FILE --blockdev driver=raw,node-name=disk,file=file --export type=vduse-blk,id=exp,node-name=disk,name=benchvduse,num-queues=1,writable=on; vdpa dev add name benchvduse mgmtdev vduse"
record info setup_loop "losetup --direct-io=on --show -f $IMG"
record info setup_nbd "modprobe nbd; qemu-nbd -c /dev/nbd0 -f raw --cache=none --aio=$QEMU_AIO $IMG"
record info setup_null_blk "modprobe null_blk nr_devices=1"
record info setup_vl-null "vhost-user-blk -s SOCK --null=${IMG_MIB}M --num-queues=1; virtio-loopback-adapter -s SOCK -d blk"
record info setup_vl-input "vhost-user-input -s SOCK --synthetic FIFO; virtio-loopback-adapter -s SOCK -d input"
record info setup_vl-input-poll "vhost-user-input -s SOCK --synthetic FIFO --poll-us=$POLL_US; virtio-loopback-adapter -s SOCK -d input"
record info poll_us "$POLL_US"
record info setup_uinput "modprobe uinput (vinput-latency creates the device)"
record info setup_vl-rng "vhost-user-rng -s SOCK; virtio-loopback-adapter -s SOCK -d rng"
record info net_seconds "$NET_SECONDS"
record info net_command "iperf3 -c $NET_THERE {$(for w in $NET_ORDER; do printf '%s: %s; ' "$w" "${NET_JOB[$w]}"; done | sed 's/; $//')} -J (server: ip netns exec $NET_NS iperf3 -s -B $NET_THERE)"
record info iperf3_version "$(iperf3 --version 2>/dev/null | head -n 1)"
record info setup_vl-net "dpdk-testpmd $TESTPMD_ARGS --vdev net_vhost0,iface=SOCK0,queues=1 --vdev net_vhost1,iface=SOCK1,queues=1 -- $TESTPMD_FWD (started once, SIGSTOP while other contenders run); virtio-loopback-adapter -s SOCK0 -d net -s SOCK1 -d net; the second interface into netns $NET_NS"
record info setup_veth "ip link add benchv0 type veth peer name benchv1; benchv1 into netns $NET_NS"

say "backing file: $IMG_MIB MiB in tmpfs ($IMG)"
dd if=/dev/zero of="$IMG" bs=1M count=$IMG_MIB status=none || { say "cannot create $IMG"; exit 1; }

# Load the programs once, untimed: the first set-up or fio run would
# otherwise also pay for reading them over 9p into the guest's page cache.
say "warming up: loading the programs once"
# dpdk-testpmd loads every DPDK driver there is (about 190 libraries): read
# them into the page cache here, or its first start takes a minute.
if [[ " $CONTENDERS " == *" vl-net "* ]]; then
	cat /usr/lib/x86_64-linux-gnu/librte_*.so.* /usr/lib/x86_64-linux-gnu/dpdk/pmds-*/*.so.* \
		/usr/bin/dpdk-testpmd >/dev/null 2>&1
fi
for p in fio qemu-storage-daemon qemu-nbd vdpa losetup "$BIN/virtio-loopback-adapter" \
	"$BIN/vhost-user-blk" "$BIN/vhost-user-input" "$BIN/vhost-user-rng" "$BIN/vinput-latency" "$BIN/vl-read-rate" \
	iperf3; do
	command -v "$p" >/dev/null && "$p" --help >/dev/null 2>&1
done

# What starting a program costs here (fork, exec, dynamic linking: a large
# share of every set-up time under emulation): the median of 7 starts.
exec_us() { # program args...
	local i t0 t1 times=()
	for ((i = 0; i < 7; i++)); do
		t0=${EPOCHREALTIME/./} # not $(now_us): no fork of our own in the time
		"$@" >/dev/null 2>&1
		t1=${EPOCHREALTIME/./}
		times+=($((t1 - t0)))
	done
	printf '%s\n' "${times[@]}" | sort -n | sed -n 4p
}
record info exec_us_adapter "$(exec_us "$BIN/virtio-loopback-adapter" --version)"
record info exec_us_losetup "$(exec_us losetup --version)"
command -v vdpa >/dev/null && record info exec_us_vdpa "$(exec_us vdpa --version)"
record info exec_us_true "$(exec_us /bin/true)"

read -ra LIST <<<"$CONTENDERS"
n=${#LIST[@]}
mount -t debugfs none /sys/kernel/debug 2>/dev/null || :
dmesg_start=$(dmesg | wc -l)
for ((round = 1; round <= ROUNDS; round++)); do
	for ((i = 0; i < n; i++)); do
		c=${LIST[$(((i + round - 1) % n))]}
		LOG=$LOGS/r$round-$c.log
		: >"$LOG"
		say "round $round/$ROUNDS [$((i + 1))/$n] $c: set up"
		DEV="" SETUP_US="" SETUP_STEPS=""
		# Not in $(...): the set-up's PIDs and variables must stay in this
		# shell for the teardown, so its reason comes back through a file.
		"setup_$c" >"$RUN/reason" 2>>"$LOG"
		rc=$?
		reason=$(cat "$RUN/reason")
		if ((rc == 2)); then
			record skip "$round" "$c" "$reason"
			say "  $c: $reason"
			"teardown_$c" 2>>"$LOG"
			continue
		elif ((rc != 0)); then
			record fail "$round" "$c" setup "${reason:-set-up failed: $(log_tail "$LOG")}"
			say "  $c: set-up FAILED: $reason"
			"teardown_$c" 2>>"$LOG"
			continue
		fi
		record ok "$round" "$c"
		[[ -n $SETUP_US ]] && record setup "$round" "$c" "$SETUP_US"
		[[ -n $SETUP_STEPS ]] && record setup_steps "$round" "$c" "$SETUP_STEPS"
		say "  $c: $DEV${SETUP_US:+, set up in $((SETUP_US / 1000)) ms}"
		case $c in
		vl-input | vl-input-poll | uinput) run_input "$round" "$c" ;;
		vl-rng | urandom) run_rng "$round" "$c" ;;
		vl-net | veth) run_net "$round" "$c" ;;
		*)
			for w in $FIO_ORDER; do run_fio "$round" "$c" "$w"; done
			run_dd "$round" "$c"
			;;
		esac
		t0=$(now_us)
		"teardown_$c" 2>>"$LOG"
		say "  $c: torn down in $((($(now_us) - t0) / 1000)) ms"
	done
done

testpmd_stop
dmesg | tail -n +"$((dmesg_start + 1))" >"$OUT/dmesg.txt"
bad=$(grep -c -E 'BUG|WARNING|Oops|general protection|hung_task|blocked for more than|I/O error' "$OUT/dmesg.txt")
record info kernel_log_problems "$bad"
[[ -n ${VL_LOADED:-} ]] && rmmod virtio_loopback 2>/dev/null
say "done in $(elapsed) s"
