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

# Starts qemu-storage-daemon exporting IMAGE (a file, or a block device)
# as vhost-user-blk on SOCKET (removing a stale socket first), OPTIONS
# added to the file's blockdev (e.g. cache.direct=on); sets qsd_pid.
start_qsd() { # image socket [num-queues [options]]
	rm -f "$2"
	qsd_driver='file'
	[ ! -b "$1" ] || qsd_driver=host_device
	qemu-storage-daemon \
		--blockdev driver=$qsd_driver,node-name=file,filename="$1"${4:+,$4} \
		--blockdev driver=raw,node-name=disk,file=file \
		--export type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,addr.path="$2",writable=on,num-queues="${3:-1}" &
	qsd_pid=$!
	wait_for_file "$2" 30 || fail "qemu-storage-daemon did not create $2"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The disk checks every block test makes: mkfs.ext4, MIB MiB of files,
# unmount, drop caches, remount, checksums; then fio --verify=crc32c on
# the raw disk over FIO_MIB MiB. disk_roundtrip DISK MIB FIO_MIB
disk_roundtrip() {
	step "mkfs.ext4 on /dev/$1, $2 MiB of files, remount, checksums"
	mkfs.ext4 -q -F "/dev/$1" || fail "mkfs.ext4 failed"
	mkdir -p /tmp/mnt
	mount "/dev/$1" /tmp/mnt || fail "mount failed"
	n=0
	while [ $((n * 8)) -lt "$2" ]; do
		n=$((n + 1))
		dd if=/dev/urandom of=/tmp/mnt/file$n bs=1M count=8 status=none || fail "writing file$n failed"
	done
	(cd /tmp/mnt && sha256sum file*) >/tmp/sums
	sync
	umount /tmp/mnt || fail "umount failed"
	echo 3 >/proc/sys/vm/drop_caches
	mount "/dev/$1" /tmp/mnt || fail "remount failed"
	(cd /tmp/mnt && sha256sum -c --quiet /tmp/sums) || fail "checksums differ after remount"
	umount /tmp/mnt
	step "fio --verify=crc32c on /dev/$1 ($3 MiB)"
	fio --name=verify --filename="/dev/$1" --rw=randwrite --bs=4k --size="$3M" \
		--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --do_verify=1 \
		--output=/tmp/fio.out >/dev/null 2>&1 || { cat /tmp/fio.out; fail "fio verify failed"; }
}

# Stops a process with SIGTERM and fails unless it exits with status 0.
stop_cleanly() { # pid what
	kill -TERM "$1"
	wait "$1" || fail "$2 exited with status $? on SIGTERM"
}

# Starts QEMU's virtiofsd sharing DIR on SOCKET; sets vfs_pid. The chroot
# sandbox keeps it one process (killing vfs_pid kills the back-end).
start_virtiofsd() { # dir socket
	rm -f "$2"
	/usr/lib/qemu/virtiofsd --socket-path="$2" -o source="$1" -o sandbox=chroot \
		-o cache=none -o log_level=warn &
	vfs_pid=$!
	wait_for_file "$2" 30 || fail "virtiofsd did not create $2"
}

# Starts DPDK's dpdk-testpmd with one vhost-user port per SOCKET (no
# hugepages, no PCI, a small mbuf pool), forwarding each port's packets to
# its pair (io mode), with TESTPMD_QUEUES (default 1) receive/transmit
# queue pairs per port; sets testpmd_pid. Its log is /tmp/testpmd.log.
start_testpmd() { # socket...
	vdevs= port=0 queues=${TESTPMD_QUEUES:-1}
	for sock in "$@"; do
		rm -f "$sock"
		vdevs="$vdevs --vdev net_vhost$port,iface=$sock,queues=$queues"
		port=$((port + 1))
	done
	# shellcheck disable=SC2086 # one word per option
	dpdk-testpmd -l 0,1 --no-huge -m 64 --no-pci --no-shconf $vdevs \
		-- --forward-mode=io --rxq="$queues" --txq="$queues" --total-num-mbufs=4096 \
		--disable-link-check --stats-period=60 \
		>/tmp/testpmd.log 2>&1 &
	testpmd_pid=$!
	for sock in "$@"; do
		wait_until 30 "[ -e $sock ] || ! kill -0 $testpmd_pid 2>/dev/null" && [ -e "$sock" ] ||
			{ cat /tmp/testpmd.log; fail "dpdk-testpmd did not create $sock"; }
	done
}

# The network interfaces bound by virtio_net, one a line.
virtio_net_interfaces() {
	for n in /sys/bus/virtio/drivers/virtio_net/virtio*/net/*; do
		[ -e "$n" ] && basename "$n"
	done
	return 0
}

# Runs a command that must fail, and within SECONDS (not hang):
# must_fail_within SECONDS WHAT COMMAND...
must_fail_within() {
	secs=$1 what=$2
	shift 2
	rc=0
	timeout "$secs" "$@" >/dev/null 2>&1 || rc=$?
	[ $rc -ne 124 ] || fail "$what hung for $secs s"
	[ $rc -ne 0 ] || fail "$what succeeded"
}

# The end of every adapter test: adapter and back-ends (qsd_pid, and any
# pids given) stopped, module unloaded, kernel log checked.
finish_adapter_test() { # [backend-pid...]
	[ -z "${adapter_pid:-}" ] || stop_cleanly "$adapter_pid" "the adapter"
	for pid in ${qsd_pid:-} "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	unload_module
	check_kernel_log
	step PASS
}

# Waits until DISK has written at least MIB MiB since boot (I/O under way).
wait_for_writes() { # disk mib
	wait_until 30 "[ \$(awk '{ print \$7 }' /sys/block/$1/stat) -ge $(($2 * 2048)) ]"
}
