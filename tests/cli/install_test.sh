#!/usr/bin/env bash
# cmake --install gives a tree that runs on its own: installed into one prefix, then moved to
# another, bin/tessera runs --version, make-model, synth and infer there without
# LD_LIBRARY_PATH; ldd resolves every library outside the source and build directories (ONNX
# Runtime from the tree's own lib/); tessera import finds the installed read_checkpoint.py, and
# the installed torch_peer.py its tessera_torch.py.
#
#   install_test.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -uo pipefail
build=$(cd "$1" && pwd -P)
source=$(cd "$2" && pwd -P)
work=$3
fail() {
  echo "install_test: $*" >&2
  exit 1
}

rm -rf "$work"
mkdir -p "$work" || fail "cannot create $work"
work=$(cd "$work" && pwd -P)
cmake --install "$build" --prefix "$work/first" >"$work/install.log" 2>&1 ||
  fail "cmake --install failed: $(tail -n 3 "$work/install.log")"
# Moved out of the build directory (where WORK_DIR is), so that no path into it could work.
elsewhere=$(mktemp -d "${TMPDIR:-/tmp}/tessera_install.XXXXXX") || fail "no temporary directory"
trap 'rm -rf "$elsewhere"' EXIT
mv "$work/first" "$elsewhere/moved" || fail "cannot move the installed tree"
prefix=$elsewhere/moved
tessera=$prefix/bin/tessera
case "$prefix" in "$build"/* | "$source"/*) fail "$prefix is inside the build or source tree" ;; esac
[ -x "$tessera" ] || fail "no $tessera"
for lib in libonnxruntime.so libonnxruntime.so.1 libonnxruntime_providers_shared.so; do
  [ -e "$prefix/lib/$lib" ] || fail "no $prefix/lib/$lib"
done
[ -f "$prefix/share/tessera/read_checkpoint.py" ] || fail "no read_checkpoint.py"
for tool in torch_peer.py tessera_torch.py; do
  [ -f "$prefix/share/tessera/$tool" ] || fail "no $tool"
done

# A plain environment: no LD_LIBRARY_PATH, a home of its own (the model cache). The sanitizer
# builds' settings (scripts/test.sh) pass through: they say how to run, not where libraries are.
keep=()
for name in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS HWLOC_PLUGINS_BLACKLIST; do
  [ -n "${!name:-}" ] && keep+=("$name=${!name}")
done
plain() { env -i PATH=/usr/bin:/bin HOME="$work/home" "${keep[@]}" "$@"; }
run() { plain "$tessera" "$@"; }

ldd "$tessera" >"$work/ldd.txt" 2>&1 || fail "ldd failed: $(cat "$work/ldd.txt")"
if grep -q "not found" "$work/ldd.txt"; then fail "unresolved libraries: $(grep 'not found' "$work/ldd.txt")"; fi
for dir in "$source" "$build" "$work/first"; do
  if grep -qF "$dir/" "$work/ldd.txt"; then fail "ldd names $dir: $(grep -F "$dir/" "$work/ldd.txt")"; fi
done
ort=$(awk '$1 == "libonnxruntime.so.1" { print $3 }' "$work/ldd.txt")
[ -n "$ort" ] && [ "$(readlink -f "$ort")" = "$(readlink -f "$prefix/lib/libonnxruntime.so.1")" ] ||
  fail "ONNX Runtime is not the installed one: $(grep onnxruntime "$work/ldd.txt")"

version=$(run --version) || fail "--version failed"
[[ "$version" == "tessera "* ]] || fail "--version printed '$version'"
run make-model -o "$work/m.onnx" --d-model 32 --layers 1 --heads 2 --ffn 64 >/dev/null ||
  fail "make-model failed"
run synth -o "$work/tiles/grid_0.05_51.55" --size 6x5 --s2-steps 12 --s1-steps 4/4 >/dev/null ||
  fail "synth failed"
run infer "$work/tiles/grid_0.05_51.55" -m "$work/m.onnx" -o "$work/out" --layout single:1 \
  >"$work/infer.txt" 2>&1 || fail "infer failed: $(cat "$work/infer.txt")"
[ -s "$work/out/grid_0.05_51.55.npy" ] || fail "infer wrote no embeddings"
[ -s "$work/out/grid_0.05_51.55_scales.npy" ] || fail "infer wrote no scales"

# tessera import runs the reader installed next to the binary: a stand-in Python says which.
printf '#!/bin/sh\necho "reader: $1" >&2\nexit 3\n' >"$work/python"
chmod +x "$work/python"
: >"$work/checkpoint.pt"
err=$(run import "$work/checkpoint.pt" -o "$work/imported.onnx" --python "$work/python" 2>&1)
[ "$err" = "tessera: reader: $prefix/share/tessera/read_checkpoint.py" ] ||
  fail "import did not run the installed reader: $err"
# The installed PyTorch peer imports the model module installed beside it (torch fp32 against
# ORT through the installed binary); not run when the system Python cannot import torch.
if /usr/bin/python3 -c "import numpy, onnx, torch" 2>/dev/null; then
  plain /usr/bin/python3 "$prefix/share/tessera/torch_peer.py" check --model "$work/m.onnx" \
    --tessera "$tessera" --pixels 2 >"$work/peer.txt" 2>&1 ||
    fail "the installed torch_peer.py failed: $(tail -n 1 "$work/peer.txt")"
  grep -q ": ok$" "$work/peer.txt" || fail "torch_peer.py check said: $(cat "$work/peer.txt")"
fi
echo "install_test: ok ($prefix)"
