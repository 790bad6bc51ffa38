#!/usr/bin/env python3
"""PyTorch peer of `tessera bench`: the same Tessera model, the same weights, run by PyTorch.

Reads a Tessera ONNX model of any version (written by `tessera make-model` or `tessera import`;
layouts in src/tessera/model/model_builder.h), loads its initializers into the PyTorch module of
that version in tessera_torch.py (beside this script), and either checks it against ONNX Runtime
or times it.

  torch_peer.py check --model M.onnx --tessera BIN [--pixels 4]
      random inputs -> `BIN run-model` (ONNX Runtime) and torch fp32; prints the max abs error,
      exit 1 when it is above 1e-4.
  torch_peer.py agree --model M.onnx --tessera BIN [--pixels 128] [--threads 2]
      the same random inputs through torch fp32 and bf16 autocast and through `BIN run-model`
      (ort fp32, native fp32 / bf16 / int8); every output quantised with tessera's int8 rule
      and compared (int8 values equal and within one step, largest difference, cosine of the
      dequantised embeddings: mean, 0.1 % quantile, minimum): each tessera run against ort
      fp32, torch bf16 against torch fp32. Prints a Markdown table.
  torch_peer.py bench --model M.onnx [--device cpu,cuda:0] [-t 1,2] [-b 64,256] [--batches N]
                      [-r R] [--precision fp32,tf32,bf16] [-o out.json]
      the loop of `tessera bench` (warm-up, then reps x batches, every batch timed); prints a
      Markdown table, and with -o writes the bench JSON schema (engine "torch") that
      `tessera report --from` reads.
  torch_peer.py mix --model M.onnx --tile DIR [-b 256] [-t 1] [--precision fp32,bf16] [-r 1]
      the bucketed versions (v1.1, v2) over a real tile's length mix: the batches `tessera
      infer` plans for DIR at batch -b (the pixels' bucket lengths, the longest groups first,
      groups cut at -b pixels), each run once per pass on random inputs of its shape (run time
      does not depend on the values); prints one row per precision (one pass's seconds, ms per
      valid pixel), with -o the rows as JSON.

The version, head count and QK-norm come from the file's metadata (a file without them is v1.0
with 4 heads; --heads overrides), the widths from the initializer shapes, the step counts from
the graph inputs (40 when symbolic). A wrong head count gives a large `check` error.

Exit codes: 0 ok, 1 error (one line on stderr naming the file and the problem) or `check` above
tolerance, 2 bad arguments, 3 PyTorch (or onnx/numpy) cannot be imported.
"""

import argparse
import copy
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_TORCH = 3
TOLERANCE = 1e-4
TOOL = "torch_peer"
TOOL_VERSION = "0.1.0"
DEFAULT_STEPS = 40  # MODEL.md, used when the graph leaves the step count symbolic
PRECISIONS = ("fp32", "tf32", "bf16")


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _import_or_exit(name):
    try:
        return __import__(name)
    except Exception as e:  # ImportError, or a broken install failing to load its libraries
        label = "PyTorch" if name == "torch" else name
        print(f"{TOOL}: {label} is not importable from {sys.executable}: {_first_line(e)}",
              file=sys.stderr)
        sys.exit(EXIT_NO_TORCH)


torch = _import_or_exit("torch")
np = _import_or_exit("numpy")
_import_or_exit("onnx")  # tessera_torch.model_from_onnx reads the file with it
from torch import nn  # noqa: E402  (after the import guard)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tessera_torch.py lies beside
import tessera_torch  # noqa: E402


class PeerError(Exception):
    """A one-line error for the user; main() prints it and exits 1."""


class PeerUsageError(PeerError):
    """A bad flag value; main() prints it and exits 2."""


# ---------------------------------------------------------------------------------------------
# The model: tessera_torch.py's module of the file's version, with the file's weights


def _cpu_autocast_enabled():
    try:
        return torch.is_autocast_enabled("cpu")  # torch >= 2.4
    except TypeError:
        return torch.is_autocast_cpu_enabled()


def _unfused_encoder_layer(layer, x):
    """The post-norm nn.TransformerEncoderLayer on its own parameters, without the fused fast
    path: x = LN1(x + MHA(x)); x = LN2(x + W2 relu(W1 x + b1) + b2)."""
    attn = layer.self_attn
    seq = x.transpose(0, 1)  # the functional form is sequence-first
    mixed = nn.functional.multi_head_attention_forward(
        seq, seq, seq, attn.embed_dim, attn.num_heads, attn.in_proj_weight, attn.in_proj_bias,
        None, None, False, 0.0, attn.out_proj.weight, attn.out_proj.bias, training=False,
        need_weights=False)[0]
    x = layer.norm1(x + mixed.transpose(0, 1))
    return layer.norm2(x + layer.linear2(torch.relu(layer.linear1(x))))


def cpu_autocast_safe(model):
    """Makes `model` run under CPU autocast, where torch 1.13 fails on mixed dtypes ("expected
    scalar type BFloat16 but found Float"): every nn.TransformerEncoderLayer runs unfused (its
    fused fast path mixes them) and every nn.LayerNorm normalises a float32 copy of a bfloat16
    input (as CUDA autocast does). Elsewhere both run as they are. Layers are called unmasked."""
    def patched(module, fallback):
        def forward(x, *args, **kwargs):
            if x.device.type == "cpu" and _cpu_autocast_enabled():
                return fallback(module, x)
            return original(x, *args, **kwargs)
        original = module.forward
        module.forward = forward

    for module in model.modules():
        if isinstance(module, nn.TransformerEncoderLayer):
            patched(module, _unfused_encoder_layer)
        elif isinstance(module, nn.LayerNorm):
            patched(module, lambda norm, x: nn.LayerNorm.forward(norm, x.float()))
    return model


def _fixed_steps(graph, name, path):
    for value in graph.input:
        if value.name == name:
            dims = value.type.tensor_type.shape.dim
            if len(dims) != 3:
                raise PeerError(f"{path}: input {name} has rank {len(dims)}, expected 3")
            return dims[1].dim_value if dims[1].HasField("dim_value") else DEFAULT_STEPS
    raise PeerError(f"{path}: no graph input named {name}")


def load_model(path, heads):
    """(model, sizes, info) of a tessera make-model / import file: tessera_torch's module of its
    version holding its weights (eval mode, on the CPU; cpu_autocast_safe not yet applied: a
    deep copy would keep calling the original's layers), the input sizes (bands; steps from the
    graph inputs, DEFAULT_STEPS where symbolic) and the facts the bench JSON records."""
    if not os.path.isfile(path):
        raise PeerError(f"{path}: no such file" if not os.path.exists(path)
                        else f"{path}: not a regular file")
    try:
        model, config, proto = tessera_torch.model_from_onnx(path, heads)
    except ValueError as e:
        raise PeerError(str(e))
    sizes = {"version": config["arch"], "heads": config["heads"],
             "s2_bands": config["s2_bands"], "s1_bands": config["s1_bands"],
             "s2_steps": _fixed_steps(proto.graph, "s2_input", path),
             "s1_steps": _fixed_steps(proto.graph, "s1_input", path)}
    info = {
        "path": path,
        "parameters": int(sum(math.prod(t.dims) for t in proto.graph.initializer)),
        "nodes": len(proto.graph.node),
        "bytes": os.path.getsize(path),
    }
    return model, sizes, info


# ---------------------------------------------------------------------------------------------
# Inputs


def make_inputs(rng, pixels, steps, bands):
    """float32 [pixels, steps, bands + 1]: bands N(0, 1), then integer days of year 1..365
    ascending within each pixel (like tessera's dummy inputs)."""
    x = np.empty((pixels, steps, bands + 1), dtype=np.float32)
    x[:, :, :bands] = rng.standard_normal((pixels, steps, bands))
    x[:, :, bands] = np.sort(rng.integers(1, 366, size=(pixels, steps)), axis=1)
    return x


# ---------------------------------------------------------------------------------------------
# check


def run_check(args):
    if args.pixels < 1:
        raise PeerUsageError(f"--pixels must be at least 1 (got {args.pixels})")
    model, sizes, _ = load_model(args.model, args.heads)
    rng = np.random.default_rng(args.seed)
    s2 = make_inputs(rng, args.pixels, sizes["s2_steps"], sizes["s2_bands"])
    s1 = make_inputs(rng, args.pixels, sizes["s1_steps"], sizes["s1_bands"])

    with tempfile.TemporaryDirectory(prefix="torch_peer_") as scratch:
        workdir = args.workdir or scratch
        os.makedirs(workdir, exist_ok=True)
        s2_path, s1_path = os.path.join(workdir, "s2.npy"), os.path.join(workdir, "s1.npy")
        out_path = os.path.join(workdir, "ort_out.npy")
        np.save(s2_path, s2)
        np.save(s1_path, s1)
        command = [args.tessera, "run-model", "-m", args.model, "--s2", s2_path, "--s1", s1_path,
                   "-o", out_path, "--force"]
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except OSError as e:
            raise PeerError(f"{args.tessera}: cannot run ({e.strerror})")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise PeerError(f"{args.tessera} run-model failed (exit {done.returncode}): {last}")
        ort = np.load(out_path)

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    model = cpu_autocast_safe(model.to(device))
    with torch.inference_mode():
        ours = model(torch.from_numpy(s2).to(device), torch.from_numpy(s1).to(device))
    ours = ours.float().cpu().numpy()
    if ort.shape != ours.shape:
        raise PeerError(f"{out_path}: ONNX Runtime output has shape {list(ort.shape)}, "
                        f"torch {list(ours.shape)}")
    err = float(np.max(np.abs(ort.astype(np.float64) - ours.astype(np.float64))))
    ok = err <= TOLERANCE
    print(f"torch {torch.__version__} ({args.device}, fp32) vs ONNX Runtime ({args.tessera} "
          f"run-model): {args.pixels} pixels, output {list(ours.shape)}, "
          f"max |error| = {err:.3g} (tolerance {TOLERANCE:g}): {'ok' if ok else 'FAILED'}")
    return 0 if ok else EXIT_ERROR


# ---------------------------------------------------------------------------------------------
# agree


def quantise(x):
    """tessera's int8 rule (src/tessera/pipeline/quantiser.h), in float32."""
    x = x.astype(np.float32)
    scale = np.maximum(np.abs(x).max(axis=1, keepdims=True) / np.float32(127), np.float32(1e-8))
    q = np.clip(np.rint(x / scale), -128, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def agreement(reference, other):
    """The numbers of `tessera compare` for two float outputs [pixels, dim]."""
    qa, sa = quantise(reference)
    qb, sb = quantise(other)
    diff = np.abs(qa.astype(np.int16) - qb.astype(np.int16))
    ea, eb = qa * sa.astype(np.float64), qb * sb.astype(np.float64)
    cos = np.sort((ea * eb).sum(1) / np.sqrt((ea * ea).sum(1) * (eb * eb).sum(1)))
    return {"equal %": 100.0 * float((diff == 0).mean()),
            "within 1 %": 100.0 * float((diff <= 1).mean()),
            "max diff": int(diff.max()), "cosine mean": float(cos.mean()),
            "cosine 0.1 %": float(cos[int(0.001 * (len(cos) - 1))]),
            "cosine min": float(cos[0])}


def tessera_outputs(args, s2_path, s1_path, workdir, runs):
    """`BIN run-model` for each (engine, precision) in `runs`: {label: output}."""
    outputs = {}
    for engine, precision in runs:
        out_path = os.path.join(workdir, f"{engine}_{precision}.npy")
        command = [args.tessera, "run-model", "-m", args.model, "--s2", s2_path, "--s1", s1_path,
                   "-o", out_path, "--force", "--engine", engine, "--precision", precision,
                   "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise PeerError(f"{args.tessera} run-model failed (exit {done.returncode}): {last}")
        outputs[f"tessera {engine} {precision}"] = np.load(out_path)
    return outputs


def run_agree(args):
    model, sizes, _ = load_model(args.model, args.heads)
    model = cpu_autocast_safe(model)
    rng = np.random.default_rng(args.seed)
    s2 = make_inputs(rng, args.pixels, sizes["s2_steps"], sizes["s2_bands"])
    s1 = make_inputs(rng, args.pixels, sizes["s1_steps"], sizes["s1_bands"])
    with tempfile.TemporaryDirectory(prefix="torch_peer_") as workdir:
        s2_path, s1_path = os.path.join(workdir, "s2.npy"), os.path.join(workdir, "s1.npy")
        np.save(s2_path, s2)
        np.save(s1_path, s1)
        runs = [("ort", "fp32"), ("native", "fp32"), ("native", "bf16"), ("native", "int8")]
        outputs = tessera_outputs(args, s2_path, s1_path, workdir, runs)
    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        x2, x1 = torch.from_numpy(s2), torch.from_numpy(s1)
        torch_fp32 = model(x2, x1).float().numpy()
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            torch_bf16 = model(x2, x1).float().numpy()
    reference = outputs["tessera ort fp32"]
    rows = [(label, "tessera ort fp32", agreement(reference, out))
            for label, out in outputs.items() if label != "tessera ort fp32"]
    rows.append(("torch fp32", "tessera ort fp32", agreement(reference, torch_fp32)))
    rows.append(("torch bf16 autocast", "torch fp32", agreement(torch_fp32, torch_bf16)))
    keys = list(rows[0][2])
    print(f"{args.pixels} pixels of random inputs (seed {args.seed}), model {args.model}")
    print("| run | against | " + " | ".join(keys) + " |")
    print("|---|---|" + "---:|" * len(keys))
    for label, against, numbers in rows:
        cells = [f"{numbers[k]:.7f}" if k.startswith("cosine") else
                 (f"{numbers[k]:.2f}" if isinstance(numbers[k], float) else str(numbers[k]))
                 for k in keys]
        print(f"| {label} | {against} | " + " | ".join(cells) + " |")
    return 0


# ---------------------------------------------------------------------------------------------
# bench


def _int_list(text, flag):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise PeerUsageError(f"{flag}: not a comma-separated list of integers: '{text}'")
    if not values:
        raise PeerUsageError(f"{flag} needs at least one value")
    return values


def describe_machine():
    cpu_model, cores = "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            physical = core = None
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and cpu_model == "unknown":
                    cpu_model = value
                elif key == "physical id":
                    physical = value
                elif key == "core id":
                    core = value
                elif not key and core is not None:  # blank line: end of one processor
                    cores.add((physical, core))
                    physical = core = None
            if core is not None:
                cores.add((physical, core))
    except OSError:
        pass
    pus = os.cpu_count() or 0
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    return {
        "cpu_model": cpu_model,
        "cores": len(cores) or pus,
        "pus": pus,
        "gpus": gpus,
        "hostname": socket.gethostname(),
        "torch_version": torch.__version__,
        "torch_default_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
    }


def _summary(samples):
    n = len(samples)
    mean = sum(samples) / n
    sd = math.sqrt(sum((s - mean) ** 2 for s in samples) / (n - 1)) if n > 1 else 0.0
    ordered = sorted(samples)
    median = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
    p99 = ordered[max(math.ceil(0.99 * n), 1) - 1]  # nearest rank, like tessera bench
    return mean, sd, median, p99


def _is_oom(error):
    return "out of memory" in str(error).lower() or \
        (hasattr(torch.cuda, "OutOfMemoryError") and isinstance(error, torch.cuda.OutOfMemoryError))


def bench_case(model, device, precision, threads, batch, args, sizes, session_s):
    """One row: warm-up, then args.reps repetitions of args.batches timed batches."""
    row = {"engine": "torch", "device": device, "precision": precision,
           "layout": f"single:{threads}", "spawn": "thread", "pinned": False, "workers": 1, "threads": threads, "batch": batch,
           "batches": args.batches, "reps": args.reps, "pixels": batch * args.batches,
           "session_s": session_s, "total_s": 0.0, "ms_per_batch": 0.0, "ms_per_batch_sd": 0.0,
           "ms_per_batch_median": 0.0, "ms_per_batch_p99": 0.0, "ms_per_pixel": 0.0,
           "ms_per_pixel_per_worker": 0.0, "pixels_per_s": 0.0, "speedup": 0.0,
           "status": "ok", "error": "", "samples_ms": []}
    on_cuda = device.startswith("cuda")
    if precision == "tf32" and not on_cuda:
        row.update(status="error", error="tf32 is a CUDA matmul mode; use fp32 or bf16 on cpu")
        return row
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    rng = np.random.default_rng(args.seed)
    dev = torch.device(device)
    s2 = torch.from_numpy(make_inputs(rng, batch, sizes["s2_steps"], sizes["s2_bands"])).to(dev)
    s1 = torch.from_numpy(make_inputs(rng, batch, sizes["s1_steps"], sizes["s1_bands"])).to(dev)

    def sync():
        if on_cuda:
            torch.cuda.synchronize(dev)

    def run_batch():
        if precision == "bf16":
            with torch.autocast(device_type="cuda" if on_cuda else "cpu", dtype=torch.bfloat16):
                return model(s2, s1)
        return model(s2, s1)

    samples, walls = [], []
    try:
        with torch.inference_mode():
            for _ in range(args.warmup):
                run_batch()
            sync()
            for _ in range(args.reps):
                rep_start = time.perf_counter()
                for _ in range(args.batches):
                    sync()
                    start = time.perf_counter()
                    run_batch()
                    sync()
                    samples.append(1e3 * (time.perf_counter() - start))
                walls.append(time.perf_counter() - rep_start)
    except Exception as e:  # noqa: BLE001 (a failed case is a row, like tessera bench's oom)
        if not _is_oom(e):
            raise
        row.update(status="oom", error=_first_line(e))
        if on_cuda:
            torch.cuda.empty_cache()
        return row
    mean, sd, median, p99 = _summary(samples)
    total_s = sum(walls) / len(walls)
    row.update(total_s=total_s, ms_per_batch=mean, ms_per_batch_sd=sd, ms_per_batch_median=median,
               ms_per_batch_p99=p99, ms_per_pixel=1e3 * total_s / row["pixels"],
               ms_per_pixel_per_worker=mean / batch, pixels_per_s=row["pixels"] / total_s,
               samples_ms=samples)
    return row


def markdown_table(rows):
    header = ["engine", "device", "precision", "threads", "batch", "batches", "total s",
              "ms/batch", "± sd", "ms/px", "px/s", "speedup", "status"]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header) - 1)) + "|---|"]
    for r in rows:
        ok = r["status"] == "ok"

        def num(key, digits):
            return f"{r[key]:.{digits}f}" if ok else ""
        cells = [r["engine"], r["device"], r["precision"], str(r["threads"]), str(r["batch"]),
                 str(r["batches"]), num("total_s", 2), num("ms_per_batch", 1),
                 num("ms_per_batch_sd", 1), num("ms_per_pixel", 3), num("pixels_per_s", 1),
                 num("speedup", 2), r["status"] if ok else f"{r['status']}: {r['error']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_bench(args):
    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    threads = _int_list(args.threads, "-t")
    batches = _int_list(args.batch, "-b")
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if not devices:
        raise PeerUsageError("--device needs at least one device")
    for d in devices:
        if d != "cpu" and not (d.startswith("cuda:") and d[5:].isdigit()):
            raise PeerUsageError(f"--device: '{d}' is not cpu or cuda:N")
        if d.startswith("cuda") and int(d[5:]) >= torch.cuda.device_count():
            raise PeerUsageError(f"--device {d}: torch {torch.__version__} sees "
                            f"{torch.cuda.device_count()} CUDA device(s)")
    for p in precisions:
        if p not in PRECISIONS:
            raise PeerUsageError(f"--precision: '{p}' is not one of {', '.join(PRECISIONS)}")
    if not precisions:
        raise PeerUsageError("--precision needs at least one value")
    for t in threads:
        if t < 1:
            raise PeerUsageError(f"thread count must be at least 1 (got {t})")
    for b in batches:
        if b < 1:
            raise PeerUsageError(f"batch size must be at least 1 (got {b})")
    if args.batches < 1:
        raise PeerUsageError(f"--batches must be at least 1 (got {args.batches})")
    if args.reps < 1:
        raise PeerUsageError(f"-r must be at least 1 (got {args.reps})")
    if args.warmup < 0:
        raise PeerUsageError(f"--warmup must be 0 or more (got {args.warmup})")

    loaded, sizes, model_info = load_model(args.model, args.heads)
    cases = [(d, p, t, b) for d in devices for p in precisions for t in threads for b in batches]
    rows = []
    for device in devices:
        start = time.perf_counter()
        model = cpu_autocast_safe(copy.deepcopy(loaded).to(torch.device(device)))
        if device.startswith("cuda"):
            torch.cuda.synchronize(torch.device(device))
        session_s = time.perf_counter() - start
        for case in cases:
            if case[0] != device:
                continue
            print(f"{TOOL}: [{len(rows) + 1}/{len(cases)}] {device} {case[1]} t={case[2]} "
                  f"b={case[3]}", file=sys.stderr, flush=True)
            rows.append(bench_case(model, device, case[1], case[2], case[3], args, sizes,
                                   session_s))
        del model
    base = rows[0]
    for r in rows:
        if r["status"] == "ok" and base["status"] == "ok":
            r["speedup"] = base["ms_per_pixel"] / r["ms_per_pixel"]
    result = {"tool": TOOL, "version": TOOL_VERSION, "machine": describe_machine(),
              "model": model_info, "rows": rows, "skipped": []}
    if args.output == "-":
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    machine = result["machine"]
    print(markdown_table(rows))
    print(f"\n{machine['cpu_model']}, {machine['cores']} cores; torch {torch.__version__}; "
          f"model {args.model} ({model_info['parameters']:,} parameters)")
    if args.output:
        tmp = f"{args.output}.tmp.{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                json.dump(result, f, indent=2)
                f.write("\n")
            os.replace(tmp, args.output)
        except OSError as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise PeerError(f"{args.output}: cannot write ({e.strerror})")
    return 0


# ---------------------------------------------------------------------------------------------
# mix: a tile's bucket batches

BUCKET_STEP, BUCKET_MAX = 8, 256  # bucket lengths 8, 16, ..., 256 (MODEL_FAMILY.md §C, §D)
# Per bucketed version: the steps of a modality with no valid observation, and whether a pixel
# with none in either modality is left out (src/tessera/pipeline/tile_plan.cpp, bucket_steps).
BUCKET_RULES = {"v1.1": (BUCKET_STEP, False), "v2": (1, True)}


def _tile_member(tile_dir, sub, name):
    nested = os.path.join(tile_dir, sub, name)
    path = nested if os.path.exists(nested) else os.path.join(tile_dir, name)
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise PeerError(f"{path}: cannot read ({_first_line(e)})")


def observation_counts(tile_dir):
    """Per pixel (flat, row-major): valid S2 frames (non-zero mask) and valid S1 rows (ascending
    plus descending rows with a non-zero band), as tessera's tile scan counts them."""
    masks = _tile_member(tile_dir, "s2", "masks.npy")
    s2 = np.count_nonzero(np.asarray(masks) != 0, axis=0).reshape(-1).astype(np.int64)
    s1 = np.zeros_like(s2)
    for name in ("sar_ascending.npy", "sar_descending.npy"):
        sar = np.asarray(_tile_member(tile_dir, "s1", name))
        if sar.shape[0]:
            s1 += np.count_nonzero(np.any(sar != 0, axis=-1), axis=0).reshape(-1)
    return s2, s1


def bucket_batches(s2_counts, s1_counts, version, batch):
    """[(s2_steps, s1_steps, pixels)]: tessera infer's batches of a bucketed tile, in its order."""
    empty, skips_empty = BUCKET_RULES[version]

    def steps(n):
        return np.where(n > 0, np.minimum((n + BUCKET_STEP - 1) // BUCKET_STEP * BUCKET_STEP,
                                          BUCKET_MAX), empty)
    keep = ~((s2_counts == 0) & (s1_counts == 0)) if skips_empty else np.ones_like(s2_counts, bool)
    s2, s1 = steps(s2_counts)[keep], steps(s1_counts)[keep]
    groups = {}
    for pair in zip(s2.tolist(), s1.tolist()):
        groups[pair] = groups.get(pair, 0) + 1
    batches = []
    for (a, b) in sorted(groups, key=lambda g: (-(g[0] + g[1]), g[0], g[1])):
        left = groups[(a, b)]
        while left > 0:
            batches.append((a, b, min(left, batch)))
            left -= batch
    return batches


def mix_pass(model, batches, sizes, precision, rng):
    """Seconds of one pass over `batches` (model time only; inputs made before each batch)."""
    total = 0.0
    for s2_steps, s1_steps, pixels in batches:
        s2 = torch.from_numpy(make_inputs(rng, pixels, s2_steps, sizes["s2_bands"]))
        s1 = torch.from_numpy(make_inputs(rng, pixels, s1_steps, sizes["s1_bands"]))
        start = time.perf_counter()
        if precision == "bf16":
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                model(s2, s1)
        else:
            model(s2, s1)
        total += time.perf_counter() - start
    return total


def run_mix(args):
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    for p in precisions:
        if p not in ("fp32", "bf16"):
            raise PeerUsageError(f"--precision: '{p}' is not fp32 or bf16 (mix runs on the CPU)")
    if not precisions or args.batch < 1 or args.threads < 1 or args.reps < 1:
        raise PeerUsageError("--precision needs a value; -b, -t and -r must be at least 1")
    if not os.path.isdir(args.tile):
        raise PeerError(f"{args.tile}: not a tile directory")
    loaded, sizes, _ = load_model(args.model, args.heads)
    if sizes["version"] not in BUCKET_RULES:
        raise PeerUsageError(f"{args.model}: a {sizes['version']} model has fixed step counts; "
                             "mix runs the bucketed versions (v1.1, v2): use bench")
    batches = bucket_batches(*observation_counts(args.tile), sizes["version"], args.batch)
    pixels = sum(b[2] for b in batches)
    model = cpu_autocast_safe(copy.deepcopy(loaded))
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    rows = []
    with torch.inference_mode():
        for precision in precisions:
            passes = [mix_pass(model, batches, sizes, precision, rng) for _ in range(args.reps)]
            rows.append({"engine": "torch", "version": sizes["version"], "precision": precision,
                         "threads": args.threads, "batch": args.batch, "batches": len(batches),
                         "pixels": pixels, "passes_s": passes,
                         "ms_per_pixel": 1e3 * min(passes) / pixels})
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"tool": TOOL, "version": TOOL_VERSION, "machine": describe_machine(),
                       "model": args.model, "tile": args.tile, "rows": rows}, f, indent=2)
            f.write("\n")
    print("| version | precision | threads | batch | batches | pixels | pass s (best) | ms/px |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['version']} | {r['precision']} | {r['threads']} | {r['batch']} | "
              f"{r['batches']} | {r['pixels']} | {min(r['passes_s']):.2f} | "
              f"{r['ms_per_pixel']:.3f} |")
    return 0


# ---------------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="torch_peer.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--model", "-m", required=True, help="ONNX model from tessera make-model")
        p.add_argument("--heads", type=int,
                       help="attention heads (default: the file's tessera.heads, else 4)")
        p.add_argument("--seed", type=int, default=1, help="seed of the random inputs")

    check = sub.add_parser("check", help="compare torch fp32 with ONNX Runtime (tessera run-model)")
    common(check)
    check.add_argument("--tessera", required=True, help="the tessera binary")
    check.add_argument("--pixels", type=int, default=4, help="pixels of random input")
    check.add_argument("--device", default="cpu", help="torch device: cpu or cuda:N")
    check.add_argument("--workdir", help="keep the .npy files here (default: a temporary dir)")

    agree = sub.add_parser("agree", help="int8 agreement of each precision with fp32")
    common(agree)
    agree.add_argument("--tessera", required=True, help="the tessera binary")
    agree.add_argument("--pixels", type=int, default=128, help="pixels of random input")
    agree.add_argument("--threads", type=int, default=2, help="threads of every run")

    bench = sub.add_parser("bench", help="time the model like tessera bench")
    common(bench)
    bench.add_argument("--device", default="cpu", help="devices, comma separated: cpu, cuda:N")
    bench.add_argument("-t", "--threads", default="1", help="torch threads, comma separated")
    bench.add_argument("-b", "--batch", default="256", help="batch sizes, comma separated")
    bench.add_argument("--batches", type=int, default=10, help="timed batches per repetition")
    bench.add_argument("-r", "--reps", type=int, default=3, help="repetitions")
    bench.add_argument("--warmup", type=int, default=1, help="untimed warm-up batches")
    bench.add_argument("--precision", default="fp32", help="fp32, tf32 (CUDA), bf16 (autocast)")
    bench.add_argument("-o", "--output", help="write the bench JSON here ('-': to stdout)")

    mix = sub.add_parser("mix", help="time a bucketed model over a tile's real length mix")
    common(mix)
    mix.add_argument("--tile", required=True, help="d-pixel tile directory (tessera synth -o)")
    mix.add_argument("-b", "--batch", type=int, default=256, help="largest batch, pixels")
    mix.add_argument("-t", "--threads", type=int, default=1, help="torch threads")
    mix.add_argument("-r", "--reps", type=int, default=1, help="passes per precision (best kept)")
    mix.add_argument("--precision", default="fp32,bf16", help="fp32 and/or bf16 (autocast)")
    mix.add_argument("-o", "--output", help="also write the rows as JSON here")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    try:
        runs = {"check": run_check, "agree": run_agree, "bench": run_bench, "mix": run_mix}
        return runs[args.command](args)
    except PeerError as e:
        print(f"{TOOL}: {e}", file=sys.stderr)
        return EXIT_USAGE if isinstance(e, PeerUsageError) else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
