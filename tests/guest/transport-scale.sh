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

step "200 create/remove cycles"
# A warm-up first: the first cycles also start kernel worker threads,
# whose stacks are vmalloc'd, and that is not ours to count.
"$VL_BIN/vl-testdev" --rng --cycles=20 --log-level=warn || fail "the warm-up cycles failed"
wait_until 30 '[ "$(count_bound virtio_rng)" = 0 ]' || fail "devices remain after the warm-up"
settle
slab0=$(meminfo Slab)
vmalloc0=$(meminfo VmallocUsed)
areas0=$(module_vmalloc_areas)
"$VL_BIN/vl-testdev" --rng --cycles=200 --log-level=warn || fail "the create/remove cycles failed"
wait_until 30 '[ "$(count_bound virtio_rng)" = 0 ]' || fail "devices remain after the cycles"
settle
slab1=$(meminfo Slab)
vmalloc1=$(meminfo VmallocUsed)
areas1=$(module_vmalloc_areas)
step "Slab ${slab0} -> ${slab1} kB, VmallocUsed ${vmalloc0} -> ${vmalloc1} kB, module's vmalloc areas ${areas0} -> ${areas1}"
# Exact: with no device left the module holds no vmalloc area.
[ "$areas1" = 0 ] || { grep '\[virtio_loopback\]' /proc/vmallocinfo >&2; fail "the module still holds $areas1 vmalloc areas"; }
# The totals catch what the module leaks indirectly. One leaked device
# would be >= 1 MiB of vmalloc (its window) and a few kB of slab; 200
# leaks, or one page per cycle, would be far beyond these bounds.
[ $((vmalloc1 - vmalloc0)) -lt 512 ] || fail "vmalloc grew by $((vmalloc1 - vmalloc0)) kB over 200 cycles"
[ $((slab1 - slab0)) -lt 1024 ] || fail "slab grew by $((slab1 - slab0)) kB over 200 cycles"

unload_module
check_kernel_log
step PASS
