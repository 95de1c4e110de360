"""The simplifier: canonical constructors that keep every expression in textbook form.

Every node the derivative rules build goes through these constructors (the operator overloads
of :class:`matcalc.core.ir.Node` call them), so results come out simplified as they are built, in
time linear in the size of the expression DAG:

- constants folded, ``1·x``, ``x + 0``, ``x¹``, ``(Xᵀ)ᵀ``, ``I X`` removed;
- like terms merged (``x + x = 2 x``), equal bases merged (``‖x‖ ‖x‖⁻¹ = 1``);
- scalars pulled out of matrix products (``(c A) B = c (A B)``);
- transposes pushed to the leaves (``(A B)ᵀ = Bᵀ Aᵀ``), ``x A`` for a vector written ``Aᵀ x``;
- common factors collected (``A x + Aᵀ x = (A + Aᵀ) x``).

The user's own program is not rewritten: named intermediates are kept as written.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import sympy

from matcalc.core.ir import (
    ONE,
    OPERATIONS,
    Node,
    Shape,
    ShapeError,
    as_matrix,
    broadcast_shapes,
    concat_shape,
    const,
    const_value,
    einsum_shape,
    is_symmetric,
    is_zero,
    lift,
    make,
    matmul_shape,
    normalise_axis,
    not_real,
    reduced_shape,
    size,
    with_length,
    zeros,
)
from matcalc.errors import MatcalcError

MAX_CONSTANT_BITS = 4096


def zero_like(shape: Shape) -> Node:
    """Scalar 0 or the zero array."""
    return zeros(shape) if shape else const(0)


def broadcast_to(node: Node, shape: Shape) -> Node:
    """``node`` broadcast to ``shape`` when it is smaller (a broadcast broadcast once)."""
    if node.shape == shape:
        return node
    if node.op == "broadcast":
        node = node.args[0]
    return make("broadcast", (node,), (shape,))


def strip_broadcast(node: Node) -> Node:
    """The value under a ``broadcast`` (NumPy broadcasting restores it where it is used)."""
    return node.args[0] if node.op == "broadcast" else node


# ----------------------------------------------------------------------------------------------
# Sums


def split_coefficient(term: Node) -> tuple[sympy.Expr, Node | None]:
    """``c · core`` with ``c`` the constant factor; core None for a pure constant."""
    value = const_value(term)
    if value is not None:
        return value, None
    if term.op == "mul" and term.args[0].op == "const":
        rest = term.args[1:]
        return const_value(term.args[0]), rest[0] if len(rest) == 1 else make("mul", rest)
    return ONE, term


def scale(coefficient: sympy.Expr, core: Node | None) -> Node:
    """``coefficient · core`` (a constant when core is None)."""
    if core is None:
        return const(coefficient)
    return mul(const(coefficient), core)


def add(*terms: Node) -> Node:
    """Elementwise sum with NumPy broadcasting, like terms merged, common factors collected."""
    shape = broadcast_shapes(*(t.shape for t in terms))
    coefficients: dict[Node | None, sympy.Expr] = {}
    for term in flatten("add", terms):
        if is_zero(term):
            continue
        coefficient, core = split_coefficient(strip_broadcast(term))
        coefficients[core] = coefficients.get(core, 0) + coefficient
    merged = [scale(c, core) for core, c in coefficients.items() if c != 0]
    merged = collect_common_scalars(merged)
    merged = collect_common_factor(merged, side=1)
    merged = collect_common_factor(merged, side=0)
    if not merged:
        return zero_like(shape)
    if len(merged) == 1:
        return broadcast_to(merged[0], shape)
    return broadcast_to(make("add", sorted(merged, key=lambda n: n.serial)), shape)


FLATTEN_LIMIT = 8
"""Nested sums and products are merged up to this many terms, so that chains like
``g ⊙ a + g`` with a shared ``g`` grow linearly, not quadratically, with depth."""


def flatten(op: str, nodes: Sequence[Node]) -> list[Node]:
    """Arguments of nested ``op`` nodes (small ones), in order."""
    out: list[Node] = []
    for node in nodes:
        inner = strip_broadcast(node)
        if inner.op == op and len(inner.args) <= FLATTEN_LIMIT:
            out.extend(flatten(op, inner.args))
        else:
            out.append(node)
    return out


def collect_common_scalars(terms: list[Node]) -> list[Node]:
    """``s A x + s B x = s (A x + B x)`` for arrays sharing the same data-scalar factors."""
    groups: dict[tuple[Node, ...], list[Node]] = {}
    for term in terms:
        scalars, rest = split_scalars(term)
        data = tuple(f for f in scalars if f.op != "const")
        if data and term.shape:
            groups.setdefault(data, []).append(term)
    out: list[Node] = []
    for term in terms:
        scalars, _ = split_scalars(term)
        data = tuple(f for f in scalars if f.op != "const")
        group = groups.get(data, []) if data and term.shape else []
        if len(group) < 2:
            out.append(term)
        elif group[0] is term:
            out.append(mul(*data, add(*(strip_scalars(t, data) for t in group))))
    return out


def strip_scalars(term: Node, data: tuple[Node, ...]) -> Node:
    """``term`` without the data-scalar factors ``data`` (its constant kept)."""
    return mul(*(f for f in term.args if f not in data))


def matmul_parts(term: Node, side: int) -> tuple[sympy.Expr, Node, Node] | None:
    """``c · (a @ b)`` as ``(c, a, b)``, else None; scalars multiplying the product go with the
    factor not shared (``side`` 1: the right one is): ``s (a @ b)`` is ``(s a) @ b``."""
    coefficient, core = split_coefficient(term)
    products = [f for f in core.args if f.op == "matmul"] if core is not None and (
        core.op == "mul") else []
    if len(products) == 1 and all(not f.shape for f in core.args if f is not products[0]):
        scalars = [f for f in core.args if f is not products[0]]
        a, b = products[0].args
        return (coefficient, mul(*scalars, a), b) if side == 1 else (
            coefficient, a, mul(*scalars, b))
    if core is None or core.op != "matmul":
        return None
    return coefficient, core.args[0], core.args[1]


def common_coefficient(coefficients: list[sympy.Expr]) -> sympy.Expr:
    """The coefficient all terms share (``−A/2 − Aᵀ/2 = −(A + Aᵀ)/2``), else 1."""
    first = coefficients[0]
    return first if all(c == first for c in coefficients) else ONE


def collect_common_factor(terms: list[Node], side: int) -> list[Node]:
    """``A x + B x = (A + B) x`` (side 1: shared right factor; side 0: shared left factor).

    Only factors of one shape are collected: ``A v + A M`` with a vector ``v`` and a matrix
    ``M`` is not ``A (v + M)``, since NumPy would broadcast ``v`` as a row there.
    """
    groups: dict[tuple, list[tuple[sympy.Expr, Node]]] = {}
    keys: list[tuple | None] = []
    for term in terms:
        parts = matmul_parts(term, side)
        key = None
        if parts is not None:
            coefficient, left, right = parts
            shared, other = (right, left) if side == 1 else (left, right)
            key = (shared, other.shape)
            groups.setdefault(key, []).append((coefficient, other))
        keys.append(key)
    out: list[Node] = []
    done: set[tuple] = set()
    for term, key in zip(terms, keys, strict=True):
        if key is None or len(groups[key]) < 2:
            out.append(term)
        elif key not in done:
            done.add(key)
            shared = key[0]
            common = common_coefficient([c for c, _ in groups[key]])
            others = add(*(scale(c / common, other) for c, other in groups[key]))
            product = matmul(others, shared) if side == 1 else matmul(shared, others)
            out.append(scale(common, product))
    return out


# ----------------------------------------------------------------------------------------------
# Products and powers


def base_and_exponent(factor: Node) -> tuple[Node, sympy.Expr]:
    """``x^k`` as ``(x, k)`` for a constant exponent, else ``(factor, 1)``."""
    if factor.op == "pow" and factor.args[1].op == "const":
        return factor.args[0], const_value(factor.args[1])
    return factor, ONE


def mul(*factors: Node) -> Node:
    """Elementwise product with NumPy broadcasting, constants folded, powers merged."""
    shape = broadcast_shapes(*(f.shape for f in factors))
    coefficient: sympy.Expr = ONE
    exponents: dict[Node, sympy.Expr] = {}
    pending = list(reversed(flatten("mul", factors)))
    while pending:
        factor = strip_broadcast(pending.pop())
        if factor.op == "mul":                  # a product NumPy repeats: its factors join in
            pending.extend(reversed(factor.args))
            continue
        if is_zero(factor):
            return zero_like(shape)
        value = const_value(factor)
        if value is not None:
            coefficient *= value
            continue
        base, exponent = base_and_exponent(factor)
        exponents[base] = exponents.get(base, 0) + exponent
    rest = [raw_power(base, k) for base, k in with_roots_merged(exponents).items() if k != 0]
    rest.sort(key=lambda n: n.serial)
    if coefficient == 0:
        return zero_like(shape)
    if coefficient != 1 or not rest:
        rest.insert(0, const(coefficient))
    return broadcast_to(rest[0] if len(rest) == 1 else make("mul", rest), shape)


def with_roots_merged(exponents: dict[Node, sympy.Expr]) -> dict[Node, sympy.Expr]:
    """A product's powers with uᵃ (√u)ᵇ written (√u)²ᵃ⁺ᵇ, and (√u)²ʲ as uʲ: equal wherever √u
    is defined (u ≥ 0)."""
    merged = dict(exponents)
    for root in sorted((b for b in exponents if b.op == "sqrt"), key=lambda b: b.serial):
        if root not in merged:                  # innermost first: √√u after √u
            continue
        u = root.args[0]
        k = merged.pop(root) + 2 * merged.pop(u, 0)
        if k.is_even:
            merged[u] = k / 2
        else:
            merged[root] = k
    return merged


def raw_power(base: Node, exponent: sympy.Expr) -> Node:
    """``base^exponent`` without further rewriting (``base`` itself when the exponent is 1)."""
    return base if exponent == 1 else make("pow", (base, const(exponent)))


def fold_power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    """``base ** exponent`` for constants, refusing results too large to hold."""
    if exponent.is_Integer and base.is_Rational and base not in (0, 1, -1):
        p, q = sympy.fraction(base)
        bits = max(int(abs(p)).bit_length(), int(abs(q)).bit_length())
        if bits * abs(int(exponent)) > MAX_CONSTANT_BITS:
            raise MatcalcError(f"the constant {base} ** {exponent} is too large to compute")
    if exponent.is_Number and abs(exponent) > MAX_CONSTANT_BITS and base not in (0, 1, -1):
        raise MatcalcError(f"the constant {base} ** {exponent} is too large to compute")
    return sympy.Pow(base, exponent)


def power(base: Node, exponent: Node) -> Node:
    """Elementwise ``base ** exponent``."""
    shape = broadcast_shapes(base.shape, exponent.shape)
    k = const_value(exponent)
    if k is None:
        return make("pow", (base, exponent))
    if k == 0:
        return broadcast_to(const(1), shape)
    if k == 1:
        return base
    if base.op == "zeros" and k.is_negative:
        raise MatcalcError("a division by an array that is 0 for every input (as x − x is): "
                           "the quotient is not finite anywhere",
                           hint="If a where() never takes this branch, write it without it.")
    value = const_value(base)
    if value is not None:
        return const(fold_power(value, k))
    if k.is_Integer:
        inner, j = base_and_exponent(base)
        if j != 1:
            return power(inner, const(j * k))
        if base.op == "mul":
            return mul(*(power(f, exponent) for f in base.args))
        if base.op == "sqrt" and k.is_even:     # (√u)²ʲ = uʲ where √u is defined
            return power(base.args[0], const(k / 2))
    return make("pow", (base, exponent))


# ----------------------------------------------------------------------------------------------
# Matrix products and transposes


def split_scalars(node: Node) -> tuple[list[Node], Node]:
    """A product's scalar factors, and the rest (an array); ``c 𝟙`` counts as ``c · 𝟙``."""
    if node.op == "broadcast" and const_value(node.args[0]) not in (None, 1):
        return [node.args[0]], broadcast_to(const(1), node.shape)
    if node.op != "mul" or not node.shape:
        return [], node
    scalars = [f for f in node.args if not f.shape]
    arrays = [f for f in node.args if f.shape]
    return scalars, arrays[0] if len(arrays) == 1 else make("mul", arrays)


def unstacked(x: Node) -> Node:
    """A stack that repeats one matrix, broadcast(W[None], [B, n, m]), as W (NumPy's @
    broadcasts the stack axes itself, where the product keeps its shape)."""
    if x.op != "broadcast" or x.rank < 3:
        return x
    inner = x.args[0]
    while inner.op == "expand" and inner.attrs.axis == 0 and inner.rank > 2:
        inner = inner.args[0]
    return inner if inner.rank == 2 and inner.shape == x.shape[-2:] else x


def matmul(a: Node, b: Node) -> Node:
    """NumPy ``a @ b``; scalars pulled out, identities dropped, ``x A`` written ``Aᵀ x``."""
    shape = matmul_shape(a.shape, b.shape)
    if is_zero(a) or is_zero(b):
        return zero_like(shape)
    if a.op == "identity":
        return b
    if b.op == "identity":
        return a
    for one, other in ((a, b), (b, a)):                # a 1×1 matrix holding c: c times
        if one.op == "broadcast" and one.shape == (ONE, ONE) and not one.args[0].shape:
            return broadcast_to(mul(one.args[0], other), shape)
    scalars_a, a = split_scalars(a)
    scalars_b, b = split_scalars(b)
    if scalars_a or scalars_b:
        return mul(*scalars_a, *scalars_b, matmul(a, b))
    for i, side in enumerate((a, b)):              # A (−B − C) = −A (B + C)
        if side.op == "add" and all(negated(t) is not None for t in side.args):
            positive = add(*map(negated, side.args))
            return negate(matmul(positive, b) if i == 0 else matmul(a, positive))
    if a.rank > 2 and b.rank == 1:                       # a vector: a column, then dropped
        return reduce_sum(make("matmul", (a, new_axis(b, 1))), a.rank - 1)
    if b.rank > 2 and a.rank == 1:                       # … a row
        return reduce_sum(make("matmul", (new_axis(a, 0), b)), b.rank - 2)
    if a.rank > 2 or b.rank > 2:                         # stacks of matrices: as written,
        for x, y in ((unstacked(a), unstacked(b)), (a, unstacked(b)), (unstacked(a), b)):
            if (x, y) != (a, b) and matmul_shape(x.shape, y.shape) == shape:
                return matmul(x, y)                      # a matrix repeated: the matrix
        return make("matmul", (a, b))
    if a.rank == 1 and b.rank == 2:
        return matmul(transpose(b), a)
    if b.op == "matmul" and a.rank == b.rank == b.args[1].rank == 2:   # (A B) C: one form
        return matmul(matmul(a, b.args[0]), b.args[1])
    if a.op == "kron" and b.op == "kron" and mixed_product_fits(a, b):
        return kron(matmul_columns(a.args[0], b.args[0]), matmul_columns(a.args[1], b.args[1]))
    if a.op == "diag" and a.args[0].rank == 1 and b.op == "broadcast" and b.shape[-1:] != (
            a.shape[0],) and not b.args[0].shape:      # diag(v) c𝟙𝟙ᵀ = (c v) 𝟙ᵀ, [n, m]
        return broadcast_to(mul(b.args[0], new_axis(a.args[0], 1)), shape)
    if a.op == "broadcast" and not a.args[0].shape and b.op == "diag" and b.args[0].rank == 1:
        return broadcast_to(new_axis(mul(a.args[0], b.args[0]), 0), shape)  # c𝟙𝟙ᵀdiag(v) = 𝟙(cv)ᵀ
    if b.op == "broadcast" and not b.args[0].shape and a.op == "diag" and a.args[0].rank == 1 \
            and b.rank == 2:
        return broadcast_to(new_axis(mul(b.args[0], a.args[0]), 1), shape)  # diag(v)c𝟙𝟙ᵀ = (cv)𝟙ᵀ
    if a.op == "diag" and b.op == "diag" and a.args[0].rank == b.args[0].rank == 1:
        return apply("diag", mul(a.args[0], b.args[0]))
    base_a, k_a, flipped_a = matrix_power_parts(a)
    base_b, k_b, flipped_b = matrix_power_parts(b)
    if base_a is base_b and flipped_a == flipped_b and a.rank == 2:
        merged = make("matrix_power", (base_a,), (k_a + k_b,))
        return transpose(merged) if flipped_a else merged
    return make("matmul", (a, b))


def kron(a: Node, b: Node) -> Node:
    """``a ⊗ b`` (vectors as columns); ``I ⊗ I = I``, ``1×1 ⊗ B = B``, scalars pulled out."""
    (a0, a1), (b0, b1) = as_matrix(a.shape), as_matrix(b.shape)
    if is_zero(a) or is_zero(b):
        return zeros((a0 * b0, a1 * b1))
    if a.op == b.op == "identity":
        return make("identity", (), (a0 * b0,))
    if (a0, a1) == (ONE, ONE) and a.op == "identity":
        return as_column(b)
    if (b0, b1) == (ONE, ONE) and b.op == "identity":
        return as_column(a)
    return apply("kron", a, b)


def as_column(x: Node) -> Node:
    """A vector as a column, a scalar as 1×1, a matrix as it is: how ⊗ sees its operands."""
    if x.rank == 1:
        return new_axis(x, 1)
    return broadcast_to(x, (ONE, ONE)) if not x.shape else x


def mixed_product_fits(a: Node, b: Node) -> bool:
    """(A ⊗ B)(C ⊗ D) = AC ⊗ BD needs A, C and B, D to multiply."""
    return all(as_matrix(x.shape)[1] == as_matrix(y.shape)[0]
               for x, y in zip(a.args, b.args, strict=True))


def matmul_columns(a: Node, b: Node) -> Node:
    """``a @ b`` with vectors taken as columns (so a column times a 1×k row is an outer)."""
    if a.rank == 2 and b.rank == 1:
        return matmul(a, b)
    return matmul(as_column(a), as_column(b))


def matrix_power_parts(x: Node) -> tuple[Node, int, bool]:
    """``X``, ``Xᵏ``, ``Xᵀ``, ``(Xᵏ)ᵀ`` as ``(X, k, transposed)``: ``Xᵏ Xʲ = Xᵏ⁺ʲ``."""
    flipped = x.op == "transpose"
    inner = x.args[0] if flipped else x
    if inner.op == "matrix_power":
        return inner.args[0], inner.attrs.k, flipped
    return inner, 1, flipped


def transpose(x: Node) -> Node:
    """``xᵀ``, pushed through sums, products and matrix products to the leaves (each shared
    part transposed once)."""
    found = x.transposed
    if found is None:
        found = x.transposed = transposed(x)
    return found


def transposed(x: Node) -> Node:
    if x.rank < 2 or is_symmetric(x):
        return x
    if x.op == "transpose":
        return x.args[0]
    if x.rank > 2:                                      # each matrix of a stack
        flipped = x.shape[:-2] + (x.shape[-1], x.shape[-2])
        if x.op == "zeros" or x.op == "broadcast" and not x.args[0].shape:
            return zeros(flipped) if x.op == "zeros" else broadcast_to(x.args[0], flipped)
        scalars, rest = split_scalars(x)
        if scalars and rest.shape == x.shape:
            return mul(*scalars, transpose(rest))
        if x.op == "matmul":
            return matmul(transpose(x.args[1]), transpose(x.args[0]))
        return make("transpose", (x,))
    if x.op == "expand" and x.args[0].rank == 1:      # a row becomes a column and back
        return new_axis(x.args[0], 1 - x.attrs.axis)
    if x.op == "zeros":
        return zeros(x.shape[::-1])
    if x.op == "broadcast" and not x.args[0].shape:
        return broadcast_to(x.args[0], x.shape[::-1])
    if x.op == "broadcast":                              # rows repeated become columns
        inner = x.args[0]
        flipped = new_axis(inner, 1) if inner.rank == 1 else transpose(inner)
        return broadcast_to(flipped, x.shape[::-1])
    if x.op == "matmul":
        return matmul(transpose(x.args[1]), transpose(x.args[0]))
    if x.op in ("add", "mul"):
        build = add if x.op == "add" else mul
        return build(*(transpose_operand(t) for t in x.args))
    if x.op == "pow":
        return power(*(transpose_operand(t) for t in x.args))
    if x.op == "outer":
        return make("outer", (x.args[1], x.args[0]))
    if x.op == "kron":
        return kron(*(transpose_matrix(t) for t in x.args))
    if x.op == "commutation":
        return make("commutation", (), x.attrs[::-1])
    return make("transpose", (x,))


def transpose_matrix(t: Node) -> Node:
    """The transpose with a vector taken as a column: a 1×n row (and a row back to a vector)."""
    if t.rank == 1:
        return new_axis(t, 0)
    if t.op == "expand" and t.attrs.axis == 0:
        return t.args[0]
    return transpose(t)


def transpose_operand(t: Node) -> Node:
    """An operand of an elementwise matrix operation, transposed with it: a vector there is
    broadcast as a row, so it becomes a column; scalars stay as they are."""
    if t.rank == 1:
        return new_axis(t, 1)
    return transpose(t)


# ----------------------------------------------------------------------------------------------
# Reductions and broadcasting


def reduce_sum(x: Node, axis: int | None = None, keepdims: bool = False) -> Node:
    """``sum(x, axis)``; sums of broadcast constants become products with the size."""
    axis = normalise_axis(axis, x.rank)
    shape = reduced_shape(x.shape, axis, keepdims)
    if not x.shape:
        return x
    if is_zero(x):
        return zero_like(shape)
    inner = strip_broadcast(x)
    if not inner.shape:
        counted = x.shape if axis is None else (x.shape[axis],)
        return broadcast_to(mul(inner, const(size(counted))), shape)
    scalars, rest = split_scalars(x)
    if scalars:
        return mul(*scalars, reduce_sum(rest, axis, keepdims))
    if x.op == "add" and all(negated(t) is not None for t in x.args):   # sum(−a − b)
        return negate(reduce_sum(add(*map(negated, x.args)), axis, keepdims))
    if x.op == "expand" and x.attrs.axis == axis and not keepdims:
        return x.args[0]
    if x.op == "broadcast" and axis == 0 and x.shape[0] == ONE and not keepdims and (
            x.args[0].rank < x.rank):                  # 𝟙 vᵀ of one row, summed: v
        return broadcast_to(x.args[0], shape)
    if x.op == "diag" and x.args[0].rank == 1 and not keepdims and axis is not None:
        return x.args[0]
    if x.op == "identity" and not keepdims and axis is not None:
        return broadcast_to(const(1), shape)
    if x.op == "sum" and not x.attrs.keepdims and not keepdims and (axis is None or x.rank == 1):
        return reduce_sum(x.args[0])
    if x.op == "sum" and x.attrs == (axis, True) and not keepdims:   # summed again over 1 entry
        return reduce_sum(x.args[0], axis)
    if x.op == "sum" and x.attrs.keepdims and keepdims and x.rank == 2 and axis is not None:
        if x.attrs.axis in (axis, None):                     # summed again over 1 entry
            return x
        return reduce_sum(x.args[0], None, keepdims=True)   # over rows, then columns: all
    return make("sum", (x,), (axis, keepdims))


def new_axis(x: Node, axis: int) -> Node:
    """A new axis of length 1 at ``axis`` (``x[:, None]`` for axis 1), scalar factors kept
    outside."""
    scalars, rest = split_scalars(x)
    if scalars and rest.shape == x.shape:           # (c v)[:, None] = c v[:, None]
        return mul(*scalars, new_axis(rest, axis))
    return expanded(x, axis)


def expanded(x: Node, axis: int) -> Node:
    """The new axis of an array without scalar factors (a broadcast constant stays one)."""
    if x.op == "broadcast" and not x.args[0].shape:
        return broadcast_to(x.args[0], x.shape[:axis] + (ONE,) + x.shape[axis:])
    return make("expand", (x,), (axis,))


def reduce_to(g: Node, shape: Shape) -> Node:
    """Sum ``g`` over the axes that broadcasting added to an array of ``shape``."""
    if not shape:
        return reduce_sum(g)
    while g.rank > len(shape):
        g = reduce_sum(g, 0)
    for axis, d in enumerate(shape):
        if d == ONE and g.shape[axis] != ONE:
            g = reduce_sum(g, axis, keepdims=True)
    return g


def broadcast_like(g: Node, shape: Shape, axis: int | None) -> Node:
    """The adjoint of a sum: ``g`` repeated along the summed ``axis`` (all axes for None)."""
    if axis is not None and g.rank:
        g = new_axis(g, axis)
    return broadcast_to(g, shape)


def folded(op: str, args: Sequence[Node]) -> Node | None:
    """An elementwise function of numbers as the number it is (``exp(0) = 1``), when real; of
    zero arrays, that number repeated (``1[0 > 0]`` is 0)."""
    function = OPERATIONS[op].scalar
    values = [sympy.Integer(0) if a.op == "zeros" else const_value(a) for a in args]
    if function is None or any(v is None for v in values):   # numbers and sizes (√k) alike
        return None
    result = function(*values)
    if result.has(sympy.zoo, sympy.oo, sympy.nan):
        raise MatcalcError(f"{op}({', '.join(map(str, values))}) is not finite, and here "
                           f"{op}'s argument is {', '.join(map(str, values))} for every input "
                           "(as x − x is 0)",
                           hint="If a where() never takes this branch, write it without it.")
    if result.is_number and result.is_real is False:
        raise MatcalcError(f"{op}({', '.join(map(str, values))}) is not a real number: it is "
                           f"{not_real(result)}; matcalc computes with real numbers only")
    if not (result.is_real and result.is_finite):
        return None
    shape = broadcast_shapes(*(a.shape for a in args))
    if shape and result == 0:
        return zeros(shape)
    return broadcast_to(const(result), shape) if shape else const(result)


def last_axis(x: Node, axis: int | None) -> int | None:
    """−1 for the last axis of ``x`` (and for every entry of a vector), else ``axis``."""
    if axis is None:
        return -1 if x.rank == 1 else None
    return -1 if normalise_axis(axis, x.rank) == x.rank - 1 else axis


def apply(op: str, *args: Node, attrs: tuple = ()) -> Node:
    """Any other operation; scalar factors are pulled out of linear ones, elementwise
    functions of numbers folded."""
    number = folded(op, args) if not attrs else None
    if number is not None:
        return number
    if op in ("softmax", "log_softmax"):                # one node whichever way the axis is named
        attrs = OPERATIONS[op].record(last_axis(args[0], attrs[0]))
    if op in ("inv", "logdet", "solve") and is_zero(args[0]):
        raise MatcalcError(f"{op} of a matrix that is 0 for every input (as X − X is): it is "
                           "singular")
    if op == "vec" and args[0].rank <= 1:              # a vector is its own vec
        return args[0]
    if op == "sym" and is_symmetric(args[0]):          # a symmetric matrix is its own sym
        return args[0]
    if op in ("tril", "triu") and args[0].op == op and tuple(args[0].attrs) == tuple(attrs):
        return args[0]                                  # a mask applied twice
    if op == "inv" and args[0].op == "transpose":     # (Xᵀ)⁻¹ = (X⁻¹)ᵀ
        return transpose(make("inv", (args[0].args[0],)))
    if op == "solve" and args[1].op == "identity":    # A⁻¹ I = A⁻¹
        return apply("inv", args[0])
    if op == "diag" and args[0].op == "broadcast" and args[0].rank == 1 and (
            not args[0].args[0].shape):
        return mul(args[0].args[0], make("identity", (), (args[0].shape[0],)))
    linear = OPERATIONS[op].linear
    if linear:                                         # before any rewrite of the operation
        pulled = [split_scalars(a) if linear is True or i in linear else ([], a)
                  for i, a in enumerate(args)]
        scalars = [s for found, _ in pulled for s in found]
        if scalars:
            return mul(*scalars, apply(op, *(rest for _, rest in pulled), attrs=attrs))
    if op == "permute":
        return permuted(args[0], tuple(attrs[0]))
    if op == "reshape" and tuple(attrs[0]) == args[0].shape:
        return args[0]
    if op == "reshape" and args[0].op == "reshape":       # once, from the original
        return apply("reshape", args[0].args[0], attrs=attrs)
    if op == "slice":
        cut = sliced(args[0], *attrs)
        if cut is not None:
            return cut
    if op == "concat" and all(is_zero(a) for a in args):
        return zero_like(concat_shape(args, attrs))
    if op in ("block_sums", "sum_of_blocks") and args[0].op == "kron":
        found = blocks_of_kron(op, args[0], *attrs)
        if found is not None:
            return found
    return make(op, args, attrs)


def einsum(spec: str, *operands: Node) -> Node:
    """``np.einsum(spec, …)`` for an explicit ``spec`` (``ij,jk->ik``), in matrix notation
    where it has one: scalars pulled out, one operand summed and permuted, two operands a
    (stacked) matrix product; otherwise the einsum itself."""
    einsum_shape(operands, (spec,))                      # each index one size, or an error
    inputs, output = spec.split("->")
    subscripts = inputs.split(",")
    pulled = [split_scalars(x) for x in operands]
    if any(found for found, _ in pulled):                # scalar factors of operands
        factors = [s for found, _ in pulled for s in found]
        return mul(*factors, einsum(spec, *(rest for _, rest in pulled)))
    scalars = [x for s, x in zip(subscripts, operands, strict=True) if not s]
    if scalars and len(scalars) < len(operands):
        rest = [(s, x) for s, x in zip(subscripts, operands, strict=True) if s]
        inner = ",".join(s for s, _ in rest) + "->" + output
        return mul(*scalars, einsum(inner, *(x for _, x in rest)))
    if len(operands) == 1:
        return summed_and_permuted(subscripts[0], output, operands[0])
    if len(operands) == 2:
        product = as_matmul(subscripts, output, operands)
        if product is None:
            product = as_weighted_sum(subscripts, output, operands)
    else:
        product = contracted_pairwise(subscripts, output, operands)
    return product if product is not None else make("einsum", operands, (spec,))


def contracted_pairwise(subscripts: Sequence[str], output: str, operands: Sequence[Node]
                        ) -> Node | None:
    """Three or more operands as matrix products two at a time, when a pair is one:
    ``ij,jk,kl->il`` is A B C, the pair keeping the fewest indices first (``ij,jk,k->i`` is
    A (B v), not (A B) v); None when no pair is a matrix product."""
    best = None
    for i, j in itertools.combinations(range(len(operands)), 2):
        others = [s for k, s in enumerate(subscripts) if k not in (i, j)]
        kept = "".join(dict.fromkeys(c for c in subscripts[i] + subscripts[j]
                                     if c in output or any(c in s for s in others)))
        product = as_matmul([subscripts[i], subscripts[j]], kept, [operands[i], operands[j]])
        if product is not None and (best is None or len(kept) < len(best[0])):
            best = kept, i, j, product
    if best is None:
        return None
    kept, i, j, product = best
    rest = [(s, x) for k, (s, x) in enumerate(zip(subscripts, operands, strict=True))
            if k not in (i, j)]
    spec = ",".join([kept, *(s for s, _ in rest)]) + "->" + output
    return einsum(spec, product, *(x for _, x in rest))


def as_weighted_sum(subscripts: Sequence[str], output: str, operands: Sequence[Node]
                    ) -> Node | None:
    """Two operands, one indexed by some of the other's indices: their elementwise product
    (the smaller broadcast) summed: ``bij,bi->bj`` is sum(G ⊙ A[:, :, None], axis=1)."""
    (sa, sb), (a, b) = subscripts, operands
    if not set(sa) <= set(sb):
        (sa, sb), (a, b) = (sb, sa), (b, a)
        if not set(sa) <= set(sb):
            return None
    aligned = permuted(a, tuple(sa.index(c) for c in sb if c in sa))
    for axis, c in enumerate(sb):
        if c not in sa:
            aligned = new_axis(aligned, axis)
    return summed_and_permuted(sb, output, mul(aligned, b))


def summed_and_permuted(letters: str, output: str, x: Node) -> Node:
    """``einsum("ijk->ki", x)``: the axes not kept summed, the rest in the output's order."""
    for axis in reversed(range(len(letters))):
        if letters[axis] not in output:
            x = reduce_sum(x, axis)
            letters = letters[:axis] + letters[axis + 1:]
    return permuted(x, tuple(letters.index(c) for c in output))


def as_matmul(subscripts: Sequence[str], output: str, operands: Sequence[Node]) -> Node | None:
    """Two operands contracted over shared indices, as a (stacked) matrix product: the last
    shared index summed is the product's, the other shared ones are the stack's axes (summed
    after, when the output drops them), and one side may carry more stack axes of its own:
    ``bij,bjk->bik`` is A B, ``ji,jk->ik`` is Aᵀ B, ``btd,dk->btk`` is X W, ``btk,btd->dk``
    is sum(Gᵀ X, axis=(0, 1))."""
    (sa, sb), (a, b) = subscripts, operands
    shared = [c for c in sa if c in sb]
    summed = [c for c in shared if c not in output]
    own_a, own_b = [c for c in sa if c not in sb], [c for c in sb if c not in sa]
    if not summed or any(c not in output for c in own_a + own_b) or (
            len(own_a) > 1 and len(own_b) > 1):
        return None
    stack = summed[:-1] + [c for c in shared if c in output]
    if stack and not (own_a and own_b):
        return None                     # a stack of vectors: an elementwise product instead
    extra = own_a[:-1] + own_b[:-1]     # one side's own leading stack axes
    row, column = own_a[-1:], own_b[-1:]
    left = permuted(a, tuple(sa.index(c) for c in own_a[:-1] + stack + row + summed[-1:]))
    right = permuted(b, tuple(sb.index(c) for c in own_b[:-1] + stack + summed[-1:] + column))
    made = extra + stack + row + column
    product = matmul(left, right)
    for c in reversed(summed[:-1]):
        product = reduce_sum(product, made.index(c))
        made.remove(c)
    return permuted(product, tuple(made.index(c) for c in output))


def permuted(x: Node, axes: tuple[int, ...]) -> Node:
    """``np.transpose(x, axes)``: nothing for the identity, one permutation for two, the
    transpose of each matrix when only the last two axes swap."""
    if x.op == "permute":
        axes = tuple(x.attrs.axes[k] for k in axes)
        x = x.args[0]
    rank = len(axes)
    if axes == tuple(range(rank)):
        return x
    if rank >= 2 and axes == (*range(rank - 2), rank - 1, rank - 2):
        return transpose(x)
    return make("permute", (x,), (axes,))


def blocks_of_kron(op: str, product: Node, rows: sympy.Expr, cols: sympy.Expr,
                   block_rows: sympy.Expr, block_cols: sympy.Expr) -> Node | None:
    """The blocks of C ⊗ B are cᵢⱼ B: their sums are C sum(B), and added up they are
    sum(C) B."""
    c, b = product.args
    if c.shape != (rows, cols) or b.shape != (block_rows, block_cols):
        return None
    return mul(c, reduce_sum(b)) if op == "block_sums" else mul(reduce_sum(c), b)


def sliced(x: Node, axis: int, start: sympy.Expr, stop: sympy.Expr) -> Node | None:
    """X[start:stop] along ``axis`` when it is simpler: X itself, zero, (part of) one of the
    blocks X joins, or the slices of a sum's terms."""
    if sympy.expand(start) == 0 and sympy.expand(stop - x.shape[axis]) == 0:
        return x
    if is_zero(x) or x.op == "broadcast" and not x.args[0].shape:   # 0, c 𝟙𝟙ᵀ: cut to size
        cut = with_length(x.shape, axis, sympy.expand(stop - start))
        return zero_like(cut) if is_zero(x) else broadcast_to(x.args[0], cut)
    if x.op == "concat" and x.attrs.axis == axis:
        offset = sympy.Integer(0)
        for block in x.args:
            end = offset + block.shape[axis]
            if (start - offset).is_nonnegative and (end - stop).is_nonnegative:
                return apply("slice", block, attrs=(axis, start - offset, stop - offset))
            offset = end
    if x.op == "add" and all(t.shape == x.shape for t in x.args):
        return add(*(apply("slice", t, attrs=(axis, start, stop)) for t in x.args))
    return None


# ----------------------------------------------------------------------------------------------
# The operators of IR nodes are these constructors


def negate(a: Node) -> Node:
    """``-a``."""
    return mul(const(-1), a)


def install_operators() -> None:
    """``a + b``, ``a - b``, ``-a``, ``a * b``, ``a / b``, ``a ** k``, ``a @ b``, ``a.T`` on nodes
    (numbers lifted to constants), so that rules read like the identities they are."""
    Node.__add__ = lambda a, b: add(a, lift(b))
    Node.__radd__ = lambda a, b: add(lift(b), a)
    Node.__sub__ = lambda a, b: add(a, negate(lift(b)))
    Node.__rsub__ = lambda a, b: add(lift(b), negate(a))
    Node.__neg__ = negate
    Node.__mul__ = lambda a, b: mul(a, lift(b))
    Node.__rmul__ = lambda a, b: mul(lift(b), a)
    Node.__truediv__ = lambda a, b: mul(a, power(lift(b), const(-1)))
    Node.__rtruediv__ = lambda a, b: mul(lift(b), power(a, const(-1)))
    Node.__pow__ = lambda a, b: power(a, lift(b))
    Node.__matmul__ = matmul
    Node.T = property(transpose)


install_operators()

__all__ = [
    "add",
    "apply",
    "broadcast_like",
    "broadcast_to",
    "matmul",
    "mul",
    "new_axis",
    "power",
    "reduce_sum",
    "reduce_to",
    "transpose",
    "zero_like",
]



def negated(node: Node) -> Node | None:
    """``u`` of ``−u`` (a product with a negative number in it), else None."""
    if node.op != "mul":
        return None
    c = const_value(node.args[0])
    if c is None or not c.is_negative:
        return None
    return mul(const(-c), *node.args[1:])


def rebuild(node: Node, args: tuple[Node, ...]) -> Node:
    """``node`` over new arguments, through the constructors above (a scalar pulled out of a
    product, like terms merged, a transpose pushed to the leaves …); ``node`` itself where the
    new arguments hide what it needs proved (a symmetric argument written by a name)."""
    if args == node.args:
        return node
    constructor = CONSTRUCTORS.get(node.op)
    try:
        if constructor is not None:
            return constructor(*args, *node.attrs)
        if node.op in ("var", "const", "delta", "zeros", "identity", "named"):
            return make(node.op, args, node.attrs)
        return apply(node.op, *args, attrs=node.attrs)
    except (MatcalcError, ShapeError):
        return node


CONSTRUCTORS = {"add": add, "mul": mul, "pow": power, "matmul": matmul,
                "transpose": transpose, "sum": reduce_sum}
