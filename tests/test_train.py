"""Training and evaluation: hand-checked evaluate, overfitting, copies, seeds, schedules, faults."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hw3.hparams import HParams, profile_defaults
from hw3.loss_check import check_loss_lines, ms_per_batch, without_dropout
from hw3.model import TransformerModel
from hw3.plots import plot_history
from hw3.recipe import TrainingDiverged, clip_and_step
from hw3.reference import given_train
from hw3.train import (
    EpochWeights,
    attention_kernel,
    build_model,
    checkpoint_state,
    count_batches,
    epoch_slice,
    evaluate,
    fit,
    lr_factor,
    make_optimizer,
    make_scheduler,
    set_seed,
    tie_weights,
    train,
)

VOCAB = 24


def tiny_model(emsize: int = 16, dropout: float = 0.0) -> TransformerModel:
    torch.manual_seed(0)
    return TransformerModel(VOCAB, emsize, 2, 32, 2, dropout)


def box_model(hp: HParams) -> TransformerModel:
    """A model inside the assignment's box, on a tiny vocabulary (fast on one CPU thread)."""
    return TransformerModel(VOCAB, hp.emsize, hp.nhead, hp.nhid, hp.nlayers, hp.dropout, hp.norm_first)


def periodic_corpus(rows: int, cols: int, period: int = 6) -> torch.Tensor:
    """Columns of a repeating word pattern: perfectly predictable after one period."""
    flat = torch.arange(rows * cols) % period
    return flat.view(cols, rows).t().contiguous()


def tiny_hparams(**changes) -> HParams:
    base = dict(emsize=200, nhid=200, nlayers=2, nhead=2, dropout=0.0, epochs=2, max_train_batches=3,
                warmup_batches=2, log_interval=2, precision="fp32", lr=5e-3)  # fmt: skip
    return HParams(**{**base, **changes})


def test_evaluate_equals_hand_computation() -> None:
    model = tiny_model().eval()
    eval_data = torch.randint(VOCAB, (8, 2))  # rows 0..7: batches of 3, 3 and 1 rows with bptt=3
    total, count = 0.0, 0
    with torch.no_grad():
        for start in (0, 3, 6):
            rows = min(3, 7 - start)
            src = eval_data[start : start + rows]
            mask = torch.triu(torch.full((rows, rows), float("-inf")), diagonal=1)
            logp = F.log_softmax(model(src, mask), dim=-1)
            target = eval_data[start + 1 : start + 1 + rows]
            total += -logp.gather(-1, target.unsqueeze(-1)).sum().item()
            count += target.numel()
    per_token = total / count
    got = evaluate(model, eval_data, bptt=3)
    assert got == pytest.approx(per_token, rel=1e-5)
    # the assignment's formula: seq_len-weighted batch means over len(eval_data) - 1 rows
    assert got == pytest.approx(total / eval_data.size(1) / (len(eval_data) - 1), rel=1e-5)


def test_evaluate_max_batches_uses_a_prefix() -> None:
    model = tiny_model().eval()
    eval_data = torch.randint(VOCAB, (8, 2))
    assert evaluate(model, eval_data, bptt=3, max_batches=1) == pytest.approx(
        evaluate(model, eval_data[:4], bptt=3)
    )


def test_count_batches() -> None:
    data = torch.zeros(71, 2)
    assert count_batches(data, 35) == 2 and count_batches(data, 35, 1) == 1
    assert count_batches(torch.zeros(72, 2), 35) == 3  # the last batch has one row


def train_epoch(model, bptt, data, optimizer, scheduler, epoch, **recipe) -> float:
    """One epoch of train() (the notebook's) on the tiny vocabulary, no progress bar."""
    criterion = torch.nn.CrossEntropyLoss()
    return train(model, bptt, data, criterion, VOCAB, optimizer, scheduler, epoch, progress=False, **recipe)


def run_epoch(fast: bool, model, data, optimizer, scheduler, epoch: int = 1, **options) -> None:
    """One epoch by the assignment's given train() (fast=False) or by the notebook's train()."""
    if fast:
        train_epoch(model, 10, data, optimizer, scheduler, epoch, **options)
    else:
        given_train(model, 10, data, torch.nn.CrossEntropyLoss(), VOCAB, optimizer, scheduler, epoch)


@pytest.mark.parametrize("fast", [False, True])
def test_a_tiny_corpus_is_overfit(fast: bool) -> None:
    model = tiny_model()
    data = periodic_corpus(60, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    first = evaluate(model, data, bptt=10)
    for epoch in range(1, 20):
        run_epoch(fast, model, data, optimizer, scheduler, epoch)
    assert first > 2.5  # about log(24) at the start
    assert evaluate(model, data, bptt=10) < 0.3


def test_train_with_its_recipe_off_takes_the_given_steps() -> None:
    """The two completed lines as written, torch's dropout, no autocast, the chunks in order: the
    notebook's train() is then the given train() step for step (dropout on: the same masks)."""
    data = torch.randint(VOCAB, (61, 4))
    losses, weights = [], []
    for fast in (False, True):
        model = tiny_model(dropout=0.2)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        torch.manual_seed(5)
        run_epoch(fast, model, data, optimizer, scheduler, fused_loss=False, cheap_dropout=False)
        losses.append(evaluate(model, data, bptt=10))
        weights.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert torch.allclose(weights[0], weights[1], rtol=0, atol=1e-6)


def test_the_fused_loss_gives_the_same_training_as_the_given_train() -> None:
    data = torch.randint(VOCAB, (61, 4))
    losses = []
    for fast in (False, True):
        model = tiny_model()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        run_epoch(fast, model, data, optimizer, scheduler)
        losses.append(evaluate(model, data, bptt=10))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_the_given_train_prints_the_given_log_line(capsys) -> None:
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1.0, gamma=0.95)
    data = torch.randint(VOCAB, (61, 2))
    given_train(model, 5, data, torch.nn.CrossEntropyLoss(), VOCAB, optimizer, scheduler, 3, log_interval=4)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("| epoch   3 |     4/   12 batches | lr 0.10 |")
    # the notebook's train() prints the same line, the learning rate in a form that shows 5e-4 too
    constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    train(model, 5, data, torch.nn.CrossEntropyLoss(), VOCAB, optimizer, constant, 3, 4, progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("| epoch   3 |     4/   12 batches | lr 1.00e-01 |")


def test_tied_weights_share_one_matrix_trained_from_both_sides() -> None:
    untied = tiny_model()
    tied = tie_weights(tiny_model())
    assert tied.decoder.weight is tied.encoder.weight
    n_untied = sum(p.numel() for p in untied.parameters())
    assert (
        sum(p.numel() for p in tied.parameters()) == n_untied - VOCAB * 16
    )  # one ntoken x emsize matrix less
    # the tied gradient is the embedding's plus the decoder's: the same as the untied model's two, summed
    untied.decoder.weight.data.copy_(untied.encoder.weight.data)
    data = torch.randint(VOCAB, (11, 4))
    src, target = data[:10], data[1:11].reshape(-1)
    mask = torch.triu(torch.full((10, 10), float("-inf")), diagonal=1)
    for model in (untied, tied):
        model.eval()
        F.cross_entropy(model(src, mask).view(-1, VOCAB), target).backward()
    torch.testing.assert_close(
        tied.encoder.weight.grad, untied.encoder.weight.grad + untied.decoder.weight.grad
    )
    # a copy of the model (the best model) stays tied
    copied = copy.deepcopy(tied)
    assert copied.decoder.weight is copied.encoder.weight


def test_tied_model_trains_the_same_with_the_fused_loss() -> None:
    data = torch.randint(VOCAB, (61, 4))
    losses = []
    for fast in (False, True):
        model = tie_weights(tiny_model())
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        run_epoch(fast, model, data, optimizer, scheduler)
        assert model.decoder.weight is model.encoder.weight
        losses.append(evaluate(model, data, bptt=10))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_fit_keeps_a_copy_of_the_best_model_and_a_history() -> None:
    hp = tiny_hparams(epochs=3)
    set_seed(hp.seed)
    model = box_model(hp)
    data, val = periodic_corpus(200, 20), periodic_corpus(80, 10)
    snapshots = {}

    def snapshot(result) -> None:
        snapshots[len(result.history)] = {k: v.clone() for k, v in model.state_dict().items()}

    result = fit(model, data, val, hp, progress=False, on_epoch_end=snapshot)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert set(result.history[0]) == {"epoch", "train_loss", "val_loss", "val_ppl", "lr", "seconds"}
    assert result.history[0]["val_ppl"] == pytest.approx(math.exp(result.history[0]["val_loss"]))
    assert result.best_model is not model
    best = result.best_model.state_dict()
    for name, tensor in model.state_dict().items():
        assert best[name].data_ptr() != tensor.data_ptr()
        assert torch.equal(best[name], snapshots[result.best_epoch][name])
    assert result.best_val_loss == min(row["val_loss"] for row in result.history)
    # train the live model further: the copy must not follow
    before = {k: v.clone() for k, v in best.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in result.best_model.state_dict().items())


def test_same_seed_same_losses_on_cpu() -> None:
    hp = tiny_hparams(dropout=0.2)
    data, val = torch.randint(VOCAB, (200, 20)), torch.randint(VOCAB, (80, 10))
    runs = []
    for _ in range(2):
        set_seed(hp.seed)
        runs.append(fit(box_model(hp), data, val, hp, progress=False).history)
    key = [(row["train_loss"], row["val_loss"]) for row in runs[0]]
    assert key == [(row["train_loss"], row["val_loss"]) for row in runs[1]]
    set_seed(hp.seed + 1)
    other = fit(box_model(hp), data, val, hp, progress=False).history
    assert other[0]["train_loss"] != runs[0][0]["train_loss"]


def test_nan_loss_stops_with_epoch_batch_and_lr() -> None:
    hp = tiny_hparams()
    set_seed(hp.seed)
    model = box_model(hp)
    with torch.no_grad():
        model.decoder.bias[3] = float("nan")
    data, val = torch.randint(VOCAB, (200, 20)), torch.randint(VOCAB, (80, 10))
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch 0 \(learning rate .*\)\. Hint: lower lr"):
        fit(model, data, val, hp, progress=False)


def test_ctrl_c_keeps_the_best_model_and_history() -> None:
    hp = tiny_hparams(epochs=3)
    set_seed(hp.seed)
    data, val = torch.randint(VOCAB, (200, 20)), torch.randint(VOCAB, (80, 10))

    def interrupt(result) -> None:
        raise KeyboardInterrupt

    result = fit(box_model(hp), data, val, hp, progress=False, on_epoch_end=interrupt)
    assert result.interrupted and len(result.history) == 1
    assert result.best_model is not None and result.best_epoch == 1


def test_warmup_then_cosine_to_zero() -> None:
    f = dict(schedule="cosine", warmup=10, batches_per_epoch=50, total=100, gamma=0.95)
    assert lr_factor(0, **f) == pytest.approx(0.1)
    assert lr_factor(9, **f) == pytest.approx(math.cos(math.pi * 9 / 100) / 2 + 0.5)
    assert lr_factor(50, **f) == pytest.approx(0.5)
    assert lr_factor(100, **f) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule_is_steplr_per_epoch() -> None:
    hp = tiny_hparams(
        optimizer="SGD",
        lr=5.0,
        weight_decay=0.0,
        scheduler="step",
        warmup_batches=0,
        step_gamma=0.95,
        cooldown=0.0,
    )
    model = tiny_model()
    optimizer = make_optimizer(model, hp)
    scheduler = make_scheduler(optimizer, hp, batches_per_epoch=4)
    lrs = []
    for _ in range(12):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([5.0] * 4 + [4.75] * 4 + [4.5125] * 4)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RAdam"])
def test_make_optimizer_uses_the_chosen_lr(name: str) -> None:
    optimizer = make_optimizer(tiny_model(), tiny_hparams(optimizer=name, lr=0.02))
    assert type(optimizer).__name__ == name and optimizer.param_groups[0]["lr"] == 0.02


@pytest.mark.parametrize("name", ["Adam", "RAdam"])
def test_decoupled_weight_decay_shrinks_matrices_only(name: str) -> None:
    """With a zero gradient, decoupled decay multiplies each weight matrix by exactly (1 - lr * wd) a step
    and leaves biases and LayerNorm gains alone; coupled L2 in Adam would instead move a matrix by ~lr per
    element (Adam normalises the decay term away; RAdam does so from its 6th step), and decaying every
    parameter would shrink the gains."""
    model = tiny_model()
    hp = tiny_hparams(optimizer=name, lr=0.01, weight_decay=0.5, decoupled_weight_decay=True)
    optimizer = make_optimizer(model, hp)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(10):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
    for n, p in model.named_parameters():
        expected = before[n] * (1 - 0.01 * 0.5) ** 10 if p.dim() >= 2 else before[n]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7, msg=n)
    assert any(p.dim() < 2 for p in model.parameters()) and any(p.dim() >= 2 for p in model.parameters())
    assert "decoupled_weight_decay=True" in hp.optimizer_description()


def test_no_weight_decay_keeps_one_parameter_group() -> None:
    """Without weight decay the optimizer is the plain one: a single group over every parameter."""
    model = tiny_model()
    optimizer = make_optimizer(model, tiny_hparams(optimizer="Adam", weight_decay=0.0))
    assert len(optimizer.param_groups) == 1
    assert len(optimizer.param_groups[0]["params"]) == len(list(model.parameters()))


def test_sgd_weight_decay_is_the_same_shrink() -> None:
    """For plain SGD the L2 term already shrinks a weight by lr * weight_decay a step, so the decoupled flag
    (on by default) needs no SGD variant: a zero-gradient step scales matrices by exactly (1 - lr * wd)."""
    model = tiny_model()
    optimizer = make_optimizer(model, tiny_hparams(optimizer="SGD", lr=0.1, weight_decay=0.05))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for n, p in model.named_parameters():
        expected = before[n] * (1 - 0.1 * 0.05) if p.dim() >= 2 else before[n]
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-7, msg=n)


def test_plot_history_writes_a_png(tmp_path) -> None:
    history = [{"epoch": e, "train_loss": 6.0 - e, "val_loss": 6.1 - e} for e in (1, 2, 3)]
    fig = plot_history(history, test_loss=3.0, best_epoch=3, path=tmp_path / "figures" / "loss_ppl.png")
    assert (tmp_path / "figures" / "loss_ppl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(fig.axes) == 2


def test_inverse_square_root_schedule() -> None:
    f = dict(schedule="invsqrt", warmup=100, batches_per_epoch=50, total=1000, gamma=0.95)
    assert lr_factor(49, **f) == pytest.approx(0.5)  # warming up
    assert lr_factor(99, **f) == pytest.approx(1.0)  # the peak at the end of the warm-up
    assert lr_factor(399, **f) == pytest.approx(0.5)  # sqrt(100 / 400)
    assert lr_factor(10**6 - 1, **f) == pytest.approx(0.01)


def test_draft_epochs_train_on_successive_slices() -> None:
    data = torch.arange(1000).view(-1, 1)  # 1000 rows
    assert epoch_slice(data, 3, None, 35) is data
    first, second = epoch_slice(data, 1, 4, 10), epoch_slice(data, 2, 4, 10)
    assert first[:, 0].tolist() == list(range(41)) and second[:, 0].tolist() == list(range(40, 81))
    assert count_batches(first, 10) == 4  # exactly max_batches batches, each with its target row
    late = epoch_slice(data, 30, 4, 10)  # wraps around instead of running off the end
    assert late.size(0) == 41 and late[-1, 0] < 1000


def test_cooldown_falls_linearly_to_zero_over_the_last_fraction() -> None:
    f = dict(schedule="invsqrt", warmup=100, batches_per_epoch=50, total=1000, gamma=0.95, cooldown=0.2)
    plain = {**f, "cooldown": 0.0}
    assert lr_factor(799, **f) == pytest.approx(lr_factor(799, **plain))  # untouched before the last 20%
    assert lr_factor(800, **f) == pytest.approx(lr_factor(800, **plain))  # the fall starts here
    assert lr_factor(900, **f) == pytest.approx(0.5 * lr_factor(900, **plain))
    assert lr_factor(1000, **f) == 0.0


@pytest.mark.parametrize(
    ("optimizer", "fused", "scale"),
    [("Adam", True, 30.0), ("Adam", True, 1e-3), ("Adam", False, 30.0), ("SGD", False, 30.0), ("RAdam", False, 30.0)],
)  # fmt: skip
def test_clip_and_step_equals_clip_grad_norm_then_step(optimizer: str, fused: bool, scale: float) -> None:
    torch.manual_seed(0)
    models = [tiny_model(), tiny_model()]
    kwargs = {"lr": 1e-2} | ({"fused": True} if fused else {})
    optimizers = [getattr(torch.optim, optimizer)(m.parameters(), **kwargs) for m in models]
    data = torch.randint(VOCAB, (6, 3))
    mask = models[0].generate_square_subsequent_mask(6)
    # one step from the same state (later steps would compare Adam's amplification of rounding noise);
    # scale 30: the norm is clipped; 1e-3: it is below the clip and left alone
    for i, (model, opt) in enumerate(zip(models, optimizers, strict=True)):
        opt.zero_grad()
        (model(data, mask).square().mean() * scale).backward()
        if i == 0:
            clip_and_step(opt, list(model.parameters()), 0.5)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
    assert not hasattr(optimizers[0], "grad_scale")  # the hook is removed after the step
    moved = 0.0
    for ours, theirs, start in zip(
        models[0].parameters(), models[1].parameters(), tiny_model().parameters(), strict=True
    ):
        assert torch.allclose(ours, theirs, atol=1e-6)
        moved = max(moved, (ours - start).abs().max().item())
    assert moved > 1e-4  # the step did happen


def test_the_embeddings_norm_over_the_batchs_words_is_clip_grad_norms() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    data = torch.randint(VOCAB // 2, (6, 3))  # half the words unused: their rows' gradient is zero
    mask = model.generate_square_subsequent_mask(6)
    (model(data, mask).square().mean() * 30.0).backward()
    embedding = model.encoder.weight
    assert embedding.grad[VOCAB // 2 :].abs().sum() == 0 and embedding.grad.abs().sum() > 0
    params = list(model.parameters())
    expected = torch.nn.utils.get_total_norm([p.grad for p in params])
    opt = torch.optim.Adam(params, lr=1e-2, fused=True)
    seen = []
    opt.register_step_pre_hook(lambda optimizer, *_: seen.append(optimizer.grad_scale.item()))
    clip_and_step(opt, params, 0.5, (embedding, data))
    assert expected > 0.5  # clipped: the factor depends on the norm
    assert seen[0] == pytest.approx(((expected + 1e-6) / 0.5).item(), rel=1e-6)
    # without the rows the same factor; with the wrong rows (words not in the batch) another one
    opt_rows = torch.optim.Adam(params, lr=1e-2, fused=True)
    wrong = []
    opt_rows.register_step_pre_hook(lambda optimizer, *_: wrong.append(optimizer.grad_scale.item()))
    clip_and_step(opt_rows, params, 0.5, (embedding, torch.arange(VOCAB // 2, VOCAB)))
    assert wrong[0] != pytest.approx(seen[0], rel=1e-3)


@pytest.mark.parametrize("tied", [False, True])
def test_train_sums_the_embeddings_norm_over_the_batchs_words_unless_tied(tied, monkeypatch) -> None:
    import hw3.train as train_module

    calls = []

    def spy(optimizer, params, clip, rows_used=None):
        calls.append(rows_used)
        return clip_and_step(optimizer, params, clip, rows_used)

    monkeypatch.setattr(train_module, "clip_and_step", spy)
    model = tie_weights(tiny_model()) if tied else tiny_model()
    hp = tiny_hparams()
    opt = make_optimizer(model, hp)
    data = torch.randint(VOCAB, (13, 2))
    train(model, 4, data, torch.nn.CrossEntropyLoss(), VOCAB, opt, make_scheduler(opt, hp, 3), 1,
          clip=0.5, progress=False)  # fmt: skip
    assert len(calls) == 3
    if tied:  # the decoder's gradient fills every row
        assert calls == [None] * 3
    else:
        weight, ids = calls[0]
        assert weight is model.encoder.weight and torch.equal(ids, data[:4])


def test_cpu_bf16_attention_is_computed_by_the_math_kernel_in_fp32() -> None:
    cpu = torch.device("cpu")
    with attention_kernel(cpu, torch.bfloat16):
        assert torch.backends.cuda.math_sdp_enabled()
        assert not torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()  # restored
    with attention_kernel(cpu, None):  # fp32: torch's choice (its flash kernel is fast in fp32)
        assert torch.backends.cuda.flash_sdp_enabled()
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 2, 35, 32).to(torch.bfloat16) for _ in range(3))
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)

    def error(out: torch.Tensor) -> float:
        return (out.double() - exact).abs().mean().item()

    flash = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with attention_kernel(cpu, torch.bfloat16):
        ours = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    fp32 = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert error(ours) == pytest.approx(error(fp32.to(torch.bfloat16)), rel=1e-3)
    assert error(ours) < 0.9 * error(flash)  # bf16 attention rounded once, at the end


def test_train_runs_its_attention_in_the_kernel_for_its_device(monkeypatch) -> None:
    import hw3.train as train_module

    kernels = []

    def spy(device, amp_dtype):
        kernels.append((device.type, amp_dtype))
        return attention_kernel(device, amp_dtype)

    monkeypatch.setattr(train_module, "attention_kernel", spy)
    model, hp = tiny_model(), tiny_hparams()
    opt = make_optimizer(model, hp)
    train(model, 4, torch.randint(VOCAB, (9, 2)), torch.nn.CrossEntropyLoss(), VOCAB, opt,
          make_scheduler(opt, hp, 2), 1, clip=0.5, amp_dtype=torch.bfloat16, progress=False)  # fmt: skip
    assert kernels == [("cpu", torch.bfloat16)] * 2


def test_a_resumed_run_continues_exactly_where_it_stopped() -> None:
    hp = tiny_hparams(epochs=3, dropout=0.2, precision="auto")  # dropout: the random generators matter
    data, val = torch.randint(VOCAB, (200, 20)), torch.randint(VOCAB, (80, 10))
    set_seed(hp.seed)
    straight = fit(box_model(hp), data, val, hp, progress=False)

    set_seed(hp.seed)
    saved = []

    def stop_after_two(result) -> None:
        saved.append(checkpoint_state(model, result))
        if len(result.history) == 2:
            raise KeyboardInterrupt

    model = box_model(hp)
    first = fit(model, data, val, hp, progress=False, on_epoch_end=stop_after_two)
    assert first.interrupted and len(first.history) == 2
    torch.manual_seed(12345)  # whatever happens in between must not matter
    resumed_model = box_model(hp)
    resumed = fit(resumed_model, data, val, hp, progress=False, resume=saved[-1])
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    key = [(row["train_loss"], row["val_loss"], row["lr"]) for row in straight.history]
    assert [(row["train_loss"], row["val_loss"], row["lr"]) for row in resumed.history] == key
    assert resumed.best_epoch == straight.best_epoch
    for name, tensor in straight.best_model.state_dict().items():
        assert torch.equal(resumed.best_model.state_dict()[name], tensor)


@pytest.fixture
def chunk_starts(monkeypatch) -> list[list[int]]:
    """The first row of every chunk ``train`` fetches; append an empty list to start recording an epoch."""
    import hw3.train as train_module

    real_get_batch = train_module.get_batch
    seen: list[list[int]] = [[]]

    def recording_get_batch(source, i, bptt):
        seen[-1].append(i)
        return real_get_batch(source, i, bptt)

    monkeypatch.setattr(train_module, "get_batch", recording_get_batch)
    return seen


def constant_lr_training() -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
    """A seeded tiny model with Adam at a constant learning rate: what one ``train`` call needs."""
    set_seed(211)
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


@pytest.mark.parametrize("cheap_dropout", [False, True])
def test_shuffled_epoch_visits_every_chunk_once_in_a_seeded_order(cheap_dropout: bool, chunk_starts) -> None:
    data = torch.randint(VOCAB, (96, 3))  # 95 target rows: 9 chunks of 10 rows and a short one of 5
    for shuffle in (False, True, True):
        model, optimizer, scheduler = constant_lr_training()
        chunk_starts.append([])
        # the short chunk comes mid-epoch when shuffled: the full chunks after it still need the whole mask
        loss = train_epoch(
            model, 10, data, optimizer, scheduler, 1, shuffle=shuffle, cheap_dropout=cheap_dropout
        )
        assert math.isfinite(loss)
    in_order, shuffled, again = chunk_starts[1:]
    assert in_order == list(range(0, 95, 10))
    assert sorted(shuffled) == in_order and shuffled != in_order
    assert again == shuffled  # the order comes from torch's seeded generator
    assert shuffled[-1] != 90  # with seed 211 the short chunk is mid-epoch: the mask case above is exercised


@pytest.mark.parametrize("shuffle", [False, True])
def test_random_offset_cuts_the_text_at_a_seeded_new_place_each_epoch(shuffle: bool, chunk_starts) -> None:
    data = torch.randint(VOCAB, (96, 3))  # 95 target rows
    runs: list[list[list[int]]] = []
    for _ in range(2):
        model, optimizer, scheduler = constant_lr_training()
        runs.append([])
        for epoch in (1, 2, 3, 4):
            chunk_starts.append([])
            loss = train_epoch(
                model, 10, data, optimizer, scheduler, epoch, shuffle=shuffle, random_offset=True
            )
            assert math.isfinite(loss)
            runs[-1].append(chunk_starts[-1])
    first, again = runs
    assert first == again  # the offsets (and orders) come from torch's seeded generator
    offsets = [min(starts) for starts in first]
    assert all(0 <= o < 10 for o in offsets) and len(set(offsets)) > 1  # cut elsewhere from epoch to epoch
    assert any(o > 0 for o in offsets)
    for o, starts in zip(offsets, first, strict=True):
        # every chunk from the offset on, each once; only the rows before the offset are left out
        assert sorted(starts) == list(range(o, 95, 10))
        assert (starts == sorted(starts)) == (not shuffle)


def test_without_random_offset_the_chunks_start_at_row_zero_as_in_the_assignment(chunk_starts) -> None:
    model, optimizer, scheduler = constant_lr_training()
    for epoch in (1, 2):
        train_epoch(model, 10, torch.randint(VOCAB, (96, 3)), optimizer, scheduler, epoch)
    assert chunk_starts[-1] == list(range(0, 95, 10)) * 2


@pytest.mark.parametrize(
    ("field", "keyword", "described"),
    [
        ("shuffle_batches", "shuffle", "batch order"),
        ("random_offset", "random_offset", "chunk boundaries"),
    ],
)
def test_batch_order_and_chunk_boundaries_reach_train_through_fit(
    field, keyword, described, monkeypatch
) -> None:
    import hw3.train as train_module

    calls: list[bool] = []
    real_train = train_module.train

    def spy(*args, **kwargs):
        calls.append(kwargs[keyword])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train_module, "train", spy)
    data = periodic_corpus(40, 2)
    for flag in (False, True):
        hp = tiny_hparams(epochs=1, **{field: flag})
        fit(box_model(hp), data, data, hp, progress=False)
        assert (described in hp.describe()) == flag  # described only when it applies
    assert calls == [False, True]


def comparison_setup(dropout: float = 0.2) -> tuple[HParams, TransformerModel, torch.Tensor]:
    hp = tiny_hparams(dropout=dropout, precision="fp32")
    set_seed(hp.seed)
    return hp, box_model(hp), torch.randint(VOCAB, (3 * hp.bptt + 1, 4))


def test_the_loss_check_runs_train_both_ways_and_finds_them_equal() -> None:
    hp, model, data = comparison_setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    calls = []

    def spy_train(*args, **kwargs):
        calls.append(kwargs["fused_loss"])
        return train(*args, **kwargs)

    result = check_loss_lines(spy_train, model, data, hp, VOCAB, batches=3, timed_batches=2)
    assert result.precision == "fp32" and result.loss_tolerance == 1e-4 and result.passed
    assert result.batches == [1, 2, 3]  # three batches spread over the data, numbered from 1
    assert max(result.gradient_difference) < result.gradient_tolerance
    assert all(abs(a - b) < 1e-5 for a, b in zip(result.loss_written, result.loss_fused, strict=True))
    assert result.loss_written[0] == pytest.approx(math.log(VOCAB), rel=0.2)  # an untrained model
    assert result.ms_written > 0 and result.ms_fused > 0 and result.timed_batches == 2
    assert calls.count(False) == calls.count(True) == 3 + 1 + 2  # checked, warmed up, timed
    assert torch.equal(rng, torch.get_rng_state())  # the training that follows is unaffected
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # copies were trained
    text = str(result)
    assert "loss 0.0001 nats, gradient 0.0001 (relative): both hold" in text and "x as fast" in text
    # the timing runs with the run's own dropout, whatever it is, and says which
    assert f"taking turns, with the run's dropout ({hp.dropout:g}):" in text
    assert max(len(line) for line in text.splitlines()) <= 100  # a printed line the PDF does not wrap


def test_the_speed_comparison_is_not_biased_by_a_slow_spell_of_the_machine() -> None:
    # the machine is slow for the first 12 calls (the two warm-ups and five batches of each way),
    # then fast: timing one way after the other would charge the whole slow spell to the first
    import time

    hp, model, data = comparison_setup()
    calls = []

    def sleeper(*args) -> None:
        calls.append(1)
        time.sleep(0.02 if len(calls) <= 12 else 0.001)

    ms = ms_per_batch(model, hp, {"written": sleeper, "fused": sleeper}, data, batches=10)
    assert len(calls) == 22
    assert 0.8 < ms["written"] / ms["fused"] < 1.25


def test_the_loss_check_catches_a_loss_line_that_computes_another_loss(monkeypatch) -> None:
    """A decoder_cross_entropy that forgets the decoder's bias: the check must say so."""
    import hw3.train as train_module
    from hw3.fused_loss import hidden_states, linear_cross_entropy

    hp, model, data = comparison_setup()
    with torch.no_grad():
        model.decoder.bias.normal_()  # a bias that matters

    def without_bias(model, data, src_mask, targets):
        hidden = hidden_states(model, data, src_mask).reshape(-1, model.ninp)
        return linear_cross_entropy(
            hidden, model.decoder.weight, torch.zeros_like(model.decoder.bias), targets
        )

    monkeypatch.setattr(train_module, "decoder_cross_entropy", without_bias)
    result = check_loss_lines(train, model, data, hp, VOCAB, batches=2, timed_batches=1)
    assert not result.passed and "EXCEEDED" in str(result)
    assert max(result.gradient_difference) > 100 * result.gradient_tolerance


def test_without_dropout_switches_off_every_dropout_in_a_copy() -> None:
    model = box_model(tiny_hparams(dropout=0.3))
    quiet = without_dropout(model)
    assert quiet is not model
    assert all(m.p == 0.3 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert all(m.p == 0.0 for m in quiet.modules() if isinstance(m, torch.nn.Dropout))
    assert all(m.dropout == 0.0 for m in quiet.modules() if isinstance(m, torch.nn.MultiheadAttention))
    quiet.train()
    data, mask = torch.randint(VOCAB, (6, 2)), quiet.generate_square_subsequent_mask(6)
    assert torch.equal(quiet(data, mask), quiet(data, mask))  # training mode, yet deterministic


def test_epoch_weights_keep_a_copy_of_every_epoch() -> None:
    hp = tiny_hparams(epochs=2)
    set_seed(hp.seed)
    model = box_model(hp)
    data = periodic_corpus(40, 2)
    kept = EpochWeights(model)
    result = fit(model, data, data, hp, progress=False, on_epoch_end=kept)
    assert sorted(kept.states) == [1, 2]
    for name, tensor in model.state_dict().items():  # the last epoch's weights are the model's
        assert (
            torch.equal(kept.states[2][name], tensor) and kept.states[2][name].data_ptr() != tensor.data_ptr()
        )
    best = result.best_model.state_dict()
    assert all(torch.equal(kept.states[result.best_epoch][k], v) for k, v in best.items())


def test_building_the_model_prints_no_warning() -> None:
    """torch warned on every pre-LayerNorm model that it skips a fast path used only with padding
    masks (which the model never takes): one stray line at the end of each tuning report."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model(100, profile_defaults("quick"))
    assert [str(w.message) for w in caught] == []


def test_the_history_table_prints_a_test_loss_past_exps_range() -> None:
    """A diverged run's test loss (finite, past exp()'s range) made the table raise OverflowError."""
    from hw3.plots import history_table

    row = {"epoch": 1, "train_loss": 6.0, "val_loss": 800.0, "val_ppl": float("inf"), "lr": 1e-3}
    assert "inf" in history_table([row], 800.0, 1).splitlines()[-1]
