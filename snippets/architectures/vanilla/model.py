"""The original Transformer (Vaswani et al. 2017, arXiv:1706.03762): encoder-decoder, post-LN.

One readable file: config -> LayerNorm -> multi-head attention -> feed-forward ->
encoder / decoder layers -> the full model with tied embeddings and sinusoidal
positions. Run as a script, it checks itself:

1. Parameter count at the paper's base and big configurations (built on the meta
   device, so no memory is used), against Table 3 of the paper and against a
   closed-form formula; the differences between Table 3's rows, which do not
   depend on the vocabulary, are checked too.
2. The encoder, the decoder and the whole model equal `nn.Transformer`
   (post-LN, `norm_first=False`) with the same weights copied in, with a source
   key-padding mask and a causal target mask.
3. Causality and padding: changing a future target token or a padded source
   token changes nothing it must not.

Run from the repo root:  python snippets/architectures/vanilla/model.py
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
class TransformerConfig:
    vocab_size: int = 37000  # tokens; shared source-target BPE vocabulary, "about 37000" (Section 5.1)
    d_model: int = 512  # width of every token vector (Section 3.1)
    n_heads: int = 8  # h, parallel attention heads (Section 3.2.2)
    d_k: int = 64  # per-head query/key size, d_model / h in the paper's models (Section 3.2.2)
    d_v: int = 64  # per-head value size (Section 3.2.2)
    d_ff: int = 2048  # inner width of the position-wise feed-forward net (Section 3.3)
    n_layers: int = 6  # N, identical layers in the encoder and again in the decoder (Section 3.1)
    dropout: float = 0.1  # P_drop on every sub-layer output and on embeddings + positions (Section 5.4)
    max_len: int = 1024  # positions in the sinusoid table; a buffer, not parameters
    ln_eps: float = 1e-5  # LayerNorm epsilon; unspecified in the paper, PyTorch's default
    tie_embeddings: bool = True  # one matrix for both embeddings and the pre-softmax linear (Section 3.4)
    pad_id: int = 0  # token id that padding uses; masked out as a key


class LayerNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))  # gain g
        self.bias = nn.Parameter(torch.zeros(d))  # shift b

    def forward(self, x):  # x: (B, T, d)
        mu = x.mean(-1, keepdim=True)  # (B, T, 1)
        var = x.var(-1, unbiased=False, keepdim=True)  # (B, T, 1)
        return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias  # g * (x - mu) / sigma + b


class MultiHeadAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.h, self.d_k, self.d_v = cfg.n_heads, cfg.d_k, cfg.d_v
        self.w_q = nn.Linear(cfg.d_model, cfg.n_heads * cfg.d_k)  # all heads' W_i^Q side by side
        self.w_k = nn.Linear(cfg.d_model, cfg.n_heads * cfg.d_k)  # W_i^K
        self.w_v = nn.Linear(cfg.d_model, cfg.n_heads * cfg.d_v)  # W_i^V
        self.w_o = nn.Linear(cfg.n_heads * cfg.d_v, cfg.d_model)  # W^O
        self.weights = None  # the last attention weights (B, H, Tq, Tk), kept for plots

    def forward(self, x_q, x_kv, allowed):
        """x_q: (B, Tq, d) queries; x_kv: (B, Tk, d) keys/values; allowed: bool, broadcasts to (B, H, Tq, Tk)."""
        B, Tq, _ = x_q.shape
        Tk = x_kv.shape[1]
        q = self.w_q(x_q).view(B, Tq, self.h, self.d_k).transpose(1, 2)  # (B, Tq, H*dk) -> (B, Tq, H, dk) -> (B, H, Tq, dk)
        k = self.w_k(x_kv).view(B, Tk, self.h, self.d_k).transpose(1, 2)  # (B, Tk, H*dk) -> (B, Tk, H, dk) -> (B, H, Tk, dk)
        v = self.w_v(x_kv).view(B, Tk, self.h, self.d_v).transpose(1, 2)  # (B, Tk, H*dv) -> (B, Tk, H, dv) -> (B, H, Tk, dv)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)  # Q K^T / sqrt(d_k): (B, H, Tq, Tk)
        scores = scores.masked_fill(~allowed, float("-inf"))  # masked pairs get weight exp(-inf) = 0
        a = scores.softmax(dim=-1)  # softmax over keys: (B, H, Tq, Tk)
        self.weights = a.detach()
        y = a @ v  # softmax(Q K^T / sqrt(d_k)) V: (B, H, Tq, dv)
        y = y.transpose(1, 2).reshape(B, Tq, self.h * self.d_v)  # (B, H, Tq, dv) -> (B, Tq, H, dv) -> (B, Tq, H*dv): Concat(head_1..head_h)
        return self.w_o(y)  # Concat(head_1, ..., head_h) W^O: (B, Tq, d)


class FeedForward(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.w1 = nn.Linear(cfg.d_model, cfg.d_ff)  # (d -> d_ff)
        self.w2 = nn.Linear(cfg.d_ff, cfg.d_model)  # (d_ff -> d)

    def forward(self, x):  # x: (B, T, d), each position on its own
        return self.w2(F.relu(self.w1(x)))  # FFN(x) = max(0, x W1 + b1) W2 + b2  (eq. 2)


class EncoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn, self.ff = MultiHeadAttention(cfg), FeedForward(cfg)
        self.ln1, self.ln2 = LayerNorm(cfg.d_model, cfg.ln_eps), LayerNorm(cfg.d_model, cfg.ln_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, src_allowed):  # x: (B, S, d); src_allowed: (B, 1, 1, S)
        x = self.ln1(x + self.drop(self.self_attn(x, x, src_allowed)))  # LayerNorm(x + Sublayer(x)), post-LN
        return self.ln2(x + self.drop(self.ff(x)))  # (B, S, d)


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.self_attn, self.cross_attn, self.ff = MultiHeadAttention(cfg), MultiHeadAttention(cfg), FeedForward(cfg)
        self.ln1, self.ln2, self.ln3 = (LayerNorm(cfg.d_model, cfg.ln_eps) for _ in range(3))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, y, memory, tgt_allowed, src_allowed):  # y: (B, T, d); memory: (B, S, d)
        y = self.ln1(y + self.drop(self.self_attn(y, y, tgt_allowed)))  # masked self-attention: no peeking ahead
        y = self.ln2(y + self.drop(self.cross_attn(y, memory, src_allowed)))  # queries from the decoder, keys/values from the encoder
        return self.ln3(y + self.drop(self.ff(y)))  # (B, T, d)


def sinusoids(max_len, d):
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))  (Section 3.5)."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, d, 2, dtype=torch.float32) / d)  # 1 / 10000^(2i/d): (d/2,)
    pe = torch.zeros(max_len, d)
    pe[:, 0::2] = torch.sin(pos * inv_freq)  # (max_len, d/2)
    pe[:, 1::2] = torch.cos(pos * inv_freq)  # (max_len, d/2)
    return pe  # (max_len, d)


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)  # shared by source and target (Section 3.4)
        self.register_buffer("pe", sinusoids(cfg.max_len, cfg.d_model), persistent=False)  # (max_len, d), no parameters
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        # Pre-softmax linear: the embedding matrix itself when tied, else its own matrix (no bias either way).
        self.unembed = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        # Initialisation (the paper does not give one): Xavier-uniform matrices, as nn.Transformer does,
        # and embeddings ~ N(0, 1/d_model), so that embedding * sqrt(d_model) has unit scale and the
        # tied output logits start small.
        for name, p in self.named_parameters():
            if p.dim() == 2 and name != "embed.weight":
                nn.init.xavier_uniform_(p)
        nn.init.normal_(self.embed.weight, std=cfg.d_model ** -0.5)

    def embed_tokens(self, ids):  # ids: (B, T) -> (B, T, d)
        x = self.embed(ids) * math.sqrt(self.cfg.d_model)  # embeddings scaled by sqrt(d_model) (Section 3.4)
        return self.drop(x + self.pe[: ids.shape[1]])  # + positional encoding, then dropout (Section 5.4)

    def masks(self, src, tgt):
        src_allowed = (src != self.cfg.pad_id)[:, None, None, :]  # (B, S) -> (B, 1, 1, S): never attend to padding
        T = tgt.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=tgt.device).tril()  # (T, T): position i sees j <= i
        tgt_allowed = causal & (tgt != self.cfg.pad_id)[:, None, None, :]  # (B, 1, T, T)
        return src_allowed, tgt_allowed

    def encode(self, x, src_allowed):  # x: embedded source (B, S, d)
        for layer in self.encoder:
            x = layer(x, src_allowed)
        return x  # memory: (B, S, d)

    def decode(self, y, memory, tgt_allowed, src_allowed):  # y: embedded target (B, T, d)
        for layer in self.decoder:
            y = layer(y, memory, tgt_allowed, src_allowed)
        return y  # (B, T, d)

    def logits(self, h):  # h: (B, T, d) -> (B, T, vocab)
        return h @ self.embed.weight.T if self.unembed is None else self.unembed(h)

    def forward(self, src, tgt):
        """src: (B, S) source ids, padded with pad_id; tgt: (B, T) target ids, shifted right (starts with BOS)."""
        src_allowed, tgt_allowed = self.masks(src, tgt)
        memory = self.encode(self.embed_tokens(src), src_allowed)  # (B, S, d)
        return self.logits(self.decode(self.embed_tokens(tgt), memory, tgt_allowed, src_allowed))  # (B, T, vocab)
# --8<-- [end:core]


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def formula_params(c):
    """Closed form. Linear(a, b) has a*b + b parameters; LayerNorm(d) has 2d."""
    attn = 2 * (c.d_model * c.n_heads * c.d_k + c.n_heads * c.d_k)  # W^Q, W^K with biases
    attn += c.d_model * c.n_heads * c.d_v + c.n_heads * c.d_v  # W^V
    attn += c.n_heads * c.d_v * c.d_model + c.d_model  # W^O
    ffn = 2 * c.d_model * c.d_ff + c.d_ff + c.d_model
    enc = attn + ffn + 2 * (2 * c.d_model)
    dec = 2 * attn + ffn + 3 * (2 * c.d_model)
    emb = c.vocab_size * c.d_model * (1 if c.tie_embeddings else 2)
    return c.n_layers * (enc + dec) + emb


def meta_count(cfg):
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        return count_params(Transformer(cfg))


# Table 3 of the paper: (row, changes from base, reported params x 10^6). Vocabulary-free differences.
BASE = TransformerConfig()
BIG = replace(BASE, d_model=1024, n_heads=16, d_ff=4096, dropout=0.3)  # "big" row of Table 3 (d_k = d_v = 64)
TABLE3_SAME_WIDTH = [
    ("(B) d_k=16", dict(d_k=16), 58),
    ("(B) d_k=32", dict(d_k=32), 60),
    ("(C) N=2", dict(n_layers=2), 36),
    ("(C) N=4", dict(n_layers=4), 50),
    ("(C) N=8", dict(n_layers=8), 80),
    ("(C) d_ff=1024", dict(d_ff=1024), 53),
    ("(C) d_ff=4096", dict(d_ff=4096), 90),
]
TABLE3_OTHER_WIDTH = [  # (key, row, change, params): these change d_model, so the embedding's share changes too
    ("base", "base", {}, 65),
    ("d_model_256", "(C) d_model=256", dict(d_model=256, d_k=32, d_v=32), 28),
    ("d_model_1024", "(C) d_model=1024", dict(d_model=1024, d_k=128, d_v=128), 168),
    ("big", "big", dict(d_model=1024, n_heads=16, d_ff=4096), 213),
]


def check_params():
    print("Parameter count (built on the meta device)")
    res = {}
    for name, cfg, paper_m in (("base", BASE, 65), ("big", BIG, 213)):
        n = meta_count(cfg)
        assert n == formula_params(cfg), (name, n, formula_params(cfg))
        res[name] = {"count": n, "millions": n / 1e6, "paper_millions": paper_m, "formula": formula_params(cfg)}
        print(f"  {name:<5} V={cfg.vocab_size}, tied: {n:>12,}  ({n / 1e6:6.2f}M)   paper: {paper_m}M "
              f"(Vaswani et al. 2017, Table 3)   = closed-form formula")

    print("\nTable 3 differences from base (the vocabulary cancels out; each figure is rounded to 1M,")
    print("so a difference of two of them is within 1M of the truth)")
    base_n = res["base"]["count"]
    deltas = []
    for row, change, paper_m in TABLE3_SAME_WIDTH:
        n = meta_count(replace(BASE, **change))
        d_ours, d_paper = (n - base_n) / 1e6, paper_m - 65
        ok = abs(d_ours - d_paper) < 1.0
        deltas.append({"row": row, "ours_m": d_ours, "paper_m": d_paper, "ok": ok})
        print(f"  {row:<15} ours {d_ours:+7.2f}M   paper {d_paper:+4d}M   {'ok' if ok else 'MISMATCH'}")
        assert ok, (row, d_ours, d_paper)

    print("\nVocabulary each absolute figure implies: (paper +- 0.5M - layers) / d_model")
    implied = {}
    for key, row, change, paper_m in TABLE3_OTHER_WIDTH:
        cfg = replace(BASE, vocab_size=0, **change)
        layers = meta_count(cfg)  # vocab_size=0: everything except the embedding
        lo, hi = ((paper_m - 0.5) * 1e6 - layers) / cfg.d_model, ((paper_m + 0.5) * 1e6 - layers) / cfg.d_model
        implied[key] = {"lo": lo, "hi": hi, "non_embedding_params": layers}
        print(f"  {row:<17} {paper_m:>4}M -> V in [{lo:8,.0f}, {hi:8,.0f}]")
    # The base and big figures cannot both hold for any one vocabulary: the paper's totals are approximate.
    same = [implied[r] for r in ("base", "d_model_256", "d_model_1024")]
    common = {"lo": max(r["lo"] for r in same), "hi": min(r["hi"] for r in same)}
    assert common["lo"] < common["hi"], implied  # base and both d_model rows agree with each other ...
    assert implied["big"]["hi"] < common["lo"], implied  # ... but not with the big row
    assert implied["big"]["hi"] < BASE.vocab_size < common["lo"], implied  # and "about 37000" fits neither
    implied["common"] = common
    print(f"  -> base and the two d_model rows agree on V in [{common['lo']:,.0f}, {common['hi']:,.0f}]; big does not;")
    print(f"     the stated 'about {BASE.vocab_size}' fits neither, so the totals cannot all be reproduced.")
    res["table3_deltas"] = deltas
    res["implied_vocab"] = implied
    res["base"]["off_from_paper_millions"] = res["base"]["millions"] - 65
    res["base"]["embedding_params"] = BASE.vocab_size * BASE.d_model
    res["base"]["non_embedding_params"] = implied["base"]["non_embedding_params"]
    res["big"]["off_from_paper_millions"] = res["big"]["millions"] - 213
    return res


def copy_into_reference(ours, ref):
    """Copy our weights into nn.Transformer (batch_first, post-LN) so both compute the same function."""
    def mha(dst, src):  # nn.MultiheadAttention stores [W_q; W_k; W_v] stacked: (3d, d)
        dst.in_proj_weight.copy_(torch.cat([src.w_q.weight, src.w_k.weight, src.w_v.weight]))
        dst.in_proj_bias.copy_(torch.cat([src.w_q.bias, src.w_k.bias, src.w_v.bias]))
        dst.out_proj.weight.copy_(src.w_o.weight)
        dst.out_proj.bias.copy_(src.w_o.bias)

    def lin(dst, src):
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)

    with torch.no_grad():
        for a, b in zip(ref.encoder.layers, ours.encoder):
            mha(a.self_attn, b.self_attn)
            lin(a.linear1, b.ff.w1), lin(a.linear2, b.ff.w2), lin(a.norm1, b.ln1), lin(a.norm2, b.ln2)
        for a, b in zip(ref.decoder.layers, ours.decoder):
            mha(a.self_attn, b.self_attn)
            mha(a.multihead_attn, b.cross_attn)
            lin(a.linear1, b.ff.w1), lin(a.linear2, b.ff.w2)
            lin(a.norm1, b.ln1), lin(a.norm2, b.ln2), lin(a.norm3, b.ln3)
    # nn.Transformer adds a final LayerNorm after each stack; the paper's post-LN layers end in one already.
    ref.encoder.norm = None
    ref.decoder.norm = None


def check_against_nn_transformer(device):
    torch.manual_seed(SEED)
    cfg = TransformerConfig(vocab_size=50, d_model=32, n_heads=4, d_k=8, d_v=8, d_ff=64, n_layers=2, dropout=0.0)
    ours = Transformer(cfg).to(device, torch.float64)
    ref = nn.Transformer(d_model=cfg.d_model, nhead=cfg.n_heads, num_encoder_layers=cfg.n_layers,
                         num_decoder_layers=cfg.n_layers, dim_feedforward=cfg.d_ff, dropout=0.0,
                         activation="relu", layer_norm_eps=cfg.ln_eps, batch_first=True,
                         norm_first=False).to(device, torch.float64)
    copy_into_reference(ours, ref)
    ours.train(), ref.train()  # train mode with dropout 0: the reference's plain (not fast-path) code

    B, S, T = 3, 9, 7
    src = torch.randint(1, cfg.vocab_size, (B, S), device=device)
    tgt = torch.randint(1, cfg.vocab_size, (B, T), device=device)
    src[0, 6:], src[1, 3:] = cfg.pad_id, cfg.pad_id  # different amounts of source padding
    src_pad = src == cfg.pad_id  # (B, S), True = padding (PyTorch's convention)
    causal = nn.Transformer.generate_square_subsequent_mask(T, device=device, dtype=torch.float64)  # (T, T), -inf above the diagonal

    src_allowed, tgt_allowed = ours.masks(src, tgt)
    x, y = ours.embed_tokens(src), ours.embed_tokens(tgt)  # (B, S, d), (B, T, d)
    errs = {}
    with torch.no_grad():
        mem_ours = ours.encode(x, src_allowed)
        mem_ref = ref.encoder(x, src_key_padding_mask=src_pad)
        torch.testing.assert_close(mem_ours, mem_ref, rtol=1e-10, atol=1e-10)
        errs["encoder"] = (mem_ours - mem_ref).abs().max().item()

        dec_ours = ours.decode(y, mem_ours, tgt_allowed, src_allowed)
        dec_ref = ref.decoder(y, mem_ref, tgt_mask=causal, memory_key_padding_mask=src_pad)
        torch.testing.assert_close(dec_ours, dec_ref, rtol=1e-10, atol=1e-10)
        errs["decoder"] = (dec_ours - dec_ref).abs().max().item()

        logits_ours = ours(src, tgt)  # the whole model: ids -> logits
        logits_ref = ours.logits(ref(x, y, tgt_mask=causal, src_key_padding_mask=src_pad,
                                     memory_key_padding_mask=src_pad))
        torch.testing.assert_close(logits_ours, logits_ref, rtol=1e-10, atol=1e-10)
        errs["full_model"] = (logits_ours - logits_ref).abs().max().item()

        # Causality: changing target token 4 leaves the logits at positions 0..3 unchanged.
        tgt2 = tgt.clone()
        tgt2[:, 4] = (tgt2[:, 4] % (cfg.vocab_size - 1)) + 1
        out2 = ours(src, tgt2)
        torch.testing.assert_close(out2[:, :4], logits_ours[:, :4], rtol=0, atol=1e-12)
        assert (out2[:, 4:] - logits_ours[:, 4:]).abs().max() > 1e-3  # ... and does change the later ones
        # Padding: changing the embeddings behind source padding changes nothing.
        x2 = x.clone()
        x2[src_pad] = torch.randn_like(x2[src_pad])
        torch.testing.assert_close(ours.decode(y, ours.encode(x2, src_allowed), tgt_allowed, src_allowed),
                                   dec_ours, rtol=0, atol=1e-12)
        # The weights of masked pairs are exactly zero.
        w_cross = ours.decoder[-1].cross_attn.weights  # (B, H, T, S)
        assert (w_cross.masked_select(src_pad[:, None, None, :].expand_as(w_cross)) == 0).all()
        w_self = ours.decoder[0].self_attn.weights  # (B, H, T, T)
        assert (w_self[..., ~torch.ones(T, T, dtype=torch.bool, device=device).tril()] == 0).all()

    print("\nAgainst nn.Transformer(norm_first=False) with the same weights (float64, "
          f"d_model={cfg.d_model}, h={cfg.n_heads}, N={cfg.n_layers}, padded source, causal target)")
    for k, v in errs.items():
        print(f"  {k:<11} max |ours - nn.Transformer| = {v:.1e}")
    print("  causal: editing target token 4 leaves logits 0..3 unchanged; padded source positions are ignored")
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args, _ = ap.parse_known_args()
    params = check_params()
    errs = check_against_nn_transformer(args.device)
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"params": params, "max_abs_err": errs,
               "config_base": {k: v for k, v in vars(BASE).items()}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print("\nAll checks passed.")


if __name__ == "__main__":
    main()
