#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Zero-copy (VIRTIO_LOOPBACK_CREATE_ZERO_COPY): a buffer of whole pages is
# the driver's own pages, in the device's window only while the device owns
# the request, read-only if the device only reads it, and never pinnable.
# - vl-testdev --zero-copy: fio verify (O_DIRECT writes and reads, 4k and
#   128k) and the debugfs zc_* counters moved; without the flag zc_maps
#   stays 0, and a keep-access attempt on its (bounce) pages succeeds,
#   which shows that the attempts can tell;
# - hostile devices: touch-after-complete and write-readonly die of SIGBUS
#   (exit 135), the device goes away, fio fails; odirect,
#   io-uring-register, vmsplice and process-vm-readv are refused (EFAULT
#   or EEXIST) while the device serves on and fio verify passes;
# - our vhost-user-blk through the adapter, zero-copy on: buffered, and
#   --direct (O_DIRECT into zero-copy pages fails: it must copy instead);
# - qemu-storage-daemon through the adapter: cache.direct=on with
#   --zero-copy=off, cache.direct=off with zero-copy on;
# - requests of 254 segments, whose indirect tables are exactly a page.
. "$(dirname "$0")/lib.sh"

arm_hung_task_detector 40
load_module
modprobe virtio_blk
modprobe loop
mount -t debugfs none /sys/kernel/debug 2>/dev/null || true
started=$(now_ms)
# step, with the seconds since the start (the test should stay near 90 s).
zstep() { step "[$((($(now_ms) - started) / 1000)) s] $*"; }
# O_DIRECT needs a block device here (6.1's tmpfs refuses it): loop devices
# over tmpfs files, one for the odirect sabotage to read, one for back-ends.
truncate -s 1M /tmp/direct.img
truncate -s 64M /tmp/disk.img /tmp/loopdisk.img
direct_dev=$(losetup --find --show /tmp/direct.img) || fail "losetup /tmp/direct.img"
loop_disk=$(losetup --find --show /tmp/loopdisk.img) || fail "losetup /tmp/loopdisk.img"

# The window line of the only device's debugfs file.
window_line() {
	cat /sys/kernel/debug/virtio_loopback/virtio-loopback.* 2>/dev/null | grep '^window ' || true
}
# window_counter NAME: NAME's value on that line (empty if it has none).
window_counter() {
	window_line | awk -v k="$1" '{ for (i = 2; i < NF; i++) if ($i == k) print $(i + 1) }'
}
# check_zero_copy yes|no WHAT: zc_maps moved (yes) or stayed 0 (no).
check_zero_copy() {
	maps=$(window_counter zc_maps)
	zstep "$2: $(window_line)"
	[ -n "$maps" ] || fail "$2: debugfs has no zc_maps counter: $(window_line)"
	if [ "$1" = yes ]; then
		[ "$maps" -gt 0 ] || fail "$2: zero-copy mapped nothing (zc_maps $maps)"
		[ "$(window_counter zc_pages)" -gt 0 ] || fail "$2: zc_pages did not move"
	else
		[ "$maps" = 0 ] || fail "$2: zc_maps is $maps without zero-copy"
	fi
}

# fio_verify DISK BS:MIB...: for each block size in turn, O_DIRECT random
# writes of MIB MiB, then every block read back and checked (crc32c). One
# fio for all (starting fio takes seconds here).
fio_verify() {
	fio_disk=$1
	shift
	fio_jobs=
	for job in "$@"; do
		fio_jobs="$fio_jobs --name=bs${job%:*} --bs=${job%:*} --size=${job#*:}M --stonewall"
	done
	# shellcheck disable=SC2086 # one word per option
	fio --filename="/dev/$fio_disk" --rw=randwrite --ioengine=libaio --iodepth=8 --direct=1 \
		--verify=crc32c --do_verify=1 --output=/tmp/fio.out $fio_jobs >/dev/null 2>&1 ||
		{ cat /tmp/fio.out; return 1; }
}

# start_testdev OPTION...: a 64 MiB vl-testdev disk; sets dev_pid and disk.
# Its log is /tmp/dev.log.
start_testdev() {
	rm -f /tmp/ready
	"$VL_BIN/vl-testdev" --blk=64 --ready-file=/tmp/ready --log-level=warn "$@" 2>/tmp/dev.log &
	dev_pid=$!
	wait_for_file /tmp/ready 30 || { cat /tmp/dev.log; fail "$*: the test device did not come up"; }
	disk=$(find_virtio_disk 30) || fail "$*: no disk"
}

# stop_testdev STATUS WHAT: SIGTERM, then vl-testdev must exit with STATUS
# and its device go away.
stop_testdev() {
	status=0
	kill -TERM "$dev_pid" 2>/dev/null || true
	wait "$dev_pid" || status=$?
	[ "$status" = "$1" ] || { cat /tmp/dev.log; fail "$2: vl-testdev exited with $status, not $1"; }
	wait_until 30 '[ "$(loopback_devices)" = 0 ]' || fail "$2: the device did not go away"
}

zstep "without --zero-copy: fio verify, nothing mapped zero-copy; process_vm_readv of a bounce page works"
start_testdev --sabotage=process-vm-readv --sabotage-after=100
fio_verify "$disk" 4k:1 || fail "fio verify on a device without zero-copy failed"
check_zero_copy no "without --zero-copy"
grep -q 'keep-access process-vm-readv: SUCCEEDED' /tmp/dev.log ||
	{ cat /tmp/dev.log; fail "process_vm_readv of a bounce page did not succeed: the keep-access checks cannot tell"; }
stop_testdev 3 "without --zero-copy"

zstep "--zero-copy: fio verify, 4k and 128k"
start_testdev --zero-copy
fio_verify "$disk" 4k:2 128k:8 || fail "fio verify, zero-copy"
check_zero_copy yes "--zero-copy"
stop_testdev 0 "--zero-copy"

# Access to a buffer the device does not own, or may only read: SIGBUS.
for mode in touch-after-complete write-readonly; do
	zstep "$mode: the device dies of SIGBUS, the disk goes away, fio fails"
	start_testdev --zero-copy --sabotage=$mode --sabotage-after=50
	fio --name=load --filename="/dev/$disk" --rw=randwrite --bs=4k --ioengine=libaio \
		--iodepth=4 --direct=1 --time_based --runtime=30 --output=/tmp/fio.out \
		>/dev/null 2>&1 &
	fio_pid=$!
	wait_until 30 '! kill -0 $dev_pid 2>/dev/null' ||
		{ cat /tmp/dev.log; fail "$mode: the device still runs 30 s after fio started"; }
	status=0
	wait "$dev_pid" || status=$?
	[ "$status" = 135 ] ||
		{ cat /tmp/dev.log; fail "$mode: vl-testdev exited with $status, not 135 (SIGBUS)"; }
	grep -q "$mode: .*(SIGBUS expected)" /tmp/dev.log ||
		{ cat /tmp/dev.log; fail "$mode: died before its access"; }
	wait_until 20 '! kill -0 $fio_pid 2>/dev/null' || fail "$mode: fio still runs 20 s after the device died"
	status=0
	wait "$fio_pid" || status=$?
	zstep "$mode: fio exit status $status; $(grep -o 'err=[ 0-9]*' /tmp/fio.out | head -n1)"
	[ "$status" != 0 ] || fail "$mode: fio saw no I/O error"
	wait_until 30 '[ "$(loopback_devices)" = 0 ]' || fail "$mode: the device did not go away"
done

# Ways to keep a buffer's pages beyond the request: refused (EFAULT, or
# EEXIST where get_user_pages meets a page table entry without a page);
# the device goes on serving, and the data stays right.
for mode in odirect io-uring-register vmsplice process-vm-readv; do
	zstep "keep-access $mode: refused, fio verify passes"
	start_testdev --zero-copy --sabotage=$mode --sabotage-after=100 --direct-file="$direct_dev"
	fio_verify "$disk" 4k:1 || fail "keep-access $mode: fio verify failed"
	grep -E "keep-access $mode: refused with (EFAULT|EEXIST)" /tmp/dev.log ||
		{ cat /tmp/dev.log; fail "keep-access $mode: no refusal in the device's log"; }
	stop_testdev 0 "keep-access $mode"
done

# start_adapter OPTION...: the adapter for /tmp/vub.sock's back-end; sets
# adapter_pid and disk.
start_adapter() {
	"$VL_BIN/virtio-loopback-adapter" -s /tmp/vub.sock -d blk "$@" 2>/tmp/adapter.log &
	adapter_pid=$!
	disk=$(find_virtio_disk 30) || { cat /tmp/adapter.log; fail "no virtio disk through the adapter"; }
}
stop_adapter() {
	stop_cleanly "$adapter_pid" "the adapter"
	adapter_pid=
	wait_until 10 '[ "$(loopback_devices)" = 0 ]' || fail "the adapter's device did not go away"
}

for direct in "" --direct; do
	image=/tmp/disk.img
	[ -z "$direct" ] || image=$loop_disk
	zstep "vhost-user-blk ${direct:-(buffered)} on $image through the adapter, zero-copy on"
	rm -f /tmp/vub.sock
	"$VL_BIN/vhost-user-blk" -s /tmp/vub.sock -b "$image" $direct 2>/tmp/blk.log &
	blk_pid=$!
	wait_for_file /tmp/vub.sock 20 || { cat /tmp/blk.log; fail "vhost-user-blk did not start"; }
	start_adapter
	grep -q 'zero-copy on' /tmp/adapter.log || { cat /tmp/adapter.log; fail "the adapter did not say zero-copy on"; }
	fio_verify "$disk" 4k:2 128k:4 || fail "vhost-user-blk $direct: fio verify"
	check_zero_copy yes "vhost-user-blk $direct"
	stop_adapter
	stop_cleanly "$blk_pid" "vhost-user-blk"
	! grep -q 'IOERR' /tmp/blk.log || { cat /tmp/blk.log; fail "vhost-user-blk $direct answered IOERR"; }
	[ -z "$direct" ] || grep -q 'O_DIRECT on .* cannot use the guest' /tmp/blk.log ||
		{ cat /tmp/blk.log; fail "vhost-user-blk --direct did not meet unpinnable pages"; }
done

zstep "qemu-storage-daemon cache.direct=on on $loop_disk, --zero-copy=off"
start_qsd "$loop_disk" /tmp/vub.sock 1 cache.direct=on
start_adapter --zero-copy=off
fio_verify "$disk" 4k:2 128k:4 || fail "qemu-storage-daemon cache.direct=on: fio verify"
check_zero_copy no "qemu-storage-daemon cache.direct=on, --zero-copy=off"
stop_adapter
# shellcheck disable=SC2154 # set by start_qsd (lib.sh)
kill -TERM "$qsd_pid"
wait "$qsd_pid" || true

zstep "qemu-storage-daemon cache.direct=off, zero-copy on"
start_qsd /tmp/disk.img /tmp/vub.sock 1 cache.direct=off
start_adapter
fio_verify "$disk" 4k:2 128k:4 || fail "qemu-storage-daemon cache.direct=off: fio verify"
check_zero_copy yes "qemu-storage-daemon cache.direct=off"
stop_adapter

# A request of 254 data segments of 4 KiB (SIZE_MAX 4096, seg_max 254) has
# an indirect descriptor table of 256 entries: exactly one page, which the
# kernel maps zero-copy like any whole-page buffer. The device reads that
# table, so it must be in the window while the device owns the request.
zstep "--zero-copy, indirect tables of exactly one page (fio bs=1016k, 254 segments)"
start_testdev --zero-copy --queue-size=256 --size-max=4096
if ! fio_verify "$disk" 1016k:8; then
	status=0
	kill -0 "$dev_pid" 2>/dev/null || wait "$dev_pid" || status=$?
	[ "$status" != 135 ] ||
		echo "vl-testdev died of SIGBUS: a one-page indirect table was not in the window" >&2
	fail "one-page indirect tables: fio verify failed; vl-testdev exit status $status"
fi
stop_testdev 0 "one-page indirect tables"

losetup -d "$direct_dev" "$loop_disk"
finish_adapter_test
