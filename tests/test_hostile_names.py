"""Every program of the suite again, its names drawn from what generated code itself uses.

Variables, intermediates and sizes are renamed to ``np``, ``math``, ``torch``, ``value``,
``delta1``, ``t1``, ``dx``, ``ctx``, ``sum``, ``len``, ``grad_output``, ``_check_shapes`` …; the
generated NumPy module, the ``derive --format numpy`` code and the torch target must compute
exactly what they compute for the program as written.
"""

from __future__ import annotations

import builtins
import re

import numpy as np
import pytest
from test_functions_fd import CASES, SIZES

import matcalc
from matcalc.core.ir import is_labels
from matcalc.language import syntax
from matcalc.proofs.inputs import smooth_inputs

VOCABULARY = [
    "np", "math", "torch", "value", "delta1", "t1", "dx", "ctx", "sum", "len", "grad_output",
    "_check_shapes", "SHAPES", "_sigmoid", "_softmax", "mask", "delta2", "grad_x", "t", "dA",
    "value_and_grad", "_floating", "inv_A", "det_A", "list", "dict", "_NAMES", "_KINDS", "f",
    "float", "tuple", "zip", "_inv", "_pick", "softmax_Z", "elta1", "L", "apply", "_logsumexp",
]


def renamed(source: str) -> tuple[str, dict[str, str]]:
    """``source`` with every user name replaced by one of the generator's own (calls and
    keyword arguments left as they are)."""
    program = matcalc.parse(source)
    names = [*program.variables, *program.intermediates, *map(str, program.dims)]
    mapping = dict(zip(names, VOCABULARY, strict=False))
    tokens = syntax._tokenize(source)
    parts, last, depth = [], 0, 0
    for token, following in zip(tokens, tokens[1:], strict=False):
        depth += {"(": 1, ")": -1}.get(token.kind, 0)
        call = following.kind == "("
        keyword = following.kind == "=" and depth > 0
        if token.kind == "name" and token.text in mapping and not (call or keyword):
            parts += [source[last:token.pos], mapping[token.text]]
            last = token.pos + len(token.text)
    return "".join([*parts, source[last:]]), mapping


PARAMS = [pytest.param(source, id=name) for name, source in CASES.items()]


def hostile_case(source: str, seed: int) -> tuple[str, dict, list[str], dict]:
    """The program renamed into the generator's vocabulary, the renaming, every variable with a
    gradient (not integer labels), and inputs drawn for the original names."""
    hostile, mapping = renamed(source)
    program = matcalc.parse(source)
    sizes = {k: v for k, v in SIZES[0].items() if k in program.dims}
    arrays = smooth_inputs(program, sizes, np.random.default_rng(seed))
    wrt = [name for name, node in program.variables.items() if not is_labels(node)]
    return hostile, mapping, wrt, arrays


@pytest.mark.parametrize("source", PARAMS)
def test_generated_code_ignores_what_names_are_called(source: str) -> None:
    hostile, mapping, wrt, arrays = hostile_case(source, 3)
    value, grads = matcalc.lambdify(source, wrt).value_and_grad(**arrays)
    renamed_arrays = {mapping[k]: v for k, v in arrays.items()}
    module = matcalc.lambdify(hostile, [mapping[w] for w in wrt])
    got_value, got = module.value_and_grad(**renamed_arrays)
    np.testing.assert_allclose(got_value, value, rtol=1e-12)
    for w in wrt:
        np.testing.assert_allclose(got[mapping[w]], grads[w], rtol=1e-12, atol=1e-14)
    code = matcalc.derive(hostile, [mapping[w] for w in wrt]).numpy()
    namespace = {k: np.array(v) for k, v in renamed_arrays.items()}
    exec(code, namespace)  # the generated code under test
    for w in wrt:
        np.testing.assert_allclose(namespace[f"grad_{mapping[w]}"], grads[w], rtol=1e-9,
                                   atol=1e-12)


@pytest.mark.parametrize("source", PARAMS[::5])
def test_torch_target_ignores_what_names_are_called(source: str) -> None:
    torch = pytest.importorskip("torch")
    hostile, mapping, wrt, arrays = hostile_case(source, 4)
    _, grads = matcalc.lambdify(source, wrt).value_and_grad(**arrays)
    module = matcalc.lambdify(hostile, [mapping[w] for w in wrt], target="torch")
    tensors = {mapping[k]: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    getattr(module, module.__all__[-1])(**tensors).backward()
    for w in wrt:
        np.testing.assert_allclose(tensors[mapping[w]].grad.numpy(), grads[w], rtol=1e-9,
                                   atol=1e-12)


def test_numpy_helpers_call_no_builtin_a_variable_could_be_named() -> None:
    """``derive --format numpy`` code runs among the user's variables, which may be called
    ``len`` or ``range``: a helper it can contain names no builtin (the checks run only in
    modules, where the user's names are parameters)."""
    from matcalc.forms.codegen import NUMPY
    for name, template in NUMPY.helpers.items():
        if not name.startswith("_check"):
            called = set(re.findall(r"(?<![.\w{])([A-Za-z_]\w*)\s*\(", template))
            assert not called & set(dir(builtins)), (name, called & set(dir(builtins)))


@pytest.mark.parametrize(("source", "dtype"), [
    ("len: [n, c]\ny: [n] labels\nsoftmax_cross_entropy(len, y)", np.float64),
    ("range: [n]\nsum(gelu(range))", np.float32),           # Φ in blocks from 4096 entries
    ("ValueError: [n, n]; x: [n]\nsum(inv(ValueError) @ x)", np.float64),
])
def test_derived_code_runs_among_variables_named_like_builtins(source: str, dtype: type
                                                                ) -> None:
    program = matcalc.parse(source)
    sizes = {"n": 5000 if dtype == np.float32 else 4, "c": 3}
    arrays = smooth_inputs(program, {k: v for k, v in sizes.items()
                                     if k in map(str, program.dims)}, np.random.default_rng(1))
    arrays = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in arrays.items()}
    wrt = [name for name, node in program.variables.items() if not is_labels(node)]
    _, grads = matcalc.lambdify(source, wrt).value_and_grad(**arrays)
    namespace = dict(arrays)
    exec(matcalc.derive(source, wrt).numpy(), namespace)  # the generated code under test
    for w in wrt:
        np.testing.assert_allclose(namespace[f"grad_{w}"], grads[w], rtol=1e-5)


@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
def test_emitted_functions_run_among_variables_and_sizes_named_like_builtins(target: str
                                                                              ) -> None:
    """``hvp`` and ``jvp`` take a direction alone or by name: the test is a helper's, where no
    variable hides ``dict`` or ``isinstance`` (it was an inline isinstance(v, dict))."""
    if target != "numpy":
        pytest.importorskip(target)
    if target == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)
    plain = "x: [n]; y: [n]\nL = sum(exp(x) * y * x)"
    hostile = "dict: [isinstance]; len: [isinstance]\nL = sum(exp(dict) * len * dict)"
    rng = np.random.default_rng(2)
    x, y, v = rng.normal(size=(3, 4))
    want = matcalc.lambdify(plain, ["x"], emit=("hvp", "jvp")).hvp(x=x, y=y, v=v)["x"]
    module = matcalc.lambdify(hostile, ["dict"], target=target, emit=("hvp", "jvp"))
    convert = (lambda a: __import__("torch").tensor(a)) if target == "torch" else np.asarray
    arrays = {"dict": convert(x), "len": convert(y)}
    for direction in (convert(v), {"dict": convert(v)}):
        got = module.hvp(**arrays, v=direction)["dict"]
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)
    _, tangent = module.jvp(**arrays, tangents={"dict": convert(v)})
    np.testing.assert_allclose(float(tangent), np.sum((x + 1) * np.exp(x) * y * v), rtol=1e-12)
