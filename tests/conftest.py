"""Shared fixtures: the shipped catalogue, an engine over it, and request builders."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gsomia import Catalogue, Consent, ReleaseEngine, ReleaseRequest, load_catalogue

KST = ZoneInfo("Asia/Seoul")


def kst(*parts: int) -> datetime:
    """An instant in Korea Standard Time: kst(2019, 11, 23, 0, 0, 1)."""
    return datetime(*parts, tzinfo=KST)  # type: ignore[misc]


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="session")
def engine(catalogue: Catalogue) -> ReleaseEngine:
    return ReleaseEngine(catalogue)


def make_request(
    catalogue: Catalogue,
    *,
    sender: str = "KOR",
    recipient: str = "JPN",
    originator: str | None = None,
    classification: str = "군사II급비밀",
    via: tuple[str, ...] = (),
    releasable_to: Iterable[str] | None = None,
    purpose: str = "threat-assessment",
    label_purpose: str | None = None,
    topics: Iterable[str] = ("dprk-missile",),
    caveats: Iterable[str] = (),
    consents: Iterable[Consent] = (),
    item: str | None = None,
    created: datetime | None = None,
) -> ReleaseRequest:
    label = catalogue.label(
        originator=originator or sender,
        classification=classification,
        releasable_to=releasable_to if releasable_to is not None else (*via, recipient),
        purpose=label_purpose or purpose,
        topics=topics,
        caveats=caveats,
        created=created or kst(2014, 1, 1),
    )
    return ReleaseRequest(label, sender, recipient, purpose, via, item, tuple(consents))
