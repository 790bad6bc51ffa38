#!/usr/bin/env bash
# Runs the GPU checks of docs/GPU.md on a machine with an NVIDIA GPU, from a build of tessera.
#
#   scripts/gpu_check.sh [STAGE...]     stages: env bench tests infer cpu mixed family
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

# Runs a command while nvidia-smi samples the GPU every 200 ms, then appends one line for NAME
# to $clocks (the stage's gpu_clocks_STAGE.txt, printed after it): SM clock, power and
# temperature over the samples where the GPU was busy (utilization >= 50 %). So a bench row and an infer tile at different speeds show whether
# the clock differed (power or thermal limits on a long run) or the work did.
monitored() {  # NAME COMMAND...
  local name=$1 samples="$RESULTS/gpu_samples_$1.csv" pid status
  shift
  if ! command -v nvidia-smi >/dev/null; then
    "$@"
    return
  fi
  : >"$samples"
  nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu,utilization.gpu \
    --format=csv,noheader,nounits -lms 200 >"$samples" 2>/dev/null &
  pid=$!
  "$@"
  status=$?
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  awk -F', *' -v name="$name" '
    $4 + 0 >= 50 { n++; clock += $1; power += $2; if (min == "" || $1 + 0 < min) min = $1 + 0
                   if ($3 + 0 > temp) temp = $3 + 0 }
    END { if (n) printf "%s: SM clock mean %.0f min %d MHz, power mean %.0f W, max %d C (%d busy samples)\n",
                        name, clock / n, min, power / n, temp, n
          else printf "%s: no busy samples\n", name }' "$samples" >>"$clocks"
  return $status
}

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
      monitored "bench_${path//[:+]/_}_$precision" \
        "$B" bench -m "$model" --device "$path" --precision "$precision" -b 1024,4096,16384 \
        --batches 3 -r 2 --warmup 2 --format json >"$f"
      [ -s "$f" ] && files+=("$f")  # failed cases are error rows of a complete table
    done
  done
  "$B" bench -m "$model" --device cuda:0+io -b 1048576 --batches 1 -r 1 --warmup 0 --format md \
    >"$RESULTS/bench_oom.md"
  "$B" report --from "${files[@]}" -o "$RESULTS/bench_gpu.md" --force >/dev/null
  grep -A40 '^## All rows' "$RESULTS/bench_gpu.md" | grep '^|' | cut -d'|' -f3-17
}

# One infer run as NAME over the given tiles: outputs in o_NAME, summary s_NAME.json. Prints only
# what is not a per-tile result line (errors, notes); the summaries are printed at the end.
infer_as() {  # NAME DEVICE PRECISION TILE...
  local name=$1 device=$2 precision=$3
  shift 3
  monitored "infer_$name" \
    "$B" infer -m "$model" --device "$device" --precision "$precision" -b 256 --gpu-batch 16384 \
    --out "$RESULTS/o_$name" --summary "$RESULTS/s_$name.json" --force "$@" 2>&1 |
    { grep -v -E '^(\[[0-9]+/[0-9]+] )?grid' || true; }  # the status is infer's (pipefail)
}

# Two tiles per run: the second shows a tile without engine builds (they are kept between tiles).
stage_infer() {
  ensure_model
  local tiles="$RESULTS/tiles" gpu=${GPU_PATH:-cuda:0+io} p=${PRECISION:-tf32}
  local grid=grid_0.05_0.05
  local two=("$tiles/$grid" "$tiles/grid_0.15_0.05")
  rm -rf "$tiles" "$RESULTS"/o_*
  "$B" synth -o "${two[0]}" --size "$SIZE" --seed 3 >/dev/null
  "$B" synth -o "${two[1]}" --size "$SIZE" --seed 4 >/dev/null
  infer_as gpu "$gpu" "$p" "${two[@]}"
  infer_as mix "cpu,$gpu" "$p" "${two[@]}"
  infer_as fast cuda:0+graph fp16 "${two[@]}"  # the fast path: float16 with a CUDA graph
  # Agreement with the CPU on a small tile (the CPU is ~100x slower), at the run's precision and
  # at fp16; then of the large runs with each other.
  "$B" synth -o "$tiles/small/$grid" --size 64x64 --seed 5 >/dev/null
  "$B" infer -m "$model" --device cpu -b 256 -o "$RESULTS/o_cpu_small" "$tiles/small/$grid" 2>&1 | tail -n 1
  infer_as gpu_small "$gpu" "$p" "$tiles/small/$grid"
  infer_as gpu16_small "$gpu" fp16 "$tiles/small/$grid"
  agree() {  # RUN RUN [compare_embeddings.py options]
    python3 "$root/tests/reference/compare_embeddings.py" "$RESULTS/o_$1/$grid" "$RESULTS/o_$2/$grid" \
      "${@:3}" | tee -a "$RESULTS/agreement.txt"
  }
  : >"$RESULTS/agreement.txt"
  agree cpu_small gpu_small --min-within-1-lsb 0.995
  agree cpu_small gpu16_small --min-within-1-lsb 0.995
  agree gpu mix
  agree gpu fast --min-within-1-lsb 0.995
  python3 - "$RESULTS" <<'EOF'
import json, sys
for s in ('s_gpu', 's_mix', 's_fast'):
    run = json.load(open(f'{sys.argv[1]}/{s}.json'))
    for t in run['tiles']:
        print(f"{s} {t['grid']}: {t['seconds']:.1f} s, {t['ms_per_pixel']:.5f} ms/pixel, "
              f"gpu busy {t['gpu_busy_percent']:.1f} %, gpu batch {t['gpu_batch']}, "
              f"engines built {t['engines_built']}, "
              f"CPU workers {t['pixels_computed'] - t['stream_pixels']} pixels, "
              f"taken over {t['batches_taken_over']} batches")
    print(f"{s} run: {run['seconds']:.1f} s, {run['ms_per_pixel']:.5f} ms/pixel")
EOF
}

# One session on every core against one single-threaded job per core, as threads and as processes.
stage_cpu() {
  ensure_model
  local cores layouts
  cores=$(lscpu -p=CORE,SOCKET | grep -v '^#' | sort -u | wc -l)
  layouts="single:$cores,${cores}x1"
  "$B" bench -m "$model" --layout "$layouts" -b 256 --batches 1 -r 1 --warmup 1 --format json \
    >"$RESULTS/bench_cpu_thread.json"
  "$B" bench -m "$model" --layout "$layouts" --spawn process -b 256 --batches 1 -r 1 --warmup 1 \
    --format json >"$RESULTS/bench_cpu_process.json"
  "$B" report --from "$RESULTS/bench_cpu_thread.json" "$RESULTS/bench_cpu_process.json" \
    -o "$RESULTS/bench_cpu.md" --force >/dev/null
  grep -A12 '^## All rows' "$RESULTS/bench_cpu.md" | grep '^|' | cut -d'|' -f3-17
}

# Does a CPU pool beside the GPU make infer faster? Runs of two tiles (MIXED_SIZE, default 768x768), GPU alone and
# with the CPU workers, alternated REPS times (default 4); compares the second tile of each run
# (its engines are kept, so it measures steady state) by mean and spread.
stage_mixed() {
  ensure_model
  local tiles="$RESULTS/mixed_tiles" gpu=${GPU_PATH:-cuda:0+io} p=${PRECISION:-tf32} i
  local two=("$tiles/grid_0.05_0.05" "$tiles/grid_0.15_0.05")
  rm -rf "$tiles" "$RESULTS"/s_m_*
  "$B" synth -o "${two[0]}" --size "${MIXED_SIZE:-768x768}" --seed 3 >/dev/null
  "$B" synth -o "${two[1]}" --size "${MIXED_SIZE:-768x768}" --seed 4 >/dev/null
  for i in $(seq "${REPS:-4}"); do
    infer_as "m_alone_$i" "$gpu" "$p" "${two[@]}" || return 1
    infer_as "m_mixed_$i" "cpu,$gpu" "$p" "${two[@]}" || return 1
    rm -rf "$RESULTS/o_m_alone_$i" "$RESULTS/o_m_mixed_$i"
  done
  python3 - "$RESULTS" <<'EOF2'
import glob, json, statistics, sys
results = sys.argv[1]
def tile2(kind):
    return [json.load(open(f))['tiles'][1] for f in sorted(glob.glob(f'{results}/s_m_{kind}_*.json'))]
alone, mixed = tile2('alone'), tile2('mixed')
for name, tiles in (('alone', alone), ('mixed', mixed)):
    secs = [t['seconds'] for t in tiles]
    cpu = [t['pixels_computed'] - t['stream_pixels'] for t in tiles]
    print(f"{name}: tile 2 seconds {' '.join(f'{x:.2f}' for x in secs)}; mean {statistics.mean(secs):.3f}"
          f" sd {statistics.stdev(secs) if len(secs) > 1 else 0:.3f}; CPU workers' pixels {cpu}")
a = statistics.mean(t['seconds'] for t in alone)
m = statistics.mean(t['seconds'] for t in mixed)
print(f"mixed is {a / m:.4f}x the GPU alone (above 1: faster)")
EOF2
}

# Every model version on the GPU (random weights of the released shapes): on a 64 x 64 tile with
# varied observation counts, cuda:0 fp32, cuda:0+io and cpu,cuda:0 against the CPU engine (and
# the tf32 default, looser); cuda:0+graph refusing a model with length buckets; each version's
# throughput on a 256 x 256 varied tile (cuda:0, tf32) from infer's summary.
stage_family() {
  local tiles="$RESULTS/family_tiles" m failed=0 code
  "$B" synth -o "$tiles/grid_small" --size 64x64 --observations varied --seed 3 --force >/dev/null
  "$B" synth -o "$tiles/grid_big" --size 256x256 --observations varied --seed 4 --force >/dev/null
  "$B" make-model --force -o "$RESULTS/v1.0.onnx" >/dev/null
  "$B" make-model --force --arch v1.0-early -o "$RESULTS/v1.0-early.onnx" >/dev/null
  "$B" make-model --force --arch v1.1 --stats mpc -o "$RESULTS/v1.1.onnx" >/dev/null
  "$B" make-model --force --arch v2 -o "$RESULTS/v2.onnx" >/dev/null
  check() {  # LABEL COMMAND...
    if "${@:2}" >>"$RESULTS/family.log" 2>&1; then echo "ok    $1"; else echo "FAIL  $1"; failed=1; fi
  }
  for m in v1.0 v1.0-early v1.1 v2; do
    run() {  # NAME DEVICE [FLAGS...]: the small tile into o_family_NAME_m/
      "$B" infer "$tiles/grid_small" -m "$RESULTS/$m.onnx" -o "$RESULTS/o_family_$1_$m" \
        --device "$2" "${@:3}" --force
    }
    check "$m cpu" run cpu cpu -b 256
    check "$m cuda:0 fp32" run fp32 cuda:0 --precision fp32
    check "$m cuda:0 tf32" run tf32 cuda:0
    check "$m cuda:0+io fp32" run io cuda:0+io --precision fp32
    check "$m cpu,cuda:0 fp32" run mixed cpu,cuda:0 --precision fp32 -b 64 --gpu-batch 256
    agree() {  # RUN [compare_embeddings.py options]
      python3 "$root/tests/reference/compare_embeddings.py" "$RESULTS/o_family_cpu_$m/grid_small" \
        "$RESULTS/o_family_$1_$m/grid_small" "${@:2}"
    }
    for run_name in fp32 io mixed; do
      check "$m $run_name agrees with the CPU: $(agree $run_name | tail -n 1)" \
        agree $run_name --min-within-1-lsb 0.999 --min-cosine 0.9999
    done
    check "$m tf32 agrees with the CPU: $(agree tf32 | tail -n 1)" \
      agree tf32 --min-within-1-lsb 0.99 --min-cosine 0.999
    check "$m throughput" "$B" infer "$tiles/grid_big" -m "$RESULTS/$m.onnx" --device cuda:0 \
      -o "$RESULTS/o_family_big_$m" --summary "$RESULTS/s_family_$m.json" --force
    python3 -c "import json; t = json.load(open('$RESULTS/s_family_$m.json'))['tiles'][0]; \
print('$m cuda:0 tf32, 256x256 varied tile: %.5f ms/pixel over %d pixels, GPU busy %.0f %%' % \
(t['ms_per_pixel'], t['pixels_computed'], t['gpu_busy_percent']))"
  done
  "$B" infer "$tiles/grid_small" -m "$RESULTS/v1.1.onnx" -o "$RESULTS/o_family_graph" \
    --device cuda:0+graph 2>"$RESULTS/family_graph.err"
  code=$?
  check "cuda:0+graph refuses v1.1 (exit $code): $(cat "$RESULTS/family_graph.err")" \
    test "$code" -eq 2 -a ! -e "$RESULTS/o_family_graph/grid_small.npy" \
    -a "$(grep -c 'symbolic step axes' "$RESULTS/family_graph.err")" -eq 1 \
    -a "$(wc -l <"$RESULTS/family_graph.err")" -eq 1
  return $failed
}

status=0
for s in "${stages[@]}"; do
  echo "== $s"
  start=$(date +%s)
  clocks="$RESULTS/gpu_clocks_$s.txt"
  : >"$clocks"
  "stage_$s" || status=1
  cat "$clocks"
  echo "== $s: $(($(date +%s) - start)) s"
done
exit $status
