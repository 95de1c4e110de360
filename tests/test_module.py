"""Generated modules: every operation agrees with the engine and finite differences, compiles,
passes ruff, keeps float32, survives extreme logits and rejects wrong shapes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import mpmath
import numpy as np
import pytest
from test_functions_fd import CASES, SIZES, variables

from matcalc import derive, lambdify, parse
from matcalc.forms.generated import TARGETS, generate
from matcalc.language.sizes import sizes_only_in_products
from matcalc.proofs.evaluation import evaluator
from matcalc.proofs.inputs import smooth_inputs
from matcalc.proofs.testing import check_gradient

EXAMPLES = Path(__file__).parent.parent / "examples"
MLP = (EXAMPLES / "mlp.mc").read_text()
MLP_WRT = ["W1", "b1", "W2", "b2"]
PARAMS = [pytest.param(source, sizes, id=f"{name}-{'ab'[i]}")
          for name, source in CASES.items() for i, sizes in enumerate(SIZES[:1])]


def wrt_all(source: str) -> list[str]:
    """Every variable with a gradient (integer labels have none)."""
    return variables(source)


def mlp_inputs(n=6, d=5, h=4, c=3, dtype=np.float64, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {"X": rng.normal(size=(n, d)), "Y": np.eye(c)[rng.integers(0, c, n)],
              "W1": rng.normal(size=(d, h)), "b1": rng.normal(size=h),
              "W2": rng.normal(size=(h, c)), "b2": rng.normal(size=c)}
    return {k: v.astype(dtype) for k, v in arrays.items()}


@pytest.mark.parametrize(("source", "sizes"), PARAMS)
def test_generated_module_agrees_with_engine_and_finite_differences(source, sizes) -> None:
    wrt = wrt_all(source)
    program = parse(source)
    module = lambdify(source, wrt)
    derivation = derive(source, wrt)
    engine = evaluator(program, [(g.wrt, g.expr) for g in derivation.gradients])
    arrays = smooth_inputs(program, {k: v for k, v in sizes.items() if k in program.dims},
                           np.random.default_rng(1))
    value, grads = module.value_and_grad(**arrays)
    assert np.isclose(value, module.value(**arrays))
    for name, expected in zip(wrt, engine(**arrays), strict=True):
        np.testing.assert_allclose(grads[name], expected, rtol=1e-9, atol=1e-12)
        assert np.shape(grads[name]) == np.shape(arrays[name])
    sizes = {k: v for k, v in sizes.items() if k in program.dims}
    assert check_gradient(source, wrt, dims=sizes, draws=1).passed


def test_every_generated_module_passes_ruff(tmp_path: Path) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    for i, source in enumerate(CASES.values()):
        for target in ("numpy", "torch"):
            (tmp_path / f"case{i}_{target}.py").write_text(generate(source, wrt_all(source),
                                                                     target))
    for example in EXAMPLES.glob("*.mc"):
        text = example.read_text()
        hidden = dict.fromkeys(sizes_only_in_products(parse(text))[:1], 2)   # h of [B, T, h * k]
        for target in TARGETS:        # wide programs too: the transformer's 31 arguments
            (tmp_path / f"{example.stem}_{target}.py").write_text(
                generate(text, wrt_all(text), target, sizes=hidden))
    result = subprocess.run([ruff, "check", "--isolated", "--line-length", "100", "--select",
                             "E,F,W,I,B,UP", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_mlp_module_reads_like_backprop() -> None:
    text = generate(MLP, MLP_WRT)
    body = text.split("def value_and_grad")[1]
    for line in ("Z1 = X @ W1 + b1", "H1 = np.maximum(Z1, 0)",
                 "# δ2 = ∂L/∂H1\n    dH1 = dZ2 @ W2.T", "dW1 = X.T @ dZ1",
                 "db1 = dZ1.sum(axis=0)", "dW2 = H1.T @ dZ2"):
        assert line in body
    assert body.count("X @ W1") == 1 and body.count("_log_softmax(") == 1
    for waste in ("np.eye", "np.ones", "np.outer", "einsum", "np.zeros"):
        assert waste not in body
    assert text.count("np.ones(") == 1      # row sums by BLAS: a vector of the rows' length,
    assert "np.dot(y, _ones(y.shape[-1], y.dtype))" in text         # made once for each size
    assert "x @ _ones(x.shape[-1], x.dtype, keepdims)" in text
    assert "δ3 = ∂L/∂Z1" in text.split('"""')[1]


def test_the_docstring_wraps_a_long_step_without_breaking_a_shape() -> None:
    """A step too long for a line is wrapped between words: its shape and "back through"
    stay whole, and the column padding is narrowed rather than wrapped."""
    source = ("X: [B, T, d]; W: [d, d]; g: [d]\n"
              "Y = (X @ W) * g / sqrt(sum((X @ W) ** 2, axis=2, keepdims=True) + 1e-5)\n"
              "L = sum(tanh(Y @ W) * tanh(Y @ W.T) * exp(Y) * sigmoid(Y @ W @ W))")
    doc = generate(source, ["W"]).split('"""')[1]
    lines = doc.splitlines()
    assert max(map(len, lines)) <= 96
    assert "        [B, T, d]   back through L\n" in doc
    assert not any(line.rstrip().endswith(("[B,", "[B, T,", "back")) for line in lines)


def test_float32_in_float32_out() -> None:
    module = lambdify(MLP, MLP_WRT)
    value, grads = module.value_and_grad(**mlp_inputs(dtype=np.float32))
    assert value.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


def test_zero_and_identity_gradients_keep_float32() -> None:
    module = lambdify("X: [n, n]; y: [n]; trace(X)", ["X", "y"])
    _, grads = module.value_and_grad(X=np.ones((3, 3), np.float32), y=np.ones(3, np.float32))
    assert grads["X"].dtype == grads["y"].dtype == np.float32
    np.testing.assert_array_equal(grads["X"], np.eye(3))


def test_extreme_logits_give_finite_loss_and_gradient() -> None:
    module = lambdify("z: [N, C]; y: [N, C]; L = softmax_cross_entropy(z, y)", ["z"])
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    for dtype in (np.float64, np.float32):
        value, grads = module.value_and_grad(z=z.astype(dtype), y=y.astype(dtype))
        assert np.isfinite(value) and np.all(np.isfinite(grads["z"]))
        assert np.isclose(value, (2e4 + 2e4 + np.log(2)) / 2, rtol=1e-6)


STABLE = {  # each function, its value and its derivative, exactly (mpmath, 50 digits)
    "sigmoid": (lambda t: 1 / (1 + mpmath.exp(-t)),
                lambda t: mpmath.exp(-t) / (1 + mpmath.exp(-t)) ** 2),
    "softplus": (lambda t: mpmath.log1p(mpmath.exp(t)), lambda t: 1 / (1 + mpmath.exp(-t))),
}
POINTS = [1e4, -1e4, 30.0, -30.0, 0.0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(STABLE))
def test_stable_sigmoid_and_softplus_agree_with_exact_values(name: str, dtype) -> None:
    mpmath.mp.dps = 50
    value_of, derivative_of = STABLE[name]
    module = lambdify(f"x: [n]; c: [n]; sum({name}(x) * c)", ["x"])
    x = np.array(POINTS, dtype=dtype)
    c = np.ones_like(x)
    for k, point in enumerate(POINTS):
        weights = np.zeros_like(x)
        weights[k] = 1
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # nothing overflows
            value, grads = module.value_and_grad(x=x, c=weights)
        assert value.dtype == dtype and grads["x"].dtype == dtype
        tolerance = 1e-14 if dtype == np.float64 else 1e-6
        for got, want in ((value, value_of(point)), (grads["x"][k], derivative_of(point))):
            assert abs(float(got) - float(want)) <= tolerance * max(1.0, abs(float(want)))
    assert c.sum() == len(POINTS)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stable_logsumexp_and_log_softmax_agree_with_exact_values(dtype) -> None:
    mpmath.mp.dps = 50
    x = np.array(POINTS, dtype=dtype)
    exact_lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(t))) for t in POINTS))
    tolerance = 1e-14 if dtype == np.float64 else 1e-6
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, grads = lambdify("x: [n]; logsumexp(x)", ["x"]).value_and_grad(x=x)
    assert abs(float(value) - float(exact_lse)) <= tolerance * float(exact_lse)
    softmax = [float(mpmath.exp(mpmath.mpf(float(t)) - exact_lse)) for t in POINTS]
    np.testing.assert_allclose(grads["x"], np.array(softmax, dtype=float), atol=tolerance)
    c = np.array([0.5, 2.0, -1.0, 3.0, 1.0], dtype=dtype)
    value, grads = lambdify("x: [n]; c: [n]; sum(log_softmax(x) * c)", ["x"]).value_and_grad(
        x=x, c=c)
    exact = mpmath.fsum(float(ci) * (mpmath.mpf(float(t)) - exact_lse)
                        for ci, t in zip(c, POINTS, strict=True))
    assert abs(float(value) - float(exact)) <= tolerance * abs(float(exact))
    gradient = [float(ci) - float(sum(c)) * s for ci, s in zip(c, softmax, strict=True)]
    np.testing.assert_allclose(grads["x"], np.array(gradient), atol=tolerance * 10)


@pytest.mark.parametrize(("name", "shape", "message"), [
    ("X", (3, 5, 2), "X: declared [N, D], got (3, 5, 2)"),
    ("W1", (4, 4), "W1: declared [D, H] with D = 5 (from X), got (4, 4)"),
    ("b2", (4,), "b2: declared [C] with C = 3 (from Y), got (4,)"),
])
def test_wrong_shapes_raise_value_error(name, shape, message) -> None:
    module = lambdify(MLP, MLP_WRT)
    arrays = {**mlp_inputs(), name: np.zeros(shape)}
    for function in (module.value, module.value_and_grad):
        with pytest.raises(ValueError) as error:
            function(**arrays)
        assert str(error.value) == message


def test_fixed_sizes_are_checked() -> None:
    module = lambdify((EXAMPLES / "lin_relu_mse.mc").read_text(), ["w2"])
    rng = np.random.default_rng(0)
    arrays = {"inp": rng.normal(size=(4, 3)), "targ": rng.normal(size=(4, 1)),
              "w1": rng.normal(size=(3, 2)), "b1": rng.normal(size=2),
              "w2": rng.normal(size=(2, 2)), "b2": rng.normal(size=1)}
    with pytest.raises(ValueError, match=r"w2: declared \[nh, 1\] with nh = 2 \(from w1\), "
                                         r"got \(2, 2\)"):
        module.value(**arrays)


def test_layer_module_gives_vector_jacobian_products() -> None:
    source = "X: [N, H]; a: [H, H]; Y = relu(X) - relu(-X) @ a"
    module = lambdify(source, ["X", "a"])
    rng = np.random.default_rng(0)
    X, a, G = rng.normal(size=(4, 3)), rng.normal(size=(3, 3)), rng.normal(size=(4, 3))
    value, grads = module.value_and_vjp(X=X, a=a, grad_output=G)
    np.testing.assert_allclose(value, np.maximum(X, 0) + np.minimum(X, 0) @ a)
    np.testing.assert_allclose(grads["a"], np.minimum(X, 0).T @ G)
    np.testing.assert_allclose(grads["X"], (X > 0) * G + (X < 0) * (G @ a.T))


# ----------------------------------------------------------------------------------------------
# torch target


def test_torch_function_matches_numpy_and_gradcheck() -> None:
    torch = pytest.importorskip("torch")
    module = lambdify(MLP, MLP_WRT, target="torch")
    arrays = mlp_inputs()
    tensors = {k: torch.tensor(v, requires_grad=k in MLP_WRT) for k, v in arrays.items()}
    loss = module.L(**tensors)
    (3 * loss).backward()
    value, grads = lambdify(MLP, MLP_WRT).value_and_grad(**arrays)
    assert np.isclose(loss.item(), value)
    for name in MLP_WRT:
        np.testing.assert_allclose(tensors[name].grad.numpy(), 3 * grads[name], rtol=1e-10)
    assert torch.autograd.gradcheck(module.L, tuple(tensors.values()))


@pytest.mark.parametrize("labels", [False, True])
def test_forward_mode_works_through_the_torch_function(labels: bool) -> None:
    """torch.func.jvp, jacfwd and hessian (forward over reverse) through the generated
    Function agree with PyTorch's own model: its jvp differentiates forward_pass forward,
    integer labels held fixed."""
    torch = pytest.importorskip("torch")
    source = MLP.replace("Y: [N, C] onehot", "Y: [N] labels") if labels else MLP
    module = lambdify(source, MLP_WRT, target="torch")
    arrays = mlp_inputs()
    if labels:
        arrays["Y"] = arrays["Y"].argmax(axis=1)
    tensors = {k: torch.tensor(v) for k, v in arrays.items()}
    X, Y = tensors["X"], tensors["Y"]

    def reference(W1, b1, W2, b2):
        z = torch.relu(X @ W1 + b1) @ W2 + b2
        return torch.nn.functional.cross_entropy(z, Y if labels else Y.argmax(dim=1))

    def ours(W1, b1, W2, b2):
        return module.L(X, Y, W1, b1, W2, b2)

    params = tuple(tensors[w] for w in MLP_WRT)
    tangents = tuple(torch.ones_like(p) for p in params)
    for transform in (lambda f: torch.func.hessian(f, argnums=(0, 1, 2, 3)),
                      lambda f: torch.func.jacfwd(f, argnums=2),
                      lambda f: lambda *p: torch.func.jvp(f, p, tangents)):
        got, expected = transform(ours)(*params), transform(reference)(*params)
        for a, b in zip(torch.utils._pytree.tree_leaves(got),
                        torch.utils._pytree.tree_leaves(expected), strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)
    # forward over forward: torch drops the outer tangent in a Function's jvp (zeros): refused
    with pytest.raises(RuntimeError, match="forward mode over forward mode"):
        torch.func.jacfwd(torch.func.jacfwd(ours, argnums=3), argnums=3)(*params)


@pytest.mark.parametrize("name", ["zip", "sum", "tuple", "enumerate", "inputs", "moved"])
def test_forward_mode_through_the_torch_function_with_a_builtin_for_a_name(name: str) -> None:
    """The jvp keeps the inputs in a tuple: a variable named zip or sum does not hide the
    builtins it calls (a TypeError or UnboundLocalError before)."""
    torch = pytest.importorskip("torch")
    source = f"{name}: [N, D]; y: [N] labels; W: [D, C]\nL = softmax_cross_entropy({name} @ W, y)"
    module = lambdify(source, [name, "W"], target="torch")
    rng = np.random.default_rng(4)
    X, W = (torch.tensor(rng.normal(size=s)) for s in ((5, 3), (3, 4)))
    y = torch.tensor([0, 3, 1, 1, 2])

    def reference(X, W):
        return torch.nn.functional.cross_entropy(X @ W, y)

    got = torch.func.hessian(lambda X, W: module.L(X, y, W), argnums=(0, 1))(X, W)
    expected = torch.func.hessian(reference, argnums=(0, 1))(X, W)
    for a, b in zip(torch.utils._pytree.tree_leaves(got),
                    torch.utils._pytree.tree_leaves(expected), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)


def test_torch_backward_skips_the_gradient_of_an_input_that_needs_none() -> None:
    """The data X needs no gradient: its product δ3 W1ᵀ is not computed (three products in the
    backward pass, not four), as in PyTorch's own backward; asked for, dX is right."""
    torch = pytest.importorskip("torch")
    module = lambdify(MLP, MLP_WRT, target="torch")
    code = generate(MLP, MLP_WRT, target="torch")
    assert "if ctx.needs_input_grad[0]:   # X\n            dX = dZ1 @ W1.T" in code
    arrays = mlp_inputs()
    tensors = {k: torch.tensor(v, requires_grad=k in ("W1", "W2")) for k, v in arrays.items()}
    loss = module.L(**tensors)
    with torch.profiler.profile() as profile:
        dW1, dW2 = torch.autograd.grad(loss, [tensors["W1"], tensors["W2"]])
    products = [e for e in profile.events() if e.name == "aten::mm"]
    assert len(products) == 3                   # δ2 = δ1 W2ᵀ, Xᵀ δ3 and H1ᵀ δ1
    _, grads = lambdify(MLP, [*MLP_WRT, "X"]).value_and_grad(**arrays)
    np.testing.assert_allclose(dW1.numpy(), grads["W1"], rtol=1e-12)
    X = tensors["X"].requires_grad_()
    (dX,) = torch.autograd.grad(module.L(**{**tensors, "X": X}), [X])
    np.testing.assert_allclose(dX.numpy(), grads["X"], rtol=1e-12)


@pytest.mark.parametrize(("source", "sizes"), PARAMS[::7])
def test_torch_target_agrees_with_numpy_target(source, sizes) -> None:
    torch = pytest.importorskip("torch")
    wrt = wrt_all(source)
    program = parse(source)
    arrays = smooth_inputs(program, {k: v for k, v in sizes.items() if k in program.dims},
                           np.random.default_rng(2))
    _, expected = lambdify(source, wrt).value_and_grad(**arrays)
    module = lambdify(source, wrt, target="torch")
    tensors = {k: torch.tensor(v, requires_grad=np.asarray(v).dtype.kind == "f")
               for k, v in arrays.items()}                # integer labels take no gradient
    name = program.function_name if program.function.op == "named" else "apply"
    getattr(module, name)(**tensors).backward()
    for w in wrt:
        np.testing.assert_allclose(tensors[w].grad.numpy(), expected[w], rtol=1e-9, atol=1e-12)


def test_torch_layer_drops_into_a_model() -> None:
    torch = pytest.importorskip("torch")
    module = lambdify("X: [N, H]; a: [H, H]; Y = relu(X) - relu(-X) @ a", ["X", "a"],
                      target="torch")
    X = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    a = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module.Y, (X, a))
    out = module.Y(X.float(), a.float())
    assert out.dtype == torch.float32


@pytest.mark.parametrize("target", ["numpy", "torch"])
@pytest.mark.parametrize("name", ["leaky_relu", "gelu", "silu", "softplus", "sigmoid"])
def test_generated_code_computes_each_product_once(name: str, target: str) -> None:
    """Functions whose code uses their argument several times (where(z > 0, z, a z), z Φ(z))
    name it first: in every generated function, X @ W is computed once."""
    code = generate(f"X: [n, d]; W: [d, k]; sum({name}(X @ W))", ["W"], target=target)
    functions = code.split("\n    def " if target == "torch" else "\ndef ")[1:]
    computing = [f for f in functions if "X @ W" in f]
    assert computing, code
    assert all(f.count("X @ W") == 1 for f in computing), code


@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_a_sum_inside_a_larger_sum_is_computed_once(target: str) -> None:
    """The HVP of softmax cross-entropy has the tangent of the logits, u = ΔZ1 W2 + H1 V2 + v,
    in s ⊙ (u − sum(s ⊙ u)): the larger sum is u minus the row sums, so u is computed once;
    and H v is the central difference of the gradient along v."""
    source = (Path(__file__).parent.parent / "examples" / "mlp.mc").read_text()
    wrt = ["W1", "b1", "W2", "b2"]
    code = generate(source, wrt, target=target, emit=("hvp",))
    computing = [line for line in code.split("def hvp")[1].splitlines()
                 if "v_b2" in line and not any(s in line for s in ('v["', "_check", "as_tensor"))]
    assert len(computing) == 1 and computing[0].count("v_b2") == 1, code
    module = lambdify(source, wrt, emit=("grad", "hvp"))
    rng = np.random.default_rng(5)
    arrays = {"X": rng.normal(size=(6, 4)), "Y": np.eye(3)[rng.integers(0, 3, 6)],
              "W1": rng.normal(size=(4, 5)), "b1": rng.normal(size=5),
              "W2": rng.normal(size=(5, 3)), "b2": rng.normal(size=3)}
    v = {w: rng.normal(size=arrays[w].shape) for w in wrt}
    step = 1e-6
    shifted = [module.value_and_grad(**{**arrays, **{w: arrays[w] + s * step * v[w]
                                                     for w in wrt}})[1] for s in (1, -1)]
    got = module.hvp(**arrays, v=v)
    for w in wrt:
        np.testing.assert_allclose(got[w], (shifted[0][w] - shifted[1][w]) / (2 * step),
                                   rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("slope", "a"), [("1 / 100", 0.01), ("3", 3), ("-2", -2), ("1", 1)])
def test_leaky_relu_with_a_number_for_slope_is_branch_free_in_numpy(slope: str, a: float
                                                                     ) -> None:
    """np.where mispredicts on signs that vary; for a number a the value is max(x, a x) for
    a ≤ 1 and min(x, a x) for a ≥ 1, equal to where(x > 0, x, a x) everywhere, the infinities,
    NaN and zeros included; the gradient is unchanged."""
    source = f"x: [n]\nleaky_relu(x, {slope})"
    code = generate(source, ["x"])
    assert "np.where" not in code and ("np.maximum" in code or "np.minimum" in code), code
    module = lambdify(source, ["x"])
    x = np.array([-np.inf, -3.0, -0.0, 0.0, 2.5, np.inf, np.nan, 1e-300, -1e-300, 1e-45])
    for dtype in (np.float64, np.float32):
        with np.errstate(invalid="ignore", over="ignore", under="ignore"):
            cast = x.astype(dtype)
            np.testing.assert_allclose(module.value(x=cast), np.where(cast > 0, cast, a * cast),
                                       rtol=1e-6, atol=0)
    squares = lambdify(f"x: [n]\nsum(leaky_relu(x, {slope}) ** 2)", ["x"])
    finite = np.array([-3.0, -0.5, 0.25, 2.0])
    _, grad = squares.value_and_grad(x=finite)
    np.testing.assert_allclose(grad["x"], 2 * np.where(finite > 0, finite, a * a * finite))


def test_leaky_relu_with_a_variable_slope_keeps_where() -> None:
    """A slope known only at run time may be anything (inf, NaN): where(x > 0, x, a x)."""
    code = generate("x: [n]; a: []\nsum(leaky_relu(x, a))", ["x"])
    assert "np.where(x > 0, x, a * x)" in code


@pytest.mark.parametrize("slope", ["1 / n", "0", "cos(1) ** 2 + sin(1) ** 2"])
def test_leaky_relu_keeps_where_for_a_slope_it_cannot_place_against_1(slope: str) -> None:
    """A size in the slope, a slope of 0 (0 · −inf is NaN, as torch's) or one SymPy cannot
    compare with 1: where(x > 0, x, a x), no internal error."""
    source = f"x: [n]\nsum(leaky_relu(x, {slope}) ** 2)"
    assert "np.where(x > 0, x, " in generate(source, ["x"])
    x = np.array([-2.0, -0.5, 0.5, 3.0])
    a = {"1 / n": 0.25, "0": 0.0}.get(slope, 1.0)
    _, grad = lambdify(source, ["x"]).value_and_grad(x=x)
    np.testing.assert_allclose(grad["x"], 2 * np.where(x > 0, x, a * a * x), rtol=1e-12)


def test_a_coefficient_below_the_smallest_float_reciprocal_is_multiplied() -> None:
    """1e-320 x is not x / 10³²⁰, which would be x / inf = 0."""
    module = lambdify("x: [n]\nsum(1e-320 * x * x)", ["x"])
    value, grad = module.value_and_grad(x=np.array([3.0, 4.0]))
    assert value == 1e-320 * 25.0 and grad["x"][1] == 2e-320 * 4.0


@pytest.mark.parametrize("source, reference", [
    ("x: [n]\nL = sum(where(x > 0, x, 2 * x) ** 2)",
     lambda x: (x.where(x > 0, 2 * x) ** 2).sum()),
    ("x: [n]\nL = sum(where(abs(x) <= 1, x ** 2 / 2, abs(x) - 1 / 2) * exp(x))",
     lambda x: ((x ** 2 / 2).where(x.abs() <= 1, x.abs() - 1 / 2) * x.exp()).sum()),
])
def test_forward_mode_through_the_torch_function_that_keeps_a_mask(source, reference) -> None:
    """A kept mask (x > 0) has no tangent: the jvp gives None for it, as torch requires (it
    raised "returned a gradient at position 1, but … not a differentiable Tensor")."""
    torch = pytest.importorskip("torch")
    module = lambdify(source, ["x"], target="torch")
    x = torch.tensor([0.7, -1.3, 2.1, -0.4, 0.2], dtype=torch.float64)
    t = torch.linspace(-1, 1, 5, dtype=torch.float64)
    for transform in (torch.func.hessian, torch.func.jacfwd,
                      lambda f: lambda x: torch.func.jvp(f, (x,), (t,))):
        got, expected = transform(module.L)(x), transform(reference)(x)
        for a, b in zip(torch.utils._pytree.tree_leaves(got),
                        torch.utils._pytree.tree_leaves(expected), strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("source", [
    "K: [n, n] symmetric\ny: [n]\nL = 0.5 * y @ solve(K, y) + 0.5 * logdet(K)",
    "S: [n, n] symmetric\nA: [n, n]\nL = logdet(S) + trace(A @ S @ S)",
])
def test_second_derivatives_through_the_torch_function_stay_among_symmetric_matrices(source):
    """Differentiated again, backward symmetrises a symmetric input first: double backward
    and torch.func.hessian give the symmetric-convention Hessian, as hvp does (they gave a
    non-symmetric H·V, right only in its symmetric part)."""
    torch = pytest.importorskip("torch")
    name = source[0]
    module = lambdify(source, [name], target="torch")
    rng = np.random.default_rng(5)
    a, v = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    arrays = {k: torch.tensor(rng.normal(size=(4, 4) if k != "y" else 4))
              for k in parse(source).variables}
    arrays[name] = torch.tensor(a @ a.T + 4 * np.eye(4), requires_grad=True)
    V = torch.tensor(v + v.T)

    def own(**kw):
        return module.L(**kw)

    def reference(**kw):
        s = (kw[name] + kw[name].T) / 2
        if "y" in kw:
            return 0.5 * kw["y"] @ torch.linalg.solve(s, kw["y"]) + 0.5 * torch.logdet(s)
        return torch.logdet(s) + torch.trace(kw["A"] @ s @ s)

    def double_backward(f):
        (g,) = torch.autograd.grad(f(**arrays), arrays[name], create_graph=True)
        return torch.autograd.grad((g * V).sum(), arrays[name])[0].numpy()

    mine = double_backward(own)
    np.testing.assert_allclose(mine, double_backward(reference), rtol=1e-10, atol=1e-12)
    hvp = lambdify(source, [name], emit=("hvp",)).hvp(
        **{k: t.detach().numpy() for k, t in arrays.items()}, v=V.numpy())
    np.testing.assert_allclose(mine, hvp[name], rtol=1e-10, atol=1e-12)


def test_a_layer_norm_of_a_long_expression_is_bound_once_in_torch() -> None:
    """Its input too long for one line, the layer-norm statement named its longest part, the
    node itself, and then unpacked that array into (x̂, mean, 1/σ): `f, mean1, rstd1 = xhat`
    (an error at most sizes, a wrong value at 3; found by the fuzz)."""
    torch = pytest.importorskip("torch")
    source = ("y: [m]\nt1 = y / y\nf = (gelu_tanh(t1) - mean(gelu_tanh(t1), axis=-1, "
              "keepdims=True)) * (var(gelu_tanh(t1), axis=-1) + 0.1) ** -0.5")
    assert "= xhat" not in generate(source, ["y"], "torch")
    module = lambdify(source, ["y"], target="torch")
    for m in (1, 3, 4):
        y = np.linspace(1.0, 2.0, m)
        got = module.f(torch.tensor(y)).numpy()
        np.testing.assert_allclose(got, lambdify(source, ["y"]).value(y=y), atol=1e-12)
