"""Elementwise algebra after differentiation: what a person does to a derivative before
writing it down.

An expression built from ``+``, ``⊙``, powers and numbers over other arrays is, entry by entry,
a rational function of those arrays; SymPy is good at those. Each such subexpression goes to
SymPy with its arrays as symbols, and comes back in the shortest of its equivalent forms
(as written, cancelled, factored, expanded): ``p ⊙ (1 − p) ⊙ ((1 − y) / (1 − p) − y / p)`` is
``p − y``. Two facts about the functions are used: σ(−u) = 1 − σ(u) and tanh(−u) = −tanh(u).
Finally a subexpression equal to a named intermediate's definition is written by its name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sympy

from matcalc.core.ir import Node, const, const_value, postorder
from matcalc.core.simplify import add, apply, broadcast_to, mul, negated, power, rebuild

ALGEBRAIC = {"add", "mul", "pow", "const", "broadcast"}
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


def simplified(roots: Sequence[Node], names: Mapping[Node, Node] = {}) -> dict[Node, Node]:
    """Every node under ``roots``, each maximal elementwise subexpression in its shortest
    form and definitions in ``names`` (definition → named node) written by their names."""
    order = postorder(list(roots))
    if len(order) > MAX_NODES:                 # thousands of statements: written as built
        return {node: node for node in order}
    outermost = {*roots, *(a for n in order if n.op not in ALGEBRAIC for a in n.args)}
    memo: dict[Node, Node] = {}
    budget = MAX_EXPRESSIONS
    for node in order:
        if node.op == "named":                 # the program's own intermediates stay as written
            memo[node] = node
        elif node in names:
            memo[node] = names[node]
        elif node in outermost and node.op in ALGEBRAIC - {"const"} and budget:
            budget -= 1
            memo[node] = Algebra(memo, names).shortest(node)
        else:
            args = tuple(memo[a] for a in node.args)
            memo[node] = node if args == node.args else rebuild(node, args)
    return memo


class Algebra:
    """One elementwise expression as a SymPy expression over its arrays, and back."""

    def __init__(self, memo: dict[Node, Node], names: Mapping[Node, Node],
                 knowing: bool = True) -> None:
        self.memo, self.names, self.knowing = memo, names, knowing
        self.atoms: dict[Node, sympy.Symbol] = {}
        self.nodes: dict[sympy.Symbol, Node] = {}
        self.sizes: dict[sympy.Basic, int] = {}

    def shortest(self, node: Node) -> Node:
        """``node`` in its shortest equivalent form (as built when none is shorter than it is
        written, without the names and identities)."""
        as_built = rebuild(node, tuple(self.memo[a] for a in node.args))
        if tree_size(node, MAX_OPERATIONS + 1, ALGEBRAIC) > MAX_OPERATIONS:
            return as_built
        expr = self.to_sympy(node)
        if any(p.is_Pow and p.exp.is_Number and abs(p.exp) > MAX_POWER
               for p in sympy.preorder_traversal(expr)):
            return as_built                    # x³⁰⁰⁰: factoring it is no help, and slow
        forms = [expr, sympy.cancel(expr), sympy.factor(expr), sympy.expand(expr)]
        best = min(forms, key=self.cost)
        literal = Algebra(self.memo, {}, knowing=False)
        if self.cost(best) >= literal.cost(literal.to_sympy(as_built)) or not written_with(
                best, set(self.nodes)):
            return as_built
        return broadcast_to(self.from_sympy(best), node.shape)

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
        if node.op == "broadcast":
            return self.to_sympy(node.args[0])
        if node.op in ("add", "mul"):
            parts = [self.to_sympy(a) for a in node.args]
            return sympy.Add(*parts) if node.op == "add" else sympy.Mul(*parts)
        if node.op == "pow":
            return sympy.Pow(self.to_sympy(node.args[0]), self.to_sympy(node.args[1]))
        return self.function(self.memo.get(node, node))

    def function(self, node: Node) -> sympy.Expr:
        """An array that is not elementwise algebra: a symbol, with σ(−u) as 1 − σ(u) and
        tanh(−u) as −tanh(u)."""
        if self.knowing and node.op in ("sigmoid", "tanh") and negated(node.args[0]) is not None:
            positive = self.symbol(apply(node.op, negated(node.args[0])))
            return 1 - positive if node.op == "sigmoid" else -positive
        return self.symbol(node)

    def symbol(self, node: Node) -> sympy.Symbol:
        node = self.names.get(node, node) if self.knowing else node
        if node not in self.atoms:
            symbol = sympy.Symbol(f"·{len(self.atoms)}", real=True)
            self.atoms[node], self.nodes[symbol] = symbol, node
        return self.atoms[node]

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
