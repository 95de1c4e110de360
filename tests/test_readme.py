"""The README's examples are what the tool prints."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from matcalc.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_readme_starts_with_the_two_set_up_commands() -> None:
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert first_block[0].startswith("pip install -e . && matcalc derive examples/mlp.mc")
    assert first_block[1] == "pip install -e '.[test]' && ruff check . && python -m pytest -q"
    assert "pip install -e '.[test]' && ruff check . && python -m pytest -q" in (
        ROOT / ".ci" / "run").read_text()


def test_readme_derive_example_is_the_real_output() -> None:
    shown = README.split("$ matcalc derive examples/mlp.mc --wrt W1 --wrt b1\n", 1)[1]
    shown = shown.split("```", 1)[0].strip().splitlines()
    output = run("derive", str(ROOT / "examples" / "mlp.mc"), "--wrt", "W1", "--wrt", "b1")
    assert output.splitlines()[:2] == shown


def test_readme_steps_excerpt_is_the_real_output() -> None:
    excerpt = README.split("(fastai's `out.g`):\n\n```\n", 1)[1].split("```", 1)[0]
    output = run("derive", str(ROOT / "examples" / "mlp.mc"), "--wrt", "W1", "--wrt", "b1",
                 "--steps")
    assert excerpt.strip() in output
