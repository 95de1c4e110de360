"""Third- and fourth-order derivatives in Kronecker (vec) form (index form: :mod:`index_form`).

For a matrix function F(X) the Jacobian ∂vec(F)/∂vec(X) is read off the same way as a vector
Jacobian (:mod:`matcalc.forms.linear_map`): the rules give ∂⟨U, F⟩/∂X = L(U), linear in
the probe U, and ``vec(L(U)) = M vec(U)`` is read structurally with the vec identities
(column-major vec)

    vec(A U B) = (Bᵀ ⊗ A) vec(U)      vec(Uᵀ) = K vec(U)      vec(C ⊙ U) = diag(vec(C)) vec(U)

so that J = Mᵀ. ``A X B`` gives ``Bᵀ ⊗ A``, i.e. ∂Fᵢⱼ/∂Xₖₗ = Aᵢₖ Bₗⱼ.
"""

from __future__ import annotations

from matcalc.core.ir import (
    ONE,
    Node,
    as_matrix,
    const,
    identity,
    make,
    size,
    zeros,
)
from matcalc.core.simplify import (
    add,
    apply,
    broadcast_to,
    kron,
    matmul,
    mul,
    new_axis,
    transpose,
    transpose_matrix,
)
from matcalc.errors import MatcalcError, NotDerived
from matcalc.forms.linear_map import EINSUM, LinearReader, ones_row


def commutation(rows, cols) -> Node:
    """K with K vec(A) = vec(Aᵀ) for an rows×cols matrix A (the identity for a vector)."""
    if ONE in (rows, cols):
        return identity(rows * cols)
    return make("commutation", (), (rows, cols))


def broadcast_matrix(source: tuple, target: tuple) -> Node:
    """B with vec(broadcast(t)) = B vec(t), for NumPy broadcasting of ``source`` to ``target``."""
    (r, c) = as_matrix(target)
    if not source:
        return broadcast_to(const(1), (r * c, ONE))
    if len(source) == 1 and len(target) == 2:        # a vector broadcasts as a row
        (sr, sc) = (ONE, source[0])
    else:
        (sr, sc) = as_matrix(source)
    rows = identity(r) if sr == r else broadcast_to(const(1), (r,))
    cols = identity(c) if sc == c else broadcast_to(const(1), (c,))
    return kron(cols, rows)


STACKED = ("a Jacobian or Hessian through an array of rank 3 or more has no matrix or "
           "Kronecker form in matcalc yet; the gradient of a scalar function works, and for a "
           "Hessian a Hessian-vector product does (`matcalc hessian … --hvp V`)")


class KroneckerReader(LinearReader):
    """Reads ``M`` with ``vec(E) = M vec(U)`` for expressions linear in the probe ``U``."""

    def size(self, node: Node):
        return size(as_matrix(node.shape))

    def read(self, e: Node) -> Node:
        if e.rank > 2:
            raise NotDerived(STACKED)
        if e not in self.dependent:
            return zeros((self.size(e), self.size(self.u)))
        if e is self.u:
            return identity(self.size(e))
        method = getattr(self, "r_" + e.op, None)
        if method is None:
            raise MatcalcError(
                f"no Kronecker form for a Jacobian through {e.op}(…) yet; gradients of scalar "
                f"functions of it work (e.g. reduce it with sum(…) or norm(…))")
        return method(e)

    def widened(self, part: Node, e: Node) -> Node:
        """``part``'s matrix, broadcast to the shape of ``e`` where NumPy broadcasts it."""
        inner = self(part)
        if part.shape == e.shape:
            return inner
        return matmul(broadcast_matrix(part.shape, e.shape), inner)

    def r_add(self, e: Node) -> Node:
        return add(*(self.widened(t, e) for t in e.args if t in self.dependent))

    def r_mul(self, e: Node) -> Node:
        (factor,) = [f for f in e.args if f in self.dependent]
        others = [f for f in e.args if f is not factor]
        inner = self.widened(factor, e)
        if not others:
            return inner
        c = mul(*others)
        if not c.shape:
            return mul(c, inner)
        return matmul(apply("diag", apply("vec", broadcast_to(c, e.shape))), inner)

    def r_matmul(self, e: Node) -> Node:
        a, b = e.args
        if a in self.dependent and b in self.dependent:
            raise MatcalcError("the probe appears on both sides of a product")
        if b in self.dependent:                          # vec(A F) = (I ⊗ A) vec(F)
            if a.rank == 1:                              # aᵀ f
                return matmul(new_axis(a, 0), self(b))
            cols = as_matrix(b.shape)[1]
            return matmul(kron(identity(cols), a), self(b))
        rows = as_matrix(a.shape)[0]                     # vec(F B) = (Bᵀ ⊗ I) vec(F)
        if a.rank == 1 and b.rank == 1:
            return matmul(new_axis(b, 0), self(a))
        return matmul(kron(transpose_matrix(b), identity(rows)), self(a))

    def r_transpose(self, e: Node) -> Node:
        (x,) = e.args
        rows, cols = as_matrix(x.shape)
        return matmul(commutation(rows, cols), self(x))

    def r_solve(self, e: Node) -> Node:
        """vec(A⁻¹ B) = (I ⊗ A⁻¹) vec(B), for A that does not depend on the probe."""
        a, b = e.args
        if a in self.dependent:
            raise MatcalcError("no Kronecker form for a Jacobian through solve(A, B) with A "
                               "depending on the variable yet; take its HVP (--hvp V) instead")
        if b.rank == 1:
            return apply("solve", a, self(b))
        return matmul(kron(identity(b.shape[1]), apply("inv", a)), self(b))

    def r_sym(self, e: Node) -> Node:
        """vec((X + Xᵀ)/2) = (vec(X) + K vec(X)) / 2."""
        (x,) = e.args
        inner = self(x)
        return (inner + matmul(commutation(x.shape[0], x.shape[1]), inner)) / 2

    def r_tril(self, e: Node) -> Node:
        """vec(tril(X)) = diag(vec(tril(𝟙𝟙ᵀ))) vec(X): a mask, entry by entry."""
        (x,) = e.args
        mask = apply(e.op, broadcast_to(const(1), x.shape), attrs=e.attrs)
        return matmul(apply("diag", apply("vec", mask)), self(x))

    r_triu = r_tril

    def r_sum(self, e: Node) -> Node:
        (x,) = e.args
        axis = e.attrs.axis
        rows, cols = as_matrix(x.shape)
        if axis is None or x.rank == 1:
            reducer = broadcast_to(const(1), (ONE, rows * cols))
        elif axis == 0:
            reducer = kron(identity(cols), ones_row(rows))
        else:
            reducer = kron(ones_row(cols), identity(rows))
        return matmul(reducer, self(x))

    def r_concat(self, e: Node) -> Node:
        """vec([A, B]) = [vec A; vec B]; down the rows through transposes: [A; B] = [Aᵀ, Bᵀ]ᵀ,
        so vec([A; B]) = K [K vec A; K vec B]."""
        if e.rank == 1 or e.attrs.axis == 1:
            return apply("concat", *(self(b) for b in e.args), attrs=(0,))
        rows, cols = e.shape
        flipped = [matmul(commutation(b.shape[0], cols), self(b)) for b in e.args]
        return matmul(commutation(cols, rows), apply("concat", *flipped, attrs=(0,)))

    def r_slice(self, e: Node) -> Node:
        """Columns s … t − 1 of X are entries s·rows … t·rows − 1 of vec(X); rows through
        transposes, as for concat."""
        (x,) = e.args
        axis, start, stop = e.attrs
        inner = self(x)
        if x.rank == 1:
            return apply("slice", inner, attrs=(0, start, stop))
        rows, cols = x.shape
        if axis == 1:
            return apply("slice", inner, attrs=(0, start * rows, stop * rows))
        columns = apply("slice", matmul(commutation(rows, cols), inner),
                        attrs=(0, start * cols, stop * cols))   # vec(Xᵀ[:, s:t])
        return matmul(commutation(cols, stop - start), columns)

    def r_kron(self, e: Node) -> Node:
        """vec(A ⊗ B) = R (vec A ⊗ vec B), R = I_n ⊗ K_(q,m) ⊗ I_p (Magnus & Neudecker), and
        vec A ⊗ vec B = (I ⊗ vec B) vec A = (vec A ⊗ I) vec B."""
        a, b = e.args
        if a in self.dependent and b in self.dependent:
            raise MatcalcError("the probe appears on both sides of a Kronecker product")
        (m, n), (p, q) = as_matrix(a.shape), as_matrix(b.shape)
        shuffle = kron(kron(identity(n), commutation(q, m)), identity(p))
        if a in self.dependent:
            return matmul(shuffle, matmul(kron(identity(m * n), apply("vec", b)), self(a)))
        return matmul(shuffle, matmul(kron(apply("vec", a), identity(p * q)), self(b)))

    def r_block_sums(self, e: Node) -> Node:
        """block_sums(X) = (I_m ⊗ 𝟙ᵀ_p) X (I_n ⊗ 𝟙_q): vec by vec(L X R) = (Rᵀ ⊗ L) vec X."""
        m, n, p, q = e.attrs
        left = kron(identity(m), ones_row(p))
        right_t = kron(identity(n), ones_row(q))
        return matmul(kron(right_t, left), self(e.args[0]))

    def r_sum_of_blocks(self, e: Node) -> Node:
        """sum_of_blocks(X) = (𝟙ᵀ_m ⊗ I_p) X (𝟙_n ⊗ I_q)."""
        m, n, p, q = e.attrs
        left = kron(ones_row(m), identity(p))
        right_t = kron(ones_row(n), identity(q))
        return matmul(kron(right_t, left), self(e.args[0]))

    def r_where(self, e: Node) -> Node:
        """vec(where(c, a, b)) = diag(vec(c)) vec(a) + diag(vec(1 − c)) vec(b)."""
        c, a, b = e.args
        return add(*(self.masked(weight, branch, e) for branch, weight in ((a, c), (b, 1 - c))
                     if branch in self.dependent))

    def masked(self, weight: Node, branch: Node, e: Node) -> Node:
        inner = self.widened(branch, e)
        if not e.shape:
            return mul(weight, inner)
        return matmul(apply("diag", apply("vec", broadcast_to(weight, e.shape))), inner)

    def r_take(self, e: Node) -> Node:
        """E[y] = S E with S = onehot(y) the rows of I at the labels: vec = (I ⊗ S) vec(E)."""
        table, labels = e.args
        select = apply("onehot", labels, attrs=(table.shape[0],))
        return matmul(kron(identity(as_matrix(table.shape)[1]), select), self(table))

    def r_scatter_rows(self, e: Node) -> Node:
        """scatter_add(G, y) = Sᵀ G: vec = (I ⊗ Sᵀ) vec(G)."""
        g, labels = e.args
        select = apply("onehot", labels, attrs=(e.attrs.rows,))
        return matmul(kron(identity(as_matrix(g.shape)[1]), transpose(select)), self(g))

    def r_einsum(self, e: Node) -> Node:
        """An einsum that is no matrix product has no Kronecker form here (yet)."""
        raise NotDerived(EINSUM)

    r_reshape = r_einsum

    def r_expand(self, e: Node) -> Node:
        return self(e.args[0])

    def r_broadcast(self, e: Node) -> Node:
        return self.widened(e.args[0], e)

    def r_diag(self, e: Node) -> Node:
        (x,) = e.args
        embedding = make("diag_embedding", (), (x.shape[0],))
        if x.rank == 1:                                  # vec(diag(v)) = E v
            return matmul(embedding, self(x))
        return matmul(transpose(embedding), self(x))     # diag(X) = Eᵀ vec(X)

    def r_outer(self, e: Node) -> Node:
        a, b = e.args
        if a in self.dependent:                          # vec(f bᵀ) = (b ⊗ I) f
            return matmul(kron(b, identity(a.shape[0])), self(a))
        return matmul(kron(identity(b.shape[0]), a), self(b))  # vec(a fᵀ) = (I ⊗ a) f


def kronecker_matrix(expression: Node, u: Node) -> Node:
    """``M`` with ``vec(expression) = M vec(u)``."""
    return KroneckerReader(u, expression)(expression)
