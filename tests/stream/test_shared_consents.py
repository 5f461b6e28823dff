"""A standing authorisation recorded through one process of a node is planned with by every other
process of it within the watch interval: the store's consents generation moves with it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.stream.test_stream_nodes import what_if_dir

from gsomia._datafiles import load_catalogue
from gsomia.core.catalogue import Catalogue
from gsomia.demo import network
from gsomia.errors import InvalidInputError
from gsomia.kernel import DEFAULT_INTERVAL
from gsomia.node import Node, init_node_dir, load_config
from gsomia.stream import StreamService, launches, replay
from gsomia.stream._service import _decided_under
from gsomia.testing import FakeClock, make_node


def _routes(stream: StreamService, at: datetime) -> dict[str, str | None]:
    update = replay(launches(2019)[0], originator="KOR", every_s=30)[0]
    plan = asyncio.run(stream._plan(update, stream._label(update), at, _decided_under(stream.kernel.watch)))
    return {r.recipient: (r.name if r.allowed else None) for r in plan.routes}


def test_an_authorisation_given_at_one_process_reroutes_the_others_tracks(tmp_path: Path) -> None:
    """Without GSOMIA, Korea reaches Japan only through the USA hub once it authorises it: the
    authorisation is given through process A; process B, which planned that track before, plans
    again and sends it to Japan through the hub."""
    catalogue = load_catalogue([what_if_dir(tmp_path)])
    clock = FakeClock(datetime(2026, 1, 5, tzinfo=UTC))
    init_node_dir(tmp_path / "kor", "KOR")
    first = Node(load_config(tmp_path / "kor"), catalogue=catalogue, clock=clock)
    second = Node(load_config(tmp_path / "kor"), catalogue=catalogue, clock=clock)
    partners = {p: make_node(tmp_path / p.lower(), p, clock=clock) for p in ("USA", "JPN")}
    try:  # Art. 7(5): the recipients' assurances on file at KOR, as the demo network's
        for party, partner in partners.items():
            shared = [a.id for a in catalogue.agreements_of("KOR") if party in a.parties]
            first.exchange.register_peer(None, partner.exchange.identity(), shared)
        network.assure({"KOR": first, **partners})
    finally:
        for partner in partners.values():
            partner.close()
    try:
        at_first, at_second = StreamService(first), StreamService(second)
        assert _routes(at_second, clock.now) == {"JPN": None, "USA": "direct"}
        at_first.authorise_relay(None, "JPN", "USA")
        assert _routes(at_first, clock.now)["JPN"] == "via USA"  # the process that recorded it
        time.sleep(DEFAULT_INTERVAL + 0.05)
        assert _routes(at_second, clock.now) == {"JPN": "via USA", "USA": "direct"}  # and the other
    finally:
        first.close()
        second.close()


def test_an_authorisation_without_a_hub_names_the_one_hub_of_the_nodes_agreements(tmp_path: Path) -> None:
    """The hub is data (TISA names the USA), never a constant: a node whose agreements name no hub
    is asked to name one, and gets no authorisation for a hub it did not name."""
    shipped = load_catalogue()
    no_hub = Catalogue.of(shipped.parties.values(), [a for a in shipped.agreements.values() if a.hub is None])
    clock = FakeClock(datetime(2026, 1, 5, tzinfo=UTC))
    for name, catalogue in (("tisa", shipped), ("no-hub", no_hub)):
        init_node_dir(tmp_path / name, "KOR")
        node = Node(load_config(tmp_path / name), catalogue=catalogue, clock=clock)
        try:
            stream = StreamService(node)
            if name == "tisa":
                assert stream.authorise_relay(None, "JPN").hub == "USA"
            else:
                with pytest.raises(InvalidInputError, match="hub: name the hub"):
                    stream.authorise_relay(None, "JPN")
                assert node.exchange.consent_rows("KOR", "") == []  # nothing recorded
        finally:
            node.close()
