"""Fixes for over-smoothing, one part at a time: skip connections, MLPs and LayerNorm, separated.

depth_collapse.py compares pure attention with whole transformer blocks. This
script takes the block apart. Every stack is built from the same random
nn.TransformerEncoderLayer at each depth and uses its weights; only the wiring
changes, in every combination of

    skip connection    none | x + f(x)
    MLP sub-layer      none | after the attention sub-layer, wired the same way
    LayerNorm          none | Pre-LN  f(LN(x))  | Post-LN  LN(x + f(x)) (or LN(f(x)) without a skip)

(12 stacks; skip + MLP + Post-LN and skip + MLP + Pre-LN are exactly
nn.TransformerEncoderLayer with norm_first False / True, which the script
checks). After each of 24 layers it measures the rank-collapse residual of
Dong et al. (2021): ||res(X)|| / ||X|| with res(X) = X - 1 x^T, in their
composite norm ||M||_{1,inf} = sqrt(||M||_1 ||M||_inf), with x the token mean
as in their released code. It is 0 exactly when every token is the same vector.
Everything runs in float64, over several seeds (input tokens and weights).

Run from the repo root:  python snippets/problems/11_attention_over_smoothing/fixes.py
"""
import argparse
import itertools
import json
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEEDS = [0, 1, 2, 3]  # each seed: its own input tokens and its own random layers
B, T, D, H, DEPTH = 8, 32, 64, 4, 24  # as depth_collapse.py
DTYPE = torch.float64
COLLAPSED = 1e-6  # a residual below this counts as collapsed (float64 rounding sits near 1e-16)


# --8<-- [start:core]
def dong_residual(x):
    """||X - 1 mean^T|| / ||X|| per sequence, in the norm sqrt(||.||_1 ||.||_inf) of Dong et al. (2021)."""
    def norm_1_inf(m):  # m: (B, T, d), one T x d matrix per sequence
        l1 = m.abs().sum(-2).amax(-1)  # (B,): largest column sum (over tokens)
        linf = m.abs().sum(-1).amax(-1)  # (B,): largest row sum (over features)
        return (l1 * linf).sqrt()
    res = x - x.mean(1, keepdim=True)  # (B, T, d): res(X) = X - 1 x^T, x the token mean
    return (norm_1_inf(res) / norm_1_inf(x)).mean().item()


def layer_forward(layer, x, skip, mlp, norm):
    """One layer of `layer`'s weights (an nn.TransformerEncoderLayer) with only the chosen parts.

    norm: None, "pre" (sub-layer sees LN(x)) or "post" (LN after the sub-layer and its skip)."""
    def sublayer(x, f, ln):
        y = f(ln(x)) if norm == "pre" else f(x)  # (B, T, d)
        y = x + y if skip else y  # the skip connection carries x past the sub-layer
        return ln(y) if norm == "post" else y

    attention = lambda z: layer.self_attn(z, z, z, need_weights=False)[0]  # noqa: E731  (B, T, d)
    feed_forward = lambda z: layer.linear2(F.relu(layer.linear1(z)))  # noqa: E731  (B, T, d)
    x = sublayer(x, attention, layer.norm1)
    return sublayer(x, feed_forward, layer.norm2) if mlp else x


@torch.no_grad()
def trace(layers, x, skip, mlp, norm):
    """The residual after each layer: (DEPTH + 1) values, input first."""
    res = [dong_residual(x)]
    for layer in layers:
        x = layer_forward(layer, x, skip, mlp, norm)  # (B, T, d)
        res.append(dong_residual(x))
    return res
# --8<-- [end:core]


VARIANTS = {  # name: (skip, mlp, norm)
    f"{'skip' if s else 'no skip'}, {'MLP' if m else 'no MLP'}, {n or 'no'} LN": (s, m, n)
    for s, m, n in itertools.product((False, True), (False, True), (None, "pre", "post"))
}


def make_layers(seed, device):
    """DEPTH fresh random layers with PyTorch's default initialisation; the same ones for every variant."""
    torch.manual_seed(1000 + seed)
    # (left in training mode: with dropout 0 that changes nothing, and it keeps PyTorch's fused
    # inference path out of the reference check)
    return [nn.TransformerEncoderLayer(D, H, 4 * D, dropout=0.0, batch_first=True).to(device, DTYPE)
            for _ in range(DEPTH)]


def key(skip, mlp, norm):
    return f"{'skip' if skip else 'noskip'}_{'mlp' if mlp else 'nomlp'}_{norm or 'noln'}"


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
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


STYLE = {None: "#6b7280", "pre": "#9467bd", "post": "#1f77b4"}


def plot(mean_traces, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    depth = list(range(DEPTH + 1))
    for (skip, mlp, norm) in VARIANTS.values():
        ax = axes[1 if skip else 0]
        label = f"{'MLP' if mlp else 'no MLP'}, {norm + '-LN' if norm else 'no LN'}"
        ax.plot(depth, [max(r, 1e-17) for r in mean_traces[key(skip, mlp, norm)]], "-" if mlp else "--",
                color=STYLE[norm], label=label)
    axes[0].set_yscale("log")
    axes[0].set_ylim(1e-17, 3)
    axes[0].set_title("without skip connections", fontsize=9)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_title("with skip connections", fontsize=9)
    for ax, loc in zip(axes, ("upper right", "lower left")):
        ax.set_xlabel("layers applied")
        ax.set_ylabel("‖X − 1·meanᵀ‖₁,∞ / ‖X‖₁,∞")
        ax.grid(True, color="0.9", lw=0.6)
        ax.legend(fontsize=7, frameon=False, loc=loc)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)

    # The measure: 0 for identical tokens, and the full block wired here is PyTorch's own layer.
    same = torch.randn(1, 1, D, dtype=DTYPE, device=dev).expand(B, T, D)  # (B, T, d): one token repeated
    assert dong_residual(same) < 1e-15, dong_residual(same)  # 0 up to float64 rounding of the mean
    layers = make_layers(0, dev)
    x = torch.randn(B, T, D, dtype=DTYPE, device=dev)  # (B, T, d)
    with torch.no_grad():
        for norm, norm_first in (("post", False), ("pre", True)):
            layers[0].norm_first = norm_first
            torch.testing.assert_close(layer_forward(layers[0], x, True, True, norm), layers[0](x))
        layers[0].norm_first = False

    traces = {key(*v): [] for v in VARIANTS.values()}  # per variant: one trace per seed
    for seed in SEEDS:
        layers = make_layers(seed, dev)
        torch.manual_seed(seed)
        x = torch.randn(B, T, D, dtype=DTYPE, device=dev)  # (B, T, d): the same input for every variant
        for v in VARIANTS.values():
            traces[key(*v)].append(trace(layers, x, *v))
    mean_traces = {k: [sum(t[l] for t in ts) / len(ts) for l in range(DEPTH + 1)] for k, ts in traces.items()}

    def first_collapsed(t):
        return next((l for l, r in enumerate(t) if r < COLLAPSED), None)

    rows = {}
    for name, v in VARIANTS.items():
        k = key(*v)
        final = [t[-1] for t in traces[k]]
        rows[k] = {"name": name, "skip": v[0], "mlp": v[1], "norm": v[2] or "none",
                   "at_depth": {str(l): mean_traces[k][l] for l in (1, 2, 3, 6, 12, DEPTH)},
                   "final_mean": mean_traces[k][-1], "final_min": min(final), "final_max": max(final),
                   "final_per_seed": final,
                   "collapsed_by_layer": [first_collapsed(t) for t in traces[k]]}
    # The two questions the page asks, per seed: does the MLP help, and does LayerNorm's placement matter?
    def finals(skip, mlp, norm):
        return rows[key(skip, mlp, norm)]["final_per_seed"]

    mlp_change = {}  # with skip: residual at DEPTH with the MLP minus without it, per seed
    for n in (None, "pre", "post"):
        d = [b - a for a, b in zip(finals(True, False, n), finals(True, True, n))]
        mlp_change[n or "none"] = {"min": min(d), "max": max(d), "per_seed": d,
                                   "drop_min": -max(d), "drop_max": -min(d)}  # drop = without - with
    no_skip = [k for k, r in rows.items() if not r["skip"]]
    skip = [k for k, r in rows.items() if r["skip"]]
    results = {
        "machine": {**machine_info(), "device": dev},
        "config": {"batch": B, "tokens": T, "d_model": D, "heads": H, "d_ff": 4 * D, "depth": DEPTH,
                   "dtype": "float64", "seeds": SEEDS, "n_seeds": len(SEEDS), "collapsed_below": COLLAPSED,
                   "measure": "Dong et al. 2021: ||X - 1 mean^T||_{1,inf} / ||X||_{1,inf}, mean over sequences",
                   "init": "PyTorch defaults (nn.TransformerEncoderLayer), a fresh layer per depth"},
        "variants": rows,
        "input_residual": mean_traces[key(True, True, "post")][0],
        "no_skip": {"latest_collapse_layer": max((l for k in no_skip for l in rows[k]["collapsed_by_layer"]
                                                  if l is not None), default=None),
                    "largest_final": max(rows[k]["final_max"] for k in no_skip)},
        "skip": {"smallest_final": min(rows[k]["final_min"] for k in skip),
                 "largest_final": max(rows[k]["final_max"] for k in skip)},
        "mlp_change_with_skip": mlp_change,
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(mean_traces, OUT / "ablation.svg")

    print(f"{T} random tokens, d={D}, {H} heads, {DEPTH} fresh random layers, {len(SEEDS)} seeds; "
          f"Dong et al.'s relative residual (0 = all tokens equal), mean over seeds")
    print(f"{'stack':<28}" + "".join(f"{'L=' + str(l):>9}" for l in (1, 2, 3, 6, 12, DEPTH))
          + f"{'L=24 min..max over seeds':>27}")
    for r in rows.values():
        print(f"{r['name']:<28}" + "".join(f"{r['at_depth'][str(l)]:>9.1e}" for l in (1, 2, 3, 6, 12, DEPTH))
              + f"{r['final_min']:>17.3f} .. {r['final_max']:.3f}")
    for n, c in mlp_change.items():
        print(f"with skip, {n} LN: adding the MLP changes the residual at L={DEPTH} by {c['min']:+.3f} .. {c['max']:+.3f}")
    print("checks: skip + MLP + Post-LN / Pre-LN == nn.TransformerEncoderLayer(norm_first=False / True)")

    # The claims the page makes, for every seed.
    for k in no_skip:  # without the skip nothing saves the tokens: not the MLP, not LayerNorm
        assert all(l is not None for l in rows[k]["collapsed_by_layer"]), f"{k}: did not collapse: {rows[k]}"
    for n in (None, "pre", "post"):  # ... and the MLP does not even delay the collapse
        with_mlp = rows[key(False, True, n)]["collapsed_by_layer"]
        without = rows[key(False, False, n)]["collapsed_by_layer"]
        assert all(a <= b for a, b in zip(with_mlp, without)), f"{n} LN: the MLP delayed the collapse: {with_mlp} vs {without}"
    for k in skip:  # with the skip, every combination keeps the tokens apart
        assert rows[k]["final_min"] > 0.2, f"{k}: the skip should keep tokens apart: {rows[k]}"
    # The confound on the page: Post-LN without the MLP ends above the plain skip in every seed ...
    assert all(p > q for p, q in zip(finals(True, False, "post"), finals(True, False, None))), rows
    # ... and the MLP lowers the residual in every seed, with no LayerNorm and with Post-LN.
    for n in ("none", "post"):
        assert mlp_change[n]["max"] < 0, f"{n} LN: the MLP was expected to lower the residual: {mlp_change[n]}"
    for n in (None, "pre", "post"):  # the figure: on average over the seeds, each stack ends lower with the MLP
        assert mean_traces[key(True, True, n)][-1] < mean_traces[key(True, False, n)][-1], f"{n} LN, mean over seeds"
    # Where the LayerNorm sits changes what the MLP costs: less with Pre-LN than with Post-LN, in every seed.
    assert all(p > q for p, q in zip(mlp_change["pre"]["per_seed"], mlp_change["post"]["per_seed"])), mlp_change
    # With the MLP, Pre-LN keeps tokens apart best: above Post-LN in every seed.
    assert all(p > q for p, q in zip(finals(True, True, "pre"), finals(True, True, "post"))), rows


if __name__ == "__main__":
    main()
