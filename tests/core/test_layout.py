"""The layering rules of docs/architecture.md, checked on the source: a slice imports core,
never the other slice; core imports no slice; Ray enters only where the rules let it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "raycell"
SLICES = ("tahoe", "chemoe")
# Modules that may import Ray: the runtime, recording, live metrics, the trial, and each slice's
# plan, grid, Ray Data and bench files (the bench measures loaders inside a Ray Train worker).
RAY_ALLOWED = {"core/runtime.py", "core/tracking.py", "core/grid.py", "core/trial.py",
               "core/worker.py",
               "core/metrics.py", "core/console.py",
               "tahoe/worker.py", "tahoe/grid.py", "tahoe/raydata.py", "tahoe/bench.py",
               "chemoe/worker.py", "chemoe/grid.py", "chemoe/trial.py"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py"))


@pytest.mark.parametrize("folder", ["core", *SLICES])
def test_slices_and_core_import_only_what_the_layout_allows(folder):
    forbidden = set(SLICES) if folder == "core" else {s for s in SLICES if s != folder}
    assert _modules(folder), f"raycell/{folder} has no modules"
    for path in _modules(folder):
        bad = {m for m in _imports(path)
               if m.split(".")[:2] in ([["raycell", s] for s in forbidden])}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_ray_enters_only_in_the_allowed_modules():
    for folder in ("core", *SLICES):
        for path in _modules(folder):
            name = str(path.relative_to(PACKAGE))
            uses_ray = any(m == "ray" or m.startswith("ray.") for m in _imports(path))
            assert not uses_ray or name in RAY_ALLOWED, f"{name} imports ray"


def test_no_module_is_left_outside_core_and_the_slices():
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert top == {"__init__.py", "cli.py"}
