#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The module as DKMS builds it (packaging/test/dkms-build.sh, from the
# source tree make install and virtio-loopback-dkms ship) loads, serves a
# test device and unloads cleanly. VL_DKMS_MODULES: the folder with
# <kernel-release>/virtio_loopback.ko.
. "$(dirname "$0")/lib.sh"

[ -n "${VL_DKMS_MODULES:-}" ] || fail "VL_DKMS_MODULES is not set"
VL_MODULE=$VL_DKMS_MODULES/$(uname -r)/virtio_loopback.ko
step "load the DKMS-built $VL_MODULE"
load_module
[ "$(cat /sys/module/virtio_loopback/srcversion)" = "$(modinfo -F srcversion "$VL_MODULE")" ] ||
	fail "the loaded module is not the DKMS-built one"
modprobe virtio_rng
step "an rng test device with pattern 0x3c"
"$VL_BIN/vl-testdev" --rng=0x3c --ready-file=/tmp/ready &
dev_pid=$!
wait_for_file /tmp/ready 30 || fail "the test device did not come up"
case $(cat /sys/class/misc/hw_random/rng_current) in
virtio_rng*) ;;
*) fail "virtio_rng is not the current hwrng" ;;
esac
dd if=/dev/hwrng of=/tmp/rng bs=4096 count=4 iflag=fullblock 2>/dev/null || fail "reading /dev/hwrng failed"
values=$(od -An -v -tx1 /tmp/rng | tr -s ' \n' '\n\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
[ "$values" = "3c " ] || fail "/dev/hwrng returned bytes other than the pattern: $values"
step "stop the device, unload"
stop_cleanly "$dev_pid" vl-testdev
wait_until 10 '[ "$(loopback_devices)" = 0 ]' || fail "the device is still there"
unload_module
check_kernel_log
step PASS
