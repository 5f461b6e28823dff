"""Korean Class II at Japan: the receiver records which of 極秘 and 特定秘密 it applies (Art. 4.2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.duties.test_duties_node import _received
from tests.node_fixtures import add, kor_label, refused_checks

from gsomia.core.access import Person
from gsomia.errors import AccessDenied, ConfigError, InvalidInputError, NotFoundError
from gsomia.node import Node
from gsomia.node._config import update_settings
from gsomia.testing import FakeClock, make_node

GSOMIA = "kor-jpn-gsomia-2016"
CHOICE = {GSOMIA: {"KOR 군사II급비밀": "特定秘密"}}


def _held_as(node: Node, item_id: str) -> str:
    alternative = node.kernel.items.item(node.kernel.items.row(item_id)).label.alternative_for("JPN")
    assert alternative is not None
    return alternative.classification


def test_an_officer_applies_tokutei_himitsu_to_a_korean_class_ii_item_and_readers_compare_to_it(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    """ROK–Japan GSOMIA Art. 4.2: Korean 군사II급비밀 is "極秘/特定秘密" in Japan. Japan's node holds it
    as 極秘 by default; a security officer applies 特定秘密 to the item (and its copy here), the label
    shows it, a reader cleared for 極秘 no longer reads it (特定秘密 ranks above 極秘, an assumption
    stated in the data), and the audit record says who changed it from what and why."""
    officer = add(jpn_node, "officer", "JPN", "特定秘密", ["dprk-missile"], ["security_officer"])
    cleared = add(jpn_node, "yamada", "JPN", "特定秘密", ["dprk-missile"], ["analyst"])
    _received(jpn_node, "k1")
    assert _held_as(jpn_node, "k1") == "極秘"
    jpn_node.items.read(people["tanaka"], "k1")  # cleared 極秘
    jpn_node.duties.derive(people["tanaka"], "copy", ["k1"], item_id="k1-copy")

    done = jpn_node.duties.hold_as(officer, "k1", "特定秘密", "designated under the SDS Act")
    assert (done["was"], done["classification"], done["copies"]) == ("極秘", "特定秘密", ["k1-copy"])
    assert _held_as(jpn_node, "k1") == _held_as(jpn_node, "k1-copy") == "特定秘密"
    for item_id in ("k1", "k1-copy"):
        with pytest.raises(NotFoundError):
            jpn_node.items.read(people["tanaka"], item_id)
        assert [c["rule"] for c in refused_checks(jpn_node, item_id)] == ["clearance"]
        _, payload = jpn_node.items.read(cleared, item_id)  # re-sealed under the new label: it opens
        assert json.loads(payload) == {"id": "k1"}
    record = json.loads(
        next(r for r in jpn_node.store.audit(kind="item.hold-as") if r.outcome == "allowed").detail
    )
    assert (record["was"], record["classification"], record["reason"]) == (
        "極秘",
        "特定秘密",
        "designated under the SDS Act",
    )


def test_hold_as_refuses_levels_not_offered_own_items_other_roles_and_the_under_cleared(
    jpn_node: Node, people: dict[str, Person], clock: FakeClock
) -> None:
    """Art. 4.2 offers Japan 極秘 or 特定秘密 for Korean Class II, nothing else; 特定秘密 exists from
    10 Dec 2014 (Act No. 108 of 2013). An analyst may not choose, an officer cleared only for 極秘 may
    not apply 特定秘密, and a reader who may not read the item learns nothing of it."""
    officer = add(jpn_node, "officer", "JPN", "特定秘密", ["dprk-missile"], ["security_officer"])
    low = add(jpn_node, "low", "JPN", "極秘", ["dprk-missile"], ["security_officer"])
    _received(jpn_node, "k1")
    for level in ("秘", "機密", "군사II급비밀"):
        with pytest.raises(InvalidInputError, match="極秘 or 特定秘密"):
            jpn_node.duties.hold_as(officer, "k1", level, "wrong level")
    with pytest.raises(InvalidInputError, match="already"):
        jpn_node.duties.hold_as(officer, "k1", "極秘", "no change")
    with pytest.raises(AccessDenied, match="role"):
        jpn_node.duties.hold_as(people["tanaka"], "k1", "特定秘密", "not an officer")
    with pytest.raises(AccessDenied, match="clearance"):
        jpn_node.duties.hold_as(low, "k1", "特定秘密", "above my clearance")
    navy = add(jpn_node, "navy", "JPN", "特定秘密", ["prc-navy"], ["security_officer"])
    with pytest.raises(NotFoundError):  # no need-to-know: the item is unknown to them
        jpn_node.duties.hold_as(navy, "k1", "特定秘密", "x")
    own = kor_label(originator="JPN", classification="極秘", releasable_to=["KOR"])
    jpn_node.items.ingest(officer, label=own, payload=b"{}", item_id="j1")
    with pytest.raises(InvalidInputError, match="own"):
        jpn_node.duties.hold_as(officer, "j1", "特定秘密", "our own item")
    assert _held_as(jpn_node, "k1") == "極秘"
    clock.now = datetime(2014, 6, 1, tzinfo=UTC)  # before the Specially Designated Secrets Act
    _received(jpn_node, "k-2014", created="2014-05-01T09:00:00+09:00")
    with pytest.raises(InvalidInputError, match="as 極秘 at this instant"):
        jpn_node.duties.hold_as(officer, "k-2014", "特定秘密", "did not exist yet")


def test_the_node_default_comes_from_node_toml_and_a_level_the_agreement_does_not_offer_is_refused(
    tmp_path: Path, store_url: str, clock: FakeClock
) -> None:
    """Art. 4.2: the receiving node records which level it applies. Its default per agreement is
    node.toml's hold_as; an item received before 特定秘密 existed (10 Dec 2014) is held as 極秘 all the
    same, and a default naming a level the agreement does not offer stops the node from opening."""
    node = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)
    node.close()
    config = update_settings(tmp_path / "jpn", hold_as=CHOICE)
    node = Node(config, clock=clock)
    try:
        _received(node, "k1")
        assert _held_as(node, "k1") == "特定秘密"
        _received(node, "k3", classification="군사III급비밀")
        assert _held_as(node, "k3") == "秘"  # no choice offered for Class III
        clock.now = datetime(2014, 6, 1, tzinfo=UTC)
        _received(node, "k-2014", created="2014-05-01T09:00:00+09:00")
        assert _held_as(node, "k-2014") == "極秘"
    finally:
        node.close()
    for wrong in ({GSOMIA: {"KOR 군사II급비밀": "秘"}}, {"no-such-agreement": {"KOR 군사II급비밀": "極秘"}}):
        bad = update_settings(tmp_path / "jpn", hold_as=wrong)
        with pytest.raises(ConfigError, match="hold_as"):
            Node(bad, clock=clock)
    with pytest.raises(ConfigError, match="originator"):
        update_settings(tmp_path / "jpn", hold_as={GSOMIA: {"군사II급비밀": "極秘"}})
