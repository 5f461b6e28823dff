"""The core stays pure: no I/O, clock or network modules, and no imports of the adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import gsomia.core

FORBIDDEN = {
    "os",
    "io",
    "socket",
    "sqlite3",
    "time",
    "pathlib",
    "subprocess",
    "zoneinfo",
    "gsomia.cli",
    "gsomia._datafiles",
}


def test_core_imports_nothing_impure() -> None:
    root = Path(gsomia.core.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
                assert name not in FORBIDDEN, f"{path.name} imports {name}"
            if isinstance(node, ast.Attribute) and node.attr in {"now", "utcnow", "today"}:
                raise AssertionError(f"{path.name} reads the clock ({node.attr})")
