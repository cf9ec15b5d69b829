"""Question 1: the cost of one self-attention layer (1.4) and Eq. 3 as a row of Eq. 2 (1.5)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from hw3.theory import SEED, Check

# (T, D, M) of the operation count (1.4) and of the Eq. 3 = Eq. 2 comparison (1.5)
COUNT_SIZES: tuple[tuple[int, int, int], ...] = (
    (1, 1, 1),
    (2, 3, 5),
    (7, 4, 3),
    (16, 8, 8),
    (64, 32, 16),
    (128, 64, 64),
)
EQ3_SIZES: tuple[tuple[int, int, int], ...] = (
    (1, 1, 1),
    (3, 2, 5),
    (7, 4, 3),
    (12, 8, 6),
    (20, 16, 4),
)
# Eq. 3 and Eq. 2 in float64 agree to rounding (~1e-16); a wrong formula is off by O(1)
EQ3_TOLERANCE = 1e-12


def sa_multiplications(T, D, M):  # ints, or sympy symbols
    """Multiplications of Eq. 2, divisions included, exponentials not: ``T^2 (D + M + 2)``."""
    return T**2 * (D + M + 2)


def sa_exponentials(T):
    """Exponentials of the row-wise softmax in Eq. 2: one per score, ``T^2``."""
    return T**2


def self_attention(Q: Tensor, K: Tensor, V: Tensor) -> Tensor:
    """Eq. 2 step by step, ``softmax(Q K^T / sqrt(D)) V``, so that every operation is visible."""
    scores = (Q @ K.transpose(-2, -1)) * (1.0 / math.sqrt(Q.shape[-1]))
    # subtracting the row maximum cancels in the ratio and costs no multiplication; exp stays finite
    e = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    return (e / e.sum(dim=-1, keepdim=True)) @ V


class ElementwiseCounter(TorchDispatchMode):
    """Counts the elements produced by each aten op (one operation per output element)."""

    MULTIPLICATIVE = ("aten.mul.", "aten.div.")
    EXPONENTIAL = ("aten.exp.",)

    def __init__(self) -> None:
        super().__init__()
        self.by_op: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, Tensor):
            self.by_op[str(func)] = self.by_op.get(str(func), 0) + out.numel()
        return out

    def count(self, prefixes: Sequence[str]) -> int:
        return sum(n for op, n in self.by_op.items() if op.startswith(tuple(prefixes)))


def count_sa_operations(
    T: int,
    D: int,
    M: int,
    attention: Callable[[Tensor, Tensor, Tensor], Tensor] = self_attention,
    seed: int = SEED,
) -> dict[str, int]:
    """Runs ``attention`` on random Q, K, V and counts its multiplications and exponentials.

    Matrix products by PyTorch's FLOP counter (a multiply-add is 2 FLOPs, so multiplications are
    FLOPs / 2); element-wise products, divisions and exponentials by :class:`ElementwiseCounter`.
    """
    gen = torch.Generator().manual_seed(seed)
    Q, K = (torch.randn(T, D, generator=gen, dtype=torch.float64) for _ in range(2))
    V = torch.randn(T, M, generator=gen, dtype=torch.float64)
    with FlopCounterMode(display=False) as flops, ElementwiseCounter() as elementwise:
        attention(Q, K, V)
    matmul_flops = flops.get_total_flops()
    if matmul_flops % 2:
        raise AssertionError(f"odd FLOP count {matmul_flops}: not all multiply-adds")
    products = elementwise.count(ElementwiseCounter.MULTIPLICATIVE)
    return {
        "matmul_multiplications": matmul_flops // 2,
        "multiplications": matmul_flops // 2 + products,
        "exponentials": elementwise.count(ElementwiseCounter.EXPONENTIAL),
    }


def check_multiplication_count(
    formula: Callable[[int, int, int], int] = sa_multiplications,
    sizes: Sequence[tuple[int, int, int]] = COUNT_SIZES,
) -> Check:
    """The multiplications and exponentials counted in :func:`self_attention` against ``formula``
    and :func:`sa_exponentials`; the error is the largest difference (exact counts: tolerance 0)."""
    worst = 0
    for T, D, M in sizes:
        counted = count_sa_operations(T, D, M)
        worst = max(
            worst,
            abs(counted["multiplications"] - int(formula(T, D, M))),
            abs(counted["exponentials"] - sa_exponentials(T)),
        )
    return Check("q1.4 count", float(worst), 0.0, {"sizes": [list(s) for s in sizes]})


def sim(q: Sequence[float], k: Sequence[float]) -> float:
    """``exp(q k^T / sqrt(D))`` for two row vectors, written as an explicit sum."""
    return math.exp(sum(q[d] * k[d] for d in range(len(q))) / math.sqrt(len(q)))


def attention_eq3(Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Eq. 3 literally, with loops: ``V'_i = sum_j sim(Q_i, K_j) V_j / sum_r sim(Q_i, K_r)``."""
    T, M = len(Q), V.shape[1]
    out = np.zeros((T, M))
    for i in range(T):
        denominator = sum(sim(Q[i], K[r]) for r in range(T))
        for m in range(M):
            out[i, m] = sum(sim(Q[i], K[j]) * V[j, m] for j in range(T)) / denominator
    return out


def attention_eq2(Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Eq. 2 with torch's softmax over each row, in float64."""
    q, k, v = (torch.from_numpy(a) for a in (Q, K, V))
    return (torch.softmax(q @ k.T / math.sqrt(q.shape[1]), dim=-1) @ v).numpy()


def check_eq3(
    forms: Mapping[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] | None = None,
    reference: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] = attention_eq2,
    sizes: Sequence[tuple[int, int, int]] = EQ3_SIZES,
    seed: int = SEED,
) -> Check:
    """Each form of Eq. 3 in ``forms`` (default: the loops of :func:`attention_eq3`) against
    ``reference`` (Eq. 2) on random float64 inputs; the error is the largest absolute difference."""
    forms = {"loops": attention_eq3} if forms is None else forms
    rng = np.random.default_rng(seed)
    worst = 0.0
    for T, D, M in sizes:
        Q, K, V = rng.normal(size=(T, D)), rng.normal(size=(T, D)), rng.normal(size=(T, M))
        expected = reference(Q, K, V)
        for form in forms.values():
            error = float(np.max(np.abs(form(Q, K, V) - expected)))
            worst = max(worst, error if math.isfinite(error) else math.inf)
    details = {"sizes": [list(s) for s in sizes], "forms": list(forms)}
    return Check("q1.5 eq3", worst, EQ3_TOLERANCE, details)
