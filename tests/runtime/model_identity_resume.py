#!/usr/bin/python3
"""A journal resumes only into the model it was written with, identified by content.

1. Look-alike models: two models of the same architecture and size (seeds 42 and 43), both
   dated 2024-01-01 (as after unpacking one archive, or `cp -p`). A run with the first at
   model.onnx is killed mid-tile; the second is copied over it, keeping size and times; the
   rerun must say the journal came from another model, resume nothing, and match a clean run
   of the second model.
2. A model replaced during a multi-tile job: the job's engines are built from the first model;
   once its first tile is done the file is replaced by the second, then the job is killed in its
   second tile.
   The rerun (with the second model now at the path) must start that tile over and match a
   clean run of the second model: the killed job's journal names the model its engines used.

Usage: model_identity_resume.py --tessera BIN --workdir DIR   (exit 1 on failure)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kill_resume import MODEL, TILE, fail, journal_batches, kill_mid_tile, read, rerun, run  # noqa: E402

JAN_2024 = 1704067200  # 2024-01-01 00:00:00 UTC


def make_models(tessera, workdir):
    """Two look-alike models: same architecture, size and times, other weights."""
    paths = []
    for seed in ("42", "43"):
        path = os.path.join(workdir, "seed%s.onnx" % seed)
        run([tessera, "make-model", "-o", path, "--seed", seed] + MODEL["v1.0"])
        os.utime(path, (JAN_2024, JAN_2024))
        paths.append(path)
    if os.path.getsize(paths[0]) != os.path.getsize(paths[1]) or read(paths[0]) == read(paths[1]):
        fail("the two models are not look-alikes (same size, other bytes)")
    return paths


def look_alike(tessera, workdir, tile, models):
    model = os.path.join(workdir, "model.onnx")
    shutil.copy2(models[0], model)
    infer = [tessera, "infer", tile, "-m", model, "--layout", "2x1", "-b", "16"]
    reference = os.path.join(workdir, "reference_look_alike")
    run([tessera, "infer", tile, "-m", models[1], "--layout", "2x1", "-b", "16", "-o", reference])
    out = os.path.join(workdir, "out_look_alike")
    grid = os.path.basename(tile)
    finals = [os.path.join(out, grid + ".npy"), os.path.join(out, grid + "_scales.npy")]
    kill_mid_tile(infer + ["-o", out], os.path.join(out, grid + ".journal"), finals)
    shutil.copy2(models[1], model)  # same size and times as the first
    summary = os.path.join(workdir, "summary_look_alike.json")
    result = run(infer + ["-o", out, "--summary", summary])
    if "its journal was written with another model" not in result.stderr:
        fail("the rerun with a look-alike model did not say so: %r" % result.stderr)
    tile_summary = json.load(open(summary))["tiles"][0]
    if tile_summary["batches_resumed"] != 0:
        fail("%d batches of another model were resumed" % tile_summary["batches_resumed"])
    for path in finals:
        if read(path) != read(os.path.join(reference, os.path.basename(path))):
            fail("%s differs from a clean run of the model now at the path" % path)
    print("model_identity_resume: a look-alike model started the tile over, outputs identical")


def wait_for_batches(proc, journal, count):
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal_batches(journal) >= count:
            return
        time.sleep(0.01)
    fail("%s never listed %d batches (infer exit %s)" % (journal, count, proc.poll()))


def wait_for_file(proc, path):
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not os.path.exists(path):
        time.sleep(0.01)
    if not os.path.exists(path):
        fail("%s never appeared (infer exit %s)" % (path, proc.poll()))


def replaced_mid_job(tessera, workdir, tiles, models):
    model = os.path.join(workdir, "model_job.onnx")
    shutil.copy(models[0], model)
    out = os.path.join(workdir, "out_replaced")
    infer = [tessera, "infer"] + tiles + ["-m", model, "--layout", "2x1", "-b", "16", "-o", out]
    grids = [os.path.basename(t) for t in tiles]
    proc = subprocess.Popen(infer, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Once the first tile is done every worker has built its engine from the first model.
    wait_for_file(proc, os.path.join(out, grids[0] + "_scales.npy"))
    shutil.copy(models[1], model + ".new")
    os.replace(model + ".new", model)
    second = os.path.join(out, grids[1] + ".journal")
    finals = [os.path.join(out, grids[1] + ".npy"), os.path.join(out, grids[1] + "_scales.npy")]
    wait_for_batches(proc, second, 20)
    proc.kill()
    proc.wait()
    reference = os.path.join(workdir, "reference_replaced")
    run([tessera, "infer", tiles[1], "-m", models[1], "--layout", "2x1", "-b", "16",
         "-o", reference])
    summary = os.path.join(workdir, "summary_replaced.json")
    resumed, _ = rerun([tessera, "infer", tiles[1], "-m", model, "--layout", "2x1", "-b", "16",
                        "-o", out], summary, finals, reference)
    if resumed != 0:
        fail("%d batches computed with the replaced model were resumed" % resumed)
    print("model_identity_resume: a model replaced mid-job started the killed tile over, "
          "outputs identical")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--workdir", required=True)
    a = parser.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    models = make_models(a.tessera, a.workdir)
    tiles = []
    for number, grid in enumerate(("grid_12.35_45.65", "grid_12.45_45.65")):
        tiles.append(os.path.join(a.workdir, grid))
        run([a.tessera, "synth", "-o", tiles[-1]] + TILE + ["--seed", str(9 + number)])
    look_alike(a.tessera, a.workdir, tiles[0], models)
    replaced_mid_job(a.tessera, a.workdir, tiles, models)


if __name__ == "__main__":
    main()
