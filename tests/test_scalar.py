"""Scalar semantics: SYMPY_FUNCTIONS, to_sympy on AST nodes, parse_scalar on text."""

from __future__ import annotations

import pytest
import sympy

from matcalc.core.rules import SYMPY_FUNCTIONS
from matcalc.errors import MatcalcError
from matcalc.language.scalar_text import parse_scalar, to_sympy
from matcalc.language.syntax import BinOp, Call, Name, Number, Transpose, UnaryOp

x = sympy.Symbol("x", real=True)
z = sympy.Symbol("z", real=True)
a = sympy.Symbol("a", real=True)


@pytest.mark.parametrize(
    ("name", "point", "expected"),
    [
        ("relu", 2, 2), ("relu", -3, 0), ("sigmoid", 0, sympy.Rational(1, 2)),
        ("softplus", 0, sympy.log(2)), ("gelu", 0, 0), ("silu", 2, 2 / (1 + sympy.exp(-2))),
        ("abs", -2, 2), ("step", 1, 1), ("step", -1, 0), ("tanh", 0, 0),
    ],
)
def test_function_values(name: str, point: int, expected: sympy.Expr) -> None:
    assert sympy.simplify(SYMPY_FUNCTIONS[name](sympy.Integer(point)) - expected) == 0


def test_gelu_is_exact_x_phi() -> None:
    phi = (1 + sympy.erf(x / sympy.sqrt(2))) / 2
    assert sympy.simplify(SYMPY_FUNCTIONS["gelu"](x) - x * phi) == 0


def test_leaky_relu_two_arguments() -> None:
    f = SYMPY_FUNCTIONS["leaky_relu"](x, a)
    assert f.subs({x: -2, a: sympy.Rational(1, 10)}) == sympy.Rational(-1, 5)
    assert f.subs(x, 3) == 3


def test_to_sympy_on_hand_built_nodes() -> None:
    tree = BinOp("-", Call("relu", (Name("z", 0),), (), 0), Number("0.5", sympy.Rational(1, 2)))
    assert to_sympy(tree, {"z": z}) == SYMPY_FUNCTIONS["relu"](z) - sympy.Rational(1, 2)
    power = BinOp("**", UnaryOp("-", Name("z")), Number("2", sympy.Integer(2)))
    assert to_sympy(power, {"z": z}) == z**2
    assert to_sympy(Name("pi"), {}) == sympy.pi
    assert to_sympy(Name("e"), {"e": z}) == z  # shadowed


@pytest.mark.parametrize(
    ("tree", "offset"),
    [(BinOp("@", Name("z", 0), Name("z", 4), 0, 2), 2), (Transpose(Name("z", 0), 1), 1),
     (Name("y", 3), 3), (Call("softmax", (Name("z", 8),), (), 0), 0)],
)
def test_to_sympy_rejects_with_position(tree: object, offset: int) -> None:
    with pytest.raises(MatcalcError) as info:
        to_sympy(tree, {"z": z})
    assert info.value.offset == offset


def test_parse_scalar_parameters_and_constants() -> None:
    expr, symbols = parse_scalar("relu(z) - 1/sqrt(2*pi)")
    assert expr == SYMPY_FUNCTIONS["relu"](z) - 1 / sympy.sqrt(2 * sympy.pi)
    expr, symbols = parse_scalar("leaky_relu(z, a)")
    assert list(symbols) == ["z", "a"] and expr == SYMPY_FUNCTIONS["leaky_relu"](z, a)
    assert parse_scalar("relu(z) - 0.5")[0].has(sympy.Rational(-1, 2))


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [("relu(z", "", None), ("foo(z)", "unknown function `foo`", 0),
     ("x @ z", "matrix operation", 2), ("reluu(z)", "unknown function", 0),
     ("relu(z, 1)", "argument", 0), ("relu", "is a function", 0)],
)
def test_parse_scalar_errors(text: str, message: str, offset: int | None) -> None:
    with pytest.raises(MatcalcError) as info:
        parse_scalar(text)
    assert message in info.value.message and info.value.source == text
    if offset is not None:
        assert info.value.offset == offset


def test_parse_scalar_strict_names_did_you_mean() -> None:
    with pytest.raises(MatcalcError) as info:
        parse_scalar("x * xx", ("x", "xy"), parameters=False)
    assert "unknown name `xx`" in str(info.value) and "Did you mean" in str(info.value)
