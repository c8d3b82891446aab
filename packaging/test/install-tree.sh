#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# make install into a staging folder (DESTDIR) and check the tree: the
# programs, the back-end library (static libs, headers, pkg-config file),
# the uapi header, units, udev rule, sysusers.d, man pages, docs and the
# DKMS source. The paths come from the build's CMake cache.
#   install-tree.sh BUILD_DIR DESTDIR
set -euo pipefail

die() { echo "install-tree: $*" >&2; exit 1; }
(($# == 2)) || die "usage: install-tree.sh BUILD_DIR DESTDIR"
build=$(realpath -e "$1")
dest=$2
cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
# A path of the cache: absolute as it is, relative under the prefix.
under_prefix() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }

rm -rf "$dest"
DESTDIR=$dest cmake --install "$build" >"$build/install-tree.log" 2>&1 ||
	{ cat "$build/install-tree.log"; die "cmake --install failed"; }

prefix=$(cache CMAKE_INSTALL_PREFIX)
libdir=$(under_prefix "$(cache CMAKE_INSTALL_LIBDIR)")
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
expected=(
	"$prefix/bin/virtio-loopback-adapter" "$prefix/bin/vhost-user-blk"
	"$prefix/bin/vhost-user-input" "$prefix/bin/vhost-user-rng"
	"$prefix/bin/vhost-user-console"
	"$libdir/libvl_backend.a" "$libdir/libvl_vhost_user.a" "$libdir/libvl_virtqueue.a"
	"$libdir/libvl_base.a" "$libdir/pkgconfig/virtio-loopback-backend.pc"
	"$prefix/include/virtio-loopback/backend/device.hpp"
	"$prefix/include/virtio-loopback/backend/program.hpp"
	"$prefix/include/virtio-loopback/base/service_notify.hpp"
	"$prefix/include/linux/virtio_loopback.h"
	"$(under_prefix "$(cache VL_UDEV_RULES_DIR)")/60-virtio-loopback.rules"
	"$(under_prefix "$(cache VL_SYSUSERS_DIR)")/virtio-loopback.conf"
	"$prefix/share/doc/virtio-loopback/packaging.md"
	"$prefix/share/doc/virtio-loopback/examples/config/blk-disk0.conf"
	"$prefix/share/doc/virtio-loopback/examples/example-device/pattern_device.cpp"
)
units=$(under_prefix "$(cache VL_SYSTEMD_UNIT_DIR)")
for unit in vhost-user-blk@ vhost-user-input@ vhost-user-rng@ vhost-user-console@ virtio-loopback-adapter; do
	expected+=("$units/$unit.service")
done
if [[ -d $build/man ]]; then
	for program in virtio-loopback-adapter vhost-user-blk vhost-user-input vhost-user-rng vhost-user-console; do
		expected+=("$prefix/share/man/man1/$program.1")
	done
fi
if [[ $(cache VL_DKMS_SOURCE) == ON ]]; then
	dkms=$(cache VL_DKMS_SOURCE_DIR)/virtio-loopback-$version
	expected+=("$dkms/dkms.conf" "$dkms/kernel/Kbuild" "$dkms/kernel/vl_main.c"
		"$dkms/include/uapi/linux/virtio_loopback.h")
fi

missing=0
for f in "${expected[@]}"; do
	[[ -f $dest$f ]] || { echo "install-tree: missing $f" >&2; missing=1; }
done
((missing == 0)) || die "the installed tree is incomplete"
for program in virtio-loopback-adapter vhost-user-blk vhost-user-input vhost-user-rng vhost-user-console; do
	[[ -x $dest$prefix/bin/$program ]] || die "$prefix/bin/$program is not executable"
	"$dest$prefix/bin/$program" --version >/dev/null || die "$program --version failed"
done
# The units name the installed programs, nothing of the build tree.
grep -q "^ExecStart=$prefix/bin/vhost-user-blk " "$dest$units/vhost-user-blk@.service" ||
	die "vhost-user-blk@.service does not run $prefix/bin/vhost-user-blk"
! grep -rq "$build" "$dest$units" "$dest$libdir/pkgconfig" || die "installed files name the build folder"
# Every header the installed headers include is installed too.
incdir=$dest$prefix/include/virtio-loopback
grep -rhoE '#include "[^"]+"' "$incdir" | sed 's/#include "//; s/"$//' | sort -u | while read -r h; do
	[[ -f $incdir/$h ]] || die "an installed header includes \"$h\", which is not installed"
done
echo "install-tree: PASS ($(find "$dest" -type f | wc -l) files under $dest$prefix and /)"
