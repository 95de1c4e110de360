"""Elementwise algebra after differentiation: what a person does to a derivative before
writing it down.

An expression built from ``+``, ``⊙``, powers and numbers over other arrays is, entry by entry,
a rational function of those arrays; SymPy is good at those. Each such subexpression goes to
SymPy with its arrays as symbols, and comes back in the shortest of its equivalent forms
(as written, cancelled, factored, expanded): ``p ⊙ (1 − p) ⊙ ((1 − y) / (1 − p) − y / p)`` is
``p − y``. Facts about the functions are used: σ(−u) = 1 − σ(u), tanh and sign are odd, and
|−u| = |u|.
Sums are linear: ``sum(c ⊙ t + u, axis)`` is ``c ⊙ sum(t, axis) + sum(u, axis)`` for ``c``
constant along the axis, a centred array (``x − mean(x, axis)``, times anything constant
along the axis) sums to zero there, and rows known to sum to 1 (a softmax's, one-hot rows)
sum to 1. A subexpression equal to a named intermediate's definition
is written by its name, and an array a name is defined as a multiple of (``xhat = xc / s``) may
be written by that name (``xc = xhat ⊙ s``) where that is shorter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import sympy
from sympy.polys.polyerrors import BasePolynomialError

from matcalc.core.ir import (
    ONE,
    Node,
    Shape,
    const,
    const_value,
    definition_of,
    line_total,
    postorder,
    size,
)
from matcalc.core.simplify import (
    add,
    apply,
    broadcast_to,
    mul,
    negated,
    power,
    rebuild,
    reduce_sum,
    zero_like,
)

ALGEBRAIC = {"add", "mul", "pow", "const", "broadcast"}
SYMMETRIES: dict[str, Callable[[sympy.Expr], sympy.Expr]] = {
    "sigmoid": lambda positive: 1 - positive,          # σ(−u) = 1 − σ(u)
    "heaviside": lambda positive: 1 - positive,        # H(−u) = 1 − H(u)
    "tanh": lambda positive: -positive,                # odd functions
    "sign": lambda positive: -positive,
    "abs": lambda positive: positive,                  # |−u| = |u|
}
"""f(−u) in terms of f(u), for the functions with a symmetry."""
MAX_OPERATIONS = 60
"""Larger elementwise expressions are left as built (SymPy's cancel grows fast)."""
MAX_POWER = 8
"""Expressions with higher powers are left as built."""
MAX_NODES = 3000
"""Derivatives of more operations than this (programs of thousands of statements) are left as
built: the algebra is for what a person reads."""
MAX_EXPRESSIONS = 60
"""Past this many elementwise expressions in one derivative (a chain of thousands of
statements) the rest are left as built, so that long programs stay fast."""
MAX_SYMBOLS = 16
"""Expressions in more arrays than this are not factored (SymPy's multivariate factoring
slows sharply with the number of variables), only expanded."""
MAX_CANCEL_OPS = 200
"""Expressions of more operations are not put over a common denominator (SymPy's cancel
expands them first: 0.8 s at 400 operations, 28 s at 440 for the Hessian of arctan(var(y)))."""
MAX_TERMS = 16
"""A sum's argument is expanded into at most this many terms (else taken as one term)."""
MAX_SOLVED = 3
"""Names tried as rewritings of an array (``xc = xhat ⊙ s``) per expression, each alone and
all together."""


def simplified(roots: Sequence[Node], names: Mapping[Node, Node] = {},
               free: frozenset[Node] = frozenset()) -> dict[Node, Node]:
    """Every node under ``roots``, each maximal elementwise subexpression in its shortest
    form and definitions in ``names`` (definition → named node) written by their names; what
    is known of an intermediate (its rows sum to 1) is not used for the ``free`` ones."""
    order = postorder(list(roots))
    if len(order) > MAX_NODES:                 # thousands of statements: written as built
        return {node: node for node in order}
    outermost = {*roots, *(a for n in order if n.op not in ALGEBRAIC for a in n.args)}
    memo: dict[Node, Node] = {}
    budget = MAX_EXPRESSIONS
    solvable = multiples(names.values())
    for node in order:
        if node.op == "named":                 # the program's own intermediates stay as written
            memo[node] = node
        elif node in names:
            memo[node] = names[node]
        elif node in outermost and node.op in ALGEBRAIC - {"const"} | {"sum"} and budget:
            budget -= 1
            memo[node] = shortest(node, memo, names, solvable, free)
        else:
            args = tuple(memo[a] for a in node.args)
            memo[node] = node if args == node.args else rebuild(node, args)
    return memo


def multiples(named: Iterable[Node]) -> list[tuple[Node, Node]]:
    """``(a, m)`` for each name ``m`` defined as ``a`` divided by other factors (``xhat = xc /
    s``) or as its reciprocal (``r = 1 / s``): ``a`` may be written by ``m`` (``xc = xhat ⊙ s``,
    ``s = 1 / r``). Only divisions: ``m = a ⊙ x²`` would give ``a = m / x²``, undefined where
    x = 0 although a is not."""
    found = []
    for m in named:
        definition = m.args[0]
        if definition.op == "mul":
            found += [(a, m) for a in definition.args if a.op not in ALGEBRAIC
                      and a.shape == definition.shape and definition.args.count(a) == 1
                      and all(divides(b) for b in definition.args if b is not a)]
        elif definition.op == "pow" and definition.args[0].op not in ALGEBRAIC and const_value(
                definition.args[1]) == -1:
            found.append((definition.args[0], m))
    return found


def divides(factor: Node) -> bool:
    """Whether multiplying by ``factor`` divides by something (r⁻¹, r⁻²) or by a nonzero
    number: solving for the other factors then multiplies, never divides by zero."""
    factor = definition_of(factor)
    value = const_value(factor)
    if value is not None:
        return value != 0
    exponent = const_value(factor.args[1]) if factor.op == "pow" else None
    return exponent is not None and exponent.is_negative


def shortest(node: Node, memo: dict[Node, Node], names: Mapping[Node, Node],
             solvable: Sequence[tuple[Node, Node]], free: frozenset[Node]) -> Node:
    """``node`` in its shortest equivalent form, also trying the arrays it uses written by the
    names they are multiples of (as built when none is shorter than it is written)."""
    as_built = rebuild(node, tuple(memo[a] for a in node.args))
    if tree_size(node, MAX_OPERATIONS + 1, ALGEBRAIC) > MAX_OPERATIONS:
        return as_built
    algebra = Algebra(memo, names, free=free)
    best = algebra.shortest(node)
    if best is None:
        return as_built
    cost = algebra.cost(best)
    tried = [(a, m) for a, m in solvable if a in algebra.atoms][:MAX_SOLVED]
    for solved in [[pair] for pair in tried] + ([tried] if len(tried) > 1 else []):
        other = Algebra(memo, names, dict(solved), free=free)
        form = other.shortest(node)
        if form is not None and other.cost(form) < cost:
            algebra, best, cost = other, form, other.cost(form)
    if best == 0:                             # SymPy's own terms cancel, literal or not
        return zero_like(node.shape)
    literal = Algebra(memo, {}, knowing=False)
    if cost >= literal.cost(literal.to_sympy(as_built)):
        return as_built
    return broadcast_to(algebra.from_sympy(best), node.shape)


def attempted(transform: Callable[[sympy.Expr], sympy.Expr], expr: sympy.Expr
              ) -> sympy.Expr | None:
    """``transform(expr)``, or None where SymPy's polynomial algorithms give up (its heuristic
    gcd sometimes does: "no luck")."""
    try:
        return transform(expr)
    except BasePolynomialError:
        return None


class Algebra:
    """One elementwise expression as a SymPy expression over its arrays, and back; with
    ``solved`` (``a`` → ``m``), each array ``a`` is written by the name ``m`` it is a factor of
    (``xc = xhat ⊙ s``)."""

    def __init__(self, memo: dict[Node, Node], names: Mapping[Node, Node],
                 solved: Mapping[Node, Node] = {}, knowing: bool = True,
                 free: frozenset[Node] = frozenset()) -> None:
        self.memo, self.names, self.knowing, self.free = memo, names, knowing, free
        self.solved = dict(solved)
        self.replacements: dict[Node, sympy.Expr] = {}
        self.atoms: dict[Node, sympy.Symbol] = {}
        self.nodes: dict[sympy.Symbol, Node] = {}
        self.sizes: dict[sympy.Basic, int] = {}

    def shortest(self, node: Node) -> sympy.Expr | None:
        """The shortest of ``node``'s equivalent forms, or None where SymPy's forms leave
        elementwise algebra or the powers are too high to factor."""
        expr = self.to_sympy(node)
        if any(p.is_Pow and p.exp.is_Number and abs(p.exp) > MAX_POWER
               for p in sympy.preorder_traversal(expr)):
            return None                        # x³⁰⁰⁰: factoring it is no help, and slow
        if len(expr.free_symbols) > MAX_SYMBOLS:       # factoring in 50 variables is slow
            transforms = (sympy.expand,)
        elif sympy.count_ops(expr) > MAX_CANCEL_OPS:
            transforms = (sympy.factor_terms, sympy.expand)
        else:
            transforms = (sympy.cancel, sympy.factor_terms, sympy.expand)
        forms = [f for base in (expr, *self.by_names(expr))
                 for f in (base, *(attempted(t, base) for t in transforms)) if f is not None]
        forms += [self.merged_sums(f) for f in forms]
        best = min(forms, key=self.cost)
        return best if written_with(best, set(self.nodes)) else None

    def by_names(self, expr: sympy.Expr) -> list[sympy.Expr]:
        """``expr`` with a named product of arrays written by its name where its factors appear
        in it and the name does too, so that the two may cancel (``mu`` for ``t ⊙ exp(X w)`` in
        ``t ⊙ exp(X w) ⊙ (1 − y / mu)``), and u sign(u) as |u|, if any. Names for quotients
        (``xhat = xc / s``) are :func:`multiples`' business."""
        written = expr
        for node, symbol in list(self.atoms.items()):      # u sign(u) = |u|
            if node.op == "sign" and node.args[0] in self.atoms:
                magnitude = self.symbol(apply("abs", node.args[0]))
                signed = written.subs(symbol * self.atoms[node.args[0]], magnitude)
                written = sympy.powsimp(signed) if signed != written else written
        for definition, name in self.names.items():
            if definition.op == "mul" and name in self.atoms and self.atoms[
                    name] in expr.free_symbols and all(
                    a.op == "const" or a in self.atoms and a.op != "pow" for a in definition.args):
                product = sympy.Mul(*(self.to_sympy(a) for a in definition.args))
                written = written.subs(product, self.symbol(name))
        return [written] if written != expr else []

    def cost(self, expr: sympy.Expr) -> int:
        """How long ``expr`` is written out: its operations, its numbers, and each array by
        the length of what it is (a name 1, ``sigmoid(−y ⊙ (X w))`` 6)."""
        leaves = sympy.preorder_traversal(expr)
        return sympy.count_ops(expr) + sum(self.size(a) for a in leaves if a.is_Atom)

    def size(self, atom: sympy.Basic) -> int:
        """An array's written length (1 for a number)."""
        if atom not in self.nodes:
            return 1
        if atom not in self.sizes:
            self.sizes[atom] = tree_size(self.nodes[atom])
        return self.sizes[atom]

    def to_sympy(self, node: Node) -> sympy.Expr:
        if node in self.names:
            return self.symbol(self.names[node])
        if node.op == "const":
            return sympy.sympify(const_value(node))
        if node.op == "broadcast" or node.op == "expand" and node.attrs.axis == 0:
            return self.to_sympy(node.args[0])     # a new leading axis is broadcasting
        if node.op in ("add", "mul"):
            parts = [self.to_sympy(a) for a in node.args]
            return sympy.Add(*parts) if node.op == "add" else sympy.Mul(*parts)
        if node.op == "pow":
            return sympy.Pow(self.to_sympy(node.args[0]), self.to_sympy(node.args[1]))
        written = self.memo.get(node, node)
        if written is not node and written.op in ALGEBRAIC:    # sum(c x) written c sum(x)
            return self.to_sympy(written)
        if written.op == "zeros":
            return sympy.Integer(0)
        return self.function(written)

    def function(self, node: Node) -> sympy.Expr:
        """An array that is not elementwise algebra: a symbol, with σ(−u) as 1 − σ(u),
        tanh(−u) as −tanh(u) (and sign), |−u| as |u|, and a sum of elementwise algebra split
        into its terms."""
        if self.knowing and node.op == "sum" and tree_size(
                node.args[0], MAX_OPERATIONS + 1, ALGEBRAIC) <= MAX_OPERATIONS:
            return self.linear_sum(node)
        if self.knowing and node.op in SYMMETRIES and negated(node.args[0]) is not None:
            return SYMMETRIES[node.op](self.symbol(apply(node.op, negated(node.args[0]))))
        return self.symbol(node)

    def linear_sum(self, total: Node) -> sympy.Expr:
        """sum(Σ cᵢ ⊙ tᵢ, axis) = Σ cᵢ ⊙ sum(tᵢ, axis), each cᵢ constant along the axis, the
        terms as written; expanded (products multiplied out) only where that makes a sum
        vanish or known (a centred array's, a softmax's rows): sum((x − μ)²) is not
        sum(x²) − n μ², which cancels catastrophically in floating point."""
        x = total.args[0]
        inner = self.to_sympy(x)
        if not written_with(inner, set(self.nodes)):     # SymPy made |x| of √(x²): as it is
            return self.symbol(total)
        terms = sympy.Add.make_args(sympy.expand(inner))
        if len(terms) <= MAX_TERMS:
            expanded, known = self.term_sums(terms, x.shape, *total.attrs)
            if known:
                return expanded
        return self.term_sums(sympy.Add.make_args(inner), x.shape, *total.attrs)[0]

    def term_sums(self, terms: Sequence[sympy.Expr], shape: Shape, axis: int | None,
                  keepdims: bool) -> tuple[sympy.Expr, bool]:
        """Σ sum(termᵢ, axis), and whether any of those sums is known (zero, or a total)."""
        sums = [self.summed(term, shape, axis, keepdims) for term in terms]
        return sympy.Add(*(s for s, _ in sums)), any(known for _, known in sums)

    def summed(self, term: sympy.Expr, shape: Shape, axis: int | None, keepdims: bool
               ) -> tuple[sympy.Expr, bool]:
        """sum(term, axis) for a ``term`` of an array of ``shape``: its factors constant
        along the axis outside the sum; zero for a centred array. And whether the sum is
        known (zero, or rows that sum to 1)."""
        outside, inside = [], []
        for factor in sympy.Mul.make_args(term):
            moved = self.outside(factor, shape, axis, keepdims)
            (inside if moved is None else outside).append(factor if moved is None else moved)
        count = size(shape) if axis is None else shape[axis]
        if not inside:
            return sympy.Mul(*outside) * count, False
        t = self.from_sympy(sympy.Mul(*inside))
        own = None if axis is None else axis - (len(shape) - t.rank)
        if centred(t, own):
            return sympy.Integer(0), True
        total = line_total(t, own, self.free) if own is not None and own >= 0 and (
            t.shape[own] == shape[axis]) else None
        if total is not None:                   # rows of a softmax, one-hot rows: sum to 1
            return sympy.Mul(*outside) * total, True
        repeats = size(shape) / size(t.shape) if axis is None else ONE
        return sympy.Mul(*outside) * repeats * self.symbol(reduce_sum(t, own, keepdims)), False

    def outside(self, factor: sympy.Expr, shape: Shape, axis: int | None, keepdims: bool
                ) -> sympy.Expr | None:
        """``factor`` as it multiplies the sum when it is constant along the axis (its own
        axis of length 1 dropped unless ``keepdims``), else None."""
        replacements = {}
        for symbol in factor.free_symbols & set(self.nodes):
            a = self.nodes[symbol]
            own = None if axis is None else axis - (len(shape) - a.rank)
            if not constant_along(a, own):
                return None
            if own is not None and own >= 0 and not keepdims:
                replacements[symbol] = self.symbol(reduce_sum(a, own))
        return factor.xreplace(replacements)

    def merged_sums(self, expr: sympy.Expr) -> sympy.Expr:
        """``expr`` with the sums it adds up along one axis written as one sum: Σ cᵢ sum(tᵢ,
        axis) = sum(Σ cᵢ tᵢ, axis) for scalars cᵢ (the inverse of :meth:`linear_sum`, kept where
        it is shorter: the hinge's sum((𝟙𝟙ᵀ − Y) ⊙ 1[M > 0], axis=1))."""
        if expr.is_Atom:
            return expr
        expr = expr.func(*map(self.merged_sums, expr.args))
        if not expr.is_Add:
            return expr
        groups: dict[tuple, list[tuple[sympy.Expr, Node]]] = {}
        rest = []
        for term in expr.args:
            coefficient, total = self.scaled_sum(term)
            if total is None:
                rest.append(term)
            else:
                key = (total.shape, tuple(total.attrs), total.args[0].shape)
                groups.setdefault(key, []).append((coefficient, total))
        for members in groups.values():
            inner = self.summand(members) if len(members) > 1 else None
            if inner is None:
                rest += [c * self.symbol(t) for c, t in members]
                continue
            first = members[0][1]
            if not inner.free_symbols & set(self.nodes):
                return expr                     # the terms cancel: SymPy's own forms say so
            merged = reduce_sum(broadcast_to(self.from_sympy(inner), first.args[0].shape),
                                *first.attrs)
            rest.append(self.symbol(merged))
        return sympy.Add(*rest)

    def summand(self, members: list[tuple[sympy.Expr, Node]]) -> sympy.Expr | None:
        """Σ cᵢ tᵢ of the terms cᵢ sum(tᵢ, axis), or None where SymPy writes it with more than
        sums, products and powers (|x|)."""
        inner = sympy.Add(*(c * self.to_sympy(t.args[0]) for c, t in members))
        inner = min((inner, sympy.factor_terms(inner)), key=self.cost)
        return inner if written_with(inner, set(self.nodes)) else None

    def scaled_sum(self, term: sympy.Expr) -> tuple[sympy.Expr, Node | None]:
        """``(c, sum(t, axis))`` of a term ``c sum(t, axis)`` with ``c`` numbers and scalars,
        else ``(term, None)``."""
        totals = [f for f in sympy.Mul.make_args(term)
                  if f in self.nodes and self.nodes[f].op == "sum"]
        scalars = all(f.is_Number or (f in self.nodes and not self.nodes[f].shape)
                      for f in sympy.Mul.make_args(term) if f not in totals)
        if len(totals) != 1 or not scalars or self.nodes[totals[0]].attrs[0] is None:
            return term, None
        return term / totals[0], self.nodes[totals[0]]

    def symbol(self, node: Node) -> sympy.Expr:
        node = self.names.get(node, node) if self.knowing else node
        if node in self.solved:
            return self.solved_as(node)
        if node not in self.atoms:
            symbol = sympy.Symbol(f"·{len(self.atoms)}", real=True)
            self.atoms[node], self.nodes[symbol] = symbol, node
        return self.atoms[node]

    def solved_as(self, a: Node) -> sympy.Expr:
        """The solved array ``a`` of ``m = a ⊙ r`` written as ``m / r``, of ``m = 1 / a`` as
        ``1 / m``."""
        if a not in self.replacements:
            m = self.solved.pop(a)             # a itself, while reading m's definition
            definition = m.args[0]
            if definition.op == "pow":
                self.replacements[a] = 1 / self.symbol(m)
            else:
                factors = sympy.Mul(*(self.to_sympy(f) for f in definition.args))
                self.replacements[a] = self.symbol(m) * self.symbol(a) / factors
            self.solved[a] = m
        return self.replacements[a]

    def from_sympy(self, expr: sympy.Expr) -> Node:
        if expr in self.nodes:
            return self.nodes[expr]
        if not (expr.free_symbols & set(self.nodes)):
            return const(expr)
        if expr.is_Add:
            return add(*map(self.from_sympy, expr.args))
        if expr.is_Mul:
            return mul(*map(self.from_sympy, expr.args))
        if expr.is_Pow:
            return power(self.from_sympy(expr.args[0]), self.from_sympy(expr.args[1]))
        raise AssertionError(f"unexpected {expr!r} in elementwise algebra")


def written_with(expr: sympy.Expr, symbols: set[sympy.Symbol]) -> bool:
    """Whether ``expr`` is sums, products and powers of ``symbols`` and numbers only (SymPy
    may bring in |x| for √(x²) or a function of a number, which stay as built)."""
    if expr.is_Atom:
        return True
    if not (expr.is_Add or expr.is_Mul or expr.is_Pow):
        return not (expr.free_symbols & symbols)
    return all(written_with(arg, symbols) for arg in expr.args)


SIZE_CAP = 200
"""Written lengths are counted up to this: enough to tell a name from a formula, and bounded
however much a formula shares."""


def tree_size(node: Node, cap: int = SIZE_CAP, within: set[str] | None = None) -> int:
    """Nodes of ``node`` written out (shared parts counted each time; a name or leaf is 1),
    counted up to ``cap``; with ``within``, only through those operations (the rest are 1)."""
    count, stack = 0, [node]
    while stack and count < cap:
        n = stack.pop()
        count += 1
        if n.op not in ("named", "var", "const", "delta") and (within is None or n.op in within):
            stack.extend(n.args)
    return count


def constant_along(x: Node, axis: int | None) -> bool:
    """Whether ``x``, broadcast, is constant along ``axis`` (its own numbering; negative: an
    axis broadcasting adds; None: all axes)."""
    if axis is None:
        return not x.shape
    return axis < 0 or x.shape[axis] == ONE


def centred(x: Node, axis: int | None) -> bool:
    """Whether ``x`` is ``u − mean(u, axis)`` times arrays constant along ``axis``: it sums to
    zero along that axis."""
    d = definition_of(x)
    if d.op == "mul":
        varying = [a for a in d.args if not constant_along(
            a, None if axis is None else axis - (d.rank - a.rank))]
        return len(varying) == 1 and varying[0].rank == d.rank and centred(varying[0], axis)
    if d.op != "add" or len(d.args) != 2:
        return False
    return any(u.shape == d.shape and negated(definition_of(m)) is not None
               and is_mean(negated(definition_of(m)), u, axis)
               for u, m in (d.args, d.args[::-1]))


def is_mean(m: Node, u: Node, axis: int | None) -> bool:
    """Whether ``m`` is ``mean(u, axis)``, broadcasting against ``u`` along that axis."""
    d = definition_of(m)
    if d.op != "mul" or len(d.args) != 2 or const_value(d.args[0]) is None:
        return False
    total = definition_of(d.args[1])
    if total.op != "sum" or total.args[0] is not u:
        return False
    along, keepdims = total.attrs
    if u.rank == 1:
        along, axis = (0 if along is None else along), (0 if axis is None else axis)
    count = size(u.shape) if axis is None else u.shape[axis]
    lined_up = along is None or keepdims or along == 0
    return along == axis and lined_up and const_value(d.args[0]) == 1 / count
