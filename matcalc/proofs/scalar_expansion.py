"""Expansion to scalars, the independent verifier: IR expressions as explicit SymPy matrices.

At concrete sizes every array becomes its entries, SymPy expressions in scalar symbols
(``X_0_1`` is entry (0, 1) of ``X``, ``x_0`` entry 0 of a vector, a scalar is its own symbol).
Each operation of :data:`matcalc.core.ir.OPERATIONS` is written out entry by entry with plain
SymPy and NumPy's broadcasting (elementwise ones through their ``scalar`` meaning). Nothing here
uses the engine, its rules or the simplifier, so
:func:`explicit_gradient` (``sympy.diff`` entry by entry) is ground truth for them.

Results are SymPy values: a scalar expression, a vector as an n×1 column, a matrix as a Matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import sympy

from matcalc.core.ir import OPERATIONS, Node, has_property
from matcalc.errors import MatcalcError
from matcalc.language.lowering import Program

Sizes = Mapping[str, int]
Index = tuple[int, ...]
Value = sympy.Expr | sympy.Matrix


@dataclass(frozen=True)
class Tensor:
    """A concrete array of rank 0, 1 or 2: its shape and its entries in row-major order."""

    shape: tuple[int, ...]
    flat: tuple[sympy.Expr, ...]

    @classmethod
    def build(cls, shape: tuple[int, ...], entry: Callable[[Index], sympy.Expr]) -> Tensor:
        return cls(shape, tuple(entry(index) for index in np.ndindex(*shape)))

    @classmethod
    def of_matrix(cls, matrix: sympy.Matrix, shape: tuple[int, ...]) -> Tensor:
        return cls(shape, tuple(matrix))

    def __getitem__(self, index: Index) -> sympy.Expr:
        position = 0
        for i, d in zip(index, self.shape, strict=True):
            position = position * d + i
        return self.flat[position]

    def matrix(self) -> sympy.Matrix:
        """As a SymPy matrix: 1×1 for a scalar, a column for a vector."""
        rows, cols = (self.shape + (1, 1))[:2]
        return sympy.Matrix(rows, cols, list(self.flat))

    def value(self) -> Value:
        """The public form: a scalar expression or a matrix (vectors as columns)."""
        return self.flat[0] if not self.shape else self.matrix()

    def map(self, f: Callable[[sympy.Expr], sympy.Expr]) -> Tensor:
        return Tensor(self.shape, tuple(f(x) for x in self.flat))


def entry_symbol(name: str, index: Index, positive: bool, symmetric: bool = False
                 ) -> sympy.Symbol:
    """``X_0_1`` for entry (0, 1) of X (also for (1, 0) if X is symmetric); real, and positive
    when asked."""
    label = "_".join([name, *map(str, sorted(index) if symmetric else index)])
    return sympy.Symbol(label, positive=True) if positive else sympy.Symbol(label, real=True)


def rows_summing_to_one(t: Tensor) -> Tensor:
    """``t`` with each row's last entry replaced by 1 minus the others: rows that sum to 1."""
    width = t.shape[-1]
    rows = [list(t.flat[i:i + width]) for i in range(0, len(t.flat), width)]
    flat = [x for row in rows for x in [*row[:-1], 1 - sum(row[:-1])]]
    return Tensor(t.shape, tuple(flat))


def broadcast(f: Callable[..., sympy.Expr], *tensors: Tensor) -> Tensor:
    """``f`` entry by entry over NumPy-broadcast arguments."""
    shape = np.broadcast_shapes(*(t.shape for t in tensors))

    def entry(index: Index) -> sympy.Expr:
        return f(*(t[source_index(index, t.shape)] for t in tensors))

    return Tensor.build(shape, entry)


def source_index(index: Index, shape: tuple[int, ...]) -> Index:
    """Where a broadcast entry comes from: trailing axes aligned, size-1 axes repeated."""
    tail = index[len(index) - len(shape):]
    return tuple(0 if d == 1 else i for i, d in zip(tail, shape, strict=True))


def reduce(t: Tensor, axis: int | None, keepdims: bool,
           combine: Callable[..., sympy.Expr] = sympy.Add) -> Tensor:
    """``combine`` of the entries along ``axis`` (every axis for None), like ``np.sum``."""
    axes = range(len(t.shape)) if axis is None else (axis % len(t.shape),)
    groups: dict[Index, list[sympy.Expr]] = {}
    for index in np.ndindex(*t.shape):
        key = tuple(0 if i in axes else k for i, k in enumerate(index))
        groups.setdefault(key, []).append(t[index])
    full = tuple(1 if i in axes else d for i, d in enumerate(t.shape))
    kept = Tensor.build(full, lambda index: combine(*groups[index]))
    if keepdims:
        return kept
    return Tensor(tuple(d for i, d in enumerate(t.shape) if i not in axes), kept.flat)


ELEMENTWISE: dict[str, Callable[..., sympy.Expr]] = {
    name: d.scalar for name, d in OPERATIONS.items() if d.elementwise}
"""Operations applied entry by entry (with broadcasting) and their meaning on scalars."""


def log_softmax(t: Tensor, axis: int) -> Tensor:
    return broadcast(lambda x, s: x - sympy.log(s), t, reduce(t.map(sympy.exp), axis, True))


class Expander:
    """Expands IR nodes at concrete ``sizes``; ``positive`` names variables with positive entries.

    ``signals`` gives the definitions of error signals δ (labels to nodes) a derivation uses.
    """

    def __init__(self, sizes: Sizes, positive: Collection[str] = (),
                 signals: Mapping[int, Node] | None = None) -> None:
        self.sizes = {sympy.Symbol(k, integer=True, positive=True): v for k, v in sizes.items()}
        self.positive = set(positive)
        self.signals = dict(signals or {})
        self.memo: dict[Node, Tensor] = {}

    def __call__(self, node: Node) -> Tensor:
        found = self.memo.get(node)
        if found is None:
            found = self.memo[node] = self.expand(node)
        return found

    def number(self, value: sympy.Expr) -> int | sympy.Expr:
        """A dimension or a constant with the sizes substituted."""
        return sympy.sympify(value).xreplace(self.sizes)

    def shape(self, shape: Iterable[sympy.Expr]) -> tuple[int, ...]:
        return tuple(int(self.number(d)) for d in shape)

    def expand(self, node: Node) -> Tensor:
        args = [self(a) for a in node.args]
        if node.op in ELEMENTWISE:
            return broadcast(ELEMENTWISE[node.op], *args)
        return getattr(self, "op_" + node.op)(node, *args)

    # -- leaves ----------------------------------------------------------------------------

    def op_var(self, node: Node) -> Tensor:
        name, shape, symmetric = node.attrs.name, node.attrs.shape, has_property(node, "symmetric")
        if has_property(node, "labels"):
            raise MatcalcError("the exact check does not expand integer class labels")
        positive = name in self.positive
        entries = Tensor.build(self.shape(shape),
                               lambda i: entry_symbol(name, i, positive, symmetric))
        if has_property(node, "onehot") or has_property(node, "probabilities"):
            return rows_summing_to_one(entries)
        return entries

    def op_const(self, node: Node) -> Tensor:
        return Tensor((), (self.number(node.attrs.value),))

    def op_zeros(self, node: Node) -> Tensor:
        return Tensor.build(self.shape(node.attrs.shape), lambda i: sympy.Integer(0))

    def op_identity(self, node: Node) -> Tensor:
        n = int(self.number(node.attrs.n))
        return Tensor.of_matrix(sympy.eye(n), (n, n))

    def op_delta(self, node: Node) -> Tensor:
        return self(self.signals[node.attrs.label])

    def op_named(self, node: Node, definition: Tensor) -> Tensor:
        return definition

    # -- structure -------------------------------------------------------------------------

    def op_matmul(self, node: Node, a: Tensor, b: Tensor) -> Tensor:
        if len(a.shape) > 2 or len(b.shape) > 2:
            return self.stacked_matmul(node, a, b)
        left = a.matrix().T if len(a.shape) == 1 else a.matrix()
        shape = a.shape[:-1] + (b.shape[1:] if len(b.shape) == 2 else ())
        return Tensor.of_matrix(left * b.matrix(), shape)

    def stacked_matmul(self, node: Node, a: Tensor, b: Tensor) -> Tensor:
        """Matrix by matrix over the broadcast leading axes."""
        shape = self.shape(node.shape)

        def entry(index: Index) -> sympy.Expr:
            batch, (i, j) = index[:-2], index[-2:]
            row = source_index((*batch, i, 0), a.shape)[:-1]
            column = source_index((*batch, 0, j), b.shape)
            return sympy.Add(*(a[(*row, k)] * b[(*column[:-2], k, column[-1])]
                               for k in range(a.shape[-1])))

        return Tensor.build(shape, entry)

    def op_transpose(self, node: Node, x: Tensor) -> Tensor:
        if len(x.shape) > 2:                            # each matrix of the stack
            return Tensor.build(self.shape(node.shape),
                                lambda i: x[(*i[:-2], i[-1], i[-2])])
        return Tensor.build(x.shape[::-1], lambda i: x[i[::-1]])

    def op_reshape(self, node: Node, x: Tensor) -> Tensor:
        """The same entries in row-major order, in the new shape."""
        return Tensor(self.shape(node.shape), x.flat)

    def op_take(self, node: Node, *args: Tensor) -> Tensor:
        raise MatcalcError("the exact check does not expand integer class labels")

    op_scatter_rows = op_take

    def op_einsum(self, node: Node, *operands: Tensor) -> Tensor:
        """Σ over the indices not in the output of the product of the operands' entries."""
        inputs, output = node.attrs.spec.split("->")
        subscripts = inputs.split(",")
        sizes = {c: d for s, x in zip(subscripts, operands, strict=True)
                 for c, d in zip(s, x.shape, strict=True)}
        summed = sorted(set(inputs.replace(",", "")) - set(output))

        def entry(index: Index) -> sympy.Expr:
            fixed = dict(zip(output, index, strict=True))
            terms = []
            for values in np.ndindex(*(sizes[c] for c in summed)):
                at = {**fixed, **dict(zip(summed, values, strict=True))}
                terms.append(sympy.Mul(*(x[tuple(at[c] for c in s)]
                                         for s, x in zip(subscripts, operands, strict=True))))
            return sympy.Add(*terms)

        return Tensor.build(tuple(sizes[c] for c in output), entry)

    def op_permute(self, node: Node, x: Tensor) -> Tensor:
        axes = node.attrs.axes

        def entry(index: Index) -> sympy.Expr:
            original = [0] * len(axes)
            for position, axis in enumerate(axes):
                original[axis] = index[position]
            return x[tuple(original)]

        return Tensor.build(self.shape(node.shape), entry)

    def op_sum(self, node: Node, x: Tensor) -> Tensor:
        axis, keepdims = node.attrs
        return reduce(x, axis, keepdims)

    def op_expand(self, node: Node, x: Tensor) -> Tensor:
        (axis,) = node.attrs
        return Tensor(x.shape[:axis] + (1,) + x.shape[axis:], x.flat)

    def op_broadcast(self, node: Node, x: Tensor) -> Tensor:
        return Tensor.build(self.shape(node.attrs.shape), lambda i: x[source_index(i, x.shape)])

    # -- linear algebra --------------------------------------------------------------------

    def op_trace(self, node: Node, x: Tensor) -> Tensor:
        return Tensor((), (x.matrix().trace(),))

    def op_det(self, node: Node, x: Tensor) -> Tensor:
        return Tensor((), (x.matrix().det(),))

    def op_logdet(self, node: Node, x: Tensor) -> Tensor:
        return Tensor((), (sympy.log(x.matrix().det()),))

    def op_inv(self, node: Node, x: Tensor) -> Tensor:
        return Tensor.of_matrix(x.matrix().inv(method="ADJ"), x.shape)

    def op_matrix_power(self, node: Node, x: Tensor) -> Tensor:
        (k,) = node.attrs
        m = x.matrix()
        power = m.inv(method="ADJ") ** -k if k < 0 else m**k
        return Tensor.of_matrix(power, x.shape)

    def op_diag(self, node: Node, x: Tensor) -> Tensor:
        if len(x.shape) == 1:
            return Tensor.of_matrix(sympy.diag(*x.flat), x.shape * 2)
        return Tensor.build(x.shape[:1], lambda i: x[i * 2])

    def op_outer(self, node: Node, a: Tensor, b: Tensor) -> Tensor:
        return Tensor.of_matrix(a.matrix() * b.matrix().T, a.shape + b.shape)

    def op_weighted_gram(self, node: Node, x: Tensor, d: Tensor, s: Tensor) -> Tensor:
        """Xᵀ diag(d) X + s I."""
        m = x.matrix()
        gram = m.T * sympy.diag(*d.matrix()) * m + s[()] * sympy.eye(m.shape[1])
        return Tensor.of_matrix(gram, (x.shape[1], x.shape[1]))

    def op_kron(self, node: Node, a: Tensor, b: Tensor) -> Tensor:
        """The Kronecker product, vectors as columns."""
        left, right = a.matrix(), b.matrix()
        rows, cols = right.shape

        def entry(index: Index) -> sympy.Expr:
            (i, k), (j, m) = divmod(index[0], rows), divmod(index[1], cols)
            return left[i, j] * right[k, m]

        return Tensor.build((left.rows * rows, left.cols * cols), entry)

    def op_vec(self, node: Node, x: Tensor) -> Tensor:
        """The columns stacked (a vector is its own vec)."""
        return Tensor((len(x.flat),), tuple(x.matrix().T))

    def op_commutation(self, node: Node) -> Tensor:
        """K with K vec(A) = vec(Aᵀ) for a rows×cols matrix A: entry (j + cols i, i + rows j)."""
        rows, cols = (int(self.number(d)) for d in node.attrs)

        def entry(index: Index) -> sympy.Expr:
            i, j = divmod(index[0], cols)
            return sympy.Integer(int(index[1] == i + rows * j))

        return Tensor.build((rows * cols, rows * cols), entry)

    def op_diag_embedding(self, node: Node) -> Tensor:
        """E with E v = vec(diag(v)): entry (i + n i, i)."""
        n = int(self.number(node.attrs.n))
        return Tensor.build((n * n, n),
                            lambda index: sympy.Integer(int(index[0] == index[1] * (n + 1))))

    def op_norm(self, node: Node, x: Tensor) -> Tensor:
        return Tensor((), (sympy.sqrt(sympy.Add(*(e**2 for e in x.flat))),))

    def op_pinv(self, node: Node, x: Tensor) -> Tensor:
        return Tensor.of_matrix(x.matrix().pinv(), self.shape(node.shape))

    def spectral(self, node: Node, *args: Tensor) -> Tensor:
        """Singular values and eigenvalues have no closed form entry by entry beyond 4×4."""
        raise MatcalcError(f"the exact check cannot expand {node.op} entry by entry (its "
                           "singular values or eigenvalues have no closed form): check it "
                           "numerically with `matcalc check`")

    op_nuclear_norm = op_spectral_norm = op_eigvalsh = spectral
    op_polar = op_top_singular = op_eigenvectors = spectral

    # -- neural nets -----------------------------------------------------------------------

    def op_softmax(self, node: Node, x: Tensor) -> Tensor:
        e = x.map(sympy.exp)
        return broadcast(lambda a, s: a / s, e, reduce(e, node.attrs.axis, True))

    def op_log_softmax(self, node: Node, x: Tensor) -> Tensor:
        return log_softmax(x, node.attrs.axis)

    def op_standardize(self, node: Node, x: Tensor) -> Tensor:
        """(x − μ) / √(σ² + ε) along the axis, μ and σ² the mean and the mean square about it."""
        axis, eps = node.attrs
        n = x.shape[axis]
        centred = broadcast(lambda a, s: a - s / n, x, reduce(x, axis, True))
        spread = reduce(centred.map(lambda a: a**2), axis, True)
        return broadcast(lambda a, s: a / sympy.sqrt(s / n + eps), centred, spread)

    def op_logsumexp(self, node: Node, x: Tensor) -> Tensor:
        return reduce(x.map(sympy.exp), node.attrs.axis, False).map(sympy.log)

    def op_block_sums(self, node: Node, x: Tensor) -> Tensor:
        """The sum of each p×q block."""
        _, _, p, q = (int(self.number(d)) for d in node.attrs)
        return Tensor.build(self.shape(node.shape), lambda index: sympy.Add(*(
            x[(index[0] * p + r, index[1] * q + c)] for r in range(p) for c in range(q))))

    def op_sum_of_blocks(self, node: Node, x: Tensor) -> Tensor:
        """The m×n grid of p×q blocks added up."""
        m, n, p, q = (int(self.number(d)) for d in node.attrs)
        return Tensor.build(self.shape(node.shape), lambda index: sympy.Add(*(
            x[(i * p + index[0], j * q + index[1])] for i in range(m) for j in range(n))))

    def op_concat(self, node: Node, *blocks: Tensor) -> Tensor:
        """Blocks joined along the axis: each index finds its block by the sizes before it."""
        axis = node.attrs.axis

        def entry(index: Index) -> sympy.Expr:
            k = index[axis]
            for block in blocks:
                if k < block.shape[axis]:
                    return block[(*index[:axis], k, *index[axis + 1:])]
                k -= block.shape[axis]
            raise IndexError(index)

        return Tensor.build(self.shape(node.shape), entry)

    def op_slice(self, node: Node, x: Tensor) -> Tensor:
        axis, start = node.attrs.axis, int(self.number(node.attrs.start))
        return Tensor.build(self.shape(node.shape), lambda index: x[
            (*index[:axis], index[axis] + start, *index[axis + 1:])])

    def op_tril(self, node: Node, x: Tensor) -> Tensor:
        k = node.attrs.k
        return Tensor.build(x.shape, lambda i: x[i] if i[1] - i[0] <= k else sympy.Integer(0))

    def op_triu(self, node: Node, x: Tensor) -> Tensor:
        k = node.attrs.k
        return Tensor.build(x.shape, lambda i: x[i] if i[1] - i[0] >= k else sympy.Integer(0))

    def op_sym(self, node: Node, x: Tensor) -> Tensor:
        return Tensor.build(x.shape, lambda i: (x[i] + x[i[::-1]]) / 2)

    def op_cholesky(self, node: Node, s: Tensor) -> Tensor:
        return Tensor.of_matrix(s.matrix().cholesky(hermitian=False), s.shape)

    def op_solve(self, node: Node, a: Tensor, b: Tensor) -> Tensor:
        return Tensor.of_matrix(a.matrix().LUsolve(b.matrix()), b.shape)

    def op_max(self, node: Node, x: Tensor) -> Tensor:
        return reduce(x, node.attrs.axis, False, combine=sympy.Max)

    def op_min(self, node: Node, x: Tensor) -> Tensor:
        return reduce(x, node.attrs.axis, False, combine=sympy.Min)

    def op_prod(self, node: Node, x: Tensor) -> Tensor:
        return reduce(x, node.attrs.axis, False, combine=sympy.Mul)

    def op_prod_others(self, node: Node, x: Tensor) -> Tensor:
        """Each entry: the product of the others along the axis (all others for None)."""
        axis = node.attrs.axis
        along = [k for k in range(len(x.shape)) if axis is None or k == axis % len(x.shape)]

        def others(index: Index) -> sympy.Expr:
            return sympy.Mul(*(x[j] for j in np.ndindex(*x.shape) if j != index and all(
                j[k] == index[k] for k in range(len(x.shape)) if k not in along)))

        return Tensor.build(x.shape, others)

    def op_first_max(self, node: Node, x: Tensor) -> Tensor:
        """1 where an entry is larger than those before it along the axis and no smaller than
        those after it (the first largest), else 0."""
        axes = range(len(x.shape)) if node.attrs.axis is None else (node.attrs.axis % len(x.shape),)
        groups: dict[Index, list[Index]] = {}
        for index in np.ndindex(*x.shape):
            groups.setdefault(tuple(0 if i in axes else k for i, k in enumerate(index)),
                              []).append(index)
        mask: dict[Index, sympy.Expr] = {}
        for members in groups.values():
            for k, i in enumerate(members):
                first = sympy.And(*(x[i] > x[j] for j in members[:k]),
                                  *(x[i] >= x[j] for j in members[k + 1:]))
                mask[i] = sympy.Piecewise((1, first), (0, True))
        return Tensor.build(x.shape, mask.__getitem__)

    def op_softmax_cross_entropy(self, node: Node, z: Tensor, y: Tensor) -> Tensor:
        rows = math.prod(z.shape[:-1])
        total = sympy.Add(*broadcast(sympy.Mul, y, log_softmax(z, -1)).flat)
        return Tensor((), (-total / rows,))

    def op_mse(self, node: Node, p: Tensor, t: Tensor) -> Tensor:
        squares = broadcast(lambda a, b: (a - b) ** 2, p, t)
        return Tensor((), (sympy.Add(*squares.flat) / len(squares.flat),))


def expand(node: Node, sizes: Sizes, positive: Collection[str] = ()) -> Value:
    """The IR expression ``node`` written out in scalar symbols at concrete ``sizes``."""
    return Expander(sizes, positive)(node).value()


# ----------------------------------------------------------------------------------------------
# Ground truth: derivatives of the expanded function, entry by entry


def derivative(f: Tensor, x: Tensor) -> Tensor:
    """∂fᵢ/∂xⱼ for every entry pair, shaped ``f.shape + x.shape``."""
    return Tensor(f.shape + x.shape, tuple(sympy.diff(fi, xj) for fi in f.flat for xj in x.flat))


def _function_and_variable(program: Program, name: str, sizes: Sizes,
                           positive: Collection[str]) -> tuple[Tensor, Tensor]:
    expander = Expander(sizes, positive)
    return expander(program.function), expander(program.variables[name])


def gradient_tensor(program: Program, name: str, sizes: Sizes,
                    positive: Collection[str] = ()) -> Tensor:
    """∂f/∂name shaped like the variable, for a scalar function.

    For a symmetric S this is the gradient among symmetric matrices, (G + Gᵀ)/2: an off-diagonal
    symbol stands for two entries, so its derivative G_ij + G_ji is halved.
    """
    f, x = _function_and_variable(program, name, sizes, positive)
    if len(f.flat) == 1:                          # a 1×1 matrix: its one entry, as derive does
        f = Tensor((), f.flat)
    if f.shape:
        raise ValueError(f"the function has shape {f.shape}; a gradient needs a scalar")
    g = derivative(f, x)
    if not has_property(program.variables[name], "symmetric"):
        return g
    return Tensor.build(g.shape, lambda i: g[i] if i[0] == i[1] else g[i] / 2)


def explicit_gradient(program: Program, name: str, sizes: Sizes,
                      positive: Collection[str] = ()) -> Value:
    """∂f/∂name by ``sympy.diff`` of the expanded scalar function (gradient layout)."""
    return gradient_tensor(program, name, sizes, positive).value()


def jacobian_tensor(program: Program, name: str, sizes: Sizes,
                    positive: Collection[str] = ()) -> Tensor:
    """∂f/∂name in numerator layout: rows follow f (a row gᵀ or Gᵀ for a scalar function)."""
    f, x = _function_and_variable(program, name, sizes, positive)
    if f.shape:
        return derivative(f, x)
    g = derivative(f, x)
    if len(g.shape) == 1:
        return Tensor((1,) + g.shape, g.flat)
    return Tensor.build(g.shape[::-1], lambda i: g[i[::-1]])


def hessian_tensor(program: Program, name: str, sizes: Sizes,
                   positive: Collection[str] = ()) -> Tensor:
    """∂²f/∂name²: the derivative of the gradient."""
    x = Expander(sizes, positive)(program.variables[name])
    return derivative(gradient_tensor(program, name, sizes, positive), x)
