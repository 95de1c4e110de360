"""Mutation testing: does the test suite catch wrong math?

Each mutant rewrites ONE site of one target module (an operator swapped, a constant changed, a
condition negated, a statement dropped, a rule made wrong) in a private copy of the repository,
and runs a fast kill suite there (``python -m pytest -x -q -p no:cacheprovider``, with
PYTHONPATH set to the copy). A mutant is killed when the suite fails, errors or runs out of
time; it survives when the suite passes. The score per module is the share of mutants killed;
every survivor is listed with its file:line, the original line and the mutated one, so that a
person can judge whether it computes the same thing (an equivalent mutant) or shows a gap.

    python benchmarks/mutation.py [--modules rules,simplify,codegen] [--workers 2]
                                  [--tests tests/test_a.py,tests/test_b.py] [--timeout S]
                                  [--list] [--limit N] [--sample SEED] [--only ID,ID]
                                  [--results FILE] [--shuffle SEED] [--budget MINUTES]

``--list`` prints the mutants without running them. ``--limit N`` runs the first N (with
``--sample SEED``: N drawn at random by SEED, kept in the listed order). ``--only`` runs the
mutants with these ids (``module:line:column:k`` as ``--list`` prints them). ``--results FILE``
appends each result to FILE as it comes and reuses those already there, so a run that was cut
short (``--budget``, or stopped) resumes where it was. Mutants are generated with Python's
``ast`` (docstrings, strings, f-strings, annotations, decorators, ``raise`` statements,
``__all__``, module-level limits such as ``MAX_POWER = 64`` and the name and layout code listed
in ``NOT_MATH_CODE`` are left alone) and spliced into the original text, parenthesised where
needed and checked against the intended syntax tree, so line numbers stay as they are. Named
mutants from the issue (``SPECIALS``) come on top: the nested-power fold ``(xʲ)ᵏ → x^(j+k)``,
the naive NumPy sigmoid, torch's all-axes sum written ``dim=None`` and deliberately wrong rules.

Before the mutants, the copy's ``matcalc`` must be the one imported (not the editable install
in /work/main), a deliberately broken copy must fail the suite, and the unmutated copy must pass
it; 3 × its time + 60 s is the default per-mutant limit.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("matcalc", "tests", "examples", "pyproject.toml", "README.md")
MODULES = {
    "rules": "matcalc/core/rules.py",
    "simplify": "matcalc/core/simplify.py",
    "codegen": "matcalc/forms/codegen.py",
    "printing": "matcalc/forms/printing.py",
}
DEFAULT_MODULES = "rules,simplify,codegen"
KILL_SUITE = (
    "tests/test_regressions.py",
    "tests/test_functions_fd.py",
    "tests/test_module.py",
    "tests/test_derive.py",
    "tests/test_jacobian.py",
    "tests/test_symmetric.py",
    "tests/test_fuzz.py",
    "tests/test_hostile_names.py",
)
PYTEST = ("-m", "pytest", "-x", "-q", "-p", "no:cacheprovider")
CANARY = "raise RuntimeError('mutation canary: the copy under test is imported')\n"


# ----------------------------------------------------------------------------------------------
# Mutants


@dataclass(frozen=True)
class Mutant:
    """One rewrite of one site: the text in ``[start, end)`` (line, column in characters, lines
    from 1) replaced by ``replacement``."""

    module: str
    path: str
    line: int
    col: int
    end_line: int
    end_col: int
    operator: str
    replacement: str
    where: str
    """The function (or class, or ``<module>``) the site is in."""
    kind: str = "expr"
    """``expr`` (an expression replaced), ``stmt`` (a statement deleted) or ``special`` (a
    named mutant, replaced as text)."""
    number: int = 1
    """Which of the mutants starting at this line and column (in the listed order)."""

    @property
    def id(self) -> str:
        return f"{self.module}:{self.line}:{self.col}:{self.number}"


@dataclass(frozen=True)
class Special:
    """A named mutant from the issue: ``old`` (which must occur once in the module) becomes
    ``new``."""

    module: str
    name: str
    old: str
    new: str


SPECIALS = (
    Special("simplify", "issue: nested power (x^j)^k folded as x^(j+k)",
            "power(inner, const(j * k))", "power(inner, const(j + k))"),
    Special("codegen", "issue: naive NumPy sigmoid 1/(1+exp(-x))",
            "return {xp}.exp(-{xp}.logaddexp(0, -x))", "return 1 / (1 + {xp}.exp(-x))"),
    Special("codegen", "issue: torch all-axes sum written dim=None",
            "axis = tuple(range(x.rank))", 'axis = "None"'),
    Special("codegen", "issue: torch all-axes softmax/logsumexp written dim=None",
            'f", dim={tuple(range(node.args[0].rank)) if axis is None else axis}"',
            'f", dim={axis}"'),
    Special("rules", "wrong rule: inv without transposes",
            "-(transpose(out) @ g @ transpose(out))", "-(out @ g @ out)"),
    Special("rules", "wrong rule: negative matrix power without transposes",
            "-(transpose(y) @ y_bar @ transpose(y))", "-(y @ y_bar @ y)"),
    Special("rules", "wrong rule: softmax without the output in the row sum",
            "out * (g - row_sum(g * out, axis))", "out * (g - row_sum(g, axis))"),
    Special("rules", "wrong rule: logsumexp of a vector over axis=None",
            "softmax(x, vector_axis(x, axis))", "softmax(x, axis)"),
    Special("rules", "wrong rule: tanh' = 1 - tanh",
            "g * (1 - out**2)", "g * (1 - out)"),
    Special("rules", "wrong rule: sqrt' = 1/(2x)", "g / (2 * out)", "g / (2 * x)"),
    Special("rules", "wrong rule: silu' with sigma instead of 1 - sigma",
            "(1 + x * (1 - sigmoid(x)))", "(1 + x * sigmoid(x))"),
    Special("rules", "wrong rule: gelu' without the x in x phi(x)",
            "(normal_cdf(x) + x * normal_pdf(x))", "(normal_cdf(x) + normal_pdf(x))"),
    Special("rules", "wrong rule: leaky_relu slope gradient max(x, 0)",
            "g * (x - relu(x))", "g * relu(x)"),
    Special("rules", "wrong rule: cross-entropy assumes rows sum to 1",
            "g * (probabilities * row_sum(y, -1) - y) / rows(z)",
            "g * (probabilities - y) / rows(z)"),
    Special("rules", "wrong rule: mse divided by the rows, not the size",
            "g * 2 * (p - t) / size(p.shape)", "g * 2 * (p - t) / rows(p)"),
    Special("rules", "wrong rule: det without out", "g * out * transpose(inv(x))",
            "g * transpose(inv(x))"),
)

SWAPS: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE,
    ast.GtE: ast.Gt, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.And: ast.Or, ast.Or: ast.And,
}
SYMBOL = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.Eq: "==",
    ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Is: "is",
    ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.And: "and", ast.Or: "or",
}
NEGATION_IS_SWAP = (ast.Eq, ast.NotEq, ast.Is, ast.IsNot, ast.In, ast.NotIn)
"""``if not a == b`` is the mutant ``if a != b`` already made by a comparison swap."""

NOT_MATH_CODE = {
    "codegen": {
        "Names": "allocates names (clashes are the hostile-names tests' business)",
        "Statement.lines": "lays out a long statement on several lines",
        "Block": "imports, helpers and the layout of the generated text",
        "fill": "fills names into helper templates",
        "used_module": "records an import",
        "Emitter.__init__": "initialises the emitter's tables",
        "Emitter.add": "splits long lines by naming parts",
        "Emitter.longest_part": "splits long lines by naming parts",
        "Emitter.parts": "splits long lines by naming parts",
        "Emitter.temp_name": "chooses a temporary's name",
        "fits_by_parts": "splits long lines",
        "prune": "drops unused statements",
        "user_names": "collects the names to avoid",
    },
    "printing": {},
}
"""Functions and classes of a target module left alone: names and layout, not math."""

NOT_MATH = (ast.Constant, ast.JoinedStr, ast.List, ast.Tuple, ast.ListComp, ast.Set, ast.Dict)


def is_number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def is_container(node: ast.AST) -> bool:
    return isinstance(node, NOT_MATH) and not is_number(node)


def alternatives(node: ast.AST, module: str) -> Iterator[tuple[str, ast.AST]]:
    """``(operator, replacement node)`` for each mutant of the expression ``node``."""
    if isinstance(node, ast.BinOp) and type(node.op) in SWAPS:
        if not (is_container(node.left) or is_container(node.right)):
            new = SWAPS[type(node.op)]
            yield (f"{SYMBOL[type(node.op)]} -> {SYMBOL[new]}",
                   ast.BinOp(node.left, new(), node.right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult) and module == "rules":
        yield "swap @ operands", ast.BinOp(node.right, ast.MatMult(), node.left)
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in SWAPS:
                new = SWAPS[type(op)]
                ops = [*node.ops[:i], new(), *node.ops[i + 1:]]
                yield (f"{SYMBOL[type(op)]} -> {SYMBOL[new]}",
                       ast.Compare(node.left, ops, node.comparators))
    if isinstance(node, ast.BoolOp):
        new = SWAPS[type(node.op)]
        yield f"{SYMBOL[type(node.op)]} -> {SYMBOL[new]}", ast.BoolOp(new(), node.values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "not x -> x", node.operand
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield "-x -> x", node.operand
        if is_number(node.operand):
            value = -node.operand.value + 1
            yield f"{-node.operand.value} -> {value}", ast.Constant(value)
    if isinstance(node, ast.Constant) and type(node.value) is bool:
        yield f"{node.value} -> {not node.value}", ast.Constant(not node.value)
    elif is_number(node):                       # 0 <-> 1, any other k -> k + 1
        value = {0: 1, 1: 0}.get(node.value, node.value + 1)
        yield f"{node.value} -> {value}", ast.Constant(type(node.value)(value))
    if isinstance(node, ast.IfExp) and not (
            isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)) and not (
            isinstance(node.test, ast.Compare) and len(node.test.ops) == 1
            and isinstance(node.test.ops[0], NEGATION_IS_SWAP)):
        yield "x if c else y -> x if not c else y", ast.IfExp(
            ast.UnaryOp(ast.Not(), node.test), node.body, node.orelse)
    if module == "rules" and isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "transpose" and len(node.args) == 1 and not node.keywords:
            yield "drop transpose", node.args[0]
        if node.func.id == "matmul" and len(node.args) == 2 and not node.keywords:
            yield "swap matmul operands", ast.Call(node.func, node.args[::-1], [])


def skipped_fields(node: ast.AST) -> set[str]:
    """Fields of ``node`` whose code is not mutated: annotations, decorators, assertion
    messages."""
    if isinstance(node, ast.arg | ast.AnnAssign):
        return {"annotation"}
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return {"returns", "decorator_list"}
    if isinstance(node, ast.ClassDef):
        return {"decorator_list"}
    if isinstance(node, ast.Assert):
        return {"msg"}
    return set()


def left_alone(node: ast.AST) -> bool:
    """Subtrees never mutated: text, ``raise``, ``__all__`` and ``TYPE_CHECKING`` blocks."""
    if isinstance(node, ast.JoinedStr | ast.Raise):
        return True
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)
    if isinstance(node, ast.If):
        return "TYPE_CHECKING" in ast.unparse(node.test)
    return False


def bound_before(function: ast.AST) -> dict[str, list[tuple[int, int]]]:
    """Where each name is bound in ``function``: its parameters, then every store."""
    found: dict[str, list[tuple[int, int]]] = {}
    arguments = function.args
    for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
              arguments.vararg, arguments.kwarg]:
        if a is not None:
            found.setdefault(a.arg, []).append((0, 0))
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found.setdefault(node.id, []).append((node.lineno, node.col_offset))
    return found


def deletable(statement: ast.stmt, bound: dict[str, list[tuple[int, int]]] | None) -> bool:
    """A statement inside a function whose deletion is a mutant, not a NameError: a call, an
    augmented assignment, or an assignment to an attribute, an item or a name bound before."""
    if bound is None:
        return False
    if isinstance(statement, ast.Expr):
        return isinstance(statement.value, ast.Call)
    if isinstance(statement, ast.AugAssign):
        return not is_container(statement.value)
    if isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value is not None:
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        here = (statement.lineno, statement.col_offset)

        def rebinds(target: ast.expr) -> bool:
            if isinstance(target, ast.Name):
                return any(p < here for p in bound.get(target.id, []))
            if isinstance(target, ast.Tuple | ast.List):
                return all(rebinds(t) for t in target.elts)
            return isinstance(target, ast.Attribute | ast.Subscript)

        return all(rebinds(t) for t in targets)
    return False


class Sites:
    """Every mutant of one module's source, found by walking its syntax tree."""

    def __init__(self, module: str, path: str, source: str) -> None:
        self.module, self.path, self.source = module, path, source
        self.lines = source.splitlines(keepends=True)
        self.found: list[Mutant] = []

    def column(self, line: int, byte_offset: int) -> int:
        """The character column of a UTF-8 byte offset (what ``ast`` reports)."""
        return len(self.lines[line - 1].encode()[:byte_offset].decode())

    def add(self, node: ast.AST, operator: str, replacement: str, where: str,
            kind: str = "expr") -> None:
        self.found.append(Mutant(
            self.module, self.path, node.lineno, self.column(node.lineno, node.col_offset),
            node.end_lineno, self.column(node.end_lineno, node.end_col_offset), operator,
            replacement, where, kind))

    def walk(self, node: ast.AST, where: str = "<module>",
             bound: dict[str, list[tuple[int, int]]] | None = None) -> None:
        if left_alone(node):
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            where = node.name if where == "<module>" else f"{where}.{node.name}"
            bound = bound_before(node) if not isinstance(node, ast.ClassDef) else None
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(node, ast.Assign | ast.AnnAssign) and where == "<module>" and isinstance(
                target, ast.Name):
            where = target.id                           # a table such as RULES
            if where.isupper() and is_number(node.value):
                return                                  # a limit such as MAX_POWER = 64
        if where in NOT_MATH_CODE.get(self.module, {}):
            return
        if isinstance(node, ast.expr):
            for operator, new in alternatives(node, self.module):
                self.add(node, operator, ast.unparse(new), where)
        if isinstance(node, ast.If) and not (
                isinstance(node.test, ast.UnaryOp) and isinstance(node.test.op, ast.Not)) and not (
                isinstance(node.test, ast.Compare) and len(node.test.ops) == 1
                and isinstance(node.test.ops[0], NEGATION_IS_SWAP)):
            self.add(node.test, "if c -> if not c",
                     ast.unparse(ast.UnaryOp(ast.Not(), node.test)), where)
        if isinstance(node, ast.stmt) and deletable(node, bound):
            self.add(node, "delete statement", "pass", where, "stmt")
        if isinstance(node, ast.UnaryOp) and is_number(node.operand):
            return                              # -1 is one constant: mutated above, as a whole
        skip = skipped_fields(node)
        for name, value in ast.iter_fields(node):
            if name in skip:
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    self.walk(child, where, bound)


def splice(source: str, m: Mutant, parenthesise: bool) -> str:
    """``source`` with the mutant's span replaced."""
    lines = source.splitlines(keepends=True)
    before = "".join(lines[:m.line - 1]) + lines[m.line - 1][:m.col]
    after = lines[m.end_line - 1][m.end_col:] + "".join(lines[m.end_line:])
    text = f"({m.replacement})" if parenthesise else m.replacement
    return before + text + after


@dataclass
class Index:
    """A module's syntax tree, and where each node sits: by its span (and whether it is a
    statement), its parent, field and position in that field."""

    tree: ast.Module
    slots: dict[tuple, tuple[ast.AST, str, int | None]]
    scopes: dict[tuple, ast.AST]
    """The innermost function (or top-level statement) around each node, by the same key."""


@functools.lru_cache(maxsize=8)
def index(source: str) -> Index:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)

    def column(line: int, offset: int) -> int:
        return len(lines[line - 1].encode()[:offset].decode())

    slots: dict[tuple, tuple[ast.AST, str, int | None]] = {}
    scopes: dict[tuple, ast.AST] = {}

    def visit(node: ast.AST, scope: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            scope = node
        for name, value in ast.iter_fields(node):
            children = value if isinstance(value, list) else [value]
            for k, child in enumerate(children):
                if not isinstance(child, ast.AST):
                    continue
                if hasattr(child, "end_col_offset"):
                    key = (child.lineno, column(child.lineno, child.col_offset),
                           child.end_lineno, column(child.end_lineno, child.end_col_offset),
                           isinstance(child, ast.stmt))
                    if key not in slots:                # the outermost node of a span
                        slots[key] = (node, name, k if isinstance(value, list) else None)
                        scopes[key] = scope
                visit(child, scope if node is not tree else child)

    visit(tree, tree)
    return Index(tree, slots, scopes)


def same_scope(mutated: ast.Module, original: ast.Module, scope: ast.AST) -> ast.AST | None:
    """The function or top-level statement of ``mutated`` standing where ``scope`` stands in
    ``original`` (the text before a splice is unchanged)."""
    if isinstance(scope, ast.Module):
        return mutated
    if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
        return next((n for n in ast.walk(mutated) if type(n) is type(scope)
                     and (n.lineno, n.col_offset) == (scope.lineno, scope.col_offset)), None)
    if len(mutated.body) != len(original.body):
        return None
    return mutated.body[original.body.index(scope)]


@functools.cache
def mutated_source(source: str, m: Mutant) -> str:
    """The module's text with the mutant applied. Unless the mutant is a named one (given as
    text), the function around the site must parse to its syntax tree with the replacement node
    in place: the replacement is parenthesised when it must be."""
    if m.kind == "special":
        text = splice(source, m, False)
        ast.parse(text)
        return text
    found = index(source)
    key = (m.line, m.col, m.end_line, m.end_col, m.kind == "stmt")
    parent, field, k = found.slots[key]
    scope = found.scopes[key]
    new = ast.parse(m.replacement, mode="exec" if m.kind == "stmt" else "eval")
    new_node = new.body[0] if m.kind == "stmt" else new.body
    old = getattr(parent, field)[k] if k is not None else getattr(parent, field)
    try:
        if k is None:
            setattr(parent, field, new_node)
        else:
            getattr(parent, field)[k] = new_node
        intended = ast.dump(scope)
    finally:
        if k is None:
            setattr(parent, field, old)
        else:
            getattr(parent, field)[k] = old
    for parenthesise in (False, True):
        text = splice(source, m, parenthesise)
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        there = same_scope(tree, found.tree, scope)
        if there is not None and ast.dump(there) == intended:
            return text
    raise ValueError(f"cannot splice mutant {m.id}")


def special_mutants(module: str, path: str, source: str) -> list[Mutant]:
    """The issue's named mutants of ``module`` (a warning for one that no longer applies)."""
    found = []
    for s in SPECIALS:
        if s.module != module:
            continue
        start = source.find(s.old)
        if start < 0 or source.find(s.old, start + 1) >= 0:
            print(f"warning: {s.name!r} does not apply to {path} "
                  f"({'not found' if start < 0 else 'found twice'})", file=sys.stderr)
            continue
        line = source.count("\n", 0, start) + 1
        col = start - (source.rfind("\n", 0, start) + 1)
        end = start + len(s.old)
        end_line = source.count("\n", 0, end) + 1
        end_col = end - (source.rfind("\n", 0, end) + 1)
        where = enclosing(source, line)
        found.append(Mutant(module, path, line, col, end_line, end_col, s.name, s.new, where,
                            "special"))
    return found


def enclosing(source: str, line: int) -> str:
    """The function or class (or module-level table) around ``line``, qualified."""

    def within(body: list[ast.stmt], prefix: str) -> str:
        for node in body:
            if not node.lineno <= line <= node.end_lineno:
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                return within(node.body, f"{prefix}{node.name}.") or prefix + node.name
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(
                node, "target", None)
            if not prefix and isinstance(target, ast.Name):
                return target.id
        return ""

    return within(ast.parse(source).body, "") or "<module>"


def collect(modules: list[str], root: Path) -> list[Mutant]:
    """Every mutant of ``modules``, in a fixed order, no two giving the same program."""
    everything: list[Mutant] = []
    for module in modules:
        path = MODULES[module]
        source = (root / path).read_text()
        sites = Sites(module, path, source)
        sites.walk(ast.parse(source))
        seen: set[tuple] = set()
        chosen = []
        for m in [*special_mutants(module, path, source), *sites.found]:
            mutated_source(source, m)                   # it must apply
            key = (m.line, m.col, m.end_line, m.end_col, m.replacement)
            if key not in seen:
                seen.add(key)
                chosen.append(m)
        chosen.sort(key=lambda m: (m.line, m.col, m.end_line, m.end_col, m.operator))
        for m in chosen:
            previous = everything[-1] if everything else None
            same = previous is not None and (previous.module, previous.line, previous.col) == (
                m.module, m.line, m.col)
            everything.append(replace(m, number=previous.number + 1 if same else 1))
    return everything


def shown(m: Mutant, source: str) -> tuple[str, str]:
    """The original line(s) of the site and the same line(s) mutated."""
    original = source.splitlines()[m.line - 1:m.end_line]
    mutated_lines = mutated_source(source, m).splitlines()
    changed = len(mutated_lines) - len(source.splitlines())
    mutated = mutated_lines[m.line - 1:m.end_line + changed]
    return "\n".join(original), "\n".join(mutated)


# ----------------------------------------------------------------------------------------------
# Running


@dataclass
class Result:
    id: str
    module: str
    path: str
    line: int
    operator: str
    where: str
    status: str
    """killed, survived or timeout (timeouts count as killed)."""
    seconds: float
    killer: str
    original: str
    mutated: str


def make_copy(destination: Path, root: Path = ROOT) -> Path:
    """The files the suite needs, from ``root``, at ``destination``."""
    destination.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for name in COPIED:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, destination / name)
    return destination


def environment(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(copy), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"       # a pyc of one mutant is never read for another
    env["PYTHONHASHSEED"] = "0"
    return env


RUNNING: set[int] = set()
"""Process groups of the suites running now (ended with this script)."""
SCRATCH: list[Path] = []
"""The temporary directory (removed with this script)."""


def run(copy: Path, args: list[str], limit: float | None) -> tuple[int | None, str, float]:
    """Run ``python args`` in ``copy``; the exit code (None on timeout), output and time."""
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, *args], cwd=copy, env=environment(copy),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    RUNNING.add(process.pid)
    try:
        output, _ = process.communicate(timeout=limit)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)     # pytest and every process it started
        output, _ = process.communicate()
        code = None
    finally:
        RUNNING.discard(process.pid)
    return code, output, time.monotonic() - start


def stop(signum: int, frame: object) -> None:
    """On SIGTERM or SIGINT: end the suites running now, then exit (results so far are in
    ``--results``)."""
    for group in list(RUNNING):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    for path in SCRATCH:
        shutil.rmtree(path, ignore_errors=True)
    os._exit(128 + signum)


def killer(output: str) -> str:
    """The test (or error) that failed, from pytest's summary."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line[:300]
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def check_copy(copy: Path, tests: list[str]) -> float:
    """The copy's matcalc is the one imported, a broken copy fails, the unmutated one passes;
    returns the unmutated suite's time."""
    code, output, _ = run(copy, ["-c", "import matcalc; print(matcalc.__file__)"], 120)
    imported = Path(output.strip().splitlines()[-1]) if output.strip() else None
    if code != 0 or imported is None or copy.resolve() not in imported.resolve().parents:
        sys.exit(f"the copy's matcalc is not the one imported: {output.strip()}")
    print(f"imports {imported}", flush=True)
    rules = copy / MODULES["rules"]
    original = rules.read_text()
    rules.write_text(original + CANARY)
    try:
        code, output, seconds = run(copy, [*PYTEST, *tests], 600)
    finally:
        rules.write_text(original)
    if code == 0 or "mutation canary" not in output:
        sys.exit(f"a deliberately broken rules.py in the copy was not caught:\n{output[-2000:]}")
    print(f"broken copy fails in {seconds:.1f} s: {killer(output)}", flush=True)
    code, output, seconds = run(copy, [*PYTEST, *tests], None)
    if code != 0:
        sys.exit(f"the unmutated kill suite fails (exit {code}):\n{output[-3000:]}")
    print(f"unmutated kill suite passes in {seconds:.1f} s", flush=True)
    return seconds


def run_all(mutants: list[Mutant], sources: dict[str, str], tests: list[str], workers: int,
            limit: float, scratch: Path, deadline: float, results_file: Path | None,
            snapshot: Path) -> list[Result]:
    """Run each mutant in one of ``workers`` copies of ``snapshot``; none is started after
    ``deadline`` (``time.monotonic()``); each result is appended to ``results_file``."""
    copies: queue.Queue[Path] = queue.Queue()
    for k in range(workers):
        copies.put(make_copy(scratch / f"worker{k}", snapshot))
    lock = threading.Lock()
    done = [0]
    start = time.monotonic()

    def one(m: Mutant) -> Result | None:
        if time.monotonic() > deadline:
            return None
        copy = copies.get()
        target = copy / m.path
        try:
            target.write_text(mutated_source(sources[m.path], m))
            code, output, seconds = run(copy, [*PYTEST, *tests], limit)
        finally:
            target.write_text(sources[m.path])
            copies.put(copy)
        status = "timeout" if code is None else "survived" if code == 0 else "killed"
        original, mutated = shown(m, sources[m.path])
        result = Result(m.id, m.module, m.path, m.line, m.operator, m.where, status, seconds,
                        "" if status == "survived" else killer(output), original, mutated)
        with lock:
            done[0] += 1
            elapsed = time.monotonic() - start
            print(f"[{done[0]}/{len(mutants)} {elapsed / 60:.1f} min] {status:8s} "
                  f"{seconds:6.1f} s  {m.id}  {result.killer[:120]}", flush=True)
            if results_file is not None:
                with results_file.open("a") as out:
                    out.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
        return result

    with ThreadPoolExecutor(workers) as pool:
        return [r for r in pool.map(one, mutants) if r is not None]


def earlier_results(path: Path, mutants: list[Mutant], sources: dict[str, str],
                    ) -> dict[str, Result]:
    """Results in ``path`` (JSON lines) of mutants still the same: same id, same lines."""
    if not path.exists():
        return {}
    current = {m.id: m for m in mutants}
    found = {}
    for line in path.read_text().splitlines():
        r = Result(**json.loads(line))
        m = current.get(r.id)
        if m is not None and (r.original, r.mutated) == shown(m, sources[m.path]):
            found[r.id] = r
    return found


def report(results: list[Result], modules: list[str], seconds: float,
           mutants: list[Mutant]) -> str:
    lines = ["", "mutation score (killed/total):"]
    for module in modules:
        mine = [r for r in results if r.module == module]
        missing = sum(m.module == module for m in mutants) - len(mine)
        if mine:
            killed = sum(r.status != "survived" for r in mine)
            timeouts = sum(r.status == "timeout" for r in mine)
            lines.append(f"  {MODULES[module]:22s} {killed:4d}/{len(mine):<4d} "
                         f"({100 * killed / len(mine):5.1f}%)  timeouts {timeouts}"
                         + (f", not run {missing}" if missing else ""))
    killed = sum(r.status != "survived" for r in results)
    if results:
        lines.append(f"  {'total':22s} {killed:4d}/{len(results):<4d} "
                     f"({100 * killed / len(results):5.1f}%)  "
                     + (f"wall time {seconds / 60:.1f} min, " if seconds else "")
                     + f"suite runs {sum(r.seconds for r in results) / 60:.1f} min in all")
    survivors = [r for r in results if r.status == "survived"]
    lines += ["", f"survivors ({len(survivors)}):"]
    for r in survivors:
        lines += [f"{r.path}:{r.line}  [{r.operator}] in {r.where}  ({r.id})",
                  *(f"  - {text}" for text in r.original.splitlines()),
                  *(f"  + {text}" for text in r.mutated.splitlines()), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Main


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default=DEFAULT_MODULES,
                        help=f"comma-separated subset of {', '.join(MODULES)}")
    parser.add_argument("--tests", default=",".join(KILL_SUITE),
                        help="comma-separated test files, run in this order with -x")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per mutant (default: 3 × the unmutated suite + 60)")
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument("--limit", type=int, default=None, help="run only N mutants")
    parser.add_argument("--sample", type=int, default=None, metavar="SEED",
                        help="with --limit: draw the N at random by SEED")
    parser.add_argument("--only", default="", help="comma-separated mutant ids to run")
    parser.add_argument("--results", default=None, metavar="FILE",
                        help="append each result to FILE (JSON lines) and reuse the results "
                        "already there for unchanged mutants (to resume a run)")
    parser.add_argument("--shuffle", type=int, default=None, metavar="SEED",
                        help="run in an order shuffled by SEED (a run cut short by --budget is "
                        "then a random sample); the report is in the listed order")
    parser.add_argument("--budget", type=float, default=None, metavar="MINUTES",
                        help="start no mutant after this many minutes")
    parser.add_argument("--report", action="store_true",
                        help="with --results: print the report of the results there, run nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        sys.exit(f"unknown modules {unknown}; choose from {', '.join(MODULES)}")
    tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with tempfile.TemporaryDirectory(prefix="matcalc-mutation-") as scratch:
        SCRATCH.append(Path(scratch))
        return campaign(args, modules, tests, Path(scratch))


def campaign(args: argparse.Namespace, modules: list[str], tests: list[str], scratch: Path,
             ) -> int:
    """List, report or run the mutants of a snapshot of the repository taken now (others may
    go on editing it)."""
    snapshot = make_copy(scratch / "snapshot")
    mutants = collect(modules, snapshot)
    if args.only:
        wanted = set(args.only.split(","))
        mutants = [m for m in mutants if m.id in wanted]
    if args.limit is not None:
        if args.sample is not None:
            picked = set(random.Random(args.sample).sample(range(len(mutants)),
                                                           min(args.limit, len(mutants))))
            mutants = [m for k, m in enumerate(mutants) if k in picked]
        else:
            mutants = mutants[:args.limit]
    sources = {MODULES[m]: (snapshot / MODULES[m]).read_text() for m in modules}
    if args.list:
        for m in mutants:
            original, mutated = shown(m, sources[m.path])
            print(f"{m.id}  [{m.operator}] in {m.where}")
            print("\n".join(f"  - {t}" for t in original.splitlines()))
            print("\n".join(f"  + {t}" for t in mutated.splitlines()))
        counts = {module: sum(m.module == module for m in mutants) for module in modules}
        print(f"{len(mutants)} mutants: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0
    results_file = Path(args.results) if args.results else None
    reused = earlier_results(results_file, mutants, sources) if results_file else {}
    todo = [m for m in mutants if m.id not in reused]
    if args.report:
        print(report([reused[m.id] for m in mutants if m.id in reused], modules, 0.0, mutants))
        return 0
    if args.shuffle is not None:
        random.Random(args.shuffle).shuffle(todo)
    print(f"{len(mutants)} mutants of {', '.join(modules)} ({len(reused)} done before); "
          f"kill suite: {' '.join(tests)}", flush=True)
    start = time.monotonic()
    deadline = start + 60 * args.budget if args.budget is not None else float("inf")
    baseline = check_copy(make_copy(scratch / "check", snapshot), tests)
    limit = args.timeout if args.timeout is not None else 3 * baseline + 60
    print(f"time limit per mutant {limit:.0f} s, {args.workers} workers", flush=True)
    fresh = run_all(todo, sources, tests, args.workers, limit, scratch, deadline, results_file,
                    snapshot)
    seconds = time.monotonic() - start
    by_id = {**reused, **{r.id: r for r in fresh}}
    results = [by_id[m.id] for m in mutants if m.id in by_id]
    print(report(results, modules, seconds, mutants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
