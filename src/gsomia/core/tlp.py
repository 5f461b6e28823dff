"""Traffic Light Protocol markings on STIX objects: TLP:RED never leaves the node, and an item
marked TLP:AMBER+STRICT is released only by its originator (no onward release).

TLP travels beside the gsomia label, never instead of it; the rules gsomia enforces everywhere
an item could leave (the exchange, transfer by file, TAXII) are TLP:RED's and TLP:AMBER+STRICT's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TLP_AMBER_STRICT", "TLP_RED", "is_tlp_amber_strict", "is_tlp_red"]

TLP_RED = frozenset(
    {
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",  # TLP 2.0 RED
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",  # TLP 1.0 RED (STIX 2.1 §7.2.1.4)
    }
)


TLP_AMBER_STRICT = frozenset({"marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"})  # TLP 2.0


def _carries(obj: Any, markings: frozenset[str]) -> bool:
    if not isinstance(obj, Mapping):
        return False
    refs = obj.get("object_marking_refs")
    if isinstance(refs, list) and not markings.isdisjoint(r for r in refs if isinstance(r, str)):
        return True
    granular = obj.get("granular_markings")
    if not granular or not isinstance(granular, list):
        return False
    # a marking_ref that is not text (a list, an object) marks nothing: asked of the set, it was a
    # TypeError, so an item's payload holding one failed its release and the TAXII page serving it
    return any(
        isinstance(g, Mapping) and isinstance(ref := g.get("marking_ref"), str) and ref in markings
        for g in granular
    )


def is_tlp_red(obj: Any) -> bool:
    """Does this STIX object (any JSON value) carry TLP:RED, 2.0 or 1.0, on the object or a part of it?"""
    return _carries(obj, TLP_RED)


def is_tlp_amber_strict(obj: Any) -> bool:
    """Does this STIX object carry TLP:AMBER+STRICT (on the object or a part of it)?"""
    return _carries(obj, TLP_AMBER_STRICT)
