"""The ``matcalc`` group, its ``derive`` and ``hessian`` commands, and the entry point."""

from __future__ import annotations

import json
import sys

import click

from matcalc.cli.common import declarations_option, reports_user_errors, wrt_option
from matcalc.errors import MatcalcError
from matcalc.forms.derivation import LAYOUTS, Derivation, derivative, hessian
from matcalc.language.lowering import parse
from matcalc.language.source import read_source

ELSEWHERE = ("check", "codegen", "init", "serve", "train", "verify")
"""The commands defined in other modules of this package, imported when one is run (or help
lists them), so that ``derive`` does not wait for the code generators and trainers to load."""


def command_elsewhere(name: str) -> click.Command:
    """The command ``name`` of :data:`ELSEWHERE`, its module imported now."""
    if name in ("check", "codegen"):
        from matcalc.cli import codegen as module
    elif name == "init":
        from matcalc.cli import init as module
    elif name == "serve":
        from matcalc.cli import serve as module
    elif name == "train":
        from matcalc.cli import train as module
    else:
        from matcalc.cli import verify as module
    return getattr(module, {"verify": "verify_command"}.get(name, name))


class Commands(click.Group):
    """The group, with the commands of :data:`ELSEWHERE` loaded on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *ELSEWHERE})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in ELSEWHERE and name not in self.commands:
            self.add_command(command_elsewhere(name))
        return super().get_command(ctx, name)


@click.group(cls=Commands)
@click.version_option(package_name="matcalc")
def cli() -> None:
    """Matrix calculus the way people do it on paper, only right every time."""


@cli.command("derive")
@click.argument("source")
@wrt_option("Variable (or named intermediate) to differentiate with respect to (repeatable).")
@declarations_option
@click.option("--format", "fmt", type=click.Choice(["text", "latex", "numpy", "json"]),
              default="text", show_default=True)
@click.option("--steps", is_flag=True, help="Show the chain-rule derivation with error signals δ.")
@click.option("--differential", is_flag=True,
              help="Show forward mode as the textbooks write it: the differential of every "
                   "intermediate (dZ1 = dX W1 + X dW1), then the gradients read off df.")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None,
              help="Jacobian layout [default: denominator (gradient) for a scalar function, "
                   "numerator for a vector function].")
@reports_user_errors
def derive_command(source: str, wrt: tuple[str, ...], declarations: tuple[str, ...], fmt: str,
                   steps: bool, differential: bool, layout: str | None) -> None:
    """Gradients (or Jacobians) in matrix form.

    SOURCE is a .mc file, - (standard input) or the program text, e.g.
    'x: [n]; A: [n, n]; x @ A @ x'.
    """
    program = parse(read_source(source), declarations)
    result = derivative(program, wrt, steps, differential, layout)
    show(result, fmt)


@cli.command("hessian")
@click.argument("source")
@wrt_option("Variable of the Hessian (one).")
@declarations_option
@click.option("--hvp", "direction", default=None, metavar="V",
              help="Give the Hessian-vector product H V instead, V a new variable shaped like "
                   "NAME (e.g. --hvp v).")
@click.option("--format", "fmt", type=click.Choice(["text", "latex", "numpy", "json"]),
              default="text", show_default=True)
@reports_user_errors
def hessian_command(source: str, wrt: tuple[str, ...], declarations: tuple[str, ...],
                    direction: str | None, fmt: str) -> None:
    """Second derivatives in matrix form: ∂²f/∂x², or H v without forming H."""
    if len(wrt) != 1:
        raise MatcalcError(f"a Hessian is with respect to one variable; got --wrt {', '.join(wrt)}"
                           " (run hessian once per variable)")
    show(hessian(read_source(source), wrt[0], declarations, direction=direction), fmt)


def show(result: Derivation, fmt: str) -> None:
    """Print a derivation in one of the output formats; notes go to stderr except in text."""
    if fmt == "text":
        click.echo(result.text())
    elif fmt == "latex":
        click.echo(result.latex_block())
    elif fmt == "numpy":
        click.echo(result.numpy(), nl=False)
    else:
        click.echo(json.dumps(result.json(), indent=2, ensure_ascii=False))
    for note in result.notes if fmt != "text" else ():
        click.echo(f"note: {note}", err=True)


def main() -> None:
    """Console-script entry point."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    cli()
