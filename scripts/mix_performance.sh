#!/usr/bin/env bash
# Reproduces docs/PERFORMANCE.md's "The realistic mix on one core": v1.1 and v2 Small (random
# weights of the released shapes) on a 48 x 48 tile from `synth --observations varied --seed 11`,
# one core (`--layout single:1`), `infer --profile-stages` at -b 64 and -b 256 for the native
# engine's bf16 and int8, then v1.1 at -b 256 with ORT fp32 and native fp32/bf16/int8 in one pass
# for the ratios and `tessera compare` against ORT fp32. Prints ms/pixel, the model's counted
# GOP (GEMMs and attention at real lengths, 2*M*N*K) over the wall time and over the engine's
# time, and the agreement. Run it on an idle machine; about 10 minutes on one core.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/out/mix}
tessera=${TESSERA:-$root/build/tessera}
python=${PYTHON:-/usr/bin/python3}
mkdir -p "$out"
cd "$out"
tile=tiles/grid_0.05_52.15
"$tessera" synth -o "$tile" --size 48x48 --observations varied --seed 11 --force >/dev/null
"$tessera" make-model --force --arch v1.1 --stats mpc -o v1.1.onnx >/dev/null
"$tessera" make-model --force --arch v2 -o v2.onnx >/dev/null
run() {  # run MODEL ENGINE PRECISION BATCH
  local name="$1_$2_$3_b$4"
  echo "== $name ($(uptime | sed 's/.*load/load/'))" >&2
  "$tessera" infer "$tile" -m "$1.onnx" -o "emb_$name" --engine "$2" --precision "$3" \
    --layout single:1 -b "$4" --force --profile-stages --summary "mix_$name.json" >/dev/null
}
for model in v1.1 v2; do
  for batch in 64 256; do
    for precision in bf16 int8; do run "$model" native "$precision" "$batch"; done
  done
done
run v1.1 ort fp32 256
run v1.1 native fp32 256
"$python" - mix_*.json <<'PY'
import json, sys
print("| run | pixels | wall s | ms/pixel | GOP counted | GOP/s (wall) | GOP/s (engine) | run shapes |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for path in sorted(sys.argv[1:]):
    summary = json.load(open(path))
    stages, tile = summary["stages"], summary["tiles"][0]
    gop = sum(v.get("gop", 0) for v in stages.values() if isinstance(v, dict))
    engine_s = stages["engine_ms"] / 1e3
    rates = f"{gop / tile['seconds']:.0f} | {gop / engine_s:.0f}" if gop else " | "
    print(f"| {path[4:-5]} | {tile['pixels_valid']} | {tile['seconds']:.1f} | "
          f"{tile['ms_per_pixel']:.2f} | {gop:.0f} | {rates} | {stages.get('run_shapes', '')} |")
PY
for precision in fp32 bf16 int8; do
  echo "-- v1.1 native $precision against ORT fp32"
  "$tessera" compare emb_v1.1_ort_fp32_b256 "emb_v1.1_native_${precision}_b256"
done
