#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# kill -9 of the device process during fio: fio ends with I/O errors
# within the bound, no task hangs, the disk disappears, the kernel log stays
# clean and the module unloads. Then the same with a device that stops
# completing requests and is closed with them in flight.
. "$(dirname "$0")/lib.sh"

BOUND=10	# seconds from the kill to fio's exit (documented in docs/uapi.md)

arm_hung_task_detector 10
load_module
modprobe virtio_blk


run_case() { # name, vl-testdev options
	name=$1
	shift
	step "$name: start a RAM disk"
	rm -f /tmp/ready
	"$VL_BIN/vl-testdev" --blk=64 "$@" --ready-file=/tmp/ready &
	dev_pid=$!
	wait_for_file /tmp/ready 30 || fail "$name: the test device did not come up"
	disk=$(find_virtio_disk 30) || fail "$name: no virtio disk appeared"
	fio --name=load --filename="/dev/$disk" --rw=randrw --bs=4k --ioengine=libaio \
		--iodepth=16 --direct=1 --time_based --runtime=120 --numjobs=2 \
		--output=/tmp/fio.out >/dev/null 2>/tmp/fio.err &
	fio_pid=$!
	# Under way: 100 requests completed (the stalled device completes
	# 200) and some in flight. fio's start-up time varies a lot under TCG.
	wait_until 30 "[ \$(awk '{ print \$1 + \$5 }' /sys/block/$disk/stat) -ge 100 ] &&
		[ \$(awk '{ print \$1 + \$2 }' /sys/block/$disk/inflight) -gt 0 ]" ||
		{ cat /tmp/fio.out /tmp/fio.err; fail "$name: fio did not get I/O under way"; }
	step "$name: kill -9 the device with I/O in flight"
	t0=$(now_ms)
	kill -9 "$dev_pid"
	wait_until $BOUND '! kill -0 $fio_pid 2>/dev/null' ||
		fail "$name: fio still runs $BOUND s after the kill"
	elapsed=$(($(now_ms) - t0))
	fio_status=0
	wait "$fio_pid" || fio_status=$?
	[ "$fio_status" != 0 ] || fail "$name: fio reported success, I/O errors were expected"
	# fio reports the error on stderr (io_u error) and, per job, as err=.
	grep -q "Input/output error\|err= *5" /tmp/fio.out /tmp/fio.err ||
		{ cat /tmp/fio.out /tmp/fio.err; fail "$name: fio did not report I/O errors"; }
	step "$name: fio ended with I/O errors ${elapsed} ms after the kill"
	wait_until 10 '[ ! -e /sys/block/$disk ]' || fail "$name: /dev/$disk still exists"
	wait "$dev_pid" 2>/dev/null || true
}

run_case running
run_case stalled --stall-after=200

unload_module
check_kernel_log
step PASS
