"""XML-SPIF security policies generated from the agreements, and read back into party files.

:func:`spif_for` writes one party's classification scheme as an Open XML SPIF (schema 2.1):

- the policy (its name and OID, see ``_policies``); each level as a ``securityClassification``
  with ``lacv`` and ``hierarchy`` (the scheme's rank) and marking data (the English gloss for page
  top and bottom; the national name is the classification's name);
- the category tag sets every gsomia label uses (``Releasable To`` with the parties, ``Need To
  Know`` with the topics the party's agreements name, ``Caveats``, ``Purpose`` and ``Agreement``);
- each agreement's equivalence table, as it stands at the instant asked for, as
  ``equivalentClassification`` entries (``applied``: ``encrypt`` where only this party's level
  maps out, ``decrypt`` where only the partner's maps in, ``both``), for the agreements in force
  then: from entry into force to termination (a notice pending or suspended keeps them), with the
  equivalence changes the parties sent (a node's catalogue: the change applies from its instant).
  The SPIF's ``notBefore``/``notAfter`` bound the stretch of time over which that set stays the same;
  each agreement's in-force periods are in the gsomia extension;
- the gsomia extension (``urn:gsomia:spif:1:0``): party code and name, scheme title, each level's
  alias, gloss and rank, the topics it declares, so the party file comes back exactly.

:func:`scheme_from_spif` reads a SPIF (gsomia's, or a partner's own: then the party code is
given and aliases are derived) into a party file in the data format (``docs/DATA_FORMAT.md``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import tomli_w
from lxml import etree

from gsomia.core.agreements import Agreement
from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import CAVEATS
from gsomia.core.parties import Party
from gsomia.errors import InvalidInputError
from gsomia.standards import _xml
from gsomia.standards._policies import TAGS, CategoryKind, Tag, policy_of

__all__ = ["NS_SPIF", "PartyFile", "scheme_from_spif", "spif_for"]

NS_SPIF = "http://www.xmlspif.org/spif"
NS_GSOMIA_SPIF = "urn:gsomia:spif:1:0"
_S = f"{{{NS_SPIF}}}"
_G = f"{{{NS_GSOMIA_SPIF}}}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_XSD = "xmlspif.xsd"
_PRIVILEGE = "1.3.26.0.4774.5.24.1"  # ADatP-4774.1's privilegeId and rbacId for SPIFs
_TAG_TYPES = {
    CategoryKind.PERMISSIVE: "permissive",
    CategoryKind.RESTRICTIVE: "restrictive",
    CategoryKind.INFORMATIVE: "tagType7",
}


def _generalized(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def _periods(agreement: Agreement) -> list[tuple[datetime, datetime | None]]:
    """When the agreement was in force: [start, end) stretches (end None: still in force)."""
    periods: list[tuple[datetime, datetime | None]] = []
    start: datetime | None = None
    for transition in agreement.transitions:
        if transition.status.in_force and start is None:
            start = transition.at
        elif not transition.status.in_force and start is not None:
            periods.append((start, transition.at))
            start = None
    if start is not None:
        periods.append((start, None))
    return periods


def _window(agreements: list[Agreement], at: datetime) -> tuple[datetime | None, datetime | None]:
    """The stretch around ``at`` over which no agreement of the party enters into or leaves force
    and no equivalence row starts or ends (a party's equivalence change)."""
    changes = sorted(
        {edge for a in agreements for start, end in _periods(a) for edge in (start, end) if edge is not None}
        | {bound for a in agreements for bound in a.equivalence.bounds()}
    )
    before = [c for c in changes if c <= at]
    after = [c for c in changes if c > at]
    return (before[-1] if before else None), (after[0] if after else None)


def _equivalences(
    party: Party, agreements: list[Agreement], catalogue: Catalogue, at: datetime
) -> dict[str, list[tuple[str, int, str]]]:
    """level name -> [(partner policy name, partner lacv, applied)], from the agreements given,
    with the rows that apply at ``at``."""
    found: dict[tuple[str, str, int], set[str]] = {}
    for agreement in agreements:
        for (src, src_level, dst), dst_level in agreement.equivalence.directed(at).items():
            if src == party.code:
                other = catalogue.party(dst)
                key = (src_level, policy_of(other).name, other.scheme.level(dst_level).rank)
                found.setdefault(key, set()).add("encrypt")
            elif dst == party.code:
                other = catalogue.party(src)
                key = (dst_level, policy_of(other).name, other.scheme.level(src_level).rank)
                found.setdefault(key, set()).add("decrypt")
    out: dict[str, list[tuple[str, int, str]]] = {}
    for (level, policy, lacv), applied in sorted(found.items()):
        out.setdefault(level, []).append((policy, lacv, "both" if len(applied) == 2 else applied.pop()))
    return out


def _marking(parent: etree._Element, phrase: str) -> None:
    data = etree.SubElement(parent, _S + "markingData", phrase=phrase)
    data.set(_XML_LANG, "en")
    etree.SubElement(data, _S + "code").text = "pageTopBottom"


def _tag_set(parent: etree._Element, oid: str, tag: Tag, values: list[str]) -> None:
    tag_set = etree.SubElement(parent, _S + "securityCategoryTagSet", name=tag.name, id=f"{oid}.{tag.arc}")
    category = etree.SubElement(
        tag_set, _S + "securityCategoryTag", name=tag.name, tagType=_TAG_TYPES[tag.kind]
    )
    if tag.kind is CategoryKind.INFORMATIVE:
        category.set("tag7Encoding", "securityAttributes")
    for n, value in enumerate(values, start=1):
        etree.SubElement(category, _S + "tagCategory", name=value, lacv=str(n))


def spif_for(catalogue: Catalogue, party_code: str, at: datetime) -> bytes:
    """The party's scheme as an XML-SPIF, with the equivalences of its agreements in force at ``at``."""
    party = catalogue.party(party_code)
    policy = policy_of(party)
    mine = list(catalogue.agreements_of(party.code))
    in_force = [a for a in mine if a.state_at(at).in_force]
    root = etree.Element(
        _S + "SPIF",
        nsmap={"spif": NS_SPIF, "g": NS_GSOMIA_SPIF},
        schemaVersion="2.1",
        version="1",
        creationDate=_generalized(at),
        originatorDN=f"CN=gsomia,O={party.code}",
        keyIdentifier="00",
        privilegeId=_PRIVILEGE,
        rbacId=_PRIVILEGE,
    )
    start, end = _window(mine, at)
    if start is not None:
        root.set("notBefore", _generalized(start))
    if end is not None:
        root.set("notAfter", _generalized(end))
    etree.SubElement(root, _S + "securityPolicyId", name=policy.name, id=policy.oid)
    classifications = etree.SubElement(root, _S + "securityClassifications")
    equivalences = _equivalences(party, in_force, catalogue, at)
    for level in sorted(party.scheme.levels, key=lambda lv: lv.rank):
        element = etree.SubElement(
            classifications,
            _S + "securityClassification",
            name=level.name,
            lacv=str(level.rank),
            hierarchy=str(level.rank),
        )
        for other, lacv, applied in equivalences.get(level.name, []):
            etree.SubElement(
                element, _S + "equivalentClassification", policyRef=other, lacv=str(lacv), applied=applied
            )
        _marking(element, level.gloss)
    tag_sets = etree.SubElement(root, _S + "securityCategoryTagSets")
    topics = sorted({t for a in mine for t in (a.scope_topics or ())})
    values = {
        "Releasable To": sorted(c for c in catalogue.parties if c != party.code),
        "Need To Know": topics,
        "Caveats": sorted(CAVEATS),
        "Purpose": sorted({p for a in mine for p in a.purposes}),
        "Agreement": sorted(a.id for a in mine),
    }
    for name, tag in TAGS.items():
        _tag_set(tag_sets, policy.oid, tag, values[name])
    partners = sorted({p for a in in_force for p in a.parties if p != party.code})
    if partners:
        equivalent = etree.SubElement(root, _S + "equivalentPolicies")
        for code in partners:
            partner = policy_of(catalogue.party(code))
            etree.SubElement(equivalent, _S + "equivalentPolicy", name=partner.name, id=partner.oid)
    extensions = etree.SubElement(root, _S + "extensions")
    scheme = etree.SubElement(
        extensions, _G + "scheme", party=party.code, name=party.name, title=party.scheme.title
    )
    if party.scheme.notes:
        scheme.set("notes", party.scheme.notes)
    for assumption in party.scheme.assumptions:
        etree.SubElement(scheme, _G + "assumption", text=assumption.text, consequence=assumption.consequence)
    for level in party.scheme.levels:
        element = etree.SubElement(
            scheme, _G + "level", name=level.name, alias=level.alias, gloss=level.gloss, rank=str(level.rank)
        )
        if level.valid_from is not None:
            element.set("validFrom", level.valid_from.isoformat())
        if level.valid_until is not None:
            element.set("validUntil", level.valid_until.isoformat())
    for topic in sorted(party.topics):
        etree.SubElement(scheme, _G + "topic", name=topic)
    for agreement in sorted(mine, key=lambda a: a.id):
        element = etree.SubElement(scheme, _G + "agreement", id=agreement.id)
        for begin, finish in _periods(agreement):
            period = etree.SubElement(element, _G + "inForce", notBefore=_generalized(begin))
            if finish is not None:
                period.set("notAfter", _generalized(finish))
    _xml.validate(root, _XSD, "SPIF")
    return _xml.serialise(root)


@dataclass(frozen=True, slots=True)
class PartyFile:
    """A party file in the data format, as TOML text, and the party it describes."""

    code: str
    text: str


def _alias(name: str, lacv: str, taken: set[str]) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    alias = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or f"level-{lacv}"
    while alias in taken:
        alias = f"{alias}-{lacv}"
    taken.add(alias)
    return alias


def _bound(text: str) -> datetime:
    """A level's validity bound from the gsomia extension: an ISO 8601 instant with its offset."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInputError(f"SPIF: {text!r} is not an ISO 8601 instant") from exc
    if value.tzinfo is None:
        raise InvalidInputError(f"SPIF: {text!r} has no UTC offset")
    return value


def scheme_from_spif(data: bytes | str, *, party: str | None = None, name: str | None = None) -> PartyFile:
    """A party file from a SPIF: gsomia's (everything comes back as it was) or a partner's own
    (then give ``party``; the level aliases are derived from the names, the gloss is the English
    marking phrase)."""
    root = _xml.parse(data, "SPIF")
    if etree.QName(root).text != _S + "SPIF":
        raise InvalidInputError(f"SPIF: the root {etree.QName(root).text} is not an XML-SPIF")
    _xml.validate(root, _XSD, "SPIF")
    policy = root.find(_S + "securityPolicyId")
    if policy is None:  # the schema requires it; kept for the type checker
        raise InvalidInputError("SPIF: no securityPolicyId")
    ours = root.find(f"{_S}extensions/{_G}scheme")
    levels: list[dict[str, Any]] = []
    notes: str | None = None
    topics: list[str] = []  # a partner's own policy declares none: add them to the file it becomes
    if ours is not None:
        code, title, full_name = str(ours.get("party")), str(ours.get("title")), str(ours.get("name"))
        notes = ours.get("notes")
        for level in ours.findall(_G + "level"):
            entry: dict[str, Any] = {
                "name": level.get("name"),
                "alias": level.get("alias"),
                "gloss": level.get("gloss"),
                "rank": int(str(level.get("rank"))),
            }
            for attribute, key in (("validFrom", "valid_from"), ("validUntil", "valid_until")):
                bound = level.get(attribute)
                if bound is not None:
                    entry[key] = _bound(bound)
            levels.append(entry)
        topics = [str(t.get("name")) for t in ours.findall(_G + "topic")]
    else:
        if not party or not re.fullmatch(r"[A-Z]{3}", party):
            raise InvalidInputError("SPIF: a partner's own policy needs --party (its trigraph, e.g. GBR)")
        code, title, full_name = party, str(policy.get("name")), name or str(policy.get("name"))
        taken: set[str] = set()
        for level in root.iterfind(f"{_S}securityClassifications/{_S}securityClassification"):
            english = level.find(f"{_S}markingData[@{{http://www.w3.org/XML/1998/namespace}}lang='en']")
            gloss = english.get("phrase") if english is not None else None
            levels.append(
                {
                    "name": level.get("name"),
                    "alias": _alias(str(level.get("name")), str(level.get("lacv")), taken),
                    "gloss": gloss or str(level.get("name")),
                    "rank": int(str(level.get("hierarchy"))),
                }
            )
    document: dict[str, Any] = {
        "party": {"code": code, "name": full_name} | ({"topics": topics} if topics else {}),
        "scheme": {"title": title, "levels": sorted(levels, key=lambda lv: -lv["rank"])},
    }
    if ours is not None and notes:
        document["scheme"]["notes"] = notes
    if ours is not None:
        assumed = [
            {"text": str(a.get("text")), "consequence": str(a.get("consequence"))}
            for a in ours.findall(_G + "assumption")
        ]
        if assumed:
            document["scheme"]["assumptions"] = assumed
    if ours is None:  # a partner's policy keeps its own name and OID, so its labels map
        document["scheme"]["policy"] = {"name": policy.get("name"), "oid": policy.get("id")}
    text = f"# {full_name}: read from its XML-SPIF ({policy.get('name')}, {policy.get('id')}).\n"
    return PartyFile(code, text + tomli_w.dumps(document))
