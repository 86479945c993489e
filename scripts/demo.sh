#!/usr/bin/env bash
# voxshm's demo. Builds the library and the demo programs (release, with
# CMake, into build/), then runs a producer and a consumer as two processes
# that exchange a few GiB in payloads of several sizes, once through voxshm
# and once through a plain Unix socket, and prints how long each took. The
# consumer checks every byte; the demo exits non-zero if any was wrong.
#
#   ./scripts/demo.sh [--mib-per-size N] [--short]
#
# Installs CMake and a C compiler with apt-get first if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-tools.sh cmake cc c++
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
  command -v cargo >/dev/null 2>&1 || { echo "demo: cargo (Rust) is needed to build voxshm" >&2; exit 1; }
fi

echo "building voxshm and the demo (the first build takes a minute or two)..."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release --log-level=WARNING
cmake --build build --target demo_producer demo_consumer -j "$(nproc)"
echo
exec build/examples-c/demo_producer "$@"
