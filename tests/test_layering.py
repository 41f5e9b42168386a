"""The package's layering, read from its source: no module imports another module's private name, and the
modules' top-level imports form no cycle (an import inside a function runs later and is not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules(src: Path) -> dict[str, ast.Module]:
    out = {}
    for path in sorted((src / "fashionlens").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


def _imported(node: ast.ImportFrom | ast.Import, modules: dict) -> list[str]:
    """The fashionlens modules an import statement loads (``from a import b`` loads ``a.b`` if it is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in modules]
    if not node.module or node.module not in modules:
        return []
    subs = [f"{node.module}.{a.name}" for a in node.names]
    return [sub if sub in modules else node.module for sub in subs]


def private_imports(modules: dict[str, ast.Module]) -> list[str]:
    """``module: from other import _name`` for each import of another fashionlens module's private name."""
    bad = []
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fashionlens"):
                bad += [
                    f"{name}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__") and node.module != name
                ]
    return bad


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: at top level, or in a top-level ``try``/``if``
    (not an ``if TYPE_CHECKING:`` block)."""
    found = []
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            continue
        inner = ast.walk(stmt) if isinstance(stmt, ast.If | ast.Try) else [stmt]
        found += [n for n in inner if isinstance(n, ast.Import | ast.ImportFrom)]
    return found


def import_cycles(modules: dict[str, ast.Module]) -> list[list[str]]:
    """Every cycle a depth-first walk of the top-level import graph meets, as [a, b, ..., a]."""
    graph = {
        name: sorted({m for n in _top_level_imports(tree) for m in _imported(n, modules)} - {name})
        for name, tree in modules.items()
    }
    cycles, done, stack = [], set(), []

    def visit(name: str) -> None:
        stack.append(name)
        for other in graph[name]:
            if other in stack:
                cycles.append(stack[stack.index(other) :] + [other])
            elif other not in done:
                visit(other)
        stack.pop()
        done.add(name)

    for name in graph:
        if name not in done:
            visit(name)
    return cycles


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, ast.Module]:
    for rel, text in files.items():
        path = tmp_path / "fashionlens" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return _modules(tmp_path)


def test_the_checks_find_a_private_import_and_a_cycle(tmp_path):
    """The two checks on a hand-made package: they can fail."""
    modules = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from fashionlens.b import _helper, public\n",
            "b.py": "import fashionlens.c\n\ndef public(): pass\ndef _helper(): pass\n",
            "c.py": "from fashionlens import a\n",
            "d.py": "def f():\n    from fashionlens import a  # lazy: not a cycle\n",
            "e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fashionlens import f\n",
            "f.py": "from fashionlens import e\n",
        },
    )
    assert private_imports(modules) == ["fashionlens.a: from fashionlens.b import _helper"]
    assert import_cycles(modules) == [["fashionlens.a", "fashionlens.b", "fashionlens.c", "fashionlens.a"]]


@pytest.fixture(scope="module")
def package() -> dict[str, ast.Module]:
    modules = _modules(SRC)
    assert len(modules) > 50, f"expected the fashionlens sources under {SRC}"
    return modules


def test_no_module_imports_another_modules_private_name(package):
    assert private_imports(package) == []


def test_top_level_imports_form_no_cycle(package):
    assert import_cycles(package) == []
