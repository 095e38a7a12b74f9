"""Reformer (Kitaev, Kaiser & Levskaya 2020, arXiv:2001.04451): LSH attention + reversible layers.

Two changes to the Transformer. (1) Attention: queries and keys share one projection, are hashed
with random rotations, sorted by bucket and cut into chunks; each query attends only within its
chunk and the one before (Section 2). (2) Residuals: each block is reversible,
Y1 = X1 + Attention(X2), Y2 = X2 + FeedForward(Y1), so the backward pass recomputes a layer's
input from its output instead of storing it (Section 3); activation memory stops growing with depth.

Run from the repo root:  python snippets/architectures/reformer/model.py
It checks the claims below and writes results.json and two figures to ./model_out/.
"""
# build: measures=memory  (peak memory of LSH and reversible layers)
from __future__ import annotations

import ctypes
import json
import math
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
MASKED, SELF = -1e9, -1e5  # logit for a forbidden pair; for a token attending to itself (used only if alone)


# --8<-- [start:core]
@dataclass
class ReformerConfig:
    vocab_size: int = 256  # enwik8 is modelled byte by byte
    n_layers: int = 12  # "a 12-layer model on enwik8" (Section 5)
    n_heads: int = 8  # all experiments (Section 5)
    d_model: int = 1024  # width of EACH of the two residual streams (Section 5)
    d_ff: int = 4096  # feed-forward hidden width (Section 5)
    bucket_size: int = 64  # average tokens per hash bucket, l / n_buckets; chunks are 2x this (Section 2)
    n_hashes: int = 2  # rounds of hashing (Eq. 6); more rounds = closer to full attention (Fig. 4)
    ff_chunks: int = 4  # the feed-forward runs on this many slices of the sequence (Eq. 10)
    causal: bool = True  # the paper's enwik8 and imagenet64 models are language models


class LayerNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))  # (d,)
        self.bias = nn.Parameter(torch.zeros(d))  # (d,)

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)  # (x - mean) / std * w + b


def lsh_attention(qk, v, n_buckets: int, chunk_len: int, n_hashes: int, causal: bool, rotations=None):
    """Shared-QK attention restricted to hash buckets (Eqs. 3-6, Appendix A).

    qk: (B, H, T, d) shared queries/keys; v: (B, H, T, dv); rotations: (n_hashes, d, n_buckets // 2).
    n_buckets == 1 puts every token in one bucket. Returns (B, H, T, dv).
    """
    B, H, T, d = qk.shape
    R, dv, ar = n_hashes, v.shape[-1], torch.arange(T, device=qk.device)
    # 1) hash: h(x) = argmax([xR ; -xR]), one random rotation per round (Section 2)
    if n_buckets == 1:
        buckets = torch.zeros(B, H, R, T, dtype=torch.long, device=qk.device)  # (B, H, R, T)
    else:
        rot = torch.einsum("bhtd,rdk->bhrtk", qk, rotations)  # (B, H, R, T, n_buckets/2)
        buckets = torch.cat([rot, -rot], dim=-1).argmax(-1)  # (B, H, R, T) bucket of each token, each round
    # 2) sort by (round, bucket, position): one key per (round, token); rounds never mix
    bucket_ids = buckets + n_buckets * torch.arange(R, device=qk.device).view(1, 1, R, 1)  # (B, H, R, T)
    keys = (bucket_ids * T + ar).flatten(2)  # (B, H, R*T)
    _, order = keys.sort(dim=-1)  # (B, H, R*T) sorted slot -> (round, position) index
    pos = order % T  # (B, H, R*T) original position of each sorted slot
    bid = bucket_ids.flatten(2).gather(-1, order)  # (B, H, R*T) bucket id of each sorted slot
    sq = qk.gather(2, pos.unsqueeze(-1).expand(-1, -1, -1, d))  # (B, H, R*T, d) sorted queries
    sv = v.gather(2, pos.unsqueeze(-1).expand(-1, -1, -1, dv))  # (B, H, R*T, dv) sorted values
    # 3) chunk: each chunk of m sorted queries attends to itself and the chunk before (Eq. 5)
    nc = R * T // chunk_len
    q = sq.view(B, H, nc, chunk_len, d)  # (B, H, nc, m, d)
    k = F.normalize(q, dim=-1)  # (B, H, nc, m, d)   k_j = q_j / |q_j|
    cv = sv.view(B, H, nc, chunk_len, dv)  # (B, H, nc, m, dv)
    cp, cb = pos.view(B, H, nc, chunk_len), bid.view(B, H, nc, chunk_len)  # (B, H, nc, m) each

    def look_back(t):  # (B, H, nc, m, ...) -> (B, H, nc, 2m, ...): this chunk, then the previous one
        return t if nc == 1 else torch.cat([t, t.roll(1, dims=2)], dim=3)

    k, cv, kp, kb = look_back(k), look_back(cv), look_back(cp), look_back(cb)  # keys: (B, H, nc, 2m, ...)
    dots = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, nc, m, 2m) the only scores ever computed
    qp, qb = cp.unsqueeze(-1), cb.unsqueeze(-1)  # (B, H, nc, m, 1)
    kp, kb = kp.unsqueeze(-2), kb.unsqueeze(-2)  # (B, H, nc, 1, 2m)
    dots = dots.masked_fill(qb != kb, MASKED)  # attend within the same bucket only (Eq. 4)
    if causal:
        dots = dots.masked_fill(kp > qp, MASKED)  # no attention to the future
    dots = dots.masked_fill((kp == qp) & (qb == kb), SELF)  # not itself, unless nothing else is allowed (Section 2)
    # a pair that shares a bucket in several rounds is counted once: subtract log N_ij (Appendix A)
    all_b = bucket_ids.permute(0, 1, 3, 2)  # (B, H, T, R) every round's bucket of each position
    qa = all_b.gather(2, cp.flatten(2).unsqueeze(-1).expand(-1, -1, -1, R))  # (B, H, R*T, R) per sorted slot
    qa = qa.view(B, H, nc, chunk_len, 1, R)  # (B, H, nc, m, 1, R)
    ka = look_back(qa.squeeze(-2)).unsqueeze(-3)  # (B, H, nc, 1, 2m, R)
    dots = dots - (qa == ka).sum(-1, dtype=dots.dtype).clamp(min=1).log()  # (B, H, nc, m, 2m)
    top = dots.amax(dim=-1, keepdim=True)  # (B, H, nc, m, 1)
    # softmax by hand (we also need its normaliser): exp() below -80 is < 1e-34, i.e. nothing, and
    # exp() of the far more negative masked logits would only be slow on a CPU, so clamp first
    e = (dots - top).clamp(min=-80.0).exp()  # (B, H, nc, m, 2m)
    z = e.sum(dim=-1, keepdim=True)  # (B, H, nc, m, 1)
    out = (e / z) @ cv  # (B, H, nc, m, dv)
    lse = top + z.log()  # (B, H, nc, m, 1)   log of each query's normaliser
    # 4) undo the sort, then combine the rounds weighted by their normalisers (Appendix A)
    undo = order.argsort(dim=-1)  # (B, H, R*T)
    out = out.view(B, H, R * T, dv).gather(2, undo.unsqueeze(-1).expand(-1, -1, -1, dv))  # (B, H, R*T, dv)
    lse = lse.view(B, H, R * T).gather(-1, undo)  # (B, H, R*T)
    w = lse.view(B, H, R, T).softmax(dim=2).unsqueeze(-1)  # (B, H, R, T, 1)   exp(z_r - z)
    return (out.view(B, H, R, T, dv) * w).sum(dim=2)  # (B, H, T, dv)


class LSHSelfAttention(nn.Module):
    """Multi-head attention with one shared query/key projection and LSH bucketing; no biases."""

    def __init__(self, cfg: ReformerConfig):
        super().__init__()
        self.cfg, self.h, self.dh = cfg, cfg.n_heads, cfg.d_model // cfg.n_heads
        self.qk = nn.Linear(cfg.d_model, cfg.d_model, bias=False)  # shared W_QK (Section 2)
        self.v = nn.Linear(cfg.d_model, cfg.d_model, bias=False)  # W_V
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)  # W_O

    def buckets_for(self, T: int):
        n_buckets = max(1, T // self.cfg.bucket_size)  # average bucket holds bucket_size tokens
        n_buckets += n_buckets % 2 if n_buckets > 1 else 0  # even: h(x) = argmax([xR; -xR])
        chunk_len = 2 * T // n_buckets if n_buckets > 1 else T  # m = 2l / n_buckets (Section 2)
        return n_buckets, chunk_len

    def rotations(self, T: int, seed: int, like: torch.Tensor):
        """Random rotations for this call; the same seed gives the same hashes (needed to reverse)."""
        n_buckets, _ = self.buckets_for(T)
        g = torch.Generator().manual_seed(seed)
        r = torch.randn(self.cfg.n_hashes, self.dh, max(1, n_buckets // 2), generator=g)
        return r.to(like)  # (n_hashes, d_head, n_buckets/2), on like's device and dtype

    def forward(self, x, seed: int, value=None):
        B, T, D = x.shape
        qk = self.qk(x).view(B, T, self.h, self.dh).transpose(1, 2)  # (B, H, T, d_head)
        v = self.v(x).view(B, T, self.h, self.dh).transpose(1, 2) if value is None else value  # (B, H, T, dv)
        n_buckets, chunk_len = self.buckets_for(T)
        y = lsh_attention(qk, v, n_buckets, chunk_len, self.cfg.n_hashes, self.cfg.causal,
                          self.rotations(T, seed, qk))  # (B, H, T, dv)
        if value is not None:
            return y  # (B, H, T, dv) raw weights x value, used to draw the attention pattern
        return self.out(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)

    def attention_matrix(self, x, seed: int):
        """The (B, H, T, T) weights LSH attention actually used: run it with V = identity."""
        B, T, _ = x.shape
        eye = torch.eye(T, device=x.device).expand(B, self.h, T, T)  # (B, H, T, T) one-hot values
        return self.forward(x, seed, value=eye)  # row i = weights of query i over all keys


class AttentionBranch(nn.Module):  # F in Eq. 9; LayerNorm moved inside the residual branch (Section 3)
    def __init__(self, cfg):
        super().__init__()
        self.ln, self.attn = LayerNorm(cfg.d_model), LSHSelfAttention(cfg)

    def forward(self, x, seed):
        return self.attn(self.ln(x), seed)  # (B, T, D)


class FeedForwardBranch(nn.Module):  # G in Eq. 9, applied to slices of the sequence (Eq. 10)
    def __init__(self, cfg):
        super().__init__()
        self.ln, self.chunks = LayerNorm(cfg.d_model), cfg.ff_chunks
        self.fc, self.proj = nn.Linear(cfg.d_model, cfg.d_ff), nn.Linear(cfg.d_ff, cfg.d_model)

    def ff(self, x):
        return self.proj(F.gelu(self.fc(self.ln(x))))  # (B, t, D); hidden (B, t, d_ff) for one slice only

    def forward(self, x):
        return torch.cat([self.ff(c) for c in x.chunk(self.chunks, dim=1)], dim=1)  # (B, T, D)


class ReversibleBlock(nn.Module):
    def __init__(self, cfg: ReformerConfig):
        super().__init__()
        self.f, self.g = AttentionBranch(cfg), FeedForwardBranch(cfg)

    def forward(self, x1, x2, seed):
        y1 = x1 + self.f(x2, seed)  # Y1 = X1 + Attention(X2)
        y2 = x2 + self.g(y1)  # Y2 = X2 + FeedForward(Y1)
        return y1, y2

    def inverse(self, y1, y2, seed):
        x2 = y2 - self.g(y1)  # X2 = Y2 - FeedForward(Y1)   (Eq. 8)
        x1 = y1 - self.f(x2, seed)  # X1 = Y1 - Attention(X2)
        return x1, x2


class ReversibleStack(torch.autograd.Function):
    """Forward keeps only the last (Y1, Y2); backward rebuilds each layer's input from its output."""

    @staticmethod
    def forward(ctx, x1, x2, blocks, seeds):
        with torch.no_grad():
            for block, seed in zip(blocks, seeds):
                x1, x2 = block(x1, x2, seed)  # (B, T, D) each; nothing stored for backward
        ctx.blocks, ctx.seeds = blocks, seeds
        ctx.save_for_backward(x1, x2)  # the ONLY activations kept: two (B, T, D) tensors
        return x1, x2

    @staticmethod
    def backward(ctx, dy1, dy2):
        y1, y2 = ctx.saved_tensors
        for block, seed in zip(reversed(ctx.blocks), reversed(ctx.seeds)):
            with torch.enable_grad():  # G: recompute FeedForward(Y1) slice by slice, backprop, reconstruct X2
                y1 = y1.detach().requires_grad_()
                gy1 = torch.cat([block.g.ff(c) for c in y1.chunk(block.g.chunks, dim=1)], dim=1)
                torch.autograd.backward(gy1, dy2)  # accumulates G's parameter grads; y1.grad = dG^T dy2
            with torch.no_grad():
                x2 = y2 - gy1  # X2 = Y2 - G(Y1)
                dx1 = dy1 + y1.grad  # dL/dY1 through both paths
            with torch.enable_grad():  # F: recompute Attention(X2) with the SAME hash seed
                x2 = x2.detach().requires_grad_()
                fx2 = block.f(x2, seed)
                torch.autograd.backward(fx2, dx1)
            with torch.no_grad():
                y1 = y1 - fx2  # X1 = Y1 - F(X2)
                dy2 = dy2 + x2.grad  # dL/dX2
                dy1 = dx1  # dL/dX1
            y2 = x2.detach()
        return dy1, dy2, None, None


def sinusoidal_positions(T: int, d: int) -> torch.Tensor:
    pos = torch.arange(T, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))  # (d/2,)
    pe = torch.zeros(T, d)  # (T, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe


class Reformer(nn.Module):
    def __init__(self, cfg: ReformerConfig):
        super().__init__()
        self.cfg = cfg
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)  # (V, D)
        self.blocks = nn.ModuleList(ReversibleBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_f = LayerNorm(2 * cfg.d_model)  # over [Y1; Y2]
        self.head = nn.Linear(2 * cfg.d_model, cfg.vocab_size)  # (2D -> V)

    def forward(self, idx, reversible: bool = True, seeds=None):
        B, T = idx.shape
        x = self.tok(idx) + sinusoidal_positions(T, self.cfg.d_model).to(idx.device)  # (B, T, D)
        if seeds is None:  # fresh hash rotations every call
            seeds = torch.randint(0, 2**62, (len(self.blocks),)).tolist()
        if reversible:
            y1, y2 = ReversibleStack.apply(x, x, list(self.blocks), seeds)  # (B, T, D) each
        else:  # same maths, ordinary autograd (stores every layer's activations)
            y1, y2 = x, x
            for block, seed in zip(self.blocks, seeds):
                y1, y2 = block(y1, y2, seed)
        return self.head(self.ln_f(torch.cat([y1, y2], dim=-1)))  # (B, T, V) logits


def param_formula(c: ReformerConfig) -> int:
    """Closed form: embedding VD + per layer (3D^2 attention without biases, 2 D d_ff + d_ff + D
    feed-forward, 4D for two LayerNorms) + final LayerNorm over 2D (4D) + head 2D*V + V."""
    V, D, Fh, n = c.vocab_size, c.d_model, c.d_ff, c.n_layers
    return V * D + n * (3 * D * D + 2 * D * Fh + Fh + D + 4 * D) + 4 * D + 2 * D * V + V
# --8<-- [end:core]


# ---------------------------------------------------------------- references for the checks
def full_shared_qk_attention(qk, v, causal, allowed=None):
    """Exact shared-QK attention over the whole (T, T) matrix, with the same masking rules."""
    T, d = qk.shape[-2], qk.shape[-1]
    dots = qk @ F.normalize(qk, dim=-1).transpose(-2, -1) / math.sqrt(d)  # (B, H, T, T)
    i, j = torch.arange(T).view(T, 1), torch.arange(T).view(1, T)  # (T, 1) query and (1, T) key positions
    if allowed is not None:
        dots = dots.masked_fill(~allowed, MASKED)  # (B, H, T, T) bool: pairs that share a bucket
    if causal:
        dots = dots.masked_fill(j > i, MASKED)
    dots = dots.masked_fill(j == i, SELF)
    return dots.softmax(-1) @ v  # (B, H, T, dv)


def check_lsh_equals_full():
    """One bucket -> LSH attention is full attention; windows covering a whole round -> it is
    full attention over the union of each round's bucket (Eq. 6), with duplicates counted once."""
    g = torch.Generator().manual_seed(0)
    B, H, T, d = 2, 3, 32, 8
    qk, v = torch.randn(B, H, T, d, generator=g, dtype=torch.float64), torch.randn(B, H, T, d, generator=g,
                                                                                   dtype=torch.float64)
    errs = {}
    for causal in (True, False):
        for R in (1, 3):
            out = lsh_attention(qk, v, n_buckets=1, chunk_len=T, n_hashes=R, causal=causal)
            ref = full_shared_qk_attention(qk, v, causal)
            torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
            errs[f"one_bucket_causal{int(causal)}_rounds{R}"] = (out - ref).abs().max().item()
        # 4 real buckets, 3 rounds, one chunk per round: the union-of-buckets attention of Eq. 6
        rot = torch.randn(3, d, 2, generator=g, dtype=torch.float64)  # (R, d, n_buckets/2)
        out = lsh_attention(qk, v, n_buckets=4, chunk_len=T, n_hashes=3, causal=causal, rotations=rot)
        bk = torch.einsum("bhtd,rdk->bhrtk", qk, rot)
        bk = torch.cat([bk, -bk], -1).argmax(-1)  # (B, H, R, T)
        allowed = (bk.unsqueeze(-1) == bk.unsqueeze(-2)).any(dim=2)  # (B, H, T, T) same bucket in some round
        ref = full_shared_qk_attention(qk, v, causal, allowed)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
        errs[f"union_of_buckets_causal{int(causal)}"] = (out - ref).abs().max().item()
    return errs


def check_reversible():
    """Inputs rebuilt from outputs, and gradients of the reversible backward equal ordinary autograd."""
    torch.manual_seed(0)
    cfg = ReformerConfig(vocab_size=20, n_layers=3, n_heads=2, d_model=16, d_ff=32, bucket_size=4, n_hashes=2)
    model = Reformer(cfg).double()
    block = model.blocks[0]
    x1, x2 = torch.randn(2, 24, 16, dtype=torch.float64), torch.randn(2, 24, 16, dtype=torch.float64)
    with torch.no_grad():
        y1, y2 = block(x1, x2, seed=123)
        r1, r2 = block.inverse(y1, y2, seed=123)
    torch.testing.assert_close(r1, x1, rtol=0, atol=1e-12)
    torch.testing.assert_close(r2, x2, rtol=0, atol=1e-12)
    recon = max((r1 - x1).abs().max().item(), (r2 - x2).abs().max().item())
    # whole stack in float32: the error the real model lives with
    m32 = Reformer(cfg)
    a1, a2 = torch.randn(2, 24, 16), torch.randn(2, 24, 16)
    with torch.no_grad():
        b1, b2 = a1, a2
        for i, blk in enumerate(m32.blocks):
            b1, b2 = blk(b1, b2, seed=i)
        for i, blk in reversed(list(enumerate(m32.blocks))):
            b1, b2 = blk.inverse(b1, b2, seed=i)
    torch.testing.assert_close(b1, a1, rtol=0, atol=1e-5)
    torch.testing.assert_close(b2, a2, rtol=0, atol=1e-5)
    recon32 = max((b1 - a1).abs().max().item(), (b2 - a2).abs().max().item())
    # gradients: reversible backward vs autograd through the identical computation
    idx, seeds = torch.randint(0, 20, (2, 24)), [11, 22, 33]
    grads = []
    for reversible in (True, False):
        model.zero_grad()
        model(idx, reversible=reversible, seeds=seeds).logsumexp(-1).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    grad_err = max((a - b).abs().max().item() for a, b in zip(*grads))
    return {"block_reconstruction_max_abs_err_fp64": recon, "stack_reconstruction_max_abs_err_fp32": recon32,
            "grad_max_abs_diff_fp64": grad_err}


# ---------------------------------------------------------------- activation memory, measured
MEM = dict(B=1, T=512, d_model=128, n_heads=4, d_ff=512, bucket_size=32, n_hashes=2, ff_chunks=4)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def peak_memory_case(kind: str, n_layers: int):
    """In a fresh forkserver process: peak RSS above baseline of one forward+backward pass."""
    try:  # glibc: serve every block >= 64 KiB by mmap and return it on free, so RSS tracks live tensors
        ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024)  # -3 = M_MMAP_THRESHOLD (a fixed value stops it growing)
    except (OSError, AttributeError):
        pass
    torch.set_num_threads(1)
    torch.manual_seed(0)
    c = MEM
    cfg = ReformerConfig(vocab_size=2, n_layers=n_layers, n_heads=c["n_heads"], d_model=c["d_model"],
                         d_ff=c["d_ff"], bucket_size=c["bucket_size"], n_hashes=c["n_hashes"], ff_chunks=c["ff_chunks"])
    blocks = [ReversibleBlock(cfg) for _ in range(n_layers)]
    seeds = list(range(n_layers))

    def run(x):
        if kind == "reversible":  # two streams, Y1 = X1 + F(X2), Y2 = X2 + G(Y1), custom backward
            y1, y2 = ReversibleStack.apply(x, x, blocks, seeds)
            out = y1 + y2
        else:  # ordinary residual stack with the same F and G: x += F(x); x += G(x); autograd stores all
            out = x
            for blk, s in zip(blocks, seeds):
                out = out + blk.f(out, s)
                out = out + blk.g(out)
        out.square().mean().backward()

    run(torch.randn(1, 128, c["d_model"], requires_grad=True))  # warm-up: one-time allocations
    for blk in blocks:
        for p in blk.parameters():
            p.grad = torch.zeros_like(p)  # gradient buffers exist before measuring (same for both kinds)
    x = torch.randn(c["B"], c["T"], c["d_model"], requires_grad=True)  # (B, T, D)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM (peak RSS) to the current RSS
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    run(x)
    peak = _status_kib("VmHWM") - base
    return {"peak_mib": peak / 1024, "seconds": time.perf_counter() - t0}


def measure_memory(layer_counts):
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch"])
    rows = {}
    with ctx.Pool(1, maxtasksperchild=1) as pool:  # a fresh process per case
        for n in layer_counts:
            for kind in ("ordinary", "reversible"):
                rows[kind, n] = pool.apply(peak_memory_case, (kind, n))
    return rows


def plot_memory(layer_counts, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "savefig.facecolor": "white",
                         "savefig.transparent": False})
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for kind, color, marker in (("ordinary", "#d62728", "s"), ("reversible", "#1f77b4", "o")):
        ys = [rows[kind, n]["peak_mib"] for n in layer_counts]
        ax.plot(layer_counts, ys, marker=marker, color=color, label=f"{kind} residual layers")
    ax.set_xlabel("number of layers n_l")
    ax.set_ylabel("peak memory of forward + backward (MiB)")
    ax.set_xticks(layer_counts)
    ax.set_ylim(bottom=0)
    ax.set_title(f"T = {MEM['T']}, d = {MEM['d_model']}, d_ff = {MEM['d_ff']}, LSH attention, fp32", fontsize=9)
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def plot_patterns(path):
    """Full shared-QK attention vs the weights LSH attention used, 1 and 4 rounds (cf. Fig. 2, Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    g = torch.Generator().manual_seed(5)
    T, d, n_topics = 64, 16, 8
    centers = torch.randn(n_topics, d, generator=g) * 2.0  # (8, d)
    topic = torch.randint(0, n_topics, (T,), generator=g)  # (T,) tokens from 8 interleaved clusters
    qk = (centers[topic] + 0.6 * torch.randn(T, d, generator=g)).view(1, 1, T, d)  # (1, 1, T, d)
    eye = torch.eye(T).view(1, 1, T, T)  # V = identity -> output rows are the attention weights
    full = full_shared_qk_attention(qk, eye, causal=False)[0, 0]  # (T, T)
    mats, errs = {"full shared-QK attention": full}, {}
    for R in (1, 4):
        rot = torch.randn(R, d, 4, generator=g)  # 8 buckets
        a = lsh_attention(qk, eye, n_buckets=8, chunk_len=16, n_hashes=R, causal=False, rotations=rot)[0, 0]
        mats[f"LSH, {R} round{'s' if R > 1 else ''}"] = a
        errs[R] = (a - full).abs().sum(-1).mean().item() / 2  # mean total-variation distance per query
    order = torch.argsort(topic * T + torch.arange(T))  # show tokens grouped by cluster
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.1))
    vmax = torch.cat([a.flatten() for a in mats.values()]).quantile(0.995).item()  # one scale, top 0.5% clipped
    for ax, (title, a) in zip(axes, mats.items()):
        ax.imshow(a[order][:, order].numpy(), cmap="viridis", norm=PowerNorm(0.5, vmin=0, vmax=vmax),
                  interpolation="nearest")  # square-root colour scale: small weights stay visible
        R = 1 if "1 round" in title else 4
        ax.set_title(title + ("\n" if title.startswith("full") else f"\nmean TV distance {errs[R]:.3f}"), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("key (grouped by cluster)")
    axes[0].set_ylabel("query (grouped by cluster)")
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return errs


def main():
    t0 = time.perf_counter()
    OUT.mkdir(parents=True, exist_ok=True)
    results = {}

    # 1) Parameter count of the paper's 12-layer enwik8 configuration, on the meta device.
    cfg = ReformerConfig()
    with torch.device("meta"):
        model = Reformer(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == param_formula(cfg), (n_params, param_formula(cfg))
    results["params"] = {"count": n_params, "formula": param_formula(cfg), "millions": n_params / 1e6,
                         "paper_figure": None, "config": asdict(cfg),
                         "source": "Kitaev et al. 2020, Section 5 (d_model, d_ff, n_heads; 12-layer enwik8 model)"}
    print(f"Parameters, 12 layers, d_model = {cfg.d_model} per stream, d_ff = {cfg.d_ff}, {cfg.n_heads} heads, "
          f"vocab {cfg.vocab_size} (paper Section 5):")
    print(f"  meta-device count {n_params:,} = closed form {param_formula(cfg):,}; the paper reports no count")

    # 2) LSH attention is exact when the buckets hide nothing.
    errs = check_lsh_equals_full()
    results["lsh_vs_full_max_abs_err"] = max(errs.values())
    print(f"LSH attention with one bucket = full shared-QK attention (causal and not, 1 and 3 rounds): "
          f"max |diff| {max(v for k, v in errs.items() if k.startswith('one')):.1e}")
    print(f"LSH with 4 buckets x 3 rounds = full attention over the union of shared buckets (Eq. 6): "
          f"max |diff| {max(v for k, v in errs.items() if k.startswith('union')):.1e}")

    # 3) Reversibility: inputs from outputs; the memory-free backward gives the same gradients.
    rev = check_reversible()
    results["reversible"] = rev
    print(f"Reversible block: inputs rebuilt from outputs, max |error| "
          f"{rev['block_reconstruction_max_abs_err_fp64']:.1e} (fp64); "
          f"3-layer stack in fp32: {rev['stack_reconstruction_max_abs_err_fp32']:.1e}")
    print(f"Reversible backward vs ordinary autograd: max |grad diff| {rev['grad_max_abs_diff_fp64']:.1e} (fp64)")

    # 4) LSH gets closer to full attention with more hashing rounds (clustered inputs).
    tv = plot_patterns(OUT / "attention_patterns.svg")
    assert tv[4] < tv[1], tv
    results["pattern_tv"] = {"rounds1": tv[1], "rounds4": tv[4]}
    print(f"Clustered inputs, 8 buckets: distance to full attention {tv[1]:.3f} with 1 round, {tv[4]:.3f} with 4")

    # 5) Activation memory of forward + backward, each case in its own process.
    layer_counts = [2, 4, 8]
    rows = measure_memory(layer_counts)
    plot_memory(layer_counts, rows, OUT / "memory.svg")
    o, r = {n: rows["ordinary", n]["peak_mib"] for n in layer_counts}, {n: rows["reversible", n]["peak_mib"]
                                                                        for n in layer_counts}
    print(f"Peak memory of forward+backward, T = {MEM['T']}, d = {MEM['d_model']} (VmHWM after clear_refs, "
          f"one process per case):")
    print(f"  {'layers':>6} {'ordinary MiB':>13} {'reversible MiB':>15}")
    for n in layer_counts:
        print(f"  {n:>6} {o[n]:>13.1f} {r[n]:>15.1f}")
    lo, hi = layer_counts[0], layer_counts[-1]
    assert o[hi] / o[lo] > 2.5, f"ordinary residual memory should grow with depth: {o}"
    assert r[hi] / r[lo] < 1.2, f"reversible memory should not grow with depth: {r}"
    assert r[hi] < o[hi] / 3, f"at {hi} layers the reversible stack should need far less: {r[hi]} vs {o[hi]}"
    results["memory"] = {"config": MEM, "layers": layer_counts, "ordinary_mib": [o[n] for n in layer_counts],
                         "reversible_mib": [r[n] for n in layer_counts], "ordinary_growth": o[hi] / o[lo],
                         "reversible_growth": r[hi] / r[lo], "ratio_at_max": o[hi] / r[hi], "max_layers": hi,
                         "min_layers": lo, "ordinary_at_max": o[hi], "reversible_at_max": r[hi],
                         "ordinary_at_min": o[lo], "reversible_at_min": r[lo],
                         "method": "VmHWM after clear_refs, forkserver process per case",
                         "per_layer_ordinary_mib": (o[hi] - o[lo]) / (hi - lo),
                         "per_layer_reversible_mib": (r[hi] - r[lo]) / (hi - lo),
                         "time_ratio_at_max": rows["reversible", hi]["seconds"] / rows["ordinary", hi]["seconds"]}
    print(f"  at {hi} layers the ordinary stack needs {o[hi] / r[hi]:.1f}x the memory of the reversible one")

    results["seconds"] = time.perf_counter() - t0
    (OUT / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
