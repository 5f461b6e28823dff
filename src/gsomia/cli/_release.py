"""``gsomia release``: two-person release from the node's host — the policy, the officers' queue,
request, approve, refuse, withdraw; each thin over the exchange's approvals."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from gsomia._present import release_request_view
from gsomia.cli._common import (
    AsOpt,
    AuthoriseRelayOpt,
    DirOpt,
    JsonOpt,
    OriginatorOpt,
    PurposeOpt,
    ToOpt,
    ViaOpt,
    console,
    emit,
    guard,
    item_ref,
    open_node,
)
from gsomia.core.access import Person
from gsomia.errors import InvalidInputError
from gsomia.node import Node

__all__ = ["release_app"]

release_app = typer.Typer(
    help="Two-person release: the node's policy, and releases waiting for a second officer.",
    no_args_is_help=True,
)

RequestArg = Annotated[
    str | None, typer.Argument(help="The release request's id (or give --item).", show_default=False)
]
ItemOpt = Annotated[str | None, typer.Option("--item", help="The item whose one open request is meant.")]


def _request_id(node: Node, actor: Person, request_id: str | None, item_id: str | None) -> str:
    if (request_id is None) == (item_id is None):
        raise InvalidInputError("name the request: its id, or --item ITEM (not both)")
    return request_id if request_id is not None else node.exchange.open_request(actor, str(item_id))


def _line(view: dict[str, Any]) -> str:
    route = " -> ".join(view["route"])
    who = f" by {view['decided_by']}" if view["decided_by"] else ""
    return (
        f"{view['id']}  {view['state']}{who}  item {view['item_id']} "
        f"({view['originator']} {view['classification']})  {route}  requested by {view['requester']}; "
        f"needs: {view['needs']}"
    )


def _show(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(view)
    else:
        console().print(_line(view), markup=False)


@release_app.command("policy")
@guard
def policy(directory: DirOpt, actor: AsOpt, as_json: JsonOpt = False) -> None:
    """Show the node's two-person policy."""
    node = open_node(directory)
    data = node.exchange.two_person_view(node.person(actor))
    if as_json:
        emit(data)
        return
    above = ", ".join(f"{p} above {lv}" for p, lv in data["above"].items()) or "no level"
    console().print(
        f"two officers for: {above}; hub relays: {'yes' if data['hub_relay'] else 'no'}; "
        f"relay authorisations: {'yes' if data['relay_authorisations'] else 'no'}; "
        f"an approval lasts {data['validity_seconds'] // 3600} h",
        markup=False,
    )


@release_app.command("set-policy")
@guard
def set_policy(
    directory: DirOpt,
    actor: AsOpt,
    above: Annotated[
        list[str] | None,
        typer.Option(help="PARTY=LEVEL: releases of PARTY's items above LEVEL need two officers (repeat)."),
    ] = None,
    hub_relay: Annotated[bool, typer.Option("--hub-relay", help="Releases through a hub need two.")] = False,
    relay_authorisations: Annotated[
        bool, typer.Option("--relay-authorisations", help="Releases authorising a hub relay need two.")
    ] = False,
    validity_hours: Annotated[
        int, typer.Option(min=1, max=7 * 24, help="How long a request waits and an approval lasts.")
    ] = 24,
    as_json: JsonOpt = False,
) -> None:
    """Replace the node's two-person policy (security officers, administrators); audited."""
    levels: dict[str, str] = {}
    for entry in above or []:
        party, sep, level = entry.partition("=")
        if not sep or not party.strip() or not level.strip():
            raise InvalidInputError(f"--above {entry!r}: write PARTY=LEVEL, e.g. KOR=군사III급비밀")
        levels[party.strip().upper()] = level.strip()
    node = open_node(directory)
    done = node.exchange.set_two_person(
        node.person(actor),
        above=levels,
        hub_relay=hub_relay,
        relay_authorisations=relay_authorisations,
        validity=timedelta(hours=validity_hours),
    )
    if as_json:
        emit(done.as_data())
    else:
        console().print("two-person policy set", markup=False)


@release_app.command("request")
@guard
def request(
    directory: DirOpt,
    actor: AsOpt,
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    to: ToOpt,
    via: ViaOpt = None,
    purpose: PurposeOpt = None,
    authorise_relay: AuthoriseRelayOpt = False,
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask a second release officer to approve a release; nothing is queued until approved."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    row = node.exchange.request_release(
        node.person(actor), item_id, to, via=via, purpose=purpose, authorise_relay=authorise_relay
    )
    _show(release_request_view(row), as_json)


@release_app.command("queue")
@guard
def queue(
    directory: DirOpt,
    actor: AsOpt,
    state: Annotated[str | None, typer.Option(help="requested, approved, refused or withdrawn.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The release requests whose items you may read, oldest first."""
    if state is not None and state not in ("requested", "approved", "refused", "withdrawn"):
        raise InvalidInputError(f"--state {state!r}: one of requested, approved, refused, withdrawn")
    node = open_node(directory)
    views = [release_request_view(r) for r in node.exchange.release_requests(node.person(actor), state=state)]
    if as_json:
        emit(views)
        return
    for view in views:
        console().print(_line(view), markup=False)
    if not views:
        console().print("no release requests", markup=False)


@release_app.command("approve")
@guard
def approve(
    directory: DirOpt,
    actor: AsOpt,
    request_id: RequestArg = None,
    item: ItemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a release you did not request: it is signed and queued at once."""
    node = open_node(directory)
    person = node.person(actor)
    row, entry = node.exchange.approve_release(person, _request_id(node, person, request_id, item))
    if as_json:
        emit({"request": release_request_view(row), "msg_id": entry.msg_id})
    else:
        console().print(f"approved; queued {entry.msg_id} for {entry.final_recipient}", markup=False)


@release_app.command("refuse")
@guard
def refuse(
    directory: DirOpt,
    actor: AsOpt,
    reason: Annotated[str, typer.Option(help="Why, for the requester.")],
    request_id: RequestArg = None,
    item: ItemOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Refuse a release request, with a reason; nothing is sent."""
    node = open_node(directory)
    person = node.person(actor)
    done = node.exchange.refuse_release(person, _request_id(node, person, request_id, item), reason)
    _show(release_request_view(done), as_json)


@release_app.command("withdraw")
@guard
def withdraw(
    directory: DirOpt,
    actor: AsOpt,
    request_id: RequestArg = None,
    item: ItemOpt = None,
    reason: Annotated[str, typer.Option(help="Why (optional).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Withdraw your own release request; nothing is sent."""
    node = open_node(directory)
    person = node.person(actor)
    done = node.exchange.withdraw_release(person, _request_id(node, person, request_id, item), reason)
    _show(release_request_view(done), as_json)
