#!/usr/bin/env python3
"""The bucket resampling of Tessera v1.1 and v2 (MODEL_FAMILY.md §C `build_resample_indices`,
§D `_pad_pattern`), written with numpy's own array_split and linspace, as the oracle of
tests/pipeline/tile_pipeline_test.cpp.

Usage: resample_oracle.py --cases CASES.npy --out OUT.npy
CASES int64 [K, 3] rows (kind, n, B) with kind 0 = v1.1 R, 1 = v2 P; OUT int64 [K, 256] the
indices tessera computed, padded with -1. Exit 0 when every row matches, 1 otherwise.
"""

import argparse
import sys

import numpy as np


def build_resample_indices(n, b):
    if n == b:
        return np.arange(n, dtype=np.int64)
    if b < n:
        return np.array([c[len(c) // 2] for c in np.array_split(np.arange(n), b)], dtype=np.int64)
    extra = b - n
    interior = np.linspace(0, n - 1, extra + 2)[1:-1]
    extras = np.clip(np.rint(interior), 0, n - 1).astype(np.int64)
    return np.concatenate([np.arange(n, dtype=np.int64), extras])


def pad_pattern(n, b):
    if n >= b:
        return np.linspace(0, n - 1, b).astype(np.int64)
    r = b - n
    if r <= n:
        fill = [g[len(g) // 2] for g in np.array_split(np.arange(n), r)]
    else:
        fill = [k % n for k in range(r)]
    return np.concatenate([np.arange(n, dtype=np.int64), np.array(fill, dtype=np.int64)])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cases, outs = np.load(args.cases), np.load(args.out)
    bad = 0
    for (kind, n, b), got in zip(cases, outs):
        want = (build_resample_indices if kind == 0 else pad_pattern)(int(n), int(b))
        if not np.array_equal(got[:b], want) or np.any(got[b:] != -1):
            bad += 1
            if bad <= 5:
                print(f"kind {kind} n={n} B={b}: tessera {got[:b].tolist()}, numpy {want.tolist()}")
    print(f"resample_oracle: {len(cases) - bad} of {len(cases)} cases match")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
