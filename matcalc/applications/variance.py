"""Variance propagation through an activation: Gaussian moments, initialisation, fixed points.

For a pre-activation z ~ N(0, σ²) and an activation f, a layer y' = W f(y) with zero-mean weights
has Var(y') = n Var(W) E[f(z)²] (Kaiming's argument), and back-propagated gradients scale by
n Var(W) E[f′(z)²]. Everything here derives from those four Gaussian moments, exactly where SymPy
integrates them and numerically (mpmath) otherwise. Pure functions, no printing.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import mpmath
import numpy as np
import sympy

from matcalc.applications import figures
from matcalc.core.elementwise import LEAKY_SLOPE
from matcalc.core.rules import SYMPY_FUNCTIONS
from matcalc.errors import MatcalcError, did_you_mean
from matcalc.language.scalar_text import parse_scalar
from matcalc.proofs.time_limits import OutOfTime, time_limit

SIGMA = sympy.Symbol("σ", positive=True)
"""Standard deviation of the pre-activation z ~ N(0, σ²); named σ, which no parameter can be
(names are ASCII), so formulas for any σ read unambiguously."""
N = sympy.Symbol("n", positive=True, integer=True)
N_IN = sympy.Symbol("n_in", positive=True, integer=True)
N_OUT = sympy.Symbol("n_out", positive=True, integer=True)
WIDTHS = (N, N_IN, N_OUT)
"""Layer widths in the init formulas: their names cannot name parameters of f."""

Z = sympy.Symbol("z", real=True)
"""The activation's variable: the user's ``z`` is this symbol."""
_T = sympy.Dummy("t", real=True)
"""The standard normal variable of the integrals (z = σ t), distinct from every user symbol."""
_DENSITY = sympy.exp(-(_T**2) / 2) / sympy.sqrt(2 * sympy.pi)

EXACT_SECONDS = 4.0
"""Time budget for one exact SymPy integral or solve before falling back to numerics."""
NUMERIC_SECONDS = 20.0
"""Time budget for one numeric integral."""
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
    display: str = ""

    def __post_init__(self) -> None:
        self.display = self.display or self.name

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


def _selu(z: sympy.Expr) -> sympy.Expr:
    return LAMBDA * sympy.Piecewise((z, z > 0), (ALPHA * (sympy.exp(z) - 1), True))


def _builtin_table() -> dict[str, Activation]:
    plain = {name: Activation(name, SYMPY_FUNCTIONS[name](Z), display=f"{name}(z)") for name in
             ("relu", "tanh", "sigmoid", "gelu", "silu", "softplus")}
    leaky = SYMPY_FUNCTIONS["leaky_relu"](Z, _A)
    selu_values = {LAMBDA: SELU_LAMBDA, ALPHA: SELU_ALPHA}
    return {
        **plain,
        "leaky_relu": Activation("leaky_relu", leaky, (_A,), {_A: LEAKY_SLOPE},
                                 "leaky_relu(z, a)"),
        "selu": Activation("selu", _selu(Z), (LAMBDA, ALPHA), selu_values,
                           "lambda*(z if z > 0 else alpha*(exp(z) - 1))"),
        "linear": Activation("linear", Z, display="z"),
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
        typo = did_you_mean(text, BUILTINS) if text.isidentifier() else ""
        if typo:
            raise MatcalcError(f"`{text}` is not an activation matcalc knows.{typo}",
                               hint=f"Known: {', '.join(BUILTINS)}; or write one in z.")
        hint = "Free names other than z are parameters; the activation's variable is z."
        raise MatcalcError("the activation does not depend on z", text, 0, hint)
    for width in WIDTHS:
        if width.name in symbols and expr.has(symbols[width.name]):
            raise MatcalcError(
                f"`{width.name}` cannot name a parameter of f: the init formulas use n, n_in "
                "and n_out for layer widths", text, _name_offset(text, width.name),
                hint=f"Rename the parameter, e.g. `{width.name}0` or `c`.")
    for builtin in BUILTINS.values():
        if builtin.params and expr == builtin.expr:
            return builtin
    params = tuple(s for name, s in symbols.items() if name != "z" and expr.has(s))
    return Activation(text, expr, params)


def _name_offset(text: str, name: str) -> int | None:
    """Where ``name`` first occurs in ``text`` as a whole name."""
    found = re.search(rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])", text)
    return found.start() if found else None


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


def tidy(expr: sympy.Expr) -> sympy.Expr:
    """The shorter of the simplified and the expanded form (1/2 - 1/(2*pi), not (pi-1)/(2*pi))."""
    simple = sympy.simplify(expr)
    return min((simple, sympy.expand(simple)), key=lambda e: len(str(e)))


def _is_odd(g: sympy.Expr, z: sympy.Symbol) -> bool:
    return sympy.expand(g + g.subs(z, -z)) == 0


@functools.lru_cache(maxsize=512)
def exact_expectation(g: sympy.Expr, z: sympy.Symbol) -> sympy.Expr | None:
    """E[g(z)] for z ~ N(0, σ²) in terms of ``SIGMA``, or None when SymPy cannot (in time)."""
    if _is_odd(g, z):
        return sympy.Integer(0)
    integrand = _as_piecewise(g.subs(z, SIGMA * _T))
    pieces = _pieces(integrand, _T)
    if pieces is None or not all(_gaussian_friendly(p, _T) for *_, p in pieces):
        return None
    try:
        with time_limit(EXACT_SECONDS):
            total = sum(
                sympy.integrate(sympy.expand(piece * _DENSITY), (_T, low, high))
                for low, high, piece in pieces
            )
            result = tidy(total)
    except (OutOfTime, NotImplementedError, ValueError, TypeError):
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
    value = _quad(g, z, sigma)
    if not isinstance(value, mpmath.mpf):
        raise MatcalcError(
            "the activation is not real-valued for every z (log or sqrt of a negative number, "
            "say), and z ~ N(0, σ²) takes every real value: its moments do not exist",
            hint="Shift or square its argument, e.g. log(1 + exp(z)) or sqrt(z * z + 1).")
    return float(value)


def _quad(g: sympy.Expr, z: sympy.Symbol, sigma: float) -> mpmath.mpf:
    """E[g(z)] by quadrature, refined to degree 10; a MatcalcError where the integral diverges
    (its value still moves by 1% as the quadrature refines: a pole, as 1/z² has, or growth as
    fast as exp(z²/2); a steep but bounded g moves by 1e-4 at most) or takes more than
    NUMERIC_SECONDS."""
    integrand = _as_piecewise(g.subs(z, sympy.Float(sigma, DIGITS) * _T))
    function = sympy.lambdify(_T, integrand * _DENSITY, modules="mpmath")
    points = _breakpoints(integrand, _T) or []
    interval = [-mpmath.inf, *sorted({0.0, *(float(p) for p in points)}), mpmath.inf]
    try:
        with time_limit(NUMERIC_SECONDS), mpmath.workdps(DIGITS):
            coarse = mpmath.quad(function, interval)
            value = mpmath.quad(function, interval, maxdegree=10)
    except OutOfTime:
        raise MatcalcError(f"E[{sympy.sstr(g)}] for z ~ N(0, σ²) could not be computed in "
                           f"{NUMERIC_SECONDS:g} s") from None
    if isinstance(value, mpmath.mpf) and (not mpmath.isfinite(value) or abs(value - coarse)
                                          > 1e-2 * max(1, abs(value))):
        raise MatcalcError(f"E[{sympy.sstr(g)}] for z ~ N(0, σ²) diverges (a pole, or growth "
                           "as fast as exp(z²/2)): that moment of the activation does not exist",
                           hint="init needs a finite E[f(z)²] and E[f′(z)²]; 1/z and exp(z²) "
                                "have neither.")
    return value


def expectation(name: str, g: sympy.Expr, act: Activation, sigma: float = 1.0) -> Quantity:
    """``Quantity`` for E[g(z)], z ~ N(0, σ²): exact where SymPy integrates, else numeric."""
    general = exact_expectation(g, Z)
    if general is None:
        value = numeric_expectation(g.subs(act.values), Z, sigma)
        return Quantity(name, sympy.Float(value, 15), value, exact=False)
    expr = tidy(general.subs(SIGMA, _exact_number(sigma)))
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


def derivative(f: sympy.Expr) -> sympy.Expr:
    """f′ almost everywhere, as backpropagation uses it: the point masses of a kink
    (``z δ(z)`` from ``d|z|/dz = sign(z) + 2 z δ(z)``) weigh nothing under a density."""
    return sympy.diff(f, Z).replace(lambda e: isinstance(e, sympy.DiracDelta), lambda e: 0)


def moments(act: Activation, sigma: float = 1.0) -> Moments:
    """E[f], E[f²], Var f = E[f²] − E[f]², E[f′²] for z ~ N(0, σ²)."""
    f = act.expr
    mean = expectation("E[f(z)]", f, act, sigma)
    second = expectation("E[f(z)²]", f**2, act, sigma)
    grad_second = expectation("E[f′(z)²]", derivative(f) ** 2, act, sigma)
    return Moments(sigma, mean, second, _variance(mean, second, act), grad_second)


def _variance(mean: Quantity, second: Quantity, act: Activation) -> Quantity:
    name = "Var f(z)"
    if not (mean.exact and second.exact):
        value = second.value - mean.value**2
        return Quantity(name, sympy.Float(value, 15), value, exact=False)
    expr = tidy(second.expr - mean.expr**2)
    general = None
    if mean.general is not None and second.general is not None:
        general = tidy(second.general - mean.general**2)
    return Quantity(name, expr, _value(expr, act), exact=True, general=general)


# ----------------------------------------------------------------------------------------------
# Initialisation


@dataclass(frozen=True)
class Init:
    """Weight variance and scales that keep the signal's scale, for a layer n_in -> n_out.

    ``fan_in`` keeps the forward pre-activation variance at σ²: σ²/(n E[f²]) with n = n_in;
    ``fan_out`` keeps back-propagated gradient variance: 1/(n E[f′²]) with n = n_out;
    ``glorot`` is the harmonic mean of the two, 2/(n_in E[f²]/σ² + n_out E[f′²]), which is
    Glorot's 2/(n_in + n_out) for a linear layer. ``gain`` = σ/√E[f²] so fan_in = gain²/n;
    ``normal_std`` = gain/√n and ``uniform_bound`` = √3 · normal_std (same variance).
    Values are at ``n_in``, ``n_out``.
    """

    n_in: int
    n_out: int
    fan_in: Quantity
    fan_out: Quantity
    glorot: Quantity
    gain: Quantity
    normal_std: Quantity
    uniform_bound: Quantity

    def all(self) -> tuple[Quantity, ...]:
        return (self.fan_in, self.fan_out, self.glorot, self.gain, self.normal_std,
                self.uniform_bound)


def _derived(
    name: str, expr: sympy.Expr, act: Activation, exact: bool, at: Mapping[sympy.Symbol, int]
) -> Quantity:
    return Quantity(name, _shorter_factored(expr), _value(expr.subs(at), act), exact)


FACTOR_SECONDS = 0.5
"""Time budget for factoring a displayed formula (exp(20000)·erfc(…) at σ = 100 takes minutes)."""


def _shorter_factored(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` or its factored form, whichever prints shorter; floats are not factored."""
    if expr.has(sympy.Float):
        return expr
    try:
        with time_limit(FACTOR_SECONDS):
            factored = sympy.factor(expr)
    except (OutOfTime, NotImplementedError, ValueError, TypeError):
        return expr
    return min((expr, factored), key=lambda e: len(str(e)))


def initialisation(act: Activation, m: Moments, n_in: int = 784, n_out: int = 50) -> Init:
    """The init recommended by the moments ``m`` (see ``Init``)."""
    s2 = _exact_number(m.sigma) ** 2
    second, grad = sympy.factor_terms(m.second.expr), sympy.factor_terms(m.grad_second.expr)
    exact_fwd, exact_bwd = m.second.exact, m.grad_second.exact
    at = {N_IN: n_in, N_OUT: n_out}
    gain = sympy.sqrt(s2) / sympy.sqrt(second)
    return Init(
        n_in,
        n_out,
        _derived("Var(W) fan_in", s2 / (N * second), act, exact_fwd, {N: n_in}),
        _derived("Var(W) fan_out", 1 / (N * grad), act, exact_bwd, {N: n_out}),
        _derived("Var(W) glorot", 2 / (N_IN * second / s2 + N_OUT * grad), act,
                 exact_fwd and exact_bwd, at),
        _derived("gain", gain, act, exact_fwd, {}),
        _derived("normal std", gain / sympy.sqrt(N), act, exact_fwd, {N: n_in}),
        _derived("uniform bound", gain * sympy.sqrt(3 / N), act, exact_fwd, {N: n_in}),
    )


@dataclass(frozen=True)
class Centring:
    """How far f's output is from centred: mean μ, the shift −μ that centres it, and the
    fraction μ²/E[f²] of the next layer's pre-activation variance that, for a fixed W, is a
    constant per-unit offset μ Σᵢ Wᵢⱼ rather than signal."""

    centred: bool
    mean: Quantity
    shift: Quantity
    offset_fraction: float


def centring(m: Moments, tolerance: float = 1e-12) -> Centring:
    """Whether E[f(z)] = 0 and, if not, by how much."""
    mean = m.mean
    shift = Quantity("shift", -mean.expr, -mean.value, mean.exact)
    fraction = mean.value**2 / m.second.value if m.second.value else math.nan
    return Centring(abs(mean.value) <= tolerance, mean, shift, fraction)


# ----------------------------------------------------------------------------------------------
# Fixed points


@dataclass(frozen=True)
class FixedPoint:
    """Parameter values making E[f(z)] = 0 (and Var f(z) = σ² with two parameters) hold."""

    conditions: tuple[str, ...]
    solution: dict[sympy.Symbol, Quantity]


def fixed_point(act: Activation, sigma: float = 1.0) -> FixedPoint:
    """Solve for f's free parameters so that (mean 0, variance σ²) is a fixed point.

    One parameter: E[f] = 0 (a shift c of relu(z) + c), or Var f = σ² when the mean does not
    depend on it. Two: both (SELU's λ, α). Exact with SymPy's solve when it manages in time,
    else mpmath's findroot to ``DIGITS`` digits.
    """
    params = act.params
    if not 1 <= len(params) <= 2:
        raise MatcalcError(
            f"--fixed-point needs one or two free parameters in f, found {len(params)}",
            hint="Write them as names, e.g. `relu(z) + c` or `lam*tanh(alpha*z)`.",
        )
    conditions, residuals = _conditions(act, sigma)
    exact = _solve_exactly(residuals, params, sigma)
    if exact is not None:
        solution = {p: Quantity(str(p), v, float(v.evalf(DIGITS)), True) for p, v in exact.items()}
    else:
        numbers = _find_root(act, residuals, sigma)
        solution = {p: Quantity(str(p), sympy.Float(v, 15), v, False) for p, v in numbers.items()}
    return FixedPoint(conditions, solution)


_Residual = tuple[str, sympy.Expr, sympy.Expr]  # (what, g, target): E[g(z)] = target


def _conditions(act: Activation, sigma: float) -> tuple[tuple[str, ...], list[_Residual]]:
    s2 = _exact_number(sigma) ** 2
    mean = ("E[f(z)] = 0", act.expr, sympy.Integer(0))
    spread = (f"Var f(z) = {s2}", act.expr**2, s2)  # E[f²] = σ² once the mean is 0
    if len(act.params) == 2:
        chosen = [mean, spread]
    else:
        general = exact_expectation(act.expr, Z)
        fixed_mean = general is not None and not general.has(act.params[0])
        chosen = [spread if fixed_mean or _is_odd(act.expr, Z) else mean]
    return tuple(what for what, _, _ in chosen), chosen


def _solve_exactly(
    residuals: list[_Residual], params: tuple[sympy.Symbol, ...], sigma: float = 1.0
) -> dict[sympy.Symbol, sympy.Expr] | None:
    at = {SIGMA: _exact_number(sigma)}
    equations = []
    for _, g, target in residuals:
        general = exact_expectation(g, Z)
        if general is None:
            return None
        equations.append(general.subs(at) - target)
    try:
        with time_limit(EXACT_SECONDS):
            solutions = sympy.solve(equations, params, dict=True)
    except (OutOfTime, NotImplementedError, ValueError, TypeError):
        return None
    real = [s for s in solutions if len(s) == len(params) and all(_is_real(v) for v in s.values())]
    return min(real, key=_distance_from_start) if real else None


def _is_real(value: sympy.Expr) -> bool:
    number = value.evalf(DIGITS)
    return bool(number.is_number and number.is_real)


def _distance_from_start(solution: Mapping[sympy.Symbol, sympy.Expr]) -> float:
    """Prefer the root nearest 1 in every parameter (positive λ, α for SELU)."""
    return sum((float(v.evalf(DIGITS)) - 1.0) ** 2 for v in solution.values())


def _find_root(
    act: Activation, residuals: list[_Residual], sigma: float
) -> dict[sympy.Symbol, float]:
    params = act.params

    def equations(*point: mpmath.mpf) -> list[mpmath.mpf]:
        values = {p: sympy.Float(x, DIGITS) for p, x in zip(params, point, strict=True)}
        return [_precise_expectation(g, values, sigma) - target for _, g, target in residuals]

    try:
        with mpmath.workdps(DIGITS):
            if len(params) == 1:
                root = [mpmath.findroot(lambda x: equations(x)[0], mpmath.mpf(1))]
            else:
                root = list(mpmath.findroot(equations, [mpmath.mpf(1)] * len(params)))
    except (ZeroDivisionError, ValueError) as err:
        raise MatcalcError(f"the fixed-point search did not converge ({err})") from None
    return {p: float(x) for p, x in zip(params, root, strict=True)}


def _precise_expectation(
    g: sympy.Expr, values: Mapping[sympy.Symbol, sympy.Expr], sigma: float
) -> mpmath.mpf:
    """E[g(z)] at full mpmath precision (root finding differentiates it numerically)."""
    general = exact_expectation(g, Z)
    if general is None:
        return _quad(g.subs(values), Z, sigma)
    number = general.subs(SIGMA, _exact_number(sigma)).subs(values).evalf(DIGITS)
    return mpmath.mpf(str(number))


# ----------------------------------------------------------------------------------------------
# Simulation


INITS = ("derived", "kaiming", "xavier", "normal01")


@dataclass(frozen=True)
class Simulation:
    """Per-layer statistics of a deep stack: pre-activations y = x W and activations f(y)."""

    init: str
    weight_var: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    act_mean: np.ndarray
    act_std: np.ndarray


def weight_variances(
    act: Activation, init: str, layers: int, width: int, fan_in: int, sigma: float = 1.0
) -> np.ndarray:
    """Var(W) of each layer. ``derived`` uses σ²/(n_in E[x²]) with E[x²] = 1 for the standard
    normal input and E[f²] after; ``kaiming`` 2/((1 + a²) n_in) (a: leaky_relu's slope, else 0);
    ``xavier`` 2/(n_in + n_out); ``normal01`` 1."""
    n_in = np.array([fan_in] + [width] * (layers - 1), dtype=float)
    if init == "derived":
        second = moments(act, sigma).second.value
        return sigma**2 / (n_in * np.array([1.0] + [second] * (layers - 1)))
    if init == "kaiming":
        slope = float(act.values.get(_A, 0)) if act.name == "leaky_relu" else 0.0
        return 2 / ((1 + slope**2) * n_in)
    if init == "xavier":
        return 2 / (n_in + width)
    if init == "normal01":
        return np.ones(layers)
    raise MatcalcError(f"unknown init `{init}`", hint=did_you_mean(init, INITS).strip() or None)


def numpy_function(act: Activation) -> Callable[[np.ndarray], np.ndarray]:
    """f as a vectorised NumPy function (every parameter needs a value)."""
    if act.missing():
        names = ", ".join(str(p) for p in act.missing())
        raise MatcalcError(f"parameter(s) {names} need a value to simulate",
                           hint="Give them with --param NAME=VALUE or use --fixed-point.")
    from scipy.special import erf  # loaded on first use: it takes a quarter of a second

    function = sympy.lambdify(Z, act.bound(), modules=[{"erf": erf}, "numpy"])
    return lambda x: np.broadcast_to(function(x), x.shape)


def simulate(
    act: Activation,
    init: str = "derived",
    *,
    layers: int = 21,
    width: int = 50,
    fan_in: int = 784,
    batch: int = 1000,
    seed: int = 0,
    sigma: float = 1.0,
) -> Simulation:
    """Push a standard normal batch through ``layers`` layers y = x W, x = f(y)."""
    f = numpy_function(act)
    variances = weight_variances(act, init, layers, width, fan_in, sigma)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, fan_in))
    stats = []
    with np.errstate(all="ignore"):
        for variance in variances:
            y = x @ (rng.standard_normal((x.shape[1], width)) * math.sqrt(variance))
            x = f(y)
            stats.append((y.mean(), y.std(), x.mean(), x.std()))
    mean, std, act_mean, act_std = (np.array(column) for column in zip(*stats, strict=True))
    return Simulation(init, variances, mean, std, act_mean, act_std)


def plot_simulations(simulations: Sequence[Simulation], path: str, title: str) -> None:
    """Std of the pre-activations per layer for each init, log scale, saved to ``path``."""
    plt = figures.pyplot()
    figure, panels = plt.subplots(1, 2, figsize=(11, 4.5))
    for axes, zoom in zip(panels, (False, True), strict=True):
        _plot_panel(axes, simulations, zoom)
    figure.suptitle(title)
    figure.tight_layout()
    figures.save(figure, path, dpi=120)
    plt.close(figure)


def _plot_panel(axes: Any, simulations: Sequence[Simulation], zoom: bool) -> None:
    """One log-scale panel; the zoomed one shows std between 0.05 and 20 only."""
    for sim in simulations:
        layers = np.arange(1, len(sim.std) + 1)
        std = np.clip(np.nan_to_num(sim.std, nan=1e-300, posinf=1e300), 1e-300, 1e300)
        axes.plot(layers, std, marker="o", markersize=3, label=sim.init)
    axes.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    axes.set_yscale("log")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlabel("layer")
    axes.set_ylabel("std of pre-activations y = x W")
    if zoom:
        axes.set_ylim(0.05, 20)
        axes.set_title("zoom on std near 1")
    else:
        axes.set_title("all inits")
        axes.legend()


# ----------------------------------------------------------------------------------------------
# torch.nn.init.calculate_gain


TORCH_GAINS: dict[str, sympy.Expr] = {
    "linear": sympy.Integer(1),
    "sigmoid": sympy.Integer(1),
    "tanh": sympy.Rational(5, 3),
    "relu": sympy.sqrt(2),
    "leaky_relu": sympy.sqrt(2 / (1 + _A**2)),
    "selu": sympy.Rational(3, 4),
}
"""torch.nn.init.calculate_gain's table (PyTorch 2.x), as data: torch itself is not needed."""

TORCH_NOTES: dict[str, str] = {
    "tanh": "5/3 is empirical in torch; the derivation gives 1/√E[tanh²] forward and "
            "1/√E[tanh′²] backward",
    "selu": "3/4 is empirical in torch (chosen for gradient stability); at the fixed point "
            "E[selu²] = 1, so the derived gain is 1: LeCun's 1/n, as the SELU paper prescribes",
    "sigmoid": "torch's 1 ignores that E[sigmoid²] = 0.29 (mostly the mean 1/2²)",
}


@dataclass(frozen=True)
class GainRow:
    """torch's gain for one nonlinearity beside the derived forward and backward gains."""

    name: str
    torch: Quantity
    forward: Quantity
    backward: Quantity
    note: str


def gain_table(sigma: float = 1.0) -> list[GainRow]:
    """Each of torch's nonlinearities: torch's gain, σ/√E[f²] and 1/√E[f′²]."""
    rows = []
    for name, torch_gain in TORCH_GAINS.items():
        act = BUILTINS[name]
        m = moments(act, sigma)
        s = _exact_number(sigma)
        forward = _derived("forward gain", s / sympy.sqrt(m.second.expr), act, m.second.exact, {})
        backward = _derived("backward gain", 1 / sympy.sqrt(m.grad_second.expr), act,
                            m.grad_second.exact, {})
        torch = Quantity("torch gain", torch_gain, _value(torch_gain, act), True)
        rows.append(GainRow(name, torch, forward, backward, TORCH_NOTES.get(name, "")))
    return rows
