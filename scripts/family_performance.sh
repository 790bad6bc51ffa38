#!/usr/bin/env bash
# Reproduces docs/PERFORMANCE.md's "Every version" section on this machine: for v1.0 early, v1.1
# and v2 Small (random weights of the released shapes), `tessera infer` of one tile whose valid
# observation counts spread like a real tile's (synth --observations varied) on one core, with
# ORT fp32 and the native engine at fp32, bf16 and int8, engines alternated per pass (PASSES,
# default 1); then each native precision's agreement with ORT fp32 on that tile (tessera compare).
# Each run infers a small tile first and the measured one second: engines are built on the first
# (TileRunner keeps them), so the second tile's ms/pixel is the steady state.
# Writes summaries, tables and the tile's observation histogram to out/family/ (or $1). Run it on
# an idle machine: about 12 minutes on one core of the 2-core machine (docs/PERFORMANCE.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/out/family}
tessera=${TESSERA:-$root/build/tessera}
python=${PYTHON:-/usr/bin/python3}
passes=${PASSES:-1}
pixels=${PIXELS:-1920}  # a tile pixels x 1: one cloud cell per 24 pixels (the count mix per cell)
mkdir -p "$out"
cd "$out"
tile=tiles/grid_0.05_52.15 warm=tiles/grid_0.05_52.05
"$tessera" synth -o "$tile" --size "${pixels}x1" --observations varied --seed 11 --force
"$tessera" synth -o "$warm" --size 48x1 --observations varied --seed 12 --force
"$python" - "$tile" > observations.txt <<'PY'
import sys
import numpy as np
tile = sys.argv[1]
s2 = (np.load(f"{tile}/s2/masks.npy") != 0).sum(0).ravel()
s1 = sum(((np.load(f"{tile}/s1/sar_{o}.npy") != 0).any(-1)).sum(0).ravel()
         for o in ("ascending", "descending"))
print(f"{s2.size} pixels; valid S2 observations: mean {s2.mean():.1f}, 0-8 {np.mean(s2 <= 8):.1%}, "
      f"40-100 {np.mean((s2 >= 40) & (s2 <= 100)):.1%}, above 256 {np.mean(s2 > 256):.1%}; "
      f"valid S1: mean {s1.mean():.1f}")
PY
cat observations.txt
"$tessera" make-model --force --arch v1.0-early -o v1.0-early.onnx >/dev/null
"$tessera" make-model --force --arch v1.1 --stats mpc -o v1.1.onnx >/dev/null
"$tessera" make-model --force --arch v2 -o v2.onnx >/dev/null
for pass in $(seq 1 "$passes"); do
  for model in v1.0-early v1.1 v2; do
    for run in "ort fp32" "native fp32" "native bf16" "native int8"; do
      set -- $run
      echo "== pass $pass: $model $1 $2" >&2
      "$tessera" infer "$warm" "$tile" -m "$model.onnx" -o "emb_${model}_$1_$2" --engine "$1" \
        --precision "$2" --layout single:1 -b 64 --force \
        --summary "infer_${model}_$1_$2_$pass.json" >/dev/null
    done
  done
done
for model in v1.0-early v1.1 v2; do
  for run in native_fp32 native_bf16 native_int8; do
    "$tessera" compare "emb_${model}_ort_fp32" "emb_${model}_$run" --force \
      -o "compare_${model}_$run.md" >/dev/null || true
  done
done
"$python" - <<'PY' | tee speed.md
import glob, json
rows = {}
for f in sorted(glob.glob("infer_*.json")):
    run = json.load(open(f))
    model, engine, precision = f[len("infer_"):-len(".json")].rsplit("_", 3)[:3]
    tile = run["tiles"][1]  # the measured tile: engines built on the first
    rows.setdefault((model, f"{engine} {precision}"), []).append(tile["ms_per_pixel"])
print("| model | engine | ms/pixel (one core) | vs ORT fp32 |")
print("|---|---|---:|---:|")
for (model, engine), ms in sorted(rows.items()):
    best = min(ms)
    ort = min(rows[(model, "ort fp32")])
    print(f"| {model} | {engine} | {best:.2f} | {ort / best:.2f}x |")
PY
echo "results in $out" >&2
