"""The fuzz gate's CI slice: random programs through every output path, against torch.autograd.

The full gate is ``python benchmarks/fuzz.py --n 20000``; this runs a fixed few hundred programs
and fails with the shrunk failures. Skipped when PyTorch is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from matcalc.errors import MatcalcError  # noqa: E402
from matcalc.proofs import fuzz, programs  # noqa: E402
from matcalc.proofs.reference import reference_function  # noqa: E402

SEED = 2024
PROGRAMS = 200


def test_random_programs_agree_with_torch_autograd() -> None:
    settings = fuzz.Settings(seed=SEED, shrink_seconds=4.0)
    report = fuzz.fuzz(PROGRAMS, settings, count=2, per_signature=1)
    counts = report.counts()
    bad = {category: counts[category] for category in ("wrong", "shape-wrong", "internal")}
    assert not any(bad.values()), f"{bad}\n\n{report.text(show=30)}"


def test_torch_reference_agrees_with_numpy_reference() -> None:
    compared = 0
    for index in range(40):
        program = programs.generate(f"reference/{index}")
        try:
            context = fuzz.make_context(fuzz.make_case(program, f"reference/{index}"))
            with np.errstate(all="ignore"):
                expected = reference_function(context.program)(**context.arrays)
        except (MatcalcError, fuzz.Failure, TypeError):  # refused, no valid input, or keyword
            continue                                      # arguments the NumPy reference lacks
        fuzz.compare("value", context.value(), np.asarray(expected, dtype=float))
        compared += 1
    assert compared >= 20
