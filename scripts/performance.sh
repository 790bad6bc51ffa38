#!/usr/bin/env bash
# Reproduces the measurements of docs/PERFORMANCE.md on this machine, in one invocation.
# Writes JSON, Markdown and a report with charts to out/perf/ (or $1). Needs a built tree
# (scripts/build.sh; TESSERA=path/to/tessera picks another binary). About 16 minutes on a
# 2-core machine; run it on an idle machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/out/perf}
tessera=${TESSERA:-$root/build/tessera}
mkdir -p "$out"
cd "$out"

step() { echo "== $*" >&2; }
# bench and infer use the built-in Tessera v1.0 model (made once) when -m is not given.

step "threads (study: CPU thread scaling)"
"$tessera" bench -t 1,2 -b 256 --batches 2 -r 2 --format json > threads.json
step "batch sizes (study: does batch size matter?)"
"$tessera" bench -t 2 -b 32,64,128,256,512,1024 --batches 2 -r 1 --format json > batch.json
step "layouts, threads vs processes (study: NUMA-pinned parallel jobs)"
"$tessera" bench --layout single:2,2x1 -b 64 --batches 4 -r 2 --format json > layouts_thread.json
"$tessera" bench --layout single:2,2x1 -b 64 --batches 4 -r 2 --spawn process --format json > layouts_process.json
"$tessera" bench --layout single:2,2x1 -b 64 --batches 4 -r 2 --no-pin --format json > layouts_unpinned.json

step "infer vs bench at the same layout and batch"
"$tessera" synth -o tiles/grid_0.00_0.00 --size 64x64 --s2-steps 90 --s1-steps 30/30 --seed 1 --force
"$tessera" bench --layout 2x1 -b 64 --batches 8 -r 2 --format json > infer_bench.json
"$tessera" infer tiles/grid_0.00_0.00 -o emb --layout 2x1 -b 64 --force --summary infer.json

step "peak memory as the tile grows (small model: the pipeline, not the model, dominates)"
"$tessera" make-model -o small.onnx --d-model 64 --layers 1 --heads 2 --ffn 128 --force
for size in 128 256 512; do
  "$tessera" synth -o "tiles/grid_${size}.00_0.00" --size "${size}x${size}" --s2-steps 90 --s1-steps 30/30 --force
  /usr/bin/time -f "%M" -o "rss_${size}.txt" "$tessera" infer "tiles/grid_${size}.00_0.00" -o emb_small \
    -m small.onnx --layout 2x1 -b 256 --force --summary "infer_small_${size}.json"
done

step "many tiles: one run (engines kept) vs one run per tile; ORT's memory pattern on vs off"
for i in 1 2 3; do
  "$tessera" synth -o "tiles/many/grid_0.${i}5_2.05" --size 24x24 --seed "$i" --force
done
many_start=$(date +%s.%N)
for t in tiles/many/*; do "$tessera" infer "$t" -o emb_many_a --force >/dev/null; done
many_mid=$(date +%s.%N)
"$tessera" infer tiles/many/* -o emb_many_b --force --summary infer_many.json >/dev/null
many_end=$(date +%s.%N)
python3 -c "import sys; a, m, e = map(float, sys.argv[1:]); print(f'per tile {m - a:.1f} s, one run {e - m:.1f} s: {(m - a) / (e - m):.2f}x')" \
  "$many_start" "$many_mid" "$many_end" | tee many_tiles.txt
for pattern in 1 0; do
  TESSERA_CPU_MEM_PATTERN=$pattern /usr/bin/time -f "%M" -o "rss_pattern_$pattern.txt" \
    "$tessera" bench --layout 1x1 -b 256 --batches 1 -r 5 --warmup 0 --format json > "mem_pattern_$pattern.json"
done

step "report"
"$tessera" report --from threads.json batch.json layouts_thread.json layouts_process.json layouts_unpinned.json \
  -o report.md --force
echo "results in $out" >&2
