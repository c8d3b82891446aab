#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The adapter's control plane with qemu-storage-daemon as back-end:
# 1. it is off the data path: fio reaches the same throughput with the
#    adapter stopped (SIGSTOP) as with it running;
# 2. reset, stop and restart of the virtio device (driver unbind/bind,
#    reloading virtio_blk) work without restarting anything.
. "$(dirname "$0")/lib.sh"

arm_hung_task_detector 30
load_module
modprobe virtio_blk
truncate -s 128M /tmp/disk.img
start_qsd /tmp/disk.img /tmp/vub.sock 1
"$VL_BIN/virtio-loopback-adapter" -s /tmp/vub.sock -d blk &
adapter_pid=$!
disk=$(find_virtio_disk 30) || fail "no virtio disk appeared"

iops() { # fio 4k random reads for 3 s; prints IOPS
	fio --name=rr --filename="/dev/$disk" --rw=randread --bs=4k --ioengine=libaio \
		--iodepth=8 --direct=1 --time_based --runtime=3 --size=64M \
		--output-format=terse --terse-version=3 2>/dev/null | cut -d';' -f8
}
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

step "1: throughput with the adapter running and stopped, interleaved"
r1=$(iops); kill -STOP "$adapter_pid"; s1=$(iops); kill -CONT "$adapter_pid"
r2=$(iops); kill -STOP "$adapter_pid"; s2=$(iops); kill -CONT "$adapter_pid"
r3=$(iops); kill -STOP "$adapter_pid"; s3=$(iops); kill -CONT "$adapter_pid"
running=$(median3 "$r1" "$r2" "$r3")
stopped=$(median3 "$s1" "$s2" "$s3")
step "IOPS running: $r1 $r2 $r3 (median $running); stopped: $s1 $s2 $s3 (median $stopped)"
# The guest is emulated and noisy: compare medians within this run, and
# only catch an adapter on the data path (which would stall I/O entirely).
[ "$stopped" -gt $((running / 2)) ] ||
	fail "with the adapter stopped fio did $stopped IOPS against $running: the adapter is on the data path"

step "2a: unbind and rebind the driver"
dev=$(basename "$(readlink -f /sys/block/$disk/device)")
echo "$dev" >/sys/bus/virtio/drivers/virtio_blk/unbind || fail "unbind failed"
wait_until 10 '[ ! -e /sys/block/$disk ]' || fail "the disk stayed after unbind"
echo "$dev" >/sys/bus/virtio/drivers/virtio_blk/bind || fail "bind failed"
disk=$(find_virtio_disk 30) || fail "no disk after rebind"
dd if="/dev/$disk" of=/dev/null bs=1M count=8 iflag=direct status=none || fail "read after rebind failed"

step "2b: reload virtio_blk"
rmmod virtio_blk || fail "rmmod virtio_blk failed"
modprobe virtio_blk
disk=$(find_virtio_disk 30) || fail "no disk after reloading virtio_blk"
fio --name=verify --filename="/dev/$disk" --rw=randwrite --bs=4k --size=8M --ioengine=libaio \
	--iodepth=8 --direct=1 --verify=crc32c --output=/tmp/fio.out >/dev/null 2>&1 ||
	{ cat /tmp/fio.out; fail "fio verify failed after reloading virtio_blk"; }

finish_adapter_test
