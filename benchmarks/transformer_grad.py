"""Loss and all 29 gradients of examples/transformer.mc (a 2-block GPT) at B=16, T=64, d=128,
h=4, V=64, float32, one thread: matcalc's generated NumPy module and generated torch
autograd.Function against PyTorch eager autograd on the same model written in PyTorch
(examples/transformer_torch.py), measured in the same run; then the time to derive the whole
model and to generate its code.

Each contender is timed alone in a fresh process, as a user runs it. Peak memory is how far
the resident memory's high-water mark rises during a call, each contender in a fresh process,
so NumPy and PyTorch allocations count alike (Linux only).
Run with ``python benchmarks/transformer_grad.py``.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import ctypes  # noqa: E402 - the thread counts must be set before NumPy loads
import gc  # noqa: E402
import importlib.util  # noqa: E402
import multiprocessing  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from matcalc import derive, lambdify, parse  # noqa: E402
from matcalc.forms.generated import generate  # noqa: E402

SIZES = {"B": 16, "T": 64, "V": 64, "h": 4, "k": 32}
FIXED = {"h": SIZES["h"]}
_spec = importlib.util.spec_from_file_location(
    "transformer_torch", Path(__file__).parent.parent / "examples" / "transformer_torch.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


CONTENDERS = ("pytorch eager", "matcalc torch", "matcalc numpy")


def contenders(arrays: dict[str, np.ndarray]) -> dict[str, Callable[[], object]]:
    """Each contender as a call computing the loss and every gradient at ``arrays``."""
    return {name: contender(name, arrays) for name in CONTENDERS}


def contender(name: str, arrays: dict[str, np.ndarray]) -> Callable[[], object]:
    """One contender, and nothing the others need: the NumPy module runs without torch, and
    PyTorch eager without the generated modules (which free a block of 31 MB on import)."""
    names = reference.parameters(arrays)
    if name == "matcalc numpy":
        numpy_module = lambdify(reference.SOURCE, names, sizes=FIXED)
        return lambda: numpy_module.value_and_grad(**arrays)
    import torch

    torch.set_num_threads(1)
    tokens, y = torch.from_numpy(arrays["tokens"]), torch.from_numpy(arrays["y"])

    def leaves() -> dict[str, torch.Tensor]:
        return {n: torch.from_numpy(arrays[n]).requires_grad_() for n in names}

    def pytorch() -> object:
        params = leaves()
        loss = reference.torch_loss(params, tokens, y, SIZES["h"])
        return loss.item(), torch.autograd.grad(loss, list(params.values()))

    if name == "pytorch eager":
        return pytorch
    torch_module = lambdify(reference.SOURCE, names, target="torch", sizes=FIXED)

    def generated_torch() -> object:
        params = leaves()
        loss = torch_module.L(**params, tokens=tokens, y=y)
        return loss.item(), torch.autograd.grad(loss, list(params.values()))

    return generated_torch


def model() -> dict[str, np.ndarray]:
    arrays = reference.random_model(SIZES, dtype=np.float32)
    for name in reference.parameters(arrays):
        if name[0] in "WU":      # weights of scale 1/√fan-in, so that activations stay O(1)
            arrays[name] *= 2 / np.sqrt(arrays[name].shape[0])
    return arrays


def best_time(name: str, queue: multiprocessing.Queue, rounds: int = 15) -> None:
    """In a fresh process: the best time of one call of a contender. Each contender runs alone,
    because what one leaves behind changes the others' times: once a large block has been
    freed, glibc's malloc keeps more freed memory in its heap (its trim threshold is twice the
    largest block freed), so that the next contender's temporaries are not page-faulted in
    anew on every call."""
    call = contender(name, model())
    call()
    queue.put(min(timeit.timeit(call, number=1) for _ in range(rounds)))


def best_times(names: list[str], passes: int = 2) -> dict[str, float]:
    """The best time of each contender over ``passes`` fresh processes, taken in turn."""
    best = dict.fromkeys(names, float("inf"))
    for _ in range(passes):
        for name in names:
            best[name] = min(best[name], in_fresh_process(best_time, name))
    return best


def peak_growth(name: str, queue: multiprocessing.Queue) -> None:
    """In a fresh process: how far the resident memory's high-water mark rises above the
    resident memory before a call (bytes), once the setup's garbage is returned to the system
    and the mark reset (Linux: /proc/self/clear_refs)."""
    call = contender(name, model())
    call()
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS")
    call()
    queue.put(1024 * (status_kib("VmHWM") - before))


def status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                if x.startswith(field + ":"))
    return int(line.split()[1])


def derivation_in(queue: multiprocessing.Queue) -> None:
    """In a fresh process (nothing cached): the derivation's and the code generation's times."""
    queue.put(derivation_seconds())


def in_fresh_process(target: Callable, *args: object) -> object:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get(timeout=600)
    process.join()
    return result


def agree(calls: dict[str, Callable[[], object]]) -> None:
    """Every contender computes the same loss and gradients (float32 tolerance)."""
    results = {name: call() for name, call in calls.items()}
    loss, grads = results["pytorch eager"]
    for name, (value, got) in results.items():
        got = list(got.values()) if isinstance(got, dict) else list(got)
        assert abs(value - loss) <= 1e-4 * abs(loss), name
        for mine, theirs in zip(got, grads, strict=True):
            scale = float(np.max(np.abs(theirs.numpy()))) + 1e-6
            assert np.max(np.abs(np.asarray(mine) - theirs.numpy())) <= 2e-3 * scale, name


def derivation_seconds() -> tuple[float, float]:
    """Seconds to derive every gradient, and to derive and generate the NumPy module."""
    names = [n for n in parse(reference.SOURCE).variables if n not in ("tokens", "y")]
    start = time.perf_counter()
    derive(reference.SOURCE, names, steps=True)
    derived = time.perf_counter() - start
    start = time.perf_counter()
    generate(reference.SOURCE, names, sizes=FIXED)
    return derived, time.perf_counter() - start


def main() -> None:
    calls = contenders(model())
    agree(calls)
    times = best_times(list(calls))
    base = times["pytorch eager"]
    print("transformer (2 blocks) B=16 T=64 d=128 h=4 V=64, float32, 1 thread: loss + 29 "
          "gradients")
    for name, seconds in times.items():
        memory = in_fresh_process(peak_growth, name) / 1e6
        print(f"  {name:<14}{seconds * 1e3:8.2f} ms   {seconds / base:.2f}x   "
              f"peak memory +{memory:.1f} MB")
    derived, generated = in_fresh_process(derivation_in)
    print(f"  derivation of the whole model {derived:.2f} s; with NumPy code generation "
          f"{generated:.2f} s")


if __name__ == "__main__":
    main()
