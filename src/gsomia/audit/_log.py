"""A node's append-only Merkle log, in the style of Certificate Transparency (RFC 9162).

Every audit record (decisions, envelopes, receipts, reads, refusals, keys, people, consents)
becomes a leaf. Records are written by the transactions that cause them; ``integrate``
later appends them to the tree in batches (the log never slows the exchange), keeping the
completed subtree hashes for proofs; a batch of records written on its own
(``Store.append_audit``, 32 or more) becomes leaves as it is written, under the same lock.
``sign_head`` signs (size, root) with the node key.
Partners receive each other's signed heads over the exchange and ask for consistency
proofs between successive heads: a partner that rewrites or forks its log is caught.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gsomia._canonical import canonical_built_bytes
from gsomia._codec import canonical
from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.merkle import (
    Frontier,
    TreeHead,
    baseline_for,
    compare_heads,
    consistency_subtrees,
    inclusion_subtrees,
    leaf_hash,
    node_hash,
    range_hash,
    subtrees_needed,
    verify_consistency,
)
from gsomia.crypto.envelope import sign_origin, verify_origin
from gsomia.errors import (
    EnvelopeError,
    GsomiaError,
    InvalidInputError,
    NotFoundError,
    ProofError,
    TransportError,
)
from gsomia.exchange import PeerTransport
from gsomia.kernel import NodeContext
from gsomia.store import AuditRow, AuditStore, ForkEvidenceRow, GossipHeadRow, HeadRow, PartnerHeadRow

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["FLOW_KINDS", "AuditLog", "VerifyReport", "head_content", "leaf_data", "parse_head"]


PUBLIC_KINDS = frozenset({"envelope.received"})


def leaf_data(row: AuditRow) -> bytes:
    """What a leaf commits to: every field of the record (the detail exactly as stored).

    The canonical JSON of the record's fields (sorted keys, no spaces, UTF-8 kept). The usual
    record (text or null fields, an integer instant) is written by orjson (:func:`_leaf_bytes`),
    byte for byte what ``canonical`` gives (a test holds the two equal); anything else goes through it.
    """
    return _leaf_bytes(row.at_us, row.kind, row.actor, row.subject, row.outcome, row.detail, row.entry_id)


def _leaf_bytes(
    at_us: object,
    kind: object,
    actor: object,
    subject: object,
    outcome: object,
    detail: object,
    entry: object,
) -> bytes:
    """``leaf_data`` from the record's fields (the writer reads plain tuples: no ``AuditRow`` each).

    A usual record (an integer instant, the rest text or null) is written by orjson in one call
    (:func:`canonical_built_bytes`: for such a value its bytes are ``canonical``'s); anything else
    (another type, an instant past 64 bits, a lone surrogate orjson refuses) by ``canonical``. Issue
    18: the standard library's ``encode_basestring`` of each field, then ``str.encode``, was the
    audit writer's largest Python cost a record (a received item's 1.8 KB record with its Korean
    and Japanese text: ~9 µs hashed, ~4 this way); a test holds the two equal."""
    if (
        type(at_us) is int
        and type(kind) is str
        and type(outcome) is str
        and type(detail) is str
        and (actor is None or type(actor) is str)
        and (subject is None or type(subject) is str)
        and (entry is None or type(entry) is str)
    ):
        written = canonical_built_bytes(
            {
                "actor": actor,
                "at_us": at_us,
                "detail": detail,
                "entry": entry,
                "kind": kind,
                "outcome": outcome,
                "subject": subject,
            }
        )
        if written is not None:
            return written
    return canonical(
        {
            "entry": entry,
            "at_us": at_us,
            "kind": kind,
            "actor": actor,
            "subject": subject,
            "outcome": outcome,
            "detail": detail,
        }
    ).encode()


def _leaf_hashes(rows: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """``leaf_hash(leaf_data(row))`` of each (at_us, kind, actor, subject, outcome, detail, entry_id)
    (a record as stored), in one loop; a test holds them equal."""
    sha = hashlib.sha256
    out: list[bytes] = []
    add = out.append
    for row in rows:
        add(sha(b"\x00" + _leaf_bytes(*row)).digest())
    return out


def _state(frontier: Frontier) -> str:
    """The frontier as stored (``node_meta`` audit.frontier), which the next writer continues from."""
    return canonical({"size": frontier.size, "hashes": [h.hex() for h in frontier.hashes]})


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

# The monitors' gossip (issue 14 §4): what a partner can make this node keep is bounded.
GOSSIP_MAX_HEADS = 16  # heads one gossip message may carry (more: the message is refused)
GOSSIP_PENDING = 64  # gossiped heads waiting for a consistency proof, per gossiping partner
FORK_EVIDENCE_OPEN = 32  # unacknowledged forks kept per party (one is enough to call it forked)
NOTE_MAX = 1000  # characters of a security officer's note acknowledging a fork
# A gossiped head whose key this node cannot check (a party it has no peer for, a key it has not
# registered yet or has revoked) is set aside, not a refusal: a partner that learnt of a rotation
# first gossips honestly. A signature that does not verify under a known key refuses the message.
_NOT_CHECKABLE_HERE = frozenset({"unknown-sender", "unknown-key", "revoked-key", "key-not-valid"})


def _pair(party: str, a: TreeHead, b: TreeHead) -> str:
    """One name for two heads of ``party``, whichever order they were seen in."""
    first, second = sorted([(a.size, a.root.hex()), (b.size, b.root.hex())])
    return hashlib.sha256(canonical([party, first, second]).encode()).hexdigest()


def _instant(at_us: int | None) -> str | None:
    return None if at_us is None else datetime.fromtimestamp(at_us / 1e6, UTC).isoformat()


class AuditLog:
    """The node's Merkle log over its audit records."""

    def __init__(self, kernel: NodeContext) -> None:
        self.kernel = kernel
        self.store = AuditStore(kernel.store)
        # a batch appended on its own becomes leaves in its own transaction, under the tree's lock
        kernel.store.leaves_on_append(self._append_leaves)

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

    def may_read(self, actor: Person | None) -> bool:
        """Whether ``actor`` may read the audit records (and the flows), without a refusal recorded:
        the live feed asks it for every page, and leaves out what the reader may not see."""
        return self.kernel.holds_any(actor, READERS)

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
        processes, never interleave. Readers of the tree never call it. Whether anything waits is
        read first without the lock: a writer with nothing to do (most of the node's rounds) takes
        no write lock.
        """
        if not self.store.any_pending():
            return 0
        with self.store.writer() as w:
            return self._integrate(w, limit)

    def _integrate(self, w: AuditStore, limit: int) -> int:
        """``integrate`` in the writer's transaction ``w``."""
        rows = w.pending_fields(limit)
        if not rows:
            return 0
        frontier = self._frontier_of(w)
        first = frontier.size
        digests = _leaf_hashes([r[1:] for r in rows])
        nodes = frontier.extend(digests, with_leaves=False)  # a leaf's hash is kept with its record
        w.integrate(first, [r[0] for r in rows], digests, nodes, _state(frontier))
        return len(rows)

    def _append_leaves(self, conn: Connection, records: list[tuple[Any, ...]]) -> None:
        """New records (as stored: at_us, kind, actor, subject, outcome, detail, entry_id) written as
        leaves, in the transaction ``conn`` that holds the tree's lock (``Store.append_audit`` of a
        batch): the records still pending become leaves first, in their order, then these after them,
        the frontier read and written in this one transaction, as ``integrate`` does."""
        w = AuditStore(self.kernel.store, conn)
        while self._integrate(w, 10_000):
            pass
        frontier = self._frontier_of(w)
        first = frontier.size
        digests = _leaf_hashes(records)
        nodes = frontier.extend(digests, with_leaves=False)
        w.append_leaves(first, records, digests, nodes, _state(frontier))

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

    def heads_after(self, size: int, limit: int = 100) -> list[HeadRow]:
        """The signed heads over more than ``size`` records, smallest first (the live feed's)."""
        return self.store.heads_after(size, limit)

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

    def recorded(self, entry_id: str) -> bool:
        """Whether the log holds the entry ``entry_id``, under a signed head yet or not."""
        return self.store.entry(entry_id) is not None

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

    def _check_subtrees(self, store: AuditStore, leaves: list[bytes]) -> str | None:
        """Every stored subtree hash, level by level, against the hashes rebuilt from the records.

        The leaves are the records' own ``leaf`` (checked against their content by the caller):
        ``merkle_nodes`` keeps levels 1 and up, and a level-0 row there is reported, not ignored
        (migration 0027 moved every leaf out; one found since was put there by something else)."""
        for index, _ in store.nodes_of_level(0):
            return (
                f"merkle_nodes holds a leaf (0, {index}): leaves are kept with their records, "
                "so something other than the log's writer wrote it"
            )
        level = leaves
        depth = 0
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            depth += 1
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
        for index, _ in store.nodes_of_level(depth + 1):
            return f"stored subtree ({depth + 1}, {index}) is above the tree the records make"
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
        held = self.store.held_root(party, size)
        if (held is None or held[0] == root) and self.store.put_partner_head(row, audit):
            return "pending"
        held = self.store.held_root(party, size)  # read again: another process may have kept one
        if held is not None and held[0] != root:
            self._fork(
                party,
                (TreeHead(size, held[0]), held[1]),
                (TreeHead(size, root), jws),
                sender,
                f"{party} signed two different roots for size {size}: a fork",
            )
            return "inconsistent"
        return "pending"

    def _fork(
        self,
        party: str,
        first: tuple[TreeHead, str],
        second: tuple[TreeHead, str],
        shown_by: str,
        detail: str,
    ) -> bool:
        """Keep two heads of ``party`` that cannot both be its log (``first`` held here, ``second``
        shown by ``shown_by``), with an ``audit.fork`` alert; False if that pair was kept already
        or the party has the most open forks kept (it is forked either way)."""
        (a, a_jws), (b, b_jws) = first, second
        now = epoch_us(self.kernel.clock())
        record = {
            "detail": detail,
            "shown_by": shown_by,
            "heads": [{"size": a.size, "root": a.root.hex()}, {"size": b.size, "root": b.root.hex()}],
        }
        evidence = ForkEvidenceRow(
            party, _pair(party, a, b), a.size, a.root, a_jws, b.size, b.root, b_jws, shown_by, detail, now
        )
        alert = AuditRow(now, "audit.fork", party, str(b.size), "alert", canonical(record))
        return self.store.put_fork_evidence(evidence, FORK_EVIDENCE_OPEN, [alert])

    def _verified_head(self, jws: str, identities: Any, now: datetime) -> tuple[str, TreeHead]:
        """A signed head checked against the signature of the party it names (``EnvelopeError`` or
        ``InvalidInputError`` otherwise): no one makes a head of another party."""
        signer, content = verify_origin(jws, identities, now)
        party, size, root, _ = parse_head(content)
        if party != signer:
            raise InvalidInputError(f"a tree head of {party} signed by {signer}")
        return party, TreeHead(size, root)

    # --- the monitors' gossip: heads of third parties, from partners (issue 14 §4) ---

    def gossip_selection(self, recipient: str) -> list[str]:
        """The heads this node holds of parties other than itself and ``recipient``, to gossip to
        ``recipient``: each party's latest head, and both heads of its latest open forks, at most
        ``GOSSIP_MAX_HEADS`` in all."""
        out: list[str] = []
        for head in self.store.latest_partner_heads():
            if head.party not in (recipient, self.kernel.party):
                out.append(head.jws)
        for fork in reversed(self.store.fork_evidence(open_only=True)):
            if fork.party not in (recipient, self.kernel.party):
                out += [fork.first_jws, fork.second_jws]
        return list(dict.fromkeys(out))[:GOSSIP_MAX_HEADS]

    def receive_gossip(self, sender: str, heads: Sequence[str], identities: Any) -> dict[str, int]:
        """Heads of third parties a partner holds: each compared with what this node holds of that
        party. The same size with another root is a fork at once (both heads kept as evidence); a
        size not held here waits for a consistency proof (:meth:`check_gossip`); a head held
        already is ignored. Every head is checked against the signature of the party it names
        first, and the whole message refused if one fails: a partner cannot frame another party.
        Counts of what became of them."""
        if not isinstance(heads, list) or not 1 <= len(heads) <= GOSSIP_MAX_HEADS:
            raise InvalidInputError(f"a head gossip carries 1 to {GOSSIP_MAX_HEADS} signed heads")
        if not all(isinstance(h, str) for h in heads):
            raise InvalidInputError("a head gossip carries signed heads (compact JWS)")
        now = self.kernel.clock()
        checked = []
        unverifiable = 0
        for jws in heads:
            try:
                party, head = self._verified_head(jws, identities, now)
            except EnvelopeError as exc:
                if exc.detail in _NOT_CHECKABLE_HERE:
                    unverifiable += 1  # a key this node does not (or no longer) trust: not used
                    continue
                raise InvalidInputError(f"a gossiped tree head does not verify: {exc.detail}") from exc
            except GsomiaError as exc:
                raise InvalidInputError(f"a gossiped tree head does not verify: {exc}") from exc
            checked.append((party, head, jws))
        counts = dict.fromkeys(("kept", "duplicate", "forks", "ignored", "full"), 0)
        counts["unverifiable"] = unverifiable
        for party, head, jws in checked:
            if party in (sender, self.kernel.party):
                counts["ignored"] += 1  # a party's own heads come from it (``tree-head``)
                continue
            held = self.store.held_root(party, head.size)
            if held is None:
                row = GossipHeadRow(party, head.size, head.root, jws, sender, epoch_us(now))
                outcome = self.store.put_gossip_head(row, GOSSIP_PENDING)
                if outcome != "held":
                    counts[outcome] += 1
                    continue
                held = self.store.held_root(party, head.size)
                if held is None:  # pragma: no cover - held a moment ago, settled meanwhile
                    counts["duplicate"] += 1
                    continue
            if held[0] == head.root:
                counts["duplicate"] += 1
                continue
            detail = f"{party} signed two different roots for size {head.size}: a fork (shown by {sender})"
            self._fork(party, (TreeHead(head.size, held[0]), held[1]), (head, jws), sender, detail)
            counts["forks"] += 1
        if counts["kept"] or counts["full"] or counts["forks"] or counts["unverifiable"]:
            self.kernel.store.append_audit(
                [AuditRow(epoch_us(now), "audit.gossip", sender, None, "allowed", canonical(counts))]
            )
        return counts

    def check_gossip(self, transport: PeerTransport) -> list[dict[str, Any]]:
        """Settle the gossiped heads waiting: each against the nearest head of its party checked here,
        by a consistency proof the party serves; one that does not extend (or is not extended by)
        that head is a fork, both heads kept. Without a checked head or an answer it waits."""
        results = []
        for gossiped in self.store.gossip_heads():
            results.append(
                {"party": gossiped.party, "size": gossiped.size, **self._check_gossiped(gossiped, transport)}
            )
        return results

    def _check_gossiped(self, gossiped: GossipHeadRow, transport: PeerTransport) -> dict[str, str]:
        head = TreeHead(gossiped.size, gossiped.root)
        held = {h.size: h for h in self.store.partner_heads(gossiped.party) if h.status == "consistent"}
        base = baseline_for(head, (TreeHead(h.size, h.root) for h in held.values()))
        if base is None:
            return {"status": "pending", "detail": f"no head of {gossiped.party} checked here yet"}
        comparison = compare_heads(base, head)
        proof: list[bytes] = []
        if comparison.verdict == "proof":
            peer = self.kernel.peers.peer(gossiped.party)
            if peer is None:
                return {"status": "pending", "detail": "no registered link to ask for a proof"}
            try:
                hashes = transport.consistency(peer, comparison.old.size, comparison.new.size)
                proof = [bytes.fromhex(h) for h in hashes]
            except TransportError as exc:
                return {"status": "pending", "detail": f"no proof yet: {str(exc).split(':', 1)[0]}"}
            except ValueError as exc:
                return {"status": "pending", "detail": f"no proof yet: {type(exc).__name__}"}
        now = epoch_us(self.kernel.clock())
        try:
            comparison.check(proof)
        except ProofError as exc:
            detail = f"{exc} (a head of {gossiped.party} shown by {gossiped.via})"
            self._fork(
                gossiped.party,
                (base, held[base.size].jws),
                (head, gossiped.jws),
                gossiped.via,
                detail,
            )
            self.store.settle_gossip_head(gossiped)
            return {"status": "forked", "detail": detail}
        detail = f"consistent with the head of size {base.size} (shown by {gossiped.via})"
        record = AuditRow(
            now,
            "audit.gossip-consistent",
            gossiped.party,
            str(gossiped.size),
            "allowed",
            canonical({"detail": detail}),
        )
        self.store.settle_gossip_head(gossiped, [record])
        return {"status": "consistent", "detail": detail}

    # --- forks: the evidence, and a security officer's acknowledgement ---

    def forks(self, actor: Person | None, party: str | None = None) -> list[dict[str, Any]]:
        """Every fork found (security officers, administrators): both signed heads as received,
        whether both still verify against the party's key, who showed the second, and whether
        and by whom it was acknowledged."""
        self.require_reader(actor, "audit.forks")
        return [self._fork_view(row) for row in self.store.fork_evidence(party)]

    def _fork_view(self, row: ForkEvidenceRow) -> dict[str, Any]:
        return {
            "id": row.seq,
            "party": row.party,
            "found": _instant(row.found_us),
            "shown_by": row.shown_by,
            "detail": row.detail,
            "heads": [
                {"size": row.first_size, "root": row.first_root.hex(), "jws": row.first_jws},
                {"size": row.second_size, "root": row.second_root.hex(), "jws": row.second_jws},
            ],
            "verified": self.verify_fork(row) is None,
            "acknowledged": _instant(row.acknowledged_us),
            "acknowledged_by": row.acknowledged_by,
            "note": row.note,
        }

    def verify_fork(self, row: ForkEvidenceRow) -> str | None:
        """Check kept evidence again: both heads signed by the party (its pinned keys, as valid when
        the fork was found), naming the sizes and roots kept, and not both its log (two roots for one
        size, or sizes a failed proof could not join). ``None`` if it holds, else what does not."""
        at = datetime.fromtimestamp(row.found_us / 1e6, UTC)
        heads = []
        for jws, size, root in (
            (row.first_jws, row.first_size, row.first_root),
            (row.second_jws, row.second_size, row.second_root),
        ):
            try:
                party, head = self._verified_head(jws, self.kernel.peers.peer, at)
            except GsomiaError as exc:
                return f"a head does not verify: {exc}"
            if party != row.party or head != TreeHead(size, root):
                return "a head does not say what was kept"
            heads.append(head)
        if compare_heads(heads[0], heads[1]).verdict == "same":
            return "the two heads agree"
        return None

    def acknowledge_fork(
        self, actor: Person, party: str, note: str, through: int | None = None
    ) -> dict[str, Any]:
        """A security officer's acknowledgement of ``party``'s open forks (up to evidence ``through``):
        the partner's status is no longer "forked"; the evidence stays. Audited
        (``audit.fork-acknowledged``); only the security officer role may."""
        self.kernel.require_any(actor, (Role.SECURITY_OFFICER,), "audit.acknowledge-fork")
        note = note.strip()
        if not note or len(note) > NOTE_MAX:
            raise InvalidInputError(f"say why in a note of 1 to {NOTE_MAX} characters")
        now = epoch_us(self.kernel.clock())
        detail = {"note": note, "through": through}
        record = AuditRow(now, "audit.fork-acknowledged", actor.id, party, "allowed", canonical(detail))
        acknowledged = self.store.acknowledge_forks(party, through, actor.id, note, now, [record])
        if not acknowledged:
            raise NotFoundError(f"no open fork of {party} to acknowledge")
        status = next((p for p in self.partners() if p["party"] == party), {"status": None})["status"]
        return {"party": party, "acknowledged": acknowledged, "status": status}

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
        if status == "consistent":
            record = AuditRow(
                now,
                "audit.partner-consistent",
                head.party,
                str(head.size),
                "allowed",
                canonical({"detail": detail}),
            )
            self.store.settle_partner_head(head.party, head.size, status, detail, [record])
        else:
            self.store.settle_partner_head(head.party, head.size, status, detail)
        if status != "consistent" and baseline is not None:  # the first head is consistent anyway
            self._fork(
                head.party,
                (TreeHead(baseline.size, baseline.root), baseline.jws),
                (TreeHead(head.size, head.root), head.jws),
                head.party,
                detail,
            )
        return {"status": status, "detail": detail}

    def partners(self) -> list[dict[str, Any]]:
        """Per partner: its latest head and the status of its log: ``forked`` while a fork found
        (two heads it signed that cannot both be its log) awaits a security officer's
        acknowledgement, otherwise the latest head's (``pending``, ``consistent``,
        ``inconsistent``)."""
        by_party: dict[str, list[PartnerHeadRow]] = {}
        for head in self.store.partner_heads():
            by_party.setdefault(head.party, []).append(head)
        forks: dict[str, list[ForkEvidenceRow]] = {}
        for fork in self.store.fork_evidence():
            forks.setdefault(fork.party, []).append(fork)
        waiting: dict[str, int] = {}
        for gossiped in self.store.gossip_heads():
            waiting[gossiped.party] = waiting.get(gossiped.party, 0) + 1
        out = []
        for party in sorted(set(by_party) | set(forks)):
            heads = by_party.get(party, [])
            latest = max(heads, key=lambda h: h.size) if heads else None
            found = forks.get(party, [])
            open_forks = [f for f in found if f.acknowledged_us is None]
            status = "forked" if open_forks else (latest.status if latest else "pending")
            detail = open_forks[-1].detail if open_forks else (latest.detail if latest else None)
            out.append(
                {
                    "party": party,
                    "size": latest.size if latest else None,
                    "root": latest.root.hex() if latest else None,
                    "at": _instant(latest.at_us) if latest else None,
                    "status": status,
                    "detail": detail,
                    "heads": len(heads),
                    "forks": len(open_forks),
                    "acknowledged_forks": len(found) - len(open_forks),
                    "gossip_pending": waiting.get(party, 0),
                }
            )
        return out
