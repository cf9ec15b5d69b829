"""The assignment's TransformerModel: shapes, the causal mask, and the fused-loss path's equivalence."""

import pytest
import torch
import torch.nn.functional as F
from hw3.fused_loss import hidden_states, linear_cross_entropy
from hw3.model import PositionalEncoding, TransformerModel

NTOKENS = 50


def make_model(dropout: float = 0.0, norm_first: bool = False) -> TransformerModel:
    torch.manual_seed(0)
    return TransformerModel(NTOKENS, 16, 2, 32, 2, dropout, norm_first=norm_first).eval()


def test_output_shape() -> None:
    model = make_model()
    src = torch.randint(NTOKENS, (7, 3))
    out = model(src, model.generate_square_subsequent_mask(7))
    assert out.shape == (7, 3, NTOKENS)


def test_mask_is_the_causal_float_mask() -> None:
    mask = make_model().generate_square_subsequent_mask(4)
    expected = torch.tensor(
        [[0.0, -1.0, -1.0, -1.0], [0.0, 0.0, -1.0, -1.0], [0.0, 0.0, 0.0, -1.0], [0.0] * 4]
    )
    assert torch.equal(mask == 0, expected == 0) and torch.isinf(mask[expected != 0]).all()


def earlier_outputs_change(model: TransformerModel, mask: torch.Tensor | None) -> bool:
    """Change the last token of each sequence: do the outputs at earlier positions move?"""
    src = torch.randint(NTOKENS, (9, 2))
    changed = src.clone()
    changed[-1] = (src[-1] + 1) % NTOKENS
    with torch.no_grad():
        before, after = model(src, mask), model(changed, mask)
    assert not torch.allclose(before[-1], after[-1])  # the changed position itself must react
    return not torch.allclose(before[:-1], after[:-1], atol=1e-6)


@pytest.mark.parametrize("norm_first", [False, True])
def test_causal_mask_hides_the_future(norm_first: bool) -> None:
    model = make_model(norm_first=norm_first)
    assert not earlier_outputs_change(model, model.generate_square_subsequent_mask(9))


def test_a_model_that_sees_the_future_fails_the_same_check() -> None:
    model = make_model()
    assert earlier_outputs_change(model, None)  # no mask: earlier positions attend to the changed token


def test_initialisation_as_given() -> None:
    model = make_model()
    assert model.decoder.bias.abs().max() == 0
    assert model.decoder.weight.abs().max() <= 0.1 and model.encoder.weight.abs().max() <= 0.1


def test_positional_encoding_values() -> None:
    pe = PositionalEncoding(8, dropout=0.0)
    x = torch.zeros(3, 1, 8)
    out = pe(x)
    assert torch.allclose(out[1, 0, 0], torch.sin(torch.tensor(1.0)))
    assert torch.allclose(out[2, 0, 1], torch.cos(torch.tensor(2.0)))


def test_hidden_states_then_decoder_is_forward() -> None:
    model = make_model()
    src = torch.randint(NTOKENS, (6, 2))
    mask = model.generate_square_subsequent_mask(6)
    with torch.no_grad():
        assert torch.allclose(model.decoder(hidden_states(model, src, mask)), model(src, mask), atol=1e-6)


@pytest.mark.parametrize("in_place", [True, False])
@pytest.mark.parametrize("chunk_rows", [1, 5, 64])
def test_fused_linear_cross_entropy_matches_reference_fp32(
    chunk_rows: int, in_place: bool, monkeypatch
) -> None:
    if not in_place:  # the path taken on GPUs: logits in their own buffer
        monkeypatch.setattr("hw3.fused_loss.IN_PLACE_SOFTMAX_DEVICES", ())
    torch.manual_seed(1)
    hidden = torch.randn(13, 8, requires_grad=True)
    weight = torch.randn(30, 8, requires_grad=True)
    bias = torch.randn(30, requires_grad=True)
    targets = torch.randint(30, (13,))
    ref = F.cross_entropy(F.linear(hidden, weight, bias), targets)
    ref_grads = torch.autograd.grad(3.0 * ref, (hidden, weight, bias))
    loss = linear_cross_entropy(hidden, weight, bias, targets, torch.float32, chunk_rows)
    grads = torch.autograd.grad(3.0 * loss, (hidden, weight, bias))  # grad_output != 1 is scaled through
    assert torch.allclose(loss, ref, atol=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_fused_linear_cross_entropy_bf16_is_close() -> None:
    torch.manual_seed(2)
    hidden, weight, bias = torch.randn(40, 16), torch.randn(100, 16) * 0.3, torch.zeros(100)
    targets = torch.randint(100, (40,))
    ref = F.cross_entropy(F.linear(hidden, weight, bias), targets)
    loss = linear_cross_entropy(hidden, weight, bias, targets, torch.bfloat16)
    assert abs(loss.item() - ref.item()) < 0.02 * ref.item()


def reference_loss_and_grads(hidden, weight, bias, targets):
    leaves = [t.detach().clone().requires_grad_() for t in (hidden, weight, bias)]
    loss = F.cross_entropy(F.linear(*leaves), targets)
    loss.backward()
    return loss.detach(), [t.grad for t in leaves]


def fused_loss_and_grads(hidden, weight, bias, targets, dtype=torch.float32):
    leaves = [t.detach().clone().requires_grad_() for t in (hidden, weight, bias)]
    loss = linear_cross_entropy(*leaves, targets, dtype, 4)
    loss.backward()
    return loss.detach(), [t.grad for t in leaves]


def test_fused_loss_two_forwards_before_one_backward_do_not_share_buffers() -> None:
    torch.manual_seed(3)
    weight, bias = torch.randn(30, 8, requires_grad=True), torch.randn(30, requires_grad=True)
    inputs = [(torch.randn(13, 8, requires_grad=True), torch.randint(30, (13,))) for _ in range(2)]
    losses = [linear_cross_entropy(h, weight, bias, t, torch.float32, 4) for h, t in inputs]
    (losses[0] + losses[1]).backward()  # both graphs alive at once: the first one's buffers were still lent
    ref_w, ref_b = torch.zeros_like(weight), torch.zeros_like(bias)
    for (h, t), loss in zip(inputs, losses, strict=True):
        ref_loss, (ref_h, w_grad, b_grad) = reference_loss_and_grads(h, weight, bias, t)
        ref_w += w_grad
        ref_b += b_grad
        assert torch.allclose(loss, ref_loss, atol=1e-6) and torch.allclose(h.grad, ref_h, atol=1e-6)
    assert torch.allclose(weight.grad, ref_w, atol=1e-6) and torch.allclose(bias.grad, ref_b, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_loss_buffers_are_reused_and_freed_when_a_graph_is_dropped(dtype) -> None:
    from hw3.fused_loss import WORKSPACE

    torch.manual_seed(4)
    hidden, weight, bias = torch.randn(13, 8), torch.randn(30, 8) * 0.3, torch.randn(30)
    targets = torch.randint(30, (13,))
    first = fused_loss_and_grads(hidden, weight, bias, targets, dtype)
    dropped = linear_cross_entropy(hidden.requires_grad_(), weight, bias, targets, dtype, 4)
    del dropped  # no backward: its buffers must come back when its graph goes
    assert not WORKSPACE._lent
    for _ in range(2):  # later steps reuse the same buffers and still give the same gradients
        again = fused_loss_and_grads(hidden, weight, bias, targets, dtype)
        assert torch.equal(again[0], first[0])
        assert all(torch.equal(a, b) for a, b in zip(again[1], first[1], strict=True))
    assert not WORKSPACE._lent
    tol = 1e-6 if dtype == torch.float32 else 3e-2
    ref_loss, ref_grads = reference_loss_and_grads(hidden, weight, bias, targets)
    assert torch.allclose(first[0], ref_loss, atol=tol, rtol=tol)
    for got, want in zip(first[1], ref_grads, strict=True):
        assert torch.allclose(got, want, atol=tol, rtol=tol)


def test_the_padding_rows_of_reused_buffers_add_nothing_to_the_weights_gradient() -> None:
    from hw3.fused_loss import WORKSPACE

    torch.manual_seed(5)
    hidden, weight, bias = torch.randn(13, 8), torch.randn(30, 8) * 0.3, torch.randn(30)
    targets = torch.randint(30, (13,))
    ref_loss, ref_grads = reference_loss_and_grads(hidden, weight, bias, targets)
    # 13 rows are padded to 32; whatever an earlier use left in the buffers must not count
    for name in ("hidden", "grad_logits"):
        key = (name, torch.float32, "cpu")
        WORKSPACE._buffers[key] = torch.full((64 * 64,), float("nan"))
    loss, grads = fused_loss_and_grads(hidden, weight, bias, targets)
    assert torch.allclose(loss, ref_loss, atol=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-6)
