#!/usr/bin/env bash
# Soak test of voxshm across real processes, for SECONDS (default 60, at
# least 10). Builds examples/soak (release) and runs its driver:
#
#   phase 1 (half the time): a long-lived sender streams payloads of random
#     sizes (1 B to 16 MiB, log-uniform) to receivers that are killed with
#     SIGKILL at random moments and restarted;
#   phase 2: a long-lived receiver reconnects to senders that are killed and
#     restarted.
#
# Every byte is checked by the receivers. The run fails on a wrong byte, a
# hang (no payload verified for 30 s), a crash of the long-lived process or
# a victim dying of anything but the driver's SIGKILL, or growth of the
# long-lived process's fds, mappings or RSS between connections. It ends
# with a summary and PASS or FAIL (exit status 0 or 1).
#
#   scripts/soak.sh [SECONDS] [--seed S] [--verbose] [--inject hang|crash|leak|wrong-byte]
#
# --seed repeats a run's random choices (not its timing); --verbose prints
# every sample; --inject plants a fault, to see the run fail on it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then
  seconds="$1"
  shift
fi
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/soak.sh [SECONDS] [driver options]" >&2; exit 2 ;;
esac

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
  command -v cargo >/dev/null 2>&1 || { echo "soak: cargo (Rust) is needed" >&2; exit 1; }
fi

cargo build --release --example soak
exec "${CARGO_TARGET_DIR:-target}/release/examples/soak" driver --seconds "$seconds" "$@"
