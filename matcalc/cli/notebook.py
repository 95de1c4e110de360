"""Jupyter: ``%load_ext matcalc``, then a ``%%matcalc`` cell runs a command on the cell's
program (for ``init``, the cell is the activation). ``derive`` and ``hessian`` return their
:class:`~matcalc.forms.rendering.Derivation`, which Jupyter shows typeset (MathML or LaTeX);
the other commands print what the command line prints. Errors print the command line's one
paragraph, without a traceback."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

import click

from matcalc.errors import MatcalcError, did_you_mean

USAGE = "%%matcalc COMMAND [OPTIONS]  (derive, hessian, codegen, check, verify, init, train)"


def typeset_parser() -> argparse.ArgumentParser:
    """The options of ``derive`` and ``hessian`` that a typeset result shows."""
    parser = argparse.ArgumentParser(prog="%%matcalc", add_help=False, exit_on_error=False)
    parser.add_argument("--wrt", action="append", default=[])
    parser.add_argument("--var", action="append", default=[])
    parser.add_argument("--steps", action="store_true")
    parser.add_argument("--differential", action="store_true")
    parser.add_argument("--layout", choices=("numerator", "denominator"))
    parser.add_argument("--hvp")
    return parser


def typeset(command: str, options: list[str], program: str) -> Any:
    """``derive`` or ``hessian`` of ``program``, as the Derivation Jupyter displays."""
    from matcalc.forms.derivation import derivative, hessian
    from matcalc.language.lowering import parse
    try:
        args, unknown = typeset_parser().parse_known_args(options)
    except argparse.ArgumentError as err:
        raise MatcalcError(f"{command}: {err}", hint=USAGE) from None
    if unknown:
        known = ["--wrt", "--var", "--steps", "--differential", "--layout", "--hvp"]
        raise MatcalcError(f"{command}: unknown option {unknown[0]}."
                           + did_you_mean(unknown[0], known), hint=USAGE)
    wrt = [name.strip() for names in args.wrt for name in names.split(",") if name.strip()]
    if not wrt:
        raise MatcalcError(f"{command} needs --wrt NAME", hint=USAGE)
    ignored = ([o for o, on in (("--steps", args.steps), ("--differential", args.differential),
                                ("--layout", args.layout)) if on] if command == "hessian"
               else ["--hvp"] if args.hvp else [])
    if ignored:
        raise MatcalcError(f"{command} takes no {ignored[0]}", hint=USAGE)
    parsed = parse(program, args.var)
    if command == "hessian":
        if len(wrt) != 1:
            raise MatcalcError(f"a Hessian is with respect to one variable; got --wrt "
                               f"{', '.join(wrt)}")
        return hessian(parsed, wrt[0], direction=args.hvp)
    return derivative(parsed, wrt, args.steps, args.differential, args.layout)


def matcalc_cell(line: str, cell: str) -> Any:
    """The ``%%matcalc`` cell magic."""
    try:
        words = shlex.split(line)
    except ValueError as err:                  # an unclosed quote
        print(f"error: {err} in `%%matcalc {line}`")
        return None
    command, options = (words[0], words[1:]) if words else ("derive", [])
    try:
        if command in ("derive", "hessian") and "--help" not in options:
            return typeset(command, options, cell)
        from matcalc.cli.commands import cli
        source = [] if "--help" in options else [cell.strip()]
        cli.main(args=[command, *source, *options], prog_name="%%matcalc",
                 standalone_mode=False)
    except MatcalcError as err:
        print(err)
    except (click.ClickException, click.exceptions.Exit, SystemExit) as err:
        if isinstance(err, click.ClickException):
            print(f"error: {err.format_message()}")
    return None


def register(ipython: Any) -> None:
    """Add the ``%%matcalc`` cell magic to an IPython shell."""
    ipython.register_magic_function(matcalc_cell, magic_kind="cell", magic_name="matcalc")
