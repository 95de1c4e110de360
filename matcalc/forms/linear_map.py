"""The matrix of a linear expression: ``E(u) = M u`` → ``M``.

Jacobians come from the same rules as gradients: the gradient of ``uᵀ f`` with respect to ``x``
is ``Jᵀ u``, an expression linear in the probe ``u``. Reading off its matrix structurally gives the
Jacobian in matrix form (``W``, ``diag(1[z > 0])``, ``diag(s) − s sᵀ``) without expanding
entries. Hessians are Jacobians of gradients.

For an expression of rank 1 the result is ``M`` with ``E = M u``; for a scalar expression it is
the vector ``w`` with ``E = wᵀ u``. Only vector and scalar expressions are handled: a map through
a matrix-valued intermediate would need a third- or fourth-order tensor.
"""

from __future__ import annotations

from matcalc.core.ir import ONE, Node, const, depends_on, identity, postorder, var, zeros
from matcalc.core.simplify import (
    add,
    apply,
    broadcast_to,
    matmul,
    mul,
    new_axis,
    reduce_sum,
    split_scalars,
    transpose,
)
from matcalc.errors import MatcalcError, NotDerived

HIGHER_ORDER = (
    "this derivative passes through a matrix-valued intermediate, so it is a third- or "
    "fourth-order tensor; matcalc shows Jacobians and Hessians in matrix form for vectors and "
    "scalars only (index and Kronecker forms are planned)"
)


EINSUM = ("a Jacobian or Hessian through an einsum that is not a matrix product (or a reshape) "
          "has no matrix or Kronecker form in matcalc yet; take a Hessian-vector product "
          "(--hvp V) instead")


class LinearReader:
    """Reads expressions under ``root`` that are linear in the leaf ``u``: each node once,
    children before parents (no recursion), by :meth:`read`."""

    def __init__(self, u: Node, root: Node) -> None:
        self.u = u
        self.dependent = depends_on([root], {u})
        self.memo: dict[Node, Node] = {}

    def __call__(self, e: Node) -> Node:
        found = self.memo.get(e)
        if found is None:
            for n in postorder([e], stop=lambda n: n in self.memo or n not in self.dependent):
                if n in self.dependent and n not in self.memo:
                    self.memo[n] = self.read(n)
            found = self.memo.get(e) or self.read(e)
        return found

    def read(self, e: Node) -> Node:
        raise NotImplementedError


class LinearMatrix(LinearReader):
    """Reads off ``M`` (or ``w``) for expressions linear in the vector leaf ``u``."""

    def __init__(self, u: Node, root: Node) -> None:
        super().__init__(u, root)
        self.m = u.shape[0]

    def read(self, e: Node) -> Node:
        if e.rank > 2:
            raise NotDerived(HIGHER_ORDER)
        if e.rank > 1 and not is_column(e):            # a column [r, 1] reads as a vector
            raise MatcalcError(HIGHER_ORDER)
        return self.read_linear(e)

    def zero(self, e: Node) -> Node:
        return zeros((e.shape[0], self.m) if e.rank else (self.m,))

    def read_linear(self, e: Node) -> Node:
        if e not in self.dependent:
            return self.zero(e)
        if e is self.u:
            return identity(self.m)
        method = getattr(self, "r_" + e.op, None)
        if method is None:
            raise MatcalcError(f"{e.op} of the probe is not linear; {HIGHER_ORDER}")
        return method(e)

    def to_rank(self, matrix: Node, term: Node, e: Node) -> Node:
        """A term's matrix where NumPy broadcasts the term to the shape of ``e``: a scalar's
        row ``wᵀ`` (or a length-1 vector's single row) repeated down the rows, ``𝟙 wᵀ``."""
        if term.shape == e.shape:
            return matrix
        row = new_axis(matrix, 0) if term.rank == 0 else matrix
        return broadcast_to(row, (e.shape[0], self.m))

    def r_add(self, e: Node) -> Node:
        return add(*(self.to_rank(self(t), t, e) for t in e.args if t in self.dependent))

    def r_mul(self, e: Node) -> Node:
        (factor,) = [f for f in e.args if f in self.dependent]
        others = [f for f in e.args if f is not factor]
        c = mul(*others) if others else None
        inner = self(factor)
        if c is None:
            return self.to_rank(inner, factor, e)
        if factor.rank == 1 and factor.shape != e.shape:     # a length-1 vector, broadcast
            inner = self.to_rank(inner, factor, e)
        if c.rank == 0:
            return self.to_rank(mul(c, inner), factor, e)
        if is_column(e):                               # a column: its entries, as a vector's
            return scale_rows(reduce_sum(broadcast_to(c, e.shape), 1),
                              self.to_rank(inner, factor, e))
        if factor.rank == 1:                           # c ⊙ (M u) = diag(c) M u
            return scale_rows(broadcast_to(c, e.shape), inner)
        return apply("outer", c, inner)              # c (wᵀ u) = (c wᵀ) u

    def r_matmul(self, e: Node) -> Node:
        a, b = e.args
        if a in self.dependent and b in self.dependent:
            raise MatcalcError(f"the probe appears on both sides of a product; {HIGHER_ORDER}")
        if a.rank == 2:
            if a in self.dependent:                   # a matrix-valued function of the probe
                raise MatcalcError(HIGHER_ORDER)
            return matmul(a, self(b))                 # A (M u) = (A M) u
        known, varying = (b, a) if a in self.dependent else (a, b)
        return matmul(transpose(self(varying)), known)   # aᵀ (M u) = (Mᵀ a)ᵀ u

    def r_transpose(self, e: Node) -> Node:
        return self(e.args[0])

    def r_solve(self, e: Node) -> Node:
        a, b = e.args
        if a in self.dependent:                      # a matrix-valued function of the probe
            raise MatcalcError(HIGHER_ORDER)
        return apply("solve", a, self(b))            # A⁻¹ (M u) = (A⁻¹ M) u

    def r_sum(self, e: Node) -> Node:
        (x,) = e.args
        inner = self(x)
        if x.rank == 0 or is_column(x) and e.attrs.axis == 1:
            return inner                                # a column summed across: itself
        total = reduce_sum(inner, 0)                 # 𝟙ᵀ (M u) = (Mᵀ 𝟙)ᵀ u
        return new_axis(total, 0) if e.rank else total

    def r_broadcast(self, e: Node) -> Node:
        (x,) = e.args
        return self.to_rank(self(x), x, e)

    def r_expand(self, e: Node) -> Node:
        """A vector as a column: the same entries."""
        if not is_column(e):
            raise MatcalcError(HIGHER_ORDER)
        return self(e.args[0])

    def r_kron(self, e: Node) -> Node:
        """Columns: a ⊗ b = (I ⊗ b) a = (a ⊗ I) b."""
        a, b = e.args
        if a in self.dependent and b in self.dependent:
            raise MatcalcError(f"the probe appears on both sides of a Kronecker product; "
                               f"{HIGHER_ORDER}")
        if a in self.dependent:
            return matmul(apply("kron", identity(a.shape[0]), b), self(a))
        return matmul(apply("kron", a, identity(b.shape[0])), self(b))

    def r_block_sums(self, e: Node) -> Node:
        """Of a column: (I_m ⊗ 𝟙ᵀ_p) x, the sum of each run of p entries."""
        m, _, p, _ = e.attrs
        return matmul(apply("kron", identity(m), ones_row(p)), self(e.args[0]))

    def r_sum_of_blocks(self, e: Node) -> Node:
        """Of a column: (𝟙ᵀ_m ⊗ I_p) x, its m runs of p entries added up."""
        m, _, p, _ = e.attrs
        return matmul(apply("kron", ones_row(m), identity(p)), self(e.args[0]))

    def r_where(self, e: Node) -> Node:
        """where(c, a, b) = c ⊙ a + (1 − c) ⊙ b for a 0/1 mask c: each branch's rows scaled."""
        c, a, b = e.args
        return add(*(self.masked(weight, branch, e) for branch, weight in ((a, c), (b, 1 - c))
                     if branch in self.dependent))

    def masked(self, weight: Node, branch: Node, e: Node) -> Node:
        inner = self.to_rank(self(branch), branch, e)
        if not e.shape:
            return mul(weight, inner)
        rows = broadcast_to(weight, e.shape)
        return scale_rows(reduce_sum(rows, 1) if is_column(e) else rows, inner)

    def r_take(self, e: Node) -> Node:
        """E[y] = S E for a vector E, S = onehot(y)."""
        table, labels = e.args
        return matmul(apply("onehot", labels, attrs=(table.shape[0],)), self(table))

    def r_scatter_rows(self, e: Node) -> Node:
        """scatter_add(g, y) = Sᵀ g for a vector g."""
        g, labels = e.args
        return matmul(transpose(apply("onehot", labels, attrs=(e.attrs.rows,))), self(g))

    def r_einsum(self, e: Node) -> Node:
        """An einsum that is no matrix product has no matrix form here (yet)."""
        raise NotDerived(EINSUM)

    r_reshape = r_einsum

    def r_concat(self, e: Node) -> Node:
        """[a; b] = [Mₐ; M_b] u: the blocks' matrices stacked."""
        return apply("concat", *(self(block) for block in e.args), attrs=(0,))

    def r_slice(self, e: Node) -> Node:
        """x[i:j] = M[i:j, :] u: the rows of the block."""
        return apply("slice", self(e.args[0]), attrs=tuple(e.attrs))


def is_column(e: Node) -> bool:
    return e.rank == 2 and e.shape[1] == ONE


def ones_row(n) -> Node:
    """𝟙ᵀ as a 1×n row."""
    return broadcast_to(const(1), (ONE, n))


def scale_rows(c: Node, m: Node) -> Node:
    """``diag(c) M``, distributed over the terms of a sum that simplify: ``diag(c) I =
    diag(c)``, ``diag(c) 𝟙 wᵀ = c wᵀ``; the other terms keep one ``diag(c) (…)``, so that
    nested sums do not multiply their terms."""
    if m.op != "add":
        return scale_rows_of_term(c, m)
    terms = [as_rows(term, m.shape) for term in m.args]
    simple = [t for t in terms if simplifies(t)]
    others = [t for t in terms if not simplifies(t)]
    scaled = [scale_rows_of_term(c, t) for t in simple]
    if others:
        scaled.append(matmul(apply("diag", c), add(*others)))
    return add(*scaled)


def simplifies(term: Node) -> bool:
    """``diag(c) term`` is simpler than the product: an identity or a repeated row."""
    _, rest = split_scalars(term)
    return rest.op == "identity" or rest.shape[0] == 1


def scale_rows_of_term(c: Node, m: Node) -> Node:
    scalars, rest = split_scalars(m)
    if scalars:
        return mul(*scalars, scale_rows_of_term(c, rest))
    if rest.shape[0] == 1:                       # one row wᵀ (a 1×1 I too), repeated down the rows
        return apply("outer", c, reduce_sum(rest, 0))
    if rest.op == "identity":
        return apply("diag", c)
    return matmul(apply("diag", c), rest)


def as_rows(term: Node, shape: tuple) -> Node:
    """A term of a matrix sum as a matrix: a vector or scalar broadcasts as one row."""
    if term.rank == 2:
        return term
    return broadcast_to(new_axis(term, 0) if term.rank == 1 else term, (ONE, shape[1]))


def linear_matrix(expression: Node, u: Node) -> Node:
    """``M`` with ``expression = M u`` (rank 1), or ``w`` with ``expression = wᵀ u`` (scalar)."""
    return LinearMatrix(u, expression)(expression)


def probe(shape: tuple) -> Node:
    """The probe ``ū`` of a Jacobian, shaped like the function (a name no program can use):
    ∂⟨ū, f⟩/∂x = Jᵀ ū is linear in ū, and its matrix is read off."""
    return var("ū", tuple(shape))
