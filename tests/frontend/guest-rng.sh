#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs in the guest of qemu-rng.sh: the guest's own virtio_rng driver uses
# the vhost-user-rng-pci device that QEMU connects to our back-end.
set -eu

fail() {
	echo "FAIL: $*" >&2
	dmesg | tail -n 30 >&2
	exit 1
}

echo "=== modprobe virtio_rng"
modprobe virtio_rng
i=0
until grep -q '^virtio_rng' /sys/class/misc/hw_random/rng_current 2>/dev/null; do
	i=$((i + 1))
	[ $i -le 100 ] || fail "the current hwrng is '$(cat /sys/class/misc/hw_random/rng_current 2>&1)', not virtio_rng"
	sleep 0.1
done
echo "=== hwrng: $(cat /sys/class/misc/hw_random/rng_current)"

echo "=== read 64 KiB from /dev/hwrng"
dd if=/dev/hwrng of=/tmp/rng bs=4096 count=16 iflag=fullblock 2>/tmp/dd.err || fail "reading /dev/hwrng failed: $(cat /tmp/dd.err)"
size=$(stat -c %s /tmp/rng)
[ "$size" = 65536 ] || fail "read $size bytes, want 65536"
# 64 KiB of entropy holds every byte value; a constant or patterned buffer
# (zeros, a fill byte) holds a few.
distinct=$(od -An -v -tx1 /tmp/rng | tr -s ' \n' '\n\n' | sed '/^$/d' | sort -u | wc -l)
echo "=== $distinct distinct byte values"
[ "$distinct" -ge 200 ] || fail "/dev/hwrng returned only $distinct distinct byte values"
echo "=== PASS"
