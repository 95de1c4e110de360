"""Models written as the books write them: derived, generated and compared with PyTorch's own
implementations (layer norm) and with finite differences (examples/everyday_models.py)."""

from __future__ import annotations

import numpy as np
import pytest

from matcalc import derive, lambdify

LAYER_NORM = (
    "X: [N, D]; g: [D]; b: [D]; G: [N, D]\n"
    "mu = mean(X, axis=1, keepdims=True)\n"
    "Xc = X - mu\n"
    "v = mean(Xc * Xc, axis=1, keepdims=True)\n"
    "Y = Xc / sqrt(v + 1e-5) * g + b\n"
    "L = sum(Y * G)"
)


def test_layer_norm_written_naturally_is_torchs_layer_norm() -> None:
    torch = pytest.importorskip("torch")
    module = lambdify(LAYER_NORM, ["X", "g", "b"])
    rng = np.random.default_rng(0)
    arrays = {"X": rng.normal(size=(6, 5)) * 3 + 1, "g": rng.normal(size=5),
              "b": rng.normal(size=5), "G": rng.normal(size=(6, 5))}
    value, grads = module.value_and_grad(**arrays)
    t = {k: torch.tensor(a, requires_grad=k != "G") for k, a in arrays.items()}
    y = torch.nn.functional.layer_norm(t["X"], (5,), t["g"], t["b"], eps=1e-5)
    loss = (y * t["G"]).sum()
    loss.backward()
    assert np.isclose(value, loss.item(), rtol=1e-12)
    for name in ("X", "g", "b"):
        np.testing.assert_allclose(grads[name], t[name].grad.numpy(), rtol=1e-9, atol=1e-12)


def test_the_svm_loss_and_max_pooling_derive_in_matrix_form() -> None:
    svm = derive("X: [N, D]; W: [D, C]; Y: [N, C] onehot\nS = X @ W\n"
                 "L = sum(relu(S - sum(S * Y, axis=1, keepdims=True) + 1) * (1 - Y)) / N", ["W"])
    assert svm.text().startswith("∂L/∂W = Xᵀ (")
    pooled = derive("H: [T, D]; W: [D, K]; v: [K]\nZ = relu(H @ W)\nscore = max(Z, axis=0) @ v",
                    ["W"])
    assert "1[argmax(Z, axis=0)]" in pooled.text()
    assert "max sends the gradient to the first of tied largest entries" in pooled.text()


def test_the_gradient_at_an_intermediate_before_cholesky_is_symmetric() -> None:
    """∂f/∂S for S = X Xᵀ + I feeding cholesky is PyTorch's symmetric form, not the gradient
    of the lower triangle alone."""
    torch = pytest.importorskip("torch")
    module = lambdify("X: [n, n]; x: [n]\nS = X @ X.T + eye(n)\nf = x @ cholesky(S) @ x",
                      ["S"])
    rng = np.random.default_rng(4)
    X, x = rng.normal(size=(4, 4)), rng.normal(size=4)
    _, grads = module.value_and_grad(X=X, x=x)
    s = torch.tensor(X @ X.T + np.eye(4), requires_grad=True)
    t = torch.tensor(x)
    (t @ torch.linalg.cholesky(s) @ t).backward()
    np.testing.assert_allclose(grads["S"], s.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_gradients_through_solve_never_form_an_inverse() -> None:
    from matcalc import generate

    code = generate("X: [N, D]; y: [N]; Xv: [M, D]; yv: [M]; lam: []\n"
                    "w = solve(X.T @ X + lam * eye(D), X.T @ y)\n"
                    "E = mean((Xv @ w - yv) ** 2)", ["lam"])
    assert "solve(" in code and "inv(" not in code


def test_products_with_an_inverse_are_generated_as_solves() -> None:
    """trace(A⁻¹ B Bᵀ) + xᵀ A⁻¹ x: no inverse is formed, only solves, and the numbers agree."""
    from matcalc import generate

    source = "A: [n, n]; B: [n, m]; x: [n]\ntrace(inv(A) @ B @ B.T) + x @ inv(A) @ x"
    code = generate(source, ["A", "B", "x"])
    assert "solve(" in code and "inv(" not in code
    namespace: dict = {}
    exec(compile(code, "<generated>", "exec"), namespace)  # noqa: S102 (our own generated code)
    rng = np.random.default_rng(3)
    a, b, x = 3 * np.eye(4) + rng.normal(size=(4, 4)), rng.normal(size=(4, 2)), rng.normal(size=4)
    value, grads = namespace["value_and_grad"](A=a, B=b, x=x)
    inverse = np.linalg.inv(a)
    assert np.isclose(value, np.trace(inverse @ b @ b.T) + x @ inverse @ x)
    np.testing.assert_allclose(grads["B"], (inverse + inverse.T) @ b, rtol=1e-10)
    np.testing.assert_allclose(grads["A"], -inverse.T @ (np.outer(x, x) + b @ b.T) @ inverse.T,
                               rtol=1e-10)
