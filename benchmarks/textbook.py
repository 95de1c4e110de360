"""Natural-form programs against their textbook gradients.

Each case is a loss written the way a course or paper defines it (not with matcalc's
primitives), the variable, and the book's gradient in matcalc's notation. Per case it prints
the token count of matcalc's printed gradient over the book's, whether the two agree
numerically (``verify``'s numeric check), and, for the classification losses, whether the
generated value and gradient stay finite with logits of about ±1e3 (float64 and float32); then
a summary line. Goal: every case at most 1.25x the book's size, right, and finite.
Run with ``python benchmarks/textbook.py``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

import numpy as np

from matcalc import derive, hessian, lambdify, parse
from matcalc.forms.printing import to_text
from matcalc.proofs.inputs import random_inputs
from matcalc.proofs.verify import parse_claims, verify

LOGISTIC = "X: [N, D]\nw: [D]\ny: [N]\n"
SOFTMAX = "X: [N, D]\nW: [D, C]\nY: [N, C] onehot\nZ = X @ W\n"
BATCH_NORM = ("X: [N, D]\nG: [N, D]\ngamma: [D]\nbeta: [D]\nmu = mean(X, axis=0)\nxc = X - mu\n"
              "var = mean(xc ** 2, axis=0)\nxhat = xc / sqrt(var + 1e-5)\n"
              "L = sum(G * (gamma * xhat + beta))")
LAYER_NORM = ("X: [N, D]\nG: [N, D]\ng: [D]\nc: [D]\nxc = X - mean(X, axis=1, keepdims=True)\n"
              "r = 1 / sqrt(mean(xc ** 2, axis=1, keepdims=True) + 1e-5)\nxhat = xc * r\n"
              "L = sum(G * (xhat * g + c))")


@dataclass(frozen=True)
class Case:
    name: str
    program: str
    wrt: str
    book: str
    """The book's gradient, in the program's notation (it may use the program's names)."""
    big: dict[str, float] = field(default_factory=dict)
    """Factors making the logits about 1e3, for the finiteness check (none: not checked)."""
    kind: str = "grad"
    """``grad`` or ``hessian``."""


CASES = [
    Case("binary cross-entropy", LOGISTIC + "p = sigmoid(X @ w)\n"
         "L = -sum(y * log(p) + (1 - y) * log(1 - p)) / N", "w", "X.T @ (p - y) / N",
         {"w": 1e3}),
    Case("binary cross-entropy, σ spelled out", LOGISTIC + "p = 1 / (1 + exp(-(X @ w)))\n"
         "L = -sum(y * log(p) + (1 - y) * log(1 - p)) / N", "w", "X.T @ (p - y) / N",
         {"w": 1e3}),
    Case("binary cross-entropy, mean", LOGISTIC + "p = sigmoid(X @ w)\n"
         "L = -mean(y * log(p) + (1 - y) * log(1 - p))", "w", "X.T @ (p - y) / N", {"w": 1e3}),
    Case("binary cross-entropy, exp ratio", LOGISTIC + "p = exp(X @ w) / (1 + exp(X @ w))\n"
         "L = -sum(y * log(p) + (1 - y) * log(1 - p)) / N", "w", "X.T @ (p - y) / N",
         {"w": 1e3}),
    Case("logistic loss, ±1 labels", LOGISTIC + "L = mean(log(1 + exp(-y * (X @ w))))", "w",
         "-X.T @ (y * sigmoid(-y * (X @ w))) / N", {"w": 1e3}),
    Case("softmax cross-entropy, exp over sum", SOFTMAX +
         "L = -sum(Y * log(exp(Z) / sum(exp(Z), axis=1, keepdims=True))) / N", "W",
         "X.T @ (softmax(Z) - Y) / N", {"W": 1e3}),
    Case("softmax cross-entropy, log of softmax", SOFTMAX +
         "L = -sum(Y * log(softmax(Z, axis=1))) / N", "W", "X.T @ (softmax(Z) - Y) / N",
         {"W": 1e3}),
    Case("softmax cross-entropy, mean of row sums", SOFTMAX +
         "L = -mean(sum(Y * log_softmax(Z, axis=1), axis=1))", "W",
         "X.T @ (softmax(Z) - Y) / N", {"W": 1e3}),
    Case("softmax cross-entropy, logsumexp spelled out", SOFTMAX +
         "L = sum(log(sum(exp(Z), axis=1)) - sum(Y * Z, axis=1)) / N", "W",
         "X.T @ (softmax(Z) - Y) / N", {"W": 1e3}),
    Case("softplus regression", LOGISTIC + "L = sum(log(1 + exp(X @ w)))", "w",
         "X.T @ sigmoid(X @ w)", {"w": 1e3}),
    Case("logsumexp", "x: [n]\nlog(sum(exp(x)))", "x", "softmax(x)", {"x": 1e3}),
    Case("tanh spelled out", "z: [n]\nc: [n]\nsum((exp(z) - exp(-z)) / (exp(z) + exp(-z)) * c)",
         "z", "c * (1 - tanh(z) ** 2)"),
    Case("log-cosh regression", LOGISTIC + "r = X @ w - y\nL = sum(log((exp(r) + exp(-r)) / 2))",
         "w", "X.T @ tanh(r)"),
    Case("least squares", LOGISTIC + "L = sum((X @ w - y) ** 2) / N", "w",
         "2 * X.T @ (X @ w - y) / N"),
    Case("ridge regression", LOGISTIC + "lam: []\nL = sum((X @ w - y) ** 2) + lam * sum(w ** 2)",
         "w", "2 * X.T @ (X @ w - y) + 2 * lam * w"),
    Case("linear regression with bias", LOGISTIC + "b: []\nL = mean((X @ w + b - y) ** 2)", "b",
         "2 * mean(X @ w + b - y)"),
    Case("sigmoid with squared error", LOGISTIC + "p = sigmoid(X @ w)\nL = sum((p - y) ** 2)",
         "w", "2 * X.T @ ((p - y) * p * (1 - p))"),
    Case("Poisson regression", LOGISTIC + "L = sum(exp(X @ w) - y * (X @ w))", "w",
         "X.T @ (exp(X @ w) - y)"),
    Case("Gaussian likelihood, variance", "y: [N]\nmu: []\ns2: []\n"
         "L = sum((y - mu) ** 2) / (2 * s2) + N / 2 * log(s2)", "s2",
         "N / (2 * s2) - sum((y - mu) ** 2) / (2 * s2 ** 2)"),
    Case("Gaussian likelihood, mean", "y: [N]\nmu: []\ns2: []\n"
         "L = sum((y - mu) ** 2) / (2 * s2) + N / 2 * log(s2)", "mu",
         "-sum(y - mu) / s2"),
    Case("entropy", "p: [n]\n-sum(p * log(p))", "p", "-(log(p) + 1)"),
    Case("KL divergence", "p: [n]\nq: [n]\nsum(p * log(p / q))", "q", "-p / q"),
    Case("quadratic form", "x: [n]\nA: [n, n]\nx @ A @ x", "x", "(A + A.T) @ x"),
    Case("trace of a product", "A: [m, n]\nX: [n, p]\nB: [p, m]\ntrace(A @ X @ B)", "X",
         "A.T @ B.T"),
    Case("log-determinant", "X: [n, n]\nlogdet(X)", "X", "inv(X).T"),
    Case("Frobenius least squares", "A: [m, n]\nX: [n, p]\nB: [m, p]\nsum((A @ X - B) ** 2)",
         "X", "2 * A.T @ (A @ X - B)"),
    Case("L2-regularised logistic regression", LOGISTIC + "lam: []\np = sigmoid(X @ w)\n"
         "L = -mean(y * log(p) + (1 - y) * log(1 - p)) + lam / 2 * sum(w ** 2)", "w",
         "X.T @ (p - y) / N + lam * w", {"w": 1e3}),
    Case("two-layer sigmoid net", "X: [N, D]\nW1: [D, H]\nw2: [H]\ny: [N]\n"
         "h = 1 / (1 + exp(-(X @ W1)))\nL = sum((h @ w2 - y) ** 2) / 2", "w2",
         "h.T @ (h @ w2 - y)"),
    Case("softmax regression, probabilities spelled out", SOFTMAX +
         "P = exp(Z) / sum(exp(Z), axis=1, keepdims=True)\nL = -sum(Y * log(P)) / N", "W",
         "X.T @ (P - Y) / N", {"W": 1e3}),
    Case("sigmoid output with mean squared error", LOGISTIC +
         "p = 1 / (1 + exp(-(X @ w)))\nL = mean((p - y) ** 2)", "w",
         "2 * X.T @ (p * (1 - p) * (p - y)) / N"),
    Case("tanh network regression", "X: [N, D]\nW1: [D, H]\nw2: [H]\ny: [N]\n"
         "h = tanh(X @ W1)\nL = sum((h @ w2 - y) ** 2) / 2", "W1",
         "X.T @ (outer(h @ w2 - y, w2) * (1 - h ** 2))"),
    Case("logistic regression bias", LOGISTIC + "b: []\np = sigmoid(X @ w + b)\n"
         "L = -mean(y * log(p) + (1 - y) * log(1 - p))", "b", "sum(p - y) / N", {"b": 1e3}),
    Case("Gaussian log-likelihood, precision", "x: [n]\nm: [n]\nP: [n, n]\n"
         "L = 0.5 * logdet(P) - 0.5 * (x - m) @ P @ (x - m)", "P",
         "(inv(P).T - outer(x - m, x - m)) / 2"),
    Case("softmax with a temperature", "x: [n]\nt: []\nlog(sum(exp(x / t)))", "x",
         "softmax(x / t) / t", {"x": 1e3}),
    Case("squared norm residual", LOGISTIC + "L = norm(X @ w - y) ** 2 / N", "w",
         "2 * X.T @ (X @ w - y) / N"),
    Case("softmax cross-entropy, max-shifted as CS231n", SOFTMAX +
         "S = Z - max(Z, axis=1, keepdims=True)\n"
         "L = -sum(Y * (S - log(sum(exp(S), axis=1, keepdims=True)))) / N", "W",
         "X.T @ (softmax(Z) - Y) / N", {"W": 1e3}),
    Case("weighted least squares", LOGISTIC + "M: [N, N]\nr = y - X @ w\nL = r @ M @ r", "w",
         "-X.T @ (M + M.T) @ r"),
    Case("cosine similarity", "x: [n]\ny: [n]\nx @ y / (norm(x) * norm(y))", "x",
         "y / (norm(x) * norm(y)) - (x @ y) * x / (norm(x) ** 3 * norm(y))"),
    Case("logsumexp Hessian", "W: [m, n]\nx: [n]\np = softmax(W @ x)\nlogsumexp(W @ x)", "x",
         "W.T @ (diag(p) - outer(p, p)) @ W", kind="hessian"),
    Case("L2-regularised logistic regression Hessian", LOGISTIC + "lam: []\n"
         "p = sigmoid(X @ w)\nL = -mean(y * log(p) + (1 - y) * log(1 - p)) + lam / 2 * sum(w ** 2)",
         "w", "X.T @ diag(p * (1 - p)) @ X / N + lam * eye(D)", kind="hessian"),
    Case("logistic loss Hessian, ±1 labels", LOGISTIC + "s = sigmoid(y * (X @ w))\n"
         "L = mean(log(1 + exp(-y * (X @ w))))", "w",
         "X.T @ diag(y ** 2 * s * (1 - s)) @ X / N", kind="hessian"),
    Case("batch normalisation, input (CS231n)", BATCH_NORM, "X",
         "gamma / sqrt(var + 1e-5) * (G - mean(G, axis=0) - xhat * mean(G * xhat, axis=0))"),
    Case("batch normalisation, scale", BATCH_NORM, "gamma", "sum(G * xhat, axis=0)"),
    Case("layer normalisation, input", LAYER_NORM, "X",
         "r * (G * g - mean(G * g, axis=1, keepdims=True)"
         " - xhat * mean(G * g * xhat, axis=1, keepdims=True))"),
    Case("log-sigmoid likelihood", LOGISTIC + "L = -sum(y * log(sigmoid(X @ w)) + "
         "(1 - y) * log(sigmoid(-(X @ w))))", "w", "X.T @ (sigmoid(X @ w) - y)", {"w": 1e3}),
    Case("hinge loss, maximum(0, .)",
         "X: [N, D]\n"
         "w: [D]\n"
         "y: [N]\n"
         "m = 1 - y * (X @ w)\n"
         "L = mean(maximum(0, m))",
         "w", "-X.T @ (y * (m > 0)) / N", {"w": 1000.0}),
    Case("squared hinge",
         "X: [N, D]\n"
         "w: [D]\n"
         "y: [N]\n"
         "m = relu(1 - y * (X @ w))\n"
         "L = sum(m ** 2)",
         "w", "-2 * X.T @ (y * m)", {"w": 1000.0}),
    Case("multiclass SVM (CS231n)",
         "X: [N, D]\n"
         "W: [D, C]\n"
         "Y: [N, C] onehot\n"
         "Z = X @ W\n"
         "M = Z - sum(Z * Y, axis=1, keepdims=True) + 1\n"
         "L = sum(relu(M) * (1 - Y)) / N",
         "W", "X.T @ ((M > 0) * (1 - Y) - Y * sum((M > 0) * (1 - Y), axis=1, keepdims=True)) / N"),
    Case("Huber loss, where",
         "X: [N, D]\n"
         "w: [D]\n"
         "y: [N]\n"
         "r = X @ w - y\n"
         "L = sum(where(abs(r) <= 1, 0.5 * r ** 2, abs(r) - 0.5))",
         "w", "X.T @ where(abs(r) <= 1, r, sign(r))"),
    Case("Cauchy loss",
         "X: [N, D]\n"
         "w: [D]\n"
         "y: [N]\n"
         "r = X @ w - y\n"
         "L = sum(log(1 + r ** 2))",
         "w", "2 * X.T @ (r / (1 + r ** 2))"),
    Case("focal loss (γ = 2), positives",
         "z: [n]\n"
         "p = sigmoid(z)\n"
         "L = -sum((1 - p) ** 2 * log(p))",
         "z", "(1 - p) ** 2 * (2 * p * log(p) - (1 - p))", {"z": 1000.0}),
    Case("weighted BCE (pos_weight)",
         "X: [N, D]\n"
         "w: [D]\n"
         "y: [N]\n"
         "a: []\n"
         "p = sigmoid(X @ w)\n"
         "L = -sum(a * y * log(p) + (1 - y) * log(1 - p))",
         "w", "X.T @ ((a * y + 1 - y) * p - a * y)", {"w": 1000.0}),
    Case("label smoothing",
         "X: [N, D]\n"
         "W: [D, C]\n"
         "Y: [N, C] onehot\n"
         "Z = X @ W\n"
         "T = 0.9 * Y + 0.1 / C\n"
         "L = -sum(T * log(softmax(Z, axis=1))) / N",
         "W", "X.T @ (softmax(Z) - T) / N", {"W": 1000.0}),
    Case("KL between softmaxes (distillation)",
         "X: [N, D]\n"
         "W: [D, C]\n"
         "Y: [N, C] onehot\n"
         "Z = X @ W\n"
         "A: [N, C]\n"
         "P = softmax(A, axis=1)\n"
         "Q = softmax(Z, axis=1)\n"
         "L = sum(P * (log(P) - log(Q))) / N",
         "W", "X.T @ (Q - P) / N", {"W": 1000.0}),
    Case("Brier score on softmax",
         "Z: [N, C]\n"
         "Y: [N, C] onehot\n"
         "P = softmax(Z, axis=1)\n"
         "L = sum((P - Y) ** 2) / N",
         "Z", "2 * P * (P - Y - sum(P * (P - Y), axis=1, keepdims=True)) / N"),
    Case("entropy of a softmax",
         "z: [n]\n"
         "p = exp(z) / sum(exp(z))\n"
         "H = -sum(p * log(p))",
         "z", "-p * (log(p) - p @ log(p))", {"z": 1000.0}),
    Case("Gaussian NLL, log-variance (VAE)",
         "x: [n]\n"
         "m: [n]\n"
         "lv: [n]\n"
         "L = sum(lv + (x - m) ** 2 * exp(-lv)) / 2",
         "lv", "(1 - (x - m) ** 2 * exp(-lv)) / 2"),
    Case("VAE KL term, log-variance",
         "m: [n]\n"
         "lv: [n]\n"
         "L = -0.5 * sum(1 + lv - m ** 2 - exp(lv))",
         "lv", "(exp(lv) - 1) / 2"),
    Case("tanh as 2σ(2x) − 1 network",
         "X: [N, D]\n"
         "W1: [D, H]\n"
         "w2: [H]\n"
         "y: [N]\n"
         "h = 2 * sigmoid(2 * (X @ W1)) - 1\n"
         "L = sum((h @ w2 - y) ** 2) / 2",
         "W1", "X.T @ (outer(h @ w2 - y, w2) * (1 - h ** 2))"),
    Case("Cookbook tr(X A Xᵀ B)",
         "A: [m, m]\n"
         "X: [n, m]\n"
         "B: [n, n]\n"
         "trace(X @ A @ X.T @ B)",
         "X", "B @ X @ A + B.T @ X @ A.T"),
    Case("Cookbook aᵀ X⁻¹ b",
         "a: [n]\n"
         "b: [n]\n"
         "X: [n, n]\n"
         "a @ inv(X) @ b",
         "X", "-inv(X).T @ outer(a, b) @ inv(X).T"),
    Case("Frobenius norm, sqrt of sum",
         "X: [m, n]\n"
         "sqrt(sum(X ** 2))",
         "X", "X / norm(X)"),
    Case("triplet loss (anchor)",
         "a: [n]\n"
         "p: [n]\n"
         "q: [n]\n"
         "m: []\n"
         "L = relu(sum((a - p) ** 2) - sum((a - q) ** 2) + m)",
         "a", "2 * (q - p) * (sum((a - p) ** 2) - sum((a - q) ** 2) + m > 0)"),
    Case("contrastive loss (Hadsell)",
         "d: [N]\n"
         "y: [N]\n"
         "m: []\n"
         "L = sum(y * d ** 2 + (1 - y) * relu(m - d) ** 2) / 2",
         "d", "y * d - (1 - y) * relu(m - d)"),
    Case("group lasso (row norms)",
         "W: [m, n]\n"
         "L = sum(sqrt(sum(W ** 2, axis=1)))",
         "W", "W / sqrt(sum(W ** 2, axis=1, keepdims=True))"),
    Case("tanh as (1−e^{−2z})/(1+e^{−2z})",
         "z: [n]\n"
         "c: [n]\n"
         "t = (1 - exp(-2 * z)) / (1 + exp(-2 * z))\n"
         "L = sum(c * t)",
         "z", "c * (1 - t ** 2)"),
    Case("Cookbook logdet(A X B), square",
         "A: [n, n]\n"
         "X: [n, n]\n"
         "B: [n, n]\n"
         "logdet(A @ X @ B)",
         "X", "inv(X).T"),
    Case("Poisson regression Hessian",
         "X: [N, D]\n"
         "w: [D]\n"
         "y: [N]\n"
         "mu = exp(X @ w)\n"
         "L = sum(mu - y * (X @ w))",
         "w", "X.T @ diag(mu) @ X", kind="hessian"),
    Case("SiLU spelled out",
         "z: [n]\n"
         "c: [n]\n"
         "s = 1 / (1 + exp(-z))\n"
         "L = sum(c * z * s)",
         "z", "c * s * (1 + z * (1 - s))"),
]

TOKEN = re.compile(r"[^\W\d]\w*|\d+(?:\.\d*)?(?:e[-+]?\d+)?|\S")
GOAL = 1.25


def tokens(text: str) -> int:
    """Identifiers, numbers and symbols of a printed formula."""
    return len(TOKEN.findall(text))


def claim(case: Case) -> str:
    return f"{case.program}\nclaim {case.kind}({function(case)}, {case.wrt}) = {case.book}"


def book_text(case: Case) -> str:
    """The book's derivative as matcalc prints it (it is parsed as a claim)."""
    _, (parsed,) = parse_claims(claim(case))
    return to_text(parsed.expr)


def function(case: Case) -> str:
    last = case.program.strip().splitlines()[-1]
    return last.split("=")[0].strip() if "=" in last and "==" not in last else "f"


def printed(case: Case) -> str:
    result = (hessian(case.program, case.wrt) if case.kind == "hessian"
              else derive(case.program, [case.wrt]))
    line = result.text().splitlines()[0]
    return line.split(" = ", 1)[1].rsplit("   ", 1)[0]


def agrees(case: Case) -> bool:
    return verify(claim(case), timeout=2.0).numeric == "PASS"


def finite(case: Case) -> str:
    """Whether value and gradient are finite at logits of ~1e3, float64 and float32."""
    if not case.big:
        return "n/a"
    program = parse(case.program)
    sizes = {d: 4 for d in program.dims}
    arrays = random_inputs(program, sizes, np.random.default_rng(0))
    arrays = {k: v * case.big.get(k, 1.0) for k, v in arrays.items()}
    if case.kind != "grad":
        return "n/a"
    module = lambdify(case.program, [case.wrt])
    for dtype in (np.float64, np.float32):
        typed = {k: np.asarray(v).astype(dtype) if np.asarray(v).dtype.kind == "f" else v
                 for k, v in arrays.items()}
        with np.errstate(all="ignore"):
            value, grads = module.value_and_grad(**typed)
        if not (np.all(np.isfinite(value)) and np.all(np.isfinite(grads[case.wrt]))):
            return "no"
    return "yes"


def main() -> int:
    rows, ok = [], 0
    for case in CASES:
        mine, book = printed(case), book_text(case)
        ratio = tokens(mine) / tokens(book)
        right, stable = agrees(case), finite(case)
        good = ratio <= GOAL and right and stable != "no"
        ok += good
        rows.append((case.name, ratio, right, stable, mine, book))
        print(f"{'ok ' if good else 'NO '} {case.name:<46} {ratio:5.2f}x  "
              f"{'right' if right else 'WRONG'}  finite {stable:<4}  {mine}   (book: {book})")
    worst = max(r[1] for r in rows)
    print(f"summary: {ok}/{len(CASES)} cases at most {GOAL}x the book's size, right and finite; "
          f"worst ratio {worst:.2f}x, {sum(not r[2] for r in rows)} wrong, "
          f"{sum(r[3] == 'no' for r in rows)} not finite")
    return 0 if ok == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main())
