#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Load: many devices of every kind (blk, rng, input) in one adapter, used
# in parallel, destroyed and recreated, round after round. Each round the
# back-ends go away (the adapter, with no grace period, removes their
# devices) and come back (it creates fresh ones). Afterwards the kernel's
# slab and vmalloc use and the adapter's RSS and open fds must be back
# where they were after the first round.
#   ROUNDS (default 3), BLK, RNG, INPUT (default 8 each) from the
#   environment; make stress runs 20 rounds of 64 devices.
. "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
BLK=${BLK:-8}
RNG=${RNG:-8}
INPUT=${INPUT:-8}
TOTAL=$((BLK + RNG + INPUT))
arm_hung_task_detector 30
load_module
for m in virtio_blk virtio_rng virtio_input evdev; do modprobe "$m"; done
mkdir -p /tmp/stress

# The adapter's config file: one [device] per back-end.
{
	echo "reconnect-grace = 0"
	echo "log-level = warn"
	for i in $(seq 1 "$BLK"); do printf '[device]\nsocket = /tmp/stress/blk%s.sock\ndevice = blk\nwindow-mb = 8\n' "$i"; done
	for i in $(seq 1 "$RNG"); do printf '[device]\nsocket = /tmp/stress/rng%s.sock\ndevice = rng\n' "$i"; done
	for i in $(seq 1 "$INPUT"); do printf '[device]\nsocket = /tmp/stress/input%s.sock\ndevice = input\n' "$i"; done
} >/tmp/stress/adapter.conf

backend_pids=""
start_backends() {
	backend_pids=""
	for i in $(seq 1 "$BLK"); do
		[ -f "/tmp/stress/disk$i.img" ] || truncate -s 16M "/tmp/stress/disk$i.img"
		"$VL_BIN/vhost-user-blk" -s "/tmp/stress/blk$i.sock" -b "/tmp/stress/disk$i.img" -l warn &
		backend_pids="$backend_pids $!"
	done
	for i in $(seq 1 "$RNG"); do
		"$VL_BIN/vhost-user-rng" -s "/tmp/stress/rng$i.sock" -l warn &
		backend_pids="$backend_pids $!"
	done
	for i in $(seq 1 "$INPUT"); do
		"$VL_BIN/vhost-user-input" -s "/tmp/stress/input$i.sock" --synthetic "/tmp/stress/keys$i" -l warn &
		backend_pids="$backend_pids $!"
	done
}
stop_backends() {
	for p in $backend_pids; do kill -TERM "$p"; done
	for p in $backend_pids; do wait "$p" || fail "a back-end exited with an error"; done
}
bound() { ls "/sys/bus/virtio/drivers/$1" 2>/dev/null | grep -c '^virtio' || true; }
all_bound() { [ "$(bound virtio_blk)" = "$BLK" ] && [ "$(bound virtio_rng)" = "$RNG" ] && [ "$(bound virtio_input)" = "$INPUT" ]; }

use_devices() { # every disk, the hwrng and every input device, in parallel
	pids=""
	for d in $(ls /sys/bus/virtio/drivers/virtio_blk/ | grep '^virtio'); do
		disk=$(ls "/sys/bus/virtio/drivers/virtio_blk/$d/block/")
		fio --name=s --filename="/dev/$disk" --rw=randrw --bs=4k --size=8M --ioengine=libaio \
			--iodepth=4 --direct=1 --verify=crc32c --output=/dev/null >/dev/null 2>&1 &
		pids="$pids $!"
	done
	dd if=/dev/hwrng of=/dev/null bs=1k count=8 status=none &
	pids="$pids $!"
	for i in $(seq 1 "$INPUT"); do
		printf 'key KEY_A 1\nsyn\nkey KEY_A 0\nsyn\n' >>"/tmp/stress/keys$i" &
		pids="$pids $!"
	done
	for p in $pids; do wait "$p" || fail "round $1: using the devices failed"; done
}
adapter_rss() { awk '/^VmRSS/ { print $2 }' "/proc/$adapter_pid/status"; }
adapter_fds() { ls "/proc/$adapter_pid/fd" | wc -l; }
meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }

start_backends
"$VL_BIN/virtio-loopback-adapter" -c /tmp/stress/adapter.conf &
adapter_pid=$!
for round in $(seq 1 "$ROUNDS"); do
	wait_until 120 all_bound || fail "round $round: not all $TOTAL devices came up"
	use_devices "$round"
	if [ "$round" = 1 ]; then
		sync; echo 3 >/proc/sys/vm/drop_caches
		slab0=$(meminfo Slab); vmalloc0=$(meminfo VmallocUsed)
		rss0=$(adapter_rss); fds0=$(adapter_fds)
	fi
	step "round $round/$ROUNDS: $TOTAL devices up and used; adapter RSS $(adapter_rss) kB, $(adapter_fds) fds"
	stop_backends
	wait_until 60 '[ "$(loopback_devices)" = 0 ]' || fail "round $round: devices stayed after their back-ends left"
	[ "$round" = "$ROUNDS" ] || start_backends
done
sync; echo 3 >/proc/sys/vm/drop_caches
start_backends
wait_until 120 all_bound || fail "the last devices did not come up"
slab1=$(meminfo Slab); vmalloc1=$(meminfo VmallocUsed)
rss1=$(adapter_rss); fds1=$(adapter_fds)
step "kernel Slab ${slab0} -> ${slab1} kB, VmallocUsed ${vmalloc0} -> ${vmalloc1} kB"
step "adapter RSS ${rss0} -> ${rss1} kB, fds ${fds0} -> ${fds1}"
[ "$fds1" -le "$fds0" ] || fail "the adapter holds $((fds1 - fds0)) more fds than after round 1"
[ $((rss1 - rss0)) -lt 2048 ] || fail "the adapter grew by $((rss1 - rss0)) kB"
[ $((vmalloc1 - vmalloc0)) -lt 1024 ] || fail "vmalloc grew by $((vmalloc1 - vmalloc0)) kB"
[ $((slab1 - slab0)) -lt 2048 ] || fail "slab grew by $((slab1 - slab0)) kB"

stop_cleanly "$adapter_pid" "the adapter"
stop_backends
unload_module
check_kernel_log
step PASS
