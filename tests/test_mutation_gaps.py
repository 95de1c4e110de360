"""Tests written for the survivors of the mutation campaign (``benchmarks/mutation.py``).

Each test names the mutant it kills by the campaign's id (``module:line:column:k`` as
``python benchmarks/mutation.py --list`` printed it; lines move as the modules change, the
function and the rewrite named with it do not) and says what the mutant got wrong: a value, a
printed formula, a refused or accepted input, or work done twice in the generated code.
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pytest

from matcalc import MatcalcError, derive, generate, hessian, lambdify

torch = pytest.importorskip("torch")


def formula(source: str, wrt: str, **options) -> str:
    """The printed right-hand side of ∂f/∂wrt (without its shape)."""
    result = derive(source, [wrt], **options)
    for line in result.text().splitlines():
        if line.strip().startswith(f"∂{result.f}/∂{wrt} = "):
            return line.split(" = ", 1)[1].rsplit("   [", 1)[0].strip()
    raise AssertionError(f"no line for {wrt} in\n{result.text()}")


def code_lines(source: str, wrt: list[str], **options) -> list[str]:
    """The statements of ``derive(...).numpy()``, stripped."""
    return [line.strip() for line in derive(source, wrt, **options).numpy().splitlines()]


# ----------------------------------------------------------------------------------------------
# rules.py


def test_matrix_power_64_is_differentiated_and_65_refused() -> None:
    """rules:144:7:1 (``abs(k) > MAX_POWER`` → ``>=``): MAX_POWER = 64 is the largest power
    differentiated, so X⁶⁴ must work (and agree with torch) while X⁶⁵ is refused."""
    source = "X: [n, n]\nC: [n, n]\nL = sum(matrix_power(X, {k}) * C)"
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    x = q + 0.01 * rng.normal(size=(3, 3))          # near-orthogonal: X⁶⁴ stays of order 1
    c = rng.normal(size=(3, 3))
    value, grads = lambdify(source.format(k=64), ["X"]).value_and_grad(X=x, C=c)
    xt = torch.tensor(x, requires_grad=True)
    expected = (torch.linalg.matrix_power(xt, 64) * torch.tensor(c)).sum()
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-10)
    np.testing.assert_allclose(grads["X"], xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    with pytest.raises(MatcalcError, match="up to 64"):
        derive(source.format(k=65), ["X"])


def test_cross_entropy_of_a_vector_with_one_integer_label_matches_torch() -> None:
    """rules:163:54:2 (``z.shape[-1]`` → ``z.shape[1]``): logits that are a vector with a scalar
    class label have no axis 1; the gradient is softmax(z) − onehot(y), as torch's unbatched
    cross_entropy. (The same program in test_regressions.py is skipped by the fuzz harness:
    its input draw fails with "too many indices for tensor of dimension 1".)"""
    source = "z: [C]\ny: [] labels\nL = softmax_cross_entropy(z, y)"
    z = np.array([0.3, -1.2, 2.0, 0.5])
    y = np.array(2)
    value, grads = lambdify(source, ["z"]).value_and_grad(z=z, y=y)
    zt = torch.tensor(z, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(zt, torch.tensor(2))
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grads["z"], zt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_logsumexp_of_a_vector_has_the_gradient_softmax_without_an_axis() -> None:
    """simplify ``last_axis``: for a vector, the gradient of logsumexp over all entries is
    written softmax(x) (not ``axis=None`` or ``axis=0``), the same node as the softmax of a
    cross-entropy, so that the two cancel."""
    assert formula("x: [n]\nlogsumexp(x)", "x") == "softmax(x)"
    assert formula("x: [n]\nlogsumexp(x, axis=0)", "x") == "softmax(x)"
    assert formula("z: [C]\ny: [] labels\nL = softmax_cross_entropy(z, y) - logsumexp(z)",
                   "z") == "−onehot(y)"


# ----------------------------------------------------------------------------------------------
# simplify.py


def test_constant_powers_too_large_to_hold_are_refused_but_powers_of_one_are_not() -> None:
    """simplify:245:52:1 (``base not in (0, 1, -1)`` → ``in`` in fold_power): 3³⁰⁰⁰ has 4,755
    bits, past MAX_CONSTANT_BITS = 4096, and is refused; 1⁵⁰⁰⁰ and (−1)⁵⁰⁰¹ are small."""
    with pytest.raises(MatcalcError, match="too large to compute"):
        derive("x: [n]\nL = sum(x) * 3 ** 3000", ["x"])
    with pytest.raises(MatcalcError, match="too large to compute"):
        derive("x: [n]\nL = sum(x) * (1/3) ** 3000", ["x"])
    assert formula("x: [n]\nL = sum(x) * 1 ** 5000", "x") == "𝟙"
    module = lambdify("x: [n]\nL = sum(x) * (-1) ** 5001", ["x"])
    value, grads = module.value_and_grad(x=np.array([1.0, 2.0]))
    assert value == -3.0
    np.testing.assert_array_equal(grads["x"], [-1.0, -1.0])


def test_a_data_scalar_common_to_terms_is_collected() -> None:
    """simplify:142:43:1 and its twin two lines up (``f.op != "const"`` → ``==`` in
    collect_common_scalars): s A x + s Aᵀ x is written s (A + Aᵀ) x, with x once (in the torch
    target, grad_output is such a scalar)."""
    printed = formula("x: [n]\nA: [n, n]\ns: []\nL = s * (x @ A @ x)", "x")
    assert printed.count("x") == 1 and "A + Aᵀ" in printed


def test_a_sum_over_an_axis_of_a_keepdims_sum_over_it_is_one_sum() -> None:
    """simplify:461:7:1 (``x.op == "sum"`` → ``!=`` in reduce_sum): sum(sum(X, axis=1,
    keepdims=True), axis=1) is sum(X, axis=1); here in ∂f/∂v of c (W ⊙ v) v."""
    printed = formula("v: [n]\nW: [m, n]\nc: [m]\nc @ (W * v) @ v", "v")
    assert "sum(Wᵀ ⊙ (v cᵀ), axis=1)" in printed and "sum(sum(" not in printed


def test_a_common_left_factor_is_collected_in_a_kronecker_hessian() -> None:
    """simplify:106:48:1 (``collect_common_factor(merged, side=0)`` → ``side=1`` in add): the
    Hessian of sum(sin(x xᵀ) ⊙ W) is written with (I ⊗ x + x ⊗ I) once, its common left factor
    diag(vec(sin(x xᵀ))) (…) collected, not repeated for each term."""
    text = hessian("x: [n]\nW: [n, n]\nsum(sin(outer(x, x)) * W)", "x").text()
    (line,) = [line for line in text.splitlines() if line.startswith("∂²f/∂x² = ")]   # vec(x) is x
    assert line.count("diag(vec(sin(x xᵀ)") == 1
    assert "I_n ⊗ x + x ⊗ I_n" in line or "x ⊗ I_n + I_n ⊗ x" in line


def test_a_constant_power_of_exponent_4096_is_computed() -> None:
    """simplify:249:30:1 (``abs(exponent) > MAX_CONSTANT_BITS`` → ``>=`` in fold_power): the
    limit is on exponents above 4096, so exp(1/4096) ** 4096 (which is e) is folded."""
    source = "x: [n]\nL = sum(x) * exp(1/4096) ** 4096"
    value, grads = lambdify(source, ["x"]).value_and_grad(x=np.array([1.0, 2.0]))
    np.testing.assert_allclose(value, 3 * np.e, rtol=1e-15)
    np.testing.assert_allclose(grads["x"], [np.e, np.e], rtol=1e-15)


def test_elementwise_functions_of_numbers_are_folded() -> None:
    """simplify:507:11:1 (``const(result) if result.is_real and result.is_finite`` negated in
    folded): exp(0) is 1 and log(2) a number in the formula and in the code (not np.log(2))."""
    assert formula("x: [n]\nL = sum(x) * exp(0)", "x") == "𝟙"
    code = derive("x: [n]\nc: [n]\nsum(2 ** x * c)", ["x"]).numpy()
    assert "0.6931471805599453" in code and "np.log(2)" not in code


def test_a_keepdims_sum_over_rows_then_columns_is_one_sum() -> None:
    """simplify:463:33:1 (``x.attrs[1]`` → ``x.attrs[0]`` in reduce_sum): sum(sum(Y, axis=0,
    keepdims=True), axis=1, keepdims=True) is sum(Y, keepdims=True), also when the inner sum
    is over axis 0."""
    printed = formula("X: [n, m]\nW: [n, m]\nL = sum(sum(sum(X * W, axis=0, keepdims=True), "
                      "axis=1, keepdims=True) * W)", "X")
    assert "sum(W, keepdims=True)" in printed and "sum(sum(" not in printed


def test_diag_times_a_constant_matrix_is_a_column_repeated() -> None:
    """simplify:320:26:1 (``b.rank == 2`` → ``3`` in matmul): diag(v) (c 𝟙𝟙ᵀ) = (c v) 𝟙ᵀ, so
    ∂ sum(diag(x) (2 𝟙𝟙ᵀ)) / ∂x is (2 n) 𝟙, with no matrix power of 𝟙𝟙ᵀ."""
    source = "x: [n]\nA: [n, n]\nf = sum(diag(x) @ (0 * A + 2))"
    assert formula(source, "x") == "(2 n) 𝟙"


def test_a_constant_matrix_times_diag_is_a_row_repeated() -> None:
    """simplify:310:92:1 of the second campaign (``b.args[0].rank == 1`` → ``== 0`` in
    matmul): (c 𝟙𝟙ᵀ) diag(v) = 𝟙 (c v)ᵀ, the twin of the rule above from the left."""
    source = "x: [n]\nA: [n, n]\nf = sum((0 * A + 2) @ diag(x))"
    assert formula(source, "x") == "(2 n) 𝟙"


def test_sums_of_the_identity_and_of_plain_sums_are_simplified() -> None:
    """simplify:457:30:1 (``not keepdims`` → ``keepdims`` for a sum of I in reduce_sum) and
    simplify:459:37:1 / simplify:459:25:1 (``not x.attrs[1]`` → ``not x.attrs[0]`` /
    ``x.attrs[1]``): ∂ tr(X + c)/∂c sums I over
    its rows, which is 𝟙; sum(sum(Y, axis=1)) is sum(Y)."""
    assert formula("X: [n, n]\nc: [n]\ntrace(X + c)", "c") == "𝟙"
    printed = formula("X: [n, m]\nW: [n, m]\nv: [n]\nL = sum(sum(X * W, axis=1)) * sum(v)", "v")
    assert "sum(sum(" not in printed and "axis" not in printed


def test_diag_of_a_repeated_number_is_a_multiple_of_the_identity() -> None:
    """simplify:522:54:1 (``args[0].rank == 1`` → ``!= 1`` in apply): diag(c 𝟙) = c I, so
    ∂ sum(diag(c 𝟙) x)/∂x = c 𝟙."""
    assert formula("x: [n]\nc: []\nL = sum(diag(0 * x + c) @ x)", "x") == "c 𝟙"


def test_a_product_of_three_matrices_has_one_form() -> None:
    """simplify:309:28:2 (``a.rank == b.rank == b.args[1].rank == 2`` → ``… != …`` in matmul):
    A (B C) is written (A B) C, one form for one product (and shared as one value)."""
    code = generate("A: [n, n]\nB: [n, n]\nC: [n, n]\nD: [n, n]\n"
                    "L = sum(sin(A @ (B @ C)) * D)", ["A"])
    assert "A @ B @ C" in code and "A @ (B @ C)" not in code


# ----------------------------------------------------------------------------------------------
# codegen.py: values


def test_a_sum_of_more_than_64_terms_adds_every_term() -> None:
    """codegen:990:37:1 (chunks of MAX_TERMS = 64 from ``range(1, …)``): a sum longer than 64
    terms is added up in parts; the first term must be in the first part. Here ∂L/∂x is one
    sum of the 70 contributions a0 … a69 (the program's own sum is nested 8 terms deep)."""
    names = [f"a{i}" for i in range(70)]
    source = (f"x: [n]\n{', '.join(names)}: [n]\nL = "
              + " + ".join(f"sum(x * {name})" for name in names))
    rng = np.random.default_rng(1)
    arrays = {name: rng.normal(size=3) for name in ["x", *names]}
    total = sum(arrays[name] for name in names)
    value, grads = lambdify(source, ["x"]).value_and_grad(**arrays)
    np.testing.assert_allclose(value, np.sum(arrays["x"] * total), rtol=1e-12)
    np.testing.assert_allclose(grads["x"], total, rtol=1e-12)


def test_a_scalar_broadcast_into_a_gradient_keeps_the_variables_dtype() -> None:
    """codegen:653:49:2 (``NUMPY or const`` → ``and`` in Emitter.materialised): ∂(s·sum(x))/∂x
    = s 𝟙 is filled into an array like x, float32 for a float32 x even when s is a Python
    float (``np.broadcast_to(s, …).copy()`` would give float64)."""
    module = lambdify("x: [n]\ns: []\nL = s * sum(x)", ["x"])
    _, grads = module.value_and_grad(x=np.ones(3, np.float32), s=2.5)
    assert grads["x"].dtype == np.float32
    np.testing.assert_array_equal(grads["x"], [2.5, 2.5, 2.5])


def test_infinite_constants_keep_their_sign() -> None:
    """codegen:426:16:1 (the sign of ``inf`` negated in number_literal): a constant beyond
    float64 is ±inf in the generated code, with its own sign."""
    x = np.array([1.0, 2.0])
    _, grads = lambdify("x: [n]\nL = sum(x) * 10 ** 400", ["x"]).value_and_grad(x=x)
    np.testing.assert_array_equal(grads["x"], [np.inf, np.inf])
    _, grads = lambdify("x: [n]\nL = sum(x) * -(10 ** 400)", ["x"]).value_and_grad(x=x)
    np.testing.assert_array_equal(grads["x"], [-np.inf, -np.inf])


def test_a_gradient_made_only_of_one_hot_terms() -> None:
    """codegen:982:92:1 (``onehot_part(hot[0])[1]`` → ``[0]`` in Emitter.e_add): a sum whose
    terms are all c·onehot(y) starts from zeros and adds each at its labels. It used to form
    the first term with coefficient 1: −onehot(t) − onehot(y) came out onehot(t) − onehot(y)."""
    source = ("z: [C]\ny, t: [] labels\n"
              "L = softmax_cross_entropy(z, y) + softmax_cross_entropy(z, t) - 2 * logsumexp(z)")
    z = np.array([0.1, -0.3, 0.7])
    _, grads = lambdify(source, ["z"]).value_and_grad(z=z, y=np.array(0), t=np.array(2))
    np.testing.assert_array_equal(grads["z"], [-1.0, 0.0, -1.0])


# ----------------------------------------------------------------------------------------------
# codegen.py: the printed code


def test_number_literals_are_exact_below_two_to_the_53_and_floats_from_there() -> None:
    """codegen:420:41:1, codegen:420:41:2 (``2**53`` → ``3**53``, ``2 * 53``), codegen:420:44:1,
    codegen:422:72:1, codegen:422:47:1 (``2**53`` → ``2**54``), codegen:422:44:1 (→ ``3**53``)
    and codegen:422:29:1 (``abs(value.q) < 2**53`` → ``<=``)
    in number_literal: integers and ratios of integers below 2⁵³ (exact in float64) are printed
    as they are, larger ones as the float literal they round to."""

    def filled(constant: str) -> str:
        (line,) = [line for line in code_lines(f"x: [n]\nL = sum(x) * {constant}", ["x"])
                   if line.startswith("grad_x = ")]
        return line.removeprefix("grad_x = np.full_like(x, ").removesuffix(")")

    assert filled("1000") == "1000"
    assert filled("(2 ** 53 - 1)") == "9007199254740991"
    assert filled("2 ** 53") == "9007199254740992.0"
    assert filled("(2 ** 53 - 1) / 4") == "9007199254740991 / 4"
    assert filled("(2 ** 53 + 1) / 2") == "4503599627370496.0"
    assert filled("1 / 2 ** 53") == "1.1102230246251565e-16"


def test_sizes_in_generated_code_are_not_parenthesised() -> None:
    """codegen:466:23:1 (``prec >= level`` → ``>`` in ConstantPrinter.wrap): mean(A) of a
    [p, p] matrix has the gradient ``p ** -2``, not ``(p) ** (-2)``."""
    assert "grad_A = np.full_like(A, p ** -2)" in code_lines("A: [p, p]\nmean(A)", ["A"])


def test_a_constant_term_is_added_as_one_number() -> None:
    """codegen:1002:38:2 (``ADD + 1 if parts`` → ``if not parts`` in Emitter.e_add): a later
    term that is itself a sum, the size expression n + 1, keeps its parentheses (NumPy adds
    it once, not n and then 1 to every entry)."""
    lines = code_lines("x: [n]\nL = sum(x * (n + 1)) + sum(x ** 3)", ["x"])
    assert "grad_x = 3 * x ** 2 + (n + 1)" in lines


def test_stepwise_code_computes_a_shared_product_once() -> None:
    """codegen:1153:77:1 (``counted=True`` → ``False`` in emit_in_turn): the error signals are
    counted with the outputs, so X W, used by H = relu(X W) and by relu's mask in ∂L/∂W, is
    computed once."""
    source = "X: [n, m]\nW: [m, k]\nH = relu(X @ W)\nL = sum(H.T @ H) + sum(H * H)"
    code = derive(source, ["W"], steps=True).numpy()
    assert code.count("X @ W") == 1


def test_cross_entropy_code_computes_log_softmax_once() -> None:
    """codegen:712:16:1 (``self.uses[shared] += 2`` deleted in Emitter.share_log_softmax): the
    loss and its gradient softmax(Z) = exp(log_softmax(Z)) share one log_softmax(Z)."""
    code = generate("Z: [N, C]\ny: [N] labels\nL = softmax_cross_entropy(Z, y)", ["Z"])
    body = code.split("def value_and_grad", 1)[1]
    assert body.count("_log_softmax(Z)") == 1
    assert "_softmax(Z)" not in body.replace("_log_softmax(Z)", "")      # exp of the shared one


def test_generated_code_has_no_temporary_that_only_renames_another() -> None:
    """codegen:780:11:2 (``node not in self.names and …`` → ``or`` in Emitter.named_first): a
    value that already has a name is not named again (``t3 = t1``)."""
    source = "A: [n, m]\nx: [m]\nc: [n]\nsum(leaky_relu(A @ x) * c)"
    for target in ("numpy", "torch"):
        code = generate(source, ["A", "x", "c"], target=target)
        assert re.search(r"^\s*t\d+ = t\d+$", code, re.MULTILINE) is None, code


def test_a_constant_factor_is_written_as_a_sign_or_a_divisor() -> None:
    """codegen:1014:12:1 (``coefficient = const_value(factors.pop(0))`` deleted in
    Emitter.e_mul): −relu(x)/r differentiates to ``-(x > 0)… / r``, not ``-1 * …``, and the half in
    the gradient of sqrt is written ``Aᵀ t / 2``, not ``1 / 2 * (Aᵀ t)``."""
    lines = code_lines("x: [n]\nr: []\nsum(-relu(x) / r)", ["x"])
    assert "grad_x = -(x > 0).astype(x.dtype) / r" in lines
    lines = code_lines("A: [n, m]\nx: [m]\nc: [n]\nsum(sqrt(A @ x) * c)", ["x"])
    assert any(line.startswith("grad_x = A.T @ ") and line.endswith(" / 2") for line in lines)


def test_a_negated_scalar_is_not_parenthesised_inside_a_product() -> None:
    """codegen:1039:12:2 and codegen:1038:44:1 (``not factors or …`` → ``and``,
    ``len(top) == 1`` → ``== 0`` in Emitter.e_mul): ``-grad_output`` is
    a unary minus, written ``-grad_output * …`` in the torch backward, not ``(-grad_output)``."""
    code = generate("B: [n, n]\nD: [n, n]\nL = -sum(B @ D)", ["D"], target="torch")
    assert "torch.outer(-grad_output * B.T.sum(dim=1), " in code


def test_a_product_around_an_outer_product_is_an_outer_product() -> None:
    """codegen:1111:39:1 (``b.rank == 2`` → ``3`` in outer_vectors): ∂(cᵀ X⁻¹ x)/∂X =
    −(X⁻ᵀ c)(X⁻¹ x)ᵀ is computed as an outer product of two vectors, O(n²), not as
    outer(…) @ X⁻ᵀ, O(n³)."""
    lines = code_lines("X: [n, n]\nx: [n]\nc: [n]\nc @ inv(X) @ x", ["X"])
    (line,) = [line for line in lines if line.startswith("grad_X = ")]
    assert re.fullmatch(r"grad_X = -np\.outer\(.*\)", line), line


def test_the_softmax_of_a_named_log_softmax_is_its_exp() -> None:
    """codegen:600:53:1: the body of a named value is always computed by its name, so the
    rule's softmax(x) finds the named t = log_softmax(x) and becomes exp(t) (it used to be
    recomputed when t was used once)."""
    code = generate("x: [n]\nt = log_softmax(x)\nL = sum(sin(t))", ["x"])
    body = code.split("def value_and_grad", 1)[1]
    assert "np.exp(t)" in body and "_softmax(x)" not in body.replace("_log_softmax(x)", "")


def test_a_negative_number_raised_to_a_power_keeps_its_parentheses() -> None:
    """codegen:421:32:1 (``ATOM if value >= 0 else UNARY`` inverted in number_literal): (−2)ˣ
    is ``(-2) ** x``; ``-2 ** x`` would be −(2ˣ). (Its derivative in x, (−2)ˣ log(−2), is not
    real: the gradient is in c.)"""
    module = lambdify("x: [n]\nc: []\nL = sum(c * (-2) ** x)", ["c"])
    assert module.value(x=np.array([1.0, 2.0, 3.0]), c=1.0) == -2.0 + 4.0 - 8.0


def test_diag_of_a_vector_times_a_matrix_scales_its_rows() -> None:
    """codegen:917:48:1 (``a.args[0].rank == 1`` → ``== 0`` in Emitter.e_matmul): diag(x) B is
    computed as ``x[:, None] * B``, O(n m), without forming diag(x)."""
    code = generate("x: [n]\nB: [n, m]\nL = sum(sin(diag(x) @ B))", ["x"])
    assert "x[:, None] * B" in code and "np.diag(x)" not in code


def test_integer_labels_are_never_one_hot_encoded() -> None:
    """codegen:1060:12:1 (``term.args[0].op == "const"`` → ``!=`` in onehot_part): the term
    −onehot(y) of (softmax(Z) − onehot(y)) / N is added at the labels, as the derivation's note
    promises ("onehot(y) is never formed in the generated code"), not built from zeros."""
    code = generate("Z: [N, C]\ny: [N] labels\nL = softmax_cross_entropy(Z, y)", ["Z"])
    body = code.split("def value_and_grad", 1)[1]
    assert "_add_at(" in body and "zeros" not in body


def test_a_mask_multiplying_an_array_stays_boolean() -> None:
    """codegen:1021:58:1 (``not in_denominator(f)`` → ``in_denominator(f)`` in Emitter.e_mul):
    c ⊙ 1[t > 0] is written ``c * (t1 > 0)``, the mask left boolean (NumPy multiplies it as
    0/1), not cast with ``.astype`` first."""
    code = generate("A: [n, m]\nx: [m]\nc: [n]\nsum(relu(A @ x) * c)", ["A", "x", "c"])
    body = code.split("def value_and_grad", 1)[1]
    assert re.search(r"= c \* \(t\d+ > 0\)$", body, re.MULTILINE), body
    assert ".astype(" not in body


def test_each_part_of_a_long_sum_is_its_own_statement() -> None:
    """codegen:993:20:1 (``self.bind(self.temp_name(chunk), chunk)`` deleted in Emitter.e_add):
    a sum of more than 64 terms is added up in named parts, so no statement adds more than 64
    terms (Python's compiler nests a + b + … one level per term)."""
    names = [f"a{i}" for i in range(70)]
    source = (f"x: [n]\n{', '.join(names)}: [n]\nL = "
              + " + ".join(f"sum(x * {name})" for name in names))
    tree = ast.parse(derive(source, ["x"]).numpy())
    additions = [sum(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add)
                     for n in ast.walk(statement)) for statement in tree.body]
    assert 0 < max(additions) < 64


def test_a_gradient_repeating_a_row_is_a_writable_array_of_its_own() -> None:
    """codegen:658:11:3 (``if self.dialect is TORCH and x.op == "const"`` negated in
    Emitter.materialised): ∂/∂A of sum(sin(sum(A, axis=0)) ⊙ d) repeats one row; NumPy's
    broadcast_to gives a read-only view, so the gradient must be a copy."""
    module = lambdify("A: [n, m]\nd: [m]\nsum(sin(sum(A, axis=0)) * d)", ["A"])
    _, grads = module.value_and_grad(A=np.ones((3, 2)), d=np.array([1.0, 2.0]))
    assert grads["A"].flags.writeable
    grads["A"][0, 0] += 1.0
    np.testing.assert_allclose(grads["A"][1], np.cos(3.0) * np.array([1.0, 2.0]))


def test_a_power_one_is_the_base() -> None:
    """simplify:262:12:1 (``if k == 1: return base`` → ``k == 0`` in power): x ** 1 is x."""
    assert formula("x: [n]\nsum(sin(x ** 1))", "x") == "cos(x)"


def test_a_transposed_mask_is_cast_once_after_transposing() -> None:
    """codegen:905:51:1 (``masks=True`` → ``False`` in Emitter.e_transpose): a mask under a
    transpose stays a mask, ``(t > 0).T``, not ``(1.0 * (t > 0)).T`` (a float64 array whatever
    the inputs' dtype)."""
    code = derive("A: [1, 1]\na: []\nB: [n, 1]\nt1 = a - B\nt2 = n * relu(silu(t1).T)\n"
                  "L = mean(t1 * t2)", ["a", "B"], steps=True).numpy()
    assert " > 0).T" in code and "1.0 *" not in code


def test_the_torch_gradient_of_a_repeated_number_is_a_tensor_of_its_own() -> None:
    """codegen:658:37:1 (``x.op == "const"`` → ``!=`` in Emitter.materialised): in the torch
    backward, −grad_output repeated over A is cloned, not returned as an expanded view whose
    entries share one memory location (in-place updates of it fail)."""
    f = lambdify("A: [n, m]\nL = sum(-A, axis=None)", ["A"], target="torch").L
    a = torch.ones((3, 2), dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(f(a), a)
    grad.add_(1.0)
    torch.testing.assert_close(grad, torch.zeros((3, 2), dtype=torch.float64))


def test_a_constant_gradient_is_a_float_even_when_infinite() -> None:
    """codegen:635:46:1 (``"inf" not in text`` → ``in`` in Emitter.number_array): ∂(3 s)/∂s is
    the float 3.0 (``3`` would be a Python int), and ∂(10⁴⁰⁰ s)/∂s is ``math.inf`` (a bare
    ``inf`` is a NameError)."""
    _, grads = lambdify("s: []\nL = 3 * s", ["s"]).value_and_grad(s=np.float64(2.0))
    assert isinstance(grads["s"], float) and grads["s"] == 3.0
    _, grads = lambdify("s: []\nL = s * 10 ** 400", ["s"]).value_and_grad(s=np.float64(2.0))
    assert grads["s"] == np.inf
