#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# A third-party device against the installed back-end library: builds
# examples/example-device with its own Makefile, finding the library only
# through pkg-config in a staged install (PKG_CONFIG_PATH and
# PKG_CONFIG_SYSROOT_DIR), then serves it and reads its bytes with the
# test driver (a user-space virtio driver: no kernel needed).
#   example-device.sh DESTDIR LIBDIR TEST_DRIVER
# LIBDIR is the install's library folder (e.g. /usr/local/lib).
set -euo pipefail

die() { echo "example-device: $*" >&2; exit 1; }
(($# == 3)) || die "usage: example-device.sh DESTDIR LIBDIR TEST_DRIVER"
dest=$(realpath -e "$1")
libdir=$2
driver=$3
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

work=$(mktemp -d /tmp/vl-example.XXXXXX)
pid=
cleanup() {
	[[ -z $pid ]] || kill "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
cp -r "$src/examples/example-device" "$work/"
export PKG_CONFIG_PATH=$dest$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
echo "example-device: pkg-config --cflags --libs: $(pkg-config --cflags --libs virtio-loopback-backend)"
make -C "$work/example-device" --no-print-directory CXXFLAGS='-O1 -Wall -Wextra -Werror' ||
	die "the example device does not build against the installed library"

program=$work/example-device/vhost-user-pattern
"$program" --help | grep -- '--byte' >/dev/null || die "--help does not list --byte"
"$program" -s "$work/pattern.sock" --byte 165 &
pid=$!
for _ in $(seq 100); do [[ -S $work/pattern.sock ]] && break; sleep 0.1; done
[[ -S $work/pattern.sock ]] || die "vhost-user-pattern did not create its socket"
"$driver" -s "$work/pattern.sock" rng-read --bytes 4096 --output "$work/bytes" ||
	die "the test driver could not read from vhost-user-pattern"
values=$(od -An -v -tx1 "$work/bytes" | tr -s ' \n' '\n\n' | sed '/^$/d' | sort -u | tr '\n' ' ')
[[ $values == "a5 " ]] || die "read bytes other than 0xa5: $values"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
((status == 0)) || die "vhost-user-pattern exited with $status on SIGTERM"
echo "example-device: PASS (built with pkg-config, served 4096 bytes of 0xa5)"
