"""Draw the Reformer from its config: embedding into two streams, N x reversible block
(F = LSH attention, G = chunked feed-forward), head; and LSH attention's hash-sort-chunk pattern.

Run from the repo root:  python snippets/architectures/reformer/diagram.py
Writes diagram.svg to ./diagram_out/ (or $SNIPPET_OUT).
"""
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

from model import ReformerConfig  # noqa: E402

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                     "font.size": 8, "figure.facecolor": "white", "savefig.facecolor": "white",
                     "savefig.transparent": False})
COLORS = {"embed": "#dbeafe", "attn": "#fde68a", "ff": "#dcfce7", "head": "#fce7f3", "norm": "#f3f4f6"}


def box(ax, x, y, w, h, text, color, drawn, fs=8):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=color,
                                ec="#374151", lw=0.9))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fs)
    drawn.append(text)


def arrow(ax, x0, y0, x1, y1, color="#374151"):
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=8, lw=0.9, color=color))


def plus(ax, x, y):
    ax.text(x, y, "⊕", ha="center", va="center", fontsize=12, color="#374151",
            bbox=dict(boxstyle="circle,pad=0.0", fc="white", ec="none"))


def draw(cfg: ReformerConfig, path: Path, n_chunks_shown: int = 6) -> dict:
    d_head = cfg.d_model // cfg.n_heads
    chunk = 2 * cfg.bucket_size
    fig, ax = plt.subplots(figsize=(9.6, 6.6))
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 7.6)
    ax.axis("off")
    drawn = []

    # ---- left: the model, bottom to top
    x0, w = 0.3, 4.4
    box(ax, x0, 0.15, w, 0.45, f"tokens (B, L), vocabulary V = {cfg.vocab_size}", "white", drawn)
    arrow(ax, x0 + w / 2, 0.6, x0 + w / 2, 0.8)
    box(ax, x0, 0.8, w, 0.55, f"token embedding V × d = {cfg.vocab_size} × {cfg.d_model}\n+ sinusoidal positions",
        COLORS["embed"], drawn)
    s1, s2 = x0 + 0.45, x0 + w - 0.45  # the two streams
    for s in (s1, s2):
        arrow(ax, x0 + w / 2, 1.35, s, 1.75)
    ax.text(x0 + w / 2, 1.5, "copied into two streams", fontsize=6.5, ha="center", color="#4b5563")

    by, bh = 1.75, 3.3
    outlines = []
    for i in reversed(range(cfg.n_layers)):
        off = 0.035 * i
        p = FancyBboxPatch((x0 - 0.1 + off, by + off), w + 0.2, bh, boxstyle="round,pad=0.02,rounding_size=0.1",
                           fc="white" if i else "#f9fafb", ec="#9ca3af" if i else "#374151", lw=0.8)
        ax.add_patch(p)
        outlines.append(p)
    ax.text(x0 + w / 2, by + bh - 0.25, f"{cfg.n_layers} × reversible block", fontsize=9, fontweight="bold",
            ha="center")
    drawn.append(f"{cfg.n_layers} × reversible block")
    ax.text(s1, by + 0.12, "X1", ha="center", fontsize=8, fontweight="bold")
    ax.text(s2, by + 0.12, "X2", ha="center", fontsize=8, fontweight="bold")
    ax.plot([s1, s1], [by + 0.3, by + bh], color="#374151", lw=0.9)  # stream 1
    ax.plot([s2, s2], [by + 0.3, by + bh], color="#374151", lw=0.9)  # stream 2
    bx, bw = s1 + 0.35, s2 - s1 - 0.7
    # F: attention reads X2, its output is added to X1
    box(ax, bx, by + 0.45, bw, 0.75, f"F: LayerNorm + LSH attention\n{cfg.n_heads} heads × {d_head}",
        COLORS["attn"], drawn, fs=7.5)
    arrow(ax, s2, by + 0.6, bx + bw, by + 0.6)
    arrow(ax, bx, by + 0.95, s1 + 0.13, by + 0.95)
    plus(ax, s1, by + 0.95)
    ax.text(s1 - 0.1, by + 1.2, "Y1", fontsize=7.5, ha="right")
    # G: feed-forward reads Y1, its output is added to X2
    box(ax, bx, by + 1.55, bw, 0.75, f"G: LayerNorm + feed-forward\n{cfg.d_model} → {cfg.d_ff} → {cfg.d_model}"
        f" in {cfg.ff_chunks} chunks", COLORS["ff"], drawn, fs=7.5)
    arrow(ax, s1, by + 1.7, bx, by + 1.7)
    arrow(ax, bx + bw, by + 2.05, s2 - 0.13, by + 2.05)
    plus(ax, s2, by + 2.05)
    ax.text(s2 + 0.1, by + 2.3, "Y2", fontsize=7.5, ha="left")
    ax.text(x0 + w / 2, by + 2.62, "Y1 = X1 + F(X2);  Y2 = X2 + G(Y1)  (Eq. 9)", fontsize=7.5, ha="center",
            color="#374151")

    top = by + bh + 0.035 * (cfg.n_layers - 1)
    for s in (s1, s2):
        arrow(ax, s, top, x0 + w / 2, top + 0.35)
    box(ax, x0, top + 0.35, w, 0.45, f"concatenate [Y1; Y2] (2d = {2 * cfg.d_model}) + LayerNorm", COLORS["norm"],
        drawn, fs=7)
    arrow(ax, x0 + w / 2, top + 0.8, x0 + w / 2, top + 1.0)
    box(ax, x0, top + 1.0, w, 0.45, f"head 2d × V = {2 * cfg.d_model} × {cfg.vocab_size} → logits", COLORS["head"],
        drawn)
    ax.text(x0, 0.0 - 0.05, "backward: X2 = Y2 − G(Y1), X1 = Y1 − F(X2): no layer's activations are stored",
            fontsize=6.8, color="#b45309")

    # ---- right: LSH attention inside one head
    rx = 5.4
    ax.text(rx, 7.25, "LSH attention in one head (Section 2)", fontsize=9, fontweight="bold")
    steps = [f"1. shared Q = K projection; keys normalised, k = q / |q|",
             f"2. hash: h(x) = argmax([xR; −xR]), R random d_head × n_buckets/2",
             f"   n_buckets = L / {cfg.bucket_size} (about {cfg.bucket_size} tokens per bucket)",
             "3. sort tokens by (bucket, position)",
             f"4. cut into chunks of m = {chunk}; each chunk attends to itself",
             "   and the previous chunk, only within its own bucket",
             f"5. repeat with {cfg.n_hashes} hash rounds; combine by their normalisers"]
    for i, t in enumerate(steps):
        ax.text(rx, 6.85 - 0.27 * i, t, fontsize=7.5)
    drawn.extend(steps)
    # the sorted attention pattern: block diagonal plus one block back (Figure 2d)
    gx, gy, gs = rx + 0.2, 1.45, 2.9
    cell = gs / n_chunks_shown
    ax.add_patch(Rectangle((gx, gy), gs, gs, fc="white", ec="#374151", lw=0.9))
    shaded = 0
    for i in range(n_chunks_shown):  # row = query chunk (top to bottom), column = key chunk
        for j in (i - 1, i):
            if j < 0:
                continue
            ax.add_patch(Rectangle((gx + j * cell, gy + gs - (i + 1) * cell), cell, cell, fc="#fde68a",
                                   ec="#b45309", lw=0.5))
            shaded += 1
    ax.text(gx + gs / 2, gy - 0.2, "keys, sorted by bucket", ha="center", fontsize=7.5)
    ax.text(gx - 0.15, gy + gs / 2, "queries, sorted", rotation=90, va="center", ha="right", fontsize=7.5)
    ax.text(gx + gs + 0.2, gy + gs - 0.1, f"each square: {chunk} × {chunk} scores", fontsize=7.5, va="top")
    ax.text(gx + gs + 0.2, gy + gs - 0.4, f"per query: 2m = {2 * chunk} keys per round", fontsize=7.5, va="top")
    ax.text(gx + gs + 0.2, gy + gs - 0.8, "cost: O(L · m) scores + an", fontsize=7.5, va="top")
    ax.text(gx + gs + 0.2, gy + gs - 1.05, "O(L log L) sort, not O(L²)", fontsize=7.5, va="top")
    ax.text(gx + gs + 0.2, gy + gs - 1.5, f"({n_chunks_shown} chunks drawn;", fontsize=7, va="top", color="#4b5563")
    ax.text(gx + gs + 0.2, gy + gs - 1.72, "a long sequence has many)", fontsize=7, va="top", color="#4b5563")

    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return {"drawn": drawn, "layer_outlines": len(outlines), "shaded_chunks": shaded,
            "chunks_shown": n_chunks_shown}


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = ReformerConfig()
    info = draw(cfg, OUT / "diagram.svg")
    size = (OUT / "diagram.svg").stat().st_size
    assert info["layer_outlines"] == cfg.n_layers
    assert info["shaded_chunks"] == 2 * info["chunks_shown"] - 1  # own chunk + previous (none before the first)
    labels = "\n".join(info["drawn"])
    for needed in (f"{cfg.n_layers} × reversible block", f"{cfg.vocab_size} × {cfg.d_model}",
                   f"{cfg.d_model} → {cfg.d_ff}", f"{cfg.n_heads} heads", f"m = {2 * cfg.bucket_size}",
                   f"{cfg.n_hashes} hash rounds", f"2d × V = {2 * cfg.d_model}"):
        assert needed in labels, needed
    assert size < 100_000, size
    print(f"diagram.svg: {info['layer_outlines']} block outlines, {info['shaded_chunks']} attended chunk squares, "
          f"{size / 1024:.0f} KiB")
