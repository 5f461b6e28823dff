"""A node's append-only Merkle log, in the style of Certificate Transparency (RFC 9162).

Every audit record (decisions, envelopes, receipts, reads, refusals, keys, people, consents)
becomes a leaf. Records are written by the transactions that cause them; ``integrate``
later appends them to the tree in batches (the log never slows the exchange), keeping the
completed subtree hashes for proofs. ``sign_head`` signs (size, root) with the node key.
Partners receive each other's signed heads over the exchange and ask for consistency
proofs between successive heads: a partner that rewrites or forks its log is caught.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from gsomia._codec import canonical
from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.merkle import (
    Frontier,
    consistency_subtrees,
    inclusion_subtrees,
    leaf_hash,
    node_hash,
    range_hash,
    subtrees_needed,
    verify_consistency,
)
from gsomia.crypto.envelope import sign_origin, verify_origin
from gsomia.errors import GsomiaError, InvalidInputError, NotFoundError, ProofError, TransportError
from gsomia.exchange import PeerTransport
from gsomia.kernel import NodeContext
from gsomia.store import AuditRow, AuditStore, HeadRow, PartnerHeadRow

__all__ = ["AuditLog", "VerifyReport", "head_content", "leaf_data", "parse_head"]


PUBLIC_KINDS = frozenset({"envelope.received"})


def leaf_data(row: AuditRow) -> bytes:
    """What a leaf commits to: every field of the record (the detail exactly as stored)."""
    return canonical(
        {
            "entry": row.entry_id,
            "at_us": row.at_us,
            "kind": row.kind,
            "actor": row.actor,
            "subject": row.subject,
            "outcome": row.outcome,
            "detail": row.detail,
        }
    ).encode()


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of rebuilding the tree from the records."""

    ok: bool
    entries: int
    heads_checked: int
    problem: str | None = None
    entry_id: str | None = None
    seq: int | None = None
    pending: int = 0  # records not yet integrated when the snapshot was read (not checked: not the tree's)


def head_content(party: str, size: int, root: bytes, at: datetime) -> bytes:
    return canonical(
        {"v": 1, "kind": "tree-head", "party": party, "size": size, "root": root.hex(), "at": at.isoformat()}
    ).encode()


def parse_head(content: bytes) -> tuple[str, int, bytes, datetime]:
    try:
        data = json.loads(content)
        if data.get("v") != 1 or data.get("kind") != "tree-head":
            raise ValueError("not a version 1 tree head")
        size, root = int(data["size"]), bytes.fromhex(data["root"])
        at = datetime.fromisoformat(data["at"])
        if size < 0 or len(root) != 32 or at.utcoffset() is None:
            raise ValueError("bad size, root or instant")
        return str(data["party"]), size, root, at
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"tree head: {exc}") from exc


# Who may read the records (docs/API.md's table), and the kinds of record that are a flow.
READERS = (Role.SECURITY_OFFICER, Role.ADMINISTRATOR)
FLOW_KINDS = (
    "item.release",
    "item.export",
    "envelope.delivered",
    "envelope.undeliverable",
    "envelope.received",
    "envelope.duplicate",
    "envelope.refused",
)
FLOW_LIMIT = 200


class AuditLog:
    """The node's Merkle log over its audit records."""

    def __init__(self, kernel: NodeContext) -> None:
        self.kernel = kernel
        self.store = AuditStore(kernel.store)

    @staticmethod
    def _frontier_of(store: AuditStore) -> Frontier:
        raw = store.frontier()
        if raw is None:
            return Frontier()
        data = json.loads(raw)
        return Frontier(int(data["size"]), [bytes.fromhex(h) for h in data["hashes"]])

    def _frontier(self) -> Frontier:
        return self._frontier_of(self.store)

    # --- reading the records ---

    def require_reader(self, actor: Person | None, what: str = "audit.read") -> None:
        """Refuse (and record) unless ``actor`` may read the audit records: security officers and
        administrators (``None``: the node's operator)."""
        self.kernel.require_any(actor, READERS, what)

    def records(
        self, actor: Person | None, *, since: int = 0, kind: str | None = None, limit: int = 100
    ) -> list[AuditRow]:
        """The audit records after sequence number ``since``, of one ``kind`` or all, oldest first."""
        self.require_reader(actor, "audit.read")
        return self.kernel.store.audit(after_seq=since, kind=kind, limit=limit)

    def flows(self, actor: Person | None, since: int = 0, limit: int = FLOW_LIMIT) -> list[AuditRow]:
        """The envelopes released, exported, delivered, received and refused after record ``since``:
        the latest ``limit``, oldest first (the dashboard's flows)."""
        self.require_reader(actor, "flows.read")
        store = self.kernel.store
        rows = [r for kind in FLOW_KINDS for r in store.audit(after_seq=since, kind=kind, limit=limit)]
        rows.sort(key=lambda r: r.seq)
        return rows[-limit:]

    # --- appending: the one writer ---

    def integrate(self, limit: int = 10_000) -> int:
        """Append up to ``limit`` records not yet in the tree, oldest first; how many.

        The tree's only writer: the pending records and the frontier are read, and the leaves,
        subtrees and new frontier written, in one transaction under the database lock (SQLite
        ``BEGIN IMMEDIATE``, PostgreSQL an advisory lock), so two integrations, in threads or in
        processes, never interleave. Readers of the tree never call it.
        """
        with self.store.writer() as w:
            rows = w.unintegrated(limit)
            if not rows:
                return 0
            frontier = self._frontier_of(w)
            leaves: list[tuple[int, int, bytes]] = []
            nodes: list[tuple[int, int, bytes]] = []
            for row in rows:
                digest = leaf_hash(leaf_data(row))
                leaves.append((row.seq, frontier.size, digest))
                nodes += frontier.append(digest)
            state = canonical({"size": frontier.size, "hashes": [h.hex() for h in frontier.hashes]})
            w.integrate(leaves, nodes, state)
            return len(rows)

    def sign_head(self) -> HeadRow:
        """Integrate everything pending and sign the tree head (the last one if nothing changed).

        A writer too (the node's background loop, ``gsomia audit integrate``): the head is signed
        under the tree's lock over the frontier read in the same transaction.
        """
        while self.integrate():
            pass
        with self.store.writer() as w:
            frontier = self._frontier_of(w)
            latest = w.latest_head()
            if latest is not None and latest.size == frontier.size:
                return latest
            now = self.kernel.clock()
            root = frontier.root()
            content = head_content(self.kernel.party, frontier.size, root, now)
            jws = sign_origin(self.kernel.ring, content, now)
            head = HeadRow(frontier.size, root, epoch_us(now), jws)
            w.put_head(head)
            return head

    # --- reading: never writes ---

    def size(self) -> int:
        """How many records the tree holds (integrated, not necessarily under a signed head yet)."""
        return self._frontier().size

    def pending(self) -> int:
        """How many records wait for the writer to integrate them."""
        return self.store.pending()

    def latest_head(self) -> HeadRow | None:
        """The latest signed head, as the writer left it (``None`` before the first)."""
        return self.store.latest_head()

    def head(self) -> HeadRow:
        """The latest signed head; ``NotFoundError`` before the writer has signed one."""
        head = self.store.latest_head()
        if head is None:
            raise NotFoundError("the log has no signed tree head yet: the node signs one within seconds")
        return head

    # --- proofs ---

    def _source(self, ranges: list[tuple[int, int]]) -> Any:
        found = self.store.nodes(sorted(subtrees_needed(ranges)))

        def node(level: int, index: int) -> bytes:
            value = found.get((level, index))
            if value is None:
                raise ProofError(f"the log is missing subtree ({level}, {index})")
            return value

        return node

    def inclusion(self, entry_id: str, *, public: bool = False) -> dict[str, Any]:
        """The entry, its leaf index and the proof of inclusion in the latest signed head.

        ``public`` (an unauthenticated partner asking): only entries that record a partner's
        own envelope are shown; any other entry is "not found", so its existence is not revealed.
        """
        row = self.store.entry(entry_id)
        if row is None or (public and row.kind not in PUBLIC_KINDS):
            raise NotFoundError(f"no audit entry {entry_id!r}")
        head = self.store.latest_head()
        if head is None or row.leaf_index is None or row.leaf_index >= head.size:
            # read only: the writer (the node's background loop) integrates it and signs a head soon
            raise NotFoundError(
                f"audit entry {entry_id!r} is not yet under a signed tree head: ask again in a few seconds"
            )
        index = row.leaf_index
        ranges = inclusion_subtrees(index, head.size)
        node = self._source(ranges)
        return {
            "entry_id": entry_id,
            "leaf_index": index,
            "size": head.size,
            "leaf_data": leaf_data(row).decode(),
            "proof": [range_hash(a, b, node).hex() for a, b in ranges],
            "head": head.jws,
        }

    def consistency(self, first: int, second: int) -> list[str]:
        """The proof that the tree of size ``second`` extends the one of size ``first``."""
        size = self.size()
        if second > size:
            raise NotFoundError(f"no tree of size {second}: the log has {size} entries")
        ranges = consistency_subtrees(first, second)
        node = self._source(ranges)
        return [range_hash(a, b, node).hex() for a, b in ranges]

    # --- verification ---

    def verify(self) -> VerifyReport:
        """Rebuild the tree from the records; check every leaf, every signed head, every stored
        subtree (proofs are served from them) and the stored frontier (appends continue from it).

        Reads one snapshot (the tree as integrated when it starts; the writer may go on meanwhile)
        and writes nothing: records still pending are not the tree's yet. Holds one hash per entry
        in memory (about 100 MB for a million entries).
        """
        with self.store.snapshot() as snap:
            return replace(self._verify(snap), pending=snap.pending())

    def _verify(self, store: AuditStore) -> VerifyReport:
        heads = {h.size: h for h in store.heads()}
        frontier = Frontier()
        checked = 0
        leaves: list[bytes] = []
        for row in store.leaves():
            if row.leaf_index != frontier.size:
                return VerifyReport(
                    False,
                    frontier.size,
                    checked,
                    f"leaf {frontier.size} is missing (next record is leaf {row.leaf_index})",
                    row.entry_id,
                    row.seq,
                )
            digest = leaf_hash(leaf_data(row))
            if digest != row.leaf:
                return VerifyReport(
                    False,
                    frontier.size,
                    checked,
                    f"entry {row.entry_id} (record {row.seq}, leaf {row.leaf_index}) was altered: "
                    "its content no longer matches its leaf hash",
                    row.entry_id,
                    row.seq,
                )
            frontier.append(digest)
            leaves.append(digest)
            head = heads.get(frontier.size)
            if head is not None:
                checked += 1
                problem = self._check_head(head, frontier.root())
                if problem:
                    return VerifyReport(False, frontier.size, checked, problem, row.entry_id, row.seq)
        for size in heads:
            if size > frontier.size:
                return VerifyReport(
                    False,
                    frontier.size,
                    checked,
                    f"a signed head covers {size} entries but the log holds {frontier.size}",
                )
            if size == 0:
                checked += 1
        problem = self._check_subtrees(store, leaves) or self._check_frontier(store, frontier)
        if problem:
            return VerifyReport(False, frontier.size, checked, problem)
        return VerifyReport(True, frontier.size, checked)

    def _check_subtrees(self, store: AuditStore, level: list[bytes]) -> str | None:
        """Every stored subtree hash, level by level, against the hashes rebuilt from the records."""
        depth = 0
        while level:
            count = 0
            for index, stored in store.nodes_of_level(depth):
                if index >= len(level) or stored != level[index]:
                    return (
                        f"stored subtree ({depth}, {index}) does not match the records: "
                        "inclusion proofs served from it would fail"
                    )
                count += 1
            if count != len(level):
                return f"{len(level) - count} stored subtree(s) of level {depth} are missing"
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            depth += 1
        return None

    def _check_frontier(self, store: AuditStore, rebuilt: Frontier) -> str | None:
        stored = self._frontier_of(store)
        if stored.size != rebuilt.size or stored.hashes != rebuilt.hashes:
            return "the stored frontier (where appends continue from) does not match the records"
        return None

    def _check_head(self, head: HeadRow, root: bytes) -> str | None:
        try:
            party, size, signed_root, _ = parse_head(
                verify_origin(head.jws, lambda _: None, self.kernel.clock(), own=self.kernel.ring)[1]
            )
        except GsomiaError as exc:
            return f"the signed head at size {head.size} does not verify: {exc}"
        if party != self.kernel.party or size != head.size or signed_root != head.root:
            return f"the signed head at size {head.size} does not match its stored values"
        if root != head.root:
            return (
                f"the records no longer produce the root signed at size {head.size}: "
                "an entry before it was altered together with its leaf hash"
            )
        return None

    # --- partners ---

    def receive_head(self, sender: str, jws: str, identities: Any) -> str:
        """Keep a partner's signed head for checking; returns the status recorded."""
        now = self.kernel.clock()
        signer, content = verify_origin(jws, identities, now)
        party, size, root, at = parse_head(content)
        if signer != sender or party != sender:
            raise InvalidInputError(f"a tree head of {party} signed by {signer}, sent by {sender}")
        row = PartnerHeadRow(party, size, root, epoch_us(at), jws, epoch_us(now), "pending")
        audit = [
            AuditRow(
                epoch_us(now),
                "audit.partner-head",
                sender,
                str(size),
                "allowed",
                canonical({"size": size, "root": root.hex()}),
            )
        ]
        if not self.store.put_partner_head(row, audit):
            self._alert(party, size, f"{party} signed two different roots for size {size}: a fork")
            return "inconsistent"
        return "pending"

    def _alert(self, party: str, size: int, detail: str) -> None:
        now = epoch_us(self.kernel.clock())
        self.kernel.store.append_audit(
            [AuditRow(now, "audit.fork", party, str(size), "alert", canonical({"detail": detail}))]
        )

    def check_partners(self, transport: PeerTransport) -> list[dict[str, Any]]:
        """Check each partner's pending heads against the last consistent one, by consistency proof."""
        results = []
        for pending in self.store.partner_heads(status="pending"):
            results.append({"party": pending.party, "size": pending.size, **self._check(pending, transport)})
        return results

    def _check(self, head: PartnerHeadRow, transport: PeerTransport) -> dict[str, str]:
        consistent = [h for h in self.store.partner_heads(head.party, "consistent")]
        baseline = max(consistent, key=lambda h: h.size) if consistent else None
        status, detail = "consistent", ""
        if baseline is None:
            detail = "first head seen from this partner"
        elif head.size < baseline.size:
            status, detail = "inconsistent", f"the log shrank from {baseline.size} to {head.size} entries"
        elif head.size == baseline.size:
            if head.root != baseline.root:
                status, detail = "inconsistent", f"two roots for size {head.size}: a fork"
        else:
            peer = self.kernel.peers.peer(head.party)
            if peer is None:
                return {"status": "pending", "detail": "no registered link to ask for a proof"}
            try:
                hashes = transport.consistency(peer, baseline.size, head.size)
                proof = [bytes.fromhex(h) for h in hashes]
                verify_consistency(baseline.size, head.size, baseline.root, head.root, proof)
                detail = f"extends the head of size {baseline.size}"
            except ProofError as exc:
                status, detail = "inconsistent", str(exc)
            except TransportError as exc:
                return {"status": "pending", "detail": f"no proof yet: {str(exc).split(':', 1)[0]}"}
            except ValueError as exc:
                return {"status": "pending", "detail": f"no proof yet: {type(exc).__name__}"}
        now = epoch_us(self.kernel.clock())
        outcome = "allowed" if status == "consistent" else "alert"
        kind = "audit.partner-consistent" if status == "consistent" else "audit.fork"
        self.store.settle_partner_head(
            head.party,
            head.size,
            status,
            detail,
            [AuditRow(now, kind, head.party, str(head.size), outcome, canonical({"detail": detail}))],
        )
        return {"status": status, "detail": detail}

    def partners(self) -> list[dict[str, Any]]:
        """Per partner: its latest head, and whether every head seen so far was consistent."""
        by_party: dict[str, list[PartnerHeadRow]] = {}
        for head in self.store.partner_heads():
            by_party.setdefault(head.party, []).append(head)
        out = []
        for party, heads in sorted(by_party.items()):
            latest = max(heads, key=lambda h: h.size)
            bad = [h for h in heads if h.status == "inconsistent"]
            out.append(
                {
                    "party": party,
                    "size": latest.size,
                    "root": latest.root.hex(),
                    "at": datetime.fromtimestamp(latest.at_us / 1e6, UTC).isoformat(),
                    "status": "inconsistent" if bad else latest.status,
                    "detail": bad[-1].detail if bad else latest.detail,
                    "heads": len(heads),
                }
            )
        return out
