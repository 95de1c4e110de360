"""Typed tensor IR: interned nodes whose shapes are tuples of symbolic dimensions.

A node is ``(op, args, attrs)`` with a shape computed and checked when it is made. Nodes are
hash-consed: building the same expression twice gives the same object, so equality is identity
and shared subexpressions are shared automatically (the code generator relies on this).

Shapes have rank 0 (scalar), 1 (vector, NumPy semantics) or 2 (matrix). A dimension is a SymPy
positive integer ``Symbol`` (``n``) or ``Integer`` (``3``).

This module makes nodes exactly as asked; the canonical algebra (constant folding, like terms,
``(A + Aᵀ) x``) lives in :mod:`matcalc.core.simplify`, whose constructors are the operators.
"""

from __future__ import annotations

import collections
import functools
import itertools
import re
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import sympy

from matcalc.errors import MatcalcError

Dim = sympy.Expr
Shape = tuple[Dim, ...]

ONE = sympy.Integer(1)


class ShapeError(Exception):
    """A shape clash; the message names both shapes, the location is added by the caller."""


def dim(value: str | int | sympy.Expr) -> Dim:
    """A dimension: a positive integer symbol for names, an Integer for numbers."""
    if isinstance(value, sympy.Expr):
        return value
    if isinstance(value, int):
        return sympy.Integer(value)
    return sympy.Symbol(value, integer=True, positive=True)


def shape_str(shape: Shape) -> str:
    """``[n, m]`` as the user writes it (products of sizes as ``n·p``, powers as ``n²``)."""
    return "[" + ", ".join(dim_str(d) for d in shape) + "]"


def dim_str(d: Dim) -> str:
    text = str(d).replace("**2", "²").replace("**3", "³")
    return text.replace("*", "·")


def size(shape: Shape) -> sympy.Expr:
    """Number of entries, symbolic."""
    return sympy.expand(sympy.Mul(*shape)) if shape else ONE


def one_entry(shape: Shape) -> bool:
    """Whether an array of ``shape`` holds one entry whatever the sizes: a scalar, [1], [1, 1]."""
    return all(d == 1 for d in shape)


# ----------------------------------------------------------------------------------------------
# Nodes


_COUNTER = itertools.count()
_INTERN: weakref.WeakValueDictionary[tuple, Node] = weakref.WeakValueDictionary()


class Node:
    """An interned IR node. ``args`` are nodes, ``attrs`` its parameters: a frozen record of
    the fields its operation names (``sum``'s ``attrs.axis``, ``attrs.keepdims``)."""

    __slots__ = ("op", "args", "attrs", "shape", "serial", "transposed", "__weakref__")

    op: str
    args: tuple[Node, ...]
    attrs: tuple
    shape: Shape
    serial: int

    def __new__(cls, op: str, args: tuple[Node, ...], attrs: tuple, shape: Shape) -> Node:
        key = (op, tuple(id(a) for a in args), attrs, shape)
        found = _INTERN.get(key)
        if found is not None:
            return found
        self = object.__new__(cls)
        self.op, self.args, self.shape = op, args, shape
        self.attrs = OPERATIONS[op].record._make(attrs)
        self.serial = next(_COUNTER)
        self.transposed: Node | None = None
        """Its transpose once asked for (``simplify.transpose``): kept on the node, so that
        both are freed together when nothing else holds them."""
        _INTERN[key] = self
        return self

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:      # the printers replace it with one showing the formula
        return f"<{self.op} {shape_str(self.shape)} #{self.serial}>"

    # ``a + b``, ``a - b``, ``-a``, ``a * b``, ``a / b``, ``a ** k``, ``a @ b`` and ``a.T`` are
    # the canonical constructors of matcalc.core.simplify, which installs them
    # (``install_operators``): this module makes nodes exactly as asked and imports nothing of
    # the later algebra.
    __add__: Callable[[Node, Operand], Node]
    __radd__: Callable[[Node, Operand], Node]
    __sub__: Callable[[Node, Operand], Node]
    __rsub__: Callable[[Node, Operand], Node]
    __neg__: Callable[[Node], Node]
    __mul__: Callable[[Node, Operand], Node]
    __rmul__: Callable[[Node, Operand], Node]
    __truediv__: Callable[[Node, Operand], Node]
    __rtruediv__: Callable[[Node, Operand], Node]
    __pow__: Callable[[Node, Operand], Node]
    __matmul__: Callable[[Node, Node], Node]
    T: Node


Operand = Node | int | sympy.Expr


def lift(value: Operand) -> Node:
    """A node for a node, a Python number or a SymPy scalar."""
    return value if isinstance(value, Node) else const(value)


# ----------------------------------------------------------------------------------------------
# Shape rules


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting with symbolic dims: equal, or one of them is 1."""
    if all(s == shapes[0] for s in shapes[1:]):
        return tuple(shapes[0])
    return _broadcast_shapes(tuple(map(tuple, shapes)))


@functools.lru_cache(maxsize=4096)
def _broadcast_shapes(shapes: tuple[Shape, ...]) -> Shape:
    rank = max(len(s) for s in shapes)
    padded = [(ONE,) * (rank - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded, strict=True):
        sizes = {d for d in dims if d != ONE}
        if len(sizes) > 1:
            raise ShapeError(
                " and ".join(shape_str(s) for s in shapes)
                + " do not broadcast ("
                + " ≠ ".join(str(d) for d in sorted(sizes, key=str))
                + ")"
            )
        out.append(sizes.pop() if sizes else ONE)
    return tuple(out)


def matmul_shape(a: Shape, b: Shape) -> Shape:
    """NumPy ``@`` on vectors and matrices, and on stacks of matrices (the leading axes
    broadcast: [B, T, d] @ [d, k] is [B, T, k])."""
    if not a or not b:
        raise ShapeError(f"{shape_str(a)} and {shape_str(b)}: `@` needs vectors or matrices")
    if len(a) > 2 or len(b) > 2:
        return stacked_matmul_shape(a, b)
    inner_a = a[-1]
    inner_b = b[0] if len(b) == 1 else b[-2]
    if inner_a != inner_b:
        raise ShapeError(
            f"{shape_str(a)} and {shape_str(b)} do not align ({inner_a} ≠ {inner_b})"
        )
    return a[:-1] + b[1:] if len(b) == 2 else a[:-1]


def stacked_matmul_shape(a: Shape, b: Shape) -> Shape:
    """``@`` with a stack of matrices on either side: matrix by matrix, leading axes broadcast;
    a vector is a row on the left, a column on the right, and its axis is dropped."""
    inner_a, inner_b = a[-1], b[0] if len(b) == 1 else b[-2]
    if inner_a != inner_b:
        raise ShapeError(f"{shape_str(a)} and {shape_str(b)} do not align "
                         f"({inner_a} ≠ {inner_b})")
    if len(a) == 1:
        return stacked_matmul_shape((ONE, *a), b)[:-2] + (b[-1],)
    if len(b) == 1:
        return stacked_matmul_shape(a, (*b, ONE))[:-1]
    return broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])


def square(shape: Shape, what: str) -> Dim:
    """The size of a square matrix, or a ShapeError naming ``what``."""
    if len(shape) > 2 and shape[-1] == shape[-2]:
        traces = (f"; the traces of a stack are sum(sum(A * eye({shape[-1]}), axis=-1), axis=-1)"
                  if what == "trace" else "")
        raise ShapeError(f"{what} needs a square matrix, got {shape_str(shape)}: a stack of "
                         f"square matrices, which {what} does not take (only products, "
                         f"transposes and entrywise functions work matrix by matrix){traces}")
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ShapeError(f"{what} needs a square matrix, got {shape_str(shape)}")
    return shape[0]


def normalise_axis(axis: int | None, rank: int) -> int | None:
    """A non-negative axis (or None), checked against the rank."""
    if axis is None:
        return None
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for a rank-{rank} array")
    return axis % rank


def reduced_shape(shape: Shape, axis: int | None, keepdims: bool) -> Shape:
    """Shape after summing over ``axis`` (all axes for None)."""
    axes = range(len(shape)) if axis is None else (axis,)
    if keepdims:
        return tuple(ONE if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


# ----------------------------------------------------------------------------------------------
# Operations: everything about each one in one record, registered once

ShapeRule = Callable[[Sequence[Node], tuple], Shape]
Rule = Callable[..., Node]

METHOD = "method"
"""A facet written by a method of its own (``Printer.p_<op>``, ``Emitter.e_<op>``) because no
template says it: sums, products, broadcasts, softmax with its axis."""


@dataclass(frozen=True)
class OpDef:
    """One operation: the shape of its result, its vector-Jacobian rules, what it is, how it
    prints and how each array library computes it. Registered once, with :func:`define`.

    Code templates write ``{0}`` for an argument, ``{p0}`` for it parenthesised unless atomic,
    ``{axis}``/``{k}`` for a parameter, ``{xp}`` for the array module, ``{math}`` for Python's
    math module and ``{_name}`` for a helper function of the generated module.
    """

    name: str
    shape: ShapeRule
    """``(args, attrs) -> shape``; raises ShapeError when the arguments do not fit."""
    vjp: Sequence[Rule] = ()
    """One rule per argument: ``(g, out, *args, **params) -> contribution``."""
    params: tuple[str, ...] = ()
    """The names of the node's ``attrs``, in order (``axis``, ``keepdims``)."""
    elementwise: bool = False
    """Applied entry by entry, arguments broadcast together."""
    linear: bool | tuple[int, ...] = False
    """Scalars factor out of it: ``diag(2 x) = 2 diag(x)``; a tuple names the arguments it is
    linear in, the others kept (``solve(A, 2 b) = 2 solve(A, b)``, but not in A)."""
    symmetric: bool = False
    """Symmetric matrix arguments (and scalars) give a symmetric matrix."""
    kink: str | None = None
    """Where its derivative jumps, which checks draw inputs away from: ``zero`` (its first
    argument at 0: relu, abs), ``equal`` (its two arguments equal: maximum), ``bounds`` (its
    first argument at either of the others: clip) or ``tie`` (two entries tied for the largest
    along its axis: max)."""
    domain: str | None = None
    """What its first argument must be: ``positive`` (log), ``small`` (tan, |x| < π/2) or
    ``well_conditioned`` (inv)."""
    internal: bool = False
    """Made by derivative rules only; programs cannot call it."""
    vec_form: bool = False
    """Made only to write derivatives in vec/Kronecker form; never itself differentiated."""
    text: str = METHOD
    """Its name in printed text (``tr``), or METHOD."""
    latex: str = METHOD
    """Its name in LaTeX (``\\operatorname{tr}``), or METHOD."""
    numpy: str = METHOD
    """How NumPy computes it: a template, or METHOD."""
    torch: str = METHOD
    """How PyTorch computes it: a template, or METHOD."""
    tensor_args: bool = False
    """PyTorch's function takes tensors only (``torch.maximum(x, 0.5)`` is an error)."""
    scalar: Callable[..., sympy.Expr] | None = None
    """An elementwise function's meaning for real numbers, in SymPy."""
    record: type[tuple] = tuple
    """The frozen record of its parameters (``sum(axis=0, keepdims=True)``), made by define."""
    primitives: Callable[..., Node] | None = None
    """A composite as the primitives it is made of, which generated code computes (so that
    common subexpressions are shared: gelu(x) = x Φ(x), whose Φ(x) the backward pass reuses).
    It receives the arguments, then the parameters by name."""
    kernel: Callable[[Node], bool] | None = None
    """For a composite torch has a kernel for (its emitter's method ``e_<op>``), the nodes it
    applies to (torch's layer_norm normalises the last axis); the others, and the other
    dialects, compute its primitives."""


OPERATIONS: dict[str, OpDef] = {}
"""Every operation by name. The leaves are defined here, the rest in :mod:`matcalc.core.rules`,
which the package imports first."""


def define(name: str, shape: ShapeRule, vjp: Sequence[Rule] = (), **facets) -> OpDef:
    """Register the operation ``name``. A function printed ``name(…)`` needs no ``text``; its
    LaTeX defaults to ``\\operatorname{name}`` and its torch code to its NumPy template."""
    facets.setdefault("text", name)
    if facets["text"] != METHOD:
        facets.setdefault("latex", operator_name(name))
    facets.setdefault("torch", facets.get("numpy", METHOD))
    if name in OPERATIONS:
        raise ValueError(f"operation {name} is defined twice")
    record = collections.namedtuple(name, facets.get("params", ()))
    definition = OPERATIONS[name] = OpDef(name, shape, vjp, record=record, **facets)
    return definition


def operator_name(name: str) -> str:
    """``\\operatorname{log\\_softmax}``: a function without a LaTeX command of its own."""
    return r"\operatorname{" + name.replace("_", r"\_") + "}"


def params(node: Node) -> dict[str, object]:
    """The node's parameters by name: ``{"axis": 0, "keepdims": True}`` for a sum."""
    return node.attrs._asdict()


def same_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    return args[0].shape


def broadcast_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    return broadcast_shapes(*(a.shape for a in args))


def scalar_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    return ()


def attr_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    return attrs[-1]


def product_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    return matmul_shape(args[0].shape, args[1].shape)


def transpose_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """A matrix transposed; a stack of matrices each transposed (NumPy's ``.mT``)."""
    shape = args[0].shape
    return shape[::-1] if len(shape) <= 2 else shape[:-2] + (shape[-1], shape[-2])


def permute_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """The axes in the order ``axes`` gives (``np.transpose(x, axes)``)."""
    (axes,) = attrs
    shape = args[0].shape
    if sorted(axes) != list(range(len(shape))):
        raise ShapeError(f"transpose: axes {list(axes)} are not a permutation of the "
                         f"{len(shape)} axes of a {shape_str(shape)} array")
    return tuple(shape[k] for k in axes)


def square_to_scalar(what: str) -> ShapeRule:
    def rule(args: Sequence[Node], attrs: tuple) -> Shape:
        square(args[0].shape, what)
        return ()

    return rule


def square_to_same(what: str) -> ShapeRule:
    def rule(args: Sequence[Node], attrs: tuple) -> Shape:
        square(args[0].shape, what)
        return args[0].shape

    return rule


def sum_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    axis, keepdims = attrs
    return reduced_shape(args[0].shape, axis, keepdims)


def expand_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    (axis,) = attrs
    shape = args[0].shape
    return shape[:axis] + (ONE,) + shape[axis:]


def broadcast_to_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    (target,) = attrs
    if broadcast_shapes(args[0].shape, target) != target:
        raise ShapeError(f"{shape_str(args[0].shape)} does not broadcast to {shape_str(target)}")
    return target


def cholesky_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """``cholesky(S)``: S square and symmetric (declared, or symmetric by construction)."""
    shape = args[0].shape
    square(shape, "cholesky")
    if not is_symmetric(definition_of(args[0])):
        raise ShapeError("cholesky needs a symmetric matrix: declare it `S: [n, n] symmetric` "
                         "or build it symmetric, e.g. A @ A.T + eye(n)")
    return shape


def definition_of(node: Node) -> Node:
    """A named intermediate's definition (through names of names); any other node itself."""
    while node.op == "named":
        node = node.args[0]
    return node


def onehot_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """``onehot(y, C)``: integer labels y of shape [N] (or []) give rows [N, C]."""
    if not is_labels(definition_of(args[0])):
        raise ShapeError("onehot needs integer class labels: declare them `y: [N] labels`")
    return args[0].shape + (attrs[0],)


def reshape_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """``x.reshape(shape)``: the same entries, so the sizes must multiply out alike."""
    (shape,) = attrs
    before = args[0].shape
    if sympy.expand(size(before) - size(shape)) != 0:
        raise ShapeError(f"reshape: {shape_str(before)} has {dim_str(size(before))} entries, "
                         f"{shape_str(shape)} has {dim_str(size(shape))}; declare the sizes so "
                         "that they multiply out (e.g. `X: [B, T, h * k]` to split the last "
                         "axis into h × k)")
    return tuple(shape)


def take_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """``take(E, y, axis=0)``: row y of E for each label: [*y.shape, *E.shape[1:]]."""
    table, labels = args
    if not is_labels(definition_of(labels)):
        raise ShapeError("take needs integer labels to look up: declare them `y: [N] labels`")
    if not table.shape:
        raise ShapeError("take looks rows up in a vector or matrix, not a scalar")
    return labels.shape + table.shape[1:]


def scatter_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """Rows of ``g`` added into a zero table of ``rows`` rows at their labels."""
    g, labels = args
    return (attrs[0], *g.shape[labels.rank:])


def matrix_shape(what: str) -> ShapeRule:
    """Any matrix, its shape kept (tril, triu)."""
    def rule(args: Sequence[Node], attrs: tuple) -> Shape:
        if args[0].rank != 2:
            raise ShapeError(f"{what} needs a matrix, got {shape_str(args[0].shape)}")
        return args[0].shape

    return rule


def solve_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """``solve(A, B)``: A square n×n, B [n] or [n, k]; the result is shaped like B."""
    a, b = (x.shape for x in args)
    n = square(a, "solve(A, B)")
    if len(b) not in (1, 2) or b[0] != n:
        raise ShapeError(f"B needs the shape [{dim_str(n)}] or [{dim_str(n)}, k] "
                         f"for A of shape {shape_str(a)}, got {shape_str(b)}")
    return b


def diag_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    shape = args[0].shape
    if len(shape) == 1:
        return (shape[0], shape[0])
    if len(shape) == 2:
        return (square(shape, "diag"),)
    raise ShapeError(f"diag needs a vector or a square matrix, got {shape_str(shape)}")


def concat_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """Vectors or matrices joined along ``axis``: equal elsewhere, sizes added along it."""
    (axis,) = attrs
    first = args[0].shape
    for other in args[1:]:
        if other.rank != len(first) or any(
                d != e for k, (d, e) in enumerate(zip(first, other.shape, strict=True))
                if k != axis):
            raise ShapeError(f"concatenate along axis {axis}: {shape_str(first)} and "
                             f"{shape_str(other.shape)} do not fit (all sizes but the joined "
                             "axis must agree)")
    return with_length(first, axis, sympy.Add(*(a.shape[axis] for a in args)))


def slice_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """Entries ``start`` … ``stop − 1`` along ``axis``."""
    axis, start, stop = attrs
    return with_length(args[0].shape, axis, stop - start)


def with_length(shape: Shape, axis: int, length: sympy.Expr) -> Shape:
    """``shape`` with ``length`` entries along ``axis``."""
    return tuple(length if k == axis else d for k, d in enumerate(shape))


def block_sums_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """One sum per block: [m, n] of an [m·p, n·q] matrix of p×q blocks."""
    rows, cols, _, _ = attrs
    return (rows, cols)


def sum_of_blocks_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """The blocks added up: [p, q]."""
    _, _, block_rows, block_cols = attrs
    return (block_rows, block_cols)


def einsum_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """The output of an einsum: each output index's size, read off the operands."""
    (spec,) = attrs
    inputs, output = spec.split("->")
    sizes = index_sizes(inputs.split(","), [a.shape for a in args])
    return tuple(sizes[c] for c in output)


def index_sizes(subscripts: Sequence[str], shapes: Sequence[Shape]) -> dict[str, Dim]:
    """The size of each index letter; a ShapeError where one letter means two sizes."""
    if len(subscripts) != len(shapes):
        raise ShapeError(f"einsum: {len(subscripts)} operand subscripts for {len(shapes)} "
                         "operands")
    sizes: dict[str, Dim] = {}
    for letters, shape in zip(subscripts, shapes, strict=True):
        if len(letters) != len(shape):
            raise ShapeError(f"einsum: `{letters}` names {len(letters)} axes of a "
                             f"{shape_str(shape)} array")
        for c, d in zip(letters, shape, strict=True):
            if sizes.setdefault(c, d) != d:
                raise ShapeError(f"einsum: index {c} is {dim_str(sizes[c])} in one operand "
                                 f"and {dim_str(d)} in another")
    return sizes


def spectrum_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """The n eigenvalues of a square matrix."""
    return (square(args[0].shape, "eigvalsh"),)


def outer_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    a, b = (x.shape for x in args)
    if len(a) != 1 or len(b) != 1:
        raise ShapeError(f"outer needs two vectors, got {shape_str(a)} and {shape_str(b)}")
    return (a[0], b[0])


def gram_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    """Xᵀ diag(d) X + s I for X [N, D], d [N] and a number s: [D, D]."""
    x, d, s = (a.shape for a in args)
    if len(x) != 2 or d != x[:1] or s:
        raise ShapeError(f"Xᵀ diag(d) X + s I needs a matrix, a vector of its rows and a number,"
                         f" got {shape_str(x)}, {shape_str(d)} and {shape_str(s)}")
    return (x[1], x[1])


def as_matrix(shape: Shape) -> Shape:
    """A vector as a column, a scalar as 1×1: how vec and ⊗ see arrays."""
    return tuple(shape) + (ONE,) * (2 - len(shape))


def kron_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    (a0, a1), (b0, b1) = (as_matrix(x.shape) for x in args)
    return (a0 * b0, a1 * b1)


def vec_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    return (size(args[0].shape),)


def softmax_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    if not args[0].shape:
        raise ShapeError("softmax of a scalar is always 1; it needs a vector or a matrix")
    return args[0].shape


def logsumexp_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    (axis,) = attrs
    return reduced_shape(args[0].shape, axis, False)


def same_pair_to_scalar(what: str) -> ShapeRule:
    def rule(args: Sequence[Node], attrs: tuple) -> Shape:
        a, b = (x.shape for x in args)
        if a != b:
            raise ShapeError(
                f"{what} needs both arguments of one shape, got {shape_str(a)} and "
                f"{shape_str(b)} (NumPy would broadcast them to a larger array)"
            )
        if not a:
            raise ShapeError(f"{what} needs vectors or matrices, got scalars")
        return ()

    return rule


def cross_entropy_shape(args: Sequence[Node], attrs: tuple) -> Shape:
    z, y = args
    if not has_property(y, "labels"):
        return same_pair_to_scalar("softmax_cross_entropy")(args, ())
    if not z.shape or y.shape != z.shape[:-1]:
        wanted = "[" + ", ".join([*map(dim_str, y.shape), "C"]) + "]"
        raise ShapeError(f"softmax_cross_entropy with integer labels of shape "
                         f"{shape_str(y.shape)} needs logits of shape {wanted} (C classes), "
                         f"got {shape_str(z.shape)}")
    return ()


def make(op: str, args: Sequence[Node] = (), attrs: tuple = ()) -> Node:
    """The node ``op(args; attrs)`` exactly as given, its shape checked (ShapeError); sizes
    that are sums or products expanded, so that n·(m + p) and m·n + n·p are one size."""
    args = tuple(args)
    shape = OPERATIONS[op].shape(args, attrs)
    if not all(d.is_Atom for d in shape):
        shape = tuple(d if d.is_Atom else sympy.expand(d) for d in shape)
    return Node(op, args, attrs, shape)


# ----------------------------------------------------------------------------------------------
# Leaves


def var(name: str, shape: Shape, symmetric: bool = False, properties: tuple[str, ...] = ()
        ) -> Node:
    """A declared variable: ``symmetric`` (a square matrix equal to its transpose), ``onehot``
    or ``probabilities`` (rows along the last axis sum to 1), ``labels`` (integer classes)."""
    if symmetric:
        square(tuple(shape), "a symmetric variable")
        properties = ("symmetric", *properties)
    return make("var", (), (name, tuple(properties), tuple(shape)))


def has_property(node: Node, name: str) -> bool:
    """A variable declared with the property ``name`` (``symmetric``, ``onehot`` …); a variable
    merely *called* ``symmetric`` has none."""
    return node.op == "var" and name in node.attrs.properties


def rows_sum_to_one(node: Node, free: frozenset[Node] = frozenset()) -> bool:
    """Every row (along the last axis) provably sums to 1: declared one-hot or probability
    targets, ``onehot(y, C)`` of labels, a softmax over the last axis, or an affine mix of them
    (label smoothing's 0.9 Y + 0.1 / C)."""
    return bool(node.shape) and line_total(node, node.rank - 1, free) == 1


def line_total(node: Node, axis: int, free: frozenset[Node] = frozenset()) -> sympy.Expr | None:
    """The number every line of ``node`` along ``axis`` (non-negative) provably sums to, else
    None: 1 for stochastic rows (declared, one-hot, a softmax along the axis, the identity's),
    n c for a number c, and sums and multiples by numbers of those. The ``free`` nodes
    (variables of a derivative) are unknown, and so is all that reads them."""
    while node.op == "named" and node not in free:
        node = node.args[0]
    if node in free:
        return None
    if node.op in ("var", "onehot") and axis == node.rank - 1:
        return sympy.Integer(1) if node.op == "onehot" or has_property(
            node, "onehot") or has_property(node, "probabilities") else None
    if node.op == "identity":
        return sympy.Integer(1)
    if node.op == "softmax":
        own = node.attrs.axis
        return sympy.Integer(1) if (own is None and node.rank == 1) or (
            own is not None and normalise_axis(own, node.rank) == axis) else None
    if node.op not in ("add", "mul"):
        return None
    totals = [line_total(a, axis, free) if a.shape == node.shape else
              None if const_value(a) is None else const_value(a) * node.shape[axis]
              for a in node.args]
    if node.op == "add":
        return None if None in totals else sympy.Add(*totals)
    numbers = [const_value(a) for a in node.args]
    varying = [t for t, c in zip(totals, numbers, strict=True) if c is None]
    if len(varying) != 1 or varying[0] is None:
        return None
    return sympy.Mul(varying[0], *(c for c in numbers if c is not None))


def is_labels(node: Node) -> bool:
    """A variable holding integer class labels."""
    return has_property(node, "labels")


def class_counts(root: Node) -> dict[str, Dim]:
    """For each variable of integer labels under ``root``: its classes, the logits' last size."""
    found = {node.args[1].attrs.name: node.args[0].shape[-1] for node in postorder([root])
             if node.op == "softmax_cross_entropy" and is_labels(node.args[1])}
    found |= {node.args[1].attrs.name: node.args[0].shape[0] for node in postorder([root])
              if node.op == "take" and node.args[1].op == "var"}
    return found | {node.args[0].attrs.name: node.attrs.classes for node in postorder([root])
                    if node.op == "onehot" and node.args[0].op == "var"}


def matmul_chain(node: Node) -> list[Node]:
    """The factors of a product of matrices, ``A (B C)`` and ``(A B) C`` alike."""
    if node.op != "matmul" or node.rank != 2:
        return [node]
    return [f for a in node.args for f in matmul_chain(a)]


def transposed_of(a: Node, b: Node) -> bool:
    """``b`` is ``aᵀ`` (or both are one symmetric matrix)."""
    return (b.op == "transpose" and b.args[0] is a or a.op == "transpose" and a.args[0] is b
            or a is b and is_symmetric(a))


def palindromic(factors: list[Node]) -> bool:
    """F₁ … Fₖ with Fᵢ = Fₖ₊₁₋ᵢᵀ and a symmetric middle: a symmetric product."""
    k = len(factors)
    pairs = all(transposed_of(factors[i], factors[k - 1 - i]) for i in range(k // 2))
    return pairs and (k % 2 == 0 or is_symmetric(factors[k // 2]))


_SYMMETRIC: weakref.WeakKeyDictionary[Node, bool] = weakref.WeakKeyDictionary()


def is_symmetric(node: Node) -> bool:
    """Provably equal to its transpose (symmetric variables and what keeps them so)."""
    found = _SYMMETRIC.get(node)
    if found is None:
        found = _SYMMETRIC[node] = _symmetric(node)
    return found


def _symmetric(node: Node) -> bool:
    if node.rank != 2 or node.shape[0] != node.shape[1]:
        return False
    if node.op == "var":
        return has_property(node, "symmetric")
    if node.op in ("diag", "sym"):                # diag(v), (X + Xᵀ)/2
        return True
    if node.op == "broadcast":
        return not node.args[0].shape
    if node.op == "matmul":                       # A B Aᵀ with B symmetric, A Aᵀ, …
        return palindromic(matmul_chain(node))
    if node.op == "outer":
        return node.args[0] is node.args[1]
    if node.op == "add":                          # A + Aᵀ + S: terms pair with their transposes
        return all(not a.shape or is_symmetric(a) or any(transposed_of(a, b) for b in node.args)
                   for a in node.args)
    if OPERATIONS[node.op].symmetric:
        return all(is_symmetric(a) or not a.shape for a in node.args)
    return False


OWN_PRINTER = {"text": METHOD, "latex": METHOD}
"""Printed by a printer method of its own (``p_<op>``): a symbol (``+``, ``Xᵀ``, ``X⁻¹``, ``𝟙``)
or a call that shows its parameters (``sum(x, axis=0)``)."""
define("var", attr_shape, params=("name", "properties", "shape"), **OWN_PRINTER)
define("const", scalar_shape, params=("value",), **OWN_PRINTER)
define("zeros", attr_shape, params=("shape",), symmetric=True, **OWN_PRINTER)
define("identity", lambda args, attrs: (attrs[0], attrs[0]), params=("n",), symmetric=True,
       **OWN_PRINTER)
define("delta", attr_shape, params=("label", "name", "shape"), **OWN_PRINTER)
define("named", same_shape, [lambda g, out, x, name: g], params=("name",), numpy="{0}",
       **OWN_PRINTER)                          # code: its name once bound, else its definition
"""The leaves, and a named intermediate, which passes its adjoint through."""


def const(value: int | sympy.Expr) -> Node:
    """A scalar constant: a number or an expression in dimensions (``1/N``) and ``pi``."""
    if isinstance(value, int) and -8 <= value <= 8:     # the most common: made once
        return SMALL_CONSTANTS[value]
    return checked_const(value)


@functools.lru_cache(maxsize=8192)
def checked_const(value: int | sympy.Expr) -> Node:
    value = sympy.sympify(value)
    if value.has(sympy.zoo, sympy.nan, sympy.oo):
        raise MatcalcError("a constant in the program divides by zero (or is infinite)")
    if value.is_number and value.is_real is False:    # (−2)^(n/2) is real for even n
        raise MatcalcError(f"a constant in the program is not a real number: it is "
                           f"{not_real(value)}; matcalc computes with real numbers only")
    return make("const", (), (value,))


def not_real(value: sympy.Expr) -> str:
    """A complex number as an error message names it (a negative number's fractional power,
    the log of one)."""
    shown = re.sub(r"(?<!\*)\*(?!\*)", " ", sympy.sstr(value))          # 2*I as 2 I
    return shown + (", I being √−1" if value.has(sympy.I) else " (a negative number's "
                    "fractional power, which NumPy gives as nan)")


SMALL_CONSTANTS = {k: checked_const(k) for k in range(-8, 9)}


def zeros(shape: Shape) -> Node:
    """The zero array of ``shape``."""
    return make("zeros", (), (tuple(shape),))


def identity(n: Dim) -> Node:
    """The n×n identity matrix."""
    return make("identity", (), (n,))


def named(name: str, definition: Node) -> Node:
    """A named intermediate: printed by its name, computed once."""
    return make("named", (definition,), (name,))


def delta(label: int, name: str, shape: Shape) -> Node:
    """The error signal δ<label> = ∂f/∂<name>, as a leaf in a derivation's later steps."""
    return make("delta", (), (label, name, tuple(shape)))


def const_value(node: Node) -> sympy.Expr | None:
    """The value of a constant node, else None."""
    return node.attrs.value if node.op == "const" else None


def is_zero(node: Node) -> bool:
    return node.op == "zeros" or const_value(node) == 0


# ----------------------------------------------------------------------------------------------
# Traversal


def postorder(roots: Sequence[Node], stop: Callable[[Node], bool] = lambda n: False) -> list[Node]:
    """Every node reachable from ``roots``, children before parents, without recursion.

    Nodes for which ``stop`` is true are listed but not descended into.
    """
    seen: set[int] = set()
    order: list[Node] = []
    stack: list[tuple[Node, Iterator[Node]]] = []
    for root in roots:
        if id(root) in seen:
            continue
        seen.add(id(root))
        stack.append((root, iter(() if stop(root) else root.args)))
        while stack:
            node, children = stack[-1]
            for child in children:
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, iter(() if stop(child) else child.args)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def depends_on(roots: Sequence[Node], targets: set[Node]) -> set[Node]:
    """The nodes under ``roots`` whose value depends on one of ``targets``."""
    result: set[Node] = set()
    for node in postorder(roots):
        if node in targets or any(a in result for a in node.args):
            result.add(node)
    return result
