"""``gsomia audit``: verify the node's Merkle log, prove an entry, read records, see partners."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from gsomia._present import audit_view
from gsomia.cli._common import DirOpt, JsonOpt, console, emit, guard, open_node

audit_app = typer.Typer(
    help="The tamper-evident audit log (RFC 9162) and partners' heads.", no_args_is_help=True
)


@audit_app.command("verify")
@guard
def audit_verify(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """Rebuild the tree from the records and check every leaf and signed head; exit 1 names the bad entry."""
    node = open_node(directory)
    node.audit.integrate()
    report = node.audit.verify()
    if as_json:
        emit(asdict(report))
    elif report.ok:
        console().print(
            f"[green]ok[/]: {report.entries} entries, {report.heads_checked} signed heads verified"
        )
    else:
        console().print(f"[red]FAILED[/] after {report.entries} good entries: {report.problem}")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("head")
@guard
def audit_head(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """Append what is pending and sign the tree head now."""
    head = open_node(directory).audit.sign_head()
    data = {"size": head.size, "root": head.root.hex(), "jws": head.jws}
    if as_json:
        emit(data)
    else:
        console().print(f"size {head.size}, root {head.root.hex()}")


@audit_app.command("prove")
@guard
def audit_prove(
    directory: DirOpt,
    entry: Annotated[str, typer.Argument(help="The entry id (receipts name it).")],
    as_json: JsonOpt = False,
) -> None:
    """The inclusion proof of one entry in the latest signed head."""
    proof = open_node(directory).audit.inclusion(entry)
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


@audit_app.command("partners")
@guard
def audit_partners(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """Each partner's last signed head and whether its log stayed consistent."""
    rows = open_node(directory).audit.partners()
    if as_json:
        emit(rows)
        return
    for r in rows:
        style = (
            "green" if r["status"] == "consistent" else ("red" if r["status"] == "inconsistent" else "yellow")
        )
        console().print(f"{r['party']}  size {r['size']}  [{style}]{r['status']}[/]  {r['detail'] or ''}")
