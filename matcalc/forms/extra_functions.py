"""What a generated module computes beyond ``value`` and ``value_and_grad``: Jacobians,
Hessians, Hessian-vector products and forward-mode tangents (``codegen --emit``).

Each function is described here as data, its arguments and the IR expressions it returns,
derived by :mod:`matcalc.forms.derivation`; :mod:`matcalc.forms.generated` emits it as it emits
the gradient, in NumPy or PyTorch:

- ``value_and_jacobian(**arrays) -> (value, {name: J})``, in the layout of ``derive --layout``;
- ``hessian(**arrays) -> {name: H}``, ∂²f/∂x² (∂²f/∂vec(X)² for a matrix X);
- ``hvp(**arrays, v) -> {name: H v}``, H never formed: ``v`` is an array shaped like the one
  variable, or a dictionary of them by name for several (the Hessian in all of them together);
- ``jvp(**arrays, tangents) -> (value, tangent)``, the directional derivative of the value
  along ``tangents`` (a dictionary by name; a variable left out has tangent 0), no Jacobian
  formed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from matcalc.core.ir import Node, has_property, one_entry
from matcalc.errors import MatcalcError
from matcalc.forms.derivation import hessian, hessian_vector_products, jacobian, tangent
from matcalc.language.lowering import Program

EMITS = ("grad", "jacobian", "hessian", "hvp", "jvp")
"""What ``codegen --emit`` can add; ``grad`` is ``value_and_grad``, the default."""


@dataclass(frozen=True)
class Extra:
    """One generated function: ``name(*arrays, *params)``, whose body binds ``inputs`` from
    ``params`` (``bindings``: the input's name, the code giving it, the variable it is shaped
    like), computes ``outputs`` and returns them by name (a dictionary), after the value when
    ``with_value``, or the one output itself after it when ``single``."""

    name: str
    doc: str
    params: list[str]
    inputs: list[Node]
    bindings: list[tuple[str, str, str]]
    outputs: list[tuple[str, Node]]
    with_value: bool = False
    single: bool = False
    keyed: tuple[str, bool] | None = None
    """The parameter that is a dictionary by variable name, and whether every name is in it."""


def extras(program: Program, wrt: Sequence[str], emit: Sequence[str], fresh,
           layout: str | None = None) -> list[Extra]:
    """The functions ``emit`` asks for (``grad`` aside), for ``program`` (its function not
    seeded) and the variables ``wrt``; ``fresh(stem)`` allocates a name for generated code."""
    makers = {"jacobian": jacobian_function, "hessian": hessian_function,
              "hvp": hvp_function, "jvp": jvp_function}
    return [makers[e](copied(program), list(wrt), fresh, layout)
            for e in EMITS if e in emit and e != "grad"]


def copied(program: Program) -> Program:
    """A copy whose new variables (directions, tangents) leave ``program`` as it was."""
    return dataclasses.replace(program, variables=dict(program.variables))


def needs_scalar(program: Program, what: str) -> None:
    """A scalar function, or a 1×1 matrix (its one entry)."""
    if not one_entry(program.function.shape):
        raise MatcalcError(f"--emit {what} needs a scalar function; "
                           f"`{program.function_name}` is not (use --emit jacobian, jvp)")


def jacobian_function(program: Program, wrt: list[str], fresh, layout: str | None) -> Extra:
    chosen = layout or ("numerator" if program.function.shape else "denominator")
    result = jacobian(program, wrt, layout=chosen)
    outputs = [(g.wrt, g.expr) for g in result.gradients]
    return Extra("value_and_jacobian", f"The value and its Jacobian with respect to each of "
                 f"{', '.join(wrt)} ({chosen} layout).", [], [], [], outputs, with_value=True)


def hessian_function(program: Program, wrt: list[str], fresh, layout: str | None) -> Extra:
    needs_scalar(program, "hessian")
    symmetric = [name for name in wrt if has_property(program.lookup(name), "symmetric")]
    if symmetric:
        others = [name for name in wrt if name not in symmetric]
        raise MatcalcError(
            f"--emit hessian: {symmetric[0]} is symmetric, and its Hessian acts on symmetric "
            "directions only, so it has no matrix here; --emit hvp gives H V for a symmetric V"
            + (f", and --emit hessian with --wrt {' --wrt '.join(others)} alone gives the "
               "other Hessians" if others else ""))
    outputs = [(name, hessian(copied(program), name).gradients[0].expr) for name in wrt]
    return Extra("hessian", "∂²f/∂x² for each x (∂²f/∂vec(X)² for a matrix X, vec stacking "
                 "columns).", [], [], [], outputs)


def hvp_function(program: Program, wrt: list[str], fresh, layout: str | None) -> Extra:
    needs_scalar(program, "hvp")
    v = fresh("v")
    directions = [program.add_variable(fresh(f"{v}_{name}"), program.lookup(name).shape,
                                       has_property(program.lookup(name), "symmetric"))
                  for name in wrt]
    products = hessian_vector_products(program, wrt, directions)
    if len(wrt) == 1:
        doc = (f"H {v} for the Hessian H of f in {wrt[0]}, {v} shaped like {wrt[0]} (or a "
               f"dictionary {{'{wrt[0]}': {v}}}); H is never formed.")
        bindings = [(directions[0].attrs.name,
                     f'{v}["{wrt[0]}"]', wrt[0])]        # or v itself: see generated.bound
    else:
        doc = (f"H {v} for the Hessian H of f in {', '.join(wrt)} together, {v} a dictionary of "
               "directions by name (each shaped like its variable); H is never formed.")
        bindings = [(d.attrs.name, f'{v}["{name}"]', name)
                    for d, name in zip(directions, wrt, strict=True)]
    return Extra("hvp", doc, [v], directions, bindings, list(zip(wrt, products, strict=True)),
                 keyed=(v, True))


def jvp_function(program: Program, wrt: list[str], fresh, layout: str | None) -> Extra:
    t = fresh("tangents")
    tangents = {name: program.add_variable(fresh(f"t_{name}"), program.lookup(name).shape,
                                           has_property(program.lookup(name), "symmetric"))
                for name in wrt}
    out = tangent(program, tangents)
    bindings = [(node.attrs.name, f'{t}["{name}"] if "{name}" in {t} else 0 * {name}', name)
                for name, node in tangents.items()]
    return Extra("jvp", f"The value and its directional derivative along {t} (a dictionary "
                 f"by name of arrays shaped like {', '.join(wrt)}; one left out is 0); no "
                 "Jacobian is formed.", [t], list(tangents.values()), bindings,
                 [("tangent", out)], with_value=True, single=True, keyed=(t, False))
