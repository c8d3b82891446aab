#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs in the guest of qemu-blk.sh: the guest's own virtio_blk driver uses
# the vhost-user-blk-pci disk that QEMU connects to our back-end.
# Usage: guest-blk.sh SECTORS SERIAL
. "$(dirname "$0")/../guest/lib.sh"

sectors=$1
serial=$2

step "modprobe virtio_blk"
modprobe virtio_blk
disk=$(find_virtio_disk 30) || fail "no virtio disk appeared"
queues=$(ls /sys/block/$disk/mq | wc -l)
step "disk /dev/$disk: $(cat /sys/block/$disk/size) sectors, $queues queues, serial '$(cat /sys/block/$disk/serial)'"
[ "$(cat /sys/block/$disk/size)" = "$sectors" ] || fail "capacity is not $sectors sectors"
[ "$(cat /sys/block/$disk/serial)" = "$serial" ] || fail "serial is not $serial"
[ "$queues" = 2 ] || fail "$queues queues, want 2"
[ "$(cat /sys/block/$disk/queue/discard_max_bytes)" != 0 ] || fail "no discard support"
[ "$(cat /sys/block/$disk/queue/write_zeroes_max_bytes)" != 0 ] || fail "no write-zeroes support"

step "fio --verify=crc32c, one job per CPU (so both queues)"
fio --name=verify --filename="/dev/$disk" --rw=randwrite --bs=4k --size=32M \
	--offset_increment=32M --numjobs=2 --cpus_allowed=0-1 --cpus_allowed_policy=split \
	--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 \
	--output=/tmp/fio.out >/dev/null 2>&1 || { cat /tmp/fio.out; fail "fio verify failed"; }
grep -q "err= 0" /tmp/fio.out || { cat /tmp/fio.out; fail "fio reported errors"; }

step "write-zeroes (blkdiscard -z) and discard (blkdiscard)"
blkdiscard -z -o 1048576 -l 4194304 "/dev/$disk" || fail "BLKZEROOUT failed"
cmp -n 4194304 -i 1048576:0 "/dev/$disk" /dev/zero || fail "write-zeroes left data behind"
blkdiscard -o 8388608 -l 8388608 "/dev/$disk" || fail "BLKDISCARD failed"

step "mkfs.ext4, 32 MiB of files, remount, checksums, fstrim"
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
fstrim /tmp/mnt || fail "fstrim failed"
umount /tmp/mnt
sync
# For the host, which checks the image: "=== sum HASH NAME".
while read -r sum name; do
	echo "=== sum $sum $name"
done </tmp/sums
check_kernel_log
step PASS
