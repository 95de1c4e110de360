"""The package shows its pipeline: each stage imports only the stages before it, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "matcalc"

STAGES = ["errors", "core", "language", "forms", "proofs", "applications", "cli"]
"""The order data flows in: a module may import its own stage and the ones before it."""

PUBLIC_FACES = {"matcalc": "forms", "matcalc.testing": "proofs", "matcalc.verify": "proofs",
                "matcalc.training": "applications", "matcalc.variance": "applications"}
"""The API (re-exporting forms and language) and the public faces of proofs and applications."""

ENTRY_POINTS = {("matcalc", "matcalc.cli.notebook")}
"""Imports that run only when a host calls in by name, as the console script calls
``matcalc.cli:main``: IPython's ``%load_ext matcalc`` calls ``matcalc.load_ipython_extension``,
which imports the cell magic there."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> str:
    if module in PUBLIC_FACES:
        return PUBLIC_FACES[module]
    return module.split(".")[1]


def imported(path: Path, modules: set[str]) -> set[str]:
    """The matcalc modules ``path`` imports, at any depth (function-level imports too), and
    those it reaches as attributes (``matcalc.core.ir.make``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "matcalc"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "matcalc":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
        elif isinstance(node, ast.Attribute) and dotted(node).startswith("matcalc."):
            parts = dotted(node).split(".")
            found |= {".".join(parts[:k]) for k in range(2, len(parts) + 1)} & modules
    return found


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for an attribute chain on a name, else ``""``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def escapes(path: Path) -> list[str]:
    """Imports the graph cannot see: relative imports, ``importlib`` and ``__import__``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.append(f"line {node.lineno}: a relative import")
        elif isinstance(node, ast.Name) and node.id == "__import__":
            found.append(f"line {node.lineno}: __import__")
        elif isinstance(node, ast.Import | ast.ImportFrom) and any(
                "importlib" in name for name in [getattr(node, "module", None) or "",
                                                 *(a.name for a in node.names)]):
            found.append(f"line {node.lineno}: importlib")
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: imported(p, set(paths)) - {m} for m, p in paths.items()}


def test_every_module_belongs_to_a_stage() -> None:
    for module in graph():
        assert stage(module) in STAGES, f"{module} is in no stage folder"


def test_every_import_is_one_the_graph_sees() -> None:
    hidden = [f"{p.relative_to(PACKAGE.parent)} {e}" for p in PACKAGE.rglob("*.py")
              for e in escapes(p)]
    assert not hidden, "\n".join(hidden)


def test_no_module_imports_a_later_stage() -> None:
    wrong = [f"{m} ({stage(m)}) imports {d} ({stage(d)})"
             for m, deps in graph().items() for d in deps
             if STAGES.index(stage(d)) > STAGES.index(stage(m)) and (m, d) not in ENTRY_POINTS]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    edges = graph()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(edges.get(module, ())):
            if state.get(dep) == "open":
                cycle = path[path.index(dep):] + [dep] if dep in path else [module, dep]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_the_documented_import_paths_still_work() -> None:
    import matcalc
    from matcalc.testing import assert_backward, check_gradient
    from matcalc.training import train
    from matcalc.variance import BUILTINS, N, activation, moments
    from matcalc.verify import assert_identity

    assert callable(matcalc.derive) and callable(matcalc.lambdify) and callable(matcalc.generate)
    assert all(map(callable, (assert_backward, check_gradient, train, activation, moments,
                              assert_identity)))
    assert moments(activation("relu")).second.value == 0.5    # E[relu(z)²] = 1/2 at σ = 1
    assert "relu" in BUILTINS and str(N) == "n"
