#!/usr/bin/python3
"""End-to-end oracle for `tessera infer`: synthetic tiles -> int8 embeddings + scales.

For every case, the tile pipeline of PIPELINE.md (pipeline_oracle.py: valid pixels, stratified
sampling, normalisation, quantisation) and the model's forward pass (model_oracle.py, float64)
are recomputed in numpy and compared with the files `tessera infer` wrote with its default
engine (the native engine on a CPU):
  - int8 embeddings identical except at most 1 LSB on at most 0.1 % of the elements,
  - scales within 1e-6 relative, invalid pixels all-zero with scale 0,
  - nothing but the two outputs left in the output directory (no journal, no .partial).
Cases: T > 40 with an empty descending direction, T < 40 with every S2 step clouded and an
empty ascending direction and --repeat 2, a flat uint16 tile with T = 40, several workers and
a partial last batch.

Usage: infer_oracle.py --tessera BIN --workdir DIR   (exit 1 on any failure)
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_oracle  # noqa: E402
import pipeline_oracle  # noqa: E402

HEADS = 2
MODEL_FLAGS = ["--d-model", "32", "--layers", "1", "--heads", str(HEADS), "--ffn", "64"]
CASES = [
    # name, synth flags, infer flags
    ("grid_0.15_52.05", ["--size", "13x11", "--s2-steps", "57", "--s1-steps", "24/0", "--seed", "4"],
     ["--layout", "2x1", "-b", "16"]),
    ("grid_-3.45_10.95", ["--size", "9x12", "--s2-steps", "23", "--s1-steps", "0/17", "--cloud", "1.0",
                          "--seed", "5"],
     ["--layout", "single:2", "-b", "25", "--repeat", "2"]),
    ("grid_7.00_-1.00", ["--size", "10x10", "--s2-steps", "40", "--s1-steps", "12/9", "--layout", "flat",
                         "--dtype", "uint16", "--nodata", "0.2", "--seed", "6"],
     ["--layout", "1x1", "-b", "33"]),
]


def fail(message):
    print("infer_oracle: " + message, file=sys.stderr)
    sys.exit(1)


def run(args):
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        fail("%s failed (%d): %s" % (" ".join(args), result.returncode, result.stderr.strip()))
    return result.stdout


def expected_outputs(tile_dir, weights, repeat):
    tile = pipeline_oracle.load_tile(tile_dir)
    _, h, w, _ = tile["bands"].shape
    valid = pipeline_oracle.valid_pixels(tile)
    latent = weights["fusion.bias"].shape[0]
    mean = np.zeros((len(valid), latent), dtype=np.float32)
    for r in range(repeat):
        s2 = np.empty((len(valid), 40, 11), dtype=np.float32)
        s1 = np.empty((len(valid), 40, 3), dtype=np.float32)
        for k, p in enumerate(valid):
            s2[k], s1[k] = pipeline_oracle.pixel_inputs(tile, p, 40, 40, r)
        mean += model_oracle.forward(weights, s2.astype(np.float64), s1.astype(np.float64), HEADS).astype(np.float32)
    mean = mean / np.float32(repeat) if repeat > 1 else mean
    q, scales = pipeline_oracle.quantize(mean)
    want_q = np.zeros((h * w, latent), dtype=np.int8)
    want_s = np.zeros(h * w, dtype=np.float32)
    want_q[valid] = q
    want_s[valid] = scales
    return want_q.reshape(h, w, latent), want_s.reshape(h, w), len(valid)


def check_record(path, model, repeat):
    """The tile's record names the model by the SHA-256 of its bytes, as hashlib computes it."""
    record = json.load(open(path))
    want = {"model": model, "model_sha256": hashlib.sha256(open(model, "rb").read()).hexdigest(),
            "weights": "random (seed 42), for benchmarking", "version": "v1.0", "engine": "native",
            "precision": "fp32", "output_dim": 128, "repeat": repeat}
    for key, value in want.items():
        if record.get(key) != value:
            fail("%s: %s is %r, expected %r" % (path, key, record.get(key), value))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--workdir", required=True)
    a = parser.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    model = os.path.join(a.workdir, "model.onnx")
    run([a.tessera, "make-model", "-o", model] + MODEL_FLAGS)
    weights = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in onnx.load(model).graph.initializer}

    for name, synth_flags, infer_flags in CASES:
        tile_dir = os.path.join(a.workdir, "tiles", name)
        out_dir = os.path.join(a.workdir, "out_" + name)
        run([a.tessera, "synth", "-o", tile_dir] + synth_flags)
        run([a.tessera, "infer", tile_dir, "-o", out_dir, "-m", model] + infer_flags)
        repeat = int(infer_flags[infer_flags.index("--repeat") + 1]) if "--repeat" in infer_flags else 1
        want_q, want_s, valid = expected_outputs(tile_dir, weights, repeat)
        left = sorted(os.listdir(out_dir))
        # The lock stays, empty, and the record of what made the outputs joins them.
        if left != [name + ".lock", name + ".npy", name + ".tessera.json", name + "_scales.npy"]:
            fail("%s: output directory holds %s" % (name, left))
        check_record(os.path.join(out_dir, name + ".tessera.json"), model, repeat)
        got_q = np.load(os.path.join(out_dir, name + ".npy"))
        got_s = np.load(os.path.join(out_dir, name + "_scales.npy"))
        if got_q.dtype != np.int8 or got_q.shape != want_q.shape:
            fail("%s: embeddings %s %s, expected int8 %s" % (name, got_q.dtype, got_q.shape, want_q.shape))
        if got_s.dtype != np.float32 or got_s.shape != want_s.shape:
            fail("%s: scales %s %s, expected float32 %s" % (name, got_s.dtype, got_s.shape, want_s.shape))
        diff = np.abs(got_q.astype(np.int32) - want_q.astype(np.int32))
        off_by_one = int(np.count_nonzero(diff == 1))
        fraction = off_by_one / diff.size
        invalid = want_s == 0
        rel = np.abs(got_s[~invalid] - want_s[~invalid]) / want_s[~invalid]
        print("%s: %d of %d pixels valid, max |dq| %d, %d elements (%.4f %%) off by 1 LSB, "
              "max scale rel err %.2e" % (name, valid, want_s.size, diff.max(), off_by_one, 100 * fraction,
                                          rel.max() if rel.size else 0))
        if diff.max() > 1 or fraction > 0.001:
            fail("%s: int8 embeddings differ beyond 1 LSB on 0.1 %% of elements" % name)
        if rel.size and rel.max() > 1e-6:
            fail("%s: scales differ by %.2e relative" % (name, rel.max()))
        if np.any(got_s[invalid] != 0) or np.any(got_q[invalid] != 0):
            fail("%s: invalid pixels are not all-zero" % name)
    print("infer_oracle: all cases agree")


if __name__ == "__main__":
    main()
