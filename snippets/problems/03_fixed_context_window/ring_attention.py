"""A fix: ring attention, exact attention over a sequence split across 4 processes.

Each of P = 4 processes (ranks) holds one block of T/P positions of Q, K and V.
At each of P steps a rank scores its queries against the K/V block it holds,
folds the result into a running (max, sum, output) with the online softmax,
and passes that K/V block to the next rank while receiving one from the
previous rank (torch.distributed, gloo backend, isend/irecv). After P steps
every query has seen every key, but no rank ever held more than one K/V block
from another rank, nor more than a (T/P) x (T/P) tile of scores.

The gathered output is checked against F.scaled_dot_product_attention on the
full sequence, causal and non-causal. Workers start with the "forkserver" method
(a plain fork after torch ran a parallel op can hang).

Run from the repo root:  python snippets/problems/03_fixed_context_window/ring_attention.py
"""
# build: exclusive
import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
P = 4  # processes in the ring
B, H, T, D = 1, 4, 512, 32  # batch, heads, full sequence length, head dim; each rank holds T/P positions


def make_qkv(device):
    """The full sequence, identical in every process (same seed)."""
    g = torch.Generator().manual_seed(SEED)
    return [torch.randn(B, H, T, D, generator=g).to(device) for _ in range(3)]  # (B, H, T, d) each


# --8<-- [start:core]
def ring_attention(q, k, v, rank, world, causal):
    """q, k, v: this rank's block, (B, H, T/P, d). Returns this block's attention output."""
    Tb, scale = q.shape[-2], 1 / math.sqrt(q.shape[-1])
    m = torch.full(q.shape[:-1], float("-inf"), device=q.device)  # (B, H, Tb): running row max
    l = torch.zeros(q.shape[:-1], device=q.device)  # (B, H, Tb): running softmax denominator
    acc = torch.zeros_like(q)  # (B, H, Tb, d): running un-normalised output
    kv = torch.stack([k, v])  # (2, B, H, Tb, d): the block that travels around the ring
    for step in range(world):
        src = (rank - step) % world  # which rank's positions this K/V block covers
        if step < world - 1:  # start passing the block on while we compute with it
            nxt = torch.empty_like(kv)
            reqs = [dist.isend(kv, (rank + 1) % world), dist.irecv(nxt, (rank - 1) % world)]
        if not (causal and src > rank):  # causal: blocks from later positions are fully masked
            s = (q @ kv[0].transpose(-2, -1)) * scale  # (B, H, Tb, Tb): one tile, never T x T
            if causal and src == rank:  # the diagonal tile: mask j > i inside the block
                s = s.masked_fill(torch.ones(Tb, Tb, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
            m_new = torch.maximum(m, s.amax(-1))  # (B, H, Tb)
            p = torch.exp(s - m_new[..., None])  # (B, H, Tb, Tb)
            fix = torch.exp(m - m_new)  # (B, H, Tb): rescale what was accumulated so far
            l = l * fix + p.sum(-1)  # (B, H, Tb)
            acc = acc * fix[..., None] + p @ kv[1]  # (B, H, Tb, d)
            m = m_new
        if step < world - 1:
            for r in reqs:
                r.wait()
            kv = nxt
    return acc / l[..., None]  # (B, H, Tb, d)
# --8<-- [end:core]


def worker(rank, world, port, results, launched_at):
    """One process of the ring (top level so that the forkserver child can import it)."""
    started = time.time() - launched_at  # process start, measured from the parent's start()
    t_start = time.perf_counter()
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    t_init = time.perf_counter()
    q, k, v = (t.chunk(world, dim=2)[rank].contiguous() for t in make_qkv("cpu"))  # (B, H, T/P, d) each
    outs = {}
    for causal in (False, True):
        dist.barrier()
        t0 = time.perf_counter()
        outs[causal] = ring_attention(q, k, v, rank, world, causal).numpy()  # (B, H, T/P, d)
        outs[f"seconds_{causal}"] = time.perf_counter() - t0
    results.put({"rank": rank, "out": {c: outs[c] for c in (False, True)},
                 "ring_seconds": {"full": outs["seconds_False"], "causal": outs["seconds_True"]},
                 "startup_seconds": started, "init_seconds": t_init - t_start,
                 "block_bytes": 2 * k.numel() * k.element_size()})
    dist.barrier()
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # port 0: the OS picks a free one
        return s.getsockname()[1]


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
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="the ring runs on CPU (gloo); the reference on --device")
    ap.add_argument("--start-method", default="forkserver", choices=["forkserver", "spawn"],
                    help="how the ranks start; spawn imports torch once per rank (slower)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    t0 = time.perf_counter()
    # forkserver: one clean server process imports torch once, then forks a rank per request.
    # (Plain fork of this process could hang once torch has started its thread pool;
    # "spawn" also works but starts P interpreters that each import torch.)
    ctx = mp.get_context(args.start_method)
    if args.start_method == "forkserver":
        ctx.set_forkserver_preload(["torch", "torch.distributed"])
    results = ctx.Queue()
    port = free_port()
    launched_at = time.time()
    procs = [ctx.Process(target=worker, args=(r, P, port, results, launched_at)) for r in range(P)]
    for p in procs:
        p.start()
    got = sorted((results.get(timeout=120) for _ in range(P)), key=lambda r: r["rank"])
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0, f"rank process exited with {p.exitcode}"
    wall = time.perf_counter() - t0

    # Check: the blocks, put back in order, equal SDPA over the whole sequence.
    q, k, v = make_qkv(args.device)  # (B, H, T, d) each
    err = {}
    for causal in (False, True):
        ring = torch.cat([torch.from_numpy(r["out"][causal]) for r in got], dim=2).to(args.device)  # (B, H, T, d)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, T, d)
        torch.testing.assert_close(ring, ref, rtol=1e-4, atol=1e-5)
        err["causal" if causal else "full"] = (ring - ref).abs().max().item()
    assert err["causal"] < 1e-4 and err["full"] < 1e-4
    # And it is not trivially equal: causal and full attention really differ.
    assert not torch.allclose(F.scaled_dot_product_attention(q, k, v, is_causal=True),
                              F.scaled_dot_product_attention(q, k, v), atol=1e-3)

    Tb = T // P
    block_bytes = got[0]["block_bytes"]
    results_json = {
        "machine": machine_info() | {"device": args.device, "ring_backend": "gloo", "start_method": args.start_method},
        "config": {"processes": P, "batch": B, "heads": H, "seq_len": T, "head_dim": D, "block_len": Tb},
        "max_abs_err": err,
        "per_rank": {"kv_blocks_received": P - 1, "kv_bytes_sent": (P - 1) * block_bytes,
                     "score_tile": [Tb, Tb], "score_floats_per_head_tile": Tb * Tb,
                     "full_score_floats_per_head": T * T},
        "timing": {"total_wall_s": wall,
                   "max_startup_s": max(r["startup_seconds"] for r in got),
                   "max_init_s": max(r["init_seconds"] for r in got),
                   "max_ring_full_s": max(r["ring_seconds"]["full"] for r in got),
                   "max_ring_causal_s": max(r["ring_seconds"]["causal"] for r in got)},
    }
    (OUT / "results.json").write_text(json.dumps(results_json, indent=2))

    print(f"{P} processes ({args.start_method}, gloo), B={B} H={H} T={T} d={D}: each rank holds {Tb} positions of Q, K, V")
    print(f"ring vs SDPA on the full sequence: max |diff| {err['full']:.1e} (full), {err['causal']:.1e} (causal)")
    print(f"per rank: {P - 1} K/V blocks received, {(P - 1) * block_bytes / 1024:.0f} KiB sent, "
          f"score tile {Tb}x{Tb} instead of {T}x{T}")
    tm = results_json["timing"]
    print(f"wall {wall:.1f} s in all: starting {P} processes took up to {tm['max_startup_s']:.1f} s, "
          f"gloo init {tm['max_init_s']:.2f} s, the ring itself {tm['max_ring_full_s'] * 1e3:.0f} ms (full) / "
          f"{tm['max_ring_causal_s'] * 1e3:.0f} ms (causal)")
    m = results_json["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}")


if __name__ == "__main__":
    main()
