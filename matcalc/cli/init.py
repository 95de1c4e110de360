"""`matcalc init ACTIVATION`: Gaussian moments, the init they imply, fixed points, simulations."""

from __future__ import annotations

from typing import Any

import click

from matcalc.applications import figures
from matcalc.applications import variance as v
from matcalc.applications.variance_report import RENDERERS, build_report, check_simulation_size
from matcalc.cli.common import (
    PositiveNumber,
    Progress,
    finite_number,
    pairs,
    reports_user_errors,
)
from matcalc.language.source import BOM

# ----------------------------------------------------------------------------------------------
# The command


SIGMA_RANGE = (1e-6, 1e6)
"""Allowed --sigma: beyond it the exact formulas hold numbers too large (or small) to evaluate
reliably (selu's gain comes out 0 at σ = 1e100)."""


@click.command("init")
@click.argument("activation")
@click.option("--sigma", type=PositiveNumber(SIGMA_RANGE[1], minimum=SIGMA_RANGE[0]), default=1.0,
              show_default=True, help="Std of the pre-activation z ~ N(0, σ²).")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Value of a free parameter of f (repeatable), e.g. --param a=0.1.")
@click.option("--fixed-point", is_flag=True,
              help="Solve f's free parameters for mean 0 (and variance σ² with two).")
@click.option("--simulate", is_flag=True, help="Push N(0, 1) inputs through a deep stack.")
@click.option("--layers", type=click.IntRange(min=1), default=21, show_default=True)
@click.option("--width", type=click.IntRange(min=1), default=50, show_default=True,
              help="Units per layer (n_out of the init values).")
@click.option("--fan-in", type=click.IntRange(min=1), default=784, show_default=True,
              help="Inputs to the first layer (n_in of the init values).")
@click.option("--init", type=click.Choice(v.INITS), default="derived", show_default=True,
              help="Init whose per-layer table is printed (all are compared).")
@click.option("--batch", type=click.IntRange(min=2), default=1000, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--plot", metavar="FILE.png", default=None,
              help="Save std per layer for every init to this PNG (needs matplotlib).")
@click.option("--format", "fmt", type=click.Choice(sorted(RENDERERS)), default="text",
              show_default=True)
@reports_user_errors
def init(activation: str, fmt: str, **options: Any) -> None:
    """Derive the initialisation for ACTIVATION from its Gaussian moments.

    ACTIVATION is relu, leaky_relu, tanh, sigmoid, gelu, silu, selu, softplus, linear, or a
    scalar expression in z such as 'relu(z) - 1/sqrt(2*pi)'; other names are parameters.
    """
    if options["simulate"] or options["plot"] is not None:  # bad options fail before the work
        check_simulation_size(options)
    if options["plot"] is not None:
        figures.plot_target(options["plot"])
    params = pairs("--param", options["params"], finite_number)
    bar = Progress("simulating")
    options["progress"] = lambda done, total, init: bar.update(done, total, init)
    try:
        report = build_report(activation.removeprefix(BOM), params, options)
    finally:
        bar.close()
    click.echo(RENDERERS[fmt](report), nl=False)
    if options["plot"] is not None:
        click.echo(f"wrote {options['plot']}", err=True)
