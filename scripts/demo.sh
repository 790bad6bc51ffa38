#!/usr/bin/env bash
# The main job on the built-in default: builds tessera (scripts/build.sh), makes the built-in
# Tessera model if it is not there yet, and runs a short benchmark on every core.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/build.sh
build/tessera bench -b 64 --batches 2 -r 2
