"""Standalone gradient modules: NumPy functions or a ``torch.autograd.Function``, and lambdify.

A module is generated from ``derive(..., steps=True)``: the forward pass computes each named
intermediate once, the backward pass is the derivation's error signals named after what they
differentiate (``dZ2`` for δ1 = ∂L/∂Z2, …) and gradients ``dW1 …``, and the module docstring
is the derivation itself. A function with a
matrix value (a layer) is differentiated through ``sum(grad_output ⊙ value)``: its module
computes vector-Jacobian products, which is what ``backward`` of an autograd function returns.

Every name the module invents (temporaries, helpers, module aliases, the shape checker) is
chosen after all user names are known, so a variable called ``np``, ``value`` or ``delta1``
cannot change what the code computes.
"""

from __future__ import annotations

import dataclasses
import linecache
import re
import textwrap
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matcalc.core.ir import Node, class_counts, has_property, is_labels, one_entry, var
from matcalc.core.simplify import reduce_sum
from matcalc.errors import MatcalcError, did_you_mean
from matcalc.forms.codegen import (
    JAX,
    NUMPY,
    RESERVED,
    TORCH,
    Block,
    Dialect,
    Emitter,
    Names,
    Statement,
    emit_in_turn,
    fill,
    prune,
    release,
    user_names,
)
from matcalc.forms.derivation import Derivation, derive
from matcalc.forms.extra_functions import EMITS, Extra, extras
from matcalc.language.lowering import Program, names_of, parse
from matcalc.language.sizes import sizes_only_in_products

TARGETS = ("numpy", "torch", "jax")
WIDTH = 100
INDENT = "    "
SEED = "grad_output"

KEEP_FREED_MEMORY = (
    "# glibc's malloc gives the top of its heap back to the system once more than a threshold\n"
    "# is free there: twice the largest block it has mapped and freed, 128 kB at first. The\n"
    "# temporaries of a few MB that each call frees would go back, and be page-faulted in anew\n"
    "# on the next call (a fifth of a transformer's gradient time). Freeing one mapped block of\n"
    "# 31 MB raises the threshold to 62 MB, as for any program that once used such a block: the\n"
    "# process keeps up to 62 MB of freed memory for reuse. Without glibc it does nothing.\n"
    "{xp}.empty(31 << 20, dtype={xp}.uint8)")

CHECK_ONCE = '''def {check}(*arrays):
    """Check the arrays, given in {shapes}'s order, as {full} does, each signature of types,
    shapes and dtypes once."""
    try:
        signature = tuple([(type(a), a.shape, a.dtype) for a in arrays])
    except AttributeError:                       # a Python number: checked each time
        signature = None
    if signature is None or signature not in {valid}:
        {full}(**dict(zip({shapes}, arrays, strict=False)))
        if signature is not None and len({valid}) < 64:
            {valid}.add(signature)'''

CHECK_SHAPES = '''def {full}(**arrays):
    """Raise ValueError unless the arrays have their declared shapes{what}."""
    shapes = [getattr(array, "shape", ()) for array in arrays.values()]{kinds_line}
    if list(map(len, shapes)) == {ranks}{kinds_test}:
        dims = sum(shapes, ())
        if tuple(map({{**dict(zip({names}, dims, strict=True)), **{fixed}}}.get, {names})) == dims:
            return{types}
    sizes, origin = {{}}, {{}}
    for name, array in arrays.items():
        declared, shape = {shapes}[name], tuple(getattr(array, "shape", ()))
        for size, got in zip(declared, shape, strict=False):
            if isinstance(size, str) and size not in sizes:
                sizes[size], origin[size] = got, name
        if shape != tuple(sizes.get(size, size) for size in declared):
            known = [f"{{s}} = {{sizes[s]}} (from {{origin[s]}})" for s in dict.fromkeys(declared)
                     if origin.get(s, name) != name]
            given = f" with {{', '.join(known)}}" if known else ""
            raise ValueError(
                f"{{name}}: declared [{{', '.join(map(str, declared))}}]{{given}}, got {{shape}}"
            ){slow}'''

TYPES_CHECK = '''
    for name, array in arrays.items():
        if not isinstance(array, ({xp}.ndarray, {xp}.generic, int, float)):
            raise ValueError(f"{{name}}: expected a NumPy array, got {{type(array).__name__}}")'''
KINDS_CHECK = '''
    for name, array in arrays.items():
        if getattr(array, "dtype", {float}).kind != "f":
            raise ValueError(f"{{name}}: expected floating-point numbers, got dtype {{array.dtype}}"
                             f"; pass {{name}}.astype(float)")'''
LABELS_CHECK = '''
    for name, array in arrays.items():
        labels = name in {labels}
        if getattr(array, "dtype", {float}).kind not in ("iu" if labels else "f"):
            what = "integer class labels" if labels else "floating-point numbers"
            raise ValueError(f"{{name}}: expected {{what}}, got dtype {{array.dtype}}")'''
"""NumPy code also refuses integer arrays for real-valued variables (results would be
truncated) and floating arrays for integer class labels."""


@dataclass(frozen=True)
class Plan:
    """What a module computes: the value, the derivation behind its gradients, the names."""

    derivation: Derivation
    value: Node
    value_name: str
    wrt: list[str]
    seeded: bool
    """True when the gradients are vector-Jacobian products with ``grad_output``."""
    seed: str = SEED
    named: bool = False
    """True when the program's last statement names its value (``L = …``)."""
    sizes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Sizes fixed in the code, those no input's shape gives (``h`` of ``[B, T, h * k]``)."""
    unseeded: Program | None = None
    """The program as written, its value not seeded (for Jacobians and forward mode)."""

    @property
    def program(self) -> Program:
        return self.derivation.program

    @property
    def inputs(self) -> list[Node]:
        """The declared arrays, in declaration order (``grad_output`` last when seeded)."""
        return list(self.program.variables.values())

    @property
    def params(self) -> list[str]:
        return [name for name in self.program.variables if not (self.seeded and name == self.seed)]

    @property
    def like(self) -> str | None:
        """An array argument whose dtype (and device) new arrays follow."""
        return next((n.attrs.name for n in self.inputs if n.shape and not is_labels(n)), None)


def plan(source: str | Program, wrt: Sequence[str], declarations: Sequence[str] = (),
         seeded: bool = False, sizes: Mapping[str, int] | None = None) -> Plan:
    """Derive what a module needs; ``seeded`` (or a value of more than one entry) differentiates
    ``sum(grad_output ⊙ value)`` instead of the value itself (``grad_output_1`` when the
    program uses the name ``grad_output``)."""
    wrt = names_of(wrt)
    program = unseeded = (source if isinstance(source, Program)
                          else parse(source, declarations)).with_kernels()
    taken = {*program.variables, *program.intermediates, *map(str, program.dims)}
    seed = Names(taken).fresh(SEED)
    value = program.function
    named = program.function_name in program.intermediates
    value_name = program.function_name if named else "value"
    seeded = seeded or not one_entry(value.shape)     # a 1×1 value: its one entry
    if seeded:
        seed_var = var(seed, value.shape)
        program = dataclasses.replace(program, variables={**program.variables, seed: seed_var},
                                      function=reduce_sum(seed_var * value), function_name="f",
                                      seed=seed)
    return Plan(derive(program, wrt, steps=True), value, value_name, list(wrt), seeded, seed,
                named, fixed_sizes(program, {**program.sizes, **(sizes or {})}), unseeded)


def module_names(plan: Plan) -> Names:
    """The user's names, to be kept; everything else is allocated around them."""
    nodes = [plan.value, *(s.expr for s in plan.derivation.steps),
             *(g.expr for g in plan.derivation.gradients)]
    return Names(user_names(plan.inputs, nodes) | set(plan.program.intermediates))


def grad_names(plan: Plan, names: Names) -> dict[str, str]:
    """``dW1`` for ∂f/∂W1 (``grad_W1`` when ``dW1`` is taken)."""
    found = {}
    for w in plan.wrt:
        stem = f"d{w}" if not names.in_use(f"d{w}") else f"grad_{w}"
        found[w] = names.fresh(stem)
    return found


# ----------------------------------------------------------------------------------------------
# Layout: every line is made valid and short by construction, never by editing text


def call(function: str, args: Sequence[str], indent: str, prefix: str = "") -> list[str]:
    """``prefix function(a, b)`` on one line, or one argument per line when it is too long."""
    line = f"{indent}{prefix}{function}({', '.join(args)})"
    if len(line) <= WIDTH or not args:
        return [line]
    return [f"{indent}{prefix}{function}(", *(f"{indent}{INDENT}{a}," for a in args),
            f"{indent})"]


def returned(parts: Sequence[str], mapping: Sequence[tuple[str, str]], indent: str
             ) -> list[str]:
    """``return a, {"x": dx}`` on one line, or the dictionary one entry per line."""
    items = [f'"{k}": {v}' for k, v in mapping]
    line = f"{indent}return {', '.join([*parts, '{' + ', '.join(items) + '}'])}"
    if len(line) <= WIDTH:
        return [line]
    head = ", ".join([*parts, "{"])
    return [f"{indent}return {head}", *(f"{indent}{INDENT}{item}," for item in items),
            f"{indent}}}"]


def function(name: str, params: Sequence[str], doc: str, body: Sequence[str],
             indent: str = "") -> list[str]:
    """A ``def`` with a docstring; ``body`` lines are already indented."""
    head = call(name, params, indent, "def ")
    head[-1] += ":"
    inner = indent + INDENT
    if len(inner) + len(doc) + 6 > WIDTH:   # a long docstring wraps, closing on its own line
        wrapped = textwrap.wrap(doc, WIDTH - len(inner) - 3, break_long_words=False)
        lines = [f'{inner}"""{wrapped[0]}', *(inner + line for line in wrapped[1:]),
                 f'{inner}"""']
        return [*head, *lines, *body]
    return [*head, f'{inner}"""{doc}"""', *body]


MAX_DOCUMENTED_STEPS = 400
"""Derivations longer than this (intermediates plus error signals) are summarised."""


def derivation_text(plan: Plan) -> str:
    """The derivation for the docstring, or how to see it when it is very long."""
    d = plan.derivation
    length = len(d.program.intermediates) + len(d.steps)
    if length <= MAX_DOCUMENTED_STEPS:
        return d.text()
    return (f"The derivation has {len(d.program.intermediates)} intermediates and "
            f"{len(d.steps)} error signals; `matcalc derive SOURCE --wrt … --steps` prints it.")


def docstring(plan: Plan, purpose: str) -> str:
    """The module docstring: what it computes and the derivation, wrapped to the line width."""
    lines: list[str] = []
    for paragraph, hang in ((purpose, ""), ("", ""), (derivation_text(plan), "        ")):
        for line in paragraph.splitlines() or [""]:
            lines += wrapped_line(line, WIDTH - 4, hang)
    return '"""' + "\n".join(lines).replace("\\", "\\\\") + '\n"""'


UNBROKEN = "\0"
"""Stands for a space that a line is not broken at while it is wrapped."""


def wrapped_line(line: str, width: int, hang: str) -> list[str]:
    """``line`` in lines of at most ``width`` characters, each after the first indented by
    ``hang``: a bracketed list (a shape [B, T, h·k]) and "back through" with the name after it
    are never broken, and a line too long has its column padding narrowed to three spaces."""
    if len(line) <= width:
        return [line]
    line = re.sub(r" {4,}", "   ", line)
    line = re.sub(r"\[[^\[\]]*\]|back through \S+",
                  lambda m: m.group().replace(" ", UNBROKEN), line)
    parts = textwrap.wrap(line, width, subsequent_indent=hang, drop_whitespace=True,
                          replace_whitespace=False, break_long_words=False)
    return [part.replace(UNBROKEN, " ") for part in parts]


def shapes_table(inputs: Sequence[Node], names: Names) -> str:
    """``SHAPES = {...}``: each argument's declared shape, size names as strings."""
    shapes = names.alias("SHAPES")
    rows = [f'    "{n.attrs.name}": ({"".join(size_literal(d) + ", " for d in n.shape)[:-2]}'
            f'{"," if len(n.shape) == 1 else ""}),' for n in inputs]
    flat, ranks, fixed = (names.alias(a) for a in ("_NAMES", "_RANKS", "_FIXED"))
    return "\n".join([f"{shapes} = {{", *rows, "}",
                      f"{flat} = sum({shapes}.values(), ())",
                      f"{ranks} = [len(shape) for shape in {shapes}.values()]",
                      f"{fixed} = {{size: size for size in {flat} if isinstance(size, int)}}"])


def size_literal(d) -> str:
    return str(int(d)) if d.is_Integer else f'"{d}"'


def checker(names: Names, block: Block, labels: Sequence[str]) -> str:
    """The shape checker (for NumPy and JAX also the dtype checker), its names allocated."""
    values = {"check": names.alias("_check_shapes"), "full": names.alias("_check_in_full"),
              "valid": names.alias("_CHECKED"), "shapes": names.alias("SHAPES"),
              "names": names.alias("_NAMES"), "ranks": names.alias("_RANKS"),
              "fixed": names.alias("_FIXED"), "what": "", "kinds_line": "", "kinds_test": "",
              "slow": "", "types": ""}
    if block.dialect is not TORCH:
        kinds, flt = names.alias("_KINDS"), names.alias("_FLOAT")
        values |= {
            "what": " and floating-point dtypes\n    (integer dtypes for class labels)",
            "kinds_line": f'\n    kinds = [getattr(getattr(array, "dtype", {flt}), "kind", "") '
                          "for array in arrays.values()]",
            "kinds_test": f" and kinds == {kinds}",
            "slow": (LABELS_CHECK if labels else KINDS_CHECK).format(
                labels=repr(tuple(labels)), float=flt),
            "types": TYPES_CHECK.format(xp=fill("{xp}", names, block))
            if block.dialect is NUMPY else "",
        }
    return (CHECK_ONCE.format(**values) + "\n\n\n" + CHECK_SHAPES.format(**values)
            + f"\n\n\n{values['valid']} = set()")


def tables(plan: Plan, names: Names, block: Block, params: Sequence[str]) -> str:
    """The declared shapes, and for NumPy and JAX the dtype kind each argument must have."""
    text = shapes_table([plan.program.variables[p] for p in params], names)
    if block.dialect is TORCH:
        return text
    labels = labels_of(plan)
    kinds = ", ".join('"i"' if name in labels else '"f"' for name in params)
    if len(kinds) > WIDTH - 20:   # one line per ~100 characters
        kinds = "\n" + textwrap.indent(textwrap.fill(kinds, WIDTH - 4), INDENT) + "\n"
    flt = names.alias("_FLOAT")
    return (f"{text}\n{names.alias('_KINDS')} = [{kinds}]\n"
            + fill(f"{flt} = {{xp}}.dtype(float)", names, block))


def check_call(names: Names, params: Sequence[str], indent: str = INDENT) -> list[str]:
    """``_check_shapes(X, Y, …)``: the arguments in SHAPES's order, or a first part of it."""
    return call(names.alias("_check_shapes"), params, indent)


def declaration_checks(plan: Plan, block: Block) -> list[str]:
    """Lines checking what the declarations promise: one-hot rows, probability rows, symmetric
    matrices, labels that are classes. The derived gradients rely on it."""
    lines = []
    counts = class_counts(plan.value)
    for name, node in plan.program.variables.items():
        if name not in plan.params:
            continue
        for kind in ("onehot", "probabilities", "symmetric"):
            if has_property(node, kind):
                lines.append(f'{INDENT}{fill("{_check_" + kind + "}", block.names, block)}'
                             f'("{name}", {name})')
        if name in counts:
            classes = size_text(plan, counts[name])
            lines.append(f'{INDENT}{fill("{_check_labels}", block.names, block)}'
                         f'("{name}", {name}, {classes})')
    return lines


def size_text(plan: Plan, size) -> str:
    """A size as the generated code reads it: ``Z.shape[1]`` (or a number)."""
    if size.is_Integer:
        return str(int(size))
    for v in plan.inputs:
        if size in v.shape:
            return f"{v.attrs.name}.shape[{v.shape.index(size)}]"
    raise MatcalcError(f"no input has the size {size}")


# ----------------------------------------------------------------------------------------------
# Blocks of statements


def fixed_sizes(program: Program, sizes: Mapping[str, int]) -> dict[str, int]:
    """The ``sizes`` to fix in the code: each names a size of the program that no input's shape
    gives alone; sizes the inputs give are read off them, never fixed."""
    unknown = [name for name in sizes if name not in program.dims]
    if unknown:
        raise MatcalcError(f"--dims names {', '.join(unknown)}, not sizes of the program"
                           + did_you_mean(unknown[0], program.dims),
                           hint=f"Its sizes: {', '.join(program.dims) or 'none'}.")
    hidden = set(sizes_only_in_products(program))
    return {name: int(n) for name, n in sizes.items() if name in hidden}


def backward_roots(plan: Plan) -> list[Node]:
    return [s.expr for s in plan.derivation.steps] + [g.expr for g in plan.derivation.gradients]


def gradient_outputs(plan: Plan, grads: dict[str, str]) -> list[tuple[str, Node]]:
    return [(grads[g.wrt], g.expr) for g in plan.derivation.gradients]


def new_emitter(plan: Plan, block: Block, seed: bool = True, extra: Sequence[Node] = ()
                ) -> Emitter:
    """An emitter for the module's functions: new arrays follow the inputs' dtype (torch's
    arguments are all tensors, scalars included); without ``seed`` the function has no
    ``grad_output`` to read; ``extra`` arrays are read too (directions, tangents)."""
    like = plan.like
    if block.dialect is TORCH:
        like = next((p for p in plan.params if p not in labels_of(plan)), None)
    inputs = [v for v in plan.inputs if seed or v.attrs.name != plan.seed]
    return Emitter([*inputs, *extra], block, like, methods=True, fixed=plan.sizes)


STEMS = {"value_and_jacobian": "jac", "hessian": "hess", "hvp": "hvp", "jvp": "tangent"}


def extra_function(plan: Plan, names: Names, extra: Extra, dialect: Dialect
                   ) -> tuple[str, Block]:
    """The source of one of the functions ``--emit`` adds, and its block (for its helpers)."""
    block = Block(names.scope(), dialect)
    emitter = new_emitter(plan, block, seed=False, extra=extra.inputs)
    value = [(value_name_in(plan, block.names), plan.value)] if extra.with_value else []
    stem = STEMS[extra.name]
    outputs = [(stem if extra.single else f"{stem}_{key}*", node) for key, node in extra.outputs]
    targets = emitter.emit([*value, *outputs])
    prune(block, targets)
    release(block.statements, targets)
    results = targets[len(value):]
    if extra.single:
        ending = [f"{INDENT}return {', '.join(targets)}"]
    else:
        ending = returned(targets[:len(value)], [(key, target) for (key, _), target in
                                                 zip(extra.outputs, results, strict=True)],
                          INDENT)
    floating = []
    if dialect is TORCH:              # NumPy arrays and numbers as tensors, as the function takes
        floating = floating_call(fill("{_floating}", names, block), plan.params,
                                 labels_of(plan), INDENT)
    body = [*floating, *check_call(names, plan.params), *declaration_checks(plan, block),
            *bound(extra, names, block),
            *block.lines(INDENT), *ending]
    return "\n".join(function(extra.name, [*plan.params, *extra.params], extra.doc, body)), block


def function_of(text: str) -> str:
    """The name a ``def`` defines."""
    return text.split("(", 1)[0].split()[-1]


def bound(extra: Extra, names: Names, block: Block) -> list[str]:
    """The lines binding a function's directions or tangents, each checked for its shape."""
    if not extra.bindings:
        return []
    check = fill("{_check_like}", names, block)
    lines, single = [], False
    symmetric = {n.attrs.name for n in extra.inputs if has_property(n, "symmetric")}
    if extra.keyed is not None:
        param, required = extra.keyed
        known = tuple(variable for _, _, variable in extra.bindings)
        check_keys = (f'{fill("{_check_keys}", names, block)}("{param}", {param}, {known!r}, '
                      f'{required})')
        single = len(known) == 1 and required      # one variable: an array or a dictionary
        if not single:
            lines.append(f"{INDENT}{check_keys}")
    for target, source, variable in extra.bindings:
        what = source.split(" if ")[0].replace('"', "'")
        if single:                                 # an array, or a dictionary
            what = f"{what} (or {param})"
            given = fill("{_checked_direction}", names, block)
            source = f'{given}("{param}", {param}, "{variable}")'
        lines.append(f"{INDENT}{target} = {source}")
        if block.dialect is TORCH:               # NumPy arrays and numbers as tensors too
            torch = used_alias(names, block, "torch")
            lines.append(f"{INDENT}{target} = {torch}.as_tensor({target}, dtype={variable}.dtype, "
                         f"device={variable}.device)")
        lines.append(f'{INDENT}{check}("{what}", {target}, {variable}, "{variable}")')
        if target in symmetric:
            lines.append(symmetric_part_line(target, f"{variable} is symmetric: so is a "
                                                     "direction"))
    return lines


def extra_functions(plan: Plan, names: Names, emit: Sequence[str], layout: str | None,
                    dialect: Dialect) -> list[tuple[str, Block]]:
    """The functions ``emit`` adds (``grad`` aside), each with its block."""
    if not emit or set(emit) <= {"grad"}:
        return []
    return [extra_function(plan, names, extra, dialect)
            for extra in extras(plan.unseeded, plan.wrt, emit, names.fresh, layout)]


def helpers_and_imports(blocks: Sequence[Block]) -> tuple[list[str], list[str]]:
    """The helpers and imports all ``blocks`` need, each once."""
    helpers: dict[str, None] = {}
    modules: set[str] = set()
    for b in blocks:
        helpers.update(dict.fromkeys(b.helpers))
        modules |= b.modules
    first = blocks[0]
    merged = Block(first.names, first.dialect, helpers=list(helpers), modules=modules)
    return merged.helper_sources(), merged.imports()


def labels_of(plan: Plan) -> list[str]:
    """The variables declared as integer class labels."""
    return [name for name, node in plan.program.variables.items() if is_labels(node)]


# ----------------------------------------------------------------------------------------------
# Targets


def numpy_module(plan: Plan, emit: Sequence[str] = ("grad",), layout: str | None = None
                 ) -> str:
    """``value`` and ``value_and_grad`` (``value_and_vjp`` for a layer) in plain NumPy, and the
    functions ``emit`` adds."""
    names = module_names(plan)
    grads = grad_names(plan, names)
    params = [*plan.params, *([plan.seed] if plan.seeded else [])]
    value_var = plan.value.attrs.name if plan.value.op == "named" else names.fresh("value")
    first, second = Block(names.scope()), Block(names.scope())
    new_emitter(plan, first, seed=not plan.seeded).emit([(value_var, plan.value)])
    prune(first, [value_var])
    release(first.statements, [value_var])
    emitter = new_emitter(plan, second)
    emitter.emit([(value_var, plan.value)], backward_roots(plan))
    emit_in_turn(emitter, plan.derivation.signals(), gradient_outputs(plan, grads),
                 plan.derivation.f)
    prune(second, [value_var, *grads.values()])
    release(second.statements, [value_var, *grads.values()])
    order = ", ".join(grads)
    if plan.seeded:
        name = "value_and_vjp"
        what = (f"{plan.value_name} and the vector-Jacobian products ∂⟨{plan.seed}, "
                f"{plan.value_name}⟩/∂x for x = {order}, each shaped like x.")
    else:
        name = "value_and_grad"
        what = f"{plan.value_name} and its gradients with respect to {order}, shaped alike."
    check = checker(names, first, labels_of(plan))
    table = tables(plan, names, first, params)
    checks = declaration_checks(plan, first)
    more = extra_functions(plan, names, emit, layout, NUMPY)
    keep_freed = fill(KEEP_FREED_MEMORY, names, first)
    helpers, imports = helpers_and_imports([first, second, *(b for _, b in more)])
    value_body = [*check_call(names, plan.params), *checks, *first.lines(INDENT),
                  f"{INDENT}return {value_var}"]
    grad_body = [*check_call(names, params), *checks, *second.lines(INDENT),
                 *returned([value_var], list(grads.items()), INDENT)]
    exported = ["value", *([name] if "grad" in emit else []),
                *(function_of(text) for text, _ in more)]
    parts = [
        docstring(plan, f"{plan.value_name} and its gradients, generated by matcalc."),
        "\n".join(imports) + f"\n\n__all__ = {exported!r}".replace("'", '"'),
        keep_freed,
        *helpers,
        check,
        table,
        "\n".join(function("value", plan.params, f"{plan.value_name}.", value_body)),
        *(["\n".join(function(name, params, what, grad_body))] if "grad" in emit else []),
        *(text for text, _ in more),
    ]
    return "\n\n\n".join(parts) + "\n"


def torch_plan(plan_: Plan) -> Plan:
    """The plan deriving every real-valued input: autograd asks for each that requires grad."""
    bad = [w for w in plan_.wrt if w not in plan_.program.variables]
    if bad:
        raise MatcalcError(f"--target torch differentiates declared variables only, not {bad[0]}")
    labels = labels_of(plan_)
    every = [n for n in plan_.params if n not in labels]
    wrt = [*plan_.wrt, *(n for n in every if n not in plan_.wrt)]
    derivation = derive(plan_.program, wrt, steps=True)
    return dataclasses.replace(plan_, derivation=derivation, wrt=wrt)


def two_passes(plan: Plan, names: Names, dialect: Dialect
               ) -> tuple[Block, Block, Passes, str, dict[str, str]]:
    """The value and every gradient emitted together, then split into the forward pass and the
    backward pass (an autograd Function's, a custom VJP's): the block, the forward pass's block
    (the same one, or its own for a constant value, shaped like the seed and computed alone),
    the passes, the value's name and the gradients' names."""
    grads = grad_names(plan, names)
    block = Block(names.scope(), dialect)
    value_var = value_name_in(plan, block.names)
    emitter = new_emitter(plan, block)
    emitter.emit([(value_var, plan.value)], backward_roots(plan))
    emit_in_turn(emitter, plan.derivation.signals(), gradient_outputs(plan, grads),
                 plan.derivation.f)
    prune(block, [value_var, *grads.values()])
    passes = Passes.split(block.statements, plan.seed, set(emitter.dims.values()),
                          set(grads.values()))
    if any(value_var in targets_of(s) for s in passes.forward):
        return block, block, passes, value_var, grads
    forward_block = Block(names.scope(), dialect)
    new_emitter(plan, forward_block, seed=False).emit([(value_var, plan.value)])
    prune(forward_block, [value_var])
    prune(block, grads.values())
    return block, forward_block, Passes(forward_block.statements, block.statements), value_var, \
        grads


def torch_module(plan: Plan, emit: Sequence[str] = ("grad",), layout: str | None = None
                 ) -> str:
    """A ``torch.autograd.Function`` with the derived backward pass and a function applying it.

    ``forward`` computes the value and the intermediates backward reads, which it keeps, as
    autograd would; ``backward`` recomputes them from the inputs when autograd differentiates it
    again (second derivatives by double backward, ``torch.func.jacrev`` of ``torch.func.grad``),
    and ``setup_context`` makes ``torch.func`` transforms (``grad``, ``vmap``, ``jacrev``) work
    through the function; ``jvp``, forward mode by ``torch.func.jvp`` of ``forward_pass``, makes
    ``jacfwd`` and ``hessian`` work too. The functions ``emit`` adds are plain torch code.
    """
    asked, plan = plan, torch_plan(plan)
    names = module_names(plan)
    params = plan.params
    ctx = names.fresh("ctx")
    block, forward_block, passes, value_var, grads = two_passes(plan, names, TORCH)
    kept = passes.kept(value_var)
    saved = [*params, *([value_var] if passes.reads(value_var) else []), *kept]
    release(passes.forward, [value_var, *kept])
    release(passes.backward, grads.values())
    labels = labels_of(plan)
    torch = used_alias(names, block, "torch")
    cls = names.fresh(f"{plan.value_name[:1].upper()}{plan.value_name[1:]}Function")
    floating = fill("{_floating}", names, block)
    check = checker(names, block, labels)
    table = tables(plan, names, block, params)
    checks = declaration_checks(plan, block)
    more = extra_functions(asked, names, emit, layout, TORCH)
    keep_freed = fill(KEEP_FREED_MEMORY, names, block)
    helpers, imports = helpers_and_imports([block, *([] if forward_block is block
                                                     else [forward_block]),
                                            *(b for _, b in more)])
    level = 2 * INDENT
    outputs, each = names.fresh("outputs"), names.fresh("kept")
    forward_pass = call(f"{cls}.forward_pass", params, level, f"{outputs} = ")
    forward_body = [*check_call(names, params, level), *forward_pass,
                    f"{level}# the value, and the intermediates kept for backward (no gradients)",
                    f"{level}return {outputs}[0], *({each}.detach() for {each} in {outputs}[1:])"]
    pass_body = [*(line for s in passes.forward for line in s.lines(level)),
                 *in_parentheses(f"{level}return ", [value_var, *kept], level)]
    context_body = [*unpacked(params, "inputs", level),
                    *unpacked([value_var, *kept], "output", level),
                    *call(f"{ctx}.save_for_backward", saved, level),
                    f"{level}{ctx}.set_materialize_grads(False)   # no zeros for the kept "
                    "intermediates",
                    *call(f"{ctx}.save_for_forward", params, level)]
    jvp_params, jvp_body = forward_mode(cls, params, labels, ctx, torch, names, level)
    nothing = tuple_text(["None"] * len(params))
    if len(nothing) > WIDTH // 2:
        nothing = f"(None,) * {len(params)}"
    backward_body = [f"{level}if {plan.seed} is None:   # the value was not used",
                     f"{level}    return {nothing}",
                     *unpacked(saved, f"{ctx}.saved_tensors", level)]
    symmetric = [p for p in params if p in saved and has_property(plan.program.variables[p],
                                                                       "symmetric")]
    again = [f"{level}{INDENT}{p} = ({p} + {p}.mT) / 2   # second derivatives among symmetric "
             "matrices" for p in symmetric]
    if kept:
        recomputed = [value_var, *kept] if value_var in saved else kept
        again += [*(INDENT + line for line in forward_pass),
                  *unpacked(recomputed, outputs if value_var in saved else f"{outputs}[1:]",
                            level + INDENT)]
    if again:
        backward_body += [f"{level}if {torch}.is_grad_enabled():   # differentiated again"
                          + (": recompute them differentiably" if kept else ""), *again]
    owners = sole_owners(passes.backward, grads)
    backward_body += [*guarded(passes.backward, owners, params, ctx, level, grads),
                      *in_parentheses(f"{level}return ", [grads.get(p, "None") for p in params],
                                      level)]
    wrapper = [*floating_call(floating, params, labels, INDENT), *checks,
               *first_of(call(f"{cls}.apply", params, INDENT, "return "))]
    apply_name = function_name(plan, names)
    parts = [
        docstring(plan, f"{plan.value_name} as a torch.autograd.Function with the backward pass "
                        f"derived by matcalc.\n\nbackward returns ∂f/∂x for f = sum({plan.seed} ⊙ "
                        f"{plan.value_name}), the vector-Jacobian products autograd needs, from "
                        "the intermediates forward kept; differentiated again, it recomputes them "
                        "from the inputs, so that second derivatives are right."),
        "\n".join(imports) + "\n\n__all__ = " + repr(
            [cls, apply_name, *(function_of(text) for text, _ in more)]).replace("'", '"'),
        keep_freed,
        *helpers,
        check,
        table,
        "\n".join([
            f"class {cls}({torch}.autograd.Function):",
            f'    """{plan.value_name} with the derived backward pass."""',
            "",
            "    generate_vmap_rule = True",
            "",
            "    @staticmethod",
            *function("forward", params, f"{plan.value_name} and the intermediates backward "
                      "reads.", forward_body, INDENT),
            "",
            "    @staticmethod",
            *function("forward_pass", params, f"{', '.join([value_var, *kept])}, from the "
                      "inputs.", pass_body, INDENT),
            "",
            "    @staticmethod",
            *function("setup_context", [ctx, "inputs", "output"], "Keep the inputs and the "
                      "intermediates backward reads.",
                      context_body, INDENT),
            "",
            "    @staticmethod",
            *function("backward", [ctx, plan.seed, "*_"], "Gradients for each input (None for "
                      "integer labels), differentiable again.", backward_body, INDENT),
            "",
            "    @staticmethod",
            *function("jvp", jvp_params, "Forward mode (torch.func.jvp, jacfwd, hessian): the "
                      "tangents of the value and of the intermediates forward keeps, by torch's "
                      "forward-mode differentiation of forward_pass.", jvp_body, INDENT),
        ]),
        "\n".join(function(apply_name, params, f"{plan.value_name}, differentiable by autograd "
                           f"through {cls}.", wrapper)),
        *(text for text, _ in more),
    ]
    return "\n\n\n".join(parts) + "\n"


def forward_mode(cls: str, params: Sequence[str], labels: Sequence[str], ctx: str, torch: str,
                 names: Names, level: str) -> tuple[list[str], list[str]]:
    """The parameters and body of the Function's ``jvp``: ``torch.func.jvp`` of its
    ``forward_pass`` in the floating inputs (integer labels held fixed), a missing tangent 0.
    The inputs stay in a tuple, not in variables of their own names, which could hide the
    builtins it calls (a variable named ``zip`` or ``sum``). A kept mask (``x > 0``) has no
    tangent: None, as torch requires."""
    (tangents, inputs, subset, each, one, given, level_, moving, values, merged, value, outputs,
     moved_out, output, moved) = (names.fresh(n) for n in (
        "tangents", "inputs", "primals", "x", "t", "given", "level", "moving", "values", "merged",
        "value", "outputs", "tangents_out", "output", "tangent"))
    functorch = f"{torch}._C._functorch"
    body = [f"{level}if sum({level_}.key() == {functorch}.TransformType.Jvp",
            f"{level}       for {level_} in {functorch}.get_interpreter_stack() or ()) > 1:",
            f'{level}    raise RuntimeError("forward mode over forward mode (jacfwd of jacfwd, '
            f'jvp of jvp) "',
            f'{level}                       "is not supported through this Function: torch drops '
            f'the outer "',
            f'{level}                       "tangent in its jvp; use torch.func.hessian (jacfwd of '
            f'jacrev)")',
            f"{level}{inputs} = {ctx}.saved_tensors[:{len(params)}]"]
    listed = f"{body[-1]}   # {', '.join(params)}"
    if len(listed) <= WIDTH:
        body[-1] = listed
    passed, primals = f"{cls}.forward_pass", inputs
    if labels:
        fixed = tuple(k for k, p in enumerate(params) if p in labels)
        inner = level + INDENT
        passed, primals = names.fresh("moved"), subset
        body += [f"{level}{moving} = [{each} for {each} in range({len(params)}) if {each} not in "
                 f"{fixed}]   # labels held fixed",
                 *function(passed, [f"*{values}"], "forward_pass with the labels held fixed.", [
                     f"{inner}{merged} = list({inputs})",
                     f"{inner}for {each}, {value} in zip({moving}, {values}, strict=True):",
                     f"{inner}{INDENT}{merged}[{each}] = {value}",
                     f"{inner}return {cls}.forward_pass(*{merged})"],
                           level),
                 f"{level}{tangents} = tuple({tangents}[{each}] for {each} in {moving})",
                 f"{level}{primals} = tuple({inputs}[{each}] for {each} in {moving})"]
    return [ctx, f"*{tangents}"], [
        *body,
        f"{level}{given} = tuple({torch}.zeros_like({each}) if {one} is None else {one}",
        f"{level}{' ' * len(f'{given} = tuple(')}for {each}, {one} in zip({primals}, "
        f"{tangents}, strict=True))",
        f"{level}{outputs}, {moved_out} = {torch}.func.jvp({passed}, {primals}, {given})",
        f"{level}return tuple({moved} if {output}.is_floating_point() else None",
        f"{level}             for {output}, {moved} in zip({outputs}, {moved_out}, strict=True))"]


def jax_module(plan: Plan, emit: Sequence[str] = ("grad",), layout: str | None = None
               ) -> str:
    """A pure ``jax.numpy`` function with the derived gradient attached by ``jax.custom_vjp``:
    its forward pass returns the value and the intermediates the backward pass reads, the
    backward pass is the derivation's (usable under ``jax.grad``, ``jit`` and ``vmap``). The
    functions ``emit`` adds are plain ``jax.numpy`` code."""
    asked, plan = plan, torch_plan(plan)
    names = module_names(plan)
    params = plan.params
    block, forward_block, passes, value_var, grads = two_passes(plan, names, JAX)
    blocks = [block] if forward_block is block else [block, forward_block]
    residuals = [*params, *([value_var] if passes.reads(value_var) else []),
                 *passes.kept(value_var)]
    check = checker(names, block, labels_of(plan))
    table = tables(plan, names, block, params)
    checks = declaration_checks(plan, block)
    more = extra_functions(asked, names, emit, layout, JAX)
    helpers, imports = helpers_and_imports([*blocks, *(b for _, b in more)])
    jax_alias = names.alias("jax")
    apply_name = function_name(plan, names)
    forward, backward = names.fresh(f"_{apply_name}_forward"), names.fresh(
        f"_{apply_name}_backward")
    residual = names.fresh("residuals")
    forward_body = [*check_call(names, params), *checks, *symmetrised(plan, params),
                    *(line for s in passes.forward for line in s.lines(INDENT)),
                    *in_parentheses(f"{INDENT}return {value_var}, ", residuals, INDENT,
                                    always=True)]
    backward_body = [*unpacked(residuals, residual, INDENT),
                     *(line for s in passes.backward for line in s.lines(INDENT)),
                     *in_parentheses(f"{INDENT}return ", [grads.get(p, "None") for p in params],
                                     INDENT)]
    exported = [apply_name, *(function_of(text) for text, _ in more)]
    parts = [
        docstring(plan, f"{plan.value_name} as a jax.numpy function with the gradient derived "
                        f"by matcalc attached through jax.custom_vjp (jax.grad, jit and vmap use "
                        f"it); its backward pass gives ∂f/∂x for f = sum({plan.seed} ⊙ "
                        f"{plan.value_name})."),
        "\n".join(with_jax(imports, jax_alias)) + "\n\n__all__ = " + repr(exported).replace(
            "'", '"'),
        *helpers,
        check,
        table,
        "\n".join([f"@{jax_alias}.custom_vjp",
                   *function(apply_name, params, f"{plan.value_name}, with its derived gradient.",
                             first_of(call(forward, params, INDENT, "return ")))]),
        "\n".join(function(forward, params, f"{plan.value_name} and the residuals the backward "
                            "pass reads.", forward_body)),
        "\n".join(function(backward, [residual, plan.seed], "The cotangent of each input "
                            "(None for integer labels).", backward_body)),
        f"{apply_name}.defvjp({forward}, {backward})",
        *(text for text, _ in more),
    ]
    return "\n\n\n".join(parts) + "\n"


def symmetrised(plan: Plan, params: Sequence[str]) -> list[str]:
    """``S = (S + S.T) / 2`` for each symmetric input of the JAX forward pass: the value is
    then f of the symmetric part, whose gradient (and the gradient of that, which JAX takes
    through this line) is the symmetric one the backward pass returns."""
    return [symmetric_part_line(p, "f among symmetric matrices, to any order")
            for p in params if has_property(plan.program.variables[p], "symmetric")]


def symmetric_part_line(name: str, note: str) -> str:
    """``name = (name + name.T) / 2`` in a function body (a matrix, in any target)."""
    return f"{INDENT}{name} = ({name} + {name}.T) / 2   # {note}"


@dataclass(frozen=True)
class Passes:
    """The statements of a backward block split into the forward pass (what the value and
    the intermediates need) and the backward pass (what reads the seed, and the gradients,
    some of which are constants); sizes the backward reads are computed again there, being
    numbers, not tensors to keep."""

    forward: list[Statement]
    backward: list[Statement]

    @staticmethod
    def split(statements: Sequence[Statement], seed: str, sizes: set[str],
              gradients: set[str]) -> Passes:
        backward_names, forward, backward = {seed}, [], []
        for statement in statements:
            if statement.code.reads & backward_names or targets_of(statement) & gradients:
                backward.append(statement)
                backward_names |= targets_of(statement)
            else:
                forward.append(statement)
        needed = set().union(*(s.code.reads for s in backward))
        repeated = []
        for statement in reversed(forward):
            if targets_of(statement) & needed & sizes:
                repeated.insert(0, dataclasses.replace(statement))
                needed |= statement.code.reads
        read_forward = set().union(*(s.code.reads for s in forward))
        forward = [s for s in forward if not targets_of(s) <= sizes - read_forward]
        return Passes(forward, [*repeated, *backward])

    def reads(self, name: str) -> bool:
        """Whether the backward pass reads ``name``."""
        return any(name in s.code.reads for s in self.backward)

    def kept(self, value: str) -> list[str]:
        """The forward pass's tensors the backward pass reads (not the value, returned first)."""
        reads = set().union(*(s.code.reads for s in self.backward))
        computed = {t for s in self.backward for t in targets_of(s)}
        return [t for s in self.forward for t in sorted(targets_of(s))
                if t in reads and t not in computed and t != value]


def targets_of(statement: Statement) -> set[str]:
    return {t.strip() for t in statement.target.split(",")} - {""}


def value_name_in(plan: Plan, names: Names) -> str:
    """What a function body calls the value: its name in the program, or ``value``."""
    return plan.value.attrs.name if plan.value.op == "named" else names.fresh("value")


def function_name(plan: Plan, names: Names) -> str:
    """The torch module's function: named as the program names its value (``L``), ``apply``
    otherwise; a Python builtin's name (``list``) is not taken, the module's own code uses it."""
    wanted = plan.value_name if plan.named else "apply"
    return wanted if wanted not in RESERVED else names.fresh(wanted)


def unpacked(targets: Sequence[str], source: str, indent: str) -> list[str]:
    """``a, b = source``, the names in parentheses over several lines when one is too long."""
    line = f"{indent}{tuple_text(targets)} = {source}"
    if len(line) <= WIDTH:
        return [line]
    return [f"{indent}(", *wrapped(targets, indent), f"{indent}) = {source}"]


def wrapped(names: Sequence[str], indent: str) -> list[str]:
    """``a, b, …,`` over as many lines one level deeper than ``indent`` as the width needs."""
    text = textwrap.fill(", ".join(names) + ",", WIDTH - len(indent) - len(INDENT))
    return textwrap.indent(text, indent + INDENT).splitlines()


def first_of(lines: list[str]) -> list[str]:
    """``return f(a, b)[0]``: a call's lines, its first value taken."""
    return [*lines[:-1], lines[-1] + "[0]"]


def with_jax(imports: Sequence[str], alias: str) -> list[str]:
    """The imports with ``import jax``, the standard library's first (as isort orders them)."""
    standard = [line for line in imports if line.startswith("import math")]
    rest = [line for line in imports if line and line not in standard]
    jax = f"import jax as {alias}" if alias != "jax" else "import jax"
    return [*standard, *([""] if standard else []), jax, *rest]


def in_parentheses(head: str, values: Sequence[str], indent: str, always: bool = False
                   ) -> list[str]:
    """``head a, b`` (``head(a, b)`` when ``always``), or when too long ``head(``, the values
    over several lines, ``)``."""
    line = f"{head}({tuple_text(values)})" if always else f"{head}{tuple_text(values)}"
    if len(line) <= WIDTH:
        return [line]
    return [f"{head}(", *wrapped(values, indent), f"{indent})"]


def floating_call(function: str, params: Sequence[str], labels: Sequence[str], indent: str
                  ) -> list[str]:
    """``X, W = _floating({"X": X, "W": W}, ())``, every argument as a tensor; when too long,
    the names and the dictionary one entry per line."""
    mapping = "{" + ", ".join(f'"{p}": {p}' for p in params) + "}"
    lines = call(function, [mapping, repr(tuple(labels))], indent, f"{tuple_text(params)} = ")
    if all(len(line) <= WIDTH for line in lines):
        return lines
    inner = indent + INDENT
    return [*unpacked(params, f"{function}(", indent), f"{inner}{{",
            *(f'{inner}{INDENT}"{p}": {p},' for p in params), f"{inner}}},",
            f"{inner}{tuple(labels)!r},", f"{indent})"]


def sole_owners(statements: Sequence[Statement], grads: Mapping[str, str]) -> list[str | None]:
    """For each statement, the one input whose gradient alone reads it (else None): found by
    following what each statement reads back from the gradients."""
    wanted: dict[str, set[str]] = {}
    for param, grad in grads.items():
        wanted.setdefault(grad, set()).add(param)
    owners: list[str | None] = []
    for statement in reversed(statements):
        by = set().union(*(wanted.get(t, set()) for t in targets_of(statement)))
        for name in statement.code.reads:
            wanted.setdefault(name, set()).update(by)
        owners.append(next(iter(by)) if len(by) == 1 else None)
    return owners[::-1]


def guarded(statements: Sequence[Statement], owners: Sequence[str | None],
            params: Sequence[str], ctx: str, level: str, grads: Mapping[str, str]
            ) -> list[str]:
    """The backward statements, those only one input's gradient reads under ``if
    ctx.needs_input_grad[i]:``, so that an input that needs no gradient (the data X) costs
    nothing, as in PyTorch's own backward; such gradients are None until computed. An input
    any of whose statements would not fit the line width one level deeper is not guarded."""
    deeper = level + INDENT
    unfit = {owner for statement, owner in zip(statements, owners, strict=True)
             if any(len(line) > WIDTH for line in statement.lines(deeper))}
    owners = [None if owner in unfit else owner for owner in owners]  # all of a gradient's or none
    optional = [grads[p] for p in dict.fromkeys(o for o in owners if o is not None)]
    lines = [f"{level}{' = '.join(names)} = None" for names in lines_of(optional, level)]
    current = None
    for statement, owner in zip(statements, owners, strict=True):
        if owner is not None and owner != current:
            test = f"{level}if {ctx}.needs_input_grad[{params.index(owner)}]:"
            lines.append(test + f"   # {owner}" * (len(test) + len(owner) + 5 <= WIDTH))
        lines += statement.lines(deeper if owner is not None else level)
        current = owner
    return lines


def lines_of(names: Sequence[str], indent: str) -> list[list[str]]:
    """The names in groups, each ``a = b = … = None`` within the line width."""
    groups: list[list[str]] = []
    for name in names:
        if groups and len(indent + " = ".join([*groups[-1], name, "None"])) <= WIDTH:
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


def tuple_text(names: Sequence[str]) -> str:
    """``a, b`` (``a,`` for one name) as an assignment target or a returned tuple."""
    return ", ".join(names) + ("," if len(names) == 1 else "")


def used_alias(names: Names, block: Block, module: str) -> str:
    block.modules.add(module)
    return names.alias(module)


def generate(source: str | Program, wrt: Sequence[str], target: str = "numpy",
             declarations: Sequence[str] = (), sizes: Mapping[str, int] | None = None,
             emit: Sequence[str] = ("grad",), layout: str | None = None) -> str:
    """The source of a standalone module computing the value and its derived gradients;
    ``sizes`` fixes the sizes no input's shape gives (``h`` of ``X: [B, T, h * k]``); ``emit``
    adds Jacobians, Hessians, Hessian-vector products and tangents (see
    :mod:`matcalc.forms.extra_functions`), Jacobians in ``layout``."""
    if target not in TARGETS:
        raise MatcalcError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    emit = names_of(emit)
    unknown = [e for e in emit if e not in EMITS]
    if not emit:
        raise MatcalcError(f"--emit names nothing to generate; choose from {', '.join(EMITS)}")
    if unknown:
        raise MatcalcError(f"--emit {unknown[0]}: not something matcalc generates; choose from "
                           f"{', '.join(EMITS)}." + did_you_mean(unknown[0], EMITS))
    if target in ("torch", "jax"):
        module = torch_module if target == "torch" else jax_module
        return module(plan(source, wrt, declarations, seeded=True, sizes=sizes), emit, layout)
    return numpy_module(plan(source, wrt, declarations, sizes=sizes), emit, layout)


def lambdify(source: str | Program, wrt: Sequence[str], target: str = "numpy",
             declarations: Sequence[str] = (), sizes: Mapping[str, int] | None = None,
             emit: Sequence[str] = ("grad",), layout: str | None = None) -> types.ModuleType:
    """The generated module, compiled in memory: ``.value``, ``.value_and_grad`` (NumPy) or
    the autograd function class and the function applying it (torch), and what ``emit``
    adds."""
    text = generate(source, wrt, target, declarations, sizes, emit, layout)
    filename = f"<matcalc {target} module {abs(hash(text)):x}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    module = types.ModuleType("matcalc_generated", text.split('"""')[1])
    exec(compile(text, filename, "exec"), module.__dict__)  # our own generator's output
    return module


__all__ = ["Dialect", "Plan", "Statement", "generate", "lambdify", "plan"]
