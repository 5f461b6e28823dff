"""The node's persistent store (SQLite by default, PostgreSQL in production) and its migrations.

``Store`` holds items, people, tokens, inventory and audit records; ``FederationStore`` the
exchange's peers, outbox, inbox and consents; ``AuditStore`` the Merkle log's leaves and heads;
``DutiesStore`` the duties after release; ``SharedState`` the generation counters every process
watches (``ChangeListener`` hears them move, on PostgreSQL) and the node's sealed key ring;
``LeaseStore`` which process holds each kind of background work; ``Gauges`` what an operator
watches (backlogs, heads' ages); ``LinkHellos`` the stream link hellos answered;
``EquivalenceStore`` the parties' equivalence changes; ``EnvelopeVersionStore`` the envelope
versions opened from each partner; ``RateCounters`` the per-source request
budgets (a ``limits`` storage). Each is a view over the one ``Store``'s connection.
"""

from gsomia.store._approvals import RELEASE_POLICY, ApprovalStore, ReleaseRequestRow
from gsomia.store._assurances import ASSURANCES, AssuranceRow, AssuranceStore
from gsomia.store._audit import AuditStore, ForkEvidenceRow, GossipHeadRow, HeadRow, PartnerHeadRow
from gsomia.store._duties import (
    DestructionRow,
    DutiesStore,
    FeedbackRow,
    IncidentRow,
    LabelAckRow,
    LabelChangeRow,
    Op,
    PortionDestructionRow,
    VisitRow,
)
from gsomia.store._equivalences import EQUIVALENCES, EquivalenceChangeRow, EquivalenceStore
from gsomia.store._federation import (
    ConsentRequestRow,
    ConsentRow,
    FederationStore,
    InboxRow,
    OutboxRow,
    PeerRow,
)
from gsomia.store._gauges import Backlog, Gauges
from gsomia.store._hellos import LinkHellos
from gsomia.store._leases import LeaseRow, LeaseStore
from gsomia.store._notify import ChangeListener
from gsomia.store._ratelimit import RateCounters
from gsomia.store._schedule import ScheduledRow, ScheduleStore
from gsomia.store._shared import CONSENTS, KEYS, PEERS, PEOPLE, TOKENS, VISITS, SharedState
from gsomia.store._store import (
    OVERFLOW_SOURCE,
    QUEUED,
    AuditRow,
    InventoryEntry,
    InventoryRow,
    ItemFilter,
    ItemPart,
    ItemRow,
    NewItem,
    Remembered,
    SignedArrival,
    Store,
    TallyRow,
    TokenRow,
    uuid7_hex,
)
from gsomia.store._taxii import StatusRow, TaxiiStore
from gsomia.store._versions import ENVELOPES, EVERY_PARTNER, EnvelopeVersionRow, EnvelopeVersionStore

__all__ = [
    "ASSURANCES",
    "CONSENTS",
    "ENVELOPES",
    "EQUIVALENCES",
    "EVERY_PARTNER",
    "KEYS",
    "OVERFLOW_SOURCE",
    "PEERS",
    "PEOPLE",
    "QUEUED",
    "RELEASE_POLICY",
    "TOKENS",
    "VISITS",
    "ApprovalStore",
    "AssuranceRow",
    "AssuranceStore",
    "AuditRow",
    "AuditStore",
    "Backlog",
    "ChangeListener",
    "ConsentRequestRow",
    "ConsentRow",
    "DestructionRow",
    "DutiesStore",
    "EnvelopeVersionRow",
    "EnvelopeVersionStore",
    "EquivalenceChangeRow",
    "EquivalenceStore",
    "FederationStore",
    "FeedbackRow",
    "ForkEvidenceRow",
    "Gauges",
    "GossipHeadRow",
    "HeadRow",
    "InboxRow",
    "IncidentRow",
    "InventoryEntry",
    "InventoryRow",
    "ItemFilter",
    "ItemPart",
    "ItemRow",
    "LabelAckRow",
    "LabelChangeRow",
    "LeaseRow",
    "LeaseStore",
    "LinkHellos",
    "NewItem",
    "Op",
    "OutboxRow",
    "PartnerHeadRow",
    "PeerRow",
    "PortionDestructionRow",
    "RateCounters",
    "ReleaseRequestRow",
    "Remembered",
    "ScheduleStore",
    "ScheduledRow",
    "SharedState",
    "SignedArrival",
    "StatusRow",
    "Store",
    "TallyRow",
    "TaxiiStore",
    "TokenRow",
    "VisitRow",
    "uuid7_hex",
]
