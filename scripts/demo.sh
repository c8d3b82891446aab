#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make demo: show virtio-loopback working. On a machine that can load the
# module, run the demo right here; otherwise (no module loading, as on the
# development machines) boot a guest with scripts/vm-run and run it there.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
guest_script=$src/scripts/demo-guest.sh

can_load_modules() {
	[[ $EUID == 0 ]] || return 1
	[[ -f $src/build/modules/$(uname -r)/virtio_loopback.ko ]] || return 1
	[[ $(cat /proc/sys/kernel/modules_disabled 2>/dev/null) == 0 ]] || return 1
	lsmod >/dev/null 2>&1
}

if can_load_modules && [[ ${VL_DEMO_IN_GUEST:-0} != 1 ]]; then
	echo "demo: running on this machine's kernel $(uname -r)"
	exec "$guest_script"
fi
echo "demo: this kernel cannot load our module; booting a 6.12 guest (about 5 s)..."
exec "$src/scripts/vm-run" -k 6.12 -t 300 -e "VL_BUILD_DIR=$src/build" -- "$guest_script"
