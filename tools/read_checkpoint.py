#!/usr/bin/env python3
"""Dumps the tensors of a Tessera PyTorch checkpoint for `tessera import`.

Usage: read_checkpoint.py CKPT OUTDIR [--skip-prefix P]... [--trust-pickle]

Writes OUTDIR/index.json:
  {"layout": "model_state" | "model_state_dict" | "model" | "unknown",
   "top_level": [top-level keys of the file],
   "args": {name: text} (v2's payload["args"], else {}),
   "tensors": [{"key": KEY, "shape": [...], "file": "tNNNNN.npy"}, ...],
   "skipped": [keys not dumped]}
and one float32 .npy per tensor. Keys whose name, with every "_orig_mod." removed, starts with
a --skip-prefix are listed in "skipped" without being read (the projection heads, ~1 GB each).
The choice of layout and every check of keys and shapes is tessera's (checkpoint_import.h).

The file is unpickled with torch.load(weights_only=True) (tensors and plain containers only);
--trust-pickle loads it fully, which runs code the file names: only for files you trust.
Exit status: 0 done; 2 error (one line on stderr); 3 PyTorch or numpy missing.
"""

import argparse
import json
import os
import sys


def fail(message, status=2):
    sys.stderr.write(message + "\n")
    sys.exit(status)


def load(path, trust):
    import torch

    try:
        if trust:
            return torch.load(path, map_location="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except Exception as error:  # torch raises many types for a bad file: one line for all
        text = str(error).strip().splitlines()
        first = text[0] if text else type(error).__name__
        if not trust and "Unsupported class" in str(error):
            name = str(error).split("Unsupported class", 1)[1].strip()
            fail(f"{path}: holds an object of class {name}, beyond tensors and plain containers; "
                 "--trust-pickle loads it fully (runs code from the file)")
        if "WeightsUnpickler error:" in str(error):
            first = str(error).split("WeightsUnpickler error:", 1)[1].strip()
        fail(f"{path}: not a readable PyTorch checkpoint ({first})")


def layout_of(payload):
    if not isinstance(payload, dict):
        return "unknown", None, {}
    if "model" in payload and "args" in payload:
        args = payload["args"]
        if not isinstance(args, dict):
            args = vars(args) if hasattr(args, "__dict__") else {}
        return "model", payload["model"], args
    for name in ("model_state", "model_state_dict"):
        if name in payload:
            return name, payload[name], {}
    return "unknown", None, {}


def arg_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("outdir")
    parser.add_argument("--skip-prefix", action="append", default=[])
    parser.add_argument("--trust-pickle", action="store_true")
    options = parser.parse_args()
    try:
        import numpy as np
        import torch
    except ImportError as error:
        fail(f"{sys.executable} cannot import {error.name}: tessera import needs Python with "
             "PyTorch and numpy (Debian: apt install python3-torch; or --python PATH)", 3)

    payload = load(options.checkpoint, options.trust_pickle)
    layout, state, args = layout_of(payload)
    index = {"layout": layout, "args": {k: arg_text(v) for k, v in args.items()},
             "top_level": sorted(str(k) for k in payload) if isinstance(payload, dict) else [],
             "tensors": [], "skipped": []}
    if state is not None and not isinstance(state, dict):
        fail(f"{options.checkpoint}: {layout} is a {type(state).__name__}, not a state dict")
    for number, (key, value) in enumerate((state or {}).items()):
        bare = key.replace("_orig_mod.", "")
        if layout != "model" and any(bare.startswith(p) for p in options.skip_prefix):
            index["skipped"].append(key)
            continue
        if not isinstance(value, torch.Tensor):
            fail(f"{options.checkpoint}: key {key} is a {type(value).__name__}, not a tensor")
        name = f"t{number:05d}.npy"
        array = value.detach().to(torch.float32).cpu().numpy()
        np.save(os.path.join(options.outdir, name), np.ascontiguousarray(array))
        index["tensors"].append({"key": key, "shape": list(array.shape), "file": name})
    with open(os.path.join(options.outdir, "index.json"), "w") as out:
        json.dump(index, out)


if __name__ == "__main__":
    main()
