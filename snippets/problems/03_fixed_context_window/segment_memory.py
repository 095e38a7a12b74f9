"""A fix: Transformer-XL segment memory, cached hidden states of the previous segment, detached.

A long stream is cut into segments of S tokens. When a layer processes the
current segment, its queries come from the segment only, while its keys and
values come from [memory; segment]: the memory is the previous segment's
input to this layer, cached and detached (stop-gradient).

Checks:
1. Attending over [memory; segment] with the mask "key j <= M + i" equals
   causal attention (F.scaled_dot_product_attention, is_causal=True) over the
   concatenated sequence, restricted to the segment's rows; for a 2-layer stack too.
2. No gradient flows into the memory: segment 1's input gets no gradient from
   segment 2's loss (and does get one when the memory is not detached).
3. The reach grows by one segment per layer: with 1 layer, segment 3's output
   ignores segment 1; with 2 layers it depends on it.

Run from the repo root:  python snippets/problems/03_fixed_context_window/segment_memory.py
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
B, S, D, H = 2, 16, 32, 4  # batch, segment length, model width, heads


# --8<-- [start:core]
class MemoryAttention(nn.Module):
    """One attention layer that also attends to a cached memory of M earlier positions."""

    def __init__(self, d, h):
        super().__init__()
        self.h, self.q, self.kv, self.o = h, nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)

    def heads(self, x):  # (B, T, d) -> (B, h, T, d/h)
        return x.view(x.shape[0], x.shape[1], self.h, -1).transpose(1, 2)  # (B, T, h, d/h) -> (B, h, T, d/h)

    def forward(self, x, mem):  # x: (B, S, d) current segment; mem: (B, M, d) cached, no grad
        S, M = x.shape[1], mem.shape[1]
        ctx = torch.cat([mem, x], dim=1)  # (B, M+S, d): keys and values see memory + segment
        q = self.heads(self.q(x))  # (B, h, S, d/h): queries only for the new tokens
        k, v = (self.heads(t) for t in self.kv(ctx).chunk(2, dim=-1))  # (B, h, M+S, d/h) each
        # Segment row i sits at absolute position M + i: it may read keys j <= M + i.
        allowed = torch.arange(M + S, device=x.device)[None, :] <= M + torch.arange(S, device=x.device)[:, None]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, h, S, d/h); allowed: (S, M+S)
        return x + self.o(a.transpose(1, 2).reshape(x.shape))  # (B, S, h, d/h) -> (B, S, d), residual


def xl_forward(layers, x, mems, detach=True):
    """Run a stack on one segment. mems[l] is the previous segment's input to layer l.
    Returns the output and the memories for the next segment (this segment's inputs)."""
    new_mems = []
    for layer, mem in zip(layers, mems):
        new_mems.append(x.detach() if detach else x)  # stop-gradient: SG(h) in Transformer-XL
        x = layer(x, mem)
    return x, new_mems
# --8<-- [end:core]


def full_causal(layers, x):
    """Reference: plain causal attention over the whole concatenated sequence."""
    for layer in layers:
        q = layer.heads(layer.q(x))  # (B, h, T, d/h)
        k, v = (layer.heads(t) for t in layer.kv(x).chunk(2, dim=-1))  # (B, h, T, d/h) each
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, T, d/h)
        x = x + layer.o(a.transpose(1, 2).reshape(x.shape))  # (B, T, h, d/h) -> (B, T, d)
    return x


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
    layers = nn.ModuleList(MemoryAttention(D, H) for _ in range(2)).to(dev)
    empty = [torch.zeros(B, 0, D, device=dev)] * len(layers)  # (B, 0, d): no memory before segment 1
    x1, x2, x3 = (torch.randn(B, S, D, device=dev) for _ in range(3))  # (B, S, d) each

    # 1) [memory; segment] with the offset mask == causal attention over the concatenation.
    err = {}
    for n_layers in (1, 2):
        stack = layers[:n_layers]
        _, mems = xl_forward(stack, x1, empty[:n_layers])
        seg2, _ = xl_forward(stack, x2, mems)  # (B, S, d)
        ref = full_causal(stack, torch.cat([x1, x2], dim=1))[:, S:]  # (B, 2S, d) -> segment 2's rows
        torch.testing.assert_close(seg2, ref, rtol=1e-5, atol=1e-5)
        err[f"{n_layers}_layer"] = (seg2 - ref).abs().max().item()
    # The offset matters: without it (plain causal mask over M+S keys) the result is different.
    layer = layers[0]
    q = layer.heads(layer.q(x2))  # (B, h, S, d/h)
    k, v = (layer.heads(t) for t in layer.kv(torch.cat([x1, x2], 1)).chunk(2, -1))  # (B, h, 2S, d/h) each
    wrong_mask = torch.ones(S, 2 * S, dtype=torch.bool, device=dev).tril()  # (S, 2S): ignores the offset M
    wrong = x2 + layer.o(F.scaled_dot_product_attention(q, k, v, attn_mask=wrong_mask)
                         .transpose(1, 2).reshape(x2.shape))  # (B, h, S, d/h) -> (B, S, d)
    right = layer(x2, x1)  # (B, S, d)
    wrong_gap = (wrong - right).abs().max().item()
    assert wrong_gap > 1e-2, "the mask offset should matter"

    # 2) No gradient reaches the memory (or segment 1 through it).
    grads = {}
    for detach in (True, False):
        x1g = x1.clone().requires_grad_(True)  # (B, S, d) leaf
        layers.zero_grad()
        _, mems = xl_forward(layers, x1g, empty, detach=detach)
        out2, _ = xl_forward(layers, x2, mems, detach=detach)
        out2.square().mean().backward()
        grads[detach] = {"x1_grad_norm": 0.0 if x1g.grad is None else x1g.grad.norm().item(),
                         "mem_requires_grad": any(m.requires_grad for m in mems),
                         "param_grad_norm": sum(p.grad.norm().item() for p in layers.parameters())}
    assert grads[True]["x1_grad_norm"] == 0.0 and not grads[True]["mem_requires_grad"], "gradient leaked into memory"
    assert grads[True]["param_grad_norm"] > 0, "segment 2 should still train the weights"
    assert grads[False]["x1_grad_norm"] > 0, "without detach the gradient should reach segment 1 (check is live)"

    # 3) Reach: does segment 3's output change when segment 1 changes?
    reach = {}
    for n_layers in (1, 2):
        stack = layers[:n_layers]
        outs = []
        for seg1 in (x1, x1 + torch.randn_like(x1)):
            _, mems = xl_forward(stack, seg1, empty[:n_layers])
            _, mems = xl_forward(stack, x2, mems)
            out3, _ = xl_forward(stack, x3, mems)  # (B, S, d)
            outs.append(out3)
        reach[f"{n_layers}_layer"] = (outs[0] - outs[1]).abs().max().item()
    assert reach["1_layer"] == 0.0, "one layer only sees the previous segment"
    assert reach["2_layer"] > 1e-3, "two layers should carry segment 1 into segment 3"

    mem_floats = len(layers) * B * S * D  # cached values: one (B, M, d) tensor per layer
    results = {"machine": machine_info() | {"device": dev},
               "config": {"batch": B, "segment": S, "memory": S, "d_model": D, "heads": H, "layers": len(layers)},
               "max_abs_err": err, "wrong_mask_gap": wrong_gap,
               "grad": {"detached": grads[True], "not_detached": grads[False]},
               "segment3_change_from_segment1": reach,
               "memory_floats": mem_floats, "keys_per_query": {"min": S + 1, "max": 2 * S}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"B={B}, segment S={S}, memory M={S}, d={D}, heads={H}")
    print(f"[memory; segment] vs causal SDPA over the concatenation: max |diff| "
          f"{err['1_layer']:.1e} (1 layer), {err['2_layer']:.1e} (2 layers)")
    print(f"same keys, mask without the +M offset: off by {wrong_gap:.2f}")
    print(f"gradient into segment 1 from segment 2's loss: detached {grads[True]['x1_grad_norm']:.1f}, "
          f"not detached {grads[False]['x1_grad_norm']:.3f}; weights still get gradient "
          f"{grads[True]['param_grad_norm']:.3f}")
    print(f"change in segment 3's output when segment 1 changes: 1 layer {reach['1_layer']:.1f}, "
          f"2 layers {reach['2_layer']:.3f}")


if __name__ == "__main__":
    main()
