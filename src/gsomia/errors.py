"""The one exception tree of gsomia.

Every error gsomia raises on purpose derives from :class:`GsomiaError` and carries a
message a person can act on. Third-party exceptions are converted where they enter
(``raise ... from exc``)::

    GsomiaError
    ├── DataFileError          a party, scheme, agreement or event file is malformed
    ├── UnknownNameError       a party, level, agreement or event name is not known
    ├── AgreementError         an agreement is inconsistent (parties, topology, table)
    │   └── LifecycleError     an agreement event breaks the lifecycle rules
    ├── LabelError             a security label is malformed or inconsistent
    ├── InstantError           an instant cannot be parsed or lacks an offset
    ├── ReleaseRefused         a release was refused; carries the full decision
    ├── AccessDenied           a person may not read (or create) an item; carries the decision
    ├── AuthenticationError    a token is missing, unknown, expired or revoked
    ├── NotFoundError          no such item, person or token at this node
    ├── ItemGoneError          the item was destroyed or recalled: its record remains, its payload is gone
    ├── ConflictError          an id is already taken
    ├── PayloadTooLargeError   a payload exceeds the node's limit
    ├── ConfigError            a node directory or its configuration is unusable
    ├── InvalidInputError      a request is malformed (bad id, cursor, payload encoding)
    │   ├── NotAcceptableError        no media type the client accepts is one this endpoint produces
    │   ├── UnsupportedMediaTypeError a body's content type is not one this endpoint takes
    │   └── TrackError         a missile track update is malformed
    │       └── ForbiddenFieldError  it names sensors, platforms or pre-launch indicators
    ├── ProofError             a Merkle proof or a log does not verify (tampering, a fork)
    ├── EnvelopeError          an envelope or origin signature was refused (opaque; detail audited)
    ├── StoreError             the store failed; nothing was half-written
    ├── TransportError         a partner node could not be reached, or answered what is no answer
    ├── UnavailableError       a service the node relies on (the stream's NATS bus) is out of reach
    └── LinkError              a stream link frame was refused (replay, reorder, gap, tamper)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gsomia.core.access import AccessDecision
    from gsomia.core.policy import ReleaseDecision

__all__ = [
    "AccessDenied",
    "AgreementError",
    "AuthenticationError",
    "BodyTooLargeError",
    "ConfigError",
    "ConflictError",
    "DataFileError",
    "EnvelopeError",
    "ForbiddenFieldError",
    "GsomiaError",
    "InstantError",
    "InvalidInputError",
    "ItemGoneError",
    "LabelError",
    "LifecycleError",
    "LinkError",
    "NotAcceptableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProofError",
    "RateLimitedError",
    "ReleaseRefused",
    "StoreError",
    "TrackError",
    "TransportError",
    "UnavailableError",
    "UnknownNameError",
    "UnsupportedMediaTypeError",
]


class GsomiaError(Exception):
    """Root of every error gsomia raises on purpose."""


class DataFileError(GsomiaError):
    """A data file (party, scheme, agreement, events) is malformed.

    The message names the file, the field and the problem.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")


class UnknownNameError(GsomiaError, LookupError):
    """A name (party, classification level, agreement, event) is not known."""


class AgreementError(GsomiaError):
    """An agreement is inconsistent: parties, topology, scope or equivalence table."""


class LifecycleError(AgreementError):
    """An agreement event is not allowed by the lifecycle rules at its instant."""

    def __init__(self, message: str, event_id: str | None = None) -> None:
        self.event_id = event_id
        super().__init__(message)


class LabelError(GsomiaError, ValueError):
    """A security label is malformed or does not fit its originator's scheme."""


class InstantError(GsomiaError, ValueError):
    """An instant is malformed, or is naive where an offset is required."""


class ReleaseRefused(GsomiaError):
    """A release was refused; ``decision`` explains every check."""

    def __init__(self, decision: ReleaseDecision) -> None:
        self.decision = decision
        failed = "; ".join(f"{c.rule}: {c.reason}" for c in decision.checks if not c.passed)
        super().__init__(f"release refused: {failed or 'no rule allowed it'}")


class AccessDenied(GsomiaError):
    """A person may not read (or create) an item; ``decision`` explains every check."""

    def __init__(self, decision: AccessDecision) -> None:
        self.decision = decision
        failed = "; ".join(f"{c.rule}: {c.reason}" for c in decision.checks if not c.passed)
        super().__init__(f"access refused: {failed or 'no rule allowed it'}")


class AuthenticationError(GsomiaError):
    """A token is missing, unknown, expired or revoked."""


class RateLimitedError(GsomiaError):
    """A source has spent its budget of requests nobody authenticated (and of refusals) for now;
    ``retry_after``: whole seconds until its window ends."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = max(1, retry_after)
        super().__init__(
            f"too many requests from this address without credentials; retry after {self.retry_after} s"
        )


class NotFoundError(GsomiaError, LookupError):
    """No such item, person or token at this node."""


class ItemGoneError(GsomiaError):
    """The item was destroyed or recalled by its originator: its record remains, its payload is gone."""


class ConflictError(GsomiaError):
    """An identifier is already taken."""


class PayloadTooLargeError(GsomiaError, ValueError):
    """A payload exceeds the node's configured limit."""


class ConfigError(GsomiaError):
    """A node directory or its configuration is missing or unusable."""


class StoreError(GsomiaError):
    """The store failed; the transaction was rolled back, nothing was half-written."""


class UnavailableError(GsomiaError):
    """A service the node relies on (the stream's NATS bus) is out of reach and cannot take more now.

    Nothing was lost silently: the caller is told to retry (HTTP 503).
    """


class InvalidInputError(GsomiaError, ValueError):
    """A request is malformed: a bad identifier, cursor or payload encoding."""


class NotAcceptableError(InvalidInputError):
    """The client's ``Accept`` names no media type this endpoint produces (e.g. TAXII 2.0)."""


class UnsupportedMediaTypeError(InvalidInputError):
    """A request body's ``Content-Type`` is not one this endpoint takes."""


class TrackError(InvalidInputError):
    """A missile track update is malformed; the message names the field and the problem."""


class ForbiddenFieldError(TrackError):
    """A track update carries what the missile-warning arrangement forbids sharing.

    The arrangement shares launch point, trajectory and impact point only: never details of
    national sensors or platforms, never pre-launch indicators. ``field`` is the offending path.
    """

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(
            f"track field {field!r} is forbidden: the missile-warning arrangement never shares "
            "sensor or platform details or pre-launch indicators; remove it and publish again"
        )


class TransportError(GsomiaError):
    """A partner node could not be reached, or its answer was not one (converted at the transport).

    The message starts with what failed underneath (``ConnectError: ...``); the sender retries.
    """


class BodyTooLargeError(TransportError):
    """A partner refused a request for its size (HTTP 413): permanent for that body, never retried
    as it is; the sender splits what it carried into smaller requests."""


class LinkError(GsomiaError):
    """A frame on a stream link between nodes was refused, and the link closed.

    ``detail`` is the short code for the audit log: ``replayed``, ``out-of-order``, ``gap``,
    ``tampered``, ``handshake-failed``, ``unknown-peer``, ``malformed``, ``bad-batch-signature``,
    ``bad-consent``; for a track its originator did not sign: ``unsigned`` (no signature),
    ``bad-origin-signature`` (not a registered party's valid signature over a batch of tracks),
    ``not-included`` (not under the signed root), ``not-the-originator`` (signed by another party
    than the one its label names), ``stale-batch`` (signed too long ago or ahead); for a link whose
    peer key this node revoked after the link opened: ``revoked-key``.
    """

    def __init__(self, detail: str, message: str) -> None:
        self.detail = detail
        super().__init__(message)


class ProofError(GsomiaError):
    """A Merkle proof, a tree head or a log does not verify: tampering, a rewrite or a fork."""


class EnvelopeError(GsomiaError):
    """An envelope or an originator's signature was refused.

    ``str(error)`` is always "envelope refused": the sender of bad input learns nothing
    about which check failed. ``detail`` is the short code for the audit log:
    ``malformed``, ``unsupported-version``, ``unknown-sender``, ``unknown-key``,
    ``revoked-key``, ``key-not-valid``, ``bad-signature``, ``wrong-recipient``,
    ``expired``, ``not-yet-valid``, ``decrypt-failed`` or ``bad-origin-signature``.

    >>> str(EnvelopeError("bad-signature"))
    'envelope refused'
    """

    def __init__(self, detail: str, note: str | None = None) -> None:
        self.detail = detail
        self.note = note  # for the audit log too: e.g. the instants behind ``expired`` / ``not-yet-valid``
        super().__init__("envelope refused")

    def __reduce__(self) -> tuple[type[EnvelopeError], tuple[str, str | None]]:
        return (type(self), (self.detail, self.note))
