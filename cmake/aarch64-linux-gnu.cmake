# SPDX-License-Identifier: Apache-2.0
#
# CMake toolchain file: cross-build user space for arm64 (aarch64) with
# Debian's cross compiler (g++-aarch64-linux-gnu) and the arm64 libraries
# installed through multiarch (libfmt-dev:arm64, liburing-dev:arm64, ...;
# scripts/install-deps.sh --arch arm64 installs them). `make ARCH=arm64`
# uses it:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(VL_TRIPLET aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${VL_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${VL_TRIPLET}-g++)

# Multiarch: the arm64 libraries live in /usr/lib/aarch64-linux-gnu and
# their headers in /usr/include (shared with the host's). CMake's
# CMAKE_LIBRARY_ARCHITECTURE makes find_package/find_library look in the
# triplet folders; pkg-config must look at the arm64 .pc files only.
set(CMAKE_LIBRARY_ARCHITECTURE ${VL_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${VL_TRIPLET}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# Test binaries are run at build time to list their GoogleTest cases
# (gtest_discover_tests): through qemu-user when it is there.
find_program(VL_QEMU_AARCH64 qemu-aarch64)
if(VL_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${VL_QEMU_AARCH64})
endif()
