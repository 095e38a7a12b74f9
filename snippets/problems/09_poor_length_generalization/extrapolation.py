"""See it: trained on length 32, tested on length 128, most position schemes fail past 32.

Task ("latest value"): a stream of tokens, each one of 8 values (probability
0.25) or a filler token. At every position the model must output the most
recent value seen so far. The rule is identical at every length and only needs
the order of nearby tokens, so nothing about the task gets harder at 128.

The same tiny causal transformer (one layer, width 32, 4 heads) is trained
five times, 200 AdamW steps on 32 sequences of length L = 32, changing only
how position enters:
  learned     a learned table of L position vectors added to the input
              (it has no row for position >= L; we reuse row L-1 there)
  sinusoidal  the fixed sin/cos vectors of Vaswani et al. added to the input
  rope        rotary embeddings on queries and keys (Su et al.)
  alibi       a per-head penalty slope * distance on the attention scores (Press et al.)
  none        no position information at all (NoPE), only the causal mask
Then each is evaluated on 256 fresh sequences of length 4L = 128. Because the
model is causal, positions < 32 see exactly what they saw in training; the
positions after 32 are the test of length generalisation.

Checks: the attention block equals nn.TransformerEncoderLayer with the same
weights; RoPE scores depend only on the distance i - j; the learned table
really cannot be indexed at position L; then the measured claims.

Run from the repo root:  python snippets/problems/09_poor_length_generalization/extrapolation.py
"""
# build: measures=time  (reports the training time)
import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
V, P_VALUE = 8, 0.25  # value tokens 0..7 (token 8 is the filler); share of value tokens
L = 32  # training length
TEST_LEN, N_TEST = 4 * L, 256
D, HEADS, MLP = 32, 4, 64
STEPS, BATCH, LR = 200, 32, 5e-3
SCHEMES = ["learned", "sinusoidal", "rope", "alibi", "none"]
BUCKET = 4  # positions per point in the figure


# --8<-- [start:core]
def latest_value_batch(B, T, generator=None):
    """x: (B, T) tokens; y: (B, T) the most recent value at or before each position."""
    values = torch.randint(0, V, (B, T), generator=generator)
    is_value = torch.rand(B, T, generator=generator) < P_VALUE
    is_value[:, 0] = True  # so every position has an answer
    x = torch.where(is_value, values, V)  # V = the filler token
    where = torch.where(is_value, torch.arange(T), 0)  # (B, T) own index if a value
    return x, x.gather(1, where.cummax(dim=1).values)  # value at the latest such index


def sinusoidal(T, d):  # Vaswani et al. 2017, Section 3.5
    angle = torch.arange(T)[:, None] / 10000 ** (torch.arange(0, d, 2) / d)  # (T, d/2)
    return torch.stack([angle.sin(), angle.cos()], -1).flatten(1)  # (T, d)


def rope_angles(T, dh, base=10000.0):  # Su et al. 2021: pair i turns by m * base^(-2i/dh)
    return torch.arange(T)[:, None] * base ** (-torch.arange(0, dh, 2) / dh)  # (T, dh/2)


def rotate(x, angles):  # x: (B, H, T, dh); turn pair (x[2i], x[2i+1]) by angles[:, i]
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, T, dh/2) each
    cos, sin = angles.cos(), angles.sin()
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)  # (B, H, T, dh/2, 2)
    return out.flatten(-2)  # (B, H, T, dh)


def alibi_bias(T, heads):  # Press et al. 2021, Section 3: head h adds -slope_h * (i - j)
    slopes = 2.0 ** (-8.0 * torch.arange(1, heads + 1) / heads)  # 1/4 ... 1/256 for 4 heads
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # (T, T) i - j
    return -slopes[:, None, None] * distance  # (H, T, T)


class TinyLM(nn.Module):
    """One pre-norm causal transformer layer; `scheme` decides how position gets in."""

    def __init__(self, scheme):
        super().__init__()
        self.scheme = scheme
        self.tok = nn.Embedding(V + 1, D)
        if scheme == "learned":
            self.pos = nn.Embedding(L, D)  # L rows: positions 0..L-1, nothing else
        self.ln1, self.ln2, self.ln_out = nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.mlp = nn.Sequential(nn.Linear(D, MLP), nn.GELU(), nn.Linear(MLP, D))
        self.head = nn.Linear(D, V + 1)

    def forward(self, x):  # x: (B, T) token ids
        B, T = x.shape
        h = self.tok(x)  # (B, T, D)
        if self.scheme == "learned":  # past the table: reuse its last row
            h = h + self.pos(torch.arange(T).clamp(max=L - 1))
        elif self.scheme == "sinusoidal":
            h = h + sinusoidal(T, D)
        qkv = self.qkv(self.ln1(h)).view(B, T, 3, HEADS, D // HEADS)  # (B, T, 3, H, dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, dh)
        future = torch.ones(T, T, dtype=torch.bool).triu(1)  # j > i
        bias = torch.zeros(HEADS, T, T).masked_fill(future, float("-inf"))  # (H, T, T)
        if self.scheme == "rope":
            angles = rope_angles(T, D // HEADS)
            q, k = rotate(q, angles), rotate(k, angles)
        elif self.scheme == "alibi":
            bias = bias + alibi_bias(T, HEADS)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, T, dh)
        h = h + self.proj(a.transpose(1, 2).reshape(B, T, D))  # (B, T, D)
        h = h + self.mlp(self.ln2(h))
        return self.head(self.ln_out(h))  # (B, T, V+1)


def train(scheme):
    torch.manual_seed(SEED)
    model = TinyLM(scheme)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, STEPS, pct_start=0.1)
    for _ in range(STEPS):
        x, y = latest_value_batch(BATCH, L)  # always length L
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


@torch.no_grad()
def accuracy_by_position(model, x, y):
    return (model(x).argmax(-1) == y).float().mean(0)  # (T,)
# --8<-- [end:core]


def check_against_torch(model, x):
    """Scheme 'none' (and 'learned' inside the table) is exactly nn.TransformerEncoderLayer + a head."""
    layer = nn.TransformerEncoderLayer(D, HEADS, MLP, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True).eval()
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(model.qkv.weight)
        layer.self_attn.in_proj_bias.copy_(model.qkv.bias)
        layer.self_attn.out_proj.weight.copy_(model.proj.weight)
        layer.self_attn.out_proj.bias.copy_(model.proj.bias)
        for mine, theirs in ((model.mlp[0], layer.linear1), (model.mlp[2], layer.linear2),
                             (model.ln1, layer.norm1), (model.ln2, layer.norm2)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
        T = x.shape[1]
        h = model.tok(x)  # (B, T, D)
        if model.scheme == "learned":
            h = h + model.pos(torch.arange(T))
        causal = nn.Transformer.generate_square_subsequent_mask(T)  # (T, T) 0 / -inf
        ref = model.head(model.ln_out(layer(h, src_mask=causal, is_causal=True)))  # (B, T, V+1)
        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def nope_output_ignores_order(model, x, i, generator):
    """Shuffle tokens 0..i-1 and keep token i: the output at i of a one-layer model without positions
    cannot change (it sees x_i and the multiset of the tokens before it). Returns the largest change."""
    perm = torch.randperm(i, generator=generator, device=x.device)
    shuffled = torch.cat([x[:, :i][:, perm], x[:, i:]], dim=1)  # (B, T): same tokens, earlier ones reordered
    return (model(shuffled)[:, i] - model(x)[:, i]).abs().max().item()


def first_position_below(curve, level=0.9):
    """Start of the first BUCKET of positions whose mean accuracy is below `level` (the test length if none)."""
    return next((BUCKET * i for i, a in enumerate(curve) if a < level), TEST_LEN)


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


STYLE = {"learned": ("#1f77b4", "-"), "sinusoidal": ("#ff7f0e", "-"), "rope": ("#d62728", "-"),
         "alibi": ("#2ca02c", "-"), "none": ("0.45", ":")}


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, ax = plt.subplots(figsize=(6.6, 3.4))
    ax.axvspan(L, TEST_LEN, color="0.94", lw=0)
    ax.axvline(L, color="0.5", lw=0.8, ls="--")
    ax.text(L + 1.5, 0.03, f"never seen in training (positions ≥ {L})", fontsize=8, color="0.35")
    x = [BUCKET * i + (BUCKET - 1) / 2 for i in range(TEST_LEN // BUCKET)]
    for scheme, ys in curves.items():
        color, ls = STYLE[scheme]
        ax.plot(x, ys, ls, color=color, lw=1.6, label=scheme)
    ax.set_xlim(0, TEST_LEN)
    ax.set_ylim(0, 1.03)
    ax.set_xticks([0, L, 2 * L, 3 * L, 4 * L])
    ax.set_xlabel("position in the test sequence")
    ax.set_ylabel(f"accuracy ({N_TEST} sequences)")
    ax.set_title(f"trained on length {L}, tested on length {TEST_LEN}", fontsize=9)
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=8, frameon=False, loc="lower left", ncol=5, bbox_to_anchor=(0, 0.08))
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu only: the model is tiny; the flag is kept for uniformity")
    args = ap.parse_args()
    torch.set_default_device(args.device)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    # Exact properties first.
    # (a) RoPE: the score between a query at i and a key at j depends only on i - j.
    g = torch.Generator(device=args.device).manual_seed(SEED)
    q, k = torch.randn(2, 1, 1, 16, D // HEADS, generator=g)  # (1, 1, T, dh) each
    scores = [rotate(q, rope_angles(16 + s, D // HEADS)[s:]) @ rotate(k, rope_angles(16 + s, D // HEADS)[s:]).mT
              for s in (0, 1000)]  # the same 16 tokens placed at positions 0..15 and 1000..1015
    torch.testing.assert_close(scores[0], scores[1], rtol=1e-4, atol=1e-4)
    # (b) A learned table of L rows has no vector for position L.
    try:
        nn.Embedding(L, D)(torch.tensor([L]))
        raise AssertionError("position L should be out of the learned table")
    except IndexError:
        pass

    models = {s: train(s) for s in SCHEMES}
    train_s = time.perf_counter() - t0

    x, y = latest_value_batch(N_TEST, TEST_LEN, generator=torch.Generator(device=args.device).manual_seed(1234))
    for s in ("none", "learned"):
        check_against_torch(models[s], x[:8, :L])
    # One layer, no positions: reordering the earlier tokens leaves the output at position L-1 unchanged
    # (up to float rounding); the same shuffle does change the learned-position model's output.
    g_perm = torch.Generator(device=args.device).manual_seed(SEED)
    order_change = {s: nope_output_ignores_order(models[s], x[:, :L], L - 1, g_perm.manual_seed(SEED))
                    for s in ("none", "learned")}
    assert order_change["none"] < 1e-4, f"NoPE output at position {L - 1} changed when earlier tokens moved: {order_change}"
    assert order_change["learned"] > 0.1, f"the shuffle should change a model that has positions: {order_change}"
    acc = {s: accuracy_by_position(m, x, y) for s, m in models.items()}  # (TEST_LEN,) each
    rows = {s: {"in_training_range": a[:L].mean().item(),  # positions 0..L-1
                "L_to_2L": a[L:2 * L].mean().item(),
                "2L_to_4L": a[2 * L:].mean().item(),
                "beyond_L": a[L:].mean().item()} for s, a in acc.items()}  # positions L..TEST_LEN-1
    curves = {s: a.reshape(-1, BUCKET).mean(1).tolist() for s, a in acc.items()}
    others = [s for s in SCHEMES if s not in ("alibi", "none")]
    summary = {"machine": {**machine_info(), "device": args.device},
               "config": {"train_len": L, "test_len": TEST_LEN, "last_test_position": TEST_LEN - 1,
                          "bucket": BUCKET, "values": V, "p_value": P_VALUE, "d_model": D,
                          "heads": HEADS, "mlp": MLP, "layers": 1, "steps": STEPS, "batch": BATCH, "lr": LR,
                          "test_sequences": N_TEST, "seed": SEED},
               "acc": rows, "curves": curves,
               "first_position_below_90": {s: first_position_below(c) for s, c in curves.items()},
               "order_check": {"position": L - 1, **order_change},  # max |output change| at L-1 after the shuffle
               "alibi_beyond_minus_best_other": rows["alibi"]["beyond_L"] - max(rows[s]["beyond_L"] for s in others),
               "train_seconds": train_s}
    (OUT / "results.json").write_text(json.dumps(summary, indent=2))
    plot(curves, OUT / "accuracy_by_position.svg")

    print(f"task: latest value; trained on length {L} ({STEPS} steps x {BATCH}), "
          f"tested on {N_TEST} sequences of length {TEST_LEN}")
    fb = summary["first_position_below_90"]
    print(f"{'scheme':>11} {'pos < L':>8} {'L..2L':>7} {'2L..4L':>7} {'first pos < 0.9':>16}")
    for s, r in rows.items():
        print(f"{s:>11} {r['in_training_range']:8.3f} {r['L_to_2L']:7.3f} {r['2L_to_4L']:7.3f} "
              f"{fb[s] if fb[s] < TEST_LEN else 'never':>16}")
    print(f"learned table: no row for position {L} (IndexError); positions >= {L} reuse row {L - 1}")
    print("checks: RoPE scores depend only on i - j (same at positions 0 and 1000); "
          "'none' == nn.TransformerEncoderLayer")
    print(f"shuffling tokens 0..{L - 2} changes the output at position {L - 1} by "
          f"{order_change['none']:.1e} without positions (none), {order_change['learned']:.2f} with learned ones")
    print(f"machine: {summary['machine']['cpu']}, {summary['machine']['torch_threads']} torch thread{'' if summary['machine']['torch_threads'] == 1 else 's'}, "
          f"torch {summary['machine']['torch']}")

    # The claims the page makes.
    for s in others + ["alibi"]:
        assert rows[s]["in_training_range"] > 0.95, f"{s} should learn the task at the training length"
    assert rows["none"]["in_training_range"] < 0.9, "one NoPE layer cannot tell which value came last"
    assert rows["alibi"]["beyond_L"] > 0.9, f"ALiBi should keep working past L: {rows['alibi']}"
    for s in others:
        assert rows[s]["beyond_L"] < 0.7, f"{s} should fail past the training length: {rows[s]}"
    assert summary["alibi_beyond_minus_best_other"] > 0.3, "ALiBi should beat the other schemes clearly past L"
    fb = summary["first_position_below_90"]
    assert fb["rope"] > max(fb["learned"], fb["sinusoidal"]), f"RoPE should degrade later than the absolute schemes: {fb}"


if __name__ == "__main__":
    main()
