"""A fix: grouped-query attention (GQA) and multi-query attention (MQA) shrink the KV cache by heads / kv_heads.

With GQA, H query heads share H_kv < H key/value heads: query heads
g*i ... g*i + g - 1 (g = H / H_kv) all read KV head i. Only the H_kv KV heads
are cached, so the cache shrinks by g; MQA is the extreme H_kv = 1.

The script checks that F.scaled_dot_product_attention(..., enable_gqa=True)
equals plain SDPA with each KV head repeated g times (repeat_interleave), and
that grouping the wrong way (tiling with .repeat) gives a different answer;
then caches the keys and values of one real attention layer for H_kv = H, 4,
2, 1 and compares the bytes its cache tensors hold with the formula; and
computes the cache of published configs with and without their GQA.

Run from the repo root:  python snippets/problems/07_high_memory_footprint/gqa.py
"""
import argparse
import json
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
GiB = 2**30
B, H, T, D = 2, 8, 64, 32  # batch, query heads, sequence length, head dim (small test case)
KV_HEADS = [8, 4, 2, 1]  # MHA, GQA-4, GQA-2, MQA

# Published configs (layers, query heads, KV heads, head dim, context).
PUBLISHED = {
    # Llama 2 (arXiv:2307.09288) Table 1 and Appendix A.2.1: the 70B model uses GQA with 8 KV heads;
    # 80 layers and 64 heads of dim 128 as LLaMA 65B (arXiv:2302.13971, Table 2) and the released params.json.
    "LLaMA-2-70B": {"layers": 80, "heads": 64, "kv_heads": 8, "head_dim": 128, "context": 4096},
    # Mistral 7B (arXiv:2310.06825), Table 1: 32 layers, 32 heads, 8 KV heads, head dim 128, context 8192.
    "Mistral-7B": {"layers": 32, "heads": 32, "kv_heads": 8, "head_dim": 128, "context": 8192},
}


def kv_cache_bytes(layers, kv_heads, head_dim, seq_len, batch=1, bytes_per_value=2):
    return 2 * layers * kv_heads * head_dim * seq_len * batch * bytes_per_value


# --8<-- [start:core]
def gqa_reference(q, k, v):
    # q: (B, H, T, d); k, v: (B, H_kv, T, d). Query head j reads KV head j // g.
    g = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(g, dim=1)  # (B, H, T, d): KV head i copied to heads g*i ... g*i+g-1
    v = v.repeat_interleave(g, dim=1)  # (B, H, T, d)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, d)


def gqa_fused(q, k, v):
    # Same maths without materialising the repeated K/V: SDPA broadcasts the groups itself.
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # (B, H, T, d)


class KVProjection(nn.Module):
    """The part of an attention layer that produces what is cached: K and V for H_kv heads."""

    def __init__(self, d_model, kv_heads, head_dim):
        super().__init__()
        self.kv_heads, self.head_dim = kv_heads, head_dim
        self.kv = nn.Linear(d_model, 2 * kv_heads * head_dim, bias=False)

    def forward(self, x):  # x: (B, T, d_model)
        b, t, _ = x.shape
        kv = self.kv(x).view(b, t, 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (2, B, H_kv, T, d)
        return kv[0], kv[1]  # (B, H_kv, T, d) each: this is what the cache stores
# --8<-- [end:core]


def machine_info(device):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": device}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    dev = args.device

    # 1) enable_gqa=True equals the explicit repeat_interleave reference; the wrong grouping does not.
    equivalence = {}
    q = torch.randn(B, H, T, D, device=dev)  # (B, H, T, d)
    for h_kv in KV_HEADS:
        k, v = (torch.randn(B, h_kv, T, D, device=dev) for _ in range(2))  # (B, H_kv, T, d) each
        ref, fused = gqa_reference(q, k, v), gqa_fused(q, k, v)
        torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
        row = {"max_abs_err_fused_vs_reference": (fused - ref).abs().max().item()}
        if 1 < h_kv < H:  # tiling (k.repeat) pairs query head j with KV head j % H_kv: a different model
            g = H // h_kv
            tiled = F.scaled_dot_product_attention(q, k.repeat(1, g, 1, 1), v.repeat(1, g, 1, 1),
                                                   is_causal=True)  # (B, H, T, d)
            row["max_abs_diff_wrong_grouping"] = (tiled - ref).abs().max().item()
            assert row["max_abs_diff_wrong_grouping"] > 1e-2, "tiled grouping should differ from the GQA convention"
        equivalence[str(h_kv)] = row

    # 2) Real cache tensors of one layer for each H_kv, against the formula.
    d_model, n_tokens = H * D, 512
    x = torch.randn(B, n_tokens, d_model, device=dev)  # (B, T, d_model)
    measured = {}
    with torch.no_grad():
        for h_kv in KV_HEADS:
            k, v = KVProjection(d_model, h_kv, D).to(dev)(x)  # (B, H_kv, T, d) each
            got = k.numel() * k.element_size() + v.numel() * v.element_size()
            want = kv_cache_bytes(1, h_kv, D, n_tokens, B, bytes_per_value=4)
            assert got == want, f"H_kv={h_kv}: cache tensors hold {got} bytes, formula says {want}"
            measured[str(h_kv)] = {"bytes": got}
    for h_kv in KV_HEADS:
        ratio = measured[str(H)]["bytes"] / measured[str(h_kv)]["bytes"]
        measured[str(h_kv)]["shrink_vs_mha"] = ratio
        assert ratio == H / h_kv, f"cache should shrink by H / H_kv = {H / h_kv}, got {ratio}"

    # 3) Published configs: cache with their GQA against the same model with full MHA and with MQA.
    published = {}
    for name, c in PUBLISHED.items():
        size = {label: kv_cache_bytes(c["layers"], h_kv, c["head_dim"], c["context"]) / GiB
                for label, h_kv in (("mha", c["heads"]), ("gqa", c["kv_heads"]), ("mqa", 1))}
        published[name] = {**c, **{f"{k}_gib_at_context": val for k, val in size.items()},
                           "gqa_saving": size["mha"] / size["gqa"]}
        assert published[name]["gqa_saving"] == c["heads"] / c["kv_heads"]

    results = {"machine": machine_info(dev), "config": {"batch": B, "heads": H, "seq_len": T, "head_dim": D,
                                                        "cache_tokens": n_tokens, "dtype": "float32"},
               "equivalence": equivalence,
               "max_abs_err_fused_vs_reference": max(r["max_abs_err_fused_vs_reference"] for r in equivalence.values()),
               # the largest output change of the tiled grouping over every H_kv where it differs, and the
               # smallest such per-case maximum (each case's own maximum is under "equivalence")
               "max_abs_diff_wrong_grouping": max(r["max_abs_diff_wrong_grouping"] for r in equivalence.values()
                                                  if "max_abs_diff_wrong_grouping" in r),
               "min_abs_diff_wrong_grouping": min(r["max_abs_diff_wrong_grouping"] for r in equivalence.values()
                                                  if "max_abs_diff_wrong_grouping" in r),
               "measured": measured, "published_fp16": published}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"SDPA enable_gqa=True vs repeat_interleave reference (B={B}, H={H}, T={T}, d={D}):")
    for h_kv, r in equivalence.items():
        extra = (f"; tiled (wrong) grouping differs by {r['max_abs_diff_wrong_grouping']:.2f}"
                 if "max_abs_diff_wrong_grouping" in r else "")
        print(f"  H_kv={h_kv}: max |fused - reference| = {r['max_abs_err_fused_vs_reference']:.1e}{extra}")
    print(f"cache of one layer, {n_tokens} tokens, batch {B}, fp32 (measured numel * element_size == formula):")
    for h_kv, r in measured.items():
        print(f"  H_kv={h_kv}: {r['bytes']:>9,} bytes, {r['shrink_vs_mha']:.0f}x smaller than MHA")
    print("published configs at full context, batch 1, fp16:")
    for name, r in published.items():
        print(f"  {name}: MHA {r['mha_gib_at_context']:.2f} GiB -> GQA ({r['kv_heads']} KV heads) "
              f"{r['gqa_gib_at_context']:.2f} GiB ({r['gqa_saving']:.0f}x) -> MQA {r['mqa_gib_at_context']:.3f} GiB")


if __name__ == "__main__":
    main()
