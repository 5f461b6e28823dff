"""The node's stream service: publish tracks, relay them over link sessions, fan them out.

At the originating node, :meth:`StreamService.publish` parses an update (sensor details are
refused), labels the track, and sends it on each route the current :class:`RelayPlan`
allows: directly, or to the hub when only the hub route is allowed. The plan is made
before the track's first emission and re-made only when the instant passes its
``valid_until`` (the next agreement event or consent boundary): per message, one comparison.

Every track carries its originator's signature end to end (``_origin``): the originator signs
the Merkle root of each burst of its own tracks, a hub relays that signed root unchanged with
an inclusion proof per track, and a receiver reads no track before the signature and the
inclusion verify, and the track's label names the signer as originator.

At a receiving node, every frame arrives on an authenticated link session (``_link``); the
node decides again on its own side (a refusal drops the track and is audited), marks the
track with its own equivalent level, and publishes it on its bus; a hub passes a track on
only when its own decision, with the originator's authorisation, allows it. Consumers
(SSE, WebSocket) read from the bus, each through its own access decision.

A node of several processes (NATS JetStream, ``node serve --stream-nats``) opens each outbound
link from one process only: the holder of the link's lease (``link:PARTY``, in the store). Every
process, the holder too, hands what it would send on that link (the track, its route's agreement,
the authorisations that must precede it) to the holder through the bus (:meth:`NatsBus.hand_off`);
the holder sends it on its link in the bus's order, one order for the whole node. When the
holder dies, another process takes the lease within the lease's time, opens the link and takes
up what was handed and not yet sent. With the in-process bus a node is one process and holds every link.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import math
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

import msgspec
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from gsomia._codec import canonical, label_to_dict
from gsomia._present import route_view
from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Consent, ConsentKind, ReleaseDecision, ReleaseRequest
from gsomia.core.relay import MISSILE_TOPIC, MISSILE_WARNING, RelayPlan, Route, next_event_after, plan_relay
from gsomia.core.tracks import TrackUpdate, track_update_to_json
from gsomia.crypto.envelope import verify_origin_until
from gsomia.errors import (
    AccessDenied,
    AuthenticationError,
    EnvelopeError,
    GsomiaError,
    InvalidInputError,
    LabelError,
    LinkError,
    NotFoundError,
    TransportError,
    UnavailableError,
)
from gsomia.exchange import Exchange, check_peer_certificate, consent_from_content
from gsomia.kernel import ChangeWatch, NodeContext, ReadGate
from gsomia.store import (
    ASSURANCES,
    CONSENTS,
    EQUIVALENCES,
    KEYS,
    PEERS,
    PEOPLE,
    TOKENS,
    VISITS,
    AuditRow,
    LinkHellos,
    RateCounters,
    Remembered,
    SignedArrival,
)
from gsomia.stream._batches import batches
from gsomia.stream._bus import HANDOFF_MAX_AGE_S, HANDOFF_RESENDS, Bus, InProcessBus, NatsBus
from gsomia.stream._gate import LinkGate
from gsomia.stream._link import (
    ACK,
    ACK_BODY,
    BATCH,
    CONSENT,
    READY,
    TRACK,
    TRACKS,
    BatchSigner,
    BatchVerifier,
    Frame,
    LinkSession,
    accept,
    initiate,
)
from gsomia.stream._memory import ReplayMemory
from gsomia.stream._origin import Entry, VerifiedGroup, decode_groups, encode_group, sign_batch, verify_group
from gsomia.stream._stalls import Deadline, Stalls
from gsomia.stream._trackread import (
    json_keys,
    keys_once,
    read_feed_json,
    read_track_json_checked,
    read_track_update,
    strings_read,
)

__all__ = [
    "FEED_BATCH",
    "LINK_PATH",
    "LinkLease",
    "StreamHost",
    "StreamService",
    "StreamStats",
    "parse_feed_message",
]

_log = logging.getLogger("gsomia.stream")
LINK_PATH = "/stream/link"
_TICK_S = 0.01
_CACHE_LIMIT = 4096
_SEEN_MARGIN = timedelta(minutes=1)  # a received batch is remembered this much beyond 2 x max skew
FEED_BATCH = 1000  # updates in one message of the publisher's WebSocket feed, at most
_RETRY_S = 1.0  # after a link fails, no reconnect attempt for this long
# a partner's WebSocket and its answer to the link hello, waited for this long: a loaded partner (its
# store recording the hello it answers) still answers, where a link failed and retried loses tracks
_OPENING_S = 30.0
# tracks queued for one link while the event loop was busy go out as one TRACKS frame, up to:
_COALESCE_TRACKS = 256
_COALESCE_BYTES = 256 * 1024  # well under the link's 1 MiB WebSocket message limit
_READ_AHEAD_S = 0.05  # the store's generation counters are read this long before they fall due
_ROOT_DEADLINE_S = 5.0  # a hop's window root (signed every 50 ms) overdue this long drops the link
# this node's own delays (its event loop held up, its waits on its own commits) left out of a peer's
# deadline, at most: a deadline of 5 s ends at the latest 15 s after it began, whatever held the loop
_OWN_DELAY_CAP_S = 10.0
_CONSENTS_PER_LINK = 64  # authorisations one link may carry
_READ_AHEAD = 1024  # groups of one link read and not yet taken, at most: then the reader waits
# window roots of one link verified and not yet confirmed (their audit records not yet committed), at
# most: then the taking waits for the oldest to be confirmed, and the reading behind it (_READ_AHEAD),
# so a sender flooding roots, or a store slow to commit, holds its own link up and costs bounded memory.
# A root comes every 50 ms or so: 64 are about 3 s of records waiting for their commit
_UNCONFIRMED_MOST = 64
_CONSENTS_KEPT = 64  # standing authorisations kept per originator (the newest)
# a consumer asks whether anyone's record, a token or a visit changed (the store's people, tokens and
# visits counters, as last read) at most this often: a change any process commits reaches an open
# stream within the watch's interval and this
_PERSON_CHECK_S = 0.1
# how often the open consumers' streams and publishers' feeds are looked at while nothing comes
# (StreamService._follow_open): an idle one's person, credential (and a consumer's visits) are checked
# as often, so one ended meanwhile is closed
_IDLE_CHECK_S = 0.25
_LEASE_POLL_S = 0.5  # how often this process asks whether it (still) holds each outbound link's lease
# an update sent again comes at most this long after the first time: a link's holder sends what was
# handed to it within the handover stream's age (HANDOFF_MAX_AGE_S), with a margin for the clocks
_RESEND_WINDOW = timedelta(seconds=HANDOFF_MAX_AGE_S) + _SEEN_MARGIN
_DUPLICATES_NAMED = 16  # updates a `duplicate` audit record names, at most (it counts them all)
_RESENDS_KEY = "stream-resends:"  # + the sender: its duplicates in the store's counters (every process's)

_Ack = Callable[[], Awaitable[None]]  # acknowledges one handed track at the node's bus
_FOREVER = float("inf")


class _Decided(NamedTuple):
    """Why a queued track may go on its link: the decision's terms, to decide again if the frame is
    made after the decision stopped holding (``until``, a POSIX instant: the next agreement event)
    or after what it was decided on changed in the store (``under``: a consent withdrawn, an
    equivalence change, an assurance revoked, a key revoked or rotated, in any process). A named
    tuple (one per track and route): made without a frozen dataclass's field-by-field
    ``object.__setattr__``."""

    until: float
    label: SecurityLabel
    recipient: str
    via: str | None
    subject: str  # the track id, for the audit record of a refusal
    sender: str | None  # a relayed track: the node it came from; this node's own: None
    under: tuple[int, ...]  # the store's generations it was decided under (_decided_under)
    # the agreement the decision let it go under (its link's registration was checked for it): a
    # decision made again at the frame lets it go only under the same one
    agreement: str | None


class LinkLease(Protocol):
    """This process's hold on one outbound link's lease (the node's ``Lease``)."""

    def held(self) -> bool: ...

    def release(self) -> None: ...


class StreamHost(Protocol):
    """What the stream is built over: a node's kernel and its exchange (a ``Node`` is one)."""

    @property
    def kernel(self) -> NodeContext: ...

    @property
    def exchange(self) -> Exchange: ...


@dataclass(slots=True)
class StreamStats:
    """Counters a person (or a test) can read: what went where, what was refused."""

    published: int = 0
    sent: dict[str, int] = field(default_factory=dict)
    # TRACKS frames sent, per partner link: ``sent`` over this is the tracks a frame (at 1,000/s
    # mostly one: a track that finds its link idle goes at once, alone; a burst shares a frame)
    frames: dict[str, int] = field(default_factory=dict)
    received: int = 0
    relayed: int = 0
    emitted: int = 0
    refused: int = 0
    link_errors: int = 0
    batches_signed: int = 0
    batches_verified: int = 0
    duplicates: int = 0  # updates received again (a resend after a link changed hands), dropped
    dropped: int = 0  # tracks a consumer lost, more than the bus holds for it behind (the oldest)


# the fixed parts of a bus message (``_emit``), around the label's digest and its JSON
_LK = b',"lk":"'
_LABEL_KEY = b'","label":'
_TRACK_KEY = b',"track":'


class _GroupLabels:
    """The last label read in a group: its boundary form, the label parsed from it and how many
    strings, keys and values, its JSON holds (no key given twice); and the last track read, its
    bytes, the track id and update's instant read from them and their strings (a hub's group
    holds each update twice, the same bytes in the copy for the hub and in the one it relays:
    read once)."""

    __slots__ = ("data", "label", "strings", "track", "track_id", "track_strings", "update_ts")

    def __init__(self) -> None:
        self.data: Any = None
        self.label: SecurityLabel | None = None
        self.strings = 0
        self.track: bytes | None = None
        self.track_id = ""  # the last track's id and update's instant, as read from ``track``
        self.update_ts: datetime | None = None
        self.track_strings: int | None = None


class _GroupDecision:
    """The last decision taken in a group: for which label, hub and recipient, under which of the
    store's counters, the answer, and the label held here under it (``None`` until worked out)."""

    __slots__ = ("answer", "held", "label", "recipient", "under", "via")

    def __init__(self) -> None:
        self.under: tuple[int, ...] = ()  # the store's counters the answer was given under
        self.label: SecurityLabel | None = None
        self.via: str | None = None
        self.recipient: str | None = None
        self.answer: tuple[ReleaseDecision, float] | None = None
        self.held: SecurityLabel | None = None


class _BusTrack(NamedTuple):
    """A bus message as its consumers read it: the label's digest, the label (``None`` when the
    message was sliced, not decoded) and the track's JSON."""

    lk: str
    label: Any
    track: bytes


class _Message(msgspec.Struct):
    """A track message as a link carries it (``publish_update``), decoded once: the track and the
    label stay the bytes the originator signed (``msgspec.Raw``), read at the boundary from those
    bytes; other fields are ignored, as a dict's would be. A message that names a key twice, at any
    depth, is refused (``keys_once``): readers differ on which of the two they take."""

    track: msgspec.Raw
    label: msgspec.Raw
    originator: Any
    recipient: Any
    via: Any = msgspec.UNSET  # UNSET: no key (``None``: ``null``), for the count of keys


_decode_message = msgspec.json.Decoder(_Message).decode


class _Received(NamedTuple):
    """A track message read from a link and checked at the boundary, not yet decided on (a named
    tuple, one per track, as :class:`_Decided`)."""

    label: SecurityLabel
    track: bytes  # the track's JSON as its originator signed it, checked at this node's boundary
    track_id: str
    recipient: str
    via: str | None
    at_us: int  # the update's instant (``update_ts``) as parsed: one instant, however it is spelt


@dataclass(frozen=True, slots=True)
class _Arrival:
    """A verified group whose tracks were read, waiting for the store to say what arrived before."""

    seq: int
    group: VerifiedGroup
    read: list[_Received]
    keys: list[str]  # each track's identity, beside ``read``
    remembered: asyncio.Future[Remembered]


@dataclass(frozen=True, slots=True)
class _Rooted:
    """A hop's window root verified: the frames it covers, up to ``received`` (one past), are confirmed once
    every track before it was taken."""

    received: int
    detail: dict[str, Any]  # what the audit record of the verified root says


# what a link's reader hands on, in order: a group, a window root, an authorisation (its JWS)
_Read = _Arrival | _Rooted | str


@dataclass(frozen=True, slots=True)
class _Relayed:
    """A track a hub passes on: the originator's signed root, unchanged, and the track's proof."""

    jws: bytes
    size: int
    entry: Entry


class _Turn:
    """Set by a callback of the event loop's next turn: whether an awaited message had to be waited
    for (the loop turned meanwhile) or was received already (it had not: more may be waiting)."""

    __slots__ = ("turned",)

    def __init__(self) -> None:
        self.turned = True

    def mark(self) -> None:
        self.turned = True


class _OutLink:
    """The sending half of one link: a WebSocket client carrying a Noise session."""

    def __init__(
        self,
        ws: ClientConnection,
        session: LinkSession,
        signer: BatchSigner,
        peer_kid: str,
        peers: int,
        key_until: float = _FOREVER,
    ) -> None:
        self.ws = ws
        self.session = session
        self.signer = signer
        self.peer_kid = peer_kid  # the peer's encryption key the session was opened with
        self.peers = peers  # the store's peers generation when that key was last checked
        self.key_until = key_until  # the POSIX instant that key ends or is revoked, as checked then
        self.lock = asyncio.Lock()
        # held while a window's root awaits its audit record's commit: one root in flight at a time
        self.rooting = asyncio.Lock()
        self.consents_sent: set[str] = set()
        # waiting for the next frame: this node's own track messages (signed when the frame is
        # made) and tracks relayed for their originators (already signed)
        self.queued: list[bytes | _Relayed] = []
        self.queued_acks: list[_Ack | None] = []  # beside ``queued``: a handed track's acknowledgement
        # beside ``queued``: the terms of the decision that let the track on this link (a handed one's:
        # decided again at its frame, whichever process decided it first)
        self.queued_decided: list[_Decided] = []
        # (frame seq, the acknowledgements of the handed tracks it carried), until the peer confirms it
        self.unconfirmed: collections.deque[tuple[int, list[_Ack]]] = collections.deque()
        self.drainer: asyncio.Task[None] | None = None
        self.reader: asyncio.Task[None] | None = None  # reads the peer's confirmations (ACK frames)


class StreamService:
    """One node's stream: publishing, link sessions to peers, the bus and its consumers."""

    def __init__(
        self,
        host: StreamHost,
        bus: Bus | None = None,
        *,
        classification: str | None = None,
        hubs: tuple[str, ...] | None = None,
        rekey_frames: int = 100_000,
        rekey_seconds: float = 60.0,
        link_leases: Callable[[str], LinkLease] | None = None,
    ) -> None:
        """``link_leases`` makes the lease of the outbound link to a party (``link:PARTY``) for a
        node of several processes; it needs a :class:`NatsBus`, through which the processes that
        do not hold a link hand their tracks to the one that does. Without it, every link is this
        process's."""
        self.kernel = kernel = host.kernel
        self.exchange = host.exchange
        self.party = kernel.party
        self.bus: Bus = bus if bus is not None else InProcessBus()
        scheme = kernel.catalogue.party(kernel.party).scheme
        # by default the level equivalent to SECRET (rank 2), the level missile-warning data carries
        self.classification = classification or next(lv.name for lv in scheme.levels if lv.rank == 2)
        self.hubs = kernel.hubs if hubs is None else hubs  # by default the hubs of the party's agreements
        self.rekey_frames = rekey_frames
        self.rekey_seconds = rekey_seconds
        self.recipients = tuple(sorted(p for p in kernel.catalogue.parties if p != kernel.party))
        self.stats = StreamStats()
        self._seq = 0
        self._labels: dict[str, SecurityLabel] = {}
        self._plans: dict[str, RelayPlan] = {}
        # the store's consents, equivalences and assurances generations the plans were made under
        self._plans_consents: tuple[int, ...] = ()
        # (label, via, recipient) -> (decision, POSIX instant it holds until): a label, not a track id,
        # so a track of the same id under another label is decided on its own
        self._received_plans: dict[tuple[SecurityLabel, str | None, str], tuple[ReleaseDecision, float]] = {}
        # the assurances' and equivalences' generations the received plans were made under
        self._received_under: tuple[int, ...] = ()
        self._decoded: tuple[bytes, _BusTrack] | None = None  # the last bus message, read
        # a label's digest ("lk") -> its JSON as the bus messages hold it, once one was read whole
        self._bus_labels: dict[str, bytes] = {}
        self._links: dict[str, _OutLink] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._down: set[str] = set()  # peers whose link failed and has not reopened (audited once)
        self._retry_at: dict[str, float] = {}  # no reconnect attempt before this monotonic instant
        self._tls_context: ssl.SSLContext | None = None  # links' client context, made at the first
        self._consents: dict[str, dict[str, tuple[Consent, str]]] = {}  # originator -> id -> (consent, jws)
        # jws -> the POSIX instant its signing key ends or is revoked, as verified; and the store's
        # peers and keys generations they were last verified under (``_kept``)
        self._consent_ends: dict[str, float] = {}
        self._consents_verified: tuple[int, int] = (-1, -1)
        self._consents_on_file: list[tuple[Consent, str]] = []  # read when a plan is made
        self._label_json: dict[str, bytes] = {}  # track id -> its label, encoded
        # label -> the bus message's bytes between the sequence number and the track
        self._emitted_labels: dict[SecurityLabel, bytes] = {}
        self._route_fields: dict[tuple[str, str | None], bytes] = {}  # -> ',"route":..,"agreement":..}'
        self._route_tails: dict[tuple[str, str | None], bytes] = {}  # (recipient, via) -> a link body's end
        # (hop, agreement) -> a link checked for it and the peers generation then (_publish_updates)
        self._checked: dict[tuple[str, str | None], tuple[_OutLink, int]] = {}
        self._started = False
        self._ticker: asyncio.Task[None] | None = None
        self.gate = LinkGate()  # unauthenticated callers of /stream/link
        self._hellos = LinkHellos(kernel.store)  # the hellos every process of the node answered
        # the groups received and their audit records: one commit for those that arrive together
        self._memory = ReplayMemory(kernel.store, int(kernel.max_clock_skew.total_seconds() * 1_000_000))
        # the duplicates each partner sent in the last HANDOFF_MAX_AGE_S, all processes' together
        self._resends = RateCounters(kernel.store, lambda: epoch_us(kernel.clock()))
        # the time this process's event loop was held up: a peer's window-root deadline leaves it out
        self._stalls = Stalls()
        self._nats: NatsBus | None = None  # the bus tracks are handed over on, for links held by leases
        if link_leases is not None:
            if not isinstance(self.bus, NatsBus):
                raise ValueError("links held by one process of several need the NATS bus to hand tracks over")
            self._nats = self.bus
        self._link_leases = link_leases
        self._leases: dict[str, LinkLease] = {}
        self._holding: set[str] = set()  # the partners whose link this process holds the lease of
        self._runners: dict[str, asyncio.Task[None]] = {}  # per held link: sends what was handed to it
        self._lease_task: asyncio.Task[None] | None = None
        # the generation counters read ahead in a worker thread (_refresh_counters), and the tracks
        # published and received when they last were
        self._refreshing: asyncio.Future[None] | None = None
        self._flowing = 0
        # the consumers' streams and publishers' feeds open here, and the task that checks the idle
        # ones (_follow_open)
        self._open: set[_Standing] = set()
        self._following: asyncio.Task[None] | None = None

    # --- lifecycle ---

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._stalls.start()
        await self.bus.start()
        self._ticker = asyncio.create_task(self._tick(), name=f"gsomia-stream-batches-{self.party}")
        if self._link_leases is not None:
            self._lease_task = asyncio.create_task(
                self._keep_leases(), name=f"gsomia-link-leases-{self.party}"
            )

    async def close(self) -> None:
        if self._lease_task is not None:
            self._lease_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_task
            self._lease_task = None
        for party in list(self._runners):
            await self._stop_runner(party)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._refreshing is not None:  # a read ahead under way ends before the store may close
            with contextlib.suppress(Exception):
                await self._refreshing
            self._refreshing = None
        if self._following is not None:
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following
            self._following = None
        for party, link in list(self._links.items()):
            if link.drainer is not None:
                await link.drainer
            await self._flush(party)
            await self._drop_link(party)
        for lease in self._leases.values():  # another process takes the links at once
            await asyncio.to_thread(lease.release)
        self._holding.clear()
        await self._memory.close()
        await self.bus.close()
        self._stalls.stop()
        self._started = False

    # --- which process holds which outbound link ---

    @property
    def leases_links(self) -> bool:
        """Whether each outbound link is run by the process of the node holding its lease."""
        return self._link_leases is not None

    def holds_link(self, party: str) -> bool:
        """Whether this process runs the link to ``party`` (always, for a node of one process)."""
        return self._link_leases is None or party in self._holding

    async def _keep_leases(self) -> None:
        """Claim, renew or lose each outbound link's lease; a link won starts sending what the other
        processes handed to it, a link lost is closed here (its new holder opens its own)."""
        while self._link_leases is not None:
            for party in self.recipients:
                lease = self._leases.get(party)
                if lease is None:
                    lease = self._leases[party] = self._link_leases(party)
                try:
                    held = await asyncio.to_thread(lease.held)
                except Exception:  # never fatal: the lease runs out and another process takes it
                    _log.exception("the lease of the link to %s could not be asked", party)
                    held = False
                if held and party not in self._holding:
                    self._holding.add(party)
                    self._runners[party] = asyncio.create_task(
                        self._run_handed(party), name=f"gsomia-link-{self.party}-{party}"
                    )
                elif not held and party in self._holding:
                    self._holding.discard(party)
                    await self._stop_runner(party)
                    if party in self._links:
                        await self._drop_link(party)
                        await self._audit(
                            self._audit_row("stream.link", None, party, "closed", reason="lease-lost")
                        )
            await asyncio.sleep(_LEASE_POLL_S)

    async def _stop_runner(self, party: str) -> None:
        runner = self._runners.pop(party, None)
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    async def _run_handed(self, party: str) -> None:
        """At the link's holder: send what the node's other processes handed to the link to ``party``."""
        while self._nats is not None:
            try:
                async for message, ack in self._nats.handed_off(party):
                    await self._send_handed(party, message, ack)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away, or the consumer dropped: pull again shortly
                _log.info("tracks handed to the link to %s: %s; pulling again", party, type(exc).__name__)
            await asyncio.sleep(_RETRY_S)

    async def _hand_off(
        self,
        party: str,
        kind: int,
        body: bytes,
        agreement: str | None,
        consents: list[str],
        relayed: bool,
        sender: str | None = None,
    ) -> None:
        """Give a frame for the link to ``party`` to the process holding it (see the module's docstring).
        ``sender``: the node a relayed track came from (for the holder's decision and its audit)."""
        if self._nats is None:
            raise UnavailableError("this process holds no bus to hand the track to the link's holder")
        header = _dumps({"k": kind, "a": agreement, "c": consents, "g": relayed, "s": sender})
        await self._nats.hand_off(party, header + b"\n" + body)  # counted as sent by the link's holder

    async def _send_handed(self, party: str, message: bytes, ack: _Ack | None = None) -> None:
        """Send one handed frame on the link to ``party``: the authorisations it needs that the link
        has not carried yet, then the track. ``ack`` acknowledges it at the bus once the partner
        confirmed the frame that carried it; at once if it is dropped (malformed, refused, or the link
        is down: a track for a failed link is lost, as on any link).

        The process that handed the track decided it at its own instant; the frame is made here,
        later (a hand-over through JetStream, or a holder that died and a next one that took it up
        to ``HANDOFF_MAX_AGE_S`` later). So the track is decided again here, by this node's one
        engine, at the instant its frame is made (``_decide_again``), on the label, recipient and hub
        the track itself carries: an agreement that ended or an assurance revoked meanwhile stops it."""
        try:
            header, _, body = message.partition(b"\n")
            fields = orjson.loads(header)
            kind, agreement, consents = int(fields["k"]), fields["a"], [str(c) for c in fields["c"]]
            if kind != TRACK or not isinstance(agreement, str):  # what _to_link hands, and nothing else
                raise InvalidInputError("a handed message is a track under its route's agreement")
            sender = fields.get("s")
            payload: bytes | _Relayed = body
            track_message = body
            if fields["g"]:
                (group,) = decode_groups(body, self.party)
                (entry,) = group.entries
                payload = _Relayed(group.jws, group.size, entry)
                track_message = entry.message
            decided = self._handed_terms(
                track_message, sender if isinstance(sender, str) else None, party, agreement
            )
            if decided.sender is not None:  # relayed: the originator's authorisations it carries, here too
                kept = self._consents.get(decided.label.originator, {}).values()
                known = {_consent_key(j) for _, j in kept}
                for jws in consents:
                    if _consent_key(jws) not in known:
                        self._keep_consent(jws, decided.label.originator)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, GsomiaError):
            _log.warning("a track handed to the link to %s is malformed: dropped", party)
            if ack is not None:
                await ack()
            return
        try:
            link = await self._link(party)
            for jws in consents:
                key = _consent_key(jws)
                if key not in link.consents_sent:
                    await self._send(party, CONSENT, jws.encode(), None)
                    link.consents_sent.add(key)
            await self._send(party, kind, payload, agreement, ack, decided)
        except (OSError, WebSocketException, GsomiaError) as exc:
            if ack is not None:
                await ack()
            await self._link_failed(party, exc)

    def _handed_terms(
        self, message: bytes, sender: str | None, party: str, agreement: str | None = None
    ) -> _Decided:
        """The terms a handed track is decided on at its frame: its own label, recipient and hub,
        never held to hold (``until`` 0: decided at the frame's instant, whatever the handing process
        decided). ``sender`` None: this node's own track (its label must say so). ``party``: the link
        it was handed to, which must be the next hop those terms name (the hub, else the recipient;
        at the hub of a relayed track, the recipient): the decision is for that hop and no other.
        ``agreement``: the one the hand-over names, the only one the frame may carry it under."""
        data = orjson.loads(message)
        label = self.kernel.items.parse_label(data["label"])
        recipient, via, subject = data["recipient"], data.get("via"), data["track"]["track_id"]
        if not isinstance(recipient, str) or not (via is None or isinstance(via, str)):
            raise InvalidInputError("a handed track's recipient and hub are party codes")
        if (sender is None) != (label.originator == self.party):
            raise InvalidInputError("a handed track of this node's own is labelled as this node's")
        if sender is not None and via != self.party:
            raise InvalidInputError("a handed relayed track names another hub than this node")
        if party != (recipient if sender is not None else via or recipient):
            raise InvalidInputError("a handed track names another next hop than the link it was handed to")
        return _Decided(0.0, label, recipient, via, str(subject), sender, (), agreement)

    # --- audit ---

    def _audit_row(
        self, kind: str, actor: str | None, subject: str | None, outcome: str, **detail: Any
    ) -> AuditRow:
        return self.kernel.audit_row(kind, actor, subject, outcome, **detail)

    async def _audit(self, *rows: AuditRow) -> None:
        await asyncio.to_thread(self.kernel.store.append_audit, list(rows))

    # --- standing authorisations (TISA: the hub relays only what the originator authorised) ---

    def authorise_relay(
        self, actor: Person | None, recipient: str, hub: str | None = None, *, expires: datetime | None = None
    ) -> Consent:
        """Record this node's standing authorisation for ``hub`` to pass its tracks on to ``recipient``;
        without a ``hub``, the one hub this node's agreements name (TISA: the USA)."""
        self.kernel.require_any(actor, (Role.RELEASE_OFFICER,), "stream.authorise")
        catalogue = self.kernel.catalogue
        if hub is None:
            if len(self.kernel.hubs) != 1:
                named = ", ".join(self.kernel.hubs) or "none"
                raise InvalidInputError(f"hub: name the hub (this node's agreements name {named})")
            (hub,) = self.kernel.hubs
        consent = Consent(
            ConsentKind.TRACK_RELAY,  # the stream only: it never lets the hub pass an item on
            self.party,
            catalogue.party(recipient).code,
            self.kernel.clock(),
            f"standing authorisation for missile-warning tracks, by {actor.id if actor else 'the operator'}",
            hub=catalogue.party(hub).code,
            expires=expires,
        )
        row, _ = self.exchange.sign_consent(consent)
        audit = self._audit_row("stream.authorise", actor.id if actor else None, row.id, "recorded",
                          recipient=consent.recipient, hub=consent.hub,
                          expires=None if expires is None else expires.isoformat())  # fmt: skip
        self.exchange.enqueue((), audit=[audit], consents=[row])
        self._plans.clear()
        return consent

    def _own_consents(self) -> list[tuple[Consent, str]]:
        rows = self.exchange.consent_rows(self.party, "")
        out: list[tuple[Consent, str]] = []
        for row in rows:
            if row.item_id is None and row.kind == ConsentKind.TRACK_RELAY.value:
                out.extend(zip(self.exchange.verified_consents([row]), [row.jws], strict=True))
        return out

    # --- publishing at the originating node ---

    def _label(self, update: TrackUpdate) -> SecurityLabel:
        label = self._labels.get(update.track_id)
        if label is None:
            label = self.kernel.catalogue.label(
                originator=self.party,
                classification=self.classification,
                releasable_to=self.recipients,
                purpose=MISSILE_WARNING,
                topics=[MISSILE_TOPIC],
                created=update.launch.at,
            )
            self._labels[update.track_id] = label
            self._label_json[update.track_id] = orjson.dumps(label_to_dict(label))
        return label

    async def _plan(
        self, update: TrackUpdate, label: SecurityLabel, now: datetime, consents: tuple[int, ...]
    ) -> RelayPlan:
        # a standing consent, an equivalence change or an assurance stored, or a key revoked or
        # rotated, by any process of the node (the store's counters moved, ``consents`` as read for
        # the updates published together): plan again
        if consents != self._plans_consents:
            self._plans.clear()
            self._plans_consents = consents
        plan = self._plans.get(update.track_id)
        if plan is not None and plan.holds_at(now.timestamp()):
            return plan
        if len(self._plans) >= _CACHE_LIMIT:  # tracks that never sent a final update
            self._plans.clear()
            self._labels.clear()
            self._label_json.clear()
            label = self._label(update)
        self._consents_on_file = self._own_consents()
        plan = plan_relay(
            self.kernel.engine, self.kernel.catalogue, label, self.party, self.recipients,
            at=now, consents=[c for c, _ in self._consents_on_file], hubs=self.hubs,
            assurances=self.exchange.assurances_on_file(now),
        )  # fmt: skip
        self._plans[update.track_id] = plan
        await self._audit(
            self._audit_row(
                "stream.plan",
                None,
                update.track_id,
                "decided",
                at=now.isoformat(),
                valid_until=None if plan.valid_until is None else plan.valid_until.isoformat(),
                routes=[route_view(r) for r in plan.routes],
            )
        )
        return plan

    def require_publisher(self, actor: Person | None) -> None:
        """Refuse (and record) unless ``actor`` may publish tracks here: release officers (``None``:
        the node's operator). A feed checks when it opens and again before a message once a person
        changed (:meth:`publishing`); :meth:`publish` checks every update."""
        self.kernel.require_any(actor, (Role.RELEASE_OFFICER,), "stream.publish")

    @contextlib.contextmanager
    def publishing(
        self,
        person: Person,
        close: Callable[[GsomiaError], Awaitable[None]],
        *,
        credential: Callable[[], datetime] | None = None,
    ) -> Iterator[_Publishing]:
        """The check an open publisher's feed makes, while the ``with`` block lasts: before it
        publishes each message (:meth:`_Publishing.current`, then :meth:`publish_feed` as
        :attr:`_Publishing.person`), and while it sends nothing (the consumers' idle round,
        :meth:`_follow_open`, which then calls ``close`` with the refusal: the feed's owner closes
        it). It refuses, audited once, once ``person`` may no longer publish (disabled, the release
        officer's role removed: :meth:`require_publisher`) or ``credential`` (the check of what the
        feed was opened with: its expiry, or it raises) fails, after any process changed a person or
        revoked a token, or at its expiry. The consumers' own check (:class:`_Standing`); from memory
        on the loop while nothing moved. ``person`` was let publish when the feed opened."""
        feed = _Publishing(self, person, "publish", credential, close)
        self._follow(feed)
        try:
            yield feed
        finally:
            self._open.discard(feed)

    async def publish(self, actor: Person | None, data: Any) -> dict[str, Any]:
        """Publish one track update at this (the originating) node; returns where it went."""
        self.require_publisher(actor)
        try:
            update = read_track_update(data, originator=self.party)
        except GsomiaError as exc:
            who = actor.id if actor else None
            subject = data.get("track_id") if isinstance(data, dict) else None
            await self._audit(self._audit_row("stream.publish", who, str(subject), "refused",
                                        error=type(exc).__name__, reason=str(exc)))  # fmt: skip
            raise
        return (await self._publish_updates([update], forget_final=True))[0]

    async def publish_feed(self, actor: Person | None, text: str) -> list[tuple[GsomiaError, Any]]:
        """Publish the updates of one message of the publisher's feed (a JSON object, or an array of
        up to ``FEED_BATCH``), in order, as :meth:`publish` publishes each; returns the refused ones,
        each with its error and what was sent of it. ``InvalidInputError`` (nothing published) for a
        message that is not a feed message (:func:`parse_feed_message`).

        A message whose every update is one the boundary takes as it is, sent by a publisher, is
        read in one pass over its text (:func:`read_feed_json`: the same updates) and published
        together: what is the same for each of them (the clock, the store's counters the plans are
        kept under, the publisher's role) is read once for the message, and each update is then
        labelled, planned, emitted and sent on its routes as one published alone. Any other message
        takes :meth:`publish` update by update, each refusal named and audited as before."""
        updates = read_feed_json(text, originator=self.party, most=FEED_BATCH)
        if updates is not None and self.kernel.holds_any(actor, (Role.RELEASE_OFFICER,)):
            await self._publish_updates(updates, forget_final=True, results=False)
            return []
        refused: list[tuple[GsomiaError, Any]] = []
        for data in parse_feed_message(text):
            try:
                await self.publish(actor, data)
            except GsomiaError as exc:
                refused.append((exc, data))
        return refused

    async def publish_update(self, update: TrackUpdate) -> dict[str, Any]:
        """Publish a parsed update (the Python API): decided, emitted locally, sent on its routes."""
        return (await self._publish_updates([update]))[0]

    async def _publish_updates(
        self, updates: Sequence[TrackUpdate], *, forget_final: bool = False, results: bool = True
    ) -> list[dict[str, Any]]:
        """Publish parsed updates in order, each decided, emitted locally and sent on its routes, at
        one instant and under one reading of the store's counters (a queued track is decided again
        at its frame if either has moved by then); where each went (``results``). ``forget_final``:
        a track's label and plan are dropped after its final update."""
        if not self._started:
            await self.start()
        now = self.kernel.clock()
        ts = now.timestamp()
        watch = self.kernel.watch
        under = _decided_under(watch)
        peers = watch.generation(PEERS)
        out: list[dict[str, Any]] = []
        # (hop, agreement) -> the link a track went on with no authorisation before it, and the
        # store's peers generation it was checked under (registered for the agreement, its peer's
        # key still pinned: both read from the peers): it takes the next tracks, of this message and
        # the next ones, straight into its queue while it is the link to that hop, the peers have
        # not moved and the key's end is not reached (each decided again at its frame, as every
        # queued track)
        checked = self._checked
        # the plan of the update before and its allowed routes, each with its hop and the end of its
        # link body: a plan kept for a track is the same for its next updates in this message (one
        # instant, one reading of the counters), so its routes are worked out once, not per update
        last_plan: RelayPlan | None = None
        legs: list[tuple[Route, str, bytes]] = []
        labels = self._labels
        for update in updates:
            if update.originator != self.party:
                raise InvalidInputError(f"this node publishes for {self.party}, not {update.originator}")
            track_id = update.track_id
            label = labels.get(track_id)
            if label is None:
                label = self._label(update)
            plan = self._plans.get(track_id)
            if plan is None or plan is not last_plan:  # else planned for this instant and counters already
                plan = await self._plan(update, label, now, under)
                if plan is not last_plan:
                    last_plan, legs = (
                        plan,
                        [(r, r.via or r.recipient, self._route_tail(r)) for r in plan.allowed()],
                    )
            self.stats.published += 1
            track = _track_bytes(update)  # encoded once, for every route
            await self._emit(track, label, "local", None)
            routes = []
            head = b'{"track":' + track + b',"label":' + self._label_json[track_id] + b","
            for route, hop, tail in legs:
                body = head + tail  # one JSON object: the track, the label, then the route's fields
                consents = (
                    [jws for consent, jws in self._consents_on_file if _precedes(consent, route)]
                    if route.via
                    else []
                )
                agreement = route.decision.agreement
                decided = _Decided(
                    plan.valid_until_ts,
                    label,
                    route.recipient,
                    route.via,
                    track_id,
                    None,
                    self._plans_consents,
                    agreement,
                )
                hit = checked.get((hop, agreement))
                link = None if hit is None or hit[1] != peers else hit[0]
                if link is not None and not consents and self._links.get(hop) is link and ts < link.key_until:
                    self._enqueue(hop, link, body, None, decided)
                else:
                    try:
                        await self._to_link(hop, body, agreement, consents, decided)
                    except (OSError, WebSocketException, GsomiaError) as exc:
                        await self._link_failed(hop, exc)
                        continue
                    link = self._links.get(hop)
                    if link is not None and not consents and not self.leases_links:
                        checked[(hop, agreement)] = (link, peers)
                if results:
                    routes.append({"recipient": route.recipient, "route": route.name, "agreement": agreement})
            if results:
                out.append(
                    {
                        "track_id": update.track_id,
                        "routes": routes,
                        "refused": [route_view(r) for r in plan.routes if not r.allowed],
                    }
                )
            if forget_final and update.final:  # the track is over: its label and plan are not needed any more
                self._labels.pop(update.track_id, None)
                self._label_json.pop(update.track_id, None)
                self._plans.pop(update.track_id, None)
        return out

    def _route_tail(self, route: Route) -> bytes:
        """The end of a link body for ``route``: its originator, recipient and hub, then ``}``."""
        tail = self._route_tails.get((route.recipient, route.via))
        if tail is None:
            tail = self._route_tails[(route.recipient, route.via)] = _dumps(
                {"originator": self.party, "recipient": route.recipient, "via": route.via}
            )[1:]
        return tail

    async def _to_link(
        self,
        party: str,
        body: bytes | _Relayed,
        agreement: str | None,
        consents: list[str],
        decided: _Decided,
    ) -> None:
        """Put a track on the link to ``party``, after the authorisations ``consents`` it needs.

        In a node of several processes every track for a link goes through the node's handover
        stream, this process's own as well when it holds the link: the holder sends them in
        JetStream's order, one order for the tracks of all the node's processes. Only while NATS is
        away does the holder send its own directly (nothing can be handed over meanwhile)."""
        if self.leases_links:
            relayed = isinstance(body, _Relayed)
            payload = encode_group(body.jws, body.size, [body.entry]) if isinstance(body, _Relayed) else body
            try:
                await self._hand_off(party, TRACK, payload, agreement, consents, relayed, decided.sender)
                return
            except UnavailableError:
                if not self.holds_link(party):
                    raise
        link = await self._link(party)
        for jws in consents:
            key = _consent_key(jws)
            if key not in link.consents_sent:
                await self._send(party, CONSENT, jws.encode(), None)
                link.consents_sent.add(key)
        await self._send(party, TRACK, body, agreement, decided=decided)

    # --- links (sending side) ---

    async def _link(self, party: str) -> _OutLink:
        link = self._links.get(party)
        if link is not None:
            if self._still_pinned(party, link):
                return link
            await self._drop_link(party)  # opened with a key the peers no longer allow: open anew
            await self._audit(self._audit_row("stream.link", None, party, "closed", reason="revoked-key"))
        if time.monotonic() < self._retry_at.get(party, 0.0):
            raise LinkError("unknown-peer", f"the link with {party} is down; retrying shortly")
        lock = self._connecting.setdefault(party, asyncio.Lock())
        async with lock:
            link = self._links.get(party)
            if link is not None:
                return link
            peer = self.kernel.peers.peer(party)
            if peer is None:
                raise LinkError("unknown-peer", f"no registered link with {party}: import its identity first")
            url = peer.endpoint.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/")
            secure = url.startswith("wss://")
            if self.kernel.tls is not None and not secure:
                raise LinkError(
                    "unknown-peer", f"{party}'s endpoint is not HTTPS; this node links over mutual TLS only"
                )
            first, finish = initiate(self.kernel.ring, peer, self.kernel.clock())
            ws = await connect(
                url + LINK_PATH,
                max_size=2**20,
                compression=None,
                open_timeout=_OPENING_S,
                ssl=self._client_tls() if secure else None,
            )
            try:
                if secure:  # the certificate the peer's registered identity names, or nothing is sent
                    try:
                        check_peer_certificate(peer, ws.transport.get_extra_info("ssl_object"))
                    except TransportError as exc:
                        raise LinkError("unknown-peer", str(exc)) from None
                await ws.send(first)
                answer = await asyncio.wait_for(ws.recv(), timeout=_OPENING_S)
                if not isinstance(answer, bytes):
                    raise LinkError("handshake-failed", f"{party} answered the handshake with text")
                session = finish(answer, rekey_frames=self.rekey_frames, rekey_seconds=self.rekey_seconds)
                for frame in session.seal(READY, b"", time.monotonic()):  # key confirmation
                    await ws.send(frame)
            except BaseException:
                await ws.close()
                raise
            peers = self.kernel.watch.generation(PEERS)
            opened_at = self.kernel.clock()
            peer_kid = peer.encryption_key(opened_at)[0]  # the key ``initiate`` used
            key_until = _posix(peer.key_usable_until(peer_kid, opened_at))
            link = _OutLink(ws, session, BatchSigner(self.kernel.ring, party), peer_kid, peers, key_until)
            link.reader = asyncio.create_task(self._read_confirmations(party, link))
            self._links[party] = link
            self._down.discard(party)
            await self._audit(self._audit_row("stream.link", None, party, "opened", role="initiator"))
            return link

    def _client_tls(self) -> ssl.SSLContext:
        """The context links are opened with: the node's certificate presented (mutual TLS), partners'
        verified against its authorities; without TLS files, the system's authorities."""
        if self._tls_context is None:
            tls = self.kernel.tls
            self._tls_context = tls.client_context() if tls is not None else ssl.create_default_context()
        return self._tls_context

    def _still_pinned(self, party: str, link: _OutLink) -> bool:
        """Whether the peer key ``link`` was opened with is still usable: checked again when the
        store's peers changed (a revocation in any process of this node ends the link within a
        second) and once the key's end, as last checked, is reached (no counter moves for that)."""
        generation = self.kernel.watch.generation(PEERS)
        if generation == link.peers and (
            link.key_until == _FOREVER or self.kernel.clock().timestamp() < link.key_until
        ):
            return True
        peer = self.kernel.peers.peer(party)
        try:
            if peer is None:
                raise EnvelopeError("unknown-sender")
            link.key_until = _posix(peer.key_usable_until(link.peer_kid, self.kernel.clock()))
        except EnvelopeError:
            return False
        link.peers = generation
        return True

    async def _link_failed(self, party: str, exc: BaseException) -> None:
        """A link that failed is dropped; messages for that peer are lost until it reconnects
        (tried again after ``_RETRY_S``), and the outage is logged and audited once."""
        self.stats.link_errors += 1
        await self._drop_link(party)
        self._retry_at[party] = time.monotonic() + _RETRY_S
        if party not in self._down:
            _log.warning("stream link to %s failed: %s", party, exc)
            self._down.add(party)
            await self._audit(
                self._audit_row("stream.link", None, party, "failed", reason=f"{type(exc).__name__}: {exc}")
            )

    async def _drop_link(self, party: str) -> None:
        """Close the link to ``party``. What it carried that the peer had not confirmed stays
        unacknowledged at the bus: the link's next holder (this process or another) sends it again,
        and the peer keeps an update it got twice once."""
        link = self._links.pop(party, None)
        if link is not None:
            link.unconfirmed.clear()
            if link.reader is not None and link.reader is not asyncio.current_task():
                link.reader.cancel()
            with contextlib.suppress(Exception):  # the peer may be gone already
                await link.ws.close()

    async def _read_confirmations(self, party: str, link: _OutLink) -> None:
        """The peer's ``ACK`` frames on ``link``: the handed tracks of every frame it confirmed are
        acknowledged at the bus. A frame that does not open, or is not an ``ACK``, ends the link."""
        try:
            async for data in link.ws:
                if not isinstance(data, bytes):
                    raise LinkError("malformed", f"{party} sent text on the link")
                frame = link.session.open(data)
                if frame is None:  # the peer rekeyed
                    continue
                if frame.kind != ACK or len(frame.body) != ACK_BODY.size:
                    raise LinkError("malformed", f"{party} sent frame type {frame.kind} back on the link")
                (taken,) = ACK_BODY.unpack(frame.body)
                while link.unconfirmed and link.unconfirmed[0][0] < taken:
                    _, acks = link.unconfirmed.popleft()
                    for ack in acks:
                        await ack()
        except asyncio.CancelledError:
            raise
        except (OSError, WebSocketException, GsomiaError) as exc:
            if self._links.get(party) is link:
                await self._link_failed(party, exc)

    async def _send(
        self,
        party: str,
        kind: int,
        body: bytes | _Relayed,
        agreement: str | None,
        ack: _Ack | None = None,
        decided: _Decided | None = None,
    ) -> None:
        track = isinstance(body, _Relayed) or kind == TRACK
        if track and decided is None:
            # no track leaves without the terms of the decision that let it, to decide it again at its frame
            raise LinkError("undecided", f"a track for {party} came without its release decision")
        if agreement is not None and agreement not in self.kernel.peers.links(party):
            raise LinkError(
                "unknown-peer", f"the link with {party} is not registered for {agreement} (Art. 9)"
            )
        link = await self._link(party)
        if isinstance(body, bytes) and not track:
            self.stats.sent[party] = self.stats.sent.get(party, 0) + 1
            async with link.lock:
                for frame in link.session.seal(kind, body, time.monotonic()):
                    await link.ws.send(frame)
            return
        if decided is not None:  # (refused above otherwise)
            self._enqueue(party, link, body, ack, decided)

    def _enqueue(
        self, party: str, link: _OutLink, body: bytes | _Relayed, ack: _Ack | None, decided: _Decided
    ) -> None:
        """Queue a track for ``link``'s next frame: coalesced, what else is queued for this link
        before the drainer runs (the rest of this turn of the event loop, no timer) goes in the same
        frame."""
        self.stats.sent[party] = self.stats.sent.get(party, 0) + 1
        link.queued.append(body)
        link.queued_acks.append(ack)
        link.queued_decided.append(decided)
        if link.drainer is None:
            link.drainer = asyncio.create_task(self._drain(party, link))

    def _frame_body(self, batch: list[bytes | _Relayed]) -> bytes:
        """A ``TRACKS`` frame's body: this node's own tracks under one new signed root (one
        signature per burst), then each relayed originator's signed root with its tracks."""
        own = [m for m in batch if isinstance(m, bytes)]
        parts = [sign_batch(self.kernel.ring, own, self.kernel.clock())] if own else []
        relayed: dict[bytes, tuple[int, list[Entry]]] = {}
        for m in batch:
            if isinstance(m, _Relayed):
                relayed.setdefault(m.jws, (m.size, []))[1].append(m.entry)
        parts += [encode_group(jws, size, entries) for jws, (size, entries) in relayed.items()]
        return b"".join(parts)

    async def _drain(self, party: str, link: _OutLink) -> None:
        """Send the tracks queued for ``link``: one frame per burst, each hashed into the window."""
        try:
            while link.queued:
                ready = await self._decide_again(link)
                if not ready:
                    continue
                size = count = 0
                for queued in link.queued[:ready]:
                    length = len(queued) if isinstance(queued, bytes) else len(queued.entry.message)
                    if count and (count >= _COALESCE_TRACKS or size + length > _COALESCE_BYTES):
                        break
                    size += length
                    count += 1
                batch, link.queued = link.queued[:count], link.queued[count:]
                acks, link.queued_acks = link.queued_acks[:count], link.queued_acks[count:]
                del link.queued_decided[:count]
                kind, body = TRACKS, self._frame_body(batch)
                async with link.lock:
                    now = time.monotonic()
                    frames = link.session.seal(kind, body, now)
                    seq = link.session.sent - 1
                    link.signer.add(seq, body, now)
                    handed = [ack for ack in acks if ack is not None]
                    if handed:  # acknowledged at the bus once the peer confirms this frame
                        link.unconfirmed.append((seq, handed))
                    for frame in frames:
                        await link.ws.send(frame)
                    self.stats.frames[party] = self.stats.frames.get(party, 0) + 1
        except (OSError, WebSocketException, GsomiaError) as exc:
            link.queued.clear()  # never queued for later: a late warning is not a live one
            link.queued_acks.clear()  # (a handed one comes back from the bus to the link's next holder)
            link.queued_decided.clear()
            await self._link_failed(party, exc)
        finally:
            link.drainer = None

    async def _decide_again(self, link: _OutLink) -> int:
        """At the instant the frame is made: a queued track whose decision no longer holds (an
        agreement event fell due since it was queued; what it was decided on changed in the store
        since, a consent withdrawn, an assurance or a key revoked, an equivalence change, in any
        process; a track handed by a process of this node, always) is decided again, by the same
        engine, at this instant; refused, it is dropped (and audited). Per frame one clock read,
        one read of the counters and two comparisons per track; the tracks of one (label,
        recipient, hub) are decided once. How many of the queued tracks, from the first, may go in
        this frame: those queued while this awaited are decided at the next."""
        now = self.kernel.clock()
        ts = now.timestamp()
        under = _decided_under(self.kernel.watch)
        decided = link.queued_decided
        if all(ts < d.until and d.under == under for d in decided):
            return len(decided)
        count = len(decided)  # what is queued while this awaits is decided at the next frame
        # (label, recipient, hub, own) -> (the agreement it is allowed under now or None, until)
        again: dict[tuple[SecurityLabel, str, str | None, bool], tuple[str | None, float]] = {}
        told: set[tuple[SecurityLabel, str, str | None, bool, str | None]] = set()
        keep = [True] * count
        for index in range(count):
            d = decided[index]
            if ts < d.until and d.under == under:
                continue
            key = (d.label, d.recipient, d.via, d.sender is None)
            if key not in again:
                if d.sender is None:
                    again[key] = await self._decide_own(d, now)
                else:
                    decision, until = await self._decide_received(
                        d.label, d.subject, d.sender, d.via, d.recipient, now
                    )
                    again[key] = (decision.agreement if decision.allowed else None, until)
            agreed, until = again[key]
            # fail closed: allowed now under another agreement than the one it was queued or handed
            # under is not the decision that let it on this link (nor the registration checked)
            keep[index] = agreed is not None and agreed == d.agreement
            if agreed is not None and not keep[index] and (*key, d.agreement) not in told:
                told.add((*key, d.agreement))
                await self._refuse_other_agreement(d, agreed, now)
            decided[index] = _Decided(
                until, d.label, d.recipient, d.via, d.subject, d.sender, under, d.agreement
            )
        dropped = [a for a, k in zip(link.queued_acks[:count], keep, strict=True) if not k and a is not None]
        link.queued = [m for m, k in zip(link.queued[:count], keep, strict=True) if k] + link.queued[count:]
        link.queued_acks = [a for a, k in zip(link.queued_acks[:count], keep, strict=True) if k] + (
            link.queued_acks[count:]
        )
        link.queued_decided = [d for d, k in zip(decided[:count], keep, strict=True) if k] + decided[count:]
        for ack in dropped:
            await ack()  # refused here: nothing for the link's next holder to send again
        return sum(keep)

    async def _refuse_other_agreement(self, decided: _Decided, agreed: str, now: datetime) -> None:
        """Audit a queued or handed track dropped because its decision at the frame allows it under
        ``agreed``, not under the agreement it was queued or handed under."""
        self.stats.refused += 1
        await self._audit(self._audit_row("stream.send", None, decided.subject, "refused",
                                          recipient=decided.recipient, via=decided.via, at=now.isoformat(),
                                          agreement=decided.agreement, decided_under=agreed,
                                          reason="other-agreement"))  # fmt: skip

    async def _decide_own(self, decided: _Decided, now: datetime) -> tuple[str | None, float]:
        """This node's own track on its route (``decided``), decided again at ``now``: (the agreement
        it is allowed under, None if refused; the POSIX instant the answer holds until). A refusal
        is audited."""
        self._consents_on_file = self._own_consents()
        consents = tuple(c for c, _ in self._consents_on_file)
        assurances = self.exchange.assurances_on_file(now)
        via = (decided.via,) if decided.via else ()
        request = ReleaseRequest(
            decided.label, self.party, decided.recipient, MISSILE_WARNING, via, None, consents,
            assurances=assurances,
        )  # fmt: skip
        decision = self.kernel.engine.decide(request, at=now)
        until = next_event_after(
            self.kernel.catalogue, {self.party, decided.recipient, *self.hubs}, consents, now, assurances
        )
        if not decision.allowed:
            self.stats.refused += 1
            await self._audit(self._audit_row("stream.send", None, decided.subject, "refused",
                                              recipient=decided.recipient, via=decided.via,
                                              at=now.isoformat(),
                                              decision=[c._asdict() for c in decision.failed()]))  # fmt: skip
        agreed = decision.agreement if decision.allowed else None
        return agreed, _FOREVER if until is None else until.timestamp()

    def _refresh_counters(self) -> None:
        """While tracks flow, read the store's generation counters in a worker thread just before
        they fall due (``ChangeWatch``: every quarter second), so the frames, decisions and plans
        that ask them on the event loop find them fresh and never wait there for the store's read
        (a query on the loop waits on the interpreter's lock behind the node's other threads: 3 to
        5 ms a read, four reads a second, in py-spy samples of each node at 1,000 tracks/s). The
        counters are the same ones, read as often: a change is seen within the watch's interval,
        as before; one announced (this process's own write) is read at its next use, as before."""
        flowing = self.stats.published + self.stats.received
        if flowing == self._flowing:  # an idle stream reads nothing
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        watch = self.kernel.watch
        if watch.due_within(_READ_AHEAD_S):
            self._flowing = flowing
            self._refreshing = asyncio.ensure_future(asyncio.to_thread(watch.refresh))
            self._refreshing.add_done_callback(_log_unread)

    async def _flush(self, party: str) -> None:
        """Close the link's window and send its signed root, once the root's audit record
        (``stream.batch`` ``signed``) is committed: a root never leaves that this node's log does not
        hold (a sender that crashed between the two had signed, and the receiver recorded, a root
        its own log never named). One commit a window (every 50 ms at most, in the process's group
        commit with the other links' and the receivers' records), not a track. The link's tracks do
        not wait for it: the next window's frames go meanwhile, before this root (the receiver matches
        a root to its window by the frames the root names). One root at a time a link awaits its
        commit (``link.rooting``): the next window closes only once this root is sent. A record that
        fails fails the link (its root is never sent; the receiver drops the link for want of it)."""
        link = self._links.get(party)
        if link is None or link.signer.pending == 0:
            return
        async with link.rooting:
            async with link.lock:  # the window closes at a frame boundary
                batch = link.signer.close(self.kernel.clock())
                if batch is None:
                    return
                row = self._audit_row("stream.batch", None, party, "signed", **batch.audit_detail())
                recorded = self._memory.record([row])
            try:
                await recorded
            except GsomiaError:
                raise
            except Exception as exc:  # a store's own error: the link fails, audited, the root unsent
                raise LinkError(
                    "unrecorded-batch", f"the audit record of the root for {party} failed"
                ) from exc
            async with link.lock:
                for frame in link.session.seal(BATCH, batch.jws.encode(), time.monotonic()):
                    await link.ws.send(frame)
        self.stats.batches_signed += 1

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            self._refresh_counters()
            now = time.monotonic()
            due = [party for party, link in list(self._links.items()) if link.signer.due(now)]
            # together: their roots' records go in one group commit, none waits for another's
            await asyncio.gather(*(self._flush_due(party) for party in due))

    async def _flush_due(self, party: str) -> None:
        try:
            await self._flush(party)
        except (OSError, WebSocketException, GsomiaError) as exc:
            await self._link_failed(party, exc)
        except Exception:  # a dead ticker would silently stop signing batch roots
            _log.exception("signing the batch root for %s failed", party)

    # --- links (receiving side) ---

    def _deadline(self, seconds: float) -> Deadline:
        """A peer's deadline of ``seconds`` from now, leaving out at most _OWN_DELAY_CAP_S of this
        process's own stalls."""
        return Deadline(self._stalls, seconds, _OWN_DELAY_CAP_S)

    async def serve_link(
        self, receive: Any, send: Any, source: str = "unknown", tls_peer: str | None = None
    ) -> None:
        """Run one inbound link: ``receive()`` returns the next binary message, ``send(bytes)`` answers.

        ``source`` is the caller's address; ``tls_peer`` the party whose identity names the TLS client
        certificate the connection showed (mutual TLS): the link's handshake must name the same.
        Until its first authenticated frame (``READY``), the caller is held to the gate
        (``_gate``): a connection slot of its source, deadlines, no replayed hello.
        The link is "opened" (audited) only then. Every refusal (handshake, replay, gap, tamper, a
        track its originator did not sign, a hop's window root overdue or wrong, too many consents)
        is audited and ends the link; before confirmation, in bounded space.
        """
        if not self._started:
            await self.start()
        gate = self.gate
        peer_name = "unknown"
        confirmed = False
        admitted = gate.admit(source)
        try:
            if not admitted:
                raise LinkError(
                    "too-many-links", f"{source} already holds {gate.per_source} unauthenticated links"
                )
            # the gate's deadlines leave out this process's own stalls, at most _OWN_DELAY_CAP_S of them
            first = await _within(receive, self._deadline(gate.handshake_s), "no link hello")
            if not gate.fresh_hello(first, time.monotonic()):
                raise LinkError("replayed-handshake", "this link hello was sent before: a replay")
            answer, session = accept(
                self.kernel.ring, self.kernel.peers.peer, first, self.kernel.clock(),
                rekey_frames=self.rekey_frames, rekey_seconds=self.rekey_seconds,
            )  # fmt: skip
            # a genuine hello (it passed the handshake) answered by another process of this node
            # is a replay here too: the store remembers what every process answered
            digest = hashlib.sha256(first).hexdigest()
            now_us = epoch_us(self.kernel.clock())
            memory_us = int(gate.hello_memory_s * 1_000_000)
            if not await asyncio.to_thread(self._hellos.first_sight, digest, now_us, memory_us):
                raise LinkError("replayed-handshake", "this link hello was answered before: a replay")
            if tls_peer is not None and session.peer != tls_peer:
                raise LinkError(
                    "handshake-failed",
                    f"the link hello names {session.peer} but the TLS certificate is {tls_peer}'s",
                )
            peer_name = session.peer
            pinned = self.kernel.peers.peer(peer_name)
            peer_kid = "" if pinned is None else pinned.encryption_key(self.kernel.clock())[0]
            peers = self.kernel.watch.generation(PEERS)
            await send(answer)
            # key confirmation: a first frame that opens (READY, or any other) proves the session keys
            data = await _within(
                receive, self._deadline(gate.handshake_s), f"no first frame from {peer_name}"
            )
            frame = session.open(data)
            confirmed = True
            gate.release(source)
            opened = self._audit_row("stream.link", None, peer_name, "opened", role="responder")
            await asyncio.to_thread(self._tally_opened, peer_name, opened)
            await self._serve_frames(receive, send, session, frame, peer_kid, peers)
        except LinkError as exc:
            self.stats.link_errors += 1
            # per partner (confirmed), else per source address (nobody yet), and code: a window's first
            # 10 a record, the rest counted in the store's tally, so the bound holds across processes
            where = {} if confirmed else {"source": source}
            row = self._audit_row(
                "stream.link", None, peer_name, "refused", error=exc.detail, reason=str(exc), **where
            )
            await asyncio.to_thread(self._tally_refusal, peer_name if confirmed else source, exc, row)
            raise
        finally:
            if admitted and not confirmed:
                gate.release(source)

    def _tally_received(self, sender: str, code: str, reason: str, row: AuditRow) -> None:
        """Audit a track of ``sender``'s this node refused on receipt (its decision, ``refused``; no
        equivalent to hold it under, ``label``) in bounded space, the kernel's tally: per sender, code
        and window the first :data:`~gsomia.kernel.NodeContext.REFUSALS_RECORDED` a record each, the
        rest counted, one ``refusal.tally`` record with the count once the window closed. The decision
        is kept per label, and a partner signs its labels: a label of its own on every track (another
        creation instant) made each refusal a record of its own, as many as the partner sent."""

        def rows(_counted_as: str, _sender: str, own: int) -> list[AuditRow]:
            return [row] if own else []

        self.kernel.tally("stream.receive", sender, code, reason, rows)

    def _tally_opened(self, peer: str, row: AuditRow) -> None:
        """Audit a partner's link opened in bounded space, as its refusals are (the kernel's tally,
        code ``opened``: per partner, a window's first
        :data:`~gsomia.kernel.NodeContext.REFUSALS_RECORDED` a record each, the rest counted, one
        ``refusal.tally`` record with the window's count once it closed): each link a partner opens
        was a record of its own, so one reconnecting as fast as it can, refused each time, still made
        this node write a record a link, for ever, beside the refusals' bounded records."""

        def rows(_counted_as: str, _peer: str, own: int) -> list[AuditRow]:
            return [row] if own else []

        self.kernel.tally("stream.link", peer, "opened", f"{peer} opened a link", rows)

    def _tally_refusal(self, peer: str | None, exc: LinkError, row: AuditRow) -> None:
        """Audit the refusal of a link in bounded space (the kernel's tally: per ``peer``, the
        authenticated partner or, before key confirmation, the source address, and per code, the
        first :data:`~gsomia.kernel.NodeContext.REFUSALS_RECORDED` of a window are records of their
        own, the rest counted in the store, every process's, one ``refusal.tally`` record once the
        window closed): a caller that reconnects to be refused again, as fast as it can, to any
        process of the node, makes it store a bounded number of records a minute."""

        def rows(_counted_as: str, _peer: str, own: int) -> list[AuditRow]:
            return [row] if own else []  # one refusal: one record, or none

        self.kernel.tally("stream.link", peer or "?", exc.detail, str(exc), rows)

    async def _serve_frames(
        self, receive: Any, send: Any, session: LinkSession, first: Frame | None, peer_kid: str, peers: int
    ) -> None:
        """The frames of a confirmed link (``first`` already opened), until it ends or a frame is
        refused (``LinkError``). ``peer_kid`` is the peer's key the session was opened with and
        ``peers`` the peer directory's generation then: a key revoked meanwhile ends the link.

        Two tasks: one reads the frames, verifies each group and hands it to the replay memory (the
        next commit, :class:`ReplayMemory`); the other takes what was read in the order it arrived,
        each group once its commit said it is no replay, so a frame does not wait for the one before
        it to be committed. A window root verified is taken in its turn, after every group before
        it: the frames received up to it are confirmed (``ACK``), every track in them was kept,
        passed on or refused here, so the sender need not send them again; an authorisation, after
        the tracks before it. When the reading ends (the link closed, a frame refused), what was
        read before is taken all the same (its groups are remembered as received); a group refused
        (a replay) ends the link at once."""
        read_so_far: asyncio.Queue[_Read | None] = asyncio.Queue()
        ended: list[Exception] = []

        async def read() -> None:
            try:
                await self._read_frames(receive, session, first, peer_kid, peers, read_so_far)
            except Exception as exc:  # raised below, once what was read before it is taken
                ended.append(exc)
            finally:
                read_so_far.put_nowait(None)

        refused: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(read())
                tasks.create_task(self._take_in_order(session, send, read_so_far))
        except BaseExceptionGroup as group:  # the taker failed: the reading was stopped
            refused = group.exceptions[0]
        if refused is not None and (isinstance(refused, LinkError) or not ended):
            raise refused  # a refusal of what came first, or the taker's failure
        if ended:
            raise ended[0]

    async def _take_in_order(
        self, session: LinkSession, send: Any, read_so_far: asyncio.Queue[_Read | None]
    ) -> None:
        """Take what one link's reader read, in order, until it ends (``None``): each group once its
        commit is done, each window root confirmed, each authorisation received."""
        peer = session.peer
        # each root's confirmation (ACK), sent once its audit record is committed (_confirm)
        confirmations: asyncio.Queue[tuple[asyncio.Future[None], int] | None] = asyncio.Queue(
            _UNCONFIRMED_MOST
        )
        confirming = asyncio.create_task(self._confirm(session, send, confirmations))
        try:
            while (item := await read_so_far.get()) is not None:
                if isinstance(item, _Arrival):
                    await self._take_group(peer, item)
                elif isinstance(item, _Rooted):
                    if confirming.done():  # a root's record failed: that ends the link
                        await confirming
                    # in the next commit; the taking goes on meanwhile, the confirmation waits for it
                    recorded = self._memory.record(
                        [self._audit_row("stream.batch", None, peer, "verified", **item.detail)]
                    )
                    # _UNCONFIRMED_MOST waiting already: nothing more is taken until one goes
                    await _put_unless_ended(confirmations, (recorded, item.received), confirming)
                else:
                    await self._receive_consent(peer, item)
                read_so_far.task_done()
        except BaseException:
            confirming.cancel()  # what is not confirmed the sender sends again: dropped as duplicates
            raise
        await _put_unless_ended(confirmations, None, confirming)
        await confirming

    @staticmethod
    async def _confirm(
        session: LinkSession, send: Any, confirmations: asyncio.Queue[tuple[asyncio.Future[None], int] | None]
    ) -> None:
        """Confirm each verified window root to the sender (``ACK``, in order) only once its audit
        record (``stream.batch`` ``verified``) is committed: the confirmation tells the sender it
        need not send those tracks again, so the record that vouches for them is in the store first
        (a crash between the two lost the record while the sender, told, never sent them again; now
        a crash before the commit leaves them unconfirmed, sent again, and recorded then). The
        taking of the next groups does not wait for that commit, only the confirmation does."""
        while (confirmation := await confirmations.get()) is not None:
            recorded, received = confirmation
            await recorded  # a failure ends the link, unconfirmed
            for out in session.seal(ACK, ACK_BODY.pack(received), time.monotonic()):
                await send(out)

    async def _read_frames(
        self,
        receive: Any,
        session: LinkSession,
        first: Frame | None,
        peer_kid: str,
        peers: int,
        read_so_far: asyncio.Queue[_Read | None],
    ) -> None:
        """Read, open and verify the link's frames, what each holds onto ``read_so_far``."""
        peer = session.peer
        verifier = BatchVerifier(self.party, self.kernel.peers.peer)
        # the hop's window root due since the first track frame it has yet to cover: a deadline that
        # leaves out this node's own delays (at most _OWN_DELAY_CAP_S), not the stalls of the loop
        # while it works on this peer's frames (from ``began`` to the next turn of the loop: _stalls)
        deadline: Deadline | None = None
        stalls = self._stalls
        consents = 0
        opened: Frame | None = first
        began = stalls.settle()
        key_until = -_FOREVER  # the peer's session key is checked (its end read) at the first frame read
        loop = asyncio.get_running_loop()
        turn = _Turn()  # whether the loop turned while the next message was awaited: none was received yet
        while True:
            if opened is None:
                turn.turned = False
                loop.call_soon(turn.mark)
                if deadline is None:
                    data = await receive()  # an idle link may stay idle
                else:
                    deadline.charge(began)
                    data = await _within(
                        receive, deadline, f"no signed window root from {peer}", "no-batch-root"
                    )
                began = stalls.settle()
                # a key revoked meanwhile, or one that reached its end, ends the link
                if self.kernel.watch.generation(PEERS) != peers or (
                    key_until != _FOREVER and self.kernel.clock().timestamp() >= key_until
                ):
                    peers, key_until = self._check_session_key(peer, peer_kid)
                opened = session.open(data)
                if opened is None:
                    continue
            frame, opened = opened, None
            if frame.kind == READY:
                continue
            if frame.kind == TRACKS:
                verifier.add(frame.seq, frame.body, (began, stalls.total))
                if deadline is None:
                    deadline = Deadline(stalls, _ROOT_DEADLINE_S, _OWN_DELAY_CAP_S)
                else:
                    deadline.charge(began)
                    if deadline.left() <= 0:
                        raise LinkError(
                            "no-batch-root",
                            f"{peer} sent tracks for {_ROOT_DEADLINE_S:g} s without a window root",
                        )
                for group in decode_groups(frame.body, peer):
                    # the originator's signature and each track's inclusion, before any is read
                    verified = verify_group(
                        group, self.kernel.peers.peer, self.kernel.clock(), self.kernel.max_clock_skew
                    )
                    if read_so_far.qsize() >= _READ_AHEAD:  # the taker is behind: read no further for now
                        deadline.charge(began)
                        waited = stalls.clock()
                        await read_so_far.join()
                        deadline.waited(stalls.clock() - waited)  # this node's own wait, not the sender's
                        began = stalls.settle()
                    # the link idle until this frame came (none waiting behind it) and nothing read and
                    # not yet taken before it: its commit is made now if it can be; frames that came
                    # together wait for one commit as before
                    alone = turn.turned and read_so_far.qsize() == 0
                    read_so_far.put_nowait(await self._arrive(peer, frame.seq, verified, alone=alone))
                deadline.charge(began)
                await asyncio.sleep(0)  # frames already received wait a turn: the groups before are taken
                began = stalls.settle()
            elif frame.kind == TRACK:
                raise LinkError(
                    "unsigned", f"frame {frame.seq} from {peer} holds a track its originator did not sign"
                )
            elif frame.kind == CONSENT:
                consents += 1
                if consents > _CONSENTS_PER_LINK:
                    raise LinkError(
                        "too-many-consents",
                        f"{peer} sent more than {_CONSENTS_PER_LINK} authorisations on one link",
                    )
                read_so_far.put_nowait(_text(frame.body, frame.seq, peer))
            elif frame.kind == BATCH:
                jws = _text(frame.body, frame.seq, peer)
                batch = verifier.verify(jws, peer, self.kernel.clock())
                # the frames still uncovered (the sender's next window, sent while this root waited
                # for its record): their own deadline, from the oldest one's arrival
                oldest = verifier.oldest()
                deadline = (
                    None if oldest is None else Deadline(stalls, _ROOT_DEADLINE_S, _OWN_DELAY_CAP_S, oldest)
                )
                self.stats.batches_verified += 1
                # confirmed up to the root, or only to its last frame when frames of the next window
                # came before it (no verified root covers those yet)
                received = session.received if oldest is None else verifier.covered
                read_so_far.put_nowait(_Rooted(received, batch.audit_detail()))
            elif frame.kind == ACK:
                raise LinkError("malformed", f"frame {frame.seq} from {peer}: only the receiver confirms")

    def _check_session_key(self, peer: str, kid: str) -> tuple[int, float]:
        """The peers generation now and the POSIX instant ``peer``'s key ``kid`` (the one its link
        session was opened with) ends or is revoked, if it is still usable; else :class:`LinkError`
        ``revoked-key``."""
        generation = self.kernel.watch.generation(PEERS)
        identity = self.kernel.peers.peer(peer)
        try:
            if identity is None:
                raise EnvelopeError("unknown-sender")
            until = identity.key_usable_until(kid, self.kernel.clock())
        except EnvelopeError as exc:
            raise LinkError(
                "revoked-key", f"{peer}'s link was opened with key {kid}, which this node no longer accepts"
            ) from exc
        return generation, _posix(until)

    async def _receive_consent(self, sender: str, jws: str) -> None:
        """A standing hub authorisation on a link: from its originator to this node as the hub, or
        relayed by the hub it names to this node as the recipient; kept, at most ``_CONSENTS_KEPT``
        per originator (the newest)."""
        consent_id, consent = self._keep_consent(jws, sender)
        await self._audit(self._audit_row("stream.consent", None, consent_id, "received", sender=sender,
                                    originator=consent.originator, recipient=consent.recipient))  # fmt: skip

    def _keep_consent(self, jws: str, sender: str) -> tuple[str, Consent]:
        """Verify and keep a standing hub authorisation that came from ``sender`` (its originator, to
        this node as the hub; or the hub it names, to this node as the recipient), at most
        ``_CONSENTS_KEPT`` per originator (the newest); ``LinkError`` ``bad-consent`` if it is not one."""
        try:
            signer, content, until = verify_origin_until(jws, self.kernel.peers.peer, self.kernel.clock())
            consent_id, consent = consent_from_content(content, signer)
        except GsomiaError as exc:
            raise LinkError("bad-consent", f"an authorisation relayed by {sender} does not verify") from exc
        to_hub = consent.hub == self.party and sender == consent.originator
        relayed = consent.recipient == self.party and consent.hub == sender
        if consent.kind != ConsentKind.TRACK_RELAY or consent.item is not None or not (to_hub or relayed):
            raise LinkError(
                "bad-consent",
                f"{sender} sent an authorisation that is not a hub relay involving {self.party}",
            )
        kept = self._consents.setdefault(consent.originator, {})
        if consent_id not in kept:
            kept[consent_id] = (consent, jws)
            self._consent_ends[jws] = _posix(until)
            if len(kept) > _CONSENTS_KEPT:
                oldest = min(kept, key=lambda key: kept[key][0].given_at)
                self._consent_ends.pop(kept.pop(oldest)[1], None)
            self._received_plans.clear()
        return consent_id, consent

    def _kept(self, originator: str, now: datetime) -> list[tuple[Consent, str]]:
        """The authorisations of ``originator`` kept from the links that still verify at ``now``, as
        the exchange verifies each consent it counts at the instant it decides: all verified again
        when the store's peers or keys moved (a key revoked, a partner registered anew, in any
        process; one that no longer verifies is dropped), and each left out from its signing key's
        end on (no counter moves for that)."""
        watch = self.kernel.watch
        generation = (watch.generation(PEERS), watch.generation(KEYS))
        if generation != self._consents_verified:
            for kept in self._consents.values():
                for consent_id, (_, jws) in list(kept.items()):
                    try:
                        until = verify_origin_until(jws, self.kernel.peers.peer, now)[2]
                    except GsomiaError:
                        del kept[consent_id]
                        self._consent_ends.pop(jws, None)
                        continue
                    self._consent_ends[jws] = _posix(until)
            self._consents_verified = generation
        ts = now.timestamp()
        ends = self._consent_ends
        return [(c, jws) for c, jws in self._consents.get(originator, {}).values() if ts < ends.get(jws, 0.0)]

    def _remember(
        self,
        group: VerifiedGroup,
        tracks: list[str],
        entries: Sequence[Entry] | None = None,
        *,
        alone: bool = False,
    ) -> asyncio.Future[Remembered]:
        """Hand the group to the replay memory (the next commit): what arrived before, in the future.

        A hub holds each batch it relayed and could send it again, or send the same track twice,
        while its originator's signature is still fresh: the store remembers every (batch, leaf)
        for twice the freshness window, so a leaf sent again is never taken twice, in every process
        of this node (dropped as a duplicate when a hub sends it: its queue hands a track again
        after a takeover; refused on the originator's own link, which re-signs what it resends).
        An originator's node sends an update again under a new signature only when a link changed
        hands before the peer confirmed it (its new holder sends what the old one had not had
        confirmed): that is no attack, and the update is kept once (the window covers the handover's
        age). The identity is the signer's, so nobody else's signature can make a genuine update
        look like one seen before. What the store forgot it cannot tell: a batch signed before the
        instant it forgot up to plus the freshness window is a replay there, whatever the clock
        reads after (a clock set back would make a forgotten batch fresh again). ``alone``: nothing
        else read waits to be recorded before it (the commit may then be made now:
        ``ReplayMemory.remember``).
        """
        now = self.kernel.clock()
        window = self.kernel.max_clock_skew
        arrival = SignedArrival(
            group.batch, group.originator,
            tuple(entry.index for entry in (group.entries if entries is None else entries)), tuple(tracks),
            epoch_us(now), epoch_us(group.signed_at),
        )  # fmt: skip
        forget = epoch_us(now - max(2 * window + _SEEN_MARGIN, _RESEND_WINDOW))
        return self._memory.remember(arrival, forget, alone=alone)

    @staticmethod
    def _refuse_replay(peer: str, group: VerifiedGroup, remembered: Remembered) -> set[str]:
        """``LinkError`` if any track of the group arrived before in the same signed batch; else the
        updates of it (their identities) that arrived before under another signature."""
        if remembered.replayed:
            raise LinkError(
                "replayed-batch",
                f"{peer} sent again {len(remembered.replayed)} track(s) of a batch {group.originator} "
                f"signed at {group.signed_at.isoformat()} (batch {group.batch[:16]}): a replay",
            )
        return remembered.before

    async def _arrive(self, sender: str, seq: int, group: VerifiedGroup, *, alone: bool = False) -> _Arrival:
        """Read each track of one verified group at the boundary (``LinkError`` if one is not a track
        this node accepts from ``sender``) and hand the group to the replay memory (``alone``: its
        commit made now where it can be, ``_remember``)."""
        try:
            labels = _GroupLabels()  # a group's labels mostly repeat: one parse per distinct label
            read = [self._read_track(sender, seq, group, entry, labels) for entry in group.entries]
        except LinkError:  # a replayed batch is named as one first
            self._refuse_replay(sender, group, await self._remember(group, []))
            raise
        keys = [_track_key(group.originator, message) for message in read]
        return _Arrival(seq, group, read, keys, self._remember(group, keys, alone=alone))

    async def _take_group(self, sender: str, arrival: _Arrival) -> None:
        """Once the store remembered the group: each track taken once (an update that arrived before,
        or twice in the group, or a leaf a hub sent again, is dropped, counted and audited, one
        record); ``LinkError`` for a replay on the originator's own link."""
        seq, group = arrival.seq, arrival.group
        remembered = await arrival.remembered
        resent: set[int] = set()
        while remembered.replayed and sender != group.originator:
            # A hub sends a relayed track again, under the same signature (it cannot sign it anew),
            # when the process holding its link died or was slow before this node's confirmation
            # reached its queue: JetStream hands the track to the next holder. Refusing the link
            # for it lost the tracks behind it; the leaves taken before are dropped as duplicates
            # (counted and audited below) and the rest of the group remembered now. Nothing is
            # shown twice: the store recorded every leaf taken before (docs/STREAM.md). The
            # originator's own link re-signs what it sends again, so a replay there still refuses.
            resent.update(remembered.replayed)
            rest = [(e, k) for e, k in zip(group.entries, arrival.keys, strict=True) if e.index not in resent]
            if not rest:
                break
            remembered = await self._remember(group, [k for _, k in rest], [e for e, _ in rest])
        duplicates = remembered.before if resent else self._refuse_replay(sender, group, remembered)
        now = self.kernel.clock()  # the group's instant of receipt: every track of it is decided at it
        dropped: list[str] = []
        take: list[tuple[Entry, _Received]]
        if not resent and not duplicates and len(set(arrival.keys)) == len(arrival.keys):
            take = list(zip(group.entries, arrival.read, strict=True))  # each a new update: all taken
        else:
            taken: set[str] = set()
            take = []
            for entry, message, key in zip(group.entries, arrival.read, arrival.keys, strict=True):
                if entry.index in resent or key in duplicates or key in taken:
                    dropped.append(f"{message.track_id}@{orjson.loads(message.track)['update_ts']}")
                    continue
                taken.add(key)
                take.append((entry, message))
        if dropped:
            await self._bound_resends(sender, group, len(dropped))
        last = _GroupDecision()  # one decision per (label, hub, recipient) of the group, at ``now``
        for entry, message in take:
            await self._take_track(sender, seq, group, entry, message, now, last)
        if dropped:
            self.stats.duplicates += len(dropped)
            await asyncio.to_thread(self._tally_duplicates, sender, group.originator, dropped)

    def _tally_duplicates(self, sender: str, originator: str, dropped: list[str]) -> None:
        """Audit the duplicates ``sender`` sent of a group in bounded space: counted in the store's
        tally of the window (``stream.receive``, ``duplicate``, per sender, every process's), the
        window's first groups a record each (naming how many, and at most 16 of them) while fewer
        than 16 were counted before them, and the window's count in one ``refusal.tally`` record once
        it has closed. Under the bound a sender may send 21,000 duplicates a minute; each group a
        record made the audit log grow by as many, for ever."""
        count = len(dropped)

        def rows(counted_as: str, _sender: str, own: int) -> list[AuditRow]:
            if not own:
                return []
            where = (
                {"sender": sender} if counted_as == sender else {"sender": sender, "counted_as": counted_as}
            )
            return [self._audit_row("stream.receive", None, originator, "duplicate", **where, count=count,
                                    tracks=dropped[:_DUPLICATES_NAMED])]  # fmt: skip

        reason = f"{sender} sent again {count} track(s) of {originator}'s: {', '.join(dropped[:4])}"
        self.kernel.tally("stream.receive", sender, "duplicate", reason, rows, count=count)

    async def _bound_resends(self, sender: str, group: VerifiedGroup, count: int) -> None:
        """Count ``count`` tracks ``sender`` sent again in the store (every process of this node, every
        link of the sender: reconnecting resets nothing); ``LinkError`` (``replayed-batch``) once its
        duplicates within the last ``HANDOFF_MAX_AGE_S`` (a sliding window: any such span, never twice
        the bound across a fixed window's edge) are more than its JetStream could hand again
        (``HANDOFF_RESENDS``): that is a replay, not a redelivery, and each costs this node commits.
        A hub's (relayed leaves again) and an originator's own (its updates again under a new
        signature) are counted alike and together: both come again only from the hand-off consumer
        of the sender's link to this node, one queue under one ``max_ack_pending``. Each duplicate
        counts, the refused group's too, so a sender refused stays refused while it keeps replaying.
        Fails closed: a store that cannot count refuses the link as well."""
        try:
            total = await asyncio.to_thread(
                self._resends.add_within, _RESENDS_KEY + sender, count, math.ceil(HANDOFF_MAX_AGE_S)
            )
        except GsomiaError as exc:
            raise LinkError("replayed-batch", f"{sender}'s duplicates could not be counted: {exc}") from exc
        if total > HANDOFF_RESENDS:
            raise LinkError(
                "replayed-batch",
                f"{sender} sent again {total} track(s) of {group.originator}'s within "
                f"{HANDOFF_MAX_AGE_S:g} s, more than a redelivery can (at most {HANDOFF_RESENDS}): a replay",
            )

    def _read_track(
        self, sender: str, seq: int, group: VerifiedGroup, entry: Entry, labels: _GroupLabels
    ) -> _Received:
        """One track message of a verified group, read and checked (the boundary every node applies);
        ``LinkError`` if it is not one this node accepts from ``sender``. A label equal to the one
        before it in the group is that label, parsed once (``labels``)."""
        self.stats.received += 1
        try:
            data = _decode_message(entry.message)
            label_data = data.label
            if labels.label is not None and label_data == labels.data:
                label = labels.label
            else:
                label_json = bytes(label_data)
                json_keys(label_json)  # a label naming a key twice is refused
                label_dict = orjson.loads(label_json)
                strings = strings_read(label_dict)
                label = self.kernel.items.parse_label(label_dict)
                labels.data, labels.label, labels.strings = label_data, label, strings
            if label.originator != group.originator or data.originator != group.originator:
                raise LinkError(
                    "not-the-originator",
                    f"a track labelled as {label.originator}'s is signed by {group.originator}",
                )
            track = bytes(data.track)
            recipient, via = data.recipient, data.via
            # the same boundary at every node, on the bytes passed on; the update's instant as
            # parsed keys it, not its text
            if track == labels.track and labels.update_ts is not None:
                # the same bytes as the track before it, of the same originator (the group's): the
                # same update and count (a pure read of those bytes), checked once
                track_id, update_ts, track_strings = labels.track_id, labels.update_ts, labels.track_strings
            else:
                # every check of the boundary; of the update only its id and instant are kept
                track_id, update_ts, track_strings = read_track_json_checked(
                    track, originator=label.originator
                )
                labels.track, labels.track_id, labels.update_ts = track, track_id, update_ts
                labels.track_strings = track_strings
            at_us = epoch_us(update_ts)
            if via is msgspec.UNSET:
                via = None
            elif not (via is None or isinstance(via, str)):
                raise InvalidInputError("a track's recipient and hub are party codes")
            if not isinstance(recipient, str):
                raise InvalidInputError("a track's recipient and hub are party codes")
            # no key given twice anywhere in the message (its fields, the label, the track): the
            # bytes passed on mean to every reader what this node checked and decided on
            # (the message's own: 4 or 5 keys, the originator's and recipient's codes, the hub's if any)
            own = 6 + (data.via is not msgspec.UNSET) + (via is not None)
            keys_once(entry.message, None if track_strings is None else track_strings + labels.strings + own)
        except LinkError:
            raise
        except (GsomiaError, msgspec.DecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # authenticated, yet not a track this node can read: the peer is broken
            raise LinkError(
                "malformed", f"frame {seq} from {sender} is not a track this node accepts"
            ) from exc
        expected_sender = via if via and recipient == self.party else label.originator
        if sender != expected_sender:
            raise LinkError("malformed", f"{sender} sent a track it may not send on this route")
        return _Received(label, track, track_id, recipient, via, at_us)

    async def _take_track(
        self,
        sender: str,
        seq: int,
        group: VerifiedGroup,
        entry: Entry,
        message: _Received,
        now: datetime,
        last: _GroupDecision,
    ) -> None:
        """Decide on a track read from ``sender``, then keep it (this node is its recipient) or pass
        it on (this node is its hub). ``last``: the decision (and the label held under it) of the
        track before it in the group, taken again when the label (the same parsed label), the hub
        and the recipient are the same; the group's tracks are decided at one instant, ``now``."""
        label, track_id, recipient, via = message.label, message.track_id, message.recipient, message.via
        try:
            answer = last.answer
            if (
                answer is None
                or last.label is not label
                or last.via != via
                or last.recipient != recipient
                or last.under is not self._received_under  # the counters moved meanwhile: decide again
            ):
                answer = last.answer = await self._decide_received(
                    label, track_id, sender, via, recipient, now
                )
                last.label, last.via, last.recipient, last.held = label, via, recipient, None
                last.under = self._received_under
            decision, until = answer
            if not decision.allowed:
                return
            if recipient == self.party:
                try:  # this node's equivalent beside the originator's label: worked out where the inbox does
                    held = last.held
                    if held is None:
                        held = last.held = self.kernel.items.received_label(
                            label, sender, decision.agreement, at=decision.at
                        )
                    label = held
                except LabelError as exc:
                    self.stats.refused += 1
                    row = self._audit_row("stream.receive", None, track_id, "refused",
                                          sender=sender, reason=str(exc))  # fmt: skip
                    await asyncio.to_thread(self._tally_received, sender, "label", str(exc), row)
                    return
                route = f"via {via}" if via else "direct"
                await self._emit(message.track, label, route, decision.agreement)
            elif via == self.party:
                relayed = _Relayed(
                    group.jws, group.size, Entry(entry.index, group.proof(entry), entry.message)
                )
                decided = _Decided(
                    until, label, recipient, via, track_id, sender, self._received_under,
                    decision.agreement,
                )  # fmt: skip
                await self._forward(label, recipient, relayed, decision, decided)
        except LinkError:
            raise
        except UnavailableError as exc:  # this node's bus is full: the peer did nothing wrong
            self.stats.refused += 1
            _log.warning("track from %s not emitted: %s", sender, exc)
        except (GsomiaError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LinkError(
                "malformed", f"frame {seq} from {sender} is not a track this node accepts"
            ) from exc

    async def _decide_received(
        self, label: SecurityLabel, track_id: str, sender: str, via: str | None, recipient: str, now: datetime
    ) -> tuple[ReleaseDecision, float]:
        """The decision for this hop, at this node, at ``now``, and the POSIX instant it holds until
        (its next event): one engine decision per (label, hub, recipient) until then."""
        key = (label, via, recipient)
        watch = self.kernel.watch
        # an assurance given or revoked, a key its signer signed it with revoked, or an equivalence
        # change stored (by any process: the engine is compiled again over the changed table, and a
        # change's instant is no event of the plans kept): decide again
        under = _decided_under(watch)
        if under != self._received_under:
            self._received_plans.clear()
            self._received_under = under
        cached = self._received_plans.get(key)
        if cached is not None and cached[1] > now.timestamp() and now.timestamp() >= cached[0].at.timestamp():
            return cached
        kept = self._kept(label.originator, now)
        consents = tuple(c for c, _ in kept)
        assurances = self.exchange.assurances_on_file(now)
        request = ReleaseRequest(
            label,
            label.originator,
            recipient,
            MISSILE_WARNING,
            (via,) if via else (),
            None,
            consents,
            assurances=assurances,
        )
        decision = self.kernel.engine.decide(request, at=now)
        until = next_event_after(
            self.kernel.catalogue, {label.originator, recipient, *(self.hubs)}, consents, now, assurances
        )
        # an authorisation counted stops counting when its signing key ends: decided again then
        held = min((self._consent_ends.get(j, 0.0) for _, j in kept), default=_FOREVER)
        held = min(held, _posix(until))
        if len(self._received_plans) >= _CACHE_LIMIT:  # a long-running node stays bounded
            self._received_plans.clear()
            self._emitted_labels.clear()
        answer = self._received_plans[key] = (decision, held)
        if not decision.allowed:
            self.stats.refused += 1
            row = self._audit_row("stream.receive", None, track_id, "refused", sender=sender,
                                  decision=[c._asdict() for c in decision.failed()])  # fmt: skip
            reason = "; ".join(c.reason for c in decision.failed())
            await asyncio.to_thread(self._tally_received, sender, "refused", reason, row)
        return answer

    async def _forward(
        self,
        label: SecurityLabel,
        recipient: str,
        relayed: _Relayed,
        decision: ReleaseDecision,
        decided: _Decided,
    ) -> None:
        """The hub passes a track on to the recipient the originator authorised, under the
        originator's signed root, unchanged, with the track's inclusion proof."""
        try:
            kept = self._kept(label.originator, decision.at)  # those that still verify, as counted
            consents = [jws for consent, jws in kept if consent.recipient == recipient]
            await self._to_link(recipient, relayed, decision.agreement, consents, decided)
            self.stats.relayed += 1
        except (OSError, WebSocketException, GsomiaError) as exc:
            await self._link_failed(recipient, exc)

    # --- the bus and its consumers ---

    async def _emit(self, track: bytes, label: SecurityLabel, route: str, agreement: str | None) -> None:
        """Publish ``track`` (a validated track, encoded as a JSON object) on the bus, with its
        route and agreement added and its label beside it; the message is put together from
        bytes encoded once per label and per route, so a track is not decoded or re-encoded here."""
        prefix = self._emitted_labels.get(label)
        if prefix is None:
            data = label_to_dict(label)
            digest = hashlib.sha256(canonical(data).encode()).hexdigest()[:32]
            # "lk", the label's digest: consumers decide once per label, not per message
            prefix = self._emitted_labels[label] = (
                b',"lk":"' + digest.encode() + b'","label":' + orjson.dumps(data) + b',"track":'
            )
        fields = self._route_fields.get((route, agreement))
        if fields is None:
            fields = self._route_fields[(route, agreement)] = (
                b"," + _dumps({"route": route, "agreement": agreement})[1:] + b"}"
            )
        self._seq += 1
        self.stats.emitted += 1
        await self.bus.publish(b"".join((b'{"id":', str(self._seq).encode(), prefix, track[:-1], fields)))

    def _decode(self, raw: bytes) -> _BusTrack:
        """A bus message read once for all the consumers it reaches: its label's digest, the label
        (decoded only when its digest is new here) and the track's JSON as the message holds it, a
        slice of it (the track is sent on as it came, not decoded and encoded again).

        :meth:`_emit` writes ``{"id":N,"lk":"DIGEST","label":LABEL,"track":TRACK}``; the slice is
        taken only where the bytes after the digest are the label's JSON as a message read whole
        before held it, followed by the track's key. Anything else is read whole (``orjson``)."""
        last = self._decoded
        if last is not None and last[0] is raw:
            return last[1]
        read: _BusTrack | None = None
        at = raw.find(_LK, 0, 32)
        if at >= 0:
            start = at + len(_LK)
            key = raw[start : start + 32].decode("ascii", "replace")
            label = self._bus_labels.get(key)
            tail = start + 32 + len(_LABEL_KEY)
            if (
                label is not None
                and raw.startswith(_LABEL_KEY, start + 32)
                and raw.startswith(label, tail)
                and raw.startswith(_TRACK_KEY, tail + len(label))
                and raw.endswith(b"}}")
            ):
                read = _BusTrack(key, None, raw[tail + len(label) + len(_TRACK_KEY) : -1])
        if read is None:
            message = orjson.loads(raw)
            read = _BusTrack(message["lk"], message["label"], orjson.dumps(message["track"]))
            label = orjson.dumps(message["label"])
            if raw.find(_LABEL_KEY + label + _TRACK_KEY) >= 0:  # as _emit wrote it: sliced from now on
                if len(self._bus_labels) >= _CACHE_LIMIT:
                    self._bus_labels.clear()
                self._bus_labels[read.lk] = label
        self._decoded = (raw, read)
        return read

    def stream_label(self) -> SecurityLabel:
        """The label this node's own tracks carry (for the check when a consumer connects)."""
        return self.kernel.catalogue.label(
            originator=self.party,
            classification=self.classification,
            releasable_to=self.recipients,
            purpose=MISSILE_WARNING,
            topics=[MISSILE_TOPIC],
            created=self.kernel.clock(),
        )

    async def subscribe(
        self,
        person: Person,
        channel: str,
        after: int | None = None,
        *,
        credential: Callable[[], datetime] | None = None,
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Tracks this person may read, as (the bus's sequence number, the track's JSON: the update,
        its ``route`` and ``agreement``); refused (and audited)
        up front if the person could not read the stream at all. ``after`` resumes after that
        number (an SSE client's ``Last-Event-ID``) with what the bus still holds.

        The stream ends, raising the refusal (audited once), once the person may no longer follow it
        (:class:`_Reading`): disabled, a visit revoked, shortened or over, or ``credential`` (the
        check of what the caller was let in with: its expiry, or it raises) failing, after any
        process revoked a token or at its expiry; within about a second, tracks flowing or not."""
        subscription = await self._subscribed(person, channel, after)
        return self._consume(person, subscription, channel, credential)

    async def subscribe_batches(
        self, person: Person, channel: str, most: int, *, credential: Callable[[], datetime] | None = None
    ) -> AsyncIterator[list[bytes]]:
        """The tracks :meth:`subscribe` gives, in lists of at most ``most`` (``stream/_batches.py``).
        What the batches' reader reads ahead is the bus's messages, undecided: each track is
        read-decided as its batch is made, so a consumer that keeps a batch waiting (a slow one, or
        one that stalls on purpose) is never sent a track decided before then (a visit that ended
        meanwhile withholds it, as it would a track sent alone). A batch all withheld is not sent."""
        subscription = await self._subscribed(person, channel, None)
        return self._consume_batches(person, subscription, most, channel, credential)

    async def _subscribed(self, person: Person, channel: str, after: int | None) -> Any:
        if not self._started:
            await self.start()
        decision = self.kernel.decide_read(person, self.stream_label())
        if not decision.allowed:
            raise self.kernel.refuse(f"stream.{channel}", person.id, None, AccessDenied(decision))
        # subscribed before it is audited: from the record "subscribed" on, every track is delivered
        # (a client that waits for the record must not miss what is published while it is written)
        subscription = await self.bus.subscribe(after)
        try:
            await self._audit(self._audit_row(f"stream.{channel}", person.id, None, "subscribed"))
        except BaseException:
            await subscription.close()  # not audited: no subscription
            raise
        return subscription

    async def _consume(
        self, person: Person, subscription: Any, channel: str, credential: Callable[[], datetime] | None
    ) -> AsyncIterator[tuple[int, bytes]]:
        reading = self._open_reading(person, channel, credential, subscription)
        try:
            async for seq, raw in subscription:
                if subscription.dropped != reading.dropped:
                    await self._consumer_dropped(reading, subscription.dropped)
                await reading.current()
                track = await reading.admit(raw)
                if track is not None:
                    yield seq, track
            reading.ended()  # closed under it (_follow_open): the refusal that ended it
        finally:
            self._open.discard(reading)
            await subscription.close()

    async def _consume_batches(
        self,
        person: Person,
        subscription: Any,
        most: int,
        channel: str,
        credential: Callable[[], datetime] | None,
    ) -> AsyncIterator[list[bytes]]:
        reading = self._open_reading(person, channel, credential, subscription)
        try:
            # a bus message holds its track and label: a batch of messages is at least as large as
            # the batch of tracks sent, so the bytes bound holds for what is sent
            async for raws in batches(subscription, most):
                if subscription.dropped != reading.dropped:
                    await self._consumer_dropped(reading, subscription.dropped)
                await reading.current()
                sent = [track for raw in raws if (track := await reading.admit(raw)) is not None]
                if sent:
                    yield sent
            reading.ended()
        finally:
            self._open.discard(reading)
            await subscription.close()

    def _open_reading(
        self, person: Person, channel: str, credential: Callable[[], datetime] | None, subscription: Any
    ) -> _Reading:
        reading = _Reading(self, person, channel, credential, subscription)
        self._follow(reading)
        return reading

    def _follow(self, standing: _Standing) -> None:
        """Check ``standing`` while it sends nothing too (:meth:`_follow_open`), until it is discarded."""
        self._open.add(standing)
        if self._following is None or self._following.done():
            self._following = asyncio.create_task(self._follow_open(), name=f"gsomia-open-{self.party}")

    async def _follow_open(self) -> None:
        """While consumers' streams or publishers' feeds are open here, every ``_IDLE_CHECK_S`` check
        those no track or message has checked lately (:meth:`_Standing.current`): an idle one whose
        person was disabled (or demoted, a publisher), whose visit was revoked, shortened or is over
        (a consumer), or whose credential was revoked or expired is closed too (:meth:`_Standing.sweep`).
        The counters are read once a round for all of them (one query, in a worker thread, when
        due); one's own record, credential and visits are read again only when one moved."""
        watch = self.kernel.watch
        while self._open:
            await asyncio.sleep(_IDLE_CHECK_S)
            now = time.monotonic()
            idle = [r for r in self._open if r.due(now)]
            if not idle:
                continue
            if watch.fresh(PEOPLE) is None:  # due: read once here, not once a consumer
                try:
                    await asyncio.to_thread(watch.refresh)
                except Exception:  # the store unreachable: each consumer's own check reads again
                    _log.warning("the counters could not be read for the open streams", exc_info=True)
            await asyncio.gather(*(r.sweep() for r in idle))

    async def _consumer_dropped(self, reading: _Reading, dropped: int) -> None:
        """The tracks a consumer lost since it was last seen reading (its subscription's count moved
        to ``dropped``: the bus dropped the oldest it held for it, more than its bound behind), counted
        (``gsomia_stream_dropped_total``) and audited in bounded space: the store's tally of the
        window (``stream.dropped``, code ``behind``, per person, every process's), the window's first
        drop a record naming the person, the channel and how many, and the window's count in one
        ``refusal.tally`` record once it has closed. One record an episode would still be unbounded
        for a consumer that falls behind again and again."""
        count = dropped - reading.dropped
        reading.dropped = dropped
        self.stats.dropped += count
        await asyncio.to_thread(self._tally_dropped, reading.person_id, reading.channel, count)

    def _tally_dropped(self, person: str, channel: str, count: int) -> None:
        def rows(counted_as: str, _person: str, own: int) -> list[AuditRow]:
            if not own:
                return []
            where = {} if counted_as == person else {"counted_as": counted_as}
            return [
                self._audit_row(
                    "stream.dropped", person, None, "dropped", channel=channel, count=count, **where
                )
            ]

        reason = f"a {channel} consumer of {person}'s lost {count} track(s), too far behind"
        self.kernel.tally("stream.dropped", person, "behind", reason, rows, count=count)


class _Standing:
    """Whether the person of one open connection may still do what they opened it for, as the
    store holds it now: their record (the ``people`` counter: disabled, roles changed), the
    credential they opened it with (the ``tokens`` counter: revoked by any process; and its expiry)
    and what the subclass decides on them (:meth:`_decide`). Checked at most every
    ``_PERSON_CHECK_S`` from memory on the loop (:meth:`current`); read again in a worker thread
    only when a counter moved or the expiry passed. A refusal is audited once and raised from then on;
    found while the connection sends nothing (:meth:`sweep`, the service's idle round), it is handed
    to ``close``, which closes what the connection waits on.
    The one check of an open consumer's stream (:class:`_Reading`) and of a publisher's feed
    (:class:`_Publishing`)."""

    _COUNTERS: tuple[str, ...] = (PEOPLE, TOKENS)  # people first, tokens second: _renewed reads them so

    def __init__(
        self,
        service: StreamService,
        person: Person,
        channel: str,
        credential: Callable[[], datetime] | None,
        close: Callable[[GsomiaError], Awaitable[None]] | None,
    ) -> None:
        self._service = service
        self._person = person
        self._channel = channel
        self._credential = credential
        self._close = close
        # the counters the person, credential (and the subclass's decision) were last read under:
        # unknown (the caller was let in on rows that may predate them), so the first check reads
        # them all again
        self._seen: tuple[int | None, ...] = (-1,) * len(self._COUNTERS)
        self._expires = math.inf  # the credential's expiry (POSIX seconds): checked again from then
        self._next_check = 0.0  # the monotonic instant from which current() looks at the counters again
        self._refused: GsomiaError | None = None  # what ended the stream (audited once)
        self._checking = asyncio.Lock()  # one check at a time: the stream's own, or the idle round's

    def due(self, now: float) -> bool:
        """Whether no check was made within the last ``_PERSON_CHECK_S`` (an idle stream)."""
        return now >= self._next_check

    @property
    def person(self) -> Person:
        """The person's record as last checked (roles and all)."""
        return self._person

    @property
    def person_id(self) -> str:
        return self._person.id

    @property
    def channel(self) -> str:
        return self._channel

    def _moved(self) -> bool:
        """(On the loop.) Whether the subclass's own decision is due again, counters aside."""
        return False

    def _decide(self, person: Person, held: Person, seen: tuple[int | None, ...], edge: bool) -> Any:
        """(In a worker thread.) The subclass's own decision on ``person`` (the record now; ``held``
        the one last checked): raises the refusal (audited), else what :meth:`_renew` keeps."""
        raise NotImplementedError

    def _renew(self, person: Person, decided: Any) -> None:
        """(On the loop.) Keep ``person`` and what :meth:`_decide` returned."""
        self._person = person

    async def current(self) -> None:
        """Make the next decisions on the person's record and credential (and the subclass's) as the
        store holds them now. At most every ``_PERSON_CHECK_S`` it looks at the counters as this
        process last read them (memory only, on the loop), at the subclass's edges and at the
        credential's expiry; when one moved or passed, or the counters are due to be read, the rest
        is read again in a worker thread (:meth:`_renewed`). Raises the refusal (audited once) and
        so ends the stream or feed if the person may no longer go on with it at all."""
        if time.monotonic() < self._next_check:
            return
        async with self._checking:
            if self._refused is not None:
                raise self._refused
            now = time.monotonic()
            if now < self._next_check:  # checked meanwhile (the idle round and a track at once)
                return
            self._next_check = now + _PERSON_CHECK_S
            fresh = self._service.kernel.watch.fresh
            seen: tuple[int | None, ...] = tuple(fresh(name) for name in self._COUNTERS)
            edge = self._moved() or self._service.kernel.clock().timestamp() >= self._expires
            if seen == self._seen and not edge:
                return
            try:
                person, decided, expires, seen = await asyncio.to_thread(self._renewed, edge)
            except GsomiaError as exc:
                self._refused = exc
                self._next_check = 0.0  # every later call raises it at once
                raise
            self._renew(person, decided)
            self._expires = expires
            self._seen = seen

    def ended(self) -> None:
        """The subscription ended under the stream: raise the refusal that closed it, if one did."""
        if self._refused is not None:
            raise self._refused

    async def sweep(self) -> None:
        """:meth:`current` for an idle stream or feed (:meth:`StreamService._follow_open`): a refusal
        is handed to ``close`` (a consumer's subscription closed under its stream, which then ends
        raising it, :meth:`ended`; a publisher's feed closed by its owner)."""
        try:
            await self.current()
            return
        except GsomiaError as exc:
            refused = exc
        except Exception:  # the store unreachable: the next round tries again, a message's check too
            _log.warning("an open stream's or feed's check could not be made", exc_info=True)
            return
        if self._close is not None:
            try:  # one connection's failing close (its peer gone meanwhile) ends no other's round
                await self._close(refused)
            except Exception:
                _log.warning("an open stream or feed refused could not be closed", exc_info=True)

    def _renewed(self, edge: bool) -> tuple[Person, Any, float, tuple[int | None, ...]]:
        """(In a worker thread.) The person's record as the store holds it, the subclass's decision
        on it (:meth:`_decide`), the credential's expiry and the counters they were read under;
        raises the refusal (audited) if the person may no longer go on: the subclass's decision
        made again, the credential checked."""
        kernel = self._service.kernel
        # the counters are read before the rows: the rows are at least as new
        seen = tuple(kernel.watch.generation(name) for name in self._COUNTERS)
        held = person = self._person
        if seen[0] != self._seen[0]:
            try:
                person = replace(kernel.person(held.id), purpose=held.purpose)  # the purpose is the request's
            except NotFoundError:
                person = replace(held, active=False)  # no longer on file: refused as a disabled account is
        decided = self._decide(person, held, seen, edge)
        expires = self._expires
        if self._credential is not None and (seen[1] != self._seen[1] or edge):
            try:  # after the person's own check: a disabled account's tokens are revoked with it
                expires = self._credential().timestamp()
            except AuthenticationError as exc:  # revoked (by any process) or expired meanwhile
                raise kernel.refuse(f"stream.{self._channel}", held.id, None, exc) from None
        return person, decided, expires, seen


class _Publishing(_Standing):
    """A publisher's open feed (``/stream/tracks/publish``): before each message is published, and
    while it sends none, the person must still be one who may publish
    (:meth:`StreamService.require_publisher`: active, a release officer) and the credential they
    opened it with still valid (not revoked by any process, not expired). A refusal ends the feed,
    audited once; the message is not published."""

    def _decide(self, person: Person, held: Person, seen: tuple[int | None, ...], edge: bool) -> None:
        if person != held:  # as it was when the feed opened (checked then), or since the last check
            self._service.require_publisher(person)  # refused: audited (authz.stream.publish)


class _Reading(_Standing):
    """One consumer's read decisions over the bus's messages: each label decided once, again when a
    visit of theirs begins or ends (:class:`ReadGate`) or when their record or visits change (any
    process's write: the store's ``people`` and ``visits`` counters, :meth:`current`), a refusal
    audited once a label and visit window (bounded: a label's refusal is not recorded again for each
    of its tracks). The stream itself ends, its refusal audited once, when the person may no longer
    follow it at all: disabled, no visit in force that lets them read it (revoked, shortened, over),
    or the credential they opened it with revoked (the ``tokens`` counter) or expired."""

    _COUNTERS = (PEOPLE, TOKENS, VISITS)

    def __init__(
        self,
        service: StreamService,
        person: Person,
        channel: str,
        credential: Callable[[], datetime] | None = None,
        subscription: Any = None,
    ) -> None:
        async def close(_refused: GsomiaError) -> None:  # the stream then ends raising it (ended)
            await subscription.close()

        super().__init__(service, person, channel, credential, None if subscription is None else close)
        self.dropped = 0  # of the subscription's dropped tracks, those counted and audited already
        self._readable: dict[str, bool] = {}
        self._gate = service.kernel.reader(person)  # the node's read decision, visit window included (Art. 8)
        self._generation = self._gate.generation
        self._edge = False  # a visit's start or end passed since the stream's own decision was made

    def _moved(self) -> bool:
        return self._edge or self._gate.current() != self._generation

    def _decide(
        self, person: Person, held: Person, seen: tuple[int | None, ...], edge: bool
    ) -> ReadGate | None:
        """A new read decision on ``person`` if the record or the visits changed (else ``None``)."""
        if person == held and seen[2] == self._seen[2] and not edge:
            return None
        # the subscription's own decision, made again on the record and visits now (a new one
        # would be refused): disabled, or no visit in force that lets a visitor read the stream
        kernel = self._service.kernel
        decision = kernel.decide_read(person, self._service.stream_label())
        if not decision.allowed:
            raise kernel.refuse(f"stream.{self._channel}", person.id, None, AccessDenied(decision))
        return kernel.reader(person)

    def _renew(self, person: Person, decided: Any) -> None:
        self._edge = False
        if decided is not None:
            self._person = person
            self._gate = decided
            self._generation = decided.generation
            self._readable.clear()

    async def admit(self, raw: bytes) -> bytes | None:
        """The track ``raw`` carries if this person may read it now, else ``None`` (withheld)."""
        service = self._service
        message = service._decode(raw)
        key = message.lk
        if self._gate.current() != self._generation:  # a visit began or ended: decide every label again
            self._readable.clear()
            self._generation = self._gate.generation
            self._edge = True  # and the stream's own decision, at the next message's check (current)
            self._next_check = 0.0
        allowed = self._readable.get(key)
        if allowed is None:
            data = message.label if message.label is not None else orjson.loads(raw)["label"]
            label = service.kernel.items.parse_label(data)
            decision = self._gate.decide(label)
            allowed = self._readable[key] = decision.allowed
            if not allowed:
                failed = [c._asdict() for c in decision.failed()]
                await service._audit(
                    service._audit_row("stream.read", self._person.id, None, "refused", checks=failed)
                )
        return message.track if allowed else None


async def _put_unless_ended(queue: asyncio.Queue[Any], item: Any, reader: asyncio.Task[None]) -> None:
    """Put ``item`` on ``queue`` (bounded), waiting for room while its one ``reader`` goes on; if the
    reader ends first (a root's record failed to commit), raise its failure: nothing waits forever."""
    if not queue.full():
        queue.put_nowait(item)
        return
    put = asyncio.ensure_future(queue.put(item))
    try:
        await asyncio.wait((put, reader), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not put.done():
            put.cancel()
    if put.done() and not put.cancelled():
        return
    await reader  # its failure ends the link
    raise LinkError("internal", "a link's confirmations ended before its taking")


def _posix(at: datetime | None) -> float:
    """An instant as a POSIX timestamp, ``None`` (no end) as never."""
    return _FOREVER if at is None else at.timestamp()


def _decided_under(watch: ChangeWatch) -> tuple[int, int, int, int, int]:
    """The generations a track's decision is made under: the standing consents, the equivalence
    changes and the assurances on file (with the keys they verify under). A decision kept (a plan,
    a received one, a queued track's) is made again when one moves."""
    return (watch.generation(CONSENTS), watch.generation(EQUIVALENCES), *_assured_under(watch))


def _assured_under(watch: ChangeWatch) -> tuple[int, int, int]:
    """The generations the assurances on file are read under (``Exchange.assurances_on_file``: the
    stored assurances, counted only where their signer's key verifies): a plan or decision made on
    them is made again when one moves."""
    return (watch.generation(ASSURANCES), watch.generation(PEERS), watch.generation(KEYS))


def _log_unread(read: asyncio.Future[None]) -> None:
    """A read ahead of the counters that failed is logged; the next use on the loop reads them."""
    if not read.cancelled() and (exc := read.exception()) is not None:
        _log.warning("reading the store's generation counters ahead failed: %s", exc)


async def _within(receive: Any, deadline: Deadline, what: str, code: str = "handshake-timeout") -> bytes:
    """The link's next message, or ``LinkError`` (``code``) once ``deadline`` has passed. It leaves
    out the time this process's event loop was held up (``Stalls``, at most its allowance): a timer
    due during such a stall fires when the loop runs again, before the messages that reached the
    socket meanwhile are read, so the deadline is measured again then (the stall counted by then)
    and, not yet passed, waited out (a cancelled receive loses no message). Awaited in the caller's
    task (no task of its own, as ``wait_for`` makes): a message already received is read at once,
    with no turn of the event loop in between."""
    while True:
        try:
            async with asyncio.timeout(max(deadline.left(), 0.0)):
                data: bytes = await receive()
        except TimeoutError as exc:
            if deadline.left() <= 0:
                raise LinkError(code, f"{what} within {deadline.seconds:g} s") from exc
            continue
        return data


def _text(body: bytes, seq: int, peer: str) -> str:
    """A frame body that must be text (a compact JWS); ``LinkError`` if it is not UTF-8."""
    try:
        return body.decode()
    except UnicodeDecodeError as exc:
        raise LinkError("malformed", f"frame {seq} from {peer} is not text") from exc


def parse_feed_message(text: str | bytes) -> list[Any]:
    """The updates in one message of the publisher's feed: a JSON object, or an array of them.

    Only the JSON is read here; each update is checked by :meth:`StreamService.publish`.
    Raises :class:`~gsomia.errors.InvalidInputError` for what is not JSON, names a key twice in an
    object (:func:`_refuse_keys_twice`) or is too long a batch.
    """
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"a feed message must be a JSON object or array of them: {exc}") from exc
    _refuse_keys_twice(text.encode() if isinstance(text, str) else text, data)
    if not isinstance(data, list):
        return [data]
    if len(data) > FEED_BATCH:
        raise InvalidInputError(f"a feed message holds at most {FEED_BATCH} updates, not {len(data)}")
    return data


def _refuse_keys_twice(text: bytes, data: Any) -> None:
    """``InvalidInputError`` if the JSON text ``text`` (``data`` its decoding) names a key twice in
    an object, at any depth: readers differ on which of the two they take, and an update is
    published only as it means one thing to every reader."""
    try:
        keys_once(text, strings_read(data))
    except ValueError as exc:
        raise InvalidInputError(f"a track update names a key twice: {exc}") from exc


def _not_a_track(seq: int, sender: str) -> LinkError:
    """Authenticated, yet not a track this node can read: the peer is broken."""
    return LinkError("malformed", f"frame {seq} from {sender} is not a track this node accepts")


def _track_key(originator: str, message: _Received) -> str:
    """A received update's identity, hashed: the originator that signed it, its recipient, the track
    and the update's instant, as the instant it is (microseconds since the epoch), not as spelt:
    ``Z`` or ``+00:00``, another offset, more or fewer fraction digits are the same update."""
    parts = [originator, message.recipient, message.track_id, message.at_us]
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def _consent_key(jws: str) -> str:
    """What a link remembers of an authorisation it carried: the same whichever process asked."""
    return hashlib.sha256(jws.encode()).hexdigest()


def _precedes(consent: Consent, route: Route) -> bool:
    """Whether ``consent`` must reach the hub before a track on ``route`` (through that hub)."""
    return route.via is not None and consent.recipient == route.recipient and consent.hub in (None, route.via)


def _track_bytes(update: TrackUpdate) -> bytes:
    """``track_update_to_json(update)`` encoded, the same bytes: orjson writes an instant at UTC as
    ``isoformat`` does, so when every instant of the update is at UTC (``fromisoformat`` gives the
    one ``UTC`` object for any zero offset) they are handed to it whole, one ``isoformat`` call
    fewer per instant (8 for a track of 5 samples, a quarter of the publisher's parse and encoding);
    an update with an instant at another offset goes through ``isoformat`` (orjson would drop an
    offset's seconds)."""
    impact = update.impact
    if (
        update.update_ts.tzinfo is not UTC
        or update.launch.at.tzinfo is not UTC
        or (impact is not None and impact.at.tzinfo is not UTC)
        or any(point[0].tzinfo is not UTC for point in update.points)
    ):
        return orjson.dumps(track_update_to_json(update))
    launch = update.launch
    return orjson.dumps(
        {
            "track_id": update.track_id,
            "originator": update.originator,
            "update_ts": update.update_ts,
            "launch": {"lat": launch.lat, "lon": launch.lon, "time": launch.at},
            "impact": None if impact is None else {"lat": impact.lat, "lon": impact.lon, "time": impact.at},
            "points": [
                {"t": at, "lat": lat, "lon": lon, "alt_m": alt_m, "speed_mps": speed_mps}
                for at, lat, lon, alt_m, speed_mps in update.points
            ],
            "missile_class": update.missile_class,
            "quality": update.quality,
            "final": update.final,
        }
    )


def _dumps(data: dict[str, Any]) -> bytes:
    """Compact JSON for a frame: the Merkle leaf hashes these exact bytes, so no canonical form is needed."""
    return orjson.dumps(data)
