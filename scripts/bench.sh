#!/usr/bin/env bash
# Builds libvoxshm in release mode and voxshm-bench against it, then runs
# the benchmark with the arguments given, e.g.
#   ./scripts/bench.sh --quick
#   ./scripts/bench.sh --csv docs/benchmarks.csv
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --quiet
lib="$target/release"
# The library's SONAME is libvoxshm.so.0; cargo only writes libvoxshm.so.
ln -sf libvoxshm.so "$lib/libvoxshm.so.0"

out="$target/bench"
mkdir -p "$out"
"${CC:-cc}" -std=c11 -O2 -Wall -Wextra -Iinclude \
  bench/voxshm-bench.c bench/bench.c bench/mech_voxshm.c bench/mech_kernel.c \
  -L"$lib" -Wl,-rpath,"$lib" -lvoxshm -o "$out/voxshm-bench"

exec "$out/voxshm-bench" "$@"
