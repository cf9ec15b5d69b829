"""The checks behind the Part 1 answers (hw3.theory) and the theory stage (hw3build.report.theory).

Each formula is compared with an independent computation, each check is shown able to fail on a plausible
wrong formula, and the formulas are checked *as printed* in theory/*.tex, so the text cannot drift from
the code. Tests named ``..._the_old_check_...`` show a case the previous, weaker check let through.
"""

from __future__ import annotations

import functools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
from hw3.theory import SEED, q1, q2, q3
from hw3build.processes import ToolTimeout
from hw3build.report import formulas as fm
from hw3build.report import theory as stage

THEORY = Path(__file__).resolve().parents[1] / "theory"


def printed() -> dict[str, str]:
    return fm.printed_formulas(THEORY)


def theory_copy(tmp_path: Path, edits: dict[str, tuple[str, str]] | None = None) -> Path:
    """theory/ copied to tmp_path, with ``{file: (old, new)}`` replaced (each old text must be there)."""
    folder = tmp_path / "theory"
    shutil.copytree(THEORY, folder)
    for name, (old, new) in (edits or {}).items():
        text = (folder / name).read_text(encoding="utf-8")
        assert old in text, (name, old)
        (folder / name).write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------------------------- Q1


def test_multiplication_count_matches_the_operation_counter() -> None:
    result = q1.check_multiplication_count()
    assert result.passed, result.line()
    for T, D, M in q1.COUNT_SIZES:
        counted = q1.count_sa_operations(T, D, M)
        assert counted["matmul_multiplications"] == T * T * (D + M)  # the counter sees the products
        assert counted["multiplications"] == T * T * (D + M + 2)
        assert counted["exponentials"] == T * T


@pytest.mark.parametrize(
    ("wrong", "should_pass"),
    [
        (lambda T, D, M: T * T * (D + M + 1), False),  # forgets the scaling or the division
        (lambda T, D, M: T * T * (D + M + 3), False),  # counts the exponentials as multiplications
        (lambda T, D, M: T * T * (D + M), False),  # matrix products only
        (lambda T, D, M: T * T * (D + M + 2) + T, False),  # T reciprocals on top
        (lambda T, D, M: T * (T - 1) * (D + M + 2) + T * (D + M + 2), True),  # the same count
    ],
)
def test_a_wrong_count_formula_fails(wrong, should_pass: bool) -> None:  # noqa: ANN001
    assert q1.check_multiplication_count(formula=wrong).passed is should_pass


def test_folding_the_scale_into_q_costs_td_instead_of_t_squared() -> None:
    """The appendix's remark: scaling Q (T x D) instead of the scores (T x T)."""

    def folded(Q, K, V):  # noqa: ANN001, ANN202
        scores = (Q * (1.0 / math.sqrt(Q.shape[-1]))) @ K.T
        e = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        return (e / e.sum(dim=-1, keepdim=True)) @ V

    for T, D, M in [(5, 3, 2), (9, 16, 4)]:
        counted = q1.count_sa_operations(T, D, M, attention=folded)
        assert counted["multiplications"] == q1.sa_multiplications(T, D, M) - T * T + T * D


def test_self_attention_is_softmax_attention() -> None:
    gen = torch.Generator().manual_seed(SEED)
    Q, K, V = (torch.randn(6, n, generator=gen, dtype=torch.float64) for n in (4, 4, 3))
    expected = torch.nn.functional.scaled_dot_product_attention(Q[None], K[None], V[None])[0]
    torch.testing.assert_close(q1.self_attention(Q, K, V), expected)


def test_eq3_equals_eq2_and_the_check_fails_against_a_column_softmax() -> None:
    assert q1.check_eq3().passed

    def column_softmax(Q, K, V):  # noqa: ANN001, ANN202
        q, k, v = (torch.from_numpy(a) for a in (Q, K, V))
        return (torch.softmax(q @ k.T / math.sqrt(q.shape[1]), dim=0) @ v).numpy()

    assert not q1.check_eq3(reference=column_softmax, sizes=[(4, 3, 2), (7, 2, 3)]).passed


def test_sim_is_the_exponential_of_the_scaled_dot_product() -> None:
    q, k = [0.5, -1.0, 2.0, 0.25], [1.0, 0.5, -0.5, 2.0]
    assert q1.sim(q, k) == pytest.approx(math.exp(float(np.dot(q, k)) / 2.0), rel=1e-15)


# ---------------------------------------------------------------------------------------------- Q2

SMALL = {"n": 128, "L": 12, "networks": 16, "batch": 32, "mean_check_layers": (0, 5, 11)}


@pytest.fixture(scope="module")
def small_sims() -> dict[str, dict]:
    return {scheme: q2.simulate_residual(scheme, **SMALL) for scheme in q2.SCHEMES}


@pytest.fixture(scope="module")
def scaled_at_the_reported_size() -> dict:
    """The depth-scaled scheme at the size the answer reports (n = 512, L = 50)."""
    return q2.simulate_residual("scaled")


def test_the_small_simulations_follow_the_recurrence(small_sims: dict[str, dict]) -> None:
    he, zero, scaled = small_sims["he"], small_sims["zero"], small_sims["scaled"]
    assert np.all(np.abs(np.asarray(he["variance"][1:]) / he["variance"][:-1] / 2.0 - 1.0) < 0.15)
    assert zero["max_abs_F"] == 0.0 and zero["variance"] == [zero["variance"][0]] * (SMALL["L"] + 1)
    assert abs(zero["variance"][0] - 1.0) < 0.02  # normalised input
    assert scaled["predicted"][-1] == pytest.approx((1 + 1 / SMALL["L"]) ** SMALL["L"])
    assert max(scaled["variance"]) < math.e
    for check in q2.run_checks(small_sims):
        assert check.passed, check.line()


def test_the_conditional_mean_check_detects_a_biased_branch() -> None:
    biased = q2.simulate_residual("scaled", bias_mean=0.5, **SMALL)
    assert not q2.check_conditional_mean({"scaled": biased}).passed


def test_the_growth_check_rejects_a_rate_the_old_check_accepted(scaled_at_the_reported_size: dict) -> None:
    """With Var W = 2/(nL) the rate is 1 + 1/L = 1.02; a wrong 1 + 2/L = 1.04 was within the old check's
    10 % on the growth of every layer, and is 100 % off the growth minus one."""
    sim = scaled_at_the_reported_size
    assert (sim["n"], sim["L"]) == (512, 50)
    assert q2.check_growth({"scaled": sim}).passed

    def wrong(v, n, sigma2, beta2):  # noqa: ANN001, ANN202 - forgets the ReLU's 1/2
        return (1 + n * sigma2) * v + beta2

    per_layer = np.asarray(sim["variance"][1:]) / np.asarray(sim["variance"][:-1])
    assert np.max(np.abs(per_layer / wrong(1.0, 512, 2 / (512 * 50), 0.0) - 1.0)) < 0.1  # old: passed
    assert not q2.check_growth({"scaled": sim}, step=wrong).passed
    # the same at the scale of the whole stack: v_L = 2.69 against (1.04)^50 = 7.1
    assert sim["variance"][-1] == pytest.approx(1.02**50, rel=0.05)


def test_the_exact_scheme_check_fails_when_anything_moves(small_sims: dict[str, dict]) -> None:
    assert q2.check_exact_scheme(small_sims["zero"]).passed
    assert not q2.check_exact_scheme(small_sims["scaled"]).passed


# ---------------------------------------------------------------------------------------------- Q3


def test_the_code_forms_of_the_gradient_match_autograd() -> None:
    for check in q3.check_bptt():
        assert check.passed, check.line()


def _wrong_matrix_form(W, B, C, x, y, v0, p, transpose=False, shift=False):  # noqa: ANN001, ANN202
    """The matrix form with one plausible mistake: J instead of J^T, or D_{tau-1} instead of D_tau."""
    us, vs = q3.rnn_forward(W, B, x, v0, p)
    t, g = len(us), C @ vs[len(us)] - y
    grad = torch.zeros_like(W)
    for tau in range(1, t + 1):
        J = q3.state_jacobian(us, W, t, tau, p)
        D = torch.diag(q3.leaky_relu_derivative(us[max(tau - 2, 0) if shift else tau - 1], p))
        grad += torch.outer(D @ (J if transpose else J.T) @ C.T @ g, vs[tau - 1])
    return grad


@pytest.mark.parametrize("mistake", ["transpose", "shift"])
def test_the_gradient_check_fails_on_a_wrong_form(mistake: str) -> None:
    wrong = functools.partial(_wrong_matrix_form, **{mistake: True})
    assert not any(c.passed for c in q3.check_bptt({"matrix form": wrong}))


def test_leaky_relu_and_its_derivative_match_torch() -> None:
    u = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0], dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(q3.leaky_relu(u, 0.1), torch.maximum(0.1 * u, u))
    torch.nn.functional.leaky_relu(u, 0.1).sum().backward()
    torch.testing.assert_close(q3.leaky_relu_derivative(u.detach(), 0.1), u.grad)


def test_the_jacobian_bounds_hold_at_every_lag() -> None:
    lower, upper = q3.check_jacobian_bounds()
    assert lower.passed and upper.passed
    last = lower.details["at_last_lag"]
    assert last["vanishing"]["norm_J"] < 1e-3 and last["exploding"]["s_min_J"] > 1e3


def test_the_lower_bound_check_rejects_a_bound_the_old_check_accepted() -> None:
    """A wrong lower bound without p, s_min(W)^k: ||J||_2 (what the old check compared) respects it at
    every lag, s_min(J) (what the text bounds) does not."""
    gen = torch.Generator().manual_seed(SEED)
    W = q3.bound_matrix((0.5, 0.9), 8, gen)
    x, v0 = torch.randn(20, 8, generator=gen, dtype=torch.float64), torch.zeros(8, dtype=torch.float64)
    us, _ = q3.rnn_forward(W, torch.eye(8, dtype=torch.float64), x, v0, 0.5)
    wrong_rate = float(torch.linalg.svdvals(W)[-1])
    jacobians = [q3.state_jacobian(us, W, 20, 20 - k, 0.5) for k in range(21)]
    norms = [float(torch.linalg.matrix_norm(J, ord=2)) for J in jacobians]
    smallest = [float(torch.linalg.svdvals(J)[-1]) for J in jacobians]
    assert all(norms[k] >= wrong_rate**k for k in range(21))  # the old comparison passes
    assert any(smallest[k] < wrong_rate**k for k in range(21))  # the claim itself fails
    lower, _ = q3.check_jacobian_bounds(lower_rate=lambda W, p: float(torch.linalg.svdvals(W)[-1]))
    assert not lower.passed


def test_the_upper_bound_check_rejects_a_too_small_bound() -> None:
    _, upper = q3.check_jacobian_bounds(upper_rate=lambda W, p: p * float(torch.linalg.svdvals(W)[0]))
    assert not upper.passed


# --------------------------------------------------------------------------- the printed formulas


def test_the_printed_formulas_are_the_codes() -> None:
    formulas = printed()
    T, D, M = sympy.symbols("T D M")
    assert (
        sympy.expand(
            fm.algebraic(formulas["q1.4-count"], {"T": T, "D": D, "M": M}) - q1.sa_multiplications(T, D, M)
        )
        == 0
    )
    step = stage.printed_step(formulas)
    for v, n, sigma2, beta2 in [(1.0, 512, 2 / 512, 0.0), (2.5, 7, 0.3, 0.2)]:
        assert step(v, n, sigma2, beta2) == pytest.approx(q2.variance_step(v, n, sigma2, beta2), rel=1e-14)
    assert stage.check_printed_variances(formulas).passed
    prob = q3.random_problem(7, SEED)
    args = (prob["W"], prob["B"], prob["C"], prob["x"], prob["y"], prob["v0"], 0.2)
    for name, form in stage.printed_forms(formulas).items():
        code = q3.bptt_grad_W_elements if name == "element form" else q3.bptt_grad_W
        torch.testing.assert_close(form(*args), code(*args), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("q3.tex", r"J_{t,\tau}[k,i]}", r"J_{t,\tau}[i,k]}"),  # transposed Jacobian, element form
        ("q3.tex", r"D_\tau\,J_{t,\tau}^\top C^\top", r"D_\tau\,J_{t,\tau}C^\top"),  # J for J^T
        ("q3.tex", r"\bigl(W^\top D_{\tau+1}\bigr)\cdots", r"\bigl(W^\top D_{\tau}\bigr)\cdots"),  # D shifted
        ("q3.tex", r"g\;v_{\tau-1}^\top}\;}", r"g\;v_{\tau}^\top}\;}"),  # v_tau for v_{tau-1}
    ],
)
def test_an_edited_gradient_formula_fails_its_check(tmp_path: Path, file: str, old: str, new: str) -> None:
    formulas = fm.printed_formulas(theory_copy(tmp_path, {file: (old, new)}))
    assert not all(c.passed for c in q3.check_bptt(stage.printed_forms(formulas)))


def test_an_edited_count_or_variance_formula_fails_its_check(
    tmp_path: Path, small_sims: dict[str, dict]
) -> None:
    count = fm.printed_formulas(theory_copy(tmp_path / "a", {"q1.tex": ("{T^2(D+M+2)}", "{T^2(D+M+3)}")}))
    assert not q1.check_multiplication_count(formula=stage.printed_count(count)).passed
    scaled = fm.printed_formulas(
        theory_copy(tmp_path / "b", {"q2.tex": (r"\cdot\frac{c}{L}", r"\cdot\frac{1}{L}")})
    )
    assert not stage.check_printed_variances(scaled).passed
    rec = fm.printed_formulas(
        theory_copy(tmp_path / "c", {"q2.tex": (r"\frac{n\sigma_l^2}{2}", r"n\sigma_l^2")})
    )
    assert not q2.check_growth(small_sims, step=stage.printed_step(rec)).passed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r"\checkedformula{a}{x}\checkedformula{a}{y}", "marked twice"),
        (r"\checkedformula{a}{x", "unbalanced"),
    ],
)
def test_marked_formulas_are_read_strictly(text: str, message: str) -> None:
    with pytest.raises(fm.FormulaError, match=message):
        fm.find_formulas(text)


def test_the_readers_refuse_what_they_cannot_read() -> None:
    assert fm.find_formulas("% \\checkedformula{a}{x}\n\\checkedformula{b}{y}") == {"b": "y"}
    with pytest.raises(fm.FormulaError, match="unknown name"):
        fm.algebraic(r"\frac{2}{n}x", {"n": sympy.Symbol("n")})
    with pytest.raises(fm.FormulaError, match="no formula marked"):
        fm.require({}, "q9")
    symbols = {"g": lambda: torch.ones(2)}
    with pytest.raises(fm.FormulaError, match="before its sum"):
        fm.index_sum(r"g[k]\sum_{k=1}^{m}g[k]", symbols, {"m": 2, "i": 2, "j": 2}, ("i", "j"))
    with pytest.raises(fm.FormulaError, match="unknown symbol"):
        fm.matrix_sum(r"\sum_{\tau=1}^{t}Z_\tau", symbols, {"t": 2})


# ------------------------------------------------------------------------------- the answer index


def test_the_answer_index_has_every_label_in_order() -> None:
    index = stage.answer_index(THEORY)
    assert list(index) == list(stage.ANSWER_LABELS)
    text = "".join((THEORY / name).read_text(encoding="utf-8") for name in stage.QUESTION_FILES)
    for label in stage.ANSWER_LABELS:
        assert f"\\phantomsection\\label{{{label}}}" in text  # a link target at the heading
    assert "T^2(D+M+2)" in index["ans:q1.4"]
    assert printed()["q3.1-matrix"] in index["ans:q3.1"] and r"\formularef" not in "".join(index.values())


def test_a_label_without_a_key_result_is_refused(tmp_path: Path) -> None:
    folder = theory_copy(tmp_path, {"q3.tex": (r"\keyresult{(1)", r"\nokey{(1)")})
    with pytest.raises(stage.TheoryError, match="ans:q3.2"):
        stage.answer_index(folder)


# ------------------------------------------------------------------------------------- the stage


def test_the_key_covers_what_the_checks_read_and_nothing_else(tmp_path: Path) -> None:
    names = {path.name for path in stage.CHECK_SOURCES}
    assert {"q1.py", "q2.py", "q3.py", "__init__.py", "theory.py", "formulas.py"} <= names
    assert "train.py" not in names  # editing the training code no longer re-runs the checks
    base = stage.theory_inputs_key(theory_copy(tmp_path / "a"))
    prose = theory_copy(
        tmp_path / "b", {"q1.tex": ("Machine translation, the task", "Machine translation, a task")}
    )
    assert stage.theory_inputs_key(prose) == base
    formula = theory_copy(tmp_path / "c", {"q1.tex": ("{T^2(D+M+2)}", "{T^2(D+M+3)}")})
    assert stage.theory_inputs_key(formula) != base
    index = theory_copy(tmp_path / "d", {"q2.tex": (r"\keyresult{Normalised", r"\keyresult{Normalized")})
    assert stage.theory_inputs_key(index) != base


def test_a_timeout_names_the_limit_and_how_to_raise_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def too_slow(command, **kwargs):  # noqa: ANN001, ANN202
        raise ToolTimeout(kwargs["what"], kwargs["timeout_s"], "")

    monkeypatch.setattr(stage, "run_tool", too_slow)
    with pytest.raises(stage.TheoryError, match=r"its 12 s limit.*--theory-timeout 24"):
        stage.run_theory_checks(tmp_path, tmp_path, timeout_s=12)


@pytest.fixture(scope="module")
def stage_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real outputs of ``python -m hw3build.report.theory`` (the reported sizes), produced once."""
    out = tmp_path_factory.mktemp("theory")
    assert stage.main(["--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_the_stage_writes_every_output(stage_out: Path) -> None:
    for name in stage.OUTPUT_FILES:
        assert (stage_out / name).stat().st_size > 0, name
    record = json.loads((stage_out / "checks.json").read_text())
    assert record["passed"] is True and record["seed"] == SEED
    assert len(record["checks"]) == 12
    assert json.loads((stage_out / "answers.json").read_text()) == stage.answer_index(THEORY)
    assert (stage_out / "q2_variance.pdf").read_bytes().startswith(b"%PDF")
    for q in ("q1", "q2", "q3"):
        table = (stage_out / f"{q}_checks.tex").read_text()
        assert "Numerical check" in table and r"\begin{tabularx}" in table
        assert "passed" not in table.lower() and "hw3" not in table.split("\n", 1)[1]


def test_the_answers_include_their_tables_at_the_end() -> None:
    for q in ("q1", "q2", "q3"):
        text = (THEORY / f"{q}.tex").read_text(encoding="utf-8").rstrip()
        assert text.endswith(f"\\input{{checks/{q}_checks.tex}}")
        assert "passed" not in text.lower() and "hw3" not in text.split("\n", 3)[-1]


def test_the_stage_exits_nonzero_on_a_wrong_printed_formula(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = theory_copy(tmp_path, {"q3.tex": (r"J_{t,\tau}[k,i]}", r"J_{t,\tau}[i,k]}")})
    small = functools.partial(q2.simulate_residual, **SMALL)
    monkeypatch.setattr(q2, "simulate_residual", lambda scheme, seed: small(scheme, seed=seed))
    assert stage.main(["--out", str(tmp_path / "out"), "--theory", str(folder)]) == 1
    record = json.loads((tmp_path / "out" / "checks.json").read_text())
    failed = [c["name"] for c in record["checks"] if not c["passed"]]
    assert "q3.1 element form" in failed and "q3.1 matrix form" not in failed


def _require_tex() -> None:
    if shutil.which("latexmk") is None or shutil.which("xelatex") is None:
        pytest.fail(
            "TeX Live is required for this test: apt-get install latexmk texlive-xetex texlive-latex-extra"
        )


@pytest.mark.tex
@pytest.mark.slow
def test_the_standalone_compiles_with_the_one_runner(stage_out: Path, tmp_path: Path) -> None:
    _require_tex()
    pdf = stage.compile_standalone(tmp_path / "theory.pdf", stage_out)
    assert pdf.read_bytes().startswith(b"%PDF")


@pytest.mark.tex
@pytest.mark.slow
def test_the_standalone_refuses_an_undefined_reference(stage_out: Path, tmp_path: Path) -> None:
    _require_tex()
    folder = theory_copy(tmp_path)
    with open(folder / "q3.tex", "a", encoding="utf-8") as f:
        f.write("\nSee Figure~\\ref{fig:does-not-exist}.\n")
    from hw3build.report.latex import ReportError

    with pytest.raises(ReportError, match="fig:does-not-exist"):
        stage.compile_standalone(tmp_path / "theory.pdf", stage_out, folder)
