"""The STIX 2.1 mapping: an item is a STIX object, its gsomia label a ``marking-definition``.

- An item whose payload is itself a STIX 2.1 object with the item's id (an ``indicator``, a
  ``report``, a ``note`` ...) *is* that object. Any other item is wrapped in an
  ``x-gsomia-item`` object (a STIX 2.1 ``new-sdo`` extension: ``item_id``, ``payload_type``
  and ``payload`` — the JSON value, or ``payload_base64`` for bytes).
- The label travels as a ``marking-definition`` carrying the gsomia property extension
  (:data:`EXTENSION_ID`, JSON schema in ``schema/gsomia-label.json``), referenced from the
  object's ``object_marking_refs``. Its id is derived from the label, so the same label is the
  same marking. Alternative labels ride along as information; a receiver recomputes its own.
- TLP (2.0, and 1.0 for old feeds) markings in the payload are kept as they are: TLP is in
  addition to the gsomia label, never instead of it. ``TLP:RED`` never leaves the node
  (:func:`is_tlp_red`; the TAXII server withholds such objects).
- Beside the gsomia marking every object gets, for readers that know nothing of gsomia, an ISA
  ACS 3.0 marking (:func:`acs_marking_for`: classification, permitted nationalities,
  further sharing; when the originator's level has a US equivalent) and, unless it already
  carries TLP, a TLP 2.0 marking with its fixed id (:func:`tlp_for`): TLP:AMBER+STRICT when the
  label forbids onward release, else TLP:AMBER. TLP:AMBER+STRICT is enforced as "no onward
  release": only the originator releases such an item (:func:`gsomia.core.tlp.is_tlp_amber_strict`).
- A version is the item's label version: ``modified`` is the instant it was added (its ingest or
  its last label change), never before ``created``; a label change is a new STIX version.
- Import refuses an object without exactly one gsomia marking unless a default label is given
  explicitly, an object referring to a marking the bundle does not define (TLP aside), and
  anything that is not a valid, versioned STIX 2.1 object; :func:`import_objects` answers per
  object, so one bad object refuses only itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import stix2
import stix2.exceptions

from gsomia._canonical import loads
from gsomia._codec import canonical, label_from_dict, label_to_dict
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import epoch_us
from gsomia.core.labels import CAVEATS, CaveatEffect, SecurityLabel
from gsomia.core.portions import MAX_PORTIONS, banner
from gsomia.core.tlp import TLP_AMBER_STRICT, TLP_RED, is_tlp_red
from gsomia.errors import GsomiaError, InvalidInputError

__all__ = [
    "ACS_EXTENSION_ID",
    "EXTENSION_ID",
    "IDENTITY_ID",
    "ITEM_TYPE",
    "STIX_MEDIA_TYPE",
    "TLP2",
    "TLP_RED",
    "ImportedObject",
    "ObjectResult",
    "acs_marking_for",
    "check_banner",
    "definitions_of",
    "extension_objects",
    "from_bundle",
    "from_objects",
    "import_objects",
    "is_tlp_red",
    "label_schema",
    "marked",
    "marking_for",
    "stix_id_of",
    "stix_timestamp",
    "timestamp_us",
    "tlp_for",
    "to_bundle",
    "to_stix",
    "us_of_timestamp",
]

STIX_MEDIA_TYPE = "application/stix+json;version=2.1"
ITEM_TYPE = "x-gsomia-item"
IDENTITY_ID = "identity--a2180151-9a70-4cef-9d4b-8afa80bd2e5a"
EXTENSION_ID = "extension-definition--adba1d4e-74dc-4c8e-b9a9-f698abcdf3f7"
_EPOCH = (
    "2024-01-01T00:00:00.000Z"  # when the extension was first defined: fixed, so ids and versions stay stable
)

ACS_EXTENSION_ID = "extension-definition--3a65884d-005a-4290-8335-cb2d778a83ce"  # ISA ACS 3.0 markings
_TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
_TLP2_IDS = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "amber+strict": next(iter(TLP_AMBER_STRICT)),
    "red": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP2: dict[str, dict[str, Any]] = {
    marking_id: {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": marking_id,
        "created": "2022-10-01T00:00:00.000Z",
        "name": f"TLP:{level.upper()}",
        "extensions": {_TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}},
    }
    for level, marking_id in _TLP2_IDS.items()
}
"""The TLP 2.0 marking definitions as FIRST and OASIS publish them (fixed ids and content)."""

_TLP = (
    TLP_RED
    | set(TLP2)
    | {
        "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",  # 1.0 WHITE
        "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",  # 1.0 GREEN
        "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",  # 1.0 AMBER
    }
)
_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$")
_STIX_ID = re.compile(
    r"^([a-z][a-z0-9-]{1,248})--([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_FRAMEWORK = frozenset({IDENTITY_ID, EXTENSION_ID})
# a UUID whose str() is the text itself and whose version is 4 (version 4 implies the RFC 4122 variant)
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@cache
def label_schema() -> dict[str, Any]:
    """The JSON schema of the gsomia marking extension (``schema/gsomia-label.json``)."""
    text = resources.files("gsomia.taxii").joinpath("schema/gsomia-label.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def stix_timestamp(at: datetime) -> str:
    """STIX 2.1 timestamp: UTC, millisecond precision, ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@lru_cache(maxsize=4096)
def _stamp(at: datetime) -> tuple[str, int]:
    """:func:`stix_timestamp` of ``at`` and the instant it names in microseconds (what
    :func:`us_of_timestamp` reads back from it), made once per instant: a label's creation instant is
    written on its item's object, its marking and its ACS marking."""
    text = stix_timestamp(at)
    return text, us_of_timestamp(text, "created")


def timestamp_us(us: int) -> str:
    """An exact STIX timestamp (microseconds, ``Z``) of an integer instant in microseconds."""
    seconds, fraction = divmod(us, 1_000_000)
    return f"{_second(seconds)}.{fraction:06d}Z"


@lru_cache(maxsize=1024)
def _second(seconds: int) -> str:
    """The whole-second part of :func:`timestamp_us` (items added together share their seconds)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def us_of_timestamp(text: str, name: str) -> int:
    """The instant of a STIX/RFC 3339 timestamp in whole microseconds (finer digits truncated).

    >>> us_of_timestamp(timestamp_us(1_566_630_000_123_456), "t")
    1566630000123456
    """
    found = _TIMESTAMP.match(text) if isinstance(text, str) else None
    if found is None:
        raise InvalidInputError(f"{name}: {text!r} is not a timestamp such as 2019-08-24T07:00:00.000Z")
    whole, fraction, zone = found.groups()
    try:
        at = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    except ValueError as exc:
        raise InvalidInputError(f"{name}: {text!r} is not a timestamp") from exc
    micros = int(((fraction or "") + "000000")[:6])
    return (int(at.timestamp()) * 1_000_000) + micros


def _derived_uuid(kind: str, key: str) -> str:
    """A stable id in UUIDv4 form (what the validator asks of SDO ids) derived from ``key``."""
    digest = hashlib.sha256(f"gsomia:{kind}:{key}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _drop_empty(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None and v != []}  # STIX forbids nulls and empty lists


@lru_cache(maxsize=4096)
def marking_for(label: SecurityLabel) -> dict[str, Any]:
    """The ``marking-definition`` carrying ``label``; the same label always gives the same id.

    Labels repeat across items, so the marking is made once per label (callers never change it)."""
    content = _drop_empty(label_to_dict(label))
    content["alternatives"] = [dict(a) for a in content.get("alternatives", [])] or None
    content = _drop_empty(content)
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": f"marking-definition--{_derived_uuid('label', canonical(content))}",
        "created": _stamp(label.created)[0],
        "created_by_ref": IDENTITY_ID,
        "name": f"gsomia {label.originator} {label.classification}",
        "extensions": {EXTENSION_ID: {"extension_type": "property-extension", **content}},
    }


def extension_objects() -> list[dict[str, Any]]:
    """The identity and ``extension-definition`` every gsomia bundle carries."""
    return [dict(o) for o in _EXTENSION_OBJECTS]


_EXTENSION_OBJECTS: tuple[dict[str, Any], ...] = (
    {
        "type": "identity",
        "spec_version": "2.1",
        "id": IDENTITY_ID,
        "created": _EPOCH,
        "modified": _EPOCH,
        "name": "gsomia",
        "description": "Intelligence-sharing agreements between states as running, enforced software",
        "identity_class": "system",
    },
    {
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": EXTENSION_ID,
        "created_by_ref": IDENTITY_ID,
        "created": _EPOCH,
        "modified": _EPOCH,
        "name": "gsomia security label",
        "description": "A gsomia confidentiality label (policy, originator's classification, "
        "releasability, caveats, purpose, topics, alternative labels) on a marking-definition; "
        "and x-gsomia-item, an item whose payload is not itself a STIX object.",
        "schema": "gsomia/taxii/schema/gsomia-label.json (JSON Schema 2020-12, shipped with gsomia)",
        "version": "1.0.0",
        "extension_types": ["property-extension", "new-sdo"],
    },
)


_NOT_JSON = object()
PORTIONS = "portions"  # an item in portions: its payload is {"portions": [...]} of the portions read


def _json_payload(payload_type: str, payload: bytes) -> Any:
    if payload_type != "json":
        return _NOT_JSON
    try:
        return loads(payload)  # json.loads's value (orjson where the two agree: a page parses hundreds)
    except ValueError:
        return _NOT_JSON


def _native(item_id: str, payload_type: str, payload: bytes) -> dict[str, Any] | None:
    """The payload as a STIX object, if it is one and carries the item's own id."""
    return _native_of(item_id, _json_payload(payload_type, payload))


def _native_of(item_id: str, data: Any) -> dict[str, Any] | None:
    if (
        isinstance(data, dict)
        and data.get("spec_version") == "2.1"
        and data.get("id") == item_id
        and isinstance(data.get("type"), str)
        and _STIX_ID.match(item_id)
        and item_id.startswith(f"{data['type']}--")
        and _versioned(data)
        and _markings_shaped(data)
    ):
        return data
    return None


def _markings_shaped(data: Mapping[str, Any]) -> bool:
    """Whether the object's markings have STIX's shape, as the server reads them (a list of
    identifiers; a list of objects whose ``marking_ref``, if any, is an identifier). A payload that
    says it is a STIX object but holds, say, ``"object_marking_refs": 5`` is served wrapped as any
    other JSON payload (an ``x-gsomia-item``), never taken at its word: reading its markings as the
    object's was a TypeError, and the page serving it failed for every reader."""
    refs = data.get("object_marking_refs", [])
    granular = data.get("granular_markings", [])
    return (
        isinstance(refs, list)
        and all(isinstance(r, str) for r in refs)
        and isinstance(granular, list)
        and all(isinstance(g, dict) and isinstance(g.get("marking_ref", ""), str) for g in granular)
    )


def _versioned(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` has the timestamps a versioned STIX object needs (``modified`` >= ``created``)."""
    try:
        created = us_of_timestamp(data.get("created"), "created")  # type: ignore[arg-type]
        modified = us_of_timestamp(data.get("modified"), "modified")  # type: ignore[arg-type]
    except InvalidInputError:
        return False
    return modified >= created


def stix_id_of(item_id: str, payload_type: str, payload: bytes) -> str:
    """The STIX id under which an item is served."""
    if _native(item_id, payload_type, payload) is not None:
        return item_id
    return _item_stix_id(item_id)


def _item_stix_id(item_id: str) -> str:
    """The STIX id of an item whose payload is not itself a STIX object with the item's id: the id
    itself where it is a UUIDv4 as ``str(uuid.UUID(...))`` writes one (lower case, RFC 4122 variant),
    else one derived from it."""
    if _UUID4.fullmatch(item_id):
        return f"{ITEM_TYPE}--{item_id}"
    return f"{ITEM_TYPE}--{_derived_uuid('item', item_id)}"


def _later(text: str, us: int) -> str:
    return text if us_of_timestamp(text, "modified") >= us else timestamp_us(us)


def tlp_for(label: SecurityLabel) -> str:
    """The TLP 2.0 marking a gsomia label implies: AMBER+STRICT when it forbids onward release."""
    blocking = any(
        CAVEATS.get(c) is None or CAVEATS[c].effect is not CaveatEffect.HANDLING_ONLY for c in label.caveats
    )
    return _TLP2_IDS["amber+strict" if blocking else "amber"]


def to_stix(
    item_id: str,
    label: SecurityLabel,
    payload_type: str,
    payload: bytes,
    ingested: datetime,
    *,
    added_us: int | None = None,
    label_version: int = 1,
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """The STIX object for an item, marked with its gsomia label (and any TLP it already had).

    ``added_us`` is when this version was added; with a ``catalogue`` the object also gets the
    ACS 3.0 marking and, unless it already carries TLP, the TLP 2.0 marking the label implies.
    """
    return marked(
        item_id,
        label,
        payload_type,
        payload,
        ingested,
        added_us=added_us,
        label_version=label_version,
        catalogue=catalogue,
    )[0]


def marked(
    item_id: str,
    label: SecurityLabel,
    payload_type: str,
    payload: bytes,
    ingested: datetime,
    *,
    added_us: int | None = None,
    label_version: int = 1,
    catalogue: Catalogue | None = None,
    portions: Sequence[SecurityLabel] = (),
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The item's STIX object and the definitions it refers to (see :func:`definitions_of`), each
    marking made once. An item in portions (``payload_type`` ``portions``: the portions the reader
    may read, ``portions`` their labels in order) is an ``x-gsomia-item`` whose object marking is
    the item's label (the highest of those portions') and whose ``granular_markings`` mark each
    portion (``payload.portions.[i]``) with its own label, as STIX 2.1 §7.2.3 marks parts of an
    object."""
    version_us = added_us if added_us is not None else epoch_us(ingested)
    gsomia = marking_for(label)
    definitions = [*_EXTENSION_OBJECTS, gsomia]
    refs = [gsomia["id"]]
    if catalogue is not None:
        acs = acs_marking_for(label, catalogue, gsomia["id"])
        if acs is not None:
            refs.append(acs["id"])
            definitions.append(acs)
    data = _json_payload(payload_type, payload)
    native = _native_of(item_id, data)
    if native is not None:
        own = [r for r in native.get("object_marking_refs", []) if r not in refs]
        if catalogue is not None and not any(r in _TLP for r in own):
            refs.append(tlp_for(label))
        out = {**native, "object_marking_refs": [*refs, *own]}
        if label_version > 1:  # a label change is a new version of the object
            out["modified"] = _later(native["modified"], version_us)
    else:
        if catalogue is not None:
            refs.append(tlp_for(label))
        created, created_us = _stamp(label.created)
        out = {
            "type": ITEM_TYPE,
            "spec_version": "2.1",
            "id": _item_stix_id(item_id),  # not native (above): stix_id_of without parsing it again
            "created": created,
            "modified": created if created_us >= version_us else timestamp_us(version_us),  # _later
            "item_id": item_id,
            "payload_type": payload_type,
            "object_marking_refs": refs,
            "extensions": {EXTENSION_ID: {"extension_type": "new-sdo"}},
        }
        if payload_type == "json":
            out["payload"] = data
        elif payload_type == PORTIONS:
            out["payload"] = json.loads(payload)
            granular = _portion_markings(portions, catalogue)
            out["granular_markings"] = [g for g, _ in granular]
            definitions += [d for _, ds in granular for d in ds]
        else:
            out["payload_base64"] = base64.b64encode(payload).decode()
    definitions += _tlp_definitions(out)
    return out, definitions


def _portion_markings(
    labels: Sequence[SecurityLabel], catalogue: Catalogue | None
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each portion's granular marking (its gsomia label, and the ACS 3.0 one where the level has a US
    equivalent) and the definitions they refer to."""
    out = []
    for n, label in enumerate(labels):
        definition = marking_for(label)
        definitions = [definition]
        if catalogue is not None:
            acs = acs_marking_for(label, catalogue, definition["id"])
            if acs is not None:
                definitions.append(acs)
        for d in definitions:
            out.append(({"marking_ref": d["id"], "selectors": [f"payload.portions.[{n}]"]}, [d]))
    return out


def _tlp_definitions(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    refs: list[Any] = list(obj.get("object_marking_refs") or [])
    refs += [g.get("marking_ref") for g in obj.get("granular_markings") or [] if isinstance(g, Mapping)]
    return [TLP2[r] for r in dict.fromkeys(refs) if isinstance(r, str) and r in TLP2]


_ACS_POLICY = "urn:isa:policy:acs:ns:v3.0?privdefault=deny&sharedefault=deny"
_ACS_LEVELS = {"TOP SECRET": "TS", "SECRET": "S", "CONFIDENTIAL": "C"}


def _us_level(label: SecurityLabel, catalogue: Catalogue) -> str | None:
    """The US level of the label's classification (see :func:`_us_level_of`), looked up once per
    catalogue, originator and classification."""
    if label.originator == "USA":
        return label.classification
    kept = _US_LEVELS.get(id(catalogue))
    if kept is None or kept[0] is not catalogue:  # the id of a catalogue no longer held: start again
        kept = (catalogue, {})
        with _US_LEVELS_LOCK:
            if len(_US_LEVELS) >= _US_LEVEL_CATALOGUES:
                _US_LEVELS.clear()
            _US_LEVELS[id(catalogue)] = kept
    levels = kept[1]
    key = (label.originator, label.classification)
    if key not in levels:
        levels[key] = _us_level_of(label.originator, label.classification, catalogue)
    return levels[key]


# catalogues are frozen (a changed one is a new object): id -> (the catalogue, held so that its id is
# not reused while it is here, and its (originator, classification) -> US level)
_US_LEVELS: dict[int, tuple[Catalogue, dict[tuple[str, str], str | None]]] = {}
_US_LEVELS_LOCK = threading.Lock()
_US_LEVEL_CATALOGUES = 16


def _us_level_of(originator: str, classification: str, catalogue: Catalogue) -> str | None:
    """The US level ``originator``'s ``classification`` maps to under the smallest agreement with the
    USA that maps it."""
    for agreement in sorted(catalogue.agreements_of(originator), key=lambda a: (len(a.parties), a.id)):
        if "USA" in agreement.parties:
            level = agreement.equivalence.map(originator, classification, "USA")
            if level is not None:
                return level
    return None


def acs_marking_for(
    label: SecurityLabel, catalogue: Catalogue, basis: str | None = None
) -> dict[str, Any] | None:
    """The ISA ACS 3.0 marking of ``label``: its US classification (under an agreement's equivalence),
    the nationalities it may reach and whether they may share it further; ``None`` when the
    originator's level has no US equivalent (the gsomia marking alone then speaks for it)."""
    level = _us_level(label, catalogue)
    if level not in _ACS_LEVELS:
        return None
    return _acs_marking(label, level, basis or marking_for(label)["id"])


@lru_cache(maxsize=4096)
def _acs_marking(label: SecurityLabel, level: str, key: str) -> dict[str, Any]:
    """The ACS marking of ``label`` at the US ``level``, made once per label like :func:`marking_for`
    (``key``: the gsomia marking's id, which already digests the whole label; callers never change it)."""
    nations = sorted({label.originator, *label.releasable_to})
    onward = tlp_for(label) == _TLP2_IDS["amber"]
    content: dict[str, Any] = {
        "extension_type": "property-extension",
        "identifier": f"isa:guide.19001.ACS3-{_derived_uuid('acs-identifier', key)}",
        "create_date_time": _stamp(label.created)[0],
        "responsible_entity_custodian": label.originator,
        "responsible_entity_originator": label.originator,
        "policy_reference": _ACS_POLICY,
        "control_set": {"classification": _ACS_LEVELS[str(level)]},
        "access_privilege": [
            {
                "privilege_action": "ALL",
                "privilege_scope": {"permitted_nationalities": nations},
                "rule_effect": "permit",
            }
        ],
        "further_sharing": [{"sharing_scope": nations, "rule_effect": "permit" if onward else "deny"}],
    }
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": f"marking-definition--{_derived_uuid('acs', key)}",
        "created": _stamp(label.created)[0],
        "created_by_ref": IDENTITY_ID,
        "name": f"ACS 3.0 {label.originator} {level}",
        "extensions": {ACS_EXTENSION_ID: content},
    }


def definitions_of(
    obj: Mapping[str, Any], label: SecurityLabel, catalogue: Catalogue | None
) -> list[dict[str, Any]]:
    """The objects ``obj`` refers to that this node defines: the identity and extension definition,
    the gsomia and ACS markings of its label and any TLP 2.0 marking (in that order)."""
    found: list[dict[str, Any]] = [*_EXTENSION_OBJECTS, marking_for(label)]
    if catalogue is not None:
        acs = acs_marking_for(label, catalogue)
        if acs is not None:
            found.append(acs)
    return found + _tlp_definitions(obj)


def to_bundle(objects: Sequence[tuple[SecurityLabel, dict[str, Any]]]) -> dict[str, Any]:
    """A bundle of already mapped objects with their label markings and the extension definition.

    Refuses TLP:RED: it never leaves the node.
    """
    for _, obj in objects:
        if is_tlp_red(obj):
            raise InvalidInputError(f"{obj['id']} is marked TLP:RED: it never leaves this node")
    markings: dict[str, dict[str, Any]] = {}
    for label, _ in objects:
        marking = marking_for(label)
        markings.setdefault(marking["id"], marking)
    return {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid4()}",
        "objects": [*extension_objects(), *markings.values(), *(obj for _, obj in objects)],
    }


@dataclass(frozen=True, slots=True)
class ImportedObject:
    """One STIX object to ingest: the item id, the label (boundary dict form) and the payload; an
    item in portions: ``portions`` (its label is the object marking, its payload empty)."""

    item_id: str
    label: dict[str, Any]
    payload_type: str
    payload: bytes
    portions: tuple[ImportedPortion, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportedPortion:
    """One portion of an ``x-gsomia-item`` in portions: its id, the label its granular marking gives
    it (boundary dict form), its payload."""

    id: str
    label: dict[str, Any]
    payload_type: str
    payload: bytes


_PORTION_SELECTOR = re.compile(r"payload\.portions\.\[(0|[1-9][0-9]{0,2})\]")
_SAME = ("originator", "classification", "releasable_to", "caveats", "purpose", "topics", "policy")


def _portions_of(
    obj: Mapping[str, Any], labels: Mapping[str, dict[str, Any]], derived: set[str]
) -> tuple[ImportedPortion, ...]:
    """The portions of an ``x-gsomia-item`` in portions, each labelled by exactly one gsomia granular
    marking whose selector is that portion (``payload.portions.[i]``); ACS markings are recomputed
    here from the label, so they are passed over. Anything else is inconsistent, and refused."""
    where = obj["id"]
    payload = obj.get("payload")
    entries = payload.get("portions") if isinstance(payload, Mapping) else None
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_PORTIONS:
        raise InvalidInputError(f"{where}: payload.portions must hold 1 to {MAX_PORTIONS} portions")
    granular = obj.get("granular_markings") or []
    if not isinstance(granular, list):
        raise InvalidInputError(f"{where}: granular_markings is not a list")
    marked: dict[int, list[str]] = {}
    for g in granular:
        if (
            not isinstance(g, Mapping)
            or not isinstance(g.get("marking_ref"), str)
            or not isinstance(g.get("selectors"), list)
            or not g["selectors"]
        ):
            raise InvalidInputError(f"{where}: each granular marking is {{marking_ref, selectors}}")
        ref = g["marking_ref"]
        if ref in derived:
            continue
        if ref not in labels:
            raise InvalidInputError(
                f"{where}: granular marking {ref} is not a gsomia label in the bundle (a portion's "
                "label is its gsomia marking; TLP and other markings are not kept per portion)"
            )
        for selector in g["selectors"]:
            match = _PORTION_SELECTOR.fullmatch(selector) if isinstance(selector, str) else None
            if match is None:
                raise InvalidInputError(
                    f"{where}: selector {selector!r}: a label marks whole portions (payload.portions.[i])"
                )
            index = int(match.group(1))
            if index >= len(entries):
                raise InvalidInputError(f"{where}: selector {selector} names no portion of this item")
            marked.setdefault(index, []).append(ref)
    out = []
    for index, entry in enumerate(entries):
        refs = marked.get(index, [])
        if len(refs) != 1:
            raise InvalidInputError(
                f"{where}: portion {index} has {len(refs)} gsomia labels; each portion has exactly one"
            )
        label = labels[refs[0]]
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            raise InvalidInputError(f"{where}: portion {index} is not {{id, payload_type, payload}}")
        told = entry.get("label")
        if told is not None and (
            not isinstance(told, Mapping) or any(_field(told, k) != _field(label, k) for k in _SAME)
        ):
            raise InvalidInputError(
                f"{where}: portion {entry['id']}: the label in the payload differs from its granular marking"
            )
        kind = entry.get("payload_type", "json")
        if kind == "bytes":
            try:
                data = base64.b64decode(str(entry.get("payload_base64", "")), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidInputError(
                    f"{where}: portion {entry['id']}: payload_base64 is not base64"
                ) from exc
        elif kind == "json" and "payload" in entry:
            data = json.dumps(entry["payload"], ensure_ascii=False).encode()
        else:
            raise InvalidInputError(
                f"{where}: portion {entry['id']}: a json payload or bytes in payload_base64"
            )
        out.append(ImportedPortion(entry["id"], dict(label), str(kind), data))
    return tuple(out)


def _field(label: Mapping[str, Any], name: str) -> Any:
    """A label field compared as a set where it is one (the order of lists carries nothing; a marking
    leaves an empty one out)."""
    value = label.get(name)
    if isinstance(value, list):
        return sorted(map(str, value)) or None
    return value


def check_banner(imported: ImportedObject, catalogue: Catalogue) -> None:
    """An item in portions: its object marking must be the highest of its portions' labels (what the
    node signs as the item's label): a lower or other one is inconsistent, and refused."""
    if not imported.portions:
        return
    try:
        top = banner([label_from_dict(p.label, catalogue) for p in imported.portions], catalogue)
        marked = label_from_dict(imported.label, catalogue)
    except GsomiaError as exc:
        raise InvalidInputError(f"{imported.item_id}: {exc}") from exc
    if (top.classification, top.releasable_to, top.caveats) != (
        marked.classification,
        marked.releasable_to,
        marked.caveats,
    ):
        raise InvalidInputError(
            f"{imported.item_id}: the object marking ({marked.classification}) is not the highest of its "
            f"portions' labels ({top.classification}, releasable to {', '.join(sorted(top.releasable_to))})"
        )


def _label_of(marking: Mapping[str, Any]) -> dict[str, Any] | None:
    extensions = marking.get("extensions")
    ext = extensions.get(EXTENSION_ID) if isinstance(extensions, Mapping) else None
    if not isinstance(ext, Mapping):
        return None
    # alternatives are the sender's receivers' equivalents; this node computes its own
    return {k: v for k, v in ext.items() if k not in ("extension_type", "alternatives")}


def from_bundle(bundle: Any, *, default_label: Mapping[str, Any] | None = None) -> list[ImportedObject]:
    """The labelled items in a STIX 2.1 bundle (see :func:`from_objects`)."""
    if not isinstance(bundle, Mapping) or bundle.get("type") != "bundle":
        raise InvalidInputError("not a STIX bundle: expected an object with type 'bundle'")
    objects = bundle.get("objects") or []
    if not isinstance(objects, list):
        raise InvalidInputError("bundle.objects: expected a list")
    return from_objects(objects, default_label=default_label)


def from_objects(
    objects: Iterable[Any], *, default_label: Mapping[str, Any] | None = None
) -> list[ImportedObject]:
    """Labelled items from STIX objects; their gsomia markings must be among them.

    An object without a gsomia marking is refused unless ``default_label`` is given. The first
    refusal raises (a file import is all or nothing); :func:`import_objects` answers per object.
    """
    out = []
    for result in import_objects(objects, default_label=default_label):
        if result.imported is None:
            raise InvalidInputError(result.reason or f"{result.stix_id}: refused")
        out.append(result.imported)
    return out


@dataclass(frozen=True, slots=True)
class ObjectResult:
    """What became of one posted STIX object: the item to ingest, or why it was refused."""

    stix_id: str
    version: str
    imported: ImportedObject | None
    reason: str | None = None


def _version_text(obj: Any) -> str:
    if isinstance(obj, Mapping):
        for key in ("modified", "created"):
            if isinstance(obj.get(key), str):
                return str(obj[key])
    return ""


def import_objects(
    objects: Iterable[Any], *, default_label: Mapping[str, Any] | None = None
) -> list[ObjectResult]:
    """One result per object that is not a definition (markings, the identity, the extension):
    the item to ingest, or the reason it is refused. One bad object refuses only itself."""
    items = list(objects)
    labels: dict[str, dict[str, Any]] = {}
    derived: set[str] = set()  # ACS markings: recomputed from the label, not kept with the payload
    candidates: list[tuple[int, Any]] = []
    results: dict[int, ObjectResult] = {}
    for n, obj in enumerate(items):
        try:
            _check_identity(obj, n)
        except InvalidInputError as exc:
            stix_id = obj.get("id") if isinstance(obj, Mapping) and isinstance(obj.get("id"), str) else None
            results[n] = ObjectResult(stix_id or f"objects[{n}]", _version_text(obj), None, str(exc))
            continue
        if obj["id"] in _FRAMEWORK or obj["id"] in _TLP:
            continue
        if obj["type"] == "marking-definition":
            label = _label_of(obj)
            if label is not None:
                labels[obj["id"]] = label
            elif isinstance(obj.get("extensions"), Mapping) and ACS_EXTENSION_ID in obj["extensions"]:
                derived.add(obj["id"])
            continue
        candidates.append((n, obj))
    for n, obj in candidates:
        try:
            results[n] = ObjectResult(
                obj["id"], _version_text(obj), _imported(obj, labels, derived, default_label)
            )
        except InvalidInputError as exc:
            results[n] = ObjectResult(obj["id"], _version_text(obj), None, str(exc))
    return [results[n] for n in sorted(results)]


def _check_identity(obj: Any, n: int) -> None:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("id"), str):
        raise InvalidInputError(f"objects[{n}]: not a STIX object (no id)")
    match = _STIX_ID.match(obj["id"])
    if match is None or match.group(1) != obj.get("type"):
        raise InvalidInputError(f"objects[{n}]: {obj['id']!r} is not a STIX identifier of its type")
    if obj.get("spec_version", "2.1") != "2.1":
        raise InvalidInputError(f"{obj['id']}: spec_version {obj.get('spec_version')!r}; gsomia reads 2.1")


def _valid_native(obj: Mapping[str, Any]) -> None:
    """A posted STIX object must be one: the OASIS library's checks, and versioned (created, modified)."""
    try:
        stix2.parse(dict(obj), allow_custom=True, version="2.1")
    except (stix2.exceptions.STIXError, ValueError, TypeError, KeyError) as exc:
        raise InvalidInputError(f"{obj['id']}: not a valid STIX 2.1 object: {exc}") from exc
    if not _versioned(obj):
        raise InvalidInputError(
            f"{obj['id']}: gsomia keeps versioned objects: created and modified are required "
            "(modified >= created)"
        )


def _imported(
    obj: Mapping[str, Any],
    labels: Mapping[str, dict[str, Any]],
    derived: set[str],
    default: Mapping[str, Any] | None,
) -> ImportedObject:
    refs = obj.get("object_marking_refs") or []
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise InvalidInputError(f"{obj['id']}: object_marking_refs is not a list of identifiers")
    unknown = [r for r in refs if r not in labels and r not in _TLP and r not in derived]
    if unknown:
        raise InvalidInputError(
            f"{obj['id']}: marking(s) {', '.join(map(str, unknown))} not in the bundle, or not ones gsomia "
            "keeps (a gsomia label, ACS 3.0, TLP)"
        )
    mine = [r for r in refs if r in labels]
    if len(mine) > 1:
        raise InvalidInputError(f"{obj['id']}: {len(mine)} gsomia labels; an item carries exactly one")
    if mine:
        label = labels[mine[0]]
    elif default is not None:
        label = dict(default)
    else:
        raise InvalidInputError(
            f"{obj['id']}: no gsomia label marking; give a default label explicitly to import it"
        )
    if obj["type"] == ITEM_TYPE and obj.get("payload_type") == PORTIONS:
        item_id = obj.get("item_id")
        if not isinstance(item_id, str):
            raise InvalidInputError(f"{obj['id']}: an {ITEM_TYPE} needs its item_id")
        return ImportedObject(item_id, label, PORTIONS, b"", _portions_of(obj, labels, derived))
    if obj["type"] == ITEM_TYPE:
        return _unwrapped(obj, label)
    _valid_native(obj)
    kept = [r for r in refs if r not in labels and r not in derived]
    payload = {k: v for k, v in obj.items() if k != "object_marking_refs"}
    if kept:
        payload["object_marking_refs"] = kept
    return ImportedObject(obj["id"], label, "json", json.dumps(payload, ensure_ascii=False).encode())


def _unwrapped(obj: Mapping[str, Any], label: dict[str, Any]) -> ImportedObject:
    item_id = obj.get("item_id")
    if not isinstance(item_id, str):
        raise InvalidInputError(f"{obj['id']}: an {ITEM_TYPE} needs its item_id")
    if obj.get("payload_type") == PORTIONS:
        raise InvalidInputError(f"{obj['id']}: an item in portions needs its granular markings")
    if obj.get("payload_type") == "bytes":
        try:
            data = base64.b64decode(str(obj.get("payload_base64", "")), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInputError(f"{obj['id']}: payload_base64 is not base64") from exc
        return ImportedObject(item_id, label, "bytes", data)
    if "payload" not in obj:
        raise InvalidInputError(f"{obj['id']}: an {ITEM_TYPE} needs a payload")
    return ImportedObject(item_id, label, "json", json.dumps(obj["payload"], ensure_ascii=False).encode())
