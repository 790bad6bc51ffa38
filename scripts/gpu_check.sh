#!/usr/bin/env bash
# Runs the GPU checks of docs/GPU.md on a machine with an NVIDIA GPU, from a build of tessera.
#
#   scripts/gpu_check.sh [STAGE...]     stages: env bench tests infer cpu graph
#                                       (default: env bench tests infer cpu, in that order)
#
# Environment:
#   BUILD    build directory holding tessera and tests/test_{model,runtime} (default: build-dev)
#   RESULTS  where tables, summaries and logs go (default: out/gpu)
#   SIZE     synthetic tile for the infer stage (default: 1024x1024)
#   GPU_PATH, PRECISION  the GPU device and precision of the infer stage (default: cuda:0+io, tf32)
#
# The CUDA libraries ORT's CUDA execution provider needs (cuBLAS, cuDNN, cudart 13) are taken from
# /usr/local/cuda/lib64 and from the nvidia-* Python packages beside python3, where present.
# Every stage prints its table last and keeps its full output under $RESULTS.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build-dev}
RESULTS=${RESULTS:-out/gpu}
SIZE=${SIZE:-1024x1024}
B="$BUILD/tessera"
mkdir -p "$RESULTS"
site=$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || true)
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:$site/nvidia/cu13/lib:$site/nvidia/cudnn/lib:${LD_LIBRARY_PATH:-}"
model="$RESULTS/tessera.onnx"
stages=("$@")
[ "${#stages[@]}" -gt 0 ] || stages=(env bench tests infer cpu)

ensure_model() { [ -f "$model" ] || "$B" make-model -o "$model" >/dev/null; }

stage_env() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  lscpu | grep -E '^(Model name|CPU\(s\)|NUMA node\(s\)|Thread)'
  if ldd "$B" | grep 'not found'; then
    echo "gpu_check: $B is missing libraries (above)" >&2
    return 1
  fi
  "$B" topo
}

stage_tests() {
  mkdir -p "$BUILD/test-tmp"
  "$BUILD/tests/test_model" --gtest_filter='*Gpu*' 2>&1 | tee "$RESULTS/test_model_gpu.log" | grep -E '^\[ *(OK|FAILED|SKIPPED|PASSED) '
  "$BUILD/tests/test_runtime" 2>&1 | tee "$RESULTS/test_runtime.log" | grep -E '^\[ *(FAILED|SKIPPED|PASSED) |tests ran'
}

# One bench process per path, so that a path that fails hard cannot take the others' rows along.
stage_bench() {
  ensure_model
  local precision path files=()
  for precision in fp32 tf32 fp16; do
    for path in cuda:0 cuda:0+io cuda:0+graph; do
      local f="$RESULTS/bench_${path//[:+]/_}_$precision.json"
      "$B" bench -m "$model" --device "$path" --precision "$precision" -b 1024,4096,16384 \
        --batches 3 -r 2 --warmup 2 -o json >"$f"
      [ -s "$f" ] && files+=("$f")  # failed cases are error rows of a complete table
    done
  done
  "$B" bench -m "$model" --device cuda:0+io -b 1048576 --batches 1 -r 1 --warmup 0 -o md \
    >"$RESULTS/bench_oom.md"
  "$B" report --from "${files[@]}" -o "$RESULTS/bench_gpu.md" >/dev/null
  grep -A40 '^## All rows' "$RESULTS/bench_gpu.md" | grep '^|' | cut -d'|' -f3-17
}

# Two tiles per run: the second shows a tile without engine builds (they are kept between tiles).
stage_infer() {
  ensure_model
  local tiles="$RESULTS/tiles" gpu=${GPU_PATH:-cuda:0+io} p=${PRECISION:-tf32}
  local grid=grid_0.05_0.05
  local two=("$tiles/$grid" "$tiles/grid_0.15_0.05")
  rm -rf "$tiles" "$RESULTS"/o_*
  "$B" synth --out "${two[0]}" --size "$SIZE" --seed 3 >/dev/null
  "$B" synth --out "${two[1]}" --size "$SIZE" --seed 4 >/dev/null
  "$B" infer -m "$model" --device "$gpu" --precision "$p" -b 256 --gpu-batch 16384 \
    --out "$RESULTS/o_gpu" --summary "$RESULTS/s_gpu.json" "${two[@]}" 2>&1 | grep -v -E '^(\[[0-9]+/[0-9]+] )?grid'
  "$B" infer -m "$model" --device "cpu,$gpu" --precision "$p" -b 256 --gpu-batch 16384 \
    --out "$RESULTS/o_mix" --summary "$RESULTS/s_mix.json" "${two[@]}" 2>&1 | grep -v -E '^(\[[0-9]+/[0-9]+] )?grid'
  # Agreement with the CPU on a small tile (the CPU is ~100x slower).
  "$B" synth --out "$tiles/small/$grid" --size 64x64 --seed 5 >/dev/null
  "$B" infer -m "$model" --device cpu -b 256 --out "$RESULTS/o_cpu_small" "$tiles/small/$grid" 2>&1 | tail -n 1
  "$B" infer -m "$model" --device "$gpu" --precision "$p" -b 256 --out "$RESULTS/o_gpu_small" \
    "$tiles/small/$grid" 2>&1 | tail -n 1
  python3 "$root/tests/reference/compare_embeddings.py" "$RESULTS/o_cpu_small/$grid" \
    "$RESULTS/o_gpu_small/$grid" --min-within-1-lsb 0.995 | tee "$RESULTS/agreement.txt"
  python3 "$root/tests/reference/compare_embeddings.py" "$RESULTS/o_gpu/$grid" "$RESULTS/o_mix/$grid" \
    | tee -a "$RESULTS/agreement.txt"
  # The float16 model (--precision fp16) against the same CPU run.
  "$B" infer -m "$model" --device "$gpu" --precision fp16 -b 256 --out "$RESULTS/o_gpu16_small" \
    "$tiles/small/$grid" 2>&1 | tail -n 1
  python3 "$root/tests/reference/compare_embeddings.py" "$RESULTS/o_cpu_small/$grid" \
    "$RESULTS/o_gpu16_small/$grid" --min-within-1-lsb 0.995 | tee -a "$RESULTS/agreement.txt"
  python3 - "$RESULTS" <<'EOF'
import json, sys
for s in ('s_gpu', 's_mix'):
    run = json.load(open(f'{sys.argv[1]}/{s}.json'))
    for t in run['tiles']:
        print(f"{s} {t['grid']}: {t['seconds']:.1f} s, {t['ms_per_pixel']:.5f} ms/pixel, "
              f"gpu busy {t['gpu_busy_percent']:.1f} %, gpu batch {t['gpu_batch']}, "
              f"engines built {t['engines_built']}")
    print(f"{s} run: {run['seconds']:.1f} s, {run['ms_per_pixel']:.5f} ms/pixel")
EOF
}

stage_cpu() {
  ensure_model
  "$B" bench -m "$model" --layout single:16,16x1 -b 256 --batches 1 -r 1 --warmup 1 -o json \
    >"$RESULTS/bench_cpu_thread.json"
  "$B" bench -m "$model" --layout single:16,16x1 --spawn process -b 256 --batches 1 -r 1 --warmup 1 \
    -o json >"$RESULTS/bench_cpu_process.json"
  "$B" report --from "$RESULTS/bench_cpu_thread.json" "$RESULTS/bench_cpu_process.json" \
    -o "$RESULTS/bench_cpu.md" >/dev/null
  grep -A12 '^## All rows' "$RESULTS/bench_cpu.md" | grep '^|' | cut -d'|' -f3-17
}

# Which models and batches capture as CUDA graphs (ORT 1.29 failed to capture the full model at
# batch >= 1024): three model sizes x four batches, each in its own process, at ORT's full and
# basic graph optimisation (fused kernels or not); then the first failure again with
# CUDA_LAUNCH_BLOCKING=1 and ORT's verbose log, whose capture lines go to graph_verbose.txt.
stage_graph() {
  ensure_model
  local tiny="$RESULTS/tiny.onnx" mid="$RESULTS/mid.onnx" m b level failed=()
  [ -f "$tiny" ] || "$B" make-model -o "$tiny" --d-model 32 --layers 1 --heads 2 --ffn 64 >/dev/null
  [ -f "$mid" ] || "$B" make-model -o "$mid" --d-model 128 --layers 2 --heads 4 --ffn 512 >/dev/null
  for m in "$tiny" "$mid" "$model"; do
    for level in 99 1; do
      for b in 16 256 1024 4096; do
        local csv="$RESULTS/graph.csv" err="$RESULTS/graph.err"
        if "$B" bench -m "$m" --device cuda:0,cuda:0+graph --opt-level "$level" -b "$b" \
          --batches 5 -r 2 --warmup 2 -o csv >"$csv" 2>"$err"; then
          echo "$(basename "$m") opt $level b $b: ok; ms/px cuda:0, +graph:" \
            "$(python3 -c 'import csv,sys; print(*[r["ms_per_pixel"] for r in csv.DictReader(open(sys.argv[1]))])' "$csv")"
        else
          echo "$(basename "$m") opt $level b $b: $(tail -n 1 "$err")"
          [ "${#failed[@]}" -gt 0 ] || failed=("$m" "$level" "$b")
        fi
      done
    done
  done
  [ "${#failed[@]}" -gt 0 ] || return 0
  CUDA_LAUNCH_BLOCKING=1 TESSERA_ORT_LOG=verbose "$B" bench -m "${failed[0]}" --device cuda:0+graph \
    --opt-level "${failed[1]}" -b "${failed[2]}" --batches 1 -r 1 --warmup 2 -o csv \
    >"$RESULTS/graph_verbose.log" 2>&1
  grep -n -i -E 'graph|captur|error|fail' "$RESULTS/graph_verbose.log" | tail -n 60 \
    | tee "$RESULTS/graph_verbose.txt"
  return 1  # some case did not capture
}

status=0
for s in "${stages[@]}"; do
  echo "== $s"
  start=$(date +%s)
  "stage_$s" || status=1
  echo "== $s: $(($(date +%s) - start)) s"
done
exit $status
