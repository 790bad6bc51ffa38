#!/usr/bin/python3
"""Every command in README.md and docs/*.md runs as written, at small sizes.

Each file's ```sh blocks are run in a fresh copy of a small workspace, every command one after
another as a reader following the file would (later examples use what earlier ones wrote), with
bash, from the workspace:
- `build/tessera` and `tessera` are the binary under test;
- the built-in model (TESSERA_MODEL_DIR) and the model files the docs name (v1_1_mpc.onnx,
  v2_large.onnx, m128.onnx) are small models of the same versions, made by make-model;
- the inputs the docs assume exist (tile_list.txt, s2.npy, s1.npy, retiled_d_pixel/, and for the
  files after README.md its quick start's tile) are there, and data/ is the checkout's;
- tile sizes, budgets and batch counts are made small (SMALLER), nothing else is changed.
A command must exit 0. The commands that cannot run here are listed in NOT_RUN with the reason
and the test that covers them instead; a command in neither group fails the test, so a new
example in the docs is either run or explained.

Usage: doc_commands_test.py --tessera BIN --source DIR --workdir DIR   (exit 1 on failure)
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np

# (pattern, reason): a command matching the pattern is not run here, for that reason.
NOT_RUN = [
    (r"^(TESSERA_SANITIZERS=0 )?bash scripts/(test|demo|build|setup)\.sh",
     "the set-up and build scripts themselves: CI runs scripts/test.sh (setup.sh, build.sh) "
     "from a fresh clone"),
    (r"^(cmake -S |cmake --build |ctest )",
     "the plain CMake build: CI configures, builds and tests with these lines (scripts/build.sh, "
     "scripts/test.sh)"),
    (r"scripts/(performance|engines_performance)\.sh",
     "the full measurement scripts (tens of minutes on the full model)"),
    (r"^(cmake --install|/opt/tessera/)",
     "installing: cli_install_relocatable installs into a temporary prefix and runs the tree"),
    (r" import \S+\.pt ",
     "needs a released checkpoint: import_* and model_family_torch import checkpoints of "
     "every version's layout"),
    (r"^(mpirun|srun) ", "MPI launchers: mpi_infer_* run the same job under mpirun"),
    (r"^gdalinfo out/demo/", "opens the demo's GeoTIFF (bash scripts/demo.sh writes it); "
     "geotiff_cli_infer opens GeoTIFFs infer writes the same way with GDAL"),
    (r"torch_peer\.py|torch\.json", "the PyTorch peer: torch_peer_* run it"),
    (r"^build/tessera export (geotessera/npy/|upstream_v2/)",
     "needs geotessera's downloads or upstream v2's outputs: geo_zone_store_export_upstream "
     "exports hand-made files in those layouts"),
]
# Files whose every command is for another machine.
NOT_RUN_FILES = {"docs/GPU.md": "commands for the lent GPU machine (scripts/gpu_check.sh)"}

# Sizes that would take minutes on this machine, made small; nothing else is changed.
SMALLER = [
    (r"--size (256x256|512x512)", "--size 12x10"),
    (r"--size 32x32", "--size 8x8"),
    (r"--budget (120s|300)", "--budget 6s"),
    (r"--batches 150", "--batches 4"),
    (r"--batches 16", "--batches 4"),
]

SMALL_V10 = ["--d-model", "32", "--layers", "1", "--heads", "2", "--ffn", "64"]


def fail(message):
    print("doc_commands: " + message, file=sys.stderr)
    sys.exit(1)


def commands_by_file(source):
    """(file, [command, ...]) for every file, the commands of its ```sh blocks in order,
    continuation lines joined."""
    found = []
    files = ["README.md"] + sorted(os.path.relpath(p, source)
                                   for p in glob.glob(os.path.join(source, "docs", "*.md")))
    for name in files:
        text = open(os.path.join(source, name)).read()
        commands = []
        for block in re.findall(r"```(?:sh|bash)\n(.*?)```", text, re.S):
            pending = ""
            for line in block.splitlines():
                if pending:
                    line = pending + " " + line.strip()
                    pending = ""
                if line.rstrip().endswith("\\"):
                    pending = line.rstrip()[:-1].rstrip()
                    continue
                if line.strip() and not line.strip().startswith("#"):
                    commands.append(line.strip())
        found.append((name, commands))
    return found


def reason_not_run(name, command):
    if name in NOT_RUN_FILES:
        return NOT_RUN_FILES[name]
    for pattern, reason in NOT_RUN:
        if re.search(pattern, command):
            return reason
    return None


def run(args, cwd=None, env=None):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        fail("%s failed (%d): %s" % (" ".join(args), result.returncode, result.stderr.strip()))


def make_workspace(tessera, source, root):
    """The files the docs' examples assume; returns the environment to run them with."""
    os.makedirs(os.path.join(root, "build"))
    os.symlink(os.path.join(source, "data"), os.path.join(root, "data"))
    os.makedirs(os.path.join(root, "bin"))
    os.symlink(tessera, os.path.join(root, "build", "tessera"))
    os.symlink(tessera, os.path.join(root, "bin", "tessera"))
    models = os.path.join(root, ".models")
    os.makedirs(models)
    run([tessera, "make-model", "-o", os.path.join(models, "tessera-v1.0-seed42.onnx")] + SMALL_V10)
    run([tessera, "make-model", "-o", os.path.join(root, "m128.onnx")] + SMALL_V10)
    run([tessera, "make-model", "--arch", "v1.1", "--stats", "mpc", "-o",
         os.path.join(root, "v1_1_mpc.onnx"), "--d-model", "32", "--layers", "1", "--heads", "2",
         "--ffn", "64"])
    run([tessera, "make-model", "--arch", "v2", "--latent", "8", "--layers", "1", "--heads", "2",
         "--ffn", "64", "-o", os.path.join(root, "v2_large.onnx")])
    run([tessera, "synth", "-o", os.path.join(root, "listed", "grid_0.25_51.55"), "--size", "6x5",
         "--s2-steps", "12", "--s1-steps", "4/4"])
    with open(os.path.join(root, "tile_list.txt"), "w") as out:
        out.write("listed/grid_0.25_51.55\n")
    run([tessera, "synth", "-o", os.path.join(root, "retiled_d_pixel", "0_0_500_500"), "--size",
         "6x5", "--s2-steps", "30", "--observations", "varied"])
    rng = np.random.default_rng(1)
    np.save(os.path.join(root, "s2.npy"), rng.standard_normal((3, 13, 11)).astype(np.float32))
    np.save(os.path.join(root, "s1.npy"), rng.standard_normal((3, 8, 3)).astype(np.float32))
    env = dict(os.environ)
    env["PATH"] = os.path.join(root, "bin") + os.pathsep + env["PATH"]
    env["TESSERA_MODEL_DIR"] = models
    return env


def smaller(command):
    for pattern, replacement in SMALLER:
        command = re.sub(pattern, replacement, command)
    return command


def run_file(workspace, env, workdir, index, name, commands):
    """Runs one file's commands in a copy of the workspace; returns the failures."""
    here = os.path.join(workdir, "file%02d" % index)
    shutil.copytree(workspace, here, symlinks=True)
    if name != "README.md":  # the README's quick start has been followed
        run([os.path.join(here, "build", "tessera"), "synth", "-o",
             os.path.join(here, "tiles", "grid_0.05_51.55"), "--size", "6x5"])
    failures = []
    for command in commands:
        reason = reason_not_run(name, command)
        if reason:
            print("not run  %s: %s\n         (%s)" % (name, command, reason))
            continue
        small = smaller(command)
        result = subprocess.run(["bash", "-c", small], cwd=here, env=env, capture_output=True,
                                text=True, timeout=300)
        status = "ok" if result.returncode == 0 else "FAILED"
        print("%-8s %s: %s" % (status, name, small))
        if result.returncode != 0:
            failures.append("%s: `%s` exited %d: %s" % (name, small, result.returncode,
                                                       result.stderr.strip()[-400:]))
    shutil.rmtree(here, ignore_errors=True)
    return failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--workdir", required=True)
    a = parser.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    workspace = os.path.join(a.workdir, "workspace")
    os.makedirs(workspace)
    env = make_workspace(os.path.abspath(a.tessera), os.path.abspath(a.source), workspace)
    failures, ran = [], 0
    for index, (name, commands) in enumerate(commands_by_file(a.source)):
        failures += run_file(workspace, env, a.workdir, index, name, commands)
        ran += sum(1 for c in commands if not reason_not_run(name, c))
    if failures:
        fail("%d of %d commands failed:\n%s" % (len(failures), ran, "\n".join(failures)))
    print("doc_commands: all %d commands that can run here ran" % ran)


if __name__ == "__main__":
    main()
