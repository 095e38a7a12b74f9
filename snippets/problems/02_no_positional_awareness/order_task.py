"""See it in training: without positions, a word-order task stays at exactly 50%.

Task: a sequence of 8 distinct tokens contains token A and token B somewhere;
predict whether A comes before B. Swapping A and B flips the label but keeps
the same set of tokens, so a model that cannot see order must give both the
same output: on a test set of such pairs it gets exactly half right, however
long it trains. The same small transformer with sinusoidal, learned or rotary
positions learns the task in a few seconds of training, and so does the model
without positions once its one attention layer has a causal mask.

Run from the repo root:  python snippets/problems/02_no_positional_awareness/order_task.py
"""
# build: measures=time  (reports the training time)
import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
V, T = 16, 8  # vocabulary (token 0 = A, token 1 = B), sequence length
E, HEADS, LAYERS = 32, 4, 1
STEPS, BATCH, LR = 150, 64, 1e-2
N_TEST = 1000  # test pairs (each sequence and its A<->B swap)


def make_batch(n, gen):
    """n sequences of T distinct tokens that contain A (=0) and B (=1); label: A before B."""
    others = torch.rand(n, V - 2, generator=gen).argsort(dim=1)[:, : T - 2] + 2  # (n, T-2) distinct fillers
    tokens = torch.cat([torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long), others], 1)  # (n, T)
    order = torch.rand(n, T, generator=gen).argsort(dim=1)  # (n, T) random positions
    x = tokens.gather(1, order)  # (n, T) shuffled
    pos_a, pos_b = (x == 0).float().argmax(1), (x == 1).float().argmax(1)  # (n,) each
    return x, (pos_a < pos_b).float()


def sinusoidal(n_pos, dim):
    pos = torch.arange(n_pos, dtype=torch.float32)[:, None]  # (n_pos, 1)
    freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)  # (dim/2,)
    pe = torch.zeros(n_pos, dim)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe  # (n_pos, dim)


def rope(x, base=10000.0):
    """x: (B, H, T, d); rotates each pair (x[2i], x[2i+1]) by pos * base^(-2i/d)."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d)  # (d/2,)
    angle = torch.arange(x.shape[-2], dtype=torch.float32, device=x.device)[:, None] * theta  # (T, d/2)
    cos, sin = angle.cos(), angle.sin()
    xe, xo = x[..., 0::2], x[..., 1::2]  # (B, H, T, d/2) each
    return torch.stack((xe * cos - xo * sin, xe * sin + xo * cos), -1).flatten(-2)  # (B, H, T, d)


class Block(nn.Module):
    def __init__(self, use_rope, causal=False):
        super().__init__()
        self.use_rope, self.causal = use_rope, causal
        self.norm1, self.norm2 = nn.LayerNorm(E), nn.LayerNorm(E)
        self.qkv, self.proj = nn.Linear(E, 3 * E), nn.Linear(E, E)
        self.mlp = nn.Sequential(nn.Linear(E, 2 * E), nn.GELU(), nn.Linear(2 * E, E))

    def forward(self, h):  # h: (B, T, E)
        B, T_, _ = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(B, T_, 3, HEADS, E // HEADS).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, d)
        if self.use_rope:
            q, k = rope(q), rope(k)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal).transpose(1, 2).reshape(B, T_, E)  # (B, T, E)
        h = h + self.proj(a)
        return h + self.mlp(self.norm2(h))


# --8<-- [start:core]
class Classifier(nn.Module):
    """Embedding (+ position signal) -> transformer block(s) -> mean pool -> logit."""

    def __init__(self, position, causal=False):  # position: "none" | "sinusoidal" | "learned" | "rope"
        super().__init__()
        self.position = position
        self.embed = nn.Embedding(V, E)
        self.pos_table = nn.Parameter(0.02 * torch.randn(T, E)) if position == "learned" else None
        self.register_buffer("sin_table", sinusoidal(T, E))  # (T, E)
        self.blocks = nn.ModuleList(Block(use_rope=position == "rope", causal=causal) for _ in range(LAYERS))
        self.head = nn.Linear(E, 1)

    def forward(self, x):  # x: (B, T) token ids
        h = self.embed(x)  # (B, T, E)
        if self.position == "sinusoidal":
            h = h + self.sin_table
        elif self.position == "learned":
            h = h + self.pos_table
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(dim=1)).squeeze(-1)  # (B,) logits


def train_and_test(position, device, causal=False):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = Classifier(position, causal).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    for _ in range(STEPS):
        x, y = make_batch(BATCH, gen)
        loss = F.binary_cross_entropy_with_logits(model(x.to(device)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Test on pairs: each sequence and the same sequence with A and B swapped.
    x, y = make_batch(N_TEST, torch.Generator().manual_seed(SEED + 1))
    x_swap = torch.where(x == 0, 1, torch.where(x == 1, 0, x))  # (N, T): A <-> B, label flips
    with torch.no_grad():
        logit, logit_swap = model(x.to(device)).cpu(), model(x_swap.to(device)).cpu()
    right, right_swap = (logit > 0).float() == y, (logit_swap > 0).float() == 1 - y  # (N,) each
    correct = torch.cat([right, right_swap])
    return {"accuracy": correct.float().mean().item(),
            "pairs_exactly_one_right": (right != right_swap).float().mean().item(),
            "max_pair_logit_gap": (logit - logit_swap).abs().max().item(), "final_loss": loss.item()}
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
    dev = ap.parse_args().device
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # a model this small trains faster on one thread than with thread sync

    # Sanity: the data generator's labels are balanced and A/B swapping flips them.
    x, y = make_batch(2000, torch.Generator().manual_seed(123))
    assert 0.4 < y.mean().item() < 0.6, "labels should be roughly balanced"
    assert ((x == 0).sum(1) == 1).all() and ((x == 1).sum(1) == 1).all(), "A and B appear exactly once"

    results = {"machine": {**machine_info(), "device": dev},
               "config": {"vocab": V, "seq_len": T, "embed_dim": E, "heads": HEADS, "layers": LAYERS,
                          "steps": STEPS, "batch": BATCH, "lr": LR, "test_pairs": N_TEST},
               "runs": {}}
    t0 = time.perf_counter()
    for position in ("none", "sinusoidal", "learned", "rope"):
        results["runs"][position] = train_and_test(position, dev)
    # No positions, but a causal mask (as in a decoder): token t attends only to tokens 0..t.
    results["runs"]["none_causal"] = train_and_test("none", dev, causal=True)
    results["train_seconds_total"] = time.perf_counter() - t0
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"'does A come before B?'  {STEPS} steps x {BATCH} sequences of {T} tokens; "
          f"test: {N_TEST} sequences + their A<->B swaps")
    print(f"{'position signal':<16} {'test accuracy':>13} {'max |logit(x) - logit(swap x)|':>32}")
    for name, r in results["runs"].items():
        label = "none, causal" if name == "none_causal" else name
        print(f"{label:<16} {r['accuracy']:>13.3f} {r['max_pair_logit_gap']:>32.2e}")

    runs = results["runs"]
    # The claims the page makes.
    assert runs["none"]["max_pair_logit_gap"] < 1e-4, "no positions: x and its swap must get the same logit"
    assert runs["none"]["pairs_exactly_one_right"] == 1.0, "no positions: exactly one of each pair can be right"
    assert abs(runs["none"]["accuracy"] - 0.5) < 1e-9, "no positions: so the accuracy is exactly one half"
    for name in ("sinusoidal", "learned", "rope", "none_causal"):
        assert runs[name]["accuracy"] > 0.9, f"{name}: should learn the order task, got {runs[name]['accuracy']:.3f}"


if __name__ == "__main__":
    main()
