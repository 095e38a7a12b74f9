"""ViT: the Vision Transformer (Dosovitskiy et al. 2020, arXiv:2010.11929), in one readable file.

An image is cut into P x P patches; each patch is flattened and projected to a
token (a linear map, written as a Conv2d with kernel = stride = P); a learned
[class] token goes in front, learned position embeddings are added, and a stack
of pre-LN transformer encoder blocks lets every token attend to every other.
The class token's final state, after a LayerNorm, is classified (Eq. 1-4).

Run alone, this file counts ViT-Base/Large/Huge at their published
configurations on the meta device and compares them with Table 1, then checks
that the Conv2d patch embedding equals an explicit unfold + linear, that
patchify and unpatchify round-trip an image exactly, that the attention equals
F.scaled_dot_product_attention, and that without position embeddings the
model cannot tell an image from its shuffled patches (the [class] token's state is unchanged).

Run from the repo root:  python snippets/architectures/vit/model.py
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))


# --8<-- [start:core]
@dataclass
class ViTConfig:
    image_size: int = 224  # pixels per side of the (square) input image
    patch_size: int = 16  # P, pixels per patch side: N = (image_size / P)^2 = 196 patch tokens
    in_channels: int = 3  # C: RGB
    n_classes: int = 1000  # classifier outputs (ImageNet-1k fine-tuning)
    n_layer: int = 12  # encoder blocks (Table 1, ViT-Base)
    n_head: int = 12  # heads per block; head size = d_model / n_head = 64 (Table 1)
    d_model: int = 768  # D, the token width kept through all layers (Table 1, "Hidden size D")
    d_ff: int = 3072  # MLP hidden width (Table 1, "MLP size")
    dropout: float = 0.0  # probability; regularisation, chosen per training run

    @property
    def n_patches(self):  # N = HW / P^2
        return (self.image_size // self.patch_size) ** 2


def patchify(img, p):
    """(B, C, H, W) -> (B, N, P*P*C): the sequence of flattened patches x_p of Section 3.1."""
    B, C, H, W = img.shape
    x = img.reshape(B, C, H // p, p, W // p, p)  # (B, C, H/P, P, W/P, P)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, H/P, W/P, P, P, C): patch row, patch col, pixel row, pixel col, channel
    return x.reshape(B, (H // p) * (W // p), p * p * C)  # (B, N, P*P*C), patches in raster order


def unpatchify(x, p, c):
    """(B, N, P*P*C) -> (B, C, H, W): the exact inverse of patchify."""
    B, N, _ = x.shape
    g = math.isqrt(N)  # patches per side
    x = x.reshape(B, g, g, p, p, c)  # (B, H/P, W/P, P, P, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, H/P, P, W/P, P)
    return x.reshape(B, c, g * p, g * p)  # (B, C, H, W)


class PatchEmbed(nn.Module):
    """x_p E for every patch at once: a Conv2d whose kernel and stride are both P is a per-patch linear map."""

    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_channels, cfg.d_model, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, img):  # img: (B, C, H, W)
        x = self.proj(img)  # (B, D, H/P, W/P): one D-vector per patch
        return x.flatten(2).transpose(1, 2)  # (B, D, N) -> (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention with no mask: every token attends to every token, [class] included."""

    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.d_head = cfg.n_head, cfg.d_model // cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # [W_q | W_k | W_v]
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)  # W_o
        self.drop = nn.Dropout(cfg.dropout)
        self.last_att = None  # (B, H, N+1, N+1), kept for plotting

    def heads(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # (B, T, D) each
        # each: (B, T, D) -> (B, T, H, dh) -> (B, H, T, dh)
        return [t.view(B, T, self.n_head, self.d_head).transpose(1, 2) for t in (q, k, v)]

    def forward(self, x):  # x: (B, T, D), T = N + 1
        B, T, D = x.shape
        q, k, v = self.heads(x)  # (B, H, T, dh) each
        att = (q @ k.transpose(-2, -1) / math.sqrt(self.d_head)).softmax(-1)  # softmax(QK^T / sqrt(dh)): (B, H, T, T)
        self.last_att = att.detach()
        y = self.drop(att) @ v  # (B, H, T, dh)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, H, T, dh) -> (B, T, H, dh) -> (B, T, D)
        return self.drop(self.proj(y))  # (B, T, D)


class MLP(nn.Module):
    """Two layers with a GELU between them (Section 3.1)."""

    def __init__(self, cfg):
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(cfg.d_model, cfg.d_ff), nn.Linear(cfg.d_ff, cfg.d_model), \
            nn.Dropout(cfg.dropout)

    def forward(self, x):  # x: (B, T, D)
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))  # (B, T, d_ff) -> (B, T, D)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(cfg.d_model, eps=1e-6), Attention(cfg)
        self.ln2, self.mlp = nn.LayerNorm(cfg.d_model, eps=1e-6), MLP(cfg)

    def forward(self, z):  # z: (B, T, D)
        z = z + self.attn(self.ln1(z))  # z'_l = MSA(LN(z_{l-1})) + z_{l-1}   (Eq. 2)
        return z + self.mlp(self.ln2(z))  # z_l = MLP(LN(z'_l)) + z'_l        (Eq. 3)


class ViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)  # E: (P*P*C) -> D
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.d_model))  # x_class, learned
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.n_patches + 1, cfg.d_model))  # E_pos: (N+1, D)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.LayerNorm(cfg.d_model, eps=1e-6)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)  # one linear layer (the fine-tuning head)
        if not self.pos_embed.is_meta:  # on the meta device (counting only) there are no values to set
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def features(self, img, use_pos=True):
        """img: (B, C, H, W) -> all token states z_L: (B, N+1, D). use_pos=False drops E_pos (a check only)."""
        x = self.patch_embed(img)  # (B, N, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
        z = torch.cat([cls, x], dim=1)  # z_0 = [x_class; x_p^1 E; ...; x_p^N E]: (B, N+1, D)
        if use_pos:
            z = z + self.pos_embed  # ... + E_pos  (Eq. 1)
        z = self.drop(z)
        for block in self.blocks:
            z = block(z)  # (B, N+1, D)
        return z

    def forward(self, img):  # img: (B, C, H, W)
        y = self.norm(self.features(img)[:, 0])  # y = LN(z_L^0): the [class] token's final state (Eq. 4), (B, D)
        return self.head(y)  # (B, n_classes)
# --8<-- [end:core]


def count(model):
    return sum(p.numel() for p in model.parameters())


def formula(cfg):
    D, F_, L, P, C, N, K = cfg.d_model, cfg.d_ff, cfg.n_layer, cfg.patch_size, cfg.in_channels, cfg.n_patches, \
        cfg.n_classes
    patch = P * P * C * D + D  # E and its bias
    tokens = D + (N + 1) * D  # x_class and E_pos
    block = (3 * D * D + 3 * D) + (D * D + D) + (D * F_ + F_) + (F_ * D + D) + 2 * 2 * D  # qkv, proj, MLP, 2 LN
    return patch + tokens + L * block + 2 * D + (D * K + K)  # + final LN + head


# Table 1 (Dosovitskiy et al. 2020): layers, hidden size D, MLP size, heads, params. The table names no patch
# size or head; the counts here use the headline models ViT-B/16, ViT-L/16, ViT-H/14 at 224 x 224 with a
# 1000-class linear head (ImageNet fine-tuning).
PUBLISHED = {
    "ViT-B/16": dict(cfg=ViTConfig(), paper=86e6),
    "ViT-L/16": dict(cfg=ViTConfig(n_layer=24, n_head=16, d_model=1024, d_ff=4096), paper=307e6),
    "ViT-H/14": dict(cfg=ViTConfig(patch_size=14, n_layer=32, n_head=16, d_model=1280, d_ff=5120), paper=632e6),
}


def check_patch_embedding(cfg, img):
    """Conv2d(kernel=stride=P) == F.unfold + linear == patchify + linear (weights reordered to (D, P, P, C))."""
    pe = PatchEmbed(cfg)
    conv = pe(img)  # (B, N, D)
    W, b = pe.proj.weight, pe.proj.bias  # (D, C, P, P), (D,)
    cols = F.unfold(img, kernel_size=cfg.patch_size, stride=cfg.patch_size)  # (B, C*P*P, N)
    lin = cols.transpose(1, 2) @ W.reshape(cfg.d_model, -1).T + b  # (B, N, C*P*P) @ (C*P*P, D) -> (B, N, D)
    torch.testing.assert_close(conv, lin, rtol=1e-5, atol=1e-5)
    W_paper = W.permute(0, 2, 3, 1).reshape(cfg.d_model, -1)  # (D, P, P, C) -> (D, P*P*C): patchify's order
    lin2 = patchify(img, cfg.patch_size) @ W_paper.T + b  # (B, N, P*P*C) @ (P*P*C, D) -> (B, N, D)
    torch.testing.assert_close(conv, lin2, rtol=1e-5, atol=1e-5)
    return max((conv - lin).abs().max().item(), (conv - lin2).abs().max().item())


def check_round_trip(img, p):
    patches = patchify(img, p)  # (B, N, P*P*C)
    B, C, H, W = img.shape
    assert patches.shape == (B, (H // p) * (W // p), p * p * C)
    assert torch.equal(unpatchify(patches, p, C), img), "unpatchify(patchify(x)) != x"
    # Patch k holds exactly the pixels of grid cell (k // (W/P), k % (W/P)), channels last.
    k = 5
    r, c = divmod(k, W // p)
    cell = img[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p]  # (B, C, P, P)
    assert torch.equal(patches[:, k], cell.permute(0, 2, 3, 1).reshape(B, -1))  # (B, P, P, C) -> (B, P*P*C)
    return patches.shape


def check_attention(cfg):
    attn = Attention(cfg).eval()
    x = torch.randn(2, cfg.n_patches + 1, cfg.d_model)  # (B, N+1, D)
    ours = attn(x)  # (B, N+1, D)
    q, k, v = attn.heads(x)  # (B, H, N+1, dh)
    ref = F.scaled_dot_product_attention(q, k, v)  # no mask: (B, H, N+1, dh)
    ref = attn.proj(ref.transpose(1, 2).reshape(x.shape))  # (B, H, T, dh) -> (B, T, H, dh) -> (B, T, D)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert (attn.last_att > 0).all(), "an unmasked softmax gives every pair a positive weight"
    return (ours - ref).abs().max().item()


def check_needs_positions(model, img, p):
    """Shuffle the patches: without E_pos the token states are only shuffled the same way (and the [class]
    token's state, hence the prediction, does not change); with E_pos they change. Measured with the model's
    own E_pos (truncated normal, std 0.02) and with a unit-scale random E_pos, whose effect is plain."""
    c = img.shape[1]
    perm = torch.randperm(model.cfg.n_patches, generator=torch.Generator().manual_seed(4))
    shuffled = unpatchify(patchify(img, p)[:, perm], p, c)  # the same patches, in another order
    z, zs = model.features(img, use_pos=False), model.features(shuffled, use_pos=False)  # (B, N+1, D) each
    torch.testing.assert_close(zs[:, 1:], z[:, 1:][:, perm], rtol=1e-4, atol=1e-5)  # permutation-equivariant
    torch.testing.assert_close(zs[:, 0], z[:, 0], rtol=1e-4, atol=1e-5)  # [class] token: invariant

    def change():  # relative change of the patch tokens' states (matched by patch) when the order changes
        z, zs = model.features(img), model.features(shuffled)
        return ((zs[:, 1:] - z[:, 1:][:, perm]).norm() / z[:, 1:].norm()).item()

    at_init = change()  # E_pos as initialised: std 0.02, small next to the patch embeddings
    assert model.pos_embed.std() < 0.25 * model.patch_embed(img).std(), "E_pos at init should be small"
    with torch.no_grad():
        model.pos_embed.normal_(generator=torch.Generator().manual_seed(5))  # unit scale: std 1
    unit = change()
    assert at_init > 1e-3, "even the small initial position embeddings should make the order matter"
    assert unit > 0.05, "unit-scale position embeddings should make the order matter"
    assert unit > 3 * at_init, "larger position embeddings should matter more"
    return at_init, unit, model.pos_embed.std().item()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    results = {"params": {}}
    print(f"{'model':<9} {'tokens':>6} {'params (counted)':>17} {'= formula':>9} {'Table 1':>8} {'diff':>7}"
          f" {'no head':>12}")
    for name, p in PUBLISHED.items():
        cfg = p["cfg"]
        with torch.device("meta"):
            m = ViT(cfg)
        n = count(m)
        assert n == formula(cfg), name
        assert all(t.is_meta for t in m.parameters())
        no_head = n - (cfg.d_model * cfg.n_classes + cfg.n_classes)
        rel = n / p["paper"] - 1
        assert abs(rel) < 0.01, f"{name}: {n:,} is {rel:+.2%} off Table 1"
        results["params"][name] = {"params": n, "paper": p["paper"], "rel_diff_from_paper": rel,
                                   "params_no_head": no_head, "tokens": cfg.n_patches + 1,
                                   "floor_millions": n // 10**6, "config": asdict(cfg)}
        print(f"{name:<9} {cfg.n_patches + 1:>6} {n:>17,} {'yes':>9} {p['paper'] / 1e6:>7.0f}M {rel:>+7.2%}"
              f" {no_head:>12,}")
    r = results["params"]
    # Base and Huge match Table 1 cut to whole millions; Large does not (Table 1 says 307M for 304.3M).
    assert r["ViT-B/16"]["floor_millions"] == 86 and r["ViT-H/14"]["floor_millions"] == 632
    assert r["ViT-L/16"]["floor_millions"] != 307 and round(r["ViT-L/16"]["params"] / 1e6) != 307
    print("Table 1 (Dosovitskiy et al. 2020): 86M / 307M / 632M. Base and Huge agree when cut to whole "
          "millions;\nLarge does not: ViT-L/16 has "
          f"{r['ViT-L/16']['params'] / 1e6:.1f}M, with or without its head not 307M.")

    # Resolution: the same ViT-B/16 at 384 x 384 (Section 3.2 fine-tunes at higher resolution).
    hi = ViTConfig(image_size=384)
    results["resolution"] = {"tokens_224": PUBLISHED["ViT-B/16"]["cfg"].n_patches + 1, "tokens_384": hi.n_patches + 1}
    results["resolution"]["score_ratio"] = (hi.n_patches + 1) ** 2 / results["resolution"]["tokens_224"] ** 2

    # Checks on a small config: an 8x8 single-channel image in 2x2 patches, and a 3-channel one.
    small = ViTConfig(image_size=8, patch_size=2, in_channels=1, n_classes=10, n_layer=2, n_head=4, d_model=32,
                      d_ff=64)
    results["check_config"] = asdict(small)
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 1, 8, 8, generator=g)  # (B, C, H, W)
    rgb = torch.rand(2, 3, 32, 32, generator=g)  # (B, C, H, W)
    e1 = check_patch_embedding(small, img)
    e2 = check_patch_embedding(ViTConfig(image_size=32, patch_size=4, d_model=48), rgb)
    print(f"\nConv2d(kernel=stride=P) vs unfold + linear (and patchify + linear): max |diff| {max(e1, e2):.1e}")
    s1, s2 = check_round_trip(img, 2), check_round_trip(rgb, 4)
    print(f"patchify -> unpatchify returns the image exactly: {tuple(img.shape)} -> {tuple(s1)} -> back, "
          f"{tuple(rgb.shape)} -> {tuple(s2)} -> back")
    ea = check_attention(small)
    print(f"attention vs F.scaled_dot_product_attention (no mask): max |diff| {ea:.1e}")
    model = ViT(small).eval()
    dpos_init, dpos, pos_std = check_needs_positions(model, img, 2)
    print(f"shuffled patches: without position embeddings the same states, shuffled alike; with them the "
          f"token states change by {dpos_init:.1%} (E_pos as initialised, std 0.02) and by {dpos:.0%} "
          f"(unit-scale random E_pos)")
    results.update(patch_embed_max_abs_err=max(e1, e2), attention_max_abs_err=ea, shuffle_state_rel_change=dpos,
                   shuffle_state_rel_change_at_init=dpos_init, shuffle_unit_pos_std=pos_std,
                   round_trip_shapes=[list(s1), list(s2)])
    (OUT / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
