"""See it: tokens grow with image area, attention with its square (side length to the 4th).

A ViT cuts an H x W image into p x p patches: N = (H/p)(W/p) tokens, and every
head scores N^2 pairs. At a fixed patch size, doubling the side multiplies N by
4 and the score matrix by 16. This script computes both for common sizes,
splits one ViT-B/16 layer's FLOPs into its linear part (grows like side^2)
and its attention part (side^4) to find where attention starts to dominate,
and times F.scaled_dot_product_attention with ViT-B's 12 heads of size 64 at
growing resolution.

Run from the repo root:  python snippets/problems/16_inefficient_dense_inputs/tokens_vs_resolution.py
"""
# build: exclusive
import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
# ViT-B: 12 layers, hidden 768, MLP 3072, 12 heads (Dosovitskiy et al. 2020, Table 1).
D_MODEL, D_MLP, HEADS = 768, 3072, 12
SIDES = [224, 384, 512, 1024]  # image side lengths for the token table
PATCHES = [16, 8]
TIMED_SIDES = [224, 320, 448, 640]  # patch 16 -> 196, 400, 784, 1600 tokens
LAYER_SIDES = [224, 448]  # one whole ViT-B layer timed here: FLOP share against time share


# --8<-- [start:core]
def tokens(side, patch):
    return (side // patch) ** 2  # N = (H/p)(W/p) for a square image


def layer_flops(n, d=D_MODEL, d_mlp=D_MLP):
    """FLOPs (2 per multiply-add) of one encoder layer on n tokens, split by what grows how."""
    linear = 2 * n * (4 * d * d + 2 * d * d_mlp)  # Q, K, V, output projections + the 2-layer MLP: ∝ n
    attention = 2 * 2 * n * n * d  # Q K^T and weights @ V over all heads: ∝ n^2
    return linear, attention


def crossover_tokens(d=D_MODEL, d_mlp=D_MLP):
    """n at which attention FLOPs equal linear FLOPs: 4 n^2 d = 2 n (4 d^2 + 2 d d_mlp)."""
    return (4 * d * d + 2 * d * d_mlp) / (2 * d)


def time_sdpa(n, repeats, device):
    q, k, v = torch.randn(3, 1, HEADS, n, D_MODEL // HEADS, device=device)  # (B, H, N, d) each
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    F.scaled_dot_product_attention(q, k, v)  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v)  # (B, H, N, d)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
# --8<-- [end:core]


@torch.no_grad()
def layer_time_split(n, repeats, device):
    """Time of one ViT-B encoder layer on n tokens, and of its attention (SDPA: scores, softmax, weights @ V)."""
    d, h = D_MODEL, HEADS
    ln1, ln2 = torch.nn.LayerNorm(d).to(device), torch.nn.LayerNorm(d).to(device)
    qkv, proj = torch.nn.Linear(d, 3 * d).to(device), torch.nn.Linear(d, d).to(device)
    mlp = torch.nn.Sequential(torch.nn.Linear(d, D_MLP), torch.nn.GELU(), torch.nn.Linear(D_MLP, d)).to(device)
    x = torch.randn(1, n, d, device=device)  # (B, N, d)
    q, k, v = qkv(ln1(x)).view(1, n, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each (B, H, N, d/H)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def attention():
        return F.scaled_dot_product_attention(q, k, v)  # (B, H, N, d/H)

    def layer():
        a, b, c = qkv(ln1(x)).view(1, n, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each (B, H, N, d/H)
        y = x + proj(F.scaled_dot_product_attention(a, b, c).transpose(1, 2).reshape(1, n, d))  # (B, N, d)
        return y + mlp(ln2(y))  # (B, N, d)

    times = {"attention": [], "layer": []}
    for r in range(repeats + 1):  # round 0 is a warm-up; the two interleaved
        for name, fn in (("attention", attention), ("layer", layer)):
            t0 = time.perf_counter()
            fn()
            sync()
            if r:
                times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    return {"layer_ms": med["layer"] * 1e3, "attention_ms": med["attention"] * 1e3,
            "attention_time_share": med["attention"] / med["layer"]}


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
            "python": platform.python_version(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def plot(timed, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3), layout="constrained")
    sides = np.array([112, 224, 448, 896, 1792, 3584])
    lin, att = zip(*(layer_flops(tokens(s, 16)) for s in sides))
    ax = axes[0]
    ax.loglog(sides, np.array(lin) / 1e9, "o-", color="#1f77b4", ms=3, label="linear layers (∝ side²)")
    ax.loglog(sides, np.array(att) / 1e9, "s-", color="#d62728", ms=3, label="attention scores (∝ side⁴)")
    x_cross = 16 * math.sqrt(crossover_tokens())
    ax.axvline(x_cross, color="0.5", ls="--", lw=0.8)
    ax.annotate(f"equal at ≈{x_cross:.0f} px", (x_cross, 1), xytext=(4, 0), textcoords="offset points",
                fontsize=8, color="0.3")
    ax.set_xticks(sides, [str(s) for s in sides])
    ax.minorticks_off()
    ax.set_xlabel("image side (px), patch 16")
    ax.set_ylabel("GFLOPs per ViT-B layer")
    ax.set_title("computed: one ViT-B/16 encoder layer", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(True, color="0.9", lw=0.6)

    ax = axes[1]
    s = np.array([r["side"] for r in timed], dtype=float)
    t = np.array([r["sdpa_ms"] for r in timed])
    ax.loglog(s, t, "o-", color="#d62728", ms=4, label="SDPA, 12 heads × 64")
    ax.loglog(s, t[-1] / 2 * (s / s[-1]) ** 4, "--", color="0.55", lw=0.8, label="∝ side⁴ (guide)")
    ax.set_xticks(s, [f"{int(v)}\n({tokens(int(v), 16)} tok)" for v in s])
    ax.minorticks_off()
    ax.set_xlabel("image side (px), patch 16")
    ax.set_ylabel("time per call (ms)")
    ax.set_title("measured: attention alone", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(True, color="0.9", lw=0.6)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    dev = ap.parse_args().device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    if dev == "cpu":
        # One thread: small kernels (windows, pooled tokens) are otherwise dominated by thread
        # synchronisation, and timings on a shared machine stay steadier. The timings, ratios and fitted
        # exponents are those of one thread of this CPU; the token and score counts are exact anywhere.
        torch.set_num_threads(1)

    table = []
    for p in PATCHES:
        for s in SIDES:
            n = tokens(s, p)
            lin, att = layer_flops(n)
            table.append({"side": s, "patch": p, "tokens": n, "tokens_with_cls": n + 1, "scores_per_head": n * n,
                          "score_mib_fp32_all_heads": HEADS * n * n * 4 / 2**20,
                          "attention_share": att / (lin + att)})
    by = {(r["side"], r["patch"]): r for r in table}
    # Exact scaling: side x2 -> tokens x4, scores x16, at a fixed patch size.
    assert by[512, 16]["tokens"] == 4 * tokens(256, 16) and by[1024, 16]["tokens"] == 4 * by[512, 16]["tokens"]
    assert by[1024, 16]["scores_per_head"] == 16 * by[512, 16]["scores_per_head"]
    # Halving the patch has the same effect as doubling the side.
    assert by[512, 8]["scores_per_head"] == by[1024, 16]["scores_per_head"]
    n_cross = crossover_tokens()
    side_cross = 16 * math.sqrt(n_cross)
    lin_c, att_c = layer_flops(round(n_cross))
    assert abs(att_c / lin_c - 1) < 1e-3, "the crossover formula should balance the two parts"
    assert by[224, 16]["attention_share"] < 0.1, "at 224 px attention is a small part of a ViT-B layer"
    assert by[1024, 8]["attention_share"] > 0.5, "at 1024 px with patch 8 attention dominates"

    # Measured: SDPA time at growing resolution, ViT-B heads, batch 1.
    repeats = {224: 15, 320: 9, 448: 7, 640: 5}
    timed = []
    for s in TIMED_SIDES:
        n = tokens(s, 16)
        timed.append({"side": s, "tokens": n, "sdpa_ms": time_sdpa(n, repeats[s], dev) * 1e3})
    fit_rows = timed[1:]
    exp_side = float(np.polyfit(np.log([r["side"] for r in fit_rows]), np.log([r["sdpa_ms"] for r in fit_rows]), 1)[0])
    exp_tokens = exp_side / 2  # N ∝ side^2
    ratio_2x = timed[-1]["sdpa_ms"] / timed[1]["sdpa_ms"]  # 640 vs 320 px: 2x the side
    if dev == "cpu":  # on a GPU these sizes are launch-latency bound
        # ~4 (scores grow as side^4), clearly above the 2 of a cost linear in tokens; cache effects
        # push it above 4 on some runs (4.81 seen under scripts/timing_ranges.py)
        assert 3.0 < exp_side < 5.3, f"attention time should grow ~side^4, got side^{exp_side:.2f}"

    # Measured: the attention's share of one whole layer's TIME, next to its share of the FLOPs.
    # They differ: the softmax's exponentials and memory traffic are not in the FLOP count (problem 17).
    layer_split = {}
    for s in LAYER_SIDES:
        n = tokens(s, 16)
        lin, att = layer_flops(n)
        layer_split[str(s)] = {"side": s, "tokens": n, "attention_flop_share": att / (lin + att),
                               **layer_time_split(n, 7 if s < 400 else 3, dev)}
        r = layer_split[str(s)]
        r["time_over_flop_share"] = r["attention_time_share"] / r["attention_flop_share"]

    results = {"machine": {**machine_info(), "device": dev},
               "config": {"d_model": D_MODEL, "d_mlp": D_MLP, "heads": HEADS, "batch": 1, "dtype": "float32"},
               "table": table,
               "at": {f"{r['side']}_p{r['patch']}": r for r in table},
               "crossover": {"tokens": n_cross, "side_px_patch16": side_cross},
               "timed": timed,
               "fit": {"time_exponent_vs_side": exp_side, "time_exponent_vs_tokens": exp_tokens,
                       "points_side": [r["side"] for r in fit_rows]},
               "time_ratio_side_x2": ratio_2x,
               "layer_split": layer_split}
    r = layer_split["224"]
    results["verdicts"] = {"layer_224": (
        f"attention (SDPA: scores, softmax and weights times values) took {r['attention_time_share']:.1%} of one "
        f"layer's time, {r['time_over_flop_share']:.1f} times its {r['attention_flop_share']:.1%} share of the FLOPs")}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(timed, OUT / "resolution.svg")

    print(f"{'side':>5} {'patch':>5} {'tokens':>7} {'scores/head':>14} {'scores MiB (12 heads)':>22} {'attn share':>10}")
    for r in table:
        print(f"{r['side']:>5} {r['patch']:>5} {r['tokens']:>7,} {r['scores_per_head']:>14,} "
              f"{r['score_mib_fp32_all_heads']:>22,.1f} {r['attention_share']:>10.1%}")
    print(f"ViT-B layer: attention FLOPs = linear FLOPs at N = {n_cross:.0f} tokens "
          f"(≈ {side_cross:.0f} px at patch 16)")
    print("SDPA, 12 heads x 64, batch 1:")
    for r in timed:
        print(f"  {r['side']:>4} px  {r['tokens']:>5} tokens  {r['sdpa_ms']:8.2f} ms")
    print(f"fitted time ∝ side^{exp_side:.2f} (= tokens^{exp_tokens:.2f}) on sides {results['fit']['points_side']}; "
          f"640 px vs 320 px: {ratio_2x:.1f}x the time")
    for r in layer_split.values():
        print(f"one ViT-B layer at {r['side']} px ({r['tokens']} tokens): {r['layer_ms']:.1f} ms, attention "
              f"{r['attention_ms']:.2f} ms = {r['attention_time_share']:.1%} of the time, "
              f"{r['attention_flop_share']:.1%} of the FLOPs")
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['torch_threads']} thread(s), torch {m['torch']}")


if __name__ == "__main__":
    main()
