"""A node's items, people and access rules, through the service (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy
from tests.node_fixtures import jpn_label, kor_label, refused_checks

from gsomia.core.access import Person
from gsomia.errors import (
    AccessDenied,
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    LabelError,
    NotFoundError,
    PayloadTooLargeError,
    StoreError,
    UnknownNameError,
)
from gsomia.node import NewIngest, Node
from gsomia.store import ItemFilter
from gsomia.testing import FakeClock

GSOMIA = "kor-jpn-gsomia-2016"


def receive(node: Node, person: Person, item_id: str = "kor-1", **label: object) -> None:
    """A KOR item as JPN holds it once received: entered by the operator, as the exchange would
    store it (a person may not enter another party's item: tests/security/test_fabricated_items.py)."""
    del person
    node.items.ingest(
        None,
        label=kor_label(**label),
        payload=b'{"track": 1}',
        item_id=item_id,
        received_from="KOR",
        agreement=GSOMIA,
    )


def audit_kinds(node: Node) -> list[tuple[str, str, str | None]]:
    return [(r.kind, r.outcome, r.subject) for r in node.store.audit()]


def test_received_item_gets_the_receivers_alternative_label(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    receive(jpn_node, people["tanaka"])
    item, payload = jpn_node.items.read(people["tanaka"], "kor-1")
    assert item.label.classification == "군사II급비밀"  # the originator's label stays
    alt = item.label.alternative_for("JPN")
    assert alt is not None
    assert (alt.classification, alt.agreement) == ("極秘", GSOMIA)
    assert json.loads(payload) == {"track": 1}
    inventory = jpn_node.store.inventory("kor-1")
    assert [(r.kind, r.party) for r in inventory] == [("received", "KOR")]


def test_japanese_reader_cleared_secret_reads_korean_class_two(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    """Cleared 極秘 (SECRET) reads KOR 군사II급비밀; cleared only 秘 is refused as if there were no
    such item, with the reason in the audit records."""
    receive(jpn_node, people["tanaka"])
    jpn_node.items.read(people["tanaka"], "kor-1")
    with pytest.raises(NotFoundError) as refused:
        jpn_node.items.read(people["sato"], "kor-1")
    with pytest.raises(NotFoundError) as unknown:
        jpn_node.items.read(people["sato"], "kor-2")
    assert str(refused.value) == str(unknown.value).replace("kor-2", "kor-1")
    failed = refused_checks(jpn_node, "kor-1")
    assert [c["rule"] for c in failed] == ["clearance"]
    assert "below the item's 極秘" in failed[0]["reason"]
    assert ("item.read", "allowed", "kor-1") in audit_kinds(jpn_node)
    assert ("item.read", "refused", "kor-1") in audit_kinds(jpn_node)


def test_rank_or_role_alone_gives_no_access(jpn_node: Node, people: dict[str, Person]) -> None:
    receive(jpn_node, people["tanaka"])
    with pytest.raises(NotFoundError):
        jpn_node.items.read(people["general"], "kor-1")  # highest clearance, but no role that handles items
    assert [c["rule"] for c in refused_checks(jpn_node, "kor-1")] == ["role"]
    with pytest.raises(NotFoundError):
        jpn_node.items.read(people["suzuki"], "kor-1")  # 特定秘密, but no need-to-know for missiles
    assert [c["rule"] for c in refused_checks(jpn_node, "kor-1")] == ["need_to_know"]


def test_nationality_must_be_releasable(jpn_node: Node, people: dict[str, Person]) -> None:
    receive(jpn_node, people["tanaka"])
    with pytest.raises(NotFoundError):
        jpn_node.items.read(people["smith"], "kor-1")
    rules = {c["rule"] for c in refused_checks(jpn_node, "kor-1")}
    assert "nationality" in rules
    assert "clearance" in rules  # no USA equivalent on the item either


def test_ingest_above_the_persons_clearance_is_refused_and_nothing_stored(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    with pytest.raises(AccessDenied):
        jpn_node.items.ingest(people["sato"], label=jpn_label(), payload=b"{}", item_id="too-high")
    assert jpn_node.store.get_item("too-high") is None
    assert ("item.ingest", "refused", "too-high") in audit_kinds(jpn_node)


@pytest.mark.parametrize(
    ("label", "error", "message"),
    [
        (kor_label(classification="kimitsu"), LabelError, "KOR has no classification"),
        (kor_label(classification="군사I급비밀"), LabelError, "no JPN equivalent"),
        (kor_label(created="yesterday"), LabelError, "label.created"),
        (kor_label(colour="red"), LabelError, "unknown field"),
        (kor_label(purpose=""), LabelError, "purpose"),
        ({"originator": "KOR"}, LabelError, "required"),
        ("not a label", LabelError, "expected an object"),
    ],
)
def test_bad_labels_are_refused_clearly_and_leave_the_store_as_it_was(
    jpn_node: Node, people: dict[str, Person], label: object, error: type[Exception], message: str
) -> None:
    receive(jpn_node, people["tanaka"], "kept")
    before = jpn_node.store.count_items()
    with pytest.raises(error, match=message):
        jpn_node.items.ingest(
            None, label=label, payload=b"{}", item_id="bad", received_from="KOR", agreement=GSOMIA
        )
    assert jpn_node.store.count_items() == before
    assert jpn_node.store.get_item("kept") is not None
    assert audit_kinds(jpn_node)[-1] == ("item.ingest", "refused", "bad")


def test_received_item_needs_its_origin_and_agreement(jpn_node: Node) -> None:
    with pytest.raises(LabelError, match="needs received_from"):
        jpn_node.items.ingest(None, label=kor_label(), payload=b"{}")
    with pytest.raises(LabelError, match="does not cover"):
        jpn_node.items.ingest(
            None,
            label=kor_label(),
            payload=b"{}",
            received_from="KOR",
            agreement="usa-jpn-gsomia-2007",
        )
    with pytest.raises(LabelError, match="alternative labels"):
        jpn_node.items.ingest(
            None,
            payload=b"{}",
            received_from="KOR",
            agreement=GSOMIA,
            label=kor_label(alternatives=[{"party": "JPN", "classification": "秘", "agreement": GSOMIA}]),
        )


def test_duplicate_ids_conflict_and_the_first_item_survives(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    jpn_node.items.ingest(people["tanaka"], label=jpn_label(), payload=b'"first"', item_id="x1")
    with pytest.raises(ConflictError):
        jpn_node.items.ingest(people["tanaka"], label=jpn_label(), payload=b'"second"', item_id="x1")
    assert jpn_node.items.read(people["tanaka"], "x1")[1] == b'"first"'


def test_oversize_payload_is_refused(jpn_node: Node, people: dict[str, Person]) -> None:
    big = b"x" * (jpn_node.config.max_payload_bytes + 1)
    with pytest.raises(PayloadTooLargeError, match="exceeds"):
        jpn_node.items.ingest(people["tanaka"], label=jpn_label(), payload=big, payload_type="bytes")
    assert jpn_node.store.count_items() == 0


def test_bad_item_id_is_refused(jpn_node: Node, people: dict[str, Person]) -> None:
    with pytest.raises(InvalidInputError, match="item id"):
        jpn_node.items.ingest(people["tanaka"], label=jpn_label(), payload=b"{}", item_id="../etc/passwd")


def test_payload_is_encrypted_at_rest_and_bound_to_its_label(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    secret = b'{"launch": "Sinpo, 07:02 KST, 450 km"}'
    jpn_node.items.ingest(people["tanaka"], label=jpn_label(), payload=secret, item_id="enc")
    with jpn_node.store.engine.begin() as conn:
        stored = conn.execute(sqlalchemy.text("SELECT payload FROM items WHERE id = 'enc'")).scalar_one()
        assert b"Sinpo" not in bytes(stored)
        # an insider widens the releasability directly in the database
        label = conn.execute(sqlalchemy.text("SELECT label FROM items WHERE id = 'enc'")).scalar_one()
        widened = label.replace('"releasable_to":["KOR"]', '"releasable_to":["KOR","USA"]')
        assert widened != label
        conn.execute(sqlalchemy.text("UPDATE items SET label = :l WHERE id = 'enc'"), {"l": widened})
    with pytest.raises(StoreError, match="integrity"):
        jpn_node.items.read(people["tanaka"], "enc")
    assert audit_kinds(jpn_node)[-1] == ("item.read", "refused", "enc")


def test_missing_item_is_not_found_and_audited(jpn_node: Node, people: dict[str, Person]) -> None:
    with pytest.raises(NotFoundError):
        jpn_node.items.read(people["tanaka"], "ghost")
    assert audit_kinds(jpn_node)[-1] == ("item.read", "refused", "ghost")


def test_listing_withholds_what_the_reader_may_not_see(jpn_node: Node, people: dict[str, Person]) -> None:
    for n in range(7):
        receive(jpn_node, people["tanaka"], f"ii-{n}")  # 군사II급비밀 -> 極秘
    for n in range(5):
        receive(jpn_node, people["sato"], f"iii-{n}", classification="군사III급비밀")  # -> 秘
    tanaka = jpn_node.items.list_items(people["tanaka"], ItemFilter())
    assert len(tanaka.items) == 12
    assert tanaka.next_cursor is None
    sato = jpn_node.items.list_items(people["sato"], ItemFilter())
    assert [i.id for i in sato.items] == [f"iii-{n}" for n in range(5)]
    assert sato.withheld == 7
    pages, cursor = [], None
    while True:
        page = jpn_node.items.list_items(people["tanaka"], ItemFilter(), cursor, limit=5)
        pages.append([i.id for i in page.items])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [i for page in pages for i in page] == [f"ii-{n}" for n in range(7)] + [
        f"iii-{n}" for n in range(5)
    ]
    assert ("item.list", "allowed", None) in audit_kinds(jpn_node)


def test_listing_rejects_a_forged_cursor(jpn_node: Node, people: dict[str, Person]) -> None:
    with pytest.raises(InvalidInputError, match="cursor"):
        jpn_node.items.list_items(people["tanaka"], ItemFilter(), "s1; DROP TABLE items")


def test_tokens_authenticate_until_revoked_or_expired(
    jpn_node: Node, people: dict[str, Person], clock: FakeClock
) -> None:
    token_id, token, _ = jpn_node.credentials.issue(None, "tanaka", days=1)
    assert jpn_node.credentials.authenticate(token).id == "tanaka"
    assert jpn_node.store.find_token(token) is None  # only a hash is stored, never the token
    assert jpn_node.store.find_token(hashlib.sha256(token.encode()).hexdigest()) is not None
    clock.advance(days=1, seconds=1)
    with pytest.raises(AuthenticationError, match="expired"):
        jpn_node.credentials.authenticate(token)
    fresh_id, fresh, _ = jpn_node.credentials.issue(people["admin"], "tanaka")
    jpn_node.credentials.revoke(people["tanaka"], fresh_id)
    with pytest.raises(NotFoundError, match="already revoked"):
        jpn_node.credentials.revoke(people["tanaka"], fresh_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        jpn_node.credentials.authenticate(fresh)
    for bad in ("", "gsm_nope", None):
        with pytest.raises(AuthenticationError):
            jpn_node.credentials.authenticate(bad)
    assert token_id


def test_disabled_account_cannot_authenticate(jpn_node: Node, people: dict[str, Person]) -> None:
    _, token, _ = jpn_node.credentials.issue(None, "tanaka")
    jpn_node.people.set_active(people["admin"], "tanaka", False)
    with pytest.raises(AuthenticationError, match="revoked"):  # disabling revoked it
        jpn_node.credentials.authenticate(token)
    with pytest.raises(InvalidInputError, match="disabled"):
        jpn_node.credentials.issue(None, "tanaka")
    jpn_node.people.set_active(people["admin"], "tanaka", True)
    with pytest.raises(AuthenticationError, match="revoked"):  # and it stays revoked
        jpn_node.credentials.authenticate(token)
    assert jpn_node.credentials.authenticate(jpn_node.credentials.issue(None, "tanaka")[1]).id == "tanaka"


def test_only_administrators_manage_people(jpn_node: Node, people: dict[str, Person]) -> None:
    with pytest.raises(AccessDenied, match="administrator"):
        jpn_node.people.add_person(
            people["tanaka"], {"id": "x", "name": "X", "nationality": "JPN", "roles": ["analyst"]}
        )
    with pytest.raises(AccessDenied):
        jpn_node.credentials.issue(people["tanaka"], "sato")
    jpn_node.credentials.issue(people["tanaka"], "tanaka")  # one's own token is fine


@pytest.mark.usefixtures("people")
def test_person_register_validates(jpn_node: Node) -> None:
    with pytest.raises(UnknownNameError, match="JPN has no classification"):
        jpn_node.people.add_person(
            None, {"id": "x", "name": "X", "nationality": "JPN", "clearance": "SECRET"}
        )
    with pytest.raises(LabelError, match="roles"):
        jpn_node.people.add_person(None, {"id": "y", "name": "Y", "nationality": "JPN", "roles": ["general"]})
    with pytest.raises(ConflictError):
        jpn_node.people.add_person(None, {"id": "tanaka", "name": "T", "nationality": "JPN"})
    assert jpn_node.people.person("tanaka").clearance == "極秘"


def test_a_batch_is_stored_whole_or_not_at_all(jpn_node: Node, people: dict[str, Person]) -> None:
    good = [NewIngest(jpn_label(), b"{}", item_id=f"b{n}") for n in range(3)]
    bad = NewIngest(jpn_label(classification="cho-gokuhi"), b"{}", item_id="b-bad")
    with pytest.raises(LabelError):
        jpn_node.items.ingest_many(people["tanaka"], [*good, bad])
    assert jpn_node.store.count_items() == 0
    stored = jpn_node.items.ingest_many(people["tanaka"], good)
    assert [i.id for i in stored] == ["b0", "b1", "b2"]
    assert jpn_node.store.count_items() == 3


def test_a_received_item_must_be_releasable_to_this_party(jpn_node: Node) -> None:
    for label in (kor_label(releasable_to=["USA"]), kor_label(caveats=["NOFORN"])):
        with pytest.raises(LabelError, match="not make this KOR item releasable to JPN"):
            jpn_node.items.ingest(None, label=label, payload=b"{}", received_from="KOR", agreement=GSOMIA)
    assert jpn_node.store.count_items() == 0


def test_a_page_that_fills_early_in_a_short_last_batch_still_offers_the_rest(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    """A withheld item shifts the batches; the page must not end the listing before the last item."""
    received = {"received_from": "KOR", "agreement": "kor-jpn-gsomia-2016"}
    jpn_node.items.ingest(
        None, label=kor_label(topics=["prc-navy"]), payload=b"{}", item_id="hidden", **received
    )
    for n in range(4):
        jpn_node.items.ingest(None, label=kor_label(), payload=b"{}", item_id=f"kor-{n}", **received)
    first = jpn_node.items.list_items(people["tanaka"], ItemFilter(), limit=3)
    assert [i.id for i in first.items] == ["kor-0", "kor-1", "kor-2"]
    assert first.next_cursor is not None
    rest = jpn_node.items.list_items(people["tanaka"], ItemFilter(), cursor=first.next_cursor, limit=3)
    assert [i.id for i in rest.items] == ["kor-3"]


def test_a_contractor_reads_another_partys_item_only_with_the_art_16_measures_on_file(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    """ROK–Japan GSOMIA Art. 7(2): access to the other party's CMI is for government officials;
    Art. 16: a contractor only after its facility and personnel security measures are on file.
    A contractor cleared 極秘 with need-to-know is refused KOR's item until they are recorded."""
    receive(jpn_node, people["tanaka"])
    base = {"nationality": "JPN", "clearance": "極秘", "need_to_know": ["dprk-missile"], "roles": ["analyst"]}
    plain = jpn_node.people.add_person(
        None, {"id": "k-corp", "name": "K Corp", "employment": "contractor", **base}
    )
    with pytest.raises(NotFoundError):  # a refused read looks like an unknown item to the reader
        jpn_node.items.read(plain, "kor-1")
    label = jpn_node.kernel.items.item(jpn_node.kernel.items.row("kor-1")).label
    refused = jpn_node.kernel.decide_read(plain, label)
    assert [c.rule for c in refused.failed()] == ["official"]
    assert "Art. 16" in refused.failed()[0].reason
    checked = jpn_node.people.add_person(
        None,
        {
            "id": "m-corp",
            "name": "M Corp",
            "employment": "contractor",
            "contractor_measures": "FSC-2024-17",
            **base,
        },
    )
    jpn_node.items.read(checked, "kor-1")
    assert jpn_node.people.person("m-corp").contractor_measures == "FSC-2024-17"  # kept in the store
    jpn_node.items.read(people["tanaka"], "kor-1")  # an official, as before
    official = jpn_node.people.add_person(
        None, {"id": "o", "name": "O", "contractor_measures": "FSC-1", **base}
    )
    jpn_node.items.read(official, "kor-1")  # measures on file change nothing for an official
    with pytest.raises(LabelError, match="employment"):
        jpn_node.people.add_person(None, {"id": "x", "name": "X", "employment": "consultant", **base})
