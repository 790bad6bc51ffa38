#!/usr/bin/env bash
# The main job on the built-in default: installs what tessera needs and builds the tessera binary
# alone (scripts/build.sh; no test packages, no test binaries), makes the built-in
# Tessera model once (~/.cache/tessera), writes a small synthetic dpixel tile and turns it
# into int8 embeddings + scales and a GeoTIFF with `tessera infer`, then prints where they are.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/build.sh
work=out/demo
build/tessera synth -o "$work/tiles/grid_0.05_51.55" --size 32x32 --s2-steps 60 --s1-steps 20/20 --force
build/tessera infer "$work/tiles/grid_0.05_51.55" -o "$work/embeddings" --force --summary "$work/summary.json" \
  --format npy,geotiff --year 2024
echo "embeddings: $root/$work/embeddings/grid_0.05_51.55.npy (int8, 32 x 32 x 128)"
echo "scales:     $root/$work/embeddings/grid_0.05_51.55_scales.npy (float32, 32 x 32)"
echo "geotiff:    $root/$work/embeddings/grid_0.05_51.55.tif (float32, 128 bands, EPSG:32631; gdalinfo it)"
echo "summary:    $root/$work/summary.json"
