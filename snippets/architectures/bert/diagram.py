"""Draw BERT from its config, and the attention pattern its padding mask allows.

diagram.svg: embeddings (token + position + segment), L x post-LN encoder blocks and
the two pre-training heads, every box labelled with sizes read from BertConfig
(BERT-base, Devlin et al. 2018, Section 3).
attention.svg: real attention weights of a tiny random-weight BERT built from the same
code, for two sequences of different lengths in one batch; the script asserts that
padding gets exactly zero weight, that every row sums to 1, and that tokens attend to
positions on both sides (no causal mask).

Run from the repo root:  python snippets/architectures/bert/diagram.py
"""
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from model import Bert, BertConfig

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 8.5,
                     "figure.facecolor": "white", "axes.facecolor": "white",
                     "savefig.facecolor": "white", "savefig.transparent": False,
                     "svg.fonttype": "none"})  # text stays text: a small file that stays searchable
COLORS = {"embed": "#fde2c8", "attn": "#fbd5d5", "norm": "#fff4b8", "ffn": "#d6ebff", "head": "#e2d9f3",
          "input": "#eeeeee"}


def draw_architecture(cfg, path):
    fig, ax = plt.subplots(figsize=(8.6, 7.0))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10.6)
    ax.axis("off")
    drawn = []  # (kind, label) of every box, for the checks below

    def box(x, y, w, h, text, kind):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    fc=COLORS[kind], ec="0.25", lw=0.9))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8)
        drawn.append((kind, text))
        return (x + w / 2, y, y + h)

    def arrow(x0, y0, x1, y1):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9, lw=0.9, color="0.2"))

    H, L, A, F_, V, P = cfg.hidden, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.vocab_size, cfg.max_len
    x0, W = 2.6, 4.6
    inp = box(x0, 0.2, W, 0.5, "[CLS] my dog is [MASK] [SEP] he likes play ##ing [SEP]", "input")
    # three embedding tables, summed
    ew = (W - 0.3) / 3
    embs = [box(x0 + i * (ew + 0.15), 1.05, ew, 0.65, t, "embed") for i, t in enumerate(
        (f"token\n{V:,} x {H}", f"position (learned)\n{P} x {H}", f"segment A/B\n{cfg.n_segments} x {H}"))]
    for e in embs:
        arrow(e[0], inp[2], e[0], e[1])
    s = box(x0, 2.05, W, 0.45, "sum, then LayerNorm + dropout", "norm")
    for e in embs:
        arrow(e[0], e[2], s[0], s[1])
    ax.add_patch(FancyBboxPatch((x0 - 0.3, 2.85), W + 0.6, 3.85, boxstyle="round,pad=0.02,rounding_size=0.2",
                                fc="none", ec="0.4", lw=1.1, ls="--"))
    ax.text(x0 - 0.5, 4.75, f"{L}x", ha="right", va="center", fontsize=13, weight="bold")
    drawn.append(("repeat", f"{L}x"))
    b1 = box(x0, 3.1, W, 0.8, f"Multi-head self-attention, bidirectional\nA = {A} heads of {H // A}", "attn")
    b2 = box(x0, 4.15, W, 0.4, "Add & LayerNorm", "norm")
    b3 = box(x0, 4.85, W, 0.8, f"Feed-forward (GELU)\n{H} -> {F_} -> {H}", "ffn")
    b4 = box(x0, 5.95, W, 0.4, "Add & LayerNorm", "norm")
    for a, b in ((s, b1), (b1, b2), (b2, b3), (b3, b4)):
        arrow(a[0], a[2], b[0], b[1])
    # mask icon: every real token sees every real token; the last column is padding
    n, size, mx, my = 5, 0.6, x0 + W + 0.45, 3.2
    for i in range(n):
        for j in range(n):
            ax.add_patch(plt.Rectangle((mx + j * size / n, my + (n - 1 - i) * size / n), size / n, size / n,
                                       fc="0.25" if j < n - 1 else "white", ec="0.6", lw=0.3))
    drawn.append(("mask", "bidirectional"))
    ax.text(mx + size / 2, my + size + 0.12, "mask: all pairs\nexcept padding", ha="center", fontsize=7, color="0.3")

    # heads
    hx = box(0.5, 7.25, 4.1, 0.95, f"MLM head, every position:\ndense {H} + GELU + LayerNorm,\n"
                                    f"x token embedding^T (tied) -> {V:,}", "head")
    nx = box(5.4, 7.25, 4.1, 0.95, f"NSP head, [CLS] only:\npooler tanh({H} -> {H})\n"
                                    f"-> 2 classes (IsNext / NotNext)", "head")
    arrow(b4[0] - 1.0, b4[2], hx[0], hx[1])
    arrow(b4[0] + 1.0, b4[2], nx[0], nx[1])
    ax.text(hx[0], 8.5, "loss on the 15% selected tokens only", ha="center", fontsize=7.5, style="italic", color="0.3")
    ax.text(5.0, 9.95, f"BERT-base (Devlin et al. 2018): L = {L}, H = {H}, A = {A}, d_ff = {F_}, "
            f"P_drop = {cfg.dropout}", ha="center", fontsize=9.5, weight="bold")
    ax.text(5.0, 9.45, "post-LN encoder blocks as in the original Transformer; no decoder, no causal mask",
            ha="center", fontsize=8, color="0.3")
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return drawn


def draw_attention(path):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30, hidden=32, n_layers=1, n_heads=4, d_ff=64, max_len=16, dropout=0.0)
    model = Bert(cfg).eval()
    with torch.no_grad():  # the N(0, 0.02) init gives nearly uniform attention; larger random weights show more
        for p in model.blocks.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    ids = torch.tensor([[1, 7, 12, 9, 21, 4, 15, 2, 11, 2],  # [CLS] ... [SEP] ... [SEP], 10 tokens
                        [1, 8, 13, 5, 2, 0, 0, 0, 0, 0]])  # 5 tokens, then 5 [PAD]
    with torch.no_grad():
        model(ids)
    w = model.blocks[0].attn.weights[:, 0]  # head 0: (B, T, T)
    pad = ids == cfg.pad_id
    assert (w[1][:, pad[1]] == 0).all()  # padding keys: weight exactly 0
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:2]))
    real = ~pad[1]
    upper = torch.ones(10, 10, dtype=torch.bool).triu(1)
    assert (w[0][upper] > 0).all() and (w[1][upper & real[None, :] & real[:, None]] > 0).all()  # sees ahead too
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.7))
    cmap = plt.get_cmap("Purples").copy()
    cmap.set_bad("#d9d9d9")
    names = {1: "CLS", 2: "SEP", 0: "pad"}
    for ax, b, title in ((axes[0], 0, "sequence 1: 10 tokens"), (axes[1], 1, "sequence 2: 5 tokens + 5 padding")):
        ax.imshow(np.ma.masked_equal(w[b].numpy(), 0.0), cmap=cmap, vmin=0, vmax=float(w[b].max()))
        labels = [names.get(int(t), f"t{i}") for i, t in enumerate(ids[b])]
        ax.set_xticks(range(10), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(10), labels, fontsize=7)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        ax.set_title(title, fontsize=9)
    fig.suptitle("One head of a random-weight BERT, one batch: every token attends both ways; "
                 "grey = exactly zero (padding)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = BertConfig()
    drawn = draw_architecture(cfg, OUT / "diagram.svg")
    kinds = [k for k, _ in drawn]
    assert kinds.count("embed") == 3 and kinds.count("attn") == 1 and kinds.count("ffn") == 1, kinds
    assert kinds.count("head") == 2 and [t for k, t in drawn if k == "repeat"] == [f"{cfg.n_layers}x"]
    labels = " ".join(t for _, t in drawn)
    for number in (cfg.hidden, cfg.d_ff, cfg.n_heads, cfg.max_len, cfg.hidden // cfg.n_heads):
        assert str(number) in labels, number
    assert f"{cfg.vocab_size:,}" in labels
    draw_attention(OUT / "attention.svg")
    sizes = {f.name: f.stat().st_size for f in OUT.glob("*.svg")}
    assert all(s < 100_000 for s in sizes.values()), sizes
    print(f"diagram.svg: {len(drawn)} boxes drawn from BertConfig "
          f"(L={cfg.n_layers}, H={cfg.hidden}, A={cfg.n_heads}, d_ff={cfg.d_ff}, V={cfg.vocab_size:,})")
    print("attention.svg: padding gets weight exactly 0, rows sum to 1, tokens attend to later positions too")
    for name, s in sorted(sizes.items()):
        print(f"  {name}: {s / 1024:.0f} KiB")
    (OUT / "results.json").write_text(json.dumps({"boxes": len(drawn), "svg_bytes": sizes}, indent=2))


if __name__ == "__main__":
    main()
