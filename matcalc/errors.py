"""User-facing errors: one paragraph that names the problem and where it is."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
        lines = [f"error: {self.message}"]
        if self.source is not None and self.offset is not None:
            lines.extend(caret_lines(self.source, self.offset))
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


def caret_lines(source: str, offset: int) -> list[str]:
    """The source line holding ``offset`` and a caret under its column."""
    offset = max(0, min(offset, len(source)))
    start = source.rfind("\n", 0, offset) + 1
    end = source.find("\n", offset)
    end = len(source) if end == -1 else end
    line_no = source.count("\n", 0, offset) + 1
    prefix = f"  line {line_no} | "
    column = offset - start
    return [prefix + source[start:end], " " * (len(prefix) + column) + "^"]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' Did you mean `x`?' for the closest candidate, or '' when none is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" Did you mean `{close[0]}`?" if close else ""
