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

step "mkfs.ext4 and 64 MiB of files"
mkfs.ext4 -q -F "/dev/$disk" || fail "mkfs.ext4 failed"
mkdir -p /tmp/mnt
mount "/dev/$disk" /tmp/mnt || fail "mount failed"
for i in 1 2 3 4 5 6 7 8; do
	dd if=/dev/urandom of=/tmp/mnt/file$i bs=1M count=8 status=none || fail "write file$i failed"
done
(cd /tmp/mnt && sha256sum file*) >/tmp/sums
sync
umount /tmp/mnt || fail "umount failed"
echo 3 >/proc/sys/vm/drop_caches
mount "/dev/$disk" /tmp/mnt || fail "remount failed"
(cd /tmp/mnt && sha256sum -c --quiet /tmp/sums) || fail "checksums differ after remount"
umount /tmp/mnt

step "fio --verify=crc32c on /dev/$disk"
fio --name=verify --filename="/dev/$disk" --rw=randwrite --bs=4k --size=64M \
	--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 \
	--numjobs=1 --output-format=terse --terse-version=3 >/tmp/fio.out 2>&1 ||
	{ cat /tmp/fio.out; fail "fio verify failed"; }

step "stop the device"
kill "$dev_pid"
wait "$dev_pid" || fail "vl-testdev exited with an error"
wait_until 10 '[ ! -e /sys/block/$disk ]' || fail "/dev/$disk is still there after the device was closed"
unload_module
check_kernel_log
step PASS
