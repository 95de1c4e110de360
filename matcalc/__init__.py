"""matcalc: matrix calculus the way people do it on paper, only right every time.

Data flow: source text → :mod:`matcalc.syntax` (parser) → :mod:`matcalc.program` (typed tensor IR
of :mod:`matcalc.ir`) → :mod:`matcalc.engine` (reverse mode with the rules of
:mod:`matcalc.rules`, simplified by :mod:`matcalc.simplify`) → :mod:`matcalc.printing` (text,
LaTeX) and :mod:`matcalc.codegen` (NumPy) → :mod:`matcalc.numeric` (finite-difference checks).
"""

from matcalc.derivation import Derivation, Gradient, derive, hessian, jacobian
from matcalc.errors import MatcalcError
from matcalc.module import lambdify
from matcalc.program import Program, parse

__all__ = [
    "Derivation",
    "Gradient",
    "MatcalcError",
    "Program",
    "derive",
    "hessian",
    "jacobian",
    "lambdify",
    "parse",
]
