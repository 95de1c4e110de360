"""Arrays of rank 3 and more: stacks of matrices, as NumPy treats them.

Programs with batched products, transposes of each matrix (``.mT``), axis permutations and
reductions on inner axes are checked through every output path against torch.autograd (the fuzz
gate's harness); printed forms keep matrix notation with the stack's shape stated.
"""

from __future__ import annotations

import pytest

from matcalc import MatcalcError, derive, parse
from matcalc.proofs.verify import verify

ATTENTION = """X: [B, T, d]
Wq: [d, k]; Wk: [d, k]; Wv: [d, k]
Q = X @ Wq
K = X @ Wk
V = X @ Wv
S = Q @ K.mT / sqrt(k)
P = softmax(S, axis=-1)
O = P @ V
L = sum(O * O)
"""

PROGRAMS = {
    "attention": (ATTENTION, ("Wq", "Wk", "Wv", "X")),
    "heads": ("Q, K: [B, h, T, k]\nW: [h, k, k]\n"
              "S = softmax(Q @ W @ K.mT, axis=-1)\nL = sum(S * S) + mean(logsumexp(S, axis=2))",
              ("Q", "K", "W")),
    "broadcast stacks": ("A: [B, 1, n, m]\nC: [h, m, n]\nx: [n]\n"
                         "L = sum(tanh(A @ C) @ x) + sum(max(A, axis=2, keepdims=True) * A)",
                         ("A", "C", "x")),
    "permutations": ("X: [B, T, h, k]\nW: [k, k]\n"
                     "Y = transpose(X, [0, 2, 1, 3]) @ W\n"
                     "Z = swapaxes(Y, 1, 3)\nL = sum(Z * transpose(X, [0, 3, 1, 2]) ** 2)",
                     ("X", "W")),
    "reductions": ("X: [B, T, d]\ng: [d]\n"
                   "mu = mean(X, axis=-1, keepdims=True)\nXc = X - mu\n"
                   "v = mean(Xc * Xc, axis=-1, keepdims=True)\n"
                   "Y = Xc / sqrt(v + 1e-5) * g\nL = sum(Y * Y * Y) + sum(var(X, axis=1))",
                   ("X", "g")),
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_stacks_agree_with_torch_autograd_through_every_path(name: str) -> None:
    """derive, --steps, the NumPy module, the torch target (and torch.func), HVPs; Hessians
    through stacks are a stated limit (skipped), never wrong."""
    from conftest import torch_outcomes

    pytest.importorskip("torch")
    source, wrt = PROGRAMS[name]
    sizes = {"B": 2, "T": 3, "d": 4, "k": 2, "h": 2, "n": 3, "m": 2}
    outcomes = torch_outcomes(source, list(wrt), sizes)
    assert sum(o.category == "ok" for o in outcomes) >= 5, outcomes


def test_attention_prints_in_matrix_notation_per_matrix_of_the_stack() -> None:
    derivation = derive(ATTENTION, ["Wq"], steps=True)
    text = derivation.text()
    assert "δ4 = ∂L/∂Q = δ3 K / sqrt(k)" in text
    assert "[B, T, k]" in text and "∂L/∂Wq = sum(Xᵀ δ4, axis=0)" in text
    assert "ᵀ transposes each matrix (NumPy's .mT)" in text


def test_a_stack_of_matrices_transposes_matrix_by_matrix() -> None:
    program = parse("X: [B, n, m]\nY = X.mT")
    assert program.function.shape == tuple(parse("Z: [B, m, n]\nZ").function.shape)
    assert verify("X: [B, n, m]; W: [B, m, n]\nf = sum(X.mT * W)\nclaim grad(f, X) = W.mT").passed


@pytest.mark.parametrize(("source", "message"), [
    ("X: [B, n, m]\nsum(X.T)", "`.mT` to transpose each matrix"),
    ("x: [n]\nsum(x.mT)", "a vector or a scalar has none to swap"),
    ("X: [B, n, m]\nsum(transpose(X, [0, 1, 1]))", "not a permutation"),
    ("X: [B, n, m]\nsum(transpose(X, [1, 0]))", "2 axes given for a rank-3 array"),
    ("X: [B, n, m]\nx: [n]\nsum(X @ x)", "[B, n, m] and [n] do not align (m ≠ n)"),
    ("X: [B, n, m]\nY: [B, n, m]\nsum(X @ Y)", "do not align (m ≠ n)"),
    ("X: [B, n, m]\nsum(swapaxes(X, 0, 3))", "axis 3 is out of range"),
])
def test_stack_mistakes_are_clear_errors(source: str, message: str) -> None:
    with pytest.raises(MatcalcError) as error:
        derive(source, ["X" if "X" in source.split("\n")[0] else "x"])
    assert message in str(error.value)
