#!/usr/bin/env bash
# Installs dependencies (scripts/setup.sh) and builds tessera into build/ (Release).
#
#   scripts/build.sh              what running tessera needs, and the tessera binary alone
#                                 (a new build/ is configured without the tests)
#   scripts/build.sh --for test   also what the tests need, and every target, the tests included
#
# Other arguments go to cmake's configure step, e.g. -DONNXRUNTIME_ROOT=/opt/onnxruntime.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
purpose=run
case "${1:-}" in
  --for)
    purpose=${2:-}
    shift $(($# >= 2 ? 2 : 1))
    ;;
  --for=*)
    purpose=${1#--for=}
    shift
    ;;
esac
case "$purpose" in
  run|test) ;;
  *) echo "build.sh: --for takes run or test, not '$purpose'" >&2; exit 2 ;;
esac
bash scripts/setup.sh --for "$purpose"

configure_args=("$@")
if [ "$purpose" = test ]; then
  # A build/ that the demo configured holds no tests: they are switched on here.
  grep -qs '^TESSERA_BUILD_TESTS:BOOL=ON$' build/CMakeCache.txt ||
    configure_args=(-DTESSERA_BUILD_TESTS=ON "${configure_args[@]}")
elif [ ! -f build/CMakeCache.txt ]; then
  # The tests need GoogleTest, which only `--for test` installs.
  configure_args=(-DTESSERA_BUILD_TESTS=OFF "${configure_args[@]}")
fi
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f build/CMakeCache.txt ]; then
  # A unity build of tessera's own sources halves a fresh build's CPU time (src/tessera/CMakeLists.txt);
  # the sanitizer builds of scripts/test.sh compile file by file and so still check each file's includes.
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DTESSERA_UNITY_BUILD=ON \
    "${configure_args[@]}" >/dev/null
elif [ "${#configure_args[@]}" -gt 0 ]; then
  cmake -S . -B build "${configure_args[@]}" >/dev/null
fi
if [ "$purpose" = run ]; then
  cmake --build build -j"$(nproc)" --target tessera
else
  cmake --build build -j"$(nproc)"
fi
