"""Plots are an optional extra: load matplotlib off-screen, save a figure, explain failures."""

from __future__ import annotations

from typing import Any

from matcalc.errors import MatcalcError


def pyplot() -> Any:
    """``matplotlib.pyplot`` with the off-screen Agg backend, or a MatcalcError saying how to
    install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MatcalcError("--plot needs matplotlib, an optional extra",
                           hint="Install it with `pip install 'matcalc[plot]'`.") from None
    return plt


def save(figure: Any, path: str, dpi: int = 110) -> None:
    """Write ``figure`` to ``path``; an unwritable path is a MatcalcError."""
    try:
        figure.savefig(path, dpi=dpi)
    except OSError as err:
        raise MatcalcError(f"cannot write the plot to {path}: {err.strerror}") from None
