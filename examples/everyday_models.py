"""Models as courses and papers write them, each derived, printed and checked.

Layer norm written the natural way, the multiclass SVM loss of CS231n, a Gaussian-process
negative log-likelihood (solve and logdet; positive hyperparameters as exponentials), ridge
regression's validation loss as a function of its log-penalty (a gradient through a solve), a
Gaussian with a Cholesky-factor parameter, and max-pooling over time. Each gradient is checked
against central finite differences.
Run: python examples/everyday_models.py
"""

import matcalc
from matcalc.testing import check_gradient

MODELS = {
    "layer norm": (
        "X: [N, D]; g: [D]; b: [D]; G: [N, D]\n"
        "mu = mean(X, axis=1, keepdims=True)\n"
        "Xc = X - mu\n"
        "v = mean(Xc * Xc, axis=1, keepdims=True)\n"
        "Y = Xc / sqrt(v + 1e-5) * g + b\n"
        "L = sum(Y * G)",
        ["X", "g", "b"]),
    "multiclass SVM (CS231n)": (
        "X: [N, D]; W: [D, C]; Y: [N, C] onehot\n"
        "S = X @ W\n"
        "margins = relu(S - sum(S * Y, axis=1, keepdims=True) + 1) * (1 - Y)\n"
        "L = sum(margins) / N",
        ["W"]),
    "Gaussian-process NLL": (
        "X: [N, D]; y: [N]; log_s: []; log_ell: []; log_noise: []\n"
        "sq = sum(X * X, axis=1, keepdims=True)\n"
        "D2 = sq + sq.T - 2 * X @ X.T\n"
        "K = exp(log_s - D2 / (2 * exp(2 * log_ell))) + exp(log_noise) * eye(N)\n"
        "nll = y @ solve(K, y) / 2 + logdet(K) / 2 + N * log(2 * pi) / 2",
        ["log_s", "log_ell", "log_noise", "y"]),
    "ridge: validation loss against the penalty": (
        "X: [N, D]; y: [N]; Xv: [M, D]; yv: [M]; log_lam: []\n"
        "w = solve(X.T @ X + exp(log_lam) * eye(D), X.T @ y)\n"
        "E = mean((Xv @ w - yv) ** 2)",
        ["log_lam"]),
    "Gaussian with a Cholesky factor": (
        "x: [n]; mu: [n]; A: [n, n]\n"
        "L = tril(A)\n"
        "S = L @ L.T + 1e-3 * eye(n)\n"
        "nll = (x - mu) @ solve(S, x - mu) / 2 + logdet(S) / 2",
        ["A", "mu"]),
    "max-pooling over time": (
        "H: [T, D]; W: [D, K]; v: [K]\n"
        "Z = relu(H @ W)\n"
        "p = max(Z, axis=0)\n"
        "score = p @ v",
        ["W", "v"]),
}

for title, (source, wrt) in MODELS.items():
    print(f"== {title}\n{source}\n")
    print(matcalc.derive(source, wrt).text(), "\n")
    report = check_gradient(source, wrt)
    print(report.text(), "\n")
    assert report.passed, title
print("every model's gradients agree with central finite differences")
