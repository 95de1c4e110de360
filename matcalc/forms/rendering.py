"""How derivations are presented: aligned text, LaTeX, JSON and NumPy statements, and the prose
of the notes a careful reader needs. :mod:`matcalc.forms.derivation` computes; this formats."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence
from dataclasses import dataclass

import sympy

from matcalc.core.ir import (
    OPERATIONS,
    Node,
    definition_of,
    dim_str,
    has_property,
    is_labels,
    is_zero,
    postorder,
    rows_sum_to_one,
    shape_str,
    size,
)
from matcalc.forms.index_form import LATEX_ENTRIES, TEXT_ENTRIES, Entries, einsum_index_form
from matcalc.forms.printing import ATOM, LATEX, TEXT, Printer, Weigher, hadamard_power
from matcalc.forms.results import Gradient, Result
from matcalc.forms.sympy_bridge import to_sympy
from matcalc.language import syntax
from matcalc.language.lowering import Program


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


class Derivation(Result):
    """A derivation with its views: text, LaTeX, NumPy statements, JSON."""

    def partial(self, name: str, notation=TEXT, kind: str = "grad", direction: str = "") -> str:
        """``∂f/∂x`` (or ``∂²f/∂x²`` …) in the notation."""
        template = getattr(KINDS[kind], notation.name)
        return template.format(f=notation.symbol(self.f), x=notation.symbol(name),
                               v=notation.symbol(direction) if direction else "")

    def lhs(self, g: Gradient, notation=TEXT) -> str:
        return self.partial(g.wrt, notation, g.kind, g.direction)

    def text(self) -> str:
        """One line per variable: ``∂f/∂x = (A + Aᵀ) x   [n]``; with steps, the derivation."""
        printer = Printer(TEXT, self.names)
        rows = [(self.lhs(g), formula(printer, g.expr), g.shape) for g in self.gradients]
        indices = "".join(f"\nindex form: {index}" for index in self.index_forms(printer))
        if not self.steps and not self.stepwise:
            return aligned(rows) + indices + self.notes_text()
        forward = [(name, printer(node.args[0]), node.shape)
                   for name, node in self.program.intermediates.items()]
        users = self.users()
        signals = [(f"δ{s.label} = {self.partial(s.name)}", printer(s.expr), s.node.shape,
                    "back through " + ", ".join(users.get(s.name, ())))
                   for s in self.steps]
        parts = ["Forward pass:", aligned(forward, indent="  ")] if forward else []
        if self.differentials:
            rows_d = [(f"d{name}", printer(d), node.shape) for name, node, d in self.differentials]
            parts += ["Differentials (forward mode: each from those of what it reads; "
                      "dx for each variable x):", aligned(rows_d, indent="  ")]
        if signals:
            parts += [f"Backward pass (error signals δ = ∂{self.f}/∂·, each shaped like what it "
                      "differentiates):", aligned(signals, indent="  ")]
        heading = "Gradients (each shaped like its variable):"
        if self.differentials and self.program.function.shape:
            heading = f"Derivatives, read off d{self.f}:"
        elif self.differentials:
            heading = (f"Gradients, read off d{self.f} = Σₓ ⟨∂{self.f}/∂x, dx⟩ "
                       "(tr(Gᵀ dX) for a matrix X):")
        parts += [heading, aligned(rows, indent="  ")]
        return "\n".join(parts) + indices + self.notes_text()

    def index_forms(self, printer: Printer, entries: Entries = TEXT_ENTRIES) -> list[str]:
        """Each derivative's entries where it has them: an einsum's (no matrix form) with its
        sums explicit; in text also a Jacobian's in Kronecker form."""
        kronecker = entries is TEXT_ENTRIES
        forms = [g.index if g.index and kronecker else einsum_index_form(
            g.expr, self.lhs(g, printer.n), printer, entries) for g in self.gradients]
        return [form for form in forms if form]

    def notes_text(self) -> str:
        return "".join(f"\nnote: {note}" for note in self.notes)

    def latex(self) -> str:
        """LaTeX lines, one equation per variable (error signals first with steps)."""
        printer = Printer(LATEX, self.names)
        lines = [rf"\mathrm{{d}}{printer.n.symbol(name)} = {printer(d)}"
                 for name, _, d in self.differentials]
        lines += [rf"\delta_{{{s.label}}} = {self.partial(s.name, LATEX)} = {printer(s.expr)}"
                  for s in self.steps]
        lines += [f"{self.lhs(g, LATEX)} = {formula(printer, g.expr)}" for g in self.gradients]
        lines += self.index_forms(printer, LATEX_ENTRIES)
        return " \\\\\n".join(lines)

    def latex_block(self) -> str:
        """The LaTeX to paste into a document: one equation as it is, several in an ``align*``
        environment (amsmath) with their first ``=`` aligned."""
        lines = self.latex().split(" \\\\\n")
        if len(lines) == 1:
            return lines[0]
        return "\\begin{align*}\n" + " \\\\\n".join(at_equals(lines)) + "\n\\end{align*}"

    def _repr_latex_(self) -> str:
        lines = at_equals(self.latex().split(" \\\\\n"))
        return "$$\\begin{aligned}" + " \\\\\n".join(lines) + "\\end{aligned}$$"

    def _repr_markdown_(self) -> str:
        """Each equation as display math, then the notes (Jupyter renders the LaTeX)."""
        equations = [f"$${line}$$" for line in self.latex().split(" \\\\\n")]
        return "\n\n".join([*equations, *(f"*note:* {html.escape(n)}" for n in self.notes)])

    def _repr_html_(self) -> str:
        """The equations as MathML (``latex2mathml``, the ``web`` extra), which browsers render
        natively, with the text form and the notes; the text form alone without it."""
        shown = "".join(mathml(self.latex()))
        text = f"<pre>{html.escape(self.text())}</pre>"
        return f"<div class='matcalc'>{shown}{text}</div>"

    def numpy(self) -> str:
        """Python statements assigning ``grad_<NAME>``; shared work computed once."""
        return self.code_for(self.gradients)

    def code_for(self, gradients: Sequence[Gradient]) -> str:
        """Statements assigning each error signal in turn, then each result (the code
        generator loaded only for code: ``derive`` alone starts faster)."""
        from matcalc.forms.codegen import numpy_block

        outputs = [(f"{KINDS[g.kind].prefix}_{g.wrt}", g.expr) for g in gradients]
        return numpy_block(outputs, list(self.program.variables.values()), self.signals(),
                           self.f).source()

    def json(self) -> list[dict]:
        """``[{wrt, shape, text, latex, numpy}]``, one object per variable; with steps each
        also has ``signals``, the δs its text reads: ``[{name, of, shape, text, latex}]``."""
        signals = [{"name": f"δ{s.label}", "of": s.name, "shape": shape_json(s.node.shape),
                    "text": formula(Printer(TEXT, self.names), s.expr),
                    "latex": formula(Printer(LATEX, self.names), s.expr)} for s in self.steps]
        return [
            {
                "wrt": g.wrt,
                "shape": shape_json(g.shape),
                "text": formula(Printer(TEXT, self.names), g.expr),
                "latex": formula(Printer(LATEX, self.names), g.expr),
                "numpy": self.code_for([g]),
                **({"index": g.index} if g.index else {}),
                **({"signals": signals} if signals else {}),
            }
            for g in self.gradients
        ]

    def to_sympy(self) -> dict[str, sympy.Expr]:
        """Each gradient as a SymPy matrix expression, for display."""
        return {g.wrt: to_sympy(g.expr) for g in self.gradients}


ALIGNED = 100


def mathml(latex: str) -> list[str]:
    """Each line of matcalc's LaTeX as display MathML (``latex2mathml``), or [] without it."""
    try:
        from latex2mathml.converter import convert
    except ImportError:
        return []
    return [convert(line.strip()).replace('display="inline"', 'display="block"')
            for line in latex.split("\\\\\n") if line.strip()]


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
"""Past this many terms a gradient is written with named error signals δ."""
MAX_PRINTED_SIZE = 5000
"""Past this many terms a formula is not printed (its code is still generated)."""


def weight(expr: Node) -> int:
    """How many array terms and scalar operations ``expr`` has written out in full (shared
    parts counted each time: the derivative of a chain of scalar intermediates, each read
    twice by the next, doubles at each step)."""
    return min(Weigher()(expr)[0] + scalar_operations(expr), Weigher.CAP)


def scalar_operations(expr: Node) -> int:
    """The scalar operations of ``expr`` written out as a tree (named intermediates are
    leaves), at most ``Weigher.CAP``."""
    counts: dict[Node, int] = {}
    for node in postorder([expr], stop=lambda n: n.op == "named"):
        own = int(not node.shape and bool(node.args) and node.op != "named")
        inner = 0 if node.op == "named" else sum(counts[a] for a in node.args)
        counts[node] = min(own + inner, Weigher.CAP)
    return counts[expr]


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
    made = {"onehot": "one-hot rows", "softmax": "a softmax"}.get(
        definition_of(y).op, "by its definition, a weighted mix of such rows")
    why = next((f"declared {p}" for p in ("onehot", "probabilities") if has_property(y, p)),
               made)
    names = {"z_": printer(z), "y_": printer(y), "y": printer.wrap(y, ATOM), "why": why,
             "per": f" / {dim_str(size(z.shape[:-1]))}" if z.rank >= 2 else "",
             "shape": shape_str(y.shape)}
    return CE_NOTES[kind].format(advice=ADVICE[y.op == "var"].format(**names), **names)


SYMMETRIC_NOTE = (
    "{x} is symmetric: ∂{f}/∂{x} is the gradient among symmetric matrices, (G + Gᵀ)/2 for the "
    "unconstrained G, so that {x} − η ∂{f}/∂{x} stays symmetric. Derivatives with respect to "
    "the independent entries {x}ᵢⱼ (i ≤ j), as in the Matrix Cookbook, are G + Gᵀ − I ⊙ G.")


CONVENTIONS = {
    "relu": "relu′(0) = 0 (as PyTorch)",
    "abs": "abs′(0) = 0",
    "leaky_relu": "leaky_relu′(x, a) = 1 for x > 0 and a for x ≤ 0, so leaky_relu′(0) = a (as "
                  "PyTorch)",
    "sign": "sign′ = 0",
    "max": "max sends the gradient to the first of tied largest entries (as torch.max(x, dim))",
    "min": "min sends it to the first of tied smallest entries",
    "maximum": "maximum(a, b) splits it equally when a = b (as PyTorch): ∂/∂a is H(a − b), "
               "the Heaviside step with H(0) = ½",
    "minimum": "minimum(a, b) splits it equally when a = b: ∂/∂a is H(b − a), the Heaviside "
               "step with H(0) = ½",
    "clip": "clip′ = 0 at its bounds (PyTorch's clamp takes 1 there)",
}
"""How the derivative of each nonsmooth function is defined where it jumps."""

STACKS_NOTE = ("arrays of rank 3 or more are stacks of matrices, as in NumPy: a product multiplies "
               "them matrix by matrix, broadcasting the leading axes, and ᵀ transposes each "
               "matrix (NumPy's .mT).")

ASSUMPTIONS = {
    "nuclear_norm": "the gradient of the nuclear norm ‖·‖_* (the sum of the singular values) is "
                    "polar(·), the left singular vectors times the right ones transposed (full "
                    "rank assumed)",
    "spectral_norm": "the gradient of the spectral norm ‖·‖₂ (the largest singular value, "
                     "assumed simple) is top_singular(·), the outer product of its left and "
                     "right singular vectors",
    "eigvalsh": "λ(·) lists the eigenvalues of a symmetric matrix in ascending order, assumed "
                "distinct; eigenvectors(·) holds its orthonormal eigenvectors in columns in the "
                "same order, and ∂λᵢ/∂S = vᵢ vᵢᵀ",
    "prod": "prod_others(x) holds for each entry the product of the other entries along the "
            "axis: ∂ prod(x)/∂xᵢ = ∏_{j≠i} xⱼ, exact where entries are 0",
    "kron": "through A ⊗ B, block_sums(X, shape of B) sums each block of X the size of B "
            "(∂⟨G, A ⊗ B⟩/∂A = block_sums(G ⊙ (𝟙𝟙ᵀ ⊗ B))), and sum_of_blocks(X, shape of A) adds "
            "up X's grid of such blocks, one per entry of A (∂⟨G, A ⊗ B⟩/∂B = "
            "sum_of_blocks(G ⊙ (A ⊗ 𝟙𝟙ᵀ)))",
    "take": "scatter_add(G, y) is a zero table with each row of G added at its label, "
            "row y of the looked-up table (np.add.at): E[y] sends its gradient back to the rows "
            "it read",
    "pinv": "∂A⁺ holds where the rank of A does not change (full rank: A⁺ = (AᵀA)⁻¹Aᵀ or "
            "Aᵀ(AAᵀ)⁻¹)",
}
"""What the derivative of each spectral function assumes."""


def read_by_last(source: str) -> set[str]:
    """The names the program's last statement (its function) reads, in its syntax tree."""
    statements = [s for s in syntax.parse_program(source).statements
                  if not isinstance(s, syntax.Decl)]
    return names_read(statements[-1].expr) if statements else set()


def names_read(expr: object) -> set[str]:
    """The names an expression of the syntax tree reads."""
    if isinstance(expr, syntax.Name):
        return {expr.id}
    if isinstance(expr, tuple):
        return set().union(*map(names_read, expr))
    if dataclasses.is_dataclass(expr):
        return set().union(*(names_read(getattr(expr, f.name)) for f in dataclasses.fields(expr)))
    return set()


NOTATION = {"take": {"scatter_rows"}, "prod": {"prod_others"},
            "kron": {"block_sums", "sum_of_blocks"}, "nuclear_norm": {"polar"},
            "spectral_norm": {"top_singular"}, "eigvalsh": {"eigvalsh", "eigenvectors"}}
"""The operations whose notes explain notation: each is given only where the results show one
of these (scatter_add(G, y) for the gradient of a lookup's table, not for the other factor)."""


def notes(program: Program, gradients: Sequence[Gradient], shown: Sequence[Node] = ()
          ) -> list[str]:
    """What a careful reader should know about these results (``shown``: what is printed
    besides the gradients, the error signals and the forward pass)."""
    found: list[str] = [SYMMETRIC_NOTE.format(f=program.function_name, x=g.wrt)
                        for g in gradients if has_property(g.node, "symmetric")
                        and g.kind == "grad"]
    order = postorder([program.function])                # reading order: notes in it too
    depends = set(order)
    for g in gradients:
        if is_zero(g.expr) and g.node not in depends:
            found.append(f"{program.function_name} does not depend on {g.wrt}; "
                         "its gradient is zero.")
    conventions = [CONVENTIONS[op] for op in dict.fromkeys(n.op for n in order)
                   if op in CONVENTIONS]
    if conventions:
        found.append("where a derivative jumps: " + "; ".join(conventions) + ".")
    printed = postorder([*(g.expr for g in gradients), *shown])
    printed_ops = {n.op for n in printed}
    found += [ASSUMPTIONS[op] + "." for op in dict.fromkeys(n.op for n in order)
              if op in ASSUMPTIONS and (op not in NOTATION or NOTATION[op] & printed_ops)]
    if any(n.rank > 2 for n in order):
        found.append(STACKS_NOTE)
    if any(n.op == "gelu" for n in order) and any(g.kind == "grad" for g in gradients):
        found.append(GELU_NOTE)
    if any(n.op == "standardize" for n in order):
        found.append(STANDARDIZE_NOTE)
    if any(n.op == "pow" and hadamard_power(n.args[0]) for n in printed):
        found.append(HADAMARD_POWER_NOTE)
    undepended = [name for name, node in program.intermediates.items() if node not in depends]
    read = read_by_last(program.source) if undepended else set()
    bypassed = [name for name in undepended if name in read]
    if bypassed and any(g.kind == "grad" for g in gradients):
        names = ", ".join(f"`{name}`" for name in bypassed)
        found.append(f"{names} {'is' if len(bypassed) == 1 else 'are'} written in "
                     f"{program.function_name}'s definition but not computed through: matcalc "
                     "recognised what the definition spells out (σ, softplus, softmax …) and "
                     f"computes {program.function_name} in that stable form, so no error signal "
                     "passes through " + ("it." if len(bypassed) == 1 else "them."))
    printer = Printer(TEXT)
    found += [outer_broadcast_note(node, printer) for node in order if outer_broadcast(node)]
    for node in (n for n in order if n.op == "softmax_cross_entropy"):
        z, y = (set(n for n in postorder([a]) if n.op == "var") for a in node.args)
        if z & y:
            continue                      # targets made of the logits: the formula would mislead
        note = cross_entropy_note(node, printer)
        if note not in found:
            found.append(note)
    return found


def outer_broadcast(node: Node) -> bool:
    """An entrywise operation whose arrays all grow into its shape, none having it: a column
    against a row, ``[N, 1] − [N]`` giving [N, N] (the classic slip of a regression)."""
    arrays = [a for a in node.args if a.shape]
    return (OPERATIONS[node.op].elementwise and node.rank >= 2 and len(arrays) >= 2
            and all(a.shape != node.shape for a in arrays))


def outer_broadcast_note(node: Node, printer: Printer) -> str:
    shapes = " against ".join(shape_str(a.shape) for a in node.args if a.shape)
    return (f"{printer(node)} broadcasts {shapes} to {shape_str(node.shape)}: NumPy lines up "
            "the last axes, so every entry of one meets every entry of the other. If one result "
            "per entry was meant, give the operands the same shape.")


STANDARDIZE_NOTE = ("standardize(x, axis, ε) = (x − mean(x)) / √(var(x) + ε) along the axis, the "
                    "layer or batch norm the program spells out, which generated code computes "
                    "as one operation; its gradient is (G − mean(G) − x̂ ⊙ mean(G ⊙ x̂)) / "
                    "√(var(x) + ε), x̂ = standardize(x) (CS231n).")

HADAMARD_POWER_NOTE = ("A^⊙k is the entrywise (Hadamard) power of a square matrix A, `A ** k` "
                       "in a program; Aᵏ is the matrix power A A ⋯ A, `matrix_power(A, k)`.")

GELU_NOTE = ("gelu′(x) = Φ(x) + x φ(x), Φ and φ being the standard normal's distribution "
             "function and density.")

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


def at_equals(lines: list[str]) -> list[str]:
    """Equations with their first ``=`` as the alignment point ``&=``."""
    return [line.replace(" = ", " &= ", 1) for line in lines]


def shape_json(shape: tuple) -> list[int | str]:
    """A shape for JSON: numbers as numbers, symbolic sizes as their names."""
    return [int(d) if d.is_Integer else str(d) for d in shape]
