"""Fixes: local-window attention and a relative position bias, both checked.

1. Neighbourhood (local-window) attention: every token on a 2D grid attends
   only to the k x k tokens around it, like a conv kernel. Computed cheaply by
   gathering each neighbourhood with F.unfold, and checked against
   F.scaled_dot_product_attention with the equivalent N x N mask.
2. A relative position bias b[h, dy, dx] added to the attention scores
   (offsets taken cyclically, i.e. on a torus, like a conv with circular
   padding). The layer is then exactly translation-equivariant: shifting the
   image shifts the output. It is no longer permutation-equivariant, and an
   absolute position embedding is not translation-equivariant. Initialised as
   -alpha * distance^2 (ConViT-style), it makes attention local from the start.

Run from the repo root:  python snippets/problems/05_no_local_inductive_bias/local_fixes.py
"""
import argparse
import json
import math
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
B, H, D = 2, 4, 16  # batch, heads, head dim
GH, GW = 12, 10  # token grid (not square, to catch row/column mix-ups)
R = 1  # neighbourhood radius: a 3x3 window


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


# --8<-- [start:window]
def neighbourhood_attention(q, k, v, gh, gw, r):
    """Each token attends to the (2r+1)^2 tokens around it. q, k, v: (B, H, N, d), N = gh * gw."""
    B, H, N, d = q.shape
    ks = 2 * r + 1

    def neighbours(t):  # (B, H, N, d) -> (B, H, N, ks*ks, d)
        t = t.transpose(2, 3).reshape(B * H, d, gh, gw)  # (B*H, d, gh, gw): tokens back on the grid
        t = F.unfold(t, ks, padding=r)  # (B*H, d*ks*ks, N): every k x k neighbourhood, zero-padded
        return t.view(B, H, d, ks * ks, N).permute(0, 1, 4, 3, 2)  # (B, H, N, ks*ks, d)

    kn, vn = neighbours(k), neighbours(v)
    inside = F.unfold(torch.ones(1, 1, gh, gw, device=q.device), ks, padding=r)  # (1, ks*ks, N)
    inside = inside[0].T.bool()  # (N, ks*ks): False where the window hangs over the border
    s = (q.unsqueeze(3) @ kn.transpose(-2, -1)).squeeze(3) / math.sqrt(d)  # (B, H, N, ks*ks) scores
    s = s.masked_fill(~inside, float("-inf"))
    return (s.softmax(-1).unsqueeze(3) @ vn).squeeze(3)  # (B, H, N, 1, ks*ks) @ (.., ks*ks, d) -> (B, H, N, d)


def neighbourhood_mask(gh, gw, r, device="cpu"):
    """(N, N) bool: query i may attend key j iff |dy| <= r and |dx| <= r."""
    y, x = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    y, x = y.flatten(), x.flatten()  # (N,) each
    return ((y[:, None] - y[None, :]).abs() <= r) & ((x[:, None] - x[None, :]).abs() <= r)
# --8<-- [end:window]


# --8<-- [start:relbias]
def cyclic_offsets(gh, gw, device="cpu"):
    """(N, N) index pairs (dy mod gh, dx mod gw) from query i to key j."""
    y, x = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    y, x = y.flatten(), x.flatten()  # (N,) each
    return (y[None, :] - y[:, None]) % gh, (x[None, :] - x[:, None]) % gw


class RelBiasAttention(nn.Module):
    """Self-attention with a learned bias per head and per relative offset: no absolute positions."""

    def __init__(self, dim, heads, gh, gw, locality_alpha=None):
        super().__init__()
        self.heads, self.gh, self.gw = heads, gh, gw
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.table = nn.Parameter(0.02 * torch.randn(heads, gh, gw))  # b[h, dy, dx]
        if locality_alpha is not None:  # start local: b = -alpha * (cyclic distance)^2
            dy = torch.arange(gh).float()
            dx = torch.arange(gw).float()
            dy, dx = torch.minimum(dy, gh - dy), torch.minimum(dx, gw - dx)  # wrap-around distance
            with torch.no_grad():
                self.table.copy_(-locality_alpha * (dy[:, None] ** 2 + dx[None, :] ** 2).expand(heads, gh, gw))

    def forward(self, x, return_weights=False):  # x: (B, N, dim), N = gh * gw in row-major order
        B, N, dim = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, N, d)
        dy, dx = cyclic_offsets(self.gh, self.gw, x.device)
        bias = self.table[:, dy, dx]  # (H, N, N): depends only on the offset between i and j
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, N, d)
        if return_weights:
            s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias  # (B, H, N, N)
            return s.softmax(-1)
        return self.proj(o.transpose(1, 2).reshape(B, N, dim))  # (B, N, dim)
# --8<-- [end:relbias]


def roll_tokens(x, sy, sx, gh, gw):
    """Translate a (B, N, C) token grid by (sy, sx) cyclically."""
    B, N, C = x.shape
    return x.view(B, gh, gw, C).roll((sy, sx), dims=(1, 2)).reshape(B, N, C)  # (B, gh, gw, C) -> (B, N, C)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    dev = ap.parse_args().device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    N, dim = GH * GW, H * D

    # --8<-- [start:core]
    # 1) Local window == SDPA with the neighbourhood mask.
    q, k, v = torch.randn(3, B, H, N, D, device=dev)  # (B, H, N, d) each
    mask = neighbourhood_mask(GH, GW, R, dev)  # (N, N) bool
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, N, d)
    local = neighbourhood_attention(q, k, v, GH, GW, R)  # (B, H, N, d)
    torch.testing.assert_close(local, ref)
    assert not torch.allclose(local, F.scaled_dot_product_attention(q, k, v), atol=1e-2), "window had no effect"

    # 2) Relative position bias: translation-equivariant, not permutation-equivariant.
    layer = RelBiasAttention(dim, H, GH, GW).to(dev)
    layer.table.normal_(0, 1.0)  # as if trained: a clearly non-zero bias
    x = torch.randn(B, N, dim, device=dev)  # (B, N, dim) tokens, no absolute positions
    shift = (3, -4)
    y_shifted_in = layer(roll_tokens(x, *shift, GH, GW))
    torch.testing.assert_close(y_shifted_in, roll_tokens(layer(x), *shift, GH, GW))  # f(Tx) = T f(x)
    perm = torch.randperm(N, device=dev)
    perm_err = (layer(x[:, perm]) - layer(x)[:, perm]).abs().max().item()  # f(Px) vs P f(x)
    assert perm_err > 0.1, "a relative bias should break permutation equivariance"
    # --8<-- [end:core]

    # Contrast: an absolute position embedding breaks translation equivariance...
    pos = torch.randn(1, N, dim, device=dev)  # (1, N, dim)
    plain = nn.MultiheadAttention(dim, H, batch_first=True).to(dev)
    f_abs = lambda z: plain(z + pos, z + pos, z + pos, need_weights=False)[0]  # noqa: E731
    abs_err = (f_abs(roll_tokens(x, *shift, GH, GW)) - roll_tokens(f_abs(x), *shift, GH, GW)).abs().max().item()
    assert abs_err > 0.1, "absolute positions should not be translation-equivariant"
    # ...while a convolution with circular padding is translation-equivariant, like the biased layer.
    conv = nn.Conv2d(dim, dim, 3, padding=1, padding_mode="circular").to(dev)
    as_grid = lambda z: z.view(B, GH, GW, dim).permute(0, 3, 1, 2)  # noqa: E731  (B, N, C) -> (B, C, gh, gw)
    c_in, c_out = as_grid(roll_tokens(x, *shift, GH, GW)), as_grid(x)
    torch.testing.assert_close(conv(c_in), conv(c_out).roll(shift, dims=(2, 3)))

    # ConViT-style locality init: b = -alpha * distance^2 makes attention local from step 0.
    profiles = {}
    for name, alpha in (("no_bias", None), ("locality_init", 1.0)):
        lay = RelBiasAttention(dim, H, GH, GW, locality_alpha=alpha).to(dev)
        if alpha is None:
            lay.table.zero_()
        w = lay(torch.randn(64, N, dim, device=dev), return_weights=True).mean(dim=(0, 1))  # (N, N)
        dy, dx = cyclic_offsets(GH, GW, dev)
        dist = torch.sqrt(torch.minimum(dy, GH - dy).float() ** 2 + torch.minimum(dx, GW - dx).float() ** 2)  # (N, N)
        near, far = (dist > 0) & (dist < 1.5), dist >= 3
        profiles[name] = {"near_mean": w[near].mean().item(), "far_mean": w[far].mean().item(),
                          "near_over_far": (w[near].mean() / w[far].mean()).item(),
                          "share_within_1_5": (w * (dist < 1.5)).sum(-1).mean().item()}
    assert 0.8 < profiles["no_bias"]["near_over_far"] < 1.25, "without the bias, no locality"
    assert profiles["locality_init"]["near_over_far"] > 10, "the distance bias should make attention local"

    # Scores per head and image: the unfold computes k*k per token, including window slots that hang over
    # the border (zero-padded, then masked to -inf); the valid ones are exactly the mask's True entries.
    ks = 2 * R + 1
    inside = F.unfold(torch.ones(1, 1, GH, GW, device=dev), ks, padding=R)  # (1, ks*ks, N): 1 inside the grid
    assert int(inside.sum()) == int(mask.sum()), "unfold window and SDPA mask should allow the same pairs"
    scores = {"full": N * N, "window_computed": N * ks * ks, "window": int(mask.sum().item()),
              "window_padding": N * ks * ks - int(mask.sum().item()),
              "window_at_56x56_7x7": 56 * 56 * 49, "full_at_56x56": (56 * 56) ** 2}
    results = {
        "machine": {**machine_info(), "device": dev},
        "config": {"batch": B, "heads": H, "head_dim": D, "grid": [GH, GW], "window": 2 * R + 1, "shift": shift},
        "max_abs_err": {"window_vs_sdpa_mask": (local - ref).abs().max().item(),
                        "relbias_translation": (y_shifted_in - roll_tokens(layer(x), *shift, GH, GW)).abs().max().item()},
        "relbias_permutation_err": perm_err, "abs_pos_translation_err": abs_err,
        "locality": profiles, "scores": scores,
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    e = results["max_abs_err"]
    print(f"grid {GH}x{GW} = {N} tokens, {H} heads, d={D}")
    print(f"3x3 neighbourhood attention (unfold) vs SDPA + mask: max diff {e['window_vs_sdpa_mask']:.1e}; "
          f"scores computed {scores['window_computed']} ({scores['window_padding']} of them border padding, masked) "
          f"instead of {scores['full']}")
    print(f"relative bias, shift by {shift}:  max |f(Tx) - T f(x)| = {e['relbias_translation']:.1e}")
    print(f"relative bias, random shuffle:    max |f(Px) - P f(x)| = {perm_err:.2f}")
    print(f"absolute positions, shift:        max |f(Tx) - T f(x)| = {abs_err:.2f}")
    print(f"attention weight per neighbour / per token 3+ away: no bias "
          f"{profiles['no_bias']['near_over_far']:.2f}, -alpha*dist^2 bias {profiles['locality_init']['near_over_far']:.0f}")
    print(f"share of weight within distance 1.5: no bias {profiles['no_bias']['share_within_1_5']:.3f}, "
          f"with bias {profiles['locality_init']['share_within_1_5']:.3f}")


if __name__ == "__main__":
    main()
