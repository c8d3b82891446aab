# SPDX-License-Identifier: Apache-2.0
# The fuzz targets: tests/fuzz/<name>.cpp, each defining
# LLVMFuzzerTestOneInput. Read by tests/fuzz/CMakeLists.txt (to build them)
# and by tests/CMakeLists.txt (to register the "fuzz" CTest entries).
# Targets whose .cpp does not exist yet are skipped. Seed inputs, if any,
# go in tests/fuzz/corpus/<name>/.
set(VL_FUZZ_TARGETS
  virtqueue_fuzz
  vhost_user_fuzz
)
