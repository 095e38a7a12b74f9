# build: timeout=240
# (about 20 s of CPU time on one quiet core; a loaded machine stretches the wall time past the default limit)
"""Fix: put a convolutional prior in front of the ViT (a conv stem), measured at small data.

The ViT of learning_curves.py (the sibling file: same models, data split, subsets
and training rule) is trained at the small sizes twice, on the same subsets and
from the same initialisation of every weight the two share:
  plain      the ViT of the learning curves: raw 2x2-pixel patches;
  conv stem  one 3x3 convolution (STEM_C channels, ReLU) over the pixels before
             the patchify step, so each token is built from local features that
             are computed the same way at every position. This is the idea of
             Xiao et al. (2021), who replace ViT's patchify stem with a few
             stacked 3x3 convolutions, and of the ResNet "hybrid" input in the
             ViT paper (Dosovitskiy et al. 2020, Section 3.1).
A plain CNN on the same subsets gives the gap the fix is measured against.
The script asserts that the stem helps for every seed at every size, and that the
ViT with the stem still trails the CNN.

Run from the repo root:  python snippets/problems/06_data_hungry/fixes.py
"""
import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from learning_curves import (N_SEEDS, PATCH, SEED, CNN, ViT, accuracy, machine_info, split, stats,  # sibling file
                             steps_for, subsets_for, to_patches, train)

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
FIX_SIZES = [50, 200]
STEM_C = 8  # channels of the stem's 3x3 convolution


# --8<-- [start:core]
class ConvStemViT(ViT):
    """The learning curves' ViT with one 3x3 conv layer (STEM_C channels) before the patchify step."""

    def __init__(self, E):
        super().__init__(E, patch_dim=STEM_C * PATCH * PATCH)  # a token is now STEM_C channels of p x p pixels
        self.stem = nn.Conv2d(E, E * STEM_C, 3, padding=1, groups=E)  # group e = member e

    def patches(self, x):  # x: (E, B, 8, 8) -> (E, B*T, C*p*p)
        E, B = x.shape[:2]
        h = F.relu(self.stem(x.transpose(0, 1)))  # (B, E*C, 8, 8): local features, the same at every position
        h = h.reshape(B, E, STEM_C, 8, 8).transpose(0, 1)  # (E, B, C, 8, 8)
        return to_patches(h)  # (E, B*T, C*p*p); the transformer after it is unchanged
# --8<-- [end:core]


def same_init(stem_vit):
    """A plain ViT with every weight it shares with `stem_vit` copied from it."""
    plain = ViT(stem_vit.E).to(stem_vit.pos.device)
    shared = {k: v for k, v in stem_vit.state_dict().items() if k in plain.state_dict() and not k.startswith("embed.")}
    plain.load_state_dict(shared, strict=False)
    return plain


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    dev = ap.parse_args().device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(SEED)

    X, y, test_idx, pool = split()
    X, y = X.to(dev), y.to(dev)
    X_test, y_test = X[test_idx.to(dev)].expand(N_SEEDS, -1, -1, -1), y[test_idx.to(dev)].expand(N_SEEDS, -1)

    # Member e's tokens are exactly nn.Conv2d(1, STEM_C, 3, padding=1) with its weights, then ReLU and patchify.
    with torch.no_grad():
        m, e = ConvStemViT(N_SEEDS).to(dev), 1
        ref = nn.Conv2d(1, STEM_C, 3, padding=1).to(dev)
        ref.weight.copy_(m.stem.weight[e * STEM_C:(e + 1) * STEM_C])
        ref.bias.copy_(m.stem.bias[e * STEM_C:(e + 1) * STEM_C])
        img = X_test[e, :16].unsqueeze(1)  # (16, 1, 8, 8)
        torch.testing.assert_close(m.patches(X_test[:, :16])[e], to_patches(F.relu(ref(img))[None])[0])

    acc, per_size = {}, {}
    for n in FIX_SIZES:
        subs = subsets_for(pool, n, dev)  # (N_SEEDS, n): the learning curves' subsets
        torch.manual_seed(SEED + n)
        stem_vit = ConvStemViT(N_SEEDS).to(dev)
        plain = same_init(stem_vit)
        models = {"cnn": CNN(N_SEEDS).to(dev), "vit": plain, "vit_conv_stem": stem_vit}
        for mod in models.values():
            torch.manual_seed(SEED + n)  # the same sequence of mini-batches for every model
            train(mod, X, y, subs)
        acc[n] = {k: accuracy(mod, X_test, y_test).tolist() for k, mod in models.items()}
        a = acc[n]
        paired = lambda p, q: stats([u - v for u, v in zip(a[p], a[q])])  # noqa: E731  seed by seed, same subset
        r = per_size[str(n)] = {**{k: stats(v) for k, v in a.items()}, "gain": paired("vit_conv_stem", "vit"),
                                "gap_plain": paired("cnn", "vit"), "gap_stem": paired("cnn", "vit_conv_stem")}
        r["gap_closed"] = 1 - r["gap_stem"]["mean"] / r["gap_plain"]["mean"]

    n_params = lambda mod: sum(p.numel() for p in mod.parameters()) // mod.E  # noqa: E731
    res = {"machine": {**machine_info(), "device": dev},
           "config": {"sizes": FIX_SIZES, "seeds": N_SEEDS, "stem_channels": STEM_C,
                      "steps": {str(n): steps_for(n) for n in FIX_SIZES}},
           "params": {"vit": n_params(ViT(1)), "vit_conv_stem": n_params(ConvStemViT(1)), "cnn": n_params(CNN(1))},
           "sizes": per_size}
    (OUT / "results.json").write_text(json.dumps(res, indent=2))

    print(f"ViT with and without a conv stem ({res['params']['vit_conv_stem']:,} and {res['params']['vit']:,} "
          f"parameters), {N_SEEDS} seeds per size, same subsets and shared initialisation")
    print("test accuracy, mean ± sd over seeds")
    cols = ("cnn", "vit", "vit_conv_stem")
    print(f"{'images':>6} " + " ".join(f"{c:>15}" for c in cols) + f" {'stem gain':>15} {'gap closed':>11}")
    for n in FIX_SIZES:
        r = per_size[str(n)]
        print(f"{n:>6} " + " ".join(f"{r[c]['mean']:8.3f} ±{r[c]['sd']:.3f}" for c in cols)
              + f" {r['gain']['mean']:+8.3f} ±{r['gain']['sd']:.3f} {r['gap_closed']:>11.0%}")
    print("(stem gain: paired seed by seed; gap closed: share of the CNN - ViT gap that the stem closes)")
    print("stem members match nn.Conv2d with their weights")

    # The claims the page makes.
    for n in FIX_SIZES:
        r = per_size[str(n)]
        g = r["gain"]
        assert min(g["seeds"]) > 0 and g["mean"] > 3 * g["se"], f"the stem should help for every seed at {n} images: {g}"
        assert r["gap_stem"]["mean"] > 3 * r["gap_stem"]["se"], f"at {n} images the stem ViT should still trail the CNN: {r}"


if __name__ == "__main__":
    main()
