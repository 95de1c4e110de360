"""Writing files: checked before anything is computed, written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from matcalc.errors import MatcalcError, reason


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
