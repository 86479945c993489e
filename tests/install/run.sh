#!/usr/bin/env bash
# Installs a built voxshm into a temporary prefix, checks what landed there,
# and builds a separate consumer project (consumer/) against it: with
# CMake's find_package (shared and static), with pkg-config through CMake's
# pkg_check_modules, and with pkg-config and the compiler alone; each in C
# and C++. Every program built is run.
#
#   tests/install/run.sh BUILD_DIR [CONFIG [CC [CXX]]]
#
# ctest runs it as the test install.consumer.
set -euo pipefail
build=$(cd "$1" && pwd)
config=${2:-}
cc=${3:-cc}
cxx=${4:-c++}
here=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/voxshm-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

step() { printf '\n== %s\n' "$*"; }
fail() { echo "install test: $*" >&2; exit 1; }

step "cmake --install into $prefix"
cmake --install "$build" --prefix "$prefix" ${config:+--config "$config"}

step "what was installed"
pc=$(find "$prefix" -name voxshm.pc -print -quit)
[ -n "$pc" ] || fail "no voxshm.pc under $prefix"
libdir=$(dirname "$(dirname "$pc")")
real=$(find "$libdir" -maxdepth 1 -name 'libvoxshm.so.*.*.*' -print -quit)
if [ -z "$real" ] || [ ! -f "$real" ] || [ -L "$real" ]; then
  fail "no libvoxshm.so.X.Y.Z file in $libdir"
fi
[ -L "$libdir/libvoxshm.so.0" ] || fail "libvoxshm.so.0 is not a symlink"
[ "$(readlink "$libdir/libvoxshm.so.0")" = "$(basename "$real")" ] || fail "libvoxshm.so.0 does not point at $(basename "$real")"
[ -L "$libdir/libvoxshm.so" ] || fail "libvoxshm.so is not a symlink"
[ "$(readlink -f "$libdir/libvoxshm.so")" = "$(readlink -f "$real")" ] || fail "libvoxshm.so does not lead to $(basename "$real")"
[ -f "$libdir/libvoxshm.a" ] || fail "no libvoxshm.a"
[ -f "$prefix/include/voxshm.h" ] || fail "no include/voxshm.h"
[ -f "$prefix/include/voxshm_dlopen.h" ] || fail "no include/voxshm_dlopen.h"
if [ -f "$here/../../include/voxshm.hpp" ]; then
  [ -f "$prefix/include/voxshm.hpp" ] || fail "no include/voxshm.hpp"
fi
[ -f "$libdir/cmake/voxshm/voxshmConfig.cmake" ] || fail "no voxshmConfig.cmake"
[ -f "$libdir/cmake/voxshm/voxshmConfigVersion.cmake" ] || fail "no voxshmConfigVersion.cmake"
soname=$(readelf -d "$real" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ "$soname" = libvoxshm.so.0 ] || fail "SONAME is '$soname', not libvoxshm.so.0"
(cd "$prefix" && find . \( -type f -o -type l \) | sort)

# The programs built below must take the library from the prefix.
uses_prefix_lib() {
  local got
  got=$(ldd "$1" | sed -n 's/.*libvoxshm\.so\.0 => \([^ ]*\).*/\1/p')
  [ "$(readlink -f "$got")" = "$(readlink -f "$real")" ] || fail "$1 loads libvoxshm.so.0 from '$got', not from the prefix"
}

step "consumer project with find_package(voxshm 0.1 CONFIG REQUIRED)"
cmake -S "$here/consumer" -B "$work/with-cmake" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx"
cmake --build "$work/with-cmake" -j 2
for exe in consumer_c consumer_cpp consumer_c_static; do
  "$work/with-cmake/$exe"
done
uses_prefix_lib "$work/with-cmake/consumer_c"
uses_prefix_lib "$work/with-cmake/consumer_cpp"
if ldd "$work/with-cmake/consumer_c_static" | grep -q libvoxshm; then
  fail "consumer_c_static links libvoxshm dynamically"
fi

export PKG_CONFIG_PATH="$libdir/pkgconfig"
step "consumer project with pkg-config (pkg_check_modules)"
cmake -S "$here/consumer" -B "$work/with-pkg-config" -DCONSUMER_WITH_PKG_CONFIG=ON \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx"
cmake --build "$work/with-pkg-config" -j 2
for exe in consumer_c consumer_cpp; do
  "$work/with-pkg-config/$exe"
  uses_prefix_lib "$work/with-pkg-config/$exe"
done

step "consumer built with the compiler and pkg-config --cflags --libs voxshm"
echo "pkg-config --modversion voxshm: $(pkg-config --modversion voxshm)"
echo "pkg-config --cflags --libs voxshm: $(pkg-config --cflags --libs voxshm)"
rpath="-Wl,-rpath,$(pkg-config --variable=libdir voxshm)"
# shellcheck disable=SC2046 # pkg-config's output is meant to be split
"$cc" -std=c11 -Wall -Wextra -Werror "$here/consumer/consumer.c" -o "$work/pc_consumer_c" \
  $(pkg-config --cflags --libs voxshm) "$rpath"
# shellcheck disable=SC2046
"$cxx" -std=c++17 -Wall -Wextra -Werror "$here/consumer/consumer.cpp" -o "$work/pc_consumer_cpp" \
  $(pkg-config --cflags --libs voxshm) "$rpath"
"$work/pc_consumer_c"
"$work/pc_consumer_cpp"
uses_prefix_lib "$work/pc_consumer_c"
uses_prefix_lib "$work/pc_consumer_cpp"

step "the installed tree moved elsewhere: pkg-config still finds it"
moved="$work/moved-prefix"
mv "$prefix" "$moved"
export PKG_CONFIG_PATH="$moved/${libdir#"$prefix"/}/pkgconfig"
mlib="$(pkg-config --variable=libdir voxshm)"
[ "$(readlink -f "$mlib")" = "$(readlink -f "$moved/${libdir#"$prefix"/}")" ] \
  || fail "after the move pkg-config says libdir is $mlib"
# shellcheck disable=SC2046
"$cc" -std=c11 -Wall -Wextra -Werror "$here/consumer/consumer.c" -o "$work/moved_consumer_c" \
  $(pkg-config --cflags --libs voxshm) "-Wl,-rpath,$mlib"
"$work/moved_consumer_c"
got=$(ldd "$work/moved_consumer_c" | awk '/libvoxshm/ {print $3}')
[ "$(readlink -f "$got")" = "$(readlink -f "$mlib/libvoxshm.so.0")" ] \
  || fail "moved_consumer_c loads libvoxshm from '$got', not from the moved prefix"
mv "$moved" "$prefix"

step "install test passed"
