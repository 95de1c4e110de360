"""The Python API of ``matcalc derive``, ``jacobian`` and ``hessian``: the drivers that run
reverse mode and read Jacobians and Hessians off its results. They return
:class:`~matcalc.forms.rendering.Derivation` data; :mod:`matcalc.forms.rendering` presents it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import replace

from matcalc.core.algebra import simplified
from matcalc.core.engine import vector_jacobian_products
from matcalc.core.ir import (
    Node,
    const,
    depends_on,
    has_property,
    is_labels,
    is_symmetric,
    make,
    one_entry,
    postorder,
    shape_str,
    var,
)
from matcalc.core.rewrites import tidy
from matcalc.core.simplify import add, mul, new_axis, rebuild, reduce_sum, transpose
from matcalc.errors import MatcalcError, NotDerived
from matcalc.forms.index_form import index_form
from matcalc.forms.kronecker import kronecker_matrix
from matcalc.forms.linear_map import linear_matrix, probe
from matcalc.forms.rendering import (
    EMBEDDING_NOTE,
    HESSIAN_VEC_NOTE,
    INDEX_NOTE,
    LAYOUT_NOTE,
    MAX_INLINE_SIZE,
    SCALAR_NUMERATOR_NOTE,
    TOO_LONG_NOTE,
    VEC_NOTE,
    Derivation,
    notes,
    weight,
)
from matcalc.forms.results import Gradient
from matcalc.language.lowering import Program, names_of, parse
from matcalc.language.syntax import identifier

__all__ = ["LAYOUTS", "Derivation", "Gradient", "derive", "hessian", "jacobian"]

MAX_HESSIAN_GRADIENT = 6000
"""Largest gradient (in operations) whose full Hessian is derived."""
MAX_HVP_GRADIENT = 20000
"""Largest gradient (in operations) whose Hessian-vector product is derived."""


def derive(
    source: str | Program,
    wrt: Sequence[str],
    declarations: Sequence[str] = (),
    steps: bool = False,
    inline: bool = False,
    differential: bool = False,
) -> Derivation:
    """Gradients of the program's scalar function with respect to each name in ``wrt``.

    A gradient too long to read inline is given with error signals δ unless ``inline``; with
    ``differential``, the differential of every intermediate too (forward mode).
    """
    wrt = names_of(wrt)
    program = (source if isinstance(source, Program) else parse(source, declarations)
               ).through(wrt)
    f = program.function
    if f.shape and one_entry(f.shape):                    # a 1×1 matrix: its one entry
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
    written = written_out(program, [*adjoints.values(), *(s.expr for s in signals)], targets)
    signals = [replace(s, expr=written[s.expr]) for s in signals]
    gradients = [Gradient(name, node, symmetric_part(node, written[adjoints[node]]))
                 for name, node in zip(wrt, targets, strict=True)]
    if not steps and not inline and not too_long and max(map(weight, (
            g.expr for g in gradients))) > MAX_INLINE_SIZE:
        return derive(program, wrt, steps=True, inline=False).with_note(TOO_LONG_NOTE)
    stepwise = steps or too_long or differential
    shown = [*(s.expr for s in signals), *([f] if stepwise else [])]
    result = Derivation(program, gradients, signals, notes(program, gradients, shown),
                        stepwise=stepwise,
                        differentials=differentials(program, wrt) if differential else [])
    return result.with_note(TOO_LONG_NOTE) if too_long else result


def derivative(program: Program, wrt: Sequence[str], steps: bool = False,
               differential: bool = False, layout: str | None = None) -> Derivation:
    """What ``matcalc derive`` shows (the command line, the notebook and the playground alike):
    gradients, with their steps or differentials, for a scalar function; the Jacobian (with the
    differentials) for an array-valued one, or in numerator ``layout``."""
    entry = one_entry(program.function.shape)                    # scalars, 1×1 matrices
    if entry and layout != "numerator":
        return derive(program, wrt, steps=steps, differential=differential)
    if steps and entry:
        raise MatcalcError("--steps shows backpropagation, which gives the gradient in "
                           "denominator layout (shaped like the variable); --layout numerator "
                           "asks for its transpose, a Jacobian, which is shown without steps. "
                           "Leave out one of the two (--differential shows forward mode in "
                           "either layout)")
    if steps:
        raise MatcalcError("--steps shows backpropagation for gradients of scalar functions; "
                           "leave it out for a Jacobian (--differential shows forward mode for "
                           "any function)")
    result = jacobian(program, wrt, layout=layout or "numerator")
    if differential:
        result.differentials, result.stepwise = differentials(program, wrt), True
    return result


def written_out(program: Program, exprs: Sequence[Node], free: Sequence[Node] = ()
                ) -> dict[Node, Node]:
    """Each derivative as a person writes it down: elementwise algebra in its shortest form,
    named intermediates by their names, then the recognitions and simplifications. What is
    known of an intermediate (its definition, its symmetry) is not used for the ``free`` ones,
    the variables of the derivative, which it treats as independent."""
    names = {d: n for d, n in definitions(program).items() if n not in free}
    algebra = simplified(exprs, names, frozenset(free))
    symmetric = frozenset(n for n in program.intermediates.values()
                          if is_symmetric(n.args[0]) and n not in free)
    tidied = tidy([algebra[e] for e in exprs], symmetric)
    changed = [tidied[algebra[e]] for e in exprs if tidied[algebra[e]] is not algebra[e]]
    again = simplified(changed, names, frozenset(free))    # diag(a) diag(b) is diag(a ⊙ b)
    tidied = {before: again.get(after, after) for before, after in tidied.items()}
    named = {x for x in free if x.op == "named"}
    return {e: still_reading(algebra[e], tidied[algebra[e]], named) for e in exprs}


def still_reading(before: Node, after: Node, free: set[Node]) -> Node:
    """``after``, unless a recognition read through the name of a ``free`` intermediate that
    ``before`` reads (1 / (1 + t) with t = exp(a) is σ(−a), equal, but no longer a function of
    t to differentiate again): then ``before``."""
    needed = free & set(postorder([before])) if free else set()
    return after if needed <= set(postorder([after])) else before


def written(program: Program, gradient: Gradient) -> Gradient:
    """``gradient`` with its expression written out."""
    free = [gradient.node]
    return replace(gradient, expr=written_out(program, [gradient.expr], free)[gradient.expr])


def definitions(program: Program) -> dict[Node, Node]:
    """Each named intermediate's definition, to the name that writes it."""
    return {node.args[0]: node for node in program.intermediates.values()
            if node.args[0].op not in ("var", "const", "broadcast", "zeros", "identity")}


def symmetric_part(x: Node, g: Node) -> Node:
    """For a symmetric variable, the gradient within symmetric matrices: (G + Gᵀ) / 2."""
    if not has_property(x, "symmetric") or is_symmetric(g):
        return g
    return (g + transpose(g)) / 2


# ----------------------------------------------------------------------------------------------
# Jacobians, Hessians and Hessian-vector products

LAYOUTS = ("numerator", "denominator")


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

    The rules give ∂(ūᵀ f)/∂x = Jᵀ ū for a probe ū; ``linear_map.linear_matrix`` reads off Jᵀ
    (denominator layout), transposed for numerator layout.
    """
    wrt = names_of(wrt)
    program = (source if isinstance(source, Program) else parse(source, declarations)
               ).through(wrt)
    f = program.function
    if not f.shape:
        result = derive(program, wrt)
        if layout == "numerator":
            result.gradients = [replace(g, expr=numerator_form(g.expr), kind="jac")
                                for g in result.gradients]
            result.notes.append(SCALAR_NUMERATOR_NOTE.format(f=result.f))
        return result
    u = probe(f.shape)
    targets = [program.lookup(name) for name in wrt]
    symmetric = [name for name, x in zip(wrt, targets, strict=True)
                 if has_property(x, "symmetric")]
    if symmetric:
        raise NotDerived(
            f"{symmetric[0]} is symmetric, and a Jacobian with respect to it acts on symmetric "
            f"directions only, so it has no matrix here (a scalar's gradient in {symmetric[0]} "
            f"is the symmetric one, (G + Gᵀ)/2); --emit jvp gives the derivative along a "
            f"symmetric direction, or declare {symmetric[0]} without `symmetric` for the "
            "unconstrained Jacobian")
    adjoints, _ = vector_jacobian_products(reduce_sum(u * f), targets)
    gradients = [jacobian_of(program.function_name, name, x, adjoints[x], u, layout)
                 if x.rank or f.rank < 2 else entrywise(program, name)
                 for name, x in zip(wrt, targets, strict=True)]
    result = Derivation(program, gradients, notes=notes(program, gradients))
    if all(g.kind == "jac" and not g.node.rank for g in gradients):
        result.notes.append(ENTRYWISE_NOTE.format(f=result.f))
        return result
    x_name = wrt[0] if len(wrt) == 1 else "x"
    vectorised = any(g.kind == "kron" for g in gradients)
    note = VEC_NOTE if vectorised else LAYOUT_NOTE[layout]
    if any(g.index for g in gradients):
        note += INDEX_NOTE
    if any(n.op == "diag_embedding" for g in gradients for n in postorder([g.expr])):
        note += EMBEDDING_NOTE
    result.notes.append(note.format(f=result.f, x=x_name, layout=layout))
    return result


ENTRYWISE_NOTE = ("∂{f}/∂x for a number x is shaped like {f}: each entry's derivative (the "
                  "Matrix Cookbook's ∂Y/∂x), which forward mode gives without a Jacobian.")


def entrywise(program: Program, name: str) -> Gradient:
    """∂F/∂x of a matrix function F of a number x: the matrix of the entries' derivatives,
    F's tangent along dx = 1 (∂Y⁻¹/∂x = −Y⁻¹ (∂Y/∂x) Y⁻¹, not a vec column)."""
    x = program.lookup(name)
    return Gradient(name, x, tangent(program, {name: const(1)}), kind="jac")


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
    wrt: str | Sequence[str],
    declarations: Sequence[str] = (),
    direction: str | None = None,
) -> Derivation:
    """∂²f/∂x² in matrix form, or with ``direction`` the product H v without forming H.

    The gradient g(x) is differentiated again by the same rules: H is the Jacobian of g,
    H v the gradient of gᵀ v. Every operation a rule emits has a rule itself.
    """
    names = names_of(wrt)
    if len(names) != 1:
        raise MatcalcError(f"hessian takes one variable, not {len(names)}: the Hessian in "
                           "several together is applied by --emit hvp (lambdify(..., "
                           "emit=('hvp',)))")
    wrt = names[0]
    program = (source if isinstance(source, Program) else parse(source, declarations)
               ).through([wrt])
    x = program.lookup(wrt)
    f = program.function
    if not one_entry(f.shape):
        raise MatcalcError(
            f"`{program.function_name}` has shape {shape_str(f.shape)}; a Hessian needs a scalar "
            "function. Reduce it first (sum, mean, norm …), or take its Jacobian (derive).")
    g = derive(program, [wrt], inline=True).gradients[0].expr   # in full: no δ to stop at
    operations = len(postorder([g]))
    if operations > MAX_HVP_GRADIENT:
        raise MatcalcError(
            f"the gradient ∂{program.function_name}/∂{wrt} has {operations:,} operations; "
            f"matcalc differentiates gradients of up to {MAX_HVP_GRADIENT:,} operations again: "
            "shorten the program, or take Hessian-vector products of the torch target with "
            "torch.func.jvp.")
    if direction is not None:
        symmetric = has_property(x, "symmetric")      # a direction within symmetric matrices
        v = program.add_variable(identifier(direction, "--hvp"), x.shape, symmetric)
        (product,) = hessian_vector_products(program, [wrt], [v])
        hvp = Gradient(wrt, x, product, kind="hvp", direction=direction)
        return Derivation(program, [hvp], notes=[
            f"{direction} is the direction, shaped like {wrt}"
            + (f" and symmetric as {wrt} is" if symmetric else "")
            + f"; H {direction} costs about two gradients and never forms H."])
    if operations > MAX_HESSIAN_GRADIENT:
        raise MatcalcError(
            f"the gradient ∂{program.function_name}/∂{wrt} has {operations:,} operations; "
            f"matcalc writes full Hessians of gradients up to {MAX_HESSIAN_GRADIENT:,}. Use "
            f"--hvp V for Hessian-vector products (about two gradients' work).")
    if x.rank == 0:
        second, _ = vector_jacobian_products(g, [x])
        return Derivation(program, [written(program, Gradient(wrt, x, second[x], kind="hess"))])
    if has_property(x, "symmetric"):
        raise MatcalcError(f"{wrt} is symmetric: its Hessian acts on symmetric directions only; "
                           f"use --hvp V for the product H V (V symmetric) in matrix form")
    u = probe(x.shape)
    adjoints, _ = vector_jacobian_products(reduce_sum(u * g), [x])
    h = written(program, jacobian_of(program.function_name, wrt, x, adjoints[x], u,
                                     "denominator"))
    if h.kind == "jac":
        return Derivation(program, [replace(h, kind="hess", index="")])
    index = index_form(h.expr, x.shape, x.shape, program.function_name, wrt, second=True)
    if x.rank == 1:                                     # vec(x) is x for a vector
        kron = any(n.op == "kron" for n in postorder([h.expr]))
        return Derivation(program, [replace(h, kind="hess", index=index if kron else "")])
    note = HESSIAN_VEC_NOTE.format(f=program.function_name, x=wrt)
    if index:
        note += f" The index form gives each entry, ∂²{program.function_name}/∂{wrt}ᵢⱼ∂{wrt}ₖₗ."
    return Derivation(program, [replace(h, kind="hess_kron", index=index or "")], notes=[note])


def hessian_vector_products(program: Program, wrt: Sequence[str], directions: Sequence[Node]
                            ) -> list[Node]:
    """H v for the Hessian of f in all of ``wrt`` together: (H v)ₓ = ∂⟨∇f, v⟩/∂x, summed over
    every variable's gradient and its direction (each shaped like its variable), H never formed."""
    program = program.through(wrt)
    targets = [program.lookup(name) for name in wrt]
    gradients = derive(program, wrt, inline=True).gradients
    pairing = add(*(reduce_sum(g.expr * v) for g, v in zip(gradients, directions, strict=True)))
    adjoints, _ = vector_jacobian_products(pairing, targets)
    products = [symmetric_part(x, adjoints[x]) for x in targets]
    written = written_out(program, products, targets)
    return [written[p] for p in products]


def tangent(program: Program, tangents: Mapping[str, Node]) -> Node:
    """Forward mode: the directional derivative of f along ``tangents`` (a direction per
    variable), shaped like f, written out."""
    program = program.through(list(tangents))
    targets = {program.lookup(name): t for name, t in tangents.items()}
    result = directional(program.function, targets)
    return written_out(program, [result], list(targets))[result]


def directional(f: Node, tangents: Mapping[Node, Node]) -> Node:
    """Σₓ Jₓ tₓ, the derivative of ``f`` along a tangent per node: reverse mode gives
    ∂⟨ū, f⟩/∂x = Jₓᵀ ū, linear in the probe ū, so Σₓ Jₓ tₓ = ∂(Σₓ ⟨Jₓᵀ ū, tₓ⟩)/∂ū, free of ū:
    no Jacobian is formed."""
    u = probe(f.shape)
    adjoints, _ = vector_jacobian_products(reduce_sum(u * f), list(tangents))
    pairing = add(*(reduce_sum(adjoints[x] * t) for x, t in tangents.items()))
    return vector_jacobian_products(pairing, [u])[0][u]


def differentials(program: Program, wrt: Sequence[str]) -> list[tuple[str, Node, Node]]:
    """Forward mode as Magnus & Neudecker write it: for each named intermediate that depends
    on ``wrt`` (and f), its differential in terms of the differentials of what it reads,
    ``dZ1 = dX W1 + X dW1``: ``(name, node, d node)``, each read as a variable of its own."""
    program = program.through(wrt)
    targets = {program.lookup(name) for name in wrt}
    f = program.function
    named = {**{n: node for n, node in program.intermediates.items()},
             **({} if f.op == "named" else {program.function_name: f})}
    varying = depends_on([f], targets)
    found = []
    for name, node in named.items():
        if node not in varying:
            continue
        definition = node.args[0] if node.op == "named" else node
        inputs = [a for a in postorder([definition], stop=lambda n: n.op == "named")
                  if a in targets or (a.op == "named" and a in varying)]
        leaves = {a: a if a.op == "var" else var(a.attrs.name, a.shape) for a in inputs}
        d = {leaf: var(f"d{a.attrs.name}", a.shape, has_property(a, "symmetric"),
                       properties=("differential",)) for a, leaf in leaves.items()}
        expr = directional(with_leaves(definition, leaves), d)
        free = [*leaves.values(), node]            # its own name does not write its own d
        found.append((name, node, trace_form(written_out(program, [expr], free)[expr])))
    return found


def trace_form(d: Node) -> Node:
    """A differential's terms sum(G ⊙ dX) as Magnus & Neudecker write them: tr(Gᵀ dX) for a
    matrix dX (d log det X = tr(X⁻¹ dX)), gᵀ dx for a vector."""
    memo: dict[Node, Node] = {}
    for n in postorder([d]):
        args = tuple(memo[a] for a in n.args)
        memo[n] = inner_product(n) or (n if args == n.args else make(n.op, args, n.attrs))
    return memo[d]


def inner_product(n: Node) -> Node | None:
    """tr(Gᵀ dX) or gᵀ dx for ``n`` = sum(G ⊙ dX), dX a differential; else None."""
    if n.op != "sum" or n.attrs.axis is not None or n.args[0].op != "mul":
        return None
    factors = n.args[0].args
    d = [f for f in factors if has_property(f, "differential") and f.rank in (1, 2)]
    if len(d) != 1 or any(f.shape not in ((), d[0].shape) for f in factors):
        return None
    g = mul(*(f for f in factors if f is not d[0]))
    if d[0].rank == 1:
        return make("matmul", (g, d[0]))
    gt = g if is_symmetric(g) else transpose(g)
    if g.op == "add" and gt.op == "add" and gt is not g:   # (A − B)ᵀ, not Aᵀ − Bᵀ
        gt = make("transpose", (g,))
    return make("trace", (make("matmul", (gt, d[0])),))


def with_leaves(node: Node, leaves: Mapping[Node, Node]) -> Node:
    """``node`` with the nodes ``leaves`` maps replaced (named intermediates not entered)."""
    memo = dict(leaves)
    for n in postorder([node], stop=lambda n: n in memo or n.op == "named"):
        if n not in memo:
            memo[n] = n if n.op == "named" or not n.args else rebuild(
                n, tuple(memo[a] for a in n.args))
    return memo[node]
