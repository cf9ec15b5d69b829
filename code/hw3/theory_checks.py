"""Numerical checks behind the Part 1 theory answers (``theory/q1.tex`` ... ``q3.tex``).

Every claim of the answers that can be computed is computed here, and the formulas the answers state are
single-sourced in this module (``sa_multiplications``, ``bptt_grad_W`` ...), so a wrong formula fails here
and in ``tests/test_theory_checks.py``:

- Q1.4: the multiplication count of one self-attention layer (Eq. 2), by counting the operations of an
  actual implementation (``torch.utils.flop_counter.FlopCounterMode`` for the matrix products, a dispatch
  mode for the element-wise steps) against :func:`sa_multiplications`.
- Q1.5: Eq. 3 evaluated literally (loops over ``sim``) against ``softmax(QK^T/sqrt(D)) V``.
- Q2: the residual initialisation schemes simulated over depth (conditional mean of ``F_l`` and the variance
  of ``u_l``), with the figure ``q2_variance.pdf``.
- Q3: the closed-form BPTT gradient (element-wise and matrix form) against autograd, and the Jacobian-norm
  bounds behind the exploding/vanishing argument.

``python -m hw3.theory_checks [--out DIR] [--pdf PATH]`` prints every comparison with its largest error,
writes ``q1_checks.tex``, ``q2_checks.tex``, ``q3_checks.tex``, ``q2_variance.pdf`` and ``checks.json`` to
DIR (default ``build/theory``), optionally compiles ``theory/standalone.tex`` to PATH, and exits non-zero
if any check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

SEED = 211
THEORY_DIR = Path(__file__).resolve().parents[2] / "theory"
DEFAULT_OUT = Path("build/theory")


@dataclass
class CheckResult:
    """One comparison: what was compared, the largest error against its tolerance, and table rows."""

    name: str
    description: str
    max_error: float
    tolerance: float
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        # `not (err <= tol)` also catches NaN
        return bool(self.max_error <= self.tolerance)

    def line(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        return f"[{status}] {self.name}: {self.description}; largest error {self.max_error:.3g} (tolerance {self.tolerance:.3g})"


# ----------------------------------------------------------------------------------------------------------
# Q1.4: multiplications of one self-attention layer (Eq. 2 only)
# ----------------------------------------------------------------------------------------------------------


def sa_operation_counts(T: int, D: int, M: int) -> dict[str, int]:  # noqa: N803
    """Operations of Eq. 2 by step, as stated in the answer to Q1.4.

    ``qk``: the T x T scores QK^T, D multiplications each; ``scale``: multiplying the T^2 scores by
    1/sqrt(D); ``exp``: the T^2 exponentials of the softmax; ``div``: dividing the T^2 exponentials by their
    row sums; ``av``: the T x M product with V, T multiplications each.
    """
    return {"qk": T * T * D, "scale": T * T, "exp": T * T, "div": T * T, "av": T * T * M}


def sa_multiplications(T: int, D: int, M: int) -> int:  # noqa: N803
    """Multiplications (divisions included, exponentials not) of Eq. 2: ``T^2 (D + M + 2)``."""
    return T * T * (D + M + 2)


def sa_exponentials(T: int) -> int:  # noqa: N803
    """Exponentials of the softmax in Eq. 2: one per score, ``T^2``."""
    return T * T


def self_attention(Q: Tensor, K: Tensor, V: Tensor) -> Tensor:  # noqa: N803
    """Eq. 2 written out step by step, ``softmax(Q K^T / sqrt(D)) V``, so every operation is visible."""
    D = Q.shape[-1]  # noqa: N806
    scores = (Q @ K.transpose(-2, -1)) * (1.0 / math.sqrt(D))
    # subtracting the row maximum changes nothing mathematically (it cancels in the ratio) and costs no
    # multiplication; it keeps exp from overflowing
    e = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    probs = e / e.sum(dim=-1, keepdim=True)
    return probs @ V


class ElementwiseCounter(TorchDispatchMode):
    """Counts the elements produced by each element-wise aten op (one operation per output element)."""

    MULTIPLICATIVE = ("aten.mul.", "aten.div.")
    EXPONENTIAL = ("aten.exp.",)
    MATRIX = ("aten.mm.", "aten.bmm.", "aten.addmm.", "aten.baddbmm.")

    def __init__(self) -> None:
        super().__init__()
        self.by_op: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        if isinstance(out, Tensor):
            name = str(func)
            self.by_op[name] = self.by_op.get(name, 0) + out.numel()
        return out

    def count(self, prefixes: Sequence[str]) -> int:
        return sum(n for op, n in self.by_op.items() if op.startswith(tuple(prefixes)))


def count_sa_operations(
    T: int,  # noqa: N803
    D: int,  # noqa: N803
    M: int,  # noqa: N803
    attention: Callable[[Tensor, Tensor, Tensor], Tensor] = self_attention,
    seed: int = SEED,
) -> dict[str, int]:
    """Runs ``attention`` on random Q, K, V and counts its operations.

    Matrix products: ``FlopCounterMode`` (which counts a multiply-add as 2 FLOPs, so multiplications are
    FLOPs / 2). Element-wise: every ``mul``/``div`` output element is one multiplication, every ``exp``
    output element one exponential.
    """
    gen = torch.Generator().manual_seed(seed)
    Q = torch.randn(T, D, generator=gen, dtype=torch.float64)  # noqa: N806
    K = torch.randn(T, D, generator=gen, dtype=torch.float64)  # noqa: N806
    V = torch.randn(T, M, generator=gen, dtype=torch.float64)  # noqa: N806
    with FlopCounterMode(display=False) as flops, ElementwiseCounter() as ew:
        attention(Q, K, V)
    matmul_flops = flops.get_total_flops()
    if matmul_flops % 2:
        raise AssertionError(f"odd FLOP count {matmul_flops}: not all multiply-adds")
    elementwise = ew.count(ElementwiseCounter.MULTIPLICATIVE)
    return {
        "matmul_multiplications": matmul_flops // 2,
        "elementwise_multiplications": elementwise,
        "multiplications": matmul_flops // 2 + elementwise,
        "exponentials": ew.count(ElementwiseCounter.EXPONENTIAL),
    }


Q1_SIZES: tuple[tuple[int, int, int], ...] = (
    (1, 1, 1),
    (2, 3, 5),
    (7, 4, 3),
    (16, 8, 8),
    (64, 32, 16),
    (128, 64, 64),
)


def check_multiplication_count(
    sizes: Sequence[tuple[int, int, int]] = Q1_SIZES,
    formula: Callable[[int, int, int], int] = sa_multiplications,
) -> CheckResult:
    """The counted multiplications and exponentials of :func:`self_attention` against the formulas."""
    rows, worst = [], 0
    for T, D, M in sizes:  # noqa: N806
        counted = count_sa_operations(T, D, M)
        predicted = formula(T, D, M)
        err = max(
            abs(counted["multiplications"] - predicted),
            abs(counted["exponentials"] - sa_exponentials(T)),
        )
        worst = max(worst, err)
        rows.append(
            {
                "T": T,
                "D": D,
                "M": M,
                **counted,
                "formula": predicted,
                "formula_exp": sa_exponentials(T),
            }
        )
    return CheckResult(
        "q1.4 multiplications",
        f"counted multiplications and exponentials of an SA implementation vs T^2(D+M+2) and T^2, {len(sizes)} sizes",
        float(worst),
        0.0,
        rows,
    )


def sim(q: Sequence[float], k: Sequence[float]) -> float:
    """``exp(q k^T / sqrt(D))`` for two row vectors, written as an explicit sum."""
    D = len(q)  # noqa: N806
    return math.exp(sum(q[d] * k[d] for d in range(D)) / math.sqrt(D))


def attention_eq3(Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> np.ndarray:  # noqa: N803
    """Eq. 3 taken literally: ``V'_i = sum_j sim(Q_i, K_j) V_j / sum_r sim(Q_i, K_r)``, with loops."""
    T, M = len(Q), V.shape[1]  # noqa: N806
    out = np.zeros((T, M))
    for i in range(T):
        denominator = sum(sim(Q[i], K[r]) for r in range(T))
        for m in range(M):
            out[i, m] = sum(sim(Q[i], K[j]) * V[j, m] for j in range(T)) / denominator
    return out


def attention_eq2(Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> np.ndarray:  # noqa: N803
    """Eq. 2 with torch's softmax (over each row), in float64."""
    q, k, v = (torch.from_numpy(a) for a in (Q, K, V))
    return (torch.softmax(q @ k.T / math.sqrt(q.shape[1]), dim=-1) @ v).numpy()


Q1_EQ3_SIZES: tuple[tuple[int, int, int], ...] = (
    (1, 1, 1),
    (3, 2, 5),
    (7, 4, 3),
    (12, 8, 6),
    (20, 16, 4),
)


def check_eq3(
    sizes: Sequence[tuple[int, int, int]] = Q1_EQ3_SIZES,
    reference: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] = attention_eq2,
    seed: int = SEED,
) -> CheckResult:
    """Eq. 3 (literal loops over ``sim``) against Eq. 2 (``reference``) on random float64 inputs."""
    rng = np.random.default_rng(seed)
    rows, worst = [], 0.0
    for T, D, M in sizes:  # noqa: N806
        Q, K, V = rng.normal(size=(T, D)), rng.normal(size=(T, D)), rng.normal(size=(T, M))  # noqa: N806
        err = float(np.max(np.abs(attention_eq3(Q, K, V) - reference(Q, K, V))))
        worst = max(worst, err)
        rows.append({"T": T, "D": D, "M": M, "max_abs_diff": err})
    return CheckResult(
        "q1.5 eq3 = eq2",
        f"Eq. 3 with explicit sums of sim vs softmax(QK^T/sqrt(D))V, {len(sizes)} random sizes, float64",
        worst,
        1e-12,
        rows,
    )


# ----------------------------------------------------------------------------------------------------------
# Q2: variance through residual blocks u_{l+1} = u_l + W_l ReLU(u_l) + b_l
# ----------------------------------------------------------------------------------------------------------

Q2_SCHEMES = ("he", "scaled", "zero")
# float32 is plenty for variances up to 2^50 ~ 1e15 checked to 10 %, and halves the simulation's time
DTYPE_Q2 = torch.float32
Q2_LABELS = {
    "he": r"He: $\mathrm{Var}\,W_l[i,j]=2/n$",
    "scaled": r"scaled: $\mathrm{Var}\,W_l[i,j]=2/(nL)$",
    "zero": r"zero branch: $W_l=0$ (exact)",
}


def q2_weight_variance(scheme: str, n: int, L: int) -> float:  # noqa: N803
    """Variance of the entries of W_l for each scheme (biases are 0 in all of them)."""
    return {"he": 2.0 / n, "scaled": 2.0 / (n * L), "zero": 0.0}[scheme]


def q2_predicted_variance(scheme: str, n: int, L: int, layers: int | None = None) -> np.ndarray:  # noqa: N803
    """``Var(u_l) = (1 + n sigma^2 / 2)^l`` for l = 0..layers (Var(u_0) = 1, b = 0, symmetric u_l)."""
    layers = L if layers is None else layers
    growth = 1.0 + n * q2_weight_variance(scheme, n, L) / 2.0
    return growth ** np.arange(layers + 1)


def simulate_residual(
    scheme: str,
    n: int = 512,
    L: int = 50,  # noqa: N803
    networks: int = 16,
    batch: int = 64,
    bias_mean: float = 0.0,
    mean_check_layers: Sequence[int] = (0, 12, 25, 37, 49),
    mean_check_draws: int = 32,
    mean_check_batch: int = 64,
    seed: int = SEED,
) -> dict[str, Any]:
    """Pushes inputs ``u_0 ~ N(0, I_n)`` through L residual ReLU blocks initialised by ``scheme``, in
    ``networks`` independently initialised networks with ``batch`` inputs each.

    ``Var(u_l[i])`` in the answer is over the inputs *and* the weights; the entries are exchangeable, so it is
    estimated by pooling all networks x batch x n entries (one network alone gives a noisy estimate: the
    layer-to-layer fluctuation of one weight draw compounds over depth).

    Returns, for l = 0..L, that variance, the prediction, the per-layer growth ``Var(u_{l+1}) / Var(u_l)``,
    the symmetry ratio ``E[ReLU(u_l)^2] / (Var(u_l) / 2)`` and the cross term
    ``2 Cov(u_l, F_l) / Var(u_{l+1})``; and, at ``mean_check_layers``, a Monte-Carlo test of
    E[F_l(u_l) | u_l] = 0: for fixed u_l, F_l is drawn with ``mean_check_draws`` fresh weight draws;
    ``cond_mean_ratio`` is RMS(mean over draws of F) / RMS(F) * sqrt(draws), about 1 when the conditional
    mean is 0 and growing like sqrt(draws) otherwise (0 when F is identically 0). ``bias_mean`` != 0 gives a
    scheme that violates E[F|u] = 0 (the tests use it to show the check can fail).
    """
    gen = torch.Generator().manual_seed(seed)
    var_w = q2_weight_variance(scheme, n, L)
    std = math.sqrt(var_w)

    def weights(*lead: int) -> Tensor:
        if var_w == 0.0:
            return torch.zeros(*lead, n, n, dtype=DTYPE_Q2)
        return torch.randn(*lead, n, n, generator=gen, dtype=DTYPE_Q2) * std

    b = torch.full((n,), bias_mean, dtype=DTYPE_Q2)
    u = torch.randn(networks, batch, n, generator=gen, dtype=DTYPE_Q2)
    variances = [float(u.var())]
    symmetry, cross = [], []
    ratios: dict[int, float] = {}
    max_abs_f = 0.0
    for layer in range(L):
        h = torch.relu(u)
        f = h @ weights(networks).transpose(1, 2) + b
        max_abs_f = max(max_abs_f, float(f.abs().max()))
        if layer in mean_check_layers:
            fixed = h[0, :mean_check_batch]
            draws = torch.stack([fixed @ weights().T + b for _ in range(mean_check_draws)])
            rms_f = float(draws.pow(2).mean().sqrt())
            rms_mean = float(draws.mean(dim=0).pow(2).mean().sqrt())
            ratios[layer] = 0.0 if rms_f == 0.0 else rms_mean / rms_f * math.sqrt(mean_check_draws)
        symmetry.append(float(h.pow(2).mean() / (u.var() / 2)))
        u_next = u + f
        cross.append(float(2 * ((u - u.mean()) * (f - f.mean())).mean() / u_next.var()))
        u = u_next
        variances.append(float(u.var()))
    var = np.asarray(variances)
    return {
        "scheme": scheme,
        "n": n,
        "L": L,
        "networks": networks,
        "batch": batch,
        "mean_check_draws": mean_check_draws,
        "variance": variances,
        "predicted": q2_predicted_variance(scheme, n, L).tolist(),
        "growth": (var[1:] / var[:-1]).tolist(),
        "predicted_growth": 1.0 + n * var_w / 2.0,
        "symmetry_ratio": symmetry,
        "cross_term": cross,
        "cond_mean_ratio": ratios,
        "max_abs_F": max_abs_f,
    }


# E[F|u] = 0 makes the Monte-Carlo ratio ~1 (chi-like over thousands of entries, so within a few percent);
# a violated mean makes it grow like sqrt(draws) (~5.7 for 32 draws) or more
Q2_MEAN_RATIO_TOL = 1.5
# relative tolerance of the simulated per-layer growth Var(u_{l+1})/Var(u_l) against 1 + n Var(W)/2: the
# estimate from 16 networks fluctuates by a few percent, and E[ReLU(u)^2] = Var(u)/2 holds only approximately
# for l >= 1 (u_l is symmetric only up to O(1/sqrt(n)))
Q2_GROWTH_RTOL = 0.1


def check_q2(sims: dict[str, dict[str, Any]]) -> list[CheckResult]:
    """The conditional mean of F_l and the per-layer variance growth against the answer's formulas."""
    mean_rows, var_rows = [], []
    worst_mean, worst_var = 0.0, 0.0
    for scheme, s in sims.items():
        ratio = max(s["cond_mean_ratio"].values(), default=0.0)
        worst_mean = max(worst_mean, ratio)
        emp, pred = np.asarray(s["variance"]), np.asarray(s["predicted"])
        growth_err = float(np.max(np.abs(np.asarray(s["growth"]) / s["predicted_growth"] - 1.0)))
        if scheme == "zero":
            # the exact scheme: u_l = u_0 at every layer, nothing may move at all
            growth_err = float(np.max(np.abs(emp - emp[0])) + s["max_abs_F"])
        worst_var = max(worst_var, growth_err)
        mean_rows.append({"scheme": scheme, "cond_mean_ratio": ratio, "max_abs_F": s["max_abs_F"]})
        var_rows.append(
            {
                "scheme": scheme,
                "var_u0": emp[0],
                "var_uL": emp[-1],
                "predicted_uL": pred[-1],
                "max_growth_rel_err": growth_err,
                "max_abs_cross_term": float(np.max(np.abs(s["cross_term"]))),
                "symmetry_ratio_range": [
                    float(np.min(s["symmetry_ratio"])),
                    float(np.max(s["symmetry_ratio"])),
                ],
            }
        )
    return [
        CheckResult(
            "q2 E[F|u]=0",
            "Monte-Carlo conditional mean of F_l over fresh weights, RMS(mean)/RMS(F)*sqrt(draws) (~1 if zero)",
            worst_mean,
            Q2_MEAN_RATIO_TOL,
            mean_rows,
        ),
        CheckResult(
            "q2 variance",
            "simulated per-layer growth Var(u_l+1)/Var(u_l) vs 1 + n Var(W)/2, every layer, relative error "
            "(zero scheme: Var(u_l) - Var(u_0) exactly 0)",
            worst_var,
            Q2_GROWTH_RTOL,
            var_rows,
        ),
    ]


def plot_q2_variance(sims: dict[str, dict[str, Any]], path: Path) -> Path:
    """Simulated (markers) and predicted (lines) Var(u_l[i]) against depth, saved as PDF: every scheme on a
    log scale (left), and the bounded ones on a linear scale with the bound e (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_log, ax_lin) = plt.subplots(1, 2, figsize=(8.0, 3.3))
    colors = {"he": "tab:red", "scaled": "tab:blue", "zero": "tab:green"}
    for scheme, s in sims.items():
        layers = np.arange(len(s["variance"]))
        axes = (ax_log,) if scheme == "he" else (ax_log, ax_lin)
        for ax in axes:
            ax.plot(layers, s["predicted"], "-", color=colors.get(scheme), lw=1.2)
            ax.plot(
                layers[::2],
                s["variance"][::2],
                "o",
                ms=3,
                color=colors.get(scheme),
                label=Q2_LABELS[scheme],
            )
    any_sim = next(iter(sims.values()))
    ax_lin.axhline(math.e, color="0.4", ls="--", lw=1.0, label=r"bound $e$")
    ax_log.set_yscale("log")
    ax_log.set_title("all schemes (log scale)", fontsize=9)
    ax_lin.set_title("bounded schemes (linear scale)", fontsize=9)
    ax_lin.set_ylim(0.8, 3.0)
    for ax in (ax_log, ax_lin):
        ax.set_xlabel(r"layer $l$")
        ax.grid(True, which="major", alpha=0.3)
    ax_log.set_ylabel(r"$\mathrm{Var}(u_l[i])$")
    ax_log.legend(fontsize=7.5, loc="upper left")
    ax_lin.legend(fontsize=7.5, loc="upper left")
    fig.suptitle(
        f"n = {any_sim['n']}, L = {any_sim['L']}: markers simulation, lines theory", fontsize=9
    )
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.pdf")
    # no creation date: the same inputs give the same bytes
    fig.savefig(tmp, metadata={"CreationDate": None, "ModDate": None})
    plt.close(fig)
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------------------------------------
# Q3: BPTT for v_tau = phi(W v_{tau-1} + B x_tau), y_hat = C v_t, loss on the last step
# ----------------------------------------------------------------------------------------------------------


def leaky_relu(u: Tensor, p: float) -> Tensor:
    """``phi(u) = max(p u, u)`` for 0 <= p < 1."""
    return torch.where(u > 0, u, p * u)


def leaky_relu_derivative(u: Tensor, p: float) -> Tensor:
    """``phi'(u)``: 1 where u > 0, p elsewhere (the value at u = 0, a null event, is taken as p like torch)."""
    return torch.where(u > 0, torch.ones_like(u), torch.full_like(u, p))


def rnn_forward(
    W: Tensor, B: Tensor, x: Tensor, v0: Tensor, p: float
) -> tuple[list[Tensor], list[Tensor]]:  # noqa: N803
    """Pre-activations ``[u_1..u_t]`` and states ``[v_0..v_t]`` of the recurrence (x has one row per step)."""
    us, vs = [], [v0]
    for tau in range(x.shape[0]):
        u = W @ vs[-1] + B @ x[tau]
        us.append(u)
        vs.append(leaky_relu(u, p))
    return us, vs


def squared_loss(y: Tensor, y_hat: Tensor) -> Tensor:
    """``l(y, y_hat) = ||y_hat - y||^2 / 2``, whose gradient in y_hat is ``y_hat - y``."""
    return 0.5 * (y_hat - y).pow(2).sum()


def state_jacobian(us: list[Tensor], W: Tensor, t: int, tau: int, p: float) -> Tensor:  # noqa: N803
    """``J_{t,tau} = dv_t/dv_tau = D_t W D_{t-1} W ... D_{tau+1} W`` (identity for tau = t), 1-based steps."""
    J = torch.eye(W.shape[0], dtype=W.dtype)  # noqa: N806
    for s in range(tau + 1, t + 1):
        J = torch.diag(leaky_relu_derivative(us[s - 1], p)) @ W @ J  # noqa: N806
    return J


def bptt_grad_W(
    W: Tensor, B: Tensor, C: Tensor, x: Tensor, y: Tensor, v0: Tensor, p: float
) -> Tensor:  # noqa: N802, N803
    """Matrix form of the answer to Q3.1 (squared loss, so ``g = y_hat_t - y_t``):

    ``dl/dW = sum_{tau=1}^t D_tau J_{t,tau}^T C^T g v_{tau-1}^T``.
    """
    with torch.no_grad():
        us, vs = rnn_forward(W, B, x, v0, p)
        t = len(us)
        g = C @ vs[t] - y
        grad = torch.zeros_like(W)
        for tau in range(1, t + 1):
            delta = (
                torch.diag(leaky_relu_derivative(us[tau - 1], p))
                @ state_jacobian(us, W, t, tau, p).T
                @ C.T
                @ g
            )
            grad += torch.outer(delta, vs[tau - 1])
    return grad


def bptt_grad_W_element(
    W: Tensor,  # noqa: N803
    B: Tensor,  # noqa: N803
    C: Tensor,  # noqa: N803
    x: Tensor,
    y: Tensor,
    v0: Tensor,
    p: float,
    i: int,
    j: int,
) -> float:
    """Element form of the answer to Q3.1, written with scalar sums only:

    ``dl/dW[i,j] = sum_tau phi'(u_tau[i]) v_{tau-1}[j] sum_k sum_m g[m] C[m,k] J_{t,tau}[k,i]``.
    """
    with torch.no_grad():
        us, vs = rnn_forward(W, B, x, v0, p)
        t = len(us)
        g = C @ vs[t] - y
        total = 0.0
        for tau in range(1, t + 1):
            J = state_jacobian(us, W, t, tau, p)  # noqa: N806
            back = sum(
                float(g[m]) * float(C[m, k]) * float(J[k, i])
                for m in range(C.shape[0])
                for k in range(W.shape[0])
            )
            total += float(leaky_relu_derivative(us[tau - 1][i], p)) * float(vs[tau - 1][j]) * back
    return total


def autograd_grad_W(
    W: Tensor, B: Tensor, C: Tensor, x: Tensor, y: Tensor, v0: Tensor, p: float
) -> Tensor:  # noqa: N802, N803
    """The same gradient by autograd through the unrolled recurrence (torch's own leaky ReLU)."""
    Wg = W.detach().clone().requires_grad_(True)  # noqa: N806
    v = v0
    for tau in range(x.shape[0]):
        v = torch.nn.functional.leaky_relu(Wg @ v + B @ x[tau], negative_slope=p)
    squared_loss(y, C @ v).backward()
    return Wg.grad


Q3_CASES: tuple[tuple[int, float], ...] = (
    (1, 0.1),
    (2, 0.01),
    (5, 0.1),
    (5, 0.5),
    (12, 0.2),
    (30, 0.05),
)
Q3_DIMS = {"d": 5, "input": 3, "output": 2}


def q3_random_problem(t: int, seed: int) -> dict[str, Tensor]:
    """A random small RNN problem (float64): W (non-symmetric), B, C, inputs x_1..x_t, target y_t, v_0."""
    gen = torch.Generator().manual_seed(seed)
    d, k, m = Q3_DIMS["d"], Q3_DIMS["input"], Q3_DIMS["output"]

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    return {
        "W": rand(d, d) / math.sqrt(d),
        "B": rand(d, k),
        "C": rand(m, d),
        "x": rand(t, k),
        "y": rand(m),
        "v0": rand(d),
    }


def check_bptt(
    cases: Sequence[tuple[int, float]] = Q3_CASES,
    grad_fn: Callable[..., Tensor] = bptt_grad_W,
    element_fn: Callable[..., float] = bptt_grad_W_element,
    seed: int = SEED,
) -> CheckResult:
    """The closed-form gradient (matrix form, and element form at every (i, j)) against autograd."""
    rows, worst = [], 0.0
    for case, (t, p) in enumerate(cases):
        prob = q3_random_problem(t, seed + case)
        args = (prob["W"], prob["B"], prob["C"], prob["x"], prob["y"], prob["v0"], p)
        reference = autograd_grad_W(*args)
        scale = float(reference.abs().max())
        matrix_err = float((grad_fn(*args) - reference).abs().max()) / scale
        d = prob["W"].shape[0]
        element = torch.tensor(
            [[element_fn(*args, i, j) for j in range(d)] for i in range(d)], dtype=torch.float64
        )
        element_err = float((element - reference).abs().max()) / scale
        worst = max(worst, matrix_err, element_err)
        rows.append(
            {
                "t": t,
                "p": p,
                "matrix_rel_err": matrix_err,
                "element_rel_err": element_err,
                "grad_max": scale,
            }
        )
    return CheckResult(
        "q3.1 BPTT closed form",
        f"closed-form dl/dW (matrix form and every element) vs autograd, {len(cases)} (t, p) cases, float64, "
        "error relative to max|dl/dW|",
        worst,
        1e-10,
        rows,
    )


def check_jacobian_bounds(t: int = 30, p: float = 0.5, d: int = 8, seed: int = SEED) -> CheckResult:
    """``(p s_min(W))^k <= ||J_{t,t-k}||_2 <= ||W||_2^k`` for every lag k, in a vanishing regime
    (||W||_2 = 0.9) and an exploding one (W = 3 x orthogonal, so p s_min(W) = 1.5)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(d, d, generator=gen, dtype=torch.float64)
    orthogonal, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    regimes = {
        "vanishing": 0.9 * base / torch.linalg.matrix_norm(base, ord=2),
        "exploding": 3.0 * orthogonal,
    }
    rows, worst = [], 0.0
    for regime, W in regimes.items():  # noqa: N806
        x = torch.randn(t, d, generator=gen, dtype=torch.float64)
        us, _ = rnn_forward(
            W,
            torch.eye(d, dtype=torch.float64),
            x,
            torch.randn(d, generator=gen, dtype=torch.float64),
            p,
        )
        s = torch.linalg.svdvals(W)
        upper_rate, lower_rate = float(s[0]), p * float(s[-1])
        for k in range(t):
            norm = float(torch.linalg.matrix_norm(state_jacobian(us, W, t, t - k, p), ord=2))
            # violation of either bound, relative to the bound (0 when both hold)
            violation = max(norm / upper_rate**k - 1.0, 1.0 - norm / lower_rate**k, 0.0)
            worst = max(worst, violation)
        rows.append(
            {
                "regime": regime,
                "lag": t - 1,
                "norm": norm,
                "upper": upper_rate ** (t - 1),
                "lower": lower_rate ** (t - 1),
                "W_norm": upper_rate,
                "p_smin": lower_rate,
                "p": p,
                "d": d,
            }
        )
    return CheckResult(
        "q3.2 Jacobian bounds",
        f"(p s_min(W))^k <= ||dv_t/dv_(t-k)||_2 <= ||W||_2^k for k < {t}, p = {p}, vanishing and exploding W",
        worst,
        1e-9,
        rows,
    )


# ----------------------------------------------------------------------------------------------------------
# outputs: LaTeX snippets, JSON, figure
# ----------------------------------------------------------------------------------------------------------


def tex_int(n: int) -> str:
    """An integer with thin spaces between groups of three digits (no siunitx needed)."""
    return f"{n:,}".replace(",", r"\,")


def tex_sci(x: float) -> str:
    """A float as ``$m \\times 10^{e}$`` with two significant digits (``$0$`` for zero)."""
    if x == 0:
        return "$0$"
    mantissa, exponent = f"{x:.1e}".split("e")
    e = int(exponent)
    return f"${mantissa}$" if e == 0 else f"${mantissa}\\times10^{{{e}}}$"


def tex_status(result: CheckResult) -> str:
    return r"\textbf{passed}" if result.passed else r"\textbf{FAILED}"


def q1_tex(count: CheckResult, eq3: CheckResult) -> str:
    lines = [
        "% generated by hw3.theory_checks -- do not edit",
        r"\begin{center}\small",
        r"\begin{tabular}{rrrrrrr}",
        r"\toprule",
        r"$T$ & $D$ & $M$ & counted mult. & $T^2(D+M+2)$ & counted $\exp$ & $T^2$ \\",
        r"\midrule",
    ]
    for r in count.rows:
        lines.append(
            f"{r['T']} & {r['D']} & {r['M']} & {tex_int(r['multiplications'])} & {tex_int(r['formula'])} & "
            f"{tex_int(r['exponentials'])} & {tex_int(r['formula_exp'])} \\\\"
        )
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{center}"]
    lines.append(
        r"\noindent\textit{Check (Q1.4):} multiplications counted while running Eq.~2 "
        r"(matrix products by PyTorch's FLOP counter, element-wise products and divisions by a "
        f"dispatch-mode counter) against the formula, {len(count.rows)} sizes: largest difference "
        f"{int(count.max_error)}, {tex_status(count)}.\\par"
    )
    sizes = ", ".join(f"$({r['T']},{r['D']},{r['M']})$" for r in eq3.rows)
    lines.append(
        r"\noindent\textit{Check (Q1.5):} Eq.~3 evaluated literally with $\mathrm{sim}$ (explicit loops) "
        r"against $\mathrm{softmax}(QK^\top/\sqrt{D})V$ in float64 for $(T,D,M)\in\{$"
        + sizes
        + r"$\}$: "
        f"largest absolute difference {tex_sci(eq3.max_error)}, {tex_status(eq3)}.\\par"
    )
    return "\n".join(lines) + "\n"


def q2_tex(mean: CheckResult, var: CheckResult, sim: dict[str, Any]) -> str:
    names = {"he": "He ($2/n$)", "scaled": "scaled ($2/(nL)$)", "zero": "zero branch ($W_l=0$)"}
    lines = [
        "% generated by hw3.theory_checks -- do not edit",
        r"\begin{center}\small",
        r"\begin{tabular}{lrrrrr}",
        r"\toprule",
        r"scheme & \multicolumn{2}{c}{$\mathrm{Var}(u_L[i])$} & growth error & cross term & "
        r"$\mathbb{E}[F_l\mid u_l]$ test \\",
        r" & simulated & $(1+\frac{n}{2}\mathrm{Var}\,W_l[i,j])^L$ & max over $l$ & max over $l$ & ratio \\",
        r"\midrule",
    ]
    ratios = {r["scheme"]: r["cond_mean_ratio"] for r in mean.rows}
    for r in var.rows:
        ratio = "$F_l\\equiv0$" if r["scheme"] == "zero" else f"{ratios[r['scheme']]:.2f}"
        lines.append(
            f"{names[r['scheme']]} & {tex_sci(r['var_uL'])} & {tex_sci(r['predicted_uL'])} & "
            f"{tex_sci(r['max_growth_rel_err'])} & {tex_sci(r['max_abs_cross_term'])} & {ratio} \\\\"
        )
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{center}"]
    sym = [x for r in var.rows if r["scheme"] != "zero" for x in r["symmetry_ratio_range"]]
    lines.append(
        f"\\noindent\\textit{{Check (Q2):}} $n={sim['n']}$, $L={sim['L']}$, $b_l=0$, {sim['networks']} "
        f"independently initialised networks with {sim['batch']} inputs $u_0\\sim\\mathcal N(0,I_n)$ each. "
        r"Growth error: $|\widehat{\mathrm{Var}}(u_{l+1})/\widehat{\mathrm{Var}}(u_l)\,/\,"
        r"(1+\frac n2\mathrm{Var}\,W_l[i,j])-1|$ (zero branch: $|\widehat{\mathrm{Var}}(u_l)-"
        r"\widehat{\mathrm{Var}}(u_0)|$); cross term: $2\widehat{\mathrm{Cov}}(u_l[i],F_l[i])/"
        r"\widehat{\mathrm{Var}}(u_{l+1}[i])$; $\mathbb{E}[\mathrm{ReLU}(u_l)^2]/(\mathrm{Var}(u_l)/2)$ stays in "
        f"$[{min(sym):.3f},{max(sym):.3f}]$. "
        r"The last column is $\sqrt{K}\,\mathrm{RMS}(\bar F_l)/\mathrm{RMS}(F_l)$, where $\bar F_l$ averages "
        f"$F_l$ over $K={sim['mean_check_draws']}$ fresh weight draws at fixed $u_l$: "
        r"about 1 when $\mathbb{E}[F_l\mid u_l]=0$, about "
        f"$\\sqrt{{K}}$ or more otherwise. Thresholds {Q2_GROWTH_RTOL} and {Q2_MEAN_RATIO_TOL}: "
        f"{tex_status(var)}, {tex_status(mean)}.\\par"
    )
    return "\n".join(lines) + "\n"


def q3_tex(bptt: CheckResult, bounds: CheckResult) -> str:
    lines = [
        "% generated by hw3.theory_checks -- do not edit",
        r"\begin{center}\small",
        r"\begin{tabular}{rrrrr}",
        r"\toprule",
        r"$t$ & $p$ & $\max|\partial\ell/\partial W|$ & rel.\ error, matrix form & rel.\ error, element form \\",
        r"\midrule",
    ]
    for r in bptt.rows:
        lines.append(
            f"{r['t']} & {r['p']:g} & {r['grad_max']:.3g} & {tex_sci(r['matrix_rel_err'])} & "
            f"{tex_sci(r['element_rel_err'])} \\\\"
        )
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{center}"]
    d = Q3_DIMS
    lines.append(
        f"\\noindent\\textit{{Check (Q3.1):}} random network with $d={d['d']}$, inputs of size {d['input']}, "
        f"outputs of size {d['output']}, $\\ell=\\tfrac12\\|\\hat y_t-y_t\\|^2$, float64: the closed form above "
        r"(matrix form, and the element form at every $(i,j)$) against autograd through the unrolled network; "
        f"largest relative error {tex_sci(bptt.max_error)}, {tex_status(bptt)}.\\par"
    )
    parts = []
    first = bounds.rows[0]
    for r in bounds.rows:
        parts.append(
            f"{r['regime']} ($\\|W\\|_2={r['W_norm']:.2f}$, $p\\,s_{{\\min}}(W)={r['p_smin']:.2f}$): "
            f"$\\|J_{{t,t-{r['lag']}}}\\|_2={tex_sci(r['norm'])[1:-1]}\\in"
            f"[{tex_sci(r['lower'])[1:-1]},\\,{tex_sci(r['upper'])[1:-1]}]$"
        )
    lines.append(
        r"\noindent\textit{Check (Q3.2):} the bounds $(p\,s_{\min}(W))^k\le\|J_{t,t-k}\|_2\le\|W\|_2^k$ hold "
        f"at every lag $k<{first['lag'] + 1}$ ($p={first['p']:g}$, $d={first['d']}$); at lag {first['lag']}, "
        + "; ".join(parts)
        + f". {tex_status(bounds)}.\\par"
    )
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def run_checks(
    out_dir: Path = DEFAULT_OUT, seed: int = SEED, verbose: bool = True
) -> dict[str, Any]:
    """Runs every check, prints one line each, writes the outputs to ``out_dir``; returns the record."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    np.random.seed(seed)

    count = check_multiplication_count()
    eq3 = check_eq3(seed=seed)
    sims = {scheme: simulate_residual(scheme, seed=seed) for scheme in Q2_SCHEMES}
    q2_mean, q2_var = check_q2(sims)
    bptt = check_bptt(seed=seed)
    bounds = check_jacobian_bounds(seed=seed)
    results = [count, eq3, q2_mean, q2_var, bptt, bounds]
    if verbose:
        for r in results:
            print(r.line())

    any_sim = sims["he"]
    _write_text(out_dir / "q1_checks.tex", q1_tex(count, eq3))
    _write_text(out_dir / "q2_checks.tex", q2_tex(q2_mean, q2_var, any_sim))
    _write_text(out_dir / "q3_checks.tex", q3_tex(bptt, bounds))
    plot_q2_variance(sims, out_dir / "q2_variance.pdf")
    record = {
        "seed": seed,
        "passed": all(r.passed for r in results),
        "checks": [{**asdict(r), "passed": r.passed} for r in results],
        "q2_simulation": {k: {kk: vv for kk, vv in v.items()} for k, v in sims.items()},
        "torch_version": torch.__version__,
        "seconds": round(time.perf_counter() - start, 2),
    }
    _write_text(out_dir / "checks.json", json.dumps(_jsonable(record), indent=2) + "\n")
    if verbose:
        print(f"wrote {', '.join(OUTPUT_FILES)} to {out_dir} in {record['seconds']:.1f} s")
    return record


OUTPUT_FILES = ("q1_checks.tex", "q2_checks.tex", "q3_checks.tex", "q2_variance.pdf", "checks.json")
THEORY_FILES = ("preamble.tex", "q1.tex", "q2.tex", "q3.tex", "standalone.tex")

# log lines that make a compile count as failed even when latexmk exits 0
_TEX_LOG_PROBLEMS = re.compile(
    r"(LaTeX Warning: (Reference|Citation) .* undefined"
    r"|LaTeX Warning: There were undefined references"
    r"|Missing character)"
)


class TexError(RuntimeError):
    """latexmk is missing, failed, or its log reports undefined references or missing glyphs."""


def compile_standalone(
    out_pdf: Path, checks_dir: Path = DEFAULT_OUT, theory_dir: Path = THEORY_DIR
) -> Path:
    """Builds ``theory/standalone.tex`` with ``latexmk -xelatex`` in a temporary folder (theory files plus
    ``checks/`` copied from ``checks_dir``) and copies the PDF to ``out_pdf``.

    Raises :class:`TexError` if latexmk is missing, fails, or the log reports undefined references or
    missing characters.
    """
    latexmk = shutil.which("latexmk")
    if latexmk is None or shutil.which("xelatex") is None:
        raise TexError(
            "latexmk/xelatex not found; install TeX Live: apt-get install latexmk texlive-xetex"
        )
    with tempfile.TemporaryDirectory(prefix="hw3-theory-") as tmp:
        work = Path(tmp)
        for name in THEORY_FILES:
            shutil.copy2(Path(theory_dir) / name, work / name)
        shutil.copytree(checks_dir, work / "checks")
        env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")}
        proc = subprocess.run(
            [
                latexmk,
                "-xelatex",
                "-interaction=nonstopmode",
                "-halt-on-error",
                "-file-line-error",
                "standalone.tex",
            ],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        log_path = work / "standalone.log"
        log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        if proc.returncode != 0:
            raise TexError(
                f"latexmk failed (exit {proc.returncode}):\n{(log or proc.stdout)[-3000:]}"
            )
        problems = sorted({m.group(0) for m in _TEX_LOG_PROBLEMS.finditer(log)})
        if problems:
            raise TexError("standalone.tex compiled with problems: " + "; ".join(problems))
        out_pdf = Path(out_pdf)
        out_pdf.parent.mkdir(parents=True, exist_ok=True)
        tmp_pdf = out_pdf.with_name(out_pdf.name + ".tmp")
        shutil.copy2(work / "standalone.pdf", tmp_pdf)
        os.replace(tmp_pdf, out_pdf)
    return out_pdf


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw3.theory_checks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default build/theory)"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--pdf", type=Path, default=None, help="also compile theory/standalone.tex to this PDF"
    )
    parser.add_argument(
        "--theory", type=Path, default=THEORY_DIR, help="folder holding the theory/*.tex files"
    )
    args = parser.parse_args(argv)
    record = run_checks(args.out, seed=args.seed)
    if not record["passed"]:
        failed = [c["name"] for c in record["checks"] if not c["passed"]]
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    if args.pdf is not None:
        try:
            compile_standalone(args.pdf, args.out, args.theory)
        except TexError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.pdf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
