"""Every function and operator of the language, differentiated and checked against finite
differences in float64 at two concrete size assignments.

Each program is a scalar function that uses the construct non-trivially: arguments are mixed
through matrix products and the result is weighted by random arrays, so that symmetric
cancellations cannot hide a wrong rule. The gradient with respect to every declared variable
is checked (relative error ≤ 1e-6, see ``conftest.check_gradients``).
"""

from __future__ import annotations

import pytest
from conftest import check_gradients, torch_outcomes

from matcalc.core.rules import callable_elementwise
from matcalc.language.lowering import FUNCTIONS

SIZES = (
    {"n": 3, "m": 4, "N": 3, "D": 4, "H": 2, "K": 3},
    {"n": 5, "m": 2, "N": 2, "D": 3, "H": 5, "K": 4},
)

AM = "A: [n, m]\n"
MAT = "A: [n, m]; x: [m]; c: [n]\n"
SQ = "X: [n, n]; C: [n, n]\n"

ELEMENTWISE = callable_elementwise()

CASES: dict[str, str] = {}

# -- elementwise functions: of a matrix-vector product, and of a matrix --------------------------
for name in ELEMENTWISE:
    CASES[f"{name}(A@x)"] = MAT + f"sum({name}(A @ x) * c)"
    CASES[f"{name}(A)"] = "A: [n, m]; W: [n, m]\n" + f"sum({name}(A) * W)"
    CASES[f"{name}-scalar"] = "s: []; t: []\n" + f"{name}(s) * t + {name}(s * t)"
CASES["max-all"] = MAT + "max(A @ x) + sum(max(A, axis=0) * x) + min(A)"
CASES["max-keepdims"] = "A: [n, m]; W: [n, m]\n" + "sum(exp(A - max(A, axis=1, keepdims=True)) * W)"
CASES["min-axis"] = "A: [n, m]; W: [n, m]; x: [m]\n" + "sum(min(A * W, axis=1)) + min(x)"
CASES["maximum-minimum"] = MAT + "sum(maximum(A @ x, c) * c) + sum(minimum(A, 0.5) * A)"
CASES["clip"] = MAT + "sum(clip(A @ x, -1, 1) * c) + sum(clip(A, x, 2))"
CASES["clip-bounds"] = MAT + "h: []\n" + "sum(clip(A @ x, -h * h, h * c) * c)"
CASES["solve"] = SQ + "b: [n]; B: [n, m]; W: [n, m]\n" + \
    "b @ solve(X @ X.T + C @ C.T + eye(n), b) + sum(solve(X + 3 * eye(n), B) * W)"
CASES["cholesky"] = SQ + "S: [n, n] symmetric; x: [n]\n" + \
    "L = cholesky(S)\nsum(L * C) + x @ cholesky(X @ X.T + eye(n)) @ x"
CASES["onehot"] = "Z: [N, K]; y: [N] labels\n" + \
    "sum(onehot(y, K) * Z * Z) + sum(softmax(Z) * onehot(y, K))"
CASES["comparisons-where"] = MAT + "h: []\n" + (
    "sum(where(A @ x > c, A @ x, c * h) * c) + sum((x <= 0.3) * x * x) + sum((A >= h) * A) "
    "+ sum(where((c < 1) * (c > -1), c, 0) * (A @ x))")
CASES["norm-ord"] = MAT + "norm(A @ x, 1) + norm(x, 2) * norm(A) + norm(c, ord=1)"
CASES["norm-inf"] = MAT + "norm(A @ x, inf) + norm(x, -inf) * norm(c, ord=inf)"
CASES["norm-matrix"] = "A: [n, m]; W: [n, m]\n" + (
    'norm(A * W, "fro") + norm(A, "nuc") + norm(A + W, 2) + norm(A, 1) * norm(W, -1) '
    "+ norm(A * A, inf) + norm(A, -inf)")
CASES["norm-axis"] = "A: [n, m]; W: [n, m]; c: [n]\n" + (
    "sum(norm(A * W, axis=1) * c) + sum(norm(A, 1, axis=0, keepdims=True) * W) "
    "+ sum(norm(A, inf, axis=1, keepdims=True) * W)")
CASES["gelu-tanh"] = MAT + (
    'sum(gelu(A @ x, approximate="tanh") * c) + sum(gelu(A, approximate="none"))')
CASES["prod"] = MAT + (
    "prod(A @ x) + sum(prod(A, axis=0) * x) + sum(prod(A, axis=1, keepdims=True) * A) + prod(c)")
CASES["concatenate"] = MAT + "B: [n, m]; W: [n, m]\n" + (
    "sum(sin(concatenate([A, B * B], axis=1)) @ concatenate([x, x]))"
    " + sum(concatenate([A, W]) * concatenate([W, A], axis=0)) + concatenate([c, x]) @ "
    "concatenate([c, x * x])")
CASES["vstack-hstack"] = MAT + "s: []; W: [n, m]\n" + (
    "sum(tanh(vstack([A, W * A])) @ x) + sum(vstack([x, 2 * x]) ** 3) + "
    "hstack([c, s, s * c]) @ hstack([c, s * s, c]) + sum(hstack([A, W]) ** 2)")
CASES["kron"] = MAT + "B: [N, K]; y: [K]\n" + (
    "sum(sin(kron(A, B))) + sum(kron(x, y) ** 3) + sum(kron(A, y) ** 2) + sum(kron(c, B) * 2)")
CASES["swapaxes-transpose"] = "A: [n, m]; W: [m, n]; X: [n, n]\n" + (
    "sum(sin(swapaxes(A, 0, 1)) * W) + sum(transpose(A, [1, 0]) * W) + sum(A.mT * W) "
    "+ sum(transpose(X) @ X)")
CASES["einsum"] = MAT + "B: [n, m]; y: [m]\n" + (
    'sum(sin(einsum("ij,kj->ik", A, B))) + einsum("ij,ij", A, B * B) + '
    'sum(einsum("i,j->ij", c, y) * A) + sum(einsum("ij,ij,j->i", A, B, y) ** 2)')
CASES["take"] = "E: [K, n]; y: [N] labels; W: [N, n]\n" + (
    "sum(sin(take(E, y, axis=0)) * W) + sum(take(E, y) ** 2)")
CASES["reshape"] = MAT + "W: [m, n]\n" + (
    "sum(sin(reshape(A, [m, n])) * W) + sum(reshape(x, [m, 1]) * reshape(A.T @ c, [1, m]))")
CASES["eigvalsh"] = SQ + "S: [n, n] symmetric; x: [n]\n" + (
    "eigvalsh(S) @ x + eigvalsh(X @ X.T + C) @ eigvalsh(X + C)")
CASES["pinv"] = "A: [n, m]; W: [m, n]; X: [n, n]\n" + (
    "sum(pinv(A) * W) + sum(pinv(A.T @ A) @ W @ A) + trace(pinv(X + 3 * eye(n)))")
CASES["tril-triu"] = SQ + "sum(tril(X) @ C) + sum(triu(X @ C, 1) * X) + sum(tril(X, -1) * C)"
CASES["var-std"] = "A: [n, m]; W: [m]\n" + \
    "sum(var(A, axis=0) * W) + std(A) + sum(std(A, axis=1, ddof=1, keepdims=True) * A)"
CASES["ones-zeros"] = MAT + "sum((A + ones(n, m)) @ x * c) + sum(zeros(n) + ones(n) * c)"
CASES["square(A@x)"] = MAT + "sum(square(A @ x) * c) + square(x @ x)"
CASES["leaky_relu-default-a"] = MAT + "sum(leaky_relu(A @ x) * c)"
CASES["leaky_relu-scalar-a"] = MAT + "a: []\n" + "sum(leaky_relu(A @ x, a) * c)"
CASES["leaky_relu-vector-a"] = MAT + "a: [n]\n" + "sum(leaky_relu(A @ x, a) * c)"
CASES["leaky_relu-broadcast-row-a"] = "A: [n, m]; W: [n, m]; a: [m]\n" + "sum(leaky_relu(A, a) * W)"
CASES["leaky_relu-keyword-a"] = "A: [n, m]; W: [n, m]; a: []\n" + "sum(leaky_relu(A, a=a) * W)"

# -- reductions with and without an axis ---------------------------------------------------------
REDUCTIONS = {
    "sum(x)": "x: [n]\nsin(sum(x * x)) + sum(x)",
    "sum(A)": AM + "B: [n, m]\nsin(sum(A * B))",
    "sum(x,axis=0)": "x: [n]; c: [n]\ntanh(sum(x * c, axis=0))",
    "sum(A,axis=0)": AM + "d: [m]\nsum(sin(sum(A, axis=0)) * d)",
    "sum(A,axis=1)": AM + "c: [n]\nsum(sin(sum(A, axis=1)) * c)",
    "sum(A,axis=-1)": AM + "c: [n]\nsum(sin(sum(A, axis=-1)) * c)",
    "sum(A,axis=-2)": AM + "d: [m]\nsum(sin(sum(A, axis=-2)) * d)",
    "mean(x)": "x: [n]; c: [n]\nsin(mean(x * c))",
    "mean(A)": AM + "B: [n, m]\nsin(mean(A * B))",
    "mean(x,axis=0)": "x: [n]; c: [n]\ntanh(mean(x * c, axis=0))",
    "mean(A,axis=0)": AM + "d: [m]\nsum(sin(mean(A, axis=0)) * d)",
    "mean(A,axis=1)": AM + "c: [n]\nsum(sin(mean(A, axis=1)) * c)",
    "mean(A,axis=-1)": AM + "c: [n]\nsum(sin(mean(A, axis=-1)) * c)",
}
CASES.update(REDUCTIONS)

# -- linear algebra -----------------------------------------------------------------------------
LINALG = {
    "trace(X)": SQ + "sin(trace(X)) + trace(X @ C)",
    "trace(A@B)": "A: [n, m]; B: [m, n]\ntrace(A @ B) ** 2",
    "det(X)": SQ + "det(X) * sum(C * X)",
    "det-scaled": SQ + "sin(det(X)) + det(X) * trace(C)",
    "logdet(X)": SQ + "logdet(X) * trace(C) + logdet(X)",
    "inv(X)": SQ + "sum(inv(X) * C)",
    "inv(X)@x": "X: [n, n]; x: [n]; c: [n]\nc @ inv(X) @ x",
    "diag(x)": "x: [n]; A: [n, m]; W: [n, m]\nsum((diag(x) @ A) * W)",
    "diag(X)": SQ + "c: [n]\nsum(sin(diag(X @ C)) * c)",
    "outer(x,y)": "x: [n]; y: [m]; W: [n, m]\nsum(tanh(outer(x, y)) * W)",
    "outer-same": "x: [n]; W: [n, n]\nsum(sin(outer(x, x)) * W)",
    "norm(x)": "x: [n]; A: [n, m]; y: [m]\nnorm(A @ y + x)",
    "norm(A)": "A: [n, m]; W: [n, m]\nnorm(A * W + A)",
    "norm-scalar": "s: []; t: []\nnorm(s * t) + norm(s)",
}
for k in (0, 1, 2, 3, -1, -2):
    LINALG[f"matrix_power(X,{k})"] = SQ + f"sum(matrix_power(X, {k}) * C)"
LINALG["matrix_power(X@C,2)"] = SQ + "x: [n]\nx @ matrix_power(X, 2) @ C @ x"
CASES.update(LINALG)

# -- softmax family: default axis, each axis, vectors ------------------------------------------
for name in ("softmax", "log_softmax"):
    CASES[f"{name}(x)"] = "x: [n]; c: [n]\nsum(" + name + "(x * c) * c)"
    CASES[f"{name}(A)"] = AM + "W: [n, m]\nsum(" + name + "(A) * W)"
    for axis in (0, 1, -1, -2):
        CASES[f"{name}(A,axis={axis})"] = AM + "W: [n, m]\nsum(" + name + f"(A, axis={axis}) * W)"
    CASES[f"{name}(x,axis=0)"] = "x: [n]; c: [n]\nsum(" + name + "(x, axis=0) * c)"
CASES["logsumexp(x)"] = "x: [n]; c: [n]\nlogsumexp(x * c)"
CASES["logsumexp(A)"] = AM + "W: [n, m]\nlogsumexp(A * W)"
CASES["logsumexp(x,axis=0)"] = "x: [n]; c: [n]\nlogsumexp(x * c, axis=0)"
CASES["logsumexp(A,axis=0)"] = AM + "d: [m]\nsum(logsumexp(A, axis=0) * d)"
CASES["logsumexp(A,axis=1)"] = AM + "c: [n]\nsum(logsumexp(A, axis=1) * c)"
CASES["logsumexp(A,axis=-1)"] = AM + "c: [n]\nsum(logsumexp(A, axis=-1) * c)"
CASES["logsumexp(A,axis=-2)"] = AM + "d: [m]\nsum(logsumexp(A, axis=-2) * d)"

# -- losses: both arguments ---------------------------------------------------------------------
CASES["softmax_cross_entropy-matrix"] = (
    "X: [N, D]; W: [D, K]; Y: [N, K]\nsoftmax_cross_entropy(X @ W, Y)")
CASES["softmax_cross_entropy-vector"] = "A: [n, m]; x: [m]; y: [n]\nsoftmax_cross_entropy(A @ x, y)"
CASES["softmax_cross_entropy-scaled"] = (
    "Z: [N, K]; Y: [N, K]; s: []\ns * softmax_cross_entropy(Z * Z, Y)")
CASES["mse-vector"] = MAT + "mse(A @ x, c)"
CASES["mse-matrix"] = "A: [n, m]; B: [n, m]; T: [n, m]\nmse(A * B, T)"
CASES["mse-both-computed"] = MAT + "y: [n]\nmse(sin(c), A @ x + y)"

# -- structure: transpose, @ in all four combinations -------------------------------------------
CASES[".T-matrix"] = "A: [n, m]; W: [m, n]\nsum(sin(A.T) * W)"
CASES[".T-in-product"] = "A: [n, m]; B: [n, m]; W: [m, m]\nsum((A.T @ B) * W)"
CASES[".T-vector"] = "x: [n]; c: [n]\nsum(sin(x.T) * c)"
CASES[".T-double"] = "A: [n, m]; W: [n, m]\nsum(tanh(A.T.T) * W)"
CASES["vec@vec"] = "x: [n]; y: [n]\nsin(x @ y) + x @ x"
CASES["mat@vec"] = MAT + "sum(tanh(A @ x) * c)"
CASES["vec@mat"] = "A: [n, m]; y: [n]; d: [m]\nsum(tanh(y @ A) * d)"
CASES["mat@mat"] = "A: [n, m]; B: [m, K]; W: [n, K]\nsum(tanh(A @ B) * W)"
CASES["quadratic-form"] = "x: [n]; S: [n, n]\nx @ S @ x"
CASES["vec@mat@vec"] = "x: [n]; A: [n, m]; y: [m]\nsin(x @ A @ y)"

# -- broadcasting -------------------------------------------------------------------------------
CASES["bias[H]-over-[N,H]"] = "X: [N, D]; W: [D, H]; b: [H]; V: [N, H]\nsum(tanh(X @ W + b) * V)"
CASES["bias-times"] = "X: [N, H]; b: [H]; V: [N, H]\nsum(sin(X * b) * V)"
CASES["column[n,1]-over-[n,m]"] = "A: [n, m]; v: [n, 1]; W: [n, m]\nsum(tanh(A + v) * W)"
CASES["column-times"] = "A: [n, m]; v: [n, 1]; W: [n, m]\nsum(tanh(A * v) * W)"
CASES["column-and-row"] = "v: [n, 1]; r: [1, m]; W: [n, m]\nsum(tanh(v + r) * W)"
CASES["row[1,m]-over-[n,m]"] = "A: [n, m]; r: [1, m]; W: [n, m]\nsum(sin(A - r) * W)"
CASES["scalar*matrix"] = "s: []; A: [n, m]; W: [n, m]\nsum(tanh(s * A) * W)"
CASES["scalar+matrix"] = "s: []; A: [n, m]; W: [n, m]\nsum(tanh(A + s) * W)"
CASES["scalar-vector"] = "s: []; x: [n]; c: [n]\nsum(sin(s - x) * c)"
CASES["matrix/scalar"] = "s: []; A: [n, m]; W: [n, m]\nsum(sin(A / s) * W)"
CASES["vector/matrix"] = "x: [m]; A: [n, m]; W: [n, m]\nsum(x / A * W)"
CASES["unary-minus"] = "A: [n, m]; W: [n, m]\nsum(sin(-A) * W) - sum(-W)"

# -- division by a dimension, powers ------------------------------------------------------------
CASES["sum(x)/N"] = "x: [N]; c: [N]\nsin(sum(x * c) / N)"
CASES["N/sum"] = "x: [N]\nN / (1 + sum(x * x))"
CASES["x/(n*m)"] = "A: [n, m]; W: [n, m]\nsum(A * W) / (n * m) + sum(A / n)"
for k in ("2", "3", "-1", "-2", "0.5", "1.5", "-0.5", "0", "1", "1/2"):
    CASES[f"A**{k}"] = "A: [n, m]; W: [n, m]\nsum(exp(A) ** " + k + " * W)"
    CASES[f"var**{k}"] = "B: [n, m]; W: [n, m]\nsum(B ** (" + k + ") * W)"
CASES["x**scalar-var"] = "A: [n, m]; s: []; W: [n, m]\nsum(exp(A) ** s * W)"
CASES["x**vector-var"] = "A: [n, m]; e: [m]; W: [n, m]\nsum((A * A + 1) ** e * W)"
CASES["x**matrix-var"] = "A: [n, m]; E: [n, m]\nsum(softplus(A) ** E)"
CASES["const**var"] = "x: [n]; c: [n]\nsum(2 ** x * c)"
CASES["scalar**scalar"] = "s: []; t: []\n(1 + s * s) ** t"
CASES["pi-constant"] = "x: [n]\nsum(sin(pi * x))"

# -- intermediates ------------------------------------------------------------------------------
CASES["mlp"] = """
X: [N, D]; Y: [N, K]
W1: [D, H]; b1: [H]
W2: [H, K]; b2: [K]
Z1 = X @ W1 + b1
H1 = relu(Z1)
Z2 = H1 @ W2 + b2
L = softmax_cross_entropy(Z2, Y)
"""
CASES["shared-intermediate"] = MAT + "z = A @ x\nu = tanh(z)\nu @ z + sum(u * c) * sum(z)"

# -- compositions that stress the simplifier and the printer ------------------------------------
CASES["diag(diag(X))"] = SQ + "sum(diag(diag(X)) * C)"
CASES["norm**2-and-1/norm"] = "x: [n]; y: [n]\nnorm(x) ** 2 + 1 / norm(x + y)"
CASES["inv-shared"] = SQ + "sum((inv(X) @ inv(X)) * C) + trace(inv(X))"
CASES["det(inv(X.T))"] = SQ + "det(inv(X.T)) + logdet(X @ X.T)"
CASES["matrix_power(inv(X),2)"] = (
    SQ + "sum(matrix_power(inv(X), 2) * C) + trace(matrix_power(X.T, 3))")
CASES["outer.T"] = "x: [n]; y: [m]; W: [m, n]\nsum(outer(x, y).T * W)"
CASES["(A.T@B).T"] = "A: [n, m]; B: [n, K]; W: [K, m]\nsum(sin((A.T @ B).T) * W)"
CASES["sum(A@B,axis=0)"] = "A: [n, m]; B: [m, K]; d: [K]\nsum(sum(A @ B, axis=0) * d)"
CASES["(x@y)*A"] = "x: [n]; y: [n]; A: [n, m]; W: [n, m]\nsum((x @ y) * A * W)"
CASES["x@A.T"] = "x: [m]; A: [n, m]; c: [n]\nsum(sin(x @ A.T) * c)"
CASES["x/n"] = "x: [n]; c: [n]\nsum(sin(x / n) * c)"
CASES["ce-computed-targets"] = "Z: [N, K]; V: [N, K]\nsoftmax_cross_entropy(Z, softmax(V))"
CASES["mse(x,A@y)"] = "x: [n]; A: [n, m]; y: [m]\nmse(x, A @ y)"
CASES["A-B-C"] = "A: [n, m]; B: [n, m]; C: [n, m]\nsum(sin(A - (B - C)) * C)"
CASES["products-and-quotients"] = "A: [n, m]; B: [n, m]; W: [n, m]\nsum(A * B / (1 + B * B) * W)"
CASES["gelu-silu-leaky-chain"] = MAT + "a: []\nsum(gelu(silu(leaky_relu(A @ x, a))) * c)"

# -- regressions: each was a bug in matcalc found by this file ----------------------------------
REGRESSIONS = {
    # leaky_relu's default slope was a bare SymPy number, not a node (AttributeError)
    "regression-leaky_relu-default-slope": "x: [n]\nsum(leaky_relu(x))",
    # logsumexp kept a negative axis un-normalised: wrong shape, then a failed broadcast
    "regression-logsumexp-negative-axis": "A: [n, m]\nsum(logsumexp(A, axis=-1))",
    # the adjoint of a full reduction of a vector was printed as `1[None]`
    "regression-logsumexp-vector-axis0": "x: [n]\nlogsumexp(x, axis=0)",
    "regression-sum-vector-axis0": "x: [n]\nsum(x, axis=0) + mean(x, axis=0)",
    # mse's target was printed without parentheses: `p - t + b` for `p - (t + b)`
    "regression-mse-sum-target": "x: [n]; y: [n]; z: [n]\nmse(x, y + z)",
    # a negated product was printed as a unary: `x ** -s * t` for `x ** (-(s * t))`
    "regression-pow-negated-product": "B: [n]; s: []; t: []\nsum(exp(B) ** (-(s * t)))",
    # a dimension power in a constant was printed `n  *  *  2` (a SyntaxError)
    "regression-mean-square-matrix": (
        "X: [n, n]; y: [m]\nmean(exp(X)) + sum(X) / (n * n * m) + mean(outer(y, y) * m)"),
    # a symbolic coefficient went through abs() and was printed as SymPy's `Abs(1 - 1/n)`
    "regression-symbolic-coefficient": "u: [n]\nsum(exp(u)) - mean(exp(u)) - sum(u) * (1 - 1 / n)",
    # transposing `W + v` (v broadcast as a row) kept v a row instead of making it a column,
    # and transposing `A ** B` left the exponent untransposed
    "regression-transpose-broadcast-row": "v: [n]; W: [n, n]\nsum((W + v) @ v)",
    "regression-transpose-broadcast-row-rect": "v: [n]; W: [m, n]; c: [m]\nc @ (W * v) @ v",
    "regression-transpose-pow": "A: [n, m]; B: [n, m]; W: [m, n]\nsum((exp(A) ** B).T * W)",
    "regression-transpose-pow-vector": (
        "A: [n, m]; b: [m]; W: [m, n]\nsum((exp(A) ** b).T * W) + sum((exp(b) ** A).T * W)"),
    # relu masks are NumPy booleans: `-(x > 0).T * g` raised, `m + m.T` was a logical or
    "regression-negated-transposed-mask": "u: [n, m]\nsum(relu(cos(u).T))",
    "regression-sum-of-masks": "u: [n]\nsum(relu(outer(u, u)))",
    "regression-mask-coefficient": "u: [n]; A: [m, n]\nsum(relu(u)) - sum(relu(A @ u) * 2.5)",
    # a well-conditioned draw for a [n, 1] variable (under matrix_power) came out [n, n]
    "regression-column-under-matrix-power": (
        "u: [n, 1]\nsum((u + sum(u, axis=-1)) @ (u + sum(u, axis=-1)))"),
    # f = x itself: the finite differences read the perturbed array back (∂f/∂x came out 0)
    "regression-identity-function": "s: []\ns",
    # a constant sum such as `1/100 - 1/(m n)` was printed without parentheses after ` - `
    "regression-constant-sum-precedence": "v: [n, m]\nsum(leaky_relu(exp(v))) - mean(exp(v))",
    # abs of a constant (abs(x - x)) crashed the kink check: np.min(int, initial=inf)
    "regression-constant-kink": "x: [n]\nsum(abs(x - x)) + sum(x * x)",
}
CASES.update(REGRESSIONS)


def variables(source: str) -> list[str]:
    """Every declared variable but integer class labels (which have no gradient)."""
    from matcalc.core.ir import is_labels
    from matcalc.language.lowering import parse

    return [name for name, node in parse(source).variables.items() if not is_labels(node)]


PARAMS = [pytest.param(source, sizes, id=f"{name}-{'ab'[i]}")
          for name, source in CASES.items() for i, sizes in enumerate(SIZES)]


@pytest.mark.parametrize(("source", "sizes"), PARAMS)
def test_gradient_matches_finite_differences(source: str, sizes: dict[str, int]) -> None:
    check_gradients(source, variables(source), sizes, seed=len(source))




ALWAYS_AT_A_KINK = {"regression-constant-kink"}
"""abs(x − x) is at its kink for every input: torch's harness rightly draws none."""


@pytest.mark.parametrize("source", [pytest.param(s, id=name) for name, s in CASES.items()
                                    if name not in ALWAYS_AT_A_KINK])
def test_every_path_agrees_with_torch_autograd(source: str) -> None:
    """The same programs through every output path (derive and --steps code, the NumPy module,
    the torch target, Hessians, HVPs) against torch.autograd on the program rebuilt from its
    source with torch operations (the fuzz gate's harness), independently of the generator."""
    pytest.importorskip("torch")
    outcomes = torch_outcomes(source, variables(source), SIZES[0])
    assert sum(o.category == "ok" for o in outcomes) >= 3, outcomes


def test_every_language_function_is_covered() -> None:
    """Adding a function to the language without a case here fails this test."""
    text = "\n".join(CASES.values())
    missing = [name for name in FUNCTIONS if f"{name}(" not in text]
    assert not missing
