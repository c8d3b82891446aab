#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds kernel/virtio_loopback.ko once for every installed kernel header set
# into build/modules/<kernel-release>/virtio_loopback.ko.
# Each release builds in its own copy of the sources (Kbuild writes objects
# next to them), so the builds never see each other's objects.
#   build-modules.sh [BUILD_DIR] [RELEASE...]
#   build-modules.sh --list      only print the releases it would build for
set -euo pipefail

# The releases of the installed kernel header sets.
header_releases() {
	for kdir in /lib/modules/*/build; do
		[[ -e $kdir/Makefile ]] || continue
		rel=${kdir#/lib/modules/}
		echo "${rel%/build}"
	done
}
if [[ ${1:-} == --list ]]; then
	header_releases
	exit 0
fi

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$src/build}
shift || true

releases=("$@")
((${#releases[@]})) || mapfile -t releases < <(header_releases)
if ((${#releases[@]} == 0)); then
	echo "build-modules: no kernel headers installed; run 'make deps'" >&2
	exit 1
fi

for rel in "${releases[@]}"; do
	kdir=/lib/modules/$rel/build
	[[ -e $kdir/Makefile ]] || { echo "build-modules: no headers for $rel under $kdir" >&2; exit 1; }
	work=$build/kbuild/$rel
	mkdir -p "$work" "$build/modules/$rel"
	# Copy only what changed so that Kbuild's own dependency tracking works.
	cp -ru "$src/kernel" "$src/include" "$work/"
	echo "build-modules: $rel"
	# No BTF for out-of-tree modules: Debian ships no vmlinux to base it on.
	make -s -C "$kdir" M="$work/kernel" CONFIG_DEBUG_INFO_BTF_MODULES= modules
	cp "$work/kernel/virtio_loopback.ko" "$build/modules/$rel/virtio_loopback.ko"
done
