"""See it: a training step costs about 6 FLOPs per parameter per token, plus attention's 12*L*T*d.

A small GPT runs one training step (forward + backward) under
torch.utils.flop_counter.FlopCounterMode, which counts the FLOPs of every
matrix multiply PyTorch actually dispatches. The script checks the count
against the 6*N*D rule (N parameters in matmuls, D tokens) plus the attention
term 12*L*T*d*D, applies the same rule to GPT-3 and compares it with the
figure the GPT-3 paper reports, and times the step to see what fraction of
this CPU's matmul throughput a real training step reaches.

Run from the repo root:  python snippets/problems/08_high_compute_cost/flops_count.py
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

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
CFG = {"vocab": 1024, "seq_len": 128, "d_model": 128, "layers": 4, "heads": 4, "batch": 4}

# GPT-3 175B: 96 layers, d_model 12288 (Brown et al. 2020, arXiv:2005.14165, Table 2.1), context 2048
# (Section 2.1); Table D.1 (Appendix D): 174,600M parameters, 300B training tokens,
# 3.14E+23 FLOPs = 3.64E+03 petaflop/s-days, counted as 6 FLOPs per parameter per token, attention ignored.
GPT3 = {"params": 174_600e6, "tokens": 300e9, "layers": 96, "d_model": 12288, "context": 2048,
        "paper_flops": 3.14e23, "paper_pf_days": 3.64e3}
PF_DAY = 1e15 * 86400  # one petaflop/s sustained for a day, in FLOPs


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):  # x: (B, T, d)
        B, T, d = x.shape
        qkv = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, H, T, dh)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, T, dh) each
        # Attention written out as matmuls, so FlopCounterMode sees it on every device.
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)  # (B, H, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v  # (B, H, T, dh)
        x = x + self.proj(att.transpose(1, 2).reshape(B, T, d))  # (B, H, T, dh) -> (B, T, H, dh) -> (B, T, d)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, seq_len, d, layers, heads):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(seq_len, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied, as in GPT-2

    def forward(self, ids):  # ids: (B, T)
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))  # (B, T, d)
        return self.head(self.ln(self.blocks(x)))  # (B, T, vocab)


# --8<-- [start:core]
def train_step(model, ids, targets):
    logits = model(ids)  # (B, T, vocab)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # (B*T, vocab) vs (B*T,)
    loss.backward()
    return loss


def matmul_params(model):
    """N: weights that take part in a matrix multiply (every Linear; the tied head counts once)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def predicted_flops(n_matmul, tokens, layers, seq_len, d_model):
    dense = 6 * n_matmul * tokens  # 2 per weight per token forward, 4 backward
    attention = 12 * layers * seq_len * d_model * tokens  # QK^T and AV, forward + backward
    return dense, attention
# --8<-- [end:core]


def count_step(model, ids, targets):
    with FlopCounterMode(display=False) as counter:
        train_step(model, ids, targets)
    by_op = {str(op).split(".")[-1]: int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops(), by_op


def machine_info(device):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": device}


def median_time(fn, repeats, sync):
    """Median wall time of `repeats` calls after one warm-up call."""
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    dev = args.device
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    c = CFG

    # 1) Count one training step and compare with 6*N*D + 12*L*T*d*D.
    model = GPT(c["vocab"], c["seq_len"], c["d_model"], c["layers"], c["heads"]).to(dev)
    ids = torch.randint(0, c["vocab"], (c["batch"], c["seq_len"]), device=dev)  # (B, T)
    targets = torch.randint(0, c["vocab"], (c["batch"], c["seq_len"]), device=dev)  # (B, T)
    tokens = c["batch"] * c["seq_len"]
    total, by_op = count_step(model, ids, targets)
    n_matmul = matmul_params(model)
    n_all = sum(p.numel() for p in model.parameters())
    dense_pred, attn_pred = predicted_flops(n_matmul, tokens, c["layers"], c["seq_len"], c["d_model"])
    linear_counted = by_op.get("mm", 0) + by_op.get("addmm", 0)  # nn.Linear forward and backward
    attn_counted = by_op.get("bmm", 0)  # the batched (B*H) attention matmuls
    assert linear_counted + attn_counted == total, f"unexpected ops in the count: {by_op}"
    ratios = {"linear_over_6ND": linear_counted / dense_pred,
              "attention_over_12LTdD": attn_counted / attn_pred,
              "total_over_6ND_plus_attention": total / (dense_pred + attn_pred),
              "total_over_6ND": total / dense_pred,
              "total_over_6ND_all_params": total / (6 * n_all * tokens),
              "attention_share_predicted": attn_pred / dense_pred,
              "attention_share_T_over_6d": c["seq_len"] / (6 * c["d_model"])}
    assert abs(ratios["linear_over_6ND"] - 1) < 1e-9, ratios
    assert abs(ratios["attention_over_12LTdD"] - 1) < 1e-9, ratios
    assert 1.0 < ratios["total_over_6ND"] < 1.0 + 1.2 * ratios["attention_share_predicted"], ratios

    # FlopCounterMode and the fused kernel: what it counts for F.scaled_dot_product_attention here.
    q = torch.randn(c["batch"], c["heads"], c["seq_len"], c["d_model"] // c["heads"], device=dev)  # (B, H, T, dh)
    with FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, q, q, is_causal=True)
    sdpa_counted = counter.get_total_flops()
    sdpa_expected_fwd = 4 * c["batch"] * c["seq_len"] ** 2 * c["d_model"]  # QK^T and AV, full T x T
    if dev == "cpu":  # the page's warning: the CPU fused kernel has no FLOP formula in this PyTorch
        assert sdpa_counted < sdpa_expected_fwd, f"FlopCounterMode now counts CPU SDPA: {sdpa_counted:,}"

    # 2) GPT-3: the same rule on the published numbers.
    g = GPT3
    g_dense = 6 * g["params"] * g["tokens"]
    g_attn = 12 * g["layers"] * g["context"] * g["d_model"] * g["tokens"]
    gpt3 = {"six_n_d": g_dense, "paper_flops": g["paper_flops"], "rel_diff_vs_paper": g_dense / g["paper_flops"] - 1,
            "six_n_d_nominal_175b": 6 * 175e9 * g["tokens"],
            "pf_days": g_dense / PF_DAY, "paper_pf_days": g["paper_pf_days"],
            "attention_flops": g_attn, "attention_share": g_attn / g_dense,
            "attention_share_T_over_6d": g["context"] / (6 * g["d_model"])}
    assert abs(gpt3["rel_diff_vs_paper"]) < 0.005, "6ND should reproduce Table D.1 to its rounding"
    assert abs(gpt3["pf_days"] / g["paper_pf_days"] - 1) < 0.005
    # Table D.1 prints three figures: 6ND and its petaflop/s-days must round to exactly what it prints.
    assert f"{g_dense:.2e}" == f"{g['paper_flops']:.2e}", (g_dense, g["paper_flops"])
    assert f"{gpt3['pf_days']:.2e}" == f"{g['paper_pf_days']:.2e}", (gpt3["pf_days"], g["paper_pf_days"])
    assert gpt3["attention_share"] < 0.10, "Appendix D: attention is under 10% of the compute"

    # 3) Achieved throughput: the training step against a large square matmul on the same device.
    step_s = median_time(lambda: (model.zero_grad(set_to_none=True), train_step(model, ids, targets)), 5, sync)
    a, b = (torch.randn(1024, 1024, device=dev) for _ in range(2))  # (1024, 1024) each
    mm_s = median_time(lambda: a @ b, 5, sync)
    step_flops_per_s, mm_flops_per_s = total / step_s, 2 * 1024**3 / mm_s
    achieved = {"step_ms": step_s * 1e3, "step_gflop_per_s": step_flops_per_s / 1e9,
                "matmul_1024_gflop_per_s": mm_flops_per_s / 1e9, "utilisation": step_flops_per_s / mm_flops_per_s}
    assert achieved["utilisation"] < 1.1, "a whole training step should not beat a large matmul"

    results = {"machine": machine_info(dev), "config": c, "tokens_per_step": tokens,
               "params": {"matmul": n_matmul, "all": n_all}, "counted": {"total": total, "by_op": by_op,
                                                                          "linear": linear_counted,
                                                                          "attention": attn_counted},
               "predicted": {"six_n_d": dense_pred, "attention_12LTdD": attn_pred}, "ratios": ratios,
               "sdpa": {"counted_by_flopcountermode": sdpa_counted, "expected_forward": sdpa_expected_fwd},
               "gpt3": gpt3, "achieved": achieved}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"small GPT: {c['layers']} layers, d={c['d_model']}, T={c['seq_len']}, vocab {c['vocab']} (tied); "
          f"N (matmul weights) = {n_matmul:,}; all params {n_all:,}; D = {tokens} tokens per step")
    print(f"FlopCounterMode, one forward + backward: {total / 1e9:.3f} GFLOP  {by_op}")
    print(f"  linear layers {linear_counted / 1e9:.3f} GFLOP = {ratios['linear_over_6ND']:.4f} x 6*N*D")
    print(f"  attention     {attn_counted / 1e9:.3f} GFLOP = {ratios['attention_over_12LTdD']:.4f} x 12*L*T*d*D "
          f"(= {ratios['attention_share_predicted']:.1%} on top of 6ND; T/(6d) = {ratios['attention_share_T_over_6d']:.3f})")
    print(f"  total / 6ND = {ratios['total_over_6ND']:.3f}; total / 6ND with N = all params = "
          f"{ratios['total_over_6ND_all_params']:.3f}")
    print(f"  F.scaled_dot_product_attention under FlopCounterMode on {dev}: {sdpa_counted:,} FLOPs counted "
          f"(its forward does {sdpa_expected_fwd:,})")
    print(f"GPT-3: 6 x {g['params']:.4g} x {g['tokens']:.3g} = {g_dense:.3e} FLOPs (Table D.1: {g['paper_flops']:.2e}; "
          f"{gpt3['rel_diff_vs_paper']:+.2%}) = {gpt3['pf_days']:.0f} PF-days (Table D.1: {g['paper_pf_days']:.2e}); "
          f"attention would add {gpt3['attention_share']:.1%}")
    print(f"achieved: step {achieved['step_ms']:.0f} ms = {achieved['step_gflop_per_s']:.1f} GFLOP/s; "
          f"1024^3 matmul {achieved['matmul_1024_gflop_per_s']:.1f} GFLOP/s; utilisation {achieved['utilisation']:.0%}")
    print(f"machine: {results['machine']['cpu']}, {results['machine']['torch_threads']} torch thread{'' if results['machine']['torch_threads'] == 1 else 's'}, "
          f"torch {results['machine']['torch']}")


if __name__ == "__main__":
    main()
