"""Who may read the node's registers is decided in the services, the same for every shell: the API,
the CLI (the operator, ``None``) and the dashboard ask the one method; a refusal is audited."""

from __future__ import annotations

import pytest
from tests.node_fixtures import add

from gsomia.core.access import Person
from gsomia.errors import AccessDenied
from gsomia.node import Node


def refusals(node: Node, what: str) -> list[str | None]:
    return [r.actor for r in node.store.audit(kind=f"authz.{what}") if r.outcome == "refused"]


@pytest.fixture
def officers(jpn_node: Node, people: dict[str, Person]) -> dict[str, Person]:
    return {
        **people,
        "release": add(jpn_node, "release", "JPN", "極秘", ["dprk-missile"], ["release_officer"]),
        "security": add(jpn_node, "security", "JPN", "極秘", ["dprk-missile"], ["security_officer"]),
    }


def test_an_analyst_reads_no_register(jpn_node: Node, officers: dict[str, Person]) -> None:
    analyst = officers["tanaka"]
    reads = {
        "outbox.read": lambda: jpn_node.exchange.outbox(analyst),
        "consent.read": lambda: jpn_node.exchange.consent_requests(analyst),
        "person.list": lambda: jpn_node.people.list_people(analyst),
        "person.read": lambda: jpn_node.people.read_person(analyst, "sato"),
        "audit.read": lambda: jpn_node.audit.records(analyst),
        "flows.read": lambda: jpn_node.audit.flows(analyst),
    }
    for what, read in reads.items():
        with pytest.raises(AccessDenied, match="role"):
            read()
        assert refusals(jpn_node, what) == ["tanaka"], what


def test_each_register_has_its_readers(jpn_node: Node, officers: dict[str, Person]) -> None:
    release, security, admin = officers["release"], officers["security"], officers["admin"]
    for reader in (release, security, admin, None):
        assert jpn_node.exchange.outbox(reader) == []
    for reader in (release, security, None):
        assert jpn_node.exchange.consent_requests(reader) == []
    with pytest.raises(AccessDenied):
        jpn_node.exchange.consent_requests(admin)
    for reader in (security, admin, None):
        assert "tanaka" in {p.id for p in jpn_node.people.list_people(reader)}
        assert jpn_node.people.read_person(reader, "sato").id == "sato"
        assert [r.kind for r in jpn_node.audit.records(reader, kind="person.add")][:1] == ["person.add"]
        assert jpn_node.audit.flows(reader) == []
    with pytest.raises(AccessDenied):
        jpn_node.audit.records(release)
    with pytest.raises(AccessDenied):
        jpn_node.people.list_people(release)


def test_a_person_reads_their_own_record_and_no_one_elses(
    jpn_node: Node, officers: dict[str, Person]
) -> None:
    assert jpn_node.people.read_person(officers["sato"], "sato").id == "sato"
    with pytest.raises(AccessDenied):
        jpn_node.people.read_person(officers["sato"], "tanaka")


@pytest.mark.usefixtures("officers")
def test_a_disabled_officer_reads_nothing(jpn_node: Node) -> None:
    jpn_node.people.set_active(None, "security", False)
    disabled = jpn_node.people.person("security")
    with pytest.raises(AccessDenied):
        jpn_node.audit.records(disabled)
    with pytest.raises(AccessDenied):
        jpn_node.people.list_people(disabled)


@pytest.mark.usefixtures("officers")
def test_the_topics_a_form_offers_need_no_register(jpn_node: Node) -> None:
    assert {"dprk-missile", "prc-navy"} <= set(jpn_node.people.topics())
