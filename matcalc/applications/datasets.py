"""The data ``matcalc train`` learns from: scikit-learn's digits, the seeds' line-fit points, the
sorting task of minGPT's demo (generated), or a user's ``.npz`` file; and the train/test split."""

from __future__ import annotations

import itertools
import zipfile
import zlib
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

from matcalc.errors import MatcalcError, did_you_mean

DATASETS = ("digits", "blobs", "sort")
TEST_FRACTION = 0.2
BLOBS_TRANSFORM = np.array([[0.60834549, -0.63667341], [-0.40887718, 0.85253229]])
"""The seed's anisotropic stretch of ``make_blobs(n_samples=1000, random_state=170)``."""
SORT_LENGTH, SORT_VALUES = 6, 3
"""The sorting task: sequences of 6 digits from {0, 1, 2}, as minGPT's demo (3⁶ = 729 of them)."""


@dataclass(frozen=True)
class Data:
    """Inputs and targets, one row per example, and constants for other data variables."""

    name: str
    inputs: np.ndarray
    targets: np.ndarray
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    standardise: bool = False
    scored: np.ndarray | None = None
    """For sequences: the target positions accuracy counts (those a model can predict)."""
    note: str = ""
    """What a learner should know reading the losses."""


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
    if spec == "sort":
        return sort_task()
    if spec.endswith(".npz"):
        return _npz(spec, x, y)
    raise MatcalcError(f"unknown data `{spec}`." + did_you_mean(spec, DATASETS),
                       hint="--data is digits, blobs, sort or a FILE.npz.")


def sort_task(length: int = SORT_LENGTH, values: int = SORT_VALUES) -> Data:
    """Every sequence of ``length`` digits below ``values`` followed by its sorted copy, read as
    next-token prediction: the tokens are the first 2·length − 1 of the pair, the labels the
    token after each. A causal model cannot know the next unsorted digit, so only the
    ``length`` positions from the last unsorted digit on (each predicting a sorted one) count
    for accuracy."""
    digits = np.array(list(itertools.product(range(values), repeat=length)), dtype=np.int64)
    pairs = np.concatenate([digits, np.sort(digits, axis=1)], axis=1)
    scored = np.arange(2 * length - 1) >= length - 1
    floor = (length - 1) / (2 * length - 1) * np.log(values)
    note = (f"the first {length - 1} labels are the next unsorted digits, which no causal model "
            f"can know: the loss cannot go below {length - 1}/{2 * length - 1}·ln {values} = "
            f"{floor:.4f}; accuracy counts the {length} positions that predict sorted digits")
    return Data("sort", pairs[:, :-1], pairs[:, 1:], scored=scored, note=note)


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
