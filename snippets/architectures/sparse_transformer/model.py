"""Sparse Transformer (Child et al. 2019, arXiv:1904.10509) in one readable file.

A decoder-only transformer whose attention is *factorized*: query i does not
look at every earlier position, only at a set S_i of about 2*sqrt(N) of them,
chosen so that any earlier position is reachable in two attention steps
(Section 4.2). Two patterns with stride l (Section 4.3):

  strided:  A1_i = {t, ..., i}, t = max(0, i - l)     (the previous l positions)
            A2_i = {j : (i - j) mod l = 0}             (every l-th position back)
  fixed:    A1_i = {j : floor(j / l) = floor(i / l)}   (its own block of l)
            A2_i = {j : j mod l in {l - c, ..., l}}    (the last c cells of every block)

(all restricted to j <= i). Heads here attend to the union A1 u A2 (the paper's
"merged" head, Eq. 7). "local" is the strided A1 alone: not a pattern of the paper,
the control the notebook trains. The efficient version gathers only the allowed keys,
about N * 2 sqrt(N) of them, instead of masking an N x N matrix.

Checks (run this file): the parameter count at the paper's published configurations
(Table 1, Sections 7.1-7.3); the gathered attention against SDPA with the equivalent
dense boolean mask for both patterns; exact connection counts and their growth
exponent (about 1.5, N * sqrt(N)); two-step reachability; and the whole model,
sparse path against dense path.

Run from the repo root:  python snippets/architectures/sparse_transformer/model.py
"""
import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0


# --8<-- [start:core]
@dataclass
class SparseTransformerConfig:
    """Defaults: the enwik8 model of Child et al. 2019 (Section 7.2; 95M parameters in Table 1)."""
    vocab_size: int = 256  # raw bytes
    n_layer: int = 30  # residual blocks N
    n_head: int = 8  # attention heads, each of width d_model / n_head
    d_model: int = 512  # d: width of the residual stream and of every embedding
    qk_ratio: float = 1.0  # query/key width / d_model (0.5 = "half-size" query-key projections, Section 6)
    ff_mult: float = 4.0  # feed-forward width / d_model (2.0 = "half-size" feed-forward, Section 6)
    seq_len: int = 12288  # context length in tokens
    pattern: str = "fixed"  # "strided" or "fixed" (Section 4.3); "local" = strided's A1 alone, a control
    stride: int = 128  # l, close to sqrt(seq_len)
    c: int = 32  # fixed pattern: summary cells at the end of each block of l
    pos_dims: tuple = (96, 128)  # position tables per dimension (Section 5.3): text = rows x columns of width l
    dropout: float = 0.0  # at the end of each residual branch (Section 5.4); 0.4 for enwik8 in training


def pattern_mask(kind, n, l, c=1):
    """Reference: the (n, n) boolean connectivity matrix, straight from the set definitions."""
    i = torch.arange(n)[:, None]  # (n, 1) query
    j = torch.arange(n)[None, :]  # (1, n) key
    causal = j <= i
    if kind == "strided":
        a1 = j >= i - l  # {t, ..., i}, t = max(0, i - l)
        a2 = (i - j) % l == 0  # every l-th position back
    elif kind == "fixed":
        a1 = j // l == i // l  # same block
        a2 = j % l >= l - c  # the last c cells of a block ("summary" cells)
    elif kind == "local":  # the strided pattern's A1 alone, without A2: a control, not a pattern of the paper
        a1, a2 = j >= i - l, torch.zeros_like(causal)
    else:
        raise ValueError(kind)
    return causal & (a1 | a2)  # (n, n): True = query i may attend key j


def pattern_index(kind, n, l, c=1):
    """Efficient: for each query, the indices of its allowed keys, (n, K) with K ~ l + n/l.

    Built from arithmetic on i, never from an n x n matrix. valid marks real entries
    (rows are padded to the same K); the two parts never overlap, so no key appears twice.
    """
    i = torch.arange(n)[:, None]  # (n, 1)
    if kind == "local":
        idx = i - l + torch.arange(l + 1)[None, :]  # (n, l+1): i-l, ..., i
        valid = idx >= 0
    elif kind == "strided":
        local = i - l + torch.arange(l + 1)[None, :]  # (n, l+1): i-l, ..., i
        k = torch.arange(2, max(2, (n - 1) // l + 1))[None, :]  # (1, K2): 2, 3, ... (steps 0 and 1 are local)
        far = i - k * l  # (n, K2)
        idx = torch.cat([local, far], dim=1)  # (n, K)
        valid = idx >= 0
    elif kind == "fixed":
        block = (i // l) * l + torch.arange(l)[None, :]  # (n, l): own block
        b = torch.arange((n - 1) // l)  # earlier blocks 0 .. nb-1
        summ = (b[:, None] * l + l - c + torch.arange(c)[None, :]).reshape(1, -1)  # (1, nb*c): summary cells
        idx = torch.cat([block, summ.expand(n, -1)], dim=1)  # (n, K)
        valid = torch.cat([block <= i, summ // l < i // l], dim=1)  # causal in own block; earlier blocks only
    else:
        raise ValueError(kind)
    return idx.clamp(0, n - 1), valid  # (n, K) key indices, (n, K) bool


def sparse_attend(q, k, v, idx, valid, weights=False):
    """softmax(q_i K_{S_i}^T / sqrt(d)) V_{S_i} (Eq. 3) over the gathered keys only.

    q, k: (B, H, N, dqk), v: (B, H, N, dv), idx / valid: (N, K). Cost O(N * K), not O(N^2).
    weights=True also returns the (B, H, N, K) attention weights.
    """
    B, H, N, _ = k.shape
    kg = k.index_select(2, idx.flatten()).view(B, H, N, idx.shape[1], -1)  # (B,H,N*K,dqk) -> (B,H,N,K,dqk)
    vg = v.index_select(2, idx.flatten()).view(B, H, N, idx.shape[1], -1)  # (B, H, N, K, dv): V_{S_i}
    s = (q.unsqueeze(-2) * kg).sum(-1) / math.sqrt(q.shape[-1])  # (B, H, N, K): q_i . k_j for j in S_i
    w = s.masked_fill(~valid, float("-inf")).softmax(dim=-1)  # (B, H, N, K); padding entries get no weight
    out = (w.unsqueeze(-1) * vg).sum(-2)  # (B, H, N, K, dv) summed over K -> (B, H, N, dv)
    return (out, w) if weights else out


class SparseSelfAttention(nn.Module):
    """attention(X) = W_p . attend(X, A1 u A2): the merged head of Eq. 7, split into n_head heads (Eq. 8)."""

    def __init__(self, cfg):
        super().__init__()
        d, dqk = cfg.d_model, int(cfg.d_model * cfg.qk_ratio)
        self.h = cfg.n_head
        self.q, self.k = nn.Linear(d, dqk), nn.Linear(d, dqk)  # W_q, W_k
        self.v, self.proj = nn.Linear(d, d), nn.Linear(d, d)  # W_v, W_p

    def forward(self, x, idx, valid, dense_mask=None):
        B, N, _ = x.shape  # x: (B, N, d)
        q = self.q(x).view(B, N, self.h, -1).transpose(1, 2)  # (B, N, H, dqk/H) -> (B, H, N, dqk/H)
        k = self.k(x).view(B, N, self.h, -1).transpose(1, 2)  # (B, H, N, dqk/H)
        v = self.v(x).view(B, N, self.h, -1).transpose(1, 2)  # (B, H, N, d/H)
        if dense_mask is None:
            y, w = sparse_attend(q, k, v, idx, valid, weights=True)  # (B, H, N, d/H): only the allowed keys
            self.weights = w.detach()  # (B, H, N, K), kept for plots
        else:  # reference path: every score, then the (N, N) mask
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=dense_mask)  # (B, H, N, d/H)
        return self.proj(y.transpose(1, 2).reshape(B, N, -1))  # (B, H, N, d/H) -> (B, N, H, d/H) -> (B, N, d)


class FeedForward(nn.Module):
    """ff(x) = W2 f(W1 x + b1) + b2, f(x) = x * sigmoid(1.702 x) (Section 5.2)."""

    def __init__(self, cfg):
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, int(cfg.d_model * cfg.ff_mult))
        self.w2 = nn.Linear(int(cfg.d_model * cfg.ff_mult), cfg.d_model)

    def forward(self, x):  # x: (B, N, d)
        h = self.w1(x)  # (B, N, d_ff)
        return self.w2(h * torch.sigmoid(1.702 * h))  # (B, N, d): GELU approximation


class Block(nn.Module):
    """Pre-activation residual block, Eqs. 10-14: H + a(H) + b(H)."""

    def __init__(self, cfg):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn, self.ff = SparseSelfAttention(cfg), FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h, idx, valid, dense_mask=None):  # h: (B, N, d)
        a = self.drop(self.attn(self.norm1(h), idx, valid, dense_mask))  # a(H) = dropout(attention(norm(H)))
        b = self.drop(self.ff(self.norm2(h + a)))  # b(H) = dropout(ff(norm(H + a(H))))
        return h + a + b  # H_k = H_{k-1} + resblock(H_{k-1}), resblock = a + b


def position_coords(n, dims):
    """(n, len(dims)): the coordinates of each position, last dimension fastest (row-major)."""
    rem, coords = torch.arange(n), []
    for size in reversed(dims):
        coords.append(rem % size)
        rem = rem // size
    return torch.stack(coords[::-1], dim=-1)  # e.g. text: (row, column) in a matrix of width l


class SparseTransformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert math.prod(cfg.pos_dims) >= cfg.seq_len and (cfg.pattern != "fixed" or cfg.c <= cfg.stride)
        self.cfg = cfg
        d, n_emb = cfg.d_model, len(cfg.pos_dims)
        self.tok = nn.Embedding(cfg.vocab_size, d)  # W_e
        self.pos = nn.ModuleList(nn.Embedding(size, d) for size in cfg.pos_dims)  # W_j, one per dimension (Eq. 15)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.vocab_size, bias=False)  # W_out (Eq. 11)
        if self.out.weight.is_meta:
            return  # shapes only (parameter counting): nothing to initialise
        # Initialisation of Section 6: N(0, 0.125 / sqrt(fan_in)); W2 and W_p also / sqrt(2N); W_out = 0.
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=0.125 / math.sqrt(mod.in_features))
                nn.init.zeros_(mod.bias) if mod.bias is not None else None
        for blk in self.blocks:
            for w in (blk.ff.w2.weight, blk.attn.proj.weight):
                w.data.mul_(1 / math.sqrt(2 * cfg.n_layer))
        nn.init.normal_(self.tok.weight, std=0.125 / math.sqrt(d))
        for emb in self.pos:
            nn.init.normal_(emb.weight, std=0.125 / math.sqrt(d * n_emb))
        nn.init.zeros_(self.out.weight)

    def forward(self, x, targets=None, dense=False):
        """x: (B, N) token ids. dense=True runs SDPA with the (N, N) mask instead (for checks)."""
        B, N = x.shape
        cfg = self.cfg
        idx, valid = pattern_index(cfg.pattern, N, cfg.stride, cfg.c)  # (N, K) each
        idx, valid = idx.to(x.device), valid.to(x.device)
        mask = pattern_mask(cfg.pattern, N, cfg.stride, cfg.c).to(x.device) if dense else None  # (N, N)
        coords = position_coords(N, cfg.pos_dims).to(x.device)  # (N, n_emb)
        h = self.tok(x) + sum(emb(coords[:, j]) for j, emb in enumerate(self.pos))  # (B, N, d): Eq. 15
        for blk in self.blocks:
            h = blk(h, idx, valid, mask)  # (B, N, d)
        logits = self.out(self.norm(h))  # (B, N, V)
        loss = None if targets is None else F.cross_entropy(logits.reshape(B * N, -1), targets.reshape(B * N))
        return logits, loss
# --8<-- [end:core]


def param_formula(cfg, biases=True):
    """Closed form of the parameter count (biases=False: every linear layer without bias)."""
    d, dqk, dff, V = cfg.d_model, int(cfg.d_model * cfg.qk_ratio), int(cfg.d_model * cfg.ff_mult), cfg.vocab_size
    bias = 1 if biases else 0
    attn = 2 * (d * dqk + bias * dqk) + 2 * (d * d + bias * d)  # W_q, W_k; W_v, W_p
    ff = d * dff + bias * dff + dff * d + bias * d  # W1, b1, W2, b2
    norms = 2 * 2 * d  # two LayerNorms (gain, bias)
    return cfg.n_layer * (attn + ff + norms) + V * d + sum(cfg.pos_dims) * d + 2 * d + d * V


def keys_per_query(kind, n, l, c=1):
    """|A1_i u A2_i| for every query i, in O(n), from the pattern's arithmetic."""
    i = torch.arange(n, dtype=torch.int64)
    if kind == "strided":
        return torch.clamp(i, max=l) + 1 + torch.clamp(i // l - 1, min=0)  # local window + further multiples of l
    return i % l + 1 + (i // l) * c  # own block so far + c summary cells per earlier block


def connections(kind, n, l, c=1):
    """Exact number of (i, j) pairs the pattern allows."""
    return int(keys_per_query(kind, n, l, c).sum())


PUBLISHED = {
    # name: (config, paper's figure in millions, where)
    "enwik8": (SparseTransformerConfig(), 95, "Table 1 and Section 7.2: 30 layers, fixed, 8 heads, d=512, l=128, c=32"),
    "imagenet64": (SparseTransformerConfig(n_layer=48, n_head=16, seq_len=64 * 64 * 3, pattern="strided", stride=128,
                                           pos_dims=(64, 64, 3)), 152,
                   "Table 1 and Section 7.3: 48 layers, strided, 16 heads, d=512, l=128"),
    "cifar10": (SparseTransformerConfig(n_layer=128, n_head=2, d_model=256, qk_ratio=0.5, ff_mult=2.0,
                                        seq_len=32 * 32 * 3, pattern="strided", stride=96, pos_dims=(32, 32, 3)), 59,
                "Table 1 and Section 7.1: 128 layers, strided, 2 heads, d=256, half-size ff and query-key"),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    results = {"params": {}}

    # 1) Parameter counts at the published configurations, on the meta device.
    for name, (cfg, paper_m, where) in PUBLISHED.items():
        with torch.device("meta"):
            m = SparseTransformer(cfg)
        n = sum(p.numel() for p in m.parameters())
        assert n == param_formula(cfg), (name, n, param_formula(cfg))
        assert round(n / 1e6) == paper_m, f"{name}: {n / 1e6:.2f}M does not round to the paper's {paper_m}M"
        results["params"][name] = {"count": n, "millions": n / 1e6, "paper_millions": paper_m,
                                   "no_bias_millions": param_formula(cfg, biases=False) / 1e6,
                                   "where": f"Child et al. 2019, {where}", "config": asdict(cfg)}

    # 2) Gathered sparse attention == SDPA with the dense boolean mask, both patterns,
    #    sequence lengths that are and are not multiples of the stride.
    torch.set_default_dtype(torch.float64)
    errs = {}
    for kind in ("strided", "fixed", "local"):
        for n, l, c in ((64, 8, 2), (100, 10, 3), (256, 16, 4)):
            q, k, v = (torch.randn(2, 3, n, 8) for _ in range(3))  # (B, H, N, dh)
            mask = pattern_mask(kind, n, l, c)  # (n, n)
            idx, valid = pattern_index(kind, n, l, c)  # (n, K)
            # the table holds exactly the allowed keys, each once
            scattered = torch.zeros(n, n, dtype=torch.long).scatter_add_(1, idx, valid.long())  # (n, n) key counts
            assert torch.equal(scattered, mask.long()), f"{kind} n={n}: index table != mask"
            assert idx.shape[1] < n or n <= 2 * l, "the table should be narrower than the sequence"
            ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, n, dh)
            out = sparse_attend(q, k, v, idx, valid)  # (B, H, n, dh)
            torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
            errs[f"{kind}_n{n}"] = (out - ref).abs().max().item()
            # two-step validity (Section 4.2): every j <= i is reachable through one intermediate position
            m = mask.double()
            reach = (m @ m) > 0  # (n, n)
            if kind == "local":  # the local part alone is not valid: two steps reach back 2l, no further
                i_, j_ = torch.arange(n)[:, None], torch.arange(n)[None, :]
                assert torch.equal(reach, (j_ <= i_) & (j_ >= i_ - 2 * l)), "local: two steps should reach i-2l"
                continue
            assert torch.equal(reach, torch.ones(n, n, dtype=torch.bool).tril()), f"{kind}: not valid in 2 steps"
    # strided with l >= n is ordinary causal attention
    q, k, v = (torch.randn(1, 2, 40, 8) for _ in range(3))
    idx, valid = pattern_index("strided", 40, 40)
    torch.testing.assert_close(sparse_attend(q, k, v, idx, valid),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=1e-10, atol=1e-12)

    # 3) The whole model: sparse path == dense-mask path, and it is causal.
    for kind in ("strided", "fixed"):
        tiny = SparseTransformerConfig(vocab_size=13, n_layer=2, n_head=2, d_model=16, seq_len=48, pattern=kind,
                                       stride=8, c=2, pos_dims=(6, 8))
        model = SparseTransformer(tiny).eval()
        nn.init.normal_(model.out.weight, std=0.1)  # W_out starts at 0; give it weights so logits differ
        x = torch.randint(0, 13, (2, 48))
        sparse, _ = model(x)
        dense, _ = model(x, dense=True)
        torch.testing.assert_close(sparse, dense, rtol=1e-10, atol=1e-12)
        errs[f"model_{kind}"] = (sparse - dense).abs().max().item()
        x2 = x.clone()
        x2[:, 30] = (x2[:, 30] + 1) % 13  # change one token
        changed = (model(x2)[0] - sparse).abs().amax(dim=(0, 2))  # (N,)
        assert changed[:30].max() == 0 and changed[30:].max() > 0, "not causal"
    torch.set_default_dtype(torch.float32)

    # 4) Exact connection counts with l = sqrt(N) (and c fixed), and their growth exponent.
    C = 8
    ns = [4 ** e for e in range(4, 10)]  # 256 ... 262,144
    rows = []
    for n in ns:
        l = math.isqrt(n)
        row = {"n": n, "stride": l, "full_causal": n * (n + 1) // 2,
               "strided": connections("strided", n, l), "fixed": connections("fixed", n, l, C)}
        if n <= 1024:  # small enough for dense masks: the formula counts exactly what the mask allows
            assert row["strided"] == int(pattern_mask("strided", n, l).sum())
            assert row["fixed"] == int(pattern_mask("fixed", n, l, C).sum())
            for kind, cc in (("strided", 1), ("fixed", C)):
                assert row[kind] == int(pattern_index(kind, n, l, cc)[1].sum())
        rows.append(row)
    fit = {}
    for key in ("full_causal", "strided", "fixed"):
        fit[key] = float(np.polyfit(np.log(ns), np.log([r[key] for r in rows]), 1)[0])
    assert 1.45 < fit["strided"] < 1.55 and 1.45 < fit["fixed"] < 1.55, fit
    assert 1.95 < fit["full_causal"] < 2.05, fit
    big = rows[-1]

    # 5) At the enwik8 configuration itself (N = 12,288, l = 128, c = 32).
    cfg = SparseTransformerConfig()
    at_cfg = {"n": cfg.seq_len, "full_causal": cfg.seq_len * (cfg.seq_len + 1) // 2,
              "fixed": connections("fixed", cfg.seq_len, cfg.stride, cfg.c),
              "strided": connections("strided", cfg.seq_len, cfg.stride),
              "max_keys_per_query_fixed": int(keys_per_query("fixed", cfg.seq_len, cfg.stride, cfg.c).max())}
    at_cfg["full_over_fixed"] = at_cfg["full_causal"] / at_cfg["fixed"]
    at_cfg["full_over_strided"] = at_cfg["full_causal"] / at_cfg["strided"]
    results.update({"max_abs_err": errs, "max_abs_err_all": max(errs.values()), "counts": rows, "fit": fit,
                    "counts_c": C, "at_largest_n": {**big, "full_over_strided": big["full_causal"] / big["strided"],
                                                    "full_over_fixed": big["full_causal"] / big["fixed"]},
                    "at_enwik8_config": at_cfg})
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    draw_patterns(OUT / "patterns.svg", rows, fit, C)

    print("Parameters at published configurations (Child et al. 2019, Table 1):")
    for name, p in results["params"].items():
        print(f"  {name:>10}: {p['count']:>11,} = {p['millions']:6.2f}M (paper: {p['paper_millions']}M; "
              f"no biases: {p['no_bias_millions']:.2f}M)")
    print(f"gathered attention vs SDPA with the dense mask: max |diff| = {results['max_abs_err_all']:.1e}")
    print("  (strided and fixed, N = 64, 100, 256, and the whole model both ways)")
    print("both patterns reach every earlier position in two steps; the model is causal")
    print(f"connections (query-key pairs), l = sqrt(N), fixed c = {C}:")
    print(f"{'N':>8} {'l':>4} {'full causal':>15} {'strided':>12} {'fixed':>12}")
    for r in rows:
        print(f"{r['n']:>8,} {r['stride']:>4} {r['full_causal']:>15,} {r['strided']:>12,} {r['fixed']:>12,}")
    print(f"fitted exponents: full {fit['full_causal']:.3f}, strided {fit['strided']:.3f}, fixed {fit['fixed']:.3f}")
    print(f"enwik8 config (N={at_cfg['n']:,}, l={cfg.stride}, c={cfg.c}): fixed {at_cfg['fixed']:,} pairs,")
    print(f"  full {at_cfg['full_causal']:,} ({at_cfg['full_over_fixed']:.1f}x fewer); "
          f"at most {at_cfg['max_keys_per_query_fixed']:,} keys per query")


def draw_patterns(path, rows, fit, C):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                         "font.size": 9,
                         "figure.facecolor": "white", "savefig.facecolor": "white", "savefig.transparent": False})
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1, 1.25]})
    n, l, c = 48, 8, 2
    for ax, kind, title in ((axes[0], "strided", f"strided, l={l}"), (axes[1], "fixed", f"fixed, l={l}, c={c}")):
        m = pattern_mask(kind, n, l, c).float()
        m[30] *= 2  # highlight one query row
        ax.imshow(m.numpy(), cmap="Blues", vmin=0, vmax=2.2, interpolation="none")
        ax.set_title(f"{title}: {int((m > 0).sum())} of {n * (n + 1) // 2} causal pairs", fontsize=9)
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
    ns = np.array([r["n"] for r in rows], dtype=float)
    ax = axes[2]
    for key, fmt, color, label in (("full_causal", "s-", "#d62728", "full causal"),
                                   ("strided", "o-", "#1f77b4", "strided"),
                                   ("fixed", "^-", "#2ca02c", f"fixed (c={C})")):
        ax.loglog(ns, [r[key] for r in rows], fmt, color=color, ms=4, label=f"{label}: N^{fit[key]:.2f}")
    ax.set_xlabel("sequence length N (l = √N)")
    ax.set_ylabel("query-key pairs computed")
    ax.set_title("exact connection counts", fontsize=9)
    ax.grid(True, which="major", color="0.9", lw=0.6)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


if __name__ == "__main__":
    main()
