"""Traffic Light Protocol markings on STIX objects: TLP:RED never leaves the node.

TLP travels beside the gsomia label, never instead of it; the one rule gsomia enforces
everywhere an item could leave (the exchange, transfer by file, TAXII) is TLP:RED's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["TLP_RED", "is_tlp_red"]

TLP_RED = frozenset(
    {
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",  # TLP 2.0 RED
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",  # TLP 1.0 RED (STIX 2.1 §7.2.1.4)
    }
)


def is_tlp_red(obj: Any) -> bool:
    """Does this STIX object (any JSON value) carry TLP:RED, 2.0 or 1.0, on the object or a part of it?"""
    if not isinstance(obj, Mapping):
        return False
    refs = obj.get("object_marking_refs") or []
    granular = [g.get("marking_ref") for g in obj.get("granular_markings") or [] if isinstance(g, Mapping)]
    return any(r in TLP_RED for r in [*refs, *granular] if isinstance(r, str))
