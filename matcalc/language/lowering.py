"""From parsed source to the typed IR: declarations, names, shapes and the function's node.

Every name is resolved and every shape checked here, so a program that lowers is well typed.
Errors point at the offending column and, for shape clashes, name both shapes and the operator.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
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
    postorder,
    shape_str,
    size,
    var,
    zeros,
)
from matcalc.core.rewrites import recognise, recognise_kernels
from matcalc.core.rules import callable_elementwise, mean
from matcalc.core.simplify import (
    add,
    apply,
    broadcast_to,
    einsum,
    matmul,
    mul,
    new_axis,
    power,
    rebuild,
    reduce_sum,
    transpose,
)
from matcalc.errors import MatcalcError, did_you_mean, listed
from matcalc.language import syntax

MAX_RANK = 8
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
    options: tuple[tuple[str, tuple[object, ...]], ...] = ()
    """Parameters that take one of a few literals: ``norm``'s ``ord`` (1, 2, inf, "fro" …)."""
    arrays: tuple[str, ...] = ()
    """Parameters that take a list of arrays, ``[A, B]`` (``concatenate``)."""
    axis_lists: tuple[str, ...] = ()
    """Parameters that take a list of axes, ``[0, 2, 1]`` (``transpose``), or None."""
    size_lists: tuple[str, ...] = ()
    """Parameters that take a list of sizes, ``[B, T, h, k]`` (``reshape``)."""
    strings: tuple[str, ...] = ()
    """Parameters that take a quoted text (``einsum``'s subscripts)."""
    variadic: bool = False
    """The last parameter takes every remaining positional argument (``einsum``'s operands)."""


AXIS = ("axis",)
REDUCTION = ("x", "axis", "keepdims")
NO_AXIS = (("axis", None), ("keepdims", False))


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


def literal_option(e: syntax.Expr) -> object:
    """The value of an option as written: a word, an integer, ``±inf`` or ``None`` (a tuple,
    matching no option, for anything else)."""
    if isinstance(e, syntax.String):
        return e.value
    if isinstance(e, syntax.Name) and e.id in ("None", "inf"):
        return None if e.id == "None" else INF
    if isinstance(e, syntax.Number) and e.value.is_Integer and abs(e.value) < 2**31:
        return int(e.value)
    if isinstance(e, syntax.UnaryOp) and e.op == "-":
        inner = literal_option(e.operand)
        if type(inner) in (int, float):
            return -inner
    return ()


def concatenate(blocks: Sequence[Node], axis: int = 0) -> Node:
    """``np.concatenate(blocks, axis)`` of vectors or matrices."""
    rank = blocks[0].rank
    if rank == 0:
        raise ShapeError("concatenate joins vectors or matrices; for scalars use hstack([a, b])")
    if axis is None:
        raise ShapeError("concatenate(…, axis=None) flattens its arrays, which matcalc does "
                         "not do; join along an axis (0 or 1)")
    if not -rank <= axis < rank:
        raise ShapeError(f"concatenate: axis {axis} is out of range for rank-{rank} arrays")
    return blocks[0] if len(blocks) == 1 else apply("concat", *blocks, attrs=(axis % rank,))


def vstack(blocks: Sequence[Node]) -> Node:
    """``np.vstack``: matrices on top of each other, vectors (and scalars) as rows."""
    lengths = {b.shape for b in blocks if b.rank == 1}
    if len(lengths) > 1:
        raise ShapeError("vstack stacks vectors as rows, so they need one length; got "
                         + " and ".join(shape_str(s) for s in sorted(lengths, key=str)))
    return concatenate([b if b.rank >= 2 else new_axis(as_vector(b), 0) for b in blocks], 0)


def hstack(blocks: Sequence[Node]) -> Node:
    """``np.hstack``: matrices (and stacks) side by side, vectors (and scalars) end to end."""
    blocks = [as_vector(b) for b in blocks]
    return concatenate(blocks, 1 if blocks[0].rank >= 2 else 0)


def as_vector(x: Node) -> Node:
    """A scalar as a vector of one entry (NumPy's atleast_1d); arrays as they are."""
    return broadcast_to(x, (ONE,)) if not x.shape else x


def kronecker(a: Node, b: Node) -> Node:
    """``np.kron(a, b)``: a vector beside a matrix is a row, two vectors give a vector."""
    if a.rank > 2 or b.rank > 2:
        raise ShapeError("kron takes vectors and matrices; for stacks write the product with "
                         "einsum, e.g. einsum(\"bij,bkl->bikjl\", A, B) then reshape")
    if not a.shape or not b.shape:
        return a * b
    if a.rank == b.rank == 1:
        return reduce_sum(apply("kron", a, b), 1)          # [m·p, 1] as a vector
    a, b = (new_axis(x, 0) if x.rank == 1 else x for x in (a, b))
    return apply("kron", a, b)


def einsum_spec(text: str, ranks: Sequence[int]) -> str:
    """NumPy's einsum subscripts made explicit and checked: letters for each operand's axes,
    ``->`` and the output's (implicitly, the letters used once, in alphabetical order)."""
    written = text.replace(" ", "")
    if "." in written:
        raise ShapeError(f'einsum: "{text}": an ellipsis (...) is not supported; name every '
                         "axis with a letter")
    inputs, arrow, output = written.partition("->")
    subscripts = inputs.split(",")
    if not arrow:
        letters = "".join(subscripts)
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if "-" in output or ">" in output or not all(s.isalpha() or not s for s in subscripts):
        raise ShapeError(f'einsum: "{text}" is not einsum subscripts (letters for each '
                         'operand\'s axes, separated by commas, then -> and the output\'s)')
    if len(subscripts) != len(ranks):
        raise ShapeError(f'einsum: "{text}" has subscripts for {len(subscripts)} operand(s), '
                         f"given {len(ranks)}")
    for letters, rank in zip(subscripts, ranks, strict=True):
        if len(letters) != rank:
            raise ShapeError(f"einsum: `{letters}` names {len(letters)} axes of a rank-{rank} "
                             "operand")
        if len(set(letters)) < len(letters):
            stack = ("; for a stack of matrices, multiply by eye(n) and sum: the traces of A: "
                     "[B, n, n] are sum(sum(A * eye(n), axis=-1), axis=-1)" if rank > 2 else "")
            raise ShapeError(f"einsum: `{letters}` repeats an index within one operand (a "
                             f"diagonal); use diag or trace for that{stack}")
    unknown = [c for c in output if c not in inputs]
    if unknown:
        raise ShapeError(f"einsum: the output `{output}` names `{unknown[0]}`, which no input "
                         "has (each output index must be one of the inputs')")
    if len(set(output)) < len(output):
        raise ShapeError(f"einsum: the output `{output}` repeats an index; each appears in it "
                         "at most once")
    return ",".join(subscripts) + "->" + output


def swap_axes(x: Node, first: int, second: int) -> Node:
    """``np.swapaxes(x, i, j)``."""
    axes = list(range(x.rank))
    i, j = (normalise_axis(k, x.rank) for k in (first, second))
    axes[i], axes[j] = axes[j], axes[i]
    return apply("permute", x, attrs=(tuple(axes),))


def transposed_axes(x: Node, axes: tuple[int, ...] | None) -> Node:
    """``np.transpose(x, axes)``: the axes reordered; all of them reversed for None."""
    if axes is None:
        return transpose(x) if x.rank <= 2 else apply(
            "permute", x, attrs=(tuple(range(x.rank))[::-1],))
    if len(axes) != x.rank:
        raise ShapeError(f"transpose: {len(axes)} axes given for a rank-{x.rank} array")
    return apply("permute", x, attrs=(tuple(normalise_axis(k, x.rank) for k in axes),))


def symmetric_part(s: Node) -> Node:
    """What cholesky and eigvalsh of S mean for any square S: of (S + Sᵀ)/2 (NumPy reads one
    triangle, which is the same for symmetric S and differentiates alike)."""
    if s.rank == 2 and s.shape[0] == s.shape[1] and not is_symmetric(definition_of(s)):
        return apply("sym", s)
    return s


def pseudo_inverse(a: Node) -> Node:
    """A⁺ of a matrix, ``np.linalg.pinv``."""
    if a.rank != 2:
        raise ShapeError(f"pinv needs a matrix, got a {'vector' if a.rank else 'scalar'}")
    return apply("pinv", a)


def sized(shape: Sequence[Dim | None]) -> tuple[Dim, ...]:
    """The sizes given, the ``None`` of an omitted one dropped: ``ones(n)``, ``ones(n, m)``."""
    return tuple(d for d in shape if d is not None)


LABELS_ALLOWED = {("softmax_cross_entropy", "targets"), ("onehot", "y"), ("take", "indices")}
"""The arguments that may be integer class labels."""


INF = math.inf
NORM_ORDERS = (None, 1, 2, INF, -INF, -1, "fro", "nuc")
"""The ``ord`` values of ``np.linalg.norm`` that matcalc differentiates."""


def norm(x: Node, k: object, axis: int | None = None, keepdims: bool = False) -> Node:
    """``np.linalg.norm(x, ord, axis, keepdims)``: vector norms of a vector (or along ``axis``),
    matrix norms of a matrix."""
    if x.rank == 0 and k is not None:
        raise ShapeError("the norm of a scalar is its absolute value, with no ord (NumPy "
                         "refuses one): write abs(x) or norm(x)")
    if axis is not None or x.rank < 2:
        return vector_norm(x, k, axis, keepdims)
    total = matrix_norm(x, k)
    return broadcast_to(total, (ONE, ONE)) if keepdims else total


def vector_norm(x: Node, k: object, axis: int | None, keepdims: bool) -> Node:
    """‖x‖₂ (``None``, 2), ‖x‖₁, ‖x‖_∞ = max |xᵢ|, min |xᵢ| (``-inf``) and (Σ 1/|xᵢ|)⁻¹
    (-1)."""
    if k in (None, 2) and axis is None and not keepdims:
        return apply("norm", x)
    if k in (None, 2):
        return apply("sqrt", reduce_sum(x * x, axis, keepdims))
    if k == 1:
        return reduce_sum(apply("abs", x), axis, keepdims)
    if k in (INF, -INF):
        return keeping("max" if k > 0 else "min")(apply("abs", x), axis, keepdims)
    if k == -1:                                          # (Σ 1/|xᵢ|)⁻¹, as NumPy
        return power(reduce_sum(power(apply("abs", x), const(-1)), axis, keepdims), const(-1))
    raise ShapeError(f"ord {option_text(k)} is a matrix norm; the norms of a vector (or along "
                     "an axis) are ord None or 2, 1, -1, inf and -inf")


def matrix_norm(x: Node, k: object) -> Node:
    """Frobenius (``None``, "fro"), nuclear Σσᵢ ("nuc"), spectral σ₁ (2), and the largest
    (smallest) absolute column sum (1, -1) or row sum (inf, -inf)."""
    if k in (None, "fro"):
        return apply("norm", x)
    if k == "nuc":
        return apply("nuclear_norm", x)
    if k == 2:
        return apply("spectral_norm", x)
    sums = reduce_sum(apply("abs", x), 0 if k in (1, -1) else 1)
    return apply("max" if k > 0 else "min", sums, attrs=(None,))


def option_hint(e: syntax.Expr, func: str, allowed: tuple[object, ...]) -> str | None:
    """How to write an option that was nearly right: a word without quotes, ``inf`` in
    quotes, a p-norm."""
    if isinstance(e, syntax.Name) and e.id in allowed:
        return f'Quote the word: "{e.id}".'
    if isinstance(e, syntax.String) and e.value in ("inf", "-inf"):
        return f"Write {e.value} without quotes."
    if func == "norm" and type(literal_option(e)) is int:
        return "For another p-norm of a vector write `sum(abs(x) ** p) ** (1 / p)`."
    return None


def option_text(value: object) -> str:
    """An option as it is written in a program: ``"fro"``, ``inf``, ``-inf``, ``None``."""
    if isinstance(value, str):
        return f'"{value}"'
    if value in (INF, -INF):
        return "inf" if value > 0 else "-inf"
    return str(value)


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
    """``where(cond, a, b)`` for a 0/1 mask made by comparisons: a where it holds, b elsewhere
    (b's value, not cond ⊙ a + (1 − cond) ⊙ b, so that a NaN of the branch not taken stays
    out, as in NumPy)."""
    if not is_mask(cond):
        raise ShapeError("where needs a condition made by comparisons, such as `x > 0` or "
                         "`(x > 0) * (y < 1)`: a 0/1 mask (for a 0/1 array m, write `m > 0`)")
    return apply("where", cond, lift(a), lift(b))


FUNCTIONS: dict[str, Signature] = {
    **{op: _unary(op) for op in callable_elementwise()},
    "square": Signature(("x",), lambda x: power(x, const(2))),
    "leaky_relu": Signature(("x", "a"), lambda x, a: apply("leaky_relu", x, lift(a)),
                            defaults=(("a", LEAKY_SLOPE),)),
    "sum": Signature(REDUCTION, reduce_sum, NO_AXIS, AXIS, ("keepdims",)),
    "mean": Signature(REDUCTION, mean, NO_AXIS, AXIS, ("keepdims",)),
    **{op: _unary(op) for op in ("trace", "det", "logdet", "inv", "diag")},
    "norm": Signature(("x", "ord", "axis", "keepdims"), norm, (("ord", None), *NO_AXIS),
                      AXIS, ("keepdims",), options=(("ord", NORM_ORDERS),)),
    "gelu": Signature(("x", "approximate"), lambda x, how: apply(
        "gelu_tanh" if how == "tanh" else "gelu", x), (("approximate", "none"),),
        options=(("approximate", ("none", "tanh")),)),
    "cholesky": Signature(("x",), lambda s: apply("cholesky", symmetric_part(s))),
    "kron": Signature(("a", "b"), kronecker),
    "swapaxes": Signature(("x", "axis1", "axis2"), swap_axes, integers=("axis1", "axis2")),
    "transpose": Signature(("x", "axes"), transposed_axes, (("axes", None),),
                           axis_lists=("axes",)),
    "einsum": Signature(("subscripts", "operands"), lambda spec, operands: einsum(
        einsum_spec(spec[0], [x.rank for x in operands]), *operands), strings=("subscripts",),
        arrays=("operands",), variadic=True),
    "reshape": Signature(("x", "shape"), lambda x, shape: apply("reshape", x, attrs=(shape,)),
                         size_lists=("shape",)),
    "take": Signature(("x", "indices", "axis"), lambda x, y, axis: apply("take", x, y),
                      (("axis", 0),), options=(("axis", (0,)),)),
    "concatenate": Signature(("arrays", "axis"), concatenate, (("axis", 0),), AXIS,
                             arrays=("arrays",)),
    "vstack": Signature(("arrays",), vstack, arrays=("arrays",)),
    "hstack": Signature(("arrays",), hstack, arrays=("arrays",)),
    "eigvalsh": Signature(("x",), lambda s: apply("eigvalsh", symmetric_part(s))),
    "pinv": Signature(("x",), pseudo_inverse),
    "outer": Signature(("a", "b"), lambda a, b: apply("outer", a, b)),
    "matrix_power": Signature(("x", "k"), lambda x, k: apply("matrix_power", x, attrs=(k,)),
                              integers=("k",)),
    "softmax": Signature(("x", "axis"), softmax_like("softmax"), (("axis", -1),), AXIS),
    "log_softmax": Signature(("x", "axis"), softmax_like("log_softmax"), (("axis", -1),), AXIS),
    "logsumexp": Signature(REDUCTION, keeping("logsumexp"), NO_AXIS, AXIS, ("keepdims",)),
    "max": Signature(REDUCTION, keeping("max"), NO_AXIS, AXIS, ("keepdims",)),
    "min": Signature(REDUCTION, keeping("min"), NO_AXIS, AXIS, ("keepdims",)),
    "prod": Signature(REDUCTION, keeping("prod"), NO_AXIS, AXIS, ("keepdims",)),
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
                     lambda *args: apply("sqrt", variance(*args)),
                     (*NO_AXIS, ("ddof", 0)), ("axis", "ddof"), ("keepdims",)),
    "eye": Signature(("n",), identity, sizes=("n",)),
    "ones": Signature(("rows", "cols"), lambda *dims: broadcast_to(const(1), sized(dims)),
                      (("cols", None),), sizes=("rows", "cols")),
    "zeros": Signature(("rows", "cols"), lambda *dims: zeros(sized(dims)),
                       (("cols", None),), sizes=("rows", "cols")),
}
"""The functions a program may call, by name."""

NONE_HINTS = {"clip": "For one bound use `maximum(x, lo)` or `minimum(x, hi)`."}
"""What to write instead of a None the function does not take."""

INSTEAD = {
    "slogdet": "`slogdet` gives NumPy's pair (sign, log|det A|); matcalc's `logdet(A)` is "
               "log|det A|, computed with slogdet, and `det(A)` is the determinant",
    "argmax": "`argmax` gives integer positions, which have no derivative; `max(x, axis)` is "
              "differentiable",
    "argmin": "`argmin` gives integer positions, which have no derivative; `min(x, axis)` is "
              "differentiable",
    "svd": "matcalc has no `svd` (its factors' derivatives are not derived); the singular "
           'values enter through `norm(X, "nuc")` (their sum) and `norm(X, 2)` (the largest)',
    "eigh": "matcalc has `eigvalsh(S)`, the eigenvalues of a symmetric matrix (ascending); the "
            "eigenvectors' derivatives are not derived",
    "eig": "matcalc has `eigvalsh(S)`, the eigenvalues of a symmetric matrix (ascending)",
    "eigvals": "matcalc has `eigvalsh(S)`, the eigenvalues of a symmetric matrix (ascending)",
    "dot": "write products with `@`, as in `x @ y` or `A @ x`",
    "matmul": "write products with `@`, as in `A @ B`",
    "inverse": "matcalc's matrix inverse is `inv(A)`",
    "multiply": "write entrywise products with `*`, as in `a * b`",
    "cross_entropy": "the cross-entropy of logits Z against targets Y (one-hot rows, "
                     "probabilities or integer labels) is `softmax_cross_entropy(Z, Y)`, the "
                     "mean over rows",
    "binary_cross_entropy": "matcalc has no `binary_cross_entropy`; write it out: "
                            "`-mean(y * log(p) + (1 - y) * log(1 - p))`, or from logits z "
                            "`mean(softplus(z) - y * z)`",
    "mse_loss": "the mean squared error is `mse(pred, target)`",
    "expit": "the logistic function is `sigmoid(x)`",
    "atan": "the inverse tangent is `arctan(x)`, as NumPy names it",
    "swish": "swish (SiLU) is `silu(x)`",
    "tensordot": "matcalc has no `tensordot`; write contractions with `einsum`, as in "
                 "`einsum(\"ij,jk->ik\", A, B)`",
    "layer_norm": "matcalc has no `layer_norm`; write it from `mean` and `var`, as "
                  "examples/transformer.mc does: `(X - mean(X, axis=-1, keepdims=True)) / "
                  "sqrt(var(X, axis=-1, keepdims=True) + 1e-5)`",
    "batch_norm": "matcalc has no `batch_norm`; write it from `mean` and `var`: "
                  "`(X - mean(X, axis=0)) / sqrt(var(X, axis=0) + 1e-5)`",
    "rms_norm": "matcalc has no `rms_norm`; write it from `mean`: "
                "`X / sqrt(mean(X ** 2, axis=-1, keepdims=True) + 1e-6)`",
}
"""Names users reach for that matcalc answers with another function."""

NUMPY_KEYWORDS = {"dim": "axis", "keepdim": "keepdims"}
"""PyTorch's keyword names and NumPy's, which matcalc takes."""

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
    sizes: dict[str, int] = field(default_factory=dict)
    """Sizes fixed from outside, those no variable has as an axis of its own (``h`` when every
    shape has ``h * k``): code cannot read them off its inputs."""
    as_written: dict[Node, Node] = field(default_factory=dict, repr=False, compare=False)
    """Each intermediate (and the function) that a recognised definition (σ, softplus …)
    changed, to its form as written."""

    def through(self, names: Sequence[str]) -> Program:
        """This program, or the program as written when one of ``names`` is an intermediate
        and a definition was recognised: a recognition may read through the intermediate's
        name (``t = exp(a); log1p(t)`` is softplus(a), which does not read t; ``log(t)`` for
        t = σ(x) is −softplus(−x)), and a derivative with respect to it needs every path
        through it."""
        if not self.as_written or not any(name in self.intermediates for name in names):
            return self
        memo: dict[Node, Node] = {}
        for node in postorder([self.function]):
            memo[node] = self.as_written.get(node) or rebuild(node, tuple(memo[a]
                                                                          for a in node.args))
        return dataclasses.replace(
            self, function=memo[self.function], as_written={},
            intermediates={name: memo.get(node) or self.as_written.get(node, node)
                           for name, node in self.intermediates.items()})

    def with_kernels(self) -> Program:
        """This program with the operations generated code has kernels for recognised
        (:data:`matcalc.core.rewrites.KERNELS`), as written where a derivative needs it."""
        return self.recognised(recognise_kernels)

    def recognised(self, rewrite: Callable[[Sequence[Node]], dict[Node, Node]]) -> Program:
        """This program with ``rewrite`` (old node → new) applied to its function and its
        intermediates, each definition it changed remembered as written."""
        roots = [self.function, *self.intermediates.values()]
        new = rewrite(roots)
        if all(new[n] is n for n in roots):
            return self
        as_written = {new[n]: self.as_written.get(n, n) for n in roots if new[n] is not n}
        return dataclasses.replace(
            self, function=new[self.function], as_written={**self.as_written, **as_written},
            intermediates={name: new[n] for name, n in self.intermediates.items()})

    def add_variable(self, name: str, shape: tuple, symmetric: bool = False) -> Node:
        """Declare one more variable (a direction, a seed), refusing names already in use."""
        syntax.identifier(name, "a new variable's name")
        if name in self.variables or name in self.intermediates or name in self.dims:
            raise MatcalcError(f"`{name}` is already a name of the program; choose another")
        node = self.variables[name] = var(name, shape, symmetric=symmetric)
        return node

    def lookup(self, name: str) -> Node:
        """A variable or intermediate by name (MatcalcError with a suggestion otherwise)."""
        found = self.intermediates.get(name) or self.variables.get(name)
        if found is None:                  # (a layer's seed grad_output is not the user's)
            known = [n for n in [*self.variables, *self.intermediates] if n != self.seed]
            if name in self.dims:
                raise MatcalcError(f"`{name}` is a size of the program (a whole number), not a "
                                   f"variable; derivatives are with respect to arrays and "
                                   f"scalars. Known names: {listed(known)}.")
            raise MatcalcError(
                f"`{name}` is not a variable or intermediate of the program."
                + did_you_mean(name, known)
                + (f" Known names: {listed(known)}." if known else "")
            )
        return found


class Lowering:
    """Walks the statements of one source text into a :class:`Program`."""

    def __init__(self, program: Program, source: str,
                 declared_by: Mapping[str, str] | None = None) -> None:
        self.program = program
        self.source = source
        self.labels_allowed = False
        self.declared_by = declared_by or {}
        """The --var text that declared a name, for names declared outside ``source``."""

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
                f"rank-{len(decl.dims)} arrays: matcalc takes at most {MAX_RANK} axes",
                decl.pos)
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

    def dimension(self, value: str | int | tuple[str | int, ...], offset: int) -> Dim:
        """A declared size: a name, a positive integer, or a product of them (``h * k``)."""
        if isinstance(value, tuple):
            return sympy.Mul(*(self.dimension(factor, offset) for factor in value))
        if isinstance(value, int):
            return dim(value)
        if value in self.program.variables or value in self.program.intermediates:
            raise self.error(f"`{value}` is a variable; it cannot also be a dimension", offset)
        return self.program.dims.setdefault(value, dim(value))

    def check_new_name(self, name: str, offset: int) -> None:
        if name in self.program.variables:
            by = self.declared_by.get(name)
            raise self.error(f"`{name}` is already declared as a variable"
                             + (f" (by --var {by!r})" if by else ""), offset)
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
        if e.id == "inf":
            raise self.error("`inf` is only a value of an option (norm's ord); to mask with −∞ "
                             "use a large negative number, as in `where(m, S, -1e9)`", e.pos)
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
        """``x.T`` of a vector or matrix; ``x.mT`` of a matrix or a stack of them."""
        operand = self.expr(e.operand)
        if e.attr == "T" and operand.rank > 2:
            raise self.error(f"`.T` of a rank-{operand.rank} array reverses all its axes in "
                             "NumPy; write `.mT` to transpose each matrix of the stack, or "
                             "swapaxes(x, i, j) / transpose(x, axes)", e.pos)
        if e.attr == "mT" and operand.rank < 2:
            raise self.error("`.mT` transposes matrices (the last two axes); a vector or a "
                             "scalar has none to swap", e.pos)
        return transpose(operand)

    def e_Call(self, e: syntax.Call) -> Node:  # noqa: N802
        signature = FUNCTIONS.get(e.func)
        if e.func in INSTEAD:
            raise self.error(INSTEAD[e.func], e.pos)
        if signature is None:
            what = "a variable" if e.func in self.program.variables else "not a function"
            raise self.error(
                f"`{e.func}` is {what} of matcalc." + did_you_mean(e.func, FUNCTIONS), e.pos,
                hint="Functions: " + ", ".join(sorted(FUNCTIONS)) + ".")
        values = self.bind(e, signature)
        return signature.build(*(values[p] for p in signature.params))

    def bind(self, e: syntax.Call, signature: Signature) -> dict[str, object]:
        """Arguments by parameter name, integers checked, defaults filled in."""
        params, args = signature.params, e.args
        if signature.variadic and len(args) >= len(params):     # einsum(spec, *operands)
            tail = args[len(params) - 1:]
            args = (*args[:len(params) - 1], syntax.List(tuple(tail), tail[0].pos))
        if len(args) > len(params):
            raise self.error(
                f"{e.func} takes at most {len(params)} argument{'s' * (len(params) > 1)} "
                f"({', '.join(params)}), "
                f"got {len(args)}", args[len(params)].pos)
        given: dict[str, tuple[syntax.Expr, int]] = {
            p: (a, a.pos) for p, a in zip(params, args, strict=False)}
        for name, value, offset in e.kwargs:
            if name not in params or name in given:
                problem = "repeats" if name in given else "has no"
                numpy_name = NUMPY_KEYWORDS.get(name)
                advice = (f" matcalc follows NumPy: write `{numpy_name}=`."
                          if numpy_name in params and name not in given
                          else did_you_mean(name, params))
                raise self.error(f"{e.func} {problem} argument `{name}`." + advice, offset)
            given[name] = (value, offset)
        values: dict[str, object] = dict(signature.defaults)
        for name, (value, _) in given.items():
            if name in signature.integers:
                values[name] = self.integer(value, e.func, name, none=name == "axis")
            elif name in signature.flags:
                values[name] = self.flag(value, e.func, name)
            elif name in signature.sizes:
                values[name] = self.size(value, e.func, name)
            elif name in signature.arrays:
                values[name] = self.arrays(value, e.func, name)
            elif name in signature.size_lists:
                values[name] = self.size_list(value, e.func, name)
            elif name in signature.strings:
                values[name] = self.string(value, e.func, name)
            elif name in signature.axis_lists:
                values[name] = self.axis_list(value, e.func, name)
            elif name in dict(signature.options):
                values[name] = self.option(value, e.func, name, dict(signature.options)[name])
            else:
                self.labels_allowed = (e.func, name) in LABELS_ALLOWED
                if isinstance(value, syntax.Name) and value.id == "None":
                    raise self.error(f"{e.func}: `{name}` must be an array or a number, not "
                                     "None", value.pos, NONE_HINTS.get(e.func))
                try:
                    values[name] = self.expr(value)
                finally:
                    self.labels_allowed = False
        missing = [p for p in params if p not in values]
        if missing:
            raise self.error(f"{e.func} needs the argument `{missing[0]}`", e.pos)
        if "axis" in values and values["axis"] is not None and "x" in values:
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
        elementwise = {"max": "maximum", "min": "minimum"}.get(func)
        hint = None
        if elementwise and param == "axis":
            hint = (f"{func}(x, axis) reduces one array, as in NumPy; the elementwise "
                    f"{elementwise} of two arrays is `{elementwise}(a, b)`.")
        raise self.error(f"{func}: `{param}` must be {allowed}", e.pos, hint)

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
                         f"integer{self.not_a_size(e)} (sizes: {sizes})", e.pos)

    def not_a_size(self, e: syntax.Expr) -> str:
        """Why ``e`` is not a size, for a name no shape declares or a negative number."""
        if isinstance(e, syntax.Name):
            hint = did_you_mean(e.id, self.program.dims)
            return f"; `{e.id}` is not the name of a size in any declaration" + (
                f".{hint}" if hint else "")
        if isinstance(e, syntax.UnaryOp) and e.op == "-":
            return "; -1 (a size to infer) is not taken: write the size"
        return ""

    def option(self, e: syntax.Expr, func: str, param: str, allowed: tuple[object, ...]
               ) -> object:
        """One of ``allowed``: a quoted word, an integer, ``inf``, ``-inf`` or ``None``."""
        value = literal_option(e)
        if any(value == a and type(value) is type(a) for a in allowed):
            return value
        choices = ", ".join(option_text(a) for a in allowed)
        if len(allowed) == 1:
            raise self.error(f"{func}: `{param}` can only be {choices}", e.pos,
                             option_hint(e, func, allowed))
        words = [a for a in allowed if isinstance(a, str)]
        hint = did_you_mean(e.value, words) if isinstance(e, syntax.String) else ""
        raise self.error(f"{func}: `{param}` must be one of {choices}." + hint, e.pos,
                         option_hint(e, func, allowed))

    def arrays(self, e: syntax.Expr, func: str, param: str) -> list[Node]:
        """A list of arrays, ``[A, B]``."""
        if not isinstance(e, syntax.List):
            raise self.error(f"{func}: `{param}` is a list of arrays in brackets, as in "
                             f"`{func}([A, B])`", e.pos)
        return [self.expr(item) for item in e.items]

    def size_list(self, e: syntax.Expr, func: str, param: str) -> tuple[Dim, ...]:
        """A list of sizes: names, positive integers and their products (``h * k``)."""
        if not isinstance(e, syntax.List):
            raise self.error(f"{func}: `{param}` is a list of sizes in brackets, as in "
                             f"`{func}(x, [B, T, h, k])`", e.pos)
        return tuple(self.size_product(item, func, param) for item in e.items)

    def size_product(self, e: syntax.Expr, func: str, param: str) -> Dim:
        if isinstance(e, syntax.BinOp) and e.op == "*":
            return (self.size_product(e.left, func, param)
                    * self.size_product(e.right, func, param))
        found = self.size(e, func, param)
        if found is None:
            raise self.error(f"{func}: a size cannot be None", e.pos)
        return found

    def string(self, e: syntax.Expr, func: str, param: str) -> tuple[str, int]:
        """A quoted text and where it starts."""
        if not isinstance(e, syntax.String):
            raise self.error(f'{func}: `{param}` is a quoted text, as in "ij,jk->ik"', e.pos)
        return e.value, e.pos

    def axis_list(self, e: syntax.Expr, func: str, param: str) -> tuple[int, ...] | None:
        """A list of integer literals, ``[0, 2, 1]``, or None."""
        if isinstance(e, syntax.Name) and e.id == "None":
            return None
        if not isinstance(e, syntax.List):
            raise self.error(f"{func}: `{param}` is a list of axes in brackets, as in "
                             f"`{func}(x, [0, 2, 1])`", e.pos)
        return tuple(self.integer(item, func, param) for item in e.items)

    def e_List(self, e: syntax.List) -> Node:  # noqa: N802
        raise self.error("a list is only the arrays joined by concatenate, vstack or hstack, "
                         "as in `vstack([A, B])`", e.pos)

    def e_String(self, e: syntax.String) -> Node:  # noqa: N802
        raise self.error(f'"{e.value}" is a quoted word: it can only be an option of a function, '
                         'as in `norm(X, "fro")` or `gelu(x, approximate="tanh")`', e.pos)

    def flag(self, e: syntax.Expr, func: str, param: str) -> bool:
        """``True`` or ``False``."""
        if isinstance(e, syntax.Name) and e.id in ("True", "False"):
            return e.id == "True"
        raise self.error(f"{func}: `{param}` must be True or False", e.pos)


def names_of(given: str | Sequence[str]) -> list[str]:
    """Names given to the Python API: one name alone (``"W1"``) or a sequence of them; a
    string is one name, not its characters."""
    return [given] if isinstance(given, str) else list(given)


def declare_extra(program: Program, text: str, declared_by: Mapping[str, str]) -> None:
    """The declarations of one --var text, added to ``program`` (``declared_by``: the earlier
    texts' names)."""
    lowering = Lowering(program, text, declared_by)
    for stmt in syntax.parse_program(text).statements:
        if not isinstance(stmt, syntax.Decl):
            raise MatcalcError("it holds a statement: --var gives declarations only, such as "
                               "'x: [n]'")
        lowering.declare(stmt)


def parse(source: str, declarations: Sequence[str] = ()) -> Program:
    """Parse and type-check a program; ``declarations`` are extra ``NAME: [dims]`` texts."""
    program = Program(source)
    declared_by: dict[str, str] = {}
    for text in declarations:
        if ":" not in text:
            raise MatcalcError(f"--var expects a declaration such as 'x: [n]' (NAME: [dims]), "
                               f"got {text[:60]!r}")
        before = set(program.variables)
        try:
            declare_extra(program, text, declared_by)
        except MatcalcError as error:
            error.message = f"in --var {text[:60]!r}: {error.message}"
            raise
        declared_by.update(dict.fromkeys(set(program.variables) - before, text))
    lowering = Lowering(program, source, declared_by)
    for stmt in syntax.parse_program(source).statements:
        lowering.statement(stmt)
    if program.function is None:
        raise MatcalcError(
            "the program has no expression to differentiate; end it with an expression "
            "such as `x @ A @ x` or an assignment such as `L = mse(pred, y)`"
        )
    return program.recognised(recognise)
