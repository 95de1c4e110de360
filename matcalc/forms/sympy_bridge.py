"""IR → SymPy matrix expressions, for display (``latex()``, ``pretty()``) and nothing else.

Vectors become n×1 ``MatrixSymbol``s. Operations SymPy has no matrix form for (softmax, relu
of a matrix, broadcasting a bias over a batch) become undefined functions of their arguments,
so the result always prints, but only the matrix algebra in it is SymPy's to manipulate.
"""

from __future__ import annotations

import sympy
from sympy import Determinant, HadamardPower, HadamardProduct, MatrixSymbol, Trace

from matcalc.core.ir import Node, postorder
from matcalc.forms.printing import to_text


def leaf(name: str, shape: tuple) -> sympy.Expr:
    if not shape:
        return sympy.Symbol(name)
    rows = shape[0]
    cols = shape[1] if len(shape) == 2 else 1
    return MatrixSymbol(name, rows, cols)


def opaque(node: Node, args: list[sympy.Expr]) -> sympy.Expr:
    """An operation SymPy cannot express: an undefined function for a scalar, for an array a
    matrix symbol named by its text (``softmax(Z2)``), so that matrix algebra goes on around
    it."""
    if node.shape:
        return leaf(to_text(node), node.shape)
    return sympy.Function(node.op)(*args)


def is_matrix(value: sympy.Expr) -> bool:
    return getattr(value, "is_Matrix", False)


def convert(node: Node, args: list[sympy.Expr]) -> sympy.Expr:
    op = node.op
    if op in ("var", "named"):
        return leaf(node.attrs.name, node.shape)
    if op == "delta":
        return leaf(f"delta{node.attrs.label}", node.shape)
    if op == "const":
        return node.attrs.value
    if op == "identity":
        return sympy.Identity(node.attrs.n)
    if op == "zeros":
        return sympy.ZeroMatrix(*node.shape) if len(node.shape) == 2 else sympy.Integer(0)
    if op == "add":
        return sympy.Add(*args) if not any(map(is_matrix, args)) else sympy.MatAdd(*args)
    if op == "mul":
        matrices = [a for a in args if is_matrix(a)]
        scalars = [a for a in args if not is_matrix(a)]
        product = HadamardProduct(*matrices) if len(matrices) > 1 else (matrices or [1])[0]
        return sympy.Mul(*scalars) * product
    if op == "pow":
        return HadamardPower(*args) if is_matrix(args[0]) else sympy.Pow(*args)
    if op in ("matmul", "outer"):
        a, b = args
        if op == "outer" or node.args[0].rank == 1:
            a = a.T if op != "outer" else a
            b = b.T if op == "outer" else b
        return a * b
    if op == "transpose":
        return args[0].T
    if op == "inv":
        return args[0].I
    if op == "trace":
        return Trace(args[0])
    if op == "det":
        return Determinant(args[0])
    if op == "logdet":
        return sympy.log(Determinant(args[0]))
    if not node.shape and hasattr(sympy, node.op) and not any(map(is_matrix, args)):
        return getattr(sympy, node.op)(*args)
    return opaque(node, args)


def to_sympy(root: Node) -> sympy.Expr:
    """A SymPy expression that prints like the IR's matrix form."""
    values: dict[Node, sympy.Expr] = {}
    for node in postorder([root], stop=lambda n: n.op == "named"):
        args = [values[a] for a in node.args] if node.op != "named" else []
        try:
            values[node] = convert(node, args)
        except (TypeError, ValueError, sympy.ShapeError, AttributeError, NotImplementedError):
            values[node] = opaque(node, args)
    return values[root]
