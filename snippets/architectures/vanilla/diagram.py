"""Draw the encoder-decoder Transformer from its config, and the attention patterns its masks allow.

diagram.svg: the architecture (Vaswani et al. 2017, Figure 1), every box labelled
with sizes read from TransformerConfig (the paper's base model).
attention.svg: real attention weights of a tiny random-weight model built from the
same code, for a padded source and a causal target; the script asserts that every
masked pair got exactly zero weight and that each row sums to 1.

Run from the repo root:  python snippets/architectures/vanilla/diagram.py
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

from model import Transformer, TransformerConfig

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 8.5,
                     "figure.facecolor": "white", "axes.facecolor": "white",
                     "savefig.facecolor": "white", "savefig.transparent": False,
                     "svg.fonttype": "none"})  # text stays text: a small file that stays searchable
COLORS = {"embed": "#fde2c8", "attn": "#fbd5d5", "norm": "#fff4b8", "ffn": "#d6ebff", "head": "#e2d9f3",
          "mask": "#eeeeee"}


def draw_architecture(cfg, path):
    fig, ax = plt.subplots(figsize=(8.6, 6.8))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10.2)
    ax.axis("off")
    drawn = []  # (kind, label) of every box, for the checks below

    def box(x, y, w, h, text, kind):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    fc=COLORS[kind], ec="0.25", lw=0.9))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8)
        drawn.append((kind, text))
        return (x + w / 2, y, y + h)  # centre x, bottom, top

    def arrow(x0, y0, x1, y1):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9, lw=0.9, color="0.2"))

    def mask_icon(x, y, kind, size=0.55):
        """A 5x5 grid: dark = query (row) may attend to key (column)."""
        n = 5
        for i in range(n):
            for j in range(n):
                on = j <= i if kind == "causal" else j < n - 1  # last key column = padding
                ax.add_patch(plt.Rectangle((x + j * size / n, y + (n - 1 - i) * size / n), size / n, size / n,
                                           fc="0.25" if on else "white", ec="0.6", lw=0.3))
        drawn.append(("mask", kind))

    d, h, dk, dv, dff, V, N = cfg.d_model, cfg.n_heads, cfg.d_k, cfg.d_v, cfg.d_ff, cfg.vocab_size, cfg.n_layers
    W = 3.3
    # ---- encoder (left) ----
    ex = 0.7
    e_emb = box(ex, 0.3, W, 0.6, f"Input embedding  {V:,} x {d}\n(x sqrt(d_model)) + sinusoidal positions", "embed")
    ax.add_patch(FancyBboxPatch((ex - 0.25, 1.35), W + 0.5, 4.35, boxstyle="round,pad=0.02,rounding_size=0.2",
                                fc="none", ec="0.4", lw=1.1, ls="--"))
    ax.text(ex - 0.45, 3.5, f"{N}x", ha="right", va="center", fontsize=13, weight="bold")
    drawn.append(("repeat", f"{N}x"))
    e1 = box(ex, 1.6, W, 0.8, f"Multi-head self-attention\nh = {h}, d_k = {dk}, d_v = {dv}", "attn")
    mask_icon(ex + W + 0.3, 1.72, "padding")
    ax.text(ex + W + 0.3 + 0.275, 2.35, "mask", ha="center", fontsize=7, color="0.3")
    e2 = box(ex, 2.7, W, 0.4, "Add & LayerNorm", "norm")
    e3 = box(ex, 3.45, W, 0.8, f"Feed-forward (ReLU)\n{d} -> {dff} -> {d}", "ffn")
    e4 = box(ex, 4.6, W, 0.4, "Add & LayerNorm", "norm")
    ax.text(ex + W / 2, 5.95, f"encoder output (memory): S x {d}", ha="center", fontsize=8, style="italic")
    for a, b in ((e_emb, e1), (e1, e2), (e2, e3), (e3, e4)):
        arrow(a[0], a[2], b[0], b[1])
    arrow(e4[0], e4[2], e4[0], 5.85)

    # ---- decoder (right) ----
    dx = 5.9
    d_emb = box(dx, 0.3, W, 0.6, f"Output embedding (same matrix)\n(x sqrt(d_model)) + sinusoidal positions", "embed")
    ax.add_patch(FancyBboxPatch((dx - 0.25, 1.35), W + 0.5, 6.3, boxstyle="round,pad=0.02,rounding_size=0.2",
                                fc="none", ec="0.4", lw=1.1, ls="--"))
    ax.text(dx + W + 0.45, 4.5, f"x{N}", ha="left", va="center", fontsize=13, weight="bold")
    drawn.append(("repeat", f"{N}x"))
    d1 = box(dx, 1.6, W, 0.8, f"Masked multi-head self-attention\nh = {h}, d_k = {dk}", "attn")
    mask_icon(dx - 0.85, 1.72, "causal")
    ax.text(dx - 0.85 + 0.275, 2.35, "mask", ha="center", fontsize=7, color="0.3")
    d2 = box(dx, 2.7, W, 0.4, "Add & LayerNorm", "norm")
    d3 = box(dx, 3.45, W, 0.8, f"Cross-attention: Q from decoder,\nK, V from encoder memory (h = {h})", "attn")
    d4 = box(dx, 4.6, W, 0.4, "Add & LayerNorm", "norm")
    d5 = box(dx, 5.35, W, 0.8, f"Feed-forward (ReLU)\n{d} -> {dff} -> {d}", "ffn")
    d6 = box(dx, 6.5, W, 0.4, "Add & LayerNorm", "norm")
    for a, b in ((d_emb, d1), (d1, d2), (d2, d3), (d3, d4), (d4, d5), (d5, d6)):
        arrow(a[0], a[2], b[0], b[1])
    ax.add_patch(FancyArrowPatch((e4[0], 6.25), (dx, 3.85), connectionstyle="arc3,rad=-0.25", arrowstyle="-|>",
                                 mutation_scale=9, lw=1.0, color="#b03030"))

    # ---- head ----
    tie = "tied to the embedding" if cfg.tie_embeddings else "own matrix"
    h1 = box(dx, 8.1, W, 0.6, f"Linear {d} -> {V:,}\n({tie})", "head")
    h2 = box(dx, 9.1, W, 0.45, "Softmax: next-token probabilities", "head")
    arrow(d6[0], d6[2], h1[0], h1[1])
    arrow(h1[0], h1[2], h2[0], h2[1])
    ax.text(dx - 0.2, 0.1, "target, shifted right", ha="left", fontsize=7.5, style="italic", color="0.3")
    ax.text(ex, 0.1, "source tokens", ha="left", fontsize=7.5, style="italic", color="0.3")
    ax.text(5.0, 10.0, f"Transformer (Vaswani et al. 2017), base config: d_model = {d}, N = {N}, h = {h}, "
            f"d_ff = {dff}, P_drop = {cfg.dropout}", ha="center", fontsize=9.5, weight="bold")
    ax.text(0.45, 9.5, "mask icons: rows = queries, columns = keys,\ndark = may attend;"
            " encoder ignores padding (last column),\ndecoder sees only earlier positions",
            fontsize=7.5, color="0.3", va="top")
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return drawn


def draw_attention(path):
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=20, d_model=32, n_heads=4, d_k=8, d_v=8, d_ff=64, n_layers=1, dropout=0.0)
    model = Transformer(cfg).eval()
    src = torch.tensor([[5, 9, 3, 7, 2, 8, 0, 0]])  # (1, S): two padding tokens at the end
    tgt = torch.tensor([[1, 8, 2, 7, 3, 9]])  # (1, T)
    with torch.no_grad():
        model(src, tgt)
    panels = [("Encoder self-attention\n(padding masked)", model.encoder[0].self_attn.weights[0, 0], "source key", "source query"),
              ("Decoder masked self-attention\n(causal)", model.decoder[0].self_attn.weights[0, 0], "target key", "target query"),
              ("Cross-attention\n(padding masked)", model.decoder[0].cross_attn.weights[0, 0], "source key", "target query")]
    pad = src[0] == cfg.pad_id
    T = tgt.shape[1]
    # Checks: masked pairs have weight exactly 0, and every row is a probability distribution.
    assert (panels[0][1][:, pad] == 0).all() and (panels[2][1][:, pad] == 0).all()
    assert (panels[1][1][~torch.ones(T, T, dtype=torch.bool).tril()] == 0).all()
    for _, w, _, _ in panels:
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[0]))
    fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.3))
    cmap = plt.get_cmap("Blues").copy()
    cmap.set_bad("#d9d9d9")  # masked pairs: weight exactly 0
    for ax, (title, w, xl, yl) in zip(axes, panels):
        ax.imshow(np.ma.masked_equal(w.numpy(), 0.0), cmap=cmap, vmin=0, vmax=float(w.max()))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_xticks(range(w.shape[1]))
        ax.set_yticks(range(w.shape[0]))
        ax.tick_params(labelsize=7)
    src_labels = ["pad" if p else str(i) for i, p in enumerate(pad.tolist())]
    axes[0].set_xticklabels(src_labels)
    axes[0].set_yticklabels(src_labels)
    axes[2].set_xticklabels(src_labels)
    fig.suptitle("Attention weights of one head (random weights); grey = exactly zero (masked)", fontsize=9.5)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return {"masked_weight_max": 0.0, "rows_sum_to_one": True}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = TransformerConfig()
    drawn = draw_architecture(cfg, OUT / "diagram.svg")
    kinds = [k for k, _ in drawn]
    # One box per sub-layer: encoder 2 + decoder 3 sub-layers, each followed by Add & LayerNorm.
    assert kinds.count("attn") == 3 and kinds.count("ffn") == 2 and kinds.count("norm") == 5, kinds
    assert [t for k, t in drawn if k == "repeat"] == [f"{cfg.n_layers}x"] * 2
    labels = " ".join(t for _, t in drawn)
    for number in (cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.d_k):
        assert str(number) in labels, number
    assert f"{cfg.vocab_size:,}" in labels
    att = draw_attention(OUT / "attention.svg")
    sizes = {f.name: f.stat().st_size for f in OUT.glob("*.svg")}
    assert all(s < 100_000 for s in sizes.values()), sizes
    print(f"diagram.svg: {len(drawn)} boxes and icons drawn from TransformerConfig "
          f"(d_model={cfg.d_model}, N={cfg.n_layers}, h={cfg.n_heads}, d_ff={cfg.d_ff}, V={cfg.vocab_size:,})")
    print("attention.svg: masked pairs have weight exactly 0, every row sums to 1")
    for name, s in sorted(sizes.items()):
        print(f"  {name}: {s / 1024:.0f} KiB")
    (OUT / "results.json").write_text(json.dumps({"boxes": len(drawn), "svg_bytes": sizes, **att}, indent=2))


if __name__ == "__main__":
    main()
