"""The core stays pure: no I/O, clock or network modules, nothing but the standard library, the
core itself and errors (pyproject's import-linter contracts say the same for the packages)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import gsomia.core

# The standard library's modules that touch the outside world or the clock.
IMPURE = {
    "asyncio",
    "io",
    "os",
    "pathlib",
    "shutil",
    "socket",
    "sqlite3",
    "subprocess",
    "tempfile",
    "threading",
    "time",
    "urllib",
    "zoneinfo",
}


def allowed(name: str) -> bool:
    top = name.split(".")[0]
    if top == "gsomia":
        return name == "gsomia.errors" or name == "gsomia.core" or name.startswith("gsomia.core.")
    return top == "__future__" or (top in sys.stdlib_module_names and top not in IMPURE)


def imports_of(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def test_core_imports_nothing_impure() -> None:
    root = Path(gsomia.core.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name in imports_of(tree):
            assert allowed(name), f"{path.name} imports {name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in {"now", "utcnow", "today"}:
                raise AssertionError(f"{path.name} reads the clock ({node.attr})")


def test_the_allow_list_refuses_what_the_core_must_not_import() -> None:
    for name in ("gsomia.store", "gsomia.kernel", "gsomia.cli", "gsomia._datafiles", "pydantic", "os.path"):
        assert not allowed(name), name
    for name in ("..store", "time", "zoneinfo", "sqlalchemy"):
        assert not allowed(name), name
    assert allowed("gsomia.core.policy")
    assert allowed("dataclasses")
    assert not imports_of(ast.parse("x = 1"))
    assert imports_of(ast.parse("from gsomia.store import Store")) == ["gsomia.store"]
