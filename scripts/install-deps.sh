#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Installs every Debian 12 package virtio-loopback needs to build, test,
# benchmark and demo. Idempotent; returns at once when all is present.
#   --check   only report what is missing (exit 1 if anything is)
set -euo pipefail

PACKAGES=(
	# build
	build-essential cmake pkg-config git bc file
	libfmt-dev liburing-dev libevdev-dev
	libgtest-dev libgmock-dev libbenchmark-dev
	clang libclang-rt-14-dev
	# kernels the module is built for and tested on (Debian 12: 6.1 and 6.12)
	linux-image-amd64 linux-headers-amd64
	linux-image-6.12-amd64 linux-headers-6.12-amd64
	kmod xz-utils zstd
	# the guest test bench
	qemu-system-x86 qemu-utils busybox-static cpio
	# used inside the guest by the tests; third-party back-ends: virtiofsd
	# (qemu-system-common), dpdk-testpmd with the vhost PMD (dpdk-dev,
	# librte-net-vhost23); ping for the net test
	fio e2fsprogs util-linux procps qemu-system-common
	dpdk-dev librte-net-vhost23 iputils-ping
	# benchmarks (make bench): the vdpa tool, plots
	iproute2 gnuplot-nox python3
	# packaging (make install, make package, their tests): man
	# pages, DKMS, the Debian package build and lint, systemd-analyze,
	# systemd-sysusers and setpriv in the guest test
	help2man dkms dh-dkms debhelper fakeroot lintian systemd
)

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
	[[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
	exit 0
fi
if [[ ${1:-} == --check ]]; then
	echo "missing packages: ${missing[*]}" >&2
	exit 1
fi
if ((EUID != 0)); then
	echo "install-deps: these Debian packages are missing: ${missing[*]}" >&2
	echo "install-deps: run 'sudo make deps' (or apt-get install them as root)" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
