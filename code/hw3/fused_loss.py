"""The fast training path: the model's decoder and ``nn.CrossEntropyLoss`` evaluated together.

The decoder (``nn.Linear(emsize, ntokens)``, 28,782 words) and the softmax over its output dominate a
training step. ``linear_cross_entropy`` computes exactly ``F.cross_entropy(hidden @ W.T + b, targets)``
(mean over tokens) and its gradients, but:
  - in row chunks, so the ``[tokens, ntokens]`` logits are never held in fp32 at once (less memory
    traffic, which is what costs on a CPU),
  - the gradient of the loss is computed in the forward pass, while the chunk is in cache (the loss is the
    last operation of the graph, so nothing is recomputed in backward),
  - the matrix products run in ``compute_dtype`` (bf16 where the hardware has it, as autocast would), the
    softmax and the loss in fp32.
``hidden_states`` is ``TransformerModel.forward`` without its last line (the decoder).
"""

import math

import torch
from torch import Tensor


def hidden_states(model, src: Tensor, src_mask: Tensor | None) -> Tensor:
    """``TransformerModel.forward`` up to (not including) the decoder: ``[seq_len, batch, emsize]``."""
    src = model.encoder(src) * math.sqrt(model.ninp)
    src = model.pos_encoder(src)
    return model.transformer_encoder(src, src_mask)


class LinearCrossEntropy(torch.autograd.Function):
    """``mean(cross_entropy(hidden @ weight.T + bias, targets))`` with the gradient computed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, compute_dtype, chunk_rows):
        n_rows = hidden.shape[0]
        h = hidden.to(compute_dtype)
        w = weight.to(compute_dtype)
        needs_grad = any(ctx.needs_input_grad[:3])
        grad_shape = (n_rows if needs_grad else 0, weight.shape[0])
        grad_logits = torch.empty(grad_shape, dtype=compute_dtype, device=hidden.device)
        grad_bias = torch.zeros(weight.shape[0], dtype=torch.float32, device=hidden.device)
        loss_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n_rows, chunk_rows):
            stop = min(start + chunk_rows, n_rows)
            target = targets[start:stop].unsqueeze(1)
            logits = torch.addmm(bias.to(compute_dtype), h[start:stop], w.t())
            # one fused kernel, computed in fp32 row by row while the row is in cache
            probs = torch.softmax(logits, dim=1, dtype=torch.float32)
            # -log p(target); p is clamped at the smallest normal float (a loss of 87 nats per token)
            loss_sum -= probs.gather(1, target).clamp_min(torch.finfo(torch.float32).tiny).log().sum()
            if needs_grad:
                # d loss_sum / d logits = softmax(logits) - one_hot(target)
                # (in fp32: scatter and sum on a bf16 tensor would convert the whole chunk twice)
                probs.scatter_add_(1, target, probs.new_full(target.shape, -1.0))
                grad_bias += probs.sum(dim=0)
                grad_logits[start:stop] = probs
        loss = loss_sum / n_rows
        ctx.n_rows = n_rows
        ctx.save_for_backward(h, w, grad_logits, grad_bias)
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        h, w, grad_logits, grad_bias = ctx.saved_tensors
        hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
        scale = grad_loss.float() / ctx.n_rows
        grad_hidden = grad_weight = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_hidden = (grad_logits @ w).float().mul_(scale).to(hidden_dtype)
        if ctx.needs_input_grad[1]:  # the scale is folded into the small operand
            grad_weight = (grad_logits.t() @ (h * scale.to(h.dtype))).to(weight_dtype)
        if ctx.needs_input_grad[2]:
            grad_b = grad_bias.mul(scale).to(bias_dtype)
        return grad_hidden, grad_weight, grad_b, None, None, None


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor,
    targets: Tensor,
    compute_dtype: torch.dtype = torch.float32,
    chunk_rows: int = 128,
) -> Tensor:
    """``F.cross_entropy(F.linear(hidden, weight, bias), targets)`` without materialising fp32 logits.

    ``hidden`` is ``[tokens, emsize]``, ``weight`` ``[ntokens, emsize]``, ``targets`` ``[tokens]``; the
    matrix products run in ``compute_dtype``, the softmax and the loss in fp32.
    """
    return LinearCrossEntropy.apply(hidden, weight, bias, targets, compute_dtype, chunk_rows)
