"""Adversarial probes of the release engine's fast paths (issue 18, attack review): the candidates
cut short (``AllOf.choose``) and a batch's memo decide every request as the plain evaluation does,
with what the kept-outcome tests do not draw: a second officer's approval (bound to item, route,
purpose and instant, or not), and many items of one batch sharing a memo across routes and
instants. Every field of every decision, every check's sentence, must be the plain one's."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.conftest import kst, make_request
from tests.core.test_policy_kept import _requests, _said, _what_if

from gsomia import Catalogue, ReleaseDecision, ReleaseEngine
from gsomia.core.approvals import Approval, TwoPersonPolicy


@pytest.mark.parametrize("what_if", [False, True], ids=["shipped", "what-if"])
def test_approvals_and_a_batch_memo_decide_as_the_plain_evaluation(
    catalogue: Catalogue, what_if: bool
) -> None:
    cat = _what_if(catalogue) if what_if else catalogue
    engine = ReleaseEngine(cat)
    rng = random.Random(1818)  # noqa: S311 - a fixed mix of requests, not a secret
    memo: dict[Any, ReleaseDecision] = {}
    cases = list(_requests(cat, 600, seed=1818))
    first_at = cases[0][1]
    outcomes = set()
    for request, at in cases:
        originator = request.label.originator
        levels = [level.name for level in cat.parties[originator].scheme.levels]
        policy = TwoPersonPolicy(frozenset({(originator, rng.choice(levels))}))
        item = request.item or "item-x"
        approval = Approval(
            "request-1",
            "officer-a",
            rng.choice(["officer-b", "officer-b", "officer-a"]),  # never the requester's own
            rng.choice([item, item, "another-item"]),
            request.label,
            request.sender,
            rng.choice([request.via, request.via, ("USA",)]),
            request.recipient,
            rng.choice([request.purpose, request.purpose, "missile-warning"]),
            at + timedelta(hours=rng.choice([-2, -2, 1])),  # given before, or after this instant
            at + timedelta(hours=rng.choice([3, 3, -1])),  # still valid, or expired
        )
        variants = (
            request,
            replace(request, two_person=policy, approval=approval, item=item),
            replace(request, two_person=policy, approval=approval, item="another-item"),  # same approval
            replace(request, two_person=policy, item=None),
            replace(request, item=f"batch-{rng.randrange(3)}"),  # items sharing the memo's decision
        )
        for variant in variants:
            for when in (at, first_at):  # one memo asked at two instants
                plain = _said(engine.decide_plainly(variant, at=when))
                assert _said(engine.decide(variant, at=when)) == plain, (variant, when)
                decided = engine.decide(variant, at=when, memo=memo)
                assert _said(decided) == plain, (variant, when)
                outcomes.add(
                    (decided.allowed, any(c.rule == "two_person" and not c.passed for c in decided.checks))
                )
    assert outcomes >= {(True, False), (False, True), (False, False)}  # the sample holds each


def test_a_batch_memo_does_not_answer_a_label_with_anothers_spelling_of_its_creation_instant(
    catalogue: Catalogue,
) -> None:
    """Two items of one batch whose labels name the same creation instant in other offsets are equal
    labels, yet each refusal names the instant as its own label writes it (as the plain evaluation
    and the label rules' own key do): before, the second item's refusal named the first's spelling."""
    engine = ReleaseEngine(catalogue)
    at = kst(2024, 3, 1)
    first = make_request(catalogue, created=kst(2024, 3, 2), item="first")  # created after the instant
    second = replace(
        first, item="second", label=replace(first.label, created=first.label.created.astimezone(UTC))
    )
    assert first.label == second.label
    memo: dict[Any, ReleaseDecision] = {}
    for request in (first, second, first, second):
        decided = engine.decide(request, at=at, memo=memo)
        assert not decided.allowed
        assert _said(decided) == _said(engine.decide_plainly(request, at=at))
        assert request.label.created.isoformat() in next(
            c.reason for c in decided.checks if c.rule == "label"
        )
    same = replace(second, item="third")  # the same spelling still shares the decision
    assert engine.decide(same, at=at, memo=memo) is engine.decide(second, at=at, memo=memo)


def test_a_batch_memo_does_not_allow_an_item_created_in_a_zones_repeated_hour_after_the_instant(
    catalogue: Catalogue,
) -> None:
    """01:30 on 3 Nov 2024 in New York happens twice (05:30 and 06:30 UTC); Python holds the two
    equal (same zone: fold is not compared), so their labels are equal. Decided at 06:00 UTC in one
    batch, the item created at 05:30 may go; the one created at 06:30 did not exist yet and is
    refused. Before, the batch memo answered it with the first item's decision: allowed."""
    new_york = ZoneInfo("America/New_York")
    at = datetime(2024, 11, 3, 6, 0, tzinfo=UTC)
    first = make_request(catalogue, created=datetime(2024, 11, 3, 1, 30, tzinfo=new_york), item="first")
    later = datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=new_york)
    second = replace(first, item="second", label=replace(first.label, created=later))
    assert first.label == second.label
    assert second.label.created_ts - first.label.created_ts == 3600
    engine = ReleaseEngine(catalogue)
    memo: dict[Any, ReleaseDecision] = {}
    assert engine.decide(first, at=at, memo=memo).allowed
    decided = engine.decide(second, at=at, memo=memo)
    assert not decided.allowed
    assert _said(decided) == _said(engine.decide_plainly(second, at=at))
