"""A fix: a diagonal linear state-space layer, one recurrence with three equal ways to compute it.

Each of C channels carries a state of N numbers and updates it elementwise:

    h_t = a * h_{t-1} + b * x_t,   y_t = sum_n c_n h_t[n]      (a, b, c: (C, N))

- sequential scan: one step per token, constant state (streaming / inference);
- convolution: unrolled, y = K * x with the kernel K_k = sum_n c_n a_n^k b_n,
  computed for all T at once with an FFT (training form of S4-style layers);
- selective version (Mamba-style): a_t and b_t depend on the input, so there is
  no fixed kernel, but the recurrence is still a parallel prefix scan over
  pairs (a, b) in log2(T) vectorised steps.

Checks: sequential == FFT convolution (time-invariant); sequential == parallel
scan (selective); streaming chunk by chunk, carrying only h, == one pass over
the whole sequence; state bytes stay constant while a KV cache would grow.

Run from the repo root:  python snippets/problems/12_no_recurrence_streaming/ssm_scan.py
"""
import argparse
import json
import os
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
B, C, N = 2, 8, 16  # batch, channels, state size per channel
T = 512  # sequence length for the equality checks
STREAM_LENGTHS = [512, 2048, 8192]
CHUNK = 512


# --8<-- [start:core]
def scan_sequential(x, a, b, c, h=None):
    """x: (B, T, C); a, b: (C, N) or (B, T, C, N) if selective; c: (C, N). Returns y (B, T, C), h (B, C, N)."""
    Bx, T, Ch = x.shape
    h = x.new_zeros(Bx, Ch, c.shape[-1]) if h is None else h  # (B, C, N): the entire state
    ys = []
    for t in range(T):
        a_t = a if a.dim() == 2 else a[:, t]  # (C, N) or (B, C, N)
        b_t = b if b.dim() == 2 else b[:, t]
        h = a_t * h + b_t * x[:, t, :, None]  # (B, C, N): elementwise, O(C N) per token
        ys.append((h * c).sum(-1))  # (B, C)
    return torch.stack(ys, dim=1), h  # (B, T, C)


def ssm_convolution(x, a, b, c):
    """Time-invariant case only: y = K * x with K_k = sum_n c_n a_n^k b_n, via FFT in O(T log T)."""
    T = x.shape[1]
    powers = a[None] ** torch.arange(T, dtype=x.dtype, device=x.device)[:, None, None]  # (T, C, N): a^k
    K = (powers * b * c).sum(-1)  # (T, C): the unrolled kernel
    n = 2 * T  # zero-pad so the circular FFT convolution is a causal linear one
    y = torch.fft.irfft(torch.fft.rfft(x, n=n, dim=1) * torch.fft.rfft(K, n=n, dim=0), n=n, dim=1)  # (B, 2T, C)
    return y[:, :T]  # (B, T, C)


def scan_parallel(x, a, b, c, h=None):
    """Selective case: h_t = a_t h_{t-1} + u_t is a prefix scan over pairs (a_t, u_t),
    combined as (a1, u1) then (a2, u2) -> (a2 a1, a2 u1 + u2). Hillis-Steele: log2(T) steps."""
    A = a.clone()  # (B, T, C, N)
    U = b * x[..., None]  # (B, T, C, N): the input term u_t
    if h is not None:  # a carried state (streaming): fold a_0 h into the first step
        U[:, 0] = U[:, 0] + A[:, 0] * h  # (B, C, N)
    shift = 1
    while shift < x.shape[1]:
        # position t absorbs the combined block ending at t - shift (positions < shift have none)
        A_prev = F.pad(A[:, :-shift], (0, 0, 0, 0, shift, 0), value=1.0)  # (B, T, C, N): identity a = 1
        U_prev = F.pad(U[:, :-shift], (0, 0, 0, 0, shift, 0), value=0.0)  # (B, T, C, N): identity u = 0
        U = A * U_prev + U
        A = A * A_prev
        shift *= 2
    return (U * c).sum(-1), U[:, -1]  # y: (B, T, C); last state h_T: (B, C, N)
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # token-by-token loops of tiny ops: extra threads only add sync overhead
    f64 = {"device": dev, "dtype": torch.float64}

    # 1) Time-invariant: sequential scan == FFT convolution.
    x = torch.randn(B, T, C, **f64)  # (B, T, C)
    a = torch.rand(C, N, **f64) * 0.15 + 0.85  # (C, N): decay per step in [0.85, 1): long memory
    b, c = torch.randn(C, N, **f64), torch.randn(C, N, **f64) / N  # (C, N) each
    y_seq, h_seq = scan_sequential(x, a, b, c)
    y_conv = ssm_convolution(x, a, b, c)
    torch.testing.assert_close(y_conv, y_seq, rtol=1e-9, atol=1e-9)
    err = {"conv_vs_sequential": (y_conv - y_seq).abs().max().item()}

    # 2) Selective (input-dependent a_t, b_t): sequential == parallel prefix scan.
    w_a, w_b = torch.randn(C, N, **f64), torch.randn(C, N, **f64)  # (C, N) each
    a_sel = torch.sigmoid(3 + x[..., None] * w_a)  # (B, T, C, N): a_t in (0, 1), depends on x_t
    b_sel = x[..., None] * w_b / 4  # (B, T, C, N)
    y_seq_sel, h_seq_sel = scan_sequential(x, a_sel, b_sel, c)
    y_par_sel, h_par_sel = scan_parallel(x, a_sel, b_sel, c)
    torch.testing.assert_close(y_par_sel, y_seq_sel, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(h_par_sel, h_seq_sel, rtol=1e-9, atol=1e-9)
    err["parallel_scan_vs_sequential"] = (y_par_sel - y_seq_sel).abs().max().item()
    # The check is live: a fixed kernel (the convolution) cannot reproduce the selective layer.
    assert (ssm_convolution(x, a_sel.mean((0, 1)), b, c) - y_seq_sel).abs().max() > 1e-2

    # 3) Streaming: process chunks carrying only h; compare with one pass; measure state bytes.
    xs = torch.randn(1, STREAM_LENGTHS[-1], C, **f64)  # (1, T_stream, C)
    y_full, _ = scan_parallel(xs, a.expand(1, xs.shape[1], C, N), b.expand(1, xs.shape[1], C, N), c)
    h, ys, rows = None, [], []
    for start in range(0, xs.shape[1], CHUNK):
        xc = xs[:, start:start + CHUNK]  # (1, CHUNK, C)
        yc, h = scan_parallel(xc, a.expand(1, CHUNK, C, N), b.expand(1, CHUNK, C, N), c, h)  # h: (1, C, N)
        ys.append(yc)
        n = start + CHUNK
        if n in STREAM_LENGTHS:
            rows.append({"tokens": n, "ssm_state_bytes": h.nbytes,
                         "kv_cache_bytes_same_width": 2 * n * C * 8})  # K and V of width C, float64
    torch.testing.assert_close(torch.cat(ys, dim=1), y_full, rtol=1e-8, atol=1e-8)
    assert len({r["ssm_state_bytes"] for r in rows}) == 1, "the SSM state must not grow"
    assert rows[-1]["ssm_state_bytes"] == 1 * C * N * 8, "state = C x N float64 values"

    results = {"machine": machine_info() | {"device": dev},
               "config": {"batch": B, "channels": C, "state_per_channel": N, "seq_len": T, "chunk": CHUNK,
                          "dtype": "float64", "scan_steps": (T - 1).bit_length()},
               "max_abs_err": err, "stream": rows, "by_tokens": {str(r["tokens"]): r for r in rows}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"diagonal SSM: B={B}, C={C} channels, N={N} state per channel, T={T}, float64")
    print(f"time-invariant: sequential scan vs FFT convolution, max |diff| {err['conv_vs_sequential']:.1e}")
    print(f"selective:      sequential scan vs parallel scan ({results['config']['scan_steps']} steps), "
          f"max |diff| {err['parallel_scan_vs_sequential']:.1e}")
    print(f"streamed in chunks of {CHUNK}, carrying only h: equal to one pass over {STREAM_LENGTHS[-1]} tokens")
    print(f"{'tokens':>7} {'SSM state bytes':>16} {'KV cache bytes (same width)':>28}")
    for r in rows:
        print(f"{r['tokens']:>7} {r['ssm_state_bytes']:>16,} {r['kv_cache_bytes_same_width']:>28,}")


if __name__ == "__main__":
    main()
