# SPDX-License-Identifier: Apache-2.0
SUMMARY = "virtio-loopback: adapter and vhost-user back-ends (blk, input, rng, console)"
DESCRIPTION = "virtio-loopback-adapter connects vhost-user back-ends to the \
virtio-loopback kernel transport, so that this machine's own virtio drivers \
use them; with the vhost-user-blk, -input, -rng and -console back-ends, their systemd \
units, udev rule and users, and the back-end library for other devices."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

require virtio-loopback.inc

DEPENDS = "fmt liburing libevdev"
# sd_notify readiness: libsystemd is loaded at run time when systemd asks.
RDEPENDS:${PN} += "libsystemd"

inherit cmake pkgconfig systemd useradd features_check

# Type=notify units.
REQUIRED_DISTRO_FEATURES = "systemd"

# No tests, fuzzers or man pages (help2man runs the programs: not when
# cross-compiling); the module comes from virtio-loopback-module, not DKMS.
EXTRA_OECMAKE = "-DVL_BUILD_TESTS=OFF -DVL_FUZZ=OFF -DVL_MAN_PAGES=OFF \
                 -DVL_DKMS_SOURCE=OFF \
                 -DVL_SYSTEMD_UNIT_DIR=${systemd_system_unitdir} \
                 -DVL_UDEV_RULES_DIR=${nonarch_base_libdir}/udev/rules.d \
                 -DVL_SYSUSERS_DIR=${nonarch_libdir}/sysusers.d \
                 -DVL_MODPROBE=${base_sbindir}/modprobe \
                 -DVL_UDEVADM=${base_bindir}/udevadm"

# The units are installed but not enabled: each back-end is a template
# (vhost-user-blk@NAME.service with /etc/virtio-loopback/blk-NAME.conf) and
# the adapter needs /etc/virtio-loopback/adapter.conf. Enable them in an
# image recipe or a bbappend once the configuration is there.
SYSTEMD_SERVICE:${PN} = "virtio-loopback-adapter.service vhost-user-blk@.service \
                         vhost-user-input@.service vhost-user-rng@.service \
                         vhost-user-console@.service"
SYSTEMD_AUTO_ENABLE:${PN} = "disable"

# The users the units run as (also in sysusers.d/virtio-loopback.conf, for
# images that create users at boot). The adapter is in the back-ends' group.
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system virtio-loopback; --system vhost-user"
USERADD_PARAM:${PN} = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin \
                       --gid vhost-user vhost-user; \
                       --system --no-create-home --home-dir /nonexistent --shell /sbin/nologin \
                       --gid virtio-loopback --groups vhost-user virtio-loopback"

FILES:${PN} += "${systemd_system_unitdir} ${nonarch_base_libdir}/udev/rules.d \
                ${nonarch_libdir}/sysusers.d"
# Static libraries, headers and virtio-loopback-backend.pc land in
# ${PN}-staticdev and ${PN}-dev as usual.

RRECOMMENDS:${PN} += "kernel-module-virtio-loopback"
