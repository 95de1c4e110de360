"""User-facing errors: one paragraph that names the problem and where it is."""

from __future__ import annotations

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
    """' Did you mean `x`?' for a candidate a typo away from ``name``, or ''.

    A typo is a few edits (one per three characters, at least one) or a change of case:
    ``sofmax`` suggests ``softmax``, ``max`` does not.
    """
    limit = max(1, len(name) // 3)
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
