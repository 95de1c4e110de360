"""A program at concrete sizes: the memory its arrays need, refused above a budget."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal

import sympy

from matcalc.core.ir import Dim, Node, postorder, shape_str
from matcalc.errors import MatcalcError
from matcalc.language.lowering import Program

MEMORY_BUDGET = 4 * 10**9
"""Most bytes of float64 arrays a command may need (every variable and intermediate, once)."""


def check_memory(program: Program, sizes: Mapping[str, int], hint: str,
                 extra: Iterable[Node] = ()) -> None:
    """MatcalcError, before anything is allocated, when the program's variables and
    intermediates (and the ``extra`` expressions) at ``sizes`` would need more than
    ``MEMORY_BUDGET`` bytes as float64."""
    roots = [*program.variables.values(), *program.intermediates.values(), *extra]
    nodes = postorder([*roots, *([program.function] if program.function is not None else [])])
    entries = [(math.prod(concrete_shape(node.shape, sizes)), node) for node in nodes]
    total = 8 * sum(count for count, _ in entries)
    if total <= MEMORY_BUDGET:
        return
    count, largest = max(entries, key=lambda pair: pair[0])
    name = f"`{largest.attrs.name}` " if largest.op in ("var", "named") else "an intermediate "
    used = sorted({str(s) for _, node in entries for d in node.shape for s in d.free_symbols})
    at = ", ".join(f"{d} = {sizes[d]}" for d in used if d in sizes)
    raise MatcalcError(
        f"the arrays would need {gigabytes(total)} GB{' at ' + at if at else ''} (the largest, "
        f"{name}{shape_str(largest.shape)}, {gigabytes(8 * count)} GB), more than the "
        f"{gigabytes(MEMORY_BUDGET)} GB matcalc allows", hint=hint)


def size_of(dim: Dim, sizes: Mapping[str, int]) -> int:
    """A dimension at ``sizes`` (sizes by name): a number as it is, a name looked up, a
    product of names (``n·p``) multiplied out."""
    if dim.is_Integer:
        return int(dim)
    if str(dim) in sizes:
        return int(sizes[str(dim)])
    return int(dim.subs({s: sizes[str(s)] for s in dim.free_symbols}))


def sizes_of_arrays(program: Program, shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """Each dimension's size read off the shapes of arrays given for the variables; a size
    known only in a product (``[B, h * k]``) solved from the others'."""
    found: dict[str, int] = {}
    products: list[tuple[Dim, int]] = []
    for name, node in program.variables.items():
        for d, n in zip(node.shape, shapes.get(name, ()), strict=False):
            if d.is_Symbol:
                found[str(d)] = int(n)
            elif not d.is_Integer:
                products.append((d, int(n)))
    for d, n in products:
        unknown = [s for s in d.free_symbols if str(s) not in found]
        if len(unknown) == 1:
            rest = d.subs({s: found[str(s)] for s in d.free_symbols if str(s) in found})
            solved = sympy.solve(sympy.Eq(rest, n), unknown[0])
            if solved and solved[0].is_Integer:
                found[str(unknown[0])] = int(solved[0])
    return found


def sizes_only_in_products(program: Program) -> list[str]:
    """The sizes no declared shape has as an axis of its own (``h`` and ``k`` when every shape
    has ``h * k``): code must be told them, it cannot read them off the inputs."""
    alone = {str(d) for v in program.variables.values() for d in v.shape if d.is_Symbol}
    return [name for name in program.dims if name not in alone]


def concrete_shape(shape: Iterable[Dim], sizes: Mapping[str, int]) -> tuple[int, ...]:
    """A declared shape at ``sizes``: ``[n, 3]`` with n = 5 is ``(5, 3)``."""
    return tuple(size_of(d, sizes) for d in shape)


def gigabytes(count: int) -> str:
    """A byte count in GB (10⁹ bytes): ``0.5``, ``4``, ``7,280``, ``8e+15``, however large."""
    value = Decimal(count) / Decimal(10**9)
    if value < 10:
        return f"{float(value):.2g}"
    if value < 10**6:
        return f"{float(value):,.0f}"
    return f"{float(value):.3g}" if value < Decimal("1e300") else f"{value:.3g}"
