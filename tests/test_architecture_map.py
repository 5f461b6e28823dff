"""docs/ARCHITECTURE.md names every module of ``src/gsomia``, each in its own package's entry.

The map is kept true to the tree: a module added without a line in the map, or a map entry left
behind when a module moves, fails here. Alembic's numbered migrations are named as one directory
(each file is one schema step, listed by ``alembic history``), not one by one.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "gsomia"
MAP = ROOT / "docs" / "ARCHITECTURE.md"


def _tree_block(text: str) -> list[str]:
    """The first fenced block of the map: the package tree."""
    start = text.index("```\nsrc/gsomia/\n") + len("```\n")
    end = text.index("```", start)
    return text[start:end].splitlines()[1:]


def _entries(lines: list[str]) -> dict[str, str]:
    """Each top-level entry of the tree (``core/``, ``_web.py``, ...) and the text under it."""
    entries: dict[str, str] = {}
    name = ""
    for line in lines:
        if re.match(r"^  \S", line):
            name = line.split()[0].rstrip("/")
            entries[name] = line
        elif name and line.startswith("   "):
            entries[name] += "\n" + line
    return entries


def _unnamed(doc: str, modules: list[Path]) -> list[str]:
    """The modules the map does not name in their package's entry."""
    entries = _entries(_tree_block(doc))
    missing = []
    for module in modules:
        parts = module.relative_to(SOURCE).parts
        if module.name == "__init__.py" or "versions" in parts[:-1]:
            continue
        if len(parts) == 1:
            if parts[0] not in entries:
                missing.append(parts[0])
            continue
        text = entries.get(parts[0], "")
        named = "/".join(parts[1:]) if len(parts) > 2 else module.stem
        if not re.search(rf"(?<![\w./]){re.escape(named)}(\.py)?(?![\w])", text):
            missing.append("/".join(parts))
    return missing


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def test_the_map_names_every_module() -> None:
    assert _unnamed(MAP.read_text(encoding="utf-8"), _modules()) == []


def test_the_map_names_the_migrations_directory() -> None:
    store = _entries(_tree_block(MAP.read_text(encoding="utf-8")))["store"]
    assert "migrations/versions/" in store


def test_the_check_sees_a_module_left_out() -> None:
    doc = MAP.read_text(encoding="utf-8")
    # remove the kernel's _grouped from its entry, and the top-level _web.py entry entirely
    without = re.sub(r"(?<![\w./])_grouped(\.py)?(?![\w])", "", doc)
    without = "\n".join(line for line in without.splitlines() if not line.startswith("  _web.py"))
    assert _unnamed(without, _modules()) == ["_web.py", "kernel/_grouped.py"]
