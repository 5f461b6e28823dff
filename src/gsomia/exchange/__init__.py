"""The exchange between nodes: release through the transactional outbox, delivery with signed
receipts, the exactly-once inbox, hub relay, consents, and transfer by file (air gap).

Neighbours use what ``__all__`` names. Other services take part in the inbox by registering a
handler for their message kind (:meth:`Exchange.register`) and write into the same transaction
through the :class:`Batch` it hands them; they queue their own messages with
:meth:`Exchange.queue` and sign receipts with :meth:`Exchange.receipt`.
"""

from gsomia.exchange._base import ArrivalHook, Batch, Handler
from gsomia.exchange._consents import MAX_PENDING_REQUESTS
from gsomia.exchange._messages import (
    Receipted,
    consent_content,
    consent_from_content,
    receipt_content,
    receipt_entries,
)
from gsomia.exchange._peers import KeyRevocation
from gsomia.exchange._service import MAX_RELEASE_ITEMS, Delivery, Exchange, PreparedRelease, Released
from gsomia.exchange._transfer import (
    DEFAULT_VALIDITY,
    RECEIPTS_FORMAT,
    TRANSFER_FORMAT,
    Export,
    FileTransport,
    Import,
    ReceiptsApplied,
    Refusal,
    Transfer,
)
from gsomia.exchange._transport import (
    HttpTransport,
    MemoryTransport,
    PeerService,
    PeerTransport,
    check_peer_certificate,
    inbox_body_limit,
)

__all__ = [
    "DEFAULT_VALIDITY",
    "MAX_PENDING_REQUESTS",
    "MAX_RELEASE_ITEMS",
    "RECEIPTS_FORMAT",
    "TRANSFER_FORMAT",
    "ArrivalHook",
    "Batch",
    "Delivery",
    "Exchange",
    "Export",
    "FileTransport",
    "Handler",
    "HttpTransport",
    "Import",
    "KeyRevocation",
    "MemoryTransport",
    "PeerService",
    "PeerTransport",
    "PreparedRelease",
    "Receipted",
    "ReceiptsApplied",
    "Refusal",
    "Released",
    "Transfer",
    "check_peer_certificate",
    "consent_content",
    "consent_from_content",
    "inbox_body_limit",
    "receipt_content",
    "receipt_entries",
]
