#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Installs every Debian 12 package virtio-loopback needs to build, test,
# benchmark and demo. Idempotent; returns at once when all is present.
#   --check        only report what is missing (exit 1 if anything is)
#   --arch arm64   also what cross-building for arm64 and the arm64 guest
#                  tests need (make ARCH=arm64): dpkg's arm64 architecture,
#                  the aarch64-linux-gnu toolchain, the arm64 -dev libraries
#                  (multiarch), qemu-system-arm, qemu-user; x86 builds and CI
#                  do not pay for them
set -euo pipefail

check=0
arch=
while (($#)); do
	case $1 in
	--check) check=1; shift ;;
	--arch)
		arch=${2:-}
		[[ $arch == arm64 || $arch == aarch64 ]] ||
			{ echo "install-deps: --arch wants arm64, got '${arch}'" >&2; exit 1; }
		arch=arm64
		shift 2
		;;
	*) echo "install-deps: unknown argument '$1' (--check, --arch arm64)" >&2; exit 1 ;;
	esac
done

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
	# librte-net-vhost23); ping and ethtool (channels, per-queue counters)
	# for the net tests
	fio e2fsprogs util-linux procps qemu-system-common
	dpdk-dev librte-net-vhost23 iputils-ping ethtool
	# benchmarks (make bench): the vdpa tool, plots, iperf3 (network)
	iproute2 gnuplot-nox python3 iperf3
	# packaging (make install, make package, their tests): man
	# pages, DKMS, the Debian package build and lint, systemd-analyze,
	# systemd-sysusers and setpriv in the guest test
	help2man dkms dh-dkms debhelper fakeroot lintian systemd
)
# Cross-building and testing for arm64: the same libraries as above for
# arm64, the cross compiler (its gcc-12 is what Debian's arm64 kernel
# headers name), qemu for arm64 guests and qemu-user (CMake runs the arm64
# test programs through it to list their GoogleTest cases). The arm64
# kernels, headers and guest root are fetched, not installed, by
# scripts/arm64-root.sh.
ARM64_PACKAGES=(
	g++-aarch64-linux-gnu gcc-12-aarch64-linux-gnu
	libfmt-dev:arm64 liburing-dev:arm64 libevdev-dev:arm64
	libgtest-dev:arm64 libgmock-dev:arm64
	qemu-system-arm qemu-user
)
foreign_arch_missing=0
if [[ $arch == arm64 ]]; then
	PACKAGES+=("${ARM64_PACKAGES[@]}")
	dpkg --print-foreign-architectures | grep -x arm64 >/dev/null || foreign_arch_missing=1
fi

# Installed for the host's architecture (or "all"), or for the one a name
# asks for (libfmt-dev:arm64). With a foreign architecture added, an
# unqualified name can match a package of both.
native=$(dpkg --print-architecture)
installed() { # package[:arch]
	local name=${1%%:*} want=$native
	[[ $1 == *:* ]] && want=${1#*:}
	dpkg-query -W -f='${db:Status-Status} ${Architecture}\n' "$name" 2>/dev/null |
		awk -v want="$want" '$1 == "installed" && ($2 == want || $2 == "all") { found = 1 } END { exit !found }'
}
missing=()
for pkg in "${PACKAGES[@]}"; do
	installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0 && !foreign_arch_missing)); then
	exit 0
fi
if ((check)); then
	((foreign_arch_missing)) && echo "missing: dpkg architecture arm64 (dpkg --add-architecture arm64)" >&2
	((${#missing[@]} == 0)) || echo "missing packages: ${missing[*]}" >&2
	exit 1
fi
if ((EUID != 0)); then
	((foreign_arch_missing)) && echo "install-deps: dpkg does not have the arm64 architecture yet" >&2
	((${#missing[@]} == 0)) || echo "install-deps: these Debian packages are missing: ${missing[*]}" >&2
	echo "install-deps: run 'sudo make deps${arch:+ ARCH=$arch}' (or install them as root)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ((foreign_arch_missing)); then
	echo "install-deps: adding the arm64 architecture to dpkg (multiarch)"
	dpkg --add-architecture arm64
fi
echo "install-deps: installing ${missing[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
