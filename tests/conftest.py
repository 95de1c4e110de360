"""Shared helpers for the numeric gradient tests: derive, run the generated code, compare to FD."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import numpy as np
from hypothesis import settings

from matcalc.core.ir import params
from matcalc.forms.derivation import derive
from matcalc.proofs.evaluation import evaluator, function_value
from matcalc.proofs.finite_differences import numeric_jacobian, relative_error
from matcalc.proofs.inputs import smooth_inputs

settings.register_profile("deterministic", max_examples=60, derandomize=True, database=None)
settings.register_profile("random", max_examples=2000, derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
"""Property tests draw the same examples on every run (a flaky test is a failing test);
``HYPOTHESIS_PROFILE=random python -m pytest tests/test_property.py`` explores afresh."""

TOLERANCE = 1e-6
"""Relative error allowed between a derived gradient and the finite-difference estimate."""


def richardson_difference(f, arrays, name: str, h: float = 1e-4) -> np.ndarray:
    """The 5-point stencil as a Richardson extrapolation of two central differences: O(h⁴)."""
    return (4 * numeric_jacobian(f, arrays, name, h) - numeric_jacobian(f, arrays, name, 2 * h)
            ) / 3


def differences_agree(f, arrays: Mapping[str, np.ndarray], name: str) -> bool:
    """Whether finite differences can judge ∂f/∂name here: the plain central difference and
    the Richardson-extrapolated ones agree within :data:`TOLERANCE` (they do not where rounding
    dominates, e.g. sin(det(u³)) with det(u³) in the thousands)."""
    with np.errstate(all="ignore"):
        plain = numeric_jacobian(f, arrays, name)
        return all(relative_error(plain, richardson_difference(f, arrays, name, h)) <= TOLERANCE
                   for h in (1e-4, 1e-3))


def gradient_errors(f, arrays: Mapping[str, np.ndarray], name: str, got: np.ndarray,
                    eps: float = 1e-6) -> tuple[float, np.ndarray]:
    """The smallest relative error of ``got`` against the FD estimates, and the best estimate.

    The plain central difference at ``eps`` is tried first; when it disagrees, a
    Richardson-extrapolated difference (much smaller truncation and rounding error) decides.
    A wrong gradient disagrees with both, so this never hides a real mismatch.
    """
    with np.errstate(all="ignore"):
        expected = numeric_jacobian(f, arrays, name, eps)
    error = relative_error(got, expected)
    if error <= TOLERANCE:
        return error, expected
    for h in (1e-4, 1e-3):
        with np.errstate(all="ignore"):
            better = richardson_difference(f, arrays, name, h)
        better_error = relative_error(got, better)
        if better_error < error:
            error, expected = better_error, better
        if error <= TOLERANCE:
            break
    return error, expected


def generated_gradients(derivation, arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The gradients as the generated NumPy code computes them.

    Without error signals they are evaluated with ``evaluation.evaluator``, and the
    user-facing ``derivation.numpy()`` text must agree; a derivation long enough to be given
    with steps refers to ``delta1 …``, so then ``derivation.numpy()`` (which defines them) runs.
    """
    namespace = {name: np.array(value) for name, value in arrays.items()}
    with np.errstate(all="ignore"):
        exec(derivation.numpy(), namespace)  # matcalc's generated code, under test
    printed = [np.asarray(namespace[f"grad_{g.wrt}"], dtype=float) for g in derivation.gradients]
    if derivation.steps:
        return printed
    outputs = [(g.wrt, g.expr) for g in derivation.gradients]
    with np.errstate(all="ignore"):
        results = [np.asarray(r, dtype=float)
                   for r in evaluator(derivation.program, outputs)(**arrays)]
    for g, mine, theirs in zip(derivation.gradients, results, printed, strict=True):
        assert np.array_equal(mine, theirs, equal_nan=True), (
            f"derivation.numpy() disagrees with the evaluator on grad_{g.wrt}:\n"
            f"{derivation.numpy()}")
    return results


def check_gradients(source: str, wrt: Sequence[str], sizes: Mapping[str, int], seed: int = 0,
                    eps: float = 1e-6, arrays: Mapping[str, np.ndarray] | None = None,
                    margin: float = 1e-2) -> dict[str, float]:
    """Derive ∂f/∂(each of ``wrt``), run the generated NumPy code, compare with FD in float64.

    Returns the relative error per variable; asserts each is at most :data:`TOLERANCE` and that
    every gradient has its variable's shape.
    """
    derivation = derive(source, wrt)
    program = derivation.program
    f = function_value(program)
    if arrays is None:
        arrays = smooth_inputs(program, sizes, np.random.default_rng(seed), margin=margin)
    value = f(**arrays)
    assert np.ndim(value) == 0 and np.isfinite(value), f"f = {value!r} for\n{source}"
    results = generated_gradients(derivation, arrays)
    errors = {}
    for gradient, got in zip(derivation.gradients, results, strict=True):
        got = np.asarray(got, dtype=float)
        shape = np.shape(arrays[gradient.wrt])
        assert got.shape == shape, (
            f"∂f/∂{gradient.wrt} has shape {got.shape}, expected {shape}\n{source}\n"
            f"{derivation.numpy()}")
        error, expected = gradient_errors(f, arrays, gradient.wrt, got, eps)
        assert error <= TOLERANCE, (
            f"∂f/∂{gradient.wrt}: relative error {error:.3g} at sizes {dict(sizes)}\n"
            f"program:\n{source}\nderived: {derivation.text()}\n"
            f"generated:\n{derivation.numpy()}\nanalytic:\n{got}\nfinite differences:\n{expected}")
        errors[gradient.wrt] = error
    return errors


DECLARATION = re.compile(r"^\s*\w+(\s*,\s*\w+)*\s*:\s*\[")


def annotated(source: str) -> str:
    """The program with one declaration a line, each saying how the fuzz harness draws it
    (``# draw: positive`` under log and sqrt, ``wc`` under inv and det), as the NumPy checks
    draw it."""
    from matcalc.core.ir import class_counts
    from matcalc.language.lowering import parse
    from matcalc.proofs.inputs import domains

    program = parse(source)
    kinds = domains(program)
    kinds |= {name: f"labels:{classes}" for name, classes in class_counts(program.function).items()}
    draw = {"well_conditioned": "wc"}
    lines = []
    for name, node in program.variables.items():
        properties = " ".join(params(node)["properties"])
        kind = kinds.get(name)
        note = f"  # draw: {draw.get(kind, kind)}" if kind else ""
        dims = "[" + ", ".join(str(d) for d in node.shape) + "]"   # as source: h*k
        lines.append(f"{name}: {dims} {properties}".rstrip() + note)
    body = [part for line in source.splitlines() for part in line.split(";")
            if part.strip() and not DECLARATION.match(part)]
    return "\n".join(lines + body)


SCALAR_PATHS = ("derive", "steps", "numpy", "torch", "torch.func", "hessian", "hvp")


def torch_outcomes(source: str, wrt: Sequence[str], sizes: Mapping[str, int]) -> list:
    """The program through every output path (derive and --steps code, the NumPy module, the
    torch target, Hessians, HVPs) against torch.autograd on the program rebuilt from its source
    with torch operations (the fuzz gate's harness), independently of the code generator.
    Asserts that none is wrong or an internal error; none without torch."""
    try:
        from matcalc.proofs import fuzz  # imports torch
    except ImportError:
        return []

    used = tuple((d, k) for d, k in sorted(sizes.items()) if re.search(rf"\b{d}\b", source))
    case = fuzz.Case(annotated(source), used, draw=7, wrt=tuple(wrt), x=wrt[0],
                     layout="denominator", paths=SCALAR_PATHS)
    outcomes = fuzz.run_case(case, limit=60.0)
    bad = [o for o in outcomes if o.category not in ("ok", "skipped")]
    assert not bad, "\n".join(f"{o.path}: {o.category} {o.message}\n{o.detail}" for o in bad)
    return outcomes
