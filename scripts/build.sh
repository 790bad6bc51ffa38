#!/usr/bin/env bash
# Installs dependencies (scripts/setup.sh) and builds tessera into build/ (Release).
# Extra arguments go to cmake's configure step, e.g. -DONNXRUNTIME_ROOT=/opt/onnxruntime.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
elif [ "$#" -gt 0 ]; then
  cmake -S . -B build "$@" >/dev/null
fi
cmake --build build -j"$(nproc)"
