"""See it: at initialisation, attention weight does not decay with distance; a conv's does.

Real digits (upsampled to 16x16) are cut into 2x2 patches, an 8x8 grid of 64
tokens, embedded as in a ViT (linear patch embedding + small random position
embedding). For the centre token we measure, averaged over 500 images and 32
freshly initialised heads:
  * how much attention weight goes to each other token, against distance;
  * for two stacked 3x3 convolutions on the same token grid, the effective
    receptive field |d out_centre / d in_j|, normalised to sum to 1 like
    attention weights.
Attention spreads its weight evenly over the whole image; the conv puts all
of it within distance 2 and exactly none beyond.

Run from the repo root:  python snippets/problems/05_no_local_inductive_bias/locality_at_init.py
"""
import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
P, G = 2, 8  # patch size; token grid G x G (16x16 image)
E, HEADS, INITS = 64, 8, 4  # embedding, heads per layer, independent initialisations (32 heads)
CENTRE = (4, 4)
N_IMAGES = 500


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


# --8<-- [start:core]
def attention_map(img, seed):
    """Attention weights of the centre token at init, averaged over images and heads: (G, G)."""
    torch.manual_seed(seed)
    patchify = nn.Conv2d(1, E, P, stride=P).to(img.device)
    pos = 0.02 * torch.randn(1, G * G, E, device=img.device)  # ViT-style small random position embedding
    norm = nn.LayerNorm(E).to(img.device)
    mha = nn.MultiheadAttention(E, HEADS, batch_first=True).to(img.device)
    tok = norm(patchify(img).flatten(2).transpose(1, 2) + pos)  # (B, E, G, G) -> (B, N, E)
    _, w = mha(tok, tok, tok, average_attn_weights=False)  # w: (B, heads, N, N), rows sum to 1
    c = CENTRE[0] * G + CENTRE[1]
    return w[:, :, c].mean(dim=(0, 1)).view(G, G)  # (N,) -> (G, G)


def conv_receptive_field(img, seed):
    """|d out[centre] / d tokens| for two 3x3 convs on the token grid, normalised to sum 1: (G, G)."""
    torch.manual_seed(seed)
    patchify = nn.Conv2d(1, E, P, stride=P).to(img.device)
    convs = nn.Sequential(nn.Conv2d(E, E, 3, padding=1), nn.ReLU(), nn.Conv2d(E, E, 3, padding=1)).to(img.device)
    tok = patchify(img).detach().requires_grad_(True)  # (B, E, G, G)
    convs(tok)[:, :, CENTRE[0], CENTRE[1]].sum().backward()
    g = tok.grad.abs().sum(dim=(0, 1))  # (G, G)
    return g / g.sum()
# --8<-- [end:core]


def attention_gradient(img, seed):
    """|d out[centre] / d tokens| for one attention layer: which tokens can influence the centre: (G, G)."""
    torch.manual_seed(seed)
    mha = nn.MultiheadAttention(E, HEADS, batch_first=True).to(img.device)
    patchify = nn.Conv2d(1, E, P, stride=P).to(img.device)
    tok = patchify(img).flatten(2).transpose(1, 2).detach().requires_grad_(True)  # (B, N, E)
    out, _ = mha(tok, tok, tok)  # (B, N, E)
    out[:, CENTRE[0] * G + CENTRE[1]].sum().backward()
    return tok.grad.abs().sum(dim=(0, 2)).view(G, G)  # (N,) -> (G, G)


def profile(m, dist):
    """Mean of m over tokens at each distinct distance from the centre."""
    ds = np.unique(dist.round(6))
    return ds, np.array([m[np.isclose(dist, d)].mean() for d in ds])


def plot(att, conv, dist, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 8, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.0), gridspec_kw={"width_ratios": [1, 1, 1.35]},
                             layout="constrained")
    vmax = max(att.max(), conv.max())
    for ax, m, title in ((axes[0], att, f"attention weight from centre\n(init, {HEADS * INITS} heads, {N_IMAGES} images)"),
                         (axes[1], conv, "two 3x3 convs: normalised\n|d out / d in| (receptive field)")):
        im = ax.imshow(m, cmap="viridis", vmin=0, vmax=vmax, interpolation="none")
        ax.plot(CENTRE[1], CENTRE[0], "r+", ms=8)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[1], shrink=0.85, label="share of weight")
    ax = axes[2]
    for m, style, label in ((att, "o-", "attention (init)"), (conv, "s-", "two 3x3 convs")):
        ds, ys = profile(m, dist)
        ax.plot(ds, ys, style, ms=3, label=label)
    ax.axhline(1 / G**2, color="0.5", ls="--", lw=0.8, label=f"uniform 1/{G * G}")
    ax.set_xlabel("distance from centre token (patches)")
    ax.set_ylabel("mean share of weight per token")
    ax.set_ylim(bottom=0)
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=7, frameon=False)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


@torch.no_grad()
def measure_attention(img):
    return torch.stack([attention_map(img, SEED + s) for s in range(INITS)]).mean(0)  # (G, G)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    dev = ap.parse_args().device
    OUT.mkdir(parents=True, exist_ok=True)

    img = torch.tensor(load_digits().images[:N_IMAGES], dtype=torch.float32, device=dev).unsqueeze(1) / 16.0  # (n, 1, 8, 8)
    img = F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)  # (n, 1, 16, 16)

    att = measure_attention(img).cpu()  # (G, G)
    conv = torch.stack([conv_receptive_field(img, SEED + s) for s in range(INITS)]).mean(0).cpu()  # (G, G)
    grad_att = attention_gradient(img[:64], SEED).cpu()  # (G, G)

    yy, xx = np.mgrid[:G, :G]
    dist = np.hypot(yy - CENTRE[0], xx - CENTRE[1])  # (G, G) Euclidean distance in patches
    cheb = np.maximum(abs(yy - CENTRE[0]), abs(xx - CENTRE[1]))  # (G, G) Chebyshev distance
    a, c = att.numpy(), conv.numpy()
    near, far = (dist > 0) & (dist < 1.5), dist >= 4  # the 8 neighbours; tokens 4+ patches away
    summary = {
        "attention": {"near_mean": float(a[near].mean()), "far_mean": float(a[far].mean()),
                      "near_over_far": float(a[near].mean() / a[far].mean()), "self": float(a[dist == 0][0]),
                      "share_within_1_5": float(a[dist < 1.5].sum()), "min_grad": float(grad_att.min())},
        "conv": {"near_mean": float(c[near].mean()), "far_mean": float(c[far].mean()),
                 "share_within_1_5": float(c[dist < 1.5].sum()), "share_beyond_2": float(c[cheb > 2].sum())},
        "uniform": 1 / G**2, "uniform_share_within_1_5": float((dist < 1.5).sum() / G**2),
    }

    # The claims the page makes.
    assert 0.8 < summary["attention"]["near_over_far"] < 1.25, \
        f"attention at init should not favour neighbours: near/far = {summary['attention']['near_over_far']:.2f}"
    share_ratio = summary["attention"]["share_within_1_5"] / summary["uniform_share_within_1_5"]
    assert 0.85 < share_ratio < 1.15, f"the 3x3 neighbourhood should get about its share of the grid: {share_ratio:.3f}"
    assert summary["attention"]["min_grad"] > 0, "every token should influence the centre through attention"
    assert summary["conv"]["share_beyond_2"] == 0.0, "two 3x3 convs cannot see beyond 2 tokens"
    assert summary["conv"]["share_within_1_5"] > 2 * summary["attention"]["share_within_1_5"], \
        "the conv should concentrate its weight on the 3x3 neighbourhood"
    assert summary["conv"]["near_mean"] > 2 * summary["attention"]["near_mean"], "a neighbour should matter more to the conv"

    plot(a, c, dist, OUT / "locality.svg")
    results = {"machine": {**machine_info(), "device": dev},
               "config": {"grid": G, "patch": P, "embed_dim": E, "heads_per_init": HEADS, "inits": INITS,
                          "images": len(img), "centre": CENTRE},
               **summary}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    s = summary
    print(f"{G}x{G} token grid, centre token {CENTRE}, {HEADS * INITS} heads at init, {len(img)} digits")
    print(f"{'':<22} {'attention':>10} {'3x3 convs':>10} {'uniform':>8}")
    print(f"{'weight per neighbour':<22} {s['attention']['near_mean']:>10.4f} {s['conv']['near_mean']:>10.4f} {s['uniform']:>8.4f}")
    print(f"{'weight per far token':<22} {s['attention']['far_mean']:>10.4f} {s['conv']['far_mean']:>10.4f} {s['uniform']:>8.4f}")
    print(f"{'share within 1.5':<22} {s['attention']['share_within_1_5']:>10.3f} {s['conv']['share_within_1_5']:>10.3f} "
          f"{s['uniform_share_within_1_5']:>8.3f}")
    print(f"attention near/far ratio {s['attention']['near_over_far']:.2f}; every token reaches the centre "
          f"through one attention layer (min |grad| {s['attention']['min_grad']:.1e} > 0);")
    print(f"convs: share of weight beyond 2 tokens = {s['conv']['share_beyond_2']:.1f}")


if __name__ == "__main__":
    main()
