"""Arrays of rank 3 and more: stacks of matrices, as NumPy treats them.

Programs with batched products, transposes of each matrix (``.mT``), axis permutations and
reductions on inner axes are checked through every output path against torch.autograd (the fuzz
gate's harness); printed forms keep matrix notation with the stack's shape stated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matcalc import MatcalcError, derive, lambdify, parse
from matcalc.proofs.testing import check_gradient
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
    "einsum": ("Q, K: [B, T, h, k]\nE: [h, k]\n"
               'S = einsum("bthk,bshk->bhts", Q, K)\n'
               'L = sum(softmax(S, axis=-1) ** 2) + sum(einsum("bthk,hk,bthk->bh", Q, E, K) ** 2)',
               ("Q", "K", "E")),
    "embedding": ("E: [V, d]\nP: [T, d]\ntokens: [B, T] labels\nW: [d, V]\ny: [B, T] labels\n"
                  "X = take(E, tokens, axis=0) + P\n"
                  "L = softmax_cross_entropy(tanh(X) @ W, y)", ("E", "P", "W")),
    "multi-head attention": ((
        "X: [B, T, h * k]\nbq: [h, 1, k]\nWq, Wk, Wv, Wo: [h * k, h * k]\n"
        "Q = transpose(reshape(X @ Wq, [B, T, h, k]), [0, 2, 1, 3]) + bq\n"
        "K = transpose(reshape(X @ Wk, [B, T, h, k]), [0, 2, 1, 3])\n"
        "V = transpose(reshape(X @ Wv, [B, T, h, k]), [0, 2, 1, 3])\n"
        "S = where(tril(ones(T, T)) > 0.5, Q @ K.mT / sqrt(k), -1e9)\n"
        "O = reshape(transpose(softmax(S, axis=-1) @ V, [0, 2, 1, 3]), [B, T, h * k]) @ Wo\n"
        "L = sum(O * O)"), ("Wq", "Wk", "Wv", "Wo", "X", "bq")),
    "examples/attention.mc": (
        (Path(__file__).parent.parent / "examples" / "attention.mc").read_text(),
        ("Wq", "Wv", "bq", "X")),
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
    sizes = {"B": 2, "T": 3, "d": 4, "k": 2, "h": 2, "n": 3, "m": 2, "V": 5}
    outcomes = torch_outcomes(source, list(wrt), sizes)
    assert sum(o.category == "ok" for o in outcomes) >= 5, outcomes


def test_attention_prints_in_matrix_notation_per_matrix_of_the_stack() -> None:
    derivation = derive(ATTENTION, ["Wq"], steps=True)
    text = derivation.text()
    assert "δ4 = ∂L/∂Q = δ3 K / √k" in text
    assert "[B, T, k]" in text and "∂L/∂Wq = sum(Xᵀ δ4, axis=0)" in text
    assert "ᵀ transposes each matrix (NumPy's .mT)" in text


def test_a_stack_of_matrices_transposes_matrix_by_matrix() -> None:
    program = parse("X: [B, n, m]\nY = X.mT")
    assert program.function.shape == tuple(parse("Z: [B, m, n]\nZ").function.shape)
    assert verify("X: [B, n, m]; W: [B, m, n]\nf = sum(X.mT * W)\nclaim grad(f, X) = W.mT").passed


def printed(source: str, wrt: str) -> str:
    """The formula of one gradient as ``derive`` prints it."""
    line = next(line for line in derive(source, [wrt]).text().splitlines() if " = " in line)
    return line.split(" = ", 1)[1].rsplit("   [", 1)[0].strip()


def test_an_embedding_lookup_sends_its_gradient_back_by_scatter_add() -> None:
    source = PROGRAMS["embedding"][0]
    assert printed(source, "E").startswith("scatter_add(")
    code = derive(source, ["E"]).numpy()
    assert "np.add.at(" in code and "np.eye" not in code


@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
def test_the_gradient_of_one_looked_up_entry_is_its_one_hot_row(target: str) -> None:
    """f = E[y] for one label: the seed 1 is scattered as an array of E's dtype (it was a
    Python 1, which has no shape)."""
    lib = pytest.importorskip({"numpy": "numpy", "torch": "torch", "jax": "jax"}[target])
    module = lambdify("E: [V]\ny: [] labels\nf = take(E, y)", ["E"], target=target)
    E, y = np.arange(4.0, dtype=np.float32), np.int64(2)
    if target == "numpy":
        value, grads = module.value_and_grad(E, y)
        got = grads["E"]
    elif target == "torch":
        leaf = lib.tensor(E, requires_grad=True)
        value = module.f(E=leaf, y=lib.tensor(y))
        (got,) = lib.autograd.grad(value, [leaf])
    else:
        value, got = float(module.f(E, y)), lib.grad(module.f)(E, y)
    assert float(value) == 2.0
    assert np.asarray(got).dtype == np.float32
    assert np.asarray(got).tolist() == [0.0, 0.0, 1.0, 0.0]


def test_batched_weight_gradients_are_one_matrix_product() -> None:
    """Σ_b X_bᵀ δ_b is computed as (X's rows)ᵀ (δ's rows), one product, not B and a sum."""
    code = derive(ATTENTION, ["Wq", "Wv"]).numpy()
    assert code.count("_rows(X).T @ _rows(") == 2


def test_a_bias_gradient_over_a_stack_sums_over_both_leading_axes_at_once() -> None:
    """sum(sum(E, axis=0), axis=0) prints as sum(E, axis=(0, 1)), as NumPy writes it."""
    source = "X: [B, T, d]\nW: [d, k]\nb: [k]\nY: [B, T, k]\nL = sum((X @ W + b - Y) ** 2)"
    assert derive(source, ["b"]).text().startswith(
        "∂L/∂b = 2 sum(X W + b − Y, axis=(0, 1))   [k]")
    for source, axes in (("v: [a]\nf = v @ sum(sum(E, axis=2), axis=1)", "(1, 2)"),
                         ("v: [b]\nf = sum(sum(E ** 2, axis=2), axis=0) @ v", "(0, 2)")):
        text = derive("E: [a, b, c]\n" + source, ["v"]).text()
        assert text.startswith(f"∂f/∂v = sum(E{'²' if '**' in source else ''}, axis={axes})")


def test_a_size_only_in_products_derives_but_cannot_be_generated() -> None:
    source = "X: [B, h * k]\nsum(reshape(X, [B, h, k]) ** 2)"
    assert printed(source, "X") == "2 X"
    with pytest.raises(MatcalcError, match="the size [hk] appears only in products"):
        lambdify(source, ["X"])


def test_einsums_that_are_matrix_products_print_as_matrix_products() -> None:
    source = "A: [n, m]; B: [m, p]; x: [n]\n"
    assert printed(source + 'sum(einsum("ij,jk->ik", A, B) ** 2)', "A") == "2 A B Bᵀ"
    assert printed(source + 'sum(einsum("ij,i->j", A, x) ** 2)', "A") == "2 x xᵀ A"
    stacked = 'X: [B, T, d]; W: [d, k]\nsum(einsum("btd,dk->btk", X, W) ** 2)'
    assert printed(stacked, "W") == "2 sum(Xᵀ X W, axis=0)"


@pytest.mark.parametrize(("source", "wrt", "expected"), [
    ('A: [m, n]; B: [n, p]; C: [p, q]; W: [m, q]\nsum(einsum("ij,jk,kl->il", A, B, C) * W)',
     "B", "Aᵀ W Cᵀ"),
    ('A: [n, n]; B: [n, n]; v: [n]; w: [n]\nsum(einsum("ij,jk,k->i", A, B, v) * w)', "v",
     "Bᵀ Aᵀ w"),
    ('X: [b, i]; A: [i, j]; Y: [b, j]; u: [b]\nsum(einsum("bi,ij,bj->b", X, A, Y) * u)', "A",
     "Xᵀ (Y ⊙ u 𝟙ᵀ)"),
])
def test_an_einsum_of_several_operands_is_a_chain_of_products(source: str, wrt: str,
                                                              expected: str) -> None:
    """Three operands contracted two at a time where each pair is a matrix product (the pair
    keeping the fewest indices first: A (B v)), so that the gradients are the textbook's."""
    assert printed(source, wrt) == expected
    assert check_gradient(source, [wrt]).passed


@pytest.mark.parametrize(("source", "message"), [
    ("X: [B, n, m]\nsum(X.T)", "`.mT` to transpose each matrix"),
    ("x: [n]\nsum(x.mT)", "a vector or a scalar has none to swap"),
    ("X: [B, n, m]\nsum(transpose(X, [0, 1, 1]))", "not a permutation"),
    ("X: [B, n, m]\nsum(transpose(X, [1, 0]))", "2 axes given for a rank-3 array"),
    ("X: [B, n, m]\nx: [n]\nsum(X @ x)", "[B, n, m] and [n] do not align (m ≠ n)"),
    ("X: [B, n, m]\nY: [B, n, m]\nsum(X @ Y)", "do not align (m ≠ n)"),
    ("X: [B, n, m]\nsum(swapaxes(X, 0, 3))", "axis 3 is out of range"),
    ('X: [B, n, m]\nsum(einsum("ij,jk->ik", X, X))', "`ij` names 2 axes of a rank-3 operand"),
    ('X: [B, n, n]\nsum(einsum("bii->b", X))', "repeats an index within one operand"),
    ('X: [B, n, m]\nsum(einsum("bij,bij->bq", X, X))', "names `q`, which no input has"),
    ('X: [B, n, m]\nsum(einsum("bij,bji->b", X, X))', "index j is m in one operand and n"),
    ('X: [B, n, m]\nsum(einsum("bij", X, X))', "subscripts for 1 operand(s), given 2"),
    ("X: [B, n, m]\nsum(reshape(X, [B, n, n]))", "[B, n, m] has B·m·n entries, [B, n, n] has"),
])
def test_stack_mistakes_are_clear_errors(source: str, message: str) -> None:
    with pytest.raises(MatcalcError) as error:
        derive(source, ["X" if "X" in source.split("\n")[0] else "x"])
    assert message in str(error.value)


def test_an_einsum_gradient_is_also_written_entry_by_entry() -> None:
    """Where no matrix form exists, the index form states each entry with its sums."""
    source = ('Q, K: [B, T, h, k]\nE: [h, k]\nS = einsum("bthk,hk,bthk->bh", Q, E, K)\n'
              "L = sum(S ** 2)")
    derivation = derive(source, ["E", "Q"], steps=True)
    text = derivation.text()
    assert "index form: (∂L/∂E)[h,k] = Σ_{b,t} δ1[b,h] Q[b,t,h,k] K[b,t,h,k]" in text
    assert "index form: (∂L/∂Q)[b,t,h,k] = δ1[b,h] E[h,k] K[b,t,h,k]" in text
    assert "index form" not in derive("X: [B, n, m]\nW: [m, k]\nL = sum(X @ W)", ["W"]).text()
    nested = derive('Q, K: [B, T, h, k]\nE: [h, k]\nsum(einsum("bthk,hk,bthk->bh", Q, E, K) ** 2)',
                    ["E"]).text()
    assert ("(∂f/∂E)[h,k] = 2 Σ_{b,t} (Σ_{i,j} Q[b,i,h,j] E[h,j] K[b,i,h,j]) Q[b,t,h,k] "
            "K[b,t,h,k]") in nested
    latex = derive(source, ["E"]).latex()
    assert r"{\left(\frac{\partial L}{\partial E}\right)}_{hk} = 2 \sum_{b,t} {S}_{bh}" in latex
