"""The matcalc language: tokens, a hand-written recursive-descent parser, and ``unparse``.

One grammar serves files and the command line::

    program    := statement ((NEWLINE | ";") statement)*
    statement  := NAME ("," NAME)* ":" "[" [dim ("," dim)*] "]"   # declaration
                | NAME "=" expr                                  # assignment
                | expr                                           # expression statement
    expr       := sum [("<" | ">" | "<=" | ">=") sum]               # a 0/1 mask
    sum        := term (("+" | "-") term)*
    term       := factor (("*" | "/" | "@") factor)*
    factor     := ("-" | "+") factor | power
    power      := atom (".T")* ["**" factor]
    atom       := NAME | NAME "(" [args] ")" | NUMBER | "(" expr ")"

Newlines inside ``(...)`` and ``[...]`` are ignored, as in Python. The parser never evaluates
anything; every node records the character offset it came from, and every problem is a
:class:`~matcalc.errors.MatcalcError` with a caret at the offending character. Nesting is
limited to :data:`MAX_DEPTH` levels, tracked explicitly, so hostile input cannot exhaust the
Python stack.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

import sympy

from matcalc.errors import MatcalcError, did_you_mean

__all__ = [
    "MAX_DEPTH",
    "Assign",
    "BinOp",
    "Call",
    "Decl",
    "Expr",
    "ExprStmt",
    "Name",
    "Number",
    "Program",
    "Statement",
    "Transpose",
    "UnaryOp",
    "parse_expression",
    "parse_program",
    "unparse",
]

MAX_DEPTH = 100
"""Most levels of nesting (parentheses, operators, calls, ``.T``) one expression may have."""
PROPERTIES = ("symmetric", "onehot", "probabilities", "labels")
"""Words a declaration may end with: a symmetric matrix; targets whose rows are one-hot or
probability vectors (each sums to 1); integer class labels."""

MAX_NUMBER_DIGITS = 400
"""Largest decimal exponent (either sign) a number literal may reach."""

PYTHON_KEYWORDS = frozenset(keyword.kwlist)
LITERALS = frozenset({"None", "True", "False"})
"""Keywords read as values, for arguments such as ``axis=None`` and ``keepdims=True``."""
ARRAY_MODULES = frozenset({"np", "numpy", "torch", "jnp", "jax", "math", "linalg", "scipy"})
"""Module names users write before a function (``np.linalg.norm``)."""
METHODS = {
    "dot": "Write products with `@`, as in `X @ w`.",
    "matmul": "Write products with `@`, as in `A @ B`.",
    "inv": "Write the inverse as a function: `inv(A)`.",
    "t": "Write the transpose as `A.T`.",
    "transpose": "Write the transpose as `A.T` (or `transpose(x, axes)` for a stack).",
    "mm": "Write products with `@`, as in `A @ B`.",
    "shape": "Sizes are the declared dimensions, used by name: `n` for `X: [n, m]`.",
}
"""What to write instead of the array methods users reach for (``X.dot(w)``, ``A.inv()``)."""


# --------------------------------------------------------------------------------------------
# AST. ``pos`` / ``op_pos`` are excluded from equality, so trees compare by structure.


@dataclass(frozen=True)
class Name:
    """A variable, dimension or constant name."""

    id: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Number:
    """A number literal as written, with its exact value."""

    text: str
    value: sympy.Rational
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class String:
    """A word in quotes, for options such as ``norm(X, "fro")`` and ``approximate="tanh"``."""

    value: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class List:
    """``[a, b, …]``: the arrays of ``concatenate``, ``vstack`` and ``hstack``; only a call's
    argument."""

    items: tuple[Expr, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class UnaryOp:
    """``-x`` or ``+x``; ``pos`` is the operator's offset."""

    op: str
    operand: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class BinOp:
    """``left op right``; ``pos`` is where ``left`` starts, ``op_pos`` where the operator is."""

    op: str
    left: Expr
    right: Expr
    pos: int = field(default=0, compare=False)
    op_pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Transpose:
    """``x.T``, or ``x.mT`` (each matrix of a stack transposed); ``pos`` is the offset of the
    ``.``."""

    operand: Expr
    pos: int = field(default=0, compare=False)
    attr: str = "T"


@dataclass(frozen=True, eq=False)
class Call:
    """``func(arg, ..., kw=value, ...)``; kwargs are ``(name, value, offset of name)``."""

    func: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr, int], ...] = ()
    pos: int = 0

    def _key(self) -> tuple[object, ...]:
        return (self.func, self.args, tuple((k, v) for k, v, _ in self.kwargs))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Call):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


Expr = Name | Number | String | List | UnaryOp | BinOp | Transpose | Call


@dataclass(frozen=True, eq=False)
class Decl:
    """``a, b: [n, 3]``; names and dims are ``(value, offset)`` pairs, ``[]`` is a scalar."""

    names: tuple[tuple[str, int], ...]
    dims: tuple[tuple[str | int, int], ...]
    pos: int = 0
    properties: tuple[str, ...] = ()
    """Words after the shape, e.g. ``S: [n, n] symmetric``."""

    def _key(self) -> tuple[object, ...]:
        return (tuple(n for n, _ in self.names), tuple(d for d, _ in self.dims),
                self.properties)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decl):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class Assign:
    """``name = expr``; ``pos`` is the name's offset."""

    name: str
    expr: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class ExprStmt:
    """A bare expression; ``pos`` is where it starts."""

    expr: Expr
    pos: int = field(default=0, compare=False)


Statement = Decl | Assign | ExprStmt


@dataclass(frozen=True)
class Program:
    """All statements of a source text, in order, with the text they came from."""

    statements: tuple[Statement, ...]
    source: str


# --------------------------------------------------------------------------------------------
# Lexer


_TOKEN_RE = re.compile(
    r"""
      (?P<space>[ \t\f\r]+)
    | (?P<comment>\#[^\n]*)
    | (?P<newline>\n)
    | (?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]*)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<string>"[A-Za-z_][A-Za-z0-9_]{0,39}"|'[A-Za-z_][A-Za-z0-9_]{0,39}'
                 |"[A-Za-z ,>.-]{1,80}"|'[A-Za-z ,>.-]{1,80}')
    | (?P<bad>\*\*=|:=|==|!=|//=?|[-+*/@%]=|['"{}\\])
    | (?P<op>\*\*|<=|>=|[-+*/@()\[\],:=.;<>])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

_CHAR_HINTS = {
    "^": "Use `**` for powers.",
    "ᵀ": "Write `x.T` for the transpose.",
    "×": "Use `*` (elementwise) or `@` (matrix product) to multiply.",
    "·": "Use `*` (elementwise) or `@` (matrix product) to multiply.",
    "⋅": "Use `*` (elementwise) or `@` (matrix product) to multiply.",
    "−": "Use the ASCII minus sign `-`.",
}


class _Token:
    """One token: ``kind`` is "name", "number", "newline", "eof", "error" or the operator."""

    __slots__ = ("kind", "text", "pos", "value", "error")

    def __init__(
        self,
        kind: str,
        text: str,
        pos: int,
        value: sympy.Rational | None = None,
        error: MatcalcError | None = None,
    ) -> None:
        self.kind = kind
        self.text = text
        self.pos = pos
        self.value = value
        self.error = error


def _short(text: str) -> str:
    return text if len(text) <= 24 else text[:20] + "…"


def _number_value(text: str) -> sympy.Rational | str:
    """The exact value of a number literal, or an error message when it is absurdly large."""
    mantissa, _, exp_text = text.lower().partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    frac_part = frac_part.rstrip("0")
    exp_digits = exp_text.lstrip("+-").lstrip("0")
    negative = exp_text.startswith("-")
    digits = (int_part + frac_part).lstrip("0")
    if not digits:
        return sympy.Rational(0)
    if len(exp_digits) > 6:
        scale = -(10**7) if negative else 10**7
    else:
        scale = int(exp_digits or "0") * (-1 if negative else 1) - len(frac_part)
    if len(digits) + scale > MAX_NUMBER_DIGITS + 1:
        return f"number too large: `{_short(text)}`"
    if scale < -MAX_NUMBER_DIGITS:
        return f"number too small or too precise: `{_short(text)}`"
    if scale >= 0:
        return sympy.Rational(int(digits) * 10**scale)
    return sympy.Rational(int(digits), 10**-scale)


def _bad_token(text: str) -> tuple[str, str | None]:
    """Message and hint for a token that is Python but not matcalc."""
    if text in ("'", '"'):
        return ("strings in matcalc are only option words and einsum subscripts in quotes, "
                'such as `norm(X, "fro")` or `einsum("ij,jk->ik", A, B)`', None)
    if text in ("{", "}"):
        return f"braces (`{text}`) are not part of the matcalc language", None
    if text == "\\":
        return (
            "backslashes are not part of the matcalc language",
            "To continue an expression on the next line, wrap it in parentheses.",
        )
    if text == ":=":
        return "the walrus operator `:=` is not part of the matcalc language", "Assign with `=`."
    if text in ("==", "!="):
        return (f"`{text}` is not part of the matcalc language: equality of real numbers has no "
                "derivative", "To define a name, write `=`; to compare, use `<`, `>`, `<=` or "
                "`>=`: they give 0/1 masks.")
    if text.startswith("//"):
        return f"floor division `{text}` is not part of the matcalc language", "Use `/`."
    op = text[:-1]
    return (
        f"augmented assignment `{text}` is not part of the matcalc language",
        f"Write `x = x {op} ...` instead.",
    )


def _other_char(ch: str) -> tuple[str, str | None]:
    """Message and hint for a character that starts no token."""
    shown = f"`{ch}`" if ch.isprintable() else f"U+{ord(ch):04X}"
    hint = _CHAR_HINTS.get(ch)
    if hint is None and ch.isalpha():
        hint = "Names use ASCII letters, digits and `_`."
    return f"unexpected character {shown}", hint


def _tokenize(source: str) -> list[_Token]:
    """All tokens up to and including the first error token, then an "eof" token."""
    tokens: list[_Token] = []
    depth = 0
    for m in _TOKEN_RE.finditer(source):
        kind = m.lastgroup
        text = m.group()
        pos = m.start()
        if kind == "space" or kind == "comment":
            continue
        message: str | None = None
        hint: str | None = None
        if kind == "newline":
            if depth == 0:
                tokens.append(_Token("newline", text, pos))
            continue
        if kind in ("name", "string"):
            tokens.append(_Token(kind, text, pos))
            continue
        if kind == "number":
            if text[-1] in "eE+-":
                message = f"malformed number `{_short(text)}`: the exponent needs digits"
                tokens.append(_Token("error", text, pos, error=MatcalcError(message, source, pos)))
                break
            value = _number_value(text)
            if not isinstance(value, str):
                tokens.append(_Token("number", text, pos, value=value))
                continue
            message = value
            hint = f"Numbers are limited to about {MAX_NUMBER_DIGITS} digits."
        elif kind == "op":
            if text in ("(", "["):
                depth += 1
            elif text in (")", "]") and depth:
                depth -= 1
            tokens.append(_Token(text, text, pos))
            continue
        elif kind == "bad":
            message, hint = _bad_token(text)
        else:
            message, hint = _other_char(text)
        tokens.append(_Token("error", text, pos, error=MatcalcError(message, source, pos, hint)))
        break
    tokens.append(_Token("eof", "", len(source)))
    return tokens


# --------------------------------------------------------------------------------------------
# Parser. Expression methods return (node, start offset, height); height counts levels of
# nesting and is capped at MAX_DEPTH, as is the parser's own recursion depth.

_Parsed = tuple[Expr, int, int]

_DEPTH_HINT = "Split it into smaller steps with intermediate assignments (`t = ...`)."
_MULTIPLY_HINT = "To multiply, write `*` (elementwise) or `@` (matrix product) explicitly."


def _describe(tok: _Token) -> str:
    if tok.kind == "eof":
        return "the end of the input"
    if tok.kind == "newline":
        return "the end of the line"
    return f"`{_short(tok.text)}`"


class _Parser:
    """Recursive descent over a token list, with explicit depth tracking."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.i = 0
        self.depth = 0

    # -- helpers ---------------------------------------------------------------------------

    def error(self, message: str, offset: int, hint: str | None = None) -> MatcalcError:
        return MatcalcError(message, self.source, offset, hint)

    def peek(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.error is not None:
            raise tok.error
        return tok

    def advance(self) -> _Token:
        tok = self.peek()
        self.i += 1
        return tok

    def enter(self, offset: int, levels: int = 1) -> None:
        self.depth += levels
        if self.depth > MAX_DEPTH:
            raise self.too_deep(offset)

    def too_deep(self, offset: int) -> MatcalcError:
        return self.error(
            f"expression nested too deeply (more than {MAX_DEPTH} levels)", offset, _DEPTH_HINT
        )

    def check_height(self, height: int, offset: int) -> int:
        if height > MAX_DEPTH:
            raise self.too_deep(offset)
        return height

    def check_name(self, tok: _Token) -> None:
        """Reject Python keywords where a matcalc name is expected."""
        if tok.text not in PYTHON_KEYWORDS:
            return
        following = self.tokens[self.i + 1].kind
        declared = following == ":" and self.tokens[self.i + 2].kind == "["   # `lambda: []`
        if tok.text == "lambda" and not declared and following not in ("eof", "newline", ";",
                                                                      ",", "="):
            raise self.error("lambda expressions are not part of the matcalc language", tok.pos)
        hint = "Call it `lam`, as in the examples." if tok.text == "lambda" else None
        raise self.error(f"`{tok.text}` is a Python keyword, not a matcalc name", tok.pos, hint)

    def unexpected(self, tok: _Token, expected: str, *, where: str = "") -> MatcalcError:
        """The error for ``tok`` found after a complete expression."""
        if tok.kind == "name":
            self.check_name(tok)  # `tok` is the current token: Python keywords get their own error
        if tok.kind == ",":
            return self.error(
                "tuples are not part of the matcalc language",
                tok.pos,
                "Use one assignment per statement; declare several names with `a, b: [n]`.",
            )
        if tok.kind in (")", "]"):
            opener = "(" if tok.kind == ")" else "["
            return self.error(
                f"unexpected `{tok.kind}`", tok.pos, f"There is no matching `{opener}`."
            )
        if tok.kind == "=":
            if where == "expr":
                return self.error(
                    "cannot assign to an expression; only a plain name can be assigned to",
                    tok.pos,
                )
            if where == "assign":
                return self.error(
                    "unexpected `=`", tok.pos, "Assign one name per statement: `a = 1; b = a`."
                )
            return self.error("unexpected `=`", tok.pos, "Keyword arguments look like `axis=0`.")
        if tok.kind == ":":
            return self.error(
                "unexpected `:`", tok.pos, "A declaration looks like `x: [n, m]` or `a, b: []`."
            )
        hint = None
        prev = self.tokens[self.i - 1] if self.i else None
        if (
            prev is not None
            and prev.kind == "number"
            and tok.kind in ("name", "number")
            and prev.pos + len(prev.text) == tok.pos
        ):
            if prev.text.endswith(".") and tok.text == "T":
                hint = f"To transpose a number write `({prev.text[:-1]}).T`."
            else:
                hint = f"Write `{prev.text} * {tok.text}` to multiply."
        return self.error(f"unexpected {_describe(tok)}; expected {expected}", tok.pos, hint)

    def close_error(self, opener: _Token, tok: _Token, expected: str) -> MatcalcError:
        """The error for a missing closing bracket: "unclosed" if the line ended first."""
        if tok.kind == "," and opener.kind == "(":
            return self.error("tuples are not part of the matcalc language", tok.pos,
                              "An axis is one integer or None (`axis=None` reduces over every "
                              "axis).")
        if tok.kind in ("eof", ";", "newline") or "\n" in self.source[opener.pos : tok.pos]:
            closer = ")" if opener.kind == "(" else "]"
            return self.error(
                f"unclosed `{opener.kind}`", opener.pos, f"Add the matching `{closer}`."
            )
        return self.unexpected(tok, expected)

    # -- statements ------------------------------------------------------------------------

    def program(self) -> Program:
        statements: list[Statement] = []
        while True:
            tok = self.peek()
            if tok.kind == "eof":
                return Program(tuple(statements), self.source)
            if tok.kind in ("newline", ";"):
                self.i += 1
                continue
            stmt = self.statement()
            statements.append(stmt)
            tok = self.peek()
            if tok.kind in ("newline", ";"):
                self.i += 1
            elif tok.kind != "eof":
                if isinstance(stmt, Decl):
                    raise self.error(
                        f"expected `;` or a new line after the declaration, got {_describe(tok)}",
                        tok.pos,
                    )
                where = "assign" if isinstance(stmt, Assign) else "expr"
                raise self.unexpected(tok, "an operator, `;` or a new line", where=where)

    def statement(self) -> Statement:
        tok = self.peek()
        if tok.kind == "name":
            toks = self.tokens
            j = self.i + 1
            while toks[j].kind == "," and toks[j + 1].kind == "name":
                j += 2
            if toks[j].kind == ":":
                return self.declaration()
            if toks[self.i + 1].kind == "=":
                self.check_name(tok)
                self.i += 1
                eq = self.advance()
                expr, _, _ = self.expr(eq)
                return Assign(tok.text, expr, tok.pos)
        expr, start, _ = self.expr(None)
        return ExprStmt(expr, start)

    def declaration(self) -> Decl:
        names: list[tuple[str, int]] = []
        while True:
            tok = self.peek()
            self.check_name(tok)
            self.i += 1
            names.append((tok.text, tok.pos))
            if self.advance().kind == ":":
                break
        opener = self.peek()
        if opener.kind != "[":
            raise self.error(
                f"expected `[` after `:` in a declaration, got {_describe(opener)}",
                opener.pos,
                "Declare shapes like `x: [n]` or `A: [n, m]`, and scalars like `c: []`.",
            )
        self.i += 1
        dims: list[tuple[str | int | tuple[str | int, ...], int]] = []
        if self.peek().kind == "]":
            self.i += 1
            return Decl(tuple(names), (), names[0][1], self.properties())
        while True:
            start = self.peek().pos
            factors = [self.dimension_factor()]
            while self.peek().kind == "*":              # a product of sizes: [B, T, h * k]
                self.i += 1
                factors.append(self.dimension_factor())
            dims.append((factors[0] if len(factors) == 1 else tuple(factors), start))
            tok = self.peek()
            if tok.kind == "]":
                self.i += 1
                return Decl(tuple(names), tuple(dims), names[0][1], self.properties())
            if tok.kind != ",":
                later = "\n" in self.source[opener.pos : tok.pos]
                raise self.error(
                    f"expected `]` to close the dimension list, got {_describe(tok)}",
                    opener.pos if later else tok.pos,
                )
            self.i += 1

    def dimension_factor(self) -> str | int:
        """A size's name or a positive integer."""
        tok = self.peek()
        if tok.kind == "name":
            self.check_name(tok)
        elif not (tok.kind == "number" and tok.text.isdigit() and tok.value):
            got = _describe(tok)
            if tok.kind in ("+", "-") and self.tokens[self.i + 1].kind == "number":
                got = f"`{tok.text}{_short(self.tokens[self.i + 1].text)}`"
            raise self.error(
                f"dimension must be a name, a positive integer or a product of them "
                f"(`h * k`), got {got}", tok.pos)
        self.i += 1
        return tok.text if tok.kind == "name" else int(tok.text)

    def properties(self) -> tuple[str, ...]:
        """Property words after a declaration's shape (``symmetric``)."""
        found: list[str] = []
        while self.peek().kind == "name":
            tok = self.advance()
            if tok.text not in PROPERTIES:
                raise self.error(f"unknown property `{tok.text}` in a declaration."
                                 + did_you_mean(tok.text, PROPERTIES), tok.pos,
                                 "Properties: " + ", ".join(PROPERTIES) + ".")
            found.append(tok.text)
        return tuple(found)

    # -- expressions -----------------------------------------------------------------------

    def expected_expression(self, after: _Token | None, tok: _Token) -> MatcalcError:
        if after is not None:
            return self.error(
                f"expected an expression after `{after.text}`, got {_describe(tok)}", tok.pos
            )
        if tok.kind in ("eof", "newline"):
            return self.error(f"expected an expression, got {_describe(tok)}", tok.pos)
        return self.error(f"unexpected {_describe(tok)}", tok.pos)

    def expr(self, after: _Token | None) -> _Parsed:
        """A sum, or one comparison of two sums (``a > b``: a 0/1 mask; not chained)."""
        node, start, height = self.sum(after)
        tok = self.peek()
        if tok.kind not in COMPARISONS:
            return node, start, height
        self.i += 1
        right, _, right_height = self.sum(tok)
        if self.peek().kind in COMPARISONS:
            raise self.error("comparisons do not chain in matcalc: write `(a < b) * (b < c)`",
                             self.peek().pos)
        height = self.check_height(max(height, right_height) + 1, start)
        return BinOp(tok.kind, node, right, start, tok.pos), start, height

    def sum(self, after: _Token | None) -> _Parsed:
        # Both binary levels in one loop (fewer Python frames per nesting level). A chain
        # `a + b - c + …` (or `a * b @ c …`) is one level however long: readers walk it by
        # `chain`, without recursion.
        sum_op: _Token | None = None
        node: Expr | None = None
        start = height = 0
        while True:
            term, term_start, term_height = self.factor(after)
            links = 0
            while (tok := self.peek()).kind in ("*", "/", "@"):
                self.i += 1
                right, _, rh = self.factor(tok)
                term_height, links = max(term_height, rh), links + 1
                term = BinOp(tok.kind, term, right, term_start, tok.pos)
            term_height = self.check_height(term_height + (links > 0), term_start)
            if sum_op is None or node is None:
                node, start, height = term, term_start, term_height
            else:
                height = max(height, term_height)
                node = BinOp(sum_op.kind, node, term, start, sum_op.pos)
            tok = self.peek()
            if tok.kind not in ("+", "-"):
                return node, start, self.check_height(height + (sum_op is not None), start)
            self.i += 1
            sum_op = after = tok

    def factor(self, after: _Token | None) -> _Parsed:
        ops: list[_Token] = []
        while (tok := self.peek()).kind in ("+", "-"):
            self.i += 1
            ops.append(tok)
            if self.depth + len(ops) > MAX_DEPTH:
                raise self.too_deep(tok.pos)
            after = tok
        if not ops:
            return self.power(after)
        self.depth += len(ops)
        node, _, height = self.power(after)
        self.depth -= len(ops)
        for tok in reversed(ops):
            node = UnaryOp(tok.kind, node, tok.pos)
        return node, ops[0].pos, self.check_height(height + len(ops), ops[0].pos)

    def power(self, after: _Token | None) -> _Parsed:
        node, start, height = self.atom(after)
        while True:
            tok = self.peek()
            if tok.kind == ".":
                self.i += 1
                attr = self.peek()
                if attr.kind == "name" and attr.text in ("T", "mT"):
                    self.i += 1
                    height = self.check_height(height + 1, tok.pos)
                    node = Transpose(node, tok.pos, attr.text)
                elif attr.kind == "name":
                    module = isinstance(node, Name) and node.id in ARRAY_MODULES
                    raise self.error(
                        "attribute access is not part of matcalc; only `.T` and `.mT` "
                        "(transposes) are allowed",
                        attr.pos,
                        f"Drop the `{node.id}.` prefix: matcalc's functions are NumPy's, called "
                        "by name, as in `norm(x)`." if module else METHODS.get(
                            attr.text, f"If `{attr.text}` is a function, call it by name, as "
                            f"in `{attr.text}(x)`."),
                    )
                else:
                    raise self.error(
                        f"expected `T` after `.`, got {_describe(attr)}; "
                        "only `.T` and `.mT` (transposes) are allowed",
                        attr.pos,
                    )
            elif tok.kind == "(":
                raise self.error(
                    "only a plain name can be called, like `f(x)`", tok.pos, _MULTIPLY_HINT
                )
            elif tok.kind == "[":
                raise self.error(
                    "subscripts like `x[0]` are not part of the matcalc language", tok.pos
                )
            elif tok.kind == "**":
                self.i += 1
                self.enter(tok.pos)
                exponent, _, eh = self.factor(tok)
                self.depth -= 1
                height = self.check_height(max(height, eh) + 1, tok.pos)
                return BinOp("**", node, exponent, start, tok.pos), start, height
            else:
                return node, start, height

    def atom(self, after: _Token | None) -> _Parsed:
        tok = self.peek()
        if tok.kind == "name":
            if tok.text not in LITERALS:
                self.check_name(tok)
            self.i += 1
            if self.peek().kind == "(":
                return self.call(tok)
            return Name(tok.text, tok.pos), tok.pos, 0
        if tok.kind == "number":
            self.i += 1
            assert tok.value is not None
            return Number(tok.text, tok.value, tok.pos), tok.pos, 0
        if tok.kind == "string":
            self.i += 1
            return String(tok.text[1:-1], tok.pos), tok.pos, 0
        if tok.kind == "(":
            self.i += 1
            self.enter(tok.pos)
            if self.peek().kind == "eof":
                raise self.close_error(tok, self.peek(), "")
            inner, _, height = self.expr(tok)
            close = self.peek()
            if close.kind != ")":
                raise self.close_error(tok, close, "an operator or `)`")
            self.i += 1
            self.depth -= 1
            return inner, tok.pos, self.check_height(height + 1, tok.pos)
        if tok.kind == "[":
            raise self.error("lists are not part of the matcalc language", tok.pos,
                             "A list is only the arrays joined by concatenate, vstack and "
                             "hstack, as in `vstack([A, B])`.")
        raise self.expected_expression(after, tok)

    def array_list(self) -> _Parsed:
        """``[a, b, …]``, a call's argument: one or more expressions (a trailing comma allowed)."""
        opener = self.advance()
        self.enter(opener.pos)
        if self.peek().kind == "]":
            raise self.error("an empty list: it needs at least one array, as in `[A, B]`",
                             opener.pos)
        items: list[Expr] = []
        height = 0
        after = opener
        while True:
            item, _, item_height = self.expr(after)
            items.append(item)
            height = max(height, item_height)
            tok = self.advance()
            if tok.kind == "," and self.peek().kind == "]":
                tok = self.advance()
            if tok.kind == "]":
                break
            if tok.kind != ",":
                raise self.close_error(opener, tok, "an operator, `,` or `]`")
            after = tok
        self.depth -= 1
        return List(tuple(items), opener.pos), opener.pos, self.check_height(height + 1,
                                                                             opener.pos)

    def call(self, func: _Token) -> _Parsed:
        opener = self.advance()
        self.enter(opener.pos)
        args: list[Expr] = []
        kwargs: list[tuple[str, Expr, int]] = []
        height = 0
        after = opener
        while True:
            tok = self.peek()
            if tok.kind == ")":
                break
            if tok.kind == "eof":
                raise self.close_error(opener, tok, "")
            if tok.kind == "name" and self.tokens[self.i + 1].kind == "=":
                self.check_name(tok)
                if any(k == tok.text for k, _, _ in kwargs):
                    raise self.error(f"keyword argument `{tok.text}` given twice", tok.pos)
                equals = self.tokens[self.i + 1]
                self.i += 2
                value, _, vh = (self.array_list() if self.peek().kind == "["
                                else self.expr(equals))
                kwargs.append((tok.text, value, tok.pos))
            else:
                if kwargs and tok.kind not in ("eof", "newline", ";"):
                    raise self.error("positional argument after a keyword argument", tok.pos)
                value, _, vh = self.array_list() if tok.kind == "[" else self.expr(after)
                args.append(value)
            height = max(height, vh)
            tok = self.peek()
            if tok.kind == ",":
                self.i += 1
                after = tok
            elif tok.kind != ")":
                raise self.close_error(opener, tok, "an operator, `,` or `)`")
        self.i += 1
        self.depth -= 1
        height = self.check_height(height + 1, func.pos)
        return Call(func.text, tuple(args), tuple(kwargs), func.pos), func.pos, height


# --------------------------------------------------------------------------------------------
# Public entry points

COMPARISONS = ("<", ">", "<=", ">=")

LEVELS = ({"+", "-"}, {"*", "/", "@"}, set(COMPARISONS))
"""Left-associative operators of one precedence level: a chain of them is one level."""


def chain(e: BinOp) -> tuple[Expr, list[BinOp]]:
    """A left-deep chain ``a + b - c`` as its first operand and its links, left to right
    (each link a BinOp whose ``op`` and ``right`` apply next), found without recursion."""
    level = next(ops for ops in LEVELS if e.op in ops) if e.op != "**" else {"**"}
    links: list[BinOp] = []
    node: Expr = e
    single = e.op == "**" or e.op in COMPARISONS          # right-nested, or never chained
    while isinstance(node, BinOp) and node.op in level and (not single or not links):
        links.append(node)
        node = node.left
    return node, links[::-1]


def identifier(text: str, what: str) -> str:
    """``text`` if it is a name of the language (letters, digits, ``_``; not a Python keyword),
    else a MatcalcError saying which option gave it."""
    shown = text if len(text) <= 40 and text.isprintable() else repr(text[:40]) + "…"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise MatcalcError(f"{what} must be a name (letters, digits and `_`), got `{shown}`")
    if text in PYTHON_KEYWORDS:
        raise MatcalcError(f"{what}: `{text}` is a Python keyword, not a matcalc name")
    return text


def parse_program(source: str) -> Program:
    """Parse a whole program (statements separated by newlines or `;`)."""
    return _Parser(source).program()


def parse_expression(source: str) -> Expr:
    """Parse exactly one expression (surrounding blank lines and comments allowed)."""
    p = _Parser(source)
    while p.peek().kind == "newline":
        p.i += 1
    expr, _, _ = p.expr(None)
    while p.peek().kind == "newline":
        p.i += 1
    tok = p.peek()
    if tok.kind == "eof":
        return expr
    if tok.kind in (";", "=") or p.tokens[p.i - 1].kind == "newline":
        raise p.error(f"expected a single expression, got {_describe(tok)}", tok.pos)
    raise p.unexpected(tok, "an operator or the end of the expression")


_BINARY_PREC = {"<": 0, ">": 0, "<=": 0, ">=": 0, "+": 1, "-": 1, "*": 2, "/": 2, "@": 2,
                "**": 4}
_UNARY_PREC = 3
_POSTFIX_PREC = 5
_ATOM_PREC = 6


def _prec(e: Expr) -> int:
    if isinstance(e, BinOp):
        return _BINARY_PREC[e.op]
    if isinstance(e, UnaryOp):
        return _UNARY_PREC
    if isinstance(e, Transpose):
        return _POSTFIX_PREC
    return _ATOM_PREC


def _wrap(e: Expr, parens: bool) -> str:
    text = unparse(e)
    return f"({text})" if parens else text


def unparse(expr: Expr) -> str:
    """Canonical source text with minimal parentheses: ``parse_expression`` gives it back."""
    if isinstance(expr, Name):
        return expr.id
    if isinstance(expr, Number):
        return expr.text
    if isinstance(expr, String):
        return f'"{expr.value}"'
    if isinstance(expr, List):
        return "[" + ", ".join(unparse(item) for item in expr.items) + "]"
    if isinstance(expr, UnaryOp):
        return expr.op + _wrap(expr.operand, _prec(expr.operand) < _UNARY_PREC)
    if isinstance(expr, Transpose):
        operand = expr.operand
        parens = _prec(operand) < _POSTFIX_PREC or isinstance(operand, Number)
        return _wrap(operand, parens) + "." + expr.attr
    if isinstance(expr, BinOp):
        p = _BINARY_PREC[expr.op]
        if expr.op == "**":
            left = _wrap(expr.left, _prec(expr.left) <= p)
            right = _wrap(expr.right, _prec(expr.right) < _UNARY_PREC)
            return f"{left} {expr.op} {right}"
        if expr.op in COMPARISONS:
            return (f"{_wrap(expr.left, _prec(expr.left) <= p)} {expr.op} "
                    f"{_wrap(expr.right, _prec(expr.right) <= p)}")
        first, links = chain(expr)
        parts = [_wrap(first, _prec(first) < p)]
        parts += [f"{link.op} {_wrap(link.right, _prec(link.right) <= p)}" for link in links]
        return " ".join(parts)
    if isinstance(expr, Call):
        parts = [unparse(a) for a in expr.args]
        parts += [f"{k}={unparse(v)}" for k, v, _ in expr.kwargs]
        return f"{expr.func}({', '.join(parts)})"
    raise TypeError(f"not a matcalc expression: {expr!r}")
