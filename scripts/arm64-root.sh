#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# arm64-root.sh: fetches what the arm64 builds and guests need from the
# Debian archive, without installing any of it on the host, into a cache
# folder (default build-arm64/vm, or $VL_ARM64_CACHE):
#
#   root/     a root file system the arm64 guest runs (scripts/vm-run
#             --arch arm64 shares it over 9p): the arm64 packages the guest
#             tests use (busybox-static, dash, coreutils, util-linux, kmod,
#             e2fsprogs, fio, ...) and their dependencies, unpacked with
#             dpkg-deb -x (no maintainer scripts run); the Debian arm64
#             kernels (linux-image-arm64 = 6.1, linux-image-6.12-arm64)
#             with their modules, depmod'ed
#   headers/  Debian's arm64 kernel headers for the same two kernels, for
#             scripts/build-modules.sh --arch arm64. Their scripts/ and
#             tools/ symlinks point at the host's linux-kbuild-* (amd64
#             binaries of the same version, from the amd64 headers that
#             'make deps' installs): the kbuild host tools (fixdep,
#             modpost, ...) must run on the build machine, and the arm64
#             package's linux-kbuild dependency would be arm64 binaries.
#   kernels   the releases, one a line
#
# The package set is resolved by apt itself (as if onto an empty arm64
# system), so it needs `dpkg --add-architecture arm64` and apt-get update
# done (scripts/install-deps.sh --arch arm64 does both). It runs again only
# when this script changes or the cache is incomplete.
#
#   arm64-root.sh [--print-dir] [--force]
set -euo pipefail

readonly PROG=arm64-root
readonly SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${VL_ARM64_CACHE:-$SRC_DIR/build-arm64/vm}

die() {
	echo "$PROG: error: $*" >&2
	exit 1
}

force=0
while (($#)); do
	case $1 in
	--print-dir) echo "$cache"; exit 0 ;;
	--force) force=1; shift ;;
	-h | --help) sed -n '3,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done

# What the guest tests run (tests/guest/*.sh and lib.sh) besides our own
# programs; apt adds the libraries and the essential packages they need.
readonly GUEST_PACKAGES=(
	busybox-static dash bash coreutils diffutils findutils grep sed gawk
	util-linux mount procps kmod e2fsprogs fio
	# our programs' shared libraries (libstdc++ is linked statically)
	libc6 libgcc-s1 liburing2 libevdev2
)
# Debian's metapackages for the two kernels we support.
readonly KERNEL_METAPACKAGES=(linux-image-arm64 linux-image-6.12-arm64)

stamp=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
if ((!force)) && [[ -e $cache/stamp && $(cat "$cache/stamp") == "$stamp" ]]; then
	exit 0
fi

dpkg --print-foreign-architectures | grep -x arm64 >/dev/null ||
	die "arm64 is not a dpkg architecture here; run 'make deps ARCH=arm64' (or 'dpkg --add-architecture arm64 && apt-get update')"
command -v depmod >/dev/null || die "depmod not found; run 'make deps' (kmod)"

echo "$PROG: building the arm64 guest root and kernel headers in $cache"
rm -rf "$cache.new"
mkdir -p "$cache.new"/{debs/partial,kdebs,root,headers}
cd "$cache.new"

# The kernel releases the metapackages point at, e.g. 6.1.0-57-arm64.
releases=()
for meta in "${KERNEL_METAPACKAGES[@]}"; do
	pkg=$(apt-cache depends --no-recommends --no-suggests "$meta:arm64" 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { sub(/:arm64$/, "", $2); print $2; exit }')
	[[ -n $pkg ]] || die "apt knows no $meta for arm64; run 'apt-get update' after 'dpkg --add-architecture arm64'"
	releases+=("${pkg#linux-image-}")
done

# The user space of the guest: apt resolves the dependencies as for an
# empty arm64 system (an empty dpkg status, arm64 as the only architecture)
# and only downloads.
: >status
apt-get -q -y --download-only \
	-o Debug::NoLocking=1 -o Dir::State::status="$PWD/status" \
	-o Dir::Cache::archives="$PWD/debs" \
	-o APT::Architecture=arm64 -o APT::Architectures::=arm64 \
	-o APT::Install-Recommends=false -o APT::Install-Suggests=false \
	install "${GUEST_PACKAGES[@]}" >apt.log 2>&1 ||
	{ cat apt.log >&2; die "apt-get could not download the arm64 guest packages (see above)"; }

# The kernels and their headers, without their dependencies.
kpkgs=()
for rel in "${releases[@]}"; do
	kpkgs+=("linux-image-$rel:arm64" "linux-headers-$rel:arm64")
done
(cd kdebs && apt-get download "${kpkgs[@]}") >>apt.log 2>&1 ||
	{ cat apt.log >&2; die "apt-get download ${kpkgs[*]} failed (see above)"; }

# Unpack. Maintainer scripts do not run, so what they would create is
# made below.
for deb in debs/*.deb kdebs/linux-image-*.deb; do
	dpkg-deb -x "$deb" root
done
for deb in kdebs/linux-headers-*.deb; do
	dpkg-deb -x "$deb" headers
done
# /bin/sh and awk come from postinst and update-alternatives.
[[ -e root/bin/sh ]] || ln -s dash root/bin/sh
[[ -e root/usr/bin/awk ]] || ln -s gawk root/usr/bin/awk
mkdir -p root/{proc,sys,dev,run,tmp,root,mnt} root/var/tmp root/etc
[[ -e root/etc/passwd ]] || printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >root/etc/passwd
[[ -e root/etc/group ]] || printf 'root:x:0:\nnogroup:x:65534:\n' >root/etc/group
for bin in bin/sh bin/busybox bin/dash usr/bin/fio sbin/mkfs.ext4 bin/kmod usr/bin/awk; do
	[[ -e root/$bin ]] || die "the guest root has no /$bin after unpacking; see $cache.new/apt.log"
done
file -L root/bin/busybox | grep "statically linked" >/dev/null ||
	die "root/bin/busybox is not static; busybox-static did not unpack"

for rel in "${releases[@]}"; do
	[[ -d root/lib/modules/$rel/kernel ]] || die "linux-image-$rel unpacked no modules"
	[[ -e root/boot/vmlinuz-$rel ]] || die "linux-image-$rel unpacked no /boot/vmlinuz-$rel"
	depmod -b "$PWD/root" "$rel"
	# Kbuild host tools: the host's, of the same version (see the top).
	hdr=headers/usr/src/linux-headers-$rel
	[[ -e $hdr/Makefile ]] || die "linux-headers-$rel unpacked no $hdr"
	for link in "$hdr/scripts" "$hdr/tools"; do
		target=$(readlink "$link")          # ../../lib/linux-kbuild-X/scripts
		kbuild=${target#../../lib/}
		kbuild=${kbuild%%/*}                # linux-kbuild-X
		[[ -d /usr/lib/$kbuild ]] ||
			die "the arm64 headers of $rel need the host's /usr/lib/$kbuild: run 'make deps' (linux-headers-amd64, linux-headers-6.12-amd64)"
		mkdir -p headers/usr/lib
		ln -sfn "/usr/lib/$kbuild" "headers/usr/lib/$kbuild"
	done
	# The arm64 Makefile includes the common headers by absolute path;
	# they are architecture-independent and come with the amd64 headers.
	common=$(awk '$1 == "include" { print $2 }' "$hdr/Makefile")
	[[ -e $common ]] ||
		die "the arm64 headers of $rel include $common, which is not installed: run 'make deps' (linux-headers-amd64, linux-headers-6.12-amd64, same version as the arm64 ones)"
	hostver=$(dpkg-query -W -f='${Version}' "$(basename "$(dirname "$common")")" 2>/dev/null || true)
	armver=$(dpkg-deb -f kdebs/linux-headers-"$rel"_*.deb Version)
	[[ $hostver == "$armver" ]] ||
		die "the host's $(basename "$(dirname "$common")") is $hostver, the arm64 headers are $armver: run 'apt-get update && make deps' so that both are the archive's current version"
done
printf '%s\n' "${releases[@]}" >kernels
rm -rf debs kdebs status
echo "$stamp" >stamp

rm -rf "$cache"
mv "$cache.new" "$cache"
echo "$PROG: done: kernels $(tr '\n' ' ' <"$cache/kernels")($(du -sh "$cache/root" | cut -f1) root)"
