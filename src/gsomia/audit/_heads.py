"""Tree heads between partners: share this node's signed head, keep a partner's for the
consistency check (gsomia.audit), and prove a delivery by inclusion in the receiver's log.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx

from gsomia.audit._log import parse_head
from gsomia.core.instants import epoch_us
from gsomia.core.merkle import leaf_hash, verify_inclusion
from gsomia.crypto.envelope import Opened, verify_origin
from gsomia.errors import AgreementError, InvalidInputError, NotFoundError, ProofError
from gsomia.exchange._base import _Accepted
from gsomia.exchange._peers import Peers
from gsomia.store import InboxRow

__all__ = ["TreeHeads"]


class TreeHeads(Peers):
    """Signed tree heads exchanged with peers, and proofs of delivery."""

    def _receive_head(self, opened: Opened, now: datetime, accepted: _Accepted) -> dict[str, Any]:
        """A partner's signed tree head, kept for the consistency check (gsomia.audit)."""
        if not self.links(opened.sender):
            raise AgreementError(f"no registered link with {opened.sender}")
        status = self.node.audit.receive_head(opened.sender, str(opened.body.get("head")), self._identities)
        receipt = self._receipt(opened, None, status, None, now)
        accepted.add_inbox(
            InboxRow(opened.msg_id, opened.sender, "tree-head", None, epoch_us(now), "recorded", receipt)
        )
        return {"status": "recorded", "receipt": receipt, "reason": None}

    def share_head(self) -> int:
        """Queue this node's latest signed head for every peer that has not had it; how many queued."""
        head = self.node.audit.sign_head()
        now = self._now()
        rows = []
        for peer, _links in self.peers():
            key = f"audit.sent.{peer.party}"
            if int(self.node.store.meta(key) or -1) >= head.size:
                continue
            rows.append(self._queue(peer, {"kind": "tree-head", "head": head.jws}, "tree-head", None, now))
            self.node.store.put_meta(key, str(head.size))
        if rows:
            self.fed.enqueue(rows)
        return len(rows)

    def delivery_proof(self, msg_id: str, client: httpx.Client) -> dict[str, Any]:
        """Prove a delivery: the receiver's signed receipt names its log entry; fetch and check the
        inclusion proof of that entry in the receiver's signed tree head."""
        entry = self.fed.outbox_entry(msg_id)
        if entry is None or entry.receipt is None:
            raise NotFoundError(f"no delivered message {msg_id!r}")
        now = self._now()
        signer, content = verify_origin(entry.receipt, self._identities, now)
        receipt = json.loads(content)
        log_entry = receipt.get("log_entry")
        if not isinstance(log_entry, str):
            raise InvalidInputError(f"the receipt for {msg_id} names no log entry")
        peer = self.peer(signer)
        if peer is None:
            raise AgreementError(f"{signer} is not a registered peer")
        response = client.get(f"{peer.endpoint.rstrip('/')}/audit/inclusion", params={"entry": log_entry})
        response.raise_for_status()
        proof = response.json()
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
