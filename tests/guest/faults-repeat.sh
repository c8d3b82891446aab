#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# make stress: the fault matrix (faults.sh) REPEAT times in one boot.
here=$(dirname "$0")
for i in $(seq 1 "${REPEAT:-10}"); do
	echo "=== faults: run $i of ${REPEAT:-10}"
	/bin/sh "$here/faults.sh" || exit 1
done
