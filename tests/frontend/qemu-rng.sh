#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# QEMU as the front-end of our vhost-user-rng: starts the back-end on a
# temporary socket, boots a guest with a vhost-user-rng-pci device on it
# (scripts/vm-run) whose driver reads /dev/hwrng (guest-rng.sh), then stops
# the back-end with SIGTERM, which must end it with status 0.
#
# Usage: qemu-rng.sh [BUILD_DIR] [VM-RUN OPTION...]
. "$(dirname "$0")/qemu-lib.sh"
[ $# -gt 0 ] && shift

start_backend vhost-user-rng
run_guest "$@" \
	-Q -chardev -Q "socket,id=rng0,path=$sock" \
	-Q -device -Q vhost-user-rng-pci,chardev=rng0 \
	-- "$src/tests/frontend/guest-rng.sh"
stop_backend
echo "PASS: QEMU's vhost-user-rng-pci read entropy from vhost-user-rng; it exited 0 on SIGTERM"
