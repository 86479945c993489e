#!/usr/bin/env bash
# Installs the named build tools with apt-get when they are missing (as
# root, or through sudo). Tools: cmake, pkg-config, cc, c++, valgrind.
#
#   scripts/ensure-tools.sh cmake pkg-config cc c++
set -euo pipefail

pkgs=()
for tool in "$@"; do
  command -v "$tool" >/dev/null 2>&1 && continue
  case "$tool" in
    cc) pkgs+=(gcc) ;;
    c++) pkgs+=(g++) ;;
    *) pkgs+=("$tool") ;;
  esac
done
[ "${#pkgs[@]}" -eq 0 ] && exit 0

echo "installing what is missing: ${pkgs[*]}" >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here: please install ${pkgs[*]} yourself" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install ${pkgs[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y "${pkgs[@]}"
