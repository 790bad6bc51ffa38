"""The Tessera model family in PyTorch, written from MODEL_FAMILY.md (tessera's shared docs):
the reference for checks of `tessera make-model` and `tessera import`
(tests/reference/family_torch_test.py) and the model that tools/torch_peer.py runs.

Module and parameter names follow the upstream state-dict keys MODEL_FAMILY.md lists, so that
`state_dict()` of these modules is a checkpoint in the upstream layout. Dropout is left out (it
is the identity at inference). Works with torch 1.13 (no nn.RMSNorm there: RMSNorm is here).
`model_from_onnx` loads a tessera ONNX file's weights into these modules (needs onnx too).
"""

import math

import torch
from torch import nn

ARCHS = ("v1.0-early", "v1.0", "v1.1", "v2")


def doy_encoding(doy, d):
    """doy [B, T] -> [B, T, d] float32: channel 2k = sin(doy * w_k), 2k + 1 = cos(doy * w_k),
    w_k = exp(f32(2k) * f32(-ln(10000) / d)), every step in float32."""
    step = torch.tensor(-math.log(10000.0) / d, dtype=torch.float32, device=doy.device)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=doy.device) * step)
    angle = doy.to(torch.float32).unsqueeze(-1) * freq
    pe = torch.zeros(*doy.shape, d, dtype=torch.float32, device=doy.device)
    pe[..., 0::2] = torch.sin(angle)
    pe[..., 1::2] = torch.cos(angle)
    return pe


class RMSNorm(nn.Module):
    def __init__(self, width, eps=torch.finfo(torch.float32).eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, u):
        return u / torch.sqrt(u.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class QKNormLayer(nn.Module):
    """v2 option B: separate q/k/v projections, RMSNorm per head on q and k, post-LN block."""

    def __init__(self, d, heads, ffn):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.q_norm, self.k_norm = RMSNorm(d // heads), RMSNorm(d // heads)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, h):
        b, t, d = h.shape
        hd = d // self.heads

        def split(x):
            return x.view(b, t, self.heads, hd)

        q = self.q_norm(split(self.q_proj(h))).transpose(1, 2)
        k = self.k_norm(split(self.k_proj(h))).transpose(1, 2)
        v = split(self.v_proj(h)).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1) @ v
        h = self.norm1(h + self.out_proj(a.transpose(1, 2).reshape(b, t, d)))
        return self.norm2(h + self.linear2(torch.relu(self.linear1(h))))


class CustomGRUCell(nn.Module):
    """v1.0 / v1.1 cell: reset before the matmul, z gates the new candidate."""

    def __init__(self, d):
        super().__init__()
        for name in ("W_ir", "W_iz", "W_ih", "W_hr", "W_hz", "W_hh"):
            setattr(self, name, nn.Linear(d, d, bias=False))
        self.b_r = nn.Parameter(torch.zeros(d))
        self.b_z = nn.Parameter(torch.zeros(d))
        self.b_h = nn.Parameter(torch.zeros(d))

    def forward(self, x, h):
        r = torch.sigmoid(self.W_ir(x) + self.W_hr(h) + self.b_r)
        z = torch.sigmoid(self.W_iz(x) + self.W_hz(h) + self.b_z)
        n = torch.tanh(self.W_ih(x) + self.W_hh(r * h) + self.b_h)
        return (1 - z) * h + z * n


class CustomContext(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.gru_cell = CustomGRUCell(d)

    def forward(self, x):
        h = torch.zeros(x.shape[0], x.shape[2], dtype=x.dtype, device=x.device)
        states = []
        for t in range(x.shape[1]):
            h = self.gru_cell(x[:, t], h)
            states.append(h)
        return torch.stack(states, dim=1)


class Pooling(nn.Module):
    """kind: "gru" (v1.0 early), "custom_gru" (v1.0, v1.1) or "attention" (v2)."""

    def __init__(self, d, kind):
        super().__init__()
        self.kind = kind
        if kind == "gru":
            self.temporal_context = nn.GRU(d, d, batch_first=True)
        elif kind == "custom_gru":
            self.temporal_context = CustomContext(d)
            self.layer_norm = nn.LayerNorm(d)
        self.query = nn.Linear(d, 1)

    def forward(self, x):
        if self.kind != "gru" and x.shape[1] == 1:
            return x[:, 0]
        if self.kind == "gru":
            context = self.temporal_context(x)[0]
        elif self.kind == "custom_gru":
            context = self.layer_norm(self.temporal_context(x))
        else:
            context = x
        weights = torch.softmax(self.query(context), dim=1)
        return (weights * x).sum(dim=1)


class Backbone(nn.Module):
    def __init__(self, bands, d, layers, heads, ffn, pooling, qk_norm=False):
        super().__init__()
        self.d = d
        self.embedding = nn.Sequential(nn.Linear(bands, d), nn.ReLU(), nn.Linear(d, d))
        if qk_norm:
            self.transformer_encoder = nn.ModuleList(
                [QKNormLayer(d, heads, ffn) for _ in range(layers)])
        else:
            layer = nn.TransformerEncoderLayer(d, heads, ffn, dropout=0.0, batch_first=True)
            self.transformer_encoder = nn.TransformerEncoder(layer, layers,
                                                             enable_nested_tensor=False)
        self.attn_pool = Pooling(d, pooling)

    def forward(self, x):
        h = self.embedding(x[..., :-1]) + doy_encoding(x[..., -1], self.d).to(x.dtype)
        if isinstance(self.transformer_encoder, nn.ModuleList):
            for layer in self.transformer_encoder:
                h = layer(h)
        else:
            h = self.transformer_encoder(h)
        return self.attn_pool(h)


class TesseraModel(nn.Module):
    """config: arch, d, layers, heads, ffn, latent (output width), and for v1.1 / v2 the
    fusion's hidden and width, for v2 qk_norm; s2_bands and s1_bands (10 and 2 unless given)."""

    def __init__(self, config):
        super().__init__()
        c = config
        self.arch, self.latent = c["arch"], c["latent"]
        pooling = {"v1.0-early": "gru", "v1.0": "custom_gru", "v1.1": "custom_gru",
                   "v2": "attention"}[c["arch"]]
        args = (c["d"], c["layers"], c["heads"], c["ffn"], pooling, c.get("qk_norm", False))
        self.s2_backbone = Backbone(c.get("s2_bands", 10), *args)
        self.s1_backbone = Backbone(c.get("s1_bands", 2), *args)
        d2 = 2 * c["d"]
        if c["arch"] in ("v1.0-early", "v1.0"):
            self.dim_reducer = nn.Sequential(nn.Linear(d2, c["latent"]))
        else:
            hidden, width = c["hidden"], c["width"]
            parts = [nn.Linear(d2, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Identity(),
                     nn.Linear(hidden, width)]
            if c["arch"] == "v2":
                parts.append(nn.LayerNorm(width, elementwise_affine=False))
            self.dim_reducer = nn.Sequential(*parts)

    def forward(self, s2, s1):
        f = torch.cat([self.s2_backbone(s2), self.s1_backbone(s1)], dim=-1)
        y = self.dim_reducer(f)
        return y[:, :self.latent] if self.arch == "v1.1" else y


def randomise(model, generator):
    """Uniform weights everywhere (LayerNorm and RMSNorm gains around 1), so that a weight
    placed wrongly shows in the output."""
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p.shape[1] if p.dim() == 2 else p.shape[0]
            p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) / math.sqrt(fan_in))
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, RMSNorm)) and m.weight is not None:
                m.weight.copy_(1.0 + (torch.rand(m.weight.shape, generator=generator) * 2 - 1) * 0.1)


# --- tessera's ONNX files -----------------------------------------------------------------------
# Initializer names and layouts: src/tessera/model/model_builder.h (Linear weights [in, out]).


def _layer_key(b, layer, qk):
    if qk:
        return f"{b}_backbone.transformer_encoder.{layer}."
    return f"{b}_backbone.transformer_encoder.layers.{layer}."


def upstream_key(name, qk):
    """tessera initializer name -> upstream state-dict key (model_builder.h vs MODEL_FAMILY.md)."""
    parts = name.split(".")
    if parts[0] == "fusion":
        rest = ".".join(parts[1:])
        index = {"linear1": "0", "norm": "1", "linear2": "4"}.get(parts[1])
        return f"dim_reducer.{index}.{parts[2]}" if index else f"dim_reducer.0.{rest}"
    b, block = parts[0], parts[1]
    if block == "embed":
        return f"{b}_backbone.embedding.{parts[2]}.{parts[3]}"
    if block == "layers":
        prefix = _layer_key(b, parts[2], qk)
        tail = parts[3:]
        if tail[0] == "ffn":
            return prefix + ".".join(tail[1:])
        if tail[0] == "attn":
            if tail[1] == "out_proj":
                return prefix + ("" if qk else "self_attn.") + "out_proj." + tail[2]
            if tail[1] in ("q_norm", "k_norm"):
                return prefix + tail[1] + ".weight"
            return prefix + "self_attn.in_proj_" + tail[2]  # in_proj (qk: split by the caller)
        return prefix + ".".join(tail)
    pool = f"{b}_backbone.attn_pool."
    kind, leaf = parts[2], parts[3]
    if kind == "gru":
        if leaf.startswith("W_"):
            return pool + f"temporal_context.gru_cell.{leaf}.weight"
        return pool + f"temporal_context.gru_cell.{leaf}"
    if kind == "rnn":
        return pool + f"temporal_context.{leaf}_l0"
    return pool + {"norm": "layer_norm", "score": "query"}[kind] + "." + leaf


def state_from_initializers(initializers, qk):
    """{tessera initializer name: numpy array} -> the upstream state dict of TesseraModel (float32
    copies; [in, out] matrices transposed, a QK-norm layer's packed q | k | v split)."""
    state = {}
    for name, array in initializers.items():
        value = torch.from_numpy(array.copy())
        try:
            key = upstream_key(name, qk)
        except (KeyError, IndexError):
            raise ValueError(f"initializer {name} has no place in a Tessera model")
        if qk and ".attn.in_proj." in name:
            prefix = key.rsplit("self_attn.", 1)[0]
            leaf = "weight" if name.endswith("weight") else "bias"
            for part, chunk in zip("qkv", value.chunk(3, dim=-1)):
                state[f"{prefix}{part}_proj.{leaf}"] = chunk.t().contiguous() if chunk.dim() == 2 \
                    else chunk.contiguous()
            continue
        state[key] = value.t().contiguous() if value.dim() == 2 else value
    return state


def config_from_onnx(metadata, shapes, output_width, heads=None):
    """TesseraModel's config of a tessera ONNX file: the version, heads, QK-norm and v1.1's
    output width from its metadata (`heads` overrides; a file without a version is v1.0, without
    heads 4, without output_dim the graph's `output_width`), the widths from the initializer
    shapes ({name: dims})."""
    def shape(name):
        if name not in shapes:
            raise ValueError(f"no initializer {name} (not a tessera model?)")
        return shapes[name]

    arch = metadata.get("tessera.version", "v1.0")
    if arch not in ARCHS:
        raise ValueError(f"tessera.version {arch!r} is not one of {', '.join(ARCHS)}")
    layers = len({k.split(".")[2] for k in shapes if k.startswith("s2.layers.")})
    if layers == 0:
        raise ValueError("no initializer s2.layers.0.* (not a tessera model?)")
    d = shape("s2.embed.2.weight")[0]
    heads = heads if heads is not None else int(metadata.get("tessera.heads", 4))
    if heads < 1 or d % heads:
        raise ValueError(f"d_model {d} is not divisible by {heads} heads")
    config = dict(arch=arch, d=d, layers=layers, heads=heads,
                  ffn=shape("s2.layers.0.ffn.linear1.weight")[1],
                  s2_bands=shape("s2.embed.0.weight")[0], s1_bands=shape("s1.embed.0.weight")[0],
                  qk_norm=metadata.get("tessera.qk_norm", "0") == "1")
    if arch in ("v1.0-early", "v1.0"):
        config["latent"] = shape("fusion.weight")[1]
    else:
        config["hidden"] = shape("fusion.linear1.weight")[1]
        config["width"] = shape("fusion.linear2.weight")[1]
        config["latent"] = config["width"]
        if arch == "v1.1":  # the first output_dim values of the fusion are kept
            config["latent"] = int(metadata.get("tessera.output_dim", output_width))
    return config


def model_from_onnx(path, heads=None):
    """(TesseraModel in eval mode with the file's weights, its config, the onnx ModelProto) of a
    `tessera make-model` / `tessera import` file. A file that is not one raises ValueError
    naming the path and the problem."""
    import onnx  # only here: the modules above need torch alone
    from onnx import numpy_helper

    try:
        proto = onnx.load(path)
    except Exception as e:  # noqa: BLE001 (protobuf's and onnx's own exception types)
        raise ValueError(f"{path}: not a readable ONNX model ({str(e).strip().splitlines()[0]})")
    metadata = {p.key: p.value for p in proto.metadata_props}
    initializers = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    output = proto.graph.output[0].type.tensor_type.shape.dim if proto.graph.output else []
    output_width = output[-1].dim_value if output else 0
    try:
        config = config_from_onnx(metadata, {k: list(v.shape) for k, v in initializers.items()},
                                  output_width, heads)
        state = state_from_initializers(initializers, config["qk_norm"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}")
    module = TesseraModel(config)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:  # a missing, unexpected or mis-shaped weight; torch's last line
        detail = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
        raise ValueError(f"{path}: the weights do not fit a {config['arch']} model ({detail})")
    return module.eval(), config, proto
