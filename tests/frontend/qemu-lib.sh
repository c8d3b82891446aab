# SPDX-License-Identifier: Apache-2.0
# Shared steps of the tests that put QEMU in front of one of our back-end
# programs (qemu-*.sh): start the back-end on a temporary socket, boot a
# guest (scripts/vm-run) whose vhost-user device connects to it, then stop
# the back-end with SIGTERM, which must end it with status 0, no error
# logged and its socket removed.
#
# Source it with the build directory as $1:  . "$(dirname "$0")/qemu-lib.sh"
# It sets src, build, work (a temporary directory removed at exit), sock
# and log, and defines fail, start_backend, run_guest and stop_backend.
set -eu

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build}
work=$(mktemp -d /tmp/vl-qemu.XXXXXX)
sock=$work/backend.sock
log=$work/backend.log
backend_pid=
_qemu_cleanup() {
	[ -z "$backend_pid" ] || kill -KILL "$backend_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap _qemu_cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	echo "--- back-end log:" >&2
	cat "$log" >&2
	exit 1
}

# start_backend PROGRAM [ARG...]: runs build/bin/PROGRAM on $sock with
# debug logging and waits until it listens.
start_backend() {
	program=$build/bin/$1
	shift
	[ -x "$program" ] || { echo "no $program: build first" >&2; exit 1; }
	"$program" --socket-path "$sock" --log-level debug "$@" >"$log" 2>&1 &
	backend_pid=$!
	i=0
	until [ -S "$sock" ]; do
		i=$((i + 1))
		[ $i -le 100 ] || fail "the back-end did not create $sock"
		kill -0 "$backend_pid" 2>/dev/null || fail "the back-end exited before listening"
		sleep 0.1
	done
}

# run_guest [VM-RUN OPTION...] -- GUEST-SCRIPT [ARG...]: boots a guest with
# shared memory (vhost-user needs it); its console log also goes to
# $work/guest.log. Fails unless the script passes.
run_guest() {
	status=0
	"$src/scripts/vm-run" --shared-memory --timeout 300 --log "$work/guest.log" "$@" ||
		status=$?
	[ "$status" -eq 0 ] || fail "the guest test failed (vm-run status $status)"
	kill -0 "$backend_pid" 2>/dev/null || fail "the back-end died while serving QEMU"
}

stop_backend() {
	kill -TERM "$backend_pid"
	backend_status=0
	wait "$backend_pid" || backend_status=$?
	backend_pid=
	[ "$backend_status" -eq 0 ] ||
		fail "the back-end exited with status $backend_status after SIGTERM, want 0"
	grep -q 'front-end connected' "$log" || fail "QEMU never connected to the back-end"
	! grep -E ' error ' "$log" || fail "the back-end logged errors"
	[ ! -e "$sock" ] || fail "the back-end left its socket $sock behind"
	[ -z "${VL_SHOW_LOG:-}" ] || cat "$log"
}
