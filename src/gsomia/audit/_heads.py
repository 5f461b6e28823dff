"""Tree heads between partners: share this node's signed head, keep a partner's for the
consistency check (:class:`AuditLog`), and prove a delivery by inclusion in the receiver's log.

The audit log's side of the exchange: :meth:`TreeHeads.receive` is the handler registered for
the inbox's ``tree-head`` messages; heads go out through the exchange's outbox.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from gsomia.audit._log import AuditLog, parse_head
from gsomia.core.instants import epoch_us
from gsomia.core.merkle import leaf_hash, verify_inclusion
from gsomia.crypto.envelope import Opened, verify_origin
from gsomia.errors import AgreementError, InvalidInputError, NotFoundError, ProofError, TransportError
from gsomia.exchange import Batch, Exchange, PeerTransport
from gsomia.store import InboxRow

__all__ = ["HEAD_KIND", "TreeHeads"]

HEAD_KIND = "tree-head"


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
        receipt = json.loads(content)
        log_entry = receipt.get("log_entry")
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
