#!/usr/bin/env bash
# Builds tessera (scripts/build.sh) and runs the whole test suite: unit tests, CLI tests and
# the numpy oracles. Extra arguments go to ctest (e.g. -R model -V).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
