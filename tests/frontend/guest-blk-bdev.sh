#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# vhost-user-blk serving block devices (run in a guest, where we may create
# them): loop devices with 512- and 4096-byte logical blocks, buffered and
# with O_DIRECT, checked with vl-test-driver's blk-info and blk-verify
# (capacity and block size from BLKGETSIZE64/BLKSSZGET, discard through
# BLKDISCARD, write-zeroes through fallocate on the device). A mounted
# device is refused. Needs VL_BUILD_DIR (scripts/vm-run -e).
. "$(dirname "$0")/../guest/lib.sh"

# serve DEVICE SECTORS BLOCK [OPTION...]: serves DEVICE, checks what the
# driver sees and runs blk-verify over 16 MiB; the back-end must exit 0 on
# SIGTERM without warnings.
serve() {
	device=$1 sectors=$2 block=$3
	shift 3
	rm -f /tmp/b.sock
	"$VL_BIN/vhost-user-blk" -s /tmp/b.sock -b "$device" "$@" >/tmp/b.log 2>&1 &
	pid=$!
	wait_for_file /tmp/b.sock 10 || { cat /tmp/b.log; fail "vhost-user-blk did not listen"; }
	"$VL_BIN/vl-test-driver" -s /tmp/b.sock blk-info >/tmp/info || { cat /tmp/info /tmp/b.log; fail "blk-info"; }
	grep -q "^capacity: *$sectors sectors" /tmp/info || { cat /tmp/info; fail "capacity is not $sectors"; }
	grep -q "^block size: *$block\$" /tmp/info || { cat /tmp/info; fail "block size is not $block"; }
	"$VL_BIN/vl-test-driver" -s /tmp/b.sock blk-verify --size 16 --qd 32 >/tmp/verify ||
		{ cat /tmp/verify /tmp/b.log; fail "blk-verify on $device $*"; }
	grep -q "write-zeroes: ok; discard: ok" /tmp/verify || { cat /tmp/verify; fail "write-zeroes/discard"; }
	kill -TERM "$pid"
	wait "$pid" || { cat /tmp/b.log; fail "vhost-user-blk exited with status $?"; }
	! grep -E ' (warn|error) ' /tmp/b.log || fail "the back-end logged warnings"
}

modprobe loop
for block in 512 4096; do
	truncate -s 64M /tmp/loop$block.img
	dev=$(losetup --find --show --sector-size $block /tmp/loop$block.img) || fail "losetup"
	step "$dev ($block-byte blocks), buffered"
	serve "$dev" 131072 $block
	step "$dev ($block-byte blocks), O_DIRECT"
	serve "$dev" 131072 $block --direct
	magic=$(LC_ALL=C grep -a -o VLDVERY1 /tmp/loop$block.img | wc -l)
	[ "$magic" -ge 32000 ] || fail "only $magic pattern sectors reached /tmp/loop$block.img"
done

step "a mounted device is refused"
mkfs.ext4 -q -F "$dev"
mkdir -p /tmp/mnt
mount "$dev" /tmp/mnt
status=0
"$VL_BIN/vhost-user-blk" -s /tmp/c.sock -b "$dev" 2>/tmp/err || status=$?
[ "$status" = 1 ] || fail "vhost-user-blk on a mounted device: status $status, want 1"
grep -q "the block device is in use" /tmp/err || { cat /tmp/err; fail "the refusal does not say why"; }
umount /tmp/mnt
check_kernel_log
step PASS
