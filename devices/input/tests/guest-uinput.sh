#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Runs in a guest (scripts/vm-run): vhost-user-input's evdev passthrough
# against uinput devices, which the development hosts cannot create. The
# guest shares the host's root, so the test programs built there run here.
# Usage: guest-uinput.sh INPUT_E2E_TESTS DEVICES_TESTS
set -eu

fail() {
	echo "FAIL: $*" >&2
	dmesg | tail -n 30 >&2
	exit 1
}

[ $# -eq 2 ] || fail "usage: $0 INPUT_E2E_TESTS DEVICES_TESTS"

# No udev here to load evdev (the /dev/input/eventN nodes) on demand.
echo "=== modprobe uinput evdev"
modprobe uinput || fail "cannot load uinput"
modprobe evdev || fail "cannot load evdev"
i=0
until [ -c /dev/uinput ]; do
	i=$((i + 1))
	[ $i -le 50 ] || fail "/dev/uinput did not appear"
	sleep 0.1
done

# Fail instead of skipping if uinput is somehow unusable.
export VL_REQUIRE_UINPUT=1
echo "=== back-end and test driver against uinput devices"
"$1" --gtest_filter='Uinput.*' || fail "input_e2e_tests"
echo "=== the evdev source on its own"
"$2" --gtest_filter='EvdevSource.*' || fail "devices_tests"
echo "=== PASS"
