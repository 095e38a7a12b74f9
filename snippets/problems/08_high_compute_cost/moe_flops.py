"""A fix: a sparse mixture of experts pays FLOPs for the experts a token uses, not for all it stores.

A router picks the top-k of E expert feed-forward blocks for each token; only
those k run. The script builds such a layer, checks its output against a dense
reference that runs every expert and zeroes the unused ones, counts FLOPs
with FlopCounterMode for k = 1, 2, 4, 8 of E = 8 (they grow with k while the
parameter count stays fixed), and computes total and active parameters of a
published MoE, Mixtral 8x7B, from its config.

Run from the repo root:  python snippets/problems/08_high_compute_cost/moe_flops.py
"""
import argparse
import json
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
D_MODEL, D_FF, N_EXPERTS = 64, 256, 8
B, T = 4, 64  # batch, sequence length
TOP_KS = [1, 2, 4, 8]

# Mixtral 8x7B (Jiang et al. 2024, arXiv:2401.04088, Table 1): dim 4096, 32 layers, 32 heads of 128,
# 8 KV heads, SwiGLU experts of hidden size 14336, vocab 32000, 8 experts, top-2.
MIXTRAL = {"dim": 4096, "layers": 32, "heads": 32, "kv_heads": 8, "head_dim": 128, "hidden": 14336,
           "vocab": 32000, "experts": 8, "top_k": 2}


# --8<-- [start:core]
class MoE(nn.Module):
    def __init__(self, d_model, d_ff, n_experts, top_k):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model)) for _ in range(n_experts))

    def gates(self, x):  # x: (N, d) -> top-k weights (N, k) and expert ids (N, k)
        logits, idx = self.router(x).topk(self.top_k, dim=-1)  # (N, k) each
        return logits.softmax(dim=-1), idx  # renormalised over the chosen k

    def forward(self, x):  # x: (B, T, d)
        b, t, d = x.shape
        x = x.reshape(b * t, d)  # (N, d), N = B*T tokens
        w, idx = self.gates(x)
        out = torch.zeros_like(x)  # (N, d)
        for e, expert in enumerate(self.experts):
            tok, slot = (idx == e).nonzero(as_tuple=True)  # the tokens routed to expert e
            if tok.numel():
                out.index_add_(0, tok, w[tok, slot, None] * expert(x[tok]))  # run e on its tokens only
        return out.reshape(b, t, d)  # (B, T, d)


def moe_dense_reference(moe, x):
    """Every expert on every token; the gate matrix is zero outside each token's top-k."""
    b, t, d = x.shape
    x = x.reshape(b * t, d)  # (N, d)
    w, idx = moe.gates(x)
    gate = torch.zeros(x.shape[0], len(moe.experts), device=x.device).scatter(1, idx, w)  # (N, E)
    outs = torch.stack([expert(x) for expert in moe.experts], dim=1)  # (N, E, d)
    return (gate[:, :, None] * outs).sum(dim=1).reshape(b, t, d)  # (B, T, d)
# --8<-- [end:core]


def mixtral_params(c):
    attn = c["dim"] * c["heads"] * c["head_dim"] * 2 + c["dim"] * c["kv_heads"] * c["head_dim"] * 2  # q, o, k, v
    expert = 3 * c["dim"] * c["hidden"]  # SwiGLU: w1, w2, w3
    per_layer_shared = attn + c["dim"] * c["experts"] + 2 * c["dim"]  # + router + two RMSNorm weights
    embed = 2 * c["vocab"] * c["dim"] + c["dim"]  # input embedding, untied output head, final norm
    total = c["layers"] * (per_layer_shared + c["experts"] * expert) + embed
    active = c["layers"] * (per_layer_shared + c["top_k"] * expert) + embed
    return {"total": total, "active": active, "expert": expert, "attention_per_layer": attn}


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
    x = torch.randn(B, T, D_MODEL, device=dev)  # (B, T, d)
    n_tokens = B * T

    expert_params = 2 * D_MODEL * D_FF + D_FF + D_MODEL  # two Linear layers with biases
    rows = {}
    for k in TOP_KS:
        torch.manual_seed(SEED)
        moe = MoE(D_MODEL, D_FF, N_EXPERTS, k).to(dev)
        with torch.no_grad():
            with FlopCounterMode(display=False) as counter:
                y = moe(x)
            flops = counter.get_total_flops()
            with FlopCounterMode(display=False) as counter:
                ref = moe_dense_reference(moe, x)
            dense_flops = counter.get_total_flops()
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
        total_params = sum(p.numel() for p in moe.parameters())
        router_flops = 2 * n_tokens * D_MODEL * N_EXPERTS
        expected = router_flops + n_tokens * k * 2 * (2 * D_MODEL * D_FF)  # each routed token: two matmuls
        assert flops == expected, f"k={k}: counted {flops}, expected {expected}"
        rows[str(k)] = {"flops": flops, "dense_reference_flops": dense_flops, "total_params": total_params,
                        "active_params_per_token": D_MODEL * N_EXPERTS + k * expert_params,
                        "max_abs_err_vs_dense": (y - ref).abs().max().item(),
                        "flops_per_token": flops / n_tokens}
    base = rows["1"]
    for k in TOP_KS:
        r = rows[str(k)]
        r["expert_flops_over_k1"] = (r["flops"] - 2 * n_tokens * D_MODEL * N_EXPERTS) / (
            base["flops"] - 2 * n_tokens * D_MODEL * N_EXPERTS)
        assert r["expert_flops_over_k1"] == k, "expert FLOPs should be proportional to k"
        assert r["total_params"] == base["total_params"], "parameters do not depend on k"
    top2 = rows["2"]
    assert top2["dense_reference_flops"] > 3.5 * top2["flops"], "dense over all 8 experts should cost ~4x top-2"

    mix = mixtral_params(MIXTRAL)
    assert round(mix["total"] / 1e9) == 47 and round(mix["active"] / 1e9) == 13, mix  # paper: 47B, 13B active

    results = {"machine": machine_info(dev),
               "config": {"d_model": D_MODEL, "d_ff": D_FF, "experts": N_EXPERTS, "tokens": n_tokens},
               "by_top_k": rows,
               "max_abs_err_vs_dense": max(r["max_abs_err_vs_dense"] for r in rows.values()),  # over every k
               "top2": {"flops": top2["flops"], "dense_flops": top2["dense_reference_flops"],
                                          "dense_over_sparse": top2["dense_reference_flops"] / top2["flops"],
                                          "active_fraction": top2["active_params_per_token"] / top2["total_params"]},
               "mixtral": {**mix, "active_fraction": mix["active"] / mix["total"]}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"MoE layer: {N_EXPERTS} experts of d={D_MODEL} -> {D_FF} -> {D_MODEL}, {n_tokens} tokens, forward")
    print(f"{'top-k':>5} {'total params':>12} {'active/token':>12} {'MFLOP counted':>13} {'expert FLOPs vs k=1':>19} "
          f"{'max |sparse - dense|':>20}")
    for k, r in rows.items():
        print(f"{k:>5} {r['total_params']:>12,} {r['active_params_per_token']:>12,} {r['flops'] / 1e6:>13.2f} "
              f"{r['expert_flops_over_k1']:>19.1f} {r['max_abs_err_vs_dense']:>20.1e}")
    print(f"top-2: running all experts would count {results['top2']['dense_over_sparse']:.2f}x the FLOPs")
    print(f"Mixtral 8x7B from its Table 1 config: {mix['total'] / 1e9:.2f}B parameters, {mix['active'] / 1e9:.2f}B "
          f"active per token ({results['mixtral']['active_fraction']:.0%}); the paper says 47B and 13B")


if __name__ == "__main__":
    main()
