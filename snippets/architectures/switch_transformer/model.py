"""Switch Transformer (Fedus, Zoph & Shazeer 2021, arXiv:2101.03961), as one readable file.

A T5 encoder-decoder in which every other feed-forward layer is a *Switch* layer:
a router sends each token to exactly one of E expert FFNs (top-1), each expert
takes at most `capacity` tokens per batch, tokens beyond that are dropped (their
FFN output is zero, so the residual carries them on unchanged), and an auxiliary
loss alpha * E * sum_i f_i * P_i keeps the load balanced. Parameters grow with
E; the work per token does not.

Run from the repo root:  python snippets/architectures/switch_transformer/model.py
It counts parameters at the paper's published sizes (meta device), checks that
one expert equals the dense FFN, that the capacity drops exactly the right
tokens, that the load-balancing loss equals its formula, and draws the routing.
"""
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0


# --8<-- [start:core]
@dataclass
class SwitchConfig:
    vocab_size: int = 32128  # T5's SentencePiece vocabulary (one embedding, shared by input and output)
    d_model: int = 768  # hidden size (Table 9, Switch-Base)
    n_heads: int = 12  # attention heads
    d_kv: int = 64  # size of each head (T5 keeps 64 at every scale)
    d_ff: int = 2048  # expert / FFN hidden width
    gated: bool = True  # FFN_GEGLU: gelu(x W_0) * (x W_1) W_o (Table 9); False = relu(x W_i) W_o (Switch-C)
    n_encoder_layers: int = 12  # 0 = decoder-only language model (no encoder, no cross-attention)
    n_decoder_layers: int = 12
    n_experts: int = 128  # E experts per Switch layer; 0 = dense T5
    expert_every: int = 2  # "Expert Freq." 1/2: every 2nd FFN is a Switch layer; 1 = all of them
    capacity_factor: float = 1.25  # expert capacity = tokens / E * capacity_factor  (eq. 3)
    aux_loss_coef: float = 0.01  # alpha of the load-balancing loss (Sec. 2.2: 10^-2)
    rel_buckets: int = 32  # T5 relative-position buckets, one scalar bias per (bucket, head)
    rel_max_distance: int = 128  # distances beyond this share the last bucket
    init_scale: float = 0.1  # weights ~ N(0, s / fan_in) truncated; Sec. 2.4 uses s = 0.1, not 1.0
    dropout: float = 0.0

    def is_sparse(self, layer):
        return self.n_experts > 0 and layer % self.expert_every == self.expert_every - 1


class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction, no bias."""

    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)  # x / rms(x) * g


def relative_bucket(rel, bidirectional, n_buckets, max_distance):
    """T5: map key - query offsets to buckets; exact for small offsets, logarithmic beyond."""
    bucket = torch.zeros_like(rel)
    if bidirectional:
        n_buckets //= 2
        bucket = (rel > 0).long() * n_buckets  # keys to the right get their own half
        n = rel.abs()
    else:
        n = (-rel).clamp(min=0)  # causal: only keys to the left matter
    exact = n_buckets // 2
    log_bucket = exact + (torch.log(n.clamp(min=1).float() / exact) / math.log(max_distance / exact)
                          * (n_buckets - exact)).long()  # log-spaced from `exact` up to max_distance
    return bucket + torch.where(n < exact, n, log_bucket.clamp(max=n_buckets - 1))


class RelativePositionBias(nn.Module):
    def __init__(self, cfg, bidirectional):
        super().__init__()
        self.cfg, self.bidirectional = cfg, bidirectional
        self.bias = nn.Embedding(cfg.rel_buckets, cfg.n_heads)  # one scalar per (bucket, head)

    def forward(self, n):
        pos = torch.arange(n, device=self.bias.weight.device)
        rel = pos[None, :] - pos[:, None]  # (N, N): key - query
        b = relative_bucket(rel, self.bidirectional, self.cfg.rel_buckets, self.cfg.rel_max_distance)  # (N, N)
        return self.bias(b).permute(2, 0, 1)[None]  # (N, N, H) -> (1, H, N, N)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.h, self.dk = cfg.n_heads, cfg.d_kv
        inner = cfg.n_heads * cfg.d_kv
        self.q, self.k, self.v = (nn.Linear(cfg.d_model, inner, bias=False) for _ in range(3))
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.last_weights = None  # filled when keep_weights is set (for plots)
        self.keep_weights = False

    def forward(self, x, kv=None, bias=None):
        B, N, _ = x.shape
        kv = x if kv is None else kv  # cross-attention reads the encoder output
        M = kv.shape[1]
        q = self.q(x).view(B, N, self.h, self.dk).transpose(1, 2)  # (B, N, H*dk) -> (B, H, N, dk)
        k = self.k(kv).view(B, M, self.h, self.dk).transpose(1, 2)  # (B, H, M, dk)
        v = self.v(kv).view(B, M, self.h, self.dk).transpose(1, 2)  # (B, H, M, dk)
        scores = q @ k.transpose(-2, -1)  # (B, H, N, M); T5 does not divide by sqrt(dk): the init does
        if bias is not None:
            scores = scores + bias  # relative-position bias and causal mask, (1, H, N, M)
        w = scores.softmax(dim=-1)  # (B, H, N, M)
        if self.keep_weights:
            self.last_weights = w.detach()
        return self.o((w @ v).transpose(1, 2).reshape(B, N, self.h * self.dk))  # (B, H, N, dk) -> (B, N, d)


class DenseFFN(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gated = cfg.gated
        self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)  # W_0 (or W_i)
        self.wi_gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=False) if cfg.gated else None  # W_1
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x):
        if self.gated:
            return self.wo(F.gelu(self.wi(x), approximate="tanh") * self.wi_gate(x)), x.new_zeros(())  # GEGLU
        return self.wo(F.relu(self.wi(x))), x.new_zeros(())  # (B, N, d), no auxiliary loss


class SwitchFFN(nn.Module):
    """E expert FFNs and a router: y = p_e(x) * FFN_e(x) for the single best expert e (eq. 2 with k = 1)."""

    def __init__(self, cfg):
        super().__init__()
        E, d, f = cfg.n_experts, cfg.d_model, cfg.d_ff
        self.cfg = cfg
        self.router = nn.Linear(d, E, bias=False)  # W_r: h(x) = W_r x, one logit per expert
        self.wi = nn.Parameter(torch.empty(E, d, f))  # expert e: W_0[e], shape (d, d_ff)
        self.wi_gate = nn.Parameter(torch.empty(E, d, f)) if cfg.gated else None  # W_1[e]
        self.wo = nn.Parameter(torch.empty(E, f, d))  # W_o[e], shape (d_ff, d)
        self.last = {}  # routing statistics of the last call (for plots and checks)

    def experts(self, buf):
        """All experts at once on their buffers: (E, C, d) -> (E, C, d)."""
        h = torch.bmm(buf, self.wi)  # (E, C, d_ff)
        h = F.gelu(h, approximate="tanh") * torch.bmm(buf, self.wi_gate) if self.wi_gate is not None else F.relu(h)
        return torch.bmm(h, self.wo)  # (E, C, d)

    def forward(self, x):
        B, N, d = x.shape
        E = self.cfg.n_experts
        tokens = x.reshape(B * N, d)  # (T, d): routing order is this order, batch-major
        T = tokens.shape[0]
        probs = self.router(tokens.float()).softmax(dim=-1)  # (T, E): p_i(x), eq. 1 (router in float32, Sec. 2.4)
        gate, expert = probs.max(dim=-1)  # (T,), (T,): top-1 probability and expert
        onehot = F.one_hot(expert, E).float()  # (T, E)

        # load-balancing loss, eqs. 4-6: f_i = share of tokens sent to i, P_i = mean router probability of i
        f = onehot.mean(dim=0)  # (E,), not differentiable
        P = probs.mean(dim=0)  # (E,), differentiable: this is what the loss trains
        aux = self.cfg.aux_loss_coef * E * (f * P).sum()  # alpha * N * sum_i f_i P_i

        # capacity, eq. 3: each expert takes its first `capacity` tokens in routing order
        capacity = int(T / E * self.cfg.capacity_factor)
        slot = (onehot.cumsum(dim=0) * onehot).sum(dim=-1).long() - 1  # (T,): 0, 1, 2, ... within each expert
        kept = slot < capacity  # (T,): tokens beyond capacity are dropped

        buf = tokens.new_zeros(E, capacity, d)  # (E, C, d): fixed-size expert batches
        buf[expert[kept], slot[kept]] = tokens[kept]  # dispatch
        out = tokens.new_zeros(T, d)  # dropped tokens keep output 0: the residual passes them on
        out[kept] = self.experts(buf)[expert[kept], slot[kept]] * gate[kept, None].to(x.dtype)  # combine, eq. 2
        self.last = {"f": f.detach(), "P": P.detach(), "kept": kept, "expert": expert, "capacity": capacity,
                     "dropped_frac": 1 - kept.float().mean().item()}
        return out.view(B, N, d), aux  # (B, N, d), scalar


class Block(nn.Module):
    """Pre-norm T5 block: self-attention, (cross-attention), FFN or Switch FFN, each with a residual."""

    def __init__(self, cfg, layer, cross):
        super().__init__()
        self.norm_self, self.self_attn = RMSNorm(cfg.d_model), Attention(cfg)
        self.norm_cross = RMSNorm(cfg.d_model) if cross else None
        self.cross_attn = Attention(cfg) if cross else None
        self.norm_ffn = RMSNorm(cfg.d_model)
        self.ffn = SwitchFFN(cfg) if cfg.is_sparse(layer) else DenseFFN(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, bias, enc=None):
        x = x + self.drop(self.self_attn(self.norm_self(x), bias=bias))  # (B, N, d)
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn(self.norm_cross(x), kv=enc))  # (B, N, d)
        h, aux = self.ffn(self.norm_ffn(x))  # (B, N, d): zero for dropped tokens
        return x + self.drop(h), aux


class SwitchTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)  # shared: encoder, decoder, output
        self.encoder = nn.ModuleList(Block(cfg, i, cross=False) for i in range(cfg.n_encoder_layers))
        self.decoder = nn.ModuleList(Block(cfg, i, cross=cfg.n_encoder_layers > 0)
                                     for i in range(cfg.n_decoder_layers))
        self.enc_bias = RelativePositionBias(cfg, bidirectional=True) if cfg.n_encoder_layers else None
        self.dec_bias = RelativePositionBias(cfg, bidirectional=False)
        self.enc_norm = RMSNorm(cfg.d_model) if cfg.n_encoder_layers else None
        self.dec_norm = RMSNorm(cfg.d_model)
        self.apply(self._init)

    def _init(self, m):
        """Truncated normal with std sqrt(s / fan_in), s = init_scale (Sec. 2.4)."""
        s = self.cfg.init_scale
        if isinstance(m, nn.Linear):
            std = math.sqrt(s / m.in_features)
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
        elif isinstance(m, SwitchFFN):
            for w in (m.wi, m.wi_gate, m.wo):
                if w is not None:
                    std = math.sqrt(s / w.shape[1])  # fan-in of (E, fan_in, fan_out)
                    nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)
        elif isinstance(m, nn.Embedding):  # a linear map of a one-hot input: fan_in = 1
            nn.init.normal_(m.weight, std=math.sqrt(s))

    def forward(self, dec_ids, enc_ids=None):
        aux = 0.0
        enc = None
        if self.encoder:
            e = self.embed(enc_ids)  # (B, M, d)
            bias = self.enc_bias(enc_ids.shape[1])  # (1, H, M, M)
            for blk in self.encoder:
                e, a = blk(e, bias)
                aux = aux + a
            enc = self.enc_norm(e)  # (B, M, d)
        n = dec_ids.shape[1]
        causal = torch.full((n, n), float("-inf"), device=dec_ids.device).triu(1)  # (N, N): no looking ahead
        bias = self.dec_bias(n) + causal  # (1, H, N, N)
        x = self.embed(dec_ids)  # (B, N, d)
        for blk in self.decoder:
            x, a = blk(x, bias, enc)
            aux = aux + a
        logits = self.dec_norm(x) @ self.embed.weight.T * self.cfg.d_model ** -0.5  # (B, N, vocab), tied (T5)
        return logits, aux  # train on cross_entropy(logits) + aux
# --8<-- [end:core]


def param_formula(cfg):
    """Closed form of the parameter count, term by term."""
    d, inner, f, E = cfg.d_model, cfg.n_heads * cfg.d_kv, cfg.d_ff, cfg.n_experts
    attn = 4 * d * inner  # q, k, v, o
    ffn = (3 if cfg.gated else 2) * d * f  # one FFN (or one expert)
    switch = E * ffn + d * E  # E experts + router

    def stack(n, cross):
        sparse = sum(cfg.is_sparse(i) for i in range(n))
        per_layer = attn * (2 if cross else 1) + d * (3 if cross else 2)  # attention(s) + RMSNorm scales
        return n * per_layer + sparse * switch + (n - sparse) * ffn + d  # + final norm

    enc = stack(cfg.n_encoder_layers, False) + cfg.rel_buckets * cfg.n_heads if cfg.n_encoder_layers else 0
    dec = stack(cfg.n_decoder_layers, cfg.n_encoder_layers > 0) + cfg.rel_buckets * cfg.n_heads
    return cfg.vocab_size * d + enc + dec


BASE = SwitchConfig()  # Switch-Base, Table 9
# Published sizes. Table 9 of Fedus et al. (rows: d_model, GEGLU, d_ff, d_kv, heads, layers, experts, freq.),
# and the caption of Figure 4 (T5-Base 223M; the 256-expert Switch-Base 14.7B).
PAPER = {  # key: (name, config, paper's figure, its rounding unit, where)
    "t5_base": ("T5-Base", replace(BASE, n_experts=0), 223e6, 1e6, "Fig. 4 caption: 223M"),
    "switch_base": ("Switch-Base", BASE, 7e9, 1e9, "Table 9: 7B"),
    "switch_base_256": ("Switch-Base, 256 experts", replace(BASE, n_experts=256), 14.7e9, 0.1e9,
                        "Fig. 4 caption: 14.7B"),
    "switch_c": ("Switch-C", SwitchConfig(d_model=2080, gated=False, d_ff=6144, d_kv=64, n_heads=32, n_encoder_layers=15,
                              n_decoder_layers=15, n_experts=2048, expert_every=1), 1571e9, 1e9, "Table 9: 1571B"),
}
# Table 9 rows whose printed size does not follow from their printed hyper-parameters under the same
# formula: reported, not asserted.
UNMATCHED = {
    "switch_large": ("Switch-Large", SwitchConfig(d_model=1024, d_ff=2816, n_heads=16, n_encoder_layers=24,
                                                  n_decoder_layers=24), 26e9, "Table 9: 26B"),
    "switch_xxl": ("Switch-XXL", SwitchConfig(d_model=4096, d_ff=10240, n_heads=64, n_encoder_layers=24, n_decoder_layers=24,
                                n_experts=64), 395e9, "Table 9: 395B"),
}


def independent_aux_loss(probs, alpha):
    """eqs. 4-6 with plain Python loops over tokens and experts."""
    probs = probs.tolist()
    T, E = len(probs), len(probs[0])
    f = [0.0] * E
    P = [0.0] * E
    for p in probs:
        f[max(range(E), key=lambda i: p[i])] += 1 / T  # 1{argmax p(x) = i} / T
        for i in range(E):
            P[i] += p[i] / T
    return alpha * E * sum(f[i] * P[i] for i in range(E))


def check_one_expert():
    """With E = 1 a Switch layer is the dense FFN: the router's softmax over one expert is exactly 1."""
    torch.manual_seed(SEED)
    errs = {}
    for gated in (True, False):
        cfg = SwitchConfig(vocab_size=64, d_model=32, n_heads=4, d_kv=8, d_ff=64, gated=gated, n_encoder_layers=2,
                           n_decoder_layers=2, n_experts=1, expert_every=1, capacity_factor=1.0)
        moe = SwitchTransformer(cfg)
        dense = SwitchTransformer(replace(cfg, n_experts=0))
        sd = {k: v for k, v in moe.state_dict().items() if ".ffn." not in k}
        dense.load_state_dict(sd, strict=False)
        for bm, bd in zip(list(moe.encoder) + list(moe.decoder), list(dense.encoder) + list(dense.decoder)):
            with torch.no_grad():  # expert 0's weights into the dense FFN (nn.Linear stores W^T)
                bd.ffn.wi.weight.copy_(bm.ffn.wi[0].T)
                bd.ffn.wo.weight.copy_(bm.ffn.wo[0].T)
                if gated:
                    bd.ffn.wi_gate.weight.copy_(bm.ffn.wi_gate[0].T)
        x = torch.randn(3, 10, 32)
        y_moe, aux = moe.decoder[0].ffn(x)
        y_dense, _ = dense.decoder[0].ffn(x)
        torch.testing.assert_close(y_moe, y_dense, rtol=1e-6, atol=1e-6)
        assert moe.decoder[0].ffn.last["dropped_frac"] == 0
        enc, dec = torch.randint(0, 64, (3, 12)), torch.randint(0, 64, (3, 9))
        lm, aux_m = moe(dec, enc)
        ld, aux_d = dense(dec, enc)
        torch.testing.assert_close(lm, ld, rtol=1e-5, atol=1e-5)
        assert abs(aux_m.item() - 4 * cfg.aux_loss_coef) < 1e-7  # 4 Switch layers, each alpha * 1 * 1 * 1
        errs["gated" if gated else "relu"] = (lm - ld).abs().max().item()
    return errs


def check_capacity():
    """Force a routing, then check token by token who is kept, who is dropped, and what each receives."""
    torch.manual_seed(SEED)
    E, d = 4, 16
    cfg = SwitchConfig(vocab_size=64, d_model=d, n_heads=2, d_kv=8, d_ff=32, n_encoder_layers=0,
                       n_decoder_layers=1, n_experts=E, expert_every=1, capacity_factor=1.0)
    block = SwitchTransformer(cfg).decoder[0]
    ffn = block.ffn
    route = [0, 0, 1, 0, 2, 0, 0, 1, 3, 1, 0, 2, 1, 1, 0, 2,  # batch row 0: expert 0 is popular
             2, 2, 0, 3, 3, 1, 2, 2, 0, 1, 3, 2, 2, 0, 1, 3]  # batch row 1
    B, N = 2, 16
    x = torch.randn(B, N, d)
    with torch.no_grad():  # router reads the first E features; make feature route[t] large for token t
        ffn.router.weight.zero_()
        ffn.router.weight[:, :E] = torch.eye(E)
        xt = x.view(-1, d)
        xt[:, :E] = 0
        xt[torch.arange(B * N), torch.tensor(route)] = 8.0
        x = xt.view(B, N, d)
    y, _ = ffn(x)
    capacity = int(B * N / E * cfg.capacity_factor)  # 32 tokens / 4 experts * 1.0 = 8
    assert ffn.last["capacity"] == capacity

    # the expected outcome, computed with a counter per expert
    seen = [0] * E
    expected_kept = []
    for e in route:
        expected_kept.append(seen[e] < capacity)
        seen[e] += 1
    assert ffn.last["kept"].tolist() == expected_kept, "kept/dropped must follow routing order"
    assert ffn.last["expert"].tolist() == route

    probs = ffn.router(x.view(-1, d)).softmax(-1)  # (T, E)
    flat = y.view(-1, d)
    for t, (e, keep) in enumerate(zip(route, expected_kept)):
        xt = x.view(-1, d)[t]
        if keep:  # gate * expert e's own FFN, computed for this token alone
            h = F.gelu(xt @ ffn.wi[e], approximate="tanh") * (xt @ ffn.wi_gate[e])
            torch.testing.assert_close(flat[t], probs[t, e] * (h @ ffn.wo[e]), rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(flat[t], torch.zeros(d)), "a dropped token gets no expert output"

    # through the block: the FFN sublayer leaves a dropped token's residual stream untouched
    bias = torch.zeros(1, cfg.n_heads, N, N)
    after_attn = x + block.self_attn(block.norm_self(x), bias=bias)  # (B, N, d)
    out, _ = block(x, bias)
    dropped = ~torch.tensor(expected_kept).view(B, N)
    assert torch.equal(out[dropped], after_attn[dropped]), "dropped tokens pass through the residual exactly"
    assert not torch.equal(out[~dropped], after_attn[~dropped])
    counts = [route.count(e) for e in range(E)]
    return {"route": route, "kept": expected_kept, "capacity": capacity, "counts": counts,
            "n_dropped": expected_kept.count(False), "tokens": B * N, "experts": E}


def check_aux_loss():
    torch.manual_seed(SEED)
    cfg = SwitchConfig(vocab_size=64, d_model=24, n_heads=2, d_kv=8, d_ff=32, n_encoder_layers=0,
                       n_decoder_layers=1, n_experts=5, expert_every=1)
    ffn = SwitchTransformer(cfg).decoder[0].ffn
    with torch.no_grad():
        ffn.router.weight.normal_(std=0.3)
    x = torch.randn(4, 25, 24) + 1.0  # (B, N, d): a shared offset skews the routing, f and P far from uniform
    _, aux = ffn(x)
    probs = ffn.router(x.view(-1, 24)).softmax(-1)  # (T, E)
    ref = independent_aux_loss(probs, cfg.aux_loss_coef)
    assert abs(aux.item() - ref) < 1e-6, (aux.item(), ref)
    # a hand-worked case: 4 tokens, 2 experts
    p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
    # f = (3/4, 1/4), P = (0.65, 0.35): loss = 0.01 * 2 * (0.75 * 0.65 + 0.25 * 0.35) = 0.0115
    assert abs(independent_aux_loss(p, 0.01) - 0.0115) < 1e-12
    # the gradient reaches the router only through P (f is a count)
    aux.backward()
    assert ffn.router.weight.grad.abs().sum() > 0
    f, P = ffn.last["f"], ffn.last["P"]
    return {"value": aux.item(), "independent": ref, "f": f.tolist(), "P": P.tolist(),
            "uniform_value": cfg.aux_loss_coef}


def plot_routing(cap, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    E, C, route, kept = cap["experts"], cap["capacity"], cap["route"], cap["kept"]
    colours = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 2.7), gridspec_kw={"width_ratios": [1.45, 1]})
    # left: tokens in routing order (batch row by batch row), coloured by expert; dropped tokens crossed out
    per_row = len(route) // 2
    for t, (e, k) in enumerate(zip(route, kept)):
        x0, y0 = t % per_row, 1.3 * (1 - t // per_row)
        ax0.add_patch(Rectangle((x0, y0), 0.9, 0.9, fc=colours[e] if k else "white", ec=colours[e], lw=1.2))
        ax0.text(x0 + 0.45, y0 + 0.45, str(e), ha="center", va="center", fontsize=8,
                 color="white" if k else colours[e])
        if not k:
            ax0.plot([x0 + 0.1, x0 + 0.8], [y0 + 0.1, y0 + 0.8], color="#d62728", lw=1.4)
    for r in range(2):
        ax0.text(-0.3, 1.3 * (1 - r) + 0.45, f"sequence {r}", ha="right", va="center", fontsize=8)
    ax0.set_xlim(-3.2, per_row + 0.2)
    ax0.set_ylim(-0.4, 2.6)
    ax0.set_aspect("equal")
    ax0.axis("off")
    ax0.set_title(f"{len(route)} tokens in routing order (digit: chosen expert; crossed: dropped)", fontsize=9)
    # right: each expert's buffer of C slots, and its overflow
    for e in range(E):
        n = cap["counts"][e]
        for s in range(max(n, C)):
            inside = s < C
            filled = s < n
            ax1.add_patch(Rectangle((s, E - 1 - e), 0.9, 0.8,
                                    fc=(colours[e] if inside else "white") if filled else "white",
                                    ec=colours[e] if filled else "0.7", lw=1.0, ls="-" if inside else "--"))
            if filled and not inside:
                ax1.plot([s + 0.1, s + 0.8], [E - 1 - e + 0.1, E - 1 - e + 0.7], color="#d62728", lw=1.2)
        ax1.text(-0.3, E - 1 - e + 0.4, f"expert {e}", ha="right", va="center", fontsize=8)
    ax1.axvline(C - 0.05, color="0.3", lw=1, ls=":")
    ax1.text(C - 0.05, -0.25, f"capacity = {C}", ha="center", va="top", fontsize=8)
    ax1.set_xlim(-2.6, max(cap["counts"]) + 0.5)
    ax1.set_ylim(-0.9, E + 0.2)
    ax1.set_aspect("equal")
    ax1.axis("off")
    ax1.set_title("expert buffers (empty slots are padding, red: overflow)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    results = {"params": {}, "unmatched": {}}

    # 1) Parameter count at the published sizes, without allocating (meta device).
    print("Parameters at the published configurations (Fedus et al. 2021):")
    for key, (name, cfg, paper, rounding, where) in PAPER.items():
        with torch.device("meta"):
            model = SwitchTransformer(cfg)
        count = sum(p.numel() for p in model.parameters())
        assert count == param_formula(cfg), (name, count, param_formula(cfg))
        assert abs(count - paper) <= rounding / 2, f"{name}: {count:,} does not round to the paper's {where}"
        results["params"][key] = {"count": count, "paper": paper, "source": where, "billions": count / 1e9,
                                  "millions": count / 1e6}
        print(f"  {name:25s} {count:>17,d}  ({count / 1e9:8.3f}B)   paper: {where}")
    for key, (name, cfg, paper, where) in UNMATCHED.items():
        count = param_formula(cfg)
        results["unmatched"][key] = {"count": count, "paper": paper, "source": where, "billions": count / 1e9}
        print(f"  {name:25s} {count:>17,d}  ({count / 1e9:8.3f}B)   paper: {where} (not asserted; see page)")
    xxl128 = param_formula(replace(UNMATCHED["switch_xxl"][1], n_experts=128))
    results["unmatched"]["switch_xxl"]["with_128_experts_billions"] = xxl128 / 1e9
    print(f"  {'Switch-XXL, 128 experts':25s} {xxl128:>17,d}  ({xxl128 / 1e9:8.3f}B)")
    results["params"]["count"] = results["params"]["switch_base"]["count"]
    base = PAPER["switch_base"][1]
    dense = param_formula(replace(base, n_experts=0))
    results["params"]["base_over_dense"] = results["params"]["count"] / dense

    # 2) One expert == the dense FFN.
    errs = check_one_expert()
    print(f"E = 1 equals the dense FFN (whole model, max |diff| of logits): GEGLU {errs['gated']:.1e}, "
          f"ReLU {errs['relu']:.1e}")
    results["one_expert_max_abs_err"] = max(errs.values())

    # 3) Capacity: which tokens are dropped, and what they receive.
    cap = check_capacity()
    print(f"Capacity: {cap['tokens']} tokens, {cap['experts']} experts, factor 1.0 -> capacity {cap['capacity']}; "
          f"routed per expert {cap['counts']}; dropped {cap['n_dropped']}: exactly the tokens past "
          f"capacity in routing order, output 0, residual unchanged")
    results["capacity"] = {k: cap[k] for k in ("capacity", "counts", "n_dropped", "tokens", "experts")}

    # 4) The load-balancing loss equals its formula.
    aux = check_aux_loss()
    print(f"Load-balancing loss, skewed routing (f = {[round(v, 2) for v in aux['f']]}): "
          f"layer {aux['value']:.6f}, independent loop {aux['independent']:.6f} "
          f"(alpha = {aux['uniform_value']}; it is alpha when f and P are uniform)")
    results["aux_loss"] = aux

    plot_routing(cap, OUT / "routing.svg")
    (OUT / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
