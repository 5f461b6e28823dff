"""gsomia: intelligence-sharing agreements between states as running, enforced software.

The public API is re-exported here; everything else is internal.

>>> from datetime import datetime
>>> from zoneinfo import ZoneInfo
>>> import gsomia
>>> catalogue = gsomia.load_catalogue()
>>> t = datetime(2019, 11, 23, 0, 0, 1, tzinfo=ZoneInfo("Asia/Seoul"))
>>> catalogue.agreement("kor-jpn-gsomia-2016").state_at(t).status.value
'notice_suspended'
"""

from gsomia._datafiles import load_catalogue, load_events
from gsomia.core.access import AccessDecision, Person, Role, decide_read
from gsomia.core.agreements import Agreement, Equivalence, EquivalenceRow, Topology
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import parse_instant
from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.core.lifecycle import AgreementState, Event, EventKind, Notice, Status, TermRules
from gsomia.core.parties import Classification, Party, Scheme
from gsomia.core.policy import (
    AllOf,
    Check,
    Consent,
    ConsentKind,
    LabelRules,
    Marking,
    ReleaseDecision,
    ReleaseEngine,
    ReleaseRequest,
    standard_rules,
)
from gsomia.errors import (
    AccessDenied,
    AgreementError,
    AuthenticationError,
    ConfigError,
    ConflictError,
    DataFileError,
    EnvelopeError,
    GsomiaError,
    InstantError,
    InvalidInputError,
    LabelError,
    LifecycleError,
    NotFoundError,
    PayloadTooLargeError,
    ProofError,
    ReleaseRefused,
    StoreError,
    UnknownNameError,
)

__all__ = [
    "AccessDecision",
    "AccessDenied",
    "Agreement",
    "AgreementError",
    "AgreementState",
    "AllOf",
    "AlternativeLabel",
    "AuthenticationError",
    "Catalogue",
    "Check",
    "Classification",
    "ConfigError",
    "ConflictError",
    "Consent",
    "ConsentKind",
    "DataFileError",
    "EnvelopeError",
    "Equivalence",
    "EquivalenceRow",
    "Event",
    "EventKind",
    "GsomiaError",
    "InstantError",
    "InvalidInputError",
    "LabelError",
    "LabelRules",
    "LifecycleError",
    "Marking",
    "NotFoundError",
    "Notice",
    "Party",
    "PayloadTooLargeError",
    "Person",
    "ProofError",
    "ReleaseDecision",
    "ReleaseEngine",
    "ReleaseRefused",
    "ReleaseRequest",
    "Role",
    "Scheme",
    "SecurityLabel",
    "Status",
    "StoreError",
    "TermRules",
    "Topology",
    "UnknownNameError",
    "decide_read",
    "load_catalogue",
    "load_events",
    "parse_instant",
    "standard_rules",
]
__version__ = "0.1.0"
