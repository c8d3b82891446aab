#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# QEMU as the front-end of our vhost-user-blk: the back-end serves a
# temporary raw image on the host, QEMU gives the guest a two-queue
# vhost-user-blk-pci disk on it, and the guest's own virtio_blk driver uses
# it (guest-blk.sh: fio verify, discard and write-zeroes, ext4 with files).
# Back on the host, the image must hold that file system and those files,
# byte for byte; SIGTERM must end the back-end with status 0.
#
# Usage: qemu-blk.sh [BUILD_DIR] [VM-RUN OPTION...]
. "$(dirname "$0")/qemu-lib.sh"
[ $# -gt 0 ] && shift

image=$work/disk.img
truncate -s 256M "$image"
start_backend vhost-user-blk --blk-file "$image" --num-queues 2 --serial vl-qemu-blk
run_guest "$@" \
	-Q -chardev -Q "socket,id=blk0,path=$sock" \
	-Q -device -Q vhost-user-blk-pci,chardev=blk0,num-queues=2 \
	-- "$src/tests/frontend/guest-blk.sh" 524288 vl-qemu-blk
stop_backend

# The guest printed the checksums of the files it wrote; the image on the
# host must have them (debugfs reads ext4 without mounting it).
e2fsck -fn "$image" >"$work/fsck.out" 2>&1 || { cat "$work/fsck.out"; fail "e2fsck found errors in the image"; }
files=$(grep -c '^=== sum ' "$work/guest.log" || true)
[ "$files" -eq 4 ] || fail "the guest reported $files file checksums, want 4"
grep '^=== sum ' "$work/guest.log" | tr -d '\r' | while read -r _ _ sum name; do
	got=$(debugfs -R "cat /$name" "$image" 2>/dev/null | sha256sum | cut -d' ' -f1)
	[ "$got" = "$sum" ] || fail "$name in the image has checksum $got, the guest wrote $sum"
done
# Both queues carried I/O (fio ran a job on each CPU).
for q in 0 1; do
	grep -Eq "queue $q stops after [1-9][0-9]* requests" "$log" || fail "queue $q served no request"
done
echo "PASS: a guest used vhost-user-blk through QEMU's vhost-user-blk-pci (2 queues); the image holds its files; exit 0 on SIGTERM"
