"""GPT: a decoder-only transformer language model (GPT-1 2018, GPT-2 2019), in one readable file.

A stack of identical blocks, each causal self-attention then an MLP, each
wrapped in a residual connection with a LayerNorm; token plus learned position
embeddings in, next-token logits out through the (tied) embedding matrix.
GPT-1 puts the LayerNorm after each residual add (post-LN, as Vaswani et al.
2017); GPT-2 moves it to the input of each sub-block and adds a final one
(pre-LN, Radford et al. 2019, Section 2.3). `GPTConfig.pre_norm` switches.

Run alone, this file counts the published models' parameters on the meta
device, and checks that the causal attention equals
F.scaled_dot_product_attention(is_causal=True), that no position sees the
future, and that greedy generation with a KV cache gives exactly the tokens
generation without one gives.

Run from the repo root:  python snippets/architectures/gpt/model.py
"""
# build: measures=time  (times generation with and without the KV cache)
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))


# --8<-- [start:core]
@dataclass
class GPTConfig:
    vocab_size: int = 50257  # tokens: GPT-2's byte-level BPE vocabulary (Radford et al. 2019, Section 2.3)
    block_size: int = 1024  # tokens: longest context, one learned position embedding each (Section 2.3)
    n_layer: int = 12  # blocks stacked (Table 2)
    n_head: int = 12  # attention heads per block; head size = d_model / n_head = 64
    d_model: int = 768  # width of the residual stream (Table 2)
    d_ff: int = 3072  # MLP hidden width: 4 * d_model, as GPT-1 (Radford et al. 2018, Section 4.1)
    dropout: float = 0.1  # probability; on residuals, embeddings and attention (GPT-1, Section 4.1)
    pre_norm: bool = True  # True: GPT-2 (LN before each sub-block, final LN); False: GPT-1 (LN after the add)
    tie_weights: bool = True  # output layer reuses the token embedding: logits = h W_e^T (GPT-1, Eq. 2)


class LayerNorm(nn.Module):
    """LN(x) = gamma * (x - mean) / sqrt(var + eps) + beta, over the last (feature) axis."""

    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d)), eps

    def forward(self, x):  # x: (B, T, d)
        mean = x.mean(-1, keepdim=True)  # (B, T, 1)
        var = x.var(-1, keepdim=True, unbiased=False)  # (B, T, 1)
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias  # (B, T, d)


class CausalSelfAttention(nn.Module):
    """Multi-head attention where token t may only look at tokens 0..t."""

    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.d_head = cfg.n_head, cfg.d_model // cfg.n_head
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # [W_q | W_k | W_v] in one matmul
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)  # W_o: concatenated heads -> residual stream
        self.attn_drop, self.resid_drop = nn.Dropout(cfg.dropout), nn.Dropout(cfg.dropout)
        self.last_att = None  # (B, H, T, S) attention weights of the last call, kept for plotting

    def heads(self, x):
        """Project x and split into heads: three (B, H, T, d_head) tensors."""
        B, T, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=-1)  # (B, T, d) each
        # each: (B, T, d) -> (B, T, H, dh) -> (B, H, T, dh)
        return [t.view(B, T, self.n_head, self.d_head).transpose(1, 2) for t in (q, k, v)]

    def forward(self, x, cache=None):
        """x: (B, T, d) new tokens; cache: (k, v) of the S - T earlier tokens, each (B, H, S - T, d_head)."""
        B, T, d = x.shape
        q, k, v = self.heads(x)  # (B, H, T, dh) each
        if cache is not None:  # the keys and values of earlier tokens are reused, not recomputed
            k = torch.cat([cache[0], k], dim=2)  # (B, H, S, dh)
            v = torch.cat([cache[1], v], dim=2)  # (B, H, S, dh)
        S = k.shape[2]  # keys visible: earlier (cached) tokens plus the T new ones
        att = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # scores QK^T / sqrt(d_head): (B, H, T, S)
        # New query i sits at absolute position S - T + i; it may see key j iff j <= S - T + i.
        future = torch.ones(T, S, dtype=torch.bool, device=x.device).triu(S - T + 1)  # (T, S), True = masked
        att = att.masked_fill(future, float("-inf")).softmax(dim=-1)  # softmax over keys: rows sum to 1
        self.last_att = att.detach()
        y = self.attn_drop(att) @ v  # weighted sum of values: (B, H, T, dh)
        y = y.transpose(1, 2).reshape(B, T, d)  # (B, H, T, dh) -> (B, T, H, dh) -> (B, T, d): concat heads
        return self.resid_drop(self.c_proj(y)), (k, v)  # (B, T, d), new cache


class MLP(nn.Module):
    """Position-wise feed-forward: FFN(x) = GELU(x W_1 + b_1) W_2 + b_2, applied to each token alone."""

    def __init__(self, cfg):
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(cfg.d_model, cfg.d_ff), nn.Linear(cfg.d_ff, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):  # x: (B, T, d)
        return self.drop(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))  # (B, T, d_ff) -> (B, T, d)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.pre_norm = cfg.pre_norm
        self.ln_1, self.attn, self.ln_2, self.mlp = LayerNorm(cfg.d_model), CausalSelfAttention(cfg), \
            LayerNorm(cfg.d_model), MLP(cfg)

    def forward(self, x, cache=None):  # x: (B, T, d)
        if self.pre_norm:  # GPT-2: x + f(LN(x)); the residual stream itself is never normalised
            a, cache = self.attn(self.ln_1(x), cache)
            x = x + a
            x = x + self.mlp(self.ln_2(x))
        else:  # GPT-1 (and Vaswani et al. 2017): LN(x + f(x))
            a, cache = self.attn(x, cache)
            x = self.ln_1(x + a)
            x = self.ln_2(x + self.mlp(x))
        return x, cache  # (B, T, d)


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Parameter(torch.empty(cfg.vocab_size, cfg.d_model))  # token embedding W_e: (V, d)
        self.wpe = nn.Parameter(torch.empty(cfg.block_size, cfg.d_model))  # learned position embedding W_p: (T_max, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = LayerNorm(cfg.d_model) if cfg.pre_norm else nn.Identity()  # GPT-2's extra final LN
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # (d -> V)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte  # one (V, d) matrix, counted once
        if self.wte.is_meta:  # shapes only (for counting): there are no values to initialise
            return
        self.apply(self._init)
        nn.init.normal_(self.wte, mean=0.0, std=0.02)
        nn.init.normal_(self.wpe, mean=0.0, std=0.02)
        for name, p in self.named_parameters():  # GPT-2, Section 2.3: residual layers scaled by 1/sqrt(N)
            if name.endswith("c_proj.weight"):  # N = 2 * n_layer residual branches
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m):  # N(0, 0.02) weights (GPT-1, Section 4.1), zero biases
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, caches=None):
        """idx: (B, T) token ids; caches: one (k, v) per block, or None. Returns (B, T, V) logits, caches."""
        B, T = idx.shape
        past = 0 if caches is None else caches[0][0].shape[2]  # tokens already in the cache
        assert past + T <= self.cfg.block_size, "longer than the context window"
        pos = torch.arange(past, past + T, device=idx.device)  # (T,) absolute positions
        x = self.drop(self.wte[idx] + self.wpe[pos])  # h_0 = U W_e + W_p, rows looked up: (B, T, d)
        new_caches = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, None if caches is None else caches[i])  # (B, T, d)
            new_caches.append(c)
        return self.lm_head(self.ln_f(x)), new_caches  # (B, T, V)


@torch.no_grad()
def generate(model, idx, n_new, use_cache=True, temperature=0.0, generator=None):
    """Append n_new tokens to idx (B, T0). temperature 0: greedy (argmax); else sample."""
    caches, x = None, idx
    for _ in range(n_new):
        if use_cache:  # first step: the whole prompt (prefill); then only the newest token
            logits, caches = model(x if caches is None else x[:, -1:], caches)  # (B, T or 1, V)
        else:  # re-read the whole text every step
            logits, _ = model(x)  # (B, T, V)
        logits = logits[:, -1]  # (B, V): next-token scores
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)  # (B, 1)
        else:
            nxt = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)  # (B, 1)
        x = torch.cat([x, nxt], dim=1)  # (B, T + 1)
    return x
# --8<-- [end:core]


def count(model):
    return sum(p.numel() for p in model.parameters())  # a tied tensor is yielded once


def formula(cfg):
    """Closed form: embeddings + n_layer * (attention + MLP + 2 LN) + final LN (+ untied head)."""
    V, P, d, f, L = cfg.vocab_size, cfg.block_size, cfg.d_model, cfg.d_ff, cfg.n_layer
    attn = d * 3 * d + 3 * d + d * d + d  # c_attn and c_proj, weights and biases
    mlp = d * f + f + f * d + d
    block = attn + mlp + 2 * 2 * d  # two LayerNorms, gamma and beta each
    final_ln = 2 * d if cfg.pre_norm else 0
    head = 0 if cfg.tie_weights else V * d
    return V * d + P * d + L * block + final_ln + head


# Published configurations. GPT-2: layers and d_model from Table 2 (Radford et al. 2019); vocabulary
# 50,257 and context 1024 (Section 2.3); "paper" is Table 2's parameter column; "readme" the sizes the
# openai/gpt-2 README gives after "our original parameter counts were wrong due to an error".
# GPT-1 (Radford et al. 2018, Section 4.1): 12 layers, 768 wide, 12 heads, MLP 3072, 512-token context,
# post-LN; vocabulary 40,478 in the released model (40,000 BPE merges, Section 4.1, plus base symbols).
# Heads (not in Table 2): 12/16/20/25 in the released checkpoints, head size 64; they add no parameters.
# Its 117M is the first row of GPT-2's Table 2 ("the smallest model is equivalent to the original GPT",
# GPT-2 paper, Section 3).
PUBLISHED = {
    "GPT-1": dict(cfg=GPTConfig(vocab_size=40478, block_size=512, pre_norm=False), paper=117e6, readme=None),
    "GPT-2 small": dict(cfg=GPTConfig(), paper=117e6, readme=124e6),
    "GPT-2 medium": dict(cfg=GPTConfig(n_layer=24, n_head=16, d_model=1024, d_ff=4096), paper=345e6, readme=355e6),
    "GPT-2 large": dict(cfg=GPTConfig(n_layer=36, n_head=20, d_model=1280, d_ff=5120), paper=762e6, readme=774e6),
    "GPT-2 XL": dict(cfg=GPTConfig(n_layer=48, n_head=25, d_model=1600, d_ff=6400), paper=1542e6, readme=1558e6),
}
GPT1_VOCAB = 40478


def check_attention_matches_sdpa(cfg):
    """Our explicit masked softmax(QK^T/sqrt(d))V equals PyTorch's fused causal kernel."""
    torch.manual_seed(0)
    attn = CausalSelfAttention(cfg).eval()
    x = torch.randn(3, 37, cfg.d_model)  # (B, T, d)
    y_ours, _ = attn(x)  # (B, T, d)
    q, k, v = attn.heads(x)  # (B, H, T, dh) each
    y_ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, dh)
    y_ref = attn.c_proj(y_ref.transpose(1, 2).reshape(x.shape))  # (B, T, H, dh) -> (B, T, d)
    torch.testing.assert_close(y_ours, y_ref, rtol=1e-5, atol=1e-5)
    assert torch.all(attn.last_att.triu(1) == 0), "weight on a future token"
    torch.testing.assert_close(attn.last_att.sum(-1), torch.ones(3, cfg.n_head, 37))
    return (y_ours - y_ref).abs().max().item()


def check_no_future_leak(model, vocab):
    """Changing token t changes no logit before position t."""
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(vocab, (2, 24), generator=g)  # (B, T)
    t = 15
    idx2 = idx.clone()
    idx2[:, t:] = torch.randint(vocab, (2, 24 - t), generator=g)  # new tokens from position t on
    a, _ = model(idx)
    b, _ = model(idx2)
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=0)  # bit-identical before t
    assert not torch.allclose(a[:, t:], b[:, t:]), "the changed tokens had no effect at all"
    return t


def check_kv_cache(model, vocab, n_new=40):
    """Greedy generation with a KV cache gives the same tokens as re-reading the text each step."""
    g = torch.Generator().manual_seed(2)
    prompt = torch.randint(vocab, (2, 8), generator=g)  # (B, T0)
    t0 = time.perf_counter()
    no_cache = generate(model, prompt, n_new, use_cache=False)  # (B, T0 + n_new)
    t1 = time.perf_counter()
    cached = generate(model, prompt, n_new, use_cache=True)  # (B, T0 + n_new)
    t2 = time.perf_counter()
    assert torch.equal(no_cache, cached), "the KV cache changed the generated tokens"
    # The logits agree too: the cached pass for the last token against a full pass over the text.
    full, _ = model(cached[:, :-1])  # (B, T, V)
    _, caches = model(cached[:, :-2])  # prefill all but the last input token
    step, caches = model(cached[:, -2:-1], caches)  # (B, 1, V)
    cfg, S = model.cfg, cached.shape[1] - 1  # tokens now in the cache
    cache_numbers = sum(k.numel() + v.numel() for k, v in caches)  # L layers, keys and values
    assert cache_numbers == prompt.shape[0] * S * 2 * cfg.n_layer * cfg.d_model  # 2 L d numbers per token
    err = (full[:, -1] - step[:, 0]).abs().max().item()
    torch.testing.assert_close(full[:, -1], step[:, 0], rtol=1e-4, atol=1e-4)
    return {"tokens_identical": True, "n_new": n_new, "prompt_len": prompt.shape[1],
            "max_abs_logit_diff": err, "seconds_no_cache": t1 - t0, "seconds_cache": t2 - t1}


def attention_figure(model, vocab, path):
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
                         "savefig.transparent": False})
    T = 16
    idx = torch.randint(vocab, (1, T), generator=torch.Generator().manual_seed(3))  # (1, T)
    model(idx)
    att = model.blocks[0].attn.last_att[0]  # (H, T, T)
    mask = torch.ones(T, T).tril()  # (T, T): 1 where key j <= query i
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.0))
    panels = [(mask, "causal mask: key j ≤ query i"), (att[0], "head 0, random init"),
              (att[1], "head 1, random init")]
    for ax, (m, title) in zip(axes, panels):
        ax.imshow(m.numpy(), cmap="Blues", vmin=0, vmax=float(m.max()))
        ax.set_title(title)
        ax.set_xlabel("key position j")
        ax.set_xticks([0, T - 1])
        ax.set_yticks([0, T - 1])
    axes[0].set_ylabel("query position i")
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    assert torch.all(att.triu(1) == 0)
    uniform = mask / mask.sum(-1, keepdim=True)  # (T, T): 1 / (i + 1) on the keys query i may see
    dev = ((att - uniform).abs() / uniform.clamp_min(1e-12))[:, mask.bool()].max().item()  # over heads and keys
    assert dev < 0.1, f"at initialisation each query should spread its weight almost evenly ({dev:.1%} off)"
    return T, dev


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    results = {"params": {}}

    # 1. Parameter counts at the published configurations, on the meta device (no memory, no init cost).
    print(f"{'model':<13} {'params (counted)':>17} {'= formula':>10} {'paper':>7} {'README':>7}  source")
    for name, p in PUBLISHED.items():
        with torch.device("meta"):
            m = GPT(p["cfg"])
        n = count(m)
        assert n == formula(p["cfg"]), name  # the count is the closed form, term by term
        assert all(t.is_meta for t in m.parameters())
        r = {"params": n, "paper": p["paper"], "rel_diff_from_paper": n / p["paper"] - 1,
             "config": asdict(p["cfg"])}
        if p["readme"] is None:  # GPT-1: the paper's 117M is this count to the nearest million
            assert round(n / 1e6) == round(p["paper"] / 1e6), f"{name}: {n:,}"
            src = "GPT-2 paper Table 2 row 1 (= original GPT)"
        else:  # GPT-2: Table 2 is not a rounding of the count; the README's corrected sizes are
            assert round(n / 1e6) != round(p["paper"] / 1e6), f"{name}: Table 2 unexpectedly agrees"
            assert round(n / 1e6) == round(p["readme"] / 1e6), f"{name}: {n:,} vs README {p['readme']:.0f}"
            # What fits Table 2: the same formula with GPT-1's 40,478-token vocabulary.
            with_gpt1_vocab = formula(GPTConfig(**{**asdict(p["cfg"]), "vocab_size": GPT1_VOCAB}))
            assert round(with_gpt1_vocab / 1e6) == round(p["paper"] / 1e6), name
            r.update(readme=p["readme"], with_gpt1_vocab=with_gpt1_vocab)
            src = "Radford et al. 2019, Table 2"
        results["params"][name] = r
        readme = f"{p['readme'] / 1e6:>6.0f}M" if p["readme"] else f"{'-':>7}"
        print(f"{name:<13} {n:>17,} {'yes':>10} {p['paper'] / 1e6:>6.0f}M {readme}  {src}")
    s = results["params"]["GPT-2 small"]
    print(f"GPT-2 small: {s['params']:,} parameters, {s['rel_diff_from_paper']:+.1%} off Table 2's 117M; "
          f"with GPT-1's vocabulary the formula gives {s['with_gpt1_vocab']:,}.")
    results["gpt2_vocab_gap"] = 50257 - GPT1_VOCAB

    # Cost per token of GPT-2 small, from its config (Kaplan et al. 2020, arXiv:2001.08361, Table 1:
    # C_forward = 2N + 2 n_layer n_ctx d, N = non-embedding parameters).
    c = PUBLISHED["GPT-2 small"]["cfg"]
    n_nonembed = formula(c) - c.vocab_size * c.d_model - c.block_size * c.d_model
    dense, attn = 2 * n_nonembed, 2 * c.n_layer * c.block_size * c.d_model  # FLOPs per token at full context
    kv_bytes = 2 * c.n_layer * c.d_model * 4  # keys and values of every layer, fp32
    results["cost_gpt2_small"] = {"nonembedding_params": n_nonembed, "forward_flops_dense": dense,
                                  "forward_flops_attention_full_ctx": attn, "attention_share": attn / (dense + attn),
                                  "kv_cache_bytes_per_token_fp32": kv_bytes,
                                  "kv_cache_mib_full_ctx_fp32": kv_bytes * c.block_size / 2**20}

    # 2. Checks on a small random model (same code, smaller numbers).
    tiny = GPTConfig(vocab_size=97, block_size=64, n_layer=3, n_head=4, d_model=64, d_ff=256, dropout=0.0)
    results["check_config"] = asdict(tiny)
    err = check_attention_matches_sdpa(tiny)
    print(f"\ncausal attention vs F.scaled_dot_product_attention(is_causal=True): max |diff| {err:.1e}")
    model = GPT(tiny).eval()
    t = check_no_future_leak(model, tiny.vocab_size)
    print(f"changing tokens from position {t} on leaves logits 0..{t - 1} bit-identical")
    kv = check_kv_cache(model, tiny.vocab_size)
    print(f"greedy, {kv['n_new']} new tokens: identical with and without KV cache; "
          f"last-step logits differ by {kv['max_abs_logit_diff']:.1e}")
    # The same checks for the GPT-1 layout (post-LN, no final LN).
    gpt1_tiny = GPTConfig(**{**asdict(tiny), "pre_norm": False})
    m1 = GPT(gpt1_tiny).eval()
    check_no_future_leak(m1, tiny.vocab_size)
    kv1 = check_kv_cache(m1, tiny.vocab_size)
    print("the same two checks pass for the GPT-1 (post-LN) layout")
    results.update(sdpa_max_abs_err=err, kv_cache=kv, kv_cache_gpt1=kv1, future_leak_position=t)
    results["attention_figure_T"], results["attention_init_max_rel_dev"] = attention_figure(
        model, tiny.vocab_size, OUT / "attention.svg")

    (OUT / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
