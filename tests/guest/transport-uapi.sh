#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The uapi against the loaded module (vl-uapi-tests): bad arguments, wrong
# states, window isolation and revocation, reply timeouts, random calls.
# Then: the kernel log is clean and the module unloads (nothing leaked).
. "$(dirname "$0")/lib.sh"

load_module
"$VL_BIN/vl-uapi-tests" --gtest_brief=1 || fail "vl-uapi-tests failed"
wait_until 20 '[ "$(loopback_devices)" = 0 ]' || fail "devices remain after their files were closed"
unload_module
check_kernel_log
step PASS
