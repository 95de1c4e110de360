"""matcalc train and its module: learning with generated code, data mapping, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from matcalc.applications.training import Data, train
from matcalc.cli import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MLP = str(EXAMPLES / "mlp.mc")
MLP_WRT = ["--wrt", "W1", "--wrt", "b1", "--wrt", "W2", "--wrt", "b2"]
LINE = "x: [N]; y: [N]; m: []; b: []; E = mean((y - (m * x + b)) ** 2)"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_digits_mlp_learns() -> None:
    pytest.importorskip("sklearn")
    history = train(MLP, ["W1", "b1", "W2", "b2"], "digits", epochs=4)
    assert [s.epoch for s in history.epochs] == [0, 1, 2, 3, 4]
    assert history.final.accuracy > 0.9
    assert history.final.train_loss < history.epochs[1].train_loss
    assert history.params["W1"].shape == (64, 64) and history.params["b2"].shape == (10,)
    assert np.isclose(history.params["W1"].var(), 1 / 64, rtol=0.5)  # moved from 1/64 a little


def test_cli_prints_epochs_and_final_line() -> None:
    pytest.importorskip("sklearn")
    result = run("train", MLP, *MLP_WRT, "--epochs", "2", "--hidden", "H=16")
    assert result.exit_code == 0, result.output
    assert "H = 16 (--hidden)" in result.output and "test acc" in result.output
    assert "W2: normal, Var = 0.125 (derived" in result.output  # 2/16 after a ReLU
    assert result.output.splitlines()[-1].startswith("final: test accuracy ")


def test_npz_regression_and_constants(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(500, 3))
    path = tmp_path / "linear.npz"
    np.savez(path, inp=inputs, out=inputs @ [1.0, -2.0, 0.5] + 3.0, lam=0.0)
    program = "inp: [N, D]; out: [N]; w: [D]; b: []; lam: []\n" \
              "E = mean((inp @ w + b - out) ** 2) + lam * w @ w"
    history = train(program, ["w", "b"], str(path), x="inp", y="out", epochs=30)
    assert history.final.accuracy is None and history.final.test_loss < 1e-6
    assert np.allclose(history.params["w"], [1.0, -2.0, 0.5], atol=1e-3)


def test_a_symmetric_parameter_starts_and_stays_symmetric(tmp_path: Path) -> None:
    """A quadratic form xᵀ S x with S declared symmetric is fitted: S is drawn symmetric and
    every step keeps it so (the generated code checks the declaration)."""
    rng = np.random.default_rng(2)
    inputs = rng.normal(size=(400, 3))
    target = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -1.0], [0.0, -1.0, 3.0]])
    path = tmp_path / "quadratic.npz"
    np.savez(path, X=inputs, Y=np.einsum("ni,ij,nj->n", inputs, target, inputs)[:, None])
    program = "X: [N, D]; Y: [N, 1]; S: [D, D] symmetric\n" \
              "L = mse(sum((X @ S) * X, axis=1, keepdims=True), Y)"
    history = train(program, ["S"], str(path), epochs=60, lr=0.02)
    fitted = history.params["S"]
    assert np.array_equal(fitted, fitted.T)
    assert np.allclose(fitted, target, atol=1e-2), fitted


def test_the_batch_cannot_size_another_axis(tmp_path: Path) -> None:
    path = tmp_path / "square.npz"
    np.savez(path, X=np.eye(4), Y=np.ones((4, 1)))
    result = run("train", "X: [N, N] symmetric; Y: [N, 1]; w: [N, 1]; L = mse(X @ w, Y)",
                 "--wrt", "w", "--data", str(path))
    assert result.exit_code == 2
    assert "`N` is the batch, the rows of `X` and `Y`, but `X: [N, N]` uses it" in result.output


def test_blobs_line_fit() -> None:
    pytest.importorskip("sklearn")
    result = run("train", LINE, "--wrt", "m", "--wrt", "b", "--x", "x", "--y", "y",
                 "--data", "blobs", "--epochs", "40", "--lr", "0.05")
    assert result.exit_code == 0, result.output
    assert "m: zeros" in result.output
    assert float(result.output.split("test loss ")[-1].split()[0]) < 0.2


def test_train_on_data_object_without_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    inputs = np.eye(3)[labels] * 2 + rng.normal(scale=0.3, size=(300, 3))
    history = train(MLP, ["W1", "b1", "W2", "b2"], Data("toy", inputs, np.eye(3)[labels]),
                    epochs=5, hidden={"H": 8})
    assert history.sizes["H"] == (8, "--hidden") and history.final.accuracy > 0.95


@pytest.mark.parametrize("args, message", [
    (("--x", "inp"), "--x inp: the program declares no variable `inp`"),
    (("--y", "W1"), "`W1` is data (--y); it cannot also be trained (--wrt)"),
    (("--hidden", "D=3"), "--hidden D: `D` is set by the data (from X)"),
    (("--hidden", "Q=3"), "--hidden Q: `Q` is not a size of the program"),
    (("--hidden", "H=0"), "--hidden expects NAME=SIZE, got `H=0`"),
    (("--data", "digts"), "unknown data `digts`. Did you mean `digits`?"),
    (("--data", "missing.npz"), "cannot read missing.npz"),
    (("--data", "blobs"), "`Y` is the target of softmax_cross_entropy, so its rows must be"),
])
def test_bad_mapping_exits_2(args: tuple[str, ...], message: str) -> None:
    pytest.importorskip("sklearn")
    result = run("train", MLP, *MLP_WRT, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_missing_arrays_and_batchless_programs_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    np.savez(path, x=np.ones((10, 3)), y=np.eye(2)[np.arange(10) % 2])
    result = run("train", MLP, "--wrt", "W1", "--wrt", "b1", "--wrt", "W2", "--data", str(path))
    assert result.exit_code == 2
    assert "has no array `X`" in result.output
    result = run("train", MLP, "--wrt", "W1", "--wrt", "b1", "--wrt", "W2", "--data", str(path),
                 "--x", "x", "--y", "y")
    assert "--x x: the program declares no variable `x`" in result.output
    result = run("train", str(EXAMPLES / "one_layer.mc"), "--wrt", "W", "--wrt", "b1", "--wrt",
                 "U", "--wrt", "b2", "--x", "x", "--y", "y", "--data", str(path))
    assert result.exit_code == 2
    assert "`x` and `y` need the batch as their first dimension" in result.output


def test_undeclared_data_variable_names_its_fixes(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, X=np.ones((10, 3)), Y=np.eye(2)[np.arange(10) % 2])
    result = run("train", MLP, "--wrt", "W1", "--wrt", "b1", "--wrt", "W2", "--data", str(path))
    assert result.exit_code == 2
    assert "`b2` is declared but is neither trained nor data" in result.output
    assert "--wrt b2" in result.output and "--set b2=VALUE" in result.output


def test_diverging_run_exits_2() -> None:
    pytest.importorskip("sklearn")
    result = run("train", LINE, "--wrt", "m", "--wrt", "b", "--x", "x", "--y", "y",
                 "--data", "blobs", "--lr", "50", "--epochs", "20")
    assert result.exit_code == 2
    assert "diverged" in result.output and "--lr" in result.output


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    target = tmp_path / "history.png"
    result = run("train", MLP, *MLP_WRT, "--epochs", "2", "--plot", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_transformer_trains_on_the_sort_task_with_adam() -> None:
    """--data sort feeds token ids and next-token labels; every non-data variable is trained
    by default; AdamW lowers the loss; the header says what accuracy counts."""
    result = run("train", str(EXAMPLES / "transformer.mc"), "--data", "sort", "--optimizer",
                 "adam", "--lr", "0.003", "--epochs", "3", "--hidden", "h=2", "--hidden", "k=4")
    assert result.exit_code == 0, result.output
    assert "T = 11 (from tokens)" in result.output and "V = 3 (the classes of y)" in result.output
    assert "E: normal, Var = 1 (an embedding table)" in result.output
    assert "g1: ones (the gain of a normalisation)" in result.output
    assert "5/11·ln 3 = 0.4994" in result.output
    losses = [float(line.split()[2]) for line in result.output.splitlines()
              if line.strip()[:1].isdigit() and len(line.split()) == 4]
    assert losses[-1] < losses[0]


def test_optimizer_and_weight_decay_are_checked() -> None:
    result = run("train", MLP, "--optimizer", "lbfgs")
    assert result.exit_code == 2 and "lbfgs" in result.output
    result = run("train", MLP, "--weight-decay", "-1")
    assert result.exit_code == 2 and "at least 0" in result.output


LOGISTIC = ("X: [N, D]; y: [N]; w: [D]; lam: []\np = sigmoid(X @ w)\n"
            "L = -mean(y * log(p) + (1 - y) * log(1 - p)) + lam / 2 * sum(w ** 2)")


def test_newton_converges_on_the_digits_binary_task_within_15_steps() -> None:
    """Damped Newton with the generated Hessian: the L2-regularised logistic regression on the
    digits, 5–9 against 0–4, reaches a gradient norm below 1e-10 in at most 15 steps."""
    pytest.importorskip("sklearn")
    history = train(LOGISTIC, ["w"], "digits", y="y", epochs=15, optimizer="newton",
                    constants={"lam": 0.01})
    assert history.gradient_norm < 1e-10
    first = next(s.epoch for s in history.epochs if s.gradient_norm is not None
                 and s.gradient_norm < 1e-10)
    assert first <= 15


def test_newton_by_conjugate_gradients_for_several_parameters() -> None:
    """Two parameters (W and b): Hessian-vector products and conjugate gradients."""
    pytest.importorskip("sklearn")
    source = ("X: [N, D]; Y: [N, C] onehot; W: [D, C]; b: [C]; lam: []\n"
              "L = softmax_cross_entropy(X @ W + b, Y) + lam / 2 * sum(W ** 2)")
    history = train(source, ["W", "b"], "digits", epochs=14, optimizer="newton",
                    constants={"lam": 0.01})
    assert history.gradient_norm < 1e-8 and history.final.accuracy > 0.95
