"""The attention of one encoder layer of the full profile, by each of torch's CPU kernels: time and error.

    python benchmarks/attention_kernels.py [--repeats N]

The shapes and layout are those `nn.MultiheadAttention` hands to `scaled_dot_product_attention` in
train(): batch 20, 2 heads, 35 positions, 125 values a head, causal, q, k and v views of one packed
projection. For each kernel it prints the median forward and backward time (ms, one layer) and the mean
error of the output against the same attention in float64 from the same bf16 inputs:

- "flash, bf16": torch's default on a CPU under bf16 autocast,
- "math, bf16": `sdpa_kernel(SDPBackend.MATH)`, what train() runs on a CPU in bf16 (attention_kernel):
  torch's math kernel computes bf16 attention in fp32 and rounds the output once,
- "flash, fp32 inputs": the flash kernel on the same inputs cast to fp32 (the output cast back),
- "flash, fp32 model": the flash kernel when the whole model runs in fp32 (no casts), for reference.
"""

import argparse
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BATCH, HEADS, POSITIONS, WIDTH = 20, 2, 35, 250


def packed_qkv(dtype: torch.dtype) -> list[torch.Tensor]:
    """q, k, v as nn.MultiheadAttention makes them: views of one [positions, batch, 3 * width] tensor."""
    torch.manual_seed(0)
    packed = torch.randn(POSITIONS, BATCH, 3 * WIDTH).to(dtype)
    packed = packed.view(POSITIONS, BATCH, 3, HEADS, WIDTH // HEADS)
    return [packed[:, :, i].permute(1, 2, 0, 3).detach().requires_grad_() for i in range(3)]


def attention(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, None, 0.0, True)


def fp32_inputs(q, k, v):
    return attention(q.float(), k.float(), v.float()).to(q.dtype)


def measure(function, dtype, repeats: int, math_kernel: bool = False) -> tuple[float, float, float]:
    """Median forward and backward ms, and the output's mean error against float64."""
    q, k, v = packed_qkv(dtype)
    exact = attention(q.double(), k.double(), v.double())
    forward, backward = [], []
    for i in range(repeats + 10):  # 10 warm-up rounds
        with sdpa_kernel(SDPBackend.MATH) if math_kernel else nullcontext():
            start = time.perf_counter()
            out = function(q, k, v)
        middle = time.perf_counter()
        out.backward(torch.ones_like(out))
        end = time.perf_counter()
        if i >= 10:
            forward.append(middle - start)
            backward.append(end - middle)
    error = (out.detach().double() - exact).abs().mean().item()
    return statistics.median(forward) * 1e3, statistics.median(backward) * 1e3, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=70)
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)  # as train() runs
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{torch.backends.cpu.get_cpu_capability()}; one layer: batch {BATCH}, {HEADS} heads, "
          f"{POSITIONS} positions, causal; medians of {args.repeats}")  # fmt: skip
    rows = [
        ("flash, bf16", attention, torch.bfloat16, False),
        ("math, bf16 (train())", attention, torch.bfloat16, True),
        ("flash, fp32 inputs", fp32_inputs, torch.bfloat16, False),
        ("flash, fp32 model", attention, torch.float32, False),
    ]
    for name, function, dtype, math_kernel in rows:
        forward, backward, error = measure(function, dtype, args.repeats, math_kernel)
        print(f"{name:22s} forward {forward:5.2f} ms  backward {backward:5.2f} ms  "
              f"total {forward + backward:5.2f} ms  mean |error| {error:.2e}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
