#!/usr/bin/python3
"""Kill test for `tessera infer`: SIGKILL mid-tile, rerun, outputs byte-identical.

1. An uninterrupted run writes the reference outputs.
2. A second run into another directory is killed with SIGKILL once its journal lists some
   finished batches (and well before the end); no file may then exist under a final name.
3. The same command again resumes from the journal (the summary says how many batches were
   resumed) and must end with outputs byte-identical to the reference, and no journal or
   .partial file left.
4. A run killed the same way, after which the tile is written again with other values (same
   name, size and valid pixels): the rerun must resume nothing and match a fresh run of the new
   tile.
5. With --other-precision P: a run killed the same way, then rerun at precision P: the rerun
   must say that the journal came from another precision, resume nothing, and match a fresh
   run at P.

With --arch v1.1 or v2 the model is of that version and the tile has varied observation counts
(synth --observations varied): the batches are length buckets, and the same must hold.

Usage: kill_resume.py --tessera BIN --workdir DIR [--engine E --precision P]
                      [--other-precision P2] [--arch v1.0|v1.1|v2]   (exit 1 on failure)
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

GRID = "grid_12.35_45.65"
# Every pixel valid (--nodata 0): a tile written again with another seed has the same valid count.
TILE = ["--size", "64x64", "--s2-steps", "45", "--nodata", "0"]
# Small models of each version (the same work per step as the v1.0 one).
MODEL = {
    "v1.0": ["--d-model", "64", "--layers", "2", "--heads", "2", "--ffn", "256"],
    "v1.1": ["--arch", "v1.1", "--stats", "mpc", "--d-model", "64", "--layers", "2", "--heads", "2",
             "--ffn", "256"],
    "v2": ["--arch", "v2", "--latent", "16", "--layers", "2", "--heads", "2", "--ffn", "256"],
}
# Bucketed versions: counts from 0 to 120 valid S2 observations, buckets of 8 to 120.
VARIED = ["--size", "64x64", "--s2-steps", "120", "--nodata", "0", "--observations", "varied"]


def fail(message):
    print("kill_resume: " + message, file=sys.stderr)
    sys.exit(1)


def run(args):
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        fail("%s failed (%d): %s" % (" ".join(args), result.returncode, result.stderr.strip()))
    return result


def read(path):
    with open(path, "rb") as f:
        return f.read()


def journal_batches(path):
    """How many batches the journal at `path` lists: 0 while it cannot be read (not yet made, gone
    with the finished tile) or its header line is still being written (a run writes the header,
    then one 4-byte record per batch)."""
    try:
        data = read(path)
    except OSError:
        return 0
    if b"\n" not in data:
        return 0
    return (len(data) - data.index(b"\n") - 1) // 4


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--engine", default="ort")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--other-precision")
    parser.add_argument("--arch", default="v1.0", choices=sorted(MODEL))
    a = parser.parse_args()
    tile_flags = VARIED if a.arch != "v1.0" else TILE
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    model = os.path.join(a.workdir, "model.onnx")
    tile = os.path.join(a.workdir, GRID)
    run([a.tessera, "make-model", "-o", model] + MODEL[a.arch])
    run([a.tessera, "synth", "-o", tile] + tile_flags + ["--seed", "9"])
    engine = ["--engine", a.engine]
    base = [a.tessera, "infer", tile, "-m", model, "--layout", "2x1", "-b", "16"] + engine
    infer = base + ["--precision", a.precision]

    reference = os.path.join(a.workdir, "reference")
    run(infer + ["-o", reference])

    out = os.path.join(a.workdir, "out")
    finals = [os.path.join(out, GRID + ".npy"), os.path.join(out, GRID + "_scales.npy")]
    done = kill_mid_tile(infer + ["-o", out], os.path.join(out, GRID + ".journal"), finals)
    check_journal_key(os.path.join(out, GRID + ".journal"), a, model)
    summary = os.path.join(a.workdir, "summary.json")
    resumed, total = rerun(infer + ["-o", out], summary, finals, reference)
    if resumed < done or resumed >= total:
        fail("resumed %d batches; the journal held %d of %d" % (resumed, done, total))
    left = sorted(os.listdir(out))
    # The lock stays, and the record of what made the outputs joins them.
    if left != sorted([GRID + ".lock", GRID + ".tessera.json"] + [os.path.basename(p) for p in finals]):
        fail("output directory holds %s" % left)
    print("kill_resume: killed after %d of %d batches, resumed %d, outputs identical" % (done, total, resumed))

    # The tile written again with other values under the same name: nothing may be resumed.
    out = os.path.join(a.workdir, "out_rewritten")
    finals = [os.path.join(out, GRID + ".npy"), os.path.join(out, GRID + "_scales.npy")]
    kill_mid_tile(infer + ["-o", out], os.path.join(out, GRID + ".journal"), finals)
    shutil.rmtree(tile)
    run([a.tessera, "synth", "-o", tile] + tile_flags + ["--seed", "10"])
    reference = os.path.join(a.workdir, "reference_rewritten")
    run(infer + ["-o", reference])
    resumed, total = rerun(infer + ["-o", out], summary, finals, reference)
    if resumed != 0:
        fail("resumed %d batches of another tile of the same name" % resumed)
    print("kill_resume: a rewritten tile of the same name started over, outputs identical")
    if a.other_precision:
        other_precision(a, infer, base + ["--precision", a.other_precision], summary)
    if a.arch == "v1.0" and a.engine == "ort":
        interrupted(a, infer, summary)
        earlier_default(a, infer, [a.tessera, "infer", tile, "-m", model, "--layout", "2x1", "-b", "16"],
                        summary)


def interrupted(a, infer, summary):
    """Ctrl-C (SIGINT) ends the run with status 130 and says how to go on; the same command then
    resumes and ends byte-identical to an uninterrupted run."""
    out = os.path.join(a.workdir, "out_interrupted")
    journal = os.path.join(out, GRID + ".journal")
    proc = subprocess.Popen(infer + ["-o", out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal_batches(journal) >= 20:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate()
    if proc.returncode != -signal.SIGINT:
        fail("an interrupted run ended with %s, not SIGINT's status" % proc.returncode)
    said = "tessera: interrupted: the finished batches are kept; run the same command again to resume"
    if said not in stderr:
        fail("an interrupted run did not say how to resume: %r" % stderr)
    finals = [os.path.join(out, GRID + ".npy"), os.path.join(out, GRID + "_scales.npy")]
    # The tile was written again (seed 10) above: reference_rewritten is its clean run.
    resumed, _ = rerun(infer + ["-o", out], summary, finals,
                       os.path.join(a.workdir, "reference_rewritten"))
    if resumed == 0:
        fail("the run after Ctrl-C resumed nothing")
    print("kill_resume: Ctrl-C said how to resume; the rerun resumed %d batches, outputs identical"
          % resumed)


def earlier_default(a, infer_ort, infer_default, summary):
    """A tile interrupted under ONNX Runtime (the default engine of earlier releases) is not
    resumed by a run with today's default engine (native on a CPU): the rerun says so in one line
    and starts the tile over, ending byte-identical to a fresh run of the default engine."""
    out = os.path.join(a.workdir, "out_earlier_default")
    finals = [os.path.join(out, GRID + ".npy"), os.path.join(out, GRID + "_scales.npy")]
    kill_mid_tile(infer_ort + ["-o", out], os.path.join(out, GRID + ".journal"), finals)
    reference = os.path.join(a.workdir, "reference_default")
    run(infer_default + ["-o", reference])
    if os.path.exists(summary):
        os.remove(summary)
    result = run(infer_default + ["-o", out, "--summary", summary])
    for said in ["tessera: engine: native fp32 (default: fastest fp32 engine here)\n",
                 "its journal was written by cpu:ort:fp32, this run computes with cpu:native:fp32: "
                 "starting the tile over\n"]:
        if said not in result.stderr:
            fail("the rerun with the default engine did not say %r: %r" % (said, result.stderr))
    doc = json.load(open(summary))
    if doc["engine"] != "native" or doc["tiles"][0]["batches_resumed"] != 0:
        fail("an ort journal was resumed by the default engine: %s, %d batches resumed"
             % (doc["engine"], doc["tiles"][0]["batches_resumed"]))
    for path in finals:
        if read(path) != read(os.path.join(reference, os.path.basename(path))):
            fail("%s differs from a fresh run of the default engine" % path)
    print("kill_resume: an ort journal was started over by the default (native) engine, "
          "outputs identical to a fresh run")


def other_precision(a, infer, infer_other, summary):
    """A journal written at one precision is not resumed at another: the rerun says so."""
    out = os.path.join(a.workdir, "out_other_precision")
    finals = [os.path.join(out, GRID + ".npy"), os.path.join(out, GRID + "_scales.npy")]
    kill_mid_tile(infer + ["-o", out], os.path.join(out, GRID + ".journal"), finals)
    reference = os.path.join(a.workdir, "reference_other_precision")
    run(infer_other + ["-o", reference])
    os.remove(summary)  # the earlier runs' (replaced only with --force)
    result = run(infer_other + ["-o", out, "--summary", summary])
    said = "its journal was written by cpu:%s:%s, this run computes with cpu:%s:%s: " \
           "starting the tile over" % (a.engine, a.precision, a.engine, a.other_precision)
    if said not in result.stderr:
        fail("the rerun at %s did not say so: %r" % (a.other_precision, result.stderr))
    if json.load(open(summary))["tiles"][0]["batches_resumed"] != 0:
        fail("batches of a %s run were resumed at %s" % (a.precision, a.other_precision))
    for path in finals:
        if read(path) != read(os.path.join(reference, os.path.basename(path))):
            fail("%s differs from a fresh run at %s" % (path, a.other_precision))
    print("kill_resume: a %s journal was not resumed at %s, outputs identical to a fresh run"
          % (a.precision, a.other_precision))


def check_journal_key(journal, a, model):
    """The journal's key is byte for byte the form earlier releases wrote (so that their journals
    resume): the fields in this order, the engines as <device>:<engine>:<precision>, the model as
    the SHA-256 of its file (computed here)."""
    key = read(journal).split(b"\n", 1)[0].decode()
    sha256 = hashlib.sha256(read(model)).hexdigest()
    pattern = (r"tessera-journal v5 grid=%s hw=64x64 valid=\d+ pipeline=v[0-9.]+/\S* latent=\d+ "
               r"batch=16 repeat=1 engines=cpu:%s:%s model_sha256=%s inputs=[0-9a-f]{16}"
               % (re.escape(GRID), a.engine, a.precision, sha256))
    if not re.fullmatch(pattern, key):
        fail("journal key %r is not of the form %r" % (key, pattern))


def kill_mid_tile(command, journal, finals):
    """Starts `command` and SIGKILLs it once its journal lists 20 batches; returns how many it
    lists then, after checking that only partial outputs exist."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal_batches(journal) >= 20:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        fail("infer finished before it could be killed (exit %s)" % proc.returncode)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for path in finals:
        if os.path.exists(path):
            fail("%s exists under its final name after the kill" % path)
    if not all(os.path.exists(p + ".partial") for p in finals):
        fail("the partial outputs were not left for the resume")
    return journal_batches(journal)


def rerun(command, summary, finals, reference):
    """Runs `command` to the end; its outputs must equal those in `reference`. Returns the
    summary's (batches resumed, batches)."""
    if os.path.exists(summary):
        os.remove(summary)  # an existing summary is replaced only with --force, which recomputes
    run(command + ["--summary", summary])
    tile = json.load(open(summary))["tiles"][0]
    for path in finals:
        if read(path) != read(os.path.join(reference, os.path.basename(path))):
            fail("%s differs from the uninterrupted run" % path)
    return tile["batches_resumed"], tile["batches"]


if __name__ == "__main__":
    main()
