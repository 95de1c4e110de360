"""Plots are an optional extra: load matplotlib off-screen, save a figure, explain failures."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from matcalc.applications.files import target_path, write_atomically
from matcalc.errors import MatcalcError, reason

DEFAULT_FORMAT = "png"
"""The format of a plot file named without an extension."""


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


def plot_target(path: str) -> tuple[Path, str]:
    """Where a plot goes and in which format, checked before any computation: matplotlib is
    installed, it writes the extension's format (PNG without one), and the file can be created
    (an existing plot is replaced)."""
    pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = Path(path).suffix.lower().removeprefix(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise MatcalcError(f"--plot {path}: matplotlib cannot write `.{suffix}` files",
                           hint=f"Use one of .{', .'.join(sorted(formats))} (e.g. plot.png).")
    target = target_path(path, "--plot", force=True)
    try:
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as err:
        raise MatcalcError(f"cannot write the plot to {path}: cannot create a file in "
                           f"{target.parent} ({reason(err)})") from None
    return target, suffix or DEFAULT_FORMAT


def save(figure: Any, path: str, dpi: int = 110) -> None:
    """Write ``figure`` to ``path`` (replaced whole or not at all); a failure is a
    MatcalcError."""
    target, fmt = plot_target(path)

    def write(handle: Any) -> None:
        try:
            figure.savefig(handle, format=fmt, dpi=dpi)
        except (ValueError, RuntimeError) as err:
            raise MatcalcError(f"cannot write the plot to {path}: {err}") from None

    write_atomically(target, write, f"the plot to {path}")
