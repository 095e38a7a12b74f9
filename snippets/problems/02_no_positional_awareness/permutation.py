"""See it: self-attention without positions is permutation-equivariant.

Shuffling the input tokens of nn.MultiheadAttention (or a whole
nn.TransformerEncoderLayer) shuffles its outputs in exactly the same way and
changes nothing else. Mean-pooled, "dog bites man" and "man bites dog" become
the same vector. A causal mask is the one ingredient that breaks the symmetry.

Run from the repo root:  python snippets/problems/02_no_positional_awareness/permutation.py
"""
import argparse
import itertools
import json
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
E, HEADS, T = 32, 4, 6  # embedding size, heads, tokens (T! = 720 orderings, all tested)


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


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    dev = ap.parse_args().device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    # --8<-- [start:core]
    def equivariance_error(layer, x, perms):
        """max |layer(x[perm]) - layer(x)[perm]| over every ordering in perms.

        x: (1, T, E) token embeddings with NO position information; perms: (P, T).
        """
        y = layer(x)  # (1, T, E)
        y_perm = layer(x[0, perms])  # x[0, perms]: (P, T, E), the same tokens in P orders
        return (y_perm - y[0, perms]).abs().max().item()  # y[0, perms]: (P, T, E)

    mha = nn.MultiheadAttention(E, HEADS, batch_first=True).to(dev).eval()
    layer = nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=64, batch_first=True).to(dev).eval()
    x = torch.randn(1, T, E, device=dev)  # (B=1, T, E)
    perms = torch.tensor(list(itertools.permutations(range(T))), device=dev)  # (720, T): all orderings

    attn = lambda z: mha(z, z, z, need_weights=False)[0]  # noqa: E731  self-attention, (B, T, E)
    err_mha = equivariance_error(attn, x, perms)
    err_layer = equivariance_error(layer, x, perms)
    torch.testing.assert_close(err_mha, 0.0, atol=1e-5, rtol=0)  # Attn(PX) = P Attn(X)
    torch.testing.assert_close(err_layer, 0.0, atol=1e-5, rtol=0)  # same for attention + MLP + norms

    # "dog bites man" vs "man bites dog": same words, opposite meaning.
    vocab = {"dog": 0, "bites": 1, "man": 2}
    embed = nn.Embedding(len(vocab), E).to(dev)
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=64, batch_first=True),
                                    num_layers=2, enable_nested_tensor=False).to(dev).eval()

    def encode(words):
        ids = torch.tensor([[vocab[w] for w in words.split()]], device=dev)  # (1, T)
        h = encoder(embed(ids))  # (1, T, E): contextual token vectors
        return h, h.mean(dim=1)  # mean-pooled sentence vector, (1, E)

    h_dbm, v_dbm = encode("dog bites man")
    h_mbd, v_mbd = encode("man bites dog")
    torch.testing.assert_close(v_dbm, v_mbd)  # one sentence vector for both meanings
    torch.testing.assert_close(h_dbm[0, 0], h_mbd[0, 2])  # "dog" as subject == "dog" as object
    # --8<-- [end:core]

    # Non-vacuity: reordering really moves the outputs, and a different bag of words differs.
    moved = (attn(x.flip(1)) - attn(x)).abs().max().item()  # x.flip(1): (1, T, E), reversed order
    _, v_dbd = encode("dog bites dog")
    cos = nn.functional.cosine_similarity
    cos_dbm_mbd, cos_dbm_dbd = cos(v_dbm, v_mbd).item(), cos(v_dbm, v_dbd).item()
    assert moved > 1e-2, "reordering should move the outputs; otherwise the test proves nothing"
    assert 1 - cos_dbm_dbd > 1e-3, "a different bag of words should give a different vector"

    # A causal mask breaks the symmetry: token t sees only tokens 0..t, so order matters.
    causal = nn.Transformer.generate_square_subsequent_mask(T, device=dev)  # (T, T), -inf above the diagonal
    attn_causal = lambda z: mha(z, z, z, attn_mask=causal, need_weights=False)[0]  # noqa: E731
    err_causal = (attn_causal(x.flip(1)) - attn_causal(x).flip(1)).abs().max().item()
    assert err_causal > 1e-2, "a causal mask should break permutation equivariance"

    results = {
        "machine": {**machine_info(), "device": dev},
        "config": {"embed_dim": E, "heads": HEADS, "tokens": T, "permutations_tested": len(perms), "seed": SEED},
        "max_abs_err": {"mha": err_mha, "encoder_layer": err_layer,
                        "pooled_dbm_vs_mbd": (v_dbm - v_mbd).abs().max().item(),
                        "dog_subject_vs_object": (h_dbm[0, 0] - h_mbd[0, 2]).abs().max().item()},
        "reversal_moves_outputs_by": moved,
        "causal_equivariance_err": err_causal,
        "cosine": {"dbm_vs_mbd": cos_dbm_mbd, "dbm_vs_dbd": cos_dbm_dbd},
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    r = results["max_abs_err"]
    print(f"{len(perms)} orderings of {T} tokens, E={E}, {HEADS} heads, device={dev}")
    print(f"max |f(PX) - P f(X)|   nn.MultiheadAttention       {r['mha']:.1e}")
    print(f"                       nn.TransformerEncoderLayer  {r['encoder_layer']:.1e}")
    print(f"reversing the input moves the outputs by up to     {moved:.2f}")
    print(f"with a causal mask, max |f(PX) - P f(X)|           {err_causal:.2f}")
    print(f"'dog bites man' vs 'man bites dog' (mean-pooled):  max diff {r['pooled_dbm_vs_mbd']:.1e}, "
          f"cosine {cos_dbm_mbd:.6f}")
    print(f"'dog' as subject vs as object:                     max diff {r['dog_subject_vs_object']:.1e}")
    print(f"'dog bites man' vs 'dog bites dog':                cosine {cos_dbm_dbd:.3f}")


if __name__ == "__main__":
    main()
