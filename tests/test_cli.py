"""The command line: outputs, bad input (exit 2, one paragraph, no traceback), hostile input."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from matcalc.cli import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_derive_example_with_steps() -> None:
    result = run("derive", str(EXAMPLES / "mlp.mc"), "--wrt", "W1", "--steps")
    assert result.exit_code == 0, result.output
    assert "δ3 = ∂L/∂Z1 = δ2 ⊙ 1[Z1 > 0]" in result.output
    assert "∂L/∂W1 = Xᵀ δ3" in result.output and "[D, H]" in result.output


def test_derive_program_text_with_var_declarations() -> None:
    result = run("derive", "x @ A @ x", "--var", "x: [n]", "--var", "A: [n, n]", "--wrt", "x")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "∂f/∂x = (A + Aᵀ) x   [n]"


def test_a_variable_named_twice_is_derived_once_and_a_hessian_needs_a_scalar() -> None:
    result = run("derive", "x: [n]; f = sum(x ** 2)", "--wrt", "x", "--wrt", "x,x")
    assert result.exit_code == 0 and result.output.strip() == "∂f/∂x = 2 x   [n]"
    result = run("hessian", "x: [n]; f = 2 * x", "--wrt", "x")
    assert result.exit_code == 2 and "a Hessian needs a scalar function" in result.output


def test_the_program_can_come_from_standard_input_or_a_pipe(tmp_path: Path) -> None:
    """`-` reads standard input; a pipe's path (a shell's <(…) is /dev/fd/63) is read as a file,
    not taken for program text."""
    program = "x: [n]\nf = sum(x ** 3)"
    result = CliRunner().invoke(cli, ["derive", "-", "--wrt", "x"], input=program)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "∂f/∂x = 3 x²   [n]"
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    writer = threading.Thread(target=pipe.write_text, args=(program,))
    writer.start()
    result = run("derive", str(pipe), "--wrt", "x")
    writer.join()
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "∂f/∂x = 3 x²   [n]"


@pytest.mark.parametrize("fmt", ["latex", "numpy", "json"])
def test_derive_formats(fmt: str) -> None:
    result = run("derive", str(EXAMPLES / "quadratic_form.mc"), "--wrt", "x", "--format", fmt)
    assert result.exit_code == 0
    if fmt == "json":
        assert json.loads(result.output)[0]["text"] == "(A + Aᵀ) x"
    elif fmt == "numpy":
        assert "grad_x = (A + A.T) @ x" in result.output
    else:
        assert r"\left(A + A^{\top}\right) x" in result.output


def test_json_steps_define_the_error_signals_the_gradients_read() -> None:
    result = run("derive", str(EXAMPLES / "mlp.mc"), "--wrt", "W1", "--steps", "--format",
                 "json")
    (entry,) = json.loads(result.stdout)
    assert entry["text"] == "Xᵀ δ3"
    assert [(s["name"], s["of"], s["text"], s["shape"]) for s in entry["signals"]] == [
        ("δ1", "Z2", "(softmax(Z2) − Y) / N", ["N", "C"]), ("δ2", "H1", "δ1 W2ᵀ", ["N", "H"]),
        ("δ3", "Z1", "δ2 ⊙ 1[Z1 > 0]", ["N", "H"])]


def test_latex_steps_paste_into_a_document_as_one_aligned_block() -> None:
    """Several equations come in an align* environment, their first = aligned; a quotient's
    numerator needs no parentheses inside \\frac."""
    result = run("derive", str(EXAMPLES / "mlp.mc"), "--wrt", "W1", "--steps", "--format",
                 "latex")
    lines = result.output.splitlines()
    assert result.exit_code == 0 and lines[0] == r"\begin{align*}"
    assert lines[1] == (r"\delta_{1} &= \frac{\partial L}{\partial Z_{2}} = "
                        r"\frac{\operatorname{softmax}\left(Z_{2}\right) - Y}{N} \\")
    assert lines[4] == r"\frac{\partial L}{\partial W_{1}} &= X^{\top} \delta_{3}"
    assert lines[5] == r"\end{align*}"


BAD = [
    ("u: []; f = atan(u)", "u", "the inverse tangent is `arctan(x)`, as NumPy names it", 11),
    ("x: [n]; sum(x) / n", "n", "`n` is a size of the program (a whole number), not a variable",
     None),
    ("A: [B, n, n]; sum(trace(A))", "A",
     "the traces of a stack are sum(sum(A * eye(n), axis=-1), axis=-1)", 18),
    ("a: [n]; b: [n]; sum(max(a, b))", "a",
     "the elementwise maximum of two arrays is `maximum(a, b)`", 27),
    ("W: [n, m]; x: [k]; sum(W @ x)", "W",
     "W @ x: [n, m] and [k] do not align (m ≠ k)", 25),
    ("x: [n]; sum(exq(x))", "x", "`exq` is not a function of matcalc. Did you mean `exp`?", 12),
    ("x: [n]; sum(x + y)", "x", "`y` is not declared.", 16),
    ("x: [n]; sum(x +", "x", "expected an expression", None),
    ("x: [n]; x @ x", "z", "`z` is not a variable", None),
    ("X: [n, n]; X @ X", "Y", "`Y` is not a variable or intermediate", None),
    ("x: [n]; y: [m]; sum(x + y)", "x", "[n] and [m] do not broadcast (m ≠ n)", None),
    ("x: [n, n, n, n, n, n, n, n, n]; sum(x)", "x", "matcalc takes at most 8 axes", None),
    ("x: [n]; sum(softmax(x, axis=2))", "x", "axis 2 is out of range", None),
    ("x: [n]; x ** 2 ** 100000", "x", "too large", None),
    ('X: [n, m]; norm(X, "frob")', "X", 'must be one of None, 1, 2, inf, -inf, -1, "fro", "nuc". '
     "Did you mean `fro`?", 19),
    ('x: [n]; norm(x, "nuc")', "x", 'ord "nuc" is a matrix norm', 8),
    ("x: [n]; sum(gelu(x, approximate=tanh))", "x", '`approximate` must be one of "none", '
     '"tanh"', 32),
    ('x: [n]; sum(x * "x")', "x", '"x" is a quoted word: it can only be an option', 16),
    ("X: [n, n]; slogdet(X)", "X", "matcalc's `logdet(A)` is log|det A|", 11),
    ("X: [n, m]; sum(eigvalsh(X))", "X", "eigvalsh needs a square matrix, got [n, m]", 15),
    ("x: [n]; sum(pinv(x))", "x", "pinv needs a matrix, got a vector", 12),
    ("x: [n]; sum(concatenate([x, x], axis=None))", "x", "flattens its arrays", 12),
    ("x: []; norm(x, 1)", "x", "the norm of a scalar is its absolute value", 7),
    ("x: [n]; sum(concatenate([]))", "x", "an empty list", 24),
    ("x: [n]; y: [m]; sum(vstack([x, y]))", "x", "vstack stacks vectors as rows", 20),
    ("x: [n]; sum(clip(x, 0, None))", "x", "`hi` must be an array or a number, not None", 23),
    ("X: [n, m]; sum(norm(X, axis=(0, 1)))", "X", "tuples are not part of", 30),
    ("x: [n]; np.linalg.norm(x)", "x", "attribute access is not part of matcalc", 11),
    ('Q: [b, t]; K: [b, t]; sum(einsum("bt,bt->bx", Q, K))', "Q",
     "the output `bx` names `x`, which no input has", 26),
    ("X: [B, d]; sum(reshape(X, [B, h, k]))", "X",
     "`h` is not the name of a size in any declaration", 30),
    ("X: [B, d]; sum(reshape(X, [B, -1]))", "X", "-1 (a size to infer) is not taken", 30),
    ("A: [B, n, n]; sum(logdet(A))", "A", "a stack of square matrices, which logdet does not "
     "take", 18),
    ("E: [V, d]; y: [B] labels; sum(take(E, y, axis=1))", "E", "`axis` can only be 0", 46),
    ("S: [T, T]; m: [T, T]; sum(where(m, S, 0))", "S", "for a 0/1 array m, write `m > 0`", 26),
]


@pytest.mark.parametrize(("source", "wrt", "message", "column"), BAD, ids=[b[2][:30] for b in BAD])
def test_bad_input_is_one_paragraph_exit_2(source: str, wrt: str, message: str,
                                           column: int | None) -> None:
    result = run("derive", source, "--wrt", wrt)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert message in result.output
    if column is not None:
        lines = result.output.splitlines()
        source_line = next(i for i, line in enumerate(lines) if "| " in line)
        prefix = lines[source_line].index("| ") + 2
        assert lines[source_line + 1].index("^") - prefix == column


def test_undeclared_name_suggests_a_declaration() -> None:
    result = run("derive", "W: [n, m]; sum(W @ v)", "--wrt", "W")
    assert "Declare it first, e.g. `v: [n, m]`" in result.output
    assert "--var 'v: [n]'" in result.output


HOSTILE = [
    "__import__('os').system('touch {marker}')",
    "x: [n]; x.__class__.__bases__",
    "lambda: __import__('os').system('touch {marker}')",
    "x: [n]; sum(x) if open('{marker}', 'w') else 0",
    "x: [n]; exec(\"open('{marker}', 'w')\")",
    "x: [n]; " + "(" * 5000 + "x" + ")" * 5000,
    "x: [n]; sum(" + "-" * 5000 + "x)",
    "x: [n]; sum(x ** 9999999999999999999999)",
    "x: [n]; sum(x ** 1e999999)",
    "x: [n]; sum(x[0])",
]


@pytest.mark.parametrize("template", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_programs_run_nothing(template: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = run("derive", template.format(marker=marker), "--wrt", "x")
    assert result.exit_code in (0, 2)
    assert "Traceback" not in result.output
    assert not marker.exists()


def test_missing_example_file_is_a_user_error() -> None:
    result = run("derive", "examples/nope.mc", "--wrt", "x")
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.mark.parametrize(("source", "message"), [
    ("examples/mlp.txt", "no such file: examples/mlp.txt"),
    (str(EXAMPLES / "mlp"), f"no such file: {EXAMPLES / 'mlp'}"),
    ("examples/", "examples/ is a directory, not a .mc file")])
def test_a_path_that_is_no_file_is_named_not_parsed(source: str, message: str) -> None:
    """It read as program text: "attribute access is not part of matcalc", "unexpected `/`"."""
    result = run("derive", source, "--wrt", "x")
    assert result.exit_code == 2 and result.output.startswith(f"error: {message}\n")


def test_a_one_word_program_beside_a_folder_of_its_name_is_still_a_program() -> None:
    """`examples/mlp` would name a file; `tests/n` beside the folder tests is a division."""
    result = run("derive", "tests/n", "--var", "tests: []", "--var", "n: []", "--wrt", "tests")
    assert result.exit_code == 0 and result.output.startswith("∂f/∂tests = 1 / n")


def test_wrt_takes_a_comma_separated_list() -> None:
    listed = run("derive", str(EXAMPLES / "mlp.mc"), "--wrt", "W1,b1")
    repeated = run("derive", str(EXAMPLES / "mlp.mc"), "--wrt", "W1", "--wrt", "b1")
    assert listed.exit_code == 0, listed.output
    assert listed.output == repeated.output and "∂L/∂b1" in listed.output


def test_unknown_name_lists_a_few_known_names() -> None:
    source = "x: [n]\n" + "".join(f"h{i} = x * {i}\n" for i in range(1, 500)) + "sum(h499)"
    result = run("derive", source, "--wrt", "xx")
    assert result.exit_code == 2
    assert "Did you mean `x`? Known names: x, h1, h2," in result.output
    assert "…, h499 (500 names)." in result.output and "h300" not in result.output


def test_progress_is_a_bar_on_a_terminal_and_nothing_otherwise() -> None:
    import io

    from matcalc.cli.common import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown = Terminal()
    bar = Progress("epoch 1", shown)
    bar.update(3, 10, "loss 0.5")
    assert shown.getvalue() == "\repoch 1 [#######·················] 3/10  loss 0.5"
    bar.close()
    assert shown.getvalue().endswith("\r")
    quiet = io.StringIO()
    Progress("epoch 1", quiet).update(3, 10)
    assert quiet.getvalue() == ""


def test_derive_loads_no_other_command() -> None:
    """The other commands (code generation, checks, training, init, serve) are imported when
    run, so that derive starts sooner; help still lists them all."""
    import subprocess
    import sys
    script = ("import sys\nfrom matcalc.cli import main\nsys.argv = ['matcalc', 'derive', "
              "'x: [n]; sum(x * x)', '--wrt', 'x']\ntry:\n    main()\nexcept SystemExit:\n"
              "    pass\nprint(sorted(m for m in sys.modules if m.startswith('matcalc.cli.') or "
              "m in ('matcalc.proofs.testing', 'matcalc.applications.training')))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert run.stdout.splitlines() == ["∂f/∂x = 2 x   [n]",
                                       "['matcalc.cli.commands', 'matcalc.cli.common']"]
    listed = CliRunner().invoke(cli, ["--help"]).output
    assert all(f"  {name} " in listed for name in ("check", "codegen", "derive", "hessian",
                                                   "init", "serve", "train", "verify"))


def test_steps_in_numerator_layout_of_a_scalar_says_what_clashes() -> None:
    result = run("derive", str(EXAMPLES / "mlp.mc"), "--wrt", "W1", "--layout", "numerator",
                 "--steps")
    assert result.exit_code == 2
    assert "--steps shows backpropagation, which gives the gradient in denominator" in (
        result.output)
    assert "scalar functions" not in result.output
