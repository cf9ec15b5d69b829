"""The gradients of the two 28,782 x 250 matrices in buffers kept from step to step.

Autograd gives each step's gradient new memory: the embedding's is a 29 MB matrix of zeros into
which the batch's 700 rows are added, the decoder's a 29 MB matrix its backward fills. Writing the
zeros is a whole pass over the matrix, and new memory of that size may come fresh from the kernel,
page by page, after the C library handed it back (after another program's big blocks, as in the
bench). Here a buffer per matrix is lent to autograd, which stores it as `weight.grad` without
copying it, and reused (measured on a 2-core Xeon with AMX, models taking turns in one process:
137.5 ms a batch without these buffers, 132.5 with the embedding's, 130.8 with both):

- `embedding_lookup` computes `F.embedding(ids, weight)` and, in backward, the same gradient as
  nn.Embedding (zeros, then `index_add_` of the batch's rows: bit for bit the CPU's embedding
  backward) in a buffer, clearing first only the rows it added the step before: they are all that
  is not zero. The same rows give the gradient's norm (`known_norm`, for the clipping).
- `lend_gradient` gives the decoder's backward (fused_loss) a buffer to write the whole gradient in.

A buffer is reused only when it is free: no other tensor uses its memory, so the gradient handed out
last step and every view of it are gone (train() calls `optimizer.zero_grad()`, which drops them,
every step); otherwise fresh memory is used, as without these buffers. The row buffer is also
checked clean: its version counter unchanged since it was written. An in-place change (clipping
by multiplication, a second backward pass adding to it, `zero_grad(set_to_none=False)`) makes it
dirty, and it is zeroed whole. The fused optimizers' `grad_scale` divides the gradient in place
without counting a version, but it only divides the rows already written.

Only on the CPU: elsewhere the modules' own backward runs (CUDA's embedding backward is another
algorithm, and its allocator keeps memory itself).
"""

import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def storage_users(tensor: Tensor) -> int | None:
    """How many tensors hold tensor's memory (None: this torch does not say). torch has no public
    call for it; without it no buffer is ever reused, and every gradient is fresh memory."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:
        return None
    return use_count(tensor.untyped_storage()._cdata)


class GradientBuffer:
    """Memory for one parameter's gradient, lent to autograd and reused once free."""

    def __init__(self, weight: Tensor) -> None:
        self.data = torch.zeros_like(weight, memory_format=torch.contiguous_format)
        self.own_users = storage_users(self.data)  # the buffer's own hold on its memory

    def is_free(self) -> bool:
        """No tensor but the buffer itself uses its memory: what was lent before, any view of it
        or tensor made from it, is gone."""
        users = storage_users(self.data)
        return users is not None and users == self.own_users

    def lend(self) -> Tensor:
        """The buffer as a tensor of its own (autograd keeps that one as .grad, without a copy)."""
        return self.data.view_as(self.data)


class RowGradientBuffer(GradientBuffer):
    """An embedding matrix's gradient buffer and the rows last written into it."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__(weight)
        self.rows: Tensor | None = None  # the token ids last added (with repeats)
        self.version = self.data._version  # the version counter after the last write

    def gradient(self, ids: Tensor, grad_rows: Tensor) -> Tensor:
        """The dense gradient with grad_rows added at ids, in the buffer (which must be free)."""
        if self.data._version != self.version:  # changed in place by someone else: all dirty
            self.data.zero_()
        elif self.rows is not None:
            self.data.index_fill_(0, self.rows, 0.0)
        grad = self.lend()
        grad.index_add_(0, ids, grad_rows)
        self.rows, self.version = ids, self.data._version
        return grad

    def norm_if_current(self, grad: Tensor) -> Tensor | None:
        """The 2-norm of grad from its written rows, when grad is this buffer's gradient
        unchanged since it was written; else None."""
        if self.rows is None or grad.data_ptr() != self.data.data_ptr():
            return None
        if grad.shape != self.data.shape or self.data._version != self.version:
            return None
        return torch.linalg.vector_norm(grad.index_select(0, torch.unique(self.rows)))


class BufferRegistry:
    """One buffer of a kind per parameter, made on first use and dropped with the parameter."""

    def __init__(self, kind: type[GradientBuffer]) -> None:
        self.kind = kind
        self.buffers: dict[int, tuple[weakref.ref, GradientBuffer]] = {}

    def buffer_for(self, weight: Tensor) -> GradientBuffer:
        key = id(weight)
        entry = self.buffers.get(key)
        if entry is None or entry[0]() is not weight:
            dropped = weakref.ref(weight, lambda _, key=key: self.buffers.pop(key, None))
            entry = self.buffers[key] = (dropped, self.kind(weight))
        return entry[1]


ROW_BUFFERS = BufferRegistry(RowGradientBuffer)  # embeddings (embedding_lookup)
WHOLE_BUFFERS = BufferRegistry(GradientBuffer)  # gradients written whole (lend_gradient)


def lend_gradient(weight: Tensor) -> Tensor:
    """Memory for weight's gradient, to be written whole: the kept buffer when it is free, else
    fresh memory."""
    if weight.device.type == "cpu":
        buffer = WHOLE_BUFFERS.buffer_for(weight)
        if buffer.data.shape == weight.shape and buffer.is_free():
            return buffer.lend()
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


class EmbeddingLookup(torch.autograd.Function):
    """`F.embedding(ids, weight)` whose weight gradient is written into the kept row buffer."""

    @staticmethod
    def forward(ctx, weight: Tensor, ids: Tensor) -> Tensor:
        ctx.save_for_backward(ids)
        ctx.weight, ctx.weight_shape = weakref.ref(weight), weight.shape
        return F.embedding(ids, weight)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (ids,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None
        weight = ctx.weight()
        flat_ids = ids.reshape(-1)
        grad_rows = grad_output.reshape(-1, grad_output.size(-1))
        buffer = None if weight is None else ROW_BUFFERS.buffer_for(weight)
        if buffer is not None and buffer.is_free() and buffer.data.dtype == grad_rows.dtype:
            return buffer.gradient(flat_ids, grad_rows), None
        fresh = torch.zeros(ctx.weight_shape, dtype=grad_rows.dtype, device=grad_rows.device)
        return fresh.index_add_(0, flat_ids, grad_rows), None


def embedding_lookup(embedding: nn.Embedding, ids: Tensor) -> Tensor:
    """`embedding(ids)`, with the weight's gradient kept in one buffer across steps on the CPU.
    An embedding with options (padding_idx, max_norm, sparse, ...) or off the CPU runs as it is."""
    weight = embedding.weight
    plain = (
        embedding.padding_idx is None
        and embedding.max_norm is None
        and not embedding.scale_grad_by_freq
        and not embedding.sparse
    )
    if not plain or weight.device.type != "cpu" or not torch.is_grad_enabled():
        return embedding(ids)
    return EmbeddingLookup.apply(weight, ids)


def known_norm(grad: Tensor) -> Tensor | None:
    """grad's 2-norm from the rows written into it, when it is a kept embedding gradient still as
    written; None otherwise (compute it in full)."""
    for weight_ref, buffer in list(ROW_BUFFERS.buffers.values()):
        weight = weight_ref()
        if weight is not None and weight.grad is grad:
            return buffer.norm_if_current(grad)
    return None
