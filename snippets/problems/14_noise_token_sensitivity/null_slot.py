"""A null slot (attention sink) gives softmax somewhere harmless to put its weight.

Softmax weights sum to 1, so a head that finds nothing relevant must still
average SOMETHING. Two built-in options of nn.MultiheadAttention add one extra
key/value the softmax can pick instead:
  * add_zero_attn=True : a zero key (logit 0 for any query) with a zero value
  * add_bias_kv=True   : a learned key and value (a learnable sink token)
The script first checks that add_zero_attn is exactly "append a zero key and
value, then SDPA". Then it trains three one-head models for a few hundred
steps on retrieve-or-nothing: the query is an id; if a context token has that
id, output its payload vector, otherwise output zeros. Half the queries have
no match. It measures the error on each half and the weight on the extra slot.

Run from the repo root:  python snippets/problems/14_noise_token_sensitivity/null_slot.py
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
VOCAB, N_CTX, D_ID, D_PAY = 32, 8, 16, 8  # ids, context length, id embedding, payload size
D = D_ID + D_PAY
STEPS, BATCH, LR = 300, 128, 1e-2
KINDS = {"plain": {}, "zero_slot": {"add_zero_attn": True}, "learned_sink": {"add_bias_kv": True}}


def make_batch(n, gen, device):
    ids = torch.rand(n, VOCAB, generator=gen).argsort(dim=1)[:, :N_CTX + 1]  # (n, N+1): distinct ids per row
    ctx, absent = ids[:, :N_CTX], ids[:, N_CTX]  # (n, N), (n,): absent is in no context
    match = torch.rand(n, generator=gen) < 0.5  # (n,)
    where = torch.randint(0, N_CTX, (n,), generator=gen)  # (n,)
    rows = torch.arange(n)
    query = torch.where(match, ctx[rows, where], absent)  # (n,)
    payload = torch.randn(n, N_CTX, D_PAY, generator=gen)  # (n, N, d_pay)
    target = torch.where(match[:, None], payload[rows, where], torch.zeros(n, D_PAY))  # (n, d_pay)
    return [t.to(device) for t in (ctx, payload, query, target, match)]


# --8<-- [start:core]
class Retriever(nn.Module):
    """One cross-attention head: the query id attends over (id, payload) context tokens."""
    def __init__(self, **extra_slot):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_ID)
        self.attn = nn.MultiheadAttention(D, 1, batch_first=True, **extra_slot)
        self.read = nn.Linear(D, D_PAY)

    def forward(self, ctx, payload, query):  # (B, N), (B, N, d_pay), (B,)
        kv = torch.cat([self.embed(ctx), payload], dim=-1)  # (B, N, d)
        q = torch.cat([self.embed(query), payload.new_zeros(len(query), D_PAY)], dim=-1)[:, None]  # (B, 1, d)
        out, w = self.attn(q, kv, kv, need_weights=True)  # (B, 1, d), (B, 1, N or N+1)
        return self.read(out[:, 0]), w[:, 0]  # (B, d_pay), (B, N or N+1): extra slot is last


def train(kind, device="cpu"):
    torch.manual_seed(SEED)  # same initial weights for the shared parts
    model = Retriever(**KINDS[kind]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(1)  # same batches for every kind
    for _ in range(STEPS):
        ctx, payload, query, target, _ = make_batch(BATCH, gen, device)
        loss = F.mse_loss(model(ctx, payload, query)[0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model
# --8<-- [end:core]


def zero_attn_is_a_zero_slot(device):
    """nn.MultiheadAttention(add_zero_attn=True) == SDPA over keys/values with one zero row appended."""
    torch.manual_seed(SEED)
    H = 2
    mha = nn.MultiheadAttention(D, H, batch_first=True, add_zero_attn=True).to(device).eval()
    # Non-zero projection biases (MultiheadAttention starts them at zero): then a zero row appended to the
    # INPUTS would be projected to the biases, so this check tells "zero key and value" from "zero input".
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for b in (mha.in_proj_bias, mha.out_proj.bias):
            b.copy_(torch.empty(b.shape).uniform_(-D**-0.5, D**-0.5, generator=gen))
    x = torch.randn(3, 5, D, device=device)  # (B, T, d)
    ref = mha(x, x, x, need_weights=False)[0]  # (B, T, d)
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)  # (B, T, d) each
    q, k, v = (t.view(3, 5, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d_h) each
    zero = k.new_zeros(3, H, 1, D // H)  # (B, H, 1, d_h): the null slot
    o = F.scaled_dot_product_attention(q, torch.cat([k, zero], 2), torch.cat([v, zero], 2))  # (B, H, T, d_h)
    out = mha.out_proj(o.transpose(1, 2).reshape(3, 5, D))  # (B, H, T, d_h) -> (B, T, H, d_h) -> (B, T, d)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # non-vacuity: appending a zero INPUT row (projected to the biases) gives a different output
    kb, vb = F.linear(x.new_zeros(3, 1, D), mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)[1:]  # (B, 1, d)
    kb, vb = (t.view(3, 1, H, D // H).transpose(1, 2) for t in (kb, vb))  # (B, H, 1, d_h) each
    o_in = F.scaled_dot_product_attention(q, torch.cat([k, kb], 2), torch.cat([v, vb], 2))  # (B, H, T, d_h)
    assert not torch.allclose(mha.out_proj(o_in.transpose(1, 2).reshape(3, 5, D)), ref, atol=1e-3), \
        "with non-zero biases a zero input row is not a zero key and value"
    return (out - ref).abs().max().item()


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
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)

    zero_slot_err = zero_attn_is_a_zero_slot(dev)
    ctx, payload, query, target, match = make_batch(4000, torch.Generator().manual_seed(2), dev)  # held-out
    res = {}
    for kind in KINDS:
        model = train(kind, dev)
        with torch.no_grad():
            pred, w = model(ctx, payload, query)
        err = ((pred - target) ** 2).mean(-1)  # (n,) per-example MSE
        res[kind] = {"mse_match": err[match].mean().item(), "mse_no_match": err[~match].mean().item()}
        if kind != "plain":
            res[kind]["slot_weight_no_match"] = w[~match, -1].mean().item()
            res[kind]["slot_weight_match"] = w[match, -1].mean().item()
    # Without a slot the best a head can do on no-match is spread evenly: the mean of N_CTX payloads,
    # whose expected squared size per coordinate is 1 / N_CTX.
    uniform_floor = 1 / N_CTX
    results = {"machine": {**machine_info(), "device": dev},
               "config": {"vocab": VOCAB, "context": N_CTX, "d_id": D_ID, "d_payload": D_PAY, "steps": STEPS,
                          "batch": BATCH, "lr": LR, "seed": SEED, "heads": 1},
               "zero_attn_vs_sdpa_max_err": zero_slot_err, "uniform_average_mse": uniform_floor, "models": res,
               "no_match_mse_ratio_plain_over_zero_slot": res["plain"]["mse_no_match"] / res["zero_slot"]["mse_no_match"]}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"add_zero_attn == SDPA with a zero key/value appended (max error {zero_slot_err:.1e})")
    print(f"retrieve-or-nothing, {N_CTX} context tokens, {STEPS} steps; held-out MSE (payload entries ~ N(0,1)):")
    print(f"{'model':<14} {'MSE match':>10} {'MSE no match':>13} {'slot weight: no match':>22} {'match':>7}")
    for kind, r in res.items():
        slot = (f"{r['slot_weight_no_match']:>22.3f} {r['slot_weight_match']:>7.3f}" if kind != "plain"
                else f"{'—':>22} {'—':>7}")
        print(f"{kind:<14} {r['mse_match']:>10.4f} {r['mse_no_match']:>13.4f} {slot}")
    print(f"averaging all {N_CTX} payloads evenly would give MSE {uniform_floor:.3f} on no-match")

    # The claims the page makes.
    # The page: "close to" the even average's error, the lowest any weighted average of the payloads can reach.
    assert 0.9 * uniform_floor < res["plain"]["mse_no_match"] < 1.5 * uniform_floor, \
        "without a slot, no-match must output some average of the payloads"
    for kind in ("zero_slot", "learned_sink"):
        r = res[kind]
        assert r["mse_no_match"] < 0.1 * res["plain"]["mse_no_match"], f"{kind}: the slot should absorb no-match"
        assert r["slot_weight_no_match"] > 0.8, f"{kind}: no-match queries should put most weight on the slot"
        assert r["slot_weight_match"] < r["slot_weight_no_match"] - 0.5, f"{kind}: matches should not use the slot"
        assert r["mse_match"] < 0.5 * res["plain"]["mse_match"], f"{kind}: the page says retrieval got better too"


if __name__ == "__main__":
    main()
