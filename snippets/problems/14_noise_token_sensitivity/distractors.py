"""Distractors dilute attention: the weight on the one relevant key falls like 1/n.

One query, one relevant key whose logit beats the typical distractor by a
margin DELTA, and n random distractor keys. Softmax must give every
distractor a positive weight, so the relevant key's weight is

    w(n) = e^DELTA / (e^DELTA + sum_j e^{s_j})  ~  1 / (1 + n e^{sigma^2/2 - DELTA})

for distractor logits s_j ~ N(0, sigma^2). The script measures w(n) with
F.scaled_dot_product_attention (a value of 1 on the relevant key and 0 on the
others, so SDPA returns exactly its weight) for n = 1..4096, averaged over 64
random draws, checks it against that prediction and the 1/n tail, and
measures how far the output drifts from the relevant value vector.

Run from the repo root:  python snippets/problems/14_noise_token_sensitivity/distractors.py
"""
import argparse
import json
import math
import os
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
D = 64  # head dimension
TRIALS = 64  # independent draws, run as the batch
DELTA = 4.0  # relevant logit: q.k*/sqrt(d) = DELTA
NS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]


# --8<-- [start:core]
def relevant_weight(n, device="cpu"):
    """Mean attention weight on the relevant key, and mean ||out - v*|| / ||v*||, with n distractors."""
    q = torch.randn(TRIALS, 1, 1, D, device=device)  # (B, H=1, 1 query, d)
    q = q / q.norm(dim=-1, keepdim=True) * math.sqrt(D)  # |q| = sqrt(d): distractor logits ~ N(0, 1)
    k_rel = DELTA * q / math.sqrt(D)  # (B, 1, 1, d): q.k_rel / sqrt(d) = DELTA * |q|^2 / d = DELTA
    k_dis = torch.randn(TRIALS, 1, n, D, device=device)  # (B, 1, n, d) random keys
    k = torch.cat([k_rel, k_dis], dim=2)  # (B, 1, n+1, d): key 0 is the relevant one
    marker = torch.zeros(TRIALS, 1, n + 1, 1, device=device)  # (B, 1, n+1, 1): value 1 on key 0, 0 elsewhere
    marker[:, :, 0] = 1.0
    w_rel = F.scaled_dot_product_attention(q, k, marker)  # (B, 1, 1, 1): = softmax weight on key 0
    v = torch.randn(TRIALS, 1, n + 1, D, device=device)  # (B, 1, n+1, d) value vectors
    out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, 1, d)
    drift = ((out - v[:, :, :1]).norm(dim=-1) / v[:, :, :1].norm(dim=-1)).mean().item()
    return w_rel.mean().item(), drift
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


def plot(ns, w, pred, drift, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, ax = plt.subplots(figsize=(8.5, 3.3))
    ax.semilogx(ns, w, "o", color="#1f77b4", ms=4, label="weight on the relevant key (measured)")
    ax.semilogx(ns, pred, "-", color="#1f77b4", lw=1, alpha=0.6, label=r"prediction $1/(1 + n\,e^{\sigma^2/2-\Delta})$")
    ax.semilogx(ns, drift, "s-", color="#d62728", ms=3, lw=1, label="‖out − v*‖ / ‖v*‖ (measured)")
    ax.axhline(0.5, color="0.6", lw=0.6, ls=":")
    ax.set_xlabel("number of distractor keys n")
    ax.set_xticks(ns[::2], [str(n) for n in ns[::2]])
    ax.minorticks_off()
    ax.set_ylim(0, 1.05)
    ax.set_title(f"relevant logit margin Δ = {DELTA:g}, head dim {D}", fontsize=9)
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    rows = [(n, *relevant_weight(n, args.device)) for n in NS]
    w = np.array([r[1] for r in rows])
    drift = np.array([r[2] for r in rows])
    sigma2 = 1.0  # distractor logits q.k/sqrt(d) with |q| = sqrt(d), k ~ N(0, I): variance |q|^2 / d = 1
    pred = 1 / (1 + np.array(NS) * math.exp(sigma2 / 2 - DELTA))
    tail = np.array(NS) >= 64
    slope = float(np.polyfit(np.log(np.array(NS)[tail]), np.log(1 / w[tail] - 1), 1)[0])  # odds against ~ n^slope
    n_half = float(math.exp(DELTA - sigma2 / 2))
    results = {"machine": {**machine_info(), "device": args.device},
               "config": {"head_dim": D, "trials": TRIALS, "delta": DELTA, "ns": NS, "seed": SEED},
               "rows": [{"n": n, "weight": wi, "predicted": pi, "drift": di}
                        for n, wi, pi, di in zip(NS, w.tolist(), pred.tolist(), drift.tolist())],
               "n_half_predicted": n_half, "odds_slope": slope,
               "max_rel_err_vs_prediction_n_ge_64": float(np.max(np.abs(w[tail] / pred[tail] - 1))),
               "first": {"n": NS[0], "weight": float(w[0]), "drift": float(drift[0])},
               "last": {"n": NS[-1], "weight": float(w[-1]), "drift": float(drift[-1])}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(NS, w, pred, drift, OUT / "distractors.svg")

    print(f"one relevant key (logit margin Δ={DELTA:g}) among n random keys, head dim {D}, {TRIALS} draws each")
    print(f"{'n':>5} {'weight':>8} {'predicted':>10} {'|out-v*|/|v*|':>14}")
    for n, wi, pi, di in zip(NS, w, pred, drift):
        print(f"{n:>5} {wi:>8.3f} {pi:>10.3f} {di:>14.3f}")
    print(f"half the weight is gone at n ≈ e^(Δ-σ²/2) = {n_half:.0f}; for n ≥ 64 the odds against the relevant key "
          f"grow as n^{slope:.2f}")

    # The claims the page makes.
    assert all(a > b for a, b in zip(w, w[1:])), "every extra distractor should take weight"
    assert w[0] > 0.9 and w[-1] < 0.02, "the relevant key should go from dominant to negligible"
    assert results["max_rel_err_vs_prediction_n_ge_64"] < 0.1, "measured weights should follow 1/(1 + n e^{s2/2-D})"
    assert 0.9 < slope < 1.1, f"the odds against the relevant key should grow like n, got n^{slope:.2f}"
    assert drift[0] < 0.3 and drift[-1] > 0.9, "the output should move from v* to (almost) anything else"


if __name__ == "__main__":
    main()
