"""hw3build.device_check: one training step on the chosen device against the CPU's, before training."""

from __future__ import annotations

import pytest
import torch
from hw3.hparams import profile_defaults
from hw3build.device_check import DeviceCheckFailed, check_device
from hw3build.preflight import PreflightError, check_training_device

SMALL = profile_defaults("quick").replace(emsize=200, nhid=200, nlayers=2, nhead=2)


def test_the_cpu_passes_in_each_precision() -> None:
    for precision in ("fp32", "bf16"):
        result = check_device("cpu", SMALL.replace(precision=precision))
        assert result.device == "cpu" and 9.5 < result.loss_cpu < 12  # an untrained model: ~log(28,782)
        assert abs(result.loss_device - result.loss_cpu) <= 1e-2 * result.loss_cpu
    fp32 = check_device("cpu", SMALL.replace(precision="fp32"))
    assert fp32.precision == "fp32" and fp32.loss_device == pytest.approx(fp32.loss_cpu, rel=1e-6)


def test_the_training_that_follows_is_unaffected() -> None:
    torch.manual_seed(3)
    before = torch.get_rng_state()
    check_device("cpu", SMALL.replace(precision="fp32"))
    assert torch.equal(before, torch.get_rng_state())


def test_a_device_that_computes_wrongly_is_named_with_the_fix(monkeypatch) -> None:
    """A simulated broken device: its matrix products are off by 5%, as a bad kernel or driver might be."""
    import hw3build.device_check as module

    real_one_step = module._one_step

    def broken(model, hp, rows, amp_dtype):
        loss, finite = real_one_step(model, hp, rows, amp_dtype)
        return (loss * 1.05, finite) if hp.precision != "fp32" else (loss, finite)

    monkeypatch.setattr(module, "_one_step", broken)
    with pytest.raises(DeviceCheckFailed) as raised:
        check_device("cpu", SMALL.replace(precision="bf16"))
    message = str(raised.value)
    assert "one training step on cpu (bf16 autocast)" in message and "off by more than" in message
    assert 'set device = "cpu" (or precision = "fp32") in submission.toml' in message


def test_a_device_that_fails_or_is_missing_stops_the_preflight(monkeypatch) -> None:
    import hw3build.device_check as module

    def crashing(*args):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(module, "_one_step", crashing)
    config = type("Config", (), {"device": "cpu", "hparams": SMALL})()
    with pytest.raises(PreflightError, match='illegal memory access.*\n.*device = "cpu"'):
        check_training_device(config)
    if not torch.cuda.is_available():  # asked for a GPU on a machine without one
        config.device = "cuda"
        with pytest.raises(PreflightError, match="CUDA is not available"):
            check_training_device(config)
