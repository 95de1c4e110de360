"""What differentiation returns: the derivatives of a program's function, its error signals
and the notes a careful reader needs. Data only; :mod:`matcalc.forms.rendering` presents it."""

from __future__ import annotations

from dataclasses import dataclass, field

from matcalc.core.engine import Step
from matcalc.core.ir import Node, delta, postorder
from matcalc.language.lowering import Program


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
class Result:
    """Gradients of a program's scalar function, optionally with its chain-rule steps."""

    program: Program
    gradients: list[Gradient]
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stepwise: bool = False
    """Shown as a derivation (forward pass, error signals, gradients), even with no δ."""
    differentials: list[tuple[str, Node, Node]] = field(default_factory=list)
    """Forward mode: each intermediate's name, node and differential (``dZ1 = dX W1 + …``)."""

    @property
    def f(self) -> str:
        return self.program.function_name

    @property
    def names(self) -> frozenset[str]:
        """The program's names (so that printed symbols never look like one of them)."""
        p = self.program
        return frozenset([*p.variables, *p.intermediates, *map(str, p.dims)])

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

    def with_note(self, note: str) -> Result:
        self.notes.append(note)
        return self

    def signals(self) -> list[tuple[Node, Node]]:
        """The error signals as ``(δ leaf, expression)``, for the code emitters."""
        return [(delta(s.label, s.name, s.node.shape), s.expr) for s in self.steps]
