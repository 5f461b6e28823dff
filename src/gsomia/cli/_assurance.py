"""``gsomia assurance``: the recipients' assurances before provision (ROK–Japan GSOMIA Art. 7(5)).

This node gives its party's assurance per agreement (signed, dated, sent to every partner whose link
serves the agreement) and may revoke it; a partner's assurance arrives as a message or is imported
from the file its node exported. Without the recipient's assurance on file, no release passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from gsomia._files import write_private
from gsomia.cli._common import DirOpt, JsonOpt, console, emit, guard, open_node, read_json
from gsomia.core.access import Person
from gsomia.errors import InvalidInputError
from gsomia.node import Node

__all__ = ["assurance_app"]

assurance_app = typer.Typer(
    help="The recipients' assurances before provision (Art. 7(5)): give, revoke, list, export, import.",
    no_args_is_help=True,
)

AsOperator = Annotated[
    str | None, typer.Option("--as", help="The registered person acting (default: the local operator).")
]


def _actor(node: Node, actor: str | None) -> Person | None:
    return None if actor is None else node.people.person(actor)


@assurance_app.command("list")
@guard
def assurance_list(directory: DirOpt, actor: AsOperator = None, as_json: JsonOpt = False) -> None:
    """The assurances on file: this node's own and its partners', revoked or not, verified or not."""
    node = open_node(directory)
    rows = node.exchange.assurances_view(_actor(node, actor))
    if as_json:
        emit(rows)
        return
    for r in rows:
        state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "in force"
        verified = "" if r["verified"] else " (signature does not verify: not counted)"
        console().print(
            f"{r['id']}  {r['party']}  {r['agreement']}  since {r['given_at']}  {state}{verified}"
        )


@assurance_app.command("give")
@guard
def assurance_give(
    directory: DirOpt,
    agreement: Annotated[str, typer.Option(help="The agreement it is given under.")],
    reference: Annotated[str, typer.Option(help="The instrument that gives it (a note, a letter).")],
    actor: AsOperator = None,
    as_json: JsonOpt = False,
) -> None:
    """Give this party's assurance (clearance level, official purpose, equivalent protection) under
    an agreement: signed, stored, and sent to every partner whose link serves the agreement."""
    node = open_node(directory)
    row = node.exchange.give_assurance(_actor(node, actor), agreement, reference)
    if as_json:
        emit({"id": row.id, "agreement": row.agreement, "party": row.party})
    else:
        console().print(f"assurance {row.id} of {row.party} under {row.agreement} given and sent")


@assurance_app.command("revoke")
@guard
def assurance_revoke(
    directory: DirOpt,
    assurance_id: Annotated[str, typer.Argument(help="The assurance's id.")],
    reason: Annotated[str, typer.Option(help="Why; it reaches every partner.")],
    actor: AsOperator = None,
) -> None:
    """Revoke this party's assurance: from now on no release to it under the agreement passes."""
    node = open_node(directory)
    row = node.exchange.revoke_assurance(_actor(node, actor), assurance_id, reason)
    console().print(f"assurance {row.id} of {row.party} under {row.agreement} revoked and sent")


@assurance_app.command("export")
@guard
def assurance_export(
    directory: DirOpt,
    out: Annotated[Path, typer.Option(help="The file to write (0600).")],
    assurance_id: Annotated[str | None, typer.Argument(help="The assurance's id.")] = None,
    agreement: Annotated[
        str | None, typer.Option(help="Instead of an id: this party's latest assurance under it.")
    ] = None,
    actor: AsOperator = None,
) -> None:
    """Write an assurance (with its revocation, if any) as the signed document a partner imports."""
    node = open_node(directory)
    person = _actor(node, actor)
    if (assurance_id is None) == (agreement is None):
        raise InvalidInputError("name the assurance's id or --agreement, one of the two")
    if assurance_id is None:
        own = [
            a
            for a in node.exchange.assurances_view(person)
            if a["party"] == node.party and a["agreement"] == agreement and a["revoked_at"] is None
        ]
        if not own:
            raise InvalidInputError(f"{node.party} has given no assurance under {agreement} in force")
        assurance_id = str(max(own, key=lambda a: str(a["given_at"]))["id"])
    document = node.exchange.assurance_document(person, assurance_id)
    write_private(out, json.dumps(document).encode())
    console().print(f"wrote {out}")


@assurance_app.command("import")
@guard
def assurance_import(
    directory: DirOpt,
    file: Annotated[Path, typer.Argument(help="A partner's exported assurance.")],
    actor: AsOperator = None,
) -> None:
    """Record a partner's signed assurance (and its revocation) brought by file."""
    node = open_node(directory)
    document = read_json(file, "assurance")
    assurance = node.exchange.import_assurance(_actor(node, actor), document)
    state = "revoked" if document.get("revocation") else "in force"
    console().print(f"recorded {assurance.party}'s assurance under {assurance.agreement} ({state})")
