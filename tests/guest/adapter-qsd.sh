#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A third-party back-end, unmodified: qemu-storage-daemon's vhost-user-blk
# export, through virtio-loopback-adapter and the transport. The disk gets
# mkfs, files, remount, checksums and fio verify; SIGTERM removes it.
. "$(dirname "$0")/lib.sh"

arm_hung_task_detector 30
load_module
modprobe virtio_blk
truncate -s 256M /tmp/disk.img
step "qemu-storage-daemon --export type=vhost-user-blk"
start_qsd /tmp/disk.img /tmp/vub.sock 2

step "virtio-loopback-adapter -s /tmp/vub.sock -d blk"
"$VL_BIN/virtio-loopback-adapter" -s /tmp/vub.sock -d blk &
adapter_pid=$!
disk=$(find_virtio_disk 30) || fail "no virtio disk appeared"
step "disk /dev/$disk: $(cat /sys/block/$disk/size) sectors, $(ls /sys/block/$disk/mq | wc -l) queue(s)"
[ "$(cat /sys/block/$disk/size)" = 524288 ] || fail "wrong capacity"

disk_roundtrip "$disk" 32 32

step "SIGTERM the adapter: the disk goes away"
stop_cleanly "$adapter_pid" "the adapter"
wait_until 10 '[ ! -e /sys/block/$disk ]' || fail "/dev/$disk is still there"
adapter_pid=
finish_adapter_test
