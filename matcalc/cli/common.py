"""What every command shares: its options, checking option values, and reporting user errors
without a traceback (exit 2) and internal errors as such (exit 3)."""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from matcalc.errors import MatcalcError, shown
from matcalc.language.syntax import identifier

declarations_option = click.option(
    "--var", "declarations", multiple=True, metavar="'NAME: [dims]'",
    help="Extra declaration, e.g. --var 'x: [n]'.")
"""``--var``: declarations added to the program, shared by every command."""


def wrt_option(help_text: str, required: bool = True) -> Callable:
    """``--wrt NAME``, repeatable, a comma-separated list accepted too (``--wrt W1,b1``); a
    name given twice counts once."""
    return click.option("--wrt", "wrt", multiple=True, required=required, metavar="NAME",
                        callback=_split_commas, help=help_text)


def _split_commas(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
                  ) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name.strip() for value in values for name in value.split(",")
                               if name.strip()))


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
            click.echo(f"internal error in matcalc ({type(bug).__name__}: {shown(str(bug))}). "
                       "This is a bug, not your input; please report it with the command you "
                       "ran. Set MATCALC_DEBUG=1 to see the traceback.", err=True)
            sys.exit(INTERNAL_ERROR)

    return wrapper


# ----------------------------------------------------------------------------------------------
# Option values


class PositiveNumber(click.ParamType):
    """A finite number greater than 0 (or 0 too, with ``zero``), between ``minimum`` and
    ``maximum`` when given: refuses nan, inf, 0, -1."""

    name = "number"

    def __init__(self, maximum: float | None = None, unit: str = "",
                 minimum: float | None = None, zero: bool = False) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.unit = unit
        self.zero = zero

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{shown(repr(value))} is not a number", param, ctx)
        if not math.isfinite(number) or number < 0 or (number == 0 and not self.zero):
            least = "at least 0" if self.zero else "greater than 0"
            self.fail(f"{value!r} is not a finite number {least}", param, ctx)
        if self.maximum is not None and number > self.maximum:
            self.fail(f"{value!r} is more than the largest allowed, {self.maximum:g}{self.unit}",
                      param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"{value!r} is less than the smallest allowed, {self.minimum:g}{self.unit}",
                      param, ctx)
        return number


def finite_number(text: str) -> float:
    """``text`` as a finite float (ValueError otherwise: nan and inf are not values)."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


MAX_SIZE_DIGITS = 100


def size(text: str) -> int:
    """``text`` as a size: a positive integer in ASCII digits (ValueError otherwise)."""
    text = text.strip()
    if not re.fullmatch(f"[0-9]{{1,{MAX_SIZE_DIGITS}}}", text) or int(text) < 1:
        raise ValueError(text)
    return int(text)


def pairs(flag: str, items: Iterable[str], convert: Callable[[str], Any],
          form: str = "NAME=VALUE", what: str = "VALUE must be a finite number"
          ) -> dict[str, Any]:
    """``NAME=VALUE`` options as a dict: each NAME a name of the language and given once, each
    value converted (MatcalcError saying which item is wrong otherwise)."""
    values: dict[str, Any] = {}
    for item in items:
        name, equals, text = item.partition("=")
        name = name.strip()
        if not equals:
            raise MatcalcError(f"{flag} expects {form}, got `{item}` (no `=`)")
        identifier(name, f"the NAME of {flag} {form}")
        if name in values:
            raise MatcalcError(f"{flag} gives `{name}` twice")
        try:
            values[name] = convert(text)
        except ValueError:
            raise MatcalcError(f"{flag} expects {form}, got `{item}` ({what})") from None
    return values


# ----------------------------------------------------------------------------------------------
# Progress


class Progress:
    """A one-line bar on stderr, redrawn in place while work goes on (``[#####·····] 4/9 loss
    0.31``), and erased when it ends; nothing at all when stderr is not a terminal."""

    WIDTH = 24

    def __init__(self, label: str, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.label = label
        self.shown = bool(getattr(self.stream, "isatty", lambda: False)())
        self.length = 0

    def update(self, done: int, total: int, detail: str = "") -> None:
        if not self.shown or total <= 0:
            return
        filled = round(self.WIDTH * done / total)
        line = (f"{self.label} [{'#' * filled}{'·' * (self.WIDTH - filled)}] {done}/{total}"
                f"{'  ' + detail if detail else ''}")
        self.stream.write("\r" + line.ljust(self.length))
        self.stream.flush()
        self.length = len(line)

    def close(self) -> None:
        if self.shown and self.length:
            self.stream.write("\r" + " " * self.length + "\r")
            self.stream.flush()
            self.length = 0
