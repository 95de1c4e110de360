"""Valid random inputs: sizes, domains (positive, well conditioned, one-hot rows), values away
from kinks."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from matcalc.core.ir import OPERATIONS, Node, class_counts, has_property, is_labels, postorder
from matcalc.errors import MatcalcError
from matcalc.language.lowering import Program
from matcalc.language.sizes import concrete_shape
from matcalc.proofs.evaluation import evaluator, function_value


def domains(program: Program) -> dict[str, str]:
    """What each variable must be for the function to be defined and smooth there.

    ``positive`` under log/sqrt/pow with a fractional exponent, ``small`` under tan,
    ``well_conditioned`` under
    inv/det/logdet/matrix_power; declared targets are ``onehot`` or ``probabilities`` rows.
    """
    needs: dict[str, str] = {name: kind for name, node in program.variables.items()
                             for kind in ("onehot", "probabilities")
                             if has_property(node, kind)}
    for node in postorder([program.function]):
        kind = OPERATIONS[node.op].domain
        if node.op == "pow" and node.args[1].op == "const":
            k = node.args[1].attrs.value
            if not k.is_integer or k.is_negative:
                kind = "positive"
        targets = node.args[:1]
        if kind:
            for target in targets:
                for leaf in postorder([target]):
                    if leaf.op == "var":
                        needs.setdefault(leaf.attrs.name, kind)
    return needs


def sample(shape: tuple[int, ...], kind: str | None, rng: np.random.Generator) -> np.ndarray:
    """A float64 array valid for ``kind``."""
    if kind == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "small":                               # tan: far from its poles at ±π/2
        return rng.uniform(-0.5, 0.5, shape)
    if kind == "well_conditioned" and len(shape) == 2 and shape[0] == shape[1]:
        return np.eye(shape[0]) * 2.0 + rng.normal(0, 0.3, shape)
    if kind == "probabilities":
        p = rng.uniform(0.1, 1.0, shape)
        return p / p.sum(axis=-1, keepdims=True)
    if kind == "onehot":
        return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]
    return rng.normal(size=shape)



def random_inputs(program: Program, sizes: Mapping[str, int], rng: np.random.Generator,
                  ) -> dict[str, np.ndarray]:
    """Random float64 arrays for every variable, drawn where the function is defined."""
    kinds = domains(program)
    arrays = {name: sample(concrete_shape(node.shape, sizes), kinds.get(name), rng)
              for name, node in program.variables.items()}
    counts = class_counts(program.function)
    for name, node in program.variables.items():
        if is_labels(node):
            (count,) = concrete_shape((counts.get(name, 1),), sizes)
            arrays[name] = rng.integers(0, count, np.shape(arrays[name]))
    for name, node in program.variables.items():
        if has_property(node, "symmetric"):
            arrays[name] = symmetric_part(arrays[name])
    return arrays


def symmetric_part(a: np.ndarray) -> np.ndarray:
    """(A + Aᵀ) / 2."""
    return (a + a.T) / 2


LARGEST_RANDOM_SIZE = 5
"""The largest size drawn for a symbolic dimension where none is given."""


def sizes_for(program: Program, rng: np.random.Generator, low: int = 2,
              high: int = LARGEST_RANDOM_SIZE) -> dict[str, int]:
    """Small random sizes for every symbolic dimension."""
    return {name: int(rng.integers(low, high + 1)) for name in program.dims}


def kink_distance(program: Program) -> Callable[..., float]:
    """``(**arrays) -> d``: how close the program comes to a point where a derivative jumps:
    a relu/abs argument to 0, the arguments of maximum to each other, the largest entry of a
    max to the runner-up, a spectral gap."""
    kinks = [n for n in postorder([program.function]) if kink_kind(n)
             and any(leaf.op == "var" for leaf in postorder(n.args))]  # not abs(x - x)
    if not kinks:
        return lambda **arrays: np.inf
    measured = [(n, m) for n in kinks for m in kink_arguments(n)]
    run = evaluator(program, [(f"kink{i}", m) for i, (_, m) in enumerate(measured)])

    def distance(**arrays: np.ndarray) -> float:
        values = (np.asarray(v, dtype=float) for v in run(**arrays))
        return min(gap(v, n) for (n, _), v in zip(measured, values, strict=True))

    return distance


def kink_kind(node: Node) -> str | None:
    """Where ``node``'s derivative does not exist: its operation's kink, or "invertible" for an
    inverse, a determinant, a solve or a negative matrix power, whose derivatives need a
    nonsingular matrix."""
    definition = OPERATIONS[node.op]
    if definition.kink:
        return definition.kink
    if node.op == "matrix_power" and node.attrs.k >= 0:
        return None
    return "invertible" if definition.domain == "well_conditioned" else None


def kink_arguments(node: Node) -> list[Node]:
    """What is 0 where ``node``'s derivative jumps (for a max: its argument, whose ties)."""
    kind, args = kink_kind(node), node.args
    if kind == "equal":
        return [args[0] - args[1]]
    if kind == "bounds":
        return [args[0] - args[1], args[0] - args[2], args[1] - args[2]]
    return [args[0]]


def singular_values(x: np.ndarray) -> np.ndarray:
    return np.linalg.svd(x, compute_uv=False)


SPECTRAL_GAPS: dict[str, Callable[[np.ndarray], float]] = {
    "full_rank": lambda x: singular_values(x)[-1],
    "invertible": lambda x: np.divide(*singular_values(x)[[-1, 0]]),
    "simple_top": lambda x: np.subtract(*singular_values(x)[:2]) if min(x.shape) > 1 else np.inf,
    "distinct": lambda s: np.min(np.diff(np.linalg.eigvalsh((s + s.T) / 2)), initial=np.inf),
}
"""How far a spectral function's argument is from where its derivative does not exist: the
smallest singular value (nuclear norm), the gap below the largest (spectral norm), the
smallest gap between eigenvalues (eigvalsh), the reciprocal of the condition number (inv,
det, logdet, solve: 1e-3 at the default margin, a condition number of 1000)."""


def gap(value: np.ndarray, kink: Node) -> float:
    """How far ``value`` is from ``kink``'s jump: |value| for a kink at 0 (or at equal
    arguments), the distance between the two largest (smallest) entries for a max (min), a
    spectral gap."""
    kind = kink_kind(kink)
    if kind in SPECTRAL_GAPS:
        return float(SPECTRAL_GAPS[kind](value))
    if kind != "tie":
        return float(np.min(np.abs(value), initial=np.inf))
    axis = kink.attrs.axis
    flat = value.reshape(-1) if axis is None else np.moveaxis(value, axis, -1)
    if flat.shape[-1] < 2:
        return np.inf
    top = np.sort(-flat if kink.op == "max" else flat, axis=-1)
    return float(np.min(top[..., 1] - top[..., 0]))


def smooth_inputs(program: Program, sizes: Mapping[str, int], rng: np.random.Generator,
                  margin: float = 1e-3, tries: int = 50) -> dict[str, np.ndarray]:
    """Random inputs with every kink argument at least ``margin`` from 0 and a finite value."""
    distance, value = kink_distance(program), function_value(program)
    for _ in range(tries):
        arrays = random_inputs(program, sizes, rng)
        with np.errstate(all="ignore"):
            if distance(**arrays) > margin and np.all(np.isfinite(value(**arrays))):
                return arrays
    raise MatcalcError(
        "could not draw random inputs where the function is finite and away from its kinks and "
        "ties (relu, abs, clip, max, comparisons …) and with every matrix under inv, det, "
        "logdet and solve well conditioned (tried 50 draws); matcalc makes variables positive "
        "under log and sqrt and well conditioned under inv/det, but not for shifted arguments "
        "such as log(x - 3), a clip that saturates, or sizes that make a product singular "
        "(Xᵀ X with fewer rows than columns: fix the sizes with --dims)")
