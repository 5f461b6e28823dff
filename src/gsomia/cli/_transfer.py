"""``gsomia export``, ``gsomia import`` and ``gsomia import-receipts``: transfer by file (air gap)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from gsomia._files import private_dir, write_private
from gsomia.cli._common import DirOpt, JsonOpt, console, emit, guard
from gsomia.errors import ConfigError, GsomiaError, InvalidInputError
from gsomia.exchange import DEFAULT_VALIDITY, Transfer
from gsomia.node import Node, load_config
from gsomia.standards import export_binding


def _transfer(directory: Path) -> Transfer:
    return Transfer(Node(load_config(directory)).exchange)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{what} {path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{what} {path}: not UTF-8 text (truncated or altered?)") from exc


def _write(path: Path, text: str) -> None:
    """Whole or not at all, mode 0600, replacing (never following) a link planted at ``path``."""
    try:
        write_private(path, (text + "\n").encode())
    except ConfigError as exc:
        raise InvalidInputError(str(exc)) from exc


def _writable(path: Path) -> None:
    if not path.parent.is_dir():
        raise InvalidInputError(f"cannot write {path}: {path.parent} is not a directory")


@guard
def export_file(
    directory: DirOpt,
    actor: Annotated[str, typer.Option("--as", help="The release officer exporting.")],
    to: Annotated[str, typer.Option("--to", help="The recipient party.")],
    out: Annotated[Path, typer.Option("--out", help="The transfer file to write.")],
    via: Annotated[str | None, typer.Option(help="A hub the file goes to, to relay (TISA).")] = None,
    purpose: Annotated[str | None, typer.Option(help="Purpose (default: each item's).")] = None,
    authorise_relay: Annotated[
        bool, typer.Option("--authorise-relay", help="As originator, authorise the hub to pass it on.")
    ] = False,
    valid_days: Annotated[
        float, typer.Option(help="How long the file's envelopes stay valid (the courier's time).")
    ] = DEFAULT_VALIDITY.days,
    bindings: Annotated[
        Path | None,
        typer.Option(
            "--bindings",
            help="Also write each exported item as an ADatP-4778 binding data object here "
            "(ITEM.bdo.xml or .json, signed by this node): for the site's labelling tools and guards. "
            "Its payload is in the clear: keep the directory as you would the items.",
        ),
    ] = None,
    bindings_format: Annotated[
        str, typer.Option("--bindings-format", help="xml (XML Signature) or json (JWS).")
    ] = "xml",
    as_json: JsonOpt = False,
) -> None:
    """Write every item releasable to a party now as one signed, encrypted file for an air-gapped site.

    Each item is decided as a release would be; refused items are listed with their reason, never written.

    Recorded like a release: outbox (state exported), inventory and audit records. With --bindings,
    each exported item is also written as an ADatP-4778 binding data object (a decided, audited read).

    Exit code 1 when nothing was releasable (no file is written).
    """
    _writable(out)
    if bindings_format not in ("xml", "json"):
        raise InvalidInputError(f"--bindings-format {bindings_format!r}: use xml or json")
    if bindings is not None:
        try:
            private_dir(bindings)
        except ConfigError as exc:
            raise InvalidInputError(str(exc)) from exc
    node = Node(load_config(directory))
    transfer = Transfer(node.exchange)
    person = transfer.kernel.person(actor)
    done = transfer.export(
        person,
        to,
        via=via,
        purpose=purpose,
        authorise_relay=authorise_relay,
        validity=timedelta(days=valid_days),
    )
    if done.text is not None:
        _write(out, done.text)
    refused = [{"item": r.subject, "reason": r.reason} for r in done.refused]
    bound: list[str] = []
    if bindings is not None and done.text is not None:
        suffix = f".bdo.{bindings_format}"
        for entry in done.entries:
            if entry.item_id is None:
                continue
            try:  # the same read decision as `gsomia bdo export`, audited (channel bdo)
                data = export_binding(
                    node, person, entry.item_id, "xml" if bindings_format == "xml" else "json"
                )
            except GsomiaError as exc:
                refused.append({"item": entry.item_id, "reason": f"binding not written: {exc}"})
                continue
            path = bindings / f"{entry.item_id}{suffix}"
            try:
                write_private(path, data)
            except ConfigError as exc:
                raise InvalidInputError(str(exc)) from exc
            bound.append(str(path))
    if as_json:
        emit(
            {
                "transfer": done.transfer_id,
                "file": str(out) if done.text is not None else None,
                "recipient": done.recipient,
                "next_hop": done.next_hop,
                "exported": [{"item": e.item_id, "msg_id": e.msg_id} for e in done.entries],
                "bindings": bound,
                "refused": refused,
            }
        )
    else:
        for r in refused:
            console().print(f"refused {r['item']}: {r['reason']}")
        if done.text is not None:
            console().print(
                f"exported {len(done.entries)} items for {done.recipient} (sealed for {done.next_hop}) "
                f"to {out}; {len(done.refused)} refused; transfer {done.transfer_id}"
            )
            if bindings is not None:
                console().print(f"wrote {len(bound)} binding data objects to {bindings}")
        else:
            console().print(f"nothing releasable to {done.recipient}: no file written")
    if done.text is None:
        raise typer.Exit(1)


@guard
def import_file(
    directory: DirOpt,
    file: Annotated[Path, typer.Argument(help="A transfer file from a partner.")],
    receipts: Annotated[
        Path | None, typer.Option(help="Write the signed receipts here, to carry back to the sender.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a transfer file for this node and receive its items as the inbox would.

    A file altered, truncated or for another party is refused whole.

    A file imported again gets the same receipts (duplicate) and stores nothing twice.
    """
    if receipts is not None:
        _writable(receipts)
    config = load_config(directory)
    transfer = Transfer(Node(config).exchange)
    try:
        with file.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > config.max_import_bytes:  # refused before a byte of it is read
                raise InvalidInputError(
                    f"transfer file {file}: {size} bytes is more than this node reads "
                    f"({config.max_import_bytes}, max_import_bytes in node.toml)"
                )
            done = transfer.import_stream(handle, limit=config.max_import_bytes)
    except OSError as exc:
        raise InvalidInputError(f"transfer file {file}: cannot read ({exc.strerror})") from exc
    if receipts is not None:
        _write(receipts, done.receipts_text)
    results = [{"status": r["status"], "reason": r["reason"]} for r in done.results]
    if as_json:
        emit(
            {
                "transfer": done.transfer_id,
                "sender": done.sender,
                "results": results,
                "receipts": str(receipts) if receipts is not None else None,
            }
        )
        return
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    console().print(
        f"transfer {done.transfer_id} from {done.sender}: "
        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        + (f"; receipts written to {receipts}" if receipts is not None else "")
    )
    for r in results:
        if r["status"] == "refused":
            console().print(f"refused: {r['reason']}")


@guard
def import_receipts(
    directory: DirOpt,
    file: Annotated[Path, typer.Argument(help="A receipts file carried back from the receiving site.")],
    as_json: JsonOpt = False,
) -> None:
    """Verify the partner's signed receipts and mark the exported messages delivered."""
    done = _transfer(directory).import_receipts(_read(file, "receipts file"))
    refused = [{"receipt": r.subject, "reason": r.reason} for r in done.refused]
    if as_json:
        emit({"delivered": list(done.delivered), "already": list(done.already), "refused": refused})
        return
    console().print(
        f"{len(done.delivered)} delivered, {len(done.already)} already delivered, {len(refused)} refused"
    )
    for r in refused:
        console().print(f"refused {r['receipt']}: {r['reason']}")
