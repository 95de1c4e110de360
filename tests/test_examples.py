"""Every runnable example in examples/ exits 0 (each asserts what it shows)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


def test_every_seed_example_is_here() -> None:
    names = {path.stem for path in EXAMPLES}
    assert {"lesson8_backprop", "prelu", "one_layer_network", "line_fit", "legendre_torch",
            "l2_regularised", "shifted_relu_init", "train_digits"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs(path: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip()
