#!/usr/bin/env bash
# Builds libvoxshm in release mode and the two benchmark programs against
# it, then runs one of them with the arguments given:
#   ./scripts/bench.sh --quick                      # voxshm-bench
#   ./scripts/bench.sh --csv docs/benchmarks.csv
#   ./scripts/bench.sh --latency --quick            # voxshm-latency
#   ./scripts/bench.sh --latency --csv latency.csv
#   ./scripts/bench.sh --iceoryx2 --quick           # the same shapes over iceoryx2
#   ./scripts/bench.sh --latency --iceoryx2 [args]  # both, case by case, in one table
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"

# bench/iceoryx2 is a cargo project of its own (it downloads and builds
# iceoryx2), built only here and only when asked.
if [[ "${1:-}" == "--iceoryx2" ]]; then
  shift
  cargo build --release --quiet --manifest-path bench/iceoryx2/Cargo.toml \
    --target-dir "$target/iceoryx2"
  exec "$target/iceoryx2/release/voxshm-latency-iceoryx2" "$@"
fi

program=voxshm-bench
extra=()
if [[ "${1:-}" == "--latency" ]]; then
  program=voxshm-latency
  shift
  if [[ "${1:-}" == "--iceoryx2" ]]; then
    shift
    cargo build --release --quiet --manifest-path bench/iceoryx2/Cargo.toml \
      --target-dir "$target/iceoryx2"
    extra=(--iceoryx2 "$target/iceoryx2/release/voxshm-latency-iceoryx2")
  fi
fi

cargo build --release --quiet
lib="$target/release"
# The library's SONAME is libvoxshm.so.0; cargo only writes libvoxshm.so.
ln -sf libvoxshm.so "$lib/libvoxshm.so.0"

out="$target/bench"
mkdir -p "$out"
build() {
  local name="$1"
  shift
  "${CC:-cc}" -std=c11 -O2 -Wall -Wextra -Iinclude "$@" bench/bench.c \
    -L"$lib" -Wl,-rpath,"$lib" -lvoxshm -o "$out/$name"
}
build voxshm-bench bench/voxshm-bench.c bench/mech_voxshm.c bench/mech_kernel.c bench/mech_fanout.c
build voxshm-latency bench/voxshm-latency.c bench/latency.c bench/lat_voxshm.c bench/lat_floors.c \
  bench/mech_voxshm.c

exec "$out/$program" "${extra[@]}" "$@"
