"""The ``codegen`` and ``check`` commands, registered on the main group by :mod:`matcalc.cli`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from matcalc.cli_util import declarations_option, read_source, reports_user_errors
from matcalc.errors import MatcalcError
from matcalc.module import TARGETS, generate
from matcalc.testing import check_gradient

WRT = click.option("--wrt", "wrt", multiple=True, required=True, metavar="NAME",
                   help="Variable to differentiate with respect to (repeatable).")


def parse_dims(text: str | None) -> dict[str, int]:
    """``n=3,m=4`` as ``{"n": 3, "m": 4}``."""
    dims: dict[str, int] = {}
    for item in filter(None, (text or "").split(",")):
        name, _, value = item.partition("=")
        if not value.strip().isdigit() or int(value) < 1:
            raise MatcalcError(f"--dims expects NAME=SIZE pairs such as n=3,m=4, got {item!r}")
        dims[name.strip()] = int(value)
    return dims


@click.command("codegen")
@click.argument("source")
@WRT
@declarations_option
@click.option("--target", type=click.Choice(TARGETS), default="numpy", show_default=True,
              help="numpy: value and value_and_grad; torch: a torch.autograd.Function.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the module to this file instead of printing it.")
@reports_user_errors
def codegen(source: str, wrt: tuple[str, ...], declarations: tuple[str, ...], target: str,
            output: Path | None) -> None:
    """A standalone Python module computing the function and its derived gradients."""
    text = generate(read_source(source), wrt, target, declarations)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@click.command("check")
@click.argument("source")
@WRT
@declarations_option
@click.option("--dims", metavar="n=3,m=4", help="Sizes to check at (small random sizes if not).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed.")
@click.option("--rtol", type=float, default=1e-5, show_default=True,
              help="Largest error allowed, relative to the larger of 1 and the gradient.")
@reports_user_errors
def check(source: str, wrt: tuple[str, ...], declarations: tuple[str, ...], dims: str | None,
          seed: int, rtol: float) -> None:
    """Prove the derived gradients against central finite differences; exit 1 on a FAIL."""
    report = check_gradient(read_source(source), wrt, parse_dims(dims), seed, rtol,
                            declarations=declarations)
    click.echo(report.text())
    sys.exit(0 if report.passed else 1)
