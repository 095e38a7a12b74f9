"""A fix: activation checkpointing trades extra forward compute for lower peak training memory.

Backpropagation needs the intermediate activations of every layer, so a
plain forward pass keeps all of them alive until the backward pass. With
torch.utils.checkpoint each layer keeps only its input; its internals are
recomputed during the backward pass.

The script trains one step (forward + backward) of a stack of
nn.TransformerEncoderLayer with and without checkpointing and measures the
peak memory of each in its own fresh process (forkserver; peak RSS via
/proc/self/clear_refs and VmHWM), the time of each (medians, interleaved in
one process), and the extra matmul FLOPs (FlopCounterMode). It checks that
the gradients are identical.

Run from the repo root:  python snippets/problems/07_high_memory_footprint/checkpointing.py
"""
# build: exclusive
import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop
from torch.utils.flop_counter import FlopCounterMode

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
LAYERS, D_MODEL, HEADS, D_FF = 16, 64, 4, 256
B, T = 2, 256  # batch, sequence length
MODES = ("plain", "checkpointed")
# Matrices this small gain nothing from a second thread, and on a busy machine two threads
# wait on each other at every op (seen: over 100 s instead of 5 with two other processes).
THREADS = 1


def make_stack(device):
    """The same seeded stack of encoder layers for every mode."""
    torch.manual_seed(SEED)
    layer = lambda: nn.TransformerEncoderLayer(D_MODEL, HEADS, D_FF, dropout=0.0, batch_first=True,  # noqa: E731
                                               norm_first=True)
    return nn.ModuleList(layer() for _ in range(LAYERS)).to(device)


# --8<-- [start:core]
def train_step(layers, x, use_checkpoint):
    # x: (B, T, d_model)
    for layer in layers:
        if use_checkpoint:
            # Keep only this layer's input; recompute its internals in the backward pass.
            x = checkpoint(layer, x, use_reentrant=False)  # (B, T, d_model)
        else:
            x = layer(x)  # (B, T, d_model); every intermediate is kept for backward
    loss = x.float().pow(2).mean()
    loss.backward()
    return loss
# --8<-- [end:core]


def _proc_status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    raise KeyError(field)


def peak_memory_case(mode, device):
    """Runs in a fresh forkserver child: peak memory above baseline of one forward + backward."""
    torch.set_num_threads(THREADS)
    layers = make_stack(device)
    torch.manual_seed(SEED + 1)
    x = torch.randn(B, T, D_MODEL, device=device)  # (B, T, d_model)
    # A short warm-up step allocates the .grad tensors and loads kernels; its own
    # activations (T=16) are too small to hide the real case.
    train_step(layers, x[:, :16], mode == "checkpointed")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_step(layers, x, mode == "checkpointed")
        torch.cuda.synchronize()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - base, "mem_method": "torch.cuda.max_memory_allocated"}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
        base = _proc_status_kib("VmRSS")
        train_step(layers, x, mode == "checkpointed")
        return {"peak_bytes": (_proc_status_kib("VmHWM") - base) * 1024, "mem_method": "VmHWM after clear_refs"}
    except OSError:  # not Linux: lifetime peak, less precise
        base = _proc_status_kib("VmRSS") * 1024 if Path("/proc/self/status").exists() else 0
        train_step(layers, x, mode == "checkpointed")
        scale = 1 if sys.platform == "darwin" else 1024
        return {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale - base,
                "mem_method": "ru_maxrss fallback"}


def machine_info(device):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": device}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    dev = args.device
    torch.set_num_threads(THREADS)
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)

    # 1) Peak memory, each mode in its own fresh process.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch"])
    with ctx.Pool(1, maxtasksperchild=1) as pool:  # a fresh process per task
        mem = {m: pool.apply(peak_memory_case, (m, dev)) for m in MODES}

    # 2) Same gradients, and the matmul FLOPs of each mode.
    torch.manual_seed(SEED + 1)
    x = torch.randn(B, T, D_MODEL, device=dev)  # (B, T, d_model)
    grads, flops, losses = {}, {}, {}
    for m in MODES:
        layers = make_stack(dev)
        with FlopCounterMode(display=False) as counter:
            losses[m] = train_step(layers, x, m == "checkpointed").item()
        flops[m] = counter.get_total_flops()
        grads[m] = [p.grad.clone() for p in layers.parameters()]
    # By default non-reentrant checkpoint stops recomputing as soon as it has every
    # tensor backward needs; switched off, it reruns each layer's whole forward.
    layers = make_stack(dev)
    with set_checkpoint_early_stop(False), FlopCounterMode(display=False) as counter:
        train_step(layers, x, True)
    flops["checkpointed_no_early_stop"] = counter.get_total_flops()
    max_grad_diff = max((a - b).abs().max().item() for a, b in zip(grads["plain"], grads["checkpointed"]))
    for a, b in zip(grads["plain"], grads["checkpointed"]):
        torch.testing.assert_close(b, a, rtol=0, atol=0)  # bit-identical: the recomputation is the same maths
    assert losses["plain"] == losses["checkpointed"]

    # 3) Time: both modes interleaved in this process, median of repeats after a warm-up. On the
    # CPU (one thread) this thread's CPU time, which other processes on a busy machine do not inflate.
    clock = time.thread_time if dev == "cpu" else time.perf_counter
    layers = {m: make_stack(dev) for m in MODES}
    times = {m: [] for m in MODES}
    for r in range(1 + 5):
        for m in MODES:
            for p in layers[m].parameters():
                p.grad = None
            t0 = clock()
            train_step(layers[m], x, m == "checkpointed")
            sync()
            if r > 0:
                times[m].append(clock() - t0)

    plain_mib, ckpt_mib = (mem[m]["peak_bytes"] / 2**20 for m in MODES)
    plain_ms, ckpt_ms = (statistics.median(times[m]) * 1e3 for m in MODES)
    act_unit_mib = B * T * D_MODEL * 4 / 2**20  # one (B, T, d_model) fp32 tensor
    results = {
        "machine": machine_info(dev),
        "config": {"layers": LAYERS, "d_model": D_MODEL, "heads": HEADS, "d_ff": D_FF, "batch": B, "seq_len": T,
                   "dtype": "float32", "memory_method": mem["plain"]["mem_method"],
                   "timing": "median of 5 after 1 warm-up, both modes interleaved in one process"
                   + (", thread CPU time" if dev == "cpu" else ""),
                   "params": sum(p.numel() for p in layers["plain"].parameters())},
        "peak_mib": {"plain": plain_mib, "checkpointed": ckpt_mib, "saving_ratio": plain_mib / ckpt_mib,
                     "one_layer_input_mib": act_unit_mib,
                     "plain_per_layer_mib": plain_mib / LAYERS},
        "time_ms": {"plain": plain_ms, "checkpointed": ckpt_ms, "ratio": ckpt_ms / plain_ms,
                    "repeats": len(times["plain"])},
        "matmul_flops": {"plain": flops["plain"], "checkpointed": flops["checkpointed"],
                         "ratio": flops["checkpointed"] / flops["plain"],
                         "checkpointed_no_early_stop": flops["checkpointed_no_early_stop"],
                         "ratio_no_early_stop": flops["checkpointed_no_early_stop"] / flops["plain"]},
        "max_abs_grad_diff": max_grad_diff,
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"{LAYERS} x nn.TransformerEncoderLayer(d={D_MODEL}, heads={HEADS}, ff={D_FF}), batch {B}, T={T}, fp32, "
          f"one forward + backward")
    print(f"{'':<14} {'peak MiB':>9} {'ms/step':>8} {'matmul GFLOP':>13}")
    for m, mib, ms in (("plain", plain_mib, plain_ms), ("checkpointed", ckpt_mib, ckpt_ms)):
        print(f"{m:<14} {mib:>9.1f} {ms:>8.1f} {flops[m] / 1e9:>13.2f}")
    print(f"checkpointing: {results['peak_mib']['saving_ratio']:.1f}x less peak memory, "
          f"{results['time_ms']['ratio']:.2f}x the time, {results['matmul_flops']['ratio']:.2f}x the matmul FLOPs")
    print(f"without early stop (whole forward recomputed): {results['matmul_flops']['ratio_no_early_stop']:.3f}x "
          f"the matmul FLOPs")
    print(f"gradients: bit-identical (max |diff| = {max_grad_diff:.1e})")
    print(f"machine: {results['machine']['cpu']}, {results['machine']['torch_threads']} torch thread{'' if results['machine']['torch_threads'] == 1 else 's'}, "
          f"torch {results['machine']['torch']}; peak = {mem['plain']['mem_method']}")

    assert plain_mib > 2.0 * ckpt_mib, f"checkpointing should cut peak memory well below half: {plain_mib:.0f} vs {ckpt_mib:.0f} MiB"
    # Matmul FLOPs: forward F, backward 2F. Recomputing the whole forward adds F: ratio 4/3.
    if dev == "cpu":  # (on CPU FlopCounterMode counts the matmuls only; SDPA is not counted there)
        assert abs(results["matmul_flops"]["ratio_no_early_stop"] - 4 / 3) < 1e-3, "full recompute should add F"
    assert 1.1 < results["matmul_flops"]["ratio"] < results["matmul_flops"]["ratio_no_early_stop"] + 1e-9, \
        "early stop should recompute part, not all, of the forward"
    assert results["time_ms"]["ratio"] > 1.05, "checkpointing should cost extra time"


if __name__ == "__main__":
    main()
