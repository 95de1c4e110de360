"""The ``matcalc`` command line: a thin layer over the Python API."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from matcalc.cli_init import init
from matcalc.derivation import derive
from matcalc.errors import MatcalcError

USER_ERROR = 2


def reports_user_errors(command: Callable) -> Callable:
    """Print a MatcalcError as one paragraph on stderr and exit 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MatcalcError as err:
            click.echo(str(err), err=True)
            sys.exit(USER_ERROR)
        except RecursionError:
            click.echo("error: the program is nested too deeply to differentiate", err=True)
            sys.exit(USER_ERROR)

    return wrapper


def read_source(source: str) -> str:
    """SOURCE is a file path or the program text itself."""
    path = Path(source)
    if "\n" not in source and len(source) < 4096 and path.suffix == ".mc":
        if not path.is_file():
            raise MatcalcError(f"no such file: {source}")
        return path.read_text(encoding="utf-8")
    try:
        if path.is_file():
            return path.read_text(encoding="utf-8")
    except OSError:
        pass
    return source


@click.group()
@click.version_option(package_name="matcalc")
def cli() -> None:
    """Matrix calculus the way people do it on paper, only right every time."""


@cli.command("derive")
@click.argument("source")
@click.option("--wrt", "wrt", multiple=True, required=True, metavar="NAME",
              help="Variable (or named intermediate) to differentiate with respect to.")
@click.option("--var", "declarations", multiple=True, metavar="'NAME: [dims]'",
              help="Extra declaration, e.g. --var 'x: [n]'.")
@click.option("--format", "fmt", type=click.Choice(["text", "latex", "numpy", "json"]),
              default="text", show_default=True)
@click.option("--steps", is_flag=True, help="Show the chain-rule derivation with error signals δ.")
@reports_user_errors
def derive_command(source: str, wrt: tuple[str, ...], declarations: tuple[str, ...], fmt: str,
                   steps: bool) -> None:
    """Gradients of a scalar function in matrix form.

    SOURCE is a .mc file or the program text, e.g. 'x: [n]; A: [n, n]; x @ A @ x'.
    """
    result = derive(read_source(source), wrt, declarations, steps=steps)
    if fmt == "text":
        click.echo(result.text())
    elif fmt == "latex":
        click.echo(result.latex())
    elif fmt == "numpy":
        click.echo(result.numpy(), nl=False)
    else:
        click.echo(json.dumps(result.json(), indent=2, ensure_ascii=False))
    for note in result.notes if fmt != "text" else ():
        click.echo(f"note: {note}", err=True)


cli.add_command(init)


def main() -> None:
    """Console-script entry point."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    cli()
