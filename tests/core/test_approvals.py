"""The two-person policy and an approval's binding, in the pure core."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gsomia._datafiles import load_catalogue
from gsomia.core.approvals import MAX_VALIDITY, Approval, TwoPersonPolicy, two_person_policy
from gsomia.core.labels import SecurityLabel
from gsomia.errors import InvalidInputError, LabelError, UnknownNameError

AT = datetime(2024, 3, 1, tzinfo=UTC)
LABEL = SecurityLabel("KOR", "군사II급비밀", frozenset({"JPN"}), "threat-assessment", frozenset({"x"}), AT)


def approval(**kw: object) -> Approval:
    base = Approval(
        "r1", "alice", "bob", "k1", LABEL, "KOR", (), "JPN", "threat-assessment", AT, AT + timedelta(hours=1)
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_levels_above_the_stated_one_of_each_scheme_need_two_officers() -> None:
    policy = two_person_policy(load_catalogue(), above={"KOR": "군사III급비밀", "JPN": "極秘"})
    assert ("KOR", "군사II급비밀") in policy.levels
    assert ("KOR", "군사I급비밀") in policy.levels
    assert ("KOR", "군사III급비밀") not in policy.levels
    assert ("KOR", "대외비") not in policy.levels
    assert ("JPN", "極秘") not in policy.levels
    assert policy.needs(LABEL, via=(), grants_relay=False) == ("KOR 군사II급비밀 is above KOR 군사III급비밀",)
    assert policy.needs(replace(LABEL, classification="대외비"), via=("USA",), grants_relay=True) == ()


def test_routes_and_relay_authorisations_are_reasons_of_their_own() -> None:
    policy = TwoPersonPolicy(hub_relay=True, relay_authorisations=True)
    assert policy.needs(LABEL, via=("USA",), grants_relay=True) == (
        "it is relayed through USA",
        "it authorises a hub to pass the item on",
    )
    assert TwoPersonPolicy().empty


def test_bad_policies_are_refused() -> None:
    catalogue = load_catalogue()
    with pytest.raises(LabelError, match="unknown party"):
        two_person_policy(catalogue, above={"XYZ": "SECRET"})
    with pytest.raises(UnknownNameError, match="KOR has no classification 'SECRET'"):
        two_person_policy(catalogue, above={"KOR": "SECRET"})
    with pytest.raises(InvalidInputError, match="validity"):
        TwoPersonPolicy(validity=MAX_VALIDITY + timedelta(seconds=1))
    with pytest.raises(InvalidInputError, match="validity"):
        TwoPersonPolicy(validity=timedelta(0))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"approver": "alice"}, "cannot approve it too"),
        ({"item": "k2"}, "is for item k2"),
        ({"label": replace(LABEL, classification="군사I급비밀")}, "another version of the label"),
        ({"via": ("USA",)}, "is for the route KOR -> USA -> JPN"),
        ({"recipient": "USA"}, "is for the route KOR -> USA"),
        ({"purpose": "training"}, "is for the purpose training"),
        ({"approved_at": AT + timedelta(minutes=1)}, "after this instant"),
        ({"expires_at": AT}, "expired"),
    ],
)
def test_an_approval_covers_only_what_it_was_given_for(change: dict[str, object], words: str) -> None:
    args = {"item": "k1", "label": LABEL, "sender": "KOR", "via": (), "recipient": "JPN"}
    assert approval().mismatch(purpose="threat-assessment", ts=AT.timestamp(), **args) is None  # type: ignore[arg-type]
    problem = approval(**change).mismatch(purpose="threat-assessment", ts=AT.timestamp(), **args)  # type: ignore[arg-type]
    assert problem is not None
    assert words in problem
