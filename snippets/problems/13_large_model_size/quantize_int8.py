"""A fix: dynamic int8 quantization stores Linear weights in 8 bits instead of 32.

torch.ao.quantization.quantize_dynamic replaces every nn.Linear with a
version whose weight is int8 (one scale per tensor) and whose input is
quantized on the fly. The script trains a small transformer classifier on
scikit-learn's digits (8 x 8 images read as 8 tokens of 8 pixels), quantizes
it, and measures what changes: the serialized state_dict size, the logits and
the test accuracy.

Run from the repo root:  python snippets/problems/13_large_model_size/quantize_int8.py
"""
import argparse
import io
import json
import math
import os
import platform
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits

OUT = Path(os.environ.get("SNIPPET_OUT", Path(__file__).stem + "_out"))
SEED = 0
D_MODEL, HEADS, D_FF, LAYERS = 96, 4, 192, 2
EPOCHS, BATCH, LR = 8, 64, 3e-3


class Block(nn.Module):
    def __init__(self, d, heads, d_ff):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ff1, self.ff2 = nn.Linear(d, d_ff), nn.Linear(d_ff, d)

    def forward(self, x):  # x: (B, T, d)
        b, t, d = x.shape
        h = self.ln1(x)
        q, k, v = (p(h).view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q, self.k, self.v))  # (B, H, T, dh) each
        a = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, dh)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))  # (B, H, T, dh) -> (B, T, H, dh) -> (B, T, d)
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class DigitTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, D_MODEL)  # one image row (8 pixels) -> one token
        self.pos = nn.Parameter(torch.randn(8, D_MODEL) * 0.02)
        self.blocks = nn.Sequential(*[Block(D_MODEL, HEADS, D_FF) for _ in range(LAYERS)])
        self.ln = nn.LayerNorm(D_MODEL)
        self.cls = nn.Linear(D_MODEL, 10)

    def forward(self, img):  # img: (B, 8, 8) = (B, T rows, 8 pixels)
        x = self.embed(img) + self.pos  # (B, T, d)
        return self.cls(self.ln(self.blocks(x)).mean(dim=1))  # (B, 10)


# --8<-- [start:core]
def serialized_bytes(model):
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)  # what you would ship or load
    return buf.getbuffer().nbytes


def tensor_bytes(state):
    """Bytes of tensor data in a state_dict, by dtype, and how many tensors hold them (nested tuples too)."""
    by_dtype, count = {}, 0
    stack = list(state.values())
    while stack:
        v = stack.pop()
        if isinstance(v, (tuple, list)):
            stack.extend(v)  # a quantized Linear stores (int8 weight, fp32 bias) as one tuple
        elif isinstance(v, torch.Tensor):
            key = str(v.dtype).removeprefix("torch.")
            by_dtype[key] = by_dtype.get(key, 0) + v.numel() * v.element_size()
            count += 1
    return by_dtype, count


def quantize_int8(model):
    # Every nn.Linear -> int8 weights; activations are quantized per batch at run time.
    # (Deprecated in torch.ao in favour of the torchao package; still shipped and working here.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
# --8<-- [end:core]


def machine_info(device):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": device,
            "quantized_engine": torch.backends.quantized.engine}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="training device; int8 dynamic quantization itself runs on CPU")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (1797, 8, 8), pixels in [0, 1]
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SEED))
    test_idx, train_idx = perm[:360], perm[360:]

    model = DigitTransformer().to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    steps_per_epoch = math.ceil(len(train_idx) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=EPOCHS * steps_per_epoch)
    for epoch in range(EPOCHS):
        order = train_idx[torch.randperm(len(train_idx))]
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            loss = F.cross_entropy(model(x[idx].to(args.device)), y[idx].to(args.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model = model.cpu().eval()

    qmodel = quantize_int8(model)
    with torch.no_grad():
        logits_fp32 = model(x[test_idx])  # (360, 10)
        logits_int8 = qmodel(x[test_idx])  # (360, 10)
    acc_fp32 = (logits_fp32.argmax(-1) == y[test_idx]).float().mean().item()
    acc_int8 = (logits_int8.argmax(-1) == y[test_idx]).float().mean().item()
    rel_err = ((logits_int8 - logits_fp32).norm() / logits_fp32.norm()).item()
    agree = (logits_int8.argmax(-1) == logits_fp32.argmax(-1)).float().mean().item()
    size_fp32, size_int8 = serialized_bytes(model), serialized_bytes(qmodel)
    # Where the bytes go: tensor data by dtype, and the rest of the file (torch.save writes a zip archive,
    # one record per tensor plus the pickled description of the state_dict).
    data_fp32, tensors_fp32 = tensor_bytes(model.state_dict())
    data_int8, tensors_int8 = tensor_bytes(qmodel.state_dict())
    n_params = sum(p.numel() for p in model.parameters())
    n_linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    n_quantized = sum(1 for m in qmodel.modules() if type(m).__name__ == "Linear" and "quantized" in type(m).__module__)
    n_linears = sum(1 for m in model.modules() if isinstance(m, nn.Linear))

    n_other = n_params - n_linear  # biases, layer norms, position table: not nn.Linear weights
    breakdown = {
        "fp32": {"tensor_data": sum(data_fp32.values()), "by_dtype": data_fp32, "tensors": tensors_fp32,
                 "file": size_fp32, "overhead": size_fp32 - sum(data_fp32.values())},
        "int8": {"tensor_data": sum(data_int8.values()), "by_dtype": data_int8, "tensors": tensors_int8,
                 "file": size_int8, "overhead": size_int8 - sum(data_int8.values()),
                 "linear_weights_int8": n_linear, "kept_fp32": 4 * n_other,
                 "scales_and_zero_points": sum(data_int8.values()) - n_linear - 4 * n_other}}
    for b in breakdown.values():
        b["overhead_per_tensor"] = b["overhead"] / b["tensors"]
        b["overhead_share"] = b["overhead"] / b["file"]
    breakdown["tensor_data_ratio"] = breakdown["fp32"]["tensor_data"] / breakdown["int8"]["tensor_data"]

    results = {"machine": machine_info(args.device),
               "config": {"d_model": D_MODEL, "heads": HEADS, "d_ff": D_FF, "layers": LAYERS, "epochs": EPOCHS,
                          "train": len(train_idx), "test": len(test_idx)},
               "params": {"all": n_params, "in_linear_weights": n_linear, "linear_share": n_linear / n_params},
               "linears_quantized": n_quantized, "linears": n_linears,
               "size_bytes": {"fp32": size_fp32, "int8": size_int8, "ratio": size_fp32 / size_int8},
               "size_breakdown": breakdown,
               "accuracy": {"fp32": acc_fp32, "int8": acc_int8, "drop": acc_fp32 - acc_int8},
               "logits": {"relative_error": rel_err, "max_abs_error": (logits_int8 - logits_fp32).abs().max().item(),
                          "argmax_agreement": agree}}
    (OUT / "results.json").write_text(json.dumps(results, indent=2))

    print(f"digits transformer: {LAYERS} blocks, d={D_MODEL}, {n_params:,} parameters "
          f"({n_linear / n_params:.0%} in nn.Linear weights), trained {EPOCHS} epochs on {len(train_idx)} images")
    print(f"quantize_dynamic replaced {n_quantized} of {n_linears} nn.Linear modules (engine {torch.backends.quantized.engine})")
    print(f"{'':<6} {'state_dict bytes':>16} {'test accuracy':>13}")
    print(f"{'fp32':<6} {size_fp32:>16,} {acc_fp32:>13.3f}")
    print(f"{'int8':<6} {size_int8:>16,} {acc_int8:>13.3f}")
    print(f"size: {size_fp32 / size_int8:.2f}x smaller; logits relative error {rel_err:.4f}; "
          f"same predicted class on {agree:.1%} of test images")
    bf, bq = breakdown["fp32"], breakdown["int8"]
    print(f"tensor data: fp32 {bf['tensor_data']:,} B; int8 {bq['tensor_data']:,} B = {n_linear:,} int8 weights "
          f"+ {4 * n_other:,} B kept in fp32 + {bq['scales_and_zero_points']} B of scales and zero points "
          f"({breakdown['tensor_data_ratio']:.2f}x smaller)")
    print(f"file format: fp32 {bf['overhead']:,} B over {bf['tensors']} tensors ({bf['overhead_per_tensor']:.0f} B each), "
          f"int8 {bq['overhead']:,} B over {bq['tensors']} tensors ({bq['overhead_per_tensor']:.0f} B each)")

    assert acc_fp32 > 0.9, f"the fp32 model should have learned the task (accuracy {acc_fp32:.3f})"
    assert n_quantized == n_linears, "every nn.Linear should be quantized"
    assert size_fp32 / size_int8 > 3.0, "int8 weights should cut the file by more than 3x (4x minus overhead)"
    # The page's account of the ratio, byte for byte: fp32 holds 4 bytes per parameter; int8 holds one byte per
    # nn.Linear weight, 4 per other parameter, and a float32 scale and an int64 zero point per quantized layer.
    assert bf["tensor_data"] == 4 * n_params and data_fp32 == {"float32": 4 * n_params}, data_fp32
    assert bq["scales_and_zero_points"] == n_linears * (4 + 8), data_int8
    assert 3.5 < breakdown["tensor_data_ratio"] < 4, "the fp32 leftovers alone should leave the ratio short of 4"
    assert breakdown["tensor_data_ratio"] - size_fp32 / size_int8 > 0.2, "the file format should cost visibly more"
    # each quantized Linear stores four tensors (weight, bias, scale, zero point) where nn.Linear stores two
    assert bq["tensors"] - bf["tensors"] == 2 * n_linears, (bf["tensors"], bq["tensors"])
    assert rel_err < 0.05, f"int8 logits should stay within 5% of fp32, got {rel_err:.3f}"
    assert acc_fp32 - acc_int8 <= 0.02, "quantization should cost at most 2 points of accuracy"


if __name__ == "__main__":
    main()
