#!/usr/bin/env bash
# Runs a server and a client example as two unrelated processes that meet
# at a socket path in a fresh temporary directory, and checks that both
# exit 0 and that the client printed a given text.
#
#   run_pair.sh server-first|client-first TEXT SERVER CLIENT [SERVER_ARGS...]
#
# The server is run as `SERVER PATH SERVER_ARGS...`, the client as
# `CLIENT PATH`. With client-first the client starts before anyone listens
# (it must retry its connect).
set -euo pipefail
order=$1 text=$2 server=$3 client=$4
shift 4

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sock="$dir/example.sock"

if [ "$order" = server-first ]; then
  "$server" "$sock" "$@" &
  spid=$!
  for _ in $(seq 100); do
    [ -S "$sock" ] && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
  done
  [ -S "$sock" ] || { echo "run_pair: the server did not listen on $sock" >&2; wait "$spid" || true; exit 1; }
  crc=0
  "$client" "$sock" >"$dir/client.out" || crc=$?
  src=0
  wait "$spid" || src=$?
else
  "$client" "$sock" >"$dir/client.out" &
  cpid=$!
  sleep 0.3
  src=0
  "$server" "$sock" "$@" || src=$?
  crc=0
  wait "$cpid" || crc=$?
fi

cat "$dir/client.out"
echo "run_pair: server exited $src, client exited $crc"
[ "$src" -eq 0 ] && [ "$crc" -eq 0 ] || exit 1
grep -qF -- "$text" "$dir/client.out" || { echo "run_pair: the client did not print: $text" >&2; exit 1; }
