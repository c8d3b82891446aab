# SPDX-License-Identifier: Apache-2.0
#
# virtio-loopback: top-level build. See README.md.
#   make          install missing Debian packages, build user space and the
#                 kernel module for every installed kernel
#   make test     build, then run every test (unit and guest) via CTest
#   make demo     build, then show the system working in a guest
#   make bench    build, then run the benchmarks (benchmarks/README.md)
#   make sanitize build with ASan+UBSan into build-asan, run the host tests
#   make stress   the long forms: 20 rounds of 64 devices, the fault matrix
#                 10 times, 100000 random uapi calls, fuzzers for FUZZ_SECONDS
#   make install  install user space, units, udev rule, man pages, the
#                 back-end library and the DKMS module source (DESTDIR, PREFIX)
#   make package  the Debian packages into $(BUILD)/packages (docs/packaging.md)
#
# ARCH=arm64 cross-builds for arm64 into build-arm64 (user space with
# cmake/aarch64-linux-gnu.cmake, the module against Debian's arm64 headers)
# and tests it in arm64 guests: make ARCH=arm64, make test-vm ARCH=arm64.
#
# Variables: TRIES (runs of a failing test in make test, default 2),
# BUILD (build folder, default build), WERROR=1 (warnings are
# errors), SANITIZE=1 (ASan+UBSan), JOBS (parallel compile jobs), PREFIX
# (install prefix, default /usr/local), DESTDIR (staging root for install).

# Target architecture: empty or the host's (x86_64), or arm64.
ARCH ?=
ifneq ($(filter arm64 aarch64,$(ARCH)),)
CROSS := arm64
else ifneq ($(filter-out x86_64 amd64 x86,$(ARCH)),)
$(error ARCH=$(ARCH) is not supported: use ARCH=arm64, or no ARCH for the host (x86_64))
else
CROSS :=
endif

ifeq ($(CROSS),arm64)
BUILD ?= build-arm64
else
BUILD ?= build
endif
JOBS ?= $(shell nproc)
WERROR ?= 0
SANITIZE ?= 0
CTEST_ARGS ?=
TRIES ?= 2
FUZZ_SECONDS ?= 300
PREFIX ?= /usr/local

CMAKE_FLAGS = -DVL_WERROR=$(if $(filter 1,$(WERROR)),ON,OFF) \
              -DVL_SANITIZE=$(if $(filter 1,$(SANITIZE)),ON,OFF) \
              -DCMAKE_INSTALL_PREFIX=$(PREFIX)
# Cross builds: no fuzzers (clang, host-only), no benchmarks, no man pages
# (help2man would have to run the arm64 programs).
ifeq ($(CROSS),arm64)
CMAKE_FLAGS += -DCMAKE_TOOLCHAIN_FILE=$(CURDIR)/cmake/aarch64-linux-gnu.cmake \
               -DVL_FUZZ=OFF -DVL_BUILD_BENCHMARKS=OFF -DVL_MAN_PAGES=OFF
DEPS_ARGS = --arch arm64
MODULES_ARGS = --arch arm64
# The guest tests of the arm64 build (tests/CMakeLists.txt, label arm64);
# make test ARCH=arm64 adds the Yocto check (label yocto-arm64).
VM_LABEL = ^arm64$$
# Targets that need host binaries or an x86 guest.
NATIVE_GOALS = sanitize stress demo bench package checkpatch
ifneq ($(filter $(NATIVE_GOALS),$(MAKECMDGOALS)),)
$(error make $(filter $(NATIVE_GOALS),$(MAKECMDGOALS)) is for the host only, not ARCH=arm64 (README.md, "Building for arm64"))
endif
else
DEPS_ARGS =
MODULES_ARGS =
VM_LABEL = vm
endif

all: userspace modules

deps:
	@scripts/install-deps.sh $(DEPS_ARGS)

userspace: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

modules: deps
	@scripts/build-modules.sh $(MODULES_ARGS) $(abspath $(BUILD))

# A failing test runs once more (TRIES=1: never): the guest tests run under
# emulation on shared machines, and a timing bound may be missed once. The
# failed attempt's output stays in the log, above the retry; a test that
# fails twice fails. Intermittent failures are bugs all the same: fix them.
test: all
ifeq ($(CROSS),arm64)
	cd $(BUILD) && ctest --output-on-failure -L arm64 --repeat until-pass:$(TRIES) $(CTEST_ARGS)
else
	cd $(BUILD) && ctest --output-on-failure -j 2 -LE stress --repeat until-pass:$(TRIES) $(CTEST_ARGS)
endif

test-unit: userspace
	cd $(BUILD) && ctest --output-on-failure -j 2 -LE 'vm|stress|yocto' $(CTEST_ARGS)

test-vm: all
	cd $(BUILD) && ctest --output-on-failure -L '$(VM_LABEL)' $(CTEST_ARGS)

# User space under AddressSanitizer and UndefinedBehaviorSanitizer: unit,
# end-to-end and interop tests (the guest tests use the normal build).
sanitize: deps
	@cmake -S . -B $(BUILD)-asan -DVL_SANITIZE=ON -DVL_FUZZ=OFF \
		-DVL_WERROR=$(if $(filter 1,$(WERROR)),ON,OFF) >/dev/null
	@cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ctest --output-on-failure -j 2 -L 'unit|e2e|interop' $(CTEST_ARGS)

# The long forms of the reliability tests, and the fuzzers for longer.
stress: all
	cd $(BUILD) && ctest --output-on-failure -L stress $(CTEST_ARGS)
	@for f in $(BUILD)/fuzz/*_fuzz; do \
		echo "fuzzing $$f for $(FUZZ_SECONDS) s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 \
			-artifact_prefix=$(BUILD)/fuzz/artifacts/ $(BUILD)/fuzz/corpus/$$(basename $$f) \
			tests/fuzz/corpus/$$(basename $$f) || exit 1; \
	done

demo: all
	@scripts/demo.sh

# Benchmarks side by side with VDUSE, loop, NBD, null_blk, uinput and veth in
# one 6.12 guest boot (about 18 minutes after the build); writes
# docs/benchmarks/results.{md,json,svg}. See benchmarks/README.md.
bench: all
	@benchmarks/run.sh --build $(abspath $(BUILD))

# The prefix is set when configuring (units and the .pc file name the
# installed paths); DESTDIR stages the tree elsewhere.
install: userspace
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

# .debs from a copy of the tree (the tree stays clean): $(BUILD)/packages.
package: deps
	@scripts/build-debs.sh -j $(JOBS) $(BUILD)/packages

# Kernel coding style of the module (needs Debian's linux-source; not in CI).
checkpatch:
	@scripts/checkpatch.sh

clean:
	rm -rf $(BUILD) $(BUILD)-asan

.PHONY: all deps userspace modules test test-unit test-vm sanitize stress demo bench install package \
	checkpatch clean
