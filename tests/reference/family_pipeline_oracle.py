#!/usr/bin/python3
"""Independent numpy + PyTorch implementation of the Tessera family tile pipelines, written from
MODEL_FAMILY.md (tessera's shared docs) for checks of `tessera infer` on v1.0-early, v1.1 and v2
models (family_infer_test.py).

Per version, for every pixel p = i*W + j of a tile directory:
  - v1.0 / v1.0-early: PIPELINE.md as pipeline_oracle.py implements it (pixel filter, 40/40
    stratified steps at offset 0, pooled v1.0 stats, an empty orbit becomes one zero step with
    DOY 180); unfiltered pixels are all zeros with scale 0.
  - v1.1 (§C): valid S2 frames (mask != 0), valid S1 rows (either raw band != 0), asc rows
    standardised with the asc stats and desc rows with the desc stats of the model's
    `tessera.stats` set (mpc or aws), asc block then desc block; bin(n) = smallest multiple of 8
    >= n, capped at 256, n = 0 -> 8 with all-zero rows (bands and DOY 0); sequence = rows[R(n, B)]
    with R = build_resample_indices.
  - v2 (§D): v2 stats, the same valid rules, bin(0) = 0: a modality with no valid observation
    is one all-zero row while the other has some; a pixel empty in both is written as zeros with
    scale 0; sequence = rows[P(n, B)] with P = _pad_pattern; the output is truncated to the first
    K (--dim) before quantisation.
Pixels are grouped by their (S2 length, S1 length) key and each group runs through the modules
of tessera_torch.py, loaded from the ONNX file's initializers, in float64: the reference is then
exact to ~1e-15, so every difference a comparison sees is the engine's own float32 rounding (plus
any pipeline departure), and "within one int8 step" measures only that. The float64 output is
rounded to float32 before quantisation, as the pipelines quantise float32 embeddings.

Quantisation: v1.x scale = max(max|y|/127, 1e-8), codes clip(round_half_even(y/scale), -128, 127);
v2 absmax = max(max|y|, 1e-12), scale = absmax/127, codes clipped to +-127. Both in float32.

Subcommands:
  selfcheck                       R and P against every worked example of MODEL_FAMILY.md
                                  (exit 0 all agree, 1 otherwise); needs only numpy
  infer --tile DIR -m MODEL.onnx -o OUT_DIR [--dim K]
                                  write the oracle's <grid>.npy and <grid>_scales.npy
Run with /usr/bin/python3 (numpy, onnx, torch).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import pipeline_oracle  # noqa: E402

# --- statistics (float32), MODEL_FAMILY.md §C and §D ------------------------------------------
STATS = {
    "mpc": {
        "s2_mean": [2683.4553, 2223.3630, 2432.0950, 3633.1970, 3602.1755, 3006.4324, 3400.2710,
                    3515.6392, 2456.9163, 1983.8783],
        "s2_std": [2739.5217, 2846.2993, 2690.8250, 2290.0439, 2088.8970, 2673.1106, 2381.4521,
                   2229.5225, 1601.0942, 1495.3545],
        "asc_mean": [5588.3291, 3025.6270], "asc_std": [1713.4646, 1693.0471],
        "desc_mean": [5552.9683, 2955.0520], "desc_std": [1685.5857, 1677.6414],
    },
    "aws": {
        "s2_mean": [2793.6589, 2356.7776, 2551.0496, 3741.9229, 3713.7844, 3120.1997, 3516.3342,
                    3637.0342, 2501.0283, 2038.1504],
        "s2_std": [2810.0093, 2933.8835, 2755.6360, 2344.5027, 2145.7986, 2743.9019, 2438.8601,
                   2286.5977, 1680.7367, 1585.5529],
        "asc_mean": [5697.0859, 2838.6687], "asc_std": [1671.3737, 1789.4116],
        "desc_mean": [5759.1367, 2873.2854], "desc_std": [1583.2858, 1747.8390],
    },
    "v2": {
        "s2_mean": [1633.0042, 1341.1090, 1539.5536, 3054.8269, 3117.4658, 2004.1648, 2694.7275,
                    2945.1504, 2266.6079, 1657.3094],
        "s2_std": [1999.4603, 2014.7549, 1929.2201, 1754.2493, 1649.9807, 1936.8988, 1748.6041,
                   1708.6991, 1207.5250, 1108.6046],
        "asc_mean": [5909.3921, 3405.0322], "asc_std": [1507.1750, 1531.2615],
        "desc_mean": [5816.1382, 3277.7576], "desc_std": [1554.6475, 1546.4733],
    },
}
STATS = {name: {k: np.array(v, dtype=np.float32) for k, v in s.items()} for name, s in STATS.items()}

BIN_EDGES = list(range(8, 257, 8))  # [8, 16, ..., 256]

# --- the two index patterns ----------------------------------------------------------------


def bin_v11(n):
    """v1.1 bucket: smallest edge >= n, 256 above 256; n = 0 -> 8 (§C Buckets)."""
    for edge in BIN_EDGES:
        if n <= edge:
            return edge
    return BIN_EDGES[-1]


def bin_v2(n):
    """v2 bucket: 0 for n <= 0, else the smallest edge >= n, capped at 256 (§D)."""
    return 0 if n <= 0 else bin_v11(n)


def _upper_middles(n, chunks):
    """c[len(c)//2] of each chunk of np.array_split(0..n-1, chunks)."""
    return np.array([c[len(c) // 2] for c in np.array_split(np.arange(n, dtype=np.int64), chunks)],
                    dtype=np.int64)


def resample_indices(n, b):
    """R = build_resample_indices(n, B) of v1.1 (§C): identity for n == B, upper middles of B
    near-equal chunks for n > B, else 0..n-1 followed by the rounded interior points of
    linspace(0, n-1, B-n+2) (duplicates appended at the end)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n == b:
        return np.arange(n, dtype=np.int64)
    if b < n:
        return _upper_middles(n, b)
    extra = b - n
    interior = np.linspace(0, n - 1, extra + 2, dtype=np.float64)[1:-1]
    extras = np.clip(np.rint(interior), 0, n - 1).astype(np.int64)
    return np.concatenate([np.arange(n, dtype=np.int64), extras])


def pad_pattern(n, b):
    """P = _pad_pattern(n, B) of v2 (§D): n >= B: floor of float64 linspace(0, n-1, B) (the
    product i*((n-1)/(B-1)) with the last point exactly n-1); n < B: 0..n-1 followed by the
    upper middles of B-n chunks when B-n <= n, else k mod n cyclically."""
    if n <= 0:
        return np.zeros(b, dtype=np.int64)
    if n >= b:
        if b == 1:
            return np.zeros(1, dtype=np.int64)
        points = np.arange(b, dtype=np.float64) * (np.float64(n - 1) / np.float64(b - 1))
        points[-1] = n - 1
        return np.floor(points).astype(np.int64)
    r = b - n
    fill = _upper_middles(n, r) if r <= n else np.arange(r, dtype=np.int64) % n
    return np.concatenate([np.arange(n, dtype=np.int64), fill])


# Every worked example of MODEL_FAMILY.md: (function, n, B, expected indices).
WORKED_EXAMPLES = [
    ("R", 5, 8, [0, 1, 2, 3, 4, 1, 2, 3]),
    ("R", 13, 8, [1, 3, 5, 7, 9, 10, 11, 12]),
    ("R", 13, 16, list(range(13)) + [3, 6, 9]),
    ("R", 3, 8, [0, 1, 2, 0, 1, 1, 1, 2]),
    ("R", 2, 8, [0, 1, 0, 0, 0, 1, 1, 1]),
    ("P", 5, 8, [0, 1, 2, 3, 4, 1, 3, 4]),
    ("P", 13, 8, [0, 1, 3, 5, 6, 8, 10, 12]),
    ("P", 3, 8, [0, 1, 2, 0, 1, 2, 0, 1]),
    ("P", 4, 8, [0, 1, 2, 3, 0, 1, 2, 3]),
    ("P", 13, 16, list(range(13)) + [2, 7, 11]),
    ("P", 6, 8, [0, 1, 2, 3, 4, 5, 1, 4]),
]
PATTERNS = {"R": resample_indices, "P": pad_pattern}


def self_check():
    """R and P against the worked examples, plus properties over n = 1..600 and every bin:
    length B, indices in 0..n-1, every index present when n <= B, P's float64 product equal to
    np.linspace. Returns a list of failure messages (empty when all hold)."""
    failures = []
    for name, n, b, want in WORKED_EXAMPLES:
        got = PATTERNS[name](n, b).tolist()
        if got != want:
            failures.append("%s(%d, %d) = %s, MODEL_FAMILY.md says %s" % (name, n, b, got, want))
    for n in range(1, 601):
        b = bin_v11(n)
        for name, fn in PATTERNS.items():
            idx = fn(n, b)
            if len(idx) != b or idx.min() < 0 or idx.max() >= n or \
                    (n <= b and set(idx.tolist()) != set(range(n))):
                failures.append("%s(%d, %d) = %s is not a valid pattern" % (name, n, b, idx.tolist()))
        if n >= b:
            lin = np.floor(np.linspace(0, n - 1, b)).astype(np.int64)
            if not np.array_equal(lin, pad_pattern(n, b)):
                failures.append("P(%d, %d) differs from floor(np.linspace)" % (n, b))
    for n, want in ((0, 8), (1, 8), (8, 8), (9, 16), (255, 256), (256, 256), (300, 256)):
        if bin_v11(n) != want:
            failures.append("v1.1 bin(%d) = %d, want %d" % (n, bin_v11(n), want))
    if bin_v2(0) != 0 or bin_v2(1) != 8:
        failures.append("v2 bin(0) / bin(1) wrong")
    return failures


# --- tiles -----------------------------------------------------------------------------------


def load_tile(tile_dir):
    """The tile's arrays (nested or flat layout), as pipeline_oracle reads them."""
    return pipeline_oracle.load_tile(tile_dir)


def standardise(values, mean, std):
    """(x - mean) / (std + 1e-9) in float32."""
    out = (np.asarray(values).astype(np.float32) - mean) / (std + np.float32(1e-9))
    assert out.dtype == np.float32
    return out


def pixel_observations(tile, p, stats):
    """The valid rows of pixel p, before resampling: S2 [n2, 11] (standardised bands, DOY) in
    file order, and S1 [n1, 3] = valid asc rows (asc stats) then valid desc rows (desc stats)."""
    w = tile["bands"].shape[2]
    i, j = divmod(int(p), w)
    masks = np.asarray(tile["masks"][:, i, j])
    valid = np.nonzero(masks != 0)[0]  # ascending: the stable argsort of ~valid
    bands = np.asarray(tile["bands"][valid, i, j, :])
    doys = np.asarray(tile["doys"])[valid]
    s2 = np.concatenate([standardise(bands, stats["s2_mean"], stats["s2_std"]),
                         doys.astype(np.float32)[:, None]], axis=1)
    parts = []
    for orbit in ("asc", "desc"):
        sar = np.asarray(tile[orbit][:, i, j, :])
        ok = np.nonzero(np.any(sar != 0, axis=1))[0]
        rows = standardise(sar[ok], stats[orbit + "_mean"], stats[orbit + "_std"])
        doy = np.asarray(tile[orbit + "_doy"])[ok].astype(np.float32)
        parts.append(np.concatenate([rows, doy[:, None]], axis=1).reshape(-1, 3))
    s1 = np.concatenate(parts, axis=0)
    return s2.astype(np.float32), s1.astype(np.float32)


def valid_counts(tile):
    """Per pixel (flat): valid S2 frames, valid asc rows, valid desc rows (int64 arrays)."""
    _, h, w, _ = tile["bands"].shape
    n2 = np.count_nonzero(np.asarray(tile["masks"]) != 0, axis=0).reshape(-1)
    orbit = []
    for key in ("asc", "desc"):
        sar = np.asarray(tile[key])
        orbit.append(np.count_nonzero(np.any(sar != 0, axis=-1), axis=0).reshape(-1)
                     if sar.shape[0] else np.zeros(h * w, dtype=np.int64))
    return n2.astype(np.int64), orbit[0].astype(np.int64), orbit[1].astype(np.int64)


def v11_inputs(tile, p, stats, pattern=resample_indices):
    """One pixel's v1.1 model input (§C): rows[R(n, bin(n))], or [8, C+1] zeros when n = 0."""
    s2, s1 = pixel_observations(tile, p, stats)
    out = []
    for rows in (s2, s1):
        n = len(rows)
        if n == 0:
            out.append(np.zeros((8, rows.shape[1]), dtype=np.float32))
        else:
            out.append(rows[pattern(n, bin_v11(n))])
    return out[0], out[1]


def v2_inputs(tile, p, pattern=pad_pattern):
    """One pixel's v2 model input (§D): rows[P(n, bin(n))]; a modality with no valid row is one
    zero row; None when both are empty (the pixel is not run)."""
    s2, s1 = pixel_observations(tile, p, STATS["v2"])
    if len(s2) == 0 and len(s1) == 0:
        return None
    out = []
    for rows in (s2, s1):
        n = len(rows)
        if n == 0:
            out.append(np.zeros((1, rows.shape[1]), dtype=np.float32))
        else:
            out.append(rows[pattern(n, bin_v2(n))])
    return out[0], out[1]


def v10_inputs(tile, p):
    """One pixel's v1.0 input (PIPELINE.md, offset 0, 40/40); None when the pixel is filtered."""
    return pipeline_oracle.pixel_inputs(tile, p, 40, 40, 0)


# --- quantisation ----------------------------------------------------------------------------


def quantize_v1(y):
    """v1.x per-pixel int8: scale = max(max|y|/127, 1e-8), codes clip(rint(y/scale), -128, 127)."""
    y = np.asarray(y, dtype=np.float32)
    scale = np.maximum(np.abs(y).max(axis=1) / np.float32(127), np.float32(1e-8))
    q = np.clip(np.rint(y / scale[:, None]), -128, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def quantize_v2(y):
    """v2 int8: absmax = max(max|y|, 1e-12), scale = absmax/127, codes clip(rint(y/scale), +-127)."""
    y = np.asarray(y, dtype=np.float32)
    scale = (np.maximum(np.abs(y).max(axis=1), np.float32(1e-12)) / np.float32(127)).astype(np.float32)
    q = np.clip(np.rint(y / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


# --- model -----------------------------------------------------------------------------------


def metadata(path):
    import onnx
    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


class Model:
    """A `tessera make-model` / `tessera import` ONNX file as a float64 torch module.

    version, stats and heads come from the metadata; widths from the initializer shapes."""

    def __init__(self, path):
        import torch
        import tessera_torch

        meta = metadata(path)
        self.version = meta.get("tessera.version", "v1.0")
        self.stats = meta.get("tessera.stats", "v2" if self.version == "v2" else "v1.0")
        module, self.config, _ = tessera_torch.model_from_onnx(path)
        self.width = self.config["latent"]
        self.module = module.double().eval()
        self._torch = torch

    def forward(self, s2, s1):
        """[N, T2, 11], [N, T1, 3] float32 -> [N, width] float64."""
        torch = self._torch
        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(s2, dtype=np.float64)),
                               torch.from_numpy(np.ascontiguousarray(s1, dtype=np.float64))).numpy()


# --- the tile ----------------------------------------------------------------------------------


def pixel_inputs(model, tile, p, run_v10=None, variant=None):
    """Model input (s2, s1) of pixel p for the model's version, or None when the pixel is not
    run. run_v10: the v1.0 pixel filter's set (pipeline_oracle.valid_pixels). variant, for
    checks that a comparison discriminates, swaps the index pattern: "swap-pattern" runs v1.1
    with P and v2 with R."""
    if model.version in ("v1.0", "v1.0-early"):
        return v10_inputs(tile, p) if p in run_v10 else None
    if model.version == "v1.1":
        if model.stats not in ("mpc", "aws"):
            raise ValueError("v1.1 model with stats %r" % model.stats)
        return v11_inputs(tile, p, STATS[model.stats],
                          pad_pattern if variant == "swap-pattern" else resample_indices)
    if model.version == "v2":
        return v2_inputs(tile, p, resample_indices if variant == "swap-pattern" else pad_pattern)
    raise ValueError("unknown version %r" % model.version)


def embed_tile(model, tile_dir, variant=None):
    """Run every pixel of a tile through the model the way its version's pipeline does.
    Returns (y, info): y float64 [H*W, width] (NaN rows for pixels that are not run) and
    info = dict(shape=(H, W), counts=(n2, n_asc, n_desc) per pixel, run=bool [H*W],
    inputs={(T2, T1): (pixels, s2 [N, T2, 11], s1 [N, T1, 3])} in sorted key order)."""
    tile = load_tile(tile_dir)
    _, h, w, _ = tile["bands"].shape
    run_v10 = set(pipeline_oracle.valid_pixels(tile).tolist())
    groups = {}
    for p in range(h * w):
        x = pixel_inputs(model, tile, p, run_v10, variant)
        if x is not None:
            groups.setdefault((x[0].shape[0], x[1].shape[0]), []).append((p, x))
    y = np.full((h * w, model.width), np.nan)
    inputs = {}
    for key in sorted(groups):
        pixels = [m[0] for m in groups[key]]
        inputs[key] = (pixels, np.stack([m[1][0] for m in groups[key]]),
                       np.stack([m[1][1] for m in groups[key]]))
        y[pixels] = model.forward(inputs[key][1], inputs[key][2])
    info = {"shape": (h, w), "counts": valid_counts(tile), "run": ~np.isnan(y[:, 0]),
            "inputs": inputs}
    return y, info


def quantize_tile(model, y, info, dim=None):
    """The tile's int8 codes [H, W, K] and scales [H, W] from embed_tile's y: v2 truncates to
    the first dim (default all) columns first and quantises with quantize_v2, v1.x with
    quantize_v1; pixels that are not run are zeros with scale 0."""
    h, w = info["shape"]
    k = dim if (model.version == "v2" and dim) else model.width
    run = info["run"]
    codes = np.zeros((h * w, k), dtype=np.int8)
    scales = np.zeros(h * w, dtype=np.float32)
    if run.any():
        quantize = quantize_v2 if model.version == "v2" else quantize_v1
        codes[run], scales[run] = quantize(y[run, :k].astype(np.float32))
    return codes.reshape(h, w, k), scales.reshape(h, w)


def tile_embeddings(model, tile_dir, dim=None, variant=None):
    """embed_tile then quantize_tile: (codes, scales, info)."""
    y, info = embed_tile(model, tile_dir, variant)
    codes, scales = quantize_tile(model, y, info, dim)
    return codes, scales, info


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("selfcheck")
    p = sub.add_parser("infer")
    p.add_argument("--tile", required=True)
    p.add_argument("-m", "--model", required=True)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--dim", type=int)
    a = parser.parse_args()
    if a.command == "selfcheck":
        failures = self_check()
        for f in failures:
            print("FAIL  " + f)
        print("selfcheck: %d worked examples, %s" % (len(WORKED_EXAMPLES),
                                                     "all agree" if not failures else "FAILED"))
        return 1 if failures else 0
    model = Model(a.model)
    codes, scales, _ = tile_embeddings(model, a.tile, a.dim)
    grid = os.path.basename(os.path.normpath(a.tile))
    os.makedirs(a.output, exist_ok=True)
    np.save(os.path.join(a.output, grid + ".npy"), codes)
    np.save(os.path.join(a.output, grid + "_scales.npy"), scales)
    print("wrote %s: %s %s" % (grid, codes.shape, model.version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
