"""An independent reference: the program's value computed straight from its source with NumPy.

Finite-difference checks must not trust what they check. Gradients come from the IR after the
simplifier has rewritten it, so the function they are compared against is computed here, from
the parsed source text, with plain NumPy and none of the IR, simplifier or code generator. A
simplifier bug that changed the function itself shows up as a failed check.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from matcalc.language import syntax
from matcalc.language.lowering import Program
from matcalc.language.sizes import sizes_of_arrays


def _softmax(x: np.ndarray, axis: int | None = -1) -> np.ndarray:
    return np.exp(_log_softmax(x, axis))


def _log_softmax(x: np.ndarray, axis: int | None = -1) -> np.ndarray:
    return x - _logsumexp(x, axis, keepdims=True)


def _logsumexp(x: np.ndarray, axis: int | None = None, keepdims: bool = False) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    total = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return total if keepdims else np.squeeze(total, axis=axis)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


def _erf(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf  # loaded on first use: it takes a quarter of a second

    return erf(x)


def _gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean over rows of −Σ targets ⊙ log_softmax; integer targets are class labels."""
    rows = math.prod(logits.shape[:-1])                 # every row of every stacked matrix
    if np.asarray(targets).dtype.kind in "iu":
        picked = np.take_along_axis(_log_softmax(logits), np.asarray(targets)[..., None], -1)
        return -np.sum(picked) / rows
    return -np.sum(targets * _log_softmax(logits)) / rows


NUMPY: dict[str, Callable] = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "log1p": np.log1p, "expm1": np.expm1,
    "abs": np.abs, "sin": np.sin, "tan": np.tan, "arctan": np.arctan, "sinh": np.sinh,
    "cosh": np.cosh, "erf": lambda x: _erf(x), "square": np.square, "sign": np.sign,
    "cos": np.cos, "tanh": np.tanh, "sigmoid": _sigmoid,
    "relu": lambda x: np.maximum(x, 0), "softplus": lambda x: np.logaddexp(0, x),
    "logcosh": lambda x: np.logaddexp(x, -x) - np.log(2),
    "gelu": _gelu, "gelu_tanh": lambda x: _gelu(x, "tanh"), "silu": lambda x: x * _sigmoid(x),
    "leaky_relu": lambda x, a=0.01: np.where(x > 0, x, a * x),
    "sum": lambda x, axis=None, keepdims=False: np.sum(x, axis=axis, keepdims=keepdims),
    "mean": lambda x, axis=None, keepdims=False: np.mean(x, axis=axis, keepdims=keepdims),
    "max": lambda x, axis=None, keepdims=False: np.max(x, axis=axis, keepdims=keepdims),
    "min": lambda x, axis=None, keepdims=False: np.min(x, axis=axis, keepdims=keepdims),
    "concatenate": lambda arrays, axis=0: np.concatenate(arrays, axis=int(axis)),
    "vstack": np.vstack, "hstack": np.hstack, "kron": np.kron,
    "einsum": lambda subscripts, *operands: np.einsum(subscripts, *operands),
    "reshape": lambda x, shape: np.reshape(x, [int(d) for d in shape]),
    "take": lambda x, indices, axis=0: np.take(x, np.asarray(indices, dtype=int), axis=int(axis)),
    "swapaxes": lambda x, axis1, axis2: np.swapaxes(x, int(axis1), int(axis2)),
    "transpose": lambda x, axes=None: np.transpose(x, None if axes is None else
                                                   [int(k) for k in axes]),
    "prod": lambda x, axis=None, keepdims=False: np.prod(x, axis=axis, keepdims=keepdims),
    "maximum": np.maximum, "minimum": np.minimum, "clip": np.clip, "solve": np.linalg.solve,
    "var": lambda x, axis=None, ddof=0, keepdims=False: np.var(x, axis, ddof=ddof,
                                                              keepdims=keepdims),
    "std": lambda x, axis=None, ddof=0, keepdims=False: np.std(x, axis, ddof=ddof,
                                                              keepdims=keepdims),
    "eye": lambda n: np.eye(int(n)), "tril": np.tril, "triu": np.triu,
    "cholesky": lambda s: np.linalg.cholesky((s + s.T) / 2),  # of symmetric S: its sym. part
    "where": lambda condition, x, y: np.where(np.asarray(condition) > 0.5, x, y),
    "onehot": lambda y, classes: np.eye(int(classes))[np.asarray(y, dtype=int)],
    "ones": lambda rows, cols=None: np.ones(tuple(int(d) for d in (rows, cols) if d is not None)),
    "zeros": lambda rows, cols=None: np.zeros(tuple(int(d) for d in (rows, cols) if d is not None)),
    "trace": np.trace, "det": np.linalg.det, "logdet": lambda x: np.linalg.slogdet(x)[1],
    "inv": np.linalg.inv, "diag": np.diag, "outer": np.outer,
    "norm": np.linalg.norm, "eigvalsh": lambda s: np.linalg.eigvalsh((s + s.T) / 2),
    "pinv": np.linalg.pinv,
    "matrix_power": np.linalg.matrix_power,
    "softmax": _softmax, "log_softmax": _log_softmax, "logsumexp": _logsumexp,
    "softmax_cross_entropy": _cross_entropy,
    "mse": lambda p, t: np.mean((p - t) ** 2),
}
"""Each function of the language, as NumPy computes it."""

INTEGER_SECOND = {"matrix_power", "sum", "mean", "softmax", "log_softmax", "logsumexp", "max",
                  "min", "prod", "var", "std", "tril", "triu", "norm"}
"""Functions whose second argument is an integer (an axis or a power)."""

LITERALS = {"None": None, "True": True, "False": False, "inf": math.inf}

BINARY: dict[str, Callable] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power,
    "@": np.matmul,
    **{op: lambda a, b, f=f: f(a, b).astype(float) for op, f in {
        "<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal}.items()},
}


def is_whole(value: object) -> bool:
    """A whole number read as a float (``2.0`` from ``2``), not inf, a word or None."""
    return isinstance(value, float) and value.is_integer()


class Evaluator:
    """Evaluates source expressions in an environment of arrays, sizes and intermediates."""

    def __init__(self, env: dict[str, object]) -> None:
        self.env = env

    def __call__(self, e: syntax.Expr):
        return getattr(self, "e_" + type(e).__name__)(e)

    def e_Name(self, e: syntax.Name):  # noqa: N802
        if e.id in LITERALS:
            return LITERALS[e.id]
        return math.pi if e.id == "pi" and e.id not in self.env else self.env[e.id]

    def e_Number(self, e: syntax.Number):  # noqa: N802
        return float(e.value)

    def e_String(self, e: syntax.String):  # noqa: N802
        return e.value

    def e_List(self, e: syntax.List):  # noqa: N802
        return [self(item) for item in e.items]

    def e_UnaryOp(self, e: syntax.UnaryOp):  # noqa: N802
        value = self(e.operand)
        return -value if e.op == "-" else value

    def e_BinOp(self, e: syntax.BinOp):  # noqa: N802
        first, links = syntax.chain(e)
        value = self(first)
        for link in links:
            value = BINARY[link.op](value, self(link.right))
        return value

    def e_Transpose(self, e: syntax.Transpose):  # noqa: N802
        value = self(e.operand)
        return np.transpose(value) if e.attr == "T" else np.swapaxes(value, -1, -2)

    def e_Call(self, e: syntax.Call):  # noqa: N802
        args = [self(a) for a in e.args]
        kwargs = {name: self(value) for name, value, _ in e.kwargs}
        if kwargs.get("axis") is not None:
            kwargs["axis"] = int(kwargs["axis"])
        if e.func in INTEGER_SECOND and len(args) > 1 and is_whole(args[1]):
            args[1] = int(args[1])
        if is_whole(kwargs.get("ord")):
            kwargs["ord"] = int(kwargs["ord"])
        return NUMPY[e.func](*args, **kwargs)


def reference_function(program: Program) -> Callable[..., np.ndarray]:
    """``(**arrays) -> value`` computed from ``program.source`` by NumPy alone."""
    statements = [s for s in syntax.parse_program(program.source).statements
                  if not isinstance(s, syntax.Decl)]

    def value(**arrays: np.ndarray):
        shapes = {name: np.shape(a) for name, a in arrays.items()}
        env: dict[str, object] = {**sizes_of_arrays(program, shapes), **program.sizes, **arrays}
        evaluate = Evaluator(env)
        result = None
        for statement in statements:
            result = evaluate(statement.expr)
            if isinstance(statement, syntax.Assign):
                env[statement.name] = result
        if program.seed is not None:
            result = np.sum(arrays[program.seed] * result)
        return result

    return value
