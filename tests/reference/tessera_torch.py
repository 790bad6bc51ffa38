"""The Tessera model family in PyTorch, written from MODEL_FAMILY.md (tessera's shared docs),
for checks of `tessera make-model` and `tessera import` (family_torch_test.py).

Module and parameter names follow the upstream state-dict keys MODEL_FAMILY.md lists, so that
`state_dict()` of these modules is a checkpoint in the upstream layout. Dropout is left out (it
is the identity at inference). Works with torch 1.13 (no nn.RMSNorm there: RMSNorm is here).
"""

import math

import torch
from torch import nn

ARCHS = ("v1.0-early", "v1.0", "v1.1", "v2")


def doy_encoding(doy, d):
    """doy [B, T] -> [B, T, d] float32: channel 2k = sin(doy * w_k), 2k + 1 = cos(doy * w_k),
    w_k = exp(f32(2k) * f32(-ln(10000) / d)), every step in float32."""
    step = torch.tensor(-math.log(10000.0) / d, dtype=torch.float32)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * step)
    angle = doy.to(torch.float32).unsqueeze(-1) * freq
    pe = torch.zeros(*doy.shape, d, dtype=torch.float32)
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
        h = torch.zeros(x.shape[0], x.shape[2], dtype=x.dtype)
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
    fusion's hidden and width, for v2 qk_norm."""

    def __init__(self, config):
        super().__init__()
        c = config
        self.arch, self.latent = c["arch"], c["latent"]
        pooling = {"v1.0-early": "gru", "v1.0": "custom_gru", "v1.1": "custom_gru",
                   "v2": "attention"}[c["arch"]]
        args = (c["d"], c["layers"], c["heads"], c["ffn"], pooling, c.get("qk_norm", False))
        self.s2_backbone = Backbone(10, *args)
        self.s1_backbone = Backbone(2, *args)
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
