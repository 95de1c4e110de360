"""Property test: random well-typed programs, every gradient checked against finite differences.

Programs are grown bottom-up from 1–3 declared variables of random rank over the dimensions
``n`` and ``m`` (and explicit 1s for columns and rows). Each new subexpression applies a random
function or operator of the language to earlier ones whose shapes fit, so every program is well
typed, broadcasting included. Each subexpression carries a rough bound on its magnitude and, where
known, a positive lower bound or the fact that it is a well-conditioned square matrix, so that
log/sqrt/fractional powers/division only see positive values and inv/det/logdet/matrix_power
only see well-conditioned matrices. The result is reduced to a scalar with sum, mean, norm,
logsumexp, trace, mse or softmax cross-entropy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np
from conftest import check_gradients, differences_agree, torch_outcomes
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from matcalc.core.ir import postorder
from matcalc.core.rules import callable_elementwise
from matcalc.errors import MatcalcError
from matcalc.language.lowering import parse
from matcalc.proofs.evaluation import evaluator, function_value
from matcalc.proofs.inputs import kink_distance, smooth_inputs

MAX_DEPTH = 5
MAX_MAGNITUDE = 1e3
ONE = "1"
VARIABLE_SHAPES = [(), ("n",), ("m",), ("n", "m"), ("m", "n"), ("n", "n"), ("m", "m"),
                   ("n", ONE), (ONE, "m")]
NAMES = ("u", "v", "w")
DIM_SIZE_BOUND = 5


@dataclass(frozen=True)
class Item:
    """A subexpression: its text, shape, depth and what is known about its values."""

    text: str
    shape: tuple[str, ...]
    depth: int = 0
    mag: float = 3.0          # rough bound on |entries|
    low: float = 0.0          # > 0: every entry is at least this (a positive expression)
    wc: bool = False          # a well-conditioned square matrix (declared, transposed, inverted)
    square_var: str | None = None


def broadcast(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...] | None:
    """NumPy broadcasting of symbolic shapes, or None when they clash."""
    rank = max(len(a), len(b))
    a, b = (ONE,) * (rank - len(a)) + a, (ONE,) * (rank - len(b)) + b
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and ONE not in (x, y):
            return None
        out.append(y if x == ONE else x)
    return tuple(out)


def matmul_shape(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...] | None:
    if not a or not b:
        return None
    inner = b[0] if len(b) == 1 else b[-2]
    if a[-1] != inner:
        return None
    return a[:-1] + b[1:] if len(b) == 2 else a[:-1]


def is_square(shape: tuple[str, ...]) -> bool:
    return len(shape) == 2 and shape[0] == shape[1]


def bounded(mag: float) -> float | None:
    return mag if mag <= MAX_MAGNITUDE else None


def size_bound(shape: tuple[str, ...]) -> int:
    return DIM_SIZE_BOUND ** sum(d != ONE for d in shape)


ELEMENTWISE = [*callable_elementwise(), "leaky_relu", "neg", "square_plus_one"]
BINARY = ["+", "-", "*", "/", "**const", "**var", "scale", "by_dim"]
STRUCTURE = ["@", ".T", "sum", "mean", "softmax", "log_softmax", "logsumexp", "trace", "det",
             "logdet", "inv", "matrix_power", "diag", "outer", "norm"]
OPERATIONS = ELEMENTWISE + BINARY + STRUCTURE + ["@"] * 6 + ["+", "*", "-"] * 2 + ["**const"] * 3
"""Matrix products, broadcasting arithmetic and (nested) constant powers weighted up."""


def unary(op: str, a: Item, draw) -> Item | None:
    """``op`` applied to ``a`` with the bookkeeping of bounds, or None when not allowed."""
    t, s, d = a.text, a.shape, a.depth + 1
    if op == "exp":
        return Item(f"exp({t})", s, d, math.exp(a.mag), math.exp(-a.mag)) if a.mag <= 4 else None
    if op == "expm1":
        return Item(f"expm1({t})", s, d, math.exp(a.mag)) if a.mag <= 4 else None
    if op == "log1p":
        return Item(f"log1p({t})", s, d, math.log1p(a.mag) + 1, math.log1p(a.low)) if (
            a.low >= 0.05) else None
    if op == "log":
        if a.low < 0.05:
            return None
        return Item(f"log({t})", s, d, max(abs(math.log(a.low)), math.log(a.mag) + 1))
    if op == "sqrt":
        if a.low < 0.05:
            return None
        return Item(f"sqrt({t})", s, d, math.sqrt(a.mag), math.sqrt(a.low))
    if op in ("sin", "cos", "tanh", "sign", "erf"):
        return Item(f"{op}({t})", s, d, 1.0)
    if op == "arctan":
        return Item(f"arctan({t})", s, d, min(a.mag, math.pi / 2))
    if op == "tan":
        return Item(f"tan({t})", s, d, math.tan(a.mag)) if a.mag <= 1 else None
    if op in ("sinh", "cosh"):
        low = 1.0 if op == "cosh" else 0.0
        return Item(f"{op}({t})", s, d, math.cosh(a.mag), low) if a.mag <= 4 else None
    if op == "sigmoid":
        low = 1 / (1 + math.exp(a.mag)) if a.mag <= 4 else 0.0
        return Item(f"sigmoid({t})", s, d, 1.0, low)
    if op == "softplus":
        low = math.log1p(math.exp(-a.mag)) if a.mag <= 4 else 0.0
        return Item(f"softplus({t})", s, d, a.mag + 1, low)
    if op in ("abs", "relu", "gelu", "silu", "gelu_tanh", "logcosh"):
        return Item(f"{op}({t})", s, d, a.mag + 1)
    if op == "leaky_relu":
        choice = draw(st.sampled_from(["default", "constant", "keyword"]))
        if choice == "default":
            return Item(f"leaky_relu({t})", s, d, a.mag)
        slope = draw(st.sampled_from(["0.2", "0.5", "-0.3"]))
        key = "a=" if choice == "keyword" else ""
        return Item(f"leaky_relu({t}, {key}{slope})", s, d, a.mag)
    if op == "neg":
        return Item(f"(-{t})", s, d, a.mag)
    if op == "square_plus_one":
        return bounded_item(f"({t} * {t} + 1)", s, d, a.mag**2 + 1, 1.0)
    raise KeyError(f"no growth bound for {op}: add one here and in suits()")


def bounded_item(text: str, shape, depth: int, mag: float, low: float = 0.0, wc: bool = False
                 ) -> Item | None:
    return Item(text, shape, depth, mag, low, wc) if mag <= MAX_MAGNITUDE else None


def binary(op: str, a: Item, b: Item, draw, dims: list[str]) -> Item | None:
    d = max(a.depth, b.depth) + 1
    shape = broadcast(a.shape, b.shape)
    if op in ("+", "-", "*", "/", "**var") and (shape is None or len(shape) > 2):
        return None
    if op == "+":
        return bounded_item(f"({a.text} + {b.text})", shape, d, a.mag + b.mag,
                            a.low + b.low if a.low and b.low else 0.0)
    if op == "-":
        return bounded_item(f"({a.text} - {b.text})", shape, d, a.mag + b.mag)
    if op == "*":
        return bounded_item(f"({a.text} * {b.text})", shape, d, a.mag * b.mag, a.low * b.low)
    if op == "/":
        if b.low < 0.1:
            return None
        return bounded_item(f"({a.text} / {b.text})", shape, d, a.mag / b.low,
                            a.low / b.mag if a.low else 0.0)
    if op == "**var":
        if a.low < 0.2 or b.mag > 3:
            return None
        base = max(a.mag, 1 / a.low)
        return bounded_item(f"({a.text} ** {b.text})", shape, d, base**b.mag,
                            min(a.low, 1 / a.mag) ** b.mag if a.mag >= 1 else a.low**b.mag)
    if op == "**const":
        k = draw(st.sampled_from(["2", "3", "-1", "-2", "0.5", "1.5", "-0.5", "0", "1"]))
        value = float(k)
        if (value < 0 or value != int(value)) and a.low < 0.1:
            return None
        mag = max(a.mag, 1 / a.low if a.low else 1.0) ** abs(value)
        low = a.low ** value if a.low and value >= 0 else (a.mag ** value if a.low else 0.0)
        return bounded_item(f"({a.text} ** {k})", a.shape, a.depth + 1, mag, low)
    if op == "scale":
        c = draw(st.sampled_from(["2.5", "0.5", "3"]))
        form = draw(st.sampled_from(["{c} * {a}", "{a} * {c}", "{a} + {c}", "{c} - {a}"]))
        text = "(" + form.format(c=c, a=a.text) + ")"
        positive = a.low * float(c) if form in ("{c} * {a}", "{a} * {c}") else (
            a.low + float(c) if form == "{a} + {c}" else 0.0)
        return bounded_item(text, a.shape, a.depth + 1, a.mag * 3 + 3, positive)
    if op == "by_dim":
        if not dims:
            return None
        dim = draw(st.sampled_from(dims))
        form = draw(st.sampled_from(["({a} / {n})", "({n} * {a})", "(sum({a}) / {n})"]))
        text = form.format(a=a.text, n=dim)
        if form.startswith("(sum"):
            return bounded_item(text, (), a.depth + 1, a.mag * size_bound(a.shape))
        if form.startswith("({n} *"):
            return bounded_item(text, a.shape, a.depth + 1, a.mag * DIM_SIZE_BOUND,
                                a.low * 2)
        return Item(text, a.shape, a.depth + 1, a.mag / 2, a.low / DIM_SIZE_BOUND)
    return None


def axis_for(rank: int, draw, allow_none: bool = True) -> int | None:
    choices = list(range(-rank, rank)) + ([None] if allow_none else [])
    return draw(st.sampled_from(choices))


def reduced(shape: tuple[str, ...], axis: int | None) -> tuple[str, ...]:
    if axis is None:
        return ()
    axis %= len(shape)
    return shape[:axis] + shape[axis + 1:]


def axis_text(axis: int | None) -> str:
    return "" if axis is None else f", axis={axis}"


def structural(op: str, a: Item, b: Item, draw) -> Item | None:
    t, s, d = a.text, a.shape, a.depth + 1
    if op == "@":
        shape = matmul_shape(a.shape, b.shape)
        if shape is None:
            return None
        inner = DIM_SIZE_BOUND
        return bounded_item(f"({a.text} @ {b.text})", shape, max(a.depth, b.depth) + 1,
                            a.mag * b.mag * inner, wc=a.wc and b.wc and a.depth + b.depth < 2)
    if op == ".T":
        return Item(f"{t}.T", s[::-1], d, a.mag, a.low, a.wc)
    if op in ("sum", "mean"):
        if not s:
            return None
        axis = axis_for(len(s), draw)
        shape = reduced(s, axis)
        factor = 1 if op == "mean" else size_bound(s) // max(size_bound(shape), 1)
        return bounded_item(f"{op}({t}{axis_text(axis)})", shape, d, a.mag * factor,
                            a.low)  # a sum of positive entries is at least one of them
    if op in ("softmax", "log_softmax"):
        if not s or a.mag > 20:
            return None
        axis = axis_for(len(s), draw, allow_none=False)
        default = axis == -1 and draw(st.booleans())
        text = f"{op}({t})" if default else f"{op}({t}, axis={axis})"
        if op == "softmax":
            low = math.exp(-2 * a.mag) / DIM_SIZE_BOUND if a.mag <= 3 else 0.0
            return Item(text, s, d, 1.0, low)
        return Item(text, s, d, 2 * a.mag + 2)
    if op == "logsumexp":
        if not s or a.mag > 20:
            return None
        axis = axis_for(len(s), draw)
        return Item(f"logsumexp({t}{axis_text(axis)})", reduced(s, axis), d, a.mag + 2)
    if op == "trace":
        return bounded_item(f"trace({t})", (), d, a.mag * DIM_SIZE_BOUND) if is_square(s) else None
    if op in ("det", "logdet", "inv", "matrix_power"):
        if not a.wc or not is_square(s) or s[0] == ONE:
            return None
        if op == "det":
            return Item(f"det({t})", (), d, 4.0**DIM_SIZE_BOUND)
        if op == "logdet":
            return Item(f"logdet({t})", (), d, 10.0)
        if op == "inv":
            return Item(f"inv({t})", s, d, 3.0, wc=a.depth == 0 or a.text.endswith(".T"))
        k = draw(st.sampled_from([0, 1, 2, 3, -1, -2]))
        return bounded_item(f"matrix_power({t}, {k})", s, d, (a.mag * DIM_SIZE_BOUND) ** abs(k),
                            wc=k in (0, 1))
    if op == "diag":
        if len(s) == 1 and s[0] != ONE:
            return Item(f"diag({t})", (s[0], s[0]), d, a.mag)
        if is_square(s):
            return Item(f"diag({t})", (s[0],), d, a.mag, a.low)
        return None
    if op == "outer":
        if len(a.shape) != 1 or len(b.shape) != 1:
            return None
        return bounded_item(f"outer({a.text}, {b.text})", (a.shape[0], b.shape[0]),
                            max(a.depth, b.depth) + 1, a.mag * b.mag, a.low * b.low)
    if op == "norm":
        return bounded_item(f"norm({t})", (), d, a.mag * DIM_SIZE_BOUND)
    return None


WELL_CONDITIONED_OPS = ("det", "logdet", "inv", "matrix_power")
NEEDS_ARRAY = ("@", "sum", "mean", "softmax", "log_softmax", "logsumexp")


def suits(op: str, a: Item) -> bool:
    """Whether ``a`` can be the (first) operand of ``op``."""
    if op in ("log", "sqrt", "log1p"):
        return a.low >= 0.05
    if op in ("exp", "expm1", "sinh", "cosh"):
        return a.mag <= 4
    if op == "tan":
        return a.mag <= 1
    if op in WELL_CONDITIONED_OPS:
        return a.wc and is_square(a.shape) and a.shape[0] != ONE
    if op == "trace":
        return is_square(a.shape)
    if op == "diag":
        return (len(a.shape) == 1 and a.shape[0] != ONE) or is_square(a.shape)
    if op == "outer":
        return len(a.shape) == 1
    if op == "**var":
        return a.low >= 0.2
    return bool(a.shape) or op not in NEEDS_ARRAY


def pairs(op: str, a: Item, b: Item) -> bool:
    """Whether ``b`` can be the second operand of ``op`` after ``a``."""
    if op in ("+", "-", "*", "/", "**var"):
        shape = broadcast(a.shape, b.shape)
        if shape is None or len(shape) > 2:
            return False
        return (op != "/" or b.low >= 0.1) and (op != "**var" or b.mag <= 3)
    if op == "@":
        return matmul_shape(a.shape, b.shape) is not None
    if op == "outer":
        return len(b.shape) == 1
    return True


@st.composite
def programs(draw) -> tuple[str, list[str], dict[str, int]]:
    """A random scalar program, its variables and concrete sizes."""
    count = draw(st.integers(1, 3))
    variables = [Item(name, draw(st.sampled_from(VARIABLE_SHAPES))) for name in NAMES[:count]]
    variables = [replace(v, wc=is_square(v.shape)) for v in variables]
    pool: list[Item] = list(variables)
    dims = sorted({d for v in variables for d in v.shape if d != ONE})
    for _ in range(draw(st.integers(6, 16))):
        op = draw(st.sampled_from(OPERATIONS))
        candidates = [i for i in pool if i.depth < MAX_DEPTH]
        firsts = [i for i in candidates if suits(op, i)]
        if not firsts:
            continue
        latest = pool[-1] in firsts and draw(st.integers(0, 3)) > 0  # mostly chain on
        a = pool[-1] if latest else draw(st.sampled_from(firsts))
        seconds = [i for i in candidates if pairs(op, a, i)]
        if not seconds:
            continue
        b = draw(st.sampled_from(seconds))
        if op in ELEMENTWISE:
            made = unary(op, a, draw)
        elif op in BINARY:
            made = binary(op, a, b, draw, dims)
        else:
            made = structural(op, a, b, draw)
        if made is not None:
            pool.append(made)
    assume(pool[-1].depth >= 2)                      # a program, not a single operation
    result = scalar(pool[-1], pool, draw)
    made = [i for i in pool[len(variables):-1] if i.depth] or pool
    for _ in range(draw(st.integers(0, 2))):  # more of what was built, combined
        other = scalar(draw(st.sampled_from(made)), pool, draw)
        result = f"{result} {draw(st.sampled_from(['+', '-', '*']))} {other}"
    declarations = "\n".join(f"{v.text}: [{', '.join(v.shape)}]" for v in variables)
    if pool[-1].depth and draw(st.booleans()):  # sometimes through a named intermediate
        body = re.sub(r"(?<![\w.])" + re.escape(pool[-1].text), "t1", result)
        source = f"{declarations}\nt1 = {pool[-1].text}\nresult = {body}"
    else:
        source = f"{declarations}\n{result}"
    n = draw(st.integers(2, 4))
    m = draw(st.integers(2, 4))
    m += m >= n  # n ≠ m, so that a transposition mistake cannot go unnoticed
    return source, [v.text for v in variables], {"n": n, "m": m}


def scalar(item: Item, pool: list[Item], draw) -> str:
    """``item`` reduced to a scalar."""
    t, s = item.text, item.shape
    if not s:
        return draw(st.sampled_from([t, f"sin({t})", f"({t} * {t})"]))
    choices = ["sum", "mean", "norm", "logsumexp"]
    if is_square(s):
        choices.append("trace")
    same = [i for i in pool if i.shape == s and i.text != t]
    if same:
        choices.append("mse")
    if item.mag <= 20:
        choices.append("ce")
    how = draw(st.sampled_from(choices))
    if how in ("sum", "mean", "norm", "trace"):
        return f"{how}({t})"
    if how == "logsumexp":
        return f"logsumexp({t})" if item.mag <= 20 else f"sum({t})"
    if how == "mse":
        other = draw(st.sampled_from(same))
        return f"mse({t}, {other.text})" if draw(st.booleans()) else f"mse({other.text}, {t})"
    targets = [i for i in pool if i.shape == s and i.mag <= 20]
    target = draw(st.sampled_from(targets)) if targets else item
    return f"softmax_cross_entropy({t}, softmax({target.text}))"


@settings(deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(programs(), st.integers(0, 2**32 - 1))
def test_random_programs_match_finite_differences(case, seed) -> None:
    source, names, sizes = case
    program = parse(source)
    rng = np.random.default_rng(seed)
    try:
        arrays = smooth_inputs(program, sizes, rng, margin=1e-2)
    except MatcalcError:  # e.g. relu of a matrix that is zero off its diagonal
        assume(False)
    with np.errstate(all="ignore"):
        value = function_value(program)(**arrays)
        kink = kink_distance(program)(**arrays)
    assume(np.isfinite(value) and abs(value) < 1e6 and kink > 1e-2)
    norms = [n.args[0] for n in postorder([program.function]) if n.op == "norm"]
    if norms:  # ‖x‖ is not differentiable at x = 0 (say norm(relu(u)) with every u < 0)
        with np.errstate(all="ignore"):
            inside = evaluator(program, [(f"norm{i}", x) for i, x in enumerate(norms)])(**arrays)
        assume(all(np.linalg.norm(x) > 1e-2 for x in inside))
    if any(f"{op}(" in source for op in ("inv", "det", "matrix_power")):
        for array in arrays.values():  # a square variable may be drawn positive, not near 2 I
            if array.ndim == 2 and array.shape[0] == array.shape[1] and array.shape[0] > 1:
                assume(np.linalg.cond(array) < 50)
    try:
        check_gradients(source, names, sizes, arrays=arrays)
    except AssertionError:
        f = function_value(program)            # finite differences that disagree among
        if all(differences_agree(f, arrays, name) for name in names):   # themselves cannot
            raise                                                       # judge: torch does
        assume(any(o.category == "ok" for o in torch_outcomes(source, names, sizes)))
        return
    torch_outcomes(source, names, sizes)
