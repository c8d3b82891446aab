#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# virtio-fs with a third-party back-end, unmodified: QEMU's virtiofsd shares
# a directory, virtio-loopback-adapter -d fs --tag fills the config space
# virtiofsd does not provide, and the kernel mounts it with -t virtiofs.
# Files created on either side show on the other, fio verifies a file in
# the mount, and killing virtiofsd fails the mount's I/O (after the grace
# period) without hanging it or umount.
. "$(dirname "$0")/lib.sh"

arm_hung_task_detector 30
load_module
# A module on 6.1, built in on 6.12.
modprobe virtiofs 2>/dev/null || true
grep -qw virtiofs /proc/filesystems || fail "this kernel has no virtiofs"
share=/tmp/share
mnt=/tmp/mnt
mkdir -p "$share" "$mnt"
echo "written on the host side" >"$share/from-host"

step "virtiofsd -o source=$share"
start_virtiofsd "$share" /tmp/vfs.sock
step "virtio-loopback-adapter -s /tmp/vfs.sock -d fs --tag vltest"
"$VL_BIN/virtio-loopback-adapter" --reconnect-grace 2 -s /tmp/vfs.sock -d fs --tag vltest &
adapter_pid=$!
# The tag is known once virtio-fs probed the device.
wait_until 30 "mount -t virtiofs vltest $mnt 2>/dev/null" || fail "mount -t virtiofs vltest failed"
grep -q "^vltest $mnt virtiofs" /proc/mounts || fail "no virtiofs mount of vltest"

step "files made on either side show on the other"
[ "$(cat "$mnt/from-host")" = "written on the host side" ] || fail "from-host differs in the mount"
echo "written in the mount" >"$mnt/from-mount"
[ "$(cat "$share/from-mount")" = "written in the mount" ] || fail "from-mount differs on the host side"
mkdir "$share/dir-from-host"
[ -d "$mnt/dir-from-host" ] || fail "a directory made on the host side is not in the mount"
rm "$mnt/from-host"
[ ! -e "$share/from-host" ] || fail "a file removed in the mount is still on the host side"

step "fio --verify=crc32c on a file in the mount (4 MiB in 64 KiB blocks)"
timeout 60 fio --name=verify --filename="$mnt/fio.dat" --rw=randwrite --bs=64k --size=4M \
	--ioengine=psync --verify=crc32c --do_verify=1 --output=/tmp/fio.out >/dev/null 2>&1 ||
	{ cat /tmp/fio.out; fail "fio verify in the mount failed"; }
[ "$(sha256sum <"$mnt/fio.dat")" = "$(sha256sum <"$share/fio.dat")" ] ||
	fail "fio.dat differs between the mount and the host side"

step "kill -9 virtiofsd: I/O fails after the grace period, umount does not hang"
kill -KILL "$vfs_pid"
wait "$vfs_pid" 2>/dev/null || true
t0=$(now_ms)
must_fail_within 20 "reading a file in the mount of a dead virtiofsd" cat "$mnt/from-mount"
must_fail_within 10 "creating a file in the mount of a dead virtiofsd" touch "$mnt/after-kill"
step "I/O failed after $(($(now_ms) - t0)) ms"
timeout 20 umount "$mnt" || fail "umount of the dead mount failed or hung (status $?)"
! grep -q " $mnt " /proc/mounts || fail "$mnt is still mounted"
wait_until 10 '[ "$(loopback_devices)" = 0 ]' || fail "the device was not removed"
finish_adapter_test
