"""Symmetric-matrix variables: `S: [n, n] symmetric`."""

from __future__ import annotations

import numpy as np
import pytest

from matcalc import MatcalcError, derive
from matcalc.proofs.testing import check_gradient

CASES = [
    ("S: [n, n] symmetric; x: [n]; x @ S @ x", "x", "2 S x"),
    ("S: [n, n] symmetric; x: [n]; x @ S @ x", "S", "x xᵀ"),
    ("S: [n, n] symmetric; logdet(S)", "S", "S⁻¹"),
    ("S: [n, n] symmetric; det(S)", "S", "S⁻¹ det(S)"),
    ("S: [n, n] symmetric; A: [n, n]; trace(A @ S)", "S", "(A + Aᵀ) / 2"),
    ("S: [n, n] symmetric; x: [n]; logdet(S) + x @ inv(S) @ x", "S", "S⁻¹ − S⁻¹ x xᵀ S⁻¹"),
    ("S: [n, n] symmetric; A: [n, n]; sum(S * S.T * A)", "S", None),
    ("S: [n, n] symmetric; B: [n, m]; trace(B.T @ matrix_power(S, 3) @ B)", "S", None),
]


@pytest.mark.parametrize(("source", "wrt", "expected"), CASES, ids=[c[0][28:] for c in CASES])
def test_symmetric_gradients(source: str, wrt: str, expected: str | None) -> None:
    result = derive(source, [wrt])
    line = result.text().splitlines()[0]
    if expected is not None:
        assert line.split(" = ", 1)[1].rsplit("   [", 1)[0] == expected
    if wrt == "S":
        assert "gradient among symmetric matrices" in result.text()
    dims = {"n": 4, "m": 3} if "m]" in source else {"n": 4}
    report = check_gradient(source, [wrt], dims=dims, rtol=1e-6)
    assert report.passed, report.text()


def test_symmetric_gradient_is_symmetric_and_matches_the_constrained_derivative() -> None:
    """Along symmetric directions D, ⟨∂f/∂S, D⟩ is the derivative; the result is symmetric."""
    from matcalc.proofs.evaluation import evaluator

    result = derive("S: [n, n] symmetric; A: [n, n]; trace(A @ S @ A)", ["S"])
    rng = np.random.default_rng(0)
    s = rng.normal(size=(3, 3))
    s = s + s.T
    a = rng.normal(size=(3, 3))
    (g,) = evaluator(result.program, [("g", result.gradients[0].expr)])(S=s, A=a)
    np.testing.assert_allclose(g, g.T)
    np.testing.assert_allclose(g, (a @ a + (a @ a).T) / 2)


def test_only_square_matrices_can_be_symmetric() -> None:
    with pytest.raises(MatcalcError, match="only a square matrix can be symmetric"):
        derive("S: [n, m] symmetric; sum(S)", ["S"])
