"""Assurance before provision (ROK–Japan GSOMIA Art. 7(5)): the release engine's `assurance` rule."""

from __future__ import annotations

import pickle
from dataclasses import fields, replace
from datetime import timedelta

from tests.conftest import kst, make_request

from gsomia import Catalogue, ReleaseDecision, ReleaseEngine
from gsomia.core.policy import Assurance, Consent, ConsentKind, assumed_assurances

GSOMIA = "kor-jpn-gsomia-2016"
AT = kst(2024, 3, 1)


def _assurance(check: list[tuple[str, bool, str]]) -> tuple[bool, str]:
    return next((passed, reason) for rule, passed, reason in check if rule == "assurance")


def test_no_provision_without_the_recipients_assurance(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    """Art. 7(5): before information is provided, the recipient assures the clearance level, the
    official purpose and equivalent protection. Without JPN's assurance under the agreement on file,
    KOR's release to JPN is refused, and the refusal says why."""
    d = engine.decide(make_request(catalogue, assurances=()), at=AT)
    assert not d.allowed
    passed, reason = _assurance(list(d.checks))
    assert not passed
    assert "no assurance of JPN under" in reason
    assert "Art. 7(5)" in reason
    given = Assurance(GSOMIA, "JPN", kst(2016, 11, 23), "note of 23 Nov 2016")
    allowed = engine.decide(make_request(catalogue, assurances=[given]), at=AT)
    assert allowed.allowed
    assert "note of 23 Nov 2016" in _assurance(list(allowed.checks))[1]


def test_an_assurance_counts_only_for_its_party_its_agreement_and_its_period(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    """Art. 7(5): the assurance is the recipient's, before provision, and revocable. The sender's
    own, one under another agreement, one dated after the release and one revoked before it do not
    count; an assurance revoked later still covered a release made before its revocation."""
    wrong = [
        Assurance(GSOMIA, "KOR", kst(2016, 11, 23), "the sender's own"),
        Assurance("tisa-2014", "JPN", kst(2014, 12, 29), "another agreement"),
        Assurance(GSOMIA, "JPN", AT + timedelta(days=1), "given after the release"),
        Assurance(GSOMIA, "JPN", kst(2016, 11, 23), "revoked", revoked_at=AT - timedelta(days=1)),
    ]
    d = engine.decide(make_request(catalogue, assurances=wrong), at=AT)
    assert not d.allowed
    assert not _assurance(list(d.checks))[0]
    revoked = Assurance(GSOMIA, "JPN", kst(2016, 11, 23), "revoked later", revoked_at=AT + timedelta(days=1))
    assert engine.decide(make_request(catalogue, assurances=[revoked]), at=AT).allowed
    assert not engine.decide(make_request(catalogue, assurances=[revoked]), at=AT + timedelta(days=2)).allowed
    later = engine.decide(make_request(catalogue, assurances=[wrong[2]]), at=AT)
    assert "dated after this instant" in _assurance(list(later.checks))[1]


def test_a_hub_needs_its_own_assurance_and_a_return_to_the_originator_needs_none(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    """Art. 7(5) for every receiver on the route: relayed through the USA under TISA, the hub's
    assurance is needed as well as the recipient's. Returning an item to its originator provides
    nothing new: no assurance is asked."""
    at = kst(2016, 8, 3)
    jpn_only = [Assurance("tisa-2014", "JPN", kst(2014, 12, 29), "JPN under TISA")]
    relay = Consent(ConsentKind.HUB_RELAY, "KOR", "JPN", kst(2015, 1, 1), "authorised", item="k1", hub="USA")
    request = make_request(catalogue, via=("USA",), item="k1", consents=[relay], assurances=jpn_only)
    d = engine.decide(request, at=at)
    assert not d.allowed
    assert "no assurance of USA under tisa-2014" in _assurance(list(d.checks))[1]
    both = make_request(
        catalogue, via=("USA",), item="k1", consents=[relay], assurances=assumed_assurances(catalogue)
    )
    assert engine.decide(both, at=at).allowed
    back = engine.decide(
        make_request(catalogue, sender="JPN", recipient="KOR", originator="KOR", assurances=()), at=AT
    )
    assert _assurance(list(back.checks)) == (
        True,
        "the item returns to its originator KOR: no assurance needed",
    )


def test_a_warm_engine_explains_each_request_by_the_assurances_it_carried(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    """The engine keeps what it found in a tuple of assurances, and the sentence for those found
    (issue 18), by identity: another tuple, equal or not, a revocation in a new one, or the same
    tuple at an instant after a revocation is decided on what that request carries."""
    first = (Assurance(GSOMIA, "JPN", kst(2016, 11, 23), "note A"),)
    second = (Assurance(GSOMIA, "JPN", kst(2016, 11, 23), "note B"),)
    for _ in range(2):  # the second round decides warm
        assert (
            "note A"
            in _assurance(list(engine.decide(make_request(catalogue, assurances=first), at=AT).checks))[1]
        )
        assert (
            "note B"
            in _assurance(list(engine.decide(make_request(catalogue, assurances=second), at=AT).checks))[1]
        )
    revoked = (Assurance(GSOMIA, "JPN", kst(2016, 11, 23), "note A", revoked_at=AT - timedelta(days=1)),)
    refused = engine.decide(make_request(catalogue, assurances=revoked), at=AT)
    assert not refused.allowed
    assert "was revoked at" in _assurance(list(refused.checks))[1]
    later = (Assurance(GSOMIA, "JPN", kst(2016, 11, 23), "note C", revoked_at=AT + timedelta(days=1)),)
    assert engine.decide(make_request(catalogue, assurances=later), at=AT).allowed
    assert not engine.decide(make_request(catalogue, assurances=later), at=AT + timedelta(days=2)).allowed


def test_an_assurance_keeps_the_dataclass_hash_and_a_batch_memo_never_grants_on_a_stale_one(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    """Issue 18: an assurance's hash is kept once asked (a batch's memo hashes the node's tuple of
    assurances per look-up). It is the generated ``__hash__``'s value, a changed copy computes its
    own, a pickled one is not given the other process's; and a memo holding a decision made on the
    tuple, hashed and kept, answers a tuple with that assurance revoked by a refusal."""

    def generated(assurance: Assurance) -> int:
        return hash(tuple(getattr(assurance, f.name) for f in fields(Assurance) if f.compare))

    filed = assumed_assurances(catalogue)
    jpn = next(a for a in filed if (a.agreement, a.party) == (GSOMIA, "JPN"))
    assert hash(jpn) == generated(jpn) == jpn.hash_
    revoked = replace(jpn, revoked_at=AT - timedelta(days=1))
    assert revoked.hash_ == -1
    assert hash(revoked) == generated(revoked) != hash(jpn)
    thawed = pickle.loads(pickle.dumps(jpn))  # noqa: S301 -- our own object
    assert thawed.hash_ == -1
    assert thawed == jpn
    assert hash(thawed) == hash(jpn)
    memo: dict[object, ReleaseDecision] = {}
    request = make_request(catalogue, topics=("prc-navy",), assurances=filed, item="a")
    for _ in range(2):
        assert engine.decide(request, at=AT, memo=memo).allowed
    stale = tuple(revoked if a is jpn else a for a in filed)
    refused = engine.decide(replace(request, assurances=stale, item="b"), at=AT, memo=memo)
    assert [c.rule for c in refused.failed()] == ["assurance"]
    assert len(memo) == 2
