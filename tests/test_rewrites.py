"""Textbook forms: each recognised definition equals its primitive numerically, losses written
as the book writes them print the book's gradient, and their generated code stays finite and
accurate at logits of 1e3 (float64 and float32), against an mpmath reference."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from matcalc import derive, hessian, lambdify, parse
from matcalc.core.engine import vector_jacobian_products
from matcalc.core.ir import postorder
from matcalc.core.rewrites import RECOGNITIONS, SIMPLIFICATIONS
from matcalc.proofs.evaluation import evaluator, function_value
from matcalc.proofs.inputs import random_inputs

DEFINITIONS = {
    "sigmoid": ("z: [n]\nsum(1 / (1 + exp(-z)) ** 2)", "sigmoid"),
    "sigmoid ratio": ("z: [n]\nsum(exp(z) / (1 + exp(z)) * z)", "sigmoid"),
    "softplus": ("z: [n]\nsum(log(1 + exp(z)) * z)", "softplus"),
    "log sigmoid": ("z: [n]\nsum(log(sigmoid(z)))", "softplus"),
    "log one minus sigmoid": ("z: [n]\nsum(log(1 - sigmoid(z)) * z)", "softplus"),
    "cosh and sinh": ("z: [n]\nsum((exp(z) + exp(-z)) / 2 * z + (exp(-z) - exp(z)) ** 2)",
                      "cosh"),
    "tanh": ("z: [n]\nsum((exp(z) - exp(-z)) / (exp(z) + exp(-z)) * z)", "tanh"),
    "tanh by sigmoid": ("z: [n]\nsum((2 * sigmoid(2 * z) - 1) * z)", "tanh"),
    "tanh by exponentials": ("z: [n]\nsum((1 - exp(-2 * z)) / (1 + exp(-2 * z)) * z "
                             "+ (exp(z) - 1) / (exp(z) + 1))", "tanh"),
    "norm": ("X: [N, C]\nx = sum(X, axis=1)\nsqrt(sum(X ** 2)) + sqrt(x @ x)", "norm"),
    "softmax": ("Z: [N, C]\nsum(exp(Z) / sum(exp(Z), axis=1, keepdims=True) * Z)", "softmax"),
    "log softmax": ("Z: [N, C]\nsum(log(softmax(Z, axis=1)) * Z)", "log_softmax"),
    "log cosh": ("z: [n]\nsum(log(cosh(z)) * z)", "logcosh"),
    "logsumexp": ("Z: [N, C]\nsum(log(sum(exp(Z), axis=1)) ** 2)", "logsumexp"),
    "log softmax by logsumexp": ("Z: [N, C]\nsum((Z - logsumexp(Z, axis=1, keepdims=True)) * Z)",
                                 "log_softmax"),
    "shifted softmax": ("Z: [N, C]\nsum(softmax(Z - max(Z, axis=1, keepdims=True), axis=1) * Z)",
                        "softmax"),
    "cross-entropy": ("Z: [N, C]\nY: [N, C]\n-sum(Y * log_softmax(Z)) / N",
                      "softmax_cross_entropy"),
}


def test_every_recognition_has_a_case() -> None:
    assert {rule.name for rule in RECOGNITIONS} == set(DEFINITIONS)


@pytest.mark.parametrize("name", DEFINITIONS)
def test_a_recognised_definition_is_its_primitive_and_equal_to_it(name: str) -> None:
    """The IR holds the primitive, and its value equals the definition's, computed from the
    source text by NumPy (independently of the rewrite), at random inputs."""
    source, primitive = DEFINITIONS[name]
    program = parse(source)
    assert primitive in {n.op for n in postorder([program.function])}
    rng = np.random.default_rng(3)
    arrays = {v: rng.normal(size=(4, 3) if node.rank == 2 else 5)
              for v, node in program.variables.items()}
    (mine,) = evaluator(program, [("value", program.function)])(**arrays)
    assert np.isclose(mine, function_value(program)(**arrays), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("source, op, count", [
    ("X: [N, C]\nx = sum(X, axis=1)\ny = sum(X, axis=0)\n"
     "sqrt(sum(X ** 2)) + sqrt(x @ x) + sum(y * y) ** 0.5",
     "norm", 3),
    ("z: [n]\nsum((1 - exp(-2 * z)) / (1 + exp(-2 * z)) + (exp(z) - 1) / (exp(z) + 1))",
     "tanh", 2),
])
def test_every_spelling_of_a_definition_is_recognised(source: str, op: str, count: int) -> None:
    """Each form a rule knows becomes the primitive (the cases above need only one to)."""
    assert sum(n.op == op for n in postorder([parse(source).function])) == count


BOOK_FORMS = {
    "binary cross-entropy": (
        "X: [N, D]\nw: [D]\ny: [N]\np = sigmoid(X @ w)\n"
        "L = -sum(y * log(p) + (1 - y) * log(1 - p)) / N", "w", "Xᵀ (p − y) / N"),
    "binary cross-entropy, sigmoid spelled out": (
        "X: [N, D]\nw: [D]\ny: [N]\np = 1 / (1 + exp(-(X @ w)))\n"
        "L = -sum(y * log(p) + (1 - y) * log(1 - p)) / N", "w", "Xᵀ (p − y) / N"),
    "softmax cross-entropy from its definition": (
        "X: [N, D]\nW: [D, C]\nY: [N, C] onehot\nZ = X @ W\n"
        "L = -sum(Y * log(exp(Z) / sum(exp(Z), axis=1, keepdims=True))) / N", "W",
        "Xᵀ (softmax(Z) − Y) / N"),
}


@pytest.mark.parametrize("name", BOOK_FORMS)
def test_a_loss_written_as_the_book_writes_it_has_the_books_gradient(name: str) -> None:
    source, wrt, expected = BOOK_FORMS[name]
    line = derive(source, [wrt]).text().splitlines()[0]
    assert line.split(" = ", 1)[1].rsplit("   ", 1)[0] == expected


def bce_reference(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean binary cross-entropy of logits z and its gradient, in 50-digit arithmetic."""
    mpmath.mp.dps = 50
    total, grad = mpmath.mpf(0), []
    for zi, yi in zip(z.tolist(), y.tolist(), strict=True):
        p = 1 / (1 + mpmath.exp(-mpmath.mpf(zi)))
        log_p = -mpmath.log(1 + mpmath.exp(-mpmath.mpf(zi)))
        log_q = -mpmath.log(1 + mpmath.exp(mpmath.mpf(zi)))
        total -= yi * log_p + (1 - yi) * log_q
        grad.append((p - yi) / len(z))
    return float(total / len(z)), np.array([float(g) for g in grad])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_natural_binary_cross_entropy_code_is_finite_and_accurate_at_logits_of_1e3(dtype) -> None:
    """Logits ±1000 overflow exp and make p exactly 0 or 1 in the definition as written; the
    generated code computes the recognised softplus form instead."""
    source = BOOK_FORMS["binary cross-entropy, sigmoid spelled out"][0].replace(
        "X @ w", "z").replace("X: [N, D]\nw: [D]", "z: [N]")
    z = np.array([-1000.0, -40.0, -3.0, 0.5, 35.0, 1000.0])
    y = np.array([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    value, grads = lambdify(source, ["z"]).value_and_grad(z=z.astype(dtype), y=y.astype(dtype))
    want_value, want_grad = bce_reference(z, y)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert np.isfinite(value) and np.all(np.isfinite(grads["z"]))
    assert np.isclose(float(value), want_value, rtol=tolerance)
    np.testing.assert_allclose(grads["z"], want_grad, rtol=tolerance, atol=tolerance * 1e-3)


SIMPLIFIED = {
    "trace": "A: [n, n]\nsum(eye(n) * A)",
    "trace of an outer product": "L: [n, n]\na: [n]\nb: [n]\nR: [n, n]\ntrace(L @ outer(a, b) @ R)",
    "weighted rows": "a: [n]\nB: [n, m]\nsum(diag(a) @ B, axis=0)",
    "outer of a product": "a: [n]\nM: [m, k]\nc: [k]\nouter(a, M @ c)",
    "diagonal of an outer product": "a: [n]\nb: [n]\ndiag(outer(a, b))",
    "inverse of a product": "A: [n, n]\nX: [n, n]\nB: [n, n]\nA.T @ inv(A @ X @ B).T @ B.T",
    "select": "u: [n]\na: [n]\nb: [n]\n(u > 0) * a + (1 - (u > 0)) * b",
    "rectified mask": "u: [n]\na: [n]\nrelu(u) ** 2 * (u > 0) * a",
    "unscaled step": "u: [n]\n2.5 * u > 0",
    "product of constants": "x: [n]\nones(n) @ ones(n)",
    "Kronecker product with a number": "A: [n, n]\nb: [1, 1]\nkron(A, b)",
    "sum of diagonals": "a: [n]\nb: [n]\ns: []\ndiag(a) - s * diag(b)",
    "product of diagonals": "a: [n]\nb: [n]\nM: [n, n]\nM @ diag(a) @ diag(b)",
}


DERIVED = {"spectral decomposition": "tr(S³)/3 by its eigenvalues (V diag(λ²) Vᵀ = S²)"}
"""Rules that apply only to what a derivative builds (a user cannot write V, the
eigenvectors), each with its case in TIDIED."""


def test_every_simplification_has_a_case() -> None:
    assert {rule.name for rule in SIMPLIFICATIONS} == set(SIMPLIFIED) | set(DERIVED)
    assert set(DERIVED.values()) <= set(TIDIED)


@pytest.mark.parametrize("name", SIMPLIFIED)
def test_a_simplification_applies_and_keeps_the_value(name: str) -> None:
    """The rule rewrites the program's expression, and both forms have one value at random
    inputs."""
    program = parse(SIMPLIFIED[name])
    (rule,) = [r for r in SIMPLIFICATIONS if r.name == name]
    before = program.function
    after = rule.match(before)
    assert after is not None and after is not before
    rng = np.random.default_rng(5)
    sizes = {"n": 4, "m": 3, "k": 2}
    arrays = {v: rng.normal(size=tuple(sizes.get(str(d)) or int(d) for d in node.shape))
              for v, node in program.variables.items()}
    got = evaluator(program, [("before", before), ("after", after)])(**arrays)
    np.testing.assert_allclose(got[1], got[0], rtol=1e-12, atol=1e-12)


def test_derivatives_are_written_as_a_person_writes_them() -> None:
    """The simplifications at work: a trace of an outer product as a bilinear form with the
    symmetric K's inverse untransposed, and the logsumexp Hessian's textbook form."""
    ridge = "X: [N, D]\nlam: []\nb: [D]\nK = X.T @ X + lam * eye(D)\nL = b @ inv(K) @ b"
    assert derive(ridge, ["lam"]).text().startswith("∂L/∂lam = −(bᵀ K⁻¹ K⁻¹ b)")
    line = hessian("W: [m, n]\nx: [n]\np = softmax(W @ x)\nlogsumexp(W @ x)", "x").text()
    assert line.startswith("∂²f/∂x² = Wᵀ (diag(p) − p pᵀ) W")


def test_an_even_power_of_a_square_root_is_a_power_of_its_argument() -> None:
    """(√u)² = u and (√u)⁴ = u² where √u is defined; an odd power stays a root's, and
    u √u is (√u)³."""
    source = "x: [n]\nv: [n]\nf = sum(sqrt(v + 1) ** 2 * x) + sum(sqrt(x * x + 1) ** 4)"
    assert derive(source, ["v", "x"]).text().splitlines() == [
        "∂f/∂v = x                        [n]", "∂f/∂x = 4 x ⊙ (x² + 1) + v + 1   [n]"]
    assert derive("x: [n]\nf = sum(sqrt(sqrt(x)))", ["x"]).text().startswith(
        "∂f/∂x = 1 / (4 sqrt(sqrt(x))³)")              # a root of a root: no KeyError
    for power in ("sqrt(v + 1) ** 3", "(v + 1) * sqrt(v + 1)"):
        assert derive(f"v: [n]\nf = sum({power})", ["v"]).text().startswith(
            "∂f/∂v = 3 sqrt(v + 1) / 2")


def test_what_is_known_of_an_intermediate_is_not_used_for_its_own_derivative() -> None:
    """T = X Xᵀ is symmetric, but ∂f/∂T treats T as free: sum(A ⊙ Tᵀ) gives Aᵀ, not A."""
    text = derive("X: [n, m]\nA: [n, n]\nT = X @ X.T\nsum(A * T.T)", ["T"]).text()
    assert text.startswith("∂f/∂T = Aᵀ")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_natural_softmax_and_logistic_losses_are_accurate_at_logits_of_1e3(dtype) -> None:
    """−Σ Y ⊙ log(exp(Z) / Σ exp(Z)) / N and mean(log(1 + exp(−y z))) as written overflow at
    logits of 1000; their recognised forms do not (values against 50-digit arithmetic)."""
    mpmath.mp.dps = 50
    z = np.array([[1000.0, -1000.0, 3.0], [-2.0, 999.0, 1000.0]])
    y = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    source = ("Z: [N, C]\nY: [N, C]\n"
              "L = -sum(Y * log(exp(Z) / sum(exp(Z), axis=1, keepdims=True))) / N")
    value, grads = lambdify(source, ["Z"]).value_and_grad(Z=z.astype(dtype), Y=y.astype(dtype))
    rows = [[mpmath.mpf(v) for v in row] for row in z.tolist()]
    logs = [mpmath.log(sum(mpmath.exp(v) for v in row)) for row in rows]
    want = sum(-(yv * (v - lse)) for row, yrow, lse in zip(rows, y.tolist(), logs, strict=True)
               for v, yv in zip(row, yrow, strict=True)) / len(rows)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    assert np.isfinite(value) and np.all(np.isfinite(grads["Z"]))
    assert np.isclose(float(value), float(want), rtol=tolerance)
    logistic = "z: [N]\ny: [N]\nL = mean(log(1 + exp(-y * z)))"
    t = np.array([1000.0, -1000.0, 2.0])
    s = np.array([-1.0, 1.0, 1.0])
    value, grads = lambdify(logistic, ["z"]).value_and_grad(z=t.astype(dtype), y=s.astype(dtype))
    want = sum(mpmath.log(1 + mpmath.exp(-mpmath.mpf(a * b)))
               for a, b in zip(t.tolist(), s.tolist(), strict=True)) / 3
    assert np.isfinite(value) and np.all(np.isfinite(grads["z"]))
    assert np.isclose(float(value), float(want), rtol=tolerance)


NORMALISATIONS = {
    "batch norm": (
        "X: [N, D]\nG: [N, D]\ngamma: [D]\nbeta: [D]\nmu = mean(X, axis=0)\nxc = X - mu\n"
        "var = mean(xc ** 2, axis=0)\nxhat = xc / sqrt(var + 1e-5)\n"
        "L = sum(G * (gamma * xhat + beta))",
        "gamma ⊙ (G − xhat ⊙ sum(G ⊙ xhat, axis=0) / N − sum(G, axis=0) / N) / sqrt(var + 1e-5)"),
    "layer norm": (
        "X: [N, D]\nG: [N, D]\ng: [D]\nc: [D]\nxc = X - mean(X, axis=1, keepdims=True)\n"
        "r = 1 / sqrt(mean(xc ** 2, axis=1, keepdims=True) + 1e-5)\nxhat = xc * r\n"
        "L = sum(G * (xhat * g + c))",
        "r 𝟙ᵀ ⊙ (G ⊙ g − xhat ⊙ sum(G ⊙ g ⊙ xhat, axis=1, keepdims=True) / D − "
        "(sum(G ⊙ g, axis=1, keepdims=True) / D) 𝟙ᵀ)"),
}


@pytest.mark.parametrize("name", NORMALISATIONS)
def test_a_normalisations_input_gradient_is_the_books_and_keeps_its_value(name: str) -> None:
    """Sums are linear, a centred array sums to zero and xc is written xhat ⊙ √(var + ε): the
    CS231n form, equal at random inputs to the gradient as reverse mode built it."""
    source, expected = NORMALISATIONS[name]
    program = parse(source)
    result = derive(program, ["X"])
    assert result.text().split(" = ", 1)[1].rsplit("   ", 1)[0] == expected
    x = program.lookup("X")
    raw = vector_jacobian_products(program.function, [x])[0][x]
    rng = np.random.default_rng(11)
    arrays = {v: rng.normal(size=(5, 3)[-node.rank:] if node.rank else ())
              for v, node in program.variables.items()}
    got = evaluator(program, [("written", result.gradients[0].expr), ("raw", raw)])(**arrays)
    np.testing.assert_allclose(got[0], got[1], rtol=1e-12, atol=1e-12)


def test_a_sum_of_a_centred_array_is_zero_only_along_its_axis() -> None:
    """sum(xc ⊙ c, axis=0) = 0 for xc = X − mean(X, axis=0) and c constant along axis 0; along
    axis 1 it is not zero."""
    column = "X: [N, D]\nc: [D]\nw: [N, D]\nxc = X - mean(X, axis=0)\n"
    zero = derive(column + "L = sum(sum(xc * c, axis=0) * sum(w, axis=0))", ["w"]).text()
    assert zero.startswith("∂L/∂w = 0")
    other = derive(column + "L = sum(sum(xc * c, axis=1) * sum(w, axis=1))", ["w"]).text()
    assert not other.startswith("∂L/∂w = 0")


@pytest.mark.parametrize("source, wrt, want", [
    ("X: [N, D]; W: [D, C]; a: []\npen = sum((a * W) ** 2)\nL = sum(X @ W) + pen", "a",
     "2 a sum(W²)"),
    ("x: []; a: [n]; f = sum((x * a) ** 2)", "x", "2 x sum(a²)"),
    ("x: []; a: [n]; f = sum(a) * x ** 3", "x", "3 x² sum(a)"),
    ("x: []; a: [n]; f = exp(x) * sum(x * a)", "x", None),
])
def test_a_name_is_never_used_to_divide_by_what_can_be_zero(source: str, wrt: str, want) -> None:
    """f = x² sum(a²) does not make ∂f/∂x = 2 f / x: that is undefined at x = 0, where the
    gradient is 0. Names stand for arrays only where solving for them divides by a reciprocal."""
    text = derive(source, [wrt]).text().splitlines()[0]
    if want is not None:
        assert text.split(" = ", 1)[1].rsplit("   ", 1)[0] == want
    program = parse(source)
    arrays = random_inputs(program, dict.fromkeys(program.dims, 3), np.random.default_rng(0))
    arrays[wrt] = np.float64(0.0)
    _, grads = lambdify(source, [wrt]).value_and_grad(**arrays)
    assert np.isfinite(grads[wrt])


def test_a_recognised_definition_that_bypasses_an_intermediate_says_so() -> None:
    source = BOOK_FORMS["binary cross-entropy"][0]
    assert any("`p` is written in L's definition" in n for n in derive(source, ["w"]).notes)
    mlp = "X: [N, D]; w: [D]; y: [N]\np = sigmoid(X @ w)\nL = sum((p - y) ** 2)"
    assert not any("written in" in n for n in derive(mlp, ["w"]).notes)


def test_a_rewrite_that_would_change_a_shape_is_not_applied() -> None:
    """The guard behind every rule: a match of another shape leaves the node as it was."""
    from matcalc.core.ir import make
    from matcalc.core.rewrites import Rewrite, rewritten
    program = parse("A: [n, m]\nL = sum(A, keepdims=True)")
    (root,) = [program.function]
    to_a_number = Rewrite("wrong", "sum(A, keepdims=True) = sum(A)",
                          lambda node: make("sum", node.args, (None, False))
                          if node.op == "sum" and node.attrs[1] else None)
    assert rewritten([root], [to_a_number])[root] is root


LOGISTIC = "X: [N, D]\nw: [D]\ny: [N]\n"
SOFTMAX = "X: [N, D]\nW: [D, C]\nY: [N, C] onehot\nZ = X @ W\n"
TIDIED = {
    "label smoothing (rows of a mix of one-hot rows sum to 1)": (
        SOFTMAX + "T = 0.9 * Y + 0.1 / C\nL = -sum(T * log(softmax(Z, axis=1))) / N", "W",
        "Xᵀ (softmax(Z) − T) / N"),
    "KL between softmaxes (a softmax's rows sum to 1)": (
        SOFTMAX + "A: [N, C]\nP = softmax(A, axis=1)\nQ = softmax(Z, axis=1)\n"
        "L = sum(P * (log(P) - log(Q))) / N", "W", "Xᵀ (Q − P) / N"),
    "multiclass SVM (sums of one axis merged)": (
        SOFTMAX + "M = Z - sum(Z * Y, axis=1, keepdims=True) + 1\n"
        "L = sum(relu(M) * (1 - Y)) / N", "W",
        "Xᵀ ((𝟙𝟙ᵀ − Y) ⊙ 1[M > 0] − Y ⊙ sum((𝟙𝟙ᵀ − Y) ⊙ 1[M > 0], axis=1, keepdims=True)) / N"),
    "Brier score (sums merged and factored)": (
        "Z: [N, C]\nY: [N, C] onehot\nP = softmax(Z, axis=1)\nL = sum((P - Y) ** 2) / N", "Z",
        "2 P ⊙ (P − sum(P ⊙ (P − Y), axis=1, keepdims=True) 𝟙ᵀ − Y) / N"),
    "hinge with maximum (Heaviside step)": (
        LOGISTIC + "m = 1 - y * (X @ w)\nL = mean(maximum(0, m))", "w", "−Xᵀ (y ⊙ H(m)) / N"),
    "squared hinge (relu's own mask dropped)": (
        LOGISTIC + "m = relu(1 - y * (X @ w))\nL = sum(m ** 2)", "w", "−2 Xᵀ (y ⊙ m)"),
    "Huber (a select)": (
        LOGISTIC + "r = X @ w - y\nL = sum(where(abs(r) <= 1, 0.5 * r ** 2, abs(r) - 0.5))",
        "w", "Xᵀ where(abs(r) > 1, sign(r), r)"),
    "tanh as 2σ(2u) − 1": (
        "X: [N, D]\nW1: [D, H]\nw2: [H]\ny: [N]\nh = 2 * sigmoid(2 * (X @ W1)) - 1\n"
        "L = sum((h @ w2 - y) ** 2) / 2", "W1", "Xᵀ (((h w2 − y) w2ᵀ) ⊙ (𝟙𝟙ᵀ − h²))"),
    "Poisson regression with exposure (a named product by its name)": (
        LOGISTIC + "t: [N]\nmu = t * exp(X @ w)\nL = sum(mu - y * log(mu))", "w", "Xᵀ (mu − y)"),
    "InfoNCE (the identity's rows sum to 1)": (
        "A: [N, d]\nB: [N, d]\nt: []\nS = A @ B.T / t\nL = -trace(log_softmax(S, axis=1)) / N",
        "B", "(softmax(S)ᵀ − I) A / (N t)"),
    "a power of |det X| (u sign(u) = |u|)": (
        "X: [n, n]\nk: []\nabs(det(X)) ** k", "X", "k abs(det(X))^k X⁻ᵀ"),
    "Frobenius norm spelled out": ("X: [m, n]\nsqrt(sum(X ** 2))", "X", "X / ‖X‖_F"),
    "log-determinant of a product of squares": (
        "A: [n, n]\nX: [n, n]\nB: [n, n]\nL = logdet(A @ X @ B)", "X", "X⁻ᵀ"),
    "tr(S³)/3 by its eigenvalues (V diag(λ²) Vᵀ = S²)": (
        "S: [n, n] symmetric\nA: [n, n]\nsum(eigvalsh(S) ** 3) / 3 + trace(A @ S @ A.T)", "S",
        "Aᵀ A + S²"),
    "the sum of the eigenvalues (V Vᵀ = I)": ("S: [n, n] symmetric\nsum(eigvalsh(S))", "S", "I"),
    "eigenvalues of a general matrix (those of its symmetric part)": (
        "X: [n, n]\nsum(eigvalsh(X) ** 2)", "X", "X + Xᵀ"),
}


@pytest.mark.parametrize("name", TIDIED)
def test_a_tidied_derivative_is_the_books_and_keeps_its_value(name: str) -> None:
    """The printed form is the book's, and it equals the gradient as reverse mode built it at
    random inputs (rows of the declared one-hot targets summing to 1)."""
    source, wrt, expected = TIDIED[name]
    program = parse(source)
    result = derive(program, [wrt])
    assert result.text().split(" = ", 1)[1].rsplit("   ", 1)[0] == expected
    x = program.lookup(wrt)
    raw = vector_jacobian_products(program.function, [x])[0][x]
    arrays = random_inputs(program, dict.fromkeys(program.dims, 4), np.random.default_rng(2))
    got = evaluator(program, [("written", result.gradients[0].expr), ("raw", raw)])(**arrays)
    np.testing.assert_allclose(got[0], got[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("source, wrt, want", [
    ("X: [N, D]\nw: [D]\ny: [N]\nmu = exp(X @ w)\nL = sum(y / mu + log(mu))", "w",
     "∂²L/∂w² = Xᵀ diag(y / mu) X   [D, D]"),                 # diagonals merged, then algebra
    ("x: [N, n]\nm: [n]\nP: [n, n] symmetric\nXc = x - m\nL = sum((Xc @ P) * Xc) / 2", "m",
     "∂²L/∂m² = N P   [n, n]"),                              # P ⊗ (𝟙ᵀ 𝟙), a vector's Hessian
])
def test_a_hessian_is_the_books(source: str, wrt: str, want: str) -> None:
    program = parse(source)
    result = hessian(program, wrt)
    assert result.text().splitlines()[0] == want
    arrays = random_inputs(program, dict.fromkeys(program.dims, 3), np.random.default_rng(4))
    written = evaluator(program, [("h", result.gradients[0].expr)])(**arrays)[0]
    gradient = derive(program, [wrt]).gradients[0].expr
    step, columns = 1e-6, []
    for i in range(arrays[wrt].size):                 # central differences of the gradient
        shifted = [arrays | {wrt: arrays[wrt] + s * step * np.eye(arrays[wrt].size)[i]}
                   for s in (1, -1)]
        ends = [evaluator(program, [("g", gradient)])(**a)[0] for a in shifted]
        columns.append((ends[0] - ends[1]) / (2 * step))
    np.testing.assert_allclose(written, np.array(columns).T, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("source, want", [
    ("x: [n]\nL = sum(relu((n - 3) * x))", "∂L/∂x = (n - 3) 1[(n - 3) x > 0]"),
    ("x: [n]\nL = sum(relu(x) ** n)", "∂L/∂x = n relu(x)^(n - 1) ⊙ 1[x > 0]"),
])
def test_a_rule_whose_condition_depends_on_a_size_is_not_applied(source: str, want: str) -> None:
    """n − 3 and n − 1 may be ≤ 0: the mask stays (review: these raised a TypeError)."""
    assert derive(source, ["x"]).text().splitlines()[0].startswith(want)


def test_rows_known_to_sum_to_1_are_not_used_for_a_variable_of_the_derivative() -> None:
    """L = sum(P)² with P = softmax(A) is 1 everywhere: ∂L/∂A = 0. With respect to P itself,
    P is free and sum(P) stays (its Hessian is 2 𝟙𝟙ᵀ, not 0)."""
    source = "A: [n]\nP = softmax(A)\nL = sum(P) ** 2"
    assert derive(source, ["A"]).text().startswith("∂L/∂A = 0")
    assert derive(source, ["P"]).text().startswith("∂L/∂P = (2 sum(P)) 𝟙")
    assert hessian(source, "P").text().startswith("∂²L/∂P² = 2 𝟙𝟙ᵀ")


def test_masks_print_as_the_comparisons_they_are() -> None:
    text = derive("x: [n]\ny: [n]\nsum(relu(x - y) + relu(-x) + relu(x - 1))", ["x"]).text()
    assert text.startswith("∂f/∂x = 1[x > y] + 1[x > 1] − 1[x < 0]   [n]")
    steps = derive(TIDIED["Huber (a select)"][0], ["w"], steps=True).text()
    assert "where(abs(r) ≤ 1, r² / 2, abs(r) − 1/2)" in steps
