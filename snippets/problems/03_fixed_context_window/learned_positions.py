"""See it: a learned position table has no row for position max_len, and longer context costs a lot.

A model with learned absolute positions (BERT, GPT-2 style) owns a table
nn.Embedding(max_len, d): row p is the vector added to the token at position p.
Position max_len simply has no row, so one token too many is an IndexError,
not a slightly worse prediction. The script triggers that error and asserts it.

Then it computes, from exact formulas, what a longer context costs a
LLaMA-2-7B-sized model: attention FLOPs, KV-cache bytes and the bytes of one
layer's score matrices. The formulas are first checked on a tiny model against
torch's own FLOP counter and against the real tensors' sizes.

Run from the repo root:  python snippets/problems/03_fixed_context_window/learned_positions.py
"""
import argparse
import json
import math
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
VOCAB, D_MODEL, MAX_LEN = 1000, 64, 512  # a toy model with a 512-position table

# LLaMA-2-7B: 32 layers, 32 heads, d_model 4096, trained context 4096
# (Touvron et al. 2023, arXiv:2307.09288, Table 1 and Section 2.2). fp16 cache.
LLAMA2_7B = {"layers": 32, "heads": 32, "d_model": 4096, "context": 4096, "bytes_per_value": 2}
CONTEXTS = [4096, 8192, 32768, 131072]


# --8<-- [start:core]
class LearnedPositions(nn.Module):
    """Token embedding + a learned absolute position table (BERT / GPT-2 style)."""

    def __init__(self, vocab, d, max_len):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)  # one trained row per position 0 .. max_len-1

    def forward(self, ids):  # ids: (B, T)
        positions = torch.arange(ids.shape[1], device=ids.device)  # (T,)
        return self.tok(ids) + self.pos(positions)  # (B, T, d) + (T, d) -> (B, T, d)


def try_length(model, T, device):
    ids = torch.randint(0, VOCAB, (1, T), device=device)  # (B=1, T)
    try:
        return tuple(model(ids).shape), None
    except IndexError as err:  # position T-1 >= max_len has no row in the table
        return None, f"{type(err).__name__}: {err}"


# Exact cost of attending over a context of L tokens, per sequence:
def attention_flops(L, layers, d_model):
    """Q K^T and weights @ V: 2 matmuls of L x L x d_model multiply-adds per layer, full (non-causal)."""
    return layers * 2 * (2 * L * L * d_model)


def projection_flops(L, layers, d_model):
    """The Q, K, V and output projections: 4 matmuls of L x d_model x d_model per layer (linear in L)."""
    return layers * 4 * (2 * L * d_model * d_model)


def kv_cache_bytes(L, layers, d_model, bytes_per_value):
    """K and V for every layer and position: linear in L."""
    return 2 * layers * L * d_model * bytes_per_value


def score_bytes_one_layer(L, heads, bytes_per_value):
    """A (heads, L, L) score matrix, if one layer materialised it: quadratic in L."""
    return heads * L * L * bytes_per_value
# --8<-- [end:core]


def tiny_attention_model(x, layers):
    """A real multi-head attention stack (explicit matmuls, like a naive implementation)."""
    B, L, d = x.shape
    h = 4
    for lin_qkv, lin_o in layers:
        q, k, v = lin_qkv(x).chunk(3, dim=-1)  # 3 x (B, L, d)
        q, k, v = (t.view(B, L, h, d // h).transpose(1, 2) for t in (q, k, v))  # (B, h, L, d/h) each
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h)  # (B, h, L, L)
        ctx = scores.softmax(-1) @ v  # (B, h, L, d/h)
        x = x + lin_o(ctx.transpose(1, 2).reshape(B, L, d))  # (B, L, h, d/h) -> (B, L, d)
    return x, k, v, scores


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    # 1) The hard limit: max_len tokens work, max_len + 1 tokens raise. Always on CPU: on a GPU
    #    the same lookup fails as a device-side assert, which also breaks the CUDA context.
    model = LearnedPositions(VOCAB, D_MODEL, MAX_LEN)
    ok_shape, ok_err = try_length(model, MAX_LEN, "cpu")
    bad_shape, bad_err = try_length(model, MAX_LEN + 1, "cpu")
    assert ok_err is None and ok_shape == (1, MAX_LEN, D_MODEL), f"{MAX_LEN} tokens should fit: {ok_err}"
    assert bad_shape is None and bad_err is not None, f"{MAX_LEN + 1} tokens should raise, got shape {bad_shape}"
    assert bad_err.startswith("IndexError") and "index out of range" in bad_err, bad_err

    # 2) Check the cost formulas on a tiny model: torch's FLOP counter and real tensor sizes.
    t_layers, t_d, t_h, t_L = 2, 64, 4, 96
    layers = [(nn.Linear(t_d, 3 * t_d, bias=False).to(dev), nn.Linear(t_d, t_d, bias=False).to(dev))
              for _ in range(t_layers)]
    x = torch.randn(1, t_L, t_d, device=dev)  # (B, L, d)
    with FlopCounterMode(display=False) as counter:
        _, k, v, scores = tiny_attention_model(x, layers)
    counted = counter.get_total_flops()
    expected = attention_flops(t_L, t_layers, t_d) + projection_flops(t_L, t_layers, t_d)
    assert counted == expected, f"FLOP formula {expected} != counted {counted}"
    one_layer_kv = k.numel() * k.element_size() + v.numel() * v.element_size()
    assert one_layer_kv * t_layers == kv_cache_bytes(t_L, t_layers, t_d, k.element_size()), "KV formula wrong"
    assert scores[0].numel() * scores.element_size() == score_bytes_one_layer(t_L, t_h, 4), "score formula wrong"

    # 3) What longer context costs LLaMA-2-7B (batch 1, fp16 values).
    c = LLAMA2_7B
    rows = []
    for L in CONTEXTS:
        att = attention_flops(L, c["layers"], c["d_model"])
        proj = projection_flops(L, c["layers"], c["d_model"])
        rows.append({"context": L, "attention_tflop": att / 1e12, "projection_tflop": proj / 1e12,
                     "attention_over_projection": att / proj,
                     "kv_cache_gib": kv_cache_bytes(L, c["layers"], c["d_model"], c["bytes_per_value"]) / 2**30,
                     "score_one_layer_gib": score_bytes_one_layer(L, c["heads"], c["bytes_per_value"]) / 2**30})
    base, top = rows[0], rows[-1]
    growth = top["context"] / base["context"]
    ratios = {"context": growth,
              "attention_flops": top["attention_tflop"] / base["attention_tflop"],
              "kv_cache": top["kv_cache_gib"] / base["kv_cache_gib"],
              "score_one_layer": top["score_one_layer_gib"] / base["score_one_layer_gib"]}
    assert ratios["attention_flops"] == growth**2 and ratios["score_one_layer"] == growth**2, "should be quadratic"
    assert ratios["kv_cache"] == growth, "the KV cache should grow linearly"
    kv_per_token = kv_cache_bytes(1, c["layers"], c["d_model"], c["bytes_per_value"])
    by_L = {str(r["context"]): r for r in rows}

    results = {
        "machine": machine_info() | {"device": dev},
        "toy": {"max_len": MAX_LEN, "d_model": D_MODEL, "ok_len": MAX_LEN, "ok_shape": list(ok_shape),
                "bad_len": MAX_LEN + 1, "error": bad_err},
        "formula_check": {"tiny_layers": t_layers, "tiny_d": t_d, "tiny_len": t_L, "flops_counted": counted,
                          "flops_formula": expected},
        "llama2_7b": {**c, "kv_bytes_per_token": kv_per_token, "kv_mib_per_token": kv_per_token / 2**20,
                      "rows": rows, "by_context": by_L, "growth": ratios,
                      "breakeven_context": 2 * c["d_model"]},  # attention == projection FLOPs at L = 2 d_model
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"nn.Embedding({MAX_LEN}, {D_MODEL}) position table:")
    print(f"  {MAX_LEN} tokens -> output shape {ok_shape}")
    print(f"  {MAX_LEN + 1} tokens -> {bad_err}")
    print(f"formulas match torch's FlopCounterMode ({counted:,} FLOPs) and real tensor sizes on a tiny model")
    print(f"LLaMA-2-7B, batch 1, fp16, full attention (KV cache = {kv_per_token / 2**20:.2f} MiB per token):")
    print(f"{'context':>8} {'attn TFLOP':>11} {'proj TFLOP':>11} {'attn/proj':>9} {'KV cache GiB':>13} "
          f"{'scores/layer GiB':>17}")
    for r in rows:
        print(f"{r['context']:>8} {r['attention_tflop']:>11.1f} {r['projection_tflop']:>11.1f} "
              f"{r['attention_over_projection']:>9.1f} {r['kv_cache_gib']:>13.1f} {r['score_one_layer_gib']:>17.1f}")
    print(f"{growth:.0f}x the context: {ratios['attention_flops']:.0f}x attention FLOPs, "
          f"{ratios['kv_cache']:.0f}x KV cache, {ratios['score_one_layer']:.0f}x score memory")


if __name__ == "__main__":
    main()
