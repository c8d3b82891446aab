#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# `make bench`: runs every benchmark and writes docs/benchmarks/results.md,
# results.json and results.svg. See benchmarks/README.md.
#
#   benchmarks/run.sh [--build DIR] [--results DIR] [--no-host] [--no-guest]
#
# 1. host side (no kernel): our vhost-user-blk and qemu-storage-daemon's,
#    driven by vl-host-bench, interleaved over the rounds;
# 2. one boot of the 6.12 guest (scripts/vm-run, TCG) running
#    benchmarks/guest.sh: block, input, rng and network contenders,
#    interleaved;
# 3. benchmarks/report.py: medians, ratios, plot.
# Raw outputs stay in BUILD/bench/<date>/ (fio JSON, logs, console log).
#
# Environment: BENCH_ROUNDS (3), BENCH_RUNTIME (fio seconds, 3),
# BENCH_RAMP_MS (500), BENCH_HOST_SECONDS (2), BENCH_CONTENDERS (guest
# subset, e.g. "loop null_blk"), BENCH_QEMU_AIO (io_uring),
# BENCH_INPUT_EVENTS (500), BENCH_RNG_SECONDS (2), BENCH_POLL_US (the
# --poll-us of the *-poll contenders, 1000), BENCH_NET_SECONDS (iperf3
# seconds per network workload, 3), BENCH_TIMEOUT (guest time limit, 2400 s).
set -euo pipefail

SRC_DIR=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=$SRC_DIR/build
RESULTS_DIR=$SRC_DIR/docs/benchmarks
do_host=1
do_guest=1
usage() { sed -n '4,22p' "$0" | sed 's/^# \{0,1\}//'; }
while (($#)); do
	case $1 in
	-b | --build) BUILD_DIR=$(realpath -m "${2:?}"); shift 2 ;;
	-r | --results) RESULTS_DIR=$(realpath -m "${2:?}"); shift 2 ;;
	--no-host) do_host=0; shift ;;
	--no-guest) do_guest=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done

ROUNDS=${BENCH_ROUNDS:-3}
HOST_SECONDS=${BENCH_HOST_SECONDS:-2}
GUEST_KERNEL=6.12
GUEST_MEM=3072
BIN=$BUILD_DIR/bin
t_start=$(date +%s)
say() { echo "bench [$(printf '%4d' $(($(date +%s) - t_start)))s] $*"; }
die() { echo "run.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Dependencies of the benchmark (beyond the build's): Debian packages.
# ---------------------------------------------------------------------------
BENCH_PACKAGES=(
	fio              # the block workloads
	qemu-system-x86  # vm-run; qemu-storage-daemon (in qemu-system-common)
	qemu-utils       # qemu-nbd
	iproute2         # vdpa (VDUSE)
	mount            # losetup
	kmod             # modprobe in the guest
	gnuplot-nox      # the plot
	python3          # report.py (Debian's /usr/bin/python3, standard library only)
	iperf3           # the network workloads
	dpdk-dev librte-net-vhost23 # dpdk-testpmd with the vhost PMD: the virtio-net back-end
)
missing=()
for pkg in "${BENCH_PACKAGES[@]}"; do
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true) == installed ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
	if ((EUID == 0)); then
		say "installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
			{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } ||
			die "could not install ${missing[*]}"
	else
		die "missing Debian packages: ${missing[*]} (apt-get install them as root)"
	fi
fi
for prog in "$BIN/virtio-loopback-adapter" "$BIN/vinput-latency" "$BIN/vl-read-rate" "$BIN/vl-host-bench"; do
	[[ -x $prog ]] || die "$prog is missing: build first ('make', or 'make bench' which builds)"
done

# ---------------------------------------------------------------------------
# The run folder and what describes the run
# ---------------------------------------------------------------------------
RUN=$BUILD_DIR/bench/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN/guest" "$RUN/host/raw"
info() { printf '%s\t%s\n' "$1" "$2" >>"$RUN/run-info.tsv"; }
command_line="benchmarks/run.sh"
[[ -n ${MAKELEVEL:-} ]] && command_line="make bench"
for v in BENCH_ROUNDS BENCH_RUNTIME BENCH_RAMP_MS BENCH_HOST_SECONDS BENCH_CONTENDERS BENCH_QEMU_AIO BENCH_INPUT_EVENTS BENCH_RNG_SECONDS BENCH_POLL_US BENCH_NET_SECONDS; do
	[[ -n ${!v:-} ]] && command_line="$v='${!v}' $command_line"
done
: >"$RUN/run-info.tsv"
info command "$command_line"
info date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
info host_kernel "$(uname -r)"
info host_cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
info host_cpus "$(nproc)"
info loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
info git_commit "$(git -C "$SRC_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)"
info git_dirty "$([[ -n $(git -C "$SRC_DIR" status --porcelain 2>/dev/null) ]] && echo 1 || echo 0)"
info qemu_version "$(qemu-system-x86_64 --version | head -n 1)"
info rounds "$ROUNDS"
info host_seconds_per_workload "$HOST_SECONDS"
say "results of this run: $RUN"

# ---------------------------------------------------------------------------
# 1. Host side: vhost-user-blk back-ends driven by the user-space driver
# ---------------------------------------------------------------------------
HOST_REC=$RUN/host/records.tsv
: >"$HOST_REC"
hrec() { (IFS=$'\t'; echo "$*") >>"$HOST_REC"; }
backend_pid=
host_img=
cleanup() {
	[[ -n $backend_pid ]] && kill "$backend_pid" 2>/dev/null && wait "$backend_pid" 2>/dev/null
	[[ -n $host_img ]] && rm -f "$host_img"
	return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

host_bench() {
	local t0 sock=$RUN/host/blk.sock
	t0=$(date +%s)
	host_img=$(mktemp /dev/shm/vl-bench.XXXXXX)
	dd if=/dev/zero of="$host_img" bs=1M count=256 status=none
	local ours_cmd=("$BIN/vhost-user-blk" -s "$sock" -b "$host_img" --num-queues=1 --direct -l warn)
	local qsd_cmd=(qemu-storage-daemon
		--blockdev "driver=file,node-name=file,filename=$host_img,cache.direct=on,aio=${BENCH_QEMU_AIO:-io_uring}"
		--blockdev "driver=raw,node-name=disk,file=file"
		--export "type=vhost-user-blk,id=exp,node-name=disk,addr.type=unix,addr.path=$sock,writable=on,num-queues=1")
	hrec info setup_ours "${ours_cmd[*]}"
	hrec info setup_qsd "${qsd_cmd[*]}"
	hrec info bench_command "vl-host-bench -s SOCKET --seconds $HOST_SECONDS --backend-pid PID (all workloads)"
	local order=(ours qsd) round i c
	for ((round = 1; round <= ROUNDS; round++)); do
		for ((i = 0; i < 2; i++)); do
			c=${order[$(((i + round - 1) % 2))]}
			if [[ $c == ours && ! -x $BIN/vhost-user-blk ]]; then
				hrec skip "$round" ours "skipped: not built ($BIN/vhost-user-blk)"
				say "host round $round/$ROUNDS ours: skipped: not built"
				continue
			fi
			local log=$RUN/host/r$round-$c.log out=$RUN/host/raw/r$round-$c.jsonl
			rm -f "$sock"
			if [[ $c == ours ]]; then "${ours_cmd[@]}" >"$log" 2>&1 & else "${qsd_cmd[@]}" >"$log" 2>&1 & fi
			backend_pid=$!
			local n=0
			while [[ ! -S $sock ]] && kill -0 "$backend_pid" 2>/dev/null && ((n++ < 300)); do sleep 0.1; done
			if [[ ! -S $sock ]]; then
				hrec fail "$round" "$c" setup "the back-end did not listen on $sock: $(tail -n 2 "$log" | tr '\n\t' '  ')"
				say "host round $round/$ROUNDS $c: set-up FAILED"
			else
				hrec ok "$round" "$c"
				say "host round $round/$ROUNDS $c: 7 workloads, ${HOST_SECONDS} s each"
				if timeout -k 10 $((HOST_SECONDS * 7 + 120)) "$BIN/vl-host-bench" -s "$sock" --seconds "$HOST_SECONDS" \
					--backend-pid "$backend_pid" --label "$c" >"$out" 2>>"$log"; then
					:
				else
					hrec fail "$round" "$c" workloads "vl-host-bench exited with status $?: $(tail -n 2 "$log" | tr '\n\t' '  ')"
					say "  FAILED: $(tail -n 1 "$log")"
				fi
				hrec hostbench "$round" "$c" "raw/r$round-$c.jsonl"
				while read -r line; do
					[[ $line =~ \"workload\":\"([^\"]+)\".*\"iops\":([0-9.]+),\"mbps\":([0-9.]+) ]] &&
						say "  $c ${BASH_REMATCH[1]}: ${BASH_REMATCH[2]} IOPS, ${BASH_REMATCH[3]} MB/s"
				done <"$out"
			fi
			kill "$backend_pid" 2>/dev/null
			wait "$backend_pid" 2>/dev/null || true
			backend_pid=
		done
	done
	rm -f "$host_img"
	host_img=
	info host_seconds $(($(date +%s) - t0))
}

if ((do_host)); then
	say "host side: vhost-user-blk back-ends, no kernel ($ROUNDS rounds)"
	host_bench
else
	info host_seconds skipped
fi

# ---------------------------------------------------------------------------
# 2. The guest: one boot of 6.12, every contender, interleaved
# ---------------------------------------------------------------------------
vm_status=0
if ((do_guest)); then
	say "guest: booting $GUEST_KERNEL under TCG (progress lines below are the guest's)"
	t0=$(date +%s)
	env_args=(-e "VL_BUILD_DIR=$BUILD_DIR")
	# vm-run shares the project when it lives where the guest has its own
	# tmpfs (/tmp, ...); a build folder there outside the project too.
	case $BUILD_DIR/ in
	"$SRC_DIR"/*) ;;
	/tmp/* | /run/* | /var/tmp/* | /dev/shm/*) env_args+=(-r "$BUILD_DIR") ;;
	esac
	for v in BENCH_ROUNDS BENCH_RUNTIME BENCH_RAMP_MS BENCH_CONTENDERS BENCH_QEMU_AIO BENCH_INPUT_EVENTS BENCH_RNG_SECONDS BENCH_POLL_US BENCH_NET_SECONDS; do
		[[ -n ${!v:-} ]] && env_args+=(-e "$v=${!v}")
	done
	# Through a pipe: vm-run writes the console to /dev/stdout, which, when
	# stdout is a file (make bench >log), reopens and truncates that file.
	set +e
	"$SRC_DIR/scripts/vm-run" -k "$GUEST_KERNEL" -m "$GUEST_MEM" -t "${BENCH_TIMEOUT:-2400}" \
		-w "$RUN" -l "$RUN/console.log" "${env_args[@]}" \
		-- "$SRC_DIR/benchmarks/guest.sh" "$RUN/guest" 2>&1 | cat
	vm_status=${PIPESTATUS[0]}
	set -e
	info vm_status "$vm_status"
	info vm_seconds $(($(date +%s) - t0))
else
	info vm_status skipped
fi

# ---------------------------------------------------------------------------
# 3. Report
# ---------------------------------------------------------------------------
info loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
info total_seconds $(($(date +%s) - t_start))
/usr/bin/python3 "$SRC_DIR/benchmarks/report.py" "$RUN" "$RESULTS_DIR"
say "done: $RESULTS_DIR/results.md (raw outputs in $RUN)"
if ((vm_status != 0)); then
	echo "run.sh: the guest run ended with status $vm_status (124: timed out; 125: the guest died); the results hold what was recorded" >&2
	exit 1
fi
