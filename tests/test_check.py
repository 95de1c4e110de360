"""`matcalc check`, `matcalc codegen` and the test-suite API of matcalc.proofs.testing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from matcalc import lambdify
from matcalc.cli import cli  # registers codegen and check
from matcalc.errors import MatcalcError
from matcalc.proofs.testing import assert_backward, check_gradient, precise_text

EXAMPLES = Path(__file__).parent.parent / "examples"
MLP = str(EXAMPLES / "mlp.mc")
LIN_RELU_MSE = (EXAMPLES / "lin_relu_mse.mc").read_text()
PRELU = "X: [N, H]; a: [H, H]; Y = relu(X) - relu(-X) @ a"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_check_passes_with_a_line_per_variable() -> None:
    result = run("check", MLP, "--wrt", "W1", "--wrt", "b2", "--dims", "N=8,D=5,H=4,C=3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "N=8, D=5, C=3, H=4" in lines[0]
    assert lines[1].startswith("W1") and lines[1].endswith("PASS") and "max abs error" in lines[1]
    assert lines[2].startswith("b2") and "max rel error" in lines[2]
    assert lines[-1].startswith("PASS")


def test_repeated_dims_options_add_up() -> None:
    result = run("check", MLP, "--wrt", "b2", "--dims", "N=8,D=5", "--dims", "H=4", "--dims", "C=3")
    assert result.exit_code == 0, result.output
    assert "N=8, D=5, C=3, H=4" in result.output.splitlines()[0]
    twice = run("check", MLP, "--wrt", "b2", "--dims", "N=8", "--dims", "N=9")
    assert twice.exit_code != 0 and "gives `N` twice" in twice.output


def test_check_fails_on_a_wrong_gradient(monkeypatch) -> None:
    real = check_gradient

    def with_a_bug(source, wrt, *args, **kwargs):
        derived = lambdify(source, wrt).value_and_grad

        def wrong(**arrays):
            value, grads = derived(**arrays)
            return value, {**grads, "b1": grads["b1"] * 1.01}

        return real(source, wrt, *args, gradients=wrong, **kwargs)

    monkeypatch.setattr("matcalc.cli.codegen.check_gradient", with_a_bug)
    result = run("check", MLP, "--wrt", "W1", "--wrt", "b1")
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output.splitlines()[2] and "PASS" in result.output.splitlines()[1]
    assert result.output.splitlines()[-1] == "FAIL: 1 of 2 gradients disagree"


def test_check_draws_where_the_function_is_defined() -> None:
    source = "A: [n, n]; x: [n]; logdet(A) + sum(log(x)) + sum(sqrt(x)) + trace(inv(A))"
    report = check_gradient(source, ["A", "x"], seed=3)
    assert report.passed, report.text()


def test_check_draws_sizes_where_the_function_is_defined() -> None:
    """logdet(Xᵀ X) is not defined for fewer rows than columns: those sizes are drawn again,
    not reported as a FAIL."""
    for seed in range(4):
        report = check_gradient("X: [n, p]; f = logdet(X.T @ X)", ["X"], seed=seed)
        assert report.passed, report.text()
        assert all(d["n"] >= d["p"] for d in report.draws)


@pytest.mark.parametrize("source", ["x: [n, 1]; f = x.T @ x",
                                    "x: [n]; f = sum(x * x, keepdims=True)",
                                    "x: [n, 1]; A: [n, n]; f = x.T @ A @ x"])
def test_check_passes_the_gradient_of_a_one_entry_function(source: str) -> None:
    """f of shape [1, 1] or [1] is differentiated as its entry; the differences were compared
    as [1, 1] arrays against scalars (a FAIL for a right gradient)."""
    result = run("check", source, "--wrt", "x")
    assert result.exit_code == 0, result.output
    assert "max rel error" in result.output and result.output.endswith("differences\n")


def test_check_uses_random_directions_for_large_variables() -> None:
    report = check_gradient("A: [n, m]; b: [m]; sum(tanh(A @ b))", ["A"],
                            dims={"n": 101, "m": 100}, draws=1)
    assert report.passed and "20 directions" in report.text()


def test_check_rejects_unknown_dims() -> None:
    result = run("check", MLP, "--wrt", "W1", "--dims", "Q=3")
    assert result.exit_code == 2 and "Q" in result.output


def test_codegen_prints_and_writes(tmp_path: Path) -> None:
    printed = run("codegen", MLP, "--wrt", "W1", "--wrt", "b1")
    assert printed.exit_code == 0 and "def value_and_grad(X, Y, W1, b1, W2, b2):" in printed.output
    target = tmp_path / "mlp_grad.py"
    written = run("codegen", MLP, "--wrt", "W1", "--target", "torch", "-o", str(target))
    assert written.exit_code == 0
    assert "class LFunction(torch.autograd.Function):" in target.read_text()


def test_codegen_reports_user_errors() -> None:
    result = run("codegen", MLP, "--wrt", "W9")
    assert result.exit_code == 2 and "W9" in result.output


# ----------------------------------------------------------------------------------------------
# assert_backward on the seeds' hand-written backward functions


def prelu_backward_numpy(X, a, grad_output):
    """The forum's PReLU backward, in NumPy."""
    return {"X": (X > 0) * grad_output + grad_output @ a.T * (X < 0),
            "a": ((X <= 0) * X).T @ grad_output}


def test_assert_backward_accepts_the_prelu_backward() -> None:
    assert_backward(prelu_backward_numpy, PRELU, wrt=["X", "a"])


def test_assert_backward_catches_a_wrong_backward() -> None:
    def forgets_the_slope(X, a, grad_output):
        return {"X": (X > 0) * grad_output, "a": ((X <= 0) * X).T @ grad_output}

    with pytest.raises(AssertionError, match="∂/∂X"):
        assert_backward(forgets_the_slope, PRELU, wrt=["X", "a"])


def test_fastai_lesson_8_backward_with_torch() -> None:
    torch = pytest.importorskip("torch")

    def mse_grad(inp, targ):
        inp.g = 2. * (inp.squeeze() - targ).unsqueeze(-1) / inp.shape[0]

    def lin_grad(inp, out, w, b):
        inp.g = out.g @ w.t()
        w.g = inp.t() @ out.g
        b.g = out.g.sum(0)

    def relu_grad(inp, out):
        inp.g = (inp > 0).float() * out.g

    def backward(inp, targ, w1, b1, w2, b2):
        inp, targ, w1, b1, w2, b2 = map(torch.from_numpy, (inp, targ, w1, b1, w2, b2))
        l1 = inp @ w1 + b1
        l2 = l1.clamp_min(0.)
        out = l2 @ w2 + b2
        mse_grad(out, targ.squeeze(-1))
        lin_grad(l2, out, w2, b2)
        relu_grad(l1, l2)
        lin_grad(inp, l1, w1, b1)
        return [t.g.numpy() for t in (inp, w1, b1, w2, b2)]

    assert_backward(backward, LIN_RELU_MSE, wrt=["inp", "w1", "b1", "w2", "b2"])


def test_prelu_backward_with_torch() -> None:
    torch = pytest.importorskip("torch")

    def bwd(X, a, grad_output):
        inp, a, out_g = map(torch.from_numpy, (X, a, grad_output))
        inp_g = (inp > 0).float() * out_g + out_g @ a.t() * (inp < 0).float()
        a_g = ((inp <= 0).float() * inp).t() @ out_g
        return inp_g.numpy(), a_g.numpy()

    assert_backward(bwd, PRELU, wrt=["X", "a"])
    report = check_gradient(PRELU, ["X", "a"])
    assert report.passed and all(v.abs_error < 1e-7 for v in report.variables)


def test_check_also_proves_the_jacobians_derive_prints() -> None:
    from matcalc.proofs.testing import check_gradient, printed_jacobians

    report = check_gradient("x: [n]; W: [m, n]; tanh(W @ x)", ["x", "W"], {"n": 3, "m": 2})
    names = [v.name for v in report.variables]
    assert names == ["x", "W", "∂f/∂x", "∂vec(f)/∂vec(W)"] and report.passed
    (wrong,) = printed_jacobians("x: [n]; W: [m, n]; tanh(W @ x)", ["x"], ())
    wrong.evaluate = lambda **arrays: (arrays["W"],)      # forgets diag(1 − tanh²)
    rng = np.random.default_rng(0)
    wrong.record({"x": rng.normal(size=3), "W": rng.normal(size=(2, 3))}, 1e-5)
    assert not wrong.check.passed and wrong.check.abs_error > 1e-3


def test_a_function_nowhere_differentiable_where_drawn_is_refused_not_failed() -> None:
    """The root of a relu that is 0 at every draw (inputs are drawn positive for the sqrt)
    has no finite derived gradient there, at any sizes: a clear refusal, not a FAIL with a
    zero error."""
    from matcalc.errors import MatcalcError
    from matcalc.testing import check_gradient

    source = "X: [N, D]; W: [D, H]; sqrt(sum(relu(-X @ W)))"
    with pytest.raises(MatcalcError, match="could not draw inputs where every gradient is finite"):
        check_gradient(source, ["W"])


def test_a_large_term_the_variable_does_not_touch_is_not_a_false_fail() -> None:
    """1e7 ⋅ sum(y²) makes the central differences of L uncertain by about 1e-3 in x: the
    check allows the differences' own rounding, and still fails a wrong gradient."""
    from matcalc.proofs.testing import check_gradient
    source = "x: [n]; y: [n]\nL = 1e7 * sum(y ** 2) + sum(sin(x))"
    assert check_gradient(source, ["x"]).passed
    wrong = check_gradient(source, ["x"], gradients=lambda **a: (0.0, {"x": 1.1 * np.cos(a["x"])}))
    assert not wrong.passed


@pytest.mark.parametrize("seed", ["0", "1", "2", "3"])
def test_a_text_that_loses_precision_does_not_fail_a_right_gradient(seed: str) -> None:
    """log(1 − σ(30 x)) rounds in float64 (1 − σ(30) is 1e-13): its differences were wrong by
    up to 100%, a false FAIL of a right gradient (a VAE's Bernoulli likelihood too). Inputs
    where the text keeps its precision are preferred, else it is differenced in long double."""
    for source in ("x: [n]\nf = sum(log(1 - sigmoid(30 * x)))", "x: [n]\nlog(1 - sigmoid(30 * x))"):
        result = run("check", source, "--wrt", "x", "--seed", seed)
        assert result.exit_code == 0, result.output


def test_lost_precision_is_found_in_the_text_alone() -> None:
    """The text is differenced in long double where its float64 value moves there: matcalc's
    own value never stands in for it (a value and gradient wrong alike would pass)."""
    def text(x):
        return np.sum(np.log(1 - 1 / (1 + np.exp(-30 * x))))

    f, lost = precise_text(text, {"x": np.array([1.0, 1.1, 0.2])})
    assert lost > 1e-8 and f is not text and np.asarray(f(x=np.array([1.0]))).dtype == np.longdouble
    assert precise_text(text, {"x": np.array([0.01, -0.02])}) == (text, 0.0)


TINY = "x: [n]; f = 1e-7 * sum(x ** 2)"
TINY_MEAN = "X: [N, D]; w: [D]; y: [N]; L = 1e-8 * mean((X @ w - y) ** 2)"


def tiny_mean_flipped(X, w, y):
    return -2e-8 * X.T @ (X @ w - y) / X.shape[0]


@pytest.mark.parametrize(("source", "wrong"), [
    (TINY, lambda x: np.zeros_like(x)),
    (TINY_MEAN, tiny_mean_flipped),
])
def test_a_wrong_gradient_of_a_function_of_small_scale_fails(source, wrong) -> None:
    """The tolerance was rtol · max(1, largest entry): any error below 1e-6 passed, a gradient
    of 1e-7 sum(x²) returned as 0 or with its sign flipped too. It is relative now, plus the
    rounding of the difference (or of the backward pass's own precision)."""
    wrt = ["x"] if source == TINY else ["w"]
    with pytest.raises(AssertionError, match="largest entry is"):
        assert_backward(wrong, source, wrt=wrt)
    report = check_gradient(source, wrt, gradients=lambda **a: (None, {wrt[0]: wrong(**a)}))
    assert not report.passed
    assert check_gradient(source, wrt).passed
    assert_backward(lambda **a: lambdify(source, wrt).value_and_grad(**a)[1], source, wrt)


def test_a_float32_backward_pass_is_checked_to_its_own_precision() -> None:
    source = "x: [n]; f = sum(x ** 3)"
    assert_backward(lambda x: (3 * x ** 2).astype(np.float32), source, ["x"], rtol=1e-5)
    with pytest.raises(AssertionError):
        assert_backward(lambda x: (3.001 * x ** 2).astype(np.float32), source, ["x"],
                        rtol=1e-5)


def test_an_unconstrained_gradient_of_a_symmetric_variable_fails_both_helpers() -> None:
    """(G + Gᵀ)/2 is the gradient among symmetric matrices; G itself passed check_gradient
    (its directions, all symmetric, cannot tell them apart)."""
    source = "S: [n, n] symmetric; x: [n]; y: [n]; f = x @ S @ y"
    report = check_gradient(source, ["S"], gradients=lambda S, x, y: (None, {"S": np.outer(x, y)}))
    assert not report.passed
    with pytest.raises(AssertionError):
        assert_backward(lambda S, x, y: np.outer(x, y), source, ["S"])
    assert_backward(lambda S, x, y: (np.outer(x, y) + np.outer(y, x)) / 2, source, ["S"])


def test_assert_backward_refuses_a_size_the_program_does_not_have() -> None:
    source = "X: [N, D]; W: [D, H]; b: [H]; Y = X @ W + b"
    with pytest.raises(MatcalcError, match="names n, not sizes of the program"):
        assert_backward(lambda X, W, b, grad_output: {"b": grad_output.sum(0)}, source, ["b"],
                        dims={"n": 1})


def test_one_name_is_a_name_not_its_characters() -> None:
    """derive(source, "W1") read the letters W and 1; hessian wanted a string, the others a
    list; emit="hessian" was split into letters too."""
    import matcalc
    source = "W1: [n]; sum(exp(W1))"
    assert matcalc.derive(source, "W1").text() == matcalc.derive(source, ["W1"]).text()
    assert matcalc.hessian(source, ["W1"]).text() == matcalc.hessian(source, "W1").text()
    assert lambdify(source, "W1", emit="hessian").__all__ == ["value", "hessian"]
    assert check_gradient(source, "W1").passed
    with pytest.raises(MatcalcError, match="hessian takes one variable, not 2"):
        matcalc.hessian("x: [n]; y: [n]; sum(exp(x * y))", ["x", "y"])
