"""The ``matcalc`` command line: a thin layer over the Python API."""

from matcalc.cli.commands import cli, main

__all__ = ["cli", "main"]
