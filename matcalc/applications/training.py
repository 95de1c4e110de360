"""Minibatch SGD on a program's parameters, with only the code matcalc generates for it.

The program's declared variables are split into roles: the trained parameters (``wrt``), the
input ``x`` and the target ``y`` (one row per example, batch dimension first: ``X: [N, D]``,
``Y: [N, C]``, or ``[N]`` for one column), and constants (scalars such as ``lam``). Sizes come
from the data and, for the rest, from ``hidden``. Each step calls the generated
``value_and_grad``; the test loss calls the generated ``value``; for
``softmax_cross_entropy(logits, Y)`` the logits are generated code too, giving test accuracy.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import sympy

from matcalc.applications import figures, variance
from matcalc.applications.datasets import Data, Split, load_data, split
from matcalc.applications.optimizers import (
    Optimizer,
    SecondOrder,
    new_optimizer,
    newton_step,
)
from matcalc.core.ir import (
    Node,
    class_counts,
    const_value,
    has_property,
    is_labels,
    postorder,
    shape_str,
)
from matcalc.errors import MatcalcError, did_you_mean
from matcalc.forms.generated import lambdify
from matcalc.forms.printing import to_text
from matcalc.language.lowering import Program, parse
from matcalc.language.sizes import (
    check_memory,
    concrete_shape,
    size_of,
    sizes_only_in_products,
)
from matcalc.language.source import read_source

DEFAULT_SIZE = 64
PRODUCT_SIZE = 8
"""The default of a size only products of sizes contain (``h`` and ``k`` of ``[V, h * k]``)."""

__all__ = ["Data", "History", "load_data", "train"]


# ----------------------------------------------------------------------------------------------
# Mapping data to the program


def check_constants(program: Program, wrt: Sequence[str], x: str, y: str,
                    given: Mapping[str, str]) -> None:
    """Each value given (``name -> where``: ``--set`` or a data file) is for a data variable
    of the program: not an undeclared name, a trained parameter, the input or the target."""
    data = [n for n in program.variables if n not in {*wrt, x, y, *given}]
    for name, where in given.items():
        if name in wrt:
            raise MatcalcError(f"{where} gives `{name}` a value, but `{name}` is trained "
                               "(--wrt); a variable is either trained or data")
        if name in (x, y):
            role = "input (--x)" if name == x else "target (--y)"
            raise MatcalcError(f"{where} gives `{name}` a value, but `{name}` is the {role}")
        if name in program.intermediates:
            raise MatcalcError(f"{where} gives `{name}` a value, but `{name}` is an "
                               "intermediate; only declared variables take values")
        if name not in program.variables:
            drop = "Leave it out" if where == "--set" else f"Remove it from {where}"
            raise MatcalcError(
                f"{where} gives `{name}`, which the program does not declare."
                + did_you_mean(name, data),
                hint=f"{drop}, or declare it in the program. Data variables without a value: "
                     f"{', '.join(data) or 'none'}.")


def target_name(program: Program, y: str | None) -> str:
    """``y`` when given; else ``Y``, or when the program declares no ``Y``, the targets of its
    ``softmax_cross_entropy`` (``y: [N] labels`` needs no ``--y y``)."""
    if y is not None:
        return y
    targets = {n.args[1].attrs.name for n in postorder([program.function])
               if n.op == "softmax_cross_entropy" and n.args[1].op == "var"}
    return targets.pop() if "Y" not in program.variables and len(targets) == 1 else "Y"


def input_name(program: Program, x: str | None) -> str:
    """``x`` when given; else ``X``, or when the program declares no ``X``, the indices of
    its one embedding lookup (``tokens`` of ``take(E, tokens, axis=0)``)."""
    if x is not None:
        return x
    indices = {n.args[1].attrs.name for n in postorder([program.function])
               if n.op == "take" and n.args[1].op == "var"}
    return indices.pop() if "X" not in program.variables and len(indices) == 1 else "X"


def weights(program: Program, wrt: Sequence[str]) -> list[str]:
    """The trained variables a matrix product uses (weight decay shrinks these, not biases,
    gains or embeddings)."""
    used = {a.args[0] if a.op == "transpose" else a
            for n in postorder([program.function]) if n.op == "matmul" for a in n.args}
    return [name for name in wrt if program.variables[name] in used]


def check_roles(program: Program, wrt: Sequence[str], x: str, y: str,
                constants: Mapping[str, Any]) -> None:
    """Every declared variable is trained, the input, the target or a given constant."""
    for name in wrt:
        if name not in program.variables:
            program.lookup(name)  # unknown names get a did-you-mean
            raise MatcalcError(f"`{name}` is an intermediate; train declared variables only")
    for flag, name in (("--x", x), ("--y", y)):
        if name not in program.variables:
            raise MatcalcError(
                f"{flag} {name}: the program declares no variable `{name}`."
                + did_you_mean(name, program.variables),
                hint="The input and target are the program's X and Y unless --x NAME --y NAME "
                     f"say otherwise; declared: {', '.join(program.variables)}.")
        if name in wrt:
            raise MatcalcError(f"`{name}` is data ({flag}); it cannot also be trained (--wrt)")
    for name in program.variables:
        if name not in {*wrt, x, y, *constants}:
            raise MatcalcError(
                f"`{name}` is declared but is neither trained nor data",
                hint=f"Train it with --wrt {name}, give it a value with --set {name}=VALUE, or "
                     f"make it the input or target with --x {name} / --y {name}.")


def batch_dim(program: Program, x: str, y: str) -> str:
    """The batch dimension: the first dimension of both ``x`` and ``y``."""
    dims = [program.variables[name].shape[:1] for name in (x, y)]
    if dims[0] != dims[1] or not dims[0] or dims[0][0].is_Integer:
        declared = ", ".join(f"{n}: {shape_str(program.variables[n].shape)}" for n in (x, y))
        raise MatcalcError(
            f"`{x}` and `{y}` need the batch as their first dimension (declared {declared})",
            hint=f"Declare one row per example, e.g. `{x}: [N, D]; {y}: [N, C]`.")
    batch = dims[0][0]
    for name, node in program.variables.items():
        axes = node.shape[1:] if name in (x, y) else node.shape
        if any(batch in d.free_symbols for d in axes):
            raise MatcalcError(
                f"`{batch}` is the batch, the rows of `{x}` and `{y}`, but `{name}: "
                f"{shape_str(node.shape)}` uses it for another axis: a minibatch changes the "
                f"batch size, and that axis with it",
                hint=f"Give that axis a size of its own, e.g. `{x}: [{batch}, D]` and `w: [D, 1]`.")
    return str(batch)


def shaped(node: Node, rows: np.ndarray) -> np.ndarray:
    """Data rows shaped as the variable is declared: ``[N, D]`` as they are, ``[N]`` flat,
    integer class labels as integers (one-hot rows become their classes; ``[N, T]`` labels
    stay a row of labels per example; one-hot rows for a vector are the binary task of the
    upper half of the classes, 5–9 against 0–4 for the digits)."""
    name, shape = node.attrs.name, node.attrs.shape
    if is_labels(node):
        labels = (rows if len(shape) == 2 else rows.argmax(axis=1) if rows.shape[1] > 1
                  else rows[:, 0])
        if not np.array_equal(labels, np.round(labels)) or np.min(labels, initial=0) < 0:
            raise MatcalcError(f"`{name}` is declared as integer class labels, but the data for "
                               "it are not non-negative integers (nor one-hot rows)")
        return labels.astype(np.int64)
    if len(shape) == 2:
        return rows
    if rows.shape[1] == 1:
        return rows[:, 0]
    if one_hot(rows):          # a binary task: the upper half of the classes against the rest
        return (rows.argmax(axis=1) >= rows.shape[1] / 2).astype(float)
    raise MatcalcError(f"`{name}` is declared {shape_str(shape)} but the data give it "
                       f"{rows.shape[1]} columns", hint=f"Declare it `{name}: [N, D]`.")


def one_hot(rows: np.ndarray) -> bool:
    return bool(np.all((rows == 0) | (rows == 1)) and np.all(rows.sum(axis=1) == 1))


def shaped_split(program: Program, rows: Split, x: str, y: str) -> Split:
    """The split with each array shaped as ``x`` or ``y`` is declared."""
    nodes = [program.variables[name] for name in (x, y, x, y)]
    arrays = (rows.x_train, rows.y_train, rows.x_test, rows.y_test)
    return Split(*(shaped(node, array) for node, array in zip(nodes, arrays, strict=True)))


def bind_sizes(program: Program, data: Mapping[str, np.ndarray], batch: tuple[str, int],
               hidden: Mapping[str, int]) -> dict[str, tuple[int, str]]:
    """Every dimension's size and where it comes from: the batch, the data, ``hidden``."""
    sizes = {batch[0]: (batch[1], "batch")}
    for name, classes in class_counts(program.function).items():
        if name in data and not classes.is_Integer:
            count = int(np.max(data[name], initial=0)) + 1
            if count > sizes.get(str(classes), (0,))[0]:
                sizes[str(classes)] = (count, f"the classes of {name}")
    for name, array in data.items():
        for declared, got in zip(program.variables[name].shape[1:], array.shape[1:],
                                 strict=True):
            known = int(declared) if declared.is_Integer else sizes.get(str(declared), (got,))[0]
            if known != got:
                declared_shape = shape_str(program.variables[name].shape)
                raise MatcalcError(
                    f"`{name}` is declared {declared_shape} but the data for it have "
                    f"{got} columns, not {known}",
                    hint=f"Declare `{name}` with a size the data set, e.g. "
                         f"`{name}: [N, C]`, or choose other data with --data.")
            if not declared.is_Integer:
                sizes.setdefault(str(declared), (got, f"from {name}"))
    for name, value in hidden.items():
        if name not in program.dims:
            raise MatcalcError(f"--hidden {name}: `{name}` is not a size of the program"
                               + did_you_mean(name, program.dims),
                               hint=f"Its sizes: {', '.join(program.dims)}.")
        if name in sizes:
            raise MatcalcError(f"--hidden {name}: `{name}` is set by the data ({sizes[name][1]})")
        sizes[name] = (value, "--hidden")
    in_products = set(sizes_only_in_products(program))
    return {d: sizes.get(d, (PRODUCT_SIZE if d in in_products else DEFAULT_SIZE, "default"))
            for d in program.dims}


# ----------------------------------------------------------------------------------------------
# Initialisation


@dataclass(frozen=True)
class Layer:
    """How a weight is used: ``input @ W`` (or ``W @ input``) with these fan-in and fan-out."""

    fan_in: int
    fan_out: int
    input: Node


def layer_of(program: Program, weight: Node, sizes: Mapping[str, int]) -> Layer | None:
    """The first matrix product using ``weight`` (or its transpose), or None."""
    for node in postorder([program.function]):
        if node.op != "matmul":
            continue
        for mine, other in (node.args, node.args[::-1]):
            if mine is weight or (mine.op == "transpose" and mine.args[0] is weight):
                fan_in = size_of(node.args[0].shape[-1], sizes)
                total = math.prod(concrete_shape(weight.shape, sizes))
                return Layer(fan_in, total // fan_in, other)
    return None


def input_activation(node: Node) -> variance.Activation | None:
    """The activation producing a layer's input: linear for data, None when not a built-in."""
    node = node.args[0] if node.op == "named" else node
    if node.op == "var":
        return variance.BUILTINS["linear"]
    act = variance.BUILTINS.get(node.op)
    if node.op != "leaky_relu":
        return act
    slope = const_value(node.args[1])
    return None if slope is None else act.with_values({act.params[0]: slope})


def weight_variance(init: str, layer: Layer) -> tuple[float, str]:
    """Var(W) for ``init`` and why: derived from the input activation's E[f²] when known."""
    act = input_activation(layer.input)
    source = to_text(layer.input)
    if init == "derived" and act is not None:
        moments = variance.moments(act)
        value = variance.initialisation(act, moments, layer.fan_in).fan_in.value
        where = ("data, taken as E[x²] = 1" if act.name == "linear"
                 else f"{act.name}, E[x²] = {moments.second.value:.4g}")
        return value, f"derived 1/(n E[x²]), n = {layer.fan_in}, x = {source} ({where})"
    kind = init if init != "derived" else "kaiming"
    value = float(variance.weight_variances(act or variance.BUILTINS["relu"], kind, 1,
                                            layer.fan_out, layer.fan_in)[0])
    why = "" if init == kind else f"; {source} is not a built-in activation's output"
    return value, f"{kind}, fan_in {layer.fan_in}, fan_out {layer.fan_out}{why}"


def initial_params(program: Program, wrt: Sequence[str], sizes: Mapping[str, int], init: str,
                   rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Weights (matrix-product operands) drawn N(0, Var(W)); embedding tables N(0, 1), as
    PyTorch's nn.Embedding; gains (factors of an elementwise product) ones, as LayerNorm's;
    everything else zero."""
    params, notes = {}, {}
    for name in wrt:
        node = program.variables[name]
        shape = concrete_shape(node.shape, sizes)
        layer = layer_of(program, node, sizes)
        if layer is None:
            params[name], notes[name] = unlayered(program, node, shape, rng)
            continue
        var, why = weight_variance(init, layer)
        draw = rng.standard_normal(shape)
        if has_property(node, "symmetric"):   # (A + Aᵀ)/√2: Var off the diagonal, 2 Var on it
            draw, why = (draw + draw.T) / math.sqrt(2), why + ", symmetrised"
        params[name] = draw * math.sqrt(var)
        notes[name] = f"normal, Var = {var:.4g} ({why})"
    return params, notes


def unlayered(program: Program, node: Node, shape: tuple[int, ...], rng: np.random.Generator
              ) -> tuple[np.ndarray, str]:
    """The start of a parameter no matrix product uses, and why."""
    uses = [n for n in postorder([program.function]) if node in n.args]
    if any(n.op == "take" and n.args[0] is node for n in uses):
        return rng.standard_normal(shape), "normal, Var = 1 (an embedding table)"
    if any(n.op == "mul" and any(map(standardised, n.args)) for n in uses):
        return np.ones(shape), "ones (the gain of a normalisation)"
    return np.zeros(shape), "zeros"


def standardised(node: Node) -> bool:
    """Whether ``node`` divides by a square root (``(x − μ) / sqrt(σ² + ε)``, a LayerNorm's or
    BatchNorm's output before its gain)."""
    return any(n.op == "pow" and (const_value(n.args[1]) == sympy.Rational(-1, 2) or (
        const_value(n.args[1]) == -1 and n.args[0].op == "sqrt")) for n in postorder([node]))


# ----------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean training loss over its batches (None before training), test loss, test
    accuracy (None unless a classifier)."""

    epoch: int
    train_loss: float | None
    test_loss: float
    accuracy: float | None
    gradient_norm: float | None = None
    """Newton: the full-batch gradient's norm at the start of the epoch's step."""

    def row(self) -> str:
        train = "—" if self.train_loss is None else loss_text(self.train_loss)
        cells = [f"{self.epoch:>5}", f"{train:>11}", f"{loss_text(self.test_loss):>10}"]
        if self.accuracy is not None:
            cells.append(f"{100 * self.accuracy:>9.2f}%")
        if self.gradient_norm is not None:
            cells.append(f"{self.gradient_norm:>12.3e}")
        return " ".join(cells)


def loss_text(loss: float) -> str:
    """Four decimals, or four digits when the loss is huge (a diverging run)."""
    return f"{loss:.4f}" if abs(loss) < 1e4 else f"{loss:.4g}"


@dataclass
class History:
    """What :func:`train` did: sizes, initialisation, per-epoch statistics, final parameters."""

    data: str
    sizes: dict[str, tuple[int, str]]
    inits: dict[str, str]
    n_train: int
    n_test: int
    epochs: list[EpochStats] = field(default_factory=list)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""
    gradient_norm: float | None = None
    """Newton: the full-batch gradient's norm after the last step."""

    @property
    def final(self) -> EpochStats:
        return self.epochs[-1]

    def header(self) -> str:
        sizes = ", ".join(f"{d} = {n} ({why})" for d, (n, why) in self.sizes.items())
        inits = [f"  {name}: {note}" for name, note in self.inits.items()]
        classes = "" if self.final.accuracy is None else "   test acc"
        if self.gradient_norm is not None or self.note.startswith("Newton"):
            classes += "   ‖∇f‖ before"
        note = [f"note: {self.note}"] if self.note else []
        return "\n".join([f"data {self.data}: {self.n_train} training, {self.n_test} test rows",
                          *note, f"sizes {sizes}", "init", *inits,
                          f"epoch  train loss  test loss{classes}"])

    def summary(self) -> str:
        """The final accuracy and loss, the epochs and the time."""
        last = self.final
        accuracy = "" if last.accuracy is None else f"test accuracy {100 * last.accuracy:.2f}%, "
        norm = "" if self.gradient_norm is None else \
            f", training gradient norm {self.gradient_norm:.2e}"
        epochs = "epoch" if last.epoch == 1 else "epochs"
        return (f"{accuracy}test loss {last.test_loss:.4g} after {last.epoch} {epochs} "
                f"in {self.seconds:.2f} s{norm}")


@dataclass
class Model:
    """The generated code and the arrays it runs on."""

    module: ModuleType
    logits: Callable[..., np.ndarray] | None
    params: dict[str, np.ndarray]
    constants: dict[str, Any]
    x: str
    y: str
    optimizer: Optimizer
    scored: np.ndarray | None = None
    """The target positions accuracy counts (None: all)."""
    gradient_norm: float | None = None
    """The full-batch gradient's norm at the last Newton step."""

    def arrays(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, Any]:
        return {**self.constants, **self.params, self.x: xs, self.y: ys}

    def loss(self, xs: np.ndarray, ys: np.ndarray) -> float:
        return float(self.module.value(**self.arrays(xs, ys)))

    def step(self, xs: np.ndarray, ys: np.ndarray) -> float:
        if self.optimizer.kind == "newton":
            return self.newton(xs, ys)
        loss, grads = self.module.value_and_grad(**self.arrays(xs, ys))
        self.optimizer.step(self.params, grads)
        return float(loss)

    def newton(self, xs: np.ndarray, ys: np.ndarray) -> float:
        """One damped Newton step on these rows; the gradient norm before it is kept."""
        data = {**self.constants, self.x: xs, self.y: ys}
        module = self.module
        hessian = getattr(module, "hessian", None)
        f = SecondOrder(
            loss=lambda p: float(module.value(**data, **p)),
            loss_and_grad=lambda p: module.value_and_grad(**data, **p),
            hessian=None if hessian is None else lambda p: hessian(**data, **p),
            hvp=lambda p, v: module.hvp(**data, **p, v=next(iter(v.values())) if len(v) == 1
                                        else v))
        loss, self.gradient_norm, stepped = newton_step(self.params, f)
        if not stepped and self.gradient_norm > STALLED * max(1.0, abs(loss)):
            raise MatcalcError(
                f"Newton's method made no progress (gradient norm {self.gradient_norm:.3g}): "
                "no step along H⁻¹∇f lowers the loss, as for a loss whose Hessian is zero or "
                "singular (hinge, absolute values)",
                hint="Train it with --optimizer sgd, momentum or adam.")
        return float(loss)

    def accuracy(self, xs: np.ndarray, ys: np.ndarray) -> float | None:
        if self.logits is None:
            return None
        predicted = self.logits(**self.arrays(xs, ys)).argmax(axis=-1)
        classes = ys if ys.dtype.kind in "iu" else ys.argmax(axis=-1)
        right = predicted == classes
        return float(np.mean(right if self.scored is None else right[:, self.scored]))


def logits_function(program: Program, y: str, wrt: Sequence[str],
                    targets: np.ndarray) -> Callable | None:
    """The generated ``value`` of the logits of ``softmax_cross_entropy(logits, y)``, if any;
    the ``targets`` must then be one-hot rows (or probabilities)."""
    target = program.variables[y]
    for node in postorder([program.function]):
        if node.op == "softmax_cross_entropy" and node.args[1] is target:
            dense = not is_labels(target)
            if dense and (targets.ndim != 2 or targets.shape[1] < 2
                          or not np.allclose(targets.sum(1), 1)):
                raise MatcalcError(
                    f"`{y}` is the target of softmax_cross_entropy, so its rows must be one-hot "
                    "(or probabilities) over at least two classes; these data's are not",
                    hint="Use classification data (--data digits) or a regression loss such "
                         "as mse.")
            logits = node.args[0]
            name = logits.attrs.name if logits.op == "named" else "logits"
            sub = dataclasses.replace(program, function=logits, function_name=name)
            return lambdify(sub, wrt[:1]).value
    return None


def train(source: str | Path | Program, wrt: Sequence[str] = (), data: str | Data = "digits",
          *, x: str | None = None, y: str | None = None, epochs: int = 20, lr: float = 0.1,
          batch: int = 64, seed: int = 0, init: str = "derived",
          hidden: Mapping[str, int] | None = None, constants: Mapping[str, float] | None = None,
          declarations: Sequence[str] = (), optimizer: str = "sgd",
          weight_decay: float | None = None,
          on_epoch: Callable[[History], None] | None = None,
          on_batch: Callable[[int, int, int, float], None] | None = None) -> History:
    """Train ``wrt`` (every declared variable that is not data, when empty) with minibatches
    of ``data`` and ``optimizer`` (sgd, momentum, adam, newton); ``on_epoch`` sees the history
    after each epoch (epoch 0 is before training), ``on_batch`` each step (epoch, steps done,
    steps in the epoch, loss). ``source`` is program text, a ``.mc`` path
    or a Program."""
    start = time.perf_counter()
    program = source if isinstance(source, Program) else parse(read_source(str(source)),
                                                                    declarations)
    x, y = input_name(program, x), target_name(program, y)
    data = data if isinstance(data, Data) else load_data(data, x, y)
    given = {**data.constants, **(constants or {})}
    wrt = list(wrt) or [n for n in program.variables if n not in {x, y, *given}]
    check_constants(program, wrt, x, y, {**dict.fromkeys(data.constants, data.name),
                                         **dict.fromkeys(constants or {}, "--set")})
    check_roles(program, wrt, x, y, given)
    dim = batch_dim(program, x, y)
    rows = shaped_split(program, split(data, seed), x, y)
    full = optimizer == "newton"
    if full:                              # every step sees all the training rows
        batch = len(rows.x_train)
    sizes = bind_sizes(program, {x: rows.x_train, y: rows.y_train}, (dim, batch), hidden or {})
    largest = max(min(batch, len(rows.x_train)), len(rows.x_test))  # a batch, or the test rows
    check_memory(program, {**{d: n for d, (n, _) in sizes.items()}, dim: largest},
                 hint="Use smaller --hidden sizes (or fewer data columns).")
    rng = np.random.default_rng(seed)
    params, notes = initial_params(program, wrt, {d: n for d, (n, _) in sizes.items()}, init, rng)
    program = dataclasses.replace(program, sizes={d: sizes[d][0] for d in
                                                  sizes_only_in_products(program)})
    updates = new_optimizer(optimizer, lr, weight_decay, decayed=weights(program, wrt))
    model = Model(generated(program, wrt, optimizer),
                  logits_function(program, y, wrt, rows.y_train), params,
                  {k: np.asarray(v, dtype=float) for k, v in given.items()}, x, y, updates,
                  data.scored)
    history = History(data.name, sizes, notes, len(rows.x_train), len(rows.x_test),
                      params=params, note=NEWTON_NOTE if full else data.note)
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by `record`
        for epoch in range(epochs + 1):
            steps = batches(len(rows.x_train), batch, rng) if epoch else []
            losses = []
            for i in steps:
                losses.append(model.step(rows.x_train[i], rows.y_train[i]))
                if on_batch is not None:
                    on_batch(epoch, len(losses), len(steps), losses[-1])
            record(history, model, epoch, losses, (rows.x_test, rows.y_test), on_epoch)
        if full:
            _, grads = model.module.value_and_grad(**model.arrays(rows.x_train, rows.y_train))
            history.gradient_norm = float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))
    history.seconds = time.perf_counter() - start
    return history


DIVERGENCE = 1e6
"""A test loss this many times its starting value (or 1) means the training diverged."""


STALLED = 1e-6
"""A Newton step that cannot lower the loss while the gradient is larger than this (relative to
the loss) means the method is stuck, not converged."""
NEWTON_NOTE = ("Newton: each epoch is one damped Newton step on all training rows (the "
               "formed Hessian, or conjugate gradients on Hessian-vector products), its length "
               "found by backtracking from the full step; --lr and --batch are not used")


def generated(program: Program, wrt: Sequence[str], optimizer: str) -> ModuleType:
    """The generated module training runs: value and gradients, and for Newton also
    Hessian-vector products and (one parameter) the Hessian."""
    if optimizer != "newton":
        return lambdify(program, wrt)
    formed = len(wrt) == 1 and program.lookup(wrt[0]).rank <= 1
    try:
        return lambdify(program, wrt, emit=("grad", "hvp", *(("hessian",) if formed else ())))
    except MatcalcError:             # a Hessian too long to form: its products will do
        return lambdify(program, wrt, emit=("grad", "hvp"))


def batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled row indices in batches of ``size`` (the last may be smaller)."""
    return np.split(rng.permutation(n), range(size, n, size))


def record(history: History, model: Model, epoch: int, losses: list[float],
           test: Sequence[np.ndarray], on_epoch: Callable[[History], None] | None) -> None:
    """Append one epoch's statistics; stop with advice when the loss is not finite."""
    try:
        test_loss = model.loss(*test)
    except ValueError as clash:  # the generated code's shape check
        raise MatcalcError(f"the data do not fit the program: {clash}") from None
    train_loss = float(np.mean(losses)) if losses else None
    start = history.epochs[0].test_loss if history.epochs else test_loss
    exploding = abs(test_loss) > DIVERGENCE * max(1.0, abs(start))
    if exploding or not math.isfinite(test_loss if train_loss is None else train_loss + test_loss):
        raise MatcalcError(f"the loss diverged ({train_loss}, test {test_loss}) in epoch {epoch}",
                           hint="Lower the learning rate with --lr.")
    norm = model.gradient_norm if epoch else None
    history.epochs.append(EpochStats(epoch, train_loss, test_loss, model.accuracy(*test), norm))
    if on_epoch is not None:
        on_epoch(history)


def plot_history(history: History, path: str) -> None:
    """Loss per epoch (and test accuracy for a classifier) saved to a PNG at ``path``."""
    plt = figures.pyplot()
    epochs = [s.epoch for s in history.epochs]
    panels = 1 if history.final.accuracy is None else 2
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    axes[0, 0].plot(epochs[1:], [s.train_loss for s in history.epochs[1:]], label="training")
    axes[0, 0].plot(epochs, [s.test_loss for s in history.epochs], label="test")
    axes[0, 0].set(xlabel="epoch", ylabel="loss", yscale="log", title="loss")
    axes[0, 0].legend()
    if panels == 2:
        axes[0, 1].plot(epochs, [100 * s.accuracy for s in history.epochs], color="C2")
        axes[0, 1].set(xlabel="epoch", ylabel="%", title="test accuracy")
    for panel in axes[0]:
        panel.xaxis.get_major_locator().set_params(integer=True)
    figure.suptitle(f"matcalc train on {history.data}: {history.summary()}")
    figure.tight_layout()
    figures.save(figure, path, dpi=110)
    plt.close(figure)
