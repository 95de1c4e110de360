"""examples/transformer.mc, a small GPT: its generated code against the same model written in
PyTorch (loss and every gradient within 1e-9, float64), its derivation, its check, and
training it with the optimizers ``matcalc train`` offers."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from matcalc.applications.datasets import sort_task
from matcalc.applications.optimizers import new_optimizer
from matcalc.forms.derivation import derive
from matcalc.forms.generated import generate, lambdify
from matcalc.language.lowering import parse
from matcalc.proofs.testing import check_gradient

torch = pytest.importorskip("torch")
REFERENCE = Path(__file__).parent.parent / "examples" / "transformer_torch.py"
_spec = importlib.util.spec_from_file_location("transformer_torch", REFERENCE)
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

SOURCE = reference.SOURCE
PROGRAM = parse(SOURCE)
SIZES = {"B": 3, "T": 5, "V": 7, "h": 2, "k": 3}


def test_generated_code_matches_the_pytorch_model_to_1e_9() -> None:
    """Loss and all 29 parameter gradients of the generated NumPy module and of the generated
    torch autograd.Function equal PyTorch autograd's on the hand-written model."""
    arrays = reference.random_model(SIZES, seed=1)
    names = reference.parameters(arrays)
    params = {n: torch.tensor(arrays[n], requires_grad=True) for n in names}
    tokens, y = torch.tensor(arrays["tokens"]), torch.tensor(arrays["y"])
    loss = reference.torch_loss(params, tokens, y, SIZES["h"])
    loss.backward()
    fixed = {"h": SIZES["h"]}
    value, grads = lambdify(SOURCE, names, sizes=fixed).value_and_grad(**arrays)
    assert abs(value - loss.item()) <= 1e-9
    assert len(names) == 29
    for name in names:
        np.testing.assert_allclose(grads[name], params[name].grad.numpy(), rtol=0, atol=1e-9,
                                   err_msg=name)
    module = lambdify(SOURCE, names, target="torch", sizes=fixed)
    leaves = {n: torch.tensor(arrays[n], requires_grad=True) for n in names}
    generated = module.L(**leaves, tokens=tokens, y=y)
    generated.backward()
    assert abs(generated.item() - loss.item()) <= 1e-9
    for name in names:
        np.testing.assert_allclose(leaves[name].grad.numpy(), params[name].grad.numpy(),
                                   rtol=0, atol=1e-9, err_msg=name)


def test_every_parameter_gradient_is_derived_in_matrix_form_with_steps() -> None:
    params = [n for n in PROGRAM.variables if n not in ("tokens", "y")]
    derivation = derive(PROGRAM, params, steps=True)
    text = derivation.text()
    assert "∂L/∂Wq1 = " in text and "∂L/∂E = scatter_add(" in text
    assert "back through A1" in text and "swapaxes" in text
    assert len(derivation.gradients) == len(params) == 29


def test_check_passes_on_the_transformer() -> None:
    report = check_gradient(SOURCE, ["E", "P", "g1", "Wq1", "Wo2", "b11", "U"],
                            {"B": 2, "T": 3, "V": 3, "h": 2, "k": 2}, draws=1)
    assert report.passed, report.text()


def test_the_sort_task_is_every_sequence_with_its_sorted_copy() -> None:
    data = sort_task()
    assert data.inputs.shape == (3 ** 6, 11) and data.targets.shape == (3 ** 6, 11)
    tokens, labels = data.inputs[100], data.targets[100]
    np.testing.assert_array_equal(labels[5:], np.sort(tokens[:6]))
    np.testing.assert_array_equal(tokens[1:], labels[:-1])      # labels are the next tokens
    assert data.scored.sum() == 6 and data.scored[5] and not data.scored[4]


@pytest.mark.parametrize("kind", ["sgd", "momentum", "adam"])
def test_optimizers_step_as_pytorchs(kind: str) -> None:
    """Five steps on fixed gradients move the parameters exactly as torch.optim's SGD,
    SGD(momentum=0.9) and AdamW (weight decay 0.05 on the matrix only)."""
    rng = np.random.default_rng(1)
    start = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = [{n: rng.standard_normal(a.shape) for n, a in start.items()} for _ in range(5)]
    ours = new_optimizer(kind, 0.01, 0.05, decayed=["W"])
    params = {n: a.copy() for n, a in start.items()}
    leaves = {n: torch.tensor(a, requires_grad=True) for n, a in start.items()}
    groups = [{"params": [leaves["W"]], "weight_decay": 0.05},
              {"params": [leaves["b"]], "weight_decay": 0.0}]
    theirs = {"sgd": lambda: torch.optim.SGD(groups, lr=0.01),
              "momentum": lambda: torch.optim.SGD(groups, lr=0.01, momentum=0.9),
              "adam": lambda: torch.optim.AdamW(groups, lr=0.01)}[kind]()
    if kind != "adam":   # torch's SGD couples the decay; compare without it
        ours.weight_decay = 0.0
        for group in theirs.param_groups:
            group["weight_decay"] = 0.0
    for step in grads:
        ours.step(params, step)
        for name, leaf in leaves.items():
            leaf.grad = torch.tensor(step[name])
        theirs.step()
    for name, leaf in leaves.items():
        np.testing.assert_allclose(params[name], leaf.detach().numpy(), rtol=0, atol=1e-12)


def test_generated_code_uses_one_kernel_where_torch_has_one() -> None:
    """torch: G ⊙ gelu′(x) is one gelu_backward, a softmax's backward one
    _softmax_backward_data, a layer norm one native_layer_norm each way, unused intermediates
    get no zero gradients; NumPy: a stack times a matrix is one product of its rows; a sum over
    two axes is one sum; a layer norm's 1/std is computed once. Second derivatives
    through the fused kernels (jacrev of grad) equal torch.func.hessian's."""
    source = ("S: [B, T, T]; W: [T, T]; Y: [B, T, T]\nA = softmax(S @ W, axis=-1)\n"
              "H = gelu(A @ W)\nL = sum(sum(H * Y, axis=0), axis=0) @ ones(T)")
    code = generate(source, ["S", "W"], "torch")
    assert "gelu_backward(" in code and "gelu_backward(torch.ones_like" not in code
    assert "._softmax_backward_data(" in code and "set_materialize_grads(False)" in code
    numpy_code = generate(source, ["S", "W"])
    assert "_stacked_at(" in numpy_code and ".sum(axis=(0, 1))" in numpy_code
    names = reference.parameters(reference.random_model(SIZES))
    layer_norms = generate(SOURCE, names, sizes={"h": 2})   # CS231n's backward, 1/std once
    assert len(re.findall(r"np\.sqrt\(", layer_norms)) == 10       # in value, value_and_grad
    torch_layer_norms = generate(SOURCE, names, "torch", sizes={"h": 2})
    assert len(re.findall(r"= _layer_norm\(", torch_layer_norms)) == 5
    heads = ".permute((0, 2, 1, 3)).contiguous()"   # Q, K, V and the heads' δ: copied once
    assert torch_layer_norms.count(heads) == 8
    backward = r"_layer_norm_backward\(d\w+, \w+, mean_\w+, rstd_\w+, g\d, xhat=xhat_\w+\)"
    assert len(re.findall(backward, torch_layer_norms)) == 5      # and each gain's gradient
    rng = np.random.default_rng(0)
    S, W, Y = (rng.standard_normal(shape) for shape in ((2, 3, 3), (3, 3), (2, 3, 3)))
    F = torch.nn.functional

    def by_hand(s, w):
        h = F.gelu(torch.softmax(s @ w, dim=-1) @ w)
        return (h * torch.tensor(Y)).sum()

    module = lambdify(source, ["S", "W"], target="torch")
    theirs = torch.func.hessian(by_hand, argnums=(0, 1))(torch.tensor(S), torch.tensor(W))
    mine = torch.func.jacrev(torch.func.grad(lambda s, w: module.L(s, w, torch.tensor(Y)),
                                             argnums=(0, 1)), argnums=(0, 1))(
        torch.tensor(S), torch.tensor(W))
    for row_mine, row_theirs in zip(mine, theirs, strict=True):
        for a, b in zip(row_mine, row_theirs, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-12)
    value, grads = lambdify(source, ["S", "W"]).value_and_grad(S=S, W=W, Y=Y)
    s, w = torch.tensor(S, requires_grad=True), torch.tensor(W, requires_grad=True)
    loss = by_hand(s, w)
    loss.backward()
    assert abs(value - loss.item()) <= 1e-12
    np.testing.assert_allclose(grads["S"], s.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["W"], w.grad.numpy(), rtol=0, atol=1e-12)


def test_generated_numpy_reads_a_named_product_by_its_name() -> None:
    """No statement multiplies out a product that already has a name (t = g ⊙ G, then
    g ⊙ x̂ ⊙ G again): it reads t, one full-size pass less for each layer norm."""
    names = [n for n in PROGRAM.variables if n not in ("tokens", "y")]
    tree = ast.parse(generate(SOURCE, names, sizes={"h": 2}))
    named = {frozenset(ast.unparse(f) for f in factors(node.value)): node.targets[0].id
             for node in ast.walk(tree) if isinstance(node, ast.Assign)
             and isinstance(node.targets[0], ast.Name) and len(factors(node.value)) == 2}
    products = [frozenset(map(ast.unparse, factors(n))) for n in ast.walk(tree)
                if isinstance(n, ast.BinOp) and len(factors(n)) > 2]
    assert products and named
    assert not [(p, named[q]) for p in products for q in named if q < p]


def factors(node: ast.AST) -> list[ast.AST]:
    """The operands of a chain of ``*`` (the node alone when it is not a product)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return factors(node.left) + factors(node.right)
    return [node]
