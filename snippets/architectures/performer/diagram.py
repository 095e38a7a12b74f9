"""Draw the Performer from its config: embedding, N x block with FAVOR+ attention, head,
and how FAVOR+ orders its matrix products so that no L x L matrix exists.

Run from the repo root:  python snippets/architectures/performer/diagram.py
Writes diagram.svg to ./diagram_out/ (or $SNIPPET_OUT).
"""
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from model import PerformerConfig  # noqa: E402

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                     "font.size": 8,
                     "figure.facecolor": "white", "savefig.facecolor": "white", "savefig.transparent": False})

COLORS = {"embed": "#dbeafe", "attn": "#fde68a", "mlp": "#dcfce7", "norm": "#f3f4f6", "head": "#fce7f3",
          "feat": "#ede9fe"}


def box(ax, x, y, w, h, text, color, drawn, fs=8, bold=False):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=color, ec="#374151", lw=0.9))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fs,
            fontweight="bold" if bold else "normal")
    drawn.append(text)


def arrow(ax, x0, y0, x1, y1):
    ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=8, lw=0.9, color="#374151"))


def draw(cfg: PerformerConfig, path: Path) -> dict:
    d_head = cfg.d_model // cfg.n_heads
    fig, ax = plt.subplots(figsize=(9.2, 6.2))
    ax.set_xlim(0, 10.5)
    ax.set_ylim(0, 7.7)
    ax.axis("off")
    drawn = []

    # ---- left: the model, bottom to top
    x0, w = 0.4, 3.6
    box(ax, x0, 0.2, w, 0.5, f"tokens (B, L), vocabulary V = {cfg.vocab_size}", "white", drawn)
    arrow(ax, x0 + w / 2, 0.7, x0 + w / 2, 0.95)
    box(ax, x0, 0.95, w, 0.6, f"token embedding V × d = {cfg.vocab_size} × {cfg.d_model}\n+ sinusoidal positions",
        COLORS["embed"], drawn)
    arrow(ax, x0 + w / 2, 1.55, x0 + w / 2, 1.9)

    # the block, drawn n_layers times as a stack (one outline per layer)
    by, bh = 1.9, 3.95
    stack = []
    for i in reversed(range(cfg.n_layers)):
        off = 0.05 * i
        p = FancyBboxPatch((x0 - 0.15 + off, by + off), w + 0.3, bh, boxstyle="round,pad=0.02,rounding_size=0.1",
                           fc="white" if i else "#f9fafb", ec="#9ca3af" if i else "#374151", lw=0.8)
        ax.add_patch(p)
        stack.append(p)
    ax.text(x0 - 0.05, by + bh - 0.22, f"{cfg.n_layers} × block", fontsize=9, fontweight="bold", ha="left")
    drawn.append(f"{cfg.n_layers} × block")
    cx, cw = x0 + 0.2, w - 0.75
    rx_res = cx + cw + 0.25  # where the residual path runs
    # bottom to top, as the data flows: LN -> attention -> (+) -> LN -> MLP -> (+)
    box(ax, cx, by + 0.2, cw, 0.35, "LayerNorm", COLORS["norm"], drawn, fs=7)
    box(ax, cx, by + 0.7, cw, 0.95,
        f"FAVOR+ self-attention\n{cfg.n_heads} heads × d_head = {d_head}\nm = {cfg.n_features} random features / head",
        COLORS["attn"], drawn)
    box(ax, cx, by + 1.85, cw, 0.35, "LayerNorm", COLORS["norm"], drawn, fs=7)
    box(ax, cx, by + 2.35, cw, 0.75, f"MLP  d → d_ff → d\n{cfg.d_model} → {cfg.d_ff} → {cfg.d_model}, GELU",
        COLORS["mlp"], drawn)
    for y0, y1 in ((by + 0.55, by + 0.7), (by + 1.65, by + 1.85), (by + 2.2, by + 2.35)):
        arrow(ax, cx + cw / 2, y0, cx + cw / 2, y1)
    # residual connections: x + sublayer(LN(x))
    for y_from, y_to in ((by + 0.08, by + 1.75), (by + 1.75, by + 3.25)):
        ax.plot([cx + cw / 2, rx_res, rx_res], [y_from, y_from, y_to], color="#6b7280", lw=0.8)
        ax.plot([rx_res, cx + cw / 2], [y_to, y_to], color="#6b7280", lw=0.8)
        ax.text(rx_res, y_to, "⊕", ha="center", va="center", fontsize=11, color="#374151",
                bbox=dict(boxstyle="circle,pad=0.0", fc="white", ec="none"))
    ax.text(x0 + w / 2, by + 3.5, "pre-LN residual block, as in a vanilla Transformer", fontsize=6.5,
            ha="center", color="#4b5563")

    top = by + bh + 0.05 * (cfg.n_layers - 1)
    arrow(ax, x0 + w / 2, top, x0 + w / 2, top + 0.3)
    box(ax, x0, top + 0.3, w, 0.45, "LayerNorm", COLORS["norm"], drawn, fs=7)
    arrow(ax, x0 + w / 2, top + 0.75, x0 + w / 2, top + 0.95)
    box(ax, x0, top + 0.95, w, 0.5, f"head d × V = {cfg.d_model} × {cfg.vocab_size} → logits (B, L, V)",
        COLORS["head"], drawn)

    # ---- right: what FAVOR+ computes inside one head
    rx = 5.0
    ax.text(rx, 6.95, "Inside one FAVOR+ head (bidirectional)", fontsize=9, fontweight="bold")
    m, dh = cfg.n_features, d_head
    box(ax, rx, 5.7, 1.35, 0.6, f"Q  (L × {dh})", "white", drawn)
    box(ax, rx, 4.8, 1.35, 0.6, f"K  (L × {dh})", "white", drawn)
    box(ax, rx, 3.9, 1.35, 0.6, f"V  (L × {dh})", "white", drawn)
    phi = "φ(x) = exp(Wx − |x|²/2) / √m"
    box(ax, rx + 1.75, 5.7, 1.55, 0.6, f"Q' = φ(Q)\n(L × {m})", COLORS["feat"], drawn)
    box(ax, rx + 1.75, 4.8, 1.55, 0.6, f"K' = φ(K)\n(L × {m})", COLORS["feat"], drawn)
    arrow(ax, rx + 1.35, 6.0, rx + 1.75, 6.0)
    arrow(ax, rx + 1.35, 5.1, rx + 1.75, 5.1)
    box(ax, rx + 3.65, 4.35, 1.6, 0.7, f"K'ᵀ [V 1]\n({m} × {dh + 1})", COLORS["attn"], drawn)
    arrow(ax, rx + 3.3, 5.1, rx + 3.65, 4.85)
    arrow(ax, rx + 1.35, 4.2, rx + 3.65, 4.55)
    box(ax, rx + 3.65, 5.6, 1.6, 0.8, f"Q' (K'ᵀ [V 1])\n(L × {dh + 1})\n÷ its last column", COLORS["attn"],
        drawn, fs=7)
    arrow(ax, rx + 3.3, 6.0, rx + 3.65, 6.0)
    arrow(ax, rx + 4.45, 5.05, rx + 4.45, 5.6)
    ax.text(rx, 3.45, f"W: {m} × {dh} Gaussian rows, orthogonal in blocks of {dh}; redrawn, not trained",
            fontsize=7, color="#4b5563")
    ax.text(rx, 3.15, phi + "   (Lemma 1: E[φ(q)·φ(k)] = exp(q·k))", fontsize=7, color="#4b5563")
    ax.text(rx, 2.7, "cost per head: O(L m d) time, O(L m + L d + m d) memory;", fontsize=7.5)
    ax.text(rx, 2.45, "softmax attention: O(L² d) time, O(L² + L d) memory (Section 2.2)", fontsize=7.5)
    ax.text(rx, 2.05, "no L × L matrix is ever formed", fontsize=8, fontweight="bold", color="#b45309")
    ax.text(rx, 1.6, "causal (U) variant: prefix sums over j ≤ i of k'ⱼ [vⱼ 1]ᵀ (Appendix B.1)",
            fontsize=7, color="#4b5563")

    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return {"drawn": drawn, "layer_outlines": len(stack)}


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = PerformerConfig()
    info = draw(cfg, OUT / "diagram.svg")
    size = (OUT / "diagram.svg").stat().st_size
    # The picture shows the config it was given: one outline per layer, and the config's dims in the labels.
    assert info["layer_outlines"] == cfg.n_layers
    assert f"{cfg.n_layers} × block" in info["drawn"]
    labels = "\n".join(info["drawn"])
    for needed in (f"{cfg.vocab_size} × {cfg.d_model}", f"{cfg.d_model} → {cfg.d_ff}", f"{cfg.n_heads} heads",
                   f"m = {cfg.n_features}", f"(L × {cfg.n_features})"):
        assert needed in labels, needed
    assert size < 100_000, size
    print(f"diagram.svg: {cfg.n_layers} block outlines, {len(info['drawn'])} labelled boxes, {size / 1024:.0f} KiB")
