"""Every operation is defined once, with every facet, and has its independent oracles.

A missing facet would otherwise be found only when a program first used it: here each
registered operation is asked for its shape rule, its derivative rules, its printed forms in
text and LaTeX, its NumPy and PyTorch code and (elementwise) its meaning for one number; and
each function of the language for its entries in the oracles that check matcalc without
trusting it (NumPy and torch evaluation of the source, scalar expansion) and in the fuzzer.
"""

from __future__ import annotations

import re
import string

import pytest

from matcalc import parse
from matcalc.core.ir import METHOD, OPERATIONS, OpDef, params, postorder
from matcalc.core.rules import EveryArgument, callable_elementwise
from matcalc.forms.codegen import NUMPY, TORCH, Dialect, Emitter
from matcalc.forms.printing import Printer
from matcalc.language.lowering import FUNCTIONS
from matcalc.proofs import programs, reference
from matcalc.proofs.scalar_expansion import ELEMENTWISE, Expander

LEAVES = {"var", "const", "zeros", "identity", "delta"}
"""Operations without arguments: nothing to differentiate."""

DEFINITIONS = sorted(OPERATIONS.values(), key=lambda d: d.name)


def names(d: OpDef) -> str:
    return d.name


@pytest.mark.parametrize("d", DEFINITIONS, ids=names)
def test_every_operation_has_a_rule_per_argument(d: OpDef) -> None:
    if d.name in LEAVES or d.vec_form:
        assert not d.vjp, f"{d.name} has no arguments to differentiate"
    elif isinstance(d.vjp, EveryArgument):
        assert callable(d.vjp[0]) and callable(d.vjp[5])
    else:
        assert d.vjp and all(callable(rule) for rule in d.vjp), f"{d.name} has no rule"


@pytest.mark.parametrize("d", DEFINITIONS, ids=names)
@pytest.mark.parametrize("notation", ["text", "latex"])
def test_every_operation_prints(d: OpDef, notation: str) -> None:
    written = getattr(d, notation)
    if written == METHOD:
        assert hasattr(Printer, f"p_{d.name}"), f"{d.name} has no {notation} form"
    else:
        assert written.strip()


@pytest.mark.parametrize("d", DEFINITIONS, ids=names)
@pytest.mark.parametrize("dialect", [NUMPY, TORCH], ids=lambda d: d.name)
def test_every_operation_has_code(d: OpDef, dialect: Dialect) -> None:
    template = getattr(d, dialect.name)
    if d.primitives is not None:
        return                                  # computed as the primitives it is made of
    if template == METHOD:
        assert hasattr(Emitter, f"e_{d.name}"), f"{d.name} has no {dialect.name} code"
        return
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    helpers = {f for f in fields if f.startswith("_")}
    assert helpers <= set(dialect.helpers), f"{d.name}: {dialect.name} has no {helpers}"
    arguments = {f for f in fields if f.lstrip("p").isdigit()}
    assert fields - helpers - arguments <= {"xp", "math", *d.params}


@pytest.mark.parametrize("d", DEFINITIONS, ids=names)
def test_elementwise_operations_mean_something_for_one_number(d: OpDef) -> None:
    assert (d.scalar is not None) == d.elementwise
    if d.elementwise:
        assert d.name in ELEMENTWISE                # the scalar expansion applies it entrywise


@pytest.mark.parametrize("d", DEFINITIONS, ids=names)
def test_the_scalar_expansion_knows_every_operation(d: OpDef) -> None:
    if d.name == "onehot":
        return                  # of integer labels, which the exact check refuses to expand
    assert d.elementwise or hasattr(Expander, f"op_{d.name}"), f"expand {d.name} entrywise"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_of_the_language_has_independent_oracles(function: str) -> None:
    assert function in reference.NUMPY, f"{function}: no NumPy reference"
    torch_reference = pytest.importorskip("matcalc.proofs.torch_reference")  # torch: optional
    assert function in torch_reference.FUNCTIONS, f"{function}: no torch reference"


def test_the_fuzzer_generates_every_function_of_the_language() -> None:
    sources = "\n".join(programs.generate(seed).source() for seed in range(400))
    assert [f for f in FUNCTIONS if not re.search(rf"\b{f}\(", sources)] == []


def test_programs_call_every_elementwise_function_not_made_by_rules_only() -> None:
    internal = {name for name, d in OPERATIONS.items() if d.internal}
    assert set(callable_elementwise()) <= set(FUNCTIONS)
    assert not internal & set(FUNCTIONS)


def test_parameters_name_every_attribute() -> None:
    """Rules receive parameters by name: a node's attributes line up with its params."""
    program = parse("X: [n, n] symmetric; y: [n]\n"
                    "sum(softmax(X, axis=0) @ y) + sum(logsumexp(matrix_power(X, 2), axis=1))")
    seen = {node.op: params(node) for node in postorder([program.function])}
    assert seen["var"]["properties"] in ((), ("symmetric",))
    assert seen["softmax"] == {"axis": 0}
    assert seen["matrix_power"] == {"k": 2}
    assert seen["logsumexp"] == {"axis": 1}
