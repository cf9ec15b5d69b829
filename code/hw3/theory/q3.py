"""Question 3: BPTT for ``v_tau = phi(W v_{tau-1} + B x_tau)``, ``y_hat = C v_t``, loss at step t.

3.1: the closed-form gradient of the answer (matrix form and element form) against autograd.
3.2: the bounds on the state Jacobian behind the exploding/vanishing argument, at every lag.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from hw3.theory import SEED, Check

# (t, p) of the gradient comparison: one step, short and long series, slopes from 0.01 to 0.5
BPTT_CASES: tuple[tuple[int, float], ...] = (
    (1, 0.1),
    (2, 0.01),
    (5, 0.1),
    (5, 0.5),
    (12, 0.2),
    (30, 0.05),
)
DIMS = {"d": 5, "input": 3, "output": 2}
# closed form and autograd in float64 agree to rounding (~1e-16 of the largest entry)
BPTT_TOLERANCE = 1e-10
# the bounds are exact inequalities; the tolerance only absorbs rounding in the singular values
BOUND_TOLERANCE = 1e-9
BOUND_LAGS, BOUND_SLOPE, BOUND_DIM = 20, 0.5, 8
# singular values of W in each regime: ||W||_2 < 1 (vanishing) and p s_min(W) > 1 (exploding)
BOUND_REGIMES = {"vanishing": (0.5, 0.9), "exploding": (3.2, 4.0)}
# W = a Q (every singular value a): with every u_s positive J = (a Q)^k, with every u_s negative
# J = (p a Q)^k, so the upper, resp. the lower, bound holds with equality
ATTAINED_SCALE = 1.5


def leaky_relu(u: Tensor, p: float) -> Tensor:
    """``phi(u) = max(p u, u)`` for 0 <= p < 1."""
    return torch.where(u > 0, u, p * u)


def leaky_relu_derivative(u: Tensor, p: float) -> Tensor:
    """``phi'(u)``: 1 where u > 0, p elsewhere (at u = 0, a null event, p as torch's backward)."""
    return torch.where(u > 0, torch.ones_like(u), torch.full_like(u, p))


def rnn_forward(
    W: Tensor, B: Tensor, x: Tensor, v0: Tensor, p: float
) -> tuple[list[Tensor], list[Tensor]]:
    """Pre-activations ``[u_1..u_t]`` and states ``[v_0..v_t]`` (x has one row per step)."""
    us, vs = [], [v0]
    for tau in range(x.shape[0]):
        u = W @ vs[-1] + B @ x[tau]
        us.append(u)
        vs.append(leaky_relu(u, p))
    return us, vs


def squared_loss(y: Tensor, y_hat: Tensor) -> Tensor:
    """``l(y, y_hat) = ||y_hat - y||^2 / 2``, whose gradient in y_hat is ``g = y_hat - y``."""
    return 0.5 * (y_hat - y).pow(2).sum()


def state_jacobian(us: list[Tensor], W: Tensor, t: int, tau: int, p: float) -> Tensor:
    """``J_{t,tau} = dv_t/dv_tau = D_t W D_{t-1} W ... D_{tau+1} W`` (identity for tau = t)."""
    J = torch.eye(W.shape[0], dtype=W.dtype)
    for s in range(tau + 1, t + 1):
        J = torch.diag(leaky_relu_derivative(us[s - 1], p)) @ W @ J
    return J


def bptt_grad_W(
    W: Tensor, B: Tensor, C: Tensor, x: Tensor, y: Tensor, v0: Tensor, p: float
) -> Tensor:
    """Matrix form of the answer to 3.1: ``dl/dW = sum_tau D_tau J_{t,tau}^T C^T g v_{tau-1}^T``."""
    with torch.no_grad():
        us, vs = rnn_forward(W, B, x, v0, p)
        t = len(us)
        g = C @ vs[t] - y
        grad = torch.zeros_like(W)
        for tau in range(1, t + 1):
            D = torch.diag(leaky_relu_derivative(us[tau - 1], p))
            grad += torch.outer(D @ state_jacobian(us, W, t, tau, p).T @ C.T @ g, vs[tau - 1])
    return grad


def bptt_grad_W_elements(
    W: Tensor, B: Tensor, C: Tensor, x: Tensor, y: Tensor, v0: Tensor, p: float
) -> Tensor:
    """Element form of the answer to 3.1 at every (i, j), with scalar sums only:
    ``dl/dW[i,j] = sum_tau phi'(u_tau[i]) v_{tau-1}[j] sum_k sum_r g[r] C[r,k] J_{t,tau}[k,i]``."""
    with torch.no_grad():
        us, vs = rnn_forward(W, B, x, v0, p)
        t, d, m = len(us), W.shape[0], C.shape[0]
        g = C @ vs[t] - y
        jacobians = [state_jacobian(us, W, t, tau, p) for tau in range(1, t + 1)]
        grad = torch.zeros_like(W)
        for i in range(d):
            for j in range(d):
                total = 0.0
                for tau in range(1, t + 1):
                    J = jacobians[tau - 1]
                    back = sum(
                        float(g[r]) * float(C[r, k]) * float(J[k, i])
                        for k in range(d)
                        for r in range(m)
                    )
                    dphi = float(leaky_relu_derivative(us[tau - 1][i], p))
                    total += dphi * float(vs[tau - 1][j]) * back
                grad[i, j] = total
    return grad


def autograd_grad_W(
    W: Tensor, B: Tensor, C: Tensor, x: Tensor, y: Tensor, v0: Tensor, p: float
) -> Tensor:
    """The same gradient by autograd through the unrolled recurrence (torch's own leaky ReLU)."""
    W = W.detach().clone().requires_grad_(True)
    v = v0
    for tau in range(x.shape[0]):
        v = torch.nn.functional.leaky_relu(W @ v + B @ x[tau], negative_slope=p)
    squared_loss(y, C @ v).backward()
    assert W.grad is not None
    return W.grad


def random_problem(t: int, seed: int) -> dict[str, Tensor]:
    """A random small problem in float64: W (non-symmetric), B, C, inputs x_1..x_t, y_t, v_0."""
    gen = torch.Generator().manual_seed(seed)
    d, k, m = DIMS["d"], DIMS["input"], DIMS["output"]

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


GradFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, float], Tensor]


def _gradient_error(grad_fn: GradFn, cases: Sequence[tuple[int, float]], seed: int) -> float:
    """Largest |grad_fn - autograd| over the cases, relative to the largest |autograd| entry."""
    worst = 0.0
    for case, (t, p) in enumerate(cases):
        prob = random_problem(t, seed + case)
        args = (prob["W"], prob["B"], prob["C"], prob["x"], prob["y"], prob["v0"], p)
        reference = autograd_grad_W(*args)
        error = float((grad_fn(*args) - reference).abs().max() / reference.abs().max())
        worst = max(worst, error if math.isfinite(error) else math.inf)
    return worst


CODE_FORMS: dict[str, GradFn] = {"matrix form": bptt_grad_W, "element form": bptt_grad_W_elements}


def check_bptt(
    forms: Mapping[str, GradFn] = CODE_FORMS,
    cases: Sequence[tuple[int, float]] = BPTT_CASES,
    seed: int = SEED,
) -> list[Check]:
    """Each form of the closed-form gradient against autograd, float64, every (t, p) case: one
    :class:`Check` per form, named ``"q3.1 <form>"``."""
    details = {"cases": [list(c) for c in cases], **DIMS}
    return [
        Check(f"q3.1 {name}", _gradient_error(form, cases, seed), BPTT_TOLERANCE, details)
        for name, form in forms.items()
    ]


def jacobian_lower_bound(W: Tensor, p: float, k: int) -> float:
    """The answer's lower bound at lag k: ``s_min(J_{t,t-k}) >= (p s_min(W))^k``."""
    return (p * float(torch.linalg.svdvals(W)[-1])) ** k


def jacobian_upper_bound(W: Tensor, p: float, k: int) -> float:
    """The answer's upper bound at lag k: ``||J_{t,t-k}||_2 <= ||W||_2^k``."""
    return float(torch.linalg.svdvals(W)[0]) ** k


Bound = Callable[[Tensor, float, int], float]
Jacobian = Callable[[list[Tensor], Tensor, int, int, float], Tensor]


def bound_matrix(singular_values: tuple[float, float], d: int, gen: torch.Generator) -> Tensor:
    """A random d x d matrix with singular values spread evenly over ``singular_values``."""
    left, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    spread = torch.linspace(*singular_values, d, dtype=torch.float64)
    return left @ torch.diag(spread) @ right.T


def check_jacobian_bounds(
    lower: Bound = jacobian_lower_bound,
    upper: Bound = jacobian_upper_bound,
    jacobian: Jacobian = state_jacobian,
    lags: int = BOUND_LAGS,
    p: float = BOUND_SLOPE,
    d: int = BOUND_DIM,
    seed: int = SEED,
) -> list[Check]:
    """``lower(W, p, k) <= s_min(J_{t,t-k})`` and ``||J_{t,t-k}||_2 <= upper(W, p, k)`` at every
    lag k = 0..lags, ``J`` by ``jacobian``: in a vanishing and an exploding regime each violation
    relative to its bound (0 when the bound holds); and where the bound is attained (``W = a Q``,
    Q orthogonal, every ``u_s`` positive for the upper bound, negative for the lower one) its
    relative distance from the attained value, so that a true but looser bound fails too. The lower
    bound is about the smallest singular value, so that is what is compared: ``||J||_2`` can respect
    a wrong lower bound that ``s_min(J)`` breaks."""
    gen = torch.Generator().manual_seed(seed)
    worst = {"lower": 0.0, "upper": 0.0}
    at_last_lag = {}
    cases = [(regime, values, None) for regime, values in BOUND_REGIMES.items()]
    cases += [
        ("attained, u > 0", (ATTAINED_SCALE,) * 2, 1.0),
        ("attained, u < 0", (ATTAINED_SCALE,) * 2, -1.0),
    ]
    for regime, singular_values, sign in cases:
        W = bound_matrix(singular_values, d, gen)
        x = torch.randn(lags, d, generator=gen, dtype=torch.float64)
        v0 = torch.randn(d, generator=gen, dtype=torch.float64)
        us, _ = rnn_forward(W, torch.eye(d, dtype=torch.float64), x, v0, p)
        if sign is not None:  # J depends on the u_s only through their signs
            us = [torch.full((d,), sign, dtype=torch.float64)] * lags
        for k in range(lags + 1):
            s = torch.linalg.svdvals(jacobian(us, W, lags, lags - k, p))
            s_max, s_min = float(s[0]), float(s[-1])
            low, high = float(lower(W, p, k)), float(upper(W, p, k))
            worst["lower"] = max(worst["lower"], _violation(low, s_min))
            worst["upper"] = max(worst["upper"], _violation(s_max, high))
            if sign is not None:
                side, bound, attained = (
                    ("upper", high, s_max) if sign > 0 else ("lower", low, s_min)
                )
                gap = abs(bound / attained - 1.0)
                worst[side] = max(worst[side], gap if math.isfinite(gap) else math.inf)
        at_last_lag[regime] = {
            "lag": lags,
            "s_min_J": s_min,
            "norm_J": s_max,
            "lower": low,
            "upper": high,
            "p_smin_W": p * float(torch.linalg.svdvals(W)[-1]),
            "norm_W": float(torch.linalg.svdvals(W)[0]),
        }
    details = {"p": p, "d": d, "lags": lags, "at_last_lag": at_last_lag}
    return [
        Check("q3.2 lower bound", worst["lower"], BOUND_TOLERANCE, details),
        Check("q3.2 upper bound", worst["upper"], BOUND_TOLERANCE, details),
    ]


def _violation(small: float, large: float) -> float:
    """How far ``small <= large`` fails, relative to ``large`` (0 when it holds; inf for NaN)."""
    if not (math.isfinite(small) and math.isfinite(large)):
        return math.inf
    return max(small / large - 1.0, 0.0) if large > 0 else (math.inf if small > 0 else 0.0)
