"""``matcalc verify``: check claimed derivatives, or the built-in catalog of identities."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence

import click

from matcalc.cli.common import (
    PositiveNumber,
    Progress,
    declarations_option,
    reports_user_errors,
)
from matcalc.errors import MatcalcError
from matcalc.language.sizes import check_memory
from matcalc.language.source import read_source
from matcalc.proofs.catalog import CATALOG
from matcalc.proofs.inputs import LARGEST_RANDOM_SIZE
from matcalc.proofs.verify import (
    EXACT_TIMEOUT,
    FAIL,
    Verdict,
    parse_claims,
    verify,
    verify_all,
)

FAILED = 1
UNDECIDED = 4
"""Exit code when no claim fails but one could not be proved: neither PASS nor FAIL."""
MAX_TIMEOUT = 3600.0
"""Longest --timeout in seconds: an hour per claim is already more than SymPy ever needs."""


@click.command("verify")
@click.argument("source", required=False)
@click.option("--catalog", is_flag=True, help="Verify every built-in identity.")
@click.option("--list", "list_only", is_flag=True, help="List the built-in identities.")
@declarations_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random sizes and inputs.")
@click.option("--timeout", type=PositiveNumber(MAX_TIMEOUT, " s"), default=EXACT_TIMEOUT,
              show_default=True, help="Seconds SymPy may spend proving each claim (at most an "
                                      "hour).")
@reports_user_errors
def verify_command(source: str | None, catalog: bool, list_only: bool,
                   declarations: tuple[str, ...], fmt: str, seed: int, timeout: float) -> None:
    """Check claimed derivatives exactly (SymPy) and numerically (NumPy).

    SOURCE is a .mc file or the text of a program followed by claims, e.g.
    'x: [n]; A: [n, n]; f = x @ A @ x; claim grad(f, x) = (A + A.T) @ x'. A claim is
    `claim grad(f, x) = EXPR` (gradient layout), `jacobian(f, x)` (numerator layout) or
    `hessian(f, x)`; EXPR may also use eye(n) and step(z) = 1[z > 0]. Exit 0 when every claim
    is proved (PASS), 1 when one fails, 4 when none fails but one is inconclusive (SymPy could
    not decide in time), 2 on bad input.
    """
    if sum((source is not None, catalog, list_only)) != 1:
        raise MatcalcError("give SOURCE (a program with claims), --catalog or --list")
    if list_only:
        show_list(fmt)
        return
    if catalog:
        verdicts = run_catalog(fmt, seed, timeout)
    else:
        text = read_source(source)
        program, claims = parse_claims(text, declarations)
        check_memory(program, dict.fromkeys(program.dims, LARGEST_RANDOM_SIZE),
                     hint="Declare smaller sizes, or symbolic ones (`A: [n, n]`): claims are "
                          "checked at small sizes.", extra=[claim.expr for claim in claims])
        verdicts = verify_all(text, declarations, seed=seed, timeout=timeout)
        show_verdicts(verdicts, fmt)
    if any(v.verdict == FAIL for v in verdicts):
        sys.exit(FAILED)
    if not all(v.passed for v in verdicts):
        sys.exit(UNDECIDED)


def show_list(fmt: str) -> None:
    """Each identity's name, reference and claim."""
    if fmt == "json":
        click.echo(json.dumps([vars(i) for i in CATALOG], indent=2, ensure_ascii=False))
        return
    for identity in CATALOG:
        click.echo(f"{identity.name} — {identity.reference}\n    {identity.claim}")


def run_catalog(fmt: str, seed: int, timeout: float) -> list[Verdict]:
    """Verify every identity, one line each as it finishes (details under a failure)."""
    width = max(len(i.name) for i in CATALOG)
    started, verdicts = time.perf_counter(), []
    bar = Progress("verifying")
    for done, identity in enumerate(CATALOG):
        bar.update(done, len(CATALOG), identity.name)
        verdict = verify(identity.source, seed=seed, timeout=timeout)
        bar.close()
        verdict.name = identity.name
        verdicts.append(verdict)
        if fmt == "text":
            click.echo(f"{identity.name:<{width}}  {verdict.verdict:<12}  "
                       f"{verdict.seconds:5.2f} s")
            if not verdict.passed:
                click.echo(indented(verdict.text()))
    if fmt == "json":
        click.echo(json.dumps([v.json() for v in verdicts], indent=2, ensure_ascii=False))
    else:
        passed = sum(v.passed for v in verdicts)
        click.echo(f"{passed} of {len(verdicts)} identities pass "
                   f"({time.perf_counter() - started:.1f} s)")
    return verdicts


def show_verdicts(verdicts: Sequence[Verdict], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([v.json() for v in verdicts], indent=2, ensure_ascii=False))
    else:
        click.echo("\n\n".join(v.text() for v in verdicts))


def indented(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
