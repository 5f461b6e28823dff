"""Use only for the purpose provided (ROK–Japan GSOMIA Art. 6(b)): the read decision's `purpose` check."""

from __future__ import annotations

from dataclasses import replace

from tests.conftest import kst

from gsomia import AlternativeLabel, Catalogue
from gsomia.core.access import Person, Role, decide_read
from gsomia.core.policy import Consent, ConsentKind

AT = kst(2024, 3, 1)


def _reader() -> Person:
    return Person(
        "tanaka", "Tanaka", "JPN", "特定秘密", frozenset({"dprk-missile"}), frozenset({Role.ANALYST})
    )


def _purpose(
    catalogue: Catalogue, person: Person, consents: list[Consent], holder: str | None = "JPN"
) -> tuple[bool, str]:
    label = catalogue.label(
        originator="KOR",
        classification="군사III급비밀",
        releasable_to=["JPN"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=kst(2024, 1, 1),
    )
    held = label.with_alternative(AlternativeLabel("JPN", "秘", "kor-jpn-gsomia-2016"))
    decision = decide_read(person, held, catalogue, holder=holder, consents=consents, item="k1", at=AT)
    return next((c.passed, c.reason) for c in decision.checks if c.rule == "purpose")


def test_a_consent_counts_only_for_its_purpose_holder_item_originator_and_period(
    catalogue: Catalogue,
) -> None:
    """Art. 6(b): the originator's consent to another purpose is for what it names. Training does
    not unlock targeting; a consent for the USA does not unlock JPN; one for another item, one
    expired, one given by another party, and any without knowing the holder unlock nothing."""
    training = replace(_reader(), purpose="training")
    good = Consent(
        ConsentKind.NEW_PURPOSE, "KOR", "JPN", kst(2024, 2, 1), "letter", item="k1", purpose="training"
    )
    assert _purpose(catalogue, training, [good])[0]
    assert _purpose(catalogue, _reader(), [])[0]  # no purpose stated: the item's own
    assert not _purpose(catalogue, replace(_reader(), purpose="targeting"), [good])[0]
    for wrong in (
        replace(good, recipient="USA"),
        replace(good, item="k2"),
        replace(good, expires=kst(2024, 2, 15)),
        replace(good, originator="USA"),
        replace(good, kind=ConsentKind.THIRD_PARTY),
    ):
        passed, reason = _purpose(catalogue, training, [wrong])
        assert not passed
        assert "needs KOR's consent to that purpose (Art. 6(b))" in reason
    assert not _purpose(catalogue, training, [good], holder=None)[0]  # who holds it unknown: fail closed
    standing = replace(good, item=None)
    assert _purpose(catalogue, training, [standing])[0]
