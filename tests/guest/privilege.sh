#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# What it takes to run without root. The back-end runs as an unprivileged
# user (uid 1000) that owns its image and socket folder and never touches
# /dev/virtio-loopback; the adapter runs as another unprivileged user
# (uid 1001) that is in the node's group (gid 1500), as the udev rule in the
# README grants. The same adapter without that group is refused, with a
# message that says what to do.
. "$(dirname "$0")/lib.sh"

load_module
modprobe virtio_blk
# What the udev rule does: the node belongs to a group, mode 0660.
chgrp 1500 /dev/virtio-loopback
chmod 0660 /dev/virtio-loopback

mkdir -p /tmp/priv
truncate -s 64M /tmp/priv/disk.img
chown -R 1000:1000 /tmp/priv
chmod 0750 /tmp/priv

# setpriv execs the program, so $! is the program's pid. The adapter is in
# the node's group and in the back-end's group (to reach its socket).
AS_BACKEND="setpriv --reuid=1000 --regid=1000 --clear-groups"
AS_ADAPTER="setpriv --reuid=1001 --regid=1001 --groups=1500,1000"

step "vhost-user-blk as uid 1000"
$AS_BACKEND "$VL_BIN/vhost-user-blk" -s /tmp/priv/blk.sock -b /tmp/priv/disk.img &
blk_pid=$!
wait_for_file /tmp/priv/blk.sock 20 || fail "the unprivileged back-end did not start"
$AS_BACKEND sh -c 'exec 3<>/dev/virtio-loopback' 2>/dev/null &&
	fail "uid 1000 could open /dev/virtio-loopback; it must not"

step "the adapter as uid 1001 without the node's group is refused"
out=$(setpriv --reuid=1001 --regid=1001 --groups=1000 \
	"$VL_BIN/virtio-loopback-adapter" -s /tmp/priv/blk.sock -d blk 2>&1) &&
	fail "the adapter started without access to the node"
echo "$out" | grep -q "Permission denied" || fail "unexpected message: $out"
echo "$out" | grep -q "udev rule" || fail "the message does not say what to do: $out"
step "it says: $(echo "$out" | tail -n1 | cut -c1-160)"

step "the adapter as uid 1001 in the node's group"
$AS_ADAPTER "$VL_BIN/virtio-loopback-adapter" -s /tmp/priv/blk.sock -d blk &
adapter_pid=$!
disk=$(find_virtio_disk 30) || fail "no disk with the unprivileged adapter"
fio --name=verify --filename="/dev/$disk" --rw=randwrite --bs=4k --size=16M --ioengine=libaio \
	--iodepth=8 --direct=1 --verify=crc32c --output=/tmp/fio.out >/dev/null 2>&1 ||
	{ cat /tmp/fio.out; fail "fio verify failed"; }
grep -q "^Uid:.*1000" "/proc/$blk_pid/status" || fail "the back-end does not run as uid 1000"
grep -q "^Uid:.*1001" "/proc/$adapter_pid/status" || fail "the adapter does not run as uid 1001"

stop_cleanly "$adapter_pid" "the adapter"
stop_cleanly "$blk_pid" "the back-end"
unload_module
check_kernel_log
step PASS
