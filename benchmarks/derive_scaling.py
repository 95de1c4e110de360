"""How derivation time and generated work grow with depth: an L-layer ReLU MLP with softmax CE.

For L = 1, 2, 4, …, 32 this derives the gradient with respect to every weight and bias, prints
the time, and counts the matrix products (`@`) in the generated NumPy code against hand-written
backprop's 3L − 1 (L forward, L weight gradients, L − 1 activation gradients). For comparison it
tries SymPy's own ``MatrixSymbol.diff`` on the same network (written without the bias, which
SymPy cannot broadcast), which fails from L = 3 on.

    python benchmarks/derive_scaling.py
"""

from __future__ import annotations

import time

import sympy

from matcalc import derive

DEPTHS = (1, 2, 4, 8, 16, 32)


def mlp_source(layers: int) -> str:
    """An L-layer ReLU MLP ending in softmax cross-entropy, in the matcalc language."""
    lines = ["X: [N, D0]", f"Y: [N, D{layers}] onehot"]
    for k in range(1, layers + 1):
        lines.append(f"W{k}: [D{k - 1}, D{k}]; b{k}: [D{k}]")
    previous = "X"
    for k in range(1, layers + 1):
        lines.append(f"Z{k} = {previous} @ W{k} + b{k}")
        if k < layers:
            lines.append(f"H{k} = relu(Z{k})")
            previous = f"H{k}"
    lines.append(f"L = softmax_cross_entropy(Z{layers}, Y)")
    return "\n".join(lines)


def time_matcalc(layers: int) -> tuple[float, int]:
    """Seconds to parse, derive and generate code, cold (no node built before, since IR nodes
    are interned); and the matrix products in that code."""
    wrt = [f"{p}{k}" for k in range(1, layers + 1) for p in ("W", "b")]
    start = time.perf_counter()
    code = derive(mlp_source(layers), wrt, steps=True).numpy()
    return time.perf_counter() - start, code.count(" @ ")


def sympy_attempt(layers: int, budget: float = 10.0) -> str:
    """SymPy's MatrixSymbol.diff on the bias-free network: seconds, or how it failed."""
    n = sympy.Symbol("n", integer=True, positive=True)
    x = sympy.MatrixSymbol("x", n, 1)
    y = sympy.MatrixSymbol("y", n, 1)
    weights = [sympy.MatrixSymbol(f"W{k}", n, n) for k in range(1, layers + 1)]
    h = x
    for k, w in enumerate(weights, start=1):
        z = w * h
        h = z.applyfunc(lambda e: sympy.Max(e, 0)) if k < layers else z
    loss = (h - y).T * (h - y)
    start = time.perf_counter()
    try:
        result = loss.diff(weights[0])
        seconds = time.perf_counter() - start
        shape = getattr(result, "shape", "?")
        return f"{seconds:.3f} s (shape {shape})" if seconds < budget else "too slow"
    except Exception as err:  # noqa: BLE001 - we report SymPy's failure, whatever it is
        return f"fails: {type(err).__name__}"


def main() -> None:
    header = f"{'L':>3} {'matcalc derive':>15} {'products':>9} {'3L-1':>5}"
    print(f"{header} {'sympy diff (MSE, no bias)':>28}")
    for layers in DEPTHS:
        seconds, products = time_matcalc(layers)
        sympy_result = sympy_attempt(layers) if layers <= 8 else "-"
        print(f"{layers:>3} {seconds:>13.4f} s {products:>9} {3 * layers - 1:>5} "
              f"{sympy_result:>28}")


if __name__ == "__main__":
    main()
