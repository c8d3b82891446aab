# SPDX-License-Identifier: Apache-2.0
# Shared helpers for the scripts that run inside the guest (see scripts/vm-run).
# Source it first thing:  . "$(dirname "$0")/lib.sh"
set -eu

VL_SRC_DIR=${VL_SRC_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
VL_BUILD_DIR=${VL_BUILD_DIR:-$VL_SRC_DIR/build}
VL_MODULE=$VL_BUILD_DIR/modules/$(uname -r)/virtio_loopback.ko
VL_BIN=$VL_BUILD_DIR/bin
# Taint bits a freshly loaded out-of-tree, unsigned module sets: O and E.
VL_EXPECTED_TAINT=$(((1 << 12) | (1 << 13)))

_vl_dmesg_start=$(dmesg | wc -l)

step() { echo "=== $*"; }
fail() {
	echo "FAIL: $*" >&2
	echo "--- kernel log since the test started:" >&2
	dmesg | tail -n +"$((_vl_dmesg_start + 1))" >&2
	exit 1
}

load_module() {
	[ -f "$VL_MODULE" ] || fail "module not built for $(uname -r): $VL_MODULE (run 'make')"
	insmod "$VL_MODULE" "$@" || fail "insmod $VL_MODULE failed"
}

unload_module() {
	rmmod virtio_loopback || fail "rmmod virtio_loopback failed"
}

# Fails if the kernel logged a bug, warning or oops since the test started,
# or if the kernel is tainted for anything but an out-of-tree/unsigned module.
check_kernel_log() {
	bad=$(dmesg | tail -n +"$((_vl_dmesg_start + 1))" |
		grep -E 'BUG|WARNING|Oops|[Tt]aint|general protection|hung_task|blocked for more than|INFO: task|refcount_t|use-after-free|leak' |
		grep -v -E 'loading out-of-tree module taints kernel|module verification failed: signature and/or required key missing - tainting kernel' || true)
	[ -z "$bad" ] || fail "kernel log has: $bad"
	tainted=$(cat /proc/sys/kernel/tainted)
	[ $((tainted & ~VL_EXPECTED_TAINT)) -eq 0 ] ||
		fail "kernel taint is $tainted; only out-of-tree/unsigned ($VL_EXPECTED_TAINT) is expected"
}
