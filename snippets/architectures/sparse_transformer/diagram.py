"""Draw the Sparse Transformer architecture from its config (the enwik8 model by default).

Every label with a size is formatted from SparseTransformerConfig, and the
inset is the config's attention pattern (fixed or strided) drawn by the same
pattern_mask the model is checked against, scaled down so the cells are
visible. Writes diagram.svg.

Run from the repo root:  python snippets/architectures/sparse_transformer/diagram.py
"""
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from model import SparseTransformerConfig, pattern_mask  # noqa: E402

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
COLORS = {"emb": "#dbeafe", "attn": "#fde68a", "ff": "#bbf7d0", "norm": "#e5e7eb", "head": "#fbcfe8",
          "pos": "#fed7aa"}


def box(ax, x, y, w, h, text, color, drawn, fontsize=8.5):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=color, ec="#374151", lw=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    drawn.append(text)


def arrow(ax, a, b, color="#374151"):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, lw=1.0, color=color))


def draw(cfg, path, n_small=36, l_small=6):
    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                         "figure.facecolor": "white", "savefig.facecolor": "white", "savefig.transparent": False})
    fig = plt.figure(figsize=(8.2, 7.6))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0.3, 10.3)
    ax.set_ylim(0.0, 11.6)
    ax.axis("off")
    drawn = []
    cx, w = 3.9, 4.6
    d, dqk, dff = cfg.d_model, int(cfg.d_model * cfg.qk_ratio), int(cfg.d_model * cfg.ff_mult)
    pos = " + ".join(str(p) for p in cfg.pos_dims)

    box(ax, cx, 0.5, w, 0.55, f"sequence: N = {cfg.seq_len:,} tokens (bytes)", "white", drawn)
    box(ax, cx, 1.55, w, 0.85, f"token embedding {cfg.vocab_size} × {d}\n+ position embeddings "
        f"({pos}) × {d}", COLORS["emb"], drawn)
    arrow(ax, (cx, 0.78), (cx, 1.12))

    y0, y1 = 2.35, 8.45
    ax.add_patch(FancyBboxPatch((cx - w / 2 - 0.3, y0), w + 0.6, y1 - y0, boxstyle="round,pad=0.02,rounding_size=0.15",
                                fc="#f9fafb", ec="#6b7280", lw=1.0, ls="--"))
    ax.text(cx - w / 2 - 0.5, (y0 + y1) / 2, f"{cfg.n_layer}×", ha="right", va="center", fontsize=15,
            fontweight="bold")
    drawn.append(f"{cfg.n_layer}×")
    arrow(ax, (cx, 1.98), (cx, 2.75))
    box(ax, cx, 3.0, w, 0.45, f"LayerNorm ({d})", COLORS["norm"], drawn)
    arrow(ax, (cx, 3.23), (cx, 3.55))
    pat = (f"{cfg.pattern} pattern, l = {cfg.stride}, c = {cfg.c}" if cfg.pattern == "fixed"
           else f"{cfg.pattern} pattern, l = {cfg.stride}")
    box(ax, cx, 4.15, w, 1.15, f"factorized sparse attention\n{cfg.n_head} heads, q·k width {dqk}, v width {d}\n"
        f"{pat}\neach head: A1 ∪ A2 (merged)", COLORS["attn"], drawn)
    arrow(ax, (cx, 4.73), (cx, 5.25))
    box(ax, cx, 5.5, w, 0.45, "a = dropout(W_p · attend)", "white", drawn, fontsize=8)
    arrow(ax, (cx, 5.73), (cx, 6.05))
    box(ax, cx, 6.3, w, 0.45, f"LayerNorm(H + a) ({d})", COLORS["norm"], drawn)
    arrow(ax, (cx, 6.53), (cx, 6.85))
    box(ax, cx, 7.3, w, 0.75, f"feed-forward {d} → {dff} → {d}\nGELU: x·σ(1.702x)", COLORS["ff"], drawn)
    ax.text(cx, 8.05, "H ← H + a + b", ha="center", va="center", fontsize=8.5, color="#374151")
    arrow(ax, (cx, 7.68), (cx, 7.9))
    # residual: the block's input skips both branches
    xl = cx - w / 2 - 0.15
    ax.plot([cx, xl, xl], [2.6, 2.6, 8.05], color="#9ca3af", lw=1.0)
    arrow(ax, (xl, 8.05), (cx - 0.75, 8.05), color="#9ca3af")
    arrow(ax, (cx, 8.2), (cx, 8.95))
    box(ax, cx, 9.25, w, 0.55, f"LayerNorm, W_out {d} → {cfg.vocab_size}, softmax", COLORS["head"], drawn)
    box(ax, cx, 10.3, w, 0.5, "next-token distribution  (B, N, V)", "white", drawn)
    arrow(ax, (cx, 9.53), (cx, 10.05))

    # inset: the attention pattern, scaled down
    small_c = max(1, round(cfg.c * l_small / cfg.stride))
    m = pattern_mask(cfg.pattern, n_small, l_small, small_c)
    ins = fig.add_axes([0.68, 0.225, 0.28, 0.28])
    ins.imshow(m.numpy(), cmap="Blues", vmin=0, vmax=1.3, interpolation="none")
    ins.set_xticks([])
    ins.set_yticks([])
    ins.set_xlabel("key j", fontsize=8)
    ins.set_ylabel("query i", fontsize=8)
    label = (f"attention pattern ({cfg.pattern})\nscaled: N = {n_small}, l = {l_small}"
             + (f", c = {small_c}" if cfg.pattern == "fixed" else "")
             + f"\n{int(m.sum())} of {n_small * (n_small + 1) // 2} causal pairs")
    ins.set_title(label, fontsize=8)
    drawn.append(label)
    ax.annotate("", xy=(6.75, 4.15), xytext=(cx + w / 2 + 0.05, 4.15),
                arrowprops=dict(arrowstyle="<-", color="#b45309", lw=1.0, ls="--"))
    ax.text(5.1, 11.2, f"Sparse Transformer, enwik8 config: {cfg.n_layer} blocks, d {d}, "
            f"context {cfg.seq_len:,}", ha="center", fontsize=10, fontweight="bold")
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return drawn, m


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = SparseTransformerConfig()
    drawn, m = draw(cfg, OUT / "diagram.svg")
    assert f"{cfg.n_layer}×" in drawn
    assert any(f"l = {cfg.stride}" in t and cfg.pattern in t for t in drawn)
    assert any(f"{cfg.d_model} → {int(cfg.d_model * cfg.ff_mult)} → {cfg.d_model}" in t for t in drawn)
    assert len(drawn) == 11, len(drawn)  # 9 boxes + the repeat label + the pattern inset
    assert m.sum() < m.shape[0] * (m.shape[0] + 1) // 2, "the drawn pattern should be sparser than causal"
    size = (OUT / "diagram.svg").stat().st_size
    assert size < 100_000, f"diagram.svg is {size} bytes"
    print(f"diagram.svg: {len(drawn) - 2} boxes, {cfg.n_layer}× block, {cfg.pattern} pattern inset, "
          f"{size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
