#!/usr/bin/env bash
# Runs every test voxshm has: formatting and lint checks, the Rust unit and
# cross-process tests, and the C/C++ tests of the ABI.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
