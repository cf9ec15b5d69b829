"""The theory stage: the numerical checks behind Part 1, their tables and figure, and the theory alone.

``python -m hw3build.report.theory [--out DIR] [--pdf PATH] [--theory DIR]`` runs every check of
:mod:`hw3.theory` on the formulas *as the answers print them* (read back by :mod:`hw3build.report.formulas`),
prints one line per check, and writes to DIR (default ``build/theory``):

- ``q1_checks.tex``, ``q2_checks.tex``, ``q3_checks.tex``: one table per question (what is compared,
  the largest error, the tolerance), ``\\input`` by ``theory/checks.tex``, the appendix section "How
  each answer was checked" that each answer points at;
- ``q2_variance.pdf``: the figure of Q2;
- ``checks.json``: every check with its numbers;
- ``answers.json``: ``{label: key result}`` for the report's answer index, one entry per
  ``\\label{ans:...}`` of the answers, in order, each a short text-mode LaTeX snippet (the
  ``\\keyresult{...}`` written beside the label, with ``\\formularef{key}`` replaced by the printed
  formula marked ``key``).

With ``--pdf`` it also compiles ``theory/standalone.tex`` with the report's latexmk runner. It exits
non-zero when a check fails (the outputs are still written, for inspection).

The build runs it in a subprocess (:func:`run_theory_checks`) and reuses its outputs while
:func:`theory_inputs_key` is unchanged: the key covers exactly what the checks read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import sympy
import torch
from hw3.files import write_atomic, write_json_atomic
from hw3.theory import SEED, Check, q1, q2, q3
from hw3tools.repo import BUILD_DIR, HW3_THEORY_DIR, THEORY_DIR

from hw3build.errors import BuildError
from hw3build.processes import ToolTimeout, run_tool
from hw3build.report import formulas as fm
from hw3build.submission.assignment import ANSWER_LABELS

DEFAULT_OUT = BUILD_DIR / "theory"
QUESTION_FILES = ("q1.tex", "q2.tex", "q3.tex")
STANDALONE_FILES = ("preamble.tex", *QUESTION_FILES, "appendix.tex", "checks.tex", "standalone.tex")
OUTPUT_FILES = (
    "q1_checks.tex",
    "q2_checks.tex",
    "q3_checks.tex",
    "q2_variance.pdf",
    "checks.json",
    "answers.json",
)
# The source files whose text the checks run (the .tex files count only through their marked formulas
# and key results, so editing prose does not re-run the checks).
CHECK_SOURCES = (
    *sorted(HW3_THEORY_DIR.glob("*.py")),
    Path(__file__).resolve(),
    Path(fm.__file__).resolve(),
)
NUMERIC_LIBRARIES = ("torch", "numpy", "sympy", "matplotlib")
# a fixed date for the standalone PDF (the report passes its own)
STANDALONE_EPOCH = 0


class TheoryError(BuildError, RuntimeError):
    """The checks failed or could not run; the message says what to do."""


# ------------------------------------------------------------------------ the printed formulas


def printed_count(formulas: Mapping[str, str]) -> Callable[[int, int, int], int]:
    """Q1.4's printed count as a function of (T, D, M)."""
    T, D, M = sympy.symbols("T D M")
    expr = fm.algebraic(fm.require(formulas, "q1.4-count"), {"T": T, "D": D, "M": M})
    return lambda t, d, m: int(expr.subs({T: t, D: d, M: m}))


def printed_step(formulas: Mapping[str, str]) -> Callable[..., float]:
    """Q2's printed recurrence (the right-hand side of ``v_{l+1} = ...``) as ``step(v, n, sigma2, beta2)``."""
    v, n, sigma, beta = sympy.symbols("v n sigma beta", positive=True)
    names = {"v_l": v, "n": n, "sigma_l": sigma, "beta_l": beta}
    expr = fm.algebraic(fm.rhs(fm.require(formulas, "q2-recurrence")), names)
    f = sympy.lambdify((v, n, sigma, beta), expr)
    return lambda v_l, n_, sigma2, beta2: float(f(v_l, n_, math.sqrt(sigma2), math.sqrt(beta2)))


Q2_NAMES = dict(zip(("n", "L", "c", "l"), sympy.symbols("n L c l", positive=True), strict=True))


def printed_q2(formulas: Mapping[str, str], key: str) -> Callable[..., float]:
    """A printed expression of Q2 in n, L, c, l (the right-hand side of ``\\sigma_l^2 = ...``, or a
    closed form of ``v_l``) as a function of those names given as keywords."""
    expr = fm.algebraic(fm.rhs(fm.require(formulas, key)), Q2_NAMES)

    def value(**numbers: float) -> float:
        return float(expr.subs({Q2_NAMES[name]: x for name, x in numbers.items()}))

    return value


def q2_simulations(formulas: Mapping[str, str], seed: int = SEED) -> dict[str, dict[str, Any]]:
    """The Q2 simulations, every variance as the answer prints it, at explicit sizes: He, the
    depth-scaled scheme (c = 1) and the exact scheme at n, L of the figure; the depth-scaled scheme
    with random biases; He in a plain network; the depth-scaled scheme at c = 2."""
    n, L, bias_depth = q2.WIDTH, q2.DEPTH, q2.BIAS_DEPTH
    he, scaled = printed_q2(formulas, "q2-he"), printed_q2(formulas, "q2-scaled")
    exact = printed_q2(formulas, "q2-exact")
    common = {"networks": q2.NETWORKS, "batch": q2.BATCH, "seed": seed}
    quiet = {**common, "mean_check_layers": ()}  # no conditional-mean draws where that is checked elsewhere
    return {
        "he": q2.simulate_residual(he(n=n), n, L, **common),
        "scaled": q2.simulate_residual(scaled(n=n, L=L, c=1), n, L, **common),
        "zero": q2.simulate_residual(exact(n=n, L=L), n, L, **common),
        "bias": q2.simulate_residual(
            scaled(n=n, L=bias_depth, c=1),
            n,
            bias_depth,
            beta2=q2.BIAS_VARIANCE,
            mean_check_layers=(0, bias_depth - 1),
            **common,
        ),
        "plain": q2.simulate_residual(he(n=n), n, L, skip=False, **quiet),
        "scaled c=2": q2.simulate_residual(scaled(n=n, L=L, c=q2.SCALED_C), n, L, **quiet),
    }


def q2_checks(formulas: Mapping[str, str], sims: Mapping[str, dict[str, Any]]) -> list[Check]:
    """Every Q2 check on :func:`q2_simulations`, with the recurrence and closed forms as printed."""
    step = printed_step(formulas)
    he_closed, scaled_closed = printed_q2(formulas, "q2-he-closed"), printed_q2(formulas, "q2-scaled-closed")
    L, c = sims["scaled c=2"]["L"], q2.SCALED_C
    closed = {
        "he": (sims["he"], lambda depth: he_closed(l=depth, L=sims["he"]["L"])),
        "scaled c=2": (sims["scaled c=2"], lambda depth: scaled_closed(l=depth, L=L, c=c)),
    }
    residual = {label: sims[label] for label in ("he", "scaled", "zero", "bias")}
    return [
        q2.check_conditional_mean(residual),
        q2.check_growth({label: sims[label] for label in ("he", "scaled")}, step=step),
        q2.check_bias(sims["bias"], step=step),
        q2.check_plain_network(sims["plain"]),
        q2.check_closed_forms(closed),
        q2.check_exact_scheme(sims["zero"]),
        q2.check_symmetry({label: sims[label] for label in ("he", "scaled")}),
    ]


def printed_eq3(formulas: Mapping[str, str], key: str) -> Callable[..., np.ndarray]:
    """A printed form of Eq. 3 (``V'_i`` in terms of ``\\simf`` and rows of V) as a function of
    (Q, K, V), ``\\simf`` as the assignment defines it (:func:`hw3.theory.q1.sim`)."""
    tex = fm.require(formulas, key)

    def attention(Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> np.ndarray:
        symbols = {
            "sim": lambda i, j: q1.sim(Q[i - 1], K[j - 1]),
            "V": lambda j: torch.from_numpy(V[j - 1]),
        }
        rows = [fm.attention_sum(tex, symbols, {"T": len(Q)}, {"i": i}) for i in range(1, len(Q) + 1)]
        return np.stack([np.broadcast_to(np.asarray(row, dtype=float), V.shape[1:]) for row in rows])

    return attention


def printed_bound(formulas: Mapping[str, str], key: str) -> q3.Bound:
    """Q3.2's printed bound (in p, ``s_{\\min}(W)``, ``\\|W\\|_2`` and the lag ``t-\\tau``) as a
    function of (W, p, lag)."""
    tex = fm.require(formulas, key).replace(r"s_{\min}(W)", "s").replace(r"\|W\|_2", "w")
    names = dict(zip(("p", "s", "w", "t", "tau"), sympy.symbols("p s w t tau"), strict=True))
    f = sympy.lambdify(tuple(names.values()), fm.algebraic(tex, names))

    def bound(W: torch.Tensor, p: float, lag: int) -> float:
        singular = torch.linalg.svdvals(W)
        return float(f(p, float(singular[-1]), float(singular[0]), lag, 0))

    return bound


def printed_jacobian(formulas: Mapping[str, str]) -> q3.Jacobian:
    """Q3's printed definition of ``J_{t,\\tau}`` (a product of ``D_s`` and W) as a function of the
    forward pass: ``jacobian(us, W, t, tau, p)``; ``J_{t,t} = I`` as printed beside it."""
    tex = fm.require(formulas, "q3-jacobian")

    def jacobian(us: list, W: torch.Tensor, t: int, tau: int, p: float) -> torch.Tensor:
        symbols = {"D": lambda s: torch.diag(q3.leaky_relu_derivative(us[s - 1], p)), "W": lambda: W}
        return fm.matrix_product(tex, symbols, {"t": t, "tau": tau})

    return jacobian


def q3_symbols(
    W: torch.Tensor, us: list, vs: list, g: torch.Tensor, C: torch.Tensor, p: float, J: q3.Jacobian
) -> fm.Symbols:
    """What the symbols of the answer to Q3 denote for one forward pass (steps counted from 1)."""
    return {
        "phi'(u)": lambda s: q3.leaky_relu_derivative(us[s - 1], p),
        "D": lambda s: torch.diag(q3.leaky_relu_derivative(us[s - 1], p)),
        "J": lambda t, s: J(us, W, t, s, p),
        "v": lambda s: vs[s],
        "W": lambda: W,
        "C": lambda: C,
        "g": lambda: g,
    }


def printed_gradient(tex: str, form: str, J: q3.Jacobian = q3.state_jacobian) -> q3.GradFn:
    """A printed form of Q3.1's gradient (``"matrix"`` or ``"element"``) as a function of the problem,
    ``J_{t,\\tau}`` by ``J``."""

    def grad(W, B, C, x, y, v0, p):  # noqa: ANN001, ANN202 - the signature of q3.GradFn
        with torch.no_grad():
            us, vs = q3.rnn_forward(W, B, x, v0, p)
            t, d, m = len(us), W.shape[0], C.shape[0]
            symbols = q3_symbols(W, us, vs, C @ vs[t] - y, C, p, J)
            sizes = {"t": t, "d": d, "m": m, "i": d, "j": d}
            if form == "matrix":
                return fm.matrix_sum(tex, symbols, sizes)
            return fm.index_sum(tex, symbols, sizes, ("i", "j"))

    return grad


def printed_forms(formulas: Mapping[str, str]) -> dict[str, q3.GradFn]:
    """The boxed gradient of Q3.1 as printed: both expressions of the matrix form, the element form,
    with ``J_{t,\\tau}`` as printed."""
    J = printed_jacobian(formulas)
    return {
        "matrix form": printed_gradient(fm.require(formulas, "q3.1-matrix"), "matrix", J),
        "unrolled matrix form": printed_gradient(fm.require(formulas, "q3.1-unrolled"), "matrix", J),
        "element form": printed_gradient(fm.require(formulas, "q3.1-element"), "element", J),
    }


# ---------------------------------------------------------------------------------- the checks


def run_checks(theory_dir: Path = THEORY_DIR, seed: int = SEED) -> tuple[list[Check], dict[str, Any]]:
    """Every check, on the formulas as printed in ``theory_dir``; returns them and the Q2 simulations."""
    formulas = fm.printed_formulas(theory_dir, QUESTION_FILES)
    sims = q2_simulations(formulas, seed)
    step = printed_step(formulas)
    for label in ("he", "scaled", "zero"):
        sims[label]["predicted"] = q2.predicted_variance(sims[label], step=step)
    eq3 = {key: printed_eq3(formulas, key) for key in ("q1.5-rows", "q1.5-eq3")}
    checks = [
        q1.check_multiplication_count(formula=printed_count(formulas)),
        q1.check_eq3(forms=eq3, seed=seed),
        *q2_checks(formulas, sims),
        *q3.check_bptt(printed_forms(formulas), seed=seed),
        *q3.check_jacobian_bounds(
            lower=printed_bound(formulas, "q3.2-lower"),
            upper=printed_bound(formulas, "q3.2-upper"),
            jacobian=printed_jacobian(formulas),
            seed=seed,
        ),
    ]
    return checks, sims


# ------------------------------------------------------------------------------------ the tables


def tex_number(x: float) -> str:
    """``0``, ``1``, ``0.007``, ``$6.7\\times10^{-16}$``: two significant digits, scientific below 0.001."""
    if x == 0:
        return "0"
    if not math.isfinite(x):
        return r"$\infty$" if x > 0 else "NaN"
    if 1e-3 <= abs(x) < 1000:
        return f"{x:.2g}"
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"${mantissa}\\times10^{{{int(exponent)}}}$"


def _sizes(sizes: Sequence[Sequence[int]]) -> str:
    return f"{len(sizes)} sizes $(T,D,M)$ from $({','.join(map(str, sizes[0]))})$ to $({','.join(map(str, sizes[-1]))})$"


def describe(check: Check, sims: Mapping[str, Any]) -> str:
    """What a check compares, in the words of the answers (LaTeX)."""
    d, he, bias = check.details, sims["he"], sims["bias"]
    size = f"$n={he['n']}$, $L={he['L']}$"
    text = {
        "q1.4 count": (
            r"1.4: multiplications counted while running Eq.~2 (matrix products by PyTorch's FLOP "
            r"counter, element-wise products and divisions by an operation counter) against "
            rf"$T^2(D+M+2)$ as printed; exponentials against $T^2$; {_sizes(d.get('sizes', [[0]]))}"
        ),
        "q1.5 eq3": (
            r"1.5: both expressions of $V'_i$ as printed (sums of $\simf$, evaluated term by term) "
            rf"against $\softmax(QK^\top/\sqrt D)\,V$, float64, {_sizes(d.get('sizes', [[0]]))}; "
            r"absolute difference"
        ),
        "q2 conditional mean": (
            r"condition (1): $\sqrt K\,\mathrm{RMS}(\bar F_l)/\mathrm{RMS}(F_l)$, $\bar F_l$ the mean of "
            rf"$F_l$ over $K={he['mean_check_draws']}$ weight and bias draws at a fixed $u_l$ (about 1 "
            r"when $\E[F_l\mid u_l]=0$, about $\sqrt K$ otherwise), every residual simulation"
        ),
        "q2 growth": (
            r"\eqref{eq:q2-rec} as printed, $b_l=0$: the simulated mean growth of $v_l$ per layer minus "
            r"one against $n\sigma_l^2/2$ (He: $1$; depth-scaled, $c=1$: $1/L$), relative; " + size
        ),
        "q2 bias": (
            rf"\eqref{{eq:q2-rec}} as printed with biases, $\beta_l^2={bias['beta2']:g}$: the simulated "
            r"$v_L-v_0$ against the sum of the increments \eqref{eq:q2-rec} gives from each simulated "
            rf"$v_l$, relative; depth-scaled, $c=1$, $n={bias['n']}$, $L={bias['L']}$"
        ),
        "q2 he plain": (
            r"He's $\sigma_l^2$ as printed in a plain network $u_{l+1}=W_l\phi(u_l)$: the mean growth "
            rf"of $v_l$ per layer against $1$; {size}"
        ),
        "q2 closed forms": (
            r"$v_l\approx2^l$ (He) and $v_l\approx(1+c/L)^l$ (depth-scaled, "
            rf"$c={q2.SCALED_C:g}$) as printed: the mean growth "
            rf"per layer minus one, simulated against the closed form, relative; {size}"
        ),
        "q2 exact": (
            r"condition (2) for the scheme as printed ($\sigma_l^2=0$, $b_l=0$): "
            rf"$\max_l|\widehat\Var(u_l[i])-1|$; {size}"
        ),
        "q2 symmetry": (
            r"the approximation of Step~3: $\E[\ReLU(u_l[i])^2]/(v_l/2)$ against $1$ at every layer, "
            rf"He and depth-scaled ($c=1$), {size}"
        ),
        "q3.1 matrix form": (
            r"3.1: the boxed matrix form (first expression) as printed, $J_{t,\tau}$ by its printed "
            rf"definition, against autograd, {len(d.get('cases', []))} cases $(t,p)$, "
            rf"$t\le{max(c[0] for c in d.get('cases', [[0]]))}$, $d={d.get('d')}$, float64; "
            r"relative to $\max|\partial\ell/\partial W|$"
        ),
        "q3.1 unrolled matrix form": r"3.1: the boxed matrix form (second expression), the same way",
        "q3.1 element form": r"3.1: the boxed element form at every $(i,j)$, the same way",
        "q3.2 lower bound": (
            r"3.2: the lower bound $(p\,s_{\min}(W))^{t-\tau}$ as printed against "
            rf"$s_{{\min}}(J_{{t,\tau}})$ for $t-\tau\le{d.get('lags')}$, $p={d.get('p')}$, "
            rf"$d={d.get('d')}$, with $\|W\|_2<1$, with $p\,s_{{\min}}(W)>1$ (violation relative to the "
            r"bound) and where it is attained ($W$ a multiple of an orthogonal matrix, every $u_s<0$: "
            r"relative distance)"
        ),
        "q3.2 upper bound": (
            r"3.2: the upper bound $\|W\|_2^{t-\tau}$ as printed against $\|J_{t,\tau}\|_2$, the same "
            r"way (attained where every $u_s>0$)"
        ),
    }
    return text.get(check.name, check.name)


def checks_table(checks: Sequence[Check], sims: Mapping[str, Any]) -> str:
    """One question's table: what is compared, the largest error, the tolerance."""
    lines = [
        "% generated by python -m hw3build theory: do not edit",
        r"\par\smallskip\noindent{\small\begin{tabularx}{\linewidth}{@{}>{\raggedright\arraybackslash}Xrr@{}}",
        r"\toprule",
        r"compared & largest error & tolerance \\",
        r"\midrule",
    ]
    for number, check in enumerate(checks):
        lines.append(
            ("" if number == 0 else r"\addlinespace[3pt]" + "\n")
            + f"{describe(check, sims)} & {tex_number(check.max_error)} & {tex_number(check.tolerance)} \\\\"
        )
    lines += [r"\bottomrule", r"\end{tabularx}}\par"]
    return "\n".join(lines) + "\n"


def question_tables(checks: Sequence[Check], sims: Mapping[str, Any]) -> dict[str, str]:
    """``{"q1_checks.tex": table, ...}``: each check goes to its question's table."""
    return {
        f"{q}_checks.tex": checks_table([c for c in checks if c.name.startswith(q)], sims)
        for q in ("q1", "q2", "q3")
    }


# ------------------------------------------------------------------------------------ the figure


def plot_q2_variance(sims: Mapping[str, Any], path: Path) -> Path:
    """Simulated (markers) and predicted (lines) ``Var(u_l[i])`` against depth, at print size: every
    scheme on a log scale (left), the bounded ones on a linear scale with the bound e (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {  # drawn in this order: the depth-scaled markers last, on top of the exact ones
        "he": r"He, $\sigma_l^2=2/n$",
        "zero": r"exact, $W_l=0$",
        "scaled": r"depth-scaled, $\sigma_l^2=2/(nL)$",
    }
    colors = {"he": "tab:red", "scaled": "tab:blue", "zero": "tab:green"}
    with plt.rc_context({"font.size": 9, "axes.titlesize": 9, "legend.fontsize": 8.5}):
        fig, (ax_log, ax_lin) = plt.subplots(1, 2, figsize=(6.4, 2.75))
        for scheme in labels:
            s = sims[scheme]
            layers = np.arange(len(s["variance"]))
            for ax in (ax_log,) if scheme == "he" else (ax_log, ax_lin):
                ax.plot(layers, s["predicted"], "-", color=colors[scheme], lw=1.2)
                ax.plot(
                    layers[::2], s["variance"][::2], "o", ms=2.5, color=colors[scheme], label=labels[scheme]
                )
        ax_lin.axhline(math.e, color="0.4", ls="--", lw=1.0, label=r"$e$")
        ax_log.set_yscale("log")
        ax_log.set_title("all three schemes, log scale")
        ax_lin.set_title("the bounded schemes, linear scale")
        ax_lin.set_ylim(0.8, 3.0)
        for ax in (ax_log, ax_lin):
            ax.set_xlabel(r"layer $l$")
            ax.set_ylabel(r"$\mathrm{Var}(u_l[i])$")
            ax.grid(True, alpha=0.3)
        # one legend below the panels, where it covers no curve
        handles, names = ax_log.get_legend_handles_labels()
        bound, bound_name = ax_lin.get_legend_handles_labels()
        fig.legend(handles + bound[-1:], names + bound_name[-1:], loc="lower center", ncol=4, frameon=False)
        fig.tight_layout(pad=0.3, rect=(0, 0.1, 1, 1))

        def save(handle: Any) -> None:
            # no creation date: the same inputs give the same bytes
            fig.savefig(handle, format="pdf", metadata={"CreationDate": None, "ModDate": None})

        write_atomic(path, save)
        plt.close(fig)
    return path


# ------------------------------------------------------------------------------ the answer index

_LABEL = re.compile(r"\\label\{(ans:[^{}]+)\}")


def answer_index(theory_dir: Path = THEORY_DIR, formulas: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{label: key result}`` for every ``\\label{ans:...}`` of the answers, in order.

    The key result is the argument of the first ``\\keyresult{...}`` after the label (before the
    next label), with every ``\\formularef{key}`` replaced by the printed formula marked ``key``."""
    formulas = fm.printed_formulas(theory_dir, QUESTION_FILES) if formulas is None else formulas
    index: dict[str, str] = {}
    for name in QUESTION_FILES:
        text = re.sub(r"(?<!\\)%.*", "", (Path(theory_dir) / name).read_text(encoding="utf-8"))
        labels = list(_LABEL.finditer(text))
        for number, match in enumerate(labels):
            end = labels[number + 1].start() if number + 1 < len(labels) else len(text)
            at = text.find(r"\keyresult", match.end(), end)
            if at < 0:
                raise TheoryError(f"{name}: no \\keyresult{{...}} after \\label{{{match[1]}}}")
            result, _ = fm._braced(text, at + len(r"\keyresult"))
            result = re.sub(
                r"\\formularef\{([^{}]+)\}", lambda m: fm.require(formulas, m[1]), " ".join(result.split())
            )
            index[match[1]] = result
    missing = [label for label in ANSWER_LABELS if label not in index]
    if missing:
        raise TheoryError(
            f"the answers lack {', '.join(missing)}: put \\label{{...}} and \\keyresult{{...}} there"
        )
    return {label: index[label] for label in ANSWER_LABELS}


# ---------------------------------------------------------------------------------- the outputs


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def write_outputs(
    out_dir: Path = DEFAULT_OUT, theory_dir: Path = THEORY_DIR, seed: int = SEED, verbose: bool = True
) -> dict[str, Any]:
    """Runs every check and writes :data:`OUTPUT_FILES` to ``out_dir``; returns the record."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    checks, sims = run_checks(theory_dir, seed)
    if verbose:
        for check in checks:
            print(check.line())
    for name, table in question_tables(checks, sims).items():
        write_atomic(out_dir / name, table)
    plot_q2_variance(sims, out_dir / "q2_variance.pdf")
    write_json_atomic(out_dir / "answers.json", answer_index(theory_dir))
    record = {
        "seed": seed,
        "passed": all(c.passed for c in checks),
        "checks": [{**asdict(c), "passed": c.passed} for c in checks],
        "q2_simulation": sims,
        "versions": _versions(),
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json_atomic(out_dir / "checks.json", _jsonable(record))
    if verbose:
        print(f"wrote {', '.join(OUTPUT_FILES)} to {out_dir} in {record['seconds']:.1f} s")
    return record


def compile_standalone(out_pdf: Path, checks_dir: Path = DEFAULT_OUT, theory_dir: Path = THEORY_DIR) -> Path:
    """``theory/standalone.tex`` compiled by the report's runner (:func:`hw3build.report.latex.run_latexmk`)
    in a temporary folder holding the theory files and ``checks/`` (``checks_dir``); the PDF is moved
    to ``out_pdf``. Raises :class:`hw3build.report.latex.ReportError` with the log's error on failure."""
    from hw3build.report.latex import ReportError, run_latexmk

    with tempfile.TemporaryDirectory(prefix="hw3-theory-") as tmp:
        work = Path(tmp)
        for name in STANDALONE_FILES:
            if (Path(theory_dir) / name).is_file():
                shutil.copy2(Path(theory_dir) / name, work / name)
        shutil.copytree(checks_dir, work / "checks")
        pdf = run_latexmk(work / "standalone.tex", source_date_epoch=STANDALONE_EPOCH)
        # run_latexmk passes undefined references (the report has none to check); the answers' \ref
        # and \eqref must resolve
        log = pdf.with_suffix(".log").read_text(encoding="utf-8", errors="replace")
        undefined = sorted(set(re.findall(r"LaTeX Warning: Reference `([^']+)' .*undefined", log)))
        if undefined:
            raise ReportError(f"standalone.tex has undefined references: {', '.join(undefined)}")
        write_atomic(out_pdf, pdf.read_bytes())
    return Path(out_pdf)


# ---------------------------------------------------------------------------- the build's stage


def _versions() -> dict[str, str]:
    versions = {}
    for name in NUMERIC_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def theory_inputs_key(theory_dir: Path = THEORY_DIR) -> str:
    """sha256 of exactly what the checks read: the sources in :data:`CHECK_SOURCES`, the numeric
    libraries' versions, and from the answers only their marked formulas and the answer index (so
    editing the prose, or any other hw3 module, does not re-run the checks)."""
    digest = hashlib.sha256()
    for path in CHECK_SOURCES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps(_versions(), sort_keys=True).encode())
    try:
        read = {
            "formulas": fm.printed_formulas(theory_dir, QUESTION_FILES),
            "index": answer_index(theory_dir),
        }
    except (OSError, fm.FormulaError, TheoryError) as exc:
        read = {"unreadable": str(exc)}  # the checks will fail and say why; never reuse old outputs
    digest.update(json.dumps(read, sort_keys=True).encode())
    return digest.hexdigest()


def run_theory_checks(out_dir: Path, project_root: Path, *, timeout_s: float | None) -> str:
    """``python -m hw3build.report.theory --out out_dir`` in a subprocess from ``project_root``, stopped
    with everything it started after ``timeout_s`` seconds (None: no limit); returns its output.
    Raises :class:`TheoryError` (with the output's tail) when a check fails or the time runs out."""
    command = [sys.executable, "-m", "hw3build.report.theory", "--out", str(out_dir)]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    try:
        done = run_tool(command, cwd=project_root, env=env, timeout_s=timeout_s, what="the theory checks")
    except ToolTimeout as exc:
        raise TheoryError(
            f"{exc}; on a slow or busy machine allow more time, e.g. "
            f"invoke build --theory-timeout {2 * float(timeout_s or 0):g}"
        ) from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise TheoryError(f"`{' '.join(command[1:3])}` exited with {done.returncode}:\n{tail}")
    return output


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw3build theory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default build/theory)")
    parser.add_argument(
        "--pdf", type=Path, default=None, help="also compile theory/standalone.tex to this PDF"
    )
    parser.add_argument(
        "--theory", type=Path, default=THEORY_DIR, help="the folder of the answers' .tex files"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    try:
        record = write_outputs(args.out, args.theory, seed=args.seed)
    except (fm.FormulaError, TheoryError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    if not record["passed"]:
        failed = [c["name"] for c in record["checks"] if not c["passed"]]
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    if args.pdf is not None:
        from hw3build.report.latex import ReportError

        try:
            compile_standalone(args.pdf, args.out, args.theory)
        except ReportError as exc:
            print(f"FAILED: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.pdf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
