"""See it: greedy decoding without a KV cache re-runs the whole prefix at every step.

A small decoder-only transformer (4 layers, d_model 256, random weights: the
cost does not depend on what the weights are) generates tokens greedily, the
textbook way: at each step the whole sequence so far goes through the model
again and only the last position's logits are used. The script times every
step, fits latency against position, and counts how many token positions the
model processed in total (a forward hook on the first layer), which it checks
against the formula n*P + n(n-1)/2.

Run from the repo root:  python snippets/problems/04_slow_autoregressive_decoding/no_cache.py
"""
# build: exclusive
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
# One thread: then every op runs on the calling thread, so that thread's CPU time is the whole
# cost of a step, and time the OS gives to other processes is not counted. Try os.cpu_count().
THREADS = 1
# With one torch thread every op runs on the calling thread, so that thread's CPU
# time is the step's cost; unlike wall time it does not count time the OS gave to
# other processes. kv_cache.py and speculative.py time with the same clock.
CLOCK = time.thread_time
VOCAB, D_MODEL, N_LAYERS, N_HEADS = 64, 256, 4, 4
PROMPT_LEN, N_NEW = 8, 120  # generated positions 8 .. 127
BIN = 15  # positions per bin for the robust per-position medians
RUNS = 3  # timed generations; per-step minimum over runs, then median per bin


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        B, T, D = x.shape  # x: (B, T, d)
        qkv = self.qkv(self.ln1(x)).view(B, T, 3, self.h, D // self.h)  # (B, T, 3, H, dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, dh)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, dh)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D))  # (B, H, T, dh) -> (B, T, H, dh) -> (B, T, d)
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab=VOCAB, d=D_MODEL, n_layers=N_LAYERS, h=N_HEADS, max_len=512):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(Block(d, h) for _ in range(n_layers))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, idx):  # idx: (B, T) token ids
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))  # (B, T, d)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))  # (B, T, vocab)


# --8<-- [start:core]
@torch.inference_mode()
def generate_no_cache(model, prompt, n_new):
    """Greedy decoding, textbook style: every step feeds the WHOLE sequence again."""
    idx, step_s = prompt, []  # idx: (1, P)
    for _ in range(n_new):
        t0 = CLOCK()
        logits = model(idx)  # (1, T, vocab): all T positions recomputed ...
        nxt = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1) ... to use only the last one
        idx = torch.cat([idx, nxt], dim=1)  # (1, T + 1)
        step_s.append(CLOCK() - t0)
    return idx, step_s


def count_positions(model):
    """Forward hook on the first layer: how many token positions went through the model."""
    seen = {"positions": 0}
    hook = model.blocks[0].register_forward_pre_hook(
        lambda mod, args: seen.__setitem__("positions", seen["positions"] + args[0].shape[0] * args[0].shape[1]))
    return seen, hook
# --8<-- [end:core]


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def plot(positions, bins, fit, cum_s, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    ax = axes[0]
    bx = np.array([b["center_position"] for b in bins])
    by = np.array([b["median_ms"] for b in bins])
    ax.plot(bx, by, "o", color="#d62728", ms=4, label=f"median of {BIN} steps")
    xs = np.array([positions[0], positions[-1]])
    ax.plot(xs, fit["intercept_ms"] + fit["slope_ms_per_position"] * xs, "--", color="0.4", lw=1,
            label=f"fit: {fit['intercept_ms']:.2f} ms + {fit['slope_ms_per_position'] * 1e3:.0f} µs × t")
    ax.set_xlabel("position t of the token being generated")
    ax.set_ylabel("latency of that step (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("no KV cache: each step costs more", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax.grid(True, color="0.92", lw=0.6)
    ax = axes[1]
    n = np.arange(1, len(cum_s) + 1)
    ax.plot(n, np.array(cum_s), color="#d62728", lw=1.5, label="measured")
    ax.plot(n, cum_s[-1] * n / n[-1], ":", color="0.4", lw=1, label="if every step cost the same")
    ax.set_xlabel("tokens generated")
    ax.set_ylabel("total time (s)")
    ax.set_title("total time grows faster than linearly", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax.grid(True, color="0.92", lw=0.6)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    model = TinyGPT().to(args.device).eval()
    prompt = torch.randint(0, VOCAB, (1, PROMPT_LEN), device=args.device)  # (1, P)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    generate_no_cache(model, prompt, 8)  # warm-up
    seen, hook = count_positions(model)
    runs = []
    for _ in range(RUNS):
        seen["positions"] = 0
        out, step_s = generate_no_cache(model, prompt, N_NEW)
        sync()
        runs.append((out, step_s, seen["positions"]))
    hook.remove()

    # 1) Exactly the quadratic amount of work: sum over steps of the prefix length.
    expected_positions = N_NEW * PROMPT_LEN + N_NEW * (N_NEW - 1) // 2
    for out, _, positions_seen in runs:
        assert positions_seen == expected_positions, (positions_seen, expected_positions)
        assert torch.equal(out, runs[0][0]), "greedy decoding should be deterministic"
    cached_positions = PROMPT_LEN + N_NEW - 1  # what a KV cache would process (next page section)

    # 2) Latency per step vs position: minimum over runs per step, then median per bin.
    step_ms = np.min(np.array([r[1] for r in runs]), axis=0) * 1e3  # (N_NEW,)
    positions = np.arange(PROMPT_LEN, PROMPT_LEN + N_NEW)  # step i reads a prefix of P + i tokens, writes position P + i
    bins = []
    for s in range(0, N_NEW - BIN + 1, BIN):
        bins.append({"center_position": float(positions[s:s + BIN].mean()),
                     "median_ms": float(statistics.median(step_ms[s:s + BIN]))})
    bx = np.array([b["center_position"] for b in bins])
    by = np.array([b["median_ms"] for b in bins])
    slope, intercept = np.polyfit(bx, by, 1)
    fit = {"slope_ms_per_position": float(slope), "slope_us_per_position": float(slope * 1e3),
           "intercept_ms": float(intercept),
           "r2": float(1 - ((by - (intercept + slope * bx)) ** 2).sum() / ((by - by.mean()) ** 2).sum())}
    per_run = []  # the same fit for each run alone: how much one timing run differs from another
    for _, run_step_s, _ in runs:
        ms = np.array(run_step_s) * 1e3
        rby = np.array([statistics.median(ms[s:s + BIN]) for s in range(0, N_NEW - BIN + 1, BIN)])
        per_run.append({"slope_us_per_position": float(np.polyfit(bx, rby, 1)[0] * 1e3),
                        "tokens_per_s": N_NEW / float(ms.sum() / 1e3)})
    fit["slope_us_per_position_by_run"] = [r["slope_us_per_position"] for r in per_run]
    fit["slope_us_per_position_min"] = min(fit["slope_us_per_position_by_run"])
    fit["slope_us_per_position_max"] = max(fit["slope_us_per_position_by_run"])
    first, last = bins[0], bins[-1]
    cum_s = np.cumsum(step_ms / 1e3).tolist()  # plotted: the per-step minimum, summed
    half, third = N_NEW // 2, N_NEW // 3
    # Throughput: each run's own rate, median over runs (kv_cache.py reports it the same way).
    run_s = [np.array(r[1]) for r in runs]
    total_s = statistics.median(float(r.sum()) for r in run_s)
    late_over_early = float(np.median(step_ms[-third:]) / np.median(step_ms[:third]))  # robust to outliers
    summary = {
        "machine": {**machine_info(), "device": args.device},
        "config": {"vocab": VOCAB, "d_model": D_MODEL, "layers": N_LAYERS, "heads": N_HEADS,
                   "params": sum(p.numel() for p in model.parameters()), "prompt_len": PROMPT_LEN,
                   "new_tokens": N_NEW, "runs": RUNS, "bin": BIN, "seed": SEED,
                   "timing": "thread CPU time, one torch thread; fits: per-step minimum over runs, median per bin of "
                             "positions; tokens/s: median over runs of each run's rate"},
        "positions_processed": {"no_cache": expected_positions, "with_cache": cached_positions,
                                "ratio": expected_positions / cached_positions},
        "fit": fit,
        "first_bin": first, "last_bin": last, "last_over_first": last["median_ms"] / first["median_ms"],
        "late_over_early": late_over_early,
        "total_s": total_s,
        "tokens_per_s": {"overall": N_NEW / total_s, "overall_by_run": [r["tokens_per_s"] for r in per_run],
                         "first_half": statistics.median(half / float(r[:half].sum()) for r in run_s),
                         "second_half": statistics.median((N_NEW - half) / float(r[half:].sum()) for r in run_s)},
        "bins": bins,
    }
    (OUT / "results.json").write_text(json.dumps(summary, indent=2))
    plot(positions, bins, fit, cum_s, OUT / "latency_vs_position.svg")

    m = summary["machine"]
    print(f"TinyGPT {N_LAYERS} layers, d={D_MODEL}, {summary['config']['params'] / 1e6:.2f}M params, "
          f"prompt {PROMPT_LEN} tokens, {N_NEW} new tokens, greedy, no KV cache")
    print(f"{'position':>9} {'ms/token':>9}")
    for b in bins:
        print(f"{b['center_position']:>9.0f} {b['median_ms']:>9.2f}")
    print(f"fit: {fit['intercept_ms']:.2f} ms + {fit['slope_ms_per_position'] * 1e3:.1f} µs × position "
          f"(R² {fit['r2']:.2f}); last bin / first bin = {summary['last_over_first']:.1f}x")
    print(f"median step, last third / first third of the steps: {late_over_early:.1f}x")
    print(f"tokens/s: first half {summary['tokens_per_s']['first_half']:.0f}, "
          f"second half {summary['tokens_per_s']['second_half']:.0f}, overall {summary['tokens_per_s']['overall']:.0f}")
    print("each run alone: " + ", ".join(f"{r['slope_us_per_position']:.0f} µs/position, {r['tokens_per_s']:.0f} tokens/s"
                                          for r in per_run))
    print(f"token positions pushed through the model: {expected_positions:,} "
          f"(a KV cache would need {cached_positions:,}, {summary['positions_processed']['ratio']:.0f}x fewer)")
    print(f"machine: {m['cpu']}, {m['torch_threads']} torch thread{'' if m['torch_threads'] == 1 else 's'}, "
          f"torch {m['torch']}")

    # 3) The claims the page makes.
    assert slope > 0, f"latency should grow with position (fit {fit})"
    # the page: each step costs "a fixed part plus a part proportional to the length of the text so far"
    assert fit["r2"] > 0.9, f"a straight line should fit latency against position, R² = {fit['r2']:.2f}"
    assert intercept > 0, f"the fixed part of a step should be positive, got {intercept:.2f} ms"
    assert late_over_early > 1.5, f"the last third of steps should be clearly slower than the first, got {late_over_early:.2f}x"
    assert summary["tokens_per_s"]["second_half"] < summary["tokens_per_s"]["first_half"], "tokens/s should drop"


if __name__ == "__main__":
    main()
