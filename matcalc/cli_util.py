"""What every command shares: reading SOURCE, and reporting user errors without a traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from matcalc.errors import MatcalcError

declarations_option = click.option(
    "--var", "declarations", multiple=True, metavar="'NAME: [dims]'",
    help="Extra declaration, e.g. --var 'x: [n]'.")
"""``--var``: declarations added to the program, shared by every command."""

USER_ERROR = 2
INTERNAL_ERROR = 3


def reports_user_errors(command: Callable) -> Callable:
    """Print a MatcalcError as one paragraph on stderr and exit 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MatcalcError as err:
            click.echo(str(err), err=True)
            sys.exit(USER_ERROR)
        except BrokenPipeError:            # `matcalc ... | head`: the reader left, not a bug
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except RecursionError:
            click.echo("error: the program is nested too deeply to differentiate", err=True)
            sys.exit(USER_ERROR)
        except Exception as bug:
            if os.environ.get("MATCALC_DEBUG"):
                raise
            click.echo(f"internal error in matcalc ({type(bug).__name__}: {bug}). This is a bug, "
                       "not your input; please report it with the command you ran. Set "
                       "MATCALC_DEBUG=1 to see the traceback.", err=True)
            sys.exit(INTERNAL_ERROR)

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


def pairs(flag: str, items: tuple[str, ...], convert: Callable[[str], float],
          form: str = "NAME=VALUE") -> dict:
    """``NAME=VALUE`` options as a dict, each value converted (MatcalcError if it cannot be)."""
    values = {}
    for item in items:
        name, _, text = item.partition("=")
        try:
            values[name.strip()] = convert(text)
        except ValueError:
            raise MatcalcError(f"{flag} expects {form}, got `{item}`") from None
    return values
