"""User-facing errors: one paragraph that names the problem and where it is."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

NAME_LIMIT = 40
"""Longest name (a run of letters, digits and `_`) shown in a message; longer ones are cut."""
LINE_LIMIT = 200
"""Most characters of the source line shown above the caret; longer lines are cut around it."""
TEXT_LIMIT = 2000
"""Most characters shown of a message or hint (anything longer is the user's input echoed)."""


class MatcalcError(Exception):
    """An error in the user's input: reported without a traceback, exit code 2.

    ``source`` and ``offset`` (a character index into ``source``) locate the problem;
    the formatted message then shows the offending line with a caret under the column.
    """

    def __init__(
        self,
        message: str,
        source: str | None = None,
        offset: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.offset = offset
        self.hint = hint

    def located(self, source: str, offset: int | None) -> MatcalcError:
        """Attach a location if the error has none yet; returns self."""
        if self.source is None and offset is not None:
            self.source, self.offset = source, offset
        return self

    def __str__(self) -> str:
        lines = [f"error: {shown(self.message)}"]
        if self.source is not None and self.offset is not None:
            lines.extend(caret_lines(self.source, self.offset))
        if self.hint:
            lines.append(shown(self.hint))
        return "\n".join(lines)


class NotDerived(MatcalcError):
    """A derivative matcalc states it does not derive (second derivatives through the SVD):
    a documented limit, reported like any error."""


def escaped(text: str, keep: str = "\n") -> str:
    """``text`` with each non-printable character (but those in ``keep``) as an escape such as
    ``\\x1b`` or ``\\u202e``, so that no terminal control sequence reaches the screen."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


_LONG_NAME = re.compile(rf"\w{{{NAME_LIMIT + 1},}}")


def shown(text: str) -> str:
    """A message or hint as printed: escaped, each name cut to ``NAME_LIMIT`` characters with
    `…`, the whole to ``TEXT_LIMIT``."""
    text = _LONG_NAME.sub(lambda m: m.group()[:NAME_LIMIT] + "…", escaped(text))
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"


def caret_lines(source: str, offset: int) -> list[str]:
    """The source line holding ``offset`` and a caret under its column.

    Non-printable characters are shown escaped (tabs as a space) and a line longer than
    ``LINE_LIMIT`` is cut around the caret, with `…` where it was cut.
    """
    offset = max(0, min(offset, len(source)))
    start = source.rfind("\n", 0, offset) + 1
    end = source.find("\n", offset)
    end = len(source) if end == -1 else end
    line_no = source.count("\n", 0, offset) + 1
    prefix = f"  line {line_no} | "
    before = _shown_chars(source, range(offset - 1, start - 1, -1))[::-1]
    after = _shown_chars(source, range(offset, end))
    return [prefix + before + after, " " * (len(prefix) + _width(before)) + "^"]


def _shown_chars(source: str, indices: range) -> str:
    """The characters at ``indices`` as shown (escaped), up to half of ``LINE_LIMIT``, then `…`.

    The result is in the order of ``indices`` (reversed for text before the caret).
    """
    pieces, length = [], 0
    for i in indices:
        if length >= LINE_LIMIT // 2:
            pieces.append("…")
            break
        char = source[i]
        piece = " " if char == "\t" else char if char.isprintable() else _escape(char)
        pieces.append(piece if indices.step > 0 else piece[::-1])
        length += len(piece)
    return "".join(pieces)


def _width(text: str) -> int:
    """Terminal columns of ``text``: wide East Asian characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF"
               else 1 for c in text)


def listed(names: Sequence[str], limit: int = 12) -> str:
    """``a, b, c`` for a few names, ``a, b, …, z (2000 names)`` for many."""
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit - 1])}, …, {names[-1]} ({len(names)} names)"


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' Did you mean `x`?' for a candidate a typo away from ``name``, or ''.

    A typo is a few edits (one per three characters, at least one) or a change of case:
    ``sofmax`` suggests ``softmax``, ``max`` does not; a one-letter name only a change of case
    (``b`` suggests ``B``, not ``W``).
    """
    limit = max(1, len(name) // 3) if len(name) > 1 else 0
    scored = sorted((edit_distance(name.lower(), c.lower()), c) for c in set(candidates))
    close = [c for d, c in scored if d <= limit and c != name]
    return f" Did you mean `{close[0]}`?" if close else ""


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, adjacent transpositions counting as one edit."""
    if abs(len(a) - len(b)) > 3:
        return abs(len(a) - len(b))
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            row.append(cost)
        previous2, previous = previous, row
    return previous[-1]


def reason(err: OSError) -> str:
    """An OSError's reason without the file name (the message names the file itself)."""
    return err.strerror or str(err)
