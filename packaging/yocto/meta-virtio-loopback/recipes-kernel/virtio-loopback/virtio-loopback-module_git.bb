# SPDX-License-Identifier: Apache-2.0
SUMMARY = "virtio-loopback transport: user-space virtio devices for this kernel"
DESCRIPTION = "virtio_loopback.ko, the kernel side of virtio-loopback: virtio \
devices implemented in user space and used by the kernel's own drivers."
LICENSE = "GPL-2.0-only"
LIC_FILES_CHKSUM = "file://kernel/COPYING;md5=b234ee4d69f5fce4486a80fdaf4a4263"

require recipes-support/virtio-loopback/virtio-loopback.inc

inherit module

# kernel/Kbuild, built as an external module (M=); it finds the uapi header
# as ../include/uapi, which the checkout has. Package: kernel-module-virtio-loopback.
EXTRA_OEMAKE += "-C ${STAGING_KERNEL_DIR} M=${S}/kernel"
MAKE_TARGETS = "modules"
MODULES_INSTALL_TARGET = "modules_install"
MODULES_MODULE_SYMVERS_LOCATION = "kernel"

# The adapter's unit loads it (modprobe); to load it at boot regardless:
#KERNEL_MODULE_AUTOLOAD += "virtio_loopback"
