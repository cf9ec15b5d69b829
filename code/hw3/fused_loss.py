"""The decoder and `nn.CrossEntropyLoss` evaluated together (train()'s decoder_cross_entropy).

The decoder (`nn.Linear(emsize, ntokens)`, 28,782 words) and the softmax over its output dominate
a training step. `linear_cross_entropy` computes exactly
`F.cross_entropy(hidden @ W.T + b, targets)` (mean over tokens) and its gradients, but:
  - the logits are written into the gradient buffer and turned there, in place, into
    `softmax - one_hot(target)`: the gradient of the loss is computed in the forward pass (the
    loss is the last operation of the graph, so nothing is recomputed in backward) and fp32 logits
    are never held. Rows go in chunks of up to 700, a training batch's 35 x 20 tokens: one
    product of 700 rows took 14.5 ms here, two of 350 16.7 ms (2-core Xeon with AMX),
  - into buffers reused from step to step (`Workspace`): a fresh 40 MB tensor per step costs
    ~10,000 page faults on a CPU (glibc hands big blocks back to the kernel on free), more than the
    softmax itself,
  - the matrix products run in `compute_dtype` (bf16 where the hardware has it, as autocast
    would); the softmax is computed in fp32 and stored in `compute_dtype`, the gradient's
    precision under autocast. The loss is `-log p(target)` from those stored probabilities: in
    bf16 each token's loss carries a rounding error below 0.002 nats, unbiased, so a batch's mean
    loss is accurate to ~1e-4 nats.
`hidden_states` is `TransformerModel.forward` without its last line (the decoder);
`decoder_cross_entropy` is the two completed lines of train() computed by these two functions.
"""

import math
import weakref

import torch
from torch import Tensor


def hidden_states(model, src: Tensor, src_mask: Tensor | None) -> Tensor:
    """`TransformerModel.forward` up to (not including) the decoder:
    `[seq_len, batch, emsize]`."""
    src = model.encoder(src) * math.sqrt(model.ninp)
    src = model.pos_encoder(src)
    return model.transformer_encoder(src, src_mask)


class Workspace:
    """Buffers reused across training steps,
    lent out until the backward pass that needs them has run.

    `borrow` hands out a cached tensor of the asked shape, or a fresh one while the cached one is
    still lent (e.g. two forward passes before one backward): a lent buffer is never overwritten. A
    backward pass run twice (`retain_graph=True`) with another forward pass in between is
    not supported.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, Tensor] = {}
        self._lent: set[tuple] = set()

    def borrow(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device):
        """`(tensor, key)`: pass `key` to `give_back` when the tensor may be reused."""
        key = (name, dtype, str(device))
        numel = math.prod(shape)
        if key in self._lent:
            return torch.empty(shape, dtype=dtype, device=device), None
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            buffer = self._buffers[key] = torch.empty(numel, dtype=dtype, device=device)
        self._lent.add(key)
        return buffer[:numel].view(shape), key

    def give_back(self, *keys) -> None:
        """Mark borrowed buffers as free again (`None` keys, of unshared tensors, are ignored)."""
        for key in keys:
            self._lent.discard(key)


WORKSPACE = Workspace()
IN_PLACE_SOFTMAX_DEVICES = ("cpu",)  # where the softmax may overwrite its input (tested on the CPU)


def padded_width(size: int, multiple: int = 32) -> int:
    """size rounded up to a multiple of `multiple`: bf16 matrix products whose inner size is a
    multiple of 32 run on whole AMX tiles (measured here: the decoder's forward product 1.8x as fast
    at 256 columns as at 250, the weight's gradient 1.2x at 704 rows as at 700)."""
    return -(-size // multiple) * multiple


class LinearCrossEntropy(torch.autograd.Function):
    """`mean(cross_entropy(hidden @ weight.T + bias, targets))` with the
    gradient computed in forward.

    The bias rides in the matrix product as one more column: `[hidden, 1, 0...] @ [weight, bias,
    0...].T`, padded to a multiple of 32 columns (padded_width). The logits then need no separate
    pass to add the bias, and in backward one product gives the gradients of the weight and of the
    bias (its last column is the column sums of the logits' gradient)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, compute_dtype, chunk_rows):
        n_rows, n_classes = hidden.shape[0], weight.shape[0]
        width = hidden.shape[1]
        padded = padded_width(width + 1)
        device = hidden.device
        needs_grad = any(ctx.needs_input_grad[:3])
        # rows of zeros up to a multiple of 32: the weight's gradient sums over the rows
        padded_rows = padded_width(n_rows) if needs_grad else n_rows
        keys = []
        # [hidden, 1, 0...] and [weight, bias, 0...] in compute_dtype, kept for backward
        h, key = WORKSPACE.borrow("hidden", (padded_rows, padded), compute_dtype, device)
        keys.append(key)
        h[:n_rows, :width].copy_(hidden)
        h[:n_rows, width] = 1.0
        h[:n_rows, width + 1 :] = 0.0
        h[n_rows:] = 0.0
        w, key = WORKSPACE.borrow("weight", (n_classes, padded), compute_dtype, device)
        keys.append(key)
        w[:, :width].copy_(weight)
        w[:, width].copy_(bias)
        w[:, width + 1 :] = 0.0
        # the logits, turned in place into softmax(logits) - one_hot(targets):
        # the gradient, kept for backward
        shape = (padded_rows, n_classes) if needs_grad else (min(chunk_rows, n_rows), n_classes)
        grad_logits, key = WORKSPACE.borrow("grad_logits", shape, compute_dtype, device)
        keys.append(key)
        grad_logits[n_rows:] = 0.0  # the padding rows (none without a gradient)
        in_place = device.type in IN_PLACE_SOFTMAX_DEVICES
        if not in_place:
            logits_buffer, key = WORKSPACE.borrow(
                "logits", (chunk_rows, n_classes), compute_dtype, device
            )
            keys.append(key)
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        row_ids = torch.arange(chunk_rows, device=device)
        minus_ones = torch.full((chunk_rows,), -1.0, dtype=compute_dtype, device=device)
        for start in range(0, n_rows, chunk_rows):
            stop = min(start + chunk_rows, n_rows)
            target = targets[start:stop].unsqueeze(1)
            rows = grad_logits[start:stop] if needs_grad else grad_logits[: stop - start]
            # softmax computed in fp32 row by row, stored in compute_dtype: in place on the CPU
            # (tested to equal the out-of-place result); elsewhere from a separate logits buffer
            logits = rows if in_place else logits_buffer[: stop - start]
            torch.mm(h[start:stop], w.t(), out=logits)  # the bias included
            torch.ops.aten._softmax.out(logits, 1, False, out=rows)
            # -log p(target); p is clamped at the smallest normal float
            # (a loss of 87 nats per token)
            loss_sum -= (
                rows.gather(1, target)
                .float()
                .clamp_min(torch.finfo(torch.float32).tiny)
                .log()
                .sum()
            )
            # minus one at each row's target
            # (index_put_ works in place; scatter_add_ copies the chunk twice)
            rows.index_put_(
                (row_ids[: stop - start], target[:, 0]), minus_ones[: stop - start], accumulate=True
            )
        loss = loss_sum / n_rows
        ctx.n_rows, ctx.width = n_rows, width
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype)
        if needs_grad:
            ctx.save_for_backward(h, w, grad_logits)
            # lent until backward has used them, or until the graph is dropped without a backward
            ctx.give_back = weakref.finalize(ctx, WORKSPACE.give_back, *keys)
        else:
            WORKSPACE.give_back(*keys)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        h, w, grad_logits = ctx.saved_tensors
        hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
        n_rows, width = ctx.n_rows, ctx.width
        scale = grad_loss.float() / n_rows
        grad_hidden = grad_weight = grad_b = None
        if ctx.needs_input_grad[0]:  # all the padded columns (a whole-tile product), then cut
            grad_hidden = (grad_logits[:n_rows] @ w)[:, :width].float().mul_(scale)
            grad_hidden = grad_hidden.to(hidden_dtype)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            # [weight, bias] together; the scale folded into the small operand. Over the padded
            # rows (zeros, which add nothing): an inner size of a multiple of 32 is whole AMX
            # tiles (measured alone: 6.0 ms at 704 rows against 7.4 at 700, the same result)
            scaled_h = h * scale.to(h.dtype)
            product, key = WORKSPACE.borrow("grad_weight", tuple(w.shape), w.dtype, w.device)
            torch.mm(grad_logits.t(), scaled_h, out=product)
            # copied out (contiguous, in the parameters' dtypes): the buffer is reused next step
            if ctx.needs_input_grad[1]:
                grad_weight = product.new_empty((w.shape[0], width), dtype=weight_dtype)
                grad_weight.copy_(product[:, :width])
            if ctx.needs_input_grad[2]:
                grad_b = product.new_empty((w.shape[0],), dtype=bias_dtype)
                grad_b.copy_(product[:, width])
            WORKSPACE.give_back(key)
        ctx.give_back()  # the next step may reuse the buffers
        return grad_hidden, grad_weight, grad_b, None, None, None


def linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor,
    targets: Tensor,
    compute_dtype: torch.dtype = torch.float32,
    chunk_rows: int = 700,
) -> Tensor:
    """`F.cross_entropy(F.linear(hidden, weight, bias), targets)` without
    materialising fp32 logits.

    `hidden` is `[tokens, emsize]`, `weight` `[ntokens, emsize]`, `targets` `[tokens]`;
    the matrix products run in `compute_dtype`, the softmax in fp32 (stored in `compute_dtype`).
    """
    return LinearCrossEntropy.apply(hidden, weight, bias, targets, compute_dtype, chunk_rows)


def decoder_cross_entropy(model, data: Tensor, src_mask: Tensor, targets: Tensor) -> Tensor:
    """The loss of train()'s two completed lines, `output = model(data, src_mask)` and
    `loss = criterion(output.view(-1, ntokens), targets)`, computed without the
    [seq_len * batch_size, ntokens] output tensor: the model up to its decoder (hidden_states), then
    the decoder and the mean cross-entropy together (linear_cross_entropy). Under autocast the
    matrix products run in autocast's dtype, the softmax in fp32, as for the two lines."""
    hidden = hidden_states(model, data, src_mask)
    hidden = hidden.reshape(-1, hidden.size(-1))
    device_type = hidden.device.type
    dtype = torch.float32
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    with torch.autocast(device_type, enabled=False):  # linear_cross_entropy casts for itself
        return linear_cross_entropy(
            hidden, model.decoder.weight, model.decoder.bias, targets, dtype
        )
