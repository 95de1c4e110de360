"""Scalar expressions as text (``relu(z) - 1/sqrt(2*pi)``) to SymPy, for ``matcalc init``.

``to_sympy`` turns a scalar matcalc expression (a syntax tree of :mod:`matcalc.language.syntax`)
into SymPy with the operations' scalar meanings (:data:`matcalc.core.rules.SYMPY_FUNCTIONS`);
``parse_scalar`` does both steps
from source text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sympy

from matcalc.core.ir import OPERATIONS
from matcalc.core.rules import SYMPY_FUNCTIONS
from matcalc.errors import MatcalcError, did_you_mean
from matcalc.language.lowering import FUNCTIONS
from matcalc.language.syntax import parse_expression

MEANINGS: dict[str, Callable[..., sympy.Expr]] = {**SYMPY_FUNCTIONS, "square": lambda x: x**2}
"""The elementwise functions a scalar text may call, for one number: the operations' meanings
and ``square`` (written x² in programs)."""

ARITY: dict[str, tuple[int, int]] = {
    name: (len(OPERATIONS[name].vjp) if name in OPERATIONS else 1,) * 2
    for name in MEANINGS}
ARITY["leaky_relu"] = (1, 2)
"""Allowed (min, max) number of positional arguments, one per derivative rule (maximum takes
two, clip three); leaky_relu's slope defaults to 0.01."""

MATRIX_FUNCTIONS = frozenset(FUNCTIONS) - set(MEANINGS)
"""Functions of the language that are not elementwise (rejected in scalar expressions)."""

VARIANTS = {("gelu", "approximate", "tanh"): "gelu_tanh", ("gelu", "approximate", "none"): "gelu"}
"""Keyword choices that name another function: PyTorch's two GELUs."""

CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "e": sympy.E}

ScalarSymbols = dict[str, sympy.Symbol]


# ----------------------------------------------------------------------------------------------
# Syntax tree -> SymPy. Nodes are dispatched on their class name.


def to_sympy(expr: Any, symbols: ScalarSymbols) -> sympy.Expr:
    """The SymPy meaning of a scalar matcalc AST; names resolve through ``symbols``, then pi, e.

    Raises MatcalcError (with the node's offset, no source) for matrix operations, unknown
    names and unknown functions; ``parse_scalar`` attaches the source.
    """
    convert = _CONVERTERS.get(type(expr).__name__)
    if convert is None:
        raise MatcalcError(
            f"`{type(expr).__name__}` is not a scalar operation", offset=getattr(expr, "pos", None)
        )
    return convert(expr, symbols)


def _name(node: Any, symbols: ScalarSymbols) -> sympy.Expr:
    if node.id in symbols:
        return symbols[node.id]
    if node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if node.id in MEANINGS or node.id in MATRIX_FUNCTIONS:
        raise MatcalcError(
            f"`{node.id}` is a function; call it, e.g. `{node.id}(z)`", offset=node.pos
        )
    hint = did_you_mean(node.id, [*symbols, *CONSTANTS])
    known = ", ".join(f"`{name}`" for name in [*symbols, *CONSTANTS])
    message = f"unknown name `{node.id}` (known here: {known})"
    raise MatcalcError(message, offset=node.pos, hint=hint.strip() or None)


def _number(node: Any, symbols: ScalarSymbols) -> sympy.Expr:
    return sympy.sympify(node.value)


def _unary(node: Any, symbols: ScalarSymbols) -> sympy.Expr:
    operand = to_sympy(node.operand, symbols)
    return -operand if node.op == "-" else operand


_BINARY: dict[str, Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}


def _binary(node: Any, symbols: ScalarSymbols) -> sympy.Expr:
    operate = _BINARY.get(node.op)
    if operate is None:
        raise MatcalcError(
            f"`{node.op}` is a matrix operation; a scalar expression is needed here",
            offset=getattr(node, "op_pos", node.pos),
            hint="Write the activation as a function of one number z, e.g. `relu(z) - 0.5`.",
        )
    return operate(to_sympy(node.left, symbols), to_sympy(node.right, symbols))


def _transpose(node: Any, symbols: ScalarSymbols) -> sympy.Expr:
    raise MatcalcError(
        "`.T` (transpose) is a matrix operation; a scalar expression is needed here",
        offset=node.pos,
    )


def _call(node: Any, symbols: ScalarSymbols) -> sympy.Expr:
    function = MEANINGS.get(node.func)
    if function is None:
        raise _unknown_function(node)
    if node.kwargs:
        keyword, value, offset = node.kwargs[0]
        variant = VARIANTS.get((node.func, keyword, getattr(value, "value", None)))
        if variant is None or len(node.kwargs) > 1:
            raise MatcalcError(f"`{node.func}` takes no keyword `{keyword}` here", offset=offset)
        function = MEANINGS[variant]
    low, high = ARITY[node.func]
    if not low <= len(node.args) <= high:
        expected = str(low) if low == high else f"{low} or {high}"
        raise MatcalcError(
            f"`{node.func}` takes {expected} argument(s), got {len(node.args)}", offset=node.pos
        )
    return function(*(to_sympy(arg, symbols) for arg in node.args))


def _unknown_function(node: Any) -> MatcalcError:
    if node.func in MATRIX_FUNCTIONS:
        return MatcalcError(
            f"`{node.func}` is not an elementwise function; a scalar expression is needed here",
            offset=node.pos,
        )
    hint = did_you_mean(node.func, MEANINGS).strip()
    return MatcalcError(
        f"unknown function `{node.func}`",
        offset=node.pos,
        hint=hint or "Elementwise functions: " + ", ".join(sorted(MEANINGS)) + ".",
    )


_CONVERTERS: dict[str, Callable[[Any, ScalarSymbols], sympy.Expr]] = {
    "Name": _name,
    "Number": _number,
    "UnaryOp": _unary,
    "BinOp": _binary,
    "Transpose": _transpose,
    "Call": _call,
}


# ----------------------------------------------------------------------------------------------
# Source text -> SymPy


def free_names(expr: Any) -> Iterator[Any]:
    """Every ``Name`` node in the AST, left to right (function names are not ``Name`` nodes)."""
    kind = type(expr).__name__
    if kind == "Name":
        yield expr
    for child in _children(expr):
        yield from free_names(child)


def _children(expr: Any) -> tuple[Any, ...]:
    kind = type(expr).__name__
    if kind == "UnaryOp" or kind == "Transpose":
        return (expr.operand,)
    if kind == "BinOp":
        return (expr.left, expr.right)
    if kind == "Call":
        return (*expr.args, *(value for _, value, _ in expr.kwargs))
    return ()


def parse_scalar(
    text: str, variables: tuple[str, ...] = ("z",), *, parameters: bool = True
) -> tuple[sympy.Expr, ScalarSymbols]:
    """Parse a scalar expression; returns it and the name -> real Symbol map it used.

    ``variables`` come first in the map. With ``parameters`` other free names (not pi, e, or
    function names) become real symbolic parameters; without, they are unknown-name errors.
    """
    try:
        tree = parse_expression(text)
        symbols = {name: sympy.Symbol(name, real=True) for name in variables}
        if parameters:
            symbols.update(_parameter_symbols(tree, symbols))
        return to_sympy(tree, symbols), symbols
    except MatcalcError as err:
        raise err.located(text, err.offset) from None


def _parameter_symbols(tree: Any, symbols: ScalarSymbols) -> ScalarSymbols:
    skip = {*symbols, *CONSTANTS, *MEANINGS, *MATRIX_FUNCTIONS}
    names = (node.id for node in free_names(tree) if node.id not in skip)
    return {name: sympy.Symbol(name, real=True) for name in dict.fromkeys(names)}
