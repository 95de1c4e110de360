"""`matcalc derive`: printed matrix forms of classic results and the seeds' worked examples."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from matcalc import derive
from matcalc.errors import MatcalcError
from matcalc.proofs.evaluation import evaluator, function_value
from matcalc.proofs.finite_differences import numeric_jacobian, relative_error

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CLASSIC = [
    ("x: [n]; A: [n, n]; x @ A @ x", "x", "(A + Aᵀ) x"),
    ("x: [n]; A: [n, n]; x @ A @ x", "A", "x xᵀ"),
    ("A: [n, n]; B: [n, n]; X: [n, n]; trace(A @ X @ B)", "X", "Aᵀ Bᵀ"),
    ("X: [n, n]; det(X)", "X", "X⁻ᵀ det(X)"),
    ("X: [n, n]; logdet(X)", "X", "X⁻ᵀ"),
    ("X: [n, n]; A: [n, n]; trace(inv(X) @ A)", "X", "−X⁻ᵀ Aᵀ X⁻ᵀ"),
    ("x: [n]; a: [n]; norm(x - a)", "x", "(x − a) / ‖x − a‖"),
    ("X: [N, D]; W: [D, C]; Y: [N, C] onehot; softmax_cross_entropy(X @ W, Y)", "W",
     "Xᵀ (softmax(X W) − Y) / N"),
    ("Z: [N, C]; b: [C]; Y: [N, C] onehot; softmax_cross_entropy(Z + b, Y)", "b",
     "sum(softmax(Z + b) − Y, axis=0) / N"),
    ("X: [n, n]; trace(X.T @ X)", "X", "2 X"),
    ("X: [n, m]; norm(X) ** 2", "X", "2 X"),
    ("A: [m, n]; x: [n]; b: [m]; norm(A @ x - b) ** 2", "x", "2 Aᵀ (A x − b)"),
    ("X: [n, n]; trace(matrix_power(X, 3))", "X", "3 (X²)ᵀ"),
    ("x: [n]; sum(tanh(x))", "x", "1 − tanh(x)²"),
    ("X: [n, n]; trace(X)", "X", "I"),
    ("x: [n]; exp(sum(x))", "x", "exp(sum(x)) 𝟙"),
    ("X: [N, D]; W: [D, H]; Y: [N, H]; sum((leaky_relu(X @ W, 0.2) - Y) ** 2)", "W",
     "2 Xᵀ ((leaky_relu(X W, 1/5) − Y) ⊙ leaky_relu′(X W, 1/5))"),
    ("K: [n, n] symmetric; y: [n]; 0.5 * y @ solve(K, y) + 0.5 * logdet(K)", "K",
     "(K⁻¹ − (K⁻¹ y) (K⁻¹ y)ᵀ) / 2"),                # a GP's ½(K⁻¹ − α αᵀ), α = K⁻¹ y
]


@pytest.mark.parametrize(("source", "wrt", "expected"), CLASSIC, ids=[c[2] for c in CLASSIC])
def test_classic_results_print_in_textbook_form(source: str, wrt: str, expected: str) -> None:
    assert formula(derive(source, [wrt]), wrt) == expected


def formula(result, name: str) -> str:
    """The printed formula of one gradient of a derivation."""
    for line in result.text().splitlines():
        if line.strip().startswith(f"∂{result.f}/∂{name} = "):
            return line.split(" = ", 1)[1].rsplit("   [", 1)[0].strip()
    raise AssertionError(f"no line for {name} in\n{result.text()}")


def check_numerically(result, sizes: dict[str, int], seed: int = 0) -> None:
    """Every gradient of ``result`` agrees with central differences (float64, rel ≤ 1e-6)."""
    from matcalc.proofs.inputs import smooth_inputs

    program = result.program
    arrays = smooth_inputs(program, sizes, np.random.default_rng(seed))
    grads = evaluator(program, [(g.wrt, g.expr) for g in result.gradients])(**arrays)
    value = function_value(program)
    for g, got in zip(result.gradients, grads, strict=True):
        if g.wrt in program.variables:
            expected = numeric_jacobian(value, arrays, g.wrt)
            assert got.shape == expected.shape
            assert relative_error(got, expected) < 1e-6, g.wrt


# ----------------------------------------------------------------------------------------------
# The seeds' worked results


def test_identity_5_matrix_times_column_vector_wrt_matrix() -> None:
    """z = W x, δ = ∂J/∂z: ∂J/∂W = δ xᵀ (gradient layout)."""
    result = derive("W: [n, m]; x: [m]; delta: [n]; sum(delta * (W @ x))", ["W", "x"])
    assert formula(result, "W") == "delta xᵀ"
    assert formula(result, "x") == "Wᵀ delta"
    check_numerically(result, {"n": 3, "m": 4})


def test_identity_6_row_vector_times_matrix_wrt_matrix() -> None:
    """z = x W with x a row: ∂J/∂W = xᵀ δ."""
    result = derive("W: [m, n]; x: [1, m]; delta: [1, n]; sum(delta * (x @ W))", ["W"])
    assert formula(result, "W") == "xᵀ delta"
    check_numerically(result, {"n": 3, "m": 4})


def test_identity_7_cross_entropy_wrt_logits() -> None:
    """ŷ = softmax(θ), J = CE(y, ŷ): ∂J/∂θ = ŷ − y."""
    result = derive("theta: [c]; y: [c] onehot; softmax_cross_entropy(theta, y)", ["theta"])
    assert formula(result, "theta") == "softmax(theta) − y"
    check_numerically(result, {"c": 5})


def test_seed_one_layer_network_all_gradients() -> None:
    """The seeds' 1-layer network: δ1 = ŷ − y, δ2 = Uᵀδ1 ⊙ 1[z > 0], ∂J/∂U = δ1 hᵀ, …"""
    source = (EXAMPLES / "one_layer.mc").read_text()
    wrt = ["U", "b2", "W", "b1", "x"]
    steps = derive(source, wrt, steps=True)
    assert [(s.name, s.label) for s in steps.steps] == [("theta", 1), ("h", 2), ("z", 3)]
    text = steps.text()
    assert "δ1 = ∂J/∂theta = softmax(theta) − y" in text
    assert "δ2 = ∂J/∂h = Uᵀ δ1" in text
    assert "δ3 = ∂J/∂z = δ2 ⊙ 1[z > 0]" in text
    assert {w: formula(steps, w) for w in wrt} == {
        "U": "δ1 hᵀ", "b2": "δ1", "W": "δ3 xᵀ", "b1": "δ3", "x": "Wᵀ δ3"}
    inline = derive(source, wrt)
    assert formula(inline, "U") == "(softmax(theta) − y) hᵀ"
    assert formula(inline, "W") == "((Uᵀ (softmax(theta) − y)) ⊙ 1[z > 0]) xᵀ"
    check_numerically(inline, {"Dx": 4, "Dh": 5, "Nc": 3})
    check_numerically(inline, {"Dx": 2, "Dh": 3, "Nc": 6}, seed=1)


def test_seed_linear_relu_linear_mse_matches_lesson_8_formulas() -> None:
    """mse_grad: out.g = 2 (out − targ) / N; lin_grad: inp.g = out.g wᵀ, w.g = inpᵀ out.g,
    b.g = out.g.sum(0); relu_grad: inp.g = 1[inp > 0] ⊙ out.g."""
    source = (EXAMPLES / "lin_relu_mse.mc").read_text()
    result = derive(source, ["w1", "b1", "w2", "b2", "inp"], steps=True)
    assert [(s.name, s.label) for s in result.steps] == [("out", 1), ("l2", 2), ("l1", 3)]
    text = result.text()
    assert "δ1 = ∂loss/∂out = 2 (out − targ) / N" in text      # mse_grad
    assert "δ2 = ∂loss/∂l2 = δ1 w2ᵀ" in text                   # lin_grad: inp.g = out.g @ w.T
    assert "δ3 = ∂loss/∂l1 = δ2 ⊙ 1[l1 > 0]" in text           # relu_grad
    assert formula(result, "w2") == "l2ᵀ δ1"                   # w.g = inp.T @ out.g
    assert formula(result, "b2") == "sum(δ1, axis=0)"          # b.g = out.g.sum(0)
    assert formula(result, "w1") == "inpᵀ δ3"
    assert formula(result, "b1") == "sum(δ3, axis=0)"
    assert formula(result, "inp") == "δ3 w1ᵀ"
    check_numerically(derive(source, ["w1", "b1", "w2", "b2", "inp"]),
                      {"N": 6, "m": 4, "nh": 3})


def test_mse_refuses_the_broadcasting_bug_of_lesson_8() -> None:
    """[N, 1] against [N] would broadcast to [N, N]: the lesson's squeeze() bug."""
    from matcalc import MatcalcError

    with pytest.raises(MatcalcError, match=r"\[N, 1\] and \[N\]"):
        derive("out: [N, 1]; targ: [N]; mse(out, targ)", ["out"])


def test_seed_l2_regularised_objective() -> None:
    """d2l 3.14: J = L + λ/2 (‖W1‖²_F + ‖W2‖²_F), ∂J/∂W2 = ∂L/∂o hᵀ + λ W2."""
    source = (EXAMPLES / "l2_regularised.mc").read_text()
    steps = derive(source, ["W1", "W2"], steps=True)
    assert "δ1 = ∂J/∂o = softmax(o) − y" in steps.text()
    assert formula(steps, "W2") == "δ1 hiddenᵀ + lam W2"
    assert formula(steps, "W1") == "δ3 xᵀ + lam W1"
    check_numerically(derive(source, ["W1", "W2", "lam"]), {"d": 4, "h": 5, "q": 3})


def test_mlp_example_matches_the_brief() -> None:
    """∂L/∂W1 = Xᵀ (((S − Y) W2ᵀ) ⊙ 1[Z1 > 0]) / N, the bias gradient summing over the batch."""
    source = (EXAMPLES / "mlp.mc").read_text()
    result = derive(source, ["W1", "b1", "W2", "b2"])
    assert formula(result, "W1") == "Xᵀ (((softmax(Z2) − Y) W2ᵀ) ⊙ 1[Z1 > 0]) / N"
    assert formula(result, "b1") == "sum(((softmax(Z2) − Y) W2ᵀ) ⊙ 1[Z1 > 0], axis=0) / N"
    assert formula(result, "W2") == "H1ᵀ (softmax(Z2) − Y) / N"
    assert formula(result, "b2") == "sum(softmax(Z2) − Y, axis=0) / N"
    check_numerically(result, {"N": 5, "D": 4, "H": 3, "C": 3})
    check_numerically(result, {"N": 2, "D": 3, "H": 6, "C": 2}, seed=3)


@pytest.mark.parametrize(("source", "wrt"), [
    ("x: [n]; A: [n, n]; x @ A @ x", ["x", "A"]),
    ("A: [n, n]; B: [n, n]; X: [n, n]; trace(A @ X @ B)", ["X"]),
    ("X: [n, n]; det(X)", ["X"]),
    ("X: [n, n]; logdet(X)", ["X"]),
    ("X: [n, n]; A: [n, n]; trace(inv(X) @ A)", ["X", "A"]),
    ("x: [n]; a: [n]; norm(x - a)", ["x", "a"]),
])
def test_seed_classics_agree_with_finite_differences(source: str, wrt: list[str]) -> None:
    result = derive(source, wrt)
    check_numerically(result, {"n": 3})
    check_numerically(result, {"n": 5}, seed=1)


# ----------------------------------------------------------------------------------------------
# Formats and API


def test_numpy_format_assigns_grad_names_and_computes_shared_work_once() -> None:
    source = (EXAMPLES / "mlp.mc").read_text()
    code = derive(source, ["W1", "b1", "W2", "b2"]).numpy()
    code = "\n".join(line for line in code.splitlines() if not line.startswith((" ", "def ")))
    assert code.count(" @ ") == 2 + 2 + 1      # forward 2, weight grads 2, activation grad 1
    for name in ("W1", "b1", "W2", "b2"):
        assert f"grad_{name} = " in code
    assert "np.eye" not in code and "ones" not in code
    assert "np.sum(" in code and "axis=0" in code


def test_numpy_format_runs_with_only_numpy_and_the_declared_names() -> None:
    code = derive("x: [n]; A: [n, n]; x @ A @ x", ["x"]).numpy()
    rng = np.random.default_rng(0)
    namespace = {"x": rng.normal(size=3), "A": rng.normal(size=(3, 3))}
    exec(code, namespace)
    x, a = namespace["x"], namespace["A"]
    np.testing.assert_allclose(namespace["grad_x"], (a + a.T) @ x)


def test_json_format_has_one_object_per_variable() -> None:
    items = derive("x: [n]; A: [n, n]; x @ A @ x", ["x", "A"]).json()
    assert [i["wrt"] for i in items] == ["x", "A"]
    assert items[0]["shape"] == ["n"] and items[1]["shape"] == ["n", "n"]
    assert items[0]["text"] == "(A + Aᵀ) x"
    assert items[0]["latex"] == r"\left(A + A^{\top}\right) x"
    assert "grad_x = " in items[0]["numpy"] and "grad_A" not in items[0]["numpy"]


def test_latex_fractions_need_no_parentheses_the_bar_already_groups() -> None:
    source = "X: [N, D]\nW: [D, C]\nL = sum((X @ W) ** 2) / (D * N)"
    assert derive(source, ["W"]).latex() == (
        r"\frac{\partial L}{\partial W} = \frac{2 X^{\top} X W}{D N}")
    text = derive(source.replace("(D * N)", "(D + N) / sum(W)"), ["W"]).latex()
    assert r"\frac{2 X^{\top} X W}{D + N}" in text


def test_latex_and_sympy_display() -> None:
    result = derive("X: [n, n]; det(X)", ["X"])
    assert result.latex() == r"\frac{\partial f}{\partial X} = X^{-\top} \det\left(X\right)"
    assert "aligned" in result._repr_latex_()
    import sympy

    shown = sympy.latex(result.to_sympy()["X"])
    assert "det" in shown.lower() or "left|" in shown


def test_zero_gradient_comes_with_a_note() -> None:
    result = derive("x: [n]; y: [n]; sum(x)", ["y"])
    assert formula(result, "y") == "0"
    assert any("does not depend on y" in note for note in result.notes)


def test_gradient_wrt_a_named_intermediate_is_its_error_signal() -> None:
    source = (EXAMPLES / "lin_relu_mse.mc").read_text()
    assert formula(derive(source, ["out"]), "out") == "2 (out − targ) / N"


def test_very_deep_programs_fall_back_to_error_signals() -> None:
    """A 300-step chain whose inline gradient would double at every step."""
    lines = ["x: [n]", "a0 = x", *(f"a{i} = tanh(a{i - 1}) + a{i - 1}" for i in range(1, 300))]
    result = derive("\n".join([*lines, "sum(a299)"]), ["x"])
    assert formula(result, "x") == "δ299"          # ∂f/∂a299 = 𝟙 needs no name
    assert any("error signals δ" in note for note in result.notes)
    check_numerically(derive("\n".join([*lines[:8], "sum(a5)"]), ["x"]), {"n": 3})


def test_common_factors_are_collected_only_between_operands_of_one_shape() -> None:
    """A v + A M is not A (v + M): v broadcasts as a row beside the matrix A M."""
    result = derive("A: [n, n]; v: [n]; M: [n, n]; sum(A @ v + A @ M)", ["A", "v", "M"])
    assert formula(result, "A") == "n 𝟙 vᵀ + 𝟙𝟙ᵀ Mᵀ"
    check_numerically(result, {"n": 3})


def test_finite_differences_use_the_source_not_the_simplified_ir() -> None:
    """The reference value is computed from the text, so a simplifier bug cannot hide."""
    from matcalc import parse
    from matcalc.proofs.reference import reference_function

    program = parse("A: [n, n]; v: [n]; M: [n, n]; sum(A @ v + A @ M)")
    rng = np.random.default_rng(0)
    a, v, m = rng.normal(size=(3, 3)), rng.normal(size=3), rng.normal(size=(3, 3))
    assert np.isclose(reference_function(program)(A=a, v=v, M=m), np.sum(a @ v + a @ m))


def test_leaky_relu_slope_is_named_and_defined_in_a_note() -> None:
    """Not (4 1[X W > 0] + 𝟙𝟙ᵀ) / 5: the slope is leaky_relu′, defined where it is used."""
    result = derive("X: [N, D]; W: [D, H]; sum(leaky_relu(X @ W))", ["W"])
    assert formula(result, "W") == "Xᵀ leaky_relu′(X W, 1/100)"
    assert any("leaky_relu′(x, a) = 1 for x > 0 and a for x ≤ 0" in n for n in result.notes)
    assert r"\operatorname{leaky\_relu}'\left(X W, \frac{1}{100}\right)" in result.latex()
    check_numerically(result, {"N": 3, "D": 4, "H": 5})


def test_an_entrywise_power_of_a_square_matrix_is_not_printed_as_a_matrix_power() -> None:
    result = derive("A: [n, n]; B: [n, n]; X: [n, m]\nC = matrix_power(A, 2)\nD2 = A ** 2\n"
                    "L = trace(B @ inv(A ** 2)) + trace(C @ B) + sum(X ** 2)", ["A"], steps=True)
    text = result.text()
    assert "C = A²" in text and "D2 = A^⊙2" in text and "sum(X²)" in text
    assert any("A^⊙k is the entrywise (Hadamard) power" in n for n in result.notes)
    assert formula(derive("x: [n]; A: [n, n]; x @ A ** -0.5 @ x", ["A"]), "A") == (
        "−x xᵀ / (2 A^⊙(3/2))")
    assert r"A^{\odot \frac{3}{2}}" in derive("x: [n]; A: [n, n]; x @ A ** -0.5 @ x",
                                              ["A"]).latex()


def test_a_note_on_notation_comes_only_with_results_that_show_it() -> None:
    """scatter_add's note for the table's gradient, not for the other factor's b[tokens]; the
    A^⊙k note where a result has such a power, not merely the program."""
    lookup = "tokens: [B, T] labels; b: [V]; X: [B, T]\nf = sum(take(b, tokens, axis=0) * X)"
    assert not any("scatter_add" in n for n in derive(lookup, ["X"]).notes)
    assert any("scatter_add" in n for n in derive(lookup, ["b"]).notes)
    outer = 'x: [B, n]\nf = sum(einsum("bi,bj->bij", x, x) ** 2)'
    assert not any("A^⊙k" in n for n in derive(outer, ["x"]).notes)
    assert any("A^⊙k" in n for n in derive(outer, ["x"], steps=True).notes)


def test_reshape_sizes_print_as_shapes_do() -> None:
    text = derive("X: [B, T, h, k]; W: [k, k]\nY = reshape(X @ W, [B, T, h * k])\n"
                  "f = sum(Y ** 3)", ["W"], steps=True).text()
    assert "Y = reshape(X W, [B, T, h·k])" in text and "reshape(δ1, [B, T, h, k])" in text


def test_comparisons_print_as_the_program_wrote_them() -> None:
    """Not where(−d > -1, …) with an ASCII minus: d < 1; d ≥ −2 for −d ≤ 2."""
    result = derive("x: [n]; y: [n]\nd = x - y\n"
                    "L = sum(where(d < 1, d ** 2, 2 * d)) + sum(where(d >= -2, d, 0))", ["x"],
                    steps=True)
    text = result.text()
    assert "where(d < 1, d², 2 d)" in text and "where(d ≥ −2, d, 0)" in text
    assert "1[d < 1]" in text and "1[d < −2]" in text and "-" not in text.split("Backward")[1]


def test_a_column_broadcast_against_a_vector_is_pointed_out() -> None:
    """X @ w − y with w: [D, 1] and y: [N] is [N, N]: legal NumPy, rarely what was meant."""
    slip = derive("X: [N, D]; w: [D, 1]; y: [N]\nL = mean((X @ w - y) ** 2)", ["w"])
    assert any("broadcasts [N, 1] against [N] to [N, N]" in n for n in slip.notes)
    meant = derive("X: [N, D]; w: [D]; y: [N]\nL = mean((X @ w - y) ** 2)", ["w"])
    assert not any("broadcasts" in n for n in meant.notes)
    assert not any("broadcasts" in n for n in derive(
        (EXAMPLES / "mlp.mc").read_text(), ["W1", "b1"]).notes)


def test_latex_of_relu_and_ones() -> None:
    result = derive("X: [N, D]; W: [D, H]; sum(relu(X @ W))", ["W"])
    assert result.latex() == (r"\frac{\partial f}{\partial W} = X^{\top} "
                              r"\mathbb{1}\left[X W > 0\right]")


def test_steps_name_the_paths_each_error_signal_comes_back_through() -> None:
    result = derive("x: [n]; a = exp(x); b = sin(a); c = a * b; sum(c)", ["x"], steps=True)
    lines = {line.split(" = ")[1]: line for line in result.text().splitlines() if "δ" in line}
    assert lines["∂f/∂a"].endswith("= a ⊙ cos(a) + b   [n]   back through b, c")
    check_numerically(derive("x: [n]; a = exp(x); b = sin(a); c = a * b; sum(c)", ["x"]),
                      {"n": 3})


@pytest.mark.parametrize("source, says", [
    ("x: [n]\nf = sum(x / (x - x))", "a division by an array that is 0 for every input"),
    ("x: [n]\nf = sum(1 / (x - x))", "a division by an array that is 0 for every input"),
    ("x: [n]\nf = sum(log(x - x))", "log(0) is not finite"),
    ("x: []\nf = log(x - x) + x", "log(0) is not finite"),
    ("X: [n, n]\nf = logdet(X - X)", "logdet of a matrix that is 0 for every input"),
])
def test_a_function_defined_nowhere_is_refused(source: str, says: str) -> None:
    """x − x is 0 for every input: 1/(x − x), log(x − x) and logdet(X − X) are not finite.
    They printed ∂f/∂x = 1 / 0, or 0 with "f does not depend on x"; the scalar 1/(x − x) was
    already refused."""
    with pytest.raises(MatcalcError, match=re.escape(says)):
        derive(source, [source[0]])


def test_a_number_before_an_indicator_is_not_read_as_one_number() -> None:
    """2 1[u > 0] read as 21[u > 0] (a triplet loss)."""
    source = ("A: [N, D]; P: [N, D]; Q: [N, D]; m: []\ndp = sum((A - P) ** 2, axis=1)\n"
              "dn = sum((A - Q) ** 2, axis=1)\nf = sum(relu(dp - dn + m)) / N")
    assert derive(source, ["A"]).text().startswith("∂f/∂A = 2 · 1[dp + m − dn > 0] 𝟙ᵀ ⊙ (Q − P)")
