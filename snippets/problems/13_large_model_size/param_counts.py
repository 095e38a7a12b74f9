"""See it: parameter counts and weight bytes of published models, counted on the meta device.

Modules built under torch.device("meta") have shapes but no storage, so even
a 70B-parameter model is instantiated in milliseconds with no memory. The
script builds GPT-2 (four sizes), BERT-base/large and LLaMA-2-7B/70B from
their published configs out of real torch modules (nn.Embedding, nn.Linear,
nn.TransformerEncoderLayer, nn.RMSNorm), counts their parameters, checks each
count against a closed-form formula, runs a meta forward pass to check the
wiring, compares with what the papers report, and converts to bytes per dtype.

Run from the repo root:  python snippets/problems/13_large_model_size/param_counts.py
"""
import argparse
import json
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
GB = 1e9

# GPT-2 (Radford et al. 2019): layers and d_model from Table 2; vocabulary 50,257 (Section 2.2);
# context 1024 (Section 2.3). "paper" is Table 2's parameter column; "readme" is the corrected
# size in the openai/gpt-2 README ("our original parameter counts were wrong").
GPT2_CONFIGS = {"GPT-2 small": {"layers": 12, "d": 768, "paper": 117e6, "readme": 124e6},
        "GPT-2 medium": {"layers": 24, "d": 1024, "paper": 345e6, "readme": 355e6},
        "GPT-2 large": {"layers": 36, "d": 1280, "paper": 762e6, "readme": 774e6},
        "GPT-2 XL": {"layers": 48, "d": 1600, "paper": 1542e6, "readme": 1558e6}}
GPT2_VOCAB, GPT2_CTX = 50257, 1024
GPT1_VOCAB = 40478  # vocabulary of the released GPT-1 model (40,000 BPE merges, Radford et al. 2018, Section 4.1)
# BERT (Devlin et al. 2019, arXiv:1810.04805, Section 3): L=12, H=768, A=12, 110M and L=24, H=1024, A=16,
# 340M; feed-forward 4H; 512 positions, 2 segment types; WordPiece vocabulary of the released models 30,522.
BERT_CONFIGS = {"BERT-base": {"layers": 12, "d": 768, "heads": 12, "paper": 110e6},
        "BERT-large": {"layers": 24, "d": 1024, "heads": 16, "paper": 340e6}}
BERT_VOCAB, BERT_CTX = 30522, 512
# LLaMA-2: 7B has d 4096, 32 heads, 32 layers (LLaMA, arXiv:2302.13971, Table 2, 6.7B row); 70B has
# d 8192, 64 heads, 80 layers (65B row) with GQA, 8 KV heads (Llama 2, arXiv:2307.09288, Table 1, A.2.1).
# FFN sizes 11008 and 28672 and the untied output head are those of the released checkpoints.
LLAMA_CONFIGS = {"LLaMA-2-7B": {"layers": 32, "d": 4096, "heads": 32, "kv_heads": 32, "ffn": 11008, "paper": 6.7e9},
         "LLaMA-2-70B": {"layers": 80, "d": 8192, "heads": 64, "kv_heads": 8, "ffn": 28672, "paper": 70e9}}
LLAMA_VOCAB = 32000
BYTES = {"fp32": 4, "bf16": 2, "int8": 1, "int4": 0.5}


# --8<-- [start:core]
class GPT2(nn.Module):
    def __init__(self, vocab, ctx, d, layers, tie=True):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        # A GPT-2 block has the same weights as a pre-LN encoder layer: qkv, out, 2 LayerNorms, 4d MLP.
        self.h = nn.ModuleList(nn.TransformerEncoderLayer(d, d // 64, 4 * d, activation="gelu", batch_first=True,
                                                          norm_first=True) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        if tie:
            self.lm_head.weight = self.wte.weight  # one matrix, stored once

    def forward(self, ids):  # ids: (B, T)
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))  # (B, T, d)
        mask = nn.Transformer.generate_square_subsequent_mask(ids.shape[1], device=ids.device)  # (T, T)
        for block in self.h:
            x = block(x, src_mask=mask, is_causal=True)  # (B, T, d)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab)


def count(model):
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


def weight_bytes(n_params, dtype):
    return n_params * BYTES[dtype]


def on_meta(build):
    with torch.device("meta"):  # parameters get shapes but no storage: no memory, no init cost
        return build()


# e.g. on_meta(lambda: GPT2(50257, 1024, 768, 12)) is GPT-2 small: count() gives its parameters
# --8<-- [end:core]


class Bert(nn.Module):
    def __init__(self, vocab, ctx, d, layers, heads):
        super().__init__()
        self.word, self.pos, self.seg = nn.Embedding(vocab, d), nn.Embedding(ctx, d), nn.Embedding(2, d)
        self.ln = nn.LayerNorm(d)
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, 4 * d, activation="gelu", batch_first=True)
                                    for _ in range(layers))  # post-LN, as BERT
        self.pooler = nn.Linear(d, d)

    def forward(self, ids):  # ids: (B, T)
        x = self.ln(self.word(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
                    + self.seg(torch.zeros_like(ids)))  # (B, T, d)
        for layer in self.layers:
            x = layer(x)  # (B, T, d)
        return x, torch.tanh(self.pooler(x[:, 0]))  # (B, T, d), (B, d)


class LlamaBlock(nn.Module):
    def __init__(self, d, heads, kv_heads, ffn):
        super().__init__()
        hd = d // heads
        self.heads, self.kv_heads, self.hd = heads, kv_heads, hd
        self.attn_norm, self.ffn_norm = nn.RMSNorm(d), nn.RMSNorm(d)
        self.wq, self.wo = nn.Linear(d, heads * hd, bias=False), nn.Linear(heads * hd, d, bias=False)
        self.wk, self.wv = (nn.Linear(d, kv_heads * hd, bias=False) for _ in range(2))
        self.w1, self.w3 = (nn.Linear(d, ffn, bias=False) for _ in range(2))
        self.w2 = nn.Linear(ffn, d, bias=False)

    def forward(self, x):  # x: (B, T, d); rotary embeddings omitted (no parameters)
        b, t, d = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(b, t, self.heads, self.hd).transpose(1, 2)  # (B, H, T, hd)
        k = self.wk(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)  # (B, H_kv, T, hd)
        v = self.wv(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)  # (B, H_kv, T, hd)
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)  # (B, H, T, hd)
        x = x + self.wo(a.transpose(1, 2).reshape(b, t, d))  # (B, H, T, hd) -> (B, T, H, hd) -> (B, T, d)
        h = self.ffn_norm(x)
        return x + self.w2(nn.functional.silu(self.w1(h)) * self.w3(h))  # SwiGLU


class Llama(nn.Module):
    def __init__(self, vocab, d, layers, heads, kv_heads, ffn):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(LlamaBlock(d, heads, kv_heads, ffn) for _ in range(layers))
        self.norm = nn.RMSNorm(d)
        self.output = nn.Linear(d, vocab, bias=False)  # not tied to the embedding

    def forward(self, ids):  # ids: (B, T)
        x = self.tok(ids)  # (B, T, d)
        for layer in self.layers:
            x = layer(x)
        return self.output(self.norm(x))  # (B, T, vocab)


def formula_gpt2(vocab, ctx, d, layers):
    return vocab * d + ctx * d + layers * (12 * d * d + 13 * d) + 2 * d


def formula_bert(vocab, ctx, d, layers):
    return (vocab + ctx + 2) * d + 2 * d + layers * (12 * d * d + 13 * d) + d * d + d


def formula_llama(vocab, d, layers, heads, kv_heads, ffn):
    hd = d // heads
    attn = 2 * d * heads * hd + 2 * d * kv_heads * hd
    return 2 * vocab * d + d + layers * (attn + 3 * d * ffn + 2 * d)


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
    ap.add_argument("--device", default="cpu", help="unused: everything is built on the meta device")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    ids = torch.zeros(1, 8, dtype=torch.long, device="meta")  # (B, T): a meta forward checks the shapes
    models = {}

    for name, c in GPT2_CONFIGS.items():
        m = on_meta(lambda: GPT2(GPT2_VOCAB, GPT2_CTX, c["d"], c["layers"]))
        untied = count(on_meta(lambda: GPT2(GPT2_VOCAB, GPT2_CTX, c["d"], c["layers"], tie=False)))
        n = count(m)
        assert n == formula_gpt2(GPT2_VOCAB, GPT2_CTX, c["d"], c["layers"]), name
        if name == "GPT-2 small":  # one meta forward per architecture checks the wiring
            assert m(ids).shape == (1, 8, GPT2_VOCAB)
        n_gpt1_vocab = formula_gpt2(GPT1_VOCAB, GPT2_CTX, c["d"], c["layers"])
        assert round(n / 1e6) != round(c["paper"] / 1e6), f"{name}: the paper's figure is not a rounding of the count"
        assert round(n / 1e6) == round(c["readme"] / 1e6), f"{name}: should match the corrected README size"
        assert round(n_gpt1_vocab / 1e6) == round(c["paper"] / 1e6), f"{name}: GPT-1 vocabulary hypothesis fails"
        models[name] = {"params": n, "paper": c["paper"], "readme": c["readme"], "untied": untied,
                        "tie_saving": untied - n, "with_gpt1_vocab": n_gpt1_vocab,
                        "diff_from_paper": n - c["paper"], "rel_diff_from_paper": n / c["paper"] - 1}

    for name, c in BERT_CONFIGS.items():
        m = on_meta(lambda: Bert(BERT_VOCAB, BERT_CTX, c["d"], c["layers"], c["heads"]))
        n = count(m)
        assert n == formula_bert(BERT_VOCAB, BERT_CTX, c["d"], c["layers"]), name
        if name == "BERT-base":
            assert m(ids)[1].shape == (1, c["d"])
        assert round(n, -7) == c["paper"], f"{name}: {n:,} should round to the paper's {c['paper']:.0f}"
        models[name] = {"params": n, "paper": c["paper"], "rel_diff_from_paper": n / c["paper"] - 1}

    for name, c in LLAMA_CONFIGS.items():
        m = on_meta(lambda: Llama(LLAMA_VOCAB, c["d"], c["layers"], c["heads"], c["kv_heads"], c["ffn"]))
        n = count(m)
        assert n == formula_llama(LLAMA_VOCAB, c["d"], c["layers"], c["heads"], c["kv_heads"], c["ffn"]), name
        if name == "LLaMA-2-7B":
            assert m(ids).shape == (1, 8, LLAMA_VOCAB)
        assert all(p.device.type == "meta" for p in m.parameters()), "nothing was allocated"
        # The paper's precision: LLaMA gives 6.7B (one decimal); "70B" is a round name (nearest 10B).
        step = 1e8 if c["paper"] < 1e10 else 1e10
        assert round(n / step) == round(c["paper"] / step), f"{name}: {n:,}"
        models[name] = {"params": n, "paper": c["paper"], "rel_diff_from_paper": n / c["paper"] - 1}

    for name, r in models.items():
        r["gb"] = {dt: weight_bytes(r["params"], dt) / GB for dt in BYTES}
    # The meta tensors agree: bytes = numel * element_size for a real dtype.
    m = on_meta(lambda: Llama(LLAMA_VOCAB, 4096, 32, 32, 32, 11008)).to(torch.bfloat16)
    meta_bytes = sum(p.numel() * p.element_size() for p in m.parameters())
    assert meta_bytes == weight_bytes(models["LLaMA-2-7B"]["params"], "bf16")

    results = {"machine": machine_info(args.device), "models": models, "bytes_per_param": BYTES,
               "gpt2_gap_per_d": {k: models[k]["diff_from_paper"] / GPT2_CONFIGS[k]["d"] for k in GPT2_CONFIGS},
               "gpt2_vocab_gap": GPT2_VOCAB - GPT1_VOCAB}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"{'model':<13} {'params':>15} {'paper':>8} {'diff':>7}  " + "  ".join(f"{d:>6} GB" for d in BYTES))
    for name, r in models.items():
        print(f"{name:<13} {r['params']:>15,} {r['paper'] / 1e6:>7,.0f}M {r['rel_diff_from_paper']:>+7.1%}  "
              + "  ".join(f"{r['gb'][d]:>9.2f}" for d in BYTES))
    print("\nGPT-2: the counts match the README's corrected sizes ("
          + "/".join(f"{GPT2_CONFIGS[k]['readme'] / 1e6:.0f}M" for k in GPT2_CONFIGS) + "), not the paper's.")
    print(f"With GPT-1's {GPT1_VOCAB:,}-token vocabulary in place of {GPT2_VOCAB:,}, the same formula gives "
          + ", ".join(f"{models[k]['with_gpt1_vocab'] / 1e6:.1f}M" for k in GPT2_CONFIGS) + ": the paper's four numbers.")
    print("GPT-2 tied head saves " + ", ".join(f"{models[k]['tie_saving'] / 1e6:.1f}M" for k in GPT2_CONFIGS)
          + " parameters (vocab x d_model)")


if __name__ == "__main__":
    main()
