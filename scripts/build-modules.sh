#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds kernel/virtio_loopback.ko once for every installed kernel header set
# into build/modules/<kernel-release>/virtio_loopback.ko.
# Each release builds in its own copy of the sources (Kbuild writes objects
# next to them), so the builds never see each other's objects.
#   build-modules.sh [--arch arm64] [BUILD_DIR] [RELEASE...]
#   build-modules.sh [--arch arm64] --list   only print the releases it would build for
# --arch arm64 cross-builds with aarch64-linux-gnu-gcc against Debian's
# arm64 headers, which scripts/arm64-root.sh unpacks (not installs) into
# build-arm64/vm/headers, with the host's kbuild tools (see there).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
arch=
kbuild_args=()
if [[ ${1:-} == --arch ]]; then
	arch=${2:?--arch wants arm64}
	shift 2
	[[ $arch == arm64 || $arch == aarch64 ]] ||
		{ echo "build-modules: --arch wants arm64, got '$arch'" >&2; exit 1; }
	command -v aarch64-linux-gnu-gcc-12 >/dev/null ||
		{ echo "build-modules: aarch64-linux-gnu-gcc-12 not found; run 'make deps ARCH=arm64'" >&2; exit 1; }
	"$src/scripts/arm64-root.sh"
	headers=$("$src/scripts/arm64-root.sh" --print-dir)/headers
	kbuild_args=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-)
fi

# The kernel tree (headers) of RELEASE.
kernel_dir() {
	if [[ -n $arch ]]; then
		echo "$headers/usr/src/linux-headers-$1"
	else
		echo "/lib/modules/$1/build"
	fi
}
# The releases of the installed kernel header sets.
header_releases() {
	local kdir rel
	if [[ -n $arch ]]; then
		for kdir in "$headers"/usr/src/linux-headers-*; do
			[[ -e $kdir/Module.symvers ]] && echo "${kdir##*/linux-headers-}"
		done
		return 0
	fi
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

build=${1:-$src/build}
shift || true

releases=("$@")
((${#releases[@]})) || mapfile -t releases < <(header_releases)
if ((${#releases[@]} == 0)); then
	echo "build-modules: no kernel headers installed; run 'make deps'" >&2
	exit 1
fi

for rel in "${releases[@]}"; do
	kdir=$(kernel_dir "$rel")
	[[ -e $kdir/Makefile ]] || { echo "build-modules: no headers for $rel under $kdir" >&2; exit 1; }
	work=$build/kbuild/$rel
	mkdir -p "$work" "$build/modules/$rel"
	# Copy only what changed so that Kbuild's own dependency tracking works.
	cp -ru "$src/kernel" "$src/include" "$work/"
	echo "build-modules: $rel"
	# No BTF for out-of-tree modules: Debian ships no vmlinux to base it on.
	make -s -C "$kdir" "${kbuild_args[@]}" M="$work/kernel" CONFIG_DEBUG_INFO_BTF_MODULES= modules
	cp "$work/kernel/virtio_loopback.ko" "$build/modules/$rel/virtio_loopback.ko"
done
