#!/usr/bin/env bash
# Runs every test voxshm has: formatting and lint checks, the Rust unit and
# cross-process tests (with the fuzz corpus replayed once the fuzz targets
# are in), a 20-second soak, then a CMake build from scratch (into build-test/)
# whose ctest run covers the C/C++ tests of the ABI in ffi-tests/, the
# examples, a short run of the demo, and an install into a temporary prefix
# with a consumer project built against it.
#
# Installs CMake, pkg-config and a C/C++ compiler with apt-get first if they
# are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-tools.sh cmake pkg-config cc c++

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
# A short soak: processes killed at random on both sides, every byte and
# the survivors' fds, mappings and memory checked (scripts/soak.sh).
scripts/soak.sh 20

rm -rf build-test
cmake -S . -B build-test -DVOXSHM_WERROR=ON
cmake --build build-test -j "$(nproc)"
ctest --test-dir build-test --output-on-failure -j "$(nproc)"
