"""``gsomia duty``: the duties after release, from the node's host.

Copies and derivatives, reclassification and recall, destruction, loss or compromise,
the termination report, visits and the registers; each thin over :class:`gsomia.duties.Duties`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from gsomia._present import item_view, scheduled_view
from gsomia.cli._common import (
    AsOpt,
    DirOpt,
    JsonOpt,
    OriginatorOpt,
    console,
    emit,
    guard,
    item_ref,
    open_node,
)
from gsomia.core.access import Person
from gsomia.core.instants import parse_instant
from gsomia.node import Node

__all__ = ["duty_app"]

duty_app = typer.Typer(
    help="The duties after release: copies, reclassification and recall, destruction, "
    "loss or compromise, termination report, visits, registers.",
    no_args_is_help=True,
)

AsOperator = Annotated[
    str | None, typer.Option("--as", help="The registered person acting (default: the local operator).")
]
ItemArg = Annotated[str, typer.Argument(help="The item's id.")]


def _out(data: Any, as_json: bool, line: str) -> None:
    if as_json:
        emit(data)
    else:
        console().print(line)


def _instant(node: Node, text: str) -> datetime:
    return parse_instant(text, node.kernel.timezone)


def _maybe(node: Node, actor: str | None) -> Person | None:
    return None if actor is None else node.people.person(actor)


@duty_app.command("derive")
@guard
def derive(
    directory: DirOpt,
    actor: AsOpt,
    sources: Annotated[list[str], typer.Argument(help="The source item(s).")],
    kind: Annotated[str, typer.Option(help="copy, translation or derivative.")] = "copy",
    payload_file: Annotated[
        Path | None, typer.Option("--payload", help="The new payload (JSON); a copy reuses its source's.")
    ] = None,
    item_id: Annotated[str | None, typer.Option("--id", help="The new item's id.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a copy, translation or derivative: the strictest label of its sources, counted in each."""
    node = open_node(directory)
    payload = None if payload_file is None else payload_file.read_bytes()
    item = node.duties.derive(
        node.people.person(actor),
        kind,
        [item_ref(node, actor, source, None) for source in sources],
        payload=payload,
        payload_type="json" if payload else None,
        item_id=item_id,
    )
    _out({"id": item.id, "classification": item.label.classification}, as_json, f"made {kind} {item.id}")


@duty_app.command("reclassify")
@guard
def reclassify(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    level: Annotated[str, typer.Option("--level", help="The new level (originator's scheme).")],
    reason: Annotated[str, typer.Option(help="Why; it reaches every holder.")],
    portion: Annotated[
        str | None,
        typer.Option(help="An item in portions: change this portion's level alone (at every holder of it)."),
    ] = None,
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """As originator, change the item's (or one portion's) level here and at every holder downstream."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    row = node.duties.reclassify(node.people.person(actor), item_id, level, reason, portion=portion)
    _out({"item": row.item_id, "version": row.version}, as_json, f"{item_id} is now version {row.version}")


@duty_app.command("hold-as")
@guard
def hold_as(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    level: Annotated[str, typer.Option("--level", help="This node's level the agreement offers (Art. 4.2).")],
    reason: Annotated[str, typer.Option(help="Why this level; kept in the audit record.")],
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """As a security or release officer, hold a received item (and its copies) under another level
    its agreement offers this node (Korean Class II in Japan: 極秘 or 特定秘密)."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    done = node.duties.hold_as(node.people.person(actor), item_id, level, reason)
    _out(done, as_json, f"{item_id} is held as {done['classification']} (was {done['was']})")


@duty_app.command("recall")
@guard
def recall(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    reason: Annotated[str, typer.Option(help="Why; it reaches every holder.")],
    portion: Annotated[
        str | None,
        typer.Option(help="An item in portions: recall this portion alone (every holder of it drops it)."),
    ] = None,
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """As originator, withdraw the item (or one portion of it) at every holder downstream."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    row = node.duties.recall(node.people.person(actor), item_id, reason, portion=portion)
    what = item_id if portion is None else f"portion {portion} of {item_id}"
    _out({"item": row.item_id, "version": row.version}, as_json, f"{what} recalled (version {row.version})")


@duty_app.command("label-status")
@guard
def label_status(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The item's label changes and, per holder, applied, destroyed, not held, not reachable or pending
    (with why)."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    status = node.duties.label_status(node.people.person(actor), item_id)
    lines = [f"{item_id}: version {status['label_version']}, {status['state']}"]
    for c in status["changes"]:
        lines.append(
            f"  v{c['version']} {c['kind']}: applied {', '.join(c['applied']) or '-'}; "
            f"destroyed {', '.join(c['destroyed']) or '-'}; not held {', '.join(c['not_held']) or '-'}; "
            f"not reachable {', '.join(c['not_reachable']) or '-'}; pending {', '.join(c['pending']) or '-'}"
        )
        lines += [f"    {a['party']} {a['state']}: {a['why']}" for a in c["acks"] if a["why"]]
    _out(status, as_json, "\n".join(lines))


@duty_app.command("destroy")
@guard
def destroy(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    method: Annotated[
        str, typer.Option(help="crypto-erase, shredding, incineration, pulverisation, returned.")
    ],
    witness: Annotated[str, typer.Option(help="A registered person cleared for the item.")],
    reason: Annotated[str, typer.Option(help="Why (e.g. the purpose ended).")],
    notify: Annotated[bool, typer.Option("--notify", help="Send the record to the originator now.")] = False,
    portion: Annotated[
        str | None,
        typer.Option(help="An item in portions: destroy this portion alone; the others stay held."),
    ] = None,
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Destroy the item (or one portion of it): a signed record; the payload is gone, the record stays."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    record = node.duties.destroy(
        node.people.person(actor),
        item_id,
        method=method,
        witness=witness,
        reason=reason,
        notify=notify,
        portion=portion,
    )
    what = item_id if portion is None else f"portion {portion} of {item_id}"
    _out(record, as_json, f"{what} destroyed ({method}, witnessed by {witness})")


@duty_app.command("end-purpose")
@guard
def end_purpose(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    reason: Annotated[str, typer.Option(help="Why the purpose it was provided for has ended.")],
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record that the item's purpose has ended: it joins the queue to return or destroy (Art. 6(h))."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    record = node.duties.end_purpose(node.people.person(actor), item_id, reason)
    _out(record, as_json, f"{item_id}: purpose ended; it is due for return or destruction")


@duty_app.command("disposal-queue")
@guard
def disposal_queue(
    directory: DirOpt,
    actor: AsOpt,
    at: Annotated[str | None, typer.Option(help="The instant (default: now).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Items from other parties due for return or destruction: purpose ended, or agreement ended."""
    node = open_node(directory)
    queue = node.duties.disposal_queue(node.people.person(actor), None if at is None else _instant(node, at))
    lines = [f"{q['item']} ({q['originator']} {q['classification']}): {'; '.join(q['why'])}" for q in queue]
    _out(queue, as_json, "\n".join(lines) or "nothing is due for return or destruction")


@duty_app.command("send-destruction")
@guard
def send_destruction(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send the signed destruction record of the item to its originator (on request)."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    record = node.duties.send_destruction_record(node.people.person(actor), item_id)
    _out(record, as_json, f"destruction record of {item_id} queued for its originator")


@duty_app.command("request-destruction")
@guard
def request_destruction(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    holder: Annotated[str, typer.Option(help="The holder asked for its record.")],
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """As originator, ask a holder for its signed destruction record."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    msg_id = node.duties.request_destruction_record(node.people.person(actor), item_id, holder)
    _out({"msg_id": msg_id}, as_json, f"request {msg_id} queued for {holder.upper()}")


@duty_app.command("destructions")
@guard
def destructions(
    directory: DirOpt,
    actor: AsOpt,
    item: Annotated[str | None, typer.Option(help="Only this item.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Destruction records: this node's own and those holders sent to it."""
    node = open_node(directory)
    rows = node.duties.destructions(node.people.person(actor), item)
    _out(
        rows,
        as_json,
        "\n".join(f"{r['item']}  {r['holder']}  {r['at']}  {r['method']}  by {r['by']}" for r in rows),
    )


@duty_app.command("report-incident")
@guard
def report_incident(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    nature: Annotated[str, typer.Option(help="loss, compromise or possible-compromise.")],
    text: Annotated[str, typer.Option(help="What happened and when it was noticed.")],
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Report a loss or (possible) compromise; the originator is told at once (Art. 17)."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    incident = node.duties.report_incident(node.people.person(actor), item_id, nature, text)
    _out(incident, as_json, f"incident {incident['id']} opened")


@duty_app.command("advance-incident")
@guard
def advance_incident(
    directory: DirOpt,
    actor: AsOpt,
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    state: Annotated[str, typer.Option(help="findings, measures or closed (in that order).")],
    text: Annotated[str, typer.Option(help="What was found or done.")],
    as_json: JsonOpt = False,
) -> None:
    """Move the investigation to its next step; the originator sees it."""
    node = open_node(directory)
    incident = node.duties.advance_incident(node.people.person(actor), incident_id, state, text)
    _out(incident, as_json, f"incident {incident_id}: {incident['state']}")


@duty_app.command("feedback")
@guard
def send_feedback(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    kind: Annotated[
        str,
        typer.Option(help="seen, used-in-assessment, corroborated, false-positive, question or correction."),
    ],
    text: Annotated[str, typer.Option(help="What you tell the originator (needed for a question).")] = "",
    cite: Annotated[
        list[str] | None,
        typer.Option(help="An item of this node's, released to the originator, that the feedback cites."),
    ] = None,
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Send the originator of a partner's item signed feedback about it (the way the item came)."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    sent = node.duties.send_feedback(node.people.person(actor), item_id, kind, text, cite or [])
    _out(sent, as_json, f"feedback {sent['id']} queued for {sent['originator']}")


@duty_app.command("feedback-list")
@guard
def feedback_list(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Feedback about an item: received from its holders (as originator) or sent (as holder)."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    rows = node.duties.feedback(node.people.person(actor), item_id)
    _out(
        rows,
        as_json,
        "\n".join(f"{r['at']}  {r['holder']}  {r['kind']}  {r['text']}" for r in rows) or "no feedback",
    )


@duty_app.command("incidents")
@guard
def incidents(directory: DirOpt, actor: AsOpt, as_json: JsonOpt = False) -> None:
    """Investigations run here as holder, and those of this node's items held elsewhere."""
    node = open_node(directory)
    rows = node.duties.incidents(node.people.person(actor))
    _out(
        rows,
        as_json,
        "\n".join(f"{r['id']}  {r['item']}  {r['holder']}  {r['nature']}  {r['state']}" for r in rows),
    )


@duty_app.command("termination-report")
@guard
def termination_report(
    directory: DirOpt,
    actor: AsOpt,
    at: Annotated[str | None, typer.Option(help="The instant (default: now).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per partner, the items held on each side and their status (Art. 21.4)."""
    node = open_node(directory)
    report = node.duties.termination_report(
        node.people.person(actor), None if at is None else _instant(node, at)
    )
    lines = [
        f"{p['party']}: {len(p['held_here'])} of theirs held here, "
        f"{len(p['held_there'])} of ours held there; "
        + ", ".join(f"{a['agreement']} {a['status']}" for a in p["agreements"])
        for p in report["partners"]
    ]
    _out(report, as_json, "\n".join(lines))


@duty_app.command("visit")
@guard
def visit(
    directory: DirOpt,
    person: Annotated[str, typer.Argument(help="The visitor (a registered person).")],
    highest: Annotated[str, typer.Option(help="The highest level (this node's scheme) they may see.")],
    starts: Annotated[str, typer.Option(help="ISO 8601 instant.")],
    ends: Annotated[str, typer.Option(help="ISO 8601 instant.")],
    purpose: Annotated[str, typer.Option(help="The official purpose (Art. 8).")],
    actor: AsOperator = None,
    as_json: JsonOpt = False,
) -> None:
    """Authorise a visit: the visitor reads only during it and only up to its level."""
    node = open_node(directory)
    row = node.duties.authorise_visit(
        _maybe(node, actor),
        person,
        highest=highest,
        starts=_instant(node, starts),
        ends=_instant(node, ends),
        purpose=purpose,
    )
    _out(row, as_json, f"visit {row['id']}: {person} up to {row['highest']} until {row['ends']}")


@duty_app.command("visit-end")
@guard
def visit_end(
    directory: DirOpt,
    visit_id: Annotated[str, typer.Argument(help="The visit's id (as `gsomia duty visit` printed it).")],
    ends: Annotated[
        str | None, typer.Option(help="ISO 8601 instant before the visit's end; absent: now (revoked).")
    ] = None,
    actor: AsOperator = None,
    as_json: JsonOpt = False,
) -> None:
    """End a visit early: revoked now, or shortened; the node's serving processes, and the visitor's
    open streams (closed if the visitor may no longer read them), follow within about a second."""
    node = open_node(directory)
    row = node.duties.end_visit(_maybe(node, actor), visit_id, None if ends is None else _instant(node, ends))
    _out(row, as_json, f"visit {row['id']}: {row['person']} now until {row['ends']}")


@duty_app.command("reviews")
@guard
def reviews(
    directory: DirOpt,
    actor: AsOpt,
    at: Annotated[str | None, typer.Option(help="Due at this instant (default: now).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """This node's own items whose label review is due, soonest first."""
    node = open_node(directory)
    due = node.duties.reviews_due(node.people.person(actor), None if at is None else _instant(node, at))
    views = [item_view(i) for i in due]
    if as_json:
        emit(views)
        return
    for view in views:
        console().print(f"{view['id']}  review {view['label'].get('review')}", markup=False)
    if not views:
        console().print("no review is due", markup=False)


@duty_app.command("schedule-downgrade")
@guard
def schedule_downgrade(
    directory: DirOpt,
    actor: AsOpt,
    item_id: ItemArg,
    level: Annotated[str, typer.Option("--level", help="The lower level, in this party's scheme.")],
    at: Annotated[str, typer.Option(help="When it applies (ISO 8601; in the future).")],
    reason: Annotated[str, typer.Option(help="Why, for the holders.")],
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Declare that an item of this party becomes a lower level at an instant (applies itself)."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    row = node.duties.schedule_downgrade(
        node.people.person(actor), item_id, level, _instant(node, at), reason
    )
    view = scheduled_view(row)
    _out(view, as_json, f"{row.item_id} becomes {row.classification} at {view['at']} ({row.id})")


@duty_app.command("authority-add")
@guard
def authority_add(
    directory: DirOpt,
    party: Annotated[str, typer.Argument(help="The party (trigraph).")],
    authority_id: Annotated[str, typer.Argument(help="A short id, e.g. mnd.")],
    name: Annotated[str, typer.Option(help="The authority's name.")],
    function: Annotated[str, typer.Option(help="Its role under the agreement.")] = "",
    actor: AsOperator = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a party's competent authority (Art. 2)."""
    node = open_node(directory)
    row = node.duties.add_authority(_maybe(node, actor), party, authority_id, name, function)
    _out(row, as_json, f"{row['party']}/{row['id']}: {row['name']}")


@duty_app.command("rules-record")
@guard
def rules_record(
    directory: DirOpt,
    party: Annotated[str, typer.Argument(help="The party (trigraph).")],
    title: Annotated[str, typer.Option(help="The rules' title.")],
    effective: Annotated[str, typer.Option(help="ISO 8601 instant it takes effect.")],
    summary: Annotated[str, typer.Option(help="What changed.")] = "",
    level: Annotated[list[str] | None, typer.Option(help="A level touched (repeat); none: all.")] = None,
    actor: AsOperator = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a new version of a party's protection rules (Art. 3); flags the affected items."""
    node = open_node(directory)
    row = node.duties.record_rules(
        _maybe(node, actor),
        party,
        title=title,
        summary=summary,
        levels=level or [],
        effective=_instant(node, effective),
    )
    _out(row, as_json, f"{row['party']} rules version {row['version']}: {len(row['flagged'])} items flagged")


@duty_app.command("registers")
@guard
def registers(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """The registers: competent authorities, protection rules by version, flagged items."""
    node = open_node(directory)
    data = {
        "authorities": node.duties.authorities(),
        "rules": node.duties.rules(),
        "flags": node.duties.flags(),
    }
    lines = [f"authority {a['party']}/{a['id']}: {a['name']}" for a in data["authorities"]]
    lines += [f"rules {r['party']} v{r['version']}: {r['title']}" for r in data["rules"]]
    lines += [f"flag {f['item_id']}: {f['reason']}" for f in data["flags"]]
    _out(data, as_json, "\n".join(lines) or "the registers are empty")
