"""See it: on 8x8 digits a small CNN learns from far fewer examples than a small ViT.

Learning curves on scikit-learn's bundled digits (1797 images of 8x8 pixels,
10 classes; no download). A fixed, class-balanced test split of 500 images;
training subsets of 50 ... 1297 images (5 to ~130 per class). Every model gets
the same optimiser budget: 200 AdamW steps of 32 examples, one-cycle schedule.
Two seeds (different subsets and inits) per size.

Models (both tiny):
  CNN  3x3 conv (8) -> 3x3 conv (16) -> 2x2 max-pool -> linear
  ViT  2x2 patches -> 16 tokens of width 32 + learned positions -> one pre-norm
       transformer block (4 heads, MLP 64) -> mean-pool -> linear
The fix, measured at the small sizes: ViT + conv stem, one 3x3 conv (8 channels)
before the patchify step (a convolutional prior in front of the same transformer).

All models of one kind train at once as an ensemble (member e has its own
weights and its own mini-batches; grouped convs and batched matmuls), which is
the same as training them one by one, only faster. The script checks that an
ensemble member computes exactly what nn.TransformerEncoderLayer / nn.Conv2d
compute with its weights, then asserts the learning-curve claims.

Run from the repo root:  python snippets/problems/06_data_hungry/learning_curves.py
"""
# build: measures=time  (reports the training time)
import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
N_SEEDS = 2  # training subsets (and inits) per size
SIZES = [50, 100, 200, 500, None]  # training examples; None = the whole training split (1297)
FIX_SIZES = [50, 100, 200]  # where the fix is measured
TEST_PER_CLASS = 50  # 500 test images, the same for every model
STEPS, BATCH, LR, WD = 200, 32, 1e-2, 0.05  # the same optimiser budget for every model
D, HEADS, MLP, PATCH, STEM_C = 32, 4, 64, 2, 8
T = (8 // PATCH) ** 2  # 16 tokens per image


class Linears(nn.Module):
    """E independent linear layers in one batched matmul: (E, N, i) -> (E, N, o)."""

    def __init__(self, E, i, o):
        super().__init__()
        bound = 1 / math.sqrt(i)  # nn.Linear's default init range
        self.weight = nn.Parameter(torch.empty(E, i, o).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(E, 1, o).uniform_(-bound, bound))

    def forward(self, x):
        return torch.baddbmm(self.bias, x, self.weight)


class LayerNorms(nn.Module):
    def __init__(self, E, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(E, 1, d))
        self.bias = nn.Parameter(torch.zeros(E, 1, d))

    def forward(self, x):  # x: (E, ..., d)
        shape = x.shape
        x = F.layer_norm(x.reshape(shape[0], -1, shape[-1]), shape[-1:])  # (E, N, d)
        return (x * self.weight + self.bias).reshape(shape)


# --8<-- [start:core]
# Linears(E, i, o), LayerNorms(E, d): E independent nn.Linear / nn.LayerNorm layers,
# one per ensemble member, stored as stacked weights (defined above).
class CNN(nn.Module):
    """E small CNNs. Convolutions are local and reuse weights at every position."""

    def __init__(self, E, c=8):
        super().__init__()
        self.E = E
        self.conv1 = nn.Conv2d(E, E * c, 3, padding=1, groups=E)  # group e = member e
        self.conv2 = nn.Conv2d(E * c, E * 2 * c, 3, padding=1, groups=E)
        self.head = Linears(E, 2 * c * 4 * 4, 10)

    def forward(self, x):  # x: (E, B, 8, 8), member e gets its own batch x[e]
        B = x.shape[1]
        h = x.transpose(0, 1)  # (B, E, 8, 8): member e's image is channel e
        h = F.relu(self.conv2(F.relu(self.conv1(h))))  # (B, E*2c, 8, 8)
        h = F.max_pool2d(h, 2).reshape(B, self.E, -1)  # (B, E, 2c*4*4)
        return self.head(h.transpose(0, 1))  # (E, B, 2c*4*4) -> (E, B, 10)


def to_patches(x):  # x: (E, B, C, 8, 8) -> (E, B*T, C*p*p), row-major patches
    E, B = x.shape[:2]
    x = x.unfold(3, PATCH, PATCH).unfold(4, PATCH, PATCH)  # (E, B, C, 4, 4, p, p)
    x = x.permute(0, 1, 3, 4, 2, 5, 6)  # (E, B, 4, 4, C, p, p)
    return x.reshape(E, B * T, -1)  # (E, B*T, C*p*p)


class ViT(nn.Module):
    """E small ViTs. Any patch may attend to any other; positions are learned."""

    def __init__(self, E, patch_dim=PATCH * PATCH):
        super().__init__()
        self.E = E
        self.embed = Linears(E, patch_dim, D)
        # random at init: that patch 5 is next to patch 6 must be learned
        self.pos = nn.Parameter(torch.randn(E, 1, T, D) * 0.02)
        self.ln1, self.ln2, self.ln_out = (LayerNorms(E, D) for _ in range(3))
        self.qkv, self.proj = Linears(E, D, 3 * D), Linears(E, D, D)
        self.fc1, self.fc2 = Linears(E, D, MLP), Linears(E, MLP, D)
        self.head = Linears(E, D, 10)

    def patches(self, x):  # x: (E, B, 8, 8)
        return to_patches(x.unsqueeze(2))  # (E, B, 1, 8, 8) -> (E, B*T, p*p)

    def forward(self, x):
        E, B = x.shape[:2]
        h = self.embed(self.patches(x)).reshape(E, B, T, D) + self.pos  # (E, B, T, D)
        qkv = self.qkv(self.ln1(h).reshape(E, B * T, D))  # (E, B*T, 3D)
        qkv = qkv.reshape(E * B, T, 3, HEADS, D // HEADS)  # (E*B, T, 3, H, dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (E*B, H, T, dh)
        a = F.scaled_dot_product_attention(q, k, v)  # (E*B, H, T, dh), all-to-all
        a = a.transpose(1, 2).reshape(E, B * T, D)  # (E, B*T, D)
        h = h + self.proj(a).reshape(E, B, T, D)
        m = self.fc2(F.relu(self.fc1(self.ln2(h).reshape(E, B * T, D))))  # (E, B*T, D)
        h = h + m.reshape(E, B, T, D)
        return self.head(self.ln_out(h.mean(2)))  # (E, B, D) -> (E, B, 10)


def train(model, X, y, subsets):
    """Same budget for every member: STEPS steps of BATCH examples from its subset."""
    E = len(subsets)
    n = torch.tensor([len(s) for s in subsets], device=subsets[0].device)
    table = torch.stack([F.pad(s, (0, int(n.max()) - len(s))) for s in subsets])  # (E, N)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, STEPS, pct_start=0.1)
    for _ in range(STEPS):
        r = (torch.rand(E, BATCH, device=n.device) * n[:, None]).long()  # (E, BATCH)
        pick = torch.gather(table, 1, r)  # (E, BATCH) indices into X
        logits = model(X[pick])  # (E, BATCH, 8, 8) -> (E, BATCH, 10)
        loss = F.cross_entropy(logits.flatten(0, 1), y[pick].flatten())
        opt.zero_grad()
        (loss * E).backward()  # = the sum of each member's own mean loss
        opt.step()
        sched.step()
    return model


@torch.no_grad()
def accuracy(model, X_test, y_test):
    logits = model(X_test.expand(model.E, -1, -1, -1))  # (E, N_test, 10)
    return (logits.argmax(-1) == y_test).float().mean(1)  # (E,) one per member
# --8<-- [end:core]


# --8<-- [start:fix]
class ConvStemViT(ViT):
    """The same ViT with one 3x3 conv layer (8 channels) before the patchify step."""

    def __init__(self, E):
        super().__init__(E, patch_dim=STEM_C * PATCH * PATCH)
        self.stem = nn.Conv2d(E, E * STEM_C, 3, padding=1, groups=E)

    def patches(self, x):  # x: (E, B, 8, 8) -> (E, B*T, C*p*p)
        E, B = x.shape[:2]
        h = F.relu(self.stem(x.transpose(0, 1)))  # (B, E*C, 8, 8): local features
        h = h.reshape(B, E, STEM_C, 8, 8).transpose(0, 1)  # (E, B, C, 8, 8)
        return to_patches(h)
# --8<-- [end:fix]


def split(seed=SEED):
    """Class-balanced split: TEST_PER_CLASS images of each digit for testing, the rest for training."""
    digits = load_digits()
    X = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (1797, 8, 8), pixels in [0, 1]
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(seed)
    test, pool = [], []
    for c in range(10):
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        test.append(idx[:TEST_PER_CLASS])
        pool.append(idx[TEST_PER_CLASS:])
    return X, y, torch.cat(test), pool


def subset(pool, n, seed):
    """n training indices, n/10 per class (all of the training split when n is None)."""
    if n is None:
        return torch.cat(pool)
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.cat([p[torch.randperm(len(p), generator=g)[: n // 10]] for p in pool])


def check_against_torch(cnn, vit, stem_vit, images):
    """Member e of each ensemble == the plain PyTorch model built from its weights."""
    e = 1
    with torch.no_grad():
        x = images.expand(cnn.E, -1, -1, -1)  # (E, B, 8, 8): the same images for every member
        ref = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 10)).to(x.device)
        for i, conv in ((0, cnn.conv1), (2, cnn.conv2)):
            c = conv.out_channels // cnn.E
            ref[i].weight.copy_(conv.weight[e * c:(e + 1) * c])
            ref[i].bias.copy_(conv.bias[e * c:(e + 1) * c])
        ref[6].weight.copy_(cnn.head.weight[e].T)
        ref[6].bias.copy_(cnn.head.bias[e, 0])
        torch.testing.assert_close(cnn(x)[e], ref(x[e].unsqueeze(1)), rtol=1e-4, atol=1e-5)

        for m in (vit, stem_vit):
            x = images.expand(m.E, -1, -1, -1)  # (E, B, 8, 8)
            layer = nn.TransformerEncoderLayer(D, HEADS, MLP, dropout=0.0, batch_first=True, norm_first=True)
            layer = layer.to(x.device).eval()
            layer.self_attn.in_proj_weight.copy_(m.qkv.weight[e].T)
            layer.self_attn.in_proj_bias.copy_(m.qkv.bias[e, 0])
            layer.self_attn.out_proj.weight.copy_(m.proj.weight[e].T)
            layer.self_attn.out_proj.bias.copy_(m.proj.bias[e, 0])
            for mine, theirs in ((m.fc1, layer.linear1), (m.fc2, layer.linear2)):
                theirs.weight.copy_(mine.weight[e].T)
                theirs.bias.copy_(mine.bias[e, 0])
            for mine, theirs in ((m.ln1, layer.norm1), (m.ln2, layer.norm2)):
                theirs.weight.copy_(mine.weight[e, 0])
                theirs.bias.copy_(mine.bias[e, 0])
            img = x[e].unsqueeze(1)  # (B, 1, 8, 8)
            if isinstance(m, ConvStemViT):
                c = STEM_C
                img = F.relu(F.conv2d(img, m.stem.weight[e * c:(e + 1) * c], m.stem.bias[e * c:(e + 1) * c],
                                      padding=1))  # (B, C, 8, 8)
            p = img.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)  # (B, C, 4, 4, p, p)
            p = p.permute(0, 2, 3, 1, 4, 5).reshape(len(img), T, -1)  # (B, T, C*p*p)
            h = layer(F.linear(p, m.embed.weight[e].T, m.embed.bias[e, 0]) + m.pos[e])  # (B, T, D)
            h = F.layer_norm(h.mean(1), (D,), m.ln_out.weight[e, 0], m.ln_out.bias[e, 0])  # (B, D)
            out = F.linear(h, m.head.weight[e].T, m.head.bias[e, 0])  # (B, 10)
            torch.testing.assert_close(m(x)[e], out, rtol=1e-4, atol=1e-5)


def n_params(model):
    return sum(p.numel() for p in model.parameters()) // model.E


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


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    styles = {"cnn": ("o-", "#1f77b4", "CNN"), "vit": ("s-", "#d62728", "ViT"),
              "vit_conv_stem": ("^--", "#2ca02c", "ViT + conv stem (fix)")}
    for key, (fmt, color, label) in styles.items():
        rows = res["curves"][key]
        n = np.array([r["n"] for r in rows])
        mean = np.array([r["mean"] for r in rows])
        lo = np.array([min(r["seeds"]) for r in rows])
        hi = np.array([max(r["seeds"]) for r in rows])
        ax.plot(n, mean, fmt, color=color, label=label, ms=4)
        ax.fill_between(n, lo, hi, color=color, alpha=0.12, lw=0)
    ax.axhline(0.1, color="0.6", lw=0.8, ls=":")
    ax.annotate("chance", (res["sizes"][0], 0.1), xytext=(2, 3), textcoords="offset points", fontsize=8, color="0.4")
    ax.set_xscale("log")
    ax.set_xticks(res["sizes"], [str(s) for s in res["sizes"]])
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("training images (balanced over the 10 digits)")
    ax.set_ylabel("test accuracy (500 images)")
    ax.set_title(f"same budget for all: {STEPS} AdamW steps x {BATCH} images; band = min..max over {N_SEEDS} seeds",
                 fontsize=8.5)
    ax.grid(True, color="0.92", lw=0.6)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    t0 = time.perf_counter()

    X, y, test_idx, pool = split()
    X, y = X.to(dev), y.to(dev)
    X_test, y_test = X[test_idx.to(dev)], y[test_idx.to(dev)]
    sizes = [n if n is not None else sum(len(p) for p in pool) for n in SIZES]
    runs = [(n, s) for n in SIZES for s in range(N_SEEDS)]  # one ensemble member per (size, seed)
    subsets = [subset(pool, n, s).to(dev) for n, s in runs]
    fix_runs = [i for i, (n, _) in enumerate(runs) if n in FIX_SIZES]

    # 1) The learning curves: every CNN and every ViT on the same subsets, same budget.
    cnn = train(CNN(len(runs)).to(dev), X, y, subsets)
    vit = train(ViT(len(runs)).to(dev), X, y, subsets)
    # 2) The fix, at the small sizes: the same ViT with a conv stem, same subsets, same budget.
    stem_vit = train(ConvStemViT(len(fix_runs)).to(dev), X, y, [subsets[i] for i in fix_runs])
    train_s = time.perf_counter() - t0

    check_against_torch(cnn, vit, stem_vit, X_test[:16])

    acc = {"cnn": accuracy(cnn, X_test, y_test), "vit": accuracy(vit, X_test, y_test)}
    acc_fix = {"vit_conv_stem": accuracy(stem_vit, X_test, y_test)}

    def curve(a, members):
        rows = []
        for n, size in zip(SIZES, sizes):
            seeds = [a[j].item() for j, i in enumerate(members) if runs[i][0] == n]
            if seeds:
                rows.append({"n": size, "mean": float(np.mean(seeds)), "seeds": seeds})
        return rows

    all_members = list(range(len(runs)))
    curves = {k: curve(v, all_members) for k, v in acc.items()}
    curves.update({k: curve(v, fix_runs) for k, v in acc_fix.items()})
    by_n = {k: {str(r["n"]): r for r in rows} for k, rows in curves.items()}
    small, large = str(sizes[0]), str(sizes[-1])
    gap = {str(n): by_n["cnn"][str(n)]["mean"] - by_n["vit"][str(n)]["mean"] for n in sizes}
    fix_ns = [str(n) for n in FIX_SIZES]
    fix = {"sizes": FIX_SIZES,
           "stem_minus_vit": {n: by_n["vit_conv_stem"][n]["mean"] - by_n["vit"][n]["mean"] for n in fix_ns},
           "stem_gap_closed": {n: (by_n["vit_conv_stem"][n]["mean"] - by_n["vit"][n]["mean"]) / gap[n] for n in fix_ns}}
    fix["stem_minus_vit_mean"] = float(np.mean(list(fix["stem_minus_vit"].values())))

    res = {"machine": {**machine_info(), "device": dev},
           "config": {"steps": STEPS, "batch": BATCH, "lr": LR, "weight_decay": WD, "seeds": N_SEEDS,
                      "test_images": len(test_idx), "train_split": sizes[-1],
                      "examples_seen": STEPS * BATCH, "passes_over_full_split": STEPS * BATCH / sizes[-1], "d_model": D, "heads": HEADS,
                      "mlp": MLP, "patch": PATCH, "tokens": T, "stem_channels": STEM_C, "seed": SEED},
           "params": {"cnn": n_params(cnn), "vit": n_params(vit), "vit_conv_stem": n_params(stem_vit)},
           "sizes": sizes, "curves": curves, "gap": gap,
           "smallest": {"n": sizes[0], "cnn": by_n["cnn"][small]["mean"], "vit": by_n["vit"][small]["mean"],
                        "gap": gap[small], "vit_conv_stem": by_n["vit_conv_stem"][small]["mean"]},
           "largest": {"n": sizes[-1], "cnn": by_n["cnn"][large]["mean"], "vit": by_n["vit"][large]["mean"],
                       "gap": gap[large]},
           "gap_shrink": gap[small] - gap[large],
           "gap_small_minus_max_gap_from_500": gap[small] - max(g for n, g in gap.items() if int(n) >= 500),
           "fix": fix, "train_seconds": train_s}
    (OUT / "results.json").write_text(json.dumps(res, indent=2))
    plot(res, OUT / "learning_curves.svg")

    print(f"digits 8x8: {len(test_idx)} test images, training split {sizes[-1]}; "
          f"{STEPS} steps x {BATCH} images per model, {N_SEEDS} seeds")
    print(f"parameters: CNN {res['params']['cnn']:,}, ViT {res['params']['vit']:,}, "
          f"ViT+stem {res['params']['vit_conv_stem']:,}")
    print(f"{'train images':>12} {'CNN':>6} {'ViT':>6} {'gap':>6} {'ViT+stem':>9}")
    for n in sizes:
        k = str(n)
        stem = f"{by_n['vit_conv_stem'][k]['mean']:9.3f}" if k in by_n["vit_conv_stem"] else ""
        print(f"{n:>12} {by_n['cnn'][k]['mean']:6.3f} {by_n['vit'][k]['mean']:6.3f} {gap[k]:6.3f} {stem}")
    print(f"gap CNN - ViT: {gap[small]:.3f} at {small} images -> {gap[large]:.3f} at {large}")
    print(f"conv stem: {fix['stem_minus_vit_mean']:+.3f} accuracy over the ViT (mean over {', '.join(fix_ns)} images)")
    print("ensemble members match nn.Conv2d / nn.TransformerEncoderLayer with their weights")
    print(f"machine: {res['machine']['cpu']}, {res['machine']['torch_threads']} threads, torch {res['machine']['torch']}")

    # The claims the page makes.
    chance = 0.1
    assert min(r["mean"] for rows in curves.values() for r in rows) > 3 * chance, "a model stayed near chance"
    assert gap[small] > 0.15, f"CNN should beat ViT clearly with {small} images, gap {gap[small]:.3f}"
    assert min(by_n["cnn"][small]["seeds"]) > max(by_n["vit"][small]["seeds"]), "every CNN seed beats every ViT seed"
    assert res["gap_small_minus_max_gap_from_500"] > 0.05, f"the gap should shrink with data: {gap}"
    assert by_n["vit"][large]["mean"] - by_n["vit"][small]["mean"] > 0.15, "the ViT should gain a lot from data"
    assert fix["stem_minus_vit_mean"] > 0.02, f"the conv stem should help at small sizes: {fix['stem_minus_vit']}"
    assert all(by_n["vit_conv_stem"][n]["mean"] < by_n["cnn"][n]["mean"] for n in fix_ns), \
        "page says the stem narrows the gap, not that it closes it"


if __name__ == "__main__":
    main()
