"""Draw GPT-1 and GPT-2 from their configs: embeddings, N x block, head, and the causal attention pattern.

Every label with a size is read from the GPTConfig in model.py, so changing a
config changes the picture. Writes diagram.svg.

Run from the repo root:  python snippets/architectures/gpt/diagram.py
"""
import io
import json
import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

from model import PUBLISHED  # noqa: E402  (the sibling model.py)

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
COLORS = {"embed": "#dbe8f6", "norm": "#fff2cc", "attn": "#fde0d0", "mlp": "#d9f0d3", "head": "#e8e0f4",
          "io": "#f2f2f2"}
MASK_T = 8  # tokens in the drawn attention pattern


def box(ax, x, y, w, h, text, kind, drawn):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc=COLORS[kind], ec="#333333", lw=0.9))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)
    drawn.append((kind, text))


def arrow(ax, x0, y0, x1, y1):
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=8, lw=0.8, color="#333333"))


def draw_model(ax, name, cfg):
    """One column, bottom (token ids) to top (next-token probabilities)."""
    drawn = []
    x, w = 2.6, 3.6
    y = 0.4
    box(ax, x, y, w, 0.5, f"token ids (T ≤ {cfg.block_size})", "io", drawn)
    y += 1.0
    box(ax, x - 0.95, y, 1.7, 0.7, f"token emb.\n{cfg.vocab_size:,} × {cfg.d_model}", "embed", drawn)
    box(ax, x + 0.95, y, 1.7, 0.7, f"position emb.\n{cfg.block_size} × {cfg.d_model}", "embed", drawn)
    arrow(ax, x, 0.65, x - 0.95, y - 0.35)
    arrow(ax, x, 0.65, x + 0.95, y - 0.35)
    ax.text(x, y + 0.62, "+", ha="center", va="center", fontsize=11)
    y0_block = y + 0.95
    # The block: sub-layers in order, with the LayerNorms where this config puts them.
    head_size = cfg.d_model // cfg.n_head
    attn = ("causal self-attention", f"{cfg.n_head} heads × {head_size}", "attn")
    mlp = ("MLP  GELU", f"{cfg.d_model} → {cfg.d_ff} → {cfg.d_model}", "mlp")
    ln = ("LayerNorm", f"{cfg.d_model}", "norm")
    add = ("add residual", "", "io")
    order = [ln, attn, add, ln, mlp, add] if cfg.pre_norm else [attn, add, ln, mlp, add, ln]
    heights = {"attn": 0.62, "mlp": 0.62, "norm": 0.4, "io": 0.34}
    y = y0_block + 0.35
    centers = []
    for title, sub, kind in order:
        h = heights[kind]
        y += h / 2
        text = title if not sub else f"{title}\n{sub}"
        if kind == "io":  # the residual add: a circled +
            ax.add_patch(Circle((x, y), h / 2, fc="white", ec="#333333", lw=0.9))
            ax.text(x, y, "+", ha="center", va="center", fontsize=10)
            drawn.append(("add", "+"))
        else:
            box(ax, x, y, w - 0.6, h, text if kind != "norm" else f"LayerNorm ({sub})", kind, drawn)
        centers.append((y, h))
        y += h / 2 + 0.18
    for (ya, ha), (yb, hb) in zip(centers, centers[1:]):
        arrow(ax, x, ya + ha / 2, x, yb - hb / 2)
    arrow(ax, x, y0_block - 0.45 + 0.0, x, centers[0][0] - centers[0][1] / 2)
    # Residual skips: from below each sub-layer pair to its "+ residual".
    # The skip leaves the residual stream where the sub-layer's branch begins: before its LayerNorm in
    # pre-LN, after the previous sub-layer's LayerNorm in post-LN.
    adds = [i for i, o in enumerate(order) if o is add]
    starts = [0, adds[0] + 1 + (0 if cfg.pre_norm else 1)]
    for s, a in zip(starts, adds):
        y_from = centers[s][0] - centers[s][1] / 2 - 0.09
        y_to = centers[a][0]
        xs = x + w / 2 - 0.05
        ax.plot([x, xs, xs], [y_from, y_from, y_to], color="#777777", lw=0.8, ls="--")
        arrow(ax, xs, y_to, x + centers[a][1] / 2, y_to)
    block_top = y - 0.05
    ax.add_patch(Rectangle((x - w / 2 - 0.25, y0_block), w + 0.5, block_top - y0_block, fill=False,
                           ec="#555555", lw=1.1, ls="-"))
    n_label = f"{cfg.n_layer}×"
    ax.text(x - w / 2 - 0.4, (y0_block + block_top) / 2, n_label, ha="right", va="center", fontsize=12,
            fontweight="bold")
    drawn.append(("repeat", n_label))
    y = block_top + 0.55
    arrow(ax, x, block_top, x, y - 0.2)
    if cfg.pre_norm:
        box(ax, x, y, w - 0.6, 0.4, f"final LayerNorm ({cfg.d_model})", "norm", drawn)
        arrow(ax, x, y + 0.2, x, y + 0.5)
        y += 0.85
    tie = "tied" if cfg.tie_weights else "untied"
    box(ax, x, y, w, 0.62, f"LM head ({tie})\n{cfg.d_model} → {cfg.vocab_size:,}", "head", drawn)
    arrow(ax, x, y + 0.31, x, y + 0.62)
    y += 0.95
    box(ax, x, y, w, 0.5, "next-token probabilities", "io", drawn)
    ax.set_title(f"{name}  ({'pre-LN' if cfg.pre_norm else 'post-LN'})", fontsize=10)
    return drawn, y + 0.4


def draw_mask(ax, T):
    """The attention pattern inside every block: query i sees keys 0..i."""
    allowed = [[1.0 if j <= i else 0.0 for j in range(T)] for i in range(T)]  # (T, T), row i = query i
    ax.imshow(allowed, cmap="Blues", vmin=0, vmax=1.25, interpolation="nearest")
    ax.set_xticks([0, T - 1], ["0", f"{T - 1}"])
    ax.set_yticks([0, T - 1], ["0", f"{T - 1}"])
    ax.set_xticks([k - 0.5 for k in range(1, T)], minor=True)
    ax.set_yticks([k - 0.5 for k in range(1, T)], minor=True)
    ax.grid(which="minor", color="#999999", lw=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
    ax.set_title(f"causal attention pattern, T = {T}\n(blue: query i may attend key j)", fontsize=9)
    return int(sum(map(sum, allowed)))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
                         "savefig.transparent": False})
    models = {"GPT-1": PUBLISHED["GPT-1"]["cfg"], "GPT-2 small": PUBLISHED["GPT-2 small"]["cfg"]}
    fig = plt.figure(figsize=(10.5, 6.0))
    gs = fig.add_gridspec(3, 3, width_ratios=[1, 1, 0.7], height_ratios=[0.5, 1, 0.5])
    report, axes, tops = {}, [], []
    for k, (name, cfg) in enumerate(models.items()):
        ax = fig.add_subplot(gs[:, k])
        drawn, top = draw_model(ax, name, cfg)
        axes.append(ax)
        tops.append(top)
        ax.set_xlim(0, 5.2)
        ax.axis("off")
        kinds = [d[0] for d in drawn]
        # Checkable: one repeat label with the config's depth; LayerNorms where the config puts them.
        assert [d[1] for d in drawn if d[0] == "repeat"] == [f"{cfg.n_layer}×"]
        assert kinds.count("norm") == 2 + (1 if cfg.pre_norm else 0), name
        assert kinds.count("add") == 2, "one residual add per sub-layer"
        assert kinds.count("attn") == 1 and kinds.count("mlp") == 1 and kinds.count("embed") == 2
        assert any(f"{cfg.vocab_size:,}" in d[1] for d in drawn if d[0] == "head")
        report[name] = {"boxes": len([d for d in drawn if d[0] not in ("repeat", "add")]), "n_layer": cfg.n_layer,
                        "layernorms_drawn": kinds.count("norm")}
    for ax in axes:  # one vertical scale for both columns, so equal boxes look equal
        ax.set_ylim(0, max(tops))
    axm = fig.add_subplot(gs[1, 2])
    allowed = draw_mask(axm, MASK_T)
    assert allowed == MASK_T * (MASK_T + 1) // 2  # the lower triangle, diagonal included
    fig.tight_layout()
    path = OUT / "diagram.svg"
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    # Coordinates to 2 decimals (1/100 pt, invisible): the text is drawn as glyph paths, which is large.
    path.write_text(re.sub(r"(\d+\.\d{2})\d+", r"\1", buf.getvalue()), encoding="utf-8")
    size = path.stat().st_size
    assert size < 100_000, f"diagram.svg is {size} bytes"
    report["svg_bytes"] = size
    report["mask_cells_allowed"] = allowed
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    print(f"diagram.svg: {size:,} bytes; GPT-1 {report['GPT-1']['boxes']} boxes, "
          f"GPT-2 small {report['GPT-2 small']['boxes']} boxes; {allowed} of {MASK_T * MASK_T} mask cells open")


if __name__ == "__main__":
    main()
