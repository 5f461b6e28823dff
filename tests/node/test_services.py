"""The node builds its parts and wires them; the items, the people, the metrics and the TAXII
statuses are services of their own over the kernel (issue 16), each deciding who may use it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from tests.node_fixtures import add

from gsomia.core.access import Person
from gsomia.errors import AccessDenied, NotFoundError
from gsomia.node import ItemService, Metrics, Node, People, Statuses
from gsomia.store import Backlog, StatusRow
from gsomia.testing import make_node

# What stays on Node: opening and closing it, what a partner asks of it (PeerService), the
# background runtime and the stream links' leases it builds.
NODE_METHODS = {
    "close",
    "consistency_proof",
    "inbox",
    "inclusion_proof",
    "link_lease",
    "open",
    "runtime",
    "schema_revision",
}


def test_the_node_only_builds_and_wires(jpn_node: Node) -> None:
    methods = {name for name, _ in inspect.getmembers(Node, inspect.isfunction) if not name.startswith("_")}
    methods |= {name for name, v in vars(Node).items() if isinstance(v, classmethod)}
    assert methods == NODE_METHODS, "item or person logic belongs in a service, not on Node"
    assert isinstance(jpn_node.items, ItemService)
    assert isinstance(jpn_node.people, People)
    assert isinstance(jpn_node.metrics, Metrics)
    assert isinstance(jpn_node.statuses, Statuses)
    # every service holds the node's one kernel, never the node
    for service in (jpn_node.items, jpn_node.people, jpn_node.metrics, jpn_node.credentials):
        assert not any(isinstance(v, Node) for v in vars(service).values())


def test_metrics_are_read_by_administrators_only(jpn_node: Node, people: dict[str, Person]) -> None:
    jpn_node.metrics.require_reader(people["admin"])
    jpn_node.metrics.require_reader(None)  # the node's operator
    with pytest.raises(AccessDenied):
        jpn_node.metrics.require_reader(people["tanaka"])
    refused = [r.actor for r in jpn_node.store.audit(kind="authz.metrics.read") if r.outcome == "refused"]
    assert refused == ["tanaka"]


@pytest.mark.usefixtures("people")  # people added: audit records no runtime integrated yet
def test_the_gauges_name_every_peer_and_what_waits(jpn_node: Node, tmp_path: Path) -> None:
    assert jpn_node.metrics.outbox() == {}  # no peer yet, nothing waiting
    partner = make_node(tmp_path / "kor", "KOR")
    try:
        shared = [a.id for a in jpn_node.catalogue.agreements_of("JPN") if "KOR" in a.parties]
        jpn_node.exchange.register_peer(None, partner.exchange.identity(), shared)
    finally:
        partner.close()
    assert jpn_node.metrics.outbox() == {"KOR": Backlog(0, None)}  # a peer with nothing waiting: 0
    waiting = jpn_node.metrics.unintegrated()  # the people added: records no runtime integrated yet
    assert waiting.count > 0
    assert waiting.oldest_us is not None
    assert jpn_node.metrics.partner_heads() == {}
    leases = jpn_node.metrics.leases()
    assert leases.leases == ()
    assert leases.now_us > 0


def test_a_status_is_shown_to_its_poster_only(jpn_node: Node, people: dict[str, Person]) -> None:
    poster, other = people["tanaka"], people["sato"]
    row = StatusRow("s-1", poster.id, "col", 1, (("indicator--1", "v1"),), ())
    jpn_node.statuses.keep(row)
    assert jpn_node.statuses.status(poster, "s-1") == row
    with pytest.raises(NotFoundError, match="of yours"):
        jpn_node.statuses.status(other, "s-1")
    with pytest.raises(NotFoundError):
        jpn_node.statuses.status(poster, "s-unknown")


def test_disabling_a_person_through_people_revokes_their_tokens(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    add(jpn_node, "kato", "JPN", "秘", ["dprk-missile"], ["analyst"])
    token_id, _, _ = jpn_node.credentials.issue(None, "kato")
    with pytest.raises(AccessDenied):  # an analyst disables no one
        jpn_node.people.set_active(people["tanaka"], "kato", False)
    person, revoked = jpn_node.people.set_active(people["admin"], "kato", False)
    assert (person.active, revoked) == (False, [token_id])
    assert jpn_node.people.set_active(people["admin"], "kato", True) == (jpn_node.people.person("kato"), [])
