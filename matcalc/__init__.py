"""matcalc: matrix calculus the way people do it on paper, only right every time.

The package is laid out as its data flows (see the README's Design section):

- :mod:`matcalc.language`: source text → tokens and a syntax tree → lowered to the typed IR;
- :mod:`matcalc.core`: the IR, the simplifier, the operations with their rules, reverse mode;
- :mod:`matcalc.forms`: printers, Jacobian, Kronecker and index forms, generated code;
- :mod:`matcalc.proofs`: finite differences, independent references, verify, the fuzz gate;
- :mod:`matcalc.applications`: initialisation variances, training, figures;
- :mod:`matcalc.cli`: the command line.

A stage imports only the stages before it (the core first: every stage speaks its IR).
:mod:`matcalc.errors` is shared by all. :mod:`matcalc.testing` and :mod:`matcalc.verify` are
the public faces of the proofs used in test suites, :mod:`matcalc.training` and
:mod:`matcalc.variance` those of the applications.
"""

from matcalc.errors import MatcalcError
from matcalc.forms.derivation import Derivation, Gradient, derive, hessian, jacobian
from matcalc.forms.generated import generate, lambdify
from matcalc.language.lowering import Program, parse

__all__ = [
    "Derivation",
    "Gradient",
    "MatcalcError",
    "Program",
    "derive",
    "generate",
    "hessian",
    "jacobian",
    "lambdify",
    "parse",
]


def load_ipython_extension(ipython) -> None:
    """``%load_ext matcalc``: the ``%%matcalc`` cell magic (:mod:`matcalc.cli.notebook`)."""
    from matcalc.cli.notebook import register
    register(ipython)
