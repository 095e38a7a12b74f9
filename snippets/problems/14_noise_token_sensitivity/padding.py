"""Padding changes attention outputs unless it is masked.

Batching sequences of different lengths pads the short ones. Softmax gives
every key a positive weight, pad keys included, so without a mask the output
at the REAL positions depends on how much padding was added. The script runs
one nn.MultiheadAttention on a 10-token sequence padded with 0..64 zero
vectors and checks that, unmasked, the real tokens' outputs move, and that
both masking APIs restore the unpadded output exactly. nn.MultiheadAttention
starts its projection biases at zero, which would make a zero pad a zero key
and a zero value; a trained layer's biases are not zero, so the script gives
them values first (drawn as nn.Linear draws its own biases) and also reports
the zero-bias case. The masking APIs:
  * nn.MultiheadAttention(key_padding_mask=...)  True = IGNORE this key
  * F.scaled_dot_product_attention(attn_mask=...) True = ATTEND to this key
The opposite conventions are a classic bug; the script also shows what
happens if the MultiheadAttention mask is handed to SDPA unchanged.

Run from the repo root:  python snippets/problems/14_noise_token_sensitivity/padding.py
"""
import argparse
import copy
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
D, H, T_REAL = 32, 4, 10
PADS = [0, 1, 2, 4, 8, 16, 32, 64]


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


# --8<-- [start:core]
def padded(x, n_pad):
    """Append n_pad zero vectors (what an embedding with padding_idx returns) to x (1, T, d)."""
    return torch.cat([x, x.new_zeros(1, n_pad, D)], dim=1)  # (1, T + n_pad, d)


def unmasked_drift(mha, x):
    """Max change of the real tokens' outputs when pads are added and nothing masks them."""
    ref = mha(x, x, x, need_weights=False)[0]  # (1, T, d): no padding at all
    drift = {}
    for n_pad in PADS:
        xp = padded(x, n_pad)  # (1, T + n_pad, d)
        out = mha(xp, xp, xp, need_weights=False)[0][:, :T_REAL]  # (1, T, d): real positions only
        drift[n_pad] = (out - ref).abs().max().item()
    return ref, drift


def with_trained_biases(mha, seed=SEED):
    """Non-zero projection biases, as a trained layer has: U(-1/sqrt(d), 1/sqrt(d)), nn.Linear's own draw.

    nn.MultiheadAttention initialises in_proj_bias and out_proj.bias to zero; then a zero pad is projected to
    a zero key and a zero value, and the wrong-mask case below would output exactly 0.
    """
    gen = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(D)
    with torch.no_grad():
        for b in (mha.in_proj_bias, mha.out_proj.bias):
            b.copy_(torch.empty(b.shape).uniform_(-bound, bound, generator=gen))  # drawn on the CPU, then copied
    return mha
# --8<-- [end:core]


# --8<-- [start:fix]
def with_key_padding_mask(mha, x, n_pad):
    xp = padded(x, n_pad)  # (1, T + n_pad, d)
    ignore = torch.arange(T_REAL + n_pad, device=x.device)[None, :] >= T_REAL  # (1, T + n_pad): True = pad
    return mha(xp, xp, xp, key_padding_mask=ignore, need_weights=False)[0][:, :T_REAL]  # (1, T, d)


def with_sdpa_mask(mha, x, n_pad, attend=None):
    """The same layer written with SDPA; attend: (1, 1, 1, S) bool, True = may attend."""
    xp = padded(x, n_pad)  # (1, S, d), S = T + n_pad
    S = xp.shape[1]
    if attend is None:
        attend = (torch.arange(S, device=x.device) < T_REAL).view(1, 1, 1, S)  # (1, 1, 1, S), broadcast
    q, k, v = F.linear(xp, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)  # (1, S, d) each
    q, k, v = (t.view(1, S, H, D // H).transpose(1, 2) for t in (q, k, v))  # (1, H, S, d_h) each
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # (1, H, S, d_h)
    o = o.transpose(1, 2).reshape(1, S, D)  # (1, S, d)
    return mha.out_proj(o)[:, :T_REAL]  # (1, T, d)
# --8<-- [end:fix]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    mha_zero_bias = nn.MultiheadAttention(D, H, batch_first=True).to(dev).eval()  # PyTorch's init: zero biases
    mha = with_trained_biases(copy.deepcopy(mha_zero_bias))  # the same layer apart from its biases
    x = torch.randn(1, T_REAL, D, device=dev)  # (1, T, d)

    with torch.no_grad():
        ref, drift = unmasked_drift(mha, x)
        ref0, drift0 = unmasked_drift(mha_zero_bias, x)
        masked_err, sdpa_err = {}, {}
        for n_pad in PADS:
            out_kpm = with_key_padding_mask(mha, x, n_pad)
            out_sdpa = with_sdpa_mask(mha, x, n_pad)
            torch.testing.assert_close(out_kpm, ref, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out_sdpa, ref, rtol=1e-5, atol=1e-5)
            masked_err[n_pad] = (out_kpm - ref).abs().max().item()
            sdpa_err[n_pad] = (out_sdpa - ref).abs().max().item()
        # A zero pad becomes the key b_k and the value b_v (the bias thirds of in_proj_bias).
        _, b_k, b_v = mha.in_proj_bias.chunk(3)  # (d,) each: query, key and value biases
        pad_kv = F.linear(x.new_zeros(1, 1, D), mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)[1:]
        torch.testing.assert_close(pad_kv[0].view(D), b_k)
        torch.testing.assert_close(pad_kv[1].view(D), b_v)
        # The bug: MultiheadAttention's "True = ignore" mask passed to SDPA, where True means "attend".
        n_pad = 8
        S = T_REAL + n_pad
        kpm_style = (torch.arange(S, device=dev) >= T_REAL).view(1, 1, 1, S)  # (1, 1, 1, S)
        wrong = with_sdpa_mask(mha, x, n_pad, attend=kpm_style)
        wrong_err = (wrong - ref).abs().max().item()
        # Every real token attends only to the (identical) pad keys, so it outputs the pads' value: the
        # output projection of b_v, the same at every position whatever that token's input was.
        pads_value = mha.out_proj(b_v.view(1, 1, D))  # (1, 1, d)
        torch.testing.assert_close(wrong, pads_value.expand_as(wrong), rtol=1e-5, atol=1e-6)
        wrong_spread = (wrong - wrong.mean(1, keepdim=True)).abs().max().item()
        wrong0 = with_sdpa_mask(mha_zero_bias, x, n_pad, attend=kpm_style)  # zero biases: exactly 0
        wrong0_max = wrong0.abs().max().item()
    ref_scale = ref.abs().max().item()
    ref0_scale = ref0.abs().max().item()

    results = {"machine": {**machine_info(), "device": dev},
               "config": {"d_model": D, "heads": H, "real_tokens": T_REAL, "pads": PADS, "seed": SEED,
                          "biases": "U(-1/sqrt(d), 1/sqrt(d)) in in_proj_bias and out_proj.bias"},
               "output_max_abs": ref_scale,
               "unmasked_drift": {str(k): v for k, v in drift.items()},
               "unmasked_drift_rel": {str(k): v / ref_scale for k, v in drift.items()},
               "zero_biases": {"output_max_abs": ref0_scale,
                               "unmasked_drift": {str(k): v for k, v in drift0.items()},
                               "unmasked_drift_rel": {str(k): v / ref0_scale for k, v in drift0.items()},
                               "swapped_convention_max_abs_output": wrong0_max},
               "masked_err": {"key_padding_mask": max(masked_err.values()), "sdpa_attn_mask": max(sdpa_err.values())},
               "swapped_convention": {"pads": n_pad, "err": wrong_err, "err_rel": wrong_err / ref_scale,
                                      "spread_across_positions": wrong_spread,
                                      "pads_value_max_abs": pads_value.abs().max().item()}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"{T_REAL} real tokens, d={D}, {H} heads, non-zero biases; largest |output| without padding = {ref_scale:.3f}")
    print(f"{'pads':>5} {'no mask: max change':>20} {'key_padding_mask':>17} {'SDPA attn_mask':>15} "
          f"{'zero biases, no mask':>21}")
    for n_pad in PADS:
        print(f"{n_pad:>5} {drift[n_pad]:>20.3f} {masked_err[n_pad]:>17.1e} {sdpa_err[n_pad]:>15.1e} "
              f"{drift0[n_pad]:>21.3f}")
    print(f"MultiheadAttention-style mask (True = ignore) given to SDPA: max error {wrong_err:.3f} "
          f"({wrong_err / ref_scale:.0%} of the largest output); every real position outputs the pads' value "
          f"(spread {wrong_spread:.1e})")
    print(f"the same layer with zero biases: largest |output| {ref0_scale:.3f}; the swapped mask outputs exactly "
          f"{wrong0_max:.1f}")

    # The claims the page makes.
    assert drift[0] < 1e-5 and drift0[0] < 1e-5, "no padding, no change"
    for d, scale in ((drift, ref_scale), (drift0, ref0_scale)):  # with and without biases
        assert all(d[p] > 0.05 * scale for p in PADS[1:]), "unmasked padding should change the real outputs"
        assert all(d[a] < d[b] for a, b in zip(PADS[1:], PADS[2:])), "more padding should move the outputs further"
    assert wrong_spread < 1e-5, "the swapped mask should attend to pads only: one output for every position"
    assert wrong_err > 0.5 * ref_scale, "the swapped mask should change the outputs by a large part of their size"
    assert wrong0_max == 0, "with zero biases the pads' value is zero, so the swapped mask outputs exactly 0"


if __name__ == "__main__":
    main()
