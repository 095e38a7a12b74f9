"""Draw ViT-Base/16 from its config: image -> patches -> tokens -> N x encoder block -> [class] head.

Every size in the picture is read from the ViTConfig in model.py (patch grid,
token count, widths, depth), so changing the config changes the drawing.
Writes diagram.svg.

Run from the repo root:  python snippets/architectures/vit/diagram.py
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
PATTERN_GRID = 3  # the attention-pattern panel shows a 3 x 3 patch image plus [class]: 10 tokens


def box(ax, x, y, w, h, text, kind, drawn):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc=COLORS[kind], ec="#333333", lw=0.9))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)
    drawn.append((kind, text))


def arrow(ax, x0, y0, x1, y1):
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=8, lw=0.8, color="#333333"))


def draw_patches(ax, cfg):
    """The input image with its patch grid; patches are numbered in the raster order patchify uses."""
    g = cfg.image_size // cfg.patch_size
    checker = [[(r + c) % 2 for c in range(g)] for r in range(g)]  # (g, g): alternate shades per patch
    ax.imshow(checker, cmap="Greys", vmin=-2, vmax=4, extent=(0, cfg.image_size, cfg.image_size, 0))
    for k in (0, 1, g - 1, g, g * g - 1):  # a few patch numbers, enough to show the order
        r, c = divmod(k, g)
        ax.text((c + 0.5) * cfg.patch_size, (r + 0.5) * cfg.patch_size, str(k + 1), ha="center", va="center",
                fontsize=5.5)
    ax.set_xticks([0, cfg.image_size])
    ax.set_yticks([0, cfg.image_size])
    ax.set_title(f"{cfg.image_size} × {cfg.image_size} × {cfg.in_channels} image\n{g} × {g} = {g * g} patches "
                 f"of {cfg.patch_size} × {cfg.patch_size}", fontsize=9)
    return g * g


def draw_sequence(ax, cfg):
    """The token sequence the encoder reads: [class], then the patches in raster order, each + E_pos[i]."""
    N = cfg.n_patches
    labels = ["cls", "1", "2", "3", "…", str(N)]
    for i, lab in enumerate(labels):
        if lab != "…":
            ax.add_patch(Rectangle((i * 1.1, 0), 1, 1, fc=COLORS["head" if lab == "cls" else "embed"], ec="#333333",
                                   lw=0.8))
        ax.text(i * 1.1 + 0.5, 0.5, lab, ha="center", va="center", fontsize=8)
        ax.text(i * 1.1 + 0.5, -0.45, "" if lab == "…" else f"+pos {0 if lab == 'cls' else lab}", ha="center",
                va="center", fontsize=6.5)
    ax.set_xlim(-0.2, len(labels) * 1.1)
    ax.set_ylim(-1.0, 1.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"the sequence: {N + 1} tokens of width {cfg.d_model}", fontsize=9)
    return N + 1


def draw_model(ax, cfg):
    drawn = []
    x, w = 2.6, 4.0
    N, D, P, C = cfg.n_patches, cfg.d_model, cfg.patch_size, cfg.in_channels
    y = 0.4
    box(ax, x, y, w, 0.55, f"{N} flattened patches, each {P}·{P}·{C} = {P * P * C}", "io", drawn)
    y += 0.95
    box(ax, x, y, w, 0.55, f"linear projection E: {P * P * C} → {D}", "embed", drawn)
    arrow(ax, x, 0.68, x, y - 0.28)
    y += 0.95
    box(ax, x, y, w, 0.62, f"prepend [class] token, add position emb.\n({N} + 1) × {D} = {N + 1} tokens",
        "embed", drawn)
    arrow(ax, x, y - 0.95 + 0.28, x, y - 0.31)
    y0_block = y + 0.55
    ln, add = ("norm", f"LayerNorm ({D})"), ("add", "+")
    attn = ("attn", f"multi-head self-attention\n{cfg.n_head} heads × {D // cfg.n_head}, no mask")
    mlp = ("mlp", f"MLP  GELU\n{D} → {cfg.d_ff} → {D}")
    order = [ln, attn, add, ln, mlp, add]  # pre-LN (Eq. 2, 3)
    heights = {"attn": 0.62, "mlp": 0.62, "norm": 0.4, "add": 0.34}
    y = y0_block + 0.3
    centers = []
    for kind, text in order:
        h = heights[kind]
        y += h / 2
        if kind == "add":
            ax.add_patch(Circle((x, y), h / 2, fc="white", ec="#333333", lw=0.9))
            ax.text(x, y, "+", ha="center", va="center", fontsize=10)
            drawn.append(("add", "+"))
        else:
            box(ax, x, y, w - 0.8, h, text, kind, drawn)
        centers.append((y, h))
        y += h / 2 + 0.18
    for (ya, ha), (yb, hb) in zip(centers, centers[1:]):
        arrow(ax, x, ya + ha / 2, x, yb - hb / 2)
    arrow(ax, x, y0_block - 0.25, x, centers[0][0] - centers[0][1] / 2)
    for s, a in zip([0, 3], [2, 5]):  # residual skips around each sub-layer, LayerNorm included
        y_from = centers[s][0] - centers[s][1] / 2 - 0.09
        xs = x + w / 2 - 0.15
        ax.plot([x, xs, xs], [y_from, y_from, centers[a][0]], color="#777777", lw=0.8, ls="--")
        arrow(ax, xs, centers[a][0], x + centers[a][1] / 2, centers[a][0])
    block_top = y - 0.05
    ax.add_patch(Rectangle((x - w / 2 - 0.1, y0_block), w + 0.2, block_top - y0_block, fill=False, ec="#555555",
                           lw=1.1))
    ax.text(x - w / 2 - 0.25, (y0_block + block_top) / 2, f"{cfg.n_layer}×", ha="right", va="center", fontsize=12,
            fontweight="bold")
    drawn.append(("repeat", f"{cfg.n_layer}×"))
    y = block_top + 0.55
    arrow(ax, x, block_top, x, y - 0.2)
    box(ax, x, y, w - 0.8, 0.4, f"LayerNorm of the [class] token ({D})", "norm", drawn)
    arrow(ax, x, y + 0.2, x, y + 0.5)
    y += 0.8
    box(ax, x, y, w, 0.55, f"linear head: {D} → {cfg.n_classes} classes", "head", drawn)
    return drawn, y + 0.4


def draw_pattern(ax, g):
    """Every token attends to every token: the full (N+1) x (N+1) pattern, here for a g x g image."""
    T = g * g + 1
    full = [[1.0] * T for _ in range(T)]  # (T, T): no mask anywhere
    ax.imshow(full, cmap="Blues", vmin=0, vmax=1.25, interpolation="nearest")
    ax.set_xticks([0, 1, T - 1], ["cls", "1", f"{T - 1}"])
    ax.set_yticks([0, 1, T - 1], ["cls", "1", f"{T - 1}"])
    ax.set_xticks([k - 0.5 for k in range(1, T)], minor=True)
    ax.set_yticks([k - 0.5 for k in range(1, T)], minor=True)
    ax.grid(which="minor", color="#999999", lw=0.5)
    ax.tick_params(which="minor", length=0)
    ax.axhline(0.5, color="#333333", lw=1.2)
    ax.axvline(0.5, color="#333333", lw=1.2)
    ax.set_xlabel("key token")
    ax.set_ylabel("query token")
    ax.set_title(f"attention pattern, {g} × {g} patches + [class]\n(all blue: no mask)", fontsize=9)
    return int(sum(map(sum, full)))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
                         "savefig.transparent": False})
    cfg = PUBLISHED["ViT-B/16"]["cfg"]
    fig = plt.figure(figsize=(10.5, 5.6))
    gs = fig.add_gridspec(2, 3, width_ratios=[0.8, 1.35, 0.8])
    n_cells = draw_patches(fig.add_subplot(gs[0, 0]), cfg)
    ax = fig.add_subplot(gs[:, 1])
    drawn, top = draw_model(ax, cfg)
    ax.set_xlim(0, 5.2)
    ax.set_ylim(0, top)
    ax.axis("off")
    ax.set_title("ViT-Base/16 (pre-LN encoder)", fontsize=10)
    n_tokens = draw_sequence(fig.add_subplot(gs[1, 0]), cfg)
    n_open = draw_pattern(fig.add_subplot(gs[:, 2]), PATTERN_GRID)
    kinds = [d[0] for d in drawn]
    # Checkable: the drawing says what the config says.
    assert n_cells == cfg.n_patches and n_tokens == cfg.n_patches + 1
    assert [d[1] for d in drawn if d[0] == "repeat"] == [f"{cfg.n_layer}×"]
    assert kinds.count("add") == 2 and kinds.count("attn") == 1 and kinds.count("mlp") == 1
    assert kinds.count("norm") == 3, "two LayerNorms per block plus the final one"
    assert any(f"{cfg.n_patches + 1} tokens" in t for _, t in drawn)
    assert any(f"→ {cfg.n_classes} classes" in t for _, t in drawn)
    assert n_open == (PATTERN_GRID ** 2 + 1) ** 2  # every query-key pair is allowed
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    path = OUT / "diagram.svg"
    # Coordinates to 2 decimals (1/100 pt, invisible): the text is drawn as glyph paths, which is large.
    path.write_text(re.sub(r"(\d+\.\d{2})\d+", r"\1", buf.getvalue()), encoding="utf-8")
    size = path.stat().st_size
    assert size < 100_000, f"diagram.svg is {size} bytes"
    report = {"svg_bytes": size, "patch_cells": n_cells, "tokens": cfg.n_patches + 1, "n_layer": cfg.n_layer,
              "boxes": len([d for d in drawn if d[0] not in ("repeat", "add")]), "pattern_pairs": n_open}
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    print(f"diagram.svg: {size:,} bytes; {n_cells} patch cells, {cfg.n_patches + 1} tokens, "
          f"{cfg.n_layer}× block, {report['boxes']} boxes")


if __name__ == "__main__":
    main()
