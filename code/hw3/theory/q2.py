"""Question 2: the variance through residual blocks ``u_{l+1} = u_l + W_l ReLU(u_l) + b_l``.

Three initialisations of the branches, biases 0 in all: He (``Var W_l[i,j] = 2/n``), the
depth-scaled one (``2/n * c/L``, c = 1) and the answer's exact scheme (``W_l = 0``), simulated at
the size the answer reports (n = 512, L = 50) and compared with its recurrence (``variance_step``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hw3.theory import SEED, Check

SCHEMES = ("he", "scaled", "zero")
WIDTH, DEPTH = 512, 50  # n and L of the answer's figure and table
# float32 holds variances up to 2^50 ~ 1e15 with room to spare and halves the simulation's time
DTYPE = torch.float32

# E[F|u] = 0 makes the Monte-Carlo ratio of check_conditional_mean ~1 (within a few percent over
# thousands of entries); a non-zero conditional mean makes it grow like sqrt(draws): ~5.7 for 32
MEAN_RATIO_TOLERANCE = 1.5
# Relative error of the simulated mean growth per layer minus one, (v_L / v_0)^(1/L) - 1, against
# the formula's n Var(W) / 2. The simulation is within about 1 % at n = 512, L = 50; a wrong rate is
# off by tens of percent (1 + 2/L instead of 1 + 1/L: 100 %).
GROWTH_TOLERANCE = 0.05
# E[ReLU(u_l)^2] / (Var(u_l) / 2): 1 for a symmetric u_l; the answer states "within 10 %"
SYMMETRY_TOLERANCE = 0.1


def he_weight_variance(n):  # numbers or sympy symbols
    """He (Kaiming) initialisation for ReLU: ``Var W_l[i,j] = 2 / n``."""
    return 2 / n


def scaled_weight_variance(n, L, c=1):
    """The depth-scaled alternative of the answer: ``Var W_l[i,j] = 2/n * c/L``."""
    return 2 / n * c / L


def exact_weight_variance():
    """The exact scheme of the answer: ``W_l = 0`` (and ``b_l = 0``), so ``Var W_l[i,j] = 0``."""
    return 0


def weight_variance(scheme: str, n: int, L: int) -> float:
    """``Var W_l[i,j]`` of each scheme (the biases are 0 in all of them)."""
    if scheme == "he":
        return float(he_weight_variance(n))
    if scheme == "scaled":
        return float(scaled_weight_variance(n, L))
    if scheme == "zero":
        return float(exact_weight_variance())
    raise ValueError(f"unknown scheme {scheme!r}: one of {', '.join(SCHEMES)}")


def variance_step(v, n, sigma2, beta2):
    """The answer's recurrence (symmetric u_l): v_{l+1} = (1 + n sigma_l^2 / 2) v_l + beta_l^2."""
    return (1 + n * sigma2 / 2) * v + beta2


def predicted_variance(
    scheme: str, n: int, L: int, step: Callable[..., float] = variance_step
) -> list[float]:
    """``Var(u_l[i])`` for l = 0..L by ``step`` from ``Var(u_0[i]) = 1``, biases 0."""
    sigma2, variances = weight_variance(scheme, n, L), [1.0]
    for _ in range(L):
        variances.append(float(step(variances[-1], n, sigma2, 0.0)))
    return variances


def simulate_residual(
    scheme: str,
    n: int = WIDTH,
    L: int = DEPTH,
    networks: int = 16,
    batch: int = 64,
    bias_mean: float = 0.0,
    mean_check_layers: Sequence[int] = (0, 12, 25, 37, 49),
    mean_check_draws: int = 32,
    seed: int = SEED,
) -> dict[str, Any]:
    """Pushes inputs ``u_0 ~ N(0, I_n)`` through L residual ReLU blocks initialised by ``scheme``,
    in ``networks`` independently initialised networks with ``batch`` inputs each.

    ``Var(u_l[i])`` in the answer is over the inputs *and* the weights; the entries are
    exchangeable, so it is estimated by pooling all networks x batch x n entries (one network alone
    is noisy: the fluctuation of one weight draw compounds over depth).

    Returns, for l = 0..L, that variance and the symmetry ratio E[ReLU(u_l)^2] / (Var(u_l) / 2);
    and, at ``mean_check_layers``, a Monte-Carlo test of E[F_l(u_l) | u_l] = 0: for a fixed u_l,
    F_l is drawn with ``mean_check_draws`` fresh weights; ``cond_mean_ratio`` is
    RMS(mean over draws of F) / RMS(F) * sqrt(draws), about 1 when the conditional mean is 0 and
    growing like sqrt(draws) otherwise (0 when F is identically 0). ``bias_mean`` != 0 breaks
    E[F|u] = 0 (the tests use it to show that the check can fail).
    """
    gen = torch.Generator().manual_seed(seed)
    std = math.sqrt(weight_variance(scheme, n, L))

    def weights(*lead: int) -> Tensor:
        if std == 0.0:
            return torch.zeros(*lead, n, n, dtype=DTYPE)
        return torch.randn(*lead, n, n, generator=gen, dtype=DTYPE) * std

    b = torch.full((n,), bias_mean, dtype=DTYPE)
    u = torch.randn(networks, batch, n, generator=gen, dtype=DTYPE)
    variances, symmetry, ratios, max_abs_f = [float(u.var())], [], {}, 0.0
    for layer in range(L):
        h = torch.relu(u)
        f = h @ weights(networks).transpose(1, 2) + b
        max_abs_f = max(max_abs_f, float(f.abs().max()))
        if layer in mean_check_layers:
            fixed = h[0]
            draws = torch.stack([fixed @ weights().T + b for _ in range(mean_check_draws)])
            rms_f = float(draws.pow(2).mean().sqrt())
            rms_mean = float(draws.mean(dim=0).pow(2).mean().sqrt())
            ratio = 0.0 if rms_f == 0.0 else rms_mean / rms_f * math.sqrt(mean_check_draws)
            ratios[layer] = ratio
        symmetry.append(float(h.pow(2).mean() / (u.var() / 2)))
        u = u + f
        variances.append(float(u.var()))
    return {
        "scheme": scheme,
        "n": n,
        "L": L,
        "networks": networks,
        "batch": batch,
        "mean_check_draws": mean_check_draws,
        "variance": variances,
        "predicted": predicted_variance(scheme, n, L),
        "symmetry_ratio": symmetry,
        "cond_mean_ratio": ratios,
        "max_abs_F": max_abs_f,
    }


def mean_growth(variances: Sequence[float]) -> float:
    """The mean growth factor per layer, ``(v_L / v_0)^(1/L)``."""
    return float((variances[-1] / variances[0]) ** (1.0 / (len(variances) - 1)))


def check_growth(
    sims: dict[str, dict[str, Any]], step: Callable[..., float] = variance_step
) -> Check:
    """For every scheme with a non-zero branch: the simulated mean growth per layer minus one
    against the rate of ``step`` minus one (n Var(W) / 2), relative error. The growth *minus one*,
    because with the depth-scaled variance the rate is 1.02: a wrong 1.04 is only 2 % off the
    growth, but 100 % off the growth minus one."""
    worst, rates = 0.0, {}
    for scheme, s in sims.items():
        rate = float(step(1.0, s["n"], weight_variance(scheme, s["n"], s["L"]), 0.0)) - 1.0
        if rate == 0.0:
            continue  # the exact scheme: check_exact_scheme
        simulated = mean_growth(s["variance"]) - 1.0
        rates[scheme] = {"formula": rate, "simulated": simulated}
        worst = max(worst, abs(simulated - rate) / rate)
    return Check("q2 growth", worst, GROWTH_TOLERANCE, {"rates": rates})


def check_exact_scheme(sim: dict[str, Any]) -> Check:
    """The exact scheme keeps every u_l equal to u_0: F_l is 0 and the variance never moves."""
    v = np.asarray(sim["variance"])
    error = float(np.max(np.abs(v - v[0])) + sim["max_abs_F"])
    return Check("q2 exact", error, 0.0, {"variance_u0": float(v[0])})


def check_conditional_mean(sims: dict[str, dict[str, Any]]) -> Check:
    """The Monte-Carlo ratio of :func:`simulate_residual` for E[F_l | u_l] = 0, the worst one."""
    ratios = {scheme: max(s["cond_mean_ratio"].values(), default=0.0) for scheme, s in sims.items()}
    return Check(
        "q2 conditional mean", max(ratios.values()), MEAN_RATIO_TOLERANCE, {"ratio": ratios}
    )


def check_symmetry(sims: dict[str, dict[str, Any]]) -> Check:
    """``E[ReLU(u_l)^2] / (Var(u_l) / 2)`` against 1 at every layer of the schemes that move u_l."""
    deviations = {
        scheme: float(np.max(np.abs(np.asarray(s["symmetry_ratio"]) - 1.0)))
        for scheme, s in sims.items()
        if s["max_abs_F"] > 0.0
    }
    return Check(
        "q2 symmetry", max(deviations.values()), SYMMETRY_TOLERANCE, {"deviation": deviations}
    )


def run_checks(sims: dict[str, dict[str, Any]]) -> list[Check]:
    """Every Q2 check on the simulations of all three schemes."""
    return [
        check_conditional_mean(sims),
        check_growth(sims),
        check_exact_scheme(sims["zero"]),
        check_symmetry(sims),
    ]
