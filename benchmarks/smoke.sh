#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Smoke test of the benchmark programs on the host (CTest label "bench"):
# vl-host-bench runs every workload briefly against our vhost-user-blk
# --null, vl-read-rate reads /dev/urandom. No numbers are checked, only
# that the tools run and print what run.sh and report.py read.
#   smoke.sh BIN_DIR
# Exit 77 (skipped) when vhost-user-blk is not built.
set -eu
bin=$1
[ -x "$bin/vhost-user-blk" ] || { echo "vhost-user-blk not built: skipped"; exit 77; }
dir=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
"$bin/vhost-user-blk" -s "$dir/blk.sock" --null=64M -l warn &
pid=$!
i=0
while [ ! -S "$dir/blk.sock" ]; do
	i=$((i + 1))
	[ $i -le 100 ] || { echo "FAIL: vhost-user-blk did not listen"; exit 1; }
	sleep 0.1
done
"$bin/vl-host-bench" -s "$dir/blk.sock" --seconds 0.1 --backend-pid "$pid" --label smoke >"$dir/out"
cat "$dir/out"
n=$(grep -c '"iops":' "$dir/out")
[ "$n" = 7 ] || { echo "FAIL: vl-host-bench printed $n workloads, want 7"; exit 1; }
grep -q '"backend_cpu_us_per_io":' "$dir/out" || { echo "FAIL: no back-end CPU time"; exit 1; }
"$bin/vl-read-rate" /dev/urandom 0.1 | tee "$dir/rate"
grep -q '"mbps":' "$dir/rate" || { echo "FAIL: vl-read-rate printed no rate"; exit 1; }
"$bin/vinput-latency" --help >/dev/null
echo PASS
