# SPDX-License-Identifier: Apache-2.0
#
# virtio-loopback: top-level build. See README.md.
#   make          install missing Debian packages, build user space and the
#                 kernel module for every installed kernel
#   make test     build, then run every test (unit and guest) via CTest
#   make demo     build, then show the system working in a guest
#   make bench    build, then run the benchmarks (benchmarks/README.md)
#
# Variables: BUILD (build folder, default build), WERROR=1 (warnings are
# errors), SANITIZE=1 (ASan+UBSan), JOBS (parallel compile jobs).

BUILD ?= build
JOBS ?= $(shell nproc)
WERROR ?= 0
SANITIZE ?= 0
CTEST_ARGS ?=

CMAKE_FLAGS = -DVL_WERROR=$(if $(filter 1,$(WERROR)),ON,OFF) \
              -DVL_SANITIZE=$(if $(filter 1,$(SANITIZE)),ON,OFF)

all: userspace modules

deps:
	@scripts/install-deps.sh

userspace: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

modules: deps
	@scripts/build-modules.sh $(abspath $(BUILD))

test: all
	cd $(BUILD) && ctest --output-on-failure -j 2 $(CTEST_ARGS)

test-unit: userspace
	cd $(BUILD) && ctest --output-on-failure -j 2 -LE vm $(CTEST_ARGS)

test-vm: all
	cd $(BUILD) && ctest --output-on-failure -L vm $(CTEST_ARGS)

demo: all
	@scripts/demo.sh

# Benchmarks side by side with VDUSE, loop, NBD, null_blk and uinput in one
# 6.12 guest boot (about 16 minutes after the build); writes
# docs/benchmarks/results.{md,json,svg}. See benchmarks/README.md.
bench: all
	@benchmarks/run.sh --build $(abspath $(BUILD))

# Kernel coding style of the module (needs Debian's linux-source; not in CI).
checkpatch:
	@scripts/checkpatch.sh

clean:
	rm -rf $(BUILD)

.PHONY: all deps userspace modules test test-unit test-vm demo bench checkpatch clean
