"""See it: naive attention materialises an N x N score matrix; fused SDPA does not.

Naive attention computes softmax(Q K^T / sqrt(d)) V and keeps the whole
(B, H, N, N) score matrix in memory. torch.nn.functional.scaled_dot_product_attention
(on CPU: a fused flash-attention kernel) computes the same output block by
block. This script measures time and peak memory of both for growing sequence
length N, checks that they agree, and fits the growth exponent of each.

Each (method, N) memory case runs in its own process (forkserver), so one
case's allocations cannot inflate another's peak; timings come from one
process that interleaves all cases.

Run from the repo root:  python snippets/problems/01_quadratic_complexity/naive_vs_sdpa.py
"""
# build: exclusive
import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
B, H, D = 1, 4, 64  # batch, heads, head dim (H=4 keeps the N=8192 naive case ~1 GiB per N x N tensor)
NS = [512, 1024, 2048, 4096, 8192]
N_FIT = 3  # fit exponents on the largest N_FIT sequence lengths (small N is fixed overhead)


# --8<-- [start:core]
def naive_attention(q, k, v):
    # q, k, v: (B, H, N, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, N, N)  <- the N x N matrix
    weights = scores.softmax(dim=-1)  # (B, H, N, N)  a second N x N tensor
    return weights @ v  # (B, H, N, d)


def sdpa_attention(q, k, v):
    # Same maths, fused: scores are computed tile by tile and never stored whole.
    return F.scaled_dot_product_attention(q, k, v)  # (B, H, N, d)


METHODS = {"naive": naive_attention, "sdpa": sdpa_attention}
# --8<-- [end:core]


def _proc_status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # value in kB
    raise KeyError(field)


def peak_memory_case(method, n, device):
    """Runs in a fresh forkserver child: peak memory above baseline of one call."""
    torch.manual_seed(SEED)
    fn = METHODS[method]
    q, k, v = (torch.randn(B, H, n, D, device=device) for _ in range(3))  # (B, H, N, d) each
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    # One small call first, so one-time costs (kernel code pages, thread pool)
    # are not counted; its buffers are too small to hide the real case.
    fn(*(torch.randn(B, H, 128, D, device=device) for _ in range(3)))  # (B, H, 128, d) each
    sync()
    t0 = time.perf_counter()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = fn(q, k, v)
        sync()
        peak_bytes = torch.cuda.max_memory_allocated() - base
        mem_method = "torch.cuda.max_memory_allocated"
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM (peak RSS) to the current RSS
            base_kib = _proc_status_kib("VmRSS")
            out = fn(q, k, v)
            peak_bytes = (_proc_status_kib("VmHWM") - base_kib) * 1024
            mem_method = "VmHWM after clear_refs"
        except OSError:  # not Linux: lifetime peak RSS, less precise
            base_kib = _proc_status_kib("VmRSS") if Path("/proc/self/status").exists() else 0
            out = fn(q, k, v)
            scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
            peak_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale - base_kib * 1024
            mem_method = "ru_maxrss fallback (includes torch import)"
    elapsed = time.perf_counter() - t0
    del out
    return {"peak_bytes": peak_bytes, "elapsed_s": elapsed, "mem_method": mem_method,
            "threads": torch.get_num_threads()}


def timing_run(schedule, device):
    """Runs in one forkserver child: times every (method, n) case, interleaved.

    schedule: {(method, n): (warmups, repeats)}. Round r runs each case once
    (a warm-up while r < warmups), so background load hits every case alike
    and ratios come from the same run. Returns {(method, n): [seconds, ...]}.
    On the CPU it runs one torch thread and counts that thread's CPU time, so
    other programs competing for the cores do not enter the measurement.
    """
    torch.manual_seed(SEED)
    cpu = not device.startswith("cuda")
    if cpu:
        torch.set_num_threads(1)
    clock = time.thread_time if cpu else time.perf_counter
    ns = sorted({n for _, n in schedule})
    inputs = {n: tuple(torch.randn(B, H, n, D, device=device) for _ in range(3)) for n in ns}  # (B, H, N, d)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = {case: [] for case in schedule}
    for r in range(max(wu + rep for wu, rep in schedule.values())):
        for (method, n), (warmups, repeats) in schedule.items():
            if r >= warmups + repeats:
                continue
            t0 = clock()
            METHODS[method](*inputs[n])
            sync()
            if r >= warmups:
                times[method, n].append(clock() - t0)
    return times


def fit_exponent(ns, ys):
    """Least-squares slope of log(y) vs log(N)."""
    slope, _ = np.polyfit(np.log(ns), np.log(ys), 1)
    return float(slope)


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


def plot(rows, fit_ns, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    ns = np.array([r["n"] for r in rows], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.3))
    panels = [("peak memory above baseline (MiB)", "naive_peak_mib", "sdpa_peak_mib"),
              ("time per call (ms)", "naive_ms", "sdpa_ms")]
    for ax, (label, kn, ks) in zip(axes, panels):
        yn = np.array([r[kn] for r in rows])
        ys = np.array([r[ks] for r in rows])
        ax.loglog(ns, yn, "o-", color="#d62728", label="naive (N x N matrix)")
        ax.loglog(ns, ys, "s-", color="#1f77b4", label="SDPA (fused)")
        if kn == "naive_peak_mib":
            sm = np.array([r["score_matrix_mib"] for r in rows])
            ax.loglog(ns, sm, ":", color="#d62728", lw=1, label="one score matrix B·H·N²·4 B")
        # reference slopes: parallel guides a little below each curve's largest point
        for y, slope in ((yn, 2), (ys, 1 if kn == "naive_peak_mib" else 2)):
            ref = y[-1] / 3 * (ns / ns[-1]) ** slope
            ax.loglog(ns[1:], ref[1:], "--", color="0.55", lw=0.8)
            ax.annotate("∝ N" if slope == 1 else "∝ N²", (ns[2], ref[2]), fontsize=8, color="0.35",
                        xytext=(4, -10), textcoords="offset points")
        ax.set_xlabel("sequence length N")
        ax.set_ylabel(label)
        ax.set_xticks(ns, [str(int(n)) for n in ns])
        ax.minorticks_off()
        ax.grid(True, which="major", color="0.9", lw=0.6)
        ax.legend(fontsize=7, frameon=False, loc="upper left")
    axes[0].set_title(f"memory (fit on N ≥ {int(fit_ns[0])})", fontsize=9)
    axes[1].set_title(f"time (fit on N ≥ {int(fit_ns[0])})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    # 1) Same output: naive and SDPA both against a float64 exact computation.
    max_abs_err = {}
    for n in (512, 2048):
        q, k, v = (torch.randn(B, H, n, D, device=args.device) for _ in range(3))  # (B, H, N, d)
        exact = naive_attention(q.double(), k.double(), v.double()).float()  # (B, H, N, d)
        out_naive, out_sdpa = naive_attention(q, k, v), sdpa_attention(q, k, v)
        torch.testing.assert_close(out_sdpa, out_naive, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out_naive, exact, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out_sdpa, exact, rtol=1e-4, atol=1e-5)
        max_abs_err[str(n)] = {"naive_vs_exact": (out_naive - exact).abs().max().item(),
                               "sdpa_vs_exact": (out_sdpa - exact).abs().max().item(),
                               "sdpa_vs_naive": (out_sdpa - out_naive).abs().max().item()}
        del q, k, v, exact, out_naive, out_sdpa

    # 2) Peak memory: each case in its own fresh process. Time: one process
    #    running all cases interleaved, so ratios come from the same run.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch"])
    reps = {512: (1, 7), 1024: (1, 7), 2048: (1, 5), 4096: (1, 5), 8192: (0, 3)}  # (warm-ups, repeats)
    with ctx.Pool(1, maxtasksperchild=1) as pool:  # maxtasksperchild=1: a fresh process per task
        mem = {(m, n): pool.apply(peak_memory_case, (m, n, args.device)) for n in NS for m in METHODS}
        times = pool.apply(timing_run, ({(m, n): reps[n] for n in NS for m in METHODS}, args.device))

    rows = []
    for n in NS:
        rows.append({"n": n,
                     "naive_ms": statistics.median(times["naive", n]) * 1e3,
                     "sdpa_ms": statistics.median(times["sdpa", n]) * 1e3,
                     "naive_peak_mib": mem["naive", n]["peak_bytes"] / 2**20,
                     "sdpa_peak_mib": mem["sdpa", n]["peak_bytes"] / 2**20,
                     "score_matrix_mib": B * H * n * n * 4 / 2**20,  # one (B, H, N, N) fp32 tensor
                     "output_mib": B * H * n * D * 4 / 2**20,  # the (B, H, N, d) result itself
                     "repeats": len(times["naive", n])})

    fit_rows = rows[-N_FIT:]
    fit_ns = [r["n"] for r in fit_rows]
    fit = {"points_n": fit_ns}
    for key, col in (("naive_mem_exponent", "naive_peak_mib"), ("sdpa_mem_exponent", "sdpa_peak_mib"),
                     ("naive_time_exponent", "naive_ms"), ("sdpa_time_exponent", "sdpa_ms")):
        ys = [max(r[col], 1e-3) for r in fit_rows]  # guard log(0) if a peak rounds to zero
        fit[key] = fit_exponent(fit_ns, ys)

    last = rows[-1]
    at_max_n = {"n": last["n"], "naive_peak_mib": last["naive_peak_mib"], "sdpa_peak_mib": last["sdpa_peak_mib"],
                "score_matrix_mib": last["score_matrix_mib"],
                "naive_peak_over_score_matrix": last["naive_peak_mib"] / last["score_matrix_mib"],
                "output_mib": last["output_mib"], "sdpa_peak_over_output": last["sdpa_peak_mib"] / last["output_mib"],
                "mem_ratio": last["naive_peak_mib"] / last["sdpa_peak_mib"],
                "time_ratio": last["naive_ms"] / last["sdpa_ms"]}

    machine = machine_info()
    machine["worker_threads"] = mem["naive", NS[0]]["threads"]
    machine["device"] = args.device
    machine["timing_threads"] = 1 if not args.device.startswith("cuda") else None  # timing_run() sets one thread on the CPU
    summary = {"machine": machine,
               "config": {"batch": B, "heads": H, "head_dim": D, "dtype": "float32", "ns": NS, "seed": SEED,
                          "memory_method": mem["naive", NS[0]]["mem_method"],
                          "timing": "median of repeats after warm-up, all cases interleaved in one process; on CPU one torch thread, its thread CPU time"},
               "rows": rows, "fit": fit, "at_max_n": at_max_n,
               "max_abs_err": {"by_n": max_abs_err,
                               **{k: max(e[k] for e in max_abs_err.values()) for k in next(iter(max_abs_err.values()))}}}
    (OUT / "results.json").write_text(json.dumps(summary, indent=2))
    plot(rows, fit_ns, OUT / "growth.svg")

    print(f"B={B} H={H} d={D} fp32, device={args.device}; peak = {summary['config']['memory_method']}")
    print(f"{'N':>6} {'naive ms':>9} {'sdpa ms':>8} {'naive MiB':>10} {'sdpa MiB':>9} {'N×N MiB':>8} {'out MiB':>8}")
    for r in rows:
        print(f"{r['n']:>6} {r['naive_ms']:>9.1f} {r['sdpa_ms']:>8.1f} {r['naive_peak_mib']:>10.1f} "
              f"{r['sdpa_peak_mib']:>9.1f} {r['score_matrix_mib']:>8.1f} {r['output_mib']:>8.1f}")
    print(f"exponents (fit on N = {fit_ns}): memory naive {fit['naive_mem_exponent']:.2f}, "
          f"sdpa {fit['sdpa_mem_exponent']:.2f}; time naive {fit['naive_time_exponent']:.2f}, "
          f"sdpa {fit['sdpa_time_exponent']:.2f}")
    print(f"at N={last['n']}: naive uses {at_max_n['mem_ratio']:.0f}x the memory "
          f"({at_max_n['naive_peak_over_score_matrix']:.1f}x one score matrix) and "
          f"{at_max_n['time_ratio']:.1f}x the time of SDPA")
    print(f"max |naive - sdpa| = {summary['max_abs_err']['sdpa_vs_naive']:.1e} "
          f"(vs float64: naive {summary['max_abs_err']['naive_vs_exact']:.1e}, "
          f"sdpa {summary['max_abs_err']['sdpa_vs_exact']:.1e})")
    timing_threads = "1 torch thread" if machine["timing_threads"] == 1 else "the default torch threads"
    print(f"machine: {machine['cpu']}, torch {machine['torch']}; timed on {timing_threads}, "
          f"memory cases on {machine['worker_threads']} torch thread(s)")

    # 3) The claims the page makes.
    assert 1.7 <= fit["naive_mem_exponent"] <= 2.3, f"naive memory should grow ~N^2, got N^{fit['naive_mem_exponent']:.2f}"
    # the page: SDPA's memory grows "no faster than linearly" (its output is (B, H, N, d))
    assert fit["sdpa_mem_exponent"] < 1.15, f"SDPA memory should grow at most ~N, got N^{fit['sdpa_mem_exponent']:.2f}"
    assert last["naive_peak_mib"] >= 0.9 * last["score_matrix_mib"], "naive should hold at least one N x N matrix"
    # the page: "the scores and the softmax weights are both alive at once": about two N x N matrices
    assert 1.8 <= at_max_n["naive_peak_over_score_matrix"] <= 2.5, \
        f"naive peak should be ~2 score matrices, got {at_max_n['naive_peak_over_score_matrix']:.2f}"
    assert last["sdpa_peak_mib"] < 0.1 * last["score_matrix_mib"], "SDPA should never hold the N x N matrix"
    if args.device == "cpu":  # on a GPU these sizes are too small for a stable time ratio
        assert at_max_n["time_ratio"] > 1.5, "naive should be clearly slower than SDPA at the largest N"
        # the page: the fused kernel's time exponent "is still about 2" (it computes every score)
        assert 1.6 < fit["sdpa_time_exponent"] < 2.4, f"SDPA time should grow ~N^2, got N^{fit['sdpa_time_exponent']:.2f}"


if __name__ == "__main__":
    main()
