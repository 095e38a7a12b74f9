"""Gradient clipping bounds an SGD step exactly, but not an Adam step.

clip_grad_norm_(params, c) rescales the whole gradient to norm <= c. With SGD
the update is lr * g, so its norm is then at most lr * c: a hard bound. Adam
divides by a running RMS of the gradient, so rescaling the gradient barely
changes its step: the very first Adam step is lr * sign(g) per coordinate,
clipped or not. What clipping does for Adam is keep one huge gradient out of
the moment estimates. The script trains a small nn.TransformerEncoderLayer
regression for 30 steps, hits it with one gradient 1000 times too large (the
loss of one batch scaled by 1000), and measures the update norms around it.

Run from the repo root:  python snippets/problems/10_training_instability/clipping.py
"""
import argparse
import json
import os
import platform
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
B, T, D = 16, 16, 32
LR, CLIP, SPIKE = 1e-3, 1.0, 1000.0
STEADY, AFTER = 30, 40  # normal steps before the spike, steps measured after it


def make_model(device):
    torch.manual_seed(SEED)
    return nn.TransformerEncoderLayer(D, 4, 4 * D, dropout=0.0, batch_first=True).to(device)


def batches(n, device):
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        x = torch.randn(B, T, D, generator=g).to(device)  # (B, T, d)
        yield x, x.flip(1)  # target: the sequence reversed


# --8<-- [start:core]
def update_norms(opt_name, clip, device="cpu"):
    """Norm of each optimizer step ||theta_new - theta_old||, with one spiked gradient at step STEADY."""
    model = make_model(device)
    params = list(model.parameters())
    opt = (torch.optim.SGD(params, lr=LR) if opt_name == "sgd"
           else torch.optim.Adam(params, lr=LR))
    norms = []
    for step, (x, y) in enumerate(batches(STEADY + 1 + AFTER, device)):
        loss = F.mse_loss(model(x), y) * (SPIKE if step == STEADY else 1.0)
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(params, clip)
        before = [p.detach().clone() for p in params]
        opt.step()
        norms.append(torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(params, before))).item())
    return norms
# --8<-- [end:core]


def first_adam_step_is_sign(device):
    """Adam's first update is -lr * g / (|g| + eps): the gradient's size cancels, so clipping cannot shrink it.

    Both runs see the spiked gradient (loss x SPIKE); one clips it to norm CLIP first.
    """
    out = []
    for clip in (None, CLIP):
        model = make_model(device)
        params = list(model.parameters())
        opt = torch.optim.Adam(params, lr=LR)
        x, y = next(batches(1, device))
        (F.mse_loss(model(x), y) * SPIKE).backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(params, clip)
        grad = torch.cat([p.grad.flatten() for p in params])  # (n_params,)
        before = [p.detach().clone() for p in params]
        opt.step()
        out.append(torch.cat([(p - b).flatten() for p, b in zip(params, before)]))  # (n_params,)
    return out[0], out[1], grad  # grad: the clipped one


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)

    runs = {f"{o}_{'clip' if c else 'noclip'}": update_norms(o, c, dev) for o in ("sgd", "adam") for c in (None, CLIP)}
    summary = {}
    for name, n in runs.items():
        normal = sum(n[STEADY - 10:STEADY]) / 10  # mean of the 10 steps before the spike
        after = sum(n[STEADY + 11:]) / (AFTER - 10)  # steps 11..AFTER after the spike
        summary[name] = {"normal": normal, "spike": n[STEADY], "spike_over_normal": n[STEADY] / normal,
                         "after_over_normal": after / normal, "max": max(n)}
    n_params = sum(p.numel() for p in make_model(dev).parameters())
    d_plain, d_clip, g_clip = first_adam_step_is_sign(dev)
    # Only coordinates whose clipped gradient is above 1e-4 (10^4 x Adam's eps): near-zero ones, e.g.
    # the key biases (softmax ignores them, so their true gradient is 0), are left out.
    live = g_clip.abs() > 1e-4
    torch.testing.assert_close(d_plain[live], d_clip[live], rtol=1e-3, atol=0)  # clipping changed nothing
    first_step_over_lr = d_plain[live].abs() / LR

    results = {"machine": {**machine_info(), "device": dev},
               "config": {"batch": B, "seq": T, "d_model": D, "lr": LR, "clip": CLIP, "spike": SPIKE,
                          "steady_steps": STEADY, "after_steps": AFTER, "params": n_params, "seed": SEED},
               "summary": summary, "sgd_bound": LR * CLIP,
               "after_window": {"from": 11, "to": AFTER},  # steps after the spike averaged in after_over_normal
               "adam_first_step": {"median_abs_over_lr": first_step_over_lr.median().item(),
                                   "max_abs_diff_clip_vs_not": (d_plain - d_clip)[live].abs().max().item(),
                                   "coords_checked": int(live.sum()), "coords_near_zero_grad": int((~live).sum()),
                                   "coords_total": live.numel(), "live_threshold": 1e-4,
                                   # where the clipped gradient is tiny, Adam's eps matters and clipping does move the step
                                   "max_abs_diff_near_zero_coords": (d_plain - d_clip)[~live].abs().max().item(),
                                   "max_abs_over_lr_near_zero_coords_clipped": (d_clip[~live].abs().max() / LR).item()},
               "norms": runs}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"update norm ||Δθ|| (lr {LR:g}, clip {CLIP:g}, one gradient x{SPIKE:g} at step {STEADY}):")
    print(f"{'run':<12} {'normal':>9} {'spike':>9} {'spike/normal':>13} {'later/normal':>13}")
    for name, s in summary.items():
        print(f"{name:<12} {s['normal']:>9.2e} {s['spike']:>9.2e} {s['spike_over_normal']:>13.1f} "
              f"{s['after_over_normal']:>13.2f}")
    fa = results["adam_first_step"]
    print(f"SGD bound lr*clip = {LR * CLIP:.1e}; Adam's first step with and without clipping, on the "
          f"{fa['coords_checked']:,} of {fa['coords_total']:,} coordinates whose clipped gradient is above 1e-4: "
          f"max difference {fa['max_abs_diff_clip_vs_not']:.2e}, median |Δθ_i|/lr {fa['median_abs_over_lr']:.3f}; "
          f"on the other {fa['coords_near_zero_grad']:,}: max difference {fa['max_abs_diff_near_zero_coords']:.2e}")

    # The claims the page makes.
    s = summary
    assert all(v <= LR * CLIP * (1 + 1e-5) for v in runs["sgd_clip"]), "clipped SGD step exceeded lr * clip"
    assert s["sgd_noclip"]["spike_over_normal"] > 100, "an unclipped SGD step should scale with the spike"
    assert s["adam_noclip"]["spike_over_normal"] < 10, "Adam's own normalisation should absorb most of the spike"
    assert s["adam_noclip"]["after_over_normal"] < 0.5 * s["adam_clip"]["after_over_normal"], \
        "without clipping, the spike should leave Adam's later steps much smaller (inflated second moment)"
    assert abs(results["adam_first_step"]["median_abs_over_lr"] - 1) < 0.01, "Adam's first step should be lr*sign(g)"


if __name__ == "__main__":
    main()
