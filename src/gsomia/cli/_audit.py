"""``gsomia audit``: verify the node's Merkle log, prove an entry, read records, see partners."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

import typer

from gsomia._present import audit_view
from gsomia.cli._common import AsOpt, DirOpt, JsonOpt, console, emit, guard, open_node
from gsomia.errors import NotFoundError

audit_app = typer.Typer(
    help="The tamper-evident audit log (RFC 9162) and partners' heads.", no_args_is_help=True
)


@audit_app.command("verify")
@guard
def audit_verify(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """Rebuild the tree from the records and check every leaf and signed head; exit 1 names the bad entry.

    Reads only (safe beside a serving node): records not yet integrated are counted, not checked.
    """
    report = open_node(directory).audit.verify()
    if as_json:
        emit(asdict(report))
    elif report.ok:
        console().print(
            f"[green]ok[/]: {report.entries} entries, {report.heads_checked} signed heads verified"
            + (f" ({report.pending} record(s) not yet integrated)" if report.pending else "")
        )
    else:
        console().print(f"[red]FAILED[/] after {report.entries} good entries: {report.problem}")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("integrate")
@guard
def audit_integrate(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """Append the pending records to the tree and sign its head: what a serving node's loop does.

    For a node that is not serving; beside a serving one it is safe (one writer at a time, under
    the database's lock) and needless.
    """
    node = open_node(directory)
    before = node.audit.size()
    node.kernel.close_refusal_tallies()
    head = node.audit.sign_head()
    data = {"integrated": head.size - before, "size": head.size, "root": head.root.hex()}
    if as_json:
        emit(data)
    else:
        console().print(f"{data['integrated']} record(s) integrated; size {head.size}, root {data['root']}")


@audit_app.command("head")
@guard
def audit_head(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """The latest signed tree head (a serving node signs one within seconds of its log growing)."""
    node = open_node(directory)
    head = node.audit.head()
    data = {"size": head.size, "root": head.root.hex(), "jws": head.jws, "pending": node.audit.pending()}
    if as_json:
        emit(data)
    else:
        console().print(f"size {head.size}, root {head.root.hex()}")


@audit_app.command("prove")
@guard
def audit_prove(
    directory: DirOpt,
    entry: Annotated[str, typer.Argument(help="The entry id (receipts name it).")],
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            max=600,
            help="Seconds to wait for a serving node to bring a recent entry under a signed head.",
        ),
    ] = 10.0,
    as_json: JsonOpt = False,
) -> None:
    """The inclusion proof of one entry in the latest signed head."""
    log = open_node(directory).audit
    deadline = time.monotonic() + wait
    while True:
        try:
            proof = log.inclusion(entry)
            break
        except NotFoundError:
            if time.monotonic() >= deadline or not log.recorded(entry):
                raise
            time.sleep(0.2)
    if as_json:
        emit(proof)
    else:
        console().print(
            f"entry {entry} is leaf {proof['leaf_index']} of {proof['size']}; "
            f"{len(proof['proof'])} hashes prove it against the signed head"
        )


@audit_app.command("log")
@guard
def audit_log(
    directory: DirOpt,
    since: Annotated[int, typer.Option(help="Only records after this sequence number.")] = 0,
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. envelope.refused.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Read audit records (structured, oldest first)."""
    rows = open_node(directory).audit.records(None, since=since, kind=kind, limit=limit)
    data = [audit_view(r) for r in rows]
    if as_json:
        emit(data)
        return
    for d in data:
        console().print(
            f"{d['seq']:>6}  {d['kind']:<24} {d['outcome']:<8} {d['actor'] or '-':<10} {d['subject'] or ''}"
        )


_STYLE = {"consistent": "green", "inconsistent": "red", "forked": "bold red"}


@audit_app.command("partners")
@guard
def audit_partners(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """Each partner's last signed head and its log's status: forked (two heads it signed that cannot
    both be its log, until a security officer acknowledges it), consistent, inconsistent or pending."""
    rows = open_node(directory).audit.partners()
    if as_json:
        emit(rows)
        return
    for r in rows:
        style = _STYLE.get(r["status"], "yellow")
        forks = f"  {r['forks']} open fork(s)" if r["forks"] else ""
        console().print(
            f"{r['party']}  size {r['size']}  [{style}]{r['status']}[/]{forks}  {r['detail'] or ''}"
        )


@audit_app.command("forks")
@guard
def audit_forks(
    directory: DirOpt,
    party: Annotated[str | None, typer.Option(help="Only this partner's, e.g. KOR.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The forks found: both signed heads of each (kept as evidence), who showed the second, and
    whether a security officer acknowledged it."""
    rows = open_node(directory).audit.forks(None, party)
    if as_json:
        emit(rows)
        return
    for r in rows:
        sizes = " / ".join(f"{h['size']}:{h['root'][:12]}" for h in r["heads"])
        state = f"acknowledged by {r['acknowledged_by']}" if r["acknowledged"] else "[bold red]open[/]"
        console().print(f"{r['id']:>4}  {r['party']}  {sizes}  shown by {r['shown_by']}  {state}")


@audit_app.command("acknowledge")
@guard
def audit_acknowledge(
    directory: DirOpt,
    actor: AsOpt,
    party: Annotated[str, typer.Argument(help="The forked partner, e.g. KOR.")],
    note: Annotated[str, typer.Option(help="Why: what was done about it (recorded).")],
    through: Annotated[
        int | None, typer.Option(min=1, help="Only forks up to this id (the last one you read).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """As a security officer, acknowledge a partner's open forks: its status is no longer forked
    (the evidence stays). Audited; no other role may."""
    node = open_node(directory)
    answer = node.audit.acknowledge_fork(node.people.person(actor), party, note, through)
    if as_json:
        emit(answer)
    else:
        done = len(answer["acknowledged"])
        console().print(f"{party}: {done} fork(s) acknowledged; now {answer['status']}")
