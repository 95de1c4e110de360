"""Start-up time: ``import matcalc`` and a whole ``matcalc derive`` process, median of repeated
runs of a fresh interpreter (what a user waits for at the command line). Goals: ``import
matcalc`` ≤ 0.15 s; ``matcalc derive examples/mlp.mc --wrt W1`` ≤ 0.25 s. The largest imports
are listed (``python -X importtime``). Run with ``python benchmarks/startup.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7
COMMANDS = {
    "import matcalc": [sys.executable, "-c", "import matcalc"],
    "matcalc derive examples/mlp.mc --wrt W1": [
        sys.executable, "-c", "from matcalc.cli import main; main()", "derive",
        str(ROOT / "examples" / "mlp.mc"), "--wrt", "W1"],
}


def median_seconds(command: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def largest_imports(count: int = 8) -> list[tuple[int, str]]:
    """The packages whose imports take longest in a derive, cumulative microseconds."""
    python, *rest = COMMANDS["matcalc derive examples/mlp.mc --wrt W1"]
    result = subprocess.run([python, "-X", "importtime", *rest], capture_output=True, text=True,
                            check=True)
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        name = parts[-1].strip()
        if len(parts) == 3 and parts[1].strip().isdigit() and "." not in name:
            rows.append((int(parts[1]), name))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    for label, command in COMMANDS.items():
        print(f"{label:<45} {median_seconds(command):6.3f} s (median of {RUNS})")
    print("largest top-level imports in that derive:")
    for micros, name in largest_imports():
        print(f"  {name:<30} {micros / 1e6:6.3f} s")


if __name__ == "__main__":
    main()
