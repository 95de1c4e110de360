"""Every program a review found wrong or crashing, through every output path, against torch.

Each case runs where it applies: ``derive`` and ``--steps`` code, the generated NumPy module, the
torch target (also under ``torch.func``), Jacobians, Hessians and Hessian-vector products, each
compared with torch.autograd in float64 by the fuzz gate's harness (:mod:`matcalc.proofs.fuzz`).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import matcalc  # noqa: E402
from matcalc.proofs import fuzz  # noqa: E402

SCALAR = ("derive", "steps", "numpy", "torch", "torch.func", "hessian", "hvp")
LAYER = ("numpy", "torch", "torch.func", "jacobian")

CASES = [
    # masks added, subtracted and negated in generated code
    ("X: [n, n]\nT = X + X.T\nsum(relu(T))", ("X",), "X", SCALAR),
    ("X: [n, n]\nT = X - X.T\nsum(relu(T) * X)", ("X",), "X", SCALAR),
    ("x: [n]\nr: []  # draw: positive\nsum(-relu(x) / r)", ("x", "r"), "x", SCALAR),
    # Hessians with respect to a length-1 vector that is broadcast
    ("x: [n]\nb: [1]\nsum(exp(x + b))", ("b",), "b", SCALAR),
    ("x: [n]\na: [1]\nsum(exp(a * x))", ("a",), "a", SCALAR),
    ("x: [n]\nb: [1]\ny: [n] probabilities  # draw: probabilities\n"
     "softmax_cross_entropy(x + b, y)", ("b",), "b", SCALAR),
    ("u, x: [1]\nA: [m, 1]\nsin(sum(A @ outer(u, x)))", ("u",), "u", SCALAR),
    # the gradient with respect to an intermediate symmetric by construction is unconstrained
    ("X: [n, m]\nA: [n, n]\nT = X @ X.T\nsum(A * T.T)", ("T", "X"), "X", SCALAR),
    # cross-entropy: any targets, declared rows, integer labels
    ("Z: [N, C]\nY: [N, C]\nL = softmax_cross_entropy(Z, Y)", ("Z", "Y"), "Z", SCALAR),
    ("Z: [N, C]\nY: [N, C] onehot  # draw: onehot\nL = softmax_cross_entropy(Z, Y)", ("Z",),
     "Z", SCALAR),
    ("Z: [N, C]\ny: [N] labels  # draw: labels:C\nL = softmax_cross_entropy(Z, y)", ("Z",),
     "Z", SCALAR),
    ("z: [C]\ny: [] labels  # draw: labels:C\nL = softmax_cross_entropy(z, y)", ("z",), "z",
     SCALAR),
    # long argument lists, 1×1 and column programs, diag, Jacobians through matrices
    ("w1, w2, w3, w4, w5, weights6: [n]\nsum(w1 * w2 * w3 * w4 * w5 * weights6)", ("w1",),
     "w1", SCALAR),
    ("A: [1, 1]\nsum(A)", ("A",), "A", SCALAR),
    ("x: [1]\nx", ("x",), "x", ("numpy", "torch", "cli")),       # a value of one entry
    ("x, y: [1, 1]\nx * y", ("x", "y"), "x", ("numpy", "torch", "cli")),
    ("x: [n, 1]\nA: [n, n]\nsum(x.T @ A @ x)", ("x",), "x", SCALAR),
    ("A: [n, n]\nx: [n]\nsum(A @ diag(x))", ("A", "x"), "A", SCALAR),
    ("x, y: [n]\nsum(x @ diag(y))", ("x", "y"), "x", SCALAR),
    ("A: [n, m]\nc: []\nA * c", ("c",), "c", LAYER),
    ("x: [1]\ndiag(x)", ("x",), "x", LAYER),
    ("x: [n]\ny: [m]\nsum(outer(softmax(x), y) ** 2)", ("x",), "x", SCALAR),
    ("x: [N]\nA: [M, K]\nA * sum(softmax(x))", ("x",), "x", LAYER),
    ("r: [1]\nB: [1, m]\nC: [m, 1]\nR: [1, m]\n(r @ (B @ C)) @ R", ("C",), "C", LAYER),
    ("A: [q, q]\nx: [1]\ntanh(sum(softmax(diag(A - x))))", ("x",), "x", SCALAR),
    ("A: [p, p]\nR: [p, p]\nc: []  # draw: positive\nH = R - (mean(A) - c ** 0.25)\n"
     "sigmoid(sum(H))", ("A", "c"), "A", SCALAR),
    ("x: [n]\nsum(x) * n * pi + sqrt(6) * sum(x * x)", ("x",), "x", SCALAR),
    ("A: [n, n]\nx: [n]\nouter(x, diag(softmax(A @ A)))", ("A",), "A", LAYER),
    ("u: [n]\nR: [n, m]\nexp(u) @ (R + 1)", ("u",), "u", LAYER),
    ("A: [n, m]\nlogsumexp(A) + sum(logsumexp(A, axis=None, keepdims=True))", ("A",), "A",
     SCALAR),
    ("u: [n, 1]\nA: [n, n]\nsum(tanh(A @ u) ** 2)", ("u",), "u", SCALAR),
    ("W: [n, m]\nx: [m]\nsum(tanh(W @ x))", ("W",), "W", SCALAR),
    ("X: [n, m]\nsum(mean(X, axis=1, keepdims=True) * X) + sum(logsumexp(X, axis=0, "
     "keepdims=True) @ X.T @ sum(X, axis=1, keepdims=True))", ("X",), "X", SCALAR),
    # Hessians that used to become 0 past 400 terms
    ("x: [n]\nW: [n, n]\nh0 = x\nh1 = h0 + tanh(W @ h0)\nh2 = h1 + tanh(W @ h1)\n"
     "h3 = h2 + tanh(W @ h2)\nh4 = h3 + tanh(W @ h3)\nh5 = h4 + tanh(W @ h4)\n"
     "h6 = h5 + tanh(W @ h5)\nf = sum(h6 * h6)", ("x", "W"), "x", SCALAR),
    # names the generated code invents, and Python's
    ("delta1: [n]\ndelta2: [n]\nsum(delta1 * delta2 * delta1)", ("delta1", "delta2"),
     "delta1", SCALAR),
    ("x: [n]\ndx: [n]\ngrad_x: [n]\nsum(x * dx + grad_x * x)", ("x", "dx"), "x", SCALAR),
    ("elta1: [n]\nA: [n, n]\nT = A @ elta1\nsum(T * T)", ("elta1",), "elta1", SCALAR),
    ("et_A: []\nA: [n, n]  # draw: wc\ndet(A) * et_A", ("et_A", "A"), "A", SCALAR),
    ("np: [n]\nmath: [n]\ntorch: []\nvalue = sum(np * math) * torch", ("np", "torch"), "np",
     SCALAR),
    ("sum: [n]\nlen: [n]\nctx: [n]\nvalue_and_grad = sum(sum * len + ctx)", ("sum", "ctx"),
     "sum", SCALAR),
    ("_check_shapes: [n]\n_sigmoid: [n]\nsum(sigmoid(_check_shapes) * _sigmoid)",
     ("_check_shapes", "_sigmoid"), "_sigmoid", SCALAR),
    ("x: [_]\nt1: [_]\nmask: [_]\nsum(relu(x) * t1 + mask)", ("x", "t1"), "x", SCALAR),
    ("grad_x: [1]\ngrad_output = grad_x", ("grad_x",), "grad_x", LAYER),
    # a 1×1 identity in a Hessian is a repeated row, not diag(c); inputs returned as they are;
    # float results like an integer input
    ("x: [n]\ny: [1]  # draw: positive\nsoftmax_cross_entropy(x + y, softmax(x + sigmoid(y)))",
     ("x", "y"), "y", SCALAR),
    ("a: []\nx: []\na + tanh(sigmoid(x)) - tanh(sigmoid(x))", ("a", "x"), "x", SCALAR),
    ("A: [1, 1]\nlabels: [1] labels  # draw: labels:1\nt5 = logsumexp(A, axis=-2)\n"
     "sum(t5) * sum(t5)", ("A",), "A", SCALAR),
    # one-hot rows added into a sum are added at the labels only where they are not broadcast
    # (a [1, 1] one-hot broadcast along a row was added at column 0 alone), and a broadcast
    # column gets one-hot rows added after it is broadcast
    ("B: [1, n]\nlabels: [1] labels  # draw: labels:1\n"
     "sum(onehot(labels, 1) * sum(B, keepdims=True)) + softmax_cross_entropy(B, B)",
     ("B",), "B", SCALAR),
    ("Z: [N, K]\ny: [N] labels  # draw: labels:K\n"
     "sum(onehot(y, K) * Z * Z) + sum(softmax(Z) * onehot(y, K))", ("Z",), "Z", SCALAR),
    # a constant broadcast in NumPy code is a float array (one-hot rows added at the labels of
    # an integer np.broadcast_to(-1, …) were truncated)
    ("T: [n, n]\nk: [n] labels  # draw: labels:n\nsum(onehot(k, n) * (T / n)) - sum(T)",
     ("T",), "T", SCALAR),
    # outer products inside shared products stay shared (the HVP's code took time 3ᵏ)
    ("X: [n, n]\nh1 = X\n" + "".join(f"h{i} = h{i - 1} @ h{i - 1} + h{i - 1}\n"
                                      for i in range(2, 14)) + "L = sum(h13 @ h13 + h13)",
     ("X",), "X", SCALAR),
    # sizes that are sums and products compare equal however they are written (n·(m + p))
    ("A: [m, n]\nB: [p, n]\nvstack([A, B])", ("B",), "B", LAYER),
    ("A: [m, n]\nB: [m, p]\nsum(sin(hstack([A, B])))", ("A", "B"), "A", SCALAR),
    ("A: [m, n]\nB: [p, n]\nsum(sin(vstack([A, B * B])))", ("A", "B"), "B", SCALAR),
    # columns in a Hessian's linear map: times a scalar, summed across (one class: the
    # Hessian is 0, and was −1.49)
    ("A: [n, 1]\nx: [1]\nnorm(A - x)", ("x",), "x", SCALAR),
    ("x: [1]\nB: [n, 1]\nY: [n, 1] onehot  # draw: onehot\nsoftmax_cross_entropy(x * B, Y)",
     ("x",), "x", SCALAR),
    ("x: [1]\nB: [n, 1]\nsum(logsumexp(x * B, axis=1, keepdims=True) * B)", ("x",), "x", SCALAR),
    # a symmetric product of inverses stays one in generated code (cholesky needs it)
    ("A: [n, n]  # draw: wc\ncholesky(inv(A) @ inv(A).T)", ("A",), "A", LAYER),
    # torch.kron needs contiguous operands
    ("A: [n, m]\nB: [n, m]\nsum(sin(kron(A.T, B)))", ("A", "B"), "A", SCALAR),
    # a layer norm's backward kernel (no gain) named for a second use keeps its name, not its
    # code as a name (the torch backward read an undefined δ; fuzz, seed 200001…)
    ("x: [n]  # draw: positive\nt2 = (log(x) - mean(log(x), axis=-1, keepdims=True)) / "
     "sqrt(var(log(x), axis=-1))\nt2 @ log(x)", ("x",), "x", SCALAR),
    # where with two numbers for branches is a float, not an integer array (the torch target's
    # value had no grad_fn; hostile fuzz, seed 271001)
    ("x: []\nwhere(2 < x, 2, 2)", ("x",), "x", SCALAR),
]


def case_id(case) -> str:
    return case[0].splitlines()[-1][:40]


@pytest.mark.parametrize(("source", "wrt", "x", "paths"), CASES, ids=map(case_id, CASES))
def test_every_path_agrees_with_torch(source: str, wrt: tuple, x: str, paths: tuple) -> None:
    sizes = {"n": 3, "m": 2, "N": 4, "C": 3, "M": 2, "K": 3, "p": 3, "q": 3, "_": 3}
    used = {d for d in sizes if f"{d}]" in source or f"{d}," in source}
    case = fuzz.Case(source, tuple((d, sizes[d]) for d in sorted(used)), draw=7, wrt=wrt, x=x,
                     layout="denominator", paths=paths)
    outcomes = fuzz.run_case(case, limit=60.0)
    bad = [o for o in outcomes if o.category not in ("ok", "skipped")]
    assert not bad, "\n".join(f"{o.path}: {o.category} {o.message}\n{o.detail}" for o in bad)


def test_torch_target_gives_every_input_its_gradient() -> None:
    """A generated loss after a torch.nn.Linear: the layer's weight gets its gradient."""
    loss = matcalc.lambdify("Z: [N, C]; Y: [N, C] onehot; L = softmax_cross_entropy(Z, Y)",
                            ["Z"], target="torch").L
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.eye(3, dtype=torch.float64)[torch.tensor([0, 2, 1, 1, 0])]
    loss(layer(x), y).backward()
    got = layer.weight.grad.clone()
    layer.zero_grad()
    torch.nn.functional.cross_entropy(layer(x), y).backward()
    torch.testing.assert_close(got, layer.weight.grad)


def test_torch_target_composes_with_torch_func() -> None:
    f = matcalc.lambdify("X: [n, m]; w: [m]; L = sum(tanh(X @ w) ** 2)", ["w"],
                         target="torch").L
    X = torch.randn(4, 3, dtype=torch.float64)
    w = torch.randn(3, dtype=torch.float64)

    def reference(w):
        return (torch.tanh(X @ w) ** 2).sum()

    torch.testing.assert_close(torch.func.grad(f, argnums=1)(X, w),
                               torch.func.grad(reference)(w))
    torch.testing.assert_close(torch.func.jacrev(f, argnums=1)(X, w),
                               torch.func.jacrev(reference)(w))
    batch = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(torch.func.vmap(lambda v: f(X, v))(batch),
                               torch.func.vmap(reference)(batch))


def test_torch_target_differentiates_twice() -> None:
    """Second derivatives through the Function: double backward and jacrev of grad."""
    f = matcalc.lambdify("X: [N, D]; W: [D, H]; L = sum(tanh(X @ W) ** 2)", ["W"],
                         target="torch").L
    X = torch.randn(4, 3, dtype=torch.float64)
    W = torch.randn(3, 2, dtype=torch.float64)

    def reference(w):
        return (torch.tanh(X @ w) ** 2).sum()

    torch.testing.assert_close(torch.autograd.functional.hessian(lambda w: f(X, w), W),
                               torch.autograd.functional.hessian(reference, W))
    torch.testing.assert_close(torch.func.jacrev(torch.func.grad(f, argnums=1), argnums=1)(X, W),
                               torch.func.jacrev(torch.func.grad(reference))(W))


def test_torch_target_checks_declarations() -> None:
    f = matcalc.lambdify("Z: [N, C]; Y: [N, C] onehot; L = softmax_cross_entropy(Z, Y)", ["Z"],
                         target="torch").L
    with pytest.raises(ValueError, match="declared onehot"):
        f(torch.randn(4, 3), torch.rand(4, 3) * 2)
    g = matcalc.lambdify("S: [n, n] symmetric; x: [n]; L = x @ S @ x", ["S"], target="torch").L
    with pytest.raises(ValueError, match="declared symmetric"):
        g(torch.randn(3, 3), torch.randn(3))


def test_generated_gradients_are_fresh_arrays() -> None:
    module = matcalc.lambdify("x: [n]; w: [n]; A: [n, n]; f = sum(x * w) + trace(A)",
                              ["x", "w", "A"])
    arrays = {"x": np.ones(3), "w": np.full(3, 2.0), "A": np.eye(3)}
    _, grads = module.value_and_grad(**arrays)
    grads["x"] += 1
    grads["w"] += 1
    assert np.array_equal(arrays["w"], np.full(3, 2.0)) and np.array_equal(arrays["x"], np.ones(3))


def test_gradients_that_are_slices_of_an_input_are_copies() -> None:
    module = matcalc.lambdify("A: [2, 3]; B: [1, 3]; C: [3, 3]; sum(vstack([A, B]) * C)",
                              ["A", "B"])
    c = np.arange(9.0).reshape(3, 3)
    _, grads = module.value_and_grad(A=np.ones((2, 3)), B=np.ones((1, 3)), C=c)
    assert not np.shares_memory(grads["A"], c) and not np.shares_memory(grads["B"], c)
    np.testing.assert_array_equal(grads["B"], c[2:3])


def test_the_branch_where_does_not_take_never_reaches_the_value() -> None:
    """where(x > 0, log(x), −x) at x < 0 is finite, as np.where gives (it was NaN: the value
    was computed as mask ⊙ log(x) + (1 − mask) ⊙ (−x))."""
    for target in ("numpy", "torch"):
        module = matcalc.lambdify("x: [n]; sum(where(x > 0, log(x), -x))", ["x"], target=target)
        x = np.array([2.0, -1.0, 3.0])
        with np.errstate(invalid="ignore"):               # log(−1), not taken, as in NumPy
            value = module.value(x=x) if target == "numpy" else module.apply(torch.tensor(x))
        assert np.isclose(float(value), np.log(2) + 1 + np.log(3))


def test_the_torch_target_keeps_float64_numpy_inputs_in_float64() -> None:
    module = matcalc.lambdify("x: [n]; W: [n, n]; sum(tanh(W @ x))", ["x"], target="torch")
    assert module.apply(np.ones(3), np.eye(3)).dtype == torch.float64


def test_stacks_join_as_numpy_joins_them() -> None:
    """hstack of stacks joins along axis 1, vstack along axis 0 (they made [2b, n, m] and
    [2, b, n, m])."""
    program = matcalc.parse("A: [b, n, m]\nH = hstack([A, A])\nV = vstack([A, A])\nsum(H)")
    assert str(program.intermediates["H"].shape) == "(b, 2*n, m)"
    assert str(program.intermediates["V"].shape) == "(2*b, n, m)"


def test_integer_inputs_are_refused_not_truncated() -> None:
    module = matcalc.lambdify("x: [n]; w: [n]; f = sum(x * x) + sum(w) / 2", ["w"])
    with pytest.raises(ValueError, match="x: expected floating-point numbers"):
        module.value_and_grad(x=np.arange(3), w=np.ones(3))


def test_masked_logits_match_torch() -> None:
    module = matcalc.lambdify("Z: [N, C]; y: [N] labels; L = softmax_cross_entropy(Z, y)", ["Z"])
    z = np.array([[0.5, -np.inf, 1.0], [2.0, 0.0, -np.inf]])
    y = np.array([0, 1])
    value, grads = module.value_and_grad(Z=z, y=y)
    zt = torch.tensor(z, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(zt, torch.tensor(y))
    expected.backward()
    assert np.isclose(value, expected.item())
    np.testing.assert_allclose(grads["Z"], zt.grad.numpy())
    lse = matcalc.lambdify("x: [n]; logsumexp(x)", ["x"])
    assert lse.value(x=np.array([np.inf, 1.0])) == np.inf
    assert lse.value(x=np.array([-np.inf, -np.inf])) == -np.inf


def test_singular_matrix_is_a_clear_error() -> None:
    module = matcalc.lambdify("X: [n, n]; det(X)", ["X"])
    with pytest.raises(ValueError, match="singular"):
        module.value_and_grad(X=np.ones((3, 3)))


def test_a_constant_value_is_computed_by_the_torch_forward() -> None:
    """x / x is the constant 1, shaped like the seed in backward: forward computes it alone
    (fuzz, hostile mode: a NameError in forward_pass)."""
    outcome = fuzz.run_case(fuzz.Case("str: [1, 1]\nlogsumexp(str, 1) / logsumexp(str, 1)", (),
                                      draw=480829586, wrt=("str",), x="str",
                                      layout="denominator", paths=("torch", "torch.func")),
                            limit=60.0)
    assert all(o.category in ("ok", "skipped") for o in outcome), outcome


@pytest.mark.parametrize(("source", "draw"), [
    ('A: [1, 1]  # draw: wc\nC: [1, 1, 1]\nt2 = einsum("bij,bij->ij", C, C @ inv(A))\n'
     "sum(t2 * t2)", 1420533741),                        # an inverse times a stack: no solve
    ("A: [1]  # draw: positive\nnorm(gelu_tanh((A * A) ** A))", 3253213304),   # SymPy's |x|
])
def test_elementwise_algebra_leaves_what_it_cannot_write_as_built(source: str, draw: int) -> None:
    outcomes = fuzz.run_case(fuzz.Case(source, (), draw=draw, wrt=("A",), x="A",
                                       layout="denominator", paths=SCALAR), limit=60.0)
    assert all(o.category in ("ok", "skipped") for o in outcomes), outcomes


@pytest.mark.parametrize("source", [
    "X: [n, m]; W: [m, k]; b: [k]\nL = sum(tanh((X @ W) * exp(b) / 3))",  # X @ W moved last
    "X: [n, m]; W: [m, m]; S: [n, m]\nP = softmax(S * (X @ W), axis=1)\nL = sum(P * P)",
])
def test_reordered_products_keep_their_operands(source: str) -> None:
    """A full-size factor written after the small ones keeps its parentheses (`s / 3 * (X @
    W)`, not `s / 3 * X @ W`), and a softmax's backward shared by two gradients is computed
    once (review of the code generator's products)."""
    wrt = ("X", "W", "b") if "b:" in source else ("X", "W", "S")
    sizes = (("n", 4), ("m", 3), ("k", 2))
    outcomes = fuzz.run_case(fuzz.Case(source, sizes, draw=7, wrt=wrt, x="X",
                                       layout="denominator", paths=("derive", "steps",
                                                                    "numpy", "torch")),
                             limit=60.0)
    assert [o.category for o in outcomes] == ["ok"] * 4, outcomes
    from matcalc.forms.generated import generate
    assert generate(source, list(wrt), "torch").count("_softmax_backward_data") <= 1


def test_gelu_is_accurate_in_the_left_tail() -> None:
    """gelu(x) = x Φ(x) and gelu′(x) = Φ(x) + x φ(x) at x = −10 to 1e-12 relative, against
    mpmath: NumPy code computes Φ as ndtr, not as 0.5 (1 + erf(x / √2)), which cancels to 0
    there (the torch target uses torch's own gelu kernels, as precise as torch is)."""
    import mpmath
    x = np.array([-10.0, -6.0, 0.5])
    value, grads = matcalc.lambdify("x: [n]\nL = sum(gelu(x))", ["x"]).value_and_grad(x=x)
    mpmath.mp.dps = 40
    cdf = [mpmath.ncdf(v) for v in x]
    exact_grad = [c + v * mpmath.npdf(v) for c, v in zip(cdf, x, strict=True)]
    assert abs(value - float(sum(v * c for v, c in zip(x, cdf, strict=True)))) <= 1e-15
    np.testing.assert_allclose(grads["x"], np.array(exact_grad, dtype=float), rtol=1e-12,
                               atol=0)


def test_float32_normal_cdf_is_within_1_5e_7_of_ndtr_and_increasing() -> None:
    """Generated NumPy code computes Φ in float32 by its own fit in blocks: within 1.5e-7 of
    SciPy's float64 ndtr everywhere (float32 itself rounds Φ to 6e-8), increasing on a grid
    and within two ulps between neighbouring floats (review: 3.0210328 and the next float
    gave Φ an ulp apart, downwards), 0 and 1 in the far tails, float32 out, the input's shape kept
    (empty, a scalar, a transposed stack, more entries than a block)."""
    from scipy.special import ndtr

    module = matcalc.lambdify("x: [n]\nL = sum(gelu(x))", ["x"])
    x = np.linspace(-12, 12, 400_001, dtype=np.float32)
    value, grads = module.value_and_grad(x=x)
    assert grads["x"].dtype == np.float32
    cdf = module._normal_cdf
    assert np.max(np.abs(cdf(x) - ndtr(x.astype(np.float64)))) <= 1.5e-7
    assert np.all(np.diff(cdf(x)) >= 0)
    for start in (-0.0064874194, 1.2026712, 3.0210328, -3.5, 5.0):   # 2¹⁶ neighbouring floats
        near = np.float32(start) + np.arange(65536, dtype=np.float32) * np.spacing(
            np.float32(start))
        assert np.diff(cdf(near)).min() >= -2 * np.spacing(np.float32(0.5))
        assert np.abs(cdf(near) - ndtr(near.astype(np.float64))).max() <= 1.4e-7
    stack = x[:400_000].reshape(40, 100, 100).transpose(2, 0, 1)
    np.testing.assert_allclose(cdf(stack), ndtr(stack.astype(np.float64)), rtol=0, atol=1.5e-7)
    assert cdf(np.float32(0)).shape == () and cdf(np.zeros((0, 3), np.float32)).shape == (0, 3)
    assert cdf(x).dtype == np.float32 and cdf(x.astype(np.float64)).dtype == np.float64
    assert not cdf(x[x < -7.1]).any() and np.all(cdf(x[x > 5.3]) == 1)
    huge = np.array([-np.inf, -1e30, 1e30, np.inf] * 1024, np.float32)
    assert np.array_equal(cdf(huge), np.tile(np.float32([0, 0, 1, 1]), 1024))
    far = np.full(4096, -1e4, np.float32)      # x Φ(x) is 0 there, at every size (review)
    assert module.value_and_grad(x=far)[0] == module.value_and_grad(x=far[:10])[0] == 0


def test_generated_softmax_shifts_by_fmax_and_a_nan_row_stays_nan() -> None:
    """The generated softmax and log-softmax shift each row by its fmax (NumPy vectorises it
    along a row, max it does not): equal to SciPy's, and a row with a NaN is NaN as it was
    with max."""
    from scipy.special import log_softmax, softmax

    module = matcalc.lambdify("Z: [n, c]\nL = sum(softmax(Z) * log_softmax(Z))", ["Z"])
    z = np.random.default_rng(0).normal(size=(6, 5)) * 30
    z[1, 2], z[2, :2] = np.nan, -np.inf
    with np.errstate(invalid="ignore"):
        got, logs = module._softmax(z), module._log_softmax(z)
    assert np.isnan(got[1]).all() and np.isnan(logs[1]).all()
    rows = [0, 2, 3, 4, 5]
    np.testing.assert_allclose(got[rows], softmax(z[rows], axis=-1), rtol=1e-13, atol=0)
    np.testing.assert_allclose(logs[rows], log_softmax(z[rows], axis=-1), rtol=1e-13,
                               atol=1e-15)             # log of a row sum: an ulp of 1


@pytest.mark.parametrize("function", ["softmax", "log_softmax"])
def test_generated_softmax_over_an_empty_axis_is_no_error(function) -> None:
    """The max that shifts a softmax starts from −inf, so an axis of length 0 gives empty
    arrays, not NumPy's "zero-size array to reduction operation fmax" (review)."""
    module = matcalc.lambdify(f"X: [n, m]\nW: [n, m]\nL = sum({function}(X, axis=0) * W)", ["X"])
    for shape in ((0, 3), (3, 0)):
        value, grads = module.value_and_grad(X=np.zeros(shape), W=np.zeros(shape))
        assert value == 0 and grads["X"].shape == shape


def test_a_sum_with_keepdims_is_not_recognised_as_the_loss() -> None:
    """−Σ Y ⊙ log_softmax(Z) / N with keepdims is a [1, 1] array, not the cross-entropy, so
    ∂L/∂A keeps A's shape [1, 1] (fuzz, seed 170007: the gradient was a number)."""
    outcomes = fuzz.run_case(fuzz.Case("A: [1, 1]\nB: [m, m]  # draw: positive\n"
                                       "softmax_cross_entropy(B, A / B)", (("m", 1),),
                                       draw=3823702953, wrt=("A",), x="A",
                                       layout="denominator", paths=("derive", "steps", "numpy")),
                             limit=60.0)
    assert [o.category for o in outcomes] == ["ok"] * 3, outcomes


@pytest.mark.parametrize("shapes", [((2, 3, 0), (0, 4)), ((2, 3, 2), (2, 0)),
                                    ((0, 3, 2), (2, 4))])
def test_a_stack_with_an_empty_axis_has_empty_gradients(shapes: tuple) -> None:
    """A stack's rows as one matrix also when an axis is 0 (reshape's -1 is ambiguous there):
    value 0, gradients shaped like the arrays, for NumPy and torch code alike."""
    source = "X: [B, n, d]; W: [d, k]\nL = sum(tanh(X @ W))"
    X, W = np.ones(shapes[0]), np.ones(shapes[1])
    value, grads = matcalc.lambdify(source, ["X", "W"]).value_and_grad(X=X, W=W)
    assert value == 0 and grads["X"].shape == X.shape and grads["W"].shape == W.shape
    torch = pytest.importorskip("torch")
    x, w = torch.tensor(X, requires_grad=True), torch.tensor(W, requires_grad=True)
    matcalc.lambdify(source, ["X", "W"], target="torch").L(x, w).backward()
    assert x.grad.shape == X.shape and w.grad.shape == W.shape


@pytest.mark.parametrize(("source", "wrt", "x"), [
    ("a: []  # draw: positive\nt2 = exp(a)\nlog1p(t2)", ("t2",), "t2"),
    ("x: []\nt1 = sigmoid(x)\nsum(t1 ** log(t1))", ("t1",), "t1"),   # log σ(x) read through t1
    ("X: [n, m]; w: [m]; y: [n]\np = sigmoid(X @ w)\n"
     "L = -sum(y * log(p) + (1 - y) * log(1 - p))", ("p", "w"), "p"),
])
def test_the_gradient_of_a_bypassed_intermediate_goes_through_it(source: str, wrt: tuple,
                                                                   x: str) -> None:
    """log1p(exp(a)) is recognised as softplus(a), which does not read t2 = exp(a); ∂f/∂t2 is
    still 1/(1 + t2), not 0: a derivative with respect to an intermediate a recognised
    definition bypasses is taken through the program as written (fuzz, seed 170011)."""
    outcomes = fuzz.run_case(fuzz.Case(source, (("n", 3), ("m", 2)), draw=53840634, wrt=wrt,
                                       x=x, layout="denominator",
                                       paths=("derive", "steps", "numpy")), limit=60.0)
    assert [o.category for o in outcomes] == ["ok"] * 3, outcomes
    if x == "t2":                              # and its second derivative, −1 / (1 + t2)²
        assert matcalc.hessian(source, "t2").text().startswith("∂²f/∂t2² = −1 / (1 + t2)²")


def test_sympys_heuristic_gcd_giving_up_costs_a_form_not_the_answer() -> None:
    """SymPy's cancel raised HeuristicGCDFailed ("no luck") while simplifying this HVP: that
    form is dropped and the others are used (fuzz, seed 170011: an internal error)."""
    outcomes = fuzz.run_case(fuzz.Case("B: [n, n]\nt1 = std(B, -2)\nvar(cos(t1), ddof=1) - "
                                       "mean(t1)", (("n", 2),), draw=2134333929, wrt=("B",),
                                       x="B", layout="denominator", paths=("hvp",)), limit=60.0)
    assert [o.category for o in outcomes] == ["ok"], outcomes


def test_a_mask_is_never_the_first_factor_of_a_negated_product() -> None:
    """Small factors divided first must not put a mask first: `-(x > 0) / q * y` is NumPy's
    boolean negative, a TypeError (fuzz, seed 170013: the Hessian's generated code)."""
    source = ("A: [1, n]\nB: [n]  # draw: positive\nC: [n]\n"
              "sin(arctan(relu(mean(kron(B, B) * kron(A, C)))))")
    outcomes = fuzz.run_case(fuzz.Case(source, (("n", 1),), draw=3798228579, wrt=("A",),
                                       x="A", layout="denominator", paths=("hessian", "hvp")),
                             limit=60.0)
    assert [o.category for o in outcomes] == ["ok", "ok"], outcomes


def test_a_large_rational_expression_is_not_cancelled() -> None:
    """SymPy's cancel took 28 s on one term of the Hessian of arctan(var(y)) (440 operations,
    expanded first); terms that long are factored and expanded only, and the Hessian comes in
    well under the fuzz gate's 10 s (fuzz, seed 170014: a timeout)."""
    outcomes = fuzz.run_case(fuzz.Case("y: [n]\narctan(var(y))", (("n", 3),), draw=1142124357,
                                       wrt=("y",), x="y", layout="denominator",
                                       paths=("hessian",)), limit=10.0)
    assert [o.category for o in outcomes] == ["ok"], outcomes


def test_a_row_broadcast_against_the_identity_is_not_a_trace() -> None:
    """sum(I ⊙ 𝟙 bᵀ) is sum(b), not tr of the [1, m] row (a ShapeError in tidying an HVP)
    (fuzz, seed 170015)."""
    outcomes = fuzz.run_case(fuzz.Case("A: [m, m]  # draw: wc\nB: [1, m]  # draw: positive\n"
                                       "max(B + A) * trace(B + A)", (("m", 1),),
                                       draw=3061062868, wrt=("B",), x="B",
                                       layout="denominator", paths=("hvp",)), limit=60.0)
    assert [o.category for o in outcomes] == ["ok"], outcomes


@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_a_float32_hessian_through_a_commutation_stays_float32(target: str) -> None:
    """The commutation matrix of a Kronecker-form Hessian follows the inputs' dtype: torch
    raised float != double in float32, NumPy promoted to float64 (review)."""
    source = "X: [N, D]; W: [D, D]\nL = sum(tanh(X @ W.T @ W))"
    module = matcalc.lambdify(source, ["W"], target=target, emit=("hessian",))
    rng = np.random.default_rng(0)
    X, W = (rng.normal(size=s).astype(np.float32) for s in ((3, 2), (2, 2)))
    if target == "torch":
        torch = pytest.importorskip("torch")
        X, W = torch.from_numpy(X), torch.from_numpy(W)
    exact = matcalc.lambdify(source, ["W"], emit=("hessian",)).hessian(
        X=np.asarray(X, np.float64), W=np.asarray(W, np.float64))["W"]
    H = module.hessian(X=X, W=W)["W"]
    assert str(H.dtype).endswith("float32")
    np.testing.assert_allclose(np.asarray(H, np.float64), exact, rtol=1e-4, atol=1e-5)


LAYER_NORM_STD = """X: [N, D]; gain: [D]; shift: [D]; T: [N, D]
mu = mean(X, axis=-1, keepdims=True)
s = std(X, axis=-1, keepdims=True)
L = mean((gain * (X - mu) / (s + 1e-5) + shift - T) ** 2)"""


@pytest.mark.parametrize(("offset", "scale", "dtype", "tolerance"), [
    (50.0, 0.1, np.float32, 1e-3), (1e6, 1e-4, np.float64, 1e-4)])
def test_the_gradient_of_a_spread_does_not_cancel_catastrophically(
        offset: float, scale: float, dtype: type, tolerance: float) -> None:
    """A layer norm written with std, on data far from 0: the gradient reads s and sums (X − μ)
    terms, never sum(X²) − D μ² (9% off in float32 at 50 ± 0.1, NaN in float64 at 1e6 ± 1e-4).
    The loss is unchanged when X shifts, so its gradient at X + offset is the gradient at X."""
    f = matcalc.lambdify(LAYER_NORM_STD, ["X"])
    rng = np.random.default_rng(0)
    centred = rng.normal(size=(6, 8)) * scale
    arrays = {"gain": rng.normal(size=8), "shift": rng.normal(size=8),
              "T": rng.normal(size=(6, 8))}
    _, expected = f.value_and_grad(X=centred, **arrays)
    shifted = {k: v.astype(dtype) for k, v in {"X": centred + offset, **arrays}.items()}
    _, got = f.value_and_grad(**shifted)
    error = np.abs(got["X"] - expected["X"]).max() / np.abs(expected["X"]).max()
    assert error < tolerance
    text = matcalc.derive("X: [N, D]; L = sum(std(X, axis=0))", ["X"]).text()
    assert "sum(X²" not in text and "sqrt(sum((X − 𝟙 (sum(X, axis=0" in text


def test_a_one_by_one_value_gets_value_and_grad_as_derive_gets_its_gradient() -> None:
    """L = rᵀ r / (2N) is [1, 1]: derive differentiates its one entry, and so does the module
    (it offered only value_and_vjp, and --emit hessian was refused)."""
    f = matcalc.lambdify("X: [N, D]; y: [N, 1]; w: [D, 1]\nr = X @ w - y\nL = r.T @ r / (2 * N)",
                         ["w"], emit=("grad", "hessian", "hvp"))
    rng = np.random.default_rng(0)
    X, y, w, v = rng.normal(size=(5, 3)), rng.normal(size=(5, 1)), rng.normal(size=(3, 1)), \
        rng.normal(size=(3, 1))
    value, grads = f.value_and_grad(X=X, y=y, w=w)
    r = X @ w - y
    assert value.shape == (1, 1) and np.isclose(value[0, 0], (r.T @ r)[0, 0] / 10)
    assert np.allclose(grads["w"], X.T @ r / 5)
    assert np.allclose(f.hessian(X=X, y=y, w=w)["w"], X.T @ X / 5)
    assert np.allclose(f.hvp(X=X, y=y, w=w, v=v)["w"], X.T @ X @ v / 5)


def test_a_norm_along_an_axis_is_at_its_kink_when_one_row_is_zero() -> None:
    """norm(M, axis=1) is not differentiable at a zero row even when M is not zero: the harness
    redraws there (fuzz 310001 compared matcalc's 0/0 with torch's convention of 0)."""
    case = fuzz.Case("B: []  # draw: positive\nW: [n, 1]  # draw: positive\n"
                     "norm((B >= (W)) * B, axis=1)", (("n", 2),), draw=1837454011, wrt=("B",),
                     x="B", layout="numerator", paths=("numpy", "torch"))
    outcomes = fuzz.run_case(case, limit=60.0)
    assert all(o.category in ("ok", "skipped") for o in outcomes), outcomes


def test_merging_sums_leaves_alone_a_form_sympy_writes_with_an_absolute_value() -> None:
    """The Hessian of softmax_cross_entropy((x ⊙ x)^B, Y) at one entry: SymPy's form of the
    sums to merge had |x| in it, which the elementwise algebra cannot rebuild (fuzz 380001: an
    internal error on hvp)."""
    case = fuzz.Case("x: [1]  # draw: positive\nB: [1, 1]  # draw: positive\n"
                     "Y: [1, 1] onehot  # draw: onehot\nsoftmax_cross_entropy((x * x) ** B, Y)",
                     (), draw=3167772577, wrt=("x",), x="x", layout="numerator", paths=("hvp",))
    outcomes = fuzz.run_case(case, limit=60.0)
    assert [o.category for o in outcomes] == ["ok"], outcomes


def test_the_jax_and_emit_paths_pass_a_direction_by_the_functions_own_name() -> None:
    """With a variable named v, hvp's direction is v_1: the fuzz paths passed v=…, a false
    internal error of the harness."""
    source = "np: [n, n] symmetric\nv: [n]\nL = sum(eigvalsh(np) ** 2) * sum(v * v)"
    case = fuzz.Case(source, (("n", 3),), draw=1, wrt=("np", "v"), x="v",
                     paths=("jax", "emit"))
    outcomes = fuzz.run_case(case, limit=60.0)
    assert [o.category for o in outcomes] == ["ok", "ok"], outcomes
