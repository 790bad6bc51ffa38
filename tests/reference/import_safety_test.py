#!/usr/bin/env python3
"""`tessera import` on hostile and malformed checkpoints (tools/read_checkpoint.py + the CLI).

Each case is one ctest entry (tests/model/tests.cmake, `import_<case>`):
  code_in_pickle       a pickle naming os.system / posix.system / builtins.eval is refused with
                       one line, and the command it names is not run (its marker file is absent)
  needs_no_torch       a valid checkpoint imports with a Python whose `import torch` would fail
                       (and leave a marker): the reader never imports PyTorch
  reader_dtypes        the reader's float32 values equal torch's for float32/float16/bfloat16/
                       float64 tensors, transposed and sliced views, from torch.save's files
  non_float_tensors    int64, int32, uint8, bool and complex64 tensors are refused by key + dtype
  nan_inf              NaN and infinite values are refused, naming the tensor
  shapes_before_values an expanded (stride-0) 12000 x 12000 tensor is refused by its own key
                       before any value is read: little memory, no temporary files left; one
                       of the right shape is refused when its values would be read
  transposed_key       a transposed dim_reducer.0.weight is blamed, not dim_reducer.0.bias
  interrupt            SIGINT to the process group (Ctrl-C) and SIGTERM to tessera while the
                       reader dumps: exit 130 / 143, no tessera-import-* left, no output, no reader
  non_string_key       a state dict with an int key: one line naming it
  legacy_format        the pre-1.6 non-zip format is refused (one line); --trust-pickle loads it
  namespace_args       a v2 checkpoint whose args are an argparse.Namespace, with numpy scalars
                       beside it, imports (read as plain values, no Namespace constructed)
Checkpoints are small v1.0 models from tools/tessera_torch.py saved with torch.save (torch 1.13 here).

Usage: import_safety_test.py --tessera BIN --workdir DIR --case NAME
Exit 0 pass, 1 fail, 77 skip (no torch in this Python to write the checkpoints).
"""

import argparse
import io
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile

try:
    import numpy as np
    import torch
except ImportError as error:
    print(f"SKIP: {error.name} is not installed for {sys.executable}")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import tessera_torch  # noqa: E402

READER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                      "read_checkpoint.py")
TRUST = "--trust-pickle loads it with PyTorch (runs code from the file)"
CONFIG = dict(arch="v1.0", d=32, layers=2, heads=4, ffn=64, latent=8)
FAILURES = []


def check(ok, label):
    print(("ok   " if ok else "FAIL ") + label)
    if not ok:
        FAILURES.append(label)


def state_dict(seed=1, config=CONFIG):
    module = tessera_torch.TesseraModel(config)
    tessera_torch.randomise(module, torch.Generator().manual_seed(seed))
    return {k: v.float() for k, v in module.state_dict().items()}


def run(args, cmd, env=None, **kwargs):
    return subprocess.run([args.tessera] + cmd, capture_output=True, text=True, env=env,
                          **kwargs)


def expect_error(args, label, ckpt, line, extra=()):
    out = os.path.join(args.workdir, "out.onnx")
    r = run(args, ["import", ckpt, "-o", out] + list(extra))
    check(r.returncode == 1 and r.stderr == f"tessera: {line}\n" and not os.path.exists(out),
          f"{label}: rc {r.returncode}, stderr {r.stderr!r}, output {os.path.exists(out)}")


# ---- hand-written archives in torch.save's layout ---------------------------------------------

def write_archive(path, pickle_bytes):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/version", "3\n")


def global_call(module, name, argument):
    """Protocol-2 pickle of {"model_state": {"w": module.name(argument)}}, written by opcode."""
    return (b"\x80\x02}X\x0b\x00\x00\x00model_state}X\x01\x00\x00\x00w" +
            f"c{module}\n{name}\n".encode() + b"X" + len(argument).to_bytes(4, "little") +
            argument.encode() + b"\x85Rss.")


class RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def case_code_in_pickle(args):
    marker = os.path.join(args.workdir, "ran")
    command = f"touch {marker}"
    cases = [("os", "system", command), ("builtins", "eval", f"__import__('os').system('{command}')")]
    for module, name, argument in cases:
        ckpt = os.path.join(args.workdir, f"{module}.pt")
        write_archive(ckpt, global_call(module, name, argument))
        expect_error(args, f"{module}.{name}", ckpt,
                     f"{ckpt}: holds an object of class {module}.{name}, beyond tensors and "
                     f"plain containers; {TRUST}")
        check(not os.path.exists(marker), f"{module}.{name}: the command was not run")
    ckpt = os.path.join(args.workdir, "reduce.pt")
    write_archive(ckpt, pickle.dumps({"model_state": {"w": RunsCommand(command)}}, protocol=2))
    expect_error(args, "__reduce__", ckpt,
                 f"{ckpt}: holds an object of class {os.system.__module__}.system, beyond "
                 f"tensors and plain containers; {TRUST}")
    check(not os.path.exists(marker), "__reduce__: the command was not run")
    # the same refusal when the call is nested in a real torch.save file's tensors
    buffer = io.BytesIO()
    torch.save({"model_state": state_dict(), "hook": RunsCommand(command)}, buffer)
    ckpt = os.path.join(args.workdir, "saved.pt")
    open(ckpt, "wb").write(buffer.getvalue())
    expect_error(args, "torch.save with a __reduce__", ckpt,
                 f"{ckpt}: holds an object of class {os.system.__module__}.system, beyond "
                 f"tensors and plain containers; {TRUST}")
    check(not os.path.exists(marker), "torch.save with a __reduce__: the command was not run")


def case_needs_no_torch(args):
    fake = os.path.join(args.workdir, "fake")
    os.makedirs(fake, exist_ok=True)
    marker = os.path.join(args.workdir, "torch-imported")
    open(os.path.join(fake, "torch.py"), "w").write(
        f"open({marker!r}, 'w').close()\nraise ImportError('torch is not for the reader')\n")
    ckpt = os.path.join(args.workdir, "v10.pt")
    torch.save({"model_state": state_dict()}, ckpt)
    out = os.path.join(args.workdir, "v10.onnx")
    env = dict(os.environ, PYTHONPATH=fake)
    r = run(args, ["import", ckpt, "-o", out], env=env)
    check(r.returncode == 0 and os.path.exists(out) and not os.path.exists(marker),
          f"import without torch: rc {r.returncode}, stderr {r.stderr.strip()!r}, "
          f"torch imported {os.path.exists(marker)}")
    r = run(args, ["import", ckpt, "-o", out, "--force", "--trust-pickle"], env=env)
    check(r.returncode == 1 and "cannot import torch: --trust-pickle loads the file with "
          "PyTorch" in r.stderr and r.stderr.count("\n") == 1,
          f"--trust-pickle without torch: rc {r.returncode}, stderr {r.stderr!r}")


def reader_values(args, ckpt):
    outdir = os.path.join(args.workdir, "dump")
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    r = subprocess.run([sys.executable, READER, ckpt, outdir], input="dump\n",
                       capture_output=True, text=True)
    if r.returncode != 0 or r.stdout.split() != ["index", "done"]:
        check(False, f"reader on {ckpt}: rc {r.returncode}, {r.stdout!r}, {r.stderr!r}")
        return {}, {}
    import json

    index = json.load(open(os.path.join(outdir, "index.json")))
    return ({t["key"]: np.load(os.path.join(outdir, t["file"])) for t in index["tensors"]},
            {t["key"]: t["dtype"] for t in index["tensors"]})


def case_reader_dtypes(args):
    g = torch.Generator().manual_seed(5)
    base = torch.randn(6, 10, generator=g) * 100
    tensors = {"f32": base, "f16": base.half(), "bf16": base.bfloat16(), "f64": base.double(),
               "transposed": base.t(), "sliced": base[1:4, 2:9:3], "half_view": base.half()[2:],
               "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
               "param": torch.nn.Parameter(base.bfloat16().t())}
    ckpt = os.path.join(args.workdir, "dtypes.pt")
    torch.save({"model_state": tensors}, ckpt)
    values, dtypes = reader_values(args, ckpt)
    for key, tensor in tensors.items():
        want = tensor.detach().float().numpy()
        got = values.get(key)
        ok = got is not None and got.dtype == np.float32 and got.shape == want.shape and \
            np.array_equal(got, want)
        check(ok, f"reader {key}: {dtypes.get(key)} {None if got is None else got.shape}")


def case_non_float_tensors(args):
    key = "dim_reducer.0.bias"
    for dtype, name in [(torch.int64, "int64"), (torch.int32, "int32"), (torch.uint8, "uint8"),
                        (torch.bool, "bool"), (torch.complex64, "complex64")]:
        state = state_dict()
        state[key] = state[key].to(dtype)
        ckpt = os.path.join(args.workdir, f"{name}.pt")
        torch.save({"model_state": state}, ckpt)
        expect_error(args, name, ckpt, f"{ckpt}: tensor {key} has dtype {name}; tessera imports "
                     "float16, bfloat16, float32 and float64 tensors only")


def case_nan_inf(args):
    for value, text in [(float("nan"), "holds NaN"), (float("inf"), "holds an infinite value"),
                        (-float("inf"), "holds an infinite value")]:
        state = state_dict()
        state["s1_backbone.embedding.0.weight"][3, 1] = value
        ckpt = os.path.join(args.workdir, "nonfinite.pt")
        torch.save({"model_state": state}, ckpt)
        expect_error(args, f"value {value}", ckpt,
                     f"{ckpt}: tensor s1_backbone.embedding.0.weight {text}")
    state = state_dict()
    state["dim_reducer.0.bias"] = state["dim_reducer.0.bias"].double()
    state["dim_reducer.0.bias"][2] = 1e300
    torch.save({"model_state": state}, ckpt)
    expect_error(args, "float64 beyond float32", ckpt,
                 f"{ckpt}: tensor dim_reducer.0.bias holds a value beyond the float32 range")


def case_shapes_before_values(args):
    state = state_dict()
    state["s2_backbone.embedding.2.weight"] = torch.zeros(1).expand(12000, 12000)
    ckpt = os.path.join(args.workdir, "expanded.pt")
    torch.save({"model_state": state}, ckpt)
    tmp = os.path.join(args.workdir, "tmp")
    os.makedirs(tmp, exist_ok=True)
    out = os.path.join(args.workdir, "out.onnx")
    start = time.monotonic()
    r = run(args, ["import", ckpt, "-o", out], env=dict(os.environ, TMPDIR=tmp))
    seconds = time.monotonic() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    check(r.returncode == 1 and r.stderr ==
          f"tessera: {ckpt}: key s2_backbone.embedding.2.weight has shape [12000, 12000], "
          "expected [32, 32]\n", f"expanded tensor: rc {r.returncode}, stderr {r.stderr!r}")
    check(peak_mb < 400, f"expanded tensor: peak memory of a process {peak_mb:.0f} MB "
          f"(< 400), {seconds:.1f} s")
    check(os.listdir(tmp) == [] and not os.path.exists(out),
          f"expanded tensor: left {os.listdir(tmp)} in TMPDIR, output {os.path.exists(out)}")
    state = state_dict()
    state["dim_reducer.0.bias"] = torch.zeros(1).expand(8)  # the right shape, one value repeated
    torch.save({"model_state": state}, ckpt)
    expect_error(args, "expanded tensor of the right shape", ckpt,
                 f"{ckpt}: tensor dim_reducer.0.bias repeats values of its storage (8 elements "
                 "over 1: a stride-0 view)")


def case_transposed_key(args):
    state = state_dict()
    state["dim_reducer.0.weight"] = state["dim_reducer.0.weight"].t().contiguous()
    ckpt = os.path.join(args.workdir, "transposed.pt")
    torch.save({"model_state": state}, ckpt)
    expect_error(args, "transposed weight", ckpt,
                 f"{ckpt}: key dim_reducer.0.weight has shape [64, 8], expected [8, 64]")


def reader_pids(ckpt):
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"read_checkpoint.py") for part in cmdline) and \
                ckpt.encode() in cmdline:
            pids.append(int(pid))
    return pids


def interrupt_once(args, ckpt, sig, group):
    tmp = os.path.join(args.workdir, f"tmp-{sig}")
    os.makedirs(tmp, exist_ok=True)
    out = os.path.join(args.workdir, "interrupted.onnx")
    proc = subprocess.Popen([args.tessera, "import", ckpt, "-o", out],
                            env=dict(os.environ, TMPDIR=tmp), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=group)
    dumping = False
    deadline = time.monotonic() + 60
    while not dumping and proc.poll() is None and time.monotonic() < deadline:
        for root, _, files in os.walk(tmp):
            dumping = dumping or any(f.endswith(".npy") for f in files)
        time.sleep(0.002)
    label = f"{signal.Signals(sig).name} to the {'group' if group else 'process'}"
    if group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    time.sleep(0.2)
    check(dumping, f"{label}: the signal came while the reader wrote values")
    check(proc.returncode == 128 + sig and
          err == f"tessera: import interrupted by {signal.Signals(sig).name}; nothing written\n",
          f"{label}: rc {proc.returncode}, stderr {err!r}")
    check(os.listdir(tmp) == [] and not os.path.exists(out) and not reader_pids(ckpt),
          f"{label}: left {os.listdir(tmp)}, output {os.path.exists(out)}, "
          f"reader processes {reader_pids(ckpt)}")


def case_interrupt(args):
    # the released v1.0 shapes (45.8 M parameters, 183 MB): the dump takes about a second
    config = dict(arch="v1.0", d=512, layers=8, heads=8, ffn=4096, latent=128)
    module = tessera_torch.TesseraModel(config)
    ckpt = os.path.join(args.workdir, "large.pt")
    torch.save({"model_state": module.state_dict()}, ckpt)
    interrupt_once(args, ckpt, signal.SIGINT, group=True)
    interrupt_once(args, ckpt, signal.SIGTERM, group=False)


def case_non_string_key(args):
    state = state_dict()
    state[3] = torch.zeros(2)
    ckpt = os.path.join(args.workdir, "intkey.pt")
    torch.save({"model_state": state}, ckpt)
    expect_error(args, "int key", ckpt, f"{ckpt}: key 3 is a int, not a string")


def case_legacy_format(args):
    ckpt = os.path.join(args.workdir, "legacy.pt")
    torch.save({"model_state": state_dict()}, ckpt, _use_new_zipfile_serialization=False)
    expect_error(args, "legacy format", ckpt, f"{ckpt}: is in PyTorch's legacy (non-zip) "
                 f"format, which this reader does not unpickle; {TRUST}")
    out = os.path.join(args.workdir, "legacy.onnx")
    r = run(args, ["import", ckpt, "-o", out, "--trust-pickle"])
    check(r.returncode == 0 and os.path.exists(out),
          f"legacy format with --trust-pickle: rc {r.returncode}, {r.stderr.strip()!r}")


def case_namespace_args(args):
    import argparse as ap

    config = dict(arch="v2", d=32, layers=2, heads=4, ffn=64, latent=128, hidden=128, width=128)
    module = tessera_torch.TesseraModel(config)
    namespace = ap.Namespace(latent_dim=8, num_layers=2, nhead=4, dim_feedforward=64,
                             repr_dim=128, enable_qk_norm=False, lr=np.float64(1e-3))
    ckpt = os.path.join(args.workdir, "namespace.pt")
    torch.save({"model": module.state_dict(), "args": namespace, "epoch": np.int64(5),
                "loss": np.float32(0.25)}, ckpt)
    out = os.path.join(args.workdir, "namespace.onnx")
    r = run(args, ["import", ckpt, "-o", out])
    check(r.returncode == 0 and "wrote " in r.stdout and "61,890 parameters" in r.stdout,
          f"v2 with Namespace args and numpy scalars: rc {r.returncode}, {r.stdout.strip()!r}, "
          f"{r.stderr.strip()!r}")


CASES = {name[5:]: f for name, f in globals().items() if name.startswith("case_")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    CASES[args.case](args)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    shutil.rmtree(args.workdir, ignore_errors=True)
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
