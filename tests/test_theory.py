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

SMALL = {"WIDTH": 128, "DEPTH": 12, "BATCH": 32}


def small_simulations(formulas: dict[str, str]) -> dict[str, dict]:
    """The stage's Q2 simulations at n = 128, L = 12 (32 inputs per network), the variances as printed."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SMALL.items():
            patch.setattr(q2, name, value)
        return stage.q2_simulations(formulas)


@pytest.fixture(scope="module")
def small_sims() -> dict[str, dict]:
    return small_simulations(printed())


def q2_failures(folder: Path) -> list[str]:
    """The Q2 checks that fail on the answers in ``folder``, simulated small."""
    formulas = fm.printed_formulas(folder)
    return [c.name for c in stage.q2_checks(formulas, small_simulations(formulas)) if not c.passed]


@pytest.fixture(scope="module")
def scaled_at_the_reported_size() -> dict:
    """The depth-scaled scheme at the size the answer reports (n = 512, L = 50, Var W = 2/(nL))."""
    return q2.simulate_residual(2 / (512 * 50))


def test_the_small_simulations_pass_every_check(small_sims: dict[str, dict]) -> None:
    he, zero, scaled = small_sims["he"], small_sims["zero"], small_sims["scaled"]
    assert (he["sigma2"], scaled["sigma2"], zero["sigma2"]) == (2 / 128, 2 / (128 * 12), 0.0)
    assert np.all(np.abs(np.asarray(he["variance"][1:]) / he["variance"][:-1] / 2.0 - 1.0) < 0.15)
    assert zero["max_abs_F"] == 0.0 and zero["variance"] == [zero["variance"][0]] * (SMALL["DEPTH"] + 1)
    assert max(scaled["variance"]) < math.e
    assert small_sims["bias"]["beta2"] == 0.25 and not small_sims["plain"]["skip"]
    for check in stage.q2_checks(printed(), small_sims):
        assert check.passed, check.line()


def test_the_biases_are_drawn_with_the_given_variance() -> None:
    """Without weights, every block adds an independent N(0, beta2) bias: v_l = 1 + l beta2."""
    sim = q2.simulate_residual(0.0, 512, 8, beta2=0.25, mean_check_layers=())
    assert sim["variance"] == pytest.approx([1 + 0.25 * layer for layer in range(9)], rel=0.02)


def test_the_conditional_mean_check_detects_a_biased_branch() -> None:
    biased = q2.simulate_residual(2 / (128 * 12), 128, 12, bias_mean=0.5, mean_check_layers=(0, 5, 11))
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
    lower, _ = q3.check_jacobian_bounds(lower=lambda W, p, k: float(torch.linalg.svdvals(W)[-1]) ** k)
    assert not lower.passed


def test_the_upper_bound_check_rejects_a_too_small_bound() -> None:
    _, upper = q3.check_jacobian_bounds(upper=lambda W, p, k: (p * float(torch.linalg.svdvals(W)[0])) ** k)
    assert not upper.passed


def test_the_bound_checks_reject_true_but_looser_bounds() -> None:
    """Where the bounds are attained, a weaker true bound fails: one lag too many below, twice above."""
    lower, _ = q3.check_jacobian_bounds(lower=lambda W, p, k: q3.jacobian_lower_bound(W, p, k + 1))
    _, upper = q3.check_jacobian_bounds(upper=lambda W, p, k: 2 * q3.jacobian_upper_bound(W, p, k))
    assert not lower.passed and not upper.passed


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
    assert stage.printed_q2(formulas, "q2-he")(n=512) == 2 / 512
    assert stage.printed_q2(formulas, "q2-scaled")(n=512, L=50, c=2) == pytest.approx(2 / 512 * 2 / 50)
    assert stage.printed_q2(formulas, "q2-scaled-closed")(l=50, L=50, c=1) == pytest.approx(1.02**50)
    prob = q3.random_problem(7, SEED)
    args = (prob["W"], prob["B"], prob["C"], prob["x"], prob["y"], prob["v0"], 0.2)
    for name, form in stage.printed_forms(formulas).items():
        code = q3.bptt_grad_W_elements if name == "element form" else q3.bptt_grad_W
        torch.testing.assert_close(form(*args), code(*args), rtol=1e-12, atol=1e-14)
    us, _ = q3.rnn_forward(prob["W"], prob["B"], prob["x"], prob["v0"], 0.2)
    jacobian = stage.printed_jacobian(formulas)
    for tau in range(8):
        expected = q3.state_jacobian(us, prob["W"], 7, tau, 0.2)
        torch.testing.assert_close(jacobian(us, prob["W"], 7, tau, 0.2), expected, rtol=1e-12, atol=1e-15)
    for key, code_bound in (("q3.2-lower", q3.jacobian_lower_bound), ("q3.2-upper", q3.jacobian_upper_bound)):
        bound = stage.printed_bound(formulas, key)
        assert bound(prob["W"], 0.2, 5) == pytest.approx(code_bound(prob["W"], 0.2, 5), rel=1e-14)


# Each edit below makes a printed formula wrong (a factor 2, a wrong exponent or index, a missing term)
# in a copy of the real theory/*.tex; the check that reads that formula must fail on it.

EQ3 = r"\checkedformula{q1.5-eq3}{\frac{\sum_{j=1}^{T}\simf(Q_i,K_j)\,V_j}{\sum_{r=1}^{T}\simf(Q_i,K_r)}}"
ROWS = r"\checkedformula{q1.5-rows}{\sum_{j=1}^{T}\frac{\simf(Q_i,K_j)}{\sum_{r=1}^{T}\simf(Q_i,K_r)}\,V_j}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (EQ3, EQ3.replace(r"\simf(Q_i,K_r)", r"\simf(Q_r,K_i)")),  # normalised over the column
        (EQ3, EQ3.replace(r"\frac{\sum_{j=1}^{T}", r"\frac{2\sum_{j=1}^{T}")),  # a factor 2
        (EQ3, EQ3.replace(r"\,V_j}", r"\,V_i}")),  # the wrong row of V
        (EQ3, r"\checkedformula{q1.5-eq3}{\sum_{j=1}^{T}\simf(Q_i,K_j)\,V_j}"),  # no denominator
        (ROWS, ROWS.replace(r"{\simf(Q_i,K_j)}", r"{\simf(Q_j,K_i)}")),  # transposed similarity
    ],
)
def test_an_edited_eq3_fails_its_check(tmp_path: Path, old: str, new: str) -> None:
    formulas = fm.printed_formulas(theory_copy(tmp_path, {"q1.tex": (old, new)}))
    forms = {key: stage.printed_eq3(formulas, key) for key in ("q1.5-rows", "q1.5-eq3")}
    assert q1.check_eq3(forms=forms, sizes=q1.EQ3_SIZES[:4]).passed is False


def test_the_printed_eq3_passes_its_check() -> None:
    formulas = printed()
    assert q1.check_eq3(
        forms={key: stage.printed_eq3(formulas, key) for key in ("q1.5-rows", "q1.5-eq3")}
    ).passed


JACOBIAN = r"{(D_tW)(D_{t-1}W)\cdots(D_{\tau+1}W)}"


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("q3.tex", r"J_{t,\tau}[k,i]}", r"J_{t,\tau}[i,k]}"),  # transposed Jacobian, element form
        ("q3.tex", r"D_\tau\,J_{t,\tau}^\top C^\top", r"D_\tau\,J_{t,\tau}C^\top"),  # J for J^T
        ("q3.tex", r"\bigl(W^\top D_{\tau+1}\bigr)\cdots", r"\bigl(W^\top D_{\tau}\bigr)\cdots"),  # D shifted
        ("q3.tex", r"g\;v_{\tau-1}^\top}\;}", r"g\;v_{\tau}^\top}\;}"),  # v_tau for v_{tau-1}
        ("q3.tex", JACOBIAN, r"{(WD_t)(WD_{t-1})\cdots(WD_{\tau+1})}"),  # D and W swapped in J
        ("q3.tex", JACOBIAN, r"{(D_tW)(D_{t-1}W)\cdots(D_{\tau}W)}"),  # one factor too many in J
        ("q3.tex", JACOBIAN, r"{(D_{\tau+1}W)(D_{\tau+2}W)\cdots(D_tW)}"),  # earliest on the left
    ],
)
def test_an_edited_gradient_formula_fails_its_check(tmp_path: Path, file: str, old: str, new: str) -> None:
    formulas = fm.printed_formulas(theory_copy(tmp_path, {file: (old, new)}))
    assert not all(c.passed for c in q3.check_bptt(stage.printed_forms(formulas)))


LOWER = r"\checkedformula{q3.2-lower}{\bigl(p\,s_{\min}(W)\bigr)^{t-\tau}}"
UPPER = r"\checkedformula{q3.2-upper}{\|W\|_2^{\,t-\tau}}"


@pytest.mark.parametrize(
    ("old", "new", "failing"),
    [
        (LOWER, LOWER.replace(r"\bigl(p\,", r"\bigl("), "q3.2 lower bound"),  # p missing
        (LOWER, LOWER.replace(r"^{t-\tau}", r"^{t-\tau+1}"), "q3.2 lower bound"),  # exponent
        (LOWER, LOWER.replace(r"{\bigl(", r"{2\bigl("), "q3.2 lower bound"),  # a factor 2
        (UPPER, UPPER.replace(r"{\|W", r"{2\|W"), "q3.2 upper bound"),  # a factor 2
        (UPPER, UPPER.replace(r"t-\tau}}", r"t-\tau-1}}"), "q3.2 upper bound"),  # exponent
        (UPPER, UPPER.replace(r"{\|W", r"{p\|W"), "q3.2 upper bound"),  # p where it does not belong
    ],
)
def test_an_edited_bound_fails_its_check(tmp_path: Path, old: str, new: str, failing: str) -> None:
    formulas = fm.printed_formulas(theory_copy(tmp_path, {"q3.tex": (old, new)}))
    checks = q3.check_jacobian_bounds(
        lower=stage.printed_bound(formulas, "q3.2-lower"), upper=stage.printed_bound(formulas, "q3.2-upper")
    )
    assert [c.name for c in checks if not c.passed] == [failing]


def test_an_edited_count_fails_its_check(tmp_path: Path) -> None:
    count = fm.printed_formulas(theory_copy(tmp_path, {"q1.tex": ("{T^2(D+M+2)}", "{T^2(D+M+3)}")}))
    assert not q1.check_multiplication_count(formula=stage.printed_count(count)).passed


REC = r"\Bigr)v_l+\beta_l^2}"


@pytest.mark.parametrize(
    ("old", "new", "failing"),
    [
        (REC, r"\Bigr)v_l+\beta_l}", "q2 bias"),  # beta for beta^2
        (REC, r"\Bigr)v_l+2\beta_l^2}", "q2 bias"),  # a factor 2
        (REC, r"\Bigr)v_l}", "q2 bias"),  # the bias term missing
        (r"{v_{l+1}=\Bigl(1+\frac{n\sigma_l^2}{2}\Bigr)", r"{v_{l+1}=\Bigl(1+n\sigma_l^2\Bigr)", "q2 growth"),
        (r"{\sigma_l^2=\frac{2}{n}}", r"{\sigma_l^2=\frac{1}{n}}", "q2 he plain"),  # He halved
        (
            r"{\sigma_l^2=\frac{2}{n}\cdot\frac{c}{L}}",
            r"{\sigma_l^2=\frac{2}{n}\cdot\frac{1}{L}}",
            "q2 closed forms",
        ),
        (
            r"{\sigma_l^2=\frac{2}{n}\cdot\frac{c}{L}}",
            r"{\sigma_l^2=\frac{2}{n}\cdot\frac{c}{L^2}}",
            "q2 closed forms",
        ),
        (r"{\sigma_l^2=0}", r"{\sigma_l^2=\frac{1}{nL}}", "q2 exact"),
        (r"{2^l}", r"{2^{2l}}", "q2 closed forms"),  # wrong exponent
        (r"{2^l}", r"{2\cdot2^l}", "q2 closed forms"),  # a factor 2
        (r"{(1+c/L)^l}", r"{(1+2c/L)^l}", "q2 closed forms"),
    ],
)
def test_an_edited_variance_formula_fails_its_check(tmp_path: Path, old: str, new: str, failing: str) -> None:
    assert failing in q2_failures(theory_copy(tmp_path, {"q2.tex": (old, new)}))


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
    assert len(record["checks"]) == 14
    assert json.loads((stage_out / "answers.json").read_text()) == stage.answer_index(THEORY)
    assert (stage_out / "q2_variance.pdf").read_bytes().startswith(b"%PDF")
    for q in ("q1", "q2", "q3"):
        table = (stage_out / f"{q}_checks.tex").read_text()
        assert r"\begin{tabularx}" in table
        assert "passed" not in table.lower() and "hw3" not in table.split("\n", 1)[1]


def test_the_answers_point_at_their_tables_in_the_appendix() -> None:
    checks = (THEORY / "checks.tex").read_text(encoding="utf-8")
    for q in ("q1", "q2", "q3"):
        text = (THEORY / f"{q}.tex").read_text(encoding="utf-8")
        assert "\\input{checks/" not in text and f"\\checkedat{{checks:{q}}}" in text
        assert "passed" not in text.lower() and "hw3" not in text.split("\n", 3)[-1]
        label = checks.index(f"\\label{{checks:{q}}}")
        assert checks.index(f"\\input{{checks/{q}_checks.tex}}") > label
    assert "checks.tex" in stage.STANDALONE_FILES


def test_the_stage_exits_nonzero_on_a_wrong_printed_formula(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = theory_copy(tmp_path, {"q3.tex": (r"J_{t,\tau}[k,i]}", r"J_{t,\tau}[i,k]}")})
    for name, value in SMALL.items():
        monkeypatch.setattr(q2, name, value)
    assert stage.main(["--out", str(tmp_path / "out"), "--theory", str(folder)]) == 1
    record = json.loads((tmp_path / "out" / "checks.json").read_text())
    failed = [c["name"] for c in record["checks"] if not c["passed"]]
    assert failed == ["q3.1 element form"]


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
