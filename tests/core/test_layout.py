"""The layering rules of docs/architecture.md, checked on the source of every module of
every package, through imports followed transitively: a slice reaches core, never the
other slice; core and the report reach no slice; Ray enters only where the rules let it."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "raycell"
SLICES = ("tahoe", "chemoe")
# Modules that may import Ray: the runtime, recording, live metrics, the trial, and each slice's
# plan, trial, grid, Ray Data and bench files (the bench measures loaders inside a Ray Train
# worker).
RAY_ALLOWED = {"core/runtime.py", "core/tracking.py", "core/grid.py", "core/trial.py",
               "core/worker.py", "core/metrics.py", "core/console.py",
               "tahoe/worker.py", "tahoe/grid.py", "tahoe/trial.py", "tahoe/search.py",
               "tahoe/loaders/raydata.py",
               "tahoe/loaders/raydata_parquet.py",
               "tahoe/bench/loaders.py", "chemoe/worker.py", "chemoe/grid.py", "chemoe/search.py",
               "chemoe/bench_searchers.py", "chemoe/trial.py"}


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported(node: ast.AST) -> set[str]:
    """What an import statement names: modules, and the submodules a from-import takes."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        assert node.level == 0, "raycell imports absolutely"
        return {node.module} | {f"{node.module}.{a.name}" for a in node.names
                                if f"{node.module}.{a.name}" in MODULES}
    return set()


class _Imports(ast.NodeVisitor):
    """Imports of a module, leaving out those for type checkers only, and (``at_import_time``)
    those inside functions, which run when called."""

    def __init__(self, at_import_time: bool):
        self.at_import_time, self.found = at_import_time, set()

    def generic_visit(self, node: ast.AST) -> None:
        self.found |= _imported(node)
        super().generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" not in ast.unparse(node.test):
            self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if not self.at_import_time:
            self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef


@cache
def imports(module: str, at_import_time: bool) -> frozenset[str]:
    visitor = _Imports(at_import_time)
    visitor.visit(ast.parse(MODULES[module].read_text()))
    return frozenset(visitor.found)


def reached(module: str, at_import_time: bool, parents: bool = True) -> set[str]:
    """Every module ``module`` leads to through raycell's own modules, and (``parents``)
    the packages above each, which Python imports first."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in imports(todo.pop(), at_import_time):
            for step in _prefixes(name) if parents else [name]:
                if step not in seen:
                    seen.add(step)
                    if step in MODULES:
                        todo.append(step)
    return seen


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("core", "report", *SLICES) else "top"


def test_every_module_is_in_core_a_slice_the_report_or_the_entry_points():
    top = {m for m in MODULES if _layer(m) == "top"}
    assert top == {"raycell", "raycell.cli"}
    assert {_layer(m) for m in MODULES} == {"top", "core", "report", *SLICES}


@pytest.mark.parametrize("layer", ["core", "report", *SLICES])
def test_each_layer_reaches_only_what_the_layout_allows(layer):
    forbidden = {s for s in SLICES if s != layer}
    for module in (m for m in MODULES if _layer(m) == layer):
        bad = {m for m in reached(module, at_import_time=False)
               if m in MODULES and _layer(m) in forbidden}
        assert not bad, f"{module} leads to {sorted(bad)}"


def test_ray_enters_only_in_the_allowed_modules():
    for module, path in MODULES.items():
        name = str(path.relative_to(PACKAGE))
        if name in RAY_ALLOWED:
            continue
        uses_ray = {"ray"} & reached(module, at_import_time=True)
        assert not uses_ray, f"{name} imports ray when it is imported"


def test_no_module_imports_itself_back():
    """No import circle, counting only what runs at import time."""
    for module in MODULES:
        circle = module in reached(module, at_import_time=True, parents=False)
        assert not circle, f"{module} is imported back by the modules it imports"


def test_the_checks_see_transitive_and_lazy_imports():
    """The walk itself: the CLI reaches a slice's Ray modules only through its commands."""
    assert "ray" not in reached("raycell.cli", at_import_time=True)
    assert "raycell.tahoe.bench.loaders" in reached("raycell.cli", at_import_time=False)
    assert "raycell.core.errors" in reached("raycell.tahoe.config", at_import_time=True)


def test_the_report_draws_each_workload_from_a_module_that_exists():
    from raycell.report import SECTIONS

    assert {workload.removesuffix("-search") for workload in SECTIONS} == set(SLICES)
    for drawn_by in SECTIONS.values():
        module, function = drawn_by.split(":")
        assert module in MODULES and f"def {function}(" in MODULES[module].read_text()


def _documented_tree() -> set[str]:
    """The files of docs/architecture.md's tree: two spaces of indent a level."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    block = text.split("```tree\n", 1)[1].split("```", 1)[0]
    folders: list[str] = []
    files = set()
    for line in block.splitlines():
        entry = line.split()[0]
        depth = (len(line) - len(line.lstrip())) // 2
        del folders[depth:]
        if entry.endswith("/"):
            folders.append(entry.rstrip("/"))
        else:
            files.add("/".join([*folders, entry]))
    return files


def test_the_architecture_page_shows_the_tree_as_it_is():
    root = PACKAGE.parent
    actual = {str(p.relative_to(root)) for p in PACKAGE.rglob("*.py")
              if p.name != "__init__.py" or p.parent == PACKAGE}
    assert _documented_tree() == actual


def test_the_tests_the_docs_name_exist():
    """A test named in the README or docs/ (``tests/x.py`` or ``tests/x.py::test_y``)."""
    root = PACKAGE.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    named = {m for page in pages
             for m in re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", page.read_text())}
    assert named
    for path, test in named:
        assert (root / path).is_file(), f"{path} is named in the docs but does not exist"
        if test:
            assert f"def {test}(" in (root / path).read_text(), f"{path}::{test} is gone"
