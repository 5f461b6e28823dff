"""Adversarial probes of the release engine's fast paths (issue 18, attack review): the candidates
cut short (``AllOf.choose``) and a batch's memo decide every request as the plain evaluation does,
with what the kept-outcome tests do not draw: a second officer's approval (bound to item, route,
purpose and instant, or not), and many items of one batch sharing a memo across routes and
instants. Every field of every decision, every check's sentence, must be the plain one's."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
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
