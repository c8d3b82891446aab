#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The Debian packages on a system: install the .debs of scripts/build-debs.sh
# (VL_DEB_DIR) into a writable copy of the root, configure one blk device
# from the shipped examples, enable its units and "boot": the disk comes up
# with no other step, serves writes and reads, and everything stops cleanly
# on SIGTERM.
#
# The module: virtio-loopback-dkms's postinst would have DKMS compile it,
# which takes minutes under emulation, so automatic builds are off
# (/etc/dkms/no-autoinstall) and DKMS loads the binaries it built on the
# host from the same source instead (packaging/test/dkms-build.sh, dkms
# mktarball; VL_DKMS_MODULES): dkms ldtarball, then dkms install. Its
# depmod reads every module of the kernel, minutes under emulation too: the
# module index comes from the same depmod run on the host over the same
# modules (dkms-build.sh --index-for).
#
# PID 1 here is busybox, not systemd, so packaging/test/unit-run.py starts
# the units enabled for multi-user.target from the installed unit files, as
# systemd would (ExecStartPre/ExecStart with the environment files and %i,
# as User=, waiting for READY=1), after systemd-udevd (which applies the
# installed udev rule). Root is an overlay: the host root (read-only 9p)
# below, tmpfs above, chrooted into.
. "$(dirname "$0")/lib.sh"

[ -n "${VL_DEB_DIR:-}" ] && ls "$VL_DEB_DIR"/virtio-loopback_*.deb >/dev/null 2>&1 ||
	fail "no .debs in VL_DEB_DIR='${VL_DEB_DIR:-}' (make package)"
dkms_binaries=${VL_DKMS_MODULES:-}/$(uname -r)/virtio-loopback-binaries.tar.gz
[ -f "$dkms_binaries" ] && [ -f "${dkms_binaries%/*}/modules-index.tar" ] ||
	fail "no DKMS binaries and module index in '${dkms_binaries%/*}' (packaging/test/dkms-build.sh)"
root=/tmp/sysroot
in_root() {
	chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}
# Steps with the guest's uptime: where the time goes under emulation.
step() { echo "=== [$(cut -d' ' -f1 /proc/uptime) s] $*"; }

step "a writable root: overlay of / with tmpfs on top, chroot"
mkdir -p /tmp/overlay/upper /tmp/overlay/work "$root"
mount -t overlay overlay -o lowerdir=/,upperdir=/tmp/overlay/upper,workdir=/tmp/overlay/work "$root" ||
	fail "cannot mount the overlay root"
for d in proc sys dev; do mount --rbind "/$d" "$root/$d" || fail "cannot bind /$d"; done
# rbind: a project under /tmp is a share mounted inside the guest's /tmp.
for d in run tmp; do mount --rbind "/$d" "$root/$d" || fail "cannot bind /$d"; done
# What udev or systemd would have made in /dev (dkms uses <(...)).
for fd in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2; do
	[ -e "/dev/${fd%%:*}" ] || ln -s "${fd#*:}" "/dev/${fd%%:*}"
done
in_root dpkg-query -W virtio-loopback >/dev/null 2>&1 && fail "virtio-loopback is already installed on the host"

step "dpkg -i $(cd "$VL_DEB_DIR" && echo virtio-loopback_*.deb virtio-loopback-dkms_*.deb)"
# No module build in the guest (see above), no man-db index update (slow
# under emulation, and nothing here reads it).
mkdir -p "$root/etc/dkms"
touch "$root/etc/dkms/no-autoinstall"
rm -f "$root/var/lib/man-db/auto-update"
start=$(now_ms)
in_root dpkg -i "$VL_DEB_DIR"/virtio-loopback_*.deb "$VL_DEB_DIR"/virtio-loopback-dkms_*.deb \
	>/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i failed"; }
cat /tmp/dpkg.log
echo "dpkg -i took $((($(now_ms) - start) / 1000)) s"
in_root dpkg-query -W -f='${Package} ${Status}\n' virtio-loopback virtio-loopback-dkms
in_root dpkg-query -W -f='${Status}\n' virtio-loopback virtio-loopback-dkms | grep -q -v 'install ok installed' &&
	fail "a package is not fully installed"

step "the module: dkms ldtarball (the host's build of the packaged source), dkms install"
version=$(in_root dpkg-query -W -f='${Version}' virtio-loopback-dkms)
[ -f "$root/usr/src/virtio-loopback-$version/dkms.conf" ] || fail "no /usr/src/virtio-loopback-$version/dkms.conf"
in_root dkms ldtarball "$dkms_binaries" >/tmp/dkms.log 2>&1 || { cat /tmp/dkms.log; fail "dkms ldtarball failed"; }
in_root dkms install -m virtio-loopback -v "$version" -k "$(uname -r)" --no-depmod >/tmp/dkms.log 2>&1 ||
	{ cat /tmp/dkms.log; fail "dkms install failed"; }
step "the module index (depmod on the host)"
tar -xf "${dkms_binaries%/*}/modules-index.tar" -C "$root/lib/modules/$(uname -r)" ||
	fail "cannot unpack the module index"
in_root dkms status virtio-loopback | grep "$(uname -r).*: installed" ||
	fail "dkms does not list the module as installed: $(in_root dkms status)"
file=$(in_root modinfo -n virtio_loopback) || fail "modprobe cannot find virtio_loopback"
step "the users from sysusers.d"
case $file in */updates/dkms/*) echo "$file" ;; *) fail "virtio_loopback resolves to $file, not DKMS's" ;; esac
in_root systemd-sysusers || fail "systemd-sysusers failed"
in_root getent passwd virtio-loopback vhost-user || fail "the users are missing"
in_root id -nG virtio-loopback | grep -qw vhost-user || fail "virtio-loopback is not in the group vhost-user"

step "configure blk-disk0 from the examples, enable the units"
examples=$root/usr/share/doc/virtio-loopback/examples/config
mkdir -p "$root/etc/virtio-loopback" "$root/var/lib/virtio-loopback"
cp "$examples/blk-disk0.conf" "$examples/adapter.conf" "$root/etc/virtio-loopback/"
image=$(sed -n 's/^IMAGE=//p' "$root/etc/virtio-loopback/blk-disk0.conf")
[ -n "$image" ] || fail "blk-disk0.conf names no IMAGE"
truncate -s 64M "$root$image"
in_root chown vhost-user:vhost-user "$image"
in_root systemctl enable vhost-user-blk@disk0.service virtio-loopback-adapter.service ||
	fail "systemctl enable failed"
ls "$root/etc/systemd/system/multi-user.target.wants/"

step "boot: systemd-udevd, then the units of virtio-loopback enabled for multi-user.target"
# (The host's own enabled units are in the same folder: only ours start.)
in_root dpkg -L virtio-loopback >/tmp/package-files
units=
for link in "$root"/etc/systemd/system/multi-user.target.wants/*; do
	grep -qx "$(readlink "$link")" /tmp/package-files && units="$units ${link##*/}"
done
echo "units:$units"
in_root /lib/systemd/systemd-udevd --daemon || fail "cannot start systemd-udevd"
# Not through in_root: $! must be unit-run's PID (chroot and env exec it).
# shellcheck disable=SC2086
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
	python3 "$VL_SRC_DIR/packaging/test/unit-run.py" --ready-file /tmp/units-ready $units &
runner=$!
wait_until 120 '[ -e /tmp/units-ready ] || ! kill -0 $runner 2>/dev/null' && [ -e /tmp/units-ready ] ||
	fail "the units did not come up"
step "the units are up; the disk"
disk=$(find_virtio_disk 30) || fail "no virtio disk appeared"
step "the disk is /dev/$disk; the node and the processes"
ls -l /dev/virtio-loopback
[ "$(in_root stat -c %G:%a /dev/virtio-loopback)" = virtio-loopback:660 ] ||
	fail "the udev rule did not give /dev/virtio-loopback to virtio-loopback, mode 0660"
set -- $(cat /tmp/units-ready)
[ $# = 2 ] || fail "expected 2 services, got pids '$*'"
for pid_user in "$1:vhost-user" "$2:virtio-loopback"; do
	uid=$(awk '/^Uid:/ { print $2 }' "/proc/${pid_user%%:*}/status")
	[ "$uid" = "$(in_root id -u "${pid_user#*:}")" ] || fail "PID ${pid_user%%:*} runs as uid $uid, not ${pid_user#*:}"
done

step "write 8 MiB to /dev/$disk, read them back"
dd if=/dev/urandom of=/tmp/data bs=1M count=8 status=none
dd if=/tmp/data of="/dev/$disk" bs=1M oflag=direct status=none || fail "writing /dev/$disk failed"
dd if="/dev/$disk" of=/tmp/back bs=1M count=8 iflag=direct status=none || fail "reading /dev/$disk failed"
cmp /tmp/data /tmp/back || fail "read back differs"

step "stop (SIGTERM): every service exits with status 0"
kill -TERM "$runner"
wait "$runner" || fail "a service did not stop cleanly (unit-run exited with $?)"
wait_until 10 '[ "$(loopback_devices)" = 0 ]' || fail "the device is still there"
cmp -n 8388608 /tmp/data "$root$image" || fail "the image does not hold the data written"
in_root udevadm control --exit || true
unload_module
check_kernel_log
step PASS
