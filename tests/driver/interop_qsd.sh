#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Interoperability: vl-test-driver against a real third-party vhost-user
# back-end, QEMU's qemu-storage-daemon with a vhost-user-blk export of a
# raw image. No VM, no kernel module: this proves the driver speaks
# standard vhost-user (negotiation, memory table, ring addresses, kicks and
# calls) before our own back-ends exist, and gives them a reference.
#
# usage: interop_qsd.sh VL_TEST_DRIVER [NUM_QUEUES]
# Exit: 0 pass, 1 failure, 77 skipped (qemu-storage-daemon not installed).
set -eu

DRIVER=${1:?usage: interop_qsd.sh VL_TEST_DRIVER [NUM_QUEUES]}
QUEUES=${2:-2}
QSD=${QSD:-qemu-storage-daemon}
IMAGE_MIB=64

if ! command -v "$QSD" >/dev/null 2>&1; then
    echo "SKIP: $QSD not found (Debian: apt-get install qemu-system-common)"
    exit 77
fi

WORK=$(mktemp -d /tmp/vl-interop-qsd.XXXXXX)
QSD_PID=
cleanup() {
    if [ -n "$QSD_PID" ] && kill -0 "$QSD_PID" 2>/dev/null; then
        kill "$QSD_PID"
        wait "$QSD_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

fail() {
    echo "FAIL: $*"
    if [ -s "$WORK/qsd.log" ]; then
        echo "--- qemu-storage-daemon log:"
        cat "$WORK/qsd.log"
    fi
    exit 1
}

# Runs the driver; its output goes to $WORK/out and is echoed.
run() {
    echo "+ vl-test-driver $*"
    if "$DRIVER" "$@" >"$WORK/out" 2>&1; then
        cat "$WORK/out"
        return 0
    else
        status=$?
        cat "$WORK/out"
        return "$status"
    fi
}

truncate -s "${IMAGE_MIB}M" "$WORK/disk.img"

# One daemon, two exports of the same image: writable and read-only.
"$QSD" \
    --blockdev driver=file,node-name=disk,filename="$WORK/disk.img" \
    --export type=vhost-user-blk,id=rw,node-name=disk,addr.type=unix,addr.path="$WORK/rw.sock",writable=on,num-queues="$QUEUES" \
    --export type=vhost-user-blk,id=ro,node-name=disk,addr.type=unix,addr.path="$WORK/ro.sock",writable=off \
    >"$WORK/qsd.log" 2>&1 &
QSD_PID=$!

# Wait (up to 10 s) for both sockets.
i=0
while [ ! -S "$WORK/rw.sock" ] || [ ! -S "$WORK/ro.sock" ]; do
    kill -0 "$QSD_PID" 2>/dev/null || fail "qemu-storage-daemon exited at start-up"
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "qemu-storage-daemon did not create its sockets in 10 s"
    sleep 0.1
done
"$QSD" --version | head -n 1

# 1. blk-info: config, features, serial.
run -s "$WORK/rw.sock" blk-info || fail "blk-info failed"
expected_sectors=$((IMAGE_MIB * 1024 * 1024 / 512))
grep -q "^capacity: *$expected_sectors sectors" "$WORK/out" ||
    fail "capacity is not $expected_sectors sectors (the ${IMAGE_MIB} MiB image)"
grep -q "^num_queues: *$QUEUES\$" "$WORK/out" || fail "num_queues is not $QUEUES"
grep -q "^queues: *$QUEUES started" "$WORK/out" || fail "not all $QUEUES queues started"
grep -q '^serial: *"vhost_user_blk"' "$WORK/out" || fail "GET_ID serial is not vhost_user_blk"
grep -q "^read_only: *no" "$WORK/out" || fail "writable export reported read-only"

# 2. blk-verify on the first and the last queue, with every ring mode the
#    daemon offers: indirect + EVENT_IDX (default), then neither, with small
#    requests, rewrites and a queue depth above what direct chains can
#    hold in the ring (back-pressure).
last=$((QUEUES - 1))
run -s "$WORK/rw.sock" blk-verify --size 32 --queue 0 --qd 16 --seed 1 ||
    fail "blk-verify on queue 0"
run -s "$WORK/rw.sock" blk-verify --size 8 --queue "$last" --request-size 4 --requests 4000 \
    --qd 64 --seed 2 || fail "blk-verify on queue $last"
run -s "$WORK/rw.sock" --no-indirect --no-event-idx --queue-size 32 blk-verify --size 8 \
    --request-size 16 --qd 32 --seed 3 || fail "blk-verify without indirect and EVENT_IDX"
grep -q "^blk-verify: PASS" "$WORK/out" || fail "blk-verify did not report PASS"

# 3. The data really is in the image file, written by the daemon: count the
#    pattern's magic ("VLDVERY1" at the start of every written sector). The
#    32 MiB of run 1 stay covered by pattern sectors except block 0 of each
#    run (zeroed by its WRITE_ZEROES/DISCARD check).
magic=$(LC_ALL=C grep -a -o 'VLDVERY1' "$WORK/disk.img" | wc -l)
echo "pattern sectors in the image: $magic"
[ "$magic" -ge 65000 ] || fail "only $magic pattern sectors in the image file, expected >= 65000"

# 4. The read-only export: reported as such, and blk-verify refuses it.
run -s "$WORK/ro.sock" blk-info || fail "blk-info on the read-only export"
grep -q "^read_only: *yes" "$WORK/out" || fail "read-only export not reported read-only"
if run -s "$WORK/ro.sock" blk-verify --size 1; then
    fail "blk-verify succeeded on a read-only export"
fi
grep -q "read-only" "$WORK/out" || fail "blk-verify's refusal does not say read-only"

# 5. The daemon survived every connect/disconnect above.
kill -0 "$QSD_PID" 2>/dev/null || fail "qemu-storage-daemon died"
echo "PASS: vl-test-driver interoperates with $("$QSD" --version | head -n 1)"
