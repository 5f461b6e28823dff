"""The node's tables (SQLAlchemy Core). Instants are integer microseconds since the epoch (UTC)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a million-item store.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

items = Table(
    "items",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False, unique=True),
    Column("originator", String(3), nullable=False),
    Column("classification", String(64), nullable=False),
    Column("label", Text, nullable=False),  # canonical JSON of the SecurityLabel
    Column("received_from", String(3)),
    Column("agreement", String(128)),
    Column("created_us", BigInteger, nullable=False),
    Column("ingested_us", BigInteger, nullable=False),
    Column("ingested_by", String(128), nullable=False),
    Column("payload_type", String(16), nullable=False),
    Column("payload_size", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),  # AES-GCM nonce || ciphertext under the node key
    Column(
        "origin_jws", LargeBinary
    ),  # the originator's signed item (label + payload), sealed like the payload
    # migration 0004: labels are versioned (the originator's changes only go up); held | recalled | destroyed
    Column("label_version", Integer, nullable=False, server_default=text("1")),
    Column("state", String(16), nullable=False, server_default=text("'held'")),
    # migration 0005: when the current version was added (ingest or label change); unique, increasing
    Column("added_us", BigInteger),
    # migration 0018: an item in portions, each with its own label (issue 20 §2): the portions held
    # here as canonical JSON [{id, index, label, size}]; NULL for an item signed whole
    Column("portions", Text),
    # migration 0024: an item is (originator, id) (issue 22 §4): the id the originator signed, unique
    # per originator. ``id`` above is the node's reference for it: the same, except for an item that
    # arrived under an id another originator's item already held here (then ``ORIGINATOR:id``).
    # Always written (NULL only in no row: the migration filled it for the items before it).
    Column("origin_id", String(128)),
    Index("ux_items_origin", "origin_id", "originator", unique=True),  # id first: found by id alone too
    Index("ix_items_originator_seq", "originator", "seq"),
    Index("ix_items_originator_added", "originator", "added_us"),  # a party's TAXII collection
    Index("ix_items_classification_seq", "classification", "seq"),
    Index("ix_items_received_from_seq", "received_from", "seq"),
    Index("ix_items_created_seq", "created_us", "seq"),
    Index("ix_items_added", "added_us", unique=True),
)

# --- TAXII (migration 0005) ---

item_clock = Table(
    "item_clock",
    metadata,
    Column("id", Integer, primary_key=True),  # one row: the last date-added given
    Column("added_us", BigInteger, nullable=False),
)

taxii_statuses = Table(
    "taxii_statuses",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner", String(128), nullable=False),  # the person who posted: only they may read it
    Column("collection", String(36), nullable=False),
    Column("requested_us", BigInteger, nullable=False),
    Column("total", Integer, nullable=False),
    Column("successes", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("details", LargeBinary, nullable=False),  # zlib of compact JSON: ids, versions, reasons
    Index("ix_taxii_statuses_owner", "owner", "requested_us"),
)

item_topics = Table(
    "item_topics",
    metadata,
    Column("topic", String(128), primary_key=True),
    Column("item_seq", _SEQ, ForeignKey("items.seq"), primary_key=True),
)

inventory = Table(
    "inventory",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("item_seq", _SEQ, ForeignKey("items.seq"), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),  # ingested | received | sent | copy | ...
    Column("party", String(3)),
    Column("actor", String(128)),
    Column("detail", Text, nullable=False),
    Index("ix_inventory_item", "item_seq", "seq"),
)

people = Table(
    "people",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("record", Text, nullable=False),  # canonical JSON of the Person
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("person_id", String(128), ForeignKey("people.id"), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),  # SHA-256 of the whole token
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("revoked_us", BigInteger),
    Column("parent_id", String(32)),  # the token that minted it; NULL: issued by the operator (0007)
    Column("kind", String(16), nullable=False, server_default="api"),  # api | session (0007)
    Index("ix_tokens_parent", "parent_id"),
    Index("ix_tokens_person", "person_id"),
)

audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("entry_id", String(32), unique=True),  # named in receipts; proofs are asked for by it
    Column("leaf_index", BigInteger, unique=True),  # its place in the Merkle tree, once integrated
    Column("leaf", LargeBinary),  # RFC 9162 leaf hash of the entry, once integrated
    Column("at_us", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("actor", String(128)),
    Column("subject", String(256)),
    Column("outcome", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_audit_kind_seq", "kind", "seq"),
    Index(
        "ix_audit_unintegrated",
        "seq",
        sqlite_where=text("leaf_index IS NULL"),
        postgresql_where=text("leaf_index IS NULL"),
    ),
)

node_meta = Table(
    "node_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# --- state every process of a node shares and watches (migration 0006) ---

# One counter per kind of shared state ('keys', 'peers'): a writer bumps it in the transaction
# that changes the state; every process reads the counters (cheaply, at most every ~250 ms) and
# reads the state again when one moved. PostgreSQL LISTEN/NOTIFY can later wake readers sooner.
generations = Table(
    "generations",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# The node's own key ring: one row, its private document sealed under the node key (AES-GCM).
key_ring = Table(
    "key_ring",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("sealed", LargeBinary, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

# --- federation (migration 0002) ---

peers = Table(
    "peers",
    metadata,
    Column("party", String(3), primary_key=True),
    Column("document", Text, nullable=False),  # the peer's identity document (JSON), as imported
    Column("agreements", Text, nullable=False),  # JSON list: agreements this G2G link is registered for
    Column("registered_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("msg_id", String(64), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # item | consent-request | consent
    Column("item_id", String(128)),
    Column("recipient", String(3), nullable=False),  # the next hop
    Column("final_recipient", String(3), nullable=False),
    Column("request", Text, nullable=False),  # JSON: what to re-decide at the instant of sending
    Column("decision", Text, nullable=False),  # JSON: the decision taken at request time
    Column("envelope", Text, nullable=False),
    Column("state", String(16), nullable=False),  # pending | delivered | undeliverable
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("last_error", Text),
    Column("receipt", Text),  # the receiver's signed receipt: proof of delivery
    Column("receipt_id", String(64)),  # or the key of a batch's receipt in ``receipts`` (shared)
    Column("decision_id", String(64)),  # or the key of a shared decision in ``decisions`` (then empty)
    Index("ix_outbox_due", "state", "next_attempt_us"),
)

inbox = Table(
    "inbox",
    metadata,
    Column("msg_id", String(64), primary_key=True),
    Column("sender", String(3), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("item_id", String(128)),
    Column("received_us", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # stored | relayed | held | recorded
    Column("receipt", Text, nullable=False),  # empty where the receipt is a batch's (``receipt_id``)
    Column("receipt_id", String(64)),
)

# A batch receipt (issue 18): one signed receipt naming many messages, stored once under its SHA-256
# and named by each inbox or outbox row it acknowledges.
receipts = Table(
    "receipts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("receipt", Text, nullable=False),
)

# A release decision many outbox rows share (issue 18: a selection's items decided alike), stored once
# under the SHA-256 of its text and named by each row's ``decision_id``.
decisions = Table(
    "decisions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("decision", Text, nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # third_party | hub_relay | track_relay
    Column("originator", String(3), nullable=False),
    Column("recipient", String(3), nullable=False),
    Column("item_id", String(128)),
    Column("holder", String(3)),
    Column("hub", String(3)),
    Column("given_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger),
    Column("reference", Text, nullable=False),
    Column("jws", Text, nullable=False),  # the originator's signed consent
    Index("ix_consents_item", "originator", "item_id"),
)

consent_requests = Table(
    "consent_requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("item_id", String(128), nullable=False),
    Column("originator", String(3), nullable=False),
    Column("holder", String(3), nullable=False),
    Column("third_party", String(3), nullable=False),
    Column("purpose", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("state", String(16), nullable=False),  # pending | granted | refused
    Column("created_us", BigInteger, nullable=False),
    Column("decided_us", BigInteger),
    Column("decided_by", String(128)),
    Column("answer", Text),
)

# --- the tamper-evident audit log (migration 0003) ---

merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    Column("level", Integer, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hash", LargeBinary, nullable=False),
)

tree_heads = Table(
    "tree_heads",
    metadata,
    Column("size", BigInteger, primary_key=True),
    Column("root", LargeBinary, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("jws", Text, nullable=False),  # the signed tree head
)

partner_heads = Table(
    "partner_heads",
    metadata,
    Column("party", String(3), primary_key=True),
    Column("size", BigInteger, primary_key=True),
    Column("root", LargeBinary, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("jws", Text, nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # pending | consistent | inconsistent
    Column("detail", Text),
)

# --- the duties after release (migration 0004) ---

item_sources = Table(
    "item_sources",
    metadata,
    Column("item_seq", _SEQ, ForeignKey("items.seq"), primary_key=True),  # the copy or derivative
    Column("source_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # copy | translation | derivative
    Index("ix_item_sources_source", "source_id"),
)

label_changes = Table(
    "label_changes",
    metadata,
    Column("item_id", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # reclassify | recall
    Column("classification", String(64)),
    Column("reason", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("jws", Text, nullable=False),  # the originator's signed change
    Column("applied_us", BigInteger, nullable=False),
)

label_acks = Table(
    "label_acks",
    metadata,
    Column("item_id", String(128), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("party", String(3), primary_key=True),  # a holder downstream
    Column("state", String(16), nullable=False),  # pending | applied
    Column("at_us", BigInteger),
    Column("detail", Text),
)

destructions = Table(
    "destructions",
    metadata,
    Column("item_id", String(128), primary_key=True),
    Column("holder", String(3), primary_key=True),  # this node, or a holder whose record was sent here
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("witness", String(128), nullable=False),
    Column("method", String(32), nullable=False),
    Column("jws", Text, nullable=False),  # the record, signed by the holder's node key
    Column("sent_us", BigInteger),
)

# A holder's record that it destroyed one portion of an item in portions (issue 20 §2, Art. 13):
# kept by the holder and by the originator it was sent to (0022).
portion_destructions = Table(
    "portion_destructions",
    metadata,
    Column("item_id", String(128), primary_key=True),
    Column("portion", String(64), primary_key=True),
    Column("holder", String(3), primary_key=True),
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("witness", String(128), nullable=False),
    Column("method", String(32), nullable=False),
    Column("jws", Text, nullable=False),  # the record, signed by the holder's node key
    Column("sent_us", BigInteger),
)

# The holder's record that an item's purpose has ended (Art. 6(h), 13): return or destroy it (0014).
purpose_ends = Table(
    "purpose_ends",
    metadata,
    Column("item_id", String(128), primary_key=True),
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text, nullable=False),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("item_id", String(128), nullable=False),
    Column("originator", String(3), nullable=False),
    Column("holder", String(3), nullable=False),
    Column("nature", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # opened | findings | measures | closed
    Column("steps", Text, nullable=False),  # JSON list of the investigation's steps
    Column("jws", Text, nullable=False),  # the holder's signed reports, a JSON list, oldest first
    Column("updated_us", BigInteger, nullable=False),
)

# A holder's feedback to the originator about an item (issue 20 §4): kept at the holder that sent it
# and at the originator that received it, each with the holder's signature (0017).
feedback = Table(
    "feedback",
    metadata,
    Column("holder", String(3), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("item_id", String(128), nullable=False),
    Column("originator", String(3), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("cites", Text, nullable=False),  # JSON list of the holder's released item ids
    Column("actor", String(128), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("jws", Text, nullable=False),  # the holder's signed feedback
    Column("recorded_us", BigInteger, nullable=False),
    Index("ix_feedback_item", "item_id", "holder"),
)

visits = Table(
    "visits",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("person_id", String(128), ForeignKey("people.id"), nullable=False),
    Column("highest", String(64), nullable=False),
    Column("starts_us", BigInteger, nullable=False),
    Column("ends_us", BigInteger, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("authorised_by", String(128), nullable=False),
    Index("ix_visits_person", "person_id"),
)

authorities = Table(
    "authorities",
    metadata,
    Column("party", String(3), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("function", Text, nullable=False),
    Column("recorded_us", BigInteger, nullable=False),
)

national_rules = Table(
    "national_rules",
    metadata,
    Column("party", String(3), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("title", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("levels", Text, nullable=False),  # JSON list; empty: every level
    Column("effective_us", BigInteger, nullable=False),
    Column("recorded_us", BigInteger, nullable=False),
)

item_flags = Table(
    "item_flags",
    metadata,
    Column("item_id", String(128), primary_key=True),
    Column("party", String(3), primary_key=True),
    Column("version", Integer, primary_key=True),  # the rules version that raised the flag
    Column("reason", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
)


# The node whose database this is (one row): another node refuses to start on it (0008).
node_identity = Table(
    "node_identity",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("party", String(3), nullable=False),
    Column("identity", String(64), nullable=False),
    Column("claimed_us", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="ck_node_identity_one_row"),
)

# The leaves of originator-signed track batches this node received (0009): a batch, or a track of
# one, arriving again within the window a signature is fresh is a replay. Rows older than twice that
# window are forgotten (a replay then is refused as stale), so the table stays bounded.
track_batches_seen = Table(
    "track_batches_seen",
    metadata,
    Column("batch", String(64), primary_key=True),  # SHA-256 of the signed batch content, hex
    Column("leaf", Integer, primary_key=True),
    Column("originator", String(3), nullable=False),
    Column("seen_us", BigInteger, nullable=False),
    Index("ix_track_batches_seen_seen_us", "seen_us"),
)

# The track updates this node received, by their identity (0023): the originator that signed them,
# the recipient, the track id and the update's instant, hashed. The same update sent again under a
# new signature (a link's new holder resending what its dead holder sent but had not confirmed) is
# dropped, in every process of the node. Rows older than the window a resend can come in are
# forgotten with the batches', so the table stays bounded.
tracks_seen = Table(
    "tracks_seen",
    metadata,
    Column("track", String(64), primary_key=True),  # SHA-256 (hex) of the update's identity
    Column("originator", String(3), nullable=False),
    Column("seen_us", BigInteger, nullable=False),
    Index("ix_tracks_seen_seen_us", "seen_us"),
)

# --- leases (migration 0010): one holder per kind of background work ---

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(160), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("acquired_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
)

# --- two-person release (migration 0011) ---

# The node's two-person policy: one row, its data as JSON (generation "release_policy").
release_policy = Table(
    "release_policy",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("document", Text, nullable=False),
    Column("updated_us", BigInteger, nullable=False),
    Column("updated_by", String(128), nullable=False),
    CheckConstraint("id = 1", name="ck_release_policy_one_row"),
)

# A release waiting for a second officer: the request, then the approval (signed) or its end.
release_requests = Table(
    "release_requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("item_id", String(128), nullable=False),
    Column("label", Text, nullable=False),  # the item's label when requested (JSON): what is approved
    Column("spec", Text, nullable=False),  # JSON: sender, via, recipient, purpose, authorise_relay
    Column("requester", String(128), nullable=False),
    Column("state", String(16), nullable=False),  # requested | approved | refused | withdrawn
    Column("reason", Text, nullable=False),  # why a second officer is needed
    Column("requested_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),  # unanswered after this: it lapses
    Column("decided_by", String(128)),
    Column("decided_us", BigInteger),
    Column("approval", Text),  # the approver's signed approval (JWS), once approved
    Column("note", Text),  # the refusal's or withdrawal's reason
    Column("msg_id", String(64)),  # the outbox entry the approval queued
    Index("ix_release_requests_state", "state", "requested_us"),
)

# --- link hellos answered (migration 0012): a replayed handshake is refused by every process ---

link_hellos = Table(
    "link_hellos",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("seen_us", BigInteger, nullable=False),
    Index("ix_link_hellos_seen_us", "seen_us"),
)

# --- scheduled downgrades (migration 0013) ---

# The originator's declared downgrades: at ``at_us`` the item becomes ``classification``, applied
# as a label change is (here and at every holder). pending -> applied | failed | cancelled.
scheduled_changes = Table(
    "scheduled_changes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("item_id", String(128), nullable=False),
    Column("classification", String(64), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("scheduled_by", String(128), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("done_us", BigInteger),
    Column("note", Text),
    Index("ix_scheduled_changes_due", "state", "at_us"),
)

# --- refusals of callers nobody has authenticated, counted in bounded space (migration 0015) ---

# One row per (kind of refusal, source, code, window): the first few refusals of a window are audit
# records of their own, the rest only raise ``count`` here; once the window has closed the node's
# loop writes one ``refusal.tally`` audit record for a row that went beyond them (count, first and
# last instants, a sample) and deletes the row. ``source`` is the caller's address, or ``*`` for
# the sources beyond a window's cap.
refusal_tallies = Table(
    "refusal_tallies",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("source", String(64), primary_key=True),
    Column("code", String(64), primary_key=True),  # a finite vocabulary: an envelope code, a status
    Column("window_us", BigInteger, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("first_us", BigInteger, nullable=False),
    Column("last_us", BigInteger, nullable=False),
    Column("sample", Text, nullable=False),  # the first refusal's reason
)

# --- the heads partners gossip about each other, and the forks they show (migration 0016) ---

# A head of a third party a partner gossiped, kept only until a consistency proof against a head
# this node holds of that party settles it (issue 14 §4): at most one per (party, size), a
# bounded number per gossiper. ``via`` is the partner that gossiped it.
gossip_heads = Table(
    "gossip_heads",
    metadata,
    Column("party", String(3), primary_key=True),
    Column("size", BigInteger, primary_key=True),
    Column("root", LargeBinary, nullable=False),
    Column("jws", Text, nullable=False),
    Column("via", String(3), nullable=False),
    Column("received_us", BigInteger, nullable=False),
    Index("ix_gossip_heads_via", "via"),
)

# Two heads one party signed that cannot both be its log, kept as evidence: both JWS as received,
# verifiable later by anyone holding the party's key. ``pair`` names the two heads (so a fork seen
# again is one row); ``shown_by`` the partner whose copy revealed it (the party itself when both
# came from it). A fork stands until a security officer acknowledges it.
fork_evidence = Table(
    "fork_evidence",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("party", String(3), nullable=False),
    Column("pair", String(64), nullable=False, unique=True),
    Column("first_size", BigInteger, nullable=False),
    Column("first_root", LargeBinary, nullable=False),
    Column("first_jws", Text, nullable=False),
    Column("second_size", BigInteger, nullable=False),
    Column("second_root", LargeBinary, nullable=False),
    Column("second_jws", Text, nullable=False),
    Column("shown_by", String(3), nullable=False),
    Column("detail", Text, nullable=False),
    Column("found_us", BigInteger, nullable=False),
    Column("acknowledged_us", BigInteger),
    Column("acknowledged_by", String(128)),
    Column("note", Text),
    Index("ix_fork_evidence_party", "party", "acknowledged_us"),
)

# --- equivalence changes: a party's policy update of its side of an agreement's table (0019) ---

# One row per (agreement, party, sequence): this node's own changes and those its partners sent,
# each with the instant it applies from here (``applies_us``: the stated instant, or when it became
# known here if later) and the signed change it was read from. The ``equivalences`` generation
# counter moves with each insert, so every process rebuilds its catalogue and release engine.
equivalence_changes = Table(
    "equivalence_changes",
    metadata,
    Column("agreement", String(128), primary_key=True),
    Column("party", String(8), primary_key=True),
    Column("sequence", BigInteger, primary_key=True),
    Column("effective_us", BigInteger, nullable=False),
    Column("applies_us", BigInteger, nullable=False),
    Column("change", Text, nullable=False),  # the change's canonical JSON, as signed
    Column("proposed_by", String(128)),  # the officer, for this node's own changes
    Column("received_from", String(8)),  # the partner that delivered it (None: this node's own)
    Column("recorded_us", BigInteger, nullable=False),
    Column("jws", Text, nullable=False),
)

# --- the recipients' assurances before provision (Art. 7(5); migration 0021) ---

# One row per assurance: this node's own (it signed) and its partners' (their nodes signed), each
# with its signed document; a revocation sets ``revoked_us`` once and keeps its signed document.
assurances = Table(
    "assurances",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("agreement", String(64), nullable=False),
    Column("party", String(3), nullable=False),  # the recipient party that gives it
    Column("given_us", BigInteger, nullable=False),
    Column("reference", Text, nullable=False),
    Column("jws", Text, nullable=False),  # the party's node's signed assurance
    Column("revoked_us", BigInteger),
    Column("revocation", Text),  # the party's node's signed revocation
    Index("ix_assurances_agreement", "agreement", "party"),
)

# --- per-source request budgets of callers nobody has authenticated (migration 0020) ---

# A fixed-window counter per key (the ``limits`` library's key: the rate, the source): what a
# source has spent of its budget in the window that ends at ``expires_us``. Every process of the
# node counts in the same row (upserted), so the budget is the node's, not a process's; rows whose
# window has ended are deleted by the node's loop.
rate_counters = Table(
    "rate_counters",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Index("ix_rate_counters_expires_us", "expires_us"),
)

# --- the envelope versions this node opens, per partner (migration 0028) ---

# One row per partner ('*': every partner): the lowest envelope version (1 JOSE, 2 COSE in base64url,
# 3 COSE in standard base64) this node opens from it. A partner's row is raised by the inbox the
# first time an envelope of that partner's in COSE opens (``cause`` 'sent': no going back), or set
# by an administrator (``cause`` 'set', from ``since_us``); ``pending`` while an administrator's
# instant has not yet been reached on this node's clock, cleared once it has, so a clock set back
# afterwards does not bring the older version back.
envelope_versions = Table(
    "envelope_versions",
    metadata,
    Column("party", String(8), primary_key=True),
    Column("lowest", Integer, nullable=False),
    Column("since_us", BigInteger, nullable=False),
    Column("pending", Integer, nullable=False),  # 1 until since_us is reached, then 0 for good
    Column("cause", String(8), nullable=False),  # sent | set
    Column("by", String(200), nullable=False),  # the message id that raised it, or who set it
    Column("updated_us", BigInteger, nullable=False),
)
