"""Hessian-vector products: matcalc's generated ``hvp`` vs torch.func (jvp of grad) and JAX
(jax.jvp of jax.grad, jit-compiled), measured in the same run.

Two losses: the L2-regularised logistic regression (N = 2000, n = 500, float64) and the
two-layer ReLU MLP of examples/mlp.mc (256 × 784 → 128 → 10, float32, the Hessian in all four
parameters together). One thread; best of many repeats. matcalc's is timed twice: its NumPy
module, and its ``--target jax`` module's ``hvp`` under ``jax.jit`` (the same derived formula,
compiled by XLA as JAX's own is). Each time is printed with its ratio to the faster of
torch.func and JAX. Goal: generated ≤ 1.0x. Run with ``python benchmarks/hvp.py``.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")

import timeit  # noqa: E402 - the thread counts must be set before NumPy loads
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from matcalc import lambdify  # noqa: E402

LOGISTIC = ("X: [N, D]; y: [N]; w: [D]; lam: []\n"
            "L = mean(softplus(-y * (X @ w))) + lam / 2 * sum(w ** 2)")
MLP = (Path(__file__).parent.parent / "examples" / "mlp.mc").read_text()
MLP_WRT = ["W1", "b1", "W2", "b2"]


def best_time(f: Callable[[], object], repeats: int = 9) -> float:
    return min(timeit.repeat(f, number=3, repeat=repeats)) / 3


def logistic_case(rng: np.random.Generator) -> tuple[dict, dict]:
    arrays = {"X": rng.normal(size=(2000, 500)), "y": rng.choice([-1.0, 1.0], size=2000),
              "w": rng.normal(size=500) / np.sqrt(500), "lam": np.float64(0.1)}
    return arrays, {"w": rng.normal(size=500)}


def mlp_case(rng: np.random.Generator) -> tuple[dict, dict]:
    n, d, h, c = 256, 784, 128, 10
    f32 = np.float32
    arrays = {"X": rng.normal(size=(n, d)).astype(f32),
              "Y": np.eye(c, dtype=f32)[rng.integers(0, c, n)],
              "W1": (rng.normal(size=(d, h)) * np.sqrt(2 / d)).astype(f32),
              "b1": np.zeros(h, f32), "W2": (rng.normal(size=(h, c)) / np.sqrt(h)).astype(f32),
              "b2": np.zeros(c, f32)}
    return arrays, {w: rng.normal(size=arrays[w].shape).astype(f32) for w in MLP_WRT}


def torch_loss(name: str):
    import torch
    if name == "logistic":
        return lambda X, y, lam, w: (torch.nn.functional.softplus(-y * (X @ w)).mean()
                                     + lam / 2 * (w @ w))

    def mlp(X, Y, W1, b1, W2, b2):
        logits = torch.relu(X @ W1 + b1) @ W2 + b2
        return -(Y * torch.log_softmax(logits, dim=1)).sum() / X.shape[0]

    return mlp


def jax_loss(name: str):
    import jax
    jnp = jax.numpy
    if name == "logistic":
        return lambda X, y, lam, w: jnp.mean(jax.nn.softplus(-y * (X @ w))) + lam / 2 * (w @ w)

    def mlp(X, Y, W1, b1, W2, b2):
        logits = jax.nn.relu(X @ W1 + b1) @ W2 + b2
        return -(Y * jax.nn.log_softmax(logits, axis=1)).sum() / X.shape[0]

    return mlp


def torch_hvp(name: str, arrays: dict, v: dict) -> Callable[[], object] | None:
    """torch.func.jvp of torch.func.grad, in the parameters, the data fixed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    data = {k: torch.from_numpy(np.asarray(a)) for k, a in arrays.items() if k not in v}
    params = tuple(torch.from_numpy(arrays[k]) for k in v)
    tangents = tuple(torch.from_numpy(t) for t in v.values())
    loss = torch_loss(name)
    names = list(v)

    def of_params(*ps):
        return loss(**data, **dict(zip(names, ps, strict=True)))

    grad = torch.func.grad(of_params, argnums=tuple(range(len(names))))
    return lambda: torch.func.jvp(grad, params, tangents)[1]


def jax_hvp(name: str, arrays: dict, v: dict) -> Callable[[], object] | None:
    """jax.jvp of jax.grad, jit-compiled, the data passed as arguments as matcalc's are (data a
    jitted function closes over is compiled into it as constants, and XLA then folds and lays
    out work on X before the clock starts: that measures the compiler, not the HVP)."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    data = {k: jax.numpy.asarray(a) for k, a in arrays.items() if k not in v}
    params = tuple(jax.numpy.asarray(arrays[k]) for k in v)
    tangents = tuple(jax.numpy.asarray(t) for t in v.values())
    loss = jax_loss(name)
    names = list(v)

    def hvp(data, ps, ts):
        def of_params(*ps):
            return loss(**data, **dict(zip(names, ps, strict=True)))

        grad = jax.grad(of_params, argnums=tuple(range(len(names))))
        return jax.jvp(grad, ps, ts)[1]

    compiled = jax.jit(hvp)
    compiled(data, params, tangents)
    return lambda: jax.block_until_ready(compiled(data, params, tangents))


def matcalc_jax_hvp(source: str, wrt: list[str], arrays: dict, direction
                    ) -> Callable[[], object] | None:
    """The ``hvp`` of matcalc's ``--target jax`` module, jit-compiled, or None without JAX."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    module = lambdify(source, wrt, target="jax", emit=("hvp",))
    data = {k: jax.numpy.asarray(a) for k, a in arrays.items()}
    v = jax.tree_util.tree_map(jax.numpy.asarray, direction)
    compiled = jax.jit(lambda d, t: module.hvp(**d, v=t))
    compiled(data, v)
    return lambda: jax.block_until_ready(compiled(data, v))


def main() -> None:
    rng = np.random.default_rng(0)
    for name, source, wrt, case in (("logistic", LOGISTIC, ["w"], logistic_case),
                                    ("mlp", MLP, MLP_WRT, mlp_case)):
        arrays, v = case(rng)
        module = lambdify(source, wrt, emit=("hvp",))
        direction = v["w"] if len(wrt) == 1 else v
        mine = module.hvp(**arrays, v=direction)
        contenders = {"matcalc hvp": lambda m=module, a=arrays, d=direction: m.hvp(**a, v=d)}
        jitted = matcalc_jax_hvp(source, wrt, arrays, direction)
        if jitted is not None:
            contenders["matcalc hvp, jax (jit)"] = jitted
        for label, maker in (("torch.func jvp(grad)", torch_hvp),
                             ("jax jvp(grad) (jit)", jax_hvp)):
            run = maker(name, arrays, v)
            if run is not None:
                theirs = run()
                for k, got in zip(v, theirs, strict=True):
                    np.testing.assert_allclose(np.asarray(got), mine[k], rtol=2e-3, atol=1e-4)
                contenders[label] = run
        times = {label: best_time(f) for label, f in contenders.items()}
        others = [t for label, t in times.items() if not label.startswith("matcalc")]
        base = min(others) if others else times["matcalc hvp"]
        print(f"{name}: Hessian-vector product in {', '.join(wrt)}, one thread")
        for label, t in times.items():
            print(f"  {label:<22} {t * 1e3:9.3f} ms   {t / base:5.2f}x the faster of torch/JAX")


if __name__ == "__main__":
    main()
