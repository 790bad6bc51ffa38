#!/usr/bin/env python3
"""Checks compare_embeddings.py on outputs whose differences are known: identical outputs, one
int8 element two steps off, a 1-step shift everywhere, and outputs that do not belong together."""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def write(prefix, q, s):
    np.save(prefix + ".npy", q)
    np.save(prefix + "_scales.npy", s)


def run(a, b, *extra):
    p = subprocess.run([sys.executable, os.path.join(HERE, "compare_embeddings.py"), a, b, *extra],
                       capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def main():
    rng = np.random.default_rng(7)
    q = rng.integers(-127, 128, size=(4, 5, 128)).astype(np.int8)
    s = rng.uniform(0.01, 0.1, size=(4, 5)).astype(np.float32)
    q[0, 0] = 0  # a pixel without data in both
    s[0, 0] = 0
    with tempfile.TemporaryDirectory() as d:
        a, b = os.path.join(d, "a"), os.path.join(d, "b")
        write(a, q, s)
        write(b, q, s)
        rc, out = run(a, b, "--min-within-1-lsb", "1.0", "--min-cosine", "0.999999")
        assert rc == 0, out
        assert "within 1 LSB 100.000 %" in out and "max |int8 diff| 0" in out, out
        assert "over 19 pixels" in out, out

        q2 = q.copy()
        q2[1, 1, 3] = np.int8(q[1, 1, 3] - 2 if q[1, 1, 3] > -126 else q[1, 1, 3] + 2)
        write(b, q2, s)
        rc, out = run(a, b, "--min-within-1-lsb", "0.995")
        assert rc == 0, out  # 1 of 2560 elements off: 99.96 % within one step
        assert "max |int8 diff| 2" in out and "within 1 LSB 99.961 %" in out, out
        rc, out = run(a, b, "--min-within-1-lsb", "1.0")
        assert rc == 1, out

        q3 = np.clip(q.astype(np.int16) + 3, -127, 127).astype(np.int8)
        write(b, q3, s)
        rc, out = run(a, b, "--min-within-1-lsb", "0.995")
        assert rc == 1, out

        write(b, q[:2], s[:2])
        rc, out = run(a, b)
        assert rc == 1 and "shapes differ" in out, out
        write(b, q.astype(np.int16), s)
        rc, out = run(a, b)
        assert rc == 1 and "expected int8 embeddings and float32 scales" in out, out
    print("compare_embeddings: ok")


if __name__ == "__main__":
    main()
