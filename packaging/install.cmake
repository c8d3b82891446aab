# SPDX-License-Identifier: Apache-2.0
# Install rules (make install, debian/rules, Yocto's cmake.bbclass); see
# docs/packaging.md for the tree they produce. Paths are relative to the
# install prefix unless given absolute (a distribution may put units and
# udev rules under /lib, say).
include(GNUInstallDirs)

set(VL_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING "systemd system units (relative: under the prefix)")
set(VL_UDEV_RULES_DIR "lib/udev/rules.d" CACHE STRING "udev rules (relative: under the prefix)")
set(VL_SYSUSERS_DIR "lib/sysusers.d" CACHE STRING "sysusers.d files (relative: under the prefix)")
# Read at run time by the units, so absolute; not installed into.
set(VL_CONFIG_DIR "/etc/virtio-loopback" CACHE STRING "Where the units read their environment files")
set(VL_MODPROBE "/sbin/modprobe" CACHE STRING "modprobe, for the adapter unit")
set(VL_UDEVADM "/bin/udevadm" CACHE STRING "udevadm, for the adapter unit")

set(VL_PROGRAMS virtio-loopback-adapter vhost-user-blk vhost-user-input vhost-user-rng
                vhost-user-console)
# The back-end library for third-party devices, top to bottom (link order).
set(VL_BACKEND_LIBS vl_backend vl_vhost_user vl_virtqueue vl_base)

# ---- programs ----------------------------------------------------------------
install(TARGETS ${VL_PROGRAMS} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# ---- the back-end library: static libs, headers, pkg-config ----------------
# Headers keep their layout ("base/log.hpp", "backend/device.hpp") under
# <includedir>/virtio-loopback, which the .pc file's Cflags name.
set_target_properties(${VL_BACKEND_LIBS} PROPERTIES POSITION_INDEPENDENT_CODE ON)
install(TARGETS ${VL_BACKEND_LIBS} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
foreach(dir base virtqueue vhost_user backend)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/lib/${dir}
          DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/virtio-loopback
          FILES_MATCHING PATTERN "*.hpp")
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/include/uapi/linux/virtio_loopback.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/linux)

# pkg-config paths: relative to ${prefix} where possible (relocatable).
foreach(kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${kind}}")
    set(VL_PC_${kind} "${CMAKE_INSTALL_${kind}}")
  else()
    set(VL_PC_${kind} "\${prefix}/${CMAKE_INSTALL_${kind}}")
  endif()
endforeach()
# The libraries are static, so what they use is needed by every link:
# public Requires (fmt is also in the headers' interface).
set(VL_PC_REQUIRES "fmt")
configure_file(${CMAKE_CURRENT_LIST_DIR}/pkgconfig/virtio-loopback-backend.pc.in
               ${CMAKE_BINARY_DIR}/packaging/virtio-loopback-backend.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/packaging/virtio-loopback-backend.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# ---- system integration: units, udev rule, users --------------------------
set(VL_BINDIR ${CMAKE_INSTALL_FULL_BINDIR})
foreach(unit vhost-user-blk@.service vhost-user-input@.service vhost-user-rng@.service
             vhost-user-console@.service
             virtio-loopback-adapter.service)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/systemd/${unit}.in
                 ${CMAKE_BINARY_DIR}/packaging/systemd/${unit} @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/packaging/systemd/${unit} DESTINATION ${VL_SYSTEMD_UNIT_DIR})
endforeach()
install(FILES ${CMAKE_CURRENT_LIST_DIR}/systemd/virtio-loopback.sysusers
        DESTINATION ${VL_SYSUSERS_DIR} RENAME virtio-loopback.conf)
install(FILES ${CMAKE_CURRENT_LIST_DIR}/udev/60-virtio-loopback.rules
        DESTINATION ${VL_UDEV_RULES_DIR})

# ---- the kernel module's source for DKMS ----------------------------------
# /usr/src/virtio-loopback-VERSION: dkms.conf, kernel/ and the uapi header
# at include/uapi/linux/, where kernel/Kbuild looks for it (../include/uapi).
# Then: dkms install virtio-loopback/VERSION. Absolute, as DKMS only looks
# in /usr/src; Debian puts it in virtio-loopback-dkms, Yocto turns it off.
option(VL_DKMS_SOURCE "Install the kernel module's source for DKMS" ON)
set(VL_DKMS_SOURCE_DIR "/usr/src" CACHE STRING "Where DKMS module sources go (DKMS reads /usr/src)")
if(VL_DKMS_SOURCE)
  set(dkms_tree ${VL_DKMS_SOURCE_DIR}/${PROJECT_NAME}-${PROJECT_VERSION})
  configure_file(${CMAKE_CURRENT_LIST_DIR}/dkms/dkms.conf ${CMAKE_BINARY_DIR}/packaging/dkms.conf @ONLY)
  install(FILES ${CMAKE_BINARY_DIR}/packaging/dkms.conf DESTINATION ${dkms_tree})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/kernel/ DESTINATION ${dkms_tree}/kernel
          FILES_MATCHING PATTERN "*.c" PATTERN "*.h" PATTERN "Kbuild" PATTERN "Makefile"
                         PATTERN "COPYING")
  install(FILES ${PROJECT_SOURCE_DIR}/include/uapi/linux/virtio_loopback.h
          DESTINATION ${dkms_tree}/include/uapi/linux)
endif()

# ---- documentation -----------------------------------------------------------
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/uapi.md
              ${PROJECT_SOURCE_DIR}/docs/packaging.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_CURRENT_LIST_DIR}/systemd/examples/
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples/config)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/examples/example-device
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# Man pages from each program's --help (help2man runs the built programs,
# so not when cross-compiling: Yocto turns them off).
if(NOT VL_MAN_PAGES STREQUAL "OFF")
  find_program(VL_HELP2MAN help2man)
  if(CMAKE_CROSSCOMPILING OR NOT VL_HELP2MAN)
    if(VL_MAN_PAGES STREQUAL "ON")
      message(FATAL_ERROR "VL_MAN_PAGES=ON needs help2man and a native build")
    endif()
    message(STATUS "man pages are not generated (install help2man; not when cross-compiling)")
  else()
    set(VL_MAN_NAME_virtio-loopback-adapter
        "connect vhost-user back-ends to this machine's kernel as virtio devices")
    set(VL_MAN_NAME_vhost-user-blk "vhost-user virtio-blk back-end for a disk image or block device")
    set(VL_MAN_NAME_vhost-user-input "vhost-user virtio-input back-end: evdev passthrough or synthetic events")
    set(VL_MAN_NAME_vhost-user-rng "vhost-user virtio-rng back-end fed by getrandom()")
    set(VL_MAN_NAME_vhost-user-console "vhost-user virtio-console back-end: ports bridged to ptys or Unix sockets")
    set(pages)
    foreach(program IN LISTS VL_PROGRAMS)
      set(page ${CMAKE_BINARY_DIR}/man/${program}.1)
      add_custom_command(
        OUTPUT ${page}
        COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
        COMMAND ${VL_HELP2MAN} --no-info --section=1 --source=virtio-loopback
                "--name=${VL_MAN_NAME_${program}}"
                --include=${CMAKE_CURRENT_LIST_DIR}/man/see-also.h2m
                --output=${page} $<TARGET_FILE:${program}>
        DEPENDS ${program} ${CMAKE_CURRENT_LIST_DIR}/man/see-also.h2m
        COMMENT "help2man ${program}"
        VERBATIM)
      list(APPEND pages ${page})
    endforeach()
    add_custom_target(man-pages ALL DEPENDS ${pages})
    install(FILES ${pages} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
  endif()
endif()
