"""Hessian of L2-regularised logistic regression: generated code vs hand-written NumPy.

N = 2000 examples, n = 500 features, float64, single-threaded. The reference is what an expert
writes, ``X.T @ (X * d[:, None]) / N + lam * I``; matcalc's code is generated from the loss alone
(``matcalc hessian``), and torch.func.hessian is timed too when torch is installed. Each time is
printed with its ratio to the hand-written one, measured in the same run.

    python benchmarks/hessian.py
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import timeit  # noqa: E402 - the thread counts must be set before NumPy loads
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from matcalc import lambdify  # noqa: E402

SOURCE = "X: [N, D]; w: [D]; y: [N]; lam: []\nmean(softplus(-y * (X @ w))) + lam / 2 * norm(w) ** 2"
N, D = 2000, 500


def hand_written(X, w, y, lam):
    """The logistic-regression Hessian as an expert writes it."""
    s = 1 / (1 + np.exp(y * (X @ w)))          # sigmoid(−y ⊙ X w)
    d = s * (1 - s) * y**2
    return X.T @ (X * d[:, None]) / X.shape[0] + lam * np.eye(X.shape[1])


def generated() -> Callable:
    """The ``hessian`` function of matcalc's generated module for the loss
    (``matcalc codegen --emit hessian``)."""
    module = lambdify(SOURCE, ["w"], emit=("hessian",))
    return lambda **arrays: module.hessian(**arrays)["w"]


def jax_hessian() -> Callable | None:
    """jax.hessian of the same loss, jit-compiled, or None without JAX."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy

    def loss(v, X, y, lam):
        return jnp.mean(jax.nn.softplus(-y * (X @ v))) + lam / 2 * (v @ v)

    compiled = jax.jit(jax.hessian(loss))
    return lambda X, w, y, lam: np.asarray(compiled(w, X, y, lam).block_until_ready())


def torch_hessian() -> Callable | None:
    """torch.func.hessian of the same loss, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)

    def run(X, w, y, lam):
        xt, yt = torch.from_numpy(X), torch.from_numpy(y)

        def loss(v):
            return torch.nn.functional.softplus(-yt * (xt @ v)).mean() + lam / 2 * (v @ v)

        return torch.func.hessian(loss)(torch.from_numpy(w)).numpy()

    return run


def best_time(f: Callable, arrays: dict, repeats: int = 7) -> float:
    return min(timeit.repeat(lambda: f(**arrays), number=1, repeat=repeats))


def main() -> None:
    rng = np.random.default_rng(0)
    arrays = {"X": rng.normal(size=(N, D)), "w": rng.normal(size=D) / np.sqrt(D),
              "y": rng.choice([-1.0, 1.0], size=N), "lam": 0.1}
    contenders = {"hand-written": hand_written, "matcalc": generated()}
    for name, maker in (("torch.func.hessian", torch_hessian), ("jax.hessian (jit)", jax_hessian)):
        run = maker()
        if run is not None:
            contenders[name] = run
    reference = hand_written(**arrays)
    base = best_time(hand_written, arrays)
    print(f"Hessian of L2-regularised logistic regression, N={N}, n={D}, float64, 1 thread")
    for name, f in contenders.items():
        assert np.allclose(f(**arrays), reference, rtol=1e-8, atol=1e-10), name
        seconds = base if name == "hand-written" else best_time(f, arrays)
        print(f"  {name:<20} {seconds * 1e3:9.2f} ms   {seconds / base:5.2f}x")


if __name__ == "__main__":
    main()
