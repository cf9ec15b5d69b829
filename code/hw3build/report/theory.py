"""The theory stage: the numerical checks behind Part 1, their tables and figure, and the theory alone.

``python -m hw3build.report.theory [--out DIR] [--pdf PATH] [--theory DIR]`` runs every check of
:mod:`hw3.theory` on the formulas *as the answers print them* (read back by :mod:`hw3build.report.formulas`),
prints one line per check, and writes to DIR (default ``build/theory``):

- ``q1_checks.tex``, ``q2_checks.tex``, ``q3_checks.tex``: one "Numerical check" table per question
  (what is compared, the largest error, the tolerance), ``\\input`` at the end of each answer;
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
STANDALONE_FILES = ("preamble.tex", *QUESTION_FILES, "appendix.tex", "standalone.tex")
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


def check_printed_variances(formulas: Mapping[str, str]) -> Check:
    """The weight variances the answer prints for He, the depth-scaled scheme and the exact scheme
    against the ones the simulation uses (:mod:`hw3.theory.q2`), as symbolic expressions: the error is
    the number of schemes whose printed variance differs."""
    n, L, c = sympy.symbols("n L c", positive=True)
    names = {"n": n, "L": L, "c": c}
    code = {
        "q2-he": q2.he_weight_variance(n),
        "q2-scaled": q2.scaled_weight_variance(n, L, c),
        "q2-exact": q2.exact_weight_variance(),
    }
    wrong = [
        key
        for key, expected in code.items()
        if sympy.simplify(fm.algebraic(fm.rhs(fm.require(formulas, key)), names) - expected) != 0
    ]
    return Check("q2 printed variances", float(len(wrong)), 0.0, {"differ": wrong})


def q3_symbols(W: torch.Tensor, us: list, vs: list, g: torch.Tensor, C: torch.Tensor, p: float) -> fm.Symbols:
    """What the symbols of the answer to Q3 denote for one forward pass (steps counted from 1)."""
    return {
        "phi'(u)": lambda s: q3.leaky_relu_derivative(us[s - 1], p),
        "D": lambda s: torch.diag(q3.leaky_relu_derivative(us[s - 1], p)),
        "J": lambda t, s: q3.state_jacobian(us, W, t, s, p),
        "v": lambda s: vs[s],
        "W": lambda: W,
        "C": lambda: C,
        "g": lambda: g,
    }


def printed_gradient(tex: str, form: str) -> q3.GradFn:
    """A printed form of Q3.1's gradient (``"matrix"`` or ``"element"``) as a function of the problem."""

    def grad(W, B, C, x, y, v0, p):  # noqa: ANN001, ANN202 - the signature of q3.GradFn
        with torch.no_grad():
            us, vs = q3.rnn_forward(W, B, x, v0, p)
            t, d, m = len(us), W.shape[0], C.shape[0]
            symbols = q3_symbols(W, us, vs, C @ vs[t] - y, C, p)
            sizes = {"t": t, "d": d, "m": m, "i": d, "j": d}
            if form == "matrix":
                return fm.matrix_sum(tex, symbols, sizes)
            return fm.index_sum(tex, symbols, sizes, ("i", "j"))

    return grad


def printed_forms(formulas: Mapping[str, str]) -> dict[str, q3.GradFn]:
    """The boxed gradient of Q3.1 as printed: both expressions of the matrix form, the element form."""
    return {
        "matrix form": printed_gradient(fm.require(formulas, "q3.1-matrix"), "matrix"),
        "unrolled matrix form": printed_gradient(fm.require(formulas, "q3.1-unrolled"), "matrix"),
        "element form": printed_gradient(fm.require(formulas, "q3.1-element"), "element"),
    }


# ---------------------------------------------------------------------------------- the checks


def run_checks(theory_dir: Path = THEORY_DIR, seed: int = SEED) -> tuple[list[Check], dict[str, Any]]:
    """Every check, on the formulas as printed in ``theory_dir``; returns them and the Q2 simulations."""
    formulas = fm.printed_formulas(theory_dir, QUESTION_FILES)
    step = printed_step(formulas)
    sims = {scheme: q2.simulate_residual(scheme, seed=seed) for scheme in q2.SCHEMES}
    for sim in sims.values():
        sim["predicted"] = q2.predicted_variance(sim["scheme"], sim["n"], sim["L"], step=step)
    checks = [
        q1.check_multiplication_count(formula=printed_count(formulas)),
        q1.check_eq3(seed=seed),
        check_printed_variances(formulas),
        q2.check_conditional_mean(sims),
        q2.check_growth(sims, step=step),
        q2.check_exact_scheme(sims["zero"]),
        q2.check_symmetry(sims),
        *q3.check_bptt(printed_forms(formulas), seed=seed),
        *q3.check_jacobian_bounds(seed=seed),
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
    d, he = check.details, sims["he"]
    size = f"$n={he['n']}$, $L={he['L']}$, {he['networks']} networks $\\times$ {he['batch']} inputs"
    text = {
        "q1.4 count": (
            r"1.4: multiplications counted while running Eq.~2 (matrix products by PyTorch's FLOP "
            r"counter, element-wise products and divisions by an operation counter) against "
            rf"$T^2(D+M+2)$ as printed; exponentials against $T^2$; {_sizes(d.get('sizes', [[0]]))}"
        ),
        "q1.5 eq3": (
            r"1.5: Eq.~3 with explicit sums of $\simf$ against $\softmax(QK^\top/\sqrt D)\,V$, "
            rf"float64, {_sizes(d.get('sizes', [[0]]))}; absolute difference"
        ),
        "q2 printed variances": (
            r"$\sigma_l^2$ as printed (He $2/n$, depth-scaled $\frac2n\cdot\frac cL$, exact $0$) against "
            r"the simulated ones: schemes that differ"
        ),
        "q2 conditional mean": (
            r"condition (1): $\sqrt K\,\mathrm{RMS}(\bar F_l)/\mathrm{RMS}(F_l)$, $\bar F_l$ the mean of "
            rf"$F_l$ over $K={he['mean_check_draws']}$ weight draws at a fixed $u_l$ (about 1 when "
            r"$\E[F_l\mid u_l]=0$, about $\sqrt K$ otherwise)"
        ),
        "q2 growth": (
            r"mean growth of $\Var(u_l[i])$ per layer minus one, simulated against "
            r"$n\sigma_l^2/2$ of \eqref{eq:q2-rec} as printed (He: $1$; depth-scaled: $1/L$), relative; "
            + size
        ),
        "q2 exact": r"exact scheme: $\max_l|\widehat\Var(u_l[i])-\widehat\Var(u_0[i])|+\max_l|F_l|$",
        "q2 symmetry": r"$\E[\ReLU(u_l[i])^2]/(\Var(u_l[i])/2)$ against $1$ at every layer (Step~3)",
        "q3.1 matrix form": (
            r"3.1: the boxed matrix form (first expression) as printed against autograd, "
            rf"{len(d.get('cases', []))} cases $(t,p)$, $t\le{max(c[0] for c in d.get('cases', [[0]]))}$, "
            rf"$d={d.get('d')}$, float64; relative to $\max|\partial\ell/\partial W|$"
        ),
        "q3.1 unrolled matrix form": r"3.1: the boxed matrix form (second expression), the same way",
        "q3.1 element form": r"3.1: the boxed element form at every $(i,j)$, the same way",
        "q3.2 lower bound": (
            rf"3.2: $s_{{\min}}(J_{{t,t-k}})\ge(p\,s_{{\min}}(W))^k$ for $k\le{d.get('lags')}$, $p={d.get('p')}$, "
            rf"$d={d.get('d')}$, with $\|W\|_2<1$ and with $p\,s_{{\min}}(W)>1$; violation relative to the bound"
        ),
        "q3.2 upper bound": r"3.2: $\|J_{t,t-k}\|_2\le\|W\|_2^k$, the same lags and matrices",
    }
    return text.get(check.name, check.name)


def checks_table(checks: Sequence[Check], sims: Mapping[str, Any]) -> str:
    """One "Numerical check" table: what is compared, the largest error, the tolerance."""
    lines = [
        "% generated by python -m hw3build.report.theory: do not edit",
        r"\par\medskip\noindent\textbf{Numerical check.}\nopagebreak\par\smallskip",
        r"\noindent{\small\begin{tabularx}{\linewidth}{@{}>{\raggedright\arraybackslash}Xrr@{}}",
        r"\toprule",
        r"compared & largest error & tolerance \\",
        r"\midrule",
    ]
    for check in checks:
        lines.append(
            f"{describe(check, sims)} & {tex_number(check.max_error)} & {tex_number(check.tolerance)} \\\\"
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

    labels = {
        "he": r"He, $\sigma_l^2=2/n$",
        "scaled": r"depth-scaled, $\sigma_l^2=2/(nL)$",
        "zero": r"exact, $W_l=0$",
    }
    colors = {"he": "tab:red", "scaled": "tab:blue", "zero": "tab:green"}
    with plt.rc_context({"font.size": 9, "axes.titlesize": 9, "legend.fontsize": 8.5}):
        fig, (ax_log, ax_lin) = plt.subplots(1, 2, figsize=(6.4, 2.5))
        for scheme, s in sims.items():
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
        ax_log.legend(loc="upper left", frameon=False)
        ax_lin.legend(loc="center right", frameon=False)
        fig.tight_layout(pad=0.3)

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
