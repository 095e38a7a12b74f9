"""Different attention distributions, identical outputs.

An attention output is a @ V: a weighted average of value rows. Any change
delta of the weights with delta @ V = 0 and sum(delta) = 0 leaves the output
untouched, so the weights are not determined by what the head computes.
  1. Repeated values. In a model whose values carry no position (RoPE models
     rotate only queries and keys), the first layer gives two copies of a
     word the same value row: how weight splits between them is invisible.
  2. Long sequences. Once T > d_head + 1, the d_head + 1 constraints leave at
     least T - d_head - 1 free directions for ANY values. The script walks
     along them to push the most-attended token's weight as low as it can go.
Every output is computed with F.scaled_dot_product_attention, the weights
imposed through a float attn_mask of log-weights (softmax(log a) = a).

Run from the repo root:  python snippets/problems/15_poor_interpretability/same_output.py
"""
import argparse
import json
import os
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
DT = torch.float64
T, D_HEAD = 64, 16  # long-sequence case: T > d_head + 1


def eps_round(x):
    """12 decimals: differences at float64 rounding (~1e-16) vary from run to run and CPU to CPU;
    results.json must not."""
    return round(x, 12)


def attend(weights, v):
    """SDPA with the attention weights imposed: zero scores plus a log-weight mask. weights (T,), v (T, d)."""
    q = torch.zeros(1, 1, 1, v.shape[-1], dtype=v.dtype, device=v.device)  # (B, H, 1 query, d)
    k = torch.zeros(1, 1, v.shape[0], v.shape[-1], dtype=v.dtype, device=v.device)  # (B, H, T, d): scores = 0
    mask = weights.log().view(1, 1, 1, -1)  # (B, H, 1, T): log 0 = -inf masks a key out
    return F.scaled_dot_product_attention(q, k, v.view(1, 1, *v.shape), attn_mask=mask).view(-1)  # (d,)


# --8<-- [start:core]
def push_weight_off(a, v, token, max_iter=200):
    """Lower a[token] as far as possible while keeping a >= 0, sum(a) = 1 and a @ v fixed.

    Projected descent with an active set: move along the part of -e_token that is invisible to
    v and to the sum, until some weight hits 0; freeze it there; repeat.
    """
    c = torch.cat([v, torch.ones_like(v[:, :1])], dim=1)  # (T, d+1): a' must satisfy c^T a' = c^T a
    a = a.clone()
    for _ in range(max_iter):
        free = (a > 1e-12).nonzero().squeeze(1)  # indices still allowed to move
        u, s, _ = torch.linalg.svd(c[free], full_matrices=True)
        null = u[:, int((s > 1e-10).sum()):]  # (n_free, k): directions with c^T delta = 0
        goal = -(free == token).to(a.dtype)  # (n_free,): "less weight on token"
        step = null @ (null.T @ goal)  # projection of the goal onto the invisible directions
        if step.norm() < 1e-12:
            break
        full = torch.zeros_like(a).index_copy(0, free, step)  # (T,)
        shrinking = full < -1e-15
        t = (a[shrinking] / -full[shrinking]).min()  # largest step that keeps every weight >= 0
        a = (a + t * full).clamp_min(0)
    return a
# --8<-- [end:core]


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


def plot(cases, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, axes = plt.subplots(1, len(cases), figsize=(12, 3.4), sharey=False)
    for ax, (title, a, b, top) in zip(axes, cases):
        idx = torch.arange(len(a))
        if len(a) <= 8:  # few keys: side-by-side bars
            ax.bar((idx - 0.2).tolist(), a.tolist(), width=0.4, color="#1f77b4", label="original weights")
            ax.bar((idx + 0.2).tolist(), b.tolist(), width=0.4, color="#ff7f0e", label="other weights, same output")
            ax.set_xticks(idx.tolist(), ["the", "cat", "saw", "the", "dog"])
        else:  # many keys: one step line per distribution keeps the SVG small
            ax.step(idx.tolist(), a.tolist(), where="mid", color="#1f77b4", lw=1.1)
            ax.step(idx.tolist(), b.tolist(), where="mid", color="#ff7f0e", lw=1.1)
        if len(a) > 8:
            title += f"\nmost-attended key {top}: {a[top].item():.3f} → {b[top].item():.3f}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key position")
        ax.grid(True, axis="y", color="0.9", lw=0.6)
    axes[0].set_ylabel("attention weight")
    handles = [plt.Rectangle((0, 0), 1, 1, color="#1f77b4"), plt.Rectangle((0, 0), 1, 1, color="#ff7f0e")]
    fig.legend(handles, ["original weights", "other weights, identical output"], loc="upper center", ncol=2,
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    # 1) Repeated values: "the cat saw the dog"; both "the" share one value row.
    words = ["the", "cat", "saw", "the", "dog"]
    table = {w: torch.randn(D_HEAD, dtype=DT, device=dev) for w in set(words)}
    v5 = torch.stack([table[w] for w in words])  # (5, d)
    a1 = torch.tensor([0.70, 0.10, 0.05, 0.05, 0.10], dtype=DT, device=dev)  # mostly the first "the"
    b1 = torch.tensor([0.05, 0.10, 0.05, 0.70, 0.10], dtype=DT, device=dev)  # mostly the second "the"
    torch.testing.assert_close(attend(a1, v5), attend(b1, v5))
    torch.testing.assert_close(attend(a1, v5), a1 @ v5)  # the SDPA trick really imposes a1

    # 2) Long sequence, generic values: an ordinary softmax(q.k / sqrt(d)) row, and sharper ones
    #    (logits multiplied by 3 and by 6).
    q = torch.randn(D_HEAD, dtype=DT, device=dev)
    k = torch.randn(T, D_HEAD, dtype=DT, device=dev)
    v = torch.randn(T, D_HEAD, dtype=DT, device=dev)
    long = {}
    plots = [("repeated value rows (T=5)", a1, b1, 0)]
    for name, sharpness in (("typical", 1.0), ("sharp", 3.0), ("very_sharp", 6.0)):
        a = (k @ q / D_HEAD**0.5 * sharpness).softmax(0)  # (T,)
        top = int(a.argmax())
        b = push_weight_off(a, v, top)
        out_a, out_b = attend(a, v), attend(b, v)
        torch.testing.assert_close(out_a, out_b, rtol=1e-9, atol=1e-12)
        assert (b >= 0).all() and abs(b.sum().item() - 1) < 1e-9, "b must be a distribution"
        long[name] = {"top_token": top, "top_weight_before": a[top].item(), "top_weight_after": b[top].item(),
                      "new_argmax": int(b.argmax()), "new_max_weight": b.max().item(),
                      "total_variation": 0.5 * (a - b).abs().sum().item(),
                      "nonzero_weights_after": int((b > 1e-12).sum()),
                      "max_output_diff": eps_round((out_a - out_b).abs().max().item())}
        plots.append((f"{name.replace('_', ' ')} head, T={T}, d_head={D_HEAD}", a, b, top))

    results = {"machine": {**machine_info(), "device": dev},
               "config": {"seq": T, "d_head": D_HEAD, "dtype": "float64", "seed": SEED},
               "repeated": {"weights_a": a1.tolist(), "weights_b": b1.tolist(),
                            "total_variation": 0.5 * (a1 - b1).abs().sum().item(),
                            "max_output_diff": eps_round((attend(a1, v5) - attend(b1, v5)).abs().max().item())},
               "free_directions": T - D_HEAD - 1, "long": long}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(plots, OUT / "same_output.svg")

    r = results["repeated"]
    print(f"'the cat saw the dog': weights {a1.tolist()} vs {b1.tolist()}")
    print(f"  total variation {r['total_variation']:.2f}, max output difference below 1e-12 (float64 rounding)")
    print(f"T={T} keys, d_head={D_HEAD}: at least {T - D_HEAD - 1} weight directions the output cannot see")
    for name, s in long.items():
        print(f"  {name.replace('_', ' '):<10} head: token {s['top_token']} weight {s['top_weight_before']:.3f} -> "
              f"{s['top_weight_after']:.3f}; new top token {s['new_argmax']} ({s['new_max_weight']:.3f}); "
              f"total variation {s['total_variation']:.2f}; output diff below 1e-12")

    # The claims the page makes.
    assert r["max_output_diff"] == 0 and all(c["max_output_diff"] == 0 for c in results["long"].values()), \
        "the outputs must agree to 12 decimals (float64 rounding only)"
    assert r["total_variation"] > 0.5, "the two repeated-value distributions should be far apart"
    t = long["typical"]
    assert t["top_weight_after"] == 0 and t["new_argmax"] != t["top_token"], \
        "the most-attended token of a typical head should be removable without changing the output"
    s = long["sharp"]
    assert s["top_weight_after"] < s["top_weight_before"] - 0.05 and s["new_argmax"] != s["top_token"], \
        "a sharper head should still have some freedom: the top key can lose first place"
    assert 0 < s["top_weight_after"], "but no longer all the way to zero"
    vs = long["very_sharp"]
    assert vs["top_weight_before"] - vs["top_weight_after"] < 0.05 and vs["new_argmax"] == vs["top_token"], \
        "a near-one-hot head should leave little room (weights cannot go negative)"


if __name__ == "__main__":
    main()
