"""The fuzz gate: random programs through every output path of matcalc, against torch.autograd.

For each random program (:mod:`matcalc.proofs.programs`) a :class:`Case` fixes concrete sizes,
the seed of its float64 inputs, what to differentiate and which paths to run. Each path derives
or generates code with matcalc, runs it, and compares with the independent torch evaluation of
the source text (:mod:`matcalc.proofs.torch_reference`) differentiated by torch.autograd, within
``max|a − b| ≤ 1e-6 · max(1, max|ref|)``. Every (program, path) ends in one category of
:data:`CATEGORIES`; a program counts by its worst path. Failures are shrunk to minimal programs
that fail the same way on the same path.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import math
import multiprocessing
import multiprocessing.pool
import os
import random
import re
import resource
import subprocess
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

import matcalc
from matcalc.errors import MatcalcError, NotDerived
from matcalc.language import syntax
from matcalc.language.sizes import concrete_shape
from matcalc.proofs import programs
from matcalc.proofs.time_limits import OutOfTime, time_limit
from matcalc.proofs.torch_reference import Trace, torch_trace

CATEGORIES = ("ok", "wrong", "shape-wrong", "internal", "refused", "timeout", "skipped")
SEVERITY = ("ok", "skipped", "refused", "timeout", "internal", "shape-wrong", "wrong")
"""Categories from best to worst: a program counts by its worst path."""
FAILURES = ("wrong", "shape-wrong", "internal", "timeout")
PATHS = ("setup", "derive", "steps", "numpy", "torch", "torch.func", "jax", "emit", "jacobian",
         "hessian", "hvp", "cli")
"""Output paths checked (``setup`` is parsing the program and drawing its inputs)."""
X_PATHS = ("jacobian", "hessian", "hvp", "emit")
"""Paths differentiating with respect to the one variable ``x`` of a case, not ``wrt``."""
SCALAR_PATHS = ("derive", "steps", "numpy", "torch", "hessian", "hvp")
LAYER_PATHS = ("numpy", "torch", "jacobian")
TOLERANCE = 1e-6
KINK_MARGIN = 1e-3
DRAWS = 20
"""Input draws tried before a program is skipped (not finite, or too near a kink)."""
CLI_EVERY = 50
FUNC_EVERY = 4
JAX_EVERY = 4
"""One case in JAX_EVERY also runs the JAX target (drawn apart from the case's other draws,
so that adding it changed no case; skipped without JAX)."""
EMIT_EVERY = 3
"""One case in EMIT_EVERY also runs the functions ``--emit`` adds (drawn apart likewise)."""
MAX_SHOWN_LINES = 30
MAX_SHOWN_SOURCE = 1500
"""Longer shrunk programs are reproduced from the run's seed and index instead."""
CLI = "from matcalc.cli import main; main()"
ENGLISH = {"a", "an", "and", "by", "for", "in", "is", "it", "not", "of", "or", "the", "to"}
"""Words of messages that are not blanked even when the program uses them as names."""
CLI_STARTUP = 20.0
"""Seconds added to the time limit of the CLI path, for starting Python and importing."""


# ----------------------------------------------------------------------------------------------
# Cases and outcomes


@dataclass(frozen=True)
class Case:
    """One program with everything a run needs: sizes, input seed, names, paths."""

    source: str
    sizes: tuple[tuple[str, int], ...] = ()
    draw: int = 0
    wrt: tuple[str, ...] = ()
    x: str = ""
    layout: str = "numerator"
    paths: tuple[str, ...] = ()
    execute: bool = True
    """False in size mode: only whether matcalc answers in time, nothing is run."""

    def command(self, path: str) -> str:
        """A one-line shell command replaying this case on ``path``."""
        sizes = ",".join(f"{k}={v}" for k, v in self.sizes)
        parts = [f"python benchmarks/fuzz.py --replay {bash_quote(self.source)} --path {path}"]
        parts += [f"--wrt {','.join(self.wrt)}"] if self.wrt and path not in X_PATHS else []
        parts += [f"--x {self.x}"] if self.x and (path in X_PATHS or path == "jax") else []
        parts += [f"--layout {self.layout}"] if path == "jacobian" else []
        parts += [f"--sizes {sizes}"] if sizes else []
        parts += [f"--draw {self.draw}"] + ([] if self.execute else ["--no-execute"])
        return " ".join(parts)


def bash_quote(text: str) -> str:
    """``text`` as one bash word on one line ($'…' quoting)."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"$'{escaped}'"


@dataclass(frozen=True)
class Outcome:
    """How one path went: its category, the exception type and a normalised first line."""

    path: str
    category: str
    error: str = ""
    message: str = ""
    detail: str = ""

    def signature(self) -> tuple[str, str, str, str]:
        return self.category, self.path, self.error, self.message


@dataclass
class Result:
    """All outcomes of one program."""

    index: int
    program: programs.Program
    case: Case
    outcomes: list[Outcome]

    @property
    def worst(self) -> Outcome:
        return max(self.outcomes, key=lambda o: SEVERITY.index(o.category))


class Failure(Exception):
    """A path ended other than ok: numbers or shapes differ, generated code broke, or the
    reference could not be computed."""

    def __init__(self, category: str, message: str, detail: str = "", error: str = "") -> None:
        super().__init__(message)
        self.category, self.message, self.detail, self.error = category, message, detail, error


def first_line(text: str) -> str:
    return next((line for line in str(text).splitlines() if line.strip()), "").strip()


def normalise(message: str, names: Iterable[str] = ()) -> str:
    """A message with quoted text, the program's ``names`` and numbers blanked, so that one
    bug gives one signature."""
    message = first_line(message).removeprefix("error: ")
    message = re.sub(r"`[^`]*`|'[^']*'|\"[^\"]*\"", "‹›", message)
    for name in sorted(set(names) - ENGLISH, key=len, reverse=True):
        message = re.sub(rf"(?<![\w‹]){re.escape(name)}(?![\w›])", "‹›", message)
    return re.sub(r"\b\d+(\.\d+)?\b", "#", message)[:160]


def user_names(source: str) -> set[str]:
    """The names a program declares or assigns (dimensions too)."""
    found = set()
    for line in source.splitlines():
        code = line.partition("#")[0]
        head, colon, dims = code.partition(":")
        if colon:
            found |= {n.strip() for n in head.split(",")}
            found |= set(re.findall(r"[A-Za-z_]\w*", dims.partition("]")[0]))
        elif "=" in code.split("(")[0]:
            found.add(code.split("=")[0].strip())
    return found


# ----------------------------------------------------------------------------------------------
# Making cases


def draw_sizes(dims: Sequence[str], rng: random.Random) -> dict[str, int]:
    """Sizes 1–4 (mostly 2–4), different dimensions usually of different sizes."""
    sizes: dict[str, int] = {}
    for d in dims:
        size = rng.choice([1, 2, 2, 3, 3, 3, 4, 4, 4])
        if size in sizes.values() and rng.random() < 0.8:
            size = rng.choice([1, 2, 2, 3, 3, 3, 4, 4, 4])
        sizes[d] = size
    return sizes


def float_variables(p: programs.Program) -> list[programs.Decl]:
    return [d for d in p.decls if not d.kind.startswith("labels")]


def make_case(p: programs.Program, seed: int | str, mode: str = "normal") -> Case:
    """Sizes, the input seed, what to differentiate and the paths to run for ``p``."""
    rng = random.Random(f"case:{seed}")
    dims = sorted({d for decl in p.decls for d in decl.shape if not d.isdigit()})
    floats = float_variables(p)
    wrt = [d.name for d in rng.sample(floats, min(len(floats), rng.randint(1, 3)))]
    if p.stmts and rng.random() < 0.3:
        wrt.append(rng.choice(p.stmts).name)
    plain = [d.name for d in floats if d.prop != "symmetric"]
    scalar = not p.final.shape
    paths = list(SCALAR_PATHS if scalar else LAYER_PATHS)
    if rng.random() < 1 / FUNC_EVERY:
        paths.append("torch.func")
    if rng.random() < 1 / CLI_EVERY:
        paths.append("cli")
    if random.Random(f"jax:{seed}").random() < 1 / JAX_EVERY:
        paths.append("jax")
    if random.Random(f"emit:{seed}").random() < 1 / EMIT_EVERY:
        paths.append("emit")
    if mode == "size":
        paths = list(SCALAR_PATHS)
    return Case(p.source(), tuple(draw_sizes(dims, rng).items()), rng.randrange(2**32),
                tuple(wrt), rng.choice(plain) if plain else "",
                rng.choice(["numerator", "denominator"]), tuple(paths), mode != "size")


# ----------------------------------------------------------------------------------------------
# Inputs


ANNOTATION = re.compile(r"^\s*(\w+)\s*:\s*\[[^\]]*\]\s*(\w*)\s*(?:#\s*draw:\s*(\S+))?")


def annotations(source: str) -> dict[str, tuple[str, str]]:
    """Each declared name's property and draw kind, read from the source's declaration lines."""
    found = {}
    for line in source.splitlines():
        m = ANNOTATION.match(line)
        if m:
            found[m.group(1)] = (m.group(2), m.group(3) or "")
    return found


def sample(shape: tuple[int, ...], prop: str, kind: str, sizes: dict[str, int],
           rng: np.random.Generator) -> np.ndarray:
    """A float64 array (int64 for labels) that is what its declaration promises."""
    if kind.startswith("labels"):
        classes = kind.partition(":")[2]
        top = int(classes) if classes.isdigit() else sizes.get(classes, 1)
        return rng.integers(0, top, shape).astype(np.int64)
    if kind == "onehot":
        hot = rng.integers(0, shape[-1], shape[:-1]) if shape else 0
        return np.eye(shape[-1])[hot] if shape else np.array(1.0)
    if kind == "probabilities":
        p = rng.uniform(0.1, 1.0, shape)
        return p / p.sum(axis=-1, keepdims=True) if shape else np.array(1.0)
    if kind == "positive":
        a = rng.uniform(0.5, 2.0, shape)
    elif kind == "wc" and len(shape) == 2 and shape[0] == shape[1]:
        a = 2 * np.eye(shape[0]) + rng.normal(0, 0.3, shape)
    else:
        a = rng.normal(size=shape)
    return (a + a.T) / 2 if prop == "symmetric" else a


def tensors(arrays: dict[str, np.ndarray], grad: bool = True) -> dict[str, torch.Tensor]:
    """Float arrays as float64 leaves requiring grad (when ``grad``), labels as int64."""
    out = {}
    for name, a in arrays.items():
        t = torch.tensor(a)
        out[name] = t.requires_grad_(grad) if t.is_floating_point() else t
    return out


def smooth(trace: Trace) -> bool:
    """A finite value, every kink argument away from 0, every norm argument away from 0."""
    if not bool(torch.all(torch.isfinite(trace.value))):
        return False
    kinks = all(float(torch.min(torch.abs(k))) > KINK_MARGIN for k in trace.kinks if k.numel())
    return kinks and all(float(torch.sqrt(torch.sum(n * n))) > KINK_MARGIN for n in trace.norms)


# ----------------------------------------------------------------------------------------------
# The context of one case: its inputs and the reference


@dataclass
class Context:
    """A parsed case with valid inputs, and the reference computed from its source."""

    case: Case
    program: matcalc.Program
    arrays: dict[str, np.ndarray]
    rng: np.random.Generator
    reference: Callable[..., Trace] = field(repr=False, default=None)

    @property
    def sizes(self) -> dict[str, int]:
        return dict(self.case.sizes)

    @property
    def floats(self) -> list[str]:
        return [n for n, a in self.arrays.items() if a.dtype.kind == "f"]

    def draw(self) -> dict[str, np.ndarray]:
        """Random arrays for every variable, each what its declaration promises."""
        kinds, sizes = annotations(self.case.source), self.sizes
        return {name: sample(concrete_shape(node.shape, sizes), *kinds.get(name, ("", "")), sizes,
                             self.rng)
                for name, node in self.program.variables.items()}

    def symmetric(self, name: str) -> bool:
        """Whether ``name`` is declared symmetric (as the source says)."""
        return annotations(self.case.source).get(name, ("", ""))[0] == "symmetric"

    def trace(self, arrays: dict[str, np.ndarray] | None = None) -> tuple[Trace, dict]:
        leaves = tensors(self.arrays if arrays is None else arrays)
        return self.reference(**leaves), leaves

    def value(self, arrays: dict[str, np.ndarray] | None = None) -> np.ndarray:
        return by_reference(lambda: self.trace(arrays)[0].value.detach().numpy())

    def grad_output(self) -> np.ndarray:
        """A fixed random cotangent shaped like the value (for vector-Jacobian products)."""
        shape = tuple(self.value().shape)
        return np.random.default_rng(self.case.draw + 1).normal(size=shape)

    def gradients(self, names: Sequence[str], grad_output: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
        """∂⟨G, f⟩/∂name by torch.autograd (symmetric variables: the symmetric part)."""
        grads = by_reference(lambda: self.autograd(names, grad_output))
        for name, grad in grads.items():
            if not np.all(np.isfinite(grad)):
                raise Failure("skipped", f"the reference gradient of {name} is not finite")
        return grads

    def autograd(self, names: Sequence[str], grad_output: np.ndarray | None
                 ) -> dict[str, np.ndarray]:
        trace, leaves = self.trace()
        targets = [leaves[n] if n in leaves else trace.intermediates[n] for n in names]
        g = None if grad_output is None else torch.tensor(grad_output)
        found = grad(trace.value, targets, g)
        return {name: self.project(name, g.numpy()) for name, g in zip(names, found, strict=True)}

    def project(self, name: str, g: np.ndarray) -> np.ndarray:
        return (g + g.T) / 2 if self.symmetric(name) else g

    def function_of(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """The value as a function of the variable ``name`` alone (the others fixed)."""
        fixed = tensors(self.arrays, grad=False)
        return lambda t: self.reference(**{**fixed, name: t}).value


def grad(value: torch.Tensor, targets: Sequence[torch.Tensor],
         grad_output: torch.Tensor | None = None, create_graph: bool = False
         ) -> list[torch.Tensor]:
    """torch.autograd.grad, zeros where the value does not depend on a target."""
    if not value.requires_grad:
        return [torch.zeros_like(t) for t in targets]
    found = torch.autograd.grad(value, targets, grad_outputs=grad_output, allow_unused=True,
                                create_graph=create_graph)
    return [torch.zeros_like(t) if g is None else g if create_graph else g.detach().clone()
            for t, g in zip(targets, found, strict=True)]   # clone: no lazy zero tensors


def by_reference(run: Callable[[], object]) -> object:
    """Run part of the reference; its failure skips the path (it is not matcalc's)."""
    try:
        return run()
    except (OutOfTime, Failure):
        raise
    except Exception as bad:
        raise Failure("skipped", f"the reference failed: {type(bad).__name__}: "
                      f"{normalise(str(bad))}", traceback.format_exc()) from None


def make_context(case: Case) -> Context:
    """Parse the case and draw inputs where the function is finite and smooth.

    MatcalcError when matcalc refuses the program; Failure("skipped") when no draw is valid.
    """
    program = matcalc.parse(case.source)
    context = Context(case, program, {}, np.random.default_rng(case.draw))
    if not case.execute:
        return context
    context.reference = torch_trace(program)
    for _ in range(DRAWS):
        context.arrays = context.draw()
        try:
            with torch.no_grad():
                if smooth(context.trace()[0]):
                    return context
        except (RuntimeError, ValueError, IndexError) as bad:  # e.g. a singular matrix
            last = f"{type(bad).__name__}: {first_line(bad)}"
        else:
            last = "the value is not finite or an argument is at a kink"
    raise Failure("skipped", f"no valid input in {DRAWS} draws ({last})")


# ----------------------------------------------------------------------------------------------
# Comparing


def as_array(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().numpy()
    return np.asarray(value, dtype=float)


def compare(what: str, got: object, want: np.ndarray, lenient: bool = False) -> None:
    """Failure unless ``got`` has the shape of ``want`` and is within the tolerance.

    ``lenient`` accepts any shape with the same entries (a scalar's Jacobian as [n] or [n, 1]).
    """
    try:
        got = as_array(got)
    except (TypeError, ValueError) as bad:
        raise Failure("wrong", f"{what} is not an array", f"{type(bad).__name__}: {bad}") from None
    if got.shape != want.shape:
        if not (lenient and got.size == want.size):
            raise Failure("shape-wrong", f"{what} has the wrong shape",
                          f"{what}: got shape {got.shape}, want {want.shape}")
        got = got.reshape(want.shape)
    if not np.all(np.isfinite(want)):       # torch's value is not defined (0 · ∞ and the like)
        raise Failure("skipped", f"the reference {what} is not finite")
    error = float(np.max(np.abs(got - want), initial=0.0))
    scale = max(1.0, float(np.max(np.abs(want), initial=0.0)))
    if not error <= TOLERANCE * scale:
        raise Failure("wrong", f"{what} differs",
                      f"{what}: max error {error:.3g} (scale {scale:.3g})\n"
                      f"got:\n{np.array2string(got, precision=6)}\n"
                      f"want:\n{np.array2string(want, precision=6)}")


def generated(run: Callable[[], object], code: str = "") -> object:
    """Run generated code; any exception in it is an internal error."""
    try:
        with np.errstate(all="ignore"):
            return run()
    except OutOfTime:
        raise
    except Exception as bad:
        where = "".join(traceback.format_exception(bad)[-6:])
        raise Failure("internal", f"generated code raised {type(bad).__name__}: "
                      f"{normalise(str(bad))}", f"{where}\n{code}".rstrip(),
                      type(bad).__name__) from None


def run_code(code: str, arrays: dict[str, np.ndarray]) -> dict[str, object]:
    """Execute generated statements with the arrays bound; the resulting names."""
    namespace: dict[str, object] = {name: np.array(a) for name, a in arrays.items()}

    def run() -> None:
        exec(compile(code, "<matcalc generated>", "exec"), namespace)  # code under test

    generated(run, code)
    return namespace


def result_of(namespace: dict[str, object], name: str, code: str) -> object:
    if name not in namespace:
        raise Failure("internal", "generated code does not assign its result",
                      f"no {name} in\n{code}", "MissingResult")
    return namespace[name]


def kind_of(context: Context, name: str) -> str:
    if name in context.program.intermediates and name not in context.program.variables:
        return "gradient of an intermediate"
    return "gradient of a symmetric variable" if context.symmetric(name) else "gradient"


# ----------------------------------------------------------------------------------------------
# Paths


def path_derive(context: Context, steps: bool = False) -> None:
    """``derive(...).numpy()`` run with the arrays bound: each ``grad_<NAME>``."""
    wrt = list(context.case.wrt)
    code = matcalc.derive(context.case.source, wrt, steps=steps).numpy()
    if not context.case.execute:
        return
    namespace = run_code(code, context.arrays)
    want = context.gradients(wrt)
    for name in wrt:
        got = result_of(namespace, f"grad_{name}", code)
        compare(kind_of(context, name), got, want[name])


def path_steps(context: Context) -> None:
    path_derive(context, steps=True)


def path_numpy(context: Context) -> None:
    """``lambdify``: ``value`` and ``value_and_grad`` (``value_and_vjp`` for a layer)."""
    wrt = list(context.case.wrt)
    module = matcalc.lambdify(context.case.source, wrt)
    if not context.case.execute:
        return
    arrays = {name: np.array(a) for name, a in context.arrays.items()}
    value = context.value()
    compare("value", generated(lambda: module.value(**arrays)), value)
    if hasattr(module, "value_and_vjp"):
        g = context.grad_output()
        seed = list(inspect.signature(module.value_and_vjp).parameters)[-1]  # grad_output
        got = generated(lambda: module.value_and_vjp(**arrays, **{seed: g}))
        want = context.gradients(wrt, g)
    else:                                  # a scalar, or a 1×1 matrix: its one entry
        got = generated(lambda: module.value_and_grad(**arrays))
        want = context.gradients(wrt, np.ones(value.shape) if value.shape else None)
    compare("value", got[0], value)
    for name in wrt:
        if name not in got[1]:
            raise Failure("internal", "a gradient is missing", f"no {name} in {list(got[1])}",
                          "MissingResult")
        compare(kind_of(context, name), got[1][name], want[name])


def torch_apply(context: Context) -> Callable[..., torch.Tensor]:
    """The generated torch function: the last name of the module's ``__all__``, else named
    after the function when the program ends in an assignment, ``apply`` otherwise."""
    variables = [n for n in context.case.wrt if n in context.program.variables]
    module = matcalc.lambdify(context.case.source, variables, target="torch")
    last = syntax.parse_program(context.case.source).statements[-1]
    name = last.name if isinstance(last, syntax.Assign) else "apply"
    name = getattr(module, "__all__", [name])[-1]
    if not callable(getattr(module, name, None)):
        raise Failure("internal", "the torch module has no function named after the program",
                      f"no callable {name!r} in the module", "MissingResult")
    return getattr(module, name)


def path_torch(context: Context) -> None:
    """The torch module on tensors requiring grad: its value and every float input's gradient."""
    apply = torch_apply(context)
    if not context.case.execute:
        return
    leaves = tensors(context.arrays)
    value = generated(lambda: apply(**leaves))
    want_value = context.value()
    compare("value", value, want_value)
    g = context.grad_output() if want_value.shape else None
    floats = context.floats
    got = generated(lambda: torch.autograd.grad(
        value, [leaves[n] for n in floats], grad_outputs=None if g is None else torch.tensor(g),
        allow_unused=True))
    want = context.gradients(floats, g)
    for name, grad in zip(floats, got, strict=True):
        if grad is None:
            if np.any(want[name]):
                raise Failure("wrong", "backward gives no gradient for an input requiring one",
                              f"None for {name}; want\n{want[name]}")
            continue
        compare("gradient", grad, want[name])


def path_torch_func(context: Context) -> None:
    """The torch module under ``torch.func.grad`` (or ``vjp``), ``torch.func.vmap`` and
    ``torch.func.jvp`` (its tangent along another draw, against the reference's gradients:
    ⟨ḡ, J t⟩ = Σ ⟨Jᵀ ḡ, t⟩)."""
    apply = torch_apply(context)
    fixed = tensors(context.arrays, grad=False)
    floats = context.floats

    def f(*args: torch.Tensor) -> torch.Tensor:
        return apply(**{**fixed, **dict(zip(floats, args, strict=True))})

    args = [fixed[n] for n in floats]
    value = context.value()
    g = context.grad_output() if value.shape else np.ones(())
    if value.shape:
        got = generated(lambda: torch.func.vjp(f, *args)[1](torch.tensor(g)))
        grads = context.gradients(floats, g)
    else:
        got = generated(lambda: torch.func.grad(f, argnums=tuple(range(len(args))))(*args))
        grads = context.gradients(floats)
    for name, grad in zip(floats, got, strict=True):
        compare("gradient", grad, grads[name])
    other = context.draw()
    directions = tuple(torch.tensor(other[n]) for n in floats)
    moved = generated(lambda: torch.func.jvp(f, tuple(args), directions)[1])
    compare("jvp", np.sum(as_array(moved) * g),
            np.sum([np.sum(grads[n] * other[n]) for n in floats]))
    more = [torch.tensor(other[n]) for n in floats]
    batched = generated(lambda: torch.func.vmap(f)(*map(torch.stack, zip(args, more,
                                                                         strict=True))))
    for i, inputs in enumerate((context.arrays, {**context.arrays, **{
            n: other[n] for n in floats}})):
        want = context.value(inputs)
        if np.all(np.isfinite(want)):
            compare("vmap value", as_array(batched)[i], want)


def path_jax(context: Context) -> None:
    """``--target jax`` in float64: the value and every float input's cotangent through
    ``jax.vjp`` (the derived backward pass, attached by ``custom_vjp``); for a scalar, the
    emitted ``hvp`` in x against a double backward."""
    try:
        import jax
    except ImportError:
        raise Failure("skipped", "JAX is not installed") from None
    jax.config.update("jax_enable_x64", True)
    with address_space_for_xla():
        jax_agrees(context, jax)


@contextlib.contextmanager
def address_space_for_xla() -> Iterator[None]:
    """A worker's memory limit lifted while JAX runs, then set anew above what XLA has mapped:
    its compiler maps the code of each compiled operation, and where the limit refuses it
    LLVM aborts the whole process (a fatal error, not an exception)."""
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    try:
        yield
    finally:
        limit_address_space()


def jax_agrees(context: Context, jax: object) -> None:
    """The checks of :func:`path_jax`."""
    variables = [n for n in context.case.wrt if n in context.program.variables]
    module = matcalc.lambdify(context.case.source, variables, target="jax")
    if not context.case.execute:
        return
    apply, floats = getattr(module, module.__all__[0]), context.floats

    def f(*args: object) -> object:
        return apply(**{**context.arrays, **dict(zip(floats, args, strict=True))})

    value = context.value()
    g = context.grad_output() if value.shape else np.ones(())
    got_value, pullback = generated(lambda: jax.vjp(f, *(context.arrays[n] for n in floats)))
    compare("value", got_value, value)
    got = generated(lambda: pullback(jax.numpy.asarray(g)))
    want = context.gradients(floats, g if value.shape else None)
    for name, grad in zip(floats, got, strict=True):
        compare("gradient", grad, want[name])
    x = context.case.x
    if value.shape or not x:
        return
    direction = own_direction(context, x, "jax")
    second = matcalc.lambdify(context.case.source, [x], target="jax", emit=("hvp",))
    hv = generated(lambda: second.hvp(**context.arrays, **last(second.hvp, direction))[x])
    compare("Hessian-vector product", hv, by_reference(lambda: hessian_vector(context, x,
                                                                            direction)))


def path_emit(context: Context) -> None:
    """The functions ``--emit`` adds to the NumPy and torch modules, in x: ``hvp`` (against a
    double backward) for a scalar, else ``value_and_jacobian`` (against torch's Jacobian), and
    ``jvp`` (against torch's, along a direction symmetric where x is)."""
    x = context.case.x
    if not x:
        raise Failure("skipped", "no variable for the emitted functions")
    scalar = not context.program.function.shape
    emit = ("hvp", "jvp") if scalar else ("jacobian", "jvp")
    modules = {target: matcalc.lambdify(context.case.source, [x], target=target, emit=emit,
                                        layout=None if scalar else context.case.layout)
               for target in ("numpy", "torch")}
    direction = own_direction(context, x, "emit")
    point = torch.tensor(context.arrays[x])
    moved = by_reference(lambda: torch.autograd.functional.jvp(
        context.function_of(x), point, torch.tensor(direction))[1].detach().numpy())
    want = (by_reference(lambda: hessian_vector(context, x, direction)) if scalar
            else reference_jacobian(context, x))
    for target, module in modules.items():
        given = torch.tensor if target == "torch" else np.asarray
        arrays = {name: given(a) for name, a in context.arrays.items()}
        v = given(direction)
        if scalar:
            got = generated(lambda m=module, a=arrays, v=v: m.hvp(**a, **last(m.hvp, v))[x])
            compare(f"{target} hvp", got, want)
        else:
            got = generated(lambda m=module, a=arrays: m.value_and_jacobian(**a)[1][x])
            compare(f"{target} Jacobian ({context.case.layout})", got, want,
                    lenient=jacobian_of_a_number(context, x))
        tangent = generated(lambda m=module, a=arrays, v=v: m.jvp(**a, **last(m.jvp, {x: v}))[1])
        compare(f"{target} jvp", tangent, moved)


def last(function: Callable, value: object) -> dict[str, object]:
    """``value`` as the keyword argument of ``function``'s last parameter (a direction or the
    tangents: ``v_1``, ``tangents_1`` where the program already has the name ``v``)."""
    return {list(inspect.signature(function).parameters)[-1]: value}


def own_direction(context: Context, x: str, path: str) -> np.ndarray:
    """A direction for x drawn for ``path`` alone (from the case's draw and the path's name),
    so that a replay of the one path draws it again, whatever ran before it."""
    rng = np.random.default_rng([context.case.draw, *path.encode()])
    return context.project(x, rng.normal(size=context.arrays[x].shape))


def reference_jacobian(context: Context, x: str) -> np.ndarray:
    """torch's Jacobian of the value in x as ``jacobian`` gives it: ∂vec(f)/∂vec(x) in the
    case's layout, or shaped like f for a matrix function of a number."""
    point = torch.tensor(context.arrays[x])
    j = by_reference(lambda: torch.autograd.functional.jacobian(context.function_of(x), point))
    if point.dim() == 0 and context.value().ndim >= 2:      # ∂F/∂x shaped like F
        return j.detach().numpy()
    want = vectorised(j, context.value().ndim, point.dim())
    return want.T if context.case.layout == "denominator" else want


def jacobian_of_a_number(context: Context, x: str) -> bool:
    """A vector function's Jacobian in a number x: a column or a vector, either accepted."""
    return not context.arrays[x].shape and context.value().ndim < 2


def vectorised(j: torch.Tensor, f_rank: int, x_rank: int) -> np.ndarray:
    """∂vec(f)/∂vec(x) from a torch Jacobian shaped f.shape + x.shape (vec stacks columns)."""
    f_dims = list(range(f_rank))[::-1]
    x_dims = list(range(f_rank, f_rank + x_rank))[::-1]
    rows = math.prod(j.shape[:f_rank])
    return j.permute(*f_dims, *x_dims).reshape(rows, -1).detach().numpy()


def path_jacobian(context: Context) -> None:
    """``jacobian(...).numpy()``: ``jac_<x>`` against torch.autograd.functional.jacobian."""
    x, layout = context.case.x, context.case.layout
    if not x:
        raise Failure("skipped", "no variable for a Jacobian")
    code = matcalc.jacobian(context.case.source, [x], layout=layout).numpy()
    namespace = run_code(code, context.arrays)
    got = result_of(namespace, f"jac_{x}", code)
    compare(f"Jacobian ({layout})", got, reference_jacobian(context, x),
            lenient=jacobian_of_a_number(context, x))


def path_hessian(context: Context) -> None:
    """``hessian(...).numpy()``: ``hess_<x>`` (∂²f/∂vec(X)² for a matrix)."""
    x = context.case.x
    if not x:
        raise Failure("skipped", "no variable for a Hessian")
    code = matcalc.hessian(context.case.source, x).numpy()
    if not context.case.execute:
        return
    namespace = run_code(code, context.arrays)
    got = result_of(namespace, f"hess_{x}", code)
    point = torch.tensor(context.arrays[x])
    h = by_reference(lambda: torch.autograd.functional.hessian(context.function_of(x), point))
    want = vectorised(h, point.dim(), point.dim()) if point.dim() else h.detach().numpy()
    compare("Hessian", got, want)


def direction_name(context: Context) -> str:
    taken = {*context.program.variables, *context.program.intermediates,
             *map(str, context.program.dims)}
    return next(name for name in ("v", "v1", "v2", "direction") if name not in taken)


def path_hvp(context: Context) -> None:
    """``hessian(..., direction=v).numpy()``: ``hvp_<x>`` against a double backward."""
    x = context.case.x or next(iter(context.floats), "")
    if not x:
        raise Failure("skipped", "no variable for a Hessian-vector product")
    v = direction_name(context)
    code = matcalc.hessian(context.case.source, x, direction=v).numpy()
    if not context.case.execute:
        return
    direction = context.project(x, context.rng.normal(size=context.arrays[x].shape))
    namespace = run_code(code, {**context.arrays, v: direction})  # symmetric for a symmetric x
    got = result_of(namespace, f"hvp_{x}", code)
    compare("Hessian-vector product", got, by_reference(lambda: hessian_vector(context, x,
                                                                             direction)))


def hessian_vector(context: Context, x: str, v: np.ndarray) -> np.ndarray:
    """H v by double backward (for a symmetric x: sym(H sym(v)))."""
    trace, leaves = context.trace()
    (g,) = grad(trace.value, [leaves[x]], create_graph=True)
    (hv,) = grad(g, [leaves[x]], torch.tensor(context.project(x, v)))
    return context.project(x, hv.numpy())


def cli(*args: str) -> str:
    """Run the ``matcalc`` command; exit 2 is a refusal, any other failure an internal error."""
    root = os.path.dirname(os.path.dirname(matcalc.__file__))   # this matcalc, not another
    done = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          cwd=root, env={**os.environ, "PYTHONPATH": root})
    if done.returncode == 2:
        raise MatcalcError(first_line(done.stderr).removeprefix("error: "))
    if done.returncode != 0:
        raise Failure("internal", f"matcalc {args[0]} exited with {done.returncode}: "
                      f"{normalise(done.stderr)}", done.stderr[-2000:], f"exit {done.returncode}")
    return done.stdout


def jacobians_written(context: Context, wrt: Sequence[str]) -> bool:
    """Whether matcalc writes these Jacobians (through stacks of matrices, reshapes and general
    einsums it says it does not: NotDerived)."""
    try:
        matcalc.jacobian(context.case.source, list(wrt), layout=context.case.layout)
    except NotDerived:
        return False
    return True


def path_cli(context: Context) -> None:
    """``matcalc derive --format numpy`` and ``matcalc codegen`` in a subprocess, run."""
    scalar = not context.value().shape
    wrt = [w for w in context.case.wrt if scalar or w in context.program.variables]
    flags = [flag for w in wrt for flag in ("--wrt", w)]
    if scalar or jacobians_written(context, wrt):     # a stated limit is no refusal to fix
        code = cli("derive", context.case.source, *flags, "--format", "numpy")
        namespace = run_code(code, context.arrays)
    g = None if scalar else context.grad_output()
    if scalar:
        want = context.gradients(wrt)
        for name in wrt:
            compare(kind_of(context, name), result_of(namespace, f"grad_{name}", code), want[name])
    module = cli("codegen", context.case.source, *flags)
    namespace = run_code(module, {})
    arrays = {name: np.array(a) for name, a in context.arrays.items()}
    compare("value", generated(lambda: namespace["value"](**arrays), module), context.value())
    if "value_and_vjp" in namespace:
        vjp = namespace["value_and_vjp"]
        seed = list(inspect.signature(vjp).parameters)[-1]     # grad_output, unless taken
        got = generated(lambda: vjp(**arrays, **{seed: g}), module)
    else:                                  # a scalar, or a 1×1 matrix: its one entry
        got = generated(lambda: namespace["value_and_grad"](**arrays), module)
        g = None if scalar else np.ones(context.value().shape)
    want = context.gradients(wrt, g)
    for name in wrt:
        compare(kind_of(context, name), got[1].get(name), want[name])


PATH_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    "derive": path_derive, "steps": path_steps, "numpy": path_numpy, "torch": path_torch,
    "torch.func": path_torch_func, "jax": path_jax, "emit": path_emit, "jacobian": path_jacobian,
    "hessian": path_hessian, "hvp": path_hvp, "cli": path_cli,
}


# ----------------------------------------------------------------------------------------------
# Running


def classify(path: str, run: Callable[[], None], limit: float, names: Iterable[str] = ()
             ) -> Outcome:
    """Run one path under the time limit and put its end in a category (messages with the
    program's ``names`` blanked)."""
    try:
        with time_limit(limit):
            run()
    except OutOfTime:
        return Outcome(path, "timeout", "Timeout", f"no answer within {limit:g} s")
    except Failure as f:
        return Outcome(path, f.category, f.error, f.message, f.detail)
    except NotDerived as limit:                     # a stated limit, not a refusal to fix
        return Outcome(path, "skipped", "NotDerived", normalise(limit.message, names))
    except MatcalcError as refusal:
        return Outcome(path, "refused", "MatcalcError", normalise(refusal.message, names),
                       str(refusal))
    except Exception as bug:  # any other exception while deriving or generating is a bug
        detail = "".join(traceback.format_exception(bug)[-12:])
        return Outcome(path, "internal", type(bug).__name__, normalise(str(bug), names),
                       detail)
    return Outcome(path, "ok")


def run_case(case: Case, limit: float = 10.0, paths: Sequence[str] | None = None
             ) -> list[Outcome]:
    """Every path of ``case`` (or those named): parsing and drawing inputs first."""
    holder: list[Context] = []
    names = user_names(case.source)
    setup = classify("setup", lambda: holder.append(make_context(case)), limit, names)
    if setup.category != "ok":
        return [setup]
    outcomes = []
    for path in case.paths if paths is None else paths:
        if path not in PATH_FUNCTIONS:
            continue
        slack = CLI_STARTUP if path == "cli" else 0.0   # the subprocess imports matcalc first
        run = functools.partial(PATH_FUNCTIONS[path], holder[0])
        outcomes.append(classify(path, run, limit + slack, names))
        if outcomes[-1].category == "timeout":
            break              # the rest would likely wait as long
    return outcomes or [Outcome("setup", "ok")]


@dataclass(frozen=True)
class Settings:
    """What a run does, shared by the workers."""

    seed: int = 0
    mode: str = "normal"
    timeout: float = 10.0
    paths: tuple[str, ...] | None = None
    shrink_seconds: float = 30.0


def evaluate(index: int, settings: Settings) -> Result:
    """Generate program ``index`` of the run and run its paths."""
    program = programs.generate(f"{settings.seed}/{index}", settings.mode)
    case = make_case(program, f"{settings.seed}/{index}", settings.mode)
    if settings.paths is not None:
        case = replace(case, paths=tuple(p for p in case.paths if p in settings.paths))
    outcomes = run_case(case, settings.timeout)
    return Result(index, program, case, outcomes)


# ----------------------------------------------------------------------------------------------
# Shrinking


def same_failure(a: Outcome, b: Outcome) -> bool:
    """The same category on the same path, and for crashes the same exception type."""
    if (a.category, a.path) != (b.category, b.path):
        return False
    return a.error == b.error and (a.category != "wrong" or a.message == b.message)


def adapt(case: Case, p: programs.Program, path: str) -> Case | None:
    """``case`` for the smaller program ``p``: the names and sizes still there, or None when
    ``path`` needs a variable that is gone."""
    floats = [d.name for d in float_variables(p)]
    names = {*floats, *(s.name for s in p.stmts)}
    wrt = tuple(w for w in case.wrt if w in names) or tuple(floats[:1])
    plain = {d.name for d in float_variables(p) if d.prop != "symmetric"}
    x = case.x if case.x in plain else ""
    if path in X_PATHS and case.x and not x:
        return None
    dims = {d for decl in p.decls for d in decl.shape if not d.isdigit()}
    sizes = tuple((k, v) for k, v in case.sizes if k in dims)
    return replace(case, source=p.source(), wrt=wrt, x=x, sizes=sizes)


def case_candidates(case: Case) -> Iterator[Case]:
    """The same program at smaller sizes or with fewer names to differentiate."""
    for i, (name, size) in enumerate(case.sizes):
        for smaller in range(1, size):
            sizes = (*case.sizes[:i], (name, smaller), *case.sizes[i + 1:])
            yield replace(case, sizes=sizes)
    for i in range(len(case.wrt)):
        if len(case.wrt) > 1:
            yield replace(case, wrt=case.wrt[:i] + case.wrt[i + 1:])


def shrink(result: Result, target: Outcome, settings: Settings
           ) -> tuple[programs.Program, Case, Outcome]:
    """A minimal program failing like ``target`` (one of ``result``'s outcomes), within the
    time budget."""
    best = (result.program, result.case, target)
    deadline = time.monotonic() + settings.shrink_seconds

    def fails(case: Case) -> Outcome | None:
        for outcome in run_case(case, settings.timeout, [target.path]):
            if same_failure(outcome, target):
                return outcome
        return None

    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        program, case, _ = best
        smaller = itertools.chain(
            ((p, adapt(case, p, target.path)) for p in programs.shrink_candidates(program)),
            ((program, c) for c in case_candidates(case)))
        for candidate_program, candidate in smaller:
            if time.monotonic() >= deadline:
                break
            if candidate is None:
                continue
            outcome = fails(candidate)
            if outcome is not None:
                best, improved = (candidate_program, candidate, outcome), True
                break
    return best


# ----------------------------------------------------------------------------------------------
# Workers


def init_worker(memory_mb: int) -> None:
    """One torch thread, JAX's CPU client started, and then at most ``memory_mb`` more address
    space (XLA reserves over 1 GB of it when it starts: under the limit it aborts)."""
    torch.set_num_threads(1)
    with contextlib.suppress(ImportError):
        import jax
        jax.config.update("jax_enable_x64", True)
        jax.block_until_ready(jax.jit(jax.grad(lambda x: x * x))(1.0))
    global HEADROOM_MB
    HEADROOM_MB = memory_mb
    limit_address_space()


HEADROOM_MB = 0
"""A worker's address space may grow this far beyond what it uses (0: no limit)."""


def limit_address_space() -> None:
    """At most HEADROOM_MB more address space than the process has now."""
    if HEADROOM_MB:
        with open("/proc/self/status") as status:
            used = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (used * 1024 + HEADROOM_MB * 2**20,
                                                resource.getrlimit(resource.RLIMIT_AS)[1]))


def evaluate_task(task: tuple[int, Settings]) -> Result:
    return evaluate(*task)


def shrink_task(task: tuple[Result, Outcome, Settings]
                ) -> tuple[programs.Program, Case, Outcome]:
    return shrink(*task)


@contextlib.contextmanager
def workers(count: int, memory_mb: int) -> Iterator[Callable]:
    """``map(function, tasks)`` in ``count`` worker processes (in this one for 1)."""
    if count <= 1:
        yield map
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(count, initializer=init_worker, initargs=(memory_mb,)) as pool:
        yield lambda function, tasks: awaited(pool.imap(function, tasks))


WORKER_SILENCE = 600.0
"""Seconds without a result after which a worker is taken to have died (every path of a case
has its own time limit, 10 s by default): the pool never hears of a dead worker's task."""


def awaited(results: multiprocessing.pool.IMapIterator) -> Iterator[object]:
    """The results in order; RuntimeError, naming the task, when one never comes (a worker
    killed by a fatal error in native code), where the run would wait forever."""
    for index in itertools.count():
        try:
            yield results.next(timeout=WORKER_SILENCE)
        except StopIteration:
            return
        except multiprocessing.TimeoutError:
            raise RuntimeError(f"no result for task {index} in {WORKER_SILENCE:g} s: its worker "
                               "died (a fatal error in native code) or hung") from None


# ----------------------------------------------------------------------------------------------
# Reports


@dataclass
class Group:
    """Failures that shrink alike: how many programs, and the smallest example."""

    count: int
    program: programs.Program
    case: Case
    outcome: Outcome
    index: int
    """The run's program that shrank to ``program``."""

    def reproducer(self, settings: Settings) -> str:
        """A one-line command: the shrunk case, or for a long one the program of the run."""
        if len(self.case.source) <= MAX_SHOWN_SOURCE:
            return self.case.command(self.outcome.path)
        return (f"python benchmarks/fuzz.py --seed {settings.seed} --mode {settings.mode} "
                f"--index {self.index} --path {self.outcome.path}")

    def shown(self) -> list[str]:
        """The program's lines, the middle left out when there are many."""
        lines = self.case.source.splitlines()
        if len(lines) > MAX_SHOWN_LINES:
            left = len(lines) - MAX_SHOWN_LINES
            lines = [*lines[:MAX_SHOWN_LINES - 3], f"… {left} more lines …", *lines[-3:]]
        return ["    " + line[:200] for line in lines]


@dataclass
class Report:
    """Every program's outcomes, and the shrunk failures grouped by signature."""

    settings: Settings
    results: list[Result]
    groups: list[Group] = field(default_factory=list)
    seconds: float = 0.0
    shrinking: float = 0.0
    """Of ``seconds``, the time spent shrinking failures."""

    def counts(self) -> Counter:
        return Counter(r.worst.category for r in self.results)

    def counts_line(self) -> str:
        counts = self.counts()
        cells = "  ".join(f"{c} {counts.get(c, 0)}" for c in CATEGORIES)
        return f"programs {len(self.results)}: {cells}"

    def path_table(self) -> str:
        table: dict[str, Counter] = defaultdict(Counter)
        for r in self.results:
            for o in r.outcomes:
                table[o.path][o.category] += 1
        width = max(len(c) for c in CATEGORIES) + 1
        rows = ["path        " + "".join(c.rjust(width) for c in CATEGORIES)]
        for path in PATHS:
            if path in table:
                cells = "".join(str(table[path].get(c, 0)).rjust(width) for c in CATEGORIES)
                rows.append(path.ljust(12) + cells)
        return "\n".join(rows)

    def common(self, category: str, top: int) -> list[tuple[int, str]]:
        seen = Counter(f"[{o.path}] {o.message}" for r in self.results for o in r.outcomes
                       if o.category == category)
        return [(n, message) for message, n in seen.most_common(top)]

    def text(self, show: int = 20) -> str:
        lines = [self.counts_line(), "", self.path_table(), ""]
        failing = sum(r.worst.category in FAILURES for r in self.results)
        lines.append(f"shrunk failures: {len(self.groups)} signatures; {failing} programs fail")
        for k, g in enumerate(self.groups[:show], 1):
            o = g.outcome
            what = ": ".join(part for part in (o.error, o.message) if part)
            lines += ["", f"{k}. {g.count} programs: {o.category} on {o.path}: {what}",
                      *g.shown(),
                      f"  sizes {dict(g.case.sizes)}, "
                      + (f"x {g.case.x}" if o.path in X_PATHS else f"wrt {list(g.case.wrt)}"),
                      f"  reproduce: {g.reproducer(self.settings)}"]
        for category, title in (("refused", "refusals"), ("skipped", "skips")):
            common = self.common(category, 10)
            if common:
                lines += ["", f"most common {title}:"]
                lines += [f"  {n:6d}  {message}" for n, message in common]
        lines += ["", f"time {self.seconds:.1f} s ({self.shrinking:.1f} s shrinking)"]
        return "\n".join(lines)


def group_failures(results: Sequence[Result], per_signature: int, settings: Settings,
                   mapper: Callable) -> list[Group]:
    """Shrink up to ``per_signature`` of the smallest programs failing each way (on any path);
    group what they shrink to, counting the programs that failed that way."""
    by_signature: dict[tuple, list[tuple[Result, Outcome]]] = defaultdict(list)
    for r in results:
        for o in r.outcomes:
            if o.category in FAILURES:
                by_signature[o.signature()].append((r, o))
    chosen = [(sig, sorted(found, key=lambda ro: ro[0].program.size())[:per_signature])
              for sig, found in by_signature.items()]
    tasks = [(r, o, settings) for _, found in chosen for r, o in found]
    shrunk = iter(list(mapper(shrink_task, tasks)))
    groups: dict[tuple, Group] = {}
    for sig, found in chosen:
        for k, _ in enumerate(found):
            program, case, outcome = next(shrunk)
            index = found[k][0].index
            group = groups.setdefault(outcome.signature(),
                                      Group(0, program, case, outcome, index))
            if program.size() < group.program.size():
                group.program, group.case, group.outcome = program, case, outcome
                group.index = index
            group.count += len(by_signature[sig]) if k == 0 else 0
    return sorted(groups.values(), key=lambda g: (-g.count, g.outcome.signature()))


def fuzz(n: int, settings: Settings = Settings(), count: int = 2, memory_mb: int = 1024,
         per_signature: int = 2, progress: Callable[[int], None] | None = None) -> Report:
    """Run ``n`` programs on ``count`` workers, then shrink the failures."""
    start = time.perf_counter()
    results: list[Result] = []
    with workers(count, memory_mb) as mapper:
        for result in mapper(evaluate_task, [(i, settings) for i in range(n)]):
            results.append(result)
            if progress:
                progress(len(results))
        shrinking = time.perf_counter()
        groups = group_failures(results, per_signature, settings, mapper)
    end = time.perf_counter()
    return Report(settings, results, groups, end - start, end - shrinking)


def replay_index(index: int, settings: Settings, path: str) -> str:
    """Program ``index`` of a run on one path, with the outcome's full detail."""
    result = evaluate(index, replace(settings, paths=(path,)))
    return replay(result.case, path, settings.timeout)


def replay(case: Case, path: str, limit: float = 10.0) -> str:
    """One case on one path, with the outcome's full detail."""
    outcome = run_case(case, limit, [path])[-1]
    head = f"{outcome.category} on {outcome.path}: {outcome.error} {outcome.message}".rstrip()
    return "\n".join([case.source, "", head, outcome.detail]).rstrip()
