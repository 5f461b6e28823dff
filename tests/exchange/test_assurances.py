"""Assurance before provision (ROK–Japan GSOMIA Art. 7(5)) between real nodes: given, sent, revoked,
imported from a file, and forged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.exchange.test_exchange import Net, own_item

from gsomia.core.policy import Assurance
from gsomia.crypto.envelope import sign_origin
from gsomia.demo import network
from gsomia.errors import AccessDenied, AgreementError, InvalidInputError, NotFoundError, ReleaseRefused
from gsomia.exchange import MemoryTransport
from gsomia.exchange._assurances import assurance_content, revocation_content
from gsomia.testing import FakeClock

KST_2024 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)
GSOMIA = "kor-jpn-gsomia-2016"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
    members = network.build(tmp_path / "net", clock=clock)
    clock.now = KST_2024
    nodes = network.open_nodes(members, clock)
    yield Net(nodes, members, clock, MemoryTransport(nodes))
    for node in nodes.values():
        node.close()


def _own(net: Net, party: str, agreement: str) -> str:
    rows = net.nodes[party].exchange.assurance_store.all()
    return next(r.id for r in rows if (r.party, r.agreement) == (party, agreement) and r.revoked_us is None)


def _assurance_check(error: ReleaseRefused) -> str:
    return next(c.reason for c in error.decision.checks if c.rule == "assurance")


def test_a_revoked_assurance_stops_provision_at_the_sender_and_at_the_recipient(net: Net) -> None:
    """Art. 7(5): provision needs the recipient's assurance. JPN revokes its assurance under the
    ROK–Japan agreement; the revocation reaches KOR, which then refuses to release to JPN, and an
    item KOR queued before it arrives is refused by JPN's own node (its own assurance is gone)."""
    jpn, kor = net.nodes["JPN"], net.nodes["KOR"]
    own_item(net, "KOR", "k-queued")
    kor.exchange.release(net.officer("KOR"), "k-queued", "JPN")
    jpn.exchange.revoke_assurance(
        jpn.people.person("admin"), _own(net, "JPN", GSOMIA), "protection under review"
    )
    net.deliver()
    assert jpn.store.get_item("k-queued") is None
    refused = net.audit("JPN", "envelope.refused")
    assert any("no assurance of JPN" in r["reason"] for r in refused)
    at_kor = {a["id"]: a for a in kor.exchange.assurances_view(None)}
    assert at_kor[_revoked(net)]["revoked_at"] is not None
    own_item(net, "KOR", "k-new")
    with pytest.raises(ReleaseRefused) as caught:
        kor.exchange.release(net.officer("KOR"), "k-new", "JPN")
    assert "was revoked at" in _assurance_check(caught.value)
    # a new assurance, by message: releases pass again
    jpn.exchange.give_assurance(jpn.people.person("admin"), GSOMIA, "note of 1 March 2024")
    net.deliver()
    kor.exchange.release(net.officer("KOR"), "k-new", "JPN")
    net.deliver()
    assert jpn.store.get_item("k-new") is not None


def _revoked(net: Net) -> str:
    rows = net.nodes["JPN"].exchange.assurance_store.all()
    return next(r.id for r in rows if r.party == "JPN" and r.revoked_us is not None)


def test_an_assurance_imported_from_a_file_counts_like_one_sent_and_only_officers_give_one(
    net: Net, tmp_path: Path
) -> None:
    """Art. 7(5) across an air gap: JPN's node exports its signed assurance, KOR's imports it from
    the file; the message arriving later changes nothing. An analyst gives none, and a node revokes
    only its own party's."""
    jpn, kor = net.nodes["JPN"], net.nodes["KOR"]
    jpn.exchange.revoke_assurance(None, _own(net, "JPN", GSOMIA), "replaced")
    net.deliver()
    row = jpn.exchange.give_assurance(None, GSOMIA, "letter of 1 March 2024")
    document = jpn.exchange.assurance_document(None, row.id)
    (tmp_path / "a.json").write_text(json.dumps(document))
    kor.exchange.import_assurance(None, json.loads((tmp_path / "a.json").read_text()))
    own_item(net, "KOR", "k1")
    kor.exchange.release(net.officer("KOR"), "k1", "JPN")  # before the message came
    net.deliver()
    assert jpn.store.get_item("k1") is not None
    assert sum(1 for a in kor.exchange.assurances_view(None) if a["id"] == row.id) == 1
    with pytest.raises(AccessDenied, match="role"):
        jpn.exchange.give_assurance(jpn.people.person("analyst"), GSOMIA, "not mine to give")
    with pytest.raises(NotFoundError):
        jpn.exchange.revoke_assurance(None, _own(net, "KOR", GSOMIA), "not ours")
    with pytest.raises(AgreementError, match="not a party"):
        jpn.exchange.give_assurance(None, "usa-kor-gsomia-1987", "not our agreement")


def test_forged_passed_on_and_misdirected_assurances_are_refused(net: Net) -> None:
    """Art. 7(5): the assurance is the recipient party's own. One signed by another party in JPN's
    name, JPN's passed on by the USA, a revocation of JPN's signed by someone else, one for an
    agreement the link does not serve, and a node's own sent back to it are all refused."""
    jpn, kor, usa = net.nodes["JPN"], net.nodes["KOR"], net.nodes["USA"]
    now = net.clock.now
    forged = Assurance(GSOMIA, "JPN", now, "forged", id="f" * 32)
    in_jpn_name = sign_origin(usa.ring, assurance_content(forged), now)
    with pytest.raises(InvalidInputError, match="signed by USA, but speaks for JPN"):
        kor.exchange.import_assurance(None, {"assurance": in_jpn_name})
    genuine = jpn.exchange.assurance_document(None, _own(net, "JPN", GSOMIA))
    other_revocation = sign_origin(
        usa.ring, revocation_content(_own(net, "JPN", GSOMIA), "USA", now, "x"), now
    )
    with pytest.raises(InvalidInputError, match="not this assurance's"):
        kor.exchange.import_assurance(None, {**genuine, "revocation": other_revocation})
    with pytest.raises(AgreementError, match="not registered for kor-jpn-gsomia-2016"):
        usa.exchange.import_assurance(None, genuine)  # the USA is no party to it
    with pytest.raises(InvalidInputError, match="own assurance"):
        jpn.exchange.import_assurance(None, genuine)
    # JPN's assurance passed on by the USA as a message: refused by KOR's inbox
    peer = usa.exchange.peer("KOR")
    assert peer is not None
    entry = usa.exchange.queue(
        peer, {"kind": "assurance", "assurance": genuine["assurance"]}, "assurance", None, now
    )
    usa.exchange.enqueue([entry])
    net.deliver()
    assert any("a party gives its own" in r["reason"] for r in net.audit("KOR", "envelope.refused"))
    before = kor.exchange.assurances_on_file()
    assert all(a.reference != "forged" for a in before)
