"""Fix: sinusoidal, learned and rotary position encodings break the symmetry.

Three ways to tell attention where each token is, each checked:
  * sinusoidal (Vaswani et al. 2017, Section 3.5) and learned tables are ADDED
    to the token embeddings before attention;
  * RoPE (Su et al. 2021) ROTATES each query and key by an angle proportional
    to its position, inside attention.
With any of them, shuffling the tokens no longer just shuffles the outputs.
RoPE's defining property, that the score q_m . k_n depends only on the offset
m - n, is checked against its closed form over a 1024 x 1024 grid of positions.

Run from the repo root:  python snippets/problems/02_no_positional_awareness/encodings.py
"""
import argparse
import itertools
import json
import math
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
E, HEADS, T = 32, 4, 6  # embedding size, heads, tokens (all 720 orderings tested)
L_ROPE, D_ROPE = 1024, 64  # positions and head size for the RoPE offset check


# --8<-- [start:encodings]
def sinusoidal(n_pos, dim):
    """PE[pos, 2i] = sin(pos / 10000^(2i/dim)), PE[pos, 2i+1] = cos(same) (Vaswani et al. 2017, Sec. 3.5)."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]  # (n_pos, 1)
    freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    pe = torch.zeros(n_pos, dim, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


def rope(x, base=10000.0):
    """Rotate each pair (x[2i], x[2i+1]) of x by the angle pos * base^(-2i/d).

    x: (B, H, T, d) queries or keys; position = index along T.
    """
    B, H, T, d = x.shape
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d)  # (d/2,)
    angle = torch.arange(T, dtype=torch.float64, device=x.device)[:, None] * theta  # (T, d/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)  # (T, d/2) each
    x_even, x_odd = x[..., 0::2], x[..., 1::2]  # (B, H, T, d/2) each
    out = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)  # (B, H, T, d/2, 2)
    return out.flatten(-2)  # (B, H, T, d), pairs back in place


class Attention(nn.Module):
    """nn.MultiheadAttention's maths, written out so RoPE can act on q and k."""

    def __init__(self, mha, use_rope=False):
        super().__init__()
        self.mha, self.use_rope = mha, use_rope

    def forward(self, x):  # x: (B, T, E)
        B, T, E = x.shape
        q, k, v = F.linear(x, self.mha.in_proj_weight, self.mha.in_proj_bias).chunk(3, dim=-1)  # (B, T, E) each
        q, k, v = (t.view(B, T, HEADS, E // HEADS).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d) each
        if self.use_rope:
            q, k = rope(q), rope(k)
        o = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, d)
        o = o.transpose(1, 2).reshape(B, T, E)  # (B, T, E)
        return self.mha.out_proj(o)
# --8<-- [end:encodings]


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def rope_complex(x, base=10000.0):
    """Reference RoPE: pairs as complex numbers times e^{i pos theta} (RoFormer, Sec. 3.2)."""
    B, H, T, d = x.shape
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d)  # (d/2,)
    angle = torch.arange(T, dtype=torch.float64, device=x.device)[:, None] * theta  # (T, d/2)
    xc = torch.view_as_complex(x.double().reshape(B, H, T, d // 2, 2).contiguous())  # (B, H, T, d/2) complex
    return torch.view_as_real(xc * torch.polar(torch.ones_like(angle), angle)).reshape(B, H, T, d)  # (B, H, T, d)


def plot(s_add, s_rope, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.5))
    for ax, s, title in ((axes[0], s_add, "sinusoid added to x, then projected"),
                         (axes[1], s_rope, "RoPE on q and k")):
        lim = s.abs().max().item()
        im = ax.imshow(s.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="none")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key position n")
        ax.set_ylabel("query position m")
        fig.colorbar(im, ax=ax, shrink=0.8, label="score q·k")
    fig.suptitle("Same query and key content at every position: score vs (m, n)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    dev = ap.parse_args().device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    # --8<-- [start:core]
    mha = nn.MultiheadAttention(E, HEADS, batch_first=True).to(dev).eval()
    learned = nn.Embedding(T, E).to(dev)  # a learned position table (random here, trained in practice)
    models = {
        "none": lambda x: Attention(mha)(x),
        "sinusoidal": lambda x: Attention(mha)(x + sinusoidal(T, E).float().to(dev)),  # (T, E) broadcast
        "learned": lambda x: Attention(mha)(x + learned.weight),  # (T, E) broadcast
        "rope": lambda x: Attention(mha, use_rope=True)(x),
    }
    x = torch.randn(1, T, E, device=dev)  # (1, T, E) token embeddings
    perms = torch.tensor(list(itertools.permutations(range(T))), device=dev)  # (720, T)
    # The written-out layer is nn.MultiheadAttention exactly, when no positions are used.
    torch.testing.assert_close(models["none"](x), mha(x, x, x, need_weights=False)[0])

    rel_err = {}
    for name, f in models.items():
        y, y_perm = f(x), f(x[0, perms])  # (1, T, E), (720, T, E)
        rel_err[name] = ((y_perm - y[0, perms]).abs().max() / y.abs().max()).item()  # y[0, perms]: (720, T, E)
    assert rel_err["none"] < 1e-5, "without positions the layer must be permutation-equivariant"
    for name in ("sinusoidal", "learned", "rope"):
        assert rel_err[name] > 0.05, f"{name}: shuffling should change more than the order of the outputs"
    # --8<-- [end:core]

    # "dog bites man" vs "man bites dog", mean-pooled, with each encoding.
    embed = nn.Embedding(3, E).to(dev)
    dbm, mbd = torch.tensor([[0, 1, 2]], device=dev), torch.tensor([[2, 1, 0]], device=dev)  # (1, 3) ids
    models3 = {"none": lambda z: Attention(mha)(z),
               "sinusoidal": lambda z: Attention(mha)(z + sinusoidal(3, E).float().to(dev)),
               "learned": lambda z: Attention(mha)(z + learned.weight[:3]),
               "rope": lambda z: Attention(mha, use_rope=True)(z)}
    pooled_cos = {}
    for name, f in models3.items():
        a, b = f(embed(dbm)).mean(1), f(embed(mbd)).mean(1)  # (1, E) each
        pooled_cos[name] = F.cosine_similarity(a, b).item()
    assert pooled_cos["none"] > 1 - 1e-6, "no positions: the two sentences must pool to the same vector"
    for name in ("sinusoidal", "learned", "rope"):
        assert pooled_cos[name] < 1 - 1e-3, f"{name}: the two sentences should now differ"

    # --8<-- [start:offset]
    # RoPE: with the same content q (resp. k) at every position, the score matrix
    # S[m, n] = rope(q)_m . rope(k)_n must equal a function of m - n alone.
    q, k = torch.randn(2, D_ROPE, dtype=torch.float64, device=dev)  # one query, one key vector
    Q = rope(q.expand(1, 1, L_ROPE, D_ROPE))  # (1, 1, L, d): q placed at positions 0..L-1
    K = rope(k.expand(1, 1, L_ROPE, D_ROPE))  # (1, 1, L, d)
    S = (Q @ K.transpose(-2, -1))[0, 0]  # (L, L) scores
    # Closed form as a function of the offset alone, with pairs as complex numbers:
    # g(delta) = Re sum_i q_i conj(k_i) e^{i delta theta_i}, for delta = -(L-1) .. L-1.
    theta = 10000.0 ** (-torch.arange(0, D_ROPE, 2, dtype=torch.float64, device=dev) / D_ROPE)  # (d/2,)
    qc = torch.view_as_complex(q.view(D_ROPE // 2, 2))  # (d/2,) complex
    kc = torch.view_as_complex(k.view(D_ROPE // 2, 2))  # (d/2,) complex
    delta = torch.arange(-(L_ROPE - 1), L_ROPE, dtype=torch.float64, device=dev)  # (2L-1,)
    g = (qc * kc.conj() * torch.exp(1j * delta[:, None] * theta)).sum(-1).real  # (2L-1,)
    pos = torch.arange(L_ROPE, device=dev)
    S_ref = g[pos[:, None] - pos[None, :] + L_ROPE - 1]  # (L, L): g(m - n)
    torch.testing.assert_close(S, S_ref, rtol=1e-9, atol=1e-9)
    for s in (1, 17, 300, 1000):  # q_m . k_n == q_{m+s} . k_{n+s}
        torch.testing.assert_close(S[s:, s:], S[:-s, :-s], rtol=1e-9, atol=1e-9)
    # --8<-- [end:offset]
    # The real-arithmetic rope() equals the complex-number form of RoFormer (Su et al. 2021, Sec. 3.2).
    qs = torch.randn(2, HEADS, 300, D_ROPE, dtype=torch.float64, device=dev)  # (B, H, T, d)
    torch.testing.assert_close(rope(qs), rope_complex(qs), rtol=1e-12, atol=1e-12)
    # Non-vacuity: S does vary, just not along diagonals (it would fail if S were constant).
    assert not torch.allclose(S[1:, :-1], S[:-1, :-1], rtol=1e-3), "S should vary along a column"

    # Additive sinusoids: the raw p_m . p_n IS a function of m - n, but after the
    # query/key projections and with content added, the score is not.
    n_fig = 64
    pe = sinusoidal(n_fig, D_ROPE).to(dev)  # (n, d)
    offs = (pos[:n_fig, None] - pos[None, :n_fig]).double()  # (n, n): m - n
    torch.testing.assert_close(pe @ pe.T, torch.cos(offs[..., None] * theta).sum(-1), rtol=1e-9, atol=1e-9)
    Wq, Wk = torch.randn(2, D_ROPE, D_ROPE, dtype=torch.float64, device=dev) / math.sqrt(D_ROPE)
    xq, xk = q + pe, k + pe  # (n, d): content + position
    S_add = (xq @ Wq) @ (xk @ Wk).T  # (n, n)
    add_shift_err = ((S_add[1:, 1:] - S_add[:-1, :-1]).abs().max() / S_add.abs().max()).item()
    assert add_shift_err > 0.05, "projected additive encodings should not be offset-only"

    plot(S_add.cpu(), S[:n_fig, :n_fig].cpu(), OUT / "scores.svg")
    results = {
        "machine": {**machine_info(), "device": dev},
        "config": {"embed_dim": E, "heads": HEADS, "tokens": T, "rope_positions": L_ROPE, "rope_head_dim": D_ROPE},
        "equivariance_rel_err": rel_err,
        "pooled_cosine_dbm_vs_mbd": pooled_cos,
        "rope_offset": {"max_abs_err_vs_closed_form": (S - S_ref).abs().max().item(), "positions": L_ROPE,
                        "shifts_checked": [1, 17, 300, 1000]},
        "additive_shift_rel_err": add_shift_err,
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"{len(perms)} orderings of {T} tokens; relative |f(PX) - P f(X)| and cosine('dog bites man', 'man bites dog'):")
    for name in models:
        print(f"  {name:<11} {rel_err[name]:9.1e}   cosine {pooled_cos[name]:.4f}")
    print(f"RoPE, {L_ROPE}x{L_ROPE} positions, float64: max |S - f(m-n)| = "
          f"{results['rope_offset']['max_abs_err_vs_closed_form']:.1e}")
    print(f"additive sinusoid after projections: S[m+1, n+1] vs S[m, n] differ by up to "
          f"{add_shift_err:.2f} of max |S|")


if __name__ == "__main__":
    main()
