"""A fix for RoPE models: rescale the rotary frequencies to the new length (PI and NTK-aware).

RoPE turns dimension pair i of every query and key by the angle m * theta_i at
position m, with theta_i = b^(-2i/d) (b = 10000, d = head size). Trained up to
length L, the slow pairs never turned further than L * theta_i; at 4L they
reach angles the model never saw. Two ways to extend to L' = s * L:

  Position Interpolation (PI; Chen et al. 2023, arXiv:2306.15595): use position
      m * L / L' = m / s, i.e. every theta_i divided by s. No angle is new, but
      neighbouring tokens are s times closer in angle than in training.
  NTK-aware scaling (bloc97, r/LocalLLaMA 2023; analysed in YaRN, Peng et al.
      2023, arXiv:2309.00071, Section 3.1): raise the base to b' = b * s^(d/(d-2)).
      The fastest pair keeps its frequency, the slowest is divided by exactly s,
      the ones in between by less: local order stays sharp.

This script computes the frequencies of both from those formulas (and plots
them for a head size of 128, base 10000, L = 2048 -> 8192), checks the rotary
code against complex multiplication, then trains the tiny RoPE model of
extrapolation.py (length 32) and evaluates it at length 128 with plain RoPE,
PI, NTK-aware scaling (no extra training) and PI plus a short fine-tune at the
new length, which is what Chen et al. do.

Run from the repo root:  python snippets/problems/09_poor_length_generalization/rope_scaling.py
"""
# build: measures=time  (reports the training time)
import argparse
import copy
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
V, P_VALUE = 8, 0.25  # the "latest value" task of extrapolation.py
L = 32  # training length
S = 4  # extension factor: test length L' = S * L
TEST_LEN, N_TEST = S * L, 256
D, HEADS, MLP = 32, 4, 64
DH = D // HEADS  # 8: four rotary pairs per head
STEPS, BATCH, LR = 200, 32, 5e-3
FT_STEPS, FT_BATCH, FT_LR = 60, 8, 1e-3  # PI's short fine-tune at length S * L (same tokens per step)
BIG_DH, BIG_L = 128, 2048  # for the frequency plot: a common head size and training length
BUCKET = 4


# --8<-- [start:core]
def rope_frequencies(dh, base=10000.0):
    """theta_i = base^(-2i/dh): radians per position for pair i (i = 0 is fastest)."""
    return base ** (-torch.arange(0, dh, 2, dtype=torch.float64) / dh)


def scaled_frequencies(dh, s, base=10000.0):
    """Frequencies for a context s times longer than the training length."""
    return {
        "rope": rope_frequencies(dh, base),  # unchanged: extrapolate
        "pi": rope_frequencies(dh, base) / s,  # Chen et al. 2023: position m -> m / s
        "ntk": rope_frequencies(dh, base * s ** (dh / (dh - 2))),  # bloc97 2023
    }


def rotate(x, theta):  # x: (B, H, T, dh); pair i at position m turns by m * theta[i]
    angles = torch.arange(x.shape[-2], dtype=torch.float64)[:, None] * theta  # (T, dh/2)
    cos, sin = angles.cos().float(), angles.sin().float()
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, T, dh/2) each
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)  # (B, H, T, dh/2, 2)
    return out.flatten(-2)  # (B, H, T, dh)
# --8<-- [end:core]


def latest_value_batch(B, T, generator=None):
    """x: (B, T) tokens; y: (B, T) the most recent value token at or before each position."""
    values = torch.randint(0, V, (B, T), generator=generator)
    is_value = torch.rand(B, T, generator=generator) < P_VALUE
    is_value[:, 0] = True
    x = torch.where(is_value, values, V)
    last = torch.where(is_value, torch.arange(T), 0).cummax(dim=1).values  # (B, T)
    return x, x.gather(1, last)


class RopeLM(nn.Module):
    """extrapolation.py's one-layer model with RoPE; `theta` can be swapped at test time."""

    def __init__(self):
        super().__init__()
        self.theta = rope_frequencies(DH)
        self.tok = nn.Embedding(V + 1, D)
        self.ln1, self.ln2, self.ln_out = nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.mlp = nn.Sequential(nn.Linear(D, MLP), nn.GELU(), nn.Linear(MLP, D))
        self.head = nn.Linear(D, V + 1)

    def forward(self, x):  # x: (B, T)
        B, T = x.shape
        h = self.tok(x)  # (B, T, D)
        q, k, v = self.qkv(self.ln1(h)).view(B, T, 3, HEADS, DH).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, dh)
        q, k = rotate(q, self.theta), rotate(k, self.theta)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, dh)
        h = h + self.proj(a.transpose(1, 2).reshape(B, T, D))  # (B, T, D)
        h = h + self.mlp(self.ln2(h))
        return self.head(self.ln_out(h))  # (B, T, V+1)


def fit(model, steps, batch, length, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, steps, pct_start=0.1)
    for _ in range(steps):
        x, y = latest_value_batch(batch, length)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


@torch.no_grad()
def accuracy_by_position(model, x, y):
    return (model(x).argmax(-1) == y).float().mean(0)  # (T,)


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


STYLE = {"rope": ("#d62728", "-", "plain RoPE (extrapolate)"), "pi": ("#1f77b4", "--", "PI (positions / s)"),
         "ntk": ("#2ca02c", "-.", "NTK-aware (base × s^(d/(d-2)))"),
         "pi_finetuned": ("#9467bd", "-", f"PI + {FT_STEPS} fine-tune steps at {TEST_LEN}")}


def plot(big, curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1.15]})
    i = list(range(BIG_DH // 2))
    for key in ("rope", "pi", "ntk"):
        color, ls, label = STYLE[key]
        ax1.semilogy(i, [2 * math.pi / t for t in big[key]], ls, color=color, lw=1.5, label=label)
    for y, txt in ((BIG_L, f"L = {BIG_L}"), (S * BIG_L, f"s·L = {S * BIG_L}")):
        ax1.axhline(y, color="0.5", lw=0.7, ls=":")
        ax1.text(1, y * 1.25, txt, fontsize=7.5, color="0.35")
    ax1.set_xlabel(f"rotary pair i (head size {BIG_DH}, base 10000, s = {S})")
    ax1.set_ylabel("wavelength 2π/θᵢ (positions)")
    ax1.set_title("per-pair wavelengths: PI stretches all, NTK mostly the slow ones", fontsize=9)
    ax1.minorticks_off()
    ax1.grid(True, which="major", color="0.9", lw=0.6)
    ax1.legend(fontsize=7.5, frameon=False, loc="lower right")

    ax2.axvspan(L, TEST_LEN, color="0.94", lw=0)
    ax2.axvline(L, color="0.5", lw=0.8, ls="--")
    x = [BUCKET * j + (BUCKET - 1) / 2 for j in range(TEST_LEN // BUCKET)]
    for key, ys in curves.items():
        color, ls, label = STYLE[key]
        ax2.plot(x, ys, ls, color=color, lw=1.5, label=label)
    ax2.set_xlim(0, TEST_LEN)
    ax2.set_ylim(0, 1.03)
    ax2.set_xticks([0, L, 2 * L, 3 * L, 4 * L])
    ax2.set_xlabel("position in the test sequence")
    ax2.set_ylabel("accuracy")
    ax2.set_title(f"toy RoPE model trained on length {L}, tested on {TEST_LEN}", fontsize=9)
    ax2.grid(True, color="0.9", lw=0.6)
    ax2.legend(fontsize=7.5, frameon=False, loc="lower left")
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

    # 1) The formulas, checked.
    big = scaled_frequencies(BIG_DH, S)
    toy = scaled_frequencies(DH, S)
    for f in (big, toy):
        torch.testing.assert_close(f["ntk"][0], f["rope"][0])  # the fastest pair is untouched
        torch.testing.assert_close(f["ntk"][-1], f["rope"][-1] / S)  # the slowest is divided by exactly s, like PI
        ratio = f["ntk"] / f["rope"]
        assert bool((ratio[1:] < ratio[:-1]).all()), "NTK divides slower pairs by more"
        # PI never produces an angle beyond what training reached: (s*L - 1)/s * theta < L * theta.
        assert bool(((S * L - 1) * f["pi"] < L * f["rope"]).all())
    # Pairs that turn through a full circle within the training length (wavelength < L) are the
    # "local" ones; NTK keeps them within a factor, PI slows all of them by s.
    big_wl = {k: 2 * math.pi / v for k, v in big.items()}
    n_fast = int((big_wl["rope"] < BIG_L).sum())
    fast_ntk_slowdown = float((big["rope"][:n_fast] / big["ntk"][:n_fast]).max())
    # rotate() is multiplication by e^{i m theta} on each pair seen as a complex number.
    g = torch.Generator(device=args.device).manual_seed(SEED)
    x = torch.randn(2, HEADS, 16, DH, generator=g)  # (B, H, T, dh)
    ang = torch.arange(16, dtype=torch.float64)[:, None] * toy["ntk"]  # (T, dh/2)
    ref = torch.view_as_real(torch.view_as_complex(x.reshape(2, HEADS, 16, DH // 2, 2))
                             * torch.polar(torch.ones_like(ang), ang).to(torch.complex64)).flatten(-2)  # (B, H, T, dh)
    torch.testing.assert_close(rotate(x, toy["ntk"]), ref, rtol=1e-5, atol=1e-5)

    # 2) Train at L with plain RoPE, test at S*L with each set of frequencies.
    torch.manual_seed(SEED)
    model = fit(RopeLM(), STEPS, BATCH, L, LR)
    xt, yt = latest_value_batch(N_TEST, TEST_LEN, generator=torch.Generator(device=args.device).manual_seed(1234))
    acc = {}
    for key in ("rope", "pi", "ntk"):
        model.theta = toy[key]
        acc[key] = accuracy_by_position(model, xt, yt)  # (TEST_LEN,)
    tuned = copy.deepcopy(model)
    tuned.theta = toy["pi"]
    fit(tuned, FT_STEPS, FT_BATCH, TEST_LEN, FT_LR)  # Chen et al. fine-tune at the new length with PI
    acc["pi_finetuned"] = accuracy_by_position(tuned, xt, yt)
    train_s = time.perf_counter() - t0

    rows = {k: {"in_training_range": a[:L].mean().item(), "beyond_L": a[L:].mean().item(),
                "last_quarter": a[3 * TEST_LEN // 4:].mean().item()} for k, a in acc.items()}
    curves = {k: a.reshape(-1, BUCKET).mean(1).tolist() for k, a in acc.items()}
    summary = {"machine": {**machine_info(), "device": args.device},
               "config": {"train_len": L, "scale": S, "test_len": TEST_LEN, "last_quarter_from": 3 * TEST_LEN // 4, "head_dim": DH, "steps": STEPS,
                          "batch": BATCH, "ft_steps": FT_STEPS, "ft_batch": FT_BATCH, "ft_len": TEST_LEN,
                          "ft_tokens_over_train_tokens": FT_STEPS * FT_BATCH * TEST_LEN / (STEPS * BATCH * L),
                          "test_sequences": N_TEST, "seed": SEED},
               "toy_theta": {k: v.tolist() for k, v in toy.items()},
               "toy_ntk_base": 10000.0 * S ** (DH / (DH - 2)),
               "big": {"head_dim": BIG_DH, "train_len": BIG_L, "ntk_base": 10000.0 * S ** (BIG_DH / (BIG_DH - 2)),
                       "n_pairs": BIG_DH // 2, "pairs_with_wavelength_below_L": n_fast,
                       "ntk_max_slowdown_of_those_pairs": fast_ntk_slowdown,
                       "wavelength_slowest": {k: float(v[-1]) for k, v in big_wl.items()}},
               "acc": rows, "curves": curves,
               "first_position_below_90": {k: first_position_below(c) for k, c in curves.items()},
               "first_position_below_90_text": {k: str(first_position_below(c)) if first_position_below(c) < TEST_LEN
                                                else "never" for k, c in curves.items()},
               "gain_beyond_L": {k: rows[k]["beyond_L"] - rows["rope"]["beyond_L"] for k in ("pi", "ntk", "pi_finetuned")},
               "pi_in_range_drop": rows["rope"]["in_training_range"] - rows["pi"]["in_training_range"],
               "train_seconds": train_s}
    (OUT / "results.json").write_text(json.dumps(summary, indent=2))
    plot(big, curves, OUT / "rope_scaling.svg")

    print(f"s = {S}: toy head size {DH}, theta per pair:")
    for k, v in toy.items():
        print(f"  {k:>4}: " + "  ".join(f"{t:.5f}" for t in v.tolist()))
    b = summary["big"]
    print(f"head size {BIG_DH}, L = {BIG_L}: NTK base = {b['ntk_base']:,.0f}")
    print(f"{n_fast} of {BIG_DH // 2} pairs turn a full circle within L; "
          f"NTK slows those by at most {fast_ntk_slowdown:.2f}x (PI: {S}x)")
    print(f"RoPE model trained on length {L}, tested on {TEST_LEN}:")
    fb = summary["first_position_below_90"]
    print(f"{'':>13} {'pos < L':>8} {'pos >= L':>9} {'first pos < 0.9':>16}")
    for k, r in rows.items():
        print(f"{k:>13} {r['in_training_range']:8.3f} {r['beyond_L']:9.3f} {fb[k] if fb[k] < TEST_LEN else 'never':>16}")
    print("check: rotate() == multiplication by e^(i m theta) on complex pairs")
    print(f"machine: {summary['machine']['cpu']}, {summary['machine']['torch_threads']} torch thread{'' if summary['machine']['torch_threads'] == 1 else 's'}, "
          f"torch {summary['machine']['torch']}")

    # The claims the page makes.
    assert rows["rope"]["in_training_range"] > 0.95, "the RoPE model should learn the task at length L"
    assert rows["rope"]["beyond_L"] < 0.7, "plain RoPE should fail past L"
    assert summary["gain_beyond_L"]["pi"] > 0.3, f"PI should recover most of the accuracy past L: {rows}"
    assert summary["gain_beyond_L"]["ntk"] > 0.08, f"NTK-aware scaling should help past L: {rows}"
    assert rows["pi"]["beyond_L"] > rows["ntk"]["beyond_L"], "on this task PI beats NTK without fine-tuning"
    assert summary["pi_in_range_drop"] > 0.015, "PI without fine-tuning should blur short distances a little"
    assert rows["ntk"]["in_training_range"] > 0.98, "NTK keeps the fast pairs, so short range stays intact"
    assert fb["rope"] < fb["ntk"] < TEST_LEN, f"NTK should hold further than plain RoPE, but not to {TEST_LEN}: {fb}"
    assert rows["ntk"]["last_quarter"] < 0.5, f"NTK should collapse before s*L: {rows['ntk']}"
    assert abs(rows["pi"]["beyond_L"] - rows["pi"]["in_training_range"]) < 0.05, \
        f"PI should hold the same accuracy over the whole new length: {rows['pi']}"
    for part in ("in_training_range", "beyond_L"):
        assert rows["pi_finetuned"][part] > max(0.96, rows["pi"][part] + 0.01), \
            f"a short fine-tune at the new length should repair PI: {rows['pi_finetuned']} vs {rows['pi']}"


if __name__ == "__main__":
    main()
