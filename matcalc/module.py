"""Standalone gradient modules: NumPy functions or a ``torch.autograd.Function``, and lambdify.

A module is generated from ``derive(..., steps=True)``: the forward pass computes each named
intermediate once, the backward pass is the derivation's error signals ``delta1, delta2 …``
and gradients ``dW1 …``, and the module docstring is the derivation itself. A function with a
matrix value (a layer) is differentiated through ``sum(grad_output ⊙ value)``: its module
computes vector-Jacobian products, which is what ``backward`` of an autograd function returns.
"""

from __future__ import annotations

import dataclasses
import linecache
import textwrap
import types
from collections.abc import Sequence
from dataclasses import dataclass

from matcalc.codegen import HELPERS, NUMPY_METHODS, TORCH, Block, Dialect, NumpyEmitter
from matcalc.derivation import Derivation, derive
from matcalc.errors import MatcalcError
from matcalc.ir import Node, var
from matcalc.program import Program, parse
from matcalc.simplify import reduce_sum

TARGETS = ("numpy", "torch")
WIDTH = 100
INDENT = "    "
SEED = "grad_output"
RESERVED = ("np", "math", "torch", "ctx", "SHAPES", "_check_shapes", "value", "value_and_grad",
            "value_and_vjp", SEED, *HELPERS)

CHECK_SHAPES = '''def _check_shapes(**arrays):
    """Raise ValueError unless each array has its declared shape, equal size names agreeing."""
    shapes = [getattr(array, "shape", ()) for array in arrays.values()]
    if list(map(len, shapes)) == _RANKS:
        dims = sum(shapes, ())
        if tuple(map({**dict(zip(_NAMES, dims, strict=True)), **_FIXED}.get, _NAMES)) == dims:
            return
    sizes, origin = {}, {}
    for name, array in arrays.items():
        declared, shape = SHAPES[name], tuple(getattr(array, "shape", ()))
        for size, got in zip(declared, shape, strict=False):
            if isinstance(size, str) and size not in sizes:
                sizes[size], origin[size] = got, name
        if shape != tuple(sizes.get(size, size) for size in declared):
            known = [f"{s} = {sizes[s]} (from {origin[s]})" for s in dict.fromkeys(declared)
                     if origin.get(s, name) != name]
            given = f" with {', '.join(known)}" if known else ""
            raise ValueError(
                f"{name}: declared [{', '.join(map(str, declared))}]{given}, got {shape}"
            )'''

SHAPE_INDEX = [
    "_NAMES = sum(SHAPES.values(), ())",
    "_RANKS = [len(shape) for shape in SHAPES.values()]",
    "_FIXED = {size: size for size in _NAMES if isinstance(size, int)}",
]
"""The declared shapes flattened, for a fast check of the common, correct call."""


@dataclass(frozen=True)
class Plan:
    """What a module computes: the value, the derivation behind its gradients, the names."""

    derivation: Derivation
    value: Node
    value_name: str
    grad_names: dict[str, str]
    seeded: bool
    """True when the gradients are vector-Jacobian products with ``grad_output``."""

    @property
    def program(self) -> Program:
        return self.derivation.program

    @property
    def inputs(self) -> list[Node]:
        """The declared arrays, in declaration order (``grad_output`` last when seeded)."""
        return list(self.program.variables.values())

    @property
    def params(self) -> list[str]:
        return [name for name in self.program.variables if not (self.seeded and name == SEED)]

    @property
    def like(self) -> str | None:
        """An array argument whose dtype (and device) new arrays follow."""
        return next((n.attrs[0] for n in self.inputs if n.shape), None)


def plan(source: str | Program, wrt: Sequence[str], declarations: Sequence[str] = (),
         seeded: bool = False) -> Plan:
    """Derive what a module needs; ``seeded`` (or a non-scalar value) differentiates
    ``sum(grad_output ⊙ value)`` instead of the value itself."""
    program = source if isinstance(source, Program) else parse(source, declarations)
    value = program.function
    value_name = program.function_name if value.op == "named" else "value"
    seeded = seeded or bool(value.shape)
    if seeded:
        if SEED in program.variables:
            raise MatcalcError(f"`{SEED}` names the incoming gradient of generated code; "
                               "rename the variable")
        seed = var(SEED, value.shape)
        program = dataclasses.replace(program, variables={**program.variables, SEED: seed},
                                      function=reduce_sum(seed * value), function_name="f",
                                      seed=SEED)
    taken = {*program.variables, *program.intermediates, *map(str, program.dims)}
    grad_names = {w: f"d{w}" if f"d{w}" not in taken else f"grad_{w}" for w in wrt}
    return Plan(derive(program, wrt, steps=True), value, value_name, grad_names, seeded)


# ----------------------------------------------------------------------------------------------
# Layout


def wrap(line: str, indent: str = INDENT) -> list[str]:
    """A statement at ``indent``, its right-hand side broken inside parentheses if too long."""
    if len(indent + line) <= WIDTH:
        return [indent + line]
    target, rhs = line.split(" = ", 1)
    inner = indent + INDENT
    body = textwrap.wrap(rhs, WIDTH - len(inner), break_long_words=False, break_on_hyphens=False)
    return [f"{indent}{target} = (", *(inner + part for part in body), indent + ")"]


def body(lines: Sequence[str], indent: str = INDENT) -> list[str]:
    return [out for line in lines for out in wrap(line, indent)]


def docstring(plan: Plan, purpose: str) -> str:
    """The module docstring: what it computes and the derivation, wrapped to the line width."""
    lines: list[str] = []
    for paragraph, hang in ((purpose, ""), ("", ""), (plan.derivation.text(), "        ")):
        for line in paragraph.splitlines() or [""]:
            lines += textwrap.wrap(line, WIDTH - 4, subsequent_indent=hang,
                                   drop_whitespace=True, replace_whitespace=False) or [""]
    return '"""' + "\n".join(lines).replace("\\", "\\\\") + '\n"""'


def shapes_table(inputs: Sequence[Node]) -> str:
    """``SHAPES = {...}``: each argument's declared shape, size names as strings."""
    rows = [f'    "{n.attrs[0]}": ({"".join(size_literal(d) + ", " for d in n.shape)[:-2]}'
            f'{"," if len(n.shape) == 1 else ""}),' for n in inputs]
    return "\n".join(["SHAPES = {", *rows, "}", *SHAPE_INDEX])


def size_literal(d) -> str:
    return str(int(d)) if d.is_Integer else f'"{d}"'


def signature(params: Sequence[str]) -> str:
    return ", ".join(params)


def check_call(params: Sequence[str]) -> str:
    return f"_check_shapes({', '.join(f'{p}={p}' for p in params)})"


def function(name: str, params: Sequence[str], doc: str, lines: Sequence[str],
             indent: str = "") -> list[str]:
    """A ``def`` with a docstring and a wrapped body."""
    inner = indent + INDENT
    head = wrap(f"def {name}({signature(params)}):", indent)
    if len(head) > 1:
        head = [f"{indent}def {name}(", *(inner + p + "," for p in params), f"{indent}):"]
    return [*head, f'{inner}"""{doc}"""', *body(lines, inner)]


# ----------------------------------------------------------------------------------------------
# Blocks of statements


def forward(emitter: NumpyEmitter, plan: Plan, later: Sequence[Node] = ()) -> None:
    """Statements computing the value; work shared with ``later`` is kept in names."""
    emitter.emit([(plan.value_name, plan.value)], later)


def backward_roots(plan: Plan) -> list[Node]:
    return [s.expr for s in plan.derivation.steps] + [g.expr for g in plan.derivation.gradients]


def backward(emitter: NumpyEmitter, plan: Plan) -> None:
    """Error signals one by one (each may use the earlier ones), then every gradient."""
    steps = plan.derivation.steps
    grads = [(plan.grad_names[g.wrt], g.expr) for g in plan.derivation.gradients]
    for k, step in enumerate(steps):
        rest = [s.expr for s in steps[k + 1:]] + [expr for _, expr in grads]
        emitter.emit([(f"delta{step.label}", step.expr)], rest)
    emitter.emit(grads)


def new_emitter(plan: Plan, dialect: Dialect = NUMPY_METHODS) -> NumpyEmitter:
    return NumpyEmitter(plan.inputs, RESERVED, dialect, plan.like)


def helpers(blocks: Sequence[Block]) -> list[str]:
    return list(dict.fromkeys(h for b in blocks for h in b.helpers))


def imports(blocks: Sequence[Block], library: str) -> list[str]:
    math = ["import math", ""] if any(b.needs_math for b in blocks) else []
    return [*math, library]


def gradients_dict(plan: Plan) -> str:
    return "{" + ", ".join(f'"{w}": {n}' for w, n in plan.grad_names.items()) + "}"


# ----------------------------------------------------------------------------------------------
# Targets


def numpy_module(plan: Plan) -> str:
    """``value`` and ``value_and_grad`` (``value_and_vjp`` for a layer) in plain NumPy."""
    params = [*plan.params, *([SEED] if plan.seeded else [])]
    check = check_call(plan.params)
    first, second = new_emitter(plan), new_emitter(plan)
    forward(first, plan)
    value_lines = [check, *first.prune().lines, f"return {plan.value_name}"]
    forward(second, plan, backward_roots(plan))
    backward(second, plan)
    grad_lines = [check_call(params), *second.prune().lines,
                  f"return {plan.value_name}, {gradients_dict(plan)}"]
    order = ", ".join(plan.grad_names)
    if plan.seeded:
        name = "value_and_vjp"
        what = (f"{plan.value_name} and the vector-Jacobian products ∂⟨{SEED}, "
                f"{plan.value_name}⟩/∂x for x = {order}, each shaped like x.")
    else:
        name = "value_and_grad"
        what = f"{plan.value_name} and its gradients with respect to {order}, shaped alike."
    blocks = [first.block, second.block]
    parts = [
        docstring(plan, f"{plan.value_name} and its gradients, generated by matcalc."),
        *(HELPERS[h] for h in helpers(blocks)),
        CHECK_SHAPES,
        shapes_table(plan.inputs),
        "\n".join(function("value", plan.params, f"{plan.value_name}.", value_lines)),
        "\n".join(function(name, params, what, grad_lines)),
    ]
    if any("np." in part for part in parts[1:]):
        parts.insert(1, "\n".join(imports(blocks, "import numpy as np")))
    return "\n\n\n".join(parts) + "\n"


def torch_module(plan: Plan) -> str:
    """A ``torch.autograd.Function`` with the derived backward pass and a function applying it."""
    bad = [w for w in plan.grad_names if w not in plan.program.variables]
    if bad:
        raise MatcalcError(f"--target torch differentiates declared variables only, not {bad[0]}")
    params = plan.params
    first = new_emitter(plan, TORCH)
    forward(first, plan, backward_roots(plan))
    second = new_emitter(plan, TORCH)
    second.names.update(first.names)
    second.taken |= set(first.names.values())
    backward(second, plan)
    backward_lines = second.prune().lines
    forward_lines = first.prune(backward_lines).lines
    used = set().union(*map(words, backward_lines))
    saved = [name for name in dict.fromkeys(first.names.values()) if name in used - {SEED}]
    returns = ", ".join(plan.grad_names.get(p, "None") for p in params)
    cls = f"{plan.value_name.capitalize()}Function"
    forward_body = [check_call(params), *forward_lines,
                    f"ctx.save_for_backward({', '.join(saved)})" if saved else "",
                    f"return {plan.value_name}"]
    backward_body = [f"{', '.join(saved)}{',' * (len(saved) == 1)} = ctx.saved_tensors"
                     if saved else "", *backward_lines,
                     f"return {returns}{',' * (len(params) == 1)}"]
    apply_name = plan.value_name if plan.value_name != "value" else "apply"
    blocks = [first.block, second.block]
    parts = [
        docstring(plan, f"{plan.value_name} as a torch.autograd.Function with the backward pass "
                        f"derived by matcalc.\n\nbackward returns ∂f/∂x for f = sum({SEED} ⊙ "
                        f"{plan.value_name}), the vector-Jacobian products autograd needs."),
        "\n".join(imports(blocks, "import torch")),
        CHECK_SHAPES,
        shapes_table(plan.inputs[:len(params)]),
        "\n".join([
            f"class {cls}(torch.autograd.Function):",
            f'    """{plan.value_name} with the derived backward pass."""',
            "",
            "    @staticmethod",
            *function("forward", ["ctx", *params], f"{plan.value_name}; saves what backward "
                      "needs.", [line for line in forward_body if line], INDENT),
            "",
            "    @staticmethod",
            *function("backward", ["ctx", SEED], "Gradients for each input (None where not "
                      "derived).", [line for line in backward_body if line], INDENT),
        ]),
        "\n".join(function(apply_name, params, f"{plan.value_name}, differentiable by autograd "
                           f"through {cls}.", [f"return {cls}.apply({signature(params)})"])),
    ]
    return "\n\n\n".join(parts) + "\n"


def words(line: str) -> set[str]:
    """The identifiers of a line of code."""
    return set("".join(c if c.isalnum() or c == "_" else " " for c in line).split())


def generate(source: str | Program, wrt: Sequence[str], target: str = "numpy",
             declarations: Sequence[str] = ()) -> str:
    """The source of a standalone module computing the value and its derived gradients."""
    if target not in TARGETS:
        raise MatcalcError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if target == "torch":
        return torch_module(plan(source, wrt, declarations, seeded=True))
    return numpy_module(plan(source, wrt, declarations))


def lambdify(source: str | Program, wrt: Sequence[str], target: str = "numpy",
             declarations: Sequence[str] = ()) -> types.ModuleType:
    """The generated module, compiled in memory: ``.value``, ``.value_and_grad`` (NumPy) or
    the autograd function class and the function applying it (torch)."""
    text = generate(source, wrt, target, declarations)
    filename = f"<matcalc {target} module {abs(hash(text)):x}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    module = types.ModuleType("matcalc_generated", text.split('"""')[1])
    exec(compile(text, filename, "exec"), module.__dict__)  # our own generator's output
    return module

