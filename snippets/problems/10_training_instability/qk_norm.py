"""QK-norm: attention logits that cannot grow with the weights.

Attention logits q.k / sqrt(d_h) are bilinear in the query and key weights:
scale W_q and W_k by s and every logit scales by exactly s^2. When training
lets these weights grow, the softmax saturates to one-hot attention (entropy
near zero), which Dehghani et al. (2023) saw precede divergence in ViT-22B.
QK-norm applies LayerNorm to each head's queries and keys first: a normalised
d_h-vector has norm sqrt(d_h), so |logit| <= sqrt(d_h) by Cauchy-Schwarz,
whatever the weights. Here W_q and W_k are scaled by s = 1..32 (standing in
for growth during training) and the script checks the s^2 law, the bound, and
that the normalised path matches F.scaled_dot_product_attention.

Run from the repo root:  python snippets/problems/10_training_instability/qk_norm.py
"""
import argparse
import json
import math
import os
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
B, T, D_MODEL, H = 2, 64, 64, 4
D_HEAD = D_MODEL // H
SCALES = [1, 2, 4, 8, 16, 32]


# --8<-- [start:core]
def heads(x, w):
    """x (B, T, d_model) @ w (d_model, d_model) -> (B, H, T, d_head)."""
    return (x @ w).view(B, T, H, D_HEAD).transpose(1, 2)  # (B, T, H, d_h) -> (B, H, T, d_h)


def attention_logits(x, wq, wk, qk_norm):
    q, k = heads(x, wq), heads(x, wk)  # (B, H, T, d_h) each
    if qk_norm:  # LayerNorm over each head's d_h features (no learned gain here)
        q, k = F.layer_norm(q, (D_HEAD,)), F.layer_norm(k, (D_HEAD,))
    return q @ k.transpose(-2, -1) / math.sqrt(D_HEAD)  # (B, H, T, T)


def entropy(logits):
    p = logits.softmax(-1)  # (B, H, T, T): each row a distribution over keys
    return -(p * p.clamp_min(1e-30).log()).sum(-1).mean().item()  # mean over queries, in nats
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


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.2))
    s = [r["scale"] for r in rows]
    for key, color, name in (("plain", "#d62728", "plain q·k"), ("qk_norm", "#1f77b4", "QK-norm")):
        a0.loglog(s, [r[f"{key}_max_logit"] for r in rows], "o-", color=color, label=name, ms=4)
        a1.semilogx(s, [r[f"{key}_entropy"] for r in rows], "o-", color=color, label=name, ms=4)
    a0.axhline(math.sqrt(D_HEAD), color="#1f77b4", lw=0.8, ls=":")
    a0.annotate(f"bound √d_h = {math.sqrt(D_HEAD):g}", (s[-1], math.sqrt(D_HEAD) * 1.3), fontsize=8, color="#1f77b4",
                ha="right")
    a1.axhline(math.log(T), color="0.5", lw=0.8, ls=":")
    a1.annotate(f"uniform attention: ln {T}", (s[-1], math.log(T) + 0.08), fontsize=8, color="0.35", ha="right")
    for ax in (a0, a1):
        ax.set_xlabel("scale s of W_q and W_k")
        ax.set_xticks(s, [str(v) for v in s])
        ax.minorticks_off()
        ax.grid(True, color="0.9", lw=0.6)
        ax.legend(fontsize=8, frameon=False)
    a0.set_ylabel("max |logit|")
    a1.set_ylabel("mean attention entropy (nats)")
    a1.set_ylim(0, math.log(T) + 0.5)
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
    x = F.layer_norm(torch.randn(B, T, D_MODEL, device=dev), (D_MODEL,))  # (B, T, d): a normalised residual stream
    wq, wk, wv = (torch.randn(D_MODEL, D_MODEL, device=dev) / math.sqrt(D_MODEL) for _ in range(3))

    # The attention built from these logits is ordinary attention: same output as SDPA.
    v = heads(x, wv)  # (B, H, T, d_h)
    for qk_norm in (False, True):
        q, k = heads(x, wq), heads(x, wk)  # (B, H, T, d_h)
        if qk_norm:
            q, k = F.layer_norm(q, (D_HEAD,)), F.layer_norm(k, (D_HEAD,))
        ref = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, d_h)
        torch.testing.assert_close(attention_logits(x, wq, wk, qk_norm).softmax(-1) @ v, ref, rtol=1e-4, atol=1e-5)

    base = attention_logits(x, wq, wk, qk_norm=False)  # (B, H, T, T)
    rows = []
    for s in SCALES:
        plain = attention_logits(x, s * wq, s * wk, qk_norm=False)  # (B, H, T, T)
        normed = attention_logits(x, s * wq, s * wk, qk_norm=True)  # (B, H, T, T)
        torch.testing.assert_close(plain, s**2 * base, rtol=1e-4, atol=1e-4)  # exactly s^2 times larger
        rows.append({"scale": s,
                     "plain_max_logit": plain.abs().max().item(), "qk_norm_max_logit": normed.abs().max().item(),
                     "plain_entropy": entropy(plain), "qk_norm_entropy": entropy(normed),
                     "plain_max_weight": plain.softmax(-1).amax(-1).mean().item(),
                     "qk_norm_max_weight": normed.softmax(-1).amax(-1).mean().item()})
    first, last = rows[0], rows[-1]
    results = {"machine": {**machine_info(), "device": dev},
               "config": {"batch": B, "seq": T, "d_model": D_MODEL, "heads": H, "d_head": D_HEAD, "scales": SCALES,
                          "seed": SEED},
               "bound": math.sqrt(D_HEAD), "uniform_entropy": math.log(T), "rows": rows,
               "first": first, "last": last,
               "plain_logit_growth": last["plain_max_logit"] / first["plain_max_logit"]}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(rows, OUT / "qk_norm.svg")

    print(f"T={T}, d_h={D_HEAD}; uniform attention has entropy ln {T} = {math.log(T):.2f} nats; "
          f"QK-norm bound sqrt(d_h) = {math.sqrt(D_HEAD):.0f}")
    print(f"{'scale':>5} | {'max|logit|':>10} {'entropy':>8} {'max w':>6} | {'max|logit|':>10} {'entropy':>8} {'max w':>6}")
    print(f"{'':>5} | {'--------- plain ---------':^26} | {'-------- QK-norm --------':^26}")
    for r in rows:
        print(f"{r['scale']:>5} | {r['plain_max_logit']:>10.1f} {r['plain_entropy']:>8.2f} {r['plain_max_weight']:>6.2f} "
              f"| {r['qk_norm_max_logit']:>10.2f} {r['qk_norm_entropy']:>8.2f} {r['qk_norm_max_weight']:>6.2f}")

    # The claims the page makes.
    assert all(r["qk_norm_max_logit"] <= math.sqrt(D_HEAD) + 1e-4 for r in rows), "QK-norm logits broke the bound"
    assert last["plain_max_logit"] > 10 * math.sqrt(D_HEAD), "plain logits should blow far past the bound"
    assert last["plain_entropy"] < 0.2 * first["plain_entropy"], "plain attention should collapse toward one-hot"
    assert abs(last["qk_norm_entropy"] - first["qk_norm_entropy"]) < 1e-3, "QK-norm attention should not change with s"


if __name__ == "__main__":
    main()
