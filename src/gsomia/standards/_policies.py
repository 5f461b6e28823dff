"""How each party's classification scheme is named to the outside world.

ADatP-4774 labels and XML-SPIF files name a security policy by a short name and an OID
(written ``urn:oid:…`` in a label). Each party's national scheme is one policy. Unless the
party's data file names the policy (a partner's own SPIF, imported), gsomia derives a stable
name (``GSOMIA-KOR``) and an OID under the UUID arc ``2.25`` (ITU-T X.667), so it can never
collide with a registered policy and is the same at every node.

The category tag sets are gsomia's, the same in every policy, each with its 4774 type.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from gsomia.core.catalogue import Catalogue
from gsomia.core.parties import Party
from gsomia.errors import LabelError

__all__ = ["TAGS", "CategoryKind", "Policy", "Tag", "party_urn", "policy_of", "resolve_policy"]

_NAMESPACE = uuid.UUID("8f7d3b8e-4a5c-4c55-9b8e-2f3c1d0a7e64")
_PARTY_URN = "urn:gsomia:party:"


class CategoryKind(StrEnum):
    """ADatP-4774's category types (what a reader must hold to pass it)."""

    RESTRICTIVE = "RESTRICTIVE"  # the reader must hold every value
    PERMISSIVE = "PERMISSIVE"  # the reader must hold at least one value
    INFORMATIVE = "INFORMATIVE"  # no access decision depends on it


@dataclass(frozen=True, slots=True)
class Tag:
    """One category tag set of gsomia's policies: its name, 4774 type and OID arc under the policy."""

    name: str
    kind: CategoryKind
    arc: int


RELEASABLE_TO = Tag("Releasable To", CategoryKind.PERMISSIVE, 1)
NEED_TO_KNOW = Tag("Need To Know", CategoryKind.PERMISSIVE, 2)
CAVEATS = Tag("Caveats", CategoryKind.RESTRICTIVE, 3)
PURPOSE = Tag("Purpose", CategoryKind.INFORMATIVE, 4)
AGREEMENT = Tag("Agreement", CategoryKind.INFORMATIVE, 5)
TAGS: dict[str, Tag] = {t.name: t for t in (RELEASABLE_TO, NEED_TO_KNOW, CAVEATS, PURPOSE, AGREEMENT)}


@dataclass(frozen=True, slots=True)
class Policy:
    """A party's scheme as a security policy: name, OID, and the party it belongs to."""

    party: str
    name: str
    oid: str

    @property
    def uri(self) -> str:
        return f"urn:oid:{self.oid}"

    def tag_uri(self, tag: Tag) -> str:
        return f"urn:oid:{self.oid}.{tag.arc}"


def _derived_oid(key: str) -> str:
    return f"2.25.{uuid.uuid5(_NAMESPACE, key).int}"


def policy_of(party: Party) -> Policy:
    """The policy of ``party``'s scheme: the data file's name and OID, or gsomia's derived ones."""
    scheme = party.scheme
    name = scheme.policy_name or f"GSOMIA-{party.code}"
    oid = scheme.policy_oid or _derived_oid(f"gsomia:policy:{party.code}")
    return Policy(party.code, name, oid)


def party_urn(code: str) -> str:
    """How a 4774 ``OriginatorID`` names a party (``IDType`` uniformResourceIdentifier)."""
    return f"{_PARTY_URN}{code}"


def party_of_urn(urn: str) -> str | None:
    return urn[len(_PARTY_URN) :] if urn.startswith(_PARTY_URN) else None


def resolve_policy(catalogue: Catalogue, name: str, uri: str | None) -> Policy:
    """The policy a label names: by its OID when the label gives one (then the name must agree), else
    by name. An unknown policy is refused, naming it and the policies this node knows."""
    policies = [policy_of(p) for p in catalogue.parties.values()]
    if uri is not None:
        found = next((p for p in policies if p.uri == uri), None)
        if found is not None and found.name != name:
            raise LabelError(f"policy {name!r} names the OID of {found.name} ({uri}): they disagree")
    else:
        found = next((p for p in policies if p.name == name), None)
    if found is None:
        known = ", ".join(sorted(f"{p.name} ({p.uri})" for p in policies))
        given = f"{name!r}" + (f" ({uri})" if uri else "")
        raise LabelError(f"unknown security policy {given}; this node knows {known}")
    return found
