#!/usr/bin/env bash
# Builds tests/subproject (voxshm through add_subdirectory) in a scratch
# directory and runs what it built.
#
#   run.sh SOURCE_DIR [C_COMPILER] [CXX_COMPILER]
set -euo pipefail
src=$1
cc=${2:-cc}
cxx=${3:-c++}
work=$(mktemp -d "${TMPDIR:-/tmp}/voxshm-subproject-XXXXXX")
trap 'rm -rf "$work"' EXIT
cmake -S "$src/tests/subproject" -B "$work" -DVOXSHM_SOURCE_DIR="$src" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build "$work" -j 2
if find "$work" -path '*examples-c*' -type f -perm -u+x | grep -q .; then
  echo "subproject: voxshm's examples were built" >&2
  exit 1
fi
"$work/sub_consumer"
echo "subproject: only the library was built, and sub_consumer ran"
