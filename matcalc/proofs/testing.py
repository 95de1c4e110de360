"""Numerical proof of derived gradients, for the ``check`` command and for test suites.

:func:`check_gradient` compares the generated ``value_and_grad`` with central finite
differences on random float64 inputs drawn where the function is defined and smooth;
:func:`assert_backward` compares a hand-written backward function with the derived gradients.
A function with a matrix value (a layer) is checked through ``sum(grad_output ⊙ value)`` with a
random ``grad_output``: its gradients are vector-Jacobian products.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from matcalc.core.ir import has_property, shape_str
from matcalc.errors import MatcalcError
from matcalc.forms.derivation import Derivation, jacobian
from matcalc.forms.generated import lambdify, plan
from matcalc.language.lowering import Program, names_of, parse
from matcalc.language.sizes import check_memory, sizes_only_in_products
from matcalc.proofs.evaluation import evaluator, function_value
from matcalc.proofs.finite_differences import (
    ROUNDING,
    directional,
    numeric_jacobian,
    vec_jacobian,
)
from matcalc.proofs.inputs import LARGEST_RANDOM_SIZE, sizes_for, smooth_inputs, symmetric_part

EVERY_ENTRY = 10**4
MAX_JACOBIAN_ENTRIES = 10**6
"""Printed Jacobians with more entries are not checked entry by entry (the VJPs still are)."""
DIRECTIONS = 20

Gradients = Callable[..., tuple[object, Mapping[str, np.ndarray]]]


@dataclass
class VariableCheck:
    """The worst errors of one variable's gradient over every draw."""

    name: str
    shape: str
    entries: int
    abs_error: float = 0.0
    rel_error: float = 0.0
    passed: bool = True
    skipped: bool = False
    """Too large to check entry by entry (a printed Jacobian past MAX_JACOBIAN_ENTRIES)."""
    infinite: bool = False
    """The derived gradient was not finite at some draw (nan or ±inf)."""

    def compare(self, derived: np.ndarray, numeric: np.ndarray, rtol: float, level: float
                ) -> None:
        """Keep the worst errors of ``derived`` against finite differences ``numeric``; fail
        when an error exceeds rtol · largest |numeric| plus the differences' own rounding,
        ROUNDING · max(1, |f|) (``level`` is f's largest entry at the point; its parts are
        taken to be O(1), as the inputs are), or a derived entry is not finite. A gradient of
        1e-7 sum(x²) is checked to that rounding, not to rtol · 1."""
        error = float(np.max(np.abs(derived - numeric), initial=0.0))
        scale = float(np.max(np.abs(numeric), initial=0.0))
        self.abs_error = max(self.abs_error, error)
        self.rel_error = max(self.rel_error, error / scale if scale else error)
        finite = bool(np.all(np.isfinite(derived)))
        self.infinite = self.infinite or not finite
        noise = ROUNDING * max(1.0, level)
        self.passed = self.passed and finite and error <= rtol * scale + noise

    def line(self, width: int, shape_width: int = 10) -> str:
        if self.skipped:
            return (f"{self.name:<{width}}  {self.shape:<{shape_width}} not checked: "
                    f"{self.entries:,} entries (its vector-Jacobian products are)")
        how = "every entry" if self.entries <= EVERY_ENTRY else f"{DIRECTIONS} directions"
        verdict = "PASS" if self.passed else "FAIL" + (
            " (the gradient is not finite there: a point where f is not differentiable)"
            * self.infinite)
        return (f"{self.name:<{width}}  {self.shape:<{shape_width}} {how:<14} max abs error "
                f"{self.abs_error:.2e}  max rel error {self.rel_error:.2e}  {verdict}")


@dataclass
class CheckReport:
    """The verdict of :func:`check_gradient`: one :class:`VariableCheck` per variable."""

    function: str
    variables: list[VariableCheck]
    draws: list[dict[str, int]] = field(default_factory=list)
    imprecise: float = 0.0
    """The largest relative difference, at a draw, between the program's text in float64 and
    in long double, where it loses precision (0: it never did)."""

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.variables)

    def text(self) -> str:
        counts = Counter(", ".join(f"{k}={v}" for k, v in d.items()) or "no sizes"
                         for d in self.draws)
        sizes = "; ".join(f"{s} ({k} draws)" if k > 1 else s for s, k in counts.items())
        width = max(len(v.name) for v in self.variables)
        shape_width = max(10, *(len(v.shape) for v in self.variables))
        failed = sum(not v.passed for v in self.variables)
        verdict = ("PASS: every gradient agrees with central finite differences" if not failed
                   else f"FAIL: {failed} of {len(self.variables)} gradients disagree")
        note = (f"note: at some draws the program as written loses precision in float64 (its "
                f"value moves by {self.imprecise:.1e}, relative, in long double): there the "
                "differences are taken in long double")
        return "\n".join([f"gradients of {self.function} against central differences, float64, "
                          f"{len(self.draws)} draws ({sizes})",
                          *(v.line(width, shape_width) for v in self.variables), verdict,
                          *([note] if self.imprecise else [])])


def known_sizes(program: Program, dims: Mapping[str, int] | None) -> None:
    """MatcalcError unless every name ``dims`` fixes is a size of the program."""
    unknown = set(dims or {}) - set(program.dims)
    if unknown:
        raise MatcalcError(f"dims (--dims) names {', '.join(sorted(unknown))}, not sizes of the "
                           f"program (its sizes: {', '.join(map(str, program.dims)) or 'none'})")


def smaller_sizes_hint(program: Program) -> str:
    """How to check a program too large to check at the sizes given."""
    why = "a gradient that is right at small sizes is right at every size."
    if program.dims:
        return f"Check at smaller sizes (--dims {next(iter(program.dims))}=3): {why}"
    return f"Declare the sizes by name (`x: [n]`, not `x: [100000]`) to check at small ones: {why}"


def check_gradient(source: str | Program, wrt: Sequence[str], dims: Mapping[str, int] | None = None,
                   seed: int = 0, rtol: float = 1e-5, draws: int = 3,
                   declarations: Sequence[str] = (), gradients: Gradients | None = None,
                   progress: Callable[[int, int, str], None] | None = None) -> CheckReport:
    """Compare each derived gradient with central finite differences.

    Inputs are float64 at ``dims`` (small random sizes where not given), ``draws`` times. A
    gradient passes when its largest error is at most ``rtol`` times its largest entry, plus
    the differences' own rounding (about 3.5e-9 · max(1, |f|)); one of a symmetric variable
    is symmetric too. ``gradients`` replaces the generated ``value_and_grad`` (to test a checker);
    ``progress`` hears of each variable of each draw as its check starts.
    """
    wrt = names_of(wrt)
    program = scalar_program(source, wrt, declarations)
    known_sizes(program, dims)
    check_memory(program, {**dict.fromkeys(program.dims, LARGEST_RANDOM_SIZE), **(dims or {})},
                 hint=smaller_sizes_hint(program))
    rng = np.random.default_rng(seed)
    program = dataclasses.replace(program, sizes=fixed_draw(program, rng, dims or {}))
    gradients = gradients or lambdify(program, wrt).value_and_grad
    value = function_value(program)        # from the source text, not the derived IR
    checks = {w: VariableCheck(w, shape_str(program.lookup(w).shape), 0) for w in wrt}
    checked = program.function_name if program.seed is None else (
        f"sum({program.seed} ⊙ value), the layer's backward pass,")
    jacobians = printed_jacobians(source, wrt, declarations) if program.seed else []
    if jacobians:
        checked += " and the Jacobians derive prints,"
    report = CheckReport(checked, [*checks.values(), *(j.check for j in jacobians)])
    for draw in range(draws):
        sizes, arrays, grads = differentiable_draw(program, dims or {}, rng, gradients,
                                                   list(checks), value)
        report.draws.append({k: sizes[k] for k in program.dims})
        f, lost = precise_text(value, arrays)
        report.imprecise = max(report.imprecise, lost)
        for k, (name, check) in enumerate(checks.items()):
            if progress is not None:
                progress(draw * len(checks) + k, draws * len(checks), name)
            record(check, grads[name], arrays, name, f, rng, rtol,
                   has_property(program.lookup(name), "symmetric"))
        for jac in jacobians:
            report.imprecise = max(report.imprecise, jac.record(arrays, rtol))
    return report


AGREEMENT = 1e-13
"""Relative difference of the text's value in float64 and in long double beyond which the
text has lost precision in float64 (they agree to ~1e-16 where it has not; differences of
step ~1e-6 magnify an error of the value a millionfold)."""


def precise_text(text: Callable[..., object], arrays: Mapping[str, np.ndarray]
                 ) -> tuple[Callable[..., object], float]:
    """The program's text to difference at ``arrays``: in float64, unless it loses precision
    there (1 − σ(30) rounds), which shows as a value that moves when computed in long double;
    then the text in long double, and how far its float64 value was (relative; else 0). The
    differences stay those of the text, independent of matcalc. Linear algebra has no long
    double: such a text is differenced in float64."""
    def longer(**given: np.ndarray) -> object:
        return text(**{k: np.asarray(v).astype(np.longdouble) if np.asarray(v).dtype.kind == "f"
                       else v for k, v in given.items()})

    with np.errstate(all="ignore"):
        written = np.asarray(text(**arrays), dtype=float)
        try:
            precise = np.asarray(longer(**arrays), dtype=np.longdouble)
        except (TypeError, ValueError, np.linalg.LinAlgError):
            return text, 0.0
        scale = max(1.0, float(np.max(np.abs(precise), initial=0.0)))
        lost = float(np.max(np.abs(written - precise), initial=0.0)) / scale
    return (longer, lost) if lost > AGREEMENT else (text, 0.0)


FINITE_TRIES = 10
"""Draws tried for inputs where every derived gradient is finite."""


def differentiable_draw(program: Program, dims: Mapping[str, int], rng: np.random.Generator,
                        gradients: Gradients, names: Sequence[str],
                        text: Callable[..., object] | None = None
                        ) -> tuple[dict[str, int], dict[str, np.ndarray], Mapping[str, np.ndarray]]:
    """Sizes (random but for ``dims``) and inputs away from kinks where every gradient is
    finite (std of a saturated clip is not differentiable), and the gradients there; new sizes
    when none are found at the drawn ones (Xᵀ X is singular for fewer rows than columns); a
    MatcalcError when no draw gives them. Inputs where the program's ``text`` keeps its
    precision in float64 are preferred (log(1 − σ(30 x)) rounds for x > 1), else those where
    it loses the least."""
    failure, best = None, None
    for _ in range(FINITE_TRIES):
        sizes = {**sizes_for(program, rng), **dims, **program.sizes}
        try:
            arrays = smooth_inputs(program, sizes, rng)
        except MatcalcError as err:
            failure = err
            continue
        with np.errstate(all="ignore"):
            grads = gradients(**arrays)[1]
        if all(np.all(np.isfinite(np.asarray(grads[n], dtype=float))) for n in names):
            lost = precise_text(text, arrays)[1] if text is not None else 0.0
            if not lost:
                return sizes, arrays, grads
            if best is None or lost < best[0]:
                best = lost, (sizes, arrays, grads)
    if best is not None:
        return best[1]
    if failure is not None:
        raise failure
    raise MatcalcError(
        f"could not draw inputs where every gradient is finite (tried {FINITE_TRIES} draws): "
        "the function is not differentiable at any of them, e.g. sqrt or std of something that "
        "is 0 there (a clip that saturates, positive inputs drawn for a sqrt)",
        hint="matcalc draws positive values for variables under log and sqrt; shift such an "
             "argument (sqrt(v + 1e-5)) so that the function is differentiable where it draws.")


@dataclass
class JacobianCheck:
    """The Jacobian ``derive`` prints for a vector or matrix function, against differences."""

    program: Program
    name: str
    evaluate: Callable[..., tuple]
    check: VariableCheck

    def record(self, arrays: Mapping[str, np.ndarray], rtol: float) -> float:
        """Compare at ``arrays``; how far the text lost precision there (precise_text)."""
        own = {k: v for k, v in arrays.items() if k in self.program.variables}
        entries = np.size(function_value(self.program)(**own)) * np.size(own[self.name])
        if entries > MAX_JACOBIAN_ENTRIES:          # too large to difference entry by entry
            self.check.entries, self.check.skipped = entries, True
            return 0.0
        derived = np.asarray(self.evaluate(**own)[0], dtype=float)
        f, lost = precise_text(function_value(self.program), own)
        if np.ndim(own[self.name]) == 0 and derived.ndim >= 2:    # ∂F/∂x shaped like F
            numeric = numeric_jacobian(f, own, self.name)
        else:
            numeric = vec_jacobian(f, own, self.name)
        numeric = np.asarray(numeric, dtype=float)
        self.check.entries = numeric.size
        level = float(np.max(np.abs(f(**own)), initial=0.0))
        self.check.compare(derived.reshape(numeric.shape), numeric, rtol, level)
        return lost


def printed_jacobians(source: str | Program, wrt: Sequence[str],
                      declarations: Sequence[str]) -> list[JacobianCheck]:
    """For a vector or matrix function: the numerator-layout Jacobians ``derive`` shows."""
    program = source if isinstance(source, Program) else parse(source, declarations)
    checks = []
    for name in wrt:
        if has_property(program.lookup(name), "symmetric"):
            continue
        try:
            (g,) = jacobian(program, [name]).gradients
        except MatcalcError:
            continue
        label = Derivation(program, [g]).lhs(g)
        checks.append(JacobianCheck(program, name, evaluator(program, [("j", g.expr)]),
                                    VariableCheck(label, shape_str(g.shape), 0)))
    return checks


def scalar_program(source: str | Program, wrt: Sequence[str],
                   declarations: Sequence[str] = ()) -> Program:
    """The program, or ``sum(grad_output ⊙ value)`` for a layer: a scalar to differentiate."""
    return plan(source, wrt, declarations).program


def record(check: VariableCheck, grad: np.ndarray, arrays: Mapping[str, np.ndarray], name: str,
           f: Callable[..., float], rng: np.random.Generator, rtol: float,
           symmetric: bool = False) -> None:
    """Compare one gradient with finite differences; keep the worst errors in ``check``."""
    if name not in arrays:
        raise MatcalcError(f"check differentiates declared variables only, not `{name}`")
    x = np.asarray(arrays[name], dtype=float)
    grad = np.asarray(grad, dtype=float)
    if grad.shape != x.shape:
        raise AssertionError(f"∂/∂{name} has shape {grad.shape}, {name} has {x.shape}")
    check.entries = x.size
    exact, numeric = [], []
    for v in directions(x, rng, symmetric):         # one at a time: memory stays that of x
        exact.append(np.sum(grad * v))
        numeric.append(np.reshape(directional(f, arrays, name, v), ()))   # a [1, 1] f too
    level = float(np.max(np.abs(f(**arrays)), initial=0.0))
    check.compare(np.array(exact), np.array(numeric), rtol, level)
    if symmetric:                          # the gradient among symmetric matrices is symmetric
        check.compare(grad, grad.T, rtol, level)


def directions(x: np.ndarray, rng: np.random.Generator, symmetric: bool
               ) -> Iterator[np.ndarray]:
    """Every unit direction (up to ``EVERY_ENTRY`` entries), else ``DIRECTIONS`` random ones;
    among symmetric matrices for a symmetric ``x`` (Eᵢⱼ + Eⱼᵢ)."""
    if x.size <= EVERY_ENTRY:
        units = (np.eye(1, x.size, k).reshape(x.shape) for k in range(x.size))
    else:
        units = (rng.normal(size=x.shape) for _ in range(DIRECTIONS))
    for v in units:
        yield symmetric_part(v) if symmetric else v


def fixed_draw(program: Program, rng: np.random.Generator,
               dims: Mapping[str, int]) -> dict[str, int]:
    """The sizes the generated code cannot read off its inputs (``h`` of ``[B, T, h * k]``),
    drawn once: the code is generated with them fixed."""
    hidden = sizes_only_in_products(program)
    drawn = {**sizes_for(program, rng), **dims} if hidden else {}
    return {name: drawn[name] for name in hidden}


def assert_backward(fn: Callable[..., object], source: str | Program, wrt: Sequence[str],
                    dims: Mapping[str, int] | None = None, seed: int = 0, rtol: float = 1e-6,
                    draws: int = 3, declarations: Sequence[str] = ()) -> None:
    """Raise AssertionError unless ``fn`` computes the derived gradients.

    ``fn`` takes the declared arrays as keyword arguments (and ``grad_output`` when the value is
    a matrix, a layer) and returns the gradients: a mapping by name, a sequence in the order of
    ``wrt``, or one array for one variable. Each must equal matcalc's within ``rtol`` times its
    largest entry plus the rounding of its own precision (1.4e-14 in float64, 7.6e-6 in
    float32); for a symmetric variable matcalc's is (G + Gᵀ)/2.
    """
    wrt = names_of(wrt)
    program = scalar_program(source, wrt, declarations)
    known_sizes(program, dims)
    reference = lambdify(program, wrt).value_and_grad
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        sizes = {**sizes_for(program, rng), **(dims or {})}
        arrays = smooth_inputs(program, sizes, rng)
        expected = reference(**arrays)[1]
        got = by_name(fn(**arrays), wrt)
        for name in wrt:
            compare(name, got[name], expected[name], rtol, sizes)


def by_name(result: object, wrt: Sequence[str]) -> Mapping[str, object]:
    """A backward function's result as gradients by name."""
    if isinstance(result, Mapping):
        return result
    if len(wrt) == 1 and not isinstance(result, (tuple, list)):
        return {wrt[0]: result}
    return dict(zip(wrt, result, strict=True))


def compare(name: str, got: object, expected: np.ndarray, rtol: float,
            sizes: Mapping[str, int]) -> None:
    """AssertionError unless ``got`` is ``expected`` within rtol · its largest entry, plus the
    rounding of ``got``'s own precision (64 ulps of 1: 1.4e-14 in float64, 7.6e-6 in float32)."""
    dtype = np.asarray(got).dtype
    rounding = 64 * float(np.finfo(dtype if dtype.kind == "f" else float).eps)
    got = np.asarray(got, dtype=float)
    if got.shape != np.shape(expected):
        raise AssertionError(f"∂/∂{name}: shape {got.shape}, derived {np.shape(expected)} "
                             f"(sizes {dict(sizes)})")
    error = float(np.max(np.abs(got - expected), initial=0.0))
    scale = float(np.max(np.abs(expected), initial=0.0))
    if not error <= rtol * scale + rounding:
        raise AssertionError(f"∂/∂{name}: max abs error {error:.3e} against the derived "
                             f"gradient, whose largest entry is {scale:.3e} (allowed: "
                             f"{rtol:g} of that plus {rounding:.1e}; sizes {dict(sizes)})")
