"""Textbook recognition: the functions a program spells out by their definitions, rewritten
to the primitives they are before anything is differentiated.

A learner writes binary cross-entropy as ``-sum(y * log(p) + (1 - y) * log(1 - p)) / N`` with
``p = 1 / (1 + exp(-z))``; the book's gradient is Xᵀ (p − y) / N, and the book's code is
stable for any logits. Recognising ``1/(1 + exp(−z))`` as σ(z) and ``log σ(z)`` as
``−softplus(−z)`` gives both. Each entry of :data:`RECOGNITIONS` is one identity, its side
condition inside its matcher, and ``tests/test_rewrites.py`` checks each numerically.
:data:`KERNELS` are recognised for generated code only (``tests/test_kernels.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy

from matcalc.core.ir import (
    ONE,
    Node,
    const,
    const_value,
    definition_of,
    identity,
    matmul_chain,
    normalise_axis,
    postorder,
    size,
)
from matcalc.core.rules import call, complement, rows, sigmoid
from matcalc.core.simplify import (
    add,
    apply,
    broadcast_to,
    matmul,
    mul,
    negated,
    new_axis,
    power,
    rebuild,
    reduce_sum,
    transpose,
)


@dataclass(frozen=True)
class Rewrite:
    """One identity: ``match(node)`` is the node rewritten, or None where it does not apply."""

    name: str
    identity: str
    match: Callable[[Node], Node | None]


def inverse_of(node: Node) -> Node | None:
    """``b`` of ``b⁻¹`` (``pow(b, −1)``), else None."""
    return node.args[0] if node.op == "pow" and const_value(node.args[1]) == -1 else None


def one_plus(node: Node) -> Node | None:
    """``u`` of ``1 + u``, else None."""
    node = definition_of(node)
    if node.op != "add" or len(node.args) != 2:
        return None
    first, second = node.args
    if const_value(first) == 1:
        return second
    return first if const_value(second) == 1 else None


def negation(node: Node) -> Node | None:
    """``u`` of ``−u`` (through names), else None."""
    return negated(definition_of(node))


def argument(node: Node, op: str) -> Node | None:
    """``u`` of ``op(u)`` (through names), else None."""
    node = definition_of(node)
    return node.args[0] if node.op == op else None


softplus = call("softplus")


# ----------------------------------------------------------------------------------------------
# The identities


MAX_FACTORS = 32
"""Products of more factors are not searched for pairs (a chain of thousands is no textbook
form, and the search is quadratic)."""


def in_products(pair: Callable[[Node, Node], Node | None]) -> Callable[[Node], Node | None]:
    """A rule for two factors of a product, tried on every ordered pair of its factors (the
    others kept): ``exp(u) ⊙ σ(−u) ⊙ x`` is ``σ(u) ⊙ x``."""

    def match(node: Node) -> Node | None:
        if node.op != "mul" or len(node.args) > MAX_FACTORS:
            return None
        for i, first in enumerate(node.args):
            for j, second in enumerate(node.args):
                found = pair(first, second) if i != j else None
                if found is not None:
                    rest = (f for k, f in enumerate(node.args) if k not in (i, j))
                    return mul(found, *rest)
        return None

    return match


def reciprocal_sigmoid(node: Node) -> Node | None:
    """1 / (1 + exp(u)) = σ(−u) (and its powers: (1 + exp(u))⁻ᵏ = σ(−u)ᵏ)."""
    k = -const_value(node.args[1]) if node.op == "pow" and const_value(node.args[1]) else None
    if k is None or not k.is_positive:
        return None
    inner = one_plus(node.args[0])
    u = argument(inner, "exp") if inner is not None else None
    return power(sigmoid(-u), const(k)) if u is not None else None


def ratio_sigmoid(first: Node, second: Node) -> Node | None:
    """exp(u) / (1 + exp(u)) = exp(u) σ(−u) = σ(u) (the denominator is recognised first)."""
    v = argument(second, "sigmoid")
    u = negation(v) if v is not None else None
    return sigmoid(u) if u is not None and argument(first, "exp") is u else None


def one_plus_argument(node: Node) -> Node | None:
    """``u`` of ``log(1 + u)`` or ``log1p(u)``, else None."""
    if node.op == "log1p":
        return node.args[0]
    return one_plus(node.args[0]) if node.op == "log" else None


def log_one_plus_exp(node: Node) -> Node | None:
    """log(1 + exp(u)) = log1p(exp(u)) = softplus(u)."""
    inner = one_plus_argument(node)
    u = argument(inner, "exp") if inner is not None else None
    return softplus(u) if u is not None else None


def log_sigmoid(node: Node) -> Node | None:
    """log σ(u) = −softplus(−u)."""
    u = argument(node.args[0], "sigmoid") if node.op == "log" else None
    return -softplus(-u) if u is not None else None


def log_one_minus_sigmoid(node: Node) -> Node | None:
    """log(1 − σ(u)) = log1p(−σ(u)) = −softplus(u)."""
    inner = one_plus_argument(node)
    s = negation(inner) if inner is not None else None
    u = argument(s, "sigmoid") if s is not None else None
    return -softplus(u) if u is not None else None


def exponentials(node: Node) -> Node | None:
    """exp(u) + exp(−u) = 2 cosh(u), exp(u) − exp(−u) = 2 sinh(u)."""
    if node.op != "add" or len(node.args) != 2:
        return None
    for u in (argument(a, "exp") for a in node.args):
        if u is None:
            continue
        plus, minus = apply("exp", u), apply("exp", -u)
        if node is add(plus, minus):
            return mul(const(2), apply("cosh", u))
        if node is add(plus, -minus):
            return mul(const(2), apply("sinh", u))
    return None


def sinh_over_cosh(numerator: Node, reciprocal: Node) -> Node | None:
    """sinh(u) / cosh(u) = tanh(u)."""
    u = argument(numerator, "sinh")
    denominator = inverse_of(reciprocal)
    if u is None or denominator is None or argument(denominator, "cosh") is not u:
        return None
    return apply("tanh", u)


def sigmoid_tanh(node: Node) -> Node | None:
    """2 σ(2u) − 1 = tanh(u)."""
    if node.op != "add" or len(node.args) != 2:
        return None
    for scaled, one in (node.args, node.args[::-1]):
        s = definition_of(scaled)
        if const_value(one) == -1 and s.op == "mul" and len(s.args) == 2 and const_value(
                s.args[0]) == 2 and argument(s.args[1], "sigmoid") is not None:
            return apply("tanh", mul(const(sympy.Rational(1, 2)), argument(s.args[1], "sigmoid")))
    return None


def exp_ratio_tanh(difference: Node, logistic: Node) -> Node | None:
    """(eʷ − 1) / (eʷ + 1) = (eʷ − 1) σ(−w) = tanh(w/2), and (1 − eʷ) σ(−w) = −tanh(w/2)
    (the denominator is recognised first)."""
    v = argument(logistic, "sigmoid")
    d = definition_of(difference)
    if v is None or d.op != "add" or len(d.args) != 2:
        return None
    w = -v
    for first, second in (d.args, d.args[::-1]):
        if argument(first, "exp") is w and const_value(second) == -1:
            return apply("tanh", mul(const(sympy.Rational(1, 2)), w))
        if const_value(first) == 1 and negation(second) is not None and argument(
                negation(second), "exp") is w:
            return apply("tanh", mul(const(sympy.Rational(-1, 2)), w))
    return None


def normalised_exp(numerator: Node, reciprocal: Node) -> Node | None:
    """exp(u) / sum(exp(u), axis, keepdims=True) = softmax(u, axis) (every entry for None)."""
    total = inverse_of(reciprocal)
    u = argument(numerator, "exp")
    if total is None or u is None or definition_of(total).op != "sum":
        return None
    axis, keepdims = definition_of(total).attrs
    if definition_of(total).args[0] is definition_of(numerator) and (keepdims or axis is None):
        return apply("softmax", u, attrs=(axis,))
    return None


def root_of_squares(node: Node) -> Node | None:
    """√(Σ x²) = √(xᵀ x) = ‖x‖, the Euclidean norm (Frobenius for a matrix)."""
    root = node.op == "sqrt" or node.op == "pow" and const_value(node.args[1]) == sympy.S.Half
    s = definition_of(node.args[0]) if root else None
    if s is not None and s.op == "matmul" and s.args[0] is s.args[1] and s.args[0].rank == 1:
        return apply("norm", s.args[0])
    if s is None or s.op != "sum" or tuple(s.attrs) != (None, False):
        return None
    squares = definition_of(s.args[0])
    if squares.op == "pow" and const_value(squares.args[1]) == 2:
        return apply("norm", squares.args[0])
    if squares.op == "mul" and len(squares.args) == 2 and squares.args[0] is squares.args[1]:
        return apply("norm", squares.args[0])
    return None


def log_cosh(node: Node) -> Node | None:
    """log cosh(u) = logcosh(u), computed without overflow."""
    u = argument(node.args[0], "cosh") if node.op == "log" else None
    return apply("logcosh", u) if u is not None else None


def log_of_softmax(node: Node) -> Node | None:
    """log softmax(u) = log_softmax(u)."""
    s = definition_of(node.args[0]) if node.op == "log" else None
    if s is None or s.op != "softmax":
        return None
    return apply("log_softmax", s.args[0], attrs=tuple(s.attrs))


def log_sum_exp(node: Node) -> Node | None:
    """log sum(exp(u), axis) = logsumexp(u, axis) (its axis kept with keepdims)."""
    total = definition_of(node.args[0]) if node.op == "log" else None
    u = argument(total.args[0], "exp") if total is not None and total.op == "sum" else None
    if u is None:
        return None
    axis, keepdims = total.attrs
    result = apply("logsumexp", u, attrs=(axis,))
    if not keepdims:
        return result
    return broadcast_to(result, (ONE,) * u.rank) if axis is None else new_axis(
        result, axis)


def minus_logsumexp(node: Node) -> Node | None:
    """u − logsumexp(u, axis, keepdims=True) = log_softmax(u, axis)."""
    if node.op != "add" or len(node.args) != 2:
        return None
    for u, other in (node.args, node.args[::-1]):
        kept = negation(other)
        kept = definition_of(kept) if kept is not None else None
        if kept is None or kept.op != "expand" or definition_of(kept.args[0]).op != "logsumexp":
            continue
        total = definition_of(kept.args[0])
        axis = total.attrs[0]
        if total.args[0] is u and axis is not None and normalise_axis(kept.attrs[0], u.rank) == \
                normalise_axis(axis, u.rank):
            return apply("log_softmax", u, attrs=(axis,))
    return None


def shifted_softmax(node: Node) -> Node | None:
    """softmax(u − c) = softmax(u) and log_softmax(u − c) = log_softmax(u) for c constant
    along the axis (the max of CS231n's stable form)."""
    if node.op not in ("softmax", "log_softmax") or node.attrs[0] is None:
        return None
    x = definition_of(node.args[0])
    if x.op != "add" or len(x.args) != 2:
        return None
    axis = normalise_axis(node.attrs[0], x.rank)
    for u, other in (x.args, x.args[::-1]):
        c = negation(other)
        if c is not None and u.shape == x.shape and c.rank == x.rank and c.shape[axis] == 1:
            return apply(node.op, u, attrs=tuple(node.attrs))
    return None


def cross_entropy(node: Node) -> Node | None:
    """c Σ Y ⊙ log_softmax(Z) over the last axis = (−c N) softmax_cross_entropy(Z, Y), N the
    rows of Z (the cross-entropy is −Σ Y ⊙ log_softmax(Z) / N, for any targets Y)."""
    if node.op != "mul" or len(node.args) != 2 or const_value(node.args[0]) is None:
        return None
    coefficient, total = const_value(node.args[0]), definition_of(node.args[1])
    if total.op != "sum" or total.shape or definition_of(total.args[0]).op != "mul":
        return None                          # (a sum with keepdims is an array, not the loss)
    product = definition_of(total.args[0])
    if len(product.args) != 2:
        return None
    for y, log_probabilities in (product.args, product.args[::-1]):
        z = definition_of(log_probabilities)
        if (z.op == "log_softmax" and y.shape == z.shape and z.rank >= 1
                and normalise_axis(z.attrs[0] if z.attrs[0] is not None else -1, z.rank)
                == z.rank - 1 and (z.rank == 1 or z.attrs[0] is not None)):
            logits = z.args[0]
            loss = apply("softmax_cross_entropy", logits, y)
            return mul(const(-coefficient * rows(logits)), loss)
    return None


def mean_of(node: Node) -> tuple[Node, int, bool] | None:
    """``(x, axis, keepdims)`` of mean(x, axis), written sum(x, axis) / n (through names)."""
    node = definition_of(node)
    if node.op != "mul" or len(node.args) != 2 or const_value(node.args[0]) is None:
        return None
    total = definition_of(node.args[1])
    if total.op != "sum" or total.attrs.axis is None:
        return None
    x = total.args[0]
    axis = normalise_axis(total.attrs.axis, x.rank)
    if const_value(node.args[0]) != 1 / x.shape[axis]:
        return None
    return x, axis, total.attrs.keepdims


def same_value(a: Node, b: Node) -> bool:
    """The same node, or names of the same definition."""
    return definition_of(a) is definition_of(b)


def mean_removed(node: Node) -> tuple[Node, int, bool] | None:
    """``(x, axis, keepdims)`` of x − mean(x, axis) (through names), else None."""
    z = definition_of(node)
    if z.op != "add" or len(z.args) != 2:
        return None
    for x, other in (z.args, z.args[::-1]):
        mean = negation(other)
        found = mean_of(mean) if mean is not None else None
        if found is not None and same_value(found[0], x) and x.shape == z.shape:
            return x, found[1], found[2]
    return None


def inverse_root(node: Node) -> Node | None:
    """``v`` of 1 / √v, written ``v ** (−1/2)`` or ``1 / sqrt(v)`` (through names)."""
    node = definition_of(node)
    if node.op != "pow":
        return None
    k = const_value(node.args[1])
    if k == sympy.Rational(-1, 2):
        return node.args[0]
    root = definition_of(node.args[0])
    return root.args[0] if k == -1 and root.op == "sqrt" else None


def mean_square_plus(node: Node) -> tuple[Node, int, bool, sympy.Expr] | None:
    """``(z, axis, keepdims, ε)`` of mean(z², axis) + ε, ε ≥ 0 a number (through names)."""
    node = definition_of(node)
    eps = sympy.Integer(0)
    if node.op == "add" and len(node.args) == 2:
        for c, rest in (node.args, node.args[::-1]):
            number = const_value(c.args[0] if c.op == "broadcast" else c)   # (ε 𝟙 alike)
            if number is not None:
                eps, node = number, definition_of(rest)
                break
    found = mean_of(node)
    square = definition_of(found[0]) if found is not None else None
    if square is None or square.op != "pow" or const_value(square.args[1]) != 2 or not (
            eps.is_number and eps >= 0):
        return None
    return square.args[0], found[1], found[2], eps


def kept_axis(x: Node, axis: int, keepdims: bool) -> bool:
    """Whether a reduction of x along ``axis`` broadcasts back along that axis alone (with
    keepdims, or without it along the leading axis): it centres x, not some other axis."""
    if keepdims:
        return True
    kept = tuple(ONE if k == axis else d for k, d in enumerate(x.shape))
    reduced = kept[:axis] + kept[axis + 1:]
    return (ONE,) * (x.rank - len(reduced)) + reduced == kept


def standardised(centred: Node, scale: Node) -> Node | None:
    """(x − mean(x)) / √(mean((x − mean(x))²) + ε) along an axis = standardize(x, axis, ε),
    the normalisation of layer and batch norm."""
    removed = mean_removed(centred)
    root = inverse_root(scale)
    spread = mean_square_plus(root) if removed is not None and root is not None else None
    if spread is None or not same_value(spread[0], centred):
        return None
    (x, axis, keepdims), (_, spread_axis, spread_keepdims, eps) = removed, spread
    if spread_axis != axis or not kept_axis(x, axis, keepdims) or not kept_axis(
            x, axis, spread_keepdims):
        return None
    return apply("standardize", x, attrs=(axis, eps))


RECOGNITIONS: Sequence[Rewrite] = (
    Rewrite("sigmoid", "1 / (1 + exp(−u)) = σ(u)", reciprocal_sigmoid),
    Rewrite("sigmoid ratio", "exp(u) / (1 + exp(u)) = σ(u)", in_products(ratio_sigmoid)),
    Rewrite("softplus", "log(1 + exp(u)) = softplus(u)", log_one_plus_exp),
    Rewrite("log sigmoid", "log σ(u) = −softplus(−u)", log_sigmoid),
    Rewrite("log one minus sigmoid", "log(1 − σ(u)) = −softplus(u)", log_one_minus_sigmoid),
    Rewrite("cosh and sinh", "exp(u) ± exp(−u) = 2 cosh(u), 2 sinh(u)", exponentials),
    Rewrite("tanh", "sinh(u) / cosh(u) = tanh(u)", in_products(sinh_over_cosh)),
    Rewrite("tanh by sigmoid", "2 σ(2u) − 1 = tanh(u)", sigmoid_tanh),
    Rewrite("tanh by exponentials", "(eʷ − 1) / (eʷ + 1) = tanh(w/2)",
            in_products(exp_ratio_tanh)),
    Rewrite("softmax", "exp(u) / sum(exp(u), axis, keepdims=True) = softmax(u, axis)",
            in_products(normalised_exp)),
    Rewrite("log softmax", "log softmax(u) = log_softmax(u)", log_of_softmax),
    Rewrite("log cosh", "log cosh(u) = logcosh(u)", log_cosh),
    Rewrite("norm", "√(Σ x²) = √(xᵀ x) = ‖x‖", root_of_squares),
    Rewrite("logsumexp", "log sum(exp(u)) = logsumexp(u)", log_sum_exp),
    Rewrite("log softmax by logsumexp", "u − logsumexp(u, keepdims=True) = log_softmax(u)",
            minus_logsumexp),
    Rewrite("shifted softmax", "softmax(u − c) = softmax(u), c constant along the axis",
            shifted_softmax),
    Rewrite("cross-entropy", "−Σ Y ⊙ log_softmax(Z) / N = softmax_cross_entropy(Z, Y)",
            cross_entropy),
)
"""The definitions matcalc recognises, tried in order at every node, innermost first."""

KERNELS: Sequence[Rewrite] = (
    Rewrite("standardisation", "(x − mean(x)) / √(mean((x − mean(x))²) + ε) = standardize(x)",
            in_products(standardised)),
)
"""Operations generated code computes with a kernel of their own (torch's layer_norm) and
with a shorter backward pass (x̄ = (Ḡ − mean(Ḡ) − x̂ ⊙ mean(Ḡ ⊙ x̂)) / √(σ² + ε)), recognised
for code generation only: printed derivatives keep the intermediates a program names."""

# ----------------------------------------------------------------------------------------------
# After differentiation: what a person does to a derivative (elementwise algebra aside, which
# :mod:`matcalc.core.algebra` does)


def trace_of_identity_product(node: Node) -> Node | None:
    """sum(I ⊙ M) = tr(M) (and sum(diag(M)) = tr(M))."""
    if node.op != "sum" or node.attrs[0] is not None:
        return None
    inner = node.args[0]
    if inner.op == "diag" and inner.args[0].rank == 2 and (
            inner.args[0].shape[0] == inner.args[0].shape[1]):
        return apply("trace", inner.args[0])
    if inner.op != "mul" or len(inner.args) != 2:
        return None
    for eye, m in (inner.args, inner.args[::-1]):
        if eye.op == "identity" and m.shape == eye.shape:   # (a row broadcast is not M)
            return apply("trace", m)
    return None


def trace_of_outer(node: Node) -> Node | None:
    """tr(L a bᵀ R) = bᵀ R L a: a trace with an outer product in it is a bilinear form."""
    if node.op != "trace":
        return None
    chain = matmul_chain(node.args[0])
    for i, factor in enumerate(chain):
        if factor.op == "outer":
            a, b = factor.args
            around = [*chain[i + 1:], *chain[:i]]          # R, then L: cyclic
            middle = a
            for m in reversed(around):
                middle = matmul(m, middle)
            return matmul(b, middle)
    return None


def inverse_of_product(node: Node) -> Node | None:
    """(A X B)⁻¹ = B⁻¹ X⁻¹ A⁻¹ for square factors (all invertible where the product is), used
    where a factor then meets its inverse in the product around it: Aᵀ (A X B)⁻ᵀ Bᵀ = X⁻ᵀ."""
    if node.op != "matmul" or node.rank != 2:
        return None
    chain = matmul_chain(node)
    for i, factor in enumerate(chain):
        base, inverted, transposed = peeled(factor)
        inner = matmul_chain(base)
        if not inverted or len(inner) < 2 or any(m.shape[0] != m.shape[1] for m in inner):
            continue
        inverses = [apply("inv", m) for m in reversed(inner)]
        if transposed:
            inverses = [transpose(m) for m in reversed(inverses)]
        kept = without_inverse_pairs([*chain[:i], *inverses, *chain[i + 1:]])
        if kept and len(kept) < len(chain):
            return product_of(kept)
    return None


def spectral_power(node: Node) -> Node | None:
    """V diag(λ(S)ᵏ) Vᵀ = Sᵏ, V the eigenvectors of a symmetric S (S itself for k = 1), and
    V Vᵀ = I: the gradient of sum(λ(S)ᵏ⁺¹)/(k + 1), tr(Sᵏ⁺¹)/(k + 1), as the book writes it."""
    if node.op != "matmul" or node.rank != 2:
        return None
    chain = matmul_chain(node)
    for i in range(len(chain) - 1):                  # V Vᵀ = Vᵀ V = I: V is orthogonal
        a, b = chain[i:i + 2]
        if "eigenvectors" in (a.op, b.op) and b == transpose(a):
            rest = [*chain[:i], *chain[i + 2:]]
            return product_of(rest) if rest else identity(a.shape[0])
    for i in range(len(chain) - 2):
        v, d, vt = chain[i:i + 3]
        if v.op != "eigenvectors" or d.op != "diag" or vt != transpose(v):
            continue
        s, k = v.args[0], spectral_exponent(d.args[0], v.args[0])
        if k is not None:
            power_of_s = written_out(s) if k == 1 else apply("matrix_power", s, attrs=(k,))
            return product_of([*chain[:i], power_of_s, *chain[i + 3:]])
    return None


def written_out(s: Node) -> Node:
    """sym(X) as (X + Xᵀ)/2, which a factor 2 then cancels (eigvalsh reads a matrix not
    symmetric by construction through its symmetric part); any other matrix as it is."""
    if s.op != "sym":
        return s
    x = s.args[0]
    return mul(const(sympy.Rational(1, 2)), add(x, transpose(x)))


def spectral_exponent(d: Node, s: Node) -> int | None:
    """k ≥ 1 when ``d`` is λ(s)ᵏ (an integer power of s's eigenvalues), else None."""
    k = const_value(d.args[1]) if d.op == "pow" else sympy.Integer(1)
    base = d.args[0] if d.op == "pow" else d
    if base.op != "eigvalsh" or base.args[0] != s or k is None or not (k.is_integer and k >= 1):
        return None
    return int(k)


def product_of(chain: Sequence[Node]) -> Node:
    product = chain[0]
    for m in chain[1:]:
        product = matmul(product, m)
    return product


def diagonal(term: Node) -> tuple[Node, Node] | None:
    """``(c, a)`` of ``c diag(a)`` for a vector ``a`` and a scalar ``c`` (1 if none)."""
    if term.op == "diag" and term.args[0].rank == 1:
        return const(1), term.args[0]
    found = [f for f in factors(term) if f.op == "diag" and f.args[0].rank == 1]
    if term.op != "mul" or len(found) != 1 or any(f.shape for f in term.args if f is not found[0]):
        return None
    return without(term, found[0]), found[0].args[0]


def sum_of_diagonals(node: Node) -> Node | None:
    """c diag(a) + diag(b) = diag(c a + b): a sum of diagonal matrices is one."""
    parts = [diagonal(a) for a in node.args] if node.op == "add" and node.rank == 2 else [None]
    if None in parts:
        return None
    return apply("diag", add(*(mul(c, a) for c, a in parts)))


def product_of_diagonals(node: Node) -> Node | None:
    """diag(a) diag(b) = diag(a ⊙ b), where two meet in a product."""
    chain = matmul_chain(node) if node.op == "matmul" else []
    for i in range(len(chain) - 1):
        first, second = diagonal(chain[i]), diagonal(chain[i + 1])
        if first is not None and second is not None:
            merged = apply("diag", mul(first[0], second[0], first[1], second[1]))
            return product_of([*chain[:i], merged, *chain[i + 2:]])
    return None


def peeled(m: Node) -> tuple[Node, bool, bool]:
    """``(B, inverted, transposed)`` of m = B, B⁻¹, Bᵀ or B⁻ᵀ."""
    inverted = transposed = False
    while m.op in ("inv", "transpose"):
        inverted, transposed = inverted ^ (m.op == "inv"), transposed ^ (m.op == "transpose")
        m = m.args[0]
    return m, inverted, transposed


def without_inverse_pairs(chain: Sequence[Node]) -> list[Node]:
    """A product's factors with each factor next to its inverse dropped (A A⁻¹ = I)."""
    kept: list[Node] = []
    for m in chain:
        if kept and cancel(kept[-1], m):
            kept.pop()
        else:
            kept.append(m)
    return kept


def cancel(a: Node, b: Node) -> bool:
    (base_a, inv_a, t_a), (base_b, inv_b, t_b) = peeled(a), peeled(b)
    return base_a is base_b and t_a == t_b and inv_a != inv_b


def rows_of_scaled(node: Node) -> Node | None:
    """sum(diag(a) B, axis=0) = Bᵀ a: the rows of B weighted by a, added up."""
    if node.op != "sum" or tuple(node.attrs) != (0, False) or node.args[0].op != "matmul":
        return None
    d, b = node.args[0].args
    if d.op != "diag" or d.args[0].rank != 1 or b.rank != 2:
        return None
    return matmul(transpose(b), d.args[0])


def outer_of_product(node: Node) -> Node | None:
    """a (M c)ᵀ = (a cᵀ) Mᵀ and (M c) aᵀ = M (c aᵀ): the product's factor outside, where a
    common factor of a sum can be collected (diag(s) W − s sᵀ W = (diag(s) − s sᵀ) W)."""
    if node.op != "outer":
        return None
    a, b = node.args
    if b.op == "matmul" and b.args[0].rank == 2 and b.args[1].rank == 1:
        return matmul(apply("outer", a, b.args[1]), transpose(b.args[0]))
    if a.op == "matmul" and a.args[0].rank == 2 and a.args[1].rank == 1:
        return matmul(a.args[0], apply("outer", a.args[1], b))
    return None


def diagonal_of_outer(node: Node) -> Node | None:
    """diag(a bᵀ) = a ⊙ b, and the diagonal of a constant matrix is that constant: no n × n
    matrix is formed to read n numbers."""
    if node.op != "diag" or node.args[0].rank != 2:
        return None
    m = node.args[0]
    if m.op == "outer":
        return mul(*m.args)
    if m.op == "broadcast" and not m.args[0].shape:
        return broadcast_to(m.args[0], (m.shape[0],))
    return None


def rectified_mask(first: Node, second: Node) -> Node | None:
    """relu(u)ᵏ ⊙ 1[u > 0] = relu(u)ᵏ for k > 0: the mask is 1 wherever relu(u) is not 0."""
    base, k = (first.args[0], const_value(first.args[1])) if first.op == "pow" else (first, ONE)
    u = argument(base, "relu") if k is not None and k.is_positive is True else None
    return first if u is not None and second.op == "step" and second.args[0] is u else None


def unscaled_step(node: Node) -> Node | None:
    """1[c u > 0] = 1[u > 0] and H(c u) = H(u) for a number c > 0."""
    u = node.args[0] if node.op in ("step", "heaviside") else None
    if u is None or u.op != "mul" or const_value(u.args[0]) is None or (
            const_value(u.args[0]).is_positive is not True):          # (n − 3) may be ≤ 0
        return None
    return apply(node.op, mul(*u.args[1:]))


def product_of_constants(node: Node) -> Node | None:
    """(c 𝟙)ᵀ (d 𝟙) = c d n: a matrix product of constant arrays is a constant array."""
    if node.op != "matmul" or any(a.op != "broadcast" or a.args[0].op != "const"
                                  for a in node.args):
        return None
    a, b = node.args
    inner = a.shape[-1] if a.rank else ONE
    value = const_value(a.args[0]) * const_value(b.args[0]) * inner
    return broadcast_to(const(value), node.shape)


def kronecker_of_a_number(node: Node) -> Node | None:
    """A ⊗ b = b A for b with one entry (``P ⊗ (𝟙ᵀ 𝟙)`` is ``N P``)."""
    if node.op != "kron":
        return None
    for m, s in (node.args, node.args[::-1]):
        if size(s.shape) == 1 and m.shape == node.shape:
            number = s.args[0] if s.op == "broadcast" and not s.args[0].shape else reduce_sum(s)
            return mul(number, m)
    return None


def select(node: Node) -> Node | None:
    """c ⊙ a + (1 − c) ⊙ b = where(c, a, b) for a mask c = 1[u > 0]: each entry's branch."""
    if node.op != "add" or len(node.args) != 2:
        return None
    for first, second in (node.args, node.args[::-1]):
        for c in factors(first):
            if c.op == "step" and complement(c) in factors(second):
                return apply("where", c, without(first, c), without(second, complement(c)))
    return None


def factors(node: Node) -> tuple[Node, ...]:
    return node.args if node.op == "mul" else (node,)


def without(product: Node, factor: Node) -> Node:
    """``product`` with one ``factor`` taken out (1 where it was the only one)."""
    rest = list(factors(product))
    rest.remove(factor)
    return mul(*rest) if rest else const(1)


SIMPLIFICATIONS: Sequence[Rewrite] = (
    Rewrite("trace", "sum(I ⊙ M) = tr(M)", trace_of_identity_product),
    Rewrite("trace of an outer product", "tr(L a bᵀ R) = bᵀ R L a", trace_of_outer),
    Rewrite("weighted rows", "sum(diag(a) B, axis=0) = Bᵀ a", rows_of_scaled),
    Rewrite("inverse of a product", "Aᵀ (A X B)⁻ᵀ Bᵀ = X⁻ᵀ for square A, X, B",
            inverse_of_product),
    Rewrite("outer of a product", "a (M c)ᵀ = (a cᵀ) Mᵀ", outer_of_product),
    Rewrite("diagonal of an outer product", "diag(a bᵀ) = a ⊙ b, diag(c 𝟙𝟙ᵀ) = c 𝟙",
            diagonal_of_outer),
    Rewrite("select", "c ⊙ a + (1 − c) ⊙ b = where(c, a, b) for a mask c", select),
    Rewrite("unscaled step", "1[c u > 0] = 1[u > 0], H(c u) = H(u) for c > 0", unscaled_step),
    Rewrite("product of constants", "(c 𝟙)ᵀ (d 𝟙) = c d n", product_of_constants),
    Rewrite("Kronecker product with a number", "A ⊗ b = b A for a one-entry b",
            kronecker_of_a_number),
    Rewrite("sum of diagonals", "c diag(a) + diag(b) = diag(c a + b)", sum_of_diagonals),
    Rewrite("product of diagonals", "diag(a) diag(b) = diag(a ⊙ b)", product_of_diagonals),
    Rewrite("spectral decomposition", "V diag(λ(S)ᵏ) Vᵀ = Sᵏ for S = V diag(λ) Vᵀ symmetric",
            spectral_power),
    Rewrite("rectified mask", "relu(u)ᵏ ⊙ 1[u > 0] = relu(u)ᵏ (k > 0)",
            in_products(rectified_mask)),
)
"""What a person does to a derivative before writing it down, tried after the recognitions."""

MAX_PASSES = 8
"""Rewrites of one node in a row at most (each makes it a primitive, so few ever chain)."""


def recognise(roots: Sequence[Node]) -> dict[Node, Node]:
    """Every node under ``roots`` with the recognitions applied, innermost first: the old node
    to the new (the same node where nothing changed)."""
    return rewritten(roots, RECOGNITIONS)


def recognise_kernels(roots: Sequence[Node]) -> dict[Node, Node]:
    """Every node under ``roots`` with the kernels recognised (old node → new)."""
    return rewritten(roots, KERNELS)


def tidy(roots: Sequence[Node], symmetric: frozenset[Node] = frozenset()) -> dict[Node, Node]:
    """Derivatives with the recognitions and the simplifications applied (old node → new);
    the ``symmetric`` named intermediates (``K = Xᵀ X + λ I``) are their own transposes. That is
    used only here, in results: a derivative with respect to K itself treats K as free."""
    transposes = Rewrite("symmetric by construction", "Kᵀ = K, K⁻ᵀ = K⁻¹ for K = Xᵀ X + λ I",
                         lambda node: own_transpose(node, symmetric))
    return rewritten(roots, (*RECOGNITIONS, *SIMPLIFICATIONS, transposes))


def own_transpose(node: Node, symmetric: frozenset[Node]) -> Node | None:
    """Kᵀ = K and (K⁻¹)ᵀ = K⁻¹ for a symmetric intermediate K."""
    if node.op != "transpose":
        return None
    inner = node.args[0]
    if inner in symmetric:
        return inner
    if inner.op == "inv" and inner.args[0] in symmetric:
        return inner
    return None


def rewritten(roots: Sequence[Node], rules: Sequence[Rewrite]) -> dict[Node, Node]:
    """Every node under ``roots`` rebuilt over its rewritten arguments, then rewritten by the
    first rule that applies, again while one does; a rewrite never changes a node's shape
    (where a rule would, the node is left as it is)."""
    memo: dict[Node, Node] = {}
    for node in postorder(list(roots)):
        current = rebuild(node, tuple(memo[a] for a in node.args))
        for _ in range(MAX_PASSES):
            found = next((r for r in (rule.match(current) for rule in rules)
                          if r is not None and r.shape == current.shape), None)
            if found is None:
                break
            current = found
        memo[node] = current
    return memo
