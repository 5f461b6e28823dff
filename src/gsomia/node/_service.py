"""The node: builds one party's parts (catalogue, store, keys, clock, the kernel every service
shares, the exchange, the audit log, the duties, the items, the people and their credentials, the
feed, the metrics) and wires them. It holds no item or person logic of its own.

The API, the CLI, the dashboard and the TAXII server are thin shells over the services a
:class:`Node` exposes (``node.items``, ``node.people``, ``node.credentials``, ``node.exchange``,
``node.duties``, ``node.audit``, ...). What stays on the node is what a partner asks of it
(:class:`gsomia.exchange.PeerService`: ``inbox``, ``consistency_proof``, ``inclusion_proof``), the
background runtime and the stream links' leases it builds, and its catalogue and release engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gsomia._datafiles import load_catalogue
from gsomia.audit import GOSSIP_KIND, HEAD_KIND, AuditLog, TreeHeads
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import epoch_us
from gsomia.core.policy import ReleaseEngine
from gsomia.crypto.atrest import PayloadCipher
from gsomia.crypto.keys import KeyRing
from gsomia.duties import DUTY_KIND, Duties
from gsomia.errors import ConfigError, GsomiaError, InvalidInputError
from gsomia.exchange import Exchange, PeerTransport
from gsomia.kernel import (
    ChangeWatch,
    Clock,
    Item,
    NodeContext,
    StoreKeyRing,
    check_hold_as,
    system_clock,
)
from gsomia.node._config import KEYRING_FILE, NodeConfig, load_config
from gsomia.node._credentials import Credentials
from gsomia.node._feed import Feed
from gsomia.node._items import ItemService
from gsomia.node._lease import Lease, process_holder
from gsomia.node._metrics import Metrics
from gsomia.node._people import People
from gsomia.node._runtime import IDLE_PAUSE_S, NodeRuntime
from gsomia.node._statuses import Statuses
from gsomia.store import LeaseStore, SharedState, Store

__all__ = ["Clock", "Item", "Node", "system_clock"]


class Node:
    """One party's node: it builds the parts and wires them; the services hold the kernel, not the node."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        catalogue: Catalogue | None = None,
        store: Store | None = None,
        clock: Clock = system_clock,
        migrate: bool = True,
    ) -> None:
        self.config = config
        self._link_holder: str | None = None  # this process's name on its stream links' leases
        catalogue = catalogue if catalogue is not None else load_catalogue(config.data_dirs)
        if config.party not in catalogue.parties:
            raise ConfigError(f"node party {config.party} is not in the catalogue")
        self.party = config.party
        try:  # before anything is opened: a hold_as default the agreements do not offer
            check_hold_as(catalogue, config.party, config.hold_as)
        except GsomiaError as exc:
            raise ConfigError(f"{config.directory / 'node.toml'}: node.hold_as: {exc}") from None
        self.store = store if store is not None else Store(config.database_url)
        if migrate:
            self.store.migrate()
            self.store.claim(config.party, config.identity(), epoch_us(clock()))
        self.cipher = PayloadCipher(config.key())
        self.clock = clock
        # the keys and the peers are the store's: every process of the node sees a change within
        # ~250 ms, at once where a serving process listens for it (PostgreSQL)
        watch = ChangeWatch(SharedState(self.store))
        self.ring: KeyRing = StoreKeyRing.open(
            self.store,
            self.cipher,
            watch,
            party=self.party,
            at=clock(),
            legacy=config.directory / KEYRING_FILE,
        )
        self.kernel = NodeContext(
            party=self.party,
            catalogue=catalogue,
            store=self.store,
            ring=self.ring,
            cipher=self.cipher,
            engine=ReleaseEngine(catalogue),
            clock=clock,
            endpoint=config.endpoint,
            max_payload_bytes=config.max_payload_bytes,
            max_clock_skew=config.max_clock_skew,
            watch=watch,
            public_rate=config.public_rate_limit,
            rate_exempt=config.rate_limit_exempt,
            tls=config.tls,
            hold_as=config.hold_as,
        )
        self.credentials = Credentials(self.kernel)
        self.people = People(self.kernel)
        self.items = ItemService(self.kernel)
        self.exchange = Exchange(self.kernel, ttl=config.envelope_lifetime, skew=config.max_clock_skew)
        self.audit = AuditLog(self.kernel)
        self.heads = TreeHeads(self.audit, self.exchange)
        self.duties = Duties(self.kernel, self.exchange)
        self.feed = Feed(self.kernel, self.audit)
        self.metrics = Metrics(self.kernel, self.exchange)
        self.statuses = Statuses(self.kernel)
        # the inbox hands these kinds to the services that own them
        self.exchange.register(DUTY_KIND, self.duties.receive)
        self.exchange.register(HEAD_KIND, self.heads.receive)
        self.exchange.register(GOSSIP_KIND, self.heads.receive_gossip)
        # a label change that reached this node before its item applies when the item arrives
        self.exchange.on_arrival(self.duties.arriving)

    @property
    def catalogue(self) -> Catalogue:
        """The kernel's catalogue: the data files with the equivalence changes on file."""
        return self.kernel.catalogue

    @property
    def engine(self) -> ReleaseEngine:
        """The kernel's release engine, over :attr:`catalogue`."""
        return self.kernel.engine

    @classmethod
    def open(cls, directory: Path, **kwargs: Any) -> Node:
        """The node configured in ``directory`` (``node.toml``)."""
        return cls(load_config(directory), **kwargs)

    def schema_revision(self) -> str | None:
        """The database schema's migration revision (migrations run when the node opens; None: none yet)."""
        return self.store.revision()

    def close(self) -> None:
        self.kernel.watch.close()
        self.store.close()

    # --- what a partner asks this node (PeerService: the routes and the in-memory transport) ---

    def inbox(self, envelopes: Sequence[str], source: str | None = None) -> list[dict[str, Any]]:
        """Envelopes from partner nodes: each opened, decided, stored once and receipted. ``source``:
        the sender's network address (envelopes that do not open are audited in bounded space).

        The envelopes are the caller's credentials: a delivery costs its source nothing of its
        budget (:class:`gsomia.kernel.Admission`), each envelope that does not open one unit, and
        once those have spent it the source's deliveries are refused (429) before any is opened."""
        wait = self.kernel.admission.check(source)
        if wait is not None:
            raise self.kernel.rate_limited(source, "inbox", wait)
        return self.exchange.receive(envelopes, source)

    def consistency_proof(self, first: int, second: int) -> dict[str, Any]:
        """The proof that this node's log of size ``second`` extends the one of size ``first``."""
        if first > second:
            raise InvalidInputError("first must not exceed second")
        return {"first": first, "second": second, "proof": self.audit.consistency(first, second)}

    def inclusion_proof(self, entry: str) -> dict[str, Any]:
        """An entry a partner may see (its own envelope's record) with its inclusion proof."""
        return self.audit.inclusion(entry, public=True)

    def runtime(
        self,
        transport: PeerTransport | None = None,
        *,
        interval: float | None = None,
        head_every: float | None = None,
        deliver: bool = True,
        idle_pause: float = IDLE_PAUSE_S,
    ) -> NodeRuntime:
        """The background loops over ``transport`` (HTTP by default), not yet started; each kind of
        work under its lease (``lease_seconds`` in ``node.toml``); without ``deliver``, only the
        audit log's writer (integrate, sign). Their pace is ``node.toml``'s
        (``sender_interval_seconds``, ``head_interval_seconds``) unless the caller sets it; a loop
        whose rounds find nothing pauses longer, up to ``idle_pause`` seconds."""
        return NodeRuntime(
            self.exchange,
            self.audit,
            self.heads,
            transport,
            interval=self.config.sender_interval if interval is None else interval,
            idle_pause=idle_pause,
            head_every=self.config.head_interval if head_every is None else head_every,
            deliver=deliver,
            lease_ttl=self.config.lease_seconds,
            duties=self.duties,
        )

    def link_lease(self, party: str) -> Lease:
        """This process's hold on the lease of the node's outbound stream link to ``party``
        (``link:PARTY``; ``lease_seconds`` in ``node.toml``): one process of the node runs that link."""
        if self._link_holder is None:
            self._link_holder = process_holder()
        return Lease(
            LeaseStore(self.kernel.store), f"link:{party}", self._link_holder, ttl=self.config.lease_seconds
        )
