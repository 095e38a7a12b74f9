"""What one attention layer costs against sequence length N, for the patterns of the ten architectures.

For every pattern the script counts the query-key pairs that get a score, exactly, per head and
layer, and turns them into multiply-adds (each scored pair costs d for q.k and d more for adding
its share of v, head size d). Performer scores no pairs, so its multiply-adds are counted from its
matrix products instead. Each count is a closed formula in N; at small N the script builds the
pattern's boolean N x N mask and asserts that the formula counts exactly its True entries, and it
asserts the multiply-add formulas against torch's own FLOP counter. Reformer's count does not
depend on where tokens hash (sorting only reorders the rounds x N slots, and every chunk holds the
same number), so for it the script runs chunked LSH attention on hashed vectors, has torch count its
multiply-adds, and checks its output against dense attention over the slots with the
(slots x slots) mask of the chunk pattern. Then it fits the growth
exponent k in cost ~ N^k and asserts it: 2 for full attention, 1.5 for the strided pattern, 1 for
the rest.

The configurations are those of the architecture pages (see CONFIG below).

Run from the repo root:  python snippets/architectures/index/attention_cost.py
"""
import json
import math
import os
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
D = 64  # head size (BERT-base, GPT-2, ViT-B, Transformer-XL, Longformer, Performer, Switch-Base all use 64)
NS = [2 ** k for k in range(8, 21)]  # 256 ... 1,048,576 tokens
N_FIT = 5  # fit exponents on the five largest N
CONFIG = {
    "txl_segment": 512, "txl_memory": 512,  # Transformer-XL, 12-layer enwik8 model: L = M = 512
    "window": 512,  # Longformer: w = 512 positions on one side, causal char-LM (its page's default)
    "lsh_chunk": 128, "lsh_rounds": 2,  # Reformer: chunks of 128 sorted tokens, 2 hash rounds
    "features": 256,  # Performer: m = 256 random features per head
}


# --8<-- [start:core]
def full_pairs(n):  # every query scores every key: Transformer encoder, BERT, ViT, Switch (encoder)
    return n * n


def causal_pairs(n):  # query i scores keys 0..i: GPT and every decoder
    return n * (n + 1) // 2


def xl_pairs(n, seg, mem):
    """Transformer-XL: segments of `seg` queries; each scores the `mem` cached positions before its
    segment (fewer at the start) and, causally, its own segment."""
    total = 0
    for s in range(0, n, seg):  # s = first position of the segment
        q = min(seg, n - s)  # queries in this segment
        total += q * min(mem, s) + q * (q + 1) // 2
    return total


def strided_pairs(n, l):
    """Sparse Transformer, strided: query i scores i-l..i and every l-th key before that."""
    i = np.arange(n, dtype=np.int64)
    return int((np.minimum(i, l) + 1 + np.maximum(i // l - 1, 0)).sum())


def window_pairs(n, w, causal=True, g=0):
    """Longformer: keys within w positions (only earlier ones if causal), plus g global tokens at
    positions 0..g-1 that see everything and that everything sees."""
    i = np.arange(n, dtype=np.int64)
    lo, hi = np.maximum(i - w, 0), (i if causal else np.minimum(i + w, n - 1))
    rows = hi - lo + 1 + np.maximum(np.minimum(g, lo), 0)  # window, plus global keys left of it
    if not causal:
        rows += np.maximum(np.minimum(g - 1, n - 1) - hi, 0)  # global keys right of the window
    rows[:g] = i[:g] + 1 if causal else n  # a global query sees every (earlier) key
    return int(rows.sum())


def lsh_pairs(n, chunk, rounds):
    """Reformer: n tokens hashed `rounds` times, sorted by bucket and cut into chunks; each chunk
    scores itself and the chunk before it (the first wraps to the last, as in the Reformer page)."""
    slots = rounds * n
    assert slots % chunk == 0, "the sorted sequence must split into whole chunks"
    return slots * (chunk if slots == chunk else 2 * chunk)


def macs(pairs, d=D):
    return 2 * d * pairs  # q.k (d multiply-adds) and weight * v (d more) per scored pair


def favor_macs(n, m, d=D):
    """Performer, FAVOR+: Q W^T and K W^T (m features), then K'^T [V 1] and Q' (K'^T [V 1])."""
    return 2 * n * m * d + 2 * n * m * (d + 1)
# --8<-- [end:core]


# Reference masks, straight from each pattern's definition: (n, n) bool, True = query i scores key j.
def _ij(n):
    return torch.arange(n)[:, None], torch.arange(n)[None, :]  # (n, 1) queries, (1, n) keys


def xl_mask(n, seg, mem):
    i, j = _ij(n)
    return (j <= i) & (j >= (i // seg) * seg - mem)


def strided_mask(n, l):
    i, j = _ij(n)
    return (j <= i) & ((j >= i - l) | ((i - j) % l == 0))


def window_mask(n, w, causal=True, g=0):
    i, j = _ij(n)
    band = ((i - j).abs() <= w) & ((j <= i) if causal else True)
    glob = (i < g) | (j < g)
    return (band | glob) & ((j <= i) if causal else True)


def lsh_sorted(n, rounds, n_buckets, d=16, seed=0):
    """Real hashing of random vectors: h(x) = argmax([xR; -xR]) per round, then all (round, token) slots
    sorted by (round, bucket, position). Returns the shared queries/keys x (n, d) and, for each sorted
    slot, the token it holds (rounds*n,)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)  # (n, d) shared queries/keys
    rot = x @ torch.randn(rounds, d, n_buckets // 2, generator=g, dtype=torch.float64)  # (rounds, n, n_buckets/2)
    buckets = torch.cat([rot, -rot], dim=-1).argmax(-1)  # (rounds, n)
    assert len(set(buckets.flatten().tolist())) > 1, "the hashing should use more than one bucket"
    key = (buckets + n_buckets * torch.arange(rounds)[:, None]) * n + torch.arange(n)  # (rounds, n)
    return x, key.flatten().argsort() % n  # (n, d), (rounds*n,) token of each sorted slot


def lsh_chunk_attention(xs, chunk):
    """LSH attention as Reformer computes it, on the sorted slots xs (slots, d), values = keys = queries:
    the sorted slots are cut into chunks and each chunk scores itself and the chunk before it (the
    first wraps to the last). Every pair in that window is scored; masking (other buckets, a token's
    own key) happens after scoring and changes no multiply-add."""
    s, d = xs.shape
    nc = s // chunk
    q = xs.view(nc, chunk, d)  # (nc, chunk, d)
    k = q if nc == 1 else torch.cat([q, q.roll(1, dims=0)], dim=1)  # (nc, chunk or 2*chunk, d): own, then previous
    w = (q @ k.transpose(1, 2) / math.sqrt(d)).softmax(-1)  # (nc, chunk, K)
    return (w @ k).reshape(s, d)  # (nc, chunk, d) -> (slots, d)


def lsh_window_mask(slots, chunk):
    """(slots, slots) bool in sorted order: slot a scores slot b when b's chunk is a's own or the one before."""
    c = torch.arange(slots) // chunk  # chunk of each sorted slot
    nc = slots // chunk
    return (c[:, None] == c[None, :]) | (c[None, :] == (c[:, None] - 1) % nc)


def favor(q, k, v, w):
    """FAVOR+ for one head: positive random features (Lemma 1), evaluated right to left."""
    d, m = q.shape[-1], w.shape[0]
    q, k = q / d ** 0.25, k / d ** 0.25
    qp = torch.exp(q @ w.T - (q * q).sum(-1, keepdim=True) / 2) / math.sqrt(m)  # (n, m)
    kp = torch.exp(k @ w.T - (k * k).sum(-1, keepdim=True) / 2) / math.sqrt(m)  # (n, m)
    v1 = torch.cat([v, torch.ones_like(v[:, :1])], dim=-1)  # (n, d+1): the last column gives the normaliser
    out = qp @ (kp.T @ v1)  # (n, d+1): never an (n, n) matrix
    return out[:, :-1] / out[:, -1:], (qp, kp, v1)  # (n, d)


def flops(fn, *args):
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


def check_formulas():
    """Closed forms against explicit masks, and multiply-add formulas against torch's FLOP counter."""
    checked, lsh_checked = 0, 0
    for n in (64, 100, 256):
        ones = torch.ones(n, n)
        assert full_pairs(n) == int(ones.sum())
        assert causal_pairs(n) == int(ones.tril().sum())
        for seg, mem in ((16, 16), (16, 40), (32, 8)):
            assert xl_pairs(n, seg, mem) == int(xl_mask(n, seg, mem).sum()), (n, seg, mem)
        for l in (7, math.isqrt(n)):
            assert strided_pairs(n, l) == int(strided_mask(n, l).sum()), (n, l)
        for w, causal, g in ((5, True, 0), (5, False, 0), (5, False, 3), (9, True, 2), (300, False, 1)):
            assert window_pairs(n, w, causal, g) == int(window_mask(n, w, causal, g).sum()), (n, w, causal, g)
        checked += 1 + 1 + 3 + 2 + 5
        # Reformer: sorting only permutes the rounds*n slots and every chunk holds `chunk` of them, so no
        # mask built from the hashing could change the count. Check what the count is for instead: run LSH
        # attention on hashed vectors, count its multiply-adds with torch, and check its output.
        for chunk, rounds in ((8, 2), (4, 1), (2 * n, 2)):
            x, token = lsh_sorted(n, rounds, n_buckets=8)
            xs = x[token]  # (rounds*n, d): the slots in sorted order
            counted = flops(lsh_chunk_attention, xs, chunk)
            assert counted == 2 * macs(lsh_pairs(n, chunk, rounds), d=xs.shape[1]), (n, chunk, rounds, counted)
            mask = lsh_window_mask(len(xs), chunk)  # (slots, slots)
            assert int(mask.sum()) == lsh_pairs(n, chunk, rounds), (n, chunk, rounds)
            ref = F.scaled_dot_product_attention(xs[None], xs[None], xs[None], attn_mask=mask)[0]  # (slots, d): dense
            torch.testing.assert_close(lsh_chunk_attention(xs, chunk), ref, rtol=1e-10, atol=1e-12)
            lsh_checked += 1

    # multiply-adds: 2d per scored pair for explicit attention, and FAVOR+'s formula, as torch counts them
    g = torch.Generator().manual_seed(0)
    n, m = 256, 32
    q, k, v = (torch.randn(n, D, generator=g, dtype=torch.float64) for _ in range(3))  # (n, d) each
    w = torch.randn(m, D, generator=g, dtype=torch.float64)  # (m, d) random features
    full = flops(lambda: ((q @ k.T) / math.sqrt(D)).softmax(-1) @ v)  # (n, n) scores, then (n, d)
    assert full == 2 * macs(full_pairs(n)), (full, macs(full_pairs(n)))  # a FLOP counter counts 2 per multiply-add
    out, (qp, kp, v1) = favor(q, k, v, w)
    assert flops(favor, q, k, v, w) == 2 * favor_macs(n, m), "FAVOR+ multiply-adds"
    quadratic = (qp @ kp.T) @ v1  # (n, n) implied attention matrix, then (n, d+1): same maths, other order
    torch.testing.assert_close(out, quadratic[:, :-1] / quadratic[:, -1:])
    return checked, lsh_checked


def costs(n):
    """Multiply-adds per head and layer for each pattern at length n."""
    c = CONFIG
    return {"full": macs(full_pairs(n)), "causal": macs(causal_pairs(n)),
            "xl": macs(xl_pairs(n, c["txl_segment"], c["txl_memory"])),
            "strided": macs(strided_pairs(n, math.isqrt(n))),
            "window": macs(window_pairs(n, c["window"])),
            "lsh": macs(lsh_pairs(n, c["lsh_chunk"], c["lsh_rounds"])),
            "favor": favor_macs(n, c["features"])}


PATTERNS = {  # key: (label, compared with, style)
    "full": ("full: Transformer encoder, BERT, ViT, Switch", None, dict(color="0.1", ls="-")),
    "causal": ("causal: GPT, every decoder", None, dict(color="0.1", ls="--")),
    "strided": ("strided, l = √N: Sparse Transformer", "causal", dict(color="#dd8452", marker="o")),
    "xl": ("segment + memory, L = M = 512: Transformer-XL", "causal", dict(color="#8172b3", marker="s")),
    "window": ("window, w = 512: Longformer", "causal", dict(color="#4c72b0", marker="^")),
    "lsh": ("LSH, chunks of 128, 2 rounds: Reformer", "causal", dict(color="#55a868", marker="v")),
    "favor": ("random features, m = 256: Performer", "full", dict(color="#c44e52", marker="D")),
}


def plot(table, path):
    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "svg.fonttype": "none",
                         "font.family": "DejaVu Sans", "font.size": 8, "figure.facecolor": "white",
                         "axes.facecolor": "white", "savefig.facecolor": "white", "savefig.transparent": False})
    ns = np.array(NS, dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(8.8, 3.9))
    for idx, (key, (label, _, style)) in enumerate(PATTERNS.items()):
        y = np.array([row[key] for row in table], dtype=float)
        kw = dict(lw=1.3, markersize=4, markevery=(idx % 3, 3), **style)  # staggered markers: close lines stay visible
        axes[0].loglog(ns, y, label=label, **kw)
        axes[1].loglog(ns, y / (2 * D * ns), **kw)
    axes[0].set_ylabel(f"multiply-adds per head and layer (d = {D})")
    axes[1].set_ylabel("per query, in scored-pair equivalents")
    axes[0].set_title("attention cost", fontsize=8.5)
    axes[1].set_title("cost per query (full attention: N keys)", fontsize=8.5)
    for ax in axes:
        ax.set_xlabel("sequence length N")
        ax.set_xticks([2 ** k for k in (8, 10, 12, 14, 16, 18, 20)],
                      ["256", "1K", "4K", "16K", "64K", "256K", "1M"])
        ax.minorticks_off()
        ax.grid(True, which="major", color="0.9", lw=0.6)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, frameon=False, fontsize=7.5)
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(path, format=path.suffix[1:], metadata={"Date": None} if path.suffix == ".svg" else None, dpi=130)
    plt.close(fig)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    n_checked, n_lsh = check_formulas()
    table = [{"n": n, **costs(n)} for n in NS]

    fit_ns = NS[-N_FIT:]
    fit = {key: float(np.polyfit(np.log(fit_ns), np.log([row[key] for row in table[-N_FIT:]]), 1)[0])
           for key in PATTERNS}
    last = table[-1]
    summary = {}
    for key, (label, versus, _) in PATTERNS.items():
        s = {"label": label, "exponent": fit[key], "per_query_at_max_n": last[key] / (2 * D * last["n"])}
        if versus:
            s["versus"] = versus
            s["cheaper_from_n"] = next(row["n"] for row in table if row[key] < row[versus])
            s["cheaper_at_every_n"] = all(row[key] < row[versus] for row in table)
            s["saving_at_max_n"] = last[versus] / last[key]
        summary[key] = s

    # the claims the page makes
    for key in ("full", "causal"):
        assert abs(fit[key] - 2) < 0.01, f"{key}: expected N^2, got N^{fit[key]:.3f}"
    assert abs(fit["strided"] - 1.5) < 0.03, f"strided: expected N^1.5, got N^{fit['strided']:.3f}"
    for key in ("xl", "window", "lsh", "favor"):
        assert abs(fit[key] - 1) < 0.01, f"{key}: expected N^1, got N^{fit[key]:.3f}"
        # linear is not free: at the shortest N it costs at least as much as full attention
        assert table[0][key] >= table[0][PATTERNS[key][1]], f"{key} should not be cheaper at N = {NS[0]}"
    assert summary["strided"]["cheaper_at_every_n"], "the strided pattern should be cheaper at every N here"
    # "window, chunks and features all cost about the same per query": within 5% of each other at the largest N
    per_query = [summary[key]["per_query_at_max_n"] for key in ("window", "lsh", "favor")]
    assert max(per_query) < 1.05 * min(per_query), per_query
    # ... and the page names one N from which all three are cheaper than their full counterpart
    assert len({summary[key]["cheaper_from_n"] for key in ("window", "lsh", "favor")}) == 1, summary

    results = {"config": {**CONFIG, "head_dim": D, "ns": NS, "fit_on": fit_ns}, "formulas_checked": n_checked,
               "lsh_runs_checked": n_lsh,
               "max_n": last["n"], "patterns": summary, "table": table}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(table, OUT / "attention_cost.svg")

    print(f"multiply-adds per head and layer, head size d = {D}; "
          f"exponent k fitted on N = {fit_ns[0]:,}..{fit_ns[-1]:,}")
    print(f"{'pattern':<48} {'k':>5} {'per query':>10} {'cheaper from N':>15} {'saving at N max':>16}")
    for key, s in summary.items():
        cheaper = "-" if "versus" not in s else ("all" if s["cheaper_at_every_n"] else f"{s['cheaper_from_n']:,}")
        saving = f"{s['saving_at_max_n']:.0f}x vs {s['versus']}" if "saving_at_max_n" in s else "-"
        print(f"{s['label']:<48} {s['exponent']:>5.2f} {s['per_query_at_max_n']:>10,.0f} {cheaper:>15} {saving:>16}")
    print(f"{n_checked} closed forms matched their explicit masks at N = 64, 100, 256; "
          f"multiply-add formulas matched torch's FLOP counter")
    print(f"LSH: {n_lsh} runs of chunked LSH attention on hashed vectors; torch counted exactly the formula's "
          f"multiply-adds, and each output matched dense attention over the slots")


if __name__ == "__main__":
    main()
