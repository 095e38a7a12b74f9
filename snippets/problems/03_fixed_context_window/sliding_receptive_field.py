"""A fix: a sliding window caps each layer's reach, but stacked layers see L * (W - 1) positions back.

With a causal window of W keys (the token itself and the W - 1 before it),
one layer lets position i read positions i - (W - 1) .. i. Stacking L layers
chains those hops, so information can travel L * (W - 1) positions: the
receptive field has exactly L * (W - 1) + 1 positions (once i is far enough
from the start). The popular "W x L" is the same idea with a window that
counts W keys *before* the token (Mistral's convention: W + 1 keys in all).

Two checks, both over every output position: (1) propagate one-hot
dependencies through L stacked band masks (boolean matrix products) and compare
with the formula; (2) build L real attention layers with that band mask
(F.scaled_dot_product_attention), take the gradient of each output position
with respect to the input, and check that its non-zero rows are exactly the
predicted positions.

Run from the repo root:  python snippets/problems/03_fixed_context_window/sliding_receptive_field.py
"""
import argparse
import json
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
T, W, MAX_LAYERS = 64, 5, 4  # sequence length, window (keys incl. self), deepest stack checked
D, H = 32, 2  # model width and heads of the real attention stack

# Mistral 7B: 32 layers, sliding window 4096; a token attends to positions i - W .. i
# (Jiang et al. 2023, arXiv:2310.06825, Section 2 and Table 1).
MISTRAL = {"layers": 32, "window": 4096}


# --8<-- [start:core]
def band(T, W):
    """(T, T) bool: output i reads input j iff 0 <= i - j < W (W keys, the token itself included)."""
    i = torch.arange(T)[:, None]  # (T, 1)
    j = torch.arange(T)[None, :]  # (1, T)
    return (j <= i) & (i - j < W)


def reach_after(layers, T, W):
    """Propagate one-hot dependencies: column j starts as the one-hot e_j and is pushed
    through `layers` band masks. Entry (i, j) is True iff output i depends on input j."""
    dep = torch.eye(T, dtype=torch.bool)  # (T, T): every position starts as a one-hot
    for _ in range(layers):
        dep = (band(T, W).float() @ dep.float()) > 0  # (T, T): one more hop of at most W - 1
    return dep


def predicted(layers, T, W):
    """The formula: i depends on j iff 0 <= i - j <= layers * (W - 1)."""
    i = torch.arange(T)[:, None]  # (T, 1)
    j = torch.arange(T)[None, :]  # (1, T)
    return (j <= i) & (i - j <= layers * (W - 1))
# --8<-- [end:core]


class WindowedStack(nn.Module):
    """L pre-norm attention blocks with the band mask (residual included)."""

    def __init__(self, layers, d, h):
        super().__init__()
        self.h = h
        self.qkv = nn.ModuleList(nn.Linear(d, 3 * d) for _ in range(layers))
        self.o = nn.ModuleList(nn.Linear(d, d) for _ in range(layers))
        self.norm = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))

    def forward(self, x, mask):  # x: (B, T, d), mask: (T, T) bool
        B, T, d = x.shape
        for qkv, o, norm in zip(self.qkv, self.o, self.norm):
            q, k, v = qkv(norm(x)).chunk(3, dim=-1)  # 3 x (B, T, d)
            q, k, v = (t.view(B, T, self.h, d // self.h).transpose(1, 2) for t in (q, k, v))  # (B, h, T, d/h)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, T, d/h)
            x = x + o(a.transpose(1, 2).reshape(B, T, d))  # (B, T, h, d/h) -> (B, T, d)
        return x


def gradient_reach(stack, mask, device):
    """(T, T) bool: entry (i, j) is True iff output position i gets a non-zero gradient from input j.

    One backward pass per output position i, all through the same forward pass."""
    x = torch.randn(1, T, D, device=device, dtype=torch.float64, requires_grad=True)  # (B, T, d)
    y = stack(x, mask)  # (B, T, d)
    rows = []
    for i in range(T):
        (g,) = torch.autograd.grad(y[0, i].sum(), x, retain_graph=True)  # (B, T, d)
        rows.append(g[0].abs().sum(-1) > 0)  # (T,)
    return torch.stack(rows).cpu()  # (T, T)


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def plot(path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    n, w = 24, 4
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.3))
    for ax, layers in zip(axes, (1, 2, 3)):
        ax.imshow(reach_after(layers, n, w).numpy(), cmap="Blues", vmin=0, vmax=1.4,
                  interpolation="none", extent=(-0.5, n - 0.5, n - 0.5, -0.5))
        i = n - 4  # outline one output row and the inputs it depends on
        lo = i - layers * (w - 1)
        ax.add_patch(Rectangle((lo - 0.5, i - 0.5), i - lo + 1, 1, fill=False, ec="#d62728", lw=1.4))
        ax.text(n - 1, 1, f"output {i} depends on\n{i - lo + 1} inputs ({lo}..{i})", fontsize=8,
                color="#d62728", ha="right", va="top")
        ax.set_title(f"after {layers} layer{'s' if layers > 1 else ''}: reach {layers}·(W−1) = {layers * (w - 1)}",
                     fontsize=9)
        ax.set_xlabel("input position j")
        ax.set_xticks([0, 8, 16, 23])
        ax.set_yticks([0, 8, 16, 23])
    axes[0].set_ylabel("output position i")
    fig.suptitle(f"Which inputs each output depends on, causal window W = {w} (N = {n})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    rows = []
    stack = WindowedStack(MAX_LAYERS, D, H).to(dev).double()
    mask = band(T, W).to(dev)  # (T, T)
    i = T - 1  # the position reported: far enough from the start for the full reach
    for layers in range(1, MAX_LAYERS + 1):
        # (1) one-hot propagation through stacked band masks == the formula, for every i.
        dep = reach_after(layers, T, W)
        assert torch.equal(dep, predicted(layers, T, W)), f"reach after {layers} layers differs from the formula"
        count = int(dep[i].sum())
        assert count == layers * (W - 1) + 1, f"{count} != L*(W-1)+1 = {layers * (W - 1) + 1}"
        # (2) a real stack of `layers` windowed attention layers: gradient support == formula.
        sub = WindowedStack(layers, D, H).to(dev).double()
        sub.load_state_dict({k: v for k, v in stack.state_dict().items()
                             if int(k.split(".")[1]) < layers})
        grad_dep = gradient_reach(sub, mask, dev)  # (T, T): every output position
        assert torch.equal(grad_dep, dep), f"attention stack of {layers} layers: gradient reach differs"
        rows.append({"layers": layers, "reach_back": layers * (W - 1), "positions_seen": count,
                     "w_times_layers": W * layers, "oldest_input_for_last_position": i - layers * (W - 1)})

    # The reach a deep model would have, under both window conventions.
    L, Wm = MISTRAL["layers"], MISTRAL["window"]
    mistral = {**MISTRAL,
               "reach_back_window_excl_self": L * Wm,  # token attends to i-W .. i (W + 1 keys)
               "reach_back_window_incl_self": L * (Wm - 1)}  # token attends to its last W positions
    results = {"machine": machine_info() | {"device": dev},
               "config": {"seq_len": T, "window": W, "max_layers": MAX_LAYERS, "d_model": D, "heads": H,
                          "position_checked": i, "output_positions_checked": T},
               "rows": rows, "by_layers": {str(r["layers"]): r for r in rows}, "mistral": mistral}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(OUT / "receptive_field.svg")

    print(f"causal window W={W} (keys incl. self), sequence T={T}; checked at all {T} output positions, "
          f"counts shown for i={i}")
    print(f"{'layers':>6} {'reach back L*(W-1)':>19} {'inputs seen':>12} {'naive W*L':>10}  checks")
    for r in rows:
        print(f"{r['layers']:>6} {r['reach_back']:>19} {r['positions_seen']:>12} {r['w_times_layers']:>10}  "
              f"one-hot propagation == formula == gradient support of a real {r['layers']}-layer stack, every i")
    print(f"Mistral 7B (32 layers, window 4096): reach {mistral['reach_back_window_excl_self']:,} positions "
          f"(window = 4096 before the token), {mistral['reach_back_window_incl_self']:,} (window of 4096 incl. self)")


if __name__ == "__main__":
    main()
