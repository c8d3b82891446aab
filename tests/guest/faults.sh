#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The fault matrix: the back-end (vhost-user-blk) and the adapter, each
# killed (-9) or stopped (SIGSTOP) during fio --verify with writes and
# fsync. The kernel must never hang (hung-task detector armed at 10 s) nor
# log BUG/WARNING/Oops; data written and fsynced before a fault must read
# back intact once the device is back; where nothing recovers, the I/O
# errors must come within the bound.
#
#   back-end kill -9, restarted         fio verify passes
#   back-end kill -9, not restarted     I/O errors within grace + 10 s
#   back-end SIGSTOP past the grace     the adapter's stall watchdog drops
#                                       it, I/O errors after the grace; after
#                                       SIGCONT the device comes back, data intact
#   adapter kill -9                     the device goes at once, I/O errors;
#                                       a new adapter brings it back, data intact
#   adapter SIGSTOP                     nothing happens: fio verify passes
#
# (A back-end that closes its socket is the kill case as far as the
# adapter can tell: both are an end of file on the socket.)
. "$(dirname "$0")/lib.sh"

GRACE=4
STALL=3
BOUND=$((GRACE + STALL + 10))
arm_hung_task_detector 10
load_module
modprobe virtio_blk
truncate -s 128M /tmp/disk.img

start_blk() {
	"$VL_BIN/vhost-user-blk" -s /tmp/blk.sock -b /tmp/disk.img -l warn &
	blk_pid=$!
	wait_for_file /tmp/blk.sock 20 || fail "vhost-user-blk did not create its socket"
}
start_adapter() {
	"$VL_BIN/virtio-loopback-adapter" -s /tmp/blk.sock -d blk -l warn \
		--reconnect-grace "$GRACE" --stall-timeout "$STALL" &
	adapter_pid=$!
	disk=$(find_virtio_disk 30) || fail "no disk"
}

# 8 MiB of known data at the end of the disk, written and fsynced: it must
# survive every fault.
MARK_OFFSET=112 # MiB
write_mark() {
	dd if=/dev/urandom of=/tmp/mark bs=1M count=8 status=none
	dd if=/tmp/mark of="/dev/$disk" bs=1M seek=$MARK_OFFSET oflag=direct conv=fsync status=none ||
		fail "writing the mark failed"
}
check_mark() {
	dd if="/dev/$disk" of=/tmp/mark.read bs=1M skip=$MARK_OFFSET count=8 iflag=direct status=none ||
		fail "$1: reading the mark failed"
	cmp -s /tmp/mark /tmp/mark.read || fail "$1: data fsynced before the fault differs afterwards"
}

# fio verify with fsync, on the first 96 MiB (the mark is beyond).
start_fio() {
	fio --name=verify --filename="/dev/$disk" --rw=randwrite --bs=4k --size=96M \
		--ioengine=libaio --iodepth=16 --direct=1 --fsync=32 --verify=crc32c \
		--do_verify=1 --output=/tmp/fio.out >/dev/null 2>&1 &
	fio_pid=$!
	wait_for_writes "$disk" $(($(awk '{ print $7 }' /sys/block/$disk/stat) / 2048 + 4)) ||
		fail "fio did not start writing"
}
expect_fio_ok() {
	wait "$fio_pid" || { cat /tmp/fio.out; fail "$1: fio verify failed"; }
}
expect_fio_errors() { # case, bound
	t0=$(now_ms)
	wait_until "$2" '! kill -0 $fio_pid 2>/dev/null' || fail "$1: fio still runs after $2 s"
	status=0
	wait "$fio_pid" || status=$?
	[ "$status" != 0 ] || fail "$1: fio succeeded; I/O errors were expected"
	step "$1: fio ended with I/O errors $(($(now_ms) - t0)) ms after the fault was noticed"
}

start_blk
start_adapter
write_mark

step "back-end kill -9, restarted"
start_fio
kill -9 "$blk_pid"
wait "$blk_pid" 2>/dev/null || true
start_blk
expect_fio_ok "back-end kill -9, restarted"
check_mark "back-end kill -9, restarted"

step "back-end kill -9, not restarted"
start_fio
kill -9 "$blk_pid"
wait "$blk_pid" 2>/dev/null || true
expect_fio_errors "back-end kill -9, not restarted" "$BOUND"
wait_until 10 '[ ! -e /sys/block/$disk ]' || fail "the disk stayed after the grace period"
start_blk
disk=$(find_virtio_disk 30) || fail "no disk after the back-end came back"
check_mark "back-end kill -9, not restarted"

step "back-end SIGSTOP past the grace period"
start_fio
kill -STOP "$blk_pid"
expect_fio_errors "back-end SIGSTOP" "$BOUND"
wait_until 10 '[ ! -e /sys/block/$disk ]' || fail "the disk stayed after the grace period"
kill -CONT "$blk_pid"
disk=$(find_virtio_disk 30) || fail "no disk after SIGCONT"
check_mark "back-end SIGSTOP"

step "adapter kill -9"
start_fio
kill -9 "$adapter_pid"
wait "$adapter_pid" 2>/dev/null || true
expect_fio_errors "adapter kill -9" 10
wait_until 10 '[ ! -e /sys/block/$disk ]' || fail "the disk stayed after the adapter died"
start_adapter
check_mark "adapter kill -9"

step "adapter SIGSTOP"
start_fio
kill -STOP "$adapter_pid"
expect_fio_ok "adapter SIGSTOP"
kill -CONT "$adapter_pid"
check_mark "adapter SIGSTOP"

stop_cleanly "$adapter_pid" "the adapter"
stop_cleanly "$blk_pid" "vhost-user-blk"
unload_module
check_kernel_log
step PASS
