"""``codegen --emit``: the generated value_and_jacobian, hessian, hvp and jvp, NumPy and torch,
against torch.func (jacrev, hessian, jvp) of an independent torch evaluation of the source."""

from __future__ import annotations

import numpy as np
import pytest

from matcalc import derive, lambdify, parse
from matcalc.core.engine import vector_jacobian_products
from matcalc.core.ir import make, postorder, var
from matcalc.core.simplify import reduce_sum
from matcalc.errors import MatcalcError
from matcalc.forms.codegen import numpy_block
from matcalc.forms.derivation import differentials, with_leaves
from matcalc.forms.generated import generate
from matcalc.proofs.evaluation import compile_block, evaluator
from matcalc.proofs.inputs import random_inputs

torch = pytest.importorskip("torch")
from matcalc.proofs.torch_reference import torch_function  # noqa: E402 - needs torch

EVERYTHING = ("grad", "jacobian", "hessian", "hvp", "jvp")
SCALAR = {
    "logistic regression": ("X: [N, D]; y: [N]; w: [D]; lam: []\np = sigmoid(X @ w)\n"
                            "L = -mean(y * log(p) + (1 - y) * log(1 - p)) + lam / 2 * sum(w ** 2)",
                            ["w"]),
    "two-layer net": ("X: [N, D]; W1: [D, H]; b1: [H]; W2: [H, C]; Y: [N, C] onehot\n"
                      "Z1 = X @ W1 + b1\nH1 = tanh(Z1)\nL = softmax_cross_entropy(H1 @ W2, Y)",
                      ["W1", "b1", "W2"]),
    "quadratic form in a matrix": ("X: [n, m]; A: [n, n]\nf = trace(X.T @ A @ X) + sum(X ** 3)",
                                   ["X"]),
    "scalar parameter": ("x: [n]; s: []\nf = sum(exp(s * x)) + s ** 2", ["s", "x"]),
}
VECTOR = {
    "tanh layer": ("x: [n]; W: [m, n]; b: [m]\ny = tanh(W @ x + b)", ["x", "W"]),
    "softmax": ("z: [n]\np = softmax(z)", ["z"]),
    "matrix function": ("X: [n, m]; A: [m, m]\nY = X @ A @ X.T", ["X"]),
}


def inputs(source: str, seed: int) -> dict[str, np.ndarray]:
    program = parse(source)
    rng = np.random.default_rng(seed)
    sizes = {d: int(rng.integers(2, 5)) for d in program.dims}
    return random_inputs(program, sizes, rng)


def tensors(arrays: dict[str, np.ndarray]) -> dict[str, object]:
    return {k: torch.as_tensor(np.asarray(v)) for k, v in arrays.items()}


def vec_matrix(j: torch.Tensor, out_rank: int) -> np.ndarray:
    """A Jacobian ∂f/∂x of any ranks as torch.func lays it out, as ∂vec(f)/∂vec(x): vec stacks
    columns, so each part's axes are reversed before flattening."""
    j = j.detach()
    out_axes = list(range(out_rank))[::-1]
    in_axes = list(range(out_rank, j.dim()))[::-1]
    rows = int(np.prod(j.shape[:out_rank]))
    return j.permute(*out_axes, *in_axes).reshape(rows, -1).numpy()


def reference(source: str, wrt: list[str], arrays: dict[str, np.ndarray]):
    """The value as a torch function of the ``wrt`` tensors, the rest fixed."""
    f = torch_function(parse(source), own_nodes=False)
    fixed = tensors(arrays)

    def of(*xs):
        return f(**{**fixed, **dict(zip(wrt, xs, strict=True))})

    return of, [fixed[w] for w in wrt]


@pytest.mark.parametrize("target", ["numpy", "torch"])
@pytest.mark.parametrize("name", SCALAR)
def test_hessian_hvp_and_jvp_of_a_scalar_function_match_torch_func(name: str, target: str) -> None:
    source, wrt = SCALAR[name]
    arrays = inputs(source, 1)
    module = lambdify(source, wrt, target=target, emit=EVERYTHING)
    given = arrays if target == "numpy" else tensors(arrays)
    f, xs = reference(source, wrt, arrays)
    rng = np.random.default_rng(2)
    directions = {w: rng.normal(size=np.shape(arrays[w])) for w in wrt}
    ts = [torch.as_tensor(directions[w]) for w in wrt]

    hessians = module.hessian(**given)
    for i, w in enumerate(wrt):
        want = torch.func.hessian(f, argnums=i)(*xs)
        rank = xs[i].dim()
        got = np.asarray(hessians[w])
        expected = want.numpy() if rank <= 1 else vec_matrix(want, rank)
        np.testing.assert_allclose(got, expected.reshape(got.shape), rtol=1e-9, atol=1e-9)

    v = (directions[wrt[0]] if len(wrt) == 1 else directions)
    v = v if target == "numpy" else (torch.as_tensor(v) if len(wrt) == 1 else tensors(v))
    products = module.hvp(**given, v=v)
    grad = torch.func.grad(f, argnums=tuple(range(len(wrt))))
    _, want = torch.func.jvp(lambda *x: grad(*x), tuple(xs), tuple(ts))
    for w, expected in zip(wrt, want, strict=True):
        np.testing.assert_allclose(np.asarray(products[w]), expected.numpy(), rtol=1e-9,
                                   atol=1e-9)

    value, tangent = module.jvp(**given, tangents=directions if target == "numpy"
                                else tensors(directions))
    want_value, want_tangent = torch.func.jvp(f, tuple(xs), tuple(ts))
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-12)
    np.testing.assert_allclose(float(tangent), float(want_tangent), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("target", ["numpy", "torch"])
@pytest.mark.parametrize("name", VECTOR)
def test_jacobian_and_jvp_of_a_vector_function_match_torch_func(name: str, target: str) -> None:
    source, wrt = VECTOR[name]
    arrays = inputs(source, 3)
    module = lambdify(source, wrt, target=target, emit=("jacobian", "jvp"))
    given = arrays if target == "numpy" else tensors(arrays)
    f, xs = reference(source, wrt, arrays)
    value, jacobians = module.value_and_jacobian(**given)
    np.testing.assert_allclose(np.asarray(value), f(*xs).numpy(), rtol=1e-12)
    out_rank = f(*xs).dim()
    for i, w in enumerate(wrt):
        want = torch.func.jacrev(f, argnums=i)(*xs)
        got = np.asarray(jacobians[w])
        expected = (want.numpy() if out_rank <= 1 and xs[i].dim() <= 1
                    else vec_matrix(want, out_rank))
        np.testing.assert_allclose(got, expected.reshape(got.shape), rtol=1e-9, atol=1e-9)
    rng = np.random.default_rng(4)
    directions = {w: rng.normal(size=np.shape(arrays[w])) for w in wrt}
    _, tangent = module.jvp(**given, tangents=directions if target == "numpy"
                            else tensors(directions))
    _, want = torch.func.jvp(f, tuple(xs), tuple(torch.as_tensor(directions[w]) for w in wrt))
    np.testing.assert_allclose(np.asarray(tangent), want.numpy(), rtol=1e-9, atol=1e-12)


def test_a_tangent_left_out_is_zero_and_a_misnamed_one_is_refused() -> None:
    source, wrt = SCALAR["scalar parameter"]
    arrays = inputs(source, 5)
    module = lambdify(source, wrt, emit=("jvp", "hvp"))
    _, grads = lambdify(source, wrt).value_and_grad(**arrays)
    t = np.ones_like(arrays["x"])
    _, tangent = module.jvp(**arrays, tangents={"x": t})
    assert np.isclose(tangent, grads["x"] @ t)
    with pytest.raises(ValueError, match="'X' is not one of s, x"):
        module.jvp(**arrays, tangents={"X": t})
    with pytest.raises(ValueError, match="'x' is missing"):
        module.hvp(**arrays, v={"s": np.float64(1.0)})
    with pytest.raises(ValueError, match=r"v\['x'\]: expected the shape of x"):
        module.hvp(**arrays, v={"s": np.float64(1.0), "x": np.ones(7)})
    alone = lambdify(source, ["x"], emit=("hvp",))
    with pytest.raises(ValueError, match=r"v\['x'\] \(or v\): expected the shape of x"):
        alone.hvp(**arrays, v=np.ones(7))


def test_second_derivatives_need_a_scalar_function_and_emit_names_what_it_knows() -> None:
    with pytest.raises(MatcalcError, match="needs a scalar function"):
        generate(VECTOR["softmax"][0], ["z"], emit=("hessian",))
    with pytest.raises(MatcalcError, match="--emit hesian.*Did you mean `hessian`"):
        generate(VECTOR["softmax"][0], ["z"], emit=("hesian",))
    with pytest.raises(MatcalcError, match="S is symmetric.*--emit hvp gives H V for a "
                       "symmetric V, and --emit hessian with --wrt x alone"):
        generate("x: [n]; S: [n, n] symmetric; f = x @ S @ x", ["x", "S"], emit=("hessian",))


def test_the_hessian_is_one_symmetric_rank_k_update_without_a_diagonal_matrix() -> None:
    text = generate(SCALAR["logistic regression"][0], ["w"], emit=("hessian", "hvp"))
    hessian = text.split("def hessian(")[1].split("def hvp(")[0]
    assert "np.diag" not in hessian and "_gram(X, p * (1 - p) / N, lam)" in hessian


def test_the_weighted_gram_operation_and_its_rules_against_finite_differences() -> None:
    """Xᵀ diag(d) X + s I (what NumPy code computes by syrk) equals the product, and its three
    vector-Jacobian rules equal central finite differences of ⟨G, Xᵀ diag(d) X + s I⟩."""
    program = parse("X: [N, D]; d: [N]; s: []; G: [D, D]\nsum(G * (X.T @ X))")
    x, d, s, g = (program.variables[n] for n in ("X", "d", "s", "G"))
    gram = make("weighted_gram", (x, d, s))
    f = reduce_sum(g * gram)
    adjoints, _ = vector_jacobian_products(f, [x, d, s])
    run = evaluator(program, [("gram", gram), ("f", f), *((n, adjoints[v]) for n, v in
                                                         (("X", x), ("d", d), ("s", s)))])
    rng = np.random.default_rng(7)
    arrays = {"X": rng.normal(size=(5, 3)), "d": rng.normal(size=5), "s": np.float64(0.7),
              "G": rng.normal(size=(3, 3))}
    got = run(**arrays)
    np.testing.assert_allclose(got[0], arrays["X"].T @ (arrays["d"][:, None] * arrays["X"])
                               + 0.7 * np.eye(3), rtol=1e-12)
    for position, name in enumerate(("X", "d", "s"), start=2):
        numeric = np.zeros(np.shape(arrays[name]))
        for index in np.ndindex(numeric.shape):
            shifted = []
            for step in (1e-6, -1e-6):
                moved = {**arrays, name: np.array(arrays[name], dtype=float)}
                moved[name][index] += step
                shifted.append(run(**moved)[1])
            numeric[index] = (shifted[0] - shifted[1]) / 2e-6
        np.testing.assert_allclose(got[position], numeric, rtol=1e-6, atol=1e-8)
    nonnegative = {**arrays, "d": np.abs(arrays["d"])}        # the syrk path
    np.testing.assert_allclose(run(**nonnegative)[0], arrays["X"].T @ (
        nonnegative["d"][:, None] * arrays["X"]) + 0.7 * np.eye(3), rtol=1e-12)
    # (its entrywise expansion is checked against the code in test_verify's table)


def test_differentials_read_as_the_textbook_writes_them() -> None:
    text = derive(open("examples/mlp.mc").read(), ["W1", "b1", "W2", "b2"],
                  differential=True).text()
    assert "dZ1 = X dW1 + 𝟙 db1ᵀ" in text and "dH1 = dZ1 ⊙ 1[Z1 > 0]" in text
    assert "dZ2 = H1 dW2 + dH1 W2 + 𝟙 db2ᵀ" in text
    assert "dL = tr((softmax(Z2) − Y)ᵀ dZ2) / N" in text
    assert "df = tr(X⁻¹ dX)" in derive("X: [n, n]; f = logdet(X)", ["X"], differential=True).text()
    stacked = derive("X: [B, T, d]; W: [d, k]\nZ = tanh(X @ W)\nf = sum(Z)", ["W"],
                     differential=True).text()
    assert "dZ = (1 − tanh(X W)²) ⊙ (X dW)" in stacked      # not X broadcast(dW[None, :, :], …)
    inverse = derive("x: []; Y0: [n, n]; Y1: [n, n]; a: [n]\nS = Y0 + x * Y1\nf = a @ inv(S) @ a",
                     ["x"], differential=True).text()
    assert "dS = dx Y1" in inverse


def evaluate(expr, values: dict[str, np.ndarray]) -> np.ndarray:
    """``expr`` computed by generated NumPy code from the arrays its variables name."""
    leaves = sorted({v for v in postorder([expr]) if v.op == "var"}, key=lambda v: v.attrs.name)
    block = numpy_block([("out*", expr)], leaves)
    run = compile_block(block, [v.attrs.name for v in leaves], block.outputs)
    return np.asarray(run(**{v.attrs.name: values[v.attrs.name] for v in leaves})[0])


@pytest.mark.parametrize("source, wrt", [
    (open("examples/mlp.mc").read(), ["X", "W1", "b1", "W2"]),
    ("x: []; Y0: [n, n]; Y1: [n, n]\nS = Y0 + x * Y1 + x ** 2 * eye(n)\nf = inv(S)", ["x", "Y1"]),
    ("X: [n, m]; w: [m]\nr = tanh(X @ w)\nq = r * r\nf = sum(q) + q @ r", ["X", "w"]),
])
def test_each_differential_is_its_intermediates_directional_derivative(source, wrt) -> None:
    """d(name), with random directions for the differentials of what it reads, equals central
    finite differences of the intermediate's definition along them."""
    program = parse(source)
    values: dict[str, np.ndarray] = dict(inputs(source, 9))
    rng = np.random.default_rng(10)
    for name, node, d in differentials(program, wrt):
        definition = node.args[0] if node.op == "named" else node
        reads = {a: var(a.attrs.name, a.shape) for a in postorder(
            [definition], stop=lambda n: n.op == "named") if a.op == "named"}
        plain = with_leaves(definition, reads)
        moved = {v.attrs.name[1:] for v in postorder([d]) if v.op == "var"
                 and v.attrs.name.startswith("d") and v.attrs.name[1:] in values}
        directions = {f"d{n}": rng.normal(size=np.shape(values[n])) for n in moved}
        got = evaluate(d, {**values, **directions})

        def at(step: float, plain=plain, directions=directions, moved=moved) -> np.ndarray:
            return evaluate(plain, {n: values[n] + step * directions[f"d{n}"] if n in moved
                                    else values[n] for n in values})

        numeric = (at(1e-6) - at(-1e-6)) / 2e-6
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8)
        values[name] = at(0.0)
