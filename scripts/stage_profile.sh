#!/usr/bin/env bash
# Reproduces docs/PERFORMANCE.md's "Where the time goes on the realistic mix": `tessera infer
# --profile-stages` of v1.1 and v2 Small (random weights of the released shapes) at bf16 and
# int8 on one core, on a 64 x 64 tile and on the 1,920 x 1 tile of "Every version", both from
# `synth --observations varied --seed 11`. Prints each run's stage table (ms, share of the
# profiled time, GEMM rates) with the machine's load before and after; writes the summaries to
# out/stages/ (or $1). About 15 minutes on one idle core of the 2-core machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/out/stages}
tessera=${TESSERA:-$root/build/tessera}
python=${PYTHON:-/usr/bin/python3}
mkdir -p "$out"
cd "$out"
"$tessera" synth -o tiles/grid_0.05_52.15 --size 64x64 --observations varied --seed 11 --force
"$tessera" synth -o tiles/grid_0.05_52.25 --size 1920x1 --observations varied --seed 11 --force
"$tessera" make-model --force --arch v1.1 --stats mpc -o v1.1.onnx >/dev/null
"$tessera" make-model --force --arch v2 -o v2.onnx >/dev/null
for tile in grid_0.05_52.15 grid_0.05_52.25; do
  for model in v2 v1.1; do
    for precision in int8 bf16; do
      run="${tile}_${model}_${precision}"
      echo "== $run ($(uptime | sed 's/.*load/load/'))" >&2
      "$tessera" infer "tiles/$tile" -m "$model.onnx" -o "emb_$run" --engine native \
        --precision "$precision" --layout single:1 -b 64 --force --profile-stages \
        --summary "stages_$run.json" >/dev/null
      echo "   done ($(uptime | sed 's/.*load/load/'))" >&2
    done
  done
done
"$python" - stages_*.json <<'PY'
import json, sys
for path in sys.argv[1:]:
    summary = json.load(open(path))
    stages, tile = summary["stages"], summary["tiles"][0]
    outside = sum(stages[n]["ms"] for n in
                  ("tile_scan", "input_preparation", "embedding_quantisation", "writing"))
    total = stages["engine_ms"] + outside
    print(f"\n{path}: {tile['pixels_valid']} pixels, {tile['batches']} batches, "
          f"{stages['run_shapes']} run shapes, {total / 1e3:.1f} s profiled")
    print("| stage | ms | share % | GOP/s |\n|---|---:|---:|---:|")
    for name, stage in stages.items():
        if not isinstance(stage, dict) or stage["ms"] == 0:
            continue
        rate = stage.get("gops")
        print(f"| {name} | {stage['ms']:.0f} | {100 * stage['ms'] / total:.1f} | "
              f"{'' if rate is None else f'{rate:.0f}'} |")
    print(f"| engine_other | {stages['engine_other_ms']:.0f} | "
          f"{100 * stages['engine_other_ms'] / total:.1f} | |")
PY
