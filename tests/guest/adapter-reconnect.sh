#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Back-end loss through the adapter, with qemu-storage-daemon as back-end:
# 1. kill -9 the back-end during a fio verify run and restart it: the
#    adapter reconnects, the kernel hands it the unfinished requests, and
#    fio's verify passes with no error;
# 2. kill -9 it and do not restart it: after the grace period fio gets I/O
#    errors, the disk goes away, and the kernel log stays clean.
. "$(dirname "$0")/lib.sh"

# Room for qemu-storage-daemon to restart on a slow, shared machine (case
# 1 restarts it 1 s after the kill); case 2 waits it out.
GRACE=10
arm_hung_task_detector 30
load_module
modprobe virtio_blk
truncate -s 128M /tmp/disk.img
start_qsd /tmp/disk.img /tmp/vub.sock 2
"$VL_BIN/virtio-loopback-adapter" -s /tmp/vub.sock -d blk --reconnect-grace "$GRACE" &
adapter_pid=$!
disk=$(find_virtio_disk 30) || fail "no virtio disk appeared"

step "case 1: kill -9 the back-end during fio verify, restart it after 1 s"
fio --name=verify --filename="/dev/$disk" --rw=randwrite --bs=4k --size=96M \
	--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 \
	--output=/tmp/fio1.out >/dev/null 2>&1 &
fio_pid=$!
wait_for_writes "$disk" 4 || fail "fio did not start writing"
kill -0 "$fio_pid" 2>/dev/null || fail "fio finished before the back-end was killed: make the run longer"
kill -9 "$qsd_pid"
wait "$qsd_pid" 2>/dev/null || true
sleep 1
start_qsd /tmp/disk.img /tmp/vub.sock 2
wait "$fio_pid" || { cat /tmp/fio1.out; fail "fio verify failed across the back-end restart"; }
grep -q "err= 0" /tmp/fio1.out || { cat /tmp/fio1.out; fail "fio reported errors"; }
step "fio verify passed across the restart"

step "case 2: kill -9 the back-end during fio and leave it dead"
fio --name=load --filename="/dev/$disk" --rw=randrw --bs=4k --ioengine=libaio \
	--iodepth=16 --direct=1 --time_based --runtime=120 --output=/tmp/fio2.out >/dev/null 2>&1 &
fio_pid=$!
sleep 2
t0=$(now_ms)
kill -9 "$qsd_pid"
bound=$((GRACE + 10))
wait_until $bound '! kill -0 $fio_pid 2>/dev/null' || fail "fio still runs $bound s after the kill"
elapsed=$(($(now_ms) - t0))
fio_status=0
wait "$fio_pid" || fio_status=$?
[ "$fio_status" != 0 ] || fail "fio reported success; I/O errors were expected"
step "fio ended with I/O errors ${elapsed} ms after the kill (grace ${GRACE} s)"
wait_until 10 '[ ! -e /sys/block/$disk ]' || fail "/dev/$disk is still there"

step "the back-end returns: the adapter creates a fresh disk"
start_qsd /tmp/disk.img /tmp/vub.sock 2
disk=$(find_virtio_disk 30) || fail "no virtio disk after the back-end came back"
dd if="/dev/$disk" of=/dev/null bs=1M count=16 iflag=direct status=none || fail "the fresh disk does not read"

finish_adapter_test
