"""The cheaper dropout masks of the fast training path: same distribution as nn.Dropout, seeded, undone."""

import math

import pytest
import torch
from hw3.fast_dropout import dropout_mask_threshold, fast_dropout, fast_dropout_forward, random_int16
from hw3.model import TransformerModel
from torch import nn


def dropout(p: float) -> nn.Dropout:
    return nn.Dropout(p).train()


@pytest.mark.parametrize("p", [0.1, 0.2, 0.3])
def test_keeps_each_element_with_probability_one_minus_p_and_keeps_the_mean(p: float) -> None:
    torch.manual_seed(0)
    n = 1_000_000
    out = fast_dropout_forward(dropout(p), torch.ones(n))
    kept = out != 0
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * sigma
    assert abs(dropout_mask_threshold(p) / 2**16 - (1 - p)) < 1e-5  # p to 5 significant digits
    assert torch.allclose(out[kept], torch.full_like(out[kept], 2**16 / dropout_mask_threshold(p)))
    assert abs(out.mean().item() - 1.0) < 5 * sigma / (1 - p)


def test_masks_are_independent_between_calls_and_across_the_tensor() -> None:
    torch.manual_seed(0)
    x = torch.ones(35, 20, 250)
    first, second = (fast_dropout_forward(dropout(0.2), x) != 0 for _ in range(2))
    agree = (first == second).float().mean().item()
    assert abs(agree - (0.8**2 + 0.2**2)) < 0.01  # a repeated mask would agree everywhere
    flat = first.flatten().float()
    for shift in (1, 250, 5000):  # no period inside one mask
        assert abs((flat[shift:] == flat[:-shift]).float().mean().item() - 0.68) < 0.01


def test_random_int16_covers_the_range_uniformly() -> None:
    torch.manual_seed(0)
    values = random_int16(torch.Size([400_000]), torch.device("cpu")).long()
    assert values.min() < -32000
    assert values.max() > 32000
    counts = torch.bincount(values + 2**15, minlength=2**16).view(16, -1).sum(dim=1).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.02  # 16 equal bins


def test_same_seed_same_mask_other_seed_other_mask() -> None:
    x = torch.ones(1000)
    torch.manual_seed(5)
    a = fast_dropout_forward(dropout(0.2), x)
    torch.manual_seed(5)
    b = fast_dropout_forward(dropout(0.2), x)
    torch.manual_seed(6)
    c = fast_dropout_forward(dropout(0.2), x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_eval_mode_and_edge_probabilities() -> None:
    x = torch.randn(100)
    assert fast_dropout_forward(nn.Dropout(0.2).eval(), x) is x
    assert fast_dropout_forward(dropout(0.0), x) is x
    assert torch.equal(fast_dropout_forward(dropout(1.0), x), torch.zeros(100))


def test_gradient_is_the_mask_times_the_scale() -> None:
    torch.manual_seed(1)
    x = torch.randn(50, 40, requires_grad=True)
    out = fast_dropout_forward(dropout(0.3), x)
    out.sum().backward()
    scale = 2**16 / dropout_mask_threshold(0.3)
    assert torch.allclose(x.grad, (out != 0).float() * scale)


def test_context_patches_only_dropout_modules_and_restores_them() -> None:
    model = TransformerModel(30, 8, 2, 16, 2, dropout=0.2).train()
    dropouts = [m for m in model.modules() if type(m) is nn.Dropout]
    assert len(dropouts) == 1 + 3 * 2  # positional encoding + 3 per encoder layer
    with fast_dropout(model):
        assert all("forward" in vars(m) for m in dropouts)
        torch.manual_seed(0)
        out = model.pos_encoder.dropout(torch.ones(1000))
        assert ((out == 0) | torch.isclose(out, torch.tensor(2**16 / dropout_mask_threshold(0.2)))).all()
    assert not any("forward" in vars(m) for m in dropouts)
    torch.manual_seed(0)  # afterwards: torch's own dropout again, mask for mask
    x = torch.ones(1000)
    got = model.pos_encoder.dropout(x)
    torch.manual_seed(0)
    assert torch.equal(got, torch.nn.functional.dropout(x, 0.2, training=True))


def test_context_restores_the_modules_after_an_error() -> None:
    model = TransformerModel(30, 8, 2, 16, 2, dropout=0.2)
    with pytest.raises(RuntimeError), fast_dropout(model):
        raise RuntimeError("boom")
    assert not any("forward" in vars(m) for m in model.modules())
