"""Post-LN vs Pre-LN: gradient norms per layer at initialisation.

Builds stacks of nn.TransformerEncoderLayer with norm_first=False (Post-LN,
the 2017 layout) and norm_first=True (Pre-LN, plus the final LayerNorm every
Pre-LN model has), initialised like nn.Transformer (Xavier uniform), and
measures the gradient norm of each layer's second feed-forward weight W2 on a
random next-token loss. Xiong et al. (2020, Theorem 1) bound the last layer's
gradient by O(d sqrt(ln d)) for Post-LN, independent of depth L, and by
O(d sqrt(ln d / L)) for Pre-LN. The script checks that the measured last-layer
gradient is larger for Post-LN, that the gap widens with depth, that the
Pre-LN one shrinks roughly like 1/sqrt(L) while the Post-LN one does not
shrink, and where in each 24-layer stack the largest gradient sits.

Run from the repo root:  python snippets/problems/10_training_instability/grad_norms.py
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

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
D_MODEL, HEADS, D_FF = 64, 4, 256
VOCAB, B, T = 64, 16, 32  # batch-first token ids (B, T)
DEPTHS = [6, 12, 24]
SEEDS = [0, 1, 2, 3]  # gradient norms are averaged over these initialisations


# --8<-- [start:core]
def build(n_layers, norm_first):
    layers = nn.ModuleList(
        nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, batch_first=True, norm_first=norm_first)
        for _ in range(n_layers))
    for p in layers.parameters():  # the init nn.Transformer uses (and Xiong et al. assume)
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    final_norm = nn.LayerNorm(D_MODEL) if norm_first else nn.Identity()  # Post-LN already ends in a LayerNorm
    return layers, final_norm


def w2_grad_norms(n_layers, norm_first, seed, device="cpu"):
    """||dLoss/dW2|| of each layer's feed-forward output weight, at initialisation."""
    torch.manual_seed(seed)
    layers, final_norm = build(n_layers, norm_first)
    embed, head = nn.Embedding(VOCAB, D_MODEL), nn.Linear(D_MODEL, VOCAB)
    model = nn.ModuleList([layers, final_norm, embed, head]).to(device)
    tokens = torch.randint(0, VOCAB, (B, T + 1), device=device)
    h = embed(tokens[:, :-1])  # (B, T, d)
    for layer in layers:
        h = layer(h)  # (B, T, d)
    logits = head(final_norm(h))  # (B, T, vocab)
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))  # (B*T, vocab) vs (B*T,)
    model.zero_grad()
    loss.backward()
    return [layer.linear2.weight.grad.norm().item() for layer in layers]  # layer 1 (input side) first
# --8<-- [end:core]


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


def plot(per_layer, last, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.3))
    L = DEPTHS[-1]
    idx = np.arange(1, L + 1)
    for kind, color in (("post_ln", "#d62728"), ("pre_ln", "#1f77b4")):
        name = "Post-LN" if kind == "post_ln" else "Pre-LN"
        a0.plot(idx, per_layer[str(L)][kind], "-", color=color, label=name)
        a1.loglog(DEPTHS, [last[str(n)][kind] for n in DEPTHS], "o-", color=color, label=name, ms=4)
    ref = np.array(DEPTHS, dtype=float)
    a1.loglog(ref, last[str(DEPTHS[0])]["pre_ln"] * 0.8 * (ref / ref[0]) ** -0.5, "--", color="0.55", lw=0.8,
              label="∝ 1/√L")
    a0.set_xlabel("layer (1 = next to the input)")
    a0.set_ylabel("‖∂loss/∂W2‖ at init")
    a0.set_title(f"{L}-layer stack, mean of {len(SEEDS)} inits", fontsize=9)
    a0.set_ylim(bottom=0)
    a1.set_xlabel("depth L")
    a1.set_ylabel("last layer's ‖∂loss/∂W2‖")
    a1.set_xticks(DEPTHS, [str(n) for n in DEPTHS])
    a1.minorticks_off()
    a1.set_title("last layer vs depth", fontsize=9)
    for ax in (a0, a1):
        ax.grid(True, color="0.9", lw=0.6)
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    per_layer, last, seed_ratio = {}, {}, {}
    for n in DEPTHS:
        per_layer[str(n)], last[str(n)] = {}, {}
        for kind, norm_first in (("post_ln", False), ("pre_ln", True)):
            gs = np.array([w2_grad_norms(n, norm_first, s, args.device) for s in SEEDS])  # (seeds, n)
            g = gs.mean(axis=0)  # (n,)
            per_layer[str(n)][kind] = g.tolist()
            last[str(n)][kind] = float(g[-1])
            if n == DEPTHS[-1]:  # last/first layer in each initialisation of the deepest stack
                seed_ratio[kind] = (gs[:, -1] / gs[:, 0]).tolist()
        last[str(n)]["post_over_pre"] = last[str(n)]["post_ln"] / last[str(n)]["pre_ln"]
    fit = {kind: float(np.polyfit(np.log(DEPTHS), np.log([last[str(n)][kind] for n in DEPTHS]), 1)[0])
           for kind in ("post_ln", "pre_ln")}
    deep = per_layer[str(DEPTHS[-1])]
    top_over_bottom = {k: deep[k][-1] / deep[k][0] for k in ("post_ln", "pre_ln")}
    post_change = {f"{a}_to_{b}": last[str(b)]["post_ln"] / last[str(a)]["post_ln"] - 1
                   for a, b in zip(DEPTHS, DEPTHS[1:])}  # relative change of the Post-LN last-layer gradient
    largest_at = {k: int(np.argmax(deep[k])) + 1 for k in ("post_ln", "pre_ln")}  # 1 = next to the input

    results = {"machine": {**machine_info(), "device": args.device},
               "config": {"d_model": D_MODEL, "heads": HEADS, "d_ff": D_FF, "vocab": VOCAB, "batch": B, "seq": T,
                          "depths": DEPTHS, "seeds": SEEDS, "n_seeds": len(SEEDS), "init": "xavier_uniform"},
               "per_layer": per_layer, "last_layer": last, "depth_exponent": fit,
               "post_ln_last_layer_change": post_change,
               "deepest": {"layers": DEPTHS[-1], "top_over_bottom": top_over_bottom,
                           "top_over_bottom_per_seed": {k: {"min": min(v), "max": max(v), "all": v}
                                                        for k, v in seed_ratio.items()},
                           "largest_gradient_at_layer": largest_at,
                           "post_over_pre_last": last[str(DEPTHS[-1])]["post_over_pre"]}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(per_layer, last, OUT / "grad_norms.svg")

    print(f"||dLoss/dW2|| of the LAST layer at init (mean of {len(SEEDS)} inits, d={D_MODEL}):")
    print(f"{'L':>4} {'Post-LN':>9} {'Pre-LN':>9} {'Post/Pre':>9}")
    for n in DEPTHS:
        r = last[str(n)]
        print(f"{n:>4} {r['post_ln']:>9.3f} {r['pre_ln']:>9.3f} {r['post_over_pre']:>9.2f}")
    print(f"fit  last-layer grad ∝ L^k:  Post-LN k = {fit['post_ln']:+.2f}, Pre-LN k = {fit['pre_ln']:+.2f}")
    print("Post-LN last-layer gradient, change with depth: "
          + ", ".join(f"{k.replace('_to_', ' -> ')} layers {v:+.1%}" for k, v in post_change.items()))
    print(f"{DEPTHS[-1]} layers, last/first layer gradient: Post-LN {top_over_bottom['post_ln']:.2f} "
          f"(per init {min(seed_ratio['post_ln']):.2f} to {max(seed_ratio['post_ln']):.2f}), "
          f"Pre-LN {top_over_bottom['pre_ln']:.2f}; largest gradient at layer "
          f"{largest_at['post_ln']} (Post-LN), {largest_at['pre_ln']} (Pre-LN)")

    # The claims the page makes.
    for n in DEPTHS:
        assert last[str(n)]["post_over_pre"] > 1.2, f"L={n}: Post-LN last-layer gradient should exceed Pre-LN's"
    assert last[str(DEPTHS[-1])]["post_over_pre"] > 1.5 * last[str(DEPTHS[0])]["post_over_pre"], \
        "the Post/Pre gap should widen with depth"
    assert -0.8 < fit["pre_ln"] < -0.25, f"Pre-LN last-layer gradient should shrink ~1/sqrt(L), got L^{fit['pre_ln']:.2f}"
    # Xiong et al.'s Post-LN bound does not shrink with depth: neither does the measured gradient.
    assert all(c > -0.05 for c in post_change.values()), f"Post-LN last-layer gradient fell with depth: {post_change}"
    assert post_change[f"{DEPTHS[0]}_to_{DEPTHS[1]}"] > 0.1, f"the page says it rose from 6 to 12 layers: {post_change}"
    assert largest_at["post_ln"] == DEPTHS[-1], f"Post-LN: the largest gradient should be next to the output: {largest_at}"
    assert top_over_bottom["post_ln"] > 1.5, f"Post-LN last/first layer gradient: {top_over_bottom}"
    for n in DEPTHS:  # Pre-LN: the first layer, next to the input, gets the largest gradient at every depth
        assert int(np.argmax(per_layer[str(n)]["pre_ln"])) == 0, f"Pre-LN, L={n}: largest gradient not in layer 1"
    assert top_over_bottom["pre_ln"] < 0.6, "in Pre-LN the layers next to the input should get the larger gradients"


if __name__ == "__main__":
    main()
