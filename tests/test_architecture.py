"""The layers hold, read from the code's own import graph (grimp, the graph import-linter reads):

- every package has a face: an ``__init__.py`` whose ``__all__`` names what its neighbours may use;
- no module imports another package's private module (``_name``);
- no import cycle among the modules of ``src/gsomia``;
- the contracts in pyproject's ``[tool.importlinter]`` (which ``.ci/run`` checks with
  ``lint-imports``) are kept by the code and broken by a deliberate crossing of each.
"""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "gsomia"

# The one exception tree names the decision a refusal carries, for the type checker only
# (pyproject's contracts ignore the same two imports).
TYPE_ONLY = {("gsomia.errors", "gsomia.core.access"), ("gsomia.errors", "gsomia.core.policy")}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("gsomia", cache_dir=None)


def _packages() -> list[str]:
    """Every package under src/gsomia (a directory of Python modules); Alembic's scripts are not one."""
    found = []
    for init in sorted(SRC.rglob("__init__.py")):
        parts = init.parent.relative_to(SRC.parent).parts
        found.append(".".join(parts))
    return found


def private_crossings(graph: grimp.ImportGraph) -> list[str]:
    """Imports of ``P._m`` (or anything under it) from outside ``P``."""
    crossings = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            parts = imported.split(".")
            for i, part in enumerate(parts[1:], start=1):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:i])
                    if importer != owner and not importer.startswith(owner + "."):
                        crossings.append(f"{importer} -> {imported}")
                    break
    return crossings


def cycles(graph: grimp.ImportGraph, ignore: set[tuple[str, str]] = TYPE_ONLY) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def edges(module: str) -> list[str]:
        return sorted(m for m in graph.find_modules_directly_imported_by(module) if (module, m) not in ignore)

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in edges(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1 or module in edges(module):
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_every_package_has_a_face() -> None:
    assert "gsomia.exchange" in _packages()
    for name in _packages():
        package = importlib.import_module(name)
        face = getattr(package, "__all__", None)
        assert isinstance(face, list | tuple), f"{name}/__init__.py has no __all__"
        for public in face:
            assert not public.startswith("_"), f"{name}.__all__ names a private name {public!r}"
            if not hasattr(package, public):
                # a public submodule (gsomia.core.policy): the face of a package of public modules
                importlib.import_module(f"{name}.{public}")


def test_every_directory_of_modules_is_a_package() -> None:
    for directory in sorted({p.parent for p in SRC.rglob("*.py")}):
        if "migrations" in directory.relative_to(SRC).parts:
            continue  # Alembic's scripts: run by Alembic, never imported
        where = directory.relative_to(SRC.parent)
        assert (directory / "__init__.py").is_file(), f"{where} has no __init__.py"


def test_no_module_imports_another_packages_private_module(graph: grimp.ImportGraph) -> None:
    assert private_crossings(graph) == []


def test_no_import_cycle(graph: grimp.ImportGraph) -> None:
    assert cycles(graph) == []


SHELLS = ("api", "cli", "taxii", "ui")
PACKAGES = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}


def private_members_reached(source: str, own: str | None) -> list[str]:
    """``<package>._member`` in code outside that package: ``node.exchange._origin_jws``,
    ``kernel._store``: another package's object used through its private members."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            value = node.value
            name = value.attr if isinstance(value, ast.Attribute) else getattr(value, "id", None)
            if name in PACKAGES and name != own:
                found.append(f"{name}.{node.attr} (line {node.lineno})")
    return found


def test_no_package_reaches_into_anothers_objects() -> None:
    for path in sorted(SRC.rglob("*.py")):
        where = path.relative_to(SRC)
        if "migrations" in where.parts:
            continue
        own = where.parts[0] if len(where.parts) > 1 else None
        found = private_members_reached(path.read_text(encoding="utf-8"), own)
        assert found == [], f"{where} uses private members of another package's objects: {found}"


def test_the_member_check_sees_a_reach() -> None:
    reach = "origin = node.exchange._origin_jws(item.id)\nnode.kernel._store.audit()\n"
    assert private_members_reached(reach, "standards") == [
        "exchange._origin_jws (line 1)",
        "kernel._store (line 2)",
    ]
    assert private_members_reached("self.exchange._now()", "exchange") == []  # inside its own package


def test_the_shells_check_no_role() -> None:
    """Role checks live in the services (one decision for every shell): no shell names a role
    or asks ``require_any`` itself."""
    for shell in SHELLS:
        for path in sorted((SRC / shell).glob("*.py")):
            text = path.read_text(encoding="utf-8")
            for needle in ("require_any(", "Role."):
                assert needle not in text, f"{path.relative_to(SRC.parent)} checks a role itself ({needle})"


# Where a shell reads the store itself, and why: the metrics read the store's gauges and leases at
# each scrape (read-only counts); the TAXII server keeps its own status resources (TaxiiStore).
STORE_READERS = {"api/_observe.py": 2, "taxii/_server.py": 1}


def store_reached(source: str) -> list[str]:
    """``x.store`` / ``x.fed``: a node's store (or the exchange's part of it) used directly."""
    return [
        f"{node.attr} (line {node.lineno})"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr in ("store", "fed")
    ]


def test_the_shells_and_the_demo_ask_services_not_the_store() -> None:
    """A shell parses, calls one service method and presents: it does not read or write the store
    (``node.store.get_item``, ``node.exchange.fed.consent_request``) behind the services' backs."""
    assert store_reached("row = node.exchange.fed.consent_request(after)\nnode.store.revision()") == [
        "fed (line 1)",
        "store (line 2)",
    ]
    for package in (*SHELLS, "demo"):
        for path in sorted((SRC / package).glob("*.py")):
            where = path.relative_to(SRC).as_posix()
            found = store_reached(path.read_text(encoding="utf-8"))
            assert len(found) == STORE_READERS.get(where, 0), f"{where} uses the store directly: {found}"


def test_the_type_only_imports_stay_type_only() -> None:
    runtime = grimp.build_graph("gsomia", exclude_type_checking_imports=True, cache_dir=None)
    for importer, imported in TYPE_ONLY:
        assert not runtime.direct_import_exists(importer=importer, imported=imported)


def test_the_checks_see_a_crossing(graph: grimp.ImportGraph) -> None:
    """The two checks above fail on the graph with one bad import added: they can fail."""
    graph.add_import(importer="gsomia.duties._copies", imported="gsomia.node._service")
    graph.add_import(importer="gsomia.kernel._items", imported="gsomia.exchange")
    try:
        assert private_crossings(graph) == ["gsomia.duties._copies -> gsomia.node._service"]
        assert any({"gsomia.kernel._items", "gsomia.exchange"} <= set(c) for c in cycles(graph))
    finally:
        graph.remove_import(importer="gsomia.duties._copies", imported="gsomia.node._service")
        graph.remove_import(importer="gsomia.kernel._items", imported="gsomia.exchange")
    assert private_crossings(graph) == []


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """import-linter over the copy of the package in ``tree``, with pyproject's contracts."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    run = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(  # noqa: S603 - this Python running import-linter, fixed arguments
        [sys.executable, "-c", run, str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_contracts_hold_and_fail_when_crossed(tmp_path: Path) -> None:
    shutil.copytree(
        SRC, tmp_path / "gsomia", ignore=shutil.ignore_patterns("__pycache__", "data", "static", "maps")
    )
    kept = _lint_imports(tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "4 kept, 0 broken" in kept.stdout

    def append(module: str, line: str) -> None:
        path = tmp_path / "gsomia" / module
        path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")

    append("core/tlp.py", "from gsomia.store import Store")  # a layer crossed: the core reaches out
    append("core/merkle.py", "import httpx")  # the core does I/O
    append("api/_problems.py", "from gsomia.node._service import Node")  # into another's private module
    append("cli/_common.py", "import gsomia.cli._app")  # a cycle inside a package
    broken = _lint_imports(tmp_path)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "0 kept, 4 broken" in broken.stdout
    for shown in (
        "gsomia.core.tlp -> gsomia.store",
        "gsomia.core.merkle -> httpx",
        "gsomia.api._problems -> gsomia.node._service",
        "No cycles are allowed in gsomia.cli",
    ):
        assert shown in broken.stdout, broken.stdout
