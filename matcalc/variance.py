"""Variance propagation through an activation: Gaussian moments, initialisation, fixed points.

For a pre-activation z ~ N(0, σ²) and an activation f, a layer y' = W f(y) with zero-mean weights
has Var(y') = n Var(W) E[f(z)²] (Kaiming's argument), and back-propagated gradients scale by
n Var(W) E[f′(z)²]. Everything here derives from those four Gaussian moments, exactly where SymPy
integrates them and numerically (mpmath) otherwise. Pure functions, no printing.
"""

from __future__ import annotations

import functools
import math
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import mpmath
import numpy as np
import sympy

from matcalc.errors import MatcalcError, did_you_mean
from matcalc.scalar import SYMPY_FUNCTIONS, parse_scalar

SIGMA = sympy.Symbol("sigma", positive=True)
"""Standard deviation of the pre-activation z ~ N(0, σ²)."""
N = sympy.Symbol("n", positive=True, integer=True)
N_IN = sympy.Symbol("n_in", positive=True, integer=True)
N_OUT = sympy.Symbol("n_out", positive=True, integer=True)

Z = sympy.Symbol("z", real=True)
_T = sympy.Symbol("t", real=True)  # standard normal: z = σ t
_DENSITY = sympy.exp(-(_T**2) / 2) / sympy.sqrt(2 * sympy.pi)

EXACT_SECONDS = 4.0
"""Time budget for one exact SymPy integral or solve before falling back to numerics."""
DIGITS = 30
"""mpmath working precision (decimal digits) for numeric integrals and root finding."""


# ----------------------------------------------------------------------------------------------
# Activations


@dataclass
class Activation:
    """f(z) with symbolic parameters; ``values`` gives numbers to some or all of them."""

    name: str
    expr: sympy.Expr
    params: tuple[sympy.Symbol, ...] = ()
    values: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)

    def with_values(self, values: Mapping[sympy.Symbol, sympy.Expr]) -> Activation:
        """A copy with these parameter values added (or replaced)."""
        return replace(self, values={**self.values, **values})

    def missing(self) -> tuple[sympy.Symbol, ...]:
        """Parameters without a value."""
        return tuple(p for p in self.params if p not in self.values)

    def bound(self) -> sympy.Expr:
        """f with every valued parameter substituted."""
        return self.expr.subs(self.values)


_A = sympy.Symbol("a", real=True)
LAMBDA = sympy.Symbol("lambda", real=True)
ALPHA = sympy.Symbol("alpha", real=True)
SELU_LAMBDA = sympy.Float("1.0507009873554804934193349852946", DIGITS)
SELU_ALPHA = sympy.Float("1.6732632423543772848170429916717", DIGITS)
LEAKY_DEFAULT = sympy.Rational(1, 100)


def _selu(z: sympy.Expr) -> sympy.Expr:
    return LAMBDA * sympy.Piecewise((z, z > 0), (ALPHA * (sympy.exp(z) - 1), True))


def _builtin_table() -> dict[str, Activation]:
    plain = {name: Activation(name, SYMPY_FUNCTIONS[name](Z)) for name in
             ("relu", "tanh", "sigmoid", "gelu", "silu", "softplus")}
    return {
        **plain,
        "leaky_relu": Activation(
            "leaky_relu", SYMPY_FUNCTIONS["leaky_relu"](Z, _A), (_A,), {_A: LEAKY_DEFAULT}
        ),
        "selu": Activation(
            "selu", _selu(Z), (LAMBDA, ALPHA), {LAMBDA: SELU_LAMBDA, ALPHA: SELU_ALPHA}
        ),
        "linear": Activation("linear", Z),
    }


BUILTINS: dict[str, Activation] = _builtin_table()
"""Built-in activations by name; leaky_relu's slope a defaults to 0.01, selu's λ, α to the
self-normalising fixed point."""


def activation(text: str, values: Mapping[str, float] | None = None) -> Activation:
    """The activation named or written (in z) by ``text``, with parameter ``values``."""
    act = _resolve(text.strip())
    names = {str(p): p for p in act.params}
    given: dict[sympy.Symbol, sympy.Expr] = {}
    for name, value in (values or {}).items():
        if name not in names:
            hint = did_you_mean(name, names).strip() or None
            known = ", ".join(names) or "none"
            raise MatcalcError(f"`{name}` is not a parameter of f (parameters: {known})", hint=hint)
        given[names[name]] = sympy.nsimplify(value, rational=True)
    return act.with_values(given)


def _resolve(text: str) -> Activation:
    if text in BUILTINS:
        return BUILTINS[text]
    expr, symbols = parse_scalar(text)
    if not expr.has(symbols["z"]):
        hint = "Free names other than z are parameters; the activation's variable is z."
        raise MatcalcError("the activation does not depend on z", text, 0, hint)
    for builtin in BUILTINS.values():
        if builtin.params and expr == builtin.expr:
            return builtin
    params = tuple(s for name, s in symbols.items() if name != "z" and expr.has(s))
    return Activation(text, expr, params)


# ----------------------------------------------------------------------------------------------
# Gaussian expectations


@dataclass(frozen=True)
class Quantity:
    """A derived number: ``expr`` is exact when ``exact``, else carries Float coefficients.

    ``value`` is at the parameters' values (nan when one has none); ``general`` is the exact
    expression for symbolic σ when there is one.
    """

    name: str
    expr: sympy.Expr
    value: float
    exact: bool
    general: sympy.Expr | None = None


class _OutOfTime(BaseException):
    """Raised by the alarm inside a time budget (BaseException: SymPy must not swallow it)."""


@contextmanager
def _time_budget(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread on POSIX; elsewhere no limit)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _expire(signum: int, frame: object) -> None:
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_KINKED = (sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Max, sympy.Min)


def _as_piecewise(expr: sympy.Expr) -> sympy.Expr:
    """Abs, sign, Heaviside, Max, Min rewritten as Piecewise (what the splitting understands)."""
    return expr.replace(lambda e: isinstance(e, _KINKED), lambda e: e.rewrite(sympy.Piecewise))


def _breakpoints(expr: sympy.Expr, t: sympy.Symbol) -> list[sympy.Expr] | None:
    """Where Piecewise conditions switch, or None when one is not linear in t."""
    points: set[sympy.Expr] = set()
    for condition in expr.atoms(sympy.core.relational.Relational):
        gap = sympy.expand(condition.lhs - condition.rhs)
        if not gap.has(t):
            continue
        if not gap.is_polynomial(t) or sympy.degree(gap, t) != 1:
            return None
        slope, offset = sympy.Poly(gap, t).all_coeffs()
        points.add(sympy.simplify(-offset / slope))
    return _sorted(points)


def _sorted(points: set[sympy.Expr]) -> list[sympy.Expr] | None:
    """Points in increasing order, or None when SymPy cannot compare them."""
    try:
        return sorted(points, key=functools.cmp_to_key(_compare))
    except TypeError:
        return None


def _compare(a: sympy.Expr, b: sympy.Expr) -> int:
    difference = a - b
    if difference.is_positive:
        return 1
    if difference.is_negative:
        return -1
    raise TypeError("incomparable")


def _intervals(points: list[sympy.Expr]) -> Iterator[tuple[sympy.Expr, sympy.Expr, sympy.Expr]]:
    """(low, high, an inner point) for the intervals the points cut the line into."""
    edges = [-sympy.oo, *points, sympy.oo]
    for low, high in zip(edges, edges[1:], strict=False):
        if low == -sympy.oo:
            inner = high - 1 if high != sympy.oo else sympy.Integer(0)
        else:
            inner = low + 1 if high == sympy.oo else (low + high) / 2
        yield low, high, inner


def _branch_at(expr: sympy.Expr, t: sympy.Symbol, point: sympy.Expr) -> sympy.Expr | None:
    """expr with each Piecewise replaced by its branch at t = point (None if undecidable)."""

    def choose(piecewise: sympy.Piecewise) -> sympy.Expr:
        for value, condition in piecewise.args:
            decided = sympy.simplify(condition.subs(t, point))
            if decided not in (sympy.true, sympy.false):
                raise TypeError("undecidable")
            if decided == sympy.true:
                return value
        return sympy.nan

    try:
        return expr.replace(lambda e: isinstance(e, sympy.Piecewise), choose)
    except TypeError:
        return None


def _pieces(expr: sympy.Expr, t: sympy.Symbol) -> list[tuple[sympy.Expr, ...]] | None:
    """[(low, high, smooth integrand)] covering the line, or None when it cannot be split."""
    points = _breakpoints(expr, t)
    if points is None:
        return None
    pieces = [(low, high, _branch_at(expr, t, inner)) for low, high, inner in _intervals(points)]
    return None if any(piece is None for *_, piece in pieces) else pieces


_FRIENDLY: dict[type, int] = {sympy.exp: 2, sympy.erf: 1, sympy.sin: 1, sympy.cos: 1}
"""Functions SymPy integrates against a Gaussian, with the highest degree of t in the argument."""


def _gaussian_friendly(expr: sympy.Expr, t: sympy.Symbol) -> bool:
    """Whether SymPy has a fair chance: polynomials times exp/erf/sin/cos of low-degree args."""
    for function in expr.atoms(sympy.Function):
        if not function.has(t):
            continue
        limit = _FRIENDLY.get(type(function))
        argument = function.args[0]
        if limit is None or not argument.is_polynomial(t) or sympy.degree(argument, t) > limit:
            return False
    if _erf_degree(expr, t) > 1:
        return False
    powers = expr.atoms(sympy.Pow)
    return all(not p.base.has(t) or (p.exp.is_Integer and p.exp > 0) for p in powers)


_ERF_MARK = sympy.Dummy("erf")


def _erf_degree(expr: sympy.Expr, t: sympy.Symbol) -> int:
    """Highest power of an erf of t in expr (SymPy integrates erf², as in gelu², poorly)."""
    marked = expr.replace(lambda e: isinstance(e, sympy.erf) and e.has(t), lambda e: _ERF_MARK)
    if not marked.has(_ERF_MARK):
        return 0
    expanded = sympy.expand(marked)
    return int(sympy.degree(expanded, _ERF_MARK)) if expanded.is_polynomial(_ERF_MARK) else 2


@functools.lru_cache(maxsize=512)
def exact_expectation(g: sympy.Expr, z: sympy.Symbol) -> sympy.Expr | None:
    """E[g(z)] for z ~ N(0, σ²) in terms of ``SIGMA``, or None when SymPy cannot (in time)."""
    integrand = _as_piecewise(g.subs(z, SIGMA * _T))
    pieces = _pieces(integrand, _T)
    if pieces is None or not all(_gaussian_friendly(p, _T) for *_, p in pieces):
        return None
    try:
        with _time_budget(EXACT_SECONDS):
            total = sum(
                sympy.integrate(sympy.expand(piece * _DENSITY), (_T, low, high))
                for low, high, piece in pieces
            )
            result = sympy.simplify(total)
    except (_OutOfTime, NotImplementedError, ValueError, TypeError):
        return None
    if result.has(sympy.Integral, sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
        return None
    return result


def numeric_expectation(g: sympy.Expr, z: sympy.Symbol, sigma: float) -> float:
    """E[g(z)] for z ~ N(0, σ²) by mpmath quadrature; g must have no free symbol but z."""
    integrand = _as_piecewise(g.subs(z, sympy.Float(sigma, DIGITS) * _T))
    unknown = integrand.free_symbols - {_T}
    if unknown:
        names = ", ".join(sorted(str(s) for s in unknown))
        raise MatcalcError(
            f"parameter(s) {names} need a value for a numeric expectation",
            hint="Give them with --param NAME=VALUE, or solve for them with --fixed-point.",
        )
    function = sympy.lambdify(_T, integrand * _DENSITY, modules="mpmath")
    points = _breakpoints(integrand, _T) or []
    nodes = sorted({0.0, *(float(p) for p in points)})
    with mpmath.workdps(DIGITS):
        return float(mpmath.quad(function, [-mpmath.inf, *nodes, mpmath.inf]))


def expectation(name: str, g: sympy.Expr, act: Activation, sigma: float = 1.0) -> Quantity:
    """``Quantity`` for E[g(z)], z ~ N(0, σ²): exact where SymPy integrates, else numeric."""
    general = exact_expectation(g, Z)
    if general is None:
        value = numeric_expectation(g.subs(act.values), Z, sigma)
        return Quantity(name, sympy.Float(value, 15), value, exact=False)
    expr = sympy.simplify(general.subs(SIGMA, _exact_number(sigma)))
    return Quantity(name, expr, _value(expr, act), exact=True, general=general)


def _exact_number(x: float) -> sympy.Expr:
    return sympy.nsimplify(x, rational=True)


def _value(expr: sympy.Expr, act: Activation) -> float:
    number = expr.subs(act.values).evalf(DIGITS)
    return float(number) if number.is_number and number.is_real else math.nan


@dataclass(frozen=True)
class Moments:
    """The four Gaussian moments of f for z ~ N(0, σ²)."""

    sigma: float
    mean: Quantity
    second: Quantity
    variance: Quantity
    grad_second: Quantity

    def all(self) -> tuple[Quantity, ...]:
        return (self.mean, self.second, self.variance, self.grad_second)


def moments(act: Activation, sigma: float = 1.0) -> Moments:
    """E[f], E[f²], Var f = E[f²] − E[f]², E[f′²] for z ~ N(0, σ²)."""
    f = act.expr
    mean = expectation("E[f(z)]", f, act, sigma)
    second = expectation("E[f(z)²]", f**2, act, sigma)
    grad_second = expectation("E[f′(z)²]", sympy.diff(f, Z) ** 2, act, sigma)
    return Moments(sigma, mean, second, _variance(mean, second, act), grad_second)


def _variance(mean: Quantity, second: Quantity, act: Activation) -> Quantity:
    expr = sympy.simplify(second.expr - mean.expr**2)
    general = None
    if mean.general is not None and second.general is not None:
        general = sympy.simplify(second.general - mean.general**2)
    value = second.value - mean.value**2
    exact = mean.exact and second.exact
    return Quantity("Var f(z)", expr, _value(expr, act) if exact else value, exact, general)
