#!/usr/bin/env python3
"""Numpy oracle for `tessera make-model`.

Builds models with the tessera binary, reads their initializers by name, recomputes the
forward pass of the Tessera architecture (docs/MODEL.md) independently in float64
numpy, and compares with what ONNX Runtime computes through `tessera run-model`.

Checks, for a small config and for the default (Tessera v1.0) config:
  - the parameter count of the initializers equals the one make-model printed
    (and 45,828,226 for the default); the node count too;
  - no two initializers hold the same bytes (every tensor drawn from its own stream);
  - the graph has no ScatterND node; inputs/outputs have the documented names and shapes;
  - max |ORT - numpy| <= 1e-4 on random inputs with integer day-of-year values 1..365.

Usage: model_oracle.py --tessera BIN --workdir DIR   (exit 1 on any failure)
Needs numpy and onnx (no onnxruntime in Python: ORT runs inside the tessera binary).
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

TOLERANCE = 1e-4
# (engine, precision, largest error relative to the largest output, smallest cosine) that each
# engine must meet against float64 numpy: fp32 to rounding, bf16 and int8 to what their
# precision allows (docs/PERFORMANCE.md has the measured agreement).
ENGINES = [("ort", "fp32", TOLERANCE, 0.999999), ("native", "fp32", TOLERANCE, 0.999999),
           ("native", "bf16", 1e-2, 0.9995), ("native", "int8", 2e-2, 0.999)]
DEFAULT_PARAMETERS = 45_828_226


def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0.0)


def linear(w, prefix, x):
    # Linear weights are stored [in, out]: y = x @ W + b.
    return x @ w[prefix + ".weight"] + w[prefix + ".bias"]


def doy_encoding(doy, d):
    # div_i = exp(2i * -(ln 10000 / d)), a float32 constant of the model; pe interleaves sin/cos.
    i = np.arange(d // 2, dtype=np.float64)
    div = np.exp(2.0 * i * -(np.log(10000.0) / d)).astype(np.float32).astype(np.float64)
    angle = doy[..., None] * div
    pe = np.empty(doy.shape + (d,))
    pe[..., 0::2] = np.sin(angle)
    pe[..., 1::2] = np.cos(angle)
    return pe


def encoder_layer(w, p, x, heads):
    batch, steps, d = x.shape
    hd = d // heads
    qkv = linear(w, p + ".attn.in_proj", x)
    q, k, v = qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]

    def split(t):
        return t.reshape(batch, steps, heads, hd).transpose(0, 2, 1, 3)

    q, k, v = split(q), split(k), split(v)
    attn = softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd), axis=-1)
    context = (attn @ v).transpose(0, 2, 1, 3).reshape(batch, steps, d)
    x = layer_norm(x + linear(w, p + ".attn.out_proj", context),
                   w[p + ".norm1.weight"], w[p + ".norm1.bias"])
    ffn = linear(w, p + ".ffn.linear2", relu(linear(w, p + ".ffn.linear1", x)))
    return layer_norm(x + ffn, w[p + ".norm2.weight"], w[p + ".norm2.bias"])


def attention_pool(w, p, x):
    g = p + ".gru."
    batch, steps, d = x.shape
    h = np.zeros((batch, d))
    states = []
    for t in range(steps):
        xt = x[:, t, :]
        r = sigmoid(xt @ w[g + "W_ir"] + h @ w[g + "W_hr"] + w[g + "b_r"])
        z = sigmoid(xt @ w[g + "W_iz"] + h @ w[g + "W_hz"] + w[g + "b_z"])
        n = np.tanh(xt @ w[g + "W_ih"] + (r * h) @ w[g + "W_hh"] + w[g + "b_h"])
        h = (1.0 - z) * h + z * n
        states.append(h)
    context = layer_norm(np.stack(states, axis=1), w[p + ".norm.weight"], w[p + ".norm.bias"])
    weights = softmax(linear(w, p + ".score", context), axis=1)  # [B, T, 1]
    return (weights * x).sum(axis=1)  # applied to the encoder output, not to the context


def branch(w, b, inputs, heads):
    x, doy = inputs[..., :-1], inputs[..., -1]
    d = w[b + ".embed.2.weight"].shape[0]
    x = linear(w, b + ".embed.2", relu(linear(w, b + ".embed.0", x))) + doy_encoding(doy, d)
    layer = 0
    while b + ".layers.%d.norm1.weight" % layer in w:
        x = encoder_layer(w, "%s.layers.%d" % (b, layer), x, heads)
        layer += 1
    return attention_pool(w, b + ".pool", x)


def forward(w, s2, s1, heads):
    pooled = np.concatenate([branch(w, "s2", s2, heads), branch(w, "s1", s1, heads)], axis=1)
    return linear(w, "fusion", pooled)


def dims(value_info):
    return [d.dim_param if d.dim_param else d.dim_value
            for d in value_info.type.tensor_type.shape.dim]


def check_model(tessera, workdir, name, flags, cfg, pixels, rng, expected_parameters=None):
    """Returns a list of failure strings (empty when all checks pass)."""
    failures = []
    path = os.path.join(workdir, name + ".onnx")
    made = subprocess.run([tessera, "make-model", "-o", path, "--force"] + flags,
                          capture_output=True, text=True)
    if made.returncode != 0:
        return ["%s: make-model failed: %s" % (name, made.stderr.strip())]
    printed = re.search(r": ([\d,]+) parameters, ([\d.]+) GFLOP/pixel, ([\d,]+) nodes",
                        made.stdout)
    if not printed:
        return ["%s: unexpected make-model output: %r" % (name, made.stdout)]
    printed_parameters = int(printed.group(1).replace(",", ""))
    printed_nodes = int(printed.group(3).replace(",", ""))

    model = onnx.load(path)
    onnx.checker.check_model(model)
    weights = {}
    digests = {}
    parameters = 0
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        parameters += array.size
        digest = hashlib.sha1(array.tobytes()).hexdigest()
        if digest in digests:
            failures.append("%s: initializers %s and %s are identical"
                            % (name, digests[digest], tensor.name))
        digests[digest] = tensor.name
        weights[tensor.name] = array.astype(np.float64)
    print("%s: %d parameters (make-model printed %d), %d nodes"
          % (name, parameters, printed_parameters, len(model.graph.node)))
    if parameters != printed_parameters:
        failures.append("%s: initializers hold %d parameters, make-model printed %d"
                        % (name, parameters, printed_parameters))
    if expected_parameters is not None and parameters != expected_parameters:
        failures.append("%s: %d parameters, expected %d" % (name, parameters, expected_parameters))
    if printed_nodes != len(model.graph.node):
        failures.append("%s: %d nodes, make-model printed %d"
                        % (name, len(model.graph.node), printed_nodes))
    scatter = [n.name for n in model.graph.node if n.op_type == "ScatterND"]
    if scatter:
        failures.append("%s: graph has ScatterND nodes: %s" % (name, scatter[:3]))
    opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if opset != [17] or model.ir_version != 8:
        failures.append("%s: opset %s, ir_version %d (want 17, 8)" % (name, opset, model.ir_version))
    io = {v.name: dims(v) for v in list(model.graph.input) + list(model.graph.output)}
    want_io = {"s2_input": ["batch", cfg["s2_steps"], 11], "s1_input": ["batch", cfg["s1_steps"], 3],
               "output": ["batch", cfg["latent"]]}
    if io != want_io:
        failures.append("%s: inputs/outputs %s, expected %s" % (name, io, want_io))

    def sample(steps, bands):
        values = rng.standard_normal((pixels, steps, bands + 1)).astype(np.float32)
        values[..., -1] = rng.integers(1, 366, size=(pixels, steps))
        return values

    s2 = sample(cfg["s2_steps"], 10)
    s1 = sample(cfg["s1_steps"], 2)
    s2_path = os.path.join(workdir, name + "_s2.npy")
    s1_path = os.path.join(workdir, name + "_s1.npy")
    out_path = os.path.join(workdir, name + "_out.npy")
    np.save(s2_path, s2)
    np.save(s1_path, s1)
    want = forward(weights, s2.astype(np.float64), s1.astype(np.float64), cfg["heads"])
    for engine, precision, max_relative, min_cosine in ENGINES:
        label = "%s %s %s" % (name, engine, precision)
        ran = subprocess.run([tessera, "run-model", "-m", path, "--s2", s2_path, "--s1", s1_path,
                              "-o", out_path, "--force", "--engine", engine, "--precision",
                              precision], capture_output=True, text=True)
        if ran.returncode != 0:
            failures.append("%s: run-model failed: %s" % (label, ran.stderr.strip()))
            continue
        got = np.load(out_path)
        if got.shape != want.shape or got.dtype != np.float32:
            failures.append("%s: output %s %s, expected %s float32"
                            % (label, got.shape, got.dtype, want.shape))
            continue
        g = got.astype(np.float64)
        error = float(np.abs(g - want).max())
        relative = error / float(np.abs(want).max())
        cosine = float(((g * want).sum(1) / np.sqrt((g * g).sum(1) * (want * want).sum(1))).min())
        print("%s: max |tessera - numpy| = %.3g (%.2g of the largest output) over %d pixels, "
              "smallest cosine %.7f" % (label, error, relative, pixels, cosine))
        if not relative <= max_relative or not cosine >= min_cosine:
            failures.append("%s: relative error %.3g (at most %g), cosine %.7f (at least %g)"
                            % (label, relative, max_relative, cosine, min_cosine))
    for p in (path, s2_path, s1_path, out_path):
        os.remove(p)
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tessera", required=True, help="path of the tessera binary")
    parser.add_argument("--workdir", required=True, help="scratch directory")
    parser.add_argument("--small-only", action="store_true", help="skip the default config")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    rng = np.random.default_rng(20261122)

    small = {"d_model": 64, "layers": 2, "heads": 4, "ffn": 128, "s2_steps": 12, "s1_steps": 8,
             "latent": 128}
    flags = ["--d-model", "64", "--layers", "2", "--heads", "4", "--ffn", "128",
             "--s2-steps", "12", "--s1-steps", "8", "--seed", "7"]
    failures = check_model(args.tessera, args.workdir, "small", flags, small, 5, rng)
    if not args.small_only:
        default = {"d_model": 512, "layers": 4, "heads": 4, "ffn": 4096, "s2_steps": 40,
                   "s1_steps": 40, "latent": 128}
        failures += check_model(args.tessera, args.workdir, "default", [], default, 3, rng,
                                expected_parameters=DEFAULT_PARAMETERS)
    for failure in failures:
        print("FAIL " + failure)
    print("model oracle: " + ("FAILED" if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
