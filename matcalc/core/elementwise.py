"""What elementwise functions mean for one real number, as SymPy expressions.

These are the ``scalar`` facets of the operations in :mod:`matcalc.core.rules` (where SymPy has
no function of its own). Relu-like functions are ``Piecewise`` so that SymPy can integrate them
against a Gaussian exactly.
"""

from __future__ import annotations

import sympy


def relu(x: sympy.Expr) -> sympy.Expr:
    return sympy.Piecewise((x, x > 0), (0, True))


def step(x: sympy.Expr) -> sympy.Expr:
    """1[x > 0]."""
    return sympy.Piecewise((1, x > 0), (0, True))


def heaviside(x: sympy.Expr) -> sympy.Expr:
    """H(x): 1 for x > 0, ½ at 0 (a tie split equally), 0 below."""
    return sympy.Piecewise((1, x > 0), (sympy.S.Half, sympy.Eq(x, 0)), (0, True))


LEAKY_SLOPE = sympy.Rational(1, 100)
"""leaky_relu's slope when it is called with one argument (PyTorch's default)."""


def leaky_relu(x: sympy.Expr, a: sympy.Expr = LEAKY_SLOPE) -> sympy.Expr:
    return sympy.Piecewise((x, x > 0), (a * x, True))


def leaky_relu_slope(x: sympy.Expr, a: sympy.Expr = LEAKY_SLOPE) -> sympy.Expr:
    """leaky_relu′(x, a): 1 for x > 0, a for x ≤ 0 (a at 0, as PyTorch)."""
    return sympy.Piecewise((1, x > 0), (a, True))


def sigmoid(x: sympy.Expr) -> sympy.Expr:
    return 1 / (1 + sympy.exp(-x))


def softplus(x: sympy.Expr) -> sympy.Expr:
    return sympy.log(1 + sympy.exp(x))


def normal_cdf(x: sympy.Expr) -> sympy.Expr:
    """Φ(x), the standard normal's distribution function."""
    return (1 + sympy.erf(x / sympy.sqrt(2))) / 2


def normal_pdf(x: sympy.Expr) -> sympy.Expr:
    """φ(x), the standard normal's density."""
    return sympy.exp(-x**2 / 2) / sympy.sqrt(2 * sympy.pi)


def gelu(x: sympy.Expr) -> sympy.Expr:
    """x Φ(x), the exact GELU (not the tanh approximation)."""
    return x / 2 * (1 + sympy.erf(x / sympy.sqrt(2)))


def gelu_slope(x: sympy.Expr) -> sympy.Expr:
    """gelu′(x) = Φ(x) + x φ(x)."""
    return normal_cdf(x) + x * normal_pdf(x)


GELU_CUBIC = sympy.Rational(44715, 10**6)
"""The 0.044715 of the tanh approximation of GELU (Hendrycks & Gimpel; PyTorch, GPT-2)."""


def gelu_tanh_inner(x: sympy.Expr) -> sympy.Expr:
    """√(2/π) (x + 0.044715 x³), whose tanh approximates erf(x/√2)."""
    return sympy.sqrt(2 / sympy.pi) * (x + GELU_CUBIC * x**3)


def gelu_tanh(x: sympy.Expr) -> sympy.Expr:
    """x (1 + tanh(√(2/π) (x + 0.044715 x³))) / 2: PyTorch's ``gelu(x, approximate="tanh")``."""
    return x / 2 * (1 + sympy.tanh(gelu_tanh_inner(x)))


def silu(x: sympy.Expr) -> sympy.Expr:
    return x * sigmoid(x)
