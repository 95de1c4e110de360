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
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from matcalc.applications import figures, variance
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
from matcalc.language.sizes import check_memory, concrete_shape, size_of
from matcalc.language.source import read_source

DATASETS = ("digits", "blobs")
TEST_FRACTION = 0.2
DEFAULT_SIZE = 64
BLOBS_TRANSFORM = np.array([[0.60834549, -0.63667341], [-0.40887718, 0.85253229]])
"""The seed's anisotropic stretch of ``make_blobs(n_samples=1000, random_state=170)``."""


# ----------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Data:
    """Inputs and targets, one row per example, and constants for other data variables."""

    name: str
    inputs: np.ndarray
    targets: np.ndarray
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    standardise: bool = False


@dataclass(frozen=True)
class Split:
    """The training and test rows."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_data(spec: str, x: str = "X", y: str = "Y") -> Data:
    """``digits``, ``blobs`` or a ``.npz`` file with arrays named ``x``, ``y`` (and constants)."""
    if spec == "digits":
        images, labels = _sklearn_datasets().load_digits(return_X_y=True)
        return Data("digits", images.astype(float), np.eye(10)[labels], standardise=True)
    if spec == "blobs":
        points = _sklearn_datasets().make_blobs(n_samples=1000, random_state=170, centers=1)[0]
        points = points @ BLOBS_TRANSFORM
        return Data("blobs", points[:, :1], points[:, 1:])
    if spec.endswith(".npz"):
        return _npz(spec, x, y)
    raise MatcalcError(f"unknown data `{spec}`." + did_you_mean(spec, DATASETS),
                       hint="--data is digits, blobs or a FILE.npz.")


def _sklearn_datasets() -> ModuleType:
    try:
        from sklearn import datasets
    except ImportError:
        raise MatcalcError("--data digits and blobs need scikit-learn, an optional extra",
                           hint="Install it with `pip install 'matcalc[train]'`.") from None
    return datasets


def _npz(path: str, x: str, y: str) -> Data:
    """The arrays of an ``.npz`` file: ``x`` and ``y`` as rows, the others as constants; each
    checked to hold finite numbers."""
    arrays = _read_npz(path)
    for name in (x, y):
        if name not in arrays:
            raise MatcalcError(
                f"{path} has no array `{name}` (it has {', '.join(arrays) or 'none'})",
                hint="Name the arrays after the program's data variables, or choose the input "
                     "and target with --x NAME --y NAME.")
    for name, array in arrays.items():
        _check_numbers(path, name, array)
    inputs, targets = _rows(arrays.pop(x), x, path), _rows(arrays.pop(y), y, path)
    if len(inputs) != len(targets):
        raise MatcalcError(f"{path}: `{x}` has {len(inputs)} rows but `{y}` has {len(targets)}",
                           hint="The input and the target need one row per example each.")
    return Data(path, inputs, targets, arrays)


_NOT_NPZ = (ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)
"""What NumPy raises for a file that is not a readable ``.npz`` archive."""


def _read_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, without unpickling anything."""
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as err:
        raise MatcalcError(f"cannot read {path}: {err.strerror or err}") from None
    except _NOT_NPZ as err:
        raise MatcalcError(f"{path} is not a NumPy .npz archive ({_load_problem(err)})",
                           hint=NPZ_HINT) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise MatcalcError(f"{path} holds a single array (.npy format), not an .npz archive of "
                           "named arrays", hint=NPZ_HINT)
    with archive:
        arrays = {}
        for name in archive.files:
            try:
                arrays[name] = archive[name]
            except (OSError, *_NOT_NPZ) as err:
                raise MatcalcError(f"{path}: cannot read the array `{name}` "
                                   f"({_load_problem(err)})", hint=NPZ_HINT) from None
    return arrays


NPZ_HINT = "Save the data with numpy: np.savez(path, X=inputs, Y=targets), numbers only."


def _load_problem(err: BaseException) -> str:
    """What went wrong reading an archive, in words."""
    text = str(err)
    if "pickle" in text:
        return "it holds Python objects, which matcalc does not unpickle"
    if isinstance(err, EOFError) or "No data left" in text:
        return "the file is empty or cut short"
    return text or type(err).__name__


def _check_numbers(path: str, name: str, array: np.ndarray) -> None:
    """A data array holds real numbers (booleans, integers or floats), all finite."""
    if array.dtype.kind not in "biuf":
        kind = {"c": "complex numbers", "U": "strings", "S": "bytes", "O": "Python objects",
                "M": "dates", "m": "time differences"}.get(array.dtype.kind, "structured data")
        raise MatcalcError(f"{path}: `{name}` holds {kind} (dtype {array.dtype}), not real "
                           "numbers", hint="Convert it to floats (or integer labels) first.")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            where = np.argwhere(bad)[0]
            at = f" (the first in row {where[0]}, counting from 0)" if array.ndim else ""
            raise MatcalcError(f"{path}: `{name}` has {int(bad.sum())} NaN or infinite "
                               f"entr{'y' if bad.sum() == 1 else 'ies'}{at}",
                               hint="Remove or fill in those entries before training.")


def _rows(array: np.ndarray, name: str, path: str = "") -> np.ndarray:
    """A data array as a float matrix, one row per example."""
    where = f"{path}: " if path else ""
    if array.ndim not in (1, 2):
        raise MatcalcError(f"{where}`{name}` has shape {array.shape}; data are one row per "
                           "example (a vector or a matrix)")
    if len(array) == 0:
        raise MatcalcError(f"{where}`{name}` has no rows", hint="The data need examples.")
    return np.asarray(array, dtype=float).reshape(len(array), -1)


MIN_ROWS = 3
"""The fewest rows an 80/20 split leaves a training and a test row in."""


def split(data: Data, seed: int) -> Split:
    """A shuffled 80/20 split; features standardised by the training rows when asked."""
    if len(data.inputs) < MIN_ROWS:
        raise MatcalcError(f"{data.name} has {len(data.inputs)} rows; an 80/20 split into "
                           f"training and test rows needs at least {MIN_ROWS}")
    order = np.random.default_rng(seed).permutation(len(data.inputs))
    train, test = np.split(order, [round(len(order) * (1 - TEST_FRACTION))])
    x_train, x_test = data.inputs[train], data.inputs[test]
    if data.standardise:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return Split(x_train, data.targets[train], x_test, data.targets[test])


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
    integer class labels as integers (one-hot rows become their classes)."""
    name, shape = node.attrs.name, node.attrs.shape
    if is_labels(node):
        labels = rows.argmax(axis=1) if rows.shape[1] > 1 else rows[:, 0]
        if not np.array_equal(labels, np.round(labels)) or np.min(labels, initial=0) < 0:
            raise MatcalcError(f"`{name}` is declared as integer class labels, but the data for "
                               "it are not non-negative integers (nor one-hot rows)")
        return labels.astype(np.int64)
    if len(shape) == 2:
        return rows
    if rows.shape[1] == 1:
        return rows[:, 0]
    raise MatcalcError(f"`{name}` is declared {shape_str(shape)} but the data give it "
                       f"{rows.shape[1]} columns", hint=f"Declare it `{name}: [N, D]`.")


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
    return {d: sizes.get(d, (DEFAULT_SIZE, "default")) for d in program.dims}


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
    """Weights (matrix-product operands) drawn N(0, Var(W)); everything else zero."""
    params, notes = {}, {}
    for name in wrt:
        node = program.variables[name]
        shape = concrete_shape(node.shape, sizes)
        layer = layer_of(program, node, sizes)
        if layer is None:
            params[name], notes[name] = np.zeros(shape), "zeros"
            continue
        var, why = weight_variance(init, layer)
        draw = rng.standard_normal(shape)
        if has_property(node, "symmetric"):   # (A + Aᵀ)/√2: Var off the diagonal, 2 Var on it
            draw, why = (draw + draw.T) / math.sqrt(2), why + ", symmetrised"
        params[name] = draw * math.sqrt(var)
        notes[name] = f"normal, Var = {var:.4g} ({why})"
    return params, notes


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

    def row(self) -> str:
        train = "—" if self.train_loss is None else loss_text(self.train_loss)
        cells = [f"{self.epoch:>5}", f"{train:>11}", f"{loss_text(self.test_loss):>10}"]
        if self.accuracy is not None:
            cells.append(f"{100 * self.accuracy:>9.2f}%")
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

    @property
    def final(self) -> EpochStats:
        return self.epochs[-1]

    def header(self) -> str:
        sizes = ", ".join(f"{d} = {n} ({why})" for d, (n, why) in self.sizes.items())
        inits = [f"  {name}: {note}" for name, note in self.inits.items()]
        classes = "" if self.final.accuracy is None else "   test acc"
        return "\n".join([f"data {self.data}: {self.n_train} training, {self.n_test} test rows",
                          f"sizes {sizes}", "init", *inits,
                          f"epoch  train loss  test loss{classes}"])

    def summary(self) -> str:
        """The final accuracy and loss, the epochs and the time."""
        last = self.final
        accuracy = "" if last.accuracy is None else f"test accuracy {100 * last.accuracy:.2f}%, "
        return (f"{accuracy}test loss {last.test_loss:.4g} after {last.epoch} epochs "
                f"in {self.seconds:.2f} s")


@dataclass
class Model:
    """The generated code and the arrays it runs on."""

    module: ModuleType
    logits: Callable[..., np.ndarray] | None
    params: dict[str, np.ndarray]
    constants: dict[str, Any]
    x: str
    y: str

    def arrays(self, xs: np.ndarray, ys: np.ndarray) -> dict[str, Any]:
        return {**self.constants, **self.params, self.x: xs, self.y: ys}

    def loss(self, xs: np.ndarray, ys: np.ndarray) -> float:
        return float(self.module.value(**self.arrays(xs, ys)))

    def step(self, xs: np.ndarray, ys: np.ndarray, lr: float) -> float:
        loss, grads = self.module.value_and_grad(**self.arrays(xs, ys))
        for name, grad in grads.items():
            self.params[name] -= lr * grad
        return float(loss)

    def accuracy(self, xs: np.ndarray, ys: np.ndarray) -> float | None:
        if self.logits is None:
            return None
        predicted = self.logits(**self.arrays(xs, ys)).argmax(axis=-1)
        classes = ys if ys.dtype.kind in "iu" else ys.argmax(axis=-1)
        return float(np.mean(predicted == classes))


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


def train(source: str | Path | Program, wrt: Sequence[str], data: str | Data = "digits", *,
          x: str = "X", y: str | None = None, epochs: int = 20, lr: float = 0.1, batch: int = 64,
          seed: int = 0, init: str = "derived", hidden: Mapping[str, int] | None = None,
          constants: Mapping[str, float] | None = None, declarations: Sequence[str] = (),
          on_epoch: Callable[[History], None] | None = None) -> History:
    """Train ``wrt`` by minibatch SGD on ``data``; ``on_epoch`` sees the history after each
    epoch (epoch 0 is before training). ``source`` is program text, a ``.mc`` path or a
    Program."""
    start = time.perf_counter()
    program = source if isinstance(source, Program) else parse(read_source(str(source)),
                                                                    declarations)
    y = target_name(program, y)
    data = data if isinstance(data, Data) else load_data(data, x, y)
    given = {**data.constants, **(constants or {})}
    check_constants(program, wrt, x, y, {**dict.fromkeys(data.constants, data.name),
                                         **dict.fromkeys(constants or {}, "--set")})
    check_roles(program, wrt, x, y, given)
    dim = batch_dim(program, x, y)
    rows = shaped_split(program, split(data, seed), x, y)
    sizes = bind_sizes(program, {x: rows.x_train, y: rows.y_train}, (dim, batch), hidden or {})
    largest = max(min(batch, len(rows.x_train)), len(rows.x_test))  # a batch, or the test rows
    check_memory(program, {**{d: n for d, (n, _) in sizes.items()}, dim: largest},
                 hint="Use smaller --hidden sizes (or fewer data columns).")
    rng = np.random.default_rng(seed)
    params, notes = initial_params(program, wrt, {d: n for d, (n, _) in sizes.items()}, init, rng)
    model = Model(lambdify(program, wrt), logits_function(program, y, wrt, rows.y_train), params,
                  {k: np.asarray(v, dtype=float) for k, v in given.items()}, x, y)
    history = History(data.name, sizes, notes, len(rows.x_train), len(rows.x_test),
                      params=params)
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by `record`
        for epoch in range(epochs + 1):
            steps = batches(len(rows.x_train), batch, rng) if epoch else []
            losses = [model.step(rows.x_train[i], rows.y_train[i], lr) for i in steps]
            record(history, model, epoch, losses, (rows.x_test, rows.y_test), on_epoch)
    history.seconds = time.perf_counter() - start
    return history


DIVERGENCE = 1e6
"""A test loss this many times its starting value (or 1) means the training diverged."""


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
    history.epochs.append(EpochStats(epoch, train_loss, test_loss, model.accuracy(*test)))
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
