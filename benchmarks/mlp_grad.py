"""Loss and all gradients of softmax cross-entropy MLPs (ReLU, leaky ReLU, GELU): generated module
vs hand-written NumPy.

Single-threaded float32, best of many repeats; PyTorch eager too when it is installed. Run with
``python benchmarks/mlp_grad.py``. Peak memory is measured with tracemalloc (NumPy reports its
allocations to it; PyTorch's do not show, so it gets no memory figure).
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import math  # noqa: E402
import timeit  # noqa: E402 - the thread counts must be set before NumPy loads
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.special import erf  # noqa: E402

from matcalc import lambdify  # noqa: E402

SOURCE = (Path(__file__).parent.parent / "examples" / "mlp.mc").read_text()
WRT = ["W1", "b1", "W2", "b2"]
SIZES = [(256, 784, 128, 10), (64, 64, 32, 10)]


def relu(z):
    """The activation and its derivative, as an expert computes them for backprop."""
    return np.maximum(z, 0), z > 0


def leaky_relu(z):
    return np.where(z > 0, z, 0.01 * z), np.where(z > 0, 1, 0.01).astype(z.dtype)


def gelu(z):
    cdf = 0.5 * (1 + erf(z / math.sqrt(2)))
    return z * cdf, cdf + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


ACTIVATIONS = {"relu": relu, "leaky_relu": leaky_relu, "gelu": gelu}


def hand_written(activation):
    """The textbook backprop an expert writes by hand (CS231n style)."""

    def value_and_grad(X, Y, W1, b1, W2, b2):
        n = X.shape[0]
        Z1 = X @ W1 + b1
        H1, slope = activation(Z1)
        Z2 = H1 @ W2 + b2
        shifted = Z2 - Z2.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -np.sum(Y * log_probs) / n
        dZ2 = (np.exp(log_probs) - Y) / n
        dW2 = H1.T @ dZ2
        db2 = dZ2.sum(axis=0)
        dZ1 = (dZ2 @ W2.T) * slope
        dW1 = X.T @ dZ1
        db1 = dZ1.sum(axis=0)
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    return value_and_grad


def torch_eager(name: str) -> Callable | None:
    """Loss and gradients by PyTorch autograd, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    activation = {"relu": torch.relu, "gelu": torch.nn.functional.gelu,
                  "leaky_relu": torch.nn.functional.leaky_relu}[name]

    def run(X, Y, W1, b1, W2, b2):
        params = [torch.from_numpy(p).requires_grad_() for p in (W1, b1, W2, b2)]
        w1, c1, w2, c2 = params
        z2 = activation(torch.from_numpy(X) @ w1 + c1) @ w2 + c2
        loss = -(torch.from_numpy(Y) * torch.log_softmax(z2, dim=1)).sum() / X.shape[0]
        grads = torch.autograd.grad(loss, params)
        return loss.item(), dict(zip(WRT, (g.numpy() for g in grads), strict=True))

    return run


def inputs(n: int, d: int, h: int, c: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"X": rng.normal(size=(n, d)), "Y": np.eye(c)[rng.integers(0, c, n)],
              "W1": rng.normal(0, d**-0.5, (d, h)), "b1": rng.normal(0, 0.1, h),
              "W2": rng.normal(0, h**-0.5, (h, c)), "b2": rng.normal(0, 0.1, c)}
    return {k: v.astype(np.float32) for k, v in arrays.items()}


def best_times(contenders: dict[str, Callable], arrays: dict, rounds: int = 30,
               budget: float = 0.05) -> dict[str, float]:
    """Best time of one call for each contender, rounds interleaved so that clock drift and
    cache state affect them alike."""
    timers = {name: timeit.Timer(lambda fn=fn: fn(**arrays)) for name, fn in contenders.items()}
    numbers = {name: max(1, int(budget / timer.timeit(1))) for name, timer in timers.items()}
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(numbers[name]) / numbers[name])
    return best


def peak_memory(fn: Callable, arrays: dict) -> int:
    """Peak bytes allocated during one call."""
    fn(**arrays)
    tracemalloc.start()
    fn(**arrays)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    for name, activation in ACTIVATIONS.items():
        source = SOURCE.replace("relu(Z1)", f"{name}(Z1)")
        reference_fn = hand_written(activation)
        contenders = {"matcalc": lambdify(source, WRT).value_and_grad,
                      "hand-written": reference_fn, "pytorch": torch_eager(name)}
        contenders = {k: fn for k, fn in contenders.items() if fn is not None}
        for n, d, h, c in SIZES:
            arrays = inputs(n, d, h, c)
            reference = reference_fn(**arrays)
            for k, fn in contenders.items():
                loss, grads = fn(**arrays)
                assert np.isclose(loss, reference[0], rtol=1e-4), k
                assert all(np.allclose(grads[w], reference[1][w], atol=1e-5) for w in WRT), k
            times = best_times(contenders, arrays)
            base_time = times["hand-written"]
            base_memory = peak_memory(reference_fn, arrays)
            print(f"{name} MLP {n}x{d}->{h}->{c} float32, 1 thread")
            for k, seconds in times.items():
                memory = ("" if k == "pytorch" else
                          f"   peak memory {peak_memory(contenders[k], arrays) / base_memory:.2f}x")
                print(f"  {k:<13}{seconds * 1e6:9.1f} us   {seconds / base_time:.2f}x{memory}")


if __name__ == "__main__":
    main()
