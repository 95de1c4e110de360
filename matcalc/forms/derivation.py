"""The Python API of ``matcalc derive``: a derivation and its text, LaTeX, NumPy and JSON forms."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import sympy

from matcalc.core.engine import Step, vector_jacobian_products
from matcalc.core.ir import (
    Node,
    delta,
    dim_str,
    has_property,
    is_labels,
    is_symmetric,
    is_zero,
    postorder,
    rows_sum_to_one,
    shape_str,
)
from matcalc.core.simplify import new_axis, reduce_sum, transpose
from matcalc.errors import MatcalcError
from matcalc.forms.codegen import numpy_block
from matcalc.forms.kronecker import index_form, kronecker_matrix
from matcalc.forms.linear_map import linear_matrix, seed
from matcalc.forms.printing import ATOM, LATEX, TEXT, Printer, Weigher
from matcalc.forms.sympy_bridge import to_sympy
from matcalc.language.lowering import Program, parse
from matcalc.language.syntax import identifier


@dataclass(frozen=True)
class Kind:
    """How a derivative is written: its left-hand side in text and LaTeX, its code name."""

    text: str
    latex: str
    prefix: str


KINDS = {
    "grad": Kind("∂{f}/∂{x}", r"\frac{{\partial {f}}}{{\partial {x}}}", "grad"),
    "jac": Kind("∂{f}/∂{x}", r"\frac{{\partial {f}}}{{\partial {x}}}", "jac"),
    "hess": Kind("∂²{f}/∂{x}²", r"\frac{{\partial^2 {f}}}{{\partial {x}^2}}", "hess"),
    "kron": Kind("∂vec({f})/∂vec({x})",
                 r"\frac{{\partial \operatorname{{vec}} {f}}}{{\partial \operatorname{{vec}} {x}}}",
                 "jac"),
    "hvp": Kind("(∂²{f}/∂{x}²) {v}", r"\frac{{\partial^2 {f}}}{{\partial {x}^2}} {v}", "hvp"),
    "hess_kron": Kind("∂²{f}/∂vec({x})²",
                      r"\frac{{\partial^2 {f}}}{{\partial \operatorname{{vec}} {x}^2}}", "hess"),
}


@dataclass(frozen=True)
class Gradient:
    """A derivative of the function with respect to ``wrt``: by default ∂f/∂wrt, shaped like
    ``wrt`` (gradient layout); also a Jacobian, a Hessian or a Hessian-vector product."""

    wrt: str
    node: Node
    expr: Node
    kind: str = "grad"
    direction: str = ""
    index: str = ""

    @property
    def shape(self) -> tuple:
        return self.expr.shape


@dataclass
class Derivation:
    """Gradients of a program's scalar function, optionally with its chain-rule steps."""

    program: Program
    gradients: list[Gradient]
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stepwise: bool = False
    """Shown as a derivation (forward pass, error signals, gradients), even with no δ."""

    @property
    def f(self) -> str:
        return self.program.function_name

    def partial(self, name: str, notation=TEXT, kind: str = "grad", direction: str = "") -> str:
        """``∂f/∂x`` (or ``∂²f/∂x²`` …) in the notation."""
        template = getattr(KINDS[kind], notation.name)
        return template.format(f=notation.symbol(self.f), x=notation.symbol(name),
                               v=notation.symbol(direction) if direction else "")

    def lhs(self, g: Gradient, notation=TEXT) -> str:
        return self.partial(g.wrt, notation, g.kind, g.direction)

    # -- text ------------------------------------------------------------------------------

    def text(self) -> str:
        """One line per variable: ``∂f/∂x = (A + Aᵀ) x   [n]``; with steps, the derivation."""
        printer = Printer(TEXT, self.names)
        rows = [(self.lhs(g), formula(printer, g.expr), g.shape) for g in self.gradients]
        if not self.steps and not self.stepwise:
            indices = "".join(f"\nindex form: {g.index}" for g in self.gradients if g.index)
            return aligned(rows) + indices + self.notes_text()
        forward = [(name, printer(node.args[0]), node.shape)
                   for name, node in self.program.intermediates.items()]
        users = self.users()
        signals = [(f"δ{s.label} = {self.partial(s.name)}", printer(s.expr), s.node.shape,
                    "back through " + ", ".join(users.get(s.name, ())))
                   for s in self.steps]
        parts = ["Forward pass:", aligned(forward, indent="  ")]
        if signals:
            parts += [f"Backward pass (error signals δ = ∂{self.f}/∂·, each shaped like what it "
                      "differentiates):", aligned(signals, indent="  ")]
        parts += ["Gradients (each shaped like its variable):", aligned(rows, indent="  ")]
        return "\n".join(parts) + self.notes_text()

    def users(self) -> dict[str, list[str]]:
        """For each intermediate, the names whose definitions use it (the chain rule's paths)."""
        found: dict[str, list[str]] = {}
        named = dict(self.program.intermediates)
        if self.program.function.op != "named":
            named[self.f] = self.program.function
        for name, node in named.items():
            definition = node.args[0] if node.op == "named" else node
            for used in postorder([definition], stop=lambda n: n.op == "named"):
                if used.op == "named":
                    found.setdefault(used.attrs.name, []).append(name)
        return found

    @property
    def names(self) -> frozenset[str]:
        """The program's names (so that printed symbols never look like one of them)."""
        p = self.program
        return frozenset([*p.variables, *p.intermediates, *map(str, p.dims)])

    def with_note(self, note: str) -> Derivation:
        self.notes.append(note)
        return self

    def notes_text(self) -> str:
        return "".join(f"\nnote: {note}" for note in self.notes)

    def latex(self) -> str:
        """LaTeX lines, one equation per variable (error signals first with steps)."""
        printer = Printer(LATEX, self.names)
        lines = [rf"\delta_{{{s.label}}} = {self.partial(s.name, LATEX)} = {printer(s.expr)}"
                 for s in self.steps]
        lines += [f"{self.lhs(g, LATEX)} = {formula(printer, g.expr)}" for g in self.gradients]
        return " \\\\\n".join(lines)

    def _repr_latex_(self) -> str:
        return "$$\\begin{aligned}" + self.latex().replace(" = ", " &= ", 1) + "\\end{aligned}$$"

    # -- code ------------------------------------------------------------------------------

    def numpy(self) -> str:
        """Python statements assigning ``grad_<NAME>``; shared work computed once."""
        return self.code_for(self.gradients)

    def code_for(self, gradients: Sequence[Gradient]) -> str:
        """Statements assigning each error signal in turn, then each result."""
        outputs = [(f"{KINDS[g.kind].prefix}_{g.wrt}", g.expr) for g in gradients]
        return numpy_block(outputs, list(self.program.variables.values()), self.signals(),
                           self.f).source()

    def signals(self) -> list[tuple[Node, Node]]:
        """The error signals as ``(δ leaf, expression)``, for the code emitters."""
        return [(delta(s.label, s.name, s.node.shape), s.expr) for s in self.steps]

    def json(self) -> list[dict]:
        """``[{wrt, shape, text, latex, numpy}]``, one object per variable."""
        return [
            {
                "wrt": g.wrt,
                "shape": [int(d) if d.is_Integer else str(d) for d in g.shape],
                "text": formula(Printer(TEXT, self.names), g.expr),
                "latex": formula(Printer(LATEX, self.names), g.expr),
                "numpy": self.code_for([g]),
                **({"index": g.index} if g.index else {}),
            }
            for g in self.gradients
        ]

    def to_sympy(self) -> dict[str, sympy.Expr]:
        """Each gradient as a SymPy matrix expression, for display."""
        return {g.wrt: to_sympy(g.expr) for g in self.gradients}


ALIGNED = 100


def aligned(rows: Sequence[tuple], indent: str = "") -> str:
    """``name = formula   [shape]   comment`` lines, shapes (and comments) in one column (lines
    longer than ``ALIGNED`` characters are not padded to, nor padded)."""
    lines = [f"{indent}{row[0]} = {row[1]}" for row in rows]
    width = max((len(line) for line in lines if len(line) <= ALIGNED), default=0)
    shapes = [shape_str(row[2]) for row in rows]
    shape_width = max((len(text) for text in shapes), default=0)
    return "\n".join(
        f"{line.ljust(width)}   {shape.ljust(shape_width)}   {row[3]}".rstrip()
        if len(row) > 3 else f"{line.ljust(width)}   {shape}"
        for line, shape, row in zip(lines, shapes, rows, strict=True))


MAX_INLINE_SIZE = 400
MAX_PRINTED_SIZE = 5000
MAX_HESSIAN_GRADIENT = 6000
"""Largest gradient (in operations) whose full Hessian is derived."""
MAX_HVP_GRADIENT = 20000
"""Largest gradient (in operations) whose Hessian-vector product is derived."""
"""Past this many terms a formula is not printed (its code is still generated)."""


def weight(expr: Node) -> int:
    """How many array terms ``expr`` has written out in full (shared parts counted each time)."""
    return Weigher()(expr)[0]


def formula(printer: Printer, expr: Node) -> str:
    """``expr`` in the printer's notation, or a placeholder when it is too long to print."""
    size = weight(expr)
    if size > MAX_PRINTED_SIZE:
        more = f"{size:,}" if size < Weigher.CAP else f"more than {Weigher.CAP:,}"
        return f"… ({more} terms written out: too long to print; --format numpy computes it)"
    return printer(expr)
TOO_LONG_NOTE = (f"written out in full a gradient would have more than {MAX_INLINE_SIZE} terms; "
                 "it is shown with named error signals δ instead.")

CE_NOTES = {
    "general": "softmax_cross_entropy({z_}, {y_}) = −Σ {y} ⊙ log_softmax({z_}){per}: its gradient "
               "with respect to the logits, (softmax({z_}) ⊙ ({y} 𝟙) − {y}){per}, holds for any "
               "targets; {advice}",
    "rows": "softmax_cross_entropy({z_}, {y_}): each row of {y} sums to 1 ({why}), so its "
            "gradient with respect to the logits is (softmax({z_}) − {y}){per}.",
    "labels": "softmax_cross_entropy({z_}, {y_}) with integer class labels {y} is "
              "−Σᵢ log_softmax({z_})ᵢ,{y}ᵢ{per}, as PyTorch's cross_entropy; onehot({y}) is "
              "never formed in the generated code.",
}
ADVICE = {
    True: "declare `{y}: {shape} onehot` (or `probabilities`) when each row sums to 1, to get "
          "softmax({z_}) − {y}.",
    False: "for targets whose rows sum to 1 it is softmax({z_}) − {y}.",
}


def cross_entropy_note(node: Node, printer: Printer) -> str:
    """What the gradient of ``softmax_cross_entropy(z, y)`` assumes, in the program's names."""
    z, y = node.args
    kind = "labels" if is_labels(y) else "rows" if rows_sum_to_one(y) else "general"
    why = next((f"declared {p}" for p in ("onehot", "probabilities") if has_property(y, p)),
               "a softmax")
    names = {"z_": printer(z), "y_": printer(y), "y": printer.wrap(y, ATOM), "why": why,
             "per": f" / {dim_str(z.shape[0])}" if z.rank == 2 else "",
             "shape": shape_str(y.shape)}
    return CE_NOTES[kind].format(advice=ADVICE[y.op == "var"].format(**names), **names)



def derive(
    source: str | Program,
    wrt: Sequence[str],
    declarations: Sequence[str] = (),
    steps: bool = False,
    inline: bool = False,
) -> Derivation:
    """Gradients of the program's scalar function with respect to each name in ``wrt``.

    A gradient too long to read inline is given with error signals δ unless ``inline``.
    """
    program = source if isinstance(source, Program) else parse(source, declarations)
    f = program.function
    if f.shape and all(d == 1 for d in f.shape):          # a 1×1 matrix: its one entry
        program = dataclasses.replace(program, function=reduce_sum(f))
        return derive(program, wrt, steps=steps, inline=inline).with_note(
            f"{program.function_name} is {shape_str(f.shape)}: its gradient is that of its one "
            "entry.")
    if f.shape:
        raise MatcalcError(
            f"`{program.function_name}` has shape {shape_str(f.shape)}; a gradient needs a "
            "scalar function. Reduce it first (sum, mean, norm …) or take its Jacobian.")
    if not wrt:
        raise MatcalcError("name at least one variable to differentiate with --wrt NAME")
    targets = [program.lookup(name) for name in wrt]
    labels = [name for name, node in zip(wrt, targets, strict=True) if is_labels(node)]
    if labels:
        raise MatcalcError(f"`{labels[0]}` holds integer class labels; it has no gradient")
    too_long = not steps and not inline and len(program.intermediates) > MAX_INLINE_SIZE
    adjoints, signals = vector_jacobian_products(f, targets, steps=steps or too_long)
    gradients = [Gradient(name, node, symmetric_part(node, adjoints[node]))
                 for name, node in zip(wrt, targets, strict=True)]
    if not steps and not inline and not too_long and max(map(weight, (
            g.expr for g in gradients))) > MAX_INLINE_SIZE:
        return derive(program, wrt, steps=True, inline=False).with_note(TOO_LONG_NOTE)
    result = Derivation(program, gradients, signals, notes(program, gradients),
                        stepwise=steps or too_long)
    return result.with_note(TOO_LONG_NOTE) if too_long else result


def symmetric_part(x: Node, g: Node) -> Node:
    """For a symmetric variable, the gradient within symmetric matrices: (G + Gᵀ) / 2."""
    if not has_property(x, "symmetric") or is_symmetric(g):
        return g
    return (g + transpose(g)) / 2


SYMMETRIC_NOTE = (
    "{x} is symmetric: ∂{f}/∂{x} is the gradient among symmetric matrices, (G + Gᵀ)/2 for the "
    "unconstrained G, so that {x} − η ∂{f}/∂{x} stays symmetric. Derivatives with respect to "
    "the independent entries {x}ᵢⱼ (i ≤ j), as in the Matrix Cookbook, are G + Gᵀ − I ⊙ G.")


def notes(program: Program, gradients: Sequence[Gradient]) -> list[str]:
    """What a careful reader should know about these results."""
    found: list[str] = [SYMMETRIC_NOTE.format(f=program.function_name, x=g.wrt)
                        for g in gradients if has_property(g.node, "symmetric")
                        and g.kind == "grad"]
    order = postorder([program.function])                # reading order: notes in it too
    depends = set(order)
    for g in gradients:
        if is_zero(g.expr) and g.node not in depends:
            found.append(f"{program.function_name} does not depend on {g.wrt}; "
                         "its gradient is zero.")
    printer = Printer(TEXT)
    for node in (n for n in order if n.op == "softmax_cross_entropy"):
        z, y = (set(n for n in postorder([a]) if n.op == "var") for a in node.args)
        if z & y:
            continue                      # targets made of the logits: the formula would mislead
        note = cross_entropy_note(node, printer)
        if note not in found:
            found.append(note)
    return found


# ----------------------------------------------------------------------------------------------
# Jacobians, Hessians and Hessian-vector products

LAYOUTS = ("numerator", "denominator")
LAYOUT_NOTE = {
    "numerator": "numerator layout: (∂{f}/∂{x})ᵢⱼ = ∂{f}ᵢ/∂{x}ⱼ, rows follow {f}.",
    "denominator": "denominator layout: (∂{f}/∂{x})ᵢⱼ = ∂{f}ⱼ/∂{x}ᵢ, rows follow {x}, "
                   "the transpose of the numerator-layout Jacobian.",
}


SCALAR_NUMERATOR_NOTE = ("numerator layout: for the scalar {f}, ∂{f}/∂x is the gradient "
                         "transposed, a row for a vector x: (∂{f}/∂x)ᵢⱼ = ∂{f}/∂xⱼᵢ.")
VEC_NOTE = ("{layout} layout of ∂vec({f})/∂vec({x}); vec stacks the columns of a matrix "
            "(Magnus & Neudecker), so vec(A X B) = (Bᵀ ⊗ A) vec(X).")
INDEX_NOTE = " The index form gives each entry."
HESSIAN_VEC_NOTE = ("∂²{f}/∂vec({x})² is the Hessian of {f} as a function of vec({x}), vec "
                    "stacking the columns of {x} (Magnus & Neudecker: vec(A X B) = (Bᵀ ⊗ A) "
                    "vec(X)).")
EMBEDDING_NOTE = (" E_n = Σᵢ (eᵢ ⊗ eᵢ) eᵢᵀ puts a vector on a diagonal: vec(diag(v)) = E_n v, and "
                  "diag(X) = E_nᵀ vec(X).")


def numerator_form(g: Node) -> Node:
    """A gradient in numerator layout: a row ``gᵀ`` for a vector, ``Gᵀ`` for a matrix."""
    return new_axis(g, 0) if g.rank == 1 else transpose(g)


def jacobian(
    source: str | Program,
    wrt: Sequence[str],
    declarations: Sequence[str] = (),
    layout: str = "numerator",
) -> Derivation:
    """∂f/∂x in matrix form for a vector (or scalar) function of vectors (or scalars).

    The rules give ∂(ūᵀ f)/∂x = Jᵀ ū for a seed ū; ``linear_map.linear_matrix`` reads off Jᵀ
    (denominator layout), transposed for numerator layout.
    """
    program = source if isinstance(source, Program) else parse(source, declarations)
    f = program.function
    if not f.shape:
        result = derive(program, wrt)
        if layout == "numerator":
            result.gradients = [replace(g, expr=numerator_form(g.expr), kind="jac")
                                for g in result.gradients]
            result.notes.append(SCALAR_NUMERATOR_NOTE.format(f=result.f))
        return result
    u = seed(f.shape)
    targets = [program.lookup(name) for name in wrt]
    adjoints, _ = vector_jacobian_products(reduce_sum(u * f), targets)
    gradients = [jacobian_of(program.function_name, name, x, adjoints[x], u, layout)
                 for name, x in zip(wrt, targets, strict=True)]
    result = Derivation(program, gradients, notes=notes(program, gradients))
    x_name = wrt[0] if len(wrt) == 1 else "x"
    vectorised = any(g.kind == "kron" for g in gradients)
    note = VEC_NOTE if vectorised else LAYOUT_NOTE[layout]
    if any(g.index for g in gradients):
        note += INDEX_NOTE
    if any(n.op == "diag_embedding" for g in gradients for n in postorder([g.expr])):
        note += EMBEDDING_NOTE
    result.notes.append(note.format(f=result.f, x=x_name, layout=layout))
    return result


def jacobian_of(f_name: str, name: str, x: Node, adjoint: Node, u: Node, layout: str
                ) -> Gradient:
    """The Jacobian read off ``adjoint`` = ∂⟨u, f⟩/∂x: a matrix for vectors, else vec form."""
    if u.rank == 1 and x.rank <= 1:
        try:
            transposed = linear_matrix(adjoint, u)
            expr = transpose(transposed) if layout == "numerator" else transposed
            return Gradient(name, x, expr, kind="jac")
        except MatcalcError:
            pass                       # a matrix-valued intermediate: the vec form handles it
    transposed = kronecker_matrix(adjoint, u)
    numerator = transpose(transposed)
    index = index_form(numerator, u.shape, x.shape, f_name, name) if 2 in (u.rank, x.rank) else None
    expr = numerator if layout == "numerator" else transposed
    return Gradient(name, x, expr, kind="kron", index=index or "")


def hessian(
    source: str | Program,
    wrt: str,
    declarations: Sequence[str] = (),
    direction: str | None = None,
) -> Derivation:
    """∂²f/∂x² in matrix form, or with ``direction`` the product H v without forming H.

    The gradient g(x) is differentiated again by the same rules: H is the Jacobian of g,
    H v the gradient of gᵀ v. Every operation a rule emits has a rule itself.
    """
    program = source if isinstance(source, Program) else parse(source, declarations)
    x = program.lookup(wrt)
    g = derive(program, [wrt], inline=True).gradients[0].expr   # in full: no δ to stop at
    operations = len(postorder([g]))
    if operations > MAX_HVP_GRADIENT:
        raise MatcalcError(
            f"the gradient ∂{program.function_name}/∂{wrt} has {operations:,} operations; "
            f"matcalc differentiates gradients of up to {MAX_HVP_GRADIENT:,} operations again: "
            "shorten the program, or take Hessian-vector products of the torch target with "
            "torch.func.jvp.")
    if direction is not None:
        v = program.add_variable(identifier(direction, "--hvp"), x.shape)
        adjoints, _ = vector_jacobian_products(reduce_sum(g * v), [x])
        hvp = Gradient(wrt, x, symmetric_part(x, adjoints[x]), kind="hvp", direction=direction)
        return Derivation(program, [hvp], notes=[
            f"{direction} is the direction, shaped like {wrt}; H {direction} costs about two "
            "gradients and never forms H."])
    if operations > MAX_HESSIAN_GRADIENT:
        raise MatcalcError(
            f"the gradient ∂{program.function_name}/∂{wrt} has {operations:,} operations; "
            f"matcalc writes full Hessians of gradients up to {MAX_HESSIAN_GRADIENT:,}. Use "
            f"--hvp V for Hessian-vector products (about two gradients' work).")
    if x.rank == 0:
        second, _ = vector_jacobian_products(g, [x])
        return Derivation(program, [Gradient(wrt, x, second[x], kind="hess")])
    if has_property(x, "symmetric"):
        raise MatcalcError(f"{wrt} is symmetric: its Hessian acts on symmetric directions only; "
                           f"use --hvp V for the product H V (V symmetric) in matrix form")
    u = seed(x.shape)
    adjoints, _ = vector_jacobian_products(reduce_sum(u * g), [x])
    h = jacobian_of(program.function_name, wrt, x, adjoints[x], u, "denominator")
    if h.kind == "jac":
        return Derivation(program, [replace(h, kind="hess", index="")])
    index = index_form(h.expr, x.shape, x.shape, program.function_name, wrt, second=True)
    note = HESSIAN_VEC_NOTE.format(f=program.function_name, x=wrt)
    if index:
        note += f" The index form gives each entry, ∂²{program.function_name}/∂{wrt}ᵢⱼ∂{wrt}ₖₗ."
    return Derivation(program, [replace(h, kind="hess_kron", index=index or "")], notes=[note])
