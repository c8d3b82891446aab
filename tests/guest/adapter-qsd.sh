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
qemu-storage-daemon \
	--blockdev driver=file,node-name=file,filename=/tmp/disk.img \
	--blockdev driver=raw,node-name=disk,file=file \
	--export type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,addr.path=/tmp/vub.sock,writable=on,num-queues=2 &
qsd_pid=$!
wait_for_file /tmp/vub.sock 30 || fail "qemu-storage-daemon did not create its socket"

step "virtio-loopback-adapter -s /tmp/vub.sock -d blk"
"$VL_BIN/virtio-loopback-adapter" -s /tmp/vub.sock -d blk &
adapter_pid=$!
disk=$(find_virtio_disk 30) || fail "no virtio disk appeared"
step "disk /dev/$disk: $(cat /sys/block/$disk/size) sectors, $(ls /sys/block/$disk/mq | wc -l) queue(s)"
[ "$(cat /sys/block/$disk/size)" = 524288 ] || fail "wrong capacity"

step "mkfs.ext4, 32 MiB of files, remount, checksums"
mkfs.ext4 -q -F "/dev/$disk" || fail "mkfs.ext4 failed"
mkdir -p /tmp/mnt
mount "/dev/$disk" /tmp/mnt || fail "mount failed"
for i in 1 2 3 4; do
	dd if=/dev/urandom of=/tmp/mnt/file$i bs=1M count=8 status=none || fail "write failed"
done
(cd /tmp/mnt && sha256sum file*) >/tmp/sums
umount /tmp/mnt
echo 3 >/proc/sys/vm/drop_caches
mount "/dev/$disk" /tmp/mnt || fail "remount failed"
(cd /tmp/mnt && sha256sum -c --quiet /tmp/sums) || fail "checksums differ after remount"
umount /tmp/mnt

step "fio --verify=crc32c"
fio --name=verify --filename="/dev/$disk" --rw=randwrite --bs=4k --size=32M \
	--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 \
	--output=/tmp/fio.out >/dev/null 2>&1 || { cat /tmp/fio.out; fail "fio verify failed"; }

step "SIGTERM the adapter"
kill -TERM "$adapter_pid"
wait "$adapter_pid" || fail "the adapter exited with status $? on SIGTERM"
wait_until 10 '[ ! -e /sys/block/$disk ]' || fail "/dev/$disk is still there"
kill -TERM "$qsd_pid"
wait "$qsd_pid" 2>/dev/null || true
unload_module
check_kernel_log
step PASS
