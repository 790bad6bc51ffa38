#!/usr/bin/python3
"""`tessera infer` on v1.0-early, v1.1 and v2 models against family_pipeline_oracle.py.

Small models are made with `tessera make-model` (v1.0-early, v1.1 with --stats mpc and with
--stats aws, v2, v2 --qk-norm) and synthetic tiles written with numpy (nested layout) whose
pixels have valid-observation counts 0, 1, 7, 8, 9, 255, 256 and 300 in S2 and in S1 (asc +
desc), pixels with one orbit empty, valid S1 rows with one band 0, a tile whose descending
file has T = 0 and one whose ascending file has, pixels empty in both modalities (with and
without S2 band values) and a pixel with clear frames whose bands are all 0 (coverage() checks
that the tiles hold all of this). For every model and engine, `tessera infer -b 5` (buckets
split into several batches) must write, per tile, `<grid>.npy` int8 [H, W, K] and
`<grid>_scales.npy` float32 [H, W] that agree with the oracle:
  - >= 99.9 % of the codes of the run pixels within one int8 step (the oracle runs float64, so
    the misses measure the engine's float32 rounding only; a pixel is 1/64 to 1/12 of a tile, so
    one pixel built from wrong indices fails the criterion), and no pixel with a code two
    steps away;
  - scales within SCALE_RTOL relative;
  - exact zeros and scale 0 where the spec says so (v1.0 filtered pixels, v2 pixels empty in
    both modalities), and nowhere else;
  - for v2 also `--dim 32` (the first 32 columns quantised on their own).
The criterion is shown to discriminate: the oracle's own outputs with R and P swapped (v1.1 run
with v2's pattern and v2 with v1.1's) must fail it. Before the tile runs, each model's forward
pass on two of the oracle's bucket groups is checked through `tessera run-model` (float32
output, rel <= 1e-4), so that a disagreement can be told apart from a pipeline one.
Bad inputs must fail with a non-zero exit, one line on stderr containing NEEDLES[...] and no
`<grid>.npy`: --dim on v1.0-early and v1.1 models, --dim 48 on a v2 model, a tile without any
valid observation on v1.1 and v2 models.

Usage: family_infer_test.py --tessera BIN --workdir DIR [--engines ort,native] [--keep]
Exit 0 pass, 1 fail, 77 skip (no torch / onnx for this Python).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

try:
    import numpy as np
    import onnx  # noqa: F401
    import torch
except ImportError as error:
    print(f"SKIP: {error.name} is not installed for {sys.executable}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import family_pipeline_oracle as oracle  # noqa: E402

# Expected pieces of the one-line error messages (the wording may still shift).
NEEDLES = {
    "dim_v1": "--dim applies to v2 models",
    "dim_value": "--dim must be 16, 32, 64 or 128",
    "no_valid": "holds no valid observation",
}
WITHIN_ONE = 0.999  # fraction of codes within one int8 step
SCALE_RTOL = 1e-5  # scales: relative (fp32 engines measure ~1e-6 against float64)
FORWARD_RTOL = 1e-4  # run-model against the float64 forward: max|diff| / max|ref|
BATCH = "5"
MODELS = [
    # name, make-model arguments
    ("v1.0-early", ["--arch", "v1.0-early", "--d-model", "32", "--layers", "2", "--heads", "8",
                    "--ffn", "64", "--latent", "8"]),
    ("v1.1-mpc", ["--arch", "v1.1", "--d-model", "32", "--layers", "2", "--heads", "4",
                  "--ffn", "64", "--latent", "6", "--stats", "mpc"]),
    ("v1.1-aws", ["--arch", "v1.1", "--d-model", "32", "--layers", "2", "--heads", "4",
                  "--ffn", "64", "--latent", "8", "--stats", "aws", "--seed", "7"]),
    ("v2", ["--arch", "v2", "--latent", "8", "--layers", "2", "--heads", "4", "--ffn", "64"]),
    ("v2-qk", ["--arch", "v2", "--latent", "8", "--layers", "2", "--heads", "4", "--ffn", "64",
               "--qk-norm"]),
]
COUNTS = [0, 1, 7, 8, 9, 255, 256, 300]
FAILURES = []


def check(ok, message):
    """Print one line per check; remember the failures."""
    print(("ok    " if ok else "FAIL  ") + message, flush=True)
    if not ok:
        FAILURES.append(message)
    return ok


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


# --- synthetic tiles ---------------------------------------------------------------------------


def write_tile(path, h, w, t2, ta, td, plan, rng):
    """Write a nested-layout tile. plan[p] for every flat pixel p: dict n2 (valid S2 frames),
    na / nd (valid asc / desc rows) and optional zero_bands (every S2 band value 0), blank
    (every S2 band value 0 where the mask is 0 too). Cloudy frames carry band values of their
    own (so that using them shows); a tenth of the valid S1 rows have one band 0."""
    bands = rng.integers(1, 10000, size=(t2, h, w, 10)).astype(np.uint16)
    masks = np.zeros((t2, h, w), dtype=np.uint8)
    sar = {"asc": np.zeros((ta, h, w, 2), dtype=np.int16),
           "desc": np.zeros((td, h, w, 2), dtype=np.int16)}
    for p, spec in enumerate(plan):
        i, j = divmod(p, w)
        masks[rng.choice(t2, size=spec["n2"], replace=False), i, j] = 1
        if spec.get("zero_bands") or spec.get("blank"):
            bands[:, i, j, :] = 0
        for orbit, n in (("asc", spec["na"]), ("desc", spec["nd"])):
            t = sar[orbit].shape[0]
            rows = rng.choice(t, size=n, replace=False)
            values = rng.integers(1000, 9000, size=(n, 2)).astype(np.int16)
            one_band = rng.random(n) < 0.1
            values[one_band, rng.integers(0, 2, size=int(one_band.sum()))] = 0
            sar[orbit][rows, i, j, :] = values
    os.makedirs(os.path.join(path, "s2"))
    os.makedirs(os.path.join(path, "s1"))
    np.save(os.path.join(path, "s2", "bands.npy"), bands)
    np.save(os.path.join(path, "s2", "masks.npy"), masks)
    np.save(os.path.join(path, "s2", "doys.npy"),
            np.sort(rng.choice(np.arange(1, 366), size=t2, replace=False)).astype(np.uint16))
    for orbit, name in (("asc", "ascending"), ("desc", "descending")):
        t = sar[orbit].shape[0]
        np.save(os.path.join(path, "s1", f"sar_{name}.npy"), sar[orbit])
        np.save(os.path.join(path, "s1", f"sar_{name}_doy.npy"),
                np.sort(rng.choice(np.arange(1, 366), size=t, replace=False)).astype(np.int16))


def split_s1(n, mode, ta, td, rng):
    """Split n valid S1 rows into (asc, desc): mode 0 asc only, 1 desc only, 2 both (when the
    orbits' lengths allow it)."""
    if mode == 0 and n <= ta:
        return n, 0
    if mode == 1 and n <= td:
        return 0, n
    lo, hi = max(0, n - td), min(n, ta)
    if n >= 2:
        lo, hi = max(lo, 1), min(hi, n - 1)
    a = int(rng.integers(lo, hi + 1))
    return a, n - a


def make_tiles(root, rng):
    """The test tiles: {grid: path}, plus the grid of the tile without valid observations."""
    tiles = {}
    # A: 8 x 8, every (S2 count, S1 count) pair of COUNTS; T2 = 300, Ta = 160, Td = 150.
    h, w, ta, td = 8, 8, 160, 150
    plan = []
    for i in range(h):
        for j in range(w):
            na, nd = split_s1(COUNTS[j], (i + 2 * j) % 3, ta, td, rng)
            plan.append({"n2": COUNTS[i], "na": na, "nd": nd})
    plan[0]["blank"] = True  # (0, 0): outside the ROI, every value 0
    grid = "grid_0.05_51.25"
    write_tile(os.path.join(root, grid), h, w, 300, ta, td, plan, rng)
    tiles[grid] = os.path.join(root, grid)
    # B: 4 x 6, descending T = 0; S1 counts COUNTS (ascending only), S2 counts 0..40 with the
    # R/P-sensitive 5 and 13; T2 = 40, Ta = 300.
    h, w, ta, td = 4, 6, 300, 0
    s2_counts = [0, 1, 3, 5, 13, 40]
    plan = [{"n2": s2_counts[p % 6], "na": COUNTS[(p // 6 + p) % 8], "nd": 0} for p in range(h * w)]
    plan[5] = {"n2": 7, "na": 9, "nd": 0, "zero_bands": True}  # clear frames, bands all 0
    plan[6] = {"n2": 0, "na": 0, "nd": 0}  # empty in both, S2 band values present
    plan[13] = {"n2": 0, "na": 0, "nd": 0, "blank": True}  # empty in both, all values 0
    grid = "grid_-1.25_36.85"
    write_tile(os.path.join(root, grid), h, w, 40, ta, td, plan, rng)
    tiles[grid] = os.path.join(root, grid)
    # C: 3 x 4, ascending T = 0: S1 counts from the descending file only.
    h, w, ta, td = 3, 4, 0, 300
    plan = [{"n2": [2, 9, 17, 40][p % 4], "na": 0, "nd": COUNTS[(3 * p + 1) % 8]}
            for p in range(h * w)]
    grid = "grid_120.35_-33.65"
    write_tile(os.path.join(root, grid), h, w, 40, ta, td, plan, rng)
    tiles[grid] = os.path.join(root, grid)
    # Bad: every mask 0 and every S1 value 0 (S2 band values present).
    bad = "grid_9.95_9.95"
    write_tile(os.path.join(root, bad), 2, 3, 5, 3, 2, [{"n2": 0, "na": 0, "nd": 0}] * 6, rng)
    return tiles, os.path.join(root, bad)


def coverage(tiles):
    """The synthetic tiles hold what the module docstring promises: every count of COUNTS in
    S2 and in S1, pixels with one orbit empty while the other has rows, pixels empty in both
    modalities, a tile with each orbit file at T = 0."""
    s2, s1, one_orbit, both_empty, empty_files = set(), set(), 0, 0, set()
    for path in tiles.values():
        tile = oracle.load_tile(path)
        n2, na, nd = oracle.valid_counts(tile)
        s2 |= set(n2.tolist())
        s1 |= set((na + nd).tolist())
        one_orbit += int(np.sum((na == 0) != (nd == 0)))
        both_empty += int(np.sum((n2 == 0) & (na + nd == 0)))
        empty_files |= {k for k in ("asc", "desc") if tile[k].shape[0] == 0}
    check(set(COUNTS) <= s2 and set(COUNTS) <= s1 and one_orbit > 0 and both_empty >= 2 and
          empty_files == {"asc", "desc"},
          "tiles cover S2 counts %s, S1 counts %s; %d pixels with one orbit empty, %d empty in "
          "both modalities; orbit files with T = 0: %s" % (
              sorted(set(COUNTS) & s2), sorted(set(COUNTS) & s1), one_orbit, both_empty,
              sorted(empty_files)))


# --- comparison --------------------------------------------------------------------------------


def compare(got_q, got_s, want_q, want_s, run):
    """Compare one tile's outputs. Returns (ok, summary, bad_pixels): the criteria of the module
    docstring; bad_pixels are flat indices with a code two steps away or a scale out of
    tolerance, worst first."""
    h, w = want_s.shape
    k = want_q.shape[-1]
    if got_q.dtype != np.int8 or got_q.shape != want_q.shape or got_s.dtype != np.float32 or \
            got_s.shape != want_s.shape:
        return False, "shapes: got %s %s and %s %s, want int8 %s and float32 %s" % (
            got_q.dtype, got_q.shape, got_s.dtype, got_s.shape, want_q.shape, want_s.shape), []
    gq = got_q.reshape(h * w, k).astype(np.int32)
    wq = want_q.reshape(h * w, k).astype(np.int32)
    gs, ws = got_s.reshape(-1), want_s.reshape(-1)
    zeros_ok = bool(np.all(gq[~run] == 0) and np.all(gs[~run] == 0))
    nonzero_ok = bool(np.all(gs[run] > 0))
    diff = np.abs(gq[run] - wq[run])
    within = float(np.mean(diff <= 1)) if diff.size else 1.0
    exact = float(np.mean(diff == 0)) if diff.size else 1.0
    rel = np.abs(gs[run].astype(np.float64) - ws[run]) / ws[run] if run.any() else np.zeros(1)
    per_pixel = np.zeros(h * w)
    per_pixel[run] = np.maximum(diff.max(axis=1) if diff.size else 0, (rel > SCALE_RTOL) * 2)
    bad = [int(p) for p in np.argsort(-per_pixel, kind="stable") if per_pixel[p] > 1]
    ok = zeros_ok and nonzero_ok and within >= WITHIN_ONE and not bad
    summary = ("%d run + %d zero pixels, codes exact %.4f, within 1 step %.4f, max |dq| %d, "
               "scale rel %.1e%s%s" % (run.sum(), (~run).sum(), exact, within,
                                       int(diff.max()) if diff.size else 0, rel.max(),
                                       "" if zeros_ok else ", NOT ZERO where the spec says zeros",
                                       "" if nonzero_ok else ", scale 0 on a run pixel"))
    return ok, summary, bad


def index_story(model, tile, p):
    """What the oracle feeds pixel p: counts, bins and the file indices of each sequence
    (S1 as a<t> / d<t> for ascending / descending rows)."""
    w = tile["bands"].shape[2]
    i, j = divmod(p, w)
    valid2 = np.nonzero(np.asarray(tile["masks"][:, i, j]) != 0)[0]
    labels = []
    for orbit in ("asc", "desc"):
        sar = np.asarray(tile[orbit][:, i, j, :])
        labels += ["%s%d" % (orbit[0], t) for t in np.nonzero(np.any(sar != 0, axis=1))[0]]
    if model.version == "v1.1":
        pattern, binf = oracle.resample_indices, oracle.bin_v11
    elif model.version == "v2":
        pattern, binf = oracle.pad_pattern, oracle.bin_v2
    else:
        return "pixel %d (%d,%d): n_s2 %d, n_s1 %d (v1.0 stratified 40/40)" % (
            p, i, j, len(valid2), len(labels))

    def seq(values):
        n = len(values)
        if n == 0:
            return "zero rows"
        idx = pattern(n, binf(n))
        return "%s (B=%d)" % ([values[x] for x in idx][:40], binf(n))

    return "pixel %d (%d,%d): n_s2 %d -> S2 frames %s; n_s1 %d -> S1 rows %s" % (
        p, i, j, len(valid2), seq(valid2.tolist()), len(labels), seq(labels))


def diagnose(model, tile_dir, bad, got_q, variant_q):
    """Print, for up to 5 bad pixels, the oracle's index sequences and whether the engine's
    codes sit closer to the swapped-pattern variant (R for v2, P for v1.1)."""
    tile = oracle.load_tile(tile_dir)
    k = got_q.shape[-1]
    gq = got_q.reshape(-1, k).astype(np.int32)
    for p in bad[:5]:
        print("      " + index_story(model, tile, p))
        if variant_q is not None:
            vq = variant_q.reshape(-1, k).astype(np.int32)
            print("      max |dq| to the swapped-pattern variant: %d" % np.abs(gq[p] - vq[p]).max())


# --- the runs ----------------------------------------------------------------------------------


def forward_check(args, name, model_path, model, info, engine):
    """tessera run-model on the oracle's inputs of the longest and the shortest bucket group of
    a tile against the float64 forward (rel <= FORWARD_RTOL)."""
    keys = sorted(info["inputs"], key=lambda k: k[0] * k[1])
    d = os.path.join(args.workdir, "io")
    os.makedirs(d, exist_ok=True)
    for key in (keys[-1], keys[0]):
        pixels, s2, s1 = info["inputs"][key]
        np.save(f"{d}/s2.npy", s2)
        np.save(f"{d}/s1.npy", s1)
        r = run([args.tessera, "run-model", "-m", model_path, "--s2", f"{d}/s2.npy", "--s1",
                 f"{d}/s1.npy", "-o", f"{d}/out.npy", "--engine", engine, "--force"])
        if r.returncode != 0:
            check(False, f"{name} {engine} run-model T={key[0]}/{key[1]}: {r.stderr.strip()}")
            continue
        got = np.load(f"{d}/out.npy").astype(np.float64)
        ref = model.forward(s2, s1)
        rel = float(np.abs(got - ref).max() / np.abs(ref).max()) if got.shape == ref.shape else 1.0
        check(got.shape == ref.shape and rel <= FORWARD_RTOL,
              f"{name} {engine} forward T={key[0]}/{key[1]} ({len(pixels)} pixels): "
              f"rel {rel:.1e} (<= {FORWARD_RTOL})")


def infer_checks(args, name, model_path, tiles, engines):
    """All engines and dims of one model on the tiles, against the oracle."""
    t0 = time.time()
    model = oracle.Model(model_path)
    expected = {}
    for grid, path in tiles.items():
        y, info = oracle.embed_tile(model, path)
        variant_y = None
        if model.version in ("v1.1", "v2"):
            variant_y, _ = oracle.embed_tile(model, path, variant="swap-pattern")
        expected[grid] = (y, info, variant_y)
    print(f"      oracle for {name}: {time.time() - t0:.1f} s", flush=True)
    dims = [None, 32] if model.version == "v2" else [None]
    for grid, (y, info, variant_y) in expected.items():
        if variant_y is None:
            continue
        for dim in dims:
            want_q, want_s = oracle.quantize_tile(model, y, info, dim)
            var_q, var_s = oracle.quantize_tile(model, variant_y, info, dim)
            ok, summary, _ = compare(var_q, var_s, want_q, want_s, info["run"])
            check(not ok, f"{name} {grid} dim {dim or 'all'}: the criterion tells the swapped "
                          f"R/P pattern apart ({summary})")
    for engine in engines:
        first = next(iter(expected.values()))[1]
        forward_check(args, name, model_path, model, first, engine)
        for dim in dims:
            out = os.path.join(args.workdir, f"out-{name}-{engine}-{dim or 'all'}")
            cmd = [args.tessera, "infer", *tiles.values(), "-m", model_path, "-o", out,
                   "-b", BATCH, "--engine", engine, "--force"]
            if dim:
                cmd += ["--dim", str(dim)]
            t0 = time.time()
            r = run(cmd)
            label = f"{name} {engine}" + (f" --dim {dim}" if dim else "")
            if not check(r.returncode == 0, f"{label}: tessera infer exit {r.returncode} "
                                            f"({time.time() - t0:.1f} s) {r.stderr.strip()[:300]}"):
                continue
            for grid, (y, info, variant_y) in expected.items():
                want_q, want_s = oracle.quantize_tile(model, y, info, dim)
                try:
                    got_q = np.load(os.path.join(out, grid + ".npy"))
                    got_s = np.load(os.path.join(out, grid + "_scales.npy"))
                except OSError as error:
                    check(False, f"{label} {grid}: {error}")
                    continue
                ok, summary, bad = compare(got_q, got_s, want_q, want_s, info["run"])
                check(ok, f"{label} {grid}: {summary}")
                if bad:
                    var_q = oracle.quantize_tile(model, variant_y, info, dim)[0] \
                        if variant_y is not None else None
                    diagnose(model, tiles[grid], bad, got_q, var_q)


def expect_failure(args, label, cmd, needle, out, grid, engine):
    """Non-zero exit, after the run's line naming the engine one non-empty line on stderr
    containing needle, no <grid>.npy."""
    r = run(cmd)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    said_engine = lines[:1] == [f"tessera: engine: {engine} fp32 (--engine)"]
    lines = lines[1:] if said_engine else lines
    written = [f for f in (grid + ".npy", grid + "_scales.npy") if os.path.exists(os.path.join(out, f))]
    check(said_engine and r.returncode != 0 and len(lines) == 1 and needle in lines[0] and not written,
          f"bad case {label}: rc {r.returncode}, stderr {lines}, written {written}")


def bad_cases(args, models, tiles, bad_tile, engine):
    grid = next(iter(tiles))
    n = 0

    def out_dir():
        nonlocal n
        n += 1
        return os.path.join(args.workdir, f"bad-{engine}-{n}")

    def infer(model, tile, extra, out):
        return [args.tessera, "infer", tile, "-m", models[model], "-o", out, "-b", BATCH,
                "--engine", engine] + extra

    for model in ("v1.0-early", "v1.1-mpc"):
        out = out_dir()
        expect_failure(args, f"{engine} --dim 32 on {model}", infer(model, tiles[grid], ["--dim", "32"], out),
                       NEEDLES["dim_v1"], out, grid, engine)
    out = out_dir()
    expect_failure(args, f"{engine} --dim 48 on v2", infer("v2", tiles[grid], ["--dim", "48"], out),
                   NEEDLES["dim_value"], out, grid, engine)
    bad_grid = os.path.basename(bad_tile)
    for model in ("v1.1-mpc", "v2"):
        out = out_dir()
        expect_failure(args, f"{engine} tile without valid observations on {model}",
                       infer(model, bad_tile, [], out), NEEDLES["no_valid"], out, bad_grid, engine)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--engines", default="ort,native")
    parser.add_argument("--models", default=",".join(m[0] for m in MODELS),
                        help="subset of the models, comma separated")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    chosen = args.models.split(",")
    torch.set_num_threads(1)
    start = time.time()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)

    failures = oracle.self_check()
    check(not failures, "R and P: %d worked examples of MODEL_FAMILY.md and pattern properties%s"
          % (len(oracle.WORKED_EXAMPLES), "" if not failures else ": " + "; ".join(failures[:3])))
    tiles, bad_tile = make_tiles(os.path.join(args.workdir, "tiles"), np.random.default_rng(20260726))
    coverage(tiles)
    models = {}
    for name, flags in MODELS:
        path = os.path.join(args.workdir, f"{name}.onnx")
        r = run([args.tessera, "make-model", "-o", path, "--force"] + flags)
        if check(r.returncode == 0, f"make-model {name}: {(r.stdout or r.stderr).strip()}"):
            models[name] = path
    for name, _ in MODELS:
        if name in models and name in chosen:
            infer_checks(args, name, models[name], tiles, engines)
    if all(m in models for m in ("v1.0-early", "v1.1-mpc", "v2")):
        for engine in engines:
            bad_cases(args, models, tiles, bad_tile, engine)
    print(f"family_infer_test: {time.time() - start:.0f} s")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
