# tools/torch_peer.py, the PyTorch peer of `tessera bench`, from the outside: the torch module
# built from a make-model file must match ONNX Runtime, and its bench JSON must have the row
# keys of `tessera bench --format json` and go through `tessera report`. Both tests are skipped
# (exit 77) when the Python running them cannot import torch (the peer exits 3).
#
# The driver scripts are written at configure time from bracket arguments (no CMake escaping);
# their arguments: the tessera binary, a scratch directory, the Python, the peer script.

set(_torch_peer_dir "${TESSERA_TEST_TMP}/torch_peer")
file(MAKE_DIRECTORY "${_torch_peer_dir}")

# Small model (d 64, 2 layers, 4 heads, ffn 128, 12 / 8 steps), then torch fp32 vs ORT on 4 pixels.
file(WRITE "${_torch_peer_dir}/check.sh" [=[
tessera=$1 dir=$2 python=$3 peer=$4
"$tessera" make-model --d-model 64 --layers 2 --heads 4 --ffn 128 --s2-steps 12 --s1-steps 8 \
  --force -o "$dir/check.onnx" >/dev/null || exit 1
"$python" "$peer" check --model "$dir/check.onnx" --tessera "$tessera" --pixels 4 \
  --workdir "$dir/check"
rc=$?
[ "$rc" -eq 3 ] && exit 77
exit "$rc"
]=])

# Four torch rows on the small model (fp32 and bf16 autocast, two batch sizes each); the same keys
# as a tessera bench row; tessera report reads both files and names the torch engine.
file(WRITE "${_torch_peer_dir}/report.sh" [=[
tessera=$1 dir=$2 python=$3 peer=$4
"$tessera" make-model --d-model 64 --layers 2 --heads 4 --ffn 128 --s2-steps 12 --s1-steps 8 \
  --force -o "$dir/report.onnx" >/dev/null || exit 1
rm -f "$dir/torch.json" "$dir/r.md"
"$python" "$peer" bench --model "$dir/report.onnx" -t 1 -b 4,8 --batches 2 -r 1 \
  --precision fp32,bf16 -o "$dir/torch.json" >/dev/null
rc=$?
[ "$rc" -eq 3 ] && exit 77
[ "$rc" -eq 0 ] || exit "$rc"
"$tessera" bench -m "$dir/report.onnx" -t 1 -b 4 --batches 1 -r 1 --format json >"$dir/ort.json" || exit 1
"$python" - "$dir/ort.json" "$dir/torch.json" <<'EOF' || exit 1
import json, sys
ort, peer = (json.load(open(p)) for p in sys.argv[1:])
problems = []
if set(ort) - set(peer):
    problems.append(f"top-level keys missing: {sorted(set(ort) - set(peer))}")
if len(peer["rows"]) != 4:
    problems.append(f"{len(peer['rows'])} rows, expected 4")
for i, row in enumerate(peer["rows"]):
    if set(row) != set(ort["rows"][0]):
        problems.append(f"row {i}: keys differ from tessera bench: "
                        f"{sorted(set(row) ^ set(ort['rows'][0]))}")
    want = {"engine": "torch", "device": "cpu", "precision": "fp32" if i < 2 else "bf16",
            "layout": "single:1", "workers": 1, "threads": 1, "batch": 4 * (i % 2 + 1),
            "batches": 2, "reps": 1, "pixels": 8 * (i % 2 + 1), "status": "ok"}
    for key, value in want.items():
        if row.get(key) != value:
            problems.append(f"row {i}: {key} = {row.get(key)!r}, expected {value!r}")
    if len(row.get("samples_ms", [])) != 2 or not row.get("ms_per_pixel", 0) > 0:
        problems.append(f"row {i}: expected 2 samples and ms_per_pixel > 0")
    elif abs(row["ms_per_pixel"] - 1e3 * row["total_s"] / row["pixels"]) > 1e-9:
        problems.append(f"row {i}: ms_per_pixel is not 1e3 * total_s / pixels")
if "torch_version" not in peer["machine"] or not peer["machine"].get("cpu_model"):
    problems.append("machine lacks cpu_model or torch_version")
for p in problems:
    print("torch_peer_report:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
"$tessera" report --from "$dir/ort.json" "$dir/torch.json" -o "$dir/r.md" >/dev/null || exit 1
grep -q "| torch " "$dir/r.md" || { echo "r.md does not name the torch rows" >&2; exit 1; }
]=])

# The agreement table (torch_peer.py agree): every row present, tessera's fp32 runs equal to ORT.
file(WRITE "${_torch_peer_dir}/agree.sh" [=[
tessera=$1 dir=$2 python=$3 peer=$4
"$tessera" make-model --d-model 64 --layers 2 --heads 4 --ffn 128 --s2-steps 12 --s1-steps 8 \
  --force -o "$dir/agree.onnx" >/dev/null || exit 1
"$python" "$peer" agree --model "$dir/agree.onnx" --tessera "$tessera" --pixels 16 >"$dir/agree.md"
rc=$?
[ "$rc" -eq 3 ] && exit 77
[ "$rc" -eq 0 ] || exit "$rc"
for row in "tessera native fp32 | tessera ort fp32 | 100.00 | 100.00 | 0 |" \
           "tessera native bf16 | tessera ort fp32 |" "tessera native int8 | tessera ort fp32 |" \
           "torch fp32 | tessera ort fp32 | 100.00 | 100.00 | 0 |" "torch bf16 autocast | torch fp32 |"; do
  grep -qF "| $row" "$dir/agree.md" || { echo "agree.md lacks: $row" >&2; cat "$dir/agree.md" >&2; exit 1; }
done
]=])

# Every version tessera_torch.py builds (v1.0 is torch_peer_check's): torch fp32 against ORT on
# a small make-model file of each, and a bf16 autocast bench row on v2 with QK-norm (LayerNorms
# after a bf16 Linear, as in v1.1's fusion; QK-norm attention).
file(WRITE "${_torch_peer_dir}/family.sh" [=[
tessera=$1 dir=$2 python=$3 peer=$4
for case in "v1.0-early --d-model 32 --layers 2 --heads 8 --ffn 64 --latent 8" \
            "v1.1 --d-model 32 --layers 2 --heads 4 --ffn 64 --latent 6 --stats mpc" \
            "v2 --latent 8 --layers 2 --heads 4 --ffn 64" \
            "v2 --latent 8 --layers 2 --heads 4 --ffn 64 --qk-norm"; do
  "$tessera" make-model --arch $case --force -o "$dir/family.onnx" >/dev/null || exit 1
  "$python" "$peer" check --model "$dir/family.onnx" --tessera "$tessera" --pixels 3 \
    >"$dir/family.txt"
  rc=$?
  [ "$rc" -eq 3 ] && exit 77
  [ "$rc" -eq 0 ] || { echo "check failed on --arch $case" >&2; cat "$dir/family.txt" >&2; exit 1; }
  case "$case" in *--qk-norm)
    "$python" "$peer" bench --model "$dir/family.onnx" -b 2 --batches 1 -r 1 --precision bf16 \
      >"$dir/family.md" || { echo "bf16 bench failed on --arch $case" >&2; exit 1; }
    grep -q "^| torch | cpu | bf16 | .* | ok |$" "$dir/family.md" ||
      { echo "no ok bf16 row on --arch $case" >&2; cat "$dir/family.md" >&2; exit 1; } ;;
  esac
done
]=])

# torch_peer.py mix plans a tile's batches as tessera infer does: on a varied tile with
# no-data pixels (kept at 8 steps by v1.1, left out by v2), at a batch that cuts groups, its batch
# and pixel counts equal infer's summary; and a v1.0 model (fixed steps) is refused in one line.
file(WRITE "${_torch_peer_dir}/mix.sh" [=[
tessera=$1 dir=$2 python=$3 peer=$4
"$tessera" synth -o "$dir/mix_tile" --size 12x12 --observations varied --nodata 0.1 --seed 5 \
  --force >/dev/null || exit 1
for arch in "v1.1 --d-model 32 --layers 2 --heads 4 --ffn 64 --latent 6 --stats mpc" \
            "v2 --latent 8 --layers 2 --heads 4 --ffn 64"; do
  "$tessera" make-model --arch $arch --force -o "$dir/mix.onnx" >/dev/null || exit 1
  rm -rf "$dir/mix_out" "$dir/mix_summary.json" "$dir/mix.json"
  "$tessera" infer "$dir/mix_tile" -m "$dir/mix.onnx" -o "$dir/mix_out" -b 16 --layout single:1 \
    --summary "$dir/mix_summary.json" 2>/dev/null || exit 1
  "$python" "$peer" mix --model "$dir/mix.onnx" --tile "$dir/mix_tile" -b 16 --precision fp32 \
    -o "$dir/mix.json" >/dev/null
  rc=$?
  [ "$rc" -eq 3 ] && exit 77
  [ "$rc" -eq 0 ] || exit "$rc"
  "$python" - "$dir/mix_summary.json" "$dir/mix.json" "$arch" <<'EOF' || exit 1
import json, sys
tile = json.load(open(sys.argv[1]))["tiles"][0]
row = json.load(open(sys.argv[2]))["rows"][0]
infer = (tile["batches"], tile["pixels_valid"])
# v1.1 runs every pixel; v2 leaves the no-data ones out, so it must run fewer than 144.
expected_all = sys.argv[3].startswith("v1.1")
if (row["batches"], row["pixels"]) != infer or (infer[1] == 144) != expected_all:
    sys.exit(f"torch_peer_mix --arch {sys.argv[3]}: mix planned {row['batches']} batches of "
             f"{row['pixels']} pixels, infer {infer[0]} of {infer[1]}")
EOF
done
"$tessera" make-model --d-model 32 --layers 1 --heads 4 --ffn 64 --force -o "$dir/mix10.onnx" \
  >/dev/null || exit 1
said=$("$python" "$peer" mix --model "$dir/mix10.onnx" --tile "$dir/mix_tile" 2>&1 >/dev/null)
rc=$?
want="torch_peer: $dir/mix10.onnx: a v1.0 model has fixed step counts; mix runs the bucketed versions (v1.1, v2): use bench"
[ "$rc" -eq 2 ] && [ "$said" = "$want" ] || { echo "v1.0 mix: rc $rc, said: $said" >&2; exit 1; }
]=])

add_test(NAME torch_peer_check
         COMMAND sh ${_torch_peer_dir}/check.sh ${TESSERA_BIN} ${_torch_peer_dir}
                 ${SYSTEM_PYTHON3} ${CMAKE_SOURCE_DIR}/tools/torch_peer.py)
add_test(NAME torch_peer_report
         COMMAND sh ${_torch_peer_dir}/report.sh ${TESSERA_BIN} ${_torch_peer_dir}
                 ${SYSTEM_PYTHON3} ${CMAKE_SOURCE_DIR}/tools/torch_peer.py)
add_test(NAME torch_peer_agree
         COMMAND sh ${_torch_peer_dir}/agree.sh ${TESSERA_BIN} ${_torch_peer_dir}
                 ${SYSTEM_PYTHON3} ${CMAKE_SOURCE_DIR}/tools/torch_peer.py)
add_test(NAME torch_peer_family
         COMMAND sh ${_torch_peer_dir}/family.sh ${TESSERA_BIN} ${_torch_peer_dir}
                 ${SYSTEM_PYTHON3} ${CMAKE_SOURCE_DIR}/tools/torch_peer.py)
add_test(NAME torch_peer_mix
         COMMAND sh ${_torch_peer_dir}/mix.sh ${TESSERA_BIN} ${_torch_peer_dir}
                 ${SYSTEM_PYTHON3} ${CMAKE_SOURCE_DIR}/tools/torch_peer.py)
set_tests_properties(torch_peer_check torch_peer_report torch_peer_agree torch_peer_family
                     torch_peer_mix PROPERTIES LABELS bench TIMEOUT 120 SKIP_RETURN_CODE 77)
set_tests_properties(torch_peer_family PROPERTIES TIMEOUT 300)  # five torch start-ups
