#!/usr/bin/env bash
# Checks that every code block README.md marks with
#   <!-- file: PATH -->
# is exactly the file at PATH, so the README shows code that is built and
# tested.
#
#   tests/readme_snippets.sh [REPOSITORY_ROOT]
set -euo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root"

files=$(sed -n 's/^<!-- file: \(.*\) -->$/\1/p' README.md)
[ -n "$files" ] || { echo "README.md marks no code blocks" >&2; exit 1; }
status=0
for f in $files; do
  if ! awk -v marker="<!-- file: $f -->" '
      $0 == marker { state = 1; next }
      state == 1 && /^```/ { state = 2; next }
      state == 2 && /^```/ { exit }
      state == 2 { print }
    ' README.md | diff -u "$f" - ; then
    echo "README.md's copy of $f differs from the file (diff above)" >&2
    status=1
  else
    echo "README.md shows $f as it is"
  fi
done
exit $status
