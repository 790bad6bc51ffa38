#!/usr/bin/python3
"""`tessera infer` under mpirun: byte-identical to one process, and a SIGKILL'd rank recovers.

identical: 5 synthetic tiles, one-process run into ref/, then
           `mpirun -n 3 --oversubscribe tessera infer --tiles DIR` into out/; every output
           byte-identical, every tile handed out exactly once, per-rank totals add up.
kill:      6 bigger tiles; SIGKILL rank 1 once a journal shows a tile half done; mpirun must
           stop the job, no file under a final name may differ from the reference; the same
           command again skips the finished tiles, resumes the partial ones from their journals
           and ends with every output byte-identical and no .partial or journal left.

split:     `mpirun -n 2 --bind-to none`: both ranks see every CPU of the host; they must split
           them by cores (disjoint placements that cover the CPUs) and say so on stderr, and
           the outputs must equal the one-process run.

Usage: mpi_infer.py --case identical|kill|split --tessera BIN --workdir DIR --mpi ON|OFF [--mpirun PATH]
Exit 0 pass, 1 fail, 77 skipped (built without MPI, or no mpirun).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runtime"))
from kill_resume import journal_batches  # noqa: E402

SKIP = 77
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")


def fail(message):
    print("mpi_infer: " + message, file=sys.stderr)
    sys.exit(1)


def run(args, check=True):
    result = subprocess.run(args, capture_output=True, text=True, env=ENV)
    if check and result.returncode != 0:
        fail("%s failed (%d): %s" % (" ".join(args), result.returncode, result.stderr.strip()))
    return result


def read(path):
    with open(path, "rb") as f:
        return f.read()


def make_tiles(tessera, workdir, count, size, steps):
    tiles = os.path.join(workdir, "tiles")
    os.makedirs(tiles)
    for i in range(count):
        run([tessera, "synth", "-o", os.path.join(tiles, "grid_%d.05_45.15" % (i + 10)),
             "--size", size, "--s2-steps", str(steps), "--s1-steps", "6", "--seed", str(i + 1)])
    return tiles


def compare_dirs(reference, out):
    """Every reference output exists in out with the same bytes; nothing else is there."""
    want = sorted(os.listdir(reference))
    have = sorted(os.listdir(out))
    if have != want:
        fail("%s holds %s, expected %s" % (out, have, want))
    for name in want:
        if name.endswith(".tessera.json"):  # records: the same but for when each was written
            same = without_time(os.path.join(out, name)) == without_time(os.path.join(reference, name))
        else:
            same = read(os.path.join(out, name)) == read(os.path.join(reference, name))
        if not same:
            fail("%s differs from the one-process run" % os.path.join(out, name))


def without_time(path):
    record = json.load(open(path))
    record.pop("created")
    return record


def descendants(root):
    """Pids of every process below `root`, from /proc."""
    parent = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
            parent[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            pass
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, pp in parent.items() if pp == pid]
        found += children
        frontier += children
    return found


def rank_pid(root, rank):
    for pid in descendants(root):
        try:
            environ = read("/proc/%d/environ" % pid).split(b"\0")
        except OSError:
            continue
        if ("OMPI_COMM_WORLD_RANK=%d" % rank).encode() in environ:
            return pid
    return None


def model_and_reference(a, tiles, infer_options):
    """A small model, and the outputs of one process running `tiles` with it into ref/.
    Returns (model, reference directory)."""
    model = os.path.join(a.workdir, "m.onnx")
    run([a.tessera, "make-model", "-o", model, "--d-model", "32", "--layers", "1", "--heads", "2",
         "--ffn", "64"])
    reference = os.path.join(a.workdir, "ref")
    run([a.tessera, "infer", "--tiles", tiles, "-o", reference, "-m", model] + infer_options)
    return model, reference


def case_identical(a, mpirun):
    tiles = make_tiles(a.tessera, a.workdir, 5, "12x10", 20)
    model, reference = model_and_reference(a, tiles, ["--layout", "1x1"])
    if len(os.listdir(reference)) != 20:  # each tile: two outputs, their record and its lock file
        fail("the one-process run wrote %s" % sorted(os.listdir(reference)))
    out = os.path.join(a.workdir, "out")
    summary = os.path.join(a.workdir, "summary.json")
    result = run([mpirun, "--oversubscribe", "-n", "3", a.tessera, "infer", "--tiles", tiles,
                  "-o", out, "-m", model, "--layout", "1x1", "--summary", summary])
    compare_dirs(reference, out)
    s = json.load(open(summary))
    ranks = [t["rank"] for t in s["tiles"]]
    grids = [t["grid"] for t in s["tiles"]]
    if grids != sorted(os.listdir(tiles)):
        fail("summary tiles %s, expected %s" % (grids, sorted(os.listdir(tiles))))
    if len(s["ranks"]) != 3 or [r["rank"] for r in s["ranks"]] != [0, 1, 2]:
        fail("summary ranks %s" % s["ranks"])
    for r in s["ranks"]:
        if r["tiles_done"] != ranks.count(r["rank"]):
            fail("rank %d reports %d tiles, ran %d" % (r["rank"], r["tiles_done"], ranks.count(r["rank"])))
    total = s["total"]
    if total["tiles_done"] != 5 or total["pixels_valid"] != s["pixels_valid"]:
        fail("total %s" % total)
    lines = [line for line in result.stdout.splitlines() if line.startswith("[rank ")]
    if len(lines) != 5:
        fail("expected 5 '[rank r]' tile lines, got:\n" + result.stdout)
    print("mpi_infer identical: 5 tiles over 3 ranks (tiles per rank %s), outputs identical"
          % [ranks.count(r) for r in range(3)])


def open_files(pid):
    """Paths of the files process `pid` holds open (empty if it is gone)."""
    paths = []
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                paths.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except OSError:
                pass
    except OSError:
        pass
    return paths


def case_kill(a, mpirun):
    tiles = make_tiles(a.tessera, a.workdir, 6, "24x24", 24)
    model, reference = model_and_reference(a, tiles, ["--layout", "1x1", "-b", "8"])
    common = ["--tiles", tiles, "-m", model, "--layout", "1x1", "-b", "8"]

    out = os.path.join(a.workdir, "out")
    command = [mpirun, "--oversubscribe", "-n", "3", a.tessera, "infer", "-o", out] + common
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV,
                            text=True)
    deadline = time.time() + 60
    victim = None
    while time.time() < deadline and proc.poll() is None:
        # Kill rank 1 once the tile it is working on (the journal it holds open) has 8
        # finished batches, so the rerun has something to resume.
        pid = rank_pid(proc.pid, 1)
        if pid and any(path.endswith(".journal") and journal_batches(path) >= 8 for path in open_files(pid)):
            victim = pid
            break
        time.sleep(0.01)
    if victim is None:
        proc.kill()
        proc.wait()
        fail("no rank 1 mid-tile to kill (mpirun exit %s)" % proc.poll())
    os.kill(victim, signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("mpirun did not stop the job after rank 1 was killed")
    if proc.returncode == 0:
        fail("mpirun exited 0 although rank 1 was killed")
    finished = [n for n in os.listdir(out) if n.endswith(".npy")]
    partial = [n for n in os.listdir(out) if n.endswith(".partial")]
    for name in finished:  # a final name always holds a complete, correct file
        if read(os.path.join(out, name)) != read(os.path.join(reference, name)):
            fail("%s exists under its final name but differs from the reference" % name)
    if not partial:
        fail("the kill left no partial tile to resume")

    summary = os.path.join(a.workdir, "summary.json")
    run(command + ["--summary", summary])
    compare_dirs(reference, out)
    s = json.load(open(summary))
    skipped = sum(1 for t in s["tiles"] if t["status"] == "skipped")
    resumed = sum(t.get("batches_resumed", 0) for t in s["tiles"])
    if skipped != len(finished) // 2:
        fail("rerun skipped %d tiles; %d were finished" % (skipped, len(finished) // 2))
    if resumed <= 0:
        fail("rerun resumed no batches although %d partial files were left" % len(partial))
    print("mpi_infer kill: rank 1 killed with %d tiles finished and %d partial files; rerun "
          "skipped %d, resumed %d batches, outputs identical" % (len(finished) // 2, len(partial),
                                                                  skipped, resumed))


def cpus_of(placement):
    """The set of CPUs in a placement string such as 'core: 2x1 on cpus 0-1,4'."""
    cpus = set()
    for part in placement.split("on cpus ")[1].split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def case_split(a, mpirun):
    tiles = make_tiles(a.tessera, a.workdir, 3, "12x10", 20)
    model, reference = model_and_reference(a, tiles, [])
    # One CPU of each core, as plans list them.
    single = json.loads(run([a.tessera, "topo", "--format", "json", "--plan", "single"]).stdout)
    everything = set(single["plan"]["workers"][0]["cpus"])
    if len(everything) < 2:
        print("mpi_infer split: skipped, one core cannot be split between two ranks")
        sys.exit(SKIP)
    out = os.path.join(a.workdir, "out")
    summary = os.path.join(a.workdir, "summary.json")
    result = run([mpirun, "-n", "2", "--bind-to", "none", a.tessera, "infer", "--tiles", tiles,
                  "-o", out, "-m", model, "--summary", summary])
    compare_dirs(reference, out)
    placements = [r["placement"] for r in json.load(open(summary))["ranks"]]
    sets = [cpus_of(p) for p in placements]
    if sets[0] & sets[1] or sets[0] | sets[1] != everything:
        fail("placements %s do not split cpus %s" % (placements, sorted(everything)))
    notes = [line for line in result.stderr.splitlines() if "this one uses cpus" in line]
    if len(notes) != 2:
        fail("expected one note per rank about the split, got:\n" + result.stderr)
    # A layout sized for the whole host does not fit a rank's part: the ranks keep all the CPUs.
    whole = "%dx1" % len(everything)
    out_whole = os.path.join(a.workdir, "out_whole")
    os.remove(summary)  # the first run's (replaced only with --force)
    result = run([mpirun, "-n", "2", "--bind-to", "none", a.tessera, "infer", "--tiles", tiles,
                  "-o", out_whole, "-m", model, "--layout", whole, "--summary", summary])
    compare_dirs(reference, out_whole)
    placements = [r["placement"] for r in json.load(open(summary))["ranks"]]
    if any(cpus_of(p) != everything for p in placements):
        fail("layout %s: placements %s, expected all of %s" % (whole, placements, sorted(everything)))
    if sum("does not fit this rank's part" in line for line in result.stderr.splitlines()) != 2:
        fail("expected one warning per rank about layout %s, got:\n%s" % (whole, result.stderr))
    print("mpi_infer split: two ranks bound to the same cpus split them; %s keeps them all" % whole)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=["identical", "kill", "split"], required=True)
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--mpi", default="OFF")
    parser.add_argument("--mpirun", default="")
    a = parser.parse_args()
    if a.mpi.upper() not in ("ON", "1", "TRUE", "YES"):
        print("mpi_infer: skipped, tessera was built without MPI")
        return SKIP
    mpirun = a.mpirun if a.mpirun and os.path.exists(a.mpirun) else shutil.which("mpirun")
    if not mpirun:
        print("mpi_infer: skipped, no mpirun on this machine")
        return SKIP
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    {"identical": case_identical, "kill": case_kill, "split": case_split}[a.case](a, mpirun)
    return 0


if __name__ == "__main__":
    sys.exit(main())
