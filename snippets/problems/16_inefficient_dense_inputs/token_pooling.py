"""Fix: fewer tokens. 2x2 pooling before attention, and pooling only keys/values (PVT-style).

Two ways to cut the token count that attention sees, on a 56 x 56 token grid
(a 224 px image at patch size 4, Swin/PVT stage-1 resolution):
  * pool everything: average each 2x2 block of tokens -> N/4 tokens and
    N^2/16 scores; the output has N/4 tokens too;
  * pool keys and values only (spatial-reduction attention, as in PVT but with
    average pooling instead of a strided conv): queries stay at full resolution,
    N * N/4 scores.
Both are timed against full SDPA. Then what they lose, checked exactly:
nothing when every 2x2 block is constant, and *all* detail that averages to
zero inside a block, which the pooled model cannot see at all. On real digits
the script measures how much of the pixel variance is such detail.

Run from the repo root:  python snippets/problems/16_inefficient_dense_inputs/token_pooling.py
"""
# build: exclusive
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
G, C, HEADS = 56, 96, 3  # grid side, channels, heads (Swin-T stage 1: C=96, 3 heads; Liu et al. 2021, Sec. 3.3)


# --8<-- [start:core]
def pool_tokens(x, g):
    """Average each 2x2 block of a g x g token grid. x: (B, N, C) -> (B, N/4, C)."""
    B, N, C = x.shape
    grid = x.transpose(1, 2).reshape(B, C, g, g)  # (B, C, g, g)
    pooled = F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2)  # (B, C, g/2, g/2) -> (B, N/4, C)
    return pooled.contiguous()  # channels-last memory: SDPA on CPU is several times slower without it


def unpool_tokens(x, g):
    """Copy each pooled token back to its 2x2 block. x: (B, N/4, C) -> (B, N, C)."""
    B, n, C = x.shape
    grid = x.transpose(1, 2).reshape(B, C, g // 2, g // 2)  # (B, C, g/2, g/2)
    return F.interpolate(grid, scale_factor=2, mode="nearest").flatten(2).transpose(1, 2)  # (B, N, C)


def heads(x):  # (B, N, C) -> (B, H, N, C/H)
    B, N, C = x.shape
    return x.view(B, N, HEADS, C // HEADS).transpose(1, 2)


def merge(o):  # (B, H, N, d) -> (B, N, H*d)
    return o.transpose(1, 2).flatten(2)


def full_attention(x, qkv):  # x: (B, N, C)
    q, k, v = qkv(x).chunk(3, dim=-1)  # (B, N, C) each
    return merge(F.scaled_dot_product_attention(heads(q), heads(k), heads(v)))  # (B, N, C)


def pooled_attention(x, qkv, g):  # every token pooled: N/4 in, N/4 out
    q, k, v = qkv(pool_tokens(x, g)).chunk(3, dim=-1)  # (B, N/4, C) each
    return merge(F.scaled_dot_product_attention(heads(q), heads(k), heads(v)))  # (B, N/4, C)


def reduced_kv_attention(x, qkv, g):  # queries full, keys/values pooled: N x N/4 scores
    q, k, v = qkv(x).chunk(3, dim=-1)  # (B, N, C) each
    k, v = pool_tokens(k, g), pool_tokens(v, g)  # (B, N/4, C) each
    return merge(F.scaled_dot_product_attention(heads(q), heads(k), heads(v)))  # (B, N, C)
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


def median_ms(fns, device, rounds=8):
    """fns: {name: zero-arg callable}; interleaved rounds, round 0 is a warm-up."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = {name: [] for name in fns}
    for r in range(rounds):
        for name, f in fns.items():
            t0 = time.perf_counter()
            f()
            sync()
            if r:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    dev = ap.parse_args().device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    if dev == "cpu":
        # One thread: small kernels (windows, pooled tokens) are otherwise dominated by thread
        # synchronisation, and timings on a shared machine stay steadier. The timings and speed-ups are
        # those of one thread of this CPU; the score counts and the exactness checks hold anywhere.
        torch.set_num_threads(1)
    N = G * G
    qkv = nn.Linear(C, 3 * C).to(dev)
    x = torch.randn(1, N, C, device=dev)  # (B, N, C)

    # --8<-- [start:loses]
    # Pooling commutes with the (linear) q/k/v projection: pool-then-project == project-then-pool.
    torch.testing.assert_close(qkv(pool_tokens(x, G)), pool_tokens(qkv(x), G))
    # Nothing is lost when every 2x2 block is constant: 4 equal keys share the weight one would get.
    x_flat = unpool_tokens(pool_tokens(x, G), G)  # (B, N, C), block-constant
    torch.testing.assert_close(unpool_tokens(pooled_attention(x_flat, qkv, G), G), full_attention(x_flat, qkv))
    torch.testing.assert_close(reduced_kv_attention(x_flat, qkv, G), full_attention(x_flat, qkv))
    # Everything that averages to zero inside a block is lost: the pooled model cannot see it.
    detail = x - x_flat  # (B, N, C): zero mean in every 2x2 block
    torch.testing.assert_close(pool_tokens(x_flat + 3 * detail, G), pool_tokens(x_flat, G))
    seen_by_full = (full_attention(x_flat + detail, qkv) - full_attention(x_flat, qkv)).abs().max().item()
    seen_by_pooled = (pooled_attention(x_flat + detail, qkv, G) - pooled_attention(x_flat, qkv, G)).abs().max().item()
    assert seen_by_full > 1e-2 and seen_by_pooled < 1e-5, "only full attention should see in-block detail"
    # --8<-- [end:loses]

    # How much of a real image is in-block detail? sklearn's 8x8 digits, 2x2 blocks.
    img = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1)  # (1797, 1, 8, 8)
    flat = F.interpolate(F.avg_pool2d(img, 2), scale_factor=2, mode="nearest")  # (1797, 1, 8, 8) block means
    centred = img - img.mean(dim=(2, 3), keepdim=True)
    detail_share = ((img - flat) ** 2).sum().item() / (centred ** 2).sum().item()
    assert 0.2 < detail_share < 0.8, "digits have both coarse structure and in-block detail (the page: not small)"

    # Speed: attention alone, at the Swin/PVT stage-1 grid.
    ms = median_ms({"full": lambda: full_attention(x, qkv),
                    "pooled_all": lambda: pooled_attention(x, qkv, G),
                    "pooled_kv": lambda: reduced_kv_attention(x, qkv, G)}, dev)
    speedup = {"pooled_all": ms["full"] / ms["pooled_all"], "pooled_kv": ms["full"] / ms["pooled_kv"]}
    scores = {"full": N * N, "pooled_all": (N // 4) ** 2, "pooled_kv": N * (N // 4)}
    if dev == "cpu":  # on a GPU this size is launch-latency bound
        assert speedup["pooled_all"] > 4, f"pooling all tokens should be much faster, got {speedup['pooled_all']:.1f}x"
        assert speedup["pooled_kv"] > 1.5, f"pooling keys/values should be faster, got {speedup['pooled_kv']:.1f}x"

    results = {"machine": {**machine_info(), "device": dev},
               "config": {"grid": G, "tokens": N, "channels": C, "heads": HEADS, "batch": 1, "pool": 2},
               "ms": ms, "speedup": speedup, "scores": scores,
               "scores_ratio": {k: scores["full"] / v for k, v in scores.items() if k != "full"},
               "detail": {"max_change_full": seen_by_full, "max_change_pooled": seen_by_pooled,
                          "digits_variance_share_in_block_detail": detail_share}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"{G}x{G} = {N} tokens, C={C}, {HEADS} heads, batch 1 (q/k/v projection included)")
    print(f"{'':<26} {'scores/head':>12} {'ms':>8} {'speedup':>8}")
    for name, label in (("full", "full attention"), ("pooled_all", "2x2-pooled tokens"),
                        ("pooled_kv", "2x2-pooled keys/values")):
        sp = f"{speedup[name]:.1f}x" if name in speedup else "1.0x"
        print(f"{label:<26} {scores[name]:>12,} {ms[name]:>8.2f} {sp:>8}")
    print(f"in-block detail: changes full attention by up to {seen_by_full:.2f}, pooled attention by "
          f"{seen_by_pooled:.1e}")
    print(f"8x8 digits: {detail_share:.1%} of pixel variance lies inside 2x2 blocks (lost by pooling)")
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['torch_threads']} thread(s), torch {m['torch']}")


if __name__ == "__main__":
    main()
