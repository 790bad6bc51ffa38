#!/usr/bin/env python3
"""The Tessera model family against independent PyTorch modules (tools/tessera_torch.py).

make-model: small configs of each architecture (v1.0-early, v1.0, v1.1, v2, v2 with QK-norm)
are built with `tessera make-model --arch`, their initializers loaded into the torch modules
under the upstream key names (tessera_torch.state_from_initializers: model_builder.h's layouts,
Linear weights transposed), and ONNX Runtime's output through `tessera run-model --engine ort`
compared with the torch forward pass in float64 on random inputs: rel = max|ort - torch| / max|torch| <= 1e-4, at T = 8 and 13 for the
symbolic-step versions (8/13 and 13/8 for s2/s1). Also: metadata, the initializer count against
make-model's, and (unless --small-only) the parameter counts of the released shapes.

import: checkpoints in the upstream layouts are saved with torch.save from the torch modules
(random weights; v1.x under model_state with projector keys and an `_orig_mod.` prefix, v2 as
model + args; v1.0-early stored as float16, v2 as bfloat16, v2-qk as float64), imported with
`tessera import`, and checked against the torch forward the same way. Bad cases (unknown layout, v1.1 without --stats, a mis-shaped, missing and unexpected key,
an existing output, -o naming the input) must fail with one line on stderr and write nothing.

Usage: family_torch_test.py --tessera BIN --workdir DIR [--small-only]
Exit 0 pass, 1 fail, 77 skip (no torch in this Python).
"""

import argparse
import os
import shutil
import subprocess
import sys

try:
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper
except ImportError as error:
    print(f"SKIP: {error.name} is not installed for {sys.executable}")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import tessera_torch  # noqa: E402

TOLERANCE = 1e-4
STORED_DTYPE = {"v1.0-early": torch.float16, "v2": torch.bfloat16, "v2-qk": torch.float64}
RELEASED = {"v1.0-early": 87_841_922, "v1.0": 45_828_226, "v1.1": 57_708_738, "v2": 7_112_322}
FAILURES = []

# name, make-model arguments, torch config, step pairs to run
SMALL = [
    ("v1.0-early", ["--d-model", "32", "--layers", "2", "--heads", "8", "--ffn", "64",
                    "--latent", "8"],
     dict(arch="v1.0-early", d=32, layers=2, heads=8, ffn=64, latent=8), [(8, 13), (13, 8)]),
    ("v1.0", ["--d-model", "32", "--layers", "2", "--heads", "4", "--ffn", "64", "--latent", "8",
              "--s2-steps", "6", "--s1-steps", "5"],
     dict(arch="v1.0", d=32, layers=2, heads=4, ffn=64, latent=8), [(6, 5)]),
    ("v1.1", ["--d-model", "32", "--layers", "2", "--heads", "4", "--ffn", "64", "--latent", "6",
              "--stats", "mpc"],
     dict(arch="v1.1", d=32, layers=2, heads=4, ffn=64, latent=6, hidden=128, width=8),
     [(8, 13), (13, 8), (1, 8)]),
    ("v2", ["--latent", "8", "--layers", "2", "--heads", "4", "--ffn", "64"],
     dict(arch="v2", d=32, layers=2, heads=4, ffn=64, latent=128, hidden=128, width=128),
     [(8, 13), (13, 8), (1, 1)]),
    ("v2-qk", ["--latent", "8", "--layers", "2", "--heads", "4", "--ffn", "64", "--qk-norm"],
     dict(arch="v2", d=32, layers=2, heads=4, ffn=64, latent=128, hidden=128, width=128,
          qk_norm=True), [(8, 13), (13, 8)]),
]


def check(ok, message):
    print(("ok    " if ok else "FAIL  ") + message)
    if not ok:
        FAILURES.append(message)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def state_from_onnx(path, qk):
    initializers = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    return tessera_torch.state_from_initializers(initializers, qk)


def inputs(rng, batch, t2, t1):
    s2 = np.concatenate([rng.normal(size=(batch, t2, 10)),
                         rng.integers(1, 367, size=(batch, t2, 1))], axis=2).astype(np.float32)
    s1 = np.concatenate([rng.normal(size=(batch, t1, 2)),
                         rng.integers(1, 367, size=(batch, t1, 1))], axis=2).astype(np.float32)
    return s2, s1


def agree(args, model_path, module, steps, label, rng):
    module = module.double().eval()
    for t2, t1 in steps:
        s2, s1 = inputs(rng, 4, t2, t1)
        d = os.path.join(args.workdir, "io")
        os.makedirs(d, exist_ok=True)
        np.save(f"{d}/s2.npy", s2)
        np.save(f"{d}/s1.npy", s1)
        r = run([args.tessera, "run-model", "-m", model_path, "--s2", f"{d}/s2.npy", "--s1",
                 f"{d}/s1.npy", "-o", f"{d}/out.npy", "--engine", "ort", "--force"])
        if r.returncode != 0:
            check(False, f"{label} T={t2}/{t1}: run-model failed: {r.stderr.strip()}")
            continue
        ort = np.load(f"{d}/out.npy").astype(np.float64)
        with torch.no_grad():
            ref = module(torch.from_numpy(s2).double(), torch.from_numpy(s1).double()).numpy()
        rel = float(np.abs(ort - ref).max() / np.abs(ref).max()) if ort.shape == ref.shape else 1.0
        check(ort.shape == ref.shape and rel <= TOLERANCE,
              f"{label} T={t2}/{t1}: shape {ort.shape}, rel {rel:.2e} (<= {TOLERANCE})")


def metadata(path):
    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


def make_model_checks(args, rng):
    for name, flags, config, steps in SMALL:
        path = os.path.join(args.workdir, f"{name}.onnx")
        arch = config["arch"]
        r = run([args.tessera, "make-model", "--arch", arch, "-o", path, "--force"] + flags)
        if r.returncode != 0:
            check(False, f"make-model {name}: {r.stderr.strip()}")
            continue
        meta = metadata(path)
        check(meta.get("tessera.version", "v1.0") == arch,
              f"make-model {name}: tessera.version {meta.get('tessera.version')}")
        printed = int(r.stdout.split(" parameters")[0].split()[-1].replace(",", ""))
        model = onnx.load(path)
        count = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        check(count == printed, f"make-model {name}: {count} initializer floats, printed {printed}")
        module = tessera_torch.TesseraModel(config)
        module.load_state_dict(state_from_onnx(path, config.get("qk_norm", False)), strict=True)
        agree(args, path, module, steps, f"make-model {name}", rng)


def released_counts(args):
    for arch, expected in RELEASED.items():
        path = os.path.join(args.workdir, f"released-{arch}.onnx")
        stats = ["--stats", "mpc"] if arch == "v1.1" else []
        r = run([args.tessera, "make-model", "--arch", arch, "-o", path, "--force"] + stats)
        if r.returncode != 0:
            check(False, f"make-model --arch {arch}: {r.stderr.strip()}")
            continue
        model = onnx.load(path)
        count = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        check(count == expected, f"released {arch}: {count:,} parameters (want {expected:,})")
        os.remove(path)


def save_checkpoint(path, module, config, mangle=None, dtype=torch.float32):
    state = {k: v.to(dtype) for k, v in module.state_dict().items()}
    if config["arch"] == "v2":
        args = {"latent_dim": config["d"] // 4, "num_layers": config["layers"],
                "nhead": config["heads"], "dim_feedforward": config["ffn"], "repr_dim": 128,
                "enable_qk_norm": config.get("qk_norm", False), "matryoshka_dims": "16,32,64,128"}
        payload = {"model": state, "args": args}
    else:
        state = {("_orig_mod." + k if k.startswith("s1_") else k): v for k, v in state.items()}
        state["projector.net.0.weight"] = torch.zeros(16, 8)
        state["projector.net.1.num_batches_tracked"] = torch.tensor(3)
        payload = {"model_state": state, "epoch": 7}
    if mangle:
        mangle(payload)
    torch.save(payload, path)


def import_checks(args, rng):
    generator = torch.Generator().manual_seed(7)
    for name, _, config, steps in SMALL:
        if config["arch"] == "v1.0":
            steps = [(40, 40)]  # an imported v1.0 keeps the release's 40 fixed steps
        if config["arch"] == "v1.1":
            config = dict(config, latent=min(128, config["width"]))  # what upstream keeps
        module = tessera_torch.TesseraModel(config)
        tessera_torch.randomise(module, generator)
        # fp16 and bf16 checkpoints too: the module keeps the rounded weights it was saved with
        dtype = STORED_DTYPE.get(name, torch.float32)
        with torch.no_grad():
            for tensor in module.state_dict().values():
                tensor.copy_(tensor.to(dtype).float())
        ckpt = os.path.join(args.workdir, f"{name}.pt")
        out = os.path.join(args.workdir, f"{name}-imported.onnx")
        save_checkpoint(ckpt, module, config, dtype=dtype)
        extra = ["--stats", "aws"] if config["arch"] == "v1.1" else []
        r = run([args.tessera, "import", ckpt, "-o", out, "--force"] + extra)
        if r.returncode != 0:
            check(False, f"import {name}: {r.stderr.strip()}")
            continue
        meta = metadata(out)
        check(meta.get("tessera.version", "v1.0") == config["arch"] and
              meta.get("tessera.checkpoint") == os.path.basename(ckpt),
              f"import {name}: version {meta.get('tessera.version', 'v1.0')}, checkpoint "
              f"{meta.get('tessera.checkpoint')}, stats {meta.get('tessera.stats')!r}")
        agree(args, out, module, steps, f"import {name}", rng)


def expect_failure(args, label, cmd, needle, output, existed=False):
    before = open(output, "rb").read() if existed else None
    r = run(cmd)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    unchanged = (open(output, "rb").read() == before) if existed else not os.path.exists(output)
    check(r.returncode != 0 and len(lines) == 1 and needle in lines[0] and unchanged,
          f"bad case {label}: rc {r.returncode}, stderr {lines}, output untouched {unchanged}")


def bad_cases(args):
    w = args.workdir
    config = dict(arch="v1.1", d=32, layers=2, heads=4, ffn=64, latent=6, hidden=128, width=8)
    module = tessera_torch.TesseraModel(config)
    out = os.path.join(w, "bad.onnx")
    if os.path.exists(out):
        os.remove(out)
    base = [args.tessera, "import"]
    torch.save({"weights": module.state_dict()}, f"{w}/unknown.pt")
    expect_failure(args, "unknown layout", base + [f"{w}/unknown.pt", "-o", out],
                   "unknown checkpoint layout", out)
    save_checkpoint(f"{w}/v11.pt", module, config)
    expect_failure(args, "v1.1 without --stats", base + [f"{w}/v11.pt", "-o", out],
                   "needs --stats mpc or --stats aws", out)

    def misshape(p):
        p["model_state"]["dim_reducer.1.bias"] = torch.zeros(127)

    save_checkpoint(f"{w}/shape.pt", module, config, misshape)
    expect_failure(args, "mis-shaped key", base + [f"{w}/shape.pt", "-o", out, "--stats", "mpc"],
                   "key dim_reducer.1.bias has shape [127], expected [128]", out)
    save_checkpoint(f"{w}/missing.pt", module, config,
                    lambda p: p["model_state"].pop("dim_reducer.4.bias"))
    expect_failure(args, "missing key", base + [f"{w}/missing.pt", "-o", out, "--stats", "mpc"],
                   "missing key dim_reducer.4.bias", out)
    save_checkpoint(f"{w}/extra.pt", module, config,
                    lambda p: p["model_state"].__setitem__("dim_reducer.9.weight",
                                                           torch.zeros(2)))
    expect_failure(args, "unexpected key", base + [f"{w}/extra.pt", "-o", out, "--stats", "mpc"],
                   "unexpected key dim_reducer.9.weight", out)
    open(out, "wb").write(b"keep me")
    expect_failure(args, "existing output", base + [f"{w}/v11.pt", "-o", out, "--stats", "mpc"],
                   "already exists (use --force to overwrite)", out, existed=True)
    expect_failure(args, "output is the input",
                   base + [f"{w}/v11.pt", "-o", f"{w}/v11.pt", "--stats", "mpc", "--force"],
                   "is also an input of this command", f"{w}/v11.pt", existed=True)
    os.remove(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--small-only", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    make_model_checks(args, rng)
    import_checks(args, rng)
    bad_cases(args)
    if not args.small_only:
        released_counts(args)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    shutil.rmtree(args.workdir, ignore_errors=True)
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
