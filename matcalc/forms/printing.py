"""Printers: matrix notation a learner recognises, as Unicode text or LaTeX.

One printer, two notations. Vectors are columns: ``A @ x`` prints ``A x``, ``x @ y`` prints
``xᵀ y``, ``outer(a, b)`` prints ``a bᵀ``. Elementwise products print ``⊙``; a scalar factor is
written in front (``2 x``, ``λ W``) unless it is a compound scalar such as ``det(X)``, written
after (``X⁻ᵀ det(X)``); constant and dimension denominators become ``/ N``.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import mpmath
import sympy

from matcalc.core.ir import (
    METHOD,
    OPERATIONS,
    Node,
    const,
    const_value,
    has_property,
    operator_name,
    postorder,
    shape_str,
)
from matcalc.core.simplify import negated, transpose

SUM, NEG, PRODUCT, MATMUL, POSTFIX, ATOM = 10, 20, 30, 35, 40, 50

SHORT = 200
"""Terms up to this many array nodes are ordered by their text."""

SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")

GREEK = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi pi rho sigma tau "
    "upsilon phi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega"
).split()
LATEX_ALIASES = {"lam": "lambda", "eps": "epsilon"}


@dataclass(frozen=True)
class Notation:
    """The symbols of one output language."""

    name: str
    minus: str
    hadamard: str
    transpose: str
    inverse: str
    inverse_transpose: str
    indicator: str
    at_most: str
    at_least: str
    epsilon: str
    norm: str
    frobenius: str
    delta: str
    identity: str
    ones: str
    kron: str
    sized_identity: str
    commutation: str
    diag_embedding: str
    func: Callable[[str, str], str]
    divide: Callable[[str, str], str]
    power: Callable[[str, sympy.Expr], str]
    hadamard_power: Callable[[str, str], str]
    scalar: Callable[[sympy.Expr], str]
    symbol: Callable[[str], str]


def _text_power(base: str, k: sympy.Expr) -> str:
    if k.is_Integer:
        return base + str(k).translate(SUPERSCRIPT)
    return f"{base}^({k})"


def compact(value: sympy.Expr) -> sympy.Expr | str:
    """A long number in scientific notation (``1e-5``, ``2.5e+12``); anything else as it is."""
    if not value.is_Rational or max(abs(value.p), value.q) < 10**4 or value.is_Integer:
        return value
    text = mpmath.nstr(mpmath.mpf(value.p) / value.q, 6, min_fixed=-4, max_fixed=6)
    return text.replace(".0e", "e")


def latex_number(text: str) -> str:
    """``1e-5`` as LaTeX writes it, ``10^{-5}`` (``2.5 \\times 10^{12}``); other text as is."""
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    power = f"10^{{{int(exponent)}}}"
    if mantissa in ("1", "-1"):
        return power if mantissa == "1" else f"-{power}"
    return rf"{mantissa} \times {power}"


def decimal_text(value: sympy.Expr) -> str | None:
    """A fraction with a long denominator of 2s and 5s as the decimal it is written as
    (``0.044715``), when that takes at most 8 digits; None otherwise."""
    if not value.is_Rational or value.is_Integer or value.q < 100:
        return None
    q = int(value.q)
    while q % 10 == 0:
        q //= 10
    while q % 2 == 0 or q % 5 == 0:
        q //= 2 if q % 2 == 0 else 5
    if q != 1:
        return None
    text = format(decimal.Decimal(int(value.p)) / decimal.Decimal(int(value.q)), "f")
    if len(text.replace("-", "").replace(".", "").lstrip("0")) > 8:
        return None
    small = compact(value)
    return small if abs(value) < sympy.Rational(1, 1000) and isinstance(small, str) else text


def text_scalar(value: sympy.Expr) -> str:
    """A number or scalar formula as the text notation writes it: `√2/(2 √π)`, `σ² (π − 1)`."""
    value = compact(value)
    if isinstance(value, str):
        return value
    text = sympy.sstr(value).replace("**", "^").replace("*", " ")
    text = re.sub(r"\bpi\b", "π", text)
    text = re.sub(r"\^(\d)\b", lambda m: m.group(1).translate(SUPERSCRIPT), text)
    text = re.sub(r"Abs\((\w+)\)", r"|\1|", text)
    return re.sub(r"sqrt\((\w+)\)", r"√\1", text)


def latex_symbol(name: str) -> str:
    """``W1`` → ``W_{1}``, ``theta`` → ``\\theta``, ``lam`` → ``\\lambda``."""
    match = re.fullmatch(r"([A-Za-z]+)_?(\d*)", name)
    if not match:
        return r"\mathrm{" + name.replace("_", r"\_") + "}"
    stem, digits = match.groups()
    stem = LATEX_ALIASES.get(stem, stem)
    if stem in GREEK:
        stem = "\\" + stem
    elif len(stem) > 1:
        stem = r"\mathrm{" + stem + "}"
    return stem + (f"_{{{digits}}}" if digits else "")


TEXT = Notation(
    name="text",
    minus="−",
    hadamard=" ⊙ ",
    transpose="ᵀ",
    inverse="⁻¹",
    inverse_transpose="⁻ᵀ",
    indicator="1[{}]",
    at_most="≤",
    at_least="≥",
    epsilon="ε={}",
    norm="‖{}‖",
    frobenius="‖{}‖_F",
    delta="δ{}",
    identity="I",
    ones="𝟙",
    kron=" ⊗ ",
    sized_identity="I_{}",
    commutation="K_({},{})",
    diag_embedding="E_{}",
    func=lambda f, args: f"{f}({args})",
    divide=lambda num, den: f"{num} / {den}",
    power=_text_power,
    hadamard_power=lambda base, k: f"{base}^⊙{k}",
    scalar=text_scalar,
    symbol=lambda name: name,
)

LATEX = Notation(
    name="latex",
    minus="-",
    hadamard=r" \odot ",
    transpose=r"^{\top}",
    inverse="^{-1}",
    inverse_transpose=r"^{-\top}",
    indicator=r"\mathbb{{1}}\left[{}\right]",
    at_most=r"\le",
    at_least=r"\ge",
    epsilon=r"\varepsilon={}",
    norm=r"\left\lVert {} \right\rVert",
    frobenius=r"\left\lVert {} \right\rVert_F",
    delta=r"\delta_{{{}}}",
    identity="I",
    ones=r"\mathbf{1}",
    kron=r" \otimes ",
    sized_identity="I_{{{}}}",
    commutation="K_{{{},{}}}",
    diag_embedding="E_{{{}}}",
    func=lambda f, args: rf"\sqrt{{{args}}}" if f == r"\sqrt" else rf"{f}\left({args}\right)",
    divide=lambda num, den: rf"\frac{{{num}}}{{{den}}}",
    power=lambda base, k: f"{base}^{{{sympy.latex(k)}}}",
    hadamard_power=lambda base, k: rf"{base}^{{\odot {k}}}",
    scalar=lambda value: latex_number(compact(value)) if isinstance(compact(value), str)
    else sympy.latex(value),
    symbol=latex_symbol,
)

class Printer:
    """Formats IR nodes in one notation; results are memoised per node."""

    def __init__(self, notation: Notation, names: frozenset[str] = frozenset()) -> None:
        self.n = notation
        self.names = names
        """The program's names: an identity is written ``I_n`` when the user has an ``I``."""
        self.memo: dict[Node, tuple[str, int]] = {}

    def __call__(self, node: Node) -> str:
        if node not in self.memo and any(a not in self.memo for a in node.args):
            for n in postorder([node], stop=lambda n: n in self.memo or n.op == "named"):
                self.fmt(n)                              # children first: no deep recursion
        return self.fmt(node)[0]

    # -- helpers ---------------------------------------------------------------------------

    def fmt(self, node: Node) -> tuple[str, int]:
        found = self.memo.get(node)
        if found is None:
            method = getattr(self, "p_" + node.op, None) or self.p_function
            found = self.memo[node] = method(node)
        return found

    def wrap(self, node: Node, level: int) -> str:
        """``node``'s text, parenthesised when it binds looser than ``level``."""
        text, prec = self.fmt(node)
        if prec < level:
            return rf"\left({text}\right)" if self.n is LATEX else f"({text})"
        return text

    def call(self, op: str, *parts: str) -> tuple[str, int]:
        """``op(parts)`` with the operation's name in this notation (``tr``, ``\\det``)."""
        definition = OPERATIONS.get(op)           # argmax is printed, never computed
        written = getattr(definition, self.n.name) if definition else METHOD
        if written == METHOD:
            written = op if self.n is TEXT else operator_name(op)
        return self.n.func(written, ", ".join(parts)), ATOM

    def axis_part(self, axis: int | None, default: int | None) -> list[str]:
        return [] if axis == default else [self.keyword("axis", axis)]

    def all_ones(self) -> str:
        """𝟙𝟙ᵀ (with a thin space in LaTeX, where 11ᵀ would read as eleven)."""
        joint = r"\," if self.n is LATEX else ""
        return self.n.ones + joint + self.n.ones + self.n.transpose

    def size_list(self, shape: tuple) -> str:
        """``[B, T, h·k]``, as the shapes beside results print it."""
        if self.n is TEXT:
            return shape_str(shape)
        return "[" + ", ".join(self.n.scalar(d) for d in shape) + "]"

    def keyword(self, name: str, value: object) -> str:
        """``axis=1``: upright in LaTeX, where letters would be read as variables."""
        return rf"\text{{{name}}}={value}" if self.n is LATEX else f"{name}={value}"

    # -- leaves ----------------------------------------------------------------------------

    def p_var(self, node: Node) -> tuple[str, int]:
        if self.n is LATEX and has_property(node, "differential"):    # dW1 as d W₁
            return r"\mathrm{d}" + self.n.symbol(node.attrs.name[1:]), ATOM
        return self.n.symbol(node.attrs.name), ATOM

    p_named = p_var

    def p_delta(self, node: Node) -> tuple[str, int]:
        return self.n.delta.format(node.attrs.label), ATOM

    def p_const(self, node: Node) -> tuple[str, int]:
        value = node.attrs.value
        if value.is_negative:
            return self.n.minus + self.n.scalar(-value), NEG
        text = self.n.scalar(value)
        return text, ATOM if (value.is_Atom or value.is_Function) else PRODUCT

    def p_zeros(self, node: Node) -> tuple[str, int]:
        return "0", ATOM

    def p_identity(self, node: Node) -> tuple[str, int]:
        if "I" in self.names:
            return self.sized_identity(node.attrs.n), ATOM
        return self.n.identity, ATOM

    # -- sums and products -----------------------------------------------------------------

    @cached_property
    def weigher(self) -> Weigher:
        return Weigher()

    def term_order(self, term: Node) -> tuple:
        """Positive terms first, bigger ones first; ``A`` before ``Aᵀ``; then alphabetically
        (long terms by when they were made: their text would cost more than it tells)."""
        coefficient = term.args[0] if term.op == "mul" else term
        negative = bool(coefficient.op == "const" and const_value(coefficient).is_negative)
        weight, transposes = self.weigher(term)
        tie = self(term) if weight <= SHORT else f"\uffff{term.serial:012d}"
        return (negative, -weight, transposes, tie)

    def ordered_terms(self, node: Node) -> list[Node]:
        """The terms of a sum in reading order."""
        return sorted(node.args, key=self.term_order)

    def p_add(self, node: Node) -> tuple[str, int]:
        step, holds = mask_of(node)
        if step is not None:                      # 1 − 1[u > 0] is 1[u ≤ 0]
            return self.n.indicator.format(self.comparison(step.args[0], holds)), ATOM
        parts: list[str] = []
        for i, term in enumerate(self.ordered_terms(node)):
            negative, text = self.signed_term(term)
            text = self.broadcast_term(text, term, node)
            if i == 0:
                parts.append(self.n.minus + text if negative else text)
            else:
                parts.append((f" {self.n.minus} " if negative else " + ") + text)
        return "".join(parts), SUM

    def broadcast_term(self, text: str, term: Node, total: Node) -> str:
        """A part that NumPy repeats to fill a matrix: ``𝟙 wᵀ`` (a row), ``w 𝟙ᵀ`` (a column),
        ``c 𝟙𝟙ᵀ`` (a number). A vector stays as written: NumPy adds it to every row."""
        if total.rank != 2 or term.shape == total.shape or term.rank == 1:
            return text
        if term.op == "expand" and term.attrs.axis == 1:    # a vector as a column
            text = self.wrap(term.args[0], ATOM)
        elif not text.startswith("(") and not one_call(text):
            text = f"({text})" if " " in text else text
        ones, ones_row = self.n.ones, self.n.ones + self.n.transpose
        rows, cols = (d != 1 for d in total.shape)
        if term.rank == 0 or term.shape == (1, 1):
            pattern = {(True, True): self.all_ones(), (True, False): ones, (False, True): ones_row}
            if not (rows or cols):
                return text
            if text == "1":
                return pattern[(rows, cols)]
            text = f"({text})" if "/" in text and not text.startswith("(") else text
            return f"{text} {pattern[(rows, cols)]}"
        if term.shape[0] == 1 and rows:
            return f"{ones} {text}"
        return f"{text} {ones_row}"

    def signed_term(self, term: Node) -> tuple[bool, str]:
        """A term's sign and the text of its magnitude."""
        if term.op == "mul" and term.args[0].op == "const":
            value = const_value(term.args[0])
            if value.is_negative:
                return True, self.product_text(-value, term.args[1:])[0]
        if term.op == "const" and const_value(term).is_negative:
            return True, self.n.scalar(-const_value(term))
        return False, self.wrap(term, SUM + 1)

    def p_mul(self, node: Node) -> tuple[str, int]:
        factors = node.args
        coefficient = sympy.Integer(1)
        if factors[0].op == "const":
            coefficient, factors = const_value(factors[0]), factors[1:]
        if coefficient.is_negative:
            text, _ = self.product_text(-coefficient, factors, node)
            return self.n.minus + text, NEG
        return self.product_text(coefficient, factors, node)

    def product_text(self, coefficient: sympy.Expr, factors: tuple[Node, ...],
                     total: Node | None = None) -> tuple[str, int]:
        """``c · f₁ ⊙ f₂ …`` with negative powers and denominators of ``c`` after ``/``; a
        factor NumPy repeats to fill the matrix ``total`` shows how (``v 𝟙ᵀ``)."""
        num, den = sympy.fraction(sympy.factor_terms(coefficient))
        lead, arrays, trail, below = [], [], [], []
        decimal = decimal_text(coefficient)
        if decimal is not None and self.n is LATEX:
            decimal = latex_number(decimal)
        if decimal is not None:                       # 0.044715 x³, not 8943 x³ / 200000
            lead.append(decimal)
            num = den = sympy.Integer(1)
        if num != 1:
            lead.append(self.scalar_factor(num))
        if den != 1:
            below.append(self.scalar_factor(den))
        for factor in factors:
            if factor.op == "pow" and const_value(factor.args[1]) is not None and (
                const_value(factor.args[1]).is_negative
            ):
                k = -const_value(factor.args[1])
                below.append(self.wrap(factor.args[0], PRODUCT + 1)
                             if k == 1 else self.elementwise_power(factor.args[0], k))
            elif not factor.shape:
                called = self.fmt(factor)[1] == ATOM and bool(factor.args)
                level = ATOM if factor.op == "matmul" else PRODUCT + 1   # (aᵀ x) I, not aᵀ x I
                (trail if called else lead).append(self.wrap(factor, level))
            else:
                arrays.append(factor)
        arrays.sort(key=lambda a: a.op == "step")
        level = MATMUL + 1 if len(arrays) > 1 else MATMUL
        texts = [self.wrap(a, level) for a in arrays]
        if total is not None and len(arrays) > 1:
            texts = [self.broadcast_term(t, a, total) if a.rank == 2 else t
                     for t, a in zip(texts, arrays, strict=True)]
        array_text = self.n.hadamard.join(texts)
        numerator = juxtaposed([p for p in [*lead, array_text, *trail] if p]) or "1"
        if not below:
            return numerator, PRODUCT
        denominator = below[0] if len(below) == 1 else "(" + " ".join(below) + ")"
        if self.n is LATEX:                   # \frac{a − b}{D N}: the bar groups them
            denominator = " ".join(below) if len(below) > 1 or den == 1 else self.n.scalar(den)
            if len(arrays) == 1 and not lead and not trail:
                numerator = self.fmt(arrays[0])[0]
        return self.n.divide(numerator, denominator), PRODUCT

    def scalar_factor(self, value: sympy.Expr) -> str:
        text = self.n.scalar(value)
        simple = value.is_Atom or value.is_Function or value.is_Pow and value.base.is_Atom
        return text if simple else f"({text})"

    def p_pow(self, node: Node) -> tuple[str, int]:
        base, k = node.args
        value = const_value(k)
        if value is None:
            return self.elementwise_power(base, self.wrap(k, ATOM)), POSTFIX
        if value.is_negative:
            return self.product_text(sympy.Integer(1), (node,))
        if value == sympy.Rational(1, 2):
            return self.call("sqrt", self(base))
        return self.elementwise_power(base, value), POSTFIX

    def elementwise_power(self, base: Node, k: sympy.Expr | str) -> str:
        """xᵏ entry by entry; of a square matrix A^⊙k, since Aᵏ would read as the matrix
        power."""
        if hadamard_power(base):
            if isinstance(k, str):
                exponent = k
            elif k.is_Integer or self.n is LATEX:
                exponent = self.n.scalar(k)
            else:
                exponent = f"({self.n.scalar(k)})"
            return self.n.hadamard_power(self.wrap(base, ATOM), exponent)
        if isinstance(k, str):
            return f"{self.wrap(base, ATOM)}^{k}"
        return self.n.power(self.wrap(base, ATOM), k)

    # -- matrix algebra --------------------------------------------------------------------

    def p_matmul(self, node: Node) -> tuple[str, int]:
        a, b = node.args
        left = self.wrap(a, MATMUL)
        if a.rank == 1 and a.op == "matmul" and a.args[0].rank == 2:
            left = self.quadratic_form_left(*a.args)
        elif a.rank == 1:
            left = self.wrap(a, ATOM) + self.n.transpose
        right = self.wrap(b, MATMUL + 1 if b.op not in ("matmul", "outer") else MATMUL)
        return f"{left} {right}", MATMUL

    def quadratic_form_left(self, m: Node, v: Node) -> str:
        """``(M v)ᵀ`` written ``vᵀ Mᵀ``, so ``(Aᵀ x)ᵀ y`` reads ``xᵀ A y``."""
        return f"{self.wrap(v, ATOM)}{self.n.transpose} {self.wrap(transpose(m), MATMUL)}"

    def p_outer(self, node: Node) -> tuple[str, int]:
        """a bᵀ; (M c) bᵀ is M c bᵀ (matrix products associate)."""
        a, b = node.args
        left = self.wrap(a, MATMUL if a.op == "matmul" else POSTFIX)
        return f"{left} {self.wrap(b, ATOM)}{self.n.transpose}", MATMUL

    def p_weighted_gram(self, node: Node) -> tuple[str, int]:
        """Xᵀ diag(d) X + s I."""
        x, d, s = node.args
        xt = self.wrap(x, POSTFIX) + self.n.transpose
        text = f"{xt} {self.call('diag', self(d))[0]} {self.wrap(x, MATMUL + 1)}"
        if const_value(s) == 0:
            return text, MATMUL
        return f"{text} + {self.wrap(s, PRODUCT + 1)} {self.n.identity}", SUM

    def p_kron(self, node: Node) -> tuple[str, int]:
        a, b = (self.kron_operand(x) for x in node.args)
        return f"{a}{self.n.kron}{b}", PRODUCT

    def kron_operand(self, x: Node) -> str:
        """An operand of ⊗; identities show their size (``I_p``), products are bracketed."""
        if x.op == "identity":
            return self.sized_identity(x.attrs.n)
        return self.wrap(x, MATMUL + 1)

    def sized_identity(self, n: sympy.Expr) -> str:
        """``I_n``; ``I_(m n)`` for a size that is a product or a sum."""
        size = self.n.scalar(n)
        return self.n.sized_identity.format(size if n.is_Atom or self.n is LATEX
                                            else f"({size})")

    def p_diag_embedding(self, node: Node) -> tuple[str, int]:
        return self.n.diag_embedding.format(self.n.scalar(node.attrs.n)), ATOM

    def p_commutation(self, node: Node) -> tuple[str, int]:
        rows, cols = (self.n.scalar(d) for d in node.attrs)
        return self.n.commutation.format(rows, cols), ATOM

    def p_reshape(self, node: Node) -> tuple[str, int]:
        """``reshape(X, [B, T, h, k])``."""
        shape = self.size_list(node.attrs.shape)
        return self.call("reshape", self(node.args[0]), shape)

    def p_take(self, node: Node) -> tuple[str, int]:
        """``E[y]``: the rows of E at the labels y."""
        table, labels = node.args
        return f"{self.wrap(table, ATOM)}[{self(labels)}]", POSTFIX

    def p_scatter_rows(self, node: Node) -> tuple[str, int]:
        """``scatter_add(G, y)``: G's rows added at their labels into a zero table."""
        return self.call("scatter_add", self(node.args[0]), self(node.args[1]))

    def p_einsum(self, node: Node) -> tuple[str, int]:
        """``einsum("bi,bj->bij", x, y)``, as NumPy writes it."""
        return self.call("einsum", f'"{node.attrs.spec}"', *(self(x) for x in node.args))

    def p_permute(self, node: Node) -> tuple[str, int]:
        """``swapaxes(X, 1, 2)`` for two axes exchanged, else ``transpose(X, (2, 0, 1))``."""
        axes = node.attrs.axes
        moved = [k for k, axis in enumerate(axes) if axis != k]
        if len(moved) == 2:
            return self.call("swapaxes", self(node.args[0]), *map(str, moved))
        return self.call("transpose", self(node.args[0]), str(tuple(axes)))

    def p_transpose(self, node: Node) -> tuple[str, int]:
        (x,) = node.args
        if x.op == "inv":
            return self.wrap(x.args[0], ATOM) + self.n.inverse_transpose, POSTFIX
        return self.wrap(x, ATOM) + self.n.transpose, POSTFIX

    def p_inv(self, node: Node) -> tuple[str, int]:
        return self.wrap(node.args[0], ATOM) + self.n.inverse, POSTFIX

    def p_tril(self, node: Node) -> tuple[str, int]:
        """``tril(X)``, ``triu(X, 1)``: the diagonal offset only when there is one."""
        k = node.attrs.k
        return self.call(node.op, self(node.args[0]), *([str(k)] if k else []))

    p_triu = p_tril

    def p_sym(self, node: Node) -> tuple[str, int]:
        """(X + Xᵀ) / 2, the symmetric part."""
        x = self.wrap(node.args[0], POSTFIX)
        return self.n.divide(self.wrap_text(f"{x} + {x}{self.n.transpose}"), "2"), PRODUCT

    def wrap_text(self, text: str) -> str:
        return rf"\left({text}\right)" if self.n is LATEX else f"({text})"

    def p_solve(self, node: Node) -> tuple[str, int]:
        """A⁻¹ B, as the books write the solution of A X = B."""
        a, b = node.args
        inverse = self.n.inverse_transpose if a.op == "transpose" else self.n.inverse
        base = a.args[0] if a.op == "transpose" else a
        return f"{self.wrap(base, ATOM)}{inverse} {self.wrap(b, MATMUL + 1)}", MATMUL

    def p_matrix_power(self, node: Node) -> tuple[str, int]:
        return self.n.power(self.wrap(node.args[0], ATOM), sympy.Integer(node.attrs.k)), POSTFIX

    def p_norm(self, node: Node) -> tuple[str, int]:
        (x,) = node.args
        template = self.n.frobenius if x.rank == 2 else self.n.norm
        return template.format(self(x)), ATOM

    def p_nuclear_norm(self, node: Node) -> tuple[str, int]:
        """‖X‖_*, the sum of the singular values."""
        return self.n.norm.format(self(node.args[0])) + "_*", ATOM

    def p_spectral_norm(self, node: Node) -> tuple[str, int]:
        """‖X‖₂, the largest singular value."""
        return self.n.norm.format(self(node.args[0])) + ("_2" if self.n is LATEX else "₂"), ATOM

    def p_pinv(self, node: Node) -> tuple[str, int]:
        """A⁺, the Moore–Penrose pseudo-inverse."""
        return self.wrap(node.args[0], ATOM) + ("^{+}" if self.n is LATEX else "⁺"), POSTFIX

    def p_concat(self, node: Node) -> tuple[str, int]:
        """Blocks stacked: ``[A; B]`` down (axis 0), ``[A, B]`` across (axis 1)."""
        parts = [self(block) for block in node.args]
        if self.n is LATEX:
            joiner = r" \\ " if node.attrs.axis == 0 else " & "
            return r"\begin{bmatrix} " + joiner.join(parts) + r" \end{bmatrix}", ATOM
        return "[" + ("; " if node.attrs.axis == 0 else ", ").join(parts) + "]", ATOM

    def p_slice(self, node: Node) -> tuple[str, int]:
        """``G[n:n + m, :]``: the block of entries start … stop − 1 along the axis."""
        axis, start, stop = node.attrs
        cut = f"{self.n.scalar(start)}:{self.n.scalar(stop)}"
        index = ", ".join(cut if k == axis else ":" for k in range(node.rank))
        return f"{self.wrap(node.args[0], ATOM)}[{index}]", POSTFIX

    def p_block_sums(self, node: Node) -> tuple[str, int]:
        """``block_sums(X, [p, q])``: the sum of each p×q block of X."""
        _, _, p, q = (self.n.scalar(d) for d in node.attrs)
        return self.call(node.op, self(node.args[0]), f"[{p}, {q}]")

    def p_sum_of_blocks(self, node: Node) -> tuple[str, int]:
        """``sum_of_blocks(X, [m, n])``: X's m×n grid of blocks added up."""
        m, n, _, _ = (self.n.scalar(d) for d in node.attrs)
        return self.call(node.op, self(node.args[0]), f"[{m}, {n}]")

    def p_step(self, node: Node) -> tuple[str, int]:
        return self.n.indicator.format(self.comparison(node.args[0])), ATOM

    def comparison(self, u: Node, holds: bool = True) -> str:
        """``u > 0`` (``u ≤ 0`` where it does not hold) as the comparison it is: ``x > y`` for
        u = x − y, ``x > 1`` for x − 1, ``x < 0`` for −x, ``x < 1`` for 1 − x."""
        relation = ">" if holds else self.n.at_most
        if negated(u) is not None:                     # −x > 0 is x < 0
            u, relation = negated(u), self.mirrored(relation)
        if u.op == "add" and len(u.args) == 2:
            for left, right in (u.args, u.args[::-1]):
                bound = const(-const_value(right)) if right.op == "const" else negated(right)
                if bound is None or left.op == "const":
                    continue
                if negated(left) is not None and bound.op == "const":   # 1 − x > 0: x < 1
                    flipped = const(-const_value(bound))
                    return f"{self(negated(left))} {self.mirrored(relation)} {self(flipped)}"
                return f"{self(left)} {relation} {self(bound)}"
        return f"{self(u)} {relation} 0"

    def mirrored(self, relation: str) -> str:
        """The relation with its sides swapped: x > y is y < x."""
        pairs = [(">", "<"), (self.n.at_most, self.n.at_least)]
        return {**dict(pairs), **{b: a for a, b in pairs}}[relation]

    def p_where(self, node: Node) -> tuple[str, int]:
        """where(x > y, a, b): a 0/1 condition written as its comparison."""
        c, a, b = node.args
        step, holds = mask_of(c)
        condition = self.comparison(step.args[0], holds) if step is not None else self(c)
        return self.call("where", condition, self(a), self(b))

    def p_sum(self, node: Node) -> tuple[str, int]:
        axis, keepdims = node.attrs
        x = node.args[0]
        if x.rank == 2 and axis == 1 and x.shape[1] == 1 and not keepdims:
            return self.fmt(x)                    # a column summed across: its entries
        if node.args[0].rank == 1:                # a vector's sum, kept as [1] or not
            axis, keepdims = None, False
        axes, summed = summed_axes(node)
        if len(axes) > 1:                         # sum(sum(E, axis=0), axis=0): over (0, 1)
            return self.call("sum", self(summed), self.keyword("axis", axes))
        parts = [self(node.args[0]), *self.axis_part(axis, None)]
        return self.call("sum", *parts, *([self.keyword("keepdims", True)] if keepdims else []))

    def p_expand(self, node: Node) -> tuple[str, int]:
        (axis,) = node.attrs
        if axis == 0 and node.rank == 2:                  # a vector as a row
            return self.wrap(node.args[0], ATOM) + self.n.transpose, POSTFIX
        if axis == 1 and node.rank == 2:                  # a vector as a column: itself
            return self.fmt(node.args[0])
        index = ", ".join("None" if i == axis else ":" for i in range(node.rank))
        return f"{self.wrap(node.args[0], ATOM)}[{index}]", POSTFIX

    def p_broadcast(self, node: Node) -> tuple[str, int]:
        """Broadcasting as products with ones: ``c 𝟙``, ``𝟙𝟙ᵀ``, ``𝟙 vᵀ`` (rows), ``v 𝟙ᵀ``."""
        (x,) = node.args
        ones, ones_row = self.n.ones, self.n.ones + self.n.transpose
        if not x.shape:
            pattern = {(False, False): self.all_ones(), (True, False): ones_row,
                       (False, True): ones, (True, True): ""}[
                (node.shape[-2] == 1, node.shape[-1] == 1)] if node.rank >= 2 else ones
            if not pattern:                                  # a 1×1 matrix holding x
                return self.fmt(x)
            if const_value(x) == 1:
                return pattern, ATOM
            return f"{self.wrap(x, PRODUCT + 1)} {pattern}", PRODUCT
        if node.rank == 2 and x.rank == 2 and x.shape == (1, 1):  # a 1×1 matrix repeated
            return self.broadcast_term(self.wrap(x, PRODUCT + 1), x, node), PRODUCT
        if node.rank == 2 and x.shape[-1] == node.shape[1] and x.shape[0] != node.shape[0]:
            if x.rank == 2 and x.op != "expand":                 # a row repeated down
                return f"{ones} {self.wrap(x, MATMUL + 1)}", MATMUL
            row = x.args[0] if x.op == "expand" else x
            return f"{ones} {self.wrap(row, ATOM)}{self.n.transpose}", MATMUL
        if node.rank == 2 and x.rank == 2 and x.shape[1] != node.shape[1]:
            column = x.args[0] if x.op == "expand" else x        # a column repeated across
            return f"{self.wrap(column, MATMUL + 1)} {ones_row}", MATMUL
        shape = self.size_list(node.attrs.shape)
        return self.call("broadcast", self(node.args[0]), shape)

    def p_softmax(self, node: Node) -> tuple[str, int]:
        return self.call(node.op, self(node.args[0]), *self.axis_part(node.attrs.axis, -1))

    p_log_softmax = p_softmax

    def p_logsumexp(self, node: Node) -> tuple[str, int]:
        return self.call(node.op, self(node.args[0]), *self.axis_part(node.attrs.axis, None))

    p_max = p_min = p_prod = p_prod_others = p_logsumexp

    def p_standardize(self, node: Node) -> tuple[str, int]:
        """``standardize(x, axis=2, ε=1e-5)``: (x − mean) / √(variance + ε) along the axis."""
        eps, _ = self.fmt(const(node.attrs.eps))
        return self.call("standardize", self(node.args[0]), self.keyword("axis", node.attrs.axis),
                         self.n.epsilon.format(eps))

    def p_first_max(self, node: Node) -> tuple[str, int]:
        """``1[argmax(x)]``: 1 at the (first) largest entry, 0 elsewhere (``argmin(x)`` for −x)."""
        x, which = node.args[0], "argmax"
        if x.op == "mul" and len(x.args) == 2 and const_value(x.args[0]) == -1:
            x, which = x.args[1], "argmin"
        inner, _ = self.call(which, self(x), *self.axis_part(node.attrs.axis, None))
        return self.n.indicator.format(inner), ATOM

    def p_onehot(self, node: Node) -> tuple[str, int]:
        return self.call("onehot", self(node.args[0]))

    def p_function(self, node: Node) -> tuple[str, int]:
        return self.call(node.op, *(self(a) for a in node.args),
                         *(str(a) for a in node.attrs))


class Weigher:
    """Array nodes in an expression tree (transposes not counted), and its transposes.

    Named intermediates count as leaves; scalar factors weigh nothing, so ``δ hᵀ + λ W``.
    """

    CAP = 10**6

    def __init__(self) -> None:
        self.memo: dict[Node, tuple[int, int]] = {}

    def __call__(self, node: Node) -> tuple[int, int]:
        if node not in self.memo:                        # children first, without recursion
            for n in postorder([node], stop=lambda n: n in self.memo or n.op == "named"):
                if n not in self.memo:
                    self.memo[n] = self.weigh(n)
        return self.memo[node]

    def weigh(self, node: Node) -> tuple[int, int]:
        weight = int(bool(node.shape) and node.op != "transpose")
        transposes = int(node.op == "transpose")
        for arg in node.args if node.op != "named" else ():
            w, t = self.memo[arg]
            weight, transposes = weight + w, transposes + t
        return min(weight, self.CAP), min(transposes, self.CAP)


def hadamard_power(base: Node) -> bool:
    """Whether an entrywise power of ``base`` could be mistaken for a matrix power: ``base`` is
    a square matrix (or a stack of them)."""
    return base.rank >= 2 and base.shape[-1] == base.shape[-2]


def mask_of(node: Node) -> tuple[Node | None, bool]:
    """``(1[u > 0], True)`` for that mask, ``(1[u > 0], False)`` for 1 − 1[u > 0], else
    ``(None, True)``."""
    if node.op == "step":
        return node, True
    if node.op == "add" and len(node.args) == 2:
        for one, other in (node.args, node.args[::-1]):
            step = negated(other)
            if const_value(one) == 1 and step is not None and step.op == "step":
                return step, False
    return None, True


def one_call(text: str) -> bool:
    """Whether ``text`` is one function call, ``sum(G ⊙ g, axis=1)``, which needs no brackets."""
    head = re.match(r"\w+\(", text)
    if head is None or not text.endswith(")"):
        return False
    depth = 0
    for i, char in enumerate(text[head.end() - 1:], head.end() - 1):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return i == len(text) - 1
    return False


def to_text(node: Node) -> str:
    """Unicode matrix notation: ``(A + Aᵀ) x``."""
    return Printer(TEXT)(node)


def readable_repr(node: Node) -> str:
    """A node as the debugger shows it once the printers are loaded: ``<add (A + Aᵀ) x [n]>``."""
    return f"<{node.op} {to_text(node)} {shape_str(node.shape)}>"


Node.__repr__ = readable_repr


def juxtaposed(parts: list[str]) -> str:
    """Factors side by side, as products are written; a dot between two digits, so that
    2 · 1[x > 0] does not read as 21[x > 0]."""
    text = ""
    for part in parts:
        gap = " · " if text[-1:].isdigit() and part[:1].isdigit() else " "
        text = f"{text}{gap}{part}" if text else part
    return text


def summed_axes(node: Node) -> tuple[tuple[int, ...], Node]:
    """The axes of the innermost array a nest of sums (none keeping dims) adds up, in that
    array's numbering, and the array: ``sum(sum(E, 0), 0)`` is E summed over (0, 1)."""
    axes: list[int] = []
    while node.op == "sum" and node.attrs[0] is not None and not node.attrs[1]:
        inner = node.attrs[0]
        axes = sorted([inner, *(a + (a >= inner) for a in axes)])
        node = node.args[0]
    return tuple(axes), node
