#!/usr/bin/python3
"""Independent numpy implementation of the Tessera tile pipeline's input preparation and
int8 quantisation (docs/PIPELINE.md), used to check the C++ pipeline bit for bit.

Subcommands (each exits 0 when the C++ arrays match exactly, 1 with a message otherwise):
  prepare  --tile DIR --s2-steps N --s1-steps M --offset R --pixels P.npy
           --valid V.npy --s2 S2.npy --s1 S1.npy
      V: the C++ valid-pixel list; S2 (len(P), N, 11) and S1 (len(P), M, 3) float32: the
      C++ model inputs for the pixels in P.
  select   --cases C.npy --out O.npy
      C (K, 3) int64 rows (n, n_out, offset); O (K, max n_out) int64, -1 padded: the C++
      select() of valid = [0, 3, 6, ..., 3(n-1)].
  quantize --x X.npy --q Q.npy --scales S.npy
      X (N, D) float32 embeddings; Q (N, D) int8 and S (N,) float32 from the C++ quantiser.
Only numpy is needed (run with /usr/bin/python3).
"""

import argparse
import os
import sys

import numpy as np

S2_MEAN = np.array([1711.0938, 1308.8511, 1546.4543, 3010.1293, 3106.5083,
                    2068.3044, 2685.0845, 2931.5889, 2514.6928, 1899.4922], dtype=np.float32)
S2_STD = np.array([1926.1026, 1862.9751, 1803.1792, 1741.7837, 1677.4543,
                   1888.7862, 1736.3090, 1715.8104, 1514.5199, 1398.4779], dtype=np.float32)
S1_MEAN = np.array([5484.0407, 3003.7812], dtype=np.float32)
S1_STD = np.array([1871.2334, 1726.0670], dtype=np.float32)
MIN_VALID_TIMESTEPS = 0
EMPTY_S1_DOY = 180


def select(valid_idx, n_out, offset):
    """Stratified deterministic sampling, as PIPELINE.md states it."""
    valid_idx = np.asarray(valid_idx)
    n = len(valid_idx)
    if n == 0:
        return np.zeros(n_out, dtype=np.int64)
    if n <= n_out:
        repeated = np.tile(valid_idx, n_out // n + 1)[:n_out]
        return np.sort(repeated)
    bins = np.linspace(0, n, n_out + 1)
    out = np.empty(n_out, dtype=np.int64)
    for k in range(n_out):
        lo = int(bins[k])
        hi = int(bins[k + 1])
        if hi <= lo:
            hi = lo + 1
        pos = lo + offset % (hi - lo)
        out[k] = valid_idx[min(pos, n - 1)]
    return out


def load_tile(tile_dir):
    def member(sub, name):
        nested = os.path.join(tile_dir, sub, name)
        path = nested if os.path.exists(nested) else os.path.join(tile_dir, name)
        return np.load(path, mmap_mode="r")

    return {
        "bands": member("s2", "bands.npy"),
        "masks": member("s2", "masks.npy"),
        "doys": member("s2", "doys.npy"),
        "asc": member("s1", "sar_ascending.npy"),
        "asc_doy": member("s1", "sar_ascending_doy.npy"),
        "desc": member("s1", "sar_descending.npy"),
        "desc_doy": member("s1", "sar_descending_doy.npy"),
    }


def valid_pixels(tile):
    bands = tile["bands"]
    _, h, w, _ = bands.shape
    s2_ok = np.zeros((h, w), dtype=bool)
    for t in range(bands.shape[0]):  # per step, to keep memory small
        s2_ok |= np.any(np.asarray(bands[t]) != 0, axis=-1)
    ok = s2_ok
    if tile["asc"].shape[0] + tile["desc"].shape[0] > 0:
        count = np.zeros((h, w), dtype=np.int64)
        for key in ("asc", "desc"):
            for t in range(tile[key].shape[0]):
                count += np.any(np.asarray(tile[key][t]) != 0, axis=-1)
        ok = ok & (count >= MIN_VALID_TIMESTEPS)
    return np.flatnonzero(ok.reshape(-1))


def normalise(values, mean, std):
    # The pipeline's arrays are float32; numpy keeps (x - mean) / (std + 1e-9) in float32.
    out = (values.astype(np.float32) - mean) / (std + 1e-9)
    assert out.dtype == np.float32
    return out


def pixel_inputs(tile, pixel, s2_steps, s1_steps, offset):
    w = tile["bands"].shape[2]
    i, j = divmod(int(pixel), w)
    bands = np.asarray(tile["bands"][:, i, j, :])
    masks = np.asarray(tile["masks"][:, i, j])
    doys = np.asarray(tile["doys"])
    valid = np.nonzero(masks)[0]
    if len(valid) == 0:
        valid = np.arange(len(masks))
    idx = select(valid, s2_steps, offset)
    s2 = np.concatenate([normalise(bands[idx], S2_MEAN, S2_STD),
                         doys[idx].astype(np.float32)[:, None]], axis=1)

    parts, part_doys = [], []
    for key in ("asc", "desc"):
        sar = np.asarray(tile[key][:, i, j, :])
        sar_doy = np.asarray(tile[key + "_doy"])
        if sar.shape[0] == 0:
            sar = np.zeros((1, 2), dtype=sar.dtype)
            sar_doy = np.array([EMPTY_S1_DOY])
        parts.append(sar)
        part_doys.append(sar_doy.astype(np.float64))
    sar = np.concatenate(parts, axis=0)
    sar_doy = np.concatenate(part_doys)
    valid = np.nonzero(np.any(sar != 0, axis=1))[0]
    if len(valid) == 0:
        valid = np.arange(sar.shape[0])
    idx = select(valid, s1_steps, offset)
    s1 = np.concatenate([normalise(sar[idx], S1_MEAN, S1_STD),
                         sar_doy[idx].astype(np.float32)[:, None]], axis=1)
    return s2.astype(np.float32), s1.astype(np.float32)


def quantize(x):
    x = np.asarray(x, dtype=np.float32)
    scale = np.maximum(np.abs(x).max(axis=1, keepdims=True) / 127, 1e-8)
    assert scale.dtype == np.float32
    q = np.clip(np.round(x / scale), -128, 127).astype(np.int8)  # np.round: half to even
    return q, scale[:, 0]


def same_bits(a, b):
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def fail(message):
    print("pipeline_oracle: " + message, file=sys.stderr)
    sys.exit(1)


def cmd_prepare(a):
    tile = load_tile(a.tile)
    valid = valid_pixels(tile)
    got_valid = np.load(a.valid)
    if not np.array_equal(valid, got_valid):
        fail("valid pixels differ: oracle %d pixels, C++ %d" % (len(valid), len(got_valid)))
    pixels = np.load(a.pixels)
    got_s2 = np.load(a.s2)
    got_s1 = np.load(a.s1)
    want_s2 = np.empty((len(pixels), a.s2_steps, 11), dtype=np.float32)
    want_s1 = np.empty((len(pixels), a.s1_steps, 3), dtype=np.float32)
    for k, p in enumerate(pixels):
        want_s2[k], want_s1[k] = pixel_inputs(tile, p, a.s2_steps, a.s1_steps, a.offset)
    for name, want, got in (("s2", want_s2, got_s2), ("s1", want_s1, got_s1)):
        if not same_bits(want, got):
            if want.shape != got.shape or want.dtype != got.dtype:
                fail("%s: shape/dtype %s %s, C++ %s %s" %
                     (name, want.shape, want.dtype, got.shape, got.dtype))
            bad = np.argwhere(want.view(np.uint32) != got.view(np.uint32))[0]
            fail("%s differs at %s (pixel %d): oracle %r, C++ %r" %
                 (name, tuple(bad), pixels[bad[0]], want[tuple(bad)], got[tuple(bad)]))
    print("prepare: %d pixels, %d valid: identical" % (len(pixels), len(valid)))


def cmd_select(a):
    cases = np.load(a.cases)
    got = np.load(a.out)
    for k, (n, n_out, offset) in enumerate(cases):
        want = select(np.arange(n, dtype=np.int64) * 3, int(n_out), int(offset))
        if not np.array_equal(want, got[k, :n_out]):
            fail("select(n=%d, n_out=%d, offset=%d): oracle %s, C++ %s" %
                 (n, n_out, offset, want.tolist(), got[k, :n_out].tolist()))
    print("select: %d cases identical" % len(cases))


def cmd_quantize(a):
    x = np.load(a.x)
    q, scales = quantize(x)
    got_q = np.load(a.q)
    got_s = np.load(a.scales)
    if not same_bits(scales, got_s):
        bad = int(np.argmax(scales != got_s))
        fail("scale %d: oracle %r, C++ %r" % (bad, scales[bad], got_s[bad]))
    if not same_bits(q, got_q):
        bad = tuple(np.argwhere(q != got_q)[0])
        fail("q%s: oracle %d, C++ %d (x = %r)" % (bad, q[bad], got_q[bad], x[bad]))
    print("quantize: %d vectors identical" % len(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--tile", required=True)
    p.add_argument("--s2-steps", type=int, default=40)
    p.add_argument("--s1-steps", type=int, default=40)
    p.add_argument("--offset", type=int, default=0)
    for name in ("--pixels", "--valid", "--s2", "--s1"):
        p.add_argument(name, required=True)
    p.set_defaults(run=cmd_prepare)
    p = sub.add_parser("select")
    p.add_argument("--cases", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_select)
    p = sub.add_parser("quantize")
    for name in ("--x", "--q", "--scales"):
        p.add_argument(name, required=True)
    p.set_defaults(run=cmd_quantize)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
