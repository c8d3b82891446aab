#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds and installs the DKMS module source tree (what make install puts in
# /usr/src/virtio-loopback-VERSION, and virtio-loopback-dkms ships) with
# dkms add/build/install for every installed kernel header set, entirely in
# a temporary tree: the host's /usr/src, /var/lib/dkms and /lib/modules are
# not touched (dkms --sourcetree/--dkmstree/--installtree; the signing key
# DKMS would create in /var/lib/dkms is made in the temporary tree too).
# Checks each module (name, vermagic, license) and puts it, uncompressed, in
# OUT/<kernel-release>/virtio_loopback.ko, and DKMS's binaries-only tarball
# of it (dkms mktarball; dkms ldtarball loads it) in
# OUT/<kernel-release>/virtio-loopback-binaries.tar.gz, for the guest tests.
# With --index-for K (6.12, or a release), also runs depmod over that
# kernel's modules plus the installed one and keeps the result, the module
# index a dkms install leaves in /lib/modules/<release>/, in
# OUT/<release>/modules-index.tar: the packages' guest test uses it, as
# depmod reading every module of the kernel takes minutes under emulation.
#   dkms-build.sh [--index-for K] SOURCE_TREE OUT [RELEASE...]
set -euo pipefail

die() { echo "dkms-build: $*" >&2; exit 1; }

index_for=
if [[ ${1:-} == --index-for ]]; then
	index_for=${2:?}
	shift 2
fi
(($# >= 2)) || die "usage: dkms-build.sh [--index-for K] SOURCE_TREE OUT [RELEASE...]"
src=$(realpath -e "$1") || die "no DKMS source tree at $1"
mkdir -p "$2"
out=$(realpath "$2")
shift 2
[[ -f $src/dkms.conf ]] || die "$src has no dkms.conf"
command -v dkms >/dev/null || die "dkms is not installed (make deps)"

# The name and version dkms.conf declares (it is shell).
# shellcheck disable=SC1091
name=$(set +u && . "$src/dkms.conf" && echo "$PACKAGE_NAME")
version=$(set +u && . "$src/dkms.conf" && echo "$PACKAGE_VERSION")
[[ $name == virtio-loopback && $version =~ ^[0-9]+\.[0-9]+ ]] ||
	die "dkms.conf declares '$name' '$version'"

releases=("$@")
((${#releases[@]})) ||
	mapfile -t releases < <("$(dirname "${BASH_SOURCE[0]}")/../../scripts/build-modules.sh" --list)
((${#releases[@]})) || die "no kernel headers installed"

tmp=$(mktemp -d /tmp/vl-dkms.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# A /usr/src-like tree holding a copy of the source, as a package installs it.
mkdir -p "$tmp/src" "$tmp/dkms" "$tmp/root/lib/modules"
cp -a "$src" "$tmp/src/$name-$version"
trees=(--sourcetree "$tmp/src" --dkmstree "$tmp/dkms" --installtree "$tmp/root/lib/modules")
export mok_signing_key=$tmp/mok.key mok_certificate=$tmp/mok.pub

dkms add -m "$name" -v "$version" "${trees[@]}" >"$tmp/add.log" 2>&1 ||
	{ cat "$tmp/add.log"; die "dkms add failed"; }
for rel in "${releases[@]}"; do
	echo "dkms-build: $name/$version for $rel"
	start=$(date +%s)
	mkdir -p "$tmp/root/lib/modules/$rel"
	if ! dkms build -m "$name" -v "$version" -k "$rel" "${trees[@]}" >"$tmp/build.log" 2>&1; then
		cat "$tmp/build.log" "$tmp/dkms/$name/$version/build/make.log" 2>/dev/null
		die "dkms build failed for $rel"
	fi
	mkdir -p "$out/$rel"
	dkms mktarball -m "$name" -v "$version" -k "$rel" --binaries-only \
		--archive "$out/$rel/$name-binaries.tar.gz" "${trees[@]}" >"$tmp/mktarball.log" 2>&1 ||
		{ cat "$tmp/mktarball.log"; die "dkms mktarball failed for $rel"; }
	dkms install -m "$name" -v "$version" -k "$rel" "${trees[@]}" --no-depmod \
		>"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; die "dkms install failed for $rel"; }
	dkms status -m "$name" -v "$version" -k "$rel" "${trees[@]}" 2>/dev/null | grep ': installed' >/dev/null ||
		die "dkms status does not say installed for $rel: $(dkms status "${trees[@]}" 2>&1)"
	ko=$(find "$tmp/root/lib/modules/$rel/updates/dkms" -name 'virtio_loopback.ko*' | head -n1)
	[[ -n $ko ]] || die "no virtio_loopback.ko under updates/dkms of $rel"
	case $ko in
	*.xz) xz -dc "$ko" >"$out/$rel/virtio_loopback.ko" ;;
	*.zst) zstd -qdc "$ko" >"$out/$rel/virtio_loopback.ko" ;;
	*.gz) gzip -dc "$ko" >"$out/$rel/virtio_loopback.ko" ;;
	*) cp "$ko" "$out/$rel/virtio_loopback.ko" ;;
	esac
	ko=$out/$rel/virtio_loopback.ko
	[[ $(modinfo -F name "$ko") == virtio_loopback ]] || die "$ko: wrong module name"
	[[ $(modinfo -F vermagic "$ko") == "$rel "* ]] ||
		die "$ko: vermagic '$(modinfo -F vermagic "$ko")' is not for $rel"
	[[ $(modinfo -F license "$ko") == GPL* ]] || die "$ko: license is not GPL"
	case $rel in
	"$index_for" | "$index_for".*)
		lib=$tmp/root/lib/modules/$rel
		ln -s "/lib/modules/$rel/kernel" "$lib/kernel"
		for f in modules.order modules.builtin modules.builtin.modinfo; do
			[[ -e /lib/modules/$rel/$f ]] && cp "/lib/modules/$rel/$f" "$lib/"
		done
		depmod -b "$tmp/root" "$rel" || die "depmod failed for $rel"
		grep -q '^updates/dkms/virtio_loopback.ko[^:]*:' "$lib/modules.dep" ||
			die "depmod did not index the module"
		(cd "$lib" && tar -cf "$out/$rel/modules-index.tar" modules.*)
		;;
	esac
	echo "dkms-build: $rel: installed as updates/dkms/${ko##*/} ($(($(date +%s) - start)) s)"
done
dkms remove -m "$name" -v "$version" --all "${trees[@]}" --no-depmod >/dev/null 2>&1 ||
	die "dkms remove failed"
echo "dkms-build: PASS (${releases[*]})"
