"""``gsomia agreement equivalence``: a party's changes to its side of an agreement's equivalence
table, proposed from the node's host and listed (this node's own and its partners')."""

from __future__ import annotations

from typing import Annotated

import typer

from gsomia._present import equivalence_change_view
from gsomia.cli._common import DirOpt, JsonOpt, console, emit, guard, open_node
from gsomia.core.equivalences import Remap
from gsomia.core.instants import parse_instant
from gsomia.errors import InvalidInputError

__all__ = ["equivalence_app"]

equivalence_app = typer.Typer(
    help="Changes to a party's side of an agreement's equivalence table: signed, sent to the partners, "
    "applied from the instant they state.",
    no_args_is_help=True,
)

AgreementArg = Annotated[str, typer.Argument(help="Agreement id, e.g. kor-jpn-gsomia-2016.")]


def _remap(text: str, party: str) -> Remap:
    """``LEVEL=PARTNER:LEVEL`` (or ``PARTNER:none``); ``PARTY:LEVEL=...`` names the party itself."""
    own, sep, target = text.partition("=")
    partner, colon, partner_level = target.partition(":")
    if not sep or not colon or not own.strip() or not partner.strip() or not partner_level.strip():
        raise InvalidInputError(f"--map {text!r}: expected LEVEL=PARTNER:LEVEL (or PARTNER:none)")
    who, has_party, level = own.partition(":")
    if not has_party:
        who, level = party, own
    none = partner_level.strip().lower() == "none"
    return Remap(
        who.strip().upper(), level.strip(), partner.strip().upper(), None if none else partner_level.strip()
    )


@equivalence_app.command("propose")
@guard
def propose(
    directory: DirOpt,
    actor: Annotated[str, typer.Option("--as", help="The security officer proposing it.")],
    agreement: AgreementArg,
    maps: Annotated[
        list[str],
        typer.Option(
            "--map",
            help="LEVEL=PARTNER:LEVEL: one of this node's levels and the partner's level it corresponds "
            "to from --at (PARTNER:none: no equivalent, no longer released). Repeatable.",
        ),
    ],
    at: Annotated[
        str,
        typer.Option(
            "--at", help="When it takes effect, now or later (ISO 8601; a bare date is local midnight)."
        ),
    ],
    reason: Annotated[str, typer.Option(help="Why; it reaches every partner.")],
    as_json: JsonOpt = False,
) -> None:
    """Change this node's side of an agreement's equivalence table from an instant.

    The change is numbered, signed by the node and queued for each partner it has a registered link
    with; a partner applies it from the stated instant, once its own checks pass.
    """
    node = open_node(directory)
    subject = node.catalogue.agreement(agreement)
    remaps = [_remap(text, node.party) for text in maps]
    effective = parse_instant(at, subject.timezone)
    row, queued = node.exchange.propose_equivalence(
        node.people.person(actor), subject.id, remaps, effective, reason
    )
    view = equivalence_change_view(row)
    if as_json:
        emit({**view, "sent_to": [e.recipient for e in queued]})
        return
    sent = ", ".join(e.recipient for e in queued) or "no partner (no registered link)"
    console().print(
        f"{row.party}'s equivalence change {row.sequence} to {row.agreement}, effective "
        f"{view['effective']}: queued for {sent}"
    )


@equivalence_app.command("list")
@guard
def list_changes(
    directory: DirOpt,
    agreement: Annotated[str | None, typer.Argument(help="Only this agreement's changes.")] = None,
    actor: Annotated[
        str | None, typer.Option("--as", help="The registered person reading (default: the local operator).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The equivalence changes on file: this node's own and those its partners sent."""
    node = open_node(directory)
    person = None if actor is None else node.people.person(actor)
    views = [equivalence_change_view(r) for r in node.exchange.equivalence_changes(person, agreement)]
    if as_json:
        emit(views)
        return
    if not views:
        console().print("no equivalence change on file")
    for v in views:
        maps = "; ".join(
            f"{r['party']} {r['level']} → {r['partner']} {r['partner_level'] or '(none)'}"
            for r in v["remaps"]
        )
        source = "own" if v["received_from"] is None else f"from {v['received_from']}"
        head = f"{v['agreement']} {v['party']} #{v['sequence']} ({source}) applies {v['applies']}"
        console().print(f"{head}: {maps} — {v['reason']}")
