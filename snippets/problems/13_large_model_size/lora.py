"""A fix for fine-tuning: LoRA trains a low-rank update B @ A next to a frozen weight.

A LoRA layer computes W x + (alpha / r) * B A x with W frozen, A (r x in)
random and B (out x r) zero at the start, so training begins exactly at the
pretrained model and only r * (in + out) numbers per adapted matrix are
trained. After training, W + (alpha / r) B A can be merged into one ordinary
Linear, so inference costs nothing extra.

The script checks: with B = 0 the LoRA layer equals the frozen base layer;
training moves only A and B (the base weight stays bit-identical) and fits a
low-rank change of the layer; the merged Linear equals the LoRA forward. It
also computes the trainable fraction for published models and compares
GPT-3's with the LoRA paper.

Run from the repo root:  python snippets/problems/13_large_model_size/lora.py
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
D_IN, D_OUT, RANK, ALPHA = 256, 256, 8, 16
TRUE_RANK, STEPS = 4, 300

# GPT-3 175B: 96 layers, d_model 12288 (Brown et al. 2020, arXiv:2005.14165, Table 2.1). The LoRA paper
# (Hu et al. 2021, arXiv:2106.09685, Table 4) reports 175,255.8M trainable parameters for full fine-tuning
# and 4.7M and 37.7M for its two LoRA runs on GPT-3.
GPT3 = {"layers": 96, "d": 12288, "full": 175_255.8e6, "paper_lora": [4.7e6, 37.7e6]}
# LLaMA-2-7B: 32 layers, d_model 4096 (LLaMA, arXiv:2302.13971, Table 2); 6,738,415,616 parameters
# (counted in param_counts.py).
LLAMA7B = {"layers": 32, "d": 4096, "full": 6_738_415_616}


# --8<-- [start:core]
class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)  # the pretrained weight is frozen
        self.A = nn.Parameter(torch.empty(r, base.in_features))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # random, like a fresh Linear
        self.B = nn.Parameter(torch.zeros(base.out_features, r))  # zero: the update starts at exactly 0
        self.scale = alpha / r

    def forward(self, x):  # x: (..., in)
        return self.base(x) + self.scale * (x @ self.A.T) @ self.B.T  # (..., r) -> (..., out)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """One plain Linear with W + (alpha / r) B A: no extra inference cost."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        out.weight.copy_(self.base.weight + self.scale * self.B @ self.A)  # (out, r) @ (r, in) -> (out, in)
        if self.base.bias is not None:
            out.bias.copy_(self.base.bias)
        return out


def lora_params(layers, d_model, r, matrices=2):
    """Trainable numbers for rank-r adapters on `matrices` d x d projections per layer (W_q, W_v)."""
    return layers * matrices * r * (d_model + d_model)
# --8<-- [end:core]


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
    torch.manual_seed(SEED)
    dev = args.device

    base = nn.Linear(D_IN, D_OUT).to(dev)  # stands in for a pretrained projection
    w_before = base.weight.detach().clone()
    lora = LoRALinear(base, RANK, ALPHA).to(dev)
    x_test = torch.randn(512, D_IN, device=dev)  # (N, in)

    # 1) At initialisation LoRA is the base layer, exactly.
    with torch.no_grad():
        init_equal = torch.equal(lora(x_test), base(x_test))
    assert init_equal, "with B = 0 the LoRA layer must equal the frozen base layer"

    # 2) Fine-tune: the target is the base layer plus a rank-4 change.
    delta = (torch.randn(D_OUT, TRUE_RANK, device=dev) @ torch.randn(TRUE_RANK, D_IN, device=dev)) / D_IN  # (out, in)
    target = lambda x: base(x) + x @ delta.T  # noqa: E731
    trainable = [p for p in lora.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=1e-2)
    with torch.no_grad():
        loss_start = F.mse_loss(lora(x_test), target(x_test)).item()
    for _ in range(STEPS):
        x = torch.randn(128, D_IN, device=dev)  # (N, in)
        loss = F.mse_loss(lora(x), target(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        loss_end = F.mse_loss(lora(x_test), target(x_test)).item()
    assert base.weight.grad is None and torch.equal(base.weight, w_before), "the base weight must not change"
    assert loss_end < 0.01 * loss_start, f"LoRA should fit a rank-{TRUE_RANK} change: {loss_start:.3g} -> {loss_end:.3g}"

    # 3) Merge and compare.
    merged = lora.merged().to(dev)
    with torch.no_grad():
        y_lora, y_merged = lora(x_test), merged(x_test)
    torch.testing.assert_close(y_merged, y_lora, rtol=1e-5, atol=1e-5)
    merge_err = (y_merged - y_lora).abs().max().item()

    # 4) Trainable fractions.
    n_train = sum(p.numel() for p in trainable)
    n_total = sum(p.numel() for p in lora.parameters())
    assert n_train == RANK * (D_IN + D_OUT)
    gpt3 = {f"r{r}": {"trainable": lora_params(GPT3["layers"], GPT3["d"], r),
                      "fraction": lora_params(GPT3["layers"], GPT3["d"], r) / GPT3["full"]} for r in (1, 8)}
    for (key, row), paper in zip(gpt3.items(), GPT3["paper_lora"]):
        row["paper"] = paper
        assert round(row["trainable"] / 1e5) == round(paper / 1e5), f"{key}: {row['trainable']:,} vs {paper:,.0f}"
    llama = {"trainable": lora_params(LLAMA7B["layers"], LLAMA7B["d"], 8)}
    llama["fraction"] = llama["trainable"] / LLAMA7B["full"]

    results = {"machine": machine_info(dev),
               "config": {"d_in": D_IN, "d_out": D_OUT, "rank": RANK, "alpha": ALPHA, "true_rank": TRUE_RANK,
                          "steps": STEPS},
               "init_equal": init_equal, "loss": {"start": loss_start, "end": loss_end,
                                                  "reduction": loss_start / loss_end},
               "merge_max_abs_err": merge_err,
               "toy_layer": {"trainable": n_train, "total": n_total, "fraction": n_train / n_total},
               "gpt3_qv": gpt3, "llama2_7b_qv_r8": llama,
               "gpt3_full_over_lora_r1": GPT3["full"] / gpt3["r1"]["trainable"]}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"LoRA on Linear({D_IN}, {D_OUT}), r={RANK}, alpha={ALPHA}")
    print(f"  B = 0 at init: LoRA output == base output exactly: {init_equal}")
    print(f"  fitting a rank-{TRUE_RANK} change in {STEPS} steps: MSE {loss_start:.3e} -> {loss_end:.3e}; "
          f"base weight unchanged")
    print(f"  merged W + (alpha/r) B A vs LoRA forward: max |diff| = {merge_err:.1e}")
    print(f"  trainable {n_train:,} of {n_total:,} numbers in this layer ({n_train / n_total:.1%})")
    for key, row in gpt3.items():
        print(f"GPT-3 175B, {key} on W_q and W_v: {row['trainable']:,} trainable ({row['fraction']:.4%} of "
              f"{GPT3['full'] / 1e6:,.1f}M); LoRA paper Table 4: {row['paper'] / 1e6:.1f}M")
    print(f"LLaMA-2-7B, r8 on W_q and W_v: {llama['trainable']:,} trainable ({llama['fraction']:.3%})")


if __name__ == "__main__":
    main()
