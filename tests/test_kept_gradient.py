"""Gradients kept in buffers across steps (hw3.kept_gradient)."""

import copy

import pytest
import torch
from hw3.fused_loss import linear_cross_entropy
from hw3.kept_gradient import ROW_BUFFERS, WHOLE_BUFFERS, embedding_lookup, known_norm
from hw3.recipe import clip_and_step
from torch import nn
from torch.nn import functional as F

ROWS, WIDTH = 500, 8


def batches(steps: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, ROWS, (7, 5), generator=generator)
        ids[0, 0] = ids[1, 1] = ids[2, 2]  # a word repeated in the batch
        yield ids, torch.randn(7, 5, WIDTH, generator=generator)


def two_embeddings():
    torch.manual_seed(1)
    given = nn.Embedding(ROWS, WIDTH)
    return given, copy.deepcopy(given)


def test_the_gradient_and_the_training_are_nn_embeddings_to_the_bit() -> None:
    given, kept = two_embeddings()
    optimizers = [torch.optim.AdamW(m.parameters(), lr=0.01, fused=True) for m in (given, kept)]
    for ids, grad_out in batches(6):
        for optimizer in optimizers:
            optimizer.zero_grad()
        given(ids).backward(grad_out)
        embedding_lookup(kept, ids).backward(grad_out)
        assert torch.equal(kept.weight.grad, given.weight.grad)
        # the buffer itself became .grad: nothing was allocated or copied
        assert kept.weight.grad.data_ptr() == ROW_BUFFERS.buffer_for(kept.weight).data.data_ptr()
        for optimizer in optimizers:
            optimizer.step()
    assert torch.equal(kept.weight, given.weight)


def test_a_gradient_kept_by_the_caller_is_not_overwritten_by_the_next_step() -> None:
    _, kept = two_embeddings()
    steps = list(batches(2))
    embedding_lookup(kept, steps[0][0]).backward(steps[0][1])
    first = kept.weight.grad
    first_copy = first.clone()
    kept.weight.grad = None  # zero_grad(), while the caller still holds the tensor
    embedding_lookup(kept, steps[1][0]).backward(steps[1][1])
    assert torch.equal(first, first_copy)
    assert kept.weight.grad.data_ptr() != first.data_ptr()


def test_a_view_kept_by_the_caller_is_not_overwritten_either() -> None:
    _, kept = two_embeddings()
    steps = list(batches(2))
    embedding_lookup(kept, steps[0][0]).backward(steps[0][1])
    flat = kept.weight.grad.view(-1)
    flat_copy = flat.clone()
    kept.weight.grad = None
    embedding_lookup(kept, steps[1][0]).backward(steps[1][1])
    assert torch.equal(flat, flat_copy)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_gradients_accumulate_over_two_backward_passes_as_nn_embeddings(set_to_none: bool) -> None:
    given, kept = two_embeddings()
    steps = list(batches(6))
    for pair in (steps[:2], steps[2:4], steps[4:]):
        for module in (given, kept):
            module.zero_grad(set_to_none=set_to_none)
        for ids, grad_out in pair:  # two backward passes, one optimizer step
            given(ids).backward(grad_out)
            embedding_lookup(kept, ids).backward(grad_out)
        assert torch.equal(kept.weight.grad, given.weight.grad)


def test_a_gradient_changed_in_place_is_cleared_whole_the_next_step() -> None:
    given, kept = two_embeddings()
    for ids, grad_out in batches(3):
        given.zero_grad()
        kept.zero_grad()
        given(ids).backward(grad_out)
        embedding_lookup(kept, ids).backward(grad_out)
        assert torch.equal(kept.weight.grad, given.weight.grad)
        kept.weight.grad[3].fill_(5.0)  # another row than the batch's, written in place
        given.weight.grad[3].fill_(5.0)


def test_the_norm_from_the_written_rows_is_the_gradients_norm() -> None:
    given, kept = two_embeddings()
    ids, grad_out = next(batches(1))
    given(ids).backward(grad_out)
    embedding_lookup(kept, ids).backward(grad_out)
    norm = known_norm(kept.weight.grad)
    assert norm is not None
    torch.testing.assert_close(norm, given.weight.grad.norm(), rtol=1e-6, atol=0)
    assert known_norm(given.weight.grad) is None  # not a kept gradient: computed in full
    kept.weight.grad.mul_(2.0)  # changed in place: the rows no longer tell
    assert known_norm(kept.weight.grad) is None


@pytest.mark.parametrize("fused", [True, False])
def test_clipping_with_a_kept_gradient_equals_clip_grad_norm(fused: bool) -> None:
    given, kept = two_embeddings()
    models = (given, kept)
    optimizers = [torch.optim.AdamW(m.parameters(), lr=0.01, fused=fused) for m in models]
    for ids, grad_out in batches(4):
        for optimizer in optimizers:
            optimizer.zero_grad()
        given(ids).backward(grad_out)
        embedding_lookup(kept, ids).backward(grad_out)
        torch.nn.utils.clip_grad_norm_(given.parameters(), 0.5)
        optimizers[0].step()
        clip_and_step(optimizers[1], list(kept.parameters()), 0.5)
    torch.testing.assert_close(kept.weight, given.weight, rtol=1e-5, atol=1e-6)


def test_an_embedding_with_options_runs_as_it_is() -> None:
    padded = nn.Embedding(ROWS, WIDTH, padding_idx=0)
    ids, grad_out = next(batches(1))
    embedding_lookup(padded, ids).backward(grad_out)
    assert torch.all(padded.weight.grad[0] == 0)
    assert known_norm(padded.weight.grad) is None


def test_the_decoders_gradient_is_written_into_its_kept_buffer() -> None:
    torch.manual_seed(2)
    decoder = nn.Linear(WIDTH, ROWS)
    given = copy.deepcopy(decoder)
    kept_first = None
    for step in range(3):
        hidden = torch.randn(30, WIDTH)
        targets = torch.randint(0, ROWS, (30,))
        decoder.zero_grad()
        given.zero_grad()
        linear_cross_entropy(hidden, decoder.weight, decoder.bias, targets).backward()
        F.cross_entropy(given(hidden), targets).backward()
        torch.testing.assert_close(decoder.weight.grad, given.weight.grad, rtol=1e-5, atol=1e-7)
        buffer = WHOLE_BUFFERS.buffer_for(decoder.weight)
        if step == 0:  # the caller keeps the first step's gradient: the next step cannot use it
            kept_first, first_copy = decoder.weight.grad, decoder.weight.grad.clone()
            assert decoder.weight.grad.data_ptr() == buffer.data.data_ptr()
        else:
            assert decoder.weight.grad.data_ptr() != kept_first.data_ptr()
    assert torch.equal(kept_first, first_copy)
    del kept_first
    decoder.zero_grad()
    linear_cross_entropy(hidden, decoder.weight, decoder.bias, targets).backward()
    assert decoder.weight.grad.data_ptr() == buffer.data.data_ptr()  # free again: reused
