#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Builds the Debian binary packages (debian/) with dpkg-buildpackage -us -uc
# -b from a copy of the source tree, so that neither the tree nor its
# parent gets build files, and puts the .debs (and .buildinfo, .changes) in
# OUT. With --lintian, also runs lintian on them and fails on errors and
# warnings.
#   build-debs.sh [--lintian] [-j N] OUT
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lintian=0
jobs=2
while (($#)); do
	case $1 in
	--lintian) lintian=1; shift ;;
	-j) jobs=${2:?}; shift 2 ;;
	-*) echo "build-debs: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
(($# == 1)) || { echo "usage: build-debs.sh [--lintian] [-j N] OUT" >&2; exit 2; }
mkdir -p "$1"
out=$(realpath "$1")

version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
work=$out/work
rm -rf "$work"
mkdir -p "$work/virtio-loopback-$version"
# What git knows (committed or not, minus what .gitignore hides), or the
# whole tree when this is no git checkout; never the build folders (build,
# build-asan, ...).
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$src" && git ls-files -z --cached --others --exclude-standard |
		while IFS= read -r -d '' f; do
			if [[ -e $f && $f != build*/* ]]; then printf '%s\0' "$f"; fi
		done |
		tar --null -T - -cf -) | tar -xf - -C "$work/virtio-loopback-$version"
else
	tar -C "$src" --exclude='./build*' --exclude=./.git -cf - . |
		tar -xf - -C "$work/virtio-loopback-$version"
fi

echo "build-debs: dpkg-buildpackage -us -uc -b in $work"
start=$(date +%s)
(cd "$work/virtio-loopback-$version" &&
	DEB_BUILD_OPTIONS="parallel=$jobs ${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage -us -uc -b) \
	>"$out/dpkg-buildpackage.log" 2>&1 ||
	{ tail -n 60 "$out/dpkg-buildpackage.log"; echo "build-debs: dpkg-buildpackage failed (log: $out/dpkg-buildpackage.log)" >&2; exit 1; }
rm -f "$out"/*.deb "$out"/*.ddeb "$out"/*.buildinfo "$out"/*.changes
mv "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$out/"
mv "$work"/*.ddeb "$out/" 2>/dev/null || true
rm -rf "$work"
echo "build-debs: $(cd "$out" && ls ./*.deb | tr '\n' ' ')($(($(date +%s) - start)) s)"

if ((lintian)); then
	# Tags we accept: a native package of a project with no Debian bug to close.
	lintian --fail-on error,warning --suppress-tags initial-upload-closes-no-bugs \
		"$out"/*.changes | tee "$out/lintian.log"
	echo "build-debs: lintian: no errors or warnings"
fi
