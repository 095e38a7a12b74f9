# build: timeout=240
# (about 20 s of CPU time on one quiet core; a loaded machine stretches the wall time past the default limit)
"""See it: on 8x8 digits a small CNN learns from far fewer examples than a small ViT.

Learning curves on scikit-learn's bundled digits (1797 images of 8x8 pixels,
10 classes; no download). A fixed, class-balanced test split of 500 images;
training subsets of 50 ... 1297 images (5 to ~130 per class), four seeds
(different subsets and inits) per size.

Protocol: every model is trained until it fits its training subset, so that the
comparison is about data, not about how many passes a model got over it. A
subset of n images gets max(MIN_STEPS, EPOCHS * n / BATCH) AdamW steps of BATCH
images (one-cycle schedule): at least EPOCHS passes over the whole training
split, and many more over the small subsets. The script asserts that every
model ends with a training accuracy of at least FIT.

Models (both tiny):
  CNN  3x3 conv (8) -> 3x3 conv (16) -> 2x2 max-pool -> linear
  ViT  2x2 patches -> 16 tokens of width 32 + learned positions -> one pre-norm
       transformer block (4 heads, MLP 64) -> mean-pool -> linear
The fix (a convolutional stem in front of the ViT) is in fixes.py.

All seeds of one size and one kind train at once as an ensemble (member e has
its own weights and its own mini-batches; grouped convs and batched matmuls),
which is the same as training them one by one, only faster. The script checks
that an ensemble member computes exactly what nn.TransformerEncoderLayer /
nn.Conv2d compute with its weights, then asserts the learning-curve claims and
writes two sentences from the numbers: how the gap changes from one size to the
next, and whether the CNN is still ahead on the full split.

Run from the repo root:  python snippets/problems/06_data_hungry/learning_curves.py
"""
import argparse
import json
import math
import os
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
N_SEEDS = 4  # training subsets (and inits) per size
SIZES = [50, 200, 500, None]  # training examples; None = the whole training split (1297)
TEST_PER_CLASS = 50  # 500 test images, the same for every model
BATCH, LR, WD = 32, 1e-2, 0.05
MIN_STEPS, EPOCHS = 400, 16  # steps(n) = max(MIN_STEPS, EPOCHS * n / BATCH)
FIT = 0.95  # every model must reach this training accuracy: trained until it fits, not cut short
D, HEADS, MLP, PATCH = 32, 4, 64, 2
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

    def attend(self, q, k, v):  # (E*B, H, T, dh) each
        s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (E*B, H, T, T): every patch with every patch
        return s.softmax(-1) @ v  # (E*B, H, T, dh); nothing here depends on where the patches are

    def forward(self, x):
        E, B = x.shape[:2]
        h = self.embed(self.patches(x)).reshape(E, B, T, D) + self.pos  # (E, B, T, D)
        qkv = self.qkv(self.ln1(h).reshape(E, B * T, D))  # (E, B*T, 3D)
        qkv = qkv.reshape(E * B, T, 3, HEADS, D // HEADS)  # (E*B, T, 3, H, dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (E*B, H, T, dh)
        a = self.attend(q, k, v).transpose(1, 2).reshape(E, B * T, D)  # (E*B, H, T, dh) -> (E, B*T, D)
        h = h + self.proj(a).reshape(E, B, T, D)
        m = self.fc2(F.relu(self.fc1(self.ln2(h).reshape(E, B * T, D))))  # (E, B*T, D)
        h = h + m.reshape(E, B, T, D)
        return self.head(self.ln_out(h.mean(2)))  # (E, B, D) -> (E, B, 10)


def steps_for(n):
    """Enough steps to fit n images: at least MIN_STEPS, and at least EPOCHS passes over them."""
    return max(MIN_STEPS, math.ceil(EPOCHS * n / BATCH))


def train(model, X, y, subsets):
    """Member e trains on X[subsets[e]]; all subsets have the same size n and get steps_for(n) steps."""
    E, n = subsets.shape  # (E, n) indices into X
    steps = steps_for(n)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, steps, pct_start=0.1)
    for _ in range(steps):
        pick = torch.gather(subsets, 1, torch.randint(0, n, (E, BATCH), device=subsets.device))  # (E, BATCH)
        logits = model(X[pick])  # (E, BATCH, 8, 8) -> (E, BATCH, 10)
        loss = F.cross_entropy(logits.flatten(0, 1), y[pick].flatten())
        opt.zero_grad()
        (loss * E).backward()  # = the sum of each member's own mean loss
        opt.step()
        sched.step()
    return model


@torch.no_grad()
def accuracy(model, X, y):  # X: (E, N, 8, 8), y: (E, N) -> (E,) one accuracy per member
    return (model(X).argmax(-1) == y).float().mean(1)
# --8<-- [end:core]


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


def subsets_for(pool, n, dev):
    return torch.stack([subset(pool, n, s) for s in range(N_SEEDS)]).to(dev)  # (N_SEEDS, n)


def check_against_torch(cnn, vit, images):
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

        x = images.expand(vit.E, -1, -1, -1)  # (E, B, 8, 8)
        layer = nn.TransformerEncoderLayer(D, HEADS, MLP, dropout=0.0, batch_first=True, norm_first=True)
        layer = layer.to(x.device).eval()
        layer.self_attn.in_proj_weight.copy_(vit.qkv.weight[e].T)
        layer.self_attn.in_proj_bias.copy_(vit.qkv.bias[e, 0])
        layer.self_attn.out_proj.weight.copy_(vit.proj.weight[e].T)
        layer.self_attn.out_proj.bias.copy_(vit.proj.bias[e, 0])
        for mine, theirs in ((vit.fc1, layer.linear1), (vit.fc2, layer.linear2)):
            theirs.weight.copy_(mine.weight[e].T)
            theirs.bias.copy_(mine.bias[e, 0])
        for mine, theirs in ((vit.ln1, layer.norm1), (vit.ln2, layer.norm2)):
            theirs.weight.copy_(mine.weight[e, 0])
            theirs.bias.copy_(mine.bias[e, 0])
        img = x[e].unsqueeze(1)  # (B, 1, 8, 8)
        p = img.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)  # (B, 1, 4, 4, p, p)
        p = p.permute(0, 2, 3, 1, 4, 5).reshape(len(img), T, -1)  # (B, T, p*p)
        h = layer(F.linear(p, vit.embed.weight[e].T, vit.embed.bias[e, 0]) + vit.pos[e])  # (B, T, D)
        h = F.layer_norm(h.mean(1), (D,), vit.ln_out.weight[e, 0], vit.ln_out.bias[e, 0])  # (B, D)
        out = F.linear(h, vit.head.weight[e].T, vit.head.bias[e, 0])  # (B, 10)
        torch.testing.assert_close(vit(x)[e], out, rtol=1e-4, atol=1e-5)


def n_params(model):
    return sum(p.numel() for p in model.parameters()) // model.E


def stats(values):
    """Mean, sample standard deviation and standard error of the mean over seeds."""
    a = np.array(values, dtype=np.float64)
    sd = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return {"mean": float(a.mean()), "sd": sd, "se": sd / math.sqrt(len(a)), "seeds": [float(v) for v in a]}


def gap_trend(sizes, gap):
    """The page's sentence on how the mean CNN-ViT gap changes from one size to the next.

    gap[str(n)] holds the mean and the standard error over seeds of the paired gap at size n. A rise is
    called "within" two standard errors of the difference when it is at most 2 * sqrt(se_a^2 + se_b^2).
    """
    rises = []
    for a, b in zip(sizes, sizes[1:]):
        ga, gb = gap[str(a)], gap[str(b)]
        if gb["mean"] > ga["mean"]:
            two_se = 2 * math.hypot(ga["se"], gb["se"])
            word = "within" if gb["mean"] - ga["mean"] <= two_se else "more than"
            rises.append(f"from {a} to {b} images it widens from {ga['mean']:.3f} to {gb['mean']:.3f} "
                         f"(+{gb['mean'] - ga['mean']:.3f}, {word} two standard errors of the difference, "
                         f"{two_se:.3f})")
    means = ", ".join(f"{gap[str(n)]['mean']:.3f}" for n in sizes)
    if not rises:
        return f"narrows at every step up in size ({means})"
    return f"narrows overall but not at every step ({means}): " + "; ".join(rises)


def crossover(n, gap):
    """The page's sentence on the full split: is the CNN still ahead, level, or overtaken (two standard errors)?"""
    m, se, seeds = gap["mean"], gap["se"], gap["seeds"]
    ahead = sum(g > 0 for g in seeds)
    numbers = f"by {abs(m):.3f} (standard error {se:.3f}); the CNN is ahead for {ahead} of {len(seeds)} seeds"
    if m > 2 * se:
        return f"It does **not** show the crossover: on the full split of {n} images the CNN is still ahead, {numbers}."
    if m < -2 * se:
        return f"On these digits the ViT overtakes the CNN on the full split of {n} images, {numbers}."
    return (f"Nor does it show a crossover: on the full split of {n} images the two are level within two "
            f"standard errors (gap {m:+.3f}, standard error {se:.3f}); the CNN is ahead for {ahead} of {len(seeds)} seeds.")


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
            "python": platform.python_version(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.6, 3.7), gridspec_kw={"width_ratios": [1.25, 1]})
    sizes = res["sizes"]
    styles = {"cnn": ("o", "#1f77b4", "CNN", 0.97), "vit": ("s", "#d62728", "ViT", 1.03)}
    for key, (marker, color, label, shift) in styles.items():
        rows = res["curves"][key]
        n = np.array([r["n"] for r in rows], dtype=float)
        ax.plot(n, [r["mean"] for r in rows], "-", color=color, lw=1.4, label=f"{label}, mean of {N_SEEDS} seeds")
        for r in rows:  # every seed as a point, nudged sideways so that the two models do not overlap
            ax.plot([r["n"] * shift] * len(r["seeds"]), r["seeds"], marker, color=color, ms=3.5, alpha=0.55, mew=0)
    ax.axhline(0.1, color="0.6", lw=0.8, ls=":")
    ax.annotate("chance", (sizes[0], 0.1), xytext=(2, 3), textcoords="offset points", fontsize=8, color="0.4")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("test accuracy (500 images)")
    ax.set_title("each point is one seed (subset + initialisation)", fontsize=8.5)
    ax.legend(fontsize=8, frameon=False, loc="lower right")

    g = [res["gap"][str(n)] for n in sizes]
    for n, row in zip(sizes, g):
        bx.plot([n] * len(row["seeds"]), row["seeds"], "o", color="0.45", ms=3.5, alpha=0.55, mew=0)
    bx.errorbar(sizes, [r["mean"] for r in g], yerr=[2 * r["se"] for r in g], fmt="D-", color="black", ms=4,
                capsize=3, lw=1.2, label="mean ± 2 standard errors")
    bx.axhline(0, color="0.6", lw=0.8)
    bx.set_ylabel("CNN minus ViT test accuracy")
    bx.set_title("the gap, paired seed by seed (same subset)", fontsize=8.5)
    bx.legend(fontsize=8, frameon=False, loc="upper right")
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xticks(sizes, [str(s) for s in sizes])
        a.minorticks_off()
        a.set_xlabel("training images (balanced over the 10 digits)")
        a.grid(True, color="0.92", lw=0.6)
    fig.suptitle(f"every model trained until it fits its training set: max({MIN_STEPS} steps, {EPOCHS} passes), "
                 f"batches of {BATCH} images", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and gives the same numbers in and out of the build
    torch.manual_seed(SEED)

    X, y, test_idx, pool = split()
    X, y = X.to(dev), y.to(dev)
    X_test, y_test = X[test_idx.to(dev)], y[test_idx.to(dev)]
    sizes = [n if n is not None else sum(len(p) for p in pool) for n in SIZES]

    # One ensemble per (kind, size): N_SEEDS members, each with its own subset and init, trained to fit it.
    acc = {"cnn": {}, "vit": {}}
    train_acc = {"cnn": {}, "vit": {}}
    trained = {}  # the smallest size's ensembles, for the check against PyTorch's layers
    for n, size in zip(SIZES, sizes):
        subs = subsets_for(pool, n, dev)  # (N_SEEDS, size)
        for kind, cls in (("cnn", CNN), ("vit", ViT)):
            model = train(cls(N_SEEDS).to(dev), X, y, subs)
            acc[kind][size] = accuracy(model, X_test.expand(N_SEEDS, -1, -1, -1), y_test.expand(N_SEEDS, -1)).tolist()
            train_acc[kind][size] = accuracy(model, X[subs], y[subs]).tolist()
            if size == sizes[0]:
                trained[kind] = model
    check_against_torch(trained["cnn"], trained["vit"], X_test[:16])

    curves = {k: [{"n": s, **stats(acc[k][s]), "train_min": min(train_acc[k][s])} for s in sizes] for k in acc}
    gap = {str(s): stats([c - v for c, v in zip(acc["cnn"][s], acc["vit"][s])]) for s in sizes}
    by_n = {k: {r["n"]: r for r in rows} for k, rows in curves.items()}
    small, large = sizes[0], sizes[-1]
    res = {"machine": {**machine_info(), "device": dev},
           "config": {"batch": BATCH, "lr": LR, "weight_decay": WD, "seeds": N_SEEDS, "min_steps": MIN_STEPS,
                      "epochs_at_least": EPOCHS, "fit": FIT, "test_images": len(test_idx), "train_split": large,
                      "steps": {str(s): steps_for(s) for s in sizes},
                      "passes": {str(s): steps_for(s) * BATCH / s for s in sizes},
                      "d_model": D, "heads": HEADS, "mlp": MLP, "patch": PATCH, "tokens": T, "seed": SEED},
           "params": {"cnn": n_params(trained["cnn"]), "vit": n_params(trained["vit"])},
           "sizes": sizes, "curves": curves, "gap": gap,
           "train_accuracy_min": {k: min(min(v) for v in train_acc[k].values()) for k in train_acc},
           "smallest": {"n": small, "cnn": by_n["cnn"][small]["mean"], "vit": by_n["vit"][small]["mean"],
                        "gap": gap[str(small)]["mean"], "gap_se": gap[str(small)]["se"],
                        "cnn_min": min(by_n["cnn"][small]["seeds"]), "vit_max": max(by_n["vit"][small]["seeds"])},
           "largest": {"n": large, "cnn": by_n["cnn"][large]["mean"], "vit": by_n["vit"][large]["mean"],
                       "gap": gap[str(large)]["mean"], "gap_se": gap[str(large)]["se"],
                       "gap_min": min(gap[str(large)]["seeds"])},
           "vit_gain": by_n["vit"][large]["mean"] - by_n["vit"][small]["mean"]}
    shrink = gap[str(small)]["mean"] - gap[str(large)]["mean"]
    res["gap_shrink"] = {"value": shrink, "se": math.hypot(gap[str(small)]["se"], gap[str(large)]["se"])}
    res["verdicts"] = {"gap_trend": gap_trend(sizes, gap), "crossover": crossover(large, gap[str(large)])}
    (OUT / "results.json").write_text(json.dumps(res, indent=2))
    plot(res, OUT / "learning_curves.svg")

    print(f"digits 8x8: {len(test_idx)} test images, training split {large}; {N_SEEDS} seeds per size")
    print(f"parameters: CNN {res['params']['cnn']:,}, ViT {res['params']['vit']:,}")
    print(f"{'train images':>12} {'steps':>6} {'passes':>7} {'CNN':>13} {'ViT':>13} {'gap':>13}  min train acc")
    for s in sizes:
        c, v, g = by_n["cnn"][s], by_n["vit"][s], gap[str(s)]
        print(f"{s:>12} {steps_for(s):>6} {steps_for(s) * BATCH / s:>7.1f} {c['mean']:6.3f} ±{c['sd']:.3f} "
              f"{v['mean']:6.3f} ±{v['sd']:.3f} {g['mean']:6.3f} ±{g['sd']:.3f}  {c['train_min']:.3f} / {v['train_min']:.3f}")
    print("(mean ± standard deviation over the seeds; min train acc: CNN / ViT)")
    print(f"gap CNN - ViT: {gap[str(small)]['mean']:.3f} at {small} images -> {gap[str(large)]['mean']:.3f} at {large}")
    print(f"the gap {res['verdicts']['gap_trend']}")
    print(res["verdicts"]["crossover"].replace("**", ""))
    print("ensemble members match nn.Conv2d / nn.TransformerEncoderLayer with their weights")
    print(f"machine: {res['machine']['cpu']}, {res['machine']['torch_threads']} torch thread(s), "
          f"torch {res['machine']['torch']}, {res['machine']['cpu_capability']} kernels")

    # The claims the page makes.
    chance = 0.1
    assert min(r["mean"] for rows in curves.values() for r in rows) > 3 * chance, "a model stayed near chance"
    assert min(res["train_accuracy_min"].values()) >= FIT, \
        f"every model should fit its training subset (trained to convergence): {res['train_accuracy_min']}"
    assert res["smallest"]["gap"] > 0.15, f"CNN should beat ViT clearly with {small} images: {res['smallest']}"
    assert res["smallest"]["cnn_min"] > res["smallest"]["vit_max"], "every CNN seed beats every ViT seed"
    assert shrink > 0.05 and shrink > 3 * res["gap_shrink"]["se"], f"the gap should shrink with data: {res['gap_shrink']}"
    assert res["vit_gain"] > 0.15, "the ViT should gain a lot from data"
    assert res["params"]["vit"] > res["params"]["cnn"], "the page says the ViT is not the smaller model"


if __name__ == "__main__":
    main()
