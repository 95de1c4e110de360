"""Verify a claimed derivative against matcalc's, exactly (SymPy) and numerically (NumPy).

A claim is a program followed by statements ``claim KIND(F, X) = EXPR`` (ending at ``;`` or the
line's end, like any statement), KIND being ``grad`` (gradient layout), ``jacobian`` (numerator
layout) or ``hessian``; F names the function (the program's, or an intermediate) and X a
declared variable. EXPR is in the matcalc language, plus ``eye(n)`` (the identity) and
``step(z)`` (1[z > 0]).

The exact check expands the claim, matcalc's derivative and the ground truth of
:mod:`matcalc.proofs.scalar_expansion` (``sympy.diff`` of the expanded function) with every size
2, then every size 3: an entry fails when the difference is nonzero at a random rational point
(one near the origin, one far from it, evaluated to 60 digits, so that a term of 1e-9 shows),
passes when SymPy proves it zero, and is inconclusive when SymPy cannot decide in time. The
numeric check runs the generated NumPy code of the claim and of matcalc's derivative at three
random sizes and at larger distinct sizes (a polynomial in the sizes that vanishes at small ones
shows), on inputs near and far from the origin (both sides of every kink). A claim PASSes only
when both checks pass; an inconclusive exact check is reported as such, never as PASS. """

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import sympy

from matcalc.core.ir import ONE, Node, const_value, has_property, identity, shape_str
from matcalc.core.simplify import apply
from matcalc.errors import MatcalcError, did_you_mean
from matcalc.forms.codegen import numpy_block
from matcalc.forms.derivation import Derivation, derive, hessian, jacobian
from matcalc.forms.printing import to_text
from matcalc.language import syntax
from matcalc.language.lowering import Lowering, Program, parse
from matcalc.proofs.evaluation import compile_block
from matcalc.proofs.finite_differences import relative_error
from matcalc.proofs.inputs import domains, sizes_for, smooth_inputs
from matcalc.proofs.scalar_expansion import (
    Expander,
    Tensor,
    gradient_tensor,
    hessian_tensor,
    jacobian_tensor,
)
from matcalc.proofs.time_limits import OutOfTime, time_limit

KINDS = {
    "grad": ("gradient layout", lambda p, x: derive(p, [x]), gradient_tensor),
    "jacobian": ("numerator layout", lambda p, x: jacobian(p, [x], layout="numerator"),
                 jacobian_tensor),
    "hessian": ("Hessian", lambda p, x: hessian(p, x), hessian_tensor),
}
"""Claim kind -> (what it means, matcalc's derivation, the expanded ground truth)."""

CLAIM = re.compile(r"(?:^|;)[ \t]*claim\b")
FORM = "a claim reads `claim grad(f, x) = EXPR` (or jacobian, hessian)"
NUMERIC_TOLERANCE = 1e-10
"""Largest relative difference of claim and derivative in float64: a 1e-9 term exceeds it."""
WITNESS_TOLERANCE = 1e-40
"""Largest relative difference at a rational point evaluated to 60 digits that is zero."""
PRECISION = 60
FAR = 10.0
"""The far point scales the near one by this: kinks away from 0 are crossed."""
LARGE_SIZES = (7, 11, 6, 9, 8, 10, 13)
"""Sizes of the last numeric draw: larger, distinct, beyond what polynomials tuned to vanish at
small sizes vanish at."""
EXACT_TIMEOUT = 5.0
MAX_BRANCH_CONDITIONS = 8
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "inconclusive"


# ----------------------------------------------------------------------------------------------
# Parsing claims


@dataclass(frozen=True)
class Claim:
    """One parsed claim: ``kind(function, wrt) = expr``, with its text and where its head is."""

    text: str
    kind: str
    function: str
    wrt: str
    expr: Node
    source: str
    offset: int


def claim_spans(source: str) -> list[tuple[int, int, int]]:
    """``(cut, start, end)`` per claim: the claim statement is ``source[cut:end]`` (with its
    ``;``), the text after the keyword ``source[start:end]``; a claim ends at ``;`` or the line's
    end."""
    spans, offset = [], 0
    for line in source.split("\n"):
        code = line.split("#", 1)[0]
        for match in CLAIM.finditer(code):
            end = code.find(";", match.end())
            end = len(code) if end < 0 else end
            spans.append((offset + match.start(), offset + match.end(), offset + end))
        offset += len(line) + 1
    return spans


def blank(source: str, spans: Sequence[tuple[int, int]], inside: bool) -> str:
    """``source`` with characters inside (or outside) ``spans`` blanked; newlines are kept, so
    offsets into the result are offsets into ``source``."""
    return "".join(ch if ch == "\n" or inside != any(a <= i < b for a, b in spans) else " "
                   for i, ch in enumerate(source))


@contextmanager
def located_in(source: str, part: str) -> Iterator[None]:
    """Errors found in the blanked ``part`` show the whole ``source`` (offsets agree)."""
    try:
        yield
    except MatcalcError as err:
        if err.source == part:
            err.source = source
        raise


class ClaimLowering(Lowering):
    """The program's lowering, plus ``eye(n)``, ``step(z)`` (1[z > 0]) and ``heaviside(z)``
    (H(z), ½ at 0) for writing derivatives."""

    def e_Call(self, e: syntax.Call) -> Node:  # noqa: N802
        if e.func not in ("eye", "step", "heaviside"):
            return super().e_Call(e)
        if len(e.args) != 1 or e.kwargs:
            raise self.error(f"{e.func} takes one argument", e.pos)
        arg = self.expr(e.args[0])
        if e.func != "eye":
            return apply(e.func, arg)
        n = const_value(arg)
        if n is None or not (n.is_Symbol or (n.is_Integer and n > 0)):
            raise self.error("eye(n) needs a dimension name or a positive integer", e.pos)
        return identity(n)


def parse_claims(source: str, declarations: Sequence[str] = ()) -> tuple[Program, list[Claim]]:
    """The program (claims blanked out) and its claims, lowered in the program's names."""
    spans = claim_spans(source)
    if not spans:
        raise MatcalcError(f"there is no claim to verify; {FORM}, after the program")
    program_text = blank(source, [(cut, end) for cut, _, end in spans], inside=True)
    with located_in(source, program_text):
        program = parse(program_text, declarations)
    return program, [lower_claim(program, source, start, end) for _, start, end in spans]


def lower_claim(program: Program, source: str, start: int, end: int) -> Claim:
    """``KIND(F, X) = EXPR`` from ``source[start:end]``."""
    equals = source.find("=", start, end)
    if equals < 0:
        raise MatcalcError(f"this claim has no `=`; {FORM}", source, end)
    head = blank(source, [(start, equals)], inside=False)
    with located_in(source, head):
        call = syntax.parse_expression(head)
    kind, function, wrt = claim_head(call, program, source)
    body = blank(source, [(equals + 1, end)], inside=False)
    with located_in(source, body):
        expr = ClaimLowering(program, body).expr(syntax.parse_expression(body))
    text = " ".join(source[start:end].split())
    return Claim(text, kind, function, wrt, expr, source, call.pos)


def claim_head(call: syntax.Expr, program: Program, source: str) -> tuple[str, str, str]:
    """The kind, function and variable of ``grad(f, x)``, each checked."""
    pos = getattr(call, "pos", 0)
    if not (isinstance(call, syntax.Call) and call.func in KINDS and not call.kwargs
            and len(call.args) == 2 and all(isinstance(a, syntax.Name) for a in call.args)):
        raise MatcalcError("a claim starts with grad(f, x), jacobian(f, x) or hessian(f, x), "
                           "f the function and x a variable", source, pos)
    function, wrt = call.args
    if function.id != program.function_name and function.id not in program.intermediates:
        raise MatcalcError(f"`{function.id}` is not a function of the program (the program's "
                           f"function is `{program.function_name}`)."
                           + did_you_mean(function.id, program.intermediates), source,
                           function.pos)
    if wrt.id not in program.variables:
        raise MatcalcError(f"`{wrt.id}` is not a declared variable."
                           + did_you_mean(wrt.id, program.variables), source, wrt.pos)
    return call.func, function.id, wrt.id


def focus(program: Program, function: str) -> Program:
    """The program with ``function`` as the function to differentiate."""
    if function == program.function_name:
        return program
    return replace(program, function=program.intermediates[function], function_name=function)


# ----------------------------------------------------------------------------------------------
# Verdicts


@dataclass
class Verdict:
    """The outcome of one claim: the exact and numeric results, with a counterexample if any."""

    claim: str
    matcalc: str
    exact: str = INCONCLUSIVE
    exact_detail: list[str] = field(default_factory=list)
    numeric_error: float = float("inf")
    numeric_detail: list[str] = field(default_factory=list)
    name: str = ""
    seconds: float = 0.0

    @property
    def numeric(self) -> str:
        return PASS if self.numeric_error <= NUMERIC_TOLERANCE else FAIL

    @property
    def verdict(self) -> str:
        """FAIL when either check fails, PASS when both pass, else inconclusive."""
        if FAIL in (self.exact, self.numeric):
            return FAIL
        return PASS if self.exact == PASS else INCONCLUSIVE

    @property
    def passed(self) -> bool:
        """Proved: the exact check passed and the numbers agree."""
        return self.verdict == PASS

    def text(self) -> str:
        """Labelled lines: the claim, matcalc's form, each check with its details, the verdict."""
        rows = [("claim", self.claim, []), ("matcalc", self.matcalc, []),
                ("exact", self.exact, self.exact_detail),
                ("numeric", self.numeric + (f"   max relative error {self.numeric_error:.1e}"
                                            if np.isfinite(self.numeric_error) else ""),
                 self.numeric_detail),
                ("verdict", self.verdict, [])]
        return "\n".join(labelled(label, value, detail) for label, value, detail in rows)

    def json(self) -> dict:
        return {"name": self.name, "claim": self.claim, "matcalc": self.matcalc,
                "exact": self.exact, "exact_detail": self.exact_detail,
                "numeric": self.numeric, "numeric_error": self.numeric_error,
                "numeric_detail": self.numeric_detail, "verdict": self.verdict,
                "passed": self.passed, "seconds": round(self.seconds, 3)}


def labelled(label: str, value: str, detail: Sequence[str]) -> str:
    """``label value`` and the details, the first on the same line when it fits."""
    lines = [f"{label:<9}{value}", *(f"{'':11}{line}" for line in detail)]
    if len(detail) and len(lines[0]) + len(detail[0]) + 3 <= 100:
        lines[:2] = [f"{lines[0]}   {detail[0]}"]
    return "\n".join(lines)


def sizes_text(sizes: Mapping[str, int]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in sizes.items()) or "the declared sizes"


def entry_text(position: int, shape: tuple[int, ...]) -> str:
    """``[1, 0]``: the NumPy index of a flat position."""
    if not shape:
        return "the value"
    return "[" + ", ".join(map(str, np.unravel_index(position, shape))) + "]"


def short(value: object, width: int = 90) -> str:
    text = str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


# ----------------------------------------------------------------------------------------------
# The exact check


def proved_zero(difference: sympy.Expr, deadline: float) -> bool:
    """Whether SymPy shows the difference is 0 before the deadline: in every branch of its
    relu-like Piecewise functions, by ``cancel`` or else ``simplify``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    try:
        with time_limit(remaining):
            return all(sympy.cancel(case) == 0 or sympy.simplify(case) == 0
                       for case in branches(difference))
    except OutOfTime:
        return False


def tidy(e: sympy.Expr, seconds: float = 0.5) -> sympy.Expr:
    """``e`` simplified for display, if SymPy manages quickly."""
    try:
        with time_limit(seconds):
            return sympy.simplify(e)
    except OutOfTime:
        return e


def branches(e: sympy.Expr) -> Iterator[sympy.Expr]:
    """``e`` with each combination of truth values for its Piecewise conditions (itself when
    there are too many); the combinations cover every point off the kinks. A step H(u), of
    whatever value at 0, is 1 where u > 0 and 0 where u < 0, sign(u) 1 or −1: Piecewise too;
    an equality (H(0) = 1/2 at u = 0) holds only on a kink, and is false off them."""
    e = e.replace(sympy.Heaviside, lambda u, *_: sympy.Piecewise((1, u > 0), (0, True)))
    e = e.replace(sympy.sign, lambda u: sympy.Piecewise((1, u > 0), (-1, True)))
    e = e.xreplace({c: sympy.false for pw in e.atoms(sympy.Piecewise) for _, c in pw.args
                    if isinstance(c, sympy.Eq)})
    conditions = sorted({c for pw in e.atoms(sympy.Piecewise) for _, c in pw.args
                         if c is not sympy.true}, key=str)
    if len(conditions) > MAX_BRANCH_CONDITIONS:
        yield e
        return
    for values in itertools.product((sympy.true, sympy.false), repeat=len(conditions)):
        yield e.xreplace(dict(zip(conditions, values, strict=True)))


def far_from_origin(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The point scaled by ``FAR``: kinks away from 0 are crossed (targets stay as they are,
    integer labels too; positive and well-conditioned inputs stay so)."""
    return {name: array if np.asarray(array).dtype.kind in "iu" or is_rows(array)
            else np.asarray(array) * FAR for name, array in arrays.items()}


def is_rows(array: np.ndarray) -> bool:
    """Rows of probabilities (one-hot or not): left as they are."""
    a = np.asarray(array, dtype=float)
    return a.ndim >= 1 and bool(np.all(a >= 0)) and bool(np.allclose(a.sum(axis=-1), 1))


@dataclass
class ExactCheck:
    """Compares claim, derivation and ground truth entry by entry at one size assignment."""

    program: Program
    sizes: dict[str, int]
    deadline: float
    rng: np.random.Generator

    def __post_init__(self) -> None:
        self.positive = {k for k, v in domains(self.program).items() if v == "positive"}
        near = smooth_inputs(self.program, self.sizes, self.rng)
        self.points = [self.rational_point(near), self.rational_point(far_from_origin(near))]

    def rational_point(self, arrays: Mapping[str, np.ndarray]) -> dict[sympy.Symbol, object]:
        """Each expanded entry's exact value at ``arrays`` (floats are binary rationals)."""
        expander = Expander(self.sizes, self.positive)
        return {s: sympy.Rational(float(v)) for name, array in arrays.items()
                for s, v in zip(expander(self.program.variables[name]).flat, np.ravel(array),
                                strict=True) if isinstance(s, sympy.Symbol)}

    def tensor(self, node: Node, signals: Mapping[int, Node] | None = None) -> Tensor:
        return Expander(self.sizes, self.positive, signals)(node)

    def truth(self, kind: str, wrt: str) -> Tensor:
        return KINDS[kind][2](self.program, wrt, self.sizes, self.positive)

    def differs(self, difference: sympy.Expr, scale: sympy.Expr) -> bool:
        """Nonzero at one of the points, to 60 digits."""
        for point in self.points:
            witness, size = (abs(complex(e.xreplace(point).evalf(PRECISION)))
                             for e in (difference, scale))
            if witness > WITNESS_TOLERANCE * max(1.0, size):
                return True
        return False

    def compare(self, got: Tensor, truth: Tensor, shape: tuple[int, ...], what: str,
                prove: bool = True) -> tuple[str, list[str]]:
        """FAIL with a counterexample when an entry differs at a point; else PASS when every
        entry is proved equal (or, without ``prove``, only agrees), inconclusive otherwise."""
        verdict = PASS
        for k, (a, b) in enumerate(zip(got.flat, truth.flat, strict=True)):
            difference = a - b
            if difference == 0:
                continue
            if self.differs(difference, b):
                return FAIL, [f"at {sizes_text(self.sizes)}, entry {entry_text(k, shape)}:",
                              f"  {what} {short(tidy(a))}", f"  truth  {short(tidy(b))}"]
            if prove and not proved_zero(difference, self.deadline):
                verdict = INCONCLUSIVE
        return verdict, []


def exact_check(program: Program, claim: Claim, derivation: Derivation,
                sizes_list: Sequence[dict[str, int]], timeout: float, rng: np.random.Generator
                ) -> tuple[str, list[str]]:
    """The claim and matcalc's result against the expanded ground truth at each size."""
    deadline = time.monotonic() + timeout
    try:
        with time_limit(timeout):
            return compare_exactly(program, claim, derivation, sizes_list, deadline, rng)
    except OutOfTime:
        return INCONCLUSIVE, [f"the expansion did not finish within {timeout:g} s"]


def compare_exactly(program: Program, claim: Claim, derivation: Derivation,
                    sizes_list: Sequence[dict[str, int]], deadline: float,
                    rng: np.random.Generator) -> tuple[str, list[str]]:
    """The exact check itself (see :func:`exact_check`)."""
    expr = derivation.gradients[0].expr
    signals = {s.label: s.expr for s in derivation.steps}
    timeout = deadline - time.monotonic()           # what the expansion left of the budget
    verdicts = []
    for i, sizes in enumerate(sizes_list):
        check = ExactCheck(program, sizes, deadline, rng)
        derived = check.tensor(expr, signals)
        truth = in_vec_layout(check.truth(claim.kind, claim.wrt), derived.shape,
                              program.variables[claim.wrt].rank)
        claimed = check.tensor(claim.expr)
        verdict, why = check.compare(claimed, truth, derived.shape, "claim ", prove=i == 0)
        if verdict == FAIL:
            symmetric = claim.kind == "grad" and has_property(program.variables[claim.wrt],
                                                              "symmetric")
            return FAIL, why + (convention(check, claimed, truth, claim.wrt) if symmetric else [])
        ours, bug = check.compare(derived, truth, derived.shape, "matcalc", prove=i == 0)
        if ours == FAIL:
            return FAIL, ["matcalc's own result disagrees with the expansion (a matcalc bug; "
                          "please report it)", *bug]
        verdicts += [verdict, ours]
    proved, agreed = sizes_text(sizes_list[0]), "; ".join(map(sizes_text, sizes_list[1:]))
    if INCONCLUSIVE in verdicts:
        limit = f" within {timeout:.2g} s" if time.monotonic() >= deadline else ""
        return INCONCLUSIVE, [f"SymPy could not prove every entry equal{limit} (at {proved}); "
                              "none differs at random points, so neither PASS nor FAIL"]
    also = f"; equal to {PRECISION} digits at random points at {agreed}" if agreed else ""
    return PASS, [f"proved entry by entry at {proved}{also}"]


def convention(check: ExactCheck, claimed: Tensor, truth: Tensor, name: str) -> list[str]:
    """What a claim that fails for a symmetric variable is, when it is the gradient in another
    convention: the Matrix Cookbook's G + Gᵀ − I ⊙ G = 2T − I ⊙ T (derivatives in the
    independent entries), or an unconstrained G, whose symmetric part is matcalc's T."""
    t, c = truth.matrix(), claimed.matrix()
    cookbook = Tensor.of_matrix(2 * t - sympy.diag(*(t[i, i] for i in range(t.rows))),
                                truth.shape)
    ours = (f"{name} is symmetric: matcalc's gradient is the one among symmetric matrices, "
            "(G + Gᵀ)/2 for the unconstrained G (see derive's note)")
    for got, want, what in (
            (claimed, cookbook, "the Matrix Cookbook's G + Gᵀ − I ⊙ G, the derivatives in the "
                                f"independent entries {name}ᵢⱼ (i ≤ j)"),
            (Tensor.of_matrix((c + c.T) / 2, truth.shape), truth,
             "an unconstrained gradient G: its symmetric part (G + Gᵀ)/2 is matcalc's")):
        if check.compare(got, want, truth.shape, "", prove=False)[0] != FAIL:
            return [f"note: {ours}; the claim is {what}, so under that convention it holds"]
    return [f"note: {ours}"]


def in_vec_layout(truth: Tensor, shape: tuple[int, ...], x_rank: int) -> Tensor:
    """The expanded ∂f/∂x (f's axes, then x's) as matcalc's matrix of ``shape`` when that is
    its vec form: row i is entry i of vec(f), column j entry j of vec(x), vec stacking columns
    (Magnus & Neudecker), so that a Kronecker claim meets the truth entry by entry."""
    split = len(truth.shape) - x_rank
    rows, cols = truth.shape[:split], truth.shape[split:]
    if len(truth.shape) <= 2 or len(shape) != 2 or not rows or (
            (math.prod(rows), math.prod(cols)) != shape):
        return truth
    return Tensor.build(shape, lambda i: truth[np.unravel_index(i[0], rows, order="F")
                                               + np.unravel_index(i[1], cols, order="F")])


def exact_sizes(program: Program) -> list[dict[str, int]]:
    """Two small size assignments: every dimension 2, then every dimension 3."""
    first = {name: 2 for name in program.dims}
    second = {name: 3 for name in program.dims}
    return [first] if first == second else [first, second]


# ----------------------------------------------------------------------------------------------
# The numeric check


def numeric_check(program: Program, claim: Claim, derivation: Derivation,
                  sizes_list: Sequence[Mapping[str, int]], rng: np.random.Generator
                  ) -> tuple[float, list[str]]:
    """Max relative error between the claim's and matcalc's NumPy values, and where it fails."""
    outputs = [("claimed*", claim.expr), ("derived*", derivation.gradients[0].expr)]
    block = numpy_block(outputs, list(program.variables.values()), derivation.signals())
    run = compile_block(block, list(program.variables), block.outputs)
    worst, where = 0.0, []
    draws = [(sizes, scale) for sizes in sizes_list for scale in (1.0, FAR)]
    for sizes, scale in draws:
        arrays = smooth_inputs(program, sizes, rng)
        if scale != 1.0:
            arrays = far_from_origin(arrays)
        with np.errstate(all="ignore"):
            claimed, derived = (np.asarray(v, dtype=float) for v in run(**arrays))
        if scale != 1.0 and not np.all(np.isfinite(derived)):
            continue                           # far out the function itself overflows
        claimed = np.reshape(claimed, derived.shape)
        error = relative_error(claimed, derived) if np.all(np.isfinite(claimed)) else np.inf
        if error > worst:
            worst = error
        if error > NUMERIC_TOLERANCE and not where:
            k = int(np.argmax(np.abs(np.nan_to_num(claimed - derived, nan=np.inf))))
            where = [f"at {sizes_text(sizes)} on random inputs, entry "
                     f"{entry_text(k, derived.shape)}:",
                     f"  claim    {claimed.flat[k]:.6g}", f"  matcalc  {derived.flat[k]:.6g}"]
    return worst, where


# ----------------------------------------------------------------------------------------------
# Entry points


def large_sizes(program: Program) -> dict[str, int]:
    """Larger, distinct sizes for every dimension."""
    return {name: LARGE_SIZES[i % len(LARGE_SIZES)] for i, name in enumerate(program.dims)}


def squeezed(shape: tuple) -> tuple:
    """A shape without its unit dimensions: a row [1, n] holds the entries of a vector [n]."""
    return tuple(d for d in shape if d != ONE)


def check_claim(program: Program, claim: Claim, sizes: Sequence[Mapping[str, int]] | None,
                seed: int, timeout: float) -> Verdict:
    """Derive, compare shapes, then run the exact and numeric checks."""
    started = time.perf_counter()
    focused = focus(program, claim.function)
    meaning, derive_with, _ = KINDS[claim.kind]
    try:
        derivation = derive_with(focused, claim.wrt)
    except MatcalcError as err:
        raise err.located(claim.source, claim.offset) from None
    expr = derivation.gradients[0].expr
    verdict = Verdict(claim.text, f"{derivation.lhs(derivation.gradients[0])} = {to_text(expr)}   "
                      f"{shape_str(expr.shape)}, {meaning}")
    if squeezed(claim.expr.shape) != squeezed(expr.shape):
        verdict.exact = FAIL
        verdict.exact_detail = [f"the claim has shape {shape_str(claim.expr.shape)}, "
                                f"{derivation.lhs(derivation.gradients[0])} has shape "
                                f"{shape_str(expr.shape)}"]
        verdict.numeric_detail = ["not compared: the shapes differ"]
    else:
        rng = np.random.default_rng(seed)
        numeric_sizes = sizes or [*(sizes_for(focused, rng) for _ in range(3)),
                                  large_sizes(focused)]
        verdict.exact, verdict.exact_detail = exact_check(focused, claim, derivation,
                                                          exact_sizes(focused), timeout, rng)
        verdict.numeric_error, verdict.numeric_detail = numeric_check(
            focused, claim, derivation, numeric_sizes, rng)
    verdict.seconds = time.perf_counter() - started
    return verdict


def verify_all(source: str, declarations: Sequence[str] = (),
               sizes: Sequence[Mapping[str, int]] | None = None, seed: int = 0,
               timeout: float = EXACT_TIMEOUT) -> list[Verdict]:
    """A verdict for every claim of ``source``.

    ``sizes`` are the size assignments of the numeric check (default: three random ones);
    ``timeout`` bounds the time SymPy may take to prove each claim.
    """
    program, claims = parse_claims(source, declarations)
    return [check_claim(program, claim, sizes, seed, timeout) for claim in claims]


def verify(claim: str, declarations: Sequence[str] = (),
           sizes: Sequence[Mapping[str, int]] | None = None, seed: int = 0,
           timeout: float = EXACT_TIMEOUT) -> Verdict:
    """The verdict on a program with exactly one claim (see :func:`verify_all`)."""
    verdicts = verify_all(claim, declarations, sizes, seed, timeout)
    if len(verdicts) != 1:
        raise MatcalcError(f"verify expects one claim, got {len(verdicts)}; use verify_all")
    return verdicts[0]


def assert_identity(claim: str, declarations: Sequence[str] = (), seed: int = 0,
                    timeout: float = 60.0) -> None:
    """For test suites: raise AssertionError (with the counterexample) unless every claim is
    proved; SymPy gets ``timeout`` seconds per claim, generous so that a loaded machine does
    not make a true claim inconclusive."""
    failed = [v for v in verify_all(claim, declarations, seed=seed, timeout=timeout)
              if not v.passed]
    if failed:
        raise AssertionError("\n\n".join(v.text() for v in failed))
