"""``codegen --target jax``: a jax.numpy function whose derived gradient jax.grad, jit and vmap
use (through jax.custom_vjp), equal to the NumPy module's; and its ``--emit`` functions equal to
jax.hessian, jax.jacrev and jax.jvp of the function itself. Skipped without JAX."""

from __future__ import annotations

import numpy as np
import pytest

from matcalc import lambdify, parse
from matcalc.proofs.inputs import random_inputs

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

PROGRAMS = {
    "mlp": (open("examples/mlp.mc").read(), ["W1", "b1", "W2", "b2"]),
    "labels": ("X: [N, D]; W: [D, C]; y: [N] labels\nL = softmax_cross_entropy(X @ W, y)", ["W"]),
    "logistic": ("X: [N, D]; y: [N]; w: [D]; lam: []\np = sigmoid(X @ w)\n"
                 "L = -mean(y * log(p) + (1 - y) * log(1 - p)) + lam / 2 * sum(w ** 2)", ["w"]),
    "layer norm": ("X: [N, D]; g: [D]; c: [D]\nxc = X - mean(X, axis=1, keepdims=True)\n"
                   "r = 1 / sqrt(mean(xc ** 2, axis=1, keepdims=True) + 1e-5)\n"
                   "L = sum(tanh(xc * r * g + c))", ["X", "g"]),
}


def inputs(source: str, seed: int = 0) -> dict[str, np.ndarray]:
    program = parse(source)
    rng = np.random.default_rng(seed)
    return random_inputs(program, {d: int(rng.integers(2, 5)) for d in program.dims}, rng)


@pytest.mark.parametrize("name", PROGRAMS)
def test_jax_grad_jit_and_vmap_use_the_derived_gradient(name: str) -> None:
    source, wrt = PROGRAMS[name]
    arrays = inputs(source)
    module = lambdify(source, wrt, target="jax")
    want_value, want = lambdify(source, wrt).value_and_grad(**arrays)
    f = getattr(module, module.__all__[0])
    order = list(parse(source).variables)
    positions = tuple(order.index(w) for w in wrt)
    args = [jnp.asarray(arrays[n]) for n in order]
    value, grads = jax.jit(jax.value_and_grad(f, argnums=positions))(*args)
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-12)
    for w, g in zip(wrt, grads, strict=True):
        np.testing.assert_allclose(np.asarray(g), want[w], rtol=1e-10, atol=1e-12)
    batched = jax.vmap(jax.grad(f, argnums=positions[0]), in_axes=(
        *[None] * positions[0], 0, *[None] * (len(order) - positions[0] - 1)))
    stack = jnp.stack([args[positions[0]], 2 * args[positions[0]]])
    first = batched(*args[:positions[0]], stack, *args[positions[0] + 1:])[0]
    np.testing.assert_allclose(np.asarray(first), want[wrt[0]], rtol=1e-10, atol=1e-12)


def test_the_emitted_second_derivatives_in_jax_match_jax_itself() -> None:
    source, wrt = PROGRAMS["logistic"]
    arrays = inputs(source, 3)
    module = lambdify(source, wrt, target="jax", emit=("grad", "hessian", "hvp", "jvp"))
    args = {k: jnp.asarray(v) for k, v in arrays.items()}

    def loss(w):
        return module.L(args["X"], args["y"], w, args["lam"])

    reference = lambdify(source, wrt)
    _, grads = reference.value_and_grad(**arrays)
    hessian = np.asarray(module.hessian(**args)["w"])
    rng = np.random.default_rng(4)
    v = rng.normal(size=arrays["w"].shape)
    np.testing.assert_allclose(hessian @ v, np.asarray(module.hvp(**args, v=jnp.asarray(v))["w"]),
                               rtol=1e-10)
    np.testing.assert_allclose(np.asarray(jax.jacrev(jax.grad(loss))(args["w"])), hessian,
                               rtol=1e-9, atol=1e-12)
    _, tangent = module.jvp(**args, tangents={"w": jnp.asarray(v)})
    np.testing.assert_allclose(float(tangent), grads["w"] @ v, rtol=1e-10)


def test_one_hot_targets_closed_over_under_jit_are_checked_and_then_plain_calls_work() -> None:
    """Under jit, data the function closes over is traced: the one-hot check, made by NumPy,
    skips a tracer, keeps no traced array, and a later plain call checks and computes."""
    source = "X: [N, D]; Y: [N, C] onehot; W: [D, C]\nL = softmax_cross_entropy(X @ W, Y)"
    module = lambdify(source, ["W"], target="jax", emit=("grad", "hvp"))
    rng = np.random.default_rng(0)
    X, Y, W = rng.normal(size=(5, 3)), np.eye(4)[rng.integers(0, 4, 5)], rng.normal(size=(3, 4))
    traced = jax.jit(lambda W, v: module.hvp(X, Y, W, v))(W, W)
    plain = module.hvp(X, Y, W, W)
    expected = lambdify(source, ["W"], emit=("hvp",)).hvp(X=X, Y=Y, W=W, v=W)
    for got in (traced, plain):
        np.testing.assert_allclose(np.asarray(got["W"]), expected["W"], rtol=1e-12)


def test_grad_of_grad_of_a_symmetric_input_is_the_hessian_among_symmetric_matrices() -> None:
    """The forward pass takes S's symmetric part, so that JAX's derivative of the derived
    gradient (grad of grad) acts on symmetric directions as the emitted ``hvp`` does: equal to
    it, and symmetric (before, right only in its symmetric part)."""
    source = "S: [n, n] symmetric\nb: [n]\nf = b @ inv(S) @ b + logdet(S)"
    module = lambdify(source, ["S"], target="jax", emit=("grad", "hvp"))
    rng = np.random.default_rng(1)
    a, b, v = rng.normal(size=(4, 4)), rng.normal(size=4), rng.normal(size=(4, 4))
    s, v = a @ a.T + 4 * np.eye(4), v + v.T
    grad = jax.grad(module.f)
    twice = np.asarray(jax.grad(lambda s: jnp.sum(grad(s, b) * v))(jnp.asarray(s)))
    np.testing.assert_allclose(twice, twice.T, atol=1e-15)
    np.testing.assert_allclose(twice, np.asarray(module.hvp(s, b, v=v)["S"]), rtol=1e-12,
                               atol=1e-14)


def test_the_mlp_hvp_in_jax_equals_the_numpy_modules() -> None:
    source, wrt = PROGRAMS["mlp"]
    arrays = inputs(source, 5)
    rng = np.random.default_rng(6)
    v = {w: rng.normal(size=arrays[w].shape) for w in wrt}
    want = lambdify(source, wrt, emit=("hvp",)).hvp(**arrays, v=v)
    module = lambdify(source, wrt, target="jax", emit=("hvp",))
    got = jax.jit(lambda a, t: module.hvp(**a, v=t))(arrays, v)
    for w in wrt:
        np.testing.assert_allclose(np.asarray(got[w]), want[w], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
def test_a_direction_of_a_symmetric_variable_is_taken_by_its_symmetric_part(target: str
                                                                             ) -> None:
    """hvp and jvp act on symmetric directions; a non-symmetric one gave numbers that were
    neither derivative (the derivation assumes Vᵀ = V). It is projected, as the JAX forward
    pass projects S: the numbers are those of f(sym(S)) along V."""
    torch = pytest.importorskip("torch")
    source = "S: [n, n] symmetric; x: [n]; y: [n]\nL = x @ S @ y + sum(S * S * S)"
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    s, (x, y), v = a + a.T, rng.normal(size=(2, 3)), np.triu(rng.normal(size=(3, 3)))

    def f(m):
        m = (m + m.T) / 2
        return torch.tensor(x) @ m @ torch.tensor(y) + (m ** 3).sum()

    _, want_jvp = torch.func.jvp(f, (torch.tensor(s),), (torch.tensor(v),))
    _, want_hvp = torch.func.jvp(torch.func.grad(f), (torch.tensor(s),),
                                 (torch.tensor((v + v.T) / 2),))
    module = lambdify(source, ["S"], target=target, emit=("hvp", "jvp"))
    given = torch.tensor if target == "torch" else np.asarray
    arrays = [given(s), given(x), given(y)]
    _, tangent = module.jvp(*arrays, {"S": given(v)})
    np.testing.assert_allclose(float(tangent), float(want_jvp), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(module.hvp(*arrays, given(v))["S"]),
                               want_hvp.numpy(), rtol=1e-12, atol=1e-14)
