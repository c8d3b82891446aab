#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Our own back-ends through the adapter and the transport, in one adapter:
# - vhost-user-blk: mkfs, files, remount, checksums, fio verify; then kill -9
#   of the back-end during fio verify and a restart: verify still passes;
# - vhost-user-input (synthetic source): the events written arrive on the
#   evdev node with the right types, codes and values;
# - vhost-user-rng: /dev/hwrng delivers bytes.
. "$(dirname "$0")/lib.sh"

arm_hung_task_detector 30
load_module
for m in virtio_blk virtio_input virtio_rng evdev; do modprobe "$m"; done
truncate -s 128M /tmp/disk.img

start_blk() {
	"$VL_BIN/vhost-user-blk" -s /tmp/blk.sock -b /tmp/disk.img --num-queues 2 &
	blk_pid=$!
	wait_for_file /tmp/blk.sock 20 || fail "vhost-user-blk did not create its socket"
}
start_blk
"$VL_BIN/vhost-user-input" -s /tmp/input.sock --synthetic /tmp/keys &
input_pid=$!
"$VL_BIN/vhost-user-rng" -s /tmp/rng.sock &
rng_pid=$!
wait_for_file /tmp/input.sock 20 && wait_for_file /tmp/rng.sock 20 || fail "back-ends did not start"

step "one adapter, three devices"
"$VL_BIN/virtio-loopback-adapter" --reconnect-grace 20 \
	-s /tmp/blk.sock -d blk -s /tmp/input.sock -d input -s /tmp/rng.sock -d rng &
adapter_pid=$!
disk=$(find_virtio_disk 30) || fail "no virtio disk appeared"
wait_until 30 '[ -n "$(ls -d /sys/bus/virtio/drivers/virtio_input/virtio*/input/input*/event* 2>/dev/null)" ]' ||
	fail "no evdev node for the input device"
event=/dev/input/$(basename "$(ls -d /sys/bus/virtio/drivers/virtio_input/virtio*/input/input*/event* | head -n1)")
wait_until 30 'grep -q virtio_rng /sys/class/misc/hw_random/rng_current' || fail "no virtio hwrng"

disk_roundtrip "$disk" 32 32

step "input: synthetic events arrive on $event"
"$VL_BIN/vl-evdev-read" --count 8 --timeout 20 "$event" >/tmp/events &
reader=$!
sleep 0.5
printf 'key KEY_A 1\nsyn\nkey KEY_A 0\nsyn\nrel REL_X -7\nrel REL_Y 3\nsyn\nabs ABS_X 1234\n' >>/tmp/keys
printf 'syn\n' >>/tmp/keys
wait "$reader" || { cat /tmp/events; fail "the events did not arrive"; }
cat >/tmp/expected <<'END'
1 30 1
0 0 0
1 30 0
0 0 0
2 0 -7
2 1 3
0 0 0
3 0 1234
END
diff /tmp/expected /tmp/events || fail "the evdev node delivered other events than written"

step "rng: 4 KiB from /dev/hwrng"
dd if=/dev/hwrng of=/tmp/rng bs=4096 count=1 iflag=fullblock status=none || fail "reading /dev/hwrng failed"
[ "$(stat -c %s /tmp/rng)" = 4096 ] || fail "short read from /dev/hwrng"
[ "$(od -An -tx1 -v /tmp/rng | tr -s ' \n' '\n\n' | sort -u | wc -l)" -gt 100 ] ||
	fail "/dev/hwrng bytes do not look random"

step "blk: kill -9 vhost-user-blk during fio verify, restart it"
written=$(awk '{ print $7 }' /sys/block/$disk/stat)
fio --name=verify --filename="/dev/$disk" --rw=randwrite --bs=4k --size=96M \
	--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 \
	--output=/tmp/fio.out >/dev/null 2>&1 &
fio_pid=$!
wait_for_writes "$disk" $((written / 2048 + 4)) || fail "fio did not start writing"
kill -0 "$fio_pid" 2>/dev/null || fail "fio finished before the kill: make the run longer"
kill -9 "$blk_pid"
wait "$blk_pid" 2>/dev/null || true
sleep 1
start_blk
wait "$fio_pid" || { cat /tmp/fio.out; fail "fio verify failed across the back-end restart"; }

step "SIGTERM: the adapter removes the three devices, the back-ends wait for the next one"
stop_cleanly "$adapter_pid" "the adapter"
wait_until 10 '[ "$(loopback_devices)" = 0 ]' || fail "devices remain after the adapter exited"
for p in "$blk_pid" "$input_pid" "$rng_pid"; do stop_cleanly "$p" "a back-end"; done
unload_module
check_kernel_log
step PASS
