#!/usr/bin/env bash
# Reproduces docs/PERFORMANCE.md's "Engines and precisions" section on this machine, in one
# invocation: the full built-in model on one core and on two, ORT fp32 against the native engine
# at fp32, bf16 and int8 and PyTorch bf16 autocast on the same weights (alternated: every
# engine once per pass, PASSES passes), then each precision's agreement with fp32.
# Writes JSON and Markdown to out/engines/ (or $1). Needs a built tree (scripts/build.sh) and,
# for the PyTorch rows, Debian's python3-torch. Run it on an idle machine: about 15 minutes on
# 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/out/engines}
tessera=${TESSERA:-$root/build/tessera}
python=${PYTHON:-/usr/bin/python3}
passes=${PASSES:-2}
mkdir -p "$out"
cd "$out"
step() { echo "== $*" >&2; }

# bench and infer make the built-in model on first use; its path is in any bench JSON.
"$tessera" bench -t 1 -b 1 --batches 1 -r 1 --warmup 0 --format json > probe.json
model=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["path"])' probe.json)

for pass in $(seq 1 "$passes"); do
  step "pass $pass: one core, batch 64 and 256"
  "$tessera" bench -t 1 -b 64,256 --batches 2 -r 2 --engine ort,native --precision fp32,bf16,int8 \
    --format json > "one_core_$pass.json"
  if "$python" -c 'import torch' 2>/dev/null; then
    "$python" "$root/tools/torch_peer.py" bench --model "$model" -t 1 -b 64,256 --batches 2 -r 2 \
      --precision bf16 -o "torch_one_core_$pass.json" >/dev/null
  fi
  step "pass $pass: two cores, best layouts"
  "$tessera" bench --layout 2x1,single:2 -b 64 --batches 2 -r 2 --engine ort,native \
    --precision fp32,bf16,int8 --format json > "two_cores_$pass.json"
  if "$python" -c 'import torch' 2>/dev/null; then
    "$python" "$root/tools/torch_peer.py" bench --model "$model" -t 2 -b 64 --batches 2 -r 2 \
      --precision bf16 -o "torch_two_cores_$pass.json" >/dev/null
  fi
done

step "agreement on a synthetic 64 x 64 tile (tessera compare), each against ORT fp32"
"$tessera" synth -o tiles/grid_0.05_51.55 --size 64x64 --s2-steps 60 --s1-steps 20/20 --seed 1 --force
for run in "ort fp32" "native fp32" "native bf16" "native int8"; do
  set -- $run
  "$tessera" infer tiles/grid_0.05_51.55 -o "emb_$1_$2" --engine "$1" --precision "$2" \
    --layout 2x1 -b 64 --force --summary "infer_$1_$2.json" >/dev/null
done
for run in native_fp32 native_bf16 native_int8; do
  "$tessera" compare emb_ort_fp32 "emb_$run" > "compare_$run.md"
done
if "$python" -c 'import torch' 2>/dev/null; then
  step "agreement on the same random inputs: tessera's precisions and torch bf16 autocast"
  "$python" "$root/tools/torch_peer.py" agree --model "$model" --tessera "$tessera" \
    --pixels 128 --threads 2 > agree.md
fi
"$tessera" report --from one_core_*.json two_cores_*.json $(ls torch_*.json 2>/dev/null) -o report.md
echo "results in $out" >&2
