"""A fix: sliding-window attention computed block by block costs O(N*W), not O(N^2).

Each query i attends only to the W most recent keys j with i - W < j <= i
(local, causal). Masking a full N x N score matrix gives the right answer but
still pays for all N^2 scores. Splitting the sequence into blocks of W and
letting each query block look at its own and the previous key block computes
N * 2W scores instead: linear in N for a fixed window.

The script checks the banded computation against SDPA with an explicit
N x N band mask, then measures peak memory (each case in its own forkserver
process) and time (one process, all cases interleaved) of the banded version,
full causal SDPA and naive full-matrix masked attention, and fits growth
exponents.

Run from the repo root:  python snippets/problems/01_quadratic_complexity/sliding_window.py
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
B, H, D = 1, 4, 64  # batch, heads, head dim
W = 256  # window: each query sees itself and the W - 1 keys before it
NS = [1024, 2048, 4096, 8192, 16384]
NAIVE_MAX_N = 4096  # the full-matrix method is skipped above this (time budget; ~2 x 4 GiB at 16384)
N_FIT = 3  # fit exponents on the largest N_FIT lengths (small N is fixed overhead)


# --8<-- [start:core]
def band_mask(n, w, device="cpu"):
    """(n, n) bool: query i may attend key j iff i - w < j <= i."""
    i = torch.arange(n, device=device)[:, None]  # (n, 1)
    j = torch.arange(n, device=device)[None, :]  # (1, n)
    return (j <= i) & (i - j < w)


def full_matrix_window(q, k, v, w):
    """Exact but quadratic: all N x N scores, then mask out everything off the band."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, N, N)
    scores = scores.masked_fill(~band_mask(q.shape[-2], w, q.device), float("-inf"))  # (B, H, N, N)
    return scores.softmax(dim=-1) @ v  # (B, H, N, d)


def banded_window(q, k, v, w):
    """O(N*w): query block b only scores key blocks b-1 and b (2w keys)."""
    B, H, N, d = q.shape
    nb = -(-N // w)  # number of blocks, ceil(N / w)
    pad = nb * w - N
    q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))  # (B, H, nb*w, d) each
    qb = (q / math.sqrt(d)).reshape(B, H, nb, w, d)  # (B, H, nb, w, d): scaled query blocks
    k = F.pad(k, (0, 0, w, 0))  # (B, H, (nb+1)*w, d): one zero block in front
    v = F.pad(v, (0, 0, w, 0))  # (B, H, (nb+1)*w, d)
    kb = k.unfold(2, 2 * w, w)  # (B, H, nb, d, 2w): block b sees key blocks b-1, b
    vb = v.unfold(2, 2 * w, w).transpose(-2, -1)  # (B, H, nb, 2w, d)
    scores = qb @ kb  # (B, H, nb, w, 2w)  <- N * 2w scores, not N * N

    # Query r of block b is i = b*w + r; key c of its tile is j = (b-1)*w + c,
    # so i - j = w + r - c. The window keeps 0 <= i - j < w: the same (w, 2w)
    # pattern in every tile.
    r = torch.arange(w, device=q.device)[:, None]  # (w, 1)
    c = torch.arange(2 * w, device=q.device)[None, :]  # (1, 2w)
    lag = w + r - c  # (w, 2w)
    tile_bias = torch.zeros(w, 2 * w, device=q.device).masked_fill((lag < 0) | (lag >= w), float("-inf"))
    scores += tile_bias  # broadcast over (B, H, nb)
    scores[:, :, 0, :, :w] = float("-inf")  # block 0's "previous block" is the zero padding

    out = scores.softmax(dim=-1) @ vb  # (B, H, nb, w, d)
    return out.reshape(B, H, nb * w, d)[:, :, :N]  # (B, H, N, d)
# --8<-- [end:core]


def sdpa_causal(q, k, v, w):
    """Full causal attention, fused (no window): linear memory, quadratic work."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, N, d)


METHODS = {"banded": banded_window, "sdpa_causal": sdpa_causal, "full_matrix": full_matrix_window}


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
    fn(*(torch.randn(B, H, 2 * W, D, device=device) for _ in range(3)), W)  # (B, H, 2W, d) each
    sync()
    t0 = time.perf_counter()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = fn(q, k, v, W)
        sync()
        peak_bytes = torch.cuda.max_memory_allocated() - base
        mem_method = "torch.cuda.max_memory_allocated"
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM (peak RSS) to the current RSS
            base_kib = _proc_status_kib("VmRSS")
            out = fn(q, k, v, W)
            peak_bytes = (_proc_status_kib("VmHWM") - base_kib) * 1024
            mem_method = "VmHWM after clear_refs"
        except OSError:  # not Linux: lifetime peak RSS, less precise
            base_kib = _proc_status_kib("VmRSS") if Path("/proc/self/status").exists() else 0
            out = fn(q, k, v, W)
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
            METHODS[method](*inputs[n], W)
            sync()
            if r >= warmups:
                times[method, n].append(clock() - t0)
    return times


def fit_exponent(ns, ys):
    """Least-squares slope of log(y) vs log(N)."""
    slope, _ = np.polyfit(np.log(ns), np.log(ys), 1)
    return float(slope)


def score_counts(n, w):
    """Exact score entries per (batch, head)."""
    nb = -(-n // w)
    return {"full": n * n,  # naive and masked-SDPA: every (i, j)
            "banded": nb * w * 2 * w,  # nb tiles of w x 2w
            "in_window": sum(min(i + 1, w) for i in range(n)),  # entries that survive the mask
            "causal": n * (n + 1) // 2}  # lower triangle (what causal flash attention still does)


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


STYLE = {"banded": ("o-", "#2ca02c", f"banded, W={W}"),
         "sdpa_causal": ("s-", "#1f77b4", "SDPA causal (no window)"),
         "full_matrix": ("^-", "#d62728", "full N×N matrix + mask")}


def plot(rows, fit_ns, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.4), gridspec_kw={"width_ratios": [0.8, 1, 1]})

    # Left: the band for a toy size, and the w x 2w tiles the banded method computes.
    n, w = 32, 8
    ax = axes[0]
    ax.imshow(band_mask(n, w).numpy(), cmap="Greys", vmin=0, vmax=1.6, interpolation="none",
              extent=(-0.5, n - 0.5, n - 0.5, -0.5))
    for blk in range(n // w):
        x0 = max(blk - 1, 0) * w - 0.5
        width = (2 * w if blk else w)
        ax.add_patch(Rectangle((x0, blk * w - 0.5), width, w, fill=False, ec="#2ca02c", lw=1.4))
    ax.set_title(f"band mask N={n}, W={w}\n(green: tiles computed)", fontsize=9)
    ax.set_xlabel("key j")
    ax.set_ylabel("query i")
    ax.set_xticks([0, 8, 16, 24, 31])
    ax.set_yticks([0, 8, 16, 24, 31])

    ns = np.array([r["n"] for r in rows], dtype=float)
    for ax, key, label in ((axes[1], "peak_mib", "peak memory above baseline (MiB)"),
                           (axes[2], "ms", "time per call (ms)")):
        for m, (fmt, color, name) in STYLE.items():
            pts = [(r["n"], r[f"{m}_{key}"]) for r in rows if r[f"{m}_{key}"] is not None]
            x, y = np.array(pts).T
            ax.loglog(x, y, fmt, color=color, label=name, ms=4)
        # reference slopes: parallel guides a little below the banded method's largest point
        yb = np.array([r[f"banded_{key}"] for r in rows])
        for slope, txt in ((1, "∝ N"), (2, "∝ N²")):
            ref = yb[-1] / 3 * (ns / ns[-1]) ** slope
            ax.loglog(ns[1:], ref[1:], "--", color="0.55", lw=0.8)
            ax.annotate(txt, (ns[2], ref[2]), fontsize=8, color="0.35", xytext=(4, -10),
                        textcoords="offset points")
        ax.set_xlabel("sequence length N")
        ax.set_ylabel(label)
        ax.set_xticks(ns, [str(int(v)) for v in ns])
        ax.minorticks_off()
        ax.grid(True, which="major", color="0.9", lw=0.6)
        ax.set_title(("memory" if key == "peak_mib" else "time") + f" (fit on N ≥ {int(fit_ns[0])})", fontsize=9)
    axes[1].legend(fontsize=7, frameon=False, loc="upper left")
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

    # 1) Exactness: banded == SDPA with an explicit N x N band mask (also for N
    #    not a multiple of W, which exercises the padding), and full-matrix too.
    max_abs_err = {}
    for n in (1000, 2048):
        q, k, v = (torch.randn(B, H, n, D, device=dev) for _ in range(3))  # (B, H, N, d) each
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=band_mask(n, W, dev))  # (B, H, N, d)
        out_banded, out_full = banded_window(q, k, v, W), full_matrix_window(q, k, v, W)
        torch.testing.assert_close(out_banded, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out_full, ref, rtol=1e-4, atol=1e-5)
        max_abs_err[str(n)] = {"banded_vs_sdpa_mask": (out_banded - ref).abs().max().item(),
                               "full_matrix_vs_sdpa_mask": (out_full - ref).abs().max().item()}
    # A window as long as the sequence is plain causal attention.
    q, k, v = (torch.randn(B, H, 512, D, device=dev) for _ in range(3))  # (B, H, 512, d) each
    torch.testing.assert_close(banded_window(q, k, v, 512), sdpa_causal(q, k, v, 512), rtol=1e-4, atol=1e-5)
    # The window really is narrower than causal: W=256 differs from causal at N=512.
    assert not torch.allclose(banded_window(q, k, v, W), sdpa_causal(q, k, v, W), atol=1e-3), \
        "the window had no effect"
    # Exact score counts: the band mask keeps exactly the in-window entries.
    for n in (1000, 2048):
        assert band_mask(n, W).sum().item() == score_counts(n, W)["in_window"], "band mask count mismatch"

    # 2) Peak memory: each case in its own fresh process. Time: one process
    #    running all cases interleaved, so ratios come from the same run.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch"])
    cases = [(m, n) for n in NS for m in METHODS if not (m == "full_matrix" and n > NAIVE_MAX_N)]
    heavy = {("full_matrix", NAIVE_MAX_N), ("sdpa_causal", NS[-1])}  # ~0.5-1 s a call: fewer repeats
    reps = {case: (0, 3) if case in heavy else (1, 5) for case in cases}  # (warm-ups, repeats)
    with ctx.Pool(1, maxtasksperchild=1) as pool:  # maxtasksperchild=1: a fresh process per task
        mem = {case: pool.apply(peak_memory_case, (*case, dev)) for case in cases}
        times = pool.apply(timing_run, (reps, dev))

    rows = []
    for n in NS:
        row = {"n": n}
        for m in METHODS:
            row[f"{m}_ms"] = statistics.median(times[m, n]) * 1e3 if (m, n) in times else None
            row[f"{m}_peak_mib"] = mem[m, n]["peak_bytes"] / 2**20 if (m, n) in mem else None
        c = score_counts(n, W)
        row.update({"scores_full": c["full"], "scores_banded": c["banded"], "scores_in_window": c["in_window"],
                    "score_matrix_mib": B * H * n * n * 4 / 2**20})
        rows.append(row)

    fit_rows = rows[-N_FIT:]
    fit_ns = [r["n"] for r in fit_rows]
    fit = {"points_n": fit_ns}
    for m in ("banded", "sdpa_causal"):
        for key, col in (("mem", "peak_mib"), ("time", "ms")):
            fit[f"{m}_{key}_exponent"] = fit_exponent(fit_ns, [max(r[f"{m}_{col}"], 1e-3) for r in fit_rows])
    naive_rows = [r for r in rows if r["full_matrix_ms"] is not None][-N_FIT:]
    fit["full_matrix_points_n"] = [r["n"] for r in naive_rows]
    for key, col in (("mem", "peak_mib"), ("time", "ms")):
        fit[f"full_matrix_{key}_exponent"] = fit_exponent(fit["full_matrix_points_n"],
                                                          [r[f"full_matrix_{col}"] for r in naive_rows])

    last = rows[-1]
    nmax = NS[-1]
    counts = {"n": nmax, **score_counts(nmax, W)}
    counts["full_over_banded"] = counts["full"] / counts["banded"]
    at_max_n = {"n": nmax, "banded_ms": last["banded_ms"], "sdpa_causal_ms": last["sdpa_causal_ms"],
                "banded_peak_mib": last["banded_peak_mib"], "sdpa_causal_peak_mib": last["sdpa_causal_peak_mib"],
                "time_ratio_sdpa_causal_over_banded": last["sdpa_causal_ms"] / last["banded_ms"],
                "full_matrix_would_need_mib": 2 * last["score_matrix_mib"]}
    machine = machine_info()
    machine["worker_threads"] = mem["banded", NS[0]]["threads"]
    machine["device"] = dev
    machine["timing_threads"] = 1 if not dev.startswith("cuda") else None  # timing_run() sets one thread on the CPU
    summary = {"machine": machine,
               "config": {"batch": B, "heads": H, "head_dim": D, "dtype": "float32", "ns": NS, "seed": SEED,
                          "full_matrix_max_n": NAIVE_MAX_N,
                          "memory_method": mem["banded", NS[0]]["mem_method"],
                          "timing": "median of repeats after warm-up, all cases interleaved in one process; on CPU one torch thread, its thread CPU time"},
               "window": W, "rows": rows, "fit": fit, "counts": counts, "at_max_n": at_max_n,
               "max_abs_err": {"by_n": max_abs_err,
                               **{k: max(e[k] for e in max_abs_err.values()) for k in next(iter(max_abs_err.values()))}}}
    (OUT / "results.json").write_text(json.dumps(summary, indent=2))
    plot(rows, fit_ns, OUT / "window.svg")

    def cell(x, spec):
        return format(x, spec) if x is not None else "—".rjust(int(spec.split(".")[0]))

    print(f"B={B} H={H} d={D} W={W} fp32, device={dev}; peak = {summary['config']['memory_method']}")
    print(f"{'':>6} {'------ time ms ------':^27} {'---- peak MiB ----':^27}")
    print(f"{'N':>6} {'banded':>8} {'causal':>8} {'full':>9} {'banded':>8} {'causal':>8} {'full':>9}")
    for r in rows:
        print(f"{r['n']:>6} {cell(r['banded_ms'], '8.1f')} {cell(r['sdpa_causal_ms'], '8.1f')} "
              f"{cell(r['full_matrix_ms'], '9.1f')} {cell(r['banded_peak_mib'], '8.1f')} "
              f"{cell(r['sdpa_causal_peak_mib'], '8.1f')} {cell(r['full_matrix_peak_mib'], '9.1f')}")
    print(f"full N×N matrix skipped at N > {NAIVE_MAX_N} (would need ≈ {at_max_n['full_matrix_would_need_mib']:.0f} MiB "
          f"at N={nmax})")
    print(f"exponents (fit on N = {fit_ns}): banded memory {fit['banded_mem_exponent']:.2f}, "
          f"time {fit['banded_time_exponent']:.2f}; causal SDPA memory {fit['sdpa_causal_mem_exponent']:.2f}, "
          f"time {fit['sdpa_causal_time_exponent']:.2f}")
    print(f"full matrix (fit on N = {fit['full_matrix_points_n']}): memory {fit['full_matrix_mem_exponent']:.2f}, "
          f"time {fit['full_matrix_time_exponent']:.2f}")
    print(f"scores per head at N={nmax}: full {counts['full']:,}, banded {counts['banded']:,} "
          f"({counts['full_over_banded']:.0f}x fewer), in window {counts['in_window']:,}")
    print(f"max |banded - SDPA(band mask)| = {summary['max_abs_err']['banded_vs_sdpa_mask']:.1e}")
    timing_threads = "1 torch thread" if machine["timing_threads"] == 1 else "the default torch threads"
    print(f"machine: {machine['cpu']}, torch {machine['torch']}; timed on {timing_threads}, "
          f"memory cases on {machine['worker_threads']} torch thread(s)")

    # 3) The claims the page makes.
    # the page: the banded method's memory "grows linearly"
    assert 0.85 < fit["banded_mem_exponent"] < 1.15, f"banded memory should grow ~N, got N^{fit['banded_mem_exponent']:.2f}"
    assert fit["banded_time_exponent"] < 1.4, f"banded time should grow ~N, got N^{fit['banded_time_exponent']:.2f}"
    # the page: the banded method's memory is "higher than causal SDPA's" (it stores its N x 2W scores)
    assert last["banded_peak_mib"] > last["sdpa_causal_peak_mib"], "banded should hold more memory than fused SDPA"
    assert fit["full_matrix_mem_exponent"] > 1.6, \
        f"the full-matrix method should grow ~N^2, got N^{fit['full_matrix_mem_exponent']:.2f}"
    if dev == "cpu":  # on a GPU these sizes are launch-latency bound, so time slopes flatten
        assert fit["sdpa_causal_time_exponent"] > 1.6, \
            f"causal SDPA still does ~N^2/2 work, got N^{fit['sdpa_causal_time_exponent']:.2f}"
        assert last["banded_ms"] < last["sdpa_causal_ms"], "banded should beat full causal attention at the largest N"


if __name__ == "__main__":
    main()
