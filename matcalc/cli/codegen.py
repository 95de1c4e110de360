"""The ``codegen`` and ``check`` commands (added to the group in :mod:`matcalc.cli.commands`)."""

from __future__ import annotations

import sys

import click

from matcalc.applications.files import write_text
from matcalc.cli.common import (
    PositiveNumber,
    Progress,
    declarations_option,
    pairs,
    reports_user_errors,
    size,
    wrt_option,
)
from matcalc.forms.derivation import LAYOUTS
from matcalc.forms.generated import TARGETS, generate
from matcalc.language.source import read_source
from matcalc.proofs.testing import check_gradient

WRT = wrt_option("Variable to differentiate with respect to (repeatable).")


def parse_dims(texts: tuple[str, ...]) -> dict[str, int]:
    """``n=3,m=4`` (the option given once or more) as ``{"n": 3, "m": 4}``: names, and sizes
    that are positive integers."""
    items = [item for text in texts for item in text.split(",") if item.strip()]
    return pairs("--dims", items, size, "NAME=SIZE",
                 "SIZE must be a positive integer, e.g. n=3,m=4")


@click.command("codegen")
@click.argument("source")
@WRT
@declarations_option
@click.option("--target", type=click.Choice(TARGETS), default="numpy", show_default=True,
              help="numpy: value and value_and_grad; torch: a torch.autograd.Function; jax: a "
              "jax.numpy function with the gradient attached by jax.custom_vjp.")
@click.option("--dims", metavar="h=4", multiple=True, help="Sizes the code cannot read off its "
              "inputs' shapes (h in [B, T, h * k]), fixed in the code (repeatable).")
@click.option("--emit", metavar="grad,hessian,…", default="grad", show_default=True,
              help="The functions to generate, comma-separated: grad (value_and_grad), jacobian "
              "(value_and_jacobian), hessian, hvp (Hessian-vector products), jvp (forward "
              "mode).")
@click.option("--layout", type=click.Choice(LAYOUTS), default=None,
              help="Layout of value_and_jacobian [default: as derive's].")
@click.option("-o", "--output", metavar="FILE",
              help="Write the module to this file instead of printing it.")
@click.option("--force", is_flag=True, help="Overwrite the -o file if it exists.")
@reports_user_errors
def codegen(source: str, wrt: tuple[str, ...], declarations: tuple[str, ...], target: str,
            dims: tuple[str, ...], emit: str, layout: str | None, output: str | None, force: bool
            ) -> None:
    """A standalone Python module computing the function and its derived gradients."""
    wanted = [part.strip() for part in emit.split(",") if part.strip()]
    text = generate(read_source(source), wrt, target, declarations, parse_dims(dims), wanted,
                    layout)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_text(text, output, "-o", force)
        click.echo(f"wrote {output}", err=True)


@click.command("check")
@click.argument("source")
@WRT
@declarations_option
@click.option("--dims", metavar="n=3,m=4", multiple=True,
              help="Sizes to check at (small random sizes if not; repeatable).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed.")
@click.option("--rtol", type=PositiveNumber(), default=1e-5, show_default=True,
              help="Largest error allowed, relative to the gradient's largest entry (plus "
                   "the differences' own rounding).")
@reports_user_errors
def check(source: str, wrt: tuple[str, ...], declarations: tuple[str, ...],
          dims: tuple[str, ...], seed: int, rtol: float) -> None:
    """Prove the derived gradients against central finite differences; exit 1 on a FAIL."""
    text, sizes = read_source(source), parse_dims(dims)
    bar = Progress("checking")
    try:
        report = check_gradient(text, wrt, sizes, seed, rtol, declarations=declarations,
                                progress=lambda done, total, name: bar.update(done, total, name))
    finally:
        bar.close()
    click.echo(report.text())
    sys.exit(0 if report.passed else 1)
