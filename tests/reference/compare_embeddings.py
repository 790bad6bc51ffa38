#!/usr/bin/env python3
"""Compares two tessera embedding outputs of the same tile, e.g. a CPU run and a GPU run.

    compare_embeddings.py A B [--min-within-1-lsb F] [--min-cosine C]

A and B are output prefixes: A.npy (int8, H x W x 128) and A_scales.npy (float32, H x W).
Prints the share of int8 elements within one step of each other, the largest int8 and scale
differences, and the smallest cosine similarity of the dequantised embeddings over pixels that
have one. Exits 1 when a given threshold is missed.
"""
import argparse
import sys

import numpy as np


def load(prefix):
    q = np.load(prefix + ".npy")
    s = np.load(prefix + "_scales.npy")
    if q.dtype != np.int8 or s.dtype != np.float32 or q.shape[:-1] != s.shape:
        sys.exit(f"{prefix}: expected int8 embeddings and float32 scales of one tile")
    return q, s


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--min-within-1-lsb", type=float, default=0.0)
    parser.add_argument("--min-cosine", type=float, default=-1.0)
    args = parser.parse_args()
    qa, sa = load(args.a)
    qb, sb = load(args.b)
    if qa.shape != qb.shape:
        sys.exit(f"shapes differ: {qa.shape} vs {qb.shape}")
    diff = np.abs(qa.astype(np.int16) - qb.astype(np.int16))
    within = float((diff <= 1).mean())
    ea = qa.astype(np.float64) * sa[..., None]
    eb = qb.astype(np.float64) * sb[..., None]
    na, nb = np.linalg.norm(ea, axis=-1), np.linalg.norm(eb, axis=-1)
    valid = (na > 0) & (nb > 0)
    cos = (ea * eb).sum(-1)[valid] / (na[valid] * nb[valid])
    scale_rel = np.abs(sa - sb)[valid] / np.maximum(np.abs(sa[valid]), 1e-30)
    min_cos = float(cos.min()) if cos.size else 1.0
    print(f"elements {diff.size}, within 1 LSB {100 * within:.3f} %, max |int8 diff| {int(diff.max())}, "
          f"max scale rel diff {float(scale_rel.max()) if scale_rel.size else 0.0:.2e}, "
          f"min cosine {min_cos:.6f} over {int(valid.sum())} pixels, "
          f"pixels with data in one only {int((na > 0).sum() + (nb > 0).sum() - 2 * valid.sum())}")
    ok = within >= args.min_within_1_lsb and min_cos >= args.min_cosine
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
