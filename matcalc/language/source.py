"""SOURCE as a command gives it: a ``.mc`` file's path, ``-`` (standard input), a pipe such as
a shell's ``<(…)``, or the program text itself."""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path

from matcalc.errors import MatcalcError, reason

BOM = "\ufeff"


def read_source(source: str) -> str:
    """SOURCE is a file path, ``-`` for standard input, a pipe's path or the program text
    itself; a leading byte-order mark is dropped."""
    if source == "-":
        return sys.stdin.read().removeprefix(BOM)
    path = Path(source)
    if "\n" not in source and len(source) < 4096 and path.suffix == ".mc":
        if path.is_dir():
            raise MatcalcError(f"{source} is a directory, not a .mc file")
        if not path.is_file():
            raise MatcalcError(f"no such file: {source}")
        return read_text(path)
    if readable_path(path):
        return read_text(path)
    if looks_like_a_path(source, path):
        problem = (f"{source} is a directory, not a .mc file" if path.is_dir() else
                   f"{source} is not a file matcalc reads" if path.exists() else
                   f"no such file: {source}")
        raise MatcalcError(problem,
                           hint="SOURCE is a .mc file, - for standard input, or the program text.")
    return source.removeprefix(BOM)


def looks_like_a_path(source: str, path: Path) -> bool:
    """Whether SOURCE, not a file, was meant as one: one word with a slash, in a folder that
    exists, that is a directory, has a file's extension (``examples/mlp.txt``) or starts as a
    path does (``/``, ``./``, ``../``); a program (``x/y`` beside a folder ``x``) is none."""
    word = len(source) < 4096 and not any(c.isspace() or c in "(:;=" for c in source)
    if not word or "/" not in source:
        return False
    try:
        return path.is_dir() or path.parent.is_dir() and (
            source.startswith(("/", "./", "../"))
            or re.search(r"\.[A-Za-z]\w+$", path.name) is not None)
    except (OSError, ValueError):
        return False


def readable_path(path: Path) -> bool:
    """Whether ``path`` names a file or a pipe (/dev/stdin, a shell's <(…) as /dev/fd/63), which
    are read; not a device such as /dev/zero, which never ends."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(mode) or stat.S_ISFIFO(mode)


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
