"""Performer (Choromanski et al. 2020, arXiv:2009.14794): a Transformer whose attention is FAVOR+.

FAVOR+ replaces softmax(Q K^T / sqrt(d)) V by D^-1 (Q' ((K')^T V)), where Q' and K' are
*positive orthogonal random features* of the queries and keys: an unbiased estimate of the
softmax kernel exp(q . k) that never forms the L x L attention matrix. Everything else is an
ordinary Transformer ("a Performer replaces only the attention component", Section 4).

Run from the repo root:  python snippets/architectures/performer/model.py
It checks the claims below and writes results.json and two figures to ./model_out/.
"""
# build: measures=time  (reports its own run time)
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))


# --8<-- [start:core]
@dataclass
class PerformerConfig:
    vocab_size: int = 256  # tokens; Section 4.1 / Fig. 3 used a vocabulary of 256
    n_layers: int = 6  # blocks; the paper's "regular default size" (Section 4.1)
    n_heads: int = 8  # attention heads per block (Section 4.1)
    d_model: int = 512  # width of the residual stream (Section 4.1)
    d_ff: int = 2048  # hidden width of the MLP (Section 4.1)
    n_features: int = 256  # m random features per head (Appendix A.3 default)
    causal: bool = False  # False: bidirectional (B); True: unidirectional (U) via prefix sums
    eps: float = 1e-6  # "numerical stabilizer" added to every feature (Appendix A.3)


def orthogonal_gaussian(m: int, d: int, generator=None, orthogonal: bool = True) -> torch.Tensor:
    """m random vectors w_i in R^d, each marginally N(0, I_d); exactly orthogonal in blocks of d."""
    if not orthogonal:
        return torch.randn(m, d, generator=generator)  # (m, d) i.i.d. Gaussian rows
    n_blocks = math.ceil(m / d)
    g = torch.randn(n_blocks, d, d, generator=generator)  # (blocks, d, d)
    q, r = torch.linalg.qr(g)  # q: (blocks, d, d) with orthonormal columns
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # sign fix: q is Haar-distributed
    rows = q.transpose(-2, -1).reshape(n_blocks * d, d)[:m]  # (m, d) unit rows, orthogonal within a block
    norms = torch.randn(m, d, generator=generator).norm(dim=-1, keepdim=True)  # (m, 1) chi(d) lengths
    return rows * norms  # (m, d): direction uniform on the sphere x chi(d) length = N(0, I_d) marginally


def positive_features(x: torch.Tensor, w: torch.Tensor, eps: float = 0.0, stabilize: str | None = None):
    """phi(x) = exp(w_i . x - |x|^2 / 2) / sqrt(m), i = 1..m  (Lemma 1: E[phi(x).phi(y)] = exp(x.y)).

    x: (..., L, d) already scaled, w: (..., m, d) -> (..., L, m). `stabilize` subtracts a maximum inside
    the exp ("row" for queries, "all" for keys): a constant factor that cancels in D^-1 (...).
    """
    proj = x @ w.mT  # (..., L, m)   w_i . x
    logits = proj - 0.5 * (x * x).sum(-1, keepdim=True)  # (..., L, m)   w_i . x - |x|^2 / 2
    if stabilize == "row":
        logits = logits - logits.amax(dim=-1, keepdim=True)  # per query row
    elif stabilize == "all":
        logits = logits - logits.amax(dim=(-2, -1), keepdim=True)  # one constant per (batch, head)
    return (torch.exp(logits) + eps) / math.sqrt(w.shape[-2])  # (..., L, m)


def favor_attention(q, k, v, w, causal: bool = False, eps: float = 1e-6):
    """FAVOR+ (Eq. 4 and Appendix B.1). q, k, v: (B, H, L, d); w: (m, d) -> (B, H, L, d). O(L m d)."""
    scale = q.shape[-1] ** -0.25  # exp(q.k / sqrt(d)) = SM(q / d^(1/4), k / d^(1/4))
    qp = positive_features(q * scale, w, eps, "row")  # (B, H, L, m)  Q'
    kp = positive_features(k * scale, w, eps, "all")  # (B, H, L, m)  K'
    if not causal:
        kv = kp.transpose(-2, -1) @ v  # (B, H, m, d)   (K')^T V: no L x L matrix anywhere
        num = qp @ kv  # (B, H, L, d)   Q' ((K')^T V)
        den = qp @ kp.sum(dim=-2).unsqueeze(-1)  # (B, H, L, 1)   Q' ((K')^T 1_L) = diag(D)
    else:
        kv = torch.cumsum(kp.unsqueeze(-1) * v.unsqueeze(-2), dim=-3)  # (B, H, L, m, d) prefix sums of k'_j v_j^T
        num = (qp.unsqueeze(-2) @ kv).squeeze(-2)  # (B, H, L, d)   q'_i . sum_{j<=i} k'_j v_j^T
        den = (qp * torch.cumsum(kp, dim=-2)).sum(-1, keepdim=True)  # (B, H, L, 1)   q'_i . sum_{j<=i} k'_j
    return num / den  # (B, H, L, d)   D^-1 (A' V)


class LayerNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))  # (d,)
        self.bias = nn.Parameter(torch.zeros(d))  # (d,)

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)  # (x - mean) / std * w + b


class FavorSelfAttention(nn.Module):
    """Multi-head self-attention with FAVOR+ in place of softmax; same projections as a Transformer."""

    def __init__(self, cfg: PerformerConfig):
        super().__init__()
        self.cfg, self.h, self.dh = cfg, cfg.n_heads, cfg.d_model // cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # W_Q, W_K, W_V stacked
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)  # W_O
        # The random features are a buffer, not a parameter: drawn, never trained.
        self.register_buffer("w", orthogonal_gaussian(cfg.n_features, self.dh))  # (m, d_head)

    @torch.no_grad()
    def redraw(self, generator=None):  # redraw periodically in training: Section 4.2, Fig. 5 (Section 4.3)
        self.w.copy_(orthogonal_gaussian(self.cfg.n_features, self.dh, generator))

    def forward(self, x):
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x (B, L, D)
        q, k, v = (t.view(B, L, self.h, self.dh).transpose(1, 2) for t in (q, k, v))  # (B, H, L, d_head)
        y = favor_attention(q, k, v, self.w, self.cfg.causal, self.cfg.eps)  # (B, H, L, d_head)
        y = y.transpose(1, 2).reshape(B, L, D)  # (B, L, D) heads concatenated
        return self.proj(y)  # (B, L, D)


class MLP(nn.Module):
    def __init__(self, cfg: PerformerConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)  # (D -> d_ff)
        self.out = nn.Linear(cfg.d_ff, cfg.d_model)  # (d_ff -> D)

    def forward(self, x):
        return self.out(F.gelu(self.fc(x)))  # (B, L, D)


class Block(nn.Module):
    """Pre-LN Transformer block; only the attention differs from the vanilla one."""

    def __init__(self, cfg: PerformerConfig):
        super().__init__()
        self.ln1, self.attn = LayerNorm(cfg.d_model), FavorSelfAttention(cfg)
        self.ln2, self.mlp = LayerNorm(cfg.d_model), MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))  # x + FAVOR+(LN(x))
        return x + self.mlp(self.ln2(x))  # x + MLP(LN(x))


def sinusoidal_positions(L: int, d: int) -> torch.Tensor:
    """Fixed positions of Vaswani et al. (2017): no parameters, any length."""
    pos = torch.arange(L, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))  # (d/2,)
    pe = torch.zeros(L, d)  # (L, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)  # PE(p, 2i), PE(p, 2i+1)
    return pe


class Performer(nn.Module):
    def __init__(self, cfg: PerformerConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)  # (V, D)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # (D -> V), untied

    def redraw_features(self, generator=None):
        for b in self.blocks:
            b.attn.redraw(generator)

    def forward(self, idx):
        B, L = idx.shape
        x = self.tok(idx) + sinusoidal_positions(L, self.cfg.d_model).to(self.tok.weight.device)  # (B, L, D)
        for block in self.blocks:
            x = block(x)  # (B, L, D)
        return self.head(self.ln_f(x))  # (B, L, V) logits


def param_formula(c: PerformerConfig) -> int:
    """Closed form: embedding + head (2VD) + per block (4D^2 + 4D biases of attention,
    2 D d_ff + d_ff + D of the MLP, 4D of two LayerNorms) + final LayerNorm (2D)."""
    V, D, Fh, n = c.vocab_size, c.d_model, c.d_ff, c.n_layers
    return 2 * V * D + n * (4 * D * D + 4 * D + 2 * D * Fh + Fh + D + 4 * D) + 2 * D
# --8<-- [end:core]


# ---------------------------------------------------------------- references for the checks
def softmax_attention(q, k, v, causal=False):
    """Exact attention: softmax(Q K^T / sqrt(d)) V with the full (L, L) matrix."""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., L, L)
    if causal:
        s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
    return s.softmax(-1) @ v  # (..., L, d)


def favor_matrix(q, k, w, causal=False, eps=0.0):
    """FAVOR+'s implicit attention matrix D^-1 Q' K'^T, built explicitly (O(L^2): checks and plots only)."""
    scale = q.shape[-1] ** -0.25
    qp = positive_features(q * scale, w, eps, "row")  # (..., L, m)
    kp = positive_features(k * scale, w, eps, "all")  # (..., L, m)
    a = qp @ kp.transpose(-2, -1)  # (..., L, L)
    if causal:
        a = a.tril()  # (..., L, L)
    return a / a.sum(-1, keepdim=True)  # (..., L, L) rows sum to 1


def approximation_error(m_values, seeds, L=1024, d=16, sigma=0.5):
    """Mean squared error of FAVOR+ output vs exact softmax attention, per m, per seed (cf. Fig. 4).

    Query/key entries ~ N(0, sigma^2): sigma = 0.5 makes |q / d^(1/4)| about 1 for d = 16."""
    errs = {"orthogonal": [], "iid": []}
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        q, k, v = (torch.randn(1, 1, L, d, generator=g, dtype=torch.float64) for _ in range(3))  # (1, 1, L, d)
        q, k = q * sigma, k * sigma
        exact = softmax_attention(q, k, v)  # (1, 1, L, d)
        for kind in errs:
            row = []
            for m in m_values:
                w = orthogonal_gaussian(m, d, g, orthogonal=(kind == "orthogonal")).double()  # (m, d)
                row.append(((favor_attention(q, k, v, w, eps=0.0) - exact) ** 2).mean().item())
            errs[kind].append(row)
    return {kind: torch.tensor(rows) for kind, rows in errs.items()}  # (seeds, len(m_values)) each


def unbiasedness(n_draws=20000, d=16, m=16, seed=7):
    """Mean of phi(x).phi(y) over many independent draws of orthogonal features vs exp(x.y)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, d, generator=g, dtype=torch.float64) * 0.35  # (4, d) four test pairs
    y = torch.randn(4, d, generator=g, dtype=torch.float64) * 0.35  # (4, d)
    x[3] = -2.0 * y[3]  # a pair pointing in opposite directions: small kernel value, where trig features fail
    assert m == d  # then each block of d orthogonal rows is one independent draw of the features
    ws = orthogonal_gaussian(n_draws * m, d, g).double().view(n_draws, m, d)  # (draws, m, d)
    px = positive_features(x.unsqueeze(0), ws)  # (draws, 4, m)
    py = positive_features(y.unsqueeze(0), ws)  # (draws, 4, m)
    est = (px * py).sum(-1)  # (draws, 4): one unbiased estimate of exp(x.y) per draw
    mean, se = est.mean(0), est.std(0) / math.sqrt(n_draws)
    return x, y, (x * y).sum(-1).exp(), mean, se


def plot_error(m_values, errs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "savefig.facecolor": "white",
                         "savefig.transparent": False})
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for kind, color, marker in (("iid", "#d62728", "s"), ("orthogonal", "#1f77b4", "o")):
        mean, std = errs[kind].mean(0), errs[kind].std(0)
        ax.errorbar(m_values, mean, yerr=std, color=color, marker=marker, ms=4, capsize=2, lw=1.2,
                    label=f"{'positive orthogonal (FAVOR+)' if kind == 'orthogonal' else 'positive i.i.d.'}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of random features m")
    ax.set_ylabel("MSE vs exact softmax attention")
    n = errs["orthogonal"].shape[0]
    ax.set_title(f"L = 1024, d = 16, mean ± std over {n} seeds of Q, K, V and features", fontsize=9)
    ax.grid(True, which="major", color="0.9", lw=0.6)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def plot_patterns(path, L=48, d=16):
    """Exact softmax attention next to FAVOR+'s implicit matrix at two feature counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(4)
    base = torch.randn(6, d, generator=g, dtype=torch.float64) * 0.9  # (6, d) six "topics"
    topic = torch.arange(L) * 6 // L  # (L,) tokens in contiguous groups
    q = base[topic] + 0.3 * torch.randn(L, d, generator=g, dtype=torch.float64)  # (L, d)
    k = base[topic] + 0.3 * torch.randn(L, d, generator=g, dtype=torch.float64)  # (L, d)
    s = q @ k.T / math.sqrt(d)  # (L, L)
    mats = {"exact softmax": s.softmax(-1)}
    for m in (16, 256):
        mats[f"FAVOR+, m = {m}"] = favor_matrix(q, k, orthogonal_gaussian(m, d, g).double())
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 2.9))
    vmax = float(mats["exact softmax"].max())
    for ax, (title, a) in zip(axes, mats.items()):
        ax.imshow(a.numpy(), cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        err = (a - mats["exact softmax"]).abs().mean().item()
        ax.set_title(title + ("\n" if title.startswith("exact") else f"\nmean |error| {err:.4f}"), fontsize=9)
        ax.set_xlabel("key position")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel("query position")
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return {t: (a - mats["exact softmax"]).abs().mean().item() for t, a in mats.items()}


def main():
    t0 = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    results = {}

    # 1) Parameter count at the paper's default size, on the meta device (no memory used).
    cfg = PerformerConfig()
    with torch.device("meta"):
        model = Performer(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    n_buffer = sum(b.numel() for b in model.buffers())
    assert n_params == param_formula(cfg), (n_params, param_formula(cfg))
    results["params"] = {"count": n_params, "formula": param_formula(cfg), "millions": n_params / 1e6,
                         "random_feature_buffer": n_buffer, "paper_figure": None,
                         "config": asdict(cfg), "source": "Choromanski et al. 2020, Section 4.1 and Fig. 3 caption"}
    print(f"Parameters at (n_heads, n_layers, d_ff, d) = ({cfg.n_heads}, {cfg.n_layers}, {cfg.d_ff}, "
          f"{cfg.d_model}), vocab {cfg.vocab_size} (paper Section 4.1, Fig. 3):")
    print(f"  meta-device count {n_params:,} = closed form {param_formula(cfg):,}; the paper reports no count")
    print(f"  + {n_buffer:,} random-feature entries (buffers, not trained; m = {cfg.n_features}, Appendix A.3)")

    # 2) The linear-time computation equals the explicit D^-1 (Q' K'^T) V (bidirectional and causal).
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 40, 16, generator=g, dtype=torch.float64) for _ in range(3))  # (B, H, L, d)
    w = orthogonal_gaussian(64, 16, g).double()  # (m, d)
    for causal in (False, True):
        fast = favor_attention(q, k, v, w, causal=causal, eps=0.0)  # (B, H, L, d), never L x L
        slow = favor_matrix(q, k, w, causal=causal) @ v  # (B, H, L, d) via the L x L matrix
        torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
    # and the orthogonal draw really is orthogonal within a block, with N(0, I) marginals on average
    wb = orthogonal_gaussian(16, 16, g)
    gram = (wb / wb.norm(dim=1, keepdim=True)) @ (wb / wb.norm(dim=1, keepdim=True)).T  # (16, 16)
    torch.testing.assert_close(gram, torch.eye(16), atol=1e-5, rtol=0)
    print("FAVOR+ in O(L m d) equals D^-1 Q'K'^T V built explicitly (bidirectional and causal prefix sums): ok")

    # 3) Unbiasedness (Lemma 1 with orthogonal features): mean of many estimates -> exp(x.y).
    x, y, exact, mean, se = unbiasedness()
    z = (mean - exact) / se
    assert (z.abs() < 4).all(), f"estimate off by {z.tolist()} standard errors"
    results["unbiased"] = {"draws": 20000, "m": 16, "d": 16, "exact": exact.tolist(), "mean": mean.tolist(),
                           "std_error": se.tolist(), "z": z.tolist(), "max_abs_z": z.abs().max().item()}
    print("Unbiasedness, 20,000 independent orthogonal draws (m = d = 16):")
    print(f"  {'exp(x.y)':>10} {'mean of estimates':>18} {'std error':>10} {'z':>6}")
    for e, mu, s_, zz in zip(exact.tolist(), mean.tolist(), se.tolist(), z.tolist()):
        print(f"  {e:>10.4g} {mu:>18.4g} {s_:>10.2g} {zz:>6.2f}")

    # 4) Approximation error of attention vs number of features, several seeds (cf. Section 4.2, Fig. 4).
    m_values, seeds = [4, 8, 16, 32, 64, 128, 256], list(range(10))
    errs = approximation_error(m_values, seeds)
    mean_orf, mean_iid = errs["orthogonal"].mean(0), errs["iid"].mean(0)
    assert (mean_orf[1:] < mean_orf[:-1]).all(), f"mean error should shrink as m doubles: {mean_orf.tolist()}"
    assert mean_orf[-1] < mean_orf[0] / 8, "256 features should be far more accurate than 4"
    results["approx"] = {"m": m_values, "seeds": len(seeds), "L": 1024, "d": 16, "sigma": 0.5,
                         "mse_orthogonal": mean_orf.tolist(), "mse_iid": mean_iid.tolist(),
                         "mse_orthogonal_first": mean_orf[0].item(), "mse_orthogonal_last": mean_orf[-1].item(),
                         "first_over_last": (mean_orf[0] / mean_orf[-1]).item(),
                         "orthogonal_below_iid": int((mean_orf < mean_iid).sum().item())}
    plot_error(m_values, errs, OUT / "approx_error.svg")
    print(f"Attention-output MSE vs exact softmax (L = 1024, d = 16, mean of {len(seeds)} seeds):")
    print(f"  {'m':>4} {'orthogonal':>11} {'i.i.d.':>10}")
    for m, a, b in zip(m_values, mean_orf.tolist(), mean_iid.tolist()):
        print(f"  {m:>4} {a:>11.2e} {b:>10.2e}")

    # 5) The attention pattern FAVOR+ implies, next to the exact one.
    pattern_err = plot_patterns(OUT / "attention_patterns.svg")
    assert pattern_err["FAVOR+, m = 256"] < pattern_err["FAVOR+, m = 16"]
    results["pattern_mean_abs_err"] = {"m16": pattern_err["FAVOR+, m = 16"], "m256": pattern_err["FAVOR+, m = 256"]}

    # 6) A tiny forward/backward pass of the whole model (shapes, finite gradients, redraw changes features).
    small = PerformerConfig(vocab_size=32, n_layers=2, n_heads=2, d_model=32, d_ff=64, n_features=16, causal=True)
    net = Performer(small)
    idx = torch.randint(0, 32, (2, 24))  # (B, L)
    logits = net(idx)  # (B, L, V)
    assert logits.shape == (2, 24, 32)
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    before = net.blocks[0].attn.w.clone()
    net.redraw_features()
    assert not torch.equal(before, net.blocks[0].attn.w)
    # causality: changing a later token must not change earlier outputs
    idx2 = idx.clone()
    idx2[:, 12:] = (idx2[:, 12:] + 1) % 32
    with torch.no_grad():
        torch.testing.assert_close(net(idx)[:, :12], net(idx2)[:, :12])
    print("Tiny causal Performer: forward/backward ok, outputs before a change are unaffected by it")

    results["seconds"] = time.perf_counter() - t0
    (OUT / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
