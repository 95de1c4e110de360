"""Jacobians: matcalc's generated ``value_and_jacobian`` vs jax.jacrev (jit-compiled) and
torch.func.jacrev, measured in the same run.

The softmax of n = 512 entries (diag(p) − p pᵀ) and a tanh layer y = tanh(W x + b), m = 256,
n = 512, with respect to x (diag(1 − y²) W); float64, one thread, best of many repeats. Each
time is printed with its ratio to JAX's. Goal: generated ≤ 1.0x. Run with
``python benchmarks/jacobian.py``.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")

import timeit  # noqa: E402 - the thread counts must be set before NumPy loads
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from matcalc import lambdify  # noqa: E402

CASES = {
    "softmax": ("z: [n]\np = softmax(z)", "z"),
    "tanh layer": ("x: [n]; W: [m, n]; b: [m]\ny = tanh(W @ x + b)", "x"),
}


def best_time(f: Callable[[], object]) -> float:
    return min(timeit.repeat(f, number=20, repeat=9)) / 20


def inputs(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if name == "softmax":
        return {"z": rng.normal(size=512)}
    return {"x": rng.normal(size=512), "W": rng.normal(size=(256, 512)) / np.sqrt(512),
            "b": rng.normal(size=256)}


def jax_jacobian(name: str, arrays: dict, wrt: str) -> Callable[[], object] | None:
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    fixed = {k: jnp.asarray(v) for k, v in arrays.items()}

    def f(v):
        if name == "softmax":
            return jax.nn.softmax(v)
        return jnp.tanh(fixed["W"] @ v + fixed["b"])

    compiled = jax.jit(jax.jacrev(f))
    point = fixed[wrt]
    compiled(point)
    return lambda: jax.block_until_ready(compiled(point))


def torch_jacobian(name: str, arrays: dict, wrt: str) -> Callable[[], object] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    fixed = {k: torch.from_numpy(v) for k, v in arrays.items()}

    def f(v):
        if name == "softmax":
            return torch.softmax(v, 0)
        return torch.tanh(fixed["W"] @ v + fixed["b"])

    jac = torch.func.jacrev(f)
    return lambda: jac(fixed[wrt])


def main() -> None:
    rng = np.random.default_rng(0)
    for name, (source, wrt) in CASES.items():
        arrays = inputs(name, rng)
        module = lambdify(source, [wrt], emit=("jacobian",))
        mine = module.value_and_jacobian(**arrays)[1][wrt]
        contenders = {"matcalc": lambda m=module, a=arrays: m.value_and_jacobian(**a)}
        for label, maker in (("jax.jacrev (jit)", jax_jacobian),
                             ("torch.func.jacrev", torch_jacobian)):
            run = maker(name, arrays, wrt)
            if run is not None:
                np.testing.assert_allclose(np.asarray(run()), mine, rtol=1e-10, atol=1e-12)
                contenders[label] = run
        times = {label: best_time(f) for label, f in contenders.items()}
        base = times.get("jax.jacrev (jit)", times["matcalc"])
        print(f"Jacobian of the {name} with respect to {wrt}, float64, one thread")
        for label, t in times.items():
            print(f"  {label:<20} {t * 1e6:9.1f} µs   {t / base:5.2f}x JAX's")


if __name__ == "__main__":
    main()
