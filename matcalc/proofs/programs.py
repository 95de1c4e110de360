"""Random well-typed matcalc programs as small trees: generated from a seed, printed, shrunk.

A program is declarations, named intermediates and a final expression (or assignment), each
expression an :class:`Expr` tree that knows its symbolic shape and a rough account of its values:
a bound on their magnitude, a positive lower bound where one is known, and whether it is a
well-conditioned square matrix. Operations are only applied where these allow, so log, sqrt,
fractional and negative powers and division see positive values and inv, det, logdet and
matrix_power see matrices near 2I. Declarations carry how the fuzzer must draw each variable as a
comment (``# draw: positive``), so the printed text is all a run needs.

:func:`generate` draws a program from a seed in one of three modes: ``normal`` (matrix-heavy,
every function, operator, shape and broadcast of the language), ``hostile`` (every user name drawn
from words that generated code uses) and ``size`` (long chains, huge powers, doubling chains,
huge dimensions). :func:`shrink_candidates` lists smaller programs, most reduced first.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

ONE = "1"
Shape = tuple[str, ...]

MAX_DEPTH = 5
MAX_MAGNITUDE = 1e3
MAX_VARIABLES = 7
SIZE_BOUND = 4
"""Largest size the fuzzer draws for a dimension (the bookkeeping of magnitudes uses it)."""

HOSTILE_NAMES = (
    "np", "math", "torch", "jax", "ctx", "value", "value_and_grad", "value_and_vjp",
    "grad_output", "SHAPES", "_check_shapes", "_sigmoid", "_softmax", "_log_softmax",
    "_logsumexp", "_sum_along", "_normal_cdf", "_normal_pdf", "delta1", "delta2", "t", "t1", "t2",
    "dx", "dX", "grad_x", "mask", "mask1",
    "softmax_Z", "inv_A", "det_A", "elta1", "et_A", "len", "sum", "print", "range", "float",
    "int", "object", "type", "id", "map", "zip", "dict", "list", "tuple", "str", "i", "j", "k",
    "f", "L", "_", "e",
)
"""Names that collide with what generated code (NumPy, torch, CLI output) uses."""

ROLE_NAMES = {
    "scalar": ("a", "b", "c", "d", "g"),
    "vector": ("x", "y", "z", "u", "w", "p", "q"),
    "matrix": ("A", "B", "C", "D", "W", "M", "K", "S"),
    "target": ("Y", "T", "P", "R"),
    "labels": ("labels", "classes"),
    "intermediate": ("t1", "t2", "t3", "t4", "t5", "t6", "h1", "h2"),
    "final": ("L", "loss", "out", "f"),
}


# ----------------------------------------------------------------------------------------------
# Trees


@dataclass(frozen=True)
class Expr:
    """A subexpression: ``op`` is var, ref (an intermediate), num, dim, pi, neg, T, call or a
    binary operator; ``name`` the variable, number text, dimension or function; ``params`` the
    literal arguments of a call as ``(keyword or "", text)``."""

    op: str
    name: str = ""
    args: tuple[Expr, ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    shape: Shape = ()
    mag: float = 3.0
    low: float = 0.0
    wc: bool = False
    depth: int = 0


@dataclass(frozen=True)
class Decl:
    """``name: [shape] prop`` drawn as ``kind`` (positive, wc, onehot, probabilities,
    labels:DIM, or "" for normal entries)."""

    name: str
    shape: Shape
    prop: str = ""
    kind: str = ""


@dataclass(frozen=True)
class Assign:
    name: str
    expr: Expr


@dataclass(frozen=True)
class Program:
    """Declarations, named intermediates, and the final expression (assigned to ``final_name``
    unless that is empty)."""

    decls: tuple[Decl, ...]
    stmts: tuple[Assign, ...]
    final: Expr
    final_name: str = ""

    def source(self) -> str:
        """The program in the matcalc language, each declaration's draw kind as a comment."""
        lines = [decl_text(d) for d in self.decls]
        lines += [f"{s.name} = {text(s.expr)}" for s in self.stmts]
        lines.append(f"{self.final_name} = {text(self.final)}" if self.final_name
                     else text(self.final))
        return "\n".join(lines)

    def names(self) -> set[str]:
        """Every user name: variables, intermediates, dimensions, the function's name."""
        dims = {d for decl in self.decls for d in decl.shape if not d.isdigit()}
        return ({d.name for d in self.decls} | {s.name for s in self.stmts} | dims
                | ({self.final_name} if self.final_name else set()))

    def size(self) -> int:
        """Nodes, literal arguments, statements, declarations, ranks and dimensions: what
        shrinking makes smaller."""
        nodes = sum(weight(s.expr) for s in self.stmts) + weight(self.final)
        dims = {d for decl in self.decls for d in decl.shape if d != ONE}
        ranks = sum(len(d.shape) for d in self.decls)
        return (nodes + 3 * len(self.stmts) + 2 * len(self.decls) + ranks + len(dims)
                + bool(self.final_name))


def decl_text(d: Decl) -> str:
    line = f"{d.name}: [{', '.join(d.shape)}]" + (f" {d.prop}" if d.prop else "")
    return line + (f"  # draw: {d.kind}" if d.kind else "")


def weight(e: Expr) -> int:
    return 1 + len(e.params) + sum(weight(a) for a in e.args)


PRECEDENCE = {"<": 0, ">": 0, "<=": 0, ">=": 0, "+": 1, "-": 1, "*": 2, "/": 2, "@": 2,
              "neg": 3, "**": 4, "T": 5}
ATOM = 6


def precedence(e: Expr) -> int:
    return PRECEDENCE.get(e.op, ATOM)


def wrapped(e: Expr, parens: bool) -> str:
    return f"({text(e)})" if parens else text(e)


def text(e: Expr) -> str:
    """Source text with the parentheses the grammar needs (``**`` binds tighter than ``-``)."""
    if e.op in ("var", "ref", "num", "dim"):
        return e.name
    if e.op == "pi":
        return "pi"
    if e.op == "neg":
        return "-" + wrapped(e.args[0], precedence(e.args[0]) < PRECEDENCE["neg"])
    if e.op == "T":
        inner = e.args[0]
        return (wrapped(inner, precedence(inner) < PRECEDENCE["T"] or inner.op == "num")
                + "." + (e.name or "T"))
    if e.op == "list":
        return "[" + ", ".join(text(a) for a in e.args) + "]"
    if e.op == "call":
        parts = [text(a) for a in e.args] + [f"{k}={v}" if k else v for k, v in e.params]
        if e.name == "einsum":                     # the subscripts come first
            parts = parts[len(e.args):] + parts[:len(e.args)]
        return f"{e.name}({', '.join(parts)})"
    left, right = e.args
    p = PRECEDENCE[e.op]
    if e.op == "**":
        return (f"{wrapped(left, precedence(left) <= p)} ** "
                f"{wrapped(right, precedence(right) < PRECEDENCE['neg'])}")
    if p == 0:                                     # comparisons do not chain
        return f"{wrapped(left, precedence(left) <= p)} {e.op} {wrapped(right, True)}"
    return f"{wrapped(left, precedence(left) < p)} {e.op} {wrapped(right, precedence(right) <= p)}"


# ----------------------------------------------------------------------------------------------
# Shapes


def broadcast(a: Shape, b: Shape) -> Shape | None:
    """NumPy broadcasting of symbolic shapes, or None when they clash."""
    rank = max(len(a), len(b))
    a, b = (ONE,) * (rank - len(a)) + a, (ONE,) * (rank - len(b)) + b
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and ONE not in (x, y):
            return None
        out.append(y if x == ONE else x)
    return tuple(out)


def matmul_shape(a: Shape, b: Shape) -> Shape | None:
    """The shape of ``a @ b`` under NumPy's 1-D rules, or None."""
    if not a or not b or a[-1] != (b[0] if len(b) == 1 else b[-2]):
        return None
    return a[:-1] + b[1:] if len(b) == 2 else a[:-1]


def is_square(shape: Shape) -> bool:
    return len(shape) == 2 and shape[0] == shape[1]


def entries_bound(shape: Shape) -> int:
    return SIZE_BOUND ** sum(d != ONE for d in shape)


def reduced(shape: Shape, axis: int | None, keepdims: bool) -> Shape:
    """The shape left by a reduction over ``axis`` (every axis for None)."""
    axes = range(len(shape)) if axis is None else [axis % len(shape)]
    if keepdims:
        return tuple(ONE if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


# ----------------------------------------------------------------------------------------------
# Building blocks


def var(name: str, shape: Shape, kind: str = "") -> Expr:
    """A variable with what its draw guarantees."""
    mag, low = {"positive": (2.0, 0.5), "onehot": (1.0, 0.0), "probabilities": (1.0, 0.0)}.get(
        kind, (4.0, 0.0))
    return Expr("var", name, shape=shape, mag=mag, low=low, wc=kind == "wc")


def num(literal: str) -> Expr:
    value = float(literal)
    return Expr("num", literal, mag=abs(value), low=max(value, 0.0))


def call(func: str, *args: Expr, params: tuple[tuple[str, str], ...] = (), shape: Shape,
         mag: float, low: float = 0.0, wc: bool = False) -> Expr:
    depth = max(a.depth for a in args) + 1
    return Expr("call", func, args, params, shape, mag, low, wc, depth)


def binary(op: str, a: Expr, b: Expr, shape: Shape, mag: float, low: float = 0.0,
           wc: bool = False) -> Expr:
    return Expr(op, args=(a, b), shape=shape, mag=mag, low=low, wc=wc,
                depth=max(a.depth, b.depth) + 1)


def fits(e: Expr | None) -> Expr | None:
    """``e`` unless its values may be too large or it is nested too deeply."""
    return e if e is not None and e.mag <= MAX_MAGNITUDE and e.depth <= MAX_DEPTH else None


class Names:
    """Fresh user names: by role, or (hostile) drawn from :data:`HOSTILE_NAMES`."""

    def __init__(self, rng: random.Random, hostile: bool, taken: set[str] = frozenset()) -> None:
        self.rng = rng
        self.hostile = list(HOSTILE_NAMES) if hostile else []
        rng.shuffle(self.hostile)
        self.taken = set(taken)

    def fresh(self, role: str) -> str:
        while self.hostile:
            name = self.hostile.pop()
            if name not in self.taken:
                return self.take(name)
        for name in ROLE_NAMES[role]:
            if name not in self.taken:
                return self.take(name)
        number = 1
        while f"{ROLE_NAMES[role][0]}{number}" in self.taken:
            number += 1
        return self.take(f"{ROLE_NAMES[role][0]}{number}")

    def take(self, name: str) -> str:
        self.taken.add(name)
        return name


def role(shape: Shape) -> str:
    """What a variable of this shape is called after: a stack of matrices as a matrix."""
    return ("scalar", "vector", "matrix")[min(len(shape), 2)]


# ----------------------------------------------------------------------------------------------
# The generator


CONSTANTS = ("0.5", "2.5", "3", "1e-3", "pi", "2/3", "dim")
POWERS = ("2", "3", "-1", "-2", "0.5", "1.5", "-0.5", "0", "1", "2/3")
UNARY = ("exp", "log", "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "softplus",
         "gelu", "silu", "leaky_relu", "neg", "log1p", "expm1", "tan", "arctan", "sinh",
         "cosh", "erf", "square", "sign", "gelu_tanh", "logcosh")
ELEMENTWISE_BINARY = ("+", "-", "*", "/")

Bounds = Callable[[float, float], tuple[float, float]]
GROWTH: dict[str, tuple[Callable[[Expr], bool], Bounds]] = {
    "exp": (lambda e: e.mag <= 4, lambda mag, low: (math.exp(mag), math.exp(-mag))),
    "expm1": (lambda e: e.mag <= 4, lambda mag, low: (math.exp(mag), 0.0)),
    "log": (lambda e: e.low >= 0.05,
            lambda mag, low: (max(abs(math.log(low)), math.log(mag) + 1), 0.0)),
    "log1p": (lambda e: e.low >= 0.05, lambda mag, low: (math.log1p(mag) + 1, math.log1p(low))),
    "sqrt": (lambda e: e.low >= 0.05, lambda mag, low: (math.sqrt(mag), math.sqrt(low))),
    "sigmoid": (lambda e: True,
                lambda mag, low: (1.0, 1 / (1 + math.exp(mag)) if mag <= 4 else 0.0)),
    "softplus": (lambda e: True, lambda mag, low: (
        mag + 1, math.log1p(math.exp(-mag)) if mag <= 4 else 0.0)),
    "logcosh": (lambda e: True, lambda mag, low: (mag, 0.0)),
    **{op: (lambda e: True, lambda mag, low: (1.0, 0.0))
       for op in ("sin", "cos", "tanh", "sign", "erf")},
    "arctan": (lambda e: True, lambda mag, low: (min(mag, math.pi / 2), 0.0)),
    "tan": (lambda e: e.mag <= 1, lambda mag, low: (math.tan(mag), 0.0)),
    "sinh": (lambda e: e.mag <= 4, lambda mag, low: (math.sinh(mag), 0.0)),
    "cosh": (lambda e: e.mag <= 4, lambda mag, low: (math.cosh(mag), 1.0)),
    "square": (lambda e: e.mag <= 30, lambda mag, low: (mag * mag, low * low)),
    **{op: (lambda e: True, lambda mag, low: (mag + 1, 0.0))
       for op in ("abs", "relu", "gelu", "silu", "gelu_tanh")},
}
"""For each elementwise function: which operands it takes (away from overflow and from the
edges of its domain) and bounds on its result's magnitude and, where known, on how close to
0 it comes, from the operand's."""
STRUCTURE = ("@", "@", "@", "T", "sum", "mean", "softmax", "log_softmax", "logsumexp", "trace",
             "det", "logdet", "inv", "matrix_power", "diag", "outer", "norm", "max", "min",
             "maximum", "solve", "construct", "var", "tril", "cholesky", "where", "eigvalsh",
             "pinv", "prod", "concat", "kron", "einsum", "reshape", "stack", "normalise")
SPECIAL = ("pow", "pow_pow", "pow_var", "scale", "by_dim", "square_plus_one")
OPERATIONS = UNARY + ELEMENTWISE_BINARY * 2 + STRUCTURE + SPECIAL


@dataclass
class Builder:
    """Grows one random program bottom-up, keeping every subexpression well typed."""

    rng: random.Random
    names: Names
    dims: tuple[str, str]
    decls: list[Decl] = field(default_factory=list)
    stmts: list[Assign] = field(default_factory=list)
    pool: list[Expr] = field(default_factory=list)

    # -- operands ----------------------------------------------------------------------------

    def shapes(self) -> list[Shape]:
        n, m = self.dims
        return [(), (n,), (m,), (n, m), (m, n), (n, m), (n, n), (m, m), (n, n), (n, ONE),
                (ONE, m), (ONE, n), (ONE,), (ONE, ONE)]

    def declare(self, shape: Shape, kind: str = "", prop: str = "", who: str = "") -> Expr:
        """A new variable (also in the pool unless it is a target)."""
        name = self.names.fresh(who or role(shape))
        self.decls.append(Decl(name, shape, prop, kind))
        made = var(name, shape, kind)
        if not who:
            self.pool.append(made)
        return made

    def declare_random(self, shape: Shape | None = None) -> Expr:
        shape = self.rng.choice(self.shapes()) if shape is None else shape
        draw = self.rng.random()
        if is_square(shape) and shape[0] != ONE:
            if draw < 0.25:
                return self.declare(shape, self.rng.choice(["wc", ""]), "symmetric")
            return self.declare(shape, "wc" if draw < 0.75 else "")
        return self.declare(shape, "positive" if draw < 0.3 else "")

    def dim(self) -> Expr | None:
        """A dimension some declaration uses, as a number (its size)."""
        used = sorted({d for decl in self.decls for d in decl.shape if d in self.dims})
        if not used:
            return None
        return Expr("dim", self.rng.choice(used), mag=SIZE_BOUND, low=1.0)

    def can_declare(self) -> bool:
        return len(self.decls) < MAX_VARIABLES

    def pick(self, ok: Callable[[Expr], bool], fresh: list[Shape] = ()) -> Expr | None:
        """An operand from the pool passing ``ok`` (intermediates preferred, for diamonds), or
        sometimes a new variable of one of the ``fresh`` shapes drawn so that it passes."""
        found = [e for e in self.pool if ok(e)]
        options = [(s, kind) for s in fresh for kind in ("", "positive", "wc")
                   if ok(var("_", s, kind)) and (kind != "wc" or is_square(s))]
        if options and self.can_declare() and (not found or self.rng.random() < 0.25):
            shape, kind = self.rng.choice(options)
            made = self.declare_random(shape) if not kind else None
            return made if made is not None and ok(made) else self.declare(
                shape, kind or "positive")
        if not found:
            return None
        refs = [e for e in found if e.op == "ref"]
        return self.rng.choice(refs if refs and self.rng.random() < 0.5 else found)

    def first(self, ok: Callable[[Expr], bool]) -> Expr | None:
        """The first operand: mostly the latest subexpression, so chains grow."""
        latest = self.pool[-1]
        if ok(latest) and latest.depth < MAX_DEPTH and self.rng.random() < 0.7:
            return latest
        return self.pick(lambda e: ok(e) and e.depth < MAX_DEPTH)

    def constant(self) -> Expr:
        """A scalar constant: a number, pi, 2/3 or a dimension's size."""
        choice = self.rng.choice(CONSTANTS)
        if choice == "pi":
            return Expr("pi", mag=math.pi, low=math.pi)
        if choice == "2/3":
            return binary("/", num("2"), num("3"), (), 2 / 3, 2 / 3)
        if choice == "dim":
            return self.dim() or num("2")
        return num(choice)

    # -- operations --------------------------------------------------------------------------

    def grow(self) -> None:
        """Apply one random operation to operands that suit it."""
        op = self.rng.choice(OPERATIONS)
        if op in UNARY:
            made = self.unary(op)
        elif op in ELEMENTWISE_BINARY:
            made = self.elementwise(op)
        else:
            made = getattr(self, "op_" + op.replace("@", "matmul"))()
        made = fits(made)
        if made is not None:
            self.pool.append(made)

    def unary(self, op: str) -> Expr | None:
        need, bounds = GROWTH.get(op, (lambda e: True, None))
        a = self.first(need)
        if a is None:
            return None
        if op == "neg":
            return Expr("neg", args=(a,), shape=a.shape, mag=a.mag, depth=a.depth + 1)
        if op == "leaky_relu":
            return self.leaky_relu(a)
        mag, low = bounds(a.mag, a.low)
        tanh = op == "gelu" and self.rng.random() < 0.3          # PyTorch's two GELUs
        return call(op, a, params=(("approximate", '"tanh"'),) if tanh else (), shape=a.shape,
                    mag=mag, low=low)

    def leaky_relu(self, a: Expr) -> Expr:
        form = self.rng.choice(["default", "positional", "keyword", "scalar"])
        slope = self.rng.choice(["0.2", "0.5", "-0.3", "0.01"])
        if form == "scalar":
            c = self.pick(lambda e: e.shape == () and e.mag <= 3, [()])
            if c is not None:
                return call("leaky_relu", a, c, shape=a.shape, mag=a.mag * 3)
        params = {"default": (), "positional": (("", slope),), "keyword": (("a", slope),),
                  "scalar": ()}[form]
        return call("leaky_relu", a, params=params, shape=a.shape, mag=a.mag)

    def broadcast_partner(self, a: Expr, ok: Callable[[Expr], bool] = lambda e: True
                          ) -> Expr | None:
        """A second operand that broadcasts with ``a`` to rank ≤ 2."""
        def suits(e: Expr) -> bool:
            shape = broadcast(a.shape, e.shape)
            return shape is not None and len(shape) <= 2 and ok(e)
        return self.pick(suits, self.shapes())

    def elementwise(self, op: str) -> Expr | None:
        a = self.first(lambda e: True)
        if a is None:
            return None
        b = self.broadcast_partner(a, (lambda e: e.low >= 0.1) if op == "/" else lambda e: True)
        if b is None:
            return None
        if self.rng.random() < 0.5:   # either order
            a, b = (b, a) if op != "/" else (a, b)
        shape = broadcast(a.shape, b.shape)
        if op == "+":
            return binary("+", a, b, shape, a.mag + b.mag, a.low + b.low if a.low and b.low
                          else 0.0)
        if op == "-":
            return binary("-", a, b, shape, a.mag + b.mag)
        if op == "*":
            return binary("*", a, b, shape, a.mag * b.mag, a.low * b.low)
        return binary("/", a, b, shape, a.mag / b.low, a.low / b.mag if a.low else 0.0)

    def op_pow(self) -> Expr | None:
        k = self.rng.choice(POWERS)
        value = 2 / 3 if k == "2/3" else float(k)
        fractional = value < 0 or value != int(value)
        a = self.first(lambda e: (e.low >= 0.1 or not fractional) and e.mag <= 30)
        if a is None:
            return None
        exponent = (binary("/", num("2"), num("3"), (), value, value) if k == "2/3"
                    else Expr("neg", args=(num(k[1:]),)) if k.startswith("-") else num(k))
        base = max(a.mag, 1 / a.low if a.low else 1.0)
        low = a.low ** value if a.low and value >= 0 else (a.mag ** value if a.low else 0.0)
        return binary("**", a, exponent, a.shape, base ** abs(value), low)

    def op_pow_pow(self) -> Expr | None:
        """A nested constant power such as ``(x ** 2) ** 3``."""
        a = self.first(lambda e: e.mag <= 3)
        if a is None:
            return None
        k1, k2 = self.rng.choice([("2", "3"), ("3", "2"), ("2", "2"), ("2", "0.5"), ("3", "1")])
        inner = binary("**", a, num(k1), a.shape, a.mag ** int(k1), a.low ** int(k1))
        value = float(k2)
        if value != int(value) and inner.low < 0.1:
            inner = binary("+", inner, num("1"), a.shape, inner.mag + 1, 1.0)
        return binary("**", inner, num(k2), a.shape, inner.mag ** value, inner.low ** value)

    def op_pow_var(self) -> Expr | None:
        """A positive base to a bounded varying exponent."""
        a = self.first(lambda e: e.low >= 0.2 and e.mag <= 10)
        if a is None:
            return None
        b = self.broadcast_partner(a, lambda e: e.mag <= 3)
        if b is None:
            return None
        base = max(a.mag, 1 / a.low)
        low = min(a.low, 1 / a.mag) ** b.mag
        return binary("**", a, b, broadcast(a.shape, b.shape), base ** b.mag, low)

    def op_scale(self) -> Expr | None:
        a = self.first(lambda e: True)
        if a is None:
            return None
        c = self.constant()
        form = self.rng.choice(["c*a", "a*c", "a+c", "c-a", "a/c", "a-c"])
        if form in ("c*a", "a*c"):
            pair = (c, a) if form == "c*a" else (a, c)
            return binary("*", *pair, a.shape, a.mag * c.mag, a.low * c.low)
        if form == "a+c":
            return binary("+", a, c, a.shape, a.mag + c.mag, a.low + c.low if a.low else 0.0)
        if form == "c-a":
            return binary("-", c, a, a.shape, a.mag + c.mag)
        if form == "a-c":
            return binary("-", a, c, a.shape, a.mag + c.mag)
        return binary("/", a, c, a.shape, a.mag / c.low, a.low / c.mag)

    def op_by_dim(self) -> Expr | None:
        """A dimension's size in arithmetic: ``a / n``, ``n * a``, ``sum(a) / n``."""
        a, d = self.first(lambda e: True), self.dim()
        if a is None or d is None:
            return None
        form = self.rng.randrange(3)
        if form == 0:
            return binary("/", a, d, a.shape, a.mag, a.low / SIZE_BOUND)
        if form == 1:
            return binary("*", d, a, a.shape, a.mag * SIZE_BOUND, a.low)
        total = call("sum", a, shape=(), mag=a.mag * entries_bound(a.shape), low=a.low)
        return binary("/", total, d, (), total.mag, total.low / SIZE_BOUND)

    def op_square_plus_one(self) -> Expr | None:
        a = self.first(lambda e: e.mag <= 30)
        if a is None:
            return None
        square = binary("*", a, a, a.shape, a.mag ** 2)
        return binary("+", square, num("1"), a.shape, a.mag ** 2 + 1, 1.0)

    def op_matmul(self) -> Expr | None:
        a = self.first(lambda e: bool(e.shape))
        if a is None:
            return None
        inner = a.shape[-1]
        fresh = [(inner,)] + [(inner, d) for d in (*self.dims, ONE)]
        b = self.pick(lambda e: matmul_shape(a.shape, e.shape) is not None, fresh)
        if b is None:
            return None
        wc = a.wc and b.wc and a.depth == b.depth == 0
        return binary("@", a, b, matmul_shape(a.shape, b.shape), a.mag * b.mag * SIZE_BOUND,
                      wc=wc)

    def op_T(self) -> Expr | None:  # noqa: N802
        """``a.T``; of a matrix also ``a.mT``, ``swapaxes(a, 0, 1)`` or ``transpose(a, [1, 0])``."""
        a = self.first(lambda e: e.op != "num")
        if a is None:
            return None
        how = self.rng.choice(["T", "T", "mT", "swapaxes", "transpose"]) if len(
            a.shape) == 2 else "T"
        keep = {"shape": a.shape[::-1], "mag": a.mag, "low": a.low, "wc": a.wc}
        if how == "swapaxes":
            return call("swapaxes", a, params=(("", "0"), ("", "1")), **keep)
        if how == "transpose":
            return call("transpose", a, params=(("", "[1, 0]"),), **keep)
        return Expr("T", name=how, args=(a,), depth=a.depth + 1, **keep)

    def axis(self, rank: int, none: bool, default: int | None
             ) -> tuple[int | None, tuple[tuple[str, str], ...]]:
        """An axis (None: every entry) and how it is written: left out where it is the
        ``default``, ``axis=None``, positional or keyword."""
        choices: list[int | None] = [*range(-rank, rank), *([None, None] if none else [])]
        axis = self.rng.choice(choices)
        style = self.rng.choice(["keyword", "keyword", "positional", "omit"])
        if axis == default and style == "omit":
            return axis, ()
        if axis is None:
            return None, (("axis", "None"),)
        return axis, (("axis", str(axis)),) if style != "positional" else (("", str(axis)),)

    def reduction(self, op: str) -> Expr | None:
        """sum, mean, logsumexp, max, min, var, std or prod, over an axis or everything,
        keeping dims sometimes."""
        limit = {"logsumexp": 20.0, "prod": 2.0}.get(op, math.inf)
        a = self.first(lambda e: bool(e.shape) and e.mag <= limit)
        if a is None:
            return None
        axis, params = self.axis(len(a.shape), True, None)
        keep = self.rng.random() < 0.25
        if keep:
            params = (*params, ("keepdims", "True"))
        shape = reduced(a.shape, axis, keep)
        count = entries_bound(a.shape) // max(entries_bound(shape), 1)
        if op == "logsumexp":
            return call(op, a, params=params, shape=shape, mag=a.mag + math.log(count) + 1)
        if op in ("max", "min"):
            return call(op, a, params=params, shape=shape, mag=a.mag)
        if op == "prod":
            return call(op, a, params=params, shape=shape, mag=max(a.mag, 1.0) ** count,
                        low=a.low ** count)
        if op in ("var", "std"):
            if self.rng.random() < 0.3 and count > 1:
                params = (*params, ("ddof", "1"))
            return call(op, a, params=params, shape=shape, mag=a.mag * a.mag + 1)
        mag = a.mag * (count if op == "sum" else 1)
        return call(op, a, params=params, shape=shape, mag=mag, low=a.low)

    def op_sum(self) -> Expr | None:
        return self.reduction("sum")

    def op_mean(self) -> Expr | None:
        return self.reduction("mean")

    def op_logsumexp(self) -> Expr | None:
        return self.reduction("logsumexp")

    def op_max(self) -> Expr | None:
        return self.reduction("max")

    def op_var(self) -> Expr | None:
        return self.reduction(self.rng.choice(["var", "std"]))

    def op_min(self) -> Expr | None:
        return self.reduction("min")

    def op_normalise(self) -> Expr | None:
        """A layer or batch norm spelled out along an axis: (x − mean(x)) / sqrt(var(x) + ε),
        or times (var(x) + ε) ** −0.5, the mean and variance kept (code generation computes
        it as one standardisation)."""
        a = self.first(lambda e: bool(e.shape) and e.mag <= 30)
        if a is None:
            return None
        axis = self.rng.randrange(-len(a.shape), len(a.shape))
        params = (("axis", str(axis)), ("keepdims", "True"))
        shape = reduced(a.shape, axis, True)
        mean = call("mean", a, params=params, shape=shape, mag=a.mag)
        centred = binary("-", a, mean, a.shape, 2 * a.mag)
        eps = num(self.rng.choice(["1e-5", "0.1", "1"]))
        spread = binary("+", call("var", a, params=params, shape=shape, mag=a.mag**2 + 1),
                        eps, shape, a.mag**2 + 2, eps.mag)
        count = math.sqrt(entries_bound(a.shape) / max(entries_bound(shape), 1))
        if self.rng.random() < 0.5:
            scale = call("sqrt", spread, shape=shape, mag=a.mag + 2, low=math.sqrt(eps.mag))
            return binary("/", centred, scale, a.shape, count + 1)
        scale = binary("**", spread, num("-0.5"), shape, 1 / math.sqrt(eps.mag))
        return binary("*", centred, scale, a.shape, count + 1)

    def op_prod(self) -> Expr | None:
        return self.reduction("prod")

    def pair(self) -> tuple[Expr, Expr, Shape] | None:
        """Two operands that broadcast together, and the shape they broadcast to."""
        a = self.first(lambda e: True)
        b = None if a is None else self.broadcast_partner(a)
        return None if b is None else (a, b, broadcast(a.shape, b.shape))

    def op_where(self) -> Expr | None:
        """where(a > b, a, c), or a comparison as a mask times an operand."""
        operands = self.pair()
        if operands is None:
            return None
        a, b, shape = operands
        op = self.rng.choice(["<", ">", "<=", ">="])
        mask = Expr(op, args=(a, b), shape=shape, mag=1.0, depth=max(a.depth, b.depth) + 1)
        if self.rng.random() < 0.5:
            return binary("*", mask, a, shape, a.mag)
        c = self.broadcast_partner(Expr("num", "0", shape=shape))
        if c is None or broadcast(shape, c.shape) != shape:
            return binary("*", mask, b, shape, b.mag)
        return call("where", mask, a, c, shape=shape, mag=max(a.mag, c.mag))

    def op_maximum(self) -> Expr | None:
        """maximum or minimum of two operands that broadcast, or clip between constants."""
        operands = self.pair()
        if operands is None:
            return None
        a, b, shape = operands
        kind = self.rng.choice(["maximum", "minimum", "clip"])
        if kind == "clip":
            lo, hi = sorted(self.rng.sample([-1.5, -0.5, 0.0, 0.5, 1.5], 2))
            return call("clip", a, num(str(lo)), num(str(hi)), shape=a.shape,
                        mag=max(abs(lo), abs(hi)))
        return call(kind, a, b, shape=shape, mag=max(a.mag, b.mag))

    def softmax(self, op: str) -> Expr | None:
        a = self.first(lambda e: bool(e.shape) and e.mag <= 20)
        if a is None:
            return None
        _, params = self.axis(len(a.shape), self.rng.random() < 0.2, -1)
        if op == "softmax":
            low = math.exp(-2 * a.mag) / entries_bound(a.shape) if a.mag <= 3 else 0.0
            return call(op, a, params=params, shape=a.shape, mag=1.0, low=low)
        return call(op, a, params=params, shape=a.shape,
                    mag=2 * a.mag + math.log(entries_bound(a.shape)) + 1)

    def op_softmax(self) -> Expr | None:
        return self.softmax("softmax")

    def op_log_softmax(self) -> Expr | None:
        return self.softmax("log_softmax")

    def op_trace(self) -> Expr | None:
        a = self.first(lambda e: is_square(e.shape))
        return None if a is None else call("trace", a, shape=(), mag=a.mag * SIZE_BOUND)

    def square_wc(self) -> Expr | None:
        n = self.rng.choice(self.dims)
        return self.pick(lambda e: e.wc and is_square(e.shape) and e.shape[0] != ONE,
                         [(n, n)] if self.rng.random() < 0.5 else [])

    def op_det(self) -> Expr | None:
        a = self.square_wc()
        return None if a is None else call("det", a, shape=(), mag=5.0 ** SIZE_BOUND)

    def op_logdet(self) -> Expr | None:
        a = self.square_wc()
        return None if a is None else call("logdet", a, shape=(), mag=10.0)

    def op_inv(self) -> Expr | None:
        a = self.square_wc()
        if a is None:
            return None
        return call("inv", a, shape=a.shape, mag=3.0, wc=a.op in ("var", "T"))

    def op_solve(self) -> Expr | None:
        """solve(A, b) or solve(A, B) for a well-conditioned A."""
        a = self.square_wc()
        if a is None:
            return None
        n = a.shape[0]
        b = self.pick(lambda e: len(e.shape) >= 1 and e.shape[0] == n and e.mag <= 30,
                      [(n,), (n, self.rng.choice(self.dims))])
        if b is None:
            return None
        return call("solve", a, b, shape=b.shape, mag=3.0 * b.mag * SIZE_BOUND)

    def op_construct(self) -> Expr | None:
        """An operand plus eye(n), times ones(…), or plus zeros(…) of its shape."""
        a = self.first(lambda e: bool(e.shape))
        if a is None:
            return None
        sizes = tuple(Expr("dim", d, mag=SIZE_BOUND, low=1.0) for d in a.shape)
        if is_square(a.shape) and self.rng.random() < 0.5:
            made = call("eye", sizes[0], shape=a.shape, mag=1.0)
            return binary("+", a, made, a.shape, a.mag + 1)
        kind = self.rng.choice(["ones", "zeros"])
        made = call(kind, *sizes, shape=a.shape, mag=1.0)
        if kind == "ones":
            return binary("*", a, made, a.shape, a.mag, a.low)
        return binary("+", made, a, a.shape, a.mag, a.low)

    def op_cholesky(self) -> Expr | None:
        """cholesky(A @ A.T + eye(n)): of a matrix symmetric positive definite by construction."""
        a = self.first(lambda e: len(e.shape) == 2 and e.mag <= 10)
        if a is None:
            return None
        n = a.shape[0]
        t = Expr("T", args=(a,), shape=a.shape[::-1], mag=a.mag, depth=a.depth + 1)
        gram = binary("@", a, t, (n, n), a.mag ** 2 * SIZE_BOUND)
        spd = binary("+", gram, call("eye", Expr("dim", n, mag=SIZE_BOUND, low=1.0),
                                     shape=(n, n), mag=1.0), (n, n), gram.mag + 1)
        return call("cholesky", spd, shape=(n, n), mag=math.sqrt(spd.mag) + 1)

    def op_tril(self) -> Expr | None:
        """tril or triu of a square operand, sometimes off the diagonal."""
        a = self.first(lambda e: is_square(e.shape))
        if a is None:
            return None
        k = self.rng.choice([(), (), (("", "1"),), (("k", "-1"),)])
        return call(self.rng.choice(["tril", "triu"]), a, params=k, shape=a.shape, mag=a.mag)

    def op_matrix_power(self) -> Expr | None:
        a = self.square_wc()
        if a is None:
            return None
        k = self.rng.choice(["0", "1", "2", "3", "-1", "-2"])
        params = (("k", k),) if self.rng.random() < 0.3 else (("", k),)
        mag = (a.mag * SIZE_BOUND) ** abs(int(k))
        return call("matrix_power", a, params=params, shape=a.shape, mag=mag,
                    wc=k in ("0", "1") and a.op == "var")

    def op_diag(self) -> Expr | None:
        a = self.first(lambda e: (len(e.shape) == 1 and e.shape[0] != ONE)
                       or is_square(e.shape))
        if a is None:
            return None
        shape = (a.shape[0], a.shape[0]) if len(a.shape) == 1 else (a.shape[0],)
        return call("diag", a, shape=shape, mag=a.mag, low=a.low if len(a.shape) == 2 else 0.0)

    def op_outer(self) -> Expr | None:
        a = self.first(lambda e: len(e.shape) == 1)
        if a is None:
            return None
        b = self.pick(lambda e: len(e.shape) == 1, [(d,) for d in self.dims])
        if b is None:
            return None
        return call("outer", a, b, shape=(a.shape[0], b.shape[0]), mag=a.mag * b.mag,
                    low=a.low * b.low)

    def op_norm(self) -> Expr | None:
        """‖a‖; a vector's 1-, ∞- and −∞-norm; a matrix's "fro", "nuc", 1, ∞ … norm, or its
        rows' or columns' norms (``axis=``, sometimes ``keepdims``)."""
        a = self.first(lambda e: True)
        if a is None:
            return None
        mag = a.mag * SIZE_BOUND * SIZE_BOUND
        if len(a.shape) == 2 and self.rng.random() < 0.3:
            axis = self.rng.choice([0, 1])
            keep = self.rng.random() < 0.4
            ord_ = self.rng.choice([(), (("", "1"),), (("ord", "inf"),)])
            params = (*ord_, ("axis", str(axis)), *((("keepdims", "True"),) if keep else ()))
            return call("norm", a, params=params, shape=reduced(a.shape, axis, keep), mag=mag)
        orders = (["1", "inf", "-inf", "2"] if len(a.shape) == 1 else
                  ['"fro"', '"nuc"', "2", "1", "-1", "inf", "-inf"] if len(a.shape) == 2 else [])
        if not orders or self.rng.random() < 0.4:
            return call("norm", a, shape=(), mag=mag)
        order = self.rng.choice(orders)
        return call("norm", a, params=(("ord" if self.rng.random() < 0.3 else "", order),),
                    shape=(), mag=mag)

    def op_concat(self, *, who: str = "") -> Expr | None:
        """Two operands joined (vstack, hstack, concatenate) and contracted with two others
        joined alike, back to the pool's sizes: ``hstack([a, b]) @ hstack([c, d])``,
        ``vstack([A, B]).T @ vstack([C, D])``, ``hstack([A, B]) @ hstack([C, D]).T``."""
        a = self.first(lambda e: len(e.shape) >= 1 and e.mag <= 30)
        if a is None:
            return None
        same = [a.shape]
        b, c, d = (self.pick(lambda e: e.shape == a.shape and e.mag <= 30, same)
                   for _ in range(3))
        if b is None or c is None or d is None:
            return None
        if len(a.shape) == 1:
            how = self.rng.choice(["hstack", "concatenate"])
            left, right = (call(how, Expr("list", args=pair), shape=("2",),
                                mag=max(pair[0].mag, pair[1].mag)) for pair in ((a, b), (c, d)))
            return binary("@", left, right, (), 2 * left.mag * right.mag * SIZE_BOUND)
        axis = self.rng.choice([0, 1])
        how = self.rng.choice([("vstack", "hstack")[axis], "concatenate"])
        params = (("axis", str(axis)),) if how == "concatenate" and axis else ()
        left, right = (call(how, Expr("list", args=pair), params=params, shape=a.shape,
                            mag=max(pair[0].mag, pair[1].mag)) for pair in ((a, b), (c, d)))
        turned = left if axis == 0 else right
        flipped = Expr("T", args=(turned,), shape=a.shape[::-1], mag=turned.mag)
        operands = (flipped, right) if axis == 0 else (left, flipped)
        shape = (a.shape[1], a.shape[1]) if axis == 0 else (a.shape[0], a.shape[0])
        return binary("@", *operands, shape, 2 * left.mag * right.mag * SIZE_BOUND)

    def op_reshape(self) -> Expr | None:
        """A matrix reshaped to its transpose's shape (not its transpose), a vector to a row
        or a column."""
        a = self.first(lambda e: len(e.shape) >= 1)
        if a is None:
            return None
        shape = a.shape[::-1] if len(a.shape) == 2 else self.rng.choice(
            [(ONE, a.shape[0]), (a.shape[0], ONE)])
        return call("reshape", a, params=(("", "[" + ", ".join(shape) + "]"),), shape=shape,
                    mag=a.mag, low=a.low)

    def op_stack(self) -> Expr | None:
        """A stack of matrices [b, r, n] through a batched product with a pool matrix [n, m],
        maybe a function, a softmax or a transpose of each matrix, then back to a matrix:
        summed or averaged over the stack, or an einsum over it. (Stacks stay out of the
        pool: the other operations are for vectors and matrices.)"""
        a = self.first(lambda e: len(e.shape) == 2 and e.mag <= 10)
        if a is None or not self.can_declare():
            return None
        batch, rows = self.rng.choice(self.dims), self.rng.choice(self.dims)
        stack = self.declare((batch, rows, a.shape[0]), who="matrix")
        shape = (batch, rows, a.shape[1])
        x = binary("@", stack, a, shape, stack.mag * a.mag * SIZE_BOUND)
        how = self.rng.choice(["tanh", "softmax", "mT", "none"])
        if how == "tanh":
            x = call("tanh", x, shape=shape, mag=1.0)
        elif how == "softmax":
            x = call("softmax", x, params=(("axis", "-1"),), shape=shape, mag=1.0)
        elif how == "mT":
            shape = (batch, a.shape[1], rows)
            x = Expr("T", name="mT", args=(x,), shape=shape, mag=x.mag, depth=x.depth + 1)
        if x.mag > 30:
            return None
        back = self.rng.choice(["sum", "mean", "einsum"])
        if back == "einsum":
            return call("einsum", x, x, params=(("", '"bij,bij->ij"'),), shape=shape[1:],
                        mag=x.mag ** 2 * SIZE_BOUND)
        return call(back, x, params=(("axis", "0"),), shape=shape[1:],
                    mag=x.mag * (SIZE_BOUND if back == "sum" else 1))

    def op_einsum(self) -> Expr | None:
        """An einsum of two operands: an outer product, rows' or columns' inner products, a
        matrix product with a transpose, a transposed elementwise product."""
        a = self.first(lambda e: len(e.shape) >= 1 and e.mag <= 10)
        if a is None:
            return None
        if len(a.shape) == 1:
            b = self.pick(lambda e: len(e.shape) == 1 and e.mag <= 10,
                          [(d,) for d in self.dims])
            if b is None:
                return None
            spec, shape = self.rng.choice([("i,j->ij", (a.shape[0], b.shape[0])),
                                           ("i,j->ji", (b.shape[0], a.shape[0]))])
            return call("einsum", a, b, params=(("", f'"{spec}"'),), shape=shape,
                        mag=a.mag * b.mag)
        b = self.pick(lambda e: e.shape == a.shape and e.mag <= 10, [a.shape])
        if b is None:
            return None
        (n, m), mag = a.shape, a.mag * b.mag
        spec, shape, mag = self.rng.choice([
            ("ij,ij->i", (n,), mag * SIZE_BOUND), ("ij,ij->j", (m,), mag * SIZE_BOUND),
            ("ij,kj->ik", (n, n), mag * SIZE_BOUND), ("ij,ik->jk", (m, m), mag * SIZE_BOUND),
            ("ij,ij->ji", (m, n), mag), ("ij,ij", (), mag * SIZE_BOUND ** 2)])
        return call("einsum", a, b, params=(("", f'"{spec}"'),), shape=shape, mag=mag)

    def op_kron(self) -> Expr | None:
        """mean(kron(a, b) * kron(c, d)): ⟨a ⊗ b, c ⊗ d⟩ over the entries, back to a scalar."""
        a = self.first(lambda e: len(e.shape) >= 1 and e.mag <= 10)
        b = self.pick(lambda e: len(e.shape) >= 1 and e.mag <= 10, self.shapes())
        if a is None or b is None:
            return None
        c = self.pick(lambda e: e.shape == a.shape and e.mag <= 10, [a.shape])
        d = self.pick(lambda e: e.shape == b.shape and e.mag <= 10, [b.shape])
        if c is None or d is None:
            return None
        left, right = (call("kron", x, y, shape=("2",), mag=x.mag * y.mag)
                       for x, y in ((a, b), (c, d)))
        product = binary("*", left, right, ("2",), left.mag * right.mag)
        return call("mean", product, shape=(), mag=product.mag)

    def op_eigvalsh(self) -> Expr | None:
        """The eigenvalues of a square operand's symmetric part."""
        a = self.first(lambda e: is_square(e.shape) and e.mag <= 30)
        if a is None:
            return None
        return call("eigvalsh", a, shape=a.shape[:1], mag=a.mag * SIZE_BOUND)

    def op_pinv(self) -> Expr | None:
        """A⁺ of a well-conditioned square matrix (rectangular ones are tested on their own:
        a random rectangular product may lose rank, where A⁺ jumps)."""
        a = self.square_wc()
        if a is None:
            return None
        return call("pinv", a, shape=a.shape, mag=3.0)

    # -- statements --------------------------------------------------------------------------

    def name_latest(self) -> None:
        """Turn the latest subexpression into a named intermediate ``t = ...``."""
        e = self.pool[-1]
        if e.op in ("var", "ref") or not e.depth:
            return
        name = self.names.fresh("intermediate")
        self.stmts.append(Assign(name, e))
        self.pool[-1] = replace(e, op="ref", name=name, args=(), params=(), depth=0)

    def finish(self) -> tuple[Expr, str]:
        """The final expression (a scalar, or sometimes a layer) and its name (maybe none)."""
        layers = [e for e in self.pool if e.shape and e.op != "var"]
        if layers and self.rng.random() < 0.2:
            final = self.pool[-1] if self.pool[-1].shape else self.rng.choice(layers)
            if final.op == "ref" and self.rng.random() < 0.5:
                final = fits(self.combine(final)) or final
        else:
            final = self.scalar(self.pool[-1])
            made = [e for e in self.pool if e.depth or e.op == "ref"] or self.pool
            for _ in range(self.rng.choice([0, 0, 1, 2])):
                other = self.scalar(self.rng.choice(made))
                op = self.rng.choice(["+", "-", "*"])
                final = binary(op, final, other, (), final.mag * other.mag + final.mag)
        named = self.rng.random() < 0.5
        return final, self.names.fresh("final") if named else ""

    def combine(self, e: Expr) -> Expr:
        """A layer using the intermediate ``e`` once more: ``e * tanh(e)``."""
        return binary("*", e, call("tanh", e, shape=e.shape, mag=1.0), e.shape, e.mag)

    def scalar(self, e: Expr) -> Expr:
        """``e`` reduced to a scalar by one of the language's reductions or losses."""
        s = e.shape
        if not s:
            return self.rng.choice([e, call("sin", e, shape=(), mag=1.0),
                                    binary("*", e, e, (), e.mag ** 2)])
        how = ["sum", "mean", "norm", "sum_none", "mse", "quadratic"] + ["onehot", "take"] * (
            len(s) == 2)
        if e.mag <= 20:
            how += ["logsumexp", "ce_float", "ce_onehot", "ce_probabilities", "ce_softmax"]
            how += ["ce_labels"] * (len(s) == 2)
        if is_square(s):
            how.append("trace")
        choice = self.rng.choice(how)
        if choice in ("sum", "mean", "norm", "logsumexp", "trace"):
            return call(choice, e, shape=(), mag=e.mag * entries_bound(s))
        if choice == "sum_none":
            return call("sum", e, params=(("axis", "None"),), shape=(),
                        mag=e.mag * entries_bound(s))
        if choice == "quadratic":
            return self.quadratic(e)
        if choice == "onehot":                             # the entries of e at the labels
            y = self.declare((s[0],), f"labels:{s[1]}", "labels", who="labels")
            picked = call("onehot", y, Expr("dim", s[1], mag=SIZE_BOUND, low=1.0), shape=s,
                          mag=1.0)
            return call("sum", binary("*", picked, e, s, e.mag), shape=(),
                        mag=e.mag * entries_bound(s))
        if choice == "take":                               # rows of e looked up by labels
            y = self.declare((self.rng.choice(self.dims),), f"labels:{s[0]}", "labels",
                             who="labels")
            rows = call("take", e, y, params=(("axis", "0"),) if self.rng.random() < 0.5 else (),
                        shape=(y.shape[0], s[1]), mag=e.mag)
            return call("sum", binary("*", rows, rows, rows.shape, e.mag ** 2), shape=(),
                        mag=e.mag ** 2 * entries_bound(rows.shape))
        if choice == "mse":
            other = self.pick(lambda o: o.shape == s and o != e, [s]) or e
            args = (e, other) if self.rng.random() < 0.5 else (other, e)
            return call("mse", *args, shape=(), mag=(e.mag + other.mag) ** 2)
        return self.cross_entropy(e, choice[3:])

    def quadratic(self, e: Expr) -> Expr:
        """``x @ M @ x`` for a vector, ``sum(e @ e.T)``-like forms for a matrix."""
        if len(e.shape) == 1:
            return binary("@", e, e, (), e.mag ** 2 * SIZE_BOUND)
        t = Expr("T", args=(e,), shape=e.shape[::-1], mag=e.mag, depth=e.depth + 1)
        product = binary("@", t, e, (e.shape[1], e.shape[1]), e.mag ** 2 * SIZE_BOUND)
        return call("trace", product, shape=(), mag=product.mag * SIZE_BOUND)

    def cross_entropy(self, z: Expr, targets: str) -> Expr:
        """softmax_cross_entropy of the logits ``z`` with targets of one kind."""
        s = z.shape
        if targets == "labels":
            y = self.declare((s[0],), f"labels:{s[1]}", "labels", who="labels")
        elif targets in ("onehot", "probabilities"):
            y = self.declare(s, targets, targets, who="target")
        elif targets == "softmax":
            other = self.pick(lambda o: o.shape == s and o.mag <= 20, [s]) or z
            y = call("softmax", other, shape=s, mag=1.0)
        else:
            y = self.pick(lambda o: o.shape == s and o != z, [s]) or self.declare(s, who="target")
        return call("softmax_cross_entropy", z, y, shape=(), mag=(z.mag + 2) * y.mag * 16)

    def program(self, final: Expr, final_name: str) -> Program:
        return Program(tuple(self.decls), tuple(self.stmts), final, final_name)


def generate(seed: int | str, mode: str = "normal") -> Program:
    """A random well-typed program, the same for the same seed and mode."""
    rng = random.Random(f"{mode}:{seed}")
    if mode == "size":
        return size_program(rng)
    names = Names(rng, hostile=mode == "hostile")
    builder = Builder(rng, names, (names.fresh("scalar"), names.fresh("scalar"))
                      if mode == "hostile" else ("n", "m"))
    if mode != "hostile":
        names.taken |= {"n", "m"}
    for _ in range(rng.randint(1, 3)):
        builder.declare_random()
    budget = rng.randint(0, 6)
    for _ in range(rng.randint(3, 12)):
        builder.grow()
        if len(builder.stmts) < budget and rng.random() < 0.4:
            builder.name_latest()
    final, final_name = builder.finish()
    return builder.program(final, final_name)


# ----------------------------------------------------------------------------------------------
# Size mode: answered or refused in bounded time and memory, never an internal error


def ref(name: str, shape: Shape) -> Expr:
    return Expr("ref", name, shape=shape)


def size_program(rng: random.Random) -> Program:
    """One of: a long chain, a huge matrix power, a doubling chain, huge dimensions."""
    return rng.choice([long_chain, huge_power, doubling_chain, huge_dims])(rng)


def long_chain(rng: random.Random) -> Program:
    """1,000–10,000 statements, each using the one before (and sometimes the input)."""
    x, a = var("x", ("n",)), var("A", ("n", "n"), "wc")
    steps = rng.randint(1000, 10000)
    stmts: list[Assign] = []
    previous = x
    for i in range(1, steps + 1):
        h = previous
        form = rng.randrange(4)
        if form == 0:
            e = binary("+", h, binary("*", num("1e-3"), call("tanh", h, shape=h.shape, mag=1),
                                      h.shape, 1), h.shape, 1)
        elif form == 1:
            e = binary("*", call("sin", h, shape=h.shape, mag=1), num("0.5"), h.shape, 1)
        elif form == 2:
            e = binary("+", h, x, h.shape, 1)
        else:
            e = binary("/", binary("@", a, h, h.shape, 1), num("3"), h.shape, 1)
        stmts.append(Assign(f"h{i}", e))
        previous = ref(f"h{i}", ("n",))
    final = call("sum", previous, shape=(), mag=1)
    decls = (Decl("x", ("n",)), Decl("A", ("n", "n"), kind="wc"))
    return Program(decls, tuple(stmts), final, "L")


def huge_power(rng: random.Random) -> Program:
    """``matrix_power(A, k)`` with |k| up to 10⁹."""
    k = rng.choice([10**9, -(10**9), 2**31 - 1, rng.randint(10**6, 10**9),
                    -rng.randint(10**3, 10**9)])
    a = var("A", ("n", "n"), "wc")
    power = call("matrix_power", a, params=(("", str(k)),), shape=("n", "n"), mag=1)
    final = call(rng.choice(["trace", "sum", "logdet", "norm"]), power, shape=(), mag=1)
    return Program((Decl("A", ("n", "n"), kind="wc"),), (), final, rng.choice(["", "L"]))


def doubling_chain(rng: random.Random) -> Program:
    """``h = h * h + h`` (or with ``@``) 30–40 times: an expression of size 2^40 if inlined."""
    matrix = rng.random() < 0.5
    shape: Shape = ("n", "n") if matrix else ("n",)
    op = "@" if matrix else "*"
    x = var("X" if matrix else "x", shape)
    stmts: list[Assign] = []
    h = x
    for i in range(1, rng.randint(30, 40) + 1):
        stmts.append(Assign(f"h{i}", binary("+", binary(op, h, h, shape, 1), h, shape, 1)))
        h = ref(f"h{i}", shape)
    final = call("sum", h, shape=(), mag=1)
    return Program((Decl(x.name, shape),), tuple(stmts), final, "L")


def huge_dims(rng: random.Random) -> Program:
    """Dimensions declared as integers up to 10¹²."""
    big = str(rng.choice([10**12, 10**9, rng.randint(10**6, 10**12)]))
    small = str(rng.randint(1, 7))
    x, w = var("x", (big,)), var("W", (big, small))
    forms = [
        call("sum", binary("*", x, x, (big,), 1), shape=(), mag=1),
        call("norm", binary("@", Expr("T", args=(w,), shape=(small, big)), x, (small,), 1),
             shape=(), mag=1),
        call("mean", call("softmax", x, shape=(big,), mag=1), shape=(), mag=1),
        call("logsumexp", binary("@", x, w, (small,), 1), shape=(), mag=1),
        binary("/", call("sum", call("tanh", x, shape=(big,), mag=1), shape=(), mag=1),
               num(big), (), 1),
    ]
    final = rng.choice(forms)
    return Program((Decl("x", (big,)), Decl("W", (big, small))), (), final, "")


# ----------------------------------------------------------------------------------------------
# Shrinking


Path = tuple[int, ...]
"""Where a subexpression is: the statement (len(stmts) for the final), then child indices."""


def roots(p: Program) -> list[Expr]:
    return [s.expr for s in p.stmts] + [p.final]


def with_root(p: Program, index: int, e: Expr) -> Program:
    if index == len(p.stmts):
        return replace(p, final=e)
    stmts = list(p.stmts)
    stmts[index] = Assign(stmts[index].name, e)
    return replace(p, stmts=tuple(stmts))


def subexpressions(e: Expr, path: Path = ()) -> Iterator[tuple[Path, Expr]]:
    """Every node with its path, parents before children."""
    yield path, e
    for i, a in enumerate(e.args):
        yield from subexpressions(a, (*path, i))


def put(e: Expr, path: Path, new: Expr) -> Expr:
    if not path:
        return new
    args = list(e.args)
    args[path[0]] = put(args[path[0]], path[1:], new)
    return replace(e, args=tuple(args))


def substitute(e: Expr, name: str, new: Expr) -> Expr:
    """``e`` with each reference to the intermediate ``name`` replaced by ``new``."""
    if e.op == "ref" and e.name == name:
        return new
    return replace(e, args=tuple(substitute(a, name, new) for a in e.args)) if e.args else e


def uses(p: Program) -> set[str]:
    """Names referenced by the expressions (variables, intermediates, dimensions)."""
    found: set[str] = set()
    for root in roots(p):
        found |= {e.name for _, e in subexpressions(root) if e.op in ("var", "ref", "dim")}
    return found


def fresh_kind(e: Expr) -> str:
    if e.wc and is_square(e.shape):
        return "wc"
    return "positive" if e.low > 0 else ""


def fresh_variable(p: Program, e: Expr) -> Program:
    """``p`` declaring one more variable shaped like ``e`` (returned as the last decl)."""
    name = Names(random.Random(0), False, p.names()).fresh(role(e.shape))
    return replace(p, decls=(*p.decls, Decl(name, e.shape, kind=fresh_kind(e))))


def truncations(p: Program) -> Iterator[Program]:
    """The function ends at an earlier intermediate (its expression becomes the final one):
    half the statements first, then three quarters … (a bisection), then each of the rest."""
    n = len(p.stmts)
    halving = list(dict.fromkeys(n - n // 2**j for j in range(1, n.bit_length() + 1)))
    for i in [*halving, *(i for i in range(n) if i not in set(halving))]:
        if i < n:
            yield replace(p, stmts=p.stmts[:i], final=p.stmts[i].expr)


def inlinings(p: Program) -> Iterator[Program]:
    """One intermediate fewer, its expression written where it was used."""
    for i, s in enumerate(p.stmts):
        rest = [Assign(t.name, substitute(t.expr, s.name, s.expr)) for t in p.stmts[i + 1:]]
        yield replace(p, stmts=(*p.stmts[:i], *rest), final=substitute(p.final, s.name, s.expr))


def replacements(p: Program) -> Iterator[Program]:
    """Each subexpression replaced by a same-shaped child, a constant or a fresh variable."""
    for index, root in enumerate(roots(p)):
        for path, e in subexpressions(root):
            for child in e.args:
                if child.shape == e.shape and child.op != "num":
                    yield with_root(p, index, put(root, path, child))
            if e.op in ("var", "ref", "num", "dim", "pi"):
                continue
            if not e.shape:
                yield with_root(p, index, put(root, path, num("2")))
            bigger = fresh_variable(p, e)
            decl = bigger.decls[-1]
            yield with_root(bigger, index, put(root, path, var(decl.name, e.shape, decl.kind)))
            if e.op == "call" and e.params:
                for k in range(len(e.params)):
                    params = e.params[:k] + e.params[k + 1:]
                    yield with_root(p, index, put(root, path, replace(e, params=params)))


def variable_merges(p: Program) -> Iterator[Program]:
    """A variable replaced by an earlier one of the same shape and kind."""
    for j, later in enumerate(p.decls):
        for earlier in p.decls[:j]:
            if (earlier.shape, earlier.prop, earlier.kind) == (later.shape, later.prop, later.kind):
                same = var(earlier.name, earlier.shape, earlier.kind)
                renamed = rename_variable(p, later.name, same)
                yield replace(renamed, decls=tuple(d for d in p.decls if d is not later))


def rename_variable(p: Program, name: str, new: Expr) -> Program:
    def swap(e: Expr) -> Expr:
        if e.op == "var" and e.name == name:
            return new
        return replace(e, args=tuple(swap(a) for a in e.args)) if e.args else e
    return replace(p, stmts=tuple(Assign(s.name, swap(s.expr)) for s in p.stmts),
                   final=swap(p.final))


def unused_declarations(p: Program) -> Iterator[Program]:
    used = uses(p)
    kept = tuple(d for d in p.decls if d.name in used)
    if len(kept) < len(p.decls):
        yield replace(p, decls=kept)


def lower_ranks(p: Program) -> Iterator[Program]:
    """Dimensions merged (every ``m`` becomes ``n``) and declarations of lower rank."""
    dims = sorted({d for decl in p.decls for d in decl.shape if not d.isdigit()})
    for old in dims:
        for new in [*dims, ONE]:
            if new != old and (new == ONE or new < old):
                yield rename_dim(p, old, new)
    for i, d in enumerate(p.decls):
        for k in range(len(d.shape)):
            decls = list(p.decls)
            decls[i] = replace(d, shape=d.shape[:k] + d.shape[k + 1:], prop="",
                               kind="" if d.kind == "wc" else d.kind)
            yield replace(p, decls=tuple(decls))


def rename_dim(p: Program, old: str, new: str) -> Program:
    def dims(shape: Shape) -> Shape:
        return tuple(new if d == old else d for d in shape)

    def swap(e: Expr) -> Expr:
        named = replace(e, name=new) if e.op == "dim" and e.name == old else e
        if new == ONE and named.op == "dim" and named.name == new:
            named = num(ONE)
        args = tuple(swap(a) for a in e.args)
        return replace(named, args=args, shape=dims(e.shape))

    decls = tuple(replace(d, shape=dims(d.shape), kind=d.kind.replace(f":{old}", f":{new}"))
                  for d in p.decls)
    return replace(p, decls=decls, stmts=tuple(Assign(s.name, swap(s.expr)) for s in p.stmts),
                   final=swap(p.final))


def final_name_dropped(p: Program) -> Iterator[Program]:
    if p.final_name:
        yield replace(p, final_name="")


SHRINKS = (truncations, inlinings, unused_declarations, variable_merges, replacements,
           final_name_dropped, lower_ranks)


def shrink_candidates(p: Program) -> Iterator[Program]:
    """Smaller programs than ``p``, roughly the biggest reductions first (not all well typed)."""
    for shrink in SHRINKS:
        for candidate in shrink(p):
            if candidate.size() < p.size():
                yield candidate
