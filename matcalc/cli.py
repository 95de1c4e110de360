"""The ``matcalc`` command line: a thin layer over the Python API."""

from __future__ import annotations

import json
import sys

import click

from matcalc.cli_codegen import check, codegen
from matcalc.cli_init import init
from matcalc.cli_util import read_source, reports_user_errors
from matcalc.derivation import derive


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


for command in (codegen, check, init):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    cli()
