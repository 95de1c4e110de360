"""The operations, each defined once, with its derivative rules: one vector-Jacobian product per
argument, as in the textbooks.

Every operation is one :func:`matcalc.core.ir.define` call: its shape rule, its rules, its
properties (elementwise, linear, symmetric, kinked, domain), how it prints, how NumPy and
PyTorch compute it and what it means for one number. A rule receives

- ``g``: the adjoint Ḡ = ∂f/∂out of the node's output (same shape as the output),
- ``out``: the node's value, by its name when it has one (for rules such as ``exp``:
  x̄ = Ḡ ⊙ exp(x) is written ``g * out``, so ``y = exp(x)`` gives ``ȳ ⊙ y``),
- the node's arguments, then its parameters by name (``axis=``, ``keepdims=``, ``k=`` …),

and returns that argument's contribution to ∂f/∂arg. Broadcasting is undone once by the engine
(:func:`matcalc.core.simplify.reduce_to`), never here. Rules build their results with the operator
overloads and the canonical constructors, so they come out simplified.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from matcalc.core import elementwise as real
from matcalc.core.ir import (
    METHOD,
    OPERATIONS,
    OWN_PRINTER,
    Node,
    Rule,
    as_matrix,
    block_sums_shape,
    broadcast_shape,
    broadcast_to_shape,
    cholesky_shape,
    concat_shape,
    const,
    const_value,
    cross_entropy_shape,
    define,
    diag_shape,
    einsum_shape,
    expand_shape,
    gram_shape,
    is_labels,
    kron_shape,
    logsumexp_shape,
    matrix_shape,
    onehot_shape,
    outer_shape,
    permute_shape,
    product_shape,
    reshape_shape,
    rows_sum_to_one,
    same_pair_to_scalar,
    same_shape,
    scalar_shape,
    scatter_shape,
    size,
    slice_shape,
    softmax_shape,
    solve_shape,
    spectrum_shape,
    square_to_same,
    square_to_scalar,
    sum_of_blocks_shape,
    sum_shape,
    take_shape,
    transpose_shape,
    vec_shape,
    with_length,
)
from matcalc.core.simplify import (
    apply,
    broadcast_like,
    broadcast_to,
    einsum,
    kron,
    matmul,
    new_axis,
    reduce_sum,
    reduce_to,
    transpose,
    zero_like,
)
from matcalc.errors import MatcalcError, NotDerived

# ----------------------------------------------------------------------------------------------
# The functions rules are written in


def call(op: str) -> Callable[..., Node]:
    """``call("exp")(x)`` is the node ``exp(x)``."""
    return lambda *args, **params: apply(op, *args, attrs=OPERATIONS[op].record(**params))


exp, log, sign, step, heaviside, sigmoid, relu, cos, sin, cosh, sinh, tanh, sqrt = map(
    call, "exp log sign step heaviside sigmoid relu cos sin cosh sinh tanh sqrt".split()
)
inv, diag, outer = call("inv"), call("diag"), call("outer")
solve, sym, tril, triu = map(call, "solve sym tril triu".split())
first_max = call("first_max")  # 1 at the first largest entry along an axis, 0 elsewhere
polar, top_singular, eigenvectors = map(call, "polar top_singular eigenvectors".split())
prod_others = call("prod_others")  # each entry: the product of the others along an axis
concat, part = call("concat"), call("slice")  # [A; B] and A[start:stop] along an axis
permute = call("permute")                     # np.transpose(x, axes)
take, scatter_rows = call("take"), call("scatter_rows")  # E[y] and its scatter-add adjoint
reshape = call("reshape")
block_sums, sum_of_blocks = call("block_sums"), call("sum_of_blocks")


def log_of_base(x: Node) -> Node:
    """log x for the base of xᵏ differentiated in k; a negative number has no real one."""
    if (value := const_value(x)) is not None and value.is_negative:
        raise MatcalcError(f"({value}) ** x: its derivative in the exponent x, ({value}) ** x "
                           f"log({value}), is not real (a negative number to a power that "
                           "varies); matcalc computes with real numbers only")
    return log(x)


def ones_of(shape: tuple) -> Node:
    """𝟙𝟙ᵀ of a shape."""
    return broadcast_to(const(1), tuple(shape))


def softmax(x: Node, axis: int | None) -> Node:
    return apply("softmax", x, attrs=(axis,))


def log_softmax(x: Node, axis: int | None) -> Node:
    return apply("log_softmax", x, attrs=(axis,))


def mean(x: Node, axis: int | None, keepdims: bool = False) -> Node:
    """``sum(x, axis) / count``."""
    counted = x.shape if axis is None else (x.shape[axis],)
    return reduce_sum(x, axis, keepdims) * const(1 / size(counted))


def inverse_std(x: Node, axis: int, eps: sympy.Expr) -> Node:
    """1 / √(σ² + ε) along an axis (kept, of length 1), σ² the mean square about the mean."""
    centred = x - mean(x, axis, keepdims=True)
    return 1 / sqrt(mean(centred**2, axis, keepdims=True) + eps)


def standardized(x: Node, axis: int, eps: sympy.Expr) -> Node:
    """x̂ = (x − μ) / √(σ² + ε) along an axis, as its primitives."""
    return (x - mean(x, axis, keepdims=True)) * inverse_std(x, axis, eps)


def standardize_rule(g: Node, out: Node, x: Node, axis: int, eps: sympy.Expr) -> Node:
    """x̂ = (x − μ) / √(σ² + ε): x̄ = (Ḡ − mean(Ḡ) − x̂ ⊙ mean(Ḡ ⊙ x̂)) / √(σ² + ε), each mean
    along the axis (CS231n's layer and batch norm backward)."""
    deviation = g - mean(g, axis, keepdims=True) - out * mean(g * out, axis, keepdims=True)
    return inverse_std(x, axis, eps) * deviation


def last_axis_only(node: Node) -> bool:
    """Normalised along its last axis (what torch's layer_norm kernels do)."""
    return node.attrs.axis == node.rank - 1


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


def rows(x: Node) -> sympy.Expr:
    """The batch size of a loss: rows of a matrix (of every matrix of a stack), 1 for a
    vector."""
    return size(x.shape[:-1])


normal_cdf, normal_pdf = call("normal_cdf"), call("normal_pdf")  # Φ and φ of N(0, 1)
gelu_slope = call("gelu_slope")                                   # gelu′ = Φ + x φ
leaky_relu_slope = call("leaky_relu_slope")                       # 1 above 0, a below
trace = call("trace")


def gelu_tanh_slope(x: Node) -> Node:
    """d/dx x (1 + tanh u) / 2 = (1 + tanh u) / 2 + x (1 − tanh² u) u′ / 2."""
    t = tanh(real.gelu_tanh_inner(x))
    du = sympy.sqrt(2 / sympy.pi) * (1 + 3 * real.GELU_CUBIC * x**2)
    return (1 + t) / 2 + x * (1 - t**2) * du / 2


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
    """Rules for operations of any arity: ``vjp[i]`` is the rule for factor i."""

    def __init__(self, rule_for: Callable[[int], Rule]) -> None:
        self.rule_for = rule_for

    def __getitem__(self, index: int) -> Rule:
        return self.rule_for(index)


def concat_part(index: int) -> Rule:
    """Y = [X₁; X₂; …] along an axis: X̄ᵢ = Ḡ's block where Xᵢ sits."""

    def rule(g: Node, out: Node, *blocks: Node, axis: int) -> Node:
        start = sympy.Add(*(b.shape[axis] for b in blocks[:index]))
        return part(g, axis=axis, start=start, stop=start + blocks[index].shape[axis])

    return rule


def slice_rule(g: Node, out: Node, x: Node, axis: int, start: sympy.Expr, stop: sympy.Expr
               ) -> Node:
    """Y = X[start:stop] along an axis: X̄ is Ḡ in place, zeros around it."""
    def zeros_of(length: sympy.Expr) -> Node:
        return zero_like(with_length(x.shape, axis, length))

    end = x.shape[axis]
    blocks = [*([zeros_of(start)] if start != 0 else []), g,
              *([zeros_of(end - stop)] if stop != end else [])]
    return concat(*blocks, axis=axis) if len(blocks) > 1 else g


def kron_left(g: Node, out: Node, a: Node, b: Node) -> Node:
    """C = A ⊗ B: Āᵢⱼ = ⟨Ḡ's block (i, j), B⟩ = block_sums(Ḡ ⊙ (𝟙𝟙ᵀ ⊗ B)) (vectors as
    columns)."""
    (m, n), (p, q) = as_matrix(a.shape), as_matrix(b.shape)
    bar = block_sums(g * kron(ones_of((m, n)), b), rows=m, cols=n, block_rows=p, block_cols=q)
    return bar if a.rank == 2 else reduce_sum(bar, 1)


def kron_right(g: Node, out: Node, a: Node, b: Node) -> Node:
    """C = A ⊗ B: B̄ = Σᵢⱼ Aᵢⱼ Ḡ's block (i, j) = sum_of_blocks(Ḡ ⊙ (A ⊗ 𝟙𝟙ᵀ))."""
    (m, n), (p, q) = as_matrix(a.shape), as_matrix(b.shape)
    bar = sum_of_blocks(g * kron(a, ones_of((p, q))), rows=m, cols=n, block_rows=p,
                        block_cols=q)
    return bar if b.rank == 2 else reduce_sum(bar, 1)


def inverse_permutation(axes: tuple[int, ...]) -> tuple[int, ...]:
    """The axes that undo ``np.transpose(x, axes)``."""
    inverse = [0] * len(axes)
    for position, axis in enumerate(axes):
        inverse[axis] = position
    return tuple(inverse)


def einsum_part(index: int) -> Rule:
    """y = einsum(s₁,s₂,…->o): x̄ᵢ = einsum(o,s₁,…(without sᵢ)…->sᵢ) of Ḡ and the other
    operands, repeated along the indices that only xᵢ has (summed over in y)."""

    def rule(g: Node, out: Node, *operands: Node, spec: str) -> Node:
        inputs, output = spec.split("->")
        subscripts = inputs.split(",")
        target = subscripts[index]
        others = [(s, x) for k, (s, x) in enumerate(zip(subscripts, operands, strict=True))
                  if k != index]
        available = set(output).union(*(s for s, _ in others))
        present = "".join(c for c in target if c in available)
        inner = ",".join([output, *(s for s, _ in others)]) + "->" + present
        partial = einsum(inner, g, *(x for _, x in others))
        for axis, c in enumerate(target):
            if c not in available:
                partial = new_axis(partial, axis)
        return broadcast_to(partial, operands[index].shape)

    return rule


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


def solve_rhs_rule(g: Node, out: Node, a: Node, b: Node) -> Node:
    """X = A⁻¹ B: B̄ = A⁻ᵀ Ḡ, a solve with Aᵀ (no inverse is formed)."""
    return solve(transpose(a), g)


def solve_matrix_rule(g: Node, out: Node, a: Node, b: Node) -> Node:
    """X = A⁻¹ B: Ā = −B̄ Xᵀ (−b̄ xᵀ for vectors)."""
    b_bar = solve_rhs_rule(g, out, a, b)
    return -(outer(b_bar, out) if b.rank == 1 else b_bar @ transpose(out))


def cholesky_rule(g: Node, out: Node, s: Node) -> Node:
    """L = chol(S): S̄ = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹), Φ the lower triangle with half its diagonal
    (Murray 2016; PyTorch's symmetric form), by two solves with Lᵀ: no inverse."""
    p = lower_half(transpose(out) @ tril(g, k=0))
    x = solve(transpose(out), transpose(solve(transpose(out), p)))
    return (x + transpose(x)) / 2                   # x = (L⁻ᵀ P L⁻¹)ᵀ: symmetrised alike


def pinv_rule(g: Node, out: Node, a: Node) -> Node:
    """P = A⁺ (constant rank; Golub & Pereyra 1973): Ā = −Pᵀ Ḡ Pᵀ + (I − A P) Ḡᵀ P Pᵀ
    + Pᵀ P Ḡᵀ (I − P A); the second term is 0 at full row rank, the third at full column
    rank."""
    p, gt = out, transpose(g)
    left = gt @ p @ transpose(p)                    # (I − A P) M = M − A (P M)
    right = transpose(p) @ p @ gt                   # N (I − P A) = N − (N P) A
    return -(transpose(p) @ g @ transpose(p)) + left - a @ (p @ left) + right - right @ p @ a


def first_order_only(what: str) -> Rule:
    """The rule of what only a first derivative makes (a factor of the SVD or of the
    eigendecomposition, products of the other entries), which matcalc does not differentiate."""

    def refuse(g: Node, out: Node, x: Node, **params: object) -> Node:
        raise NotDerived(f"second derivatives of {what} are not derived: matcalc "
                         "differentiates through the SVD, the eigendecomposition and products "
                         "of entries once (gradients, Jacobians), not twice (Hessians, HVPs)")

    return refuse


def complement(mask: Node) -> Node:
    """1 − mask, without a double negation: 1 − (1 − m) is m."""
    if mask.op == "add" and len(mask.args) == 2 and mask.args[0].op == "const" and (
            mask.args[0].attrs.value == 1):
        negated = mask.args[1]
        if negated.op == "mul" and len(negated.args) == 2 and negated.args[0].op == "const" \
                and negated.args[0].attrs.value == -1:
            return negated.args[1]
    return 1 - mask


def clip_inside(x: Node, lo: Node, hi: Node) -> Node:
    """1[lo < x < hi]: where clip(x, lo, hi) = min(max(x, lo), hi) is x."""
    return step(x - lo) * step(hi - x)


def clip_below(x: Node, lo: Node, hi: Node) -> Node:
    """1[x < lo < hi]: where it is lo (where lo > hi it is hi, as NumPy's clip)."""
    return step(lo - x) * step(hi - lo)


def lower_half(x: Node) -> Node:
    """Φ(X): the lower triangle of X with its diagonal halved."""
    return tril(x, k=0) - diag(diag(x)) / 2


def diag_rule(g: Node, out: Node, x: Node) -> Node:
    """diag maps vector ↔ matrix; its adjoint is diag the other way."""
    return diag(g)


# ----------------------------------------------------------------------------------------------
# The operations. Each is defined once: its shape, its rule for each argument (first, reading
# like the identity), what it is, how it prints where that is not ``name(…)``, how NumPy and
# PyTorch compute it, and what it means for one number. Leaves are defined in the IR.


def elementwise(name: str, rule: Rule, meaning: Callable[..., sympy.Expr], **facets) -> None:
    """A function applied entry by entry; it keeps symmetric matrices symmetric, and NumPy and
    PyTorch spell it ``name(x)`` unless ``numpy``/``torch`` say otherwise."""
    facets.setdefault("numpy", f"{{xp}}.{name}({{0}})")
    define(name, same_shape, [rule], elementwise=True, symmetric=True, scalar=meaning, **facets)


def zero_rule(g: Node, out: Node, x: Node) -> Node:
    """A piecewise-constant function: zero derivative (away from its jumps)."""
    return zero_like(x.shape)


# sums, products, powers
define("add", broadcast_shape, EveryArgument(pass_through),
       elementwise=True, symmetric=True, scalar=sympy.Add, **OWN_PRINTER)
define("mul", broadcast_shape, EveryArgument(product_rule),
       elementwise=True, symmetric=True, scalar=sympy.Mul, **OWN_PRINTER)
define("pow", broadcast_shape, [
    lambda g, out, x, k: g * k * x ** (k - 1),          # x̄ = Ḡ k x^(k−1)
    lambda g, out, x, k: g * out * log_of_base(x),      # k̄ = Ḡ xᵏ log x
], elementwise=True, symmetric=True, scalar=sympy.Pow, **OWN_PRINTER)
define("broadcast", broadcast_to_shape, [lambda g, out, x, shape: reduce_to(g, x.shape)],
       params=("shape",), **OWN_PRINTER)
define("expand", expand_shape, [lambda g, out, x, axis: reduce_sum(g, axis)],
       params=("axis",), **OWN_PRINTER)
define("sum", sum_shape, [sum_rule], params=("axis", "keepdims"), **OWN_PRINTER)

# elementwise functions: x̄ = Ḡ ⊙ f′(x)
elementwise("exp", lambda g, out, x: g * out, sympy.exp, latex=r"\exp")      # exp′ = exp
elementwise("log", lambda g, out, x: g / x, sympy.log, latex=r"\log", domain="positive")
elementwise("sqrt", lambda g, out, x: g / out / 2, sympy.sqrt, domain="positive",
            latex=r"\sqrt")
elementwise("log1p", lambda g, out, x: g / (1 + x), lambda x: sympy.log(1 + x),
            domain="positive")                                          # log(1 + x), exactly
elementwise("expm1", lambda g, out, x: g * (out + 1), lambda x: sympy.exp(x) - 1)
elementwise("abs", lambda g, out, x: g * sign(x), sympy.Abs, kink="zero")
elementwise("sin", lambda g, out, x: g * cos(x), sympy.sin, latex=r"\sin")
elementwise("cos", lambda g, out, x: -(g * sin(x)), sympy.cos, latex=r"\cos")
elementwise("tanh", lambda g, out, x: g * (1 - out**2), sympy.tanh, latex=r"\tanh")
elementwise("tan", lambda g, out, x: g * (1 + out**2), sympy.tan, latex=r"\tan", domain="small")
elementwise("arctan", lambda g, out, x: g / (1 + x**2), sympy.atan, latex=r"\arctan")
elementwise("sinh", lambda g, out, x: g * cosh(x), sympy.sinh, latex=r"\sinh")
elementwise("cosh", lambda g, out, x: g * sinh(x), sympy.cosh, latex=r"\cosh")
elementwise("erf", lambda g, out, x: g * (2 / sympy.sqrt(sympy.pi)) * exp(-x**2), sympy.erf,
            latex=r"\operatorname{erf}", numpy="{_erf}({0})", torch="{xp}.erf({0})")
elementwise("sigmoid", lambda g, out, x: g * out * (1 - out), real.sigmoid, latex=r"\sigma",
            numpy="{_sigmoid}({0})", torch="{xp}.sigmoid({0})")
elementwise("relu", lambda g, out, x: g * step(x), real.relu, kink="zero",  # relu′ = 1[x > 0]
            numpy="{xp}.maximum({0}, 0)", torch="{xp}.relu({0})")
elementwise("softplus", lambda g, out, x: g * sigmoid(x), real.softplus,
            numpy="{xp}.logaddexp(0, {0})", torch="{xp}.nn.functional.softplus({0})")
elementwise("logcosh", lambda g, out, x: g * tanh(x), lambda x: sympy.log(sympy.cosh(x)),
            numpy="{_logcosh}({0})", torch="{_logcosh}({0})")              # log cosh, stably
elementwise("gelu", lambda g, out, x: g * gelu_slope(x), real.gelu,
            primitives=lambda x: x * normal_cdf(x), numpy=METHOD,
            torch="{xp}.nn.functional.gelu({0})")
elementwise("gelu_slope", lambda g, out, x: g * normal_pdf(x) * (2 - x**2),   # gelu″ = φ (2 − x²)
            real.gelu_slope, internal=True, text="gelu′", latex=r"\operatorname{gelu}'",
            primitives=lambda x: normal_cdf(x) + x * normal_pdf(x), numpy=METHOD,
            torch="{xp}.ops.aten.gelu_backward({xp}.ones_like({0}), {0})")
elementwise("gelu_tanh", lambda g, out, x: g * gelu_tanh_slope(x), real.gelu_tanh,
            primitives=lambda x: x * (1 + tanh(real.gelu_tanh_inner(x))) / 2, numpy=METHOD)
elementwise("silu", lambda g, out, x: g * sigmoid(x) * (1 + x * (1 - sigmoid(x))), real.silu,
            primitives=lambda x: x * sigmoid(x), numpy=METHOD)
elementwise("step", zero_rule, real.step, kink="zero", internal=True, numpy="({0} > 0)",
            **OWN_PRINTER)                                                          # 1[x > 0]
elementwise("sign", zero_rule, sympy.sign, kink="zero")
elementwise("heaviside", zero_rule, real.heaviside, kink="zero", internal=True, text="H",
            latex="H", numpy="{xp}.heaviside({0}, 0.5)", torch="({xp}.sign({0}) + 1) / 2")
elementwise("normal_cdf", lambda g, out, x: g * normal_pdf(x), real.normal_cdf,  # Φ′ = φ
            internal=True, text="Φ", latex=r"\Phi",
            numpy="{_normal_cdf}({0})", torch="{xp}.special.ndtr({0})")   # both tails exact
elementwise("normal_pdf", lambda g, out, x: -(g * x * out), real.normal_pdf,     # φ′ = −x φ
            internal=True, text="φ", latex=r"\phi",
            numpy="{_normal_pdf}({0})",
            torch="{xp}.exp(-0.5 * {p0} ** 2) / {math}.sqrt(2 * {math}.pi)")
define("maximum", broadcast_shape, [
    lambda g, out, a, b: g * heaviside(a - b),          # 1 where a > b, ½ at a tie (PyTorch)
    lambda g, out, a, b: g * heaviside(b - a),
], elementwise=True, symmetric=True, kink="equal", scalar=sympy.Max,
       numpy="{xp}.maximum({0}, {1})", tensor_args=True)
define("minimum", broadcast_shape, [
    lambda g, out, a, b: g * heaviside(b - a),
    lambda g, out, a, b: g * heaviside(a - b),
], elementwise=True, symmetric=True, kink="equal", scalar=sympy.Min,
       numpy="{xp}.minimum({0}, {1})", tensor_args=True)
define("clip", broadcast_shape, [
    lambda g, out, x, lo, hi: g * clip_inside(x, lo, hi),       # 1 strictly inside, 0 at
    lambda g, out, x, lo, hi: g * clip_below(x, lo, hi),        # the bounds
    lambda g, out, x, lo, hi: g * (1 - clip_inside(x, lo, hi) - clip_below(x, lo, hi)),
], elementwise=True, symmetric=True, kink="bounds", tensor_args=True,
       scalar=lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi),
       numpy="{xp}.clip({0}, {1}, {2})", torch="{xp}.clamp({0}, {1}, {2})")
define("where", broadcast_shape, [
    lambda g, out, c, a, b: zero_like(c.shape),         # a 0/1 mask: no gradient
    lambda g, out, c, a, b: g * c,                      # ā = Ḡ where the condition holds
    lambda g, out, c, a, b: g * complement(c),          # b̄ = Ḡ elsewhere
], elementwise=True, symmetric=True, tensor_args=True,
       scalar=lambda c, a, b: sympy.Piecewise((a, c > 0), (b, True)), numpy=METHOD)
define("leaky_relu", broadcast_shape, [
    lambda g, out, x, a: g * leaky_relu_slope(x, a),   # x̄ = Ḡ ⊙ leaky_relu′(x, a)
    lambda g, out, x, a: g * (x - relu(x)),             # ā = Ḡ ⊙ min(x, 0)
], elementwise=True, symmetric=True, kink="zero", scalar=real.leaky_relu,
       numpy="{xp}.where({p0} > 0, {p0}, {p1} * {p0})")
define("leaky_relu_slope", broadcast_shape, [
    lambda g, out, x, a: zero_like(x.shape),            # piecewise constant in x
    lambda g, out, x, a: g * (1 - step(x)),             # ā = Ḡ ⊙ 1[x ≤ 0]
], elementwise=True, symmetric=True, kink="zero", scalar=real.leaky_relu_slope,
       internal=True, text="leaky_relu′", latex=r"\operatorname{leaky\_relu}'",
       primitives=lambda x, a: a + (1 - a) * step(x), numpy=METHOD)

# joining and cutting
define("concat", concat_shape, EveryArgument(concat_part), params=("axis",), numpy=METHOD,
       **OWN_PRINTER)
define("slice", slice_shape, [slice_rule], params=("axis", "start", "stop"), internal=True,
       linear=True, numpy=METHOD, **OWN_PRINTER)

define("einsum", einsum_shape, EveryArgument(einsum_part), params=("spec",), numpy=METHOD,
       **OWN_PRINTER)

# matrix algebra
define("matmul", product_shape, [matmul_left, matmul_right], **OWN_PRINTER)
define("transpose", transpose_shape, [lambda g, out, x: transpose(g)], **OWN_PRINTER)
define("permute", permute_shape, [
    lambda g, out, x, axes: permute(g, axes=inverse_permutation(axes)),
], params=("axes",), linear=True, numpy="{xp}.transpose({0}, {axes})",
       torch="{p0}.permute({axes})", **OWN_PRINTER)
define("outer", outer_shape, [
    lambda g, out, a, b: matmul(g, b),
    lambda g, out, a, b: matmul(transpose(g), a),
], linear=True, numpy="{xp}.outer({0}, {1})", **OWN_PRINTER)
define("weighted_gram", gram_shape, [
    lambda g, out, x, d, s: (x * new_axis(d, 1)) @ (g + transpose(g)),  # X̄ = D X (Ḡ + Ḡᵀ)
    lambda g, out, x, d, s: reduce_sum((x @ g) * x, 1),         # d̄ = rows of (X Ḡ) ⊙ X
    lambda g, out, x, d, s: trace(g),                           # s̄ = tr Ḡ
], symmetric=True, internal=True, numpy="{_gram}({0}, {1}, {2})",
       torch="{0}.mT @ ({0} * {1}[:, None]) + {2} * {xp}.eye({0}.shape[1], dtype={0}.dtype)",
       **OWN_PRINTER)                          # Xᵀ diag(d) X + s I, made by NumPy codegen
define("trace", square_to_scalar("trace"), [
    lambda g, out, x: g * eye(x.shape[0]),              # ∂ tr X / ∂X = I
], linear=True, text="tr", latex=r"\operatorname{tr}", numpy="{xp}.trace({0})")
define("det", square_to_scalar("det"), [
    lambda g, out, x: g * out * transpose(inv(x)),      # ∂ det X / ∂X = det(X) X⁻ᵀ
], domain="well_conditioned", latex=r"\det", numpy="{xp}.linalg.det({0})")
define("logdet", square_to_scalar("logdet"), [
    lambda g, out, x: g * transpose(inv(x)),            # ∂ log|det X| / ∂X = X⁻ᵀ
], domain="well_conditioned", text="log det", latex=r"\log\det",
       numpy="{xp}.linalg.slogdet({0})[1]")
define("inv", square_to_same("inv"), [
    lambda g, out, x: -(transpose(out) @ g @ transpose(out)),  # X̄ = −X⁻ᵀ Ḡ X⁻ᵀ
], symmetric=True, domain="well_conditioned", numpy="{_inv}({0})",
       torch="{xp}.linalg.inv({0})", **OWN_PRINTER)
define("solve", solve_shape, [solve_matrix_rule, solve_rhs_rule], domain="well_conditioned",
       linear=(1,), numpy="{_solve}({0}, {1})", torch="{xp}.linalg.solve({0}, {1})", **OWN_PRINTER)
define("diag", diag_shape, [diag_rule], linear=True, numpy="{xp}.diag({0})")
define("sym", square_to_same("sym"), [lambda g, out, x: sym(g)], linear=True,
       symmetric=True, internal=True, numpy="({p0} + {p0}.T) / 2", **OWN_PRINTER)  # (X + Xᵀ)/2
define("cholesky", cholesky_shape, [cholesky_rule], domain="well_conditioned", text="chol",
       numpy="{xp}.linalg.cholesky({0})")       # the lower-triangular L with S = L Lᵀ
define("tril", matrix_shape("tril"), [lambda g, out, x, k: tril(g, k=k)],
       params=("k",), linear=True, numpy="{xp}.tril({0}, {k})", **OWN_PRINTER)  # a mask: linear
define("triu", matrix_shape("triu"), [lambda g, out, x, k: triu(g, k=k)],
       params=("k",), linear=True, numpy="{xp}.triu({0}, {k})", **OWN_PRINTER)
define("norm", scalar_shape, [lambda g, out, x: g * x / out],  # ∂‖x‖/∂x = x / ‖x‖
       numpy="{xp}.linalg.norm({0})", **OWN_PRINTER)
define("nuclear_norm", scalar_shape, [lambda g, out, x: g * polar(x)],  # ∂‖X‖_*/∂X = U Vᵀ
       kink="full_rank", numpy='{xp}.linalg.norm({0}, "nuc")',
       torch='{xp}.linalg.matrix_norm({0}, "nuc")', **OWN_PRINTER)
define("spectral_norm", scalar_shape, [lambda g, out, x: g * top_singular(x)],  # = u₁ v₁ᵀ
       kink="simple_top", numpy="{xp}.linalg.norm({0}, 2)",
       torch="{xp}.linalg.matrix_norm({0}, 2)", **OWN_PRINTER)
define("polar", same_shape, [first_order_only("the nuclear norm")], internal=True,
       numpy="{_polar}({0})")                   # U Vᵀ of the thin SVD X = U Σ Vᵀ
define("top_singular", same_shape, [first_order_only("the spectral norm")], internal=True,
       numpy="{_top_singular}({0})")  # of the largest singular value
define("eigvalsh", spectrum_shape, [
    lambda g, out, s: eigenvectors(s) @ diag(g) @ transpose(eigenvectors(s)),  # S̄ = V diag(λ̄) Vᵀ
], kink="distinct", latex=r"\lambda", text="λ", numpy="{xp}.linalg.eigvalsh({0})")
define("eigenvectors", square_to_same("eigenvectors"), [first_order_only("eigvalsh")],
       internal=True, numpy="{xp}.linalg.eigh({0})[1]")    # columns: λ ascending
define("pinv", transpose_shape, [pinv_rule], numpy="{xp}.linalg.pinv({0})",
       **OWN_PRINTER)
define("matrix_power", square_to_same("matrix_power"), [matrix_power_rule], params=("k",),
       symmetric=True, domain="well_conditioned",
       numpy="{xp}.linalg.matrix_power({0}, {k})", **OWN_PRINTER)

# Kronecker products: in programs, and in the vec forms of third- and fourth-order derivatives
define("kron", kron_shape, [kron_left, kron_right], numpy="{_kron}({0}, {1})", **OWN_PRINTER)
BLOCKS = ("rows", "cols", "block_rows", "block_cols")   # an [m·p, n·q] matrix of m×n p×q blocks
define("block_sums", block_sums_shape, [
    lambda g, out, x, rows, cols, block_rows, block_cols: kron(
        g, ones_of((block_rows, block_cols))),
], params=BLOCKS, internal=True, linear=True, numpy=METHOD, **OWN_PRINTER)  # each block's sum
define("sum_of_blocks", sum_of_blocks_shape, [
    lambda g, out, x, rows, cols, block_rows, block_cols: kron(ones_of((rows, cols)), g),
], params=BLOCKS, internal=True, linear=True, numpy=METHOD, **OWN_PRINTER)  # the blocks added
# vectorised forms: made to write third- and fourth-order derivatives, never differentiated
define("vec", vec_shape, linear=True, vec_form=True, numpy='{xp}.ravel({0}, order="F")',
       torch="{p0}.T.reshape(-1)")
define("commutation", lambda args, attrs: (size(attrs), size(attrs)),
       params=("rows", "cols"), vec_form=True, **OWN_PRINTER)
define("diag_embedding", lambda args, attrs: (size(attrs * 2), attrs[0]), params=("n",),
       vec_form=True, **OWN_PRINTER)

# neural nets
define("softmax", softmax_shape, [
    lambda g, out, x, axis: out * (g - row_sum(g * out, axis)),
], params=("axis",), numpy="{_softmax}({0}{axis})", torch="{xp}.softmax({0}{axis})", **OWN_PRINTER)
define("log_softmax", softmax_shape, [
    lambda g, out, x, axis: g - softmax(x, axis) * row_sum(g, axis),
], params=("axis",), numpy="{_log_softmax}({0}{axis})", torch="{xp}.log_softmax({0}{axis})",
       **OWN_PRINTER)
define("logsumexp", logsumexp_shape, [
    lambda g, out, x, axis: broadcast_like(g, x.shape, axis) * softmax(x, axis),
], params=("axis",), numpy="{_logsumexp}({0}{axis})", torch="{xp}.logsumexp({0}{axis})",
       **OWN_PRINTER)
define("max", logsumexp_shape, [
    lambda g, out, x, axis: broadcast_like(g, x.shape, axis) * first_max(x, axis=axis),
], params=("axis",), kink="tie", latex=r"\max", numpy="{xp}.max({0}{axis})",
       torch="{xp}.amax({0}{axis})")                # to the first largest entry, as PyTorch
define("min", logsumexp_shape, [
    lambda g, out, x, axis: broadcast_like(g, x.shape, axis) * first_max(-x, axis=axis),
], params=("axis",), kink="tie", latex=r"\min", numpy="{xp}.min({0}{axis})",
       torch="{xp}.amin({0}{axis})")
define("prod", logsumexp_shape, [
    lambda g, out, x, axis: broadcast_like(g, x.shape, axis) * prod_others(x, axis=axis),
], params=("axis",), numpy="{xp}.prod({0}{axis})", torch="{_prod}({0}{axis})",
       **OWN_PRINTER)                               # ∂ ∏ⱼ xⱼ / ∂xᵢ = ∏_{j≠i} xⱼ, exact at 0
define("prod_others", same_shape, [first_order_only("prod")], params=("axis",), internal=True,
       numpy="{_prod_others}({0}{axis})", **OWN_PRINTER)
define("first_max", same_shape, [lambda g, out, x, axis: zero_like(x.shape)], params=("axis",),
       internal=True, numpy="{_first_max}({0}{axis})", **OWN_PRINTER)   # 1 at each argmax, else 0
define("standardize", same_shape, [standardize_rule], params=("axis", "eps"), internal=True,
       primitives=standardized, kernel=last_axis_only, numpy=METHOD,
       **OWN_PRINTER)                               # layer norm without gain and shift
define("softmax_cross_entropy", cross_entropy_shape, [cross_entropy_logits,
                                                      cross_entropy_targets])
define("onehot", onehot_shape, [
    lambda g, out, y, classes: zero_like(y.shape),      # integers: no gradient
], params=("classes",), **OWN_PRINTER)
define("reshape", reshape_shape, [
    lambda g, out, x, shape: reshape(g, shape=x.shape),    # the entries back in x's shape
], params=("shape",), linear=True, numpy=METHOD, **OWN_PRINTER)
define("take", take_shape, [
    lambda g, out, table, y: scatter_rows(g, y, rows=table.shape[0]),  # Ē: Ḡ's rows added
    lambda g, out, table, y: zero_like(y.shape),                       # at their labels
], numpy="{xp}.take({0}, {1}, axis=0)", torch="{p0}[{1}]", **OWN_PRINTER)
define("scatter_rows", scatter_shape, [
    lambda g, out, rows_of, y, rows: take(g, y),   # its adjoint is the lookup
    lambda g, out, rows_of, y, rows: zero_like(y.shape),
], params=("rows",), internal=True, linear=True, numpy=METHOD,
       **OWN_PRINTER)                              # np.add.at into a zero table
define("mse", same_pair_to_scalar("mse"), [
    lambda g, out, p, t: g * 2 * (p - t) / size(p.shape),
    lambda g, out, p, t: g * 2 * (t - p) / size(p.shape),
])


# ----------------------------------------------------------------------------------------------
# What the table answers


def callable_elementwise() -> list[str]:
    """The elementwise functions of one argument a program may call, in definition order."""
    return [name for name, d in OPERATIONS.items()
            if d.elementwise and d.shape is same_shape and not d.internal]


OPERATORS = ("add", "mul", "pow")
"""The elementwise operations written with operators (+, *, **), not called by name."""

SCALAR_FUNCTIONS: dict[str, Callable[..., sympy.Expr]] = {
    name: d.scalar for name, d in OPERATIONS.items()
    if d.scalar is not None and name not in OPERATORS}
"""Every elementwise function's meaning for one number (``leaky_relu`` takes ``(x, a)``)."""

SYMPY_FUNCTIONS: dict[str, Callable[..., sympy.Expr]] = {
    name: f for name, f in SCALAR_FUNCTIONS.items() if not OPERATIONS[name].internal
    or name == "step"}
"""The functions ``matcalc init`` reads in an activation's formula: those programs call, and
``step`` (1[z > 0])."""
