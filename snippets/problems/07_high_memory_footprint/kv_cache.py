"""See it: the KV cache costs 2 * layers * kv_heads * head_dim * bytes per token, and grows linearly.

During generation a decoder keeps the keys and values of every past token in
every layer, so it never recomputes them. This script

1. computes the cache size of three published models from their configs;
2. builds a small GQA decoder with a real KV cache, generates tokens, and
   checks that the bytes its cache tensors actually hold (numel * element_size)
   equal the formula exactly, in fp32 and bf16, and that cached decoding gives
   the same logits as recomputing the whole sequence;
3. measures how the cache grows with sequence length: linearly, not
   quadratically.

Run from the repo root:  python snippets/problems/07_high_memory_footprint/kv_cache.py
"""
import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
GiB = 2**30

# Published configs. layers / query heads / KV heads / head dim.
CONFIGS = {
    # LLaMA-2-7B: d_model 4096, 32 heads, 32 layers (Touvron et al. 2023a, LLaMA, arXiv:2302.13971,
    # Table 2, 6.7B row; Llama 2 keeps that architecture); no GQA at 7B (Llama 2, arXiv:2307.09288,
    # Table 1); context 4096 (Llama 2, Table 1).
    "LLaMA-2-7B": {"layers": 32, "heads": 32, "kv_heads": 32, "head_dim": 128, "context": 4096},
    # LLaMA-2-70B: GQA with 8 KV heads (Llama 2, Table 1 and Appendix A.2.1). 80 layers,
    # d_model 8192 and 64 heads as LLaMA 65B (LLaMA, Table 2) and the released params.json.
    "LLaMA-2-70B": {"layers": 80, "heads": 64, "kv_heads": 8, "head_dim": 128, "context": 4096},
    # Mistral 7B: 32 layers, 32 heads, 8 KV heads, head dim 128, window 4096, context 8192
    # (Jiang et al. 2023, arXiv:2310.06825, Table 1).
    "Mistral-7B": {"layers": 32, "heads": 32, "kv_heads": 8, "head_dim": 128, "context": 8192, "window": 4096},
}


# --8<-- [start:formula]
def kv_cache_bytes(layers, kv_heads, head_dim, seq_len, batch=1, bytes_per_value=2):
    """Bytes of the KV cache: one K and one V vector per layer, KV head, position and sequence."""
    return 2 * layers * kv_heads * head_dim * seq_len * batch * bytes_per_value
# --8<-- [end:formula]


# --8<-- [start:core]
class CachedAttention(nn.Module):
    """Causal self-attention with grouped KV heads and a KV cache."""

    def __init__(self, d_model, heads, kv_heads):
        super().__init__()
        self.h, self.h_kv, self.d_head = heads, kv_heads, d_model // heads
        self.q = nn.Linear(d_model, heads * self.d_head, bias=False)
        self.kv = nn.Linear(d_model, 2 * kv_heads * self.d_head, bias=False)
        self.o = nn.Linear(heads * self.d_head, d_model, bias=False)

    def forward(self, x, cache=None):
        B, T, _ = x.shape  # x: (B, T, d_model), T new tokens
        q = self.q(x).view(B, T, self.h, self.d_head).transpose(1, 2)  # (B, H, T, d)
        kv = self.kv(x).view(B, T, 2, self.h_kv, self.d_head).permute(2, 0, 3, 1, 4)  # (2, B, H_kv, T, d)
        k, v = kv[0], kv[1]  # (B, H_kv, T, d) each
        first = cache is None or "k" not in cache
        if cache is not None:  # append the new keys/values; the cache keeps every past token
            if not first:
                k = torch.cat([cache["k"], k], dim=2)  # (B, H_kv, T_past + T, d)
                v = torch.cat([cache["v"], v], dim=2)  # (B, H_kv, T_past + T, d)
            cache["k"], cache["v"] = k, v
        # New queries see all cached keys; within a prefill chunk, causally.
        out = F.scaled_dot_product_attention(q, k, v, is_causal=first and T > 1, enable_gqa=True)  # (B, H, T, d)
        return self.o(out.transpose(1, 2).reshape(B, T, -1))  # (B, H, T, d) -> (B, T, H, d) -> (B, T, d_model)


class Decoder(nn.Module):
    def __init__(self, vocab, d_model, layers, heads, kv_heads):
        super().__init__()
        self.emb = nn.Embedding(vocab, d_model)
        self.attn = nn.ModuleList(CachedAttention(d_model, heads, kv_heads) for _ in range(layers))
        self.mlp = nn.ModuleList(nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                               nn.Linear(4 * d_model, d_model)) for _ in range(layers))
        self.norm = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(layers))
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, ids, caches=None):  # ids: (B, T); caches: one dict per layer, or None
        x = self.emb(ids)  # (B, T, d_model)
        for i, (attn, norm, mlp) in enumerate(zip(self.attn, self.norm, self.mlp)):
            x = x + attn(norm(x), None if caches is None else caches[i])
            x = x + mlp(x)
        return self.head(x)  # (B, T, vocab)


def cache_bytes_measured(caches):
    """What the cache tensors really hold: numel * element_size, summed over layers, K and V."""
    return sum(c[name].numel() * c[name].element_size() for c in caches for name in ("k", "v"))
# --8<-- [end:core]


def generate_and_measure(model, prompt, steps, dtype, check_every):
    """Greedy decoding with the cache. Returns [(seq_len, measured bytes)] and the max logit error."""
    caches = [{} for _ in model.attn]
    ids = prompt
    logits = model(ids, caches)[:, -1]  # prefill: (B, vocab)
    points, max_err = [(ids.shape[1], cache_bytes_measured(caches))], 0.0
    for step in range(steps):
        nxt = logits.argmax(-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, nxt], dim=1)  # (B, T + 1)
        logits = model(nxt, caches)[:, -1]  # one new token through the cache: (B, vocab)
        points.append((ids.shape[1], cache_bytes_measured(caches)))
        if (step + 1) % check_every == 0 or step == steps - 1:
            full = model(ids)[:, -1]  # recompute everything without a cache: (B, vocab)
            tol = 1e-4 if dtype == torch.float32 else 5e-2
            torch.testing.assert_close(logits.float(), full.float(), rtol=tol, atol=tol)
            max_err = max(max_err, (logits.float() - full.float()).abs().max().item())
    return points, max_err


def machine_info(device):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": device}


def plot(published, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
                         "savefig.transparent": False})
    ns = np.linspace(0, 32768, 129)
    fig, ax = plt.subplots(figsize=(6.4, 3.3))
    colors = {"LLaMA-2-7B": "#d62728", "LLaMA-2-70B": "#1f77b4", "Mistral-7B": "#2ca02c"}
    for name, cfg in CONFIGS.items():
        gib = [kv_cache_bytes(cfg["layers"], cfg["kv_heads"], cfg["head_dim"], n) / GiB for n in ns]
        ax.plot(ns, gib, color=colors[name], label=f"{name} ({cfg['layers']} layers, {cfg['kv_heads']} KV heads)")
        at_ctx = kv_cache_bytes(cfg["layers"], cfg["kv_heads"], cfg["head_dim"], cfg["context"]) / GiB
        ax.plot([cfg["context"]], [at_ctx], "o", color=colors[name], ms=4)  # one sequence at full context
        if "window" in cfg:
            one_seq = ns[ns <= cfg["context"]]  # a single sequence up to its context length
            rolled = [kv_cache_bytes(cfg["layers"], cfg["kv_heads"], cfg["head_dim"], min(n, cfg["window"])) / GiB
                      for n in one_seq]
            ax.plot(one_seq, rolled, "--", color=colors[name], lw=1.5,
                    label=f"{name}, one sequence, rolling buffer (window {cfg['window']})")
    ax.set_xlabel("tokens cached = sequence length × batch size   (dots: one sequence at full context)")
    ax.set_ylabel("KV cache, fp16 (GiB)")
    ax.set_xlim(0, ns[-1])
    ax.set_ylim(0, None)
    ax.set_xticks([0, 4096, 8192, 16384, 32768])
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax.set_title("KV cache of published configs: straight lines, i.e. linear in N", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    # 1) Published configs, fp16/bf16 (2 bytes per value), batch 1.
    published = {}
    for name, cfg in CONFIGS.items():
        per_token = kv_cache_bytes(cfg["layers"], cfg["kv_heads"], cfg["head_dim"], 1)
        row = {"per_token_kib": per_token / 1024,
               "at_context_gib": kv_cache_bytes(cfg["layers"], cfg["kv_heads"], cfg["head_dim"], cfg["context"]) / GiB,
               "at_context_batch32_gib": kv_cache_bytes(cfg["layers"], cfg["kv_heads"], cfg["head_dim"],
                                                        cfg["context"], batch=32) / GiB,
               "context": cfg["context"], "kv_heads": cfg["kv_heads"], "heads": cfg["heads"],
               "layers": cfg["layers"], "head_dim": cfg["head_dim"]}
        if "window" in cfg:  # rolling buffer: only the last `window` positions are kept
            row["rolling_at_context_gib"] = kv_cache_bytes(cfg["layers"], cfg["kv_heads"], cfg["head_dim"],
                                                           min(cfg["context"], cfg["window"])) / GiB
            row["rolling_saving_at_context"] = cfg["context"] / min(cfg["context"], cfg["window"])
        published[name] = row

    # 2) A small decoder's real cache against the formula.
    small = {"vocab": 256, "d_model": 128, "layers": 4, "heads": 8, "kv_heads": 2, "batch": 2,
             "prompt": 16, "steps": 112, "check_every": 16}
    d_head = small["d_model"] // small["heads"]
    model = Decoder(small["vocab"], small["d_model"], small["layers"], small["heads"], small["kv_heads"])
    model = model.to(args.device).eval()
    prompt = torch.randint(0, small["vocab"], (small["batch"], small["prompt"]), device=args.device)  # (B, T0)
    measured = {}
    with torch.no_grad():
        for dtype in (torch.float32, torch.bfloat16):
            m = model.to(dtype)
            points, max_err = generate_and_measure(m, prompt, small["steps"], dtype, small["check_every"])
            bpv = torch.empty((), dtype=dtype).element_size()
            for n, got in points:
                want = kv_cache_bytes(small["layers"], small["kv_heads"], d_head, n, small["batch"], bpv)
                assert got == want, f"{dtype}: cache holds {got} bytes at N={n}, formula says {want}"
            measured[str(dtype).replace("torch.", "")] = {
                "bytes_per_value": bpv, "points": [[n, b] for n, b in points],
                "max_abs_logit_err_vs_no_cache": max_err, "formula_matches_all_points": True}
        model.float()

    # 3) Growth: fit bytes ~ N^k over the measured points, and the doubling ratio.
    pts = np.array(measured["float32"]["points"], dtype=float)
    exponent = float(np.polyfit(np.log(pts[:, 0]), np.log(pts[:, 1]), 1)[0])
    by_n = {int(n): int(b) for n, b in pts}
    doubling = {f"n{n}_to_n{2 * n}": by_n[2 * n] / by_n[n] for n in (16, 32, 64) if 2 * n in by_n}
    assert abs(exponent - 1.0) < 1e-6, f"cache should grow as N^1, got N^{exponent:.4f}"
    assert all(abs(r - 2.0) < 1e-12 for r in doubling.values()), f"doubling N should double the cache: {doubling}"
    assert all(abs(r - 4.0) > 1.0 for r in doubling.values()), "a quadratic cache would give ratio 4"

    results = {"machine": machine_info(args.device), "published_fp16": published,
               "small_model": {**small, "d_head": d_head, "measured": measured},
               "growth": {"fit_exponent": exponent, "doubling_ratios": doubling,
                          "min_n": int(pts[0, 0]), "max_n": int(pts[-1, 0])}}
    l7, l70, mis = (published[k] for k in ("LLaMA-2-7B", "LLaMA-2-70B", "Mistral-7B"))
    # LLaMA-2-7B weights for scale: 32000-token vocabulary, untied head, SwiGLU FFN of 11008
    # (released checkpoint), RMSNorm weights: 6,738,415,616 parameters.
    d, ffn, vocab = 4096, 11008, 32000
    llama7b_params = 2 * vocab * d + d + 32 * (4 * d * d + 3 * d * ffn + 2 * d)
    assert llama7b_params == 6_738_415_616, "released LLaMA-2-7B size"
    weights_bytes = 2 * llama7b_params  # fp16
    results["compare"] = {"llama70b_over_llama7b_per_token": l70["per_token_kib"] / l7["per_token_kib"],
                          "llama70b_mha_equivalent_gib": l70["at_context_gib"] * l70["heads"] / l70["kv_heads"],
                          "llama7b_weights_fp16_gib": weights_bytes / GiB,
                          "llama7b_tokens_to_match_weights": weights_bytes / (l7["per_token_kib"] * 1024),
                          "llama7b_batch32_cache_over_weights": l7["at_context_batch32_gib"] * GiB / weights_bytes}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(published, OUT / "published.svg")

    print("KV cache of published configs, fp16, batch 1:")
    print(f"{'model':<12} {'layers':>6} {'KV heads':>8} {'KiB/token':>10} {'context':>8} {'GiB at ctx':>10} "
          f"{'GiB, batch 32':>13}")
    for name, r in published.items():
        print(f"{name:<12} {r['layers']:>6} {r['kv_heads']:>8} {r['per_token_kib']:>10.0f} {r['context']:>8} "
              f"{r['at_context_gib']:>10.2f} {r['at_context_batch32_gib']:>13.1f}")
    print(f"Mistral-7B rolling buffer at {mis['context']} tokens: {mis['rolling_at_context_gib']:.2f} GiB "
          f"({mis['rolling_saving_at_context']:.0f}x less)")
    cmp = results["compare"]
    print(f"LLaMA-2-7B fp16 weights: {cmp['llama7b_weights_fp16_gib']:.2f} GiB = the cache of "
          f"{cmp['llama7b_tokens_to_match_weights']:,.0f} tokens; batch 32 at full context: "
          f"{cmp['llama7b_batch32_cache_over_weights']:.1f}x the weights")
    print(f"\nsmall decoder: {small['layers']} layers, {small['heads']} heads, {small['kv_heads']} KV heads, "
          f"head dim {d_head}, batch {small['batch']}")
    for dt, m in measured.items():
        (n0, b0), (n1, b1) = m["points"][0], m["points"][-1]
        print(f"  {dt:<8}: N={n0}: {b0:,} B ... N={n1}: {b1:,} B; formula == numel*element_size at all "
              f"{len(m['points'])} lengths; max |cached - recomputed logits| = {m['max_abs_logit_err_vs_no_cache']:.1e}")
    print(f"growth: fitted exponent {exponent:.4f}; doubling N multiplies the cache by "
          + ", ".join(f"{r:.1f}" for r in doubling.values()) + " (quadratic would be 4)")


if __name__ == "__main__":
    main()
