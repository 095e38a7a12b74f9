# build: timeout=240
# (three seeds of four short trainings, about 23 s of CPU time on one quiet core; a loaded machine
# stretches the wall time past the default limit)
"""Post-LN at a high learning rate: stuck without warm-up, trains with it; Pre-LN needs none.

A 6-layer nn.TransformerEncoder-style stack learns to reverse a sequence of 8
tokens (vocabulary 16) with Adam at lr 1e-2 for 150 steps. Four runs, same
data, same initial weights per layout:

    Post-LN, constant lr            Post-LN, linear warm-up over 30 steps
    Pre-LN,  constant lr            Post-LN, constant lr + gradient clipping at 1.0

The script checks which runs learn the task (final loss far below chance,
ln 16) and which stay at chance, and repeats all four runs with other seeds
(initial weights and batches), asserting the same split for every seed.

Run from the repo root:  python snippets/problems/10_training_instability/warmup.py
"""
import argparse
import json
import math
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
VOCAB, T, BATCH = 16, 8, 32
D_MODEL, HEADS, D_FF, LAYERS = 32, 4, 128, 6
LR, STEPS, WARMUP = 1e-2, 150, 30
SEEDS = [0, 1, 2]  # seed s: initial weights from s, batches from s + 1; seed 0 is the run in the figure
RUNS = {  # name: (norm_first, warm-up steps, clip max-norm)
    "post_ln": (False, 0, None),
    "post_ln_warmup": (False, WARMUP, None),
    "pre_ln": (True, 0, None),
    "post_ln_clip": (False, 0, 1.0),
}


class TinyEncoder(nn.Module):
    def __init__(self, norm_first):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL)
        self.pos = nn.Parameter(torch.randn(T, D_MODEL))  # learned positions (T, d)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, batch_first=True, norm_first=norm_first)
            for _ in range(LAYERS))
        for p in self.layers.parameters():  # nn.Transformer's init
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.final_norm = nn.LayerNorm(D_MODEL) if norm_first else nn.Identity()
        self.head = nn.Linear(D_MODEL, VOCAB)

    def forward(self, x):  # x: (B, T) token ids
        h = self.embed(x) + self.pos  # (B, T, d)
        for layer in self.layers:
            h = layer(h)  # (B, T, d)
        return self.head(self.final_norm(h))  # (B, T, vocab)


# --8<-- [start:core]
def train(norm_first, warmup_steps, clip, seed=SEED, device="cpu"):
    torch.manual_seed(seed)  # same initial weights for every run of one layout
    model = TinyEncoder(norm_first).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.98), foreach=True)
    ramp = (lambda step: min(1.0, (step + 1) / warmup_steps)) if warmup_steps else (lambda step: 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, ramp)  # linear warm-up, then constant
    data = torch.Generator().manual_seed(seed + 1)  # same batches for every run with this seed
    losses = []
    for _ in range(STEPS):
        x = torch.randint(0, VOCAB, (BATCH, T), generator=data).to(device)  # (B, T)
        y = x.flip(1)  # target: the sequence reversed
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))  # (B*T, vocab) vs (B*T,)
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses
# --8<-- [end:core]


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
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


LABELS = {"post_ln": ("Post-LN, no warm-up", "#d62728", "-"),
          "post_ln_warmup": (f"Post-LN, {WARMUP}-step warm-up", "#2ca02c", "-"),
          "pre_ln": ("Pre-LN, no warm-up", "#1f77b4", "-"),
          "post_ln_clip": ("Post-LN, no warm-up, clip 1.0", "#ff7f0e", "--")}


def plot(curves, path, window=10):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, ax = plt.subplots(figsize=(6.5, 3.3))
    for name, losses in curves.items():
        label, color, style = LABELS[name]
        t = torch.tensor(losses)
        smooth = t.unfold(0, window, window).mean(1)  # (STEPS // window,) block means
        steps = torch.arange(smooth.numel()) * window + window / 2
        ax.plot(steps.tolist(), smooth.tolist(), style, color=color, label=label)
    ax.axhline(math.log(VOCAB), color="0.5", lw=0.8, ls=":")
    ax.annotate("chance: ln 16", (STEPS * 0.62, math.log(VOCAB) + 0.06), fontsize=8, color="0.35")
    ax.axvspan(0, WARMUP, color="#2ca02c", alpha=0.07, lw=0)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"loss (mean of {window} steps)")
    ax.set_title(f"reverse 8 tokens, {LAYERS} layers, Adam lr {LR:g}", fontsize=9)
    ax.set_ylim(0, 3.1)
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=8, frameon=False, loc="center right")
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    curves = {name: train(*cfg, device=args.device) for name, cfg in RUNS.items()}  # seed 0, plotted
    final = {name: sum(c[-20:]) / 20 for name, c in curves.items()}  # mean of the last 20 steps
    by_seed = {name: [final[name]] for name in RUNS}
    for seed in SEEDS[1:]:
        for name, cfg in RUNS.items():
            c = train(*cfg, seed=seed, device=args.device)
            by_seed[name].append(sum(c[-20:]) / 20)
    chance = math.log(VOCAB)
    results = {"machine": {**machine_info(), "device": args.device},
               "config": {"vocab": VOCAB, "seq": T, "batch": BATCH, "d_model": D_MODEL, "heads": HEADS,
                          "d_ff": D_FF, "layers": LAYERS, "lr": LR, "steps": STEPS, "warmup": WARMUP,
                          "optimizer": "Adam(0.9, 0.98)", "seed": SEED, "seeds": SEEDS, "n_seeds": len(SEEDS)},
               "chance_loss": chance, "final_loss": final,
               "final_loss_by_seed": by_seed,
               "final_loss_range": {k: {"min": min(v), "max": max(v)} for k, v in by_seed.items()},
               "final_over_chance": {k: v / chance for k, v in final.items()},
               "losses": {k: [round(v, 4) for v in c] for k, c in curves.items()}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(curves, OUT / "warmup.svg")

    print(f"reverse {T} tokens, {LAYERS} layers, Adam lr {LR:g}, {STEPS} steps; chance loss ln {VOCAB} = {chance:.3f}")
    print(f"  {'final loss (mean of the last 20 steps), seeds':<34}" + "".join(f"{s:>8}" for s in SEEDS))
    for name in RUNS:
        print(f"  {LABELS[name][0]:<34}" + "".join(f"{v:>8.3f}" for v in by_seed[name]))

    # The claims the page makes, for every seed.
    for i, seed in enumerate(SEEDS):
        f = {k: v[i] for k, v in by_seed.items()}
        assert f["post_ln"] > 0.8 * chance, f"seed {seed}: Post-LN without warm-up was expected to stay near chance"
        assert f["post_ln_warmup"] < 0.25 * chance, f"seed {seed}: Post-LN with warm-up should learn the task"
        assert f["pre_ln"] < 0.25 * chance, f"seed {seed}: Pre-LN without warm-up should learn the task"
        assert f["post_ln_clip"] > 0.8 * chance, f"seed {seed}: clipping alone was expected not to rescue Post-LN"


if __name__ == "__main__":
    main()
