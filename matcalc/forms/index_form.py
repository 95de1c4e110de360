"""Index form: each entry of a Jacobian J = ∂vec(F)/∂vec(X) in Kronecker form, written as a
person writes it (``∂Fᵢⱼ/∂Xₖₗ = Aᵢₖ Bₗⱼ``): the Kronecker algebra is expanded into entries
and Kronecker deltas, and the deltas are then eliminated, as one does by hand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from matcalc.core.ir import ONE, Node, as_matrix, const_value
from matcalc.core.simplify import split_scalars
from matcalc.forms.printing import TEXT, to_text

SUB = str.maketrans("ijklmnoprstuv", "ᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥ")
SUMMATION = "mnoprstuv"


@dataclass
class Term:
    """One product of entries and Kronecker deltas, summed over ``summed``."""

    coefficient: sympy.Expr = sympy.Integer(1)
    factors: list[tuple] = field(default_factory=list)      # ("δ", a, b) or ("A", node, idx)
    summed: list[str] = field(default_factory=list)

    def times(self, other: Term) -> Term:
        return Term(self.coefficient * other.coefficient, self.factors + other.factors,
                    self.summed + other.summed)


def dims(shape: tuple) -> tuple:
    """A shape's sizes other than 1: the indices an entry needs."""
    return tuple(d for d in as_matrix(shape) if d != ONE)


def factorization(node: Node, side: int) -> tuple | None:
    """How the rows (side 0) or columns (side 1) of a vec-form matrix split into indices."""
    if node.op == "kron":
        p, q = node.args
        return dims((as_matrix(q.shape)[side], as_matrix(p.shape)[side]))
    if node.op == "commutation":
        rows, cols = node.attrs
        return dims((cols, rows) if side == 0 else (rows, cols))
    if node.op == "diag_embedding":
        n = node.attrs.n
        return (n, n) if side == 0 else (n,)
    if node.op == "diag":
        inner = node.args[0]
        return dims(inner.args[0].shape) if inner.op == "vec" else dims(inner.shape)
    if node.op == "transpose":
        return factorization(node.args[0], 1 - side)
    if node.op == "matmul":
        return factorization(node.args[side], side)
    if node.op in ("mul", "add"):
        found = [factorization(a, side) for a in node.args if a.shape]
        return next((f for f in found if f is not None), None)
    return None


class IndexExpander:
    """Expands a vec-form node into terms over given row and column indices."""

    def __init__(self) -> None:
        self.fresh = iter(SUMMATION)

    def __call__(self, node: Node, rows: tuple, cols: tuple) -> list[Term] | None:
        method = getattr(self, "x_" + node.op, None)
        return None if method is None else method(node, rows, cols)

    def x_kron(self, node: Node, rows: tuple, cols: tuple) -> list[Term]:
        p, q = node.args                       # (P ⊗ Q)[(i, j), (k, l)] = Q_ik P_jl
        q_rows, q_cols = (len(dims((as_matrix(q.shape)[s],))) for s in (0, 1))
        return [Term(factors=[*entries(q, rows[:q_rows], cols[:q_cols]),
                              *entries(p, rows[q_rows:], cols[q_cols:])])]

    def x_commutation(self, node: Node, rows: tuple, cols: tuple) -> list[Term]:
        if len(rows) < 2:
            return self.x_identity(node, rows, cols)
        return [Term(factors=[("δ", rows[0], cols[1]), ("δ", rows[1], cols[0])])]

    def x_identity(self, node: Node, rows: tuple, cols: tuple) -> list[Term] | None:
        if len(rows) != len(cols):
            return None
        return [Term(factors=[("δ", r, c) for r, c in zip(rows, cols, strict=True)])]

    def x_diag_embedding(self, node: Node, rows: tuple, cols: tuple) -> list[Term] | None:
        if (len(rows), len(cols)) != (2, 1):
            return None
        return [Term(factors=[("δ", rows[0], rows[1]), ("δ", rows[0], cols[0])])]

    def x_diag(self, node: Node, rows: tuple, cols: tuple) -> list[Term] | None:
        inner = node.args[0]
        values = inner.args[0] if inner.op == "vec" else inner
        if len(rows) != len(cols):
            return None
        deltas = [("δ", r, c) for r, c in zip(rows, cols, strict=True)]
        return [Term(factors=[*entries(values, rows, ()), *deltas])]

    def x_transpose(self, node: Node, rows: tuple, cols: tuple) -> list[Term] | None:
        return self(node.args[0], cols, rows)

    def x_matmul(self, node: Node, rows: tuple, cols: tuple) -> list[Term] | None:
        a, b = node.args
        inner_dims = factorization(a, 1) or factorization(b, 0)
        if inner_dims is None:
            return None
        inner = tuple(next(self.fresh, None) for _ in inner_dims)
        if None in inner:                   # more sums than letters: too long to be read
            return None
        left, right = self(a, rows, inner), self(b, inner, cols)
        if left is None or right is None:
            return None
        return [Term(summed=list(inner)).times(x).times(y) for x in left for y in right]

    def x_mul(self, node: Node, rows: tuple, cols: tuple) -> list[Term] | None:
        scalars, rest = split_scalars(node)
        if len(scalars) != 1 or const_value(scalars[0]) is None:
            return None
        terms = self(rest, rows, cols)
        factor = Term(const_value(scalars[0]))
        return None if terms is None else [factor.times(t) for t in terms]

    def x_add(self, node: Node, rows: tuple, cols: tuple) -> list[Term] | None:
        terms = [self(t, rows, cols) for t in node.args]
        return None if any(t is None for t in terms) else [x for t in terms for x in t]


def entries(node: Node, rows: tuple, cols: tuple) -> list[tuple]:
    """The entry factors of a matrix or vector with the given indices (δs for I)."""
    if node.op == "identity":
        return [("δ", r, c) for r, c in zip(rows, cols, strict=True)]
    if node.op == "broadcast" and const_value(node.args[0]) == 1:   # 𝟙ᵢ = 1
        return []
    if node.op == "transpose":
        return entries(node.args[0], cols, rows)
    if node.op == "expand" and node.attrs.axis == 0:          # a row aᵀ
        return [("A", node.args[0], cols)]
    return [("A", node, rows + cols)]


def eliminate(term: Term) -> Term:
    """Sum out every Kronecker delta that touches a summed index (Σₘ δᵢₘ Aₘₖ = Aᵢₖ)."""
    factors, summed = list(term.factors), list(term.summed)
    changed = True
    while changed:
        changed = False
        for factor in factors:
            if factor[0] != "δ":
                continue
            _, a, b = factor
            if a == b or a in summed or b in summed:
                gone, kept = (a, b) if a in summed else (b, a)
                factors.remove(factor)
                if gone != kept:
                    summed.remove(gone)
                    factors = [rename(f, gone, kept) for f in factors]
                changed = True
                break
    return Term(term.coefficient, factors, summed)


def rename(factor: tuple, old: str, new: str) -> tuple:
    if factor[0] == "δ":
        return ("δ", *(new if i == old else i for i in factor[1:]))
    return ("A", factor[1], tuple(new if i == old else i for i in factor[2]))


def term_text(term: Term) -> str:
    parts = []
    for factor in term.factors:
        if factor[0] == "δ":
            parts.append("δ" + "".join(sorted(factor[1:])).translate(SUB))
        else:
            parts.append(wrap(to_text(factor[1])) + "".join(factor[2]).translate(SUB))
    sums = "Σ" + "".join(term.summed).translate(SUB) + " " if term.summed else ""
    size = abs(term.coefficient)
    if size != 1:
        parts.insert(0, TEXT.scalar(size) if size.is_Atom else f"({TEXT.scalar(size)})")
    return sums + (" ".join(parts) or "1")


def wrap(text: str) -> str:
    """A name as it is, anything else in parentheses: ``A``, ``(X⁻¹)``, ``(A B)``."""
    return text if text.isidentifier() else f"({text})"


def index_form(jacobian: Node, f_shape: tuple, x_shape: tuple, f_name: str, x_name: str,
               second: bool = False) -> str | None:
    """``∂Fᵢⱼ/∂Xₖₗ = Aᵢₖ Bₗⱼ`` for a Jacobian in Kronecker form, else None; with ``second``,
    the Hessian ``∂²f/∂Xᵢⱼ∂Xₖₗ`` (``f_shape`` is then the shape of the gradient)."""
    if ONE in (*f_shape, *x_shape):          # a length-1 axis has no index to name
        return None
    rows = ("i", "j")[:len(dims(f_shape))]
    cols = ("k", "l")[:len(dims(x_shape))]
    try:
        terms = IndexExpander()(jacobian, rows, cols)
    except (ValueError, IndexError):    # indices that do not fit a factor: no index form
        return None
    if not terms:
        return None
    parts = sorted((eliminate(t) for t in terms),   # in one order whatever made them first
                   key=lambda t: (bool(t.coefficient.is_negative), term_text(t)))
    body = "".join((" − " if t.coefficient.is_negative else " + ") + term_text(t) for t in parts)
    body = body[3:] if body.startswith(" + ") else "−" + body[3:]
    row_text, col_text = ("".join(ix).translate(SUB) for ix in (rows, cols))
    lhs = (f"∂²{f_name}/∂{x_name}{row_text}∂{x_name}{col_text}" if second
           else f"∂{f_name}{row_text}/∂{x_name}{col_text}")
    return f"{lhs} = {body}"


# ----------------------------------------------------------------------------------------------
# Index notation for einsums: what has no matrix form, written entry by entry


LETTERS = "ijklmnpqrstuvwxyzabcdefgho"
"""Index letters to rename a summed index to when its own letter is taken."""


@dataclass(frozen=True)
class Entries:
    r"""How entries and sums are written: ``X[b,t]`` and ``Σ_{b,t}`` in text, ``X_{bt}`` and
    ``\sum_{b,t}`` in LaTeX."""

    index: Callable[[str, str], str]
    total: str
    open: str
    close: str


TEXT_ENTRIES = Entries(lambda x, ix: f"{x}[{','.join(ix)}]", "Σ_{{{}}} ", "(", ")")
LATEX_ENTRIES = Entries(lambda x, ix: f"{{{x}}}_{{{ix}}}", "\\sum_{{{}}} ", r"\left(",
                        r"\right)")


def einsum_index_form(expr: Node, lhs: str, printer: Callable[[Node], str],
                      entries: Entries = TEXT_ENTRIES) -> str:
    """``(∂L/∂E)[h,k] = 2 Σ_{b,t} S[b,h] Q[b,t,h,k] K[b,t,h,k]`` for a derivative that is a
    (scaled) einsum: each entry, with the summed indices explicit; "" for anything else."""
    scalars, rest = split_scalars(expr)
    if rest.op != "einsum":
        return ""
    output = rest.attrs.spec.split("->")[1]
    body = einsum_entry(rest, output, set(output), printer, entries)
    factor = " ".join(f"({text})" if any(c in text for c in " +−-") else text
                      for text in map(printer, scalars))
    whole = entries.index(f"{entries.open}{lhs}{entries.close}", output)
    return f"{whole} = {factor + ' ' if factor else ''}{body}"


def einsum_entry(node: Node, outer: str, taken: set[str], printer: Callable[[Node], str],
                 entries: Entries) -> str:
    """The entry of an einsum at the output indices ``outer``: a sum over its other indices
    (renamed away from ``taken``) of the product of its operands' entries."""
    inputs, output = node.attrs.spec.split("->")
    names = dict(zip(output, outer, strict=True))
    for letter in dict.fromkeys("".join(inputs.split(","))):
        if letter not in names:
            fresh = letter if letter not in taken else next(c for c in LETTERS if c not in taken)
            names[letter] = fresh
            taken.add(fresh)
    summed = [names[c] for c in dict.fromkeys("".join(inputs.split(","))) if c not in output]
    factors = [operand_entry(a, "".join(names[c] for c in letters), taken, printer, entries)
               for a, letters in zip(node.args, inputs.split(","), strict=True)]
    sums = entries.total.format(",".join(summed)) if summed else ""
    return sums + " ".join(factors)


def operand_entry(node: Node, indices: str, taken: set[str], printer: Callable[[Node], str],
                  entries: Entries) -> str:
    """One factor's entry: ``X[b,t]``; a nested einsum as its own sum in parentheses; another
    expression in parentheses, indexed."""
    if node.op == "einsum":
        inner = einsum_entry(node, indices, taken, printer, entries)
        return f"{entries.open}{inner}{entries.close}"
    text = printer(node)
    if node.op not in ("var", "named", "delta", "const"):
        text = f"{entries.open}{text}{entries.close}"
    return entries.index(text, indices) if indices else text
