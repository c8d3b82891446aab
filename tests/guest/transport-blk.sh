#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# virtio-blk through the transport, served by vl-testdev's RAM disk:
# mkfs.ext4, mount, 64 MiB of files, remount, checksums, fio verify.
. "$(dirname "$0")/lib.sh"

arm_hung_task_detector 20
load_module
modprobe virtio_blk
step "start a 256 MiB RAM disk test device with 2 queues"
"$VL_BIN/vl-testdev" --blk=256 --queues=2 --ready-file=/tmp/ready &
dev_pid=$!
wait_for_file /tmp/ready 30 || fail "the test device did not come up"
disk=$(find_virtio_disk 30) || fail "no virtio disk appeared"
step "disk /dev/$disk: $(cat /sys/block/$disk/size) sectors"
[ "$(cat /sys/block/$disk/size)" = 524288 ] || fail "wrong capacity"

disk_roundtrip "$disk" 64 64

step "stop the device"
kill "$dev_pid"
wait "$dev_pid" || fail "vl-testdev exited with an error"
wait_until 10 '[ ! -e /sys/block/$disk ]' || fail "/dev/$disk is still there after the device was closed"
unload_module
check_kernel_log
step PASS
