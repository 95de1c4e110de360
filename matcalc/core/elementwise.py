"""Scalar semantics of matcalc's elementwise functions, as SymPy expressions.

``SYMPY_FUNCTIONS`` says what each function a program (or ``matcalc init``) can call means for
one real number; ``SCALAR_FUNCTIONS`` adds those only the rules emit (Φ and φ, from GELU's
derivative). Relu-like functions are ``Piecewise`` so that SymPy can integrate them against a
Gaussian exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy


def _relu(x: sympy.Expr) -> sympy.Expr:
    return sympy.Piecewise((x, x > 0), (0, True))


def _step(x: sympy.Expr) -> sympy.Expr:
    return sympy.Piecewise((1, x > 0), (0, True))


LEAKY_SLOPE = sympy.Rational(1, 100)
"""leaky_relu's slope when it is called with one argument (PyTorch's default)."""


def _leaky_relu(x: sympy.Expr, a: sympy.Expr = LEAKY_SLOPE) -> sympy.Expr:
    return sympy.Piecewise((x, x > 0), (a * x, True))


def _sigmoid(x: sympy.Expr) -> sympy.Expr:
    return 1 / (1 + sympy.exp(-x))


def _softplus(x: sympy.Expr) -> sympy.Expr:
    return sympy.log(1 + sympy.exp(x))


def _gelu(x: sympy.Expr) -> sympy.Expr:
    """x Φ(x), the exact GELU (not the tanh approximation)."""
    return x / 2 * (1 + sympy.erf(x / sympy.sqrt(2)))


def _silu(x: sympy.Expr) -> sympy.Expr:
    return x * _sigmoid(x)


SYMPY_FUNCTIONS: dict[str, Callable[..., sympy.Expr]] = {
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
    "abs": sympy.Abs,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tanh": sympy.tanh,
    "sigmoid": _sigmoid,
    "relu": _relu,
    "softplus": _softplus,
    "gelu": _gelu,
    "silu": _silu,
    "erf": sympy.erf,
    "step": _step,
    "sign": sympy.sign,
    "leaky_relu": _leaky_relu,
}
"""Elementwise function name -> its meaning on scalars (``leaky_relu`` takes ``(x, a)``)."""

SCALAR_FUNCTIONS: dict[str, Callable[..., sympy.Expr]] = {
    **SYMPY_FUNCTIONS,
    "normal_cdf": lambda x: (1 + sympy.erf(x / sympy.sqrt(2))) / 2,
    "normal_pdf": lambda x: sympy.exp(-x**2 / 2) / sympy.sqrt(2 * sympy.pi),
}
"""Every elementwise function's meaning on scalars, with Φ and φ that only rules emit."""
