"""See it: with a KV cache, each new token still costs more the further into the stream it is.

A transformer has no fixed-size state: to produce token t it reads the keys
and values of all t earlier tokens (the KV cache). This script builds a small
2-layer decoder with a preallocated KV cache, checks that cached one-token-at-
a-time decoding equals the parallel causal forward pass, then

- counts the exact FLOPs of one decoding step at growing positions
  (torch.utils.flop_counter, checked against the formula 24 d^2 + 4 t d per layer),
- times one decoding step at those positions (CPU time of the single thread
  that runs it, median of repeats, all positions interleaved), and
- reports the KV cache bytes, which grow linearly with the stream.

To reach position t without decoding t tokens first, the cache is filled
with random keys and values: a step's cost does not depend on their values.

Run from the repo root:  python snippets/problems/12_no_recurrence_streaming/kv_cache_decode.py
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
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
LAYERS, D, H = 2, 256, 4  # a small decoder: 2 layers, width 256, 4 heads of 64
POSITIONS = [512, 2048, 8192, 32768]  # cached tokens before the step being timed
REPEATS = 15
N_FIT = 3
THREADS = 1  # one decoding step is a handful of small ops: one thread gives stable timings

# LLaMA-2-7B: 32 layers, d_model 4096 (Touvron et al. 2023, arXiv:2302.13971, Table 2), fp16 cache.
LLAMA2_7B = {"layers": 32, "d_model": 4096, "bytes_per_value": 2}


# --8<-- [start:core]
class CachedDecoder(nn.Module):
    """Pre-norm decoder layers; decode_step appends one token's K/V to a preallocated cache."""

    def __init__(self, layers, d, h, max_len):
        super().__init__()
        self.h = h
        self.qkv = nn.ModuleList(nn.Linear(d, 3 * d) for _ in range(layers))
        self.o = nn.ModuleList(nn.Linear(d, d) for _ in range(layers))
        self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
                                 for _ in range(layers))
        self.norm1 = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))
        self.norm2 = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))
        # The whole "state" of a transformer: K and V of every past token, per layer.
        self.register_buffer("k_cache", torch.zeros(layers, 1, h, max_len, d // h))  # (L, B, H, T_max, d/h)
        self.register_buffer("v_cache", torch.zeros(layers, 1, h, max_len, d // h))  # (L, B, H, T_max, d/h)

    def split(self, x):  # (B, T, d) -> (B, H, T, d/h)
        return x.view(x.shape[0], x.shape[1], self.h, -1).transpose(1, 2)  # (B, T, H, d/h) -> (B, H, T, d/h)

    @torch.no_grad()
    def decode_step(self, x, t):
        """x: (1, 1, d), the token at position t; the cache already holds positions 0 .. t-1."""
        for i in range(len(self.qkv)):
            q, k, v = self.qkv[i](self.norm1[i](x)).chunk(3, dim=-1)  # 3 x (1, 1, d)
            self.k_cache[i, :, :, t] = self.split(k)[:, :, 0]  # write position t: (1, H, d/h)
            self.v_cache[i, :, :, t] = self.split(v)[:, :, 0]
            K, V = self.k_cache[i, :, :, : t + 1], self.v_cache[i, :, :, : t + 1]  # (1, H, t+1, d/h) each
            s = self.split(q) @ K.transpose(-2, -1) / math.sqrt(K.shape[-1])  # (1, H, 1, t+1): grows with t
            a = s.softmax(-1) @ V  # (1, H, 1, d/h): reads all t+1 cached values
            x = x + self.o[i](a.transpose(1, 2).reshape(x.shape))  # (1, 1, H, d/h) -> (1, 1, d)
            x = x + self.mlp[i](self.norm2[i](x))  # (1, 1, d)
        return x

    def forward(self, x):
        """Reference: the parallel causal forward pass over a whole sequence x: (1, T, d)."""
        for i in range(len(self.qkv)):
            q, k, v = (self.split(t) for t in self.qkv[i](self.norm1[i](x)).chunk(3, dim=-1))  # (1, H, T, d/h)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (1, H, T, d/h)
            x = x + self.o[i](a.transpose(1, 2).reshape(x.shape))  # (1, T, H, d/h) -> (1, T, d)
            x = x + self.mlp[i](self.norm2[i](x))  # (1, T, d)
        return x


def step_flops(t, layers, d):
    """Matmul FLOPs of one step at position t (t+1 keys): qkv 6d^2 + out 2d^2 + MLP 16d^2 + attention 4(t+1)d."""
    return layers * (24 * d * d + 4 * (t + 1) * d)


def kv_cache_bytes(tokens, layers, d, bytes_per_value):
    return 2 * layers * tokens * d * bytes_per_value  # K and V, every layer, every token
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
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    t = np.array([r["position"] for r in rows], dtype=float) / 1e3
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    ax = axes[0]
    l1 = ax.plot(t, [r["step_ms"] for r in rows], "o-", color="#d62728", ms=4, label="measured time (left axis)")
    ax.set_ylabel("time per decoding step (ms)")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    l2 = ax2.plot(t, [r["step_mflop"] for r in rows], "s--", color="0.45", ms=3, lw=0.9,
                  label="exact FLOPs (right axis)")
    ax2.set_ylabel("MFLOP per step")
    ax2.set_ylim(bottom=0)
    ax.set_title("cost of one new token vs its position", fontsize=9)
    ax.legend(l1 + l2, [ln.get_label() for ln in l1 + l2], fontsize=7, frameon=False, loc="upper left")
    ax.grid(True, color="0.9", lw=0.6)
    ax = axes[1]
    ax.plot(t, [r["kv_cache_mib"] for r in rows], "o-", color="#1f77b4", ms=4)
    ax.set_ylabel("KV cache (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("state kept: the KV cache", fontsize=9)
    ax.grid(True, color="0.9", lw=0.6)
    for a in axes:
        a.set_xlabel("position in the stream (thousand tokens)")
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
    torch.set_num_threads(THREADS)
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    # On CPU with one thread, the op runs in this thread: its CPU time is what the step costs,
    # and other processes competing for the cores do not inflate it (wall time on a GPU).
    clock = time.perf_counter if dev.startswith("cuda") else time.thread_time
    model = CachedDecoder(LAYERS, D, H, POSITIONS[-1] + 1).to(dev).eval()

    # 1) Cached decoding, one token at a time == the parallel causal forward pass.
    xs = torch.randn(1, 48, D, device=dev)  # (1, T, d)
    steps = torch.cat([model.decode_step(xs[:, t : t + 1], t) for t in range(xs.shape[1])], dim=1)  # (1, T, d)
    with torch.no_grad():
        torch.testing.assert_close(steps, model(xs), rtol=1e-4, atol=1e-4)
    err = (steps - model(xs)).abs().max().item()

    # 2) Fill the cache with random K/V (values do not change the cost), then count and time one step per position.
    model.k_cache.normal_()
    model.v_cache.normal_()
    x = torch.randn(1, 1, D, device=dev)  # (1, 1, d)
    flops = {}
    for t in POSITIONS:
        with FlopCounterMode(display=False) as counter:
            model.decode_step(x, t)
        flops[t] = counter.get_total_flops()
        assert flops[t] == step_flops(t, LAYERS, D), f"FLOPs at t={t}: counted {flops[t]}, formula {step_flops(t, LAYERS, D)}"
    times = {t: [] for t in POSITIONS}
    for r in range(REPEATS + 2):  # rounds interleave the positions; the first 2 are warm-up
        for t in POSITIONS:
            sync()
            t0 = clock()
            model.decode_step(x, t)
            sync()
            if r >= 2:
                times[t].append(clock() - t0)

    rows = []
    for t in POSITIONS:
        rows.append({"position": t, "step_ms": statistics.median(times[t]) * 1e3, "step_mflop": flops[t] / 1e6,
                     "attention_share_of_flops": LAYERS * 4 * (t + 1) * D / flops[t],
                     "kv_cache_mib": kv_cache_bytes(t + 1, LAYERS, D, 4) / 2**20})
    # The real cache tensors agree with the formula (fp32 here).
    used = sum(c[:, :, :, : POSITIONS[-1] + 1].numel() * c.element_size() for c in (model.k_cache, model.v_cache))
    assert used == kv_cache_bytes(POSITIONS[-1] + 1, LAYERS, D, 4), "KV cache bytes differ from the formula"
    fit_t = POSITIONS[-N_FIT:]
    slope = float(np.polyfit(np.log(fit_t), np.log([r["step_ms"] for r in rows[-N_FIT:]]), 1)[0])
    first, last = rows[0], rows[-1]
    llama_per_token = kv_cache_bytes(1, LLAMA2_7B["layers"], LLAMA2_7B["d_model"], LLAMA2_7B["bytes_per_value"])
    results = {"machine": machine_info() | {"device": dev},
               "config": {"layers": LAYERS, "d_model": D, "heads": H, "positions": POSITIONS, "repeats": REPEATS,
                          "timing": "median of repeats after warm-up, positions interleaved",
                          "clock": "wall (perf_counter)" if dev.startswith("cuda") else "thread CPU time (thread_time)",
                          "threads": THREADS},
               "max_abs_err_cached_vs_parallel": err, "rows": rows,
               "by_position": {str(r["position"]): r for r in rows},
               "fit": {"points": fit_t, "time_exponent": slope},
               "last_over_first": {"positions": last["position"] / first["position"],
                                   "time": last["step_ms"] / first["step_ms"],
                                   "flops": last["step_mflop"] / first["step_mflop"]},
               "llama2_7b_kv_mib_per_token": llama_per_token / 2**20,
               "llama2_7b_kv_gib_at_100k_tokens": 100_000 * llama_per_token / 2**30}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(rows, OUT / "decode_cost.svg")

    print(f"{LAYERS}-layer decoder, d={D}, {H} heads, fp32, device={dev}; step time = {results['config']['clock']}")
    print(f"cached decoding == parallel causal forward: max |diff| {err:.1e}")
    print(f"{'position':>9} {'step ms':>8} {'MFLOP':>7} {'attn share':>10} {'KV MiB':>8}")
    for r in rows:
        print(f"{r['position']:>9} {r['step_ms']:>8.2f} {r['step_mflop']:>7.1f} "
              f"{r['attention_share_of_flops']:>10.0%} {r['kv_cache_mib']:>8.1f}")
    print(f"time per step grows as t^{slope:.2f} (fit on t = {fit_t}); "
          f"{results['last_over_first']['positions']:.0f}x the position costs "
          f"{results['last_over_first']['time']:.1f}x the time, {results['last_over_first']['flops']:.1f}x the FLOPs")
    print(f"LLaMA-2-7B fp16 KV cache: {results['llama2_7b_kv_mib_per_token']:.2f} MiB per token, "
          f"{results['llama2_7b_kv_gib_at_100k_tokens']:.1f} GiB after 100,000 tokens")
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['torch_threads']} torch thread{'' if m['torch_threads'] == 1 else 's'}, torch {m['torch']}")

    # The claims the page makes.
    if dev == "cpu":  # a GPU is launch-bound at these sizes
        assert 0.5 <= slope <= 1.3, f"per-step time should grow about linearly at large t, got t^{slope:.2f}"
        assert last["step_ms"] > 3 * first["step_ms"], "a step deep in the stream should cost clearly more"


if __name__ == "__main__":
    main()
