#!/usr/bin/env bash
# Installs the Zarr reader the zone-store tests compare against (zarrita, its codecs and its
# file-system store; pinned) into DIR/node_modules. Exits 0 without installing when npm or the
# registry is unavailable: the tests that need it then skip with a message.
set -u
dir=${1:?usage: install_zarrita.sh DIR}
mkdir -p "$dir"
if [[ -f "$dir/node_modules/zarrita/package.json" && -f "$dir/node_modules/@zarrita/storage/package.json" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "install_zarrita: npm or node not found; the zarrita tests will skip"
  exit 0
fi
cd "$dir" || exit 0
[[ -f package.json ]] || echo '{"name": "tessera-zarr-readers", "private": true}' > package.json
if ! timeout 300 npm install --no-audit --no-fund --loglevel=error \
     zarrita@0.7.5 numcodecs@0.3.2 @zarrita/storage@0.2.0; then
  echo "install_zarrita: npm install failed (registry unavailable?); the zarrita tests will skip"
fi
exit 0
