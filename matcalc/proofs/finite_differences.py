"""Central finite differences: directional derivatives, Jacobians (also in vec layout), errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

Arrays = Mapping[str, np.ndarray]
EPS = 1e-6
"""The step of every central difference: near the best for float64 with O(h²) error."""
ROUNDING = 16 * float(np.finfo(float).eps) / EPS
"""A central difference of f is uncertain by about this times |f| (f's own rounding, divided
by the step): a large term the variable does not touch (1e7 ⋅ sum(y²)) drowns small
differences, and no derivative can be checked more finely than that."""


def directional(f: Callable[..., np.ndarray | float], arrays: Arrays, name: str, v: np.ndarray,
                eps: float = EPS) -> np.ndarray:
    """The derivative of f along v at arrays[name]: (f(x + h v) − f(x − h v)) / 2h, f's shape."""
    x = np.asarray(arrays[name], dtype=float)
    up = np.array(f(**{**arrays, name: x + eps * v}), dtype=float)  # a copy: f may return x
    down = np.array(f(**{**arrays, name: x - eps * v}), dtype=float)
    return (up - down) / (2 * eps)


def numeric_jacobian(f: Callable[..., np.ndarray | float], arrays: Arrays, name: str,
                     eps: float = EPS) -> np.ndarray:
    """∂f/∂x by central differences, J[i…, j…] = ∂f[i…]/∂x[j…]: shape f's + x's (for a scalar f,
    the gradient, shaped like x)."""
    x = np.asarray(arrays[name], dtype=float)
    columns = [directional(f, arrays, name, np.eye(1, x.size, k).reshape(x.shape), eps)
               for k in range(x.size)]
    return np.moveaxis(np.array(columns), 0, -1).reshape(np.shape(columns[0]) + x.shape)


def vec_jacobian(f: Callable[..., np.ndarray], arrays: Arrays, name: str, eps: float = EPS
                 ) -> np.ndarray:
    """∂vec(f)/∂vec(x), vec stacking columns as matcalc's Kronecker forms do: [size f, size x]."""
    jac = numeric_jacobian(f, arrays, name, eps)
    rank = jac.ndim - np.ndim(arrays[name])
    column_major = [*reversed(range(rank)), *reversed(range(rank, jac.ndim))]
    size = int(np.prod(jac.shape[:rank], dtype=int))
    return jac.transpose(column_major).reshape(size, -1)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max(1, max |b|)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b), initial=0.0) / max(1.0, np.max(np.abs(b), initial=0.0)))

