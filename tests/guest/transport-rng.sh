#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# virtio-rng through the transport, served by vl-testdev: /dev/hwrng
# returns exactly the device's pattern; the device goes away on kill and
# the module unloads cleanly.
. "$(dirname "$0")/lib.sh"

load_module
modprobe virtio_rng
step "start an rng test device with pattern 0xa5"
"$VL_BIN/vl-testdev" --rng=0xa5 --ready-file=/tmp/ready &
dev_pid=$!
wait_for_file /tmp/ready 30 || fail "the test device did not come up"
name=$(ls /sys/bus/virtio/drivers/virtio_rng/ | grep virtio || true)
[ -n "$name" ] || fail "virtio_rng did not bind a device"
current=$(cat /sys/class/misc/hw_random/rng_current)
step "hwrng: $current"
case $current in virtio_rng*) ;; *) fail "the current hwrng is '$current', not virtio_rng" ;; esac
step "read 64 KiB from /dev/hwrng"
dd if=/dev/hwrng of=/tmp/rng bs=4096 count=16 iflag=fullblock 2>/dev/null || fail "reading /dev/hwrng failed"
size=$(stat -c %s /tmp/rng)
[ "$size" = 65536 ] || fail "read $size bytes, want 65536"
values=$(od -An -v -tx1 /tmp/rng | tr -s ' \n' '\n\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
[ "$values" = "a5 " ] || fail "/dev/hwrng returned bytes other than the pattern: $values"
step "stop the device"
kill "$dev_pid"
wait "$dev_pid" || fail "vl-testdev exited with an error"
wait_until 10 '[ -z "$(ls /sys/bus/virtio/drivers/virtio_rng/ | grep virtio)" ]' ||
	fail "the virtio device is still there after its file was closed"
unload_module
check_kernel_log
step PASS
