"""Transfer by file to a disconnected (air-gapped) site: a release by another channel.

``export`` decides every item at the node for one recipient at one instant, through
:meth:`Exchange.prepare_release` (the same decision ``release`` makes), and writes the
allowed ones as ONE file of the exchange's own sealed envelopes::

    {"format": "gsomia-transfer/1", "manifest": "<JWS>", "envelopes": ["<envelope>", ...]}

The manifest is signed by the sender (:func:`sign_origin`) and names the transfer, the
sender, the next hop it is sealed for, the final recipient, its expiry and each envelope's
message id and SHA-256 — no item ids or labels in the clear. The outbox rows are written
with state ``exported`` (the network sender leaves them alone), with an ``exported``
inventory entry and an ``item.release`` audit record each (``channel: file``); a refused
item is never in the file, only in the answer to the exporter and the audit records.

``import_file`` at the receiving node verifies the manifest's signature, that the file is
for this node and that every envelope is the one the manifest names, then hands the
envelopes to :meth:`Exchange.receive` — the network's inbox path: open, verify, decide,
store, dedupe by message id and item id, sign receipts. A replayed file gets the same
receipts back (``duplicate``) and stores nothing twice. The receipts go back on paper's
digital equivalent, a receipts file; ``import_receipts`` at the sender verifies each
signed receipt and marks its exported entry delivered. Every refusal is audited.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import ijson  # type: ignore[import-untyped]  # a streaming JSON parser: a transfer file is never held whole

from gsomia._codec import canonical
from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us, parse_instant
from gsomia.crypto.envelope import sign_origin, verify_origin
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.errors import EnvelopeError, GsomiaError, InstantError, InvalidInputError, TransportError
from gsomia.exchange._messages import envelope_routing, receipt_id
from gsomia.exchange._release import Refusal
from gsomia.exchange._service import Exchange
from gsomia.exchange._transport import PeerTransport
from gsomia.store import AuditRow, ConsentRow, InventoryEntry, ItemFilter, OutboxRow

__all__ = [
    "DEFAULT_VALIDITY",
    "RECEIPTS_FORMAT",
    "TRANSFER_FORMAT",
    "Export",
    "FileTransport",
    "Import",
    "ReceiptsApplied",
    "Refusal",
    "Transfer",
]

TRANSFER_FORMAT = "gsomia-transfer/1"
RECEIPTS_FORMAT = "gsomia-receipts/1"
MANIFEST_KIND = "transfer-manifest"
# A courier takes days, not the network's minutes: the envelopes in a file live this long.
DEFAULT_VALIDITY = timedelta(days=14)
_SCAN = 500  # items read from the store per query while exporting
_IMPORT_BATCH = 100  # envelopes received per inbox batch while importing a file
# The format and the signed manifest open the file and are read before anything else: within this
# many bytes (a manifest names each envelope by id and digest: ~100 bytes each).
_MAX_HEADER = 16 * 1_048_576


class _TooLarge(Exception):
    """A transfer file longer than the node reads (``max_import_bytes``)."""


class _Bounded(io.RawIOBase):
    """``source`` read through a counter: past ``limit`` bytes, reading stops with :class:`_TooLarge`."""

    def __init__(self, source: BinaryIO, limit: int | None, refusal: str | None = None) -> None:
        self.source = source
        self.limit = limit
        self.count = 0
        self.refusal = refusal or (
            f"transfer file refused: larger than this node reads ({limit} bytes, node.max_import_bytes)"
        )

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size if size is not None and size >= 0 else 65536)
        self.count += len(data)
        if self.limit is not None and self.count > self.limit:
            raise _TooLarge(self.refusal)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@dataclass(frozen=True, slots=True)
class Export:
    """What an export wrote: the file's text (``None`` when nothing was releasable) and what was refused."""

    transfer_id: str
    recipient: str
    next_hop: str
    text: str | None
    entries: tuple[OutboxRow, ...]
    refused: tuple[Refusal, ...]


@dataclass(frozen=True, slots=True)
class Import:
    """What an import did: one result per envelope (as ``/inbox`` answers) and the receipts file."""

    transfer_id: str
    sender: str
    results: tuple[dict[str, Any], ...]
    receipts_text: str


@dataclass(frozen=True, slots=True)
class ReceiptsApplied:
    """What a receipts file settled at the sender."""

    delivered: tuple[str, ...]
    already: tuple[str, ...]
    refused: tuple[Refusal, ...]


class Transfer:
    """Export to and import from a file, over a node's :class:`Exchange`."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.kernel = exchange.kernel

    @property
    def party(self) -> str:
        return self.exchange.party

    def _refuse(self, kind: str, reason: str, **detail: Any) -> InvalidInputError:
        self.kernel.record(kind, None, None, "refused", reason=reason, **detail)
        error = InvalidInputError(reason)
        self.kernel.mark_recorded(error)  # recorded once, here
        return error

    # --- the sender ---

    def export(
        self,
        actor: Person,
        recipient: str,
        *,
        via: str | None = None,
        purpose: str | None = None,
        authorise_relay: bool = False,
        validity: timedelta = DEFAULT_VALIDITY,
    ) -> Export:
        """Seal every item releasable to ``recipient`` now into one signed transfer file."""
        transfer_id = uuid.uuid4().hex
        try:
            self.kernel.require_any(actor, (Role.RELEASE_OFFICER,), "item.export")
            final = self.kernel.catalogue.party(recipient).code
            hub = self.kernel.catalogue.party(via).code if via else None
            if final == self.party or hub == self.party:
                raise InvalidInputError(f"a transfer goes to another party, not to {self.party} itself")
            if validity <= timedelta(0):
                raise InvalidInputError("the file must stay valid for some time: give a positive validity")
        except GsomiaError as exc:
            raise self.kernel.refuse("item.export", actor.id, None, exc) from None
        next_hop = hub or final
        now = self.exchange._now()
        detail = {"channel": "file", "transfer": transfer_id}
        entries: list[OutboxRow] = []
        audit: list[AuditRow] = []
        consents: list[ConsentRow] = []
        inventory: list[InventoryEntry] = []
        refused: list[Refusal] = []
        after = 0
        while True:
            rows = self.kernel.store.list_items(ItemFilter(), after, _SCAN, with_payload=True)
            for row in rows:
                after = row.seq
                try:
                    prepared = self.exchange.prepare_release(
                        actor,
                        row,
                        final,
                        via=hub,
                        purpose=purpose,
                        authorise_relay=authorise_relay,
                        now=now,
                        ttl=validity,
                        state="exported",
                        detail=detail,
                    )
                except GsomiaError as exc:
                    refused.append(Refusal(row.id, str(exc)))
                    audit.append(
                        self.kernel.audit_row(
                            "item.release",
                            actor.id,
                            row.id,
                            "refused",
                            error=type(exc).__name__,
                            reason=str(exc),
                            **detail,
                        )
                    )
                    continue
                entries.append(prepared.entry)
                audit.append(prepared.audit)
                consents += prepared.consents
                inventory.append(
                    InventoryEntry(
                        row.id,
                        epoch_us(now),
                        "exported",
                        next_hop,
                        actor.id,
                        canonical(
                            {
                                "msg_id": prepared.entry.msg_id,
                                "transfer": transfer_id,
                                "final_recipient": final,
                            }
                        ),
                    )
                )
            if len(rows) < _SCAN:
                break
        text = None
        peer = self.kernel.peers.peer(next_hop)
        if entries and peer is not None:  # every entry passed the link check: the peer is known
            carrier = FileTransport(self.exchange.ring, transfer_id, final, hub, now, validity)
            carrier.push(peer, [e.envelope for e in entries])
            text = carrier.text()
        audit.append(
            self.kernel.audit_row(
                "transfer.export",
                actor.id,
                final,
                "allowed" if entries else "refused",
                transfer=transfer_id,
                next_hop=next_hop,
                exported=len(entries),
                refused=len(refused),
            )
        )
        self.exchange.fed.enqueue(entries, audit, inventory, consents)
        return Export(transfer_id, final, next_hop, text, tuple(entries), tuple(refused))

    def import_receipts(self, text: str) -> ReceiptsApplied:
        """Verify a receipts file from the receiving site; mark each acknowledged export delivered."""
        now = self.exchange._now()
        data = self._container(text, RECEIPTS_FORMAT, {"format", "transfer", "receiver", "receipts"})
        receipts = data["receipts"]
        if not isinstance(receipts, list) or not all(isinstance(r, str) for r in receipts):
            raise self._refuse("transfer.receipts-refused", "receipts file: receipts must be a list of texts")
        delivered: list[str] = []
        already: list[str] = []
        refused: list[Refusal] = []
        sink: list[dict[str, Any]] = []
        audit: list[AuditRow] = []
        cache: dict[Any, Any] = {}
        for index, jws in enumerate(receipts):
            try:
                signer, batched, named = self.exchange.settlement.verified(jws, now, cache)
            except EnvelopeError as exc:
                reason = f"the receipt's signature does not verify ({exc.detail})"
                refused.append(Refusal(f"receipt {index}", reason))
                audit.append(
                    self.kernel.audit_row("transfer.receipt-refused", None, None, "refused", reason=reason)
                )
                continue
            except GsomiaError as exc:
                refused.append(Refusal(f"receipt {index}", str(exc)))
                audit.append(
                    self.kernel.audit_row("transfer.receipt-refused", None, None, "refused", reason=str(exc))
                )
                continue
            # a receipt of one message names one; a batch's receipt each message it acknowledges
            for acknowledged in named.values():
                msg_id = acknowledged.msg_id
                try:
                    entry = self.exchange.fed.outbox_entry(msg_id)
                    if entry is None or entry.recipient != signer or acknowledged.sender != self.party:
                        raise InvalidInputError(f"it acknowledges no message this node exported to {signer}")
                    if entry.state == "delivered" or entry.msg_id in delivered:
                        already.append(entry.msg_id)
                        continue
                    if entry.state != "exported":
                        raise InvalidInputError(
                            f"message {entry.msg_id} was not exported by file ({entry.state})"
                        )
                except GsomiaError as exc:
                    refused.append(Refusal(msg_id, str(exc)))
                    audit.append(
                        self.kernel.audit_row(
                            "transfer.receipt-refused", None, None, "refused", reason=str(exc), msg_id=msg_id
                        )
                    )
                    continue
                delivered.append(entry.msg_id)
                sink.append(
                    self.exchange.settlement.delivered(
                        entry, jws, acknowledged.status, now, channel="file",
                        receipt_id=receipt_id(jws) if batched else None,
                    )
                )  # fmt: skip

        def summary(settled: Collection[str]) -> list[AuditRow]:
            """The file's summary, counting what this process settled (``settled``): an entry read
            as exported that another process of the node settled meanwhile (its compare-and-set
            won) was delivered already, and is counted so, never as delivered by both."""
            settled = set(settled)
            won = sum(m in settled for m in tried)
            return [
                self.kernel.audit_row(
                    "transfer.receipts",
                    None,
                    str(data.get("receiver")),
                    "allowed",
                    transfer=str(data.get("transfer")),
                    delivered=won,
                    already=len(already) + len(tried) - won,
                    refused=len(refused),
                )
            ]

        tried, written = delivered, set[str]()
        if sink:  # the verdicts, the outcomes and the summary of what they settled in one transaction
            sink[-1]["heard"] = audit  # written whether or not that entry's compare-and-set wins
            written.update(self.exchange.fed.settle_many(sink, now_us=epoch_us(now), then=summary))
        else:
            self.kernel.store.append_audit([*audit, *summary(written)])
        delivered = [m for m in tried if m in written]
        already += [m for m in tried if m not in written]
        return ReceiptsApplied(tuple(delivered), tuple(already), tuple(refused))

    # --- the receiver ---

    def import_file(self, text: str) -> Import:
        """Verify a transfer file (held in memory) for this node and receive its envelopes."""
        return self.import_stream(io.BytesIO(text.encode()))

    def import_stream(self, source: BinaryIO, *, limit: int | None = None) -> Import:
        """Verify a transfer file for this node and receive its envelopes as the inbox would.

        ``source`` is read twice, a piece at a time (memory bounded by one envelope and one batch):
        first the signed manifest, which is checked before any entry is read, then every envelope
        against the digest the manifest signed; only when all match are they received, in batches
        (each checked again as it is read back). ``limit`` bounds the bytes read (the node's
        ``max_import_bytes``): a larger file is refused, not read.
        """
        now = self.exchange._now()
        if limit is not None and limit <= _MAX_HEADER:
            header = _Bounded(source, limit)
        else:
            header = _Bounded(
                source,
                _MAX_HEADER,
                f"transfer file refused: the format and the signed manifest must open the file, within "
                f"{_MAX_HEADER} bytes",
            )
        manifest, signer = self._read_manifest(header)
        transfer_id = manifest["id"]
        listed = manifest["envelopes"]
        count = 0
        for index, envelope in enumerate(self._envelopes(source, limit, transfer_id, signer)):
            self._match(listed, index, envelope, transfer_id, signer)
            count = index + 1
        if count != len(listed):
            raise self._refuse(
                "transfer.refused",
                f"transfer file refused: the manifest lists {len(listed)} envelopes, the file holds "
                f"{count} (truncated or altered)",
                transfer=transfer_id,
                sender=signer,
            )
        results: list[dict[str, Any]] = []
        batch: list[str] = []
        for index, envelope in enumerate(self._envelopes(source, limit, transfer_id, signer)):
            self._match(listed, index, envelope, transfer_id, signer)  # the same bytes as the first pass
            batch.append(envelope)
            if len(batch) == _IMPORT_BATCH:
                results.extend(self.exchange.receive(batch))
                batch = []
        if batch:
            results.extend(self.exchange.receive(batch))
        counts = Counter(str(r["status"]) for r in results)
        self.kernel.store.append_audit(
            [
                self.kernel.audit_row(
                    "transfer.import",
                    None,
                    signer,
                    "allowed",
                    transfer=transfer_id,
                    results=dict(sorted(counts.items())),
                    at=now.isoformat(),
                )
            ]
        )
        receipts_text = json.dumps(
            {
                "format": RECEIPTS_FORMAT,
                "transfer": transfer_id,
                "receiver": self.party,
                # each message's receipt, or the one receipt of a batch envelope and those its
                # messages had the first time (duplicates), each once
                "receipts": list(
                    dict.fromkeys(
                        receipt
                        for r in results
                        for receipt in [r.get("receipt"), *(i.get("receipt") for i in r.get("results") or [])]
                        if receipt
                    )
                ),
            }
        )
        return Import(transfer_id, signer, tuple(results), receipts_text)

    def _read_manifest(self, source: _Bounded) -> tuple[dict[str, Any], str]:
        """The file's format and signed manifest, which come first: checked before any entry is read."""
        now = self.exchange._now()
        header: dict[str, str] = {}
        try:
            events = ijson.parse(source, use_float=True)
            if next(events, None) != ("", "start_map", None):
                raise ValueError("not a JSON object")
            for prefix, event, value in events:
                if prefix == "" and event == "map_key":
                    if value == "envelopes":
                        break
                    if value not in ("format", "manifest") or value in header:
                        raise ValueError(f"unexpected member {value!r}")
                    _, kind, text = next(events)
                    if kind != "string":
                        raise ValueError(f"{value} must be a string")
                    header[str(value)] = str(text)
                    if value == "format" and text != TRANSFER_FORMAT:
                        break  # another kind of file: said below
                else:
                    raise ValueError("malformed")
        except _TooLarge as exc:
            raise self._refuse("transfer.refused", str(exc)) from None
        except (ijson.JSONError, ValueError, StopIteration):
            raise self._refuse(
                "transfer.refused", "transfer file refused: not JSON (truncated or altered?)"
            ) from None
        if header.get("format") != TRANSFER_FORMAT:
            raise self._refuse("transfer.refused", f"transfer file refused: not a {TRANSFER_FORMAT} file")
        if "manifest" not in header:
            raise self._refuse(
                "transfer.refused",
                "transfer file refused: the signed manifest must come before the envelopes",
            )
        try:
            signer, content = verify_origin(header["manifest"], self.exchange._identities, now)
        except EnvelopeError as exc:
            raise self._refuse(
                "transfer.refused",
                "transfer file refused: the manifest's signature does not verify (altered, or not from a "
                "registered partner)",
                detail=exc.detail,
            ) from None
        try:
            manifest = _manifest(content, signer)
        except GsomiaError as exc:
            raise self._refuse("transfer.refused", str(exc), sender=signer) from None
        if manifest["recipient"] != self.party:
            raise self._refuse(
                "transfer.refused",
                f"transfer file refused: it is sealed for {manifest['recipient']}, not for this node "
                f"({self.party})",
                transfer=manifest["id"],
                sender=signer,
            )
        if now > manifest["expires"]:
            raise self._refuse(
                "transfer.refused",
                f"transfer file refused: it expired at {manifest['expires'].isoformat()}",
                transfer=manifest["id"],
                sender=signer,
            )
        return manifest, signer

    def _envelopes(self, source: BinaryIO, limit: int | None, transfer: str, signer: str) -> Iterator[str]:
        """The file's envelopes, one at a time, from the start of ``source``."""
        source.seek(0)
        try:
            for prefix, event, value in ijson.parse(_Bounded(source, limit), use_float=True):
                if prefix == "envelopes.item":
                    if event != "string":
                        raise ValueError("an envelope must be a string")
                    yield str(value)
                elif prefix == "envelopes" and event not in ("start_array", "end_array"):
                    raise ValueError("envelopes must be a list")
                elif prefix == "" and event == "map_key" and value not in ("format", "manifest", "envelopes"):
                    raise ValueError(f"unexpected member {value!r}")
        except _TooLarge as exc:
            raise self._refuse("transfer.refused", str(exc), transfer=transfer, sender=signer) from None
        except (ijson.JSONError, ValueError):
            raise self._refuse(
                "transfer.refused",
                "transfer file refused: not JSON, or its envelopes are not a list of texts "
                "(truncated or altered?)",
                transfer=transfer,
                sender=signer,
            ) from None

    def _match(
        self, listed: list[dict[str, Any]], index: int, envelope: str, transfer: str, signer: str
    ) -> None:
        if index >= len(listed) or _digest(envelope) != listed[index]["sha256"]:
            raise self._refuse(
                "transfer.refused",
                f"transfer file refused: envelope {index} is not the one the manifest signed (altered)"
                if index < len(listed)
                else f"transfer file refused: the file holds more envelopes than the {len(listed)} listed",
                transfer=transfer,
                sender=signer,
            )
        sender = _hop_sender(envelope)
        if sender != signer:  # the hop's sender is bound to the envelope when it opens (the outer header)
            raise self._refuse(
                "transfer.refused",
                f"transfer file refused: envelope {index} is not an envelope"
                if sender is None
                else f"transfer file refused: envelope {index} is from {sender}, but {signer} signed the "
                "manifest (a file carries its signer's own envelopes only)",
                transfer=transfer,
                sender=signer,
            )

    def _container(self, text: str, fmt: str, members: set[str]) -> dict[str, Any]:
        """The outer JSON object of a transfer or receipts file, its members exactly ``members``."""
        what = "transfer file" if fmt == TRANSFER_FORMAT else "receipts file"
        try:
            data = json.loads(text)
        except ValueError:
            raise self._refuse(_kind(fmt), f"{what} refused: not JSON (truncated or altered?)") from None
        if not isinstance(data, dict) or data.get("format") != fmt:
            raise self._refuse(_kind(fmt), f"{what} refused: not a {fmt} file")
        if set(data) != members:
            raise self._refuse(
                _kind(fmt), f"{what} refused: expected exactly the members {', '.join(sorted(members))}"
            )
        return data


class FileTransport(PeerTransport):
    """The third transport: envelopes carried by courier to an air-gapped site. ``push`` writes
    them into one transfer file under a manifest this node signs (:meth:`text`); their receipts
    come back on a receipts file and are settled like the network's (:meth:`Transfer.import_receipts`).
    A file carries no proofs: ask those over the network."""

    def __init__(
        self,
        ring: KeyRing,
        transfer_id: str,
        final: str,
        hub: str | None,
        now: datetime,
        validity: timedelta,
    ) -> None:
        self.ring = ring
        self.transfer_id = transfer_id
        self.final = final
        self.hub = hub
        self.now = now
        self.validity = validity
        self.next_hop: str | None = None
        self.envelopes: list[str] = []

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        if self.next_hop not in (None, peer.party):
            raise TransportError(f"InvalidInputError: this file goes to {self.next_hop}, not {peer.party}")
        self.next_hop = peer.party
        self.envelopes += envelopes
        return [{"status": "exported", "receipt": None, "reason": None} for _ in envelopes]

    def consistency(self, peer: PeerIdentity, first: int, second: int) -> list[str]:
        raise TransportError("InvalidInputError: a transfer file carries no proofs: ask over the network")

    def inclusion(self, peer: PeerIdentity, entry: str) -> dict[str, Any]:
        raise TransportError("InvalidInputError: a transfer file carries no proofs: ask over the network")

    def text(self) -> str:
        """The transfer file: the envelopes pushed so far under the signed manifest."""
        manifest = {
            "v": 1,
            "kind": MANIFEST_KIND,
            "id": self.transfer_id,
            "sender": self.ring.party,
            "recipient": self.next_hop,
            "final_recipient": self.final,
            "via": [self.hub] if self.hub else [],
            "created": self.now.isoformat(),
            "expires": (self.now + self.validity).isoformat(),
            "envelopes": [
                {"msg_id": envelope_routing(e)["jti"], "sha256": _digest(e)} for e in self.envelopes
            ],
        }
        signed = sign_origin(self.ring, canonical(manifest).encode(), self.now)
        return json.dumps({"format": TRANSFER_FORMAT, "manifest": signed, "envelopes": self.envelopes})


def _kind(fmt: str) -> str:
    return "transfer.refused" if fmt == TRANSFER_FORMAT else "transfer.receipts-refused"


def _hop_sender(envelope: str) -> str | None:
    """The sender an envelope's protected header names (read before it is opened; opening checks it),
    or ``None`` if it names none or is no envelope (``envelope_routing`` refuses it: either format's
    reader, the COSE one's ``EnvelopeError`` among them)."""
    try:
        iss = envelope_routing(envelope).get("iss")
    except (EnvelopeError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    return iss if isinstance(iss, str) else None


def _digest(envelope: str) -> str:
    return hashlib.sha256(envelope.encode()).hexdigest()


def _manifest(content: bytes, signer: str) -> dict[str, Any]:
    """The signed manifest, parsed and checked (its signature is already verified)."""
    try:
        data = json.loads(content)
        if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND or data.get("v") != 1:
            raise InvalidInputError("not a transfer manifest")
        if data.get("sender") != signer:
            raise InvalidInputError(
                f"the manifest names {data.get('sender')} as sender but {signer} signed it"
            )
        for name in ("id", "recipient", "final_recipient"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise InvalidInputError(f"manifest.{name}: expected a non-empty string")
        data["expires"] = parse_instant(str(data.get("expires")), UTC)
        listed = data.get("envelopes")
        if not isinstance(listed, list) or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in listed
        ):
            raise InvalidInputError("manifest.envelopes: expected a list of {msg_id, sha256}")
    except (ValueError, InstantError) as exc:
        raise InvalidInputError(f"transfer file refused: malformed manifest ({exc})") from None
    return data
