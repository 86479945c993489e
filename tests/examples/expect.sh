#!/usr/bin/env bash
# Runs a command and checks its exit status and that its output (stdout and
# stderr together) contains a given text.
#
#   expect.sh STATUS TEXT COMMAND [ARGS...]
set -uo pipefail
want=$1 text=$2
shift 2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out" 2>&1
rc=$?
cat "$out"
if [ "$rc" -ne "$want" ]; then
  echo "expect: $1 exited $rc, expected $want" >&2
  exit 1
fi
if ! grep -qF -- "$text" "$out"; then
  echo "expect: the output does not contain: $text" >&2
  exit 1
fi
