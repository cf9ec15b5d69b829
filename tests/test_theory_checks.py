"""The checks behind the Part 1 answers: each formula against an independent computation, and each check
shown able to fail on a plausible wrong formula (off-by-one count, transposed Jacobian, column softmax,
non-zero-mean branch)."""

from __future__ import annotations

import functools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hw3 import theory_checks as tc

THEORY = Path(__file__).resolve().parents[1] / "theory"


# ---------------------------------------------------------------------------------------------- Q1.4


def test_multiplication_count_matches_the_operation_counter() -> None:
    result = tc.check_multiplication_count()
    assert result.passed, result.line()
    for row in result.rows:
        assert row["multiplications"] == row["formula"]
        assert row["exponentials"] == row["formula_exp"]
        # the matrix products alone are T^2 (D + M): the counter really sees them
        assert row["matmul_multiplications"] == row["T"] ** 2 * (row["D"] + row["M"])


@pytest.mark.parametrize(
    "wrong",
    [
        lambda T, D, M: T * T * (D + M + 1),  # forgets the scaling or the division
        lambda T, D, M: T * T * (D + M + 3),  # counts the exponentials as multiplications
        lambda T, D, M: T * T * (D + M),  # matrix products only
        lambda T, D, M: T * (T - 1) * (D + M + 2) + T * (D + M + 2),  # equal to the right one: must pass
        lambda T, D, M: T * T * (D + M + 2) + T,  # T reciprocals counted on top
    ],
)
def test_a_wrong_count_formula_fails(wrong) -> None:  # noqa: ANN001
    expected_ok = all(wrong(T, D, M) == tc.sa_multiplications(T, D, M) for T, D, M in tc.Q1_SIZES)
    assert tc.check_multiplication_count(formula=wrong).passed is expected_ok


def test_folding_the_scale_into_q_costs_td_instead_of_t_squared() -> None:
    """The remark of the answer: scaling Q (T x D) instead of the scores (T x T)."""

    def folded(Q, K, V):  # noqa: N803
        scores = (Q * (1.0 / math.sqrt(Q.shape[-1]))) @ K.T
        e = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        return (e / e.sum(dim=-1, keepdim=True)) @ V

    for T, D, M in [(5, 3, 2), (9, 16, 4)]:  # noqa: N806
        counted = tc.count_sa_operations(T, D, M, attention=folded)
        assert counted["multiplications"] == tc.sa_multiplications(T, D, M) - T * T + T * D


def test_the_answer_states_the_checked_formula() -> None:
    text = (THEORY / "q1.tex").read_text(encoding="utf-8")
    assert "T^2(D+M+2)" in text and "T^2(D+M+3)" in text
    rng = np.random.default_rng(tc.SEED)
    for T, D, M in rng.integers(1, 300, size=(20, 3)).tolist():  # noqa: N806
        assert tc.sa_multiplications(T, D, M) == T**2 * (D + M + 2)
        assert tc.sa_multiplications(T, D, M) + tc.sa_exponentials(T) == T**2 * (D + M + 3)


def test_self_attention_is_softmax_attention() -> None:
    gen = torch.Generator().manual_seed(tc.SEED)
    Q, K, V = (torch.randn(6, n, generator=gen, dtype=torch.float64) for n in (4, 4, 3))  # noqa: N806
    expected = torch.nn.functional.scaled_dot_product_attention(Q[None], K[None], V[None])[0]
    torch.testing.assert_close(tc.self_attention(Q, K, V), expected)


# ---------------------------------------------------------------------------------------------- Q1.5


def test_eq3_equals_eq2() -> None:
    result = tc.check_eq3()
    assert result.passed, result.line()
    assert len(result.rows) >= 4


def test_eq3_check_fails_against_a_column_softmax() -> None:
    def column_softmax(Q, K, V):  # noqa: N803
        q, k, v = (torch.from_numpy(a) for a in (Q, K, V))
        return (torch.softmax(q @ k.T / math.sqrt(q.shape[1]), dim=0) @ v).numpy()

    assert not tc.check_eq3(sizes=[(4, 3, 2), (7, 2, 3)], reference=column_softmax).passed


def test_sim_is_the_exponential_of_the_scaled_dot_product() -> None:
    q, k = [0.5, -1.0, 2.0, 0.25], [1.0, 0.5, -0.5, 2.0]
    assert tc.sim(q, k) == pytest.approx(math.exp(float(np.dot(q, k)) / 2.0), rel=1e-15)


# ---------------------------------------------------------------------------------------------- Q2

SMALL = {
    "n": 128,
    "L": 12,
    "networks": 16,
    "batch": 32,
    "mean_check_layers": (0, 5, 11),
    "mean_check_draws": 32,
}


def test_he_init_doubles_the_variance_every_layer() -> None:
    s = tc.simulate_residual("he", **SMALL)
    growth = np.asarray(s["growth"])
    assert s["predicted_growth"] == 2.0
    assert np.all(np.abs(growth / 2.0 - 1.0) < 0.15), growth
    assert s["variance"][-1] > 2 ** (SMALL["L"] - 1)
    # the residual sum adds variances: the cross term is small
    assert np.max(np.abs(s["cross_term"])) < 0.1


def test_zero_branch_keeps_the_variance_exactly() -> None:
    s = tc.simulate_residual("zero", **SMALL)
    assert s["max_abs_F"] == 0.0
    assert s["variance"] == [s["variance"][0]] * (SMALL["L"] + 1)
    assert abs(s["variance"][0] - 1.0) < 0.02  # normalised input


def test_depth_scaled_init_stays_bounded_by_e() -> None:
    s = tc.simulate_residual("scaled", **SMALL)
    assert s["predicted"][-1] == pytest.approx((1 + 1 / SMALL["L"]) ** SMALL["L"])
    assert max(s["variance"]) < math.e * 1.05
    assert np.all(np.abs(np.asarray(s["growth"]) / s["predicted_growth"] - 1) < 0.05)


def test_q2_checks_pass_and_detect_a_nonzero_conditional_mean() -> None:
    sims = {scheme: tc.simulate_residual(scheme, **SMALL) for scheme in tc.Q2_SCHEMES}
    mean, var = tc.check_q2(sims)
    assert mean.passed, mean.line()
    assert var.passed, var.line()
    biased = tc.simulate_residual("scaled", bias_mean=0.5, **SMALL)
    bad_mean, _ = tc.check_q2({"scaled": biased})
    assert not bad_mean.passed, bad_mean.line()


def test_q2_variance_check_fails_on_a_wrong_growth_rate() -> None:
    s = tc.simulate_residual("he", **SMALL)
    s["predicted_growth"] = 1.5  # e.g. forgetting the skip path's own variance or the ReLU's factor 1/2
    _, var = tc.check_q2({"he": s})
    assert not var.passed


# ---------------------------------------------------------------------------------------------- Q3


def test_bptt_closed_form_matches_autograd() -> None:
    result = tc.check_bptt()
    assert result.passed, result.line()
    assert {row["t"] for row in result.rows} >= {1, 5, 30}
    assert len({row["p"] for row in result.rows}) >= 3


def _wrong_matrix_form(W, B, C, x, y, v0, p, transpose=False, shift=False):  # noqa: ANN001, N803
    """The matrix form with one plausible mistake: J instead of J^T, or D_{tau-1} instead of D_tau."""
    us, vs = tc.rnn_forward(W, B, x, v0, p)
    t = len(us)
    g = C @ vs[t] - y
    grad = torch.zeros_like(W)
    for tau in range(1, t + 1):
        J = tc.state_jacobian(us, W, t, tau, p)  # noqa: N806
        D = torch.diag(tc.leaky_relu_derivative(us[max(tau - 2, 0) if shift else tau - 1], p))  # noqa: N806
        grad += torch.outer(D @ (J if transpose else J.T) @ C.T @ g, vs[tau - 1])
    return grad


@pytest.mark.parametrize("mistake", ["transpose", "shift"])
def test_bptt_check_fails_on_a_wrong_formula(mistake: str) -> None:
    wrong = functools.partial(_wrong_matrix_form, **{mistake: True})
    assert not tc.check_bptt(grad_fn=wrong).passed


def test_bptt_check_fails_on_a_transposed_element_formula() -> None:
    def wrong_element(W, B, C, x, y, v0, p, i, j):  # noqa: N803
        return tc.bptt_grad_W_element(W, B, C, x, y, v0, p, j, i)  # (j, i) instead of (i, j)

    assert not tc.check_bptt(element_fn=wrong_element).passed


def test_leaky_relu_matches_torch_and_its_derivative() -> None:
    u = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0], dtype=torch.float64, requires_grad=True)
    p = 0.1
    torch.testing.assert_close(tc.leaky_relu(u, p), torch.maximum(p * u, u))
    torch.nn.functional.leaky_relu(u, p).sum().backward()
    torch.testing.assert_close(tc.leaky_relu_derivative(u.detach(), p), u.grad)


def test_jacobian_norm_bounds() -> None:
    result = tc.check_jacobian_bounds()
    assert result.passed, result.line()
    rows = {row["regime"]: row for row in result.rows}
    assert rows["vanishing"]["norm"] < 1e-2 and rows["exploding"]["norm"] > 1e2


# ---------------------------------------------------------------------------------------------- outputs


@pytest.fixture(scope="module")
def checks_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real outputs of ``python -m hw3.theory_checks`` (default sizes), produced once."""
    out = tmp_path_factory.mktemp("theory")
    assert tc.main(["--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_main_writes_every_output(checks_out: Path) -> None:
    for name in tc.OUTPUT_FILES:
        assert (checks_out / name).stat().st_size > 0, name
    record = json.loads((checks_out / "checks.json").read_text())
    assert record["passed"] is True and record["seed"] == tc.SEED
    assert {c["name"] for c in record["checks"]} >= {
        "q1.4 multiplications",
        "q1.5 eq3 = eq2",
        "q3.1 BPTT closed form",
    }
    assert (checks_out / "q2_variance.pdf").read_bytes().startswith(b"%PDF")
    for q in ("q1", "q2", "q3"):
        assert r"\textbf{passed}" in (checks_out / f"{q}_checks.tex").read_text()


def test_main_exits_nonzero_on_a_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = functools.partial(tc.simulate_residual, **SMALL)
    monkeypatch.setattr(tc, "simulate_residual", lambda scheme, seed: small(scheme, seed=seed))
    monkeypatch.setattr(
        tc,
        "check_bptt",
        functools.partial(tc.check_bptt, grad_fn=functools.partial(_wrong_matrix_form, transpose=True)),
    )
    assert tc.main(["--out", str(tmp_path)]) == 1
    record = json.loads((tmp_path / "checks.json").read_text())
    assert record["passed"] is False
    assert [c["name"] for c in record["checks"] if not c["passed"]] == ["q3.1 BPTT closed form"]
    assert r"\textbf{FAILED}" in (tmp_path / "q3_checks.tex").read_text()


def test_the_answers_include_their_checks() -> None:
    for q in ("q1", "q2", "q3"):
        assert f"\\input{{checks/{q}_checks.tex}}" in (THEORY / f"{q}.tex").read_text(encoding="utf-8")
    assert r"\includegraphics[width=\linewidth]{checks/q2_variance.pdf}" in (THEORY / "q2.tex").read_text()


def _require_tex() -> None:
    if shutil.which("latexmk") is None or shutil.which("xelatex") is None:
        pytest.fail(
            "TeX Live is required for this test: apt-get install latexmk texlive-xetex texlive-latex-extra"
        )


@pytest.mark.tex
@pytest.mark.slow
def test_standalone_compiles_without_undefined_references(checks_out: Path, tmp_path: Path) -> None:
    _require_tex()
    pdf = tc.compile_standalone(tmp_path / "theory.pdf", checks_out)
    assert pdf.read_bytes().startswith(b"%PDF")


@pytest.mark.tex
@pytest.mark.slow
def test_compile_reports_an_undefined_reference(checks_out: Path, tmp_path: Path) -> None:
    _require_tex()
    theory = tmp_path / "theory"
    shutil.copytree(THEORY, theory)
    with open(theory / "q3.tex", "a", encoding="utf-8") as f:
        f.write("\nSee Figure~\\ref{fig:does-not-exist}.\n")
    with pytest.raises(tc.TexError, match="undefined"):
        tc.compile_standalone(tmp_path / "theory.pdf", checks_out, theory)
