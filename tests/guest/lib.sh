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

# The last references to the module (window files released by a kernel
# worker's delayed fput) can drop a moment after the devices are gone.
unload_module() {
	i=0
	until rmmod virtio_loopback 2>/tmp/rmmod.err; do
		i=$((i + 1))
		[ $i -le 50 ] || fail "rmmod virtio_loopback failed: $(cat /tmp/rmmod.err)"
		sleep 0.1
	done
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

# wait_for_file PATH SECONDS
wait_for_file() {
	i=0
	while [ ! -e "$1" ]; do
		i=$((i + 1))
		[ $i -le $(($2 * 10)) ] || return 1
		sleep 0.1
	done
}

# wait_until SECONDS 'shell condition'
wait_until() {
	i=0
	while ! eval "$2"; do
		i=$((i + 1))
		[ $i -le $(($1 * 10)) ] || return 1
		sleep 0.1
	done
}

# The block device (vdX) a virtio device bound by virtio_blk got, waiting
# up to SECONDS for it: find_virtio_disk SECONDS
find_virtio_disk() {
	i=0
	while :; do
		for d in /sys/bus/virtio/drivers/virtio_blk/virtio*/block/*; do
			[ -e "$d" ] && { basename "$d"; return 0; }
		done
		i=$((i + 1))
		[ $i -le $(($1 * 10)) ] || return 1
		sleep 0.1
	done
}

# Arms the hung-task detector so that a task stuck in D state for more than
# SECONDS is reported (check_kernel_log then fails).
arm_hung_task_detector() {
	[ -w /proc/sys/kernel/hung_task_timeout_secs ] || return 0
	echo "$1" >/proc/sys/kernel/hung_task_timeout_secs
	echo 1 >/proc/sys/kernel/hung_task_warnings 2>/dev/null || true
}

# Number of devices the transport still has (parents in sysfs).
loopback_devices() {
	ls /sys/devices/virtual/misc/virtio-loopback/ 2>/dev/null | grep -c '^virtio-loopback\.' || true
}

# Starts qemu-storage-daemon exporting IMAGE as vhost-user-blk on SOCKET
# (removing a stale socket first); sets qsd_pid.
start_qsd() { # image socket [num-queues]
	rm -f "$2"
	qemu-storage-daemon \
		--blockdev driver=file,node-name=file,filename="$1" \
		--blockdev driver=raw,node-name=disk,file=file \
		--export type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,addr.path="$2",writable=on,num-queues="${3:-1}" &
	qsd_pid=$!
	wait_for_file "$2" 30 || fail "qemu-storage-daemon did not create $2"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
