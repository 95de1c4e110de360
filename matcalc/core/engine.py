"""The derivative engine: reverse mode over the IR, one rule per node (:mod:`matcalc.core.rules`).

Starting from ∂f/∂f = 1, nodes are visited from the output back to the inputs; each node's
adjoint Ḡ (the sum of what its users sent back) is passed to its arguments through the node's
rule, and broadcasting is undone once here. Gradients come out in matrix form, shaped like their
variables, because every rule returns an expression of the argument's shape.

With ``steps=True`` every named intermediate's adjoint is recorded as an error signal
``δk = ∂f/∂name`` and later expressions refer to it by that name, as a hand derivation does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from matcalc.core.ir import (
    OPERATIONS,
    Node,
    const,
    delta,
    depends_on,
    is_zero,
    params,
    postorder,
    shape_str,
)
from matcalc.core.simplify import add, reduce_to, zero_like

TRIVIAL = {"const", "var", "named", "delta", "zeros"}


class InternalError(AssertionError):
    """A derivative rule broke an invariant: a bug in matcalc, never the user's fault."""


@dataclass(frozen=True)
class Step:
    """One error signal: ``δ<label> = ∂f/∂<name> = expr``."""

    label: int
    name: str
    node: Node
    expr: Node


def vector_jacobian_products(
    f: Node, wrt: Sequence[Node], steps: bool = False
) -> tuple[dict[Node, Node], list[Step]]:
    """Adjoints ∂f/∂x for every ``x`` in ``wrt`` (vars or named intermediates) of scalar ``f``.

    Returns the adjoints (zero where f does not depend on x) and, with ``steps``, the error
    signals of the named intermediates in the order a hand derivation writes them.
    """
    if f.shape:
        raise InternalError(f"reverse mode needs a scalar function, got {shape_str(f.shape)}")
    needed = depends_on([f], set(wrt))
    order = postorder([f])
    named_as = {n.args[0]: n for n in order if n.op == "named"}
    contributions: dict[Node, list[Node]] = {f: [const(1)]}
    adjoints: dict[Node, Node] = {}
    signals: list[Step] = []
    for node in reversed(order):
        parts = contributions.pop(node, None)
        if node not in needed or not parts:
            continue
        g = add(*parts)
        if steps and node.op == "named" and node is not f and not trivial(g):
            signals.append(Step(len(signals) + 1, node.attrs.name, node, g))
            g = delta(len(signals), node.attrs.name, node.shape)
        adjoints[node] = g
        if is_zero(g):
            continue
        for index, arg in enumerate(node.args):
            if arg in needed:
                out = named_as.get(node, node)          # y, not exp(x), when y = exp(x)
                contributions.setdefault(arg, []).append(back_through(node, out, index, g))
    return {x: adjoints.get(x, zero_like(x.shape)) for x in wrt}, signals


def trivial(g: Node) -> bool:
    """An adjoint not worth a name of its own: a leaf, or a constant repeated (``𝟙``)."""
    return g.op in TRIVIAL or g.op == "broadcast" and g.args[0].op == "const"


def back_through(node: Node, out: Node, index: int, g: Node) -> Node:
    """The adjoint contribution of ``g`` (∂f/∂node) to ``node.args[index]``; ``out`` is the
    node's value as the rules should refer to it (its name, when it has one)."""
    arg = node.args[index]
    rule = OPERATIONS[node.op].vjp[index]
    result = reduce_to(rule(g, out, *node.args, **params(node)), arg.shape)
    if result.shape != arg.shape:
        raise InternalError(
            f"rule for {node.op} argument {index} returned {shape_str(result.shape)}, "
            f"expected {shape_str(arg.shape)}"
        )
    return result
