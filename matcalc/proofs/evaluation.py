"""Running a program: its generated code compiled, and its value from the independent reference."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from matcalc.core.ir import Node
from matcalc.forms.codegen import Block, numpy_block
from matcalc.language.lowering import Program
from matcalc.proofs.reference import reference_function


def compile_block(block: Block, params: Sequence[str], results: Sequence[str]) -> Callable:
    """A Python function ``(**arrays) -> tuple`` running the generated statements."""
    namespace: dict = {}
    source = block.function("_evaluate", params, results)
    exec(compile(source, "<matcalc generated>", "exec"), namespace)  # our own generator's output
    return namespace["_evaluate"]


def evaluator(program: Program, outputs: Sequence[tuple[str, Node]]) -> Callable[..., tuple]:
    """Evaluate IR expressions of ``program`` on arrays given by variable name, in order."""
    private = [("result*", node) for _, node in outputs]
    block = numpy_block(private, list(program.variables.values()), fixed=program.sizes)
    return compile_block(block, list(program.variables), block.outputs)


def function_value(program: Program) -> Callable[..., float]:
    """The program's function as ``(**arrays) -> value``, computed from its source text by
    NumPy alone (:mod:`matcalc.proofs.reference`), independently of the IR that gradients come
    from."""
    return reference_function(program)
