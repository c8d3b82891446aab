#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A hostile device: vl-testdev serves a RAM disk well for a while, then
# breaks the ring rules in one way per case, under fio load. A broken used
# ring fails the device at once; a device that just stops answering (the
# index jump publishes nothing valid) is only known dead when its file
# closes. Either way fio must end within a bound once the device is failed
# or killed, the device must go away, the kernel log must stay free of
# BUG/WARNING/Oops and the module must unload.
. "$(dirname "$0")/lib.sh"

BOUND=20
arm_hung_task_detector 20
load_module
modprobe virtio_blk

for mode in ${VL_HOSTILE_MODES:-bad-used-id double-use garbage-used-idx oversize-len rewrite-desc call-storm}; do
	step "$mode"
	rm -f /tmp/ready
	"$VL_BIN/vl-testdev" --blk=16 --sabotage="$mode" --sabotage-after=300 \
		--ready-file=/tmp/ready --log-level=warn &
	dev_pid=$!
	wait_for_file /tmp/ready 30 || fail "$mode: the test device did not come up"
	disk=$(find_virtio_disk 30) || fail "$mode: no disk"
	fio --name=load --filename="/dev/$disk" --rw=randrw --bs=4k --ioengine=libaio \
		--iodepth=8 --direct=1 --time_based --runtime=8 --output=/tmp/fio.out \
		>/dev/null 2>&1 &
	fio_pid=$!
	if ! wait_until $BOUND '! kill -0 $fio_pid 2>/dev/null'; then
		step "$mode: I/O stalls (nothing valid was completed); killing the device"
		kill -9 "$dev_pid"
		wait_until 20 '! kill -0 $fio_pid 2>/dev/null' ||
			fail "$mode: fio still runs 20 s after the device was killed"
	fi
	status=0
	wait "$fio_pid" || status=$?
	step "$mode: fio exit status $status; $(grep -o 'err=[ 0-9]*' /tmp/fio.out | head -n1)"
	kill "$dev_pid" 2>/dev/null || true
	wait "$dev_pid" 2>/dev/null || true
	wait_until 15 '[ "$(loopback_devices)" = 0 ]' || fail "$mode: the device did not go away"
done

unload_module
check_kernel_log
step PASS
