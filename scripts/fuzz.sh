#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target of fuzz/ for SECONDS each
# (default 60), one after another. Installs cargo-fuzz with the nightly
# toolchain first if it is missing.
#
# Each target starts from a scratch copy of its committed corpus
# (fuzz/corpus/<target>/), so the committed corpus is never changed; the
# scratch corpus is kept under fuzz/target/scratch-corpus/<target>/ (to
# minimise and commit entries from by hand), and crashing inputs go to
# fuzz/artifacts/<target>/. Prints one line per target: runs executed,
# seconds, executions per second, corpus size, and whether a crash was found. Exits non-zero if
# any target found one (or failed to run).
#
# Usage: scripts/fuzz.sh [SECONDS]
#   FUZZ_TARGETS="wire_decode ..."   only these targets
#   FUZZ_RSS_MB=2048                 libFuzzer's -rss_limit_mb
#   FUZZ_ARGS="..."                  extra libFuzzer arguments
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS]" >&2
  exit 2
fi
rss_mb="${FUZZ_RSS_MB:-2048}"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo +nightly install cargo-fuzz --locked
fi

cd fuzz
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"

# One build for all targets; cargo-fuzz builds with AddressSanitizer and
# debug assertions by default.
cargo +nightly fuzz build

failed=0
summary=()
for t in $targets; do
  scratch="target/scratch-corpus/$t"
  rm -rf "$scratch"
  mkdir -p "$scratch" "artifacts/$t"
  if [ -d "corpus/$t" ]; then
    cp corpus/"$t"/* "$scratch"/
  fi
  log="target/fuzz-$t.log"
  start=$(date +%s)
  set +e
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of arguments
  cargo +nightly fuzz run "$t" "$scratch" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$log" 2>&1
  rc=$?
  set -e
  elapsed=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  corpus=$(find "$scratch" -type f | wc -l)
  crash="no"
  if [ "$rc" -ne 0 ]; then
    crash="YES (exit $rc; see fuzz/$log and fuzz/artifacts/$t/)"
    failed=1
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | head -n 5 >&2 || true
  fi
  line=$(printf '%-18s runs %-9s seconds %-4s exec/s %-6s corpus %-6s crash %s' \
    "$t" "${runs:-?}" "$elapsed" "${rate:-?}" "$corpus" "$crash")
  echo "$line"
  summary+=("$line")
done

echo
echo "fuzz.sh summary (${seconds}s per target):"
printf '%s\n' "${summary[@]}"
exit "$failed"
