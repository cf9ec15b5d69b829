"""The mathematics behind the Part 1 answers (``theory/q1.tex`` ... ``q3.tex``), by question.

Each module defines, once, the formulas its answer states (``q1.sa_multiplications``,
``q2.variance_step``, ``q3.bptt_grad_W`` ...) and the checks that compare them with an independent
computation (an operation counter, a simulation, autograd). A check returns a :class:`Check`: its
largest error against its tolerance. Nothing here writes files or TeX: ``hw3build.report.theory``
turns the checks into the answers' tables and figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEED = 211


@dataclass
class Check:
    """One comparison: its largest error against its tolerance, with the details behind it.

    ``name`` identifies the check (``"q3.2 lower bound"``); ``details`` holds plain numbers for the
    tables and ``checks.json``.
    """

    name: str
    max_error: float
    tolerance: float
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        # written so that a NaN error fails
        return bool(self.max_error <= self.tolerance)

    def line(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        return (
            f"[{status}] {self.name}: largest error {self.max_error:.3g} "
            f"(tolerance {self.tolerance:.3g})"
        )
