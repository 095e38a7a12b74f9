"""Switch Transformer architecture diagram, drawn from the config in model.py (Switch-Base, Table 9).

Run from the repo root:  python snippets/architectures/switch_transformer/diagram.py
Writes diagram.svg; checks that the drawing carries the config's numbers.
"""
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from model import BASE  # noqa: E402

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                     "font.size": 8,
                     "figure.facecolor": "white", "axes.facecolor": "white",
                     "savefig.facecolor": "white", "savefig.transparent": False})

cfg = BASE
d, f, E, H, every = cfg.d_model, cfg.d_ff, cfg.n_experts, cfg.n_heads, cfg.expert_every
ffn_name = "GEGLU" if cfg.gated else "ReLU"
COL = {"embed": "#e8eef7", "norm": "#f2f2f2", "attn": "#fde9d9", "dense": "#e2f0d9", "switch": "#cfe2f3",
       "expert": "#ddebf7"}
fig, ax = plt.subplots(figsize=(10.5, 4.0))
ax.set_xlim(0, 21.5)
ax.set_ylim(7.1, -0.5)
ax.axis("off")
boxes = []


def box(x, y, w, h, text, colour, **kw):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.1", fc=colour,
                                ec=kw.pop("ec", "0.3"), lw=kw.pop("lw", 0.8), **kw))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=kw.pop("fs", 7.5))
    boxes.append(text)


def arrow(x0, y0, x1, y1, colour="0.35"):
    ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="-|>", color=colour, lw=0.8))


def stack(x, title, n_layers, cross):
    """One stack: embedding, then n_layers / every repeats of (every - 1) dense blocks and one Switch block."""
    w = 5.0
    ax.text(x + w / 2, -0.2, title, ha="center", fontsize=9.5, fontweight="bold")
    box(x, 0.2, w, 0.5, f"embedding {cfg.vocab_size}×{d} (shared)", COL["embed"])
    y = 1.2
    sub = ["self-attention"] + (["cross-attention"] if cross else [])
    for kind in ["dense"] * (every - 1) + ["switch"]:  # one repeat unit
        for s_ in sub:
            box(x + 0.35, y, w - 0.7, 0.4, f"{s_}  ({H} heads × {cfg.d_kv})", COL["attn"])
            y += 0.5
        label = f"FFN {d}→{f}→{d} ({ffn_name})" if kind == "dense" else f"Switch FFN ({E} experts, top-1)"
        box(x + 0.35, y, w - 0.7, 0.4, label, COL[kind], ec="#1f4e79" if kind == "switch" else "0.3",
            lw=1.4 if kind == "switch" else 0.8)
        y += 0.62
    repeats = n_layers // every
    ax.add_patch(FancyBboxPatch((x + 0.15, 1.02), w - 0.3, y - 1.12, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc="none", ec="#1f4e79", lw=1.3, ls="--"))
    ax.text(x - 0.05, 1.05, f"{repeats}×", fontsize=12, color="#1f4e79", fontweight="bold", ha="right", va="top")
    box(x, y + 0.2, w, 0.42, "final RMSNorm", COL["norm"])
    arrow(x + w / 2, 0.7, x + w / 2, 1.02)
    arrow(x + w / 2, y - 0.1, x + w / 2, y + 0.2)
    return y + 0.62, repeats


enc_bottom, enc_rep = stack(0.9, f"Encoder: {cfg.n_encoder_layers} layers", cfg.n_encoder_layers, cross=False)
dec_bottom, dec_rep = stack(6.9, f"Decoder: {cfg.n_decoder_layers} layers (causal)", cfg.n_decoder_layers, cross=True)
box(6.9, dec_bottom + 0.35, 5.0, 0.5, f"output: tied embedding → {cfg.vocab_size} logits", COL["embed"])
arrow(9.4, dec_bottom, 9.4, dec_bottom + 0.35)
ax.annotate("", (7.25, 2.55), (5.9, enc_bottom - 0.2),
            arrowprops=dict(arrowstyle="-|>", color="#7f7f7f", lw=0.8, connectionstyle="arc3,rad=0.35"))
ax.text(3.4, enc_bottom + 0.6, "every sublayer: RMSNorm → sublayer → + residual\n"
        "encoder output feeds every cross-attention", fontsize=7, color="0.35", ha="center", va="top")

# right: inside one Switch FFN layer
x0, w0 = 13.4, 7.6
cx = x0 + w0 / 2
ax.text(cx, -0.2, "Inside a Switch FFN layer", ha="center", fontsize=9.5, fontweight="bold")
box(x0 + 1.0, 0.2, w0 - 2.0, 0.5, "T tokens of the batch, in routing order", COL["norm"])
box(x0 + 0.5, 1.05, w0 - 1.0, 0.8, f"router  p(x) = softmax(W_r x),  W_r: {d}×{E}\n"
    "expert e = argmax p(x),  gate = p_e(x)", COL["switch"])
arrow(cx, 0.7, cx, 1.05)
shown = [1, 2, 3, E]
xs = [x0 + 0.1 + 1.95 * i for i in range(4)]
for xi, e in zip(xs, shown):
    box(xi, 2.55, 1.5, 0.5, f"expert {e}", COL["expert"])
    arrow(cx, 1.85, xi + 0.75, 2.55, colour="#1f4e79" if e == 2 else "0.75")
ax.text(xs[3] - 0.23, 2.8, "…", fontsize=12, ha="center", va="center")
ax.text(cx, 3.35, f"each expert: {d}→{f}→{d} ({ffn_name}); it takes at most\n"
        f"C = T / {E} × {cfg.capacity_factor} tokens, the rest are dropped", ha="center", va="top", fontsize=7.5)
box(x0 + 0.5, 4.35, w0 - 1.0, 0.5, "y = gate × expert_e(x),   0 if dropped", COL["dense"])
box(x0 + 0.5, 5.2, w0 - 1.0, 0.8, f"aux loss = α · {E} · Σ_i f_i · P_i,   α = {cfg.aux_loss_coef}\n"
    "f_i: share of tokens,  P_i: mean router probability", "#fff2cc")
ax.text(cx, 6.4, f"{E} experts' weights, one expert's work per token:\n"
        "parameters grow with E, FLOPs per token do not", ha="center", va="top", fontsize=7.5, color="#1f4e79")

# checks: the drawing says what the config says
assert enc_rep * every == cfg.n_encoder_layers and dec_rep * every == cfg.n_decoder_layers
n_switch = sum("Switch FFN" in b for b in boxes)
assert n_switch == 2, "one Switch block drawn per stack (the repeat unit)"
assert sum(f"expert {e}" in "".join(boxes) for e in shown) == 4 and f"expert {E}" in "".join(boxes)
assert any(f"{d}→{f}→{d}" in b for b in boxes) and any(f"{H} heads" in b for b in boxes)
OUT.mkdir(parents=True, exist_ok=True)
fig.savefig(OUT / "diagram.svg", format="svg", metadata={"Date": None})
plt.close(fig)
size = (OUT / "diagram.svg").stat().st_size
assert size < 100_000, size
print(f"diagram.svg: encoder {cfg.n_encoder_layers} + decoder {cfg.n_decoder_layers} layers, a Switch FFN with "
      f"{E} experts every {every} layers ({enc_rep} + {dec_rep} Switch layers); {size / 1024:.0f} KB")
