"""An independent reference in PyTorch: a program's value computed from its source text.

Like :mod:`matcalc.proofs.reference` does with NumPy, this walks the syntax tree of the source with
plain float64 torch operations, so that ``torch.autograd`` can differentiate it. It uses none
of matcalc's IR, simplifier, rules or code generator: ``matcalc.parse`` is only read for the
declarations (each variable's symbolic shape and properties). Named intermediates are kept as
tensors of their own, so gradients with respect to them can be taken too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from matcalc.language import syntax
from matcalc.language.lowering import Program
from matcalc.language.sizes import sizes_of_arrays

Tensor = torch.Tensor
DTYPE = torch.float64


@dataclass
class Trace:
    """One evaluation: the value, each named intermediate, and where kinks and norms were."""

    value: Tensor
    intermediates: dict[str, Tensor] = field(default_factory=dict)
    kinks: list[Tensor] = field(default_factory=list)
    """Arguments of relu, abs and leaky_relu, which are not differentiable at 0."""
    norms: list[Tensor] = field(default_factory=list)
    """Arguments of norm, which is not differentiable at 0."""


def scalar(value: float) -> Tensor:
    return torch.tensor(float(value), dtype=DTYPE)


def reduce_dims(x: Tensor, axis: int | None) -> tuple[int, ...]:
    """The dimensions ``axis`` means: all of them for None."""
    return tuple(range(x.dim())) if axis is None else (axis,)


def total(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    dims = reduce_dims(x, axis)
    return torch.sum(x, dim=dims, keepdim=keepdims) if dims else x


def average(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    dims = reduce_dims(x, axis)
    count = math.prod(x.shape[d] for d in dims)
    return total(x, axis, keepdims) / count


def logsumexp(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    dims = reduce_dims(x, axis)
    return torch.logsumexp(x, dim=dims, keepdim=keepdims) if dims else x


def variance(x: Tensor, axis: int | None = None, ddof: int = 0, keepdims: bool = False
             ) -> Tensor:
    with warnings.catch_warnings():      # ddof ≥ the count: inf or nan, as NumPy gives
        warnings.simplefilter("ignore", UserWarning)
        return torch.var(x, dim=reduce_dims(x, axis), correction=ddof, keepdim=keepdims)


def sizes_of(*dims: Tensor | None) -> tuple[int, ...]:
    """The shape ``ones(rows, cols)`` makes (sizes come as scalar tensors)."""
    return tuple(int(d) for d in dims if d is not None)


def largest(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    dims = reduce_dims(x, axis)
    return torch.amax(x, dim=dims, keepdim=keepdims) if dims else x


def product(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    if axis is not None:
        return torch.prod(x, dim=axis, keepdim=keepdims)
    whole = torch.prod(x.reshape(-1))
    return whole.reshape((1,) * x.dim()) if keepdims else whole


def smallest(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    return -largest(-x, axis, keepdims)


def log_softmax(x: Tensor, axis: int | None = -1) -> Tensor:
    """Log-softmax along ``axis``, or over all entries for None."""
    return x - logsumexp(x, axis, keepdims=True)


def softmax(x: Tensor, axis: int | None = -1) -> Tensor:
    return torch.exp(log_softmax(x, axis))


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over rows of −Σ targets ⊙ log_softmax(logits); integer targets are class labels."""
    logs = log_softmax(logits, -1)
    if not targets.is_floating_point():              # a label per row (one for a vector)
        picked = torch.take_along_dim(logs, targets[..., None].long(), dim=-1)
        return -torch.mean(picked)
    rows = math.prod(logits.shape[:-1])                 # every row of every stacked matrix
    return -torch.sum(targets * logs) / rows


def leaky_relu(x: Tensor, a: Tensor | float = 0.01) -> Tensor:
    return torch.where(x > 0, x, a * x)


def transpose(x: Tensor) -> Tensor:
    """``x.T`` of the language: matrices are transposed, vectors and scalars unchanged."""
    return x.transpose(0, 1) if x.dim() == 2 else x


def elementwise(f: Callable[[Tensor], Tensor]) -> Callable[..., Tensor]:
    return lambda x: f(x)


FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    **{name: elementwise(f) for name, f in {
        "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt, "abs": torch.abs,
        "log1p": torch.log1p, "expm1": torch.expm1, "tan": torch.tan, "arctan": torch.arctan,
        "sinh": torch.sinh, "cosh": torch.cosh, "erf": torch.erf, "square": torch.square,
        "sign": torch.sign,
        "sin": torch.sin, "cos": torch.cos, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
        "relu": torch.relu, "softplus": lambda x: torch.logaddexp(x, torch.zeros_like(x)),
        "logcosh": lambda x: torch.logaddexp(x, -x) - math.log(2),
        "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
        "silu": lambda x: x * torch.sigmoid(x), "trace": torch.trace, "det": torch.linalg.det,
        "logdet": lambda x: torch.linalg.slogdet(x)[1], "inv": torch.linalg.inv,
        "diag": torch.diag,
    }.items()},
    "gelu": lambda x, approximate="none": torch.nn.functional.gelu(x, approximate=approximate),
    "norm": lambda x, ord=None, axis=None, keepdims=False: (  # noqa: A006 (NumPy's name)
        torch.linalg.norm(x, ord, dim=axis, keepdim=keepdims) if x.dim() else torch.abs(x)),
    "eigvalsh": lambda x: torch.linalg.eigvalsh((x + x.mT) / 2),
    "pinv": lambda x: torch.linalg.pinv(x),
    "leaky_relu": leaky_relu, "sum": total, "mean": average, "max": largest, "min": smallest,
    "prod": product, "concatenate": lambda arrays, axis=0: torch.cat(arrays, dim=axis),
    "vstack": lambda arrays: torch.vstack(arrays),
    "kron": lambda a, b: torch.kron(a.contiguous(), b.contiguous()),
    "swapaxes": lambda x, axis1, axis2: torch.swapaxes(x, axis1, axis2),
    "einsum": lambda subscripts, operands: torch.einsum(subscripts, *operands),
    "take": lambda x, indices, axis=0: x[indices.long()],
    "reshape": lambda x, shape: x.reshape(tuple(int(d) for d in shape)),
    "transpose": lambda x, axes=None: x.permute(
        tuple(range(x.dim()))[::-1] if axes is None else tuple(axes)),
    "hstack": lambda arrays: torch.hstack([torch.atleast_1d(a) for a in arrays]),
    "solve": torch.linalg.solve, "var": variance, "tril": lambda x, k=0: torch.tril(x, k),
    "triu": lambda x, k=0: torch.triu(x, k),
    "cholesky": lambda x: torch.linalg.cholesky((x + x.mT) / 2),
    "where": lambda condition, x, y: torch.where(condition > 0.5, x, y),
    "onehot": lambda y, classes: torch.nn.functional.one_hot(y.long(), int(classes)).to(DTYPE),
    "std": lambda x, axis=None, ddof=0, keepdims=False: torch.sqrt(variance(x, axis, ddof,
                                                                            keepdims)),
    "eye": lambda n: torch.eye(int(n), dtype=DTYPE),
    "ones": lambda rows, cols=None: torch.ones(sizes_of(rows, cols), dtype=DTYPE),
    "zeros": lambda rows, cols=None: torch.zeros(sizes_of(rows, cols), dtype=DTYPE),
    "maximum": lambda a, b: torch.maximum(*torch.broadcast_tensors(a, b)),
    "minimum": lambda a, b: torch.minimum(*torch.broadcast_tensors(a, b)),
    "clip": lambda x, lo, hi: torch.clamp(*torch.broadcast_tensors(x, lo, hi)),
    "outer": lambda a, b: torch.outer(a, b),
    "matrix_power": lambda x, k: torch.linalg.matrix_power(x, k),
    "softmax": softmax, "log_softmax": log_softmax, "logsumexp": logsumexp,
    "softmax_cross_entropy": lambda logits, targets: cross_entropy(logits, targets),
    "mse": lambda pred, target: torch.mean((pred - target) ** 2),
}
"""Each function of the language in torch, with NumPy's semantics and the language's parameter
names (so keyword arguments bind alike)."""

PARAMETERS: dict[str, tuple[str, ...]] = {
    "leaky_relu": ("x", "a"), "sum": ("x", "axis", "keepdims"),
    "max": ("x", "axis", "keepdims"), "min": ("x", "axis", "keepdims"),
    "prod": ("x", "axis", "keepdims"), "concatenate": ("arrays", "axis"),
    "vstack": ("arrays",), "hstack": ("arrays",), "kron": ("a", "b"),
    "swapaxes": ("x", "axis1", "axis2"), "transpose": ("x", "axes"),
    "einsum": ("subscripts", "operands"), "take": ("x", "indices", "axis"),
    "reshape": ("x", "shape"), "maximum": ("a", "b"),
    "minimum": ("a", "b"), "clip": ("x", "lo", "hi"), "solve": ("A", "B"),
    "var": ("x", "axis", "ddof", "keepdims"), "std": ("x", "axis", "ddof", "keepdims"),
    "where": ("condition", "x", "y"), "norm": ("x", "ord", "axis", "keepdims"),
    "onehot": ("y", "classes"), "eye": ("n",),
    "ones": ("rows", "cols"), "zeros": ("rows", "cols"), "tril": ("x", "k"), "triu": ("x", "k"),
    "mean": ("x", "axis", "keepdims"), "logsumexp": ("x", "axis", "keepdims"),
    "softmax": ("x", "axis"), "log_softmax": ("x", "axis"), "matrix_power": ("x", "k"),
    "outer": ("a", "b"), "softmax_cross_entropy": ("logits", "targets"),
    "mse": ("pred", "target"), "gelu": ("x", "approximate"),
}
"""Parameter names of the functions with more than one (the others take ``x``)."""

LITERAL = {"axis", "keepdims", "k", "ddof", "ord", "approximate", "axis1", "axis2", "axes",
           "subscripts"}
"""Parameters that are literals (integers, None, True, False), not tensors."""

BINARY: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div, "**": torch.pow,
    "@": torch.matmul,
    **{op: lambda a, b, f=f: f(a, b).to(DTYPE) for op, f in {
        "<": torch.lt, ">": torch.gt, "<=": torch.le, ">=": torch.ge}.items()},
}

WORDS = {"None": None, "True": True, "False": False, "inf": math.inf}


def literal(e: syntax.Expr) -> int | float | bool | None:
    """The value of a literal argument: ``-1``, ``None``, ``True``, ``2``."""
    if isinstance(e, syntax.Name) and e.id in WORDS:
        return WORDS[e.id]
    if isinstance(e, syntax.UnaryOp):
        value = literal(e.operand)
        return -value if e.op == "-" else value
    if isinstance(e, syntax.Number):
        return int(e.value) if e.value.is_Integer else float(e.value)
    if isinstance(e, syntax.String):
        return e.value
    if isinstance(e, syntax.List):
        return [literal(item) for item in e.items]
    raise ValueError(f"not a literal: {syntax.unparse(e)}")


class Evaluator:
    """Evaluates source expressions over tensors, intermediates and sizes, recording kinks."""

    def __init__(self, env: dict[str, Tensor], sizes: Mapping[str, int], trace: Trace) -> None:
        self.env = env
        self.sizes = sizes
        self.trace = trace

    def __call__(self, e: syntax.Expr) -> Tensor:
        return getattr(self, "e_" + type(e).__name__)(e)

    def e_Name(self, e: syntax.Name) -> Tensor:  # noqa: N802
        if e.id in self.env:
            return self.env[e.id]
        if e.id in self.sizes:
            return scalar(self.sizes[e.id])
        if e.id == "pi":
            return scalar(math.pi)
        raise NameError(f"`{e.id}` is not defined")

    def e_Number(self, e: syntax.Number) -> Tensor:  # noqa: N802
        return scalar(float(e.value))

    def e_List(self, e: syntax.List) -> list[Tensor]:  # noqa: N802
        return [self(item) for item in e.items]

    def e_UnaryOp(self, e: syntax.UnaryOp) -> Tensor:  # noqa: N802
        value = self(e.operand)
        return -value if e.op == "-" else value

    def e_BinOp(self, e: syntax.BinOp) -> Tensor:  # noqa: N802
        left, right = self(e.left), self(e.right)
        if e.op in syntax.COMPARISONS:              # a mask jumps where its sides are equal
            self.trace.kinks.append(torch.as_tensor(left - right).detach().reshape(-1))
        return BINARY[e.op](left, right)

    def e_Transpose(self, e: syntax.Transpose) -> Tensor:  # noqa: N802
        value = self(e.operand)
        return transpose(value) if e.attr == "T" else value.mT

    def e_Call(self, e: syntax.Call) -> Tensor:  # noqa: N802
        names = PARAMETERS.get(e.func, ("x",))
        args = e.args
        if e.func == "einsum":                       # einsum(subscripts, *operands)
            args = (args[0], syntax.List(tuple(args[1:])))
        given = {**dict(zip(names, args, strict=False)), **{k: v for k, v, _ in e.kwargs}}
        values = {k: literal(v) if k in LITERAL else self(v) for k, v in given.items()}
        return self.record(e.func, values)

    def record(self, func: str, values: dict[str, object]) -> Tensor:
        """Apply ``func``, noting arguments at which it is not differentiable."""
        if func in ("relu", "abs", "leaky_relu", "sign"):
            self.trace.kinks.append(values["x"].detach())
        if func in ("maximum", "minimum"):
            self.trace.kinks.append((values["a"] - values["b"]).detach())
        if func == "clip":
            x = values["x"].detach()
            self.trace.kinks += [x - values["lo"], x - values["hi"], values["lo"] - values["hi"]]
        if func in ("max", "min") and values["x"].dim():
            self.trace.kinks.append(runner_up_gap(values["x"].detach(), values.get("axis")))
        if func == "norm":
            self.norm_kinks(values["x"].detach(), values.get("ord"), values.get("axis"))
        if func == "eigvalsh":                   # distinct eigenvalues
            s = values["x"].detach()
            self.trace.kinks.append(torch.diff(torch.linalg.eigvalsh((s + s.mT) / 2)))
        result = FUNCTIONS[func](**values)
        if func == "std":                        # not differentiable where it is 0
            self.trace.kinks.append(result.detach().reshape(-1))
        return result

    def norm_kinks(self, x: Tensor, k: object, axis: int | None) -> None:
        """Where ``norm(x, k)`` is not differentiable: ‖x‖₂ at 0 (along ``axis``, each row's or
        column's), |xᵢ| at 0 and ties of the largest sums of the 1- and ∞-norms, a smallest
        singular value 0 ("nuc"), a largest one not simple (2 of a matrix)."""
        matrix = x.dim() == 2 and axis is None
        if k in (None, 2, "fro") and not (matrix and k == 2):
            if axis is None:
                self.trace.norms.append(x)
            else:
                self.trace.kinks.append(torch.linalg.vector_norm(x, dim=axis).reshape(-1))
        elif k == "nuc":
            self.trace.kinks.append(torch.linalg.svdvals(x)[-1:])
        elif k == 2:
            top = torch.linalg.svdvals(x)
            self.trace.kinks.append(top[:1] - top[1:2] if len(top) > 1 else torch.ones(1))
        else:
            self.trace.kinks.append(x.reshape(-1))
            if matrix:
                sums = torch.sum(torch.abs(x), dim=0 if abs(k) == 1 else 1)
                self.trace.kinks.append(runner_up_gap(sums, None))
            elif abs(k) == math.inf:
                self.trace.kinks.append(runner_up_gap(torch.abs(x), axis).reshape(-1))


def runner_up_gap(x: Tensor, axis: int | None) -> Tensor:
    """The gap between the two largest entries along ``axis`` (all for None): max ties at 0.
    (The two smallest for min have the same gaps between neighbours in sorted order.)"""
    flat = x.reshape(-1) if axis is None else x.movedim(axis, -1)
    if flat.shape[-1] < 2:
        return torch.ones(1, dtype=x.dtype)
    ordered = torch.sort(flat, dim=-1).values
    return torch.cat([ordered[..., 1:2] - ordered[..., :1],
                      ordered[..., -1:] - ordered[..., -2:-1]], dim=-1)


def as_tensor(value: object) -> Tensor:
    """Arrays and numbers as tensors: floats in float64, integer labels as int64."""
    if isinstance(value, Tensor):
        return value
    tensor = torch.as_tensor(value)
    return tensor if not tensor.is_floating_point() else tensor.to(DTYPE)


def own_node(value: Tensor) -> Tensor:
    """A tensor of its own for a named intermediate: ∂f/∂t counts only the paths through t."""
    if value.requires_grad:
        return value.clone()
    return value.detach().clone().requires_grad_(True)


def torch_trace(program: Program, own_nodes: bool = True) -> Callable[..., Trace]:
    """``(**tensors) -> Trace``: the program evaluated from its source text by torch alone;
    without ``own_nodes`` intermediates are not leaves of their own (for torch.func, whose
    transforms see through the whole evaluation)."""
    statements = [s for s in syntax.parse_program(program.source).statements
                  if not isinstance(s, syntax.Decl)]

    def run(**inputs: object) -> Trace:
        tensors = {name: as_tensor(value) for name, value in inputs.items()}
        trace = Trace(scalar(0.0))
        env = dict(tensors)
        shapes = {name: tuple(t.shape) for name, t in tensors.items()}
        evaluate = Evaluator(env, sizes_of_arrays(program, shapes), trace)
        for statement in statements:
            trace.value = evaluate(statement.expr)
            if isinstance(statement, syntax.Assign):
                if own_nodes:
                    trace.value = own_node(trace.value)
                env[statement.name] = trace.value
                trace.intermediates[statement.name] = trace.value
        return trace

    return run


def torch_function(program: Program, own_nodes: bool = True) -> Callable[..., Tensor]:
    """``(**tensors) -> value``: the program's value, differentiable by torch.autograd (by
    torch.func without ``own_nodes``)."""
    run = torch_trace(program, own_nodes)
    return lambda **tensors: run(**tensors).value
