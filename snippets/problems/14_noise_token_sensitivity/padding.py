"""Padding changes attention outputs unless it is masked.

Batching sequences of different lengths pads the short ones. Softmax gives
every key a positive weight, pad keys included, so without a mask the output
at the REAL positions depends on how much padding was added. The script runs
one nn.MultiheadAttention on a 10-token sequence padded with 0..64 zero
vectors and checks that, unmasked, the real tokens' outputs move, and that
both masking APIs restore the unpadded output exactly:
  * nn.MultiheadAttention(key_padding_mask=...)  True = IGNORE this key
  * F.scaled_dot_product_attention(attn_mask=...) True = ATTEND to this key
The opposite conventions are a classic bug; the script also shows what
happens if the MultiheadAttention mask is handed to SDPA unchanged.

Run from the repo root:  python snippets/problems/14_noise_token_sensitivity/padding.py
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
    mha = nn.MultiheadAttention(D, H, batch_first=True).to(dev).eval()
    x = torch.randn(1, T_REAL, D, device=dev)  # (1, T, d)

    with torch.no_grad():
        ref, drift = unmasked_drift(mha, x)
        masked_err, sdpa_err = {}, {}
        for n_pad in PADS:
            out_kpm = with_key_padding_mask(mha, x, n_pad)
            out_sdpa = with_sdpa_mask(mha, x, n_pad)
            torch.testing.assert_close(out_kpm, ref, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out_sdpa, ref, rtol=1e-5, atol=1e-5)
            masked_err[n_pad] = (out_kpm - ref).abs().max().item()
            sdpa_err[n_pad] = (out_sdpa - ref).abs().max().item()
        # The bug: MultiheadAttention's "True = ignore" mask passed to SDPA, where True means "attend".
        n_pad = 8
        S = T_REAL + n_pad
        kpm_style = (torch.arange(S, device=dev) >= T_REAL).view(1, 1, 1, S)  # (1, 1, 1, S)
        wrong = with_sdpa_mask(mha, x, n_pad, attend=kpm_style)
        wrong_err = (wrong - ref).abs().max().item()
        # With zero pads, every real token attends only to pad keys: the same output at every position.
        wrong_spread = (wrong - wrong.mean(1, keepdim=True)).abs().max().item()
    ref_scale = ref.abs().max().item()

    results = {"machine": {**machine_info(), "device": dev},
               "config": {"d_model": D, "heads": H, "real_tokens": T_REAL, "pads": PADS, "seed": SEED},
               "output_max_abs": ref_scale,
               "unmasked_drift": {str(k): v for k, v in drift.items()},
               "unmasked_drift_rel": {str(k): v / ref_scale for k, v in drift.items()},
               "masked_err": {"key_padding_mask": max(masked_err.values()), "sdpa_attn_mask": max(sdpa_err.values())},
               "swapped_convention": {"pads": n_pad, "err": wrong_err, "err_rel": wrong_err / ref_scale,
                                      "spread_across_positions": wrong_spread}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"{T_REAL} real tokens, d={D}, {H} heads; largest |output| without padding = {ref_scale:.3f}")
    print(f"{'pads':>5} {'no mask: max change':>20} {'key_padding_mask':>17} {'SDPA attn_mask':>15}")
    for n_pad in PADS:
        print(f"{n_pad:>5} {drift[n_pad]:>20.3f} {masked_err[n_pad]:>17.1e} {sdpa_err[n_pad]:>15.1e}")
    print(f"MultiheadAttention-style mask (True = ignore) given to SDPA: max error {wrong_err:.3f}, "
          f"outputs identical across real positions (spread {wrong_spread:.1e})")

    # The claims the page makes.
    assert drift[0] < 1e-5, "no padding, no change"
    assert all(drift[p] > 0.05 * ref_scale for p in PADS[1:]), "unmasked padding should change the real outputs"
    assert drift[PADS[-1]] > drift[PADS[1]], "more padding should move the outputs further"
    assert wrong_err > 0.05 * ref_scale and wrong_spread < 1e-5, "the swapped mask should attend to pads only"


if __name__ == "__main__":
    main()
