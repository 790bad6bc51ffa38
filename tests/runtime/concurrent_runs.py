#!/usr/bin/python3
"""Two `tessera infer` runs with different models into one output directory, on one tile.

The second run starts 0 to 1.5 s after the first (spread over the trials). Whatever the overlap:
- every file under a final name is wholly one model's output, byte-identical to a clean run of
  that model, and the tile's two outputs come from the same model;
- a run that says it wrote the tile exited 0 and the files are its model's;
- a run that says another run is writing the tile printed the lock line and exited 1, and the
  other run wrote the tile;
- a run that found the other model's finished outputs refused the tile with one line naming the
  other model's SHA-256, exited 1, and the files are the other model's;
- no .partial file or journal is left, only the outputs, their record and the empty lock file.
Trials where one run found the other's lock held are counted; at least one must collide.

Usage: concurrent_runs.py --tessera BIN --workdir DIR [--trials N]   (exit 1 on failure)
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

GRID = "grid_0.15_52.05"
TILE = ["--size", "56x56", "--s2-steps", "45", "--nodata", "0", "--seed", "5"]
MODEL = ["--d-model", "64", "--layers", "2", "--heads", "2", "--ffn", "256"]


def fail(message):
    print("concurrent_runs: " + message, file=sys.stderr)
    sys.exit(1)


def run(args):
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        fail("%s failed (%d): %s" % (" ".join(args), result.returncode, result.stderr.strip()))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def outcome(name, proc, out, finals):
    """'wrote', 'locked' or 'refused', after checking the run's exit code against its words."""
    stdout, stderr = proc.communicate()
    # The first line names the engine and why (the same in every run here); the rest is the tile's.
    engine_line = "tessera: engine: "
    if not stderr.startswith(engine_line):
        fail("run %s: stderr does not begin with the engine line: %r" % (name, stderr))
    stderr = stderr.split("\n", 1)[1]
    locked = "%s: skipped, another tessera run is writing it (lock %s held)" % (
        GRID, os.path.join(out, GRID + ".lock"))
    refused = "tessera: %s: made with model sha256 " % finals[0]
    if stdout.startswith(GRID + ": ") and "-> %s, %s" % tuple(finals) in stdout:
        if proc.returncode != 0:
            fail("run %s says it wrote the tile but exited %d: %s" % (name, proc.returncode, stderr))
        return "wrote"
    if stdout.strip() == locked:
        said = "1 of 1 tiles skipped: another tessera run is writing them"
        if proc.returncode != 1 or said not in stderr:
            fail("run %s skipped a locked tile but exited %d: %r" % (name, proc.returncode, stderr))
        return "locked"
    if stderr.startswith(refused) and proc.returncode == 1 and stdout == "":
        return "refused"
    fail("run %s: exit %d, stdout %r, stderr %r" % (name, proc.returncode, stdout, stderr))


def trial(a, index, models, tile, references):
    out = os.path.join(a.workdir, "out%d" % index)
    finals = [os.path.join(out, GRID + ".npy"), os.path.join(out, GRID + "_scales.npy")]
    delay = 1.5 * index / max(1, a.trials - 1)
    procs = []
    for name in ("a", "b"):
        args = [a.tessera, "infer", tile, "-m", models[name], "-o", out, "--layout", "1x1", "-b", "64"]
        procs.append((name, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True)))
        if name == "a":
            time.sleep(delay)
    said = {name: outcome(name, proc, out, finals) for name, proc in procs}
    files = [read(path) for path in finals]
    owner = [name for name in ("a", "b") if files == references[name]]
    if len(owner) != 1:
        fail("trial %d: the outputs are not wholly one model's (runs said %s)" % (index, said))
    other = "b" if owner[0] == "a" else "a"
    if said[owner[0]] != "wrote" or said[other] == "wrote":
        fail("trial %d: model %s's outputs, but the runs said %s" % (index, owner[0], said))
    left = sorted(os.listdir(out))
    if left != sorted([GRID + ".lock", GRID + ".tessera.json"] + [os.path.basename(p) for p in finals]):
        fail("trial %d: the output directory holds %s" % (index, left))
    if os.path.getsize(os.path.join(out, GRID + ".lock")) != 0:
        fail("trial %d: the lock file is not empty" % index)
    print("trial %2d: delay %.2f s: a %s, b %s" % (index, delay, said["a"], said["b"]))
    return said[other] == "locked"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--trials", type=int, default=20)
    a = parser.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    tile = os.path.join(a.workdir, GRID)
    run([a.tessera, "synth", "-o", tile] + TILE)
    models, references = {}, {}
    for name, seed in (("a", "1"), ("b", "2")):
        models[name] = os.path.join(a.workdir, name + ".onnx")
        run([a.tessera, "make-model", "-o", models[name], "--seed", seed] + MODEL)
        clean = os.path.join(a.workdir, "clean_" + name)
        run([a.tessera, "infer", tile, "-m", models[name], "-o", clean, "--layout", "1x1", "-b", "64"])
        references[name] = [read(os.path.join(clean, GRID + ".npy")),
                            read(os.path.join(clean, GRID + "_scales.npy"))]
    if references["a"][0] == references["b"][0]:
        fail("the two models give the same embeddings; the test could not tell them apart")
    collided = sum(trial(a, i, models, tile, references) for i in range(a.trials))
    print("concurrent_runs: %d trials, %d collided (one run found the other's lock held), "
          "every output wholly one model's and every message true" % (a.trials, collided))
    if collided == 0:
        fail("no trial collided: the runs never overlapped, the test proved nothing")


if __name__ == "__main__":
    main()
