#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The demo itself; runs as root on a kernel that can load our module.
# It grows as the devices land.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${VL_BUILD_DIR:-$src/build}
module=$build/modules/$(uname -r)/virtio_loopback.ko

say() { printf '\n>>> %s\n' "$*"; }

say "loading the transport driver on $(uname -r)"
insmod "$module"
ls -l /dev/virtio-loopback
say "module loaded; the transport is:"
grep virtio_loopback /proc/modules
say "unloading"
rmmod virtio_loopback
say "done"
