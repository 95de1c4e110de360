"""The derivative rules: one vector-Jacobian product per primitive, as in the textbooks.

Each entry maps an operation to one function per argument. A function receives

- ``g``: the adjoint Ḡ = ∂f/∂out of the node's output (same shape as the output),
- ``out``: the node's value, by its name when it has one (for rules such as ``exp``:
  x̄ = Ḡ ⊙ exp(x) is written ``g * out``, so ``y = exp(x)`` gives ``ȳ ⊙ y``),
- the node's arguments, then its ``attrs`` in order (``axis``, ``keepdims``, ``k`` …),

and returns that argument's contribution to ∂f/∂arg. Broadcasting is undone once by the engine
(:func:`matcalc.core.simplify.reduce_to`), never here. Rules build their results with the operator
overloads and the canonical constructors, so they come out simplified.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from matcalc.core.ir import ONE, Node, is_labels, rows_sum_to_one, size
from matcalc.core.simplify import (
    apply,
    broadcast_like,
    matmul,
    reduce_sum,
    reduce_to,
    transpose,
    zero_like,
)
from matcalc.errors import MatcalcError

Rule = Callable[..., Node]


# ----------------------------------------------------------------------------------------------
# The functions rules are written in


def call(op: str) -> Callable[..., Node]:
    """``call("exp")(x)`` is the node ``exp(x)``."""
    return lambda *args, **attrs: apply(op, *args, attrs=tuple(attrs.values()))


exp, log, sign, step, sigmoid, relu, cos, sin = map(
    call, "exp log sign step sigmoid relu cos sin".split()
)
inv, diag, outer = call("inv"), call("diag"), call("outer")


def softmax(x: Node, axis: int | None) -> Node:
    return apply("softmax", x, attrs=(axis,))


def log_softmax(x: Node, axis: int | None) -> Node:
    return apply("log_softmax", x, attrs=(axis,))


def row_sum(x: Node, axis: int | None) -> Node:
    """``sum(x, axis, keepdims=True)``: what softmax-like rules subtract."""
    return reduce_sum(x, axis, keepdims=True)


def eye(n: sympy.Expr) -> Node:
    return apply("identity", attrs=(n,))


def matrix_power(x: Node, k: int) -> Node:
    """Xᵏ for k ≥ 0 (X⁰ = I)."""
    if k in (0, 1):
        return x if k else eye(x.shape[0])
    return apply("matrix_power", x, attrs=(k,))


def vector_axis(x: Node, axis: int | None) -> int | None:
    """For a vector, "all entries" and "the last axis" are one: write softmax(x), not axis=None."""
    return -1 if axis is None and x.rank == 1 else axis


def rows(x: Node) -> sympy.Expr:
    """The batch size of a loss: rows of a matrix, 1 for a vector."""
    return x.shape[0] if x.rank == 2 else ONE


normal_cdf, normal_pdf = call("normal_cdf"), call("normal_pdf")  # Φ and φ of N(0, 1)


# ----------------------------------------------------------------------------------------------
# Rules with a case split


def matmul_left(g: Node, out: Node, a: Node, b: Node) -> Node:
    """C = A B: Ā = Ḡ Bᵀ, the outer product Ḡ bᵀ for a vector b, ḡ b for a dot product aᵀ b.
    (``x @ A`` never reaches here: the simplifier writes it ``Aᵀ x``.)"""
    if b.rank == 1:
        return outer(g, b) if a.rank == 2 else g * b
    return matmul(g, transpose(b))


def matmul_right(g: Node, out: Node, a: Node, b: Node) -> Node:
    """C = A B: B̄ = Aᵀ Ḡ, or ḡ a for a dot product aᵀ b."""
    return g * a if a.rank == 1 else matmul(transpose(a), g)


def pass_through(index: int) -> Rule:
    """y = x₁ + x₂ + …: x̄ᵢ = Ḡ."""
    return lambda g, out, *terms: g


def product_rule(index: int) -> Rule:
    """y = x₁ ⊙ x₂ ⊙ …: x̄ᵢ = Ḡ ⊙ ∏_{j≠i} xⱼ."""

    def rule(g: Node, out: Node, *factors: Node) -> Node:
        result = g
        for j, factor in enumerate(factors):
            if j != index:
                result = result * factor
        return result

    return rule


class EveryArgument:
    """Rules for operations of any arity: ``RULES["mul"][i]`` is the rule for factor i."""

    def __init__(self, rule_for: Callable[[int], Rule]) -> None:
        self.rule_for = rule_for

    def __getitem__(self, index: int) -> Rule:
        return self.rule_for(index)


def sum_rule(g: Node, out: Node, x: Node, axis: int | None, keepdims: bool) -> Node:
    """y = sum(x, axis): x̄ = Ḡ repeated along the summed axis."""
    return broadcast_like(g, x.shape, None if keepdims else axis)


MAX_POWER = 64
"""Largest |k| whose Xᵏ is differentiated: the derivative is a sum of |k| products."""


def matrix_power_rule(g: Node, out: Node, x: Node, k: int) -> Node:
    """Y = Xᵏ: X̄ = Σᵢ (Xⁱ)ᵀ Ḡ (X^{k−1−i})ᵀ; negative k through X⁻¹."""
    if abs(k) > MAX_POWER:
        raise MatcalcError(
            f"matrix_power(X, {k}): its derivative Σᵢ (Xⁱ)ᵀ Ḡ (X^(k−1−i))ᵀ has {abs(k)} terms; "
            f"matcalc differentiates powers up to {MAX_POWER}. Nested powers cost the sum of "
            "theirs: matrix_power(matrix_power(X, 50), 40) is X²⁰⁰⁰ with 90 terms.")
    if k < 0:
        y = inv(x)
        y_bar = matrix_power_rule(g, out, y, -k)
        return -(transpose(y) @ y_bar @ transpose(y))
    terms = [transpose(matrix_power(x, i)) @ g @ transpose(matrix_power(x, k - 1 - i))
             for i in range(k)]
    return sum(terms[1:], terms[0]) if terms else zero_like(x.shape)


def cross_entropy_logits(g: Node, out: Node, z: Node, y: Node) -> Node:
    """L = −Σ y ⊙ log_softmax(z) / N: z̄ = (softmax(z) ⊙ (y 𝟙) − y) / N, which is ŷ − y when each
    row of y sums to 1 (declared one-hot or probabilities), ŷ − onehot(y) for integer labels."""
    probabilities = softmax(z, -1)
    if is_labels(y):
        return g * (probabilities - onehot(y, z.shape[-1])) / rows(z)
    if rows_sum_to_one(y):
        return g * (probabilities - y) / rows(z)
    return g * (probabilities * row_sum(y, -1) - y) / rows(z)


def cross_entropy_targets(g: Node, out: Node, z: Node, y: Node) -> Node:
    """ȳ = −log_softmax(z) / N (integer labels have no gradient)."""
    if is_labels(y):
        return zero_like(y.shape)
    return -(g * log_softmax(z, -1)) / rows(z)


def onehot(y: Node, classes: sympy.Expr) -> Node:
    return apply("onehot", y, attrs=(classes,))


def diag_rule(g: Node, out: Node, x: Node) -> Node:
    """diag maps vector ↔ matrix; its adjoint is diag the other way."""
    return diag(g)


# ----------------------------------------------------------------------------------------------
# The table

RULES: dict[str, tuple[Rule, ...] | EveryArgument] = {
    # sums, products, powers
    "add": EveryArgument(pass_through),
    "mul": EveryArgument(product_rule),
    "pow": (
        lambda g, out, x, k: g * k * x ** (k - 1),          # x̄ = Ḡ k x^(k−1)
        lambda g, out, x, k: g * out * log(x),              # k̄ = Ḡ xᵏ log x
    ),
    "named": (lambda g, out, x, name: g,),
    "broadcast": (lambda g, out, x, shape: reduce_to(g, x.shape),),
    "expand": (lambda g, out, x, axis: reduce_sum(g, axis),),
    "sum": (sum_rule,),
    # elementwise functions
    "exp": (lambda g, out, x: g * out,),                    # exp′ = exp
    "log": (lambda g, out, x: g / x,),
    "sqrt": (lambda g, out, x: g / (2 * out),),
    "abs": (lambda g, out, x: g * sign(x),),
    "sin": (lambda g, out, x: g * cos(x),),
    "cos": (lambda g, out, x: -(g * sin(x)),),
    "tanh": (lambda g, out, x: g * (1 - out**2),),
    "sigmoid": (lambda g, out, x: g * out * (1 - out),),
    "relu": (lambda g, out, x: g * step(x),),               # relu′ = 1[x > 0]
    "softplus": (lambda g, out, x: g * sigmoid(x),),
    "gelu": (lambda g, out, x: g * (normal_cdf(x) + x * normal_pdf(x)),),
    "silu": (lambda g, out, x: g * sigmoid(x) * (1 + x * (1 - sigmoid(x))),),
    "normal_cdf": (lambda g, out, x: g * normal_pdf(x),),  # Φ′ = φ
    "normal_pdf": (lambda g, out, x: -(g * x * out),),      # φ′(x) = −x φ(x)
    "leaky_relu": (
        lambda g, out, x, a: g * (a + (1 - a) * step(x)),  # slope 1 above 0, a below
        lambda g, out, x, a: g * (x - relu(x)),             # ā = Ḡ ⊙ min(x, 0)
    ),
    "step": (lambda g, out, x: zero_like(x.shape),),
    "sign": (lambda g, out, x: zero_like(x.shape),),
    # matrix algebra
    "matmul": (matmul_left, matmul_right),
    "transpose": (lambda g, out, x: transpose(g),),
    "outer": (lambda g, out, a, b: matmul(g, b), lambda g, out, a, b: matmul(transpose(g), a)),
    "trace": (lambda g, out, x: g * eye(x.shape[0]),),      # ∂ tr X / ∂X = I
    "det": (lambda g, out, x: g * out * transpose(inv(x)),),  # ∂ det X / ∂X = det(X) X⁻ᵀ
    "logdet": (lambda g, out, x: g * transpose(inv(x)),),   # ∂ log|det X| / ∂X = X⁻ᵀ
    "inv": (lambda g, out, x: -(transpose(out) @ g @ transpose(out)),),  # X̄ = −X⁻ᵀ Ḡ X⁻ᵀ
    "diag": (diag_rule,),
    "norm": (lambda g, out, x: g * x / out,),               # ∂‖x‖/∂x = x / ‖x‖
    "matrix_power": (matrix_power_rule,),
    "identity": (),
    # neural nets
    "softmax": (
        lambda g, out, x, axis: out * (g - row_sum(g * out, axis)),
    ),
    "log_softmax": (
        lambda g, out, x, axis: g - softmax(x, axis) * row_sum(g, axis),
    ),
    "logsumexp": (
        lambda g, out, x, axis: broadcast_like(g, x.shape, axis) * softmax(x, vector_axis(x, axis)),
    ),
    "softmax_cross_entropy": (cross_entropy_logits, cross_entropy_targets),
    "onehot": (lambda g, out, y, classes: zero_like(y.shape),),     # integers: no gradient
    "mse": (
        lambda g, out, p, t: g * 2 * (p - t) / size(p.shape),
        lambda g, out, p, t: g * 2 * (t - p) / size(p.shape),
    ),
}
