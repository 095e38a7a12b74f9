"""Pure attention drives tokens together with depth; residual paths keep them apart.

Feeds 32 random token vectors through 24 freshly initialised layers of five
kinds and measures, after each layer,
  * the mean pairwise cosine similarity between tokens, and
  * the relative residual ||X - 1 x_mean^T||_F / ||X||_F: how far X is from
    "every token is the same vector" (rank one), 0 when all tokens coincide.
Dong et al. (2021) prove that pure self-attention (no skips, no MLPs) loses
rank doubly exponentially with depth. The script checks that pure attention
collapses within a few layers, with or without LayerNorm, while every stack
with a skip connection keeps the tokens distinct; and that one attention
layer whose values are the tokens themselves can never spread them apart
(each output is a convex combination of the inputs).

Run from the repo root:  python snippets/problems/11_attention_over_smoothing/depth_collapse.py
"""
import argparse
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
B, T, D, H, DEPTH = 8, 32, 64, 4, 24
DTYPE = torch.float64  # float64, so the collapse is followed well below float32's 1e-7


# --8<-- [start:core]
def mean_pairwise_cosine(x):
    xn = F.normalize(x, dim=-1)  # (B, T, d) unit vectors
    c = xn @ xn.transpose(1, 2)  # (B, T, T) cosines
    return ((c.sum((1, 2)) - T) / (T * (T - 1))).mean().item()  # off-diagonal mean


def relative_residual(x):
    """||X - 1 mean^T||_F / ||X||_F; the token mean is the closest rank-one 'all equal' matrix."""
    return ((x - x.mean(1, keepdim=True)).norm(dim=(1, 2)) / x.norm(dim=(1, 2))).mean().item()


class PureAttention(nn.Module):
    """X -> Attention(X): no skip connection, no MLP (optionally LayerNorm after)."""
    def __init__(self, layer_norm=False):
        super().__init__()
        self.attn = nn.MultiheadAttention(D, H, batch_first=True)
        self.layer_norm = layer_norm

    def forward(self, x):  # (B, T, d)
        out = self.attn(x, x, x, need_weights=False)[0]  # (B, T, d)
        return F.layer_norm(out, (D,)) if self.layer_norm else out


@torch.no_grad()
def trace(make_layer, device="cpu"):
    torch.manual_seed(SEED)  # the same input tokens for every stack
    x = torch.randn(B, T, D, device=device, dtype=DTYPE)  # (B, T, d)
    cos, res = [mean_pairwise_cosine(x)], [relative_residual(x)]
    for _ in range(DEPTH):
        x = make_layer().to(device, DTYPE)(x)  # a fresh random layer each time: (B, T, d)
        cos.append(mean_pairwise_cosine(x))
        res.append(relative_residual(x))
    return cos, res
# --8<-- [end:core]


# --8<-- [start:fix]
class SkipAttention(PureAttention):
    """X -> X + Attention(X): the residual path alone."""
    def forward(self, x):
        return x + self.attn(x, x, x, need_weights=False)[0]  # (B, T, d)


STACKS = {  # name: one layer's constructor
    "pure attention": lambda: PureAttention(),
    "pure attention + LayerNorm": lambda: PureAttention(layer_norm=True),
    "attention + skip": lambda: SkipAttention(),
    "Post-LN block (skip, MLP, LN)": lambda: nn.TransformerEncoderLayer(D, H, 4 * D, dropout=0.0, batch_first=True),
    "Pre-LN block (skip, MLP, LN)": lambda: nn.TransformerEncoderLayer(D, H, 4 * D, dropout=0.0, batch_first=True,
                                                                       norm_first=True),
}
# --8<-- [end:fix]


@torch.no_grad()
def convex_hull_check(device):
    """With W_q, W_k random and values = the tokens themselves (W_v = W_o = I, no biases),
    each output token is a softmax-weighted average of the inputs: the set can only shrink."""
    torch.manual_seed(SEED)
    x = torch.randn(B, T, D, device=device, dtype=DTYPE)  # (B, T, d)
    diam = [torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").amax().item()]
    for _ in range(DEPTH):
        wq, wk = (torch.randn(D, D, device=device, dtype=DTYPE) * 2 / D**0.5 for _ in range(2))
        ref = F.scaled_dot_product_attention(x @ wq, x @ wk, x)  # (B, T, d), values = tokens
        weights = ((x @ wq) @ (x @ wk).transpose(1, 2) / D**0.5).softmax(-1)  # (B, T, T)
        torch.testing.assert_close(weights @ x, ref)
        assert (weights >= 0).all() and torch.allclose(weights.sum(-1), torch.ones((), dtype=DTYPE))
        x = ref
        diam.append(torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").amax().item())
    return diam


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
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


STYLE = {"pure attention": ("#d62728", "-"), "pure attention + LayerNorm": ("#ff7f0e", "--"),
         "attention + skip": ("#2ca02c", "-"), "Post-LN block (skip, MLP, LN)": ("#1f77b4", "-"),
         "Pre-LN block (skip, MLP, LN)": ("#9467bd", "-")}


def plot(traces, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.5))
    depth = list(range(DEPTH + 1))
    for name, (cos, res) in traces.items():
        color, ls = STYLE[name]
        a0.plot(depth, cos, ls, color=color, label=name)
        a1.semilogy(depth, [max(r, 1e-17) for r in res], ls, color=color, label=name)
    a0.set_ylabel("mean pairwise cosine similarity")
    a0.set_ylim(-0.05, 1.05)
    a1.set_ylabel("‖X − 1·meanᵀ‖ / ‖X‖  (0 = rank one)")
    a1.set_ylim(1e-17, 3)
    for ax in (a0, a1):
        ax.set_xlabel("layers applied")
        ax.grid(True, color="0.9", lw=0.6)
    a1.legend(fontsize=7.5, frameon=False, loc="center right")
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    traces = {name: trace(make, args.device) for name, make in STACKS.items()}
    diam = convex_hull_check(args.device)
    with torch.no_grad():  # how peaked is a freshly initialised head? (largest weight per query)
        torch.manual_seed(SEED)
        x0 = torch.randn(B, T, D, device=args.device, dtype=DTYPE)  # (B, T, d)
        mha = nn.MultiheadAttention(D, H, batch_first=True).to(args.device, DTYPE)
        w0 = mha(x0, x0, x0, need_weights=True, average_attn_weights=False)[1]  # (B, H, T, T)
        init_max_weight = w0.amax(-1).mean().item()
    res_pure = traces["pure attention"][1]
    log_ratio = [math.log(res_pure[l + 1]) / math.log(res_pure[l]) for l in (1, 2)]  # before float64's floor
    keys = {"pure attention": "pure", "pure attention + LayerNorm": "pure_ln", "attention + skip": "skip",
            "Post-LN block (skip, MLP, LN)": "post_ln_block", "Pre-LN block (skip, MLP, LN)": "pre_ln_block"}
    # the first depth at which the residual is at float64's floor (below 1e-12), with and without LayerNorm
    floor_depth = {keys[k]: next((l for l, r in enumerate(traces[k][1]) if r < 1e-12), None)
                   for k in ("pure attention", "pure attention + LayerNorm")}
    results = {"machine": {**machine_info(), "device": args.device},
               "config": {"batch": B, "tokens": T, "d_model": D, "heads": H, "depth": DEPTH, "dtype": "float64",
                          "seed": SEED, "init": "PyTorch defaults, a fresh layer per depth"},
               "cosine": {keys[n]: c for n, (c, r) in traces.items()},
               "residual": {keys[n]: r for n, (c, r) in traces.items()},
               "at_depth": {str(l): {keys[n]: {"cosine": c[l], "residual": r[l]} for n, (c, r) in traces.items()}
                            for l in (1, 2, 3, 6, 12, DEPTH)},
               "floor_depth": floor_depth,
               "pure_log_residual_ratio": {"layer2_over_layer1": log_ratio[0], "layer3_over_layer2": log_ratio[1]},
               "init_attention": {"mean_max_weight": init_max_weight, "uniform": 1 / T},
               "convex_hull": {"diameter": diam, "first": diam[0], "last": diam[-1]}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(traces, OUT / "depth_collapse.svg")

    show = [0, 1, 2, 3, 6, 12, 24]
    print(f"{T} random tokens, d={D}, {H} heads, fresh random layers; cosine / relative residual after L layers")
    print(f"{'L':<31}" + "".join(f"{l:>15}" for l in show))
    for name, (cos, res) in traces.items():
        print(f"{name:<31}" + "".join(f"{cos[l]:>6.2f} /{res[l]:>7.1e}" for l in show))
    print(f"pure attention: log(residual) multiplied by {log_ratio[0]:.1f} (layer 1->2) and {log_ratio[1]:.1f} "
          f"(layer 2->3)")
    print(f"a fresh head's largest weight per query: {init_max_weight:.3f} on average (uniform: 1/{T} = {1 / T:.3f})")
    print(f"values = tokens: diameter of the token set {diam[0]:.2f} -> {diam[-1]:.2e} after {DEPTH} layers")

    # The claims the page makes.
    for k, by in (("pure attention", 3), ("pure attention + LayerNorm", 6)):
        cos, res = traces[k]
        assert cos[by] > 0.99 and res[by] < 1e-6, f"{k}: tokens should coincide after {by} layers"
    # LayerNorm only delays it, by a layer or two.
    assert floor_depth["pure"] is not None and floor_depth["pure_ln"] is not None, floor_depth
    assert 1 <= floor_depth["pure_ln"] - floor_depth["pure"] <= 2, f"LayerNorm should delay by 1-2 layers: {floor_depth}"
    # Doubly exponential: log(residual) is multiplied (not just shifted) by each layer.
    assert all(r > 2 for r in log_ratio), f"pure attention should collapse faster than exponentially: {log_ratio}"
    for k in ("attention + skip", "Post-LN block (skip, MLP, LN)", "Pre-LN block (skip, MLP, LN)"):
        cos, res = traces[k]
        assert cos[DEPTH] < 0.95 and min(res) > 0.2, f"{k}: the skip path should keep tokens apart"
    for k in ("attention + skip", "Post-LN block (skip, MLP, LN)", "Pre-LN block (skip, MLP, LN)"):
        cos = traces[k][0]
        assert cos[DEPTH] > cos[0] + 0.1, f"{k}: with a skip, similarity should still creep up (slowed, not stopped)"
    floor = 1e-12 * diam[0]  # float64 rounding once the tokens coincide
    assert all(b <= a + floor for a, b in zip(diam, diam[1:])), "a convex average spread tokens apart"
    assert diam[-1] < 1e-3 * diam[0], "the token set should shrink to (almost) a point"


if __name__ == "__main__":
    main()
