#!/usr/bin/env bash
# Builds voxshm with no network: once (with network) copies every crate it
# needs into a directory with `cargo vendor`, then builds the library with
# CMake offline from that directory, with an empty CARGO_HOME so that no
# registry cache can help. Ship the directory with the sources to build on
# a machine that has no network.
#
#   scripts/vendored-build.sh [VENDOR_DIR]     (default: vendor/)
#
# The CMake option is all a build needs: -DVOXSHM_CARGO_VENDOR_DIR=DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

vendor="${1:-vendor}"
if [ ! -d "$vendor" ]; then
  echo "vendoring the crates into $vendor (needs the registry, once)"
  cargo vendor --locked --quiet "$vendor" >/dev/null
fi
vendor=$(cd "$vendor" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/voxshm-vendored-XXXXXX")
trap 'rm -rf "$work"' EXIT
export CARGO_HOME="$work/cargo-home"
mkdir -p "$CARGO_HOME"
cmake -S . -B "$work/build" -DVOXSHM_CARGO_VENDOR_DIR="$vendor" \
  -DVOXSHM_BUILD_EXAMPLES=OFF -DVOXSHM_BUILD_FFI_TESTS=OFF -DVOXSHM_BUILD_BENCH=OFF \
  -DBUILD_TESTING=OFF -DVOXSHM_CARGO="$(command -v cargo)" >/dev/null
cmake --build "$work/build" -j "$(nproc)"
lib=$(find "$work/build" -name 'libvoxshm.so.*.*.*' -print -quit)
[ -n "$lib" ] || { echo "vendored-build: no library was built" >&2; exit 1; }
echo "vendored-build: built $(basename "$lib") offline from $vendor"
