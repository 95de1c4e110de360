"""Kernels: what generated code computes with one operation of its own. A program's layer and
batch norms, spelled out, are recognised for code generation as ``standardize`` (x − μ) /
√(σ² + ε); its rule is CS231n's backward pass, checked against central differences; torch code
calls torch's layer-norm kernels, NumPy code the short backward pass; every path of the fuzz
harness agrees with torch.autograd, second derivatives included."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy

from matcalc import parse
from matcalc.core.engine import vector_jacobian_products
from matcalc.core.ir import make, postorder, var
from matcalc.core.rewrites import KERNELS
from matcalc.core.simplify import reduce_sum
from matcalc.forms.generated import generate
from matcalc.language.lowering import Program
from matcalc.proofs.evaluation import evaluator, function_value

LAYER_NORM = ("X: [N, D]; g: [D]; c: [D]; W: [D, K]\n"
              "Z = X - mean(X, axis=-1, keepdims=True)\n"
              "r = 1 / sqrt(mean(Z * Z, axis=-1, keepdims=True) + 1e-5)\n"
              "L = sum(tanh((Z * r * g + c) @ W))")
BOOK_LAYER_NORM = ("X: [N, D]; G: [N, D]; g: [D]; c: [D]\n"
                   "xc = X - mean(X, axis=1, keepdims=True)\n"
                   "r = 1 / sqrt(mean(xc ** 2, axis=1, keepdims=True) + 1e-5)\nxhat = xc * r\n"
                   "L = sum(G * sin(xhat * g + c))")
BATCH_NORM = ("X: [N, D]; G: [N, D]; gamma: [D]; beta: [D]\nmu = mean(X, axis=0)\nxc = X - mu\n"
              "var = mean(xc ** 2, axis=0)\nxhat = xc / sqrt(var + 1e-5)\n"
              "L = sum(G * (gamma * xhat + beta) ** 2)")
STACKED = ("X: [B, T, D]; g: [D]; W: [D, D]\n"
           "Z = X - mean(X, axis=2, keepdims=True)\n"
           "H = g * Z / sqrt(mean(Z ** 2, axis=2, keepdims=True) + 1e-5)\n"
           "L = sum(softmax(H @ W, axis=-1) * X)")
NO_GAIN = ("X: [N, D]\n"
           "L = sum(sin((X - mean(X, axis=-1, keepdims=True)) / sqrt(var(X, axis=-1, keepdims=True)"
           " + 1e-5)))")
VECTOR = "x: [D]; c: [D]\nsum(c * exp((x - mean(x, axis=0, keepdims=True)) * (var(x, axis=0, " \
    "keepdims=True) + 0.1) ** -0.5))"
STACK_NO_GAIN = ("X: [B, T, D]\nZ = X - mean(X, axis=-1, keepdims=True)\n"
                 "r = 1 / sqrt(mean(Z * Z, axis=-1, keepdims=True) + 1e-5)\n"
                 "L = sum(tanh(Z * r + 1))")
PROGRAMS = {"layer norm": LAYER_NORM, "layer norm as the book writes it": BOOK_LAYER_NORM,
            "batch norm": BATCH_NORM, "layer norm of a stack": STACKED,
            "layer norm without a gain": NO_GAIN, "a vector standardised": VECTOR,
            "a stack standardised, shifted": STACK_NO_GAIN}
NOT_STANDARDISED = {
    "centred along another axis": "X: [N, D]\nZ = X - mean(X, axis=0, keepdims=True)\n"
    "sum(Z / sqrt(mean(Z ** 2, axis=1, keepdims=True) + 1e-5))",
    "another array's spread": "X: [N, D]; Y: [N, D]\nZ = X - mean(X, axis=1, keepdims=True)\n"
    "sum(Z / sqrt(mean(Y ** 2, axis=1, keepdims=True) + 1e-5))",
    "a mean along the last axis broadcast as a row": "X: [n, n]\nZ = X - mean(X, axis=1)\n"
    "sum(Z / sqrt(mean(Z ** 2, axis=1) + 1e-5))",
}


def standardizations(program: Program) -> list:
    return [n for n in postorder([program.function]) if n.op == "standardize"]


def arrays_for(program: Program, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = {"N": 5, "D": 4, "K": 3, "B": 2, "T": 3, "n": 4}
    return {name: rng.normal(size=tuple(int(d.subs({s: sizes[str(s)] for s in d.free_symbols}))
                                        for d in node.shape))
            for name, node in program.variables.items()}


def test_every_kernel_has_a_case() -> None:
    assert [rule.name for rule in KERNELS] == ["standardisation"]


@pytest.mark.parametrize("name", PROGRAMS)
def test_a_spelled_out_normalisation_is_standardize_and_equal_to_it(name: str) -> None:
    """Recognised for code generation only (printing keeps the program's names), and its
    value is the program's, computed by NumPy from the source text."""
    written = parse(PROGRAMS[name])
    program = written.with_kernels()
    assert not standardizations(written) and standardizations(program)
    arrays = arrays_for(program)
    (mine,) = evaluator(program, [("value", program.function)])(**arrays)
    assert np.isclose(mine, function_value(written)(**arrays), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NOT_STANDARDISED)
def test_what_only_looks_like_a_normalisation_is_left_alone(name: str) -> None:
    assert not standardizations(parse(NOT_STANDARDISED[name]).with_kernels())


@pytest.mark.parametrize(("axis", "eps"), [(1, sympy.Rational(1, 10**5)), (0, sympy.Integer(0))])
def test_the_rule_of_standardize_agrees_with_central_differences(axis: int, eps) -> None:
    """x̄ = (Ḡ − mean(Ḡ) − x̂ ⊙ mean(Ḡ ⊙ x̂)) / √(σ² + ε), against central differences of
    f = ⟨W, standardize(A)²⟩ in float64."""
    n, m = sympy.symbols("n m", positive=True, integer=True)
    a, w = var("A", (n, m)), var("W", (n, m))
    f = reduce_sum(w * make("standardize", (a,), (axis, eps)) ** 2)
    (gradient,) = vector_jacobian_products(f, [a])[0].values()
    program = Program("", variables={"A": a, "W": w}, function=f)
    run = evaluator(program, [("f", f), ("g", gradient)])
    rng = np.random.default_rng(4)
    A, W = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    _, got = run(A=A, W=W)
    h, expected = 1e-6, np.zeros_like(A)
    for index in np.ndindex(A.shape):
        step = np.zeros_like(A)
        step[index] = h
        (up, _), (down, _) = run(A=A + step, W=W), run(A=A - step, W=W)
        expected[index] = (up - down) / (2 * h)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_path_agrees_with_torch(name: str) -> None:
    """derive and steps (the program as written), NumPy, torch and torch.func code (the
    kernels), Jacobian, Hessian and HVP (standardize's rule differentiated again)."""
    pytest.importorskip("torch")                   # the harness's reference is torch
    from matcalc.proofs import fuzz

    source = PROGRAMS[name]
    program = parse(source)
    used = sorted({str(s) for v in program.variables.values() for d in v.shape
                   for s in d.free_symbols})
    sizes = {"N": 5, "D": 4, "K": 3, "B": 2, "T": 3}
    wrt = tuple(program.variables)
    case = fuzz.Case(source, tuple((d, sizes[d]) for d in used), draw=7, wrt=wrt, x=wrt[0],
                     layout="denominator", paths=(*fuzz.SCALAR_PATHS, "torch.func"))
    outcomes = fuzz.run_case(case, limit=60.0)
    assert {o.path for o in outcomes} >= {*fuzz.SCALAR_PATHS, "torch.func"}
    bad = [o for o in outcomes if o.category not in ("ok", "skipped")]
    assert not bad, "\n".join(f"{o.path}: {o.category} {o.message}\n{o.detail}" for o in bad)


@pytest.mark.parametrize("name", PROGRAMS)
def test_second_derivatives_through_the_torch_module_are_torchs(name: str) -> None:
    """jacrev of jacrev of the generated torch function (its backward differentiated again,
    kernels included) equals torch.func.hessian of the program evaluated from its text."""
    torch = pytest.importorskip("torch")
    from torch.func import hessian, jacrev

    from matcalc import lambdify
    from matcalc.proofs.torch_reference import torch_function

    program = parse(PROGRAMS[name])
    names = list(program.variables)
    module = lambdify(PROGRAMS[name], names, target="torch")
    generated = getattr(module, module.__all__[1])
    arrays = {k: torch.from_numpy(v) for k, v in arrays_for(program, 5).items()}
    reference = torch_function(program, own_nodes=False)
    x, rest = names[0], {k: v for k, v in arrays.items() if k != names[0]}

    def ours(t):
        return generated(**{x: t, **rest})

    def theirs(t):
        return reference(**{x: t, **rest})

    assert torch.allclose(ours(arrays[x]), theirs(arrays[x]), rtol=1e-12, atol=1e-12)
    mine, expected = jacrev(jacrev(ours))(arrays[x]), hessian(theirs)(arrays[x])
    assert torch.allclose(mine, expected, rtol=1e-8, atol=1e-8), (mine - expected).abs().max()


def test_torch_code_calls_the_layer_norm_kernels() -> None:
    """Forward: one native_layer_norm, whose mean and 1/std backward reads; backward: one
    native_layer_norm_backward with the gain inside; gain and shift: one addcmul. Twice
    differentiated (jacrev of grad) it equals torch.func.hessian of the program in torch."""
    torch = pytest.importorskip("torch")
    from torch.func import hessian, jacrev

    from matcalc import lambdify

    code = generate(LAYER_NORM, ["X", "g", "c", "W"], "torch")
    assert "_layer_norm(X, " in code and "_layer_norm_backward(" in code and "xhat=xhat_X" in code
    assert re.search(r"torch\.addcmul\(c, (g, xhat_X|xhat_X, g)\)", code)   # (factors in the
    assert "var_mean" not in code                                   # order nodes were made)
    numpy_code = generate(LAYER_NORM, ["X", "g", "c", "W"])
    assert numpy_code.count("np.sqrt(") == 2      # 1/std once, in value and value_and_grad
    module = lambdify(LAYER_NORM, ["X", "g", "c", "W"], target="torch")
    arrays = {k: torch.from_numpy(v) for k, v in arrays_for(parse(LAYER_NORM), 3).items()}

    def by_torch(x):
        y = torch.nn.functional.layer_norm(x, x.shape[-1:], arrays["g"], arrays["c"], 1e-5)
        return torch.tanh(y @ arrays["W"]).sum()

    def ours(x):
        return module.L(x, arrays["g"], arrays["c"], arrays["W"])

    x = arrays["X"]
    assert torch.allclose(ours(x), by_torch(x), rtol=1e-12, atol=1e-12)
    mine = jacrev(jacrev(ours))(x)
    assert torch.allclose(mine, hessian(by_torch)(x), rtol=1e-9, atol=1e-9)


def test_printed_derivatives_keep_the_programs_names() -> None:
    """Recognition for kernels is for code only: derive prints the book's form with r and
    xhat, as written."""
    from matcalc import derive

    text = derive(BOOK_LAYER_NORM, ["X"]).text()
    assert "standardize" not in text and "xhat ⊙ sum(" in text
    assert text.startswith("∂L/∂X = r 𝟙ᵀ ⊙ (")          # CS231n's form, by the program's names


def test_mixed_second_derivatives_through_the_gain_gradient() -> None:
    """∂/∂X (∂f/∂g) through the torch module, where the layer norm's backward kernel gives the
    gain's gradient and grad_output is inside its cotangent (jacrev batches it): equal to
    torch.func's on the program evaluated from its text (review: the kernel's own gain
    gradient, batched, lost how μ and 1/σ depend on X)."""
    torch = pytest.importorskip("torch")
    from torch.func import jacrev

    from matcalc import lambdify
    from matcalc.proofs.torch_reference import torch_function

    source = ("X: [N, D]; g: [D]\nZ = X - mean(X, axis=-1, keepdims=True)\n"
              "H = Z / sqrt(mean(Z * Z, axis=-1, keepdims=True) + 1e-5) * g\n"
              "L = sum(tanh(H) * X)")
    module = lambdify(source, ["X", "g"], target="torch")
    assert "xhat=" in generate(source, ["X", "g"], "torch")
    reference = torch_function(parse(source), own_nodes=False)
    arrays = {k: torch.from_numpy(v) for k, v in arrays_for(parse(source), 6).items()}
    for f in (module.L, lambda X, g: reference(X=X, g=g)):
        blocks = [jacrev(jacrev(f, argnums=i), argnums=j)(arrays["X"], arrays["g"])
                  for i in (0, 1) for j in (0, 1)]
        if f is module.L:
            mine = blocks
        else:
            for a, b in zip(mine, blocks, strict=True):
                assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), (a - b).abs().max()


@pytest.mark.parametrize("name", PROGRAMS)
def test_the_jax_target_agrees_with_the_numpy_module(name: str) -> None:
    """jax.grad through the JAX target's custom VJP (standardize as its primitives) equals the
    NumPy module's gradients, which the every-path test checks against torch."""
    jax = pytest.importorskip("jax")
    from matcalc import lambdify

    jax.config.update("jax_enable_x64", True)
    program = parse(PROGRAMS[name])
    names = list(program.variables)
    arrays = arrays_for(program, 2)
    value, grads = lambdify(PROGRAMS[name], names).value_and_grad(**arrays)
    module = lambdify(PROGRAMS[name], names, target="jax")
    f = getattr(module, module.__all__[0])
    args = [arrays[k] for k in names]
    assert np.isclose(float(f(*args)), value, rtol=1e-12, atol=1e-12)
    mine = jax.grad(f, argnums=tuple(range(len(names))))(*args)
    for name_, g in zip(names, mine, strict=True):
        np.testing.assert_allclose(np.asarray(g), grads[name_], rtol=1e-10, atol=1e-12)
