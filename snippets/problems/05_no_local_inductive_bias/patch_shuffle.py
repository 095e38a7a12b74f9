"""See it: a ViT without position embeddings cannot tell an image from its shuffled patches.

Real 8x8 digits (sklearn's bundled copy of the UCI handwritten digits) are cut
into 2x2-pixel patches. A small ViT without position embeddings sees only the
*set* of patches: its output is identical when the patches are shuffled, with
a class-token readout or mean pooling. A small CNN's output changes. After a
few seconds of training, the ViT's predictions on shuffled test digits are
exactly its predictions on the originals; the CNN's accuracy collapses.

Run from the repo root:  python snippets/problems/05_no_local_inductive_bias/patch_shuffle.py
"""
import argparse
import json
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
P = 2  # patch size: an 8x8 digit becomes a 4x4 grid of 16 patches
E, HEADS, LAYERS = 32, 4, 1
# training: (steps, batch, learning rate); the CNN is cheap per step, so it gets more of them
TRAIN = {"vit": (150, 64, 3e-3), "cnn": (300, 128, 1e-2)}


# --8<-- [start:core]
def shuffle_patches(img, perm, p=P):
    """img: (B, C, H, W); perm: a permutation of the (H/p)(W/p) patches."""
    B, C, H, W = img.shape
    g_h, g_w = H // p, W // p
    x = img.view(B, C, g_h, p, g_w, p).permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
    x = x.reshape(B, g_h * g_w, C, p, p)[:, perm]  # (B, N, C, p, p), patches reordered
    x = x.view(B, g_h, g_w, C, p, p).permute(0, 3, 1, 4, 2, 5)  # (B, C, gh, p, gw, p)
    return x.reshape(B, C, H, W)


class ViT(nn.Module):
    def __init__(self, readout="cls", pos_embed=False, n_patches=16, classes=10):
        super().__init__()
        self.readout = readout
        self.patchify = nn.Conv2d(1, E, kernel_size=P, stride=P)  # one linear map per patch
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, E))
        self.pos = nn.Parameter(0.02 * torch.randn(1, n_patches + 1, E)) if pos_embed else None
        layer = nn.TransformerEncoderLayer(E, HEADS, 2 * E, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.head = nn.Linear(E, classes)

    def forward(self, img):  # img: (B, 1, H, W)
        tok = self.patchify(img).flatten(2).transpose(1, 2)  # (B, E, gh, gw) -> (B, N, E)
        tok = torch.cat([self.cls.expand(len(img), -1, -1), tok], dim=1)  # (B, 1 + N, E)
        if self.pos is not None:
            tok = tok + self.pos
        h = self.encoder(tok)  # (B, 1 + N, E)
        return self.head(h[:, 0] if self.readout == "cls" else h[:, 1:].mean(1))  # (B, classes)


class CNN(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, classes))

    def forward(self, img):  # img: (B, 1, H, W)
        return self.net(img)  # (B, classes)
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
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def train(model, x, y, gen, kind):
    steps, batch, lr = TRAIN[kind]
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def plot(imgs, shuffled, labels, preds, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 8, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    n = len(imgs)
    fig, axes = plt.subplots(2, n, figsize=(1.45 * n, 4.1), layout="constrained")
    for j in range(n):
        for i, (im, tag) in enumerate(((imgs[j], "orig"), (shuffled[j], "shuffled"))):
            ax = axes[i, j]
            ax.imshow(im, cmap="gray_r", vmin=0, vmax=1, interpolation="none")
            ax.set_xticks([])
            ax.set_yticks([])
            v, c = preds[j][tag]["vit"], preds[j][tag]["cnn"]
            head = f"true {labels[j]}\n" if i == 0 else ""
            ax.set_title(f"{head}ViT: {v[0]} ({v[1]:.2f})\nCNN: {c[0]} ({c[1]:.2f})", fontsize=7)
    axes[0, 0].set_ylabel("original", fontsize=8)
    axes[1, 0].set_ylabel("patches shuffled", fontsize=8)
    fig.suptitle("Predicted class (probability): the no-position ViT gives identical answers", fontsize=8)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    dev = ap.parse_args().device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # models this small run faster on one thread than with thread sync
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)

    digits = load_digits()
    x_all = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    y_all = torch.tensor(digits.target)
    order = torch.randperm(len(x_all), generator=gen)
    tr, te = order[:1400], order[1400:]
    x_tr, y_tr, x_te, y_te = x_all[tr].to(dev), y_all[tr].to(dev), x_all[te].to(dev), y_all[te].to(dev)
    n_patches = (8 // P) ** 2
    perm = torch.randperm(n_patches, generator=gen).to(dev)  # one fixed shuffle of the 16 patches

    # The shuffle is real: it moves pixels, and un-shuffling restores the image exactly.
    x_shuf = shuffle_patches(x_te, perm)  # (N, 1, 8, 8)
    assert (x_shuf != x_te).any(dim=(1, 2, 3)).float().mean() > 0.9, "most shuffled images should differ"
    torch.testing.assert_close(shuffle_patches(x_shuf, perm.argsort()), x_te)

    # --8<-- [start:check]
    # At initialisation (any weights): the no-position ViT is exactly patch-shuffle invariant.
    at_init = {}
    with torch.no_grad():
        for name, model in {"vit_cls": ViT("cls"), "vit_mean": ViT("mean"),
                            "vit_cls_pos": ViT("cls", pos_embed=True), "cnn": CNN()}.items():
            model = model.to(dev).eval()
            out, out_shuf = model(x_te), model(x_shuf)  # (N, 10) each
            at_init[name] = ((out_shuf - out).abs().max() / out.abs().max()).item()
    assert at_init["vit_cls"] < 1e-5 and at_init["vit_mean"] < 1e-5, "no-position ViT must be invariant"
    assert at_init["vit_cls_pos"] > 1e-3, "position embeddings should make the ViT see the shuffle"
    assert at_init["cnn"] > 1e-2, "the CNN's output should change when patches move"
    # --8<-- [end:check]

    # Trained: the ViT's predictions on shuffled digits are its predictions on the originals.
    torch.manual_seed(SEED)
    models = {"vit": train(ViT("cls").to(dev), x_tr, y_tr, gen, "vit"),
              "vit_pos": train(ViT("cls", pos_embed=True).to(dev), x_tr, y_tr, gen, "vit"),
              "cnn": train(CNN().to(dev), x_tr, y_tr, gen, "cnn")}
    probs, acc = {}, {}
    with torch.no_grad():
        for name, model in models.items():
            probs[name] = model(x_te).softmax(-1), model(x_shuf).softmax(-1)  # (N, 10) each
            acc[name + "_original"] = (probs[name][0].argmax(1) == y_te).float().mean().item()
            acc[name + "_shuffled"] = (probs[name][1].argmax(1) == y_te).float().mean().item()
    p_vit, p_vit_s = probs["vit"]
    p_cnn, p_cnn_s = probs["cnn"]
    torch.testing.assert_close(p_vit_s, p_vit, atol=1e-5, rtol=1e-4)  # same probabilities, digit by digit
    assert acc["vit_shuffled"] == acc["vit_original"], "the page says the no-position ViT scores exactly the same"
    assert acc["vit_original"] > 0.3 and acc["cnn_original"] > 0.7, f"models should beat chance (0.1): {acc}"
    assert acc["cnn_shuffled"] < acc["cnn_original"] - 0.2, "the CNN should be hurt by shuffled patches"
    assert acc["vit_pos_shuffled"] < acc["vit_pos_original"] - 0.1, "with positions the ViT should notice"

    show = list(range(6))
    preds = []
    for j in show:
        preds.append({tag: {"vit": (int(pv[j].argmax()), float(pv[j].max())), "cnn": (int(pc[j].argmax()), float(pc[j].max()))}
                      for tag, pv, pc in (("orig", p_vit, p_cnn), ("shuffled", p_vit_s, p_cnn_s))})
    plot(x_te[show, 0].cpu().numpy(), x_shuf[show, 0].cpu().numpy(), y_te[show].tolist(), preds,
         OUT / "shuffled_digits.svg")

    results = {"machine": {**machine_info(), "device": dev},
               "config": {"patch": P, "patches": n_patches, "embed_dim": E, "heads": HEADS, "layers": LAYERS,
                          "train_steps_batch_lr": TRAIN, "train_images": len(tr), "test_images": len(te)},
               "at_init_rel_change": at_init, "accuracy": acc,
               "vit_max_prob_diff_shuffled": (p_vit_s - p_vit).abs().max().item()}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"8x8 digits, {n_patches} patches of {P}x{P}; relative output change when the patches are shuffled (init):")
    for name, v in at_init.items():
        print(f"  {name:<12} {v:.1e}")
    print(f"{f'trained briefly; test accuracy on {len(te)} digits':<48}{'original':>9}{'shuffled':>10}")
    for key, label in (("vit", "ViT, no positions (class token)"), ("vit_pos", "ViT with learned position embeddings"),
                       ("cnn", "CNN (two 3x3 convs, global average pool)")):
        print(f"  {label:<46}{acc[key + '_original']:>9.3f}{acc[key + '_shuffled']:>10.3f}")
    print(f"  ViT class probabilities, max |shuffled - original| = {results['vit_max_prob_diff_shuffled']:.1e}")


if __name__ == "__main__":
    main()
