#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the kernel's checkpatch.pl --strict on the module and the uapi header.
# checkpatch ships in Debian's linux-source package (installed on demand,
# 140 MB); only the three files it needs are extracted, into build/.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$src/build/checkpatch
tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n1 || true)
if [[ -z $tarball ]]; then
	if ((EUID != 0)); then
		echo "checkpatch: install Debian's linux-source package first (as root)" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends linux-source >/dev/null
	tarball=$(ls /usr/src/linux-source-*.tar.xz | sort -V | tail -n1)
fi
if [[ ! -x $tools/scripts/checkpatch.pl ]]; then
	mkdir -p "$tools"
	top=$(basename "$tarball" .tar.xz)
	tar -xJf "$tarball" -C "$tools" --strip-components=1 \
		"$top/scripts/checkpatch.pl" "$top/scripts/spelling.txt" "$top/scripts/const_structs.checkpatch"
fi
cd "$src"
"$tools/scripts/checkpatch.pl" --strict --no-tree --show-types -f \
	kernel/*.c kernel/*.h include/uapi/linux/virtio_loopback.h
