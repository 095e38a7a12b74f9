"""A tiny trained model's attention maps, attention rollout and gradient x input.

Task ("find the token equal to the query"): 10 distinct token ids, then a
query id that equals one of them; the model must output the POSITION of the
match. A 2-layer Pre-LN transformer (nn.MultiheadAttention, 2 heads, d=32)
learns it in 200 Adam steps. On 1000 held-out sequences the script then
computes, for the prediction made at the query position,
  * raw attention of each layer (query row, heads averaged),
  * attention rollout (Abnar & Zuidema 2020): R = prod_l (A_l + I) / 2,
  * gradient x input: (d logit_target / d e_i) . e_i for each input embedding,
and checks which of them put their largest score (query position excluded)
on the matching token, the one token that decides the answer. A
deletion test gives the ground truth: swap the token a method ranks first for
an id absent from the sequence and see how much the probability of the
model's answer drops.

Run from the repo root:  python snippets/problems/15_poor_interpretability/attribution.py
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
VOCAB, T, D, H, LAYERS = 16, 10, 32, 2, 2
S = T + 1  # 10 context tokens + the query
STEPS, BATCH, LR, N_TEST = 200, 128, 3e-3, 1000


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn = nn.MultiheadAttention(D, H, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))

    def forward(self, x):  # (B, S, d)
        h = self.ln1(x)
        a, w = self.attn(h, h, h, need_weights=True, average_attn_weights=False)  # (B, S, d), (B, H, S, S)
        x = x + a
        return x + self.mlp(self.ln2(x)), w


class Finder(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        self.pos = nn.Parameter(0.5 * torch.randn(S, D))  # learned positions (S, d)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm, self.head = nn.LayerNorm(D), nn.Linear(D, T)

    def embed(self, ids):
        return self.tok(ids) + self.pos  # (B, S, d)

    def forward(self, emb):  # emb: (B, S, d) input embeddings
        maps = []
        for block in self.blocks:
            emb, w = block(emb)
            maps.append(w)  # (B, H, S, S)
        return self.head(self.norm(emb[:, -1])), maps  # logits over positions (B, T), maps


def make_batch(n, gen, device):
    ids = torch.rand(n, VOCAB, generator=gen).argsort(dim=1)[:, :T]  # (n, T) distinct ids
    where = torch.randint(0, T, (n,), generator=gen)  # (n,) position of the match
    x = torch.cat([ids, ids[torch.arange(n), where][:, None]], dim=1)  # (n, S): query copied to the end
    return x.to(device), where.to(device)


def train(device):
    torch.manual_seed(SEED)
    model = Finder().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        x, y = make_batch(BATCH, gen, device)
        loss = F.cross_entropy(model(model.embed(x))[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


# --8<-- [start:core]
def rollout(maps):
    """Abnar & Zuidema's rollout: average heads, add the residual as identity, multiply layers."""
    eye = torch.eye(maps[0].shape[-1], device=maps[0].device)  # (S, S)
    r = eye
    for w in maps:  # layer 1 first
        a = 0.5 * w.mean(1) + 0.5 * eye  # (B, S, S), rows still sum to 1
        r = a @ r  # (B, S, S): how much each input position reaches each position
    return r[:, -1]  # (B, S): the query position's row


def grad_x_input(model, x, target):
    """(d logit_target / d e_i) . e_i, summed over the d features of each input embedding."""
    emb = model.embed(x).detach().requires_grad_(True)  # (B, S, d)
    logits, _ = model(emb)  # (B, T)
    logits.gather(1, target[:, None]).sum().backward()
    return (emb.grad * emb).sum(-1).detach()  # (B, S)
# --8<-- [end:core]


def deletion_drop(model, x, target, positions, gen):
    """Drop in p(target) when the token at `positions` is replaced by an id absent from the sequence."""
    with torch.no_grad():
        p0 = model(model.embed(x))[0].softmax(-1).gather(1, target[:, None])[:, 0]  # (B,)
        present = torch.zeros(len(x), VOCAB, dtype=torch.bool, device=x.device).scatter_(1, x, True)  # (B, V)
        score = torch.rand(len(x), VOCAB, generator=gen).to(x.device).masked_fill(present, -1.0)
        absent = score.argmax(1)  # (B,): a random id not in the sequence
        x2 = x.clone()
        x2[torch.arange(len(x)), positions] = absent
        p1 = model(model.embed(x2))[0].softmax(-1).gather(1, target[:, None])[:, 0]
    return (p0 - p1).mean().item()


def how_often(a, b):
    """'as often as' / 'more often than' / 'less often than' for two hit rates over the same N_TEST sequences."""
    if abs(a - b) < 0.5 / N_TEST:  # hit rates are multiples of 1 / N_TEST
        return "as often as"
    return "more often than" if a > b else "less often than"


def verdicts(hit):
    """The page's sentence comparing one layer's raw map with the attribution methods, written from the rates."""
    raw = hit["layer1_attention"]
    return {"raw_vs_methods": (
        f"the raw layer-1 map picked the match in {raw:.1%} of the sequences, "
        f"{how_often(raw, hit['rollout'])} rollout ({hit['rollout']:.1%}) and "
        f"{how_often(raw, hit['grad_x_input_abs'])} |gradient × input| ({hit['grad_x_input_abs']:.1%})")}


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


def plot(x, y, maps, roll, gxi, i, disagree, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "transformer-problems", "font.family": "DejaVu Sans", "font.size": 9,
                         "figure.facecolor": "white", "axes.facecolor": "white",
                         "savefig.facecolor": "white", "savefig.transparent": False})
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), gridspec_kw={"width_ratios": [1, 1, 1.35]})
    labels = [str(t) for t in x[i].tolist()]
    labels[-1] = f"q={labels[-1]}"
    match = int(y[i])
    for l, ax in enumerate(axes[:2]):
        ax.imshow(maps[l][i].mean(0).cpu().numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"layer {l + 1} attention (heads averaged)", fontsize=9)
        ax.set_xticks(range(S), labels, fontsize=7, rotation=90)
        ax.set_yticks(range(S), labels, fontsize=7)
        ax.set_xlabel("key (token id)")
        ax.set_ylabel("query (token id)")
        ax.add_patch(plt.Rectangle((match - 0.5, S - 1.5), 1, 1, fill=False, ec="#d62728", lw=1.5))
    ax = axes[2]
    g = gxi[i].abs() / gxi[i].abs().sum()
    pos = torch.arange(S)
    ax.bar((pos - 0.2).tolist(), roll[i].tolist(), width=0.4, color="#1f77b4", label="rollout (query row)")
    ax.bar((pos + 0.2).tolist(), g.tolist(), width=0.4, color="#ff7f0e", label="|grad × input|, normalised")
    ax.axvspan(match - 0.5, match + 0.5, color="#d62728", alpha=0.12, lw=0, zorder=0)
    ax.set_xticks(range(S), labels, fontsize=7)
    ax.set_xlabel("input token (red band: the match)")
    ax.set_ylabel("share of relevance")
    ax.set_title("attributions for the answer" + (" (a sequence where they disagree)" if disagree else ""),
                 fontsize=9)
    ax.legend(fontsize=7.5, frameon=False, loc="upper left")
    ax.grid(True, axis="y", color="0.9", lw=0.6)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args()
    dev = args.device
    OUT.mkdir(parents=True, exist_ok=True)

    model = train(dev)
    x, y = make_batch(N_TEST, torch.Generator().manual_seed(2), dev)
    with torch.no_grad():
        logits, maps = model(model.embed(x))
    pred = logits.argmax(-1)  # (B,)
    roll = rollout(maps)  # (B, S)
    torch.testing.assert_close(roll.sum(-1), torch.ones(N_TEST, device=dev))  # rollout rows stay distributions
    gxi = grad_x_input(model, x, pred)  # explain the model's own answer
    scores = {"layer1_attention": maps[0].mean(1)[:, -1], "layer2_attention": maps[1].mean(1)[:, -1],
              "rollout": roll, "grad_x_input_abs": gxi.abs(), "grad_x_input_signed": gxi}
    top = {k: v[:, :T].argmax(-1) for k, v in scores.items()}  # best context position (query excluded)
    hit = {k: (t == y).float().mean().item() for k, t in top.items()}
    gen = torch.Generator().manual_seed(3)
    drop = {k: deletion_drop(model, x, pred, top[k], gen) for k in ("rollout", "grad_x_input_abs",
                                                                  "grad_x_input_signed")}
    drop["the_match"] = deletion_drop(model, x, pred, y, gen)
    disagree = (top["rollout"] != top["grad_x_input_abs"])
    g_share = gxi.abs() / gxi.abs().sum(-1, keepdim=True)  # (B, S)
    rows = torch.arange(N_TEST, device=dev)
    hit_abs, hit_signed = top["grad_x_input_abs"] == y, top["grad_x_input_signed"] == y  # (B,) each
    match_negative = gxi[rows, y] < 0  # (B,): the match's own signed attribution is negative
    lost_by_sign = hit_abs & ~hit_signed  # found by |grad x input|, missed by the signed version
    results = {"machine": {**machine_info(), "device": dev},
               "config": {"vocab": VOCAB, "context": T, "d_model": D, "heads": H, "layers": LAYERS, "steps": STEPS,
                          "batch": BATCH, "lr": LR, "test": N_TEST, "seed": SEED},
               "accuracy": (pred == y).float().mean().item(), "finds_match": hit,
               "deletion_drop": drop, "disagree_rate": disagree.float().mean().item(),
               "rollout_right_when_disagree": (top["rollout"] == y)[disagree].float().mean().item(),
               "match_negative_share": match_negative.float().mean().item(),
               "lost_by_sign": {"share": lost_by_sign.float().mean().item(),
                                "match_negative": match_negative[lost_by_sign].float().mean().item()},
               "query_self_share": {"rollout": roll[:, -1].mean().item(), "grad_x_input_abs": g_share[:, -1].mean().item()},
               "match_share": {"rollout": roll[torch.arange(N_TEST), y].mean().item(),
                               "grad_x_input_abs": g_share[torch.arange(N_TEST), y].mean().item()},
               "grad_x_input_signed_mean": {"query": gxi[:, -1].mean().item(),
                                            "match": gxi[torch.arange(N_TEST), y].mean().item()}}
    i = int(disagree.nonzero()[0]) if disagree.any() else 0
    results["plotted_example"] = {"index": i, "disagree": bool(disagree[i]),
                                  "grad_x_input_query_share": g_share[i, -1].item(),
                                  "rollout_top2_are_match_and_query":
                                      set(roll[i].topk(2).indices.tolist()) == {int(y[i]), S - 1}}
    results["verdicts"] = verdicts(hit)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    plot(x, y, maps, roll, gxi, i, bool(disagree[i]), OUT / "attribution.svg")

    print(f"trained {STEPS} steps; held-out accuracy {results['accuracy']:.3f} on {N_TEST} sequences")
    print(f"{'method':<22} {'top token = match':>18} {'p(answer) drop if top token deleted':>37}")
    for k in scores:
        d = f"{drop[k]:>37.3f}" if k in drop else f"{'':>37}"
        print(f"{k:<22} {hit[k]:>18.3f} {d}")
    print(f"{'(deleting the match)':<22} {'':>18} {drop['the_match']:>37.3f}")
    print(f"rollout and |grad x input| pick different tokens in {results['disagree_rate']:.1%} of sequences")
    print(f"where they disagree, rollout picked the match in {results['rollout_right_when_disagree']:.1%}; "
          f"the match's signed grad x input is negative in {results['match_negative_share']:.1%} of sequences")
    print(f"so: {results['verdicts']['raw_vs_methods']}")
    print(f"share on the query token itself: rollout {results['query_self_share']['rollout']:.2f}, "
          f"|grad x input| {results['query_self_share']['grad_x_input_abs']:.2f}; "
          f"on the match: {results['match_share']['rollout']:.2f} / {results['match_share']['grad_x_input_abs']:.2f}")

    # The claims the page makes.
    assert results["accuracy"] > 0.95, "the model should have learned the task"
    assert hit["rollout"] > 0.95, "rollout should point at the matching token"
    assert hit["grad_x_input_abs"] > 0.6, "|grad x input| should usually point at the matching token"
    assert hit["rollout"] > hit["grad_x_input_abs"] + 0.03, "gradient x input should miss more often than rollout"
    assert drop["the_match"] > 0.5, "deleting the match should destroy the answer (it is the decisive token)"
    assert drop["rollout"] > drop["grad_x_input_abs"], "rollout's pick should matter more when deleted"
    assert abs(drop["rollout"] - drop["the_match"]) < 0.05, "deleting rollout's pick should hurt as much as the match"
    assert results["disagree_rate"] > 0.03, "the two methods should disagree on some sequences"
    assert results["rollout_right_when_disagree"] > 0.9, "where they disagree, the misses should be grad x input's"
    assert hit["grad_x_input_abs"] > hit["grad_x_input_signed"] + 0.05, "the signed version should find the match less"
    assert results["lost_by_sign"]["match_negative"] > 0.9, \
        "where only the signed version misses, the match's own attribution should be negative"
    q_share = results["query_self_share"]
    assert q_share["grad_x_input_abs"] > results["match_share"]["grad_x_input_abs"], \
        "|grad x input| should put more mass on the query than on the match"
    assert q_share["rollout"] >= 0.25 - 1e-6, "rollout's identity terms alone give the query (1/2)^2"
    pe = results["plotted_example"]
    assert pe["disagree"] and pe["grad_x_input_query_share"] > 0.5, "the plotted sequence: most of it on the query"
    assert pe["rollout_top2_are_match_and_query"], "the figure: rollout's two largest scores are the match and the query"


if __name__ == "__main__":
    main()
