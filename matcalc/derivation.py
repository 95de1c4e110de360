"""The Python API of ``matcalc derive``: a derivation and its text, LaTeX, NumPy and JSON forms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import sympy

from matcalc.codegen import numpy_block
from matcalc.engine import Step, vector_jacobian_products
from matcalc.errors import MatcalcError
from matcalc.ir import Node, is_zero, postorder, shape_str
from matcalc.printing import LATEX, TEXT, Printer, Weigher, to_latex, to_text
from matcalc.program import Program, parse
from matcalc.sympy_bridge import to_sympy


@dataclass(frozen=True)
class Gradient:
    """∂f/∂wrt, shaped like ``wrt`` (gradient layout)."""

    wrt: str
    node: Node
    expr: Node

    @property
    def shape(self) -> tuple:
        return self.node.shape


@dataclass
class Derivation:
    """Gradients of a program's scalar function, optionally with its chain-rule steps."""

    program: Program
    gradients: list[Gradient]
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def f(self) -> str:
        return self.program.function_name

    def partial(self, name: str, notation=TEXT) -> str:
        """``∂f/∂x`` in the notation."""
        if notation is LATEX:
            f, x = notation.symbol(self.f), notation.symbol(name)
            return rf"\frac{{\partial {f}}}{{\partial {x}}}"
        return f"∂{self.f}/∂{name}"

    # -- text ------------------------------------------------------------------------------

    def text(self) -> str:
        """One line per variable: ``∂f/∂x = (A + Aᵀ) x   [n]``; with steps, the derivation."""
        printer = Printer(TEXT)
        rows = [(self.partial(g.wrt), printer(g.expr), g.shape) for g in self.gradients]
        if not self.steps:
            return aligned(rows) + self.notes_text()
        forward = [(name, printer(node.args[0]), node.shape)
                   for name, node in self.program.intermediates.items()]
        signals = [(f"δ{s.label} = {self.partial(s.name)}", printer(s.expr), s.node.shape)
                   for s in self.steps]
        parts = ["Forward pass:", aligned(forward, indent="  ")]
        if signals:
            parts += [f"Backward pass (error signals δ = ∂{self.f}/∂·, each shaped like what it "
                      "differentiates):", aligned(signals, indent="  ")]
        parts += ["Gradients (each shaped like its variable):", aligned(rows, indent="  ")]
        return "\n".join(parts) + self.notes_text()

    def notes_text(self) -> str:
        return "".join(f"\nnote: {note}" for note in self.notes)

    def latex(self) -> str:
        """LaTeX lines, one equation per variable (error signals first with steps)."""
        printer = Printer(LATEX)
        lines = [rf"\delta_{{{s.label}}} = {self.partial(s.name, LATEX)} = {printer(s.expr)}"
                 for s in self.steps]
        lines += [f"{self.partial(g.wrt, LATEX)} = {printer(g.expr)}" for g in self.gradients]
        return " \\\\\n".join(lines)

    def _repr_latex_(self) -> str:
        return "$$\\begin{aligned}" + self.latex().replace(" = ", " &= ", 1) + "\\end{aligned}$$"

    # -- code ------------------------------------------------------------------------------

    def numpy(self) -> str:
        """Python statements assigning ``grad_<NAME>``; shared work computed once."""
        return self.code_for(self.gradients)

    def code_for(self, gradients: Sequence[Gradient]) -> str:
        outputs = [(f"delta{s.label}", s.expr) for s in self.steps]
        outputs += [(f"grad_{g.wrt}", g.expr) for g in gradients]
        return numpy_block(outputs, list(self.program.variables.values())).source()

    def json(self) -> list[dict]:
        """``[{wrt, shape, text, latex, numpy}]``, one object per variable."""
        return [
            {
                "wrt": g.wrt,
                "shape": [int(d) if d.is_Integer else str(d) for d in g.shape],
                "text": to_text(g.expr),
                "latex": to_latex(g.expr),
                "numpy": self.code_for([g]),
            }
            for g in self.gradients
        ]

    def to_sympy(self) -> dict[str, sympy.Expr]:
        """Each gradient as a SymPy matrix expression, for display."""
        return {g.wrt: to_sympy(g.expr) for g in self.gradients}


def aligned(rows: Sequence[tuple[str, str, tuple]], indent: str = "") -> str:
    """``name = formula   [shape]`` lines with the shapes in one column."""
    lines = [f"{indent}{name} = {formula}" for name, formula, _ in rows]
    width = max((len(line) for line in lines), default=0)
    return "\n".join(f"{line.ljust(width)}   {shape_str(shape)}"
                     for line, (_, _, shape) in zip(lines, rows, strict=True))


MAX_INLINE_SIZE = 400
TOO_LONG_NOTE = (f"written out in full a gradient would have more than {MAX_INLINE_SIZE} terms; "
                 "it is shown with named error signals δ instead.")

CE_NOTE = ("softmax_cross_entropy(Z, Y): ∂/∂Z = (softmax(Z) − Y) / N assumes each row of the "
           "targets sums to 1 (one-hot labels or probabilities).")


def derive(
    source: str | Program,
    wrt: Sequence[str],
    declarations: Sequence[str] = (),
    steps: bool = False,
) -> Derivation:
    """Gradients of the program's scalar function with respect to each name in ``wrt``."""
    program = source if isinstance(source, Program) else parse(source, declarations)
    f = program.function
    if f.shape:
        raise MatcalcError(
            f"`{program.function_name}` has shape {shape_str(f.shape)}; derive takes the gradient "
            "of a scalar function. Reduce it first, e.g. sum(...), mean(...) or norm(...).")
    if not wrt:
        raise MatcalcError("name at least one variable to differentiate with --wrt NAME")
    targets = [program.lookup(name) for name in wrt]
    adjoints, signals = vector_jacobian_products(f, targets, steps=steps)
    gradients = [Gradient(name, node, adjoints[node]) for name, node in zip(wrt, targets,
                                                                             strict=True)]
    if not steps and max(Weigher()(g.expr)[0] for g in gradients) > MAX_INLINE_SIZE:
        result = derive(program, wrt, steps=True)
        result.notes.append(TOO_LONG_NOTE)
        return result
    return Derivation(program, gradients, signals, notes(program, gradients))


def notes(program: Program, gradients: Sequence[Gradient]) -> list[str]:
    """What a careful reader should know about these results."""
    found: list[str] = []
    depends = set(postorder([program.function]))
    for g in gradients:
        if is_zero(g.expr) and g.node not in depends:
            found.append(f"{program.function_name} does not depend on {g.wrt}; "
                         "its gradient is zero.")
    if any(n.op == "softmax_cross_entropy" for n in depends):
        found.append(CE_NOTE)
    return found
