"""A fix: linear attention runs as an RNN with a fixed d x d state, and what that state forgets.

Causal linear attention (Katharopoulos et al. 2020) replaces softmax(q.k) with
phi(q).phi(k), phi(x) = elu(x) + 1. Then the output at step t only needs

    S_t = S_{t-1} + phi(k_t) v_t^T   (a d x d matrix)
    z_t = z_{t-1} + phi(k_t)         (a d vector)
    y_t = phi(q_t)^T S_t / phi(q_t)^T z_t

so a stream can be processed token by token with a state whose size never changes.

Checks:
1. The recurrent form equals the parallel causal form (T x T masked matrix), float64 and float32.
2. Streaming the state over 16k tokens in chunks gives the same state as token by token,
   and its bytes stay constant, while a softmax layer's KV cache grows linearly (measured nbytes).
3. The price: associative recall. Store n random (key, value) pairs and query each key.
   A softmax attention over the KV cache recalls them; a d x d state cannot hold more than d
   independent pairs (even the best least-squares d x d map fails beyond n = d).

Run from the repo root:  python snippets/problems/12_no_recurrence_streaming/linear_attention_state.py
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
B, H, D = 1, 4, 32  # batch, heads, head dim
STREAM_LENGTHS = [256, 1024, 4096, 16384]
CHUNK = 256
RECALL_NS = [8, 16, 32, 64, 128, 256]  # stored pairs; D = 32 is the state's capacity
SHARP = 50.0  # softmax temperature for the recall test (a trained model learns a sharp scale)


# --8<-- [start:core]
def phi(x):
    return F.elu(x) + 1  # positive feature map (Katharopoulos et al. 2020, Section 3.2)


def linear_attention_parallel(q, k, v):
    """Training form: all T outputs at once with a causal T x T matrix. q, k, v: (B, H, T, d)."""
    A = phi(q) @ phi(k).transpose(-2, -1)  # (B, H, T, T)
    A = A.tril()  # causal: step t sums over j <= t
    return (A @ v) / A.sum(-1, keepdim=True)  # (B, H, T, d)


def linear_attention_step(state, q_t, k_t, v_t):
    """Inference form: one token in, one token out, fixed-size state (S, z)."""
    S, z = state  # (B, H, d, d), (B, H, d)
    S = S + phi(k_t)[..., :, None] * v_t[..., None, :]  # (B, H, d, d): add the outer product phi(k_t) v_t^T
    z = z + phi(k_t)  # (B, H, d)
    fq = phi(q_t)  # (B, H, d)
    y = (fq[..., None, :] @ S)[..., 0, :] / (fq * z).sum(-1, keepdim=True)  # (B, H, d)
    return (S, z), y


def linear_attention_recurrent(q, k, v):
    S = q.new_zeros(q.shape[0], q.shape[1], q.shape[-1], v.shape[-1])  # (B, H, d, d)
    z = q.new_zeros(q.shape[0], q.shape[1], q.shape[-1])  # (B, H, d)
    ys = []
    for t in range(q.shape[2]):
        (S, z), y = linear_attention_step((S, z), q[:, :, t], k[:, :, t], v[:, :, t])
        ys.append(y)
    return torch.stack(ys, dim=2), (S, z)  # (B, H, T, d)
# --8<-- [end:core]


def recall_errors(n, d, gen):
    """Relative error recalling v_i from k_i for n stored pairs (one head, d dims)."""
    keys = F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=-1)  # (n, d) unit keys
    vals = torch.randn(n, d, generator=gen, dtype=torch.float64)  # (n, d)

    def rel(pred):  # 12 decimals: LAPACK's last bits vary from run to run, the results must not
        return round(((pred - vals).norm() / vals.norm()).item(), 12)

    soft = torch.softmax(SHARP * keys @ keys.T, dim=-1) @ vals  # (n, d): softmax over the n cached keys
    S = keys.T @ vals  # (d, d): additive state sum_j k_j v_j^T (identity feature map, no normaliser)
    fk = phi(keys)  # (n, d)
    S_elu, z = fk.T @ vals, fk.sum(0)  # (d, d), (d,): the elu+1 linear-attention state after n tokens
    elu = (fk @ S_elu) / (fk @ z)[:, None]  # (n, d)
    best = torch.linalg.lstsq(keys, vals).solution  # (d, d): the best possible linear d x d state
    return {"n": n, "softmax_kv_cache": rel(soft), "additive_state": rel(keys @ S),
            "elu_linear_attention": rel(elu), "best_dxd_state": rel(keys @ best)}


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


def plot(stream_rows, recall_rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans",
                         "font.size": 9, "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3))
    ax = axes[0]
    t = [r["tokens"] for r in stream_rows]
    ax.loglog(t, [r["kv_cache_bytes"] / 2**10 for r in stream_rows], "o-", color="#d62728", ms=4,
              label="softmax attention: KV cache")
    ax.loglog(t, [r["linear_state_bytes"] / 2**10 for r in stream_rows], "s-", color="#1f77b4", ms=4,
              label="linear attention: state (S, z)")
    ax.set_xticks(t, [str(v) for v in t])
    ax.minorticks_off()
    ax.set_xlabel("tokens streamed")
    ax.set_ylabel("memory kept (KiB), one layer")
    ax.set_title("state size vs stream length", fontsize=9)
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax = axes[1]
    n = [r["n"] for r in recall_rows]
    for key, fmt, color, label in (("softmax_kv_cache", "o-", "#d62728", "softmax over KV cache"),
                                   ("additive_state", "s-", "#1f77b4", "linear state Σ k vᵀ"),
                                   ("best_dxd_state", "^--", "#2ca02c", f"best {D}×{D} linear state")):
        ax.plot(n, [r[key] for r in recall_rows], fmt, color=color, ms=4, label=label)
    ax.axvline(D, color="0.5", lw=0.8, ls=":")
    ax.text(D * 1.06, 1.6, f"n = d = {D}", fontsize=8, color="0.35", rotation=90, va="center")
    ax.set_xscale("log", base=2)
    ax.set_xticks(n, [str(v) for v in n])
    ax.minorticks_off()
    ax.set_ylim(-0.05, 3.0)
    ax.set_xlabel("key-value pairs stored, n")
    ax.set_ylabel("relative recall error")
    ax.set_title("recall: query each stored key", fontsize=9)
    ax.grid(True, color="0.9", lw=0.6)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
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
    torch.set_num_threads(1)  # token-by-token loops of tiny ops: extra threads only add sync overhead

    # 1) Recurrent == parallel causal form.
    err = {}
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        q, k, v = (torch.randn(B, H, 128, D, device=dev, dtype=dtype) for _ in range(3))  # (B, H, T, d) each
        y_rec, _ = linear_attention_recurrent(q, k, v)
        y_par = linear_attention_parallel(q, k, v)
        torch.testing.assert_close(y_rec, y_par, rtol=tol, atol=tol)
        err[str(dtype).removeprefix("torch.")] = (y_rec - y_par).abs().max().item()

    # 2) Stream: state after T tokens, updated chunk by chunk (same sums), vs the KV cache a
    #    softmax layer would keep for the same stream.
    T_max = STREAM_LENGTHS[-1]
    q, k, v = (torch.randn(B, H, T_max, D, device=dev) for _ in range(3))  # (B, H, T, d) each
    _, (S_tok, z_tok) = linear_attention_recurrent(q[:, :, :CHUNK], k[:, :, :CHUNK], v[:, :, :CHUNK])
    S = torch.zeros(B, H, D, D, device=dev)  # (B, H, d, d)
    z = torch.zeros(B, H, D, device=dev)  # (B, H, d)
    k_cache, v_cache = [], []
    stream_rows = []
    for start in range(0, T_max, CHUNK):
        kc, vc = k[:, :, start:start + CHUNK], v[:, :, start:start + CHUNK]  # (B, H, CHUNK, d) each
        S = S + phi(kc).transpose(-2, -1) @ vc  # (B, H, d, d): sum of CHUNK outer products
        z = z + phi(kc).sum(2)  # (B, H, d)
        if start == 0:
            torch.testing.assert_close(S, S_tok, rtol=1e-5, atol=1e-4)  # chunked == token by token
            torch.testing.assert_close(z, z_tok, rtol=1e-5, atol=1e-4)
        k_cache.append(kc)
        v_cache.append(vc)
        n = start + CHUNK
        if n in STREAM_LENGTHS:
            K, V = torch.cat(k_cache, dim=2), torch.cat(v_cache, dim=2)  # (B, H, n, d) each
            k_cache, v_cache = [K], [V]
            stream_rows.append({"tokens": n, "linear_state_bytes": S.nbytes + z.nbytes,
                                "kv_cache_bytes": K.nbytes + V.nbytes,
                                "linear_state_kib": (S.nbytes + z.nbytes) / 2**10,
                                "kv_cache_kib": (K.nbytes + V.nbytes) / 2**10})
    # The streamed state still gives the right output for the last token (vs the parallel form).
    y_last = (phi(q[:, :, -1])[..., None, :] @ S)[..., 0, :] / (phi(q[:, :, -1]) * z).sum(-1, keepdim=True)  # (B, H, d)
    a = phi(q[:, :, -1:]) @ phi(k).transpose(-2, -1)  # (B, H, 1, T): only the last row of the T x T matrix
    ref_last = ((a @ v) / a.sum(-1, keepdim=True))[:, :, 0]  # (B, H, d)
    torch.testing.assert_close(y_last, ref_last, rtol=1e-4, atol=1e-4)
    sizes = {r["tokens"]: r for r in stream_rows}
    assert len({r["linear_state_bytes"] for r in stream_rows}) == 1, "linear-attention state size should not change"
    for r in stream_rows:
        assert r["kv_cache_bytes"] == 2 * B * H * r["tokens"] * D * 4, "KV cache should be 2 B H T d fp32 values"
    first, last = stream_rows[0], stream_rows[-1]
    assert last["kv_cache_bytes"] / first["kv_cache_bytes"] == last["tokens"] / first["tokens"], "KV cache: linear"

    # 3) Recall: softmax over a KV cache vs a fixed d x d state.
    gen = torch.Generator().manual_seed(SEED)
    recall_rows = [recall_errors(n, D, gen) for n in RECALL_NS]
    rec = {str(r["n"]): r for r in recall_rows}
    big = rec[str(4 * D)]
    assert all(r["softmax_kv_cache"] < 0.05 for r in recall_rows), "sharp softmax over the cache should recall"
    assert rec[str(D)]["best_dxd_state"] < 1e-8, "n = d independent pairs fit a d x d state exactly"
    assert big["best_dxd_state"] > 0.5 and big["additive_state"] > 0.5, "n = 4d pairs cannot fit"
    assert rec[str(RECALL_NS[0])]["additive_state"] < big["additive_state"], "crosstalk should grow with n"
    small = rec[str(RECALL_NS[0])]
    assert small["additive_state"] > 0.1, f"the additive state should already blur at n = {RECALL_NS[0]}: {small}"
    assert all(r["best_dxd_state"] < 1e-8 for r in recall_rows if r["n"] <= D), "n <= d pairs fit a d x d state exactly"
    assert small["elu_linear_attention"] > small["additive_state"], f"elu+1 should blur more at n = {small['n']}: {small}"

    results = {"machine": machine_info() | {"device": dev},
               "config": {"batch": B, "heads": H, "head_dim": D, "chunk": CHUNK, "sharp_scale": SHARP},
               "max_abs_err_recurrent_vs_parallel": err,
               "stream": stream_rows, "by_tokens": {str(t): r for t, r in sizes.items()},
               "state_over_kv_at_max": last["linear_state_bytes"] / last["kv_cache_bytes"],
               "kv_equals_state_at_tokens": (D * D + D) / (2 * D),  # T where 2 T d == d^2 + d, per head
               "recall": recall_rows, "recall_by_n": rec,
               "recall_softmax_max_err": max(r["softmax_kv_cache"] for r in recall_rows)}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(stream_rows, recall_rows, OUT / "state_and_recall.svg")

    print(f"linear attention, B={B} H={H} d={D}")
    print(f"recurrent vs parallel causal form: max |diff| {err['float64']:.1e} (float64), "
          f"{err['float32']:.1e} (float32)")
    print(f"{'tokens':>7} {'linear state KiB':>17} {'KV cache KiB':>13}")
    for r in stream_rows:
        print(f"{r['tokens']:>7} {r['linear_state_bytes'] / 2**10:>17.1f} {r['kv_cache_bytes'] / 2**10:>13.1f}")
    print(f"recall of n stored pairs (relative error; the state holds {D}x{D} numbers per head):")
    print(f"{'n':>5} {'softmax+KV cache':>17} {'state sum k v^T':>16} {'elu+1 lin. attn':>16} {'best dxd state':>15}")
    for r in recall_rows:
        print(f"{r['n']:>5} {r['softmax_kv_cache']:>17.3f} {r['additive_state']:>16.3f} "
              f"{r['elu_linear_attention']:>16.3f} {r['best_dxd_state']:>15.3f}")


if __name__ == "__main__":
    main()
