"""`matcalc init`: Gaussian moments, init formulas, fixed points, simulations, the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import sympy
from click.testing import CliRunner

from matcalc.applications import variance as v
from matcalc.cli.init import init

pi = sympy.pi
n, n_in, n_out = v.N, v.N_IN, v.N_OUT
a = sympy.Symbol("a", real=True)
SHIFTED = "relu(z) - 1/sqrt(2*pi)"


def same(expr: sympy.Expr, expected: sympy.Expr) -> bool:
    return sympy.simplify(expr - expected) == 0


def analysis(text: str) -> tuple[v.Moments, v.Init]:
    act = v.activation(text)
    m = v.moments(act)
    return m, v.initialisation(act, m)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("tanh", 0.3942944904), ("sigmoid", 0.2933790359), ("gelu", 0.4252214826),
     ("silu", 0.3557755198)],
)
def test_numeric_second_moments(name: str, expected: float) -> None:
    second = v.moments(v.activation(name)).second
    assert not second.exact
    assert second.value == pytest.approx(expected, abs=5e-11)


def test_relu_is_he() -> None:
    m, i = analysis("relu")
    assert all(q.exact for q in m.all())
    assert same(m.mean.expr, 1 / sympy.sqrt(2 * pi)) and m.second.expr == sympy.Rational(1, 2)
    assert same(m.second.general, v.SIGMA**2 / 2)
    assert i.fan_in.expr == 2 / n and str(i.fan_in.expr) == "2/n"
    assert i.fan_out.expr == 2 / n
    assert same(i.glorot.expr, 4 / (n_in + n_out))
    assert i.gain.expr == sympy.sqrt(2)
    assert i.normal_std.value == pytest.approx(np.sqrt(2 / 784))
    assert i.uniform_bound.value == pytest.approx(np.sqrt(6 / 784))


def test_leaky_relu_formula() -> None:
    for text in ("leaky_relu", "leaky_relu(z, a)"):
        m, i = analysis(text)
        assert same(i.fan_in.expr, 2 / ((1 + a**2) * n))
        assert same(i.gain.expr, sympy.sqrt(2 / (1 + a**2)))
        assert i.fan_in.value == pytest.approx(2 / ((1 + 0.01**2) * 784))


def test_linear_is_glorot_and_lecun() -> None:
    _, i = analysis("linear")
    assert i.fan_in.expr == 1 / n and i.fan_out.expr == 1 / n
    assert same(i.glorot.expr, 2 / (n_in + n_out))
    assert i.gain.expr == 1
    assert i.uniform_bound.value == pytest.approx(np.sqrt(3 / 784))


def test_shifted_relu_exact() -> None:
    m, i = analysis(SHIFTED)
    assert m.mean.exact and m.mean.expr == 0
    assert same(m.second.expr, sympy.Rational(1, 2) - 1 / (2 * pi))
    assert same(m.variance.expr, sympy.Rational(1, 2) - 1 / (2 * pi))
    assert same(i.fan_in.expr, 1 / (n * (sympy.Rational(1, 2) - 1 / (2 * pi))))
    assert v.centring(m).centred


def test_relu_minus_half_not_centred() -> None:
    m, _ = analysis("relu(z) - 0.5")
    c = v.centring(m)
    assert not c.centred and m.mean.exact
    assert same(c.mean.expr, 1 / sympy.sqrt(2 * pi) - sympy.Rational(1, 2))
    assert c.mean.value == pytest.approx(-0.1010577196, abs=1e-10)


def test_abs_and_selu_exact_tanh_mean_by_symmetry() -> None:
    assert same(v.moments(v.activation("abs(z)")).mean.expr, sympy.sqrt(2 / pi))
    selu = v.moments(v.activation("selu"))
    assert selu.second.exact and selu.second.value == pytest.approx(1, abs=1e-12)
    assert selu.mean.value == pytest.approx(0, abs=1e-12)
    tanh = v.moments(v.activation("tanh")).mean
    assert tanh.exact and tanh.expr == 0


def test_selu_fixed_point() -> None:
    fixed = v.fixed_point(v.activation("selu"))
    values = {str(p): q.value for p, q in fixed.solution.items()}
    assert values["lambda"] == pytest.approx(1.0507009874, abs=1e-9)
    assert values["alpha"] == pytest.approx(1.6732632423, abs=1e-9)


def test_relu_shift_fixed_point() -> None:
    fixed = v.fixed_point(v.activation("relu(z) + c"))
    (c,) = fixed.solution.values()
    assert c.exact and same(c.expr, -1 / sympy.sqrt(2 * pi))
    assert fixed.conditions == ("E[f(z)] = 0",)


def test_numeric_fixed_point() -> None:
    (lam,) = v.fixed_point(v.activation("lam*tanh(z)")).solution.values()
    assert not lam.exact and lam.value == pytest.approx(1 / np.sqrt(0.3942944904), rel=1e-9)


@pytest.mark.parametrize("text", ["relu", "leaky_relu", "tanh", SHIFTED])
def test_derived_init_keeps_std(text: str) -> None:
    act = v.activation(text)
    derived = v.simulate(act, "derived", layers=21, width=500)
    assert 0.8 <= derived.std[-1] <= 1.25
    wild = v.simulate(act, "normal01", layers=21, width=500).std[-1]
    assert wild > 10 or wild < 0.1


def test_gain_table_mentions_empirical() -> None:
    rows = {row.name: row for row in v.gain_table()}
    assert rows["tanh"].torch.expr == sympy.Rational(5, 3)
    assert rows["tanh"].forward.value == pytest.approx(1 / np.sqrt(0.3942944904))
    assert rows["selu"].forward.value == pytest.approx(1.0, abs=1e-9)
    assert rows["relu"].forward.expr == sympy.sqrt(2) == rows["relu"].torch.expr
    assert "empirical" in rows["tanh"].note and "empirical" in rows["selu"].note


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(init, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_text() -> None:
    code, out, _ = run(SHIFTED)
    assert code == 0
    assert "1/2 - 1/(2 π)" in out and "exact" in out and "centred" in out
    assert "5/3" in out and "calculate_gain" in out
    code, out, _ = run("relu")
    assert "= 2/n " in out
    code, out, _ = run("relu(z) - 0.5")
    assert "not centred" in out and "-0.1010577196" in out
    assert "numeric" in run("tanh")[1]


def test_cli_json() -> None:
    code, out, _ = run(SHIFTED, "--format", "json")
    document = json.loads(out)
    assert code == 0
    for key in ("mean", "second_moment", "variance", "grad_second_moment"):
        quantity = document["moments"][key]
        assert set(quantity) >= {"expr", "value", "exact"} and isinstance(quantity["value"], float)
    assert document["moments"]["second_moment"]["expr"] == "1/2 - 1/(2*pi)"
    assert document["init"]["fan_in"]["exact"] is True
    tanh = json.loads(run("tanh", "--format", "json")[1])["moments"]["second_moment"]
    assert tanh["exact"] is False and tanh["value"] == pytest.approx(0.3942944904)


def test_cli_latex_fixed_point_and_simulation(tmp_path) -> None:
    assert r"\begin{align*}" in run("relu", "--format", "latex")[1]
    code, out, _ = run("selu", "--fixed-point")
    assert code == 0 and "1.050700987" in out and "1.673263242" in out
    code, out, _ = run("relu", "--simulate", "--layers", "5", "--width", "20", "--batch", "50")
    assert code == 0 and "last layer std(y) by init" in out
    plot = tmp_path / "std.png"
    pytest.importorskip("matplotlib")
    code, _, _ = run("tanh", "--plot", str(plot), "--layers", "4", "--width", "10")
    assert code == 0 and plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args",
    [["relu(z"], ["foo(z)"], ["x @ z"], ["relu(z) + c", "--simulate"], ["y"],
     ["relu", "--param", "q=1"], ["relu", "--fixed-point"], ["tanh", "--param", "oops"]],
)
def test_cli_errors_without_traceback(args: list[str]) -> None:
    code, out, err = run(*args)
    assert code == 2 and err.startswith("error:") and "Traceback" not in err + out


@pytest.mark.parametrize("activation", ["log(z)", "sqrt(z)", "log1p(z)"])
def test_an_activation_not_real_everywhere_is_refused(activation: str) -> None:
    code, _, err = run(activation)
    assert code == 2 and "not real-valued for every z" in err, err


@pytest.mark.parametrize(("activation", "moment"), [("1/z", "E[z**(-2)]"),
                                                   ("exp(z**2)", "E[exp(z**2)]")])
def test_an_activation_whose_moments_diverge_is_refused(activation: str, moment: str) -> None:
    """1/z printed E[f] = 0, E[f²] = 1.56e+34 and Var(W) = 0; exp(z²) printed Var(W) = 0
    and "nan% of Var(y)": quadrature that moves as it refines is divergence, not a number."""
    code, out, err = run(activation)
    assert code == 2 and not out
    assert f"{moment} for z ~ N(0, σ²) diverges" in err and "does not exist" in err


@pytest.mark.parametrize(("activation", "slope"), [
    ("tanh(10 * (z - 0.5))", "4.688539278"), ("sigmoid(50 * (z - 1))", "2.016422544"),
    ("softplus(20 * (z - 1)) / 20", "0.1475463785")])
def test_a_steep_bounded_activation_is_not_mistaken_for_a_divergent_one(activation: str,
                                                                         slope: str) -> None:
    """E[f′(z)²] as SciPy's quad gives it, split at the steep part."""
    code, out, err = run(activation)
    assert code == 0, err
    assert re.search(rf"E\[f′\(z\)²\] +={' +'}{slope} +numeric", out), out


def test_a_kink_inside_a_product_has_no_point_mass() -> None:
    """d(sign(z) z)/dz = sign(z) + 2 z δ(z): the δ weighs nothing, E[f′²] = 1 as for |z|."""
    code, out, _ = run("sign(z) * z")
    assert code == 0, out
    assert re.search(r"E\[f′\(z\)²\]\s+= 1 ", out), out


def test_a_misspelt_activation_is_named_with_a_suggestion() -> None:
    """`init rleu` read the typo as a parameter: "the activation does not depend on z"."""
    from matcalc.errors import MatcalcError
    with pytest.raises(MatcalcError, match="`rleu` is not an activation matcalc knows. Did you "
                                           "mean `relu`"):
        v.activation("rleu")
    with pytest.raises(MatcalcError, match="does not depend on z"):
        v.activation("a * 2")
