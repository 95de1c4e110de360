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

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matcalc.errors import MatcalcError

if TYPE_CHECKING:
    from matcalc.forms.derivation import Derivation, Gradient, derive, hessian, jacobian
    from matcalc.forms.generated import generate, lambdify
    from matcalc.language.lowering import Program, parse


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use: SymPy, NumPy and the code generators load only
    when something is derived, so that ``import matcalc`` stays quick."""
    if name in ("Derivation", "Gradient", "derive", "hessian", "jacobian"):
        from matcalc.forms import derivation as module
    elif name in ("generate", "lambdify"):
        from matcalc.forms import generated as module
    elif name in ("Program", "parse"):
        from matcalc.language import lowering as module
    else:
        raise AttributeError(f"module 'matcalc' has no attribute {name!r}")
    value = globals()[name] = getattr(module, name)
    return value


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
