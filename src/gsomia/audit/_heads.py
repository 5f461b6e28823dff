"""Tree heads between partners: share this node's signed head, keep a partner's for the
consistency check (:class:`AuditLog`), gossip the heads held of each partner to the others (as
Certificate Transparency monitors do: two heads of one log that cannot both be it are found by
any partner that sees both), and prove a delivery by inclusion in the receiver's log.

The audit log's side of the exchange: :meth:`TreeHeads.receive` and :meth:`TreeHeads.receive_gossip`
are the handlers registered for the inbox's ``tree-head`` and ``head-gossip`` messages; heads go
out through the exchange's outbox.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime
from typing import Any

from gsomia.audit._log import AuditLog, parse_head
from gsomia.core.instants import epoch_us
from gsomia.core.merkle import leaf_hash, verify_inclusion
from gsomia.crypto.envelope import Opened, verify_origin
from gsomia.errors import AgreementError, InvalidInputError, NotFoundError, ProofError, TransportError
from gsomia.exchange import Batch, Exchange, PeerTransport, receipt_entries
from gsomia.store import InboxRow

__all__ = ["GOSSIP_KIND", "HEAD_KIND", "TreeHeads"]

HEAD_KIND = "tree-head"
GOSSIP_KIND = "head-gossip"


class TreeHeads:
    """Signed tree heads exchanged with peers, and proofs of delivery."""

    def __init__(self, log: AuditLog, exchange: Exchange) -> None:
        self.log = log
        self.exchange = exchange
        self.kernel = log.kernel
        self._identities = self.kernel.peers.peer

    def receive(self, opened: Opened, now: datetime, accepted: Batch) -> dict[str, Any]:
        """A partner's signed tree head, kept for the consistency check (the inbox's handler)."""
        if not self.kernel.peers.links(opened.sender):
            raise AgreementError(f"no registered link with {opened.sender}")
        status = self.log.receive_head(opened.sender, str(opened.body.get("head")), self._identities)
        receipt = self.exchange.receipt(opened, None, status, None, now)
        accepted.add_inbox(
            InboxRow(opened.msg_id, opened.sender, HEAD_KIND, None, epoch_us(now), "recorded", receipt)
        )
        return {"status": "recorded", "receipt": receipt, "reason": None}

    def receive_gossip(self, opened: Opened, now: datetime, accepted: Batch) -> dict[str, Any]:
        """The heads a partner holds of the other parties (the inbox's ``head-gossip`` handler):
        each verified against its own party's signature and compared (:meth:`AuditLog.receive_gossip`)."""
        if not self.kernel.peers.links(opened.sender):
            raise AgreementError(f"no registered link with {opened.sender}")
        counts = self.log.receive_gossip(opened.sender, opened.body.get("heads"), self._identities)  # type: ignore[arg-type]
        status = "forks found" if counts["forks"] else "recorded"
        receipt = self.exchange.receipt(opened, None, status, None, now)
        accepted.add_inbox(
            InboxRow(opened.msg_id, opened.sender, GOSSIP_KIND, None, epoch_us(now), "recorded", receipt)
        )
        return {"status": "recorded", "receipt": receipt, "reason": None}

    def gossip(self) -> int:
        """Queue for every peer the heads this node holds of the other partners
        (:meth:`AuditLog.gossip_selection`), unless that peer had the same selection last time; how
        many messages queued."""
        now = self.kernel.clock()
        rows = []
        for peer, _links in self.kernel.peers.all():
            heads = self.log.gossip_selection(peer.party)
            if not heads:
                continue
            key = f"audit.gossiped.{peer.party}"
            digest = hashlib.sha256("\n".join(heads).encode()).hexdigest()
            if self.kernel.store.meta(key) == digest:
                continue
            rows.append(
                self.exchange.queue(peer, {"kind": GOSSIP_KIND, "heads": heads}, GOSSIP_KIND, None, now)
            )
            self.kernel.store.put_meta(key, digest)
        if rows:
            self.exchange.enqueue(rows)
        return len(rows)

    def share_head(self) -> int:
        """Queue this node's latest signed head for every peer that has not had it; how many queued."""
        head = self.log.sign_head()
        now = self.kernel.clock()
        rows = []
        for peer, _links in self.kernel.peers.all():
            key = f"audit.sent.{peer.party}"
            if int(self.kernel.store.meta(key) or -1) >= head.size:
                continue
            rows.append(
                self.exchange.queue(peer, {"kind": HEAD_KIND, "head": head.jws}, HEAD_KIND, None, now)
            )
            self.kernel.store.put_meta(key, str(head.size))
        if rows:
            self.exchange.enqueue(rows)
        return len(rows)

    def delivery_proof(self, msg_id: str, transport: PeerTransport, *, wait: float = 0.0) -> dict[str, Any]:
        """Prove a delivery: the receiver's signed receipt names its log entry; fetch and check the
        inclusion proof of that entry in the receiver's signed tree head.

        A receiver signs a head covering a new entry within seconds, not at once: the proof is asked
        again for up to ``wait`` seconds while the receiver does not give it."""
        entry = self.exchange.outbox_entry(msg_id)
        if entry is None or entry.receipt is None:
            raise NotFoundError(f"no delivered message {msg_id!r}")
        now = self.kernel.clock()
        signer, content = verify_origin(entry.receipt, self._identities, now)
        # a receipt of this message alone, or its batch's receipt: the entry naming this message
        acknowledged = receipt_entries(content, signer)[1].get(msg_id)
        log_entry = acknowledged.log_entry if acknowledged is not None else None
        if not isinstance(log_entry, str):
            raise InvalidInputError(f"the receipt for {msg_id} names no log entry")
        peer = self.kernel.peers.peer(signer)
        if peer is None:
            raise AgreementError(f"{signer} is not a registered peer")
        deadline = time.monotonic() + wait
        while True:
            try:
                proof = transport.inclusion(peer, log_entry)
                break
            except TransportError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)
        head_signer, head_content = verify_origin(proof["head"], self._identities, now)
        party, size, root, _ = parse_head(head_content)
        if head_signer != signer or party != signer or size != proof["size"]:
            raise ProofError("the tree head is not the receiver's")
        entry_data = proof["leaf_data"].encode()
        if json.loads(entry_data).get("entry") != log_entry:
            raise ProofError("the proof is for another entry")
        verify_inclusion(
            leaf_hash(entry_data),
            int(proof["leaf_index"]),
            size,
            [bytes.fromhex(h) for h in proof["proof"]],
            root,
        )
        return {
            "msg_id": msg_id,
            "receiver": signer,
            "log_entry": log_entry,
            "leaf_index": proof["leaf_index"],
            "size": size,
            "root": root.hex(),
            "entry": json.loads(entry_data),
        }
