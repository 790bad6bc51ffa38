#!/usr/bin/env bash
# Reproduces docs/PERFORMANCE.md's "The realistic mix: peers, the whole job, two cores". v1.1 and
# v2 Small (random weights of the released shapes), tiles from `synth --observations varied`:
#   1. peers in one pass, one core, -b 256, on the 48 x 48 tile of scripts/mix_performance.sh:
#      `infer` with ORT fp32 and native bf16 / int8, then PyTorch bf16 autocast over the
#      same batches (tools/torch_peer.py mix; Debian torch's fp32 is a generic BLAS, ~27x ORT),
#      and `tessera compare` of each native precision against ORT fp32;
#   2. the job against the engine: one `infer --profile-stages` over three 48 x 48 tiles (the
#      engine is built once per job), each tile's wall time against its engines' run time;
#   3. two cores: `--layout core` (one pinned one-thread worker per core) against `single:1` on
#      two tiles, each finished tile's pixels over the job's wall time.
# Run it on an idle machine; about 20 minutes on this 2-core machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/out/mix_job}
tessera=${TESSERA:-$root/build/tessera}
python=${PYTHON:-/usr/bin/python3}
mkdir -p "$out"
cd "$out"
for i in 0 1 2; do
  "$tessera" synth -o "tiles/grid_0.05_52.1$i" --size 48x48 --observations varied \
    --seed $((11 + i)) --force >/dev/null
done
"$tessera" make-model --force --arch v1.1 --stats mpc -o v1.1.onnx >/dev/null
"$tessera" make-model --force --arch v2 -o v2.onnx >/dev/null
stamp() { echo "== $1 ($(uptime | sed 's/.*load/load/'))" >&2; }
infer() {  # infer NAME MODEL ENGINE PRECISION LAYOUT TILE-OPTIONS...
  local name=$1 model=$2 engine=$3 precision=$4 layout=$5
  shift 5
  stamp "$name"
  "$tessera" infer "$@" -m "$model.onnx" -o "emb_$name" --engine "$engine" \
    --precision "$precision" --layout "$layout" -b 256 --force --profile-stages \
    --summary "job_$name.json" >/dev/null 2>&1
}
for model in v1.1 v2; do
  infer "peers_${model}_ort_fp32" "$model" ort fp32 single:1 tiles/grid_0.05_52.10
  for precision in bf16 int8; do
    infer "peers_${model}_native_$precision" "$model" native "$precision" single:1 \
      tiles/grid_0.05_52.10
  done
  stamp "peers_${model}_torch"
  OMP_NUM_THREADS=1 taskset -c 0 "$python" "$root/tools/torch_peer.py" mix --model "$model.onnx" \
    --tile tiles/grid_0.05_52.10 -b 256 -t 1 --precision bf16 -o "torch_$model.json"
done
for model in v1.1 v2; do
  for precision in bf16 int8; do
    infer "job_${model}_$precision" "$model" native "$precision" single:1 --tiles tiles
  done
done
for model in v1.1 v2; do
  for precision in bf16 int8; do
    for layout in single:1 core; do
      infer "cores_${model}_${precision}_${layout%%:*}" "$model" native "$precision" "$layout" \
        tiles/grid_0.05_52.10 tiles/grid_0.05_52.11
    done
  done
done
"$python" "$root/scripts/mix_job_tables.py" .
for model in v1.1 v2; do
  for precision in bf16 int8; do
    echo "-- $model native $precision against ORT fp32"
    "$tessera" compare "emb_peers_${model}_ort_fp32" "emb_peers_${model}_native_$precision" | tail -1
  done
done
