"""``gsomia node``, ``gsomia person`` and ``gsomia item``: operate a node from its host."""

from __future__ import annotations

import base64
import binascii
import gc
import json
import logging
import sys
from dataclasses import replace
from datetime import UTC, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from gsomia._codec import person_to_dict
from gsomia._logs import configure as configure_logs
from gsomia._present import envelope_versions_view, item_view, outbox_view, peer_view, token_view
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
    read_json,
)
from gsomia.core.instants import parse_instant
from gsomia.crypto.tls import TlsFiles
from gsomia.errors import InvalidInputError
from gsomia.exchange import HttpTransport
from gsomia.node import Node, PortionIngest, init_node_dir, set_endpoint, set_tls
from gsomia.store import ItemFilter

node_app = typer.Typer(help="Create, migrate and serve a party's node.", no_args_is_help=True)
person_app = typer.Typer(help="The node's register of people and their API tokens.", no_args_is_help=True)
peer_app = typer.Typer(help="Partner nodes: identity documents pinned per agreement.", no_args_is_help=True)
outbox_app = typer.Typer(help="The node's outbox of releases and messages.", no_args_is_help=True)
item_app = typer.Typer(
    help="Ingest, list and read items at a node (access rules apply).", no_args_is_help=True
)


@node_app.command("init")
@guard
def node_init(
    party: Annotated[str, typer.Option(help="The party this node serves (trigraph).")],
    directory: DirOpt,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default: SQLite in the directory).")
    ] = None,
    endpoint: Annotated[str, typer.Option(help="URL partners reach this node at.")] = "http://127.0.0.1:8443",
    as_json: JsonOpt = False,
) -> None:
    """Create a node directory: configuration, keys, a migrated database."""
    config = init_node_dir(directory, party.upper(), database_url, endpoint)
    node = Node(config)
    revision = node.schema_revision()
    node.close()
    if as_json:
        emit(
            {
                "party": config.party,
                "dir": str(directory),
                "database_url": config.database_url,
                "revision": revision,
            }
        )
        return
    console().print(
        f"node for {config.party} created in {directory} (schema {revision}).\n"
        f"Next: gsomia person add --dir {directory} ... --role administrator"
    )


@node_app.command("migrate")
@guard
def node_migrate(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """Apply pending schema migrations (also done on every start)."""
    node = open_node(directory)
    revision = node.schema_revision()
    node.close()
    if as_json:
        emit({"revision": revision})
    else:
        console().print(f"schema at revision {revision}")


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


@node_app.command("serve")
@guard
def node_serve(
    directory: DirOpt,
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8443,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    sender: Annotated[
        bool,
        typer.Option(
            "--sender/--no-sender",
            help="Deliver the outbox and share tree heads with partners in the background "
            "(the audit log is integrated and its head signed either way).",
        ),
    ] = True,
    stream_nats: Annotated[
        str | None, typer.Option(help="Fan the missile-track stream out through NATS JetStream at this URL.")
    ] = None,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            help="json: one JSON object a line on standard error (a request id, the actor, the outcome; "
            "never a token or a payload); text: warnings only, as plain text."
        ),
    ] = LogFormat.JSON,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="Serve HTTPS with this certificate chain (PEM); give --tls-key with it."),
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The certificate's private key (PEM).")] = None,
) -> None:
    """Serve the node's REST API (OpenAPI at /openapi.json), its Prometheus metrics (/metrics) and
    its background work (each kind held by one process of the node at a time, through a lease);
    over HTTPS with mutual TLS when node.toml names TLS files (tls_cert, tls_key, tls_ca), or over
    HTTPS alone with --tls-cert and --tls-key (the dashboard's cookie is Secure under either)."""
    import ssl

    import uvicorn  # only this command needs the server

    tls = _tls_files(tls_cert, tls_key)

    from gsomia.api import (  # the API imports the CLI's neighbours, not the reverse
        SettledServer,
        create_app,
        server_config,
    )
    from gsomia.stream import NatsBus, StreamService, node_stream_names

    node = open_node(directory)
    mutual = node.config.tls  # node.toml's TLS files: HTTPS and mutual TLS with partners
    if mutual is not None and tls is not None:
        raise InvalidInputError(
            "node.toml names this node's TLS files (tls_cert, tls_key, tls_ca): serve without --tls-cert"
        )
    names = node_stream_names(node.config.identity())  # the node's own: shared by its processes only
    bus = NatsBus(stream_nats, stream=names[0], subject=names[1]) if stream_nats else None
    # over NATS the node may run as several processes: each outbound link is held by one (a lease)
    stream = StreamService(node, bus, link_leases=node.link_lease if bus is not None else None)
    config = server_config(
        create_app(node, sender=sender, stream=stream, log_writer=True),  # the log grows either way
        mutual,  # checked here: TLS files that cannot serve are refused before serving
        host=host,
        port=port,
        log_level="warning",
        log_config=None if log_format is LogFormat.JSON else uvicorn.config.LOGGING_CONFIG,
        ws_per_message_deflate=False,  # never compress secrets beside attacker-chosen data (CRIME/BREACH)
        timeout_graceful_shutdown=5,  # live streams (SSE, WebSocket) must not hold the shutdown
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
    )
    gc.freeze()  # start-up objects leave the collector's view: no full collections stalling requests
    base = f"{'https' if tls or mutual else 'http'}://{host if ':' not in host else f'[{host}]'}:{port}"
    console().print(
        f"{node.party} node serving on {base} (API; OpenAPI at {base}/openapi.json), "
        f"dashboard at {base}/ui; stop with Ctrl-C"
    )
    sys.stdout.flush()
    if log_format is LogFormat.JSON:
        configure_logs(logging.INFO)
        logging.getLogger("uvicorn").setLevel(logging.WARNING)  # its access log is the node's own
    # once started, the lifespan's objects (the routes' models, warmed) are collected and frozen too
    SettledServer(config).run()


def _tls_files(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """The certificate and key files, checked before serving: both or neither, readable, and a
    key that belongs to the certificate (``InvalidInputError`` naming what is wrong)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidInputError("give --tls-cert and --tls-key together")
    import ssl

    for path in (cert, key):
        if not path.is_file():
            raise InvalidInputError(f"no such file: {path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError):
        raise InvalidInputError(
            f"{cert.name} and {key.name} are not a PEM certificate and its private key"
        ) from None
    return str(cert), str(key)


@node_app.command("identity")
@guard
def node_identity(
    directory: DirOpt,
    endpoint: Annotated[str | None, typer.Option(help="Set the published endpoint first.")] = None,
    pin: Annotated[
        list[str] | None,
        typer.Option(
            help="Name this certificate pin too (repeatable): a certificate rotation's next certificate."
        ),
    ] = None,
) -> None:
    """Print this node's identity document (JSON), signed by its signing keys, to hand to partners
    out of band."""
    if endpoint is not None:
        set_endpoint(directory, endpoint)
    emit(open_node(directory).exchange.identity(tuple(pin or ())))


@node_app.command("tls")
@guard
def node_tls(
    directory: DirOpt,
    cert: Annotated[
        Path | None, typer.Option(help="The node's certificate chain (PEM), its own first.")
    ] = None,
    key: Annotated[Path | None, typer.Option(help="The certificate's private key (PEM).")] = None,
    ca: Annotated[
        Path | None, typer.Option(help="The authorities partners' certificates must come from (PEM).")
    ] = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="Name no TLS files: plain HTTP (a loopback demo only).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Name the node's TLS files in node.toml after checking them (HTTPS, mutual TLS with partners);
    prints the certificate's pin, which the identity document (`node identity`) now publishes."""
    if plain:
        if cert or key or ca:
            raise InvalidInputError("--plain names no TLS files: give it alone")
        set_tls(directory, None, None, None)
        if as_json:
            emit({"tls": None})
        else:
            console().print("no TLS files: the node serves plain HTTP")
        return
    if cert is None or key is None or ca is None:
        raise InvalidInputError("give --cert, --key and --ca together (or --plain)")
    files = TlsFiles(cert.resolve(), key.resolve(), ca.resolve())
    files.server_context()  # each refused here, named, before node.toml changes
    files.client_context()
    set_tls(directory, str(files.cert), str(files.key), str(files.ca))
    pin = files.pin()
    if as_json:
        emit({"tls": {"cert": str(files.cert), "key": str(files.key), "ca": str(files.ca)}, "pin": pin})
    else:
        console().print(
            f"TLS files named in node.toml; certificate pin {pin}: send partners the new identity"
        )


@node_app.command("rotate-keys")
@guard
def node_rotate_keys(
    directory: DirOpt,
    overlap_days: Annotated[float, typer.Option(help="How long the old keys stay valid.")] = 7.0,
) -> None:
    """Make new signing and encryption keys; print the new identity document to send to partners."""
    emit(open_node(directory).exchange.rotate_keys(None, timedelta(days=overlap_days)))


@peer_app.command("revoke-key")
@guard
def peer_revoke_key(
    directory: DirOpt,
    party: Annotated[str, typer.Option(help="The partner whose key is revoked.")],
    kid: Annotated[str, typer.Option(help="The key id (JWK thumbprint).")],
    at: Annotated[str | None, typer.Option(help="From this instant (default: now).")] = None,
) -> None:
    """Refuse a partner's key from an instant on (as told through the diplomatic channel)."""
    node = open_node(directory)
    when = parse_instant(at, UTC) if at else node.clock()
    done = node.exchange.revoke_peer_key(None, party.upper(), kid, when)
    already = "" if done.changed else " (revoked already: nothing changed)"
    console().print(f"{party.upper()} key {kid} refused from {done.revoked_at.isoformat()}{already}")


_FORMATS = {1: "JOSE (gsomia-envelope/1)", 2: "COSE (gsomia-envelope/2 and /3)", 3: "gsomia-envelope/3 only"}


@peer_app.command("envelopes")
@guard
def peer_envelopes(
    directory: DirOpt,
    party: Annotated[
        str | None,
        typer.Option(help="The partner whose lowest envelope version is set, or 'all' for every partner."),
    ] = None,
    lowest: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=3,
            help="The lowest envelope version opened from it: 1 JOSE, 2 COSE (base64url or base64), "
            "3 only what nodes seal now. Omit both to show what is set.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="For 'all' only: from this instant on (a cut-off; default: now), e.g. 2027-01-01T00:00Z.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or set the envelope versions this node opens from its partners.

    A partner whose COSE envelope has opened here is no longer heard in JOSE (set automatically, a
    'downgrade' refused and audited); an administrator can raise or lower a partner's lowest version,
    and set a cut-off after which JOSE (or anything older than version 3) is refused from everyone.
    Each row shows its stored lowest and, as 'opened now' ('effective' in --json), the lowest version
    the inbox in fact opens from that partner now: the higher of its row and the 'all' row in force
    ('all': from a partner with no row of its own)."""
    node = open_node(directory)
    if party is not None or lowest is not None or since is not None:
        if party is None or lowest is None:
            raise InvalidInputError("set with both --party and --lowest (and --from for 'all')")
        who = "*" if party.lower() == "all" else party.upper()
        when = parse_instant(since, UTC) if since else None
        node.exchange.set_envelope_versions(None, who, lowest, when)
    stored = node.exchange.envelope_versions()
    rows = sorted(stored.values(), key=lambda r: r.party)
    # the inbox's decision now: this row and 'all' together
    shown = envelope_versions_view(rows, node.exchange.envelope_floors(stored))
    if as_json:
        emit(shown)
        return
    if not rows:
        console().print("every envelope version is opened from every partner (nothing set)")
    for row, view in zip(rows, shown, strict=True):
        at = f"{'from' if row.pending else 'since'} {view['since']}"
        why = "it sent COSE" if row.cause == "sent" else f"set by {row.by}"
        console().print(
            f"{view['party']}  lowest {row.lowest}: {_FORMATS[row.lowest]}  {at}  ({why})"
            f"  opened now: {view['effective']} and up"
        )


@outbox_app.command("prove")
@guard
def outbox_prove(
    directory: DirOpt,
    msg_id: Annotated[str, typer.Argument(help="A delivered message's id.")],
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            max=600,
            help="Seconds to keep asking while the receiver has not yet signed a head covering the entry.",
        ),
    ] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """Prove a delivery: verify the receiver's inclusion proof of the log entry its receipt names."""
    node = open_node(directory)
    with HttpTransport(tls=node.kernel.tls) as transport:  # only this command talks to a partner directly
        proof = node.heads.delivery_proof(msg_id, transport, wait=wait)
    if as_json:
        emit(proof)
    else:
        console().print(
            f"{msg_id}: {proof['receiver']} logged it as entry {proof['log_entry']}, leaf "
            f"{proof['leaf_index']} of its signed log of {proof['size']} — proof verified"
        )


@peer_app.command("add")
@guard
def peer_add(
    directory: DirOpt,
    identity: Annotated[
        Path, typer.Option(help="The partner's signed identity document (JSON file: `gsomia node identity`).")
    ],
    agreement: Annotated[list[str], typer.Option(help="Agreement the link is registered for (repeatable).")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Take a registered partner's document afresh without its registered keys' signature "
            "(checked out of band: its keys all ended, say).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register a partner node for the named agreements (Art. 9: registered G2G links only).

    The document must be signed by the keys it names; a new document of a registered partner also
    by one of its registered keys still valid, and issued after the registered one."""
    peer = open_node(directory).exchange.register_peer(
        None, read_json(identity, "identity"), agreement, replace=replace
    )
    if as_json:
        emit(peer_view(peer, agreement))
    else:
        console().print(f"registered {peer.party} ({peer.endpoint}) for {', '.join(sorted(agreement))}")


@peer_app.command("list")
@guard
def peer_list(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """The registered partner nodes and their links."""
    rows = [peer_view(p, links) for p, links in open_node(directory).exchange.peers()]
    if as_json:
        emit(rows)
        return
    for r in rows:
        console().print(f"{r['party']}  {r['endpoint']}  {', '.join(r['agreements'])}")


@item_app.command("release")
@guard
def item_release(
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
    """Queue a release: decided now, decided again when sent, delivered by the node's sender."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    row = node.exchange.release(
        node.people.person(actor), item_id, to, via=via, purpose=purpose, authorise_relay=authorise_relay
    )
    if as_json:
        emit(outbox_view(row))
    else:
        console().print(f"queued {row.msg_id} for {row.final_recipient} (next hop {row.recipient})")


@outbox_app.command("list")
@guard
def outbox_list(
    directory: DirOpt,
    state: Annotated[
        str | None, typer.Option(help="pending, exported (by file), delivered or undeliverable.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """What this node sent or is sending: state, attempts, reason, receipt."""
    rows = open_node(directory).exchange.outbox(None, state=state)
    data = [outbox_view(r) for r in rows]
    if as_json:
        emit(data)
        return
    for d in data:
        what = f"item {d['item_id']}" if d["item_id"] else str(d["kind"])  # tree heads, duties have no item
        receipt = f"receipt from {d['recipient']}" if d["receipt"] is not None else "no receipt yet"
        console().print(
            f"{d['msg_id']}  {what}  → {d['final_recipient']}  {d['state']}  {receipt}"
            + (f"  ({d['last_error']})" if d["last_error"] else "")
        )


@outbox_app.command("resend")
@guard
def outbox_resend(
    directory: DirOpt,
    actor: AsOpt,
    msg_id: Annotated[str, typer.Argument(help="The undeliverable message's id (gsomia outbox list).")],
    as_json: JsonOpt = False,
) -> None:
    """Send an undeliverable duty or consent message again: a fresh envelope, the same signed body."""
    node = open_node(directory)
    row = node.exchange.resend(node.people.person(actor), msg_id)
    if as_json:
        emit(outbox_view(row))
    else:
        console().print(f"queued {row.msg_id} again for {row.final_recipient} (next hop {row.recipient})")


@person_app.command("add")
@guard
def person_add(
    directory: DirOpt,
    person_id: Annotated[str, typer.Option("--id", help="Unique id.")],
    name: Annotated[str, typer.Option(help="Full name.")],
    nationality: Annotated[str, typer.Option(help="Party trigraph.")],
    clearance: Annotated[str | None, typer.Option(help="Level in the nationality's scheme.")] = None,
    topic: Annotated[list[str] | None, typer.Option(help="Need-to-know topic (repeatable).")] = None,
    role: Annotated[
        list[str] | None, typer.Option(help="analyst, release_officer, security_officer, administrator.")
    ] = None,
    contractor: Annotated[
        bool, typer.Option("--contractor", help="A contractor's employee, not an official (Art. 7(2), 16).")
    ] = False,
    contractor_measures: Annotated[
        str | None,
        typer.Option(help="With --contractor: the reference of the Art. 16 facility and personnel measures."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a person (as the node's operator)."""
    node = open_node(directory)
    person = node.people.add_person(
        None,
        {
            "id": person_id,
            "name": name,
            "nationality": nationality,
            "clearance": clearance,
            "need_to_know": topic or [],
            "roles": role or [],
            "employment": "contractor" if contractor else "official",
            "contractor_measures": contractor_measures,
        },
    )
    if as_json:
        emit(person_to_dict(person))
    else:
        console().print(
            f"registered {person.id} ({person.nationality}, {person.clearance or 'no clearance'})"
        )


@person_app.command("list")
@guard
def person_list(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """List the register of people."""
    people = [person_to_dict(p) for p in open_node(directory).people.list_people(None)]
    if as_json:
        emit(people)
        return
    for p in people:
        console().print(
            f"{p['id']}  {p['nationality']}  {p['clearance'] or '-'}  roles={','.join(p['roles'])}  "
            f"need-to-know={','.join(p['need_to_know'])}  {'active' if p['active'] else 'disabled'}"
        )


@person_app.command("token")
@guard
def person_token(
    directory: DirOpt,
    person_id: Annotated[str, typer.Argument(help="The person the token is for.")],
    days: Annotated[int, typer.Option(help="Lifetime in days (1-365).")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Issue an API token; it is printed once and only its hash is kept."""
    token_id, token, expires = open_node(directory).credentials.issue(None, person_id, days)
    if as_json:
        emit({"id": token_id, "token": token, "expires": expires.isoformat()})
    else:
        console().print(f"token {token_id} (expires {expires.isoformat()}):\n{token}")


@person_app.command("tokens")
@guard
def person_tokens(
    directory: DirOpt,
    person_id: Annotated[str, typer.Argument(help="The person whose tokens to list.")],
    as_json: JsonOpt = False,
) -> None:
    """List a person's tokens and dashboard sessions (ids, lifetimes, lineage; never a secret)."""
    rows = [token_view(r) for r in open_node(directory).credentials.of(None, person_id)]
    if as_json:
        emit(rows)
        return
    for r in rows:
        state = f"revoked {r['revoked']}" if r["revoked"] else f"expires {r['expires']}"
        minted = f"  minted by {r['minted_by']}" if r["minted_by"] else ""
        console().print(f"{r['id']}  {r['kind']}  created {r['created']}  {state}{minted}")


@person_app.command("revoke-token")
@guard
def person_revoke_token(
    directory: DirOpt,
    token_id: Annotated[str, typer.Argument(help="The token's id (not its secret).")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token, and every token and session minted from it."""
    revoked = open_node(directory).credentials.revoke(None, token_id)
    if as_json:
        emit({"revoked": revoked})
    else:
        console().print(f"revoked {', '.join(revoked)}")


@person_app.command("disable")
@guard
def person_disable(
    directory: DirOpt,
    person_id: Annotated[str, typer.Argument(help="The person to disable.")],
    as_json: JsonOpt = False,
) -> None:
    """Disable a person: all their tokens and sessions (and what was minted from them) are revoked."""
    person, revoked = open_node(directory).people.set_active(None, person_id, False)
    if as_json:
        emit({"person": person_to_dict(person), "revoked": revoked})
    else:
        console().print(f"disabled {person.id}; revoked {len(revoked)} token(s) and session(s)")


@person_app.command("enable")
@guard
def person_enable(
    directory: DirOpt,
    person_id: Annotated[str, typer.Argument(help="The person to enable again.")],
    as_json: JsonOpt = False,
) -> None:
    """Enable a person again (their revoked tokens stay revoked: issue a new one)."""
    person, _ = open_node(directory).people.set_active(None, person_id, True)
    if as_json:
        emit({"person": person_to_dict(person), "revoked": []})
    else:
        console().print(f"enabled {person.id}")


@item_app.command("ingest")
@guard
def item_ingest(
    directory: DirOpt,
    actor: AsOpt,
    label: Annotated[Path | None, typer.Option(help="JSON file holding the security label.")] = None,
    payload: Annotated[Path | None, typer.Option(help="File holding the payload.")] = None,
    portions: Annotated[
        Path | None,
        typer.Option(
            help="Instead of --label and --payload: a JSON file listing the item's portions, each "
            "{id, label, payload | payload_base64} (a report's body and its tearline)."
        ),
    ] = None,
    binary: Annotated[bool, typer.Option(help="Store the payload as bytes, not JSON.")] = False,
    item_id: Annotated[str | None, typer.Option("--id", help="Item id (default: a UUID).")] = None,
    received_from: Annotated[
        str | None,
        typer.Option(
            help="Refused: another party's item arrives through the exchange, under its originator's "
            "signature, never by ingest."
        ),
    ] = None,
    agreement: Annotated[str | None, typer.Option(help="Refused, with --received-from.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest a labelled item of this node's own party (another party's arrives through the exchange),
    or with --portions an item in portions, each portion with its own label."""
    source = received_from.upper() if received_from else None
    node = open_node(directory)
    person = node.people.person(actor)
    if portions is not None and label is None and payload is None:
        parts = _portions(read_json(portions, "portions"))
        item = node.items.ingest(
            person,
            label=None,
            payload=b"",
            item_id=item_id,
            received_from=source,
            agreement=agreement,
            portions=parts,
        )
    elif portions is not None or label is None or payload is None:
        raise InvalidInputError("give --label and --payload, or --portions alone")
    else:
        if binary:
            data = payload.read_bytes()
        else:
            data = json.dumps(read_json(payload, "payload"), ensure_ascii=False).encode()
        item = node.items.ingest(
            person,
            label=read_json(label, "label"),
            payload=data,
            payload_type="bytes" if binary else "json",
            item_id=item_id,
            received_from=source,
            agreement=agreement,
        )
    if as_json:
        emit(item_view(item))
    else:
        marks = "".join(f"\n  portion {m.id}: {m.label.classification}" for m in item.portions)
        console().print(f"stored {item.id}: {item.label.originator} {item.label.classification}{marks}")


def _portions(data: Any) -> list[PortionIngest]:
    """A portions file: a list of {id, label, payload | payload_base64}."""
    if not isinstance(data, list) or not data:
        raise InvalidInputError("portions: expected a list of {id, label, payload | payload_base64}")
    parts = []
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise InvalidInputError("portions: each is {id, label, payload | payload_base64}")
        if ("payload" in entry) == ("payload_base64" in entry):
            raise InvalidInputError(f"portion {entry['id']}: give exactly one of payload or payload_base64")
        if "payload" in entry:
            body, kind = json.dumps(entry["payload"], ensure_ascii=False).encode(), "json"
        else:
            try:
                body, kind = base64.b64decode(str(entry["payload_base64"]), validate=True), "bytes"
            except (binascii.Error, ValueError) as exc:
                raise InvalidInputError(f"portion {entry['id']}: payload_base64 is not base64") from exc
        parts.append(PortionIngest(entry["id"], entry.get("label"), body, kind))
    return parts


@item_app.command("list")
@guard
def item_list(
    directory: DirOpt,
    actor: AsOpt,
    originator: Annotated[str | None, typer.Option()] = None,
    classification: Annotated[str | None, typer.Option()] = None,
    topic: Annotated[str | None, typer.Option()] = None,
    received_from: Annotated[str | None, typer.Option()] = None,
    cursor: Annotated[str | None, typer.Option(help="Continue after a previous page.")] = None,
    limit: Annotated[int, typer.Option(help="Page size (1-1000).")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List the items the person may read, a page at a time."""
    node = open_node(directory)
    where = ItemFilter(
        originator=originator.upper() if originator else None,
        classification=classification,
        topic=topic,
        received_from=received_from.upper() if received_from else None,
    )
    page = node.items.list_items(node.people.person(actor), where, cursor, limit)
    if as_json:
        emit(
            {
                "items": [item_view(i) for i in page.items],
                "next_cursor": page.next_cursor,
            }
        )
        return
    for item in page.items:
        console().print(
            f"{item.id}  {item.label.originator} {item.label.classification}  "
            f"{','.join(sorted(item.label.topics))}"
        )
    console().print(
        f"{len(page.items)} shown" + (f"; next: --cursor {page.next_cursor}" if page.next_cursor else "")
    )


@item_app.command("grant-purpose")
@guard
def item_grant_purpose(
    directory: DirOpt,
    actor: AsOpt,
    item_id: Annotated[str, typer.Argument(help="The item's id (this node originated it).")],
    holder: Annotated[str, typer.Option(help="The party holding it that may use it for the purpose.")],
    purpose: Annotated[str, typer.Option(help="The new purpose it may be used for.")],
    reason: Annotated[str, typer.Option(help="The reference of the consent; it reaches the holder.")],
    originator: OriginatorOpt = None,
) -> None:
    """As originator, consent to a holder using the item for another purpose (Art. 6(b)): signed,
    sent to the holder; it unlocks that purpose, for that holder, of that item only."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    row = node.exchange.grant_purpose(node.people.person(actor), item_id, holder, purpose, reason)
    console().print(f"consent {row.id}: {row.recipient} may use {item_id} for {purpose!r}; sent")


@item_app.command("show")
@guard
def item_show(
    directory: DirOpt,
    actor: AsOpt,
    item_id: Annotated[str, typer.Argument(help="The item's id.")],
    purpose: Annotated[
        str | None,
        typer.Option(
            help="The purpose you read it for (default: the one it was provided for); another needs "
            "the originator's consent to it (Art. 6(b))."
        ),
    ] = None,
    originator: OriginatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read one item and its payload (the read is decided and audited)."""
    node = open_node(directory)
    item_id = item_ref(node, actor, item_id, originator)
    reader = node.people.person(actor)
    item, payload = node.items.read(reader if purpose is None else replace(reader, purpose=purpose), item_id)
    data = item_view(item, payload)
    if as_json:
        emit(data)
    else:
        console().print_json(json.dumps(data, ensure_ascii=False))
