"""Longformer (Beltagy, Peters & Cohan 2020, arXiv:2004.05150), as one readable file.

The character-level language model of the paper's Section 4: a pre-layernorm
Transformer-XL-style stack (relative sinusoidal positions, GeLU) whose
self-attention is replaced by Longformer attention: each token attends to a
sliding window of w positions on each side (dilated on a few heads), plus a
handful of *global* tokens that attend to, and are attended by, every token.
The band is computed tile by tile, so time and memory grow like N * w, not N^2.

Run from the repo root:  python snippets/architectures/longformer/model.py
It counts parameters at the paper's published sizes (meta device), checks the
chunked attention against SDPA with the explicit N x N mask, measures peak
memory against N (one fresh process per N) and writes results.json and a
figure of the attention pattern.
"""
# build: measures=memory  (peak memory against sequence length)
import json
import math
import multiprocessing as mp
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
NEG = -1e30  # "minus infinity" for masked scores that stays finite (a fully masked padded row gives no NaN)


# --8<-- [start:core]
@dataclass
class LongformerConfig:
    vocab_size: int = 204  # characters of enwik8 (assumed 204; each symbol adds d_model parameters)
    d_model: int = 512  # hidden size (Table 12: "512 hidden size as in Dai et al. 2019")
    n_head: int = 8  # attention heads; head size d_model / n_head = 64
    d_ff: int = 2048  # feed-forward width, 4 x d_model as in Transformer-XL
    n_layer: int = 12  # 12 = small model (Table 2), 30 = large model (Table 3)
    window: int = 512  # w: positions attended on each side (Table 12: phase-5 bottom layer); per layer below
    windows: tuple = ()  # optional per-layer w; the paper grows w from bottom to top (Sec. 4.1)
    dilations: tuple = ()  # per-layer dilation gap (0 = none); Table 12: 0,...,0,1,1,2,2,3,3 (small)
    n_dilated_heads: int = 2  # dilation is applied to these heads only (Table 12: "2 heads only")
    causal: bool = True  # autoregressive char-LM (Sec. 4); False = bidirectional (MLM, QA, ...)
    global_proj: bool = False  # separate Q_g, K_g, V_g for global attention (Sec. 3.1; pretrained models)
    dropout: float = 0.0  # Table 12 uses 0.2 (small) / 0.4 (large); 0 here for exact checks

    def window_of(self, layer):
        return self.windows[layer] if self.windows else self.window

    def deltas_of(self, layer):
        """Per-head stride delta = dilation + 1: head h sees keys j with (i - j) % delta == 0."""
        dil = self.dilations[layer] if self.dilations else 0
        return [dil + 1 if h < self.n_dilated_heads else 1 for h in range(self.n_head)]


def sinusoid(lags, d):
    """(L,) integer lags -> (L, d) sinusoidal encodings [sin | cos] (Transformer-XL's R_{i-j})."""
    inv_freq = 1.0 / 10000 ** (torch.arange(0, d, 2, device=lags.device) / d)  # (d/2,)
    angles = lags.float()[:, None] * inv_freq[None, :]  # (L, d/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (L, d)


def allowed_mask(n, w, deltas, is_global, causal):
    """(H, N, N) bool, the explicit Longformer pattern: query i may attend key j iff

    band:   |i - j| <= w * delta_h  and  (i - j) % delta_h == 0   (dilated sliding window)
    global: i or j is a global token
    and, for a causal model, j <= i.
    """
    i = torch.arange(n, device=is_global.device)[:, None]  # (N, 1)
    j = torch.arange(n, device=is_global.device)[None, :]  # (1, N)
    lag = i - j  # (N, N)
    d = torch.tensor(deltas, device=is_global.device)[:, None, None]  # (H, 1, 1)
    band = (lag.abs() <= w * d) & (lag % d == 0)  # (H, N, N)
    glob = is_global[:, None] | is_global[None, :]  # (N, N)
    allowed = band | glob  # (H, N, N)
    return allowed & (lag >= 0) if causal else allowed


def masked_sdpa_attention(qc, qp, k, v, qgc, qgp, kg, vg, rel, w, deltas, is_global, causal):
    """Reference: SDPA with the explicit (H, N, N) mask. Exact, but O(N^2) memory.

    score(i, j) = [(q_i + u) . k_j + (q_i + v) . r_{i-j}] / sqrt(d_h)   (Transformer-XL, Dai et al. 2019)
    qc = q + u, qp = q + v: (B, H, N, d_h); rel: (H, 2L+1, d_h) holds r_lag for lag = -L..L.
    Global rows use their own projections (qgc, qgp, kg, vg) and attend to every (allowed) key.
    """
    n, dh = qc.shape[-2], qc.shape[-1]
    center = (rel.shape[1] - 1) // 2  # index of lag 0
    lag = torch.arange(n, device=qc.device)[:, None] - torch.arange(n, device=qc.device)[None, :]  # (N, N)
    rel_full = rel[:, lag + center]  # (H, N, N, d_h): r_{i-j} for every pair  <- the N x N part
    allowed = allowed_mask(n, w, deltas, is_global, causal)  # (H, N, N)
    pos = torch.einsum("bhid,hijd->bhij", qp, rel_full) / math.sqrt(dh)  # (B, H, N, N)
    bias = pos.masked_fill(~allowed, float("-inf"))  # (B, H, N, N)
    out = F.scaled_dot_product_attention(qc, k, v, attn_mask=bias)  # (B, H, N, d_h)
    g = is_global.nonzero().squeeze(-1)  # (G,) global positions
    if g.numel():
        gpos = torch.einsum("bhgd,hgjd->bhgj", qgp[:, :, g], rel_full[:, g]) / math.sqrt(dh)  # (B, H, G, N)
        gbias = gpos.masked_fill(~allowed[:, g], float("-inf"))  # (B, H, G, N)
        out_g = F.scaled_dot_product_attention(qgc[:, :, g], kg, vg, attn_mask=gbias)  # (B, H, G, d_h)
        out = out.index_copy(2, g, out_g)  # global rows replaced
    return out


def sliding_chunks_attention(qc, qp, k, v, qgc, qgp, kg, vg, rel, w, deltas, is_global, causal):
    """The same attention in O(N * w): tiles of S = w * max(delta) queries see 3 key tiles.

    Query tile b holds queries i = b*S + r (r < S) and sees key tiles b-1, b, b+1:
    j = (b-1)*S + c (c < 3S), so i - j = S + r - c, the same (S, 3S) pattern in every tile.
    Every key within reach (|i - j| <= w * delta <= S) is inside those 3 tiles.
    """
    B, H, N, dh = qc.shape
    scale = 1.0 / math.sqrt(dh)
    S = w * max(deltas)  # tile size: the longest reach of any head
    nb = -(-N // S)  # number of tiles, ceil(N / S)
    Np = nb * S  # padded length
    center = (rel.shape[1] - 1) // 2  # index of lag 0 in rel
    dev = qc.device

    # --- band: content and position scores, tile by tile ---
    qcb = F.pad(qc, (0, 0, 0, Np - N)).view(B, H, nb, S, dh)  # (B, H, nb, S, d_h)
    qpb = F.pad(qp, (0, 0, 0, Np - N)).view(B, H, nb, S, dh)  # (B, H, nb, S, d_h)
    kt = F.pad(k, (0, 0, S, Np - N + S)).unfold(2, 3 * S, S)  # (B, H, nb, d_h, 3S): key tiles b-1, b, b+1
    vt = F.pad(v, (0, 0, S, Np - N + S)).unfold(2, 3 * S, S).transpose(-2, -1)  # (B, H, nb, 3S, d_h)
    r = torch.arange(S, device=dev)[:, None]  # (S, 1)
    c = torch.arange(3 * S, device=dev)[None, :]  # (1, 3S)
    lag = S + r - c  # (S, 3S): i - j inside every tile
    rel_tile = rel[:, lag + center]  # (H, S, 3S, d_h): r_{i-j} for one tile, shared by all tiles
    band = qcb @ kt + torch.einsum("bhnsd,hscd->bhnsc", qpb, rel_tile)  # (B, H, nb, S, 3S)  <- N * 3S scores

    d = torch.tensor(deltas, device=dev)[:, None, None]  # (H, 1, 1)
    ok = (lag.abs() <= w * d) & (lag % d == 0)  # (H, S, 3S): in the (dilated) window
    if causal:
        ok = ok & (lag >= 0)
    j = torch.arange(nb, device=dev)[:, None] * S - S + c  # (nb, 3S): key position of each tile column
    key_ok = (j >= 0) & (j < N)  # (nb, 3S): not padding
    key_ok = key_ok & ~is_global[j.clamp(0, N - 1)]  # global keys are scored once, below
    band = band.masked_fill(~(ok[:, None] & key_ok[None, :, None, :]), NEG)  # (B, H, nb, S, 3S)

    # --- every query also scores the G global keys ---
    g = is_global.nonzero().squeeze(-1)  # (G,)
    G = g.numel()
    lag_g = torch.arange(Np, device=dev)[:, None] - g[None, :]  # (Np, G)
    rel_g = rel[:, lag_g.clamp(-center, center) + center]  # (H, Np, G, d_h)
    qc_p, qp_p = F.pad(qc, (0, 0, 0, Np - N)), F.pad(qp, (0, 0, 0, Np - N))  # (B, H, Np, d_h)
    sg = qc_p @ k[:, :, g].transpose(-2, -1) + torch.einsum("bhnd,hngd->bhng", qp_p, rel_g)  # (B, H, Np, G)
    if causal:
        sg = sg.masked_fill(lag_g < 0, NEG)  # (B, H, Np, G)

    # --- one softmax over [window keys | global keys] per query ---
    scores = torch.cat([band, sg.view(B, H, nb, S, G)], dim=-1) * scale  # (B, H, nb, S, 3S + G)
    p = scores.softmax(dim=-1)  # (B, H, nb, S, 3S + G)
    out = p[..., :3 * S] @ vt + p[..., 3 * S:] @ v[:, :, None, g]  # (B, H, nb, S, d_h)
    out = out.reshape(B, H, Np, dh)[:, :, :N]  # (B, H, N, d_h)

    # --- global rows: G queries x N keys with the global projections ---
    if G:
        lag_r = g[:, None] - torch.arange(N, device=dev)[None, :]  # (G, N)
        rel_r = rel[:, lag_r + center]  # (H, G, N, d_h)
        s = qgc[:, :, g] @ kg.transpose(-2, -1) + torch.einsum("bhgd,hgnd->bhgn", qgp[:, :, g], rel_r)  # (B, H, G, N)
        if causal:
            s = s.masked_fill(lag_r < 0, NEG)  # (B, H, G, N)
        out = out.index_copy(2, g, (s * scale).softmax(dim=-1) @ vg)  # (B, H, N, d_h)
    return out


IMPLS = {"chunked": sliding_chunks_attention, "sdpa_mask": masked_sdpa_attention}


class LongformerSelfAttention(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        d = cfg.d_model
        self.n_head, self.d_head = cfg.n_head, d // cfg.n_head
        self.w, self.deltas, self.causal = cfg.window_of(layer), cfg.deltas_of(layer), cfg.causal
        self.qkv = nn.Linear(d, 3 * d, bias=False)  # Q_s, K_s, V_s (no biases, as Transformer-XL)
        self.qkv_global = nn.Linear(d, 3 * d, bias=False) if cfg.global_proj else None  # Q_g, K_g, V_g
        if self.qkv_global is not None:
            with torch.no_grad():
                self.qkv_global.weight.copy_(self.qkv.weight)  # start equal to Q_s, K_s, V_s (Sec. 3.1)
        self.r_net = nn.Linear(d, d, bias=False)  # W_{k,R}: relative sinusoid -> key space
        self.proj = nn.Linear(d, d, bias=False)  # output projection W_o

    def heads(self, t):
        B, N, _ = t.shape
        return t.view(B, N, 3, self.n_head, self.d_head).permute(2, 0, 3, 1, 4)  # (3, B, H, N, d_h)

    def forward(self, x, u, v_bias, is_global, impl="chunked"):
        B, N, d = x.shape
        q, k, v = self.heads(self.qkv(x))  # each (B, H, N, d_h)
        qg, kg, vg = self.heads(self.qkv_global(x)) if self.qkv_global is not None else (q, k, v)
        L = max(N, 2 * self.w * max(self.deltas))  # largest lag any implementation looks up
        lags = torch.arange(-L, L + 1, device=x.device)  # (2L+1,)
        rel = self.r_net(sinusoid(lags, d).to(x.dtype)).view(2 * L + 1, self.n_head, self.d_head).transpose(0, 1)  # (H, 2L+1, d_h)
        u, v_bias = u[:, None], v_bias[:, None]  # (H, 1, d_h): broadcast over positions
        y = IMPLS[impl](q + u, q + v_bias, k, v, qg + u, qg + v_bias, kg, vg,
                        rel, self.w, self.deltas, is_global, self.causal)  # (B, H, N, d_h)
        return self.proj(y.transpose(1, 2).reshape(B, N, d))  # (B, H, N, d_h) -> (B, N, H, d_h) -> (B, N, d)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)  # d -> d_ff
        self.out = nn.Linear(cfg.d_ff, cfg.d_model)  # d_ff -> d

    def forward(self, x):
        return self.out(F.gelu(self.fc(x)))  # W_2 GeLU(W_1 x + b_1) + b_2  (Table 12: GeLU)


class Block(nn.Module):
    def __init__(self, cfg, layer):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = LongformerSelfAttention(cfg, layer)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, u, v_bias, is_global, impl="chunked"):
        x = x + self.drop(self.attn(self.ln1(x), u, v_bias, is_global, impl))  # pre-layernorm (Table 12)
        return x + self.drop(self.mlp(self.ln2(x)))  # (B, N, d)


class Longformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        dh = cfg.d_model // cfg.n_head
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)  # characters -> vectors; no absolute positions
        nn.init.normal_(self.tok.weight, std=0.02)  # small: it is also the output layer
        self.r_w_bias = nn.Parameter(torch.zeros(cfg.n_head, dh))  # u: content bias, shared by all layers
        self.r_r_bias = nn.Parameter(torch.zeros(cfg.n_head, dh))  # v: position bias, shared by all layers
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, idx, is_global=None, impl="chunked"):
        B, N = idx.shape
        if is_global is None:
            is_global = torch.zeros(N, dtype=torch.bool, device=idx.device)  # (N,): no global tokens
        x = self.drop(self.tok(idx))  # (B, N, d)
        for blk in self.blocks:
            x = blk(x, self.r_w_bias, self.r_r_bias, is_global, impl)  # (B, N, d)
        return self.ln_f(x) @ self.tok.weight.T  # (B, N, vocab): output layer tied to the embedding
# --8<-- [end:core]


def attention_weights(attn, x, u, v_bias, is_global):
    """(B, H, N, N) weights of one LongformerSelfAttention on input x, built explicitly (for plots; O(N^2))."""
    B, N, d = x.shape
    q, k, v = attn.heads(attn.qkv(x))  # each (B, H, N, d_h)
    qg, kg, vg = attn.heads(attn.qkv_global(x)) if attn.qkv_global is not None else (q, k, v)
    lag = torch.arange(N)[:, None] - torch.arange(N)[None, :]  # (N, N)
    rel = attn.r_net(sinusoid(torch.arange(-(N - 1), N), d)).view(2 * N - 1, attn.n_head, attn.d_head)  # (2N-1, H, d_h)
    rel_full = rel.transpose(0, 1)[:, lag + N - 1]  # (H, N, N, d_h)
    u, v_bias = u[:, None], v_bias[:, None]  # (H, 1, d_h)

    def scores(qq, kk):
        return ((qq + u) @ kk.transpose(-2, -1)
                + torch.einsum("bhid,hijd->bhij", qq + v_bias, rel_full)) / math.sqrt(attn.d_head)  # (B, H, N, N)

    s = torch.where(is_global[None, None, :, None], scores(qg, kg), scores(q, k))  # global rows: Q_g, K_g
    allowed = allowed_mask(N, attn.w, attn.deltas, is_global, attn.causal)  # (H, N, N)
    return s.masked_fill(~allowed, float("-inf")).softmax(dim=-1)  # (B, H, N, N)


def param_formula(cfg):
    """Closed form of the parameter count, term by term."""
    d, f, L, V, H = cfg.d_model, cfg.d_ff, cfg.n_layer, cfg.vocab_size, cfg.n_head
    attn = 3 * d * d + d * d + d * d + (3 * d * d if cfg.global_proj else 0)  # Q,K,V + W_R + W_o (+ Q_g,K_g,V_g)
    mlp = d * f + f + f * d + d  # two linear layers with biases
    norms = 2 * 2 * d  # two LayerNorms (scale + shift)
    return L * (attn + mlp + norms) + V * d + 2 * (d // H) * H + 2 * d  # + embedding, u and v, final LayerNorm


# Published sizes (Beltagy et al. 2020): Table 2 (small, 41M), Table 3 (large, 102M); configs from Table 12.
PAPER = {
    "small": (LongformerConfig(n_layer=12, dilations=(0,) * 6 + (1, 1, 2, 2, 3, 3)), 41e6, "Table 2"),
    "large": (LongformerConfig(n_layer=30, dilations=(0,) * 15 + (1,) * 5 + (2,) * 5 + (3,) * 5), 102e6, "Table 3"),
}


def _proc_status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    raise KeyError(field)


MEM_CFG = dict(d_model=64, n_head=4, window=32, n_dilated_heads=2, dilations=(1,), causal=False, global_proj=True)
MEM_NS = [2048, 4096, 8192, 16384]


def peak_memory_case(n):
    """In a fresh forkserver child: peak RSS above baseline of one attention-layer forward at length n."""
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # same per-thread buffers on every machine; no competition with a parallel build
    cfg = LongformerConfig(n_layer=1, **MEM_CFG)
    attn = LongformerSelfAttention(cfg, 0)
    u, vb = torch.zeros(cfg.n_head, cfg.d_model // cfg.n_head), torch.zeros(cfg.n_head, cfg.d_model // cfg.n_head)
    is_global = torch.zeros(n, dtype=torch.bool)
    is_global[[0, n // 2]] = True  # two global tokens
    x = torch.randn(1, n, cfg.d_model)  # (B, N, d)
    with torch.no_grad():
        attn(x[:, :256], u, vb, is_global[:256])  # warm-up: one-time allocations are not counted
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
        base = _proc_status_kib("VmRSS")
        y = attn(x, u, vb, is_global)
        peak = _proc_status_kib("VmHWM") - base
    del y
    return peak * 1024


def check_equivalence():
    """Chunked attention == SDPA with the explicit mask, over several patterns; float64."""
    cases = [  # (name, config overrides, N, global positions)
        ("bidirectional, 2 global, Q_g/K_g/V_g", dict(causal=False, global_proj=True, window=4), 45, [0, 17]),
        ("causal, dilated heads, 1 global", dict(causal=True, window=3, dilations=(2, 1)), 50, [0]),
        ("causal, no global, N < tile", dict(causal=True, window=16), 11, []),
        ("bidirectional, no global, dilation 1", dict(causal=False, window=5, dilations=(1, 0)), 64, []),
    ]
    errs = {}
    for name, over, n, glob in cases:
        torch.manual_seed(SEED)
        cfg = LongformerConfig(vocab_size=50, d_model=32, n_head=4, d_ff=64, n_layer=2, **over)
        model = Longformer(cfg).double()
        with torch.no_grad():
            model.r_w_bias.normal_()  # non-zero u, v so the bias terms are exercised
            model.r_r_bias.normal_()
            for blk in model.blocks:
                if blk.attn.qkv_global is not None:  # make Q_g, K_g, V_g differ from Q_s, K_s, V_s
                    blk.attn.qkv_global.weight.normal_(std=0.2)
        idx = torch.randint(0, cfg.vocab_size, (2, n))
        is_global = torch.zeros(n, dtype=torch.bool)
        is_global[glob] = True
        a = model(idx, is_global, impl="chunked")  # (B, N, vocab)
        b = model(idx, is_global, impl="sdpa_mask")  # (B, N, vocab)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        errs[name] = (a - b).abs().max().item()
    # float32, one attention layer: the size of the difference in ordinary precision
    torch.manual_seed(SEED)
    cfg = LongformerConfig(d_model=64, n_head=4, window=8, dilations=(1,), causal=False, global_proj=True)
    attn = LongformerSelfAttention(cfg, 0)
    with torch.no_grad():
        attn.qkv_global.weight.normal_(std=0.2)
    u, vb = torch.randn(4, 16), torch.randn(4, 16)
    is_global = torch.zeros(300, dtype=torch.bool)
    is_global[[0, 150]] = True
    x = torch.randn(2, 300, 64)
    ya, yb = attn(x, u, vb, is_global, "chunked"), attn(x, u, vb, is_global, "sdpa_mask")
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-5)
    return errs, (ya - yb).abs().max().item()


def check_causality():
    """A causal Longformer's output at i does not change when tokens after i change."""
    torch.manual_seed(SEED)
    cfg = LongformerConfig(vocab_size=50, d_model=32, n_head=4, d_ff=64, n_layer=2, window=3, dilations=(1, 2))
    model = Longformer(cfg)
    is_global = torch.zeros(40, dtype=torch.bool)
    is_global[0] = True
    idx = torch.randint(0, 50, (1, 40))
    idx2 = idx.clone()
    idx2[0, 25:] = (idx2[0, 25:] + 1) % 50  # change the future
    a, b = model(idx, is_global), model(idx2, is_global)
    torch.testing.assert_close(a[:, :25], b[:, :25], rtol=0, atol=0)
    assert (a[:, 25:] - b[:, 25:]).abs().max() > 1e-3, "changing tokens must change their own outputs"


def plot_pattern(path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    n, w = 40, 3
    glob = torch.zeros(n, dtype=torch.bool)
    glob[[0, 24]] = True
    panels = [("bidirectional, w=3, global tokens 0 and 24", [1], False),
              ("bidirectional, dilation 1 (stride 2)", [2], False),
              ("causal (char-LM), w=3, global token 0", [1], True)]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.9))
    for ax, (title, deltas, causal) in zip(axes, panels):
        g = glob if not causal else torch.tensor([i == 0 for i in range(n)])
        m = allowed_mask(n, w, deltas, g, causal)[0].float().numpy()  # (N, N)
        band_only = allowed_mask(n, w, deltas, torch.zeros(n, dtype=torch.bool), causal)[0].float().numpy()
        img = np.where(band_only > 0, 1.0, np.where(m > 0, 0.55, 0.0))  # band dark, global lighter
        ax.imshow(img, cmap="Greys", vmin=0, vmax=1.15, interpolation="none",
                  extent=(-0.5, n - 0.5, n - 0.5, -0.5))
        S = w * max(deltas)
        for b in range(-(-n // S)):  # the tiles the chunked method computes: S queries x 3S keys
            ax.add_patch(Rectangle(((b - 1) * S - 0.5, b * S - 0.5), 3 * S, S, fill=False, ec="#2ca02c", lw=0.8))
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
    fig.suptitle("Longformer attention pattern (black: window, grey: global rows/columns, green: computed tiles)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def plot_memory(ns, mib, path):
    """Measured peak memory against N on log-log axes, beside one (H, N, N) score matrix."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    full = [MEM_CFG["n_head"] * n * n * 4 / 2**20 for n in ns]  # (H, N, N) fp32 scores, MiB
    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    ax.loglog(ns, mib, "o-", color="#1f77b4", label="Longformer layer, measured peak")
    ax.loglog(ns, full, "s--", color="#d62728", label="one (H, N, N) fp32 score matrix, computed")
    ax.loglog(ns, [mib[0] * n / ns[0] for n in ns], ":", color="0.5", label="linear in N (guide)")
    ax.set_xticks(ns, [f"{n:,}" for n in ns])
    ax.minorticks_off()
    ax.set_xlabel("sequence length N")
    ax.set_ylabel("MiB")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(True, which="major", color="0.9", lw=0.6)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    results = {"params": {}}

    # 1) Parameter count at the published sizes, without allocating (meta device).
    print("Parameters at the published configurations (Beltagy et al. 2020):")
    for name, (cfg, paper, where) in PAPER.items():
        with torch.device("meta"):
            model = Longformer(cfg)
        count = sum(p.numel() for p in model.parameters())
        assert count == param_formula(cfg), (count, param_formula(cfg))
        assert round(count / 1e6) == round(paper / 1e6), f"{name}: {count} does not round to the paper's {paper:.0f}"
        results["params"][name] = {"count": count, "paper": paper, "source": where, "n_layer": cfg.n_layer,
                                   "count_m": count / 1e6}
        print(f"  {name:5s} ({cfg.n_layer} layers, d={cfg.d_model}, {cfg.n_head} heads): {count:>12,d} "
              f"= {count / 1e6:.2f}M   paper: {paper / 1e6:.0f}M ({where})")
    results["params"]["count"] = results["params"]["small"]["count"]

    # 2) Chunked attention == SDPA with the explicit mask.
    errs, err32 = check_equivalence()
    print("Chunked vs SDPA with the explicit N x N mask (whole model, float64, max |diff| of logits):")
    for name, e in errs.items():
        print(f"  {name:40s} {e:.1e}")
    print(f"  one layer, float32, N=300, 2 global tokens:  {err32:.1e}")
    results["max_abs_err"] = {"float64_max": max(errs.values()), "float32_layer": err32, "cases": errs}
    check_causality()
    print("Causal model: outputs before position 25 unchanged when tokens from 25 on change: ok")

    # 3) Peak memory against N, each N in a fresh process.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch"])
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        peaks = [pool.apply(peak_memory_case, (n,)) for n in MEM_NS]
    mib = [p / 2**20 for p in peaks]
    slope = float(np.polyfit(np.log(MEM_NS[1:]), np.log(mib[1:]), 1)[0])
    S = MEM_CFG["window"] * 2
    print(f"Peak memory of one attention layer (d={MEM_CFG['d_model']}, {MEM_CFG['n_head']} heads, w={MEM_CFG['window']}, "
          f"dilation 1 on 2 heads, 2 global tokens):")
    for n, m in zip(MEM_NS, mib):
        full = MEM_CFG["n_head"] * n * n * 4 / 2**20  # one (H, N, N) fp32 score matrix, for scale
        print(f"  N={n:>6d}: {m:8.1f} MiB   (one N x N score matrix would be {full:8.1f} MiB)")
    print(f"  fitted exponent (N >= {MEM_NS[1]}): memory ~ N^{slope:.2f}")
    assert slope < 1.4, f"memory should grow linearly, got N^{slope:.2f}"
    results["memory"] = {"ns": MEM_NS, "peak_mib": mib, "exponent": slope, "tile": S,
                         "at_max_n": {"n": MEM_NS[-1], "peak_mib": mib[-1],
                                      "score_matrix_mib": MEM_CFG["n_head"] * MEM_NS[-1] ** 2 * 4 / 2**20}}
    results["memory"]["at_max_n"]["ratio"] = results["memory"]["at_max_n"]["score_matrix_mib"] / mib[-1]

    plot_pattern(OUT / "pattern.svg")
    plot_memory(MEM_NS, mib, OUT / "memory.svg")
    (OUT / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
