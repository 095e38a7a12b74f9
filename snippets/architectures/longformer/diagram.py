"""Longformer architecture diagram, drawn from the config in model.py (the paper's small char-LM).

Run from the repo root:  python snippets/architectures/longformer/diagram.py
Writes diagram.svg; checks that every box it drew carries the config's numbers.
"""
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from model import PAPER, allowed_mask  # noqa: E402

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                     "font.size": 8.5,
                     "figure.facecolor": "white", "axes.facecolor": "white",
                     "savefig.facecolor": "white", "savefig.transparent": False})

cfg = PAPER["small"][0]
d, H, f, L, V = cfg.d_model, cfg.n_head, cfg.d_ff, cfg.n_layer, cfg.vocab_size
dils = list(cfg.dilations) if cfg.dilations else [0] * L
dil_text = ", ".join(f"{dv}" for dv in dict.fromkeys(dils))

# (label, y centre, colour); the block's sublayers sit inside the N x frame
stack = [
    (f"{V} characters  →  embedding {V}×{d}", 0.2, "#e8eef7"),
    ("LayerNorm", 1.15, "#f2f2f2"),
    (f"Longformer self-attention: {H} heads × {d // H}\n{'causal' if cfg.causal else 'two-sided'} sliding window "
     f"w={cfg.window}, dilation {{{dil_text}}} on {cfg.n_dilated_heads} heads\n"
     f"+ global tokens, relative sinusoidal positions", 2.0, "#fde9d9"),
    ("LayerNorm", 2.95, "#f2f2f2"),
    (f"MLP  {d} → {f} → {d}  (GeLU)", 3.6, "#e2f0d9"),
    ("LayerNorm", 4.55, "#f2f2f2"),
    (f"output: tied embedding  {d} → {V} logits", 5.2, "#e8eef7"),
]
fig = plt.figure(figsize=(8.6, 5.0))
ax = fig.add_axes((0.0, 0.0, 0.62, 1.0))
ax.set_xlim(0, 6)
ax.set_ylim(5.75, -0.35)
ax.axis("off")
drawn = []
heights = [0.78 if "\n" in text else 0.42 for text, _, _ in stack]
for (text, y, colour), h in zip(stack, heights):
    ax.add_patch(FancyBboxPatch((0.8, y - h / 2), 4.4, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=colour, ec="0.3", lw=0.9))
    ax.text(3.0, y, text, ha="center", va="center", fontsize=8)
    drawn.append(text)
for k in range(len(stack) - 1):  # arrows between consecutive boxes
    ax.annotate("", (3.0, stack[k + 1][1] - heights[k + 1] / 2), (3.0, stack[k][1] + heights[k] / 2),
                arrowprops=dict(arrowstyle="-|>", color="0.35", lw=0.8))
# the repeated block: pre-LN attention + MLP, both with residual connections
ax.add_patch(FancyBboxPatch((0.45, 0.78), 5.1, 3.15, boxstyle="round,pad=0.02,rounding_size=0.12",
                            fc="none", ec="#1f4e79", lw=1.4, ls="--"))
ax.text(0.52, 0.9, f"{L}×", fontsize=13, color="#1f4e79", fontweight="bold", va="top")
for y_from, y_to in ((0.87, 2.62), (2.62, 3.9)):  # residual paths
    ax.annotate("", (5.35, y_to), (5.35, y_from),
                arrowprops=dict(arrowstyle="-|>", color="#1f4e79", lw=0.8, connectionstyle="arc3,rad=0"))
    ax.text(5.42, (y_from + y_to) / 2, "+ residual", rotation=90, va="center", fontsize=7, color="#1f4e79")
n_blocks_drawn = 1  # one frame stands for all L identical blocks

# inset: the attention pattern of a dilated and an undilated head (toy size, same rule as the model)
n, w = 32, 3
glob = torch.zeros(n, dtype=torch.bool)
glob[0] = True
for k, (deltas, title) in enumerate((([1], "head without dilation"),
                                     ([1 + max(dils)], f"dilated head (gap {max(dils)})"))):
    axi = fig.add_axes((0.655, 0.55 - 0.47 * k, 0.32, 0.38))
    m = allowed_mask(n, w, deltas, glob, cfg.causal)[0].float().numpy()
    axi.imshow(m, cmap="Greys", vmin=0, vmax=1.2, interpolation="none")
    axi.set_title(f"{title}, causal, w={w}, N={n}\n(global token 0; toy sizes)", fontsize=7.5)
    axi.set_xticks([])
    axi.set_yticks([])
    axi.set_xlabel("key j", fontsize=7)
    axi.set_ylabel("query i", fontsize=7)

# checks: the drawing says what the config says
assert len(drawn) == 7 and n_blocks_drawn == 1
assert f"{L}×" in [t.get_text() for t in ax.texts], "block repeat count must come from the config"
assert any(f"{d} → {f} → {d}" in t for t in drawn) and any(f"{H} heads" in t for t in drawn)
assert any(f"{V}×{d}" in t for t in drawn)
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "diagram.svg", format="svg", metadata={"Date": None})
plt.close(fig)
size = (OUT / "diagram.svg").stat().st_size
assert size < 100_000, size
print(f"diagram.svg: {L} blocks of pre-LN Longformer attention ({H} heads, dilation {{{dil_text}}} on "
      f"{cfg.n_dilated_heads} heads) + MLP {d}->{f}->{d}; {size / 1024:.0f} KB")
