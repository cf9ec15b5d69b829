"""The floor of one training step of the full profile's model on this CPU: the operations its maths
cannot skip, each timed alone (median of 15 runs): the decoder's three products (forward, and the
gradients of its input and weight) at the padded width and rows train() uses, the encoder's products (forward and
two in backward), the softmax over the vocabulary and the fused AdamW update.

    python benchmarks/step_floor.py

Compare with benchmarks/bench_train.py, which times the whole step; docs/speed.md has both.
"""

import statistics
import sys
import time

import torch
from hw3.fused_loss import padded_width
from hw3.hparams import profile_defaults
from hw3.train import build_model, make_optimizer

VOCABULARY = 28_782


def median_ms(work, reps: int = 15) -> float:
    """Median milliseconds of work() after two warm-up runs."""
    work()
    work()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    torch.manual_seed(0)
    hp = profile_defaults("full")
    rows, d, hidden, bf16 = hp.bptt * hp.batch_size, hp.emsize, hp.nhid, torch.bfloat16
    width = padded_width(d + 1)
    h, w = torch.randn(rows, width, dtype=bf16), torch.randn(VOCABULARY, width, dtype=bf16)
    g, logits = torch.randn(rows, VOCABULARY, dtype=bf16), torch.empty(rows, VOCABULARY, dtype=bf16)
    decoder = median_ms(lambda: torch.mm(h, w.t(), out=logits))
    # the weight's gradient sums over the rows padded with zeros to whole tiles, as train() does
    padded_rows = padded_width(rows)
    g_padded, h_padded = (
        torch.randn(padded_rows, VOCABULARY, dtype=bf16),
        torch.randn(padded_rows, width, dtype=bf16),
    )
    decoder += median_ms(lambda: g_padded.t() @ h_padded) + median_ms(lambda: g @ w)
    x = torch.randn(rows, d, dtype=bf16)
    qkv, out = torch.randn(3 * d, d, dtype=bf16), torch.randn(d, d, dtype=bf16)
    ffn1, ffn2 = torch.randn(hidden, d, dtype=bf16), torch.randn(d, hidden, dtype=bf16)
    heads = hp.batch_size * hp.nhead
    q = torch.randn(heads, hp.bptt, d // hp.nhead, dtype=bf16)
    scores = torch.randn(heads, hp.bptt, hp.bptt, dtype=bf16)

    def layer():
        return (x @ qkv.t(), x @ out.t(), x @ ffn1.t(), x @ ffn2.t(), q @ q.transpose(1, 2), scores @ q)

    encoder = 3 * hp.nlayers * median_ms(layer)  # forward, and two products each in backward
    softmax = median_ms(lambda: torch.ops.aten._softmax.out(logits, 1, False, out=logits))
    model = build_model(VOCABULARY, hp)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer = make_optimizer(model, hp)
    adamw = median_ms(optimizer.step)
    floor = decoder + encoder + softmax + adamw
    print(
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}"
    )
    print(f"decoder products {decoder:.1f} ms, encoder products {encoder:.1f} ms, softmax {softmax:.1f} ms, "
          f"AdamW {adamw:.1f} ms: floor {floor:.1f} ms a batch")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
