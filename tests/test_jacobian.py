"""Jacobians (both layouts), Hessians and Hessian-vector products: matrix form and numbers."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from matcalc import hessian, jacobian
from matcalc.cli import cli
from matcalc.core.rules import callable_elementwise
from matcalc.proofs.evaluation import evaluator, function_value
from matcalc.proofs.finite_differences import numeric_jacobian
from matcalc.proofs.inputs import smooth_inputs

SIZES = [{"n": 3, "m": 4, "N": 5, "D": 3}, {"n": 5, "m": 2, "N": 3, "D": 4}]


def text_of(result) -> str:
    (line,) = [ln for ln in result.text().splitlines()
               if not ln.startswith(("note", "index form"))]
    return line.split(" = ", 1)[1].rsplit("   [", 1)[0]


def evaluate(result, arrays) -> list[np.ndarray]:
    return list(evaluator(result.program, [(g.wrt, g.expr) for g in result.gradients])(**arrays))


def hessian_and_differences(source: str, wrt: str, sizes: dict, seed: int):
    """The derived Hessian at random inputs, an independent one there (torch.autograd on the
    program's source text, see matcalc.proofs.torch_reference), and the inputs."""
    torch = pytest.importorskip("torch")
    from matcalc.proofs.torch_reference import torch_function

    result = hessian(source, wrt)
    arrays = smooth_inputs(result.program, sizes, np.random.default_rng(seed))
    (h,) = evaluate(result, arrays)
    f = torch_function(result.program)
    tensors = {k: torch.tensor(v) for k, v in arrays.items()}

    def of(x):
        return f(**{**tensors, wrt: x})

    reference = torch.autograd.functional.hessian(of, tensors[wrt]).numpy()
    return h, reference, arrays


JACOBIANS = [
    ("x: [n]; W: [m, n]; W @ x", ["x"], "W"),
    ("z: [n]; relu(z)", ["z"], "diag(1[z > 0])"),
    ("t: [n]; softmax(t)", ["t"], "diag(softmax(t)) − softmax(t) softmax(t)ᵀ"),
    ("x: [n]; W: [m, n]; b: [m]; tanh(W @ x + b)", ["x"], "diag(1 − tanh(W x + b)²) W"),
    ("x: [n]; W: [m, n]; b: [m]; tanh(W @ x + b)", ["b"], "diag(1 − tanh(W x + b)²)"),
    ("x: [n]; s: []; s * x", ["x"], "s I"),
    ("x: [n]; s: []; exp(s) * x", ["s"], "x exp(s)"),
    ("x: [n]; a: [n]; x * (a @ x)", ["x"], "(aᵀ x) I + x aᵀ"),
    ("x: [n]; x / norm(x)", ["x"], None),
    ("x: [n]; A: [m, n]; log_softmax(A @ x)", ["x"], None),
    ("x: [n]; sum(x) * x + sigmoid(x)", ["x"], None),
    ("A: [n, n]; b: [n]; solve(A, b)", ["b"], "A⁻¹"),          # a solve against I, not (A⁻ᵀ I)ᵀ
]


@pytest.mark.parametrize(("source", "wrt", "expected"), JACOBIANS, ids=[j[0] for j in JACOBIANS])
def test_jacobians_in_matrix_form_agree_with_finite_differences(source, wrt, expected) -> None:
    numerator = jacobian(source, wrt)
    denominator = jacobian(source, wrt, layout="denominator")
    if expected is not None:
        assert text_of(numerator) == expected
    for sizes in SIZES:
        arrays = smooth_inputs(numerator.program, sizes, np.random.default_rng(0))
        (num,) = evaluate(numerator, arrays)
        (den,) = evaluate(denominator, arrays)
        fd = numeric_jacobian(function_value(numerator.program), dict(arrays), wrt[0])
        np.testing.assert_allclose(num, fd, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(den, fd.T, rtol=1e-6, atol=1e-7)


def test_numerator_layout_of_a_scalar_function_is_the_row_gradient() -> None:
    result = jacobian("x: [n]; A: [n, n]; x @ A @ x", ["x"])
    assert text_of(result) == "((A + Aᵀ) x)ᵀ"
    assert result.gradients[0].shape[0] == 1


HESSIANS = [
    ("x: [n]; A: [n, n]; x @ A @ x", "x", "A + Aᵀ"),
    ("x: [n]; sum(exp(x))", "x", "diag(exp(x))"),
    ("t: [n]; y: [n] probabilities; softmax_cross_entropy(t, y)", "t",
     "diag(softmax(t)) − softmax(t) softmax(t)ᵀ"),
    ("X: [N, D]; w: [D]; y: [N]; lam: []; mean(softplus(-y * (X @ w))) + lam / 2 * norm(w) ** 2",
     "w", "Xᵀ diag(y² ⊙ sigmoid(y ⊙ (X w)) ⊙ (1 − sigmoid(y ⊙ (X w)))) X / N + lam I"),
    ("A: [m, n]; b: [m]; x: [n]; norm(A @ x - b) ** 2", "x", "2 Aᵀ A"),
    ("s: []; x: [n]; sum(exp(s * x))", "s", "sum(exp(s x) ⊙ x²)"),
    ("x: [n]; logsumexp(x) + norm(x)", "x", None),
]


@pytest.mark.parametrize(("source", "wrt", "expected"), HESSIANS, ids=[h[0][:40] for h in HESSIANS])
def test_hessians_and_hvps_agree_with_finite_differences(source, wrt, expected) -> None:
    if expected is not None:
        assert text_of(hessian(source, wrt)) == expected
    product = hessian(source, wrt, direction="v")
    for sizes in SIZES:
        h, fd, arrays = hessian_and_differences(source, wrt, sizes, seed=1)
        np.testing.assert_allclose(h, fd, rtol=1e-6, atol=1e-7)
        v = np.random.default_rng(2).normal(size=np.shape(arrays[wrt]))
        (hv,) = evaluate(product, {**arrays, "v": v})
        np.testing.assert_allclose(hv, np.tensordot(h, v, axes=np.ndim(v)), rtol=1e-9,
                                   atol=1e-9)


def test_hvp_with_respect_to_a_matrix_stays_in_matrix_form() -> None:
    result = hessian("X: [n, m]; A: [k, n]; norm(A @ X) ** 2", "X", direction="V")
    assert text_of(result) == "2 Aᵀ A V"


@pytest.mark.parametrize(("source", "wrt", "expected", "index"), [
    ("X: [n, m]; A: [k, n]; norm(A @ X) ** 2", "X", "2 (I_m ⊗ (Aᵀ A))", "2 (Aᵀ A)ᵢₖ δⱼₗ"),
    ("W: [n, m]; x: [m]; sum(tanh(W @ x))", "W", None, None),
    ("u: [n, 1]; A: [n, n]; sum(u.T @ A @ u)", "u", "A + Aᵀ", None),
])
def test_hessians_with_respect_to_matrices_in_kronecker_form(source, wrt, expected, index
                                                              ) -> None:
    result = hessian(source, wrt)
    (g,) = result.gradients
    if expected is not None:
        assert text_of(result) == expected
    if index is not None:
        assert g.index.endswith(" = " + index)
    sizes = {"n": 3, "m": 2, "k": 4}
    gradient = jacobian(source, [wrt], layout="denominator")
    grad = evaluator(gradient.program, [("g", gradient.gradients[0].expr)])
    arrays = smooth_inputs(result.program, sizes, np.random.default_rng(0))
    (h,) = evaluate(result, arrays)
    x = arrays[wrt]
    columns = []
    for k in range(x.size):          # column k: the gradient's change along vec(X)ₖ
        step = np.zeros(x.size)
        step[k] = 1e-6
        step = step.reshape(x.shape, order="F")
        up = grad(**{**arrays, wrt: x + step})[0]
        down = grad(**{**arrays, wrt: x - step})[0]
        columns.append(((up - down) / 2e-6).reshape(-1, order="F"))
    np.testing.assert_allclose(h, np.stack(columns, axis=1), rtol=1e-6, atol=1e-7)


KRONECKER = [
    ("A: [m, n]; X: [n, p]; B: [p, q]; A @ X @ B", "X", "Bᵀ ⊗ A", "Aᵢₖ Bₗⱼ"),
    ("X: [n, p]; X.T", "X", "K_(n,p)", "δᵢₗ δⱼₖ"),
    ("X: [n, n]; X @ X", "X", "I_n ⊗ X + Xᵀ ⊗ I_n", "Xᵢₖ δⱼₗ + δᵢₖ Xₗⱼ"),
    ("X: [n, n]; inv(X)", "X", "−(X⁻ᵀ ⊗ X⁻¹)", "−(X⁻¹)ᵢₖ (X⁻¹)ₗⱼ"),
    ("X: [n, p]; C: [n, p]; C * X", "X", "diag(vec(C))", None),
    ("W: [m, n]; x: [n]; W @ x", "W", "xᵀ ⊗ I_m", None),
    ("X: [N, D]; W: [D, H]; b: [H]; relu(X @ W + b)", "W", None, None),
    ("X: [N, D]; W: [D, H]; b: [H]; tanh(X @ W + b)", "b", None, None),
    ("X: [n, p]; A: [m, n]; softmax(A @ X, axis=0)", "X", None, None),
]


@pytest.mark.parametrize(("source", "wrt", "expected", "index"), KRONECKER,
                         ids=[k[0][:40] for k in KRONECKER])
def test_matrix_jacobians_in_kronecker_and_index_form(source, wrt, expected, index) -> None:
    result = jacobian(source, [wrt])
    (g,) = result.gradients
    if expected is not None:
        assert text_of(result) == expected
    if index is not None:
        assert g.index.split(" = ", 1)[1] == index
    for sizes in ({"n": 3, "m": 2, "p": 2, "q": 4, "N": 2, "D": 3, "H": 2},
                  {"n": 2, "m": 3, "p": 4, "q": 2, "N": 3, "D": 2, "H": 3}):
        arrays = smooth_inputs(result.program, sizes, np.random.default_rng(3))
        (jac,) = evaluate(result, arrays)
        fd = numeric_jacobian(function_value(result.program), dict(arrays), wrt)
        f_size = int(np.prod(fd.shape[:fd.ndim - np.ndim(arrays[wrt])]))
        # vec stacks columns: reorder the finite differences to (vec f, vec X)
        f_axes = fd.ndim - np.ndim(arrays[wrt])
        fd = fd.transpose([*reversed(range(f_axes)), *reversed(range(f_axes, fd.ndim))])
        np.testing.assert_allclose(jac, fd.reshape(f_size, -1), rtol=1e-6, atol=1e-7)


def test_jacobians_through_diag_use_the_diagonal_embedding() -> None:
    assert text_of(jacobian("a: [n]; diag(a)", ["a"])) == "E_n"
    assert text_of(jacobian("X: [n, n]; diag(X)", ["X"])) == "E_nᵀ"
    result = jacobian("X: [n, n]; exp(diag(X))", ["X"])
    assert text_of(result) == "diag(exp(diag(X))) E_nᵀ"
    arrays = smooth_inputs(result.program, {"n": 3}, np.random.default_rng(0))
    (got,) = evaluate(result, arrays)
    fd = numeric_jacobian(function_value(result.program), dict(arrays), "X")
    np.testing.assert_allclose(got, fd.transpose(0, 2, 1).reshape(3, 9), atol=1e-7)


def test_generated_hessian_code_is_a_rank_k_update_instead_of_forming_diag() -> None:
    code = hessian(HESSIANS[3][0], "w").numpy()
    assert "np.diag" not in code and "_gram(X, " in code and "syrk" in code


def test_cli_jacobian_and_hessian() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["derive", "x: [n]; W: [m, n]; W @ x", "--wrt", "x",
                                 "--layout", "denominator"])
    assert result.exit_code == 0 and "∂f/∂x = Wᵀ   [n, m]" in result.output
    result = runner.invoke(cli, ["hessian", "x: [n]; A: [n, n]; x @ A @ x", "--wrt", "x"])
    assert result.exit_code == 0 and "∂²f/∂x² = A + Aᵀ   [n, n]" in result.output
    result = runner.invoke(cli, ["derive", "x: [n]; exp(x)", "--wrt", "x", "--steps"])
    assert result.exit_code == 2 and "Traceback" not in result.output


REVIEWED = [  # found by review: Jacobians through outer products and length-1 broadcasts
    ("x: [n]; b: [n]; c: [n]; outer(x, b) @ c", "x"),
    ("a: [n]; sum(outer(a, a), axis=0)", "a"),
    ("x: [n]; outer(x, x) @ x", "x"),
    ("x: [n]; sum(x) * x", "x"),
]


@pytest.mark.parametrize(("source", "wrt"), REVIEWED, ids=[r[0] for r in REVIEWED])
def test_jacobians_through_matrix_intermediates(source: str, wrt: str) -> None:
    for layout in ("numerator", "denominator"):
        result = jacobian(source, [wrt], layout=layout)
        arrays = smooth_inputs(result.program, {"n": 4}, np.random.default_rng(0))
        (got,) = evaluate(result, arrays)
        fd = numeric_jacobian(function_value(result.program), dict(arrays), wrt)
        np.testing.assert_allclose(got, fd if layout == "numerator" else fd.T, atol=1e-6)


def test_sum_times_vector_prints_its_broadcast() -> None:
    assert text_of(jacobian("x: [n]; sum(x) * x", ["x"])) == "I sum(x) + x 𝟙ᵀ"


@pytest.mark.parametrize("source", ["x: [n]; outer(x, x) @ x @ x",
                                    "x: [n]; sum(log_softmax(x) * x)"])
def test_hessians_through_matrix_intermediates_and_length_one_sums(source: str) -> None:
    h, fd, _ = hessian_and_differences(source, "x", {"n": 4}, seed=0)
    np.testing.assert_allclose(h, fd, atol=1e-6)
    np.testing.assert_allclose(h, h.T, atol=1e-9)


def test_hvp_for_a_symmetric_variable_stays_symmetric() -> None:
    result = hessian("S: [n, n] symmetric; A: [n, n]; x: [n]; x @ S @ A @ S @ x", "S",
                     direction="V")
    arrays = smooth_inputs(result.program, {"n": 3}, np.random.default_rng(0))
    v = np.random.default_rng(1).normal(size=(3, 3))
    (hv,) = evaluate(result, {**arrays, "V": v + v.T})
    np.testing.assert_allclose(hv, hv.T, atol=1e-12)
    torch = pytest.importorskip("torch")          # its value: sym(H sym(V)) by double backward
    tensors = {k: torch.tensor(a, requires_grad=k == "S") for k, a in arrays.items()}
    S, A, x = tensors["S"], tensors["A"], tensors["x"]
    (g,) = torch.autograd.grad(x @ S @ A @ S @ x, S, create_graph=True)
    (h,) = torch.autograd.grad(g, S, torch.tensor(v + v.T))
    np.testing.assert_allclose(hv, (h.numpy() + h.numpy().T) / 2, rtol=1e-10, atol=1e-12)


SECOND_ORDER = [*callable_elementwise(), "leaky_relu"]


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_second_derivatives_of_every_elementwise_function(name: str) -> None:
    """The Hessian differentiates what the first rules emit (step, sign, Φ, φ, erf …) again."""
    source = f"x: [n]; c: [n]; sum(c * {name}(x * x + 1))"
    h, fd, _ = hessian_and_differences(source, "x", {"n": 3}, seed=0)
    np.testing.assert_allclose(h, fd, rtol=1e-6, atol=1e-6)


INDEXED = [
    "A: [m, n]; X: [n, p]; B: [p, q]; A @ X @ B",
    "X: [n, p]; X.T",
    "X: [n, n]; X @ X",
    "X: [n, n]; inv(X)",
    "X: [n, p]; W: [p, q]; b: [q]; relu(X @ W + b)",
    "X: [n, p]; C: [n, p]; C * X",
    "X: [n, n]; exp(diag(X))",
    "X: [n, p]; A: [m, n]; tanh(A @ X).T",
]


@pytest.mark.parametrize("source", INDEXED)
def test_index_forms_equal_the_kronecker_forms_entry_by_entry(source: str) -> None:
    """Evaluate the index form's terms with einsum and compare with the vec-form Jacobian."""
    from matcalc.forms.index_form import IndexExpander, dims, eliminate

    wrt = "W" if "W:" in source else "X"
    result = jacobian(source, [wrt])
    (g,) = result.gradients
    assert g.index, "an index form is printed"
    program, f = result.program, result.program.function
    x = program.variables[wrt]
    rows, cols = ("i", "j")[:len(dims(f.shape))], ("k", "l")[:len(dims(x.shape))]
    terms = [eliminate(t) for t in IndexExpander()(g.expr, rows, cols)]
    sizes = {"n": 3, "m": 2, "p": 4, "q": 2}
    arrays = smooth_inputs(program, sizes, np.random.default_rng(0))
    (jac,) = evaluate(result, arrays)
    nodes = [factor[1] for t in terms for factor in t.factors if factor[0] == "A"]
    values = evaluator(program, [(f"v{i}", node) for i, node in enumerate(nodes)])(
        **arrays) if nodes else ()
    value_of = {id(node): np.asarray(v) for node, v in zip(nodes, values, strict=True)}
    size_of: dict[str, int] = {}
    for t in terms:
        for factor in t.factors:
            if factor[0] == "A":
                for index, n in zip(factor[2], value_of[id(factor[1])].shape, strict=True):
                    size_of[index] = n
    f_shape = tuple(np.shape(function_value(program)(**arrays)))
    x_shape = tuple(np.shape(arrays[wrt]))
    for index, n in zip(rows + cols, [d for d in f_shape + x_shape if d != 1], strict=True):
        size_of.setdefault(index, n)
    total = np.zeros([size_of[i] for i in rows + cols])
    for t in terms:
        operands, scripts = [], []
        for factor in t.factors:
            if factor[0] == "δ":
                operands.append(np.eye(size_of[factor[1]]))
                scripts.append(factor[1] + factor[2])
            else:
                operands.append(value_of[id(factor[1])])
                scripts.append("".join(factor[2]))
        spec = ",".join(scripts) + "->" + "".join(rows + cols)
        part = np.einsum(spec, *operands) if operands else np.ones(total.shape)
        total += float(t.coefficient) * part
    # J[(i + a j), (k + n l)]: column-major vec on both sides
    expected = jac.reshape([size_of[i] for i in reversed(rows)] + [size_of[c] for c in
                           reversed(cols)]).transpose(
        [*reversed(range(len(rows))), *(len(rows) + k for k in reversed(range(len(cols))))])
    np.testing.assert_allclose(total, expected, atol=1e-12)


def test_a_diagonal_plus_a_new_matrix_adds_to_the_diagonal_in_place() -> None:
    """diag(p) − p pᵀ, the softmax's Jacobian, writes one n×n array, not three; a matrix that
    is a name (an input) is never changed in place."""
    from matcalc import generate, lambdify
    softmax = "z: [n]\np = softmax(z)"
    code = generate(softmax, ["z"], emit=("jacobian",))
    assert "_plus_diagonal(-np.outer(p, p), p)" in code and "np.diag" not in code
    z = np.random.default_rng(0).normal(size=6)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    _, jac = lambdify(softmax, ["z"], emit=("jacobian",)).value_and_jacobian(z=z)
    np.testing.assert_allclose(jac["z"], np.diag(p) - np.outer(p, p), rtol=1e-14, atol=1e-16)
    source = "A: [n, n]; x: [n]\nF = A + diag(x)"
    a, x = np.ones((3, 3)), np.arange(3.0)
    value = lambdify(source, ["x"], emit=("jacobian",)).value(A=a, x=x)
    np.testing.assert_array_equal(value, np.ones((3, 3)) + np.diag(x))
    np.testing.assert_array_equal(a, np.ones((3, 3)))
