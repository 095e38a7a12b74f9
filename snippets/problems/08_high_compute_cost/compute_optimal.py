"""A fix: compute-optimal sizing (Chinchilla) and what a budget costs on hardware you choose.

With training compute C = 6 N D and the compute-optimal ratio of about 20
training tokens per parameter read off Hoffmann et al. (2022, Table 3,
Approach 1), the best model for a budget C has N = sqrt(C / 120) parameters
and D = 20 N tokens. The script checks that rule against every row of
Table 3, applies it to GPT-3's and Gopher's budgets, and turns FLOPs into
accelerator-hours, money and energy with inputs the reader sets.

Run from the repo root:  python snippets/problems/08_high_compute_cost/compute_optimal.py
"""
import argparse
import json
import math
import os
from pathlib import Path

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))

# Hoffmann et al. 2022 (arXiv:2203.15556), Table 3: compute-optimal projections from Approach 1.
# (parameters, FLOPs, tokens)
TABLE3 = [(400e6, 1.92e19, 8.0e9), (1e9, 1.21e20, 20.2e9), (10e9, 1.23e22, 205.1e9), (67e9, 5.76e23, 1.5e12),
          (175e9, 3.85e24, 3.7e12), (280e9, 9.90e24, 5.9e12), (520e9, 3.43e25, 11.0e12), (1e12, 1.27e26, 21.2e12),
          (10e12, 1.30e28, 216.2e12)]
# Real training runs: (parameters, tokens, reported FLOPs or None).
RUNS = {
    "GPT-3": (174.6e9, 300e9, 3.14e23),  # Brown et al. 2020 (arXiv:2005.14165), Table D.1
    "Gopher": (280e9, 300e9, 5.76e23),  # Hoffmann et al. 2022: 300B tokens (Table 1), budget 5.76e23 (Table 3)
    "Chinchilla": (70e9, 1.4e12, None),  # Hoffmann et al. 2022, Section 4: 70B parameters, 1.4T tokens
}

# --- Reader inputs: NOT measurements. Change them to your hardware and prices. ---
PEAK_FLOPS = 1e15  # accelerator peak, FLOP/s, at the precision you train in
MFU = 0.40  # model FLOPs utilisation: the fraction of peak a real run sustains
USD_PER_HOUR = 2.00  # price of one accelerator for one hour
WATTS = 700.0  # power per accelerator under load, including its share of the server


# --8<-- [start:core]
def compute_optimal(c_flops, tokens_per_param=20.0):
    """Solve C = 6 N D with D = r N:  N = sqrt(C / (6 r)),  D = r N."""
    n = math.sqrt(c_flops / (6 * tokens_per_param))
    return n, tokens_per_param * n


def training_cost(c_flops, peak_flops=PEAK_FLOPS, mfu=MFU, usd_per_hour=USD_PER_HOUR, watts=WATTS):
    """Accelerator-hours, dollars and megawatt-hours to run c_flops at the given inputs."""
    hours = c_flops / (peak_flops * mfu) / 3600
    return {"accelerator_hours": hours, "usd": hours * usd_per_hour, "mwh": hours * watts / 1e6}
# --8<-- [end:core]


def plot(rows, runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
                         "savefig.transparent": False})
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    cs = [10 ** (18 + i / 10) for i in range(0, 101)]
    ax.loglog(cs, [compute_optimal(c)[0] for c in cs], color="#1f77b4", label="N = sqrt(C / 120)  (20 tokens/param)")
    ax.loglog([r["c"] for r in rows], [r["n_table3"] for r in rows], "o", color="#1f77b4", mfc="white", ms=5,
              label="Hoffmann et al. Table 3 (Approach 1)")
    markers = {"GPT-3": ("s", "#d62728"), "Gopher": ("^", "#ff7f0e"), "Chinchilla": ("D", "#2ca02c")}
    for name, r in runs.items():
        mk, col = markers[name]
        ax.loglog([r["c"]], [r["params"]], mk, color=col, ms=6,
                  label=f"{name}: {r['tokens_per_param']:.1f} tokens/param")
    ax.set_xlabel("training compute C (FLOPs)")
    ax.set_ylabel("parameters N")
    ax.grid(True, which="major", color="0.9", lw=0.6)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax.set_title("Compute-optimal size: models above the line are too big for their compute (undertrained)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="unused: this script only does arithmetic")
    ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    # 1) The 20-tokens-per-parameter rule against Table 3.
    rows = []
    for n_paper, c, d_paper in TABLE3:
        n, d = compute_optimal(c)
        rows.append({"c": c, "n_table3": n_paper, "d_table3": d_paper, "n_rule": n, "d_rule": d,
                     "n_rel_diff": n / n_paper - 1, "d_rel_diff": d / d_paper - 1,
                     "table3_tokens_per_param": d_paper / n_paper, "six_n_d_over_c": 6 * n_paper * d_paper / c})
    worst_n = max(abs(r["n_rel_diff"]) for r in rows)
    worst_d = max(abs(r["d_rel_diff"]) for r in rows)
    assert worst_n < 0.10 and worst_d < 0.10, f"rule vs Table 3: N off by {worst_n:.1%}, D off by {worst_d:.1%}"
    ratios = [r["table3_tokens_per_param"] for r in rows]
    assert 19.5 < min(ratios) and max(ratios) < 23, f"Table 3's tokens per parameter: {ratios}"

    # 2) Real runs: their tokens per parameter, and the compute-optimal split of their budgets.
    runs = {}
    for name, (n, d, c_paper) in RUNS.items():
        c = 6 * n * d
        n_opt, d_opt = compute_optimal(c_paper or c)
        runs[name] = {"params": n, "tokens": d, "c": c_paper or c, "six_n_d": c, "reported_flops": c_paper,
                      "tokens_per_param": d / n, "n_opt": n_opt, "d_opt": d_opt, "n_over_n_opt": n / n_opt,
                      "inference_gflop_per_token": 2 * n / 1e9}
    assert runs["GPT-3"]["tokens_per_param"] < 2, "GPT-3 saw under 2 tokens per parameter"
    assert abs(runs["Chinchilla"]["six_n_d"] / runs["Gopher"]["c"] - 1) < 0.03, "Chinchilla used Gopher's budget"
    inference_saving = runs["Gopher"]["inference_gflop_per_token"] / runs["Chinchilla"]["inference_gflop_per_token"]

    # 3) Cost with the reader's inputs, for a few budgets.
    budgets = {"c1e21": 1e21, "gpt3": 3.14e23, "c1e24": 1e24, "c1e25": 1e25}  # GPT-3: Table D.1
    costs = {}
    for label, c in budgets.items():
        n, d = compute_optimal(c)
        costs[label] = {"c": c, "n_opt": n, "d_opt": d, **training_cost(c)}
    # Sanity: at 1 PFLOP/s and MFU 1, accelerator-days are petaflop/s-days (GPT-3: Table D.1, 3.64E+03).
    pf_days = training_cost(3.14e23, peak_flops=1e15, mfu=1.0)["accelerator_hours"] / 24
    assert abs(pf_days / 3.64e3 - 1) < 0.005, pf_days
    half = training_cost(1e24, mfu=MFU / 2)["usd"] / training_cost(1e24)["usd"]
    assert abs(half - 2) < 1e-12, "halving utilisation doubles the bill"

    results = {"table3": rows, "table3_worst_rel_diff": {"n": worst_n, "d": worst_d},
               "table3_tokens_per_param": {"min": min(ratios), "max": max(ratios)},
               "runs": runs, "gopher_over_chinchilla_inference": inference_saving,
               "reader_inputs": {"peak_flops": PEAK_FLOPS, "mfu": MFU, "usd_per_hour": USD_PER_HOUR, "watts": WATTS},
               "costs": costs, "gpt3_pf_days_check": pf_days}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(rows, runs, OUT / "optimal.svg")

    print("20 tokens/param rule vs Hoffmann et al. Table 3 (Approach 1):")
    print(f"{'C (FLOPs)':>10} {'N Table 3':>10} {'N rule':>9} {'D Table 3':>10} {'D rule':>9} {'D/N Table 3':>11}")
    for r in rows:
        print(f"{r['c']:>10.3g} {r['n_table3']:>10.3g} {r['n_rule']:>9.3g} {r['d_table3']:>10.3g} {r['d_rule']:>9.3g} "
              f"{r['table3_tokens_per_param']:>11.1f}")
    print(f"worst difference: N {worst_n:.1%}, D {worst_d:.1%}")
    print("\nreal runs:")
    for name, r in runs.items():
        print(f"  {name:<10} N={r['params']:.3g}, D={r['tokens']:.3g}: {r['tokens_per_param']:.1f} tokens/param; "
              f"its budget {r['c']:.3g} FLOPs is optimal for N={r['n_opt']:.3g}, D={r['d_opt']:.3g}")
    print(f"  inference per token: Gopher {runs['Gopher']['inference_gflop_per_token']:.0f} GFLOP vs Chinchilla "
          f"{runs['Chinchilla']['inference_gflop_per_token']:.0f} GFLOP ({inference_saving:.0f}x less)")
    print(f"\ncost at reader inputs (not measurements): peak {PEAK_FLOPS:.0e} FLOP/s, MFU {MFU:.0%}, "
          f"${USD_PER_HOUR:.2f}/accelerator-hour, {WATTS:.0f} W")
    for label, r in costs.items():
        name = f"C={r['c']:.3g}" + (" (GPT-3)" if label == "gpt3" else "")
        print(f"  {name:<18} N_opt={r['n_opt']:.3g} D_opt={r['d_opt']:.3g}: {r['accelerator_hours']:,.0f} "
              f"accelerator-hours, ${r['usd']:,.0f}, {r['mwh']:,.1f} MWh")


if __name__ == "__main__":
    main()
