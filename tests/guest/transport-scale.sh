#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Many devices at once (64: rng and blk mixed), then 200 create/remove
# cycles that must not leak kernel memory; the module unloads afterwards.
. "$(dirname "$0")/lib.sh"

arm_hung_task_detector 20
load_module
modprobe virtio_rng
modprobe virtio_blk

# vmalloc areas the module itself holds (windows and their bookkeeping),
# from /proc/vmallocinfo, which names each area's caller.
module_vmalloc_areas() { grep -c '\[virtio_loopback\]' /proc/vmallocinfo || true; }
count_bound() { ls "/sys/bus/virtio/drivers/$1" 2>/dev/null | grep -c '^virtio' || true; }

step "64 devices at once: 56 rng and 8 blk"
"$VL_BIN/vl-testdev" --rng --count=56 --ready-file=/tmp/ready-rng --log-level=warn &
rng_pid=$!
"$VL_BIN/vl-testdev" --blk=8 --count=8 --ready-file=/tmp/ready-blk --log-level=warn &
blk_pid=$!
wait_for_file /tmp/ready-rng 120 || fail "the rng devices did not come up"
wait_for_file /tmp/ready-blk 120 || fail "the blk devices did not come up"
rng=$(count_bound virtio_rng)
blk=$(count_bound virtio_blk)
step "bound: $rng virtio_rng, $blk virtio_blk"
[ "$rng" = 56 ] && [ "$blk" = 8 ] || fail "expected 56 rng and 8 blk devices"
for d in $(ls /sys/bus/virtio/drivers/virtio_blk/ | grep virtio); do
	disk=$(ls /sys/bus/virtio/drivers/virtio_blk/$d/block/)
	dd if=/dev/$disk of=/dev/null bs=1M count=8 iflag=direct status=none || fail "reading /dev/$disk failed"
done
dd if=/dev/hwrng of=/dev/null bs=1k count=16 status=none || fail "reading /dev/hwrng failed"
# The leak check below counts these areas: they must be seen (a window each).
areas=$(module_vmalloc_areas)
[ "$areas" -ge 64 ] || fail "64 devices but only $areas vmalloc areas of the module in /proc/vmallocinfo"
kill "$rng_pid" "$blk_pid"
wait "$rng_pid" || fail "the rng test device exited with an error"
wait "$blk_pid" || fail "the blk test device exited with an error"
wait_until 30 '[ "$(count_bound virtio_rng)$(count_bound virtio_blk)" = 00 ]' ||
	fail "devices remain after their files were closed"

meminfo() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }
settle() { sync; echo 3 >/proc/sys/vm/drop_caches; sleep 1; }
# vmalloc'd kB but kernel thread stacks: faster cycles make the workqueues
# start more workers (they idle for minutes), which is not ours to count.
vmalloc_kb() {
	awk '$3 !~ /^kernel_clone/ && / vmalloc/ { sum += $2 } END { print int(sum / 1024) }' /proc/vmallocinfo
}
tasks() { ls -d /proc/[0-9]* | wc -l; }
# The devices' memory is charged to their creator's memory cgroup (window
# pages, rings, bookkeeping): create them in a cgroup of their own, whose
# usage must come back to where it was.
CG=/sys/fs/cgroup
mount -t cgroup2 none "$CG" 2>/dev/null
echo +memory >"$CG/cgroup.subtree_control" 2>/dev/null
mkdir -p "$CG/vl-scale" || fail "cannot create a memory cgroup"
[ -e "$CG/vl-scale/memory.current" ] || fail "no memory controller in $CG/vl-scale"
# (sh itself becomes the program: with &, $! is the program's pid.)
IN_CGROUP="echo \$\$ >$CG/vl-scale/cgroup.procs && exec \"\$@\""

step "200 create/remove cycles"
# A warm-up first: the first cycles also start kernel worker threads and
# charge the test device's program pages to the cgroup.
sh -c "$IN_CGROUP" sh "$VL_BIN/vl-testdev" --rng --cycles=20 --log-level=warn || fail "the warm-up cycles failed"
wait_until 30 '[ "$(count_bound virtio_rng)" = 0 ]' || fail "devices remain after the warm-up"
# memory.current counts the pages each CPU keeps charged ahead for the
# cgroup (up to 64 per CPU, 256 kB), more or fewer from one moment to the
# next: give them back before each reading. A limit just below the usage
# makes the kernel drain them first (and reclaim a page of the program's
# page cache if there were none); then the limit goes again. memory.high,
# not memory.max: being over it only throttles, it never invokes the OOM
# killer (whose report the kernel log check would take for a failure).
drain_charge_cache() {
	echo $(($(cat "$CG/vl-scale/memory.current") - 4096)) >"$CG/vl-scale/memory.high" 2>/dev/null
	echo max >"$CG/vl-scale/memory.high"
}
settle
drain_charge_cache
slab0=$(meminfo Slab)
vmalloc0=$(vmalloc_kb)
areas0=$(module_vmalloc_areas)
tasks0=$(tasks)
charged0=$(cat "$CG/vl-scale/memory.current")
sh -c "$IN_CGROUP" sh "$VL_BIN/vl-testdev" --rng --cycles=200 --log-level=warn || fail "the create/remove cycles failed"
wait_until 30 '[ "$(count_bound virtio_rng)" = 0 ]' || fail "devices remain after the cycles"
settle
slab1=$(meminfo Slab)
vmalloc1=$(vmalloc_kb)
areas1=$(module_vmalloc_areas)
tasks1=$(tasks)
charged1=$(cat "$CG/vl-scale/memory.current")
step "Slab ${slab0} -> ${slab1} kB, vmalloc but thread stacks ${vmalloc0} -> ${vmalloc1} kB, module's vmalloc areas ${areas0} -> ${areas1}, tasks ${tasks0} -> ${tasks1}, charged to the devices' cgroup ${charged0} -> ${charged1} bytes"
# Exact: with no device left the module holds no vmalloc area.
[ "$areas1" = 0 ] || { grep '\[virtio_loopback\]' /proc/vmallocinfo >&2; fail "the module still holds $areas1 vmalloc areas"; }
# Nearly exact: what the devices were charged for comes back (some of it
# after an RCU grace period or two). One leaked device would be its rings,
# bookkeeping and every window page it used, and would never come back.
charged() { drain_charge_cache; cat "$CG/vl-scale/memory.current"; }
tries=0
while [ $(($(charged) - charged0)) -ge 65536 ] && [ $tries -lt 10 ]; do
	settle
	tries=$((tries + 1))
done
[ $(($(charged) - charged0)) -lt 65536 ] ||
	fail "the devices' cgroup still holds $((($(charged) - charged0) / 1024)) kB more than before the cycles"
# That check would see a leak: live devices are charged there.
sh -c "$IN_CGROUP" sh "$VL_BIN/vl-testdev" --rng --count=8 --ready-file=/tmp/ready-cg --log-level=warn &
cg_pid=$!
wait_for_file /tmp/ready-cg 60 || fail "the rng devices in the cgroup did not come up"
dd if=/dev/hwrng of=/dev/null bs=64 count=4 status=none
charged_live=$(cat "$CG/vl-scale/memory.current")
kill "$cg_pid"
wait "$cg_pid" || fail "the rng test device in the cgroup exited with an error"
wait_until 30 '[ "$(count_bound virtio_rng)" = 0 ]' || fail "devices remain after the cgroup's test device left"
step "8 live devices: ${charged_live} bytes charged to their cgroup"
[ $((charged_live - charged1)) -ge $((8 * 8192)) ] ||
	fail "8 live devices were charged only $((charged_live - charged1)) bytes: the cgroup check above cannot see leaks"
# The totals catch what the module leaks indirectly, uncharged: 200 leaks
# of a device's rings, or one page per cycle, would be far beyond these.
# New kernel threads (workqueue workers) take slab too: 32 kB each allowed.
[ $((vmalloc1 - vmalloc0)) -lt 512 ] || fail "vmalloc grew by $((vmalloc1 - vmalloc0)) kB over 200 cycles"
new_tasks=$((tasks1 > tasks0 ? tasks1 - tasks0 : 0))
[ $((slab1 - slab0)) -lt $((1024 + 32 * new_tasks)) ] ||
	fail "slab grew by $((slab1 - slab0)) kB over 200 cycles ($new_tasks new tasks)"
rmdir "$CG/vl-scale" 2>/dev/null

unload_module
check_kernel_log
step PASS
