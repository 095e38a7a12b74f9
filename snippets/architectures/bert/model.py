"""BERT (Devlin et al. 2018, arXiv:1810.04805): a bidirectional post-LN Transformer encoder.

One readable file: config -> LayerNorm -> self-attention -> GELU feed-forward ->
encoder block -> embeddings (token + learned position + segment) -> BERT with its
two pre-training heads (masked LM, next sentence), and the masked-LM corruption rule.
Run as a script, it checks itself:

1. Parameter count of BERT-base and BERT-large (built on the meta device) against
   the paper's 110M and 340M (Section 3), rounded as the paper rounds, and against a
   closed-form formula.
2. One block, and a stack of blocks, equal `nn.TransformerEncoderLayer` (post-LN,
   activation "gelu") with the same weights copied in, with a key-padding mask.
3. The masking rule: 15% of (non-special) tokens are selected; of those, 80% become
   [MASK], 10% a random token, 10% stay unchanged (Section 3.1). Checked on hundreds
   of thousands of tokens, each rate within 5 binomial standard deviations.

Run from the repo root:  python snippets/architectures/bert/model.py
"""
import argparse
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0


# --8<-- [start:core]
@dataclass
class BertConfig:
    vocab_size: int = 30522  # WordPiece tokens: "30,000" in Section 3; the released uncased vocab has 30,522
    hidden: int = 768  # H, width of every token vector (Section 3: BERT-base)
    n_layers: int = 12  # L, encoder blocks (Section 3)
    n_heads: int = 12  # A, attention heads; head size H / A = 64 (Section 3)
    d_ff: int = 3072  # feed-forward inner width, 4H (Section 3, footnote)
    max_len: int = 512  # learned position embeddings: longest input in tokens (Appendix A.2)
    n_segments: int = 2  # sentence A / sentence B embeddings (Section 3, Figure 2)
    dropout: float = 0.1  # on every sub-layer output, embeddings and attention weights (Appendix A.2)
    ln_eps: float = 1e-12  # LayerNorm epsilon of the released code; not stated in the paper
    pad_id: int = 0  # [PAD]: never attended to


class LayerNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))  # gain g
        self.bias = nn.Parameter(torch.zeros(d))  # shift b

    def forward(self, x):  # x: (B, T, H)
        mu = x.mean(-1, keepdim=True)  # (B, T, 1)
        var = x.var(-1, unbiased=False, keepdim=True)  # (B, T, 1)
        return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias  # g * (x - mu) / sigma + b


class SelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.h, self.d_head = cfg.n_heads, cfg.hidden // cfg.n_heads
        self.query, self.key, self.value = (nn.Linear(cfg.hidden, cfg.hidden) for _ in range(3))
        self.out = nn.Linear(cfg.hidden, cfg.hidden)  # W^O
        self.drop = nn.Dropout(cfg.dropout)
        self.weights = None  # the last attention weights (B, A, T, T), kept for plots

    def forward(self, x, allowed):  # x: (B, T, H); allowed: (B, 1, 1, T), True = a real token
        B, T, H = x.shape
        q = self.query(x).view(B, T, self.h, self.d_head).transpose(1, 2)  # (B, T, H) -> (B, T, A, dh) -> (B, A, T, dh)
        k = self.key(x).view(B, T, self.h, self.d_head).transpose(1, 2)  # (B, T, H) -> (B, T, A, dh) -> (B, A, T, dh)
        v = self.value(x).view(B, T, self.h, self.d_head).transpose(1, 2)  # (B, T, H) -> (B, T, A, dh) -> (B, A, T, dh)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # Q K^T / sqrt(d_head): (B, A, T, T)
        scores = scores.masked_fill(~allowed, float("-inf"))  # padding keys get weight 0; NO causal mask
        a = scores.softmax(dim=-1)  # (B, A, T, T): every token sees both sides
        self.weights = a.detach()
        y = self.drop(a) @ v  # softmax(Q K^T / sqrt(d_head)) V: (B, A, T, dh)
        y = y.transpose(1, 2).reshape(B, T, H)  # (B, A, T, dh) -> (B, T, A, dh) -> (B, T, H): concat heads
        return self.out(y)  # (B, T, H)


class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.w1 = nn.Linear(cfg.hidden, cfg.d_ff)  # (H -> 4H)
        self.w2 = nn.Linear(cfg.d_ff, cfg.hidden)  # (4H -> H)

    def forward(self, x):  # x: (B, T, H)
        return self.w2(F.gelu(self.w1(x)))  # GELU(x W1 + b1) W2 + b2, GELU(u) = u * Phi(u) (exact, erf)


class Block(nn.Module):
    """The vanilla Transformer's encoder layer, with GELU: post-LN, bidirectional."""

    def __init__(self, cfg):
        super().__init__()
        self.attn, self.ff = SelfAttention(cfg), FeedForward(cfg)
        self.ln1, self.ln2 = LayerNorm(cfg.hidden, cfg.ln_eps), LayerNorm(cfg.hidden, cfg.ln_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, allowed):  # x: (B, T, H)
        x = self.ln1(x + self.drop(self.attn(x, allowed)))  # LayerNorm(x + Attention(x))
        return self.ln2(x + self.drop(self.ff(x)))  # LayerNorm(x + FFN(x)): (B, T, H)


class Embeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.hidden)  # (V, H)
        self.pos = nn.Embedding(cfg.max_len, cfg.hidden)  # (512, H): learned, not sinusoids
        self.seg = nn.Embedding(cfg.n_segments, cfg.hidden)  # (2, H): sentence A or B
        self.ln = LayerNorm(cfg.hidden, cfg.ln_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, ids, segments):  # ids, segments: (B, T)
        pos = torch.arange(ids.shape[1], device=ids.device)  # (T,)
        x = self.tok(ids) + self.pos(pos) + self.seg(segments)  # input = token + position + segment (Figure 2)
        return self.drop(self.ln(x))  # (B, T, H)


class Bert(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = Embeddings(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.pooler = nn.Linear(cfg.hidden, cfg.hidden)  # tanh(W h_[CLS] + b): the sentence vector
        # Masked-LM head: transform, then project onto the token embeddings (tied) plus a bias per token.
        self.mlm_dense, self.mlm_ln = nn.Linear(cfg.hidden, cfg.hidden), LayerNorm(cfg.hidden, cfg.ln_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.nsp = nn.Linear(cfg.hidden, 2)  # next-sentence head on the pooled [CLS]: IsNext / NotNext
        self.apply(self._init)

    @staticmethod
    def _init(m):  # the released code: N(0, 0.02) truncated; plain N(0, 0.02) here
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)

    def forward(self, ids, segments=None):
        """ids: (B, T) token ids, padded with pad_id -> (B, T, H) hidden states, (B, T, V) MLM logits, (B, 2) NSP logits."""
        segments = torch.zeros_like(ids) if segments is None else segments
        allowed = (ids != self.cfg.pad_id)[:, None, None, :]  # (B, T) -> (B, 1, 1, T)
        x = self.embed(ids, segments)
        for block in self.blocks:
            x = block(x, allowed)
        h = self.mlm_ln(F.gelu(self.mlm_dense(x)))  # (B, T, H)
        mlm_logits = h @ self.embed.tok.weight.T + self.mlm_bias  # (B, T, H) @ (H, V) -> (B, T, V), tied
        nsp_logits = self.nsp(torch.tanh(self.pooler(x[:, 0])))  # [CLS] is position 0: (B, H) -> (B, 2)
        return x, mlm_logits, nsp_logits


def mask_tokens(ids, special, mask_id, n_special, vocab_size, gen, p_select=0.15):
    """BERT's corruption (Section 3.1). ids: (B, T); special: (B, T) bool, never selected.

    Each ordinary token is selected with probability p_select. A selected token becomes
    [MASK] 80% of the time, a random ordinary token 10%, and stays as it is 10%.
    Returns the corrupted input and the labels: the original id where selected, -100 elsewhere.
    """
    selected = (torch.rand(ids.shape, generator=gen) < p_select) & ~special  # (B, T)
    u = torch.rand(ids.shape, generator=gen)  # one draw decides which of the three
    to_mask = selected & (u < 0.8)
    to_random = selected & (u >= 0.8) & (u < 0.9)  # the remaining 10% (u >= 0.9) keep their token
    random_ids = torch.randint(n_special, vocab_size, ids.shape, generator=gen)  # uniform over ordinary tokens
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    labels = torch.where(selected, ids, torch.full_like(ids, -100))  # loss only on selected positions
    return inputs, labels
# --8<-- [end:core]


BASE = BertConfig()
LARGE = replace(BASE, hidden=1024, n_layers=24, n_heads=16, d_ff=4096)  # Section 3: L=24, H=1024, A=16


def formula_params(c, heads=True):
    """Closed form. Linear(a, b) has a*b + b parameters; LayerNorm(d) has 2d."""
    H, F_, V = c.hidden, c.d_ff, c.vocab_size
    emb = (V + c.max_len + c.n_segments) * H + 2 * H
    block = 4 * (H * H + H) + (H * F_ + F_) + (F_ * H + H) + 2 * (2 * H)
    pooler = H * H + H
    backbone = emb + c.n_layers * block + pooler
    mlm = H * H + H + 2 * H + V  # dense, LayerNorm, output bias (the output matrix is the tied embedding)
    nsp = 2 * H + 2
    return backbone + (mlm + nsp if heads else 0)


def round_sig(x, digits=2):
    """Round to `digits` significant figures, as the paper's 110M and 340M are."""
    return round(x, -int(math.floor(math.log10(abs(x)))) + digits - 1)


def check_params():
    print("Parameter count (built on the meta device)")
    res = {}
    for name, cfg, paper_m in (("base", BASE, 110), ("large", LARGE, 340)):
        with torch.device("meta"):  # shapes only: no memory, no initialisation time
            model = Bert(cfg)
        total = sum(p.numel() for p in model.parameters())
        heads = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("mlm_", "nsp")))
        backbone = total - heads  # embeddings + blocks + pooler
        assert total == formula_params(cfg) and backbone == formula_params(cfg, heads=False)
        for n in (total, backbone):  # either way, it is the paper's figure at 2 significant digits
            assert round_sig(n / 1e6) == paper_m, (name, n, paper_m)
        res[name] = {"total": total, "backbone": backbone, "total_millions": total / 1e6,
                     "backbone_millions": backbone / 1e6, "paper_millions": paper_m}
        print(f"  BERT-{name:<5} L={cfg.n_layers}, H={cfg.hidden}, A={cfg.n_heads}, V={cfg.vocab_size}:")
        print(f"    with pre-training heads {total:>12,} ({total / 1e6:6.1f}M)   encoder + pooler {backbone:>12,} "
              f"({backbone / 1e6:6.1f}M)")
        print(f"    paper: {paper_m}M (Devlin et al. 2018, Section 3); both round to it at 2 significant digits; "
              f"= closed-form formula")
    return res


def copy_into_reference(block, ref):
    """Copy one of our blocks into nn.TransformerEncoderLayer (its [W_q; W_k; W_v] is stacked)."""
    with torch.no_grad():
        a = block.attn
        ref.self_attn.in_proj_weight.copy_(torch.cat([a.query.weight, a.key.weight, a.value.weight]))
        ref.self_attn.in_proj_bias.copy_(torch.cat([a.query.bias, a.key.bias, a.value.bias]))
        for dst, src in ((ref.self_attn.out_proj, a.out), (ref.linear1, block.ff.w1), (ref.linear2, block.ff.w2),
                         (ref.norm1, block.ln1), (ref.norm2, block.ln2)):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)


def check_against_nn(device):
    torch.manual_seed(SEED)
    cfg = BertConfig(vocab_size=100, hidden=48, n_layers=3, n_heads=4, d_ff=192, max_len=32, dropout=0.0)
    model = Bert(cfg).to(device, torch.float64).train()  # dropout 0; train mode keeps nn's plain code path
    layer = lambda: nn.TransformerEncoderLayer(cfg.hidden, cfg.n_heads, cfg.d_ff, dropout=0.0, activation="gelu",
                                               layer_norm_eps=cfg.ln_eps, batch_first=True, norm_first=False)
    ref_stack = nn.TransformerEncoder(layer(), cfg.n_layers, enable_nested_tensor=False).to(device, torch.float64)
    for ours, ref in zip(model.blocks, ref_stack.layers):
        # The random init is N(0, 0.02), which makes attention almost uniform; larger weights test more.
        with torch.no_grad():
            for p in ours.parameters():
                p.add_(torch.randn_like(p) * 0.3)
        copy_into_reference(ours, ref)
    ref_stack.train()

    B, T = 3, 11
    ids = torch.randint(1, cfg.vocab_size, (B, T), device=device)
    ids[0, 7:], ids[2, 4:] = cfg.pad_id, cfg.pad_id
    pad = ids == cfg.pad_id  # (B, T), True = padding (PyTorch's convention)
    allowed = ~pad[:, None, None, :]  # (B, 1, 1, T), our convention
    x = model.embed(ids, torch.zeros_like(ids))  # (B, T, H)
    errs = {}
    with torch.no_grad():
        y_ours = model.blocks[0](x, allowed)
        y_ref = ref_stack.layers[0](x, src_key_padding_mask=pad)
        torch.testing.assert_close(y_ours, y_ref, rtol=1e-10, atol=1e-10)
        errs["one_block"] = (y_ours - y_ref).abs().max().item()
        h = x
        for blk in model.blocks:
            h = blk(h, allowed)
        h_ref = ref_stack(x, src_key_padding_mask=pad)
        torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-10)
        errs["stack"] = (h - h_ref).abs().max().item()
        # Bidirectional: changing the LAST real token changes the FIRST token's output (no causal mask) ...
        ids2 = ids.clone()
        ids2[1, -1] = ids2[1, -1] % (cfg.vocab_size - 1) + 1
        out1, out2 = model(ids)[0], model(ids2)[0]
        assert (out1[1, 0] - out2[1, 0]).abs().max() > 1e-3
        # ... and changing a padded position's embedding changes no real token's output.
        x2 = x.clone()
        x2[pad] = torch.randn_like(x2[pad])
        h2 = x2
        for blk in model.blocks:
            h2 = blk(h2, allowed)
        torch.testing.assert_close(h2[~pad], h[~pad], rtol=0, atol=1e-12)
    print(f"\nAgainst nn.TransformerEncoderLayer(activation='gelu', norm_first=False), same weights (float64, "
          f"H={cfg.hidden}, A={cfg.n_heads}, padded batch)")
    print(f"  one block   max |ours - nn| = {errs['one_block']:.1e}")
    print(f"  {cfg.n_layers} blocks    max |ours - nn.TransformerEncoder| = {errs['stack']:.1e}")
    print("  bidirectional: the last token changes the first token's output; padding changes nothing")
    return errs


def check_masking():
    """The 15% / 80-10-10 rule, on many tokens, each rate within Z binomial standard deviations."""
    Z = 5.0
    gen = torch.Generator().manual_seed(SEED)
    n_special, vocab, mask_id = 5, 1000, 4  # ids 0..4 are special ([PAD], [CLS], [SEP], [UNK], [MASK])
    ids = torch.randint(n_special, vocab, (512, 512), generator=gen)  # (B, T): 262,144 tokens
    ids[:, 0], ids[:, -1] = 1, 2  # [CLS] ... [SEP]
    ids[::4, 400:] = 0  # some padding
    special = ids < n_special
    inputs, labels = mask_tokens(ids, special, mask_id, n_special, vocab, gen)
    selected = labels != -100
    n_ordinary, n_sel = int((~special).sum()), int(selected.sum())
    R = vocab - n_special  # a "random" token equals the original with probability 1/R
    is_mask = selected & (inputs == mask_id)
    is_changed = selected & (inputs != mask_id) & (inputs != ids)
    is_kept = selected & (inputs == ids)
    rows = [  # (key, name, count, trials, expected probability)
        ("selected", "selected / ordinary tokens", n_sel, n_ordinary, 0.15),
        ("mask", "[MASK] / selected", int(is_mask.sum()), n_sel, 0.8),
        ("random", "random token / selected", int(is_changed.sum()), n_sel, 0.1 * (1 - 1 / R)),
        ("unchanged", "unchanged / selected", int(is_kept.sum()), n_sel, 0.1 + 0.1 / R),
    ]
    print(f"\nMasking rule on {ids.numel():,} tokens ({n_ordinary:,} ordinary), tolerance {Z:g} binomial SDs")
    res = {}
    for key, name, k, n, p in rows:
        sd = math.sqrt(p * (1 - p) / n)  # standard deviation of a rate k/n
        rate = k / n
        z = (rate - p) / sd
        assert abs(z) < Z, (name, rate, p, sd)
        res[key] = {"rate": rate, "expected": p, "sd": sd, "z": z, "n": n}
        print(f"  {name:<28} {rate:.4f}  expected {p:.4f} +- {Z:g} x {sd:.4f}   z = {z:+.2f}")
    # Exact properties: special tokens never selected, unselected tokens untouched, random ids ordinary.
    assert not (selected & special).any()
    assert torch.equal(inputs[~selected], ids[~selected])
    assert (inputs[is_changed] >= n_special).all()
    # The random replacements are uniform over the R ordinary tokens: chi-square vs its mean R-1, sd sqrt(2(R-1)).
    counts = torch.bincount(inputs[is_changed] - n_special, minlength=R).double()
    expected = counts.sum() / R
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert abs(chi2 - (R - 1)) < Z * math.sqrt(2 * (R - 1)), chi2
    print(f"  random replacements uniform: chi^2 = {chi2:.0f} for {R - 1} degrees of freedom "
          f"(mean {R - 1}, sd {math.sqrt(2 * (R - 1)):.0f})")
    res["chi2_random"] = {"chi2": chi2, "dof": R - 1}
    res["tokens"] = ids.numel()
    res["ordinary_tokens"] = n_ordinary
    res["z_tolerance"] = Z
    res["random_vocab"] = R
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args, _ = ap.parse_known_args()
    params = check_params()
    errs = check_against_nn(args.device)
    masking = check_masking()
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"params": params, "max_abs_err": errs, "masking": masking}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print("\nAll checks passed.")


if __name__ == "__main__":
    main()
