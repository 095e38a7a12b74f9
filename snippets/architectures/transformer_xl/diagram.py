"""Draw the Transformer-XL architecture from its config (the enwik8 12-layer model by default).

Every label with a size is formatted from TransformerXLConfig, so the picture
changes when the config does. Writes diagram.svg.

Run from the repo root:  python snippets/architectures/transformer_xl/diagram.py
"""
import os
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from model import TransformerXLConfig  # noqa: E402

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
COLORS = {"emb": "#dbeafe", "attn": "#fde68a", "ff": "#bbf7d0", "norm": "#e5e7eb", "head": "#fbcfe8",
          "mem": "#ddd6fe", "pos": "#fed7aa"}


def box(ax, x, y, w, h, text, color, drawn, fontsize=8.5):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=color, ec="#374151", lw=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
    drawn.append(text)


def arrow(ax, a, b, **kw):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, lw=1.0, color=kw.pop("color", "#374151"),
                                 **kw))


def draw(cfg, path):
    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                         "figure.facecolor": "white", "savefig.facecolor": "white", "savefig.transparent": False})
    fig, ax = plt.subplots(figsize=(7.6, 7.6))
    ax.set_xlim(0.4, 10.1)
    ax.set_ylim(0.1, 11.5)
    ax.axis("off")
    drawn = []
    cx, w = 4.0, 4.6
    hd = cfg.n_head * cfg.d_head

    box(ax, cx, 0.55, w, 0.6, f"segment τ+1: L = {cfg.tgt_len} token ids", "white", drawn)
    box(ax, cx, 1.65, w, 0.75, f"embedding  {cfg.vocab_size} × {cfg.d_model}\n× √{cfg.d_model}, no position embedding",
        COLORS["emb"], drawn)
    arrow(ax, (cx, 0.85), (cx, 1.27))

    # the repeated decoder layer
    y0, y1 = 2.5, 8.3
    ax.add_patch(FancyBboxPatch((cx - w / 2 - 0.25, y0), w + 0.5, y1 - y0, boxstyle="round,pad=0.02,rounding_size=0.15",
                                fc="#f9fafb", ec="#6b7280", lw=1.0, ls="--"))
    ax.text(cx - w / 2 - 0.45, (y0 + y1) / 2, f"{cfg.n_layer}×", ha="right", va="center", fontsize=15,
            fontweight="bold")
    drawn.append(f"{cfg.n_layer}×")
    arrow(ax, (cx, 2.03), (cx, 3.0))
    box(ax, cx, 3.55, w, 1.0, f"relative multi-head attention\n{cfg.n_head} heads × d_head {cfg.d_head}\n"
        f"queries: L = {cfg.tgt_len}; keys: M + L = {cfg.mem_len + cfg.tgt_len}", COLORS["attn"], drawn)
    box(ax, cx, 4.75, w, 0.5, f"add & LayerNorm ({cfg.d_model})", COLORS["norm"], drawn)
    arrow(ax, (cx, 4.05), (cx, 4.5))
    box(ax, cx, 5.95, w, 0.8, f"feed-forward {cfg.d_model} → {cfg.d_inner} → {cfg.d_model}\nReLU",
        COLORS["ff"], drawn)
    arrow(ax, (cx, 5.0), (cx, 5.55))
    box(ax, cx, 7.15, w, 0.5, f"add & LayerNorm ({cfg.d_model})", COLORS["norm"], drawn)
    arrow(ax, (cx, 6.35), (cx, 6.9))
    arrow(ax, (cx, 7.4), (cx, 8.75))
    box(ax, cx, 9.25, w, 0.85, f"softmax over {cfg.vocab_size}\n(weights tied to the embedding)" if cfg.tie_weight
        else f"output layer {cfg.d_model} → {cfg.vocab_size}", COLORS["head"], drawn)
    box(ax, cx, 10.5, w, 0.55, "next-token logits  (B, L, V)", "white", drawn)
    arrow(ax, (cx, 9.68), (cx, 10.22))

    # residual connections, on the left of the column
    for ya, yb in ((3.0 - 0.2, 4.75), (5.0 + 0.2, 7.15)):
        xl = cx - w / 2 - 0.12
        ax.plot([cx, xl, xl], [ya, ya, yb], color="#9ca3af", lw=1.0)
        arrow(ax, (xl, yb), (cx - w / 2, yb), color="#9ca3af")

    # the memory and the relative positions, to the right
    mx, right = 8.45, cx + w / 2
    box(ax, mx, 2.75, 3.1, 1.15, f"memory (per layer)\nM = {cfg.mem_len} positions × {cfg.d_model}\n"
        "this layer's input for the previous\nsegment, cached; SG(·): no gradient", COLORS["mem"], drawn, fontsize=7.8)
    arrow(ax, (mx - 1.55, 3.1), (right + 0.02, 3.35), color="#7c3aed")
    ax.text(right + 0.1, 3.05, "keys,\nvalues", ha="left", va="top", fontsize=7.2, color="#7c3aed")
    box(ax, mx, 4.55, 3.1, 1.15, f"relative positions\nR: sinusoid, {cfg.mem_len + cfg.tgt_len} distances × {cfg.d_model}\n"
        f"u, v: {cfg.n_head} × {cfg.d_head}, shared by all layers", COLORS["pos"], drawn, fontsize=7.8)
    arrow(ax, (mx - 1.55, 4.3), (right + 0.02, 3.8), color="#c2410c")
    ax.text(5.2, 11.15, f"Transformer-XL, enwik8 config: {cfg.n_layer} layers, d_model {cfg.d_model}, "
            f"{hd} attention width", ha="center", fontsize=10, fontweight="bold")
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1)

    # inset: which keys each query may use, scaled down (the mask the model builds: j <= M + i)
    Ls = Ms = 8
    i = torch.arange(Ls)[:, None]
    j = torch.arange(Ms + Ls)[None, :]
    allowed = (j <= i + Ms).float() + (j < Ms).float() * 0.6  # memory columns drawn darker
    ins = fig.add_axes([0.67, 0.6, 0.3, 0.16])
    ins.imshow(allowed.numpy(), cmap="Purples", vmin=0, vmax=2.0, interpolation="none", aspect="auto")
    ins.axvline(Ms - 0.5, color="#d62728", lw=1.0)
    ins.set_xticks([Ms / 2 - 0.5, Ms + Ls / 2 - 0.5], ["memory", "segment"], fontsize=7.5)
    ins.set_yticks([])
    ins.set_ylabel("query", fontsize=7.5)
    label = f"attention pattern, scaled: L = M = {Ls}\n(config: L = {cfg.tgt_len}, M = {cfg.mem_len})"
    ins.set_title(label, fontsize=7.8)
    drawn.append(label)
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return drawn


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = TransformerXLConfig()
    drawn = draw(cfg, OUT / "diagram.svg")
    # the picture shows this config: the repeat count, the widths and the memory length are in the labels
    assert f"{cfg.n_layer}×" in drawn
    assert sum(f"M = {cfg.mem_len}" in t for t in drawn) == 2  # the memory box and the inset
    assert any(f"{cfg.d_model} → {cfg.d_inner} → {cfg.d_model}" in t for t in drawn)
    assert len(drawn) == 12, len(drawn)  # 10 boxes + the repeat label + the pattern inset
    size = (OUT / "diagram.svg").stat().st_size
    assert size < 100_000, f"diagram.svg is {size} bytes"
    print(f"diagram.svg: {len(drawn) - 2} boxes, {cfg.n_layer}× decoder layer, {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
