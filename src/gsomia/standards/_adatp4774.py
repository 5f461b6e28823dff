"""gsomia labels as NATO ADatP-4774 confidentiality metadata labels, in XML and in JSON.

A gsomia :class:`~gsomia.core.labels.SecurityLabel` becomes one
``originatorConfidentialityLabel`` (the originator's policy and classification) and one
``alternativeConfidentialityLabel`` per party holding an equivalent (the label's own
alternatives; with ``at``, also every party it is releasable to whose equivalent an agreement
in force at that instant gives). Each carries:

- ``PolicyIdentifier`` (name and ``urn:oid:`` URI of the party's scheme, see ``_policies``),
  ``Classification`` (the level's national name);
- ``PrivacyMark``: the handling-only caveat (``G2G-ONLY``), if the label has one;
- ``Category`` elements: ``Releasable To`` (PERMISSIVE, trigraphs), ``Need To Know``
  (PERMISSIVE, topics), ``Caveats`` (RESTRICTIVE, the other caveats), ``Purpose``
  (INFORMATIVE) and, on an alternative, ``Agreement`` (INFORMATIVE). An empty PERMISSIVE
  category is written all the same: it lets nobody pass, which is what gsomia means by it;
- ``OriginatorID`` (``urn:gsomia:party:KOR``), ``CreationDateTime``, and ``ReviewDateTime``
  when the label has a review instant.

Parsing is the reverse and fails closed: an unknown policy, classification, party, category
or category type, a missing ``Releasable To``/``Need To Know``/``Purpose``, or an alternative
that an agreement's equivalence table contradicts is refused with a :class:`LabelError` naming
it. Round trip: ``from_labels(to_labels(label)) == label`` for every label.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import CAVEATS, AlternativeLabel, CaveatEffect, SecurityLabel
from gsomia.errors import GsomiaError, InvalidInputError, LabelError
from gsomia.standards import _xml
from gsomia.standards._policies import (
    AGREEMENT,
    NEED_TO_KNOW,
    PURPOSE,
    RELEASABLE_TO,
    TAGS,
    Policy,
    party_of_urn,
    party_urn,
    policy_of,
    resolve_policy,
)
from gsomia.standards._policies import (
    CAVEATS as CAVEATS_TAG,
)

__all__ = [
    "LABELS_NS",
    "NS_4774",
    "Category",
    "ConfidentialityLabel",
    "Labels",
    "from_labels",
    "labels_from_json",
    "labels_from_xml",
    "labels_to_json",
    "labels_to_xml",
    "to_labels",
]

NS_4774 = "urn:nato:stanag:4774:confidentialitymetadatalabel:1:0"
LABELS_NS = "urn:gsomia:labels:1:0"
_S = f"{{{NS_4774}}}"
_ORIGINATOR = "originatorConfidentialityLabel"
_ALTERNATIVE = "alternativeConfidentialityLabel"
_URI_ID = "uniformResourceIdentifier"
_XSD = "adatp-4774.xsd"
_LABELS_XSD = "gsomia-labels.xsd"


@dataclass(frozen=True, slots=True)
class Category:
    """A 4774 ``Category``: tag name, type, optional URI and its generic values."""

    tag: str
    kind: str
    values: tuple[str, ...]
    uri: str | None = None


@dataclass(frozen=True, slots=True)
class ConfidentialityLabel:
    """One 4774 label (originator's or alternative), as the standard structures it."""

    policy: str
    policy_uri: str | None
    classification: str
    created: datetime
    privacy_mark: str | None = None
    categories: tuple[Category, ...] = ()
    originator_id: tuple[str, str] | None = None  # (IDType, value)
    review: datetime | None = None

    def category(self, tag: str) -> Category | None:
        found = [c for c in self.categories if c.tag == tag]
        if len(found) > 1:
            raise LabelError(f"4774 label: category {tag!r} appears {len(found)} times")
        return found[0] if found else None


@dataclass(frozen=True, slots=True)
class Labels:
    """An item's 4774 labels: the originator's and the alternatives."""

    originator: ConfidentialityLabel
    alternatives: tuple[ConfidentialityLabel, ...] = ()


# --- gsomia label -> 4774 ---


def _categories(label: SecurityLabel, policy: Policy, privacy: str | None) -> list[Category]:
    caveats = sorted(label.caveats - ({privacy} if privacy else set()))
    out = [
        Category(RELEASABLE_TO.name, RELEASABLE_TO.kind, tuple(sorted(label.releasable_to))),
        Category(NEED_TO_KNOW.name, NEED_TO_KNOW.kind, tuple(sorted(label.topics))),
    ]
    if caveats:
        out.append(Category(CAVEATS_TAG.name, CAVEATS_TAG.kind, tuple(caveats)))
    out.append(Category(PURPOSE.name, PURPOSE.kind, (label.purpose,)))
    return [Category(c.tag, c.kind, c.values, policy.tag_uri(TAGS[c.tag])) for c in out]


def _privacy_mark(label: SecurityLabel) -> str | None:
    handling = sorted(
        c for c in label.caveats if c in CAVEATS and CAVEATS[c].effect is CaveatEffect.HANDLING_ONLY
    )
    return handling[0] if handling else None


def _equivalents(label: SecurityLabel, catalogue: Catalogue, at: datetime) -> list[AlternativeLabel]:
    """The equivalent, under an agreement in force at ``at``, for each party the label reaches."""
    found: list[AlternativeLabel] = []
    held = {a.party for a in label.alternatives}
    agreements = sorted(
        catalogue.agreements_of(label.originator), key=lambda a: (len(a.parties), a.id)
    )  # the most specific (bilateral) first
    for party in sorted(label.releasable_to - held):
        for agreement in agreements:
            if party not in agreement.parties or not agreement.state_at(at).in_force:
                continue
            level = agreement.equivalence.map(label.originator, label.classification, party, at)
            if level is not None:
                found.append(AlternativeLabel(party, level, agreement.id))
                break
    return found


def to_labels(label: SecurityLabel, catalogue: Catalogue, *, at: datetime | None = None) -> Labels:
    """The 4774 labels of ``label``; with ``at``, also the equivalents agreements in force then give."""
    privacy = _privacy_mark(label)
    origin = policy_of(catalogue.party(label.originator))
    originator = ConfidentialityLabel(
        policy=origin.name,
        policy_uri=origin.uri,
        classification=label.classification,
        created=label.created,
        privacy_mark=privacy,
        categories=tuple(_categories(label, origin, privacy)),
        originator_id=(_URI_ID, party_urn(label.originator)),
        review=label.review,
    )
    alternatives = list(label.alternatives)
    if at is not None:
        alternatives += _equivalents(label, catalogue, at)
    alts = []
    for alt in alternatives:
        policy = policy_of(catalogue.party(alt.party))
        categories = [
            *_categories(label, policy, privacy),
            Category(AGREEMENT.name, AGREEMENT.kind, (alt.agreement,), policy.tag_uri(AGREEMENT)),
        ]
        alts.append(
            ConfidentialityLabel(
                policy=policy.name,
                policy_uri=policy.uri,
                classification=alt.classification,
                created=label.created,
                privacy_mark=privacy,
                categories=tuple(categories),
                originator_id=(_URI_ID, party_urn(alt.party)),
                review=label.review,
            )
        )
    return Labels(originator, tuple(alts))


# --- 4774 -> gsomia label ---


def _values(label: ConfidentialityLabel, tag: str, *, required: bool) -> tuple[str, ...] | None:
    category = label.category(tag)
    if category is None:
        if required:
            raise LabelError(
                f"4774 label: category {tag!r} is missing; gsomia cannot map the label without it"
            )
        return None
    return category.values


def _check_categories(label: ConfidentialityLabel, allowed: Iterable[str]) -> None:
    names = set(allowed)
    for category in label.categories:
        tag = TAGS.get(category.tag)
        if tag is None or category.tag not in names:
            raise LabelError(
                f"4774 label: category {category.tag!r} ({category.kind}) is not one gsomia can map; "
                f"known: {', '.join(sorted(names))}"
            )
        if category.kind != tag.kind:
            raise LabelError(f"4774 label: category {category.tag!r} is {tag.kind}, not {category.kind}")


def _party_of(label: ConfidentialityLabel, policy: Policy) -> None:
    if label.originator_id is None:
        return
    kind, value = label.originator_id
    named = party_of_urn(value) if kind == _URI_ID else None
    if named is not None and named != policy.party:
        raise LabelError(
            f"4774 label: OriginatorID names {named}, but the policy {policy.name} is {policy.party}'s"
        )


def _instant(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise LabelError(f"4774 label: {value.isoformat()} has no UTC offset")
    return value


def from_labels(labels: Labels, catalogue: Catalogue) -> SecurityLabel:
    """The gsomia label these 4774 labels carry, checked against the catalogue (fails closed)."""
    first = labels.originator
    _check_categories(first, (RELEASABLE_TO.name, NEED_TO_KNOW.name, CAVEATS_TAG.name, PURPOSE.name))
    origin = resolve_policy(catalogue, first.policy, first.policy_uri)
    _party_of(first, origin)
    scheme = catalogue.party(origin.party).scheme
    if not scheme.has(first.classification):
        known = ", ".join(lv.name for lv in scheme.levels)
        raise LabelError(
            f"4774 label: {origin.name} has no classification {first.classification!r}; known: {known}"
        )
    purposes = _values(first, PURPOSE.name, required=True) or ()
    if len(purposes) != 1:
        raise LabelError(f"4774 label: category 'Purpose' must hold exactly one value, not {len(purposes)}")
    releasable = _values(first, RELEASABLE_TO.name, required=True) or ()
    for code in releasable:
        if code not in catalogue.parties:
            raise LabelError(
                f"4774 label: 'Releasable To' names {code!r}, which is not a party this node knows"
            )
    caveats = list(_values(first, CAVEATS_TAG.name, required=False) or ())
    if first.privacy_mark is not None:
        caveats.append(first.privacy_mark)
    alternatives = [_alternative(alt, first, origin, catalogue) for alt in labels.alternatives]
    try:
        return catalogue.label(
            originator=origin.party,
            classification=first.classification,
            releasable_to=releasable,
            purpose=purposes[0],
            topics=_values(first, NEED_TO_KNOW.name, required=True) or (),
            caveats=caveats,
            created=_instant(first.created),
            review=None if first.review is None else _instant(first.review),
            alternatives=alternatives,
        )
    except LabelError:
        raise
    except GsomiaError as exc:
        raise LabelError(f"4774 label: {exc}") from exc


def _alternative(
    alt: ConfidentialityLabel, first: ConfidentialityLabel, origin: Policy, catalogue: Catalogue
) -> AlternativeLabel:
    _check_categories(alt, (*(c.tag for c in first.categories), AGREEMENT.name))
    policy = resolve_policy(catalogue, alt.policy, alt.policy_uri)
    _party_of(alt, policy)
    if policy.party == origin.party:
        raise LabelError(f"4774 label: an alternative label under the originator's own policy {policy.name}")
    agreements = _values(alt, AGREEMENT.name, required=True) or ()
    if len(agreements) != 1:
        raise LabelError(f"4774 label: an alternative label names {len(agreements)} agreements, not one")
    agreement = catalogue.agreement(agreements[0])
    # an alternative label added when the item was received stays as it was: any level the table
    # has given (a party's later equivalence change does not rewrite labels already held)
    given = [lv for _, lv in agreement.equivalence.entries(origin.party, first.classification, policy.party)]
    mapped = alt.classification if alt.classification in given else (given[-1] if given else None)
    if mapped != alt.classification:
        expected = f"maps it to {mapped}" if mapped else "gives it no equivalent"
        raise LabelError(
            f"4774 label: the alternative label says {policy.party} {alt.classification!r}, but "
            f"{agreement.id} {expected} for {origin.party} {first.classification}"
        )
    if alt.privacy_mark != first.privacy_mark or {
        c.tag: c.values for c in alt.categories if c.tag != AGREEMENT.name
    } != {c.tag: c.values for c in first.categories}:
        raise LabelError(
            f"4774 label: the alternative label for {policy.party} disagrees with the originator's "
            "releasability, need-to-know, caveats or purpose"
        )
    return AlternativeLabel(policy.party, alt.classification, agreement.id)


# --- XML ---


def _element(label: ConfidentialityLabel, role: str) -> etree._Element:
    root = etree.Element(_S + role, nsmap={"slab": NS_4774})
    if label.review is not None:
        root.set("ReviewDateTime", label.review.isoformat())
    info = etree.SubElement(root, _S + "ConfidentialityInformation")
    policy = etree.SubElement(info, _S + "PolicyIdentifier")
    policy.text = label.policy
    if label.policy_uri is not None:
        policy.set("URI", label.policy_uri)
    etree.SubElement(info, _S + "Classification").text = label.classification
    if label.privacy_mark is not None:
        etree.SubElement(info, _S + "PrivacyMark").text = label.privacy_mark
    for category in label.categories:
        element = etree.SubElement(info, _S + "Category", TagName=category.tag, Type=category.kind)
        if category.uri is not None:
            element.set("URI", category.uri)
        for value in category.values:
            etree.SubElement(element, _S + "GenericValue").text = value
    if label.originator_id is not None:
        kind, value = label.originator_id
        etree.SubElement(root, _S + "OriginatorID", IDType=kind).text = value
    etree.SubElement(root, _S + "CreationDateTime").text = label.created.isoformat()
    return root


def label_element(label: ConfidentialityLabel, *, alternative: bool = False) -> etree._Element:
    """One 4774 label element, valid against the shipped schema."""
    element = _element(label, _ALTERNATIVE if alternative else _ORIGINATOR)
    _xml.validate(element, _XSD, "4774 label")
    return element


def labels_to_xml(labels: Labels, *, item: str | None = None) -> bytes:
    """The labels as one XML document (gsomia's ``ConfidentialityLabels`` holding plain 4774 labels)."""
    root = etree.Element(f"{{{LABELS_NS}}}ConfidentialityLabels", nsmap={"gl": LABELS_NS, "slab": NS_4774})
    if item is not None:
        root.set("item", item)
    root.append(_element(labels.originator, _ORIGINATOR))
    for alt in labels.alternatives:
        root.append(_element(alt, _ALTERNATIVE))
    _xml.validate(root, _LABELS_XSD, "4774 labels")
    return _xml.serialise(root)


def _text(element: etree._Element, what: str) -> str:
    text = (element.text or "").strip()
    if not text:
        raise LabelError(f"4774 label: {what} is empty")
    return text


def _datetime(text: str, what: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise LabelError(f"4774 label: {what} {text!r} is not an instant") from exc
    return _instant(at)


def label_from_element(element: etree._Element) -> ConfidentialityLabel:
    """A 4774 label element (already schema-valid) as a :class:`ConfidentialityLabel`."""
    info = element.find(_S + "ConfidentialityInformation")
    if info is None:  # the schema requires it; kept for the type checker
        raise LabelError("4774 label: no ConfidentialityInformation")
    policy = info.find(_S + "PolicyIdentifier")
    classification = info.find(_S + "Classification")
    created = element.find(_S + "CreationDateTime")
    if policy is None or classification is None or created is None:
        raise LabelError("4774 label: PolicyIdentifier, Classification and CreationDateTime are required")
    if classification.get("URI") is not None:
        raise LabelError("4774 label: Classification carries a URI, which ADatP-4774 forbids")
    if element.find(_S + "SuccessionHandling") is not None:
        raise LabelError(
            "4774 label: SuccessionHandling is not something gsomia can map (labels change by version)"
        )
    categories = []
    for category in info.findall(_S + "Category"):
        values = []
        for value in category:
            if value.tag != _S + "GenericValue":
                raise LabelError(
                    f"4774 label: category {category.get('TagName')!r} holds {etree.QName(value).localname}; "
                    "only GenericValue is allowed"
                )
            values.append((value.text or "").strip())
        categories.append(
            Category(
                str(category.get("TagName")), str(category.get("Type")), tuple(values), category.get("URI")
            )
        )
    unknown = [etree.QName(e).text for e in info if etree.QName(e).namespace != NS_4774]
    unknown += [etree.QName(e).text for e in element if etree.QName(e).namespace != NS_4774]
    if unknown:
        raise LabelError(
            f"4774 label: extension element(s) {', '.join(unknown)} are not something gsomia can map"
        )
    privacy = info.find(_S + "PrivacyMark")
    originator_id = element.find(_S + "OriginatorID")
    review = element.get("ReviewDateTime")
    return ConfidentialityLabel(
        policy=_text(policy, "PolicyIdentifier"),
        policy_uri=policy.get("URI"),
        classification=_text(classification, "Classification"),
        created=_datetime(_text(created, "CreationDateTime"), "CreationDateTime"),
        privacy_mark=None if privacy is None else _text(privacy, "PrivacyMark"),
        categories=tuple(categories),
        originator_id=None
        if originator_id is None
        else (str(originator_id.get("IDType")), (originator_id.text or "").strip()),
        review=None if review is None else _datetime(review, "ReviewDateTime"),
    )


def labels_from_elements(elements: Iterable[etree._Element]) -> Labels:
    """Exactly one originator label and any alternatives, from 4774 label elements."""
    originators, alternatives = [], []
    for element in elements:
        _xml.validate(element, _XSD, "4774 label")
        name = etree.QName(element).localname
        if name == _ORIGINATOR:
            originators.append(label_from_element(element))
        elif name == _ALTERNATIVE:
            alternatives.append(label_from_element(element))
        else:
            raise LabelError(f"4774 label: a {name} is not something gsomia can map")
    if len(originators) != 1:
        raise LabelError(
            f"4774 labels: exactly one originatorConfidentialityLabel is needed, not {len(originators)}"
        )
    return Labels(originators[0], tuple(alternatives))


def labels_from_xml(data: bytes | str) -> Labels:
    """4774 labels from XML: gsomia's ``ConfidentialityLabels`` or a bare originator label."""
    root = _xml.parse(data, "4774 labels")
    if etree.QName(root).text == f"{{{LABELS_NS}}}ConfidentialityLabels":
        _xml.validate(root, _LABELS_XSD, "4774 labels")
        return labels_from_elements(list(root))
    if etree.QName(root).namespace != NS_4774:
        raise InvalidInputError(f"4774 labels: the root {etree.QName(root).text} is not an ADatP-4774 label")
    return labels_from_elements([root])


# --- JSON (the same structure, member for element) ---


def _label_json(label: ConfidentialityLabel) -> dict[str, Any]:
    policy: dict[str, Any] = {"value": label.policy}
    if label.policy_uri is not None:
        policy["URI"] = label.policy_uri
    info: dict[str, Any] = {"PolicyIdentifier": policy, "Classification": label.classification}
    if label.privacy_mark is not None:
        info["PrivacyMark"] = label.privacy_mark
    categories = []
    for c in label.categories:
        category: dict[str, Any] = {"TagName": c.tag, "Type": c.kind, "GenericValue": list(c.values)}
        if c.uri is not None:
            category["URI"] = c.uri
        categories.append(category)
    if categories:
        info["Category"] = categories
    out: dict[str, Any] = {"ConfidentialityInformation": info}
    if label.originator_id is not None:
        out["OriginatorID"] = {"IDType": label.originator_id[0], "value": label.originator_id[1]}
    out["CreationDateTime"] = label.created.isoformat()
    if label.review is not None:
        out["ReviewDateTime"] = label.review.isoformat()
    return out


def labels_to_json(labels: Labels) -> dict[str, Any]:
    """The labels in 4774's JSON form: ``originatorConfidentialityLabel`` and a list of alternatives."""
    labels_to_xml(labels)  # the same constraints as the XML form: never emit what the schema refuses
    out: dict[str, Any] = {_ORIGINATOR: _label_json(labels.originator)}
    if labels.alternatives:
        out[_ALTERNATIVE] = [_label_json(a) for a in labels.alternatives]
    return out


def _object(value: Any, what: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise LabelError(f"4774 JSON: {what} must be an object")
    extra = sorted(set(value) - allowed)
    if extra:
        raise LabelError(f"4774 JSON: {what} has member(s) gsomia cannot map: {', '.join(extra)}")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise LabelError(f"4774 JSON: {what} must be a string")
    return value


def _label_from_json(data: Any, role: str) -> etree._Element:
    """A JSON label as the equivalent XML element, so both forms pass the same schema."""
    label = _object(
        data, role, {"ConfidentialityInformation", "OriginatorID", "CreationDateTime", "ReviewDateTime"}
    )
    info = _object(
        label.get("ConfidentialityInformation"),
        f"{role}.ConfidentialityInformation",
        {"PolicyIdentifier", "Classification", "PrivacyMark", "Category"},
    )
    policy = _object(info.get("PolicyIdentifier"), f"{role}.PolicyIdentifier", {"value", "URI"})
    categories = []
    raw_categories = info.get("Category") or []
    if not isinstance(raw_categories, list):
        raise LabelError(f"4774 JSON: {role}.Category must be a list")
    for n, raw in enumerate(raw_categories):
        where = f"{role}.Category[{n}]"
        category = _object(raw, where, {"TagName", "Type", "URI", "GenericValue"})
        values = category.get("GenericValue") or []
        if not isinstance(values, list):
            raise LabelError(f"4774 JSON: {where}.GenericValue must be a list")
        categories.append(
            Category(
                _string(category.get("TagName"), f"{where}.TagName"),
                _string(category.get("Type"), f"{where}.Type"),
                tuple(_string(v, f"{where}.GenericValue") for v in values),
                None if category.get("URI") is None else _string(category.get("URI"), f"{where}.URI"),
            )
        )
    originator_id = None
    if label.get("OriginatorID") is not None:
        raw_id = _object(label["OriginatorID"], f"{role}.OriginatorID", {"IDType", "value"})
        originator_id = (
            _string(raw_id.get("IDType"), "IDType"),
            _string(raw_id.get("value"), "OriginatorID"),
        )
    review = label.get("ReviewDateTime")
    parsed = ConfidentialityLabel(
        policy=_string(policy.get("value"), f"{role}.PolicyIdentifier.value"),
        policy_uri=None if policy.get("URI") is None else _string(policy.get("URI"), "PolicyIdentifier.URI"),
        classification=_string(info.get("Classification"), f"{role}.Classification"),
        created=_datetime(
            _string(label.get("CreationDateTime"), f"{role}.CreationDateTime"), "CreationDateTime"
        ),
        privacy_mark=None if info.get("PrivacyMark") is None else _string(info["PrivacyMark"], "PrivacyMark"),
        categories=tuple(categories),
        originator_id=originator_id,
        review=None if review is None else _datetime(_string(review, "ReviewDateTime"), "ReviewDateTime"),
    )
    return _element(parsed, role)


def labels_from_json(data: Any) -> Labels:
    """4774 labels from their JSON form (a parsed value or JSON text)."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise InvalidInputError(f"4774 JSON: not JSON ({exc})") from exc
    root = _object(data, "the document", {_ORIGINATOR, _ALTERNATIVE})
    if _ORIGINATOR not in root:
        raise LabelError(f"4774 JSON: {_ORIGINATOR} is required")
    alternatives = root.get(_ALTERNATIVE) or []
    if not isinstance(alternatives, list):
        raise LabelError(f"4774 JSON: {_ALTERNATIVE} must be a list")
    elements = [_label_from_json(root[_ORIGINATOR], _ORIGINATOR)]
    elements += [_label_from_json(a, _ALTERNATIVE) for a in alternatives]
    return labels_from_elements(elements)
