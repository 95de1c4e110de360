"""What every command shares: reading SOURCE, checking option values, writing files, the memory
budget, and reporting user errors without a traceback."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from matcalc.errors import MatcalcError, shown
from matcalc.ir import Node, postorder, shape_str
from matcalc.syntax import identifier

if TYPE_CHECKING:
    from matcalc.program import Program

declarations_option = click.option(
    "--var", "declarations", multiple=True, metavar="'NAME: [dims]'",
    help="Extra declaration, e.g. --var 'x: [n]'.")
"""``--var``: declarations added to the program, shared by every command."""



def wrt_option(help_text: str) -> Callable:
    """``--wrt NAME``, repeatable, a comma-separated list accepted too (``--wrt W1,b1``)."""
    return click.option("--wrt", "wrt", multiple=True, required=True, metavar="NAME",
                        callback=_split_commas, help=help_text)


def _split_commas(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
                  ) -> tuple[str, ...]:
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


USER_ERROR = 2
INTERNAL_ERROR = 3
BOM = "\ufeff"


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
# Reading SOURCE


def read_source(source: str) -> str:
    """SOURCE is a file path or the program text itself; a leading byte-order mark is dropped."""
    path = Path(source)
    if "\n" not in source and len(source) < 4096 and path.suffix == ".mc":
        if path.is_dir():
            raise MatcalcError(f"{source} is a directory, not a .mc file")
        if not path.is_file():
            raise MatcalcError(f"no such file: {source}")
        return read_text(path)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):
        is_file = False
    return read_text(path) if is_file else source.removeprefix(BOM)


def read_text(path: Path) -> str:
    """A UTF-8 text file's contents without a leading byte-order mark; a MatcalcError naming
    the file (and the byte offset when it is not UTF-8) otherwise."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MatcalcError(f"cannot read {path}: {reason(err)}") from None
    try:
        return data.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise MatcalcError(
            f"{path} is not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} "
            f"(line {line}) cannot be decoded",
            hint="Save the file as UTF-8 (programs are plain text).") from None


def reason(err: OSError) -> str:
    """An OSError's reason without the file name (the message names the file itself)."""
    return err.strerror or str(err)


# ----------------------------------------------------------------------------------------------
# Option values


class PositiveNumber(click.ParamType):
    """A finite number greater than 0, between ``minimum`` and ``maximum`` when given: refuses
    nan, inf, 0, -1."""

    name = "number"

    def __init__(self, maximum: float | None = None, unit: str = "",
                 minimum: float | None = None) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.unit = unit

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{shown(repr(value))} is not a number", param, ctx)
        if not math.isfinite(number) or number <= 0:
            self.fail(f"{value!r} is not a finite number greater than 0", param, ctx)
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
# Writing files


def target_path(text: str, flag: str, force: bool = False) -> Path:
    """The file an option names, checked before anything is computed: not empty, not a
    directory or a device, in an existing directory, and new unless ``force``."""
    if not text:
        raise MatcalcError(f"{flag} needs a file name, got an empty one")
    if "\0" in text:
        raise MatcalcError(f"{flag}: a file name cannot contain a NUL character")
    path = Path(os.path.realpath(text)) if os.path.islink(text) else Path(text)
    if path.is_dir():
        raise MatcalcError(f"{flag} {text}: that is a directory; give a file name in it, "
                           f"e.g. {Path(text) / 'name'}")
    if path.exists() and not path.is_file():
        raise MatcalcError(f"{flag} {text}: that is not a regular file (a device or a pipe); "
                           "matcalc writes only regular files")
    if path.exists() and not force:
        raise MatcalcError(f"{text} already exists; matcalc does not overwrite files unless "
                           "told to", hint="Pass --force to overwrite it, or choose another name.")
    parent = path.parent
    if not parent.is_dir():
        problem = f"{parent} is not a directory" if parent.exists() else \
            f"the directory {parent} does not exist"
        raise MatcalcError(f"cannot write {text}: {problem}")
    return path


def write_atomically(path: Path, write: Callable[[IO[bytes]], None], shown_as: str) -> None:
    """Write a file through a temporary file in the same directory renamed over ``path``, so
    that a failure leaves no partial file (and an existing one untouched)."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else _new_file_mode()
    try:
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=".matcalc-", suffix=".tmp",
                                             delete=False)
    except OSError as err:
        raise MatcalcError(f"cannot write {shown_as}: cannot create a file in {path.parent} "
                           f"({reason(err)})") from None
    try:
        with handle:
            write(handle)
        os.chmod(handle.name, mode)
        os.replace(handle.name, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        if isinstance(err, OSError):
            raise MatcalcError(f"cannot write {shown_as}: {reason(err)}") from None
        raise


def write_text(text: str, path: str, flag: str, force: bool) -> None:
    """``text`` in UTF-8 to the file ``path`` given by ``flag`` (see :func:`target_path`)."""
    data = text.encode("utf-8")
    write_atomically(target_path(path, flag, force), lambda handle: handle.write(data), path)


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# ----------------------------------------------------------------------------------------------
# Memory budget


MEMORY_BUDGET = 4 * 10**9
"""Most bytes of float64 arrays a command may need (every variable and intermediate, once)."""


def check_memory(program: Program, sizes: Mapping[str, int], hint: str,
                 extra: Iterable[Node] = ()) -> None:
    """MatcalcError, before anything is allocated, when the program's variables and
    intermediates (and the ``extra`` expressions) at ``sizes`` would need more than
    ``MEMORY_BUDGET`` bytes as float64."""
    roots = [*program.variables.values(), *program.intermediates.values(), *extra]
    nodes = postorder([*roots, *([program.function] if program.function is not None else [])])
    symbols = {program.dims[name]: value for name, value in sizes.items() if name in program.dims}
    entries = [(math.prod(_concrete(d, symbols) for d in node.shape), node) for node in nodes]
    total = 8 * sum(count for count, _ in entries)
    if total <= MEMORY_BUDGET:
        return
    count, largest = max(entries, key=lambda pair: pair[0])
    name = f"`{largest.attrs[0]}` " if largest.op in ("var", "named") else "an intermediate "
    used = sorted({str(s) for _, node in entries for d in node.shape for s in d.free_symbols})
    at = ", ".join(f"{d} = {sizes[d]}" for d in used if d in sizes)
    raise MatcalcError(
        f"the arrays would need {gigabytes(total)} GB{' at ' + at if at else ''} (the largest, "
        f"{name}{shape_str(largest.shape)}, {gigabytes(8 * count)} GB), more than the "
        f"{gigabytes(MEMORY_BUDGET)} GB matcalc allows", hint=hint)


def _concrete(dim: Any, symbols: Mapping[Any, int]) -> int:
    if dim.is_Integer:
        return int(dim)
    if dim in symbols:
        return int(symbols[dim])
    return int(dim.subs(symbols))


def gigabytes(count: int) -> str:
    """A byte count in GB (10⁹ bytes): ``0.5``, ``4``, ``7,280``, ``8e+15``, however large."""
    value = Decimal(count) / Decimal(10**9)
    if value < 10:
        return f"{float(value):.2g}"
    if value < 10**6:
        return f"{float(value):,.0f}"
    return f"{float(value):.3g}" if value < Decimal("1e300") else f"{value:.3g}"
