#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The demo itself; runs as root on a kernel that can load our module (the
# host, or the guest that scripts/demo.sh boots). Three vhost-user
# back-ends, one adapter, and the kernel's own drivers using the devices.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${VL_BUILD_DIR:-$src/build}
bin=$build/bin
module=$build/modules/$(uname -r)/virtio_loopback.ko
work=$(mktemp -d /tmp/vl-demo.XXXXXX)
pids=""

say() { printf '\n\033[1m>>> %s\033[0m\n' "$*"; }
detail() { printf '    %s\n' "$*"; }
die() {
	printf '\ndemo: FAILED: %s\n' "$*" >&2
	exit 1
}
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	umount "$work/mnt" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
wait_for() { # SECONDS CONDITION
	i=0
	until eval "$2"; do
		i=$((i + 1))
		[ $i -le $(($1 * 20)) ] || return 1
		sleep 0.05
	done
}
ms() { echo $(($(date +%s%N) / 1000000)); }

say "[1/7] loading the transport driver on Linux $(uname -r)"
lsmod | grep -q '^virtio_loopback ' || insmod "$module" || die "insmod $module failed"
for m in virtio_blk virtio_input virtio_rng evdev; do modprobe "$m" 2>/dev/null || true; done
ls -l /dev/virtio-loopback

say "[2/7] starting three vhost-user back-ends"
truncate -s 64M "$work/disk.img"
"$bin/vhost-user-blk" -s "$work/blk.sock" -b "$work/disk.img" --log-level warn &
pids="$pids $!"
"$bin/vhost-user-input" -s "$work/input.sock" --synthetic "$work/keys" --log-level warn &
pids="$pids $!"
"$bin/vhost-user-rng" -s "$work/rng.sock" --log-level warn &
pids="$pids $!"
wait_for 20 '[ -S "$work/blk.sock" ] && [ -S "$work/input.sock" ] && [ -S "$work/rng.sock" ]' ||
	die "the back-ends did not create their sockets"
detail "vhost-user-blk   on $work/blk.sock   (a 64 MiB image)"
detail "vhost-user-input on $work/input.sock (synthetic source: $work/keys)"
detail "vhost-user-rng   on $work/rng.sock   (getrandom)"

say "[3/7] starting one virtio-loopback-adapter for all three"
t0=$(ms)
"$bin/virtio-loopback-adapter" --log-level warn \
	-s "$work/blk.sock" -d blk -s "$work/input.sock" -d input -s "$work/rng.sock" -d rng &
adapter=$!
pids="$pids $adapter"
disk=""
wait_for 30 'disk=$(ls /sys/bus/virtio/drivers/virtio_blk/virtio*/block/ 2>/dev/null | head -n1); [ -n "$disk" ]' ||
	die "no disk appeared"
detail "disk /dev/$disk present $(($(ms) - t0)) ms after the adapter started"
wait_for 10 '[ -e /dev/hwrng ] && grep -q virtio /sys/class/misc/hw_random/rng_current' ||
	die "no virtio hwrng appeared"
event=""
wait_for 10 'event=$(ls -d /sys/bus/virtio/drivers/virtio_input/virtio*/input/input*/event* 2>/dev/null | head -n1); [ -n "$event" ]' ||
	die "no input device appeared"
event=/dev/input/$(basename "$event")
detail "virtio devices: $(ls /sys/bus/virtio/drivers/virtio_blk /sys/bus/virtio/drivers/virtio_input /sys/bus/virtio/drivers/virtio_rng 2>/dev/null | grep -c '^virtio') (blk, input, rng)"

say "[4/7] the new disk"
lsblk -o NAME,SIZE,TYPE,MODEL "/dev/$disk" 2>/dev/null || cat "/sys/block/$disk/size"

say "[5/7] a file system on it: mkfs, write, remount, read back"
mkfs.ext4 -q -F "/dev/$disk" || die "mkfs.ext4 failed"
mkdir -p "$work/mnt"
mount "/dev/$disk" "$work/mnt"
dd if=/dev/urandom of="$work/mnt/data" bs=1M count=16 status=none
before=$(sha256sum "$work/mnt/data" | cut -c1-16)
umount "$work/mnt"
echo 3 >/proc/sys/vm/drop_caches
mount "/dev/$disk" "$work/mnt"
after=$(sha256sum "$work/mnt/data" | cut -c1-16)
df -h "$work/mnt" | tail -n1 | awk '{ printf "    %s: %s used of %s\n", $1, $3, $2 }'
detail "16 MiB written (sha256 $before...), read back after remount (sha256 $after...)"
[ "$before" = "$after" ] || die "the data read back differs"
umount "$work/mnt"

say "[6/7] random bytes from /dev/hwrng ($(cat /sys/class/misc/hw_random/rng_current))"
dd if=/dev/hwrng bs=32 count=1 status=none | od -An -tx1 | sed 's/^/   /'

say "[7/7] typing 'hello' into the synthetic keyboard, reading $event"
"$bin/vl-evdev-read" --no-syn --count 20 --timeout 10 "$event" >"$work/events" &
reader=$!
sleep 0.3
for key in KEY_H KEY_E KEY_L KEY_L KEY_O; do
	printf 'key %s 1\nsyn\nkey %s 0\nsyn\n' "$key" "$key" >>"$work/keys"
done
wait "$reader" || die "the key events did not arrive"
awk '$1 == 1 && $3 == 1 { printf "%s ", $2 } END { print "" }' "$work/events" |
	sed 's/^/    key codes pressed: /'
keys=$(awk '$1 == 1 && $3 == 1 { printf "%s ", $2 }' "$work/events")
[ "$keys" = "35 18 38 38 24 " ] || die "unexpected key codes: $keys"
detail "= h e l l o (KEY_H=35 KEY_E=18 KEY_L=38 KEY_O=24), with key-up events too"

say "teardown: SIGTERM to the adapter"
kill -TERM "$adapter"
wait "$adapter" || die "the adapter did not exit cleanly"
wait_for 10 '[ ! -e /sys/block/$disk ]' || die "the disk did not go away"
detail "the devices are gone; the back-ends keep running for the next adapter"
say "done"
