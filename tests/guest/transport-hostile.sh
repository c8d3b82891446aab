#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A hostile device: vl-testdev serves a RAM disk well for a while, then
# breaks the ring rules once, in one way per case, under fio load.
# - bad-used-id, double-use, garbage-used-idx: the transport must see the
#   broken used ring at the call that follows, fail the device at once
#   (fio gets I/O errors within BOUND s, nothing killed) and log why;
# - rewrite-desc, forge-driver-used: the driver's vring (descriptor table,
#   and the available and used rings the kernel mediates) is read-only to
#   user space, so the device's write faults and the process dies of
#   SIGBUS; its file closes and fio gets I/O errors;
# - oversize-len, call-storm: the transport cannot tell (lengths are the
#   driver's to check) or need not (a storm of calls); fio ends, with or
#   without errors, or stalls and ends once the device is killed.
# Either way the device must go away, the kernel log must stay free of
# BUG/WARNING/Oops/hung tasks and the module must unload.
. "$(dirname "$0")/lib.sh"

# fio runs 8 s; BOUND leaves room for a slow, shared machine but stays
# well below the hung-task timeout, so a stall ends before it is reported.
BOUND=15
arm_hung_task_detector 40
load_module
modprobe virtio_blk

for mode in ${VL_HOSTILE_MODES:-bad-used-id double-use garbage-used-idx oversize-len rewrite-desc forge-driver-used call-storm}; do
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
	detected=no
	case $mode in bad-used-id | double-use | garbage-used-idx) detected=yes ;; esac
	if ! wait_until $BOUND '! kill -0 $fio_pid 2>/dev/null'; then
		[ $detected = no ] || fail "$mode: fio still runs $BOUND s after it started; the transport should have failed the device"
		step "$mode: I/O stalls (nothing valid was completed); killing the device"
		kill -9 "$dev_pid"
		wait_until 20 '! kill -0 $fio_pid 2>/dev/null' ||
			fail "$mode: fio still runs 20 s after the device was killed"
	fi
	status=0
	wait "$fio_pid" || status=$?
	step "$mode: fio exit status $status; $(grep -o 'err=[ 0-9]*' /tmp/fio.out | head -n1)"
	if [ $detected = yes ]; then
		[ "$status" != 0 ] || fail "$mode: fio saw no I/O error"
		broke=$(dmesg | grep -c 'the device broke the used ring' || true)
		[ "$broke" -gt "${broke_before:-0}" ] ||
			fail "$mode: the kernel log does not say why the device was failed"
		broke_before=$broke
	fi
	dev_status=0
	kill "$dev_pid" 2>/dev/null || true
	wait "$dev_pid" 2>/dev/null || dev_status=$?
	case $mode in rewrite-desc | forge-driver-used)
		[ "$dev_status" = $((128 + 7)) ] ||
			fail "$mode: the device should have died of SIGBUS writing the driver's read-only vring (exit status $dev_status)"
	esac
	wait_until 30 '[ "$(loopback_devices)" = 0 ]' || fail "$mode: the device did not go away"
done

unload_module
check_kernel_log
step PASS
