"""What every command shares: the ``--json`` option, output, and turning domain errors into exit 2."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from gsomia._codec import refuse_unstorable, unstorable
from gsomia._datafiles import load_catalogue
from gsomia.core.catalogue import Catalogue
from gsomia.errors import GsomiaError, InvalidInputError
from gsomia.node import Node, load_config

__all__ = [
    "CheckedGroup",
    "DirOpt",
    "JsonOpt",
    "catalogue",
    "console",
    "emit",
    "guard",
    "open_node",
    "read_json",
    "set_data_dirs",
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DirOpt = Annotated[Path, typer.Option("--dir", help="The node's directory (holds node.toml).")]
AsOpt = Annotated[str, typer.Option("--as", help="The registered person acting; their access is checked.")]
# a release's route and purpose: `item release` and `release request` take the same options
ToOpt = Annotated[str, typer.Option("--to", help="The recipient party.")]
ViaOpt = Annotated[str | None, typer.Option(help="A hub to relay through (TISA).")]
PurposeOpt = Annotated[str | None, typer.Option(help="Purpose (default: the item's).")]
AuthoriseRelayOpt = Annotated[
    bool, typer.Option("--authorise-relay", help="As originator, authorise the hub to pass it on.")
]
# an item is (originator, id): where two originators' items share an id here, say whose (issue 22 §4)
OriginatorOpt = Annotated[
    str | None,
    typer.Option(
        "--originator",
        help="Whose item, where two originators' items share the id here (or write ORIGINATOR:id).",
    ),
]


_state: dict[str, list[Path]] = {"data": []}


def set_data_dirs(directories: list[Path]) -> None:
    """The root command's ``--data`` directories, read by every later :func:`catalogue`."""
    _state["data"] = list(directories)


def catalogue() -> Catalogue:
    """The shipped parties and agreements, with GSOMIA_DATA_PATH's and ``--data``'s files over them."""
    env = os.environ.get("GSOMIA_DATA_PATH", "")
    extra = [Path(p) for p in env.split(os.pathsep) if p] + _state["data"]
    loaded = load_catalogue(extra)
    for warning in loaded.warnings():  # legal, but weaker than the agreements intend: said each time
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[bold yellow]warning:[/] {escape(warning)}"
        )
    return loaded


def item_ref(node: Node, actor: str | None, item_id: str, originator: str | None) -> str:
    """The node's reference for the item named ``item_id`` (and ``--originator``), as ``actor`` may
    read it: :meth:`Node.resolve_item` (two such items: exit 2 asking whose)."""
    return node.items.resolve_item(None if actor is None else node.people.person(actor), item_id, originator)


def open_node(directory: Path) -> Node:
    """The node configured in ``directory`` (migrated, ready)."""
    return Node(load_config(directory))


_P = ParamSpec("_P")
_R = TypeVar("_R")


def console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 120, highlight=False)


def emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def guard(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """Domain errors become one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(command)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return command(*args, **kwargs)
        except GsomiaError as exc:
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"[bold red]error:[/] {escape(str(exc))}"
            )
            raise typer.Exit(2) from exc

    return run


def read_json(path: Path, what: str) -> Any:
    """A JSON file the command reads (a label, a payload, portions, an identity, an assurance), as
    a value the node can store: ``InvalidInputError`` (exit 2) if it cannot be read, is not JSON,
    or holds text no store can hold (a NUL, a lone surrogate; :func:`gsomia._codec.unstorable`),
    naming the place (``label.topics.1``), as the API's gate names it in a body."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"{what} {path}: cannot read ({exc.strerror})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{what} {path}: not JSON ({exc})") from exc
    except RecursionError as exc:  # no file this node reads nests that deep
        raise InvalidInputError(f"{what} {path}: nested too deeply") from exc
    refuse_unstorable(value, what)
    return value


class CheckedGroup(typer.core.TyperGroup):
    """The command line's root: no argument holding text no store can hold goes further (a lone
    surrogate is how Python hands over bytes of an argument that are not UTF-8; a NUL cannot be
    in one). Exit 2 naming the argument, as every other refusal of the command line."""

    # typer's Context, the one a Typer's group is parsed in (the supertype names the click it vendors)
    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        for index, arg in enumerate(args):
            found = unstorable(arg, "")
            if found is not None:
                before = args[index - 1] if index and args[index - 1].startswith("-") else None
                named = f"the value of {before}" if before else f"argument {index + 1}"
                raise typer.BadParameter(f"{named}: {found[1]}", ctx)
        return super().parse_args(ctx, args)
