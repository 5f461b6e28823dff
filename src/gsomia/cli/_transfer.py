"""``gsomia export``, ``gsomia import`` and ``gsomia import-receipts``: transfer by file (air gap)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from gsomia.cli._common import DirOpt, JsonOpt, console, emit, guard
from gsomia.errors import InvalidInputError
from gsomia.exchange import DEFAULT_VALIDITY, Transfer
from gsomia.node import Node, load_config


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
    try:
        path.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot write {path} ({exc.strerror})") from exc


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
    as_json: JsonOpt = False,
) -> None:
    """Write every item releasable to a party now as one signed, encrypted file for an air-gapped site.

    Each item is decided as a release would be; refused items are listed with their reason, never written.

    Recorded like a release: outbox (state exported), inventory and audit records.

    Exit code 1 when nothing was releasable (no file is written).
    """
    _writable(out)
    transfer = _transfer(directory)
    done = transfer.export(
        transfer.kernel.person(actor),
        to,
        via=via,
        purpose=purpose,
        authorise_relay=authorise_relay,
        validity=timedelta(days=valid_days),
    )
    if done.text is not None:
        _write(out, done.text)
    refused = [{"item": r.subject, "reason": r.reason} for r in done.refused]
    if as_json:
        emit(
            {
                "transfer": done.transfer_id,
                "file": str(out) if done.text is not None else None,
                "recipient": done.recipient,
                "next_hop": done.next_hop,
                "exported": [{"item": e.item_id, "msg_id": e.msg_id} for e in done.entries],
                "refused": refused,
            }
        )
    else:
        for r in refused:
            console().print(f"refused {r['item']}: {r['reason']}")
        if done.text is not None:
            console().print(
                f"exported {len(done.entries)} items for {done.recipient} (sealed for {done.next_hop}) "
                f"to {out}; {len(refused)} refused; transfer {done.transfer_id}"
            )
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
    done = _transfer(directory).import_file(_read(file, "transfer file"))
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
