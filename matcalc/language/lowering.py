"""From parsed source to the typed IR: declarations, names, shapes and the function's node.

Every name is resolved and every shape checked here, so a program that lowers is well typed.
Errors point at the offending column and, for shape clashes, name both shapes and the operator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sympy

from matcalc.core.elementwise import LEAKY_SLOPE
from matcalc.core.ir import (
    ONE,
    Dim,
    Node,
    ShapeError,
    const,
    const_value,
    definition_of,
    dim,
    identity,
    is_labels,
    is_symmetric,
    lift,
    named,
    normalise_axis,
    size,
    var,
    zeros,
)
from matcalc.core.rules import callable_elementwise
from matcalc.core.simplify import (
    add,
    apply,
    broadcast_to,
    matmul,
    mul,
    new_axis,
    power,
    reduce_sum,
    transpose,
)
from matcalc.errors import MatcalcError, did_you_mean, listed
from matcalc.language import syntax

MAX_RANK = 2
CONSTANTS = {"pi": sympy.pi}


@dataclass(frozen=True)
class Signature:
    """A function of the language: parameter names, defaults, and the parameters that take
    literals: integers (axes, powers; an axis may also be None), flags (True or False) and
    sizes."""

    params: tuple[str, ...]
    build: Callable[..., Node]
    defaults: tuple[tuple[str, object], ...] = ()
    integers: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    """Parameters that take a size: a dimension's name or a positive integer (``eye(n)``)."""


AXIS = ("axis",)
REDUCTION = ("x", "axis", "keepdims")
NO_AXIS = (("axis", None), ("keepdims", False))


def mean(x: Node, axis: int | None, keepdims: bool = False) -> Node:
    """``sum(x, axis) / count``."""
    counted = x.shape if axis is None else (x.shape[axis],)
    return reduce_sum(x, axis, keepdims) * const(1 / size(counted))


def variance(x: Node, axis: int | None, ddof: int = 0, keepdims: bool = False) -> Node:
    """Σ (x − mean)² / (count − ddof) over ``axis``, as ``np.var``."""
    counted = size(x.shape) if axis is None else x.shape[axis]
    if ddof < 0:
        raise MatcalcError(f"ddof={ddof}: the degrees of freedom removed cannot be negative")
    if (counted - ddof).is_nonpositive:
        raise MatcalcError(f"a variance with ddof={ddof} over {counted} "
                           f"entr{'y' if counted == 1 else 'ies'} divides by zero")
    centred = x - mean(x, axis, keepdims=True)
    return reduce_sum(centred * centred, axis, keepdims) * const(1 / (counted - ddof))


def sized(shape: Sequence[Dim | None]) -> tuple[Dim, ...]:
    """The sizes given, the ``None`` of an omitted one dropped: ``ones(n)``, ``ones(n, m)``."""
    return tuple(d for d in shape if d is not None)


LABELS_ALLOWED = {("softmax_cross_entropy", "targets"), ("onehot", "y")}
"""The arguments that may be integer class labels."""


def norm(x: Node, k: int | None) -> Node:
    """‖x‖ (Frobenius for a matrix), ‖x‖₂ or ‖x‖₁ of a vector, as ``np.linalg.norm``."""
    if k is None or k == 2 and x.rank == 1:
        return apply("norm", x)
    if k == 1 and x.rank == 1:
        return reduce_sum(apply("abs", x))
    raise ShapeError("matcalc has the 1- and 2-norms of a vector and the "
                     "Frobenius norm norm(X) of a matrix; the matrix k-norms are not there yet")


def keeping(op: str) -> Callable[..., Node]:
    """A reduction (logsumexp, max, min) over ``axis`` (every entry for None), the reduced
    axes kept with ``keepdims``; of a scalar, the scalar itself."""

    def reduction(x: Node, axis: int | None, keepdims: bool = False) -> Node:
        if not x.shape:
            return x
        axis = normalise_axis(axis, x.rank)
        total = apply(op, x, attrs=(axis,))
        if not keepdims:
            return total
        if axis is None:
            return broadcast_to(total, (ONE,) * x.rank)
        return new_axis(total, axis)

    return reduction


def softmax_like(op: str) -> Callable[[Node, int | None], Node]:
    return lambda x, axis: apply(op, x, attrs=(axis,))


def _unary(op: str) -> Signature:
    return Signature(("x",), lambda x: apply(op, x))


def above(a: Node, b: Node) -> Node:
    """The mask 1[a > b], 0/1 entry by entry: a step, whose derivative is 0."""
    return apply("step", a - b)


def is_mask(node: Node) -> bool:
    """Made of comparisons: 1[a > b], 1 − mask, and products of masks (0/1 entry by entry)."""
    node = definition_of(node)
    if node.op in ("step", "zeros") or const_value(node) in (0, 1):   # x > x folds to 0
        return True
    if node.op == "broadcast":
        return is_mask(node.args[0])
    if node.op == "mul":
        return all(is_mask(a) for a in node.args)
    if node.op == "add" and len(node.args) == 2 and const_value(node.args[0]) == 1:
        negated = node.args[1]
        return (negated.op == "mul" and len(negated.args) == 2
                and const_value(negated.args[0]) == -1 and is_mask(negated.args[1]))
    return False


def where(cond: Node, a: Node, b: Node) -> Node:
    """``where(cond, a, b)`` = cond ⊙ a + (1 − cond) ⊙ b for a 0/1 mask made by comparisons."""
    if not is_mask(cond):
        raise ShapeError("where needs a condition made by comparisons, such as `x > 0` or "
                         "`(x > 0) * (y < 1)`: a 0/1 mask")
    return cond * lift(a) + (1 - cond) * lift(b)


FUNCTIONS: dict[str, Signature] = {
    **{op: _unary(op) for op in callable_elementwise()},
    "square": Signature(("x",), lambda x: power(x, const(2))),
    "leaky_relu": Signature(("x", "a"), lambda x, a: apply("leaky_relu", x, lift(a)),
                            defaults=(("a", LEAKY_SLOPE),)),
    "sum": Signature(REDUCTION, reduce_sum, NO_AXIS, AXIS, ("keepdims",)),
    "mean": Signature(REDUCTION, mean, NO_AXIS, AXIS, ("keepdims",)),
    **{op: _unary(op) for op in ("trace", "det", "logdet", "inv", "diag")},
    "norm": Signature(("x", "ord"), lambda x, k: norm(x, k), (("ord", None),), ("ord",)),
    "cholesky": Signature(("x",), lambda s: apply("cholesky", apply("sym", s) if (
        s.rank == 2 and s.shape[0] == s.shape[1] and not is_symmetric(definition_of(s))) else s)),
    "outer": Signature(("a", "b"), lambda a, b: apply("outer", a, b)),
    "matrix_power": Signature(("x", "k"), lambda x, k: apply("matrix_power", x, attrs=(k,)),
                              integers=("k",)),
    "softmax": Signature(("x", "axis"), softmax_like("softmax"), (("axis", -1),), AXIS),
    "log_softmax": Signature(("x", "axis"), softmax_like("log_softmax"), (("axis", -1),), AXIS),
    "logsumexp": Signature(REDUCTION, keeping("logsumexp"), NO_AXIS, AXIS, ("keepdims",)),
    "max": Signature(REDUCTION, keeping("max"), NO_AXIS, AXIS, ("keepdims",)),
    "min": Signature(REDUCTION, keeping("min"), NO_AXIS, AXIS, ("keepdims",)),
    "maximum": Signature(("a", "b"), lambda a, b: apply("maximum", lift(a), lift(b))),
    "minimum": Signature(("a", "b"), lambda a, b: apply("minimum", lift(a), lift(b))),
    "clip": Signature(("x", "lo", "hi"), lambda x, lo, hi: apply("clip", *map(lift, (x, lo, hi)))),
    "softmax_cross_entropy": Signature(
        ("logits", "targets"), lambda z, y: apply("softmax_cross_entropy", z, y)
    ),
    "mse": Signature(("pred", "target"), lambda p, t: apply("mse", p, t)),
    "solve": Signature(("A", "B"), lambda a, b: apply("solve", a, b)),
    "where": Signature(("condition", "x", "y"), where),
    "onehot": Signature(("y", "classes"), lambda y, c: apply("onehot", y, attrs=(c,)),
                        sizes=("classes",)),
    "tril": Signature(("x", "k"), lambda x, k: apply("tril", x, attrs=(k,)), (("k", 0),),
                      ("k",)),
    "triu": Signature(("x", "k"), lambda x, k: apply("triu", x, attrs=(k,)), (("k", 0),),
                      ("k",)),
    "var": Signature(("x", "axis", "ddof", "keepdims"), variance, (*NO_AXIS, ("ddof", 0)),
                     ("axis", "ddof"), ("keepdims",)),
    "std": Signature(("x", "axis", "ddof", "keepdims"),
                     lambda *args: power(variance(*args), const(sympy.Rational(1, 2))),
                     (*NO_AXIS, ("ddof", 0)), ("axis", "ddof"), ("keepdims",)),
    "eye": Signature(("n",), identity, sizes=("n",)),
    "ones": Signature(("rows", "cols"), lambda *dims: broadcast_to(const(1), sized(dims)),
                      (("cols", None),), sizes=("rows", "cols")),
    "zeros": Signature(("rows", "cols"), lambda *dims: zeros(sized(dims)),
                       (("cols", None),), sizes=("rows", "cols")),
}
"""The functions a program may call, by name."""

BINARY: dict[str, Callable[[Node, Node], Node]] = {
    "+": add,
    "-": lambda a, b: a - b,
    "*": mul,
    "/": lambda a, b: mul(a, power(b, const(-1))),
    "**": power,
    "@": matmul,
    ">": above,
    "<": lambda a, b: above(b, a),
    ">=": lambda a, b: 1 - above(b, a),
    "<=": lambda a, b: 1 - above(a, b),
}


@dataclass
class Program:
    """A lowered program: its variables, named intermediates and the function to differentiate."""

    source: str
    variables: dict[str, Node] = field(default_factory=dict)
    intermediates: dict[str, Node] = field(default_factory=dict)
    dims: dict[str, Dim] = field(default_factory=dict)
    function: Node | None = None
    function_name: str = "f"
    positions: dict[str, int] = field(default_factory=dict)
    seed: str | None = None
    """For generated layers: the variable ``s`` in the scalar ``sum(s ⊙ value)`` derived."""

    def add_variable(self, name: str, shape: tuple) -> Node:
        """Declare one more variable (a direction, a seed), refusing names already in use."""
        syntax.identifier(name, "a new variable's name")
        if name in self.variables or name in self.intermediates or name in self.dims:
            raise MatcalcError(f"`{name}` is already a name of the program; choose another")
        node = self.variables[name] = var(name, shape)
        return node

    def lookup(self, name: str) -> Node:
        """A variable or intermediate by name (MatcalcError with a suggestion otherwise)."""
        found = self.intermediates.get(name) or self.variables.get(name)
        if found is None:
            known = [*self.variables, *self.intermediates]
            raise MatcalcError(
                f"`{name}` is not a variable or intermediate of the program."
                + did_you_mean(name, known)
                + (f" Known names: {listed(known)}." if known else "")
            )
        return found


class Lowering:
    """Walks the statements of one source text into a :class:`Program`."""

    def __init__(self, program: Program, source: str) -> None:
        self.program = program
        self.source = source
        self.labels_allowed = False

    def error(self, message: str, offset: int, hint: str | None = None) -> MatcalcError:
        return MatcalcError(message, self.source, offset, hint)

    # -- statements ------------------------------------------------------------------------

    def statement(self, stmt: syntax.Statement) -> None:
        if isinstance(stmt, syntax.Decl):
            self.declare(stmt)
        elif isinstance(stmt, syntax.Assign):
            self.check_new_name(stmt.name, stmt.pos)
            node = named(stmt.name, self.expr(stmt.expr))
            self.program.intermediates[stmt.name] = node
            self.program.positions[stmt.name] = stmt.pos
            self.program.function, self.program.function_name = node, stmt.name
        else:
            self.program.function, self.program.function_name = self.expr(stmt.expr), "f"

    def declare(self, decl: syntax.Decl) -> None:
        if len(decl.dims) > MAX_RANK:
            raise self.error(
                f"rank-{len(decl.dims)} arrays are not supported yet; declare vectors or "
                "matrices (at most two dimensions)", decl.pos)
        shape = tuple(self.dimension(d, offset) for d, offset in decl.dims)
        self.check_properties(decl, shape)
        symmetric = "symmetric" in decl.properties
        others = tuple(p for p in dict.fromkeys(decl.properties) if p != "symmetric")
        for name, offset in decl.names:
            self.check_new_name(name, offset)
            self.program.variables[name] = var(name, shape, symmetric, others)
            self.program.positions[name] = offset

    def check_properties(self, decl: syntax.Decl, shape: tuple) -> None:
        """A declaration's properties fit its shape and each other."""
        found = set(decl.properties)
        if "symmetric" in found and (len(shape) != 2 or shape[0] != shape[1]):
            raise self.error("only a square matrix can be symmetric, e.g. `S: [n, n] symmetric`",
                             decl.pos)
        if len(found) > 1:
            raise self.error(f"a variable has at most one of the properties "
                             f"{', '.join(syntax.PROPERTIES)}; got {', '.join(sorted(found))}",
                             decl.pos)
        if found & {"onehot", "probabilities"} and not shape:
            raise self.error("one-hot or probability targets are rows: declare a vector `[C]` or "
                             "a matrix `[N, C]`", decl.pos)
        if "labels" in found and len(shape) > 1:
            raise self.error("integer class labels are one per row of the logits: declare "
                             "`y: [N] labels` (or `y: [] labels` for one example)", decl.pos)

    def dimension(self, value: str | int, offset: int) -> Dim:
        if isinstance(value, int):
            return dim(value)
        if value in self.program.variables or value in self.program.intermediates:
            raise self.error(f"`{value}` is a variable; it cannot also be a dimension", offset)
        return self.program.dims.setdefault(value, dim(value))

    def check_new_name(self, name: str, offset: int) -> None:
        if name in self.program.variables:
            raise self.error(f"`{name}` is already declared as a variable", offset)
        if name in self.program.intermediates:
            raise self.error(
                f"`{name}` is already assigned; give each intermediate its own name", offset)
        if name in self.program.dims:
            raise self.error(f"`{name}` is already used as a dimension", offset)

    # -- expressions -----------------------------------------------------------------------

    def expr(self, e: syntax.Expr) -> Node:
        method = getattr(self, "e_" + type(e).__name__)
        try:
            return method(e)
        except ShapeError as clash:
            where = getattr(e, "op_pos", e.pos)
            raise self.error(f"{syntax.unparse(e)}: {clash}", where) from None
        except MatcalcError as err:
            raise err.located(self.source, e.pos) from None

    def e_Number(self, e: syntax.Number) -> Node:  # noqa: N802
        return const(e.value)

    def e_Name(self, e: syntax.Name) -> Node:  # noqa: N802
        if e.id in syntax.LITERALS:
            raise self.error(f"`{e.id}` is only an argument's value, as in `sum(x, axis=None)` "
                             "or `keepdims=True`", e.pos)
        p = self.program
        if e.id in p.variables and is_labels(p.variables[e.id]) and not self.labels_allowed:
            raise self.error(f"`{e.id}` holds integer class labels: it can only be the targets "
                             f"of softmax_cross_entropy(logits, {e.id}) or the labels of "
                             f"onehot({e.id}, C)", e.pos)
        for table in (p.intermediates, p.variables):
            if e.id in table:
                return table[e.id]
        if e.id in p.dims:
            return const(p.dims[e.id])
        if e.id in CONSTANTS:
            return const(CONSTANTS[e.id])
        known = [*p.variables, *p.intermediates, *p.dims]
        raise self.error(
            f"`{e.id}` is not declared." + did_you_mean(e.id, known),
            e.pos,
            hint=f"Declare it first, e.g. `{e.id}: [n, m]` for a matrix, `{e.id}: [n]` for a "
            f"vector or `{e.id}: []` for a scalar (on the command line: --var '{e.id}: [n]').",
        )

    def e_UnaryOp(self, e: syntax.UnaryOp) -> Node:  # noqa: N802
        operand = self.expr(e.operand)
        return mul(const(-1), operand) if e.op == "-" else operand

    def e_BinOp(self, e: syntax.BinOp) -> Node:  # noqa: N802
        first, links = syntax.chain(e)
        value = self.expr(first)
        for link in links:
            right = self.expr(link.right)
            try:
                value = BINARY[link.op](value, right)
            except ShapeError as clash:
                raise self.error(f"{syntax.unparse(link)}: {clash}", link.op_pos) from None
        return value

    def e_Transpose(self, e: syntax.Transpose) -> Node:  # noqa: N802
        return transpose(self.expr(e.operand))

    def e_Call(self, e: syntax.Call) -> Node:  # noqa: N802
        signature = FUNCTIONS.get(e.func)
        if signature is None:
            what = "a variable" if e.func in self.program.variables else "not a function"
            raise self.error(
                f"`{e.func}` is {what} of matcalc." + did_you_mean(e.func, FUNCTIONS), e.pos,
                hint="Functions: " + ", ".join(sorted(FUNCTIONS)) + ".")
        values = self.bind(e, signature)
        return signature.build(*(values[p] for p in signature.params))

    def bind(self, e: syntax.Call, signature: Signature) -> dict[str, object]:
        """Arguments by parameter name, integers checked, defaults filled in."""
        params = signature.params
        if len(e.args) > len(params):
            raise self.error(
                f"{e.func} takes at most {len(params)} argument{'s' * (len(params) > 1)} "
                f"({', '.join(params)}), "
                f"got {len(e.args)}", e.args[len(params)].pos)
        given: dict[str, tuple[syntax.Expr, int]] = {
            p: (a, a.pos) for p, a in zip(params, e.args, strict=False)}
        for name, value, offset in e.kwargs:
            if name not in params or name in given:
                problem = "repeats" if name in given else "has no"
                raise self.error(f"{e.func} {problem} argument `{name}`"
                                 + did_you_mean(name, params), offset)
            given[name] = (value, offset)
        values: dict[str, object] = dict(signature.defaults)
        for name, (value, _) in given.items():
            if name in signature.integers:
                values[name] = self.integer(value, e.func, name, none=name == "axis")
            elif name in signature.flags:
                values[name] = self.flag(value, e.func, name)
            elif name in signature.sizes:
                values[name] = self.size(value, e.func, name)
            else:
                self.labels_allowed = (e.func, name) in LABELS_ALLOWED
                try:
                    values[name] = self.expr(value)
                finally:
                    self.labels_allowed = False
        missing = [p for p in params if p not in values]
        if missing:
            raise self.error(f"{e.func} needs the argument `{missing[0]}`", e.pos)
        if "axis" in values and values["axis"] is not None:
            rank = values["x"].rank
            where = given["axis"][1] if "axis" in given else e.pos
            if rank == 0:
                raise self.error(f"{e.func} of a scalar: it needs a vector or a matrix", where)
            if not -rank <= values["axis"] < rank:
                raise self.error(f"{e.func}: axis {values['axis']} is out of range for a "
                                 f"rank-{rank} argument", where)
        return values

    def integer(self, e: syntax.Expr, func: str, param: str, none: bool = False) -> int | None:
        """An integer literal such as ``-1`` (for axes and matrix powers), or ``None``."""
        if none and isinstance(e, syntax.Name) and e.id == "None":
            return None
        negative = isinstance(e, syntax.UnaryOp) and e.op == "-"
        inner = e.operand if negative else e
        if isinstance(inner, syntax.Number) and inner.value.is_Integer and abs(inner.value) < 2**31:
            return -int(inner.value) if negative else int(inner.value)
        allowed = "an integer literal" + (" or None" if none else "")
        raise self.error(f"{func}: `{param}` must be {allowed}", e.pos)

    def size(self, e: syntax.Expr, func: str, param: str) -> Dim | None:
        """A dimension of the program (``n``) or a positive integer literal; ``None``."""
        if isinstance(e, syntax.Name) and e.id in self.program.dims:
            return self.program.dims[e.id]
        if isinstance(e, syntax.Name) and e.id == "None":
            return None
        if isinstance(e, syntax.Number) and e.value.is_Integer and 0 < e.value < 2**31:
            return dim(int(e.value))
        sizes = ", ".join(f"`{d}`" for d in self.program.dims) or "none declared yet"
        raise self.error(f"{func}: `{param}` must be a size, a dimension's name or a positive "
                         f"integer (sizes: {sizes})", e.pos)

    def flag(self, e: syntax.Expr, func: str, param: str) -> bool:
        """``True`` or ``False``."""
        if isinstance(e, syntax.Name) and e.id in ("True", "False"):
            return e.id == "True"
        raise self.error(f"{func}: `{param}` must be True or False", e.pos)


def parse(source: str, declarations: Sequence[str] = ()) -> Program:
    """Parse and type-check a program; ``declarations`` are extra ``NAME: [dims]`` texts."""
    program = Program(source)
    for text in declarations:
        if ":" not in text:
            raise MatcalcError(f"--var expects a declaration such as 'x: [n]' (NAME: [dims]), "
                               f"got {text[:60]!r}")
        extra = syntax.parse_program(text)
        lowering = Lowering(program, text)
        for stmt in extra.statements:
            if not isinstance(stmt, syntax.Decl):
                raise MatcalcError(f"--var expects a declaration such as 'x: [n]', got {text!r}")
            lowering.declare(stmt)
    lowering = Lowering(program, source)
    for stmt in syntax.parse_program(source).statements:
        lowering.statement(stmt)
    if program.function is None:
        raise MatcalcError(
            "the program has no expression to differentiate; end it with an expression "
            "such as `x @ A @ x` or an assignment such as `L = mse(pred, y)`"
        )
    return program
