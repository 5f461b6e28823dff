"""Batches through ``Node.items.ingest_many``: the ids the node names, and a batch refused whole."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from tests.node_fixtures import jpn_label, kor_label

from gsomia._codec import label_from_dict
from gsomia.core.access import Person
from gsomia.core.instants import epoch_us
from gsomia.errors import AccessDenied, ConflictError, InvalidInputError, LabelError, PayloadTooLargeError
from gsomia.node import NewIngest, Node
from gsomia.testing import FakeClock


def test_the_ids_the_node_names_are_uuid7s_of_its_clock_each_its_own(
    jpn_node: Node, clock: FakeClock
) -> None:
    # time-ordered ids (their unique indexes grow at one edge, issue 18) that no one guesses
    made: list[str] = []
    for _ in range(3):
        at_ms = epoch_us(clock()) // 1000
        batch = jpn_node.items.ingest_many(None, [NewIngest(jpn_label(), b"{}") for _ in range(300)])
        for item in batch:
            parsed = uuid.UUID(item.id)
            assert str(parsed) == item.id
            assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
            assert parsed.int >> 80 == at_ms
        made += [i.id for i in batch]
        clock.advance(milliseconds=3)
    assert len(set(made)) == len(made) == jpn_node.store.count_items()
    assert [m[:13] for m in made] == sorted(m[:13] for m in made)  # the instant first: in clock order
    random_bits = {uuid.UUID(m).int & ((1 << 74) - 1) for m in made}
    assert len(random_bits) == len(made)
    # an id given is kept as given
    (given,) = jpn_node.items.ingest_many(None, [NewIngest(jpn_label(), b"{}", item_id="report-7")])
    assert given.id == "report-7"


def _refusals(node: Node) -> list[tuple[str | None, str]]:
    rows = [r for r in node.store.audit() if r.kind == "item.ingest"]
    assert all(r.outcome == "refused" for r in rows), "an item of a refused batch was recorded as stored"
    return [(r.subject, json.loads(r.detail)["reason"]) for r in rows]


def test_a_duplicate_id_in_one_batch_is_refused_naming_it_and_nothing_is_stored(jpn_node: Node) -> None:
    batch = [NewIngest(jpn_label(), b"{}", item_id=i) for i in ("a", "b", "c", "b")]
    with pytest.raises(ConflictError, match=r"item 4 of 4 \('b'\): item 2 has this id too"):
        jpn_node.items.ingest_many(None, batch)
    assert jpn_node.store.count_items() == 0
    assert [s for s, _ in _refusals(jpn_node)] == ["b"]


def test_a_batch_mixing_valid_and_invalid_items_names_the_first_bad_one_and_stores_nothing(
    jpn_node: Node,
) -> None:
    good = [
        NewIngest(jpn_label(created=f"2024-02-01T09:{k // 60:02d}:{k % 60:02d}+09:00"), b"{}")
        for k in range(999)
    ]
    bad = [
        (NewIngest(jpn_label(classification="cho-gokuhi"), b"{}", item_id="x-1"), LabelError, "x-1"),
        (NewIngest(jpn_label(created="2024-02-01T09:00:00"), b"{}"), LabelError, None),  # no offset
        (NewIngest(kor_label(), b"{}", item_id="k-1"), LabelError, "k-1"),  # received from no one
        (NewIngest(jpn_label(), b"{}", item_id="../etc"), InvalidInputError, "../etc"),
        (NewIngest(jpn_label(), b"x" * (jpn_node.config.max_payload_bytes + 1), payload_type="bytes"),
         PayloadTooLargeError, None),
    ]  # fmt: skip
    for entry, error, name in bad:
        batch = [*good[:500], entry, *good[500:]]
        which = r"item 501 of 1000" + (rf" \('{re.escape(name)}'\)" if name else "")
        with pytest.raises(error, match=rf"^{which}: .+; nothing of the batch was stored$"):
            jpn_node.items.ingest_many(None, batch)
        assert jpn_node.store.count_items() == 0
        assert jpn_node.store.inventory("x-1") == []
    assert [s for s, _ in _refusals(jpn_node)] == [name for _, _, name in bad]
    # the same good items, alone, are stored (nothing of them was held back half-way)
    assert len(jpn_node.items.ingest_many(None, good)) == 999
    assert jpn_node.store.count_items() == 999


def test_an_id_held_already_refuses_the_batch_naming_it(jpn_node: Node) -> None:
    jpn_node.items.ingest(None, label=jpn_label(), payload=b'"first"', item_id="held")
    batch = [NewIngest(jpn_label(), b'"new"', item_id=f"n{k}") for k in range(5)]
    batch.insert(3, NewIngest(jpn_label(), b'"second"', item_id="held"))
    with pytest.raises(ConflictError, match=r"item 4 of 6 \('held'\): an item with this id is held here"):
        jpn_node.items.ingest_many(None, batch)
    assert jpn_node.store.count_items() == 1
    assert jpn_node.kernel.items.payload(jpn_node.kernel.items.row("held")) == b'"first"'
    last = [r for r in jpn_node.store.audit() if r.kind == "item.ingest"][-1]
    assert (last.outcome, last.subject) == ("refused", "held")
    assert [r.subject for r in jpn_node.store.audit() if r.outcome == "allowed"] == ["held"]


def test_a_batch_written_in_parts_is_refused_whole_by_an_id_held_in_a_later_part(jpn_node: Node) -> None:
    # the store writes a batch's parts while the next are prepared (issue 18): parts 1-4 of 1,000
    # items are written when the held id in part 5 refuses the batch; nothing of it stays
    jpn_node.items.ingest(None, label=jpn_label(), payload=b'"first"', item_id="held")
    batch = [NewIngest(jpn_label(), b"{}", item_id=f"p{k}") for k in range(999)]
    batch.insert(899, NewIngest(jpn_label(), b'"second"', item_id="held"))
    with pytest.raises(ConflictError, match=r"item 900 of 1000 \('held'\): an item with this id is held"):
        jpn_node.items.ingest_many(None, batch)
    assert jpn_node.store.count_items() == 1
    assert jpn_node.store.existing_items([f"p{k}" for k in range(999)]) == set()
    assert jpn_node.kernel.items.payload(jpn_node.kernel.items.row("held")) == b'"first"'
    assert [r.subject for r in jpn_node.store.audit() if r.kind == "item.ingest"] == ["held", "held"]
    assert [e.kind for e in jpn_node.store.inventory("held")] == ["ingested"]
    # a bad label in the last part, after every other part was written: nothing stored either
    batch = [NewIngest(jpn_label(), b"{}", item_id=f"q{k}") for k in range(999)]
    batch.append(NewIngest(jpn_label(classification="cho-gokuhi"), b"{}", item_id="last"))
    with pytest.raises(
        LabelError, match=r"^item 1000 of 1000 \('last'\): .+; nothing of the batch was stored$"
    ):
        jpn_node.items.ingest_many(None, batch)
    assert jpn_node.store.count_items() == 1
    refused = [r for r in jpn_node.store.audit() if r.outcome == "refused"]
    assert [r.subject for r in refused] == ["held", "last"]
    # and the node ingests on: the same items, once the bad one is gone
    assert len(jpn_node.items.ingest_many(None, batch[:-1])) == 999
    assert jpn_node.store.count_items() == 1000


def test_a_reader_refused_one_label_of_a_batch_is_refused_as_an_access_refusal(
    jpn_node: Node, people: dict[str, Person]
) -> None:
    # the error a refusal of access carries (its decision) stays the error raised, whatever its place
    batch = [NewIngest(jpn_label(), b"{}", item_id=f"r{k}") for k in range(3)]
    batch.append(NewIngest(jpn_label(classification="特定秘密"), b"{}", item_id="above"))
    with pytest.raises(AccessDenied) as refused:
        jpn_node.items.ingest_many(people["tanaka"], batch)
    assert not refused.value.decision.allowed
    assert jpn_node.store.count_items() == 0


def test_one_item_alone_is_refused_as_before(jpn_node: Node) -> None:
    with pytest.raises(LabelError, match=r"^label: JPN has no classification"):
        jpn_node.items.ingest(None, label=jpn_label(classification="cho-gokuhi"), payload=b"{}")


def test_a_label_given_another_creation_instant_is_the_label_replace_makes_every_field_named() -> None:
    import dataclasses
    from datetime import UTC, datetime

    from gsomia._codec import label_created_at
    from gsomia.core.labels import AlternativeLabel, SecurityLabel

    template = SecurityLabel(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=frozenset({"JPN", "USA"}),
        purpose="threat-assessment",
        topics=frozenset({"dprk-missile", "prc-navy"}),
        created=datetime(2024, 1, 1, tzinfo=UTC),
        caveats=frozenset({"G2G-ONLY"}),
        review=datetime(2024, 6, 1, tzinfo=UTC),
        alternatives=(AlternativeLabel("JPN", "極秘", "kor-jpn-gsomia-2016"),),
    )
    # label_created_at names each field: one added to SecurityLabel must be added there too
    assert [f.name for f in dataclasses.fields(SecurityLabel) if f.init] == [
        "originator",
        "classification",
        "releasable_to",
        "purpose",
        "topics",
        "created",
        "caveats",
        "review",
        "policy",
        "alternatives",
    ]
    made = label_created_at(template, "2024-02-01T09:00:00+09:00")
    expected = dataclasses.replace(template, created=datetime.fromisoformat("2024-02-01T09:00:00+09:00"))
    assert made == expected
    assert made.created_ts == expected.created_ts
    assert all(getattr(made, f.name) == getattr(expected, f.name) for f in dataclasses.fields(SecurityLabel))
    # the label's own checks still run on the new instant
    with pytest.raises(LabelError, match="review instant precedes"):
        label_created_at(template, "2024-07-01T09:00:00+09:00")
    with pytest.raises(LabelError, match="no UTC offset"):
        label_created_at(template, "2024-02-01T09:00:00")


def _received(created: str, item_id: str) -> NewIngest:
    """KOR's item created at ``created``, as received from KOR under the GSOMIA."""
    return NewIngest(
        kor_label(created=created),
        b"{}",
        item_id=item_id,
        received_from="KOR",
        agreement="kor-jpn-gsomia-2016",
    )


def test_a_received_label_is_checked_for_each_field_the_check_reads_though_the_batch_shares_the_rest(
    jpn_node: Node,
) -> None:
    # the check of a received label is kept per what it reads, not per creation instant: each of
    # these differs from an accepted one in one such field only, after it was accepted, and is refused
    kor = "kor-jpn-gsomia-2016"
    good = [_received(f"2024-02-0{d}T09:00:00+09:00", f"k{d}") for d in (1, 2)]
    stored = jpn_node.items.ingest_many(None, good)
    assert [i.label.alternative_for("JPN") is not None for i in stored] == [True, True]
    for bad, why in [
        (
            kor_label(releasable_to=["USA"], created="2024-02-03T09:00:00+09:00"),
            "not make this KOR item releasable",
        ),
        (
            kor_label(caveats=["NOFORN"], created="2024-02-03T09:00:00+09:00"),
            "not make this KOR item releasable",
        ),
        (
            kor_label(
                alternatives=[{"party": "JPN", "classification": "極秘", "agreement": kor}],
                created="2024-02-03T09:00:00+09:00",
            ),
            "adds alternative labels on receipt",
        ),
    ]:
        with pytest.raises(LabelError, match=why):
            jpn_node.items.ingest_many(
                None, [NewIngest(bad, b"{}", item_id="k9", received_from="KOR", agreement=kor)]
            )
    # nor is a received item taken without the agreement it came by, nor JPN's own as received
    with pytest.raises(LabelError, match="needs received_from and the agreement"):
        jpn_node.items.ingest_many(
            None, [NewIngest(kor_label(), b"{}", item_id="k9", received_from="KOR", agreement=None)]
        )
    with pytest.raises(LabelError, match="was not received from anyone"):
        jpn_node.items.ingest_many(
            None, [NewIngest(jpn_label(), b"{}", item_id="j9", received_from="KOR", agreement=kor)]
        )
    assert jpn_node.store.count_items() == 2


def test_a_batch_reads_the_catalogue_once_and_checks_every_item_against_that_reading(
    jpn_node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the catalogue (the equivalence changes on file) read once a batch, not twice an item (issue 18):
    # every item of a batch is checked against one reading, none against one taken half-way
    kernel = jpn_node.kernel
    reads: list[int] = []
    current = type(kernel).catalogue

    def counted(self: object) -> object:
        reads.append(1)
        return current.fget(self)  # type: ignore[attr-defined]

    batch = [
        NewIngest(jpn_label(created=f"2024-02-01T09:00:{k:02d}+09:00"), b"{}", item_id=f"j{k}")
        for k in range(20)
    ] + [_received(f"2024-02-01T10:00:{k:02d}+09:00", f"k{k}") for k in range(20)]
    monkeypatch.setattr(type(kernel), "catalogue", property(counted))
    stored = jpn_node.items.ingest_many(None, batch)
    monkeypatch.undo()
    assert len(reads) == 1
    assert [i.id for i in stored] == [e.item_id for e in batch]
    assert [i.label.alternative_for("JPN") is not None for i in stored] == [False] * 20 + [True] * 20


def test_labels_sharing_an_instant_but_not_the_rest_are_each_parsed_as_their_own(jpn_node: Node) -> None:
    # a label is kept by the rest of it and its instant's text (one encoding an item, issue 18): a
    # label with the instant of one parsed before but another level, topic or caveat is its own
    at = "2024-02-01T09:00:00+09:00"
    variants = [
        jpn_label(created=at),
        jpn_label(created=at, classification="秘"),
        jpn_label(created=at, topics=["dprk-nuclear"]),
        jpn_label(created=at, caveats=["NOFORN"], releasable_to=[]),
        jpn_label(created="2024-02-01T09:00:00+00:00"),  # the same rest, another instant
    ]
    batch = [NewIngest(v, b"{}", item_id=f"v{n}") for n, v in enumerate(variants)]
    for item, label in zip(jpn_node.items.ingest_many(None, batch), variants, strict=True):
        assert item.label == label_from_dict(label, jpn_node.catalogue)
    items = jpn_node.kernel.items
    assert items.parse_label(variants[1]) is not items.parse_label(variants[0])
    # an instant that is not text is keyed whole and refused as label_from_dict refuses it
    with pytest.raises(LabelError, match="created"):
        items.parse_label(jpn_label(created=20240201))


def test_each_batch_is_stored_at_its_own_instant_and_each_item_at_its_label_s_creation(
    jpn_node: Node, clock: FakeClock
) -> None:
    # the instant a batch is sealed at is worked out once for its items (issue 18): the next batch, at
    # a later instant, is stored at that one, and every own item's payload and signed item still open
    seen = []
    for minute in range(3):
        created = [f"2024-02-01T09:{minute:02d}:{k:02d}.{k:06d}+09:00" for k in range(4)]
        batch = jpn_node.items.ingest_many(None, [NewIngest(jpn_label(created=c), b"{}") for c in created])
        for item, text in zip(batch, created, strict=True):
            row = jpn_node.kernel.items.row(item.id)
            assert row.ingested_us == epoch_us(clock()) == epoch_us(item.ingested)
            assert row.created_us == epoch_us(
                label_from_dict(jpn_label(created=text), jpn_node.kernel.catalogue).created
            )
            assert jpn_node.kernel.items.payload(row) == b"{}"
            origin = jpn_node.kernel.items.origin(row)
            assert origin is not None
            assert origin.count(".") == 2  # the compact JWS the originator signed
        seen.append(epoch_us(clock()))
        clock.advance(milliseconds=1)
    assert len(set(seen)) == 3
