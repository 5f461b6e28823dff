"""Typer commands. Errors go to stderr with exit code 2; a refused ``decide`` exits 1."""

from __future__ import annotations

import contextlib
import tempfile
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gsomia._datafiles import load_events
from gsomia.cli import _render
from gsomia.cli._assurance import assurance_app
from gsomia.cli._audit import audit_app
from gsomia.cli._common import CheckedGroup, JsonOpt, console, emit, guard, set_data_dirs
from gsomia.cli._common import catalogue as _catalogue
from gsomia.cli._duties import duty_app
from gsomia.cli._equivalences import equivalence_app
from gsomia.cli._net import net_app
from gsomia.cli._node import item_app, node_app, outbox_app, peer_app, person_app
from gsomia.cli._release import release_app
from gsomia.cli._samples import samples
from gsomia.cli._standards import bdo_app, label_app, spif_app
from gsomia.cli._stream import print_stream_story, stream_app
from gsomia.cli._transfer import export_file, import_file, import_receipts
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import parse_instant
from gsomia.core.policy import Consent, ConsentKind, ReleaseEngine, ReleaseRequest, assumed_assurances
from gsomia.demo.scenario import duties_on_nodes, replay_history, replay_on_nodes
from gsomia.errors import InstantError

app = typer.Typer(
    name="gsomia",
    cls=CheckedGroup,
    help="Intelligence-sharing agreements between states, as running, enforced software.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
agreement_app = typer.Typer(help="Agreements and their lifecycle.", no_args_is_help=True)
party_app = typer.Typer(help="Parties and their classification schemes.", no_args_is_help=True)
app.add_typer(agreement_app, name="agreement")
agreement_app.add_typer(equivalence_app, name="equivalence")
app.add_typer(party_app, name="party")
app.add_typer(node_app, name="node")
app.add_typer(person_app, name="person")
app.add_typer(item_app, name="item")
app.add_typer(peer_app, name="peer")
app.add_typer(outbox_app, name="outbox")
app.add_typer(release_app, name="release")
app.add_typer(net_app, name="net")
app.add_typer(stream_app, name="stream")
app.add_typer(audit_app, name="audit")
app.add_typer(duty_app, name="duty")
app.add_typer(assurance_app, name="assurance")
app.add_typer(label_app, name="label")
app.add_typer(bdo_app, name="bdo")
app.add_typer(spif_app, name="spif")
app.command("export")(export_file)
app.command("import")(import_file)
app.command("import-receipts")(import_receipts)
app.command("samples")(samples)


@app.callback()
def _root(
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="Extra directory of party/agreement .toml files (repeatable; also GSOMIA_DATA_PATH). "
            "A file there replaces a shipped one with the same code or id.",
        ),
    ] = None,
) -> None:
    set_data_dirs(list(data or []))


@party_app.command("list")
@guard
def party_list(as_json: JsonOpt = False) -> None:
    """List parties and their classification levels, highest first."""
    catalogue = _catalogue()
    parties = sorted(catalogue.parties.values(), key=lambda p: p.code)
    if as_json:
        emit([_render.party_json(p) for p in parties])
        return
    table = Table("party", "level", "alias", "gloss", "rank")
    for party in parties:
        for level in sorted(party.scheme.levels, key=lambda lv: -lv.rank):
            table.add_row(f"{party.code} {party.name}", level.name, level.alias, level.gloss, str(level.rank))
    console().print(table)


@agreement_app.command("list")
@guard
def agreement_list(as_json: JsonOpt = False) -> None:
    """List the agreements known to this installation."""
    agreements = sorted(_catalogue().agreements.values(), key=lambda a: a.id)
    if as_json:
        emit([_render.agreement_json(a) for a in agreements])
        return
    table = Table("id", "title", "parties", "topology", "scope")
    for a in agreements:
        topology = a.topology.value + (f" ({a.hub})" if a.hub else "")
        scope = "all military information" if a.scope_topics is None else ", ".join(sorted(a.scope_topics))
        table.add_row(a.id, a.title, " ".join(a.parties), topology, scope)
    console().print(table)


@agreement_app.command("status")
@guard
def agreement_status(
    agreement: Annotated[str, typer.Argument(help="Agreement id, e.g. kor-jpn-gsomia-2016.")],
    at: Annotated[str, typer.Option(help="ISO 8601 instant with offset; a bare date is local midnight.")],
    without: Annotated[
        list[str] | None, typer.Option(help="What-if: remove this event (by id; repeatable).")
    ] = None,
    with_file: Annotated[
        Path | None, typer.Option(help="What-if: add the [[events]] of this TOML file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The agreement's state at an instant, with its term end, next deadline and why."""
    subject = _catalogue().agreement(agreement)
    added = load_events(with_file, subject.timezone) if with_file else ()
    if without or added:
        subject = subject.what_if(without=without or (), adding=added)
    instant = parse_instant(at, subject.timezone)
    state = subject.state_at(instant)
    if as_json:
        data = _render.state_json(state)
        data["what_if"] = {
            "without": list(without or []),
            "added": [e.id for e in added],
            "set_aside": list(subject.set_aside),
        }
        emit(data)
        return
    out = console()
    _render.print_state(out, state, what_if=bool(without or added))
    for reason in subject.set_aside:
        out.print(f"  [magenta]what-if[/]: {escape(reason)}")


def _consent(spec: str, at: datetime, tz: tzinfo) -> Consent:
    parts = spec.split(":", 3)
    if len(parts) < 3:
        raise InstantError(
            f"--consent {spec!r}: expected KIND:ORIGINATOR:RECIPIENT[:GIVEN_AT] with KIND one of "
            f"{', '.join(k.value for k in ConsentKind)}"
        )
    try:
        kind = ConsentKind(parts[0])
    except ValueError as exc:
        raise InstantError(
            f"--consent {spec!r}: unknown kind {parts[0]!r}; use {', '.join(k.value for k in ConsentKind)}"
        ) from exc
    given = parse_instant(parts[3], tz) if len(parts) == 4 else at
    return Consent(kind, parts[1].upper(), parts[2].upper(), given, f"command line ({spec})")


@app.command()
@guard
def decide(
    sender: Annotated[str, typer.Option("--from", help="Sending party trigraph.")],
    recipient: Annotated[str, typer.Option("--to", help="Receiving party trigraph.")],
    classification: Annotated[str, typer.Option(help="Level in the originator's scheme (name or alias).")],
    purpose: Annotated[str, typer.Option(help="Purpose of the release (and of the item).")],
    at: Annotated[str, typer.Option(help="ISO 8601 instant with offset; a bare date is local midnight.")],
    originator: Annotated[str | None, typer.Option(help="Originating party (default: --from).")] = None,
    topic: Annotated[list[str] | None, typer.Option(help="Item topic (repeatable).")] = None,
    via: Annotated[str | None, typer.Option(help="Hub party to relay through.")] = None,
    releasable_to: Annotated[
        list[str] | None,
        typer.Option(help="Releasable-to party (repeatable; default: the route's receivers)."),
    ] = None,
    caveat: Annotated[list[str] | None, typer.Option(help="Caveat on the label (repeatable).")] = None,
    consent: Annotated[
        list[str] | None,
        typer.Option(
            help="Originator consent KIND:ORIGINATOR:RECIPIENT[:GIVEN_AT], KIND third_party, hub_relay or "
            "track_relay (repeatable; given at --at unless GIVEN_AT is set)."
        ),
    ] = None,
    item: Annotated[str | None, typer.Option(help="Item id (consents may name it).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide a release and explain every check. Exit code 0: allowed, 1: refused."""
    catalogue = _catalogue()
    sender, recipient = catalogue.party(sender).code, catalogue.party(recipient).code
    hubs = (catalogue.party(via).code,) if via else ()
    origin = catalogue.party(originator or sender).code
    engine = ReleaseEngine(catalogue)
    tz = _route_zone(catalogue, sender, recipient)
    instant = parse_instant(at, tz)
    label = catalogue.label(
        originator=origin,
        classification=classification,
        releasable_to=releasable_to if releasable_to is not None else (*hubs, recipient),
        purpose=purpose,
        topics=topic or (),
        caveats=caveat or (),
        created=instant,
    )
    consents = tuple(_consent(spec, instant, tz) for spec in consent or ())
    request = ReleaseRequest(
        label, sender, recipient, purpose, hubs, item, consents, assurances=assumed_assurances(catalogue)
    )
    decision = engine.decide(request, at=instant)
    behind = catalogue.assumptions_behind(decision.agreement, decision.at, decision.route)
    if as_json:
        emit(_render.decision_json(decision, behind))
    else:
        _render.print_decision(console(), decision, behind)
    raise typer.Exit(0 if decision.allowed else 1)


def _route_zone(catalogue: Catalogue, sender: str, recipient: str) -> tzinfo:
    """A bare date means local midnight in the zone of the agreements between the two."""
    for agreement in catalogue.agreements_of(sender):
        if recipient in agreement.parties:
            return agreement.timezone
    for agreement in catalogue.agreements_of(sender):
        return agreement.timezone
    raise InstantError(f"no agreement involves {sender}, so a bare date has no time zone; give an offset")


@app.command(
    help="Replay 2014–2023 over real KOR, JPN and USA nodes: what crossed, what was refused, and why. "
    "Then (text only) where KOR's missile tracks may go at key instants, and the duties after delivery "
    "on three fresh nodes: a translation, a reclassification, a possible compromise, a witnessed "
    "destruction with its signed record, the termination report."
)
@guard
def demo(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Keep the three nodes here (default: a temporary directory).")
    ] = None,
    engine_only: Annotated[
        bool, typer.Option(help="Ask the release engine alone, without nodes or envelopes.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replay 2014–2023 over real KOR, JPN and USA nodes: what crossed, what was refused, and why."""
    if engine_only:
        steps = replay_history(_catalogue())
        if as_json:
            emit([_render.step_json(s) for s in steps])
        else:
            _render.print_demo(console(), steps)
        return
    with contextlib.ExitStack() as stack:
        workdir = directory or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gsomia-demo-")))
        net_steps = replay_on_nodes(workdir)
        duties = [] if as_json else duties_on_nodes(workdir / "after-delivery")
    if as_json:
        emit([_render.net_step_json(s) for s in net_steps])
    else:
        _render.print_net_demo(console(), net_steps)
        print_stream_story(console(), _catalogue())
        _render.print_duties(console(), duties)


def main() -> None:
    """Console entry point."""
    app()
